//! `handover run`'s options as users give them: every one also from a `HANDOVER_*`
//! variable, and bad values refused with a message that names the option.

use std::process::Command;
use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{handover_bin, Run};
use handover_tests::require_netns;

const WAIT: Duration = Duration::from_secs(10);

/// `handover run` in `ns` with `env` and nothing else on its command line but the
/// service; the first line it prints about itself.
fn listening_with(ns: &Netns, env: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = ns.command(handover_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HANDOVER_LOG_FORMAT", "json")
        .env("HANDOVER_COMPLETE_FILE", "/nonexistent/complete")
        .envs(env.iter().copied())
        .args(["run", "--", "sleep", "1000"]);
    let mut run = Run::spawn(cmd);
    let listening = run
        .wait_event("listening", WAIT)
        .unwrap_or_else(|| panic!("listening with {env:?}: {:?}", run.seen));
    run.kill();
    listening
}

#[test]
fn every_run_option_reads_its_variable() {
    require_netns!();
    let ns = Netns::new();
    // The variable, its value, and the field of the `listening` event that shows it.
    let table: &[(&str, &str, &str, serde_json::Value)] = &[
        ("HANDOVER_SCOPE", "from-env", "scope", "from-env".into()),
        ("HANDOVER_GROUP", "239.1.2.3", "group", "239.1.2.3".into()),
        ("HANDOVER_PORT", "4321", "port", 4321.into()),
        ("HANDOVER_HEARTBEAT", "250ms", "heartbeat_ms", 250.into()),
        ("HANDOVER_MODE", "failover", "mode", "failover".into()),
        ("HANDOVER_PRIORITY", "42", "priority", 42.into()),
        ("HANDOVER_LEGACY", "true", "legacy", true.into()),
        ("HANDOVER_STOP_SIGNAL", "SIGINT", "stop_signal", 2.into()),
        (
            "HANDOVER_STOP_TIMEOUT",
            "5s",
            "stop_timeout_ms",
            5000.into(),
        ),
        (
            "HANDOVER_INTERFACE",
            "lo",
            "interfaces",
            serde_json::json!(["lo"]),
        ),
    ];
    for (var, value, field, expected) in table {
        let listening = listening_with(&ns, &[(var, value)]);
        assert_eq!(&listening[field], expected, "{var}={value}: {listening}");
    }
    // The log format's variable is the one every line above relied on.
}

/// `handover run` with `args` (and `env`) that must be refused: its stderr.
fn refused(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(handover_bin())
        .envs(env.iter().copied())
        .arg("run")
        .args(args)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{env:?} {args:?} accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Variables, arguments, and what the message must contain.
type BadValue = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn bad_values_name_the_option() {
    let cases: &[BadValue] = &[
        (&[], &["--port", "0"], &["--port", "1 to 65535"]),
        (&[("HANDOVER_PORT", "0")], &[], &["--port", "1 to 65535"]),
        (&[], &["--group", "10.0.0.1"], &["--group", "multicast"]),
        (
            &[],
            &["--heartbeat", "abc"],
            &["--heartbeat", "expected a duration like 500ms or 2s"],
        ),
        (
            &[],
            &["--heartbeat", "5ms"],
            &["--heartbeat", "10ms to 60s"],
        ),
        (&[], &["--heartbeat", "2m"], &["--heartbeat", "10ms to 60s"]),
        (
            &[("HANDOVER_STOP_TIMEOUT", "soon")],
            &[],
            &["--stop-timeout", "500ms or 2s"],
        ),
        (
            &[],
            &["--stop-signal", "SIGFOO"],
            &["--stop-signal", "SIGFOO"],
        ),
        (&[], &["--mode", "leader"], &["--mode", "leader"]),
        (
            &[],
            &["--listen", "http"],
            &["--listen", "NAME=tcp:ADDR:PORT"],
        ),
        (
            &[],
            &["--listen", "web=sctp:80"],
            &["--listen", "tcp:ADDR:PORT"],
        ),
        (
            &[],
            &["--listen", "http=tcp:8080", "--ready-tcp", "8080"],
            &["--ready-tcp 8080", "READY=1"],
        ),
        (
            &[("HANDOVER_LISTEN", "http=tcp:0.0.0.0:8080")],
            &["--ready-http", "http://127.0.0.1:8080/health"],
            &["--ready-http", "another port"],
        ),
        (
            &[],
            &["--listen", "http=tcp:8080", "--mode", "failover"],
            &["--listen", "hand-over mode only"],
        ),
        (
            &[],
            &[
                "--mode",
                "failover",
                "--standby",
                "hot",
                "--election",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
            ],
            &["--standby hot", "--election etcd", "--standby cold"],
        ),
    ];
    for (env, args, expected) in cases {
        let stderr = refused(env, args);
        for part in *expected {
            assert!(
                stderr.contains(part),
                "{env:?} {args:?}: {part:?} not in {stderr}"
            );
        }
    }
}

#[test]
fn a_missing_command_exits_127_like_a_shell() {
    require_netns!();
    let ns = Netns::new();
    let mut run = Run::start(
        &ns,
        &[
            "run",
            "--interface",
            "lo",
            "--complete-file",
            "/nonexistent/complete",
            "--",
            "/nonexistent/service",
        ],
    );
    assert_eq!(run.wait(WAIT).and_then(|s| s.code()), Some(127));
}
