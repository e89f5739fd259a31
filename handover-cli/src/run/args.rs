//! The arguments of `handover run`, and the combinations refused before anything
//! starts.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use handover_std::sockets::{Address, ListenSpec};
use rustix::process::Signal;

use super::supervisor::{Mode as Life, Policy, Queue};
use crate::health::HealthOptions;
use crate::options::{Backend, ElectionArgs, Mode, Protocol};
use crate::ready::{parse_http_url, Readiness};

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub(crate) protocol: Protocol,

    #[command(flatten)]
    pub(crate) election: ElectionArgs,

    #[command(flatten)]
    pub(crate) readiness: Readiness,

    #[command(flatten)]
    pub(crate) health: HealthOptions,

    /// Signal that asks the child to stop (name or number)
    #[arg(long, env = "HANDOVER_STOP_SIGNAL", default_value = "SIGTERM", value_parser = parse_signal)]
    pub(crate) stop_signal: Signal,

    /// How long the service may take to become ready; if it is not ready by then,
    /// `handover` stops it and exits 1 without claiming, so that the instance in
    /// charge keeps serving (failover: it leaves, so that a standby takes over)
    #[arg(long, env = "HANDOVER_READY_TIMEOUT", value_name = "DURATION", value_parser = crate::options::parse_duration)]
    pub(crate) ready_timeout: Option<Duration>,

    /// How long the child may take to stop before SIGKILL
    #[arg(long, env = "HANDOVER_STOP_TIMEOUT", default_value = "30s", value_parser = crate::options::parse_duration)]
    pub(crate) stop_timeout: Duration,

    /// A listening socket for the service, NAME=tcp:ADDR:PORT (or udp:ADDR:PORT,
    /// unix:PATH); repeatable, or comma-separated. The service gets it by systemd's
    /// convention (descriptors from 3, LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), and
    /// the instance that takes over inherits it: one accept queue, no connection
    /// refused or reset. Hand-over mode
    #[arg(
        long,
        env = "HANDOVER_LISTEN",
        value_name = "NAME=ADDR",
        value_delimiter = ','
    )]
    pub(crate) listen: Vec<ListenSpec>,

    /// Where the instances of a scope pass their sockets on (a volume they share,
    /// mode 0700) [default: /tmp/balena/handover-sockets on balena, else
    /// $XDG_RUNTIME_DIR/handover, or /run/handover]
    #[arg(long, env = "HANDOVER_SOCKETS_DIR", value_name = "DIR")]
    pub(crate) sockets_dir: Option<PathBuf>,

    /// Failover: `cold` starts the service only while this instance is active;
    /// `hot` runs it on every instance and tells it its role, the leader and the
    /// active's state as they change (JSON lines on the service channel, the
    /// descriptor in $HANDOVER_EVENTS_FD)
    #[arg(long, env = "HANDOVER_STANDBY", value_enum, default_value_t = Standby::Cold)]
    pub(crate) standby: Standby,

    /// A managed work queue: every instance's service submits tasks on the
    /// channel, and the active one's is handed them one at a time; at most one
    /// repeat per unclean failover (or per --queue-window), none on a clean stop.
    /// Needs --mode failover --standby hot
    #[arg(long, env = "HANDOVER_QUEUE")]
    pub(crate) queue: bool,

    /// Tasks the service may be handed at once, counting those done and not yet
    /// acknowledged by the standbys (each may run again after an unclean
    /// failover)
    #[arg(
        long,
        env = "HANDOVER_QUEUE_WINDOW",
        default_value = "1",
        value_name = "N"
    )]
    pub(crate) queue_window: NonZeroUsize,

    /// The most tasks the queue holds; a submit beyond is refused with an
    /// error line
    #[arg(
        long,
        env = "HANDOVER_QUEUE_CAPACITY",
        default_value = "100000",
        value_name = "N"
    )]
    pub(crate) queue_capacity: usize,

    /// The most bytes of payload the queue holds (as the service sent them); a
    /// submit beyond is refused with an error line. Every instance holds the
    /// queue, standbys too
    #[arg(
        long,
        env = "HANDOVER_QUEUE_BYTES",
        default_value = "64MiB",
        value_name = "SIZE",
        value_parser = parse_size
    )]
    pub(crate) queue_bytes: usize,

    /// The service and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<OsString>,
}

/// What a standby's service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Standby {
    /// Not started until this instance is active.
    Cold,
    /// Running, told its role.
    Hot,
}

