//! The engine: term after term, a lease, a campaign, leadership until the lease
//! can no longer be proven alive.

use std::time::Duration;

use handover_proto::{Event as P, State};
use tokio::time::{sleep_until, Instant};

use super::lease::Lease;
use super::observer::{candidates, LeaderView};
use super::rpc::{self, Client, Compare, LeaderKey, RangeRequest, RequestOp, TxnRequest};
use super::{within, EtcdConfig};
use crate::config::{Config, Election};
use crate::link::{Command, Error, Event, Link, Request, Status, Term};

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

/// How often a new leader asks whether its predecessor's lease is gone.
const PREDECESSOR_POLL: Duration = Duration::from_millis(10);

/// The lease of an election key `NAME/<lease id in hex>`.
fn lease_of(key: &str) -> Option<i64> {
    let (_, hex) = key.rsplit_once('/')?;
    u64::from_str_radix(hex, 16).ok().map(|id| id as i64)
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
    /// Not standing aside ([`Command::Eligible`]): it may campaign.
    eligible: bool,
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
            eligible: true,
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
        self.link.publish([], |s| {
            s.finished = true;
            true
        });
    }

    /// Waits `time`, taking commands; `true` if told to leave meanwhile.
    async fn pause(&mut self, time: Duration) -> bool {
        let until = Instant::now() + time;
        loop {
            tokio::select! {
                () = sleep_until(until) => return false,
                cmd = self.link.command() => if self.command(cmd) { return true },
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
            // Read only while a demoted leader holds its lease for its service.
            Command::ServiceStopped => false,
            Command::Eligible(eligible) => {
                self.eligible = eligible;
                false
            }
        };
        request.answer(Ok(()));
        leave
    }

    /// The key that holds the election's checkpoint: beside the candidates' prefix,
    /// not under it (etcd's campaign waits for every older key under it to go, so
    /// a key there would block every election). A user is granted exactly these
    /// two: the prefix `NAME/` and this key, so that no neighbouring election
    /// (`NAME0`, `NAME.x`) shares a grant with this one.
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
        let checkpoint = self.checkpoint_key();
        rpc::Error::new(format!(
            "{e}: the user needs read and write access to the candidates under \
             {name:?}/ and to the checkpoint {checkpoint:?}: \
             `etcdctl role grant-permission ROLE --prefix=true readwrite {name}/` and \
             `etcdctl role grant-permission ROLE readwrite {checkpoint}`"
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
        if seq <= self.link.status().checkpoint {
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
        self.link.publish([], |s| {
            let moved = seq > s.checkpoint;
            s.checkpoint = s.checkpoint.max(seq);
            moved
        });
        self.held(seq);
        Ok(true)
    }

    /// Reports that etcd holds checkpoint `seq` for this term.
    fn held(&self, seq: u64) {
        if self.link.status().checkpoint_held >= Some(seq) {
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
        if seq > self.link.status().checkpoint {
            self.link
                .publish([Event::Protocol(P::Checkpoint { seq })], |s| {
                    s.checkpoint = seq;
                    true
                });
        }
        Ok(self.link.status().checkpoint)
    }

    fn set_state(&self, state: State, term: Option<Term>) {
        self.link.publish([], |s| {
            s.state = state;
            s.term = term;
            if state != State::Active {
                s.checkpoint_held = None;
            }
            true
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

        // Not ready yet, or standing aside: only watch who leads.
        while !(self.ready && self.eligible) {
            tokio::select! {
                cmd = self.link.command() => if self.command(cmd) { return Ok(Ended::Left) },
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
                cmd = self.link.command() => {
                    if self.command(cmd) {
                        return Ok(Ended::Left);
                    }
                    if !self.eligible {
                        // Its key is taken back with the lease: it no longer campaigns.
                        return Ok(Ended::Lost("standing aside: not eligible".into()));
                    }
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
        // A predecessor whose key an operator deleted may still run its service:
        // this term starts once its lease is given back (after its service
        // stopped) or expired.
        if let Some(ended) = self.await_predecessor(ops, view, lease).await? {
            return Ok(ended);
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
                cmd = self.link.command() => match cmd {
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
                    let read = self.observe(ops, view, &prefix, lease.time_left()).await;
                    // Read from a quorum: this key is gone (deleted), or an older
                    // one leads.
                    let lost = view.leader.filter(|l| read.is_ok() && *l != Some(self.id));
                    if let Some(leader) = lost {
                        break Ended::Lost(match leader {
                            None => "this instance's key is gone".into(),
                            Some(id) => format!("another candidate leads ({id:016x})"),
                        });
                    }
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
        match ended {
            Ended::Left => {
                if let Err(e) = within(limit, "resign", ops.resign(leader)).await {
                    tracing::warn!("resigning failed (the lease is revoked anyway): {e}");
                }
            }
            Ended::Lost(_) => {
                if self.hold_until_stopped(lease).await {
                    return Ok(Ended::Left);
                }
            }
        }
        Ok(ended)
    }

    /// After an involuntary loss, keeps the lease (while it is proven alive) until
    /// the service has stopped or the stop limit has passed: the next leader waits
    /// for this lease to go. `true` if told to leave meanwhile.
    async fn hold_until_stopped(&mut self, lease: &Lease) -> bool {
        let until = lease.deadline.min(Instant::now() + self.etcd.margin() / 2);
        loop {
            tokio::select! {
                () = sleep_until(until) => return false,
                cmd = self.link.command() => match cmd {
                    Some(request @ Request { command: Command::ServiceStopped, .. }) => {
                        request.answer(Ok(()));
                        return false;
                    }
                    cmd => if self.command(cmd) { return true },
                },
            }
        }
    }

    /// Waits, renewing `lease`, until the lease of the last leader seen before
    /// this one is gone; `Some` if the term ends first.
    async fn await_predecessor(
        &mut self,
        ops: &Client,
        view: &LeaderView,
        lease: &mut Lease,
    ) -> Result<Option<Ended>, rpc::Error> {
        let Some(before) = view.predecessor.as_deref().and_then(lease_of) else {
            return Ok(None);
        };
        if before == lease.id {
            return Ok(None);
        }
        let mut waited = false;
        loop {
            let alive = within(lease.time_left(), "lease", ops.lease_alive(before)).await?;
            if !alive {
                if waited {
                    tracing::info!("the predecessor's lease is gone: leading");
                }
                return Ok(None);
            }
            if !waited {
                tracing::info!("elected while the predecessor's lease lives: waiting for it");
                waited = true;
            }
            let poll = Instant::now() + PREDECESSOR_POLL;
            tokio::select! {
                biased;
                () = sleep_until(lease.deadline) => {
                    return Ok(Some(Ended::Lost("the lease expired while the predecessor's lived".into())));
                }
                () = sleep_until(lease.next_renewal) => lease.renew(ops).await,
                answered = lease.answer() => if let Err(e) = answered {
                    tracing::warn!("lease renewal failed: {e}");
                    lease.reopen(ops).await;
                },
                cmd = self.link.command() => if self.command(cmd) {
                    return Ok(Some(Ended::Left));
                },
                () = sleep_until(poll) => {}
            }
        }
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
            // The leader, and whether anyone stands by behind it.
            let first = candidates(ops, prefix, 2).await?;
            self.read_checkpoint(ops).await?;
            Ok(first)
        };
        let first = within(limit, "read", reads).await?;
        let leader = first.first().and_then(|c| c.id);
        let others = first
            .iter()
            .skip(1)
            .filter(|c| c.id != Some(self.id))
            .count();
        if self.link.status().standbys != others {
            self.link.publish([], |s| {
                s.standbys = others;
                true
            });
        }
        if let Some(other) = first.first().filter(|c| c.id != Some(self.id)) {
            view.predecessor = Some(other.key.clone());
        }
        // This instance's key may be the oldest before its campaign has returned
        // and been verified: it is reported as leader only once elected.
        let elected = self.link.status().state == State::Active;
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
