//! The work queue `handover run --queue` keeps for its service: the Rust queue's
//! [`Ledger`] (what is queued, what is done, what the standbys hold), with the
//! tasks handed to the service and their retries, and no IO.
//!
//! The service of every instance submits the same tasks; only the active one's
//! service is handed them as `run` lines and answers `done` or `retry`. A task
//! counts as done once it and every task handed out before it are: that is the
//! checkpoint the standbys acknowledge. Tasks handed out and completions not yet
//! acknowledged together stay within the window (1 by default: one task at a
//! time, each once the last is held), so an unclean failover repeats at most a
//! window's worth.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

use handover_std::queue::{Ledger, Submitted};

use super::Payload;

/// First pause before a retried task runs again (as the Rust queue's).
const RETRY_MIN: Duration = Duration::from_millis(10);
/// Longest pause before a retried task runs again.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where a task handed to the service is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Handed {
    Running,
    /// Done, waiting for the tasks handed out before it.
    Done,
    /// To be handed out again from then.
    Retry(Duration),
}

/// How many tasks, and how many bytes of payload, the queue may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub tasks: usize,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct Desk {
    ledger: Ledger<Payload>,
    limits: Limits,
    /// Active, as the last [`sync`](Self::sync) said: only then are completions
    /// recorded.
    active: bool,
    /// The tasks handed out and not yet counted done, oldest first.
    handed: VecDeque<(u64, Handed)>,
    /// Tasks the service still runs that a checkpoint covers (another instance
    /// did them meanwhile): they count against the window until answered, so
    /// that the service never runs more at once than the window.
    covered: Vec<u64>,
    retry: Duration,
}

impl Desk {
    /// An empty queue holding at most `capacity` tasks, letting `window` tasks be
    /// handed out or await acknowledgement.
    pub fn new(window: NonZeroUsize, limits: Limits) -> Self {
        Desk {
            ledger: Ledger::weighing(window, Payload::len),
            limits,
            active: false,
            handed: VecDeque::new(),
            covered: Vec::new(),
            retry: RETRY_MIN,
        }
    }

    /// Queues a task; a full queue refuses it (the service is told, and may
    /// submit it again).
    pub fn submit(&mut self, id: u64, payload: Payload) -> Result<Submitted, String> {
        let new = id > self.ledger.done() && !self.ledger.contains(id);
        let Limits { tasks, bytes } = self.limits;
        if new && self.ledger.len() >= tasks {
            return Err(format!(
                "submit: the queue is full ({tasks} tasks, --queue-capacity)"
            ));
        }
        if new && self.ledger.weight() + payload.len() > bytes {
            return Err(format!(
                "submit: the queue is full ({bytes} bytes of payloads, --queue-bytes)"
            ));
        }
        Ok(self.ledger.submit(id, payload))
    }

    /// What the protocol says: the highest checkpoint known and, while active,
    /// the one every standby holds. Returns a checkpoint to record: on becoming
    /// active, the tasks this service finished while it was not, if no instance
    /// has recorded them.
    #[must_use = "a checkpoint to record"]
    pub fn sync(&mut self, checkpoint: u64, held: Option<u64>) -> Option<u64> {
        self.ledger.sync(checkpoint, held);
        // Another instance did these: an answer for them changes nothing.
        let done = self.ledger.done();
        let running = |&&(id, state): &&(u64, Handed)| id <= done && state == Handed::Running;
        let covered: Vec<u64> = self.handed.iter().filter(running).map(|t| t.0).collect();
        self.covered.extend(covered);
        self.handed.retain(|&(id, _)| id > done);
        let activated = held.is_some() && !self.active;
        self.active = held.is_some();
        (activated && done > checkpoint).then_some(done)
    }

    /// The service's answer for task `id` at `now`: the checkpoint to record, if
    /// the tasks done now reach further and this instance is active (otherwise it
    /// is recorded on becoming active again, by [`sync`](Self::sync)).
    ///
    /// An answer for a task a checkpoint already covers is taken and changes
    /// nothing: the service cannot know that another instance finished it.
    pub fn answer(&mut self, id: u64, done: bool, now: Duration) -> Result<Option<u64>, String> {
        if id <= self.ledger.done() {
            self.covered.retain(|&c| c != id);
            return Ok(None);
        }
        let verb = if done { "done" } else { "retry" };
        let Some(slot) = self
            .handed
            .iter_mut()
            .find(|(handed, state)| *handed == id && *state == Handed::Running)
        else {
            return Err(format!("{verb}: task {id} is not running"));
        };
        if !done {
            slot.1 = Handed::Retry(now + self.retry);
            self.retry = (self.retry * 2).min(RETRY_MAX);
            return Ok(None);
        }
        slot.1 = Handed::Done;
        self.retry = RETRY_MIN;
        let mut checkpoint = None;
        while let Some(&(id, Handed::Done)) = self.handed.front() {
            self.handed.pop_front();
            self.ledger.complete(id);
            checkpoint = Some(id);
        }
        Ok(checkpoint.filter(|_| self.active))
    }

