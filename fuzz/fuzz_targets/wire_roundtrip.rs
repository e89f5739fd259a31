//! decode(encode(x)) == x for every message within the limits, tagged or not, with
//! or without extension records (those a later version would add: skipped and
//! kept if not critical, refused if critical); messages beyond the limits are
//! refused by the encoder, never emitted.
#![no_main]

use arbitrary::Arbitrary;
use handover_proto::wire::{
    auth, Ack, Announce, Body, Checkpoint, CheckpointAck, DecodeError, Extension, Goodbye, Header,
    Packet, Rank, Repr, Role, EXTENSION_CRITICAL, MAX_DATAGRAM,
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
    Checkpoint(u64),
    CheckpointAck {
        to: u64,
        seq: u64,
    },
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
    extensions: Vec<(u8, Vec<u8>)>,
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
        Kind::Checkpoint(seq) => Body::Checkpoint(Checkpoint { seq: *seq }),
        Kind::CheckpointAck { to, seq } => {
            Body::CheckpointAck(CheckpointAck { to: *to, seq: *seq })
        }
    };
    let repr = Repr {
        header: Header {
            scope: input.scope,
            sender: input.sender,
            counter: input.counter,
        },
        body,
    };
    let extensions: Vec<Extension> = input
        .extensions
        .iter()
        .map(|(kind, data)| Extension { kind: *kind, data })
        .collect();
    let room: usize = extensions.iter().map(|e| 2 + e.data.len()).sum();
    let mut buf = vec![0u8; MAX_DATAGRAM + room];
    let emitted = match &input.key {
        Some(key) => repr.emit_tagged_extended(key, &extensions, &mut buf),
        None => repr.emit_extended(&extensions, &mut buf),
    };
    let Ok(n) = emitted else {
        assert!(
            !repr.within_limits() || extensions.iter().any(|e| e.data.len() > 255),
            "a message within the limits, with its records, fits"
        );
        return;
    };
    let parsed = Packet::parse(&buf[..n]);
    if extensions.iter().any(|e| e.kind & EXTENSION_CRITICAL != 0) {
        assert_eq!(parsed, Err(DecodeError::UnknownCriticalExtension));
        return;
    }
    let packet = parsed.expect("encoded messages decode");
    assert_eq!(packet.repr, repr);
    assert!(packet.extensions.iter().eq(extensions.iter().copied()));
    match (&input.key, packet.tag) {
        (Some(key), Some(tag)) => assert!(auth::verify(key, packet.covered, tag)),
        (None, None) => {}
        _ => panic!("tag presence must survive the round trip"),
    }
});
