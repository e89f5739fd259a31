//! The static binaries that `dist/build-static` makes, as a fleet of mixed devices
//! runs them: an aarch64 (Pi 3/4/5) and an armv7 (Pi 2/3) `handover` under
//! qemu-user, each in its own container on a bridge, hand over to and from the
//! native x86-64 one with default options. Real cross-architecture interop: both
//! byte orders of the same code paths, word sizes 32 and 64.
//!
//! Needs root, `dist/build-static` run first, and Debian's `qemu-user-static` (or
//! `qemu-user`); skips with the reason otherwise, and fails under `CI=true`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handover_tests::balena;
use handover_tests::process::{eventually, marks, scratch, Run};
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(20);

const X86_64: &str = "x86_64-unknown-linux-musl";
const AARCH64: &str = "aarch64-unknown-linux-musl";
const ARMV7: &str = "armv7-unknown-linux-musleabihf";

/// `target/` of this workspace (the test runs as `target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// The static `handover` for `triple`, if it has been built.
fn static_binary(triple: &str) -> Result<PathBuf, String> {
    let path = target_dir().join(triple).join("dist").join("handover");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run dist/build-static",
            path.display()
        ))
    }
}

/// The first of `names` on `PATH`.
fn on_path(names: &[&str]) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("none of {names:?} is installed (Debian's qemu-user-static)"))
}

/// How to start `handover` for `triple` on this x86-64 machine.
fn launcher(triple: &str) -> Result<Vec<OsString>, String> {
    let binary = static_binary(triple)?.into_os_string();
    let emulator = match triple {
        X86_64 => return Ok(vec![binary]),
        AARCH64 => on_path(&["qemu-aarch64-static", "qemu-aarch64"])?,
        ARMV7 => on_path(&["qemu-arm-static", "qemu-arm"])?,
        _ => unreachable!("no emulator for {triple}"),
    };
    Ok(vec![emulator.into_os_string(), binary])
}

/// What an ELF file says of itself: its machine, and whether it asks for a dynamic
/// loader (a `PT_INTERP` program header).
fn elf(path: &Path) -> (u16, bool) {
    let b = std::fs::read(path).expect("the binary");
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    assert_eq!(b[5], 1, "little-endian");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let wide = b[4] == 2;
    let (phoff, phentsize, phnum) = if wide {
        let off = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
        (off, u16_at(54) as usize, u16_at(56) as usize)
    } else {
        (
            u32_at(28) as usize,
            u16_at(42) as usize,
            u16_at(44) as usize,
        )
    };
    const PT_INTERP: u32 = 3;
    let interp = (0..phnum).any(|i| u32_at(phoff + i * phentsize) == PT_INTERP);
    (u16_at(18), interp)
}

#[test]
fn the_static_binaries_need_no_loader_and_match_their_target() {
    // e_machine: EM_X86_64, EM_AARCH64, EM_ARM.
    for (triple, machine) in [(X86_64, 62), (AARCH64, 183), (ARMV7, 40)] {
        let path = static_binary(triple);
        require!(path.as_ref().err());
        let (m, interp) = elf(&path.unwrap());
        assert_eq!(m, machine, "{triple}: ELF machine");
        assert!(!interp, "{triple}: asks for a dynamic loader");
    }
}

/// `old` is in charge in one container; `new` starts in another and takes over.
fn hand_over(old_launcher: &[OsString], new_launcher: &[OsString], what: &str) {
    let net = Containers::new();
    let (old_c, new_c) = (net.container(), net.container());
    let dir = scratch(what);
    let (old_mark, new_mark) = (dir.join("old"), dir.join("new"));
    let start = |c: &handover_tests::topology::Container, l: &[OsString], mark: &Path| {
        Run::spawn(balena::entrypoint(&c.ns, l, "dev1", &dir, mark, &[]))
    };

    let mut old = start(&old_c, old_launcher, &old_mark);
    assert!(old.saw("elected", WAIT), "{what}: the old instance leads");
    let mut new = start(&new_c, new_launcher, &new_mark);
    assert!(
        new.saw("ready", WAIT),
        "{what}: the new instance is ready: {:?}",
        new.seen
    );
    assert!(
        old.saw("shutdown_requested", WAIT),
        "{what}: the old instance is asked to stop: old {:?}, new {:?}",
        old.seen,
        new.seen
    );
    assert!(
        eventually(WAIT, || marks(&old_mark).contains(&"term".to_string())),
        "{what}: the old service got SIGTERM"
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0), "{what}");
    assert!(dir.join("handover-complete").is_file(), "{what}");
    assert!(new.saw("predecessor_done", WAIT), "{what}");
    assert!(!marks(&new_mark).contains(&"term".to_string()), "{what}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn to_and_from_x86_64(triple: &str) {
    require_netns!();
    let (native, emulated) = (launcher(X86_64), launcher(triple));
    require!(native.as_ref().err().or(emulated.as_ref().err()));
    let (native, emulated) = (native.unwrap(), emulated.unwrap());
    hand_over(&native, &emulated, &format!("x86_64-to-{triple}"));
    hand_over(&emulated, &native, &format!("{triple}-to-x86_64"));
}

#[test]
fn aarch64_hands_over_to_and_from_x86_64() {
    to_and_from_x86_64(AARCH64);
}

#[test]
fn armv7_hands_over_to_and_from_x86_64() {
    to_and_from_x86_64(ARMV7);
}
