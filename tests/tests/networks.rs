//! `handover run` on the networks users have, started as users start it: every
//! instance in its own network namespace (a container on a bridge, a device on a
//! LAN), with balena's environment and no interface option.
//!
//! Each test needs root (namespaces); it skips with the reason otherwise, and fails
//! under `CI=true`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{eventually, fake_service, handover_bin, marks, Run};
use handover_tests::require_netns;
use handover_tests::topology::Containers;

const WAIT: Duration = Duration::from_secs(10);

/// A scratch directory: the per-service lock directory balena bind-mounts at
/// `/tmp/balena`, and the services' mark files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handover-net-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `handover run [extra] -- fake-service MARK` in `ns`, with the environment balena
/// gives a container of service `svc` on device `uuid` (and nothing about the
/// network).
fn service(ns: &Netns, uuid: &str, lock_dir: &Path, mark: &Path, extra: &[&str]) -> Run {
    let mut cmd = ns.command(handover_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BALENA", "1")
        .env("BALENA_DEVICE_UUID", uuid)
        .env("BALENA_SERVICE_NAME", "svc")
        .env(
            "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
            lock_dir.join("handover-complete"),
        )
        .args(["--log-format", "json", "run"])
        .args(extra)
        .arg("--")
        .arg(fake_service())
        .arg(mark);
    Run::spawn(cmd)
}

#[test]
fn hand_over_between_containers_on_a_bridge() {
    require_netns!();
    let net = Containers::new();
    let (old_c, new_c) = (net.container(), net.container());
    let dir = scratch("bridge-handover");
    let (old_mark, new_mark) = (dir.join("old"), dir.join("new"));

    let mut old = service(&old_c.ns, "dev1", &dir, &old_mark, &[]);
    assert!(old.saw("elected", WAIT), "the first instance is in charge");
    let mut new = service(&new_c.ns, "dev1", &dir, &new_mark, &[]);
    assert!(new.saw("ready", WAIT));

    assert!(
        old.saw("shutdown_requested", WAIT),
        "the old container hears the new one across the bridge"
    );
    assert!(
        eventually(WAIT, || marks(&old_mark).contains(&"term".to_string())),
        "old service got SIGTERM: {:?}",
        marks(&old_mark)
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        dir.join("handover-complete").is_file(),
        "complete file written"
    );
    assert!(
        new.saw("predecessor_done", WAIT),
        "the new one learns its predecessor is done"
    );
    assert!(!marks(&new_mark).contains(&"term".to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}
