//! The messages of the calls we make, field for field from etcd's definitions
//! (only the fields we read or write: protobuf decoders skip the others).

use prost::Message;

/// mvccpb.KeyValue
#[derive(Clone, PartialEq, Message)]
pub(crate) struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// mvccpb.Event
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Event {
    /// `PUT` = 0, `DELETE` = 1.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// etcdserverpb.RangeRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Keys in `[key, range_end)`; empty: `key` alone.
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    /// 0: no limit.
    #[prost(int64, tag = "3")]
    pub limit: i64,
    /// `NONE` = 0, `ASCEND` = 1, `DESCEND` = 2.
    #[prost(int32, tag = "5")]
    pub sort_order: i32,
    /// `KEY` = 0, `VERSION` = 1, `CREATE` = 2, `MOD` = 3, `VALUE` = 4.
    #[prost(int32, tag = "6")]
    pub sort_target: i32,
}

pub(crate) const SORT_ASCEND: i32 = 1;
pub(crate) const SORT_BY_CREATE: i32 = 2;

/// etcdserverpb.RangeResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// etcdserverpb.PutRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// etcdserverpb.Compare, for the one comparison we make: a key's create revision.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Compare {
    /// `EQUAL` = 0.
    #[prost(int32, tag = "1")]
    pub result: i32,
    /// `CREATE` = 1.
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    /// One case of the `target_union` oneof: present, even when zero.
    #[prost(int64, optional, tag = "5")]
    pub create_revision: Option<i64>,
}

impl Compare {
    /// True while `key` exists with create revision `revision`.
    pub(crate) fn created_at(key: &[u8], revision: i64) -> Self {
        Compare {
            result: 0,
            target: 1,
            key: key.to_vec(),
            create_revision: Some(revision),
        }
    }
}

/// etcdserverpb.RequestOp, for the one operation we make: a put.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RequestOp {
    #[prost(message, optional, tag = "2")]
    pub request_put: Option<PutRequest>,
}

impl RequestOp {
    pub(crate) fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        RequestOp {
            request_put: Some(PutRequest {
                key: key.into(),
                value: value.into(),
            }),
        }
    }
}

/// etcdserverpb.TxnRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
}

/// etcdserverpb.TxnResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TxnResponse {
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

/// etcdserverpb.WatchRequest, for the one request we make: create.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    pub create_request: Option<WatchCreateRequest>,
}

/// etcdserverpb.WatchCreateRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

/// etcdserverpb.WatchResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WatchResponse {
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// etcdserverpb.LeaseGrantRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    pub ttl: i64,
}

/// etcdserverpb.LeaseGrantResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseGrantResponse {
    #[prost(int64, tag = "2")]
    pub id: i64,
    #[prost(string, tag = "4")]
    pub error: String,
}

/// etcdserverpb.LeaseRevokeRequest; etcdserverpb.LeaseKeepAliveRequest has the
/// same single field.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseId {
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// etcdserverpb.LeaseTimeToLiveResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseTimeToLiveResponse {
    /// Seconds left; -1 when the lease is gone.
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

/// etcdserverpb.LeaseKeepAliveResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaseKeepAliveResponse {
    #[prost(int64, tag = "3")]
    pub ttl: i64,
}

/// etcdserverpb.AuthenticateRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub password: String,
}

/// etcdserverpb.AuthenticateResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AuthenticateResponse {
    #[prost(string, tag = "2")]
    pub token: String,
}

/// v3electionpb.CampaignRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct CampaignRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub lease: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub value: Vec<u8>,
}

/// v3electionpb.CampaignResponse
#[derive(Clone, PartialEq, Message)]
pub(crate) struct CampaignResponse {
    #[prost(message, optional, tag = "2")]
    pub leader: Option<LeaderKey>,
}

/// v3electionpb.LeaderKey: the campaign's key, its create revision (the fencing
/// token) and its lease.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct LeaderKey {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub rev: i64,
    #[prost(int64, tag = "4")]
    pub lease: i64,
}

/// v3electionpb.ResignRequest
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ResignRequest {
    #[prost(message, optional, tag = "1")]
    pub leader: Option<LeaderKey>,
}

/// Any response whose fields we do not read (the header only).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Empty {}

/// The first key after every key that starts with `prefix`: the end of a prefix
/// range.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the keyspace.
    vec![0]
}
