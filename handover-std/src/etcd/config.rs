//! The settings of an etcd election: endpoints, name, lease, credentials, TLS.

use std::time::Duration;

use crate::config::ConfigError;

/// Where and how to campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// The election's name: a key prefix shared by every candidate.
    pub name: String,
    /// Lease TTL: how long a leader that vanished keeps the election.
    pub ttl: Duration,
    /// User name and password, for clusters with authentication on.
    pub credentials: Option<(String, Secret)>,
    /// TLS settings for `https://` endpoints (the system's roots when `None`).
    pub tls: Option<EtcdTls>,
}

/// TLS towards etcd: whom to trust, and who we are when the cluster checks
/// client certificates (`--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EtcdTls {
    /// PEM certificates of the authorities that sign the members' certificates;
    /// empty: the system's roots.
    pub ca: Vec<u8>,
    /// PEM client certificate and its private key.
    pub identity: Option<(Vec<u8>, Secret)>,
}

/// A password or private key: compared and cloned, never shown (`Debug` prints
/// a placeholder), so no log line or error can echo it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl EtcdConfig {
    /// The smallest TTL etcd grants with its default timings.
    pub const MIN_TTL: Duration = Duration::from_secs(2);
    /// The default TTL.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

    /// An election named `name` on `endpoints`, with the default TTL.
    pub fn new(endpoints: Vec<String>, name: impl Into<String>) -> Self {
        EtcdConfig {
            endpoints,
            name: name.into(),
            ttl: Self::DEFAULT_TTL,
            credentials: None,
            tls: None,
        }
    }

    /// How long before the lease's earliest possible expiry the leader demotes
    /// itself: time for its service to stop, and for clock-rate differences.
    pub fn margin(&self) -> Duration {
        self.ttl / 4
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: String::new(),
                expected: "a list of at least one client URL",
            });
        }
        let https = self.endpoints.iter().filter(|e| e.starts_with("https://"));
        let https = https.count();
        if https != 0 && https != self.endpoints.len() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: self.endpoints.join(","),
                expected: "all https:// or none: one connection carries one TLS setting",
            });
        }
        if https == 0 && self.tls.is_some() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: self.endpoints.join(","),
                expected: "https:// URLs, since TLS certificates are given",
            });
        }
        if self.ttl < EtcdConfig::MIN_TTL {
            return Err(ConfigError::Invalid {
                setting: "ttl",
                value: format!("{:?}", self.ttl),
                expected: "at least 2s, the shortest lease etcd grants",
            });
        }
        Ok(())
    }
}
