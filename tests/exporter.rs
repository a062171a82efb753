//! The real binary against the simulator over real HTTP: what a user of the exporter sees on
//! `/metrics` and the task API while DingTalk behaves, misbehaves, and the process restarts.

mod common;

use std::time::Duration;

use common::{
    ExporterProcess, eventually, exporter_against, get_text, metric, start_simulator, temp_db,
};
use dingtalk_exporter::simulator::{
    Behaviour, ExpiryStyle, FaultConfig, FaultKind, Simulator, Timeline,
};

const SECRET: &str = "s3cret-never-to-be-seen-7f9c2a";
const APP_KEY: &str = "dingtestapp";
const AGENT: i64 = 2_839_445_214;
const WAIT: Duration = Duration::from_secs(30);

async fn simulator(behaviour: Behaviour) -> Simulator {
    start_simulator(APP_KEY, SECRET, behaviour).await
}

/// Starts the exporter against `sim` with fast polling bounds and `extra` flags.
fn exporter(sim: &Simulator, db: &str, extra: &[&str]) -> ExporterProcess {
    let flags = [
        ("--poll.min-interval", "100ms"),
        ("--poll.max-interval", "1s"),
        ("--dingtalk.timeout", "2s"),
    ];
    exporter_against(sim, (APP_KEY, SECRET), db, &flags, extra)
}

async fn register(exporter: &ExporterProcess, task_id: i64, name: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&serde_json::json!({"agent_id": AGENT, "task_id": task_id, "name": name}))
        .send()
        .await
        .expect("the exporter answers")
        .status()
}

async fn task_json(exporter: &ExporterProcess, task_id: i64) -> Option<serde_json::Value> {
    common::task_json(exporter, AGENT, task_id).await
}

/// A task's progress, completion and recipients reach `/metrics` as DingTalk reports them.
#[tokio::test]
async fn progress_completion_and_recipients_reach_metrics() {
    let sim = simulator(Behaviour::default()).await;
    let timeline = Timeline {
        duration_ms: 1_500,
        recipients: 10,
        read: 6,
        failed: 1,
        forbidden: 1,
        invalid: 1,
        ..Timeline::default()
    };
    let task = sim.add_task(AGENT, timeline.clone());
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    assert_eq!(register(&exporter, task, "payroll notice").await, 201);

    let id = task.to_string();
    let labels = [("task_id", id.as_str())];
    eventually("the completion on /metrics", WAIT, || async {
        let done = metric(
            &exporter,
            "dingtalk_task_status",
            &[labels[0], ("status", "completed")],
        )
        .await?;
        (done == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&exporter, "dingtalk_task_progress_ratio", &labels).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&exporter, "dingtalk_tasks", &[("state", "completed")]).await,
        Some(1.0)
    );

    let expected = timeline.counts_at(timeline.finished_after_ms().unwrap());
    eventually("the recipient counts on /metrics", WAIT, || async {
        metric(
            &exporter,
            "dingtalk_task_recipients",
            &[labels[0], ("result", "read")],
        )
        .await
    })
    .await;
    for (result, count) in [
        ("read", expected.read),
        ("unread", expected.unread),
        ("failed", expected.failed),
        ("forbidden", expected.forbidden),
        ("invalid", expected.invalid),
    ] {
        assert_eq!(
            metric(
                &exporter,
                "dingtalk_task_recipients",
                &[labels[0], ("result", result)]
            )
            .await,
            Some(count as f64),
            "recipients {result}"
        );
    }
    let answer = task_json(&exporter, task).await.unwrap();
    assert_eq!(answer["state"], "completed");
    assert_eq!(answer["recipients"]["read"], expected.read);
    // What the finished task cost lands once in the histogram of calls per task.
    let calls = answer["metered_calls"].as_f64().unwrap();
    assert!(
        calls >= 2.0,
        "at least a progress poll and the result: {calls}"
    );
    assert_eq!(
        metric(&exporter, "dingtalk_task_calls_count", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&exporter, "dingtalk_task_calls_sum", &[]).await,
        Some(calls)
    );
}

