//! Group keys from key files.

use std::fmt;
use std::path::Path;

use handover_proto::wire::auth::{Key, KEY_LEN};

/// A group key: 32 bytes every peer of the group shares. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey(pub Key);

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKey(<secret>)")
    }
}

/// Why a key file was refused. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(String),
    /// The content is not 64 hexadecimal digits.
    #[error("expected {} hexadecimal digits (e.g. from `openssl rand -hex {KEY_LEN}`), found {found} characters{detail}", 2 * KEY_LEN)]
    Format {
        /// How many non-whitespace characters the file has.
        found: usize,
        /// What else is wrong.
        detail: &'static str,
    },
}

/// Parses a key file: 64 hexadecimal digits, surrounding whitespace ignored.
pub fn parse_key(content: &[u8]) -> Result<GroupKey, KeyError> {
    let text = content.trim_ascii();
    if text.len() != 2 * KEY_LEN {
        return Err(KeyError::Format {
            found: text.len(),
            detail: "",
        });
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
            _ => {
                return Err(KeyError::Format {
                    found: text.len(),
                    detail: ", not all of them hexadecimal",
                })
            }
        }
    }
    Ok(GroupKey(key))
}

/// Reads and parses a key file.
pub fn read_key_file(path: &Path) -> Result<GroupKey, KeyError> {
    let content = std::fs::read(path).map_err(|e| KeyError::Read(e.to_string()))?;
    parse_key(&content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_with_whitespace() {
        let text = format!("  {}\n", "0f".repeat(32));
        assert_eq!(parse_key(text.as_bytes()).unwrap(), GroupKey([0x0f; 32]));
        let upper = "AB".repeat(32);
        assert_eq!(parse_key(upper.as_bytes()).unwrap(), GroupKey([0xab; 32]));
    }

    #[test]
    fn refuses_wrong_length_and_non_hex_without_echoing() {
        let e = parse_key(b"abcd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected 64 hexadecimal digits (e.g. from `openssl rand -hex 32`), found 4 characters"
        );
        let bad = format!("{}zz", "00".repeat(31));
        let e = parse_key(bad.as_bytes()).unwrap_err().to_string();
        assert!(e.ends_with("not all of them hexadecimal"), "{e}");
        assert!(!e.contains("zz"));
        // Multi-byte UTF-8 is not hex either, and does not panic.
        assert!(parse_key("é".repeat(32).as_bytes()).is_err());
        assert_eq!(format!("{:?}", GroupKey([1; 32])), "GroupKey(<secret>)");
    }
}
