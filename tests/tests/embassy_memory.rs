//! Two embassy-net stacks joined in memory (embassy-net-driver-channel), each running
//! `handover-embassy`: a hand-over and a failover between them, over smoltcp's real
//! Ethernet, ARP, IGMP and UDP. Needs no root.

use std::time::Duration;

use embassy_futures::join::join;
use embassy_futures::select::{select, Either};
use embassy_net::StackResources;
use embassy_net_driver_channel as ch;
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use handover_embassy::{Buffers, Events, Handover, Network, Shared};
use handover_proto::{wire, Config, Event, Policy, State};
use handover_tests::embassy::{cable, ipv4, MTU};

const SCOPE: u32 = wire::scope_id(b"embassy-memory");

fn config(id: u64, policy: Policy, priority: u8) -> Config {
    let mut c = Config::new(SCOPE, id, 1_700_000_000_000 + id as i64, id);
    c.policy = policy;
    c.priority = priority;
    c.heartbeat = Duration::from_millis(100);
    c
}

/// An instance in a scenario: its handle and its subscription to events.
type Instance<'a> = (Handover<'a, NoopRawMutex>, Events<'a, NoopRawMutex>);

async fn next(events: &mut Events<'_, NoopRawMutex>, f: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = events.next().await;
        if f(&e) {
            return e;
        }
    }
}

/// Runs `scenario` with two connected stacks, each with a handover runner of its own
/// configuration, giving it up to 10 s. The cable drops the first unicast datagram
/// each way, as a stack does while its neighbour's address is unresolved.
fn two_stacks<F>(a: Config, b: Config, scenario: F)
where
    F: for<'a> AsyncFnOnce(Instance<'a>, Instance<'a>),
{
    let mut state_a = ch::State::<MTU, 4, 4>::new();
    let mut state_b = ch::State::<MTU, 4, 4>::new();
    let (runner_a, device_a) = ch::new(
        &mut state_a,
        ch::driver::HardwareAddress::Ethernet([2, 0, 0, 0, 0, 1]),
    );
    let (runner_b, device_b) = ch::new(
        &mut state_b,
        ch::driver::HardwareAddress::Ethernet([2, 0, 0, 0, 0, 2]),
    );
    let (state_a, rx_a, tx_a) = runner_a.split();
    let (state_b, rx_b, tx_b) = runner_b.split();
    state_a.set_link_state(ch::driver::LinkState::Up);
    state_b.set_link_state(ch::driver::LinkState::Up);

    let mut resources_a = StackResources::<4>::new();
    let mut resources_b = StackResources::<4>::new();
    let (stack_a, mut net_a) = embassy_net::new(device_a, ipv4([10, 7, 0, 1]), &mut resources_a, 1);
    let (stack_b, mut net_b) = embassy_net::new(device_b, ipv4([10, 7, 0, 2]), &mut resources_b, 2);

    let shared_a = Shared::<NoopRawMutex>::new();
    let shared_b = Shared::<NoopRawMutex>::new();
    let mut buffers_a = Buffers::new();
    let mut buffers_b = Buffers::new();
    let (handle_a, mut peer_a) =
        handover_embassy::new::<_, 8>(stack_a, &mut buffers_a, &shared_a, a, Network::default())
            .unwrap();
    let (handle_b, mut peer_b) =
        handover_embassy::new::<_, 8>(stack_b, &mut buffers_b, &shared_b, b, Network::default())
            .unwrap();

    let network = join(
        join(cable(tx_a, rx_b, 1), cable(tx_b, rx_a, 1)),
        join(net_a.run(), net_b.run()),
    );
    let peers = join(peer_a.run(), peer_b.run());
    let a = (handle_a, handle_a.events().unwrap());
    let b = (handle_b, handle_b.events().unwrap());
    let scenario = scenario(a, b);
    let timeout = embassy_time::Timer::after_secs(10);
    let all = select(select(network, peers), select(scenario, timeout));
    match embassy_futures::block_on(all) {
        Either::Second(Either::First(())) => {}
        Either::Second(Either::Second(())) => panic!("scenario timed out"),
        Either::First(_) => panic!("network or peers stopped before the scenario ended"),
    }
}

