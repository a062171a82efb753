//! The tracked tasks in memory, kept in step with the durable store.
//!
//! Every change is written to the store first and applied in memory only once the store has
//! committed it, so what the API acknowledges and what `/metrics` shows is always what a
//! restart would load back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::store::{StoreError, TaskStore};
use super::task::{Task, TaskKey, TaskState};

/// A registration as the API, the `track` command or the config file asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub key: TaskKey,
    pub name: String,
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
}

/// The registry of tracked tasks, shared by the HTTP API, the scheduler and `/metrics`.
pub struct Tracker {
    store: Arc<dyn TaskStore>,
    inner: Mutex<Inner>,
    /// Serialises store writes, so a poll result can never resurrect a task that a DELETE
    /// removed meanwhile, and the `--tasks.max` check and the insert are one step.
    writes: tokio::sync::Mutex<()>,
    tasks_max: AtomicUsize,
    /// Wakes the scheduler when a task becomes due earlier than anything it waits for.
    pub(crate) wake: Notify,
}

impl Tracker {
    /// Loads every stored task.
    pub fn open(store: Arc<dyn TaskStore>, tasks_max: usize) -> Result<Tracker, StoreError> {
        let stored = store.load_all()?;
        let mut inner = Inner {
            tasks: HashMap::with_capacity(stored.len()),
            due: BinaryHeap::with_capacity(stored.len()),
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
            wake: Notify::new(),
        })
    }

    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// Changes `--tasks.max` (on reload); tasks already tracked stay.
    pub fn set_tasks_max(&self, tasks_max: usize) {
        self.tasks_max.store(tasks_max, Ordering::Relaxed);
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
            .map(|item| Task::registered(item.key, item.name.clone(), now_ms))
            .collect();
        let store = self.store.clone();
        let to_insert = fresh.clone();
        let created = tokio::task::spawn_blocking(move || store.insert_new(&to_insert))
            .await
            .map_err(|err| RegisterError::Store(StoreError(format!("store task failed: {err}"))))?
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

    /// Calls `visit` with every tracked task under one short lock, without copying them:
    /// what `/metrics` renders from.
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
        let store = self.store.clone();
        let removed = tokio::task::spawn_blocking(move || store.remove(key))
            .await
            .map_err(|err| StoreError(format!("store task failed: {err}")))??;
        let was_tracked = self.lock().tasks.remove(&key).is_some();
        Ok(removed || was_tracked)
    }

    /// Saves tasks the scheduler changed, store first. Tasks removed meanwhile stay removed.
    pub async fn update(&self, changed: Vec<Task>) -> Result<(), StoreError> {
        let _writing = self.writes.lock().await;
        let still_tracked: Vec<Task> = {
            let inner = self.lock();
            changed
                .into_iter()
                .filter(|task| inner.tasks.contains_key(&task.key))
                .collect()
        };
        if still_tracked.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let to_save = still_tracked.clone();
        tokio::task::spawn_blocking(move || store.save(&to_save))
            .await
            .map_err(|err| StoreError(format!("store task failed: {err}")))??;
        let mut inner = self.lock();
        for task in still_tracked {
            if let Some(due) = task.next_poll_at_ms {
                let rescheduled = inner
                    .tasks
                    .get(&task.key)
                    .is_none_or(|old| old.next_poll_at_ms != Some(due));
                if rescheduled {
                    inner.due.push(Reverse((due, task.key)));
                }
            }
            inner.tasks.insert(task.key, task);
        }
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Takes up to `limit` tasks due at or before `now_ms`, earliest first.
    pub fn take_due(&self, now_ms: i64, limit: usize) -> Vec<Task> {
        let mut inner = self.lock();
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(Reverse((when, key))) = inner.due.peek().copied() else {
                break;
            };
            let current = inner.tasks.get(&key).and_then(|task| task.next_poll_at_ms);
            if current != Some(when) {
                inner.due.pop(); // stale entry
                continue;
            }
            if when > now_ms {
                break;
            }
            inner.due.pop();
            if let Some(task) = inner.tasks.get(&key) {
                due.push(task.clone());
            }
        }
        due
    }

    /// The earliest due time of any task, if any task is still to be polled.
    pub fn next_due_ms(&self) -> Option<i64> {
        let mut inner = self.lock();
        loop {
            let Reverse((when, key)) = *inner.due.peek()?;
            let current = inner.tasks.get(&key).and_then(|task| task.next_poll_at_ms);
            if current == Some(when) {
                return Some(when);
            }
            inner.due.pop();
        }
    }

    /// Counts of tracked tasks by state.
    pub fn count_by_state(&self) -> [(TaskState, usize); 4] {
        let inner = self.lock();
        TaskState::ALL.map(|state| {
            let count = inner
                .tasks
                .values()
                .filter(|task| task.state == state)
                .count();
            (state, count)
        })
    }
}
