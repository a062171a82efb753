//! Call economy against the simulator: the monthly budget is a hard ceiling, DingTalk's own
//! quota stops polling, and a stalled task is still watched at least every max interval.

mod common;

use std::time::{Duration, Instant};

use common::{
    ExporterProcess, eventually, exporter_against, get_text, metric, start_simulator, temp_db,
};
use dingtalk_exporter::simulator::{Behaviour, Simulator, Timeline};

const SECRET: &str = "economy-secret";
const APP_KEY: &str = "dingeconomy";
const AGENT: i64 = 77;
const WAIT: Duration = Duration::from_secs(30);

async fn simulator(behaviour: Behaviour) -> Simulator {
    start_simulator(APP_KEY, SECRET, behaviour).await
}

fn exporter(sim: &Simulator, db: &str, extra: &[&str]) -> ExporterProcess {
    let flags = [
        ("--poll.min-interval", "100ms"),
        ("--poll.max-interval", "1s"),
        ("--dingtalk.max-qps", "20"),
    ];
    exporter_against(sim, (APP_KEY, SECRET), db, &flags, extra)
}

async fn register_stalled(sim: &Simulator, exporter: &ExporterProcess, count: usize) -> Vec<i64> {
    let tasks: Vec<i64> = (0..count)
        .map(|_| sim.add_task(AGENT, Timeline::stalled_at(35.0)))
        .collect();
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
    tasks
}

/// Watches `count` for `window` and returns its largest value: for checking that something
/// does not happen, which no condition can signal.
async fn highest_during(window: Duration, count: impl Fn() -> u64) -> u64 {
    let end = Instant::now() + window;
    let mut highest = count();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        highest = highest.max(count());
    }
    highest
}

/// With a small monthly budget and far more demand than it allows, the exporter never makes
/// more metered calls than the budget, and says where it stands on /metrics.
#[tokio::test]
async fn the_monthly_budget_is_never_exceeded() {
    const BUDGET: u64 = 25;
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &["--dingtalk.monthly-call-budget", "25"]);
    register_stalled(&sim, &exporter, 40).await;

    eventually("the budget gauge and the first calls", WAIT, || async {
        let budget = metric(&exporter, "dingtalk_api_month_call_budget", &[]).await?;
        let calls = metric(&exporter, "dingtalk_api_month_calls", &[]).await?;
        (budget == BUDGET as f64 && calls >= 10.0).then_some(())
    })
    .await;
    // Forty never-finishing tasks polled every second would spend the budget within two
    // seconds; watch for five.
    let spent = highest_during(Duration::from_secs(5), || sim.stats().metered_calls).await;
    assert!(
        spent <= BUDGET,
        "{spent} metered calls with a budget of {BUDGET}"
    );
    let counted = metric(&exporter, "dingtalk_api_month_calls", &[])
        .await
        .unwrap();
    assert!(
        counted >= sim.stats().metered_calls as f64,
        "the exporter counts every call it made ({counted} < {})",
        sim.stats().metered_calls
    );
}

/// When DingTalk says the month's quota is used up (90020), the exporter stops calling
/// until the month ends, and keeps serving what it knows.
#[tokio::test]
async fn quota_exhaustion_stops_polling() {
    let sim = simulator(Behaviour {
        monthly_quota: 15,
        ..Behaviour::default()
    })
    .await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    register_stalled(&sim, &exporter, 30).await;

    eventually("the 90020 answer counted", WAIT, || async {
        let errors = metric(
            &exporter,
            "dingtalk_api_errors_total",
            &[("api", "getsendprogress"), ("errcode", "90020")],
        )
        .await?;
        (errors >= 1.0).then_some(())
    })
    .await;
    // Calls already past the gate when the answer came may still arrive; after that, none.
    let settled = highest_during(Duration::from_secs(2), || sim.stats().quota_rejections).await;
    let later = highest_during(Duration::from_secs(3), || sim.stats().quota_rejections).await;
    assert_eq!(
        later, settled,
        "calls went on after DingTalk's quota was used up"
    );
    assert!(
        settled <= 65,
        "{settled} calls refused with 90020: it hammered"
    );
    let tasks = get_text(&exporter.url("/api/v1/tasks")).await;
    assert!(tasks.is_some(), "the task API still answers");
    assert!(
        metric(&exporter, "dingtalk_task_progress_ratio", &[])
            .await
            .is_some()
    );
}

/// A task whose progress has stalled is still asked about at least every two
/// `--poll.max-interval`s until `--poll.stall-after`, so a late recovery is seen in time.
#[tokio::test]
async fn stalled_tasks_are_polled_at_least_every_max_interval() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    let task = register_stalled(&sim, &exporter, 1).await[0];
    let url = exporter.url(&format!("/api/v1/tasks/{AGENT}/{task}"));
    let poll_time = |url: String| async move {
        let answer: serde_json::Value = serde_json::from_str(&get_text(&url).await?).ok()?;
        answer["last_poll_at"].as_str().map(str::to_string)
    };

    // Wait until it has stalled for a while, so the back-off has reached its ceiling.
    eventually("the stall seen", WAIT, || async {
        let answer: serde_json::Value = serde_json::from_str(&get_text(&url).await?).ok()?;
        (answer["progress_ratio"] == 0.35 && answer["metered_calls"].as_u64()? >= 8).then_some(())
    })
    .await;
    let mut previous = poll_time(url.clone()).await.unwrap();
    let mut seen_at = Instant::now();
    for _ in 0..4 {
        let next = eventually("another poll of the stalled task", WAIT, || {
            let url = url.clone();
            let previous = previous.clone();
            async move { poll_time(url).await.filter(|at| *at != previous) }
        })
        .await;
        let gap = seen_at.elapsed();
        // Two max intervals (1 s each) once quiet, plus slack for a loaded machine.
        assert!(gap < Duration::from_millis(3_500), "no poll for {gap:?}");
        previous = next;
        seen_at = Instant::now();
    }
}

