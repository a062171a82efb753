//! `/metrics`: the exposition over real HTTP and the task series rendered from the tracker.

mod http_common;
mod prometheus_tools;

use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::dingtalk::RecipientCounts;
use dingtalk_exporter::exposition::render_metrics;
use dingtalk_exporter::tracker::{NewTask, ResultFetch, SendStatus, TaskKey, TaskState};
use http_common::exposition::{self, Exposition};
use http_common::{TestServer, client, exporter, test_config};
use prometheus_tools::{check_metrics, prometheus_binary};

const AGENT: &str = "2839445214";
const TASK: &str = "256271667526";
const KEY: TaskKey = TaskKey {
    agent_id: 2839445214,
    task_id: 256271667526,
};

fn parsed(text: &str) -> Exposition {
    exposition::parse(text).unwrap_or_else(|err| panic!("invalid exposition: {err}\n{text}"))
}

fn task_labels() -> [(&'static str, &'static str); 2] {
    [("agent_id", AGENT), ("task_id", TASK)]
}

async fn register(server: &TestServer, body: serde_json::Value) {
    let response = client()
        .post(server.tasks_url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// A polled task's series reach /metrics with its agent_id and task_id and what DingTalk said.
#[tokio::test]
async fn polled_task_series_appear_with_their_labels() {
    let server = TestServer::start(test_config()).await;
    register(&server, serde_json::json!({"agent_id": KEY.agent_id, "task_id": KEY.task_id, "name": "payroll May"})).await;
    let tracker = server.exporter.tracker();
    let mut task = tracker.get(KEY).unwrap();
    task.status = Some(SendStatus::InProgress);
    task.progress_ratio = Some(0.37);
    task.last_poll_at_ms = Some(1_777_000_060_500);
    task.last_progress_change_at_ms = 1_777_000_050_000;
    task.last_errcode = Some(0);
    task.recipients = Some(RecipientCounts {
        read: 3,
        unread: 1,
        failed: 2,
        forbidden: 0,
        invalid: 4,
    });
    tracker.update(vec![task.clone()]).await.unwrap();

    let metrics = parsed(&server.scrape().await);
    let key = task_labels();
    assert_eq!(metrics.value("dingtalk_task_progress_ratio", &key), 0.37);
    for (status, expected) in [
        ("not_started", 0.0),
        ("in_progress", 1.0),
        ("completed", 0.0),
    ] {
        let labels = [key[0], key[1], ("status", status)];
        assert_eq!(
            metrics.value("dingtalk_task_status", &labels),
            expected,
            "{status}"
        );
    }
    let info = metrics.find("dingtalk_task_info", &key);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].labels["app"], "default");
    assert_eq!(info[0].labels["name"], "payroll May");
    assert_eq!(info[0].value, 1.0);
    assert_eq!(
        metrics.value("dingtalk_task_created_timestamp_seconds", &key),
        task.created_at_ms as f64 / 1000.0
    );
    assert_eq!(
        metrics.value("dingtalk_task_last_poll_timestamp_seconds", &key),
        1_777_000_060.5
    );
    assert_eq!(
        metrics.value("dingtalk_task_last_progress_change_timestamp_seconds", &key),
        1_777_000_050.0
    );
    assert_eq!(metrics.value("dingtalk_task_last_errcode", &key), 0.0);
    for (result, count) in [
        ("read", 3.0),
        ("unread", 1.0),
        ("failed", 2.0),
        ("forbidden", 0.0),
        ("invalid", 4.0),
    ] {
        let labels = [key[0], key[1], ("result", result)];
        assert_eq!(
            metrics.value("dingtalk_task_recipients", &labels),
            count,
            "{result}"
        );
    }
    assert_eq!(metrics.value("dingtalk_tasks", &[("state", "active")]), 1.0);
    for state in ["completed", "invalid", "expired"] {
        assert_eq!(metrics.value("dingtalk_tasks", &[("state", state)]), 0.0);
    }
    // The exporter's own collectors come first, in the same answer.
    assert_eq!(
        metrics.value("dingtalk_api_requests_total", &[("api", "getsendprogress")]),
        0.0
    );
    assert_eq!(metrics.find("dingtalk_exporter_build_info", &[]).len(), 1);
    let (help, kind) = &metrics.families["dingtalk_task_progress_ratio"];
    assert!(
        help.as_deref()
            .unwrap()
            .contains("scrapes never call DingTalk")
    );
    assert_eq!(kind.as_deref(), Some("gauge"));
}

