//! Listening sockets that outlive the instances serving them.
//!
//! An upgrade must not refuse or reset a connection. Binding the address again
//! cannot promise that: with `SO_REUSEPORT` each socket has its own accept queue,
//! and closing the old one resets the connections queued in it. Passing the *same*
//! socket can: the old and the new service accept from one queue until the old one
//! stops. This module
//!
//! - names sockets ([`ListenSpec`]: `NAME=tcp:ADDR:PORT`, `udp:`, `unix:PATH`) and
//!   binds them ([`Listener`]);
//! - takes the ones systemd passed to this process ([`from_systemd`]);
//! - passes them between the instances of one scope through a coordination
//!   directory ([`SocketDir`]): the current owner serves them on a Unix socket, with
//!   `SCM_RIGHTS`, to a newcomer that holds the directory's lock, and the newcomer
//!   becomes the owner once it is in charge. Only within one network namespace: in
//!   another, a socket would go on listening on the old container's address.

use std::ffi::OsStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use socket2::{Domain, Socket, Type};

/// Where a socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A TCP listener.
    Tcp(SocketAddr),
    /// A bound UDP socket.
    Udp(SocketAddr),
    /// A Unix stream listener at a path.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            Address::Udp(a) => write!(f, "udp:{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A named socket to listen on, as `--listen` takes it: `http=tcp:0.0.0.0:8080`,
/// `dns=udp:[::]:53`, `admin=unix:/run/app.sock`; `tcp:8080` means every IPv4
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name the service finds it by (`LISTEN_FDNAMES`).
    pub name: String,
    /// Where it listens.
    pub address: Address,
}

impl std::fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.address)
    }
}

impl FromStr for ListenSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, address) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=tcp:ADDR:PORT (or udp:, unix:PATH)"))?;
        // Names travel colon-separated in LISTEN_FDNAMES, and one per line here.
        let valid = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if name.is_empty() || name.len() > 255 || !name.chars().all(valid) {
            return Err(format!(
                "{name:?} is not a socket name (letters, digits, '_', '.', '-')"
            ));
        }
        let inet = |rest: &str| -> Result<SocketAddr, String> {
            if let Ok(port) = rest.parse::<u16>() {
                return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
            }
            rest.parse()
                .map_err(|_| format!("{rest:?} is not ADDR:PORT (or a port)"))
        };
        let address = if let Some(rest) = address.strip_prefix("tcp:") {
            Address::Tcp(inet(rest)?)
        } else if let Some(rest) = address.strip_prefix("udp:") {
            Address::Udp(inet(rest)?)
        } else if let Some(rest) = address.strip_prefix("unix:") {
            if rest.is_empty() || rest.contains('\n') {
                return Err(format!("{rest:?} is not a socket path"));
            }
            Address::Unix(PathBuf::from(rest))
        } else {
            return Err(format!(
                "{address:?}: say tcp:ADDR:PORT, udp:ADDR:PORT or unix:PATH"
            ));
        };
        Ok(ListenSpec {
            name: name.to_owned(),
            address,
        })
    }
}

/// A listening socket with its name: the descriptor a service inherits.
#[derive(Debug)]
pub struct Listener {
    spec: ListenSpec,
    fd: OwnedFd,
}

/// How many connections may wait in a TCP or Unix listener's queue.
const BACKLOG: i32 = 1024;

