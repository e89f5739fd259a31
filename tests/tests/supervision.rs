//! `handover run` as the supervisor of its service: PID 1 of a container (orphans
//! reaped), every signal a supervisor sends passed on, a full or closed stderr
//! survived, and an exit status that restart policies read right.
//!
//! Each test needs root (namespaces) and skips with the reason otherwise, failing
//! under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{
    self, children, eventually, fake_service, handover_bin, marks, scratch, Run,
};
use handover_tests::require_netns;

const WAIT: Duration = Duration::from_secs(10);

/// `run` options on the namespace's loopback, then `extra`, then `--` and `service`.
fn run_args(dir: &Path, extra: &[&str], service: &[&str]) -> Vec<String> {
    process::run_args("lo", "svc", &dir.join("handover-complete"), extra, service)
}

fn fake(mark: &Path) -> Vec<String> {
    vec![
        fake_service().to_str().unwrap().to_owned(),
        mark.to_str().unwrap().to_owned(),
    ]
}

fn start(ns: &Netns, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Run::start(ns, &args)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A new instance of the same scope in `ns`: the old one hands over to it.
fn hand_over_to_new(ns: &Netns, dir: &Path) -> Run {
    let mut new = start(ns, &run_args(dir, &[], &strs(&fake(&dir.join("new")))));
    assert!(new.saw("ready", WAIT));
    new
}

#[test]
fn as_pid_1_orphans_are_reaped_and_it_still_hands_over() {
    require_netns!();
    handover_tests::require!(Command::new("unshare")
        .arg("--version")
        .output()
        .is_err()
        .then_some("unshare (util-linux) is not installed"));
    let ns = Netns::new();
    let dir = scratch("pid1");
    let mark = dir.join("old");
    // The service leaves an orphan: a subshell starts `sleep 1` and exits at once.
    let script = format!(
        "(sleep 1 &); exec {} {}",
        fake_service().display(),
        mark.display()
    );
    let args = run_args(&dir, &[], &["sh", "-c", &script]);
    let mut cmd = ns.command("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"])
        .arg(handover_bin())
        .args(["--log-format", "json"])
        .args(&args);
    let mut old = Run::spawn(cmd);
    assert!(old.saw("ready", WAIT));
    // `unshare` forks `handover`, PID 1 of the new PID namespace.
    let pid1 = children(old.pid())
        .first()
        .expect("handover under unshare")
        .0;
    assert!(
        eventually(WAIT, || children(pid1).len() == 2),
        "the orphaned sleep was adopted: {:?}",
        children(pid1)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let left = children(pid1);
    assert!(
        left.iter().all(|&(_, state)| state != 'Z'),
        "no zombie remains: {left:?}"
    );
    assert_eq!(left.len(), 1, "only the service is left: {left:?}");

    let mut new = hand_over_to_new(&ns, &dir);
    assert!(old.saw("shutdown_requested", WAIT));
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(new.saw("predecessor_done", WAIT));
    drop(new);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_signal_a_supervisor_sends_reaches_the_service() {
    use rustix::process::{kill_process, Pid, Signal};
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("signals");
    let mark = dir.join("old");
    let mut old = start(&ns, &run_args(&dir, &[], &strs(&fake(&mark))));
    assert!(old.saw("ready", WAIT));
    let pid = Pid::from_raw(old.pid() as i32).unwrap();
    let signals = [
        (Signal::HUP, "hup"),
        (Signal::INT, "int"),
        (Signal::QUIT, "quit"),
        (Signal::USR1, "usr1"),
        (Signal::USR2, "usr2"),
        (Signal::WINCH, "winch"),
    ];
    for (signal, name) in signals {
        kill_process(pid, signal).unwrap();
        assert!(
            eventually(WAIT, || marks(&mark).iter().any(|m| m == name)),
            "the service got {name}: {:?}",
            marks(&mark)
        );
        assert!(old.is_running(), "handover survives {name}");
    }
    let new = hand_over_to_new(&ns, &dir);
    assert!(old.saw("shutdown_requested", WAIT));
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    drop(new);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `handover run` with stderr on /dev/full, or closed, with its text logs (the
/// default): it keeps its service and hands over.
fn survives_stderr(test: &str, stderr: impl FnOnce(&mut Command) -> &mut Command) {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch(test);
    let mark = dir.join("old");
    let mut cmd = ns.command(handover_bin());
    cmd.args(run_args(&dir, &[], &strs(&fake(&mark))));
    let mut old = stderr(&mut cmd).spawn().unwrap();
    assert!(eventually(WAIT, || marks(&mark).contains(&"ready".into())));
    std::thread::sleep(Duration::from_millis(300));
    assert!(old.try_wait().unwrap().is_none(), "still running");
    let new = hand_over_to_new(&ns, &dir);
    assert!(
        eventually(WAIT, || marks(&mark).contains(&"term".into())),
        "the old service was stopped by the hand-over, not by a panic"
    );
    let status = eventually_exit(&mut old);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(dir.join("handover-complete").is_file());
    drop(new);
    let _ = std::fs::remove_dir_all(&dir);
}

fn eventually_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    assert!(eventually(WAIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    status.unwrap()
}

#[test]
fn a_full_stderr_never_stops_it() {
    survives_stderr("full", |cmd| {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        cmd.stderr(Stdio::from(full))
    });
}

#[test]
fn a_closed_stderr_never_stops_it() {
    survives_stderr("closed", |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: closing a descriptor between fork and exec is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                rustix::io::close(2);
                Ok(())
            })
        }
    });
}

#[test]
fn exit_status_0_after_a_hand_over_and_the_services_own_when_it_dies() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("exit");
    // `sleep` does not trap SIGTERM: it dies of the stop signal it was sent.
    let mut old = start(
        &ns,
        &run_args(&dir, &["--ready-after", "0s"], &["sleep", "1000"]),
    );
    assert!(old.saw("ready", WAIT));
    let new = hand_over_to_new(&ns, &dir);
    assert!(old.saw("shutdown_requested", WAIT));
    assert_eq!(
        old.wait(WAIT).and_then(|s| s.code()),
        Some(0),
        "a completed hand-over is a success"
    );
    drop(new);
    let crash_dir = scratch("crash");
    let other = Netns::new();
    let mut crashing = start(
        &other,
        &run_args(&crash_dir, &[], &["sh", "-c", "sleep 0.3; exit 3"]),
    );
    assert_eq!(
        crashing.wait(WAIT).and_then(|s| s.code()),
        Some(3),
        "a service that died on its own passes its status through"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&crash_dir);
}

