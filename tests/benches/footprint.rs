//! What `handover run` costs a device, for the binary users ship: its size, the
//! time from starting it to listening on the group, and the peak RSS and CPU of an
//! idle instance around `sleep`. Each instance runs in a container on a bridge with
//! default options, as users run it (needs root).
//!
//! `HANDOVER_BIN=$PWD/target/x86_64-unknown-linux-musl/dist/handover \
//!  cargo bench -p handover-tests --bench footprint`
//! (`HANDOVER_BENCH_ROUNDS`, default 100; `HANDOVER_BIN` defaults to the
//! workspace's build of the benchmark profile.)

use std::process::Command;
use std::time::Duration;

use handover_tests::measure::{cpu_ns, peak_rss_kib, report, setting, skip_bench, t_us};
use handover_tests::netns::Netns;
use handover_tests::process::{handover_bin, monotonic_us, Run};
use handover_tests::topology::Containers;

fn rounds() -> usize {
    setting("HANDOVER_BENCH_ROUNDS", 100) as usize
}

/// `handover run EXTRA -- sleep` started directly inside `ns` (no `ip netns exec`
/// in between, so that the time measured is handover's own).
fn start(ns: &Netns, extra: &[&str]) -> Run {
    let mut cmd = Command::new(handover_bin());
    cmd.args(["--log-format", "json", "run", "--scope", "footprint"])
        .args(extra)
        .args(["--", "sleep", "100000"]);
    ns.enter(|| Run::spawn(cmd))
}

/// Start (just before `fork`) to the `listening` event: the group joined on every
/// interface and the sockets open.
fn start_to_listening(ns: &Netns, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let started = monotonic_us();
            let mut run = start(ns, &[]);
            let listening = t_us(&mut run, "listening");
            run.kill();
            listening - started
        })
        .collect()
}

/// An instance that leads alone, at a 1 s heartbeat, for `seconds`.
fn idle(ns: &Netns, seconds: u64) {
    let mut run = start(ns, &["--heartbeat", "1s", "--ready-after", "0s"]);
    t_us(&mut run, "ready");
    let pid = run.pid();
    let before = cpu_ns(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_ns(pid) - before;
    println!(
        "idle, {seconds} s at a 1 s heartbeat: peak RSS {:.2} MiB, CPU {:.4} % of one core",
        peak_rss_kib(pid) as f64 / 1024.0,
        cpu as f64 / (seconds as f64 * 1e9) * 100.0,
    );
}

fn main() {
    if skip_bench() {
        return;
    }
    let bin = handover_bin();
    let size = std::fs::metadata(&bin).expect("the handover binary").len();
    println!(
        "{}: {size} bytes ({:.2} MiB)",
        bin.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    let net = Containers::new();
    let container = net.container();
    report(
        "start -> listening, default options in a container",
        start_to_listening(&container.ns, rounds()),
    );
    idle(&container.ns, 30);
}