/// Before DingTalk's first answer a task shows only what is known: no progress, status,
/// poll time, errcode or recipients.
#[tokio::test]
async fn unpolled_task_shows_only_known_series() {
    let (exporter, _store) = exporter(test_config());
    let now = now_ms();
    exporter
        .tracker()
        .register(
            vec![NewTask {
                key: KEY,
                name: String::new(),
                recipients: None,
                source: dingtalk_exporter::tracker::TaskSource::Api,
            }],
            now,
        )
        .await
        .unwrap();
    let metrics = parsed(&render(&exporter, now));
    let key = task_labels();
    for absent in [
        "dingtalk_task_progress_ratio",
        "dingtalk_task_status",
        "dingtalk_task_last_poll_timestamp_seconds",
        "dingtalk_task_last_errcode",
        "dingtalk_task_recipients",
    ] {
        assert!(
            metrics.find(absent, &key).is_empty(),
            "{absent} before the first poll"
        );
        assert!(
            !metrics.families.contains_key(absent),
            "{absent} family without samples"
        );
    }
    for present in [
        "dingtalk_task_info",
        "dingtalk_task_created_timestamp_seconds",
        "dingtalk_task_last_progress_change_timestamp_seconds",
    ] {
        assert_eq!(metrics.find(present, &key).len(), 1, "{present}");
    }
}

/// With no tasks, every state of dingtalk_tasks is still there (0) and no task family is.
#[tokio::test]
async fn no_tasks_still_exposes_task_counts() {
    let (exporter, _store) = exporter(test_config());
    let text = render(&exporter, now_ms());
    let metrics = parsed(&text);
    for state in ["active", "completed", "invalid", "expired"] {
        assert_eq!(
            metrics.value("dingtalk_tasks", &[("state", state)]),
            0.0,
            "{state}"
        );
    }
    // dingtalk_task_calls is the exporter's histogram of ended tasks' calls, not a series
    // of a task: it is there from the start.
    let task_series = text
        .lines()
        .filter(|line| !line.contains("dingtalk_task_calls"))
        .any(|line| line.contains("dingtalk_task_"));
    assert!(!task_series, "task families without tasks:\n{text}");
    assert!(!text.contains("dingtalk_api_month_call_budget"));
}

/// The monthly budget gauge appears exactly when a budget is configured.
#[tokio::test]
async fn month_call_budget_only_when_configured() {
    let mut config = test_config();
    config.dingtalk.monthly_call_budget = 5000;
    let (exporter, _store) = exporter(config);
    let metrics = parsed(&render(&exporter, now_ms()));
    assert_eq!(metrics.value("dingtalk_api_month_call_budget", &[]), 5000.0);
}

const HOSTILE_NAMES: [&str; 5] = [
    r#"say "hi""#,
    r"C:\reports\May",
    "two\nlines",
    "工资通知 — Mai ✓",
    r#"all: \ " \n done"#,
];

