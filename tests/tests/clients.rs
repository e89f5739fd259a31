//! The Node and Python client packages under `handover run --queue`, installed as
//! users install them (`npm install <tarball>`, `pip install ./clients/python`),
//! each instance in a container of its own on one bridge.
//!
//! Two workers share 2,000 tasks while the active one is killed again and again
//! (each time just after the standby stalled and lost what was sent to it, the
//! active's checkpoints too), and restarted each time as a new standby that submits every task again:
//! nothing is lost, a task repeats at most once per kill, none runs three times;
//! SIGTERM in place of the kills repeats nothing.
//!
//! Needs root (namespaces), Node.js, npm and Python; skips with the reason
//! otherwise, and fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use handover_tests::clients::{missing, node_app, python_env};
use handover_tests::etcd::{etcd_bin, Cluster};
use handover_tests::netns::Netns;
use handover_tests::process::{children, emptied, eventually, handover_bin, scratch, Run};
use handover_tests::runlog::{lines, runs, Tally};
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};
use rustix::process::{kill_process, Pid, Signal};

/// Tasks the active one runs between stops, at least.
const PROGRESS: usize = 20;
const WAIT: Duration = Duration::from_secs(20);

/// The packages, installed once for every test of this file, under cargo's
/// scratch directory for integration tests (a static is never dropped, so a
/// directory in `/tmp` would outlive every run), replaced by each run.
struct Installed {
    node_app: PathBuf,
    python: PathBuf,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = emptied(Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-packages"));
        Installed {
            node_app: node_app(&dir),
            python: python_env(&dir),
        }
    })
}

/// The machine these tests share: each holds it shared, but a test of the
/// protocol's timing holds it alone. Ten tests of real processes on two cores can
/// keep a thread from running for longer than a 100 ms heartbeat's dead interval.
static MACHINE: RwLock<()> = RwLock::new(());

fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

/// A worker's service.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Worker {
    Node,
    /// Python, threads.
    Python,
    /// Python, asyncio.
    PythonAio,
}

impl Worker {
    fn command(self, runlog: &Path, rolefile: &Path) -> Vec<String> {
        let i = installed();
        let mut cmd = match self {
            Worker::Node => vec![
                "node".into(),
                i.node_app.join("queue-worker.js").display().to_string(),
            ],
            Worker::Python | Worker::PythonAio => vec![
                i.python.display().to_string(),
                handover_tests::clients::script("queue_worker.py")
                    .display()
                    .to_string(),
            ],
        };
        cmd.push(runlog.display().to_string());
        cmd.push(rolefile.display().to_string());
        if self == Worker::PythonAio {
            cmd.push("--aio".into());
        }
        cmd
    }
}

/// `handover --log-format json run --mode failover --standby hot --heartbeat
/// HEARTBEAT` in `ns`, then `options`: the caller adds `--` and the service.
fn hot_standby(ns: &Netns, heartbeat: &str, options: &[&str]) -> std::process::Command {
    let mut cmd = ns.command(handover_bin());
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args(["--standby", "hot", "--heartbeat", heartbeat])
        .args(options);
    cmd
}

/// `handover run --queue` around `worker`, in `ns`, for `trial`.
fn start(ns: &Netns, worker: Worker, trial: &Trial, files: (&Path, &Path), extra: &[&str]) -> Run {
    let (runlog, rolefile) = files;
    let _ = std::fs::remove_file(rolefile);
    let mut cmd = hot_standby(ns, trial.heartbeat, &["--queue"]);
    cmd.args(extra)
        .arg("--")
        .args(worker.command(runlog, rolefile))
        .env("TASKS", trial.tasks.to_string());
    Run::spawn(cmd)
}

fn role(rolefile: &Path) -> Option<String> {
    std::fs::read_to_string(rolefile).ok()
}

/// Each run: the task, the service's pid, and when it started (monotonic ns).
fn run_lines(runlog: &Path) -> Vec<(u64, u32, u64)> {
    let text = std::fs::read_to_string(runlog).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u64>());
            let mut next = || fields.next().and_then(Result::ok);
            let parsed = (next(), next(), next());
            match parsed {
                (Some(id), Some(pid), Some(t)) => (id, pid as u32, t),
                _ => panic!("run log line {line:?}"),
            }
        })
        .collect()
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn pid_of(run: &Run) -> rustix::process::Pid {
    rustix::process::Pid::from_raw(run.pid() as i32).expect("a pid")
}

