//! Registering the sends the proxy relayed, off the send's path: the relay hands a
//! registration to a bounded queue and answers the sender at once; one worker registers
//! them through the [`Tracker`] (committed to the store), in order.
//!
//! Fail-open: a full queue, `--tasks.max`, a broken store or a shutdown that runs out of
//! time loses the registration, never the send; each such loss is logged (without the
//! message) and counted in `dingtalk_proxy_track_failures_total{reason}`. At a clean
//! shutdown the worker registers what is still queued before the process exits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::telemetry::Telemetry;
use crate::tracker::{NewTask, RegisterError, Tracker};

/// Registrations waiting at most; past it a burst of sends is relayed but not tracked.
pub const QUEUE_CAPACITY: usize = 4096;

/// Why a relayed send was not registered (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackFailure {
    /// The send's answer had a task_id but its request no valid `agent_id`.
    NoAgentId,
    /// Registering would pass `--tasks.max`.
    TasksMax,
    /// The store could not commit it.
    Store,
    /// More registrations were waiting than the queue holds.
    QueueFull,
    /// The exporter stopped before it could register it.
    Shutdown,
}

impl TrackFailure {
    pub const ALL: [TrackFailure; 5] = [
        TrackFailure::NoAgentId,
        TrackFailure::TasksMax,
        TrackFailure::Store,
        TrackFailure::QueueFull,
        TrackFailure::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrackFailure::NoAgentId => "no_agent_id",
            TrackFailure::TasksMax => "tasks_max",
            TrackFailure::Store => "store",
            TrackFailure::QueueFull => "queue_full",
            TrackFailure::Shutdown => "shutdown",
        }
    }
}

/// Counts and logs a registration the proxy gave up on. The log line names the task, never
/// the message or the sender's token.
pub fn report_failure(
    telemetry: &Telemetry,
    failure: TrackFailure,
    task: Option<&NewTask>,
    detail: &str,
) {
    telemetry.record_proxy_track_failure(failure.as_str());
    match task {
        Some(task) => tracing::warn!(
            agent_id = task.key.agent_id,
            task_id = task.key.task_id,
            reason = failure.as_str(),
            detail,
            "relayed a send but could not track it"
        ),
        None => tracing::warn!(
            reason = failure.as_str(),
            detail,
            "relayed a send but could not track it"
        ),
    }
}

/// The relay's end of the queue.
#[derive(Clone)]
pub struct TrackQueue {
    sender: mpsc::Sender<NewTask>,
    telemetry: Arc<Telemetry>,
}

impl TrackQueue {
    /// Queues a registration without waiting.
    pub fn submit(&self, task: NewTask) {
        if let Err(err) = self.sender.try_send(task) {
            let (failure, task) = match err {
                mpsc::error::TrySendError::Full(task) => (TrackFailure::QueueFull, task),
                mpsc::error::TrySendError::Closed(task) => (TrackFailure::Shutdown, task),
            };
            report_failure(&self.telemetry, failure, Some(&task), "");
        }
    }
}

/// Starts the worker that registers queued sends; it ends once every [`TrackQueue`] is
/// dropped and the queue is empty.
pub fn start(tracker: Arc<Tracker>, telemetry: Arc<Telemetry>) -> (TrackQueue, JoinHandle<()>) {
    let (sender, mut receiver) = mpsc::channel::<NewTask>(QUEUE_CAPACITY);
    let queue = TrackQueue {
        sender,
        telemetry: telemetry.clone(),
    };
    let worker = tokio::spawn(async move {
        while let Some(task) = receiver.recv().await {
            register(&tracker, &telemetry, task).await;
        }
    });
    (queue, worker)
}

async fn register(tracker: &Tracker, telemetry: &Telemetry, task: NewTask) {
    match tracker.register(vec![task.clone()], now_ms()).await {
        Ok(registered) => {
            if registered.first().is_some_and(|(_, new)| *new) {
                telemetry.record_proxy_tracked();
                tracing::debug!(
                    agent_id = task.key.agent_id,
                    task_id = task.key.task_id,
                    recipients = task.recipients,
                    "tracking a send relayed by the proxy"
                );
            }
        }
        Err(RegisterError::TooManyTasks { .. }) => report_failure(
            telemetry,
            TrackFailure::TasksMax,
            Some(&task),
            "--tasks.max reached",
        ),
        Err(RegisterError::Store(err)) => report_failure(
            telemetry,
            TrackFailure::Store,
            Some(&task),
            &err.to_string(),
        ),
    }
}

/// Waits for the worker to register what is queued, for at most `grace`; what is left then
/// is counted as lost to the shutdown.
pub async fn drain(worker: JoinHandle<()>, grace: Duration) {
    let abort = worker.abort_handle();
    if tokio::time::timeout(grace, worker).await.is_err() {
        abort.abort();
        tracing::warn!(
            ?grace,
            "registrations of relayed sends still queued at shutdown were dropped"
        );
    }
}
