//! `handover run`: the protocol around a child process.
//!
//! Hand-over: the child starts at once; its readiness is this instance's claim; when a
//! newer instance takes over, the child is stopped (stop signal, timeout, SIGKILL), the
//! complete file is written and `handover` exits 0, whatever the child's status (see
//! [`Ending`]).
//!
//! Failover (a cold standby): the child runs only while this instance is active; if it
//! dies while active, `handover` leaves at once, so that a standby takes over, and
//! exits non-zero.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use clap::Args as ClapArgs;
use handover_std::notify;
use handover_std::sockets::{Address, ListenSpec, Sockets};
use handover_std::{Handover, State, Successor, Term};
use rustix::process::Signal;
use serde_json::json;
use std::process::Command;
use tokio_stream::wrappers::SignalStream;
use tokio_stream::{StreamExt, StreamMap};

use crate::reaper::{dies_with_parent, Child, Reaper};
use tokio::signal::unix::{signal, SignalKind};

use crate::listen::PeerAddresses;
use crate::log::{hex, Log};
use crate::options::{Backend, ElectionArgs, Mode, Protocol};
use crate::ready::{parse_http_url, Readiness, Relay};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    protocol: Protocol,

    #[command(flatten)]
    pub(crate) election: ElectionArgs,

    #[command(flatten)]
    readiness: Readiness,

    /// Signal that asks the child to stop (name or number)
    #[arg(long, env = "HANDOVER_STOP_SIGNAL", default_value = "SIGTERM", value_parser = parse_signal)]
    stop_signal: Signal,

    /// How long the service may take to become ready; if it is not ready by then,
    /// `handover` stops it and exits 1 without claiming, so that the instance in
    /// charge keeps serving (failover: it leaves, so that a standby takes over)
    #[arg(long, env = "HANDOVER_READY_TIMEOUT", value_name = "DURATION", value_parser = crate::options::parse_duration)]
    ready_timeout: Option<Duration>,

    /// How long the child may take to stop before SIGKILL
    #[arg(long, env = "HANDOVER_STOP_TIMEOUT", default_value = "30s", value_parser = crate::options::parse_duration)]
    stop_timeout: Duration,

    /// A listening socket for the service, NAME=tcp:ADDR:PORT (or udp:ADDR:PORT,
    /// unix:PATH); repeatable, or comma-separated. The service gets it by systemd's
    /// convention (descriptors from 3, LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), and
    /// the instance that takes over inherits it: one accept queue, no connection
    /// refused or reset. Hand-over mode
    #[arg(
        long,
        env = "HANDOVER_LISTEN",
        value_name = "NAME=ADDR",
        value_delimiter = ','
    )]
    listen: Vec<ListenSpec>,

    /// Where the instances of a scope pass their sockets on (a volume they share,
    /// mode 0700) [default: /tmp/balena/handover-sockets on balena, else
    /// $XDG_RUNTIME_DIR/handover, or /run/handover]
    #[arg(long, env = "HANDOVER_SOCKETS_DIR", value_name = "DIR")]
    sockets_dir: Option<PathBuf>,

    /// Failover: `cold` starts the service only while this instance is active;
    /// `hot` runs it on every instance and tells it its role, the leader and the
    /// active's state as they change (JSON lines on the descriptor in
    /// $HANDOVER_EVENTS_FD; it may write {"state":"<hex>"} lines back)
    #[arg(long, env = "HANDOVER_STANDBY", value_enum, default_value_t = Standby::Cold)]
    standby: Standby,

    /// The service and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// What a standby's service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Standby {
    /// Not started until this instance is active.
    Cold,
    /// Running, told its role.
    Hot,
}

impl Args {
    /// How long a stopping service has before SIGKILL. On etcd a demoted leader's
    /// service must be gone before its lease could expire: half the margin the
    /// engine keeps, at most.
    fn stop_limit(&self) -> Duration {
        match self.election.election {
            Backend::Multicast => self.stop_timeout,
            Backend::Etcd => self.stop_timeout.min(self.election.ttl / 8),
        }
    }
}

