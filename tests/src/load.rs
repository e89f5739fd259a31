//! HTTP load for the listening-socket tests: client threads inside a namespace,
//! each requesting a URL in a loop with a real HTTP client and one new connection
//! per request (so that every request crosses the accept queue), counting what
//! went wrong by kind and which generation of the service answered.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Complete answers.
    pub ok: u64,
    /// Connections refused (nobody listening).
    pub refused: u64,
    /// Connections reset.
    pub reset: u64,
    /// Answers cut short, or not what the service sends.
    pub short: u64,
    /// Anything else (timeouts, HTTP errors).
    pub other: u64,
    /// Complete answers per generation of the service.
    pub by_generation: BTreeMap<u32, u64>,
    /// Request latencies, µs, with the time each request started.
    pub latencies: Vec<(Instant, u64)>,
    /// The first few failures, for the message.
    pub failures: Vec<String>,
}

impl Totals {
    /// Requests that did not get a complete answer.
    pub fn failed(&self) -> u64 {
        self.refused + self.reset + self.short + self.other
    }

    fn fail(&mut self, kind: Kind, why: String) {
        match kind {
            Kind::Refused => self.refused += 1,
            Kind::Reset => self.reset += 1,
            Kind::Short => self.short += 1,
            Kind::Other => self.other += 1,
        }
        if self.failures.len() < 10 {
            self.failures.push(why);
        }
    }

    fn merge(&mut self, other: Totals) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.reset += other.reset;
        self.short += other.short;
        self.other += other.other;
        for (g, n) in other.by_generation {
            *self.by_generation.entry(g).or_default() += n;
        }
        self.latencies.extend(other.latencies);
        for f in other.failures {
            if self.failures.len() < 10 {
                self.failures.push(f);
            }
        }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} answered, {} refused, {} reset, {} short, {} other; {} generations answered",
            self.ok + self.failed(),
            self.ok,
            self.refused,
            self.reset,
            self.short,
            self.other,
            self.by_generation.len()
        )
    }
}

enum Kind {
    Refused,
    Reset,
    Short,
    Other,
}

/// Clients hammering a URL until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Totals>>,
}

impl Load {
    /// `clients` threads in `ns` requesting `url`, each answer expected to be
    /// `generation N\n`.
    pub fn start(ns: &Netns, url: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.to_owned());
                let ns_name = ns.name().to_owned();
                std::thread::spawn(move || {
                    Netns::move_thread_to(&ns_name);
                    client(&url, &stop)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients and adds up what they saw.
    pub fn stop(self) -> Totals {
        self.stop.store(true, Ordering::Relaxed);
        let mut totals = Totals::default();
        for t in self.threads {
            totals.merge(t.join().expect("client thread"));
        }
        totals
    }
}

fn client(url: &str, stop: &AtomicBool) -> Totals {
    let agent = ureq::AgentBuilder::new()
        .max_idle_connections(0)
        .timeout(Duration::from_secs(10))
        .build();
    let mut totals = Totals::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match request(&agent, url) {
            Ok(generation) => {
                totals.ok += 1;
                *totals.by_generation.entry(generation).or_default() += 1;
                let took = started.elapsed().as_micros() as u64;
                totals.latencies.push((started, took));
            }
            Err((kind, why)) => {
                totals.fail(kind, why);
                // A refused connection comes back at once: do not spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    totals
}

fn request(agent: &ureq::Agent, url: &str) -> Result<u32, (Kind, String)> {
    let response = agent.get(url).call().map_err(|e| {
        let text = e.to_string();
        let kind = match &e {
            ureq::Error::Transport(t) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
                if text.contains("reset") {
                    Kind::Reset
                } else {
                    Kind::Refused
                }
            }
            _ if text.contains("reset") => Kind::Reset,
            _ if text.contains("closed") || text.contains("EOF") => Kind::Short,
            _ => Kind::Other,
        };
        (kind, text)
    })?;
    let mut body = String::new();
    response
        .into_reader()
        .read_to_string(&mut body)
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::ConnectionReset {
                Kind::Reset
            } else {
                Kind::Short
            };
            (kind, format!("reading the body: {e}"))
        })?;
    body.strip_prefix("generation ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .ok_or((Kind::Short, format!("unexpected body {body:?}")))
}

/// A test service (`tests/services/FILE`).
pub fn service(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("services")
        .join(file)
}

/// `handover run --scope SCOPE OPTIONS -- SERVICE` in `ns`, with JSON logs.
pub fn instance(
    ns: &Netns,
    scope: &str,
    options: &[&str],
    service: &[&str],
) -> crate::process::Run {
    let mut cmd = ns.command(crate::process::handover_bin());
    cmd.args(["--log-format", "json", "run", "--scope", scope])
        .args(options)
        .arg("--")
        .args(service);
    crate::process::Run::spawn(cmd)
}

/// Generation `generation` of the Python service (`generation.py`) on socket
/// `http=LISTEN`, passed on through `dir`.
pub fn python_generation(
    ns: &Netns,
    scope: &str,
    listen: &str,
    dir: &std::path::Path,
    generation: u32,
) -> crate::process::Run {
    let listen = format!("http={listen}");
    let script = service("generation.py");
    instance(
        ns,
        scope,
        &[
            "--listen",
            &listen,
            "--sockets-dir",
            dir.to_str().expect("UTF-8"),
        ],
        &[
            "python3",
            script.to_str().expect("UTF-8"),
            &generation.to_string(),
        ],
    )
}
