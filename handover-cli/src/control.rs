//! Operators' requests to a running instance: `handover step-down` asks the
//! active instance of a scope to hand leadership to a standby (Patroni's
//! switchover). Each `handover run` in failover listens on a Unix socket of its
//! own in the runtime directory (`$XDG_RUNTIME_DIR`, else the temporary one),
//! named by its scope and id; the command asks every instance of the scope there,
//! and the active one answers that it steps down. In a container, run it there
//! (`docker exec`), or share the directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// What a request asks for, the one line it sends.
const STEP_DOWN: &str = "step-down";
/// How long the command waits for each instance's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The runtime directory: the control sockets, and the services' notify sockets.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// The file name prefix of a scope's control sockets in `dir`.
fn prefix(dir: &Path, scope: &str) -> Option<String> {
    // `handover-<stem>.<id>.ctl`: the same length as a socket's temporary name.
    let stem = handover_std::names::socket_stem(dir.as_os_str().len() + 9, scope)?;
    Some(format!("handover-{stem}."))
}

/// A request, answered once with a line.
pub struct Request {
    answer: oneshot::Sender<String>,
}

impl Request {
    pub fn answer(self, line: impl Into<String>) {
        let _ = self.answer.send(line.into());
    }
}

/// The control socket of one instance; its file goes with it.
pub struct Control {
    requests: mpsc::Receiver<Request>,
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl Control {
    /// Listens for the requests to instance `id` of `scope`.
    pub fn bind(scope: &str, id: u64) -> io::Result<Self> {
        let dir = runtime_dir();
        let prefix = prefix(&dir, scope)
            .ok_or_else(|| io::Error::other("the runtime directory's path is too long"))?;
        let path = dir.join(format!("{prefix}{id:016x}.ctl"));
        sweep(&dir, &prefix);
        let listener = UnixListener::bind(&path)?;
        let (tx, requests) = mpsc::channel(1);
        // Connections are read apart from the driver, so that waiting for
        // a request is cancel-safe.
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    let mut read = BufReader::new(read);
                    let asked = tokio::time::timeout(ANSWER_WITHIN, read.read_line(&mut line));
                    if asked.await.is_err() {
                        return;
                    }
                    if line.trim() != STEP_DOWN {
                        let _ = write.write_all(b"unknown request\n").await;
                        return;
                    }
                    let (answer, answered) = oneshot::channel::<String>();
                    if tx.send(Request { answer }).await.is_err() {
                        return;
                    }
                    if let Ok(line) = answered.await {
                        let _ = write.write_all(format!("{line}\n").as_bytes()).await;
                    }
                });
            }
        });
        Ok(Control {
            requests,
            task,
            path,
        })
    }

    /// The next step-down request.
    pub async fn next(&mut self) -> Request {
        match self.requests.recv().await {
            Some(request) => request,
            None => std::future::pending().await,
        }
    }
}

/// The control sockets of `prefix` in `dir`.
fn sockets(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(prefix) && name.ends_with(".ctl")
        })
        .collect()
}

/// Removes the sockets an instance killed with SIGKILL left behind (nothing
/// listens on them): the directory holds only the scope's live instances.
fn sweep(dir: &Path, prefix: &str) {
    for socket in sockets(dir, prefix) {
        let refused = std::os::unix::net::UnixStream::connect(&socket)
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
        if refused {
            let _ = std::fs::remove_file(&socket);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug, Clone, ClapArgs)]
pub struct StepDownArgs {
    /// Scope of the instances [default: `$BALENA_DEVICE_UUID/$BALENA_SERVICE_NAME`,
    /// or "default"]
    #[arg(long, env = "HANDOVER_SCOPE")]
    scope: Option<String>,
}

/// `handover step-down`: 0 if the active instance steps down, 1 if none could.
pub async fn step_down(args: StepDownArgs) -> ExitCode {
    let scope = match &args.scope {
        Some(scope) => scope.clone(),
        None => match handover_std::Config::from_env() {
            Ok(c) => c.scope,
            Err(e) => {
                eprintln!("handover step-down: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let dir = runtime_dir();
    let Some(prefix) = prefix(&dir, &scope) else {
        eprintln!("handover step-down: the runtime directory's path is too long");
        return ExitCode::from(2);
    };
    let sockets = sockets(&dir, &prefix);
    if sockets.is_empty() {
        eprintln!(
            "handover step-down: no instance of scope {scope:?} runs here ({})",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let mut stepped_down = false;
    for socket in sockets {
        let id = socket
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&prefix)?.strip_suffix(".ctl"))
            .unwrap_or("?")
            .to_owned();
        let answer = tokio::time::timeout(ANSWER_WITHIN, ask(&socket)).await;
        match answer {
            Ok(Ok(line)) => {
                stepped_down |= line == "stepping down";
                println!("{id}: {line}");
            }
            // A socket left by an instance that was killed.
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => println!("{id}: {e}"),
            Err(_) => println!("{id}: no answer"),
        }
    }
    match stepped_down {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

async fn ask(socket: &Path) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket).await?;
    stream
        .write_all(format!("{STEP_DOWN}\n").as_bytes())
        .await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    Ok(line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_only_the_sockets_nobody_listens_on() {
        let dir = std::env::temp_dir().join(format!("handover-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = "handover-s.";
        let (dead, live) = (dir.join("handover-s.1.ctl"), dir.join("handover-s.2.ctl"));
        let other = dir.join("handover-t.3.ctl");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        drop(std::os::unix::net::UnixListener::bind(&other).unwrap());
        let _listening = std::os::unix::net::UnixListener::bind(&live).unwrap();
        sweep(&dir, prefix);
        assert!(!dead.exists(), "a killed instance's socket is removed");
        assert!(live.exists(), "a live one stays");
        assert!(other.exists(), "another scope's is left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
