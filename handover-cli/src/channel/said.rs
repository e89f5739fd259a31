//! What a service may say on the channel: one JSON object per line, named by its
//! `cmd`. Anything else is an error the service is told about, never the end of
//! the channel.

use serde_json::Value;

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
    Submit { id: u64, payload: Value },
    /// The task handed out as `run` is done.
    Done(u64),
    /// The task handed out as `run` must run again.
    Retry(u64),
    /// The service is ready.
    Ready,
    /// Leave the group, as on SIGTERM.
    Leave,
}

/// Why a line was not understood: the service is told this.
pub type Refusal = String;

impl Said {
    /// Reads one line. Version 0's `{"state":"<hex>"}` (no `cmd`) is still a
    /// state.
    pub fn parse(line: &[u8]) -> Result<Said, Refusal> {
        let v: Value =
            serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
        let Some(object) = v.as_object() else {
            return Err("not a JSON object".into());
        };
        let cmd = match object.get("cmd") {
            Some(Value::String(cmd)) => cmd.as_str(),
            Some(_) => return Err("\"cmd\" is not a string".into()),
            None if object.contains_key("state") => "state",
            None => return Err("no \"cmd\"".into()),
        };
        let id = || {
            object
                .get("id")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{cmd}: \"id\" must be a whole number from 0"))
        };
        match cmd {
            "state" => {
                let hex = object.get("state").and_then(Value::as_str);
                hex.and_then(from_hex)
                    .map(Said::State)
                    .ok_or_else(|| "state: \"state\" must be a string of hex digits".into())
            }
            "checkpoint" => Ok(Said::Checkpoint(id()?)),
            "submit" => {
                let id = id()?;
                if id == 0 {
                    return Err("submit: ids start at 1 (0 is before every task)".into());
                }
                let payload = object.get("payload").cloned().unwrap_or(Value::Null);
                let size = payload.to_string().len();
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
                payload: serde_json::json!({"a":[1]})
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
