//! Options shared by the subcommands: they override the environment (balena's
//! variables, see `handover_std::Config::from_env`), which overrides the defaults.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
#[cfg(feature = "etcd")]
use handover_std::etcd::{EtcdConfig, EtcdTls, Secret};
use handover_std::{Config, NetworkMode, Policy};

/// What a lost hand-over costs the loser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The newest ready instance wins; older ones shut down.
    Handover,
    /// The highest-priority instance is active; the others stand by.
    Failover,
}

/// Where and how the protocol runs.
#[derive(Debug, Clone, Args)]
pub struct Network {
    /// Scope: instances of other scopes on the same group are ignored
    /// [default: `$BALENA_DEVICE_UUID/$BALENA_SERVICE_NAME`, or "default"]
    #[arg(long, env = "HANDOVER_SCOPE")]
    pub scope: Option<String>,

    /// Multicast group [default: 239.192.16.16]
    #[arg(long, env = "HANDOVER_GROUP", value_parser = parse_group)]
    pub group: Option<Ipv4Addr>,

    /// UDP port of the protocol [default: 1538]
    #[arg(long, env = "HANDOVER_PORT", value_parser = parse_port)]
    pub port: Option<u16>,

    /// Join on this interface only (host networking) [default: every interface, or
    /// `$NETWORK_INTERFACE` when `HANDOVER_NETWORK_MODE=host`]
    #[arg(long, env = "HANDOVER_INTERFACE")]
    pub interface: Option<String>,

    /// Also speak handover-lib's protocol (group `$SHUTDOWN_BROADCAST_ADDRESS`, port
    /// `$SHUTDOWN_PORT`, default 239.192.16.16:1536), for fleets mid-migration
    #[arg(long, env = "HANDOVER_LEGACY")]
    pub legacy: bool,

    /// Heartbeat interval, 10ms to 60s
    #[arg(long, env = "HANDOVER_HEARTBEAT", value_parser = parse_heartbeat, default_value = "1s")]
    pub heartbeat: Duration,
}

/// A UDP port other than 0.
fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a UDP port, 1 to 65535".into()),
        Ok(port) => Ok(port),
    }
}

/// An IPv4 multicast group (224.0.0.0/4).
fn parse_group(s: &str) -> Result<Ipv4Addr, String> {
    match s.parse::<Ipv4Addr>() {
        Ok(group) if group.is_multicast() => Ok(group),
        Ok(_) => Err(
            "expected an IPv4 multicast group (224.0.0.0 to 239.255.255.255; 239.x.x.x for a site)"
                .into(),
        ),
        Err(_) => Err("expected an IPv4 multicast group such as 239.192.16.16".into()),
    }
}

/// A duration such as `500ms` or `2s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| "expected a duration like 500ms or 2s".into())
}

/// A heartbeat within what the protocol allows.
fn parse_heartbeat(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if (handover_proto::MIN_HEARTBEAT..=handover_proto::MAX_HEARTBEAT).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "{} is out of range: 10ms to 60s",
            humantime::format_duration(d)
        ))
    }
}

impl Network {
    /// The configuration: environment, then these options.
    pub fn config(&self) -> Result<Config, handover_std::ConfigError> {
        let mut c = Config::from_env()?;
        if let Some(scope) = &self.scope {
            c.scope = scope.clone();
        }
        if let Some(group) = self.group {
            c.group = group;
        }
        if let Some(port) = self.port {
            c.port = port;
        }
        if let Some(interface) = &self.interface {
            c.network = NetworkMode::Host {
                interface: interface.clone(),
            };
        }
        c.legacy |= self.legacy;
        c.heartbeat = self.heartbeat;
        Ok(c)
    }
}

/// Which backend decides who is in charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The handover protocol on UDP multicast: one LAN, no server.
    Multicast,
    /// An etcd v3 election: instances anywhere that reach the etcd cluster.
    Etcd,
}

/// The election backend and, for etcd, where and how to campaign.
#[derive(Debug, Clone, Args)]
pub struct ElectionArgs {
    /// Election backend (etcd: failover mode only)
    #[arg(long, env = "HANDOVER_ELECTION", value_enum, default_value_t = Backend::Multicast)]
    pub election: Backend,

