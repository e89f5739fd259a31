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

use std::io;
use std::path::Path;
use std::time::Duration;

mod dir;
mod forward;
mod listener;
mod spec;

use dir::TAKE_TIMEOUT;
pub use dir::{default_dir, DirLock, Owner, SocketDir, Taken, MAX_SOCKETS};
pub use listener::{fd_names, from_systemd, Listener};
pub use spec::{Address, ListenSpec};

/// How long binding afresh retries an address still held by a predecessor that is
/// going away (its service is stopping).
const BIND_RETRY: Duration = Duration::from_secs(3);

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
        forward::forward_all(&self.listeners, successor, stop).await;
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