/// Polling goes on across token expiry, whether DingTalk says 42001 or wraps 40014 in 88.
#[tokio::test]
async fn polling_survives_token_expiry_in_both_styles() {
    for style in [ExpiryStyle::Flat, ExpiryStyle::Wrapped] {
        let sim = simulator(Behaviour {
            expiry_style: style,
            ..Behaviour::default()
        })
        .await;
        let task = sim.add_task(AGENT, Timeline::stalled_at(30.0));
        let (_dir, db) = temp_db();
        let exporter = exporter(&sim, &db, &[]);
        assert_eq!(register(&exporter, task, "stalled").await, 201);
        eventually("a first successful poll", WAIT, || async {
            task_json(&exporter, task).await?["last_poll_at"]
                .as_str()
                .map(str::to_string)
        })
        .await;

        assert!(
            sim.expire_tokens() >= 1,
            "a token was issued and is now expired"
        );
        let rejected_before = sim.stats().token_rejections;
        eventually(
            &format!("a refresh after {style:?} expiry"),
            WAIT,
            || async {
                let refreshes = metric(&exporter, "dingtalk_token_refreshes_total", &[]).await?;
                (refreshes >= 2.0 && sim.stats().token_rejections > rejected_before).then_some(())
            },
        )
        .await;
        let polled_after_refresh = sim.stats().calls.getsendprogress;
        eventually("polls after the refresh", WAIT, || async {
            (sim.stats().calls.getsendprogress > polled_after_refresh + 2).then_some(())
        })
        .await;
        assert_eq!(
            metric(&exporter, "dingtalk_up", &[("app", "default")]).await,
            Some(1.0),
            "the app is up again after {style:?} expiry"
        );
    }
}

/// A task DingTalk does not know becomes invalid, is counted under errcode 40035 and is not
/// polled again.
#[tokio::test]
async fn unknown_tasks_become_invalid() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    assert_eq!(register(&exporter, 424242, "typo").await, 201);
    eventually("the task to turn invalid", WAIT, || async {
        let answer = task_json(&exporter, 424242).await?;
        (answer["state"] == "invalid").then_some(())
    })
    .await;
    assert_eq!(
        metric(
            &exporter,
            "dingtalk_api_errors_total",
            &[("api", "getsendprogress"), ("errcode", "40035")]
        )
        .await,
        Some(1.0)
    );
    assert_eq!(
        metric(&exporter, "dingtalk_tasks", &[("state", "invalid")]).await,
        Some(1.0)
    );
    let answer = task_json(&exporter, 424242).await.unwrap();
    assert_eq!(answer["last_errcode"], 40035);
    assert!(
        answer["next_poll_at"].is_null(),
        "never polled again: {answer}"
    );
}

/// Every kind of fault DingTalk's side can produce is counted in its own bucket, and the
/// exporter keeps answering and polling.
#[tokio::test]
async fn each_fault_kind_is_counted_in_its_bucket() {
    let sim = simulator(Behaviour::default()).await;
    let task = sim.add_task(AGENT, Timeline::stalled_at(50.0));
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &["--dingtalk.timeout", "500ms"]);
    assert_eq!(register(&exporter, task, "under fire").await, 201);
    eventually("a first poll", WAIT, || async {
        task_json(&exporter, task).await?["last_poll_at"]
            .as_str()
            .map(str::to_string)
    })
    .await;

    for (kind, bucket) in [
        (FaultKind::Html502, "http"),
        (FaultKind::Busy, "-1"),
        (FaultKind::Truncated, "decode"),
        (FaultKind::Drop, "transport"),
        (FaultKind::Slow, "transport"),
        (FaultKind::Punish, "ip_banned"),
        (FaultKind::PunishHtml, "ip_banned"),
    ] {
        let before = metric(
            &exporter,
            "dingtalk_api_errors_total",
            &[("api", "getsendprogress"), ("errcode", bucket)],
        )
        .await
        .unwrap_or(0.0);
        sim.set_faults(FaultConfig {
            slow_delay_ms: 2_000,
            limit: Some(1),
            ..FaultConfig::always(kind)
        })
        .unwrap();
        eventually(&format!("{kind:?} counted as {bucket}"), WAIT, || async {
            let now = metric(
                &exporter,
                "dingtalk_api_errors_total",
                &[("api", "getsendprogress"), ("errcode", bucket)],
            )
            .await?;
            (now > before).then_some(())
        })
        .await;
        // And the exporter recovers: a successful poll after the fault.
        let polls = sim.stats().calls.getsendprogress;
        eventually(&format!("recovery after {kind:?}"), WAIT, || async {
            (sim.stats().calls.getsendprogress > polls
                && metric(&exporter, "dingtalk_up", &[("app", "default")]).await? == 1.0)
                .then_some(())
        })
        .await;
    }
}

