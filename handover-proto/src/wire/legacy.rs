//! The handover-lib ("v1") announcement: 9 bytes.
//!
//! ```text
//! byte 0      0x01 (version)
//! bytes 1..9  the sender's start time, i64 big-endian milliseconds since the Unix epoch
//! ```
//!
//! A legacy peer shuts down when it hears a start time greater than its own. It crashes on
//! anything that is not exactly this format, so nothing else may ever be sent to
//! [`PORT`](super::LEGACY_PORT).

use super::DecodeError;

/// First byte of a v1 hand-over announcement.
pub const VERSION: u8 = 0x01;
/// First byte of handover-lib's separate status message (not decoded: its content is
/// carried by v2 heartbeats).
pub const STATUS_VERSION: u8 = 0x02;
/// Length of a v1 announcement.
pub const LEN: usize = 9;

/// A decoded v1 announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Announce {
    /// The sender's start time in milliseconds since the Unix epoch.
    pub start_ms: i64,
}

impl Announce {
    /// Decodes a v1 announcement. Only exactly [`LEN`] bytes starting with [`VERSION`]
    /// are accepted.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes {
            [] => Err(DecodeError::Empty),
            [VERSION, rest @ ..] => {
                let time: [u8; 8] = rest.try_into().map_err(|_| {
                    if rest.len() < 8 {
                        DecodeError::Truncated
                    } else {
                        DecodeError::Trailing
                    }
                })?;
                Ok(Announce {
                    start_ms: i64::from_be_bytes(time),
                })
            }
            [STATUS_VERSION, ..] => Err(DecodeError::LegacyStatus),
            [other, ..] => Err(DecodeError::UnknownFormat(*other)),
        }
    }

    /// Writes the announcement into `buf` and returns its length ([`LEN`]).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, super::EmitError> {
        let out = buf.get_mut(..LEN).ok_or(super::EmitError::BufferTooSmall)?;
        out[0] = VERSION;
        out[1..].copy_from_slice(&self.start_ms.to_be_bytes());
        Ok(LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2023-11-14T22:13:20Z = 1_700_000_000_000 ms = 0x0000_018B_CFE5_6800.
    const BYTES: [u8; 9] = [0x01, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00];

    #[test]
    fn test_parse() {
        let a = Announce::parse(&BYTES).unwrap();
        assert_eq!(a.start_ms, 1_700_000_000_000);
    }

    #[test]
    fn test_emit() {
        let mut buf = [0u8; 16];
        let n = Announce {
            start_ms: 1_700_000_000_000,
        }
        .emit(&mut buf)
        .unwrap();
        assert_eq!(&buf[..n], &BYTES);
    }

    #[test]
    fn test_negative_time_round_trips() {
        // A device whose clock is unset reads before 1970.
        let mut buf = [0u8; LEN];
        Announce { start_ms: -5 }.emit(&mut buf).unwrap();
        assert_eq!(buf, [1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        assert_eq!(Announce::parse(&buf).unwrap().start_ms, -5);
    }

    #[test]
    fn test_truncated() {
        assert_eq!(Announce::parse(&[]), Err(DecodeError::Empty));
        assert_eq!(Announce::parse(&[0x01]), Err(DecodeError::Truncated));
        assert_eq!(Announce::parse(&BYTES[..8]), Err(DecodeError::Truncated));
    }

    #[test]
    fn test_trailing_and_foreign() {
        let mut long = [0u8; 10];
        long[..9].copy_from_slice(&BYTES);
        assert_eq!(Announce::parse(&long), Err(DecodeError::Trailing));
        assert_eq!(
            Announce::parse(&[0x02; 120]),
            Err(DecodeError::LegacyStatus)
        );
        assert_eq!(
            Announce::parse(&[0x7f]),
            Err(DecodeError::UnknownFormat(0x7f))
        );
    }

    #[test]
    fn test_emit_short_buffer() {
        let mut buf = [0u8; 8];
        assert!(Announce { start_ms: 0 }.emit(&mut buf).is_err());
    }
}
