//! `handover run --mode failover --election etcd` against real etcd clusters
//! (Debian's etcd-server, members started by the test in a container of a bridge
//! network, fast raft timings), each candidate in a container of its own: one
//! leader, immediate takeover when it leaves, takeover within the TTL when it is
//! killed, fencing tokens that grow, and no split brain when etcd itself fails.
//!
//! Needs root (namespaces) and the etcd binary; skips with the reason otherwise,
//! and fails under `CI=true`.

use std::time::Duration;

use base64::Engine as _;
use handover_tests::etcd::{candidate_in, candidate_with, etcd_bin, Cluster, Grant};
use handover_tests::measure::t_us;
use handover_tests::process::{monotonic_us, scratch, Run};
use handover_tests::topology::{Container, Containers};
use handover_tests::{require, require_netns};
use rustix::process::Signal;

const WAIT: Duration = Duration::from_secs(10);

/// etcd in one container of a bridge network and each candidate in a container
/// of its own: hosts that reach etcd over the network, as users run them.
struct Site {
    cluster: Cluster,
    hosts: Vec<Container>,
    net: Containers,
}

impl Site {
    /// A network with `members` etcd members on one of its containers.
    fn start(bin: std::path::PathBuf, members: usize) -> Self {
        let net = Containers::new();
        let cluster = Cluster::start_in(bin, members, net.container());
        Site {
            cluster,
            hosts: Vec::new(),
            net,
        }
    }

    /// A candidate on a new host, with lease TTL `ttl`, around a service that
    /// appends the fencing token it was given to `tokens`.
    fn candidate(&mut self, ttl: &str, tokens: &std::path::Path) -> Run {
        let script = format!(
            "echo \"$HANDOVER_FENCING_TOKEN\" >> {}; exec sleep 1000",
            tokens.display()
        );
        let host = self.net.container();
        let run = candidate_in(&host.ns, &self.cluster, ttl, &["sh", "-c", &script]);
        self.hosts.push(host);
        run
    }
}

/// The token of `run`'s next term.
fn term(run: &mut Run) -> u64 {
    let term = run.next_event("term", WAIT).expect("a term");
    assert!(run.saw("elected", WAIT), "elected after its term");
    term["token"].as_u64().expect("token")
}

/// What `run` said, one short line per event or log message.
fn summary(run: &Run) -> Vec<String> {
    run.seen
        .iter()
        .map(|e| {
            let t = e["t_us"].as_u64().unwrap_or(0) / 1000;
            match e["event"].as_str() {
                Some(name) => format!("{t} {name}"),
                None => format!("log {}", e["fields"]["message"]),
            }
        })
        .collect()
}

fn etcd() -> Result<std::path::PathBuf, String> {
    etcd_bin()
}

