//! Real etcd clusters for the tests: members started from the etcd binary on
//! loopback ports picked here, with the fast timings etcd's own tests use, and
//! removed (processes and data directories) when the cluster is dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{handover_bin, Run};

/// The etcd server: `$HANDOVER_ETCD_BIN`, else `etcd` on `PATH`; `Err` says what
/// is missing.
pub fn etcd_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("HANDOVER_ETCD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "etcd is not installed (Debian's etcd-server, or HANDOVER_ETCD_BIN)".to_string()
        })
}

/// A free loopback port (bound, then released for the member to take).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One member: its ports and, while it runs, its process.
#[derive(Debug)]
pub struct Member {
    name: String,
    client: u16,
    peer: u16,
    process: Option<Child>,
}

impl Member {
    /// Its client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }
}

/// A cluster of etcd members on loopback.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    initial: String,
    /// The members, in start order.
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members and waits until each answers its health check.
    pub fn start(bin: PathBuf, n: usize) -> Self {
        let dir = crate::process::scratch(&format!("etcd-{n}-{}", free_port()));
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                process: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin,
            dir,
            initial,
            members,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &m.url()])
            .args(["--advertise-client-urls", &m.url()])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .arg("--unsafe-no-fsync")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.members[i].process = Some(child);
    }

    /// Comma-separated client URLs of every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether member `i` says it is healthy (`GET /health` on its client port).
    pub fn healthy(&self, i: usize) -> bool {
        let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.members[i].client)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        let mut reply = String::new();
        s.write_all(request.as_bytes()).is_ok()
            && s.read_to_string(&mut reply).is_ok()
            && reply.contains("\"health\":\"true\"")
    }

    fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.healthy(i) {
            assert!(
                Instant::now() < deadline,
                "etcd member {i} never became healthy"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The member that is the raft leader, asked over the maintenance API's HTTP
    /// gateway (`/v3/maintenance/status`).
    pub fn raft_leader(&self) -> Option<usize> {
        let ids: Vec<(usize, String)> = (0..self.members.len())
            .filter_map(|i| {
                let status = self.status(i)?;
                Some((i, status))
            })
            .collect();
        let field = |s: &str, key: &str| -> Option<String> {
            let at = s.find(&format!("\"{key}\":\""))? + key.len() + 4;
            Some(s[at..].split('"').next()?.to_owned())
        };
        ids.iter().find_map(|(i, s)| {
            let me = field(s, "member_id")?;
            (field(s, "leader")? == me).then_some(*i)
        })
    }

    fn status(&self, i: usize) -> Option<String> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, self.members[i].client)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let body = "{}";
        let request = format!(
            "POST /v3/maintenance/status HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok()?;
        Some(reply)
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed member with its data: it rejoins (etcd ignores the
    /// initial-cluster flags once a data directory exists).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to member `i`.
    pub fn signal(&self, i: usize, signal: rustix::process::Signal) {
        let pid = self.members[i].pid().expect("running") as i32;
        let pid = rustix::process::Pid::from_raw(pid).expect("pid");
        rustix::process::kill_process(pid, signal).expect("signal etcd");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A stopped member must be continued to die.
            if let Some(pid) = self.members[i].pid() {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
                }
            }
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A candidate: `handover run --mode failover --election etcd` on `cluster`, scope
/// `svc`, lease TTL `ttl`, around `service`.
pub fn candidate(cluster: &Cluster, ttl: &str, service: &[&str]) -> Run {
    let mut cmd = Command::new(handover_bin());
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args([
            "--election",
            "etcd",
            "--etcd-endpoints",
            &cluster.endpoints(),
        ])
        .args(["--scope", "svc", "--ttl", ttl, "--stop-timeout", "5s", "--"])
        .args(service);
    Run::spawn(cmd)
}
