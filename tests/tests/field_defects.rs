//! Defects users hit with configurations they have, each in the topology they run:
//! a log collector that stalls, services that exit non-zero on SIGTERM or overrun
//! the stop timeout, a service never ready while a standby waits.
//!
//! Each instance runs in a container of its own on a bridge, with default options
//! but those the defect needs. Needs root (namespaces); skips with the reason
//! otherwise, and fails under `CI=true`.

use std::path::Path;
use std::time::{Duration, Instant};

use handover_tests::netns::Netns;
use handover_tests::process::{eventually, fake_service, handover_bin, marks, scratch, Run};
use handover_tests::require_netns;
use handover_tests::topology::Containers;
use rustix::process::{kill_process, Pid, Signal};

const WAIT: Duration = Duration::from_secs(10);

fn command(
    ns: &Netns,
    complete: &Path,
    options: &[&str],
    service: &[&str],
) -> std::process::Command {
    let mut cmd = ns.command(handover_bin());
    cmd.args(["--log-format", "json", "run", "--complete-file"])
        .arg(complete)
        .args(options)
        .arg("--")
        .args(service);
    cmd
}

fn start(ns: &Netns, complete: &Path, options: &[&str], service: &[&str]) -> Run {
    Run::spawn(command(ns, complete, options, service))
}

