//! The work queue `handover run --queue` keeps for its service: the Rust queue's
//! [`Ledger`] (what is queued, what is done, what the standbys hold), with the
//! one task handed to the service and its retries, and no IO.
//!
//! The service of every instance submits the same tasks; only the active one's
//! service is handed them, one at a time, as `run` lines, and answers `done` or
//! `retry`. Each `done` is a checkpoint the standbys acknowledge, and the next
//! task is handed out once no more than the window's worth await acknowledgement.

use std::num::NonZeroUsize;
use std::time::Duration;

use handover_std::queue::{Ledger, Submitted};
use serde_json::Value;

/// First pause before a retried task runs again (as the Rust queue's).
const RETRY_MIN: Duration = Duration::from_millis(10);
/// Longest pause before a retried task runs again.
const RETRY_MAX: Duration = Duration::from_secs(1);

pub struct Desk {
    ledger: Ledger<Value>,
    capacity: usize,
    /// The task handed to the service, not answered yet.
    running: Option<u64>,
    /// A retried task runs again from then.
    retry_at: Option<Duration>,
    retry: Duration,
    /// Stopping: no more tasks are handed out.
    stopping: bool,
}

impl Desk {
    /// An empty queue holding at most `capacity` tasks, letting `window`
    /// completions await acknowledgement.
    pub fn new(window: NonZeroUsize, capacity: usize) -> Self {
        Desk {
            ledger: Ledger::new(window),
            capacity,
            running: None,
            retry_at: None,
            retry: RETRY_MIN,
            stopping: false,
        }
    }

    /// Queues a task; a full queue refuses it (the service is told, and may
    /// submit it again).
    pub fn submit(&mut self, id: u64, payload: Value) -> Result<Submitted, String> {
        if self.ledger.len() >= self.capacity
            && id > self.ledger.done()
            && !self.ledger.contains(id)
        {
            return Err(format!(
                "submit: the queue is full ({} tasks, --queue-capacity)",
                self.capacity
            ));
        }
        Ok(self.ledger.submit(id, payload))
    }

    /// What the protocol says: the highest checkpoint known and, while active,
    /// the one every standby holds.
    pub fn sync(&mut self, checkpoint: u64, held: Option<u64>) {
        self.ledger.sync(checkpoint, held);
    }

    /// The service's answer for task `id` at `now`: the checkpoint to record if
    /// it is done.
    pub fn answer(&mut self, id: u64, done: bool, now: Duration) -> Result<Option<u64>, String> {
        let verb = if done { "done" } else { "retry" };
        if self.running != Some(id) {
            return Err(format!("{verb}: task {id} is not the one running"));
        }
        self.running = None;
        if done {
            self.ledger.complete(id);
            self.retry = RETRY_MIN;
            Ok(Some(id))
        } else {
            self.retry_at = Some(now + self.retry);
            self.retry = (self.retry * 2).min(RETRY_MAX);
            Ok(None)
        }
    }

    /// The task to hand to the service now, if any: none while one runs, while a
    /// retry waits, after a stop, or while this instance stands by.
    pub fn next(&mut self, now: Duration) -> Option<(u64, Value)> {
        if self.stopping || self.running.is_some() || self.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        self.retry_at = None;
        let (id, payload) = self.ledger.next()?;
        let task = (id, payload.clone());
        self.running = Some(id);
        Some(task)
    }

    /// When a retried task is due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.retry_at
    }

    /// Hand out no more tasks.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Whether every completion is held by the standbys (or this instance is not
    /// active, and can do no more about it).
    pub fn settled(&self) -> bool {
        self.ledger.settled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::ZERO;

    fn desk() -> Desk {
        Desk::new(NonZeroUsize::MIN, 3)
    }

    #[test]
    fn one_task_at_a_time_and_only_once_the_last_is_held() {
        let mut d = desk();
        for id in 1..=3 {
            assert_eq!(d.submit(id, Value::from(id)), Ok(Submitted::Queued));
        }
        assert_eq!(d.next(T), None, "standing by");
        d.sync(0, Some(0));
        assert_eq!(d.next(T), Some((1, Value::from(1))));
        assert_eq!(d.next(T), None, "1 runs");
        assert_eq!(d.answer(1, true, T), Ok(Some(1)));
        assert_eq!(d.next(T), None, "1 is not held");
        assert!(!d.settled());
        d.sync(1, Some(1));
        assert!(d.settled());
        assert_eq!(d.next(T).map(|t| t.0), Some(2));
    }

    #[test]
    fn a_retry_waits_and_answers_must_name_the_running_task() {
        let mut d = desk();
        d.submit(5, Value::Null).unwrap();
        d.sync(0, Some(0));
        assert_eq!(d.next(T).map(|t| t.0), Some(5));
        assert!(d.answer(4, true, T).unwrap_err().contains("task 4 is not"));
        assert_eq!(d.answer(5, false, T), Ok(None));
        assert_eq!(d.poll_timeout(), Some(RETRY_MIN));
        assert_eq!(d.next(T), None);
        assert_eq!(d.next(RETRY_MIN).map(|t| t.0), Some(5));
        assert!(d.answer(5, false, T).is_ok());
        assert_eq!(d.poll_timeout(), Some(RETRY_MIN * 2), "the pause doubles");
    }

    #[test]
    fn a_full_queue_refuses_and_a_stop_hands_out_nothing() {
        let mut d = desk();
        for id in 1..=3 {
            d.submit(id, Value::Null).unwrap();
        }
        assert!(d.submit(4, Value::Null).unwrap_err().contains("full"));
        assert_eq!(d.submit(2, Value::Null), Ok(Submitted::AlreadyQueued));
        d.sync(0, Some(0));
        d.stop();
        assert_eq!(d.next(T), None);
    }
}
