//! The etcd engine: leader election on etcd v3, for instances that share no LAN.
//!
//! Each term is a lease and a campaign under the election's name (etcd's own
//! Election service). What it adds to them, because etcd alone does not give it:
//!
//! - **Leadership ends locally, before etcd can end it.** The server never tells a
//!   holder its lease is gone. So the engine renews the lease itself, every third
//!   of the TTL, and holds leadership only until `send time of the last renewal that
//!   was answered + TTL − margin`: the old leader is `Demoted` before etcd could have
//!   expired its lease and elected another.
//! - **A campaign's success is checked.** A campaign that outlived its lease
//!   returns success for a key that no longer exists; a transaction comparing the
//!   key's create revision proves it before `Elected`.
//! - **A fencing token.** The leader key's create revision, which grows across
//!   terms: [`Event::Term`] carries it, before `Elected`.
//! - **Who leads, including nobody.** A watch of the election's prefix and a sorted
//!   read give `LeaderChanged` (etcd's Observe never reports "no leader").
//! - **Leaving is immediate.** `leave()`, or dropping every handle, resigns and
//!   revokes the lease: a standby is elected in tens of milliseconds, not a TTL.
//! - **A lost term is never resumed.** After demotion the engine starts over with a
//!   new lease and a new campaign, retrying while etcd is unreachable.
//! - **Checkpoints only the leader can record.** [`Handover::checkpoint`] writes
//!   `<name>.checkpoint` in a transaction that compares the leader key's create
//!   revision with the term's fencing token: a deposed leader's write is refused,
//!   so progress is recorded once across the fleet. Every candidate watches the key
//!   (`Status::checkpoint`); a new leader starts from it.
//!
//! [`Handover::checkpoint`]: crate::Handover::checkpoint

use std::time::Duration;

use handover_proto::{Event as P, State};
use tokio::time::{sleep_until, Instant};

use crate::config::{Config, ConfigError, Election};
use crate::link::{Command, Error, Event, Link, Request, Status, Term};

mod rpc;

use rpc::{Client, Compare, LeaderKey, RangeRequest, RequestOp, TxnRequest};

/// Where and how to campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// The election's name: a key prefix shared by every candidate.
    pub name: String,
    /// Lease TTL: how long a leader that vanished keeps the election.
    pub ttl: Duration,
    /// User name and password, for clusters with authentication on.
    pub credentials: Option<(String, Secret)>,
    /// TLS settings for `https://` endpoints (the system's roots when `None`).
    pub tls: Option<EtcdTls>,
}

/// TLS towards etcd: whom to trust, and who we are when the cluster checks
/// client certificates (`--client-cert-auth`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EtcdTls {
    /// PEM certificates of the authorities that sign the members' certificates;
    /// empty: the system's roots.
    pub ca: Vec<u8>,
    /// PEM client certificate and its private key.
    pub identity: Option<(Vec<u8>, Secret)>,
}

/// A password or private key: compared and cloned, never shown (`Debug` prints
/// a placeholder), so no log line or error can echo it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl EtcdConfig {
    /// The smallest TTL etcd grants with its default timings.
    pub const MIN_TTL: Duration = Duration::from_secs(2);
    /// The default TTL.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

    /// An election named `name` on `endpoints`, with the default TTL.
    pub fn new(endpoints: Vec<String>, name: impl Into<String>) -> Self {
        EtcdConfig {
            endpoints,
            name: name.into(),
            ttl: Self::DEFAULT_TTL,
            credentials: None,
            tls: None,
        }
    }

    /// How long before the lease's earliest possible expiry the leader demotes
    /// itself: time for its service to stop, and for clock-rate differences.
    pub fn margin(&self) -> Duration {
        self.ttl / 4
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: String::new(),
                expected: "a list of at least one client URL",
            });
        }
        let https = self.endpoints.iter().filter(|e| e.starts_with("https://"));
        let https = https.count();
        if https != 0 && https != self.endpoints.len() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: self.endpoints.join(","),
                expected: "all https:// or none: one connection carries one TLS setting",
            });
        }
        if https == 0 && self.tls.is_some() {
            return Err(ConfigError::Invalid {
                setting: "etcd endpoints",
                value: self.endpoints.join(","),
                expected: "https:// URLs, since TLS certificates are given",
            });
        }
        if self.ttl < EtcdConfig::MIN_TTL {
            return Err(ConfigError::Invalid {
                setting: "ttl",
                value: format!("{:?}", self.ttl),
                expected: "at least 2s, the shortest lease etcd grants",
            });
        }
        Ok(())
    }
}