fn fake(mark: &Path) -> [String; 2] {
    [
        fake_service().display().to_string(),
        mark.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The active instance's stderr is a pipe whose reader stalled, and its service
/// filled it. `handover` must keep its heartbeats: the standby never takes over
/// while the active service runs. Lines that did not fit are counted, and said.
#[test]
fn a_stalled_log_pipe_never_stops_the_heartbeats() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("stalled-stderr");
    let complete = dir.join("handover-complete");
    let failover = ["--mode", "failover", "--heartbeat", "50ms"];
    // The service writes 100 KB of lines to the shared stderr: the 64 KiB pipe
    // fills, and the writer blocks there (its own affair; the service's work goes
    // on). Each line is one short write, so no line of `handover` lands inside one.
    let mark = dir.join("active");
    let script = format!(
        "(i=0; pad=$(printf %040d 0); while [ $i -lt 2000 ]; do echo \"service log line $i $pad\"; i=$((i+1)); done >&2) & exec {} {}",
        fake_service().display(),
        mark.display()
    );
    let (mut active, reader) =
        Run::spawn_stalled(command(&a.ns, &complete, &failover, &["sh", "-c", &script]));
    assert!(
        eventually(WAIT, || marks(&mark).contains(&"ready".into())),
        "the active's service runs"
    );
    std::thread::sleep(Duration::from_millis(300));

    // Every event the active prints now would block a writer: a peer comes up,
    // and signals it passes on to its service (each one a line).
    let standby_mark = dir.join("standby");
    let mut standby = start(&b.ns, &complete, &failover, &strs(&fake(&standby_mark)));
    assert!(standby.saw("peer_up", WAIT), "{:?}", standby.seen);
    let pid = Pid::from_raw(active.pid() as i32).unwrap();
    // Signals pending together are delivered once, so a count of signals sent is
    // not a count of lines. The service records each signal it is passed, and each
    // one passed was a line: signals go on, for the whole watch at least, until
    // more lines were due than the log queue holds (1,024).
    let watch = Duration::from_secs(5);
    let forwarded = {
        let mark = mark.clone();
        move || marks(&mark).iter().filter(|m| *m == "usr1").count()
    };
    let signals = std::thread::spawn(move || {
        let (start, mut sent) = (Instant::now(), 0u64);
        while start.elapsed() < watch || (forwarded() < 1_100 && start.elapsed() < WAIT * 4) {
            kill_process(pid, Signal::USR1).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        (sent, forwarded())
    });
    assert!(
        !standby.saw("elected", watch),
        "the standby took over from a live active: split brain ({:?})",
        standby.seen
    );
    let (sent, forwarded) = signals.join().unwrap();
    assert!(
        forwarded >= 1_100,
        "{forwarded} of {sent} signals passed on"
    );
    assert!(
        !standby.saw("elected", Duration::from_millis(200)),
        "the standby took over from a live active: split brain ({:?})",
        standby.seen
    );
    assert!(!marks(&standby_mark).contains(&"started".into()));

    // The collector catches up: what was dropped is said, and counted at exit.
    reader.resume();
    let note = active
        .wait_event("log_lines_dropped", WAIT)
        .expect("a note of the lines dropped");
    assert!(note["count"].as_u64().unwrap() > 0, "{note}");
    kill_process(pid, Signal::TERM).unwrap();
    assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(0));
    let exit = active.wait_event("exit", WAIT).expect("exit event");
    assert!(exit["log_lines_dropped"].as_u64().unwrap() > 0, "{exit}");
    assert!(
        standby.saw("elected", WAIT),
        "the standby takes over once it leaves"
    );
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a completed hand-over `handover` exits 0 whatever its service did when it
/// was stopped: a JVM's 143, a handler's 1 or 130, or SIGKILL after
/// `--stop-timeout`. Anything else makes `Restart=on-failure` start the old
/// version again, which takes over again.
#[test]
fn a_clean_hand_over_exits_0_whatever_the_service_exits_with() {
    require_netns!();
    let net = Containers::new();
    let cases: [(&str, &[&str]); 4] = [
        ("jvm", &["--exit-code", "143"]),
        ("handler", &["--exit-code", "1"]),
        ("interrupted", &["--exit-code", "130"]),
        ("overran", &["--ignore-term"]),
    ];
    for (case, service_options) in cases {
        let (a, b) = (net.container(), net.container());
        let dir = scratch(&format!("exit-policy-{case}"));
        let complete = dir.join("handover-complete");
        let mut old_service = fake(&dir.join("old")).to_vec();
        old_service.extend(service_options.iter().map(|s| s.to_string()));
        let options = ["--stop-timeout", "500ms"];
        let mut old = start(&a.ns, &complete, &options, &strs(&old_service));
        assert!(old.saw("elected", WAIT), "{case}: {:?}", old.seen);
        let mut new = start(&b.ns, &complete, &options, &strs(&fake(&dir.join("new"))));
        assert!(old.saw("shutdown_requested", WAIT), "{case}");
        assert_eq!(
            old.wait(WAIT).and_then(|s| s.code()),
            Some(0),
            "{case}: a completed hand-over is a success ({:?})",
            old.seen
        );
        assert!(complete.is_file(), "{case}");
        let exited = old.wait_event("child_exited", WAIT).expect("child_exited");
        match case {
            "overran" => {
                assert!(old.saw("child_killed", WAIT), "{case}");
                assert_eq!(exited["signal"], 9, "{case}: {exited}");
            }
            _ => assert_ne!(exited["code"], 0, "{case}: {exited}"),
        }
        assert!(new.saw("predecessor_done", WAIT), "{case}");
        drop(new);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A service that dies on its own still passes its status through, after a
/// hand-over was never asked for.
#[test]
fn a_service_that_dies_on_its_own_passes_its_status_through() {
    require_netns!();
    let net = Containers::new();
    let a = net.container();
    let dir = scratch("exit-on-its-own");
    let complete = dir.join("handover-complete");
    let mut run = start(&a.ns, &complete, &[], &["sh", "-c", "sleep 0.3; exit 143"]);
    assert_eq!(run.wait(WAIT).and_then(|s| s.code()), Some(143));
    assert!(!complete.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Failover: a service elected but never ready within `--ready-timeout` is stopped
/// before its instance leaves, so the standby that takes over never runs beside it.
#[test]
fn a_service_not_ready_in_failover_is_stopped_before_a_standby_takes_over() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("ready-timeout-failover");
    let complete = dir.join("handover-complete");
    let slow_mark = dir.join("slow");
    // Never ready, and slow to stop: it ignores SIGTERM until killed.
    let mut slow_service = fake(&slow_mark).to_vec();
    slow_service.extend(["--ready-delay-ms", "100000", "--ignore-term"].map(String::from));
    let options = [
        "--mode",
        "failover",
        "--heartbeat",
        "100ms",
        "--ready-timeout",
        "500ms",
        "--stop-timeout",
        "1s",
    ];
    let mut slow = start(&a.ns, &complete, &options, &strs(&slow_service));
    assert!(slow.saw("elected", WAIT), "{:?}", slow.seen);
    let standby_mark = dir.join("standby");
    let mut standby = start(&b.ns, &complete, &options, &strs(&fake(&standby_mark)));
    assert!(slow.saw("ready_timeout", WAIT));
    assert!(standby.saw("elected", WAIT), "{:?}", standby.seen);
    let killed = slow.wait_event("child_exited", WAIT).expect("child_exited");
    assert_eq!(killed["signal"], 9, "{killed}");
    assert!(
        slow.seen
            .iter()
            .find(|e| e["event"] == "child_exited")
            .and_then(|e| e["t_us"].as_u64())
            < standby
                .wait_event("elected", WAIT)
                .and_then(|e| e["t_us"].as_u64()),
        "the slow service was gone before the standby was elected"
    );
    assert_eq!(slow.wait(WAIT).and_then(|s| s.code()), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
