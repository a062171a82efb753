//! The poller: the scheduler that asks DingTalk about due tasks and records the answers in
//! the tracker, and the policy that decides when to ask next.
//!
//! It takes narrow ports, not the whole exporter: the tracker, an [`AppDirectory`] that
//! names the client serving an agent's tasks and the poll settings in force (both change on
//! reload), and the telemetry it reports its lag to. The monthly budget is not its concern:
//! every client asks the budget ledger before each metered call and answers
//! `Deferred` when it holds the call back; while calls are held back, the scheduler serves
//! the due polls worth most first.

pub mod policy;
pub mod scheduler;

use std::sync::Arc;

use crate::config::PollSettings;
use crate::dingtalk::DeliveryApi;
use crate::telemetry::Telemetry;
use crate::tracker::Tracker;

pub use policy::PollBounds;
pub use scheduler::{FinishedRun, learn_from_run, place_first_poll, record_progress_answer, run};

/// Which client polls the tasks of an agent, and with which settings.
pub trait AppDirectory: Send + Sync {
    /// The client of the app whose credentials serve tasks of `agent_id`, if an app does.
    fn client_for(&self, agent_id: i64) -> Option<Arc<dyn DeliveryApi>>;
    /// The poll settings in force now.
    fn poll_settings(&self) -> PollSettings;
    /// Whose monthly quota the calls about tasks of `agent_id` spend: tasks of one scope
    /// pause together when their budget or quota holds calls back, and only they do. The
    /// internal apps share their organisation's (the empty scope); each corp of a
    /// third-party app has its own.
    fn quota_scope(&self, _agent_id: i64) -> String {
        String::new()
    }
}

/// What the poller works with.
pub struct Ports {
    pub tracker: Arc<Tracker>,
    pub apps: Arc<dyn AppDirectory>,
    pub telemetry: Arc<Telemetry>,
}
