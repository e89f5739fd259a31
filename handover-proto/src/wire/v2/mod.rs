//! The v2 datagram: magic, flags, a postcard body, optional extension records and an
//! optional authentication tag. [`Packet`] is the checked view of one (as smoltcp's
//! `Packet`), [`Repr`] what it says (as smoltcp's `Repr`).

use postcard::ser_flavors::{self, Flavor};

use super::{DecodeError, EmitError};
use codec::{Reader, Writer};

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

mod body;
pub(crate) mod codec;
mod extensions;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "auth"))]
mod vectors;

pub use body::*;
pub use extensions::*;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Hash of the scope string ([`scope_id`](super::scope_id)); datagrams of another
    /// scope are ignored.
    pub scope: u32,
    /// The sender's instance id; never 0 (reserved: "nobody").
    pub sender: u64,
    /// A per-sender counter that grows with every datagram it sends.
    pub counter: u64,
}

/// A decoded v2 message: header and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Scope, sender and counter.
    pub header: Header,
    /// What the sender says.
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
        let mut reader = Reader::new(covered.get(2..).unwrap_or_default());
        let repr = Repr::read(&mut reader);
        let trailing = reader.finish().map_err(|e| match e {
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

impl<'a> Repr<'a> {
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
        let mut writer = Writer::new(ser_flavors::Slice::new(body));
        self.write(&mut writer);
        let len = writer
            .finish()
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
        let mut datagram = DatagramWriter::new(self, buf)?;
        for e in extensions {
            datagram.record(e)?;
        }
        Ok(datagram.len())
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
        // Counting bytes cannot fail.
        let mut counter = Writer::new(ser_flavors::Size::default());
        self.write(&mut counter);
        2 + counter.finish().unwrap_or(usize::MAX - 2)
    }

    /// Reads a header and a body (the reader says whether they decoded).
    fn read(r: &mut Reader<'a>) -> Self {
        Repr {
            header: Header {
                scope: r.int(),
                sender: r.varint(),
                counter: r.varint(),
            },
            body: Body::read(r),
        }
    }

    /// Writes the header, then the body.
    fn write<F: Flavor>(&self, w: &mut Writer<F>) {
        w.varint(self.header.scope.into());
        w.varint(self.header.sender);
        w.varint(self.header.counter);
        self.body.write(w)
    }
}

/// A v2 datagram written in order: the message, then its extension records one at a
/// time, then (with a key) the tag. The peer writes its own records straight into
/// the datagram this way, with no copy of them to gather first.
pub(crate) struct DatagramWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> DatagramWriter<'b> {
    /// Writes `repr` at the start of `buf`.
    pub(crate) fn new(repr: &Repr<'_>, buf: &'b mut [u8]) -> Result<Self, EmitError> {
        let len = repr.emit(buf)?;
        Ok(DatagramWriter { buf, len })
    }

    /// Appends an extension record.
    pub(crate) fn record(&mut self, e: &Extension<'_>) -> Result<(), EmitError> {
        let size = u8::try_from(e.data.len()).map_err(|_| EmitError::FieldTooLong)?;
        let end = self.len + 2 + e.data.len();
        let Some([kind, length, data @ ..]) = self.buf.get_mut(self.len..end) else {
            return Err(EmitError::BufferTooSmall);
        };
        *kind = e.kind;
        *length = size;
        data.copy_from_slice(e.data);
        self.extended(end);
        Ok(())
    }

    /// Appends an extension record whose data is the varint `v`, written in place.
    #[cfg(feature = "checkpoints")]
    pub(crate) fn varint_record(&mut self, kind: u8, v: u64) -> Result<(), EmitError> {
        let Some([record_kind, length, data @ ..]) = self.buf.get_mut(self.len..) else {
            return Err(EmitError::BufferTooSmall);
        };
        let mut writer = Writer::new(ser_flavors::Slice::new(data));
        writer.varint(v);
        // A varint is at most 10 bytes: its length fits the record's length byte.
        let size = writer
            .finish()
            .map_err(|_| EmitError::BufferTooSmall)?
            .len();
        *record_kind = kind;
        *length = size as u8;
        self.extended(self.len + 2 + size);
        Ok(())
    }

    fn extended(&mut self, len: usize) {
        self.len = len;
        set_flag(self.buf, FLAG_EXTENDED);
    }

    /// Appends the tag of everything written so far under `key`; the datagram's
    /// length.
    #[cfg(feature = "auth")]
    pub(crate) fn tag(self, key: &super::auth::Key) -> Result<usize, EmitError> {
        tag(key, self.buf, self.len)
    }

    /// The datagram's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Tags the `len` bytes of datagram `buf` and appends the tag; the new length.
#[cfg(feature = "auth")]
fn tag(key: &super::auth::Key, buf: &mut [u8], len: usize) -> Result<usize, EmitError> {
    let Some((covered, rest)) = buf.split_at_mut_checked(len) else {
        return Err(EmitError::BufferTooSmall);
    };
    let Some(tag) = rest.first_chunk_mut::<TAG_LEN>() else {
        return Err(EmitError::BufferTooSmall);
    };
    set_flag(covered, FLAG_TAGGED);
    *tag = super::auth::tag(key, covered);
    Ok(len + TAG_LEN)
}

/// Sets a bit of an emitted datagram's flags byte (there is one: `emit` wrote it).
fn set_flag(datagram: &mut [u8], flag: u8) {
    if let Some(flags) = datagram.get_mut(1) {
        *flags |= flag;
    }
}
