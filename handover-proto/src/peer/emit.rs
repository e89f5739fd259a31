//! Sending: what the outbox says is next, encoded by one match over the message
//! kinds, sealed (tagged, with extension records) and counted.

use core::net::SocketAddr;
use core::num::NonZeroU64;

use super::outbox::{Due, Outgoing};
use super::Peer;
use crate::event::{Destination, State, Transmit};
use crate::stats::Bump;
#[cfg(feature = "legacy")]
use crate::wire::legacy;
use crate::wire::{self, Body, Header, Repr, Role};
use crate::Instant;

impl<const N: usize> Peer<N> {
    /// Writes the next datagram to send into `buf` and says where it goes. `buf`
    /// should hold [`wire::MAX_DATAGRAM`] bytes; a datagram that does not fit is
    /// skipped and counted in [`Stats::emit_failed`](crate::Stats::emit_failed).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.advance(now);
        loop {
            let next = self.outbox.next()?;
            let Some((destination, result)) = self.emit(next, buf) else {
                // Nothing to say after all (no role to announce, no leader to
                // acknowledge to).
                continue;
            };
            match result {
                Ok(len) => {
                    self.stats.sent.bump();
                    return Some(Transmit { destination, len });
                }
                Err(_) => self.stats.emit_failed.bump(),
            }
        }
    }

    /// Encodes `next`: where it goes, and its bytes in `buf`. A new message kind
    /// is one arm here, one in the wire's [`Body`] and one in the receiver's
    /// dispatch.
    // Inlined on hosts, for speed; one copy on microcontrollers, for flash.
    #[cfg_attr(not(target_pointer_width = "32"), inline(always))]
    fn emit(
        &mut self,
        next: Outgoing,
        buf: &mut [u8],
    ) -> Option<(Destination, Result<usize, wire::EmitError>)> {
        let group = Destination::Group;
        let (destination, extended) = match next {
            Outgoing::Ack(reply) => (Destination::Reply(SocketAddr::V4(reply.to)), false),
            #[cfg(feature = "legacy")]
            Outgoing::Due(Due::Legacy) => {
                let announce = legacy::Announce {
                    start_ms: self.config.start_ms,
                };
                return Some((Destination::LegacyGroup, announce.emit(buf)));
            }
            // Never due without the feature.
            #[cfg(not(feature = "legacy"))]
            Outgoing::Due(Due::Legacy) => return None,
            Outgoing::Due(Due::Announce) => (group, true),
            Outgoing::Due(Due::Goodbye) => (group, true),
            Outgoing::Due(Due::Checkpoint) => (group, false),
            // To the leader that sent it (the acknowledgement is owed to no other).
            Outgoing::Due(Due::CheckpointAck) => {
                let to = self.outbox.checkpoint_ack.take()?;
                self.leader?;
                (Destination::Reply(SocketAddr::V4(to)), false)
            }
        };
        let role = self.role();
        if matches!(next, Outgoing::Due(Due::Announce)) && role.is_none() {
            return None;
        }
        let role = role.unwrap_or(Role::Yielding);
        let header = self.next_header();
        let mut addresses = [0u8; 4 * wire::MAX_ADDRESSES];
        let body = match next {
            Outgoing::Ack(reply) => Body::Ack(wire::Ack {
                to: reply.id.into(),
                generation: reply.generation,
                role,
                rank: self.rank().to_wire(),
                ready_ms: self.ready_ms(),
            }),
            Outgoing::Due(Due::Announce) => {
                for (chunk, a) in addresses.chunks_exact_mut(4).zip(&self.config.addresses) {
                    chunk.copy_from_slice(&a.octets());
                }
                let state: &[u8] = match self.state {
                    State::Active => &self.app_state,
                    _ => &[],
                };
                Body::Announce(wire::Announce {
                    role,
                    rank: self.rank().to_wire(),
                    ready_ms: self.ready_ms(),
                    heartbeat_ms: self.heartbeat_ms(),
                    claim_heard: self.claim_heard.map(NonZeroU64::get),
                    name: self.config.name.as_bytes(),
                    addresses: addresses
                        .get(..4 * self.config.addresses.len())
                        .unwrap_or_default(),
                    state,
                })
            }
            Outgoing::Due(Due::Goodbye) => Body::Goodbye(wire::Goodbye {
                successor: self.successor.map(NonZeroU64::get),
            }),
            #[cfg(feature = "checkpoints")]
            Outgoing::Due(Due::Checkpoint) => Body::Checkpoint(wire::Checkpoint {
                seq: self.checkpoint,
            }),
            #[cfg(feature = "checkpoints")]
            Outgoing::Due(Due::CheckpointAck) => Body::CheckpointAck(wire::CheckpointAck {
                to: self.leader.map_or(0, NonZeroU64::get),
                seq: self.checkpoint,
            }),
            // Never due without the feature.
            #[cfg(not(feature = "checkpoints"))]
            Outgoing::Due(Due::Checkpoint | Due::CheckpointAck) => return None,
            Outgoing::Due(Due::Legacy) => return None,
        };
        let repr = Repr { header, body };
        Some((destination, self.seal(&repr, extended, buf)))
    }

    /// Encodes `repr`, with what this peer supports and holds as extension records
    /// if `extended`, tagged when the group has a key: one encoding path for every
    /// message.
    fn seal(
        &self,
        repr: &Repr<'_>,
        extended: bool,
        buf: &mut [u8],
    ) -> Result<usize, wire::EmitError> {
        let mut datagram = wire::DatagramWriter::new(repr, buf)?;
        if extended {
            self.write_progress(&mut datagram)?;
        }
        #[cfg(feature = "auth")]
        if let Some(auth) = &self.config.auth {
            return datagram.tag(&auth.key);
        }
        Ok(datagram.len())
    }

    fn next_header(&mut self) -> Header {
        self.counter += 1;
        Header {
            scope: self.config.scope,
            sender: self.config.id,
            counter: self.counter,
        }
    }
}
