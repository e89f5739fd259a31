//! `handover run --mode failover --standby hot`: the service runs on every
//! instance and is told its role and the active's state; after the active is
//! killed, the standby's service is told it is active and resumes from the state
//! the active published. The examples (`examples/hot-standby/worker.py` and
//! `worker.js`) are the services, each instance in a container of its own.
//!
//! Needs root (namespaces), python3 and node; skips with the reason otherwise,
//! and fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use handover_tests::load::instance;
use handover_tests::process::{eventually, scratch};
use handover_tests::skip::not_installed;
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(15);

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/hot-standby")
        .join(file)
}

/// The lines the worker printed so far.
fn printed(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// "role active (leader ID), resuming after N": N.
fn resumed_after(line: &str) -> Option<u64> {
    line.strip_prefix("role active")?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_hot_standby_resumes_where_the_killed_active_was() {
    require_netns!();
    require!(not_installed("python3"));
    require!(not_installed("node"));
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("hot-standby");
    let (a_out, b_out) = (dir.join("a"), dir.join("b"));
    let worker = |runtime: &str, file: &str, out: &Path| {
        let script = example(file);
        format!("exec {runtime} {} >> {}", script.display(), out.display())
    };
    let options = |priority: &'static str| {
        [
            "--mode",
            "failover",
            "--standby",
            "hot",
            "--priority",
            priority,
        ]
    };
    let python = worker("python3", "worker.py", &a_out);
    let mut active = instance(&a.ns, "hot", &options("200"), &["sh", "-c", &python]);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let node = worker("node", "worker.js", &b_out);
    let mut standby = instance(&b.ns, "hot", &options("100"), &["sh", "-c", &node]);
    assert!(standby.saw("ready", WAIT));
    // Hot: the standby's service runs before it is needed.
    assert!(standby.saw("child_started", WAIT));
    assert!(
        eventually(WAIT, || printed(&a_out)
            .iter()
            .any(|l| l.starts_with("role active"))),
        "the active's service was told: {:?}",
        printed(&a_out)
    );
    // The active works and publishes its progress for a while.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(standby.saw("synced", Duration::ZERO) || standby.saw("synced", WAIT));
    assert!(
        printed(&b_out).is_empty(),
        "the standby stays standing by: {:?}",
        printed(&b_out)
    );

    active.kill();
    let told = eventually(WAIT, || {
        printed(&b_out).iter().any(|l| l.starts_with("role active"))
    });
    assert!(
        told,
        "the standby's service was told it is active: {:?}",
        standby.seen
    );
    let line = printed(&b_out)
        .into_iter()
        .find(|l| l.starts_with("role active"))
        .unwrap();
    let resumed = resumed_after(&line).expect("how far it resumes");
    assert!(resumed >= 5, "it resumes from the active's state: {line}");
    // Still the service it started with: no restart on takeover.
    let started = standby
        .seen
        .iter()
        .filter(|e| e["event"] == "child_started")
        .count();
    assert_eq!(started, 1, "{:?}", standby.seen);
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
}
