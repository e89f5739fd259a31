//! The state machine.

mod checkpoint;
mod outbox;
mod table;
mod timer;

use core::net::{Ipv4Addr, SocketAddr};
use core::num::NonZeroU64;
use heapless::Vec;

use crate::config::{Config, ConfigError, Policy, MAX_HEARTBEAT, MIN_HEARTBEAT};
use crate::event::{Destination, Event, State, StateError, Transmit};
use crate::stats::{Bump, Stats};
use crate::time::{Clock, Tick};
use crate::wire::{self, legacy, Body, Datagram, Header, Packet, Repr, Role, MAX_STATE};
use crate::{Instant, Rank};

use outbox::{Outbox, Pending, Reply, EVENTS_PER_INPUT};
use table::{dead_interval, Entry, Freshness, Table};
use timer::{Backoff, Timer, Timers};

/// A goodbye is retransmitted until the successor acknowledges it, at most this often.
const GOODBYE_ATTEMPTS: u16 = 8;
/// A goodbye without successor (leaving) is simply sent this often.
const LEAVE_ATTEMPTS: u16 = 3;

/// One instance of a service taking part in hand-over, failover or election.
///
/// `Peer` is sans-IO: it never reads a clock, touches a socket or draws a random
/// number. The adapter feeds it inputs and drains its outputs:
///
/// * **inputs**: [`handle_datagram`](Self::handle_datagram) for every datagram received
///   on the group or legacy port (and unicast replies), [`handle_timeout`](Self::handle_timeout)
///   when the deadline from [`poll_timeout`](Self::poll_timeout) has passed;
/// * **commands** from the application: [`ready`](Self::ready),
///   [`shutdown_complete`](Self::shutdown_complete), [`leave`](Self::leave),
///   [`set_state`](Self::set_state);
/// * **outputs**: [`poll_transmit`](Self::poll_transmit) (datagrams to send),
///   [`poll_event`](Self::poll_event) (events and actions), [`poll_timeout`](Self::poll_timeout)
///   (when to call `handle_timeout` next).
///
/// # Calling contract
///
/// After **every** input or command, drain the outputs in this order before waiting
/// for anything else:
///
/// 1. `poll_transmit` until it returns `None`, sending each datagram;
/// 2. `poll_event` until it returns `None`, acting on each;
/// 3. `poll_timeout`, then wait for a datagram or that deadline, whichever comes first.
///
/// `poll_timeout` returns the latest `now` seen while output is still queued, so a
/// driver that skipped a step wakes at once instead of sleeping through it. Inputs
/// may come early or repeat: `handle_timeout` before the deadline does nothing, and
/// `now` going backwards is treated as no time passing. If events are left undrained
/// the peer refuses further datagrams (counted in [`Stats::dropped_backlog`]) rather
/// than lose an event.
#[derive(Debug)]
pub struct Peer<const N: usize> {
    config: Config,
    state: State,
    /// Our claim generation; 0 until ready.
    generation: u32,
    /// Highest generation heard from anyone, ourselves included.
    max_heard: u32,
    /// When `ready` was called; [`NOT_READY`] before.
    ready_at: Instant,
    /// Latest instant seen (time never runs backwards inside the peer) and the epoch
    /// of the ticks in `table` and `timers`.
    clock: Clock,
    counter: u64,
    /// Heartbeat jitter source (xorshift32).
    rng: u32,
    /// The configured heartbeat in microseconds, converted once.
    heartbeat_us: u32,
    table: Table<N>,
    timers: Timers,
    backoff: Backoff,
    successor: Option<NonZeroU64>,
    /// The last claimer we acknowledged, named in our heartbeats.
    claim_heard: Option<NonZeroU64>,
    /// Leader last reported in `LeaderChanged`.
    leader: Option<NonZeroU64>,
    /// Application state: set by the application while active, copied from the
    /// leader's heartbeats while standing by, so a standby that takes over carries on
    /// from the last state it saw.
    app_state: Vec<u8, MAX_STATE>,
    /// The highest checkpoint this peer knows: its own while active, the active's
    /// (or, after a failover, the highest any survivor held) otherwise.
    checkpoint: u64,
    /// Active: whether `CheckpointHeld` is owed for the current checkpoint.
    held_report: checkpoint::HeldReport,
    /// Datagrams due, replies owed, events queued.
    outbox: Outbox,
    stats: Stats,
}

/// What a peer knows of another, from [`Peer::peers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PeerInfo {
    /// Its rank (the id is `rank.id`).
    pub rank: Rank,
    /// The role it last announced.
    pub role: Role,
    /// When it was last heard.
    pub last_heard: Instant,
}

/// Application state longer than [`wire::MAX_STATE`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StateTooLong {
    /// The length given.
    pub len: usize,
}

impl core::fmt::Display for StateTooLong {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "state: {} bytes, at most {MAX_STATE} fit", self.len)
    }
}

impl core::error::Error for StateTooLong {}

impl<const N: usize> Peer<N> {
    /// A peer that starts listening at `now`.
    pub fn new(config: Config, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let heartbeat_us = heartbeat_us(&config);
        Ok(Peer {
            // xorshift needs a non-zero state.
            rng: (config.seed ^ config.seed >> 32) as u32 | 1,
            heartbeat_us,
            config,
            state: State::Listening,
            generation: 0,
            max_heard: 0,
            ready_at: NOT_READY,
            clock: Clock::new(now),
            counter: 0,
            table: Table::default(),
            timers: Timers::default(),
            backoff: Backoff::default(),
            successor: None,
            claim_heard: None,
            leader: None,
            app_state: Vec::new(),
            checkpoint: 0,
            held_report: checkpoint::HeldReport::Reported,
            outbox: Outbox::default(),
            stats: Stats::default(),
        })
    }