    /// etcd client URLs, comma-separated (http://host:2379,...)
    #[arg(
        long,
        env = "HANDOVER_ETCD_ENDPOINTS",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub etcd_endpoints: Vec<String>,

    /// The election's name in etcd, a key prefix shared by every candidate
    /// [default: handover/SCOPE]
    #[arg(long, env = "HANDOVER_ELECTION_NAME", value_name = "NAME")]
    pub election_name: Option<String>,

    /// etcd lease TTL: how long a leader that vanished keeps the election (2s to
    /// 60s); a leader demotes itself a quarter of it before
    #[arg(long, env = "HANDOVER_TTL", value_name = "DURATION", default_value = "5s", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// etcd user, for clusters with authentication on
    #[arg(
        long,
        env = "HANDOVER_ETCD_USER",
        value_name = "USER",
        requires = "etcd_password_file"
    )]
    pub etcd_user: Option<String>,

    /// File holding the etcd user's password (read once, never logged)
    #[arg(
        long,
        env = "HANDOVER_ETCD_PASSWORD_FILE",
        value_name = "FILE",
        requires = "etcd_user"
    )]
    pub etcd_password_file: Option<PathBuf>,

    /// PEM file of the certificate authority that signs the etcd members'
    /// certificates (https:// endpoints; default: the system's roots)
    #[arg(long, env = "HANDOVER_ETCD_CA_FILE", value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,

    /// PEM client certificate, for clusters that check them (--client-cert-auth)
    #[arg(
        long,
        env = "HANDOVER_ETCD_CERT_FILE",
        value_name = "FILE",
        requires = "etcd_key_file"
    )]
    pub etcd_cert_file: Option<PathBuf>,

    /// PEM private key of the client certificate (read once, never logged)
    #[arg(
        long,
        env = "HANDOVER_ETCD_KEY_FILE",
        value_name = "FILE",
        requires = "etcd_cert_file"
    )]
    pub etcd_key_file: Option<PathBuf>,
}

/// An etcd lease TTL etcd grants and the protocol can keep alive.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if (Duration::from_secs(2)..=Duration::from_secs(60)).contains(&d) && d.subsec_nanos() == 0 {
        Ok(d)
    } else {
        Err(format!(
            "{} is out of range: whole seconds, 2s to 60s",
            humantime::format_duration(d)
        ))
    }
}

impl ElectionArgs {
    /// Sets `c.election`; an error names the option.
    pub fn apply(&self, c: &mut Config, mode: Mode) -> Result<(), String> {
        if self.election == Backend::Etcd && mode != Mode::Failover {
            return Err(
                "--election etcd: needs --mode failover (etcd elects; it hands nothing over)"
                    .into(),
            );
        }
        #[cfg(feature = "etcd")]
        if let Some(etcd) = self.etcd(&c.scope)? {
            c.election = handover_std::Election::Etcd(etcd);
        }
        #[cfg(not(feature = "etcd"))]
        self.etcd(&c.scope)?;
        Ok(())
    }

    /// The etcd election's settings (`None` for multicast), for scope `scope`.
    #[cfg(not(feature = "etcd"))]
    pub fn etcd(&self, _scope: &str) -> Result<Option<std::convert::Infallible>, String> {
        match self.election {
            Backend::Multicast => Ok(None),
            Backend::Etcd => Err("--election etcd: this handover was built without etcd \
                                  support (cargo feature `etcd`)"
                .into()),
        }
    }

