//! A passive observer of a group: decodes every announcement without taking part, for
//! `handover watch` and for monitoring.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use handover_proto::wire::{self, Body, Datagram, Role};

use crate::config::Config;
use crate::transport;

/// What one datagram on the group said about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// When it arrived.
    pub at: Instant,
    /// Where it came from.
    pub from: SocketAddr,
    /// The sender's scope id (`None` for handover-lib peers).
    pub scope: Option<u32>,
    /// The sender's instance id (handover-lib peers: their start time).
    pub id: u64,
    /// What the sender says it is.
    pub role: Option<Role>,
    /// The sender's priority (failover).
    pub priority: Option<u8>,
    /// Its heartbeat interval (handover-lib peers: 1 s).
    pub heartbeat: std::time::Duration,
    /// Its start time, ms since the Unix epoch.
    pub start_ms: i64,
    /// Its service name.
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// The sender is leaving.
    pub goodbye: bool,
    /// handover-lib's v1 format.
    pub legacy: bool,
    /// With the group's keys: whether the datagram carries a valid tag under one of
    /// them (not checked for replay: a watcher keeps no counters). `None` without
    /// keys, or for handover-lib's format, which has no tags.
    pub authentic: Option<bool>,
}

/// Listens on a group's port (and handover-lib's, in legacy mode) without joining the
/// protocol.
#[derive(Debug)]
pub struct Watcher {
    listeners: transport::Listeners,
    keys: Vec<wire::Key>,
    /// Datagrams that did not decode.
    pub malformed: u64,
}

impl Watcher {
    /// Opens the sockets `config` describes; with its keys (current and previous),
    /// each sighting says whether it is authentic.
    pub fn open(config: &Config) -> io::Result<Self> {
        let keys = [&config.key, &config.previous_key];
        Ok(Watcher {
            listeners: transport::Listeners::open(config)?,
            keys: keys.into_iter().flatten().map(|k| k.0).collect(),
            malformed: 0,
        })
    }

    /// The next decodable datagram (acknowledgements carry no news and are skipped).
    pub async fn next(&mut self) -> io::Result<Sighting> {
        let mut a = [0u8; 2048];
        let mut b = [0u8; 2048];
        loop {
            let l = &mut self.listeners;
            let (bytes, from) = tokio::select! {
                r = l.group.recv_from(&mut a) => { let (n, f) = r?; (&a[..n], f) }
                r = crate::multicast::recv_opt(l.legacy.as_ref(), &mut b) => { let (n, f) = r?; (&b[..n], f) }
                () = l.watch.changed() => {
                    if let Err(e) = l.refresh() {
                        tracing::warn!("reading the interfaces failed: {e}");
                    }
                    continue;
                }
            };
            match sighting(from, bytes, &self.keys) {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {}
                Err(_) => self.malformed += 1,
            }
        }
    }
}

/// Decodes one datagram into a sighting; `Ok(None)` for acknowledgements. With
/// `keys`, the sighting says whether its tag is valid under one of them.
pub fn sighting(
    from: SocketAddr,
    bytes: &[u8],
    keys: &[wire::Key],
) -> Result<Option<Sighting>, wire::DecodeError> {
    let mut s = Sighting {
        at: Instant::now(),
        from,
        scope: None,
        id: 0,
        role: None,
        priority: None,
        heartbeat: std::time::Duration::from_secs(1),
        start_ms: 0,
        name: String::new(),
        addresses: Vec::new(),
        goodbye: false,
        legacy: false,
        authentic: None,
    };
    match Datagram::parse(bytes)? {
        Datagram::Legacy(a) => {
            s.id = a.start_ms as u64;
            s.start_ms = a.start_ms;
            s.legacy = true;
        }
        Datagram::V2(packet) => {
            let header = packet.repr.header;
            s.scope = Some(header.scope);
            s.id = header.sender;
            if !keys.is_empty() {
                s.authentic = Some(packet.tag.is_some_and(|tag| {
                    keys.iter()
                        .any(|k| wire::auth::verify(k, packet.covered, tag))
                }));
            }
            match packet.repr.body {
                Body::Announce(a) => {
                    s.role = Some(a.role);
                    s.priority = Some(a.rank.priority);
                    s.start_ms = a.rank.start_ms;
                    s.heartbeat = std::time::Duration::from_millis(a.heartbeat_ms.into());
                    s.name = String::from_utf8_lossy(a.name).into_owned();
                    s.addresses = a
                        .addresses
                        .chunks_exact(4)
                        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                        .collect();
                }
                Body::Goodbye(_) => s.goodbye = true,
                // Replies and checkpoints say nothing of the sender's standing.
                _ => return Ok(None),
            }
        }
    }
    Ok(Some(s))
}
