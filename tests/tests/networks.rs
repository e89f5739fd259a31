//! `handover run` on the networks users have, started as users start it: every
//! instance in its own network namespace (a container on a bridge, a device on a
//! LAN), with balena's environment and no interface option.
//!
//! Each test needs root (namespaces); it skips with the reason otherwise, and fails
//! under `CI=true`.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handover_tests::balena;
use handover_tests::crowd::Crowd;
use handover_tests::netns::{Netns, GROUP};
use handover_tests::process::{eventually, handover_bin, marks, scratch, Run};
use handover_tests::require_netns;
use handover_tests::topology::{Containers, Fleet};

const WAIT: Duration = Duration::from_secs(10);

/// `handover run [extra] -- fake-service MARK` in `ns`, started as balena starts a
/// container of service `svc` on device `uuid`.
fn command(ns: &Netns, uuid: &str, lock_dir: &Path, mark: &Path, extra: &[&str]) -> Command {
    balena::entrypoint(ns, &[handover_bin()], uuid, lock_dir, mark, extra)
}

fn service(ns: &Netns, uuid: &str, lock_dir: &Path, mark: &Path, extra: &[&str]) -> Run {
    Run::spawn(command(ns, uuid, lock_dir, mark, extra))
}

/// The same with host networking, as balenaOS configures it: only
/// `HANDOVER_NETWORK_MODE=host` (the interface defaults to `supervisor0`).
fn host_networked(ns: &Netns, uuid: &str, lock_dir: &Path, mark: &Path) -> Run {
    let mut cmd = command(ns, uuid, lock_dir, mark, &[]);
    cmd.env("HANDOVER_NETWORK_MODE", "host");
    Run::spawn(cmd)
}