/// How long the standby stalls before each kill.
const STANDBY_PAUSE: Duration = Duration::from_millis(300);

/// Where the instances elect.
#[derive(Debug, Clone, Copy)]
enum Election<'a> {
    /// On the LAN (multicast).
    Lan,
    /// On an etcd cluster, with this server.
    Etcd(&'a Path),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL of `handover` (its service dies with it): an unclean failover.
    Kill,
    /// The standby stalls first, and what reaches it meanwhile is lost, the
    /// active's checkpoints with it; then the kill. The active must not run ahead
    /// of its acknowledgements, or all it ran meanwhile runs again.
    KillAfterStall,
    /// SIGTERM: the queue settles, then the instance leaves.
    Term,
    /// SIGKILL of the active's service: its `handover` says goodbye at once.
    KillService,
}

/// A run of two workers sharing `tasks` while the active one is stopped `stops`
/// times, and restarted each time.
struct Trial<'a> {
    name: &'a str,
    workers: [Worker; 2],
    stops: usize,
    how: Stop,
    election: Election<'a>,
    heartbeat: &'a str,
    tasks: u64,
}

impl<'a> Trial<'a> {
    /// On the LAN, with a 100 ms heartbeat (the stops are many), 2,000 tasks.
    fn new(name: &'a str, workers: [Worker; 2], stops: usize, how: Stop) -> Self {
        Trial {
            name,
            workers,
            stops,
            how,
            election: Election::Lan,
            heartbeat: "100ms",
            tasks: 2_000,
        }
    }
}

/// What became of the tasks.
#[derive(Debug)]
struct Outcome {
    tally: Tally,
    /// After each plain kill: until the new active's service started a task.
    takeovers: Vec<Duration>,
}