    // ----- getters -----

    /// This instance's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where it is in its lifecycle.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its current rank.
    pub fn rank(&self) -> Rank {
        Rank {
            priority: self.config.priority,
            generation: self.generation,
            start_ms: self.config.start_ms,
            id: self.config.id,
        }
    }

    /// The peer in charge as far as this one knows (possibly itself).
    pub fn leader(&self) -> Option<u64> {
        self.leader.map(NonZeroU64::get)
    }

    /// The highest checkpoint this peer knows (0: none).
    pub fn checkpoint_seq(&self) -> u64 {
        self.checkpoint
    }

    /// Counters of received, sent and dropped datagrams.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The peers heard recently and still alive.
    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        self.table.iter().filter(|e| !e.departed).map(|e| PeerInfo {
            rank: e.rank(),
            role: e.role,
            last_heard: self.clock.instant(e.heard),
        })
    }

    /// True once the peer is [`State::Done`] and has nothing left to send: the
    /// adapter may drop it.
    pub fn is_finished(&self) -> bool {
        self.state == State::Done && self.poll_timeout().is_none()
    }

    // ----- inputs -----

    /// Handles a datagram received from `source`. Malformed, foreign, stale and
    /// own datagrams are dropped and counted in [`stats`](Self::stats).
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) {
        let now = self.advance(now);
        self.stats.received.bump();
        // Undrained events: refuse rather than overwrite a slot or overflow the queue.
        if self.outbox.has_events() {
            self.stats.dropped_backlog.bump();
            return;
        }
        // Another scope's datagram (other devices and services share the LAN) is
        // told by its first bytes: no decoding.
        if wire::is_other_scope(bytes, self.config.scope) {
            self.stats.dropped_foreign_scope.bump();
        } else {
            match Datagram::parse(bytes) {
                Err(e) => {
                    trace!("dropped datagram: {}", e);
                    self.stats.count_decode_error(e);
                }
                Ok(Datagram::Legacy(announce)) => self.handle_legacy(announce),
                Ok(Datagram::V2(packet)) => self.handle_packet(now, source, packet),
            }
        }
        self.after_input();
    }

    /// Handles expired timers. Calls before the deadline do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let tick = self.clock.tick();
        for timer in Timer::VALUES {
            if !self.timers.take_expired(timer, tick) {
                continue;
            }
            match timer {
                Timer::Heartbeat => {
                    self.outbox.announce_due = true;
                    self.outbox.legacy_due = self.config.legacy && self.state == State::Active;
                    self.schedule_heartbeat();
                }
                Timer::Retransmit => self.retransmit(),
                Timer::Checkpoint => self.repeat_checkpoint(),
                // The window only needs to be over: `check_claim` reads its absence.
                Timer::ClaimWindow => {}
            }
        }
        self.expire_peers();
        self.after_input();
    }

    // ----- commands -----

    /// The application is ready to serve: claim to be in charge (hand-over, or
    /// failover with no active peer known) or stand by.
    pub fn ready(&mut self, now: Instant) -> Result<(), StateError> {
        let now = self.advance(now);
        self.expect(State::Listening)?;
        self.ready_at = now;
        match self.config.policy {
            Policy::Failover { preempt } => match self.table.leader() {
                Some(leader) if !(preempt && self.config.priority > leader.rank().priority) => {
                    self.stand_by()
                }
                _ => self.start_claim(),
            },
            Policy::HandOver => self.start_claim(),
        }
        self.after_input();
        Ok(())
    }

    /// The application has finished shutting down after [`Event::Shutdown`]: emit
    /// [`Event::MarkComplete`] and tell the successor.
    pub fn shutdown_complete(&mut self, now: Instant) -> Result<(), StateError> {
        self.advance(now);
        self.expect(State::Yielding)?;
        self.push_event(Pending::MarkComplete);
        self.finish();
        Ok(())
    }

    /// Leaves the group at once, e.g. on SIGTERM: a goodbye tells the others so a
    /// standby takes over without waiting for the dead interval.
    pub fn leave(&mut self, now: Instant) -> Result<(), StateError> {
        self.advance(now);
        if self.state == State::Done {
            return Err(StateError { state: self.state });
        }
        self.successor = None;
        self.finish();
        Ok(())
    }

    /// Application state that heartbeats carry while this peer is active (failover:
    /// mongoose-failover's `synchronize`, e.g. the id of the last finished task).
    pub fn set_state(&mut self, state: &[u8]) -> Result<(), StateTooLong> {
        self.app_state = Vec::from_slice(state).map_err(|_| StateTooLong { len: state.len() })?;
        Ok(())
    }

    /// The addresses announced to peers from the next heartbeat on (an adapter
    /// calls this when its interfaces change); at most [`wire::MAX_ADDRESSES`] are
    /// kept.
    pub fn set_addresses(&mut self, addresses: &[Ipv4Addr]) {
        self.config.addresses = addresses
            .iter()
            .copied()
            .take(wire::MAX_ADDRESSES)
            .collect();
    }

    // ----- outputs -----

    /// Writes the next datagram to send into `buf` and says where it goes. `buf`
    /// should hold [`wire::MAX_DATAGRAM`] bytes; a datagram that does not fit is
    /// skipped and counted in [`Stats::emit_failed`].
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.advance(now);
        loop {
            let (destination, result) = if let Some(reply) = self.outbox.next_reply() {
                (
                    Destination::Reply(SocketAddr::V4(reply.to)),
                    self.emit_ack(reply, buf),
                )
            } else if let Some(checkpoint) = self.poll_checkpoint_transmit(buf) {
                checkpoint
            } else if core::mem::take(&mut self.outbox.goodbye_due) {
                (Destination::Group, self.emit_goodbye(buf))
            } else if core::mem::take(&mut self.outbox.announce_due) {
                if self.role().is_none() {
                    continue;
                }
                (Destination::Group, self.emit_announce(buf))
            } else if core::mem::take(&mut self.outbox.legacy_due) {
                let announce = legacy::Announce {
                    start_ms: self.config.start_ms,
                };
                (Destination::LegacyGroup, announce.emit(buf))
            } else {
                return None;
            };
            match result {
                Ok(len) => {
                    self.stats.sent.bump();
                    return Some(Transmit { destination, len });
                }
                Err(_) => self.stats.emit_failed.bump(),
            }
        }
    }

    /// The next event or action.
    #[must_use = "events include actions (Shutdown, MarkComplete) that must be carried out"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.outbox.next_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` when
    /// nothing is scheduled. While output is queued this is the latest `now` seen.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.has_pending_output() {
            return Some(self.clock.now());
        }
        let timers = self.timers.next();
        let expiry = match self.state {
            State::Done => None,
            _ => self
                .table
                .next_expiry(self.config.priority, self.heartbeat_us),
        };
        let next = match (timers, expiry) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.clock.instant(next))
    }

    // ----- receiving -----

    fn handle_legacy(&mut self, announce: legacy::Announce) {
        let authenticated = self.config.auth.as_ref().is_some_and(|a| !a.accept_legacy);
        if !self.config.legacy || authenticated {
            self.stats.dropped_legacy_refused.bump();
            return;
        }
        self.stats.accepted.bump();
        // A v2 peer in legacy mode echoes its own start time in v1: the v2 path decides.
        if self
            .table
            .iter()
            .any(|e| e.rank().start_ms == announce.start_ms)
        {
            return;
        }
        if matches!(self.state, State::Claiming | State::Active)
            && announce.start_ms > self.config.start_ms
        {
            info!("legacy peer started later: yielding");
            self.yield_to(None);
        }
    }

    fn handle_packet(&mut self, now: Instant, source: SocketAddr, packet: Packet<'_>) {
        let Repr { header, body } = packet.repr;
        if header.scope != self.config.scope {
            self.stats.dropped_foreign_scope.bump();
            return;
        }
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.config.auth {
            match packet.tag {
                None => {
                    self.stats.dropped_unauthenticated.bump();
                    return;
                }
                Some(tag) if !auth.verifies(now, packet.covered, tag) => {
                    self.stats.dropped_bad_tag.bump();
                    return;
                }
                Some(_) => {}
            }
        }
        if header.sender == self.config.id {
            self.stats.dropped_own.bump();
            return;
        }
        if body.to().is_some_and(|to| to != self.config.id) {
            self.stats.dropped_misdirected.bump();
            return;
        }
        let rank = match &body {
            Body::Announce(a) => Some(a.rank),
            Body::Ack(a) => Some(a.rank),
            _ => None,
        };
        // The reserved generation is refused: raising past it would wrap.
        if rank.is_some_and(|r| r.generation > MAX_GENERATION) {
            self.stats.dropped_malformed.bump();
            return;
        }
        let mut newest = true;
        if let Some(entry) = self.table.get_mut(header.sender) {
            let freshness = entry.accept_counter(header.counter);
            newest = freshness == Freshness::Newest;
            // Any datagram it has not sent before shows it alive, even one whose
            // content is superseded: with checkpoints flowing, a heartbeat
            // overtaken by one must not count as a missed heartbeat.
            if matches!(freshness, Freshness::Newest | Freshness::Reordered) && !entry.departed {
                entry.heard = self.clock.tick();
            }
            // A reordered announcement carries superseded state; a reordered ack
            // still acknowledges, and checkpoints only grow.
            let usable = match freshness {
                Freshness::Newest => !entry.departed,
                Freshness::Reordered => body.survives_reordering() && !entry.departed,
                Freshness::Duplicate | Freshness::Stale => false,
            };
            // A predecessor repeats its goodbye until we acknowledge it: our first
            // acknowledgement was lost, so send another.
            let repeated_goodbye = entry.departed
                && matches!(freshness, Freshness::Newest | Freshness::Reordered)
                && matches!(body, Body::Goodbye(g) if g.successor == Some(self.config.id));
            if repeated_goodbye {
                self.stats.accepted.bump();
                self.queue_reply(source, header.sender, 0);
                return;
            }
            if freshness == Freshness::Duplicate {
                // The same datagram heard on a second interface, or repeated.
                self.stats.dropped_duplicate.bump();
                return;
            }
            if !usable {
                self.stats.dropped_stale.bump();
                return;
            }
        } else if let Some(last) = self.table.forgotten_counter(header.sender) {
            // A sender we expired: only datagrams newer than its last one are news,
            // older ones are replays.
            if header.counter <= last {
                self.stats.dropped_stale.bump();
                return;
            }
            self.table.unforget(header.sender);
        }
        self.stats.accepted.bump();
        match body {
            Body::Announce(a) => {
                let rank = Rank::from_wire(header.sender, a.rank);
                let heartbeat = a.heartbeat_ms.clamp(
                    MIN_HEARTBEAT.as_millis() as u32,
                    MAX_HEARTBEAT.as_millis() as u32,
                ) as u16;
                let announced = self.table.get(header.sender).is_some_and(Entry::announced);
                self.upsert(&header, a.role, rank, Some(heartbeat));
                // What it can give, before anything is owed by it.
                #[cfg(feature = "checkpoints")]
                self.learn_capabilities(header.sender, &packet.extensions);
                // The first announcement (the entry may have come from an ack) tells
                // its name and addresses.
                if !announced && self.table.get(header.sender).is_some() {
                    self.peer_up(header.sender, &a);
                    // A standby new to us gets the checkpoint it would have missed.
                    if self.held_report != checkpoint::HeldReport::Reported || self.checkpoint > 0 {
                        self.owe_checkpoint(header.sender);
                    }
                }
                if a.role == Role::Claiming {
                    self.queue_reply(source, header.sender, rank.generation);
                }
                let heard_us = a.claim_heard == Some(self.config.id);
                self.on_remote(now, a.role, rank, a.ready_ms, heard_us);
                if a.role == Role::Active {
                    self.refresh_leader();
                    if self.leader.is_some_and(|l| l.get() == header.sender) {
                        self.sync(a.state);
                    }
                }
                #[cfg(feature = "checkpoints")]
                self.handle_checkpoint_record(header.sender, packet.extensions);
            }
            Body::Ack(ack) => {
                let rank = Rank::from_wire(header.sender, ack.rank);
                self.upsert(&header, ack.role, rank, None);
                // Only a claimer counts them: a late one must not pass for an
                // acknowledgement of the active's checkpoint.
                if ack.generation >= self.generation && self.state == State::Claiming {
                    if let Some(entry) = self.table.get_mut(header.sender) {
                        entry.set_owes_ack(false);
                    }
                }
                if self.state == State::Done
                    && self.successor.is_some_and(|s| s.get() == header.sender)
                {
                    // The successor has our goodbye: nothing more to send.
                    self.timers.stop(Timer::Retransmit);
                }
                if newest {
                    self.on_remote(now, ack.role, rank, ack.ready_ms, true);
                }
            }
            Body::Goodbye(goodbye) => {
                #[cfg(feature = "checkpoints")]
                self.handle_checkpoint_record(header.sender, packet.extensions);
                self.handle_goodbye(source, &header, goodbye)
            }
            #[cfg(feature = "checkpoints")]
            Body::Checkpoint(c) => self.handle_checkpoint(source, header.sender, c.seq),
            #[cfg(feature = "checkpoints")]
            Body::CheckpointAck(ack) => self.handle_checkpoint_ack(header.sender, ack.seq),
        }
    }

    fn handle_goodbye(&mut self, source: SocketAddr, header: &Header, goodbye: wire::Goodbye) {
        let id = header.sender;
        if goodbye.successor == Some(self.config.id) {
            self.queue_reply(source, id, 0);
        }
        let tick = self.clock.tick();
        let announced = match self.table.get_mut(id) {
            Some(entry) => {
                entry.departed = true;
                entry.heard = tick;
                entry.announced()
            }
            None => {
                // Remember the departure so retransmitted goodbyes are recognised.
                let mut entry = Entry::new(id, Role::Yielding, tick, header.counter);
                entry.departed = true;
                if self.table.insert(entry).is_err() {
                    self.stats.table_full.bump();
                }
                false
            }
        };
        if announced {
            self.push_event(Pending::PeerDown(id.into()));
        }
        if goodbye.successor == Some(self.config.id) {
            self.push_event(Pending::PredecessorDone(id.into()));
        }
    }

    /// Records what a datagram says of its sender (announcements also tell its
    /// heartbeat interval).
    fn upsert(&mut self, header: &Header, role: Role, rank: Rank, hb: Option<u16>) {
        self.max_heard = self.max_heard.max(rank.generation);
        let tick = self.clock.tick();
        let entry = match self.table.get_mut(header.sender) {
            Some(entry) => {
                entry.heard = tick;
                // A reordered ack must not roll back what a newer datagram said.
                if header.counter != entry.counter {
                    return;
                }
                entry
            }
            None => match self
                .table
                .insert(Entry::new(header.sender, role, tick, header.counter))
            {
                Ok(entry) => entry,
                Err(_) => {
                    self.stats.table_full.bump();
                    return;
                }
            },
        };
        entry.set_rank(rank);
        entry.role = role;
        if let Some(hb) = hb {
            entry.set_heartbeat_ms(hb);
        }
    }

    fn peer_up(&mut self, id: u64, announce: &wire::Announce<'_>) {
        let name = Vec::from_slice(announce.name).unwrap_or_default();
        let addresses = announce
            .addresses
            .chunks_exact(4)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            .collect();
        self.outbox.peer_up(id, name, addresses);
    }

    /// The decision at the heart of the protocol: what another peer's role, rank and
    /// time since ready mean for this one. `heard_us`: it acknowledged our claim.
    fn on_remote(&mut self, now: Instant, role: Role, rank: Rank, ready_ms: u32, heard_us: bool) {
        let mine = self.rank();
        match (self.config.policy, self.state) {
            (Policy::HandOver, State::Claiming | State::Active) => {
                // It became ready strictly before us: it sent `ready_ms` no later than
                // now, so its ready time is at most now - ready_ms < our ready time.
                let earlier = ready_ms > self.ready_ms(now);
                // Contact during our claim: we hear it while claiming, or it tells us it
                // heard our claim (its acknowledgements may all have been lost).
                let contact = self.state == State::Claiming || heard_us;
                if earlier && contact && rank.generation >= self.generation {
                    // The newer instance outranks the earlier one whatever the clocks say.
                    self.raise_generation();
                    debug!("raising claim generation to {}", self.generation);
                    if self.state == State::Claiming {
                        self.restart_claim();
                    } else {
                        self.outbox.announce_due = true;
                    }
                } else if matches!(role, Role::Claiming | Role::Active) && rank > mine {
                    self.yield_to(NonZeroU64::new(rank.id));
                }
            }
            (Policy::Failover { preempt }, State::Claiming) => {
                let defer = match role {
                    Role::Active => !(preempt && mine.priority > rank.priority),
                    Role::Claiming => rank > mine,
                    _ => false,
                };
                if defer {
                    self.stand_by();
                }
            }
            (Policy::Failover { preempt }, State::Active) => {
                let demote = match role {
                    Role::Active => rank > mine,
                    Role::Claiming => preempt && rank.priority > mine.priority,
                    _ => false,
                };
                if demote {
                    self.push_event(Pending::Demoted);
                    self.stand_by();
                }
            }
            (Policy::Failover { preempt: true }, State::Standby)
                if role == Role::Active && mine.priority > rank.priority =>
            {
                self.start_claim();
            }
            _ => {}
        }
    }

    fn sync(&mut self, state: &[u8]) {
        if self.state == State::Active {
            return;
        }
        if self.outbox.synced(state) {
            // Within MAX_STATE: the outbox took the same bytes.
            self.app_state.clear();
            let _ = self.app_state.extend_from_slice(state);
        }
    }

    // ----- transitions -----

    /// Claims with one more than the highest generation heard; acknowledgements of
    /// the old generation no longer count. Generations heard never exceed
    /// [`MAX_GENERATION`] (announcements above it are refused), and ours stops there.
    fn raise_generation(&mut self) {
        self.generation = self
            .max_heard
            .max(self.generation)
            .saturating_add(1)
            .min(MAX_GENERATION);
        self.max_heard = self.generation;
        self.table.owe_acks(None);
    }

    fn start_claim(&mut self) {
        self.state = State::Claiming;
        self.raise_generation();
        self.timers.stop(Timer::Heartbeat);
        // Listen for peers we do not know yet for up to one heartbeat; a peer that has
        // listened for a whole dead interval already knows them all.
        // Ticks count from the peer's creation until the clock's epoch first moves,
        // more than a dead interval later.
        let known_all: Tick = self.dead_interval();
        let now = self.clock.tick();
        let window_end = now
            .saturating_add(self.heartbeat_us)
            .min(known_all.max(now));
        self.timers.set(Timer::ClaimWindow, window_end);
        info!("claiming with generation {}", self.generation);
        self.restart_claim();
    }

    /// Sends the claim at once and retransmits it with a fresh backoff.
    fn restart_claim(&mut self) {
        self.outbox.announce_due = true;
        self.outbox.legacy_due = self.config.legacy;
        self.restart_backoff();
    }

    fn become_active(&mut self) {
        info!("elected with generation {}", self.generation);
        self.state = State::Active;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.announce_due = true;
        self.outbox.legacy_due = self.config.legacy;
        self.schedule_heartbeat();
        self.push_event(Pending::Elected);
        // Ask the standbys what they hold: one may have heard more from the peer
        // this one replaces.
        self.publish_checkpoint(None);
    }

    fn stand_by(&mut self) {
        self.stop_checkpoint();
        self.state = State::Standby;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.announce_due = true;
        self.schedule_heartbeat();
    }

    fn yield_to(&mut self, successor: Option<NonZeroU64>) {
        info!("superseded: shutting down");
        self.stop_checkpoint();
        self.state = State::Yielding;
        self.successor = successor;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.announce_due = true;
        if !self.timers.is_set(Timer::Heartbeat) {
            self.schedule_heartbeat();
        }
        let successor = self.successor.map_or(0, NonZeroU64::get);
        self.push_event(Pending::Shutdown(successor.into()));
    }

    /// Enters `Done` and starts sending the goodbye.
    fn finish(&mut self) {
        self.stop_checkpoint();
        self.state = State::Done;
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.announce_due = false;
        self.outbox.legacy_due = false;
        self.outbox.goodbye_due = true;
        self.restart_backoff();
        self.refresh_leader();
    }

    /// A fresh backoff, its first retransmission scheduled.
    fn restart_backoff(&mut self) {
        self.backoff = Backoff::default();
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Retransmit, self.clock.after(delay));
    }

    fn retransmit(&mut self) {
        let limit = match (self.state, self.successor) {
            (State::Claiming, _) => u16::MAX,
            (State::Done, Some(_)) => GOODBYE_ATTEMPTS,
            (State::Done, None) => LEAVE_ATTEMPTS,
            _ => return,
        };
        if self.backoff.attempts >= limit {
            return;
        }
        if self.state == State::Claiming {
            self.outbox.announce_due = true;
            self.outbox.legacy_due = self.config.legacy;
        } else {
            self.outbox.goodbye_due = true;
        }
        let delay = self.backoff.next_delay(self.heartbeat_us);
        if self.backoff.attempts < limit {
            self.timers.set(Timer::Retransmit, self.clock.after(delay));
        }
    }

    fn expire_peers(&mut self) {
        if self.state == State::Done {
            return;
        }
        let (priority, heartbeat_us) = (self.config.priority, self.heartbeat_us);
        let tick = self.clock.tick();
        // Expire only as many as the event queue can report; the rest wait for the
        // next call, which `poll_timeout` schedules at once.
        while self.outbox.event_room() >= EVENTS_PER_INPUT {
            let Some(id) = self
                .table
                .iter()
                .find(|e| e.expires_at(priority, heartbeat_us) <= tick)
                .map(Entry::id)
            else {
                break;
            };
            if let Some(entry) = self.table.remove(id) {
                if entry.announced() && !entry.departed {
                    debug!("peer {} fell silent", id);
                    self.push_event(Pending::PeerDown(id.into()));
                }
            }
        }
    }

    /// Work common to every input: leader bookkeeping, failover takeover, claim
    /// completion.
    fn after_input(&mut self) {
        self.refresh_leader();
        // A standby takes over when nobody is in charge and no claimer of higher
        // (priority, id) is known. Generations are left out: a new claim always carries
        // a higher one, so comparing them would let standbys leapfrog each other.
        let me = (self.config.priority, self.config.id);
        let stronger_claimer = self
            .table
            .iter()
            .any(|e| e.role == Role::Claiming && !e.departed && (e.rank().priority, e.id()) > me);
        if self.state == State::Standby && self.leader.is_none() && !stronger_claimer {
            self.start_claim();
        }
        if self.state == State::Claiming && self.claim_complete() {
            self.become_active();
            self.refresh_leader();
        }
        self.check_checkpoint_held();
    }

    fn claim_complete(&self) -> bool {
        !self.timers.is_set(Timer::ClaimWindow)
            && self.table.iter().all(|e| e.departed || !e.owes_ack())
    }

    fn refresh_leader(&mut self) {
        let leader = match self.state {
            State::Active => NonZeroU64::new(self.config.id),
            _ => self.table.leader().and_then(|e| NonZeroU64::new(e.id())),
        };
        if leader != self.leader {
            self.leader = leader;
            self.outbox.forget_synced();
            self.push_event(match leader {
                Some(id) => Pending::LeaderChanged(id.get().into()),
                None => Pending::LeaderLost,
            });
        }
    }

    // ----- emitting -----

    /// Encodes `packet`, tagged when the group has a key.
    fn seal(&self, repr: &Repr<'_>, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.config.auth {
            return repr.emit_tagged(&auth.key, buf);
        }
        repr.emit(buf)
    }

    /// Encodes `repr`, with what this peer supports and the checkpoint it holds
    /// (if it holds one) as extension records.
    fn seal_with_progress(
        &self,
        repr: &Repr<'_>,
        buf: &mut [u8],
    ) -> Result<usize, wire::EmitError> {
        #[cfg(feature = "checkpoints")]
        return self.seal_with_checkpoint(repr, buf);
        #[cfg(not(feature = "checkpoints"))]
        self.seal(repr, buf)
    }

    fn emit_announce(&mut self, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        let role = self.role().unwrap_or(Role::Yielding);
        let mut addresses = [0u8; 4 * wire::MAX_ADDRESSES];
        for (chunk, a) in addresses.chunks_exact_mut(4).zip(&self.config.addresses) {
            chunk.copy_from_slice(&a.octets());
        }
        let header = self.next_header();
        let state: &[u8] = if self.state == State::Active {
            &self.app_state
        } else {
            &[]
        };
        let repr = Repr {
            header,
            body: Body::Announce(wire::Announce {
                role,
                rank: self.rank().to_wire(),
                ready_ms: self.ready_ms(self.clock.now()),
                heartbeat_ms: self.heartbeat_ms(),
                claim_heard: self.claim_heard.map(NonZeroU64::get),
                name: self.config.name.as_bytes(),
                addresses: &addresses[..4 * self.config.addresses.len()],
                state,
            }),
        };
        self.seal_with_progress(&repr, buf)
    }

    fn emit_ack(&mut self, reply: Reply, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        let repr = Repr {
            header: self.next_header(),
            body: Body::Ack(wire::Ack {
                to: reply.id.into(),
                generation: reply.generation,
                role: self.role().unwrap_or(Role::Yielding),
                rank: self.rank().to_wire(),
                ready_ms: self.ready_ms(self.clock.now()),
            }),
        };
        self.seal(&repr, buf)
    }

    fn emit_goodbye(&mut self, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        let repr = Repr {
            header: self.next_header(),
            body: Body::Goodbye(wire::Goodbye {
                successor: self.successor.map(NonZeroU64::get),
            }),
        };
        self.seal_with_progress(&repr, buf)
    }

    fn next_header(&mut self) -> Header {
        self.counter += 1;
        Header {
            scope: self.config.scope,
            sender: self.config.id,
            counter: self.counter,
        }
    }

    // ----- helpers -----

    fn role(&self) -> Option<Role> {
        match self.state {
            State::Claiming => Some(Role::Claiming),
            State::Active => Some(Role::Active),
            State::Standby => Some(Role::Standby),
            State::Yielding => Some(Role::Yielding),
            State::Listening | State::Done => None,
        }
    }

    fn expect(&self, state: State) -> Result<(), StateError> {
        if self.state == state {
            Ok(())
        } else {
            Err(StateError { state: self.state })
        }
    }

    fn advance(&mut self, now: Instant) -> Instant {
        if let Some(shift) = self.clock.advance(now) {
            self.table.rebase(shift);
            self.timers.rebase(shift);
        }
        self.clock.now()
    }

    fn has_pending_output(&self) -> bool {
        self.outbox.has_output()
            // Expiries postponed for lack of event room.
            || (self.state != State::Done && self.outbox.event_room() < EVENTS_PER_INPUT)
    }

    /// Whole milliseconds since `ready`, 0 before; it stops growing at
    /// [`wire::MAX_READY_MS`].
    fn ready_ms(&self, now: Instant) -> u32 {
        // Saturating in u32 microseconds first keeps 64-bit division out; before
        // `ready`, `NOT_READY` lies in the future and the difference is 0.
        let micros = now.micros_since(self.ready_at).min(u64::from(u32::MAX)) as u32;
        micros / 1000
    }

    fn heartbeat_ms(&self) -> u32 {
        self.heartbeat_us / 1000
    }

    fn dead_interval(&self) -> u32 {
        dead_interval(self.heartbeat_us, self.config.priority)
    }

    /// Next heartbeat, up to 10 % early so peers do not stay in lockstep.
    fn schedule_heartbeat(&mut self) {
        let hb = self.heartbeat_us;
        let jitter = self.next_random() % (hb / 10 + 1);
        self.timers
            .set(Timer::Heartbeat, self.clock.after(hb - jitter));
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: plenty for jitter, and 32-bit arithmetic on 32-bit targets.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    fn queue_reply(&mut self, to: SocketAddr, id: u64, generation: u32) {
        // The protocol runs on IPv4 multicast; replies go to IPv4 senders only.
        let SocketAddr::V4(to) = to else {
            return;
        };
        if self.role().is_none() {
            return;
        }
        if generation > 0 {
            self.claim_heard = NonZeroU64::new(id);
        }
        if !self.outbox.reply(to, id, generation) {
            self.stats.dropped_replies.bump();
        }
    }

    fn push_event(&mut self, event: Pending) {
        self.outbox.push(event);
    }
}