impl Args {
    /// The combinations of options that cannot work, each refused with a message
    /// that names the option.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.readiness.ready_http {
            if parse_http_url(url).is_none() {
                return Err(format!(
                    "--ready-http: {url:?} is not an http://host[:port]/path URL"
                ));
            }
        }
        if let Some(url) = &self.health.health_http {
            if parse_http_url(url).is_none() {
                return Err(format!(
                    "--health-http: {url:?} is not an http://host[:port]/path URL"
                ));
            }
        }
        if self.health.enabled() && self.protocol.mode != Mode::Failover {
            return Err(
                "--health-*, --watchdog: failover only (--mode failover): an unhealthy \
                 active steps down for a standby, and in hand-over there is none"
                    .into(),
            );
        }
        if self.health.health_interval.is_zero() {
            return Err("--health-interval: must be longer than 0".into());
        }
        if self.health.watchdog.is_some_and(|w| w.is_zero()) {
            return Err("--watchdog: must be longer than 0".into());
        }
        if !self.listen.is_empty() && self.protocol.mode != Mode::Handover {
            return Err(
                "--listen: hand-over mode only (a cold standby has no service to \
                        pass sockets to)"
                    .into(),
            );
        }
        let hot = self.protocol.mode == Mode::Failover && self.standby == Standby::Hot;
        if self.queue && !hot {
            return Err(
                "--queue: needs --mode failover --standby hot (every instance's service \
                 submits the tasks, and the active one's runs them)"
                    .into(),
            );
        }
        if hot && !self.queue && self.election.election == Backend::Etcd {
            return Err(
                "--standby hot: not with --election etcd: a hot service runs on every \
                 candidate, and an etcd term could neither give it a fencing token nor \
                 stop it when the lease is lost; use --standby cold (the default), which \
                 runs the service only during a term, with its token, or --queue, whose \
                 tasks are handed out only during a term and recorded fenced"
                    .into(),
            );
        }
        if let Some(option) = self.probes_a_shared_socket() {
            return Err(format!(
                "{option}: with --listen the instance in charge answers on that socket \
                 too, so it cannot tell that this one is ready; have the service send \
                 READY=1 on $NOTIFY_SOCKET, or check with --ready-cmd or on another port"
            ));
        }
        Ok(())
    }

    /// Without a `--ready-*` option, a service whose health is checked over HTTP,
    /// TCP or a command is ready at its first passing check (rather than waiting
    /// for a `READY=1` it may never send): health is checked once it is ready.
    pub fn ready_by_health(&mut self) {
        let (r, h) = (&mut self.readiness, &self.health);
        let chosen = r.ready_tcp.is_some()
            || r.ready_http.is_some()
            || r.ready_cmd.is_some()
            || r.ready_after.is_some();
        if !chosen {
            r.ready_http = h.health_http.clone();
            r.ready_tcp = h.health_tcp;
            r.ready_cmd = h.health_cmd.clone();
        }
    }

    /// The supervisor's policy, with the stop limit the backend allows.
    pub fn policy(&self, backend_stop_limit: Option<Duration>) -> Policy {
        let mode = match (self.protocol.mode, self.standby) {
            (Mode::Handover, _) => Life::HandOver {
                sockets: !self.listen.is_empty(),
            },
            (Mode::Failover, Standby::Cold) => Life::ColdStandby,
            (Mode::Failover, Standby::Hot) => Life::HotStandby,
        };
        Policy {
            mode,
            stop_signal: self.stop_signal,
            stop_limit: backend_stop_limit.map_or(self.stop_timeout, |l| l.min(self.stop_timeout)),
            ready_timeout: self.ready_timeout,
            health: self.health.enabled(),
            queue: self.queue.then_some(Queue {
                window: self.queue_window,
                limits: crate::channel::Limits {
                    tasks: self.queue_capacity,
                    bytes: self.queue_bytes,
                },
            }),
        }
    }

    /// The readiness option that would probe a port `--listen` shares with the
    /// instance in charge, if any.
    fn probes_a_shared_socket(&self) -> Option<String> {
        let shared = |port: u16| {
            self.listen.iter().any(|l| match l.address {
                Address::Tcp(a) => a.port() == port,
                _ => false,
            })
        };
        if let Some(port) = self.readiness.ready_tcp.filter(|&p| shared(p)) {
            return Some(format!("--ready-tcp {port}"));
        }
        let url = self.readiness.ready_http.as_ref()?;
        let (address, _, _) = parse_http_url(url)?;
        let port = address.rsplit_once(':')?.1.parse().ok()?;
        shared(port).then(|| format!("--ready-http {url}"))
    }
}

/// A size in bytes: a whole number with an optional unit (`B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB`), at least a payload's largest.
fn parse_size(s: &str) -> Result<usize, String> {
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("b", 1),
        ("kb", 1_000),
        ("kib", 1 << 10),
        ("mb", 1_000_000),
        ("mib", 1 << 20),
        ("gb", 1_000_000_000),
        ("gib", 1 << 30),
    ];
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let scale = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, scale)| *scale);
    let bytes = match (digits.parse::<u64>(), scale) {
        (Ok(n), Some(scale)) => n.checked_mul(scale),
        _ => None,
    };
    let bytes = bytes
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("{s:?} is not a size like 64MiB, 500KB or 1048576"))?;
    let least = crate::channel::MAX_PAYLOAD;
    if bytes < least {
        return Err(format!(
            "{bytes} bytes holds no payload of the largest size ({least} bytes)"
        ));
    }
    Ok(bytes)
}

/// Signals by name (`SIGTERM`, `TERM`) or number.
fn parse_signal(s: &str) -> Result<Signal, String> {
    const NAMES: &[(&str, Signal)] = &[
        ("HUP", Signal::HUP),
        ("INT", Signal::INT),
        ("QUIT", Signal::QUIT),
        ("KILL", Signal::KILL),
        ("USR1", Signal::USR1),
        ("USR2", Signal::USR2),
        ("TERM", Signal::TERM),
        ("CONT", Signal::CONT),
        ("STOP", Signal::STOP),
        ("WINCH", Signal::WINCH),
    ];
    if let Ok(n) = s.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(|| format!("{n} is not a signal number"));
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, sig)| *sig)
        .ok_or_else(|| format!("unknown signal {s:?} (try SIGTERM, SIGINT, SIGQUIT, SIGUSR1, 15)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("SIGTERM"), Ok(Signal::TERM));
        assert_eq!(parse_signal("int"), Ok(Signal::INT));
        assert_eq!(parse_signal("10"), Ok(Signal::USR1));
        assert!(parse_signal("SIGFOO").unwrap_err().contains("SIGFOO"));
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("500 kb"), Ok(500_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12 parsecs").unwrap_err().contains("not a size"));
        assert!(parse_size("1KiB").unwrap_err().contains("no payload"));
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
