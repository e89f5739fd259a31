//! Extension records after the body: what a peer adds beyond the base protocol
//! (checkpoints, its capabilities), skipped by peers that do not know them.

use super::super::DecodeError;
use super::{EXTENSION_CAPABILITIES, EXTENSION_CRITICAL};

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
        let said = extensions.varint(EXTENSION_CAPABILITIES)?;
        u32::try_from(said).ok().map(Capabilities)
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
    /// Its data, at most [`MAX_EXTENSION_DATA`](super::MAX_EXTENSION_DATA) bytes.
    pub data: &'a [u8],
}

/// A datagram's extension records, checked: each ends within the datagram, and
/// none is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions<'a>(pub(super) &'a [u8]);

impl<'a> Extensions<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
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

    /// The varint that the first record of `kind` whose data decodes as one
    /// carries (the capabilities, the checkpoint).
    pub fn varint(&self, kind: u8) -> Option<u64> {
        self.iter()
            .filter(|e| e.kind == kind)
            .find_map(|e| super::codec::read_varint(e.data))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
