//! The fault-injection harness ([`handover_tests::chaos`]) on a fixed set of seeds,
//! one run per scenario: failover with a cold and a hot standby on multicast, cold
//! standby on etcd, hand-over generations, `--listen` upgrades under HTTP load,
//! the work queue across failovers, in the library and for any language (the
//! Python service of the multicast failover scenarios pings `--watchdog`, so that
//! its pauses are hung services). Each run injects its seed's faults and checks the invariants throughout; a
//! failure prints the seed, the timeline and the command that replays it.
//!
//! Needs root (namespaces, nftables), python3, node and the etcd binary; skips with
//! the reason otherwise, and fails under `CI=true`.
//!
//! The long run (many seeds, recorded in BENCHMARKS.md):
//! `HANDOVER_CHAOS_RUNS=200 cargo test --release -p handover-tests --test
//! fault_injection long_run -- --ignored --nocapture`.

use std::time::Duration;

use handover_tests::chaos::{self, Plan, Report, Scenario};
use handover_tests::skip::not_installed;
use handover_tests::{require, require_netns};

/// Seconds each CI run lasts.
const SECONDS: u64 = 14;

fn requirements(scenario: Scenario) -> Option<String> {
    if let Some(missing) = handover_tests::netns::unavailable() {
        return Some(missing);
    }
    for program in ["python3", "node", "nft"] {
        if let Some(missing) = not_installed(program) {
            return Some(missing);
        }
    }
    match scenario {
        Scenario::EtcdFailover => handover_tests::etcd::etcd_bin().err(),
        _ => None,
    }
}

fn replay_command(plan: &Plan) -> String {
    format!(
        "HANDOVER_CHAOS_SEED={:#x} HANDOVER_CHAOS_SCENARIO={:?} HANDOVER_CHAOS_SECONDS={} \
         cargo test -p handover-tests --test fault_injection replay -- --ignored --nocapture",
        plan.seed,
        plan.scenario,
        plan.duration.as_secs()
    )
}

/// Runs `plan`; a violation fails with the seed, the timeline and how to replay.
fn run(plan: &Plan) -> Report {
    let t0 = handover_tests::process::monotonic_us();
    let report = chaos::run(plan);
    println!(
        "{:?} seed {:#x}: {} faults, {} hand-overs, {} failovers ({} for an unhealthy service), \
         {} requests, {} violations",
        plan.scenario,
        plan.seed,
        report.faults,
        report.hand_overs,
        report.failovers,
        report.step_downs,
        report.requests,
        report.violations.len()
    );
    if std::env::var_os("HANDOVER_CHAOS_TRACE").is_some() {
        println!("{}", report.timeline_text(t0));
    }
    assert!(
        report.violations.is_empty(),
        "{:?} seed {:#x}: {:#?}\n\ntimeline:\n{}\n\nreplay: {}",
        plan.scenario,
        plan.seed,
        report.violations,
        report.timeline_text(t0),
        replay_command(plan)
    );
    report
}

/// One run at a time: two fleets under faults on two cores would starve each
/// other's heartbeats, and a failover that no fault caused would count against
/// the protocol.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn scenario(scenario: Scenario, seed: u64) -> Report {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let plan = Plan::new(seed, scenario, Duration::from_secs(SECONDS));
    let report = run(&plan);
    assert!(report.faults > 0, "seed {seed:#x} injected no fault");
    report
}

#[test]
fn cold_standby_on_multicast() {
    require_netns!();
    require!(requirements(Scenario::ColdFailover));
    let report = scenario(Scenario::ColdFailover, 0xc01d);
    assert!(report.failovers > 0, "no failover happened");
}

#[test]
fn hot_standby_on_multicast() {
    require_netns!();
    require!(requirements(Scenario::HotFailover));
    let report = scenario(Scenario::HotFailover, 0x4075);
    assert!(report.failovers > 0, "no failover happened");
}

