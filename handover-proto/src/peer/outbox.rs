//! What a peer has to say: datagrams due, replies owed and events queued, in the
//! order [`Peer::poll_transmit`](super::Peer::poll_transmit) and
//! [`Peer::poll_event`](super::Peer::poll_event) hand them out. Event payloads are
//! bound when the event is queued: a later input cannot change what an event
//! already queued says.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::num::{NonZeroU32, NonZeroU64};
use heapless::{Deque, Vec};

use crate::event::{Event, Successor};
use crate::wire::{self, MAX_STATE};

/// Most events a single input can cause. A datagram is refused (and counted) unless
/// the event queue is empty, and expiries wait while fewer than this many fit, so no
/// event is ever lost.
pub(super) const EVENTS_PER_INPUT: usize = 4;
/// Capacity of the event queue: one input's events plus the two a command can add.
const EVENT_QUEUE: usize = EVENTS_PER_INPUT + 2;
/// Acknowledgements waiting to be sent.
const REPLY_QUEUE: usize = 2;

/// A datagram the peer sends when it is due: at most one of each kind waits,
/// and they go out in this order, after the acknowledgements owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "checkpoints"), allow(dead_code))]
pub(super) enum Due {
    /// Our acknowledgement of the active's checkpoint, to it.
    CheckpointAck,
    /// Our checkpoint, to the group (active).
    Checkpoint,
    /// The goodbye, to the group.
    Goodbye,
    /// A claim or heartbeat, to the group.
    Announce,
    /// A handover-lib announcement, to its group.
    Legacy,
}

impl Due {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// What [`Peer::poll_transmit`](super::Peer::poll_transmit) sends next.
#[derive(Debug, Clone, Copy)]
pub(super) enum Outgoing {
    /// An acknowledgement of a claim or a goodbye.
    Ack(Reply),
    /// A kind that was due.
    Due(Due),
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// The [`Due`] kinds waiting, one bit each.
    due: u8,
    /// Where the leader waits for an acknowledgement of its checkpoint (one leader,
    /// one slot).
    pub(super) checkpoint_ack: Option<SocketAddrV4>,
    replies: Vec<Reply, REPLY_QUEUE>,
    /// Events are queued small; the one `PeerUp` and the one `Synced` an input can
    /// cause keep their payload in a slot until polled (inputs are refused while
    /// events are undrained, so one slot each is enough).
    events: Deque<Pending, EVENT_QUEUE>,
    peer_up: (
        Vec<u8, { wire::MAX_NAME }>,
        Vec<Ipv4Addr, { wire::MAX_ADDRESSES }>,
    ),
    /// The leader's state as `Synced` reports it: a later `set_state` does not change
    /// an event already queued.
    synced_state: Vec<u8, MAX_STATE>,
    /// Hash of the state last reported in `Synced`, so that each state of a leader
    /// is reported once (non-zero: 4 bytes, the flags above fill the rest of 8).
    synced: Option<NonZeroU32>,
}

impl Outbox {
    /// Owes `id` an acknowledgement of claim `generation` (0: of its goodbye); one
    /// per peer is enough. `false` if there is no room.
    #[inline]
    pub(super) fn reply(&mut self, to: SocketAddrV4, id: u64, generation: u32) -> bool {
        let id = CompactId::from(id);
        if let Some(pending) = self.replies.iter_mut().find(|r| r.id == id) {
            pending.generation = pending.generation.max(generation);
            return true;
        }
        self.replies.push(Reply { to, id, generation }).is_ok()
    }

    /// Makes `kind` due, or no longer due.
    #[inline]
    pub(super) fn set_due(&mut self, kind: Due, due: bool) {
        // Without a branch: as small as setting a flag.
        self.due = (self.due & !kind.bit()) | (u8::from(due) << kind as u8);
    }

    /// The next datagram to send: the acknowledgements owed first, then the
    /// kinds due, in [`Due`]'s order.
    #[inline]
    pub(super) fn next(&mut self) -> Option<Outgoing> {
        if let Some(reply) = self.replies.pop() {
            return Some(Outgoing::Ack(reply));
        }
        let kind = match self.due.trailing_zeros() {
            0 => Due::CheckpointAck,
            1 => Due::Checkpoint,
            2 => Due::Goodbye,
            3 => Due::Announce,
            4 => Due::Legacy,
            _ => return None,
        };
        self.set_due(kind, false);
        Some(Outgoing::Due(kind))
    }

