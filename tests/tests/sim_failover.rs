//! Failover under a simulated network: one active peer, a standby takes over within
//! the dead interval plus one heartbeat, partitions heal to one leader, and a stable
//! network sees no role changes.

use core::time::Duration;

use handover_proto::sim::{Network, NodeId, Sim, TABLE};
use handover_proto::{Event, Policy, State};
use handover_tests::seeds;
use proptest::prelude::*;

/// VRRP's master-down interval for a standby of this priority.
fn dead_interval(hb: Duration, priority: u8) -> Duration {
    hb * 3 + hb * (256 - u32::from(priority)) / 256
}

fn network() -> impl Strategy<Value = Network> {
    (0u64..3, 0u64..3, 0.0..0.2f64).prop_map(|(latency, jitter, duplicate)| Network {
        latency: Duration::from_millis(latency),
        jitter: Duration::from_millis(jitter),
        loss: 0.0,
        duplicate,
    })
}

fn cluster(sim: &mut Sim, priorities: &[u8], preempt: bool) -> Vec<NodeId> {
    priorities
        .iter()
        .map(|&p| {
            let mut config = sim.config(0);
            config.policy = Policy::Failover { preempt };
            config.priority = p;
            let n = sim.add_node(config);
            sim.ready(n);
            n
        })
        .collect()
}