/// However many tasks are due at once, the exporter never goes over DingTalk's QPS limit.
#[tokio::test]
async fn the_qps_limit_is_never_exceeded() {
    let sim = simulator(Behaviour {
        qps_limit: 20,
        ..Behaviour::default()
    })
    .await;
    let tasks: Vec<i64> = (0..80)
        .map(|_| sim.add_task(AGENT, Timeline::stalled_at(10.0)))
        .collect();
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &["--dingtalk.max-qps", "20"]);
    let batch: Vec<serde_json::Value> = tasks
        .iter()
        .map(|task| serde_json::json!({"agent_id": AGENT, "task_id": task}))
        .collect();
    let status = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    eventually(
        "two polls of every task",
        Duration::from_secs(60),
        || async { (sim.stats().calls.getsendprogress >= 160).then_some(()) },
    )
    .await;
    assert_eq!(
        sim.stats().qps_rejections,
        0,
        "no call was refused with 90018"
    );
}

/// Tasks registered before a `kill -9` are all there after a restart, with their state
/// and this month's call count.
#[tokio::test]
async fn registrations_and_counts_survive_a_kill() {
    let sim = simulator(Behaviour::default()).await;
    let finished = sim.add_task(
        AGENT,
        Timeline {
            duration_ms: 200,
            ..Timeline::default()
        },
    );
    let (_dir, db) = temp_db();
    let first = exporter(&sim, &db, &[]);
    for task_id in 1..=20 {
        assert_eq!(
            register(&first, task_id, &format!("notice {task_id}")).await,
            201
        );
    }
    assert_eq!(register(&first, finished, "done").await, 201);
    eventually("the finished task seen", WAIT, || async {
        (task_json(&first, finished).await?["state"] == "completed").then_some(())
    })
    .await;
    let calls_before = metric(&first, "dingtalk_api_month_calls", &[])
        .await
        .unwrap();
    assert!(calls_before >= 1.0);
    first.kill();

    let second = exporter(&sim, &db, &[]);
    for task_id in 1..=20 {
        let answer = task_json(&second, task_id).await.expect("still tracked");
        assert_eq!(answer["name"], format!("notice {task_id}"));
    }
    assert_eq!(
        task_json(&second, finished).await.unwrap()["state"],
        "completed"
    );
    let calls_after = metric(&second, "dingtalk_api_month_calls", &[])
        .await
        .unwrap();
    assert!(
        calls_after >= calls_before,
        "{calls_after} < {calls_before}"
    );
    // Registering again answers 200: it was already tracked.
    assert_eq!(register(&second, 1, "notice 1").await, 200);
}

/// With logging at debug, neither the app secret nor any token the simulator issued ever
/// appears in the exporter's output, through token refreshes and failures alike.
#[tokio::test]
async fn logs_never_contain_secrets_or_tokens() {
    let sim = simulator(Behaviour {
        expiry_style: ExpiryStyle::Wrapped,
        ..Behaviour::default()
    })
    .await;
    let task = sim.add_task(AGENT, Timeline::stalled_at(20.0));
    let (_dir, db) = temp_db();
    let exporter = exporter(
        &sim,
        &db,
        &["--log.level", "debug", "--dingtalk.timeout", "500ms"],
    );
    assert_eq!(register(&exporter, task, "secret-free").await, 201);
    eventually("a first poll", WAIT, || async {
        task_json(&exporter, task).await?["last_poll_at"]
            .as_str()
            .map(str::to_string)
    })
    .await;
    sim.expire_tokens();
    for kind in [FaultKind::Drop, FaultKind::Html502, FaultKind::Slow] {
        sim.set_faults(FaultConfig {
            slow_delay_ms: 1_500,
            limit: Some(1),
            ..FaultConfig::always(kind)
        })
        .unwrap();
        let faults = sim.stats().faults.total();
        eventually(&format!("the {kind:?} fault"), WAIT, || async {
            (sim.stats().faults.total() > faults).then_some(())
        })
        .await;
    }
    eventually("a refreshed token in use", WAIT, || async {
        (metric(&exporter, "dingtalk_token_refreshes_total", &[]).await? >= 2.0).then_some(())
    })
    .await;
    let metrics = get_text(&exporter.url("/metrics")).await.unwrap();
    let logs = exporter.logs();
    assert!(logs.contains("level=debug"), "debug logging is on");
    let tokens = sim.issued_tokens();
    assert!(tokens.len() >= 2);
    for (what, text) in [("logs", &logs), ("metrics", &metrics)] {
        assert!(
            !text.contains(SECRET),
            "the app secret leaked into the {what}"
        );
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "a token leaked into the {what}"
            );
        }
    }
}

