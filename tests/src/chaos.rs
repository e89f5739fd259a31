//! The fault-injection harness: real `handover` processes in the topology users
//! run (each instance in a container of its own on a bridge; one namespace for
//! `--listen`, as host networking), services in Python or Node, and faults drawn
//! from a seed: kill -9 and SIGSTOP of a `handover` or of its service, a stalled
//! stderr pipe, nftables loss and partitions (between containers, and between a
//! candidate and etcd), services that exit with any status, early, slowly or never
//! ready, floods of junk and foreign datagrams, and upgrades under HTTP load.
//!
//! Invariants, on one monotonic clock (services write their work to a shared
//! ledger with it; `handover` stamps its events with it):
//! - outside declared faults (partitions, loss, a paused or killed supervisor, and
//!   the time to settle after each), at most one service of the scope works as the
//!   active one; with etcd, a partition from etcd is not declared: the cut-off
//!   leader must stop first;
//! - every hand-over completes: its complete file is written and the old `handover`
//!   exits 0;
//! - no request to a `--listen` service fails;
//! - no zombie lingers, and nothing is left running at the end;
//! - every exit status follows the policy (README: exit codes);
//! - a work queue loses no task, and repeats at most one per failover.
//!
//! The faults are drawn from the seed before the run and printed with the timeline
//! when an invariant breaks; the same seed replays the same schedule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

use crate::etcd::Cluster;
use crate::load::{service, Load, Totals};
use crate::process::{children, handover_bin, monotonic_us, Collector, Run};
use crate::topology::{Container, Containers};

/// What runs, and how instances come and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Failover, the service started only while active, multicast election.
    ColdFailover,
    /// Failover, the service running on every instance and told its role.
    HotFailover,
    /// Failover, cold standby, elected on etcd.
    EtcdFailover,
    /// Hand-over: a new generation takes over from time to time.
    HandOver,
    /// Hand-over with `--listen`, under HTTP load, in one network namespace.
    Listen,
    /// The work queue across failover (`handover_std::queue`, in `queue-worker`
    /// processes, on the tokio and the blocking API).
    Queue,
    /// The queue for any language: `handover run --queue` around the threaded
    /// Python client, payloads up to the channel's limit, a window from the seed;
    /// the service submits without pause (signals come in the middle of a
    /// submit), and a paused service is a reader that stalls.
    ServiceQueue,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::ColdFailover,
        Scenario::HotFailover,
        Scenario::EtcdFailover,
        Scenario::HandOver,
        Scenario::Listen,
        Scenario::Queue,
        Scenario::ServiceQueue,
    ];

    /// Instances in fixed slots, restarted when they end (a restart policy).
    fn failover(self) -> bool {
        matches!(
            self,
            Scenario::ColdFailover
                | Scenario::HotFailover
                | Scenario::EtcdFailover
                | Scenario::Queue
                | Scenario::ServiceQueue
        )
    }

    /// A work queue's scenario: its invariants are the queue's.
    fn queue(self) -> bool {
        matches!(self, Scenario::Queue | Scenario::ServiceQueue)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| format!("{s:?}").eq_ignore_ascii_case(name))
    }
}

/// The language of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Node,
}

/// A small deterministic generator (SplitMix64): the schedule must replay from
/// the seed alone.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    pub fn within(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start).max(1)
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

/// Which process of an instance a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proc {
    Supervisor,
    Service,
}

/// Which instance, resolved when the fault is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The one in charge.
    Active,
    /// Another one that runs.
    Other,
}

/// A fault, as drawn from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill(Target, Proc),
    Pause(Target, Proc, Duration),
    /// The target's container hears none of the others, nor they it.
    Partition(Target, Duration),
    /// Every container drops this share of the protocol's datagrams.
    Loss(u64, Duration),
    /// The target cannot reach etcd.
    EtcdCut(Target, Duration),
    /// Junk, foreign-scope heartbeats and truncated datagrams on the group.
    Junk(Duration),
    /// The target's stderr pipe is full and its reader stalls (a stuck log
    /// collector). Not declared: logging must never stop the protocol.
    StallLogs(Target, Duration),
    /// A new generation (hand-over scenarios); a failover instance replaced.
    Upgrade,
}

/// How a service started by the harness behaves, drawn from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// Delay before it says it is ready; `None`: never.
    pub ready_ms: Option<u64>,
    /// It exits on its own after this long, with this status.
    pub exit: Option<(u64, i32)>,
    /// Its status on SIGTERM.
    pub term_code: i32,
    /// It ignores SIGTERM (killed after `--stop-timeout`).
    pub term_ignore: bool,
}

impl Behaviour {
    fn normal() -> Self {
        Behaviour {
            ready_ms: Some(0),
            exit: None,
            term_code: 0,
            term_ignore: false,
        }
    }

    fn draw(rng: &mut Rng, scenario: Scenario) -> Self {
        let mut b = Behaviour::normal();
        let roll = rng.within(0..100);
        if scenario == Scenario::Listen {
            // Only what the promise of no failed request covers: a newcomer that
            // never gets ready, or dies before it is ready.
            match roll {
                0..10 => b.ready_ms = None,
                10..20 => {
                    b.ready_ms = Some(60_000);
                    b.exit = Some((rng.within(100..800), rng.pick(&[1, 2, 143])));
                }
                _ => {}
            }
        } else {
            match roll {
                0..12 => b.term_code = rng.pick(&[143, 1, 130]),
                12..17 => b.term_ignore = true,
                17..24 => b.exit = Some((rng.within(300..3_000), rng.pick(&[0, 1, 3, 143]))),
                24..29 => b.ready_ms = None,
                29..35 => b.ready_ms = Some(rng.within(200..900)),
                _ => {}
            }
        }
        b
    }
}

/// One run: what, for how long, and the schedule of faults.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub scenario: Scenario,
    pub language: Language,
    pub duration: Duration,
    pub faults: Vec<(Duration, Fault)>,
}

