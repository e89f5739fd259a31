//! Counters of what a peer received, sent and dropped.

use crate::wire::DecodeError;

/// Counters kept by a [`Peer`](crate::Peer); read them with
/// [`Peer::stats`](crate::Peer::stats). Every datagram handed to the peer is either
/// accepted or counted in exactly one `dropped_*` field. Counters are 32 bits (they
/// live in a microcontroller's RAM) and wrap around.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed in.
    pub received: u32,
    /// Datagrams accepted and acted upon.
    pub accepted: u32,
    /// Datagrams emitted (v2 and legacy).
    pub sent: u32,
    /// Zero-length datagrams.
    pub dropped_empty: u32,
    /// First byte of no known format.
    pub dropped_unknown_format: u32,
    /// handover-lib status messages (not used by this protocol).
    pub dropped_legacy_status: u32,
    /// Shorter than the format requires.
    pub dropped_truncated: u32,
    /// Longer than the format allows.
    pub dropped_trailing: u32,
    /// Reserved flag bits set.
    pub dropped_bad_flags: u32,
    /// Body that does not decode or exceeds a limit.
    pub dropped_malformed: u32,
    /// A critical extension this version does not know.
    pub dropped_unknown_extension: u32,
    /// Another scope's datagrams (other devices or services on the group).
    pub dropped_foreign_scope: u32,
    /// Without a tag on a group with a key.
    pub dropped_unauthenticated: u32,
    /// With a tag that does not verify under the group's keys: forged or corrupted.
    pub dropped_bad_tag: u32,
    /// Our own datagrams, looped back by the network.
    pub dropped_own: u32,
    /// Counter too far below the newest from that sender to tell a reordered
    /// datagram from a replay (also: not above the last one from a sender recently
    /// forgotten).
    pub dropped_stale: u32,
    /// A datagram already handled: the same one heard on a second interface,
    /// duplicated by the network, or replayed at once.
    pub dropped_duplicate: u32,
    /// Acknowledgements addressed to another peer.
    pub dropped_misdirected: u32,
    /// Legacy v1 datagrams while legacy interop is off, or on a group with a key.
    pub dropped_legacy_refused: u32,
    /// Inputs refused because the adapter left too many events undrained.
    pub dropped_backlog: u32,
    /// Acknowledgements not sent because the reply queue was full (the claimer retries).
    pub dropped_replies: u32,
    /// Datagrams not emitted because the caller's buffer was too small.
    pub emit_failed: u32,
    /// New peers not tracked because the peer table was full, and standbys
    /// forgotten to make room for a new active or claimer.
    pub table_full: u32,
}

impl Stats {
    /// Total datagrams dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        [
            self.dropped_empty,
            self.dropped_unknown_format,
            self.dropped_legacy_status,
            self.dropped_truncated,
            self.dropped_trailing,
            self.dropped_bad_flags,
            self.dropped_malformed,
            self.dropped_unknown_extension,
            self.dropped_foreign_scope,
            self.dropped_unauthenticated,
            self.dropped_bad_tag,
            self.dropped_own,
            self.dropped_stale,
            self.dropped_duplicate,
            self.dropped_misdirected,
            self.dropped_legacy_refused,
            self.dropped_backlog,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }

    pub(crate) fn count_decode_error(&mut self, e: DecodeError) {
        let counter = match e {
            DecodeError::Empty => &mut self.dropped_empty,
            DecodeError::UnknownFormat(_) => &mut self.dropped_unknown_format,
            DecodeError::LegacyStatus => &mut self.dropped_legacy_status,
            DecodeError::Truncated => &mut self.dropped_truncated,
            DecodeError::Trailing => &mut self.dropped_trailing,
            DecodeError::BadFlags => &mut self.dropped_bad_flags,
            DecodeError::Malformed => &mut self.dropped_malformed,
            DecodeError::UnknownCriticalExtension => &mut self.dropped_unknown_extension,
        };
        counter.bump();
    }
}

/// Counting that wraps instead of overflowing.
pub(crate) trait Bump {
    fn bump(&mut self);
}

impl Bump for u32 {
    fn bump(&mut self) {
        *self = self.wrapping_add(1);
    }
}