    /// The next task to hand to the service now, if any: a retried one that is
    /// due, else the next in id order while the window allows. None while this
    /// instance stands by.
    pub fn next(&mut self, now: Duration) -> Option<(u64, Payload)> {
        if !self.active {
            // A retry that falls due after a demotion waits for the next term.
            return None;
        }
        let due = self
            .handed
            .iter_mut()
            .find(|(_, state)| matches!(state, Handed::Retry(at) if *at <= now));
        if let Some((id, state)) = due {
            *state = Handed::Running;
            let id = *id;
            return self.ledger.get(id).map(|payload| (id, payload.clone()));
        }
        let taken = self.handed.len() + self.covered.len() + self.ledger.awaiting();
        if taken >= self.ledger.window() {
            return None;
        }
        let after = self.handed.back().map_or(0, |&(id, _)| id);
        let (id, payload) = self.ledger.next_after(after)?;
        let task = (id, payload.clone());
        self.handed.push_back((id, Handed::Running));
        Some(task)
    }

    /// When a retried task is due.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.handed
            .iter()
            .filter_map(|(_, state)| match state {
                Handed::Retry(at) => Some(*at),
                _ => None,
            })
            .min()
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

    fn desk(window: usize) -> Desk {
        let limits = Limits {
            tasks: 3,
            bytes: 1 << 20,
        };
        Desk::new(NonZeroUsize::new(window).unwrap(), limits)
    }

    fn p(id: u64) -> Payload {
        Payload::from_json(id.to_string()).unwrap()
    }

    fn ids(d: &mut Desk, now: Duration) -> Vec<u64> {
        std::iter::from_fn(|| d.next(now).map(|t| t.0)).collect()
    }

    #[test]
    fn one_task_at_a_time_and_only_once_the_last_is_held() {
        let mut d = desk(1);
        for id in 1..=3 {
            assert_eq!(d.submit(id, p(id)), Ok(Submitted::Queued));
        }
        assert_eq!(d.next(T), None, "standing by");
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(d.next(T), Some((1, p(1))));
        assert_eq!(d.next(T), None, "1 runs");
        assert_eq!(d.answer(1, true, T), Ok(Some(1)));
        assert_eq!(d.next(T), None, "1 is not held");
        assert!(!d.settled());
        assert_eq!(d.sync(1, Some(1)), None);
        assert!(d.settled());
        assert_eq!(d.next(T).map(|t| t.0), Some(2));
    }

    #[test]
    fn a_window_hands_out_several_and_counts_done_in_order() {
        let mut d = Desk::new(
            NonZeroUsize::new(3).unwrap(),
            Limits {
                tasks: 10,
                bytes: 1 << 20,
            },
        );
        for id in 1..=5 {
            d.submit(id, Payload::null()).unwrap();
        }
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(ids(&mut d, T), [1, 2, 3]);
        assert_eq!(d.answer(2, true, T), Ok(None), "1 is not done yet");
        assert_eq!(d.answer(1, true, T), Ok(Some(2)), "1 and 2 are done");
        assert_eq!(ids(&mut d, T), [] as [u64; 0], "3 runs, 1 and 2 await");
        assert_eq!(d.sync(2, Some(2)), None);
        assert_eq!(ids(&mut d, T), [4, 5]);
        // A retry of 3 holds back the checkpoint of 4 until 3 is done.
        assert_eq!(d.answer(3, false, T), Ok(None));
        assert_eq!(d.answer(4, true, T), Ok(None));
        assert_eq!(d.next(T), None, "3 waits for its retry");
        assert_eq!(d.next(RETRY_MIN).map(|t| t.0), Some(3));
        assert_eq!(d.answer(3, true, T), Ok(Some(4)));
    }

