//! The systemd template unit (`examples/systemd/handover@.service`) as systemd
//! reads it: `systemd-analyze verify` finds nothing to say, and its `ExecStart`
//! line is one `handover` accepts.
//!
//! Needs `systemd-analyze` (Debian's `systemd`) and, for the second test, root;
//! skips with the reason otherwise, and fails under `CI=true`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handover_tests::netns::Netns;
use handover_tests::process::{handover_bin, scratch, Run};
use handover_tests::{require, require_netns};

const INSTALLED: &str = "/usr/local/bin/handover";

fn unit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/systemd/handover@.service");
    std::fs::read_to_string(path).expect("the template unit")
}

fn missing_systemd_analyze() -> Option<String> {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
        .then(|| "systemd-analyze is not installed (Debian's systemd)".to_string())
}

#[test]
fn systemd_verifies_the_template_unit() {
    require!(missing_systemd_analyze());
    // systemd checks that ExecStart's program exists: the one built here stands in
    // for the installed one.
    let bin = handover_bin();
    let text = unit().replace(INSTALLED, bin.to_str().expect("UTF-8 path"));
    let dir = scratch("systemd-unit");
    std::fs::write(dir.join("handover@.service"), text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("handover@v1.service"))
        .output()
        .expect("systemd-analyze");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ExecStart=` of instance `instance`: its continuation lines joined, `%i`
/// replaced, split into words (the unit quotes nothing).
fn exec_start(instance: &str) -> Vec<String> {
    let text = unit().replace("\\\n", " ").replace("%i", instance);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn handover_accepts_the_units_command_line() {
    require_netns!();
    let argv = exec_start("v1");
    assert_eq!(argv[0], INSTALLED);
    // The service is not installed here: `handover` parses every option, opens its
    // sockets, then cannot start the command and exits 127, as a shell would.
    let ns = Netns::new();
    let mut cmd = ns.command(handover_bin());
    cmd.env("HANDOVER_LOG_FORMAT", "json").args(&argv[1..]);
    let mut run = Run::spawn(cmd);
    assert!(
        run.saw("listening", Duration::from_secs(5)),
        "options accepted: {:?}",
        run.seen
    );
    let status = run.wait(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(127));
}
