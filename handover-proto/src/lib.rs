#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! TODO crate docs

#[macro_use]
mod fmt;
mod config;
mod event;
mod peer;
mod rank;
mod stats;
mod time;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;

pub use config::{
    Config, ConfigError, Policy, DEFAULT_HEARTBEAT, DEFAULT_PRIORITY, MAX_HEARTBEAT, MIN_HEARTBEAT,
};
pub use event::{Destination, Event, State, StateError, Transmit};
pub use peer::{Peer, PeerInfo, StateTooLong};
pub use rank::Rank;
pub use stats::Stats;
pub use time::Instant;
