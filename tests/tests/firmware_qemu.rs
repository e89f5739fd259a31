//! The protocol core on the real instruction sets: builds the scenario firmware in
//! `firmware/qemu-scenarios` for thumbv7em-none-eabihf and thumbv6m-none-eabi and
//! runs it on the emulated Cortex-M4 (qemu-system-arm, mps2-an386) and Cortex-M0
//! (`microbit`); the firmware exits with its verdict.

use std::path::Path;
use std::process::Command;

fn available(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds the scenario firmware for `target`, runs it on QEMU's board for it, and
/// checks the verdict of every scenario.
fn scenarios_pass_on(target: &str) {
    handover_tests::require!((!available("qemu-system-arm", "--version"))
        .then_some("qemu-system-arm is not installed (Debian: qemu-system-arm)"));
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing = format!("rustup target {target} is not installed");
    handover_tests::require!((!targets.contains(target)).then_some(missing));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/qemu-scenarios");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--target", target])
        .current_dir(&dir)
        // The firmware has its own workspace and target: not this build's settings.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo run in firmware/qemu-scenarios");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{target}:\n{stdout}");
    assert!(out.status.success(), "firmware failed:\n{stdout}\n{stderr}");
    for scenario in [
        "ok: hand-over",
        "ok: failover",
        "ok: hand-over with a group key",
    ] {
        assert!(
            stdout.contains(scenario),
            "missing {scenario:?} in:\n{stdout}"
        );
    }
    assert!(stdout.contains("cost: receive heartbeat ~"), "{stdout}");
}

#[test]
fn scenarios_pass_on_the_emulated_cortex_m4() {
    scenarios_pass_on("thumbv7em-none-eabihf");
}

/// Armv6-M, as the RP2040's Cortex-M0+: no compare-and-swap, no hardware divide.
#[test]
fn scenarios_pass_on_the_emulated_cortex_m0() {
    scenarios_pass_on("thumbv6m-none-eabi");
}