#[test]
fn hand_over_between_containers_on_a_bridge() {
    require_netns!();
    let net = Containers::new();
    let (old_c, new_c) = (net.container(), net.container());
    let dir = scratch("bridge-handover");
    let (old_mark, new_mark) = (dir.join("old"), dir.join("new"));

    let mut old = service(&old_c.ns, "dev1", &dir, &old_mark, &[]);
    assert!(old.saw("elected", WAIT), "the first instance is in charge");
    let mut new = service(&new_c.ns, "dev1", &dir, &new_mark, &[]);
    assert!(new.saw("ready", WAIT));

    assert!(
        old.saw("shutdown_requested", WAIT),
        "the old container hears the new one across the bridge"
    );
    assert!(
        eventually(WAIT, || marks(&old_mark).contains(&"term".to_string())),
        "old service got SIGTERM: {:?}",
        marks(&old_mark)
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(
        dir.join("handover-complete").is_file(),
        "complete file written"
    );
    assert!(
        new.saw("predecessor_done", WAIT),
        "the new one learns its predecessor is done"
    );
    assert!(!marks(&new_mark).contains(&"term".to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pid a fake service recorded when it last started, if it is still alive.
fn running_service(mark: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(mark).ok()?;
    let last = text.lines().rev().find(|l| l.starts_with("started "))?;
    let pid: i32 = last.split_whitespace().nth(1)?.parse().ok()?;
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::test_kill_process(pid).ok()?;
    // A zombie is not running: its parent has not reaped it yet.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    let state = stat.rsplit(')').next()?.split_whitespace().next()?;
    (state != "Z").then_some(pid.as_raw_nonzero().get())
}

/// How many of the services recorded in `marks` run now.
fn running(marks: &[&Path]) -> usize {
    marks
        .iter()
        .filter(|m| running_service(m).is_some())
        .count()
}

/// Checks every 20 ms for `time` that exactly one of the services runs.
fn exactly_one_runs(marks: &[&Path], time: Duration) {
    let end = std::time::Instant::now() + time;
    while std::time::Instant::now() < end {
        assert_eq!(running(marks), 1, "services running: {marks:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failover_between_two_hosts() {
    require_netns!();
    let lan = Fleet::new();
    let (host_a, host_b) = (lan.device(), lan.device());
    let dir = scratch("hosts-failover");
    let (mark_a, mark_b) = (dir.join("a"), dir.join("b"));
    let failover = ["--mode", "failover"];

    let mut a = service(&host_a.ns, "hosts", &dir, &mark_a, &failover);
    assert!(a.saw("elected", WAIT), "alone on the LAN: active");
    assert!(eventually(WAIT, || running_service(&mark_a).is_some()));
    let mut b = service(&host_b.ns, "hosts", &dir, &mark_b, &failover);
    assert!(b.saw("peer_up", WAIT), "b hears a across the LAN");
    assert!(!b.saw("elected", Duration::from_secs(2)), "b stands by");
    exactly_one_runs(&[&mark_a, &mark_b], Duration::from_secs(1));

    a.kill();
    assert!(b.saw("elected", WAIT), "b takes over after kill -9 of a");
    assert!(
        eventually(WAIT, || running(&[&mark_a, &mark_b]) == 1
            && running_service(&mark_b).is_some()),
        "b's service runs, a's is gone"
    );
    exactly_one_runs(&[&mark_a, &mark_b], Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP socket in `ns` on handover-lib's port, joined to its group on the interface
/// with address `on`, sending through it: a v1 peer.
fn v1_peer(ns: &Netns, on: Ipv4Addr) -> UdpSocket {
    let s = ns.group_socket(1536, on);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

#[test]
fn legacy_interop_between_containers() {
    require_netns!();
    let net = Containers::new();
    let (ours, theirs) = (net.container(), net.container());
    let dir = scratch("bridge-legacy");
    let v1 = v1_peer(&theirs.ns, theirs.address.unwrap());

    let mut peer = service(&ours.ns, "dev1", &dir, &dir.join("mark"), &["--legacy"]);
    assert!(peer.saw("elected", WAIT));
    // What handover-lib in the other container hears: v1 datagrams from our eth0.
    let mut buf = [0u8; 64];
    let heard = eventually(WAIT, || {
        matches!(v1.recv_from(&mut buf), Ok((9, from))
            if buf[0] == 0x01 && from.ip() == std::net::IpAddr::V4(ours.address.unwrap()))
    });
    assert!(heard, "our v1 announcements cross the bridge");
    // handover-lib starting later there: a greater timestamp.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut datagram = [0x01u8; 9];
    datagram[1..].copy_from_slice(&(now_ms + 5_000).to_be_bytes());
    v1.send_to(&datagram, (GROUP, 1536)).unwrap();
    assert!(
        peer.saw("shutdown_requested", WAIT),
        "yields to the newer v1 peer in the other container"
    );
    assert_eq!(peer.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(dir.join("handover-complete").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The interfaces an `interfaces_changed` event of `run` lists, waiting for the
/// next one that satisfies `f`.
fn interfaces_until(run: &mut Run, f: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = run
            .next_event("interfaces_changed", left)
            .expect("an interfaces_changed event");
        let names: Vec<String> = event["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();
        if f(&names) {
            return names;
        }
    }
}

#[test]
fn interfaces_that_come_and_go_are_followed() {
    require_netns!();
    let net = Containers::new();
    let mut late = net.unplugged();
    let dir = scratch("late-eth0");
    let mut old = service(&late.ns, "dev1", &dir, &dir.join("old"), &[]);
    assert!(old.saw("elected", WAIT));
    // The container runtime gives the container its eth0 after the service started.
    net.plug(&mut late);
    interfaces_until(&mut old, |i| i.iter().any(|i| i == "eth0"));
    // The network goes away, and comes back with another address.
    net.unplug(&mut late);
    interfaces_until(&mut old, |i| !i.iter().any(|i| i == "eth0"));
    net.plug(&mut late);
    interfaces_until(&mut old, |i| i.iter().any(|i| i == "eth0"));

    let other = net.container();
    let mut new = service(&other.ns, "dev1", &dir, &dir.join("new"), &[]);
    assert!(new.saw("ready", WAIT));
    assert!(
        old.saw("shutdown_requested", WAIT),
        "heard over the eth0 that came back"
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A socket in the LAN's switch, joined to the group on the LAN: what any other
/// device on the LAN would hear on the protocol's port.
fn lan_observer(lan: &Fleet) -> UdpSocket {
    let s = lan
        .switch()
        .group_socket(1538, Ipv4Addr::new(192, 168, 50, 1));
    s.set_nonblocking(true).unwrap();
    s
}

/// The sources of what `observer` received so far.
fn heard_from(observer: &UdpSocket) -> Vec<std::net::SocketAddr> {
    let mut buf = [0u8; 2048];
    std::iter::from_fn(|| observer.recv_from(&mut buf).ok().map(|(_, from)| from)).collect()
}

#[test]
fn host_mode_keeps_a_hand_over_inside_its_device() {
    require_netns!();
    let lan = Fleet::new();
    let (d1, d2) = (lan.device(), lan.device());
    let observer = lan_observer(&lan);
    let dir = scratch("fleet-host");
    // The same scope on both devices, as handover-lib has none: only the interface
    // keeps the devices apart.
    let mut old = host_networked(&d1.ns, "fleet", &dir, &dir.join("old"));
    assert!(old.saw("elected", WAIT));
    let mut other = host_networked(&d2.ns, "fleet", &dir, &dir.join("other"));
    assert!(
        other.saw("elected", WAIT),
        "d2 hears nothing of d1: in charge"
    );
    let mut new = host_networked(&d1.ns, "fleet", &dir, &dir.join("new"));
    assert!(new.saw("ready", WAIT));
    assert!(old.saw("shutdown_requested", WAIT), "hand-over inside d1");
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(new.saw("predecessor_done", WAIT));
    assert!(
        !other.saw("shutdown_requested", Duration::from_secs(1)),
        "d2's instance is not disturbed"
    );
    assert!(other.is_running());
    assert!(
        !other.seen.iter().any(|e| e["event"] == "peer_up"),
        "d2 heard no peer: {:?}",
        other.seen
    );
    let leaked = heard_from(&observer);
    assert!(
        leaked.is_empty(),
        "supervisor0 traffic on the LAN: {leaked:?}"
    );

    // The observer does hear an instance that is not pinned (bridge mode joins eth0).
    let _unpinned = service(&d1.ns, "elsewhere", &dir, &dir.join("unpinned"), &[]);
    assert!(
        eventually(WAIT, || heard_from(&observer)
            .iter()
            .any(|from| from.ip() == std::net::IpAddr::V4(d1.lan_address))),
        "bridge mode on the same device is heard on the LAN"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A socket without the protocol's filter in `ns`, joined on the interface with
/// address `on`: counts the other scopes' datagrams that reach the namespace.
fn eavesdropper(ns: &Netns, on: Ipv4Addr) -> UdpSocket {
    let s = ns.group_socket(1538, on);
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn a_crowd_of_other_scopes_never_wakes_the_process() {
    require_netns!();
    let net = Containers::new();
    let (a, b, crowded) = (net.container(), net.container(), net.container());
    let dir = scratch("crowd");
    // Three real instances of other scopes at a 20 ms heartbeat, and the heartbeats
    // of 40 more other instances, 2,000 a second in all.
    let _others: Vec<Run> = (0..3)
        .map(|i| {
            let mark = dir.join(format!("other-{i}"));
            let uuid = format!("other-{i}");
            service(&crowded.ns, &uuid, &dir, &mark, &["--heartbeat", "20ms"])
        })
        .collect();
    let crowd = Crowd::start(&crowded.ns, crowded.address.unwrap(), 40, 2000);
    let ears = eavesdropper(&a.ns, a.address.unwrap());

    let mut old = service(&a.ns, "dev1", &dir, &dir.join("old"), &[]);
    assert!(old.saw("elected", WAIT));
    std::thread::sleep(Duration::from_millis(500));
    let mut new = service(&b.ns, "dev1", &dir, &dir.join("new"), &[]);
    assert!(new.saw("ready", WAIT));
    assert!(
        old.saw("shutdown_requested", WAIT),
        "hands over in the crowd"
    );
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(new.saw("predecessor_done", WAIT));

    let ours = handover_proto::wire::scope_id(b"dev1/svc");
    let mut buf = [0u8; 2048];
    let mut foreign_heard = 0;
    while let Ok((n, _)) = ears.recv_from(&mut buf) {
        foreign_heard += usize::from(handover_proto::wire::is_other_scope(&buf[..n], ours));
    }
    assert!(
        foreign_heard > 100 && crowd.sent() > 1000,
        "the crowd reached the namespace: {foreign_heard} heard, {} sent",
        crowd.sent()
    );
    let stats = old.wait_event("exit", WAIT).unwrap()["stats"].clone();
    assert_eq!(
        stats["dropped_foreign_scope"], 0,
        "no other scope's datagram reached the process: {stats}"
    );
    assert!(stats["accepted"].as_u64().unwrap() > 0, "{stats}");

    // Failover in the same crowd.
    let failover = ["--mode", "failover"];
    let (mark_a, mark_b) = (dir.join("fa"), dir.join("fb"));
    let mut active = service(&a.ns, "dev2", &dir, &mark_a, &failover);
    assert!(active.saw("elected", WAIT));
    let mut standby = service(&b.ns, "dev2", &dir, &mark_b, &failover);
    assert!(standby.saw("peer_up", WAIT));
    active.kill();
    assert!(standby.saw("elected", WAIT), "fails over in the crowd");
    assert!(eventually(WAIT, || running_service(&mark_b).is_some()));
    drop(crowd);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `handover status --json --scope SCOPE` in `ns`: its exit code and what it printed.
fn status(ns: &Netns, scope: &str) -> (Option<i32>, serde_json::Value) {
    status_with(ns, scope, &[])
}

/// The same with `extra` options.
fn status_with(ns: &Netns, scope: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = ns
        .command(handover_bin())
        .args(["status", "--json", "--wait", "1500ms", "--scope", scope])
        .args(extra)
        .output()
        .unwrap();
    let printed = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    (out.status.code(), printed)
}

#[test]
fn status_tells_who_is_in_charge() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    let dir = scratch("status");
    let (code, printed) = status(&b.ns, "dev1/svc");
    assert_eq!(code, Some(1), "nobody in charge yet: {printed}");

    let mut one = service(&a.ns, "dev1", &dir, &dir.join("one"), &[]);
    let id = one.wait_event("listening", WAIT).unwrap()["id"].clone();
    assert!(one.saw("elected", WAIT));
    let (code, printed) = status(&b.ns, "dev1/svc");
    assert_eq!(code, Some(0), "{printed}");
    assert_eq!(printed["active"], serde_json::json!([id]), "{printed}");

    // Two links that do not hear each other: an instance in charge behind each.
    let host = Netns::new();
    let (near, far) = (Netns::new(), Netns::new());
    host.link("eth0", "10.80.0.1/24", &near, "eth0", "10.80.0.2/24");
    host.link("eth1", "10.81.0.1/24", &far, "eth0", "10.81.0.2/24");
    let mut split: Vec<Run> = [&near, &far]
        .iter()
        .enumerate()
        .map(|(i, ns)| service(ns, "split", &dir, &dir.join(format!("split-{i}")), &[]))
        .collect();
    for run in &mut split {
        assert!(run.saw("elected", WAIT));
    }
    let (code, printed) = status(&host, "split/svc");
    assert_eq!(code, Some(2), "two in charge: {printed}");
    drop(split);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `handover watch --json --all-scopes ARGS` in `ns` for `time`, as balena runs it on
/// device `uuid`: the last line it printed for each peer id.
fn watch(
    ns: &Netns,
    uuid: &str,
    args: &[&str],
    time: Duration,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let out = ns
        .command("timeout")
        .args(["-s", "INT", &format!("{:.3}", time.as_secs_f64())])
        .arg(handover_bin())
        .args(["watch", "--json", "--all-scopes", "--heartbeat", "100ms"])
        .args(args)
        .env("BALENA_DEVICE_UUID", uuid)
        .output()
        .expect("handover watch");
    // `timeout` ends it with SIGINT, and reports 124.
    assert_eq!(
        out.status.code(),
        Some(124),
        "watch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "peer")
        .map(|v| (v["id"].as_str().unwrap_or_default().to_owned(), v))
        .collect()
}

#[test]
fn watch_names_scopes_and_tells_which_peers_are_authentic() {
    require_netns!();
    let net = Containers::new();
    let dir = scratch("watch-keys");
    let (key, other_key) = (dir.join("key"), dir.join("other-key"));
    std::fs::write(&key, "3c".repeat(32)).unwrap();
    std::fs::write(&other_key, "a5".repeat(32)).unwrap();
    let key_arg = |k: &Path| ["--key-file".to_owned(), k.to_str().unwrap().to_owned()];

    // The group's own service, keyed; another service without a key; an intruder in
    // the first service's scope with a key that is not the group's.
    let containers = [net.container(), net.container(), net.container()];
    let mut runs = Vec::new();
    for (i, (service, key)) in [
        ("api", Some(&key)),
        ("worker", None),
        ("api", Some(&other_key)),
    ]
    .into_iter()
    .enumerate()
    {
        let extra: Vec<String> = key.map(|k| key_arg(k).to_vec()).unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut cmd = command(
            &containers[i].ns,
            "dev1",
            &dir,
            &dir.join(i.to_string()),
            &extra,
        );
        cmd.env("BALENA_SERVICE_NAME", service);
        let mut run = Run::spawn(cmd);
        let id = run.wait_event("listening", WAIT).expect("listening")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        runs.push((run, id));
    }
    let watcher = net.container();
    let key_args = key_arg(&key);
    let seen = watch(
        &watcher.ns,
        "dev1",
        &[&key_args[0], &key_args[1]],
        Duration::from_millis(2500),
    );
    let peer = |i: usize| {
        seen.get(&runs[i].1)
            .unwrap_or_else(|| panic!("peer {i} not seen: {seen:?}"))
    };
    assert_eq!(peer(0)["scope_name"], "dev1/api");
    assert_eq!(peer(0)["authentic"], true, "tagged with the group's key");
    assert_eq!(peer(1)["scope_name"], "dev1/worker");
    assert_eq!(peer(1)["authentic"], false, "no tag");
    assert_eq!(peer(2)["scope_name"], "dev1/api");
    assert_eq!(peer(2)["authentic"], false, "tagged with another key");

    // Two instances of dev1/api say they are in charge; with the key, `status`
    // counts only the one that proves it belongs.
    let (code, printed) = status(&watcher.ns, "dev1/api");
    assert_eq!(code, Some(2), "without the key: {printed}");
    let (code, printed) = status_with(&watcher.ns, "dev1/api", &[&key_args[0], &key_args[1]]);
    assert_eq!(code, Some(0), "with the key: {printed}");
    assert_eq!(
        printed["active"],
        serde_json::json!([runs[0].1]),
        "{printed}"
    );

    // Without a key nothing is claimed about authenticity, and without the device's
    // UUID the balena scopes cannot be named.
    let seen = watch(&watcher.ns, "", &[], Duration::from_millis(1500));
    let first = &seen[&runs[0].1];
    assert_eq!(first["authentic"], serde_json::Value::Null, "{first}");
    assert_ne!(first["scope_name"], "dev1/api", "{first}");
    drop(runs);
    let _ = std::fs::remove_dir_all(&dir);
}
