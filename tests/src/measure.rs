//! What the benchmarks of real processes share: event times, percentiles, CPU time.

use std::time::Duration;

use crate::process::Run;

/// The `t_us` of the next `event` of `run` (CLOCK_MONOTONIC, microseconds).
pub fn t_us(run: &mut Run, event: &str) -> u64 {
    let e = run
        .wait_event(event, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no {event} event: {:?}", run.seen));
    e["t_us"].as_u64().expect("t_us")
}

/// Percentile `p` (0 to 1) of sorted microsecond samples, in ms.
pub fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e3
}

/// Prints the median, tail and maximum of microsecond samples.
pub fn report(what: &str, mut samples: Vec<u64>) {
    samples.sort_unstable();
    println!(
        "{what}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.9),
        pct(&samples, 0.99),
        pct(&samples, 1.0)
    );
}

/// CPU time a process has used, all its threads, in nanoseconds (the scheduler's
/// own accounting, `/proc/PID/task/*/schedstat`: no 10 ms tick resolution).
pub fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Whether a benchmark of real processes should not run: cargo only lists the
/// benchmarks (`--list`), or network namespaces are unavailable (said on stdout).
pub fn skip_bench() -> bool {
    if std::env::args().any(|a| a == "--list") {
        return true;
    }
    if let Some(why) = crate::netns::unavailable() {
        println!("skipped: {why}");
        return true;
    }
    false
}

/// A benchmark setting from the environment (`HANDOVER_BENCH_ROUNDS`...), else
/// `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of a process (`VmHWM`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process");
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

/// A chain of `n` hand-overs: `start(i)` starts the `i`-th instance (0 first); each
/// new instance's `ready` to its predecessor's `shutdown_requested`, on one clock.
pub fn hand_over_chain(n: usize, mut start: impl FnMut(usize) -> Run) -> Vec<u64> {
    let mut old = start(0);
    t_us(&mut old, "ready");
    let mut samples = Vec::with_capacity(n);
    for i in 1..=n {
        let mut new = start(i);
        let ready = t_us(&mut new, "ready");
        samples.push(t_us(&mut old, "shutdown_requested").saturating_sub(ready));
        t_us(&mut new, "predecessor_done");
        old.wait(Duration::from_secs(10));
        old = new;
    }
    samples
}
