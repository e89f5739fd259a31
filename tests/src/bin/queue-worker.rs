//! A service for the work-queue tests: submits tasks 1..=N to a
//! `handover_std::queue::WorkQueue` in failover mode and records every task it runs.
//!
//! `queue-worker RUNLOG --tasks N --priority P [--task-us U] [--heartbeat-ms H]
//! [--window W] [--blocking]`
//!
//! Each run appends "ID PID" to RUNLOG. Role changes are JSON lines on stderr
//! (`{"event":"role","state":"Active","checkpoint":N}`), then `{"event":"finished"}`
//! once every task is done. The scope comes from the environment
//! (`HANDOVER_SCOPE`), as for any service. `--blocking` uses the blocking API.
//!
//! SIGTERM stops it cleanly: no new task, the running one's checkpoint held, then
//! it leaves the group (`{"event":"left"}`) and exits 0.

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use handover_std::queue::{Outcome, WorkQueue};
use handover_std::{Config, Policy, State, Status};

struct Options {
    runlog: String,
    tasks: u64,
    priority: u8,
    task: Duration,
    heartbeat: Duration,
    window: NonZeroUsize,
    blocking: bool,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let runlog = args.next().expect("usage: queue-worker RUNLOG [options]");
    let mut o = Options {
        runlog,
        tasks: 100,
        priority: 100,
        task: Duration::ZERO,
        heartbeat: Duration::from_millis(20),
        window: NonZeroUsize::MIN,
        blocking: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .expect("a value")
                .parse::<u64>()
                .expect("a number")
        };
        match arg.as_str() {
            "--tasks" => o.tasks = value(),
            "--priority" => o.priority = value() as u8,
            "--task-us" => o.task = Duration::from_micros(value()),
            "--heartbeat-ms" => o.heartbeat = Duration::from_millis(value()),
            "--window" => o.window = NonZeroUsize::new(value() as usize).expect("a window"),
            "--blocking" => o.blocking = true,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

fn config(o: &Options) -> Config {
    let mut config = Config::from_env().expect("configuration");
    config.policy = Policy::Failover { preempt: false };
    config.priority = o.priority;
    config.heartbeat = o.heartbeat;
    config
}

/// Runs task `id`: records it, then takes its time.
fn run(log: &mut std::fs::File, id: u64, took: Duration) -> Outcome {
    // One write per line: O_APPEND keeps lines whole across processes.
    log.write_all(format!("{id} {}\n", std::process::id()).as_bytes())
        .expect("run log");
    if !took.is_zero() {
        std::thread::sleep(took);
    }
    Outcome::Done
}

/// Says when the role changes, and once when every task is done.
#[derive(Default)]
struct Reporter {
    role: Option<State>,
    finished: bool,
}

impl Reporter {
    fn report(&mut self, status: &Status, done: bool) {
        if self.role != Some(status.state) {
            self.role = Some(status.state);
            eprintln!(
                r#"{{"event":"role","state":"{:?}","checkpoint":{}}}"#,
                status.state, status.checkpoint
            );
        }
        if done && !self.finished {
            self.finished = true;
            eprintln!(r#"{{"event":"finished"}}"#);
        }
    }
}

/// Stops `queue` on SIGTERM.
fn stop_on_sigterm(queue: WorkQueue<()>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            queue.stop();
        });
    });
}

fn main() {
    let o = options();
    let queue: WorkQueue<()> = WorkQueue::with_window(o.window);
    stop_on_sigterm(queue.clone());
    for id in 1..=o.tasks {
        queue.submit(id, ());
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&o.runlog)
        .expect("run log");
    if o.blocking {
        let handover = handover_std::blocking::Handover::start(config(&o)).expect("start");
        handover.ready().expect("ready");
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut reporter = Reporter::default();
                loop {
                    reporter.report(&handover.status(), queue.done() >= o.tasks);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            queue
                .run_blocking(&handover, |id, ()| run(&mut log, id, o.task))
                .expect("the queue failed");
            handover.leave().expect("leave");
            eprintln!(r#"{{"event":"left"}}"#);
            std::process::exit(0);
        });
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let handover = handover_std::Handover::start(config(&o))
                .await
                .expect("start");
            handover.ready().await.expect("ready");
            let roles = async {
                let mut reporter = Reporter::default();
                loop {
                    reporter.report(&handover.status(), queue.done() >= o.tasks);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            let work = async {
                queue
                    .run(&handover, |id, ()| {
                        let outcome = run(&mut log, id, o.task);
                        async move { outcome }
                    })
                    .await
                    .expect("the queue failed");
                handover.leave().await.expect("leave");
                eprintln!(r#"{{"event":"left"}}"#);
            };
            tokio::select! {
                () = roles => {}
                () = work => {}
            }
        });
    }
}
