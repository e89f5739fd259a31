//! What a crowded LAN costs an idle `handover run` (needs root): three containers on a
//! bridge, ours in one, a crowd of other devices' and services' instances sending
//! heartbeats from another; CPU time of our process from the scheduler's accounting,
//! and hand-over latency between two containers while the crowd sends.
//!
//! `HANDOVER_BIN=$PWD/target/dist/handover cargo bench -p handover-tests --bench crowd`
//! (`HANDOVER_BENCH_SECONDS`, default 20, per CPU figure; `HANDOVER_BENCH_ROUNDS`,
//! default 100 hand-overs)

use std::time::Duration;

use handover_tests::crowd::Crowd;
use handover_tests::measure::{cpu_ns, hand_over_chain, report, setting, skip_bench, t_us};
use handover_tests::netns::Netns;
use handover_tests::process::{fake_service, Run};
use handover_tests::topology::Containers;

/// `handover run` with default network options (bridge mode) around the test
/// service, in `ns`.
fn start(ns: &Netns, scope: &str) -> Run {
    let mark = std::env::temp_dir().join(format!("handover-crowd-{}", std::process::id()));
    let complete = std::env::temp_dir().join(format!("handover-crowd-done-{}", std::process::id()));
    let service = fake_service();
    Run::start(
        ns,
        &[
            "run",
            "--scope",
            scope,
            "--complete-file",
            complete.to_str().unwrap(),
            "--",
            service.to_str().unwrap(),
            mark.to_str().unwrap(),
        ],
    )
}

/// CPU of an idle elected instance over `seconds` while `crowd` (if any) sends.
fn idle_cpu(ns: &Netns, seconds: u64, what: &str, crowd: Option<&Crowd>) {
    let mut run = start(ns, "crowd-bench/ours");
    t_us(&mut run, "elected");
    std::thread::sleep(Duration::from_secs(1));
    let sent_before = crowd.map_or(0, Crowd::sent);
    let before = cpu_ns(run.pid());
    std::thread::sleep(Duration::from_secs(seconds));
    let used = cpu_ns(run.pid()) - before;
    let sent = crowd.map_or(0, Crowd::sent) - sent_before;
    println!(
        "{what}: CPU {:.4} % of one core ({:.1} ms in {seconds} s, while the crowd sent {sent})",
        used as f64 / (seconds as f64 * 1e9) * 100.0,
        used as f64 / 1e6,
    );
    run.kill();
}

/// A chain of `n` hand-overs alternating between `a` and `b`.
fn hand_overs(a: &Netns, b: &Netns, n: usize) -> Vec<u64> {
    hand_over_chain(n, |i| {
        start(if i % 2 == 0 { a } else { b }, "crowd-bench/handover")
    })
}

fn main() {
    if skip_bench() {
        return;
    }
    let seconds = setting("HANDOVER_BENCH_SECONDS", 20);
    let rounds = setting("HANDOVER_BENCH_ROUNDS", 100) as usize;
    let net = Containers::new();
    let (a, b, crowded) = (net.container(), net.container(), net.container());
    let from = crowded.address.unwrap();

    idle_cpu(&a.ns, seconds, "idle, no crowd", None);
    {
        // 40 instances of other scopes at a 20 ms heartbeat.
        let crowd = Crowd::start(&crowded.ns, from, 40, 2000);
        idle_cpu(
            &a.ns,
            seconds,
            "idle, 2,000 foreign-scope datagrams/s (40 instances, 20 ms)",
            Some(&crowd),
        );
        report(
            "hand-over latency between two containers, 2,000 foreign datagrams/s",
            hand_overs(&a.ns, &b.ns, rounds),
        );
    }
    {
        // 1,000 devices at the default 1 s heartbeat.
        let crowd = Crowd::start(&crowded.ns, from, 1000, 1000);
        idle_cpu(
            &a.ns,
            seconds,
            "idle, 1,000 devices at a 1 s heartbeat",
            Some(&crowd),
        );
        report(
            "hand-over latency between two containers, 1,000 devices",
            hand_overs(&a.ns, &b.ns, rounds),
        );
    }
}
