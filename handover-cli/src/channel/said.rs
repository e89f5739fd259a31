//! What a service may say on the channel: one JSON object per line, named by its
//! `cmd`. Anything else is an error the service is told about, never the end of
//! the channel.

use std::collections::HashMap;
use std::fmt;

use serde_json::value::RawValue;

/// The most bytes a task's payload may take, as JSON.
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// A line from the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    /// Carry this state on the heartbeats (active).
    State(Vec<u8>),
    /// Record progress `id` (active, without `--queue`).
    Checkpoint(u64),
    /// Queue a task (every instance).
    Submit { id: u64, payload: Payload },
    /// The task handed out as `run` is done.
    Done(u64),
    /// The task handed out as `run` must run again.
    Retry(u64),
    /// The service is ready.
    Ready,
    /// Leave the group, as on SIGTERM.
    Leave,
    /// The service is alive: systemd's `WATCHDOG=1` (`--watchdog`).
    Watchdog,
}

/// A task's payload: the JSON text the service sent, kept as it came (a queued
/// byte costs a byte, where a parsed value costs about sixteen).
#[derive(Debug, Clone)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// The payload of a submit without one.
    pub fn null() -> Self {
        Payload(RawValue::from_string("null".into()).expect("null is JSON"))
    }

    /// A payload from JSON text, checked.
    #[cfg(test)]
    pub fn from_json(json: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json).map(Payload)
    }

    /// Its size, in bytes of JSON.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// As JSON, to write into a line.
    pub fn json(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// Why a line was not understood: the service is told this.
pub type Refusal = String;

impl Said {
    /// Reads one line. Version 0's `{"state":"<hex>"}` (no `cmd`) is still a
    /// state. Each field is read only as far as its command needs, so that a
    /// payload is never parsed into values.
    pub fn parse(line: &[u8]) -> Result<Said, Refusal> {
        let object: HashMap<String, &RawValue> =
            serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let string = |field: &str| {
            let raw = object.get(field)?;
            serde_json::from_str::<String>(raw.get()).ok()
        };
        let cmd = match (object.get("cmd"), string("cmd")) {
            (Some(_), Some(cmd)) => cmd,
            (Some(_), None) => return Err("\"cmd\" is not a string".into()),
            (None, _) if object.contains_key("state") => "state".into(),
            (None, _) => return Err("no \"cmd\"".into()),
        };
        let id = || {
            object
                .get("id")
                .and_then(|raw| serde_json::from_str::<u64>(raw.get()).ok())
                .ok_or_else(|| format!("{cmd}: \"id\" must be a whole number from 0"))
        };
        match cmd.as_str() {
            "state" => string("state")
                .as_deref()
                .and_then(from_hex)
                .map(Said::State)
                .ok_or_else(|| "state: \"state\" must be a string of hex digits".into()),
            "checkpoint" => Ok(Said::Checkpoint(id()?)),
            "submit" => {
                let id = id()?;
                if id == 0 {
                    return Err("submit: ids start at 1 (0 is before every task)".into());
                }
                let payload = object
                    .get("payload")
                    .map_or_else(Payload::null, |raw| Payload((*raw).to_owned()));
                let size = payload.len();
                if size > MAX_PAYLOAD {
                    return Err(format!(
                        "submit: a payload of {size} bytes (at most {MAX_PAYLOAD})"
                    ));
                }
                Ok(Said::Submit { id, payload })
            }
            "done" => Ok(Said::Done(id()?)),
            "retry" => Ok(Said::Retry(id()?)),
            "ready" => Ok(Said::Ready),
            "leave" => Ok(Said::Leave),
            "watchdog" => Ok(Said::Watchdog),
            other => Err(format!("unknown cmd {other:?}")),
        }
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
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

    fn parse(line: &str) -> Result<Said, Refusal> {
        Said::parse(line.as_bytes())
    }

    #[test]
    fn hex_both_ways() {
        assert_eq!(to_hex(&[0, 0xab, 7]), "00ab07");
        assert_eq!(from_hex("00ab07"), Some(vec![0, 0xab, 7]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(""), Some(vec![]));
    }

    #[test]
    fn every_command() {
        assert_eq!(parse(r#"{"state":"0a"}"#), Ok(Said::State(vec![10])));
        assert_eq!(
            parse(r#"{"cmd":"state","state":"0a"}"#),
            Ok(Said::State(vec![10]))
        );
        assert_eq!(
            parse(r#"{"cmd":"checkpoint","id":7}"#),
            Ok(Said::Checkpoint(7))
        );
        assert_eq!(
            parse(r#"{"cmd":"submit","id":3,"payload":{"a":[1]}}"#),
            Ok(Said::Submit {
                id: 3,
                payload: Payload(RawValue::from_string(r#"{"a":[1]}"#.into()).unwrap())
            })
        );
        assert_eq!(parse(r#"{"cmd":"done","id":3}"#), Ok(Said::Done(3)));
        assert_eq!(parse(r#"{"cmd":"retry","id":3}"#), Ok(Said::Retry(3)));
        assert_eq!(parse(r#"{"cmd":"ready"}"#), Ok(Said::Ready));
        assert_eq!(parse(r#"{"cmd":"leave"}"#), Ok(Said::Leave));
    }

    #[test]
    fn what_is_refused_says_why() {
        let refused = |line: &str, why: &str| {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        };
        refused("{", "not a JSON object");
        refused("[1]", "not a JSON object");
        refused(r#"{"id":1}"#, "no \"cmd\"");
        refused(r#"{"cmd":"launch"}"#, "unknown cmd \"launch\"");
        refused(r#"{"cmd":"done"}"#, "done: \"id\"");
        refused(r#"{"cmd":"done","id":-1}"#, "done: \"id\"");
        refused(r#"{"cmd":"submit","id":0}"#, "ids start at 1");
        refused(r#"{"cmd":"state","state":"xyz"}"#, "hex");
        let big = format!(
            r#"{{"cmd":"submit","id":1,"payload":"{}"}}"#,
            "x".repeat(MAX_PAYLOAD)
        );
        refused(&big, "at most 16384");
    }
}
