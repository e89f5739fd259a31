//! The v2 datagram: magic, flags, a postcard body, optional extension records and an
//! optional authentication tag. [`Packet`] is the checked view of one (as smoltcp's
//! `Packet`), [`Repr`] what it says (as smoltcp's `Repr`).

use serde::{Deserialize, Serialize};

use super::{DecodeError, EmitError};

/// First byte of every v2 datagram.
pub const MAGIC: u8 = 0x48;
/// Flag bit: an authentication tag of [`TAG_LEN`] bytes ends the datagram.
const FLAG_TAGGED: u8 = 0x01;
/// Flag bit: extension records follow the body.
const FLAG_EXTENDED: u8 = 0x02;
/// Flag bits no version has used yet: a datagram with one set is dropped.
pub const RESERVED_FLAGS: u8 = !(FLAG_TAGGED | FLAG_EXTENDED);
/// Bit of an extension's kind: a decoder that does not know the kind must drop the
/// datagram rather than skip the record (the extension changes what the rest means).
pub const EXTENSION_CRITICAL: u8 = 0x80;
/// Extension record on announcements and goodbyes: the checkpoint the sender holds
/// (a postcard varint), so that a peer learns the fleet's progress from anyone it
/// hears, even a departing active peer whose last checkpoint was overtaken by its
/// goodbye. Not critical: a peer without checkpoints skips it.
#[cfg(feature = "checkpoints")]
pub const EXTENSION_CHECKPOINT: u8 = 0x01;
/// Extension record on announcements and goodbyes: what the sender supports, as
/// [`Capabilities`] bits (a postcard varint u32). Peers owe each other only what
/// they said they support: an active peer waits for checkpoint acknowledgements
/// only from standbys that can send them. Not critical: older peers skip it, and
/// a peer that sends none supports nothing optional.
pub const EXTENSION_CAPABILITIES: u8 = 0x02;
/// Longest extension record's data.
pub const MAX_EXTENSION_DATA: usize = 255;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Longest service name a heartbeat carries, in bytes.
pub const MAX_NAME: usize = 32;
/// Most IPv4 addresses a heartbeat carries.
pub const MAX_ADDRESSES: usize = 8;
/// Most bytes of application state a heartbeat carries.
pub const MAX_STATE: usize = 64;
/// Largest v2 datagram, tag and this version's extension records included.
pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_BASE
    + 1
    + 4 * MAX_ADDRESSES
    + 1
    + MAX_STATE
    + CHECKPOINT_RECORD_MAX
    + CAPABILITIES_RECORD_MAX;
/// A checkpoint extension record: kind, length, a varint u64.
const CHECKPOINT_RECORD_MAX: usize = 2 + 10;
/// A capabilities extension record: kind, length, a varint u32.
const CAPABILITIES_RECORD_MAX: usize = 2 + 5;

/// What a peer supports beyond the base protocol, as it announces it
/// ([`EXTENSION_CAPABILITIES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities(pub u32);

impl Capabilities {
    /// It acknowledges checkpoints (the `checkpoints` feature).
    pub const CHECKPOINTS: Capabilities = Capabilities(1);

