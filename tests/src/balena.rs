//! `handover run` started as balena starts a container's entrypoint: the
//! environment the supervisor gives a service (device, service name, complete
//! path) and nothing about the network.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::netns::Netns;
use crate::process::fake_service;

/// `LAUNCHER... --log-format json run EXTRA -- fake-service MARK` in `ns`, as
/// service `svc` on device `uuid` whose lock directory is `lock_dir`. `launcher` is
/// the `handover` binary, optionally behind an emulator (`qemu-aarch64-static`).
pub fn entrypoint<S: AsRef<OsStr>>(
    ns: &Netns,
    launcher: &[S],
    uuid: &str,
    lock_dir: &Path,
    mark: &Path,
    extra: &[&str],
) -> Command {
    let (program, prefix) = launcher.split_first().expect("a handover binary");
    let mut cmd = ns.command(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BALENA", "1")
        .env("BALENA_DEVICE_UUID", uuid)
        .env("BALENA_SERVICE_NAME", "svc")
        .env(
            "BALENA_SERVICE_HANDOVER_COMPLETE_PATH",
            lock_dir.join("handover-complete"),
        )
        .args(prefix)
        .args(["--log-format", "json", "run"])
        .args(extra)
        .arg("--")
        .arg(fake_service())
        .arg(mark);
    cmd
}