/// Signals by name (`SIGTERM`, `TERM`) or number.
fn parse_signal(s: &str) -> Result<Signal, String> {
    const NAMES: &[(&str, Signal)] = &[
        ("HUP", Signal::HUP),
        ("INT", Signal::INT),
        ("QUIT", Signal::QUIT),
        ("KILL", Signal::KILL),
        ("USR1", Signal::USR1),
        ("USR2", Signal::USR2),
        ("TERM", Signal::TERM),
        ("CONT", Signal::CONT),
        ("STOP", Signal::STOP),
        ("WINCH", Signal::WINCH),
    ];
    if let Ok(n) = s.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(|| format!("{n} is not a signal number"));
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, sig)| *sig)
        .ok_or_else(|| format!("unknown signal {s:?} (try SIGTERM, SIGINT, SIGQUIT, SIGUSR1, 15)"))
}

/// The exit code a shell would report for `status`.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

fn status_json(status: ExitStatus) -> serde_json::Value {
    json!({ "code": status.code(), "signal": status.signal() })
}

/// Signals `handover` forwards to its child: every one a supervisor sends. Without
/// a handler, SIGUSR1 and the others would kill `handover` (and its service) without
/// a goodbye.
struct Forwarded {
    signals: StreamMap<i32, SignalStream>,
}

/// The signals that ask a process to stop (the others are passed on, nothing more).
const STOPPING: [Signal; 4] = [Signal::TERM, Signal::INT, Signal::HUP, Signal::QUIT];

impl Forwarded {
    fn install() -> std::io::Result<Self> {
        let mut signals = StreamMap::new();
        for sig in STOPPING
            .into_iter()
            .chain([Signal::USR1, Signal::USR2, Signal::WINCH])
        {
            let stream = signal(SignalKind::from_raw(sig.as_raw()))?;
            signals.insert(sig.as_raw(), SignalStream::new(stream));
        }
        Ok(Forwarded { signals })
    }

    /// Waits for a signal that asks to stop.
    async fn stopping(&mut self) {
        while !STOPPING.contains(&self.recv().await) {}
    }

    async fn recv(&mut self) -> Signal {
        loop {
            if let Some((raw, ())) = self.signals.next().await {
                if let Some(sig) = Signal::from_named_raw(raw) {
                    return sig;
                }
            }
        }
    }
}

/// The child and how to stop it.
struct Service {
    child: Child,
}

impl Service {
    /// Starts the service; `term` is the term it serves in (etcd), given to it as
    /// `etcdctl lock` gives its child `ETCD_LOCK_REV`.
    fn spawn(
        args: &Args,
        reaper: &Reaper,
        notify_socket: &std::path::Path,
        term: Option<&Term>,
        sockets: Option<&Sockets>,
        events: Option<&mut crate::hot::Channel>,
        log: Log,
    ) -> std::io::Result<Self> {
        // With sockets, `handover exec-service` sets LISTEN_PID in the service's
        // own process, then becomes it.
        let mut cmd = match sockets {
            Some(_) => {
                let mut cmd = Command::new("/proc/self/exe");
                cmd.args(["exec-service", "--"]).args(&args.command);
                cmd
            }
            None => {
                let mut cmd = Command::new(&args.command[0]);
                cmd.args(&args.command[1..]);
                cmd
            }
        };
        // Never let the service take `handover`'s own socket activation for its own.
        cmd.env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("LISTEN_PID")
            .env("NOTIFY_SOCKET", notify_socket);
        let _sources = match (sockets, events.as_ref().and_then(|e| e.service_end())) {
            (Some(sockets), _) => crate::listen::pass_to(sockets, &mut cmd)?,
            (None, Some(end)) => {
                cmd.env("HANDOVER_EVENTS_FD", "3");
                crate::listen::pass_fds(&mut cmd, &[end])?
            }
            (None, None) => Vec::new(),
        };
        if let Some(term) = term {
            cmd.env("HANDOVER_FENCING_TOKEN", term.token.to_string())
                .env("HANDOVER_ELECTION_KEY", &term.key);
        }
        // SIGKILL, not the stop signal: nobody is left to enforce a stop timeout,
        // and a service that lingers (or ignores SIGTERM) beside the instance that
        // takes over is two in charge.
        dies_with_parent(&mut cmd, Signal::KILL);
        let child = reaper.spawn(&mut cmd).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", args.command[0]))
        })?;
        if let Some(events) = events {
            events.handed();
        }
        log.event(
            "child_started",
            json!({ "pid": child.pid().as_raw_nonzero().get() }),
        );
        Ok(Service { child })
    }

    fn signal(&self, sig: Signal, log: Log) {
        log.event(
            "child_signalled",
            json!({ "pid": self.child.pid().as_raw_nonzero().get(), "signal": sig.as_raw() }),
        );
        if let Err(e) = self.child.signal(sig) {
            tracing::warn!("signalling the child failed: {e}");
        }
    }

    /// The service overran the stop timeout after a stopping signal `handover` was
    /// asked to pass on: SIGKILL, as after its own stop signal.
    fn overran(&self, args: &Args, log: Log) {
        let limit = args.stop_limit();
        log.event(
            "child_killed",
            json!({ "after_ms": limit.as_millis() as u64 }),
        );
        tracing::warn!(
            "the service did not stop within {} of the stop signal passed on: killed",
            humantime::format_duration(limit)
        );
        if let Err(e) = self.child.signal(Signal::KILL) {
            tracing::warn!("killing the child failed: {e}");
        }
    }

    /// Stop signal, then SIGKILL after the stop timeout (etcd: sooner, if the lease
    /// could expire first).
    async fn stop(mut self, args: &Args, log: Log) -> std::io::Result<ExitStatus> {
        self.signal(args.stop_signal, log);
        let limit = args.stop_limit();
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                log.event(
                    "child_killed",
                    json!({ "after_ms": limit.as_millis() as u64 }),
                );
                tracing::warn!(
                    "the service did not stop within {} of signal {}: killed",
                    humantime::format_duration(limit),
                    args.stop_signal.as_raw()
                );
                self.child.signal(Signal::KILL)?;
                self.child.wait().await?
            }
        };
        log.event("child_exited", status_json(status));
        Ok(status)
    }
}

