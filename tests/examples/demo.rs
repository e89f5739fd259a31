//! A hand-over, step by step, on the simulated network: an old instance is in charge,
//! a new one whose wall clock reads 1970 becomes ready, and the old one shuts down.
//!
//! `cargo run --release -p handover-tests --example demo [LOSS_PERCENT]`

use core::time::Duration;

use handover_proto::sim::{Network, Sim};
use handover_proto::{Event, State};

fn main() {
    let loss: f64 = match std::env::args().nth(1) {
        Some(arg) => {
            arg.parse::<f64>().unwrap_or_else(|_| {
                eprintln!("LOSS_PERCENT: {arg:?} is not a number");
                std::process::exit(2)
            }) / 100.0
        }
        None => 0.1,
    };
    let mut sim = Sim::new(2026, Network::lossy(loss));
    sim.heartbeat = Duration::from_secs(1);
    println!(
        "network: 1-2 ms latency, {:.0} % loss; heartbeat 1 s",
        loss * 100.0
    );

    let old = sim.add(0);
    sim.node_mut(old).shutdown_delay = Duration::from_millis(300);
    sim.ready(old);
    sim.run_for(Duration::from_secs(3));
    let new = sim.add(-55 * 365 * 24 * 3_600_000);
    sim.run_for(Duration::from_millis(200));
    let ready_at = sim.now();
    sim.ready(new);
    sim.run_for(Duration::from_secs(5));

    let name = |n| if n == old { "old" } else { "new" };
    for r in sim.records() {
        let when = r.at.as_micros() as f64 / 1000.0 - ready_at.as_micros() as f64 / 1000.0;
        let what = match &r.event {
            Event::Elected => "elected: in charge".to_string(),
            Event::Shutdown { .. } => "told to shut down (a newer instance is ready)".into(),
            Event::MarkComplete => "shutdown complete: writes handover-complete".into(),
            Event::PredecessorDone { .. } => "learns its predecessor has finished".into(),
            Event::PeerUp { .. } => "hears a peer".into(),
            Event::PeerDown { .. } => "peer gone".into(),
            _ => continue,
        };
        println!(
            "{when:>+10.1} ms  {:<3} (generation {}) {what}",
            name(r.node),
            r.rank.generation
        );
    }
    println!(
        "result: new is {:?}, old is {:?}; {} datagrams lost",
        sim.state(new),
        sim.state(old),
        sim.lost
    );
    assert_eq!(sim.state(new), State::Active, "the newer instance must win");
}
