use super::*;

fn heartbeat<'a>(name: &'a str, addresses: &'a [u8], state: &'a [u8]) -> Repr<'a> {
    Repr {
        header: Header {
            scope: 0x0102_0304,
            sender: 5,
            counter: 300,
        },
        body: Body::Announce(Announce {
            role: Role::Active,
            rank: Rank {
                priority: 100,
                generation: 2,
                start_ms: -1,
            },
            ready_ms: 250,
            heartbeat_ms: 1000,
            claim_heard: Some(3),
            name: name.as_bytes(),
            addresses,
            state,
        }),
    }
}

// magic, flags, scope varint(0x01020304), sender 5, counter varint(300),
// Body::Announce (0), Role::Active (1), priority 100, generation 2,
// start_ms zigzag(-1) = 1, ready_ms varint(250), heartbeat varint(1000),
// claim_heard Some(3), name "db", 1 address, state [7], then two spare bytes.
const HEARTBEAT: [u8; 32] = [
    0x48, 0x00, 0x84, 0x86, 0x88, 0x08, 0x05, 0xac, 0x02, 0x00, 0x01, 0x64, 0x02, 0x01, 0xfa, 0x01,
    0xe8, 0x07, 0x01, 0x03, 0x02, b'd', b'b', 0x04, 10, 114, 104, 1, 0x01, 0x07, 0, 0,
];
const LEN: usize = 30;

#[test]
fn test_emit() {
    let mut buf = [0u8; MAX_DATAGRAM];
    let p = heartbeat("db", &[10, 114, 104, 1], &[7]);
    let n = p.emit(&mut buf).unwrap();
    assert_eq!(&buf[..n], &HEARTBEAT[..LEN]);
    assert_eq!(p.buffer_len(), n);
}

#[test]
fn test_parse() {
    let f = Packet::parse(&HEARTBEAT[..LEN]).unwrap();
    assert_eq!(f.repr, heartbeat("db", &[10, 114, 104, 1], &[7]));
    assert_eq!(f.tag, None);
    assert_eq!(f.covered.len(), LEN);
}

#[test]
fn test_parse_ack_and_goodbye() {
    // magic, flags, scope 1, sender 2, counter 3, Body::Ack (1), to 9,
    // generation 4, Role::Yielding (3), priority 0, generation 1, start_ms 2 (zigzag 4),
    // ready_ms 5.
    let ack = [0x48, 0, 1, 2, 3, 1, 9, 4, 3, 0, 1, 4, 5];
    let f = Packet::parse(&ack).unwrap();
    assert_eq!(
        f.repr.body,
        Body::Ack(Ack {
            to: 9,
            generation: 4,
            role: Role::Yielding,
            rank: Rank {
                priority: 0,
                generation: 1,
                start_ms: 2
            },
            ready_ms: 5,
        })
    );
    let bye = [0x48, 0, 1, 2, 3, 2, 1, 9];
    let f = Packet::parse(&bye).unwrap();
    assert_eq!(f.repr.body, Body::Goodbye(Goodbye { successor: Some(9) }));
}

#[test]
fn test_truncated() {
    for len in 1..LEN {
        let r = Packet::parse(&HEARTBEAT[..len]);
        assert_eq!(r, Err(DecodeError::Truncated), "length {len}");
    }
}

#[test]
fn test_trailing() {
    assert_eq!(
        Packet::parse(&HEARTBEAT[..LEN + 1]),
        Err(DecodeError::Trailing)
    );
}

#[test]
fn test_overlong_scope() {
    // The same scope id in five bytes instead of four: refused, so that the
    // scope's bytes at offset 2 are always `scope_prefix`.
    let mut bytes = [0u8; LEN + 1];
    bytes[..5].copy_from_slice(&HEARTBEAT[..5]);
    bytes[5] = 0x88;
    bytes[6] = 0x00;
    bytes[7..].copy_from_slice(&HEARTBEAT[6..LEN]);
    assert_eq!(Packet::parse(&bytes), Err(DecodeError::Malformed));
    assert_eq!(
        Packet::parse(&HEARTBEAT[..LEN]).unwrap().repr.header.scope,
        0x0102_0304
    );
}

#[test]
fn test_tagged() {
    let mut bytes = [0u8; LEN + TAG_LEN];
    bytes[..LEN].copy_from_slice(&HEARTBEAT[..LEN]);
    bytes[1] = FLAG_TAGGED;
    bytes[LEN..].fill(0xaa);
    let f = Packet::parse(&bytes).unwrap();
    assert_eq!(f.tag, Some(&[0xaa; TAG_LEN]));
    assert_eq!(f.covered, &bytes[..LEN]);
    // A tag flag on a datagram too short to hold one.
    assert_eq!(Packet::parse(&[0x48, 1, 0]), Err(DecodeError::Truncated));
}

