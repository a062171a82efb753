//! The fault soak: the real binary polls a few dozen tasks while the simulator breaks 30% of
//! its requests in every way it knows and keeps expiring the access tokens, and a scraper
//! reads `/metrics` all along. Then the faults stop and every task must show what DingTalk
//! says about it.
//!
//! Each phase ends on a condition, never after a fixed time: the faults last until every
//! kind was injected, the scraper saw DingTalk down and every simulated task reached its
//! final state. The soak takes 15 to 25 s.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    eventually, exporter_against, get_text, metric, sample, start_simulator, task_json, temp_db,
};
use dingtalk_exporter::simulator::{
    Behaviour, FaultConfig, FaultKind, Simulator, TaskView, Timeline,
};
use serde_json::Value;

const SECRET: &str = "soak-secret-4b1d";
const APP_KEY: &str = "dingsoakapp";
const AGENT: i64 = 2_839_445_214;

/// `--poll.max-interval`: the longest gap between two polls of a running task.
const MAX_INTERVAL: Duration = Duration::from_secs(2);
/// `--dingtalk.max-qps`: DingTalk's own limit (the simulator enforces 20), so the polls due
/// when the faults stop queue for as short a time as DingTalk allows.
const MAX_QPS: u32 = 20;
/// How long the simulator holds a `slow` answer: twice `--dingtalk.timeout` (500ms).
const SLOW_DELAY_MS: u64 = 1_000;
/// The share of requests that get a fault, the kind drawn uniformly from all of them.
const FAULT_PROBABILITY: f64 = 0.3;
/// How often the simulator expires every access token while the faults last.
const TOKEN_EXPIRY_EVERY: Duration = Duration::from_secs(1);
/// The storm lasts until each kind was injected this often.
const FAULTS_OF_EACH_KIND: u64 = 2;
/// The faults must have shown every kind, and DingTalk down on `/metrics`, within this.
const FAULT_PHASE_LIMIT: Duration = Duration::from_secs(40);

/// Where each fault kind is counted in `dingtalk_api_errors_total{errcode}`.
fn bucket(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Html502 => "http",
        FaultKind::Punish | FaultKind::PunishHtml => "ip_banned",
        FaultKind::Busy => "-1",
        FaultKind::Truncated => "decode",
        // A slow answer outlasts --dingtalk.timeout, so the client gives up on it.
        FaultKind::Slow | FaultKind::Drop => "transport",
    }
}

/// Buckets no other event of this soak lands in, so the exporter's count must equal the
/// simulator's exactly. Transport failures could also come from the loaded machine itself,
/// so that bucket must hold at least the injected ones.
const EXCLUSIVE_BUCKETS: [&str; 4] = ["http", "ip_banned", "-1", "decode"];

/// The tasks of the soak: each reaches a final state on the simulator's side within a few
/// seconds (finished, stalled or never started), so "converged" has one right answer.
fn scripted_tasks() -> Vec<Timeline> {
    let finishing = (0..10u32).map(|index| Timeline {
        duration_ms: 500 + i64::from(index) * 300,
        seed: u64::from(index),
        ..Timeline::default()
    });
    let stalling = (0..9u32).map(|index| Timeline {
        duration_ms: 3_000,
        stall_at_percent: Some(f64::from(5 + index * 10)),
        ..Timeline::default()
    });
    let never_starting = (0..5).map(|_| Timeline::never_starting());
    finishing.chain(stalling).chain(never_starting).collect()
}

/// Task ids the simulator does not know: DingTalk answers 40035 and they turn invalid.
const UNKNOWN_TASKS: [i64; 2] = [7_001, 7_002];

/// Whether a simulated task has reached the state it keeps forever.
fn settled(task: &TaskView) -> bool {
    let timeline = &task.timeline;
    task.status == 2
        || timeline.start_delay_ms == i64::MAX
        || timeline.stall_at_percent == Some(task.progress_in_percent)
}

