//! The managed work queue on real sockets, each instance in a container of its own on
//! one bridge (20 ms heartbeat):
//!
//! * checkpoint → every standby's acknowledgement: `Handover::checkpoint(n)` in this
//!   process until `Status::checkpoint_held` reaches `n`, the standby a
//!   `queue-worker` process;
//! * throughput of no-op tasks on one active instance: alone; with a standby,
//!   waiting for each acknowledgement (window 1, the default); with a standby and a
//!   window of 64.
//!
//! `cargo bench -p handover-tests --bench work_queue` (root; `HANDOVER_BENCH_ROUNDS`,
//! default 5,000 checkpoints; `HANDOVER_BENCH_TASKS`, default 200,000).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use handover_std::queue::{Outcome, WorkQueue};
use handover_std::{Config, Handover, Policy, State};
use handover_tests::measure::{report, setting, skip_bench};
use handover_tests::netns::Netns;
use handover_tests::process::{queue_worker, scratch, Run};
use handover_tests::topology::Containers;

const WAIT: Duration = Duration::from_secs(10);

fn config(scope: &str) -> Config {
    Config {
        scope: scope.into(),
        policy: Policy::Failover { preempt: false },
        priority: 200,
        heartbeat: Duration::from_millis(20),
        ..Config::default()
    }
}

/// A standby `queue-worker` in `ns`.
fn standby(ns: &Netns, scope: &str) -> Run {
    let runlog = scratch("bench-work-queue").join("runs");
    let mut cmd = ns.command(queue_worker());
    cmd.arg(&runlog)
        .args(["--tasks", "0", "--priority", "100"])
        .env("HANDOVER_SCOPE", scope);
    Run::spawn(cmd)
}

/// Waits until `run` stands by.
fn stands_by(run: &mut Run) {
    let standing = handover_tests::process::eventually(WAIT, || {
        run.latest("role").is_some_and(|r| r["state"] == "Standby")
    });
    assert!(standing, "{:?}", run.seen);
}

/// Runs `f` with an active instance of `scope`, on a runtime inside `ns`.
fn active<T: Send>(ns: &Netns, scope: &str, f: impl AsyncFnOnce(&Handover) -> T + Send) -> T {
    ns.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let handover = Handover::start(config(scope)).await.expect("start");
            handover.ready().await.expect("ready");
            handover
                .wait_for(|s| s.state == State::Active && s.checkpoint_held.is_some())
                .await
                .expect("elected");
            let out = f(&handover).await;
            let _ = handover.leave().await;
            out
        })
    })
}

/// Waits until the active one has heard its standby.
async fn heard(handover: &Handover) {
    handover
        .wait_for(|s| s.stats.accepted > 0)
        .await
        .expect("heard");
    // A few heartbeats more: the standby is in its table.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn acknowledged(net: &Containers, rounds: u64) {
    let (a, b) = (net.container(), net.container());
    let mut standby = standby(&b.ns, "bench-ack");
    let samples = active(&a.ns, "bench-ack", async |handover| {
        stands_by(&mut standby);
        heard(handover).await;
        let mut samples = Vec::new();
        for n in 1..=rounds {
            let t = Instant::now();
            handover.checkpoint(n).await.expect("checkpoint");
            handover
                .wait_for(|s| s.checkpoint_held >= Some(n))
                .await
                .expect("held");
            samples.push(t.elapsed().as_micros() as u64);
        }
        // Each was acknowledged by the standby, not by nobody.
        let accepted = handover.status().stats.accepted;
        assert!(
            u64::from(accepted) >= rounds,
            "{accepted} datagrams accepted"
        );
        samples
    });
    report("checkpoint → standby acknowledged", samples);
}

fn throughput(net: &Containers, tasks: u64, standby_too: bool, window: usize) {
    let (a, b) = (net.container(), net.container());
    let scope = format!("bench-throughput-{standby_too}-{window}");
    let mut standby = standby_too.then(|| standby(&b.ns, &scope));
    let (took, done) = active(&a.ns, &scope, async |handover| {
        if let Some(standby) = &mut standby {
            stands_by(standby);
            heard(handover).await;
        }
        let queue = WorkQueue::with_window(NonZeroUsize::new(window).expect("window"));
        for id in 1..=tasks {
            queue.submit(id, ());
        }
        let stopper = queue.clone();
        let t = Instant::now();
        let run = queue.run(handover, |id, ()| {
            if id == tasks {
                stopper.stop();
            }
            async { Outcome::Done }
        });
        tokio::time::timeout(Duration::from_secs(300), run)
            .await
            .expect("in time")
            .expect("queue");
        (t.elapsed(), queue.done())
    });
    assert_eq!(done, tasks);
    println!(
        "queue throughput, no-op tasks, {}, window {window}: {tasks} in {took:.2?} = {:.0} tasks/s",
        if standby_too {
            "a standby acknowledging"
        } else {
            "alone"
        },
        tasks as f64 / took.as_secs_f64()
    );
}

fn main() {
    if skip_bench() {
        return;
    }
    let rounds = setting("HANDOVER_BENCH_ROUNDS", 5_000);
    let tasks = setting("HANDOVER_BENCH_TASKS", 200_000);
    let net = Containers::new();
    acknowledged(&net, rounds);
    throughput(&net, tasks, false, 1);
    throughput(&net, tasks / 10, true, 1);
    throughput(&net, tasks, true, 64);
}
