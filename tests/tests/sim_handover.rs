//! Hand-over under a simulated network: the newest ready instance wins whatever the
//! clocks say, every loser shuts down exactly once, and loss costs little.

use core::time::Duration;

use handover_proto::sim::{Network, NodeId, Sim};
use handover_proto::{Event, Instant, State};
use handover_tests::seeds;
use proptest::prelude::*;

const HB: Duration = Duration::from_millis(1000);
const YEARS_55_MS: i64 = 55 * 365 * 24 * 3_600_000;

/// A wall clock: right, unset (1970), or hours off either way.
fn wall_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-YEARS_55_MS),
        -5 * 3_600_000i64..5 * 3_600_000,
    ]
}

#[derive(Debug, Clone)]
struct Instance {
    wall_offset_ms: i64,
    /// How long it listens before it is ready.
    listen_ms: u64,
    /// Time after the previous instance became ready.
    gap_ms: u64,
    shutdown_ms: u64,
}

fn instance(min_gap_ms: u64) -> impl Strategy<Value = Instance> {
    (wall_offset(), 0u64..2000, min_gap_ms..4000, 0u64..1000).prop_map(
        |(wall_offset_ms, listen_ms, gap_ms, shutdown_ms)| Instance {
            wall_offset_ms,
            listen_ms,
            gap_ms,
            shutdown_ms,
        },
    )
}

fn network() -> impl Strategy<Value = Network> {
    (0u64..5, 0u64..5, 0.0..0.3f64).prop_map(|(latency, jitter, duplicate)| Network {
        latency: Duration::from_millis(latency),
        jitter: Duration::from_millis(jitter),
        loss: 0.0,
        duplicate,
    })
}

/// Adds and readies the instances in order; returns their nodes and ready times.
fn play(sim: &mut Sim, instances: &[Instance]) -> Vec<(NodeId, Instant)> {
    let mut ready_at = Instant::from_millis(0);
    let mut plan = Vec::new();
    for inst in instances {
        ready_at = ready_at + Duration::from_millis(inst.gap_ms);
        let add_at =
            Instant::from_micros(ready_at.as_micros().saturating_sub(inst.listen_ms * 1000));
        plan.push((add_at, ready_at, inst));
    }
    // Adds and readies happen in time order, whatever the listening times.
    let mut steps: Vec<(Instant, usize, bool)> = Vec::new();
    for (i, (add_at, ready_at, _)) in plan.iter().enumerate() {
        steps.push((*add_at, i, false));
        steps.push((*ready_at, i, true));
    }
    steps.sort_by_key(|&(at, i, ready)| (at, ready, i));
    let mut nodes = vec![usize::MAX; plan.len()];
    for (at, i, ready) in steps {
        sim.run_until(at);
        if ready {
            sim.ready(nodes[i]);
        } else {
            let id = sim.add(plan[i].2.wall_offset_ms);
            sim.node_mut(id).shutdown_delay = Duration::from_millis(plan[i].2.shutdown_ms);
            nodes[i] = id;
        }
    }
    nodes.into_iter().zip(plan.iter().map(|p| p.1)).collect()
}

