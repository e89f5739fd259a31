//! The bodies of v2 datagrams, one per message kind, and what they carry.

use serde::{Deserialize, Serialize};

use super::varint;

/// Where a sender stands in the ordering; with the sender id it makes a
/// [`crate::Rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rank {
    /// Configured priority (failover); equal for all peers in hand-over.
    pub priority: u8,
    /// Lamport-style generation: one more than the highest generation the sender had
    /// heard when it claimed.
    #[serde(with = "varint")]
    pub generation: u32,
    /// The sender's wall-clock start time in ms since the Unix epoch (a tie-breaker only).
    #[serde(with = "varint::signed")]
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

impl From<Role> for u64 {
    fn from(role: Role) -> u64 {
        role as u64
    }
}

impl TryFrom<u64> for Role {
    type Error = ();
    fn try_from(index: u64) -> Result<Self, ()> {
        Ok(match index {
            0 => Role::Claiming,
            1 => Role::Active,
            2 => Role::Standby,
            3 => Role::Yielding,
            _ => return Err(()),
        })
    }
}

// Postcard writes a unit variant as the varint of its index: the same bytes go through
// the shared varint coder instead of serde's enum machinery.
impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        varint::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        varint::deserialize(d)
    }
}

/// A claim (role [`Role::Claiming`]) or a heartbeat (any other role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce<'a> {
    /// Role of the sender.
    pub role: Role,
    /// Rank of the sender.
    pub rank: Rank,
    /// Milliseconds since the sender became ready, on its own clock: lets a claimer
    /// tell an earlier peer from a concurrent one without comparing clocks. Stops
    /// growing at [`MAX_READY_MS`].
    #[serde(with = "varint")]
    pub ready_ms: u32,
    /// The sender's heartbeat interval in ms, from which receivers derive when to
    /// consider it dead.
    #[serde(with = "varint")]
    pub heartbeat_ms: u32,
    /// The last claimer whose claim the sender acknowledged: tells that claimer its
    /// claim was heard even if every acknowledgement was lost.
    #[serde(with = "varint::option")]
    pub claim_heard: Option<u64>,
    /// Service name, at most [`MAX_NAME`](super::MAX_NAME) bytes: UTF-8 from this crate's peers, but
    /// opaque to the protocol, which never interprets it (on the wire a postcard
    /// string and a byte string are the same bytes).
    #[serde(borrow, with = "bytes")]
    pub name: &'a [u8],
    /// IPv4 addresses, 4 bytes each, at most [`MAX_ADDRESSES`](super::MAX_ADDRESSES).
    #[serde(borrow, with = "bytes")]
    pub addresses: &'a [u8],
    /// Application state of an active peer, at most [`MAX_STATE`](super::MAX_STATE) bytes.
    #[serde(borrow, with = "bytes")]
    pub state: &'a [u8],
}

/// Acknowledges a claim (or, to a departing peer, its goodbye).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack {
    /// The peer whose claim or goodbye is acknowledged.
    #[serde(with = "varint")]
    pub to: u64,
    /// The claim generation acknowledged.
    #[serde(with = "varint")]
    pub generation: u32,
    /// Role of the acknowledging peer.
    pub role: Role,
    /// Rank of the acknowledging peer.
    pub rank: Rank,
    /// Milliseconds since the acknowledging peer became ready.
    #[serde(with = "varint")]
    pub ready_ms: u32,
}

/// The sender has finished (or is leaving) and will send nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Goodbye {
    /// The peer it handed over to, if any.
    #[serde(with = "varint::option")]
    pub successor: Option<u64>,
}

#[cfg(feature = "checkpoints")]
/// Failover: the active peer's progress (for a work queue, the last task it
/// completed), sent to the group the moment it changes and repeated until every
/// standby acknowledges it. Checkpoints only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Checkpoint {
    /// The progress.
    #[serde(with = "varint")]
    pub seq: u64,
}

#[cfg(feature = "checkpoints")]
/// Acknowledges a [`Checkpoint`], as a unicast reply: the checkpoint the sender
/// holds, which may be later than the one it answers (a standby that heard more from
/// an earlier active).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CheckpointAck {
    /// The active peer acknowledged.
    #[serde(with = "varint")]
    pub to: u64,
    /// The checkpoint the sender holds.
    #[serde(with = "varint")]
    pub seq: u64,
}

/// The message kinds. New kinds go at the end: a decoder that predates one drops
/// it as malformed, and every other kind keeps its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<'a> {
    /// A claim or a heartbeat.
    #[serde(borrow)]
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

mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<&'a [u8], D::Error> {
        <&'a [u8]>::deserialize(d)
    }
}
