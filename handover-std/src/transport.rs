//! UDP multicast on socket2, kept out of the public API.
//!
//! Two sockets per protocol port keep replies unambiguous: the *group* socket binds the
//! well-known port with `SO_REUSEADDR` + `SO_REUSEPORT` (the old and the new instance
//! on one host both bind it) and joins the group; the *unicast* socket binds an
//! ephemeral port and sends everything, so each instance has a source address of its
//! own and unicast replies reach the right one even when both share an IP.
//!
//! Interfaces, as handover-lib does it:
//! - **bridge** mode (the default) joins the group on every running interface with an
//!   IPv4 address (point-to-point links such as WireGuard excepted) and sends every
//!   group datagram once through each of them: a container's `eth0` reaches the
//!   containers on its bridge, `lo` the instances in its own network namespace.
//!   Copies sent through the other interfaces are not looped back to this namespace,
//!   which `lo` already reaches; a peer that still hears one datagram on two
//!   interfaces (two links to one LAN) handles it once and counts the copy as a
//!   duplicate.
//! - **host** mode uses the one named interface: both sockets are bound to it, so
//!   nothing from, or to, any other interface (the LAN the fleet shares) is involved.
//!
//! Interfaces that appear, change address or disappear while running are followed:
//! a netlink route socket subscribed to link and IPv4 address changes wakes the
//! driver, which reads the interface list again, joins the new ones and leaves the
//! ones gone. Nothing polls while nothing changes. Where netlink is not available
//! the list is read again every [`POLL_INTERVAL`]. An interface that cannot be joined
//! (the kernel's limit of memberships per socket, an interface gone in between) is
//! left out and logged; the others work.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::sockopt::set_ip_multicast_loop;
use socket2::{Domain, InterfaceIndexOrAddress, MsgHdr, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::config::{Config, NetworkMode};

/// How often the interface list is read when netlink notifications are unavailable.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// An interface the group is joined on (memberships are per interface index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) index: u32,
    /// Its first IPv4 address: announced to peers, and the source of what we send
    /// through it.
    pub(crate) address: Ipv4Addr,
    pub(crate) loopback: bool,
}

impl Interface {
    /// Joins `group` on this interface, by its address; by index where another
    /// interface has the same address (the kernel would pick that one). The
    /// address form first: qemu-user passes the index form of some guests on as an
    /// address form with no address, which joins on the default interface and then
    /// makes the join on that interface fail as a duplicate.
    fn join(&self, socket: &UdpSocket, group: &Ipv4Addr) -> io::Result<()> {
        let s = SockRef::from(socket);
        match s.join_multicast_v4(group, &self.address) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::ADDRINUSE.raw_os_error()) => {
                s.join_multicast_v4_n(group, &InterfaceIndexOrAddress::Index(self.index))
            }
            other => other,
        }
    }

    /// Leaves `group` on this interface, as it was joined.
    fn leave(&self, socket: &UdpSocket, group: &Ipv4Addr) -> io::Result<()> {
        let s = SockRef::from(socket);
        match s.leave_multicast_v4(group, &self.address) {
            Err(_) => s.leave_multicast_v4_n(group, &InterfaceIndexOrAddress::Index(self.index)),
            other => other,
        }
    }
}

/// The interfaces `mode` selects, one entry per interface.
fn interfaces(mode: &NetworkMode) -> io::Result<Vec<Interface>> {
    let mut chosen: Vec<Interface> = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        let (if_addrs::IfAddr::V4(a), Some(index)) = (&i.addr, i.index) else {
            continue;
        };
        let wanted = match mode {
            // Down or carrier-less interfaces are joined once they run (netlink
            // reports the change).
            NetworkMode::Bridge => i.is_oper_up() && !i.is_p2p,
            NetworkMode::Host { interface } => &i.name == interface,
        };
        if wanted && !chosen.iter().any(|c| c.index == index) {
            chosen.push(Interface {
                loopback: i.is_loopback(),
                name: i.name,
                index,
                address: a.ip,
            });
        }
    }
    Ok(chosen)
}

/// The interfaces at start: in host mode the named one must have an address.
fn initial_interfaces(mode: &NetworkMode) -> io::Result<Vec<Interface>> {
    let chosen = interfaces(mode)?;
    if let (true, NetworkMode::Host { interface }) = (chosen.is_empty(), mode) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no IPv4 address on interface {interface:?}"),
        ));
    }
    Ok(chosen)
}

fn udp() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

