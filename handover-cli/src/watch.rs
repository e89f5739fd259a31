//! `handover watch`: the peers on a group, live.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use handover_std::observe::{Sighting, Watcher};
use serde_json::json;

use crate::log::hex;
use crate::options::{ElectionArgs, Keys, Network};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    network: Network,

    /// With the group's key files: show which peers are authentic
    #[command(flatten)]
    keys: Keys,

    /// Show every scope on the group, not only `--scope`'s
    #[arg(long)]
    all_scopes: bool,

    /// One JSON object per line for each change instead of a table
    #[arg(long)]
    json: bool,

    /// With --election etcd: the election's leader and candidates instead
    #[command(flatten)]
    pub(crate) election: ElectionArgs,
}

/// A peer is forgotten after this many of its heartbeats without news.
const FORGET_AFTER_HEARTBEATS: u32 = 4;

pub async fn watch(
    args: Args,
    backends: crate::Backends,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut config = args.network.config()?;
    if let Some(etcd) = args.election.etcd(&config.scope)? {
        return backends.watch_etcd(etcd, args.json).await;
    }
    args.keys.apply(&mut config)?;
    let scope = (!args.all_scopes).then(|| handover_proto::wire::scope_id(config.scope.as_bytes()));
    let mut names = ScopeNames::new(&config.scope, std::env::var("BALENA_DEVICE_UUID").ok());
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
                names.learn(&s);
                // A copy heard on another interface changes nothing.
                let changed = match peers.get(&s.id) {
                    Some(old) => old.role != s.role || s.goodbye,
                    None => !s.goodbye,
                };
                if args.json && changed {
                    println!("{}", sighting_json(&s, &names));
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
                    print_table(&peers, &names, watcher.malformed, tty);
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

/// Names for scope ids. A scope id is a hash of the scope's name, so a name can be
/// recognised, never recovered: the candidates are the watcher's own scope and,
/// for each peer, its service name alone (systemd users' `--scope my-service`) and
/// after this device's UUID (balena's default, `$BALENA_DEVICE_UUID/service`).
pub struct ScopeNames {
    names: HashMap<u32, String>,
    device: Option<String>,
}

impl ScopeNames {
    pub fn new(own: &str, device: Option<String>) -> Self {
        let mut names = ScopeNames {
            names: HashMap::new(),
            device,
        };
        names.add(own.to_owned());
        names
    }

    fn add(&mut self, name: String) {
        let id = handover_proto::wire::scope_id(name.as_bytes());
        self.names.entry(id).or_insert(name);
    }

    /// Adds the candidates a peer's service name suggests.
    pub fn learn(&mut self, s: &Sighting) {
        if s.name.is_empty() {
            return;
        }
        if let Some(device) = &self.device {
            self.add(format!("{device}/{}", s.name));
        }
        self.add(s.name.clone());
    }

    /// The scope's name if it is known, else its id in hex; `v1` for handover-lib's
    /// format, which has no scope.
    pub fn show(&self, scope: Option<u32>) -> String {
        match scope {
            None => "v1".into(),
            Some(id) => self
                .names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("{id:08x}")),
        }
    }
}

/// "yes", "NO" or "" (no key given, or handover-lib's format).
fn authentic(s: &Sighting) -> &'static str {
    match s.authentic {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    }
}

pub fn sighting_json(s: &Sighting, names: &ScopeNames) -> serde_json::Value {
    json!({
        "event": if s.goodbye { "goodbye" } else { "peer" },
        "id": hex(s.id),
        "scope": s.scope.map(|x| format!("{x:08x}")),
        "scope_name": s.scope.and_then(|id| names.names.get(&id)),
        "authentic": s.authentic,
        "role": role(s),
        "priority": s.priority,
        "start_ms": s.start_ms,
        "name": s.name,
        "addresses": s.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "from": s.from.to_string(),
    })
}

fn print_table(peers: &BTreeMap<u64, Sighting>, names: &ScopeNames, malformed: u64, tty: bool) {
    let mut out = std::io::stdout().lock();
    if tty {
        // Clear the screen and go home: a live view.
        let _ = write!(out, "\x1b[2J\x1b[H");
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<24}  {:<9}  {:>4}  {:<16}  {:<24}  {:<4}  {:>10}",
        "ID", "SCOPE", "ROLE", "PRIO", "NAME", "ADDRESSES", "AUTH", "LAST HEARD"
    );
    let now = Instant::now();
    for p in peers.values() {
        let addresses: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            out,
            "{:<16}  {:<24}  {:<9}  {:>4}  {:<16}  {:<24}  {:<4}  {:>8}ms",
            hex(p.id),
            names.show(p.scope),
            role(p),
            p.priority.map(|x| x.to_string()).unwrap_or_default(),
            p.name,
            addresses.join(","),
            authentic(p),
            now.duration_since(p.at).as_millis(),
        );
    }
    if malformed > 0 {
        let _ = writeln!(out, "({malformed} malformed datagrams ignored)");
    }
    let _ = writeln!(out);
}

/// The candidates of an etcd election, live: a table, or with `json` one line
/// per change listing them (the first leads).
#[cfg(feature = "etcd")]
pub(crate) async fn watch_etcd(
    etcd: handover_std::etcd::EtcdConfig,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use handover_std::etcd::Observer;
    let mut observer = Observer::open(&etcd).await?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let candidates = observer.candidates().await?;
        let mut out = std::io::stdout().lock();
        if json {
            let list: Vec<_> = candidates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({
                        "id": c.id.map(hex),
                        "name": c.name,
                        "role": if i == 0 { "leader" } else { "candidate" },
                        "key": c.key,
                        "revision": c.revision,
                    })
                })
                .collect();
            let leader = candidates.first().and_then(|c| c.id).map(hex);
            let line = json!({ "event": "candidates", "election": etcd.name, "leader": leader, "candidates": list });
            writeln!(out, "{line}")?;
        } else {
            if tty {
                write!(out, "\x1b[2J\x1b[H")?;
            }
            writeln!(out, "election {}", etcd.name)?;
            writeln!(
                out,
                "{:<16}  {:<9}  {:<16}  {:>10}  KEY",
                "ID", "ROLE", "NAME", "REVISION"
            )?;
            for (i, c) in candidates.iter().enumerate() {
                writeln!(
                    out,
                    "{:<16}  {:<9}  {:<16}  {:>10}  {}",
                    c.id.map(hex).unwrap_or_else(|| "?".into()),
                    if i == 0 { "leader" } else { "candidate" },
                    c.name,
                    c.revision,
                    c.key
                )?;
            }
            writeln!(out)?;
        }
        out.flush()?;
        drop(out);
        observer.changed().await?;
    }
}
