//! Options shared by the subcommands: they override the environment (balena's
//! variables, see `handover_std::Config::from_env`), which overrides the defaults.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
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
    #[arg(long)]
    pub group: Option<Ipv4Addr>,

    /// UDP port of the protocol [default: 1538]
    #[arg(long)]
    pub port: Option<u16>,

    /// Join on this interface only (host networking) [default: every interface, or
    /// `$NETWORK_INTERFACE` when `HANDOVER_NETWORK_MODE=host`]
    #[arg(long)]
    pub interface: Option<String>,

    /// Also speak handover-lib's protocol (group `$SHUTDOWN_BROADCAST_ADDRESS`, port
    /// `$SHUTDOWN_PORT`, default 239.192.16.16:1536), for fleets mid-migration
    #[arg(long)]
    pub legacy: bool,

    /// Heartbeat interval, 10ms to 60s
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub heartbeat: Duration,
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

/// The protocol options of `handover run`.
#[derive(Debug, Clone, Args)]
pub struct Protocol {
    #[command(flatten)]
    pub network: Network,

    /// Hand-over (the newest instance wins) or failover (one active, the others stand
    /// by; the service runs only while active)
    #[arg(long, value_enum, default_value_t = Mode::Handover)]
    pub mode: Mode,

    /// Failover rank: the highest priority is active
    #[arg(long, default_value_t = handover_proto::DEFAULT_PRIORITY)]
    pub priority: u8,

    /// In failover, take over from a lower-priority active instance
    #[arg(long)]
    pub preempt: bool,

    /// File written when this instance has handed over (repeatable)
    /// [default: `$BALENA_SERVICE_HANDOVER_COMPLETE_PATH`, or /tmp/balena/handover-complete]
    #[arg(long = "complete-file")]
    pub complete_files: Vec<PathBuf>,

    /// Group key: a file of 64 hex digits (`openssl rand -hex 32`). Every datagram is
    /// then authenticated; forged and replayed ones are dropped [env: HANDOVER_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// The key being replaced, still accepted for --key-transition after start
    /// [env: HANDOVER_PREVIOUS_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub previous_key_file: Option<PathBuf>,

    /// How long the previous key is accepted
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub key_transition: Duration,

    /// With a key, still accept handover-lib's unauthenticated datagrams (anyone on the
    /// LAN can forge them)
    #[arg(long)]
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
        if let Some(path) = &self.key_file {
            c.key = Some(Config::key_file("--key-file", path)?);
        }
        if let Some(path) = &self.previous_key_file {
            c.previous_key = Some(Config::key_file("--previous-key-file", path)?);
        }
        c.key_transition = self.key_transition;
        c.accept_legacy_with_key = self.accept_legacy_with_key;
        Ok(c)
    }
}
