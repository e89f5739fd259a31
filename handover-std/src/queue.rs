//! A managed work queue across failover: mongoose-failover's "managed" mode, with a
//! bound on what it repeats.
//!
//! Every instance submits the same tasks, each with an id, in id order (a log
//! offset, a database sequence: ids may skip values but never arrive late). Only the
//! active instance runs them, lowest id first, one at a time; a handler says whether
//! a task is [`Outcome::Done`] or must be retried. After each task the active
//! instance records a checkpoint, the task's id, which goes to the standbys at once
//! and is acknowledged ([`Handover::checkpoint`]); standbys drop the tasks it
//! covers. A new active instance resumes after the highest checkpoint any survivor
//! holds.
//!
//! # What it guarantees
//!
//! * No submitted task is lost while an instance that received it survives.
//! * A task runs twice only if the active instance died after running it and before
//!   any standby acknowledged its checkpoint. The active instance starts a task only
//!   once every standby holds the checkpoint of the one before, so that is at most
//!   one task per failover, and none when it leaves cleanly
//!   ([`Handover::leave`], SIGTERM).
//! * [`WorkQueue::with_window`] lets up to `n` completions await acknowledgement:
//!   more throughput across a network round trip, up to `n` repeats per failover.
//!
//! Checkpoints are believed from whoever tells them: on a LAN others share, give the
//! group a key ([`Config::key`](crate::Config::key)), or anyone there can make the
//! queue drop tasks with a forged one.
//!
//! A network partition is not a failover: each side elects an active instance and
//! both run tasks, because on one LAN no protocol can tell a partition from a
//! death. When progress must be recorded once across the fleet, elect with etcd,
//! whose checkpoints a deposed leader cannot write.
//!
//! ```no_run
//! # async fn run() -> Result<(), handover_std::Error> {
//! use handover_std::queue::{Outcome, WorkQueue};
//! use handover_std::{Config, Handover};
//!
//! let handover = Handover::start(Config::from_env()?).await?;
//! handover.ready().await?;
//! let queue = WorkQueue::new();
//! let submit = queue.clone();
//! tokio::spawn(async move {
//!     for id in 1..=100 {
//!         submit.submit(id, format!("job {id}"));
//!     }
//! });
//! queue
//!     .run(&handover, |id, job: String| async move {
//!         println!("{id}: {job}");
//!         Outcome::Done
//!     })
//!     .await
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Error, Handover};

/// What a task handler says of a task (mongoose-failover's true / false or reject).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: record the checkpoint and go on with the next one.
    Done,
    /// Not finished: run it again, after a pause that doubles from 10 ms to 1 s.
    Retry,
}

/// What [`WorkQueue::submit`] did with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued to run.
    Queued,
    /// A task with this id is already queued; the new payload is dropped.
    AlreadyQueued,
    /// A checkpoint already covers it: it ran (here or on the active instance).
    AlreadyDone,
}

/// The queue's bookkeeping, without IO: the tasks not yet covered by a checkpoint,
/// the last completed id, and the completions not yet acknowledged. [`WorkQueue`]
/// drives it from a [`Handover`]; a simulation can drive it from protocol events.
#[derive(Debug)]
pub struct Ledger<T> {
    tasks: BTreeMap<u64, T>,
    /// Every task up to here is done (the highest checkpoint known).
    done: u64,
    /// Completions not yet acknowledged by every standby, oldest first.
    unheld: VecDeque<u64>,
    /// While active: the checkpoint every standby holds; `None` otherwise.
    held: Option<u64>,
    window: NonZeroUsize,
    /// What a task weighs (its bytes, say), and what the queued tasks weigh.
    weigh: fn(&T) -> usize,
    weight: usize,
}

impl<T> Ledger<T> {
    /// An empty ledger letting `window` completions await acknowledgement.
    pub fn new(window: NonZeroUsize) -> Self {
        Self::weighing(window, |_| 0)
    }

    /// An empty ledger that keeps the total of `weigh` over the tasks queued
    /// ([`weight`](Self::weight)), for a caller that bounds the queue in bytes.
    pub fn weighing(window: NonZeroUsize, weigh: fn(&T) -> usize) -> Self {
        Ledger {
            tasks: BTreeMap::new(),
            done: 0,
            unheld: VecDeque::new(),
            held: None,
            window,
            weigh,
            weight: 0,
        }
    }

