//! The service channel: a Unix stream socket whose other end the service gets as
//! the descriptor in `$HANDOVER_EVENTS_FD`, with JSON lines both ways (version 1,
//! the README's table).
//!
//! `handover` writes `hello` first (the channel's version and the instance id),
//! then `role`, `state`, `checkpoint`, `checkpoint_held`, `run` (a task of
//! `--queue`) and `error` lines as they come. The service writes [`Said`] lines:
//! `state`, `checkpoint`, `submit`, `done`, `retry`, `ready`, `leave`. A line
//! `handover` does not understand is answered with an `error` line and never ends
//! the channel.
//!
//! Bounded both ways: lines from the service longer than [`MAX_LINE`] are skipped
//! without being kept, and a service that stops reading never blocks `handover`:
//! once its backlog is full, what it has not read is replaced by what is true now
//! (its role, the active's state, the checkpoints, the task it is to run).

mod desk;
mod said;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

pub use desk::{Desk, Limits};
pub use said::{Payload, Said, MAX_PAYLOAD};

use crate::log::hex;
use said::to_hex;

/// The channel's version, in the `hello` line.
pub const VERSION: u32 = 1;

/// The most bytes kept for a service that does not read.
const BACKLOG: usize = 64 * 1024;

/// The longest line the service may write: a submit with the largest payload
/// fits. Longer lines are skipped without being kept.
const MAX_LINE: usize = MAX_PAYLOAD + 1024;

/// What the service writes.
pub struct Incoming {
    reader: BufReader<OwnedReadHalf>,
    lines: Lines,
}

/// Lines of at most [`MAX_LINE`] bytes, from a stream that may send longer ones.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
    /// In a line too long to keep: skipped up to its newline.
    skipping: bool,
}

impl Lines {
    /// The next line that fits (`Err` with its length so far for one that does
    /// not), or `None` at the end of the stream.
    async fn next(
        &mut self,
        reader: &mut (impl AsyncBufRead + Unpin),
    ) -> Option<Result<Vec<u8>, usize>> {
        let mut skipped = 0;
        loop {
            let buf = reader.fill_buf().await.ok()?;
            if buf.is_empty() {
                return None;
            }
            let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if self.line.len() + chunk.len() > MAX_LINE {
                skipped += self.line.len() + chunk.len();
                self.line.clear();
                self.skipping = true;
            } else if self.skipping {
                skipped += chunk.len();
            } else {
                self.line.extend_from_slice(chunk);
            }
            let used = end.unwrap_or(chunk.len());
            reader.consume(used);
            if end.is_some() {
                let line = std::mem::take(&mut self.line);
                return match std::mem::take(&mut self.skipping) {
                    true => Some(Err(skipped)),
                    false => Some(Ok(line)),
                };
            }
        }
    }
}

/// A line of the service, read; `Err` says why it was not understood (and an
/// excerpt of it).
pub type Heard = Result<Said, (String, String)>;

impl Incoming {
    /// Whether a whole line is already read in (and the next `next` will not
    /// wait): its answers can go out with the next one's.
    pub fn line_ready(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }

    /// The next line the service wrote, or `None` once it closed its end.
    pub async fn next(&mut self) -> Option<Heard> {
        Some(match self.lines.next(&mut self.reader).await? {
            Ok(line) => Said::parse(&line).map_err(|why| (why, excerpt(&line))),
            Err(length) => Err((
                format!("a line of {length} bytes or more (at most {MAX_LINE})"),
                String::new(),
            )),
        })
    }
}