fn fail_over(trial: &Trial) -> Outcome {
    let Trial {
        name,
        workers,
        stops,
        how,
        election,
        tasks,
        ..
    } = *trial;
    let net = Containers::new();
    // etcd in a container of its own, on the same bridge.
    let cluster = match election {
        Election::Lan => None,
        Election::Etcd(bin) => Some(Cluster::start_in(bin.to_owned(), 1, net.container())),
    };
    let mut options: Vec<String> = Vec::new();
    if let Some(cluster) = &cluster {
        options.extend(["--election", "etcd", "--ttl", "2s"].map(String::from));
        options.extend(cluster.client_options());
    }
    let extra: Vec<&str> = options.iter().map(String::as_str).collect();
    let containers = [net.container(), net.container()];
    let dir = scratch(name);
    let runlog = dir.join("runs");
    let rolefiles = [dir.join("role-0"), dir.join("role-1")];
    let begin = |slot: usize| {
        let files = (runlog.as_path(), rolefiles[slot].as_path());
        start(&containers[slot].ns, workers[slot], trial, files, &extra)
    };
    let mut running = [begin(0), begin(1)];
    let began = Instant::now();
    let mut at_last_stop = 0;
    let mut kills = Vec::new();
    for stop in 0..stops {
        let ready = eventually(WAIT, || {
            let roles = [role(&rolefiles[0]), role(&rolefiles[1])];
            let active = roles.iter().any(|r| r.as_deref() == Some("active"));
            let standby = roles.iter().any(|r| r.as_deref() == Some("standby"));
            active && standby && lines(&runlog) >= at_last_stop + PROGRESS
        });
        running.iter_mut().for_each(Run::drain);
        assert!(
            ready,
            "{name}, stop {stop}: no progress or no standby: {:?} {:?}, {} runs\n{:?}\n{:?}",
            role(&rolefiles[0]),
            role(&rolefiles[1]),
            lines(&runlog),
            running[0].seen,
            running[1].seen,
        );
        let active = (0..2)
            .find(|&w| role(&rolefiles[w]).as_deref() == Some("active"))
            .expect("an active worker");
        assert!(
            lines(&runlog) < tasks as usize,
            "{name}: the tasks ran out after {stop} stops"
        );
        match how {
            Stop::Kill => {
                kills.push(monotonic_ns());
                running[active].kill();
            }
            Stop::KillService => {
                let service = children(running[active].pid());
                let service = service.first().expect("a service").0;
                kills.push(monotonic_ns());
                kill_process(Pid::from_raw(service as i32).unwrap(), Signal::KILL).unwrap();
                assert!(
                    running[active].wait(WAIT).is_some(),
                    "{name}, stop {stop}: handover did not exit after its service"
                );
            }
            Stop::KillAfterStall => {
                let standby = pid_of(&running[1 - active]);
                let ns = &containers[1 - active].ns;
                kill_process(standby, Signal::STOP).unwrap();
                ns.nft("add table inet stall; add chain inet stall in { type filter hook input priority 0; }; add rule inet stall in meta l4proto udp drop");
                std::thread::sleep(STANDBY_PAUSE);
                running[active].kill();
                ns.nft("delete table inet stall");
                kill_process(standby, Signal::CONT).unwrap();
            }
            Stop::Term => {
                kill_process(pid_of(&running[active]), Signal::TERM).unwrap();
                assert_eq!(
                    running[active].wait(WAIT).and_then(|s| s.code()),
                    Some(0),
                    "{name}, stop {stop}: {:?}",
                    running[active].seen
                );
            }
        }
        at_last_stop = lines(&runlog);
        running[active] = begin(active);
    }
    let stopping = began.elapsed();
    let finished = eventually(Duration::from_secs(60), || {
        runs(&runlog).len() as u64 == tasks
    });
    let outcome = Outcome {
        tally: Tally::of(&runlog, tasks),
        takeovers: takeovers(&run_lines(&runlog), &kills),
    };
    println!(
        "{name}: {tasks} tasks, the active worker stopped {stops} times ({how:?}) in \
         {stopping:.1?}, all run after {:.1?}: {} lost, {} repeated (a task ran at most {} times)",
        began.elapsed(),
        outcome.tally.lost.len(),
        outcome.tally.repeated,
        outcome.tally.most
    );
    assert!(
        finished,
        "{name}: not every task ran: {:?}",
        outcome.tally.lost
    );
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// For each kill: until a task started in a service other than the one that ran
/// the last task before it.
fn takeovers(runs: &[(u64, u32, u64)], kills: &[u64]) -> Vec<Duration> {
    kills
        .iter()
        .filter_map(|&kill| {
            let dead = runs.iter().rev().find(|r| r.2 < kill)?.1;
            let first = runs.iter().find(|r| r.2 > kill && r.1 != dead)?;
            Some(Duration::from_nanos(first.2 - kill))
        })
        .collect()
}

fn assert_bounded(out: &Outcome, kills: usize) {
    assert!(out.tally.lost.is_empty(), "lost: {:?}", out.tally.lost);
    assert!(
        out.tally.repeated <= kills,
        "{} repeats over {kills} kills: more than one per failover",
        out.tally.repeated
    );
    assert!(out.tally.most <= 2, "a task ran {} times", out.tally.most);
}

#[test]
fn node_queue_twenty_kills_lose_nothing_and_repeat_at_most_one_each() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let trial = Trial::new("node-kills", [Worker::Node; 2], 20, Stop::KillAfterStall);
    assert_bounded(&fail_over(&trial), 20);
}

#[test]
fn node_queue_ten_clean_stops_repeat_nothing() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let out = fail_over(&Trial::new("node-terms", [Worker::Node; 2], 10, Stop::Term));
    assert!(out.tally.lost.is_empty(), "lost: {:?}", out.tally.lost);
    assert_eq!(out.tally.repeated, 0, "repeats across clean stops");
}

#[test]
fn python_queue_twenty_kills_threads_and_asyncio() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let workers = [Worker::Python, Worker::PythonAio];
    let trial = Trial::new("python-kills", workers, 20, Stop::KillAfterStall);
    assert_bounded(&fail_over(&trial), 20);
}

