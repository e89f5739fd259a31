//! An adversary on the simulated LAN: it forges claims, replays every datagram it
//! captured (including those of instances long gone), flips bits and floods. With a
//! group key no honest peer ever shuts down or changes leader because of it; without
//! one, a single forged claim is enough — what the key is for.

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddr};

use handover_proto::sim::{Network, NodeId, Sim, SCOPE};
use handover_proto::wire::{self, auth::Key, Body, Repr, Role};
use handover_proto::{Auth, Event, Instant, State};
use handover_tests::seeds;
use proptest::prelude::*;

const KEY: Key = [0x5a; 32];
const ADVERSARY: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 6, 6, 6)), 1538);

fn node(sim: &mut Sim, auth: Option<Auth>) -> NodeId {
    let mut config = sim.config(0);
    config.auth = auth;
    sim.add_node(config)
}

fn forged_claim(sender: u64, counter: u64) -> Repr<'static> {
    handover_tests::forged_claim(SCOPE, sender, counter)
}

/// A hand-over from a to b, all of it captured; returns (a, b, captured datagrams).
fn history(sim: &mut Sim, auth: Option<Auth>) -> (NodeId, NodeId, Vec<Vec<u8>>) {
    sim.capture = true;
    let a = node(sim, auth.clone());
    sim.ready(a);
    sim.run_for(Duration::from_secs(1));
    let b = node(sim, auth);
    sim.ready(b);
    sim.run_for(Duration::from_secs(1));
    sim.capture = false;
    let captured = std::mem::take(&mut sim.captured)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    (a, b, captured)
}

fn disturbed(sim: &Sim, node: NodeId, since: Instant) -> usize {
    sim.records()
        .iter()
        .filter(|r| r.node == node && r.at >= since)
        .filter(|r| {
            matches!(
                r.event,
                Event::Shutdown { .. } | Event::Demoted | Event::LeaderChanged { .. }
            )
        })
        .count()
}

#[derive(Debug, Clone)]
enum Attack {
    Replay(usize),
    ReplayFlipped(usize, usize, u8),
    ForgedUntagged(u64, u64),
    ForgedWrongKey(u64, u64),
    ForgedGarbageTag(u64, u64),
    Random(Vec<u8>),
}

fn attack() -> impl Strategy<Value = Attack> {
    prop_oneof![
        any::<usize>().prop_map(Attack::Replay),
        (any::<usize>(), any::<usize>(), 1u8..)
            .prop_map(|(i, j, x)| Attack::ReplayFlipped(i, j, x)),
        (any::<u64>(), any::<u64>()).prop_map(|(s, c)| Attack::ForgedUntagged(s, c)),
        (any::<u64>(), any::<u64>()).prop_map(|(s, c)| Attack::ForgedWrongKey(s, c)),
        (any::<u64>(), any::<u64>()).prop_map(|(s, c)| Attack::ForgedGarbageTag(s, c)),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Attack::Random),
    ]
}

fn bytes_of(a: &Attack, captured: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    match a {
        Attack::Replay(i) => captured[i % captured.len()].clone(),
        Attack::ReplayFlipped(i, j, x) => {
            let mut d = captured[i % captured.len()].clone();
            let at = j % d.len();
            d[at] ^= x;
            d
        }
        Attack::ForgedUntagged(s, c) => {
            let n = forged_claim(*s, *c).emit(&mut buf).unwrap();
            buf[..n].to_vec()
        }
        Attack::ForgedWrongKey(s, c) => {
            let n = forged_claim(*s, *c)
                .emit_tagged(&[0xa5; 32], &mut buf)
                .unwrap();
            buf[..n].to_vec()
        }
        Attack::ForgedGarbageTag(s, c) => {
            let n = forged_claim(*s, *c).emit_tagged(&KEY, &mut buf).unwrap();
            buf[n - 1] ^= 0x80;
            buf[..n].to_vec()
        }
        Attack::Random(d) => d.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: seeds().min(200), ..ProptestConfig::default() })]

    /// With a key: whatever the adversary sends, the active peer stays active and
    /// nobody's leader changes; every attack datagram is dropped and counted.
    #[test]
    fn keyed_group_ignores_the_adversary(
        seed in any::<u64>(),
        attacks in prop::collection::vec(attack(), 1..300),
    ) {
        let mut sim = Sim::new(seed, Network::reliable());
        sim.heartbeat = Duration::from_millis(100);
        let (a, b, captured) = history(&mut sim, Some(Auth::new(KEY)));
        prop_assert_eq!(sim.state(b), State::Active);
        prop_assert_eq!(sim.state(a), State::Done);
        // Long enough for a's entry to expire: its replays now come from a forgotten
        // sender.
        sim.run_for(Duration::from_secs(2));
        let since = sim.now();
        let dropped_before = sim.node(b).peer.stats().dropped();
        for attack in &attacks {
            let bytes = bytes_of(attack, &captured);
            sim.inject_all(ADVERSARY, &bytes);
            sim.run_for(Duration::from_millis(10));
        }
        // A newcomer that joins after the attack agrees on the leader.
        let c = node(&mut sim, Some(Auth::new(KEY)));
        sim.run_for(Duration::from_secs(1));
        prop_assert_eq!(sim.state(b), State::Active);
        prop_assert_eq!(disturbed(&sim, b, since), 0);
        prop_assert_eq!(sim.node(c).peer.leader(), Some(sim.node(b).peer.id()));
        // Every attack datagram reached b and was dropped and counted.
        let stats = sim.node(b).peer.stats();
        prop_assert!(
            stats.dropped() - dropped_before >= attacks.len() as u64,
            "{} attacks, {:?}", attacks.len(), stats
        );
    }
}

