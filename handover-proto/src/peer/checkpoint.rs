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
impl<const N: usize> Peer<N> {
    /// Failover, active: records progress `seq` (e.g. the last task completed) and
    /// sends it to the standbys at once, repeating it until each acknowledges it;
    /// [`Event::CheckpointHeld`] follows when all have. Checkpoints only grow: a
    /// lower `seq` re-sends the current one.
    ///
    /// A newly elected peer sends its checkpoint by itself: standbys answer with
    /// what they hold, a later one comes as [`Event::Checkpoint`], and
    /// [`Event::CheckpointHeld`] says when every standby has answered.
    pub fn checkpoint(&mut self, now: Instant, seq: u64) -> Result<(), StateError> {
        self.advance(now);
        self.expect(State::Active)?;
        self.checkpoint = self.checkpoint.max(seq);
        self.publish_checkpoint(None);
        self.after_input();
        Ok(())
    }

    /// A checkpoint from the active peer: held, and acknowledged with the highest
    /// one this peer holds.
    pub(super) fn handle_checkpoint(&mut self, source: SocketAddr, sender: u64, seq: u64) {
        let from_leader = self.leader.is_some_and(|l| l.get() == sender);
        if !from_leader || !matches!(self.state, State::Standby | State::Claiming) {
            return;
        }
        self.raise_checkpoint(seq);
        if let SocketAddr::V4(to) = source {
            self.outbox.checkpoint_ack = Some(to);
        }
    }

    /// A standby holds checkpoint `seq`.
    pub(super) fn handle_checkpoint_ack(&mut self, sender: u64, seq: u64) {
        if self.state != State::Active || self.table.get(sender).is_none() {
            return;
        }
        if seq > self.checkpoint {
            // It heard more from an earlier active than we did: carry on from there,
            // and tell the others.
            self.raise_checkpoint(seq);
            self.publish_checkpoint(Some(sender));
        } else if seq == self.checkpoint {
            if let Some(entry) = self.table.get_mut(sender) {
                entry.owes_ack = false;
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
        self.table.owe_checkpoint(except);
        self.checkpoint_unheld = true;
        self.send_checkpoint();
    }

    /// Active: peer `id` owes an acknowledgement of the checkpoint.
    pub(super) fn owe_checkpoint(&mut self, id: u64) {
        if self.state != State::Active {
            return;
        }
        if let Some(entry) = self.table.get_mut(id) {
            entry.owes_ack = true;
            self.send_checkpoint();
        }
    }

    /// Sends the checkpoint now and repeats it with a fresh backoff (the claim's:
    /// an active peer has no claim to repeat).
    fn send_checkpoint(&mut self) {
        self.outbox.checkpoint_due = true;
        self.backoff = Backoff::default();
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Checkpoint, self.clock.after(delay));
    }

    /// Repeats the checkpoint while a standby owes its acknowledgement.
    pub(super) fn repeat_checkpoint(&mut self) {
        if self.state != State::Active || !self.table.checkpoint_owed() {
            return;
        }
        self.outbox.checkpoint_due = true;
        let delay = self.backoff.next_delay(self.heartbeat_us);
        self.timers.set(Timer::Checkpoint, self.clock.after(delay));
    }

    /// Reports `CheckpointHeld` once nobody owes an acknowledgement: standbys that
    /// acknowledged, left or fell silent.
    pub(super) fn check_checkpoint_held(&mut self) {
        if self.state == State::Active && self.checkpoint_unheld && !self.table.checkpoint_owed() {
            self.checkpoint_unheld = false;
            self.timers.stop(Timer::Checkpoint);
            self.push_event(Pending::CheckpointHeld(self.checkpoint.into()));
        }
    }

    /// No longer active: nobody owes us a checkpoint acknowledgement.
    pub(super) fn stop_checkpoint(&mut self) {
        self.checkpoint_unheld = false;
        self.outbox.checkpoint_due = false;
        self.timers.stop(Timer::Checkpoint);
    }

    /// A checkpoint or an acknowledgement of one, if due.
    pub(super) fn poll_checkpoint_transmit(
        &mut self,
        buf: &mut [u8],
    ) -> Option<(Destination, Result<usize, wire::EmitError>)> {
        if let Some(to) = self.outbox.checkpoint_ack.take() {
            // To the leader that sent it (the acknowledgement is owed to no other).
            let leader = self.leader?;
            return Some((
                Destination::Reply(SocketAddr::V4(to)),
                self.emit_checkpoint_ack(leader.get(), buf),
            ));
        }
        if core::mem::take(&mut self.outbox.checkpoint_due) {
            return Some((Destination::Group, self.emit_checkpoint(buf)));
        }
        None
    }

    fn emit_checkpoint(&mut self, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        let repr = Repr {
            header: self.next_header(),
            body: Body::Checkpoint(wire::Checkpoint {
                seq: self.checkpoint,
            }),
        };
        self.seal(&repr, buf)
    }

    fn emit_checkpoint_ack(&mut self, to: u64, buf: &mut [u8]) -> Result<usize, wire::EmitError> {
        let repr = Repr {
            header: self.next_header(),
            body: Body::CheckpointAck(wire::CheckpointAck {
                to,
                seq: self.checkpoint,
            }),
        };
        self.seal(&repr, buf)
    }
}

/// Without checkpoints nothing is ever owed or due.
#[cfg(not(feature = "checkpoints"))]
impl<const N: usize> Peer<N> {
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

    #[inline(always)]
    pub(super) fn poll_checkpoint_transmit(
        &mut self,
        _buf: &mut [u8],
    ) -> Option<(Destination, Result<usize, wire::EmitError>)> {
        None
    }
}
