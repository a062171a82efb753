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