/// Checks what must hold of every run: shutdowns only in favour of higher ranks,
/// exactly once, and `MarkComplete` exactly once after the application finished.
fn check_invariants(sim: &Sim) -> Result<(), TestCaseError> {
    for record in sim.records() {
        if let Event::Shutdown {
            successor: handover_proto::Successor::Peer(successor),
        } = record.event
        {
            let winner = (0..sim.len())
                .map(|n| sim.node(n).peer.rank())
                .find(|r| r.id == successor)
                .expect("successor is a simulated node");
            prop_assert!(
                winner > record.rank,
                "node {} yielded to lower rank {:?} < {:?}",
                record.node,
                winner,
                record.rank
            );
        }
    }
    for n in 0..sim.len() {
        let shutdowns = sim.count(n, |e| matches!(e, Event::Shutdown { .. }));
        let marks: Vec<Instant> = sim
            .records()
            .iter()
            .filter(|r| r.node == n && r.event == Event::MarkComplete)
            .map(|r| r.at)
            .collect();
        prop_assert!(shutdowns <= 1, "node {n}: {shutdowns} Shutdown events");
        prop_assert!(
            marks.len() <= shutdowns,
            "node {n}: MarkComplete without Shutdown"
        );
        if let Some(&mark) = marks.first() {
            let completed = sim.node(n).shutdown_completed_at;
            prop_assert!(
                completed.is_some_and(|c| c <= mark),
                "node {n}: MarkComplete at {mark:?} before shutdown_complete ({completed:?})"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: seeds(), ..ProptestConfig::default() })]

    /// In a connected network, the instance that became ready last is the only active
    /// one three heartbeats later, whatever the wall clocks; every other instance
    /// shut down exactly once and marked completion exactly once.
    #[test]
    fn newest_ready_instance_wins(
        seed in any::<u64>(),
        net in network(),
        instances in prop::collection::vec(instance(25), 2..=4),
    ) {
        let mut sim = Sim::new(seed, net);
        sim.heartbeat = HB;
        let played = play(&mut sim, &instances);
        let (newest, last_ready) = *played.last().unwrap();
        sim.run_until(last_ready + HB * 3);
        prop_assert_eq!(sim.active(), vec![newest], "states: {:?}",
            (0..sim.len()).map(|n| sim.state(n)).collect::<Vec<_>>());
        // Let every shutdown finish (at most 1 s) and the goodbyes land.
        sim.run_for(HB * 3);
        check_invariants(&sim)?;
        for &(node, _) in &played[..played.len() - 1] {
            prop_assert_eq!(sim.state(node), State::Done);
            prop_assert_eq!(sim.count(node, |e| matches!(e, Event::Shutdown { .. })), 1);
            prop_assert_eq!(sim.count(node, |e| *e == Event::MarkComplete), 1);
        }
        prop_assert_eq!(sim.count(newest, |e| matches!(e, Event::Shutdown { .. })), 0);
        // The newest learns that its predecessor finished.
        let predecessors_done = sim.count(newest, |e| matches!(e, Event::PredecessorDone { .. }));
        prop_assert!(predecessors_done >= 1);
    }

    /// Instances that become ready on both sides of a partition never heard of each
    /// other: after the partition heals, the highest rank (wall clock, then id) wins
    /// within three heartbeats, and nobody yields to a lower rank.
    #[test]
    fn partition_heals_to_highest_rank(
        seed in any::<u64>(),
        net in network(),
        walls in prop::collection::vec(wall_offset(), 2..=4),
        sides in prop::collection::vec(0u8..2, 4),
        heal_ms in 0u64..5000,
    ) {
        let mut sim = Sim::new(seed, net);
        sim.heartbeat = HB;
        let nodes: Vec<NodeId> = walls.iter().map(|&w| sim.add(w)).collect();
        sim.partition(&sides);
        for &n in &nodes {
            sim.ready(n);
            sim.run_for(Duration::from_millis(50));
        }
        sim.run_for(Duration::from_millis(heal_ms));
        sim.heal();
        sim.run_for(HB * 3);
        // Peers yield only to higher ranks and ranks never fall, so the highest final
        // rank never yielded.
        let best = nodes.iter().copied().max_by_key(|&n| sim.node(n).peer.rank()).unwrap();
        prop_assert_eq!(sim.active(), vec![best]);
        sim.run_for(HB * 3);
        check_invariants(&sim)?;
    }

    /// Two instances ready at the same moment: exactly one wins, no livelock.
    #[test]
    fn simultaneous_ready_has_one_winner(
        seed in any::<u64>(),
        net in network(),
        walls in prop::collection::vec(wall_offset(), 2..=4),
    ) {
        let mut sim = Sim::new(seed, net);
        sim.heartbeat = HB;
        let nodes: Vec<NodeId> = walls.iter().map(|&w| sim.add(w)).collect();
        for &n in &nodes {
            sim.ready(n);
        }
        sim.run_for(HB * 3);
        prop_assert_eq!(sim.active().len(), 1);
        sim.run_for(HB * 10);
        prop_assert_eq!(sim.active().len(), 1);
        check_invariants(&sim)?;
    }
}

/// With 30 % of datagrams lost, a hand-over (old instance marked complete, new one
/// active) completes within 10 heartbeats in at least 99.9 % of the seeds.
#[test]
fn lossy_handover_completes_within_ten_heartbeats() {
    let runs = seeds();
    let mut slow = Vec::new();
    for seed in 0..u64::from(runs) {
        let mut sim = Sim::new(seed, Network::lossy(0.3));
        sim.heartbeat = HB;
        // Clocks: the new instance's is right, unset, or hours behind.
        let new_wall = [0, -YEARS_55_MS, -3 * 3_600_000][(seed % 3) as usize];
        let old = sim.add(0);
        sim.ready(old);
        sim.run_for(HB * 5);
        let new = sim.add(new_wall);
        sim.run_for(Duration::from_millis(seed % 1500));
        sim.ready(new);
        let ready_at = sim.now();
        let deadline = ready_at + HB * 10;
        let mut done_at = None;
        while sim.now() < deadline {
            sim.run_for(Duration::from_millis(10));
            if sim.state(new) == State::Active && sim.count(old, |e| *e == Event::MarkComplete) == 1
            {
                done_at = Some(sim.now());
                break;
            }
        }
        if done_at.is_none() {
            slow.push(seed);
        }
    }
    let completed = f64::from(runs) - slow.len() as f64;
    let rate = completed / f64::from(runs);
    println!("lossy hand-over: {completed}/{runs} completed within 10 heartbeats ({:.3} %); slow seeds: {slow:?}", rate * 100.0);
    assert!(
        rate >= 0.999,
        "only {:.3} % completed; slow seeds {slow:?}",
        rate * 100.0
    );
}

/// The same seed replays exactly.
#[test]
fn simulation_is_deterministic() {
    let run = || {
        let mut sim = Sim::new(
            42,
            Network {
                latency: Duration::from_millis(2),
                jitter: Duration::from_millis(3),
                loss: 0.2,
                duplicate: 0.1,
            },
        );
        let a = sim.add(0);
        sim.ready(a);
        sim.run_for(HB * 2);
        let b = sim.add(-YEARS_55_MS);
        sim.ready(b);
        sim.run_for(HB * 10);
        sim.records().to_vec()
    };
    let first = run();
    assert!(first.len() > 3);
    assert_eq!(first, run());
}
