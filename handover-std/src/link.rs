//! What every election engine shares with the handle it serves: the events and
//! status it reports, the commands it takes, and the [`Link`] that carries them.
//! The multicast engine ([`crate::multicast`]) and the etcd engine both drive one,
//! so a service sees the same API whichever decides who is in charge.
//!
//! The link keeps the rules every engine must keep, so that none has to repeat
//! them: events go out before the status that reflects them
//! ([`publish`](Link::publish)), and every command is answered
//! ([`Request::answer`]), so a refusal or a command the backend does not support
//! reaches the caller.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handover_proto::{State, Stats};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// What the adapter reports: the protocol's events and its own.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An event of the protocol (the adapter carries out its actions itself).
    Protocol(handover_proto::Event),
    /// The hand-over-complete file was written.
    CompleteWritten(PathBuf),
    /// The hand-over-complete file could not be written; the supervisor's timeout
    /// remains the backstop.
    CompleteFailed {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The interfaces the group is joined on changed (one came up, went away or
    /// changed address); the names of those joined now.
    InterfacesChanged(Vec<String>),
    /// Receiving failed and will be retried (counted in
    /// [`Status::receive_errors`]).
    ReceiveError(String),
    /// A term began with a fencing token (etcd), just before
    /// [`Elected`](handover_proto::Event::Elected).
    Term(Term),
    /// The election backend could not be reached or refused a request; the engine
    /// retries (etcd).
    ElectionError(String),
}

/// A term of leadership on a backend that numbers them (etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The fencing token: the leader key's create revision. It grows across terms;
    /// a resource that remembers the highest token it accepted refuses a deposed
    /// leader's writes.
    pub token: u64,
    /// The leader key (`NAME/<lease id>`).
    pub key: String,
}

/// A snapshot of the instance, kept current by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// This instance's id.
    pub id: u64,
    /// Its lifecycle state.
    pub state: State,
    /// The peer in charge, as far as it knows.
    pub leader: Option<u64>,
    /// Set when the protocol asked this instance to shut down: who took over.
    pub successor: Option<handover_proto::Successor>,
    /// Its goodbye has been sent: nothing more will happen.
    pub finished: bool,
    /// The driver stopped on an error it could not recover from: the protocol no
    /// longer runs. Not a request to shut down.
    pub failed: Option<String>,
    /// The interfaces the group is joined on.
    pub interfaces: Vec<String>,
    /// Receive errors that were retried.
    pub receive_errors: u64,
    /// Datagram counters (multicast).
    pub stats: Stats,
    /// The current term, while leading on a backend that numbers them (etcd).
    pub term: Option<Term>,
    /// The highest checkpoint this instance knows (failover; see
    /// [`Handover::checkpoint`](crate::Handover::checkpoint)): its own while active,
    /// the active's otherwise. 0 for none.
    pub checkpoint: u64,
    /// While active: the highest checkpoint every standby acknowledged in this term
    /// (the one it started with, once they have said what they hold). `None` while
    /// not active, or until the standbys have answered.
    pub checkpoint_held: Option<u64>,
    /// Failover: how many other instances stand by, ready to take over (those
    /// that stood aside are not counted).
    pub standbys: usize,
}

impl Status {
    /// The status of a new instance: nothing happened yet.
    pub(crate) fn new(id: u64, state: State) -> Self {
        Status {
            id,
            state,
            leader: None,
            successor: None,
            finished: false,
            failed: None,
            interfaces: Vec::new(),
            receive_errors: 0,
            stats: Stats::default(),
            term: None,
            checkpoint: 0,
            checkpoint_held: None,
            standbys: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    Ready,
    ShutdownComplete,
    Leave,
    SetState(Vec<u8>),
    Checkpoint(u64),
    ServiceStopped,
    Eligible(bool),
}

impl Command {
    /// The handle's call that sends it, for messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Ready => "ready",
            Command::ShutdownComplete => "shutdown_complete",
            Command::Leave => "leave",
            Command::SetState(_) => "set_state",
            Command::Checkpoint(_) => "checkpoint",
            Command::ServiceStopped => "service_stopped",
            Command::Eligible(_) => "eligible",
        }
    }
}