    #[test]
    fn a_retry_waits_and_answers_must_name_a_running_task() {
        let mut d = desk(1);
        d.submit(5, Payload::null()).unwrap();
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(d.next(T).map(|t| t.0), Some(5));
        assert!(d.answer(4, true, T).unwrap_err().contains("task 4 is not"));
        assert_eq!(d.answer(5, false, T), Ok(None));
        assert!(d.answer(5, true, T).is_err(), "5 is not running: it waits");
        assert_eq!(d.poll_timeout(), Some(RETRY_MIN));
        assert_eq!(d.next(T), None);
        assert_eq!(d.next(RETRY_MIN).map(|t| t.0), Some(5));
        assert!(d.answer(5, false, T).is_ok());
        assert_eq!(d.poll_timeout(), Some(RETRY_MIN * 2), "the pause doubles");
    }

    #[test]
    fn a_full_queue_refuses() {
        let mut d = desk(1);
        for id in 1..=3 {
            d.submit(id, Payload::null()).unwrap();
        }
        assert!(d.submit(4, Payload::null()).unwrap_err().contains("full"));
        assert_eq!(d.submit(2, Payload::null()), Ok(Submitted::AlreadyQueued));
    }

    #[test]
    fn the_new_actives_checkpoints_cover_what_was_handed_out() {
        let mut d = desk(2);
        for id in 1..=3 {
            d.submit(id, Payload::null()).unwrap();
        }
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(ids(&mut d, T), [1, 2]);
        // Demoted; another instance did 1 and 2.
        assert_eq!(d.sync(2, None), None);
        assert_eq!(d.answer(1, true, T), Ok(None), "taken: 2 covers it");
        // Elected again while the service still runs 2: it counts against the
        // window until answered.
        assert_eq!(d.sync(2, Some(2)), None);
        assert_eq!(ids(&mut d, T), [3]);
        assert_eq!(d.answer(3, true, T), Ok(Some(3)));
        assert_eq!(d.sync(3, Some(3)), None);
        d.submit(4, Payload::null()).unwrap();
        d.submit(5, Payload::null()).unwrap();
        assert_eq!(ids(&mut d, T), [4], "2 still runs: the window is full");
        assert_eq!(d.answer(2, false, T), Ok(None), "taken: 2 is covered");
        assert_eq!(ids(&mut d, T), [5]);
    }

    #[test]
    fn an_answer_while_not_active_is_recorded_on_becoming_active_again() {
        let mut d = desk(1);
        d.submit(1, p(1)).unwrap();
        d.submit(2, p(2)).unwrap();
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(d.next(T).map(|t| t.0), Some(1));
        // The term is lost while 1 runs; its answer comes after.
        assert_eq!(d.sync(0, None), None);
        assert_eq!(d.answer(1, true, T), Ok(None), "not active: not recorded");
        // Elected again, nobody having recorded 1: it is recorded now, and the
        // queue goes on once the standbys hold it.
        assert_eq!(d.sync(0, Some(0)), Some(1));
        assert_eq!(d.next(T), None, "1 is not held yet");
        assert_eq!(d.sync(1, Some(1)), None);
        assert_eq!(d.next(T).map(|t| t.0), Some(2));
    }

    #[test]
    fn a_retry_due_after_a_demotion_waits_for_the_next_term() {
        let mut d = desk(1);
        d.submit(1, p(1)).unwrap();
        assert_eq!(d.sync(0, Some(0)), None);
        assert_eq!(d.next(T).map(|t| t.0), Some(1));
        assert_eq!(d.answer(1, false, T), Ok(None));
        assert_eq!(d.sync(0, None), None, "demoted");
        let later = Duration::from_secs(60);
        assert_eq!(d.next(later), None, "not active: nothing handed out");
        assert_eq!(d.sync(0, Some(0)), None, "elected again");
        assert_eq!(d.next(later).map(|t| t.0), Some(1));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let limits = Limits {
            tasks: 100,
            bytes: 10,
        };
        let mut d = Desk::new(NonZeroUsize::MIN, limits);
        let text = |n: usize| Payload::from_json(format!("\"{}\"", "x".repeat(n))).unwrap();
        assert_eq!(d.submit(1, text(4)), Ok(Submitted::Queued), "6 bytes");
        let refused = d.submit(2, text(3)).unwrap_err();
        assert!(refused.contains("--queue-bytes"), "{refused}");
        assert_eq!(d.submit(2, text(2)), Ok(Submitted::Queued), "10 bytes");
        assert_eq!(d.submit(1, text(4)), Ok(Submitted::AlreadyQueued));
        // Done and checkpointed: its bytes are free again.
        assert_eq!(d.sync(1, None), None);
        assert_eq!(d.submit(3, text(4)), Ok(Submitted::Queued));
    }
}
