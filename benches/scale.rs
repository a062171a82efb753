//! Scale: what `/metrics` costs at 1,000, 10,000 and 100,000 tracked tasks next to Prometheus
//! Pushgateway serving the same exposition, how close polling gets to `--dingtalk.max-qps`
//! when that limit is the bottleneck, and how long start-up takes with the tasks in the store.
//!
//! Everything runs on loopback, in one run, so the ratios compare like with like on the same
//! (possibly busy) machine:
//! - the exporter is the release binary as a child process, started on a SQLite store seeded
//!   directly through [`SqliteStore`] with tasks in realistic states (polled, with progress,
//!   status, errcode, names; a quarter finished with recipient counts). None of them is due
//!   during the measurement, so the exporter is idle but for the scrapes;
//! - Pushgateway is Debian's `prometheus-pushgateway` (looked up in `PATH`), fresh for each
//!   size, holding the exporter's exposition pushed with `PUT /metrics/job/bench` (all of it
//!   but the dozen `process_*` lines, which describe the pushing process);
//! - polling runs the exporter against the simulator (`dingtalk-exporter simulate`, a process
//!   of its own) with thousands of due tasks, the simulator's per-second limit set to the
//!   exporter's `--dingtalk.max-qps`: a call over the limit gets errcode 90018 there, so
//!   "never above the limit" is checked by the party that enforces it, as calls arrive.
//!
//! Latency is the time from sending `GET /metrics` to the last byte of the answer, without
//! compression (neither side is asked for gzip), so Pushgateway is measured at its fastest.
//!
//! `cargo bench --bench scale`; after `--`: `--sizes 1000,10000,100000`, `--qps 10,20`,
//! `--due-tasks 3000`, `--window-secs 30`, `--no-pushgateway`, `--no-polling`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::dingtalk::RecipientCounts;
use dingtalk_exporter::simulator::{DEMO_APP_KEY, DEMO_APP_SECRET, SimConfig, Simulator};
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{
    PollMemory, ResultFetch, SendStatus, Task, TaskKey, TaskState, TaskStore,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The agents the seeded tasks belong to: a few apps send most notifications.
const AGENTS: [i64; 3] = [2_839_445_214, 2_839_445_215, 1_987_654_321];
/// A realistic 12-digit `task_id` to count up from.
const FIRST_TASK_ID: i64 = 256_271_667_526;
/// How much of a seeded task's life is left before its next poll: more than the benchmark
/// takes, so the scrapes are measured on an otherwise idle exporter.
const NOT_DUE_FOR_MS: i64 = 3_600_000;

struct Options {
    sizes: Vec<usize>,
    qps: Vec<u32>,
    due_tasks: usize,
    window: Duration,
    pushgateway: bool,
}

impl Options {
    fn from_args() -> Options {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str| {
            args.iter()
                .position(|arg| arg == name)
                .and_then(|at| args.get(at + 1))
                .cloned()
        };
        let list = |name: &str, default: &str| -> Vec<u64> {
            value(name)
                .unwrap_or_else(|| default.to_string())
                .split(',')
                .map(|item| {
                    item.trim()
                        .parse()
                        .expect("a comma-separated list of numbers")
                })
                .collect()
        };
        Options {
            sizes: list("--sizes", "1000,10000,100000")
                .into_iter()
                .map(|n| n as usize)
                .collect(),
            qps: if args.iter().any(|arg| arg == "--no-polling") {
                Vec::new()
            } else {
                list("--qps", "10,20")
                    .into_iter()
                    .map(|n| n as u32)
                    .collect()
            },
            due_tasks: list("--due-tasks", "3000")[0] as usize,
            window: Duration::from_secs(list("--window-secs", "30")[0]),
            pushgateway: !args.iter().any(|arg| arg == "--no-pushgateway"),
        }
    }
}

fn main() {
    let options = Options::from_args();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(why) = tokio.block_on(run(options)) {
        eprintln!("scale benchmark failed: {why}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|err| format!("temp dir: {err}"))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|err| format!("HTTP client: {err}"))?;
    let pushgateway = if options.pushgateway {
        let found = pushgateway_binary();
        if found.is_none() {
            eprintln!(
                "prometheus-pushgateway is not in PATH (apt-get install prometheus-pushgateway): \
                 measuring the exporter alone"
            );
        }
        found
    } else {
        None
    };

    println!("{}", machine_description());
    println!("Exporter: {}", exporter_binary());
    if let Some(binary) = &pushgateway {
        println!("Pushgateway: {} ({})", binary.display(), version_of(binary));
    }

    // The app of the scrape runs points at a simulator so the `app` label is the usual
    // `default`; no task is due, so it is never called.
    let simulator = Simulator::start(SimConfig::default()).await?;
    let mut sizes = Vec::new();
    for &tasks in &options.sizes {
        eprintln!("-- {tasks} tasks");
        let exporter = exporter_at(tasks, simulator.url(), &client, dir.path()).await?;
        let pushgateway = match &pushgateway {
            Some(binary) => Some(
                pushgateway_at(
                    binary,
                    &push_body(&exporter.exposition),
                    pushgateway_scrapes_at(tasks),
                    &client,
                    dir.path(),
                )
                .await?,
            ),
            None => None,
        };
        sizes.push(SizeResult {
            tasks,
            exporter,
            pushgateway,
        });
    }
    simulator.shutdown().await;

    let mut polling = Vec::new();
    for &max_qps in &options.qps {
        eprintln!("-- polling at --dingtalk.max-qps {max_qps}");
        polling.push(
            polling_at(
                max_qps,
                options.due_tasks,
                options.window,
                &client,
                dir.path(),
            )
            .await?,
        );
    }

    print_report(&sizes, &polling);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The exporter and Pushgateway serving /metrics

/// What one server looked like serving the exposition.
struct Served {
    latency: Latency,
    /// Bytes of one answer to `GET /metrics`.
    bytes: usize,
    /// Sample lines in it.
    series: usize,
    /// Resident memory before the first scrape (after the push, for Pushgateway).
    rss_before_kib: u64,
    /// Resident memory after the scrapes.
    rss_after_kib: u64,
    /// The most resident memory the process ever had.
    rss_peak_kib: u64,
}

struct ExporterRun {
    served: Served,
    /// Process start to `/-/ready` answering 200.
    startup: Duration,
    /// `GET /api/v1/tasks/{agent_id}/{task_id}` while scrapes run.
    api: Latency,
    /// Sample lines of the `dingtalk_task_*` families.
    task_series: usize,
    exposition: String,
}

struct PushgatewayRun {
    served: Served,
    /// The `PUT` of the exposition, until Pushgateway accepted it.
    push: Duration,
}

struct SizeResult {
    tasks: usize,
    exporter: ExporterRun,
    pushgateway: Option<PushgatewayRun>,
}

/// Timed scrapes of the exporter at every size: a tenth of a second each at most.
const EXPORTER_SCRAPES: usize = 41;

/// Timed scrapes of Pushgateway per size: enough for a steady median, few enough that
/// 100,000 tasks (seconds per scrape) stay within a minute or so.
fn pushgateway_scrapes_at(tasks: usize) -> usize {
    (400_000 / tasks.max(1)).clamp(9, EXPORTER_SCRAPES)
}

async fn exporter_at(
    tasks: usize,
    simulator_url: &str,
    client: &reqwest::Client,
    dir: &Path,
) -> Result<ExporterRun, String> {
    let store = dir.join(format!("scrape-{tasks}.db"));
    let seeding = Instant::now();
    seed_store(&store, tasks, now_ms())?;
    eprintln!("   seeded the store in {:.1?}", seeding.elapsed());

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = exporter_command(port, &store, simulator_url);
    command.args(["--tasks.max", &tasks.max(10_000).to_string()]);
    let started = Instant::now();
    let mut exporter = ChildProcess::spawn("exporter", &mut command, &dir.join("exporter.log"))?;
    let startup = wait_until_ok(client, &format!("{base}/-/ready"), &mut exporter).await? - started;
    let rss_before = exporter.memory()?;

    let metrics = format!("{base}/metrics");
    let exposition = scrape(client, &metrics, true).await?.body;
    let exposition =
        String::from_utf8(exposition).map_err(|_| "the exposition is not UTF-8".to_string())?;
    let mut samples = Vec::new();
    for _ in 0..EXPORTER_SCRAPES {
        samples.push(scrape(client, &metrics, false).await?.elapsed);
    }
    let api = task_api_during_scrapes(client, &base, EXPORTER_SCRAPES / 4).await?;
    let rss_after = exporter.memory()?;
    drop(exporter);

    let task_series = sample_lines(&exposition)
        .filter(|line| line.starts_with("dingtalk_task_"))
        .count();
    Ok(ExporterRun {
        served: Served {
            latency: Latency::of(samples),
            bytes: exposition.len(),
            series: sample_lines(&exposition).count(),
            rss_before_kib: rss_before.rss_kib,
            rss_after_kib: rss_after.rss_kib,
            rss_peak_kib: rss_after.peak_kib,
        },
        startup,
        api,
        task_series,
        exposition,
    })
}

/// How fast the task API answers (`GET` of one task) while scrapes run back to back: a
/// scrape must not hold up the tracker, which registrations and polls need as well. The
/// requests come from a thread of their own, so they are not queued behind the scrapes'.
async fn task_api_during_scrapes(
    client: &reqwest::Client,
    base: &str,
    scrapes: usize,
) -> Result<Latency, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{base}/api/v1/tasks/{}/{FIRST_TASK_ID}", AGENTS[0]);
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<Vec<Duration>, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| format!("a tokio runtime: {err}"))?;
            runtime.block_on(async {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .map_err(|err| format!("HTTP client: {err}"))?;
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = client
                        .get(&url)
                        .send()
                        .await
                        .map_err(|err| format!("GET {url}: {err}"))?;
                    if !answer.status().is_success() {
                        return Err(format!("GET {url}: {}", answer.status()));
                    }
                    answer
                        .bytes()
                        .await
                        .map_err(|err| format!("GET {url}: {err}"))?;
                    samples.push(started.elapsed());
                }
                Ok(samples)
            })
        })
    };
    let metrics = format!("{base}/metrics");
    let mut scraped = Ok(());
    for _ in 0..scrapes {
        if let Err(why) = scrape(client, &metrics, false).await {
            scraped = Err(why);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let samples = prober
        .join()
        .map_err(|_| "the task API prober panicked".to_string())??;
    scraped?;
    if samples.is_empty() {
        return Err("the task API never answered during the scrapes".to_string());
    }
    Ok(Latency::of(samples))
}

/// The exporter's exposition as a job would push it: without the `process_*` families,
/// which describe the pushing process (Pushgateway 1.5 accepts them, and serves them mixed
/// into its own families of the same names).
fn push_body(exposition: &str) -> String {
    exposition
        .lines()
        .filter(|line| {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            !name.starts_with("process_")
        })
        .flat_map(|line| [line, "\n"])
        .collect()
}

async fn pushgateway_at(
    binary: &Path,
    body: &str,
    scrapes: usize,
    client: &reqwest::Client,
    dir: &Path,
) -> Result<PushgatewayRun, String> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let persistence = dir.join(format!("pushgateway-{port}.data"));
    let mut command = Command::new(binary);
    command.args([
        "--web.listen-address",
        &format!("127.0.0.1:{port}"),
        "--persistence.file",
        persistence.to_str().ok_or("temp path is not UTF-8")?,
        // Not during the measurement: writing the file would compete with the scrapes.
        "--persistence.interval",
        "1h",
        "--log.level",
        "warn",
    ]);
    let mut pushgateway =
        ChildProcess::spawn("pushgateway", &mut command, &dir.join("pushgateway.log"))?;
    wait_until_ok(client, &format!("{base}/-/ready"), &mut pushgateway).await?;

    let pushing = Instant::now();
    let answer = client
        .put(format!("{base}/metrics/job/bench"))
        .header("Content-Type", "text/plain; version=0.0.4")
        .body(body.to_string())
        .send()
        .await
        .map_err(|err| format!("pushing to Pushgateway: {err}"))?;
    let status = answer.status();
    if !status.is_success() {
        let why = answer.text().await.unwrap_or_default();
        return Err(format!("Pushgateway refused the push ({status}): {why}"));
    }
    let push = pushing.elapsed();
    let rss_before = pushgateway.memory()?;

    let metrics = format!("{base}/metrics");
    let exposition = scrape(client, &metrics, true).await?.body;
    let exposition = String::from_utf8_lossy(&exposition).into_owned();
    let pushed = sample_lines(body).count();
    let served_pushed = sample_lines(&exposition)
        .filter(|line| line.contains("job=\"bench\""))
        .count();
    if served_pushed < pushed {
        return Err(format!(
            "Pushgateway serves {served_pushed} of the {pushed} series pushed"
        ));
    }
    let mut samples = Vec::new();
    for _ in 0..scrapes {
        samples.push(scrape(client, &metrics, false).await?.elapsed);
    }
    let rss_after = pushgateway.memory()?;
    drop(pushgateway);
    Ok(PushgatewayRun {
        served: Served {
            latency: Latency::of(samples),
            bytes: exposition.len(),
            series: sample_lines(&exposition).count(),
            rss_before_kib: rss_before.rss_kib,
            rss_after_kib: rss_after.rss_kib,
            rss_peak_kib: rss_after.peak_kib,
        },
        push,
    })
}

