//! A tracked delivery task and its lifecycle.

use serde::{Deserialize, Serialize};

use crate::dingtalk::RecipientCounts;

/// A task is identified by the app agent that sent it and the `task_id` DingTalk returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    pub agent_id: i64,
    pub task_id: i64,
}

/// Where the exporter is with a task (the `state` label of `dingtalk_tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Still being polled.
    Active,
    /// DingTalk reported status 2 (finished).
    Completed,
    /// DingTalk answered 40035: no such task for this agent.
    Invalid,
    /// Older than `--task.max-age`: outside DingTalk's query window.
    Expired,
}

impl TaskState {
    pub const ALL: [TaskState; 4] = [
        TaskState::Active,
        TaskState::Completed,
        TaskState::Invalid,
        TaskState::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Active => "active",
            TaskState::Completed => "completed",
            TaskState::Invalid => "invalid",
            TaskState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// DingTalk's `status` of a send task (the `status` label of `dingtalk_task_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    NotStarted,
    InProgress,
    Completed,
}

impl SendStatus {
    pub const ALL: [SendStatus; 3] = [
        SendStatus::NotStarted,
        SendStatus::InProgress,
        SendStatus::Completed,
    ];

    /// DingTalk's numeric status: 0 not started, 1 in progress, 2 finished. Unknown values
    /// are read as in progress: the task is not known to be done, so it keeps being polled.
    pub fn from_dingtalk(status: i64) -> SendStatus {
        match status {
            0 => SendStatus::NotStarted,
            2 => SendStatus::Completed,
            _ => SendStatus::InProgress,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::NotStarted => "not_started",
            SendStatus::InProgress => "in_progress",
            SendStatus::Completed => "completed",
        }
    }

    pub fn parse(text: &str) -> Option<SendStatus> {
        SendStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Who registered a task (the `source` of a task answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskSource {
    /// The task API (`POST /api/v1/tasks`, `dingtalk-exporter track`).
    #[default]
    Api,
    /// The static tasks of the config file.
    Config,
    /// The tracking proxy, from a send it relayed.
    Proxy,
    /// `dingtalk-exporter send`.
    Send,
}

impl TaskSource {
    pub const ALL: [TaskSource; 4] = [
        TaskSource::Api,
        TaskSource::Config,
        TaskSource::Proxy,
        TaskSource::Send,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskSource::Api => "api",
            TaskSource::Config => "config",
            TaskSource::Proxy => "proxy",
            TaskSource::Send => "send",
        }
    }

    pub fn parse(text: &str) -> Option<TaskSource> {
        TaskSource::ALL
            .into_iter()
            .find(|source| source.as_str() == text)
    }
}

/// What became of the one `getsendresult` call made for a finished task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ResultFetch {
    /// Not asked yet (or not finished yet).
    Pending,
    /// DingTalk answered; the counts are in [`Task::recipients`].
    Fetched,
    /// DingTalk refused (more than 100 recipients, outside 24 h, ...): recorded, not retried.
    Refused { errcode: i64 },
    /// DingTalk answers `getsendresult` only for tasks of at most 100 recipients, and this
    /// one has more: it refused, or, registered with more, it was not asked (each refusal
    /// would be a metered call). Expected, not an error.
    TooManyRecipients,
    /// DingTalk could not be reached about it after several tries (network, throttles).
    Unavailable,
}

impl ResultFetch {
    /// The word a store keeps for it; a refusal's errcode is kept beside it
    /// ([`ResultFetch::refused_errcode`]).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultFetch::Pending => "pending",
            ResultFetch::Fetched => "fetched",
            ResultFetch::Refused { .. } => "refused",
            ResultFetch::Unavailable => "unavailable",
            ResultFetch::TooManyRecipients => "too_many_recipients",
        }
    }

    /// DingTalk's errcode, for a refusal.
    pub fn refused_errcode(self) -> Option<i64> {
        match self {
            ResultFetch::Refused { errcode } => Some(errcode),
            ResultFetch::Pending
            | ResultFetch::Fetched
            | ResultFetch::Unavailable
            | ResultFetch::TooManyRecipients => None,
        }
    }

    /// Reads back what [`ResultFetch::as_str`] and [`ResultFetch::refused_errcode`] wrote;
    /// `None` for anything no release wrote.
    pub fn from_stored(word: &str, refused_errcode: Option<i64>) -> Option<ResultFetch> {
        match (word, refused_errcode) {
            ("pending", _) => Some(ResultFetch::Pending),
            ("fetched", _) => Some(ResultFetch::Fetched),
            ("unavailable", _) => Some(ResultFetch::Unavailable),
            ("too_many_recipients", _) => Some(ResultFetch::TooManyRecipients),
            ("refused", Some(errcode)) => Some(ResultFetch::Refused { errcode }),
            _ => None,
        }
    }
}