#[test]
fn cold_standby_on_etcd() {
    require_netns!();
    require!(requirements(Scenario::EtcdFailover));
    let report = scenario(Scenario::EtcdFailover, 0xe7cd);
    assert!(report.failovers > 0, "no failover happened");
}

#[test]
fn hand_over_generations() {
    require_netns!();
    require!(requirements(Scenario::HandOver));
    let report = scenario(Scenario::HandOver, 0x4a4d);
    assert!(report.hand_overs > 0, "no hand-over happened");
}

#[test]
fn listen_upgrades_under_load() {
    require_netns!();
    require!(requirements(Scenario::Listen));
    let report = scenario(Scenario::Listen, 0x5ec7);
    assert!(report.hand_overs > 0, "no upgrade happened");
    assert!(report.requests > 0, "no request was served");
}

#[test]
fn work_queue_across_failovers() {
    require_netns!();
    require!(requirements(Scenario::Queue));
    let report = scenario(Scenario::Queue, 0x9e3e);
    assert!(report.failovers > 0, "no failover happened");
}

#[test]
fn the_queue_for_any_language_across_failovers() {
    require_netns!();
    require!(requirements(Scenario::ServiceQueue));
    let report = scenario(Scenario::ServiceQueue, 0x5e09);
    assert!(report.failovers > 0, "no failover happened");
}

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Replays one seed: `HANDOVER_CHAOS_SEED`, `HANDOVER_CHAOS_SCENARIO`,
/// `HANDOVER_CHAOS_SECONDS`.
#[test]
#[ignore]
fn replay() {
    let seed = setting("HANDOVER_CHAOS_SEED").expect("HANDOVER_CHAOS_SEED");
    let seed = match seed.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).expect("a hex seed"),
        None => seed.parse().expect("a seed"),
    };
    let name = setting("HANDOVER_CHAOS_SCENARIO").expect("HANDOVER_CHAOS_SCENARIO");
    let scenario = Scenario::parse(&name).expect("a scenario");
    let seconds = setting("HANDOVER_CHAOS_SECONDS").map_or(SECONDS, |s| s.parse().unwrap());
    let plan = Plan::new(seed, scenario, Duration::from_secs(seconds));
    println!("{plan:#?}");
    run(&plan);
}

/// Many seeds, every scenario in turn (or only `HANDOVER_CHAOS_SCENARIO`):
/// `HANDOVER_CHAOS_RUNS` runs (default 50) of `HANDOVER_CHAOS_SECONDS` each
/// (default 20), from `HANDOVER_CHAOS_FIRST_SEED`.
/// Prints the totals; stops at the first violation, with its replay command.
#[test]
#[ignore]
fn long_run() {
    let runs: u64 = setting("HANDOVER_CHAOS_RUNS").map_or(50, |s| s.parse().unwrap());
    let seconds = setting("HANDOVER_CHAOS_SECONDS").map_or(20, |s| s.parse().unwrap());
    let first: u64 = setting("HANDOVER_CHAOS_FIRST_SEED").map_or(1, |s| s.parse().unwrap());
    let only = setting("HANDOVER_CHAOS_SCENARIO").map(|s| Scenario::parse(&s).expect("a scenario"));
    let (mut faults, mut hand_overs, mut failovers, mut requests) = (0, 0, 0, 0);
    let started = std::time::Instant::now();
    for n in 0..runs {
        let seed = first + n;
        let scenario = match &only {
            Some(scenario) => *scenario,
            None => Scenario::ALL[(seed % Scenario::ALL.len() as u64) as usize],
        };
        let plan = Plan::new(seed, scenario, Duration::from_secs(seconds));
        let report = run(&plan);
        faults += report.faults;
        hand_overs += report.hand_overs;
        failovers += report.failovers;
        requests += report.requests;
    }
    println!(
        "long run: {runs} runs of {seconds} s in {:.0?}: {faults} faults injected, \
         {hand_overs} hand-overs, {failovers} failovers, {requests} requests, 0 violations",
        started.elapsed()
    );
}
