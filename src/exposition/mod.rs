//! The `/metrics` exposition: the exporter's own metrics ([`Telemetry`]), then the task
//! series, rendered afresh from a [`TaskSnapshot`] at each scrape, so a task's series vanish
//! by themselves when its retention ends.
//!
//! - [`snapshot`]: what a scrape copies out of the tracker under its lock;
//! - [`text`]: text format 0.0.4 by hand: label escaping and sample values formatted exactly
//!   as Prometheus' Go client formats them, without `core::fmt` on the hot path.

pub mod snapshot;
pub mod text;

use std::collections::HashMap;

use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::tracker::{SendStatus, TaskState, Tracker};
pub use snapshot::TaskSnapshot;
use snapshot::{ChunkedText, TaskRow};
use text::{push_escaped_label_value, push_int, push_integer_value, push_ratio, push_timestamp_ms};

/// The `Content-Type` of the exposition: Prometheus text format 0.0.4.
pub const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the whole `/metrics` exposition of `tracker` at `now_ms`, labelled and limited
/// by `config` (apps, retention, budget).
pub fn render_metrics(
    telemetry: &Telemetry,
    tracker: &Tracker,
    config: &Config,
    now_ms: i64,
) -> String {
    let snapshot = TaskSnapshot::take(tracker, now_ms, config.poll.task_retention);
    render_metrics_parts(telemetry, snapshot, config).concat()
}

/// The exposition as consecutive pieces of text, one per metric family group, for the
/// server to send without first copying them into one string (at 100,000 tasks the
/// exposition is tens of megabytes; a second copy would double the scrape's memory).
pub fn render_metrics_parts(
    telemetry: &Telemetry,
    snapshot: TaskSnapshot,
    config: &Config,
) -> Vec<String> {
    let mut parts = vec![telemetry.encode_text()];
    parts.extend(TaskSeries::render(snapshot, config));
    parts
}

/// A task metric family: every one is a gauge.
struct Family {
    name: &'static str,
    help: &'static str,
}

const PROGRESS_RATIO: Family = Family {
    name: "dingtalk_task_progress_ratio",
    help: "Delivery progress of a tracked task (progress_in_percent / 100) from DingTalk's last answer. The exporter polls DingTalk in the background; scrapes never call DingTalk.",
};
const STATUS: Family = Family {
    name: "dingtalk_task_status",
    help: "DingTalk's status of a tracked task as a state set: 1 for the current status (not_started, in_progress, completed), 0 for the others. From the last background poll; scrapes never call DingTalk.",
};
const INFO: Family = Family {
    name: "dingtalk_task_info",
    help: "Always 1; labels name the app (and corp, for third-party apps) whose credentials poll a tracked task and the task's name.",
};
const CREATED: Family = Family {
    name: "dingtalk_task_created_timestamp_seconds",
    help: "When a tracked task was registered with the exporter.",
};
const LAST_POLL: Family = Family {
    name: "dingtalk_task_last_poll_timestamp_seconds",
    help: "When DingTalk last answered about a tracked task. The exporter polls in the background; scrapes never call DingTalk.",
};
const LAST_PROGRESS_CHANGE: Family = Family {
    name: "dingtalk_task_last_progress_change_timestamp_seconds",
    help: "When a tracked task's progress or status last changed (its registration before that); a stalled delivery stops moving it.",
};
const LAST_ERRCODE: Family = Family {
    name: "dingtalk_task_last_errcode",
    help: "DingTalk's errcode for the last poll of a tracked task (the sub_code for 88), 0 when it succeeded.",
};
const RECIPIENTS: Family = Family {
    name: "dingtalk_task_recipients",
    help: "Recipients of a finished task by result (read, unread, failed, forbidden, invalid), from DingTalk's getsendresult, fetched once in the background.",
};

const EXPECTED_COMPLETION: Family = Family {
    name: "dingtalk_task_expected_completion_timestamp_seconds",
    help: "When the scheduler expects an unfinished task to reach 100%, from its rate of progress or its recipients and its app's learned pace; absent when it has no estimate (not started, stalled, finished).",
};

/// The task families in the order they are exposed.
const TASK_FAMILIES: [&Family; 9] = [
    &PROGRESS_RATIO,
    &STATUS,
    &INFO,
    &CREATED,
    &LAST_POLL,
    &LAST_PROGRESS_CHANGE,
    &LAST_ERRCODE,
    &RECIPIENTS,
    &EXPECTED_COMPLETION,
];

