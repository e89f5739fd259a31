//! A lease this engine keeps alive itself, and the deadline until which it is
//! proven: etcd never tells a holder its lease is gone.

use std::time::Duration;

use tokio::time::Instant;

use super::rpc::{self, Client};
use super::{within, EtcdConfig};

/// The pause between attempts to give a lease back.
const REVOKE_RETRY: Duration = Duration::from_millis(20);

/// A lease kept alive by this engine, and the deadline until which it is proven.
pub(super) struct Lease {
    pub(super) id: i64,
    pub(super) ttl: Duration,
    pub(super) margin: Duration,
    /// `None` after the renewal stream failed, until it is reopened.
    pub(super) keeper: Option<rpc::LeaseKeeper>,
    /// When the renewal awaiting an answer was sent.
    pub(super) sent: Option<Instant>,
    pub(super) next_renewal: Instant,
    /// Leadership may be held until then, no longer.
    pub(super) deadline: Instant,
}

impl Lease {
    pub(super) async fn new(
        ops: &Client,
        id: i64,
        granted_at: Instant,
        etcd: &EtcdConfig,
    ) -> Result<Self, rpc::Error> {
        let keeper = ops.lease_keep_alive(id).await?;
        Ok(Lease {
            id,
            ttl: etcd.ttl,
            margin: etcd.margin(),
            keeper: Some(keeper),
            sent: None,
            next_renewal: granted_at + etcd.ttl / 3,
            deadline: granted_at + etcd.ttl - etcd.margin(),
        })
    }

    /// Sends a renewal (one in flight at a time: its send time is what counts). One
    /// unanswered for a third of the TTL is given up with its stream, and the
    /// renewal goes out on a new one (to whichever member answers).
    pub(super) async fn renew(&mut self, ops: &Client) {
        let now = Instant::now();
        self.next_renewal = now + self.ttl / 6;
        match self.sent {
            Some(sent) if now - sent < self.ttl / 3 => return,
            Some(_) => self.reopen(ops).await,
            None if self.keeper.is_none() => self.reopen(ops).await,
            None => {}
        }
        let limit = self.time_left();
        if let Some(keeper) = &mut self.keeper {
            match within(limit, "lease renewal", keeper.keep_alive()).await {
                Ok(()) => self.sent = Some(now),
                Err(e) => tracing::warn!("lease renewal not sent: {e}"),
            }
        }
    }

    /// The next answer to a renewal: the deadline moves to its send time + the TTL
    /// granted − the margin. A TTL of 0 means the lease is gone.
    pub(super) async fn answer(&mut self) -> Result<(), rpc::Error> {
        let Some(keeper) = &mut self.keeper else {
            return std::future::pending().await;
        };
        let Some(ttl) = keeper.answer().await? else {
            self.keeper = None;
            return Err(rpc::Error::new("the renewal stream ended"));
        };
        let Some(sent) = self.sent.take() else {
            return Ok(());
        };
        if ttl <= 0 {
            self.deadline = Instant::now();
            return Ok(());
        }
        let ttl = Duration::from_secs(ttl as u64);
        self.deadline = self.deadline.max(sent + ttl - self.margin);
        self.next_renewal = sent + self.ttl / 3;
        Ok(())
    }

    /// Opens a new renewal stream after the last one failed.
    pub(super) async fn reopen(&mut self, ops: &Client) {
        self.sent = None;
        match within(
            self.time_left(),
            "lease renewal",
            ops.lease_keep_alive(self.id),
        )
        .await
        {
            Ok(keeper) => self.keeper = Some(keeper),
            Err(e) => {
                tracing::warn!("lease renewal stream: {e}");
                self.keeper = None;
            }
        }
    }

    /// How long a request may take: until the deadline, and never more than the
    /// margin.
    pub(super) fn time_left(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        left.clamp(Duration::from_millis(1), self.margin)
    }

    /// Gives the lease back, so that its key goes at once.
    pub(super) async fn revoke(&self, ops: &Client) {
        Self::revoke_id(ops, self.id, self.margin).await;
    }

    /// Gives the lease back, trying again within `limit`: the way out of a term
    /// is often a connection that just broke, and the first request on it fails
    /// while the next one reconnects.
    pub(super) async fn revoke_id(ops: &Client, id: i64, limit: Duration) {
        let revoking = async {
            loop {
                match ops.lease_revoke(id).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.is_lease_gone() => return Ok(()),
                    Err(e) => tracing::debug!("revoking the lease: {e}; trying again"),
                }
                tokio::time::sleep(REVOKE_RETRY).await;
            }
        };
        if let Err(e) = within(limit, "revoke", revoking).await {
            tracing::warn!("revoking the lease failed (it expires by itself): {e}");
        }
    }
}