#[test]
fn hand_over_between_two_stacks() {
    two_stacks(
        config(1, Policy::HandOver, 100),
        config(2, Policy::HandOver, 100),
        async |(old, mut old_events), (new, mut new_events)| {
            old.ready().await;
            next(&mut old_events, |e| matches!(e, Event::Elected)).await;
            // The new instance has been listening for longer than the dead interval, so
            // its claim completes as soon as the old one acknowledges it. That unicast
            // acknowledgement is the first datagram between the two, and it is lost.
            embassy_time::Timer::after_millis(500).await;
            let started = embassy_time::Instant::now();
            new.ready().await;
            let successor = old.shutdown_requested().await;
            let latency = started.elapsed();
            old.shutdown_complete().await.unwrap();
            next(&mut new_events, |e| {
                matches!(e, Event::PredecessorDone { .. })
            })
            .await;
            // Wait until the new instance is alone in charge.
            while new.status().map(|s| s.state) != Some(State::Active) {
                embassy_time::Timer::after_millis(5).await;
            }
            let active_after = started.elapsed();
            println!(
                "shutdown requested after {} µs, new instance active after {} µs",
                latency.as_micros(),
                active_after.as_micros()
            );
            assert_eq!(successor, handover_proto::Successor::Peer(2));
            assert!(
                latency.as_millis() < 50,
                "shutdown requested after {} ms",
                latency.as_millis()
            );
            // The claim's retransmission after 10 ms gets the acknowledgement through:
            // a heartbeat (100 ms) sooner than waiting for the next one would.
            assert!(
                active_after.as_millis() < 60,
                "active after {} ms",
                active_after.as_millis()
            );
        },
    );
}

#[test]
fn failover_between_two_stacks() {
    let failover = Policy::Failover { preempt: false };
    two_stacks(
        config(1, failover, 200),
        config(2, failover, 100),
        async |(active, mut active_events), (standby, mut standby_events)| {
            active.ready().await;
            next(&mut active_events, |e| matches!(e, Event::Elected)).await;
            standby.ready().await;
            next(&mut standby_events, |e| {
                matches!(e, Event::LeaderChanged { id: Some(1) })
            })
            .await;
            assert_eq!(standby.status().unwrap().state, State::Standby);
            active.leave().await.unwrap();
            next(&mut standby_events, |e| matches!(e, Event::Elected)).await;
        },
    );
}

/// The handle's requests, as an application makes them: `shutdown_complete` before
/// any shutdown is refused and leaves nothing behind, `set_state` reaches the
/// standby, `shutdown_requested` answers every caller, and a request made after
/// the goodbye is answered at once.
#[test]
fn the_handles_requests_are_answered_as_the_application_makes_them() {
    let failover = Policy::Failover { preempt: false };
    two_stacks(
        config(1, failover, 100),
        config(2, failover, 200),
        async |(active, mut active_events), (standby, mut standby_events)| {
            active.ready().await;
            next(&mut active_events, |e| matches!(e, Event::Elected)).await;
            assert_eq!(
                active.shutdown_complete().await,
                Err(handover_proto::StateError {
                    state: State::Active
                })
            );
            active.set_state(b"task 41").await.unwrap();
            assert!(active.set_state(&[0; 65]).await.is_err());
            standby.ready().await;
            // The standby ranks higher: it stands by, then takes over (preempt off: on
            // the active's departure only). First it hears the state.
            next(
                &mut standby_events,
                |e| matches!(e, Event::Synced { state } if &state[..] == b"task 41"),
            )
            .await;
            active.leave().await.unwrap();
            next(&mut standby_events, |e| matches!(e, Event::Elected)).await;
            // After the goodbye: at once, with the same answer.
            assert_eq!(active.leave().await, Ok(()));
            assert_eq!(active.status().unwrap().state, State::Done);
        },
    );
}
