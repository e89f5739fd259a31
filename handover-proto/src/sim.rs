//! A deterministic network simulator for property-testing code built on [`Peer`].
//!
//! Everything runs on one virtual clock: no threads, no sockets, no real time, so a
//! scenario with a given seed replays exactly. The network delays every datagram by a
//! base latency plus uniform jitter (which reorders), loses and duplicates at the
//! configured rates, and can be split into partitions. Each node has its own
//! monotonic clock offset and its own wall clock, which may be stepped or wildly
//! wrong.
//!
//! The simulated application reacts as a real one would: on [`Event::Shutdown`] it
//! calls [`Peer::shutdown_complete`] after its configured shutdown delay. Every event
//! is recorded with its time, for the test to check.
//!
//! ```
//! use core::time::Duration;
//! use handover_proto::sim::{Network, Sim};
//! use handover_proto::State;
//!
//! let mut sim = Sim::new(7, Network::lossy(0.3));
//! let old = sim.add(0);
//! sim.ready(old);
//! sim.run_for(Duration::from_secs(5));
//! // The new instance's wall clock reads 1970: it still wins, because it heard the old one.
//! let new = sim.add(-1_700_000_000_000);
//! sim.run_for(Duration::from_millis(500));
//! sim.ready(new);
//! sim.run_for(Duration::from_secs(10));
//! assert_eq!(sim.state(new), State::Active);
//! assert_eq!(sim.state(old), State::Done);
//! assert_eq!(sim.count(old, |e| matches!(e, handover_proto::Event::MarkComplete)), 1);
//! ```

extern crate std;

use core::cmp::Reverse;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;
use std::collections::BinaryHeap;
use std::vec::Vec;

use crate::wire::{self, MAX_DATAGRAM};
use crate::{Config, Destination, Event, Instant, Peer, Rank, State};

/// Capacity of each simulated peer's table.
pub const TABLE: usize = 8;

/// Properties of the simulated network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// Fixed one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from zero to this, per datagram: reorders.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
}

impl Network {
    /// 1 ms latency, 1 ms jitter, nothing lost or duplicated.
    pub fn reliable() -> Self {
        Network {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            loss: 0.0,
            duplicate: 0.0,
        }
    }

    /// Like [`reliable`](Self::reliable), with this probability of loss.
    pub fn lossy(loss: f64) -> Self {
        Network {
            loss,
            ..Self::reliable()
        }
    }
}

/// Index of a node in a [`Sim`].
pub type NodeId = usize;

/// One simulated instance: a peer and the application around it.
#[derive(Debug)]
pub struct Node {
    /// The peer under test.
    pub peer: Peer<TABLE>,
    /// Its address.
    pub addr: SocketAddr,
    /// Added to the global clock to give this node's monotonic clock.
    pub clock_offset: Duration,
    /// False once killed: it neither sends nor receives.
    pub alive: bool,
    /// Partition the node is in; nodes talk only within one.
    pub partition: u8,
    /// How long its application takes to shut down after [`Event::Shutdown`].
    pub shutdown_delay: Duration,
    /// When the application called `shutdown_complete`.
    pub shutdown_completed_at: Option<Instant>,
    /// When it was made ready.
    pub ready_at: Option<Instant>,
    pending_complete: Option<Instant>,
}

/// An event as recorded by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Global time.
    pub at: Instant,
    /// The node that emitted it.
    pub node: NodeId,
    /// The node's rank when it emitted it.
    pub rank: Rank,
    /// The event.
    pub event: Event,
}

struct InFlight {
    to: NodeId,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// The simulator: nodes, a network and a virtual clock.
pub struct Sim {
    now: Instant,
    /// Wall clock at global time zero, ms since the Unix epoch.
    wall_base_ms: i64,
    /// Default heartbeat for [`config`](Self::config).
    pub heartbeat: Duration,
    network: Network,
    rng: u64,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: std::collections::BTreeMap<u64, InFlight>,
    seq: u64,
    records: Vec<Record>,
    /// Datagrams that the network lost.
    pub lost: u64,
    /// When set, every datagram sent is recorded in [`captured`](Self::captured): an
    /// eavesdropper's view, for replay tests.
    pub capture: bool,
    /// Datagrams sent while [`capture`](Self::capture) was set: sender and bytes.
    pub captured: Vec<(NodeId, Vec<u8>)>,
}

/// A scope for simulated peers.
pub const SCOPE: u32 = wire::scope_id(b"sim");

impl Sim {
    /// An empty simulation whose random choices all derive from `seed`.
    pub fn new(seed: u64, network: Network) -> Self {
        Sim {
            now: Instant::ZERO,
            wall_base_ms: 1_700_000_000_000,
            heartbeat: crate::DEFAULT_HEARTBEAT,
            network,
            rng: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            in_flight: Default::default(),
            seq: 0,
            records: Vec::new(),
            lost: 0,
            capture: false,
            captured: Vec::new(),
        }
    }

    /// The global time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Changes the network from now on.
    pub fn set_network(&mut self, network: Network) {
        self.network = network;
    }

