//! embassy-net stacks on the host: joined in memory (embassy-net-driver-channel) or on
//! a TAP device, running `handover-embassy` as firmware would.

use embassy_net::{Config, Ipv4Address, Ipv4Cidr, StaticConfigV4};
use embassy_net_driver_channel as ch;

/// Ethernet MTU of the in-memory link.
pub const MTU: usize = 1514;

/// A static IPv4 configuration `address/24`.
pub fn ipv4(address: [u8; 4]) -> Config {
    Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::from(address), 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// Whether an Ethernet frame is a unicast UDP/IPv4 datagram.
pub fn is_unicast_udp(frame: &[u8]) -> bool {
    frame.len() > 23 && frame[0] & 1 == 0 && frame[12..14] == [0x08, 0x00] && frame[23] == 17
}

/// Carries frames from `from`'s transmit side to `to`'s receive side, forever (one
/// direction of an Ethernet cable), dropping the first `drop_unicast` unicast UDP
/// datagrams: what a stack does while it resolves the receiver's address.
pub async fn cable(
    mut from: ch::TxRunner<'_, MTU>,
    mut to: ch::RxRunner<'_, MTU>,
    mut drop_unicast: usize,
) {
    loop {
        let frame = from.tx_buf().await;
        if drop_unicast > 0 && is_unicast_udp(frame) {
            drop_unicast -= 1;
            from.tx_done();
            continue;
        }
        let len = frame.len();
        let dst = to.rx_buf().await;
        dst[..len].copy_from_slice(frame);
        to.rx_done(len);
        from.tx_done();
    }
}