/// Names with quotes, backslashes, newlines and non-ASCII text come back exactly after
/// escaping, and the raw text carries the escapes of text format 0.0.4.
#[tokio::test]
async fn hostile_names_are_escaped() {
    let server = TestServer::start(test_config()).await;
    // Registered as a config file's static tasks are, past the API's own name rules.
    let batch: Vec<NewTask> = HOSTILE_NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| NewTask {
            key: TaskKey {
                agent_id: 7,
                task_id: index as i64 + 1,
            },
            name: name.to_string(),
            recipients: None,
            source: dingtalk_exporter::tracker::TaskSource::Api,
        })
        .collect();
    server
        .exporter
        .tracker()
        .register(batch, now_ms())
        .await
        .unwrap();

    let text = server.scrape().await;
    let metrics = parsed(&text);
    for (index, name) in HOSTILE_NAMES.iter().enumerate() {
        let task_id = (index + 1).to_string();
        let info = metrics.find(
            "dingtalk_task_info",
            &[("agent_id", "7"), ("task_id", &task_id)],
        );
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels["name"], *name);
    }
    assert!(text.contains(r#"name="say \"hi\"""#), "{text}");
    assert!(text.contains(r#"name="C:\\reports\\May""#), "{text}");
    assert!(text.contains(r#"name="two\nlines""#), "{text}");
    assert!(text.contains("工资通知 — Mai ✓"));
}

/// A finished task's series leave /metrics when its retention ends; it stays counted while
/// tracked.
#[tokio::test]
async fn retention_removes_finished_task_series() {
    let (exporter, _store) = exporter(test_config());
    let retention_ms = 3_600_000;
    let ended = 1_777_000_000_000;
    let tracker = exporter.tracker();
    tracker
        .register(
            vec![NewTask {
                key: KEY,
                name: "done".to_string(),
                recipients: None,
                source: dingtalk_exporter::tracker::TaskSource::Api,
            }],
            ended - 60_000,
        )
        .await
        .unwrap();
    let mut task = tracker.get(KEY).unwrap();
    task.state = TaskState::Completed;
    task.status = Some(SendStatus::Completed);
    task.progress_ratio = Some(1.0);
    task.ended_at_ms = Some(ended);
    task.next_poll_at_ms = None;
    task.result_fetch = ResultFetch::Fetched;
    tracker.update(vec![task]).await.unwrap();

    let key = task_labels();
    let before = parsed(&render(&exporter, ended + retention_ms - 1));
    assert_eq!(before.value("dingtalk_task_progress_ratio", &key), 1.0);
    let after = parsed(&render(&exporter, ended + retention_ms));
    assert!(
        after
            .samples
            .iter()
            .all(|sample| sample.labels.get("task_id").map(String::as_str) != Some(TASK)),
        "series left behind after retention"
    );
    assert_eq!(
        after.value("dingtalk_tasks", &[("state", "completed")]),
        1.0
    );
}

/// promtool accepts the real output, hostile names and all (when promtool is installed; CI
/// requires it through DINGTALK_EXPORTER_REQUIRE_PROMETHEUS).
#[tokio::test]
async fn promtool_check_metrics_passes() {
    let Some(promtool) = prometheus_binary("promtool") else {
        return;
    };
    let mut config = test_config();
    config.dingtalk.monthly_call_budget = 5000;
    let (exporter, _store) = exporter(config);
    let tracker = exporter.tracker();
    let now = now_ms();
    let batch: Vec<NewTask> = HOSTILE_NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| NewTask {
            key: TaskKey {
                agent_id: 7,
                task_id: index as i64 + 1,
            },
            name: name.to_string(),
            recipients: None,
            source: dingtalk_exporter::tracker::TaskSource::Api,
        })
        .collect();
    tracker.register(batch, now).await.unwrap();
    let mut task = tracker
        .get(TaskKey {
            agent_id: 7,
            task_id: 1,
        })
        .unwrap();
    task.status = Some(SendStatus::Completed);
    task.progress_ratio = Some(1.0);
    task.last_poll_at_ms = Some(now);
    task.last_errcode = Some(0);
    task.recipients = Some(RecipientCounts::default());
    tracker.update(vec![task]).await.unwrap();

    let text = render(&exporter, now);
    if let Err(problems) = check_metrics(&promtool, &text) {
        panic!("{problems}\n{text}");
    }
}

/// 100,000 tracked tasks render completely: one info series each, counted by state.
#[tokio::test]
async fn renders_one_hundred_thousand_tasks() {
    const TASKS: i64 = 100_000;
    let mut config = test_config();
    config.poll.tasks_max = TASKS as usize;
    let (exporter, _store) = exporter(config);
    let now = now_ms();
    let batch: Vec<NewTask> = (1..=TASKS)
        .map(|task_id| NewTask {
            key: TaskKey {
                agent_id: 2839445214,
                task_id,
            },
            name: format!("notice {task_id}"),
            recipients: None,
            source: dingtalk_exporter::tracker::TaskSource::Api,
        })
        .collect();
    exporter.tracker().register(batch, now).await.unwrap();

    let text = render(&exporter, now);
    let info_lines = text
        .lines()
        .filter(|line| line.starts_with("dingtalk_task_info{"))
        .count();
    assert_eq!(info_lines, TASKS as usize);
    assert!(text.contains("dingtalk_tasks{state=\"active\"} 100000\n"));
    assert!(text.contains("dingtalk_task_info{agent_id=\"2839445214\",task_id=\"100000\",app=\"default\",name=\"notice 100000\"} 1\n"));
}

/// The exposition of `exporter` at `now_ms`, as a scrape renders it.
fn render(exporter: &dingtalk_exporter::assembly::Exporter, now_ms: i64) -> String {
    render_metrics(
        exporter.telemetry(),
        exporter.tracker(),
        &exporter.config(),
        now_ms,
    )
}