impl Plan {
    /// The plan of `seed`: faults every 0.4 to 1.2 s of `duration` (each kind the
    /// scenario has once, then any), then a quiet second for the fleet to settle.
    pub fn new(seed: u64, scenario: Scenario, duration: Duration) -> Self {
        let mut rng = Rng::new(seed);
        let language = match scenario {
            // The `--listen` service is the Python one of the socket tests, the
            // queue's the threaded Python client.
            Scenario::Listen | Scenario::ServiceQueue => Language::Python,
            _ => rng.pick(&[Language::Python, Language::Node]),
        };
        let mut faults = Vec::new();
        let mut at = Duration::from_millis(rng.within(1_500..2_500));
        let end = duration.saturating_sub(Duration::from_secs(1));
        // Every kind of fault once, in an order of the seed's, then any.
        let mut order: Vec<usize> = (0..Self::kinds(scenario, Duration::ZERO).len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut dealt = order.into_iter();
        while at < end {
            let span = Duration::from_millis(rng.within(300..1_500));
            let kinds = Self::kinds(scenario, span);
            let fault = match dealt.next() {
                Some(i) => kinds[i],
                None => rng.pick(&kinds),
            };
            faults.push((at, fault));
            at += Duration::from_millis(rng.within(400..1_200));
        }
        Plan {
            seed,
            scenario,
            language,
            duration,
            faults,
        }
    }

    /// The faults a scenario draws from, each lasting `span` where it lasts.
    fn kinds(scenario: Scenario, span: Duration) -> Vec<Fault> {
        use Proc::{Service, Supervisor};
        use Target::{Active, Other};
        match scenario {
            // The workers are library users: no service of their own, and stderr is
            // theirs to keep read. No partition: both sides of one run tasks, as
            // any multicast election would (the README's work queue section).
            Scenario::Queue => vec![
                Fault::Kill(Active, Supervisor),
                Fault::Kill(Other, Supervisor),
                Fault::Pause(Active, Supervisor, span),
                Fault::Loss(25, span),
                Fault::Junk(span),
                Fault::Upgrade,
            ],
            // The same, and what a service does to its channel: dies, or stops
            // reading (paused) while large tasks are handed to it; a standby
            // paused; a stalled log pipe. An upgrade is a SIGTERM in the middle of
            // a submit.
            Scenario::ServiceQueue => vec![
                Fault::Kill(Active, Supervisor),
                Fault::Kill(Active, Service),
                Fault::Kill(Other, Supervisor),
                Fault::Pause(Active, Supervisor, span),
                Fault::Pause(Other, Supervisor, span),
                Fault::Pause(Active, Service, span),
                Fault::Loss(25, span),
                Fault::Junk(span),
                Fault::StallLogs(Active, span),
                Fault::Upgrade,
            ],
            Scenario::Listen => vec![
                Fault::Upgrade,
                Fault::Upgrade,
                Fault::Upgrade,
                Fault::Junk(span),
                Fault::Pause(Other, Supervisor, span),
                Fault::StallLogs(Active, span),
            ],
            _ => {
                let mut kinds = vec![
                    Fault::Kill(Active, Supervisor),
                    Fault::Kill(Active, Service),
                    Fault::Kill(Other, Supervisor),
                    Fault::Pause(Active, Supervisor, span),
                    Fault::Pause(Active, Service, span),
                    Fault::Partition(Active, span),
                    Fault::Partition(Other, span),
                    Fault::Loss(25, span),
                    Fault::Junk(span),
                    Fault::StallLogs(Active, span),
                    Fault::Upgrade,
                ];
                match scenario {
                    Scenario::EtcdFailover => kinds.push(Fault::EtcdCut(Active, span)),
                    Scenario::HandOver => kinds.extend([Fault::Upgrade, Fault::Upgrade]),
                    _ => {}
                }
                kinds
            }
        }
    }
}

/// What a run counted, and what it found.
#[derive(Debug, Default)]
pub struct Report {
    pub faults: usize,
    pub hand_overs: usize,
    pub failovers: usize,
    /// Actives that stepped down for an unhealthy service.
    pub step_downs: usize,
    pub requests: u64,
    pub violations: Vec<String>,
    /// Every event, fault and service line, in time order (µs, line).
    pub timeline: Vec<(u64, String)>,
}

impl Report {
    /// The timeline, for a failure message.
    pub fn timeline_text(&self, t0: u64) -> String {
        self.timeline
            .iter()
            .map(|(t, line)| format!("{:>9.3} {line}", t.saturating_sub(t0) as f64 / 1e6))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The quiet time after a declared fault ends, before the fleet must have settled:
/// a dead interval to notice, a stop timeout to stop a service, and margin.
const SETTLE: Duration = Duration::from_millis(1_500);
/// Tasks of the work-queue scenario, 2 ms each: more than a run takes.
const QUEUE_TASKS: u64 = 4_000;
/// Tasks of the service queue per second of the run (bursts of 40 every 0.5 s,
/// submitted until about 6 s after the faults are over): their payloads average
/// 8 KiB.
const SERVICE_QUEUE_RATE: u64 = 80;
/// The longest a queue may go without running a task once the faults are over,
/// while tasks remain.
const QUEUE_STALL: Duration = Duration::from_secs(5);
const HEARTBEAT: &str = "50ms";
/// systemd's watchdog of the Python service in the multicast failover scenarios.
const WATCHDOG: &str = "500ms";
/// How soon an unhealthy active acts on the verdict (its next log line).
const HEALTH_ACTS_WITHIN_US: u64 = 200_000;
const STOP_TIMEOUT: &str = "500ms";
const PORT: u16 = 8080;

/// One `handover` and what the harness knows of it.
struct Instance {
    label: String,
    slot: usize,
    run: Run,
    behaviour: Behaviour,
    logs: Collector,
    /// Its stderr's reader is stalled until then.
    stalled: Option<Instant>,
    /// The harness SIGKILLed it.
    killed: bool,
    /// The harness sent it SIGTERM.
    asked_to_stop: bool,
    /// Its pause (supervisor or service) ends then.
    paused: Option<(Proc, Instant)>,
    /// The harness SIGKILLed its service.
    service_killed: bool,
    status: Option<ExitStatus>,
    exited_at: u64,
    service_pids: Vec<u32>,
    seen: usize,
}

impl Instance {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.run.pid() as i32).expect("a pid")
    }

    fn events(&self) -> std::slice::Iter<'_, Value> {
        self.run.seen.iter()
    }

    fn saw(&self, name: &str) -> bool {
        self.events().any(|e| e["event"] == name)
    }

    /// Whether its latest word is that it is in charge.
    fn in_charge(&self) -> bool {
        // A queue worker says its role.
        if let Some(role) = self.events().rev().find(|e| e["event"] == "role") {
            return role["state"] == "Active";
        }
        self.events()
            .filter_map(|e| e["event"].as_str())
            .rfind(|e| {
                matches!(
                    *e,
                    "elected" | "demoted" | "shutdown_requested" | "child_exited" | "exit"
                )
            })
            == Some("elected")
    }

    fn service_pid(&self) -> Option<u32> {
        let started = self
            .events()
            .rev()
            .find(|e| e["event"] == "child_started")?;
        let pid = started["pid"].as_u64()? as u32;
        let exited = self
            .events()
            .rposition(|e| e["event"] == "child_exited")
            .unwrap_or(0);
        let started_at = self
            .events()
            .rposition(|e| e["event"] == "child_started")
            .unwrap_or(0);
        (started_at >= exited).then_some(pid)
    }
}

/// A fault in effect until `until`, declared or not.
struct Active {
    fault: Fault,
    until: Instant,
    /// Containers whose rules it set.
    on: Vec<usize>,
}

