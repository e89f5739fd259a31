//! Timings of `handover run` processes in network namespaces (needs root): hand-over
//! latency without and with 30 % loss (nftables) and failover time after kill -9
//! (the idle cost is in the `footprint` benchmark). Hand-over and failover are
//! measured twice: every instance in one namespace pinned to `lo`, and instances
//! alternating between two containers on a bridge (each its own namespace) with
//! default network options, as users run them.
//!
//! `cargo bench -p handover-tests --bench cli` (`HANDOVER_BENCH_ROUNDS`, default 100)

use handover_tests::measure::{hand_over_chain, report, setting, skip_bench, t_us};
use handover_tests::netns::Netns;
use handover_tests::process::{fake_service, monotonic_us, Run};
use handover_tests::topology::Containers;

fn rounds() -> usize {
    setting("HANDOVER_BENCH_ROUNDS", 100) as usize
}

/// Where the instances run: the namespaces they take turns in, and whether they are
/// pinned to `lo` (else the default, bridge mode).
struct Placement<'a> {
    spots: Vec<&'a Netns>,
    pinned: bool,
}

impl Placement<'_> {
    /// The namespace of the `i`-th instance.
    fn spot(&self, i: usize) -> &Netns {
        self.spots[i % self.spots.len()]
    }
}

fn start(
    placement: &Placement,
    i: usize,
    heartbeat: &str,
    extra: &[&str],
    service: &[&str],
) -> Run {
    let dir = std::env::temp_dir();
    let complete = dir.join(format!("handover-bench-{}", std::process::id()));
    let mut args = vec!["run"];
    if placement.pinned {
        args.extend(["--interface", "lo"]);
    }
    args.extend([
        "--scope",
        "bench",
        "--heartbeat",
        heartbeat,
        "--stop-timeout",
        "2s",
        "--complete-file",
        complete.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(service);
    Run::start(placement.spot(i), &args)
}

/// A chain of hand-overs: each new instance's readiness to the old one's shutdown
/// request, on one clock.
fn hand_overs(placement: &Placement, n: usize) -> Vec<u64> {
    let mark = std::env::temp_dir().join(format!("handover-bench-mark-{}", std::process::id()));
    let service = [
        fake_service().to_str().unwrap().to_owned(),
        mark.to_str().unwrap().to_owned(),
    ];
    let service: Vec<&str> = service.iter().map(String::as_str).collect();
    let samples = hand_over_chain(n, |i| start(placement, i, "100ms", &[], &service));
    let _ = std::fs::remove_file(&mark);
    samples
}

/// Failover after kill -9: (kill -> standby elected, kill -> its service started).
fn failovers(placement: &Placement, n: usize) -> (Vec<u64>, Vec<u64>) {
    let (mut elected, mut started) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let service = ["sleep", "1000"];
    for _ in 0..n {
        let failover = |p| ["--mode", "failover", "--priority", p];
        let mut active = start(placement, 0, "20ms", &failover("200"), &service);
        t_us(&mut active, "elected");
        let mut standby = start(placement, 1, "20ms", &failover("100"), &service);
        t_us(&mut standby, "peer_up");
        let killed = monotonic_us();
        active.kill();
        elected.push(t_us(&mut standby, "elected").saturating_sub(killed));
        started.push(t_us(&mut standby, "child_started").saturating_sub(killed));
        standby.kill();
    }
    (elected, started)
}

fn main() {
    if skip_bench() {
        return;
    }
    let n = rounds();
    let net = Containers::new();
    let containers = [net.container(), net.container()];
    let bridge = Placement {
        spots: containers.iter().map(|c| &c.ns).collect(),
        pinned: false,
    };
    report(
        "bridge, default options: hand-over latency (new ready -> old shutdown request)",
        hand_overs(&bridge, n),
    );
    let (elected, started) = failovers(&bridge, n);
    report(
        "bridge, default options: failover after kill -9, 20 ms heartbeat (kill -> standby elected)",
        elected,
    );
    report("  (kill -> standby's service started)", started);
    drop(containers);
    drop(net);

    let ns = Netns::new();
    let same = Placement {
        spots: vec![&ns],
        pinned: true,
    };
    report(
        "one namespace, lo: hand-over latency (new ready -> old shutdown request)",
        hand_overs(&same, n),
    );
    ns.nft(
        "add table inet loss; \
         add chain inet loss input { type filter hook input priority 0; }; \
         add rule inet loss input meta l4proto udp numgen random mod 100 < 30 drop",
    );
    report(
        "one namespace, lo: hand-over latency with 30 % loss",
        hand_overs(&same, n),
    );
    drop(ns);
    let ns = Netns::new();
    let same = Placement {
        spots: vec![&ns],
        pinned: true,
    };
    let (elected, started) = failovers(&same, n);
    report(
        "one namespace, lo: failover after kill -9, 20 ms heartbeat (kill -> standby elected)",
        elected,
    );
    report("  (kill -> standby's service started)", started);
}
