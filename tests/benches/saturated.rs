//! Failover with every core saturated (`stress-ng --cpu 0`: one busy worker per
//! core): two instances (`handover run --mode failover`, default options but the
//! heartbeat), each in a container of its own, and nothing injected for a while.
//! Every election after the first is a false failover: no fault caused it. Then,
//! still saturated, kill -9 of the active instance, again and again: the time from
//! the kill to the standby's `elected`, on the shared monotonic clock.
//!
//! `cargo bench -p handover-tests --bench saturated` (root, stress-ng;
//! `HANDOVER_SATURATED_SECONDS` per heartbeat, default 600;
//! `HANDOVER_SATURATED_HEARTBEATS`, default `20ms,10ms`; `HANDOVER_BENCH_ROUNDS`
//! kills per heartbeat, default 50).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handover_tests::load::instance;
use handover_tests::measure::{report, setting, skip_bench};
use handover_tests::process::{monotonic_us, Run};
use handover_tests::topology::{Container, Containers};

const WAIT: Duration = Duration::from_secs(20);

/// Every core busy until dropped.
struct Stress(Child);

impl Stress {
    fn start() -> Self {
        let child = Command::new("stress-ng")
            .args(["--cpu", "0", "--quiet"])
            .stdout(Stdio::null())
            .spawn()
            .expect("stress-ng (Debian: stress-ng)");
        Stress(child)
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // stress-ng's workers are its children, in its process group.
        let _ = Command::new("pkill").args(["-KILL", "stress-ng"]).status();
    }
}

fn candidate(c: &Container, heartbeat: &str) -> Run {
    let options = ["--mode", "failover", "--heartbeat", heartbeat];
    instance(&c.ns, "saturated", &options, &["sleep", "100000"])
}

fn elections(run: &Run) -> usize {
    run.seen.iter().filter(|e| e["event"] == "elected").count()
}

fn main() {
    if skip_bench() {
        return;
    }
    let seconds = setting("HANDOVER_SATURATED_SECONDS", 600);
    let rounds = setting("HANDOVER_BENCH_ROUNDS", 50);
    let heartbeats =
        std::env::var("HANDOVER_SATURATED_HEARTBEATS").unwrap_or_else(|_| "20ms,10ms".into());
    for heartbeat in heartbeats.split(',') {
        let net = Containers::new();
        let (a, b) = (net.container(), net.container());
        let mut runs = [candidate(&a, heartbeat), candidate(&b, heartbeat)];
        assert!(runs[0].saw("ready", WAIT) && runs[1].saw("ready", WAIT));
        std::thread::sleep(Duration::from_secs(1));
        let stress = Stress::start();
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(seconds) {
            for run in &mut runs {
                run.drain();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let false_failovers = (elections(&runs[0]) + elections(&runs[1])).saturating_sub(1);
        println!(
            "heartbeat {heartbeat}, both cores saturated for {seconds} s: {false_failovers} \
             false failovers"
        );

        // Kills, still saturated.
        let containers = [a, b];
        let mut samples = Vec::new();
        for _ in 0..rounds {
            for run in &mut runs {
                run.drain();
            }
            let active = (0..2)
                .find(|&i| {
                    let last = runs[i]
                        .seen
                        .iter()
                        .rev()
                        .find(|e| e["event"] == "elected" || e["event"] == "demoted");
                    last.is_some_and(|e| e["event"] == "elected")
                })
                .expect("an active instance");
            let standby = 1 - active;
            let before = elections(&runs[standby]);
            let killed_at = monotonic_us();
            runs[active].kill();
            let elected = runs[standby]
                .next_event("elected", WAIT)
                .expect("the standby takes over");
            assert_eq!(elections(&runs[standby]), before + 1);
            samples.push(elected["t_us"].as_u64().unwrap() - killed_at);
            runs[active] = candidate(&containers[active], heartbeat);
            assert!(runs[active].saw("leader_changed", WAIT));
            std::thread::sleep(Duration::from_millis(300));
        }
        drop(stress);
        report(
            &format!(
                "heartbeat {heartbeat}, saturated: kill -9 of the active to the standby elected"
            ),
            samples,
        );
    }
}
