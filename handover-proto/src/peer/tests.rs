use super::*;
use crate::event::Successor;
use crate::wire::{Body, Header, Repr};

/// Guards the memory of a peer with an 8-entry table on 64-bit hosts, where
/// `usize` fields take 8 bytes (1112 today); 32-bit targets are held to 1088 bytes at
/// compile time (above).
const SCOPE: u32 = 0x5c09e;

fn peer(id: u64, policy: Policy) -> Peer<8> {
    let mut c = Config::new(SCOPE, id, 1_000, id);
    c.policy = policy;
    c.heartbeat = core::time::Duration::from_millis(100);
    Peer::new(c, Instant::ZERO).unwrap()
}

fn at_ms(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

/// Hands `p` an announcement of `sender`, without extension records.
fn hear(p: &mut Peer<8>, now: Instant, sender: u64, counter: u64, a: wire::Announce<'_>) {
    hear_extended(p, now, sender, counter, a, &[]);
}

fn announce(role: Role, generation: u32, ready_ms: u32, state: &[u8]) -> wire::Announce<'_> {
    wire::Announce {
        role,
        rank: wire::Rank {
            priority: crate::DEFAULT_PRIORITY,
            generation,
            start_ms: 2_000,
        },
        ready_ms,
        heartbeat_ms: 100,
        claim_heard: None,
        name: b"",
        addresses: &[],
        state,
    }
}

fn drain(p: &mut Peer<8>) {
    while p.poll_event().is_some() {}
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    while p.poll_transmit(p.clock.now(), &mut buf).is_some() {}
}

/// Runs `p`'s timers until `until`, draining its output.
fn run_until(p: &mut Peer<8>, until: Instant) {
    while let Some(t) = p.poll_timeout().filter(|&t| t <= until) {
        p.handle_timeout(t);
        drain(p);
    }
    p.handle_timeout(until);
    drain(p);
}

#[test]
fn the_reserved_generation_is_refused_and_raising_never_wraps() {
    let mut p = peer(1, Policy::HandOver);
    p.ready(at_ms(0)).unwrap();
    drain(&mut p);
    // An earlier-ready claimer announcing the reserved generation: refused.
    let a = announce(Role::Claiming, u32::MAX, 5_000, b"");
    hear(&mut p, at_ms(1), 2, 1, a);
    assert_eq!(p.stats().dropped_malformed, 1);
    assert_eq!(p.state(), State::Claiming);
    // The highest generation allowed: raising stops there, however often it
    // comes back (4 billion claims away for honest peers).
    for counter in 2..5 {
        let a = announce(Role::Claiming, MAX_GENERATION, 5_000, b"");
        hear(&mut p, at_ms(counter), 2, counter, a);
        drain(&mut p);
        assert_eq!(p.generation, MAX_GENERATION);
    }
    assert_eq!(p.max_heard, MAX_GENERATION);
}

#[test]
fn an_acknowledgement_with_the_reserved_generation_is_refused() {
    let mut p = peer(1, Policy::HandOver);
    p.ready(at_ms(0)).unwrap();
    drain(&mut p);
    let a = announce(Role::Active, u32::MAX, 5_000, b"");
    let ack = Repr {
        header: Header {
            scope: SCOPE,
            sender: 2,
            counter: 1,
        },
        body: Body::Ack(wire::Ack {
            to: 1,
            generation: p.generation,
            role: Role::Active,
            rank: a.rank,
            ready_ms: 5_000,
        }),
    };
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let len = ack.emit(&mut buf).unwrap();
    p.handle_datagram(
        at_ms(1),
        SocketAddr::from(([10, 0, 0, 2], 1538)),
        &buf[..len],
    );
    assert_eq!(p.stats().dropped_malformed, 1);
    assert!(p.max_heard <= MAX_GENERATION);
    // A later claim still raises without wrapping.
    hear(
        &mut p,
        at_ms(2),
        3,
        1,
        announce(Role::Claiming, 1, 5_000, b""),
    );
    assert!(p.generation >= 1 && p.generation <= MAX_GENERATION);
}

#[test]
fn a_queued_shutdown_keeps_its_successor_after_leave() {
    let mut p = peer(1, Policy::HandOver);
    p.ready(at_ms(0)).unwrap();
    run_until(&mut p, at_ms(1_000));
    assert_eq!(p.state(), State::Active);
    // A newer instance claims: we yield to it.
    hear(
        &mut p,
        at_ms(1_001),
        2,
        1,
        announce(Role::Claiming, 9, 0, b""),
    );
    p.leave(at_ms(1_002)).unwrap();
    let shutdown =
        core::iter::from_fn(|| p.poll_event()).find(|e| matches!(e, Event::Shutdown { .. }));
    assert_eq!(
        shutdown,
        Some(Event::Shutdown {
            successor: Successor::Peer(2)
        })
    );
}

