//! The part of etcd's v3 gRPC API the election uses, over tonic.
//!
//! The messages are written here by hand, field for field from etcd's published
//! definitions (`api/etcdserverpb/rpc.proto`, `api/mvccpb/kv.proto`,
//! `server/etcdserver/api/v3election/v3electionpb/v3election.proto`), and only
//! the fields we read or write: protobuf decoders skip the others. So building the
//! etcd backend needs no protobuf compiler, and the binary carries no client code
//! for the services it never calls (cluster, maintenance, users and roles).
//! `tests/tests/etcd_*.rs` run every call against a real server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::PathAndQuery;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status, Streaming};

use super::EtcdConfig;

mod messages;

pub(crate) use messages::*;

/// A failed call, as a line for the log: etcd's own message when it gave one.
#[derive(Debug, Clone)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Error(what.into())
    }

    /// etcd refused the user access to a key (a call's status, or a watch's
    /// cancel reason).
    pub(crate) fn is_permission_denied(&self) -> bool {
        self.0.contains("permission denied")
    }

    /// etcd no longer knows the lease: it expired, or was revoked by a request
    /// whose answer was lost.
    pub(crate) fn is_lease_gone(&self) -> bool {
        self.0.contains("requested lease not found")
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        match status.message() {
            "" => Error(format!("{:?}", status.code())),
            message => Error(format!("{message} ({:?})", status.code())),
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        Error(chain(&e))
    }
}

/// An error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}

/// A client of one etcd cluster: requests are spread over its members, and carry
/// the user's token when the cluster has authentication on.
#[derive(Clone)]
pub(crate) struct Client {
    channel: Channel,
    credentials: Option<(String, String)>,
    /// Shared by the clones: a token renewed by one serves them all.
    token: Arc<Mutex<Option<AsciiMetadataValue>>>,
}