    /// Steps the wall clock that nodes added from now on start with (an NTP step).
    pub fn step_wall_clock(&mut self, delta_ms: i64) {
        self.wall_base_ms += delta_ms;
    }

    /// A hand-over configuration with a fresh random id and seed, whose wall-clock
    /// start time is the simulated wall clock plus `wall_offset_ms`.
    pub fn config(&mut self, wall_offset_ms: i64) -> Config {
        let start_ms = self.wall_base_ms + (self.now.as_micros() / 1000) as i64 + wall_offset_ms;
        let mut config = Config::new(SCOPE, self.random().max(1), start_ms, self.random());
        config.heartbeat = self.heartbeat;
        config
    }

    /// Adds a hand-over node with the default configuration whose wall clock is off by
    /// `wall_offset_ms`.
    pub fn add(&mut self, wall_offset_ms: i64) -> NodeId {
        let config = self.config(wall_offset_ms);
        self.add_node(config)
    }

    /// Adds a node that starts listening now.
    pub fn add_node(&mut self, config: Config) -> NodeId {
        let id = self.nodes.len();
        let clock_offset = Duration::from_micros(self.random() % 1_000_000_000);
        let peer = Peer::new(config, self.now + clock_offset).expect("valid config");
        self.nodes.push(Node {
            peer,
            addr: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8)),
                wire::DEFAULT_PORT,
            ),
            clock_offset,
            alive: true,
            partition: 0,
            shutdown_delay: Duration::ZERO,
            shutdown_completed_at: None,
            ready_at: None,
            pending_complete: None,
        });
        self.drain(id);
        id
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// A node, to change its settings or drive its peer directly.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node's state.
    pub fn state(&self, id: NodeId) -> State {
        self.nodes[id].peer.state()
    }

    /// The live nodes in [`State::Active`].
    pub fn active(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.state(i) == State::Active)
            .collect()
    }

    /// Every event recorded so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// How many events of a node match `f`.
    pub fn count(&self, id: NodeId, f: impl Fn(&Event) -> bool) -> usize {
        self.records
            .iter()
            .filter(|r| r.node == id && f(&r.event))
            .count()
    }

    /// The application of node `id` is ready.
    pub fn ready(&mut self, id: NodeId) {
        let now = self.local(id);
        if self.nodes[id].peer.ready(now).is_ok() {
            self.nodes[id].ready_at = Some(self.now);
        }
        self.drain(id);
    }

    /// The node leaves gracefully.
    pub fn leave(&mut self, id: NodeId) {
        let now = self.local(id);
        let _ = self.nodes[id].peer.leave(now);
        self.drain(id);
    }

    /// The application of node `id` has shut down after [`Event::Shutdown`] (for an
    /// application the test drives itself: give it a long
    /// [`shutdown_delay`](Node::shutdown_delay)).
    pub fn shutdown_complete(&mut self, id: NodeId) -> Result<(), crate::StateError> {
        let now = self.local(id);
        self.nodes[id].pending_complete = None;
        let result = self.nodes[id].peer.shutdown_complete(now);
        if result.is_ok() {
            self.nodes[id].shutdown_completed_at = Some(self.now);
        }
        self.drain(id);
        result
    }

    /// The active node `id` records progress `seq` ([`Peer::checkpoint`]); an error
    /// if it is not active.
    #[cfg(feature = "checkpoints")]
    pub fn checkpoint(&mut self, id: NodeId, seq: u64) -> Result<(), crate::StateError> {
        let now = self.local(id);
        let result = self.nodes[id].peer.checkpoint(now, seq);
        self.drain(id);
        result
    }

    /// The node dies at once (`kill -9`): it sends and receives nothing more.
    pub fn kill(&mut self, id: NodeId) {
        self.nodes[id].alive = false;
    }

    /// Puts each node in the partition at its index; nodes beyond the slice stay in 0.
    pub fn partition(&mut self, partitions: &[u8]) {
        for (node, &p) in self.nodes.iter_mut().zip(partitions) {
            node.partition = p;
        }
    }

    /// Joins all partitions again.
    pub fn heal(&mut self) {
        for node in &mut self.nodes {
            node.partition = 0;
        }
    }

    /// Delivers `bytes` to a node as if sent from `from`, through the network (an
    /// adversary's or a foreign sender's datagram).
    pub fn inject(&mut self, to: NodeId, from: SocketAddr, bytes: &[u8]) {
        let at = self.now + self.network.latency;
        self.schedule(at, to, from, bytes.to_vec());
    }

    /// Delivers `bytes` to every node, as a datagram sent to the group from `from`.
    pub fn inject_all(&mut self, from: SocketAddr, bytes: &[u8]) {
        for to in 0..self.nodes.len() {
            self.inject(to, from, bytes);
        }
    }

    /// Runs until the global clock reaches `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut steps_at_instant = 0u32;
        while let Some(next) = self.next_wakeup() {
            if next > until {
                break;
            }
            if next == self.now {
                steps_at_instant += 1;
                assert!(
                    steps_at_instant < 100_000,
                    "livelock: no progress at {:?}",
                    self.now
                );
            } else {
                steps_at_instant = 0;
            }
            self.now = next;
            self.step();
        }
        self.now = self.now.max(until);
        self.check_stats();
    }

    /// The counters' invariant, checked after every run: every datagram handed to a
    /// peer was accepted or counted in exactly one `dropped_*` counter (modulo 2^32:
    /// the counters wrap).
    pub fn check_stats(&self) {
        for (id, node) in self.nodes.iter().enumerate() {
            let s = node.peer.stats();
            let accounted = u64::from(s.accepted) + s.dropped();
            assert_eq!(
                s.received,
                accounted as u32,
                "node {id}: received {} != accepted {} + dropped {}: {s:?}",
                s.received,
                s.accepted,
                s.dropped()
            );
        }
    }

    /// Runs for `duration` of global time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.run_until(until);
    }

    fn step(&mut self) {
        // Deliveries due now.
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let Some(d) = self.in_flight.remove(&seq) else {
                continue;
            };
            if !self.nodes[d.to].alive {
                continue;
            }
            let now = self.local(d.to);
            self.nodes[d.to].peer.handle_datagram(now, d.from, &d.bytes);
            self.drain(d.to);
        }
        for id in 0..self.nodes.len() {
            if !self.nodes[id].alive {
                continue;
            }
            if let Some(at) = self.nodes[id].pending_complete {
                if at <= self.now {
                    self.nodes[id].pending_complete = None;
                    self.nodes[id].shutdown_completed_at = Some(self.now);
                    let now = self.local(id);
                    self.nodes[id]
                        .peer
                        .shutdown_complete(now)
                        .expect("shutdown_complete after Shutdown");
                    self.drain(id);
                }
            }
            if let Some(deadline) = self.nodes[id].peer.poll_timeout() {
                let local = self.local(id);
                if deadline <= local {
                    self.nodes[id].peer.handle_timeout(local);
                    self.drain(id);
                }
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let deliveries = self.queue.peek().map(|Reverse((at, _))| *at);
        let nodes = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .flat_map(|n| {
                let timeout = n.peer.poll_timeout().map(|t| {
                    Instant::from_micros(t.as_micros() - n.clock_offset.as_micros() as u64)
                });
                [timeout, n.pending_complete]
            })
            .flatten();
        deliveries
            .into_iter()
            .chain(nodes)
            .min()
            .map(|t| t.max(self.now))
    }

    /// Drains a node's outputs as an adapter does after every input.
    fn drain(&mut self, id: NodeId) {
        let now = self.local(id);
        let mut buf = [0u8; MAX_DATAGRAM];
        while let Some(t) = self.nodes[id].peer.poll_transmit(now, &mut buf) {
            let from = self.nodes[id].addr;
            let bytes = &buf[..t.len];
            if self.capture {
                self.captured.push((id, bytes.to_vec()));
            }
            match t.destination {
                Destination::Group | Destination::LegacyGroup => {
                    for to in 0..self.nodes.len() {
                        self.send(id, to, from, bytes);
                    }
                }
                Destination::Reply(addr) => {
                    if let Some(to) = self.nodes.iter().position(|n| n.addr == addr) {
                        self.send(id, to, from, bytes);
                    }
                }
            }
        }
        while let Some(event) = self.nodes[id].peer.poll_event() {
            if matches!(event, Event::Shutdown { .. }) {
                self.nodes[id].pending_complete = Some(self.now + self.nodes[id].shutdown_delay);
            }
            self.records.push(Record {
                at: self.now,
                node: id,
                rank: self.nodes[id].peer.rank(),
                event,
            });
        }
    }

    fn send(&mut self, from_node: NodeId, to: NodeId, from: SocketAddr, bytes: &[u8]) {
        if from_node == to {
            // Multicast loopback: the sender hears itself, at once and reliably.
            self.schedule(self.now, to, from, bytes.to_vec());
            return;
        }
        if self.nodes[from_node].partition != self.nodes[to].partition {
            self.lost += 1;
            return;
        }
        let copies = 1 + usize::from(self.chance(self.network.duplicate));
        for _ in 0..copies {
            if self.chance(self.network.loss) {
                self.lost += 1;
                continue;
            }
            let jitter = self.network.jitter.as_micros() as u64;
            let extra = if jitter == 0 {
                0
            } else {
                self.random() % (jitter + 1)
            };
            let at = self.now + self.network.latency + Duration::from_micros(extra);
            self.schedule(at, to, from, bytes.to_vec());
        }
    }

    fn schedule(&mut self, at: Instant, to: NodeId, from: SocketAddr, bytes: Vec<u8>) {
        self.seq += 1;
        self.in_flight
            .insert(self.seq, InFlight { to, from, bytes });
        self.queue.push(Reverse((at, self.seq)));
    }

    fn local(&self, id: NodeId) -> Instant {
        self.now + self.nodes[id].clock_offset
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.random() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }
}

/// splitmix64: small, fast and good enough for a network model (and for the
/// choices of a test harness around one).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