fn sample_lines(exposition: &str) -> impl Iterator<Item = &str> {
    exposition
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

// ---------------------------------------------------------------------------------------
// Seeding the store

/// Writes `tasks` tasks in realistic states into a new store at `path`, in one transaction.
fn seed_store(path: &Path, tasks: usize, now: i64) -> Result<(), String> {
    let store = SqliteStore::open(path).map_err(|err| err.to_string())?;
    let mut rng = StdRng::seed_from_u64(tasks as u64);
    let batch: Vec<Task> = (0..tasks)
        .map(|index| realistic_task(index, &mut rng, now))
        .collect();
    let created = store.insert_new(&batch).map_err(|err| err.to_string())?;
    if created.iter().any(|new| !new) {
        return Err("the seeded task ids are not unique".to_string());
    }
    Ok(())
}

/// Names as people give them: a subject, a period, a batch; some in Chinese.
fn task_name(index: usize, rng: &mut StdRng) -> String {
    const SUBJECTS: [&str; 8] = [
        "payroll notice",
        "holiday schedule",
        "security training reminder",
        "expense policy update",
        "all-hands invitation",
        "五月工资条通知",
        "年度体检安排",
        "IT maintenance window",
    ];
    let subject = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
    let month = rng.random_range(1..=12);
    format!("{subject} 2025-{month:02} batch {}", index % 97 + 1)
}

/// One task as the scheduler would have left it: 60% delivering, 5% not started yet, 5%
/// delivering but throttled on the last poll, 25% finished with recipient counts (within
/// their retention), 5% unknown to DingTalk. Every active one is polled, none is due.
fn realistic_task(index: usize, rng: &mut StdRng, now: i64) -> Task {
    let key = TaskKey {
        agent_id: AGENTS[index % AGENTS.len()],
        task_id: FIRST_TASK_ID + 7 * index as i64,
    };
    let created = now - rng.random_range(600_000..20 * 3_600_000);
    let mut task = Task::registered(key, task_name(index, rng), created);
    let polled = now - rng.random_range(0..300_000);
    task.metered_calls = rng.random_range(3..120);
    task.last_poll_at_ms = Some(polled);
    task.last_errcode = Some(0);
    task.next_poll_at_ms = Some(now + NOT_DUE_FOR_MS + rng.random_range(0..NOT_DUE_FOR_MS));
    let started = created + rng.random_range(0..600_000);
    task.poll_memory = PollMemory {
        anchor_ms: Some(started),
        anchor_ratio: 0.0,
        anchored_running: true,
        result_attempts: 0,
        last_interval_ms: rng.random_range(5_000..300_000),
        started_at_ms: Some(started),
        first_poll_placed: true,
    };

    let kind: f64 = rng.random();
    if kind < 0.65 {
        let not_started = kind >= 0.60;
        let ratio = if not_started {
            0.0
        } else {
            f64::from(rng.random_range(1..100u32)) / 100.0
        };
        task.status = Some(if not_started {
            SendStatus::NotStarted
        } else {
            SendStatus::InProgress
        });
        task.progress_ratio = Some(ratio);
        if !not_started {
            task.last_progress_change_at_ms = polled - rng.random_range(0..120_000);
        }
    } else if kind < 0.70 {
        task.status = Some(SendStatus::InProgress);
        task.progress_ratio = Some(f64::from(rng.random_range(1..100u32)) / 100.0);
        task.last_progress_change_at_ms = polled - rng.random_range(0..120_000);
        task.last_errcode = Some(90018);
    } else if kind < 0.95 {
        let recipients: u64 = rng.random_range(1..=100);
        let read = rng.random_range(0..=recipients);
        let failed = rng.random_range(0..=(recipients - read) / 10);
        task.state = TaskState::Completed;
        task.status = Some(SendStatus::Completed);
        task.progress_ratio = Some(1.0);
        task.last_progress_change_at_ms = polled;
        task.ended_at_ms = Some(polled);
        task.next_poll_at_ms = None;
        task.recipients = Some(RecipientCounts {
            read,
            unread: recipients - read - failed,
            failed,
            forbidden: 0,
            invalid: 0,
        });
        task.result_fetch = ResultFetch::Fetched;
        task.metered_calls += 1;
    } else {
        task.state = TaskState::Invalid;
        task.last_poll_at_ms = None;
        task.last_errcode = Some(40035);
        task.ended_at_ms = Some(polled);
        task.next_poll_at_ms = None;
        task.metered_calls = 1;
        task.poll_memory = PollMemory::default();
    }
    task
}

// ---------------------------------------------------------------------------------------
// Polling when --dingtalk.max-qps is the bottleneck

struct Polling {
    max_qps: u32,
    due_tasks: usize,
    window: Duration,
    /// `getsendprogress` calls the simulator accepted during the window.
    calls: u64,
    /// Calls it answered with 90018 (over the limit), from the first call to the end of
    /// the window.
    rejections: u64,
    cpu: Duration,
}

impl Polling {
    fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }
}

