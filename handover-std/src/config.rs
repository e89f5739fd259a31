//! Configuration from code and from the environment, with balena's defaults.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use handover_proto::{wire, Policy};

use crate::key::GroupKey;

/// Which interfaces the multicast group is joined on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Every interface with an IPv4 address (a container on a bridge network).
    Bridge,
    /// One named interface only (host networking: keeps other devices of a fleet on
    /// the same LAN out).
    Host {
        /// The interface, `supervisor0` by default.
        interface: String,
    },
}

/// What decides who is in charge.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Election {
    /// The handover protocol on UDP multicast: one broadcast domain, no server.
    #[default]
    Multicast,
    /// An etcd v3 election: instances on different hosts, subnets or clouds.
    #[cfg(feature = "etcd")]
    Etcd(crate::etcd::EtcdConfig),
}

/// Everything the Linux adapter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Scope string (device + service); peers of other scopes are ignored.
    pub scope: String,
    /// Multicast group of the v2 protocol.
    pub group: Ipv4Addr,
    /// UDP port of the v2 protocol.
    pub port: u16,
    /// Interfaces to join on.
    pub network: NetworkMode,
    /// Also speak handover-lib's v1 protocol on its group and port.
    pub legacy: bool,
    /// handover-lib's group.
    pub legacy_group: Ipv4Addr,
    /// handover-lib's port.
    pub legacy_port: u16,
    /// Hand-over or failover.
    pub policy: Policy,
    /// Rank within the scope (failover).
    pub priority: u8,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Service name announced to peers.
    pub name: String,
    /// Files written when the hand-over is complete (balena's, and the legacy one).
    pub complete_files: Vec<PathBuf>,
    /// The group's pre-shared key: datagrams are tagged and checked.
    pub key: Option<GroupKey>,
    /// A previous key still accepted for [`key_transition`](Self::key_transition)
    /// after start, while the fleet rolls over to the new one.
    pub previous_key: Option<GroupKey>,
    /// How long the previous key is accepted.
    pub key_transition: Duration,
    /// Accept handover-lib's unauthenticated datagrams even with a key.
    pub accept_legacy_with_key: bool,
    /// The election backend: multicast (the default) or etcd.
    pub election: Election,
}

/// balena's hand-over-complete file inside a container.
pub const BALENA_COMPLETE_FILE: &str = "/tmp/balena/handover-complete";

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An environment variable or option has a value that does not parse.
    #[error("{setting}: {value:?} is not {expected}")]
    Invalid {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The protocol core refused the configuration.
    #[error(transparent)]
    Protocol(#[from] handover_proto::ConfigError),
    /// A key file was refused.
    #[error("{setting} {path:?}: {error}")]
    Key {
        /// The setting that named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: crate::key::KeyError,
    },
    /// A previous key without a current one.
    #[error("previous key: set only together with a key")]
    PreviousKeyAlone,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scope: "default".into(),
            group: Ipv4Addr::from(wire::DEFAULT_GROUP),
            port: wire::DEFAULT_PORT,
            network: NetworkMode::Bridge,
            legacy: false,
            legacy_group: Ipv4Addr::from(wire::DEFAULT_GROUP),
            legacy_port: wire::LEGACY_PORT,
            policy: Policy::HandOver,
            priority: handover_proto::DEFAULT_PRIORITY,
            heartbeat: handover_proto::DEFAULT_HEARTBEAT,
            name: String::new(),
            complete_files: vec![PathBuf::from(BALENA_COMPLETE_FILE)],
            key: None,
            previous_key: None,
            key_transition: Duration::from_secs(3600),
            accept_legacy_with_key: false,
            election: Election::Multicast,
        }
    }
}

