//! handover-embassy's input path: datagrams, wrapped in Ethernet/IPv4/UDP frames,
//! delivered through an in-memory embassy-net stack (embassy-net-driver-channel) to
//! the running adapter. Nothing panics, every datagram reaches the peer, and a keyed
//! peer is never moved by them.
#![no_main]

use arbitrary::Arbitrary;
use embassy_futures::select::{select3, Either3};
use embassy_net::StackResources;
use embassy_net_driver_channel as ch;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use handover_embassy::{Buffers, Network, Shared};
use handover_proto::{wire, Auth, Config, Policy, State};
use libfuzzer_sys::fuzz_target;

const MTU: usize = 1514;
const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

#[derive(Debug, Arbitrary)]
struct Input {
    keyed: bool,
    failover: bool,
    ready: bool,
    datagrams: Vec<(bool, u16, Vec<u8>)>,
}

/// An Ethernet frame carrying `payload` in UDP from 10.7.0.9:`port` to the group or,
/// when `unicast`, to the stack's own address.
fn frame(unicast: bool, port: u16, payload: &[u8], out: &mut [u8]) -> usize {
    let group = wire::DEFAULT_GROUP;
    let (dst_mac, dst_ip) = if unicast {
        (OUR_MAC, [10, 7, 0, 1])
    } else {
        (
            [0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]],
            group,
        )
    };
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    out[0..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut out[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 1, 17, 0, 0, 10, 7, 0, 9, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[16..20].copy_from_slice(&dst_ip);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut out[34..42];
    udp[0..2].copy_from_slice(&port.max(1).to_be_bytes());
    udp[2..4].copy_from_slice(&wire::DEFAULT_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]); // no checksum (allowed for IPv4)
    out[42..42 + payload.len()].copy_from_slice(payload);
    42 + payload.len()
}

fuzz_target!(|input: Input| {
    let mut state = ch::State::<MTU, 4, 4>::new();
    let (runner, device) = ch::new(&mut state, ch::driver::HardwareAddress::Ethernet(OUR_MAC));
    let (link, mut rx, mut tx) = runner.split();
    link.set_link_state(ch::driver::LinkState::Up);
    let mut resources = StackResources::<3>::new();
    let ip = embassy_net::Config::ipv4_static(embassy_net::StaticConfigV4 {
        address: embassy_net::Ipv4Cidr::new(embassy_net::Ipv4Address::new(10, 7, 0, 1), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let (stack, mut net) = embassy_net::new(device, ip, &mut resources, 1);
    let mut config = Config::new(wire::scope_id(b"fuzz"), 1, 0, 1);
    if input.failover {
        config.policy = Policy::Failover { preempt: false };
    }
    if input.keyed {
        config.auth = Some(Auth::new([9; 32]));
    }
    let shared = Shared::<NoopRawMutex>::new();
    let mut buffers = Buffers::new();
    let (handover, mut peer) =
        handover_embassy::new::<_, 4>(stack, &mut buffers, &shared, config, Network::default())
            .expect("adapter starts");

    // Longer datagrams than the socket buffer holds are dropped by smoltcp itself.
    let datagrams: Vec<_> = input
        .datagrams
        .iter()
        .filter(|(_, _, p)| p.len() <= 2 * wire::MAX_DATAGRAM)
        .take(16)
        .collect();
    let feed = async {
        if input.ready {
            handover.ready().await;
        }
        // Let the adapter settle and drain what it sends.
        for _ in 0..64 {
            while tx.try_tx_buf().is_some() {
                tx.tx_done();
            }
            embassy_futures::yield_now().await;
        }
        let before = handover.status().map(|s| (s.state, s.leader));
        // Every datagram is either handed to the peer or counted as oversized.
        let seen = || {
            handover
                .status()
                .map_or(0, |s| s.stats.received + s.dropped_oversized)
        };
        for (unicast, port, payload) in &datagrams {
            let before = seen();
            let buf = rx.rx_buf().await;
            let n = frame(*unicast, *port, payload, buf);
            rx.rx_done(n);
            // Wait until the adapter has it (the socket queue is short).
            let mut spins = 0;
            while seen() == before {
                while tx.try_tx_buf().is_some() {
                    tx.tx_done();
                }
                embassy_futures::yield_now().await;
                spins += 1;
                assert!(
                    spins < 100_000,
                    "datagram neither handed to the peer nor counted"
                );
            }
        }
        if input.keyed {
            let after = handover.status().map(|s| (s.state, s.leader));
            if let (Some(b), Some(a)) = (before, after) {
                // Claiming may have completed meanwhile; nothing else may change.
                let settled = b.0 == State::Claiming && a.0 == State::Active;
                assert!(
                    a == b || settled,
                    "unauthenticated datagrams moved the peer: {b:?} -> {a:?}"
                );
            }
        }
    };
    match embassy_futures::block_on(select3(net.run(), peer.run(), feed)) {
        Either3::Third(()) | Either3::Second(()) => {}
        Either3::First(never) => match never {},
    }
});
