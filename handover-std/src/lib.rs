//! The Linux adapter for the handover protocol: balenaOS containers and systemd
//! services.
//!
//! Two flavours: [`Handover`] for tokio and [`blocking::Handover`] for everything
//! else, with the same vocabulary as each other and as the embassy adapter:
//! `ready`, `shutdown_requested` (which says who took over), `shutdown_complete`,
//! `leave`. Either owns a background task (the engine of its election backend)
//! that drives a [`handover_proto::Peer`] over UDP multicast (socket2 underneath,
//! never in the API), or an etcd election, writes the supervisor's
//! hand-over-complete file when the protocol says so, and reports [`Event`]s.
//!
//! # One vocabulary, three handles
//!
//! The calls have the same names and meaning everywhere; where a signature
//! differs, the reason is the platform's:
//!
//! | call | tokio [`Handover`] | [`blocking::Handover`] | `handover_embassy::Handover` |
//! |---|---|---|---|
//! | `ready` | `async`, `Result<(), Error>` | blocks, `Result<(), Error>` | `async`, no result |
//! | `shutdown_requested` | `async`, `Result<Successor, Error>` | blocks, `Result<Successor, Error>`; or `on_shutdown(callback)` | `async`, `Successor` |
//! | `shutdown_complete`, `leave` | `async`, `Result<(), Error>` | blocks, `Result<(), Error>` | `async`, `Result<(), StateError>` |
//! | `set_state` | `async`, `Result<(), Error>` | blocks, `Result<(), Error>` | `async`, `Result<(), StateTooLong>` |
//! | `checkpoint` | `async`, `Result<(), Error>` | blocks, `Result<(), Error>` | not offered: a firmware peer acknowledges an active peer's checkpoints (feature `checkpoints`) but runs no work queue of its own |
//! | `status` | `Status` | `Status` | `Option<Status>` (none before the runner first ran) |
//! | events | `subscribe()` (a broadcast receiver), `events()` (a stream) | `subscribe()` | `events()`: `Option<Events>` (a fixed number of subscribers) |
//!
//! Why they differ:
//! - **Errors.** Here, every command is answered by the engine: a refusal
//!   ([`Error::Refused`]), a call the backend does not have ([`Error::Unsupported`]:
//!   etcd carries no state and has no hand-over), or an engine that stopped
//!   ([`Error::Failed`], [`Error::Stopped`]). On a microcontroller the runner
//!   cannot fail that way (no sockets that break, one backend), so `ready` has
//!   nothing to report and the others report the protocol's own error type.
//! - **Blocking.** The blocking handle runs the same engine on a thread of its
//!   own; each call waits for the engine's answer.
//! - **Memory.** The embassy handle allocates nothing: its subscribers and queues
//!   are fixed at compile time, so a subscription can be refused.
//!
//! ```no_run
//! # async fn run() -> Result<(), handover_std::Error> {
//! use handover_std::{Config, Handover};
//!
//! let handover = Handover::start(Config::from_env()?).await?;
//! // ... start serving ...
//! handover.ready().await?;
//! let successor = handover.shutdown_requested().await?;
//! // ... stop serving, close connections ...
//! handover.shutdown_complete().await?;
//! # Ok(()) }
//! ```

pub mod blocking;
mod complete;
mod config;
#[cfg(feature = "etcd")]
pub mod etcd;
mod filter;
pub mod key;
mod link;
mod multicast;
pub mod names;
pub mod notify;
pub mod observe;
pub mod queue;
pub mod sockets;
mod transport;

pub use complete::write_complete_file;
pub use config::{Config, ConfigError, Election, NetworkMode, BALENA_COMPLETE_FILE};
/// The protocol core, whose types this crate's API hands out ([`Event::Protocol`]
/// carries a [`proto::Event`]): one dependency is enough.
pub use handover_proto as proto;
pub use handover_proto::{Policy, State, Successor};
pub use key::GroupKey;
pub use link::{Error, Event, Status, Term};
pub use multicast::TABLE;

use link::{Command, Request};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// A running instance of the protocol (tokio API).
///
/// Dropping the handle leaves the group cleanly: the driver sends its goodbye (so a
/// standby takes over at once) and ends, as long as the runtime keeps running. A
/// service about to return from `main` should `leave().await` first.
#[derive(Debug)]
pub struct Handover {
    commands: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<Event>,
    status: watch::Receiver<Status>,
    stop_limit: Option<Duration>,
}

impl Handover {
    /// How long a service may take to stop once this instance is demoted, if the
    /// backend sets a limit: on etcd, half the margin the engine keeps before its
    /// lease could expire, so that the service is gone before another leader
    /// starts. A supervisor kills a service that takes longer.
    pub fn stop_limit(&self) -> Option<Duration> {
        self.stop_limit
    }

    /// Opens the sockets and starts listening. Call [`ready`](Self::ready) when the
    /// service can serve.
    pub async fn start(config: Config) -> Result<Self, Error> {
        match &config.election {
            Election::Multicast => Self::start_multicast(config).await,
            #[cfg(feature = "etcd")]
            Election::Etcd(_) => etcd::start(config).await,
        }
    }

    /// [`start`](Self::start) for the multicast election only (the error names
    /// any other): a program that starts elections only with this one links none
    /// of etcd's client, so none of it is paged in.
    pub async fn start_multicast(config: Config) -> Result<Self, Error> {
        if config.election != Election::Multicast {
            return Err(Error::Failed(
                "start_multicast: the configuration names another election".into(),
            ));
        }
        // Detached: when every handle is gone the engine says goodbye and ends.
        let (driver, handover) = multicast::Engine::new(config)?;
        tokio::spawn(driver.run());
        Ok(handover)
    }

