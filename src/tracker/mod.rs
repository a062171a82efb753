//! The tracked tasks: their durable store, the registry in memory and the polling scheduler.

pub mod gate;
pub mod policy;
pub mod registry;
pub mod scheduler;
pub mod sqlite;
pub mod store;
pub mod task;

pub use registry::{NewTask, RegisterError, Tracker};
pub use store::{StoreError, TaskStore};
pub use task::{ResultFetch, SendStatus, Task, TaskKey, TaskState};
