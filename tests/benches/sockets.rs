//! Zero-downtime listening sockets (`handover run --listen`) under the load of 8
//! HTTP clients, one connection per request, against the Python test service:
//!
//! - request latency in steady state and through upgrades (host networking: every
//!   instance in one namespace), and the requests that failed;
//! - time from the new service's readiness to the old one being asked to stop;
//! - the latency forwarding adds in bridge networking (old container forwarding
//!   to the new one, against the new one directly; services answering at once).
//!
//! `cargo bench -p handover-tests --bench sockets` (root; `HANDOVER_UPGRADES`,
//! default 100; `HANDOVER_BENCH_SECONDS` of steady load, default 10).

use std::time::Duration;

use handover_tests::load::{python_generation, Load, Totals};
use handover_tests::measure::{report, setting, skip_bench, t_us};
use handover_tests::process::{scratch, Run};
use handover_tests::topology::Containers;

const CLIENTS: usize = 8;

fn latencies(totals: &Totals) -> Vec<u64> {
    totals.latencies.iter().map(|&(_, us)| us).collect()
}

fn p99_ms(mut samples: Vec<u64>) -> f64 {
    samples.sort_unstable();
    handover_tests::measure::pct(&samples, 0.99)
}

fn terminate(run: &mut Run) {
    let pid = rustix::process::Pid::from_raw(run.pid() as i32).expect("pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = run.wait(Duration::from_secs(30));
}

fn upgrades() {
    let net = Containers::new();
    let host = net.container();
    let dir = scratch("bench-sockets");
    let count = setting("HANDOVER_UPGRADES", 100) as u32;
    let seconds = setting("HANDOVER_BENCH_SECONDS", 10);
    let listen = "tcp:127.0.0.1:8080";
    let url = "http://127.0.0.1:8080/";
    let start = |generation| python_generation(&host.ns, "bench", listen, &dir, generation);

    let mut current = start(0);
    t_us(&mut current, "sockets_owned");
    let load = Load::start(&host.ns, url, CLIENTS);
    std::thread::sleep(Duration::from_secs(seconds));
    let steady = load.stop();

    let load = Load::start(&host.ns, url, CLIENTS);
    let mut asked_to_stop = Vec::new();
    for generation in 1..=count {
        let mut new = start(generation);
        let ready = t_us(&mut new, "ready");
        let asked = t_us(&mut current, "shutdown_requested");
        asked_to_stop.push(asked.saturating_sub(ready));
        t_us(&mut new, "sockets_owned");
        let _ = current.wait(Duration::from_secs(30));
        current = new;
    }
    let during = load.stop();
    terminate(&mut current);
    let _ = std::fs::remove_dir_all(&dir);

    println!("steady state, {seconds} s: {steady}");
    report("request latency, steady state", latencies(&steady));
    println!("{count} upgrades: {during}");
    report("request latency, through upgrades", latencies(&during));
    println!(
        "p99 through upgrades / steady state: {:.2}",
        p99_ms(latencies(&during)) / p99_ms(latencies(&steady))
    );
    report("new service ready -> old one asked to stop", asked_to_stop);
}

fn forwarding() {
    let net = Containers::new();
    let (old_host, new_host, client) = (net.container(), net.container(), net.container());
    let dir = scratch("bench-forwarding");
    let seconds = setting("HANDOVER_BENCH_SECONDS", 10);
    // Answers at once: the difference is the forwarding.
    let start = |ns, generation| {
        let mut run = python_generation(ns, "forwarding", "tcp:0.0.0.0:8080", &dir, generation);
        t_us(&mut run, "sockets_owned");
        run
    };
    std::env::set_var("SERVICE_DELAY_MS", "0");
    let mut old = start(&old_host.ns, 0);
    let mut new = start(&new_host.ns, 1);
    t_us(&mut old, "forwarding");
    let sequential = |address: std::net::Ipv4Addr| {
        let load = Load::start(&client.ns, &format!("http://{address}:8080/"), 1);
        std::thread::sleep(Duration::from_secs(seconds));
        load.stop()
    };
    let forwarded = sequential(old_host.address.unwrap());
    let direct = sequential(new_host.address.unwrap());
    terminate(&mut old);
    terminate(&mut new);
    let _ = std::fs::remove_dir_all(&dir);

    println!("through the old container: {forwarded}");
    report(
        "request latency, forwarded by the old container",
        latencies(&forwarded),
    );
    println!("to the new container: {direct}");
    report(
        "request latency, to the new container directly",
        latencies(&direct),
    );
}

fn main() {
    if skip_bench() {
        return;
    }
    upgrades();
    forwarding();
}