    /// What the tasks queued weigh together (0 unless made by
    /// [`weighing`](Self::weighing)).
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// Adds a task, unless a checkpoint covers it or it is queued already.
    pub fn submit(&mut self, id: u64, payload: T) -> Submitted {
        if id <= self.done {
            return Submitted::AlreadyDone;
        }
        match self.tasks.entry(id) {
            std::collections::btree_map::Entry::Occupied(_) => Submitted::AlreadyQueued,
            std::collections::btree_map::Entry::Vacant(slot) => {
                self.weight += (self.weigh)(&payload);
                slot.insert(payload);
                Submitted::Queued
            }
        }
    }

    /// Takes in what the protocol says: the highest checkpoint known (tasks up to it
    /// are dropped) and, while active, the checkpoint every standby holds.
    pub fn sync(&mut self, checkpoint: u64, held: Option<u64>) {
        if checkpoint > self.done {
            self.forget_through(checkpoint);
        }
        if let Some(held) = held {
            self.unheld.retain(|&id| id > held);
        }
        self.held = held;
    }

    /// The next task to run, if this instance is active and the window allows one.
    pub fn next(&self) -> Option<(u64, &T)> {
        self.held?;
        if self.unheld.len() >= self.window.get() {
            return None;
        }
        self.tasks
            .range(self.done + 1..)
            .next()
            .map(|(&id, t)| (id, t))
    }

    /// The lowest task after `after` (and after every task done), if this instance
    /// is active: for a caller that hands out several tasks before the first is
    /// done, and counts them against the window itself (with
    /// [`awaiting`](Self::awaiting)).
    pub fn next_after(&self, after: u64) -> Option<(u64, &T)> {
        self.held?;
        self.tasks
            .range(self.done.max(after) + 1..)
            .next()
            .map(|(&id, t)| (id, t))
    }

    /// Task `id`'s payload, while it is queued.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.tasks.get(&id)
    }

    /// Completions not yet acknowledged by every standby.
    pub fn awaiting(&self) -> usize {
        self.unheld.len()
    }

    /// The window: how many completions may await acknowledgement.
    pub fn window(&self) -> usize {
        self.window.get()
    }

    /// Task `id` (the one [`next`](Self::next) gave) is done: the caller records
    /// its checkpoint.
    pub fn complete(&mut self, id: u64) {
        if id > self.done {
            self.forget_through(id);
            self.unheld.push_back(id);
        }
    }

    /// Every task up to `id` is done: drop them (the oldest first, which after a
    /// completion is the only one).
    fn forget_through(&mut self, id: u64) {
        self.done = id;
        while let Some(task) = self.tasks.first_entry() {
            if *task.key() > id {
                break;
            }
            self.weight -= (self.weigh)(&task.remove());
        }
    }

    /// Every task up to this id is done.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Whether task `id` is queued.
    pub fn contains(&self, id: u64) -> bool {
        self.tasks.contains_key(&id)
    }

    /// Whether every task completed here is held by the standbys (or this instance
    /// is not active, and can do no more about it).
    pub fn settled(&self) -> bool {
        self.held.is_none() || self.unheld.is_empty()
    }

    /// Tasks queued and not yet done.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// A work queue shared by the tasks that submit and the one that runs (a cheap
/// handle: clones share the queue).
#[derive(Debug)]
pub struct WorkQueue<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<T> {
    ledger: Mutex<Ledger<T>>,
    /// Asked to stop: run no more tasks.
    stopping: AtomicBool,
    /// A task was submitted, or a stop asked for.
    wake: Notify,
}

/// First pause before a retried task runs again.
const RETRY_MIN: Duration = Duration::from_millis(10);
/// Longest pause before a retried task runs again.
const RETRY_MAX: Duration = Duration::from_secs(1);

impl<T: Clone> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> WorkQueue<T> {
    /// An empty queue: each task starts once the one before is acknowledged, so at
    /// most one task runs twice per failover.
    pub fn new() -> Self {
        Self::with_window(NonZeroUsize::MIN)
    }

