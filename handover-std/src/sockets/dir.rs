//! The coordination directory of a scope: its lock (one newcomer at a time), and
//! the owner's Unix socket, which passes the listening sockets on with
//! `SCM_RIGHTS`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::Listener;

/// A coordination directory: where the instances of one scope on one host pass
/// their listening sockets on.
///
/// Files, per scope: `<scope>.lock`, held by the instance taking over (one at a
/// time), and `<scope>.sock`, where the current owner serves the sockets.
#[derive(Debug, Clone)]
pub struct SocketDir {
    lock: PathBuf,
    sock: PathBuf,
}

/// What asking the current owner gave.
#[derive(Debug)]
pub enum Taken {
    /// Its sockets, with their names.
    Sockets(Vec<(String, OwnedFd)>),
    /// Nobody serves sockets here (the first instance, or the owner is gone).
    NoOwner,
    /// The owner runs in another network namespace (another container on a
    /// bridge): its sockets would listen on its own address, not ours.
    OtherNetwork,
}

/// The first line of each side's message: the format, and the network namespace
/// the sender runs in.
const HELLO: &str = "handover-sockets/1";

/// At most this many sockets are passed on.
pub const MAX_SOCKETS: usize = 64;

impl SocketDir {
    /// The directory `dir` (created `0700` if missing; refused if others may write
    /// in it) for `scope`.
    pub fn open(dir: &Path, scope: &str) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        if meta.uid() != rustix::process::geteuid().as_raw() || meta.mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} must belong to this user and be writable by no one else (mode {:o})",
                    dir.display(),
                    meta.permissions().mode() & 0o777
                ),
            ));
        }
        // One file name per scope, short enough for a socket path whatever the
        // names balena gives.
        let dir_len = dir.as_os_str().len();
        let file = crate::names::socket_stem(dir_len, scope).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the directory's path is {dir_len} bytes, too long for a socket in it: \
                     at most {} bytes",
                    crate::names::MAX_SOCKET_DIR
                ),
            )
        })?;
        Ok(SocketDir {
            lock: dir.join(format!("{file}.lock")),
            sock: dir.join(format!("{file}.sock")),
        })
    }

    /// Takes the lock that makes this instance the one taking over, waiting while
    /// another holds it. It is released when the guard is dropped (or the process
    /// dies).
    ///
    /// The wait polls, so that dropping the future (a stop signal meanwhile) ends
    /// it at once.
    pub async fn lock(&self) -> io::Result<DirLock> {
        let mut warned = false;
        loop {
            if let Some(lock) = try_lock(&self.lock)? {
                return Ok(lock);
            }
            // Two upgrades at once: worth a line, the wait may be long.
            if !std::mem::replace(&mut warned, true) {
                tracing::warn!(
                    "another instance is taking over ({} is locked): waiting until it is \
                     in charge or gone",
                    self.lock.display()
                );
            }
            tokio::time::sleep(LOCK_POLL).await;
        }
    }

    /// Asks the current owner for its sockets (waiting at most `timeout` for an
    /// answer).
    pub async fn take(&self, timeout: Duration) -> io::Result<Taken> {
        let sock = self.sock.clone();
        tokio::task::spawn_blocking(move || take(&sock, timeout))
            .await
            .map_err(io::Error::other)?
    }

    /// Serves `listeners` to the instances that take over from this one, from now
    /// on: this instance is the owner.
    pub fn serve(&self, listeners: Vec<Listener>) -> io::Result<Owner> {
        // Bound under a name of its own, then renamed into place: a newcomer finds
        // either the old owner or this one, never no socket.
        let temporary = self
            .sock
            .with_extension(format!("sock.{:016x}", crate::link::random_u64()));
        let listener = UnixListener::bind(&temporary)?;
        std::fs::rename(&temporary, &self.sock)?;
        let inode = std::fs::metadata(&self.sock)?.ino();
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let handed_off = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(listener, listeners, handed_off.clone()));
        Ok(Owner {
            task,
            handed_off,
            path: self.sock.clone(),
            lock: self.lock.clone(),
            inode,
        })
    }
}