#[test]
fn python_queue_five_kills_electing_on_etcd() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let bin = etcd_bin();
    require!(bin.as_ref().err());
    let bin = bin.unwrap();
    let workers = [Worker::PythonAio, Worker::Python];
    let trial = Trial {
        election: Election::Etcd(&bin),
        ..Trial::new("python-etcd", workers, 5, Stop::Kill)
    };
    assert_bounded(&fail_over(&trial), 5);
}

/// A task that never returns normally: the threaded client's handler raises
/// SystemExit, or asyncio's `process()` is cancelled in the middle of it. Either
/// way it is answered `retry`, and at window 1 the queue goes on (it stalled: the
/// task stayed running, unanswered).
#[test]
fn an_interrupted_task_is_answered_retry_and_the_queue_goes_on() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let net = Containers::new();
    let dir = scratch("interrupted-task");
    for mode in ["system-exit", "cancel"] {
        let c = net.container();
        let runlog = dir.join(mode);
        let mut cmd = hot_standby(&c.ns, "50ms", &["--queue"]);
        cmd.arg("--")
            .arg(&installed().python)
            .arg(handover_tests::clients::script("task_interrupted.py"))
            .arg(mode)
            .arg(&runlog);
        let mut instance = Run::spawn(cmd);
        let exited = instance.wait_event("child_exited", WAIT);
        let ran = std::fs::read_to_string(&runlog).unwrap_or_default();
        assert_eq!(
            exited.map(|e| e["code"].clone()),
            Some(0.into()),
            "{mode}: the queue did not finish (ran {ran:?}): {:?}",
            instance.seen
        );
        assert_eq!(ran, "1\n2\n3\n", "{mode}: every task, once, in order");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// etcd paused longer than the lease while the active service runs task 1: the
/// instance loses its term, its service answers `done` meanwhile, and once etcd
/// is back the instance (the only candidate) is elected again, records task 1,
/// and the queue goes on. (The answer was once dropped while the window counted
/// it, and the queue stalled for good.)
#[test]
fn an_answer_given_while_etcd_is_paused_never_stalls_the_queue() {
    let _machine = shared_machine();
    require_netns!();
    let bin = etcd_bin();
    require!(bin.as_ref().err());
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    let c = net.container();
    let dir = scratch("answer-while-etcd-paused");
    let (go, runlog) = (dir.join("go"), dir.join("runs"));
    let mut options = vec!["--queue".to_string()];
    options.extend(["--election", "etcd", "--ttl", "2s"].map(String::from));
    options.extend(cluster.client_options());
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let mut cmd = hot_standby(&c.ns, "100ms", &options);
    cmd.args(["--", "python3"])
        .arg(handover_tests::clients::script("answer_late.py"))
        .arg(&go)
        .arg(&runlog);
    let mut instance = Run::spawn(cmd);
    assert!(
        eventually(WAIT, || std::fs::read_to_string(&runlog)
            .is_ok_and(|r| r == "1\n")),
        "task 1 was not handed out: {:?}",
        instance.seen
    );
    cluster.signal(0, Signal::STOP);
    let demoted = instance.saw("demoted", WAIT);
    // The answer, while this instance has no term.
    std::fs::write(&go, "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.signal(0, Signal::CONT);
    assert!(
        demoted,
        "not demoted while etcd was paused: {:?}",
        instance.seen
    );
    let exited = instance.wait_event("child_exited", Duration::from_secs(30));
    assert_eq!(
        exited.map(|e| e["code"].clone()),
        Some(0.into()),
        "the queue did not finish: ran {:?}; {:?}",
        std::fs::read_to_string(&runlog).unwrap_or_default(),
        instance.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_mixed_fleet_resumes_each_others_queue() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let workers = [Worker::Node, Worker::Python];
    let trial = Trial::new("mixed", workers, 6, Stop::KillAfterStall);
    assert_bounded(&fail_over(&trial), 6);
}

/// Benchmark: 50 plain kills at a 20 ms heartbeat, for Node and for Python:
/// repeats per kill, and kill → the new active's service starts a task.
/// `cargo test --release -p handover-tests --test clients -- --ignored --nocapture --test-threads 1`
#[test]
#[ignore]
fn bench_fifty_kills_at_a_20ms_heartbeat() {
    let _machine = shared_machine();
    for (name, workers, how) in [
        ("node", [Worker::Node; 2], Stop::Kill),
        ("python", [Worker::Python; 2], Stop::Kill),
        (
            "python-service-killed",
            [Worker::Python; 2],
            Stop::KillService,
        ),
    ] {
        let trial = Trial {
            heartbeat: "20ms",
            tasks: 10_000,
            ..Trial::new(name, workers, 50, how)
        };
        let out = fail_over(&trial);
        let mut t = out.takeovers.clone();
        t.sort();
        let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
        println!(
            "{name}: {} repeats over 50 kills ({:.2} per kill, a task ran at most {} times); \
             kill -> first task on the new active ({} kills): p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}",
            out.tally.repeated,
            out.tally.repeated as f64 / 50.0,
            out.tally.most,
            t.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            t[t.len() - 1]
        );
        assert_bounded(&out, 50);
    }
}

/// A service that writes what it should not, then floods `submit` while reading
/// nothing: every bad line is answered with an error that says why, `handover`
/// keeps running, and its heartbeats keep a standby from taking over meanwhile.
#[test]
fn a_hostile_service_gets_errors_and_never_delays_the_protocol() {
    // Alone on the machine: what is measured is the flood's effect on the
    // protocol, not the other tests' load on two cores.
    let _machine = MACHINE.write().unwrap_or_else(|e| e.into_inner());
    require_netns!();
    require!(missing());
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("hostile-channel");
    let out = dir.join("read");
    let hostile = handover_tests::clients::script("hostile.py");
    let mut cmd = hot_standby(&a.ns, "100ms", &["--queue", "--queue-capacity", "1000"]);
    cmd.arg("--").arg("python3").arg(&hostile).arg(&out);
    let mut active = Run::spawn(cmd);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let mut cmd = hot_standby(&b.ns, "100ms", &["--queue"]);
    cmd.args(["--", "sleep", "3600"]);
    let mut standby = Run::spawn(cmd);
    assert!(standby.saw("peer_up", WAIT), "{:?}", standby.seen);

    let errors_file = dir.join("read.errors");
    assert!(
        eventually(WAIT, || errors_file.exists()),
        "the bad lines were not answered"
    );
    let errors: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&errors_file).unwrap()).unwrap();
    let expected = [
        "a line of",
        "not a JSON object",
        "unknown cmd \"launch\"",
        "done: \"id\" must be",
        "task 5 is not running",
        "at most 16384",
    ];
    for (error, why) in errors.iter().zip(expected) {
        assert!(error.contains(why), "{error:?} should say {why:?}");
    }
    assert_eq!(errors.len(), expected.len());

    // The flood, and two seconds of not reading: the standby stays a standby.
    let flooded = dir.join("read.flooded");
    assert!(
        eventually(WAIT, || flooded.exists()),
        "the flood was not taken"
    );
    assert!(
        !standby.saw("elected", Duration::from_secs(3)),
        "the standby took over during the flood: {:?}",
        standby.seen
    );
    assert!(eventually(WAIT, || out.exists()));
    let read = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = read
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["event"] == "error"
            && l["error"]
                .as_str()
                .unwrap_or("")
                .contains("the queue is full")),
        "no refusal of a submit beyond --queue-capacity in {} lines",
        lines.len()
    );
    assert!(active.try_alive(), "handover ended: {:?}", active.seen);
    drop(standby);
    drop(active);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An app written against handover-lib, its import changed to `handover-client`,