/// Starts the etcd election `config` names (what [`Handover::start`] does for
/// it).
///
/// [`Handover::start`]: crate::Handover::start
pub async fn start(config: Config) -> Result<crate::Handover, Error> {
    // Detached: when every handle is gone the engine resigns and ends.
    let (engine, handover) = Engine::new(config)?;
    tokio::spawn(engine.run());
    Ok(handover)
}

/// What ended a term (or the attempt at one).
enum Ended {
    /// The handle asked to leave, or every handle is gone.
    Left,
    /// The lease could no longer be proven alive, or the campaign did not lead.
    Lost(String),
}

pub(crate) struct Engine {
    etcd: EtcdConfig,
    /// This instance's id, and the campaign value peers see (`<id hex> <name>`).
    id: u64,
    value: String,
    ready: bool,
    link: Link,
}

impl Engine {
    pub(crate) fn new(config: Config) -> Result<(Self, crate::Handover), Error> {
        let Election::Etcd(etcd) = config.election else {
            unreachable!("the etcd engine is started for an etcd election");
        };
        etcd.validate()?;
        let id = crate::link::random_u64().max(1);
        // A demoted leader's service must be gone before its lease could expire:
        // half the margin the engine keeps.
        let stop_limit = etcd.margin() / 2;
        let (link, handover) = Link::new(Status::new(id, State::Listening), Some(stop_limit));
        let value = format!("{id:016x} {}", config.name);
        let engine = Engine {
            etcd,
            id,
            value,
            ready: false,
            link,
        };
        Ok((engine, handover))
    }

    /// Campaigns, term after term, until told to leave.
    pub(crate) async fn run(mut self) {
        let mut retry = Duration::from_millis(100);
        loop {
            match self.term().await {
                Ok(Ended::Left) => break,
                Ok(Ended::Lost(why)) => {
                    tracing::warn!("election term ended: {why}");
                    retry = Duration::from_millis(100);
                }
                Err(e) => {
                    let e = self.denied(e);
                    tracing::warn!("etcd: {e}; retrying in {retry:?}");
                    self.link.emit(Event::ElectionError(e.to_string()));
                    if self.pause(retry).await {
                        break;
                    }
                    retry = (retry * 2).min(self.etcd.ttl / 2);
                }
            }
        }
        self.set_state(State::Done, None);
        self.link.status.send_modify(|s| s.finished = true);
    }

    /// Waits `time`, taking commands; `true` if told to leave meanwhile.
    async fn pause(&mut self, time: Duration) -> bool {
        let until = Instant::now() + time;
        loop {
            tokio::select! {
                () = sleep_until(until) => return false,
                cmd = self.link.commands.recv() => if self.command(cmd) { return true },
            }
        }
    }

    /// Takes a command and answers it; `true` if it asks to leave (or every
    /// handle is gone).
    fn command(&mut self, request: Option<Request>) -> bool {
        let Some(request) = request else { return true };
        let leave = match request.command {
            Command::Leave => true,
            Command::Ready => {
                self.ready = true;
                false
            }
            // An election elects a leader: no hand-over, and no state on heartbeats.
            Command::ShutdownComplete | Command::SetState(_) => {
                request.unsupported("etcd");
                return false;
            }
            Command::Checkpoint(seq) => {
                // Progress made just before a demotion: the next leader repeats it.
                tracing::debug!("checkpoint {seq} not recorded: only the leader records");
                false
            }
        };
        request.answer(Ok(()));
        leave
    }

    /// The key that holds the election's checkpoint: beside the candidates' prefix,
    /// not under it (etcd's campaign waits for every older key under it to go, so
    /// a key there would block every election). Both lie under the election's name,
    /// the one prefix a user must be granted.
    fn checkpoint_key(&self) -> String {
        format!("{}.checkpoint", self.etcd.name)
    }

