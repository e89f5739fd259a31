//! Gray failures, timed on real processes, each instance in a container of its
//! own on a bridge:
//! - a hung service (SIGSTOP) on the active, with `--health-http` every 100 ms and
//!   a fall of 3: from the freeze to the verdict, to the hung service stopped, and
//!   to the standby's service started, at the default heartbeat (1 s) and at
//!   100 ms;
//! - an etcd leader whose key an operator deletes (one member on loopback's
//!   bridge, TTL 5 s): from the delete to the old leader's service stopped, and to
//!   the new leader elected (it waits for the old lease, given back once the
//!   service stopped).
//!
//! - false failovers on a starved machine: two instances in failover, 16 busy
//!   loops on the machine's cores, the standby paused (SIGSTOP) for 1 to 10 dead
//!   intervals every 2 to 4 s, at 10 and 20 ms heartbeats: how often the standby
//!   takes over, or the active is demoted.
//!
//! `cargo bench -p handover-tests --bench gray_failures` (root;
//! `HANDOVER_BENCH_ROUNDS`, default 20; `HANDOVER_BENCH_BUSY_SECONDS` per
//! heartbeat, default 600, 0 to skip; the etcd part needs `HANDOVER_ETCD_BIN` or
//! Debian's etcd-server).

use std::time::Duration;

use base64::Engine as _;
use handover_tests::etcd::{candidate_in, etcd_bin, Cluster};
use handover_tests::load::service;
use handover_tests::measure::{report, setting, skip_bench, t_us};
use handover_tests::process::{handover_bin, monotonic_us, scratch, Run};
use handover_tests::topology::{Container, Containers};
use rustix::process::{kill_process, Pid, Signal};

const WAIT: Duration = Duration::from_secs(10);

fn checked(c: &Container, heartbeat: &str) -> Run {
    let mut cmd = c.ns.command(handover_bin());
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args(["--heartbeat", heartbeat])
        .args(["--health-http", "http://127.0.0.1:8080/"])
        .args(["--health-interval", "100ms", "--health-fall", "3"])
        .arg("--")
        .arg("python3")
        .arg(service("health_server.py"))
        .env("PORT", "8080");
    Run::spawn(cmd)
}

fn hung_service(rounds: u64, heartbeat: &str) {
    let net = Containers::new();
    let (mut verdict, mut stopped, mut started) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a, b) = (net.container(), net.container());
        let mut active = checked(&a, heartbeat);
        assert!(active.saw("elected", WAIT));
        let pid = active.next_event("child_started", WAIT).expect("a service")["pid"]
            .as_i64()
            .unwrap();
        assert!(active.saw("service_ready", WAIT));
        let mut standby = checked(&b, heartbeat);
        assert!(standby.saw("ready", WAIT));
        assert!(active.saw("peer_up", WAIT));
        std::thread::sleep(Duration::from_millis(200));
        let frozen = monotonic_us();
        kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::STOP).unwrap();
        verdict.push(t_us(&mut active, "health") - frozen);
        stopped.push(t_us(&mut active, "child_exited") - frozen);
        started.push(t_us(&mut standby, "child_started") - frozen);
        assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(1));
    }
    println!("hung service, heartbeat {heartbeat}, check every 100 ms, fall 3:");
    report("  frozen -> unhealthy verdict", verdict);
    report("  frozen -> hung service stopped", stopped);
    report("  frozen -> standby's service started", started);
}

fn etcd_key_deleted(rounds: u64) {
    let Ok(bin) = etcd_bin() else {
        println!("etcd key deleted: skipped, no etcd binary");
        return;
    };
    let net = Containers::new();
    let cluster = Cluster::start_in(bin, 1, net.container());
    let service = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    ];
    let (mut stopped, mut elected) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (a, b) = (net.container(), net.container());
        let mut leader = candidate_in(&a.ns, &cluster, "5s", &service);
        let term = leader.next_event("term", WAIT).expect("a term");
        assert!(leader.saw("child_started", WAIT));
        let mut next = candidate_in(&b.ns, &cluster, "5s", &service);
        assert!(next.saw("leader_changed", WAIT));
        std::thread::sleep(Duration::from_millis(100));
        let key = term["key"].as_str().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let deleted = monotonic_us();
        let body = format!(r#"{{"key":"{b64}"}}"#);
        assert!(cluster.http(0, "/v3/kv/deleterange", Some(&body)).is_some());
        stopped.push(t_us(&mut leader, "child_exited") - deleted);
        elected.push(t_us(&mut next, "elected") - deleted);
        drop((leader, next));
    }
    println!("etcd, the leader's key deleted (TTL 5 s, a service that stops at once):");
    report("  deleted -> old leader's service stopped", stopped);
    report("  deleted -> next leader elected", elected);
}

/// `handover run --mode failover --heartbeat HB -- sleep 3600` in `c`.
fn plain(c: &Container, heartbeat: &str) -> Run {
    let mut cmd = c.ns.command(handover_bin());
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args(["--heartbeat", heartbeat, "--", "sleep", "3600"]);
    Run::spawn(cmd)
}

fn false_failovers(seconds: u64, heartbeat_ms: u64) {
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let heartbeat = format!("{heartbeat_ms}ms");
    let mut active = plain(&a, &heartbeat);
    assert!(active.saw("elected", WAIT));
    let mut standby = plain(&b, &heartbeat);
    assert!(standby.saw("ready", WAIT));
    assert!(active.saw("peer_up", WAIT));
    let busy: Vec<std::process::Child> = (0..16)
        .map(|_| {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("a busy loop")
        })
        .collect();
    // 3 heartbeats and the skew of the default priority.
    let dead_us = heartbeat_ms * 1000 * 3 + heartbeat_ms * 1000 * 156 / 256;
    let pid = Pid::from_raw(standby.pid() as i32).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let mut pauses = 0;
    while std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2_000 + random(2_000)));
        let intervals = 1 + random(10);
        kill_process(pid, Signal::STOP).unwrap();
        std::thread::sleep(Duration::from_micros(dead_us * intervals));
        kill_process(pid, Signal::CONT).unwrap();
        pauses += 1;
    }
    for mut b in busy {
        let _ = b.kill();
        let _ = b.wait();
    }
    active.collect(Duration::from_millis(500));
    standby.collect(Duration::from_millis(500));
    let count = |run: &Run, event: &str| run.seen.iter().filter(|e| e["event"] == event).count();
    println!(
        "heartbeat {heartbeat}, 16 busy loops for {seconds} s, {pauses} pauses of the standby: \
         standby elected {} times, active demoted {} times",
        count(&standby, "elected"),
        count(&active, "demoted")
    );
}

fn main() {
    if skip_bench() {
        return;
    }
    let rounds = setting("HANDOVER_BENCH_ROUNDS", 20);
    let dir = scratch("bench-gray");
    hung_service(rounds, "1s");
    hung_service(rounds, "100ms");
    etcd_key_deleted(rounds);
    let busy = setting("HANDOVER_BENCH_BUSY_SECONDS", 600);
    if busy > 0 {
        false_failovers(busy, 20);
        false_failovers(busy, 10);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