fn role_changes(sim: &Sim, since: handover_proto::Instant) -> usize {
    sim.records()
        .iter()
        .filter(|r| r.at >= since && matches!(r.event, Event::Elected | Event::Demoted))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: seeds(), ..ProptestConfig::default() })]

    /// Kill the active peer: exactly one standby is active within the dead interval
    /// plus one heartbeat; until then, nobody changes role in the stable network.
    #[test]
    fn standby_takes_over_after_kill(
        seed in any::<u64>(),
        net in network(),
        priorities in prop::collection::vec(1u8..=255, 2..=4),
        preempt in any::<bool>(),
        hb_ms in prop_oneof![Just(20u64), Just(100), Just(1000)],
        stable_hbs in 5u32..20,
    ) {
        let hb = Duration::from_millis(hb_ms);
        let mut sim = Sim::new(seed, net);
        sim.heartbeat = hb;
        let nodes = cluster(&mut sim, &priorities, preempt);
        sim.run_for(hb * 5);
        let active = sim.active();
        prop_assert_eq!(active.len(), 1, "states {:?}", nodes.iter().map(|&n| sim.state(n)).collect::<Vec<_>>());
        let settled = sim.now();
        sim.run_for(hb * stable_hbs);
        prop_assert_eq!(role_changes(&sim, settled), 0, "role changes in a stable network");
        prop_assert_eq!(sim.active(), active.clone());

        sim.kill(active[0]);
        let killed_at = sim.now();
        let survivors: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != active[0]).collect();
        let best = survivors.iter().map(|&n| sim.node(n).peer.config().priority).max().unwrap();
        let bound = dead_interval(hb, best) + hb;
        // Run well past the bound, so that a late election is seen as late.
        sim.run_until(killed_at + bound * 3);
        let now_active = sim.active();
        prop_assert_eq!(now_active.len(), 1, "{:?} after {:?}", now_active, bound * 3);
        let elections: Vec<_> = sim.records().iter()
            .filter(|r| r.at >= killed_at && r.event == Event::Elected)
            .map(|r| (r.at.saturating_since(killed_at), r.node))
            .collect();
        // The first election: not late, and not before the active one could have
        // been declared dead (its last heartbeat left at most one heartbeat, plus
        // jitter, before the kill).
        prop_assert!(!elections.is_empty(), "nobody elected after the kill");
        let (took, _) = elections[0];
        prop_assert!(took <= bound, "elected {:?} after the kill, bound {:?}", took, bound);
        let earliest = dead_interval(hb, best).saturating_sub(hb + Duration::from_millis(5));
        prop_assert!(took >= earliest, "elected {:?} after the kill, before {:?}", took, earliest);
        // Who wins: the best-priority survivor, unless its lead (the dead interval's
        // priority skew) is within the network's jitter of another's, which may then
        // notice the silence first; with preemption the best one then takes over.
        let (_, last) = *elections.last().unwrap();
        prop_assert_eq!(last, now_active[0]);
        let won = sim.node(last).peer.config().priority;
        if preempt {
            prop_assert!(elections.len() <= 2, "{:?}", elections);
            prop_assert_eq!(won, best);
        } else {
            prop_assert_eq!(elections.len(), 1, "one election after the kill: {:?}", elections);
            prop_assert!(
                won == best || dead_interval(hb, won) <= dead_interval(hb, best) + net.jitter,
                "priority {} won over {}", won, best
            );
        }
        // The survivors agree on the leader.
        let leader = sim.node(now_active[0]).peer.id();
        sim.run_for(hb * 2);
        for &n in &survivors {
            prop_assert_eq!(sim.node(n).peer.leader(), Some(leader));
        }
    }

    /// Partition the active peer away: its side keeps it, the other side elects a
    /// standby; when the partition heals, one leader remains within the dead interval
    /// plus one heartbeat.
    #[test]
    fn partition_heals_to_one_leader(
        seed in any::<u64>(),
        net in network(),
        priorities in prop::collection::vec(1u8..=255, 2..=4),
        hb_ms in prop_oneof![Just(20u64), Just(1000)],
        split_hbs in 6u32..12,
    ) {
        let hb = Duration::from_millis(hb_ms);
        let mut sim = Sim::new(seed, net);
        sim.heartbeat = hb;
        let nodes = cluster(&mut sim, &priorities, false);
        sim.run_for(hb * 5);
        let active = sim.active()[0];
        let sides: Vec<u8> = nodes.iter().map(|&n| u8::from(n == active)).collect();
        sim.partition(&sides);
        sim.run_for(hb * split_hbs);
        // Each side has its own leader now.
        prop_assert_eq!(sim.active().len(), 2);
        sim.heal();
        let healed_at = sim.now();
        let lowest = priorities.iter().copied().min().unwrap();
        sim.run_until(healed_at + dead_interval(hb, lowest) + hb);
        prop_assert_eq!(sim.active().len(), 1, "states {:?}", nodes.iter().map(|&n| sim.state(n)).collect::<Vec<_>>());
        let settled = sim.now();
        sim.run_for(hb * 10);
        prop_assert_eq!(role_changes(&sim, settled), 0);
    }

    /// A fleet larger than each peer's table of peers (`sim::TABLE`): instances join
    /// one by one, each too late to record everyone. One active is elected and it
    /// stays: a standby must always know the active, or it would claim against it.
    #[test]
    fn a_fleet_larger_than_the_table_settles(
        seed in any::<u64>(),
        extra in 1usize..=4,
        gaps_ms in prop::collection::vec(0u64..400, TABLE + 5),
    ) {
        let hb = Duration::from_millis(100);
        let mut sim = Sim::new(seed, Network::reliable());
        sim.heartbeat = hb;
        let mut nodes = Vec::new();
        for &gap in &gaps_ms[..TABLE + 1 + extra] {
            nodes.extend(cluster(&mut sim, &[100], false));
            sim.run_for(Duration::from_millis(gap));
        }
        sim.run_for(hb * 10);
        prop_assert_eq!(sim.active().len(), 1, "states {:?}", nodes.iter().map(|&n| sim.state(n)).collect::<Vec<_>>());
        let settled = sim.now();
        sim.run_for(hb * 20);
        prop_assert_eq!(role_changes(&sim, settled), 0, "role changes in a stable network");
        let leader = sim.node(sim.active()[0]).peer.id();
        for &n in &nodes {
            prop_assert_eq!(sim.node(n).peer.leader(), Some(leader), "node {}", n);
        }
        // The active dies, a standby takes over, and one more instance joins.
        let active = sim.active()[0];
        sim.kill(active);
        nodes.retain(|&n| n != active);
        sim.run_for(hb * 5);
        nodes.extend(cluster(&mut sim, &[100], false));
        sim.run_for(hb * 10);
        let settled = sim.now();
        sim.run_for(hb * 20);
        prop_assert_eq!(role_changes(&sim, settled), 0, "role changes after the takeover");
        prop_assert_eq!(sim.active().len(), 1);
        let leader = sim.node(sim.active()[0]).peer.id();
        for &n in &nodes {
            prop_assert_eq!(sim.node(n).peer.leader(), Some(leader), "node {}", n);
        }
    }
}