    /// Names what is missing when etcd denies a request: the grant the README asks
    /// for, on the election's name.
    fn denied(&self, e: rpc::Error) -> rpc::Error {
        if !e.is_permission_denied() {
            return e;
        }
        let name = &self.etcd.name;
        rpc::Error::new(format!(
            "{e}: the user needs read and write access to every key that starts with \
             {name:?} (the candidates under {name:?}/ and the checkpoint {:?}): \
             `etcdctl role grant-permission ROLE --prefix=true readwrite {name}`",
            self.checkpoint_key()
        ))
    }

    /// Records checkpoint `seq` for the term whose leader key is `key` with create
    /// revision `token`; `false` if etcd refused it (the key is gone: deposed).
    async fn record(
        &self,
        ops: &Client,
        key: &[u8],
        token: i64,
        seq: u64,
        limit: Duration,
    ) -> Result<bool, rpc::Error> {
        if seq <= self.link.status.borrow().checkpoint {
            // Recorded already: by this term's write whose answer was lost, or by
            // a predecessor. Either way the checkpoint holds it.
            self.held(seq);
            return Ok(true);
        }
        let fenced = TxnRequest {
            compare: vec![Compare::created_at(key, token)],
            success: vec![RequestOp::put(self.checkpoint_key(), seq.to_string())],
        };
        if !within(limit, "checkpoint", ops.txn(fenced))
            .await?
            .succeeded
        {
            let why =
                format!("checkpoint {seq} refused: this instance no longer leads (token {token})");
            tracing::warn!("{why}");
            self.link.emit(Event::ElectionError(why));
            return Ok(false);
        }
        self.link
            .status
            .send_modify(|s| s.checkpoint = s.checkpoint.max(seq));
        self.held(seq);
        Ok(true)
    }

    /// Reports that etcd holds checkpoint `seq` for this term.
    fn held(&self, seq: u64) {
        if self.link.status.borrow().checkpoint_held >= Some(seq) {
            return;
        }
        self.link
            .publish([Event::Protocol(P::CheckpointHeld { seq })], |s| {
                s.checkpoint_held = Some(seq);
                true
            });
    }

    /// Reads the recorded checkpoint and reports a later one.
    async fn read_checkpoint(&self, ops: &Client) -> Result<u64, rpc::Error> {
        let read = RangeRequest {
            key: self.checkpoint_key().into_bytes(),
            ..Default::default()
        };
        let response = ops.range(read).await?;
        let seq = response
            .kvs
            .first()
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        if seq > self.link.status.borrow().checkpoint {
            self.link
                .publish([Event::Protocol(P::Checkpoint { seq })], |s| {
                    s.checkpoint = seq;
                    true
                });
        }
        Ok(self.link.status.borrow().checkpoint)
    }

    fn set_state(&self, state: State, term: Option<Term>) {
        self.link.status.send_modify(|s| {
            s.state = state;
            s.term = term;
            if state != State::Active {
                s.checkpoint_held = None;
            }
        });
    }

    /// One term: a lease, a campaign, leadership until the lease can no longer be
    /// proven alive or the handle leaves.
    async fn term(&mut self) -> Result<Ended, rpc::Error> {
        // Requests that must answer within the lease's margin use `ops`; the
        // campaign and the watch wait as long as they must, on `long`.
        let limit = self.etcd.margin();
        let ops = within(limit, "connect", Client::connect(&self.etcd, Some(limit))).await?;
        let long = within(limit, "connect", Client::connect(&self.etcd, None)).await?;
        let prefix = format!("{}/", self.etcd.name);
        let mut view = within(
            limit,
            "watch",
            LeaderView::open(&long, &self.etcd.name, true),
        )
        .await?;
        self.observe(&ops, &mut view, &prefix, limit).await?;

        // Not ready yet: only watch who leads.
        while !self.ready {
            tokio::select! {
                cmd = self.link.commands.recv() => if self.command(cmd) { return Ok(Ended::Left) },
                changed = view.changed() => { changed?; self.observe(&ops, &mut view, &prefix, limit).await?; }
            }
        }

        let ttl_s = self.etcd.ttl.as_secs().max(1) as i64;
        let granted_at = Instant::now();
        let id = within(limit, "lease grant", ops.lease_grant(ttl_s)).await?;
        let lease = within(
            limit,
            "lease renewal",
            Lease::new(&ops, id, granted_at, &self.etcd),
        )
        .await;
        let mut lease = match lease {
            Ok(lease) => lease,
            Err(e) => {
                Lease::revoke_id(&ops, id, limit).await;
                return Err(e);
            }
        };
        // From here the lease holds a key, or soon will: every way out, an error
        // included, gives it back, so that it blocks no one for a TTL.
        let ended = self
            .campaign_and_lead(&ops, &long, &mut view, &mut lease)
            .await;
        lease.revoke(&ops).await;
        ended
    }

