//! Authentication tags for groups with a pre-shared key.
//!
//! A tagged v2 datagram sets flag bit 0 and ends with [`TAG_LEN`] bytes: HMAC-SHA256,
//! keyed with the group key, over every byte before the tag (magic, flags, scope,
//! sender, counter and message), truncated to its first 16 bytes. Because the counter
//! is covered, a receiver that refuses counters it has seen refuses replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::TAG_LEN;
pub use super::{Key, KEY_LEN};

fn mac(key: &Key, covered: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(covered);
    mac
}

/// The tag of `covered` under `key`.
pub fn tag(key: &Key, covered: &[u8]) -> [u8; TAG_LEN] {
    let full = mac(key, covered).finalize().into_bytes();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// Whether `tag` is the tag of `covered` under `key`, compared in constant time.
pub fn verify(key: &Key, covered: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    mac(key, covered).verify_truncated_left(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231 test case 2 (key "Jefe"), here with the key zero-padded to 32
        // bytes, which HMAC treats identically (keys are padded to the block size).
        let mut key = [0u8; KEY_LEN];
        key[..4].copy_from_slice(b"Jefe");
        let t = tag(&key, b"what do ya want for nothing?");
        assert_eq!(
            t,
            [
                0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
                0x75, 0xc7
            ]
        );
        assert!(verify(&key, b"what do ya want for nothing?", &t));
    }

    #[test]
    fn refuses_a_changed_byte_or_key() {
        let key = [7u8; KEY_LEN];
        let t = tag(&key, b"datagram");
        assert!(!verify(&key, b"datagrum", &t));
        assert!(!verify(&[8u8; KEY_LEN], b"datagram", &t));
        let mut bad = t;
        bad[15] ^= 1;
        assert!(!verify(&key, b"datagram", &bad));
    }
}
