//! Children and orphans.
//!
//! As a container's entrypoint `handover` is PID 1, and every process orphaned in the
//! container becomes its child: if nobody waits for them, they stay zombies until the
//! container stops (what `tini` and `docker run --init` exist for). Elsewhere
//! `handover` makes itself a child subreaper, so the service's orphans come to it
//! rather than to the host's init.
//!
//! So `handover` waits for every child itself: on `SIGCHLD` it collects each one that
//! exited (`waitpid(-1, WNOHANG)`). A child it started is registered when it is
//! spawned (the runtime has one thread: no `SIGCHLD` is handled in between), and its
//! status goes to whoever waits for it; anything else was an orphan and is just
//! reaped.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

type Waiters = Arc<Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>>;

/// Waits for every child of `handover`.
#[derive(Debug, Clone)]
pub struct Reaper {
    waiters: Waiters,
}

/// A child started through the [`Reaper`]; killed if dropped while running.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    exited: oneshot::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

impl Reaper {
    /// Starts collecting children; must run inside the (single-threaded) runtime.
    pub fn start() -> io::Result<Self> {
        let me = rustix::process::getpid();
        if !me.is_init() {
            if let Err(e) = rustix::process::set_child_subreaper(Some(me)) {
                tracing::debug!("not a child subreaper: {e}");
            }
        }
        let mut sigchld = signal(SignalKind::child())?;
        let waiters: Waiters = Arc::default();
        let reaper = Reaper {
            waiters: waiters.clone(),
        };
        tokio::spawn(async move {
            loop {
                reap(&waiters);
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Starts `cmd` as a child whose exit status this reaper delivers.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let child = cmd.spawn()?;
        let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("no pid"))?;
        let (tx, exited) = oneshot::channel();
        waiters.insert(pid.as_raw_nonzero().get(), tx);
        // The std handle never waits: the reaper does.
        drop(child);
        Ok(Child {
            pid,
            exited,
            status: None,
        })
    }
}

/// Collects every child that has exited.
fn reap(waiters: &Waiters) {
    loop {
        match rustix::process::waitpid(None, WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                let waiter = waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pid.as_raw_nonzero().get());
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(exit_status(status));
                    }
                    None => tracing::debug!("reaped orphan {}", pid.as_raw_nonzero()),
                }
            }
            // No child has exited (or there are none left).
            Ok(None) | Err(_) => return,
        }
    }
}

fn exit_status(status: WaitStatus) -> ExitStatus {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitStatus::from_raw(code << 8),
        (None, Some(signal)) => ExitStatus::from_raw(signal),
        (None, None) => ExitStatus::from_raw(0x7f00),
    }
}

impl Child {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits until the child has exited.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = (&mut self.exited)
            .await
            .map_err(|_| io::Error::other("the reaper stopped"))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Sends `signal` to the child, unless it has exited.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        rustix::process::kill_process(self.pid, signal).map_err(io::Error::from)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            let _ = self.signal(Signal::KILL);
        }
    }
}

/// A command whose child gets `signal` if `handover` dies (kill -9): a service must
/// not live on unsupervised, in failover a standby is about to start another one.
pub fn dies_with_parent(cmd: &mut Command, signal: Signal) -> &mut Command {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec and makes two
    // async-signal-safe system calls. (The death signal follows the forking thread:
    // the runtime is single-threaded.)
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(signal))?;
            // `handover` may have died between the fork and the line above: then
            // no signal will come, and the service must not start. It ends here
            // rather than by an error, which the child would report through a pipe
            // nobody reads any more (and the standard library aborts, loudly).
            if rustix::process::getppid() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}
