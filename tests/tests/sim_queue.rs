//! The managed work queue under a simulated network: every instance receives the same
//! task stream, only the active one runs tasks, and the active one is killed, leaves,
//! is cut off for moments, and loses 30 % of its datagrams for a while. The
//! invariants: no task is lost; a task runs twice at most once per failover, and
//! never across a clean one; within a term tasks run in order; checkpoints never go
//! backwards.
//!
//! The applications use the same `Ledger` as `handover_std::queue::WorkQueue`, fed
//! the way the Linux driver feeds it: the peer's checkpoint, and while active the one
//! its standbys hold.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use handover_proto::sim::{splitmix64, Network, NodeId, Sim};
use handover_proto::{Event, Instant, Policy, State};
use handover_std::queue::Ledger;
use handover_tests::seeds;
use proptest::prelude::*;

const HEARTBEAT: Duration = Duration::from_millis(20);
const STEP: Duration = Duration::from_millis(1);

/// One instance's application: its queue and the task it is running.
struct App {
    node: NodeId,
    ledger: Ledger<()>,
    /// The checkpoint its standbys hold, while active (`CheckpointHeld`).
    held: Option<u64>,
    /// Elections it has won so far: its terms.
    term: u32,
    /// The task it runs, when it finishes, and whether the views disagreed when
    /// it started.
    running: Option<(u64, Instant, bool)>,
    /// Tasks of the stream submitted so far.
    submitted: usize,
    /// How late the stream reaches it.
    lag: Duration,
    /// Highest `Checkpoint` event seen.
    last_checkpoint: u64,
    /// When it started.
    started: Instant,
}

/// A run of a task: which instance, in which of its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    id: u64,
    node: NodeId,
    term: u32,
    /// The fleet's views disagreed when it ran: another instance was active too
    /// (each side of a partition, or a standby that lost too many heartbeats,
    /// elects its own), or a live instance was missing from the runner's view (its
    /// heartbeats lost for a dead interval), so it did not wait for that one.
    split: bool,
}

#[derive(Debug, Clone, Copy)]
struct Faults {
    kills: bool,
    leaves: bool,
    cuts: bool,
    loss: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    runs: Vec<Run>,
    elections: usize,
    kills: usize,
    leaves: usize,
    tasks: u64,
}

impl Outcome {
    fn duplicates(&self) -> usize {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for r in &self.runs {
            *counts.entry(r.id).or_default() += 1;
        }
        counts.values().map(|c| c - 1).sum()
    }

    /// Repeats of tasks that never ran while the fleet's views disagreed.
    fn failover_duplicates(&self) -> usize {
        let mut counts: BTreeMap<u64, (usize, bool)> = BTreeMap::new();
        for r in &self.runs {
            let c = counts.entry(r.id).or_default();
            c.0 += 1;
            c.1 |= r.split;
        }
        counts.values().filter(|c| !c.1).map(|c| c.0 - 1).sum()
    }

    fn lost(&self) -> Vec<u64> {
        (1..=self.tasks)
            .filter(|id| !self.runs.iter().any(|r| r.id == *id))
            .collect()
    }
}

struct Harness {
    sim: Sim,
    apps: Vec<App>,
    /// When each task of the stream appears (task `i + 1` at `stream[i]`).
    stream: Vec<Instant>,
    cursor: usize,
    rng: u64,
    faults: Faults,
    /// No more faults: the fleet settles.
    quiet: bool,
    /// Print the story (`SIM_QUEUE_TRACE=1`), to follow a failing seed.
    trace: bool,
    out: Outcome,
}

impl Harness {
    /// The harness's choices, apart from the simulator's.
    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    fn chance(&mut self, per_million: u64) -> bool {
        self.random() % 1_000_000 < per_million
    }