#[test]
fn one_leader_takes_over_at_once_on_leave_and_within_the_ttl_on_kill() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 1);
    let dir = scratch("etcd-one-leader");
    let tokens = dir.join("tokens");

    let mut a = site.candidate("2s", &tokens);
    let token_a = term(&mut a);
    let mut b = site.candidate("2s", &tokens);
    assert!(b.saw("ready", WAIT), "b stands by");
    assert!(!b.saw("elected", Duration::from_secs(1)), "one leader");
    assert!(
        !b.saw("child_started", Duration::ZERO),
        "the standby's service waits"
    );

    // a leaves (SIGTERM, as a supervisor stops it): it resigns, b leads at once.
    let left = monotonic_us();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(a.pid() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let token_b = term(&mut b);
    let took = t_us(&mut b, "elected") - left;
    assert!(took < 1_000_000, "takeover after a resign took {took} µs");
    assert_eq!(a.wait(WAIT).and_then(|s| s.code()), Some(0));
    assert!(token_b > token_a, "tokens grow: {token_a} then {token_b}");

    // b is killed: c leads once b's lease expires, within TTL + 1 s.
    let mut c = site.candidate("2s", &tokens);
    assert!(c.saw("ready", WAIT));
    let killed = monotonic_us();
    b.kill();
    let token_c = term(&mut c);
    let took = t_us(&mut c, "elected") - killed;
    assert!(took < 3_000_000, "takeover after kill -9 took {took} µs");
    assert!(token_c > token_b, "tokens grow: {token_b} then {token_c}");

    // Each service got its term's token.
    assert!(c.saw("child_started", WAIT));
    let seen = || std::fs::read_to_string(&tokens).unwrap_or_default();
    assert!(
        handover_tests::process::eventually(WAIT, || seen().lines().count() == 3),
        "{}",
        seen()
    );
    let given: Vec<u64> = seen().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(given, vec![token_a, token_b, token_c]);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Leadership intervals `[elected, demoted)` of `run` on the monotonic clock, from
/// its events so far (an open interval ends at `now`).
fn terms(run: &Run, now: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut since = None;
    for e in &run.seen {
        let t = e["t_us"].as_u64().unwrap_or(0);
        match e["event"].as_str() {
            Some("elected") => since = Some(t),
            Some("demoted") => {
                if let Some(s) = since.take() {
                    out.push((s, t));
                }
            }
            _ => {}
        }
    }
    out.extend(since.map(|s| (s, now)));
    out
}

#[test]
fn a_raft_leader_crash_does_not_change_the_election_leader() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 3);
    let dir = scratch("etcd-raft-crash");
    let tokens = dir.join("tokens");
    let mut a = site.candidate("5s", &tokens);
    term(&mut a);
    let mut b = site.candidate("5s", &tokens);
    assert!(b.saw("ready", WAIT));

    let raft = site.cluster.raft_leader().expect("a raft leader");
    site.cluster.kill(raft);
    // Raft elects a new leader in about 0.75 s and extends every lease: with the
    // default TTL the term goes on, with no second election.
    assert!(!a.saw("demoted", Duration::from_secs(4)), "{:?}", a.seen);
    assert!(!b.saw("elected", Duration::ZERO), "{:?}", b.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quorum_loss_never_gives_two_leaders_and_recovery_gives_one() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 3);
    let dir = scratch("etcd-quorum");
    let tokens = dir.join("tokens");
    let mut a = site.candidate("2s", &tokens);
    term(&mut a);
    let mut b = site.candidate("2s", &tokens);
    assert!(b.saw("ready", WAIT));

    // Two of three members frozen for longer than the TTL: no quorum, no renewal.
    site.cluster.signal(1, Signal::STOP);
    site.cluster.signal(2, Signal::STOP);
    assert!(
        a.saw("demoted", Duration::from_secs(4)),
        "the leader demotes itself"
    );
    std::thread::sleep(Duration::from_secs(1));
    site.cluster.signal(1, Signal::CONT);
    site.cluster.signal(2, Signal::CONT);

    let recovered = handover_tests::process::eventually(Duration::from_secs(15), || {
        a.collect(Duration::from_millis(50));
        b.collect(Duration::from_millis(50));
        let now = monotonic_us();
        let leading = |r: &Run| terms(r, now).last().is_some_and(|&(_, end)| end == now);
        leading(&a) || leading(&b)
    });
    assert!(
        recovered,
        "a leader after recovery: a {:?} b {:?}",
        summary(&a),
        summary(&b)
    );
    a.collect(Duration::from_secs(1));
    b.collect(Duration::ZERO);
    let now = monotonic_us();
    let (ta, tb) = (terms(&a, now), terms(&b, now));
    for x in &ta {
        for y in &tb {
            assert!(
                x.1 <= y.0 || y.1 <= x.0,
                "overlapping terms: a {ta:?} b {tb:?}"
            );
        }
    }
    let open = |t: &[(u64, u64)]| t.last().is_some_and(|&(_, end)| end == now);
    assert_eq!(
        open(&ta) as u8 + open(&tb) as u8,
        1,
        "exactly one leader: a {ta:?} b {tb:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_leader_cut_off_from_etcd_stops_before_another_is_elected() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    // etcd in one container, each candidate in another, on one bridge.
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    let (near, far) = (net.container(), net.container());
    let service = ["sleep", "1000"];
    let mut a = candidate_in(&near.ns, &cluster, "2s", &service);
    assert!(a.saw("elected", WAIT), "{:?}", summary(&a));
    let mut b = candidate_in(&far.ns, &cluster, "2s", &service);
    assert!(b.saw("ready", WAIT));
    assert!(b.saw("leader_changed", WAIT));

    // Everything a sends to etcd is lost from now on: it hears nothing back either.
    near.ns.nft(&format!(
        "add table inet cut; \
         add chain inet cut out {{ type filter hook output priority 0; }}; \
         add rule inet cut out ip daddr {} drop",
        cluster.ip()
    ));
    let demoted = t_us(&mut a, "demoted");
    let stopped = t_us(&mut a, "child_exited");
    let elected = t_us(&mut b, "elected");
    assert!(
        demoted < elected && stopped < elected,
        "a demoted at {demoted}, its service stopped at {stopped}, b elected at {elected} µs"
    );
    eprintln!(
        "gap between the old leader's service stopping and the new leader: {} ms",
        (elected - stopped) / 1000
    );
}

