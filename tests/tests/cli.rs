//! `handover run` processes in network namespaces the tests create: hand-over,
//! host-mode isolation, scopes, handover-lib interop, junk, and failover.
//!
//! Each test needs root (namespaces) and skips with the reason otherwise.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use handover_tests::netns::{Netns, GROUP};
use handover_tests::process::{self, eventually, fake_service, marks, scratch, Run};
use handover_tests::require_netns;

const WAIT: Duration = Duration::from_secs(5);

/// `run` arguments around the fake service.
fn run_args(
    interface: &str,
    scope: &str,
    complete: &std::path::Path,
    mark: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let fake = fake_service();
    let service = [fake.to_str().unwrap(), mark.to_str().unwrap()];
    process::run_args(interface, scope, complete, extra, &service)
}

/// A socket in `ns` on the group's `port` (shared, as handover-lib's is), reading with
/// `timeout`: what an eavesdropper or a legacy peer hears.
fn group_listener(ns: &Netns, port: u16, timeout: Duration) -> UdpSocket {
    let s = ns.group_socket(port, Ipv4Addr::LOCALHOST);
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Sends `datagrams` to the group's `port` from inside `ns`, over loopback.
fn send_to_group(ns: &Netns, port: u16, datagrams: &[Vec<u8>]) {
    ns.enter(|| {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket2::SockRef::from(&s)
            .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
            .unwrap();
        for d in datagrams {
            s.send_to(d, (GROUP, port)).unwrap();
        }
    });
}

fn start(ns: &Netns, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Run::start(ns, &args)
}

#[test]
fn two_processes_hand_over() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("handover");
    let complete = dir.join("handover-complete");
    let (old_mark, new_mark) = (dir.join("old"), dir.join("new"));

    let mut old = start(&ns, &run_args("lo", "svc", &complete, &old_mark, &[]));
    assert!(
        old.saw("ready", WAIT),
        "old child reported READY=1 over sd_notify"
    );
    assert_eq!(old.wait_event("ready", WAIT).unwrap()["via"], "notify");
    let mut new = start(&ns, &run_args("lo", "svc", &complete, &new_mark, &[]));
    assert!(new.saw("ready", WAIT));

    assert!(old.saw("shutdown_requested", WAIT), "old told to shut down");
    assert!(
        eventually(WAIT, || marks(&old_mark).contains(&"term".to_string())),
        "old child got SIGTERM: {:?}",
        marks(&old_mark)
    );
    let status = old.wait(WAIT).expect("old handover exits");
    assert_eq!(
        status.code(),
        Some(0),
        "old handover exits with its child's status"
    );
    assert!(complete.is_file(), "complete file written");
    assert!(
        new.saw("predecessor_done", WAIT),
        "new learns its predecessor is done"
    );
    assert!(
        !marks(&new_mark).contains(&"term".to_string()),
        "new child keeps running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stop_timeout_ends_in_sigkill_and_the_hand_over_still_exits_0() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("sigkill");
    let complete = dir.join("handover-complete");
    let (old_mark, new_mark) = (dir.join("old"), dir.join("new"));
    let mut args = run_args("lo", "svc", &complete, &old_mark, &[]);
    // The stubborn service ignores SIGTERM.
    args.push("--ignore-term".into());
    let i = args.iter().position(|a| a == "2s").unwrap();
    args[i] = "300ms".into();
    let mut old = start(&ns, &args);
    assert!(old.saw("ready", WAIT));
    let mut new = start(&ns, &run_args("lo", "svc", &complete, &new_mark, &[]));
    assert!(new.saw("ready", WAIT));
    assert!(
        old.saw("child_killed", WAIT),
        "SIGKILL after the stop timeout"
    );
    let exited = old.wait_event("child_exited", WAIT).expect("child_exited");
    assert_eq!(exited["signal"], 9, "{exited}");
    let status = old.wait(WAIT).expect("old handover exits");
    assert_eq!(
        status.code(),
        Some(0),
        "a completed hand-over is a success, even when its service had to be killed"
    );
    assert!(complete.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `handover watch --json --all-scopes` (bridge mode) for `time` and returns
/// the addresses of the senders it reported.
fn watch_senders(ns: &Netns, time: Duration) -> std::collections::BTreeSet<String> {
    use std::io::BufRead;
    let mut watch = ns
        .command(handover_tests::process::handover_bin())
        .args(["watch", "--json", "--all-scopes", "--heartbeat", "100ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(time);
    let _ = watch.kill();
    let _ = watch.wait();
    rx.try_iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .filter_map(|v| Some(v["from"].as_str()?.split(':').next()?.to_owned()))
        .collect()
}

#[test]
fn host_mode_hears_only_its_interface() {
    require_netns!();
    // A host with two links: eth0 to namespace `near`, eth1 to namespace `far`.
    let host = Netns::new();
    let near = Netns::new();
    let far = Netns::new();
    host.link("eth0", "10.80.0.1/24", &near, "eth0", "10.80.0.2/24");
    host.link("eth1", "10.81.0.1/24", &far, "eth0", "10.81.0.2/24");
    let dir = scratch("hostmode");
    let complete = dir.join("handover-complete");
    let mark = |n: &str| dir.join(n);

    let mut a = start(&host, &run_args("eth0", "svc", &complete, &mark("a"), &[]));
    assert!(a.saw("ready", WAIT));
    // Behind eth1: not heard, so each is in charge on its own link.
    let mut c = start(&far, &run_args("eth0", "svc", &complete, &mark("c"), &[]));
    assert!(c.saw("ready", WAIT));
    assert!(
        !a.saw("shutdown_requested", Duration::from_millis(500)),
        "a ignores eth1"
    );
    assert!(
        !a.seen.iter().any(|e| e["event"] == "peer_up"),
        "a heard no peer on eth1"
    );
    // `handover watch` in bridge mode on the same host joins both links and sees c:
    // the pinning is what kept a deaf to it.
    let senders = watch_senders(&host, Duration::from_millis(1500));
    assert!(
        senders.contains("10.81.0.2"),
        "bridge mode hears eth1: {senders:?}"
    );
    // Behind eth0: heard.
    let mut b = start(&near, &run_args("eth0", "svc", &complete, &mark("b"), &[]));
    assert!(b.saw("ready", WAIT));
    assert!(
        a.saw("shutdown_requested", WAIT),
        "b on a's link takes over from a"
    );
    assert_eq!(a.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        !c.saw("shutdown_requested", Duration::from_millis(300)),
        "c is not disturbed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_scopes_share_a_group_without_disturbing_each_other() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("scopes");
    let complete = |n: &str| dir.join(format!("complete-{n}"));
    let mark = |n: &str| dir.join(n);

    let mut one = start(
        &ns,
        &run_args("lo", "device-1/api", &complete("1"), &mark("one"), &[]),
    );
    assert!(one.saw("ready", WAIT));
    let mut two = start(
        &ns,
        &run_args("lo", "device-2/api", &complete("2"), &mark("two"), &[]),
    );
    assert!(two.saw("ready", WAIT));
    // handover-lib's loop: every device's new instance killed every other device's.
    assert!(!one.saw("shutdown_requested", Duration::from_millis(500)));
    assert!(!two.saw("shutdown_requested", Duration::from_millis(100)));
    let mut one_new = start(
        &ns,
        &run_args("lo", "device-1/api", &complete("1"), &mark("one-new"), &[]),
    );
    assert!(one_new.saw("ready", WAIT));
    assert!(one.saw("shutdown_requested", WAIT), "same scope hands over");
    assert_eq!(one.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(complete("1").is_file());
    assert!(!complete("2").exists());
    assert!(!two.saw("shutdown_requested", Duration::from_millis(300)));
    // The other scope's datagrams never reached the process: the kernel's filter
    // dropped them. (`handover watch` has no filter: it hears both scopes.)
    let stats = &one.wait_event("exit", WAIT).unwrap()["stats"];
    assert_eq!(stats["dropped_foreign_scope"], 0, "{stats}");
    assert!(stats["accepted"].as_u64().unwrap() > 0, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn legacy_peer_yields_to_a_newer_v1_timestamp_and_sends_only_v1_to_1536() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("legacy");
    let complete = dir.join("handover-complete");
    // A handover-lib listener on its port, opened before the peer starts.
    let listener = group_listener(&ns, 1536, Duration::from_millis(50));
    let mut peer = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("mark"), &["--legacy"]),
    );
    assert!(peer.saw("ready", WAIT));
    std::thread::sleep(Duration::from_millis(300));
    let mut heard = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = listener.recv_from(&mut buf) {
        heard.push(buf[..n].to_vec());
    }
    assert!(
        !heard.is_empty(),
        "the legacy peer announced itself on 1536"
    );
    for d in &heard {
        assert_eq!(d.len(), 9, "only 9-byte v1 datagrams on 1536: {d:02x?}");
        assert_eq!(d[0], 0x01);
    }
    // handover-lib starting now, with a clock ahead: its timestamp is greater.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut v1 = [0u8; 9];
    v1[0] = 0x01;
    v1[1..].copy_from_slice(&(now_ms + 5_000).to_be_bytes());
    send_to_group(&ns, 1536, &[v1.to_vec()]);
    assert!(
        peer.saw("shutdown_requested", WAIT),
        "yields to the newer v1 peer"
    );
    assert_eq!(peer.wait(WAIT).and_then(|s| s.code()), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn junk_is_filtered_or_counted_and_hand_over_still_works() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("junk");
    let complete = dir.join("handover-complete");
    let port = 1538;
    let mut old = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("old"), &[]),
    );
    assert!(old.saw("ready", WAIT));

    // One of its heartbeats, as an eavesdropper hears it.
    let heartbeat = {
        let s = group_listener(&ns, port, Duration::from_secs(2));
        let mut buf = [0u8; 2048];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    // Not ours, whatever follows: the kernel's filter drops these before they
    // wake the process.
    let mut foreign = heartbeat.clone();
    // The scope id follows magic and flags: flipping a byte of it makes a
    // foreign scope.
    foreign[2] ^= 0x55;
    let mut random = [0u8; 64];
    for (i, b) in random.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(97).wrapping_add(13);
    }
    let mut bad_flags = heartbeat.clone();
    bad_flags[1] |= 0x80;
    let not_ours: Vec<Vec<u8>> = vec![
        vec![0x01],
        random.to_vec(),
        foreign[..foreign.len() / 2].to_vec(),
        foreign.clone(),
        bad_flags,
        vec![0x02, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    // Ours by their first bytes, malformed after: the decoder drops and counts them.
    let ours_malformed: Vec<Vec<u8>> = vec![
        heartbeat[..heartbeat.len() - 1].to_vec(),
        [&heartbeat[..], &[0xee, 0xee]].concat(),
    ];
    send_to_group(&ns, port, &not_ours);
    send_to_group(&ns, port, &ours_malformed);
    std::thread::sleep(Duration::from_millis(200));
    assert!(old.is_running(), "still running after the junk");
    assert!(!old.saw("shutdown_requested", Duration::ZERO));

    let mut new = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("new"), &[]),
    );
    assert!(new.saw("ready", WAIT));
    assert!(
        old.saw("shutdown_requested", WAIT),
        "hands over after the junk"
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    let stats = old.wait_event("exit", WAIT).unwrap()["stats"].clone();
    let count = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    for filtered in [
        "dropped_empty",
        "dropped_unknown_format",
        "dropped_legacy_status",
        "dropped_bad_flags",
        "dropped_foreign_scope",
    ] {
        assert_eq!(
            count(filtered),
            0,
            "{filtered}: dropped in the kernel: {stats}"
        );
    }
    let counted =
        count("dropped_truncated") + count("dropped_trailing") + count("dropped_malformed");
    assert!(counted >= 2, "truncated and trailing counted: {stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `handover run --mode failover` around the fake service: an active instance
/// (priority 200) and a standby (100) that has heard it.
fn failover_pair(ns: &Netns, dir: &std::path::Path) -> (Run, Run) {
    let complete = dir.join("handover-complete");
    let failover = |prio: &'static str| ["--mode", "failover", "--priority", prio];
    let mut active = start(
        ns,
        &run_args(
            "lo",
            "svc",
            &complete,
            &dir.join("active"),
            &failover("200"),
        ),
    );
    assert!(active.saw("elected", WAIT));
    assert!(
        active.saw("child_started", WAIT),
        "the service runs while active"
    );
    let mut standby = start(
        ns,
        &run_args(
            "lo",
            "svc",
            &complete,
            &dir.join("standby"),
            &failover("100"),
        ),
    );
    assert!(standby.saw("peer_up", WAIT), "standby hears the active one");
    (active, standby)
}

#[test]
fn failover_standby_starts_the_service_after_kill_9() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("failover");
    let (mut active, mut standby) = failover_pair(&ns, &dir);
    assert!(
        !standby.saw("child_started", Duration::from_millis(500)),
        "cold standby"
    );
    assert!(marks(&dir.join("standby")).is_empty());

    let service = active
        .wait_event("child_started", WAIT)
        .and_then(|e| e["pid"].as_u64())
        .expect("the active's service");
    active.kill();
    assert!(
        standby.saw("elected", WAIT),
        "standby takes over after kill -9"
    );
    assert!(standby.saw("child_started", WAIT));
    assert!(
        eventually(WAIT, || marks(&dir.join("standby"))
            .contains(&"ready".to_string())),
        "its service runs"
    );
    // The killed instance's service died with it (parent-death signal, SIGKILL:
    // nobody is left to enforce a stop timeout).
    let gone = || {
        std::fs::read_to_string(format!("/proc/{service}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        })
    };
    assert!(
        eventually(WAIT, gone),
        "the orphaned service {service} still runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failover_service_death_hands_over_and_exits_non_zero() {
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("failover-death");
    let (mut active, mut standby) = failover_pair(&ns, &dir);
    // The active service dies (its pid is in its mark file).
    assert!(eventually(WAIT, || !marks(&dir.join("active")).is_empty()));
    let text = std::fs::read_to_string(dir.join("active")).unwrap();
    let pid: i32 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let status = active.wait(WAIT).expect("handover exits");
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "non-zero: the service died while active"
    );
    assert!(standby.saw("elected", WAIT), "the standby takes over");
    assert!(standby.saw("child_started", WAIT));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keyed_peer_ignores_forged_and_replayed_datagrams() {
    use handover_proto::wire;
    require_netns!();
    let ns = Netns::new();
    let dir = scratch("keyed");
    let complete = dir.join("handover-complete");
    let key_file = dir.join("key");
    std::fs::write(&key_file, "3c".repeat(32)).unwrap();
    let keyed = ["--key-file", key_file.to_str().unwrap()];
    let port = 1538;

    // The eavesdropper listens from the start.
    let tap = group_listener(&ns, port, Duration::from_millis(20));
    let mut p = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("p"), &keyed),
    );
    assert!(p.saw("ready", WAIT));
    let mut r = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("r"), &keyed),
    );
    assert!(r.saw("ready", WAIT));
    assert_eq!(
        p.wait(WAIT).and_then(|s| s.code()),
        Some(0),
        "p handed over to r"
    );
    let mut captured = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = tap.recv_from(&mut buf) {
        captured.push(buf[..n].to_vec());
    }
    assert!(
        captured.iter().all(|d| d[1] & 1 == 1),
        "every datagram is tagged"
    );

    let forged = |counter| handover_tests::forged_claim(wire::scope_id(b"svc"), 0xbad, counter);
    let mut attacks = captured.clone();
    let n = forged(1).emit(&mut buf).unwrap();
    attacks.push(buf[..n].to_vec());
    let n = forged(2).emit_tagged(&[0x3d; 32], &mut buf).unwrap();
    attacks.push(buf[..n].to_vec());
    send_to_group(&ns, port, &attacks);
    assert!(
        !r.saw("shutdown_requested", Duration::from_millis(500)),
        "r keeps running"
    );
    assert!(r.is_running());
    assert!(
        !marks(&dir.join("r")).contains(&"term".to_string()),
        "its service too"
    );

    let mut s = start(
        &ns,
        &run_args("lo", "svc", &complete, &dir.join("s"), &keyed),
    );
    assert!(s.saw("ready", WAIT));
    assert_eq!(
        r.wait(WAIT).and_then(|s| s.code()),
        Some(0),
        "r hands over to a keyed peer"
    );
    let stats = r.wait_event("exit", WAIT).unwrap()["stats"].clone();
    let count = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert!(count("dropped_unauthenticated") >= 1, "{stats}");
    assert!(count("dropped_bad_tag") >= 1, "{stats}");
    assert!(
        count("dropped_stale") + count("dropped_duplicate") >= 1,
        "replays counted: {stats}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
