//! The supervisor driven together with the simulator's peers: each instance is a
//! simulated peer, a [`Supervisor`] and a model of its service, which becomes
//! ready, stops, ignores its stop signal or dies as the random scenario says.
//! Whatever happens, the policy holds:
//! - failover: never two services active once settled, and a service runs only
//!   while its instance is active (cold standby), unless it is being stopped;
//! - a stop never lasts longer than the stop limit;
//! - a service is stopped before its instance leaves or exits;
//! - the complete file is written only after the service has stopped;
//! - `handover` exits 0 after a completed hand-over;
//! - once quiet, a failover fleet runs its service on exactly one instance, and a
//!   hand-over ends with one instance left;
//! - with `--queue` (hot standby): a task is handed out only on the active
//!   instance and within the window; once quiet every task is done; and a task is
//!   done again only after an unclean failover (a kill, a service that dies or
//!   overruns its stop limit), at most a window's worth per failover. Answers come
//!   at any time: after a demotion, during a stop, never (a kill).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use handover_proto::sim::{splitmix64, Network, NodeId, Sim};
use handover_proto::{Event, Policy as Election, State};
use proptest::prelude::*;

use super::*;

const STEP: Duration = Duration::from_millis(5);
const STOP_LIMIT: Duration = Duration::from_secs(2);
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long elections take to settle after a change, on the simulator's network.
const SETTLE: Duration = Duration::from_secs(1);
/// Tasks every service of a queue submits.
const TASKS: u64 = 30;
/// The longest a task takes to run.
const TASK_MS: u64 = 150;

#[derive(Debug, Clone)]
enum Op {
    /// Time passes.
    Wait(u64),
    /// A new instance starts (hand-over: a newer version; failover: a standby).
    Start,
    /// The service of instance `n % len` exits with this status by itself.
    ServiceExits(usize, i32),
    /// `handover` of instance `n % len` gets a signal (stopping or not).
    Signal(usize, bool),
    /// `kill -9` of instance `n % len`: `handover` and its service die at once.
    Kill(usize),
    /// The next service started is never ready.
    NeverReady,
    /// The next service started ignores its stop signal.
    Stubborn,
    /// Instance `n % len` is cut off from the others (two may be active), until
    /// [`Op::Heal`] (one of them is demoted).
    Partition(usize),
    Heal,
    /// Instance `n % len` loses its term for this many ms and wins it back, as
    /// with etcd paused longer than the lease: meanwhile it is not active, and
    /// its checkpoints are refused.
    TermLost(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..3_000).prop_map(Op::Wait),
        3 => Just(Op::Start),
        1 => (any::<usize>(), prop_oneof![Just(0), Just(1), Just(3), Just(143)])
            .prop_map(|(n, code)| Op::ServiceExits(n, code)),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, s)| Op::Signal(n, s)),
        1 => any::<usize>().prop_map(Op::Kill),
        1 => Just(Op::NeverReady),
        1 => Just(Op::Stubborn),
        1 => any::<usize>().prop_map(Op::Partition),
        1 => Just(Op::Heal),
        1 => (any::<usize>(), 1u64..1_000).prop_map(|(n, ms)| Op::TermLost(n, ms)),
    ]
}

/// The model of a service.
#[derive(Debug)]
struct Service {
    /// When it becomes ready (never: `None`).
    ready_at: Option<Duration>,
    /// How long it takes to stop after a stopping signal (ignores it: `None`).
    stop_delay: Option<Duration>,
    signalled_at: Option<Duration>,
    exit_at: Option<(Duration, ExitStatus)>,
    /// Its tasks are to be submitted (`--queue`).
    submitting: bool,
    /// Tasks handed to it, with when it answers and whether done.
    running: Vec<(u64, Duration, bool)>,
}

struct Instance {
    node: NodeId,
    sup: Supervisor,
    service: Option<Service>,
    watching: bool,
    ready_sent: bool,
    view: View,
    successor: Option<Successor>,
    completed: bool,
    exit: Option<Exit>,
    /// The checkpoint every standby holds, as the protocol reported it.
    held: Option<u64>,
    /// Its term is lost until then ([`Op::TermLost`]).
    term_lost_until: Option<Duration>,
}

