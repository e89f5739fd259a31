//! The managed work queue with real processes: two `queue-worker`s (one on the tokio
//! API, one on the blocking API), each in a container of its own on one bridge, share
//! 10,000 tasks. The active one is killed with SIGKILL fifty times, and restarted
//! each time as a new standby that submits every task again. Every task runs, and
//! repeats stay within one per kill.
//!
//! Needs root (namespaces); skips with the reason otherwise, and fails under
//! `CI=true`.

use std::path::Path;
use std::time::{Duration, Instant};

use handover_tests::netns::Netns;
use handover_tests::process::{eventually, queue_worker, scratch, Run};
use handover_tests::require_netns;
use handover_tests::runlog::{lines, runs, Tally};
use handover_tests::topology::Containers;

const TASKS: u64 = 10_000;
const KILLS: usize = 50;
/// Tasks the active one runs between kills, at least.
const PROGRESS: usize = 100;
const WAIT: Duration = Duration::from_secs(20);

fn worker(ns: &Netns, runlog: &Path, priority: u8, blocking: bool) -> Run {
    let mut cmd = ns.command(queue_worker());
    cmd.arg(runlog)
        .args(["--tasks", &TASKS.to_string()])
        .args(["--priority", &priority.to_string()])
        .args(["--task-us", "500"])
        .env("HANDOVER_SCOPE", "work-queue");
    if blocking {
        cmd.arg("--blocking");
    }
    Run::spawn(cmd)
}

fn role(run: &mut Run) -> Option<String> {
    run.latest("role")
        .and_then(|v| v["state"].as_str())
        .map(str::to_owned)
}

/// How the active worker is taken down.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL: an unclean failover.
    Kill,
    /// SIGTERM: the worker stops its queue and leaves.
    Term,
}

/// Takes the active worker down `times` times, restarting it each time, then waits
/// for every task to run.
fn fail_over(times: usize, how: Stop) -> Tally {
    let net = Containers::new();
    let containers = [net.container(), net.container()];
    let dir = scratch(&format!("work-queue-{how:?}"));
    let runlog = dir.join("runs");
    // Slot 0: tokio, priority 150; slot 1: blocking, priority 100. A restarted
    // worker keeps its slot.
    let start = |slot: usize| worker(&containers[slot].ns, &runlog, [150, 100][slot], slot == 1);
    let mut workers = [start(0), start(1)];
    let began = Instant::now();
    let mut at_last_stop = 0;
    for stop in 0..times {
        // One active, the other standing by, and progress since the last stop.
        let ready = eventually(WAIT, || {
            let roles = [role(&mut workers[0]), role(&mut workers[1])];
            let active = roles.iter().any(|r| r.as_deref() == Some("Active"));
            let standby = roles.iter().any(|r| r.as_deref() == Some("Standby"));
            active && standby && lines(&runlog) >= at_last_stop + PROGRESS
        });
        assert!(
            ready,
            "stop {stop}: no progress or no standby: {:?} {:?}, {} runs",
            role(&mut workers[0]),
            role(&mut workers[1]),
            lines(&runlog)
        );
        let active = (0..2)
            .find(|&w| role(&mut workers[w]).as_deref() == Some("Active"))
            .expect("an active worker");
        assert!(
            lines(&runlog) < TASKS as usize,
            "the tasks ran out after {stop} stops: make them slower"
        );
        match how {
            Stop::Kill => workers[active].kill(),
            Stop::Term => {
                let pid =
                    rustix::process::Pid::from_raw(workers[active].pid() as i32).expect("a pid");
                rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
                assert!(
                    workers[active].saw("left", WAIT),
                    "stop {stop}: the worker did not leave"
                );
                assert_eq!(
                    workers[active].wait(WAIT).and_then(|s| s.code()),
                    Some(0),
                    "stop {stop}"
                );
            }
        }
        at_last_stop = lines(&runlog);
        workers[active] = start(active);
    }
    let stopping = began.elapsed();
    let finished = eventually(Duration::from_secs(60), || {
        runs(&runlog).len() as u64 == TASKS
    });
    let outcome = Tally::of(&runlog, TASKS);
    println!(
        "work queue: {TASKS} tasks, the active worker stopped {times} times ({how:?}) in \
         {stopping:.1?}: {} lost, {} repeated (a task ran at most {} times)",
        outcome.lost.len(),
        outcome.repeated,
        outcome.most
    );
    assert!(finished, "not every task ran: {:?}", outcome.lost);
    // Kept when the test fails, for its run log.
    drop(workers);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

#[test]
fn fifty_kills_of_the_active_worker_lose_no_task_and_repeat_at_most_one_each() {
    require_netns!();
    let out = fail_over(KILLS, Stop::Kill);
    assert!(out.lost.is_empty(), "lost: {:?}", out.lost);
    assert!(
        out.repeated <= KILLS,
        "{} repeats over {KILLS} kills: more than one per failover",
        out.repeated
    );
    assert!(out.most <= 2, "a task ran {} times", out.most);
}

#[test]
fn twenty_clean_stops_of_the_active_worker_repeat_nothing() {
    require_netns!();
    let out = fail_over(20, Stop::Term);
    assert!(out.lost.is_empty(), "lost: {:?}", out.lost);
    assert_eq!(out.repeated, 0, "repeats across clean hand-overs");
}
