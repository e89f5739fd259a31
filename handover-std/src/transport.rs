//! UDP multicast on socket2, kept out of the public API.
//!
//! Two sockets per protocol port keep replies unambiguous: the *group* socket binds the
//! well-known port with `SO_REUSEADDR` + `SO_REUSEPORT` (the old and the new instance
//! on one host both bind it) and joins the group; the *unicast* socket binds an
//! ephemeral port and sends everything, so each instance has a source address of its
//! own and unicast replies reach the right one even when both share an IP.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Config, NetworkMode};

/// The sockets of one instance.
pub(crate) struct Sockets {
    pub(crate) group: UdpSocket,
    pub(crate) unicast: UdpSocket,
    /// handover-lib's port, in legacy mode.
    pub(crate) legacy: Option<UdpSocket>,
    /// The IPv4 addresses of the interfaces joined: announced to peers.
    pub(crate) addresses: Vec<Ipv4Addr>,
}

/// An interface to join the group on.
struct Interface {
    name: String,
    address: Ipv4Addr,
}

fn interfaces(mode: &NetworkMode) -> io::Result<Vec<Interface>> {
    let all = if_addrs::get_if_addrs()?;
    let v4 = all.into_iter().filter_map(|i| match i.addr {
        if_addrs::IfAddr::V4(a) => Some(Interface {
            name: i.name,
            address: a.ip,
        }),
        _ => None,
    });
    let chosen: Vec<Interface> = match mode {
        NetworkMode::Bridge => v4.collect(),
        NetworkMode::Host { interface } => v4.filter(|i| &i.name == interface).collect(),
    };
    if chosen.is_empty() {
        let which = match mode {
            NetworkMode::Bridge => "any interface".to_string(),
            NetworkMode::Host { interface } => format!("interface {interface:?}"),
        };
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no IPv4 address on {which}"),
        ));
    }
    Ok(chosen)
}

fn udp() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
}

/// A socket bound to `port` on all addresses, joined to `group` on `ifaces`.
fn group_socket(
    group: Ipv4Addr,
    port: u16,
    ifaces: &[Interface],
    device: Option<&str>,
) -> io::Result<UdpSocket> {
    let s = udp()?;
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
    for iface in ifaces {
        match s.join_multicast_v4(&group, &iface.address) {
            Ok(()) => {}
            // Two addresses on one interface: the second join is a duplicate.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("joining {group} on {} ({}): {e}", iface.name, iface.address),
                ))
            }
        }
    }
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// An ephemeral-port socket that sends to the group on the first interface.
fn unicast_socket(iface: &Interface, device: Option<&str>) -> io::Result<UdpSocket> {
    let s = udp()?;
    if let Some(device) = device {
        s.bind_device(Some(device.as_bytes()))?;
    }
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_if_v4(&iface.address)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The receiving side only: the group socket, and handover-lib's in legacy mode.
pub(crate) struct Listeners {
    pub(crate) group: UdpSocket,
    pub(crate) legacy: Option<UdpSocket>,
}

fn device(config: &Config) -> Option<&str> {
    match &config.network {
        NetworkMode::Host { interface } => Some(interface.as_str()),
        NetworkMode::Bridge => None,
    }
}

impl Listeners {
    fn open(config: &Config, ifaces: &[Interface]) -> io::Result<Self> {
        let device = device(config);
        let group = group_socket(config.group, config.port, ifaces, device)?;
        let legacy = if config.legacy {
            Some(group_socket(
                config.legacy_group,
                config.legacy_port,
                ifaces,
                device,
            )?)
        } else {
            None
        };
        Ok(Listeners { group, legacy })
    }

    /// Opens the listening sockets `config` describes (a passive observer).
    pub(crate) fn open_passive(config: &Config) -> io::Result<Self> {
        Self::open(config, &interfaces(&config.network)?)
    }
}

impl Sockets {
    pub(crate) fn open(config: &Config) -> io::Result<Self> {
        let ifaces = interfaces(&config.network)?;
        let Listeners { group, legacy } = Listeners::open(config, &ifaces)?;
        let unicast = unicast_socket(&ifaces[0], device(config))?;
        let addresses = ifaces
            .iter()
            .map(|i| i.address)
            .filter(|a| !a.is_loopback())
            .collect();
        Ok(Sockets {
            group,
            unicast,
            legacy,
            addresses,
        })
    }
}

/// Where a transmit goes, as a socket address.
pub(crate) fn destination(config: &Config, d: handover_proto::Destination) -> SocketAddr {
    match d {
        handover_proto::Destination::Group => SocketAddrV4::new(config.group, config.port).into(),
        handover_proto::Destination::LegacyGroup => {
            SocketAddrV4::new(config.legacy_group, config.legacy_port).into()
        }
        handover_proto::Destination::Reply(addr) => addr,
    }
}
