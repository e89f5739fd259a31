//! Today's encoder output, frozen: a peer of a later version must decode these
//! bytes as they are, and this version must keep writing them.

extern crate std;
use super::*;

const KEY: [u8; 32] = [0x11; 32];

fn rank() -> Rank {
    Rank {
        priority: 100,
        generation: 3,
        start_ms: 1_764_633_600_000,
    }
}

fn header() -> Header {
    Header {
        scope: 0x9c3e_4a21,
        sender: 0x0123_4567_89ab_cdef,
        counter: 42,
    }
}

fn messages() -> [(&'static str, Repr<'static>); 4] {
    let announce = |role, addresses: &'static [u8], state: &'static [u8]| Announce {
        role,
        rank: rank(),
        ready_ms: 1500,
        heartbeat_ms: 1000,
        claim_heard: None,
        name: b"api",
        addresses,
        state,
    };
    [
        (
            "claim",
            Repr {
                header: header(),
                body: Body::Announce(announce(Role::Claiming, &[], &[])),
            },
        ),
        (
            "heartbeat",
            Repr {
                header: header(),
                body: Body::Announce(Announce {
                    claim_heard: Some(7),
                    ..announce(Role::Active, &[10, 114, 104, 2, 192, 168, 1, 20], b"v1")
                }),
            },
        ),
        (
            "ack",
            Repr {
                header: header(),
                body: Body::Ack(Ack {
                    to: 7,
                    generation: 4,
                    role: Role::Active,
                    rank: rank(),
                    ready_ms: 60_000,
                }),
            },
        ),
        (
            "goodbye",
            Repr {
                header: header(),
                body: Body::Goodbye(Goodbye { successor: Some(7) }),
            },
        ),
    ]
}

#[cfg(feature = "checkpoints")]
fn checkpoint_messages() -> [(&'static str, Repr<'static>); 2] {
    [
        (
            "checkpoint",
            Repr {
                header: header(),
                body: Body::Checkpoint(Checkpoint { seq: 10_000 }),
            },
        ),
        (
            "checkpoint ack",
            Repr {
                header: header(),
                body: Body::CheckpointAck(CheckpointAck { to: 7, seq: 10_000 }),
            },
        ),
    ]
}

#[test]
fn a_datagram_of_the_next_version_is_read_with_its_extensions_skipped() {
    let (_, repr) = messages()[1];
    let mut plain = [0u8; MAX_DATAGRAM + 64];
    let n_plain = repr.emit(&mut plain).unwrap();
    // What a later version might add: a record this one does not know.
    let unknown = Extension {
        kind: 0x21,
        data: b"checkpoint 17",
    };
    let empty = Extension {
        kind: 0x22,
        data: b"",
    };
    let mut buf = [0u8; MAX_DATAGRAM + 64];
    let n = repr.emit_extended(&[unknown, empty], &mut buf).unwrap();
    assert_eq!(
        &buf[2..n_plain],
        &plain[2..n_plain],
        "the body is unchanged"
    );
    let packet = Packet::parse(&buf[..n]).unwrap();
    assert_eq!(packet.repr, repr);
    let records: std::vec::Vec<_> = packet.extensions.iter().collect();
    assert_eq!(records, [unknown, empty]);
    assert!(Packet::parse(&plain[..n_plain])
        .unwrap()
        .extensions
        .is_empty());

    // Tagged: the tag covers the records.
    let n = repr
        .emit_tagged_extended(&KEY, &[unknown], &mut buf)
        .unwrap();
    let packet = Packet::parse(&buf[..n]).unwrap();
    assert!(crate::wire::auth::verify(
        &KEY,
        packet.covered,
        packet.tag.unwrap()
    ));
    assert_eq!(packet.extensions.iter().next(), Some(unknown));
    let at = n - TAG_LEN - 1;
    buf[at] ^= 1;
    let tampered = Packet::parse(&buf[..n]).unwrap();
    assert!(!crate::wire::auth::verify(
        &KEY,
        tampered.covered,
        tampered.tag.unwrap()
    ));

    // A critical one it does not know: dropped, and said why.
    let critical = Extension {
        kind: EXTENSION_CRITICAL | 0x21,
        data: b"new meaning",
    };
    let n = repr.emit_extended(&[unknown, critical], &mut buf).unwrap();
    assert_eq!(
        Packet::parse(&buf[..n]),
        Err(DecodeError::UnknownCriticalExtension)
    );
    // A record that runs past the end, or half a record header.
    let n = repr.emit_extended(&[unknown], &mut buf).unwrap();
    assert_eq!(Packet::parse(&buf[..n - 1]), Err(DecodeError::Truncated));
    buf[n] = 0x23;
    assert_eq!(Packet::parse(&buf[..n + 1]), Err(DecodeError::Truncated));
    // Without the flag, bytes after the body are still refused.
    buf[1] = 0;
    assert_eq!(Packet::parse(&buf[..n]), Err(DecodeError::Trailing));
    let long = [0u8; MAX_EXTENSION_DATA + 1];
    let too_long = Extension {
        kind: 1,
        data: &long,
    };
    assert_eq!(
        repr.emit_extended(&[too_long], &mut [0u8; 512]),
        Err(EmitError::FieldTooLong)
    );
}

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