#[test]
fn test_bad_flags_and_fields() {
    let mut bytes = HEARTBEAT;
    bytes[1] = 0x80;
    assert_eq!(Packet::parse(&bytes[..LEN]), Err(DecodeError::BadFlags));
    // Three address bytes: not a whole IPv4 address.
    let p = heartbeat("db", &[1, 2, 3], &[]);
    let mut buf = [0u8; MAX_DATAGRAM];
    assert_eq!(p.emit(&mut buf), Err(EmitError::FieldTooLong));
    // Unknown body discriminant.
    assert_eq!(
        Packet::parse(&[0x48, 0, 1, 2, 3, 9]),
        Err(DecodeError::Malformed)
    );
}

/// The message types as plain serde structs, as postcard derives their encoding:
/// the reference the field-by-field codec must match byte for byte (and the
/// encoding releases before it wrote).
mod reference {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    pub struct Repr<'a> {
        pub header: (u32, u64, u64),
        #[serde(borrow)]
        pub body: Body<'a>,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    pub enum Body<'a> {
        Announce(
            Role,
            Rank,
            u32,
            u32,
            Option<u64>,
            &'a [u8],
            &'a [u8],
            &'a [u8],
        ),
        Ack(u64, u32, Role, Rank, u32),
        Goodbye(Option<u64>),
        Checkpoint(u64),
        CheckpointAck(u64, u64),
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone, Copy)]
    pub enum Role {
        Claiming,
        Active,
        Standby,
        Yielding,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug, Clone, Copy)]
    pub struct Rank(pub u8, pub u32, pub i64);
}

fn reference<'a>(repr: &Repr<'a>) -> reference::Repr<'a> {
    let role = |r: Role| {
        [
            reference::Role::Claiming,
            reference::Role::Active,
            reference::Role::Standby,
            reference::Role::Yielding,
        ][r as usize]
    };
    let rank = |r: Rank| reference::Rank(r.priority, r.generation, r.start_ms);
    let h = repr.header;
    reference::Repr {
        header: (h.scope, h.sender, h.counter),
        body: match repr.body {
            Body::Announce(a) => reference::Body::Announce(
                role(a.role),
                rank(a.rank),
                a.ready_ms,
                a.heartbeat_ms,
                a.claim_heard,
                a.name,
                a.addresses,
                a.state,
            ),
            Body::Ack(a) => {
                reference::Body::Ack(a.to, a.generation, role(a.role), rank(a.rank), a.ready_ms)
            }
            Body::Goodbye(g) => reference::Body::Goodbye(g.successor),
            #[cfg(feature = "checkpoints")]
            Body::Checkpoint(c) => reference::Body::Checkpoint(c.seq),
            #[cfg(feature = "checkpoints")]
            Body::CheckpointAck(a) => reference::Body::CheckpointAck(a.to, a.seq),
        },
    }
}

fn arbitrary_repr() -> impl proptest::strategy::Strategy<Value = (Repr<'static>, u8)> {
    use proptest::prelude::*;
    let bytes = |max: usize| proptest::collection::vec(any::<u8>(), 0..=max);
    (
        (any::<u32>(), 1..=u64::MAX, any::<u64>()),
        (any::<u8>(), any::<u32>(), any::<i64>()),
        (0..4usize, 0..5u8),
        (
            any::<u32>(),
            any::<u32>(),
            any::<Option<u64>>(),
            any::<u64>(),
        ),
        (bytes(MAX_NAME), bytes(MAX_ADDRESSES), bytes(MAX_STATE)),
    )
        .prop_map(
            |(
                (scope, sender, counter),
                (p, g, s),
                (role, kind),
                (a, b, option, big),
                (name, addresses, state),
            )| {
                let role = [Role::Claiming, Role::Active, Role::Standby, Role::Yielding][role];
                let rank = Rank {
                    priority: p,
                    generation: g,
                    start_ms: s,
                };
                // Leaked so that the bodies can borrow them, as a decoded datagram does.
                let leak = |v: std::vec::Vec<u8>| &*std::boxed::Box::leak(v.into_boxed_slice());
                let addresses = leak(addresses[..addresses.len() / 4 * 4].to_vec());
                let body = match kind {
                    0 => Body::Announce(Announce {
                        role,
                        rank,
                        ready_ms: a,
                        heartbeat_ms: b,
                        claim_heard: option,
                        name: leak(name),
                        addresses,
                        state: leak(state),
                    }),
                    1 => Body::Ack(Ack {
                        to: big,
                        generation: a,
                        role,
                        rank,
                        ready_ms: b,
                    }),
                    #[cfg(feature = "checkpoints")]
                    3 => Body::Checkpoint(Checkpoint { seq: big }),
                    #[cfg(feature = "checkpoints")]
                    4 => Body::CheckpointAck(CheckpointAck {
                        to: big,
                        seq: option.unwrap_or(0),
                    }),
                    _ => Body::Goodbye(Goodbye { successor: option }),
                };
                (
                    Repr {
                        header: Header {
                            scope,
                            sender,
                            counter,
                        },
                        body,
                    },
                    kind,
                )
            },
        )
}

