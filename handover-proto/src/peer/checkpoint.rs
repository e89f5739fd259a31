//! Checkpoints (failover): the active peer's progress, sent to the standbys the
//! moment it changes and repeated until each acknowledges it, so that whoever takes
//! over resumes after the last one any survivor holds. A work queue built on them
//! runs a task twice only if the active died after finishing it and before any
//! standby heard so.
//!
//! Without the `checkpoints` feature the two messages are not decoded (older peers
//! and firmware drop them as malformed) and this is all inert.

use super::*;
#[cfg(feature = "checkpoints")]
use crate::time::Tick;

#[cfg(feature = "checkpoints")]
impl<const N: usize> Peer<N> {
    /// Failover: records progress `seq` (e.g. the last task completed). While
    /// active, it goes to the standbys at once and is repeated until each
    /// acknowledges it; [`Event::CheckpointHeld`] follows when all have. Otherwise
    /// (a task that finished as this peer was demoted) the peer holds it, and its
    /// heartbeats tell the active one. Checkpoints only grow: a lower `seq` re-sends
    /// the current one.
    ///
    /// A newly elected peer sends its checkpoint by itself: standbys answer with
    /// what they hold, a later one comes as [`Event::Checkpoint`], and
    /// [`Event::CheckpointHeld`] says when every standby has answered.
    pub fn checkpoint(&mut self, now: Instant, seq: u64) -> Result<(), StateError> {
        self.advance(now);
        if self.state == State::Done {
            return Err(StateError { state: self.state });
        }
        self.checkpoint = self.checkpoint.max(seq);
        if self.state == State::Active {
            self.publish_checkpoint(None);
        }
        self.after_input();
        Ok(())
    }

    /// A checkpoint: held, and acknowledged to the leader with the highest one this
    /// peer holds.
    pub(super) fn handle_checkpoint(&mut self, source: SocketAddr, sender: u64, seq: u64) {
        self.learn_checkpoint(sender, seq);
        let from_leader = self.leader.is_some_and(|l| l.get() == sender);
        if from_leader && matches!(self.state, State::Standby | State::Claiming) {
            if let SocketAddr::V4(to) = source {
                self.outbox.checkpoint_ack = Some(to);
                self.outbox.set_due(Due::CheckpointAck, true);
            }
        }
    }

    /// The checkpoint record of an announcement or a goodbye. A goodbye's matters
    /// most: a departing active peer's last checkpoint may arrive after its goodbye
    /// (and is then dropped, its sender gone), and the standby that takes over must
    /// hold it, so that a clean departure repeats no work.
    pub(super) fn handle_checkpoint_record(
        &mut self,
        sender: u64,
        extensions: wire::Extensions<'_>,
    ) {
        if let Some(seq) = extensions.varint(wire::EXTENSION_CHECKPOINT) {
            // A peer that holds checkpoints acknowledges them (a version from
            // before capabilities were said shows it this way).
            self.can_ack_checkpoints(sender);
            self.learn_checkpoint(sender, seq);
        }
    }

    /// What peer `sender` says it supports, from an announcement's records.
    pub(super) fn learn_capabilities(&mut self, sender: u64, extensions: &wire::Extensions<'_>) {
        let said = wire::Capabilities::announced(extensions);
        if said.is_some_and(|c| c.contains(wire::Capabilities::CHECKPOINTS)) {
            self.can_ack_checkpoints(sender);
        }
    }

    fn can_ack_checkpoints(&mut self, sender: u64) {
        if let Some(entry) = self.table.get_mut(sender) {
            entry.set_acks_checkpoints();
        }
    }

    /// Peer `sender` holds checkpoint `seq`. A checkpoint is a fact (tasks up to it
    /// ran), whoever tells it: a later one is held, and while active, sent on.
    fn learn_checkpoint(&mut self, sender: u64, seq: u64) {
        if seq <= self.checkpoint || self.state == State::Done {
            return;
        }
        self.raise_checkpoint(seq);
        if self.state == State::Active {
            self.publish_checkpoint(Some(sender));
        }
    }

    /// Appends to `datagram` what this peer supports and, once it has one, its
    /// checkpoint, as extension records.
    pub(super) fn write_progress(
        &self,
        datagram: &mut wire::DatagramWriter<'_>,
    ) -> Result<(), wire::EmitError> {
        let capabilities = wire::Capabilities::own().0;
        datagram.varint_record(wire::EXTENSION_CAPABILITIES, capabilities.into())?;
        if self.checkpoint > 0 {
            datagram.varint_record(wire::EXTENSION_CHECKPOINT, self.checkpoint)?;
        }
        Ok(())
    }

