//! One failover scenario, written once against the library's API, run on both
//! election backends: the multicast protocol (default network options) and etcd
//! (a real member in a container of its own), each instance in its own container
//! on a bridge.
//! A service sees the same states and events whichever decides.
//!
//! Needs root (namespaces) and the etcd binary; skips with the reason otherwise,
//! and fails under `CI=true`.

use std::time::Duration;

use handover_std::proto::Event as P;
use handover_std::{Config, Election, Event, Policy, State};
use handover_tests::etcd::{etcd_bin, Cluster};
use handover_tests::library::{start, Place};
use handover_tests::topology::Containers;
use handover_tests::{require, require_netns};

const WAIT: Duration = Duration::from_secs(10);

/// The scenario: the first instance is elected, the second stands by and sees it
/// lead; the first leaves; the second is elected and sees itself lead.
fn failover(places: [Place; 2], config: impl Fn() -> Config) {
    let (rt_a, a) = start(places[0], config());
    rt_a.block_on(async {
        tokio::time::timeout(WAIT, a.wait_for(|s| s.state == State::Active))
            .await
            .expect("a is elected")
            .unwrap();
    });
    let (rt_b, b) = start(places[1], config());
    let mut b_events = b.subscribe();
    let a_id = a.status().id;
    rt_b.block_on(async {
        let standby = b.wait_for(|s| s.state == State::Standby && s.leader == Some(a_id));
        tokio::time::timeout(WAIT, standby)
            .await
            .expect("b stands by and knows a leads")
            .unwrap();
    });
    rt_a.block_on(a.leave()).expect("a leaves");
    let b_id = b.status().id;
    rt_b.block_on(async {
        let elected = b.wait_for(|s| s.state == State::Active && s.leader == Some(b_id));
        tokio::time::timeout(WAIT, elected)
            .await
            .expect("b is elected")
            .unwrap();
    });
    let mut saw = Vec::new();
    while let Ok(e) = b_events.try_recv() {
        if let Event::Protocol(p @ (P::Elected | P::LeaderChanged { .. })) = e {
            saw.push(p);
        }
    }
    assert!(saw.contains(&P::Elected), "{saw:?}");
    assert!(
        saw.contains(&P::LeaderChanged { id: Some(b_id) }),
        "{saw:?}"
    );
}

#[test]
fn failover_on_multicast() {
    require_netns!();
    let net = Containers::new();
    let (a, b) = (net.container(), net.container());
    failover([Some(&a.ns), Some(&b.ns)], || Config {
        scope: "backends".into(),
        policy: Policy::Failover { preempt: false },
        heartbeat: Duration::from_millis(100),
        complete_files: vec![],
        ..Config::default()
    });
}

#[test]
fn failover_on_etcd() {
    require_netns!();
    let bin = etcd_bin();
    require!(bin.as_ref().err());
    let net = Containers::new();
    let cluster = Cluster::start_in(bin.unwrap(), 1, net.container());
    let (a, b) = (net.container(), net.container());
    let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_owned).collect();
    failover([Some(&a.ns), Some(&b.ns)], || {
        let mut etcd = handover_std::etcd::EtcdConfig::new(endpoints.clone(), "backends");
        etcd.ttl = Duration::from_secs(2);
        Config {
            scope: "backends".into(),
            policy: Policy::Failover { preempt: false },
            complete_files: vec![],
            election: Election::Etcd(etcd),
            ..Config::default()
        }
    });
}