const TASKS_BY_STATE: Family = Family {
    name: "dingtalk_tasks",
    help: "Tasks tracked by the exporter by state (active, completed, invalid, expired).",
};
const MONTH_CALL_BUDGET: Family = Family {
    name: "dingtalk_api_month_call_budget",
    help: "The configured budget of metered DingTalk calls per calendar month (--dingtalk.monthly-call-budget; a third-party corp's monthly_call_budget with app and corp).",
};

/// The task series of one scrape, written straight as text from the snapshot: no
/// per-series objects, so a scrape at 100,000 tasks costs little more than the text itself.
struct TaskSeries {
    /// One text per entry of [`TASK_FAMILIES`]: one pass over the tasks fills them all, so
    /// each family's lines stay together.
    samples: [ChunkedText; 9],
}

impl TaskSeries {
    fn render(snapshot: TaskSnapshot, config: &Config) -> Vec<String> {
        let mut series = TaskSeries {
            samples: std::array::from_fn(|_| ChunkedText::new()),
        };
        // The `app` (and `corp`) labels of an agent's tasks; there are few agents, so each
        // is resolved once.
        let mut apps: HashMap<i64, (String, Option<String>)> = HashMap::new();
        let mut key_labels = String::with_capacity(64);
        for row in &snapshot.rows {
            let (app, corp) = apps.entry(row.key.agent_id).or_insert_with(|| {
                (
                    config.app_label(row.key.agent_id).to_string(),
                    config.corp_label(row.key.agent_id).map(str::to_string),
                )
            });
            key_labels.clear();
            key_labels.push_str("agent_id=\"");
            push_int(&mut key_labels, row.key.agent_id);
            key_labels.push_str("\",task_id=\"");
            push_int(&mut key_labels, row.key.task_id);
            key_labels.push('"');
            series.add_task(row, snapshot.name(row), app, corp.as_deref(), &key_labels);
        }
        let by_state = snapshot.by_state;
        drop(snapshot);

        let mut parts = Vec::new();
        for (family, samples) in TASK_FAMILIES.iter().zip(series.samples) {
            if samples.is_empty() {
                continue;
            }
            let mut header = String::with_capacity(family.help.len() + 2 * family.name.len() + 24);
            push_header(&mut header, family);
            parts.push(header);
            parts.extend(samples.into_pieces());
        }

        let mut summary = String::with_capacity(1024);
        push_header(&mut summary, &TASKS_BY_STATE);
        for (state, count) in TaskState::ALL.into_iter().zip(by_state) {
            summary.push_str(TASKS_BY_STATE.name);
            summary.push_str("{state=\"");
            summary.push_str(state.as_str());
            summary.push_str("\"} ");
            push_integer_value(&mut summary, count as i64);
            summary.push('\n');
        }
        let budget = config.dingtalk.monthly_call_budget;
        // Each corp of a third-party app has a budget of its own, labelled like its other
        // per-app series.
        let corp_budgets: Vec<(&str, &str, u64)> = config
            .apps
            .iter()
            .filter_map(|app| {
                let corp = app.corp.as_ref()?;
                (corp.monthly_call_budget > 0).then_some((
                    app.name.as_str(),
                    corp.name.as_str(),
                    corp.monthly_call_budget,
                ))
            })
            .collect();
        if budget > 0 || !corp_budgets.is_empty() {
            push_header(&mut summary, &MONTH_CALL_BUDGET);
        }
        if budget > 0 {
            summary.push_str(MONTH_CALL_BUDGET.name);
            summary.push(' ');
            push_integer_value(&mut summary, i64::try_from(budget).unwrap_or(i64::MAX));
            summary.push('\n');
        }
        for (app, corp, budget) in corp_budgets {
            summary.push_str(MONTH_CALL_BUDGET.name);
            summary.push_str("{app=\"");
            push_escaped_label_value(&mut summary, app);
            summary.push_str("\",corp=\"");
            push_escaped_label_value(&mut summary, corp);
            summary.push_str("\"} ");
            push_integer_value(&mut summary, i64::try_from(budget).unwrap_or(i64::MAX));
            summary.push('\n');
        }
        parts.push(summary);
        parts
    }

