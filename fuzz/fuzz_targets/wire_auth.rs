//! Authenticated decode: arbitrary bytes never verify under the group key (a forgery
//! would have to guess 128 bits), and a validly tagged datagram with any byte changed
//! no longer does.
#![no_main]

use arbitrary::Arbitrary;
use handover_proto::wire::{auth, Packet};
use libfuzzer_sys::fuzz_target;

const KEY: auth::Key = [0x6b; 32];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    bytes: &'a [u8],
    flip_at: usize,
    flip: u8,
}

fuzz_target!(|input: Input<'_>| {
    if let Ok(packet) = Packet::parse(input.bytes) {
        if let Some(tag) = packet.tag {
            assert!(
                !auth::verify(&KEY, packet.covered, tag),
                "forged tag accepted"
            );
        }
        // Tag what was decoded, then tamper with one byte.
        let mut buf = [0u8; handover_proto::wire::MAX_DATAGRAM];
        let n = packet.repr.emit_tagged(&KEY, &mut buf).expect("re-encodes");
        let valid = Packet::parse(&buf[..n]).expect("decodes");
        assert!(auth::verify(
            &KEY,
            valid.covered,
            valid.tag.expect("tagged")
        ));
        if input.flip != 0 {
            buf[input.flip_at % n] ^= input.flip;
            if let Ok(tampered) = Packet::parse(&buf[..n]) {
                if let Some(tag) = tampered.tag {
                    assert!(
                        !auth::verify(&KEY, tampered.covered, tag),
                        "tampering undetected"
                    );
                }
            }
        }
    }
});
