//! Socket filters (classic BPF) on the listening sockets: the kernel drops other
//! scopes' datagrams before they wake the process.
//!
//! On a LAN that a fleet shares, every instance hears every other device's and
//! service's heartbeats; scopes keep them from interfering, but each one would still
//! cost a wake-up and a system call. The filters pass only what the protocol could
//! accept:
//!
//! - on the protocol's port, v2 datagrams of this instance's scope: the magic byte,
//!   flags with no reserved bit set, and at [`SCOPE_OFFSET`] the scope id's varint,
//!   which the decoder accepts in no other encoding ([`scope_prefix`]);
//! - on handover-lib's port (legacy mode), its 9-byte announcements.
//!
//! A datagram that passes may still be malformed further on: the decoder drops and
//! counts it. `handover watch` opens its sockets without filters and sees every scope.
//!
//! For UDP sockets the filter sees the datagram from its UDP header on: the payload
//! starts at byte 8, and the length includes the header.

use handover_proto::wire::{legacy, scope_prefix, MAGIC, RESERVED_FLAGS, SCOPE_OFFSET};
use socket2::SockFilter;

/// Classic BPF instructions (linux/filter.h).
/// `BPF_LD | BPF_W | BPF_LEN`: A = the datagram's length.
const LD_LEN: u16 = 0x80;
/// `BPF_LD | BPF_B | BPF_ABS`: A = the byte at k.
const LD_BYTE: u16 = 0x30;
/// `BPF_JMP | BPF_JGE | BPF_K`: A >= k.
const JGE: u16 = 0x35;
/// `BPF_JMP | BPF_JEQ | BPF_K`: A == k.
const JEQ: u16 = 0x15;
/// `BPF_JMP | BPF_JSET | BPF_K`: A & k != 0.
const JSET: u16 = 0x45;
/// `BPF_RET | BPF_K`: keep k bytes (0: drop).
const RET: u16 = 0x06;

/// Length of the UDP header in front of the payload.
const UDP_HEADER: u32 = 8;

/// A check: load, then a jump that drops the datagram when the check fails.
enum Check {
    /// Payload length at least `n`.
    LenAtLeast(u32),
    /// Payload length exactly `n`.
    LenIs(u32),
    /// Payload byte `at` equals `value`.
    Byte { at: u32, value: u8 },
    /// Payload byte `at` has none of the bits of `mask`.
    NoBits { at: u32, mask: u8 },
}

/// The program that accepts a datagram passing every check and drops the others.
fn program(checks: &[Check]) -> Vec<SockFilter> {
    let mut prog = Vec::with_capacity(2 * checks.len() + 2);
    for (i, check) in checks.iter().enumerate() {
        let (load, jump, k, drop_if_true) = match *check {
            Check::LenAtLeast(n) => (SockFilter::new(LD_LEN, 0, 0, 0), JGE, UDP_HEADER + n, false),
            Check::LenIs(n) => (SockFilter::new(LD_LEN, 0, 0, 0), JEQ, UDP_HEADER + n, false),
            Check::Byte { at, value } => (
                SockFilter::new(LD_BYTE, 0, 0, UDP_HEADER + at),
                JEQ,
                u32::from(value),
                false,
            ),
            Check::NoBits { at, mask } => (
                SockFilter::new(LD_BYTE, 0, 0, UDP_HEADER + at),
                JSET,
                u32::from(mask),
                true,
            ),
        };
        prog.push(load);
        // Jumps count the instructions they skip; the drop is the last one, after
        // the remaining checks (two instructions each) and the accept.
        let to_drop = (2 * (checks.len() - i) - 1) as u8;
        let (jt, jf) = if drop_if_true {
            (to_drop, 0)
        } else {
            (0, to_drop)
        };
        prog.push(SockFilter::new(jump, jt, jf, k));
    }
    prog.push(SockFilter::new(RET, 0, 0, u32::MAX)); // accept, whole
    prog.push(SockFilter::new(RET, 0, 0, 0)); // drop
    prog
}

/// The filter of the protocol's port: v2 datagrams of `scope`.
pub(crate) fn same_scope(scope: u32) -> Vec<SockFilter> {
    let (prefix, len) = scope_prefix(scope);
    let mut checks = vec![
        Check::LenAtLeast((SCOPE_OFFSET + len) as u32),
        Check::Byte {
            at: 0,
            value: MAGIC,
        },
        Check::NoBits {
            at: 1,
            mask: RESERVED_FLAGS,
        },
    ];
    for (i, &value) in prefix[..len].iter().enumerate() {
        let at = (SCOPE_OFFSET + i) as u32;
        checks.push(Check::Byte { at, value });
    }
    program(&checks)
}