/// Once its progress has not changed for `--poll.stall-after`, a task is asked about only
/// every `--poll.stalled-interval`: a stuck task no longer costs a call every max interval.
#[tokio::test]
async fn stalled_tasks_are_polled_at_the_stalled_interval() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(
        &sim,
        &db,
        &["--poll.stall-after=3s", "--poll.stalled-interval=4s"],
    );
    let task = register_stalled(&sim, &exporter, 1).await[0];
    let url = exporter.url(&format!("/api/v1/tasks/{AGENT}/{task}"));
    // Metered calls so far, once a poll has seen the stall at least 3 s old
    // (--poll.stall-after): from then on the stalled interval applies.
    let calls_once_stalled = |url: String| async move {
        let answer: serde_json::Value = serde_json::from_str(&get_text(&url).await?).ok()?;
        let time = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(answer[field].as_str()?)
                .ok()
                .map(|at| at.timestamp_millis())
        };
        let stalled_for = time("last_poll_at")? - time("last_progress_change_at")?;
        (answer["progress_ratio"] == 0.35 && stalled_for >= 3_000)
            .then(|| answer["metered_calls"].as_u64())
            .flatten()
    };
    let before = eventually("the stall seen 3 s old", WAIT, || {
        calls_once_stalled(url.clone())
    })
    .await;
    // The next 8 s: two polls at the stalled interval (4 s), where the max interval (1 s)
    // would make eight.
    let window = Instant::now();
    let after = eventually("8 s of stalled polling", WAIT, || {
        let url = url.clone();
        async move {
            let calls = calls_once_stalled(url).await?;
            (window.elapsed() >= Duration::from_secs(8)).then_some(calls)
        }
    })
    .await;
    let spent = after - before;
    assert!(
        (1..=3).contains(&spent),
        "{spent} calls in 8 s of a stalled task"
    );
}

/// A finished task registered with more than 100 recipients costs no `getsendresult` call
/// (DingTalk would refuse it), and says so in its answer; one with fewer is asked once.
#[tokio::test]
async fn no_result_call_for_tasks_with_more_than_100_recipients() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    let large = sim.add_task(AGENT, Timeline::fast().with_recipients(150));
    let small = sim.add_task(AGENT, Timeline::fast());
    let batch = serde_json::json!([
        {"agent_id": AGENT, "task_id": large, "recipients": 150},
        {"agent_id": AGENT, "task_id": small, "recipients": 10},
    ]);
    let status = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let outcome = |task: i64| {
        let url = exporter.url(&format!("/api/v1/tasks/{AGENT}/{task}"));
        async move {
            let answer: serde_json::Value = serde_json::from_str(&get_text(&url).await?).ok()?;
            let outcome = answer["result"]["outcome"].as_str()?.to_string();
            (outcome != "pending").then_some(outcome)
        }
    };
    let large_outcome = eventually("the large task finished", WAIT, || outcome(large)).await;
    let small_outcome = eventually("the small task's result", WAIT, || outcome(small)).await;
    assert_eq!(large_outcome, "too_many_recipients");
    assert_eq!(small_outcome, "fetched");
    assert_eq!(sim.stats().calls.getsendresult, 1);
}

/// A running task carries the scheduler's expected completion on `/metrics` and in the
/// task API, in the future while it runs; a finished task has none.
#[tokio::test]
async fn running_tasks_expose_their_expected_completion() {
    let sim = simulator(Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    let task = sim.add_task(AGENT, Timeline::slow());
    let batch = serde_json::json!({"agent_id": AGENT, "task_id": task});
    reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    let task_label = task.to_string();
    let agent_label = AGENT.to_string();
    let labels = [
        ("agent_id", agent_label.as_str()),
        ("task_id", task_label.as_str()),
    ];
    let expected = eventually("an expected completion", WAIT, || {
        metric(
            &exporter,
            "dingtalk_task_expected_completion_timestamp_seconds",
            &labels,
        )
    })
    .await;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The slow script takes ten minutes from its start; an estimate from the first whole
    // percents is rough, but of that order.
    assert!(
        expected > now_s && expected < now_s + 1_200.0,
        "expected at {expected}, now {now_s}"
    );
    let answer: serde_json::Value = serde_json::from_str(
        &get_text(&exporter.url(&format!("/api/v1/tasks/{AGENT}/{task}")))
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(answer["expected_completion_at"].is_string(), "{answer}");
}