/// How often a newcomer waiting for the lock tries again.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// The lock at `path`, if no one else holds it. The file is this user's alone
/// (0600, even if an older version made it 0644): another local user who could
/// open it could hold the lock and block every upgrade.
fn try_lock(path: &Path) -> io::Result<Option<DirLock>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let fd = OwnedFd::from(file);
    match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(DirLock { _fd: fd })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The lock held by the instance taking over.
#[derive(Debug)]
pub struct DirLock {
    _fd: OwnedFd,
}

/// This instance serving its sockets to its successors.
#[derive(Debug)]
pub struct Owner {
    task: tokio::task::JoinHandle<()>,
    handed_off: Arc<AtomicBool>,
    path: PathBuf,
    /// The directory's lock: a successor holds it until its own socket is in place.
    lock: PathBuf,
    inode: u64,
}

impl Owner {
    /// Whether an instance in this network namespace has taken the sockets: then
    /// it accepts from the same queues, and nothing needs forwarding.
    pub fn handed_off(&self) -> bool {
        self.handed_off.load(Ordering::Relaxed)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.task.abort();
        // The socket file goes with its owner, unless a successor replaced it or
        // is about to: one that holds the lock renames its own into place, and
        // between our check and our unlink it could, so only the lock's holder
        // may unlink.
        let Ok(Some(_lock)) = try_lock(&self.lock) else {
            return;
        };
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// This process's network namespace, as `dev:inode` of its `/proc` entry.
fn network_namespace() -> io::Result<String> {
    let meta = std::fs::metadata("/proc/self/ns/net")?;
    Ok(format!("{}:{}", meta.dev(), meta.ino()))
}

/// The peer may receive (or send) our sockets: it runs as our user, or as root.
fn trusted(stream: &impl AsFd) -> io::Result<()> {
    let peer = rustix::net::sockopt::socket_peercred(stream)?;
    let me = rustix::process::geteuid();
    if peer.uid == me || peer.uid.is_root() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the peer runs as uid {}, not {}",
                peer.uid.as_raw(),
                me.as_raw()
            ),
        ))
    }
}