    /// Campaigns with `lease`, then leads until the lease can no longer be proven
    /// alive or the handle leaves. The caller revokes the lease.
    async fn campaign_and_lead(
        &mut self,
        ops: &Client,
        long: &Client,
        view: &mut LeaderView,
        lease: &mut Lease,
    ) -> Result<Ended, rpc::Error> {
        let limit = self.etcd.margin();
        let prefix = format!("{}/", self.etcd.name);
        self.set_state(State::Standby, None);

        let (name, value) = (self.etcd.name.clone(), self.value.clone());
        let campaign = long.campaign(&name, &value, lease.id);
        tokio::pin!(campaign);
        let leader: LeaderKey = loop {
            tokio::select! {
                // A campaign that returns after the deadline is given up.
                biased;
                () = sleep_until(lease.deadline) => {
                    return Ok(Ended::Lost("the lease expired while campaigning".into()));
                }
                won = &mut campaign => break won?,
                () = sleep_until(lease.next_renewal) => lease.renew(ops).await,
                answered = lease.answer() => if let Err(e) = answered {
                    tracing::warn!("lease renewal failed: {e}");
                    lease.reopen(ops).await;
                },
                cmd = self.link.commands.recv() => if self.command(cmd) {
                    return Ok(Ended::Left);
                },
                changed = view.changed() => { changed?; self.observe(ops, view, &prefix, limit).await?; }
            }
        };

        // A campaign can succeed for a key its expired lease already took away;
        // the proof must come before the deadline, as everything that follows.
        let key = leader.key.clone();
        let holds = TxnRequest {
            compare: vec![Compare::created_at(&key, leader.rev)],
            success: vec![],
        };
        if leader.lease != lease.id
            || Instant::now() >= lease.deadline
            || !within(lease.time_left(), "verify", ops.txn(holds))
                .await?
                .succeeded
        {
            return Ok(Ended::Lost("the campaign returned without leading".into()));
        }
        let term = Term {
            token: leader.rev as u64,
            key: String::from_utf8_lossy(&key).into_owned(),
        };
        // The term starts from the checkpoint its predecessors recorded.
        let recorded = within(lease.time_left(), "read", self.read_checkpoint(ops)).await?;
        // Every request above took time: leading starts only if the lease is still
        // proven alive, with nothing awaited between this check and `Active`.
        if Instant::now() >= lease.deadline {
            return Ok(Ended::Lost(
                "the lease's deadline passed while verifying".into(),
            ));
        }
        tracing::info!(token = term.token, key = %term.key, "elected");
        let events = [
            Event::Term(term.clone()),
            Event::Protocol(P::Elected),
            Event::Protocol(P::CheckpointHeld { seq: recorded }),
        ];
        // One change: a service that sees it active sees where to start.
        self.link.publish(events, |s| {
            s.state = State::Active;
            s.term = Some(term.clone());
            s.checkpoint_held = Some(recorded);
            true
        });
        let _ = self.observe(ops, view, &prefix, lease.time_left()).await;

        // While leading, nothing may wait past the deadline: it comes first, and
        // every request is bounded by the time left until it. A checkpoint whose
        // write failed (no answer, a new raft leader) is tried again at each
        // renewal: it may have been applied with its answer lost, and the queue
        // waits for it.
        let mut unrecorded: Option<u64> = None;
        let ended = loop {
            tokio::select! {
                biased;
                () = sleep_until(lease.deadline) => break Ended::Lost("the lease could not be renewed in time".into()),
                () = sleep_until(lease.next_renewal) => {
                    // Renewals go on until the deadline: another member may answer.
                    lease.renew(ops).await;
                    if view.stream.is_none() {
                        view.reopen(long, &self.etcd.name, lease.time_left()).await;
                    }
                    if let Some(seq) = unrecorded.take() {
                        match self.record(ops, &key, term.token as i64, seq, lease.time_left()).await {
                            Ok(true) => {}
                            Ok(false) => break Ended::Lost("a checkpoint was refused: deposed".into()),
                            Err(e) => {
                                tracing::warn!("recording checkpoint {seq} failed again: {e}");
                                unrecorded = Some(seq);
                            }
                        }
                    }
                }
                answered = lease.answer() => if let Err(e) = answered {
                    tracing::warn!("lease renewal failed: {e}");
                    lease.reopen(ops).await;
                },
                cmd = self.link.commands.recv() => match cmd {
                    Some(request @ Request { command: Command::Checkpoint(seq), .. }) => {
                        // Taken: recorded now, or at a renewal, or dropped by a
                        // demotion (which the status reports), never an error.
                        request.answer(Ok(()));
                        let token = term.token as i64;
                        let limit = lease.time_left();
                        match self.record(ops, &key, token, seq, limit).await {
                            Ok(true) => {}
                            Ok(false) => break Ended::Lost("a checkpoint was refused: deposed".into()),
                            Err(e) => {
                                tracing::warn!("recording checkpoint {seq} failed (tried again at the next renewal): {e}");
                                unrecorded = unrecorded.max(Some(seq));
                            }
                        }
                    }
                    cmd => if self.command(cmd) { break Ended::Left },
                },
                changed = view.changed() => {
                    if let Err(e) = changed {
                        // Reopened at the next renewal; leading goes on meanwhile.
                        tracing::warn!("watching the election failed: {e}");
                        view.stream = None;
                    }
                    let _ = self.observe(ops, view, &prefix, lease.time_left()).await;
                }
            }
        };
        // Demoted first, so that the service stops before anyone else can lead.
        self.link.publish([Event::Protocol(P::Demoted)], |s| {
            s.state = State::Standby;
            s.term = None;
            s.checkpoint_held = None;
            true
        });
        if let Ended::Left = ended {
            if let Err(e) = within(limit, "resign", ops.resign(leader)).await {
                tracing::warn!("resigning failed (the lease is revoked anyway): {e}");
            }
        }
        Ok(ended)
    }