    fn start_instance(&mut self, priority: u8) {
        let mut config = self.sim.config(0);
        config.policy = Policy::Failover { preempt: false };
        config.priority = priority;
        config.heartbeat = HEARTBEAT;
        let node = self.sim.add_node(config);
        self.sim.ready(node);
        let lag = Duration::from_micros(self.random() % 3_000);
        self.note(format!("node {node} starts, priority {priority}"));
        self.apps.push(App {
            node,
            ledger: Ledger::new(NonZeroUsize::MIN),
            held: None,
            term: 0,
            running: None,
            submitted: 0,
            lag,
            last_checkpoint: 0,
            started: self.sim.now(),
        });
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.apps.len())
            .filter(|&a| {
                let node = self.sim.node(self.apps[a].node);
                node.alive && node.peer.state() != State::Done
            })
            .collect()
    }

    /// Whether instance `b` has run long enough to be known to every other (a dead
    /// interval and then some).
    fn known_to_all(&self, b: usize) -> bool {
        self.sim.now().saturating_since(self.apps[b].started) > HEARTBEAT * 6
    }

    /// Whether an instance other than `a` is known to all: the standby a failover
    /// goes to. A fleet whose only survivor joined a moment ago has nobody that
    /// holds its progress, and starts over.
    fn established_standby(&self, a: usize) -> bool {
        self.alive()
            .into_iter()
            .any(|b| b != a && self.known_to_all(b))
    }

    fn note(&self, what: String) {
        if self.trace {
            eprintln!("{:?} {what}", self.sim.now());
        }
    }

    /// Whether the views disagree as `a` runs a task: two live instances are
    /// active, or a live instance that has been ready for a while (standing by, or
    /// claiming because it lost the active one too) is missing from `a`'s table.
    fn split(&self, a: usize) -> bool {
        let alive = self.alive();
        let active = alive
            .iter()
            .filter(|&&b| self.sim.state(self.apps[b].node) == State::Active)
            .count();
        let peer = &self.sim.node(self.apps[a].node).peer;
        let unseen = alive.iter().any(|&b| {
            let other = self.sim.node(self.apps[b].node);
            b != a
                && matches!(
                    other.peer.state(),
                    State::Standby | State::Claiming | State::Active
                )
                && self.known_to_all(b)
                && !peer.peers().any(|p| p.rank.id == other.peer.id())
        });
        active > 1 || unseen
    }

    /// What the peers said since the last step.
    fn read_events(&mut self) -> Result<(), TestCaseError> {
        let records = self.sim.records();
        for r in &records[self.cursor..] {
            if self.trace && !matches!(r.event, Event::PeerUp { .. } | Event::Synced { .. }) {
                eprintln!("{:?} node {} {:?}", r.at, r.node, r.event);
            }
            let Some(app) = self.apps.iter_mut().find(|a| a.node == r.node) else {
                continue;
            };
            match r.event {
                Event::Elected => {
                    app.term += 1;
                    app.held = None;
                    self.out.elections += 1;
                }
                Event::CheckpointHeld { seq } => app.held = Some(seq),
                Event::Checkpoint { seq } => {
                    prop_assert!(
                        seq > app.last_checkpoint,
                        "node {}: checkpoint {} after {}",
                        r.node,
                        seq,
                        app.last_checkpoint
                    );
                    app.last_checkpoint = seq;
                }
                _ => {}
            }
        }
        self.cursor = records.len();
        Ok(())
    }

    /// Each live application: submit what the stream brought, finish and start tasks.
    fn step_apps(&mut self) {
        let now = self.sim.now();
        for a in self.alive() {
            let node = self.apps[a].node;
            let (state, checkpoint) = {
                let peer = &self.sim.node(node).peer;
                (peer.state(), peer.checkpoint_seq())
            };
            let app = &mut self.apps[a];
            if state != State::Active {
                app.held = None;
            }
            while app.submitted < self.stream.len() && self.stream[app.submitted] + app.lag <= now {
                app.submitted += 1;
                app.ledger.submit(app.submitted as u64, ());
            }
            app.ledger.sync(checkpoint, app.held);
            if let Some((id, end, split_at_start)) = app.running {
                if end > now {
                    continue;
                }
                app.running = None;
                app.ledger.complete(id);
                let run = Run {
                    id,
                    node,
                    term: app.term,
                    split: split_at_start || self.split(a),
                };
                if self.trace {
                    eprintln!("{now:?} node {node} ran {run:?}");
                }
                self.out.runs.push(run);
                // Killed after running the task, before its checkpoint left: the
                // repeat the guarantee allows.
                let may_kill = self.faults.kills && !self.quiet && self.established_standby(a);
                if may_kill && self.chance(20_000) {
                    self.note(format!("kill node {node} before its checkpoint"));
                    self.sim.kill(node);
                    self.out.kills += 1;
                    continue;
                }
                // Demoted meanwhile, it still holds the checkpoint and tells the
                // new active through its heartbeats.
                self.sim.checkpoint(node, id).expect("not done");
            }
            let app = &mut self.apps[a];
            if let Some((id, ())) = app.ledger.next() {
                let took = Duration::from_micros(self.random() % 2_000);
                let split = self.split(a);
                self.apps[a].running = Some((id, now + took, split));
            }
        }
    }

    fn faults(&mut self) {
        let (faults, quiet) = (self.faults, self.quiet);
        let alive = self.alive();
        let active: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&a| self.sim.state(self.apps[a].node) == State::Active)
            .collect();
        // At least one instance that holds the stream survives every fault.
        if quiet || alive.len() < 2 {
            return;
        }
        let standby = active.first().is_some_and(|&a| self.established_standby(a));
        if faults.kills && standby && self.chance(3_000) {
            if let Some(&a) = active.first() {
                self.note(format!("kill node {}", self.apps[a].node));
                self.sim.kill(self.apps[a].node);
                self.out.kills += 1;
            }
        } else if faults.leaves && standby && self.chance(3_000) {
            if let Some(&a) = active.first() {
                self.note(format!("node {} leaves", self.apps[a].node));
                self.sim.leave(self.apps[a].node);
                self.out.leaves += 1;
            }
        } else if faults.cuts && self.chance(2_000) {
            // Cut one instance off for less than a dead interval: one that the
            // fleet knows, and never the last such one (an instance that has never
            // heard the fleet does not know its progress, and elects itself like
            // a partition would).
            let known: Vec<usize> = alive
                .iter()
                .copied()
                .filter(|&a| self.known_to_all(a))
                .collect();
            if known.len() < 2 {
                return;
            }
            let victim = known[self.random() as usize % known.len()];
            let sides: Vec<u8> = (0..self.sim.len())
                .map(|n| u8::from(n == self.apps[victim].node))
                .collect();
            self.note(format!("cut {sides:?}"));
            self.sim.partition(&sides);
            let cut = Duration::from_micros(self.random() % 50_000);
            self.run(cut);
            self.sim.heal();
        }
    }

    fn run(&mut self, d: Duration) {
        self.sim.run_for(d);
    }
}