struct World {
    sim: Sim,
    mode: Mode,
    rng: u64,
    instances: Vec<Instance>,
    records_seen: usize,
    never_ready_next: bool,
    stubborn_next: bool,
    last_change: Duration,
    partitioned: bool,
    /// The queue's window, with `--queue`.
    window: Option<NonZeroUsize>,
    /// Each task's completions, per fleet (a fleet that empties forgets all).
    done: BTreeMap<(usize, u64), usize>,
    fleet: usize,
    /// Unclean failovers so far: each may repeat a window's worth.
    unclean: usize,
    ever_partitioned: bool,
}

impl World {
    fn new(mode: Mode, seed: u64, window: Option<NonZeroUsize>) -> Self {
        World {
            sim: Sim::new(seed, Network::reliable()),
            mode,
            rng: seed,
            instances: Vec::new(),
            records_seen: 0,
            never_ready_next: false,
            stubborn_next: false,
            last_change: Duration::ZERO,
            partitioned: false,
            window: window.filter(|_| mode == Mode::HotStandby),
            done: BTreeMap::new(),
            fleet: 0,
            unclean: 0,
            ever_partitioned: false,
        }
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.sim.now().as_micros())
    }

    fn random(&mut self, below: u64) -> u64 {
        splitmix64(&mut self.rng) % below
    }

    fn start(&mut self) {
        let mut config = self.sim.config(0);
        if self.mode != (Mode::HandOver { sockets: false }) {
            config.policy = Election::Failover { preempt: false };
        }
        let node = self.sim.add_node(config);
        // The supervisor says when the service has stopped.
        self.sim.node_mut(node).shutdown_delay = Duration::from_secs(1 << 20);
        let sup = Supervisor::new(Policy {
            mode: self.mode,
            stop_signal: Signal::TERM,
            stop_limit: STOP_LIMIT,
            ready_timeout: Some(READY_TIMEOUT),
            health: false,
            queue: self.window.map(|window| Queue {
                window,
                limits: crate::channel::Limits {
                    tasks: 1000,
                    bytes: 1 << 20,
                },
            }),
        });
        if self.alive().is_empty() {
            self.fleet += 1;
        }
        self.instances.push(Instance {
            node,
            sup,
            service: None,
            watching: false,
            ready_sent: false,
            view: View::default(),
            successor: None,
            completed: false,
            exit: None,
            held: None,
            term_lost_until: None,
        });
        self.last_change = self.now();
        self.drain(self.instances.len() - 1);
    }

    fn checkpoint_of(&self, i: usize) -> u64 {
        self.sim.node(self.instances[i].node).peer.checkpoint_seq()
    }

    /// An instance that ended knew checkpoint `knew`: if no survivor knows as
    /// much (it was the last to hold it, and nobody newer had heard it yet), the
    /// fleet has forgotten that progress, as one that empties forgets all.
    fn forget_unless_known(&mut self, knew: u64) {
        let known = self
            .alive()
            .into_iter()
            .map(|a| self.checkpoint_of(a))
            .max();
        if known.is_some_and(|k| k < knew) {
            self.fleet += 1;
        }
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|&i| self.instances[i].exit.is_none())
            .collect()
    }

    fn apply(&mut self, op: &Op) {
        let pick = |w: &World, n: usize| {
            let alive = w.alive();
            (!alive.is_empty()).then(|| alive[n % alive.len()])
        };
        match *op {
            Op::Wait(ms) => self.run_for(Duration::from_millis(ms)),
            Op::Start => self.start(),
            Op::ServiceExits(n, code) => {
                if let Some(i) = pick(self, n) {
                    let now = self.now();
                    if let Some(s) = &mut self.instances[i].service {
                        s.exit_at = Some((now, ExitStatus::from_raw(code << 8)));
                        // Dead in the middle of its tasks.
                        self.unclean += 1;
                    }
                }
            }
            Op::Signal(n, stopping) => {
                if let Some(i) = pick(self, n) {
                    let sig = if stopping { Signal::TERM } else { Signal::USR1 };
                    self.feed(i, Input::Signal(sig));
                }
            }
            Op::Kill(n) => {
                if let Some(i) = pick(self, n) {
                    // The service dies with its parent (PR_SET_PDEATHSIG).
                    let knew = self.checkpoint_of(i);
                    self.sim.kill(self.instances[i].node);
                    self.instances[i].service = None;
                    self.instances[i].exit = Some(Exit::Refused);
                    self.last_change = self.now();
                    self.unclean += 1;
                    self.forget_unless_known(knew);
                }
            }
            Op::NeverReady => self.never_ready_next = true,
            Op::Stubborn => self.stubborn_next = true,
            Op::Partition(n) => {
                if let Some(i) = pick(self, n) {
                    let mut partitions = vec![0; self.sim.len()];
                    partitions[self.instances[i].node] = 1;
                    self.sim.partition(&partitions);
                    self.partitioned = true;
                    self.ever_partitioned = true;
                }
            }
            Op::Heal => {
                self.sim.heal();
                self.partitioned = false;
                self.last_change = self.now();
            }
            Op::TermLost(n, ms) => {
                if let Some(i) = pick(self, n) {
                    let until = self.now() + Duration::from_millis(ms);
                    self.instances[i].term_lost_until = Some(until);
                    self.last_change = until;
                }
            }
        }
    }

    fn run_for(&mut self, duration: Duration) {
        let until = self.now() + duration;
        while self.now() < until {
            let next = self.sim.now() + STEP;
            self.sim.run_until(next);
            self.step();
        }
    }

    /// One step of every driver, then the policy's checks.
    fn step(&mut self) {
        let now = self.now();
        let records = self.sim.records()[self.records_seen..].to_vec();
        self.records_seen += records.len();
        for r in records {
            let Some(i) = self.instances.iter().position(|x| x.node == r.node) else {
                continue;
            };
            match r.event {
                Event::Shutdown { successor } => self.instances[i].successor = Some(successor),
                Event::CheckpointHeld { seq } => self.instances[i].held = Some(seq),
                Event::Demoted => self.instances[i].held = None,
                Event::Synced { state } => self.feed(i, Input::Synced(state.to_vec())),
                _ => {}
            }
        }
        for i in self.alive() {
            self.service_moves(i, now);
            if self.instances[i].exit.is_some() {
                continue;
            }
            let peer = &self.sim.node(self.instances[i].node).peer;
            let lost = self.instances[i].term_lost_until.is_some_and(|t| now < t);
            let active = peer.state() == State::Active && !lost;
            let view = View {
                active,
                standby: peer.state() == State::Standby || lost,
                leader: peer.leader(),
                successor: self.instances[i].successor,
                finished: peer.is_finished(),
                failed: None,
                term: None,
                checkpoint: peer.checkpoint_seq(),
                held: self.instances[i].held.filter(|_| active),
                standbys: 0,
            };
            if view != self.instances[i].view {
                if view.active != self.instances[i].view.active {
                    self.last_change = now;
                }
                self.instances[i].view = view.clone();
                self.feed(i, Input::Protocol(view));
            }
            if self.instances[i]
                .sup
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.instances[i].sup.handle_timeout(now);
                self.drain(i);
            }
        }
        self.check(now);
    }

    /// The service becomes ready or exits, submits its tasks and answers those
    /// it was handed, when its time comes.
    fn service_moves(&mut self, i: usize, now: Duration) {
        let x = &mut self.instances[i];
        let Some(s) = &mut x.service else { return };
        if std::mem::take(&mut s.submitting) {
            let submits = (1..=TASKS)
                .map(|id| {
                    let payload = crate::channel::Payload::from_json(id.to_string()).unwrap();
                    Ok(Said::Submit { id, payload })
                })
                .collect();
            return self.feed(i, Input::Heard(submits));
        }
        let (due, running): (Vec<_>, Vec<_>) = s.running.iter().partition(|t| t.1 <= now);
        s.running = running;
        if !due.is_empty() {
            let fleet = self.fleet;
            let mut answers = Vec::new();
            for (id, _, done) in due {
                if done {
                    *self.done.entry((fleet, id)).or_default() += 1;
                    answers.push(Ok(Said::Done(id)));
                } else {
                    answers.push(Ok(Said::Retry(id)));
                }
            }
            return self.feed(i, Input::Heard(answers));
        }
        let x = &mut self.instances[i];
        let Some(s) = &x.service else { return };
        if let Some((_, status)) = s.exit_at.filter(|(at, _)| *at <= now) {
            x.service = None;
            x.watching = false;
            self.feed(i, Input::Exited(status));
        } else if x.watching && !x.ready_sent && s.ready_at.is_some_and(|r| r <= now) {
            x.ready_sent = true;
            self.feed(i, Input::Ready("notify"));
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        if self.instances[i].exit.is_some() {
            return;
        }
        let now = self.now();
        self.instances[i].sup.handle(now, input);
        self.drain(i);
    }

    /// Carries out what the supervisor asks, as the driver does.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.instances[i].sup.poll_action() {
            if let Some(input) = self.execute(i, action) {
                let now = self.now();
                self.instances[i].sup.handle(now, input);
            }
        }
    }

    fn execute(&mut self, i: usize, action: Action) -> Option<Input> {
        let now = self.now();
        let node = self.instances[i].node;
        match action {
            Action::Spawn { .. } => {
                assert!(self.instances[i].service.is_none(), "two services at once");
                let ready_at = match std::mem::take(&mut self.never_ready_next) {
                    true => None,
                    false => Some(now + Duration::from_millis(self.random(300))),
                };
                let stop_delay = match std::mem::take(&mut self.stubborn_next) {
                    true => None,
                    false => Some(Duration::from_millis(self.random(500))),
                };
                let x = &mut self.instances[i];
                x.service = Some(Service {
                    ready_at,
                    stop_delay,
                    signalled_at: None,
                    exit_at: None,
                    submitting: self.window.is_some(),
                    running: Vec::new(),
                });
                x.ready_sent = false;
                x.watching = false;
                Some(Input::Spawned)
            }
            Action::WatchReadiness => {
                self.instances[i].watching = true;
                None
            }
            Action::Signal(sig) => {
                let status = match self.random(4) {
                    0 => ExitStatus::from_raw(143 << 8),
                    1 => ExitStatus::from_raw(1 << 8),
                    2 => ExitStatus::from_raw(0),
                    _ => ExitStatus::from_raw(Signal::TERM.as_raw()),
                };
                let stubborn = self.instances[i]
                    .service
                    .as_ref()
                    .is_some_and(|s| s.stop_delay.is_none() && s.signalled_at.is_none());
                if stubborn && STOPPING.contains(&sig) {
                    // Killed at the stop limit, in the middle of its tasks.
                    self.unclean += 1;
                }
                if let Some(s) = &mut self.instances[i].service {
                    if STOPPING.contains(&sig) {
                        s.signalled_at.get_or_insert(now);
                        // It answers the tasks it runs before it exits, as the
                        // clients do.
                        let answered = s.running.iter().map(|t| t.1).max().unwrap_or(now);
                        if let (None, Some(delay)) = (s.exit_at, s.stop_delay) {
                            let at = (now + delay).max(answered + STEP);
                            s.exit_at = Some((at.min(now + STOP_LIMIT - STEP), status));
                        }
                    }
                }
                None
            }
            Action::Kill => {
                if let Some(s) = &mut self.instances[i].service {
                    s.exit_at = Some((now, ExitStatus::from_raw(Signal::KILL.as_raw())));
                }
                None
            }
            Action::Claim => {
                self.sim.ready(node);
                None
            }
            Action::CompleteHandOver => {
                assert!(
                    self.instances[i].service.is_none(),
                    "instance {i}: the complete file while its service runs"
                );
                self.instances[i].completed = true;
                self.sim.shutdown_complete(node).expect("after Shutdown");
                Some(Input::Completed)
            }
            Action::Forward(_) => Some(Input::Forwarded),
            Action::Leave => {
                assert!(
                    self.instances[i].service.is_none(),
                    "instance {i} leaves while its service runs"
                );
                self.sim.leave(node);
                Some(Input::Left)
            }
            Action::Exit(exit) => {
                let x = &mut self.instances[i];
                assert!(
                    x.service.is_none(),
                    "instance {i} exits ({exit:?}) while its service runs"
                );
                if x.completed {
                    assert_eq!(
                        exit.code(),
                        0,
                        "instance {i}: {exit:?} after a completed hand-over"
                    );
                }
                x.exit = Some(exit);
                let knew = self.checkpoint_of(i);
                self.sim.kill(node);
                self.last_change = now;
                self.forget_unless_known(knew);
                None
            }
            Action::AcquireSockets => Some(Input::SocketsTaken),
            Action::Run { id, .. } => {
                let window = self.window.expect("a queue").get();
                let took = Duration::from_millis(self.random(TASK_MS));
                let done = self.random(8) != 0;
                let x = &mut self.instances[i];
                assert!(
                    x.view.active,
                    "instance {i}: task {id} handed out while not active"
                );
                let s = x.service.as_mut().expect("a task handed to no service");
                assert!(
                    s.signalled_at.is_none(),
                    "instance {i}: task {id} handed out after a stop signal"
                );
                assert!(
                    s.running.len() < window,
                    "instance {i}: task {id} beyond the window of {window}: {:?} view {:?}",
                    s.running,
                    x.view
                );
                s.running.push((id, now + took, done));
                None
            }
            Action::Checkpoint(id) => {
                // Refused while not active, as by the engines.
                if self.instances[i].term_lost_until.is_none_or(|t| now >= t) {
                    let _ = self.sim.checkpoint(node, id);
                }
                None
            }
            Action::TellError { error, .. } => {
                panic!("instance {i}: the service is told {error:?}")
            }
            Action::TellCheckpoints { .. }
            | Action::Released
            | Action::WatchHealth
            | Action::WatchdogPing
            | Action::Eligible(_)
            | Action::NotifyReady
            | Action::OwnSockets
            | Action::PublishRole { .. }
            | Action::PublishState(_)
            | Action::SetState(_)
            | Action::Note(_) => None,
        }
    }

    fn check(&self, now: Duration) {
        let mut unstopped = 0;
        for (i, x) in self.instances.iter().enumerate() {
            let Some(s) = &x.service else { continue };
            if let Some(at) = s.signalled_at {
                assert!(
                    now - at <= STOP_LIMIT + 2 * STEP,
                    "instance {i}: still stopping {:?} after its stop signal",
                    now - at
                );
                continue;
            }
            unstopped += 1;
            if self.mode == Mode::ColdStandby {
                assert!(
                    x.view.active,
                    "instance {i}: a cold standby's service runs while it is not active"
                );
            }
        }
        if self.mode == Mode::ColdStandby
            && !self.partitioned
            && now.saturating_sub(self.last_change) > SETTLE
        {
            assert!(unstopped <= 1, "{unstopped} services active at {now:?}");
        }
    }

    /// With a queue: every task done once the fleet is quiet, and none done again
    /// but after an unclean failover, a window's worth each.
    fn check_queue(&self) {
        let Some(window) = self.window else { return };
        let active: Vec<usize> = self
            .alive()
            .into_iter()
            .filter(|&i| self.instances[i].view.active)
            .collect();
        if let [a] = active[..] {
            let checkpoint = self.sim.node(self.instances[a].node).peer.checkpoint_seq();
            assert_eq!(checkpoint, TASKS, "the queue stalled at {checkpoint}");
        }
        if self.ever_partitioned {
            // Both sides of a partition run tasks: no bound to check.
            return;
        }
        let repeats: usize = self.done.values().map(|n| n.saturating_sub(1)).sum();
        let bound = window.get() * self.unclean;
        assert!(
            repeats <= bound,
            "{repeats} tasks done again after {} unclean failovers (window {window})",
            self.unclean
        );
    }

    /// After a quiet time: one service runs (failover), or one instance is left
    /// (hand-over).
    fn check_settled(&self) {
        let alive = self.alive();
        let running = |i: &usize| self.instances[*i].service.is_some();
        match self.mode {
            Mode::ColdStandby if !alive.is_empty() => {
                assert_eq!(
                    alive.iter().filter(|i| running(i)).count(),
                    1,
                    "cold standby, settled"
                );
            }
            Mode::HotStandby => {
                assert!(
                    alive.iter().all(running),
                    "hot standby: every instance runs its service"
                );
                let active = alive
                    .iter()
                    .filter(|&&i| self.instances[i].view.active)
                    .count();
                assert_eq!(
                    active,
                    usize::from(!alive.is_empty()),
                    "hot standby, settled"
                );
            }
            Mode::HandOver { .. } => {
                assert!(
                    alive.len() <= 1,
                    "hand-over, settled: {} instances left",
                    alive.len()
                );
            }
            _ => {}
        }
    }
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::HandOver { sockets: false }),
        Just(Mode::ColdStandby),
        Just(Mode::HotStandby),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_policy_holds_whatever_happens(
        mode in mode(),
        seed in any::<u64>(),
        window in proptest::option::of(1usize..4),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let window = window.and_then(NonZeroUsize::new);
        let mut world = World::new(mode, seed, window);
        world.start();
        for op in &ops {
            world.apply(op);
            world.run_for(STEP);
        }
        world.never_ready_next = false;
        world.stubborn_next = false;
        world.apply(&Op::Heal);
        world.run_for(Duration::from_secs(20));
        world.check_settled();
        world.check_queue();
        eprintln!("CASE {mode:?} {window:?} {} ops unclean {} done {}", ops.len(), world.unclean, world.done.len());
    }
}
