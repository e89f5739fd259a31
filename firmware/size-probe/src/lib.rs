//! What both probes share: a source of datagrams and time the optimizer cannot see
//! through, so the baseline keeps the same I/O skeleton as the probe with a peer.
#![no_std]

use core::ptr::{read_volatile, write_volatile};

/// Stand-in for a network driver's receive buffer.
pub static mut RX: [u8; 256] = [0; 256];
/// Stand-in for a network driver's transmit buffer.
pub static mut TX: [u8; 256] = [0; 256];

/// Reads a "received" datagram's length and a "clock" the compiler cannot predict.
pub fn poll_input(tick: u32) -> (usize, u64) {
    // SAFETY: single-threaded firmware; volatile keeps the buffers observable.
    let len = unsafe { read_volatile(&raw const RX[0]) } as usize;
    (len, u64::from(tick) * 1000)
}

/// "Sends" a datagram of `len` bytes.
pub fn transmit(len: usize) {
    // SAFETY: as above.
    unsafe { write_volatile(&raw mut TX[0], len as u8) };
}
