//! The durable store of tracked tasks and call counters, behind a narrow trait.
//!
//! The trait speaks of tasks and counters, not of SQLite: SQLite is the embedded default, and
//! a shared store for a high-availability pair can implement the same trait.

use std::fmt;

use super::pace::LearnedPace;
use super::task::{Task, TaskKey};

/// A store failure. The text names what failed and never contains secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// What counting calls against a ceiling did: the month's new total, and how many of the
/// calls asked for fit under the ceiling (and were counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MonthGrant {
    pub total: u64,
    pub granted: u64,
}

/// Durable storage for tasks and the monthly call counter. Every method commits before it
/// returns: a task the store accepted survives a crash (`kill -9`) of the process.
pub trait TaskStore: Send + Sync {
    /// Inserts the tasks that are not stored yet, all in one transaction, and reports for each
    /// input whether it was new (`true`) or already stored (`false`, left unchanged).
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError>;

    /// Saves the current state of tasks (insert or replace), all in one transaction.
    fn save(&self, tasks: &[Task]) -> Result<(), StoreError>;

    /// Removes a task; `false` when it was not stored.
    fn remove(&self, key: TaskKey) -> Result<bool, StoreError>;

    /// Every stored task, in no particular order.
    fn load_all(&self) -> Result<Vec<Task>, StoreError>;

    /// Metered calls counted for a quota month (`YYYY-MM`) of a quota scope (`""` for the
    /// internal apps' organisation, `app/corp_id` for a third-party corp); 0 for a month
    /// never seen.
    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError>;

    /// Adds `calls` to a scope's quota month counter and returns the new total.
    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError>;

    /// Adds as many of `calls` as fit under `ceiling` (0: no ceiling) to a scope's quota
    /// month counter, checking and adding in one step. A store shared by several exporters
    /// must override this: each exporter's own view of the count is stale by the others'
    /// calls. A store of one exporter can rely on that exporter's ledger, which admits no
    /// call past the ceiling, and count them all.
    fn add_month_calls_within(
        &self,
        scope: &str,
        month: &str,
        calls: u64,
        ceiling: u64,
    ) -> Result<MonthGrant, StoreError> {
        let _ = ceiling;
        self.add_month_calls(scope, month, calls)
            .map(|total| MonthGrant {
                total,
                granted: calls,
            })
    }

    /// One stored task; `None` when it is not stored (anymore).
    fn load(&self, key: TaskKey) -> Result<Option<Task>, StoreError> {
        Ok(self.load_all()?.into_iter().find(|task| task.key == key))
    }

    /// A small named fact the exporter keeps across restarts (such as the quota month in
    /// which DingTalk answered 90020); `None` when it was never written or has been cleared.
    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Writes (`Some`) or clears (`None`) a named fact, committed before it returns.
    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError>;

    /// The pace learned for each app (by `agent_id`) from its finished deliveries.
    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError>;

    /// Writes the pace learned for an app, replacing what was stored for it.
    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError>;
}