/// The readiness option that would probe a port `--listen` shares with the
/// instance in charge, if any.
fn probes_a_shared_socket(args: &Args) -> Option<String> {
    let shared = |port: u16| {
        args.listen.iter().any(|l| match l.address {
            Address::Tcp(a) => a.port() == port,
            _ => false,
        })
    };
    if let Some(port) = args.readiness.ready_tcp.filter(|&p| shared(p)) {
        return Some(format!("--ready-tcp {port}"));
    }
    let url = args.readiness.ready_http.as_ref()?;
    let (address, _, _) = parse_http_url(url)?;
    let port = address.rsplit_once(':')?.1.parse().ok()?;
    shared(port).then(|| format!("--ready-http {url}"))
}

/// The signals passed on to the service: once one asks it to stop, it has the
/// stop timeout, then SIGKILL.
#[derive(Default)]
struct PassedOn {
    /// A stopping signal was passed on.
    stop_asked: bool,
    kill_at: Option<tokio::time::Instant>,
}

impl PassedOn {
    fn signal(&mut self, service: &Service, sig: Signal, args: &Args, log: Log) {
        if STOPPING.contains(&sig) && !self.stop_asked {
            self.stop_asked = true;
            self.kill_at = deadline(Some(args.stop_limit()));
        }
        service.signal(sig, log);
    }

    /// How a service that exited by itself ended.
    fn ending(&self, status: ExitStatus, at_least_1: bool) -> Ending {
        match self.stop_asked {
            true => Ending::StopAsked(status),
            false => Ending::OnItsOwn { status, at_least_1 },
        }
    }
}

/// How the service ended, for `handover`'s exit status (the README's table of exit
/// codes says the same).
enum Ending {
    /// A newer instance took over and the service was stopped for it: the protocol
    /// did its job, so 0 whatever the service's status (a JVM exits 143 on SIGTERM,
    /// a handler may exit 1 or 130, a slow one is killed). Anything else would make
    /// `Restart=on-failure` start the old version again, which takes over again.
    HandedOver,
    /// `handover` was asked to stop (a stopping signal, passed on to the service):
    /// 0 if the service ended by that signal (or exited 128 + its number, as a JVM
    /// does), else its own status.
    StopAsked(ExitStatus),
    /// The service ended on its own: its status, passed through (at least 1 when
    /// it was active in failover: a standby must take over, and a restart policy
    /// must see a failure).
    OnItsOwn {
        status: ExitStatus,
        at_least_1: bool,
    },
}

