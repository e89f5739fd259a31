//! The etcd engine: leader election on etcd v3, for instances that share no LAN.
//!
//! Each term is a lease and a campaign under the election's name (etcd's own
//! Election service). What it adds to them, because etcd alone does not give it:
//!
//! - **Leadership ends locally, before etcd can end it.** The server never tells a
//!   holder its lease is gone. So the engine renews the lease itself, every third
//!   of the TTL, and holds leadership only until `send time of the last renewal that
//!   was answered + TTL − margin`: the old leader is `Demoted` before etcd could have
//!   expired its lease and elected another.
//! - **A campaign's success is checked.** A campaign that outlived its lease
//!   returns success for a key that no longer exists; a transaction comparing the
//!   key's create revision proves it before `Elected`.
//! - **A fencing token.** The leader key's create revision, which grows across
//!   terms: [`Event::Term`](crate::Event::Term) carries it, before `Elected`.
//! - **Who leads, including nobody.** A watch of the election's prefix and a sorted
//!   read give `LeaderChanged` (etcd's Observe never reports "no leader").
//! - **Leaving is immediate.** `leave()`, or dropping every handle, resigns and
//!   revokes the lease: a standby is elected in tens of milliseconds, not a TTL.
//! - **A lost term is never resumed.** After demotion the engine starts over with a
//!   new lease and a new campaign, retrying while etcd is unreachable.
//! - **Checkpoints only the leader can record.** [`Handover::checkpoint`] writes
//!   `<name>.checkpoint` in a transaction that compares the leader key's create
//!   revision with the term's fencing token: a deposed leader's write is refused,
//!   so progress is recorded once across the fleet. Every candidate watches the key
//!   (`Status::checkpoint`); a new leader starts from it.
//!
//! [`Handover::checkpoint`]: crate::Handover::checkpoint

use std::time::Duration;

use crate::link::Error;

mod config;
mod engine;
mod lease;
mod observer;
mod rpc;

pub use config::{EtcdConfig, EtcdTls, Secret};
pub use engine::start;
pub use observer::{Candidate, Observer};

fn failed(e: rpc::Error) -> Error {
    Error::Failed(format!("etcd: {e}"))
}

/// `request`, given up after `limit`: no call but the campaign may hold the engine
/// longer (a frozen member accepts connections and never answers).
async fn within<T>(
    limit: Duration,
    what: &str,
    request: impl std::future::Future<Output = Result<T, rpc::Error>>,
) -> Result<T, rpc::Error> {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| Err(rpc::Error::new(format!("{what}: no answer in {limit:?}"))))
}
