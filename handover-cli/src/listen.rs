//! `--listen`: listening sockets that `handover` owns and passes to its service,
//! from one instance to the next.
//!
//! At start an instance takes the coordination directory's lock (one instance
//! takes over at a time), then its sockets: those systemd passed to `handover`,
//! else the current owner's (the same sockets: one accept queue), else fresh ones.
//! Its service gets them by systemd's convention. Once the instance is in charge it
//! becomes the owner and lets the lock go. Superseded by an instance that could not
//! take the sockets (another network namespace: bridge networking), it forwards
//! the connections that still reach it to the successor.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use handover_std::sockets::{Address, DirLock, ListenSpec, Listener, Owner, SocketDir, Taken};
use serde_json::json;

use crate::log::Log;

/// How long a newcomer waits for the owner to answer.
const TAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long binding fresh retries an address still held by a dying predecessor.
const BIND_RETRY: Duration = Duration::from_secs(3);

/// The default coordination directory: on balena the volume its hand-over uses,
/// else the user's runtime directory, else `/run/handover`.
pub fn default_dir() -> PathBuf {
    let balena = Path::new("/tmp/balena");
    if balena.is_dir() {
        return balena.join("handover-sockets");
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("handover");
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/handover");
    }
    std::env::temp_dir().join(format!("handover-{}", rustix::process::geteuid().as_raw()))
}

/// This instance's listening sockets and its part in passing them on.
pub struct Sockets {
    /// In `--listen` order: the service's descriptors 3, 4, ...
    pub listeners: Vec<Listener>,
    dir: SocketDir,
    /// Held from start until this instance owns the sockets.
    lock: Option<DirLock>,
    owner: Option<Owner>,
}

impl Sockets {
    /// Takes the lock, then the sockets `specs` asks for.
    pub async fn acquire(
        specs: &[ListenSpec],
        dir: &Path,
        scope: &str,
        log: Log,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let socket_dir = SocketDir::open(dir, scope)
            .map_err(|e| format!("--sockets-dir {}: {e}", dir.display()))?;
        let lock = socket_dir.lock().await?;

        let mut offered: Vec<(String, OwnedFd)> = handover_std::sockets::from_systemd();
        let mut from = if offered.is_empty() { "" } else { "systemd" };
        if offered.is_empty() {
            match socket_dir.take(TAKE_TIMEOUT).await {
                Ok(Taken::Sockets(sockets)) => {
                    offered = sockets;
                    from = "previous instance";
                }
                Ok(Taken::NoOwner) => {}
                Ok(Taken::OtherNetwork) => tracing::info!(
                    "the instance in charge runs in another network namespace: \
                     binding fresh sockets (it forwards to this one once superseded)"
                ),
                Err(e) => tracing::warn!(
                    "the previous instance did not pass its sockets ({e}): binding \
                     fresh ones; connections queued in its sockets may have been lost"
                ),
            }
        }

        let mut listeners = Vec::new();
        let (mut inherited, mut bound) = (Vec::new(), Vec::new());
        for spec in specs {
            let adopted = offered
                .iter()
                .position(|(name, _)| *name == spec.name)
                .and_then(|i| Listener::adopt(&spec.name, offered.swap_remove(i).1, spec));
            let listener = match adopted {
                Some(listener) => {
                    inherited.push(spec.name.clone());
                    listener
                }
                None => {
                    bound.push(spec.name.clone());
                    bind(spec)
                        .await
                        .map_err(|e| format!("--listen {spec}: {e}"))?
                }
            };
            listeners.push(listener);
        }
        log.event(
            "sockets",
            json!({ "inherited": inherited, "from": from, "bound": bound }),
        );
        Ok(Sockets {
            listeners,
            dir: socket_dir,
            lock: Some(lock),
            owner: None,
        })
    }

    /// Whether this instance serves its sockets to its successors yet.
    pub fn owning(&self) -> bool {
        self.owner.is_some()
    }

    /// This instance is in charge: it serves its sockets to the next, and the next
    /// may come.
    pub fn own(&mut self, log: Log) -> std::io::Result<()> {
        let copies = self
            .listeners
            .iter()
            .map(Listener::try_clone)
            .collect::<std::io::Result<Vec<_>>>()?;
        self.owner = Some(self.dir.serve(copies)?);
        self.lock = None;
        log.event("sockets_owned", json!({}));
        Ok(())
    }

    /// Whether the successor took the sockets (one accept queue: nothing to
    /// forward).
    pub fn handed_off(&self) -> bool {
        self.owner.as_ref().is_some_and(Owner::handed_off)
    }

    /// Sets up `cmd` to receive the sockets by systemd's convention: descriptors
    /// from 3, `LISTEN_FDS`, `LISTEN_FDNAMES`, and `LISTEN_PID` set to the
    /// service's own pid (by `handover exec-service`, which execs it in place).
    /// The returned descriptors must live until the command is spawned.
    pub fn pass_to(&self, cmd: &mut Command) -> std::io::Result<Vec<OwnedFd>> {
        let n = self.listeners.len() as i32;
        // Copies numbered past the targets, so that placing one never closes
        // another.
        let sources = self
            .listeners
            .iter()
            .map(|l| rustix::io::fcntl_dupfd_cloexec(l.as_fd(), 3 + n).map_err(Into::into))
            .collect::<std::io::Result<Vec<OwnedFd>>>()?;
        let raw: Vec<i32> = sources.iter().map(|fd| fd.as_raw_fd()).collect();
        cmd.env("LISTEN_FDS", n.to_string())
            .env(
                "LISTEN_FDNAMES",
                handover_std::sockets::fd_names(&self.listeners),
            )
            .env_remove("LISTEN_PID");
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

    /// Superseded by an instance that did not take the sockets: accepts what still
    /// reaches them and forwards it to `successor` (same port), until `stop`
    /// resolves. TCP only: a datagram or a Unix socket has nowhere to go.
    pub async fn forward(&self, successor: Ipv4Addr, log: Log, stop: impl std::future::Future) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in &self.listeners {
            let Address::Tcp(_) = listener.spec().address else {
                continue;
            };
            let (Some(port), Ok(copy)) = (listener.port(), listener.try_clone()) else {
                continue;
            };
            let Ok(accepting) = copy.into_tokio_tcp() else {
                continue;
            };
            let to = SocketAddr::from((successor, port));
            log.event(
                "forwarding",
                json!({ "name": listener.name(), "to": to.to_string() }),
            );
            tasks.spawn(forward(accepting, to));
        }
        stop.await;
    }
}

/// Binds `spec`, retrying while its address is still held by a predecessor that
/// is going away.
async fn bind(spec: &ListenSpec) -> std::io::Result<Listener> {
    let deadline = tokio::time::Instant::now() + BIND_RETRY;
    loop {
        match Listener::bind(spec.clone()) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn forward(listener: tokio::net::TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(to).await {
                Ok(mut server) => {
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(e) => tracing::warn!("forwarding to {to}: {e}"),
            }
        });
    }
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

/// `handover exec-service -- CMD...`: sets `LISTEN_PID` to this process's pid and
/// becomes the service (same pid), so that libraries accept the sockets.
pub fn exec_service(command: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command");
    };
    Command::new(program)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .exec()
}
