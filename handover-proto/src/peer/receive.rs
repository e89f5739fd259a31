//! Receiving: a datagram is admitted (its scope, its tag, its sender, whether it
//! is news), then dispatched to the handler of its kind.

use core::net::{Ipv4Addr, SocketAddr};
use core::num::NonZeroU64;

use heapless::Vec;

use super::outbox::{Due, Pending};
use super::table::{Entry, Freshness};
use super::timer::Timer;
use super::{checkpoint, Peer, MAX_GENERATION};
use crate::config::{Policy, MAX_HEARTBEAT, MIN_HEARTBEAT};
use crate::event::State;
use crate::stats::Bump;
#[cfg(feature = "legacy")]
use crate::wire::legacy;
use crate::wire::{self, Body, Header, Packet, Repr, Role};
use crate::{Instant, Rank};

impl<const N: usize> Peer<N> {
    #[cfg(feature = "legacy")]
    pub(super) fn handle_legacy(&mut self, announce: legacy::Announce) {
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

    /// A v2 datagram: admitted, then handled by its kind.
    pub(super) fn handle_packet(&mut self, now: Instant, source: SocketAddr, packet: &Packet<'_>) {
        if let Some(newest) = self.admit(now, source, packet) {
            self.stats.accepted.bump();
            self.dispatch(source, packet, newest);
        }
    }

    /// Whether `packet` is for this peer and news: its scope, its tag, its
    /// sender, and where its counter stands. `None` if it was dropped (and counted)
    /// or needs no more than it got here; else whether it is the newest from its
    /// sender.
    #[inline(always)] // one caller: as compact as one function
    fn admit(&mut self, now: Instant, source: SocketAddr, packet: &Packet<'_>) -> Option<bool> {
        // By reference: a message is large to copy on a microcontroller.
        let Repr { header, body } = &packet.repr;
        if header.scope != self.config.scope {
            self.stats.dropped_foreign_scope.bump();
            return None;
        }
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.config.auth {
            match packet.tag {
                None => {
                    self.stats.dropped_unauthenticated.bump();
                    return None;
                }
                Some(tag) if !auth.verifies(now, packet.covered, tag) => {
                    self.stats.dropped_bad_tag.bump();
                    return None;
                }
                Some(_) => {}
            }
        }
        #[cfg(not(feature = "auth"))]
        let _ = now;
        if header.sender == self.config.id {
            self.stats.dropped_own.bump();
            return None;
        }
        if body.to().is_some_and(|to| to != self.config.id) {
            self.stats.dropped_misdirected.bump();
            return None;
        }
        let rank = match body {
            Body::Announce(a) => Some(a.rank),
            Body::Ack(a) => Some(a.rank),
            _ => None,
        };
        // The reserved generation is refused: raising past it would wrap.
        if rank.is_some_and(|r| r.generation > MAX_GENERATION) {
            self.stats.dropped_malformed.bump();
            return None;
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
                return None;
            }
            if freshness == Freshness::Duplicate {
                // The same datagram heard on a second interface, or repeated.
                self.stats.dropped_duplicate.bump();
                return None;
            }
            if !usable {
                self.stats.dropped_stale.bump();
                return None;
            }
        } else if let Some(last) = self.table.forgotten_counter(header.sender) {
            // A sender we expired: only datagrams newer than its last one are news,
            // older ones are replays.
            if header.counter <= last {
                self.stats.dropped_stale.bump();
                return None;
            }
            self.table.unforget(header.sender);
        }
        Some(newest)
    }

    /// One arm per message kind.
    #[inline(always)] // one caller: as compact as one function
    fn dispatch(&mut self, source: SocketAddr, packet: &Packet<'_>, newest: bool) {
        let Repr { header, body } = &packet.repr;
        match body {
            Body::Announce(a) => self.handle_announce(source, header, a, packet.extensions),
            Body::Ack(ack) => self.handle_ack(header, *ack, newest),
            Body::Goodbye(goodbye) => {
                #[cfg(feature = "checkpoints")]
                self.handle_checkpoint_record(header.sender, packet.extensions);
                self.handle_goodbye(source, header, *goodbye)
            }
            #[cfg(feature = "checkpoints")]
            Body::Checkpoint(c) => self.handle_checkpoint(source, header.sender, c.seq),
            #[cfg(feature = "checkpoints")]
            Body::CheckpointAck(ack) => self.handle_checkpoint_ack(header.sender, ack.seq),
        }
    }

