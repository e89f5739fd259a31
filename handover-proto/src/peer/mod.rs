//! The state machine.

mod checkpoint;
mod emit;
mod lifecycle;
mod outbox;
mod receive;
mod table;
mod timer;

use core::net::{Ipv4Addr, SocketAddr};
use core::num::NonZeroU64;
use heapless::Vec;

use crate::config::{Config, ConfigError, Policy, MAX_HEARTBEAT};
use crate::event::{Event, State, StateError};
use crate::stats::{Bump, Stats};
use crate::time::Clock;
#[cfg(feature = "legacy")]
use crate::wire::legacy;
use crate::wire::{self, Packet, Role, MAX_STATE};
use crate::{Instant, Rank};

use outbox::{Due, Outbox, Pending, EVENTS_PER_INPUT};
use table::{dead_interval, Table};
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
            // By format, as `Datagram::parse` tells them, without moving the
            // message into a `Datagram` (large to copy on a microcontroller).
            let handled = match bytes.first() {
                Some(&wire::MAGIC) => {
                    Packet::parse(bytes).map(|packet| self.handle_packet(now, source, &packet))
                }
                #[cfg(feature = "legacy")]
                _ => legacy::Announce::parse(bytes).map(|announce| self.handle_legacy(announce)),
                // Without handover-lib's protocol, its datagrams are of no known format.
                #[cfg(not(feature = "legacy"))]
                first => Err(first.map_or(wire::DecodeError::Empty, |&b| {
                    wire::DecodeError::UnknownFormat(b)
                })),
            };
            if let Err(e) = handled {
                trace!("dropped datagram: {}", e);
                self.stats.count_decode_error(e);
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
                    self.outbox.set_due(Due::Announce, true);
                    self.outbox.set_due(
                        Due::Legacy,
                        self.speaks_legacy() && self.state == State::Active,
                    );
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

    /// Failover: the application cannot serve now (its health check fails), so
    /// this standby must not take over. It falls silent, as a peer not yet
    /// ready, and the others forget it after its dead interval; it still hears
    /// who leads and the active's state. [`ready`](Self::ready) stands by again.
    pub fn stand_aside(&mut self, now: Instant) -> Result<(), StateError> {
        self.advance(now);
        self.expect(State::Standby)?;
        self.state = State::Listening;
        self.timers.stop(Timer::Heartbeat);
        self.outbox.set_due(Due::Announce, false);
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

    /// Whole milliseconds from `ready` to the latest instant seen, 0 before; it
    /// stops growing at [`wire::MAX_READY_MS`].
    // One copy on microcontrollers: 64-bit arithmetic is long on a Cortex-M0+.
    #[cfg_attr(target_pointer_width = "32", inline(never))]
    fn ready_ms(&self) -> u32 {
        // Saturating in u32 microseconds first keeps 64-bit division out; before
        // `ready`, `NOT_READY` lies in the future and the difference is 0.
        let micros = self
            .clock
            .now()
            .micros_since(self.ready_at)
            .min(u64::from(u32::MAX)) as u32;
        micros / 1000
    }

    /// Whether it also speaks handover-lib's v1 protocol (never without the `legacy`
    /// feature, so that the code for it is left out).
    fn speaks_legacy(&self) -> bool {
        cfg!(feature = "legacy") && self.config.legacy
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
mod tests;