/// An operator deletes the leader's key: etcd elects the next candidate at
/// once, the old leader demotes as soon as its watch says so, and the new one
/// acts only once the old one's lease is gone, given back after its service
/// stopped: never two services at once.
#[test]
fn a_leader_whose_key_is_deleted_stops_before_the_next_leader_starts() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let site = Site::start(bin.unwrap(), 1);
    // A service that takes 300 ms to stop, as one that finishes its requests.
    let service = [
        "sh",
        "-c",
        "trap 'sleep 0.3; exit 0' TERM; while :; do sleep 0.05; done",
    ];
    let hosts = [site.net.container(), site.net.container()];
    let mut a = candidate_in(&hosts[0].ns, &site.cluster, "5s", &service);
    let term_a = a.next_event("term", WAIT).expect("a term");
    assert!(a.saw("child_started", WAIT), "{:?}", summary(&a));
    let mut b = candidate_in(&hosts[1].ns, &site.cluster, "5s", &service);
    assert!(b.saw("ready", WAIT));
    assert!(b.saw("leader_changed", WAIT));

    let key = term_a["key"].as_str().expect("the leader's key");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let deleted = monotonic_us();
    let body = format!(r#"{{"key":"{}"}}"#, b64(key));
    let reply = site.cluster.http(0, "/v3/kv/deleterange", Some(&body));
    assert!(reply.is_some_and(|r| r.contains("\"deleted\":\"1\"")));

    let demoted = t_us(&mut a, "demoted");
    let stopped = t_us(&mut a, "child_exited");
    let elected = t_us(&mut b, "elected");
    let started = t_us(&mut b, "child_started");
    assert!(
        stopped < elected && elected <= started,
        "a's service stopped at {stopped}, b elected at {elected}, its service started at {started} µs"
    );
    eprintln!(
        "key deleted -> old leader demoted {} ms, its service stopped {} ms, new leader elected {} ms",
        (demoted - deleted) / 1000,
        (stopped - deleted) / 1000,
        (elected - deleted) / 1000,
    );
    // Demoted by the deletion, not by a lease it could no longer renew.
    assert!(
        demoted - deleted < 2_000_000,
        "demoted after {} µs",
        demoted - deleted
    );
}