    /// This build's.
    pub const fn own() -> Self {
        match cfg!(feature = "checkpoints") {
            true => Self::CHECKPOINTS,
            false => Capabilities(0),
        }
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// The capabilities announced in `extensions`, if a record says.
    pub fn announced(extensions: &Extensions<'_>) -> Option<Self> {
        extensions
            .iter()
            .filter(|e| e.kind == EXTENSION_CAPABILITIES)
            .find_map(|e| postcard::from_bytes::<u32>(e.data).ok())
            .map(Capabilities)
    }
}
/// Largest v2 datagram without addresses and application state, tag included.
pub const MAX_DATAGRAM_BASE: usize = 2 + HEADER_MAX + 1 + ANNOUNCE_BASE_MAX + TAG_LEN;

// The documented size goal: a datagram without addresses and state fits in 128 bytes.
const _: () = assert!(MAX_DATAGRAM_BASE <= 128);

/// Postcard's worst case for the header: varint u32 (5) + varint u64 (10) twice.
const HEADER_MAX: usize = 5 + 10 + 10;
/// Worst case for an announcement with a full name but empty addresses and state: role,
/// rank (1 + 5 + 10), time since ready (5), heartbeat interval (5), claim heard (1 + 10),
/// name (1 + 32), two empty lengths.
const ANNOUNCE_BASE_MAX: usize = 1 + 16 + 5 + 5 + 11 + 1 + MAX_NAME + 2;

/// Fields every v2 datagram starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Hash of the scope string ([`scope_id`](super::scope_id)); datagrams of another
    /// scope are ignored.
    #[serde(with = "varint")]
    pub scope: u32,
    /// The sender's instance id; never 0 (reserved: "nobody").
    #[serde(with = "varint")]
    pub sender: u64,
    /// A per-sender counter that grows with every datagram it sends.
    #[serde(with = "varint")]
    pub counter: u64,
}

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
    /// Service name, at most [`MAX_NAME`] bytes: UTF-8 from this crate's peers, but
    /// opaque to the protocol, which never interprets it (on the wire a postcard
    /// string and a byte string are the same bytes).
    #[serde(borrow, with = "bytes")]
    pub name: &'a [u8],
    /// IPv4 addresses, 4 bytes each, at most [`MAX_ADDRESSES`].
    #[serde(borrow, with = "bytes")]
    pub addresses: &'a [u8],
    /// Application state of an active peer, at most [`MAX_STATE`] bytes.
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

/// A decoded v2 message: header and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repr<'a> {
    /// Scope, sender and counter.
    pub header: Header,
    /// What the sender says.
    #[serde(borrow)]
    pub body: Body<'a>,
}

/// A parsed v2 datagram: what it says, its extension records, and when present its
/// authentication tag together with the bytes it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The decoded message.
    pub repr: Repr<'a>,
    /// The extension records after the body: checked, none critical and unknown.
    pub extensions: Extensions<'a>,
    /// The tag, if the sender attached one.
    pub tag: Option<&'a [u8; TAG_LEN]>,
    /// The bytes the tag covers: everything before it.
    pub covered: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses a v2 datagram. Never panics; the result respects every documented limit.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (&magic, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if magic != MAGIC {
            return Err(DecodeError::UnknownFormat(magic));
        }
        let (&flags, _) = rest.split_first().ok_or(DecodeError::Truncated)?;
        if flags & RESERVED_FLAGS != 0 {
            return Err(DecodeError::BadFlags);
        }
        let (covered, tag) = if flags & FLAG_TAGGED != 0 {
            let at = bytes
                .len()
                .checked_sub(TAG_LEN)
                .filter(|&at| at >= 2)
                .ok_or(DecodeError::Truncated)?;
            let (covered, tag) = bytes.split_at(at);
            (
                covered,
                Some(tag.try_into().map_err(|_| DecodeError::Truncated)?),
            )
        } else {
            (bytes, None)
        };
        let (repr, trailing) =
            postcard::take_from_bytes::<Repr<'a>>(&covered[2..]).map_err(|e| match e {
                postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
                _ => DecodeError::Malformed,
            })?;
        let extensions = match flags & FLAG_EXTENDED {
            0 if !trailing.is_empty() => return Err(DecodeError::Trailing),
            0 => Extensions(&[]),
            _ => Extensions::parse(trailing)?,
        };
        if !repr.within_limits() {
            return Err(DecodeError::Malformed);
        }
        // Only the shortest encoding of the scope: where a datagram's scope is can
        // then be told from its first bytes alone (see `scope_prefix`).
        if super::has_scope(covered, repr.header.scope) != Some(true) {
            return Err(DecodeError::Malformed);
        }
        Ok(Packet {
            repr,
            extensions,
            tag,
            covered,
        })
    }
}

