//! The tracked tasks in memory, kept in step with the durable store.
//!
//! Every change is written to the store first and applied in memory only once the store has
//! committed it, so what the API acknowledges and what `/metrics` shows is always what a
//! restart would load back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::pace::LearnedPace;
use super::store::{StoreError, TaskStore};
use super::task::{Task, TaskKey, TaskSource};

/// A registration as the API, the `track` command or the config file asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub key: TaskKey,
    pub name: String,
    /// How many people it was sent to, when known.
    pub recipients: Option<u64>,
    pub source: TaskSource,
}

/// Why a registration was refused. Nothing of a refused batch is registered.
#[derive(Debug)]
pub enum RegisterError {
    /// The batch would take the tracked tasks past `--tasks.max`.
    TooManyTasks {
        limit: usize,
        tracked: usize,
        new: usize,
    },
    /// The store could not commit the batch.
    Store(StoreError),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::TooManyTasks {
                limit,
                tracked,
                new,
            } => write!(
                f,
                "tracking {new} more task(s) would exceed --tasks.max={limit} ({tracked} tracked); delete finished tasks or raise the limit"
            ),
            RegisterError::Store(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for RegisterError {}

struct Inner {
    tasks: HashMap<TaskKey, Task>,
    /// Due times, earliest first. Entries go stale when a task is rescheduled or removed;
    /// a popped entry counts only if it still matches the task's `next_poll_at_ms`.
    due: BinaryHeap<Reverse<(i64, TaskKey)>>,
    /// Tasks handed to the scheduler and not yet given back: never handed out twice.
    in_flight: HashSet<TaskKey>,
}

impl Inner {
    /// Whether a heap entry still stands: the task is tracked, not being polled, and due
    /// then. Entries go stale when a task is rescheduled, taken or removed.
    fn is_current(&self, when: i64, key: TaskKey) -> bool {
        !self.in_flight.contains(&key)
            && self
                .tasks
                .get(&key)
                .is_some_and(|task| task.next_poll_at_ms == Some(when))
    }
}

/// The registry of tracked tasks, shared by the HTTP API, the scheduler and `/metrics`.
pub struct Tracker {
    store: Arc<dyn TaskStore>,
    inner: Mutex<Inner>,
    /// Serialises store writes, so a poll result can never resurrect a task that a DELETE
    /// removed meanwhile, and the `--tasks.max` check and the insert are one step.
    writes: tokio::sync::Mutex<()>,
    tasks_max: AtomicUsize,
    /// The pace learned per app (`agent_id`) from finished deliveries, as stored.
    paces: Mutex<HashMap<i64, LearnedPace>>,
    /// Wakes the scheduler when a task becomes due earlier than anything it waits for.
    pub(crate) wake: Notify,
}

impl Tracker {
    /// Loads every stored task.
    pub fn open(store: Arc<dyn TaskStore>, tasks_max: usize) -> Result<Tracker, StoreError> {
        let stored = store.load_all()?;
        let paces = store.learned_paces()?.into_iter().collect();
        let mut inner = Inner {
            tasks: HashMap::with_capacity(stored.len()),
            due: BinaryHeap::with_capacity(stored.len()),
            in_flight: HashSet::new(),
        };
        for task in stored {
            if let Some(due) = task.next_poll_at_ms {
                inner.due.push(Reverse((due, task.key)));
            }
            inner.tasks.insert(task.key, task);
        }
        Ok(Tracker {
            store,
            inner: Mutex::new(inner),
            writes: tokio::sync::Mutex::new(()),
            tasks_max: AtomicUsize::new(tasks_max),
            paces: Mutex::new(paces),
            wake: Notify::new(),
        })
    }

    /// Changes `--tasks.max` (on reload); tasks already tracked stay.
    pub fn set_tasks_max(&self, tasks_max: usize) {
        self.tasks_max.store(tasks_max, Ordering::Relaxed);
    }

    /// Runs a store operation on the blocking pool: the store waits for the disk (an fsync
    /// per commit), which must not hold up the async workers that serve scrapes.
    async fn in_store<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&dyn TaskStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || operation(store.as_ref()))
            .await
            .map_err(|err| StoreError(format!("store task failed: {err}")))?
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-changed (every change is
        // a single insert or remove), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a batch, all or nothing, committed to the store before it returns. Returns
    /// each task with `true` when it was new, `false` when it was already tracked.
    pub async fn register(
        &self,
        batch: Vec<NewTask>,
        now_ms: i64,
    ) -> Result<Vec<(Task, bool)>, RegisterError> {
        let _writing = self.writes.lock().await;
        let (tracked, new_keys) = {
            let inner = self.lock();
            let new = batch
                .iter()
                .filter(|item| !inner.tasks.contains_key(&item.key))
                .count();
            (inner.tasks.len(), new)
        };
        let limit = self.tasks_max.load(Ordering::Relaxed);
        if new_keys > 0 && tracked + new_keys > limit {
            return Err(RegisterError::TooManyTasks {
                limit,
                tracked,
                new: new_keys,
            });
        }
        let fresh: Vec<Task> = batch
            .iter()
            .map(|item| {
                let mut task = Task::registered(item.key, item.name.clone(), now_ms);
                task.recipients_expected = item.recipients;
                task.source = item.source;
                task
            })
            .collect();
        let to_insert = fresh.clone();
        let created = self
            .in_store(move |store| store.insert_new(&to_insert))
            .await
            .map_err(RegisterError::Store)?;

        let mut inner = self.lock();
        let mut answer = Vec::with_capacity(fresh.len());
        for (task, was_new) in fresh.into_iter().zip(created) {
            if was_new {
                inner.due.push(Reverse((now_ms, task.key)));
                inner.tasks.insert(task.key, task.clone());
                answer.push((task, true));
            } else {
                let existing = inner.tasks.get(&task.key).cloned().unwrap_or(task);
                answer.push((existing, false));
            }
        }
        drop(inner);
        self.wake.notify_one();
        Ok(answer)
    }

    /// One task, if tracked.
    pub fn get(&self, key: TaskKey) -> Option<Task> {
        self.lock().tasks.get(&key).cloned()
    }

    /// Every tracked task, ordered by agent and task id.
    pub fn list(&self) -> Vec<Task> {
        let mut tasks: Vec<Task> = self.lock().tasks.values().cloned().collect();
        tasks.sort_by_key(|task| task.key);
        tasks
    }

    /// Calls `visit` with every tracked task under one lock, without copying them. Polls and
    /// registrations wait for the lock meanwhile, so `visit` should only copy out what it
    /// needs, as `/metrics` does, and leave the slow work for after.
    pub fn for_each(&self, mut visit: impl FnMut(&Task)) {
        let inner = self.lock();
        for task in inner.tasks.values() {
            visit(task);
        }
    }

    /// How many tasks are tracked.
    pub fn len(&self) -> usize {
        self.lock().tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops tracking a task; `false` when it was not tracked.
    pub async fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        let _writing = self.writes.lock().await;
        let removed = self.in_store(move |store| store.remove(key)).await?;
        let was_tracked = {
            let mut inner = self.lock();
            inner.in_flight.remove(&key);
            inner.tasks.remove(&key).is_some()
        };
        Ok(removed || was_tracked)
    }

    /// Saves tasks the scheduler changed, store first, and gives them back to the schedule.
    /// Tasks removed meanwhile stay removed.
    pub async fn update(&self, changed: Vec<Task>) -> Result<(), StoreError> {
        let _writing = self.writes.lock().await;
        let still_tracked: Vec<Task> = {
            let mut inner = self.lock();
            for task in &changed {
                inner.in_flight.remove(&task.key);
            }
            changed
                .into_iter()
                .filter(|task| inner.tasks.contains_key(&task.key))
                .collect()
        };
        if still_tracked.is_empty() {
            return Ok(());
        }
        let to_save = still_tracked.clone();
        let saved = self.in_store(move |store| store.save(&to_save)).await;
        let mut inner = self.lock();
        for task in still_tracked {
            let Some(current) = inner.tasks.get(&task.key) else {
                continue;
            };
            // When the store refused the change, the task keeps its stored state and is
            // tried again at its old due time; memory never runs ahead of the store.
            let task = if saved.is_ok() { task } else { current.clone() };
            if let Some(due) = task.next_poll_at_ms {
                inner.due.push(Reverse((due, task.key)));
            }
            inner.tasks.insert(task.key, task);
        }
        drop(inner);
        self.wake.notify_one();
        saved
    }

    /// Gives a task back to the schedule unchanged, due at `due_ms` in memory only (after a
    /// poll that could not run, or was held back): its stored state is still right.
    pub fn requeue(&self, key: TaskKey, due_ms: i64) {
        let mut inner = self.lock();
        inner.in_flight.remove(&key);
        if let Some(task) = inner.tasks.get_mut(&key) {
            task.next_poll_at_ms = Some(due_ms);
            inner.due.push(Reverse((due_ms, key)));
        }
        drop(inner);
        self.wake.notify_one();
    }

    /// Forgets tasks whose retention after ending has passed: they have left `/metrics` and
    /// no longer count against `--tasks.max`. Returns how many were forgotten.
    pub async fn forget_ended(&self, now_ms: i64, retention_ms: i64) -> Result<usize, StoreError> {
        let expired: Vec<TaskKey> = {
            let inner = self.lock();
            inner
                .tasks
                .values()
                .filter(|task| !task.is_published(now_ms, retention_ms))
                .filter(|task| !inner.in_flight.contains(&task.key))
                .map(|task| task.key)
                .collect()
        };
        for key in &expired {
            self.remove(*key).await?;
        }
        Ok(expired.len())
    }

    /// What has been learned of the pace of `agent_id`'s deliveries, if any finished.
    pub fn learned_pace(&self, agent_id: i64) -> Option<LearnedPace> {
        self.paces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&agent_id)
            .copied()
    }

    /// Teaches `agent_id`'s pace from a finished delivery, store first.
    pub async fn learn_pace(
        &self,
        agent_id: i64,
        lesson: impl FnOnce(&mut LearnedPace),
    ) -> Result<(), StoreError> {
        let _writing = self.writes.lock().await;
        let mut pace = self.learned_pace(agent_id).unwrap_or_default();
        lesson(&mut pace);
        self.in_store(move |store| store.save_learned_pace(agent_id, &pace))
            .await?;
        self.paces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(agent_id, pace);
        Ok(())
    }

    /// Takes up to `limit` of the tasks due at or before `now_ms`, those that `rank` puts
    /// lowest first and earliest among equals, when calls are too scarce for all of them.
    /// Looks at every due task, so it is for a backlog, not for the steady state.
    pub fn take_due_ranked<K: Ord>(
        &self,
        now_ms: i64,
        limit: usize,
        rank: impl Fn(&Task) -> K,
    ) -> Vec<Task> {
        let mut inner = self.lock();
        let mut candidates = Vec::new();
        while let Some(Reverse((when, key))) = inner.due.peek().copied() {
            if !inner.is_current(when, key) {
                inner.due.pop();
                continue;
            }
            if when > now_ms {
                break;
            }
            inner.due.pop();
            if let Some(task) = inner.tasks.get(&key) {
                candidates.push((rank(task), when, key));
            }
        }
        candidates.sort();
        let mut taken = Vec::with_capacity(limit.min(candidates.len()));
        for (index, (_, when, key)) in candidates.into_iter().enumerate() {
            if index < limit {
                inner.in_flight.insert(key);
                if let Some(task) = inner.tasks.get(&key) {
                    taken.push(task.clone());
                }
            } else {
                inner.due.push(Reverse((when, key)));
            }
        }
        taken
    }

    /// Takes up to `limit` tasks due at or before `now_ms`, earliest first. They stay out of
    /// the schedule until given back by [`Tracker::update`] or [`Tracker::requeue`].
    pub fn take_due(&self, now_ms: i64, limit: usize) -> Vec<Task> {
        let mut inner = self.lock();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(Reverse((when, key))) = inner.due.peek().copied() else {
                break;
            };
            if !inner.is_current(when, key) {
                inner.due.pop();
                continue;
            }
            if when > now_ms {
                break;
            }
            inner.due.pop();
            inner.in_flight.insert(key);
            if let Some(task) = inner.tasks.get(&key) {
                due.push(task.clone());
            }
        }
        due
    }

