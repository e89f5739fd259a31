//! Event lines: human-readable through `tracing`, or one JSON object per line on
//! stderr for scripts, stamped with the monotonic clock so that lines of different
//! processes on one host can be compared.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use handover_std::Event;
use serde_json::{json, Map, Value};
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// stderr that never fails: a full or closed stderr must not stop `handover` and its
/// service. (tracing reports a failed write on stderr, and panics when that fails
/// too.)
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where events go.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    format: LogFormat,
}

/// `CLOCK_MONOTONIC` in microseconds (the same clock in every process of a host).
pub fn monotonic_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1_000
}

impl Log {
    /// Sets up logging; `HANDOVER_LOG` (`error`, `warn`, `info`, `debug`, `trace`)
    /// overrides `level`.
    pub fn init(format: LogFormat, level: LevelFilter) -> Self {
        let level = match std::env::var("HANDOVER_LOG") {
            Ok(v) => v.parse().unwrap_or_else(|_| {
                let _ = writeln!(
                    std::io::stderr(),
                    "handover: HANDOVER_LOG: {v:?} is not a log level; using {level}"
                );
                level
            }),
            Err(_) => level,
        };
        // Colours only for a person at a terminal: not in journald or `docker logs`.
        let builder = tracing_subscriber::fmt()
            .with_writer(|| Stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false);
        match format {
            LogFormat::Text => builder.with_max_level(level).init(),
            // Events are printed as JSON lines by `event`; only the library's warnings
            // and errors go through tracing, as JSON too.
            LogFormat::Json => builder
                .with_max_level(level.min(LevelFilter::WARN))
                .json()
                .init(),
        }
        Log { format }
    }

    /// Reports one event: `kind` names it, `fields` (a JSON object) details it.
    pub fn event(&self, kind: &str, fields: Value) {
        match self.format {
            LogFormat::Json => {
                let mut line = Map::new();
                line.insert("t_us".into(), monotonic_us().into());
                line.insert("event".into(), kind.into());
                if let Value::Object(fields) = fields {
                    line.extend(fields);
                }
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{}", Value::Object(line));
            }
            LogFormat::Text => {
                let details = match &fields {
                    Value::Object(m) if !m.is_empty() => m
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                tracing::info!("{kind} {details}");
            }
        }
    }

    /// Reports an event of the library.
    pub fn library_event(&self, event: &Event) {
        use handover_proto::Event as P;
        match event {
            Event::Protocol(P::Shutdown { successor }) => self.event(
                "shutdown_requested",
                json!({ "successor": successor.id().map(hex) }),
            ),
            Event::Protocol(P::PredecessorDone { id }) => {
                self.event("predecessor_done", json!({ "id": hex(*id) }))
            }
            Event::Protocol(P::Elected) => self.event("elected", json!({})),
            Event::Protocol(P::Demoted) => self.event("demoted", json!({})),
            Event::Protocol(P::LeaderChanged { id }) => {
                self.event("leader_changed", json!({ "id": id.map(hex) }))
            }
            Event::Protocol(P::Synced { state }) => {
                self.event("synced", json!({ "bytes": state.len() }))
            }
            Event::Protocol(P::PeerUp {
                id,
                name,
                addresses,
            }) => self.event(
                "peer_up",
                json!({
                    "id": hex(*id),
                    "name": String::from_utf8_lossy(name),
                    "addresses": addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                }),
            ),
            Event::Protocol(P::PeerDown { id }) => {
                self.event("peer_down", json!({ "id": hex(*id) }))
            }
            Event::Protocol(P::MarkComplete) => {}
            Event::CompleteWritten(path) => self.event(
                "complete_written",
                json!({ "path": path.display().to_string() }),
            ),
            Event::CompleteFailed { path, error } => self.event(
                "complete_failed",
                json!({ "path": path.display().to_string(), "error": error }),
            ),
            Event::InterfacesChanged(names) => {
                self.event("interfaces_changed", json!({ "interfaces": names }))
            }
            Event::ReceiveError(error) => self.event("receive_error", json!({ "error": error })),
            Event::Term(term) => {
                self.event("term", json!({ "token": term.token, "key": term.key }))
            }
            Event::ElectionError(error) => self.event("election_error", json!({ "error": error })),
            other => self.event("other", json!({ "debug": format!("{other:?}") })),
        }
    }
}

/// Instance ids as 16 hex digits, as `handover watch` shows them.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}