/// The filter of handover-lib's port: its 9-byte announcements.
pub(crate) fn legacy() -> Vec<SockFilter> {
    program(&[
        Check::LenIs(legacy::LEN as u32),
        Check::Byte {
            at: 0,
            value: legacy::VERSION,
        },
    ])
}

#[cfg(test)]
mod tests {
    //! The filters run in the kernel, on real sockets over loopback, against the
    //! decoder's verdict on the whole fuzz corpus and on crafted boundary cases.

    use super::*;
    use handover_proto::wire::{self, Body, Datagram, DecodeError, Goodbye, Header, Repr};
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    /// A socket with a filter, a sender, and a datagram the filter passes, sent after
    /// each probe: whichever arrives first tells whether the probe passed.
    struct Probe {
        rx: UdpSocket,
        tx: UdpSocket,
        sentinel: Vec<u8>,
    }

    impl Probe {
        fn new(filter: &[SockFilter], sentinel: Vec<u8>) -> Self {
            let rx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            socket2::SockRef::from(&rx).attach_filter(filter).unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let tx = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            tx.connect(rx.local_addr().unwrap()).unwrap();
            let probe = Probe { rx, tx, sentinel };
            assert!(probe.passes(&probe.sentinel.clone()), "the sentinel passes");
            probe
        }

        /// Whether the kernel lets `bytes` through.
        fn passes(&self, bytes: &[u8]) -> bool {
            self.tx.send(bytes).unwrap();
            self.tx.send(&self.sentinel).unwrap();
            let mut buf = [0u8; 65536];
            let n = self.rx.recv(&mut buf).expect("the sentinel arrives");
            if buf[..n] == self.sentinel[..] && bytes != &self.sentinel[..] {
                return false;
            }
            assert_eq!(&buf[..n], bytes);
            let n = self.rx.recv(&mut buf).expect("the sentinel arrives");
            assert_eq!(&buf[..n], &self.sentinel[..]);
            true
        }
    }

    fn goodbye(scope: u32, tagged: bool) -> Vec<u8> {
        goodbye_with(scope, tagged, &[])
    }

    /// The same with extension records, as a later version may send.
    fn goodbye_with(scope: u32, tagged: bool, extensions: &[wire::Extension]) -> Vec<u8> {
        let repr = Repr {
            header: Header {
                scope,
                sender: 0x5e71,
                counter: 1,
            },
            body: Body::Goodbye(Goodbye { successor: None }),
        };
        let mut buf = [0u8; wire::MAX_DATAGRAM + 64];
        let n = if tagged {
            repr.emit_tagged_extended(&[7; 32], extensions, &mut buf)
                .unwrap()
        } else {
            repr.emit_extended(extensions, &mut buf).unwrap()
        };
        buf[..n].to_vec()
    }

    /// What the decoder says of `bytes` for an instance of `scope`: `Some(true)` it
    /// is a datagram of the scope (the filter must pass it), `Some(false)` it is
    /// not ours whatever follows (the filter must drop it), `None` it is malformed
    /// after our prefix (either way: the decoder counts it).
    fn verdict(bytes: &[u8], scope: u32) -> Option<bool> {
        match Datagram::parse(bytes) {
            Ok(Datagram::V2(packet)) => Some(packet.repr.header.scope == scope),
            Ok(Datagram::Legacy(_)) => Some(false),
            Err(
                DecodeError::Empty
                | DecodeError::UnknownFormat(_)
                | DecodeError::LegacyStatus
                | DecodeError::BadFlags,
            ) => Some(false),
            Err(_) => {
                let (prefix, len) = scope_prefix(scope);
                let ours = bytes.get(SCOPE_OFFSET..SCOPE_OFFSET + len) == Some(&prefix[..len]);
                if ours {
                    None
                } else {
                    Some(false)
                }
            }
        }
    }

    fn check(probe: &Probe, scope: u32, bytes: &[u8]) {
        let passed = probe.passes(bytes);
        match verdict(bytes, scope) {
            Some(expected) => assert_eq!(passed, expected, "scope {scope:#x}: {bytes:02x?}"),
            None => assert!(
                passed,
                "a malformed datagram of our scope reaches the decoder"
            ),
        }
    }

