//! The multicast engine: the task that owns the [`Peer`] and its sockets, the
//! sans-IO loop of `handover-proto`'s crate docs, on tokio. Besides electing, it
//! carries out the hand-over's duties: the complete file, the shutdown request.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handover_proto::{wire, Instant, Peer, State};
use tokio::net::UdpSocket;

use crate::complete::write_complete_file;
use crate::config::Config;
use crate::link::{random_u64, sleep_until, Command, Error, Event, Link, Request, Status};
use crate::transport::GroupSockets;

/// Capacity of the peer table on Linux.
pub const TABLE: usize = 32;

pub(crate) struct Engine {
    config: Config,
    peer: Peer<TABLE>,
    sockets: GroupSockets,
    /// Receive errors in a row: a socket that keeps failing is broken.
    errors_in_a_row: u32,
    /// Stood aside ([`Command::Eligible`]): ready again once eligible.
    aside: bool,
    epoch: std::time::Instant,
    link: Link,
}

impl Engine {
    /// The driver of a new instance, and its handle.
    pub(crate) fn new(config: Config) -> Result<(Self, crate::Handover), Error> {
        let sockets = GroupSockets::open(&config)?;
        let interfaces = sockets.listeners.interface_names();
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // Id 0 is reserved by the protocol.
        let id = random_u64().max(1);
        let proto = config.to_proto(id, start_ms, random_u64(), &sockets.addresses())?;
        let epoch = std::time::Instant::now();
        let peer = Peer::new(proto, Instant::ZERO).map_err(crate::ConfigError::from)?;
        let status = Status {
            interfaces,
            stats: *peer.stats(),
            ..Status::new(peer.id(), peer.state())
        };
        let (link, handover) = Link::new(status, None);
        let engine = Engine {
            config,
            peer,
            sockets,
            errors_in_a_row: 0,
            aside: false,
            epoch,
            link,
        };
        Ok((engine, handover))
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// Runs until the peer has finished (after its goodbye, which dropping every
    /// handle also sends) or a socket fails for good, which the status reports.
    pub(crate) async fn run(mut self) {
        if let Err(e) = self.drive().await {
            self.link.fail(e.to_string());
        }
    }

    async fn drive(&mut self) -> io::Result<()> {
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
            // for a deadline that already passed. What already waits in the sockets
            // is read first: after a pause (a GC, a starved container, SIGSTOP) the
            // peers' heartbeats are queued there, and a deadline that expired
            // meanwhile must not declare a live active dead.
            if deadline.is_some_and(|d| d <= now) {
                // Bounded (a flood cannot hold the timers back); a deadline the
                // datagrams moved is not due any more, and handling it is a no-op.
                self.receive_waiting(&mut group_buf).await?;
                self.peer.handle_timeout(self.now());
                continue;
            }
            let sleep = deadline.map(|d| self.epoch + Duration::from_micros(d.as_micros()));
            let sockets = &mut self.sockets;
            let listeners = &mut sockets.listeners;
            let wake = tokio::select! {
                r = listeners.group.recv_from(&mut group_buf) => Wake::Received(Source::Group, r),
                r = sockets.unicast.recv_from(&mut unicast_buf) => Wake::Received(Source::Unicast, r),
                r = recv_opt(listeners.legacy.as_ref(), &mut legacy_buf) => Wake::Received(Source::Legacy, r),
                () = listeners.watch.changed() => Wake::Interfaces,
                cmd = self.link.command(), if commands_open => Wake::Command(cmd),
                () = sleep_until(sleep) => Wake::Timer,
            };
            match wake {
                Wake::Received(source, Ok((n, from))) => {
                    let buf = match source {
                        Source::Group => &mut group_buf,
                        Source::Unicast => &mut unicast_buf,
                        Source::Legacy => &mut legacy_buf,
                    };
                    self.receive(from, &buf[..n]).await;
                    self.receive_queued(source, buf, BATCH - 1).await?;
                }
                Wake::Received(_, Err(e)) => self.receive_failed(e).await?,
                Wake::Interfaces => match self.sockets.listeners.refresh() {
                    Ok(true) => self.interfaces_changed(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("reading the interfaces failed: {e}"),
                },
                Wake::Command(Some(cmd)) => self.command(cmd),
                Wake::Command(None) => {
                    // Every handle dropped: leave the group cleanly.
                    commands_open = false;
                    let _ = self.peer.leave(self.now());
                }
                // The deadline is taken again at the top, after what waits is read.
                Wake::Timer => {}
            }
        }
    }

    /// Hands one datagram to the peer and flushes its output, as the calling
    /// contract requires before the next input.
    async fn receive(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.errors_in_a_row = 0;
        let now = self.now();
        self.peer.handle_datagram(now, from, bytes);
        self.flush().await;
    }

    /// Reads the datagrams already queued on every socket (up to [`BATCH`] from
    /// each), without waiting.
    async fn receive_waiting(&mut self, buf: &mut [u8]) -> io::Result<()> {
        for source in [Source::Group, Source::Unicast, Source::Legacy] {
            self.receive_queued(source, buf, BATCH).await?;
        }
        Ok(())
    }

    /// Reads up to `most` datagrams already queued on `source`, without waiting:
    /// after a wake-up, a burst costs one.
    async fn receive_queued(
        &mut self,
        source: Source,
        buf: &mut [u8],
        most: usize,
    ) -> io::Result<()> {
        for _ in 0..most {
            let socket = match source {
                Source::Group => &self.sockets.listeners.group,
                Source::Unicast => &self.sockets.unicast,
                Source::Legacy => match &self.sockets.listeners.legacy {
                    Some(legacy) => legacy,
                    None => return Ok(()),
                },
            };
            match recv_queued(socket, buf) {
                Ok((n, from)) => self.receive(from, &buf[..n]).await,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return self.receive_failed(e).await,
            }
        }
        Ok(())
    }

    /// A receive error: counted, reported and retried after a pause, unless the
    /// socket is broken (an error no retry can cure, or errors without end).
    async fn receive_failed(&mut self, e: io::Error) -> io::Result<()> {
        self.errors_in_a_row += 1;
        if !is_transient(&e) || self.errors_in_a_row > MAX_ERRORS_IN_A_ROW {
            return Err(e);
        }
        tracing::warn!("receiving failed (retrying): {e}");
        self.link
            .publish([Event::ReceiveError(e.to_string())], |s| {
                s.receive_errors += 1;
                true
            });
        tokio::time::sleep(ERROR_PAUSE).await;
        Ok(())
    }

    fn interfaces_changed(&mut self) {
        let names = self.sockets.listeners.interface_names();
        tracing::info!("interfaces joined: {}", names.join(", "));
        self.peer.set_addresses(&self.sockets.addresses());
        let event = Event::InterfacesChanged(names.clone());
        self.link.publish([event], |s| {
            s.interfaces = names;
            true
        });
    }

    fn command(&mut self, request: Request) {
        let now = self.now();
        let result = match &request.command {
            Command::Ready => self.peer.ready(now).map_err(|e| e.to_string()),
            Command::ShutdownComplete => {
                self.peer.shutdown_complete(now).map_err(|e| e.to_string())
            }
            // Leaving twice is not an error.
            Command::Leave if self.peer.state() == State::Done => Ok(()),
            Command::Leave => self.peer.leave(now).map_err(|e| e.to_string()),
            Command::SetState(s) => self.peer.set_state(s).map_err(|e| e.to_string()),
            Command::ServiceStopped => Ok(()),
            Command::Eligible(false) if self.peer.state() == State::Standby => {
                self.aside = true;
                self.peer.stand_aside(now).map_err(|e| e.to_string())
            }
            Command::Eligible(true) if self.aside => {
                self.aside = false;
                self.peer.ready(now).map_err(|e| e.to_string())
            }
            Command::Eligible(_) => Ok(()),
            Command::Checkpoint(seq) => {
                // Progress made just before a demotion: the new active resumes from
                // what the standbys hold.
                if let Err(e) = self.peer.checkpoint(now, *seq) {
                    tracing::debug!("checkpoint {seq} not sent: {e}");
                }
                Ok(())
            }
        };
        let call = request.command.name();
        request.answer(result.map_err(|reason| Error::Refused { call, reason }));
    }

    /// Sends every queued datagram, then reports every event (the drain order of the
    /// calling contract).
    async fn flush(&mut self) {
        let now = self.now();
        let mut buf = [0u8; wire::MAX_DATAGRAM];
        while let Some(t) = self.peer.poll_transmit(now, &mut buf) {
            if let Err(e) = self.sockets.send(t.destination, &buf[..t.len]).await {
                // No route or a full buffer: the protocol retransmits what matters.
                tracing::debug!("send to {:?} failed: {e}", t.destination);
            }
        }
        let (mut held, mut successor) = (None, None);
        let mut events = Vec::new();
        while let Some(event) = self.peer.poll_event() {
            tracing::debug!(?event, "protocol event");
            match event {
                handover_proto::Event::CheckpointHeld { seq } => held = Some(seq),
                handover_proto::Event::Shutdown { successor: s } => successor = Some(s),
                _ => {}
            }
            let complete = event == handover_proto::Event::MarkComplete;
            events.push(Event::Protocol(event));
            if complete {
                self.mark_complete(&mut events);
            }
        }
        let (state, leader, stats) = (self.peer.state(), self.peer.leader(), *self.peer.stats());
        let finished = self.peer.is_finished();
        let checkpoint = self.peer.checkpoint_seq();
        let standbys = self
            .peer
            .peers()
            .filter(|p| p.role == handover_proto::wire::Role::Standby)
            .count();
        self.link.publish(events, |s| {
            let held = match state {
                State::Active => held.or(s.checkpoint_held),
                _ => None,
            };
            let successor = successor.or(s.successor);
            let changed = s.successor != successor
                || s.state != state
                || s.leader != leader
                || s.stats != stats
                || s.finished != finished
                || s.checkpoint != checkpoint
                || s.checkpoint_held != held
                || s.standbys != standbys;
            s.successor = successor;
            s.state = state;
            s.leader = leader;
            s.stats = stats;
            s.finished = finished;
            s.checkpoint = checkpoint;
            s.checkpoint_held = held;
            s.standbys = standbys;
            changed
        });
    }

    /// Writes the complete files, and says how that went in `events`.
    fn mark_complete(&self, events: &mut Vec<Event>) {
        for path in &self.config.complete_files {
            match write_complete_file(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "hand-over complete file written");
                    events.push(Event::CompleteWritten(path.clone()));
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), "writing the complete file failed: {e}");
                    events.push(Event::CompleteFailed {
                        path: path.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
}

/// What woke the driver.
enum Wake {
    /// A datagram (its length and sender) or a receive error.
    Received(Source, io::Result<(usize, SocketAddr)>),
    /// The interfaces may have changed.
    Interfaces,
    /// A command, or `None` when every handle is gone.
    Command(Option<Request>),
    Timer,
}

/// The socket a datagram comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Group,
    Unicast,
    Legacy,
}

/// Datagrams read per wake-up at most, so that timers and commands are not starved.
const BATCH: usize = 32;

/// Receive errors in a row after which a socket counts as broken.
const MAX_ERRORS_IN_A_ROW: u32 = 100;

/// The pause after a receive error: a failing socket never spins the driver.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Errors a UDP socket can report and still work afterwards: memory or buffer
/// shortage, an ICMP error of an earlier send, an interface going down, a signal.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | WouldBlock
            | OutOfMemory
            | ConnectionRefused
            | ConnectionReset
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | TimedOut
    ) || e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error())
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

