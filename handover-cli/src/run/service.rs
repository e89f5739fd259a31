//! The child process and the signals `handover` passes on to it.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitStatus};

use handover_std::sockets::Sockets;
use handover_std::Term;
use rustix::process::Signal;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::SignalStream;
use tokio_stream::{StreamExt, StreamMap};

use super::supervisor::STOPPING;
use crate::channel::Channel;
use crate::log::Log;
use crate::reaper::{dies_with_parent, Child, Reaper};

/// How to start the service.
pub struct Launch<'a> {
    pub command: &'a [OsString],
    /// systemd's watchdog interval for the service (`--watchdog`).
    pub watchdog: Option<std::time::Duration>,
    /// Where the service sends `READY=1` (`NOTIFY_SOCKET`).
    pub notify_socket: &'a Path,
    /// The term it serves in (etcd), given to it as `etcdctl lock` gives its child
    /// `ETCD_LOCK_REV`.
    pub term: Option<&'a Term>,
    /// Listening sockets, by systemd's convention (`--listen`).
    pub sockets: Option<&'a Sockets>,
    /// The service channel, on descriptor 3 (`$HANDOVER_EVENTS_FD`).
    pub channel: Option<&'a mut Channel>,
}

/// The running service.
pub struct Service {
    child: Child,
}

impl Service {
    pub fn spawn(launch: Launch, reaper: &Reaper, log: Log) -> std::io::Result<Self> {
        let Launch {
            command,
            watchdog,
            notify_socket,
            term,
            sockets,
            mut channel,
        } = launch;
        // With sockets or a watchdog, `handover exec-service` sets LISTEN_PID and
        // WATCHDOG_PID in the service's own process, then becomes it.
        let mut cmd = match sockets.is_some() || watchdog.is_some() {
            true => {
                let mut cmd = Command::new("/proc/self/exe");
                cmd.args(["exec-service", "--"]).args(command);
                cmd
            }
            false => {
                let mut cmd = Command::new(&command[0]);
                cmd.args(&command[1..]);
                cmd
            }
        };
        // Never let the service take `handover`'s own socket activation for its own.
        cmd.env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("LISTEN_PID")
            .env("NOTIFY_SOCKET", notify_socket);
        if let Some(watchdog) = watchdog {
            cmd.env("WATCHDOG_USEC", watchdog.as_micros().to_string());
        }
        let _sources = match (sockets, channel.as_ref().and_then(|c| c.service_end())) {
            (Some(sockets), _) => crate::listen::pass_to(sockets, &mut cmd)?,
            (None, Some(end)) => {
                cmd.env("HANDOVER_EVENTS_FD", "3");
                crate::listen::pass_fds(&mut cmd, &[end])?
            }
            (None, None) => Vec::new(),
        };
        if let Some(term) = term {
            cmd.env("HANDOVER_FENCING_TOKEN", term.token.to_string())
                .env("HANDOVER_ELECTION_KEY", &term.key);
        }
        // SIGKILL, not the stop signal: nobody is left to enforce a stop timeout,
        // and a service that lingers (or ignores SIGTERM) beside the instance that
        // takes over is two in charge.
        dies_with_parent(&mut cmd, Signal::KILL);
        let child = reaper.spawn(&mut cmd).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", command[0]))
        })?;
        if let Some(channel) = channel.as_mut() {
            channel.handed();
        }
        log.event(
            "child_started",
            json!({ "pid": child.pid().as_raw_nonzero().get() }),
        );
        Ok(Service { child })
    }

    pub fn signal(&self, sig: Signal, log: Log) {
        log.event(
            "child_signalled",
            json!({ "pid": self.child.pid().as_raw_nonzero().get(), "signal": sig.as_raw() }),
        );
        if let Err(e) = self.child.signal(sig) {
            tracing::warn!("signalling the child failed: {e}");
        }
        if STOPPING.contains(&sig) {
            // As systemd does: a stopped service (SIGSTOP, a frozen container)
            // must run to handle its stop signal.
            let _ = self.child.signal(Signal::CONT);
        }
    }

    /// SIGKILL: the service overran the stop limit.
    pub fn kill(&self, limit: std::time::Duration, log: Log) {
        log.event(
            "child_killed",
            json!({ "after_ms": limit.as_millis() as u64 }),
        );
        tracing::warn!(
            "the service did not stop within {} of the stop signal: killed",
            humantime::format_duration(limit)
        );
        if let Err(e) = self.child.signal(Signal::KILL) {
            tracing::warn!("killing the child failed: {e}");
        }
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }
}

/// Signals `handover` forwards to its child: every one a supervisor sends. Without
/// a handler, SIGUSR1 and the others would kill `handover` (and its service) without
/// a goodbye.
pub struct Forwarded {
    signals: StreamMap<i32, SignalStream>,
}

impl Forwarded {
    pub fn install() -> std::io::Result<Self> {
        let mut signals = StreamMap::new();
        for sig in STOPPING
            .into_iter()
            .chain([Signal::USR1, Signal::USR2, Signal::WINCH])
        {
            let stream = signal(SignalKind::from_raw(sig.as_raw()))?;
            signals.insert(sig.as_raw(), SignalStream::new(stream));
        }
        Ok(Forwarded { signals })
    }

    pub async fn recv(&mut self) -> Signal {
        loop {
            if let Some((raw, ())) = self.signals.next().await {
                if let Some(sig) = Signal::from_named_raw(raw) {
                    return sig;
                }
            }
        }
    }
}