/// Wrong credentials show as `dingtalk_up 0` from the start, before any task; the log
/// blames `gettoken` (not the task API) and names the host and the task; a task polled
/// meanwhile counts no metered call, as the month counter counts none.
#[tokio::test]
async fn wrong_credentials_show_at_start_and_cost_no_calls() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter_against(
        &sim,
        (APP_KEY, "not-the-secret"),
        &db,
        &[
            ("--poll.min-interval", "100ms"),
            ("--poll.max-interval", "1s"),
            ("--log.level", "debug"),
        ],
        &[],
    );
    eventually("dingtalk_up 0 with no task tracked", WAIT, || async {
        let up = metric(&exporter, "dingtalk_up", &[("app", "default")]).await?;
        (up == 0.0).then_some(())
    })
    .await;
    let host = sim
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let logs = exporter.logs();
    let warning = logs
        .lines()
        .find(|line| line.contains("DingTalk call failed"))
        .unwrap_or_else(|| panic!("no warning about the failed call:\n{logs}"));
    assert!(warning.contains("api=gettoken"), "{warning}");
    assert!(warning.contains(&format!("host={host}")), "{warning}");

    let task = sim.add_task(AGENT, Timeline::default());
    assert_eq!(register(&exporter, task, "payroll").await, 201);
    eventually("the task's poll to fail", WAIT, || async {
        let answer = task_json(&exporter, task).await?;
        (answer["last_errcode"]
            .as_i64()
            .is_some_and(|code| code != 0))
        .then_some(())
    })
    .await;
    let answer = task_json(&exporter, task).await.unwrap();
    assert_eq!(answer["metered_calls"], 0, "{answer}");
    assert_eq!(
        metric(&exporter, "dingtalk_api_month_calls", &[]).await,
        Some(0.0)
    );
    let logs = exporter.logs();
    let about_task = logs
        .lines()
        .find(|line| line.contains("DingTalk call failed") && line.contains(&task.to_string()))
        .unwrap_or_else(|| panic!("no failure line names the task:\n{logs}"));
    assert!(about_task.contains("api=gettoken"), "{about_task}");
    assert!(
        about_task.contains("needed_for=getsendprogress"),
        "{about_task}"
    );
    assert!(
        about_task.contains(&format!("agent_id={AGENT}")),
        "{about_task}"
    );
    assert!(
        !logs.contains("api=getsendprogress errcode="),
        "a token failure blamed on the task API:\n{logs}"
    );
}

/// Right credentials show as `dingtalk_up 1` from the start, without a metered call.
#[tokio::test]
async fn right_credentials_show_up_at_start_without_metered_calls() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    eventually("dingtalk_up 1 with no task tracked", WAIT, || async {
        let up = metric(&exporter, "dingtalk_up", &[("app", "default")]).await?;
        (up == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        metric(&exporter, "dingtalk_api_month_calls", &[]).await,
        Some(0.0)
    );
}

/// A finished task of more than 100 recipients ends with the result outcome
/// `too_many_recipients`, not with a getsendresult error.
#[tokio::test]
async fn large_tasks_end_with_too_many_recipients_not_an_error() {
    let sim = simulator(Behaviour::default()).await;
    let task = sim.add_task(
        AGENT,
        Timeline {
            duration_ms: 500,
            recipients: 150,
            read: 100,
            ..Timeline::default()
        },
    );
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    assert_eq!(register(&exporter, task, "all hands").await, 201);
    eventually("the result outcome", WAIT, || async {
        let answer = task_json(&exporter, task).await?;
        (answer["result"]["outcome"] != "pending").then_some(())
    })
    .await;
    let answer = task_json(&exporter, task).await.unwrap();
    assert_eq!(
        answer["result"]["outcome"], "too_many_recipients",
        "{answer}"
    );
    assert_eq!(answer["state"], "completed");
    let text = get_text(&exporter.url("/metrics")).await.unwrap();
    assert!(
        !text.contains("dingtalk_api_errors_total{api=\"getsendresult\""),
        "{text}"
    );
    assert!(text.contains("dingtalk_api_requests_total{api=\"getsendresult\"} 1"));
    let page = get_text(&exporter.url("/")).await.unwrap();
    assert!(page.contains("up to 100"), "{page}");
}