/// The harness's state during a run.
struct Harness<'a> {
    plan: &'a Plan,
    rng: Rng,
    dir: PathBuf,
    ledger: PathBuf,
    net: Containers,
    /// Failover: one container per slot; hand-over: one per generation.
    containers: Vec<Container>,
    etcd: Option<Cluster>,
    etcd_ip: Option<std::net::Ipv4Addr>,
    instances: Vec<Instance>,
    generation: usize,
    active: Vec<Active>,
    /// Declared windows (µs): overlaps of active services within them (and
    /// [`SETTLE`] after) are not violations.
    windows: Vec<(u64, u64)>,
    timeline: Vec<(u64, String)>,
    violations: Vec<String>,
    faults: usize,
    /// Zombie children seen at the last sample (pid → first seen).
    zombies: BTreeMap<u32, Instant>,
    junk: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    junk_sent: Arc<AtomicU64>,
    restarts: Vec<(usize, Instant)>,
    /// Where an instance's nftables rules are set (its container), by fault.
    rules: BTreeMap<usize, Vec<String>>,
    /// When the faults were over and the fleet had settled (monotonic µs).
    quiet_from: u64,
    /// When the run began (monotonic µs).
    epoch_us: u64,
}

/// Runs `plan`; the returned report has the violations found.
pub fn run(plan: &Plan) -> Report {
    let dir = crate::process::scratch(&format!("chaos-{:x}", plan.seed));
    let ledger = dir.join("ledger");
    std::fs::write(&ledger, "").expect("ledger");
    let net = Containers::new();
    let mut h = Harness {
        plan,
        rng: Rng::new(plan.seed ^ 0xb0b),
        dir,
        ledger,
        net,
        containers: Vec::new(),
        etcd: None,
        etcd_ip: None,
        instances: Vec::new(),
        generation: 0,
        active: Vec::new(),
        windows: Vec::new(),
        timeline: Vec::new(),
        violations: Vec::new(),
        faults: 0,
        zombies: BTreeMap::new(),
        junk: None,
        junk_sent: Arc::new(AtomicU64::new(0)),
        restarts: Vec::new(),
        rules: BTreeMap::new(),
        quiet_from: 0,
        epoch_us: monotonic_us(),
    };
    h.note(format!(
        "plan: seed {:#x}, {:?}, {:?}, {:?}",
        plan.seed, plan.scenario, plan.language, plan.duration
    ));
    let load = h.set_up();
    let began = Instant::now();
    let mut schedule = plan.faults.iter().peekable();
    let mut next_sample = Instant::now();
    while began.elapsed() < plan.duration {
        while let Some((at, fault)) = schedule.next_if(|(at, _)| began.elapsed() >= *at) {
            let _ = at;
            h.inject(*fault);
        }
        h.step();
        if Instant::now() >= next_sample {
            h.sample_zombies();
            next_sample = Instant::now() + Duration::from_millis(250);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let totals = load.map(|load| load.stop());
    h.tear_down();
    h.check(totals.as_ref());
    let failovers = match plan.scenario.failover() {
        true => h.elections().saturating_sub(1),
        false => 0,
    };
    let hand_overs = h
        .instances
        .iter()
        .filter(|i| i.saw("complete_written"))
        .count();
    let step_downs = h
        .instances
        .iter()
        .filter(|i| i.saw("stepping_down"))
        .count();
    let mut timeline = std::mem::take(&mut h.timeline);
    for i in &h.instances {
        // The lines that filled a stalled pipe are not events.
        for e in i.events().filter(|e| e.get("noise").is_none()) {
            let t = e["t_us"].as_u64().unwrap_or(0);
            let mut fields = e.clone();
            if let Some(map) = fields.as_object_mut() {
                map.remove("t_us");
                map.remove("event");
                map.remove("stats");
            }
            let name = e["event"].as_str().unwrap_or("log");
            timeline.push((t, format!("{} {name} {fields}", i.label)));
        }
    }
    for line in std::fs::read_to_string(&h.ledger)
        .unwrap_or_default()
        .lines()
    {
        let mut parts = line.splitn(2, ' ');
        let (Some(t), Some(rest)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !rest.contains(" tick ") {
            timeline.push((t.parse().unwrap_or(0), format!("service {rest}")));
        }
    }
    timeline.sort_by_key(|(t, _)| *t);
    let report = Report {
        faults: h.faults,
        hand_overs,
        failovers,
        step_downs,
        requests: totals.as_ref().map_or(0, |t| t.ok),
        violations: std::mem::take(&mut h.violations),
        timeline,
    };
    let _ = std::fs::remove_dir_all(&h.dir);
    report
}

impl Harness<'_> {
    fn note(&mut self, line: String) {
        self.timeline
            .push((monotonic_us(), format!("harness {line}")));
    }

    /// The topology, etcd and the first instances; the HTTP load for `--listen`.
    fn set_up(&mut self) -> Option<Load> {
        match self.plan.scenario {
            Scenario::Listen => {
                // Host networking: every instance in one namespace.
                self.containers.push(self.net.container());
                self.start(0);
                let run = &mut self.instances[0].run;
                assert!(
                    run.saw("sockets_owned", Duration::from_secs(20)),
                    "generation 0"
                );
                std::thread::sleep(Duration::from_millis(300));
                let url = format!("http://127.0.0.1:{PORT}/");
                Some(Load::start(&self.containers[0].ns, &url, 8))
            }
            Scenario::HandOver => {
                self.containers.push(self.net.container());
                self.start(0);
                None
            }
            scenario => {
                if scenario == Scenario::EtcdFailover {
                    let bin = crate::etcd::etcd_bin().expect("etcd");
                    let host = self.net.container();
                    let cluster = Cluster::start_in(bin, 1, host);
                    self.etcd_ip = Some(cluster.ip());
                    self.etcd = Some(cluster);
                }
                for slot in 0..3 {
                    self.containers.push(self.net.container());
                    self.start(slot);
                }
                None
            }
        }
    }

    /// Starts an instance in `slot`'s container with a behaviour drawn now.
    fn start(&mut self, slot: usize) {
        let plan = self.plan;
        let mut behaviour = Behaviour::draw(&mut self.rng, plan.scenario);
        // The queue's service is the client's: it stops as the client does.
        if plan.scenario == Scenario::ServiceQueue
            || (plan.scenario == Scenario::Listen && self.generation == 0)
        {
            behaviour = Behaviour::normal();
        }
        let label = format!("{}{}", (b'a' + (slot % 26) as u8) as char, self.generation);
        self.generation += 1;
        let ns = &self.containers[slot].ns;
        if plan.scenario == Scenario::Queue {
            let mut cmd = ns.command(crate::process::queue_worker());
            let priority = 100 + self.rng.within(0..100);
            cmd.arg(self.dir.join("runs"))
                .args(["--tasks", &QUEUE_TASKS.to_string(), "--task-us", "2000"])
                .args(["--priority", &priority.to_string(), "--heartbeat-ms", "50"])
                .env("HANDOVER_SCOPE", "chaos");
            if slot == 1 {
                cmd.arg("--blocking");
            }
            self.launch(label, slot, Behaviour::normal(), cmd);
            return;
        }
        let mut cmd = ns.command(handover_bin());
        cmd.args(["--log-format", "json", "run", "--scope", "chaos"]);
        let complete = self.dir.join(format!("complete-{label}"));
        cmd.arg("--complete-file").arg(&complete);
        match plan.scenario {
            Scenario::Listen => {
                let listen = format!("http=tcp:127.0.0.1:{PORT}");
                cmd.args(["--listen", &listen, "--sockets-dir"])
                    .arg(self.dir.join("sockets"))
                    .args(["--ready-timeout", "3s", "--stop-timeout", "5s"]);
            }
            Scenario::HandOver => {
                cmd.args(["--heartbeat", HEARTBEAT, "--stop-timeout", STOP_TIMEOUT])
                    .args(["--ready-timeout", "2s"]);
            }
            scenario => {
                cmd.args(["--mode", "failover", "--stop-timeout", STOP_TIMEOUT])
                    .args(["--ready-timeout", "2s"]);
                if scenario == Scenario::HotFailover {
                    cmd.args(["--standby", "hot"]);
                }
                // The Python service pings systemd's watchdog: a paused service
                // is a hung one, which the active steps down for.
                let multicast = matches!(scenario, Scenario::ColdFailover | Scenario::HotFailover);
                if multicast && plan.language == Language::Python {
                    cmd.args(["--watchdog", WATCHDOG]);
                }
                if scenario == Scenario::ServiceQueue {
                    let window = self.queue_window().to_string();
                    cmd.args(["--standby", "hot", "--queue", "--queue-window", &window]);
                }
                match &self.etcd {
                    Some(cluster) => {
                        cmd.args(["--election", "etcd", "--ttl", "2s"])
                            .args(cluster.client_options());
                    }
                    None => {
                        cmd.args(["--heartbeat", HEARTBEAT]);
                    }
                }
            }
        }
        let ready_file = self.dir.join(format!("ready-{label}"));
        if plan.language == Language::Node && plan.scenario != Scenario::Listen {
            let check = format!("test -f {}", ready_file.display());
            cmd.args(["--ready-cmd", &check]);
        }
        cmd.arg("--");
        match (plan.scenario, plan.language, behaviour.exit) {
            (Scenario::ServiceQueue, _, _) => {
                cmd.arg("python3")
                    .arg(service("chaos_queue.py"))
                    .env("PYTHONPATH", crate::clients::python_source())
                    .env("CHAOS_QUEUE_RUNS", self.dir.join("runs"))
                    .env("CHAOS_QUEUE_TASKS", self.queue_tasks().to_string())
                    .env("CHAOS_QUEUE_EPOCH_US", self.epoch_us.to_string());
            }
            // generation.py's way of dying before it is ready.
            (Scenario::Listen, _, Some((ms, code))) => {
                let script = format!("sleep {}; exit {code}", ms as f64 / 1000.0);
                cmd.args(["sh", "-c", &script]);
            }
            (Scenario::Listen, _, None) => {
                cmd.arg("python3")
                    .arg(service("generation.py"))
                    .arg(self.generation.to_string());
            }
            (_, Language::Python, _) => {
                cmd.arg("python3").arg(service("chaos.py"));
            }
            (_, Language::Node, _) => {
                cmd.arg("node").arg(service("chaos.js"));
            }
        }
        cmd.env("CHAOS_LEDGER", &self.ledger)
            .env("CHAOS_NAME", &label)
            .env("CHAOS_READY_FILE", &ready_file)
            .env(
                "CHAOS_READY_MS",
                behaviour.ready_ms.map_or(-1, |ms| ms as i64).to_string(),
            )
            .env("CHAOS_TERM_CODE", behaviour.term_code.to_string())
            .env(
                "CHAOS_TERM_IGNORE",
                if behaviour.term_ignore { "1" } else { "0" },
            );
        if let Some((ms, code)) = behaviour.exit {
            cmd.env("CHAOS_EXIT_MS", ms.to_string())
                .env("CHAOS_EXIT_CODE", code.to_string());
        }
        self.launch(label, slot, behaviour, cmd);
    }

    fn launch(&mut self, label: String, slot: usize, behaviour: Behaviour, cmd: Command) {
        let (run, logs) = Run::spawn_collected(cmd, false);
        self.note(format!("start {label} in slot {slot}: {behaviour:?}"));
        self.instances.push(Instance {
            label,
            slot,
            run,
            behaviour,
            logs,
            stalled: None,
            killed: false,
            asked_to_stop: false,
            paused: None,
            service_killed: false,
            status: None,
            exited_at: 0,
            service_pids: Vec::new(),
            seen: 0,
        });
    }

    fn running(&self) -> Vec<usize> {
        (0..self.instances.len())
            .filter(|&i| self.instances[i].status.is_none())
            .collect()
    }

    /// The instance a fault aims at, if one qualifies.
    fn resolve(&mut self, target: Target) -> Option<usize> {
        let running = self.running();
        let in_charge: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| self.instances[i].in_charge())
            .collect();
        match target {
            Target::Active => in_charge.last().copied(),
            Target::Other => {
                let others: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|i| !in_charge.contains(i))
                    .collect();
                (!others.is_empty())
                    .then(|| others[(self.rng.next_u64() % others.len() as u64) as usize])
            }
        }
    }

    fn inject(&mut self, fault: Fault) {
        let now = Instant::now();
        let t = monotonic_us();
        let declared = |until: Duration| (t, t + (until + SETTLE).as_micros() as u64);
        match fault {
            Fault::Kill(target, proc) => {
                let Some(i) = self.resolve(target) else {
                    return;
                };
                let label = self.instances[i].label.clone();
                match proc {
                    Proc::Supervisor => {
                        // Its service goes too (parent death signal), not at once.
                        let _ = kill_process(self.instances[i].pid(), Signal::KILL);
                        self.instances[i].killed = true;
                        self.windows.push(declared(Duration::ZERO));
                    }
                    Proc::Service => {
                        let Some(pid) = self.instances[i].service_pid() else {
                            return;
                        };
                        let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL);
                        self.instances[i].service_killed = true;
                    }
                }
                self.note(format!("kill -9 {label}'s {proc:?}"));
            }
            Fault::Pause(target, proc, span) => {
                let Some(i) = self.resolve(target) else {
                    return;
                };
                if self.instances[i].paused.is_some() {
                    return;
                }
                let pid = match proc {
                    Proc::Supervisor => self.instances[i].run.pid(),
                    Proc::Service => match self.instances[i].service_pid() {
                        Some(pid) => pid,
                        None => return,
                    },
                };
                let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::STOP);
                self.instances[i].paused = Some((proc, now + span));
                // A paused supervisor cannot stop its service: declared.
                if proc == Proc::Supervisor {
                    self.windows.push(declared(span));
                }
                let label = self.instances[i].label.clone();
                self.note(format!("SIGSTOP {label}'s {proc:?} for {span:?}"));
            }
            Fault::Partition(target, span) => {
                let Some(i) = self.resolve(target) else {
                    return;
                };
                let slot = self.instances[i].slot;
                let Some(cut) = self.containers[slot].address else {
                    return;
                };
                let mut on = Vec::new();
                for (other, c) in self.containers.iter().enumerate() {
                    if other != slot && c.address.is_some() {
                        on.push(other);
                    }
                }
                let peers: Vec<String> = on
                    .iter()
                    .filter_map(|&o| self.containers[o].address)
                    .map(|a| a.to_string())
                    .collect();
                // Alone on the network: nothing to cut it from.
                if peers.is_empty() {
                    return;
                }
                self.add_rules(slot, &format!("ip saddr {{ {} }} drop", peers.join(", ")));
                for &o in &on {
                    self.add_rules(o, &format!("ip saddr {cut} drop"));
                }
                on.push(slot);
                self.active.push(Active {
                    fault,
                    until: now + span,
                    on,
                });
                self.windows.push(declared(span));
                let label = self.instances[i].label.clone();
                self.note(format!(
                    "partition {label} ({cut}) from the others for {span:?}"
                ));
            }
            Fault::Loss(percent, span) => {
                let on: Vec<usize> = (0..self.containers.len()).collect();
                for &c in &on {
                    self.add_rules(
                        c,
                        &format!("udp dport 1538 numgen random mod 100 < {percent} drop"),
                    );
                }
                self.active.push(Active {
                    fault,
                    until: now + span,
                    on,
                });
                self.windows.push(declared(span));
                self.note(format!("{percent}% loss for {span:?}"));
            }
            Fault::EtcdCut(target, span) => {
                let (Some(i), Some(etcd)) = (self.resolve(target), self.etcd_ip) else {
                    return;
                };
                let slot = self.instances[i].slot;
                self.add_rules(slot, &format!("ip saddr {etcd} drop"));
                self.active.push(Active {
                    fault,
                    until: now + span,
                    on: vec![slot],
                });
                // Not declared: a leader cut off from etcd must stop before
                // another is elected.
                let label = self.instances[i].label.clone();
                self.note(format!("cut {label} off from etcd for {span:?}"));
            }
            Fault::Junk(span) => {
                self.start_junk();
                self.active.push(Active {
                    fault,
                    until: now + span,
                    on: Vec::new(),
                });
                self.note(format!("junk on the group for {span:?}"));
            }
            Fault::StallLogs(target, span) => {
                let Some(i) = self.resolve(target) else {
                    return;
                };
                let inst = &mut self.instances[i];
                inst.logs.stall();
                let filled = fill_pipe(inst.run.pid());
                inst.stalled = Some(now + span);
                let label = inst.label.clone();
                self.note(format!(
                    "{label}'s stderr stalls, full ({filled} bytes) for {span:?}"
                ));
            }
            Fault::Upgrade => self.upgrade(),
        }
        self.faults += 1;
    }

    /// A new instance: a new generation of a hand-over, or a failover instance
    /// replacing the oldest one (stopped with SIGTERM).
    fn upgrade(&mut self) {
        match self.plan.scenario {
            Scenario::HandOver => {
                self.containers.push(self.net.container());
                let slot = self.containers.len() - 1;
                self.note("upgrade: a new generation".into());
                self.start(slot);
            }
            Scenario::Listen => {
                // Host networking: one namespace; one upgrade at a time.
                let starting = self.running().len() > 1;
                if starting {
                    return;
                }
                self.note("upgrade: a new generation".into());
                self.start(0);
            }
            _ => {
                let Some(&oldest) = self.running().first() else {
                    return;
                };
                if self.instances[oldest].paused.is_some() {
                    return;
                }
                let label = self.instances[oldest].label.clone();
                self.note(format!("upgrade: SIGTERM {label}, replaced"));
                let _ = kill_process(self.instances[oldest].pid(), Signal::TERM);
                self.instances[oldest].asked_to_stop = true;
            }
        }
    }

    fn add_rules(&mut self, container: usize, rule: &str) {
        self.rules
            .entry(container)
            .or_default()
            .push(rule.to_owned());
        self.apply_rules(container);
    }

    /// Loads `container`'s rules (its input hook) in one transaction.
    fn apply_rules(&self, container: usize) {
        let rules = self.rules.get(&container).cloned().unwrap_or_default();
        let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
        let ruleset = format!(
            "table inet chaos\ndelete table inet chaos\ntable inet chaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{body}  }}\n}}\n"
        );
        let file = self.dir.join(format!("rules-{container}.nft"));
        std::fs::write(&file, ruleset).expect("rules file");
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                self.containers[container].ns.name(),
                "nft",
                "-f",
            ])
            .arg(&file)
            .status()
            .expect("nft");
        assert!(status.success(), "nft -f {}", file.display());
    }

    fn start_junk(&mut self) {
        if self.junk.is_some() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = self.junk_sent.clone();
        let host = self.net.host();
        let socket = host.enter(|| {
            let via = std::net::Ipv4Addr::new(172, 30, 0, 1);
            let s = std::net::UdpSocket::bind((via, 0)).expect("junk socket");
            socket2::SockRef::from(&s)
                .set_multicast_if_v4(&via)
                .unwrap();
            s
        });
        let mut rng = Rng::new(self.rng.next_u64());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let group =
                std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 192, 16, 16), 1538);
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let datagram = junk_datagram(&mut rng, n);
                let _ = socket.send_to(&datagram, group);
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(4) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        self.junk = Some((stop, thread));
    }

    fn stop_junk(&mut self) {
        if let Some((stop, thread)) = self.junk.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Ends the faults whose time is over, reads what happened, restarts instances
    /// that are gone (the restart policy).
    fn step(&mut self) {
        let now = Instant::now();
        // Faults that end.
        let mut ended = Vec::new();
        self.active.retain(|a| {
            let over = a.until <= now;
            if over {
                ended.push((a.fault, a.on.clone()));
            }
            !over
        });
        for (fault, on) in ended {
            match fault {
                Fault::Junk(_) => {
                    if !self
                        .active
                        .iter()
                        .any(|a| matches!(a.fault, Fault::Junk(_)))
                    {
                        self.stop_junk();
                    }
                }
                _ => {
                    for c in on {
                        // Every rule of this fault: rebuilt from those still active.
                        self.rules.remove(&c);
                    }
                    self.rebuild_rules();
                }
            }
            self.note(format!("end of {fault:?}"));
        }
        for i in 0..self.instances.len() {
            let inst = &mut self.instances[i];
            if let Some((proc, until)) = inst.paused {
                if until <= now {
                    let pid = match proc {
                        Proc::Supervisor => Some(inst.run.pid()),
                        Proc::Service => inst.service_pid(),
                    };
                    if let Some(pid) = pid {
                        let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::CONT);
                    }
                    inst.paused = None;
                    let label = inst.label.clone();
                    self.note(format!("SIGCONT {label}'s {proc:?}"));
                }
            }
            let inst = &mut self.instances[i];
            if inst.stalled.is_some_and(|until| until <= now) {
                inst.stalled = None;
                inst.logs.resume();
                let label = inst.label.clone();
                self.note(format!("{label}'s stderr is read again"));
            }
            let inst = &mut self.instances[i];
            inst.run.drain();
            for e in &inst.run.seen[inst.seen..] {
                if e["event"] == "child_started" {
                    if let Some(pid) = e["pid"].as_u64() {
                        inst.service_pids.push(pid as u32);
                    }
                }
            }
            inst.seen = inst.run.seen.len();
            if inst.status.is_none() {
                if let Some(status) = inst.run.try_status() {
                    inst.status = Some(status);
                    inst.exited_at = monotonic_us();
                    inst.run.drain();
                    let (label, slot) = (inst.label.clone(), inst.slot);
                    self.note(format!("{label} exited: {status:?}"));
                    if self.plan.scenario.failover() {
                        self.restarts.push((slot, now + Duration::from_millis(300)));
                    }
                }
            }
        }
        // Hand-over: the restart policy brings the service back when none runs.
        if matches!(self.plan.scenario, Scenario::HandOver | Scenario::Listen)
            && self.running().is_empty()
            && self.restarts.is_empty()
        {
            self.restarts
                .push((self.containers.len() - 1, now + Duration::from_millis(300)));
        }
        let due: Vec<usize> = self
            .restarts
            .iter()
            .filter(|(_, at)| *at <= now)
            .map(|(slot, _)| *slot)
            .collect();
        self.restarts.retain(|(_, at)| *at > now);
        for slot in due {
            self.start(slot);
        }
    }

    fn rebuild_rules(&mut self) {
        let mut rules: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for c in 0..self.containers.len() {
            rules.insert(c, Vec::new());
        }
        let active: Vec<(Fault, Vec<usize>)> = self
            .active
            .iter()
            .map(|a| (a.fault, a.on.clone()))
            .collect();
        self.rules = BTreeMap::new();
        for (fault, on) in active {
            // Re-derive each active fault's rules.
            match fault {
                Fault::Loss(percent, _) => {
                    for c in on {
                        rules.entry(c).or_default().push(format!(
                            "udp dport 1538 numgen random mod 100 < {percent} drop"
                        ));
                    }
                }
                Fault::EtcdCut(..) => {
                    if let Some(etcd) = self.etcd_ip {
                        for c in on {
                            rules
                                .entry(c)
                                .or_default()
                                .push(format!("ip saddr {etcd} drop"));
                        }
                    }
                }
                Fault::Partition(..) => {
                    // The cut container is the last of `on`.
                    let Some((&cut, others)) = on.split_last() else {
                        continue;
                    };
                    let Some(cut_ip) = self.containers[cut].address else {
                        continue;
                    };
                    let peers: Vec<String> = others
                        .iter()
                        .filter_map(|&o| self.containers[o].address)
                        .map(|a| a.to_string())
                        .collect();
                    if !peers.is_empty() {
                        rules
                            .entry(cut)
                            .or_default()
                            .push(format!("ip saddr {{ {} }} drop", peers.join(", ")));
                    }
                    for &o in others {
                        rules
                            .entry(o)
                            .or_default()
                            .push(format!("ip saddr {cut_ip} drop"));
                    }
                }
                _ => {}
            }
        }
        self.rules = rules;
        for c in 0..self.containers.len() {
            self.apply_rules(c);
        }
    }

    /// Zombie children of a live `handover`: one seen in two samples 250 ms apart
    /// is not being reaped.
    fn sample_zombies(&mut self) {
        let mut now_seen = BTreeMap::new();
        for i in self.running() {
            let pid = self.instances[i].run.pid();
            if self.instances[i]
                .paused
                .is_some_and(|(p, _)| p == Proc::Supervisor)
            {
                continue;
            }
            for (child, state) in children(pid) {
                if state == 'Z' {
                    let first = self
                        .zombies
                        .get(&child)
                        .copied()
                        .unwrap_or_else(Instant::now);
                    let reported = self
                        .violations
                        .iter()
                        .any(|v| v.starts_with(&format!("zombie {child} ")));
                    if first.elapsed() > Duration::from_millis(500) && !reported {
                        let label = self.instances[i].label.clone();
                        self.violations.push(format!(
                            "zombie {child} under {label} for {:?}",
                            first.elapsed()
                        ));
                    }
                    now_seen.insert(child, first);
                }
            }
        }
        self.zombies = now_seen;
    }

    /// Ends every fault, stops every instance with SIGTERM (SIGKILL after 15 s),
    /// and checks that nothing is left.
    fn tear_down(&mut self) {
        self.stop_junk();
        self.active.clear();
        self.rules.clear();
        for c in 0..self.containers.len() {
            self.apply_rules(c);
        }
        for inst in &mut self.instances {
            if let Some((proc, _)) = inst.paused.take() {
                let pid = match proc {
                    Proc::Supervisor => Some(inst.run.pid()),
                    Proc::Service => inst.service_pid(),
                };
                if let Some(pid) = pid {
                    let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::CONT);
                }
            }
            if inst.stalled.take().is_some() {
                inst.logs.resume();
            }
        }
        // A quiet moment, then the end of the run: every instance asked to stop.
        std::thread::sleep(SETTLE);
        self.quiet_from = monotonic_us();
        self.step();
        if self.plan.scenario.queue() {
            // Every task runs once the faults are over.
            let deadline = Instant::now() + Duration::from_secs(60);
            while queue_runs(&self.dir.join("runs")).len() < self.queue_tasks() as usize
                && Instant::now() < deadline
            {
                self.step();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.note("tear down: SIGTERM to every instance".into());
        for i in self.running() {
            let _ = kill_process(self.instances[i].pid(), Signal::TERM);
            self.instances[i].asked_to_stop = true;
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.running().is_empty() && Instant::now() < deadline {
            self.restarts.clear();
            self.step();
            self.restarts.clear();
            std::thread::sleep(Duration::from_millis(20));
        }
        for i in self.running() {
            let label = self.instances[i].label.clone();
            let ignores = self.instances[i].behaviour.term_ignore;
            if !ignores {
                self.violations
                    .push(format!("{label} did not exit within 15 s of SIGTERM"));
            }
            let _ = kill_process(self.instances[i].pid(), Signal::KILL);
            self.instances[i].killed = true;
        }
        for inst in &mut self.instances {
            if inst.status.is_none() {
                inst.status = inst.run.wait(Duration::from_secs(5));
                inst.exited_at = monotonic_us();
            }
            inst.run.drain();
        }
        // Services outlive nothing: each is gone once its `handover` is (a killed
        // one's gets its parent death signal, then the stop timeout).
        std::thread::sleep(Duration::from_millis(1_000));
        for inst in &self.instances {
            for &pid in &inst.service_pids {
                if process_alive(pid) {
                    self.violations.push(format!(
                        "{}'s service {pid} still runs after its handover exited",
                        inst.label
                    ));
                    let _ = kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::KILL);
                }
            }
        }
    }

    /// The invariants, over the whole run.
    fn check(&mut self, totals: Option<&Totals>) {
        if let Some(totals) = totals {
            if totals.failed() > 0 {
                self.violations.push(format!(
                    "{} requests failed: {totals}: {:?}",
                    totals.failed(),
                    totals.failures.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
        if self.plan.scenario.queue() {
            self.check_queue();
            return;
        }
        self.check_exits();
        self.check_hand_overs();
        self.check_one_active();
        self.check_health();
    }

    /// An active whose service was found unhealthy steps down (or says that no
    /// standby could take over) at once, unless it was demoted or ended first:
    /// it never keeps leadership with a hung service.
    fn check_health(&mut self) {
        let mut found = Vec::new();
        for inst in &self.instances {
            // Lines a stalled log pipe could not take are not there to read.
            let dropped = inst
                .events()
                .any(|e| e["log_lines_dropped"].as_u64() > Some(0));
            if dropped || inst.killed {
                continue;
            }
            let mut active = false;
            let mut unhealthy_at: Option<u64> = None;
            for e in inst.events() {
                let t = e["t_us"].as_u64().unwrap_or(0);
                let event = e["event"].as_str().unwrap_or_default();
                let acted = matches!(
                    event,
                    "stepping_down" | "unhealthy_kept" | "demoted" | "exit"
                );
                if let Some(at) = unhealthy_at {
                    if acted {
                        unhealthy_at = None;
                    } else if t.saturating_sub(at) > HEALTH_ACTS_WITHIN_US {
                        found.push(format!(
                            "{}: active and unhealthy from {at} µs, and did not act",
                            inst.label
                        ));
                        unhealthy_at = None;
                    }
                }
                match event {
                    "elected" => active = true,
                    "demoted" => active = false,
                    "health" if active && e["healthy"] == false => unhealthy_at = Some(t),
                    _ => {}
                }
            }
            if let Some(at) = unhealthy_at {
                found.push(format!(
                    "{}: active and unhealthy from {at} µs, and never acted",
                    inst.label
                ));
            }
        }
        self.violations.extend(found);
    }

    /// Tasks its service submits.
    fn queue_tasks(&self) -> u64 {
        match self.plan.scenario {
            Scenario::ServiceQueue => SERVICE_QUEUE_RATE * (self.plan.duration.as_secs() + 6),
            _ => QUEUE_TASKS,
        }
    }

    /// The queue's window: the library's 1, or from the seed (at 8 and 16, a
    /// window of large tasks is more than the channel's backlog).
    fn queue_window(&self) -> usize {
        match self.plan.scenario {
            Scenario::ServiceQueue => [1, 8, 16, 4][(self.plan.seed % 4) as usize],
            _ => 1,
        }
    }

    /// The work queue lost no task, and repeated at most a window's worth per
    /// failover (every election after the first: a worker that becomes active);
    /// once the faults were over it never went `QUEUE_STALL` without running a
    /// task while tasks remained.
    fn check_queue(&mut self) {
        let path = self.dir.join("runs");
        let runs = queue_runs(&path);
        if self.plan.scenario == Scenario::ServiceQueue {
            let mut last = self.quiet_from;
            for t in queue_run_times(&path)
                .into_iter()
                .filter(|&t| t > self.quiet_from)
            {
                if t - last > QUEUE_STALL.as_micros() as u64 {
                    self.violations.push(format!(
                        "the queue ran nothing for {} ms after the faults were over",
                        (t - last) / 1000
                    ));
                }
                last = t;
            }
        }
        let lost: Vec<u64> = (1..=self.queue_tasks())
            .filter(|id| !runs.contains_key(id))
            .collect();
        if !lost.is_empty() {
            self.violations.push(format!(
                "{} tasks never ran: {:?}…",
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        let repeats: usize = runs.values().map(|n| n - 1).sum();
        let failovers = self.elections().saturating_sub(1);
        let window = self.queue_window();
        let times = queue_run_times(&path);
        let longest = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        self.note(format!(
            "queue: window {window}, {} tasks ran, {repeats} again, {failovers} failovers; \
             longest wait between two runs {} ms",
            runs.len(),
            longest / 1000
        ));
        if repeats > failovers * window {
            self.violations.push(format!(
                "{repeats} tasks repeated over {failovers} failovers: more than {window} each"
            ));
        }
    }

    /// Elections in all: `elected` events, or a queue worker becoming active.
    fn elections(&self) -> usize {
        self.instances
            .iter()
            .map(|i| {
                let mut was_active = false;
                let mut n = 0;
                for e in i.events() {
                    let active = match e["event"].as_str() {
                        Some("elected") => true,
                        Some("role") => e["state"] == "Active",
                        _ => continue,
                    };
                    if active && (!was_active || e["event"] == "elected") {
                        n += 1;
                    }
                    was_active = active;
                }
                n
            })
            .sum()
    }

    fn check_exits(&mut self) {
        let scenario = self.plan.scenario;
        let mut found = Vec::new();
        for inst in &self.instances {
            let Some(status) = inst.status else { continue };
            if inst.killed {
                continue;
            }
            if inst.saw("driver_failed") {
                found.push(format!("{}: the protocol driver failed", inst.label));
                continue;
            }
            let expected = expected_exit(inst, scenario);
            let code = status.code();
            if let Some(expected) = expected {
                if code != Some(expected) {
                    found.push(format!(
                        "{} exited {status:?}, the policy says {expected} ({:?})",
                        inst.label, inst.behaviour
                    ));
                }
            }
        }
        self.violations.extend(found);
    }

    fn check_hand_overs(&mut self) {
        let mut found = Vec::new();
        for inst in &self.instances {
            if !inst.saw("shutdown_requested") || inst.killed {
                continue;
            }
            let file = self.dir.join(format!("complete-{}", inst.label));
            if !inst.saw("complete_written") || !file.is_file() {
                found.push(format!(
                    "{}: hand-over without its complete file",
                    inst.label
                ));
            }
        }
        self.violations.extend(found);
    }

    /// Two services of the scope working as the active one at once, outside the
    /// declared windows.
    fn check_one_active(&mut self) {
        // Hand-over: the old instance yields in the protocol before the new one
        // is elected, and says so in its log a moment later: that moment is not an
        // overlap.
        let (intervals, stamp_latency) = match self.plan.scenario {
            Scenario::HandOver | Scenario::Listen => (self.active_by_events(), 20_000),
            _ => (active_by_ledger(&self.ledger), 0),
        };
        let windows = self.windows.clone();
        let declared = |from: u64, to: u64| windows.iter().any(|&(w0, w1)| from >= w0 && to <= w1);
        let mut found = Vec::new();
        for (i, a) in intervals.iter().enumerate() {
            for b in &intervals[i + 1..] {
                if a.0 == b.0 {
                    continue;
                }
                let (from, to) = (a.1.max(b.1), a.2.min(b.2));
                if to > from + stamp_latency && !declared(from, to) {
                    found.push(format!(
                        "{} and {} both active for {:.1} ms (from {from} µs)",
                        a.0,
                        b.0,
                        (to - from) as f64 / 1000.0
                    ));
                }
            }
        }
        self.violations.extend(found);
    }

    /// Hand-over: each instance is in charge from `elected` until it yields,
    /// exits or is killed.
    fn active_by_events(&self) -> Vec<(String, u64, u64)> {
        let mut intervals = Vec::new();
        for inst in &self.instances {
            let mut from = None;
            for e in inst.events() {
                let t = e["t_us"].as_u64().unwrap_or(0);
                match e["event"].as_str() {
                    Some("elected") => from = from.or(Some(t)),
                    Some("shutdown_requested" | "demoted" | "child_exited" | "exit") => {
                        if let Some(f) = from.take() {
                            intervals.push((inst.label.clone(), f, t));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(f) = from {
                intervals.push((inst.label.clone(), f, inst.exited_at.max(f)));
            }
        }
        intervals
    }
}

/// What the exit status policy says `inst` must exit with (`None`: nothing to
/// check).
fn expected_exit(inst: &Instance, scenario: Scenario) -> Option<i32> {
    let failover = scenario.failover();
    let events: Vec<&Value> = inst.events().collect();
    let has = |name: &str| events.iter().any(|e| e["event"] == name);
    if has("shutdown_requested") {
        return Some(0);
    }
    if has("ready_timeout") || has("stepping_down") {
        return Some(1);
    }
    if has("child_not_started") {
        return None;
    }
    // The service's last life: what happened between its start and its end.
    let started = events.iter().rposition(|e| e["event"] == "child_started");
    let ended = events.iter().rposition(|e| e["event"] == "child_exited");
    let (Some(started), Some(ended)) = (started, ended) else {
        // Never ran a service (a standby), or it still ran when asked to stop
        // and `handover` did not say how it ended: a clean stop.
        return Some(0);
    };
    if ended < started {
        // Stopped on demotion, then a standby again, then asked to stop.
        return Some(0);
    }
    let life = &events[started..=ended];
    let status = match (
        events[ended]["code"].as_i64(),
        events[ended]["signal"].as_i64(),
    ) {
        (Some(code), _) => code as i32,
        (None, Some(sig)) => 128 + sig as i32,
        _ => 1,
    };
    // A cold standby's service is stopped when it is no longer in charge, and
    // `handover` goes on: its own end (asked to stop, as a standby) is clean.
    let cold = failover && scenario != Scenario::HotFailover;
    let demoted = life.iter().position(|e| e["event"] == "demoted");
    let stopped_for_it =
        demoted.is_some_and(|d| life[d..].iter().any(|e| e["event"] == "child_signalled"));
    if cold && stopped_for_it {
        return Some(0);
    }
    let asked = life
        .iter()
        .any(|e| e["event"] == "child_signalled" && e["signal"] == 15);
    if inst.asked_to_stop && asked {
        // The stop signal, or 128 + it as a JVM exits: a clean stop.
        return Some(if status == 143 { 0 } else { status });
    }
    Some(if failover { status.max(1) } else { status })
}

/// The service intervals of the ledger: ticks as the active one of each service
/// process, merged when less than 100 ms apart (a tick every 20 ms).
fn active_by_ledger(ledger: &Path) -> Vec<(String, u64, u64)> {
    let text = std::fs::read_to_string(ledger).unwrap_or_default();
    let mut ticks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [t, name, pid, "tick", "active"] = parts[..] {
            if let Ok(t) = t.parse() {
                ticks.entry(format!("{name}/{pid}")).or_default().push(t);
            }
        }
    }
    let mut intervals = Vec::new();
    for (who, mut ts) in ticks {
        ts.sort_unstable();
        let mut start = ts[0];
        let mut last = ts[0];
        for &t in &ts[1..] {
            if t - last > 100_000 {
                intervals.push((who.clone(), start, last));
                start = t;
            }
            last = t;
        }
        intervals.push((who, start, last));
    }
    intervals
}

/// How often each task of the work queue ran (its run log: `ID PID` lines).
/// When each task of a queue's ledger ran (monotonic µs, the third field), in
/// order.
fn queue_run_times(log: &Path) -> Vec<u64> {
    let mut times: Vec<u64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect();
    times.sort_unstable();
    times
}

fn queue_runs(log: &Path) -> BTreeMap<u64, usize> {
    let mut runs = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if let Some(id) = line
            .split_whitespace()
            .next()
            .and_then(|id| id.parse().ok())
        {
            *runs.entry(id).or_default() += 1;
        }
    }
    runs
}

/// A datagram of the flood: random bytes, a foreign scope's heartbeat, or ours
/// cut short.
fn junk_datagram(rng: &mut Rng, n: u64) -> Vec<u8> {
    use handover_proto::wire;
    match n % 3 {
        0 => (0..rng.within(1..300))
            .map(|_| rng.next_u64() as u8)
            .collect(),
        1 => {
            let repr = crate::forged_claim(wire::scope_id(b"someone-else"), 0x7700 + n % 50, n + 1);
            let mut buf = [0u8; wire::MAX_DATAGRAM];
            let len = repr.emit(&mut buf).expect("a foreign claim");
            buf[..len].to_vec()
        }
        _ => {
            let repr = crate::forged_claim(wire::scope_id(b"chaos"), 0x7800 + n % 50, n + 1);
            let mut buf = [0u8; wire::MAX_DATAGRAM];
            let len = repr.emit(&mut buf).expect("a claim");
            let cut = rng.within(1..len as u64) as usize;
            buf[..cut].to_vec()
        }
    }
}

/// Fills process `pid`'s stderr pipe (opened through /proc, as the process's
/// own service would write to it) until a write would block: the bytes written.
fn fill_pipe(pid: u32) -> usize {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut pipe) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc_nonblock())
        .open(format!("/proc/{pid}/fd/2"))
    else {
        return 0;
    };
    // Whole lines, as a service's logs are (JSON, which the harness skips).
    let mut chunk = br#"{"noise":""#.to_vec();
    // 4,096 bytes in all: a write that small is atomic (whole or not at all).
    chunk.resize(4093, b'x');
    chunk.extend_from_slice(b"\"}\n");
    let mut written = 0;
    while let Ok(n) = pipe.write(&chunk) {
        written += n;
        if n == 0 {
            break;
        }
    }
    written
}

/// `O_NONBLOCK`.
fn libc_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// Whether process `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
