//! Checkpoints recorded in etcd (`Handover::checkpoint` with the etcd backend): the
//! leader writes them in a transaction guarded by its fencing token, every candidate
//! sees them, a new leader starts from them, and a deposed leader demotes as soon
//! as its key is gone, recording nothing more. Two library instances, each in a
//! container of its own; a real etcd member in a third.
//!
//! Needs root (namespaces), the etcd binary and curl; skips with the reason
//! otherwise, and fails under `CI=true`.

use std::time::Duration;

use handover_std::etcd::EtcdConfig;
use handover_std::{Config, Election, Event, Handover, Policy, State, Status};
use handover_tests::etcd::{etcd_bin, Cluster};
use handover_tests::library::start;
use handover_tests::skip::not_installed;
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(10);

fn config(endpoints: &[String]) -> Config {
    let mut etcd = EtcdConfig::new(endpoints.to_vec(), "handover/queue");
    // Renewals every 4 s: a deposed leader takes that long to find out by itself.
    etcd.ttl = Duration::from_secs(12);
    Config {
        policy: Policy::Failover { preempt: false },
        complete_files: vec![],
        election: Election::Etcd(etcd),
        ..Config::default()
    }
}

fn wait_for(rt: &tokio::runtime::Runtime, h: &Handover, f: impl FnMut(&Status) -> bool) -> Status {
    rt.block_on(async {
        tokio::time::timeout(WAIT, h.wait_for(f))
            .await
            .expect("in time")
            .expect("running")
    })
}

/// The checkpoint etcd holds, read through its JSON gateway.
fn recorded(cluster: &Cluster) -> Option<u64> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode("handover/queue.checkpoint");
    let body = cluster.http(0, "/v3/kv/range", Some(&format!(r#"{{"key":"{key}"}}"#)))?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    let value = value["kvs"][0]["value"].as_str()?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    String::from_utf8(value).ok()?.parse().ok()
}

#[test]
fn a_deposed_leaders_checkpoint_is_refused_and_the_new_leader_starts_from_the_last() {
    require_netns!();
    let bin = etcd_bin();
    require!(bin.as_ref().err());
    require!(not_installed("curl"));
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_owned).collect();
    let (ca, cb) = (net.container(), net.container());

    let (rt_a, a) = start(Some(&ca.ns), config(&endpoints));
    let leading = wait_for(&rt_a, &a, |s| s.state == State::Active);
    assert_eq!(
        leading.checkpoint_held,
        Some(0),
        "a first term starts from nothing"
    );
    let (rt_b, b) = start(Some(&cb.ns), config(&endpoints));
    wait_for(&rt_b, &b, |s| {
        s.state == State::Standby && s.leader.is_some()
    });

    // The leader records; the standby sees it.
    rt_a.block_on(a.checkpoint(5)).unwrap();
    wait_for(&rt_a, &a, |s| s.checkpoint_held == Some(5));
    wait_for(&rt_b, &b, |s| s.checkpoint == 5);
    assert_eq!(recorded(&cluster), Some(5));

    // Depose it behind its back: its lease is revoked, as a lease etcd expired
    // while the leader was paused would be. It renews only every 4 s, but its
    // watch shows its key gone: it demotes at once.
    let term = a.status().term.expect("a term");
    let lease = u64::from_str_radix(term.key.rsplit('/').next().unwrap(), 16).unwrap();
    let mut a_events = a.subscribe();
    cluster
        .http(
            0,
            "/v3/lease/revoke",
            Some(&format!(r#"{{"ID":"{lease}"}}"#)),
        )
        .expect("revoke");
    let took_over = wait_for(&rt_b, &b, |s| s.state == State::Active);
    assert_eq!(
        took_over.checkpoint_held,
        Some(5),
        "the new term starts from 5"
    );
    assert!(took_over.term.unwrap().token > term.token);
    let demoted = rt_a.block_on(async {
        tokio::time::timeout(Duration::from_secs(1), async {
            while !matches!(
                a_events.recv().await,
                Ok(Event::Protocol(handover_std::proto::Event::Demoted))
            ) {}
        })
        .await
    });
    assert!(demoted.is_ok(), "a demoted within 1 s, not at its renewal");

    // What it records now is not recorded (its transaction would be refused too).
    rt_a.block_on(a.checkpoint(9)).unwrap();
    assert_eq!(
        recorded(&cluster),
        Some(5),
        "the deposed leader recorded nothing"
    );
    assert_ne!(a.status().checkpoint_held, Some(9));

    // The new leader records, and the old one, standing by, sees it.
    rt_b.block_on(b.checkpoint(7)).unwrap();
    wait_for(&rt_b, &b, |s| s.checkpoint_held == Some(7));
    assert_eq!(recorded(&cluster), Some(7));
    wait_for(&rt_a, &a, |s| s.checkpoint == 7);
}

/// A checkpoint whose write found etcd frozen (no answer within the time left)
/// is written again once etcd answers: the queue waiting for `CheckpointHeld` goes
/// on, and etcd holds it.
#[test]
fn a_checkpoint_whose_write_failed_is_written_again() {
    use rustix::process::Signal;
    require_netns!();
    let bin = etcd_bin();
    require!(bin.as_ref().err());
    require!(not_installed("curl"));
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_owned).collect();
    let host = net.container();
    let (rt, leader) = start(Some(&host.ns), config(&endpoints));
    wait_for(&rt, &leader, |s| s.state == State::Active);
    // What the backend cannot do is answered, not ignored.
    let unsupported = rt.block_on(leader.set_state(b"x"));
    assert!(
        matches!(
            unsupported,
            Err(handover_std::Error::Unsupported {
                call: "set_state",
                backend: "etcd"
            })
        ),
        "{unsupported:?}"
    );
    rt.block_on(leader.checkpoint(3)).unwrap();
    wait_for(&rt, &leader, |s| s.checkpoint_held == Some(3));

    // etcd freezes for longer than a request may wait (a quarter of the TTL), not
    // as long as the lease: the write of checkpoint 7 fails, and the term goes on.
    cluster.signal(0, Signal::STOP);
    rt.block_on(leader.checkpoint(7)).unwrap();
    std::thread::sleep(Duration::from_millis(5_000));
    cluster.signal(0, Signal::CONT);
    let status = wait_for(&rt, &leader, |s| {
        s.checkpoint_held == Some(7) || s.state != State::Active
    });
    assert_eq!(status.state, State::Active, "it still leads: {status:?}");
    assert_eq!(status.checkpoint_held, Some(7));
    assert_eq!(recorded(&cluster), Some(7));
}