    /// Appends every series of one task, each family's lines to that family's text.
    fn add_task(
        &mut self,
        row: &TaskRow,
        name: &str,
        app: &str,
        corp: Option<&str>,
        key_labels: &str,
    ) {
        let [
            progress,
            status,
            info,
            created,
            last_poll,
            last_change,
            errcode,
            recipients,
            expected_completion,
        ] = &mut self.samples;
        if let Some(ratio) = row.progress_ratio {
            push_sample(
                progress.with_room(),
                &PROGRESS_RATIO,
                key_labels,
                &[],
                Sample::Ratio(ratio),
            );
        }
        if let Some(current) = row.status {
            let status = status.with_room();
            for candidate in SendStatus::ALL {
                let labels = [("status", candidate.as_str())];
                let value = Sample::Count(i64::from(candidate == current));
                push_sample(status, &STATUS, key_labels, &labels, value);
            }
        }
        let with_corp;
        let labels: &[(&str, &str)] = match corp {
            None => &[("app", app), ("name", name)],
            Some(corp) => {
                with_corp = [("app", app), ("corp", corp), ("name", name)];
                &with_corp
            }
        };
        push_sample(
            info.with_room(),
            &INFO,
            key_labels,
            labels,
            Sample::Count(1),
        );
        let registered = Sample::TimestampMs(row.created_at_ms);
        push_sample(created.with_room(), &CREATED, key_labels, &[], registered);
        if let Some(polled) = row.last_poll_at_ms {
            let polled = Sample::TimestampMs(polled);
            push_sample(last_poll.with_room(), &LAST_POLL, key_labels, &[], polled);
        }
        let changed = Sample::TimestampMs(row.last_progress_change_at_ms);
        push_sample(
            last_change.with_room(),
            &LAST_PROGRESS_CHANGE,
            key_labels,
            &[],
            changed,
        );
        if let Some(code) = row.last_errcode {
            let code = Sample::Count(code);
            push_sample(errcode.with_room(), &LAST_ERRCODE, key_labels, &[], code);
        }
        if let Some(expected) = row.expected_completion_at_ms {
            push_sample(
                expected_completion.with_room(),
                &EXPECTED_COMPLETION,
                key_labels,
                &[],
                Sample::TimestampMs(expected),
            );
        }
        if let Some(counts) = row.recipients {
            let recipients = recipients.with_room();
            for (result, count) in [
                ("read", counts.read),
                ("unread", counts.unread),
                ("failed", counts.failed),
                ("forbidden", counts.forbidden),
                ("invalid", counts.invalid),
            ] {
                let count = Sample::Count(i64::try_from(count).unwrap_or(i64::MAX));
                push_sample(
                    recipients,
                    &RECIPIENTS,
                    key_labels,
                    &[("result", result)],
                    count,
                );
            }
        }
    }
}

/// A sample value, kept in the form it comes in so the common cases (integers and
/// millisecond times) are formatted without floating-point conversion.
#[derive(Clone, Copy)]
enum Sample {
    Ratio(f64),
    Count(i64),
    TimestampMs(i64),
}

impl Sample {
    fn push_to(self, out: &mut String) {
        match self {
            Sample::Ratio(value) => push_ratio(out, value),
            Sample::Count(count) => push_integer_value(out, count),
            Sample::TimestampMs(ms) => push_timestamp_ms(out, ms),
        }
    }
}

fn push_header(out: &mut String, family: &Family) {
    // The HELP texts are constants without backslashes or newlines, so they need no escaping.
    out.push_str("# HELP ");
    out.push_str(family.name);
    out.push(' ');
    out.push_str(family.help);
    out.push_str("\n# TYPE ");
    out.push_str(family.name);
    out.push_str(" gauge\n");
}

/// Appends `name{<key_labels>,<label>="<value>",...} <value>\n`.
fn push_sample(
    out: &mut String,
    family: &Family,
    key_labels: &str,
    labels: &[(&str, &str)],
    value: Sample,
) {
    out.push_str(family.name);
    out.push('{');
    out.push_str(key_labels);
    for (label, label_value) in labels {
        out.push(',');
        out.push_str(label);
        out.push_str("=\"");
        push_escaped_label_value(out, label_value);
        out.push('"');
    }
    out.push_str("} ");
    value.push_to(out);
    out.push('\n');
}
