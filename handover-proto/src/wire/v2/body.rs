//! The bodies of v2 datagrams, one per message kind, and what they carry.

use postcard::ser_flavors::Flavor;

use super::codec::{Reader, Writer};

/// Where a sender stands in the ordering; with the sender id it makes a
/// [`crate::Rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rank {
    /// Configured priority (failover); equal for all peers in hand-over.
    pub priority: u8,
    /// Lamport-style generation: one more than the highest generation the sender had
    /// heard when it claimed.
    pub generation: u32,
    /// The sender's wall-clock start time in ms since the Unix epoch (a tie-breaker only).
    pub start_ms: i64,
}

/// Where `ready_ms` stops growing: about 71.6 minutes (peers keep it in 32-bit
/// microseconds). Only a claimer compares it, against a peer it hears during its claim;
/// two peers both ready for longer are ordered by rank alone.
pub const MAX_READY_MS: u32 = u32::MAX / 1000;

/// The role a sender announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Ready and claiming to be in charge.
    Claiming,
    /// In charge.
    Active,
    /// Ready, deferring to an active peer (failover).
    Standby,
    /// Superseded and shutting down (hand-over).
    Yielding,
}

/// A claim (role [`Role::Claiming`]) or a heartbeat (any other role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce<'a> {
    /// Role of the sender.
    pub role: Role,
    /// Rank of the sender.
    pub rank: Rank,
    /// Milliseconds since the sender became ready, on its own clock: lets a claimer
    /// tell an earlier peer from a concurrent one without comparing clocks. Stops
    /// growing at [`MAX_READY_MS`].
    pub ready_ms: u32,
    /// The sender's heartbeat interval in ms, from which receivers derive when to
    /// consider it dead.
    pub heartbeat_ms: u32,
    /// The last claimer whose claim the sender acknowledged: tells that claimer its
    /// claim was heard even if every acknowledgement was lost.
    pub claim_heard: Option<u64>,
    /// Service name, at most [`MAX_NAME`](super::MAX_NAME) bytes: UTF-8 from this crate's peers, but
    /// opaque to the protocol, which never interprets it (on the wire a postcard
    /// string and a byte string are the same bytes).
    pub name: &'a [u8],
    /// IPv4 addresses, 4 bytes each, at most [`MAX_ADDRESSES`](super::MAX_ADDRESSES).
    pub addresses: &'a [u8],
    /// Application state of an active peer, at most [`MAX_STATE`](super::MAX_STATE) bytes.
    pub state: &'a [u8],
}

/// Acknowledges a claim (or, to a departing peer, its goodbye).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack {
    /// The peer whose claim or goodbye is acknowledged.
    pub to: u64,
    /// The claim generation acknowledged.
    pub generation: u32,
    /// Role of the acknowledging peer.
    pub role: Role,
    /// Rank of the acknowledging peer.
    pub rank: Rank,
    /// Milliseconds since the acknowledging peer became ready.
    pub ready_ms: u32,
}

/// The sender has finished (or is leaving) and will send nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Goodbye {
    /// The peer it handed over to, if any.
    pub successor: Option<u64>,
}

#[cfg(feature = "checkpoints")]
/// Failover: the active peer's progress (for a work queue, the last task it
/// completed), sent to the group the moment it changes and repeated until every
/// standby acknowledges it. Checkpoints only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Checkpoint {
    /// The progress.
    pub seq: u64,
}

#[cfg(feature = "checkpoints")]
/// Acknowledges a [`Checkpoint`], as a unicast reply: the checkpoint the sender
/// holds, which may be later than the one it answers (a standby that heard more from
/// an earlier active).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CheckpointAck {
    /// The active peer acknowledged.
    pub to: u64,
    /// The checkpoint the sender holds.
    pub seq: u64,
}

/// The message kinds. New kinds go at the end: a decoder that predates one drops
/// it as malformed, and every other kind keeps its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// A claim or a heartbeat.
    Announce(Announce<'a>),
    /// An acknowledgement, sent as a unicast reply.
    Ack(Ack),
    /// A departure.
    Goodbye(Goodbye),
    /// The active peer's progress.
    #[cfg(feature = "checkpoints")]
    Checkpoint(Checkpoint),
    /// A standby holds a checkpoint.
    #[cfg(feature = "checkpoints")]
    CheckpointAck(CheckpointAck),
}