#[test]
fn a_queued_sync_keeps_the_leaders_state_after_set_state() {
    let mut p = peer(1, Policy::Failover { preempt: false });
    let leader = announce(Role::Active, 1, 60_000, b"leader's");
    hear(&mut p, at_ms(0), 2, 1, leader);
    drain(&mut p);
    p.ready(at_ms(1)).unwrap();
    drain(&mut p);
    assert_eq!(p.state(), State::Standby);
    hear(
        &mut p,
        at_ms(100),
        2,
        2,
        announce(Role::Active, 1, 60_100, b"task 7"),
    );
    p.set_state(b"mine").unwrap();
    let synced = core::iter::from_fn(|| p.poll_event()).find(|e| matches!(e, Event::Synced { .. }));
    let expected = Vec::from_slice(b"task 7").unwrap();
    assert_eq!(synced, Some(Event::Synced { state: expected }));
}

#[test]
fn a_copy_heard_on_a_second_interface_is_a_duplicate_not_stale() {
    let mut p = peer(1, Policy::HandOver);
    for _ in 0..2 {
        hear(&mut p, at_ms(0), 2, 1, announce(Role::Active, 1, 100, b""));
        drain(&mut p);
    }
    let stats = p.stats();
    assert_eq!((stats.accepted, stats.dropped_duplicate), (1, 1));
    assert_eq!(stats.dropped_stale, 0);
}