async fn polling_at(
    max_qps: u32,
    due_tasks: usize,
    window: Duration,
    client: &reqwest::Client,
    dir: &Path,
) -> Result<Polling, String> {
    // The simulator runs as a process of its own, like DingTalk: how promptly it sees the
    // calls arrive must not depend on the benchmark's own thread being scheduled.
    let simulator_port = free_port()?;
    let simulator_url = format!("http://127.0.0.1:{simulator_port}");
    let mut simulator = ChildProcess::spawn(
        "simulator",
        Command::new(exporter_binary()).args([
            "simulate",
            "--listen-address",
            &format!("127.0.0.1:{simulator_port}"),
            "--qps-limit",
            &max_qps.to_string(),
            "--seed",
            "1",
        ]),
        &dir.join("simulator.log"),
    )?;
    wait_until_ok(
        client,
        &format!("{simulator_url}/_sim/stats"),
        &mut simulator,
    )
    .await?;

    // Long deliveries: every task stays in progress, and due again after each poll.
    let spec =
        serde_json::json!({"agent_id": AGENTS[0], "timeline": {"duration_ms": 12 * 3_600_000}});
    let mut registrations = Vec::with_capacity(due_tasks);
    while registrations.len() < due_tasks {
        let batch = vec![spec.clone(); (due_tasks - registrations.len()).min(500)];
        let answer = client
            .post(format!("{simulator_url}/_sim/tasks"))
            .json(&batch)
            .send()
            .await
            .map_err(|err| format!("adding simulated tasks: {err}"))?;
        if !answer.status().is_success() {
            return Err(format!("adding simulated tasks: {}", answer.status()));
        }
        let added: Vec<serde_json::Value> = answer
            .json()
            .await
            .map_err(|err| format!("adding simulated tasks: {err}"))?;
        for task in added {
            let index = registrations.len();
            registrations.push(serde_json::json!({
                "agent_id": task["agent_id"],
                "task_id": task["task_id"],
                "name": format!("bulk notice {index}"),
            }));
        }
    }

    let store = dir.join(format!("polling-{max_qps}.db"));
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = exporter_command(port, &store, &simulator_url);
    command.args(["--dingtalk.max-qps", &max_qps.to_string()]);
    let mut exporter = ChildProcess::spawn("exporter", &mut command, &dir.join("polling.log"))?;
    wait_until_ok(client, &format!("{base}/-/ready"), &mut exporter).await?;
    let answer = client
        .post(format!("{base}/api/v1/tasks"))
        .json(&registrations)
        .send()
        .await
        .map_err(|err| format!("registering the tasks: {err}"))?;
    if !answer.status().is_success() {
        return Err(format!("registering the tasks: {}", answer.status()));
    }

    // Warm-up: the token is fetched and the limiter is in its steady state.
    let deadline = Instant::now() + Duration::from_secs(30);
    while simulator_calls(client, &simulator_url).await?.accepted < 2 * u64::from(max_qps) {
        if Instant::now() > deadline {
            return Err("the exporter did not start polling within 30 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = simulator_calls(client, &simulator_url).await?;
    let cpu_before = exporter.cpu_time()?;
    let opened = Instant::now();
    // The measurement window itself: the exporter polls on its own meanwhile.
    tokio::time::sleep(window).await;
    let after = simulator_calls(client, &simulator_url).await?;
    let cpu_after = exporter.cpu_time()?;
    let window = opened.elapsed();
    drop(exporter);
    drop(simulator);
    Ok(Polling {
        max_qps,
        due_tasks,
        window,
        calls: after.accepted - before.accepted,
        rejections: after.rejected,
        cpu: cpu_after.saturating_sub(cpu_before),
    })
}

/// The simulator's count of `getsendprogress` calls.
struct SimulatorCalls {
    /// Answered normally.
    accepted: u64,
    /// Answered 90018: over the QPS limit.
    rejected: u64,
}

async fn simulator_calls(
    client: &reqwest::Client,
    simulator_url: &str,
) -> Result<SimulatorCalls, String> {
    let stats: serde_json::Value = client
        .get(format!("{simulator_url}/_sim/stats"))
        .send()
        .await
        .and_then(|answer| answer.error_for_status())
        .map_err(|err| format!("simulator stats: {err}"))?
        .json()
        .await
        .map_err(|err| format!("simulator stats: {err}"))?;
    let count = |value: &serde_json::Value| {
        value
            .as_u64()
            .ok_or_else(|| format!("simulator stats without a count: {stats}"))
    };
    let calls = count(&stats["calls"]["getsendprogress"])?;
    let rejected = count(&stats["qps_rejections"])?;
    Ok(SimulatorCalls {
        accepted: calls - rejected,
        rejected,
    })
}

// ---------------------------------------------------------------------------------------
// Processes, HTTP and statistics

fn exporter_binary() -> &'static str {
    env!("CARGO_BIN_EXE_dingtalk-exporter")
}

/// The exporter on `port` with one app, the simulator's demo app.
fn exporter_command(port: u16, store: &Path, api_url: &str) -> Command {
    let mut command = Command::new(exporter_binary());
    // Settings of the environment running the benchmark must not leak into it.
    for (name, _) in std::env::vars() {
        if name.starts_with("DINGTALK_") {
            command.env_remove(name);
        }
    }
    command
        .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
        .args(["--storage.path", store.to_str().expect("UTF-8 temp path")])
        .args(["--dingtalk.api-url", api_url])
        .args(["--dingtalk.app-key", DEMO_APP_KEY])
        .env("DINGTALK_APP_SECRET", DEMO_APP_SECRET)
        .args(["--log.level", "warn"]);
    command
}

fn pushgateway_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("prometheus-pushgateway"), dir.join("pushgateway")])
        .find(|candidate| candidate.is_file())
}

