//! sd_notify messages a child sends on NOTIFY_SOCKET, and group key files: parsing
//! never panics, and a refused key file's message never echoes its content.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = handover_std::notify::parse(data);
    if n.ready {
        assert!(data.windows(7).any(|w| w == b"READY=1"));
    }
    match handover_std::key::parse_key(data) {
        Ok(key) => assert_eq!(data.trim_ascii().len(), 64, "{key:?}"),
        Err(e) => {
            let message = e.to_string();
            let text = String::from_utf8_lossy(data.trim_ascii());
            if text.len() >= 8 && !message.contains("hexadecimal digits") {
                assert!(!message.contains(&*text), "key material echoed");
            }
        }
    }
});
