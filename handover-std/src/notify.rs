//! The systemd readiness protocol (`sd_notify`) from the service's side: `handover run`
//! gives its child a `NOTIFY_SOCKET` and treats `READY=1` as readiness, so services
//! that already support systemd's `Type=notify` need no change.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// What one notification datagram says. Unknown assignments are ignored, as systemd
/// does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// `READY=1`: the service is ready.
    pub ready: bool,
    /// `STOPPING=1`: the service is shutting down.
    pub stopping: bool,
    /// `STATUS=...`: free-form status text.
    pub status: Option<String>,
    /// The assignments a supervisor passes on to its own service manager, one per
    /// line: [`PASSED_ON`]. Readiness is the supervisor's own to report, and the
    /// main pid is the supervisor's.
    pub pass_on: String,
}

/// The assignments `handover run` passes on from its service to systemd.
pub const PASSED_ON: [&str; 6] = [
    "STATUS",
    "STOPPING",
    "WATCHDOG",
    "EXTEND_TIMEOUT_USEC",
    "RELOADING",
    "ERRNO",
];

/// Parses one notification: newline-separated `KEY=VALUE` assignments. Lines that are
/// not UTF-8 or have no `=` are skipped; the rest of the datagram still counts.
pub fn parse(datagram: &[u8]) -> Notification {
    let mut n = Notification::default();
    for line in datagram.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "READY" => n.ready |= value == "1",
            "STOPPING" => n.stopping |= value == "1",
            "STATUS" => n.status = Some(value.to_owned()),
            _ => {}
        }
        if PASSED_ON.contains(&key) {
            n.pass_on.push_str(line);
            n.pass_on.push('\n');
        }
    }
    n
}

/// Sends `READY=1` to the service manager named by `NOTIFY_SOCKET`, if any: lets
/// `handover run` itself be a systemd `Type=notify` service.
pub fn notify_ready() -> io::Result<()> {
    notify(b"READY=1")
}

/// Sends `state` (newline-separated assignments) to the service manager named by
/// `NOTIFY_SOCKET`, if any. Abstract socket names (`@name`) are supported.
pub fn notify(state: &[u8]) -> io::Result<()> {
    send(state, false)
}

/// [`notify`] that never waits: when the service manager's socket is full the
/// datagram is dropped (`WouldBlock`). For a supervisor passing on its service's
/// notifications from the thread that runs the protocol.
pub fn try_notify(state: &[u8]) -> io::Result<()> {
    send(state, true)
}

fn send(state: &[u8], nonblocking: bool) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(nonblocking)?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state, &addr)?;
    } else {
        socket.send_to(state, Path::new(&target))?;
    }
    Ok(())
}

/// A notification socket for a child, removed when dropped.
#[derive(Debug)]
pub struct NotifySocket {
    socket: tokio::net::UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a fresh socket in `dir`, after removing those that processes killed
    /// before they could remove theirs left there.
    ///
    /// Named at random, not after the process: the old and the new container of a
    /// service may both run `handover` as pid 1 and share the directory, and an
    /// existing name is never taken over (its socket may be another's, live).
    pub fn bind(dir: &Path) -> io::Result<Self> {
        remove_stale(dir);
        let path = dir.join(format!(
            "handover-{:016x}.notify",
            crate::link::random_u64()
        ));
        let socket = tokio::net::UnixDatagram::bind(&path)?;
        Ok(NotifySocket { socket, path })
    }

    /// The path to hand to the child as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next notification.
    pub async fn recv(&self) -> io::Result<Notification> {
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).await?;
        Ok(parse(&buf[..n]))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the notification sockets in `dir` that nobody is bound to any more (a
/// `handover` ended by SIGKILL, or by the OOM killer, cannot remove its own): such
/// a socket refuses a connection, where a live one accepts it, whichever container
/// it belongs to. Sockets of other users stay (the connection is denied, not
/// refused), as does everything else.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if !(name.starts_with(b"handover-") && name.ends_with(b".notify")) {
            continue;
        }
        let path = entry.path();
        let refused = UnixDatagram::unbound()
            .and_then(|probe| probe.connect(&path))
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
        if refused {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        let n = parse(b"STATUS=warming up\nREADY=1\nMAINPID=42\nWATCHDOG=1");
        assert!(n.ready);
        assert!(!n.stopping);
        assert_eq!(n.status.as_deref(), Some("warming up"));
        assert_eq!(
            n.pass_on, "STATUS=warming up\nWATCHDOG=1\n",
            "not READY, not MAINPID"
        );
        assert_eq!(parse(b"READY=0"), Notification::default());
    }

    #[test]
    fn skips_garbage_lines() {
        let n = parse(b"\xff\xfe\nnonsense\n\nREADY=1\n");
        assert!(n.ready);
        assert_eq!(parse(b""), Notification::default());
    }

    #[tokio::test]
    async fn receives_from_a_child() {
        let dir = std::env::temp_dir();
        let socket = NotifySocket::bind(&dir).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", socket.path()).unwrap();
        assert!(socket.recv().await.unwrap().ready);
        let path = socket.path().to_owned();
        drop(socket);
        assert!(!path.exists(), "socket file removed on drop");
    }

    /// Sockets left by killed processes go; live ones, another process's
    /// included, and other files stay; two sockets in one directory never share a
    /// name.
    #[tokio::test]
    async fn binding_removes_only_what_nobody_is_bound_to() {
        let dir = std::env::temp_dir().join(format!("handover-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A killed process's socket: its file outlives it (no drop ran).
        let stale = dir.join("handover-00000000000000aa.notify");
        drop(UnixDatagram::bind(&stale).unwrap());
        // The name an earlier release gave, by pid.
        let stale_by_pid = dir.join("handover-1-0.notify");
        drop(UnixDatagram::bind(&stale_by_pid).unwrap());
        let live_path = dir.join("handover-00000000000000bb.notify");
        let live = UnixDatagram::bind(&live_path).unwrap();
        let other = dir.join("handover-00000000000000cc.sock");
        std::fs::write(&other, b"").unwrap();
        assert!(stale.exists() && stale_by_pid.exists());

        let first = NotifySocket::bind(&dir).unwrap();
        let second = NotifySocket::bind(&dir).unwrap();
        assert!(!stale.exists(), "a socket nobody is bound to");
        assert!(
            !stale_by_pid.exists(),
            "an earlier release's, nobody bound to it"
        );
        assert!(live_path.exists(), "a live socket");
        assert!(other.exists(), "not a notification socket");
        assert!(first.path().exists() && second.path().exists());
        assert_ne!(first.path(), second.path());
        // The live one still hears what is sent to it.
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"READY=1", &live_path)
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(live.recv(&mut buf).unwrap(), 7);
        drop((first, second, live));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
