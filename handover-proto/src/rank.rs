//! The total order that decides who is in charge.

use crate::wire;

/// Where a peer stands. Peers compare ranks field by field in declaration order; the
/// greater rank wins.
///
/// * `priority`: configured; decides first (failover). Hand-over peers share one value.
/// * `generation`: a Lamport clock over claims. A peer claims with one more than the
///   highest generation it has heard, and raises it again if, while claiming, it hears an
///   active peer of an equal or higher generation. So a peer that heard an earlier one
///   at any time before or during its claim always ranks above it, whatever the wall
///   clocks say.
/// * `start_ms`: wall-clock start time; decides only between peers that never heard
///   of each other (equal generations).
/// * `id`: random; breaks the last tie, so two peers ready at the same moment never
///   livelock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rank {
    /// Configured priority.
    pub priority: u8,
    /// Claim generation.
    pub generation: u32,
    /// Wall-clock start time, ms since the Unix epoch.
    pub start_ms: i64,
    /// Instance id.
    pub id: u64,
}

impl Rank {
    /// The rank a datagram from `id` declares.
    pub fn from_wire(id: u64, rank: wire::Rank) -> Self {
        Rank {
            priority: rank.priority,
            generation: rank.generation,
            start_ms: rank.start_ms,
            id,
        }
    }

    /// The part of the rank that travels in the body (the id is in the header).
    pub fn to_wire(self) -> wire::Rank {
        wire::Rank {
            priority: self.priority,
            generation: self.generation,
            start_ms: self.start_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(priority: u8, generation: u32, start_ms: i64, id: u64) -> Rank {
        Rank {
            priority,
            generation,
            start_ms,
            id,
        }
    }

    #[test]
    fn generation_beats_wall_clock() {
        // Heard the earlier peer (generation 2), although its clock reads 1970.
        assert!(rank(100, 2, 0, 1) > rank(100, 1, 1_700_000_000_000, 9));
    }

    #[test]
    fn priority_beats_generation_and_id_breaks_ties() {
        assert!(rank(101, 1, 0, 0) > rank(100, 9, 9, 9));
        assert!(rank(100, 1, 5, 2) > rank(100, 1, 5, 1));
    }
}
