//! `handover`: the handover protocol for services written in any language.
//!
//! `handover run -- CMD` wraps a service; `handover watch` shows the peers on a group;
//! `handover demo` shows a hand-over on loopback.
//!
//! Two executables share this code: `handover`, which links the multicast
//! election only, and `handover-etcd`, which links etcd's client too (gRPC and
//! TLS: as much code again). `handover` executes `handover-etcd` in its own place
//! when `--election etcd` is asked for, so a LAN instance never maps a page of
//! etcd's client, and an etcd one keeps its pid (PID 1 in a container).

mod backends;
mod channel;
mod control;
mod demo;
mod health;
mod listen;
mod log;
mod options;
mod ready;
mod reaper;
mod run;
mod status;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;

pub use crate::backends::Backends;
use crate::log::{Log, LogFormat};
use crate::options::Backend;
use crate::run::Exit;

/// Hand-over, failover and leader election for services updated in place.
#[derive(Debug, Parser)]
#[command(name = "handover", version, propagate_version = true)]
struct Cli {
    /// Log format: human-readable text, or one JSON object per line for each event
    /// (with `t_us`, a monotonic timestamp in microseconds).
    #[arg(long, env = "HANDOVER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a service: signal it when a newer instance takes over (hand-over), or start
    /// it only while elected (failover).
    Run(Box<run::Args>),
    /// Show the peers on a group, live.
    Watch(watch::Args),
    /// Show the peers of a scope and who is in charge, then exit: 0 if exactly one
    /// instance is, 1 if none, 2 if more than one (for health checks and scripts).
    Status(status::Args),
    /// Show a hand-over between two instances on loopback, step by step.
    Demo(demo::Args),
    /// Ask the active instance of a scope on this host (failover) to hand
    /// leadership to a standby: its service stops cleanly, it leaves and exits 0.
    /// Exits 1 if no instance here could (none active, or no standby).
    StepDown(control::StepDownArgs),
    /// Internal: become CMD with `LISTEN_PID` set to this pid (how `run --listen`
    /// starts a service).
    #[command(hide = true)]
    ExecService {
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

/// The `handover` command, with the election backends `backends` links.
pub fn main(backends: Backends) -> ExitCode {
    let cli = Cli::parse();
    let wants_etcd = match &cli.command {
        Command::Run(args) => args.election.election == Backend::Etcd,
        Command::Watch(args) => args.election.election == Backend::Etcd,
        _ => false,
    };
    if wants_etcd && !backends.etcd() {
        return backends::exec_etcd();
    }
    if let Command::ExecService { command } = &cli.command {
        let e = listen::exec_service(command);
        say(format_args!("cannot start {:?}: {e}", command[0]));
        return Exit::NotStarted(e.kind()).into();
    }
    // The demo tells its own story; library logs would interleave with it.
    let level = match cli.command {
        Command::Demo(_) => LevelFilter::WARN,
        _ => LevelFilter::INFO,
    };
    let log = Log::init(cli.log_format, level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            say(format_args!("cannot start the runtime: {e}"));
            return Exit::Refused.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(*args, log, backends).await.map(ExitCode::from),
            Command::Watch(args) => watch::watch(args, backends).await,
            Command::Status(args) => status::status(args).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::StepDown(args) => Ok(control::step_down(args).await),
            Command::ExecService { .. } => unreachable!("handled before the runtime"),
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            say(format_args!("{e}"));
            Exit::Refused.into()
        }
    };
    log::flush(std::time::Duration::from_secs(1));
    code
}

/// A last word on stderr; a closed, full or stalled stderr does not make it a
/// panic or a hang.
fn say(what: std::fmt::Arguments) {
    log::line(format!("handover: {what}\n").as_bytes());
}
