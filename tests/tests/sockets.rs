//! `handover run --listen`: the listening sockets pass from each instance to the
//! next, so that upgrades under load refuse and reset nothing; the negative
//! controls show what the same load sees without it; services written for
//! systemd socket activation (Python, Node) take the sockets unchanged; and in
//! bridge networking the old instance forwards to the new one.
//!
//! Real processes, real TCP, a real HTTP client (ureq), one connection per request.
//! Needs root (namespaces) and python3 (node for its test); skips with the
//! reason otherwise, and fails under `CI=true`.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use handover_tests::load::{instance, python_generation, service, Load, Totals};
use handover_tests::measure::setting;
use handover_tests::netns::Netns;
use handover_tests::process::{scratch, Run};
use handover_tests::skip::not_installed;
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};
use rustix::process::{kill_process, Pid, Signal};

const WAIT: Duration = Duration::from_secs(20);
const PORT: u16 = 8080;

/// The Python service of generation `generation`, given the sockets.
fn python(ns: &Netns, scope: &str, dir: &Path, generation: u32) -> Run {
    python_generation(ns, scope, &format!("tcp:127.0.0.1:{PORT}"), dir, generation)
}

fn terminate(run: &mut Run) -> Option<i32> {
    let pid = Pid::from_raw(run.pid() as i32).unwrap();
    kill_process(pid, Signal::TERM).unwrap();
    run.wait(WAIT).and_then(|s| s.code())
}

/// The service pid `run` started.
fn service_pid(run: &mut Run) -> u32 {
    let started = run.wait_event("child_started", WAIT).expect("a service");
    started["pid"].as_u64().expect("pid") as u32
}

/// What process `pid` waits on, thread by thread, and its descriptors: for the
/// message when a service does not stop.
fn stuck(pid: u32) -> String {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| read(format!("{}/wchan", t.path().display())))
        .collect();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| Some(std::fs::read_link(fd.path()).ok()?.display().to_string()))
        .collect();
    format!("service {pid} waits in {threads:?} with {fds:?}")
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn url() -> String {
    format!("http://127.0.0.1:{PORT}/")
}

/// Generation 0 from `first`, then `count` upgrades, each by `upgrade(old,
/// generation)` returning the new instance once the old one is gone, under the
/// load of 8 clients: what they saw.
fn upgrades(
    host: &Netns,
    count: u32,
    first: Run,
    mut upgrade: impl FnMut(Run, u32) -> Run,
) -> (Totals, Run) {
    let mut current = first;
    assert!(current.saw("ready", WAIT), "generation 0 never got ready");
    std::thread::sleep(Duration::from_millis(300));
    let load = Load::start(host, &url(), 8);
    std::thread::sleep(Duration::from_millis(300));
    for generation in 1..=count {
        current = upgrade(current, generation);
    }
    std::thread::sleep(Duration::from_millis(300));
    (load.stop(), current)
}

