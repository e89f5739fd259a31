//! Checkpoints under a simulated network: the active peer's progress reaches every
//! standby and is acknowledged, through loss; a new active learns a later checkpoint
//! from a standby that held more than it did.

use core::time::Duration;

use handover_proto::sim::{Network, NodeId, Sim};
use handover_proto::{Event, Policy, State};

/// A failover peer with a 100 ms heartbeat, ready.
fn failover(sim: &mut Sim, priority: u8) -> NodeId {
    sim.heartbeat = Duration::from_millis(100);
    let mut config = sim.config(0);
    config.policy = Policy::Failover { preempt: false };
    config.priority = priority;
    let n = sim.add_node(config);
    sim.ready(n);
    n
}

fn events(sim: &Sim, node: NodeId, since: handover_proto::Instant) -> Vec<Event> {
    sim.records()
        .iter()
        .filter(|r| r.node == node && r.at >= since)
        .map(|r| r.event.clone())
        .filter(|e| matches!(e, Event::Checkpoint { .. } | Event::CheckpointHeld { .. }))
        .collect()
}

fn network(loss: f64) -> Network {
    Network {
        latency: Duration::from_millis(1),
        jitter: Duration::ZERO,
        loss,
        ..Network::reliable()
    }
}

#[test]
fn a_checkpoint_reaches_every_standby_and_is_held_within_a_round_trip() {
    let mut sim = Sim::new(1, network(0.0));
    let nodes = [
        failover(&mut sim, 200),
        failover(&mut sim, 150),
        failover(&mut sim, 100),
    ];
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.active(), [nodes[0]]);
    let at = sim.now();
    sim.checkpoint(nodes[0], 5).unwrap();
    // One round trip (1 ms each way), not a heartbeat (100 ms).
    sim.run_for(Duration::from_millis(3));
    assert_eq!(
        events(&sim, nodes[0], at),
        [Event::CheckpointHeld { seq: 5 }]
    );
    for &n in &nodes[1..] {
        assert_eq!(events(&sim, n, at), [Event::Checkpoint { seq: 5 }]);
        assert_eq!(sim.node(n).peer.checkpoint_seq(), 5);
    }
    // Progress recorded by a standby (a task that finished as it was demoted)
    // reaches the active one with its next heartbeat.
    let at = sim.now();
    sim.checkpoint(nodes[1], 6).unwrap();
    sim.run_for(Duration::from_millis(150));
    assert_eq!(
        events(&sim, nodes[0], at),
        [
            Event::Checkpoint { seq: 6 },
            Event::CheckpointHeld { seq: 6 }
        ]
    );
}

#[test]
fn checkpoints_are_repeated_until_held_through_heavy_loss() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, network(0.0));
        let nodes = [failover(&mut sim, 200), failover(&mut sim, 100)];
        sim.run_for(Duration::from_secs(1));
        sim.set_network(network(0.3));
        let at = sim.now();
        for seq in 1..=20 {
            sim.checkpoint(nodes[0], seq).unwrap();
            sim.run_for(Duration::from_millis(3));
        }
        sim.run_for(Duration::from_millis(500));
        let held: Vec<u64> = events(&sim, nodes[0], at)
            .into_iter()
            .filter_map(|e| match e {
                Event::CheckpointHeld { seq } => Some(seq),
                _ => None,
            })
            .collect();
        assert_eq!(held.last(), Some(&20), "seed {seed}: {held:?}");
        assert!(held.windows(2).all(|w| w[0] < w[1]), "{held:?}");
        assert_eq!(sim.node(nodes[1]).peer.checkpoint_seq(), 20, "seed {seed}");
    }
}

#[test]
fn a_new_active_learns_the_later_checkpoint_a_standby_held() {
    let mut sim = Sim::new(7, network(0.0));
    // The active one, the standby that takes over, the one that holds more.
    let [a, c, b] = [
        failover(&mut sim, 200),
        failover(&mut sim, 150),
        failover(&mut sim, 100),
    ];
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.active(), [a]);
    sim.checkpoint(a, 5).unwrap();
    sim.run_for(Duration::from_millis(10));
    // c misses checkpoint 9 (cut off for less than a dead interval); b holds it.
    sim.partition(&[0, 1, 0]);
    sim.checkpoint(a, 9).unwrap();
    sim.run_for(Duration::from_millis(5));
    assert_eq!(sim.node(b).peer.checkpoint_seq(), 9);
    sim.kill(a);
    sim.heal();
    assert_eq!(sim.node(c).peer.checkpoint_seq(), 5);
    let at = sim.now();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.active(), [c]);
    // Elected, it asks what the standbys hold.
    assert_eq!(
        events(&sim, c, at),
        [
            Event::Checkpoint { seq: 9 },
            Event::CheckpointHeld { seq: 9 }
        ]
    );
    assert_eq!(sim.state(b), State::Standby);
}