fn simulate(
    seed: u64,
    instances: usize,
    tasks: u64,
    faults: Faults,
) -> Result<Outcome, TestCaseError> {
    let calm = Network {
        // A round trip (4-6 ms) outlasts most tasks (0-2 ms): without waiting for
        // acknowledgements an active instance would finish several per round trip.
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        loss: 0.0,
        duplicate: 0.05,
    };
    let mut h = Harness {
        sim: Sim::new(seed, calm),
        apps: Vec::new(),
        stream: Vec::new(),
        cursor: 0,
        rng: seed ^ 0x5eed,
        faults,
        quiet: false,
        trace: std::env::var_os("SIM_QUEUE_TRACE").is_some(),
        out: Outcome {
            tasks,
            ..Outcome::default()
        },
    };
    h.sim.heartbeat = HEARTBEAT;
    for i in 0..instances {
        let priority = 100 + i as u8;
        h.start_instance(priority);
    }
    h.run(HEARTBEAT * 5);
    // The stream: one task every 0-4 ms.
    let mut at = h.sim.now();
    for _ in 0..tasks {
        at = at + Duration::from_micros(h.random() % 4_000);
        h.stream.push(at);
    }
    let stream_end = at;
    let lossy_from = h.sim.now() + Duration::from_millis(100);
    let lossy_until = lossy_from + Duration::from_millis(300);
    let deadline = stream_end + Duration::from_secs(5);
    loop {
        let now = h.sim.now();
        let lossy = faults.loss && now >= lossy_from && now < lossy_until;
        h.sim.set_network(Network {
            loss: if lossy { 0.3 } else { 0.0 },
            ..calm
        });
        // Faults stop with the stream, so the fleet settles.
        h.quiet = now > stream_end;
        h.faults();
        h.run(STEP);
        h.read_events()?;
        h.step_apps();
        // A killed or departed instance is replaced: a new process that reads the
        // stream from its start.
        let alive = h.alive().len();
        if alive < instances && h.chance(20_000) {
            let priority = 50 + (h.random() % 150) as u8;
            h.start_instance(priority);
        }
        let all_done = h
            .alive()
            .iter()
            .all(|&a| h.apps[a].ledger.done() == tasks && h.apps[a].running.is_none());
        if h.sim.now() > stream_end && all_done || h.sim.now() > deadline {
            break;
        }
    }
    Ok(h.out)
}

