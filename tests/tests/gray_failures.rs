//! Failures that are not crashes: an instance that stalls for a moment (a GC pause,
//! a CPU-starved container, SIGSTOP) and wakes with its peers' heartbeats queued in
//! its socket. Each instance in a container of its own on a bridge, default options
//! but the heartbeat.
//!
//! Needs root (namespaces); skips with the reason otherwise, and fails under
//! `CI=true`.

use std::time::Duration;

use handover_tests::process::{handover_bin, Run};
use handover_tests::require_netns;
use handover_tests::topology::Containers;
use rustix::process::{kill_process, Pid, Signal};

const WAIT: Duration = Duration::from_secs(10);
/// The dead interval at a 20 ms heartbeat and the default priority:
/// 3 × 20 ms + (256 − 100) / 256 × 20 ms.
const DEAD_INTERVAL: Duration = Duration::from_micros(72_187);

/// A healthy standby stopped for 1, 2, 5 and 10 dead intervals, ten times each
/// (`HANDOVER_PAUSES` to change), wakes with its deadline long past and the
/// active's heartbeats waiting in its socket: it reads them first, and never takes
/// over from the live active (it declared the active dead, was elected, and its
/// newer claim won).
#[test]
fn a_healthy_standby_paused_never_steals_from_the_active() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let start = |c: &handover_tests::topology::Container| {
        let mut cmd = c.ns.command(handover_bin());
        cmd.args(["--log-format", "json", "run", "--mode", "failover"])
            .args(["--heartbeat", "20ms", "--", "sleep", "3600"]);
        Run::spawn(cmd)
    };
    let mut active = start(&a);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let mut standby = start(&b);
    assert!(standby.saw("peer_up", WAIT), "{:?}", standby.seen);
    std::thread::sleep(Duration::from_millis(300));
    let pid = Pid::from_raw(standby.pid() as i32).unwrap();
    let each: u32 = std::env::var("HANDOVER_PAUSES").map_or(10, |n| n.parse().unwrap());
    let mut pauses = 0;
    for intervals in [1, 2, 5, 10] {
        for _ in 0..each {
            kill_process(pid, Signal::STOP).unwrap();
            std::thread::sleep(DEAD_INTERVAL * intervals);
            kill_process(pid, Signal::CONT).unwrap();
            pauses += 1;
            std::thread::sleep(Duration::from_millis(150));
            assert!(
                standby.latest("elected").is_none(),
                "the standby took over after pause {pauses} ({intervals} dead intervals): {:?}",
                standby.seen
            );
        }
    }
    active.collect(Duration::from_millis(200));
    assert!(
        active.latest("demoted").is_none() && active.latest("shutdown_requested").is_none(),
        "the active was demoted: {:?}",
        active.seen
    );
    assert!(active.try_alive() && standby.try_alive());
    println!("{pauses} pauses of the standby, of 1, 2, 5 and 10 dead intervals: no takeover");
}
