//! `handover run`: the protocol around a child process.
//!
//! Hand-over: the child starts at once; its readiness is this instance's claim; when a
//! newer instance takes over, the child is stopped (stop signal, timeout, SIGKILL), the
//! complete file is written and `handover` exits 0, whatever the child's status.
//!
//! Failover (a cold standby): the child runs only while this instance is active; if it
//! dies while active, `handover` leaves at once, so that a standby takes over, and
//! exits non-zero. A hot standby's child runs on every instance and is told its role.
//!
//! - [`args`]: the options, and the combinations refused before anything starts;
//! - [`supervisor`]: the policy, as a state machine with no I/O;
//! - [`driver`]: carries out the supervisor's actions with tokio;
//! - [`service`]: the child process and the signals passed on to it;
//! - [`exit`]: every way `handover` ends, and its status.

mod args;
mod driver;
pub mod exit;
mod service;
mod supervisor;

use serde_json::json;

pub use args::Args;
pub use exit::Exit;

use crate::listen::PeerAddresses;
use crate::log::{hex, Log};
use crate::reaper::Reaper;

/// How long the exit waits for a reader of stderr that is behind.
const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

pub async fn run(
    mut args: Args,
    log: Log,
    backends: crate::Backends,
) -> Result<Exit, Box<dyn std::error::Error>> {
    args.check()?;
    args.ready_by_health();
    let mut config = args.protocol.config()?;
    args.election.apply(&mut config, args.protocol.mode)?;
    let mut signals = service::Forwarded::install()?;
    let reaper = Reaper::start()?;
    let handover = backends.start(config.clone()).await?;
    let status = handover.status();
    log.event(
        "listening",
        json!({
            "id": hex(status.id),
            "interfaces": status.interfaces,
            "scope": config.scope,
            "group": config.group.to_string(),
            "port": config.port,
            "heartbeat_ms": config.heartbeat.as_millis() as u64,
            "mode": format!("{:?}", args.protocol.mode).to_lowercase(),
            "election": format!("{:?}", args.election.election).to_lowercase(),
            "priority": config.priority,
            "legacy": config.legacy,
            "keyed": config.key.is_some(),
            "stop_signal": args.stop_signal.as_raw(),
            "stop_timeout_ms": args.stop_timeout.as_millis() as u64,
        }),
    );
    let peers = PeerAddresses::default();
    log_events(&handover, &peers, log);
    let driver = driver::Driver {
        args: &args,
        handover: &handover,
        reaper: &reaper,
        peers: &peers,
        scope: &config.scope,
        log,
    };
    let exit = driver.run(&mut signals).await?;
    // Let the event task print what is still queued.
    tokio::task::yield_now().await;
    let stats = serde_json::to_value(handover.status().stats)?;
    // The last line must find room: a reader that is behind gets a moment to
    // catch up (a stalled one does not hold the exit for long).
    let _ = tokio::task::spawn_blocking(|| crate::log::flush(EXIT_FLUSH)).await;
    let dropped = crate::log::dropped_lines();
    log.event(
        "exit",
        json!({ "code": exit.code(), "stats": stats, "log_lines_dropped": dropped }),
    );
    Ok(exit)
}

/// Logs every event of the protocol, and learns the peers' addresses (to forward
/// to a successor) on the way.
fn log_events(handover: &handover_std::Handover, peers: &PeerAddresses, log: Log) {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = handover.subscribe();
    let learning = peers.clone();
    tokio::spawn(async move {
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                // Fell behind: say so and go on with what comes next.
                Err(RecvError::Lagged(missed)) => {
                    log.event("events_missed", json!({ "count": missed }));
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            if let handover_std::Event::Protocol(handover_std::proto::Event::PeerUp {
                id,
                addresses,
                ..
            }) = &e
            {
                learning.learn(*id, addresses);
            }
            log.library_event(&e);
        }
    });
}