impl Body<'_> {
    /// The peer a unicast reply is for.
    pub fn to(&self) -> Option<u64> {
        match self {
            Body::Ack(ack) => Some(ack.to),
            #[cfg(feature = "checkpoints")]
            Body::CheckpointAck(ack) => Some(ack.to),
            _ => None,
        }
    }

    /// Whether it still means what it says when it arrives after a later datagram
    /// of its sender: acknowledgements and checkpoints (which only grow) do.
    pub fn survives_reordering(&self) -> bool {
        match self {
            Body::Ack(_) => true,
            #[cfg(feature = "checkpoints")]
            Body::Checkpoint(_) | Body::CheckpointAck(_) => true,
            _ => false,
        }
    }
}

// Each type's fields in the order they travel, through postcard (see `codec`).

impl Role {
    fn read(r: &mut Reader<'_>) -> Self {
        match r.index(4) {
            0 => Role::Claiming,
            1 => Role::Active,
            2 => Role::Standby,
            _ => Role::Yielding,
        }
    }

    fn write<F: Flavor>(self, w: &mut Writer<F>) {
        w.varint(self as u64)
    }
}

impl Rank {
    fn read(r: &mut Reader<'_>) -> Self {
        Rank {
            priority: r.byte(),
            generation: r.int(),
            start_ms: r.signed(),
        }
    }

    fn write<F: Flavor>(&self, w: &mut Writer<F>) {
        w.byte(self.priority);
        w.varint(self.generation.into());
        w.signed(self.start_ms)
    }
}

impl<'a> Announce<'a> {
    fn read(r: &mut Reader<'a>) -> Self {
        Announce {
            role: Role::read(r),
            rank: Rank::read(r),
            ready_ms: r.int(),
            heartbeat_ms: r.int(),
            claim_heard: r.option(),
            name: r.bytes(),
            addresses: r.bytes(),
            state: r.bytes(),
        }
    }

    fn write<F: Flavor>(&self, w: &mut Writer<F>) {
        self.role.write(w);
        self.rank.write(w);
        w.varint(self.ready_ms.into());
        w.varint(self.heartbeat_ms.into());
        w.option(self.claim_heard);
        w.bytes(self.name);
        w.bytes(self.addresses);
        w.bytes(self.state)
    }
}

impl Ack {
    fn read(r: &mut Reader<'_>) -> Self {
        Ack {
            to: r.varint(),
            generation: r.int(),
            role: Role::read(r),
            rank: Rank::read(r),
            ready_ms: r.int(),
        }
    }

    fn write<F: Flavor>(&self, w: &mut Writer<F>) {
        w.varint(self.to);
        w.varint(self.generation.into());
        self.role.write(w);
        self.rank.write(w);
        w.varint(self.ready_ms.into())
    }
}

/// How many message kinds this build knows.
const KINDS: u8 = if cfg!(feature = "checkpoints") { 5 } else { 3 };

impl<'a> Body<'a> {
    /// The kind (the variant's index), then its fields.
    pub(super) fn read(r: &mut Reader<'a>) -> Self {
        match r.index(KINDS) {
            0 => Body::Announce(Announce::read(r)),
            1 => Body::Ack(Ack::read(r)),
            #[cfg(feature = "checkpoints")]
            3 => Body::Checkpoint(Checkpoint { seq: r.varint() }),
            #[cfg(feature = "checkpoints")]
            4 => Body::CheckpointAck(CheckpointAck {
                to: r.varint(),
                seq: r.varint(),
            }),
            // 2, or a kind refused (the reader holds the error).
            _ => Body::Goodbye(Goodbye {
                successor: r.option(),
            }),
        }
    }

    pub(super) fn write<F: Flavor>(&self, w: &mut Writer<F>) {
        match self {
            Body::Announce(announce) => {
                w.varint(0);
                announce.write(w)
            }
            Body::Ack(ack) => {
                w.varint(1);
                ack.write(w)
            }
            Body::Goodbye(goodbye) => {
                w.varint(2);
                w.option(goodbye.successor)
            }
            #[cfg(feature = "checkpoints")]
            Body::Checkpoint(checkpoint) => {
                w.varint(3);
                w.varint(checkpoint.seq)
            }
            #[cfg(feature = "checkpoints")]
            Body::CheckpointAck(ack) => {
                w.varint(4);
                w.varint(ack.to);
                w.varint(ack.seq)
            }
        }
    }
}
