//! Hot standby (`handover run --mode failover --standby hot`, heartbeat 20 ms): the
//! time from kill -9 of the active instance to the standby's service being told it
//! is active, read by the service itself on the shared monotonic clock. Each
//! instance in a container of its own.
//!
//! `cargo bench -p handover-tests --bench hot_standby` (root; `HANDOVER_BENCH_ROUNDS`,
//! default 30).

use std::time::Duration;

use handover_tests::load::instance;
use handover_tests::measure::{report, setting, skip_bench};
use handover_tests::process::{eventually, monotonic_us, scratch};
use handover_tests::topology::Containers;

/// Prints CLOCK_MONOTONIC in µs when told it is active.
const SERVICE: &str = r#"
import json, os, socket, time
channel = socket.socket(fileno=int(os.environ["HANDOVER_EVENTS_FD"]))
for line in channel.makefile():
    event = json.loads(line)
    if event["event"] == "role" and event["role"] == "active":
        print(time.monotonic_ns() // 1000, flush=True)
"#;

fn main() {
    if skip_bench() {
        return;
    }
    let rounds = setting("HANDOVER_BENCH_ROUNDS", 30);
    let net = Containers::new();
    let dir = scratch("bench-hot-standby");
    let script = dir.join("service.py");
    std::fs::write(&script, SERVICE).expect("service script");
    let wait = Duration::from_secs(10);
    let mut samples = Vec::new();
    for round in 0..rounds {
        let (a, b) = (net.container(), net.container());
        let told = dir.join(format!("told-{round}"));
        let service = format!("exec python3 {} >> {}", script.display(), told.display());
        let options = |priority| {
            [
                "--mode",
                "failover",
                "--standby",
                "hot",
                "--heartbeat",
                "20ms",
                "--priority",
                priority,
            ]
        };
        let mut active = instance(&a.ns, "bench", &options("200"), &["sh", "-c", &service]);
        assert!(active.saw("elected", wait));
        let mut standby = instance(&b.ns, "bench", &options("100"), &["sh", "-c", &service]);
        assert!(standby.saw("leader_changed", wait));
        std::thread::sleep(Duration::from_millis(200));
        // The active's own "active" line is there; the standby's comes next.
        let lines = || std::fs::read_to_string(&told).unwrap_or_default();
        assert_eq!(lines().lines().count(), 1, "only the active was told");
        let killed = monotonic_us();
        active.kill();
        assert!(eventually(wait, || lines().lines().count() == 2));
        let at: u64 = lines().lines().nth(1).unwrap().trim().parse().unwrap();
        samples.push(at.saturating_sub(killed));
        drop(standby);
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(
        "kill -9 of the active -> the hot standby's service told it is active (20 ms heartbeat)",
        samples,
    );
}
