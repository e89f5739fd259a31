//! `--listen`: listening sockets that `handover` holds for its service and passes
//! from one instance to the next ([`handover_std::sockets::Sockets`]); here, how
//! the service gets them (systemd's convention) and whom to forward to.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use handover_std::sockets::{default_dir, ListenSpec, Sockets, Source};
use serde_json::json;

use crate::log::Log;

/// `--listen` with `--sockets-dir`: the sockets, passed on from this instance.
pub async fn acquire(
    specs: &[ListenSpec],
    dir: Option<&Path>,
    scope: &str,
    log: Log,
) -> Result<Sockets, Box<dyn std::error::Error>> {
    let dir = dir.map_or_else(default_dir, Path::to_path_buf);
    let sockets = Sockets::acquire(specs, &dir, scope)
        .await
        .map_err(|e| format!("--listen (--sockets-dir {}): {e}", dir.display()))?;
    let bound: Vec<&str> = specs
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !sockets.inherited().iter().any(|i| i == n))
        .collect();
    let from = match sockets.source() {
        Some(Source::Systemd) => "systemd",
        Some(Source::PreviousInstance) => "previous instance",
        None => "",
    };
    log.event(
        "sockets",
        json!({ "inherited": sockets.inherited(), "from": from, "bound": bound }),
    );
    Ok(sockets)
}

/// Sets up `cmd` to receive `sockets` by systemd's convention: descriptors from 3,
/// `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to the service's own pid
/// (by `handover exec-service`, which execs it in place). The returned descriptors
/// must live until the command is spawned.
pub fn pass_to(sockets: &Sockets, cmd: &mut Command) -> std::io::Result<Vec<OwnedFd>> {
    let listeners = sockets.listeners();
    let fds: Vec<_> = listeners.iter().map(AsFd::as_fd).collect();
    cmd.env("LISTEN_FDS", listeners.len().to_string())
        .env("LISTEN_FDNAMES", handover_std::sockets::fd_names(listeners))
        .env_remove("LISTEN_PID");
    pass_fds(cmd, &fds)
}

/// Sets up `cmd` to find `fds` as its descriptors 3, 4, ... The returned copies
/// must live until the command is spawned.
pub fn pass_fds(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> std::io::Result<Vec<OwnedFd>> {
    let n = fds.len() as i32;
    // Copies numbered past the targets, so that placing one never closes another.
    let sources = fds
        .iter()
        .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 3 + n).map_err(Into::into))
        .collect::<std::io::Result<Vec<OwnedFd>>>()?;
    let raw: Vec<i32> = sources.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: between fork and exec the closure only calls dup2, which is
    // async-signal-safe; `raw` was built before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            for (i, fd) in raw.iter().enumerate() {
                // dup2 leaves the copy without close-on-exec: it survives exec.
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(sources)
}

/// The addresses each peer announced, kept from the events.
#[derive(Clone, Default)]
pub struct PeerAddresses(Arc<Mutex<HashMap<u64, Vec<Ipv4Addr>>>>);

impl PeerAddresses {
    pub fn learn(&self, id: u64, addresses: &[Ipv4Addr]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(id, addresses.to_vec());
    }

    pub fn of(&self, id: u64) -> Option<Ipv4Addr> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id)?.first().copied()
    }
}

/// `handover exec-service -- CMD...`: sets `LISTEN_PID` (with `LISTEN_FDS`) and
/// `WATCHDOG_PID` (with `WATCHDOG_USEC`) to this process's pid and becomes the
/// service (same pid), so that libraries accept the sockets and the watchdog.
pub fn exec_service(command: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command");
    };
    let pid = std::process::id().to_string();
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (set, var) in [
        ("LISTEN_FDS", "LISTEN_PID"),
        ("WATCHDOG_USEC", "WATCHDOG_PID"),
    ] {
        if std::env::var_os(set).is_some() {
            cmd.env(var, &pid);
        }
    }
    cmd.exec()
}