impl Listener {
    /// Binds `spec` (TCP: with `SO_REUSEADDR`, so that a restart does not wait out
    /// `TIME_WAIT`; never `SO_REUSEPORT`, which would give a second queue).
    pub fn bind(spec: ListenSpec) -> io::Result<Self> {
        let socket = match &spec.address {
            Address::Tcp(a) => {
                let s = Socket::new(Domain::for_address(*a), Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                s.bind(&(*a).into())?;
                s.listen(BACKLOG)?;
                s
            }
            Address::Udp(a) => {
                let s = Socket::new(Domain::for_address(*a), Type::DGRAM, None)?;
                s.bind(&(*a).into())?;
                s
            }
            Address::Unix(path) => {
                remove_stale(path)?;
                let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
                s.bind(&socket2::SockAddr::unix(path)?)?;
                s.listen(BACKLOG)?;
                s
            }
        };
        let bound = Listener {
            spec,
            fd: socket.into(),
        };
        Ok(bound)
    }

    /// A socket received or inherited as `name`, if it is what `spec` asks for:
    /// the same name, type and local address (any port when `spec`'s is 0).
    pub fn adopt(name: &str, fd: OwnedFd, spec: &ListenSpec) -> Option<Self> {
        if name != spec.name {
            return None;
        }
        let socket = Socket::from(fd);
        let local = socket.local_addr().ok()?;
        let ty = socket.r#type().ok()?;
        let fits = match &spec.address {
            Address::Tcp(a) | Address::Udp(a) => {
                let want = if matches!(spec.address, Address::Tcp(_)) {
                    Type::STREAM
                } else {
                    Type::DGRAM
                };
                let got = local.as_socket()?;
                ty == want
                    && got.ip() == a.ip()
                    && (a.port() == 0 || got.port() == a.port())
                    && (want == Type::DGRAM || socket.is_listener().unwrap_or(false))
            }
            Address::Unix(path) => {
                ty == Type::STREAM && local.as_pathname() == Some(path.as_path())
            }
        };
        fits.then(|| Listener {
            spec: spec.clone(),
            fd: socket.into(),
        })
    }

    /// What it is.
    pub fn spec(&self) -> &ListenSpec {
        &self.spec
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The port it is bound to (TCP and UDP).
    pub fn port(&self) -> Option<u16> {
        let local = socket2::SockRef::from(&self.fd).local_addr().ok()?;
        local.as_socket().map(|a| a.port())
    }

    /// Another descriptor of the same socket (one queue, one port).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Listener {
            spec: self.spec.clone(),
            fd: self.fd.try_clone()?,
        })
    }

    /// As a std TCP listener.
    pub fn into_tcp(self) -> io::Result<std::net::TcpListener> {
        match self.spec.address {
            Address::Tcp(_) => Ok(self.fd.into()),
            _ => Err(not_a(&self.spec, "TCP listener")),
        }
    }

    /// As a tokio TCP listener (on the current runtime).
    pub fn into_tokio_tcp(self) -> io::Result<tokio::net::TcpListener> {
        let listener = self.into_tcp()?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// As a std UDP socket.
    pub fn into_udp(self) -> io::Result<std::net::UdpSocket> {
        match self.spec.address {
            Address::Udp(_) => Ok(self.fd.into()),
            _ => Err(not_a(&self.spec, "UDP socket")),
        }
    }

    /// As a std Unix listener.
    pub fn into_unix(self) -> io::Result<UnixListener> {
        match self.spec.address {
            Address::Unix(_) => Ok(self.fd.into()),
            _ => Err(not_a(&self.spec, "Unix listener")),
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn not_a(spec: &ListenSpec, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{spec} is not a {what}"),
    )
}

/// Removes a Unix socket file nobody listens on (left by a process that died), so
/// that it can be bound again; a live one is left alone (binding then fails).
fn remove_stale(path: &Path) -> io::Result<()> {
    match UnixStream::connect(path) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        _ => Ok(()),
    }
}

/// The sockets systemd passed to this process (socket activation: descriptors from
/// 3, `LISTEN_FDS`, `LISTEN_FDNAMES`, for `LISTEN_PID`), with their names; none if
/// they were meant for another process. They are made close-on-exec: whoever
/// passes them on does so explicitly.
pub fn from_systemd() -> Vec<(String, OwnedFd)> {
    let var = |name: &str| std::env::var(name).ok();
    let ours = var("LISTEN_PID")
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = var("LISTEN_FDS").and_then(|n| n.parse::<i32>().ok());
    let (true, Some(count)) = (ours, count) else {
        return Vec::new();
    };
    let names = var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    (0..count.clamp(0, 1024))
        .filter_map(|i| {
            let name = names.next().unwrap_or("unknown").to_owned();
            // SAFETY: systemd's convention hands these descriptors to this process,
            // which (LISTEN_PID) is us; each is taken once, here.
            let fd = unsafe { OwnedFd::from_raw_fd(3 + i) };
            let flags = rustix::io::fcntl_getfd(&fd).ok()?;
            rustix::io::fcntl_setfd(&fd, flags | rustix::io::FdFlags::CLOEXEC).ok()?;
            Some((name, fd))
        })
        .collect()
}

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
                text.push_str(&l.spec.name);
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
const TAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long binding afresh retries an address still held by a predecessor that is
/// going away (its service is stopping).
const BIND_RETRY: Duration = Duration::from_secs(3);

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

/// Where an instance's sockets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// systemd passed them to this process.
    Systemd,
    /// The instance in charge passed them on.
    PreviousInstance,
}

