//! The bounded table of peers heard recently.

use heapless::Vec;

use crate::time::Tick;
use crate::wire::Role;
use crate::Rank;

/// What is known of one remote peer: 40 bytes, so that eight fit in 320.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    // The rank, flattened so the small fields share padding.
    id: u64,
    start_ms: i64,
    /// Highest counter accepted from it.
    pub(crate) counter: u64,
    /// When it was last heard.
    pub(crate) heard: Tick,
    generation: u32,
    /// Its advertised heartbeat interval in ms (at most 60 000); 0 until it announces
    /// itself (and so gets a `PeerUp`).
    heartbeat_ms: u16,
    /// Which of the `WINDOW` counters below `counter` were seen (bit k: counter − 1 − k).
    window: u16,
    priority: u8,
    pub(crate) role: Role,
    /// It said goodbye; kept until it expires so that repeated goodbyes are known.
    pub(crate) departed: bool,
    /// [`OWES_ACK`] and [`ACKS_CHECKPOINTS`]: bits, so that the entry stays 40 bytes.
    acks: u8,
}

/// It owes us an acknowledgement: of our current claim generation while we claim,
/// of our current checkpoint while we are active (the two never overlap).
const OWES_ACK: u8 = 1;
/// It acknowledges checkpoints: it said so, or showed it (an acknowledgement, or a
/// checkpoint of its own from a version before capabilities were said).
#[cfg(feature = "checkpoints")]
const ACKS_CHECKPOINTS: u8 = 2;

impl Entry {
    pub(crate) fn owes_ack(&self) -> bool {
        self.acks & OWES_ACK != 0
    }

    pub(crate) fn set_owes_ack(&mut self, owes: bool) {
        self.acks = (self.acks & !OWES_ACK) | if owes { OWES_ACK } else { 0 };
    }

    #[cfg(feature = "checkpoints")]
    pub(crate) fn acks_checkpoints(&self) -> bool {
        self.acks & ACKS_CHECKPOINTS != 0
    }

    /// Whether an acknowledgement of our checkpoint is to be waited for from it: it
    /// acknowledges checkpoints, or has not announced itself yet (an entry made
    /// from its acknowledgement of our claim), so that what it holds is not
    /// passed over before it says what it supports.
    #[cfg(feature = "checkpoints")]
    pub(crate) fn may_ack_checkpoints(&self) -> bool {
        self.acks_checkpoints() || !self.announced()
    }

    #[cfg(feature = "checkpoints")]
    pub(crate) fn set_acks_checkpoints(&mut self) {
        self.acks |= ACKS_CHECKPOINTS;
    }

