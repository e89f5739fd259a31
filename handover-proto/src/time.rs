//! Monotonic time as the adapter supplies it.

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point on the adapter's monotonic clock, in microseconds since an origin of the
/// adapter's choosing.
///
/// The protocol only ever compares instants taken from the same clock and subtracts them,
/// so the origin does not matter: boot time, process start or `Instant::now()` at startup
/// all work. Peers never exchange instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// `micros` microseconds later.
    pub(crate) fn add_micros(self, micros: u32) -> Instant {
        Instant(self.0.saturating_add(u64::from(micros)))
    }

    /// Microseconds from `earlier` to `self`, zero if `earlier` is later.
    pub(crate) fn micros_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

/// Microseconds since the peer's [`Clock`] epoch. The core keeps its deadlines and
/// last-heard times as ticks: half the memory of an [`Instant`], and 32-bit arithmetic
/// on 32-bit targets. Intervals are ticks too (the longest, a dead interval, is 4 min).
pub(crate) type Tick = u32;

/// How far the current tick may run before the epoch moves (2^31 µs, about 36
/// minutes), and where it moves to (2^30 µs before now, about 18 minutes: longer than
/// any dead interval, so a tick clamped to the new epoch is an expired one).
const REBASE_AFTER: u64 = 1 << 31;
const REBASE_TO: u64 = 1 << 30;

/// The peer's view of time: the epoch its ticks count from, and the latest `now`
/// it was given as a tick. The tick is what the peer reads most, so it is kept
/// rather than the instant (a 64-bit subtraction at every read is long on a
/// Cortex-M0); the instant is the epoch plus the tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
    tick: Tick,
}

impl Clock {
    pub(crate) fn new(now: Instant) -> Self {
        Clock {
            epoch: now,
            tick: 0,
        }
    }

    /// Moves to `now` (never backwards). When the epoch has to move, returns by how
    /// many ticks: every stored tick must be lowered by that much, saturating at 0.
    pub(crate) fn advance(&mut self, now: Instant) -> Option<Tick> {
        let since = now.micros_since(self.epoch);
        if since < REBASE_AFTER {
            // Never backwards, compared in ticks (a 32-bit comparison).
            self.tick = self.tick.max(since as Tick);
            return None;
        }
        let epoch = Instant(now.0 - REBASE_TO);
        let shift = epoch.micros_since(self.epoch);
        self.epoch = epoch;
        self.tick = REBASE_TO as Tick;
        Some(Tick::try_from(shift).unwrap_or(Tick::MAX))
    }

    /// The latest instant seen.
    pub(crate) fn now(&self) -> Instant {
        self.instant(self.tick)
    }

    /// The latest instant seen, as a tick (below 2^31 once `advance` has run).
    pub(crate) fn tick(&self) -> Tick {
        self.tick
    }

    /// `delay` ticks from now.
    pub(crate) fn after(&self, delay: Tick) -> Tick {
        self.tick().saturating_add(delay)
    }

    /// The instant a tick stands for.
    pub(crate) fn instant(&self, tick: Tick) -> Instant {
        self.epoch.add_micros(tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_moves_before_ticks_overflow() {
        let mut clock = Clock::new(Instant::from_millis(5));
        assert_eq!(
            clock.advance(Instant::from_micros(5_000 + REBASE_AFTER - 1)),
            None
        );
        assert_eq!(clock.tick(), (REBASE_AFTER - 1) as Tick);
        // Time never runs backwards.
        assert_eq!(clock.advance(Instant::ZERO), None);
        assert_eq!(clock.tick(), (REBASE_AFTER - 1) as Tick);
        let now = Instant::from_micros(5_000 + REBASE_AFTER);
        assert_eq!(clock.advance(now), Some((REBASE_AFTER - REBASE_TO) as Tick));
        assert_eq!(clock.tick(), REBASE_TO as Tick);
        assert_eq!(clock.instant(clock.tick()), now);
        // Days without a call: the shift saturates, every stored tick becomes 0.
        assert_eq!(
            clock.advance(Instant::from_millis(3 * 24 * 3600 * 1000)),
            Some(Tick::MAX)
        );
        assert_eq!(clock.after(Tick::MAX), Tick::MAX);
    }
}
