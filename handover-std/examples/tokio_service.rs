//! A TCP service that hands over to its next version without refusing or
//! resetting a connection.
//!
//! Both versions accept from the *same* listening socket: the first binds it, and
//! each next version inherits it from the one in charge (through a coordination
//! directory, [`Sockets`]), so there is one accept queue throughout. The new
//! version announces itself once it accepts; the old one then stops accepting,
//! finishes the connections it has, and tells the supervisor it is done.
//! (Binding again with `SO_REUSEPORT` would not do: each socket has a queue of
//! its own, and closing the old one resets the connections waiting in it.)
//!
//! ```sh
//! cargo run -p handover-std --example tokio_service        # version 1
//! cargo run -p handover-std --example tokio_service        # version 2, another shell
//! ```
//! Configuration comes from the environment (`BALENA_*`, `HANDOVER_*`); here the
//! complete file defaults to `/tmp/handover-example/complete` so that it runs anywhere.

use std::time::Duration;

use handover_std::sockets::{default_dir, Sockets};
use handover_std::{Config, Event, Handover};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::from_env()?;
    if std::env::var_os("BALENA_SERVICE_HANDOVER_COMPLETE_PATH").is_none() {
        config.complete_files = vec!["/tmp/handover-example/complete".into()];
    }
    let handover = Handover::start(config.clone()).await?;
    let mut events = handover.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Protocol(handover_proto::Event::PredecessorDone { id }) = event {
                println!("the previous version ({id:016x}) has finished");
            }
        }
    });

    // The socket: systemd's, else the running version's, else a new one.
    let specs = ["http=tcp:127.0.0.1:8080".parse()?];
    let mut sockets = Sockets::acquire(&specs, &default_dir(), &config.scope).await?;
    let listener = sockets.tcp("http")?;
    println!(
        "serving on 127.0.0.1:8080 ({})",
        match sockets.source() {
            Some(_) => "the socket of the version before",
            None => "a new socket",
        }
    );
    handover.ready().await?;

    let mut connections = JoinSet::new();
    let in_charge = sockets.own_when_in_charge(&handover);
    tokio::pin!(in_charge);
    let mut owning = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, _) = accepted?;
                connections.spawn(async move {
                    let _ = stream.write_all(b"hello from this version\n").await;
                });
            }
            // From now on the next version gets the socket from this one.
            owned = &mut in_charge, if !owning => {
                owned?;
                owning = true;
            }
            requested = handover.shutdown_requested() => {
                // An error means the protocol stopped, not that a newer version
                // serves: report it and let the restart policy start us again.
                requested?;
                break;
            }
        }
    }
    // A newer version accepts from the same socket now: stop accepting (the
    // connections still queued are its to take), let the open ones finish.
    drop(listener);
    println!("superseded: draining {} connections", connections.len());
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    handover.shutdown_complete().await?;
    println!("hand-over complete");
    Ok(())
}
