//! Wire formats, kept apart from the state machine.
//!
//! Two formats share the network:
//!
//! * **v2** ([`Packet`], [`Repr`]): this protocol. Layout:
//!
//!   ```text
//!   byte 0        MAGIC = 0x48 ('H'): never 0x01 or 0x02, the legacy first bytes
//!   byte 1        FLAGS: bit 0 = an authentication tag ends the datagram;
//!                 bit 1 = extension records follow the body; others zero
//!   bytes 2..     body, postcard-encoded: Header { scope, sender, counter } then Body
//!   then          extension records, only when FLAGS bit 1 is set: kind (1 byte,
//!                 bit 7 = critical), length (1 byte), data; record after record
//!   last 16 bytes authentication tag, present only when FLAGS bit 0 is set
//!   ```
//!
//!   Extensions are how the format grows without a flag day: a newer peer adds
//!   records, and a peer of this version skips the kinds it does not know unless one
//!   is marked critical, and still checks the tag over them. It knows two, both on
//!   announcements and goodbyes with the `checkpoints` feature: what the sender
//!   supports ([`EXTENSION_CAPABILITIES`]: a peer is owed only what its peers said
//!   they can give), and the sender's checkpoint ([`EXTENSION_CHECKPOINT`], only
//!   once it has one). Peers from before extension records drop extended datagrams
//!   (reserved flag bit).
//!
//!   The message kinds (postcard's enum discriminant): 0 announcement (claim or
//!   heartbeat), 1 acknowledgement, 2 goodbye, and with `checkpoints` 3 checkpoint
//!   and 4 its acknowledgement; a kind a peer does not know is dropped as malformed.
//!
//!   The tag ([`auth`]) is HMAC-SHA256 under the group's pre-shared key over every
//!   byte before it, truncated to 16 bytes.
//!
//!   The body is postcard: integers are varints, strings and byte strings are a varint
//!   length then the bytes, enums a varint discriminant. A heartbeat with the longest
//!   name, [`MAX_ADDRESSES`] addresses and [`MAX_STATE`] bytes of application state is
//!   at most [`MAX_DATAGRAM`] bytes, tag included; without addresses and state it is at
//!   most [`MAX_DATAGRAM_BASE`] bytes.
//!
//! * **legacy v1** ([`legacy::Announce`]): handover-lib's 9-byte announcement.
//!
//! Guarantee, as smoltcp gives for its wire views: parsing never panics and never reads
//! out of bounds, whatever the bytes; a successful parse yields values within the
//! documented limits (name length, address count, state length), so nothing downstream
//! needs to check them again.

#[cfg(feature = "auth")]
pub mod auth;
pub mod legacy;

/// Length of a group key.
pub const KEY_LEN: usize = 32;

/// A group key: 32 bytes shared by every peer of the group.
pub type Key = [u8; KEY_LEN];
mod v2;

pub use v2::{
    Ack, Announce, Body, Capabilities, Extension, Extensions, Goodbye, Header, Packet, Rank, Repr,
    Role, EXTENSION_CAPABILITIES, EXTENSION_CRITICAL, MAGIC, MAX_ADDRESSES, MAX_DATAGRAM,
    MAX_DATAGRAM_BASE, MAX_EXTENSION_DATA, MAX_NAME, MAX_READY_MS, MAX_STATE, RESERVED_FLAGS,
    TAG_LEN,
};

pub(crate) use v2::DatagramWriter;
#[cfg(feature = "checkpoints")]
pub use v2::{Checkpoint, CheckpointAck, EXTENSION_CHECKPOINT};

use core::fmt;

/// Default UDP port of the v2 protocol (the legacy port is [`LEGACY_PORT`]).
pub const DEFAULT_PORT: u16 = 1538;
/// Default multicast group of both formats: 239.192.16.16, organization-local scope.
pub const DEFAULT_GROUP: [u8; 4] = [239, 192, 16, 16];
/// handover-lib's UDP port.
pub const LEGACY_PORT: u16 = 1536;

/// Why a datagram could not be decoded. Each reason is counted separately in
/// [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// Zero bytes.
    Empty,
    /// The first byte is neither v2 nor a legacy version.
    UnknownFormat(u8),
    /// handover-lib's status message (version 0x02), which this protocol does not use.
    LegacyStatus,
    /// Shorter than its format requires.
    Truncated,
    /// Longer than its format allows.
    Trailing,
    /// Reserved flag bits set.
    BadFlags,
    /// The body does not decode, or a field is beyond its limit.
    Malformed,
    /// An extension record this version does not know, marked critical.
    UnknownCriticalExtension,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty datagram"),
            DecodeError::UnknownFormat(b) => write!(f, "unknown format (first byte {b:#04x})"),
            DecodeError::LegacyStatus => f.write_str("legacy status message"),
            DecodeError::Truncated => f.write_str("datagram truncated"),
            DecodeError::Trailing => f.write_str("unexpected bytes after the message"),
            DecodeError::BadFlags => f.write_str("reserved flag bits set"),
            DecodeError::Malformed => f.write_str("malformed message body"),
            DecodeError::UnknownCriticalExtension => {
                f.write_str("a critical extension this version does not know")
            }
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a datagram could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EmitError {
    /// The output buffer is too small; [`MAX_DATAGRAM`] always suffices.
    BufferTooSmall,
    /// A field is beyond its documented limit, or the sender is the reserved id 0.
    FieldTooLong,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::BufferTooSmall => f.write_str("output buffer too small"),
            EmitError::FieldTooLong => f.write_str("a field exceeds its limit"),
        }
    }
}