fn check_order(runs: &[Run]) -> Result<(), TestCaseError> {
    let mut last: BTreeMap<(NodeId, u32), u64> = BTreeMap::new();
    for r in runs {
        if let Some(&before) = last.get(&(r.node, r.term)) {
            prop_assert!(
                r.id > before,
                "node {} term {} ran {} after {}",
                r.node,
                r.term,
                r.id,
                before
            );
        }
        last.insert((r.node, r.term), r.id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: seeds() / 5, ..ProptestConfig::default() })]

    /// Kills (some right after a task ran, before its checkpoint left) and clean
    /// departures: nothing lost, at most one repeat per failover (every election
    /// after the first counts as one).
    #[test]
    fn no_task_is_lost_and_repeats_stay_within_one_per_failover(
        seed in any::<u64>(),
        instances in 2usize..=4,
    ) {
        let faults = Faults { kills: true, leaves: true, cuts: false, loss: false };
        let out = simulate(seed, instances, 300, faults)?;
        prop_assert_eq!(out.lost(), Vec::<u64>::new(), "lost; {} elections", out.elections);
        let failovers = out.elections.saturating_sub(1);
        prop_assert!(
            out.duplicates() <= failovers,
            "{} repeats, {} failovers ({} kills, {} leaves)",
            out.duplicates(), failovers, out.kills, out.leaves
        );
        check_order(&out.runs)?;
    }

    /// Add moments cut off and a spell of 30 % loss. A standby that misses enough
    /// heartbeats takes over while the active one still runs: each runs tasks until
    /// they hear each other, as on any LAN without a quorum. Nothing is lost, and
    /// repeats of tasks that never ran during such a split stay within one per
    /// failover.
    #[test]
    fn under_loss_and_cuts_only_a_split_repeats_more(
        seed in any::<u64>(),
        instances in 2usize..=4,
    ) {
        let faults = Faults { kills: true, leaves: true, cuts: true, loss: true };
        let out = simulate(seed, instances, 300, faults)?;
        prop_assert_eq!(out.lost(), Vec::<u64>::new(), "lost; {} elections", out.elections);
        let failovers = out.elections.saturating_sub(1);
        prop_assert!(
            out.failover_duplicates() <= failovers,
            "{} repeats outside splits ({} in all), {} failovers ({} kills, {} leaves)",
            out.failover_duplicates(), out.duplicates(), failovers, out.kills, out.leaves
        );
        check_order(&out.runs)?;
    }

    /// An active instance that leaves cleanly hands over without a repeat.
    #[test]
    fn clean_hand_overs_repeat_nothing(seed in any::<u64>(), instances in 2usize..=3) {
        let faults = Faults { kills: false, leaves: true, cuts: false, loss: false };
        let out = simulate(seed, instances, 200, faults)?;
        prop_assert_eq!(out.lost(), Vec::<u64>::new());
        prop_assert_eq!(out.duplicates(), 0, "{} leaves", out.leaves);
        check_order(&out.runs)?;
    }
}

/// The harness sees what it should: kills do cause repeats now and then, so the bound
/// above is not met by a queue that never repeats for want of failovers.
#[test]
fn kills_do_cause_repeats_sometimes() {
    let faults = Faults {
        kills: true,
        leaves: false,
        cuts: false,
        loss: false,
    };
    let (mut kills, mut repeats) = (0, 0);
    for seed in 0..40 {
        let out = simulate(seed, 2, 300, faults).unwrap();
        assert!(out.lost().is_empty());
        kills += out.kills;
        repeats += out.duplicates();
    }
    assert!(kills > 40, "{kills} kills");
    assert!(repeats > 0, "{repeats} repeats over {kills} kills");
}

/// Follows one seed: `SIM_QUEUE_SEED=S SIM_QUEUE_TRACE=1 cargo test --test sim_queue replay -- --ignored`.
#[test]
#[ignore]
fn replay() {
    let seed = std::env::var("SIM_QUEUE_SEED").unwrap().parse().unwrap();
    let instances = std::env::var("SIM_QUEUE_INSTANCES").map_or(2, |v| v.parse().unwrap());
    // `SIM_QUEUE_FAULTS=kills,leaves,cuts,loss` (all of them by default).
    let named = std::env::var("SIM_QUEUE_FAULTS").unwrap_or("kills,leaves,cuts,loss".into());
    let faults = Faults {
        kills: named.contains("kills"),
        leaves: named.contains("leaves"),
        cuts: named.contains("cuts"),
        loss: named.contains("loss"),
    };
    let tasks = std::env::var("SIM_QUEUE_TASKS").map_or(300, |v| v.parse().unwrap());
    let out = simulate(seed, instances, tasks, faults).unwrap();
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &out.runs {
        *counts.entry(r.id).or_default() += 1;
    }
    let repeated: Vec<u64> = counts
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&id, _)| id)
        .collect();
    eprintln!(
        "repeated: {repeated:?}; lost: {:?}; elections {}",
        out.lost(),
        out.elections
    );
}