    /// The earliest due time of any task waiting in the schedule.
    pub fn next_due_ms(&self) -> Option<i64> {
        let mut inner = self.lock();
        loop {
            let Reverse((when, key)) = *inner.due.peek()?;
            if inner.is_current(when, key) {
                return Some(when);
            }
            inner.due.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::sqlite::SqliteStore;

    fn key(task_id: i64) -> TaskKey {
        TaskKey {
            agent_id: 1,
            task_id,
        }
    }

    /// When calls are scarce, the due tasks ranked lowest are handed out first whatever
    /// their due times, and the others stay due in their old order.
    #[tokio::test]
    async fn ranked_take_serves_the_most_valuable_due_tasks_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("tasks.db")).unwrap());
        let tracker = Tracker::open(store, 100).unwrap();
        let batch = (1..=4)
            .map(|task_id| NewTask {
                key: key(task_id),
                name: String::new(),
                recipients: None,
                source: TaskSource::Api,
            })
            .collect();
        tracker.register(batch, 0).await.unwrap();
        // Task 3 is worth most, then 4; 1 and 2 least.
        let rank = |task: &Task| match task.key.task_id {
            3 => 0,
            4 => 1,
            _ => 2,
        };
        let first: Vec<i64> = tracker
            .take_due_ranked(10, 2, rank)
            .iter()
            .map(|task| task.key.task_id)
            .collect();
        assert_eq!(first, vec![3, 4]);
        let rest: Vec<i64> = tracker
            .take_due(10, 10)
            .iter()
            .map(|task| task.key.task_id)
            .collect();
        assert_eq!(rest, vec![1, 2]);
    }
}