fn device(mode: &NetworkMode) -> Option<&str> {
    match mode {
        NetworkMode::Host { interface } => Some(interface.as_str()),
        NetworkMode::Bridge => None,
    }
}

/// A socket bound to `port` on all addresses, not yet joined; with `filter`
/// attached before it is bound, so that nothing the filter drops is ever queued.
fn group_socket(
    port: u16,
    device: Option<&str>,
    filter: Option<&[socket2::SockFilter]>,
) -> io::Result<UdpSocket> {
    let s = udp()?;
    if let Some(filter) = filter {
        s.attach_filter(filter)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if let Some(device) = device {
        // Host mode: hear nothing from other interfaces.
        s.bind_device(Some(device.as_bytes()))?;
    }
    s.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        port,
    )))?;
    // Only the groups this socket joined, not every group another socket of the
    // namespace joined on that port. Where the option is unknown (qemu-user, kernels
    // before 2.6.31) other groups' datagrams reach the socket and are dropped by
    // scope, as foreign datagrams on the group are.
    match s.set_multicast_all_v4(false) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOPROTOOPT.raw_os_error()) => {
            tracing::debug!("IP_MULTICAST_ALL is not available: {e}");
        }
        other => other?,
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// An ephemeral-port socket that sends everything; the interface of each group
/// datagram is chosen per send.
fn unicast_socket(device: Option<&str>) -> io::Result<UdpSocket> {
    let s = udp()?;
    if let Some(device) = device {
        s.bind_device(Some(device.as_bytes()))?;
    }
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The receiving side: the group socket, and handover-lib's in legacy mode, joined
/// on the interfaces of the network mode and kept joined as they change.
#[derive(Debug)]
pub(crate) struct Listeners {
    pub(crate) group: UdpSocket,
    pub(crate) legacy: Option<UdpSocket>,
    mode: NetworkMode,
    /// The protocol's group, then handover-lib's.
    groups: [Ipv4Addr; 2],
    joined: Vec<Interface>,
    /// Wakes when the interfaces may have changed: then call
    /// [`refresh`](Self::refresh).
    pub(crate) watch: InterfaceWatch,
}

impl Listeners {
    /// Opens the listening sockets `config` describes and joins the group; they hear
    /// every scope (a passive observer).
    pub(crate) fn open(config: &Config) -> io::Result<Self> {
        Self::open_with(config, None)
    }

    /// The same, letting the kernel drop every datagram but the v2 datagrams of
    /// `scope` (and, on handover-lib's port, its announcements) before they wake the
    /// process: see [`crate::filter`].
    pub(crate) fn open_for_scope(config: &Config, scope: u32) -> io::Result<Self> {
        Self::open_with(config, Some(scope))
    }

    fn open_with(config: &Config, scope: Option<u32>) -> io::Result<Self> {
        let device = device(&config.network);
        let same_scope = scope.map(crate::filter::same_scope);
        let group = group_socket(config.port, device, same_scope.as_deref())?;
        let legacy = if config.legacy {
            let legacy = scope.map(|_| crate::filter::legacy());
            Some(group_socket(config.legacy_port, device, legacy.as_deref())?)
        } else {
            None
        };
        // Subscribed before the first read of the list: no change falls in between.
        let watch = InterfaceWatch::new();
        let mut listeners = Listeners {
            group,
            legacy,
            mode: config.network.clone(),
            groups: [config.group, config.legacy_group],
            joined: Vec::new(),
            watch,
        };
        let initial = initial_interfaces(&listeners.mode)?;
        listeners.update(initial);
        if listeners.joined.is_empty() {
            return Err(io::Error::other(format!(
                "could not join {} on any interface",
                config.group
            )));
        }
        Ok(listeners)
    }

    /// The interfaces joined.
    pub(crate) fn interfaces(&self) -> &[Interface] {
        &self.joined
    }

    /// Their names.
    pub(crate) fn interface_names(&self) -> Vec<String> {
        self.joined.iter().map(|i| i.name.clone()).collect()
    }

    fn sockets(&self) -> impl Iterator<Item = (Ipv4Addr, &UdpSocket)> {
        let legacy = self.legacy.as_ref().map(|s| (self.groups[1], s));
        std::iter::once((self.groups[0], &self.group)).chain(legacy)
    }

    fn is_joined(&self, index: u32) -> bool {
        self.joined.iter().any(|j| j.index == index)
    }

    /// Joins the interfaces of `now` not joined yet and leaves those no longer there
    /// (an interface whose address changed stays joined). An interface that cannot
    /// be joined is logged and left out.
    fn update(&mut self, now: Vec<Interface>) {
        for gone in self
            .joined
            .iter()
            .filter(|j| !now.iter().any(|n| n.index == j.index))
        {
            for (group, socket) in self.sockets() {
                // The kernel already left if the interface itself is gone.
                let _ = gone.leave(socket, &group);
            }
        }
        let mut joined = Vec::with_capacity(now.len());
        for iface in now {
            if self.is_joined(iface.index) || self.join(&iface) {
                joined.push(iface);
            }
        }
        self.joined = joined;
    }

    /// Joins both groups on `iface`; on failure leaves what was joined.
    fn join(&self, iface: &Interface) -> bool {
        let mut done = Vec::new();
        for (group, socket) in self.sockets() {
            match iface.join(socket, &group) {
                Ok(()) => done.push((group, socket)),
                Err(e) => {
                    tracing::warn!(
                        "not using interface {} ({}): joining {group}: {e}",
                        iface.name,
                        iface.address
                    );
                    for (group, socket) in done {
                        let _ = iface.leave(socket, &group);
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Brings the membership up to date with the system's interfaces. Returns
    /// whether the joined interfaces (or their addresses) changed.
    pub(crate) fn refresh(&mut self) -> io::Result<bool> {
        let now = interfaces(&self.mode)?;
        if now == self.joined {
            return Ok(false);
        }
        self.update(now);
        Ok(true)
    }
}

/// Every socket of one instance.
#[derive(Debug)]
pub(crate) struct GroupSockets {
    pub(crate) listeners: Listeners,
    pub(crate) unicast: UdpSocket,
    group: SocketAddr,
    legacy_group: SocketAddr,
}

impl GroupSockets {
    pub(crate) fn open(config: &Config) -> io::Result<Self> {
        let scope = handover_proto::wire::scope_id(config.scope.as_bytes());
        let listeners = Listeners::open_for_scope(config, scope)?;
        let unicast = unicast_socket(device(&config.network))?;
        Ok(GroupSockets {
            listeners,
            unicast,
            group: SocketAddrV4::new(config.group, config.port).into(),
            legacy_group: SocketAddrV4::new(config.legacy_group, config.legacy_port).into(),
        })
    }

    /// The addresses announced to peers: those of the interfaces joined, but loopback.
    pub(crate) fn addresses(&self) -> Vec<Ipv4Addr> {
        self.listeners
            .interfaces()
            .iter()
            .map(|i| i.address)
            .filter(|a| !a.is_loopback())
            .collect()
    }

    /// Sends one datagram: to the group once through every interface joined, or to
    /// one peer. Returns the first error; the other interfaces are still tried.
    pub(crate) async fn send(
        &self,
        destination: handover_proto::Destination,
        bytes: &[u8],
    ) -> io::Result<()> {
        let group = match destination {
            handover_proto::Destination::Group => self.group,
            handover_proto::Destination::LegacyGroup => self.legacy_group,
            handover_proto::Destination::Reply(to) => {
                return self.unicast.send_to(bytes, to).await.map(drop)
            }
        };
        let interfaces = self.listeners.interfaces();
        if interfaces.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NetworkDown,
                "no interface to send to the group through",
            ));
        }
        // The instances of this namespace hear the copy sent through `lo`: the others
        // are not looped back, unless there is no `lo` copy (host mode).
        let via_lo = interfaces.iter().any(|i| i.loopback);
        let mut result = Ok(());
        for iface in interfaces {
            let looped = !via_lo || iface.loopback;
            let sent = match set_ip_multicast_loop(&self.unicast, looped) {
                Ok(()) => send_through(&self.unicast, iface, bytes, group).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = sent {
                tracing::debug!("send to {group} on {} failed: {e}", iface.name);
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }
}

/// Sends `bytes` to `group` through `iface`, named by index (two interfaces may
/// share an address) in the datagram's own `IP_PKTINFO`, which takes precedence
/// over the socket's multicast interface. Per datagram, not per socket: one
/// system call per copy, and it works where `IP_MULTICAST_IF` is not available
/// (qemu-user).
async fn send_through(
    socket: &UdpSocket,
    iface: &Interface,
    bytes: &[u8],
    group: SocketAddr,
) -> io::Result<()> {
    let control = PktInfo::through(iface.index);
    let to = SockAddr::from(group);
    socket
        .async_io(Interest::WRITABLE, || {
            let buffers = [IoSlice::new(bytes)];
            let msg = MsgHdr::new()
                .with_addr(&to)
                .with_buffers(&buffers)
                .with_control(control.as_bytes());
            SockRef::from(socket).sendmsg(&msg, 0)
        })
        .await
        .map(drop)
}

/// One `IP_PKTINFO` control message, laid out as `CMSG_SPACE` lays it out: the
/// header, then the data at the next `size_t` boundary (the header's own size on
/// Linux, for both word sizes).
#[repr(C)]
struct PktInfo {
    header: libc::cmsghdr,
    info: libc::in_pktinfo,
}

impl PktInfo {
    fn through(ifindex: u32) -> Self {
        // SAFETY: both are plain C structs (musl's header has private padding
        // fields, hence zeroed rather than a literal); all-zero is valid for each.
        let mut m: Self = unsafe { std::mem::zeroed() };
        let data_len = std::mem::size_of::<libc::in_pktinfo>() as u32;
        // SAFETY: CMSG_LEN only computes a length.
        m.header.cmsg_len = unsafe { libc::CMSG_LEN(data_len) } as _;
        m.header.cmsg_level = libc::IPPROTO_IP;
        m.header.cmsg_type = libc::IP_PKTINFO;
        m.info.ipi_ifindex = ifindex as libc::c_int;
        m
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: a repr(C) struct of integers, read as its bytes.
        unsafe {
            std::slice::from_raw_parts((self as *const Self).cast(), std::mem::size_of::<Self>())
        }
    }
}

/// Wakes when the system's interfaces or IPv4 addresses may have changed.
#[derive(Debug)]
pub(crate) struct InterfaceWatch {
    /// A netlink route socket subscribed to link and IPv4 address changes; `None`
    /// where it cannot be opened (then the list is polled).
    netlink: Option<AsyncFd<OwnedFd>>,
    /// When to read the list next, when polling: a deadline, so that a wake-up for
    /// something else does not start the interval again.
    next_poll: tokio::time::Instant,
}

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR` (linux/rtnetlink.h).
const NETLINK_GROUPS: u32 = 0x1 | 0x10;

impl InterfaceWatch {
    fn new() -> Self {
        let netlink = Self::subscribe()
            .inspect_err(|e| {
                tracing::warn!("interface changes are polled every {POLL_INTERVAL:?}: netlink: {e}")
            })
            .ok();
        InterfaceWatch {
            netlink,
            next_poll: tokio::time::Instant::now() + POLL_INTERVAL,
        }
    }

    fn subscribe() -> io::Result<AsyncFd<OwnedFd>> {
        use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE
        )?;
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, NETLINK_GROUPS))?;
        // SAFETY: the AsyncFd owns the descriptor; nothing else closes or replaces it
        // while it is registered.
        Ok(unsafe { AsyncFd::register(fd) }?)
    }

    /// Returns after the next change notification (or poll interval).
    pub(crate) async fn changed(&mut self) {
        let Some(netlink) = &self.netlink else {
            tokio::time::sleep_until(self.next_poll).await;
            self.next_poll = tokio::time::Instant::now() + POLL_INTERVAL;
            return;
        };
        let Ok(mut ready) = netlink.readable().await else {
            // The socket broke: poll from now on.
            self.netlink = None;
            return;
        };
        // What changed does not matter: the list is read again. An overrun
        // (ENOBUFS) means changes were missed, which reading the list covers too.
        let mut buf = [0u8; 4096];
        loop {
            match rustix::net::recv(
                ready.get_inner(),
                &mut buf,
                rustix::net::RecvFlags::DONTWAIT,
            ) {
                Ok(_) => continue,
                Err(rustix::io::Errno::AGAIN) => {
                    ready.clear_ready();
                    return;
                }
                Err(rustix::io::Errno::NOBUFS | rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!(
                        "interface changes are polled every {POLL_INTERVAL:?}: netlink: {e}"
                    );
                    self.netlink = None;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pktinfo_message_is_laid_out_as_the_kernel_reads_it() {
        let m = PktInfo::through(7);
        let data_len = std::mem::size_of::<libc::in_pktinfo>() as u32;
        // SAFETY: length computations only.
        let (space, len) = unsafe { (libc::CMSG_SPACE(data_len), libc::CMSG_LEN(data_len)) };
        assert_eq!(m.as_bytes().len(), space as usize);
        assert_eq!(
            std::mem::offset_of!(PktInfo, info),
            (len - data_len) as usize,
            "the data starts where CMSG_DATA points"
        );
    }
}
