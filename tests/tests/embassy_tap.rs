//! handover-embassy on an embassy-net stack (smoltcp) over a TAP device, against
//! `handover run` (handover-std) on the Linux side of the same network namespace:
//! hand-over and failover in both directions, and a firmware peer with a group key
//! that hands over only to an instance with the same key.

use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{embassy_peer, fake_service, scratch, Run};
use handover_tests::require_netns;

const WAIT: Duration = Duration::from_secs(5);

/// A namespace with `tap0`, Linux at 10.9.0.1/24; the embassy stack takes 10.9.0.2.
fn tap_namespace() -> Netns {
    let ns = Netns::new();
    ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    ns.ip(&["addr", "add", "10.9.0.1/24", "dev", "tap0"]);
    ns.ip(&["link", "set", "tap0", "up"]);
    ns
}

fn embassy(ns: &Netns, extra: &[&str]) -> Run {
    let mut cmd = ns.command(embassy_peer());
    cmd.args(["tap0", "10.9.0.2"]).args(extra);
    Run::spawn(cmd)
}

fn linux(ns: &Netns, dir: &std::path::Path, name: &str, extra: &[&str]) -> Run {
    let complete = dir.join("complete");
    let mark = dir.join(name);
    let mut args = vec![
        "run",
        "--interface",
        "tap0",
        "--scope",
        "interop",
        "--heartbeat",
        "100ms",
        "--complete-file",
        complete.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let service = fake_service();
    args.extend(["--", service.to_str().unwrap(), mark.to_str().unwrap()]);
    Run::start(ns, &args)
}

#[test]
fn embassy_hands_over_to_linux() {
    require_netns!();
    let ns = tap_namespace();
    let dir = scratch("e2l");
    let mut old = embassy(&ns, &[]);
    assert!(
        old.saw("elected", WAIT),
        "embassy instance in charge: {:?}",
        old.seen
    );
    let mut new = linux(&ns, &dir, "new", &[]);
    embassy_yields_to(&mut old, &mut new);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embassy instance `old` yields to the Linux instance `new`, exits 0, and `new`
/// hears its goodbye.
fn embassy_yields_to(old: &mut Run, new: &mut Run) {
    assert!(new.saw("ready", WAIT));
    assert!(
        old.saw("shutdown_requested", WAIT),
        "embassy yields: {:?}",
        old.seen
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        new.saw("predecessor_done", WAIT),
        "Linux hears the goodbye: {:?}",
        new.seen
    );
}

#[test]
fn linux_hands_over_to_embassy() {
    require_netns!();
    let ns = tap_namespace();
    let dir = scratch("l2e");
    let mut old = linux(&ns, &dir, "old", &[]);
    assert!(old.saw("ready", WAIT));
    std::thread::sleep(Duration::from_millis(300));
    let mut new = embassy(&ns, &[]);
    assert!(
        old.saw("shutdown_requested", WAIT),
        "Linux yields: {:?}",
        old.seen
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(dir.join("complete").is_file());
    assert!(
        new.saw("predecessor_done", WAIT),
        "embassy hears the goodbye: {:?}",
        new.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failover_from_embassy_to_linux() {
    require_netns!();
    let ns = tap_namespace();
    let dir = scratch("fe2l");
    let mut active = embassy(&ns, &["--failover", "200"]);
    assert!(active.saw("elected", WAIT));
    let mut standby = linux(
        &ns,
        &dir,
        "standby",
        &["--mode", "failover", "--priority", "100"],
    );
    assert!(standby.saw("peer_up", WAIT), "Linux hears the embassy peer");
    assert!(!standby.saw("elected", Duration::from_millis(500)));
    active.kill();
    assert!(
        standby.saw("elected", WAIT),
        "Linux takes over: {:?}",
        standby.seen
    );
    assert!(standby.saw("child_started", WAIT));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failover_from_linux_to_embassy() {
    require_netns!();
    let ns = tap_namespace();
    let dir = scratch("fl2e");
    let mut active = linux(
        &ns,
        &dir,
        "active",
        &["--mode", "failover", "--priority", "200"],
    );
    assert!(active.saw("elected", WAIT));
    let mut standby = embassy(&ns, &["--failover", "100"]);
    assert!(
        standby.saw("peer_up", WAIT),
        "embassy hears Linux: {:?}",
        standby.seen
    );
    assert!(!standby.saw("elected", Duration::from_millis(500)));
    active.kill();
    assert!(
        standby.saw("elected", WAIT),
        "embassy takes over: {:?}",
        standby.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A group key, as `--key-file` holds it: 64 hex digits.
fn key(dir: &std::path::Path, name: &str, byte: u8) -> (std::path::PathBuf, String) {
    let hex: String = (0..32).map(|i| format!("{:02x}", byte ^ i)).collect();
    let path = dir.join(name);
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    (path, hex)
}

#[test]
fn an_authenticated_firmware_peer_hands_over_only_to_its_group() {
    require_netns!();
    let ns = tap_namespace();
    let dir = scratch("auth-e2l");
    let (group, hex) = key(&dir, "group.key", 0x5a);
    let (other, _) = key(&dir, "other.key", 0xa5);
    let mut old = embassy(&ns, &["--key", &hex]);
    assert!(old.saw("elected", WAIT), "{:?}", old.seen);

    // An instance with another key is not of the group: the firmware drops what it
    // sends and does not yield.
    let mut stranger = linux(
        &ns,
        &dir,
        "stranger",
        &["--key-file", other.to_str().unwrap()],
    );
    assert!(stranger.saw("ready", WAIT));
    assert!(
        !old.saw("shutdown_requested", Duration::from_secs(1)),
        "the firmware yielded to a peer without the group's key: {:?}",
        old.seen
    );
    stranger.kill();

    let mut new = linux(&ns, &dir, "new", &["--key-file", group.to_str().unwrap()]);
    embassy_yields_to(&mut old, &mut new);
    let _ = std::fs::remove_dir_all(&dir);
}
