//! The run logs of the work-queue tests: each service appends a line per task it
//! starts, the task's id first; these count them.

use std::collections::BTreeMap;
use std::path::Path;

/// How often each task ran.
pub fn runs(runlog: &Path) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(runlog).unwrap_or_default().lines() {
        let id: u64 = line
            .split_whitespace()
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("run log line {line:?}"));
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// How many tasks were started, repeats included.
pub fn lines(runlog: &Path) -> usize {
    std::fs::read_to_string(runlog)
        .unwrap_or_default()
        .lines()
        .count()
}

/// What became of tasks 1 to `tasks`.
#[derive(Debug)]
pub struct Tally {
    /// Never run.
    pub lost: Vec<u64>,
    /// Runs beyond the first, over all tasks.
    pub repeated: usize,
    /// The most times one task ran.
    pub most: usize,
}

impl Tally {
    pub fn of(runlog: &Path, tasks: u64) -> Self {
        let counts = runs(runlog);
        Tally {
            lost: (1..=tasks).filter(|id| !counts.contains_key(id)).collect(),
            repeated: counts.values().map(|c| c - 1).sum(),
            most: counts.values().max().copied().unwrap_or(0),
        }
    }
}