impl Client {
    /// A client of `etcd`'s members; `timeout` bounds every request made with it.
    /// With credentials it authenticates at once, so that wrong ones fail here.
    pub(crate) async fn connect(
        etcd: &EtcdConfig,
        timeout: Option<Duration>,
    ) -> Result<Self, Error> {
        let tls = etcd.endpoints.iter().any(|e| e.starts_with("https://"));
        let tls = tls.then(|| tls_config(etcd));
        let mut endpoints = Vec::with_capacity(etcd.endpoints.len());
        for url in &etcd.endpoints {
            let url = match url.contains("://") {
                true => url.clone(),
                false => format!("http://{url}"),
            };
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| Error(format!("endpoint {url:?}: {}", chain(&e))))?
                .connect_timeout(etcd.ttl / 2);
            if let Some(timeout) = timeout {
                endpoint = endpoint.timeout(timeout);
            }
            if let Some(tls) = &tls {
                endpoint = endpoint.tls_config(tls.clone())?;
            }
            endpoints.push(endpoint);
        }
        let client = Client {
            channel: Channel::balance_list(endpoints.into_iter()),
            credentials: etcd.credentials.as_ref().map(|(user, password)| {
                let password = String::from_utf8_lossy(password.expose()).into_owned();
                (user.clone(), password)
            }),
            token: Arc::default(),
        };
        client.authenticate().await?;
        Ok(client)
    }

    /// Gets a token for the user, if there is one.
    async fn authenticate(&self) -> Result<(), Error> {
        let Some((name, password)) = &self.credentials else {
            return Ok(());
        };
        let request = AuthenticateRequest {
            name: name.clone(),
            password: password.clone(),
        };
        let path = "/etcdserverpb.Auth/Authenticate";
        let answer: AuthenticateResponse = self.unary_once(path, request).await?;
        let token = answer
            .token
            .parse()
            .map_err(|_| Error::new("etcd answered with a token that is no header value"))?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(())
    }

    /// `request` with the current token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &*self.token.lock().unwrap_or_else(|e| e.into_inner()) {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    async fn unary_once<Q, R>(&self, path: &'static str, message: Q) -> Result<R, Status>
    where
        Q: Message + Send + Sync + 'static,
        R: Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(chain(&e)))?;
        let codec = tonic_prost::ProstCodec::default();
        let path = PathAndQuery::from_static(path);
        Ok(grpc
            .unary(self.request(message), path, codec)
            .await?
            .into_inner())
    }

    /// A unary call; a token that expired (simple tokens do, after minutes unused)
    /// is renewed and the call made once more.
    async fn unary<Q, R>(&self, path: &'static str, message: Q) -> Result<R, Error>
    where
        Q: Message + Clone + Send + Sync + 'static,
        R: Message + Default + Send + Sync + 'static,
    {
        match self.unary_once(path, message.clone()).await {
            Err(status) if self.expired(&status) => {
                self.authenticate().await?;
                Ok(self.unary_once(path, message).await?)
            }
            answer => Ok(answer?),
        }
    }

    fn expired(&self, status: &Status) -> bool {
        self.credentials.is_some() && status.code() == Code::Unauthenticated
    }

    /// Opens a bidirectional stream with `first` as its first request: the
    /// server answers its headers with the first answer.
    async fn streaming<Q, R>(
        &self,
        path: &'static str,
        first: Q,
    ) -> Result<(mpsc::Sender<Q>, Streaming<R>), Error>
    where
        Q: Message + Clone + Send + Sync + 'static,
        R: Message + Default + Send + Sync + 'static,
    {
        let open = |first: Q| async move {
            let (requests, queue) = mpsc::channel(4);
            // Cannot fail: the receiver is right here.
            let _ = requests.send(first).await;
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(chain(&e)))?;
            let codec = tonic_prost::ProstCodec::default();
            let path = PathAndQuery::from_static(path);
            let request = self.request(ReceiverStream::new(queue));
            let answers = grpc.streaming(request, path, codec).await?.into_inner();
            Ok::<_, Status>((requests, answers))
        };
        match open(first.clone()).await {
            Err(status) if self.expired(&status) => {
                self.authenticate().await?;
                Ok(open(first).await?)
            }
            opened => Ok(opened?),
        }
    }

    /// A lease of `ttl` seconds; its id.
    pub(crate) async fn lease_grant(&self, ttl: i64) -> Result<i64, Error> {
        let path = "/etcdserverpb.Lease/LeaseGrant";
        let answer: LeaseGrantResponse = self.unary(path, LeaseGrantRequest { ttl }).await?;
        match answer.error.is_empty() {
            true => Ok(answer.id),
            false => Err(Error(format!("lease grant: {}", answer.error))),
        }
    }

    /// Gives lease `id` back: its keys go at once.
    pub(crate) async fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let path = "/etcdserverpb.Lease/LeaseRevoke";
        let _: Empty = self.unary(path, LeaseId { id }).await?;
        Ok(())
    }

    /// Whether lease `id` is still alive (a linearizable answer from the raft
    /// leader, which alone expires leases).
    pub(crate) async fn lease_alive(&self, id: i64) -> Result<bool, Error> {
        let path = "/etcdserverpb.Lease/LeaseTimeToLive";
        let answer: LeaseTimeToLiveResponse = self.unary(path, LeaseId { id }).await?;
        Ok(answer.ttl > 0)
    }

    /// A renewal stream for lease `id`, after one renewal answered (an error if
    /// the lease is gone).
    pub(crate) async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeeper, Error> {
        let path = "/etcdserverpb.Lease/LeaseKeepAlive";
        let (requests, mut answers) = self.streaming(path, LeaseId { id }).await?;
        match answers.message().await? {
            Some(LeaseKeepAliveResponse { ttl }) if ttl > 0 => Ok(LeaseKeeper {
                id,
                requests,
                answers,
            }),
            Some(_) => Err(Error(format!("lease {id:x} not found"))),
            None => Err(Error::new("the renewal stream ended")),
        }
    }

    pub(crate) async fn range(&self, request: RangeRequest) -> Result<RangeResponse, Error> {
        self.unary("/etcdserverpb.KV/Range", request).await
    }

    pub(crate) async fn txn(&self, request: TxnRequest) -> Result<TxnResponse, Error> {
        self.unary("/etcdserverpb.KV/Txn", request).await
    }

    /// Watches the keys of every range `[key, range_end)` from now on, on one
    /// stream (an empty `range_end` is the one key): a user need be granted only
    /// those ranges.
    pub(crate) async fn watch(&self, ranges: &[(&[u8], &[u8])]) -> Result<Watch, Error> {
        let create = |(key, range_end): &(&[u8], &[u8])| WatchRequest {
            create_request: Some(WatchCreateRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
            }),
        };
        let (first, rest) = ranges.split_first().expect("a range to watch");
        let path = "/etcdserverpb.Watch/Watch";
        let (requests, answers) = self.streaming(path, create(first)).await?;
        for range in rest {
            requests
                .send(create(range))
                .await
                .map_err(|_| Error::new("the watch ended"))?;
        }
        Ok(Watch {
            _requests: requests,
            answers,
        })
    }

    /// Waits until this lease's key under `name` is the oldest: elected (unless
    /// the lease expired meanwhile, see the engine).
    pub(crate) async fn campaign(
        &self,
        name: &str,
        value: &str,
        lease: i64,
    ) -> Result<LeaderKey, Error> {
        let request = CampaignRequest {
            name: name.as_bytes().to_vec(),
            lease,
            value: value.as_bytes().to_vec(),
        };
        let path = "/v3electionpb.Election/Campaign";
        let answer: CampaignResponse = self.unary(path, request).await?;
        answer
            .leader
            .ok_or_else(|| Error::new("the campaign returned no leader key"))
    }

    /// Deletes the leader key `leader`.
    pub(crate) async fn resign(&self, leader: LeaderKey) -> Result<(), Error> {
        let path = "/v3electionpb.Election/Resign";
        let request = ResignRequest {
            leader: Some(leader),
        };
        let _: Empty = self.unary(path, request).await?;
        Ok(())
    }
}