    /// Sends `command`; the engine's answer comes on the receiver returned.
    fn send(&self, command: Command) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
        let (answer, answered) = oneshot::channel();
        self.commands
            .send(Request { command, answer })
            .map_err(|_| self.stopped())?;
        Ok(answered)
    }

    /// Sends `command` and waits for the engine's answer.
    async fn request(&self, command: Command) -> Result<(), Error> {
        let answered = self.send(command)?;
        answered.await.map_err(|_| self.stopped())?
    }

    /// The service is ready: claim (hand-over) or stand by (failover).
    /// [`Error::Refused`] after leaving.
    pub async fn ready(&self) -> Result<(), Error> {
        self.request(Command::Ready).await
    }

    /// Application state carried by heartbeats while active (failover).
    /// [`Error::Refused`] for a state longer than the protocol carries,
    /// [`Error::Unsupported`] on etcd.
    pub async fn set_state(&self, state: &[u8]) -> Result<(), Error> {
        self.request(Command::SetState(state.to_vec())).await
    }

    /// Failover, while active: records progress `seq` (for a work queue, the id of
    /// the last task completed) and sends it to the standbys at once; they
    /// acknowledge it, and [`Status::checkpoint_held`] follows. Checkpoints only
    /// grow. Progress recorded after a demotion is not an error: it is dropped,
    /// and the next active resumes from what the standbys hold.
    /// [`queue::WorkQueue`] does this for you.
    pub async fn checkpoint(&self, seq: u64) -> Result<(), Error> {
        self.request(Command::Checkpoint(seq)).await
    }

    /// [`checkpoint`](Self::checkpoint) without waiting for the answer, which for a
    /// checkpoint is never a refusal: a work queue records one per task, and
    /// waiting for the engine after each would cost a task switch per task.
    pub fn checkpoint_now(&self, seq: u64) -> Result<(), Error> {
        self.send(Command::Checkpoint(seq)).map(drop)
    }

    /// Failover: whether this instance may take over. A standby whose service
    /// fails its health check stands aside (`false`): it never takes over, and
    /// the others stop counting it among the standbys; `true` stands by again.
    /// Nothing changes for an instance that is not standing by (or not aside).
    pub async fn eligible(&self, eligible: bool) -> Result<(), Error> {
        self.request(Command::Eligible(eligible)).await
    }

    /// After [`Demoted`](proto::Event::Demoted), the service has stopped: an etcd
    /// leader gives its lease back now, so the next leader starts at once, rather
    /// than at the [`stop_limit`](Self::stop_limit). Nothing to do on multicast.
    pub fn service_stopped(&self) -> Result<(), Error> {
        self.send(Command::ServiceStopped).map(drop)
    }

    /// Waits until a newer instance has taken over and this one must shut down;
    /// returns who took over.
    ///
    /// An error is not a request to shut down: [`Error::Failed`] if the driver
    /// stopped on a socket error (the protocol no longer runs), [`Error::Stopped`] if
    /// it finished without one (after [`leave`](Self::leave)).
    pub async fn shutdown_requested(&self) -> Result<Successor, Error> {
        let mut status = self.status.clone();
        let outcome = status
            .wait_for(|s| s.successor.is_some() || s.failed.is_some())
            .await
            .map(|s| (s.successor, s.failed.clone()));
        match outcome {
            Ok((Some(successor), _)) => Ok(successor),
            Ok((None, Some(error))) => Err(Error::Failed(error)),
            Ok((None, None)) | Err(_) => Err(self.stopped()),
        }
    }

    /// Why the driver is gone: the error it failed on, or none.
    fn stopped(&self) -> Error {
        match &self.status.borrow().failed {
            Some(error) => Error::Failed(error.clone()),
            None => Error::Stopped,
        }
    }

    /// The service has shut down: write the complete file, say goodbye, and wait
    /// until the goodbye has been delivered (or given up on).
    pub async fn shutdown_complete(&self) -> Result<(), Error> {
        self.request(Command::ShutdownComplete).await?;
        self.finished().await
    }

    /// Leaves at once (failover: a standby takes over without waiting). Leaving
    /// twice is not an error.
    pub async fn leave(&self) -> Result<(), Error> {
        self.request(Command::Leave).await?;
        self.finished().await
    }

    async fn finished(&self) -> Result<(), Error> {
        let mut status = self.status.clone();
        let failed = status
            .wait_for(|s| s.finished || s.failed.is_some())
            .await
            .map_err(|_| self.stopped())?
            .failed
            .clone();
        match failed {
            Some(error) => Err(Error::Failed(error)),
            None => Ok(()),
        }
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Events from now on, as a stream. A reader more than 256 events behind skips
    /// the oldest; the status ([`wait_for`](Self::wait_for)) never misses a change.
    pub fn events(&self) -> impl tokio_stream::Stream<Item = Event> + Send + 'static {
        use tokio_stream::StreamExt;
        tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe()).filter_map(|e| e.ok())
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(crate) fn status_receiver(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until the status satisfies `f`.
    pub async fn wait_for(&self, f: impl FnMut(&Status) -> bool) -> Result<Status, Error> {
        let mut status = self.status.clone();
        let s = status.wait_for(f).await.map_err(|_| self.stopped())?;
        Ok(s.clone())
    }
}