/// An extension record: what a newer version adds to a datagram without a new
/// format. Today's decoder skips the kinds it does not know (all of them, in this
/// version) unless the kind is marked [`EXTENSION_CRITICAL`]; the tag covers the
/// records like every other byte.
///
/// On the wire, after the body: `kind` (1 byte), `len` (1 byte), then `len` bytes,
/// record after record, up to the tag or the end; the flags' bit 1 says they are
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Extension<'a> {
    /// What it is; [`EXTENSION_CRITICAL`] set if it must be understood.
    pub kind: u8,
    /// Its data, at most [`MAX_EXTENSION_DATA`] bytes.
    pub data: &'a [u8],
}

/// A datagram's extension records, checked: each ends within the datagram, and
/// none is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions<'a>(&'a [u8]);

impl<'a> Extensions<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut rest = bytes;
        while let [kind, len, data @ ..] = rest {
            rest = data.get(*len as usize..).ok_or(DecodeError::Truncated)?;
            // No kind is known yet: a critical one cannot be understood.
            if kind & EXTENSION_CRITICAL != 0 {
                return Err(DecodeError::UnknownCriticalExtension);
            }
        }
        match rest {
            [] => Ok(Extensions(bytes)),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = Extension<'a>> {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            let [kind, len, data @ ..] = rest else {
                return None;
            };
            let (data, next) = data.split_at_checked(*len as usize)?;
            rest = next;
            Some(Extension { kind: *kind, data })
        })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Repr<'_> {
    /// True when every variable-length field is within its documented limit and the
    /// sender is not the reserved id 0.
    pub fn within_limits(&self) -> bool {
        self.header.sender != 0
            && match &self.body {
                Body::Announce(a) => {
                    a.name.len() <= MAX_NAME
                        && a.addresses.len() % 4 == 0
                        && a.addresses.len() <= 4 * MAX_ADDRESSES
                        && a.state.len() <= MAX_STATE
                }
                _ => true,
            }
    }

    /// Writes the message as an untagged v2 datagram into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        if !self.within_limits() {
            return Err(EmitError::FieldTooLong);
        }
        let [magic, flags, body @ ..] = buf else {
            return Err(EmitError::BufferTooSmall);
        };
        *magic = MAGIC;
        *flags = 0;
        let len = postcard::to_slice(self, body)
            .map_err(|_| EmitError::BufferTooSmall)?
            .len();
        Ok(2 + len)
    }

    /// The same followed by `extensions` (none: exactly [`emit`](Self::emit)'s
    /// bytes). A peer of this version skips them unless one is critical.
    pub fn emit_extended(
        &self,
        extensions: &[Extension<'_>],
        buf: &mut [u8],
    ) -> Result<usize, EmitError> {
        let mut len = self.emit(buf)?;
        for e in extensions {
            let size = u8::try_from(e.data.len()).map_err(|_| EmitError::FieldTooLong)?;
            let record = buf
                .get_mut(len..len + 2 + e.data.len())
                .ok_or(EmitError::BufferTooSmall)?;
            record[0] = e.kind;
            record[1] = size;
            record[2..].copy_from_slice(e.data);
            len += record.len();
            buf[1] |= FLAG_EXTENDED;
        }
        Ok(len)
    }

    #[cfg(feature = "auth")]
    /// Writes the message as a tagged v2 datagram ([`auth`](super::auth)) into `buf`;
    /// returns its length.
    pub fn emit_tagged(&self, key: &super::auth::Key, buf: &mut [u8]) -> Result<usize, EmitError> {
        let len = self.emit(buf)?;
        tag(key, buf, len)
    }

    #[cfg(feature = "auth")]
    /// The same with `extensions`, which the tag covers too.
    pub fn emit_tagged_extended(
        &self,
        key: &super::auth::Key,
        extensions: &[Extension<'_>],
        buf: &mut [u8],
    ) -> Result<usize, EmitError> {
        let len = self.emit_extended(extensions, buf)?;
        tag(key, buf, len)
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        // Serializing into a size counter cannot fail for these types.
        2 + postcard::experimental::serialized_size(self).unwrap_or(usize::MAX - 2)
    }
}

/// Tags the `len` bytes of datagram `buf` and appends the tag; the new length.
#[cfg(feature = "auth")]
fn tag(key: &super::auth::Key, buf: &mut [u8], len: usize) -> Result<usize, EmitError> {
    let end = len + TAG_LEN;
    if buf.len() < end {
        return Err(EmitError::BufferTooSmall);
    }
    buf[1] |= FLAG_TAGGED;
    let tag = super::auth::tag(key, &buf[..len]);
    buf[len..end].copy_from_slice(&tag);
    Ok(end)
}

/// Serializes byte strings as postcard bytes (a length and the raw bytes); the
/// borrowed `&[u8]` deserializer reads the same layout.
/// Every integer goes through one `u64` varint encoder and decoder: the bytes are the
/// same as postcard's own encodings of the plain types, and a 32-bit target (a
/// microcontroller, whose flash is scarce) carries one copy of each instead of one
/// inlined per field, about 1.2 KB less. 64-bit hosts inline them for speed.
mod varint {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Copy + Into<u64>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        put((*v).into(), s)
    }

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn put<S: Serializer>(v: u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        T::try_from(take(d)?).map_err(|_| D::Error::custom("varint out of range"))
    }

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn take<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        u64::deserialize(d)
    }

    /// `i64` as postcard writes it: zigzag (0, -1, 1, -2 … as 0, 1, 2, 3 …), then
    /// the varint, through the same coder.
    pub mod signed {
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
            super::put(((*v << 1) ^ (*v >> 63)) as u64, s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
            let z = super::take(d)?;
            Ok((z >> 1) as i64 ^ -((z & 1) as i64))
        }
    }

    /// `Option<u64>` as postcard writes it (0, or 1 then the varint), through the
    /// same coder.
    pub mod option {
        use serde::de::{Error, Visitor};
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match *v {
                None => s.serialize_none(),
                Some(v) => s.serialize_some(&Varint(v)),
            }
        }

        struct Varint(u64);

        impl serde::Serialize for Varint {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                super::put(self.0, s)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }

        struct OptionVisitor;

        impl<'de> Visitor<'de> for OptionVisitor {
            type Value = Option<u64>;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("an optional varint")
            }

            fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::take(d).map(Some)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat<'a>(name: &'a str, addresses: &'a [u8], state: &'a [u8]) -> Repr<'a> {
        Repr {
            header: Header {
                scope: 0x0102_0304,
                sender: 5,
                counter: 300,
            },
            body: Body::Announce(Announce {
                role: Role::Active,
                rank: Rank {
                    priority: 100,
                    generation: 2,
                    start_ms: -1,
                },
                ready_ms: 250,
                heartbeat_ms: 1000,
                claim_heard: Some(3),
                name: name.as_bytes(),
                addresses,
                state,
            }),
        }
    }

    // magic, flags, scope varint(0x01020304), sender 5, counter varint(300),
    // Body::Announce (0), Role::Active (1), priority 100, generation 2,
    // start_ms zigzag(-1) = 1, ready_ms varint(250), heartbeat varint(1000),
    // claim_heard Some(3), name "db", 1 address, state [7], then two spare bytes.
    const HEARTBEAT: [u8; 32] = [
        0x48, 0x00, 0x84, 0x86, 0x88, 0x08, 0x05, 0xac, 0x02, 0x00, 0x01, 0x64, 0x02, 0x01, 0xfa,
        0x01, 0xe8, 0x07, 0x01, 0x03, 0x02, b'd', b'b', 0x04, 10, 114, 104, 1, 0x01, 0x07, 0, 0,
    ];
    const LEN: usize = 30;

    #[test]
    fn test_emit() {
        let mut buf = [0u8; MAX_DATAGRAM];
        let p = heartbeat("db", &[10, 114, 104, 1], &[7]);
        let n = p.emit(&mut buf).unwrap();
        assert_eq!(&buf[..n], &HEARTBEAT[..LEN]);
        assert_eq!(p.buffer_len(), n);
    }

    #[test]
    fn test_parse() {
        let f = Packet::parse(&HEARTBEAT[..LEN]).unwrap();
        assert_eq!(f.repr, heartbeat("db", &[10, 114, 104, 1], &[7]));
        assert_eq!(f.tag, None);
        assert_eq!(f.covered.len(), LEN);
    }

    #[test]
    fn test_parse_ack_and_goodbye() {
        // magic, flags, scope 1, sender 2, counter 3, Body::Ack (1), to 9,
        // generation 4, Role::Yielding (3), priority 0, generation 1, start_ms 2 (zigzag 4),
        // ready_ms 5.
        let ack = [0x48, 0, 1, 2, 3, 1, 9, 4, 3, 0, 1, 4, 5];
        let f = Packet::parse(&ack).unwrap();
        assert_eq!(
            f.repr.body,
            Body::Ack(Ack {
                to: 9,
                generation: 4,
                role: Role::Yielding,
                rank: Rank {
                    priority: 0,
                    generation: 1,
                    start_ms: 2
                },
                ready_ms: 5,
            })
        );
        let bye = [0x48, 0, 1, 2, 3, 2, 1, 9];
        let f = Packet::parse(&bye).unwrap();
        assert_eq!(f.repr.body, Body::Goodbye(Goodbye { successor: Some(9) }));
    }

    #[test]
    fn test_truncated() {
        for len in 1..LEN {
            let r = Packet::parse(&HEARTBEAT[..len]);
            assert_eq!(r, Err(DecodeError::Truncated), "length {len}");
        }
    }

    #[test]
    fn test_trailing() {
        assert_eq!(
            Packet::parse(&HEARTBEAT[..LEN + 1]),
            Err(DecodeError::Trailing)
        );
    }

    #[test]
    fn test_overlong_scope() {
        // The same scope id in five bytes instead of four: refused, so that the
        // scope's bytes at offset 2 are always `scope_prefix`.
        let mut bytes = [0u8; LEN + 1];
        bytes[..5].copy_from_slice(&HEARTBEAT[..5]);
        bytes[5] = 0x88;
        bytes[6] = 0x00;
        bytes[7..].copy_from_slice(&HEARTBEAT[6..LEN]);
        assert_eq!(Packet::parse(&bytes), Err(DecodeError::Malformed));
        assert_eq!(
            Packet::parse(&HEARTBEAT[..LEN]).unwrap().repr.header.scope,
            0x0102_0304
        );
    }

    #[test]
    fn test_tagged() {
        let mut bytes = [0u8; LEN + TAG_LEN];
        bytes[..LEN].copy_from_slice(&HEARTBEAT[..LEN]);
        bytes[1] = FLAG_TAGGED;
        bytes[LEN..].fill(0xaa);
        let f = Packet::parse(&bytes).unwrap();
        assert_eq!(f.tag, Some(&[0xaa; TAG_LEN]));
        assert_eq!(f.covered, &bytes[..LEN]);
        // A tag flag on a datagram too short to hold one.
        assert_eq!(Packet::parse(&[0x48, 1, 0]), Err(DecodeError::Truncated));
    }

    #[test]
    fn test_bad_flags_and_fields() {
        let mut bytes = HEARTBEAT;
        bytes[1] = 0x80;
        assert_eq!(Packet::parse(&bytes[..LEN]), Err(DecodeError::BadFlags));
        // Three address bytes: not a whole IPv4 address.
        let p = heartbeat("db", &[1, 2, 3], &[]);
        let mut buf = [0u8; MAX_DATAGRAM];
        assert_eq!(p.emit(&mut buf), Err(EmitError::FieldTooLong));
        // Unknown body discriminant.
        assert_eq!(
            Packet::parse(&[0x48, 0, 1, 2, 3, 9]),
            Err(DecodeError::Malformed)
        );
    }

    /// The shared varint coder writes exactly what postcard writes for the plain types.
    #[test]
    fn varint_coder_matches_postcard() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Plain {
            a: u32,
            b: u64,
            c: i64,
            d: Option<u64>,
            e: Role,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Shared {
            #[serde(with = "varint")]
            a: u32,
            #[serde(with = "varint")]
            b: u64,
            #[serde(with = "varint::signed")]
            c: i64,
            #[serde(with = "varint::option")]
            d: Option<u64>,
            e: Role,
        }
        #[derive(Serialize)]
        enum PlainRole {
            _Claiming,
            _Active,
            _Standby,
            Yielding,
        }
        let (mut plain, mut shared) = ([0u8; 64], [0u8; 64]);
        for (a, b, c, d) in [
            (0, 0, 0, None),
            (127, 128, -1, Some(0)),
            (u32::MAX, u64::MAX, i64::MIN, Some(u64::MAX)),
            (300, 1 << 35, i64::MAX, Some(1)),
            (1, 2, -64, Some(16_384)),
        ] {
            let p = postcard::to_slice(&(a, b, c, d, PlainRole::Yielding), &mut plain).unwrap();
            let value = Shared {
                a,
                b,
                c,
                d,
                e: Role::Yielding,
            };
            let s = postcard::to_slice(&value, &mut shared).unwrap();
            assert_eq!(p, s);
            let back: Plain = postcard::from_bytes(s).unwrap();
            assert_eq!(
                (back.a, back.b, back.c, back.d, back.e),
                (a, b, c, d, Role::Yielding)
            );
            assert_eq!(postcard::from_bytes::<Shared>(s).unwrap(), value);
        }
        // Out of range for the field: refused, as postcard refuses it.
        let too_big = postcard::to_slice(&(u64::from(u32::MAX) + 1,), &mut plain).unwrap();
        assert!(postcard::from_bytes::<(u32,)>(too_big).is_err());
        #[derive(Deserialize)]
        struct OneU32(
            #[serde(with = "varint")]
            #[allow(dead_code)]
            u32,
        );
        assert!(postcard::from_bytes::<OneU32>(too_big).is_err());
        assert!(postcard::from_bytes::<Role>(&[4]).is_err());
    }

    #[test]
    fn names_pass_through_unread() {
        // Not UTF-8: the protocol never interprets the name, so it does not reject it.
        let mut odd = HEARTBEAT;
        odd[21] = 0xff;
        let packet = Packet::parse(&odd[..LEN]).unwrap();
        let Body::Announce(a) = packet.repr.body else {
            panic!("a heartbeat")
        };
        assert_eq!(a.name, [0xff, b'b']);
    }

    #[test]
    fn worst_case_fits_documented_maximum() {
        let name = "n".repeat(MAX_NAME);
        let addresses = [0xffu8; 4 * MAX_ADDRESSES];
        let state = [0xffu8; MAX_STATE];
        let mut p = heartbeat(&name, &addresses, &state);
        p.header = Header {
            scope: u32::MAX,
            sender: u64::MAX,
            counter: u64::MAX,
        };
        if let Body::Announce(a) = &mut p.body {
            a.rank = Rank {
                priority: u8::MAX,
                generation: u32::MAX,
                start_ms: i64::MIN,
            };
            a.heartbeat_ms = u32::MAX;
            a.ready_ms = u32::MAX;
            a.claim_heard = Some(u64::MAX);
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = p.emit(&mut buf).unwrap();
        assert!(n + TAG_LEN <= MAX_DATAGRAM, "{n} + tag > {MAX_DATAGRAM}");
        // The extremes survive the shared varint coder.
        assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, p);
        if let Body::Announce(a) = &mut p.body {
            a.rank.start_ms = i64::MAX;
        }
        let n = p.emit(&mut buf).unwrap();
        assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, p);
        if let Body::Announce(a) = &mut p.body {
            a.addresses = &[];
            a.state = &[];
        }
        assert!(p.buffer_len() + TAG_LEN <= MAX_DATAGRAM_BASE);
    }
}

