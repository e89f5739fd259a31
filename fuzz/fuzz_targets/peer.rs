//! A `Peer` fed an arbitrary sequence of datagrams, commands and time steps: it never
//! panics, stays within its bounds, emits only datagrams that decode, and with a group
//! key nothing but a validly tagged datagram changes its state or causes an event;
//! checkpoints never go back.
#![no_main]

use core::net::SocketAddr;
use core::time::Duration;

use arbitrary::Arbitrary;
use handover_proto::wire::{self, Datagram, Packet, MAX_DATAGRAM};
use handover_proto::{Auth, Config, Event, Instant, Peer, Policy};
use libfuzzer_sys::fuzz_target;

const KEY: wire::auth::Key = [0x11; 32];
const TABLE: usize = 4;
const SCOPE: u32 = wire::scope_id(b"fuzz");

#[derive(Debug, Arbitrary)]
enum Op {
    /// Raw bytes from the network.
    Raw {
        from: u8,
        bytes: Vec<u8>,
    },
    /// A v2 body in the peer's scope, tagged with the group key when there is one:
    /// what an honest (or compromised) member can send.
    Member {
        from: u8,
        body: Vec<u8>,
    },
    /// Time passes.
    Advance(u32),
    /// Timers fire if due.
    Timeout,
    Ready,
    ShutdownComplete,
    Leave,
    SetState(Vec<u8>),
    /// Progress recorded by the application.
    Checkpoint(u64),
}

#[derive(Debug, Arbitrary)]
struct Input {
    keyed: bool,
    failover: bool,
    preempt: bool,
    legacy: bool,
    priority: u8,
    heartbeat_ms: u16,
    ops: Vec<Op>,
}

fn source(from: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, from], 1538))
}

/// Drains the peer as an adapter does; returns the events.
fn drain(peer: &mut Peer<TABLE>, now: Instant, keyed: bool) -> Vec<Event> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut sent = 0;
    while let Some(t) = peer.poll_transmit(now, &mut buf) {
        sent += 1;
        assert!(sent < 64, "a bounded number of datagrams per input");
        let bytes = &buf[..t.len];
        match Datagram::parse(bytes).expect("emitted datagrams decode") {
            Datagram::V2(packet) => {
                assert_eq!(packet.repr.header.scope, SCOPE);
                assert_eq!(packet.tag.is_some(), keyed);
            }
            Datagram::Legacy(_) => {}
        }
    }
    let mut events = Vec::new();
    while let Some(e) = peer.poll_event() {
        events.push(e);
        assert!(events.len() <= 16, "a bounded number of events per input");
    }
    assert!(peer.peers().count() <= TABLE);
    // Every datagram handed in was accepted or counted as dropped, once.
    let s = peer.stats();
    assert_eq!(
        s.received,
        (u64::from(s.accepted) + s.dropped()) as u32,
        "{s:?}"
    );
    events
}

fuzz_target!(|input: Input| {
    let mut config = Config::new(SCOPE, 0xfeed, 1_700_000_000_000, 7);
    config.heartbeat = Duration::from_millis(u64::from(input.heartbeat_ms.clamp(10, 60_000)));
    config.priority = input.priority;
    if input.failover {
        config.policy = Policy::Failover {
            preempt: input.preempt,
        };
    } else {
        config.legacy = input.legacy;
    }
    if input.keyed {
        config.auth = Some(Auth::new(KEY));
    }
    let mut now = Instant::ZERO;
    let mut peer = Peer::<TABLE>::new(config, now).expect("valid configuration");
    let mut checkpoint = 0;
    for op in input.ops {
        // Checkpoints never go backwards, whatever arrives.
        assert!(peer.checkpoint_seq() >= checkpoint, "checkpoint went back");
        checkpoint = peer.checkpoint_seq();
        match op {
            Op::Raw { from, bytes } => {
                let state = peer.state();
                let leader = peer.leader();
                peer.handle_datagram(now, source(from), &bytes);
                let events = drain(&mut peer, now, input.keyed);
                if input.keyed {
                    // Forgery is hopeless: nothing happens.
                    assert!(events.is_empty(), "unauthenticated input caused {events:?}");
                    assert_eq!(peer.state(), state);
                    assert_eq!(peer.leader(), leader);
                }
                continue;
            }
            Op::Member { from, body } => {
                let mut bytes = vec![wire::MAGIC, 0];
                bytes.extend_from_slice(&body);
                let Ok(packet) = Packet::parse(&bytes) else {
                    continue;
                };
                let mut repr = packet.repr;
                repr.header.scope = SCOPE;
                let mut buf = [0u8; MAX_DATAGRAM];
                let n = if input.keyed {
                    repr.emit_tagged(&KEY, &mut buf)
                } else {
                    repr.emit(&mut buf)
                };
                if let Ok(n) = n {
                    peer.handle_datagram(now, source(from), &buf[..n]);
                }
            }
            Op::Advance(us) => now = now + Duration::from_micros(u64::from(us)),
            Op::Timeout => {
                if peer.poll_timeout().is_some_and(|t| t <= now) {
                    peer.handle_timeout(now);
                }
            }
            Op::Ready => {
                let _ = peer.ready(now);
            }
            Op::ShutdownComplete => {
                let _ = peer.shutdown_complete(now);
            }
            Op::Leave => {
                let _ = peer.leave(now);
            }
            Op::SetState(state) => {
                let _ = peer.set_state(&state);
            }
            Op::Checkpoint(seq) => {
                let _ = peer.checkpoint(now, seq);
            }
        }
        drain(&mut peer, now, input.keyed);
    }
});
