//! `handover demo`: two instances of one service on loopback, an old one in charge and
//! a new one taking over, printed step by step with timings; then more rounds for a
//! latency summary.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use handover_std::{Config, Event, Handover, NetworkMode, State};

use crate::log::hex;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Interface both instances use
    #[arg(long, default_value = "lo")]
    interface: String,

    /// UDP port [default: a free port]
    #[arg(long)]
    port: Option<u16>,

    /// How long the old instance takes to stop its work
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    stop_time: Duration,

    /// Further hand-overs for the latency summary
    #[arg(long, default_value_t = 20)]
    rounds: u32,
}

const LIMIT: Duration = Duration::from_secs(5);

struct Clock(Instant);

impl Clock {
    fn say(&self, who: &str, what: impl std::fmt::Display) {
        let ms = self.0.elapsed().as_secs_f64() * 1e3;
        println!("  [{ms:8.1} ms]  {who:<3}  {what}");
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(LIMIT, f)
        .await
        .map_err(|_| format!("demo: {what} did not happen within {LIMIT:?}"))
}

/// One hand-over from `old` to a fresh instance; returns the new instance and the
/// latency from its readiness to the old one's shutdown request.
async fn hand_over(
    old: Handover,
    config: &Config,
    stop_time: Duration,
    clock: Option<&Clock>,
) -> Result<(Handover, Duration), Box<dyn std::error::Error>> {
    let say = |who: &str, what: String| {
        if let Some(c) = clock {
            c.say(who, what)
        }
    };
    let new = Handover::start_multicast(config.clone()).await?;
    let mut new_events = new.subscribe();
    let new_id = hex(new.status().id);
    say("new", format!("{new_id} started, listening"));
    let ready_at = Instant::now();
    new.ready().await?;
    say("new", "ready: claim sent to the group".into());
    within("the shutdown request", old.shutdown_requested()).await??;
    let latency = ready_at.elapsed();
    say(
        "old",
        format!(
            "shutdown requested by {new_id} ({:.2} ms after the claim)",
            latency.as_secs_f64() * 1e3
        ),
    );
    say("old", format!("stopping its work ({stop_time:?})"));
    tokio::time::sleep(stop_time).await;
    let mut old_events = old.subscribe();
    old.shutdown_complete().await?;
    while let Ok(e) = old_events.try_recv() {
        if let Event::CompleteWritten(path) = e {
            say("old", format!("complete file written: {}", path.display()));
        }
    }
    say("old", "goodbye acknowledged; exits".into());
    within("the predecessor-done event", async {
        while let Ok(e) = new_events.recv().await {
            if let Event::Protocol(handover_proto::Event::PredecessorDone { .. }) = e {
                break;
            }
        }
    })
    .await?;
    say("new", "its predecessor is done".into());
    within(
        "the new instance taking charge",
        new.wait_for(|s| s.state == State::Active),
    )
    .await??;
    say(
        "new",
        "active (its claim window closed), alone in charge".into(),
    );
    Ok((new, latency))
}

pub async fn demo(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("handover-demo-{}", std::process::id()));
    let port = match args.port {
        Some(p) => p,
        None => free_port()?,
    };
    let config = Config {
        scope: format!("demo-{}", std::process::id()),
        port,
        network: NetworkMode::Host {
            interface: args.interface.clone(),
        },
        heartbeat: Duration::from_millis(100),
        name: "demo".into(),
        complete_files: vec![dir.join("handover-complete")],
        ..Config::default()
    };
    println!(
        "Two instances of one service on {} (group {}:{}):\n",
        args.interface, config.group, config.port
    );
    let clock = Clock(Instant::now());
    let old = Handover::start_multicast(config.clone()).await?;
    clock.say(
        "old",
        format!("{} started, listening", hex(old.status().id)),
    );
    old.ready().await?;
    within(
        "the first instance taking charge",
        old.wait_for(|s| s.state == State::Active),
    )
    .await??;
    clock.say("old", "ready: no one else in charge, active");
    let (mut current, first) = hand_over(old, &config, args.stop_time, Some(&clock)).await?;

    let mut latencies = vec![first];
    for _ in 0..args.rounds {
        let _ = std::fs::remove_file(dir.join("handover-complete"));
        let (next, latency) = hand_over(current, &config, Duration::ZERO, None).await?;
        latencies.push(latency);
        current = next;
    }
    current.leave().await?;
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\n{} hand-overs, claim to shutdown request: median {:.2} ms, max {:.2} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
    );
    println!("(handover-lib sends one datagram when ready and repeats it every 10 s: each lost one costs 10 s)");
    Ok(ExitCode::SUCCESS)
}