impl Ending {
    fn exit_code(self, stop_signal: Signal) -> u8 {
        match self {
            Ending::HandedOver => 0,
            Ending::StopAsked(status) => {
                let by_stop_signal = status.signal() == Some(stop_signal.as_raw())
                    || status.code() == Some(128 + stop_signal.as_raw());
                if by_stop_signal {
                    0
                } else {
                    exit_code(status)
                }
            }
            Ending::OnItsOwn { status, at_least_1 } => match at_least_1 {
                true => exit_code(status).max(1),
                false => exit_code(status),
            },
        }
    }
}

fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

pub async fn run(
    args: Args,
    log: Log,
    backends: crate::Backends,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if let Some(url) = &args.readiness.ready_http {
        if parse_http_url(url).is_none() {
            return Err(
                format!("--ready-http: {url:?} is not an http://host[:port]/path URL").into(),
            );
        }
    }
    let mut config = args.protocol.config()?;
    args.election.apply(&mut config, args.protocol.mode)?;
    if !args.listen.is_empty() && args.protocol.mode != Mode::Handover {
        return Err(
            "--listen: hand-over mode only (a cold standby has no service to pass \
             sockets to)"
                .into(),
        );
    }
    if args.standby == Standby::Hot && args.election.election == Backend::Etcd {
        return Err(
            "--standby hot: not with --election etcd: a hot service runs on every \
                    candidate, and an etcd term could neither give it a fencing token nor \
                    stop it when the lease is lost; use --standby cold (the default), which \
                    runs the service only during a term, with its token"
                .into(),
        );
    }
    if let Some(option) = probes_a_shared_socket(&args) {
        return Err(format!(
            "{option}: with --listen the instance in charge answers on that socket too, \
             so it cannot tell that this one is ready; have the service send READY=1 on \
             $NOTIFY_SOCKET, or check with --ready-cmd or on another port"
        )
        .into());
    }
    let mut signals = Forwarded::install()?;
    let reaper = Reaper::start()?;
    let handover = backends.start(config.clone()).await?;
    let status = handover.status();
    let id = status.id;
    log.event(
        "listening",
        json!({
            "id": hex(id),
            "interfaces": status.interfaces,
            "scope": config.scope,
            "group": config.group.to_string(),
            "port": config.port,
            "heartbeat_ms": config.heartbeat.as_millis() as u64,
            "mode": format!("{:?}", args.protocol.mode).to_lowercase(),
            "election": format!("{:?}", args.election.election).to_lowercase(),
            "priority": config.priority,
            "legacy": config.legacy,
            "keyed": config.key.is_some(),
            "stop_signal": args.stop_signal.as_raw(),
            "stop_timeout_ms": args.stop_timeout.as_millis() as u64,
        }),
    );
    let mut events = handover.subscribe();
    let peers = PeerAddresses::default();
    let learning = peers.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                // Fell behind: say so and go on with what comes next.
                Err(RecvError::Lagged(missed)) => {
                    log.event("events_missed", json!({ "count": missed }));
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            if let handover_std::Event::Protocol(handover_std::proto::Event::PeerUp {
                id,
                addresses,
                ..
            }) = &e
            {
                learning.learn(*id, addresses);
            }
            log.library_event(&e);
        }
    });
    let code = match args.protocol.mode {
        Mode::Handover => 'hand_over: {
            let mut sockets = None;
            if !args.listen.is_empty() {
                let dir = args.sockets_dir.as_deref();
                let acquire = crate::listen::acquire(&args.listen, dir, &config.scope, log);
                tokio::select! {
                    acquired = acquire => sockets = Some(acquired?),
                    // Waiting for another upgrade to finish, nothing started yet:
                    // a stop signal ends the wait.
                    () = signals.stopping() => {
                        log.event("stopped_waiting", json!({ "for": "sockets" }));
                        leave(&handover).await;
                        break 'hand_over 0;
                    }
                }
            }
            hand_over(
                &args,
                &handover,
                &reaper,
                &mut signals,
                sockets,
                &peers,
                log,
            )
            .await?
        }
        Mode::Failover if args.standby == Standby::Hot => {
            hot_standby(&args, &handover, &reaper, &mut signals, log).await?
        }
        Mode::Failover => failover(&args, &handover, &reaper, &mut signals, log).await?,
    };
    // Let the event task print what is still queued.
    tokio::task::yield_now().await;
    let stats = serde_json::to_value(handover.status().stats)?;
    let dropped = crate::log::dropped_lines();
    log.event(
        "exit",
        json!({ "code": code, "stats": stats, "log_lines_dropped": dropped }),
    );
    Ok(ExitCode::from(code))
}