/// A datagram already queued on `socket`, asked of the kernel. The runtime's record
/// of a socket's readiness is stale after a pause (nothing polled for events
/// meanwhile), and tokio's `try_recv_from` trusts it: it would answer "nothing
/// waits" with the peers' heartbeats in the queue.
fn recv_queued(socket: &tokio::net::UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    let (n, _, from) = rustix::net::recvfrom(socket, buf, rustix::net::RecvFlags::DONTWAIT)?;
    let from = from.and_then(|from| SocketAddr::try_from(from).ok());
    Ok((
        n,
        from.ok_or_else(|| io::Error::other("a datagram without a sender"))?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkMode;
    use std::net::Ipv4Addr;

    /// An instance pinned to the loopback interface (root, as CI runs; skipped
    /// elsewhere, failed under `CI=true`) on a port of its own.
    fn loopback_driver(test: u16) -> Option<(Engine, crate::Handover)> {
        if !rustix::process::geteuid().is_root() {
            let why = "pinning sockets to the loopback interface needs root";
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true: {why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let config = Config {
            scope: format!("driver-test-{}-{test}", std::process::id()),
            port: 30000 + (std::process::id() % 10000) as u16 + test,
            network: NetworkMode::Host {
                interface: "lo".into(),
            },
            heartbeat: Duration::from_millis(100),
            complete_files: vec![],
            ..Config::default()
        };
        Some(Engine::new(config).unwrap())
    }

    /// A UDP socket whose next receive fails with ECONNREFUSED: it sent to a closed
    /// port on loopback and got the ICMP error back.
    fn refused_socket() -> UdpSocket {
        let closed = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = closed.local_addr().unwrap();
        drop(closed);
        let s = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        s.connect(to).unwrap();
        s.send(b"anyone?").unwrap();
        s.set_nonblocking(true).unwrap();
        UdpSocket::from_std(s).unwrap()
    }

    use handover_proto::State;

    #[tokio::test]
    async fn a_transient_receive_error_is_counted_and_the_driver_carries_on() {
        let Some((mut driver, handover)) = loopback_driver(1) else {
            return;
        };
        driver.sockets.unicast = refused_socket();
        tokio::spawn(driver.run());
        let status = tokio::time::timeout(
            Duration::from_secs(2),
            handover.wait_for(|s| s.receive_errors > 0),
        )
        .await
        .expect("the error is counted")
        .expect("the driver still runs");
        assert_eq!(status.failed, None);
        handover.ready().await.unwrap();
        let elected = handover.wait_for(|s| s.state == State::Active);
        tokio::time::timeout(Duration::from_secs(2), elected)
            .await
            .expect("the protocol still runs")
            .unwrap();
        let requested =
            tokio::time::timeout(Duration::from_millis(200), handover.shutdown_requested()).await;
        assert!(requested.is_err(), "no shutdown request: {requested:?}");
    }

    #[tokio::test]
    async fn a_broken_socket_is_a_failure_not_a_shutdown_request() {
        let Some((mut driver, handover)) = loopback_driver(2) else {
            return;
        };
        // A stream socket that was never connected, where a datagram socket should
        // be: every receive fails with ENOTCONN, which no retry cures.
        let broken =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        broken.set_nonblocking(true).unwrap();
        driver.sockets.listeners.group =
            UdpSocket::from_std(std::net::UdpSocket::from(broken)).unwrap();
        tokio::spawn(driver.run());
        let requested = tokio::time::timeout(Duration::from_secs(2), handover.shutdown_requested())
            .await
            .expect("the failure is reported");
        assert!(matches!(requested, Err(Error::Failed(_))), "{requested:?}");
        assert!(handover.status().failed.is_some());
        assert_eq!(handover.status().successor, None);
        assert!(matches!(handover.ready().await, Err(Error::Failed(_))));
    }

    #[tokio::test]
    async fn a_command_the_protocol_refuses_is_answered_with_the_reason() {
        let Some((engine, handover)) = loopback_driver(3) else {
            return;
        };
        tokio::spawn(engine.run());
        let long = [0u8; handover_proto::wire::MAX_STATE + 1];
        let refused = handover.set_state(&long).await;
        assert!(
            matches!(
                &refused,
                Err(Error::Refused {
                    call: "set_state",
                    ..
                })
            ),
            "{refused:?}"
        );
        // Hand-over mode: shutdown_complete before any shutdown request.
        let early = handover.shutdown_complete().await;
        assert!(
            matches!(
                &early,
                Err(Error::Refused {
                    call: "shutdown_complete",
                    ..
                })
            ),
            "{early:?}"
        );
        handover.ready().await.unwrap();
    }
}