/// Without a key, one forged claim makes the active instance shut down: an attacker on
/// the LAN can stop any service (as with handover-lib's 9-byte datagrams). This test
/// documents it; the key is the remedy.
#[test]
fn without_a_key_a_forged_claim_stops_the_active_peer() {
    let mut sim = Sim::new(1, Network::reliable());
    sim.heartbeat = Duration::from_millis(100);
    let b = node(&mut sim, None);
    sim.ready(b);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.state(b), State::Active);
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let n = forged_claim(0xbad, 1).emit(&mut buf).unwrap();
    sim.inject_all(ADVERSARY, &buf[..n]);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.count(b, |e| matches!(e, Event::Shutdown { .. })), 1);
}

/// The same forged claim against a keyed group: dropped and counted.
#[test]
fn with_a_key_the_forged_claim_is_counted_and_ignored() {
    let mut sim = Sim::new(1, Network::reliable());
    sim.heartbeat = Duration::from_millis(100);
    let b = node(&mut sim, Some(Auth::new(KEY)));
    sim.ready(b);
    sim.run_for(Duration::from_secs(1));
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let n = forged_claim(0xbad, 1).emit(&mut buf).unwrap();
    sim.inject_all(ADVERSARY, &buf[..n]);
    let n = forged_claim(0xbad, 2)
        .emit_tagged(&[1; 32], &mut buf)
        .unwrap();
    sim.inject_all(ADVERSARY, &buf[..n]);
    let v1 = wire::legacy::Announce { start_ms: i64::MAX };
    let n = v1.emit(&mut buf).unwrap();
    sim.inject_all(ADVERSARY, &buf[..n]);
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.count(b, |e| matches!(e, Event::Shutdown { .. })), 0);
    let stats = sim.node(b).peer.stats();
    assert_eq!(stats.dropped_unauthenticated, 1);
    assert_eq!(stats.dropped_bad_tag, 1);
    assert_eq!(stats.dropped_legacy_refused, 1);
}

/// Replays of a departed instance's datagrams, after it was forgotten, are refused.
#[test]
fn replays_of_a_forgotten_sender_are_refused() {
    let mut sim = Sim::new(2, Network::reliable());
    sim.heartbeat = Duration::from_millis(100);
    let (_, b, captured) = history(&mut sim, Some(Auth::new(KEY)));
    sim.run_for(Duration::from_secs(3));
    let stale_before = sim.node(b).peer.stats().dropped_stale;
    for d in &captured {
        sim.inject(b, ADVERSARY, d);
    }
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.state(b), State::Active);
    let stats = sim.node(b).peer.stats();
    assert!(stats.dropped_stale > stale_before, "{stats:?}");
}

/// Key rotation: a peer with a new key that still accepts the previous one takes
/// datagrams tagged with the old key until the transition ends, and not after.
#[test]
fn previous_key_is_accepted_until_its_deadline() {
    let old_key = [1u8; 32];
    let new_key = [2u8; 32];
    let deadline = Instant::from_micros(3_000_000);
    let mut config = handover_proto::Config::new(SCOPE, 7, 0, 0);
    let mut auth = Auth::new(new_key);
    auth.previous = Some((old_key, deadline));
    config.auth = Some(auth);
    let mut peer = handover_proto::Peer::<4>::new(config, Instant::ZERO).unwrap();
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut deliver = |peer: &mut handover_proto::Peer<4>, at: u64, counter: u64, key: &Key| {
        let mut heartbeat = forged_claim(99, counter);
        if let Body::Announce(a) = &mut heartbeat.body {
            a.role = Role::Active;
        }
        let n = heartbeat.emit_tagged(key, &mut buf).unwrap();
        peer.handle_datagram(Instant::from_micros(at), ADVERSARY, &buf[..n]);
        while peer.poll_event().is_some() {}
    };
    deliver(&mut peer, 1_000_000, 1, &old_key);
    assert_eq!(
        peer.stats().accepted,
        1,
        "old key accepted during the transition"
    );
    deliver(&mut peer, 2_000_000, 2, &new_key);
    assert_eq!(peer.stats().accepted, 2, "new key accepted");
    deliver(&mut peer, 3_000_000, 3, &old_key);
    assert_eq!(peer.stats().accepted, 2);
    assert_eq!(
        peer.stats().dropped_bad_tag,
        1,
        "old key refused after the deadline"
    );
}
