//! Real etcd clusters for the tests: members started from the etcd binary on
//! loopback ports picked here (or on a container's address, for candidates in
//! other containers), with the fast timings etcd's own tests use, and removed
//! (processes and data directories) when the cluster is dropped.

use std::net::{Ipv4Addr, TcpListener};

use base64::Engine as _;
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
    /// TLS on the client port, with client certificates checked: the files.
    tls: Option<Pki>,
    /// The members, in start order.
    pub members: Vec<Member>,
}

/// A certificate authority, a server certificate for the members' address and a
/// client certificate, made with `openssl` in `dir`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Makes the files in `dir` (EC P-256, valid one day); the server certificate
    /// names `ip`.
    pub fn make(dir: &std::path::Path, ip: Ipv4Addr) -> Self {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("openssl (Debian's openssl package)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &key[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-days", "1", "-subj", "/CN=handover test CA"],
            ]
            .concat(),
        );
        let sign = |name: &str, cn: &str, ext: &str| {
            let (k, csr, pem, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(dir.join(&extfile), ext).unwrap();
            openssl(
                &[
                    &["req"],
                    &key[..],
                    &["-keyout", &k, "-out", &csr, "-subj", &format!("/CN={cn}")],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                &extfile,
            ]);
            (dir.join(pem), dir.join(k))
        };
        // etcd's JSON gateway calls its own gRPC port with the server certificate:
        // with client certificates required, it must be good for clients too.
        let server = sign(
            "server",
            "etcd",
            &format!(
                "subjectAltName=IP:{ip},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        );
        // Its name is no etcd user: with authentication on, the certificate alone
        // grants nothing, the password decides.
        let client = sign("client", "handover client", "extendedKeyUsage=clientAuth\n");
        Pki {
            ca: dir.join("ca.pem"),
            server,
            client,
        }
    }
}

impl Cluster {
    /// Starts `n` members on loopback and waits until each answers its health
    /// check.
    pub fn start(bin: PathBuf, n: usize) -> Self {
        Self::start_on(bin, n, None, false)
    }

    /// The same in container `host`, on its address: reachable from the other
    /// containers of its network.
    pub fn start_in(bin: PathBuf, n: usize, host: Container) -> Self {
        Self::start_on(bin, n, Some(host), false)
    }

    /// The same with TLS on the client port and client certificates required
    /// (`--client-cert-auth`); [`Cluster::client_options`] gives the files.
    pub fn start_secured_in(bin: PathBuf, n: usize, host: Container) -> Self {
        Self::start_on(bin, n, Some(host), true)
    }

    fn start_on(bin: PathBuf, n: usize, host: Option<Container>, secured: bool) -> Self {
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
        let tls = secured.then(|| Pki::make(&dir, ip));
        let mut cluster = Cluster {
            bin,
            dir,
            initial,
            host,
            ip,
            tls,
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.ip, self.members[i].client)
    }

    /// The address every member listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// What `handover run` needs to reach the cluster: its endpoints and, when
    /// it is secured, the CA and the client certificate.
    pub fn client_options(&self) -> Vec<String> {
        let mut options = vec!["--etcd-endpoints".to_string(), self.endpoints()];
        if let Some(pki) = &self.tls {
            for (option, file) in [
                ("--etcd-ca-file", &pki.ca),
                ("--etcd-cert-file", &pki.client.0),
                ("--etcd-key-file", &pki.client.1),
            ] {
                options.push(option.into());
                options.push(file.display().to_string());
            }
        }
        options
    }

    /// The certificates, when the cluster is secured.
    pub fn pki(&self) -> Option<&Pki> {
        self.tls.as_ref()
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
        if let Some(pki) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&pki.server.0)
                .arg("--key-file")
                .arg(&pki.server.1)
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--client-cert-auth");
        }
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

    /// The body of member `i`'s answer to an HTTP request on its client port
    /// (a GET, or a POST of `body` to etcd's JSON gateway), sent with curl from
    /// where the cluster runs; `None` if it did not answer with success.
    pub fn http(&self, i: usize, path: &str, body: Option<&str>) -> Option<String> {
        let mut cmd = match &self.host {
            Some(c) => c.ns.command("curl"),
            None => Command::new("curl"),
        };
        cmd.args(["--silent", "--fail", "--max-time", "1"]);
        if let Some(pki) = &self.tls {
            cmd.arg("--cacert")
                .arg(&pki.ca)
                .arg("--cert")
                .arg(&pki.client.0)
                .arg("--key")
                .arg(&pki.client.1);
        }
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", body]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.url(i)))
            .stderr(Stdio::null())
            .output()
            .expect("curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether member `i` says it is healthy (`GET /health` on its client port).
    pub fn healthy(&self, i: usize) -> bool {
        self.http(i, "/health", None)
            .is_some_and(|reply| reply.contains("\"health\":\"true\""))
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
        let field = |s: &str, key: &str| -> Option<String> {
            let at = s.find(&format!("\"{key}\":\""))? + key.len() + 4;
            Some(s[at..].split('"').next()?.to_owned())
        };
        (0..self.members.len()).find(|&i| {
            self.http(i, "/v3/maintenance/status", Some("{}"))
                .and_then(|s| Some(field(&s, "leader")? == field(&s, "member_id")?))
                .unwrap_or(false)
        })
    }

    /// How many keys there are under `prefix` (asked of member 0): for an
    /// election, how many candidates campaign.
    pub fn keys(&self, prefix: &str) -> usize {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let body = format!(
            r#"{{"key":"{}","range_end":"{}","count_only":true}}"#,
            b64(prefix.as_bytes()),
            b64(&prefix_end(prefix))
        );
        let reply = self
            .http(0, "/v3/kv/range", Some(&body))
            .unwrap_or_default();
        let count = reply
            .split("\"count\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        count.and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// The ids of the leases alive now (asked of member 0).
    pub fn leases(&self) -> Vec<String> {
        let reply = self
            .http(0, "/v3/lease/leases", Some("{}"))
            .unwrap_or_default();
        reply
            .split("\"ID\":\"")
            .skip(1)
            .filter_map(|s| s.split('"').next().map(str::to_owned))
            .collect()
    }

    /// Turns authentication on, with a `root` user and user `user` (password
    /// `password`) allowed to read and write keys under `prefix` only.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        self.enable_auth_for(&[(user, password, &[Grant::Prefix(prefix)])]);
    }

    /// Turns authentication on, with a `root` user and each user given (name,
    /// password) with a role of its own holding exactly its grants, as
    /// `etcdctl role grant-permission` gives them.
    pub fn enable_auth_for(&self, users: &[(&str, &str, &[Grant])]) {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let mut calls = vec![
            (
                "user/add",
                r#"{"name":"root","password":"root-password"}"#.to_string(),
            ),
            ("user/grant", r#"{"user":"root","role":"root"}"#.to_string()),
        ];
        for (user, password, grants) in users {
            let role = format!("role-{user}");
            calls.push(("role/add", format!(r#"{{"name":"{role}"}}"#)));
            for grant in grants.iter() {
                let (key, end) = match grant {
                    Grant::Prefix(p) => (p.as_bytes().to_vec(), prefix_end(p)),
                    Grant::Key(k) => (k.as_bytes().to_vec(), Vec::new()),
                };
                calls.push((
                    "role/grant",
                    format!(
                        r#"{{"name":"{role}","perm":{{"permType":"READWRITE","key":"{}","range_end":"{}"}}}}"#,
                        b64(&key),
                        b64(&end)
                    ),
                ));
            }
            calls.push((
                "user/add",
                format!(r#"{{"name":"{user}","password":"{password}"}}"#),
            ));
            calls.push((
                "user/grant",
                format!(r#"{{"user":"{user}","role":"{role}"}}"#),
            ));
        }
        calls.push(("enable", "{}".to_string()));
        for (call, body) in calls {
            let path = format!("/v3/auth/{call}");
            assert!(
                self.http(0, &path, Some(&body)).is_some(),
                "etcd {path} {body} failed"
            );
        }
    }

    /// The answer to a POST of `body` to `path` on member 0 as `user`; `None`
    /// if refused.
    pub fn http_as(&self, user: (&str, &str), path: &str, body: &str) -> Option<String> {
        let login = format!(r#"{{"name":"{}","password":"{}"}}"#, user.0, user.1);
        let reply = self.http(0, "/v3/auth/authenticate", Some(&login))?;
        let token = reply.split("\"token\":\"").nth(1)?.split('"').next()?;
        let mut cmd = match &self.host {
            Some(c) => c.ns.command("curl"),
            None => Command::new("curl"),
        };
        let out = cmd
            .args(["--silent", "--fail", "--max-time", "1"])
            .args(["-H", &format!("Authorization: {token}")])
            .args(["-H", "Content-Type: application/json", "--data", body])
            .arg(format!("{}{path}", self.url(0)))
            .stderr(Stdio::null())
            .output()
            .expect("curl");
        // The gateway answers a refusal with an error body, and a failing status.
        let reply = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !reply.contains("\"error\"")).then_some(reply)
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

/// A permission of an etcd role: every key that starts with a prefix
/// (`--prefix=true`), or one key.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    Prefix(&'a str),
    Key(&'a str),
}

/// The end of the key range of `prefix`: its last byte plus one.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("a prefix") += 1;
    end
}

/// A candidate: `handover run --mode failover --election etcd` on `cluster`, scope
/// `svc`, lease TTL `ttl`, around `service`.
pub fn candidate(cluster: &Cluster, ttl: &str, service: &[&str]) -> Run {
    candidate_from(Command::new(handover_bin()), cluster, ttl, &[], service)
}

/// The same in network namespace `ns`.
pub fn candidate_in(ns: &Netns, cluster: &Cluster, ttl: &str, service: &[&str]) -> Run {
    candidate_with(ns, cluster, ttl, &[], service)
}

/// The same with more options for `run`.
pub fn candidate_with(
    ns: &Netns,
    cluster: &Cluster,
    ttl: &str,
    options: &[&str],
    service: &[&str],
) -> Run {
    candidate_from(ns.command(handover_bin()), cluster, ttl, options, service)
}

fn candidate_from(
    mut cmd: Command,
    cluster: &Cluster,
    ttl: &str,
    options: &[&str],
    service: &[&str],
) -> Run {
    cmd.args(["--log-format", "json", "run", "--mode", "failover"])
        .args(["--election", "etcd"])
        .args(cluster.client_options())
        .args(["--scope", "svc", "--ttl", ttl, "--stop-timeout", "5s"])
        .args(options)
        .arg("--")
        .args(service);
    Run::spawn(cmd)
}
