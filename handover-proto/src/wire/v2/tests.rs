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

/// The shared varint coder writes exactly what postcard writes for the plain types.
#[test]
fn varint_coder_matches_postcard() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Plain {
        a: u32,
        b: u64,
        c: i64,
        d: Option<u64>,
        e: Role,
    }
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Shared {
        #[serde(with = "varint")]
        a: u32,
        #[serde(with = "varint")]
        b: u64,
        #[serde(with = "varint::signed")]
        c: i64,
        #[serde(with = "varint::option")]
        d: Option<u64>,
        e: Role,
    }
    #[derive(Serialize)]
    enum PlainRole {
        _Claiming,
        _Active,
        _Standby,
        Yielding,
    }
    let (mut plain, mut shared) = ([0u8; 64], [0u8; 64]);
    for (a, b, c, d) in [
        (0, 0, 0, None),
        (127, 128, -1, Some(0)),
        (u32::MAX, u64::MAX, i64::MIN, Some(u64::MAX)),
        (300, 1 << 35, i64::MAX, Some(1)),
        (1, 2, -64, Some(16_384)),
    ] {
        let p = postcard::to_slice(&(a, b, c, d, PlainRole::Yielding), &mut plain).unwrap();
        let value = Shared {
            a,
            b,
            c,
            d,
            e: Role::Yielding,
        };
        let s = postcard::to_slice(&value, &mut shared).unwrap();
        assert_eq!(p, s);
        let back: Plain = postcard::from_bytes(s).unwrap();
        assert_eq!(
            (back.a, back.b, back.c, back.d, back.e),
            (a, b, c, d, Role::Yielding)
        );
        assert_eq!(postcard::from_bytes::<Shared>(s).unwrap(), value);
    }
    // Out of range for the field: refused, as postcard refuses it.
    let too_big = postcard::to_slice(&(u64::from(u32::MAX) + 1,), &mut plain).unwrap();
    assert!(postcard::from_bytes::<(u32,)>(too_big).is_err());
    #[derive(Deserialize)]
    struct OneU32(
        #[serde(with = "varint")]
        #[allow(dead_code)]
        u32,
    );
    assert!(postcard::from_bytes::<OneU32>(too_big).is_err());
    assert!(postcard::from_bytes::<Role>(&[4]).is_err());
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
