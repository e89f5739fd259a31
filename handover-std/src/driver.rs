//! The task that owns the [`Peer`] and its sockets: the sans-IO loop of
//! `handover-proto`'s crate docs, on tokio.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handover_proto::{wire, Instant, Peer, State, Stats};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

use crate::complete::write_complete_file;
use crate::config::Config;
use crate::transport::{destination, Sockets};

/// Capacity of the peer table on Linux.
pub const TABLE: usize = 32;

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
}

/// A snapshot of the instance, kept current by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This instance's id.
    pub id: u64,
    /// Its lifecycle state.
    pub state: State,
    /// The peer in charge, as far as it knows.
    pub leader: Option<u64>,
    /// The protocol asked this instance to shut down.
    pub shutdown_requested: bool,
    /// Its goodbye has been sent: nothing more will happen.
    pub finished: bool,
    /// Datagram counters.
    pub stats: Stats,
}

#[derive(Debug)]
pub(crate) enum Command {
    Ready,
    ShutdownComplete,
    Leave,
    SetState(Vec<u8>),
}

/// Errors of the Linux adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// The sockets could not be set up.
    #[error("network: {0}")]
    Io(#[from] io::Error),
    /// The driver task has stopped.
    #[error("the handover driver has stopped")]
    Stopped,
}

pub(crate) struct Driver {
    config: Config,
    peer: Peer<TABLE>,
    group: UdpSocket,
    unicast: UdpSocket,
    legacy: Option<UdpSocket>,
    epoch: std::time::Instant,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<Event>,
    status: watch::Sender<Status>,
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

impl Driver {
    #[allow(clippy::type_complexity)]
    pub(crate) fn new(
        config: Config,
    ) -> Result<
        (
            Self,
            mpsc::UnboundedSender<Command>,
            broadcast::Sender<Event>,
            watch::Receiver<Status>,
        ),
        Error,
    > {
        let sockets = Sockets::open(&config)?;
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Id 0 is reserved by the protocol.
        let id = random_u64().max(1);
        let proto = config.to_proto(id, start_ms, random_u64(), &sockets.addresses)?;
        let epoch = std::time::Instant::now();
        let peer = Peer::new(proto, Instant::ZERO).map_err(crate::ConfigError::from)?;
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(256);
        let (status, status_rx) = watch::channel(Status {
            id: peer.id(),
            state: peer.state(),
            leader: None,
            shutdown_requested: false,
            finished: false,
            stats: *peer.stats(),
        });
        let legacy = sockets.legacy.map(UdpSocket::from_std).transpose()?;
        let driver = Driver {
            config,
            peer,
            group: UdpSocket::from_std(sockets.group)?,
            unicast: UdpSocket::from_std(sockets.unicast)?,
            legacy,
            epoch,
            commands,
            events: events.clone(),
            status,
        };
        Ok((driver, cmd_tx, events, status_rx))
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs until the peer has finished (after its goodbye) or every handle is gone.
    pub(crate) async fn run(mut self) -> io::Result<()> {
        let mut group_buf = [0u8; 2048];
        let mut unicast_buf = [0u8; 2048];
        let mut legacy_buf = [0u8; 2048];
        let mut commands_open = true;
        loop {
            self.flush().await;
            if self.peer.is_finished() {
                return Ok(());
            }
            let deadline = self.peer.poll_timeout();
            let now = self.now();
            // An expired deadline is handled now: a timer future may report pending
            // for a deadline that already passed.
            if deadline.is_some_and(|d| d <= now) {
                self.peer.handle_timeout(now);
                continue;
            }
            let sleep = deadline.map(|d| self.epoch + Duration::from_micros(d.as_micros()));
            tokio::select! {
                r = self.group.recv_from(&mut group_buf) => {
                    let (n, from) = r?;
                    self.receive(from, &group_buf[..n]);
                }
                r = self.unicast.recv_from(&mut unicast_buf) => {
                    let (n, from) = r?;
                    self.receive(from, &unicast_buf[..n]);
                }
                r = recv_opt(self.legacy.as_ref(), &mut legacy_buf) => {
                    let (n, from) = r?;
                    self.receive(from, &legacy_buf[..n]);
                }
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle dropped: leave the group cleanly.
                        commands_open = false;
                        let _ = self.peer.leave(self.now());
                    }
                },
                () = sleep_until(sleep) => {
                    let now = self.now();
                    self.peer.handle_timeout(now);
                }
            }
        }
    }

    fn receive(&mut self, from: SocketAddr, bytes: &[u8]) {
        let now = self.now();
        self.peer.handle_datagram(now, from, bytes);
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now();
        let result = match cmd {
            Command::Ready => self.peer.ready(now).map_err(|e| e.to_string()),
            Command::ShutdownComplete => {
                self.peer.shutdown_complete(now).map_err(|e| e.to_string())
            }
            Command::Leave => self.peer.leave(now).map_err(|e| e.to_string()),
            Command::SetState(s) => self.peer.set_state(&s).map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!("command ignored: {e}");
        }
    }

    /// Sends every queued datagram, then reports every event (the drain order of the
    /// calling contract).
    async fn flush(&mut self) {
        let now = self.now();
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        while let Some(t) = self.peer.poll_transmit(now, &mut buf) {
            let to = destination(&self.config, t.destination);
            if let Err(e) = self.unicast.send_to(&buf[..t.len], to).await {
                // No route or a full buffer: the protocol retransmits what matters.
                tracing::debug!("send to {to} failed: {e}");
            }
        }
        while let Some(event) = self.peer.poll_event() {
            tracing::debug!(?event, "protocol event");
            if event == handover_proto::Event::MarkComplete {
                self.mark_complete();
            }
            let shutdown = matches!(event, handover_proto::Event::Shutdown { .. });
            let _ = self.events.send(Event::Protocol(event));
            if shutdown {
                self.status.send_modify(|s| s.shutdown_requested = true);
            }
        }
        let (state, leader, stats) = (self.peer.state(), self.peer.leader(), *self.peer.stats());
        let finished = self.peer.is_finished();
        self.status.send_if_modified(|s| {
            let changed = s.state != state
                || s.leader != leader
                || s.stats != stats
                || s.finished != finished;
            s.state = state;
            s.leader = leader;
            s.stats = stats;
            s.finished = finished;
            changed
        });
    }

    fn mark_complete(&mut self) {
        for path in &self.config.complete_files {
            match write_complete_file(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "hand-over complete file written");
                    let _ = self.events.send(Event::CompleteWritten(path.clone()));
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), "writing the complete file failed: {e}");
                    let _ = self.events.send(Event::CompleteFailed {
                        path: path.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
}

pub(crate) async fn recv_opt(
    sock: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
