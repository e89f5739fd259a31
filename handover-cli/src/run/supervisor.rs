//! The policy of `handover run` as a state machine: no processes, sockets, signals
//! or clocks, so that every rule can be tested by feeding it inputs.
//!
//! The driver ([`super::driver`]) feeds it what happened ([`Input`]) with the time,
//! carries out what it asks for ([`Action`]) in order, and calls
//! [`handle_timeout`](Supervisor::handle_timeout) at
//! [`poll_timeout`](Supervisor::poll_timeout), as an adapter drives the protocol's
//! `Peer`. Hand-over, cold standby and hot standby are its [`Mode`]s; an instance
//! goes through the same [`Phase`]s in each.
//!
//! The rules it keeps, whatever happens in between:
//! - the service is stopped (stop signal, then SIGKILL after the stop limit)
//!   before its instance leaves, and before the complete file is written;
//! - a cold standby's service runs only while its instance is active;
//! - after a completed hand-over `handover` exits 0 ([`Exit::HandedOver`]);
//! - with `--queue`, the service is handed tasks only while it serves on the
//!   active instance, within the window; a completion is recorded only while
//!   active (else on becoming active again); and the instance leaves once the
//!   standbys hold every task done here, or the stop limit has passed.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::time::Duration;

use handover_std::{Successor, Term};
use rustix::process::Signal;

use super::exit::Exit;
use crate::channel::{Desk, Heard, Said};

mod vocabulary;

pub use vocabulary::{Action, Input, Mode, Note, Policy, Queue, View, STOPPING};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the listening sockets, nothing started yet.
    Acquiring,
    /// The mode's normal life.
    Serving,
    /// The service was asked to stop; what comes next when it has.
    Stopping(Then),
    /// Waiting, up to the stop limit, until the standbys hold every task done
    /// here (`--queue`), then leaving; the exit that follows.
    Settling(Exit),
    /// Waiting for the protocol to finish a goodbye; the exit that follows.
    Leaving(Exit),
    /// Waiting for the complete file and the goodbye.
    Completing,
    /// Serving the successor's clients that still reach this instance.
    Forwarding,
    /// Exited.
    Done,
}

/// What follows a service's stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Demoted: stand by again.
    StandBy,
    /// Leave, then exit.
    Leave(Exit),
    /// Write the complete file.
    CompleteHandOver,
    /// Exit without a goodbye (the protocol no longer runs).
    Exit(Exit),
}

impl Then {
    /// Which of two endings wins when a second comes while stopping: the more
    /// final one.
    fn weight(self) -> u8 {
        match self {
            Then::StandBy => 0,
            Then::Leave(_) => 1,
            Then::CompleteHandOver => 2,
            Then::Exit(_) => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Absent,
    Running {
        ready: bool,
    },
    /// Sent the stop signal.
    Stopping,
}

/// The policy of `handover run`.
#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    phase: Phase,
    service: Service,
    view: View,
    successor: Option<Successor>,
    /// `READY=1` was sent to the service manager.
    told_ready: bool,
    sockets_owned: bool,
    /// The role last told to a hot standby's service.
    role: Option<(bool, Option<u64>)>,
    /// A stopping signal was passed on to the service.
    stop_asked: bool,
    ready_by: Option<Duration>,
    kill_at: Option<Duration>,
    /// The work queue (`--queue`).
    desk: Option<Desk>,
    /// Tasks done up to here, to record once the lines read together are taken.
    checkpoint_due: Option<u64>,
    /// The checkpoints the service was last told.
    told: Option<(u64, Option<u64>)>,
    settle_by: Option<Duration>,
    /// The running service's last health verdict (healthy until checked).
    healthy: bool,
    /// What the protocol was last told of this standby's eligibility.
    told_eligible: bool,
    /// That an unhealthy active is kept for want of a standby was said.
    kept_said: bool,
    actions: VecDeque<Action>,
}

impl Supervisor {
    /// A supervisor in `policy.mode`, about to start.
    pub fn new(policy: Policy) -> Self {
        let mut s = Supervisor {
            policy,
            phase: Phase::Serving,
            service: Service::Absent,
            view: View::default(),
            successor: None,
            told_ready: false,
            sockets_owned: false,
            role: None,
            stop_asked: false,
            ready_by: None,
            kill_at: None,
            desk: policy.queue.map(|q| Desk::new(q.window, q.limits)),
            checkpoint_due: None,
            told: None,
            settle_by: None,
            healthy: true,
            told_eligible: true,
            kept_said: false,
            actions: VecDeque::new(),
        };
        match policy.mode {
            Mode::HandOver { sockets: true } => {
                s.phase = Phase::Acquiring;
                s.push(Action::AcquireSockets);
            }
            Mode::HandOver { sockets: false } | Mode::HotStandby => s.spawn(None),
            Mode::ColdStandby => {
                s.push(Action::Claim);
                s.push(Action::Note(Note::Ready { via: "standby" }));
            }
        }
        s
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        // A retry is due only while tasks are handed out.
        let retry = self.desk.as_ref().and_then(Desk::poll_timeout);
        let retry = retry.filter(|_| self.serving());
        [self.kill_at, self.ready_by, self.settle_by, retry]
            .into_iter()
            .flatten()
            .min()
    }

