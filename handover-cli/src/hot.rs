//! `--standby hot`: the service runs on every instance and is told, as it changes,
//! its role, who leads and the active's state.
//!
//! The channel is a Unix stream socket whose other end the service gets as the
//! descriptor in `$HANDOVER_EVENTS_FD`: `handover` writes JSON lines, the same
//! objects as `--log-format json` (`{"event":"role","role":"active","leader":"…"}`,
//! `{"event":"state","state":"<hex>"}`), and the service may write
//! `{"state":"<hex>"}` lines back to publish its own state (up to 64 bytes), which
//! the active's peers receive. A service that stops reading never blocks
//! `handover`: once its backlog is full, what it has not read is replaced by the
//! current role and state.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::log::hex;

/// The most bytes kept for a service that does not read.
const BACKLOG: usize = 64 * 1024;

/// The longest line the service may write back: a state of 64 bytes in hex is far
/// shorter. Longer lines are skipped without being kept.
const MAX_LINE: usize = 4096;

/// What the service writes back.
pub struct Published {
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

/// `handover`'s end of the channel, for writing.
pub struct Channel {
    writer: OwnedWriteHalf,
    /// The service's end, until the service has it.
    theirs: Option<OwnedFd>,
    /// Bytes not written yet; the first `partial` of them finish a line already
    /// begun on the socket.
    out: Vec<u8>,
    partial: usize,
    role: Value,
    state: Option<Value>,
    /// Whether the service closed its end: nothing more is written.
    closed: bool,
}

impl Channel {
    /// A channel, and what the service will write back on it.
    pub fn new() -> std::io::Result<(Self, Published)> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let (reader, writer) = tokio::net::UnixStream::from_std(ours)?.into_split();
        let published = Published {
            reader: BufReader::new(reader),
            lines: Lines::default(),
        };
        let channel = Channel {
            writer,
            theirs: Some(theirs.into()),
            out: Vec::new(),
            partial: 0,
            role: json!({ "event": "role", "role": "standby", "leader": null }),
            state: None,
            closed: false,
        };
        Ok((channel, published))
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
        self.role =
            json!({ "event": "role", "role": role, "leader": leader.map(hex), "t_us": t_us });
        self.push(&self.role.clone());
    }

    /// The active's state, as its peers last received it.
    pub fn state(&mut self, state: &[u8], t_us: u64) {
        let state = json!({ "event": "state", "state": to_hex(state), "t_us": t_us });
        self.state = Some(state.clone());
        self.push(&state);
    }

    fn push(&mut self, line: &Value) {
        if self.closed {
            return;
        }
        let line = format!("{line}\n");
        if self.out.len() + line.len() > BACKLOG {
            // The service is not reading: keep the line it is in the middle of,
            // then only what is true now.
            self.out.truncate(self.partial);
            self.out
                .extend_from_slice(format!("{}\n", self.role).as_bytes());
            if let Some(state) = &self.state {
                self.out.extend_from_slice(format!("{state}\n").as_bytes());
            }
        } else {
            self.out.extend_from_slice(line.as_bytes());
        }
        self.flush();
    }

    /// Writes what the socket takes without waiting.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.closed {
            match self.writer.try_write(&self.out) {
                Ok(n) => {
                    let ended_line = self.out[n - 1] == b'\n';
                    self.out.drain(..n);
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

impl Published {
    /// The next state the service publishes (`{"state":"<hex>"}`); lines that say
    /// nothing else are skipped, bad ones logged. Pending once the service closed
    /// its end.
    pub async fn next(&mut self) -> Vec<u8> {
        loop {
            let line = match self.lines.next(&mut self.reader).await {
                Some(Ok(line)) => String::from_utf8_lossy(&line).into_owned(),
                Some(Err(length)) => {
                    tracing::warn!("the service wrote a line of {length} bytes or more: skipped (at most {MAX_LINE})");
                    continue;
                }
                None => return std::future::pending().await,
            };
            let parsed = serde_json::from_str::<Value>(&line).ok();
            let hex = parsed.as_ref().and_then(|v| v["state"].as_str());
            match hex.and_then(from_hex) {
                Some(state) => return state,
                None => {
                    tracing::warn!("the service wrote {line:?}: expected {{\"state\":\"<hex>\"}}")
                }
            }
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_both_ways() {
        assert_eq!(to_hex(&[0, 0xab, 7]), "00ab07");
        assert_eq!(from_hex("00ab07"), Some(vec![0, 0xab, 7]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(""), Some(vec![]));
    }

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

    #[tokio::test]
    async fn a_service_that_does_not_read_gets_the_latest_role_and_state() {
        let (mut channel, _published) = Channel::new().unwrap();
        let theirs = UnixStream::from(channel.theirs.take().unwrap());
        // Far more than the socket and the backlog hold, unread.
        for i in 0..20_000u64 {
            channel.role(i % 2 == 0, Some(i), i);
            channel.state(&i.to_be_bytes(), i);
        }
        assert!(channel.out.len() <= BACKLOG + 4096);
        channel.role(true, Some(7), 1);
        // Now the service reads: every line is whole JSON, and the last say what
        // is true now.
        theirs.set_nonblocking(true).unwrap();
        let theirs = tokio::net::UnixStream::from_std(theirs).unwrap();
        let mut read = Vec::new();
        let mut buf = vec![0u8; 65536];
        let wait = std::time::Duration::from_millis(50);
        loop {
            let _ = tokio::time::timeout(wait, channel.writable()).await;
            let _ = tokio::time::timeout(wait, theirs.readable()).await;
            match theirs.try_read(&mut buf) {
                Ok(n) if n > 0 => read.extend_from_slice(&buf[..n]),
                _ if channel.out.is_empty() => break,
                _ => {}
            }
        }
        let text = String::from_utf8(read).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let last = lines.last().unwrap();
        assert_eq!(last["role"], "active", "{last}");
        assert_eq!(last["leader"], hex(7), "{last}");
    }
}
