//! Baseline: the firmware skeleton without a peer.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use handover_size_probe::{poll_input, transmit};
use panic_halt as _;

#[entry]
fn main() -> ! {
    let mut tick = 0u32;
    loop {
        let (len, _now) = poll_input(tick);
        transmit(len);
        tick = tick.wrapping_add(1);
    }
}