#[test]
fn a_hundred_upgrades_under_load_refuse_and_reset_nothing() {
    require_netns!();
    require!(not_installed("python3"));
    // Host networking: every instance in the host's namespace, as systemd services
    // or balena containers with `network_mode: host` run.
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-upgrades");
    let count = setting("HANDOVER_UPGRADES", 100) as u32;
    let mut descriptors = Vec::new();
    let mut services = Vec::new();
    let first = python(&host.ns, "upgrades", &dir, 0);
    let (totals, mut last) = upgrades(&host.ns, count, first, |mut old, generation| {
        let mut new = python(&host.ns, "upgrades", &dir, generation);
        // The newcomer owns the sockets once in charge; the old one has stopped.
        assert!(
            new.saw("sockets_owned", WAIT),
            "generation {generation} never owned the sockets"
        );
        let sockets = new.wait_event("sockets", WAIT).unwrap();
        assert_eq!(sockets["inherited"][0], "http", "{sockets}");
        let pid = service_pid(&mut old);
        let exited = old.wait(WAIT).and_then(|s| s.code());
        assert_eq!(
            exited,
            Some(0),
            "generation {}: {}",
            generation - 1,
            stuck(pid)
        );
        services.push(pid);
        descriptors.push(open_descriptors(new.pid()));
        new
    });
    services.push(service_pid(&mut last));
    assert_eq!(terminate(&mut last), Some(0));

    eprintln!("{count} upgrades under load: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    for generation in 0..=count {
        assert!(
            totals.by_generation.contains_key(&generation),
            "generation {generation} served nothing: {:?}",
            totals.by_generation
        );
    }
    // Each instance holds as many descriptors as the first did: none leak from one
    // to the next.
    assert!(
        descriptors.iter().all(|&n| n == descriptors[0]),
        "descriptors of each new instance: {descriptors:?}"
    );
    // No service outlived its instance.
    for pid in services {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "service {pid} is still running"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn negative_control_stopping_then_starting_refuses_connections() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-kill-then-start");
    let first = python(&host.ns, "kill-then-start", &dir, 0);
    let (totals, mut last) = upgrades(&host.ns, 5, first, |mut old, generation| {
        // The old instance stops before the new one starts: nobody to take the
        // sockets from.
        assert_eq!(terminate(&mut old), Some(0));
        let mut new = python(&host.ns, "kill-then-start", &dir, generation);
        assert!(new.saw("ready", WAIT));
        new
    });
    terminate(&mut last);
    eprintln!("stop, then start, 5 times under load: {totals}");
    assert!(totals.refused > 0, "{totals}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn negative_control_rebinding_with_so_reuseport_resets_connections() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let script = service("generation.py");
    let port = PORT.to_string();
    // Each service binds the port itself with SO_REUSEPORT: a socket, and a queue,
    // per generation.
    let rebinding = |generation: u32| {
        let generation = generation.to_string();
        let service = [
            "python3",
            script.to_str().unwrap(),
            &generation,
            "--reuseport",
            &port,
        ];
        instance(&host.ns, "reuseport", &[], &service)
    };
    let (totals, mut last) = upgrades(&host.ns, 20, rebinding(0), |mut old, generation| {
        let mut new = rebinding(generation);
        assert!(new.saw("ready", WAIT));
        assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
        new
    });
    terminate(&mut last);
    eprintln!("20 upgrades rebinding with SO_REUSEPORT under load: {totals}");
    assert!(totals.failed() > 0, "{totals}");
}

#[test]
fn python_and_node_services_take_the_sockets_unchanged() {
    require_netns!();
    require!(not_installed("python3"));
    require!(not_installed("node"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-languages");
    let ready = dir.join("node-ready");
    let listen = format!("http=tcp:127.0.0.1:{PORT}");
    let sockets = ["--listen", &listen, "--sockets-dir", dir.to_str().unwrap()];
    let node = service("generation.js");
    let ready_cmd = format!("test -e {}", ready.display());
    let node_options = [&sockets[..], &["--ready-cmd", &ready_cmd]].concat();
    let first = python(&host.ns, "languages", &dir, 0);
    let (totals, mut last) = upgrades(&host.ns, 2, first, |mut old, generation| {
        let mut new = match generation {
            1 => instance(
                &host.ns,
                "languages",
                &node_options,
                &["node", node.to_str().unwrap(), "1", ready.to_str().unwrap()],
            ),
            _ => python(&host.ns, "languages", &dir, generation),
        };
        assert!(new.saw("sockets_owned", WAIT), "{:?}", new.seen);
        assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
        new
    });
    assert_eq!(terminate(&mut last), Some(0));
    eprintln!("Python, then Node, then Python: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert_eq!(
        totals.by_generation.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{totals}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_bridge_networking_the_old_instance_forwards_to_the_new_one() {
    require_netns!();
    require!(not_installed("python3"));
    // balena's default: the old and the new container each in a namespace of its
    // own on a bridge, and clients that still resolve the old one's address. The
    // sockets directory is shared, as a volume would be: the newcomer finds the
    // owner in another namespace, and binds its own.
    let net = Containers::new();
    let (old_host, new_host, client) = (net.container(), net.container(), net.container());
    let dir = scratch("sockets-bridge");
    let start = |host: &Netns, generation: u32| {
        let script = service("generation.py");
        let options = [
            "--listen",
            "http=tcp:0.0.0.0:8080",
            "--sockets-dir",
            dir.to_str().unwrap(),
        ];
        let generation = generation.to_string();
        instance(
            host,
            "bridge",
            &options,
            &["python3", script.to_str().unwrap(), &generation],
        )
    };
    let mut old = start(&old_host.ns, 0);
    assert!(old.saw("sockets_owned", WAIT), "{:?}", old.seen);
    let old_address = format!("http://{}:{PORT}/", old_host.address.unwrap());
    let load = Load::start(&client.ns, &old_address, 8);
    std::thread::sleep(Duration::from_millis(300));

    let mut new = start(&new_host.ns, 1);
    let sockets = new.wait_event("sockets", WAIT).unwrap();
    assert_eq!(sockets["bound"][0], "http", "{sockets}");
    let forwarding = old
        .wait_event("forwarding", WAIT)
        .expect("the old instance forwards");
    assert_eq!(
        forwarding["to"],
        format!("{}:{PORT}", new_host.address.unwrap()),
        "{forwarding}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let totals = load.stop();
    // The supervisor stops the old container.
    assert_eq!(terminate(&mut old), Some(0));
    assert_eq!(terminate(&mut new), Some(0));

    eprintln!("requests to the old address through a hand-over in bridge networking: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert!(
        totals.by_generation.get(&0).is_some_and(|&n| n > 0),
        "{totals}"
    );
    assert!(
        totals.by_generation.get(&1).is_some_and(|&n| n > 100),
        "the new generation answered through the old address: {:?}",
        totals.by_generation
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--listen` and `--sockets-dir` options for the failure tests.
fn listen_options(dir: &Path) -> Vec<String> {
    let listen = format!("http=tcp:127.0.0.1:{PORT}");
    ["--listen", &listen, "--sockets-dir", dir.to_str().unwrap()]
        .map(str::to_owned)
        .to_vec()
}

#[test]
fn a_newcomer_that_crashes_or_never_gets_ready_leaves_the_owner_serving() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-failures");
    let options = listen_options(&dir);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let mut owner = python(&host.ns, "failures", &dir, 0);
    assert!(owner.saw("sockets_owned", WAIT));
    let load = Load::start(&host.ns, &url(), 4);

    // A newcomer whose service dies before it is ready.
    let mut crashing = instance(&host.ns, "failures", &options, &["sh", "-c", "exit 3"]);
    assert_eq!(crashing.wait(WAIT).and_then(|s| s.code()), Some(3));
    // One whose service never gets ready.
    let hanging_options = [&options[..], &["--ready-timeout", "1s"]].concat();
    let mut hanging = instance(&host.ns, "failures", &hanging_options, &["sleep", "1000"]);
    assert!(hanging.saw("ready_timeout", WAIT));
    assert_eq!(hanging.wait(WAIT).and_then(|s| s.code()), Some(1));
    assert!(owner.is_running(), "the owner kept serving");

    // The owner still owns the sockets: the next instance inherits them from it.
    let mut next = python(&host.ns, "failures", &dir, 1);
    assert!(next.saw("sockets_owned", WAIT));
    let sockets = next.wait_event("sockets", WAIT).unwrap();
    assert_eq!(sockets["inherited"][0], "http", "{sockets}");
    assert_eq!(sockets["from"], "previous instance", "{sockets}");
    assert_eq!(owner.wait(WAIT).and_then(|s| s.code()), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.stop();
    assert_eq!(terminate(&mut next), Some(0));
    eprintln!("through a crashing and a hanging newcomer: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert_eq!(totals.by_generation.len(), 2, "{totals}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_newcomer_whose_predecessor_is_killed_mid_transfer_binds_fresh() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-killed-owner");
    let mut owner = python(&host.ns, "killed-owner", &dir, 0);
    assert!(owner.saw("sockets_owned", WAIT));

    // The owner freezes (its service goes on serving), a newcomer asks it for the
    // sockets, and the owner is killed before it answers.
    let pid = Pid::from_raw(owner.pid() as i32).unwrap();
    kill_process(pid, Signal::STOP).unwrap();
    let mut new = python(&host.ns, "killed-owner", &dir, 1);
    std::thread::sleep(Duration::from_millis(300));
    kill_process(pid, Signal::KILL).unwrap();
    assert_eq!(owner.wait(WAIT).and_then(|s| s.signal()), Some(9));

    // The newcomer binds the address afresh, says what may have been lost, and is
    // the one instance serving.
    let sockets = new.wait_event("sockets", WAIT).expect("sockets");
    assert_eq!(sockets["bound"][0], "http", "{sockets}");
    let warned = new.seen.iter().any(|e| {
        e["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("may have been lost"))
    });
    assert!(warned, "{:?}", new.seen);
    assert!(new.saw("sockets_owned", WAIT));
    let load = Load::start(&host.ns, &url(), 4);
    std::thread::sleep(Duration::from_millis(500));
    let totals = load.stop();
    assert_eq!(terminate(&mut new), Some(0));
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert_eq!(
        totals.by_generation.keys().copied().collect::<Vec<_>>(),
        [1],
        "{totals}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_newcomers_at_once_end_with_exactly_one_owner() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-two-newcomers");
    let mut owner = python(&host.ns, "two-newcomers", &dir, 0);
    assert!(owner.saw("sockets_owned", WAIT));
    let load = Load::start(&host.ns, &url(), 8);
    std::thread::sleep(Duration::from_millis(200));

    // Both start together; the directory's lock lets one take over at a time.
    let mut newcomers = [
        python(&host.ns, "two-newcomers", &dir, 1),
        python(&host.ns, "two-newcomers", &dir, 2),
    ];
    assert_eq!(owner.wait(WAIT).and_then(|s| s.code()), Some(0));
    let one_left = handover_tests::process::eventually(WAIT, || {
        newcomers
            .iter_mut()
            .map(Run::is_running)
            .filter(|&r| r)
            .count()
            == 1
    });
    assert!(one_left, "not exactly one instance left");
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.stop();
    let [mut first, second] = newcomers;
    let (mut running, mut gone) = match first.is_running() {
        true => (first, second),
        false => (second, first),
    };
    assert_eq!(gone.wait(WAIT).and_then(|s| s.code()), Some(0));
    let owns = running.saw("sockets_owned", WAIT);
    gone.collect(Duration::from_millis(100));
    // One of them waited for the other to take over first.
    let waited = [&running, &gone].iter().any(|run| {
        run.seen.iter().any(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("another instance is taking over"))
        })
    });
    assert!(
        waited,
        "one newcomer waited for the directory's lock: {:?} {:?}",
        running.seen, gone.seen
    );
    let events = |run: &Run| -> Vec<String> {
        run.seen
            .iter()
            .map(|e| match e["event"].as_str() {
                Some(name) => name.to_owned(),
                None => format!("log {}", e["fields"]["message"]),
            })
            .collect()
    };
    assert!(
        owns,
        "the survivor owns the sockets: {:?}; the other: {:?}",
        events(&running),
        events(&gone)
    );
    assert_eq!(terminate(&mut running), Some(0));
    eprintln!("two newcomers at once: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sockets_systemd_passed_to_handover_are_the_ones_passed_on() {
    require_netns!();
    require!(not_installed("python3"));
    require!(not_installed("systemd-socket-activate"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-systemd");
    let listen = format!("http=tcp:127.0.0.1:{PORT}");
    // systemd-socket-activate listens as a .socket unit would and starts
    // `handover` on the first connection, with the socket as descriptor 3.
    let mut activated = {
        let script = service("generation.py");
        let mut cmd = host.ns.command("systemd-socket-activate");
        cmd.args(["--listen", &format!("127.0.0.1:{PORT}"), "--fdname=http"])
            .arg(handover_tests::process::handover_bin())
            .args(["--log-format", "json", "run", "--scope", "systemd"])
            .args(["--listen", &listen, "--sockets-dir", dir.to_str().unwrap()])
            .args(["--", "python3", script.to_str().unwrap(), "0"]);
        Run::spawn(cmd)
    };
    std::thread::sleep(Duration::from_millis(300));
    let load = Load::start(&host.ns, &url(), 4);
    let sockets = activated
        .wait_event("sockets", WAIT)
        .expect("handover started");
    assert_eq!(sockets["from"], "systemd", "{sockets}");
    assert_eq!(sockets["inherited"][0], "http", "{sockets}");
    assert!(activated.saw("sockets_owned", WAIT));

    // The next instance, started as usual, takes that same socket.
    let mut next = python(&host.ns, "systemd", &dir, 1);
    assert!(next.saw("sockets_owned", WAIT));
    let sockets = next.wait_event("sockets", WAIT).unwrap();
    assert_eq!(sockets["from"], "previous instance", "{sockets}");
    assert_eq!(activated.wait(WAIT).and_then(|s| s.code()), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.stop();
    assert_eq!(terminate(&mut next), Some(0));
    eprintln!("from systemd's socket to the next instance: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert_eq!(totals.by_generation.len(), 2, "{totals}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A service that checks the descriptors it was given (a Unix stream listener
/// named `admin`, then a UDP socket named `dns`), answers one datagram on `dns`
/// with its generation, and says READY=1.
const CHECKS_ITS_SOCKETS: &str = r#"
import os, socket, sys
assert os.environ["LISTEN_PID"] == str(os.getpid())
assert os.environ["LISTEN_FDS"] == "2", os.environ["LISTEN_FDS"]
assert os.environ["LISTEN_FDNAMES"] == "admin:dns", os.environ["LISTEN_FDNAMES"]
admin, dns = socket.socket(fileno=3), socket.socket(fileno=4)
assert admin.family == socket.AF_UNIX and admin.type == socket.SOCK_STREAM
assert dns.family == socket.AF_INET and dns.type == socket.SOCK_DGRAM
notify = os.environ["NOTIFY_SOCKET"]
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(b"READY=1", "\0" + notify[1:] if notify.startswith("@") else notify)
while True:
    data, peer = dns.recvfrom(512)
    dns.sendto(sys.argv[1].encode(), peer)
"#;

#[test]
fn unix_and_udp_sockets_are_passed_on_too() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-kinds");
    let script = dir.join("service.py");
    std::fs::write(&script, CHECKS_ITS_SOCKETS).unwrap();
    let admin = format!("admin=unix:{}", dir.join("admin.sock").display());
    let options = [
        "--listen",
        &admin,
        "--listen",
        "dns=udp:127.0.0.1:5353",
        "--sockets-dir",
        dir.to_str().unwrap(),
    ];
    let start = |generation: &str| {
        let service = ["python3", script.to_str().unwrap(), generation];
        instance(&host.ns, "kinds", &options, &service)
    };
    let ask = || {
        host.ns.enter(|| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(b"?", "127.0.0.1:5353").unwrap();
            let mut buf = [0u8; 16];
            let n = s.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    };
    let mut first = start("1");
    assert!(first.saw("sockets_owned", WAIT), "{:?}", first.seen);
    assert_eq!(ask(), "1");
    let mut second = start("2");
    assert!(second.saw("sockets_owned", WAIT), "{:?}", second.seen);
    let sockets = second.wait_event("sockets", WAIT).unwrap();
    assert_eq!(
        sockets["inherited"],
        serde_json::json!(["admin", "dns"]),
        "{sockets}"
    );
    assert_eq!(first.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert_eq!(ask(), "2");
    // The service dies of the SIGTERM passed on to it (143, as a shell says).
    assert!(terminate(&mut second).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The coordination files as a local user finds them: the lock is this user's
/// alone (0600, even when an older version left it 0644 in a 0755 directory), and
/// a newcomer waiting for it stops at once on SIGTERM.
#[test]
fn the_lock_is_private_and_waiting_for_it_ends_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    require_netns!();
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-lock");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stem = handover_std::names::socket_stem(dir.as_os_str().len(), "lock").unwrap();
    let lock = dir.join(format!("{stem}.lock"));
    std::fs::write(&lock, "").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Another upgrade holds the lock.
    let held = std::fs::File::open(&lock).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let options = listen_options(&dir);
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let mut waiting = instance(&host.ns, "lock", &options, &["sleep", "1000"]);
    assert!(
        handover_tests::process::eventually(WAIT, || {
            std::fs::metadata(&lock).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o600)
        }),
        "the lock file is made private"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiting.is_running(), "it waits for the lock");
    assert!(!waiting.seen.iter().any(|e| e["event"] == "child_started"));
    let asked = std::time::Instant::now();
    assert_eq!(terminate(&mut waiting), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "stopped waiting on SIGTERM after {:?}",
        asked.elapsed()
    );
    assert!(waiting.saw("stopped_waiting", WAIT));
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A local client that connects to the owner's socket and says nothing holds
/// neither the owner's protocol nor the next upgrade: the newcomer inherits the
/// sockets as usual.
#[test]
fn a_silent_client_holds_neither_the_owner_nor_the_next_upgrade() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-silent");
    let mut owner = python(&host.ns, "silent", &dir, 0);
    assert!(owner.saw("sockets_owned", WAIT));
    let stem = handover_std::names::socket_stem(dir.as_os_str().len(), "silent").unwrap();
    let silent: Vec<std::os::unix::net::UnixStream> = (0..3)
        .map(|_| std::os::unix::net::UnixStream::connect(dir.join(format!("{stem}.sock"))).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = std::time::Instant::now();
    let mut next = python(&host.ns, "silent", &dir, 1);
    let sockets = next.wait_event("sockets", WAIT).unwrap();
    assert_eq!(sockets["from"], "previous instance", "{sockets}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the newcomer waited {:?} behind silent clients",
        started.elapsed()
    );
    assert!(next.saw("sockets_owned", WAIT));
    assert_eq!(owner.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert_eq!(terminate(&mut next), Some(0));
    drop(silent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The owner out of descriptors (EMFILE): a newcomer's connection waits in the
/// queue, and the owner backs off instead of spinning a core on `accept`.
#[test]
fn an_owner_out_of_descriptors_does_not_spin() {
    use rustix::process::{prlimit, Resource, Rlimit};
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("sockets-emfile");
    let mut owner = python(&host.ns, "emfile", &dir, 0);
    assert!(owner.saw("sockets_owned", WAIT));
    let pid = Pid::from_raw(owner.pid() as i32).unwrap();
    // No descriptor left (the limit below those open): the next `accept` fails
    // with EMFILE.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", owner.pid())).unwrap();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok());
    let none_left = Rlimit {
        current: Some(3),
        maximum: hard,
    };
    let before = prlimit(Some(pid), Resource::Nofile, none_left).unwrap();
    let stem = handover_std::names::socket_stem(dir.as_os_str().len(), "emfile").unwrap();
    let _waiting =
        std::os::unix::net::UnixStream::connect(dir.join(format!("{stem}.sock"))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let cpu = handover_tests::measure::cpu_ns(owner.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = handover_tests::measure::cpu_ns(owner.pid()) - cpu;
    prlimit(Some(pid), Resource::Nofile, before).unwrap();
    assert!(
        used < 200_000_000,
        "the owner used {} ms of CPU in 1 s out of descriptors",
        used / 1_000_000
    );
    assert!(owner.is_running());
    assert_eq!(terminate(&mut owner), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