extern crate std;

proptest::proptest! {
    /// Every message is written as postcard writes its plain serde form, and read
    /// back from those bytes.
    #[test]
    fn the_codec_writes_and_reads_what_postcard_derives((repr, _kind) in arbitrary_repr()) {
        let mut ours = [0u8; MAX_DATAGRAM];
        let n = repr.emit(&mut ours).unwrap();
        let mut theirs = [0u8; MAX_DATAGRAM];
        let expected = postcard::to_slice(&reference(&repr), &mut theirs).unwrap();
        proptest::prop_assert_eq!(&ours[2..n], &*expected);
        proptest::prop_assert_eq!(repr.buffer_len(), n);
        proptest::prop_assert_eq!(Packet::parse(&ours[..n]).unwrap().repr, repr);
        let back: reference::Repr<'_> = postcard::from_bytes(&ours[2..n]).unwrap();
        proptest::prop_assert_eq!(back, reference(&repr));
    }
}

/// Out of its field's range, or an unknown kind or role: refused, as postcard
/// refuses it.
#[test]
fn out_of_range_fields_are_refused() {
    let mut bytes = [0u8; 64];
    // A scope one past u32::MAX (the header's first field).
    let n = postcard::to_slice(
        &(u64::from(u32::MAX) + 1, 1u8, 1u8, 2u8, None::<u64>),
        &mut bytes[2..],
    )
    .unwrap()
    .len();
    bytes[0] = MAGIC;
    assert_eq!(Packet::parse(&bytes[..2 + n]), Err(DecodeError::Malformed));
    let n = postcard::to_slice(&(7u8, 1u8, 1u8, 2u8, None::<u64>), &mut bytes[2..])
        .unwrap()
        .len();
    let goodbye = Packet::parse(&bytes[..2 + n]).unwrap();
    assert_eq!(
        goodbye.repr.body,
        Body::Goodbye(Goodbye { successor: None })
    );
    // The same with kind 9, and with an option tag of 2.
    bytes[5] = 9;
    assert_eq!(Packet::parse(&bytes[..2 + n]), Err(DecodeError::Malformed));
    bytes[5] = 2;
    bytes[6] = 2;
    assert_eq!(Packet::parse(&bytes[..2 + n]), Err(DecodeError::Malformed));
    // An acknowledgement whose role is 4.
    let ack = [MAGIC, 0, 1, 2, 3, 1, 9, 4, 4, 0, 1, 4, 5];
    assert_eq!(Packet::parse(&ack), Err(DecodeError::Malformed));
    let ack = [MAGIC, 0, 1, 2, 3, 1, 9, 4, 3, 0, 1, 4, 5];
    assert!(Packet::parse(&ack).is_ok());
}

#[test]
fn names_pass_through_unread() {
    // Not UTF-8: the protocol never interprets the name, so it does not reject it.
    let mut odd = HEARTBEAT;
    odd[21] = 0xff;
    let packet = Packet::parse(&odd[..LEN]).unwrap();
    let Body::Announce(a) = packet.repr.body else {
        panic!("a heartbeat")
    };
    assert_eq!(a.name, [0xff, b'b']);
}

#[test]
fn worst_case_fits_documented_maximum() {
    let name = "n".repeat(MAX_NAME);
    let addresses = [0xffu8; 4 * MAX_ADDRESSES];
    let state = [0xffu8; MAX_STATE];
    let mut p = heartbeat(&name, &addresses, &state);
    p.header = Header {
        scope: u32::MAX,
        sender: u64::MAX,
        counter: u64::MAX,
    };
    if let Body::Announce(a) = &mut p.body {
        a.rank = Rank {
            priority: u8::MAX,
            generation: u32::MAX,
            start_ms: i64::MIN,
        };
        a.heartbeat_ms = u32::MAX;
        a.ready_ms = u32::MAX;
        a.claim_heard = Some(u64::MAX);
    }
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = p.emit(&mut buf).unwrap();
    assert!(n + TAG_LEN <= MAX_DATAGRAM, "{n} + tag > {MAX_DATAGRAM}");
    // The extremes survive the shared varint coder.
    assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, p);
    if let Body::Announce(a) = &mut p.body {
        a.rank.start_ms = i64::MAX;
    }
    let n = p.emit(&mut buf).unwrap();
    assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, p);
    if let Body::Announce(a) = &mut p.body {
        a.addresses = &[];
        a.state = &[];
    }
    assert!(p.buffer_len() + TAG_LEN <= MAX_DATAGRAM_BASE);
}
