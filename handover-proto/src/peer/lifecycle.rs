//! The peer's own transitions: claiming, becoming active, standing by, yielding,
//! finishing, and what follows every input (expiries, the claim's completion,
//! who leads).

use core::num::NonZeroU64;

use super::outbox::{Due, Pending, EVENTS_PER_INPUT};
use super::table::Entry;
use super::timer::{Backoff, Timer};
use super::{Peer, GOODBYE_ATTEMPTS, LEAVE_ATTEMPTS, MAX_GENERATION};
use crate::event::State;
use crate::time::Tick;
use crate::wire::Role;

impl<const N: usize> Peer<N> {
    /// Claims with one more than the highest generation heard; acknowledgements of
    /// the old generation no longer count. Generations heard never exceed
    /// [`MAX_GENERATION`] (announcements above it are refused), and ours stops there.
    pub(super) fn raise_generation(&mut self) {
        self.generation = self
            .max_heard
            .max(self.generation)
            .saturating_add(1)
            .min(MAX_GENERATION);
        self.max_heard = self.generation;
        self.table.owe_acks(None);
    }

    pub(super) fn start_claim(&mut self) {
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
    pub(super) fn restart_claim(&mut self) {
        self.outbox.set_due(Due::Announce, true);
        self.outbox.set_due(Due::Legacy, self.speaks_legacy());
        self.restart_backoff();
    }

    pub(super) fn become_active(&mut self) {
        info!("elected with generation {}", self.generation);
        self.state = State::Active;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.set_due(Due::Announce, true);
        self.outbox.set_due(Due::Legacy, self.speaks_legacy());
        self.schedule_heartbeat();
        self.push_event(Pending::Elected);
        // Ask the standbys what they hold: one may have heard more from the peer
        // this one replaces.
        self.publish_checkpoint(None);
    }

    pub(super) fn stand_by(&mut self) {
        self.stop_checkpoint();
        self.state = State::Standby;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.set_due(Due::Announce, true);
        self.schedule_heartbeat();
    }

    pub(super) fn yield_to(&mut self, successor: Option<NonZeroU64>) {
        info!("superseded: shutting down");
        self.stop_checkpoint();
        self.state = State::Yielding;
        self.successor = successor;
        self.timers.stop(Timer::Retransmit);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.set_due(Due::Announce, true);
        if !self.timers.is_set(Timer::Heartbeat) {
            self.schedule_heartbeat();
        }
        let successor = self.successor.map_or(0, NonZeroU64::get);
        self.push_event(Pending::Shutdown(successor.into()));
    }

    /// Enters `Done` and starts sending the goodbye.
    pub(super) fn finish(&mut self) {
        self.stop_checkpoint();
        self.state = State::Done;
        self.timers.stop(Timer::Heartbeat);
        self.timers.stop(Timer::ClaimWindow);
        self.outbox.set_due(Due::Announce, false);
        self.outbox.set_due(Due::Legacy, false);
        self.outbox.set_due(Due::Goodbye, true);
        self.restart_backoff();
        self.refresh_leader();
    }

    /// A fresh backoff, its first retransmission scheduled.
    pub(super) fn restart_backoff(&mut self) {
        self.backoff = Backoff::default();
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Retransmit, self.clock.after(delay));
    }

    pub(super) fn retransmit(&mut self) {
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
            self.outbox.set_due(Due::Announce, true);
            self.outbox.set_due(Due::Legacy, self.speaks_legacy());
        } else {
            self.outbox.set_due(Due::Goodbye, true);
        }
        let delay = self.backoff.next_delay(self.heartbeat_us);
        if self.backoff.attempts < limit {
            self.timers.set(Timer::Retransmit, self.clock.after(delay));
        }
    }

    pub(super) fn expire_peers(&mut self) {
        if self.state == State::Done {
            return;
        }
        let (priority, heartbeat_us) = (self.config.priority, self.heartbeat_us);
        let tick = self.clock.tick();
        // Expire only as many as the event queue can report; the rest wait for the
        // next call, which `poll_timeout` schedules at once.
        let expired = |e: &Entry| e.expires_at(priority, heartbeat_us) <= tick;
        while self.outbox.event_room() >= EVENTS_PER_INPUT && self.forget(&expired) {}
    }

    /// Forgets the first live peer that `which` picks, with a `PeerDown` if it had
    /// announced itself and not said goodbye; whether there was one. (`dyn`: one
    /// copy of the search for every caller.)
    pub(super) fn forget(&mut self, which: &dyn Fn(&Entry) -> bool) -> bool {
        let Some(entry) = self.table.remove_first(which) else {
            return false;
        };
        if entry.announced() && !entry.departed {
            debug!("peer {} is forgotten", entry.id());
            self.push_event(Pending::PeerDown(entry.id().into()));
        }
        true
    }

    /// Work common to every input: leader bookkeeping, failover takeover, claim
    /// completion.
    pub(super) fn after_input(&mut self) {
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

    pub(super) fn claim_complete(&self) -> bool {
        !self.timers.is_set(Timer::ClaimWindow)
            && self.table.iter().all(|e| e.departed || !e.owes_ack())
    }

    pub(super) fn refresh_leader(&mut self) {
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
}
