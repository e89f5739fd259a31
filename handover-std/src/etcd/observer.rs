//! Who leads an etcd election, as anyone can see it: the candidates in order,
//! and a watch that wakes when they or the checkpoint change.

use std::time::Duration;

use super::rpc::{self, Client, RangeRequest};
use super::{failed, within, EtcdConfig};
use crate::link::Error;

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
pub(super) async fn candidates(
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

/// A watch of the election's prefix and its checkpoint key: it wakes the engine
/// when candidates come or go or the checkpoint moves, and remembers the leader
/// last reported (`None` until the first read).
pub(super) struct LeaderView {
    /// `None` after the watch broke, until it is reopened.
    pub(super) stream: Option<rpc::Watch>,
    pub(super) leader: Option<Option<u64>>,
    /// The key of the last leader other than this instance: the predecessor
    /// whose lease must be gone before this one acts as leader.
    pub(super) predecessor: Option<String>,
}

impl LeaderView {
    /// Watches the candidates of election `name` (`<name>/`), and with
    /// `checkpoint` its checkpoint key `<name>.checkpoint` too: two ranges, so
    /// that a user granted exactly those two can watch.
    pub(super) async fn open(
        long: &Client,
        name: &str,
        checkpoint: bool,
    ) -> Result<Self, rpc::Error> {
        let prefix = format!("{name}/");
        let end = rpc::prefix_end(prefix.as_bytes());
        let key = format!("{name}.checkpoint");
        let mut ranges: Vec<(&[u8], &[u8])> = vec![(prefix.as_bytes(), &end)];
        if checkpoint {
            ranges.push((key.as_bytes(), &[]));
        }
        let stream = long.watch(&ranges).await?;
        Ok(LeaderView {
            stream: Some(stream),
            leader: None,
            predecessor: None,
        })
    }

    /// Tries to watch again, for at most `limit` (the engine must not wait longer).
    pub(super) async fn reopen(&mut self, long: &Client, name: &str, limit: Duration) {
        if let Ok(view) = within(limit, "watch", Self::open(long, name, true)).await {
            self.stream = view.stream;
        }
    }

    /// Waits until a candidate's key was put or deleted (forever while broken).
    pub(super) async fn changed(&mut self) -> Result<(), rpc::Error> {
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
