//! Replicas on a shared PostgreSQL database, against one exporter on SQLite as the peer:
//!
//! - registration latency through the database: a task registered through one replica,
//!   until another replica's task API shows it (notification, read back);
//! - calls: the metered calls three replicas make together for a batch of tasks (registered
//!   round-robin through them), against the calls one exporter makes for the same batch
//!   (simulator counts; nothing else is tracked meanwhile);
//! - failover: `kill -9` of the replica polling the app, until another replica reports
//!   owning it (`dingtalk_ha_owner`), at the default `--ha.lease-duration` of 15 s;
//! - what replicas cost the database: transactions per second and connections, idle and
//!   while polling (`pg_stat_database`, `pg_stat_activity`).
//!
//! Needs Debian's `postgresql` (a private cluster is started as in the tests).
//! `cargo bench --bench replicas` (add `-- --registrations N --tasks T --kills K`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/postgres_common/mod.rs"]
mod postgres_common;

use std::time::{Duration, Instant};

use common::{ExporterProcess, metric, task_json};
use dingtalk_exporter::simulator::{SimApp, SimConfig, Simulator, Timeline};
use postgres_common::{PASSWORD, PgCluster};

const APP_KEY: &str = "dingbenchreplicas";
const SECRET: &str = "bench-secret-31aa";
const AGENT: i64 = 1_001;

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

async fn simulator() -> Simulator {
    Simulator::start(SimConfig {
        apps: vec![SimApp::new(APP_KEY, SECRET)],
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

fn config_file(dir: &std::path::Path, sim: &Simulator, name: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "apps:\n  - name: hr\n    agent_id: {AGENT}\n    app_key: {APP_KEY}\n    app_secret: {SECRET}\n    api_url: {}\n",
            sim.url()
        ),
    )
    .expect("config file");
    path.to_str().unwrap().to_string()
}

const POLLING: [&str; 6] = [
    "--poll.min-interval",
    "200ms",
    "--poll.max-interval",
    "2s",
    "--dingtalk.timeout",
    "2s",
];

fn replica(pg: &PgCluster, config: &str) -> ExporterProcess {
    let url = pg.url();
    let mut args = vec!["--config.file", config, "--storage.url", url.as_str()];
    args.extend_from_slice(&POLLING);
    ExporterProcess::start(&args, &[("DINGTALK_EXPORTER_STORAGE_PASSWORD", PASSWORD)])
}

async fn register(through: &ExporterProcess, task: i64) {
    let status = reqwest::Client::new()
        .post(through.url("/api/v1/tasks"))
        .json(&serde_json::json!({"agent_id": AGENT, "task_id": task}))
        .send()
        .await
        .expect("the replica answers")
        .status();
    assert_eq!(status, 201);
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

async fn owner(replicas: &[ExporterProcess]) -> Option<usize> {
    for (index, replica) in replicas.iter().enumerate() {
        if metric(replica, "dingtalk_ha_owner", &[("app", "hr")]).await == Some(1.0) {
            return Some(index);
        }
    }
    None
}

/// Transactions committed in the test database so far.
fn commits(pg: &PgCluster) -> u64 {
    pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        .parse()
        .unwrap()
}

fn connections(pg: &PgCluster) -> u64 {
    pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name <> 'psql' AND datname = current_database()")
        .parse()
        .unwrap()
}

#[tokio::main]
async fn main() {
    let registrations = argument("--registrations", 100) as usize;
    let tasks = argument("--tasks", 20) as usize;
    let kills = argument("--kills", 2) as usize;
    let Some(pg) = PgCluster::start() else {
        eprintln!("PostgreSQL is not installed: nothing measured");
        return;
    };
    let sim = simulator().await;
    let config = config_file(pg.path(), &sim, "replicas.yml");
    let mut replicas = vec![
        replica(&pg, &config),
        replica(&pg, &config),
        replica(&pg, &config),
    ];
    wait_for("an owner", || owner(&replicas)).await;

    // Calls: a batch of tasks through three replicas against one exporter on SQLite.
    let calls_before = sim.stats().metered_calls;
    let mut batch = Vec::new();
    for index in 0..tasks {
        let task = sim.add_task(AGENT, Timeline::fast());
        register(&replicas[index % 3], task).await;
        batch.push(task);
    }
    for task in &batch {
        wait_for("a batch task completed", || async {
            let answer = task_json(&replicas[2], AGENT, *task).await?;
            (answer["state"] == "completed" && answer["recipients"].is_object()).then_some(())
        })
        .await;
    }
    let shared_calls = (sim.stats().metered_calls - calls_before) as usize;

    let single_sim = simulator().await;
    let single_config = config_file(pg.path(), &single_sim, "single.yml");
    let (_dir, db) = common::temp_db();
    let mut args = vec!["--config.file", &single_config, "--storage.path", &db];
    args.extend_from_slice(&POLLING);
    let single = ExporterProcess::start(&args, &[]);
    let mut single_batch = Vec::new();
    for _ in 0..tasks {
        let task = single_sim.add_task(AGENT, Timeline::fast());
        register(&single, task).await;
        single_batch.push(task);
    }
    for task in &single_batch {
        wait_for("a single exporter's task completed", || async {
            let answer = task_json(&single, AGENT, *task).await?;
            (answer["state"] == "completed" && answer["recipients"].is_object()).then_some(())
        })
        .await;
    }
    let single_calls = single_sim.stats().metered_calls as usize;
    drop(single);

    // What idle replicas cost the database.
    let window = Duration::from_secs(10);
    let before = commits(&pg);
    tokio::time::sleep(window).await;
    let idle_tps = (commits(&pg) - before) as f64 / window.as_secs_f64();
    let idle_connections = connections(&pg);

    // Registration latency through the database: registered on replica 0, seen on 1.
    let mut latencies = Vec::with_capacity(registrations);
    for _ in 0..registrations {
        let task = sim.add_task(AGENT, Timeline::slow());
        let started = Instant::now();
        register(&replicas[0], task).await;
        wait_for("the registration on another replica", || {
            task_json(&replicas[1], AGENT, task)
        })
        .await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    // Polling load: what the slow tasks above cost while they are polled.
    let before = commits(&pg);
    tokio::time::sleep(window).await;
    let busy_tps = (commits(&pg) - before) as f64 / window.as_secs_f64();
    let busy_connections = connections(&pg);

    // Failover at the default lease duration.
    let mut failovers = Vec::new();
    for _ in 0..kills {
        let killed = wait_for("an owner", || owner(&replicas)).await;
        let started = Instant::now();
        replicas.remove(killed).kill();
        wait_for("a new owner", || owner(&replicas)).await;
        failovers.push(started.elapsed());
        replicas.push(replica(&pg, &config));
    }

    println!("replicas: 3 on PostgreSQL (lease 15s), peer: 1 exporter on SQLite");
    println!(
        "registration seen on another replica ({registrations} registrations): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.95).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "metered calls for {tasks} tasks: 3 replicas {shared_calls}, 1 exporter {single_calls}, ratio {:.2}",
        shared_calls as f64 / single_calls as f64
    );
    println!(
        "failover after kill -9 of the owner: {}",
        failovers
            .iter()
            .map(|took| format!("{:.1} s", took.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "database cost of 3 replicas: idle {idle_tps:.1} transactions/s, {idle_connections} connections; polling {registrations} tasks {busy_tps:.1} transactions/s, {busy_connections} connections"
    );
}