/// The log messages `run` wrote before its first event named `event`.
fn logged_before(run: &Run, event: &str) -> Vec<String> {
    run.seen
        .iter()
        .take_while(|e| e["event"] != event)
        .filter_map(|e| e["fields"]["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_campaign_that_outlived_its_lease_never_leads() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 1);
    let dir = scratch("etcd-phantom");
    let tokens = dir.join("tokens");
    let mut a = site.candidate("2s", &tokens);
    term(&mut a);
    let mut b = site.candidate("2s", &tokens);
    assert!(b.saw("ready", WAIT));
    assert!(b.saw("leader_changed", WAIT));
    std::thread::sleep(Duration::from_millis(200));

    // b waits in its campaign, frozen, until its lease is gone; then a leaves, and
    // etcd answers b's campaign with success for a key that no longer exists.
    let pid = rustix::process::Pid::from_raw(b.pid() as i32).unwrap();
    rustix::process::kill_process(pid, Signal::STOP).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let a_pid = rustix::process::Pid::from_raw(a.pid() as i32).unwrap();
    rustix::process::kill_process(a_pid, Signal::TERM).unwrap();
    assert_eq!(a.wait(WAIT).and_then(|s| s.code()), Some(0));
    std::thread::sleep(Duration::from_millis(500));
    rustix::process::kill_process(pid, Signal::CONT).unwrap();

    // b leads, but only in a new term, after giving that campaign up.
    assert!(b.saw("elected", WAIT), "{:?}", summary(&b));
    let before = logged_before(&b, "elected");
    assert!(
        before.iter().any(|m| m.starts_with("election term ended")),
        "b led on the campaign of an expired lease: {before:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secured_cluster_elects_only_candidates_with_its_ca_certificate_and_password() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    // TLS on the client port, client certificates required, and users: the
    // candidates' user may touch only the elections' keys.
    let net = Containers::new();
    let cluster = Cluster::start_secured_in(bin.unwrap(), 1, net.container());
    const PASSWORD: &str = "correct horse battery staple";
    cluster.enable_auth("candidate", PASSWORD, "handover/");
    let dir = scratch("etcd-secured");
    let (right, wrong) = (dir.join("password"), dir.join("wrong"));
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, "not the password\n").unwrap();
    let user = |file: &std::path::Path| {
        let file = file.display().to_string();
        [
            "--etcd-user".into(),
            "candidate".into(),
            "--etcd-password-file".into(),
            file,
        ]
    };
    let (right, wrong) = (user(&right), user(&wrong));
    let right: Vec<&str> = right.iter().map(String::as_str).collect();
    let wrong: Vec<&str> = wrong.iter().map(String::as_str).collect();
    let service = ["sleep", "1000"];
    let hosts: Vec<Container> = (0..4).map(|_| net.container()).collect();

    let mut a = candidate_with(&hosts[0].ns, &cluster, "2s", &right, &service);
    assert!(a.saw("elected", WAIT), "{:?}", summary(&a));
    let mut b = candidate_with(&hosts[1].ns, &cluster, "2s", &right, &service);
    assert!(b.saw("ready", WAIT));
    assert!(b.saw("leader_changed", WAIT), "{:?}", summary(&b));

    // A wrong password, or no CA (the system's roots do not know this one): an
    // error that says so, retried, never a term.
    let mut impostor = candidate_with(&hosts[2].ns, &cluster, "2s", &wrong, &service);
    let error = impostor
        .next_event("election_error", WAIT)
        .expect("an error");
    let error = error["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("authentication failed"), "{error}");
    let ca = cluster.pki().unwrap().ca.display().to_string();
    let mut untrusting = {
        let mut cmd = hosts[3].ns.command(handover_tests::process::handover_bin());
        let options = cluster.client_options();
        let without_ca: Vec<&String> = options
            .iter()
            .enumerate()
            .filter(|&(i, o)| *o != ca && (i + 1 >= options.len() || options[i + 1] != ca))
            .map(|(_, o)| o)
            .collect();
        cmd.args(["--log-format", "json", "run", "--mode", "failover"])
            .args(["--election", "etcd", "--scope", "svc", "--ttl", "2s"])
            .args(without_ca)
            .args(&right)
            .arg("--")
            .args(service);
        Run::spawn(cmd)
    };
    assert!(
        untrusting.saw("election_error", WAIT),
        "{:?}",
        summary(&untrusting)
    );

    // The leader leaves: the standby with the right credentials takes over.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(a.pid() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    assert!(b.saw("elected", WAIT), "{:?}", summary(&b));
    assert!(!impostor.saw("elected", Duration::from_secs(1)));
    assert!(!untrusting.saw("elected", Duration::ZERO));
    assert_eq!(a.wait(WAIT).and_then(|s| s.code()), Some(0));

    // No password in any line any of them wrote.
    for run in [&a, &b, &impostor, &untrusting] {
        for line in &run.seen {
            let line = line.to_string();
            assert!(
                !line.contains(PASSWORD) && !line.contains("not the password"),
                "a password was echoed: {line}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_shows_the_leader_and_the_candidates() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 1);
    let dir = scratch("etcd-watch");
    let tokens = dir.join("tokens");
    let id = |run: &mut Run| {
        let listening = run.wait_event("listening", WAIT).expect("listening");
        listening["id"].as_str().expect("id").to_owned()
    };
    let mut a = site.candidate("2s", &tokens);
    let token_a = term(&mut a);
    let mut b = site.candidate("2s", &tokens);
    assert!(b.saw("ready", WAIT));
    let (id_a, id_b) = (id(&mut a), id(&mut b));

    // `watch` on a host of its own, with the candidates' options.
    let host = site.net.container();
    let mut cmd = host.ns.command(handover_tests::process::handover_bin());
    cmd.args(["watch", "--json", "--election", "etcd", "--scope", "svc"])
        .args(site.cluster.client_options())
        .stdout(std::process::Stdio::piped());
    let mut watcher = cmd.spawn().expect("handover watch");
    let lines = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.0.send(line);
        }
    });
    let next = || -> serde_json::Value {
        let line = lines.1.recv_timeout(WAIT).expect("a line from watch");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let first = next();
    assert_eq!(first["leader"], id_a.as_str(), "{first}");
    let listed: Vec<&str> = first["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id_a.as_str(), id_b.as_str()], "{first}");
    assert_eq!(first["candidates"][0]["revision"], token_a, "{first}");
    assert_eq!(first["candidates"][1]["role"], "candidate", "{first}");

    // a leaves: watch shows b alone, leading.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(a.pid() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let after = std::iter::repeat_with(next)
        .find(|v| v["candidates"].as_array().is_some_and(|c| c.len() == 1))
        .unwrap();
    assert_eq!(after["leader"], id_b.as_str(), "{after}");
    let _ = watcher.kill();
    let _ = watcher.wait();
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Least privilege, as the README words it: a user granted read and write on
/// the candidates `NAME/` and the one key `NAME.checkpoint`, and nothing else,
/// campaigns, leads and hands leadership on; the user of a neighbouring election
/// (`NAME0`), granted the same way, can neither forge this one's checkpoint nor
/// delete its leader's key. A user granted only `NAME/` is told which grant is
/// missing, and never leads.
#[test]
fn a_user_granted_exactly_the_two_keys_of_its_election_is_elected() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    const NAME: &str = "plant/line-3";
    const PASSWORD: &str = "least privilege";
    let dir = scratch("etcd-least-privilege");
    let password = dir.join("password");
    std::fs::write(&password, PASSWORD).unwrap();
    let options = [
        "--election-name",
        NAME,
        "--etcd-user",
        "line-3",
        "--etcd-password-file",
        password.to_str().unwrap(),
    ];
    let service = ["sleep", "1000"];
    // What the README grants an election's user: its candidates and its
    // checkpoint, for this election and its neighbour `NAME0`.
    let grants = |name: &'static str| {
        let prefix: &'static str = format!("{name}/").leak();
        let checkpoint: &'static str = format!("{name}.checkpoint").leak();
        [Grant::Prefix(prefix), Grant::Key(checkpoint)]
    };
    let (mine, neighbours) = (grants(NAME), grants("plant/line-30"));

    let net = Containers::new();
    let cluster = Cluster::start_in(bin.clone().unwrap(), 1, net.container());
    cluster.enable_auth_for(&[
        ("line-3", PASSWORD, &mine),
        ("line-30", "neighbour", &neighbours),
    ]);
    let hosts: Vec<Container> = (0..2).map(|_| net.container()).collect();
    let mut a = candidate_with(&hosts[0].ns, &cluster, "2s", &options, &service);
    let term_a = a.next_event("term", WAIT).expect("a term");
    assert!(a.saw("elected", WAIT), "{:?}", summary(&a));
    let mut b = candidate_with(&hosts[1].ns, &cluster, "2s", &options, &service);
    assert!(b.saw("leader_changed", WAIT), "{:?}", summary(&b));

    // The neighbouring election's user can touch its own keys, not these.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let neighbour = ("line-30", "neighbour");
    let put = |key: &str| format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64("99"));
    let own = cluster.http_as(neighbour, "/v3/kv/put", &put("plant/line-30.checkpoint"));
    assert!(own.is_some(), "the neighbour writes its own checkpoint");
    let forged = cluster.http_as(neighbour, "/v3/kv/put", &put("plant/line-3.checkpoint"));
    assert_eq!(
        forged, None,
        "the neighbour forged this election's checkpoint"
    );
    let key = term_a["key"].as_str().expect("a's key");
    let delete = format!(r#"{{"key":"{}"}}"#, b64(key));
    let deleted = cluster.http_as(neighbour, "/v3/kv/deleterange", &delete);
    assert_eq!(
        deleted, None,
        "the neighbour deleted this election's leader key"
    );
    assert!(
        !a.saw("demoted", Duration::from_millis(500)),
        "{:?}",
        summary(&a)
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(a.pid() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    assert!(b.saw("elected", WAIT), "{:?}", summary(&b));
    for run in [&a, &b] {
        assert!(
            !run.seen.iter().any(|e| e["event"] == "election_error"),
            "{:?}",
            summary(run)
        );
    }
    drop((a, b, cluster));

    // Granted the candidates only: told which grant is missing, never elected.
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    cluster.enable_auth("line-3", PASSWORD, &format!("{NAME}/"));
    let host = net.container();
    let mut short = candidate_with(&host.ns, &cluster, "2s", &options, &service);
    let error = short.next_event("election_error", WAIT).expect("an error");
    let error = error["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("permission denied")
            && error.contains(&format!("readwrite {NAME}/`"))
            && error.contains(&format!("readwrite {NAME}.checkpoint`")),
        "the error names the grants: {error}"
    );
    assert!(!short.saw("elected", Duration::from_secs(2)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_campaign_whose_connections_break_gives_its_lease_back_at_once() {
    require_netns!();
    let bin = etcd();
    require!(bin.as_ref().err());
    let mut site = Site::start(bin.unwrap(), 1);
    let dir = scratch("etcd-revoke");
    let tokens = dir.join("tokens");
    // A long TTL: a lease left behind would block the election for 30 s.
    let mut a = site.candidate("30s", &tokens);
    term(&mut a);
    let leader_lease = site.cluster.leases();
    assert_eq!(leader_lease.len(), 1, "{leader_lease:?}");
    let mut b = site.candidate("30s", &tokens);
    assert!(b.saw("ready", WAIT));
    let campaigning = handover_tests::process::eventually(WAIT, || {
        site.cluster.leases().len() == 2 && site.cluster.keys("handover/svc/") == 2
    });
    assert!(campaigning, "b campaigns: {:?}", site.cluster.leases());
    let b_lease: Vec<String> = site
        .cluster
        .leases()
        .into_iter()
        .filter(|l| !leader_lease.contains(l))
        .collect();

    // Every connection b has to etcd is reset while it waits in its campaign: the
    // campaign fails, and b must give its lease back before it tries again.
    let host = site.hosts.last().expect("b's host");
    let reset = host
        .ns
        .command("ss")
        .args(["-K", "dst", &site.cluster.ip().to_string()])
        .output()
        .expect("ss -K");
    assert!(reset.status.success(), "{reset:?}");
    let given_back = handover_tests::process::eventually(Duration::from_secs(5), || {
        !site.cluster.leases().contains(&b_lease[0])
    });
    b.collect(Duration::from_millis(100));
    assert!(
        given_back,
        "b's lease {b_lease:?} still held after its campaign failed: {:?}",
        summary(&b)
    );
    // And b campaigns again, with a new lease, while a still leads.
    assert!(handover_tests::process::eventually(WAIT, || {
        site.cluster.keys("handover/svc/") == 2
    }));
    assert!(!a.saw("demoted", Duration::ZERO), "{:?}", summary(&a));
    let _ = std::fs::remove_dir_all(&dir);
}
