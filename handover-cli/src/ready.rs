//! How `handover run` learns that its child is ready.

use std::time::Duration;

use clap::Args;
use handover_std::notify::NotifySocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::reaper::Reaper;

/// How often probes are repeated.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Readiness: the child's `READY=1` on `$NOTIFY_SOCKET` unless one of these is given.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct Readiness {
    /// Ready when a TCP connection to 127.0.0.1:PORT succeeds. Without any --ready-*
    /// option: when the service sends READY=1 on $NOTIFY_SOCKET (sd_notify)
    #[arg(long, env = "HANDOVER_READY_TCP", value_name = "PORT")]
    pub ready_tcp: Option<u16>,

    /// Ready when `GET URL` (http://host:port/path) answers 2xx
    #[arg(long, env = "HANDOVER_READY_HTTP", value_name = "URL")]
    pub ready_http: Option<String>,

    /// Ready when `sh -c CMD` exits 0 (retried every 50 ms)
    #[arg(long, env = "HANDOVER_READY_CMD", value_name = "CMD")]
    pub ready_cmd: Option<String>,

    /// Ready this long after the child started (e.g. 500ms, 2s)
    #[arg(long, env = "HANDOVER_READY_AFTER", value_name = "DURATION", value_parser = crate::options::parse_duration)]
    pub ready_after: Option<Duration>,
}

impl Readiness {
    /// Waits until the child is ready; returns how it was detected. `notified` turns
    /// true when the child sends `READY=1` (see [`Relay`]).
    pub async fn wait(
        &self,
        notified: &mut watch::Receiver<bool>,
        reaper: &Reaper,
    ) -> &'static str {
        if let Some(port) = self.ready_tcp {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            "tcp"
        } else if let Some(url) = &self.ready_http {
            while !http_ok(url).await {
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            "http"
        } else if let Some(cmd) = &self.ready_cmd {
            loop {
                let probe = reaper.spawn(std::process::Command::new("sh").args(["-c", cmd]));
                if let Ok(mut probe) = probe {
                    if probe.wait().await.is_ok_and(|s| s.success()) {
                        return "cmd";
                    }
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        } else if let Some(after) = self.ready_after {
            tokio::time::sleep(after).await;
            "after"
        } else {
            if notified.wait_for(|ready| *ready).await.is_err() {
                // The relay is gone: the child will not be ready.
                std::future::pending::<()>().await;
            }
            "notify"
        }
    }
}

/// The child's notification socket, read for as long as the child runs: `READY=1`
/// marks it ready, and what a service manager wants to hear (status, watchdog pings,
/// stopping, timeout extensions) is passed on to systemd when `handover` itself runs
/// under it (`$NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct Relay {
    path: std::path::PathBuf,
    ready: watch::Receiver<bool>,
    pings: std::sync::Arc<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Binds a socket for a child in `dir` and starts reading it.
    pub fn start(dir: &std::path::Path) -> std::io::Result<Self> {
        let socket = NotifySocket::bind(dir)?;
        let path = socket.path().to_owned();
        let (tx, ready) = watch::channel(false);
        let pings = std::sync::Arc::new(watch::Sender::new(0u64));
        let ping = pings.clone();
        let task = tokio::spawn(async move {
            loop {
                match socket.recv().await {
                    Ok(n) => {
                        if n.ready {
                            tx.send_replace(true);
                        }
                        if n.pass_on.lines().any(|l| l == "WATCHDOG=1") {
                            ping.send_modify(|n| *n += 1);
                        }
                        if !n.pass_on.is_empty() {
                            // Never waits for a stalled service manager.
                            if let Err(e) = handover_std::notify::try_notify(n.pass_on.as_bytes()) {
                                tracing::debug!("passing on to the service manager: {e}");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!("notify socket: {e}");
                        tokio::time::sleep(PROBE_INTERVAL).await;
                    }
                }
            }
        });
        Ok(Relay {
            path,
            ready,
            pings,
            task,
        })
    }

    /// The path to hand to the child as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Turns over at each `WATCHDOG=1` the child sends (or [`ping`](Self::ping)).
    pub fn pings(&self) -> watch::Receiver<u64> {
        self.pings.subscribe()
    }

    /// A `WATCHDOG=1` that came another way (the service channel).
    pub fn ping(&self) {
        self.pings.send_modify(|n| *n += 1);
    }

    /// Turns true when the child has sent `READY=1`.
    pub fn notified(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Dropping the task's future removes the socket file.
        self.task.abort();
    }
}

/// Splits `http://host[:port][/path]` into the address to connect to, the host
/// header and the path.
pub fn parse_http_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let address = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((address, authority.to_owned(), path.to_owned()))
}

async fn http_ok(url: &str) -> bool {
    let probe = tokio::time::timeout(Duration::from_secs(2), http_status(url));
    matches!(probe.await, Ok(Ok(200..=299)))
}

/// The status code `GET url` answers with (HTTP/1.0, no body read); why not.
pub async fn http_status(url: &str) -> Result<u16, String> {
    let (address, host, path) = parse_http_url(url).ok_or("not an http:// URL")?;
    let mut s = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    // "HTTP/1.x 200"
    let code = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|c| c.parse().ok());
    match (head.starts_with(b"HTTP/1."), code) {
        (true, Some(code)) => Ok(code),
        _ => Err("not an HTTP answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_http_url;

    #[test]
    fn http_urls() {
        assert_eq!(
            parse_http_url("http://localhost:8080/health"),
            Some((
                "localhost:8080".into(),
                "localhost:8080".into(),
                "/health".into()
            ))
        );
        assert_eq!(
            parse_http_url("http://10.0.0.1"),
            Some(("10.0.0.1:80".into(), "10.0.0.1".into(), "/".into()))
        );
        assert_eq!(parse_http_url("https://x/"), None);
        assert_eq!(parse_http_url("http:///x"), None);
    }
}
