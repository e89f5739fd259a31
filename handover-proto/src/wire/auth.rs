//! Authentication tags for groups with a pre-shared key.
//!
//! A tagged v2 datagram sets flag bit 0 and ends with [`TAG_LEN`] bytes: HMAC-SHA256,
//! keyed with the group key, over every byte before the tag (magic, flags, scope,
//! sender, counter and message), truncated to its first 16 bytes. Because the counter
//! is covered, a receiver that refuses counters it has seen refuses replays.

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use super::TAG_LEN;
pub use super::{Key, KEY_LEN};

/// SHA-256's block, to which HMAC pads its key.
const BLOCK: usize = 64;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// HMAC-SHA256 (RFC 2104) of `covered` under `key`.
///
/// Written on `sha2`'s compression function rather than taken from the `hmac` and
/// `sha2` hashers: their general buffering cost a firmware about 0.7 KB of flash,
/// and every input here is known whole. A group key is shorter than a block, so it
/// is only padded. Checked against the `hmac` crate on random keys and lengths.
fn hmac(key: &Key, covered: &[u8]) -> [u8; 32] {
    let mut pad = [0x36u8; BLOCK];
    for (p, k) in pad.iter_mut().zip(key) {
        *p ^= k;
    }
    let inner = sha256_after(&pad, covered);
    for p in pad.iter_mut() {
        *p ^= 0x36 ^ 0x5c;
    }
    sha256_after(&pad, &inner)
}

/// SHA-256 of one whole block `first` followed by `rest`.
fn sha256_after(first: &[u8; BLOCK], rest: &[u8]) -> [u8; 32] {
    let mut state = IV;
    compress(&mut state, first);
    let mut blocks = rest.chunks_exact(BLOCK);
    for block in &mut blocks {
        let mut whole = [0u8; BLOCK];
        whole.copy_from_slice(block);
        compress(&mut state, &whole);
    }
    // The padding: a 1 bit, zeros, and the length in bits in the last 8 bytes, in a
    // second block if the tail leaves no room for it.
    let tail = blocks.remainder();
    let mut last = [0u8; BLOCK];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    if tail.len() >= BLOCK - 8 {
        compress(&mut state, &last);
        last = [0u8; BLOCK];
    }
    let bits = (BLOCK + rest.len()) as u64 * 8;
    last[BLOCK - 8..].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &last);
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    compress256(state, &[GenericArray::from(*block)]);
}

/// The tag of `covered` under `key`.
pub fn tag(key: &Key, covered: &[u8]) -> [u8; TAG_LEN] {
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&hmac(key, covered)[..TAG_LEN]);
    tag
}

/// Whether `tag` is the tag of `covered` under `key`, compared in constant time.
pub fn verify(key: &Key, covered: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    let expected = hmac(key, covered);
    let differ = expected.iter().zip(tag).fold(0u8, |d, (a, b)| d | (a ^ b));
    // Opaque to the optimiser, so that the comparison is not cut short.
    core::hint::black_box(differ) == 0
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

    #[test]
    fn equals_the_hmac_crate_at_every_length_up_to_three_blocks() {
        use hmac::Mac;
        let key = [0x5a; KEY_LEN];
        let mut message = [0u8; 193];
        for (i, byte) in message.iter_mut().enumerate() {
            *byte = i as u8;
        }
        for len in 0..=message.len() {
            let mut reference = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            reference.update(&message[..len]);
            let expected: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(hmac(&key, &message[..len]), expected, "{len} bytes");
        }
    }

    proptest::proptest! {
        /// Every length around the padding's edges (55, 56, 63, 64 bytes and their
        /// next blocks) and beyond the largest datagram, against the `hmac` crate.
        #[test]
        fn equals_the_hmac_crate(key: [u8; KEY_LEN], covered in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            use hmac::Mac;
            let mut reference = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            reference.update(&covered);
            let expected: [u8; 32] = reference.finalize().into_bytes().into();
            proptest::prop_assert_eq!(hmac(&key, &covered), expected);
        }
    }
}
