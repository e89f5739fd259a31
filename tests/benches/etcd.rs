//! The etcd election backend against a real 3-member etcd cluster on loopback
//! (fast raft timings): takeover after the leader leaves (SIGTERM: it resigns and
//! revokes its lease), takeover after kill -9 of the leader at a 2 s TTL, and the
//! idle cost of a leading `handover run`.
//!
//! `HANDOVER_ETCD_BIN=... cargo bench -p handover-tests --bench etcd`
//! (`HANDOVER_BENCH_ROUNDS`, default 100 resigns and 20 kills.)

use std::time::{Duration, Instant};

use handover_tests::etcd::{candidate, etcd_bin, Cluster};
use handover_tests::measure::{cpu_ns, peak_rss_kib, report, setting, t_us};
use handover_tests::process::{monotonic_us, Run};
use rustix::process::{kill_process, Pid, Signal};

fn rounds(default: usize) -> usize {
    setting("HANDOVER_BENCH_ROUNDS", default as u64) as usize
}

const SERVICE: &[&str] = &["sleep", "100000"];

/// A chain of `n` takeovers: each leader is ended by `end` while a standby waits;
/// the time from the end to the standby's `elected`.
fn takeovers(cluster: &Cluster, ttl: &str, n: usize, end: impl Fn(&mut Run)) -> Vec<u64> {
    let mut leader = candidate(cluster, ttl, SERVICE);
    t_us(&mut leader, "elected");
    (0..n)
        .map(|_| {
            let mut standby = candidate(cluster, ttl, SERVICE);
            t_us(&mut standby, "ready");
            // The standby waits in its campaign once its key is in etcd and etcd's
            // watcher for it has caught up: watchers that start at a past
            // revision are synced every 100 ms (a standby that began campaigning
            // just before the leader left can wait that much longer).
            let campaigning = Instant::now() + Duration::from_secs(10);
            while cluster.keys("handover/svc/") < 2 {
                assert!(Instant::now() < campaigning, "the standby never campaigned");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(250));
            let ended = monotonic_us();
            end(&mut leader);
            let took = t_us(&mut standby, "elected") - ended;
            leader = standby;
            took
        })
        .collect()
}

fn terminate(run: &mut Run) {
    let pid = Pid::from_raw(run.pid() as i32).expect("pid");
    kill_process(pid, Signal::TERM).expect("SIGTERM");
    let _ = run.wait(Duration::from_secs(10));
}

fn idle(cluster: &Cluster, seconds: u64) {
    let mut run = candidate(cluster, "5s", SERVICE);
    t_us(&mut run, "elected");
    let pid = run.pid();
    let before = cpu_ns(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_ns(pid) - before;
    let hwm_kib = peak_rss_kib(pid);
    println!(
        "idle leader, {seconds} s, TTL 5 s: peak RSS {:.2} MiB, CPU {:.4} % of one core",
        hwm_kib as f64 / 1024.0,
        cpu as f64 / (seconds as f64 * 1e9) * 100.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = match etcd_bin() {
        Ok(bin) => bin,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let cluster = Cluster::start(bin, 3);
    report(
        "takeover after the leader leaves (SIGTERM: resign + revoke), TTL 5 s",
        takeovers(&cluster, "5s", rounds(100), terminate),
    );
    report(
        "takeover after kill -9 of the leader, TTL 2 s",
        takeovers(&cluster, "2s", rounds(20), Run::kill),
    );
    idle(&cluster, 30);
}
