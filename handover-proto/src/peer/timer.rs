//! A fixed table of timers, as quinn-proto keeps them: no allocation, and the next
//! deadline is the minimum of the table.

use crate::time::Tick;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Next heartbeat (active, standby, yielding).
    Heartbeat,
    /// Next retransmission of a claim or a goodbye.
    Retransmit,
    /// End of the window in which a claimer listens for peers it does not know yet.
    ClaimWindow,
    /// Next repetition of a checkpoint some standby has not acknowledged.
    Checkpoint,
}

impl Timer {
    /// Every timer, in table order: `handle_timeout` visits them all, so a new
    /// timer cannot go unhandled.
    pub(crate) const VALUES: [Timer; 4] = [
        Timer::Heartbeat,
        Timer::Retransmit,
        Timer::ClaimWindow,
        Timer::Checkpoint,
    ];
}

const COUNT: usize = Timer::VALUES.len();

/// Deadlines as ticks; `OFF` marks a stopped timer (it saves the `Option`
/// discriminant, a quarter of the table).
#[derive(Debug, Clone)]
pub(crate) struct Timers([Tick; COUNT]);

const OFF: Tick = Tick::MAX;

impl Default for Timers {
    fn default() -> Self {
        Timers([OFF; COUNT])
    }
}

impl Timers {
    pub(crate) fn set(&mut self, timer: Timer, at: Tick) {
        // A deadline at the very end of time is as good as never.
        self.0[timer as usize] = at;
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = OFF;
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.0[timer as usize] != OFF
    }

    /// True (and the timer stopped) if it was set and has expired.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Tick) -> bool {
        let at = self.0[timer as usize];
        let expired = at != OFF && at <= now;
        if expired {
            self.stop(timer);
        }
        expired
    }

    pub(crate) fn next(&self) -> Option<Tick> {
        // OFF is the greatest tick: the earliest is OFF only when none is set.
        self.0.iter().copied().min().filter(|&at| at != OFF)
    }

    /// The clock's epoch moved `by` ticks.
    pub(crate) fn rebase(&mut self, by: Tick) {
        for at in self.0.iter_mut().filter(|at| **at != OFF) {
            *at = at.saturating_sub(by);
        }
    }
}

/// Exponential backoff for retransmissions: 10 ms, doubling up to a ceiling (the
/// heartbeat interval).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    delay_us: u32,
    pub(crate) attempts: u16,
}

/// First retransmission delay in microseconds: short, so one lost datagram costs tens
/// of milliseconds.
pub(crate) const INITIAL_BACKOFF_US: u32 = 10_000;

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            delay_us: INITIAL_BACKOFF_US,
            attempts: 0,
        }
    }
}

impl Backoff {
    /// Counts an attempt and returns the delay in microseconds before the next one.
    pub(crate) fn next_delay(&mut self, ceiling_us: u32) -> u32 {
        let delay = self.delay_us.min(ceiling_us);
        self.delay_us = delay.saturating_mul(2).min(ceiling_us);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_lists_every_timer_at_its_index() {
        for (i, timer) in Timer::VALUES.into_iter().enumerate() {
            assert_eq!(timer as usize, i, "{timer:?}");
        }
    }

    #[test]
    fn next_is_minimum_and_expiry_is_once() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Heartbeat, 30);
        t.set(Timer::Retransmit, 10);
        assert_eq!(t.next(), Some(10));
        assert!(!t.take_expired(Timer::Retransmit, 9));
        assert!(t.take_expired(Timer::Retransmit, 10));
        assert!(!t.take_expired(Timer::Retransmit, 10));
        assert_eq!(t.next(), Some(30));
        t.rebase(20);
        assert_eq!(t.next(), Some(10));
        t.rebase(20);
        assert_eq!(t.next(), Some(0), "overdue, not lost");
        assert!(!t.is_set(Timer::Retransmit));
    }

    #[test]
    fn backoff_doubles_to_ceiling() {
        let mut b = Backoff::default();
        let delays: [u32; 4] = core::array::from_fn(|_| b.next_delay(50_000));
        assert_eq!(delays, [10_000, 20_000, 40_000, 50_000]);
        assert_eq!(
            Backoff::default().next_delay(5_000),
            5_000,
            "never above the ceiling"
        );
        assert_eq!(b.attempts, 4);
    }
}
