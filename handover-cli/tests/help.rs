//! The command's help, as a user first meets it. (Being an integration test of this
//! package, it also makes `cargo test` build the `handover` binary that the
//! multi-process tests in `tests/` run.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_handover"))
        .args(args)
        .arg("--help")
        .output()
        .expect("handover runs");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn help_names_every_command() {
    let text = help(&[]);
    for command in ["run", "status", "watch", "demo"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{text}"
        );
    }
}

#[test]
fn run_help_shows_the_variables() {
    let text = help(&["run"]);
    for variable in [
        "HANDOVER_PORT",
        "HANDOVER_GROUP",
        "HANDOVER_HEARTBEAT",
        "HANDOVER_MODE",
        "HANDOVER_PRIORITY",
        "HANDOVER_INTERFACE",
        "HANDOVER_READY_TCP",
        "HANDOVER_READY_TIMEOUT",
        "HANDOVER_STOP_SIGNAL",
        "HANDOVER_STOP_TIMEOUT",
        "HANDOVER_LOG_FORMAT",
        "HANDOVER_KEY_FILE",
    ] {
        assert!(text.contains(variable), "{variable} missing from:\n{text}");
    }
}
