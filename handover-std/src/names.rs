//! Names of any length, made to fit where the space is fixed: the service name a
//! heartbeat carries, and the socket files of a scope. balena takes service names
//! from the compose file (40 characters and more happen) and device UUIDs of 32
//! or 62 characters; none of them may be refused.
//!
//! Every shortening is a function of the name alone, so that every instance of a
//! service, of this release or the next, arrives at the same one.

use std::borrow::Cow;

use handover_proto::wire::MAX_NAME;

/// 64-bit FNV-1a: stable across releases and architectures, as names on disk and
/// on the wire must be.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The service name as a heartbeat carries it: `name` itself if it fits in
/// [`MAX_NAME`] bytes, else its beginning (cut at a character boundary), `~`, and
/// six hex digits of a hash of the whole, so that two long names that share their
/// beginning still show apart.
pub fn wire_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_NAME {
        return Cow::Borrowed(name);
    }
    let tag = format!("~{:06x}", fnv1a64(name.as_bytes()) & 0xff_ffff);
    let mut end = MAX_NAME - tag.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{tag}", &name[..end]))
}

/// The longest path a Unix socket may have: `sun_path` holds 108 bytes, its
/// terminating NUL included.
pub const MAX_SOCKET_PATH: usize = 107;

/// The longest file name a scope's socket gets in its directory, the temporary
/// name it is bound under before it is renamed into place included
/// (`<stem>.sock.<16 hex digits>`).
const SOCKET_SUFFIX: usize = ".sock.".len() + 16;

/// A scope as a file stem, where every character outside `[A-Za-z0-9_.-]` is `_`:
/// readable, and the name every earlier release used.
fn readable_stem(scope: &str) -> String {
    scope
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "_.-".contains(c) {
            true => c,
            false => '_',
        })
        .collect()
}

/// The stem of the files a scope has in a coordination directory whose path is
/// `dir_len` bytes long: its readable form when every socket path fits in
/// `sun_path`, else 16 hex digits of a hash of the scope. `None` if even that
/// does not fit: the directory's path is too long for any socket.
pub fn socket_stem(dir_len: usize, scope: &str) -> Option<String> {
    let fits = |stem: &str| dir_len + 1 + stem.len() + SOCKET_SUFFIX <= MAX_SOCKET_PATH;
    let readable = readable_stem(scope);
    if fits(&readable) {
        return Some(readable);
    }
    let hashed = format!("{:016x}", fnv1a64(scope.as_bytes()));
    fits(&hashed).then_some(hashed)
}

/// The longest coordination directory path that leaves room for a socket.
pub const MAX_SOCKET_DIR: usize = MAX_SOCKET_PATH - 1 - 16 - SOCKET_SUFFIX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn short_names_are_kept() {
        assert_eq!(wire_name("api"), "api");
        let exactly = "n".repeat(MAX_NAME);
        assert!(matches!(wire_name(&exactly), Cow::Borrowed(_)));
    }

    #[test]
    fn long_names_are_shortened_to_fit_deterministically_and_apart() {
        let a = "environmental-sensor-aggregation-service";
        let b = "environmental-sensor-aggregation-service-2";
        let (wa, wb) = (wire_name(a), wire_name(b));
        assert_eq!(wa.len(), MAX_NAME);
        assert!(a.starts_with(wa.split('~').next().unwrap()), "{wa}");
        assert_eq!(wa, wire_name(a));
        assert_ne!(wa, wb);
    }

    #[test]
    fn shortening_never_cuts_a_character() {
        let name = "é".repeat(40);
        let short = wire_name(&name);
        assert!(short.len() <= MAX_NAME, "{short}");
        assert!(short.starts_with("éé"));
    }

    #[test]
    fn socket_stems_are_readable_while_they_fit_then_hashed() {
        let dir = "/tmp/balena/handover-sockets".len();
        assert_eq!(socket_stem(dir, "uuid/api").unwrap(), "uuid_api");
        // balena's longest: a 62-character UUID and a 40-character service.
        let scope = format!("{}/{}", "a".repeat(62), "s".repeat(40));
        let stem = socket_stem(dir, &scope).unwrap();
        assert_eq!(stem.len(), 16);
        assert!(dir + 1 + stem.len() + SOCKET_SUFFIX <= MAX_SOCKET_PATH);
        // Two scopes that share their beginning get two files.
        let other = format!("{}/{}", "a".repeat(62), "s".repeat(41));
        assert_ne!(socket_stem(dir, &other).unwrap(), stem);
    }

    #[test]
    fn a_directory_too_long_for_any_socket_is_refused() {
        assert!(socket_stem(MAX_SOCKET_DIR, "x".repeat(200).as_str()).is_some());
        assert!(socket_stem(MAX_SOCKET_DIR + 1, "x").is_some_and(|s| s == "x"));
        assert_eq!(socket_stem(MAX_SOCKET_DIR + 1, &"x".repeat(60)), None);
        assert_eq!(socket_stem(MAX_SOCKET_PATH, "x"), None);
    }
}
