//! What the supervisor is told ([`Input`]), what it asks for ([`Action`], [`Note`]),
//! and what it reads ([`Policy`], [`View`]).

use std::io::ErrorKind;
use std::num::NonZeroUsize;
use std::process::ExitStatus;
use std::time::Duration;

use handover_std::{State, Successor, Term};
use rustix::process::Signal;

use super::super::exit::Exit;
use crate::channel::{Heard, Limits, Payload};

/// The signals that ask a process to stop; the others are passed on, nothing more.
pub const STOPPING: [Signal; 4] = [Signal::TERM, Signal::INT, Signal::HUP, Signal::QUIT];

/// What the service does in this instance's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hand-over: the service starts at once, its readiness is the claim, and a
    /// newer instance's takeover stops it. With `sockets`, the listening sockets
    /// are taken from the instance in charge first (`--listen`).
    HandOver { sockets: bool },
    /// Failover, cold standby: the service runs only while this instance is active.
    ColdStandby,
    /// Failover, hot standby: the service runs on every instance and is told its
    /// role.
    HotStandby,
}

/// The settings the policy reads.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub mode: Mode,
    /// The signal that asks the service to stop.
    pub stop_signal: Signal,
    /// How long a stopping service has before SIGKILL.
    pub stop_limit: Duration,
    /// How long the service may take to become ready (hand-over and cold standby).
    pub ready_timeout: Option<Duration>,
    /// The work queue of `--queue` (hot standby).
    pub queue: Option<Queue>,
    /// The running service's health is checked (`--health-*`, `--watchdog`).
    pub health: bool,
}

/// The settings of the work queue.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    /// Tasks handed out or awaiting acknowledgement at once.
    pub window: NonZeroUsize,
    pub limits: Limits,
}

/// What the supervisor reads of the protocol: the handle's status, reduced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    pub active: bool,
    /// Standing by (failover).
    pub standby: bool,
    pub leader: Option<u64>,
    /// A newer instance took over (hand-over).
    pub successor: Option<Successor>,
    /// The goodbye was sent: the protocol is over.
    pub finished: bool,
    /// The protocol stopped on an error.
    pub failed: Option<String>,
    /// The term while active, on a backend that numbers them (etcd).
    pub term: Option<Term>,
    /// The highest checkpoint known.
    pub checkpoint: u64,
    /// While active: the checkpoint every standby holds.
    pub held: Option<u64>,
    /// Other instances standing by, ready to take over.
    pub standbys: usize,
}

impl From<&handover_std::Status> for View {
    fn from(s: &handover_std::Status) -> Self {
        View {
            active: s.state == State::Active,
            standby: s.state == State::Standby,
            leader: s.leader,
            successor: s.successor,
            finished: s.finished,
            failed: s.failed.clone(),
            term: s.term.clone(),
            checkpoint: s.checkpoint,
            held: s.checkpoint_held,
            standbys: s.standbys,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The protocol's status changed.
    Protocol(View),
    /// The active's state arrived (hot standby).
    Synced(Vec<u8>),
    /// Lines the service wrote on the channel, read together: their answers
    /// (and the tasks they free) go out together.
    Heard(Vec<Heard>),
    /// The listening sockets are this instance's ([`Action::AcquireSockets`]).
    SocketsTaken,
    /// The service was started ([`Action::Spawn`]).
    Spawned,
    /// The service could not be started.
    NotStarted { kind: ErrorKind, error: String },
    /// The service is ready, and how that was seen.
    Ready(&'static str),
    /// The running service's health check changed its verdict.
    Health(bool),
    /// An operator asked this instance to hand leadership to a standby
    /// (`handover step-down`).
    StepDown,
    /// The service exited.
    Exited(ExitStatus),
    /// `handover` received a signal.
    Signal(Signal),
    /// A command to the protocol failed: it no longer runs.
    CommandFailed(String),
    /// [`Action::Leave`] is done (delivered, or given up on).
    Left,
    /// [`Action::CompleteHandOver`] is done.
    Completed,
    /// [`Action::Forward`] ended: nothing (more) to forward.
    Forwarded,
}

/// What the driver is asked to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Take the listening sockets (`--listen`); answer [`Input::SocketsTaken`].
    AcquireSockets,
    /// Start the service, with the term's fencing token if any; answer
    /// [`Input::Spawned`] or [`Input::NotStarted`].
    Spawn { term: Option<Term> },
    /// Watch the service's readiness; answer [`Input::Ready`].
    WatchReadiness,
    /// Check the running service's health until it exits; answer
    /// [`Input::Health`] at each change of verdict.
    WatchHealth,
    /// Tell the protocol whether this standby may take over.
    Eligible(bool),
    /// The service said it is alive on the channel, as `WATCHDOG=1`.
    WatchdogPing,
    /// Pass a signal on to the service.
    Signal(Signal),
    /// SIGKILL the service: it overran the stop limit.
    Kill,
    /// Tell the protocol this instance is ready: claim (hand-over) or stand by.
    Claim,
    /// `READY=1` to the service manager.
    NotifyReady,
    /// Tell the protocol that a demoted instance's service has stopped: the next
    /// leader may start.
    Released,
    /// Own the listening sockets, to pass them on.
    OwnSockets,
    /// Write the complete file and say goodbye; answer [`Input::Completed`].
    CompleteHandOver,
    /// Forward the clients that still reach this instance to the successor, until
    /// a stop signal; answer [`Input::Forwarded`] when there is nothing to forward.
    Forward(Successor),
    /// Leave the group; answer [`Input::Left`].
    Leave,
    /// Tell the service its role (hot standby).
    PublishRole { active: bool, leader: Option<u64> },
    /// Tell the service the active's state (hot standby).
    PublishState(Vec<u8>),
    /// Carry the service's state on the heartbeats (hot standby).
    SetState(Vec<u8>),
    /// Hand the service a task of the queue (a `run` line).
    Run { id: u64, payload: Payload },
    /// Record a checkpoint with the protocol.
    Checkpoint(u64),
    /// Tell the service the checkpoints (the highest known, and while active the
    /// one every standby holds).
    TellCheckpoints { checkpoint: u64, held: Option<u64> },
    /// Tell the service that a line of its was not understood or not taken.
    TellError { error: String, line: String },
    /// Something to log.
    Note(Note),
    /// The end.
    Exit(Exit),
}

/// What the policy decided that the log should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Ready: claiming (hand-over) or standing by.
    Ready {
        via: &'static str,
    },
    ClaimSent,
    /// The service of an active cold standby is ready.
    ServiceReady {
        via: &'static str,
    },
    ReadyTimeout {
        after: Duration,
    },
    /// A stop signal ended the wait for the sockets.
    StoppedWaiting,
    /// The service asked to leave, on the channel.
    LeaveAsked,
    /// The stop limit passed before the standbys held every task done here.
    LeftUnsettled,
    /// The active steps down: its service is stopped, and a standby takes over;
    /// why (`unhealthy`, `asked`).
    SteppingDown(&'static str),
    /// A step-down was asked, and why it cannot be done.
    StepDownRefused(&'static str),
    /// The active's service is unhealthy, and no standby could take over: it is
    /// kept, and this said once per verdict.
    UnhealthyKept,
    NotStarted(String),
    DriverFailed(String),
}
