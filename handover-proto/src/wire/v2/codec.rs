//! The body's fields read and written one at a time, in the order each message
//! type lists them ([`Reader`], [`Writer`]): integers through postcard's varint
//! coder, the rest as postcard lays it out.
//!
//! The bytes are exactly postcard's encoding of the message types as plain serde
//! structs (checked in the tests against postcard over derived types, and by the
//! frozen vectors): integers are varints, `i64` zigzagged first, a byte is itself,
//! an option a byte 0 or 1 then the value, a byte string its length then its bytes,
//! an enum the varint of its variant's index. Going field by field rather than
//! deriving serde's visitors for every type is the difference on a
//! microcontroller: every integer goes through one varint coder instead of one per
//! field and type, no enum or sequence machinery is generated, and a message is
//! checked once, at its end, not after every field (with the other cuts of the
//! wire path, about 1.5 KB of flash on a Cortex-M0+).

use postcard::ser_flavors::Flavor;
use postcard::{Error, Serializer};
use serde::Serializer as _;

pub(super) type Result<T> = core::result::Result<T, Error>;

/// Reads fields from the start of a byte slice: each integer through postcard's
/// varint decoder, a byte and a byte string's bytes as they stand (postcard
/// writes them so). A field that does not decode reads as zero (or empty) and the
/// first error is kept: a message is read straight through, and
/// [`finish`](Reader::finish) says whether all of it decoded (one check per
/// message, not one per field).
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    error: Option<Error>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader {
            rest: bytes,
            error: None,
        }
    }

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
    }

    /// An unsigned varint of at most 64 bits.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(crate) fn varint(&mut self) -> u64 {
        match postcard::take_from_bytes::<u64>(self.rest) {
            Ok((v, rest)) => {
                self.rest = rest;
                v
            }
            Err(e) => {
                self.fail(e);
                0
            }
        }
    }

    /// A varint that must fit `T` (as postcard refuses one out of its type's range).
    pub(super) fn int<T: TryFrom<u64> + Default>(&mut self) -> T {
        T::try_from(self.varint()).unwrap_or_else(|_| {
            self.fail(Error::DeserializeBadVarint);
            T::default()
        })
    }

    /// A varint that must be one of `0..count` (an enum's variant index); 0 in
    /// its place if not.
    pub(super) fn index(&mut self, count: u8) -> u8 {
        match self.varint() {
            i if i < u64::from(count) => i as u8,
            _ => {
                self.fail(Error::DeserializeBadEnum);
                0
            }
        }
    }

    /// A zigzagged varint: 0, -1, 1, -2 … as 0, 1, 2, 3 ….
    pub(super) fn signed(&mut self) -> i64 {
        let z = self.varint();
        (z >> 1) as i64 ^ -((z & 1) as i64)
    }

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(super) fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&byte, rest)) => {
                self.rest = rest;
                byte
            }
            None => {
                self.fail(Error::DeserializeUnexpectedEnd);
                0
            }
        }
    }

    /// An optional varint: postcard's option tag is a byte 0 or 1, as a bool is.
    pub(super) fn option(&mut self) -> Option<u64> {
        match self.byte() {
            0 => None,
            1 => Some(self.varint()),
            _ => {
                self.fail(Error::DeserializeBadOption);
                None
            }
        }
    }

    /// A byte string (its length as a varint, then the bytes), borrowed from the
    /// input.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(super) fn bytes(&mut self) -> &'a [u8] {
        let len = usize::try_from(self.varint()).unwrap_or(usize::MAX);
        match self.rest.split_at_checked(len) {
            Some((bytes, rest)) => {
                self.rest = rest;
                bytes
            }
            None => {
                self.fail(Error::DeserializeUnexpectedEnd);
                &[]
            }
        }
    }

    /// The bytes after the last field, if every field decoded.
    pub(super) fn finish(self) -> Result<&'a [u8]> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.rest),
        }
    }
}

/// Writes fields one after another into a postcard flavor: a slice, or a counter
/// of the bytes that would be written. A write that does not fit is remembered,
/// not returned: a message is written straight through and
/// [`finish`](Writer::finish) says whether all of it fit (one check per message,
/// not one per field).
pub(crate) struct Writer<F: Flavor> {
    output: Serializer<F>,
    fits: bool,
}

impl<F: Flavor> Writer<F> {
    pub(crate) fn new(output: F) -> Self {
        Writer {
            output: Serializer { output },
            fits: true,
        }
    }

    // One copy on microcontrollers, for flash; inlined on hosts, for speed.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    pub(crate) fn varint(&mut self, v: u64) {
        self.fits &= (&mut self.output).serialize_u64(v).is_ok();
    }

    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    pub(super) fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    pub(super) fn byte(&mut self, v: u8) {
        self.fits &= (&mut self.output).serialize_u8(v).is_ok();
    }

    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    pub(super) fn option(&mut self, v: Option<u64>) {
        self.fits &= (&mut self.output).serialize_bool(v.is_some()).is_ok();
        if let Some(v) = v {
            self.varint(v)
        }
    }

    /// A byte string: its length as a varint (postcard's `usize`), then the bytes,
    /// through the one varint coder.
    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.fits &= self.output.output.try_extend(v).is_ok();
    }

    /// What was written, if all of it fit.
    pub(crate) fn finish(self) -> Result<F::Output> {
        match self.fits {
            true => self.output.output.finalize(),
            false => Err(Error::SerializeBufferFull),
        }
    }
}

/// The varint an extension record's data starts with.
pub(crate) fn read_varint(data: &[u8]) -> Option<u64> {
    let mut reader = Reader::new(data);
    let v = reader.varint();
    reader.finish().ok().map(|_| v)
}
