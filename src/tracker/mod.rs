//! The tracked tasks: the registry in memory, the store trait and its SQLite store, and the
//! monthly budget ledger of metered calls (counted in the same store), and the pace learned
//! per app from finished deliveries (kept in the same store).

pub mod budget;
pub mod pace;
pub mod registry;
pub mod sqlite;
pub mod store;
pub mod task;

pub use pace::LearnedPace;
pub use registry::{NewTask, RegisterError, Tracker};
pub use store::{StoreError, TaskStore};
pub use task::{PollMemory, ResultFetch, SendStatus, Task, TaskKey, TaskSource, TaskState};
