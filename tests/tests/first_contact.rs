//! What a new user meets first, with no option set: the names balena gives (a
//! 62-character device UUID, service names of 40 and 63 characters, a coordination
//! directory as long as balena's), and the two executables `cargo install` puts
//! side by side.
//!
//! Hand-overs without `--listen` run each instance in a container of its own on a
//! bridge (balena's default); with `--listen`, in one namespace (host networking,
//! where sockets can pass). Needs root (namespaces) and python3; skips with the
//! reason otherwise, and fails under `CI=true`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handover_std::names::wire_name;
use handover_tests::load::{service, Load};
use handover_tests::netns::Netns;
use handover_tests::process::{fake_service, handover_bin, scratch, Run};
use handover_tests::skip::not_installed;
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(20);

/// An older device's UUID: 62 hex digits.
const UUID: &str = "8d1b4c9e2f7a6b3c0d5e4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
/// Service names as compose files have them.
const SERVICE_40: &str = "environmental-sensor-aggregation-service";
const SERVICE_63: &str = "environmental-sensor-aggregation-service-for-the-north-wing-xyz";
const _: () = assert!(UUID.len() == 62 && SERVICE_40.len() == 40 && SERVICE_63.len() == 63);

/// `handover --log-format json run OPTIONS -- SERVICE` in `ns`, with the
/// environment balena gives a container of `service`.
fn balena(ns: &Netns, service: &str, complete: &Path, options: &[&str], argv: &[&str]) -> Run {
    let mut cmd = ns.command(handover_bin());
    cmd.env("BALENA", "1")
        .env("BALENA_DEVICE_UUID", UUID)
        .env("BALENA_SERVICE_NAME", service)
        .env("BALENA_SERVICE_HANDOVER_COMPLETE_PATH", complete)
        .env_remove("HANDOVER_SCOPE")
        .args(["--log-format", "json", "run"])
        .args(options)
        .arg("--")
        .args(argv);
    Run::spawn(cmd)
}