    /// Reads who leads (the candidate with the oldest key), waiting at most `limit`,
    /// and reports a change.
    async fn observe(
        &self,
        ops: &Client,
        view: &mut LeaderView,
        prefix: &str,
        limit: Duration,
    ) -> Result<(), rpc::Error> {
        // Both reads within `limit` together, not each.
        let reads = async {
            let first = candidates(ops, prefix, 1).await?;
            self.read_checkpoint(ops).await?;
            Ok(first)
        };
        let first = within(limit, "read", reads).await?;
        let leader = first.first().and_then(|c| c.id);
        // This instance's key may be the oldest before its campaign has returned
        // and been verified: it is reported as leader only once elected.
        let elected = self.link.status.borrow().state == State::Active;
        if leader == Some(self.id) && !elected {
            return Ok(());
        }
        if view.leader != Some(leader) {
            view.leader = Some(leader);
            self.link
                .publish([Event::Protocol(P::LeaderChanged { id: leader })], |s| {
                    s.leader = leader;
                    true
                });
        }
        Ok(())
    }
}

/// A candidate of an etcd election, as anyone can see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The instance's id, as in its events (`None` for a value not written by
    /// `handover`).
    pub id: Option<u64>,
    /// The service name it announced.
    pub name: String,
    /// Its key under the election's prefix.
    pub key: String,
    /// The key's create revision: its fencing token once it leads.
    pub revision: i64,
}