    /// A standby holds checkpoint `seq`.
    pub(super) fn handle_checkpoint_ack(&mut self, sender: u64, seq: u64) {
        if self.state != State::Active || self.table.get(sender).is_none() {
            return;
        }
        self.can_ack_checkpoints(sender);
        if seq > self.checkpoint {
            // It heard more from an earlier active than we did: carry on from there,
            // and tell the others.
            self.learn_checkpoint(sender, seq);
        } else if seq == self.checkpoint {
            if let Some(entry) = self.table.get_mut(sender) {
                entry.set_owes_ack(false);
            }
        }
    }

    fn raise_checkpoint(&mut self, seq: u64) {
        if seq > self.checkpoint {
            self.checkpoint = seq;
            self.push_event(Pending::Checkpoint(seq.into()));
        }
    }

    /// Active: every standby owes an acknowledgement of the checkpoint (`except`
    /// holds it already); send it now.
    pub(super) fn publish_checkpoint(&mut self, except: Option<u64>) {
        self.table.owe_checkpoint_acks(except);
        self.held_report = HeldReport::Owed;
        self.send_checkpoint();
    }

    /// Active: peer `id` owes an acknowledgement of the checkpoint, if it can
    /// give one.
    pub(super) fn owe_checkpoint(&mut self, id: u64) {
        if self.state != State::Active {
            return;
        }
        if let Some(entry) = self.table.get_mut(id).filter(|e| e.acks_checkpoints()) {
            entry.set_owes_ack(true);
            if self.held_report == HeldReport::AfterListening {
                self.held_report = HeldReport::Owed;
            }
            self.send_checkpoint();
        }
    }

    /// Sends the checkpoint now and repeats it with a fresh backoff (the claim's:
    /// an active peer has no claim to repeat).
    fn send_checkpoint(&mut self) {
        self.outbox.set_due(Due::Checkpoint, true);
        self.backoff = Backoff::default();
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Checkpoint, self.clock.after(delay));
    }

    /// Repeats the checkpoint while a standby owes its acknowledgement; or the
    /// wait for a dead interval of listening is over.
    pub(super) fn repeat_checkpoint(&mut self) {
        if self.held_report == HeldReport::AfterListening {
            self.held_report = HeldReport::Owed;
            return;
        }
        if self.state != State::Active || !self.table.checkpoint_owed() {
            return;
        }
        self.outbox.set_due(Due::Checkpoint, true);
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Checkpoint, self.clock.after(delay));
    }

    /// Reports `CheckpointHeld` once nobody owes an acknowledgement: standbys that
    /// acknowledged, left or fell silent.
    ///
    /// A peer that has listened for less than a dead interval may not know every
    /// standby yet (one whose heartbeats were lost during its claim): it waits,
    /// on its timer, until it has listened that long (so that only time, never a
    /// datagram, ends the wait).
    pub(super) fn check_checkpoint_held(&mut self) {
        let due = self.held_report == HeldReport::Owed && !self.table.checkpoint_owed();
        if self.state != State::Active || !due {
            return;
        }
        // Ticks count from the peer's creation until the epoch first moves, more
        // than a dead interval later.
        let known_all: Tick = self.dead_interval();
        if self.clock.tick() < known_all {
            self.held_report = HeldReport::AfterListening;
            self.timers.set(Timer::Checkpoint, known_all);
            return;
        }
        self.held_report = HeldReport::Reported;
        self.timers.stop(Timer::Checkpoint);
        self.push_event(Pending::CheckpointHeld(self.checkpoint.into()));
    }

    /// No longer active: nobody owes us a checkpoint acknowledgement.
    pub(super) fn stop_checkpoint(&mut self) {
        self.held_report = HeldReport::Reported;
        self.outbox.set_due(Due::Checkpoint, false);
        self.timers.stop(Timer::Checkpoint);
    }
}

/// Without checkpoints nothing is ever owed or due, and nothing said of them.
#[cfg(not(feature = "checkpoints"))]
impl<const N: usize> Peer<N> {
    #[inline(always)]
    pub(super) fn write_progress(
        &self,
        _datagram: &mut wire::DatagramWriter<'_>,
    ) -> Result<(), wire::EmitError> {
        Ok(())
    }

    #[inline(always)]
    pub(super) fn owe_checkpoint(&mut self, _id: u64) {}

    #[inline(always)]
    pub(super) fn publish_checkpoint(&mut self, _except: Option<u64>) {}

    #[inline(always)]
    pub(super) fn repeat_checkpoint(&mut self) {}

    #[inline(always)]
    pub(super) fn check_checkpoint_held(&mut self) {}

    #[inline(always)]
    pub(super) fn stop_checkpoint(&mut self) {}
}

/// Where the active peer is with reporting [`Event::CheckpointHeld`] for its
/// current checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "checkpoints"), allow(dead_code))]
pub(super) enum HeldReport {
    /// Reported (or nothing to report).
    Reported,
    /// To report once no standby owes an acknowledgement.
    Owed,
    /// Every standby acknowledged; reported once this peer has listened for a dead
    /// interval.
    AfterListening,
}