    pub(crate) fn new(id: u64, role: Role, heard: Tick, counter: u64) -> Self {
        Entry {
            id,
            start_ms: 0,
            counter,
            heard,
            generation: 0,
            heartbeat_ms: 0,
            window: 0,
            priority: 0,
            role,
            departed: false,
            acks: OWES_ACK,
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

    /// Whether it has announced itself (the first announcement brings a `PeerUp`).
    pub(crate) fn announced(&self) -> bool {
        self.heartbeat_ms != 0
    }

    /// Records its heartbeat interval, 10 ms to 60 s, from an announcement.
    pub(crate) fn set_heartbeat_ms(&mut self, heartbeat_ms: u16) {
        self.heartbeat_ms = heartbeat_ms.max(1);
    }

    /// When it counts as dead: VRRP's master-down interval, three of its heartbeats
    /// plus a skew that grows as our priority falls, so the highest-priority standby
    /// reacts first. Until it announces its heartbeat, ours stands in.
    pub(crate) fn expires_at(&self, own_priority: u8, own_heartbeat_us: u32) -> Tick {
        let heartbeat_us = match self.heartbeat_ms {
            0 => own_heartbeat_us,
            ms => u32::from(ms) * 1000,
        };
        self.heard
            .saturating_add(dead_interval(heartbeat_us, own_priority))
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
        if back == 0 {
            return Freshness::Duplicate;
        }
        if back > WINDOW {
            return Freshness::Stale;
        }
        let bit = 1u16 << (back - 1);
        if self.window & bit != 0 {
            return Freshness::Duplicate;
        }
        self.window |= bit;
        Freshness::Reordered
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
    /// Seen before: a copy (heard on a second interface, duplicated by the network)
    /// or a replay of a recent datagram.
    Duplicate,
    /// Too old to tell.
    Stale,
}

/// `3 × heartbeat + (256 − priority) × heartbeat / 256`, in microseconds (at most
/// 4 × 60 s, well within `u32`).
pub(crate) fn dead_interval(heartbeat_us: u32, priority: u8) -> u32 {
    let skew = (u64::from(heartbeat_us) * (256 - u64::from(priority))) >> 8;
    heartbeat_us * 3 + skew as u32
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
    /// The clock's epoch moved `by` ticks.
    pub(crate) fn rebase(&mut self, by: Tick) {
        for e in self.entries.iter_mut() {
            // Heard before the new epoch: long dead, and it stays the oldest.
            e.heard = e.heard.saturating_sub(by);
        }
    }

    // Slots are reached through `get`, `split_at` and patterns, never by an index
    // that could panic: `live <= entries.len()` always holds, but the compiler
    // cannot know it, and each index it cannot prove is a panic site in the firmware.

    fn live(&self) -> &[Entry] {
        self.entries.get(..self.live).unwrap_or_default()
    }

    fn forgotten(&self) -> &[Entry] {
        self.entries.get(self.live..).unwrap_or_default()
    }

    #[cfg(any(test, feature = "checkpoints"))]
    pub(crate) fn get(&self, id: u64) -> Option<&Entry> {
        self.live().iter().find(|e| e.id() == id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        let live = self.entries.get_mut(..self.live).unwrap_or_default();
        live.iter_mut().find(|e| e.id() == id)
    }

    /// Swaps two slots (a `mem::swap` of disjoint halves, which needs no `memmove`).
    fn swap(&mut self, a: usize, b: usize) {
        let (low, high) = (a.min(b), a.max(b));
        if let Some((left, [right, ..])) = self.entries.split_at_mut_checked(high) {
            if let Some(left) = left.get_mut(low) {
                core::mem::swap(left, right);
            }
        }
    }

    /// Drops slot `i`, the last one taking its place (heapless's `swap_remove` moves
    /// with `memmove`, a kilobyte and a half of flash on Cortex-M).
    fn swap_remove(&mut self, i: usize) {
        self.swap(i, self.entries.len().wrapping_sub(1));
        self.entries.pop();
    }

    /// Adds an entry, in place of the forgotten sender heard longest ago if the table
    /// is full; gives it back if every slot holds a live peer.
    pub(crate) fn insert(&mut self, entry: Entry) -> Result<&mut Entry, Entry> {
        if self.entries.is_full() {
            let oldest = self
                .forgotten()
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.heard);
            match oldest {
                Some((i, _)) => self.swap_remove(self.live + i),
                None => return Err(entry),
            }
        }
        self.entries.push(entry)?;
        // Move it from the end to the front of the forgotten region.
        self.swap(self.live, self.entries.len() - 1);
        self.live += 1;
        self.entries.get_mut(self.live - 1).ok_or(entry)
    }

    /// Whether every slot holds a live peer.
    pub(crate) fn is_full(&self) -> bool {
        self.live >= N
    }

    /// Forgets a peer: it leaves the live entries, its counter is kept while there is
    /// room.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        self.remove_first(|e| e.id() == id)
    }

    /// Forgets the first live peer that `which` picks, as [`remove`](Self::remove)
    /// does, and gives back what was known of it: one search, for the expiry.
    pub(crate) fn remove_first(&mut self, which: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let at = self.live().iter().position(which)?;
        self.live -= 1;
        self.swap(at, self.live);
        self.entries.get(self.live).copied()
    }

    /// The last counter of a forgotten sender.
    pub(crate) fn forgotten_counter(&self, id: u64) -> Option<u64> {
        self.forgotten()
            .iter()
            .find(|e| e.id() == id)
            .map(|e| e.counter)
    }

    /// Drops the memory of a forgotten sender that is back with newer datagrams.
    pub(crate) fn unforget(&mut self, id: u64) {
        if let Some(i) = self.forgotten().iter().position(|e| e.id() == id) {
            self.swap_remove(self.live + i);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.live().iter()
    }

    /// Forgets every acknowledgement: our claim generation changed.
    /// Every peer owes an acknowledgement, of a new claim generation or a new
    /// checkpoint: all but those that departed and `except` (which holds the
    /// checkpoint already). Forgotten senders too, should they come back.
    pub(crate) fn owe_acks(&mut self, except: Option<u64>) {
        for e in self.entries.iter_mut() {
            e.set_owes_ack(!e.departed && Some(e.id) != except);
        }
    }

    /// Every live peer that can acknowledge checkpoints, or has not yet said
    /// whether it can, owes one (`except` holds ours already); the others owe
    /// nothing.
    #[cfg(feature = "checkpoints")]
    pub(crate) fn owe_checkpoint_acks(&mut self, except: Option<u64>) {
        for e in self.entries.iter_mut() {
            let owes = !e.departed && e.may_ack_checkpoints() && Some(e.id) != except;
            e.set_owes_ack(owes);
        }
    }

    #[cfg(feature = "checkpoints")]
    /// Whether a live peer still owes an acknowledgement of our checkpoint.
    pub(crate) fn checkpoint_owed(&self) -> bool {
        // Only those that can, or have not said yet: an entry made while we were
        // active owes its claim's acknowledgement by default, not a checkpoint's.
        self.iter()
            .any(|e| e.owes_ack() && e.may_ack_checkpoints() && !e.departed)
    }

    /// The entry that expires first.
    pub(crate) fn next_expiry(&self, own_priority: u8, own_heartbeat_us: u32) -> Option<Tick> {
        self.iter()
            .map(|e| e.expires_at(own_priority, own_heartbeat_us))
            .min()
    }

    /// The highest-ranked peer that announces itself active.
    pub(crate) fn leader(&self) -> Option<&Entry> {
        // A loop rather than `max_by_key`, whose keys the compiler keeps copying
        // (ranks are distinct: their ids are).
        let mut leader: Option<&Entry> = None;
        for e in self.iter() {
            if e.role == Role::Active && !e.departed && leader.is_none_or(|l| e.rank() > l.rank()) {
                leader = Some(e);
            }
        }
        leader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_senders_keep_their_counter_until_the_slot_is_needed() {
        let mut t = Table::<2>::default();
        t.insert(Entry::new(1, Role::Active, 1000, 10)).unwrap();
        t.insert(Entry::new(2, Role::Active, 2000, 20)).unwrap();
        assert!(
            t.insert(Entry::new(3, Role::Active, 0, 1)).is_err(),
            "full of live peers"
        );
        t.remove(1).unwrap();
        assert!(t.get(1).is_none());
        assert_eq!(t.iter().count(), 1);
        assert_eq!(t.forgotten_counter(1), Some(10));
        // A new peer takes the forgotten sender's slot.
        t.insert(Entry::new(3, Role::Active, 0, 1)).unwrap();
        assert_eq!(t.forgotten_counter(1), None);
        assert_eq!(t.iter().count(), 2);
        t.remove(2).unwrap();
        t.unforget(2);
        assert_eq!(t.forgotten_counter(2), None);
        assert_eq!(t.iter().map(Entry::id).collect::<Vec<_, 2>>(), [3]);
    }

    #[test]
    fn a_full_table_is_full_of_live_peers() {
        let mut t = Table::<2>::default();
        t.insert(Entry::new(1, Role::Standby, 0, 1)).unwrap();
        assert!(!t.is_full());
        t.insert(Entry::new(2, Role::Active, 0, 1)).unwrap();
        assert!(t.is_full());
        t.remove(1).unwrap();
        assert!(
            !t.is_full(),
            "a forgotten sender's slot is free for a new peer"
        );
    }

    #[test]
    fn replay_window_accepts_reordered_and_refuses_repeats() {
        let mut e = Entry::new(1, Role::Active, 0, 10);
        assert_eq!(e.accept_counter(10), Freshness::Duplicate);
        assert_eq!(e.accept_counter(12), Freshness::Newest);
        assert_eq!(e.accept_counter(11), Freshness::Reordered);
        assert_eq!(e.accept_counter(11), Freshness::Duplicate);
        assert_eq!(e.accept_counter(10), Freshness::Duplicate);
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
    fn a_rebase_keeps_recent_peers_and_old_ones_expired() {
        let mut t = Table::<2>::default();
        t.insert(Entry::new(1, Role::Active, 5_000_000, 1)).unwrap();
        t.insert(Entry::new(2, Role::Active, 1_000, 1)).unwrap();
        t.rebase(2_000);
        let heard: Vec<Tick, 2> = t.iter().map(|e| e.heard).collect();
        assert_eq!(heard, [4_998_000, 0]);
        assert_eq!(t.next_expiry(0, 1_000_000), Some(4_000_000));
    }

    #[test]
    fn dead_interval_follows_vrrp() {
        let hb = 1_000_000;
        // 3 s + (256 - 255) / 256 s
        assert_eq!(dead_interval(hb, 255), 3_003_906);
        assert_eq!(dead_interval(hb, 0), 4_000_000);
        assert_eq!(dead_interval(60_000_000, 0), 240_000_000);
        assert!(dead_interval(hb, 200) < dead_interval(hb, 100));
    }
}
