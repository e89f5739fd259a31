//! Cost of the protocol's hot paths: handling a received datagram (decode + state
//! machine) and emitting one (timer + encode). Run with
//! `cargo bench -p handover-proto --bench peer`.

#![allow(missing_docs)] // criterion_group! defines undocumented functions

use core::net::SocketAddr;
use core::time::Duration;
use std::hint::black_box;
use std::time::Instant as WallInstant;

use criterion::{criterion_group, criterion_main, Criterion};
use handover_proto::{wire, Config, Event, Instant, Peer, Policy, State};

const SCOPE: u32 = wire::scope_id(b"bench");

thread_local! {
    /// Whether `pair` builds a group with a key.
    static KEYED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn failover(id: u64, priority: u8) -> Config {
    let mut c = Config::new(SCOPE, id, 1_700_000_000_000, id);
    if KEYED.with(|k| k.get()) {
        c.auth = Some(handover_proto::Auth::new([0x42; 32]));
    }
    c.policy = Policy::Failover { preempt: false };
    c.priority = priority;
    c.name = "bench-service".try_into().unwrap();
    c
}

/// An active peer and a standby that know each other.
fn pair() -> (Peer<8>, Peer<8>, Instant) {
    let mut active = Peer::<8>::new(failover(1, 200), Instant::ZERO).unwrap();
    let mut standby = Peer::<8>::new(failover(2, 100), Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    active.ready(now).unwrap();
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let src: SocketAddr = "10.0.0.1:1538".parse().unwrap();
    while active.state() != State::Active {
        while active.poll_transmit(now, &mut buf).is_some() {}
        while active.poll_event().is_some() {}
        now = active.poll_timeout().unwrap();
        active.handle_timeout(now);
    }
    while let Some(t) = active.poll_transmit(now, &mut buf) {
        standby.handle_datagram(now, src, &buf[..t.len]);
    }
    while standby.poll_event().is_some() {}
    standby.ready(now).unwrap();
    assert_eq!(standby.state(), State::Standby);
    while standby.poll_transmit(now, &mut buf).is_some() {}
    while standby.poll_event().is_some() {}
    (active, standby, now)
}

/// Heartbeats from the active peer, each with a fresh counter.
fn heartbeats(active: &mut Peer<8>, mut now: Instant, n: u64) -> Vec<Vec<u8>> {
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let mut out = Vec::with_capacity(n as usize);
    while out.len() < n as usize {
        now = now + Duration::from_secs(1);
        active.handle_timeout(now);
        while let Some(t) = active.poll_transmit(now, &mut buf) {
            out.push(buf[..t.len].to_vec());
        }
        while active.poll_event().is_some() {}
    }
    out
}

fn receive(c: &mut Criterion) {
    receive_as(c, false);
}

fn receive_keyed(c: &mut Criterion) {
    KEYED.with(|k| k.set(true));
    receive_as(c, true);
    KEYED.with(|k| k.set(false));
}

fn receive_as(c: &mut Criterion, keyed: bool) {
    let src: SocketAddr = "10.0.0.1:1538".parse().unwrap();
    let label = if keyed { " with a key" } else { "" };
    c.bench_function(
        &format!("receive heartbeat (decode + handle){label}"),
        |b| {
            b.iter_custom(|iters| {
                let (mut active, mut standby, now) = pair();
                let datagrams = heartbeats(&mut active, now, iters);
                // What the standby accepted while the two met (the claim, the
                // new active's checkpoint).
                let before = u64::from(standby.stats().accepted);
                let start = WallInstant::now();
                for d in &datagrams {
                    standby.handle_datagram(now, src, black_box(d));
                    while let Some(e) = standby.poll_event() {
                        black_box(e);
                    }
                }
                let elapsed = start.elapsed();
                assert_eq!(u64::from(standby.stats().accepted) - before, iters);
                elapsed
            })
        },
    );
    let (mut active, _, now) = pair();
    let datagram = heartbeats(&mut active, now, 1).pop().unwrap();
    if keyed {
        let frame = match wire::Datagram::parse(&datagram).unwrap() {
            wire::Datagram::V2(f) => f,
            _ => unreachable!(),
        };
        let tag = *frame.tag.expect("tagged");
        c.bench_function("verify tag (HMAC-SHA256, wire only)", |b| {
            b.iter(|| {
                assert!(wire::auth::verify(
                    &[0x42; 32],
                    black_box(frame.covered),
                    &tag
                ))
            })
        });
        return;
    }
    c.bench_function("decode heartbeat (wire only)", |b| {
        b.iter(|| wire::Datagram::parse(black_box(&datagram)).unwrap())
    });
}

fn emit_keyed(c: &mut Criterion) {
    KEYED.with(|k| k.set(true));
    emit_as(c, " with a key");
    KEYED.with(|k| k.set(false));
}

fn emit(c: &mut Criterion) {
    emit_as(c, "");
}

fn emit_as(c: &mut Criterion, label: &str) {
    c.bench_function(&format!("emit heartbeat (timer + encode){label}"), |b| {
        let (mut active, _, mut now) = pair();
        active.set_state(b"task-12345").unwrap();
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        b.iter(|| {
            now = now + Duration::from_secs(1);
            active.handle_timeout(now);
            let t = active.poll_transmit(now, &mut buf).unwrap();
            black_box(&buf[..t.len]);
            while let Some(e) = active.poll_event() {
                assert!(!matches!(e, Event::Demoted));
            }
        })
    });
    println!(
        "size_of::<Peer<8>>() = {} bytes",
        core::mem::size_of::<Peer<8>>()
    );
}

criterion_group!(benches, receive, emit, receive_keyed, emit_keyed);
criterion_main!(benches);