/// The first `limit` candidates (0: all) under `prefix`, oldest first: the first
/// one leads, or will once its campaign has returned.
async fn candidates(
    client: &Client,
    prefix: &str,
    limit: i64,
) -> Result<Vec<Candidate>, rpc::Error> {
    let sorted = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: rpc::prefix_end(prefix.as_bytes()),
        limit,
        sort_order: rpc::SORT_ASCEND,
        sort_target: rpc::SORT_BY_CREATE,
    };
    let response = client.range(sorted).await?;
    Ok(response
        .kvs
        .iter()
        .map(|kv| {
            // The value is `<id in hex> <service name>`.
            let value = String::from_utf8_lossy(&kv.value);
            let (id, name) = value.split_once(' ').unwrap_or((&value, ""));
            Candidate {
                id: u64::from_str_radix(id, 16).ok(),
                name: name.to_owned(),
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                revision: kv.create_revision,
            }
        })
        .collect())
}

/// An etcd election seen from outside, for tools (`handover watch`): its
/// candidates now, and a wake-up when they change.
pub struct Observer {
    client: Client,
    view: LeaderView,
    prefix: String,
}

impl Observer {
    /// Connects and watches the election `etcd.name`.
    pub async fn open(etcd: &EtcdConfig) -> Result<Self, Error> {
        etcd.validate()?;
        let limit = etcd.ttl;
        let prefix = format!("{}/", etcd.name);
        let opened = async {
            let client = Client::connect(etcd, None).await?;
            let view = LeaderView::open(&client, &etcd.name, false).await?;
            Ok((client, view))
        };
        let (client, view) = within(limit, "connect", opened).await.map_err(failed)?;
        Ok(Observer {
            client,
            view,
            prefix,
        })
    }

    /// The candidates, oldest first: the first leads.
    pub async fn candidates(&mut self) -> Result<Vec<Candidate>, Error> {
        candidates(&self.client, &self.prefix, 0)
            .await
            .map_err(failed)
    }

    /// Waits until a candidate comes or goes.
    pub async fn changed(&mut self) -> Result<(), Error> {
        self.view.changed().await.map_err(failed)
    }
}

fn failed(e: rpc::Error) -> Error {
    Error::Failed(format!("etcd: {e}"))
}

/// `request`, given up after `limit`: no call but the campaign may hold the engine
/// longer (a frozen member accepts connections and never answers).
async fn within<T>(
    limit: Duration,
    what: &str,
    request: impl std::future::Future<Output = Result<T, rpc::Error>>,
) -> Result<T, rpc::Error> {
    tokio::time::timeout(limit, request)
        .await
        .unwrap_or_else(|_| Err(rpc::Error::new(format!("{what}: no answer in {limit:?}"))))
}

/// A lease kept alive by this engine, and the deadline until which it is proven.
struct Lease {
    id: i64,
    ttl: Duration,
    margin: Duration,
    /// `None` after the renewal stream failed, until it is reopened.
    keeper: Option<rpc::LeaseKeeper>,
    /// When the renewal awaiting an answer was sent.
    sent: Option<Instant>,
    next_renewal: Instant,
    /// Leadership may be held until then, no longer.
    deadline: Instant,
}

impl Lease {
    async fn new(
        ops: &Client,
        id: i64,
        granted_at: Instant,
        etcd: &EtcdConfig,
    ) -> Result<Self, rpc::Error> {
        let keeper = ops.lease_keep_alive(id).await?;
        Ok(Lease {
            id,
            ttl: etcd.ttl,
            margin: etcd.margin(),
            keeper: Some(keeper),
            sent: None,
            next_renewal: granted_at + etcd.ttl / 3,
            deadline: granted_at + etcd.ttl - etcd.margin(),
        })
    }

    /// Sends a renewal (one in flight at a time: its send time is what counts). One
    /// unanswered for a third of the TTL is given up with its stream, and the
    /// renewal goes out on a new one (to whichever member answers).
    async fn renew(&mut self, ops: &Client) {
        let now = Instant::now();
        self.next_renewal = now + self.ttl / 6;
        match self.sent {
            Some(sent) if now - sent < self.ttl / 3 => return,
            Some(_) => self.reopen(ops).await,
            None if self.keeper.is_none() => self.reopen(ops).await,
            None => {}
        }
        let limit = self.time_left();
        if let Some(keeper) = &mut self.keeper {
            match within(limit, "lease renewal", keeper.keep_alive()).await {
                Ok(()) => self.sent = Some(now),
                Err(e) => tracing::warn!("lease renewal not sent: {e}"),
            }
        }
    }

