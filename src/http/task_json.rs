//! The task as the API answers it.
//!
//! Times are RFC 3339 strings in UTC with milliseconds (`2026-05-01T08:30:00.000Z`), or
//! `null` when the moment has not happened yet. DingTalk's status and the exporter's state are
//! the same words as the `status` and `state` labels on `/metrics`. The list endpoint answers
//! `{"tasks": [...]}`, an object so that fields can be added without breaking clients.

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;

use crate::dingtalk::RecipientCounts;
use crate::tracker::{ResultFetch, Task};

/// One task's answer.
#[derive(Debug, Serialize)]
pub struct TaskJson<'a> {
    pub agent_id: i64,
    pub task_id: i64,
    pub name: &'a str,
    /// The app whose credentials poll the task (the `app` label).
    pub app: &'a str,
    /// The corp of a third-party app whose token polls the task (the `corp` label); null
    /// for internal apps.
    pub corp: Option<&'a str>,
    /// Who registered it: `api`, `config`, `proxy` or `send`.
    pub source: &'static str,
    /// How many people it was sent to, when the registration said; null otherwise.
    pub recipients_expected: Option<u64>,
    /// `active`, `completed`, `invalid` or `expired`.
    pub state: &'static str,
    /// `not_started`, `in_progress`, `completed`, or null before DingTalk's first answer.
    pub status: Option<&'static str>,
    /// 0..1, or null before DingTalk's first answer.
    pub progress_ratio: Option<f64>,
    pub created_at: Option<String>,
    pub last_poll_at: Option<String>,
    pub last_progress_change_at: Option<String>,
    /// When the task stopped being polled (completed, invalid or expired).
    pub ended_at: Option<String>,
    /// DingTalk's errcode of the last poll (the sub_code for 88), 0 on success.
    pub last_errcode: Option<i64>,
    /// When the exporter will next ask DingTalk; null when there is nothing more to ask.
    pub next_poll_at: Option<String>,
    /// When the scheduler expects the delivery to reach 100%; null when it has no estimate.
    pub expected_completion_at: Option<String>,
    /// Metered DingTalk calls spent on this task.
    pub metered_calls: u64,
    /// Recipient counts from `getsendresult`, once fetched.
    pub recipients: Option<RecipientCounts>,
    /// What became of the `getsendresult` call.
    pub result: ResultJson,
}

/// `{"outcome":"pending"}`, `{"outcome":"fetched"}`, `{"outcome":"refused","errcode":N}` or
/// `{"outcome":"unavailable"}` (DingTalk could not be reached about it after several tries) or
/// `{"outcome":"too_many_recipients"}` (sent to more than 100 people: not asked).
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ResultJson {
    Pending,
    Fetched,
    Refused { errcode: i64 },
    Unavailable,
    TooManyRecipients,
}

impl<'a> TaskJson<'a> {
    pub fn new(task: &'a Task, app: &'a str, corp: Option<&'a str>) -> TaskJson<'a> {
        TaskJson {
            agent_id: task.key.agent_id,
            task_id: task.key.task_id,
            name: &task.name,
            app,
            corp,
            source: task.source.as_str(),
            recipients_expected: task.recipients_expected,
            state: task.state.as_str(),
            status: task.status.map(|status| status.as_str()),
            progress_ratio: task.progress_ratio,
            created_at: rfc3339(task.created_at_ms),
            last_poll_at: task.last_poll_at_ms.and_then(rfc3339),
            last_progress_change_at: rfc3339(task.last_progress_change_at_ms),
            ended_at: task.ended_at_ms.and_then(rfc3339),
            last_errcode: task.last_errcode,
            next_poll_at: task.next_poll_at_ms.and_then(rfc3339),
            expected_completion_at: task.expected_completion_at_ms.and_then(rfc3339),
            metered_calls: task.metered_calls,
            recipients: task.recipients,
            result: match task.result_fetch {
                ResultFetch::Pending => ResultJson::Pending,
                ResultFetch::Fetched => ResultJson::Fetched,
                ResultFetch::Refused { errcode } => ResultJson::Refused { errcode },
                ResultFetch::Unavailable => ResultJson::Unavailable,
                ResultFetch::TooManyRecipients => ResultJson::TooManyRecipients,
            },
        }
    }
}

/// Unix milliseconds as an RFC 3339 UTC string; `None` for a moment chrono cannot represent.
pub fn rfc3339(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(|at| at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{SendStatus, TaskKey, TaskSource, TaskState};

    /// A polled task answers with every documented field, times in RFC 3339 UTC.
    #[test]
    fn task_answer_has_documented_fields() {
        let mut task = Task::registered(
            TaskKey {
                agent_id: 2839445214,
                task_id: 256271667526,
            },
            "payroll".to_string(),
            1_777_000_000_000,
        );
        task.state = TaskState::Completed;
        task.status = Some(SendStatus::Completed);
        task.progress_ratio = Some(1.0);
        task.last_poll_at_ms = Some(1_777_000_060_500);
        task.last_errcode = Some(0);
        task.next_poll_at_ms = None;
        task.result_fetch = ResultFetch::Refused { errcode: 40035 };
        task.source = TaskSource::Send;
        task.recipients_expected = Some(250);
        let json = serde_json::to_value(TaskJson::new(&task, "hr", None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "agent_id": 2839445214i64,
                "task_id": 256271667526i64,
                "name": "payroll",
                "app": "hr",
                "corp": null,
                "source": "send",
                "recipients_expected": 250,
                "state": "completed",
                "status": "completed",
                "progress_ratio": 1.0,
                "created_at": "2026-04-24T03:06:40.000Z",
                "last_poll_at": "2026-04-24T03:07:40.500Z",
                "last_progress_change_at": "2026-04-24T03:06:40.000Z",
                "ended_at": null,
                "last_errcode": 0,
                "next_poll_at": null,
                "expected_completion_at": null,
                "metered_calls": 0,
                "recipients": null,
                "result": {"outcome": "refused", "errcode": 40035},
            })
        );
        let third_party = serde_json::to_value(TaskJson::new(&task, "isv", Some("acme"))).unwrap();
        assert_eq!(third_party["corp"], "acme");
    }

    /// A running task's answer carries when the scheduler expects it to end, and says when
    /// its recipients were not asked for because there are too many of them.
    #[test]
    fn task_answer_carries_the_estimate_and_the_skipped_result() {
        let mut task = Task::registered(
            TaskKey {
                agent_id: 1,
                task_id: 2,
            },
            String::new(),
            1_777_000_000_000,
        );
        task.expected_completion_at_ms = Some(1_777_000_240_000);
        task.result_fetch = ResultFetch::TooManyRecipients;
        let json = serde_json::to_value(TaskJson::new(&task, "hr", None)).unwrap();
        assert_eq!(json["expected_completion_at"], "2026-04-24T03:10:40.000Z");
        assert_eq!(
            json["result"],
            serde_json::json!({"outcome": "too_many_recipients"})
        );
    }
}
