//! The bounded table of peers heard recently.

use core::time::Duration;

use heapless::Vec;

use crate::wire::Role;
use crate::{Instant, Rank};

/// What is known of one remote peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    // The rank, flattened so the small fields share padding.
    id: u64,
    start_ms: i64,
    generation: u32,
    priority: u8,
    pub(crate) role: Role,
    /// Its advertised heartbeat interval in ms (at most 60 000).
    pub(crate) heartbeat_ms: u16,
    pub(crate) last_heard: Instant,
    /// Highest counter accepted from it.
    pub(crate) counter: u64,
    /// Which of the `WINDOW` counters below `counter` were seen (bit k: counter − 1 − k).
    window: u16,
    /// The latest of our claim generations it acknowledged (0: none).
    pub(crate) acked: u32,
    /// Whether it announced itself (and so got a `PeerUp`).
    pub(crate) announced: bool,
    /// It said goodbye; kept until it expires so that repeated goodbyes are known.
    pub(crate) departed: bool,
}

impl Entry {
    pub(crate) fn new(id: u64, role: Role, now: Instant, counter: u64) -> Self {
        Entry {
            id,
            start_ms: 0,
            generation: 0,
            priority: 0,
            role,
            heartbeat_ms: 1000,
            last_heard: now,
            counter,
            window: 0,
            acked: 0,
            announced: false,
            departed: false,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn rank(&self) -> Rank {
        Rank {
            priority: self.priority,
            generation: self.generation,
            start_ms: self.start_ms,
            id: self.id,
        }
    }

    pub(crate) fn set_rank(&mut self, rank: Rank) {
        debug_assert_eq!(rank.id, self.id);
        self.priority = rank.priority;
        self.generation = rank.generation;
        self.start_ms = rank.start_ms;
    }

    /// Checks a datagram's counter against the anti-replay window and records it.
    pub(crate) fn accept_counter(&mut self, counter: u64) -> Freshness {
        if counter > self.counter {
            let shift = counter - self.counter;
            let moved = if shift > WINDOW {
                0
            } else {
                (u32::from(self.window) << shift) as u16
            };
            // The previous highest is now `shift - 1` below the new one.
            self.window = moved | if shift <= WINDOW { 1 << (shift - 1) } else { 0 };
            self.counter = counter;
            return Freshness::Newest;
        }
        let back = self.counter - counter;
        if back == 0 || back > WINDOW {
            return Freshness::Stale;
        }
        let bit = 1u16 << (back - 1);
        if self.window & bit != 0 {
            return Freshness::Stale;
        }
        self.window |= bit;
        Freshness::Reordered
    }

    /// When it counts as dead: VRRP's master-down interval, three of its heartbeats plus
    /// a skew that grows as our priority falls, so the highest-priority standby reacts
    /// first.
    pub(crate) fn expires_at(&self, own_priority: u8) -> Instant {
        self.last_heard + dead_interval(u32::from(self.heartbeat_ms), own_priority)
    }
}

/// How many counters below the highest are still accepted if not seen before:
/// reordering by the network is tolerated, replays are not.
const WINDOW: u64 = 16;

/// What a datagram's counter says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The newest from its sender.
    Newest,
    /// Older than the newest but not seen before (reordered).
    Reordered,
    /// Seen before, or too old to tell.
    Stale,
}

/// `3 × heartbeat + (256 − priority) × heartbeat / 256`.
pub(crate) fn dead_interval(heartbeat_ms: u32, priority: u8) -> Duration {
    let hb = Duration::from_millis(u64::from(heartbeat_ms));
    hb * 3 + hb * (256 - u32::from(priority)) / 256
}

/// The peers heard recently, and in the slots they leave free, senders recently
/// forgotten with their last counters: their old datagrams replayed later are refused.
/// A forgotten sender's slot is reused (oldest first) when a new peer needs it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table<const N: usize> {
    /// Live entries first (`..live`), then forgotten ones.
    entries: Vec<Entry, N>,
    live: usize,
}

