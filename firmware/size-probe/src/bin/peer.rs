//! The same skeleton driving one hand-over `Peer`.
#![no_std]
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use cortex_m_rt::entry;
use handover_proto::{wire, Config, Event, Instant, Peer};
use handover_size_probe::{poll_input, transmit, RX};
use panic_halt as _;

#[entry]
fn main() -> ! {
    let config = Config::new(wire::scope_id(b"probe"), 0x1234, 0, 42);
    let Ok(mut peer) = Peer::<8>::new(config, Instant::ZERO) else {
        loop {}
    };
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), wire::DEFAULT_PORT);
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut tick = 0u32;
    loop {
        let (len, now) = poll_input(tick);
        let now = Instant::from_micros(now);
        if tick == 10 {
            let _ = peer.ready(now);
        }
        if len > 0 {
            // SAFETY: single-threaded firmware.
            let rx = unsafe { &*(&raw const RX) };
            peer.handle_datagram(now, source, &rx[..len.min(rx.len())]);
        }
        if peer.poll_timeout().is_some_and(|t| t <= now) {
            peer.handle_timeout(now);
        }
        while let Some(t) = peer.poll_transmit(now, &mut buf) {
            transmit(t.len);
        }
        while let Some(event) = peer.poll_event() {
            if let Event::Shutdown { .. } = event {
                let _ = peer.shutdown_complete(now);
            }
        }
        tick = tick.wrapping_add(1);
    }
}
