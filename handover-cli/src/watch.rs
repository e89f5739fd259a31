//! `handover watch`: the peers on a group, live.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use handover_std::observe::{Sighting, Watcher};
use serde_json::json;

use crate::log::hex;
use crate::options::Network;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    network: Network,

    /// Show every scope on the group, not only `--scope`'s
    #[arg(long)]
    all_scopes: bool,

    /// One JSON object per line for each change instead of a table
    #[arg(long)]
    json: bool,
}

/// A peer is forgotten after this many of its heartbeats without news.
const FORGET_AFTER_HEARTBEATS: u32 = 4;

pub async fn watch(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = args.network.config()?;
    let scope = (!args.all_scopes).then(|| handover_proto::wire::scope_id(config.scope.as_bytes()));
    let mut watcher = Watcher::open(&config)?;
    let mut peers: BTreeMap<u64, Sighting> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let tty = std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            s = watcher.next() => {
                let s = s?;
                if scope.is_some() && s.scope.is_some() && s.scope != scope {
                    continue;
                }
                // A copy heard on another interface changes nothing.
                let changed = match peers.get(&s.id) {
                    Some(old) => old.role != s.role || s.goodbye,
                    None => !s.goodbye,
                };
                if args.json && changed {
                    println!("{}", sighting_json(&s));
                }
                if s.goodbye {
                    peers.remove(&s.id);
                } else {
                    peers.insert(s.id, s);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                peers.retain(|_, p| {
                    let alive = now.duration_since(p.at) < p.heartbeat * FORGET_AFTER_HEARTBEATS;
                    if !alive && args.json {
                        println!("{}", json!({ "event": "gone", "id": hex(p.id) }));
                    }
                    alive
                });
                if !args.json {
                    print_table(&peers, watcher.malformed, tty);
                }
            }
        }
    }
}

pub fn role(s: &Sighting) -> String {
    match (s.legacy, s.role) {
        (true, _) => "legacy".into(),
        (false, Some(r)) => format!("{r:?}").to_lowercase(),
        (false, None) => "?".into(),
    }
}

pub fn sighting_json(s: &Sighting) -> serde_json::Value {
    json!({
        "event": if s.goodbye { "goodbye" } else { "peer" },
        "id": hex(s.id),
        "scope": s.scope.map(|x| format!("{x:08x}")),
        "role": role(s),
        "priority": s.priority,
        "start_ms": s.start_ms,
        "name": s.name,
        "addresses": s.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "from": s.from.to_string(),
    })
}

fn print_table(peers: &BTreeMap<u64, Sighting>, malformed: u64, tty: bool) {
    let mut out = std::io::stdout().lock();
    if tty {
        // Clear the screen and go home: a live view.
        let _ = write!(out, "\x1b[2J\x1b[H");
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<8}  {:<9}  {:>4}  {:<16}  {:<24}  {:>10}",
        "ID", "SCOPE", "ROLE", "PRIO", "NAME", "ADDRESSES", "LAST HEARD"
    );
    let now = Instant::now();
    for p in peers.values() {
        let addresses: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            out,
            "{:<16}  {:<8}  {:<9}  {:>4}  {:<16}  {:<24}  {:>8}ms",
            hex(p.id),
            p.scope
                .map(|x| format!("{x:08x}"))
                .unwrap_or_else(|| "v1".into()),
            role(p),
            p.priority.map(|x| x.to_string()).unwrap_or_default(),
            p.name,
            addresses.join(","),
            now.duration_since(p.at).as_millis(),
        );
    }
    if malformed > 0 {
        let _ = writeln!(out, "({malformed} malformed datagrams ignored)");
    }
    let _ = writeln!(out);
}