/// Hands `p` an announcement of `sender` with extension records `records`.
fn hear_extended(
    p: &mut Peer<8>,
    now: Instant,
    sender: u64,
    counter: u64,
    a: wire::Announce<'_>,
    records: &[wire::Extension<'_>],
) {
    let repr = Repr {
        header: Header {
            scope: SCOPE,
            sender,
            counter,
        },
        body: Body::Announce(a),
    };
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let len = repr.emit_extended(records, &mut buf).unwrap();
    let from = SocketAddr::from(([10, 0, 0, sender as u8], 1538));
    p.handle_datagram(now, from, &buf[..len]);
}

/// An active peer owes `CheckpointHeld` once every standby that can
/// acknowledge has; a standby that said nothing of checkpoints (firmware built
/// without them) is owed nothing, and never holds the report back.
#[cfg(feature = "checkpoints")]
#[test]
fn only_standbys_that_say_they_acknowledge_checkpoints_are_waited_for() {
    let held = |p: &mut Peer<8>| {
        core::iter::from_fn(|| p.poll_event())
            .filter_map(|e| match e {
                Event::CheckpointHeld { seq } => Some(seq),
                _ => None,
            })
            .last()
    };
    let mut p = peer(1, Policy::Failover { preempt: false });
    p.ready(at_ms(0)).unwrap();
    run_until(&mut p, at_ms(1_000));
    assert_eq!(p.state(), State::Active);
    // A firmware standby: announcements without records, and no ack ever.
    hear(
        &mut p,
        at_ms(1_001),
        2,
        1,
        announce(Role::Standby, 0, 0, b""),
    );
    drain(&mut p);
    p.checkpoint(at_ms(1_002), 5).unwrap();
    let mut seen = None;
    let mut t = 1_002;
    while t < 2_000 && seen.is_none() {
        t += 50;
        hear(&mut p, at_ms(t), 2, t, announce(Role::Standby, 0, 0, b""));
        p.handle_timeout(at_ms(t));
        seen = held(&mut p);
        drain(&mut p);
    }
    assert_eq!(
        seen,
        Some(5),
        "held is reported without the firmware standby"
    );

    // A standby that says it acknowledges: waited for until it does.
    let caps = wire::Capabilities::CHECKPOINTS.0.to_le_bytes();
    let record = [wire::Extension {
        kind: wire::EXTENSION_CAPABILITIES,
        data: &caps[..1],
    }];
    let capable = |a| announce(Role::Standby, 0, 0, a);
    hear_extended(&mut p, at_ms(t + 1), 3, 1, capable(b""), &record);
    drain(&mut p);
    p.checkpoint(at_ms(t + 2), 6).unwrap();
    for k in 1..20 {
        let now = at_ms(t + 2 + k * 50);
        hear_extended(&mut p, now, 3, 1 + k, capable(b""), &record);
        hear(&mut p, now, 2, t + k, announce(Role::Standby, 0, 0, b""));
        p.handle_timeout(now);
        assert_eq!(
            held(&mut p),
            None,
            "held before the capable standby acknowledged"
        );
        drain(&mut p);
    }
    let ack = Repr {
        header: Header {
            scope: SCOPE,
            sender: 3,
            counter: 100,
        },
        body: Body::CheckpointAck(wire::CheckpointAck { to: 1, seq: 6 }),
    };
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let len = ack.emit(&mut buf).unwrap();
    let now = at_ms(t + 1_100);
    p.handle_datagram(now, SocketAddr::from(([10, 0, 0, 3], 1538)), &buf[..len]);
    p.handle_timeout(now);
    assert_eq!(held(&mut p), Some(6));
}

#[test]
fn peer_with_eight_entries_stays_within_budget() {
    let size = core::mem::size_of::<Peer<8>>();
    // 1,112 bytes until the counter of unknown critical extensions (4 bytes, 8
    // with alignment) came with the extension records; 1,120 until checkpoints
    // (the checkpoint, 8; its acknowledgement's address and flag, 8).
    assert!(size <= 1136, "Peer<8> grew to {size} bytes");
}

/// handover-lib's protocol is spoken with the `legacy` feature only: without it a
/// configuration that asks for it is refused by name, and a v1 datagram is one of
/// no known format.
#[test]
fn handover_libs_protocol_needs_the_legacy_feature() {
    let mut c = Config::new(SCOPE, 7, 1_000, 7);
    c.legacy = true;
    let v1 = [wire::legacy::VERSION, 0, 0, 0, 0, 0, 0, 0x07, 0xd0];
    let from = SocketAddr::from(([10, 0, 0, 2], wire::LEGACY_PORT));
    #[cfg(feature = "legacy")]
    {
        let mut p = Peer::<8>::new(c, Instant::ZERO).unwrap();
        p.ready(at_ms(1)).unwrap();
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let mut sent = Vec::<crate::Destination, 4>::new();
        while let Some(t) = p.poll_transmit(at_ms(1), &mut buf) {
            sent.push(t.destination).unwrap();
        }
        assert!(sent.contains(&crate::Destination::LegacyGroup), "{sent:?}");
        p.handle_datagram(at_ms(2), from, &v1);
        assert_eq!(p.stats().accepted, 1);
        assert_eq!(p.stats().dropped_unknown_format, 0);
    }
    #[cfg(not(feature = "legacy"))]
    {
        assert_eq!(
            Peer::<8>::new(c.clone(), Instant::ZERO).err(),
            Some(ConfigError::LegacyUnsupported)
        );
        c.legacy = false;
        let mut p = Peer::<8>::new(c, Instant::ZERO).unwrap();
        p.handle_datagram(at_ms(2), from, &v1);
        assert_eq!(p.stats().accepted, 0);
        assert_eq!(p.stats().dropped_unknown_format, 1);
    }
}

/// A peer's announcement carries what it supports and the checkpoint it holds as
/// the records `Repr::emit_extended` writes, byte for byte: the records the peer
/// writes in place are the wire format every version reads.
#[cfg(feature = "checkpoints")]
#[test]
fn a_peers_own_records_are_the_ones_emit_extended_writes() {
    let mut p = peer(1, Policy::Failover { preempt: false });
    p.ready(at_ms(0)).unwrap();
    run_until(&mut p, at_ms(1_000));
    assert_eq!(p.state(), State::Active);
    // 300: a varint of two bytes.
    p.checkpoint(at_ms(1_001), 300).unwrap();
    while p.poll_event().is_some() {}
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut announced = None;
    // The next heartbeat, within one interval.
    for ms in 1_001..1_200 {
        p.handle_timeout(at_ms(ms));
        while p.poll_event().is_some() {}
        let Some(t) = p.poll_transmit(at_ms(ms), &mut buf) else {
            continue;
        };
        let datagram = &buf[..t.len];
        if let Ok(packet) = Packet::parse(datagram) {
            if matches!(packet.repr.body, Body::Announce(_)) {
                let mut expected = [0u8; wire::MAX_DATAGRAM];
                let records = [
                    wire::Extension {
                        kind: wire::EXTENSION_CAPABILITIES,
                        data: &[1],
                    },
                    wire::Extension {
                        kind: wire::EXTENSION_CHECKPOINT,
                        data: &[0xac, 0x02],
                    },
                ];
                let len = packet.repr.emit_extended(&records, &mut expected).unwrap();
                announced = Some(datagram == &expected[..len]);
                break;
            }
        }
    }
    assert_eq!(announced, Some(true));
}

#[test]
fn a_standby_that_stands_aside_is_silent_and_never_takes_over_until_ready_again() {
    let mut p = peer(1, Policy::Failover { preempt: false });
    let active = announce(Role::Active, 1, 5_000, b"");
    hear(&mut p, at_ms(0), 2, 1, active);
    p.ready(at_ms(10)).unwrap();
    drain(&mut p);
    assert_eq!(p.state(), State::Standby);
    assert!(p.stand_aside(at_ms(20)).is_ok());
    assert_eq!(p.state(), State::Listening);
    drain(&mut p);
    // The active falls silent for many dead intervals: nothing is sent, no claim.
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut t = 20;
    while t < 5_000 {
        t += 50;
        p.handle_timeout(at_ms(t));
        assert!(
            p.poll_transmit(at_ms(t), &mut buf).is_none(),
            "sent at {t} ms"
        );
        while p.poll_event().is_some() {}
    }
    assert_eq!(p.state(), State::Listening);
    assert_eq!(p.leader(), None);
    assert!(
        p.stand_aside(at_ms(t)).is_err(),
        "only a standby stands aside"
    );
    // Ready again, with nobody in charge: it claims.
    p.ready(at_ms(t)).unwrap();
    assert_eq!(p.state(), State::Claiming);
}
