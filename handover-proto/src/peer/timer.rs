//! A fixed table of timers, as quinn-proto keeps them: no allocation, and the next
//! deadline is the minimum of the table.

use crate::Instant;
use core::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Next heartbeat (active, standby, yielding).
    Heartbeat,
    /// Next retransmission of a claim or a goodbye.
    Retransmit,
    /// End of the window in which a claimer listens for peers it does not know yet.
    ClaimWindow,
}

const COUNT: usize = 3;

/// Deadlines in microseconds; `OFF` marks a stopped timer (it saves the `Option`
/// discriminant, a quarter of the table).
#[derive(Debug, Clone)]
pub(crate) struct Timers([u64; COUNT]);

const OFF: u64 = u64::MAX;

impl Default for Timers {
    fn default() -> Self {
        Timers([OFF; COUNT])
    }
}

impl Timers {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        // An instant at the very end of time is as good as never.
        self.0[timer as usize] = at.as_micros();
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = OFF;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        Some(self.0[timer as usize])
            .filter(|&at| at != OFF)
            .map(Instant::from_micros)
    }

    /// True (and the timer stopped) if it was set and has expired.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(at) if at <= now => {
                self.stop(timer);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.0
            .iter()
            .copied()
            .filter(|&at| at != OFF)
            .min()
            .map(Instant::from_micros)
    }
}

/// Exponential backoff for retransmissions: 10 ms, doubling up to a ceiling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    // Whole milliseconds: the ceiling is a heartbeat, at most 60 s.
    delay_ms: u32,
    ceiling_ms: u32,
    pub(crate) attempts: u16,
}

/// First retransmission delay: short, so one lost datagram costs tens of milliseconds.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_millis(10);

impl Backoff {
    pub(crate) fn new(ceiling: Duration) -> Self {
        let ceiling_ms = ceiling.as_millis().min(u128::from(u32::MAX)) as u32;
        Backoff {
            delay_ms: (INITIAL_BACKOFF.as_millis() as u32).min(ceiling_ms),
            ceiling_ms,
            attempts: 0,
        }
    }

    /// Counts an attempt and returns the delay before the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.delay_ms;
        self.delay_ms = delay.saturating_mul(2).min(self.ceiling_ms);
        self.attempts = self.attempts.saturating_add(1);
        Duration::from_millis(u64::from(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_minimum_and_expiry_is_once() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Heartbeat, Instant::from_millis(30));
        t.set(Timer::Retransmit, Instant::from_millis(10));
        assert_eq!(t.next(), Some(Instant::from_millis(10)));
        assert!(!t.take_expired(Timer::Retransmit, Instant::from_millis(9)));
        assert!(t.take_expired(Timer::Retransmit, Instant::from_millis(10)));
        assert!(!t.take_expired(Timer::Retransmit, Instant::from_millis(10)));
        assert_eq!(t.next(), Some(Instant::from_millis(30)));
    }

    #[test]
    fn backoff_doubles_to_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(50));
        let delays: [u64; 4] = core::array::from_fn(|_| b.next_delay().as_millis() as u64);
        assert_eq!(delays, [10, 20, 40, 50]);
        assert_eq!(b.attempts, 4);
    }
}