/// A service's listening sockets, kept from one instance to the next: the sockets
/// systemd passed, else the current owner's, else fresh ones; passed on from the
/// moment this instance is in charge. What `handover run --listen` does, for
/// services that run the protocol themselves.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use handover_std::sockets::{default_dir, Sockets};
/// use handover_std::{Config, Handover};
///
/// let config = Config::from_env()?;
/// let handover = Handover::start(config.clone()).await?;
/// let specs = ["http=tcp:0.0.0.0:8080".parse()?];
/// let mut sockets = Sockets::acquire(&specs, &default_dir(), &config.scope).await?;
/// let listener = sockets.tcp("http")?;
/// // ... accept on `listener` ...
/// handover.ready().await?;
/// sockets.own_when_in_charge(&handover).await?;
/// handover.shutdown_requested().await?;
/// // ... stop accepting, finish the requests in flight ...
/// handover.shutdown_complete().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sockets {
    listeners: Vec<Listener>,
    dir: SocketDir,
    /// Held from the start until this instance owns the sockets: one instance
    /// takes over at a time.
    lock: Option<DirLock>,
    owner: Option<Owner>,
    source: Option<Source>,
    inherited: Vec<String>,
}

impl Sockets {
    /// Waits for the directory `dir`'s lock for `scope`, then takes the sockets
    /// `specs` asks for: those systemd passed, else the current owner's (the same
    /// sockets: one accept queue), else fresh ones.
    pub async fn acquire(specs: &[ListenSpec], dir: &Path, scope: &str) -> io::Result<Self> {
        let socket_dir = SocketDir::open(dir, scope)?;
        let lock = socket_dir.lock().await?;
        let mut offered = from_systemd();
        let mut source = (!offered.is_empty()).then_some(Source::Systemd);
        if offered.is_empty() {
            match socket_dir.take(TAKE_TIMEOUT).await {
                Ok(Taken::Sockets(sockets)) => {
                    offered = sockets;
                    source = Some(Source::PreviousInstance);
                }
                Ok(Taken::NoOwner) => {}
                Ok(Taken::OtherNetwork) => tracing::info!(
                    "the instance in charge runs in another network namespace: binding \
                     fresh sockets (it forwards to this one once superseded)"
                ),
                Err(e) => tracing::warn!(
                    "the previous instance did not pass its sockets ({e}): binding fresh \
                     ones; connections queued in its sockets may have been lost"
                ),
            }
        }
        let mut listeners = Vec::new();
        let mut inherited = Vec::new();
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
                None => bind_retrying(spec).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {spec}: {e}"))
                })?,
            };
            listeners.push(listener);
        }
        Ok(Sockets {
            listeners,
            dir: socket_dir,
            lock: Some(lock),
            owner: None,
            source,
            inherited,
        })
    }

    /// The sockets, in the order asked for.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Where the inherited ones came from (`None`: every socket is new).
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// The names of the sockets inherited rather than bound.
    pub fn inherited(&self) -> &[String] {
        &self.inherited
    }

    /// The socket named `name`.
    pub fn get(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name() == name)
    }

    /// The TCP listener named `name`, for tokio (a descriptor of its own: the
    /// socket stays here to be passed on).
    pub fn tcp(&self, name: &str) -> io::Result<tokio::net::TcpListener> {
        self.get(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no socket {name:?}")))?
            .try_clone()?
            .into_tokio_tcp()
    }

    /// Whether this instance passes its sockets on yet.
    pub fn owning(&self) -> bool {
        self.owner.is_some()
    }

    /// This instance is in charge: from now on it passes its sockets to the next
    /// one, and lets the next one come (the lock goes).
    pub fn own(&mut self) -> io::Result<()> {
        let copies = self
            .listeners
            .iter()
            .map(Listener::try_clone)
            .collect::<io::Result<Vec<_>>>()?;
        self.owner = Some(self.dir.serve(copies)?);
        self.lock = None;
        Ok(())
    }

    /// Waits until `handover` is in charge, then [`own`](Self::own)s.
    pub async fn own_when_in_charge(
        &mut self,
        handover: &crate::Handover,
    ) -> Result<(), crate::Error> {
        handover
            .wait_for(|s| s.state == crate::State::Active)
            .await?;
        Ok(self.own()?)
    }

    /// Whether an instance in this network namespace took the sockets: then it
    /// accepts from the same queues and nothing needs forwarding.
    pub fn handed_off(&self) -> bool {
        self.owner.as_ref().is_some_and(Owner::handed_off)
    }

    /// For an instance superseded by one that could not take the sockets (another
    /// network namespace: bridge networking): accepts what still reaches the TCP
    /// sockets and forwards each connection to `successor`, same port, until
    /// `stop` resolves. Datagrams and Unix sockets are not forwarded.
    pub async fn forward(&self, successor: std::net::IpAddr, stop: impl std::future::Future) {
        let mut tasks = tokio::task::JoinSet::new();
        for listener in &self.listeners {
            if !matches!(listener.spec().address, Address::Tcp(_)) {
                continue;
            }
            let (Some(port), Ok(copy)) = (listener.port(), listener.try_clone()) else {
                continue;
            };
            let Ok(accepting) = copy.into_tokio_tcp() else {
                continue;
            };
            let to = SocketAddr::new(successor, port);
            tracing::info!("forwarding {} to {to}", listener.name());
            tasks.spawn(forward(accepting, to));
        }
        stop.await;
    }
}