    /// The etcd election's settings (`None` for multicast), for scope `scope`.
    #[cfg(feature = "etcd")]
    pub fn etcd(&self, scope: &str) -> Result<Option<EtcdConfig>, String> {
        if self.election == Backend::Multicast {
            return Ok(None);
        }
        if self.etcd_endpoints.is_empty() {
            return Err("--election etcd: --etcd-endpoints is required".into());
        }
        let name = self
            .election_name
            .clone()
            .unwrap_or_else(|| format!("handover/{scope}"));
        let mut etcd = EtcdConfig::new(self.etcd_endpoints.clone(), name);
        etcd.ttl = self.ttl;
        if let (Some(user), Some(file)) = (&self.etcd_user, &self.etcd_password_file) {
            let password = read("--etcd-password-file", file)?;
            let password = password.trim_ascii_end();
            etcd.credentials = Some((user.clone(), Secret::new(password)));
        }
        if self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some() {
            let mut tls = EtcdTls::default();
            if let Some(file) = &self.etcd_ca_file {
                tls.ca = read("--etcd-ca-file", file)?;
            }
            if let (Some(cert), Some(key)) = (&self.etcd_cert_file, &self.etcd_key_file) {
                let key = Secret::new(read("--etcd-key-file", key)?);
                tls.identity = Some((read("--etcd-cert-file", cert)?, key));
            }
            etcd.tls = Some(tls);
        }
        etcd.validate().map_err(|e| e.to_string())?;
        Ok(Some(etcd))
    }
}

/// The contents of the file given to `option`; the error names both.
#[cfg(feature = "etcd")]
fn read(option: &str, file: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{option} {}: cannot read it: {e}", file.display()))
}

/// The group's keys: `run` authenticates with them, `watch` and `status` check
/// who is authentic.
#[derive(Debug, Clone, Args)]
pub struct Keys {
    /// Group key: a file of 64 hex digits (`openssl rand -hex 32`). Every datagram is
    /// then authenticated; forged and replayed ones are dropped
    #[arg(long, env = "HANDOVER_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// The key being replaced, still accepted for --key-transition after start
    #[arg(long, env = "HANDOVER_PREVIOUS_KEY_FILE", value_name = "FILE")]
    pub previous_key_file: Option<PathBuf>,
}

impl Keys {
    /// Reads the key files into `c`; an error names the option.
    pub fn apply(&self, c: &mut Config) -> Result<(), handover_std::ConfigError> {
        if let Some(path) = &self.key_file {
            c.key = Some(Config::key_file("--key-file", path)?);
        }
        if let Some(path) = &self.previous_key_file {
            c.previous_key = Some(Config::key_file("--previous-key-file", path)?);
        }
        Ok(())
    }
}

/// The protocol options of `handover run`.
#[derive(Debug, Clone, Args)]
pub struct Protocol {
    #[command(flatten)]
    pub network: Network,

    /// Hand-over (the newest instance wins) or failover (one active, the others stand
    /// by; the service runs only while active)
    #[arg(long, env = "HANDOVER_MODE", value_enum, default_value_t = Mode::Handover)]
    pub mode: Mode,

    /// Failover rank: the highest priority is active
    #[arg(long, env = "HANDOVER_PRIORITY", default_value_t = handover_proto::DEFAULT_PRIORITY)]
    pub priority: u8,

    /// In failover, take over from a lower-priority active instance
    #[arg(long, env = "HANDOVER_PREEMPT")]
    pub preempt: bool,

    /// File written when this instance has handed over (repeatable)
    /// [default: `$BALENA_SERVICE_HANDOVER_COMPLETE_PATH`, or /tmp/balena/handover-complete]
    #[arg(long = "complete-file", env = "HANDOVER_COMPLETE_FILE")]
    pub complete_files: Vec<PathBuf>,

    #[command(flatten)]
    pub keys: Keys,

    /// How long the previous key is accepted
    #[arg(long, env = "HANDOVER_KEY_TRANSITION", value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub key_transition: Duration,

    /// With a key, still accept handover-lib's unauthenticated datagrams (anyone on the
    /// LAN can forge them)
    #[arg(long, env = "HANDOVER_ACCEPT_LEGACY_WITH_KEY")]
    pub accept_legacy_with_key: bool,
}

impl Protocol {
    pub fn config(&self) -> Result<Config, handover_std::ConfigError> {
        let mut c = self.network.config()?;
        c.policy = match self.mode {
            Mode::Handover => Policy::HandOver,
            Mode::Failover => Policy::Failover {
                preempt: self.preempt,
            },
        };
        c.priority = self.priority;
        if !self.complete_files.is_empty() {
            c.complete_files = self.complete_files.clone();
        }
        self.keys.apply(&mut c)?;
        c.key_transition = self.key_transition;
        c.accept_legacy_with_key = self.accept_legacy_with_key;
        Ok(c)
    }
}
