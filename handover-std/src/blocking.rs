//! The blocking API: the same driver on a background thread, for services that do not
//! use tokio.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::{Config, Error, Event, Status, Successor};

/// A running instance of the protocol, driven by a background thread.
///
/// ```no_run
/// # fn main() -> Result<(), handover_std::Error> {
/// use handover_std::{blocking::Handover, Config};
///
/// let handover = Handover::start(Config::from_env()?)?;
/// // ... start serving ...
/// handover.ready()?;
/// let successor = handover.shutdown_requested()?;
/// // ... stop serving ...
/// handover.shutdown_complete()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Handover {
    inner: Option<crate::Handover>,
    runtime: tokio::runtime::Runtime,
}

impl Handover {
    /// Opens the sockets and starts listening on a background thread.
    pub fn start(config: Config) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("handover")
            .enable_all()
            .build()?;
        let inner = runtime.block_on(crate::Handover::start(config))?;
        Ok(Handover {
            inner: Some(inner),
            runtime,
        })
    }

    fn inner(&self) -> &crate::Handover {
        self.inner.as_ref().expect("present until dropped")
    }

    /// Runs what `f` makes of the async handle to completion on the calling thread.
    pub(crate) fn block_on<'a, F: std::future::Future>(
        &'a self,
        f: impl FnOnce(&'a crate::Handover) -> F,
    ) -> F::Output {
        self.runtime.block_on(f(self.inner()))
    }

    /// Failover, while active: records progress `seq` (see
    /// [`crate::Handover::checkpoint`]).
    pub fn checkpoint(&self, seq: u64) -> Result<(), Error> {
        self.runtime.block_on(self.inner().checkpoint(seq))
    }

    /// The service is ready: claim (hand-over) or stand by (failover).
    pub fn ready(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner().ready())
    }

    /// Application state carried by heartbeats while active (failover).
    pub fn set_state(&self, state: &[u8]) -> Result<(), Error> {
        self.runtime.block_on(self.inner().set_state(state))
    }

    /// Blocks until a newer instance has taken over and this one must shut down;
    /// returns who took over. An error is not a request to shut down (see
    /// [`crate::Handover::shutdown_requested`]).
    pub fn shutdown_requested(&self) -> Result<Successor, Error> {
        self.runtime.block_on(self.inner().shutdown_requested())
    }

    /// Like [`shutdown_requested`](Self::shutdown_requested), giving up after
    /// `timeout`: `Ok(None)` if no shutdown was requested by then.
    pub fn shutdown_requested_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<Successor>, Error> {
        let wait = self.inner().shutdown_requested();
        self.runtime.block_on(async {
            match tokio::time::timeout(timeout, wait).await {
                Ok(result) => result.map(Some),
                Err(_) => Ok(None),
            }
        })
    }

    /// Calls `f` with the successor on the background thread when a shutdown is
    /// requested.
    pub fn on_shutdown(&self, f: impl FnOnce(Successor) + Send + 'static) {
        let mut status = self.inner().status_receiver();
        self.runtime.spawn(async move {
            if let Ok(s) = status.wait_for(|s| s.successor.is_some()).await {
                if let Some(successor) = s.successor {
                    drop(s);
                    f(successor);
                }
            }
        });
    }

    /// The service has shut down: write the complete file and say goodbye; returns
    /// once the goodbye has been delivered (or given up on).
    pub fn shutdown_complete(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner().shutdown_complete())
    }

    /// Leaves at once (failover: a standby takes over without waiting).
    pub fn leave(&self) -> Result<(), Error> {
        self.runtime.block_on(self.inner().leave())
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner().status()
    }

    /// Events from now on; read them with `blocking_recv`.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner().subscribe()
    }
}

/// How long dropping a [`Handover`] waits for the goodbye to be delivered.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Dropping the handle leaves the group cleanly: it blocks until the goodbye has
/// been delivered, for at most a second, so that a standby takes over at once.
impl Drop for Handover {
    fn drop(&mut self) {
        // The async handle must be dropped inside the runtime it belongs to.
        let _guard = self.runtime.enter();
        let Some(inner) = self.inner.take() else {
            return;
        };
        let mut status = inner.status_receiver();
        // The last handle: the driver leaves the group.
        drop(inner);
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, status.wait_for(|s| s.finished)).await;
        });
    }
}
