//! Network namespaces created by a test and deleted when it ends, so that tests send
//! traffic only to addresses they own.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The protocol's (and handover-lib's) multicast group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 16, 16);

/// Why a namespace test cannot run here, or `None` if it can.
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("creating network namespaces needs root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the `ip` command (iproute2) is not installed".into()),
    }
}

/// Skips the calling test, with the reason, when namespaces are unavailable (fails
/// it under `CI=true`).
#[macro_export]
macro_rules! require_netns {
    () => {
        $crate::require!($crate::netns::unavailable())
    };
}

/// A network namespace with its loopback up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run ip");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates `hov-<pid>-<n>`.
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hov-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`, panicking with its message on failure.
    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// Runs `nft` inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        run(Command::new("ip").args(["netns", "exec", &self.name, "nft", ruleset]));
    }

    /// A veth pair `a`–`b` inside the namespace, with addresses (CIDR) and up.
    pub fn veth(&self, a: &str, a_addr: &str, b: &str, b_addr: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        for (dev, addr) in [(a, a_addr), (b, b_addr)] {
            self.ip(&["addr", "add", addr, "dev", dev]);
            self.ip(&["link", "set", dev, "up"]);
        }
    }

    /// A veth link from `dev` here to `peer_dev` in `other`, with addresses (CIDR) and
    /// up on both sides.
    pub fn link(&self, dev: &str, addr: &str, other: &Netns, peer_dev: &str, peer_addr: &str) {
        self.ip(&[
            "link",
            "add",
            dev,
            "type",
            "veth",
            "peer",
            "name",
            peer_dev,
            "netns",
            &other.name,
        ]);
        self.ip(&["addr", "add", addr, "dev", dev]);
        self.ip(&["link", "set", dev, "up"]);
        other.ip(&["addr", "add", peer_addr, "dev", peer_dev]);
        other.ip(&["link", "set", peer_dev, "up"]);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// A UDP socket in the namespace on the group's `port` (shared, as every peer's
    /// is), joined to the group on the interface with address `on`, sending through
    /// it: what a listener, an eavesdropper or a handover-lib peer opens.
    pub fn group_socket(&self, port: u16, on: Ipv4Addr) -> UdpSocket {
        self.enter(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("socket");
            s.set_reuse_address(true).expect("SO_REUSEADDR");
            s.set_reuse_port(true).expect("SO_REUSEPORT");
            s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
                .expect("bind the group's port");
            s.join_multicast_v4(&GROUP, &on).expect("join the group");
            s.set_multicast_if_v4(&on).expect("IP_MULTICAST_IF");
            UdpSocket::from(s)
        })
    }

    /// Runs `f` on a thread inside the namespace: sockets it opens stay there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                Self::move_thread_to(&self.name);
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    /// Moves the calling thread into namespace `name`, for good: for threads that
    /// live in it (clients under load).
    pub fn move_thread_to(name: &str) {
        let path = format!("/var/run/netns/{name}");
        let file = std::fs::File::open(&path).expect("namespace file");
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