    /// The next answer to a renewal: the deadline moves to its send time + the TTL
    /// granted − the margin. A TTL of 0 means the lease is gone.
    async fn answer(&mut self) -> Result<(), rpc::Error> {
        let Some(keeper) = &mut self.keeper else {
            return std::future::pending().await;
        };
        let Some(ttl) = keeper.answer().await? else {
            self.keeper = None;
            return Err(rpc::Error::new("the renewal stream ended"));
        };
        let Some(sent) = self.sent.take() else {
            return Ok(());
        };
        if ttl <= 0 {
            self.deadline = Instant::now();
            return Ok(());
        }
        let ttl = Duration::from_secs(ttl as u64);
        self.deadline = self.deadline.max(sent + ttl - self.margin);
        self.next_renewal = sent + self.ttl / 3;
        Ok(())
    }

    /// Opens a new renewal stream after the last one failed.
    async fn reopen(&mut self, ops: &Client) {
        self.sent = None;
        match within(
            self.time_left(),
            "lease renewal",
            ops.lease_keep_alive(self.id),
        )
        .await
        {
            Ok(keeper) => self.keeper = Some(keeper),
            Err(e) => {
                tracing::warn!("lease renewal stream: {e}");
                self.keeper = None;
            }
        }
    }

    /// How long a request may take: until the deadline, and never more than the
    /// margin.
    fn time_left(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        left.clamp(Duration::from_millis(1), self.margin)
    }

    /// Gives the lease back, so that its key goes at once.
    async fn revoke(&self, ops: &Client) {
        Self::revoke_id(ops, self.id, self.margin).await;
    }

    async fn revoke_id(ops: &Client, id: i64, limit: Duration) {
        if let Err(e) = within(limit, "revoke", ops.lease_revoke(id)).await {
            tracing::warn!("revoking the lease failed (it expires by itself): {e}");
        }
    }
}

/// A watch of the election's prefix and its checkpoint key: it wakes the engine
/// when candidates come or go or the checkpoint moves, and remembers the leader
/// last reported (`None` until the first read).
struct LeaderView {
    /// `None` after the watch broke, until it is reopened.
    stream: Option<rpc::Watch>,
    leader: Option<Option<u64>>,
}

impl LeaderView {
    /// Watches the candidates of election `name` (`<name>/`), and with
    /// `checkpoint` its checkpoint key too: `<name>.checkpoint` sorts just before
    /// `<name>/`, so one range holds both.
    async fn open(long: &Client, name: &str, checkpoint: bool) -> Result<Self, rpc::Error> {
        let from = match checkpoint {
            true => format!("{name}.checkpoint"),
            false => format!("{name}/"),
        };
        let to = format!("{name}0");
        let stream = long.watch(from.as_bytes(), to.as_bytes()).await?;
        Ok(LeaderView {
            stream: Some(stream),
            leader: None,
        })
    }

    /// Tries to watch again, for at most `limit` (the engine must not wait longer).
    async fn reopen(&mut self, long: &Client, name: &str, limit: Duration) {
        if let Ok(view) = within(limit, "watch", Self::open(long, name, true)).await {
            self.stream = view.stream;
        }
    }

    /// Waits until a candidate's key was put or deleted (forever while broken).
    async fn changed(&mut self) -> Result<(), rpc::Error> {
        let Some(stream) = &mut self.stream else {
            return std::future::pending().await;
        };
        loop {
            let Some(response) = stream.message().await? else {
                return Err(rpc::Error::new("the watch ended"));
            };
            if response.canceled {
                let why = response.cancel_reason;
                return Err(rpc::Error::new(format!("the watch was canceled: {why}")));
            }
            // Puts and deletes are the only kinds of event.
            if !response.events.is_empty() {
                return Ok(());
            }
        }
    }
}