/// under `handover run` with default options: the new instance claims once the
/// app calls `startBroadcasting()`, and the old one's shutdown callback runs
/// before its `handover` writes the complete file and exits 0.
#[test]
fn a_handover_lib_app_hands_over_with_only_its_import_changed() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("handover-lib-app");
    let complete = dir.join("handover-complete");
    let mark = dir.join("marks");
    let app = installed().node_app.join("handover-lib-app.js");
    let start = |ns: &Netns, version: &str| {
        let mut cmd = ns.command(handover_bin());
        cmd.args(["--log-format", "json", "run", "--complete-file"])
            .arg(&complete)
            .args(["--", "node"])
            .arg(&app)
            .arg(&mark)
            .env("VERSION", version);
        Run::spawn(cmd)
    };
    let marks = || std::fs::read_to_string(&mark).unwrap_or_default();
    let mut old = start(&a.ns, "v1");
    assert!(old.saw("elected", WAIT), "{:?}", old.seen);
    let ready = old.wait_event("ready", WAIT).expect("ready");
    assert_eq!(ready["via"], "channel", "startBroadcasting() is the claim");
    let mut new = start(&b.ns, "v2");
    assert!(new.saw("elected", WAIT), "{:?}", new.seen);
    assert_eq!(
        old.wait(WAIT).and_then(|s| s.code()),
        Some(0),
        "{:?}",
        old.seen
    );
    assert!(complete.exists(), "no complete file");
    assert!(marks().contains("shutdown v1"), "{}", marks());
    assert!(!marks().contains("shutdown v2"), "{}", marks());
    drop(new);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Benchmark: no-op tasks through the channel, timed by the active's service from
