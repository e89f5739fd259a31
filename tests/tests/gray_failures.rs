//! Failures that are not crashes: an instance that stalls for a moment (a GC pause,
//! a CPU-starved container, SIGSTOP) and wakes with its peers' heartbeats queued in
//! its socket; a service that hangs, answers 500 or stops pinging the watchdog. Each instance in a container of its own on a bridge, default options
//! but the heartbeat.
//!
//! Needs root (namespaces); skips with the reason otherwise, and fails under
//! `CI=true`.

use std::path::Path;
use std::time::Duration;

use handover_tests::load::service;
use handover_tests::measure::t_us;
use handover_tests::process::{handover_bin, monotonic_us, scratch, Run};
use handover_tests::require_netns;
use handover_tests::topology::{Container, Containers};
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

/// The health check the tests use: every 100 ms, unhealthy after 3 failures.
const HEALTH: [&str; 6] = [
    "--health-http",
    "http://127.0.0.1:8080/",
    "--health-interval",
    "100ms",
    "--health-fall",
    "3",
];

/// `handover run --mode failover OPTIONS -- python3 health_server.py` in `c`,
/// its service sick while `sick` exists.
fn checked(c: &Container, options: &[&str], sick: &Path) -> Run {
    let mut cmd = c.ns.command(handover_bin());
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args(options)
        .arg("--")
        .arg("python3")
        .arg(service("health_server.py"))
        .env("PORT", "8080")
        .env("SICK", sick);
    Run::spawn(cmd)
}

fn service_pid(run: &mut Run) -> Pid {
    let started = run.next_event("child_started", WAIT).expect("a service");
    Pid::from_raw(started["pid"].as_i64().unwrap() as i32).unwrap()
}

