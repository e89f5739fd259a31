//! The body's fields read and written one at a time through postcard's own
//! deserializer and serializer, in the order each message type lists them
//! ([`Reader`], [`Writer`]).
//!
//! The bytes are exactly postcard's encoding of the message types as plain serde
//! structs (checked in the tests against postcard over derived types, and by the
//! frozen vectors): integers are varints, `i64` zigzagged first, a byte is itself,
//! an option a byte 0 or 1 then the value, a byte string its length then its bytes,
//! an enum the varint of its variant's index. Calling postcard per field rather
//! than deriving serde's visitors for every type is the difference on a
//! microcontroller: every integer goes through one varint coder instead of one per
//! field and type, and no enum or sequence machinery is generated (about 2 KB of
//! flash on a Cortex-M0+).

use postcard::de_flavors::Slice as Input;
use postcard::ser_flavors::Flavor;
use postcard::{Deserializer, Error, Serializer};
use serde::{Deserialize, Serializer as _};

pub(super) type Result<T> = core::result::Result<T, Error>;

/// Reads fields from the start of a byte slice.
pub(crate) struct Reader<'a>(Deserializer<'a, Input<'a>>);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader(Deserializer::from_bytes(bytes))
    }

    /// An unsigned varint of at most 64 bits.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(crate) fn varint(&mut self) -> Result<u64> {
        u64::deserialize(&mut self.0)
    }

    /// A varint that must fit `T` (as postcard refuses one out of its type's range).
    pub(super) fn int<T: TryFrom<u64>>(&mut self) -> Result<T> {
        T::try_from(self.varint()?).map_err(|_| Error::DeserializeBadVarint)
    }

    /// A zigzagged varint: 0, -1, 1, -2 … as 0, 1, 2, 3 ….
    pub(super) fn signed(&mut self) -> Result<i64> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        u8::deserialize(&mut self.0)
    }

    /// An optional varint: postcard's option tag is a byte 0 or 1, as a bool is.
    pub(super) fn option(&mut self) -> Result<Option<u64>> {
        match bool::deserialize(&mut self.0)? {
            true => self.varint().map(Some),
            false => Ok(None),
        }
    }

    /// A byte string, borrowed from the input.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8]> {
        <&'a [u8]>::deserialize(&mut self.0)
    }

    /// The bytes after the last field read.
    pub(super) fn rest(self) -> Result<&'a [u8]> {
        self.0.finalize()
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

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(crate) fn varint(&mut self, v: u64) {
        self.fits &= (&mut self.output).serialize_u64(v).is_ok();
    }

    pub(super) fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64)
    }

    pub(super) fn byte(&mut self, v: u8) {
        self.fits &= (&mut self.output).serialize_u8(v).is_ok();
    }

    pub(super) fn option(&mut self, v: Option<u64>) {
        self.fits &= (&mut self.output).serialize_bool(v.is_some()).is_ok();
        if let Some(v) = v {
            self.varint(v)
        }
    }

    #[cfg_attr(target_pointer_width = "32", inline(never))]
    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.fits &= (&mut self.output).serialize_bytes(v).is_ok();
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
    Reader::new(data).varint().ok()
}

/// Writes `v` as a varint into `buf`; the bytes written.
#[cfg(feature = "checkpoints")]
pub(crate) fn write_varint(v: u64, buf: &mut [u8]) -> Option<&[u8]> {
    let mut writer = Writer::new(postcard::ser_flavors::Slice::new(buf));
    writer.varint(v);
    writer.finish().ok().map(|written| &*written)
}