// A peer with an 8-entry table fits in 1 KiB + 80 B on 32-bit targets (1,096 bytes on
// thumbv7em with authentication: 68 of them the slot that keeps a queued `Synced`
// event's payload, 24 the checkpoint and its pending acknowledgement): the build fails
// if it grows past that.
#[cfg(target_pointer_width = "32")]
const _: () = assert!(core::mem::size_of::<Peer<8>>() <= 1104);

/// The highest claim generation: announcements of a higher one are dropped as
/// malformed (honest peers, one claim at a time, never get near it), so that raising
/// the generation cannot overflow.
pub const MAX_GENERATION: u32 = u32::MAX - 1;

/// `ready_at` before `ready`: the end of time.
const NOT_READY: Instant = Instant::from_micros(u64::MAX);

/// The configured heartbeat in microseconds; `validate` keeps it within 60 s.
fn heartbeat_us(config: &Config) -> u32 {
    let hb = config.heartbeat.min(MAX_HEARTBEAT);
    hb.as_secs() as u32 * 1_000_000 + hb.subsec_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Successor;

    /// Guards the memory of a peer with an 8-entry table on 64-bit hosts, where
    /// `usize` fields take 8 bytes (1112 today); 32-bit targets are held to 1088 bytes at
    /// compile time (above).
    const SCOPE: u32 = 0x5c09e;

    fn peer(id: u64, policy: Policy) -> Peer<8> {
        let mut c = Config::new(SCOPE, id, 1_000, id);
        c.policy = policy;
        c.heartbeat = core::time::Duration::from_millis(100);
        Peer::new(c, Instant::ZERO).unwrap()
    }

    fn at_ms(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    /// Hands `p` an announcement of `sender`, without extension records.
    fn hear(p: &mut Peer<8>, now: Instant, sender: u64, counter: u64, a: wire::Announce<'_>) {
        hear_extended(p, now, sender, counter, a, &[]);
    }

    fn announce(role: Role, generation: u32, ready_ms: u32, state: &[u8]) -> wire::Announce<'_> {
        wire::Announce {
            role,
            rank: wire::Rank {
                priority: crate::DEFAULT_PRIORITY,
                generation,
                start_ms: 2_000,
            },
            ready_ms,
            heartbeat_ms: 100,
            claim_heard: None,
            name: b"",
            addresses: &[],
            state,
        }
    }

    fn drain(p: &mut Peer<8>) {
        while p.poll_event().is_some() {}
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        while p.poll_transmit(p.clock.now(), &mut buf).is_some() {}
    }

    /// Runs `p`'s timers until `until`, draining its output.
    fn run_until(p: &mut Peer<8>, until: Instant) {
        while let Some(t) = p.poll_timeout().filter(|&t| t <= until) {
            p.handle_timeout(t);
            drain(p);
        }
        p.handle_timeout(until);
        drain(p);
    }

    #[test]
    fn the_reserved_generation_is_refused_and_raising_never_wraps() {
        let mut p = peer(1, Policy::HandOver);
        p.ready(at_ms(0)).unwrap();
        drain(&mut p);
        // An earlier-ready claimer announcing the reserved generation: refused.
        let a = announce(Role::Claiming, u32::MAX, 5_000, b"");
        hear(&mut p, at_ms(1), 2, 1, a);
        assert_eq!(p.stats().dropped_malformed, 1);
        assert_eq!(p.state(), State::Claiming);
        // The highest generation allowed: raising stops there, however often it
        // comes back (4 billion claims away for honest peers).
        for counter in 2..5 {
            let a = announce(Role::Claiming, MAX_GENERATION, 5_000, b"");
            hear(&mut p, at_ms(counter), 2, counter, a);
            drain(&mut p);
            assert_eq!(p.generation, MAX_GENERATION);
        }
        assert_eq!(p.max_heard, MAX_GENERATION);
    }

    #[test]
    fn an_acknowledgement_with_the_reserved_generation_is_refused() {
        let mut p = peer(1, Policy::HandOver);
        p.ready(at_ms(0)).unwrap();
        drain(&mut p);
        let a = announce(Role::Active, u32::MAX, 5_000, b"");
        let ack = Repr {
            header: Header {
                scope: SCOPE,
                sender: 2,
                counter: 1,
            },
            body: Body::Ack(wire::Ack {
                to: 1,
                generation: p.generation,
                role: Role::Active,
                rank: a.rank,
                ready_ms: 5_000,
            }),
        };
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let len = ack.emit(&mut buf).unwrap();
        p.handle_datagram(
            at_ms(1),
            SocketAddr::from(([10, 0, 0, 2], 1538)),
            &buf[..len],
        );
        assert_eq!(p.stats().dropped_malformed, 1);
        assert!(p.max_heard <= MAX_GENERATION);
        // A later claim still raises without wrapping.
        hear(
            &mut p,
            at_ms(2),
            3,
            1,
            announce(Role::Claiming, 1, 5_000, b""),
        );
        assert!(p.generation >= 1 && p.generation <= MAX_GENERATION);
    }

    #[test]
    fn a_queued_shutdown_keeps_its_successor_after_leave() {
        let mut p = peer(1, Policy::HandOver);
        p.ready(at_ms(0)).unwrap();
        run_until(&mut p, at_ms(1_000));
        assert_eq!(p.state(), State::Active);
        // A newer instance claims: we yield to it.
        hear(
            &mut p,
            at_ms(1_001),
            2,
            1,
            announce(Role::Claiming, 9, 0, b""),
        );
        p.leave(at_ms(1_002)).unwrap();
        let shutdown =
            core::iter::from_fn(|| p.poll_event()).find(|e| matches!(e, Event::Shutdown { .. }));
        assert_eq!(
            shutdown,
            Some(Event::Shutdown {
                successor: Successor::Peer(2)
            })
        );
    }

    #[test]
    fn a_queued_sync_keeps_the_leaders_state_after_set_state() {
        let mut p = peer(1, Policy::Failover { preempt: false });
        let leader = announce(Role::Active, 1, 60_000, b"leader's");
        hear(&mut p, at_ms(0), 2, 1, leader);
        drain(&mut p);
        p.ready(at_ms(1)).unwrap();
        drain(&mut p);
        assert_eq!(p.state(), State::Standby);
        hear(
            &mut p,
            at_ms(100),
            2,
            2,
            announce(Role::Active, 1, 60_100, b"task 7"),
        );
        p.set_state(b"mine").unwrap();
        let synced =
            core::iter::from_fn(|| p.poll_event()).find(|e| matches!(e, Event::Synced { .. }));
        let expected = Vec::from_slice(b"task 7").unwrap();
        assert_eq!(synced, Some(Event::Synced { state: expected }));
    }

    #[test]
    fn a_copy_heard_on_a_second_interface_is_a_duplicate_not_stale() {
        let mut p = peer(1, Policy::HandOver);
        for _ in 0..2 {
            hear(&mut p, at_ms(0), 2, 1, announce(Role::Active, 1, 100, b""));
            drain(&mut p);
        }
        let stats = p.stats();
        assert_eq!((stats.accepted, stats.dropped_duplicate), (1, 1));
        assert_eq!(stats.dropped_stale, 0);
    }

    /// Hands `p` an announcement of `sender` with extension records `records`.
    fn hear_extended(
        p: &mut Peer<8>,
        now: Instant,
        sender: u64,
        counter: u64,
        a: wire::Announce<'_>,
        records: &[wire::Extension<'_>],
    ) {
        let repr = Repr {
            header: Header {
                scope: SCOPE,
                sender,
                counter,
            },
            body: Body::Announce(a),
        };
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let len = repr.emit_extended(records, &mut buf).unwrap();
        let from = SocketAddr::from(([10, 0, 0, sender as u8], 1538));
        p.handle_datagram(now, from, &buf[..len]);
    }

    /// An active peer owes `CheckpointHeld` once every standby that can
    /// acknowledge has; a standby that said nothing of checkpoints (firmware built
    /// without them) is owed nothing, and never holds the report back.
    #[cfg(feature = "checkpoints")]
    #[test]
    fn only_standbys_that_say_they_acknowledge_checkpoints_are_waited_for() {
        let held = |p: &mut Peer<8>| {
            core::iter::from_fn(|| p.poll_event())
                .filter_map(|e| match e {
                    Event::CheckpointHeld { seq } => Some(seq),
                    _ => None,
                })
                .last()
        };
        let mut p = peer(1, Policy::Failover { preempt: false });
        p.ready(at_ms(0)).unwrap();
        run_until(&mut p, at_ms(1_000));
        assert_eq!(p.state(), State::Active);
        // A firmware standby: announcements without records, and no ack ever.
        hear(
            &mut p,
            at_ms(1_001),
            2,
            1,
            announce(Role::Standby, 0, 0, b""),
        );
        drain(&mut p);
        p.checkpoint(at_ms(1_002), 5).unwrap();
        let mut seen = None;
        let mut t = 1_002;
        while t < 2_000 && seen.is_none() {
            t += 50;
            hear(&mut p, at_ms(t), 2, t, announce(Role::Standby, 0, 0, b""));
            p.handle_timeout(at_ms(t));
            seen = held(&mut p);
            drain(&mut p);
        }
        assert_eq!(
            seen,
            Some(5),
            "held is reported without the firmware standby"
        );

        // A standby that says it acknowledges: waited for until it does.
        let caps = wire::Capabilities::CHECKPOINTS.0.to_le_bytes();
        let record = [wire::Extension {
            kind: wire::EXTENSION_CAPABILITIES,
            data: &caps[..1],
        }];
        let capable = |a| announce(Role::Standby, 0, 0, a);
        hear_extended(&mut p, at_ms(t + 1), 3, 1, capable(b""), &record);
        drain(&mut p);
        p.checkpoint(at_ms(t + 2), 6).unwrap();
        for k in 1..20 {
            let now = at_ms(t + 2 + k * 50);
            hear_extended(&mut p, now, 3, 1 + k, capable(b""), &record);
            hear(&mut p, now, 2, t + k, announce(Role::Standby, 0, 0, b""));
            p.handle_timeout(now);
            assert_eq!(
                held(&mut p),
                None,
                "held before the capable standby acknowledged"
            );
            drain(&mut p);
        }
        let ack = Repr {
            header: Header {
                scope: SCOPE,
                sender: 3,
                counter: 100,
            },
            body: Body::CheckpointAck(wire::CheckpointAck { to: 1, seq: 6 }),
        };
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        let len = ack.emit(&mut buf).unwrap();
        let now = at_ms(t + 1_100);
        p.handle_datagram(now, SocketAddr::from(([10, 0, 0, 3], 1538)), &buf[..len]);
        p.handle_timeout(now);
        assert_eq!(held(&mut p), Some(6));
    }

    #[test]
    fn peer_with_eight_entries_stays_within_budget() {
        let size = core::mem::size_of::<Peer<8>>();
        // 1,112 bytes until the counter of unknown critical extensions (4 bytes, 8
        // with alignment) came with the extension records; 1,120 until checkpoints
        // (the checkpoint, 8; its acknowledgement's address and flag, 8).
        assert!(size <= 1136, "Peer<8> grew to {size} bytes");
    }
}
