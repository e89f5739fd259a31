//! The tokio driver of the [`Supervisor`]: it feeds the machine what happens (the
//! protocol's status, the service's readiness and exit, signals, timers) and
//! carries out the actions it returns. No policy is decided here.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::time::Duration;

use handover_std::sockets::{Address, Sockets};
use handover_std::{Handover, Successor};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::args::Args;
use super::exit::Exit;
use super::service::{Forwarded, Launch, Service};
use super::supervisor::{Action, Input, Note, Phase, Supervisor, View};
use crate::channel::{Channel, Heard, Incoming};
use crate::control::{Control, Request};
use crate::health::{Change, Checks};
use crate::listen::PeerAddresses;
use crate::log::Log;
use crate::ready::Relay;
use crate::reaper::Reaper;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
type Failure = Box<dyn std::error::Error>;

/// What the driver works with.
pub struct Driver<'a> {
    pub args: &'a Args,
    pub handover: &'a Handover,
    pub reaper: &'a Reaper,
    pub peers: &'a PeerAddresses,
    /// The scope, which names the sockets' coordination files.
    pub scope: &'a str,
    pub log: Log,
}

/// The resources the actions act on.
struct World<'a> {
    d: &'a Driver<'a>,
    sup: Supervisor,
    /// How long a stopping service has before SIGKILL.
    stop_limit: Duration,
    origin: Instant,
    service: Option<Service>,
    /// The service's notify socket.
    relay: Option<Relay>,
    sockets: Option<Sockets>,
    channel: Option<Channel>,
    readiness: Option<Boxed<'a, &'static str>>,
    /// The running service's health checks.
    checks: Option<Checks>,
    /// Operators' requests (failover).
    control: Option<Control>,
    /// The request being handled.
    asked: Option<Request>,
    /// The protocol's handle is gone: its status is not watched any more.
    protocol_gone: bool,
    exit: Option<Exit>,
}

impl<'a> Driver<'a> {
    /// Runs the supervisor until it exits.
    pub async fn run(&'a self, signals: &mut Forwarded) -> Result<Exit, Failure> {
        let policy = self.args.policy(self.handover.stop_limit());
        let mut w = World {
            d: self,
            sup: Supervisor::new(policy),
            stop_limit: policy.stop_limit,
            origin: Instant::now(),
            service: None,
            relay: None,
            sockets: None,
            channel: None,
            readiness: None,
            checks: None,
            control: None,
            asked: None,
            protocol_gone: false,
            exit: None,
        };
        if self.args.protocol.mode == crate::options::Mode::Failover {
            match Control::bind(self.scope, self.handover.status().id) {
                Ok(control) => w.control = Some(control),
                Err(e) => tracing::warn!("`handover step-down` cannot reach this instance: {e}"),
            }
        }
        let (channel, incoming) = Channel::new(self.hello())?;
        w.channel = Some(channel);
        let mut incoming = Some(incoming);
        let mut events = Some(self.handover.subscribe());
        let mut view = View::default();
        w.drain(signals).await?;
        while w.exit.is_none() {
            let input = tokio::select! {
                sig = signals.recv() => Input::Signal(sig),
                status = self.handover.wait_for(|s| View::from(s) != view), if !w.protocol_gone => {
                    match status {
                        Ok(status) => {
                            view = View::from(&status);
                            Input::Protocol(view.clone())
                        }
                        // The engine ended: after its goodbye (its last status says
                        // finished), or on a failure (its last status says which).
                        Err(e) => {
                            w.protocol_gone = true;
                            let last = View::from(&self.handover.status());
                            if last.finished || last.failed.is_some() {
                                view = last;
                                Input::Protocol(view.clone())
                            } else {
                                Input::CommandFailed(e.to_string())
                            }
                        }
                    }
                }
                status = wait(w.service.as_mut()) => {
                    w.service = None;
                    w.readiness = None;
                    w.checks = None;
                    let status = status?;
                    self.log.event("child_exited", json!({ "code": status.code(), "signal": status.signal() }));
                    Input::Exited(status)
                }
                how = poll(w.readiness.as_mut()) => {
                    w.readiness = None;
                    Input::Ready(how)
                }
                asked = request(w.control.as_mut()) => {
                    w.asked = Some(asked);
                    Input::StepDown
                }
                change = health(w.checks.as_mut()) => {
                    let Change { healthy, check, detail } = change;
                    self.log.event("health", json!({ "healthy": healthy, "check": check, "detail": detail }));
                    match healthy {
                        true => tracing::info!("the service is healthy again ({check} check)"),
                        false => tracing::warn!("the service is unhealthy ({check} check): {}", detail.unwrap_or_default()),
                    }
                    Input::Health(healthy)
                }
                () = at(w.sup.poll_timeout().map(|t| w.origin + t)) => {
                    w.sup.handle_timeout(w.now());
                    w.drain(signals).await?;
                    continue;
                }
                event = recv(events.as_mut()) => match event {
                    Ok(handover_std::Event::Protocol(handover_std::proto::Event::Synced { state })) => Input::Synced(state.to_vec()),
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        events = None;
                        continue;
                    }
                },
                heard = next_line(&mut incoming) => {
                    // With the lines already read in: their answers, and the
                    // tasks they free, go out together.
                    let mut lines = vec![heard];
                    while let Some(i) = incoming.as_mut().filter(|i| i.line_ready()) {
                        match i.next().await {
                            Some(heard) => lines.push(heard),
                            None => break,
                        }
                    }
                    Input::Heard(lines)
                }
                () = writable(w.channel.as_mut()) => continue,
            };
            if let Input::Exited(_) = input {
                // What it said before it exited comes first: a task done just
                // before a stop is recorded before this instance leaves.
                let last = last_lines(&mut incoming).await;
                if !last.is_empty() {
                    w.feed(Input::Heard(last), signals).await?;
                }
            }
            w.feed(input, signals).await?;
        }
        Ok(w.exit.expect("exited"))
    }
}