/// Today's encoder output, frozen: a peer of a later version must decode these
/// bytes as they are, and this version must keep writing them.
#[cfg(all(test, feature = "auth"))]
mod vectors {
    extern crate std;
    use super::*;

    const KEY: [u8; 32] = [0x11; 32];

    fn rank() -> Rank {
        Rank {
            priority: 100,
            generation: 3,
            start_ms: 1_764_633_600_000,
        }
    }

    fn header() -> Header {
        Header {
            scope: 0x9c3e_4a21,
            sender: 0x0123_4567_89ab_cdef,
            counter: 42,
        }
    }

    fn messages() -> [(&'static str, Repr<'static>); 4] {
        let announce = |role, addresses: &'static [u8], state: &'static [u8]| Announce {
            role,
            rank: rank(),
            ready_ms: 1500,
            heartbeat_ms: 1000,
            claim_heard: None,
            name: b"api",
            addresses,
            state,
        };
        [
            (
                "claim",
                Repr {
                    header: header(),
                    body: Body::Announce(announce(Role::Claiming, &[], &[])),
                },
            ),
            (
                "heartbeat",
                Repr {
                    header: header(),
                    body: Body::Announce(Announce {
                        claim_heard: Some(7),
                        ..announce(Role::Active, &[10, 114, 104, 2, 192, 168, 1, 20], b"v1")
                    }),
                },
            ),
            (
                "ack",
                Repr {
                    header: header(),
                    body: Body::Ack(Ack {
                        to: 7,
                        generation: 4,
                        role: Role::Active,
                        rank: rank(),
                        ready_ms: 60_000,
                    }),
                },
            ),
            (
                "goodbye",
                Repr {
                    header: header(),
                    body: Body::Goodbye(Goodbye { successor: Some(7) }),
                },
            ),
        ]
    }