/// A service that hangs (SIGSTOP) on the active: its health check fails, the
/// active stops it (SIGTERM, then SIGCONT so that it can act on it) and leaves,
/// and the standby's service starts; `handover` exits 1, for a restart policy.
#[test]
fn a_hung_service_is_stopped_and_the_standby_takes_over() {
    require_netns!();
    let dir = scratch("health-hung");
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let mut active = checked(&a, &HEALTH, &dir.join("sick"));
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let hung = service_pid(&mut active);
    let mut standby = checked(&b, &HEALTH, &dir.join("sick"));
    assert!(standby.saw("ready", WAIT), "{:?}", standby.seen);
    assert!(active.saw("peer_up", WAIT), "{:?}", active.seen);
    std::thread::sleep(Duration::from_millis(300));

    let stopped = monotonic_us();
    kill_process(hung, Signal::STOP).unwrap();
    let unhealthy = active.next_event("health", WAIT).expect("a verdict");
    assert_eq!(unhealthy["healthy"], false, "{unhealthy}");
    assert!(active.saw("stepping_down", WAIT), "{:?}", active.seen);
    let exited = t_us(&mut active, "child_exited");
    let took_over = t_us(&mut standby, "child_started");
    assert!(exited < took_over, "the hung service was stopped first");
    assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(1));
    println!(
        "hung service -> standby's service started: {} ms",
        (took_over - stopped) / 1000
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that answers 500 on the active: after three failed checks the
/// active stops it and leaves, and the standby's service starts.
#[test]
fn an_active_whose_service_answers_500_fails_over() {
    require_netns!();
    let dir = scratch("health-500");
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let sick = dir.join("sick");
    let mut active = checked(&a, &HEALTH, &sick);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    assert!(active.saw("service_ready", WAIT), "{:?}", active.seen);
    let mut standby = checked(&b, &HEALTH, &dir.join("never"));
    assert!(standby.saw("ready", WAIT), "{:?}", standby.seen);
    assert!(active.saw("peer_up", WAIT), "{:?}", active.seen);
    std::thread::sleep(Duration::from_millis(300));

    std::fs::write(&sick, "").unwrap();
    let verdict = active.next_event("health", WAIT).expect("a verdict");
    assert_eq!(verdict["healthy"], false, "{verdict}");
    let detail = verdict["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("500"), "{verdict}");
    assert!(active.saw("stepping_down", WAIT), "{:?}", active.seen);
    let exited = t_us(&mut active, "child_exited");
    let took_over = t_us(&mut standby, "child_started");
    assert!(
        exited < took_over,
        "the unhealthy service was stopped first"
    );
    assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hot standby whose service answers 500 stands aside: when the active is
/// killed nobody takes over, and the standby is elected once its service is
/// healthy again.
#[test]
fn an_unhealthy_hot_standby_is_not_elected() {
    require_netns!();
    let dir = scratch("health-standby");
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let hot = [&HEALTH[..], &["--standby", "hot"]].concat();
    let sick = dir.join("sick");
    let mut active = checked(&a, &hot, &dir.join("never"));
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let mut standby = checked(&b, &hot, &sick);
    assert!(standby.saw("ready", WAIT), "{:?}", standby.seen);
    std::fs::write(&sick, "").unwrap();
    let verdict = standby.next_event("health", WAIT).expect("a verdict");
    assert_eq!(verdict["healthy"], false, "{verdict}");

    active.kill();
    assert!(
        !standby.saw("elected", Duration::from_secs(3)),
        "an unhealthy standby took over: {:?}",
        standby.seen
    );
    std::fs::remove_file(&sick).unwrap();
    let verdict = standby.next_event("health", WAIT).expect("a verdict");
    assert_eq!(verdict["healthy"], true, "{verdict}");
    assert!(standby.saw("elected", WAIT), "{:?}", standby.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Alone, an active whose service is unhealthy keeps it running (nobody could
/// take over) and says so, once per verdict.
#[test]
fn alone_an_unhealthy_active_keeps_its_service_and_says_so() {
    require_netns!();
    let dir = scratch("health-alone");
    let net = Containers::new();
    let a = net.container();
    let sick = dir.join("sick");
    let mut alone = checked(&a, &HEALTH, &sick);
    assert!(alone.saw("elected", WAIT), "{:?}", alone.seen);
    // Ready at its first passing check (no --ready-* option given).
    assert!(alone.saw("service_ready", WAIT), "{:?}", alone.seen);
    std::fs::write(&sick, "").unwrap();
    assert!(alone.saw("unhealthy_kept", WAIT), "{:?}", alone.seen);
    alone.collect(Duration::from_secs(1));
    let kept = alone.seen.iter().filter(|e| e["event"] == "unhealthy_kept");
    assert_eq!(kept.count(), 1, "said once: {:?}", alone.seen);
    assert!(alone.latest("child_exited").is_none(), "{:?}", alone.seen);
    assert!(alone.latest("stepping_down").is_none(), "{:?}", alone.seen);
    assert!(alone.try_alive());
    let _ = std::fs::remove_dir_all(&dir);
}

/// systemd's watchdog: the service is given WATCHDOG_USEC and its own pid as
/// WATCHDOG_PID, pings with `systemd-notify WATCHDOG=1`, and once it falls
/// silent the active steps down for the standby.
#[test]
fn a_service_that_stops_pinging_the_watchdog_fails_over() {
    watchdog_fails_over("systemd-notify WATCHDOG=1", "health-watchdog");
}

/// The same, pinging with the channel's line, as the Node and Python clients'
/// `watchdog()` does.
#[test]
fn a_service_that_stops_pinging_on_the_channel_fails_over() {
    watchdog_fails_over(r#"echo '{"cmd":"watchdog"}' >&3"#, "health-channel");
}

fn watchdog_fails_over(ping: &str, name: &str) {
    require_netns!();
    let dir = scratch(name);
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let (silent, env) = (dir.join("silent"), dir.join("env"));
    let script = format!(
        "echo \"$WATCHDOG_USEC $WATCHDOG_PID $$\" > {env}.$$; systemd-notify --ready; \
         while [ ! -e {silent} ]; do {ping}; sleep 0.1; done; \
         exec sleep 1000",
        env = env.display(),
        silent = silent.display()
    );
    let start = |c: &Container| {
        let mut cmd = c.ns.command(handover_bin());
        cmd.args(["--log-format", "json", "run", "--mode", "failover"])
            .args(["--watchdog", "500ms", "--", "sh", "-c", &script]);
        Run::spawn(cmd)
    };
    let mut active = start(&a);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    let pid = service_pid(&mut active);
    let mut standby = start(&b);
    assert!(standby.saw("ready", WAIT), "{:?}", standby.seen);
    assert!(active.saw("peer_up", WAIT), "{:?}", active.seen);
    std::thread::sleep(Duration::from_secs(1));
    assert!(active.latest("health").is_none(), "{:?}", active.seen);

    let given = std::fs::read_to_string(format!("{}.{}", env.display(), pid.as_raw_nonzero()));
    let given = given.expect("the service's environment");
    let fields: Vec<&str> = given.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{given:?}");
    assert_eq!(fields[0], "500000", "WATCHDOG_USEC");
    assert_eq!(fields[1], fields[2], "WATCHDOG_PID is the service's pid");

    std::fs::write(&silent, "").unwrap();
    let verdict = active.next_event("health", WAIT).expect("a verdict");
    assert_eq!(verdict["check"], "watchdog", "{verdict}");
    assert!(active.saw("stepping_down", WAIT), "{:?}", active.seen);
    assert!(standby.saw("child_started", WAIT), "{:?}", standby.seen);
    assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The active instance itself (`handover` and its service) frozen past the dead
/// interval: the standby takes over; on waking, the old active reads the new
/// one's heartbeats waiting in its socket before anything else, is demoted, and
/// stops its service at once.
#[test]
fn an_active_paused_past_the_dead_interval_steps_down_on_waking() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let start = |c: &Container| {
        let mut cmd = c.ns.command(handover_bin());
        cmd.args(["--log-format", "json", "run", "--mode", "failover"])
            .args(["--heartbeat", "100ms", "--", "sleep", "3600"]);
        Run::spawn(cmd)
    };
    let mut old = start(&a);
    assert!(old.saw("elected", WAIT), "{:?}", old.seen);
    let service = service_pid(&mut old);
    let mut new = start(&b);
    assert!(new.saw("ready", WAIT), "{:?}", new.seen);
    assert!(old.saw("peer_up", WAIT), "{:?}", old.seen);
    std::thread::sleep(Duration::from_millis(300));

    let handover = Pid::from_raw(old.pid() as i32).unwrap();
    kill_process(handover, Signal::STOP).unwrap();
    kill_process(service, Signal::STOP).unwrap();
    assert!(new.saw("child_started", WAIT), "{:?}", new.seen);
    std::thread::sleep(Duration::from_millis(500));
    let woke = monotonic_us();
    kill_process(handover, Signal::CONT).unwrap();
    kill_process(service, Signal::CONT).unwrap();
    let demoted = t_us(&mut old, "demoted");
    let stopped = t_us(&mut old, "child_exited");
    println!(
        "woke -> old active demoted {} µs, its service stopped {} µs",
        demoted - woke,
        stopped - woke
    );
    assert!(old.latest("elected").is_some());
    new.collect(Duration::from_millis(300));
    assert!(
        new.latest("demoted").is_none(),
        "the new active kept its term: {:?}",
        new.seen
    );
}

/// `handover step-down`, an operator's switchover: the active instance's service
/// is stopped cleanly (SIGTERM, exit 0), it leaves, and the standby takes over;
/// asked again with nobody standing by, the new active refuses and says why.
#[test]
fn an_operator_steps_the_active_down_for_the_standby() {
    require_netns!();
    let dir = scratch("step-down");
    let scope = format!("step-down-{}", std::process::id());
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let start = |c: &Container| {
        let mut cmd = c.ns.command(handover_bin());
        cmd.env("XDG_RUNTIME_DIR", &dir)
            .args(["--log-format", "json", "run", "--mode", "failover"])
            .args(["--scope", &scope, "--heartbeat", "100ms", "--"])
            .args(["sleep", "3600"]);
        Run::spawn(cmd)
    };
    let step_down = |c: &Container| {
        let out =
            c.ns.command(handover_bin())
                .env("XDG_RUNTIME_DIR", &dir)
                .args(["step-down", "--scope", &scope])
                .output()
                .expect("handover step-down");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), said)
    };
    let mut active = start(&a);
    assert!(active.saw("elected", WAIT), "{:?}", active.seen);
    assert!(active.saw("child_started", WAIT), "{:?}", active.seen);
    let mut standby = start(&b);
    assert!(standby.saw("ready", WAIT), "{:?}", standby.seen);
    assert!(active.saw("peer_up", WAIT), "{:?}", active.seen);
    std::thread::sleep(Duration::from_millis(300));

    let asked = std::time::Instant::now();
    let (code, said) = step_down(&a);
    println!("step-down answered in {:?}", asked.elapsed());
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("stepping down"), "{said}");
    assert!(
        said.contains("not the active instance"),
        "the standby answers too: {said}"
    );
    let stopped = t_us(&mut active, "child_exited");
    assert_eq!(active.wait(WAIT).and_then(|s| s.code()), Some(0));
    let exited = active.latest("child_exited").unwrap();
    assert_eq!(exited["signal"], 15, "stopped with SIGTERM: {exited}");
    assert!(stopped < t_us(&mut standby, "child_started"));

    let (code, said) = step_down(&b);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no standby could take over"), "{said}");
    assert!(standby.try_alive());
    let _ = std::fs::remove_dir_all(&dir);
}