/// Application state set on the active peer reaches the standbys as `Synced`.
#[test]
fn active_state_syncs_to_standbys() {
    let hb = Duration::from_millis(100);
    let mut sim = Sim::new(1, Network::reliable());
    sim.heartbeat = hb;
    let nodes = cluster(&mut sim, &[200, 100], false);
    sim.run_for(hb * 5);
    assert_eq!(sim.active(), vec![nodes[0]]);
    sim.node_mut(nodes[0]).peer.set_state(b"task-41").unwrap();
    sim.run_for(hb * 2);
    let synced: Vec<_> = sim
        .records()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Synced { state } if r.node == nodes[1] => Some(state.to_vec()),
            _ => None,
        })
        .collect();
    assert_eq!(synced.last().map(Vec::as_slice), Some(&b"task-41"[..]));
    assert!(sim.node_mut(nodes[0]).peer.set_state(&[0; 65]).is_err());
}

/// With preemption, a higher-priority peer that becomes ready later takes over and
/// the former active is demoted; without it, the incumbent stays.
#[test]
fn preemption_is_a_setting() {
    for preempt in [false, true] {
        let hb = Duration::from_millis(100);
        let mut sim = Sim::new(3, Network::reliable());
        sim.heartbeat = hb;
        let low = cluster(&mut sim, &[50], preempt)[0];
        sim.run_for(hb * 5);
        let high = cluster(&mut sim, &[250], preempt)[0];
        sim.run_for(hb * 5);
        let expected = if preempt { high } else { low };
        assert_eq!(sim.active(), vec![expected], "preempt {preempt}");
        assert_eq!(
            sim.count(low, |e| *e == Event::Demoted),
            usize::from(preempt)
        );
        assert_eq!(sim.state(if preempt { low } else { high }), State::Standby);
    }
}

/// A graceful leave hands over at once, without waiting for the dead interval.
#[test]
fn leave_fails_over_at_once() {
    let hb = Duration::from_millis(1000);
    let mut sim = Sim::new(5, Network::reliable());
    sim.heartbeat = hb;
    let nodes = cluster(&mut sim, &[200, 100], false);
    sim.run_for(hb * 5);
    sim.leave(nodes[0]);
    sim.run_for(Duration::from_millis(50));
    assert_eq!(sim.active(), vec![nodes[1]]);
}

/// Hours of steady running move every peer's clock epoch several times (every ~36
/// minutes): nobody changes role or loses a peer, and failover still takes the usual
/// time afterwards.
#[test]
fn hours_of_steady_running_change_nothing() {
    let hb = Duration::from_secs(1);
    let mut sim = Sim::new(7, Network::reliable());
    sim.heartbeat = hb;
    let nodes = cluster(&mut sim, &[200, 150, 100], false);
    sim.run_for(hb * 5);
    let active = sim.active();
    assert_eq!(active.len(), 1);
    let settled = sim.now();
    sim.run_for(Duration::from_secs(3 * 3600));
    assert_eq!(role_changes(&sim, settled), 0);
    let peer_downs = sim
        .records()
        .iter()
        .filter(|r| r.at >= settled && matches!(r.event, Event::PeerDown { .. }))
        .count();
    assert_eq!(peer_downs, 0, "no peer may look dead after an epoch move");

    let now_active = kill_and_take_over(&mut sim, active[0], hb, 150);
    assert_eq!(now_active, nodes[1], "the 150-priority standby takes over");
}

/// Kills `active` and returns the one peer active a dead interval (at the best
/// standby's `priority`) plus a heartbeat later.
fn kill_and_take_over(sim: &mut Sim, active: NodeId, hb: Duration, priority: u8) -> NodeId {
    sim.kill(active);
    let killed_at = sim.now();
    sim.run_until(killed_at + dead_interval(hb, priority) + hb);
    let now_active = sim.active();
    assert_eq!(now_active.len(), 1);
    assert_ne!(now_active[0], active);
    assert_eq!(sim.node(now_active[0]).peer.config().priority, priority);
    now_active[0]
}

/// The active peer dies just before its standbys' clock epochs move (2^31 µs after
/// they start): the move must not make its last heartbeat look recent.
#[test]
fn failover_across_an_epoch_move() {
    let hb = Duration::from_secs(1);
    let mut sim = Sim::new(11, Network::reliable());
    sim.heartbeat = hb;
    let started = sim.now();
    cluster(&mut sim, &[200, 150], false);
    sim.run_for(hb * 5);
    let active = sim.active();
    assert_eq!(active.len(), 1);
    // 100 ms before the epoch moves.
    sim.run_until(started + Duration::from_micros((1 << 31) - 100_000));
    kill_and_take_over(&mut sim, active[0], hb, 150);
}