    /// An empty queue letting `window` completions await acknowledgement: up to
    /// `window` tasks may run twice per failover.
    pub fn with_window(window: NonZeroUsize) -> Self {
        WorkQueue {
            shared: Arc::new(Shared {
                ledger: Mutex::new(Ledger::new(window)),
                stopping: AtomicBool::new(false),
                wake: Notify::new(),
            }),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger<T>> {
        // The ledger is consistent after every call: a panic elsewhere leaves it usable.
        self.shared
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Submits a task (on every instance, in id order).
    pub fn submit(&self, id: u64, payload: T) -> Submitted {
        let submitted = self.ledger().submit(id, payload);
        if submitted == Submitted::Queued {
            self.shared.wake.notify_one();
        }
        submitted
    }

    /// Every task up to this id is done.
    pub fn done(&self) -> u64 {
        self.ledger().done()
    }

    /// Tasks queued and not yet done.
    pub fn len(&self) -> usize {
        self.ledger().len()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.ledger().is_empty()
    }

    /// Asks [`run`](Self::run) to start no more tasks and to return once the
    /// task running now is done and every standby holds its checkpoint: then
    /// [`Handover::leave`] hands over without a repeat (on SIGTERM, say).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Runs tasks with `handler` while this instance is active, and follows the
    /// active one's checkpoints while it stands by. Returns `Ok` after
    /// [`stop`](Self::stop) or when the instance has left, an error if its engine
    /// failed.
    pub async fn run<F, Fut>(&self, handover: &Handover, mut handler: F) -> Result<(), Error>
    where
        F: FnMut(u64, T) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let mut status = handover.status_receiver();
        let mut retry = RETRY_MIN;
        loop {
            let next = {
                let s = status.borrow_and_update();
                if let Some(error) = &s.failed {
                    return Err(Error::Failed(error.clone()));
                }
                if s.finished {
                    return Ok(());
                }
                let mut ledger = self.ledger();
                ledger.sync(s.checkpoint, s.checkpoint_held);
                if self.shared.stopping.load(Ordering::SeqCst) {
                    if ledger.settled() {
                        return Ok(());
                    }
                    None
                } else {
                    ledger.next().map(|(id, task)| (id, task.clone()))
                }
            };
            let Some((id, task)) = next else {
                tokio::select! {
                    changed = status.changed() => if changed.is_err() {
                        return Err(Error::Stopped);
                    },
                    () = self.shared.wake.notified() => {}
                }
                continue;
            };
            match handler(id, task).await {
                Outcome::Done => {
                    self.ledger().complete(id);
                    handover.checkpoint_now(id)?;
                    retry = RETRY_MIN;
                }
                Outcome::Retry => {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// [`run`](Self::run) for services without tokio: the handler runs on the
    /// calling thread, which this blocks until the instance has left.
    pub fn run_blocking(
        &self,
        handover: &crate::blocking::Handover,
        mut handler: impl FnMut(u64, T) -> Outcome,
    ) -> Result<(), Error> {
        handover.block_on(|inner| self.run(inner, |id, task| std::future::ready(handler(id, task))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(window: usize) -> Ledger<&'static str> {
        Ledger::new(NonZeroUsize::new(window).unwrap())
    }

    #[test]
    fn only_an_active_instance_runs_and_each_task_waits_for_the_last_to_be_held() {
        let mut l = ledger(1);
        for id in [3, 1, 2] {
            assert_eq!(l.submit(id, "t"), Submitted::Queued);
        }
        assert_eq!(l.submit(2, "again"), Submitted::AlreadyQueued);
        assert_eq!(l.next(), None, "standing by");
        l.sync(0, Some(0));
        assert_eq!(l.next().map(|(id, _)| id), Some(1));
        l.complete(1);
        assert_eq!(l.next(), None, "1 is not held yet");
        l.sync(1, Some(1));
        assert_eq!(l.next().map(|(id, _)| id), Some(2));
        assert_eq!(l.submit(1, "late"), Submitted::AlreadyDone);
        // Demoted: the new active's checkpoints drop what it did.
        l.sync(1, None);
        assert_eq!(l.next(), None);
        l.sync(2, None);
        assert_eq!((l.done(), l.len()), (2, 1));
    }

    #[test]
    fn a_weighing_ledger_counts_what_is_queued() {
        let mut l = Ledger::weighing(NonZeroUsize::MIN, |t: &&str| t.len());
        l.submit(1, "abc");
        l.submit(2, "de");
        assert_eq!(l.submit(2, "ignored"), Submitted::AlreadyQueued);
        assert_eq!(l.weight(), 5);
        l.sync(0, Some(0));
        l.complete(1);
        assert_eq!(l.weight(), 2);
        l.sync(2, None);
        assert_eq!((l.weight(), l.len()), (0, 0));
    }

    #[test]
    fn a_window_lets_completions_await_acknowledgement() {
        let mut l = ledger(3);
        for id in 1..=5 {
            l.submit(id, "t");
        }
        l.sync(0, Some(0));
        for id in 1..=3 {
            assert_eq!(l.next().map(|(id, _)| id), Some(id));
            l.complete(id);
        }
        assert_eq!(l.next(), None, "three await acknowledgement");
        l.sync(3, Some(2));
        assert_eq!(l.next().map(|(id, _)| id), Some(4));
    }
}
