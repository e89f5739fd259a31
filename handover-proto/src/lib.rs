#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! The handover protocol: hand-over, failover and leader election between instances
//! of a service, as a `no_std`, allocation-free, sans-IO state machine.
//!
//! Two instances of a service that run side by side during an update must agree on
//! who is in charge: the newer one takes over and the older one shuts down cleanly
//! (*hand-over*), or a standby takes over when the active one falls silent
//! (*failover*). [`Peer`] decides; an adapter moves its datagrams and timers:
//! `handover-std` on Linux, `handover-embassy` on embassy-net, or your own.
//!
//! # Sans-IO
//!
//! The crate never touches a socket, a clock or a random source. Everything from the
//! outside world comes in as an argument: the monotonic time ([`Instant`]) with every
//! input, the instance id, wall-clock start time and random seed in the [`Config`].
//! That makes it run unchanged on a Cortex-M and in a container, and makes every
//! scenario reproducible in the [`sim`] simulator (feature `sim`).
//!
//! * **Inputs**: [`Peer::handle_datagram`], [`Peer::handle_timeout`].
//! * **Commands**: [`Peer::ready`], [`Peer::shutdown_complete`], [`Peer::leave`],
//!   [`Peer::set_state`].
//! * **Outputs**: [`Peer::poll_transmit`] (a datagram written into your buffer, and its
//!   [`Destination`]), [`Peer::poll_event`] ([`Event`]s, including the actions
//!   [`Event::Shutdown`] and [`Event::MarkComplete`]), [`Peer::poll_timeout`].
//!
//! # The run loop
//!
//! 1. Create the [`Peer`] with a [`Config`] as soon as the process starts, so it
//!    listens while the application initialises.
//! 2. When the application can serve, call [`Peer::ready`].
//! 3. After every input or command, drain [`Peer::poll_transmit`] until `None`,
//!    sending each datagram to its destination (the v2 group, the legacy group, or a
//!    unicast reply).
//! 4. Drain [`Peer::poll_event`] until `None`. On [`Event::Shutdown`], stop the
//!    service and then call [`Peer::shutdown_complete`]; on [`Event::MarkComplete`],
//!    write the supervisor's completion file.
//! 5. Wait until a datagram arrives (pass it to [`Peer::handle_datagram`]) or until
//!    [`Peer::poll_timeout`] (call [`Peer::handle_timeout`]); go to 3.
//!
//! # Example
//!
//! Two instances on an in-memory "network": the old one is active; the new one
//! becomes ready, and the old one is told to shut down.
//!
//! ```
//! use core::net::SocketAddr;
//! use handover_proto::{wire, Config, Event, Instant, Peer, State, Successor};
//!
//! let scope = wire::scope_id(b"device-1/api");
//! let mut old = Peer::<8>::new(Config::new(scope, 1, 1_700_000_000_000, 11), Instant::ZERO).unwrap();
//! let addr_old: SocketAddr = "10.0.0.1:1538".parse().unwrap();
//! let addr_new: SocketAddr = "10.0.0.2:1538".parse().unwrap();
//!
//! // Steps 3 to 5 for two peers: deliver each one's datagrams to the other and
//! // collect the events of each.
//! fn pump(now: Instant, peers: [(&mut Peer<8>, SocketAddr, &mut Vec<Event>); 2]) {
//!     let [(a, a_addr, a_events), (b, b_addr, b_events)] = peers;
//!     let mut buf = [0u8; wire::MAX_DATAGRAM];
//!     loop {
//!         let mut quiet = true;
//!         while let Some(t) = a.poll_transmit(now, &mut buf) {
//!             b.handle_datagram(now, a_addr, &buf[..t.len]);
//!             b_events.extend(core::iter::from_fn(|| b.poll_event()));
//!             quiet = false;
//!         }
//!         while let Some(t) = b.poll_transmit(now, &mut buf) {
//!             a.handle_datagram(now, b_addr, &buf[..t.len]);
//!             a_events.extend(core::iter::from_fn(|| a.poll_event()));
//!             quiet = false;
//!         }
//!         if quiet { break; }
//!     }
//! }
//!
//! old.ready(Instant::ZERO).unwrap();
//! let mut now = Instant::ZERO;
//! // Step 5: no one else is there; the timers run out and the old instance is in charge.
//! let mut buf = [0u8; wire::MAX_DATAGRAM];
//! while old.state() != State::Active {
//!     while old.poll_transmit(now, &mut buf).is_some() {} // nobody to hear it yet
//!     while old.poll_event().is_some() {}
//!     now = old.poll_timeout().unwrap();
//!     old.handle_timeout(now);
//! }
//! while old.poll_event().is_some() {}
//!
//! // The new instance starts (its wall clock is wrong: it reads 1970) and becomes ready.
//! let mut new = Peer::<8>::new(Config::new(scope, 2, 0, 22), now).unwrap();
//! let (mut old_events, mut new_events) = (Vec::new(), Vec::new());
//! new.ready(now).unwrap();
//! pump(now, [(&mut new, addr_new, &mut new_events), (&mut old, addr_old, &mut old_events)]);
//!
//! // Step 4: the old instance is told to shut down in favour of the new one.
//! assert!(old_events.contains(&Event::Shutdown { successor: Successor::Peer(2) }));
//! old.shutdown_complete(now).unwrap();
//! assert_eq!(old.poll_event(), Some(Event::MarkComplete));
//! pump(now, [(&mut old, addr_old, &mut old_events), (&mut new, addr_new, &mut new_events)]);
//! assert!(new_events.contains(&Event::PredecessorDone { id: 1 }));
//! ```
//!
//! # Features
//!
//! * `defmt`: derive `defmt::Format` and log through defmt (embedded targets).
//! * `log`: log through the `log` crate. Not together with `defmt`.
//! * `sim`: the deterministic network simulator ([`sim`]); needs std.

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
    Auth, Config, ConfigError, Policy, DEFAULT_HEARTBEAT, DEFAULT_PRIORITY, MAX_HEARTBEAT,
    MIN_HEARTBEAT,
};
pub use event::{Destination, Event, State, StateError, Successor, Transmit};
pub use peer::{Peer, PeerInfo, StateTooLong, MAX_GENERATION};
pub use rank::Rank;
pub use stats::Stats;
pub use time::Instant;