/// the first task to the last: alone, and with a standby (a second instance in
/// its own container) at windows 1 and 64; Node and Python (asyncio); 20 ms
/// heartbeat. `cargo test --release -p handover-tests --test clients --
/// --ignored --nocapture --test-threads 1`
#[test]
#[ignore]
fn bench_queue_throughput_through_the_channel() {
    let _machine = shared_machine();
    let tasks: u64 = std::env::var("HANDOVER_BENCH_TASKS").map_or(50_000, |n| n.parse().unwrap());
    let i = installed();
    let services: [(&str, Vec<String>); 2] = [
        (
            "node",
            vec![
                "node".into(),
                i.node_app.join("bench-worker.js").display().to_string(),
            ],
        ),
        ("python", python_bench_worker()),
    ];
    for (language, service) in &services {
        for (setup, standby, window) in [
            ("alone", false, "1"),
            ("standby", true, "1"),
            ("standby", true, "64"),
        ] {
            let seconds = throughput(service, standby, window, tasks, 0);
            println!(
                "{language}, {setup}, window {window}: {tasks} tasks in {seconds:.2} s = {:.0} tasks/s",
                tasks as f64 / seconds
            );
        }
    }
}

/// The queue's throughput with payloads: the Python (asyncio) worker, with a
/// standby, at windows 1 and 64: 50,000 tasks of no payload and of 1 KB, 3,000 of
/// 16 KB (48 MB, within the default `--queue-bytes`).
#[test]
#[ignore]
fn bench_queue_throughput_with_payloads() {
    let _machine = shared_machine();
    let service = python_bench_worker();
    for (payload, tasks) in [(0usize, 50_000u64), (1_000, 50_000), (16_000, 3_000)] {
        for window in ["1", "64"] {
            let seconds = throughput(&service, true, window, tasks, payload);
            println!(
                "python, standby, payload {payload} B, window {window}: {tasks} tasks in \
                 {seconds:.2} s = {:.0} tasks/s",
                tasks as f64 / seconds
            );
        }
    }
}

/// The Python (asyncio) benchmark worker, as installed.
fn python_bench_worker() -> Vec<String> {
    vec![
        installed().python.display().to_string(),
        handover_tests::clients::script("bench_worker.py")
            .display()
            .to_string(),
    ]
}

/// Seconds the active's `service` took from its first task to its last, of
/// `tasks` with payloads of `payload` bytes, at `window`, alone or with a standby
/// (each instance in its own container), 20 ms heartbeat.
fn throughput(service: &[String], standby: bool, window: &str, tasks: u64, payload: usize) -> f64 {
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("bench-queue");
    let start = |ns: &Netns, out: &Path| {
        let mut cmd = hot_standby(ns, "20ms", &["--queue", "--queue-window", window]);
        cmd.arg("--")
            .args(service)
            .arg(out)
            .env("TASKS", tasks.to_string())
            .env("PAYLOAD", payload.to_string())
            .env("SUBMIT_AFTER_MS", "1000");
        Run::spawn(cmd)
    };
    let outs = [dir.join("a"), dir.join("b")];
    let first = start(&a.ns, &outs[0]);
    let second = standby.then(|| start(&b.ns, &outs[1]));
    // The active one, whichever it is, writes its figure.
    let done = eventually(Duration::from_secs(300), || outs.iter().any(|o| o.exists()));
    assert!(done, "window {window}, payload {payload}: not finished");
    std::thread::sleep(Duration::from_millis(50));
    let out = outs.iter().find(|o| o.exists()).unwrap();
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    drop(second);
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
    result["seconds"].as_f64().unwrap()
}

