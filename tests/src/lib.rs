//! Helpers shared by the cross-crate tests.

/// Number of random scenarios each property test runs: `HANDOVER_SEEDS`, default 1000.
pub fn seeds() -> u32 {
    match std::env::var("HANDOVER_SEEDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("HANDOVER_SEEDS: {v:?} is not a number")),
        Err(_) => 1000,
    }
}

pub mod balena;
pub mod chaos;
pub mod clients;
pub mod crowd;
pub mod embassy;
pub mod etcd;
pub mod library;
pub mod load;
pub mod measure;
pub mod netns;
pub mod process;
pub mod runlog;
pub mod skip;
pub mod topology;

/// A claim an attacker forges: the highest priority and generation, so that it
/// outranks every honest peer of `scope`.
pub fn forged_claim(scope: u32, sender: u64, counter: u64) -> handover_proto::wire::Repr<'static> {
    use handover_proto::wire::{Announce, Body, Header, Rank, Repr, Role};
    Repr {
        header: Header {
            scope,
            sender,
            counter,
        },
        body: Body::Announce(Announce {
            role: Role::Claiming,
            rank: Rank {
                priority: 255,
                generation: handover_proto::MAX_GENERATION,
                start_ms: i64::MAX,
            },
            ready_ms: 0,
            heartbeat_ms: 100,
            claim_heard: None,
            name: b"",
            addresses: &[],
            state: &[],
        }),
    }
}
