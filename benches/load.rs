//! Load: the release binary tracking 10,000 tasks while 50 clients hammer it over loopback
//! for 20 seconds: scrapers reading `/metrics` back to back, and registration clients each
//! registering a new task and deleting it again (so the tracked count stays at 10,000 and
//! every request is a real commit). Reports errors, scrape and registration latency, and the
//! exporter's peak memory and CPU time; as a peer from the same run, the latency of a lone
//! scraper before the load starts.
//!
//! The exporter polls an in-process simulator that holds every task, with the default
//! polling settings (`--dingtalk.max-qps 10`): polling goes on during the run, it is not what
//! is measured. `--tasks.max` is raised by the number of registration clients, so that each
//! has room for its one short-lived task.
//!
//! Scrapers ask for gzip, as Prometheus does (`--gzip 0`: plain).
//!
//! `cargo bench --bench load` (add `-- --tasks N --scrapers S --registrars R --seconds T --gzip 0|1`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{exporter_against, start_simulator, temp_db};
use dingtalk_exporter::simulator::{Behaviour, TaskSpec, Timeline};
use serde_json::{Value, json};

const APP_KEY: &str = "dingloadapp";
const SECRET: &str = "load-secret-77c1";
const AGENT: i64 = 2_839_445_214;
/// Agent of the registration clients' short-lived tasks (unknown to the simulator).
const CHURN_AGENT: i64 = 4_242;
const REGISTRATION_BATCH: usize = 500;
const SOLO_SCRAPES: usize = 20;

fn argument(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// Latencies of one kind of request, and its failures.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors.extend(other.errors);
    }

    fn percentile(&mut self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let rank = ((self.latencies.len() as f64 * fraction).ceil() as usize).max(1);
        self.latencies[rank.min(self.latencies.len()) - 1]
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// One field of `/proc/PID/status`, in kB.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of a process so far (`/proc/PID/stat`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12] // utime and stime, counted from the state field
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on every Linux platform Rust supports.
    Duration::from_millis(ticks * 10)
}

/// One scrape; its bytes as sent (gzipped when `gzip`, as Prometheus asks).
async fn scrape(client: &reqwest::Client, url: &str, gzip: bool) -> Result<usize, String> {
    let mut request = client.get(url);
    if gzip {
        request = request.header("Accept-Encoding", "gzip");
    }
    let answer = request.send().await.map_err(|err| err.to_string())?;
    let status = answer.status();
    let body = answer.bytes().await.map_err(|err| err.to_string())?;
    if status != 200 {
        return Err(format!("scrape answered {status}"));
    }
    Ok(body.len())
}

async fn scrape_until(
    client: reqwest::Client,
    url: String,
    gzip: bool,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match scrape(&client, &url, gzip).await {
            Ok(_) => tally.latencies.push(started.elapsed()),
            Err(err) => tally.errors.push(err),
        }
    }
    tally
}