async fn hand_over(
    args: &Args,
    handover: &Handover,
    reaper: &Reaper,
    signals: &mut Forwarded,
    mut sockets: Option<Sockets>,
    peers: &PeerAddresses,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    let relay = Relay::start(&runtime_dir())?;
    let mut service = match Service::spawn(
        args,
        reaper,
        relay.path(),
        None,
        sockets.as_ref(),
        None,
        log,
    ) {
        Ok(service) => service,
        Err(e) => return not_started(e, handover, log).await,
    };
    let mut notified = relay.notified();
    let readiness = before(
        deadline(args.ready_timeout),
        args.readiness.wait(&mut notified, reaper),
    );
    tokio::pin!(readiness);
    let mut ready = false;
    let mut passed_on = PassedOn::default();
    loop {
        tokio::select! {
            how = &mut readiness, if !ready => {
                let Some(how) = how else {
                    return not_ready(service, handover, args, log).await;
                };
                ready = true;
                if let Err(e) = handover.ready() {
                    return driver_failed(Some(service), e, args, log).await;
                }
                log.event("ready", json!({ "via": how }));
                log.event("claim_sent", json!({}));
                tell_service_manager(b"READY=1");
            }
            // In charge: the sockets are this instance's to pass on.
            _ = handover.wait_for(|s| s.state == State::Active),
                if sockets.as_ref().is_some_and(|s| !s.owning()) =>
            {
                if let Some(sockets) = sockets.as_mut() {
                    sockets.own()?;
                    log.event("sockets_owned", json!({}));
                }
            }
            requested = handover.shutdown_requested() => {
                let successor = match requested {
                    Ok(successor) => successor,
                    Err(e) => return driver_failed(Some(service), e, args, log).await,
                };
                service.stop(args, log).await?;
                if let Err(e) = handover.shutdown_complete().await {
                    return driver_failed(None, e, args, log).await;
                }
                if let Some(sockets) = sockets.as_ref().filter(|s| !s.handed_off()) {
                    // Bridge networking: clients that still reach this instance's
                    // address are served by the successor until this one is stopped.
                    let to = match successor {
                        Successor::Peer(id) => peers.of(id),
                        Successor::Legacy => None,
                    };
                    match to {
                        Some(to) => {
                            for l in sockets.listeners() {
                                if let (Address::Tcp(_), Some(port)) = (&l.spec().address, l.port()) {
                                    let to = std::net::SocketAddr::from((to, port)).to_string();
                                    log.event("forwarding", json!({ "name": l.name(), "to": to }));
                                }
                            }
                            sockets.forward(to.into(), signals.stopping()).await
                        }
                        None => tracing::info!("the successor announced no address: nothing to forward to"),
                    }
                }
                return Ok(Ending::HandedOver.exit_code(args.stop_signal));
            }
            status = service.child.wait() => {
                let status = status?;
                log.event("child_exited", status_json(status));
                leave(handover).await;
                return Ok(passed_on.ending(status, false).exit_code(args.stop_signal));
            }
            () = at(passed_on.kill_at) => {
                passed_on.kill_at = None;
                service.overran(args, log);
            }
            sig = signals.recv() => passed_on.signal(&service, sig, args, log),
        }
    }
}

