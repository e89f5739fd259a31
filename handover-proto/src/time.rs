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

    /// `micros` microseconds later. The core keeps its intervals in `u32`
    /// microseconds (at most 71 minutes; its longest is a 4-minute dead interval), so
    /// its time arithmetic needs no 64-bit division on 32-bit targets.
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