#[test]
fn encodings_are_frozen() {
    let frozen = [
        (
            "claim",
            "4800a194f9e109ef9bafcdf8acd191012a000064038080dfc5db66dc0be80700036170690000",
            "4801a194f9e109ef9bafcdf8acd191012a000064038080dfc5db66dc0be80700036170690000\
             4e88875fe15791d4d0d20a73d25f49f8",
        ),
        (
            "heartbeat",
            "4800a194f9e109ef9bafcdf8acd191012a000164038080dfc5db66dc0be807010703617069080a\
             726802c0a80114027631",
            "4801a194f9e109ef9bafcdf8acd191012a000164038080dfc5db66dc0be807010703617069080a\
             726802c0a801140276311029c340583ffda09a5c5f88a474a513",
        ),
        (
            "ack",
            "4800a194f9e109ef9bafcdf8acd191012a0107040164038080dfc5db66e0d403",
            "4801a194f9e109ef9bafcdf8acd191012a0107040164038080dfc5db66e0d403\
             3e029a575a0eceabd41dd610ebbf6c38",
        ),
        (
            "goodbye",
            "4800a194f9e109ef9bafcdf8acd191012a020107",
            "4801a194f9e109ef9bafcdf8acd191012a020107d4c98964bae4f70eb42cc340adc8c276",
        ),
    ];
    check_frozen(&messages(), &frozen);
}

#[test]
#[cfg(feature = "checkpoints")]
fn checkpoint_encodings_are_frozen() {
    let frozen = [
        (
            "checkpoint",
            "4800a194f9e109ef9bafcdf8acd191012a03904e",
            "4801a194f9e109ef9bafcdf8acd191012a03904ec5db7a58615973bc1b0a07bf381b5c07",
        ),
        (
            "checkpoint ack",
            "4800a194f9e109ef9bafcdf8acd191012a0407904e",
            "4801a194f9e109ef9bafcdf8acd191012a0407904e66d4d7f614ed0986f1fd60ae558afef5",
        ),
    ];
    check_frozen(&checkpoint_messages(), &frozen);
}

/// Each message encodes, plain and tagged, to its frozen hex.
fn check_frozen(messages: &[(&str, Repr<'_>)], frozen: &[(&str, &str, &str)]) {
    assert_eq!(messages.len(), frozen.len());
    for ((name, repr), &(frozen_name, plain, tagged)) in messages.iter().zip(frozen) {
        assert_eq!(*name, frozen_name);
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = repr.emit(&mut buf).unwrap();
        assert_eq!(hex(&buf[..n]), plain, "{name}, untagged");
        assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, *repr, "{name}");
        let n = repr.emit_tagged(&KEY, &mut buf).unwrap();
        assert_eq!(hex(&buf[..n]), tagged, "{name}, tagged");
        assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, *repr, "{name}");
    }
}