/// A stand-in for systemd: the socket `$NOTIFY_SOCKET` names, and what arrives on it.
struct Manager {
    socket: std::os::unix::net::UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn new(dir: &Path) -> Self {
        let path = dir.join("systemd.notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager { socket, path }
    }

    /// Every datagram received until one of them satisfies each of `wanted`, or
    /// `WAIT` passes.
    fn until(&self, wanted: &[&dyn Fn(&str) -> bool]) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < deadline {
            if wanted.iter().all(|f| seen.iter().any(|d| f(d))) {
                break;
            }
            if let Ok(n) = self.socket.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        seen
    }
}

/// `handover run` under a stand-in systemd, around a service that reports a status.
fn under_manager(ns: &Netns, dir: &Path, manager: &Manager, mark: &str, extra: &[&str]) -> Run {
    let mut service = fake(&dir.join(mark));
    service.extend(["--status".into(), format!("serving {mark}")]);
    let mut cmd = ns.command(handover_bin());
    cmd.env("NOTIFY_SOCKET", &manager.path)
        .args(["--log-format", "json"])
        .args(run_args(dir, extra, &strs(&service)));
    Run::spawn(cmd)
}

#[test]
fn systemd_hears_ready_and_the_services_status_in_both_modes() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("systemd");
    let manager = Manager::new(&dir);
    let _one = under_manager(&ns, &dir, &manager, "one", &[]);
    let heard = manager.until(&[&|d| d.contains("STATUS=serving one"), &|d| d == "READY=1"]);
    assert!(heard.iter().any(|d| d == "READY=1"), "{heard:?}");
    let passed = heard.iter().find(|d| d.contains("STATUS=")).unwrap();
    assert!(passed.contains("WATCHDOG=1"), "{passed}");
    assert!(
        !passed.contains("MAINPID"),
        "the main pid is handover's: {passed}"
    );

    // Failover: the active instance once its service is ready, the standby at once.
    let failover = ["--mode", "failover", "--scope", "failover"];
    let fo_dir = scratch("systemd-failover");
    let fo_manager = Manager::new(&fo_dir);
    let mut active = under_manager(&ns, &fo_dir, &fo_manager, "active", &failover[..2]);
    assert!(active.saw("service_ready", WAIT));
    let heard = fo_manager.until(&[&|d| d.contains("STATUS=serving active"), &|d| {
        d == "READY=1"
    }]);
    assert!(heard.iter().any(|d| d == "READY=1"), "active: {heard:?}");
    let standby_manager_dir = scratch("systemd-standby");
    let standby_manager = Manager::new(&standby_manager_dir);
    let mut standby = under_manager(&ns, &fo_dir, &standby_manager, "standby", &failover[..2]);
    assert!(standby.saw("peer_up", WAIT));
    let heard = standby_manager.until(&[&|d| d == "READY=1"]);
    assert!(heard.iter().any(|d| d == "READY=1"), "standby: {heard:?}");
    assert!(
        !heard.iter().any(|d| d.contains("STATUS")),
        "no service runs: {heard:?}"
    );
    drop((active, standby));
    for d in [&dir, &fo_dir, &standby_manager_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_service_not_ready_in_time_never_claims() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("ready-timeout");
    let mark = dir.join("old");
    let mut old = start(&ns, &run_args(&dir, &[], &strs(&fake(&mark))));
    assert!(old.saw("elected", WAIT));
    // Never sends READY=1.
    let mut slow = start(
        &ns,
        &run_args(&dir, &["--ready-timeout", "300ms"], &["sleep", "1000"]),
    );
    assert!(slow.saw("ready_timeout", WAIT));
    assert_eq!(slow.wait(WAIT).and_then(|s| s.code()), Some(1));
    assert!(!slow.seen.iter().any(|e| e["event"] == "claim_sent"));
    assert!(
        !old.saw("shutdown_requested", Duration::from_millis(500)),
        "the instance in charge keeps serving"
    );
    assert!(old.is_running());
    let _ = std::fs::remove_dir_all(&dir);
}