impl Driver<'_> {
    /// The channel's first line: who this instance is, and the queue's limits.
    fn hello(&self) -> serde_json::Value {
        let args = self.args;
        let queue = args.queue.then(|| {
            json!({
                "window": args.queue_window.get(),
                "capacity": args.queue_capacity,
                "max_bytes": args.queue_bytes,
                "max_payload": crate::channel::MAX_PAYLOAD,
            })
        });
        json!({ "id": crate::log::hex(self.handover.status().id), "queue": queue })
    }
}

impl<'a> World<'a> {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn feed(&mut self, input: Input, signals: &mut Forwarded) -> Result<(), Failure> {
        let now = self.now();
        self.sup.handle(now, input);
        self.drain(signals).await
    }

    /// Carries out what the supervisor asks for, feeding back each answer; then
    /// the lines for the service leave, in one write.
    async fn drain(&mut self, signals: &mut Forwarded) -> Result<(), Failure> {
        while let Some(action) = self.sup.poll_action() {
            if let Some(input) = self.execute(action, signals).await? {
                let now = self.now();
                self.sup.handle(now, input);
            }
        }
        if let Some(channel) = self.channel.as_mut() {
            channel.flush();
        }
        Ok(())
    }

    async fn execute(
        &mut self,
        action: Action,
        signals: &mut Forwarded,
    ) -> Result<Option<Input>, Failure> {
        let d = self.d;
        let log = d.log;
        Ok(match action {
            Action::AcquireSockets => self.acquire(signals).await?,
            Action::Spawn { term } => {
                let relay = Relay::start(&crate::control::runtime_dir())?;
                let launch = Launch {
                    command: &d.args.command,
                    watchdog: d.args.health.watchdog,
                    notify_socket: relay.path(),
                    term: term.as_ref(),
                    sockets: self.sockets.as_ref(),
                    channel: self.channel.as_mut(),
                };
                let input = match Service::spawn(launch, d.reaper, log) {
                    Ok(service) => {
                        self.service = Some(service);
                        Input::Spawned
                    }
                    Err(e) => Input::NotStarted {
                        kind: e.kind(),
                        error: e.to_string(),
                    },
                };
                self.relay = Some(relay);
                Some(input)
            }
            Action::WatchReadiness => {
                let mut notified = self.relay.as_ref().map(Relay::notified);
                let (readiness, reaper) = (&d.args.readiness, d.reaper);
                self.readiness = notified.take().map(|mut notified| -> Boxed<'a, _> {
                    Box::pin(async move { readiness.wait(&mut notified, reaper).await })
                });
                None
            }
            Action::WatchHealth => {
                let pings = self.relay.as_ref().map(Relay::pings);
                if let Some(pings) = pings {
                    self.checks = Some(Checks::start(&d.args.health, d.reaper.clone(), pings));
                }
                None
            }
            Action::WatchdogPing => {
                if let Some(relay) = &self.relay {
                    relay.ping();
                }
                None
            }
            Action::Eligible(eligible) => match d.handover.eligible(eligible).await {
                Ok(()) => None,
                Err(e) => Some(Input::CommandFailed(e.to_string())),
            },
            Action::Signal(sig) => {
                if let Some(service) = &self.service {
                    service.signal(sig, log);
                }
                None
            }
            Action::Kill => {
                if let Some(service) = &self.service {
                    service.kill(self.stop_limit, log);
                }
                None
            }
            Action::Claim => match d.handover.ready().await {
                Ok(()) => None,
                Err(e) => Some(Input::CommandFailed(e.to_string())),
            },
            Action::NotifyReady => {
                tell_service_manager(b"READY=1");
                None
            }
            Action::Released => {
                if let Err(e) = d.handover.service_stopped() {
                    tracing::debug!("telling the protocol the service stopped: {e}");
                }
                None
            }
            Action::OwnSockets => {
                if let Some(sockets) = self.sockets.as_mut() {
                    sockets.own()?;
                    log.event("sockets_owned", json!({}));
                }
                None
            }
            Action::CompleteHandOver => match d.handover.shutdown_complete().await {
                Ok(()) => Some(Input::Completed),
                Err(e) => Some(Input::CommandFailed(e.to_string())),
            },
            Action::Forward(successor) => self.forward(successor, signals).await,
            Action::Leave => {
                if let Err(e) = d.handover.leave().await {
                    tracing::warn!("leaving the group: {e}");
                }
                Some(Input::Left)
            }
            Action::PublishRole { active, leader } => {
                if let Some(channel) = self.channel.as_mut() {
                    channel.role(active, leader, crate::log::monotonic_us());
                }
                None
            }
            Action::PublishState(state) => {
                if let Some(channel) = self.channel.as_mut() {
                    channel.state(&state, crate::log::monotonic_us());
                }
                None
            }
            Action::SetState(state) => match d.handover.set_state(&state).await {
                Ok(()) => None,
                Err(e) => Some(Input::CommandFailed(e.to_string())),
            },
            Action::Run { id, payload } => {
                if let Some(channel) = self.channel.as_mut() {
                    channel.run(id, payload.json());
                }
                None
            }
            Action::Checkpoint(id) => match d.handover.checkpoint_now(id) {
                Ok(()) => None,
                Err(e) => Some(Input::CommandFailed(e.to_string())),
            },
            Action::TellCheckpoints { checkpoint, held } => {
                if let Some(channel) = self.channel.as_mut() {
                    channel.checkpoints(checkpoint, held);
                }
                None
            }
            Action::TellError { error, line } => {
                tracing::warn!("the service's channel: {error}");
                if let Some(channel) = self.channel.as_mut() {
                    channel.error(&error, &line);
                }
                None
            }
            Action::Note(note) => {
                self.note(note);
                None
            }
            Action::Exit(exit) => {
                self.exit = Some(exit);
                None
            }
        })
    }

    /// Answers the operator's request being handled, if any.
    fn answer(&mut self, line: &str) {
        if let Some(request) = self.asked.take() {
            request.answer(line);
        }
    }

    fn note(&mut self, note: Note) {
        let log = self.d.log;
        match note {
            Note::Ready { via } => log.event("ready", json!({ "via": via })),
            Note::ClaimSent => log.event("claim_sent", json!({})),
            Note::ServiceReady { via } => log.event("service_ready", json!({ "via": via })),
            Note::ReadyTimeout { after } => {
                log.event(
                    "ready_timeout",
                    json!({ "after_ms": after.as_millis() as u64 }),
                );
                tracing::error!(
                    "the service was not ready within {}",
                    humantime::format_duration(after)
                );
            }
            Note::StoppedWaiting => log.event("stopped_waiting", json!({ "for": "sockets" })),
            Note::LeaveAsked => log.event("leave_asked", json!({})),
            Note::SteppingDown(why) => {
                log.event("stepping_down", json!({ "why": why }));
                tracing::warn!("stepping down ({why}): stopping the service, a standby takes over");
                self.answer("stepping down");
            }
            Note::StepDownRefused(why) => {
                log.event("step_down_refused", json!({ "why": why }));
                self.answer(why);
            }
            Note::UnhealthyKept => {
                log.event("unhealthy_kept", json!({ "why": "no standby" }));
                tracing::error!(
                    "the service is unhealthy, and no standby could take over: it keeps running here"
                );
            }
            Note::LeftUnsettled => {
                tracing::warn!("leaving before the standbys held every task done here")
            }
            Note::NotStarted(error) => {
                log.event("child_not_started", json!({ "error": error }));
                tracing::error!("{error}");
            }
            Note::DriverFailed(error) => log.event("driver_failed", json!({ "error": error })),
        }
    }

    /// Waits for the sockets of the instance in charge; a signal may end the wait.
    async fn acquire(&mut self, signals: &mut Forwarded) -> Result<Option<Input>, Failure> {
        let d = self.d;
        let dir = d.args.sockets_dir.as_deref();
        let acquire = crate::listen::acquire(&d.args.listen, dir, d.scope, d.log);
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                acquired = &mut acquire => {
                    self.sockets = Some(acquired?);
                    return Ok(Some(Input::SocketsTaken));
                }
                sig = signals.recv() => {
                    self.sup.handle(self.now(), Input::Signal(sig));
                    if self.sup.phase() != Phase::Acquiring {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Bridge networking: clients that still reach this instance's address are
    /// served by the successor until this one is stopped.
    async fn forward(&mut self, successor: Successor, signals: &mut Forwarded) -> Option<Input> {
        let d = self.d;
        // Handed off: the successor serves on these very sockets.
        let Some(sockets) = self.sockets.as_ref().filter(|s| !s.handed_off()) else {
            return Some(Input::Forwarded);
        };
        let to = match successor {
            Successor::Peer(id) => d.peers.of(id),
            Successor::Legacy => None,
        };
        let Some(to) = to else {
            tracing::info!("the successor announced no address: nothing to forward to");
            return Some(Input::Forwarded);
        };
        for l in sockets.listeners() {
            if let (Address::Tcp(_), Some(port)) = (&l.spec().address, l.port()) {
                let to = std::net::SocketAddr::from((to, port)).to_string();
                d.log
                    .event("forwarding", json!({ "name": l.name(), "to": to }));
            }
        }
        let forwarding = sockets.forward(to.into(), std::future::pending::<()>());
        tokio::pin!(forwarding);
        loop {
            tokio::select! {
                () = &mut forwarding => return Some(Input::Forwarded),
                sig = signals.recv() => {
                    self.sup.handle(self.origin.elapsed(), Input::Signal(sig));
                    if self.sup.phase() != Phase::Forwarding {
                        return None;
                    }
                }
            }
        }
    }
}

/// Passes `state` to systemd when `handover` runs under it (never waiting: the
/// protocol runs on this thread).
fn tell_service_manager(state: &[u8]) {
    if let Err(e) = handover_std::notify::try_notify(state) {
        tracing::warn!("notifying the service manager failed: {e}");
    }
}

/// Waits until `deadline` (forever without one).
async fn at(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn wait(service: Option<&mut Service>) -> std::io::Result<std::process::ExitStatus> {
    match service {
        Some(s) => s.wait().await,
        None => std::future::pending().await,
    }
}

async fn poll<T>(f: Option<&mut Boxed<'_, T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn request(control: Option<&mut Control>) -> Request {
    match control {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

async fn health(checks: Option<&mut Checks>) -> Change {
    match checks {
        Some(c) => match c.changed().await {
            Some(change) => change,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn recv<T: Clone>(events: Option<&mut broadcast::Receiver<T>>) -> Result<T, RecvError> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

/// The next line of the service; pending forever once it closed its end.
async fn next_line(incoming: &mut Option<Incoming>) -> Heard {
    if let Some(i) = incoming.as_mut() {
        if let Some(heard) = i.next().await {
            return heard;
        }
    }
    *incoming = None;
    std::future::pending().await
}

/// How long the lines a service wrote before it exited are waited for, when a
/// child of its own holds the channel open.
const LAST_LINES: Duration = Duration::from_millis(100);

/// The lines the service wrote before it exited: up to the end of the channel,
/// or for a moment if a child of its own holds it open.
async fn last_lines(incoming: &mut Option<Incoming>) -> Vec<Heard> {
    let until = Instant::now() + LAST_LINES;
    let mut lines = Vec::new();
    while let Some(i) = incoming.as_mut() {
        match tokio::time::timeout_at(until, i.next()).await {
            Ok(Some(heard)) => lines.push(heard),
            Ok(None) => *incoming = None,
            Err(_) => break,
        }
    }
    lines
}

async fn writable(channel: Option<&mut Channel>) {
    match channel {
        Some(c) => c.writable().await,
        None => std::future::pending().await,
    }
}
