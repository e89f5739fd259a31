//! A service for the multi-process tests: reports readiness over `sd_notify`, records
//! its life in a file, and exits when asked.
//!
//! `fake-service MARK [--exit-code N] [--ignore-term] [--ready-delay-ms N] [--status TEXT]`
//!
//! Exits on SIGTERM (unless `--ignore-term`); records SIGHUP, SIGINT, SIGQUIT,
//! SIGUSR1, SIGUSR2 and SIGWINCH and carries on. With `--status`, after `READY=1` it
//! also sends `STATUS=TEXT`, a watchdog ping and a `MAINPID` on its `NOTIFY_SOCKET`.

use std::io::Write;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

fn mark(path: &str, what: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("mark file");
    writeln!(f, "{what} {}", std::process::id()).expect("mark file");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: fake-service MARK [options]")
        .clone();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let exit_code = option("--exit-code").unwrap_or(0) as i32;
    let ignore_term = args.iter().any(|a| a == "--ignore-term");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    // The other signals a supervisor sends are recorded, nothing more.
    let others = [
        ("hup", SignalKind::hangup()),
        ("int", SignalKind::interrupt()),
        ("quit", SignalKind::quit()),
        ("usr1", SignalKind::user_defined1()),
        ("usr2", SignalKind::user_defined2()),
        ("winch", SignalKind::window_change()),
    ];
    for (name, kind) in others {
        let mut stream = signal(kind).expect("signal handler");
        let path = path.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                mark(&path, name);
            }
        });
    }
    mark(&path, "started");
    tokio::time::sleep(Duration::from_millis(
        option("--ready-delay-ms").unwrap_or(0),
    ))
    .await;
    handover_std::notify::notify_ready().expect("notify");
    mark(&path, "ready");
    if let Some(i) = args.iter().position(|a| a == "--status") {
        let status = args.get(i + 1).expect("--status TEXT");
        let state = format!("STATUS={status}\nWATCHDOG=1\nMAINPID=1");
        handover_std::notify::notify(state.as_bytes()).expect("notify");
    }
    loop {
        term.recv().await;
        mark(&path, "term");
        if !ignore_term {
            std::process::exit(exit_code);
        }
    }
}