/// The start of a line, for an error that quotes it.
fn excerpt(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

/// `handover`'s end of the channel, for writing.
pub struct Channel {
    writer: OwnedWriteHalf,
    /// The service's end, until the service has it.
    theirs: Option<OwnedFd>,
    /// Bytes not written yet; the first `partial` of them finish a line already
    /// begun on the socket.
    out: Vec<u8>,
    partial: usize,
    /// The first bytes of `out` that are never dropped: the hello, until written.
    hello: usize,
    /// What is true now, written again in place of a backlog the service did not
    /// read: role, the active's state, the checkpoints.
    now: [Option<String>; 4],
    /// The tasks handed out whose lines are not written yet, with where each
    /// ends in `out` ([`NOT_APPENDED`] for one not in it yet). Never dropped: the
    /// desk counts them as running.
    runs: Vec<(usize, String)>,
    /// Whether the service closed its end: nothing more is written.
    closed: bool,
}

/// Where a run line ends that is not in the backlog yet.
const NOT_APPENDED: usize = usize::MAX;

/// The slots of [`Channel::now`].
const ROLE: usize = 0;
const STATE: usize = 1;
const CHECKPOINT: usize = 2;
const HELD: usize = 3;

impl Channel {
    /// A channel that says hello with `hello`, and what the service will write on
    /// it.
    pub fn new(hello: Value) -> std::io::Result<(Self, Incoming)> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let (reader, writer) = tokio::net::UnixStream::from_std(ours)?.into_split();
        let incoming = Incoming {
            reader: BufReader::new(reader),
            lines: Lines::default(),
        };
        let mut channel = Channel {
            writer,
            theirs: Some(theirs.into()),
            out: Vec::new(),
            partial: 0,
            hello: 0,
            now: Default::default(),
            runs: Vec::new(),
            closed: false,
        };
        let mut hello = hello;
        hello["event"] = "hello".into();
        hello["channel"] = VERSION.into();
        channel.push(&hello);
        channel.hello = channel.out.len();
        Ok((channel, incoming))
    }

    /// The service's end, to pass to it.
    pub fn service_end(&self) -> Option<BorrowedFd<'_>> {
        self.theirs.as_ref().map(AsFd::as_fd)
    }

    /// The service has started with its end: ours closes its copy.
    pub fn handed(&mut self) {
        self.theirs = None;
    }

    /// This instance's role and the leader, now.
    pub fn role(&mut self, active: bool, leader: Option<u64>, t_us: u64) {
        let role = if active { "active" } else { "standby" };
        let line =
            json!({ "event": "role", "role": role, "leader": leader.map(hex), "t_us": t_us });
        self.keep(ROLE, &line);
    }

    /// The active's state, as its peers last received it.
    pub fn state(&mut self, state: &[u8], t_us: u64) {
        let line = json!({ "event": "state", "state": to_hex(state), "t_us": t_us });
        self.keep(STATE, &line);
    }

    /// The highest checkpoint known, and while active the one every standby
    /// holds.
    pub fn checkpoints(&mut self, checkpoint: u64, held: Option<u64>) {
        self.keep(
            CHECKPOINT,
            &json!({ "event": "checkpoint", "id": checkpoint }),
        );
        match held {
            Some(held) => self.keep(HELD, &json!({ "event": "checkpoint_held", "id": held })),
            // Not active: a backlog rewritten later must not repeat an old one.
            None => self.now[HELD] = None,
        }
    }

    /// A task for the service to run, answered with `done` or `retry`. Written
    /// by the next [`flush`](Self::flush), so that the tasks handed out together
    /// leave in one write.
    pub fn run(&mut self, id: u64, payload: &RawValue) {
        if self.closed {
            return;
        }
        let line = format!("{{\"event\":\"run\",\"id\":{id},\"payload\":{payload}}}\n");
        if self.out.len() + line.len() <= BACKLOG {
            self.out.extend_from_slice(line.as_bytes());
            self.runs.push((self.out.len(), line));
        } else {
            // Counted among the runs first: the line that overflows the backlog
            // is written with the others when it is rewritten.
            self.runs.push((NOT_APPENDED, line));
            self.compact();
        }
    }

    /// A line of the service that was not understood or not accepted.
    pub fn error(&mut self, error: &str, line: &str) {
        self.push(&json!({ "event": "error", "error": error, "line": line }));
    }

    fn keep(&mut self, slot: usize, line: &Value) {
        self.now[slot] = Some(format!("{line}\n"));
        self.push(line);
    }

    fn push(&mut self, line: &Value) {
        self.append(format!("{line}\n").as_bytes());
        self.flush();
    }

    fn append(&mut self, line: &[u8]) {
        if self.closed {
            return;
        }
        if self.out.len() + line.len() <= BACKLOG {
            self.out.extend_from_slice(line);
            return;
        }
        self.compact();
    }

    /// The service is not reading: keeps the line it is in the middle of, then
    /// only what is true now, and every task to run that was not written, in
    /// order. The backlog stays within [`BACKLOG`] plus the window's runs.
    fn compact(&mut self) {
        let cut = self.partial.max(self.hello);
        self.out.truncate(cut);
        for kept in self.now.iter().flatten() {
            self.out.extend_from_slice(kept.as_bytes());
        }
        for (end, run) in self.runs.iter_mut().filter(|(end, _)| *end > cut) {
            self.out.extend_from_slice(run.as_bytes());
            *end = self.out.len();
        }
    }

    /// Writes what the socket takes without waiting.
    pub fn flush(&mut self) {
        while !self.out.is_empty() && !self.closed {
            match self.writer.try_write(&self.out) {
                Ok(n) => {
                    let ended_line = self.out[n - 1] == b'\n';
                    self.out.drain(..n);
                    self.hello = self.hello.saturating_sub(n);
                    for (end, _) in &mut self.runs {
                        *end = end.saturating_sub(n);
                    }
                    self.runs.retain(|(end, _)| *end > 0);
                    self.partial = match ended_line {
                        true => 0,
                        false => self
                            .out
                            .iter()
                            .position(|&b| b == b'\n')
                            .map_or(0, |i| i + 1),
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => self.closed = true,
            }
        }
    }

    /// Waits until the socket takes more of a backlog (forever without one).
    pub async fn writable(&mut self) {
        if self.out.is_empty() || self.closed {
            return std::future::pending().await;
        }
        if self.writer.writable().await.is_err() {
            self.closed = true;
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_longer_than_the_limit_are_skipped_without_being_kept() {
        let long = vec![b'x'; 10 * MAX_LINE];
        let mut input = b"{\"state\":\"01\"}\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\n{\"state\":\"02\"}\n");
        let mut reader = BufReader::with_capacity(512, &input[..]);
        let mut lines = Lines::default();
        assert_eq!(
            lines.next(&mut reader).await,
            Some(Ok(b"{\"state\":\"01\"}".to_vec()))
        );
        assert!(matches!(lines.next(&mut reader).await, Some(Err(n)) if n >= MAX_LINE));
        assert!(lines.line.capacity() <= MAX_LINE + 512);
        assert_eq!(
            lines.next(&mut reader).await,
            Some(Ok(b"{\"state\":\"02\"}".to_vec()))
        );
        assert_eq!(lines.next(&mut reader).await, None);
    }

    fn payload(json: Value) -> Payload {
        Payload::from_json(json.to_string()).unwrap()
    }

    /// The service's end of `channel`, for reading.
    fn service_end(channel: &mut Channel) -> tokio::net::UnixStream {
        let theirs = UnixStream::from(channel.theirs.take().unwrap());
        theirs.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(theirs).unwrap()
    }

    /// What the service's end reads now, without waiting.
    fn read_now(theirs: &tokio::net::UnixStream, most: usize, into: &mut Vec<u8>) {
        let mut buf = vec![0u8; most];
        if let Ok(n) = theirs.try_read(&mut buf) {
            into.extend_from_slice(&buf[..n]);
        }
    }

    /// Everything the service's end can read until `channel` has nothing left,
    /// after what it read before, as JSON lines.
    async fn read_all(
        channel: &mut Channel,
        theirs: tokio::net::UnixStream,
        mut read: Vec<u8>,
    ) -> Vec<Value> {
        let wait = std::time::Duration::from_millis(50);
        loop {
            let _ = tokio::time::timeout(wait, channel.writable()).await;
            let _ = tokio::time::timeout(wait, theirs.readable()).await;
            let before = read.len();
            read_now(&theirs, 65536, &mut read);
            if read.len() == before && channel.out.is_empty() {
                break;
            }
        }
        String::from_utf8(read)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn run_ids(lines: &[Value]) -> Vec<u64> {
        lines
            .iter()
            .filter(|l| l["event"] == "run")
            .map(|l| l["id"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_service_that_does_not_read_gets_what_is_true_now() {
        let (mut channel, _incoming) = Channel::new(json!({ "id": "01" })).unwrap();
        let theirs = service_end(&mut channel);
        channel.run(9, payload(json!("task nine")).json());
        // Far more than the socket and the backlog hold, unread.
        for i in 0..20_000u64 {
            channel.role(i % 2 == 0, Some(i), i);
            channel.state(&i.to_be_bytes(), i);
            channel.error("unknown cmd", "{}");
            if i % 5_000 == 0 {
                // Handed out while the socket is full: in the backlog.
                channel.run(100 + i, payload(json!(i)).json());
            }
        }
        assert!(channel.out.len() <= BACKLOG + 4096);
        channel.role(true, Some(7), 1);
        channel.checkpoints(8, Some(8));
        // Now the service reads: every line is whole JSON, the first is the
        // hello, the last say what is true now, and the task to run is there once.
        let lines = read_all(&mut channel, theirs, Vec::new()).await;
        assert_eq!(lines[0]["event"], "hello", "{}", lines[0]);
        assert_eq!(lines[0]["channel"], VERSION);
        let last = |event: &str| lines.iter().rev().find(|l| l["event"] == event).unwrap();
        assert_eq!(last("role")["role"], "active");
        assert_eq!(last("role")["leader"], hex(7));
        assert_eq!(last("checkpoint_held")["id"], 8);
        assert_eq!(
            run_ids(&lines),
            [9, 100, 5_100, 10_100, 15_100],
            "each task once, in order"
        );
    }

    /// What happens to the channel in the property below.
    #[derive(Debug, Clone)]
    enum Op {
        /// A task handed out, with a payload of this many bytes.
        Run(usize),
        Role(bool),
        Checkpoints(u64, Option<u64>),
        Error,
        Flush,
        /// The service reads at most this many bytes.
        Read(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0..=MAX_PAYLOAD - 2).prop_map(Op::Run),
            2 => any::<bool>().prop_map(Op::Role),
            1 => (any::<u64>(), any::<Option<u64>>()).prop_map(|(c, h)| Op::Checkpoints(c, h)),
            2 => Just(Op::Error),
            2 => Just(Op::Flush),
            1 => (1usize..200_000).prop_map(Op::Read),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]

        /// Whatever the payloads and however slowly the service reads, every task
        /// handed out reaches it once and in order, every line whole, and the
        /// last role is the one true now.
        #[test]
        fn every_run_line_reaches_a_slow_reader_once_and_in_order(
            ops in proptest::collection::vec(op(), 1..400)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (mut channel, _incoming) = Channel::new(json!({ "id": "01" })).unwrap();
                let theirs = service_end(&mut channel);
                let (mut read, mut handed, mut role) = (Vec::new(), Vec::new(), None);
                for op in ops {
                    match op {
                        Op::Run(size) => {
                            let id = handed.len() as u64 + 1;
                            channel.run(id, payload(json!("x".repeat(size))).json());
                            handed.push(id);
                        }
                        Op::Role(active) => {
                            channel.role(active, None, 0);
                            role = Some(active);
                        }
                        Op::Checkpoints(checkpoint, held) => channel.checkpoints(checkpoint, held),
                        Op::Error => channel.error("unknown cmd", "{}"),
                        Op::Flush => channel.flush(),
                        Op::Read(most) => read_now(&theirs, most, &mut read),
                    }
                }
                let lines = read_all(&mut channel, theirs, read).await;
                assert_eq!(lines[0]["event"], "hello");
                assert_eq!(run_ids(&lines), handed);
                let last_role = lines.iter().rev().find(|l| l["event"] == "role");
                let expected = role.map(|active| if active { "active" } else { "standby" });
                assert_eq!(last_role.map(|l| l["role"].as_str().unwrap()), expected);
            });
        }
    }
}
