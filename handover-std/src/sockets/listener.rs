//! Listening sockets: bound from a [`ListenSpec`], or taken from systemd.

use std::ffi::OsStr;
use std::io::{self};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use socket2::{Domain, Socket, Type};

use super::{Address, ListenSpec};

/// A listening socket with its name: the descriptor a service inherits.
#[derive(Debug)]
pub struct Listener {
    spec: ListenSpec,
    pub(super) fd: OwnedFd,
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

/// `LISTEN_FDNAMES` for `listeners`.
pub fn fd_names(listeners: &[Listener]) -> std::ffi::OsString {
    let names: Vec<&str> = listeners.iter().map(Listener::name).collect();
    OsStr::from_bytes(names.join(":").as_bytes()).to_owned()
}