    #[inline]
    pub(super) fn push(&mut self, event: Pending) {
        // Room is reserved before every input (EVENTS_PER_INPUT), so this cannot fail;
        // commands add at most two events to a queue that inputs keep half free.
        let _ = self.events.push_back(event);
    }

    /// Queues `PeerUp` for `id`, with what it announced.
    #[inline]
    pub(super) fn peer_up(
        &mut self,
        id: u64,
        name: Vec<u8, { wire::MAX_NAME }>,
        addresses: Vec<Ipv4Addr, { wire::MAX_ADDRESSES }>,
    ) {
        self.peer_up = (name, addresses);
        self.push(Pending::PeerUp(id.into()));
    }

    /// Queues `Synced` with the leader's `state`, unless it was the last one
    /// reported (or longer than [`MAX_STATE`]); whether it did.
    #[inline]
    pub(super) fn synced(&mut self, state: &[u8]) -> bool {
        let hash = NonZeroU32::new(wire::scope_id(state)).unwrap_or(NonZeroU32::MIN);
        if self.synced == Some(hash) {
            return false;
        }
        self.synced = Some(hash);
        let Ok(state) = Vec::from_slice(state) else {
            return false;
        };
        self.synced_state = state;
        self.push(Pending::Synced);
        true
    }

    /// A new leader: its first state is reported whatever it is.
    #[inline]
    pub(super) fn forget_synced(&mut self) {
        self.synced = None;
    }

    #[inline]
    pub(super) fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// How many more events fit.
    #[inline]
    pub(super) fn event_room(&self) -> usize {
        self.events.capacity() - self.events.len()
    }

    /// Whether anything waits to be polled.
    #[inline]
    pub(super) fn has_output(&self) -> bool {
        !self.replies.is_empty() || !self.events.is_empty() || self.due != 0
    }

    #[inline]
    pub(super) fn next_event(&mut self) -> Option<Event> {
        Some(match self.events.pop_front()? {
            Pending::Shutdown(successor) => Event::Shutdown {
                successor: match NonZeroU64::new(successor.into()) {
                    Some(id) => Successor::Peer(id.get()),
                    None => Successor::Legacy,
                },
            },
            Pending::MarkComplete => Event::MarkComplete,
            Pending::PredecessorDone(id) => Event::PredecessorDone { id: id.into() },
            Pending::Elected => Event::Elected,
            Pending::Demoted => Event::Demoted,
            Pending::LeaderChanged(id) => Event::LeaderChanged {
                id: Some(id.into()),
            },
            Pending::LeaderLost => Event::LeaderChanged { id: None },
            Pending::Synced => Event::Synced {
                state: core::mem::take(&mut self.synced_state),
            },
            Pending::PeerUp(id) => {
                let (name, addresses) = core::mem::take(&mut self.peer_up);
                Event::PeerUp {
                    id: id.into(),
                    name,
                    addresses,
                }
            }
            Pending::PeerDown(id) => Event::PeerDown { id: id.into() },
            Pending::Checkpoint(seq) => Event::Checkpoint { seq: seq.into() },
            Pending::CheckpointHeld(seq) => Event::CheckpointHeld { seq: seq.into() },
        })
    }
}

/// An event as queued: payloads too large to queue wait in the peer's slots, filled
/// when the event is queued. Payloads are at most one id (id 0 for none), keeping each
/// entry at 12 bytes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pending {
    /// The successor, or 0.
    Shutdown(CompactId),
    MarkComplete,
    PredecessorDone(CompactId),
    Elected,
    Demoted,
    LeaderChanged(CompactId),
    LeaderLost,
    Synced,
    PeerUp(CompactId),
    PeerDown(CompactId),
    /// The checkpoint it rose to.
    #[cfg_attr(not(feature = "checkpoints"), allow(dead_code))]
    Checkpoint(CompactId),
    #[cfg_attr(not(feature = "checkpoints"), allow(dead_code))]
    CheckpointHeld(CompactId),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    pub(super) to: SocketAddrV4,
    pub(super) id: CompactId,
    /// The claim generation acknowledged.
    pub(super) generation: u32,
}

/// An instance id (or a checkpoint) kept as two halves: with 4-byte alignment a
/// queued event takes 12 bytes instead of 16, a reply 20 instead of 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CompactId([u32; 2]);

impl From<u64> for CompactId {
    fn from(id: u64) -> Self {
        CompactId([id as u32, (id >> 32) as u32])
    }
}

impl From<CompactId> for u64 {
    fn from(id: CompactId) -> u64 {
        u64::from(id.0[0]) | u64::from(id.0[1]) << 32
    }
}
