//! A TCP service that hands over to its next version without dropping a connection.
//!
//! Both versions listen on the same port at once (`SO_REUSEPORT`); the new one
//! announces itself when it accepts connections, the old one then stops accepting,
//! finishes the connections it has, and tells the supervisor it is done.
//!
//! ```sh
//! cargo run -p handover-std --example tokio_service        # version 1
//! cargo run -p handover-std --example tokio_service        # version 2, another shell
//! ```
//! Configuration comes from the environment (`BALENA_*`, `HANDOVER_*`); here the
//! complete file defaults to `/tmp/handover-example/complete` so that it runs anywhere.

use std::time::Duration;

use handover_std::{Config, Event, Handover};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

fn listener(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    socket.listen(128)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::from_env()?;
    if std::env::var_os("BALENA_SERVICE_HANDOVER_COMPLETE_PATH").is_none() {
        config.complete_files = vec!["/tmp/handover-example/complete".into()];
    }
    let handover = Handover::start(config).await?;
    let mut events = handover.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Protocol(handover_proto::Event::PredecessorDone { id }) = event {
                println!("the previous version ({id:016x}) has finished");
            }
        }
    });

    let listener = listener(8080)?;
    println!("serving on 127.0.0.1:8080");
    handover.ready()?;

    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, _) = accepted?;
                connections.spawn(async move {
                    let _ = stream.write_all(b"hello from this version\n").await;
                });
            }
            requested = handover.shutdown_requested() => {
                // An error means the protocol stopped, not that a newer version
                // serves: report it and let the restart policy start us again.
                requested?;
                break;
            }
        }
    }
    // A newer version serves now: stop accepting, let the open connections finish.
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
