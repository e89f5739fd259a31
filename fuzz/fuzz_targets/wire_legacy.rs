//! handover-lib's 9-byte format: decoding never panics, and what decodes re-encodes to
//! the same bytes.
#![no_main]

use handover_proto::wire::legacy::{Announce, LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announce::parse(data) {
        let mut buf = [0u8; LEN];
        let n = a.emit(&mut buf).expect("fits");
        assert_eq!(&buf[..n], data);
    }
});
