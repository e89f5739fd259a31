//! decode(encode(x)) == x for every packet within the limits, tagged or not; packets
//! beyond the limits are refused by the encoder, never emitted.
#![no_main]

use arbitrary::Arbitrary;
use handover_proto::wire::{
    auth, Ack, Announce, Body, Frame, Goodbye, Header, Packet, Rank, Role, MAX_DATAGRAM,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Kind {
    Announce {
        role: u8,
        ready_ms: u32,
        heartbeat_ms: u32,
        claim_heard: Option<u64>,
        name: Vec<u8>,
        addresses: Vec<u8>,
        state: Vec<u8>,
    },
    Ack {
        to: u64,
        generation: u32,
        role: u8,
        ready_ms: u32,
    },
    Goodbye(Option<u64>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    scope: u32,
    sender: u64,
    counter: u64,
    priority: u8,
    generation: u32,
    start_ms: i64,
    kind: Kind,
    key: Option<[u8; 32]>,
}

fn role(r: u8) -> Role {
    [Role::Claiming, Role::Active, Role::Standby, Role::Yielding][r as usize % 4]
}

fuzz_target!(|input: Input| {
    let rank = Rank {
        priority: input.priority,
        generation: input.generation,
        start_ms: input.start_ms,
    };
    let body = match &input.kind {
        Kind::Announce {
            role: r,
            ready_ms,
            heartbeat_ms,
            claim_heard,
            name,
            addresses,
            state,
        } => Body::Announce(Announce {
            role: role(*r),
            rank,
            ready_ms: *ready_ms,
            heartbeat_ms: *heartbeat_ms,
            claim_heard: *claim_heard,
            name,
            addresses,
            state,
        }),
        Kind::Ack {
            to,
            generation,
            role: r,
            ready_ms,
        } => Body::Ack(Ack {
            to: *to,
            generation: *generation,
            role: role(*r),
            rank,
            ready_ms: *ready_ms,
        }),
        Kind::Goodbye(successor) => Body::Goodbye(Goodbye {
            successor: *successor,
        }),
    };
    let packet = Packet {
        header: Header {
            scope: input.scope,
            sender: input.sender,
            counter: input.counter,
        },
        body,
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let emitted = match &input.key {
        Some(key) => packet.emit_tagged(key, &mut buf),
        None => packet.emit(&mut buf),
    };
    let Ok(n) = emitted else {
        assert!(
            !packet.within_limits(),
            "a packet within the limits fits MAX_DATAGRAM"
        );
        return;
    };
    let frame = Frame::parse(&buf[..n]).expect("encoded packets decode");
    assert_eq!(frame.packet, packet);
    match (&input.key, frame.tag) {
        (Some(key), Some(tag)) => assert!(auth::verify(key, frame.covered, tag)),
        (None, None) => {}
        _ => panic!("tag presence must survive the round trip"),
    }
});