/// Everything the exporter knows about one tracked task. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub key: TaskKey,
    /// A label for people (`dingtalk_task_info{name}`); may be empty.
    pub name: String,
    /// Who registered it.
    pub source: TaskSource,
    /// How many people it was sent to, when the registration said (the poller uses it to
    /// predict when the delivery ends).
    pub recipients_expected: Option<u64>,
    pub state: TaskState,
    /// DingTalk's status from the last answer; `None` before the first answer.
    pub status: Option<SendStatus>,
    /// `progress_in_percent / 100` from the last answer; `None` before the first answer.
    pub progress_ratio: Option<f64>,
    /// When the task was registered.
    pub created_at_ms: i64,
    /// The last successful answer about this task.
    pub last_poll_at_ms: Option<i64>,
    /// The last time its progress (or status) changed; the registration time before that.
    pub last_progress_change_at_ms: i64,
    /// DingTalk's errcode from the last poll (the sub_code for 88), 0 when it succeeded;
    /// `None` before the first answer. Failures without a DingTalk answer leave it as it was.
    pub last_errcode: Option<i64>,
    /// When the task left the `active` state; its retention on `/metrics` counts from here.
    pub ended_at_ms: Option<i64>,
    /// When the scheduler will next ask DingTalk about it (`None`: nothing more to ask).
    pub next_poll_at_ms: Option<i64>,
    /// Metered calls spent on this task (progress polls and the result fetch).
    pub metered_calls: u64,
    /// Recipient counts from `getsendresult`, once fetched.
    pub recipients: Option<RecipientCounts>,
    pub result_fetch: ResultFetch,
    /// What the poller remembers between polls to estimate the rate of progress.
    pub poll_memory: PollMemory,
    /// When the poller expects the delivery to reach 100% (`None`: no estimate, such as
    /// before anything is known about its pace, once it stalled, or once it ended).
    pub expected_completion_at_ms: Option<i64>,
}

/// What the poller remembers about a task between polls, stored with the task (a column
/// each, so a task takes a few bytes for it at rest, not a JSON text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PollMemory {
    /// A moment when the task's progress was known, and that progress: the last answer
    /// that said "not started" (progress 0), then the first answer that showed it running.
    /// The rate of progress is measured from here; with no answer yet, the registration
    /// time with progress 0 serves.
    pub anchor_ms: Option<i64>,
    pub anchor_ratio: f64,
    /// Whether the anchor is a sighting of the task running (it then stays put, so the
    /// rate is averaged over the whole run rather than over the last, noisy gap).
    pub anchored_running: bool,
    /// Failed `getsendresult` attempts of a finished task.
    pub result_attempts: u32,
    /// The gap chosen after the previous answer, the base of the back-off while nothing
    /// changes.
    pub last_interval_ms: i64,
    /// When delivery is estimated to have started: the registration when the first answer
    /// shows it running, else halfway between the last "not started" and the first
    /// "running" answer. Measures the run of a finished task for the learned pace.
    pub started_at_ms: Option<i64>,
    /// Whether a new task's first poll was placed at its predicted end (done once, before
    /// any call).
    pub first_poll_placed: bool,
}

impl Task {
    /// A task just registered: active, never polled, due at once.
    pub fn registered(key: TaskKey, name: String, now_ms: i64) -> Task {
        Task {
            key,
            name,
            source: TaskSource::Api,
            recipients_expected: None,
            state: TaskState::Active,
            status: None,
            progress_ratio: None,
            created_at_ms: now_ms,
            last_poll_at_ms: None,
            last_progress_change_at_ms: now_ms,
            last_errcode: None,
            ended_at_ms: None,
            next_poll_at_ms: Some(now_ms),
            metered_calls: 0,
            recipients: None,
            result_fetch: ResultFetch::Pending,
            poll_memory: PollMemory::default(),
            expected_completion_at_ms: None,
        }
    }

    /// Whether the task still belongs on `/metrics` at `now_ms`.
    pub fn is_published(&self, now_ms: i64, retention_ms: i64) -> bool {
        match self.ended_at_ms {
            None => true,
            Some(ended) => now_ms < ended.saturating_add(retention_ms),
        }
    }
}
