//! Whether the running service still serves: a check repeated for as long as it
//! runs (HTTP, TCP or a command), and systemd's watchdog. A verdict changes after
//! `--health-fall` failures in a row, and back after `--health-rise` successes, as
//! keepalived's `track_script` does; the supervisor decides what a verdict means.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::reaper::Reaper;

/// The continuous health check of the running service.
#[derive(Debug, Clone, Args)]
pub struct HealthOptions {
    /// Healthy while `GET URL` (http://host:port/path) answers 2xx within
    /// --health-timeout, checked every --health-interval while the service runs
    #[arg(
        long,
        env = "HANDOVER_HEALTH_HTTP",
        value_name = "URL",
        group = "health"
    )]
    pub health_http: Option<String>,

    /// Healthy while a TCP connection to 127.0.0.1:PORT succeeds
    #[arg(
        long,
        env = "HANDOVER_HEALTH_TCP",
        value_name = "PORT",
        group = "health"
    )]
    pub health_tcp: Option<u16>,

    /// Healthy while `sh -c CMD` exits 0 within --health-timeout
    #[arg(
        long,
        env = "HANDOVER_HEALTH_CMD",
        value_name = "CMD",
        group = "health"
    )]
    pub health_cmd: Option<String>,

    /// How often the health check runs
    #[arg(long, env = "HANDOVER_HEALTH_INTERVAL", value_name = "DURATION", default_value = "1s", value_parser = crate::options::parse_duration)]
    pub health_interval: Duration,

    /// How long one check may take before it counts as failed
    #[arg(long, env = "HANDOVER_HEALTH_TIMEOUT", value_name = "DURATION", default_value = "1s", value_parser = crate::options::parse_duration)]
    pub health_timeout: Duration,

    /// Failed checks in a row that make the service unhealthy
    #[arg(
        long,
        env = "HANDOVER_HEALTH_FALL",
        value_name = "N",
        default_value = "3"
    )]
    pub health_fall: NonZeroU32,

    /// Passed checks in a row that make it healthy again
    #[arg(
        long,
        env = "HANDOVER_HEALTH_RISE",
        value_name = "N",
        default_value = "2"
    )]
    pub health_rise: NonZeroU32,

    /// systemd's watchdog: the service gets WATCHDOG_USEC and must send WATCHDOG=1
    /// on $NOTIFY_SOCKET at least this often; a longer silence makes it unhealthy
    #[arg(long, env = "HANDOVER_WATCHDOG", value_name = "DURATION", value_parser = crate::options::parse_duration)]
    pub watchdog: Option<Duration>,
}

impl HealthOptions {
    /// The check to run, if any.
    fn probe(&self) -> Option<Probe> {
        if let Some(url) = &self.health_http {
            Some(Probe::Http(url.clone()))
        } else if let Some(port) = self.health_tcp {
            Some(Probe::Tcp(port))
        } else {
            self.health_cmd.clone().map(Probe::Cmd)
        }
    }

    /// Whether the service is watched at all.
    pub fn enabled(&self) -> bool {
        self.probe().is_some() || self.watchdog.is_some()
    }
}

#[derive(Debug, Clone)]
enum Probe {
    Http(String),
    Tcp(u16),
    Cmd(String),
}

impl Probe {
    fn name(&self) -> &'static str {
        match self {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Cmd(_) => "cmd",
        }
    }

    /// One check; why it failed.
    async fn run(&self, timeout: Duration, reaper: &Reaper) -> Result<(), String> {
        let check = async {
            match self {
                Probe::Http(url) => crate::ready::http_status(url).await.and_then(|code| {
                    (200..300)
                        .contains(&code)
                        .then_some(())
                        .ok_or(format!("answered {code}"))
                }),
                Probe::Tcp(port) => TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Probe::Cmd(cmd) => {
                    let mut child = reaper
                        .spawn(std::process::Command::new("sh").args(["-c", cmd]))
                        .map_err(|e| e.to_string())?;
                    let status = child.wait().await.map_err(|e| e.to_string())?;
                    match status.success() {
                        true => Ok(()),
                        false => Err(format!("exited with {status}")),
                    }
                }
            }
        };
        // A command still running at the timeout is killed on drop.
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }
}

