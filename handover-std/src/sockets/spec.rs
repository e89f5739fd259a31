//! What a socket is called and where it listens: `NAME=tcp:ADDR:PORT`, `udp:`,
//! `unix:PATH`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

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