async fn serve(
    listener: tokio::net::UnixListener,
    listeners: Vec<Listener>,
    handed_off: Arc<AtomicBool>,
) {
    let Ok(here) = network_namespace() else {
        return;
    };
    let listeners = Arc::new(listeners);
    // The clients being answered: dropped with this task (the owner's end).
    let mut clients = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = clients.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            // Out of descriptors (EMFILE) and the like: the connection waits in
            // the queue; trying again at once would spin a core.
            Err(e) => {
                tracing::warn!("accepting on the sockets' coordination socket: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // On the protocol's thread, so nothing here may block; and each client on
        // its own, so that one that says nothing (given up after the timeout)
        // holds no one else.
        let (here, listeners, handed_off) = (here.clone(), listeners.clone(), handed_off.clone());
        clients.spawn(async move {
            let answer = tokio::time::timeout(TAKE_TIMEOUT, answer(&stream, &here, &listeners));
            log_answer(answer.await, &handed_off);
        });
    }
}

fn log_answer(
    answer: Result<io::Result<bool>, tokio::time::error::Elapsed>,
    handed_off: &AtomicBool,
) {
    match answer {
        Ok(Ok(true)) => {
            tracing::info!("listening sockets passed to the instance taking over");
            handed_off.store(true, Ordering::Relaxed);
        }
        Ok(Ok(false)) => tracing::info!(
            "an instance in another network namespace asked for the listening \
                 sockets: not passed"
        ),
        Ok(Err(e)) => tracing::warn!("passing the listening sockets failed: {e}"),
        Err(_) => tracing::warn!(
            "passing the listening sockets failed: no request within {TAKE_TIMEOUT:?}"
        ),
    }
}

/// Answers one newcomer: its sockets if it runs in this network namespace
/// (`true`), else only where this one runs.
async fn answer(
    stream: &tokio::net::UnixStream,
    here: &str,
    listeners: &[Listener],
) -> io::Result<bool> {
    trusted(stream)?;
    let mut buf = [0u8; 256];
    let n = loop {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    let hello = parse_hello(&buf[..n])?;
    let mut text = format!("{HELLO} {here}\n");
    let fds: Vec<BorrowedFd> = match hello == here {
        true => {
            for l in listeners {
                text.push_str(l.name());
                text.push('\n');
            }
            listeners.iter().map(|l| l.as_fd()).collect()
        }
        false => Vec::new(),
    };
    loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || send(stream, &text, &fds)) {
            Ok(()) => return Ok(hello == here),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How long the owner waits after a failed `accept` before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The newcomer's side of [`serve`].
fn take(sock: &Path, timeout: Duration) -> io::Result<Taken> {
    let stream = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Taken::NoOwner)
        }
        Err(e) => return Err(e),
    };
    trusted(&stream)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let here = network_namespace()?;
    send(&stream, &format!("{HELLO} {here}\n"), &[])?;

    let mut data = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let text = String::from_utf8_lossy(&data[..received.bytes]);
    let mut lines = text.lines();
    let there = lines
        .next()
        .and_then(|l| l.strip_prefix(HELLO))
        .map(str::trim)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a handover owner"))?;
    if there != here {
        return Ok(Taken::OtherNetwork);
    }
    let names: Vec<String> = lines.map(str::to_owned).collect();
    if names.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} names for {} sockets", names.len(), fds.len()),
        ));
    }
    Ok(Taken::Sockets(names.into_iter().zip(fds).collect()))
}

fn parse_hello(message: &[u8]) -> io::Result<String> {
    let line = std::str::from_utf8(message).unwrap_or("");
    line.strip_prefix(HELLO)
        .map(|rest| rest.trim().to_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a handover instance"))
}

/// One message: `text` and, with it, `fds`.
fn send(stream: &impl AsFd, text: &str, fds: &[BorrowedFd]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("more than {MAX_SOCKETS} sockets"),
        ));
    }
    rustix::net::sendmsg(
        stream,
        &[IoSlice::new(text.as_bytes())],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// How long a newcomer waits for the owner to answer.
pub(super) const TAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default coordination directory: on balena in the volume of its hand-over
/// (`/tmp/balena`), else the user's runtime directory, else `/run/handover` (root)
/// or a directory of this user's under the temporary directory.
pub fn default_dir() -> PathBuf {
    let balena = Path::new("/tmp/balena");
    if balena.is_dir() {
        return balena.join("handover-sockets");
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(runtime).join("handover");
    }
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/handover");
    }
    std::env::temp_dir().join(format!("handover-{}", uid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this user's, mode 0700.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "handover-{name}-{}-{:x}",
            std::process::id(),
            crate::link::random_u64()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn an_owner_unlinks_its_socket_only_while_no_successor_holds_the_lock() {
        let dir = scratch("owner-drop");
        let sockets = SocketDir::open(&dir, "svc").unwrap();
        let old = sockets.serve(Vec::new()).unwrap();
        let inode = std::fs::metadata(&sockets.sock).unwrap().ino();

        // A successor holds the lock and is about to rename its own socket into
        // place: the old owner's socket is still the one there, yet it stays.
        let successor = sockets.lock().await.unwrap();
        drop(old);
        let kept = std::fs::metadata(&sockets.sock).map(|m| m.ino());
        assert_eq!(
            kept.ok(),
            Some(inode),
            "unlinked while a successor held the lock"
        );
        let new = sockets.serve(Vec::new()).unwrap();
        drop(successor);

        // With the lock free, an owner whose socket is in place removes it.
        drop(new);
        assert!(
            !sockets.sock.exists(),
            "the last owner's socket was left behind"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
