//! Event lines: human-readable through `tracing`, or one JSON object per line on
//! stderr for scripts, stamped with the monotonic clock so that lines of different
//! processes on one host can be compared.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use handover_std::Event;
use serde_json::{json, Map, Value};
use tracing_subscriber::filter::LevelFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// stderr behind a bounded queue and a thread of its own: a log line never blocks
/// the protocol. A container's stderr is a pipe; when its reader stalls (Docker's
/// blocking log mode behind a stuck collector, a full journal pipe) a write blocks
/// once its 64 KiB are full, and a blocked heartbeat is a split brain. Lines that do
/// not fit in the queue are dropped and counted; the next line that gets through
/// says how many. (A failed write is ignored too: a closed stderr must not stop
/// `handover` and its service.)
struct Lines {
    queue: SyncSender<Line>,
    /// Lines dropped since start.
    dropped: AtomicU64,
}

enum Line {
    Text(Vec<u8>),
    /// Everything queued before it is written: tell the sender.
    Flush(SyncSender<()>),
}

/// Lines the queue holds while stderr is not read (at most a few hundred KiB).
const QUEUED_LINES: usize = 1024;

static LINES: OnceLock<Lines> = OnceLock::new();

impl Lines {
    fn start(format: LogFormat) -> &'static Lines {
        LINES.get_or_init(|| {
            let (queue, lines) = sync_channel(QUEUED_LINES);
            let spawned = std::thread::Builder::new()
                .name("stderr".into())
                .spawn(move || write_lines(lines, format));
            if let Err(e) = spawned {
                // Nothing will write: every line is dropped and counted, and
                // `handover` runs on.
                let _ = writeln!(std::io::stderr(), "handover: no thread for logs: {e}");
            }
            Lines {
                queue,
                dropped: AtomicU64::new(0),
            }
        })
    }

    fn send(&self, line: &[u8]) {
        if self.queue.try_send(Line::Text(line.to_vec())).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writer thread: each line as it comes, after a note of the lines dropped
/// since the last note.
fn write_lines(lines: Receiver<Line>, format: LogFormat) {
    let mut reported = 0;
    let mut err = std::io::stderr();
    while let Ok(line) = lines.recv() {
        match line {
            Line::Text(text) => {
                let dropped = dropped_lines();
                if dropped > reported {
                    let note = match format {
                        LogFormat::Json => format!(
                            "{}\n",
                            json!({ "t_us": monotonic_us(), "event": "log_lines_dropped", "count": dropped - reported, "total": dropped })
                        ),
                        LogFormat::Text => format!(
                            "handover: {} log lines dropped (stderr was not read; {dropped} in all)\n",
                            dropped - reported
                        ),
                    };
                    let _ = err.write_all(note.as_bytes());
                    reported = dropped;
                }
                let _ = err.write_all(&text);
            }
            Line::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Log lines dropped since start because stderr was not read.
pub fn dropped_lines() -> u64 {
    LINES
        .get()
        .map_or(0, |lines| lines.dropped.load(Ordering::Relaxed))
}

/// Waits until the lines queued so far are written, for at most `limit` (a stalled
/// stderr must not keep `handover` from exiting). A full queue is waited on too: a
/// slow reader is still reading, and the last lines are the ones it wants.
pub fn flush(limit: Duration) {
    let Some(lines) = LINES.get() else { return };
    let deadline = Instant::now() + limit;
    let (done, written) = sync_channel(1);
    let mut marker = Line::Flush(done);
    loop {
        match lines.queue.try_send(marker) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                marker = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

/// Makes a panic a line through the queue, then an abort. The default hook
/// writes to stderr itself: on a stalled pipe it blocks for good, and `handover`
/// hangs while its service runs on. After an abort the service gets its parent's
/// death signal.
pub fn abort_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        line(format!("handover: {info}\n").as_bytes());
        flush(Duration::from_secs(1));
        std::process::abort();
    }));
}

/// Writes `text` (whole lines) on stderr: through the queue once logging is set
/// up, directly before.
pub fn line(text: &[u8]) {
    match LINES.get() {
        Some(lines) => lines.send(text),
        None => {
            let _ = std::io::stderr().write_all(text);
        }
    }
}

/// One `tracing` event is one write of one whole line.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        line(buf);
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
    /// Whether events of every task (checkpoints) are reported: at `debug`.
    per_task: bool,
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
        Lines::start(format);
        abort_on_panic();
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
        Log {
            format,
            per_task: level >= LevelFilter::DEBUG,
        }
    }

    /// Reports an event that comes once per task or more: only at `debug`.
    fn per_task_event(&self, kind: &str, fields: Value) {
        if self.per_task {
            self.event(kind, fields);
        }
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
                let mut text = Value::Object(line).to_string().into_bytes();
                text.push(b'\n');
                Lines::start(self.format).send(&text);
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
            Event::Protocol(P::Checkpoint { seq }) => {
                self.per_task_event("checkpoint", json!({ "seq": seq }))
            }
            Event::Protocol(P::CheckpointHeld { seq }) => {
                self.per_task_event("checkpoint_held", json!({ "seq": seq }))
            }
            // An event added to the library since: by its own name, with its fields
            // as the library prints them.
            other => {
                let debug = format!("{other:?}");
                self.event(&event_name(&debug), json!({ "fields": debug }))
            }
        }
    }
}

/// `checkpoint_held` for `Protocol(CheckpointHeld { seq: 0 })`: the innermost
/// variant's name, in snake case.
fn event_name(debug: &str) -> String {
    // Through the wrappers (`Protocol(`) to the first variant with fields of its own.
    let mut variant = "";
    for part in debug.split('(') {
        let end = part
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(part.len());
        if end == 0 || !part.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        variant = &part[..end];
        if end < part.len() {
            break;
        }
    }
    let mut name = String::new();
    for (i, c) in variant.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Instance ids as 16 hex digits, as `handover watch` shows them.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_the_command_does_not_know_are_named_by_their_variant() {
        assert_eq!(
            event_name("Protocol(CheckpointHeld { seq: 0 })"),
            "checkpoint_held"
        );
        assert_eq!(event_name("Protocol(Elected)"), "elected");
        assert_eq!(event_name("NewThing(\"x\")"), "new_thing");
        assert_eq!(event_name("Bare"), "bare");
    }

    /// Set in the child process of the test below.
    const PANICKING_CHILD: &str = "HANDOVER_TEST_PANICKING_CHILD";

    /// A panic with stderr full and unread (a stalled log collector) ends the
    /// process at once, by an abort: it never blocks on the write.
    #[test]
    fn a_panic_aborts_even_when_stderr_is_not_read() {
        if std::env::var_os(PANICKING_CHILD).is_some() {
            Lines::start(LogFormat::Text);
            abort_on_panic();
            panic!("on purpose");
        }
        let (reader, writer) = std::io::pipe().unwrap();
        // The pipe is filled up by a thread that stays blocked on it until the
        // reader is dropped, at the end.
        let mut filler = writer.try_clone().unwrap();
        std::thread::spawn(move || filler.write_all(&vec![b'x'; 1 << 20]));
        std::thread::sleep(Duration::from_millis(100));
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "log::tests::a_panic_aborts_even_when_stderr_is_not_read",
                "--exact",
            ])
            .arg("--nocapture")
            .env(PANICKING_CHILD, "1")
            .stdout(std::process::Stdio::null())
            .stderr(writer)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(reader);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(libc::SIGABRT),
            "the panicking process did not abort: {status:?}"
        );
    }
}
