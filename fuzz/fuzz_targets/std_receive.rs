//! handover-std's receive paths from raw datagram to events: the passive observer
//! (`handover watch`) and the peer the driver runs, with and without a key.
#![no_main]

use std::net::SocketAddr;

use handover_proto::{Instant, Peer};
use handover_std::{Config, GroupKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let from = SocketAddr::from(([192, 168, 1, 2], 1538));
    for keys in [&[][..], &[[3; 32]][..]] {
        if let Ok(Some(s)) = handover_std::observe::sighting(from, data, keys) {
            assert!(s.name.chars().count() <= handover_proto::wire::MAX_NAME);
            assert!(s.addresses.len() <= handover_proto::wire::MAX_ADDRESSES);
            // Authenticity is claimed only with a key, and never for v1.
            assert_eq!(s.authentic.is_some(), !keys.is_empty() && !s.legacy);
        }
    }
    for key in [None, Some(GroupKey([3; 32]))] {
        let config = Config {
            scope: "fuzz".into(),
            key,
            ..Config::default()
        };
        let proto = config.to_proto(1, 0, 0, &[]).expect("valid");
        let mut peer = Peer::<32>::new(proto, Instant::ZERO).expect("valid");
        peer.handle_datagram(Instant::from_micros(1), from, data);
        let mut buf = [0u8; handover_proto::wire::MAX_DATAGRAM];
        while peer
            .poll_transmit(Instant::from_micros(1), &mut buf)
            .is_some()
        {}
        while peer.poll_event().is_some() {}
        assert_eq!(peer.stats().received, 1);
    }
});
