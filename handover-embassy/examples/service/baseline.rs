//! The same board and network stack with a UDP socket on the group and no handover:
//! the size baseline for `handover` (see BENCHMARKS.md).
#![no_std]
#![no_main]

use defmt::unwrap;
use embassy_executor::Spawner;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::Ipv4Address;
use static_cell::StaticCell;
use {defmt_rtt as _, panic_probe as _};

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let (stack, _) = board::network(spawner).await;
    let group = Ipv4Address::new(239, 192, 16, 16);
    unwrap!(stack.join_multicast_group(group));
    static BUFFERS: StaticCell<(
        [PacketMetadata; 4],
        [u8; 1024],
        [PacketMetadata; 4],
        [u8; 1024],
    )> = StaticCell::new();
    let (rx_meta, rx, tx_meta, tx) = BUFFERS.init((
        [PacketMetadata::EMPTY; 4],
        [0; 1024],
        [PacketMetadata::EMPTY; 4],
        [0; 1024],
    ));
    let mut socket = UdpSocket::new(stack, rx_meta, rx, tx_meta, tx);
    unwrap!(socket.bind(1538));
    let mut buf = [0u8; 256];
    loop {
        // Echo to the group what arrives.
        if let Ok((n, _)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], (group, 1538)).await;
        }
    }
}