async fn failover(
    args: &Args,
    handover: &Handover,
    reaper: &Reaper,
    signals: &mut Forwarded,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    if let Err(e) = handover.ready() {
        return driver_failed(None, e, args, log).await;
    }
    log.event("ready", json!({ "via": "standby" }));
    // The child and the relay of its notify socket.
    let mut running: Option<(Service, Relay)> = None;
    let mut passed_on = PassedOn::default();
    // What systemd hears: ready once this instance stands by, or once its service is
    // ready after it was elected.
    let mut told_ready = false;
    let mut service_ready = false;
    let mut ready_deadline = None;
    loop {
        let active = running.is_some();
        let standing_by = |s: &handover_std::Status| !told_ready && s.state == State::Standby;
        let mut notified = running
            .as_ref()
            .filter(|_| !service_ready)
            .map(|(_, relay)| relay.notified());
        let readiness = async {
            match notified.as_mut() {
                Some(n) => before(ready_deadline, args.readiness.wait(n, reaper)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            how = readiness => {
                let Some(how) = how else {
                    let (service, _relay) = running.take().expect("running");
                    return not_ready(service, handover, args, log).await;
                };
                service_ready = true;
                log.event("service_ready", json!({ "via": how }));
                if !told_ready {
                    told_ready = true;
                    tell_service_manager(b"READY=1");
                }
            }
            status = handover.wait_for(|s| (s.state == State::Active) != active || s.finished || s.failed.is_some() || standing_by(s)) => {
                let status = status?;
                if standing_by(&status) {
                    told_ready = true;
                    tell_service_manager(b"READY=1");
                    continue;
                }
                if let Some(error) = status.failed {
                    let service = running.take().map(|(service, _relay)| service);
                    return driver_failed(service, handover_std::Error::Failed(error), args, log).await;
                }
                if status.finished {
                    return Ok(0);
                }
                if status.state == State::Active {
                    let relay = Relay::start(&runtime_dir())?;
                    service_ready = false;
                    ready_deadline = deadline(args.ready_timeout);
                    match Service::spawn(args, reaper, relay.path(), status.term.as_ref(), None, None, log) {
                        Ok(service) => running = Some((service, relay)),
                        Err(e) => return not_started(e, handover, log).await,
                    }
                } else if let Some((service, _relay)) = running.take() {
                    service.stop(args, log).await?;
                }
            }
            status = wait_child(running.as_mut().map(|(s, _)| s)) => {
                let status = status?;
                log.event("child_exited", status_json(status));
                leave(handover).await;
                // A child that dies while active is a failure even if it exits 0,
                // unless it was asked to stop.
                return Ok(passed_on.ending(status, true).exit_code(args.stop_signal));
            }
            () = at(passed_on.kill_at) => {
                passed_on.kill_at = None;
                if let Some((service, _)) = &running {
                    service.overran(args, log);
                }
            }
            sig = signals.recv() => match &running {
                Some((service, _)) => passed_on.signal(service, sig, args, log),
                None if STOPPING.contains(&sig) => {
                    if let Err(e) = handover.leave().await {
                        return driver_failed(None, e, args, log).await;
                    }
                    return Ok(0);
                }
                // A standby has no service to pass it on to.
                None => {}
            },
        }
    }
}

/// Failover with a hot standby: the service runs on every instance from the start
/// and is told its role as it changes ([`crate::hot`]). Its death ends the
/// instance (a standby takes over if it was active).
async fn hot_standby(
    args: &Args,
    handover: &Handover,
    reaper: &Reaper,
    signals: &mut Forwarded,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    let (mut channel, mut published) = crate::hot::Channel::new()?;
    let relay = Relay::start(&runtime_dir())?;
    let mut service = match Service::spawn(
        args,
        reaper,
        relay.path(),
        None,
        None,
        Some(&mut channel),
        log,
    ) {
        Ok(service) => service,
        Err(e) => return not_started(e, handover, log).await,
    };
    channel.role(false, None, crate::log::monotonic_us());
    if let Err(e) = handover.ready() {
        return driver_failed(Some(service), e, args, log).await;
    }
    log.event("ready", json!({ "via": "standby" }));
    tell_service_manager(b"READY=1");
    let mut events = handover.subscribe();
    let (mut active, mut leader) = (false, None);
    let mut passed_on = PassedOn::default();
    loop {
        tokio::select! {
            status = handover.wait_for(|s| (s.state == State::Active) != active || s.leader != leader || s.finished || s.failed.is_some()) => {
                let status = status?;
                if let Some(error) = status.failed {
                    return driver_failed(Some(service), handover_std::Error::Failed(error), args, log).await;
                }
                if status.finished {
                    return Ok(0);
                }
                (active, leader) = (status.state == State::Active, status.leader);
                channel.role(active, leader, crate::log::monotonic_us());
            }
            event = events.recv() => {
                if let Ok(handover_std::Event::Protocol(handover_std::proto::Event::Synced { state })) = event {
                    channel.state(&state, crate::log::monotonic_us());
                }
            }
            state = published.next() => {
                if let Err(e) = handover.set_state(&state) {
                    return driver_failed(Some(service), e, args, log).await;
                }
            }
            () = channel.writable() => {}
            status = service.child.wait() => {
                let status = status?;
                log.event("child_exited", status_json(status));
                leave(handover).await;
                return Ok(passed_on.ending(status, true).exit_code(args.stop_signal));
            }
            () = at(passed_on.kill_at) => {
                passed_on.kill_at = None;
                service.overran(args, log);
            }
            sig = signals.recv() => passed_on.signal(&service, sig, args, log),
        }
    }
}

/// When a limit of `limit` from now ends.
fn deadline(limit: Option<Duration>) -> Option<tokio::time::Instant> {
    limit.map(|limit| tokio::time::Instant::now() + limit)
}

/// Waits until `deadline` (forever without one).
async fn at(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `f`, unless `deadline` passes first (`None`).
async fn before<T>(
    deadline: Option<tokio::time::Instant>,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await.ok(),
        None => Some(f.await),
    }
}

/// Passes `state` to systemd when `handover` runs under it (never waiting: the
/// protocol runs on this thread).
fn tell_service_manager(state: &[u8]) {
    if let Err(e) = notify::try_notify(state) {
        tracing::warn!("notifying the service manager failed: {e}");
    }
}

/// Exit status when the service was not ready within `--ready-timeout`.
const EXIT_NOT_READY: u8 = 1;

/// The service did not become ready within `--ready-timeout`: it is stopped and
/// this instance leaves without having claimed (hand-over: the instance in charge
/// keeps serving; failover: a standby takes over).
async fn not_ready(
    service: Service,
    handover: &Handover,
    args: &Args,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    let limit = args.ready_timeout.unwrap_or_default();
    log.event(
        "ready_timeout",
        json!({ "after_ms": limit.as_millis() as u64 }),
    );
    tracing::error!(
        "the service was not ready within {}",
        humantime::format_duration(limit)
    );
    // Stopped first: in failover a standby takes over as soon as this instance
    // leaves, and must not find this service still running.
    service.stop(args, log).await?;
    leave(handover).await;
    Ok(EXIT_NOT_READY)
}

/// The service could not be started: `handover` leaves the group and exits as a
/// shell would, 127 for a command that does not exist, 126 for one it may not run.
async fn not_started(
    e: std::io::Error,
    handover: &Handover,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    log.event("child_not_started", json!({ "error": e.to_string() }));
    tracing::error!("{e}");
    leave(handover).await;
    Ok(match e.kind() {
        std::io::ErrorKind::NotFound => 127,
        std::io::ErrorKind::PermissionDenied => 126,
        _ => 1,
    })
}

/// Leaves the group after the service exited on its own: its exit status is what
/// `handover` reports, whether the goodbye could be sent or not.
async fn leave(handover: &Handover) {
    if let Err(e) = handover.leave().await {
        tracing::warn!("leaving the group: {e}");
    }
}

/// Exit status when the protocol driver failed (`EX_SOFTWARE`).
const EXIT_DRIVER_FAILED: u8 = 70;

/// The protocol no longer runs: this instance can neither hand over nor fail over,
/// so its service is stopped and `handover` exits with [`EXIT_DRIVER_FAILED`],
/// without writing the complete file (no newer instance took over), for a restart
/// policy to start it again.
async fn driver_failed(
    service: Option<Service>,
    error: handover_std::Error,
    args: &Args,
    log: Log,
) -> Result<u8, Box<dyn std::error::Error>> {
    log.event("driver_failed", json!({ "error": error.to_string() }));
    if let Some(service) = service {
        service.stop(args, log).await?;
    }
    Ok(EXIT_DRIVER_FAILED)
}

async fn wait_child(service: Option<&mut Service>) -> std::io::Result<ExitStatus> {
    match service {
        Some(s) => s.child.wait().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::TERM));
        assert_eq!(parse_signal("int"), Ok(Signal::INT));
        assert_eq!(parse_signal("10"), Ok(Signal::USR1));
        assert!(parse_signal("SIGFOO").unwrap_err().contains("SIGFOO"));
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn exit_codes_like_a_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
