//! A crowd on the group: heartbeats of many other devices' and services' instances
//! (each its own scope and sender), sent at a steady rate from inside a namespace,
//! as a fleet on one LAN produces them.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use handover_proto::wire::{self, Announce, Body, Header, Rank, Repr, Role};

use crate::netns::Netns;

/// The protocol's group and port.
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 16, 16), 1538);

/// Senders of other scopes' heartbeats, running until dropped.
#[derive(Debug)]
pub struct Crowd {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// A heartbeat of instance `i` of the crowd: active, in scope `device-i/svc`.
fn heartbeat(i: u32, counter: u64) -> Vec<u8> {
    let scope = format!("device-{i}/svc");
    let repr = Repr {
        header: Header {
            scope: wire::scope_id(scope.as_bytes()),
            sender: 0xc0_0000 + u64::from(i),
            counter,
        },
        body: Body::Announce(Announce {
            role: Role::Active,
            rank: Rank {
                priority: 100,
                generation: 1,
                start_ms: 1_700_000_000_000,
            },
            ready_ms: 60_000,
            heartbeat_ms: 1000,
            claim_heard: None,
            name: b"svc",
            addresses: &[10, 0, 0, 1],
            state: &[],
        }),
    };
    let mut buf = [0u8; wire::MAX_DATAGRAM];
    let n = repr.emit(&mut buf).expect("a crowd heartbeat");
    buf[..n].to_vec()
}

impl Crowd {
    /// `instances` other instances, `per_second` heartbeats in all (each instance in
    /// turn), sent from `ns` through its interface with address `via`.
    pub fn start(ns: &Netns, via: Ipv4Addr, instances: u32, per_second: u32) -> Self {
        let socket = ns.enter(|| {
            let s = UdpSocket::bind((via, 0)).expect("crowd socket");
            let s2 = socket2::SockRef::from(&s);
            s2.set_multicast_if_v4(&via).unwrap();
            s2.set_multicast_loop_v4(false).unwrap();
            s
        });
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop_flag, counter) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut n: u64 = 0;
            while !stop_flag.load(Ordering::Relaxed) {
                // Catch up with the schedule, then sleep a millisecond.
                let due = start.elapsed().as_secs_f64() * f64::from(per_second);
                while (n as f64) < due {
                    let i = (n % u64::from(instances)) as u32;
                    let round = n / u64::from(instances) + 1;
                    let _ = socket.send_to(&heartbeat(i, round), GROUP);
                    n += 1;
                    counter.store(n, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Crowd {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Heartbeats sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
