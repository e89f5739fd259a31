//! v2 decode of arbitrary bytes: never panics; whatever decodes re-encodes to a
//! datagram that decodes to the same packet.
#![no_main]

use handover_proto::wire::{Datagram, Packet, MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Datagram::parse(data);
    if let Ok(packet) = Packet::parse(data) {
        assert!(packet.repr.within_limits());
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = packet
            .repr
            .emit(&mut buf)
            .expect("a decoded repr re-encodes");
        assert_eq!(n, packet.repr.buffer_len());
        let again = Packet::parse(&buf[..n]).expect("re-encoded repr decodes");
        assert_eq!(again.repr, packet.repr);
    }
});
