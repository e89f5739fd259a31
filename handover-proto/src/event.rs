//! What a [`Peer`](crate::Peer) tells its adapter.

use core::net::{Ipv4Addr, SocketAddr};

use heapless::Vec;

use crate::wire::{MAX_ADDRESSES, MAX_NAME, MAX_STATE};

/// The instance that takes over from one asked to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Successor {
    /// A peer of this protocol, by id.
    Peer(u64),
    /// A handover-lib instance (legacy protocol): it has no id.
    Legacy,
}

impl Successor {
    /// The successor's id, if it has one.
    pub fn id(self) -> Option<u64> {
        match self {
            Successor::Peer(id) => Some(id),
            Successor::Legacy => None,
        }
    }
}

/// Something that happened, drained with [`Peer::poll_event`](crate::Peer::poll_event).
/// [`Shutdown`](Event::Shutdown) and [`MarkComplete`](Event::MarkComplete) are actions:
/// the adapter must carry them out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Action: a newer instance has taken over; shut the service down cleanly, then
    /// call [`Peer::shutdown_complete`](crate::Peer::shutdown_complete). Emitted once.
    Shutdown {
        /// The instance that takes over.
        successor: Successor,
    },
    /// Action: write the supervisor's hand-over-complete file (balena's
    /// `/tmp/balena/handover-complete`). Emitted once, after `shutdown_complete`.
    MarkComplete,
    /// The instance this one superseded has finished shutting down.
    PredecessorDone {
        /// The predecessor's id.
        id: u64,
    },
    /// This peer is now in charge.
    Elected,
    /// Failover: this peer was in charge and now stands by for a higher-ranked one.
    Demoted,
    /// The peer in charge changed (it may be this one); `None` when none is known.
    LeaderChanged {
        /// The new leader.
        id: Option<u64>,
    },
    /// Failover: the active peer's application state, when it changes
    /// (see [`Peer::set_state`](crate::Peer::set_state)).
    Synced {
        /// The state bytes.
        state: Vec<u8, MAX_STATE>,
    },
    /// A peer was heard for the first time.
    PeerUp {
        /// Its id.
        id: u64,
        /// Its service name as announced: UTF-8 from this crate's peers, but the
        /// protocol passes it on without looking (`core::str::from_utf8` to read it).
        name: Vec<u8, MAX_NAME>,
        /// The addresses it announces.
        addresses: Vec<Ipv4Addr, MAX_ADDRESSES>,
    },
    /// A peer said goodbye or fell silent for its dead interval, or (a standby,
    /// when the table of peers is full) gave its slot to a new active or claimer.
    PeerDown {
        /// Its id.
        id: u64,
    },
    /// Failover: the checkpoint this peer holds rose (see
    /// [`Peer::checkpoint`](crate::Peer::checkpoint)). On a standby, the active
    /// peer recorded progress; on the active peer, a standby held a later checkpoint
    /// than this one (what an active that died had finished): carry on after it.
    Checkpoint {
        /// The checkpoint now held.
        seq: u64,
    },
    /// Failover, active: every live peer acknowledged checkpoint `seq`; if this
    /// peer dies now, whoever takes over resumes after it. Emitted once per
    /// [`Peer::checkpoint`](crate::Peer::checkpoint).
    CheckpointHeld {
        /// The checkpoint.
        seq: u64,
    },
}

/// Where a datagram from [`Peer::poll_transmit`](crate::Peer::poll_transmit) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The v2 multicast group and port.
    Group,
    /// handover-lib's group and port: only v1 datagrams ever go there.
    LegacyGroup,
    /// A unicast reply to the address a datagram came from.
    Reply(SocketAddr),
}

/// A datagram written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a transmit must be sent, or the protocol stalls until it retries"]
pub struct Transmit {
    /// Where to send it.
    pub destination: Destination,
    /// Its length at the start of the buffer.
    pub len: usize,
}

/// The lifecycle of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Listening, not yet ready: silent.
    Listening,
    /// Ready, announcing its claim until every known peer acknowledged it.
    Claiming,
    /// In charge.
    Active,
    /// Failover: ready, deferring to an active peer.
    Standby,
    /// Hand-over: superseded; the application is shutting down.
    Yielding,
    /// Finished or left; sends its goodbye and then nothing.
    Done,
}

/// A command given in a state that does not allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StateError {
    /// The state the peer was in.
    pub state: State,
}

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "command not allowed in state {:?}", self.state)
    }
}

impl core::error::Error for StateError {}