impl<const N: usize> Table<N> {
    fn live(&self) -> &[Entry] {
        &self.entries[..self.live]
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.live().iter().find(|e| e.id() == id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries[..self.live].iter_mut().find(|e| e.id() == id)
    }

    /// Adds an entry, in place of the forgotten sender heard longest ago if the table
    /// is full; gives it back if every slot holds a live peer.
    pub(crate) fn insert(&mut self, entry: Entry) -> Result<&mut Entry, Entry> {
        if self.entries.is_full() {
            let oldest =
                (self.live..self.entries.len()).min_by_key(|&i| self.entries[i].last_heard);
            match oldest {
                Some(i) => {
                    self.entries.swap_remove(i);
                }
                None => return Err(entry),
            }
        }
        self.entries.push(entry)?;
        // Move it from the end to the front of the forgotten region.
        let last = self.entries.len() - 1;
        self.entries.swap(self.live, last);
        self.live += 1;
        Ok(&mut self.entries[self.live - 1])
    }

    /// Forgets a peer: it leaves the live entries, its counter is kept while there is
    /// room.
    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        let at = self.live().iter().position(|e| e.id() == id)?;
        self.live -= 1;
        self.entries.swap(at, self.live);
        Some(self.entries[self.live])
    }

    /// The last counter of a forgotten sender.
    pub(crate) fn forgotten_counter(&self, id: u64) -> Option<u64> {
        self.entries[self.live..]
            .iter()
            .find(|e| e.id() == id)
            .map(|e| e.counter)
    }

    /// Drops the memory of a forgotten sender that is back with newer datagrams.
    pub(crate) fn unforget(&mut self, id: u64) {
        if let Some(i) = (self.live..self.entries.len()).find(|&i| self.entries[i].id() == id) {
            self.entries.swap_remove(i);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.live().iter()
    }

    /// The entry that expires first.
    pub(crate) fn next_expiry(&self, own_priority: u8) -> Option<Instant> {
        self.iter().map(|e| e.expires_at(own_priority)).min()
    }

    /// The highest-ranked peer that announces itself active.
    pub(crate) fn leader(&self) -> Option<&Entry> {
        self.iter()
            .filter(|e| e.role == Role::Active && !e.departed)
            .max_by_key(|e| e.rank())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_senders_keep_their_counter_until_the_slot_is_needed() {
        let mut t = Table::<2>::default();
        t.insert(Entry::new(1, Role::Active, Instant::from_millis(1), 10))
            .unwrap();
        t.insert(Entry::new(2, Role::Active, Instant::from_millis(2), 20))
            .unwrap();
        assert!(
            t.insert(Entry::new(3, Role::Active, Instant::ZERO, 1))
                .is_err(),
            "full of live peers"
        );
        t.remove(1).unwrap();
        assert!(t.get(1).is_none());
        assert_eq!(t.iter().count(), 1);
        assert_eq!(t.forgotten_counter(1), Some(10));
        // A new peer takes the forgotten sender's slot.
        t.insert(Entry::new(3, Role::Active, Instant::ZERO, 1))
            .unwrap();
        assert_eq!(t.forgotten_counter(1), None);
        assert_eq!(t.iter().count(), 2);
        t.remove(2).unwrap();
        t.unforget(2);
        assert_eq!(t.forgotten_counter(2), None);
        assert_eq!(t.iter().map(Entry::id).collect::<Vec<_, 2>>(), [3]);
    }

    #[test]
    fn replay_window_accepts_reordered_and_refuses_repeats() {
        let mut e = Entry::new(1, Role::Active, Instant::ZERO, 10);
        assert_eq!(e.accept_counter(10), Freshness::Stale);
        assert_eq!(e.accept_counter(12), Freshness::Newest);
        assert_eq!(e.accept_counter(11), Freshness::Reordered);
        assert_eq!(e.accept_counter(11), Freshness::Stale);
        assert_eq!(e.accept_counter(10), Freshness::Stale);
        assert_eq!(e.accept_counter(40), Freshness::Newest);
        assert_eq!(e.accept_counter(24), Freshness::Reordered);
        assert_eq!(e.accept_counter(23), Freshness::Stale, "beyond the window");
        assert_eq!(e.accept_counter(41), Freshness::Newest);
        assert_eq!(
            e.accept_counter(24),
            Freshness::Stale,
            "seen, and shifted along"
        );
    }

    #[test]
    fn dead_interval_follows_vrrp() {
        let hb = 1000;
        // 3 s + (256 - 255) / 256 s
        assert_eq!(dead_interval(hb, 255), Duration::from_nanos(3_003_906_250));
        assert_eq!(dead_interval(hb, 0), Duration::from_secs(4));
        assert!(dead_interval(hb, 200) < dead_interval(hb, 100));
    }
}
