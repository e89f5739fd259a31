//! `handover status`: the peers on a group and who is in charge, once, for health
//! checks and scripts.
//!
//! It listens for `--wait` (long enough to hear every peer's heartbeat at least
//! twice at the default 1 s), prints what it heard and exits: 0 when exactly one
//! instance of the scope is in charge, 1 when none is, 2 when more than one claims
//! to be (two networks that cannot hear each other, or a misconfiguration).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use handover_proto::wire::Role;
use handover_std::observe::{Sighting, Watcher};
use serde_json::json;

use crate::log::hex;
use crate::options::{parse_duration, Keys, Network};
use crate::watch::{role, sighting_json, ScopeNames};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    network: Network,

    /// With the group's key files, only authentic peers count
    #[command(flatten)]
    keys: Keys,

    /// How long to listen
    #[arg(long, env = "HANDOVER_STATUS_WAIT", default_value = "2500ms", value_parser = parse_duration)]
    wait: Duration,

    /// One JSON object instead of a table
    #[arg(long)]
    json: bool,
}

pub async fn status(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut config = args.network.config()?;
    args.keys.apply(&mut config)?;
    let scope = handover_proto::wire::scope_id(config.scope.as_bytes());
    let names = ScopeNames::new(&config.scope, None);
    let mut watcher = Watcher::open(&config)?;
    let mut peers: BTreeMap<u64, Sighting> = BTreeMap::new();
    let listening = async {
        loop {
            let s = watcher.next().await?;
            // Another scope's, or handover-lib's (it has none): not ours to count.
            if s.scope != Some(scope) {
                continue;
            }
            // With a key, a peer that cannot prove it belongs is not counted.
            if s.authentic == Some(false) {
                continue;
            }
            if s.goodbye {
                peers.remove(&s.id);
            } else {
                peers.insert(s.id, s);
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    };
    if let Ok(Err(e)) = tokio::time::timeout(args.wait, listening).await {
        return Err(e.into());
    }
    let in_charge: Vec<&Sighting> = peers
        .values()
        .filter(|p| p.role == Some(Role::Active))
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let line = json!({
            "scope": config.scope,
            "active": in_charge.iter().map(|p| hex(p.id)).collect::<Vec<_>>(),
            "peers": peers.values().map(|p| sighting_json(p, &names)).collect::<Vec<_>>(),
        });
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(
            out,
            "scope {:?}: {} peer(s) heard in {:?}",
            config.scope,
            peers.len(),
            args.wait
        );
        for p in peers.values() {
            let addresses: Vec<String> = p.addresses.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                out,
                "  {}  {:<9}  prio {:>3}  {:<16}  {}",
                hex(p.id),
                role(p),
                p.priority.map(|x| x.to_string()).unwrap_or_default(),
                p.name,
                addresses.join(","),
            );
        }
        match in_charge.as_slice() {
            [] => {
                let _ = writeln!(out, "no instance in charge");
            }
            [one] => {
                let _ = writeln!(out, "in charge: {}", hex(one.id));
            }
            many => {
                let ids: Vec<String> = many.iter().map(|p| hex(p.id)).collect();
                let _ = writeln!(out, "more than one in charge: {}", ids.join(", "));
            }
        }
    }
    Ok(ExitCode::from(match in_charge.len() {
        1 => 0,
        0 => 1,
        _ => 2,
    }))
}