/// `handover`'s resident memory per MiB of payload queued, on the active and on
/// a standby: both services submit 2,000 tasks of about 16 KB of JSON each (an
/// array of small records, as a batch of rows would be; 31 MiB in all) that the
/// active service never answers, so all stay queued.
#[test]
#[ignore]
fn bench_queue_memory_per_queued_byte() {
    let _machine = shared_machine();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let service = "import json, os, socket, sys, time\n\
        s = socket.socket(fileno=int(os.environ['HANDOVER_EVENTS_FD']))\n\
        time.sleep(2)\n\
        rows = lambda i: {'rows': [{'i': i, 'k': k, 'v': 'abc'} for k in range(560)]}\n\
        lines = [json.dumps({'cmd': 'submit', 'id': i, 'payload': rows(i)}, separators=(',', ':')) for i in range(1, 2001)]\n\
        s.sendall(''.join(l + '\\n' for l in lines).encode())\n\
        open(sys.argv[1], 'w').write(str(sum(len(json.dumps(rows(i), separators=(',', ':'))) for i in range(1, 2001))))\n\
        time.sleep(3600)\n";
    let dir = scratch("bench-queue-memory");
    let start = |ns: &Netns, name: &str| {
        let mut cmd = hot_standby(ns, "100ms", &["--queue"]);
        cmd.args(["--", "python3", "-c", service])
            .arg(dir.join(name));
        Run::spawn(cmd)
    };
    let mut active = start(&a.ns, "a");
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let mut standby = start(&b.ns, "b");
    assert!(standby.saw("peer_up", WAIT), "{:?}", standby.seen);
    let rss = |run: &Run| -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", run.pid())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb / 1024.0
    };
    let idle = [rss(&active), rss(&standby)];
    let written = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .parse::<f64>()
            .ok()
    };
    assert!(eventually(WAIT, || written("a").is_some() && written("b").is_some()));
    // What the socket still holds is read, and the heap settles.
    std::thread::sleep(Duration::from_secs(2));
    let full = [rss(&active), rss(&standby)];
    let queued = written("a").unwrap() / (1024.0 * 1024.0);
    for (i, name) in ["active", "standby"].iter().enumerate() {
        println!(
            "{name}: idle {:.1} MiB, with {queued:.1} MiB of payload queued {:.1} MiB: \
             {:.2} MiB per MiB queued",
            idle[i],
            full[i],
            (full[i] - idle[i]) / queued
        );
    }
    drop(standby);
    drop(active);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that asks to leave on the channel: its instance stops it as on