/// A verdict that changes only after `fall` failures (or `rise` successes) in a
/// row.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    healthy: bool,
    /// Results in a row that disagree with the verdict.
    against: u32,
    fall: u32,
    rise: u32,
}

impl Verdict {
    /// Healthy until proven otherwise: the service was ready (or, a hot standby,
    /// has `fall` checks to come up).
    pub fn new(fall: NonZeroU32, rise: NonZeroU32) -> Self {
        Verdict {
            healthy: true,
            against: 0,
            fall: fall.get(),
            rise: rise.get(),
        }
    }

    /// Takes one result; the new verdict if it changed.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if passed == self.healthy {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.against < needed {
            return None;
        }
        self.healthy = passed;
        self.against = 0;
        Some(passed)
    }
}

/// A change of verdict, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub healthy: bool,
    /// Which check: `http`, `tcp`, `cmd` or `watchdog`.
    pub check: &'static str,
    /// The last failure, for an unhealthy verdict.
    pub detail: Option<String>,
}

/// The checks of one run of the service; they stop when this is dropped.
pub struct Checks {
    changes: mpsc::Receiver<Change>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Checks {
    /// Starts the checks `options` name; `pings` turns over at each `WATCHDOG=1`.
    pub fn start(options: &HealthOptions, reaper: Reaper, pings: watch::Receiver<u64>) -> Self {
        let (tx, changes) = mpsc::channel(4);
        let mut tasks = Vec::new();
        if let Some(probe) = options.probe() {
            let (interval, timeout) = (options.health_interval, options.health_timeout);
            let mut verdict = Verdict::new(options.health_fall, options.health_rise);
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut next = Instant::now() + interval;
                loop {
                    tokio::time::sleep_until(next).await;
                    next += interval;
                    let result = probe.run(timeout.min(interval), &reaper).await;
                    if let Some(healthy) = verdict.record(result.is_ok()) {
                        let change = Change {
                            healthy,
                            check: probe.name(),
                            detail: result.err(),
                        };
                        if tx.send(change).await.is_err() {
                            return;
                        }
                    }
                    // A check slower than the interval does not pile up.
                    next = next.max(Instant::now());
                }
            }));
        }
        if let Some(limit) = options.watchdog {
            tasks.push(tokio::spawn(watchdog(limit, pings, tx)));
        }
        Checks { changes, tasks }
    }

    /// The next change of verdict.
    pub async fn changed(&mut self) -> Option<Change> {
        self.changes.recv().await
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long an expired watchdog waits for pings already sent to be read.
const RELAY_GRACE: Duration = Duration::from_millis(20);

/// Unhealthy as soon as `limit` passes without a ping; healthy at the next one.
async fn watchdog(limit: Duration, mut pings: watch::Receiver<u64>, tx: mpsc::Sender<Change>) {
    let mut healthy = true;
    let mut deadline = Instant::now() + limit;
    loop {
        tokio::select! {
            pinged = pings.changed() => {
                if pinged.is_err() {
                    return;
                }
                deadline = Instant::now() + limit;
                if !healthy {
                    healthy = true;
                    let change = Change { healthy, check: "watchdog", detail: None };
                    if tx.send(change).await.is_err() {
                        return;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline), if healthy => {
                // After a pause of `handover` itself the pings wait unread in the
                // notify socket: the relay reads them first.
                tokio::time::sleep(RELAY_GRACE).await;
                if pings.has_changed().unwrap_or(false) {
                    continue;
                }
                healthy = false;
                let detail = Some(format!("no WATCHDOG=1 for {limit:?}"));
                if tx.send(Change { healthy, check: "watchdog", detail }).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn a_verdict_changes_after_fall_failures_and_rise_successes_in_a_row() {
        let mut v = Verdict::new(n(3), n(2));
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(true), None, "a success resets the count");
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(false), Some(false), "three in a row");
        assert_eq!(v.record(false), None);
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(false), None, "a failure resets the rise");
        assert_eq!(v.record(true), None);
        assert_eq!(v.record(true), Some(true), "two in a row");
    }
}