    #[cfg(feature = "checkpoints")]
    fn checkpoint_messages() -> [(&'static str, Repr<'static>); 2] {
        [
            (
                "checkpoint",
                Repr {
                    header: header(),
                    body: Body::Checkpoint(Checkpoint { seq: 10_000 }),
                },
            ),
            (
                "checkpoint ack",
                Repr {
                    header: header(),
                    body: Body::CheckpointAck(CheckpointAck { to: 7, seq: 10_000 }),
                },
            ),
        ]
    }

    #[test]
    fn a_datagram_of_the_next_version_is_read_with_its_extensions_skipped() {
        let (_, repr) = messages()[1];
        let mut plain = [0u8; MAX_DATAGRAM + 64];
        let n_plain = repr.emit(&mut plain).unwrap();
        // What a later version might add: a record this one does not know.
        let unknown = Extension {
            kind: 0x21,
            data: b"checkpoint 17",
        };
        let empty = Extension {
            kind: 0x22,
            data: b"",
        };
        let mut buf = [0u8; MAX_DATAGRAM + 64];
        let n = repr.emit_extended(&[unknown, empty], &mut buf).unwrap();
        assert_eq!(
            &buf[2..n_plain],
            &plain[2..n_plain],
            "the body is unchanged"
        );
        let packet = Packet::parse(&buf[..n]).unwrap();
        assert_eq!(packet.repr, repr);
        let records: std::vec::Vec<_> = packet.extensions.iter().collect();
        assert_eq!(records, [unknown, empty]);
        assert!(Packet::parse(&plain[..n_plain])
            .unwrap()
            .extensions
            .is_empty());

        // Tagged: the tag covers the records.
        let n = repr
            .emit_tagged_extended(&KEY, &[unknown], &mut buf)
            .unwrap();
        let packet = Packet::parse(&buf[..n]).unwrap();
        assert!(crate::wire::auth::verify(
            &KEY,
            packet.covered,
            packet.tag.unwrap()
        ));
        assert_eq!(packet.extensions.iter().next(), Some(unknown));
        let at = n - TAG_LEN - 1;
        buf[at] ^= 1;
        let tampered = Packet::parse(&buf[..n]).unwrap();
        assert!(!crate::wire::auth::verify(
            &KEY,
            tampered.covered,
            tampered.tag.unwrap()
        ));

        // A critical one it does not know: dropped, and said why.
        let critical = Extension {
            kind: EXTENSION_CRITICAL | 0x21,
            data: b"new meaning",
        };
        let n = repr.emit_extended(&[unknown, critical], &mut buf).unwrap();
        assert_eq!(
            Packet::parse(&buf[..n]),
            Err(DecodeError::UnknownCriticalExtension)
        );
        // A record that runs past the end, or half a record header.
        let n = repr.emit_extended(&[unknown], &mut buf).unwrap();
        assert_eq!(Packet::parse(&buf[..n - 1]), Err(DecodeError::Truncated));
        buf[n] = 0x23;
        assert_eq!(Packet::parse(&buf[..n + 1]), Err(DecodeError::Truncated));
        // Without the flag, bytes after the body are still refused.
        buf[1] = 0;
        assert_eq!(Packet::parse(&buf[..n]), Err(DecodeError::Trailing));
        let long = [0u8; MAX_EXTENSION_DATA + 1];
        let too_long = Extension {
            kind: 1,
            data: &long,
        };
        assert_eq!(
            repr.emit_extended(&[too_long], &mut [0u8; 512]),
            Err(EmitError::FieldTooLong)
        );
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        bytes.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    #[test]
    fn encodings_are_frozen() {
        let frozen = [
            (
                "claim",
                "4800a194f9e109ef9bafcdf8acd191012a000064038080dfc5db66dc0be80700036170690000",
                "4801a194f9e109ef9bafcdf8acd191012a000064038080dfc5db66dc0be80700036170690000\
                 4e88875fe15791d4d0d20a73d25f49f8",
            ),
            (
                "heartbeat",
                "4800a194f9e109ef9bafcdf8acd191012a000164038080dfc5db66dc0be807010703617069080a\
                 726802c0a80114027631",
                "4801a194f9e109ef9bafcdf8acd191012a000164038080dfc5db66dc0be807010703617069080a\
                 726802c0a801140276311029c340583ffda09a5c5f88a474a513",
            ),
            (
                "ack",
                "4800a194f9e109ef9bafcdf8acd191012a0107040164038080dfc5db66e0d403",
                "4801a194f9e109ef9bafcdf8acd191012a0107040164038080dfc5db66e0d403\
                 3e029a575a0eceabd41dd610ebbf6c38",
            ),
            (
                "goodbye",
                "4800a194f9e109ef9bafcdf8acd191012a020107",
                "4801a194f9e109ef9bafcdf8acd191012a020107d4c98964bae4f70eb42cc340adc8c276",
            ),
        ];
        check_frozen(&messages(), &frozen);
    }

    #[test]
    #[cfg(feature = "checkpoints")]
    fn checkpoint_encodings_are_frozen() {
        let frozen = [
            (
                "checkpoint",
                "4800a194f9e109ef9bafcdf8acd191012a03904e",
                "4801a194f9e109ef9bafcdf8acd191012a03904ec5db7a58615973bc1b0a07bf381b5c07",
            ),
            (
                "checkpoint ack",
                "4800a194f9e109ef9bafcdf8acd191012a0407904e",
                "4801a194f9e109ef9bafcdf8acd191012a0407904e66d4d7f614ed0986f1fd60ae558afef5",
            ),
        ];
        check_frozen(&checkpoint_messages(), &frozen);
    }

    /// Each message encodes, plain and tagged, to its frozen hex.
    fn check_frozen(messages: &[(&str, Repr<'_>)], frozen: &[(&str, &str, &str)]) {
        assert_eq!(messages.len(), frozen.len());
        for ((name, repr), &(frozen_name, plain, tagged)) in messages.iter().zip(frozen) {
            assert_eq!(*name, frozen_name);
            let mut buf = [0u8; MAX_DATAGRAM];
            let n = repr.emit(&mut buf).unwrap();
            assert_eq!(hex(&buf[..n]), plain, "{name}, untagged");
            assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, *repr, "{name}");
            let n = repr.emit_tagged(&KEY, &mut buf).unwrap();
            assert_eq!(hex(&buf[..n]), tagged, "{name}, tagged");
            assert_eq!(Packet::parse(&buf[..n]).unwrap().repr, *repr, "{name}");
        }
    }
}