fn status_label(status: i64) -> &'static str {
    match status {
        0 => "not_started",
        1 => "in_progress",
        _ => "completed",
    }
}

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sum_samples(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name
                && labels
                    .iter()
                    .all(|(label, value)| label_text.contains(&format!("{label}=\"{value}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// What the scrapers saw.
#[derive(Default)]
struct ScrapeLog {
    scrapes: AtomicU64,
    /// Every scrape that did not answer 200, and why.
    failures: Mutex<Vec<String>>,
    saw_down: AtomicBool,
    /// `dingtalk_up` read 1 after it had read 0.
    saw_recovery: AtomicBool,
}

/// Scrapes `/metrics` every 25 ms until `stop`, noting every answer that is not a 200 and
/// every change of `dingtalk_up`.
async fn scrape_continuously(url: String, log: Arc<ScrapeLog>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut ticks = tokio::time::interval(Duration::from_millis(25));
    while !stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        log.scrapes.fetch_add(1, Ordering::SeqCst);
        let answer = match client.get(&url).send().await {
            Ok(answer) => answer,
            Err(err) => {
                log.failures
                    .lock()
                    .unwrap()
                    .push(format!("no answer: {err}"));
                continue;
            }
        };
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        if status != 200 {
            log.failures
                .lock()
                .unwrap()
                .push(format!("status {status}"));
            continue;
        }
        match sample(&text, "dingtalk_up", &[("app", "default")]) {
            Some(0.0) => log.saw_down.store(true, Ordering::SeqCst),
            Some(1.0) if log.saw_down.load(Ordering::SeqCst) => {
                log.saw_recovery.store(true, Ordering::SeqCst)
            }
            _ => {}
        }
    }
}

/// Expires every access token each [`TOKEN_EXPIRY_EVERY`] until `stop`.
async fn expire_tokens_continuously(sim: Arc<Simulator>, stop: Arc<AtomicBool>) {
    let mut ticks = tokio::time::interval(TOKEN_EXPIRY_EVERY);
    ticks.tick().await;
    while !stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        sim.expire_tokens();
    }
}

/// Where the exporter's view of a task differs from the simulator's, if it does.
fn mismatch(exposition: &str, truth: &TaskView) -> Option<String> {
    let task_id = truth.task_id.to_string();
    let task = ("task_id", task_id.as_str());
    let ratio = sample(exposition, "dingtalk_task_progress_ratio", &[task]);
    let expected_ratio = truth.progress_in_percent / 100.0;
    let status = status_label(truth.status);
    let current = sample(
        exposition,
        "dingtalk_task_status",
        &[task, ("status", status)],
    );
    (ratio != Some(expected_ratio) || current != Some(1.0)).then(|| {
        format!(
            "task {task_id}: exporter ratio {ratio:?}, status {status} = {current:?}; simulator {}% status {}",
            truth.progress_in_percent, truth.status
        )
    })
}

/// Under a 30% mix of every fault kind and forced token expiry, every scrape answers 200, the
/// process never panics, each fault is counted in its errcode bucket, `dingtalk_up` drops and
/// recovers, and once the faults stop every task shows DingTalk's truth within one max
/// interval (plus the IP-ban pause and the QPS queue, see below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_tells_the_truth_through_a_fault_storm() {
    let sim = Arc::new(start_simulator(APP_KEY, SECRET, Behaviour::default()).await);
    let task_ids: Vec<i64> = scripted_tasks()
        .into_iter()
        .map(|timeline| sim.add_task(AGENT, timeline))
        .collect();
    sim.set_faults(FaultConfig {
        probability: FAULT_PROBABILITY,
        kinds: FaultKind::ALL.to_vec(),
        slow_delay_ms: SLOW_DELAY_MS,
        limit: None,
    })
    .unwrap();

    let (_dir, db) = temp_db();
    let max_interval = format!("{}ms", MAX_INTERVAL.as_millis());
    let max_qps = MAX_QPS.to_string();
    let mut exporter = exporter_against(
        &sim,
        (APP_KEY, SECRET),
        &db,
        &[
            ("--poll.min-interval", "100ms"),
            ("--poll.max-interval", &max_interval),
            ("--dingtalk.timeout", "500ms"),
            ("--dingtalk.max-qps", &max_qps),
        ],
        &[],
    );
    let batch: Vec<Value> = task_ids
        .iter()
        .chain(&UNKNOWN_TASKS)
        .map(|task_id| serde_json::json!({"agent_id": AGENT, "task_id": task_id}))
        .collect();
    let registered = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&batch)
        .send()
        .await
        .expect("the exporter answers");
    assert_eq!(registered.status(), 201);

    let scrapes = Arc::new(ScrapeLog::default());
    let stop_scraping = Arc::new(AtomicBool::new(false));
    let scraper = tokio::spawn(scrape_continuously(
        exporter.url("/metrics"),
        scrapes.clone(),
        stop_scraping.clone(),
    ));
    let stop_expiring = Arc::new(AtomicBool::new(false));
    let expirer = tokio::spawn(expire_tokens_continuously(
        sim.clone(),
        stop_expiring.clone(),
    ));

    // The storm lasts until it has shown everything it is here to show.
    let storm_started = Instant::now();
    eventually(
        "every fault kind injected, DingTalk seen down, a stale token refused and every simulated task settled",
        FAULT_PHASE_LIMIT,
        || async {
            let stats = sim.stats();
            let done = FaultKind::ALL
                .iter()
                .all(|&kind| stats.faults.of(kind) >= FAULTS_OF_EACH_KIND)
                && scrapes.saw_down.load(Ordering::SeqCst)
                && stats.token_rejections >= 1
                && sim.tasks().iter().all(settled);
            done.then_some(())
        },
    )
    .await;
    sim.set_faults(FaultConfig::off()).unwrap();
    stop_expiring.store(true, Ordering::SeqCst);
    let calm_since = Instant::now();
    let storm = calm_since - storm_started;
    expirer.await.unwrap();

    // Once the faults stop, a task is polled again within one max interval. Before that,
    // an IP ban begun just before the calm may hold every call back for up to the ban cap
    // (which is the max interval), and the polls then due queue behind the QPS limit, each
    // possibly spending a second call on a token that expired while it queued; one more
    // second covers the retries' backoff and scheduling on a busy machine.
    let tracked = (task_ids.len() + UNKNOWN_TASKS.len()) as u64;
    let convergence_limit = MAX_INTERVAL * 2
        + Duration::from_millis(2 * 1_000 * tracked / u64::from(MAX_QPS))
        + Duration::from_secs(1);
    let truth = sim.tasks();
    eventually(
        "every task on /metrics to match the simulator",
        convergence_limit,
        || async {
            let text = get_text(&exporter.url("/metrics")).await?;
            truth
                .iter()
                .all(|task| mismatch(&text, task).is_none())
                .then_some(())
        },
    )
    .await;
    let converged_after = calm_since.elapsed();
    for task_id in UNKNOWN_TASKS {
        let answer = task_json(&exporter, AGENT, task_id)
            .await
            .expect("the unknown task is still tracked");
        assert_eq!(answer["state"], "invalid", "{answer}");
        assert_eq!(answer["last_errcode"], 40035, "{answer}");
    }

    // Every fault the simulator injected is counted in its bucket: once a faulted request's
    // timeout has run out, the counts add up.
    let injected = sim.stats().faults;
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for kind in FaultKind::ALL {
        *expected.entry(bucket(kind)).or_default() += injected.of(kind);
    }
    let counted = eventually(
        "the error counters to account for every injected fault",
        Duration::from_secs(10),
        || async {
            let text = get_text(&exporter.url("/metrics")).await?;
            let counted: BTreeMap<&str, u64> = expected
                .keys()
                .map(|&bucket| {
                    let total =
                        sum_samples(&text, "dingtalk_api_errors_total", &[("errcode", bucket)]);
                    (bucket, total as u64)
                })
                .collect();
            let adds_up = expected.iter().all(|(bucket, &injected)| {
                if EXCLUSIVE_BUCKETS.contains(bucket) {
                    counted[bucket] == injected
                } else {
                    counted[bucket] >= injected
                }
            });
            adds_up.then_some(counted)
        },
    )
    .await;

    eventually("dingtalk_up back at 1", Duration::from_secs(10), || async {
        scrapes.saw_recovery.load(Ordering::SeqCst).then_some(())
    })
    .await;
    stop_scraping.store(true, Ordering::SeqCst);
    scraper.await.unwrap();

    let failures = scrapes.failures.lock().unwrap().clone();
    let scraped = scrapes.scrapes.load(Ordering::SeqCst);
    assert!(failures.is_empty(), "scrapes failed: {failures:?}");
    assert!(scraped >= 40, "only {scraped} scrapes");
    assert!(
        exporter.child.try_wait().unwrap().is_none(),
        "the exporter exited:\n{}",
        exporter.logs()
    );
    let logs = exporter.logs();
    assert!(!logs.contains("panicked"), "a panic:\n{logs}");
    assert!(
        !logs.contains("failed unexpectedly"),
        "a poll died:\n{logs}"
    );
    let refreshes = metric(&exporter, "dingtalk_token_refreshes_total", &[])
        .await
        .unwrap_or(0.0);
    assert!(refreshes >= 2.0, "{refreshes} token refreshes");

    eprintln!(
        "fault soak: storm {storm:.1?}, converged {converged_after:.1?} after the calm (limit {convergence_limit:.1?}), {scraped} scrapes, injected {injected:?}, counted {counted:?}, {} stale tokens refused",
        sim.stats().token_rejections
    );
}