/// Binds `spec`, retrying while its address is still held by a predecessor that
/// is going away.
async fn bind_retrying(spec: &ListenSpec) -> io::Result<Listener> {
    let deadline = tokio::time::Instant::now() + BIND_RETRY;
    loop {
        match Listener::bind(spec.clone()) {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Accepts on `listener` and joins each connection to one made to `to`.
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

/// `LISTEN_FDNAMES` for `listeners`.
pub fn fd_names(listeners: &[Listener]) -> std::ffi::OsString {
    let names: Vec<&str> = listeners.iter().map(Listener::name).collect();
    OsStr::from_bytes(names.join(":").as_bytes()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_as_users_write_them() {
        let http: ListenSpec = "http=tcp:127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            http.address,
            Address::Tcp("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(http.to_string(), "http=tcp:127.0.0.1:8080");
        let all: ListenSpec = "web=tcp:80".parse().unwrap();
        assert_eq!(all.address, Address::Tcp("0.0.0.0:80".parse().unwrap()));
        let v6: ListenSpec = "dns=udp:[::1]:53".parse().unwrap();
        assert_eq!(v6.address, Address::Udp("[::1]:53".parse().unwrap()));
        let unix: ListenSpec = "admin=unix:/run/app.sock".parse().unwrap();
        assert_eq!(unix.address, Address::Unix("/run/app.sock".into()));
        for bad in [
            "http",
            "=tcp:80",
            "a:b=tcp:80",
            "x=sctp:80",
            "x=tcp:host",
            "x=unix:",
        ] {
            assert!(bad.parse::<ListenSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_socket_is_adopted_only_under_its_name_and_address() {
        let spec: ListenSpec = "http=tcp:127.0.0.1:0".parse().unwrap();
        let bound = Listener::bind(spec.clone()).unwrap();
        let port = bound.port().unwrap();
        let fd = || bound.try_clone().unwrap().fd;
        assert!(Listener::adopt("http", fd(), &spec).is_some());
        assert!(Listener::adopt("admin", fd(), &spec).is_none());
        let other: ListenSpec = format!("http=tcp:127.0.0.1:{}", port.wrapping_add(1))
            .parse()
            .unwrap();
        assert!(Listener::adopt("http", fd(), &other).is_none());
        let udp: ListenSpec = format!("http=udp:127.0.0.1:{port}").parse().unwrap();
        assert!(Listener::adopt("http", fd(), &udp).is_none());
    }
}