impl Config {
    /// The configuration the environment describes, over the defaults:
    ///
    /// | variable | setting |
    /// |---|---|
    /// | `BALENA_DEVICE_UUID`, `BALENA_SERVICE_NAME` | scope (`uuid/service`) and name |
    /// | `HANDOVER_SCOPE` | scope, overriding the above |
    /// | `BALENA_SERVICE_HANDOVER_COMPLETE_PATH` | complete file |
    /// | `RESIN_SERVICE_KILL_ME_PATH` | the legacy complete file, written too |
    /// | `HANDOVER_NETWORK_MODE` (`bridge`/`host`), `NETWORK_INTERFACE` | network mode |
    /// | `SHUTDOWN_BROADCAST_ADDRESS`, `SHUTDOWN_PORT` | handover-lib's group and port |
    /// | `HANDOVER_KEY_FILE`, `HANDOVER_PREVIOUS_KEY_FILE` | group key and the one it replaces |
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        let service = get("BALENA_SERVICE_NAME");
        if let Some(service) = &service {
            c.name = service.clone();
        }
        c.scope = match (get("HANDOVER_SCOPE"), get("BALENA_DEVICE_UUID"), service) {
            (Some(scope), _, _) => scope,
            (None, Some(device), Some(service)) => format!("{device}/{service}"),
            (None, None, Some(service)) => service,
            (None, Some(device), None) => device,
            (None, None, None) => c.scope,
        };
        if let Some(path) = get("BALENA_SERVICE_HANDOVER_COMPLETE_PATH") {
            c.complete_files = vec![PathBuf::from(path)];
        }
        // Older supervisors look for the legacy name: write both.
        if let Some(path) = get("RESIN_SERVICE_KILL_ME_PATH").map(PathBuf::from) {
            if !c.complete_files.contains(&path) {
                c.complete_files.push(path);
            }
        }
        match get("HANDOVER_NETWORK_MODE").as_deref() {
            None | Some("bridge") => {}
            Some("host") => {
                c.network = NetworkMode::Host {
                    interface: get("NETWORK_INTERFACE").unwrap_or_else(|| "supervisor0".into()),
                }
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    setting: "HANDOVER_NETWORK_MODE",
                    value: other.into(),
                    expected: "`bridge` or `host`",
                })
            }
        }
        if let Some(group) = parse_var(&get, "SHUTDOWN_BROADCAST_ADDRESS", "an IPv4 address")? {
            c.legacy_group = group;
        }
        if let Some(port) = parse_var(&get, "SHUTDOWN_PORT", "a UDP port (1-65535)")? {
            c.legacy_port = port;
        }
        let key = |setting| {
            get(setting)
                .map(|path| Self::key_file(setting, path.as_ref()))
                .transpose()
        };
        c.key = key("HANDOVER_KEY_FILE")?;
        c.previous_key = key("HANDOVER_PREVIOUS_KEY_FILE")?;
        Ok(c)
    }

    /// Reads a key file; the error names `setting`.
    pub fn key_file(
        setting: &'static str,
        path: &std::path::Path,
    ) -> Result<GroupKey, ConfigError> {
        crate::key::read_key_file(path).map_err(|error| ConfigError::Key {
            setting,
            path: path.to_owned(),
            error,
        })
    }

    /// The protocol core's configuration for one run of this instance.
    pub fn to_proto(
        &self,
        id: u64,
        start_ms: i64,
        seed: u64,
        addresses: &[Ipv4Addr],
    ) -> Result<handover_proto::Config, ConfigError> {
        let mut c =
            handover_proto::Config::new(wire::scope_id(self.scope.as_bytes()), id, start_ms, seed);
        c.policy = self.policy;
        c.priority = self.priority;
        c.heartbeat = self.heartbeat;
        c.legacy = self.legacy;
        let name = crate::names::wire_name(&self.name);
        if name != self.name {
            tracing::info!(
                "the service name {:?} is longer than a heartbeat carries ({} bytes): \
                 peers see {name:?}",
                self.name,
                wire::MAX_NAME
            );
        }
        c.name = name.as_ref().try_into().expect("wire_name fits");
        c.addresses = addresses
            .iter()
            .copied()
            .take(wire::MAX_ADDRESSES)
            .collect();
        c.auth = match (&self.key, &self.previous_key) {
            (None, None) => None,
            (None, Some(_)) => return Err(ConfigError::PreviousKeyAlone),
            (Some(key), previous) => Some(handover_proto::Auth {
                key: key.0,
                previous: previous.as_ref().map(|p| {
                    let until = handover_proto::Instant::from_micros(
                        self.key_transition.as_micros().min(u64::MAX as u128) as u64,
                    );
                    (p.0, until)
                }),
                accept_legacy: self.accept_legacy_with_key,
            }),
        };
        c.validate()?;
        Ok(c)
    }
}

/// The variable `setting` parsed, if set; the error names it and says what was
/// `expected`.
fn parse_var<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    setting: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(setting)
        .map(|value| {
            value.parse().map_err(|_| ConfigError::Invalid {
                setting,
                value,
                expected,
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn balena_environment() {
        let c = Config::from_lookup(env(&[
            ("BALENA_DEVICE_UUID", "abc123"),
            ("BALENA_SERVICE_NAME", "api"),
            ("BALENA_SERVICE_HANDOVER_COMPLETE_PATH", "/tmp/x/done"),
            ("RESIN_SERVICE_KILL_ME_PATH", "/tmp/resin/resin-kill-me"),
            ("HANDOVER_NETWORK_MODE", "host"),
        ]))
        .unwrap();
        assert_eq!(c.scope, "abc123/api");
        assert_eq!(c.name, "api");
        assert_eq!(
            c.complete_files,
            vec![
                PathBuf::from("/tmp/x/done"),
                PathBuf::from("/tmp/resin/resin-kill-me")
            ]
        );
        assert_eq!(
            c.network,
            NetworkMode::Host {
                interface: "supervisor0".into()
            }
        );
    }

    #[test]
    fn balenas_longest_names_are_accepted_with_no_option() {
        let service = "environmental-sensor-aggregation-service-for-the-north-wing-xyz";
        let c = Config::from_lookup(env(&[
            ("BALENA_DEVICE_UUID", &"f".repeat(62)),
            ("BALENA_SERVICE_NAME", service),
        ]))
        .unwrap();
        let proto = c.to_proto(1, 0, 0, &[]).unwrap();
        assert_eq!(proto.name.as_str(), crate::names::wire_name(service));
        // The scope keeps the whole name: it is hashed, never cut.
        assert_eq!(c.scope, format!("{}/{service}", "f".repeat(62)));
    }

    #[test]
    fn errors_name_the_setting() {
        let e = Config::from_lookup(env(&[("SHUTDOWN_PORT", "70000")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "SHUTDOWN_PORT: \"70000\" is not a UDP port (1-65535)"
        );
        let e = Config::from_lookup(env(&[("HANDOVER_NETWORK_MODE", "nat")])).unwrap_err();
        assert!(e.to_string().starts_with("HANDOVER_NETWORK_MODE"));
        let c = Config {
            heartbeat: Duration::from_millis(1),
            ..Config::default()
        };
        let e = c.to_proto(1, 0, 0, &[]).unwrap_err();
        assert!(e.to_string().starts_with("heartbeat:"), "{e}");
    }
}
