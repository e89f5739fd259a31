//! `handover run` processes, followed through their JSON event lines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::Netns;

/// `target/<profile>`, where cargo puts the binaries of this workspace (the test
/// runs as `target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A binary of this crate: cargo builds them with its tests.
fn test_bin(name: &str) -> PathBuf {
    profile_dir().join(name)
}

/// `handover`, with `handover-etcd` beside it (which `--election etcd` executes),
/// as the tree is now. Cargo builds a test's own package, not the commands it
/// runs: a test file run alone (`cargo test --test cli`) would find them missing,
/// or built from older code. So they are built again when older than any source
/// of the crates they are made of, once per test process (after `cargo test
/// --workspace`, which built them, they are current).
fn cli_bin() -> PathBuf {
    static CHECKED: OnceLock<()> = OnceLock::new();
    let dir = profile_dir();
    CHECKED.get_or_init(|| {
        let built = ["handover", "handover-etcd"]
            .map(|name| modified(&dir.join(name)))
            .into_iter()
            .min()
            .flatten();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let sources = [
            "handover-cli",
            "handover-std",
            "handover-proto",
            "Cargo.lock",
        ]
        .iter()
        .filter_map(|part| newest(&root.join(part)))
        .max();
        if built.is_some_and(|built| sources.is_some_and(|s| s <= built)) {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "handover-cli", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo build").success());
    });
    dir.join("handover")
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// When the newest file under `path` (or `path` itself) was last changed.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return modified(path);
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != "target")
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// The `handover` command: `$HANDOVER_BIN` if set (e.g. the `dist` build), else the
/// workspace's, as the tree is now.
pub fn handover_bin() -> PathBuf {
    match std::env::var_os("HANDOVER_BIN") {
        Some(path) => PathBuf::from(path),
        None => cli_bin(),
    }
}

/// The test service of this crate.
pub fn fake_service() -> PathBuf {
    test_bin("fake-service")
}

/// The work-queue test service of this crate.
pub fn queue_worker() -> PathBuf {
    test_bin("queue-worker")
}

/// `handover-embassy` on a TAP device.
pub fn embassy_peer() -> PathBuf {
    test_bin("embassy-peer")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock of `t_us` in event lines.
pub fn monotonic_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

/// A running `handover run --log-format json`.
#[derive(Debug)]
pub struct Run {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Every event seen so far.
    pub seen: Vec<Value>,
}

impl Run {
    /// Starts `handover --log-format json ARGS` in `ns`.
    pub fn start(ns: &Netns, args: &[&str]) -> Self {
        let mut cmd = ns.command(handover_bin());
        cmd.args(["--log-format", "json"]).args(args);
        Self::spawn(cmd)
    }

    /// Starts a command that prints JSON event lines on stderr.
    pub fn spawn(cmd: std::process::Command) -> Self {
        Self::spawn_collected(cmd, false).0
    }

    /// Starts a command whose stderr is a pipe nobody reads (a stalled log
    /// collector) until [`Collector::resume`].
    pub fn spawn_stalled(cmd: std::process::Command) -> (Self, Collector) {
        Self::spawn_collected(cmd, true)
    }

    /// Starts a command whose stderr's reader can be stalled and resumed.
    pub fn spawn_collected(mut cmd: std::process::Command, stalled: bool) -> (Self, Collector) {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let collector = Collector(Arc::new((Mutex::new(stalled), Condvar::new())));
        let gate = collector.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                gate.wait_until_reading();
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = line.trim_end();
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    // A service's output (cut short: it may be a flood).
                    Err(_) => eprintln!("handover: {}", line.chars().take(200).collect::<String>()),
                }
            }
        });
        let run = Run {
            child,
            lines,
            seen: Vec::new(),
        };
        (run, collector)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first event named `name`, seen before or arriving within `timeout`.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.seen.iter().find(|v| v["event"] == name) {
            return Some(v.clone());
        }
        self.next_event(name, timeout)
    }

    /// Records every event that arrives within `time` (in [`seen`](Self::seen)).
    pub fn collect(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => return,
            }
        }
    }

    /// The next event named `name` not seen before, or `None` after `timeout`.
    pub fn next_event(&mut self, name: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.lines.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if v["event"] == name {
                return Some(v);
            }
        }
    }

    /// The last event named `name` among those that have arrived by now.
    pub fn latest(&mut self, name: &str) -> Option<&Value> {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
        self.seen.iter().rev().find(|v| v["event"] == name)
    }

    /// Whether an event named `name` arrives within `timeout`.
    pub fn saw(&mut self, name: &str, timeout: Duration) -> bool {
        self.wait_event(name, timeout).is_some()
    }

    /// Whether the process still runs.
    pub fn try_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Collect the remaining lines.
                while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Records the events that have arrived by now, without waiting.
    pub fn drain(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The reader of a process's stderr, which a test can stall (as a log collector
/// that stops reading) and resume.
#[derive(Debug, Clone)]
pub struct Collector(Arc<(Mutex<bool>, Condvar)>);

impl Collector {
    /// Stops reading: the pipe fills once its 64 KiB are written.
    pub fn stall(&self) {
        *self.0 .0.lock().unwrap() = true;
    }

    /// Reads again.
    pub fn resume(&self) {
        *self.0 .0.lock().unwrap() = false;
        self.0 .1.notify_all();
    }

    fn wait_until_reading(&self) {
        let (stalled, changed) = &*self.0;
        let mut stalled = stalled.lock().unwrap();
        while *stalled {
            stalled = changed.wait(stalled).unwrap();
        }
    }
}

/// The lines of a fake service's mark file.
pub fn marks(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

/// `run` arguments of the multi-process tests: pinned to `interface`, a 100 ms
/// heartbeat and a 2 s stop timeout, then `extra`, then `--` and `service`.
pub fn run_args(
    interface: &str,
    scope: &str,
    complete: &Path,
    extra: &[&str],
    service: &[&str],
) -> Vec<String> {
    let complete = complete.to_str().expect("UTF-8 path");
    let fixed = [
        "run",
        "--interface",
        interface,
        "--scope",
        scope,
        "--heartbeat",
        "100ms",
        "--stop-timeout",
        "2s",
        "--complete-file",
        complete,
    ];
    fixed
        .iter()
        .chain(extra)
        .chain(&["--"])
        .chain(service)
        .map(|s| s.to_string())
        .collect()
}

/// A fresh scratch directory for test `test` of this process (mark files, complete
/// files, sockets), emptied if a previous run left it.
pub fn scratch(test: &str) -> PathBuf {
    emptied(std::env::temp_dir().join(format!("handover-{test}-{}", std::process::id())))
}

/// Directory `dir`, created, or emptied if a previous run left it.
pub fn emptied(dir: PathBuf) -> PathBuf {
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Polls `f` every 5 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// The children of process `pid`, with their state letter (`Z`: zombie).
pub fn children(pid: u32) -> Vec<(u32, char)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter_map(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
            let state = stat.rsplit(')').next()?.split_whitespace().next()?;
            Some((c, state.chars().next()?))
        })
        .collect()
}
