//! Configuration of a [`Peer`](crate::Peer).

use core::fmt;
use core::net::Ipv4Addr;
use core::time::Duration;

use heapless::{String, Vec};

use crate::time::Instant;
use crate::wire::{Key, MAX_ADDRESSES, MAX_NAME};

/// Shortest heartbeat interval accepted.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// Longest heartbeat interval accepted.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(60);
/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Default priority.
pub const DEFAULT_PRIORITY: u8 = 100;

/// What a peer does when another outranks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Policy {
    /// The newer instance wins; the older shuts down for good (balena's hand-over).
    HandOver,
    /// The highest-ranked ready peer is active; the others wait as standbys and take
    /// over when it goes silent.
    Failover {
        /// Whether a higher-priority peer takes over from an active one of lower priority.
        preempt: bool,
    },
}

/// Everything a [`Peer`](crate::Peer) needs to start. The adapter supplies the values
/// that come from the outside world: the instance id, the wall-clock start time and a
/// random seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Scope id ([`wire::scope_id`](crate::wire::scope_id) of e.g. device + service):
    /// peers of other scopes on the same group are ignored.
    pub scope: u32,
    /// This instance's id: random, unique per process start, never 0 (reserved).
    pub id: u64,
    /// Wall-clock start time in ms since the Unix epoch. Used only as a tie-breaker
    /// between peers that never heard of each other, and in legacy announcements.
    pub start_ms: i64,
    /// Seed for the heartbeat jitter.
    pub seed: u64,
    /// Hand-over or failover.
    pub policy: Policy,
    /// Rank within the scope; higher wins. Failover ranks by it first; hand-over
    /// peers should all keep the default.
    pub priority: u8,
    /// Interval between heartbeats, from [`MIN_HEARTBEAT`] to [`MAX_HEARTBEAT`].
    pub heartbeat: Duration,
    /// Also speak handover-lib's v1 protocol on its own group and port (with the
    /// `legacy` feature, on by default; without it, refused by [`validate`](Self::validate)).
    pub legacy: bool,
    /// Service name announced in heartbeats.
    pub name: String<MAX_NAME>,
    /// Addresses announced in heartbeats.
    pub addresses: Vec<Ipv4Addr, MAX_ADDRESSES>,
    /// The group's pre-shared key: when set, every datagram sent is tagged and every
    /// v2 datagram received must carry a valid tag.
    pub auth: Option<Auth>,
}

/// Authentication settings of a group with a pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The key datagrams are tagged with.
    pub key: Key,
    /// A key still accepted (not used to send) until the given instant: rotation
    /// without a flag day.
    pub previous: Option<(Key, Instant)>,
    /// Accept handover-lib's unauthenticated v1 datagrams anyway (refused by default:
    /// anyone on the LAN can forge them).
    pub accept_legacy: bool,
}

impl Auth {
    /// Tags with `key`, accepts nothing else.
    pub fn new(key: Key) -> Self {
        Auth {
            key,
            previous: None,
            accept_legacy: false,
        }
    }

    /// Whether `tag` is valid under the current key, or the previous one before its
    /// deadline.
    #[cfg(feature = "auth")]
    pub(crate) fn verifies(
        &self,
        now: Instant,
        covered: &[u8],
        tag: &[u8; crate::wire::TAG_LEN],
    ) -> bool {
        use crate::wire::auth;
        auth::verify(&self.key, covered, tag)
            || self
                .previous
                .as_ref()
                .is_some_and(|(key, until)| now < *until && auth::verify(key, covered, tag))
    }
}

impl fmt::Debug for Auth {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("key", &"<secret>")
            .field("previous", &self.previous.as_ref().map(|(_, until)| until))
            .field("accept_legacy", &self.accept_legacy)
            .finish()
    }
}

impl Config {
    /// A hand-over configuration with the default heartbeat and priority.
    pub fn new(scope: u32, id: u64, start_ms: i64, seed: u64) -> Self {
        Config {
            scope,
            id,
            start_ms,
            seed,
            policy: Policy::HandOver,
            priority: DEFAULT_PRIORITY,
            heartbeat: DEFAULT_HEARTBEAT,
            legacy: false,
            name: String::new(),
            addresses: Vec::new(),
            auth: None,
        }
    }

    /// Checks every setting; the error names the one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ReservedId);
        }
        if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&self.heartbeat) {
            return Err(ConfigError::Heartbeat(self.heartbeat));
        }
        if self.legacy && self.policy != Policy::HandOver {
            return Err(ConfigError::LegacyNeedsHandOver);
        }
        if cfg!(not(feature = "auth")) && self.auth.is_some() {
            return Err(ConfigError::AuthUnsupported);
        }
        if cfg!(not(feature = "legacy")) && self.legacy {
            return Err(ConfigError::LegacyUnsupported);
        }
        Ok(())
    }
}

/// A setting out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// `heartbeat` is outside 10 ms ..= 60 s.
    Heartbeat(Duration),
    /// `legacy` is set with the failover policy: handover-lib only knows hand-over.
    LegacyNeedsHandOver,
    /// `auth` is set but the crate was built without its `auth` feature.
    AuthUnsupported,
    /// `legacy` is set but the crate was built without its `legacy` feature.
    LegacyUnsupported,
    /// `id` is 0, which the protocol reserves for "nobody".
    ReservedId,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Heartbeat(d) => write!(
                f,
                "heartbeat: {} ms is out of range (10 ms to 60000 ms)",
                d.as_millis()
            ),
            ConfigError::LegacyNeedsHandOver => {
                f.write_str("legacy: handover-lib interop needs the hand-over policy")
            }
            ConfigError::ReservedId => f.write_str("id: 0 is reserved; draw another"),
            ConfigError::AuthUnsupported => {
                f.write_str("auth: this build has no authentication (enable the `auth` feature)")
            }
            ConfigError::LegacyUnsupported => f.write_str(
                "legacy: this build does not speak handover-lib's protocol (enable the `legacy` feature)",
            ),
        }
    }
}

impl core::error::Error for ConfigError {}