    /// Where the instance is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the service serves, with no stop asked: it may be handed work.
    pub fn serving(&self) -> bool {
        self.phase == Phase::Serving
            && !self.stop_asked
            && matches!(self.service, Service::Running { .. })
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        if self.kill_at.is_some_and(|at| at <= now) {
            self.kill_at = None;
            if self.service != Service::Absent {
                self.push(Action::Kill);
            }
        }
        if self.ready_by.is_some_and(|at| at <= now) {
            self.ready_by = None;
            if self.service == (Service::Running { ready: false }) {
                let after = self.policy.ready_timeout.unwrap_or_default();
                self.push(Action::Note(Note::ReadyTimeout { after }));
                // Stopped before leaving: in failover a standby takes over as soon
                // as this instance leaves, and must not find this service running.
                self.stop(now, Then::Leave(Exit::NotReady));
            }
        }
        if self.settle_by.is_some_and(|at| at <= now) {
            if let Phase::Settling(exit) = self.phase {
                self.push(Action::Note(Note::LeftUnsettled));
                self.settled(exit);
            }
        }
        self.dispatch(now);
    }

    pub fn handle(&mut self, now: Duration, input: Input) {
        if self.phase == Phase::Done {
            return;
        }
        match input {
            Input::Protocol(view) => {
                self.view = view;
                self.follow_protocol(now);
                self.follow_queue(now);
            }
            Input::Synced(state) => {
                if self.hot_and_serving() {
                    self.push(Action::PublishState(state));
                }
            }
            Input::Heard(lines) => {
                for line in lines {
                    self.heard(now, line);
                }
                self.dispatch(now);
            }
            Input::SocketsTaken => {
                if self.phase == Phase::Acquiring {
                    self.phase = Phase::Serving;
                    self.spawn(None);
                }
            }
            Input::Spawned => self.spawned(now),
            Input::NotStarted { kind, error } => {
                self.service = Service::Absent;
                self.push(Action::Note(Note::NotStarted(error)));
                self.leave(now, Exit::NotStarted(kind));
            }
            Input::Ready(via) => self.ready(via),
            Input::StepDown => self.step_down(now),
            Input::Health(healthy) => {
                self.healthy = healthy;
                self.kept_said &= !healthy;
                self.follow_health(now);
            }
            Input::Exited(status) => self.exited(now, status),
            Input::Signal(sig) => self.signal(now, sig),
            Input::CommandFailed(error) => self.failed(now, error),
            Input::Left => {
                if let Phase::Leaving(exit) = self.phase {
                    self.exit(exit);
                }
            }
            Input::Completed => {
                if self.phase == Phase::Completing {
                    match (self.policy.mode, self.successor) {
                        (Mode::HandOver { sockets: true }, Some(successor)) => {
                            self.phase = Phase::Forwarding;
                            self.push(Action::Forward(successor));
                        }
                        _ => self.exit(Exit::HandedOver),
                    }
                }
            }
            Input::Forwarded => {
                if self.phase == Phase::Forwarding {
                    self.exit(Exit::HandedOver);
                }
            }
        }
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    fn hot_and_serving(&self) -> bool {
        self.policy.mode == Mode::HotStandby && self.phase == Phase::Serving
    }

    fn spawn(&mut self, term: Option<Term>) {
        self.service = Service::Running { ready: false };
        self.stop_asked = false;
        self.push(Action::Spawn { term });
    }

    fn spawned(&mut self, now: Duration) {
        match self.policy.mode {
            Mode::HandOver { .. } | Mode::ColdStandby => {
                self.push(Action::WatchReadiness);
                self.ready_by = self.policy.ready_timeout.map(|t| now + t);
            }
            Mode::HotStandby => {
                self.role = Some((false, None));
                self.push(Action::PublishRole {
                    active: false,
                    leader: None,
                });
                self.push(Action::Claim);
                self.push(Action::Note(Note::Ready { via: "standby" }));
                self.watch_health();
                self.tell_ready();
                // The protocol may have moved while the service started.
                self.follow_protocol(now);
            }
        }
    }

    fn ready(&mut self, via: &'static str) {
        if self.service != (Service::Running { ready: false }) {
            return;
        }
        self.service = Service::Running { ready: true };
        self.ready_by = None;
        self.watch_health();
        match self.policy.mode {
            Mode::HandOver { .. } => {
                self.push(Action::Note(Note::Ready { via }));
                self.push(Action::Claim);
                self.push(Action::Note(Note::ClaimSent));
                self.tell_ready();
            }
            Mode::ColdStandby => {
                self.push(Action::Note(Note::ServiceReady { via }));
                self.tell_ready();
            }
            Mode::HotStandby => {}
        }
    }

    fn watch_health(&mut self) {
        if self.policy.health {
            self.healthy = true;
            self.kept_said = false;
            self.push(Action::WatchHealth);
        }
    }

    /// What the service's health means here (failover): an unhealthy active steps
    /// down when a standby can take over, and says once that it is kept when none
    /// can; an unhealthy hot standby stands aside, and stands by again once
    /// healthy.
    fn follow_health(&mut self, now: Duration) {
        let failover = matches!(self.policy.mode, Mode::ColdStandby | Mode::HotStandby);
        if !self.policy.health || !failover || !self.serving() {
            return;
        }
        if self.view.active {
            if self.healthy {
                return;
            }
            if self.view.standbys > 0 {
                self.push(Action::Note(Note::SteppingDown("unhealthy")));
                self.stop(now, Then::Leave(Exit::Unhealthy));
            } else if !self.kept_said {
                self.kept_said = true;
                self.push(Action::Note(Note::UnhealthyKept));
            }
        } else if self.policy.mode == Mode::HotStandby
            && (self.view.standby || !self.told_eligible)
            && self.told_eligible != self.healthy
        {
            self.told_eligible = self.healthy;
            self.push(Action::Eligible(self.healthy));
        }
    }

    /// An operator's switchover: the active's service is stopped cleanly, then
    /// the instance leaves, and the best standby takes over.
    fn step_down(&mut self, now: Duration) {
        let failover = matches!(self.policy.mode, Mode::ColdStandby | Mode::HotStandby);
        let refused = if !failover {
            Some("hand-over: a newer instance takes over by starting")
        } else if !self.view.active || !self.serving() {
            Some("not the active instance")
        } else if self.view.standbys == 0 {
            Some("no standby could take over")
        } else {
            None
        };
        match refused {
            Some(why) => self.push(Action::Note(Note::StepDownRefused(why))),
            None => {
                self.push(Action::Note(Note::SteppingDown("asked")));
                self.stop(now, Then::Leave(Exit::Left));
            }
        }
    }

    /// `READY=1`, once.
    fn tell_ready(&mut self) {
        if !self.told_ready {
            self.told_ready = true;
            self.push(Action::NotifyReady);
        }
    }

    fn follow_protocol(&mut self, now: Duration) {
        if !matches!(self.phase, Phase::Serving | Phase::Stopping(_)) {
            // Acquiring: nothing runs yet. Leaving, completing, forwarding: the
            // driver's own command is finishing.
            if let (Phase::Acquiring, Some(error)) = (self.phase, self.view.failed.clone()) {
                self.failed(now, error);
            }
            return;
        }
        if let Some(error) = self.view.failed.clone() {
            return self.failed(now, error);
        }
        if self.phase != Phase::Serving {
            // What the protocol says is read again once the service has stopped.
            return;
        }
        let view = &self.view;
        match self.policy.mode {
            Mode::HandOver { sockets } => {
                if let Some(successor) = view.successor {
                    self.successor = Some(successor);
                    self.stop(now, Then::CompleteHandOver);
                } else if view.finished {
                    self.failed(now, "the handover driver has stopped".into());
                } else if sockets && view.active && !self.sockets_owned {
                    self.sockets_owned = true;
                    self.push(Action::OwnSockets);
                }
            }
            Mode::ColdStandby => {
                if view.finished {
                    self.stop(now, Then::Exit(Exit::Left));
                } else if view.active && self.service == Service::Absent {
                    let term = view.term.clone();
                    self.spawn(term);
                } else if !view.active && matches!(self.service, Service::Running { .. }) {
                    self.stop(now, Then::StandBy);
                } else if view.standby {
                    self.tell_ready();
                }
            }
            Mode::HotStandby => {
                if view.finished {
                    self.stop(now, Then::Exit(Exit::Left));
                } else if self.role.is_some() && self.role != Some((view.active, view.leader)) {
                    let (active, leader) = (view.active, view.leader);
                    self.role = Some((active, leader));
                    self.push(Action::PublishRole { active, leader });
                }
            }
        }
        // A standby that came, or a role that changed, may change what an
        // unhealthy service means.
        self.follow_health(now);
    }

    /// Stops the service, then `then`; at once if none runs. A second reason to
    /// stop while stopping keeps the more final of the two.
    fn stop(&mut self, now: Duration, then: Then) {
        if let Phase::Stopping(current) = self.phase {
            if then.weight() > current.weight() {
                self.phase = Phase::Stopping(then);
            }
            return;
        }
        match self.service {
            Service::Absent => self.after_stop(now, then),
            Service::Running { .. } | Service::Stopping => {
                self.service = Service::Stopping;
                self.ready_by = None;
                self.push(Action::Signal(self.policy.stop_signal));
                self.kill_by(now + self.policy.stop_limit);
                self.phase = Phase::Stopping(then);
            }
        }
    }

    fn kill_by(&mut self, at: Duration) {
        self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
    }

    fn after_stop(&mut self, now: Duration, then: Then) {
        if then == Then::StandBy {
            // Demoted: the term's lock (an etcd lease) may be given back.
            self.push(Action::Released);
        }
        match then {
            // Asked to stop while being demoted: the service has, so leave.
            Then::StandBy if self.stop_asked => self.leave(now, Exit::Left),
            Then::StandBy => {
                self.phase = Phase::Serving;
                self.follow_protocol(now);
            }
            Then::Leave(exit) => self.leave(now, exit),
            Then::CompleteHandOver => {
                self.phase = Phase::Completing;
                self.push(Action::CompleteHandOver);
            }
            Then::Exit(exit) => self.exit(exit),
        }
    }

    /// Leaves, once the standbys hold every task done here (for at most the
    /// stop limit): a clean stop repeats none.
    fn leave(&mut self, now: Duration, exit: Exit) {
        self.record_due();
        if self.desk.as_ref().is_some_and(|desk| !desk.settled()) {
            self.phase = Phase::Settling(exit);
            self.settle_by = Some(now + self.policy.stop_limit);
            return;
        }
        self.settled(exit);
    }

    fn settled(&mut self, exit: Exit) {
        self.settle_by = None;
        self.phase = Phase::Leaving(exit);
        self.push(Action::Leave);
    }

    fn exit(&mut self, exit: Exit) {
        self.phase = Phase::Done;
        self.push(Action::Exit(exit));
    }

    fn exited(&mut self, now: Duration, status: ExitStatus) {
        let was = std::mem::replace(&mut self.service, Service::Absent);
        self.kill_at = None;
        self.ready_by = None;
        match self.phase {
            Phase::Stopping(then) => self.after_stop(now, then),
            Phase::Serving if was != Service::Absent => {
                // On its own, or after a stopping signal passed on.
                let exit = match self.stop_asked {
                    true => Exit::StopAsked {
                        status,
                        stop_signal: self.policy.stop_signal,
                    },
                    false => Exit::OnItsOwn {
                        status,
                        failover: !matches!(self.policy.mode, Mode::HandOver { .. }),
                    },
                };
                self.leave(now, exit);
            }
            _ => {}
        }
    }

    fn signal(&mut self, now: Duration, sig: Signal) {
        let stopping = STOPPING.contains(&sig);
        match (self.phase, self.service) {
            (Phase::Acquiring, _) if stopping => {
                self.push(Action::Note(Note::StoppedWaiting));
                self.leave(now, Exit::Left);
            }
            (Phase::Forwarding, _) if stopping => self.exit(Exit::HandedOver),
            (Phase::Serving | Phase::Stopping(_), Service::Running { .. } | Service::Stopping) => {
                if stopping && !self.stop_asked {
                    // Stopping now: whether it would have been ready no longer matters.
                    self.stop_asked = true;
                    self.ready_by = None;
                    self.kill_by(now + self.policy.stop_limit);
                }
                self.push(Action::Signal(sig));
            }
            // A standby has no service to pass it on to.
            (Phase::Serving, Service::Absent) if stopping => self.leave(now, Exit::Left),
            _ => {}
        }
    }

    /// A line of the service: the queue's business, the state to carry,
    /// readiness, or a stop.
    fn heard(&mut self, now: Duration, heard: Heard) {
        let said = match heard {
            Ok(said) => said,
            Err((why, line)) => return self.tell_error(why, line),
        };
        let refused = match said {
            Said::State(state) => {
                if self.hot_and_serving() {
                    self.push(Action::SetState(state));
                }
                None
            }
            Said::Ready => {
                self.ready("channel");
                None
            }
            Said::Watchdog => {
                self.push(Action::WatchdogPing);
                None
            }
            Said::Leave => {
                self.push(Action::Note(Note::LeaveAsked));
                self.signal(now, Signal::TERM);
                None
            }
            Said::Checkpoint(_) if self.desk.is_some() => {
                Some("checkpoint: the queue records the checkpoints (--queue)".to_string())
            }
            Said::Checkpoint(id) => {
                self.push(Action::Checkpoint(id));
                None
            }
            Said::Submit { id, payload } => match self.desk.as_mut() {
                Some(desk) => desk.submit(id, payload).err(),
                None => Some("submit: no queue (start handover with --queue)".into()),
            },
            Said::Done(id) => self.answer(id, true, now),
            Said::Retry(id) => self.answer(id, false, now),
        };
        if let Some(error) = refused {
            self.tell_error(error, String::new());
        }
    }

    /// The service's `done` or `retry`; what it refuses.
    fn answer(&mut self, id: u64, done: bool, now: Duration) -> Option<String> {
        let Some(desk) = self.desk.as_mut() else {
            return Some("done, retry: no queue (start handover with --queue)".into());
        };
        match desk.answer(id, done, now) {
            Err(refused) => Some(refused),
            Ok(finished) => {
                // Recorded once the lines read together are taken.
                self.checkpoint_due = finished.or(self.checkpoint_due);
                None
            }
        }
    }

    fn tell_error(&mut self, error: String, line: String) {
        self.push(Action::TellError { error, line });
    }

    /// The protocol's checkpoints moved: the queue drops what they cover, the
    /// service is told, and the next tasks are due.
    fn follow_queue(&mut self, now: Duration) {
        let Some(desk) = self.desk.as_mut() else {
            return;
        };
        let (checkpoint, held) = (self.view.checkpoint, self.view.held);
        if let Some(finished) = desk.sync(checkpoint, held) {
            self.checkpoint_due = Some(finished);
        }
        if self.told != Some((checkpoint, held)) {
            self.told = Some((checkpoint, held));
            self.push(Action::TellCheckpoints { checkpoint, held });
        }
        self.dispatch(now);
    }

    fn record_due(&mut self) {
        if let Some(checkpoint) = self.checkpoint_due.take() {
            self.push(Action::Checkpoint(checkpoint));
        }
    }

    /// Records what is done, hands the service the tasks due while it serves,
    /// and leaves once settled.
    fn dispatch(&mut self, now: Duration) {
        self.record_due();
        let serving = self.serving();
        let Some(desk) = self.desk.as_mut() else {
            return;
        };
        while let Some((id, payload)) = serving.then(|| desk.next(now)).flatten() {
            self.actions.push_back(Action::Run { id, payload });
        }
        let gone = self.view.finished || self.view.failed.is_some();
        if let (Phase::Settling(exit), true) = (self.phase, desk.settled() || gone) {
            self.settled(exit);
        }
    }

    /// The protocol no longer runs: the service is stopped and `handover` exits
    /// without a goodbye or the complete file (no newer instance took over).
    fn failed(&mut self, now: Duration, error: String) {
        let heading_out = match self.phase {
            Phase::Stopping(then) => then.weight() >= Then::Exit(Exit::DriverFailed).weight(),
            // The hand-over is complete: forwarding needs no protocol.
            Phase::Forwarding | Phase::Done => true,
            _ => false,
        };
        if heading_out {
            return;
        }
        self.push(Action::Note(Note::DriverFailed(error)));
        self.stop(now, Then::Exit(Exit::DriverFailed));
    }
}

#[cfg(test)]
mod tests;
