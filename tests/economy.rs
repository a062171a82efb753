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

/// A task whose progress has stalled is still asked about at least every
/// `--poll.max-interval`, so a stall (or a late recovery) is seen in time.
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
        // One max interval (1 s), plus slack for a loaded machine.
        assert!(gap < Duration::from_millis(2_500), "no poll for {gap:?}");
        previous = next;
        seen_at = Instant::now();
    }
}
