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

pub mod embassy;
pub mod netns;
pub mod process;