/// The fake service, ready over `NOTIFY_SOCKET`, recording its life in `mark`.
fn fake(mark: &Path) -> [String; 2] {
    [
        fake_service().display().to_string(),
        mark.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_63_character_service_name_hands_over_to_its_next_instance() {
    require_netns!();
    let net = Containers::new();
    let (old_c, new_c) = (net.container(), net.container());
    let dir = scratch("first-contact-long-name");
    let complete = dir.join("handover-complete");
    let old_service = fake(&dir.join("old"));
    let mut old = balena(&old_c.ns, SERVICE_63, &complete, &[], &strs(&old_service));
    assert!(old.saw("elected", WAIT), "{:?}", old.seen);

    let new_service = fake(&dir.join("new"));
    let mut new = balena(&new_c.ns, SERVICE_63, &complete, &[], &strs(&new_service));
    // Peers see the name shortened, the same way by every instance.
    let peer = old
        .wait_event("peer_up", WAIT)
        .expect("the new one is heard");
    assert_eq!(peer["name"], wire_name(SERVICE_63).as_ref(), "{peer}");
    assert!(old.saw("shutdown_requested", WAIT), "{:?}", old.seen);
    assert_eq!(old.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(complete.is_file());
    assert!(new.saw("predecessor_done", WAIT), "{:?}", new.seen);
    new.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_services_whose_names_share_their_first_32_bytes_stay_apart() {
    require_netns!();
    let (east, west) = (
        format!("{SERVICE_40}-east-wing"),
        format!("{SERVICE_40}-west-wing"),
    );
    assert_eq!(east[..32], west[..32]);
    let net = Containers::new();
    let (east_c, west_c) = (net.container(), net.container());
    let dir = scratch("first-contact-shared-prefix");
    let east_service = fake(&dir.join("east"));
    let west_service = fake(&dir.join("west"));
    let complete = dir.join("handover-complete");
    let mut a = balena(&east_c.ns, &east, &complete, &[], &strs(&east_service));
    assert!(a.saw("elected", WAIT), "{:?}", a.seen);
    let mut b = balena(&west_c.ns, &west, &complete, &[], &strs(&west_service));
    assert!(b.saw("elected", WAIT), "{:?}", b.seen);
    // Three heartbeats: a claim of one scope would have stopped the other by now.
    assert!(!a.saw("shutdown_requested", Duration::from_secs(3)));
    assert!(a.is_running() && b.is_running());
    assert!(
        !a.seen
            .iter()
            .chain(&b.seen)
            .any(|e| e["event"] == "peer_up"),
        "one heard the other as a peer of its scope: {:?} {:?}",
        a.seen,
        b.seen
    );
    assert!(!complete.exists());
    a.kill();
    b.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn balenas_longest_names_hand_over_with_listen_under_load() {
    require_netns!();
    require!(not_installed("python3"));
    let net = Containers::new();
    let host = net.container();
    let scratch_dir = scratch("first-contact-listen");
    // As long as balena's `/tmp/balena/handover-sockets`, and longer: the scope's
    // readable file name would not fit in a socket path.
    let dir = scratch_dir.join("balena/handover-sockets");
    assert!(dir.as_os_str().len() >= "/tmp/balena/handover-sockets".len());
    let complete = scratch_dir.join("handover-complete");
    let script = service("generation.py").display().to_string();
    let start = |generation: u32| {
        let options = [
            "--listen",
            "http=tcp:127.0.0.1:8080",
            "--sockets-dir",
            dir.to_str().unwrap(),
        ];
        let generation = generation.to_string();
        balena(
            &host.ns,
            SERVICE_40,
            &complete,
            &options,
            &["python3", &script, &generation],
        )
    };
    let mut current = start(0);
    assert!(current.saw("sockets_owned", WAIT), "{:?}", current.seen);
    let load = Load::start(&host.ns, "http://127.0.0.1:8080/", 8);
    std::thread::sleep(Duration::from_millis(300));
    for generation in 1..=2 {
        let mut new = start(generation);
        assert!(
            new.saw("sockets_owned", WAIT),
            "generation {generation}: {:?}",
            new.seen
        );
        assert_eq!(
            current.wait(WAIT).and_then(|s| s.code()),
            Some(0),
            "generation {} exits 0 once superseded: {:?}",
            generation - 1,
            current.seen
        );
        current = new;
    }
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.stop();
    current.kill();
    eprintln!("3 generations with balena's longest names: {totals}");
    assert_eq!(totals.failed(), 0, "{totals}: {:?}", totals.failures);
    assert_eq!(
        totals.by_generation.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{totals}"
    );
    let _ = std::fs::remove_dir_all(&scratch_dir);
}

#[test]
fn a_sockets_dir_too_long_for_any_socket_is_refused_at_start_naming_the_option() {
    let dir = scratch("first-contact-long-dir");
    let long = dir.join("d".repeat(96));
    let out = Command::new(handover_bin())
        .env("BALENA_DEVICE_UUID", UUID)
        .env("BALENA_SERVICE_NAME", SERVICE_40)
        .env_remove("HANDOVER_SCOPE")
        .args(["run", "--listen", "http=tcp:127.0.0.1:0", "--sockets-dir"])
        .arg(&long)
        .args(["--", "true"])
        .output()
        .expect("handover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--sockets-dir"), "{stderr}");
    assert!(stderr.contains("too long"), "{stderr}");
    assert!(
        !stderr.contains("elected"),
        "refused before any election: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A part of etcd's client that any build of it holds: the path of a gRPC call.
const ETCD_CLIENT: &[u8] = b"/etcdserverpb.KV/Range";

fn holds(binary: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(binary).expect("binary");
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn handover_links_no_etcd_client_and_handover_etcd_does() {
    let handover = handover_bin();
    let etcd = handover.with_file_name("handover-etcd");
    assert!(
        !holds(&handover, ETCD_CLIENT),
        "{} links etcd's client: a LAN instance would page it in",
        handover.display()
    );
    assert!(holds(&etcd, ETCD_CLIENT), "{}", etcd.display());
}

#[test]
fn election_etcd_without_handover_etcd_says_what_is_missing() {
    let dir = scratch("first-contact-no-sibling");
    let alone = dir.join("handover");
    std::fs::copy(handover_bin(), &alone).expect("copy");
    let out = Command::new(&alone)
        .env("PATH", "/usr/bin:/bin")
        .args(["run", "--election", "etcd", "--mode", "failover"])
        .args(["--etcd-endpoints", "http://127.0.0.1:1", "--", "true"])
        .output()
        .expect("handover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stderr.contains("handover-etcd"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