fn version_of(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            text.lines().next().map(str::to_string)
        })
        .unwrap_or_else(|| "version unknown".to_string())
}

/// A port that was free a moment ago on loopback, for a child process to listen on.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|err| format!("cannot find a free port: {err}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|err| format!("cannot find a free port: {err}"))
}

struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

/// A child process of the benchmark, killed when it goes out of scope.
struct ChildProcess {
    name: &'static str,
    child: Child,
}

impl ChildProcess {
    fn spawn(
        name: &'static str,
        command: &mut Command,
        log: &Path,
    ) -> Result<ChildProcess, String> {
        let log = std::fs::File::create(log).map_err(|err| format!("{name} log: {err}"))?;
        let errors = log
            .try_clone()
            .map_err(|err| format!("{name} log: {err}"))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .map_err(|err| format!("cannot start {name}: {err}"))?;
        Ok(ChildProcess { name, child })
    }

    fn proc_file(&self, file: &str) -> Result<String, String> {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id()))
            .map_err(|err| format!("reading /proc of {}: {err}", self.name))
    }

    fn memory(&self) -> Result<Memory, String> {
        let status = self.proc_file("status")?;
        let field = |name: &str| -> Result<u64, String> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| format!("no {name} in /proc status of {}", self.name))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// User plus system CPU time of the whole process, exited threads included.
    fn cpu_time(&self) -> Result<Duration, String> {
        let stat = self.proc_file("stat")?;
        // The command name may hold spaces; the fields after it are plain numbers.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // Fields 14 and 15 of proc(5), counted from the state, field 3.
        let ticks = |at: usize| -> Result<u64, String> {
            fields
                .get(at)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("malformed /proc stat of {}", self.name))
        };
        let total = ticks(11)? + ticks(12)?;
        Ok(Duration::from_secs_f64(
            total as f64 / clock_ticks_per_second(),
        ))
    }

    fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}; see its log", self.name)),
            Err(err) => Err(format!("{}: {err}", self.name)),
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `USER_HZ`, the unit of the CPU times in `/proc`.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Polls `url` until it answers 200 and returns when it did; fails if the process exits
/// or a minute passes.
async fn wait_until_ok(
    client: &reqwest::Client,
    url: &str,
    process: &mut ChildProcess,
) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(answer) = client.get(url).send().await
            && answer.status().is_success()
        {
            return Ok(Instant::now());
        }
        process.check_running()?;
        if Instant::now() > deadline {
            return Err(format!("{url} did not answer 200 within a minute"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Scrape {
    elapsed: Duration,
    body: Vec<u8>,
}

/// One `GET`, timed from sending the request to the last byte of the body. The body is kept
/// only when asked, so the other scrapes measure the servers rather than the copying.
async fn scrape(client: &reqwest::Client, url: &str, keep: bool) -> Result<Scrape, String> {
    let started = Instant::now();
    let mut answer = client
        .get(url)
        .header("Accept", "text/plain; version=0.0.4")
        .send()
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    if !answer.status().is_success() {
        return Err(format!("GET {url}: {}", answer.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|err| format!("GET {url}: {err}"))?
    {
        if keep {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(Scrape {
        elapsed: started.elapsed(),
        body,
    })
}

struct Latency {
    median: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
    samples: usize,
}

impl Latency {
    /// Nearest-rank percentiles.
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort();
        let rank = |p: f64| {
            samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Latency {
            median: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
            samples: samples.len(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The report

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or("unknown".to_string(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1_048_576.0)
        });
    format!("Machine: {cores} cores ({cpu}), {memory} RAM")
}

fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn megabytes(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} kB", bytes as f64 / 1e3)
    }
}

fn print_report(sizes: &[SizeResult], polling: &[Polling]) {
    println!();
    println!("### /metrics: exporter");
    println!();
    println!(
        "| tasks | series | bytes | median | p90 | scrapes | RSS before scrapes | RSS after | peak RSS | start-up | task API during scrapes: median / p99 / max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let e = &size.exporter;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            size.tasks,
            e.served.series,
            megabytes(e.served.bytes),
            ms(e.served.latency.median),
            ms(e.served.latency.p90),
            e.served.latency.samples,
            mib(e.served.rss_before_kib),
            mib(e.served.rss_after_kib),
            mib(e.served.rss_peak_kib),
            ms(e.startup),
            ms(e.api.median),
            ms(e.api.p99),
            ms(e.api.max),
        );
    }

    if sizes.iter().any(|size| size.pushgateway.is_some()) {
        println!();
        println!("### /metrics: Pushgateway with the same exposition");
        println!();
        println!(
            "| tasks | series | bytes | push | median | p90 | RSS after push | RSS after scrapes | peak RSS |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for size in sizes {
            let Some(p) = &size.pushgateway else { continue };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                size.tasks,
                p.served.series,
                megabytes(p.served.bytes),
                ms(p.push),
                ms(p.served.latency.median),
                ms(p.served.latency.p90),
                mib(p.served.rss_before_kib),
                mib(p.served.rss_after_kib),
                mib(p.served.rss_peak_kib),
            );
        }
        println!();
        println!("### Ratios exporter / Pushgateway (target at 10,000 tasks: at most 0.5)");
        println!();
        println!("| tasks | median latency | p90 latency | RSS after scrapes | peak RSS |");
        println!("|---:|---:|---:|---:|---:|");
        for size in sizes {
            let Some(p) = &size.pushgateway else { continue };
            let e = &size.exporter.served;
            let ratio = |a: f64, b: f64| format!("{:.3}", a / b);
            println!(
                "| {} | {} | {} | {} | {} |",
                size.tasks,
                ratio(
                    e.latency.median.as_secs_f64(),
                    p.served.latency.median.as_secs_f64()
                ),
                ratio(
                    e.latency.p90.as_secs_f64(),
                    p.served.latency.p90.as_secs_f64()
                ),
                ratio(e.rss_after_kib as f64, p.served.rss_after_kib as f64),
                ratio(e.rss_peak_kib as f64, p.served.rss_peak_kib as f64),
            );
        }
    }

    println!();
    println!("### Growth (target from 10,000 to 100,000 tasks: at most 10x)");
    println!();
    println!("| tasks | x tasks | x median latency | x RSS after scrapes | x bytes | x start-up |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for pair in sizes.windows(2) {
        let (small, large) = (&pair[0].exporter, &pair[1].exporter);
        let times = |a: f64, b: f64| format!("{:.2}", b / a);
        println!(
            "| {} → {} | {} | {} | {} | {} | {} |",
            pair[0].tasks,
            pair[1].tasks,
            times(pair[0].tasks as f64, pair[1].tasks as f64),
            times(
                small.served.latency.median.as_secs_f64(),
                large.served.latency.median.as_secs_f64()
            ),
            times(
                small.served.rss_after_kib as f64,
                large.served.rss_after_kib as f64
            ),
            times(small.served.bytes as f64, large.served.bytes as f64),
            times(small.startup.as_secs_f64(), large.startup.as_secs_f64()),
        );
    }

    println!();
    println!("### Per task (from the smallest to the largest size)");
    println!();
    if let (Some(first), Some(last)) = (sizes.first(), sizes.last())
        && last.tasks > first.tasks
    {
        let tasks = (last.tasks - first.tasks) as f64;
        let per_task = |a: f64, b: f64| (b - a) / tasks;
        let (a, b) = (&first.exporter, &last.exporter);
        println!(
            "- memory: {:.0} bytes per task at rest, {:.0} bytes after scrapes",
            per_task(
                a.served.rss_before_kib as f64,
                b.served.rss_before_kib as f64
            ) * 1024.0,
            per_task(a.served.rss_after_kib as f64, b.served.rss_after_kib as f64) * 1024.0,
        );
        println!(
            "- exposition: {:.2} task series and {:.0} bytes per task",
            b.task_series as f64 / last.tasks as f64,
            per_task(a.served.bytes as f64, b.served.bytes as f64),
        );
        for size in sizes {
            println!(
                "- scrape time at {} tasks: {:.2} µs per task (median)",
                size.tasks,
                size.exporter.served.latency.median.as_secs_f64() * 1e6 / size.tasks as f64,
            );
        }
        println!(
            "- scrape time: {:.2} µs per additional task (median)",
            per_task(
                a.served.latency.median.as_secs_f64(),
                b.served.latency.median.as_secs_f64()
            ) * 1e6,
        );
    }

    println!();
    println!(
        "### Polling with the QPS limit as the bottleneck (target: ≥ 95% of the limit, never above)"
    );
    println!();
    println!(
        "| --dingtalk.max-qps | due tasks | window | calls accepted | calls/s | of the limit | 90018 answers | CPU per poll |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in polling {
        println!(
            "| {} | {} | {:.1} s | {} | {:.2} | {:.1}% | {} | {:.2} ms |",
            run.max_qps,
            run.due_tasks,
            run.window.as_secs_f64(),
            run.calls,
            run.calls_per_second(),
            100.0 * run.calls_per_second() / f64::from(run.max_qps),
            run.rejections,
            run.cpu.as_secs_f64() * 1000.0 / run.calls.max(1) as f64,
        );
    }
}
