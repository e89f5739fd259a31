//! A firmware service that hands over to its next version: flash the new version onto
//! a second board on the same LAN (or run `handover run` on a Linux host with the same
//! scope) and this one stops its work and says goodbye. The same on every board: each
//! board example's library brings up its network as `board::network`.
#![no_std]
#![no_main]

use defmt::{info, unwrap, warn};
use embassy_executor::Spawner;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::Timer;
use handover_embassy::{Buffers, Network, Runner, Shared};
use handover_proto::{wire, Config};
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

/// Peers the table tracks.
const PEERS: usize = 8;

// Not an `async fn`: an async fn keeps its by-value arguments twice in its future,
// and the runner is most of the task's memory.
#[embassy_executor::task]
fn handover_task(
    mut runner: Runner<'static, CriticalSectionRawMutex, PEERS>,
) -> impl core::future::Future<Output = ()> {
    async move { runner.run().await }
}

/// Logs the protocol's events: with the protocol's logs only, as a firmware that
/// only hands over needs no events (the adapter's `events` feature costs about
/// 500 B of flash, and logging them about 700 B more).
#[cfg(feature = "protocol-logs")]
#[embassy_executor::task]
async fn log_events(mut events: handover_embassy::Events<'static, CriticalSectionRawMutex>) {
    use handover_proto::Event;
    loop {
        match events.next().await {
            Event::PeerUp { id, .. } => info!("peer {=u64:x} up", id),
            Event::PeerDown { id } => info!("peer {=u64:x} down", id),
            Event::PredecessorDone { id } => info!("predecessor {=u64:x} has finished", id),
            Event::LeaderChanged { id } => info!("leader: {:?}", id),
            _ => {}
        }
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, seed) = board::network(spawner).await;

    // In a `StaticCell`, not a plain `static`: its few non-zero initial bytes would
    // otherwise put all of it in `.data`, whose initial image takes as much flash.
    static SHARED: StaticCell<Shared<CriticalSectionRawMutex>> = StaticCell::new();
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();
    // The scope names the service; all its versions share it. No wall clock on this
    // board: start time 0 ranks below any peer that knows the time, which is only a
    // tie-breaker anyway.
    let config = Config::new(
        wire::scope_id(b"pump-controller"),
        seed.max(1), // id 0 is reserved
        0,
        seed.rotate_left(17),
    );
    let Ok((handover, runner)) = handover_embassy::new::<_, PEERS>(
        stack,
        BUFFERS.init(Buffers::new()),
        SHARED.init(Shared::new()),
        config,
        Network::default(),
    ) else {
        defmt::panic!("handover: the configuration or the stack refused");
    };
    spawner.spawn(unwrap!(handover_task(runner)));
    #[cfg(feature = "protocol-logs")]
    spawner.spawn(unwrap!(log_events(unwrap!(handover.events()))));

    // The service is ready: claim.
    handover.ready().await;
    info!("ready and in charge");
    let work = async {
        loop {
            // ... the service's work ...
            Timer::after_millis(500).await;
        }
    };
    let successor = embassy_futures::select::select(work, handover.shutdown_requested()).await;
    if let embassy_futures::select::Either::Second(successor) = successor {
        info!("superseded by {:?}: stopping", successor.id());
    }
    // ... stop the work, release what the successor needs ...
    match handover.shutdown_complete().await {
        Ok(()) => info!("hand-over complete"),
        Err(_) => warn!("shutdown_complete refused: not superseded"),
    }
}
