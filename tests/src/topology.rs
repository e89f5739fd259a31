//! The networks users run instances on, built from network namespaces, veth pairs and
//! Linux bridges, so that each instance sees what it would see in production:
//!
//! - [`Containers`]: balena's (and Docker's) default bridge networking. A "host"
//!   namespace holds a bridge; every container is a namespace of its own with `lo`
//!   and an `eth0` on the bridge, its own address and a default route via the bridge.
//! - [`Fleet`]: devices on one LAN. Every device is a namespace with `eth0` on the
//!   LAN and balena's local `supervisor0` bridge (10.114.104.1/25) with the
//!   supervisor's container on it. Services on host networking run in the device's
//!   namespace.
//!
//! Everything is deleted when the value is dropped.

use std::cell::Cell;
use std::net::Ipv4Addr;

use crate::netns::Netns;

/// A Linux bridge inside a namespace, handing out addresses of its subnet to the
/// namespaces attached to it.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    /// The first three octets of the subnet; the bridge itself is `.1`.
    prefix: [u8; 3],
    prefix_len: u8,
    next_host: Cell<u8>,
    ports: Cell<u32>,
}

impl Bridge {
    /// Creates bridge `name` in `ns` with address `<prefix>.1/<prefix_len>`, up.
    pub fn new(ns: &Netns, name: &str, prefix: [u8; 3], prefix_len: u8) -> Self {
        ns.ip(&["link", "add", name, "type", "bridge"]);
        let bridge = Bridge {
            name: name.into(),
            prefix,
            prefix_len,
            next_host: Cell::new(2),
            ports: Cell::new(0),
        };
        let cidr = bridge.cidr(bridge.gateway());
        ns.ip(&["addr", "add", &cidr, "dev", name]);
        ns.ip(&["link", "set", name, "up"]);
        bridge
    }

    /// The bridge's own address: the attached namespaces' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 1)
    }

    fn cidr(&self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.prefix_len)
    }

    /// Plugs `other` into the bridge (which lives in `ns`) through a veth pair whose
    /// end in `other` is named `dev`; gives it the next free address and, with
    /// `default_route`, a default route via the bridge. Returns the address.
    pub fn attach(&self, ns: &Netns, other: &Netns, dev: &str, default_route: bool) -> Ipv4Addr {
        let port = format!(
            "{}p{}",
            &self.name[..self.name.len().min(8)],
            self.ports.get()
        );
        self.ports.set(self.ports.get() + 1);
        ns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            dev,
            "netns",
            other.name(),
        ]);
        ns.ip(&["link", "set", &port, "master", &self.name]);
        ns.ip(&["link", "set", &port, "up"]);
        let host = self.next_host.get();
        self.next_host.set(host + 1);
        let [a, b, c] = self.prefix;
        let addr = Ipv4Addr::new(a, b, c, host);
        other.ip(&["addr", "add", &self.cidr(addr), "dev", dev]);
        other.ip(&["link", "set", dev, "up"]);
        if default_route {
            other.ip(&[
                "route",
                "add",
                "default",
                "via",
                &self.gateway().to_string(),
            ]);
        }
        addr
    }
}

/// Containers on one bridge network, each in a namespace of its own.
#[derive(Debug)]
pub struct Containers {
    host: Netns,
    bridge: Bridge,
}

/// A container: its namespace and its address on the bridge (`None` until plugged).
#[derive(Debug)]
pub struct Container {
    /// The container's network namespace.
    pub ns: Netns,
    /// Its `eth0` address.
    pub address: Option<Ipv4Addr>,
}

impl Containers {
    /// A host with bridge `br0` on 172.30.0.0/24 (the bridge is 172.30.0.1).
    pub fn new() -> Self {
        let host = Netns::new();
        let bridge = Bridge::new(&host, "br0", [172, 30, 0], 24);
        Containers { host, bridge }
    }

    /// The host's namespace, where the bridge is.
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// A new container with `lo` and `eth0` on the bridge.
    pub fn container(&self) -> Container {
        let mut c = self.unplugged();
        self.plug(&mut c);
        c
    }

    /// A new container whose `eth0` is not there yet (only `lo`): see
    /// [`plug`](Self::plug).
    pub fn unplugged(&self) -> Container {
        Container {
            ns: Netns::new(),
            address: None,
        }
    }

    /// Gives `container` its `eth0` on the bridge, as the container runtime does,
    /// possibly after the service started.
    pub fn plug(&self, container: &mut Container) {
        let addr = self.bridge.attach(&self.host, &container.ns, "eth0", true);
        container.address = Some(addr);
    }

    /// Takes `container`'s `eth0` away (a network disconnected, a cable pulled).
    pub fn unplug(&self, container: &mut Container) {
        container.ns.ip(&["link", "del", "eth0"]);
        container.address = None;
    }
}

impl Default for Containers {
    fn default() -> Self {
        Self::new()
    }
}

/// Devices of a fleet on one LAN (192.168.50.0/24, through a switch namespace).
#[derive(Debug)]
pub struct Fleet {
    switch: Netns,
    lan: Bridge,
}

/// A device of a [`Fleet`].
#[derive(Debug)]
pub struct Device {
    /// The device's host namespace: `eth0` on the LAN, `supervisor0`, `lo`.
    pub ns: Netns,
    /// Its LAN address.
    pub lan_address: Ipv4Addr,
    /// The supervisor's container on `supervisor0` (keeps the bridge's carrier up).
    pub supervisor: Netns,
}

impl Fleet {
    /// An empty LAN.
    pub fn new() -> Self {
        let switch = Netns::new();
        let lan = Bridge::new(&switch, "lan", [192, 168, 50], 24);
        Fleet { switch, lan }
    }

    /// The switch's namespace: a bridge on the LAN, where an observer can listen.
    pub fn switch(&self) -> &Netns {
        &self.switch
    }

    /// A new device on the LAN with its own `supervisor0` bridge (10.114.104.1/25).
    pub fn device(&self) -> Device {
        let ns = Netns::new();
        let lan_address = self.lan.attach(&self.switch, &ns, "eth0", true);
        let supervisor0 = Bridge::new(&ns, "supervisor0", [10, 114, 104], 25);
        let supervisor = Netns::new();
        supervisor0.attach(&ns, &supervisor, "eth0", true);
        Device {
            ns,
            lan_address,
            supervisor,
        }
    }
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}
