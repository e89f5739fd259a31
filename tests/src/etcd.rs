//! Real etcd clusters for the tests: members started from the etcd binary on
//! loopback ports picked here (or on a container's address, for candidates in
//! other containers), with the fast timings etcd's own tests use, and removed
//! (processes and data directories) when the cluster is dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::process::{handover_bin, Run};
use crate::topology::Container;

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
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }
}

/// A cluster of etcd members.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    initial: String,
    /// Where the members run: a container of a test network, or this namespace.
    host: Option<Container>,
    ip: Ipv4Addr,
    /// The members, in start order.
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members on loopback and waits until each answers its health
    /// check.
    pub fn start(bin: PathBuf, n: usize) -> Self {
        Self::start_on(bin, n, None)
    }

    /// The same in container `host`, on its address: reachable from the other
    /// containers of its network.
    pub fn start_in(bin: PathBuf, n: usize, host: Container) -> Self {
        Self::start_on(bin, n, Some(host))
    }

    fn start_on(bin: PathBuf, n: usize, host: Option<Container>) -> Self {
        let ip = match &host {
            Some(c) => c.address.expect("the etcd host is plugged in"),
            None => Ipv4Addr::LOCALHOST,
        };
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
            .map(|m| format!("{}=http://{ip}:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin,
            dir,
            initial,
            host,
            ip,
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

    /// Member `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}:{}", self.ip, self.members[i].client)
    }

    /// The address every member listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    fn spawn(&mut self, i: usize) {
        let (url, peer) = (
            self.url(i),
            format!("http://{}:{}", self.ip, self.members[i].peer),
        );
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let mut cmd = match &self.host {
            Some(c) => c.ns.command(&self.bin),
            None => Command::new(&self.bin),
        };
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
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
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A connection to member `i`'s client port, from where the cluster runs.
    fn connect(&self, i: usize) -> Option<TcpStream> {
        let to = (self.ip, self.members[i].client);
        match &self.host {
            Some(c) => c.ns.enter(|| TcpStream::connect(to).ok()),
            None => TcpStream::connect(to).ok(),
        }
    }

    /// Whether member `i` says it is healthy (`GET /health` on its client port).
    pub fn healthy(&self, i: usize) -> bool {
        let Some(mut s) = self.connect(i) else {
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
        let mut s = self.connect(i)?;
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
    candidate_from(Command::new(handover_bin()), cluster, ttl, service)
}

/// The same in network namespace `ns`.
pub fn candidate_in(ns: &Netns, cluster: &Cluster, ttl: &str, service: &[&str]) -> Run {
    candidate_from(ns.command(handover_bin()), cluster, ttl, service)
}

fn candidate_from(mut cmd: Command, cluster: &Cluster, ttl: &str, service: &[&str]) -> Run {
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