/// Registers a new task, deletes it, and again, until `stop`. Returns the registrations'
/// and the deletions' tallies.
async fn churn_until(
    client: reqwest::Client,
    base: String,
    registrar: u64,
    stop: Arc<AtomicBool>,
) -> (Tally, Tally) {
    let mut registrations = Tally::default();
    let mut deletions = Tally::default();
    for sequence in 1i64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let task_id = registrar as i64 * 100_000_000 + sequence;
        let started = Instant::now();
        let answer = client
            .post(format!("{base}/api/v1/tasks"))
            .json(&json!({"agent_id": CHURN_AGENT, "task_id": task_id, "name": "load churn"}))
            .send()
            .await;
        match answer {
            Ok(answer) if answer.status() == 201 => {
                registrations.latencies.push(started.elapsed());
            }
            Ok(answer) => {
                registrations
                    .errors
                    .push(format!("registration answered {}", answer.status()));
                continue;
            }
            Err(err) => {
                registrations.errors.push(err.to_string());
                continue;
            }
        }
        let started = Instant::now();
        match client
            .delete(format!("{base}/api/v1/tasks/{CHURN_AGENT}/{task_id}"))
            .send()
            .await
        {
            Ok(answer) if answer.status() == 204 => deletions.latencies.push(started.elapsed()),
            Ok(answer) => deletions
                .errors
                .push(format!("deletion answered {}", answer.status())),
            Err(err) => deletions.errors.push(err.to_string()),
        }
    }
    (registrations, deletions)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let tasks = argument("--tasks", 10_000) as usize;
    let scrapers = argument("--scrapers", 40);
    let registrars = argument("--registrars", 10);
    let seconds = argument("--seconds", 20);
    // Scrapers ask for gzip as Prometheus does, unless `--gzip 0`.
    let gzip = argument("--gzip", 1) != 0;

    let sim = start_simulator(APP_KEY, SECRET, Behaviour::default()).await;
    // Long deliveries, some stalled, so every task stays active and is polled during the run.
    let task_ids: Vec<i64> = (0..tasks)
        .map(|index| {
            let timeline = if index % 5 == 0 {
                Timeline::stalled_at(40.0)
            } else {
                Timeline::slow()
            };
            sim.add_task_spec(TaskSpec {
                agent_id: AGENT,
                task_id: None,
                timeline,
                age_ms: 0,
            })
            .expect("the simulator takes the task")
        })
        .collect();

    let (_dir, db) = temp_db();
    // Room for each registration client's one short-lived task on top of the tracked ones.
    let tasks_max = (tasks as u64 + registrars).to_string();
    let exporter = exporter_against(
        &sim,
        (APP_KEY, SECRET),
        &db,
        &[("--tasks.max", &tasks_max)],
        &[],
    );
    let pid = exporter.child.id();
    let base = format!("http://{}", exporter.address);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let loading = Instant::now();
    for chunk in task_ids.chunks(REGISTRATION_BATCH) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|task_id| json!({"agent_id": AGENT, "task_id": task_id, "name": format!("notice {task_id}")}))
            .collect();
        let answer = client
            .post(format!("{base}/api/v1/tasks"))
            .json(&batch)
            .send()
            .await
            .expect("the exporter answers");
        assert_eq!(answer.status(), 201, "{}", answer.text().await.unwrap());
    }
    let loaded_in = loading.elapsed();

    let metrics_url = format!("{base}/metrics");
    let mut solo = Tally::default();
    let mut exposition_bytes = 0;
    for _ in 0..SOLO_SCRAPES {
        let started = Instant::now();
        exposition_bytes = scrape(&client, &metrics_url, false)
            .await
            .expect("a lone scrape succeeds");
        solo.latencies.push(started.elapsed());
    }

    let wire_bytes = scrape(&client, &metrics_url, gzip)
        .await
        .expect("a scrape succeeds");
    // The peer of the registrations under load: the same registrations with no scraper.
    let mut lone_registrations = Tally::default();
    for round in 0..SOLO_SCRAPES as i64 {
        let task = json!({"agent_id": CHURN_AGENT, "task_id": 9_000_000 + round});
        let started = Instant::now();
        let answer = client
            .post(format!("{base}/api/v1/tasks"))
            .json(&task)
            .send()
            .await
            .expect("the exporter answers");
        assert_eq!(answer.status(), 201);
        lone_registrations.latencies.push(started.elapsed());
        let deleted = client
            .delete(format!(
                "{base}/api/v1/tasks/{CHURN_AGENT}/{}",
                9_000_000 + round
            ))
            .send()
            .await
            .expect("the exporter answers");
        assert_eq!(deleted.status(), 204);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let scraping: Vec<_> = (0..scrapers)
        .map(|_| {
            tokio::spawn(scrape_until(
                client.clone(),
                metrics_url.clone(),
                gzip,
                stop.clone(),
            ))
        })
        .collect();
    let churning: Vec<_> = (0..registrars)
        .map(|registrar| {
            tokio::spawn(churn_until(
                client.clone(),
                base.clone(),
                registrar + 1,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut scrapes = Tally::default();
    for scraper in scraping {
        scrapes.merge(scraper.await.expect("a scraper"));
    }
    let mut registrations = Tally::default();
    let mut deletions = Tally::default();
    for registrar in churning {
        let (registered, deleted) = registrar.await.expect("a registration client");
        registrations.merge(registered);
        deletions.merge(deleted);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let peak_rss_kb = proc_status_kb(pid, "VmHWM:");

    let listed: Value = client
        .get(format!("{base}/api/v1/tasks"))
        .send()
        .await
        .expect("the task list")
        .json()
        .await
        .expect("the task list is JSON");
    let tracked_after = listed["tasks"].as_array().map_or(0, Vec::len);
    let polls = sim.stats().calls.getsendprogress;
    let panicked = exporter.logs().contains("panicked");
    drop(exporter);

    let solo_p50 = solo.percentile(0.5);
    let scrape_p50 = scrapes.percentile(0.5);
    let errors = scrapes.errors.len() + registrations.errors.len() + deletions.errors.len();
    println!(
        "# Load ({tasks} tracked tasks, {scrapers} scrapers + {registrars} registration clients, {seconds} s)"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| initial registration of {tasks} tasks in batches of {REGISTRATION_BATCH} | {:.2} s |",
        loaded_in.as_secs_f64()
    );
    println!(
        "| `/metrics` size | {:.1} MB |",
        exposition_bytes as f64 / 1e6
    );
    println!(
        "| bytes on the wire per scrape ({}) | {:.2} MB ({:.0} B per task) |",
        if gzip {
            "gzip, as Prometheus asks"
        } else {
            "plain"
        },
        wire_bytes as f64 / 1e6,
        wire_bytes as f64 / tasks as f64
    );
    println!(
        "| lone scrape p50 / p99 ({SOLO_SCRAPES} scrapes, the peer) | {} / {} |",
        ms(solo_p50),
        ms(solo.percentile(0.99))
    );
    println!(
        "| scrapes under load | {} ({:.1}/s) |",
        scrapes.latencies.len(),
        scrapes.latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| scrape p50 / p99 under load | {} / {} |",
        ms(scrape_p50),
        ms(scrapes.percentile(0.99))
    );
    println!(
        "| scrape p50 under load / lone scrape p50 | {:.1}x |",
        scrape_p50.as_secs_f64() / solo_p50.as_secs_f64().max(1e-9)
    );
    println!(
        "| registrations under load | {} ({:.1}/s) |",
        registrations.latencies.len(),
        registrations.latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "| lone registration p50 / p99 ({SOLO_SCRAPES}, no scraper; the peer) | {} / {} |",
        ms(lone_registrations.percentile(0.5)),
        ms(lone_registrations.percentile(0.99))
    );
    println!(
        "| registration p50 / p99 under {scrapers} scrapers | {} / {} |",
        ms(registrations.percentile(0.5)),
        ms(registrations.percentile(0.99))
    );
    println!(
        "| deletion p50 / p99 | {} / {} |",
        ms(deletions.percentile(0.5)),
        ms(deletions.percentile(0.99))
    );
    println!(
        "| errors (scrapes / registrations / deletions) | {errors} ({} / {} / {}) |",
        scrapes.errors.len(),
        registrations.errors.len(),
        deletions.errors.len()
    );
    println!("| tasks tracked after the run | {tracked_after} |");
    println!("| DingTalk polls during the run (all phases) | {polls} |");
    println!(
        "| exporter peak RSS (VmHWM) | {:.1} MiB |",
        peak_rss_kb as f64 / 1024.0
    );
    println!(
        "| exporter CPU time during the load | {:.1} s ({:.0}% of one core) |",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    println!(
        "| exporter panicked | {} |",
        if panicked { "yes" } else { "no" }
    );
    for error in scrapes
        .errors
        .iter()
        .chain(&registrations.errors)
        .chain(&deletions.errors)
        .take(5)
    {
        println!();
        println!("error: {error}");
    }
}
