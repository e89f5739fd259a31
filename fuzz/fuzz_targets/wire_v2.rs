//! v2 decode of arbitrary bytes: never panics; whatever decodes re-encodes to a
//! datagram that decodes to the same packet.
#![no_main]

use handover_proto::wire::{Datagram, Frame, MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Datagram::parse(data);
    if let Ok(frame) = Frame::parse(data) {
        assert!(frame.packet.within_limits());
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = frame
            .packet
            .emit(&mut buf)
            .expect("a decoded packet re-encodes");
        assert_eq!(n, frame.packet.buffer_len());
        let again = Frame::parse(&buf[..n]).expect("re-encoded packet decodes");
        assert_eq!(again.packet, frame.packet);
    }
});
