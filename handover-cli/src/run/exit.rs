//! How `handover` ends, and the status it exits with: one enum for every path,
//! the same table as the README's.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use rustix::process::Signal;

/// Why `handover` exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A newer instance took over and the service was stopped for it: the protocol
    /// did its job, so 0 whatever the service's status (a JVM exits 143 on SIGTERM,
    /// a handler may exit 1 or 130, a slow one is killed). Anything else would make
    /// `Restart=on-failure` start the old version again, which takes over again.
    HandedOver,
    /// `handover` was asked to stop (a stopping signal, passed on to the service):
    /// 0 if the service ended by the stop signal (or exited 128 + its number, as a
    /// JVM does), else its own status.
    StopAsked {
        /// How the service ended.
        status: ExitStatus,
        /// The signal `handover` stops its service with.
        stop_signal: Signal,
    },
    /// The service ended on its own: its status, passed through, and at least 1
    /// when `failover` (a standby must take over, and a restart policy must see a
    /// failure).
    OnItsOwn {
        /// How the service ended.
        status: ExitStatus,
        /// It ran in failover.
        failover: bool,
    },
    /// Nothing ran that could fail: a standby, or an instance waiting for its
    /// sockets, asked to stop; or the protocol finished after leaving.
    Left,
    /// The service was not ready within `--ready-timeout`.
    NotReady,
    /// The active's service failed its health check: it was stopped, and a
    /// standby took over.
    Unhealthy,
    /// The service could not be started.
    NotStarted(ErrorKind),
    /// The protocol no longer runs (`EX_SOFTWARE`): no newer instance took over,
    /// so the complete file is not written, and a restart policy starts it again.
    DriverFailed,
    /// The configuration was refused, or `handover` itself could not start.
    Refused,
}

impl Exit {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::HandedOver | Exit::Left => 0,
            Exit::StopAsked {
                status,
                stop_signal,
            } => {
                let by_stop_signal = status.signal() == Some(stop_signal.as_raw())
                    || status.code() == Some(128 + stop_signal.as_raw());
                if by_stop_signal {
                    0
                } else {
                    shell_code(status)
                }
            }
            Exit::OnItsOwn { status, failover } => match failover {
                true => shell_code(status).max(1),
                false => shell_code(status),
            },
            Exit::NotReady | Exit::Unhealthy => 1,
            // As a shell: 127 for a command that does not exist, 126 for one that
            // could not be run.
            Exit::NotStarted(ErrorKind::NotFound) => 127,
            Exit::NotStarted(_) => 126,
            Exit::DriverFailed => 70,
            Exit::Refused => 2,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// The exit code a shell would report for `status`.
pub fn shell_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn killed(sig: i32) -> ExitStatus {
        ExitStatus::from_raw(sig)
    }

    #[test]
    fn codes_like_a_shell() {
        assert_eq!(shell_code(exited(3)), 3);
        assert_eq!(shell_code(killed(15)), 143);
    }

    #[test]
    fn the_readmes_table() {
        let term = Signal::TERM;
        let stop = |status| Exit::StopAsked {
            status,
            stop_signal: term,
        };
        let own = |status, failover| Exit::OnItsOwn { status, failover };
        let cases = [
            (Exit::HandedOver, 0),
            (stop(killed(15)), 0),
            (stop(exited(143)), 0),
            (stop(exited(1)), 1),
            (stop(killed(9)), 137),
            (own(exited(0), false), 0),
            (own(exited(0), true), 1),
            (own(exited(3), true), 3),
            (own(killed(9), false), 137),
            (Exit::Left, 0),
            (Exit::NotReady, 1),
            (Exit::NotStarted(ErrorKind::NotFound), 127),
            (Exit::NotStarted(ErrorKind::PermissionDenied), 126),
            (Exit::DriverFailed, 70),
            (Exit::Refused, 2),
        ];
        for (exit, code) in cases {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
