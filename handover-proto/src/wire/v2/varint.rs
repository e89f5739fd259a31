//! Serializes byte strings as postcard bytes (a length and the raw bytes); the
//! borrowed `&[u8]` deserializer reads the same layout.
//! Every integer goes through one `u64` varint encoder and decoder: the bytes are the
//! same as postcard's own encodings of the plain types, and a 32-bit target (a
//! microcontroller, whose flash is scarce) carries one copy of each instead of one
//! inlined per field, about 1.2 KB less. 64-bit hosts inline them for speed.

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer, T: Copy + Into<u64>>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    put((*v).into(), s)
}

#[cfg_attr(target_pointer_width = "32", inline(never))]
fn put<S: Serializer>(v: u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    T::try_from(take(d)?).map_err(|_| D::Error::custom("varint out of range"))
}

#[cfg_attr(target_pointer_width = "32", inline(never))]
fn take<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    u64::deserialize(d)
}

/// `i64` as postcard writes it: zigzag (0, -1, 1, -2 … as 0, 1, 2, 3 …), then
/// the varint, through the same coder.
pub(crate) mod signed {
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        super::put(((*v << 1) ^ (*v >> 63)) as u64, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let z = super::take(d)?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }
}

/// `Option<u64>` as postcard writes it (0, or 1 then the varint), through the
/// same coder.
pub(crate) mod option {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
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

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
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