    fn corpus() -> Vec<Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut inputs = Vec::new();
        for target in std::fs::read_dir(&root).expect("the fuzz corpus") {
            for file in std::fs::read_dir(target.unwrap().path()).unwrap() {
                inputs.push(std::fs::read(file.unwrap().path()).unwrap());
            }
        }
        inputs
    }

    #[test]
    fn the_scope_filter_agrees_with_the_decoder_on_the_fuzz_corpus() {
        let inputs = corpus();
        assert!(inputs.len() > 1000, "{} inputs", inputs.len());
        let fuzz_scope = wire::scope_id(b"fuzz");
        let probe = Probe::new(&same_scope(fuzz_scope), goodbye(fuzz_scope, false));
        for bytes in &inputs {
            check(&probe, fuzz_scope, bytes);
        }
        // Against each datagram's own scope too: the corpus has many scopes.
        let mut own = 0;
        for bytes in &inputs {
            if let Ok(Datagram::V2(packet)) = Datagram::parse(bytes) {
                let scope = packet.repr.header.scope;
                let probe = Probe::new(&same_scope(scope), goodbye(scope, false));
                check(&probe, scope, bytes);
                own += 1;
            }
        }
        assert!(own > 100, "{own} datagrams decode");
    }

    #[test]
    fn the_scope_filter_at_every_varint_length() {
        let scopes = [
            0,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX,
        ];
        for scope in scopes {
            let probe = Probe::new(&same_scope(scope), goodbye(scope, false));
            for tagged in [false, true] {
                let ours = goodbye(scope, tagged);
                assert!(probe.passes(&ours), "scope {scope:#x}, tagged {tagged}");
                // Every shorter prefix: too short to be ours, or cut inside the body.
                for cut in 0..ours.len() {
                    check(&probe, scope, &ours[..cut]);
                }
                // A later version's records pass.
                let record = wire::Extension {
                    kind: 0x21,
                    data: b"later",
                };
                let extended = goodbye_with(scope, tagged, &[record]);
                assert!(probe.passes(&extended), "scope {scope:#x}, extended");
                // Each byte of the prefix changed; a reserved flag bit set.
                for at in 0..SCOPE_OFFSET + scope_prefix(scope).1 {
                    let mut other = ours.clone();
                    other[at] ^= if at == 1 { 0x04 } else { 0x01 };
                    assert!(!probe.passes(&other), "scope {scope:#x}: {other:02x?}");
                }
            }
            for other in scopes.iter().filter(|&&s| s != scope) {
                assert!(!probe.passes(&goodbye(*other, false)));
            }
            // The same scope with an overlong varint: the decoder refuses it too.
            let mut overlong = vec![wire::MAGIC, 0];
            let (prefix, len) = scope_prefix(scope);
            if len < 5 {
                overlong.extend_from_slice(&prefix[..len]);
                overlong[SCOPE_OFFSET + len - 1] |= 0x80;
                overlong.push(0);
                overlong.extend_from_slice(&goodbye(scope, false)[SCOPE_OFFSET + len..]);
                check(&probe, scope, &overlong);
                assert!(!probe.passes(&overlong));
            }
            let legacy = [wire::legacy::VERSION, 0, 0, 1, 0x8c, 0, 0, 0, 0];
            assert!(!probe.passes(&legacy), "no v1 datagrams on the v2 port");
        }
    }

    #[test]
    fn the_legacy_filter_passes_only_handover_libs_announcements() {
        let announce = [wire::legacy::VERSION, 0, 0, 1, 0x8c, 0x2b, 0x3c, 0x4d, 0x5e];
        let probe = Probe::new(&legacy(), announce.to_vec());
        let mut status = announce;
        status[0] = wire::legacy::STATUS_VERSION;
        assert!(!probe.passes(&status));
        assert!(!probe.passes(&announce[..8]));
        assert!(!probe.passes(&[&announce[..], &[0]].concat()));
        assert!(!probe.passes(&goodbye(1, false)));
        assert!(!probe.passes(&[]));
        for bytes in corpus() {
            let legacy = matches!(Datagram::parse(&bytes), Ok(Datagram::Legacy(_)));
            assert_eq!(probe.passes(&bytes), legacy, "{bytes:02x?}");
        }
    }
}