/// SIGTERM, leaves, and exits 0; the standby takes over.
#[test]
fn a_service_that_says_leave_hands_over_to_the_standby() {
    let _machine = shared_machine();
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let start = |ns: &Netns, service: &[&str]| {
        let mut cmd = hot_standby(ns, "100ms", &["--"]);
        cmd.args(service);
        Run::spawn(cmd)
    };
    // The service leaves once told to, by a file the test writes.
    let dir = scratch("leave-on-the-channel");
    let go = dir.join("leave");
    let leaves = "import os, socket, sys, time\n\
        s = socket.socket(fileno=int(os.environ['HANDOVER_EVENTS_FD']))\n\
        while not os.path.exists(sys.argv[1]):\n\
        \x20   time.sleep(0.02)\n\
        s.sendall(b'{\"cmd\":\"leave\"}\\n')\n\
        time.sleep(3600)\n";
    let go_arg = go.display().to_string();
    let mut first = start(&a.ns, &["python3", "-c", leaves, &go_arg]);
    assert!(first.saw("elected", WAIT), "{:?}", first.seen);
    let mut second = start(&b.ns, &["sleep", "3600"]);
    assert!(second.saw("peer_up", WAIT), "{:?}", second.seen);
    std::fs::write(&go, "").unwrap();
    assert!(first.saw("leave_asked", WAIT), "{:?}", first.seen);
    assert_eq!(
        first.wait(WAIT).and_then(|s| s.code()),
        Some(0),
        "{:?}",
        first.seen
    );
    assert!(second.saw("elected", WAIT), "{:?}", second.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that reads its channel slowly while the tasks handed to it are
/// large: every task reaches it once, at any window, and the checkpoint covers
/// them all (a run line that overflowed the channel's backlog was lost, and the
/// queue stalled for good).
#[test]
fn a_slow_reader_gets_every_large_task_at_any_window() {
    let _machine = shared_machine();
    require_netns!();
    let net = Containers::new();
    let dir = scratch("slow-reader");
    let tasks = 40u64;
    for (window, payload) in [(1, 16_384), (6, 12_000), (8, 12_000), (64, 16_384)] {
        let c = net.container();
        let runlog = dir.join(format!("runs-{window}"));
        let window_arg = window.to_string();
        let mut cmd = hot_standby(&c.ns, "50ms", &["--queue", "--queue-window", &window_arg]);
        cmd.arg("--")
            .arg("python3")
            .arg(handover_tests::clients::script("slow_reader.py"))
            .arg(&runlog)
            .env("TASKS", tasks.to_string())
            .env("PAYLOAD", payload.to_string());
        let mut instance = Run::spawn(cmd);
        let exited = instance.wait_event("child_exited", WAIT);
        let ran: Vec<u64> = std::fs::read_to_string(&runlog)
            .unwrap_or_default()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(
            ran,
            (1..=tasks).collect::<Vec<_>>(),
            "window {window}: tasks run"
        );
        assert_eq!(
            exited.as_ref().map(|e| e["code"].clone()),
            Some(0.into()),
            "window {window}: the service did not see every task checkpointed: {:?}",
            instance.seen
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM while the threaded Python client's main thread is in `submit()`,
/// again and again: the service finishes its task, runs its shutdown hook and
/// exits 0 every time, well before the stop limit (its signal handler once waited
/// for the worker while holding the lock the worker needed).
#[test]
fn a_stop_signal_in_the_middle_of_a_submit_stops_the_threaded_client_cleanly() {
    let _machine = shared_machine();
    require_netns!();
    require!(missing());
    let net = Containers::new();
    let c = net.container();
    let dir = scratch("term-during-submit");
    for trial in 0..8u64 {
        let runlog = dir.join(format!("runs-{trial}"));
        let hookfile = dir.join(format!("hook-{trial}"));
        let mut cmd = hot_standby(&c.ns, "50ms", &["--queue", "--stop-timeout", "10s"]);
        cmd.arg("--")
            .arg(&installed().python)
            .arg(handover_tests::clients::script("submit_on_term.py"))
            .arg(&runlog)
            .arg(&hookfile);
        let mut instance = Run::spawn(cmd);
        assert!(
            eventually(WAIT, || std::fs::read_to_string(&runlog)
                .is_ok_and(|r| r.lines().count() >= 2)),
            "trial {trial}: no task ran: {:?}",
            instance.seen
        );
        // Somewhere in a task, while the main thread submits.
        std::thread::sleep(Duration::from_millis(7 * trial));
        let asked = Instant::now();
        kill_process(pid_of(&instance), Signal::TERM).unwrap();
        let status = instance.wait(Duration::from_secs(20));
        let took = asked.elapsed();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "trial {trial}: {:?}",
            instance.seen
        );
        assert!(
            instance.seen.iter().all(|e| e["event"] != "child_killed"),
            "trial {trial}: killed at the stop limit after {took:?}: {:?}",
            instance.seen
        );
        assert_eq!(
            std::fs::read_to_string(&hookfile).ok().as_deref(),
            Some("ran"),
            "trial {trial}: the shutdown hook did not run"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