    /// A claim or a heartbeat: who it is, its rank, and (from the active) its
    /// state and checkpoint.
    #[inline(always)] // one caller: as compact as one function
    fn handle_announce(
        &mut self,
        source: SocketAddr,
        header: &Header,
        a: &wire::Announce<'_>,
        extensions: wire::Extensions<'_>,
    ) {
        let rank = Rank::from_wire(header.sender, a.rank);
        let heartbeat = a.heartbeat_ms.clamp(
            MIN_HEARTBEAT.as_millis() as u32,
            MAX_HEARTBEAT.as_millis() as u32,
        ) as u16;
        let first = self.upsert(header, a.role, rank, Some(heartbeat));
        // What it can give, before anything is owed by it.
        #[cfg(feature = "checkpoints")]
        self.learn_capabilities(header.sender, &extensions);
        // The first announcement (the entry may have come from an ack) tells
        // its name and addresses.
        if first {
            self.peer_up(header.sender, a);
            // A standby new to us gets the checkpoint it would have missed.
            if self.held_report != checkpoint::HeldReport::Reported || self.checkpoint > 0 {
                self.owe_checkpoint(header.sender);
            }
        }
        if a.role == Role::Claiming {
            self.queue_reply(source, header.sender, rank.generation);
        }
        let heard_us = a.claim_heard == Some(self.config.id);
        self.on_remote(a.role, rank, a.ready_ms, heard_us);
        if a.role == Role::Active {
            self.refresh_leader();
            if self.leader.is_some_and(|l| l.get() == header.sender) {
                self.sync(a.state);
            }
        }
        #[cfg(feature = "checkpoints")]
        self.handle_checkpoint_record(header.sender, extensions);
        #[cfg(not(feature = "checkpoints"))]
        let _ = extensions;
    }

    /// An acknowledgement of our claim or of our goodbye.
    #[inline(always)] // one caller: as compact as one function
    fn handle_ack(&mut self, header: &Header, ack: wire::Ack, newest: bool) {
        let rank = Rank::from_wire(header.sender, ack.rank);
        let _ = self.upsert(header, ack.role, rank, None);
        // Only a claimer counts them: a late one must not pass for an
        // acknowledgement of the active's checkpoint.
        if ack.generation >= self.generation && self.state == State::Claiming {
            if let Some(entry) = self.table.get_mut(header.sender) {
                entry.set_owes_ack(false);
            }
        }
        if self.state == State::Done && self.successor.is_some_and(|s| s.get() == header.sender) {
            // The successor has our goodbye: nothing more to send.
            self.timers.stop(Timer::Retransmit);
        }
        if newest {
            self.on_remote(ack.role, rank, ack.ready_ms, true);
        }
    }

    pub(super) fn handle_goodbye(
        &mut self,
        source: SocketAddr,
        header: &Header,
        goodbye: wire::Goodbye,
    ) {
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
    /// heartbeat interval); whether this is the first announcement it is known by.
    pub(super) fn upsert(
        &mut self,
        header: &Header,
        role: Role,
        rank: Rank,
        hb: Option<u16>,
    ) -> bool {
        self.max_heard = self.max_heard.max(rank.generation);
        let tick = self.clock.tick();
        let entry = match self.table.get_mut(header.sender) {
            Some(entry) => {
                entry.heard = tick;
                // A reordered ack must not roll back what a newer datagram said.
                if header.counter != entry.counter {
                    return false;
                }
                entry
            }
            None => {
                if matches!(role, Role::Active | Role::Claiming) && self.table.is_full() {
                    self.displace_standby();
                }
                match self
                    .table
                    .insert(Entry::new(header.sender, role, tick, header.counter))
                {
                    Ok(entry) => entry,
                    Err(_) => {
                        self.stats.table_full.bump();
                        return false;
                    }
                }
            }
        };
        entry.set_rank(rank);
        entry.role = role;
        let first = hb.is_some() && !entry.announced();
        if let Some(hb) = hb {
            entry.set_heartbeat_ms(hb);
        }
        first
    }

    /// Every slot holds a live peer, and an active or a claimer is new: a standby
    /// gives its slot up. A standby that could not record the active would take it
    /// for absent and claim against it, and the two would demote each other in turn
    /// for as long as the fleet outnumbers the table.
    fn displace_standby(&mut self) {
        self.stats.table_full.bump();
        self.forget(&|e: &Entry| e.role == Role::Standby && !e.departed);
    }

    pub(super) fn peer_up(&mut self, id: u64, announce: &wire::Announce<'_>) {
        let name = Vec::from_slice(announce.name).unwrap_or_default();
        // Pushed, not collected: collecting panics past the capacity, which the
        // decoder's limits already rule out.
        let mut addresses = Vec::new();
        for a in announce.addresses.chunks_exact(4) {
            if let Ok(a) = <[u8; 4]>::try_from(a) {
                let _ = addresses.push(Ipv4Addr::from(a));
            }
        }
        self.outbox.peer_up(id, name, addresses);
    }

    /// The decision at the heart of the protocol: what another peer's role, rank and
    /// time since ready mean for this one. `heard_us`: it acknowledged our claim.
    pub(super) fn on_remote(&mut self, role: Role, rank: Rank, ready_ms: u32, heard_us: bool) {
        let mine = self.rank();
        match (self.config.policy, self.state) {
            (Policy::HandOver, State::Claiming | State::Active) => {
                // It became ready strictly before us: it sent `ready_ms` no later than
                // now, so its ready time is at most now - ready_ms < our ready time.
                let earlier = ready_ms > self.ready_ms();
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
                        self.outbox.set_due(Due::Announce, true);
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

    pub(super) fn sync(&mut self, state: &[u8]) {
        if self.state == State::Active {
            return;
        }
        if self.outbox.synced(state) {
            // Within MAX_STATE: the outbox took the same bytes.
            self.app_state.clear();
            let _ = self.app_state.extend_from_slice(state);
        }
    }
}