/// A command and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) command: Command,
    pub(crate) answer: oneshot::Sender<Result<(), Error>>,
}

impl Request {
    /// Answers the caller (who may have stopped waiting).
    pub(crate) fn answer(self, result: Result<(), Error>) {
        let _ = self.answer.send(result);
    }

    /// Answers that this backend has no such command.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn unsupported(self, backend: &'static str) {
        let call = self.command.name();
        self.answer(Err(Error::Unsupported { call, backend }));
    }
}

/// Errors of the Linux adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The sockets could not be set up.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The driver has finished (after this instance's goodbye).
    #[error("the handover driver has stopped")]
    Stopped,
    /// The driver stopped on an error: the protocol no longer runs. This is not a
    /// request to shut down; no newer instance took over.
    #[error("the handover driver failed: {0}")]
    Failed(String),
    /// The protocol refused the command in its current state (`ready` after
    /// leaving, a state longer than the protocol carries).
    #[error("{call}: {reason}")]
    Refused {
        /// The call.
        call: &'static str,
        /// Why.
        reason: String,
    },
    /// The election backend has no such command (etcd elects a leader: it has no
    /// hand-over and carries no state).
    #[error("{call}: not supported by the {backend} election")]
    Unsupported {
        /// The call.
        call: &'static str,
        /// The backend.
        backend: &'static str,
    },
}

/// The engine's end of a [`Handover`](crate::Handover): commands in, events and
/// status out. Its fields are private: [`publish`](Self::publish) (and
/// [`fail`](Self::fail)) are the only ways to change the status, so that no engine
/// can report a status before the events that explain it.
#[derive(Debug)]
pub(crate) struct Link {
    commands: mpsc::UnboundedReceiver<Request>,
    events: broadcast::Sender<Event>,
    status: watch::Sender<Status>,
}

impl Link {
    /// A link starting at `status`, and the handle at its other end. `stop_limit`:
    /// how long a service may take to stop once this engine demotes its instance
    /// (see [`Handover::stop_limit`](crate::Handover::stop_limit)).
    pub(crate) fn new(status: Status, stop_limit: Option<Duration>) -> (Link, crate::Handover) {
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let (status, status_rx) = watch::channel(status);
        let handle = crate::Handover {
            commands: cmd_tx,
            events: events.clone(),
            status: status_rx,
            stop_limit,
        };
        (
            Link {
                commands,
                events,
                status,
            },
            handle,
        )
    }

    /// The next command of the handle, or `None` once every handle is gone.
    pub(crate) async fn command(&mut self) -> Option<Request> {
        self.commands.recv().await
    }

    /// The status as last published.
    pub(crate) fn status(&self) -> watch::Ref<'_, Status> {
        self.status.borrow()
    }

    /// Reports an event that changes nothing in the status (to nobody, if no one
    /// subscribed).
    pub(crate) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Reports `events`, then changes the status with `update` (which says whether
    /// it changed anything): whoever the status wakes finds the events that led to
    /// it already sent.
    pub(crate) fn publish(
        &self,
        events: impl IntoIterator<Item = Event>,
        update: impl FnOnce(&mut Status) -> bool,
    ) {
        for event in events {
            self.emit(event);
        }
        self.status.send_if_modified(update);
    }

    /// Records an unrecoverable error: the engine no longer runs.
    pub(crate) fn fail(&self, error: String) {
        tracing::error!("the handover engine failed: {error}");
        self.status.send_modify(|s| s.failed = Some(error));
    }
}

/// A random 64-bit value from the OS-seeded hasher keys std already draws.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Waits until `at` (forever without a deadline).
pub(crate) async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