fn tls_config(etcd: &EtcdConfig) -> ClientTlsConfig {
    let tls = etcd.tls.clone().unwrap_or_default();
    let mut config = ClientTlsConfig::new();
    config = match tls.ca.is_empty() {
        true => config.with_native_roots(),
        false => config.ca_certificate(Certificate::from_pem(tls.ca)),
    };
    if let Some((cert, key)) = tls.identity {
        config = config.identity(Identity::from_pem(cert, key.expose()));
    }
    config
}

/// A lease's renewal stream: one request out per renewal, one answer back.
pub(crate) struct LeaseKeeper {
    id: i64,
    requests: mpsc::Sender<LeaseId>,
    answers: Streaming<LeaseKeepAliveResponse>,
}

impl LeaseKeeper {
    /// Sends one renewal.
    pub(crate) async fn keep_alive(&self) -> Result<(), Error> {
        self.requests
            .send(LeaseId { id: self.id })
            .await
            .map_err(|_| Error::new("the renewal stream is closed"))
    }

    /// The next answer: the TTL the lease has left (0: gone); `None` when the
    /// stream ended.
    pub(crate) async fn answer(&mut self) -> Result<Option<i64>, Error> {
        Ok(self.answers.message().await?.map(|a| a.ttl))
    }
}

/// A watch; it lasts as long as its request side is held.
pub(crate) struct Watch {
    _requests: mpsc::Sender<WatchRequest>,
    answers: Streaming<WatchResponse>,
}

impl Watch {
    /// The next answer; `None` when the stream ended.
    pub(crate) async fn message(&mut self) -> Result<Option<WatchResponse>, Error> {
        Ok(self.answers.message().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"handover/"), b"handover0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    /// Encodings checked against etcd's definitions: a campaign request as the Go
    /// client sends it (fields 1, 2, 3), and a comparison whose revision is 0
    /// still carries it (a oneof case is present even when zero).
    #[test]
    fn messages_encode_as_etcd_defines_them() {
        let campaign = CampaignRequest {
            name: b"e".to_vec(),
            lease: 0x1234,
            value: b"v".to_vec(),
        };
        assert_eq!(
            campaign.encode_to_vec(),
            [0x0a, 1, b'e', 0x10, 0xb4, 0x24, 0x1a, 1, b'v']
        );
        let compare = Compare::created_at(b"k", 0);
        assert_eq!(compare.encode_to_vec(), [0x10, 1, 0x1a, 1, b'k', 0x28, 0]);
        let txn = TxnRequest {
            compare: vec![],
            success: vec![RequestOp {
                request_put: Some(PutRequest {
                    key: b"k".to_vec(),
                    value: b"7".to_vec(),
                }),
            }],
        };
        assert_eq!(
            txn.encode_to_vec(),
            [0x12, 8, 0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'7']
        );
    }
}