impl core::error::Error for EmitError {}

/// A datagram of either format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Datagram<'a> {
    /// A v2 datagram.
    V2(Packet<'a>),
    /// A handover-lib announcement.
    Legacy(legacy::Announce),
}

impl<'a> Datagram<'a> {
    /// Decodes a datagram of either format, chosen by its first byte.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&MAGIC) => Packet::parse(bytes).map(Datagram::V2),
            _ => legacy::Announce::parse(bytes).map(Datagram::Legacy),
        }
    }
}

/// The 32-bit FNV-1a hash that turns a scope string (such as a device id and a service
/// name) into the scope id carried by every v2 datagram.
pub const fn scope_id(scope: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < scope.len() {
        hash ^= scope[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

/// Whether `bytes` is a v2 datagram of a scope other than `scope`, told from its
/// first bytes without decoding it: a datagram of `scope` starts with
/// [`scope_prefix`] at [`SCOPE_OFFSET`]. `false` when it cannot tell (too short,
/// not v2): the decoder decides.
pub fn is_other_scope(bytes: &[u8], scope: u32) -> bool {
    bytes.first() == Some(&MAGIC) && has_scope(bytes, scope) == Some(false)
}

/// Whether `bytes` carries [`scope_prefix`]`(scope)` at [`SCOPE_OFFSET`]; `None` if
/// it ends first. Compares as it encodes: no buffer.
pub(crate) fn has_scope(bytes: &[u8], scope: u32) -> Option<bool> {
    let mut rest = scope;
    let mut at = SCOPE_OFFSET;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        let expected = if rest == 0 { low } else { low | 0x80 };
        if *bytes.get(at)? != expected {
            return Some(false);
        }
        if rest == 0 {
            return Some(true);
        }
        at += 1;
    }
}

/// Where a v2 datagram's scope id starts: after the magic and flags bytes.
pub const SCOPE_OFFSET: usize = 2;

/// The bytes a v2 datagram of `scope` carries at [`SCOPE_OFFSET`], and how many: the
/// scope id as a varint, 1 to 5 bytes. The decoder accepts no other encoding of it,
/// so comparing these bytes (as the socket filter of handover-std does in the kernel)
/// tells a datagram of the scope from one of another scope without decoding it.
pub const fn scope_prefix(scope: u32) -> ([u8; 5], usize) {
    let mut bytes = [0u8; 5];
    let mut rest = scope;
    let mut len = 0;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            bytes[len] = low;
            return (bytes, len + 1);
        }
        bytes[len] = low | 0x80;
        len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_scopes_are_told_by_their_first_bytes() {
        let ours = 0x0102_0304;
        let (prefix, len) = scope_prefix(ours);
        let mut datagram = [MAGIC, 0, 0, 0, 0, 0, 0x2a];
        datagram[SCOPE_OFFSET..SCOPE_OFFSET + len].copy_from_slice(&prefix[..len]);
        assert!(!is_other_scope(&datagram, ours));
        assert!(is_other_scope(&datagram, ours + 1));
        assert!(is_other_scope(&datagram, 4), "a shorter varint");
        // Too short to tell, or not v2: the decoder decides.
        assert!(!is_other_scope(&datagram[..SCOPE_OFFSET], ours + 1));
        assert!(!is_other_scope(&datagram[..3], ours), "ours so far");
        let legacy = [legacy::VERSION, 0, 0, 1, 0x8c, 0, 0, 0, 0];
        assert!(!is_other_scope(&legacy, ours));
        assert_eq!(has_scope(&datagram, ours), Some(true));
        assert_eq!(has_scope(&datagram[..4], ours), None);
    }

    #[test]
    fn scope_prefix_is_the_canonical_varint() {
        for scope in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX,
        ] {
            let mut buf = [0u8; 8];
            let n = postcard::to_slice(&u64::from(scope), &mut buf)
                .unwrap()
                .len();
            let (prefix, len) = scope_prefix(scope);
            assert_eq!(&prefix[..len], &buf[..n], "scope {scope}");
        }
    }

    #[test]
    fn scope_id_is_fnv1a() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(scope_id(b""), 0x811c_9dc5);
        assert_eq!(scope_id(b"a"), 0xe40c_292c);
        assert_eq!(scope_id(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn dispatch_by_first_byte() {
        assert!(matches!(
            Datagram::parse(&[1, 0, 0, 0, 0, 0, 0, 0, 7]),
            Ok(Datagram::Legacy(legacy::Announce { start_ms: 7 }))
        ));
        assert_eq!(Datagram::parse(&[]), Err(DecodeError::Empty));
        assert_eq!(Datagram::parse(&[MAGIC]), Err(DecodeError::Truncated));
        assert_eq!(
            Datagram::parse(&[0xff, 1]),
            Err(DecodeError::UnknownFormat(0xff))
        );
    }
}
