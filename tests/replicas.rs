//! Several exporters sharing one PostgreSQL database (`--storage.url`): registrations
//! through any of them visible on all, one replica polling each app under a lease, the
//! budget held across them, takeover after a `kill -9`, recovery after the database
//! restarts, and the database password kept out of sight.

mod common;
mod postgres_common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{ExporterProcess, eventually, get_text, metric, sample, task_json};
use dingtalk_exporter::simulator::{
    CallRecord, SimApp, SimConfig, SimCorp, SimSuite, Simulator, Timeline,
};
use postgres_common::{PASSWORD, PgCluster};

const SECRET: &str = "s3cret-replicas-8e1f";
const WAIT: Duration = Duration::from_secs(40);

/// An app of the simulator and of the exporters' config file.
struct App {
    name: &'static str,
    key: &'static str,
    agent_id: i64,
}

const APPS: [App; 3] = [
    App {
        name: "hr",
        key: "dingreplicahr",
        agent_id: 1_001,
    },
    App {
        name: "ops",
        key: "dingreplicaops",
        agent_id: 1_002,
    },
    App {
        name: "sales",
        key: "dingreplicasales",
        agent_id: 1_003,
    },
];

async fn simulator(apps: &[App]) -> Simulator {
    Simulator::start(SimConfig {
        apps: apps
            .iter()
            .map(|app| SimApp::new(app.key, SECRET))
            .collect(),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// A config file naming `apps` against `sim`.
fn config_file(dir: &std::path::Path, sim: &Simulator, apps: &[App]) -> String {
    let mut yaml = String::from("apps:\n");
    for app in apps {
        yaml.push_str(&format!(
            "  - name: {}\n    agent_id: {}\n    app_key: {}\n    app_secret: {SECRET}\n    api_url: {}\n",
            app.name,
            app.agent_id,
            app.key,
            sim.url()
        ));
    }
    let path = dir.join("config.yml");
    std::fs::write(&path, yaml).expect("config file");
    path.to_str().unwrap().to_string()
}

/// One replica on the shared database, the password in the environment.
fn replica(pg: &PgCluster, config: &str, extra: &[&str]) -> ExporterProcess {
    let url = pg.url();
    let mut args = vec![
        "--config.file",
        config,
        "--storage.url",
        url.as_str(),
        "--poll.min-interval",
        "200ms",
        "--poll.max-interval",
        "1s",
        "--dingtalk.timeout",
        "2s",
    ];
    args.extend_from_slice(extra);
    ExporterProcess::start(&args, &[("DINGTALK_EXPORTER_STORAGE_PASSWORD", PASSWORD)])
}

async fn register(replica: &ExporterProcess, agent_id: i64, task_id: i64) -> u16 {
    reqwest::Client::new()
        .post(replica.url("/api/v1/tasks"))
        .json(&serde_json::json!({"agent_id": agent_id, "task_id": task_id, "name": "notice"}))
        .send()
        .await
        .map(|answer| answer.status().as_u16())
        .unwrap_or(0)
}

/// Which replicas own which app now, from their `dingtalk_ha_owner`.
async fn owners(replicas: &[&ExporterProcess], app: &str) -> Vec<usize> {
    let mut owning = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        if metric(replica, "dingtalk_ha_owner", &[("app", app)]).await == Some(1.0) {
            owning.push(index);
        }
    }
    owning
}

/// The one replica owning `corp` of the third-party app `isv-suite` now; `None` while none
/// or several do.
async fn corp_owner(replicas: &[ExporterProcess], corp: &str) -> Option<usize> {
    let mut owning = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        let labels = [("app", "isv-suite"), ("corp", corp)];
        if metric(replica, "dingtalk_ha_owner", &labels).await == Some(1.0) {
            owning.push(index);
        }
    }
    (owning.len() == 1).then(|| owning[0])
}

/// `name type` of each family in an exposition's `# TYPE` lines, sorted.
fn exposed_families(exposition: &str) -> Vec<String> {
    let mut families: Vec<String> = exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    families.sort();
    families
}

/// `name type` lines of a golden list, sorted.
fn golden_families(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("golden list");
    let mut families: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    families.sort();
    families
}

/// The replica named in a call's `User-Agent`.
fn caller(record: &CallRecord) -> &str {
    record
        .user_agent
        .split("(replica ")
        .nth(1)
        .map_or("", |rest| rest.trim_end_matches(')'))
}

/// No task is polled by two replicas at once: once another replica has polled a task, the
/// one before never polls it again.
fn assert_one_poller_at_a_time(log: &[CallRecord]) {
    let mut by_task: HashMap<i64, Vec<&str>> = HashMap::new();
    for record in log {
        by_task
            .entry(record.task_id)
            .or_default()
            .push(caller(record));
    }
    for (task, callers) in by_task {
        let mut seen: Vec<&str> = Vec::new();
        for who in callers {
            assert!(!who.is_empty(), "a call names no replica");
            if seen.last() != Some(&who) {
                assert!(
                    !seen.contains(&who),
                    "task {task} was polled by two replicas in turn: {seen:?} then {who}"
                );
                seen.push(who);
            }
        }
    }
}

/// Three replicas: a registration through each is on all three within a second or so,
/// exactly one replica polls the app, and the calls they make together stay within 10% of
/// what one exporter alone makes for the same work.
#[tokio::test]
async fn three_replicas_share_registrations_and_poll_each_task_once() {
    let Some(pg) = PgCluster::start() else { return };
    let apps = &APPS[..1];
    let sim = simulator(apps).await;
    let config = config_file(pg.path(), &sim, apps);
    let replicas = [
        replica(&pg, &config, &[]),
        replica(&pg, &config, &[]),
        replica(&pg, &config, &[]),
    ];
    let all: Vec<&ExporterProcess> = replicas.iter().collect();

    let timeline = Timeline::fast();
    let mut tasks = Vec::new();
    let mut latencies = Vec::new();
    for (index, through) in replicas.iter().enumerate() {
        let task = sim.add_task(APPS[0].agent_id, timeline.clone());
        let registered = Instant::now();
        assert_eq!(register(through, APPS[0].agent_id, task).await, 201);
        for other in &replicas {
            eventually(
                &format!("task {task} registered through replica {index} on every replica"),
                WAIT,
                || async { task_json(other, APPS[0].agent_id, task).await },
            )
            .await;
        }
        latencies.push(registered.elapsed());
        tasks.push(task);
    }
    eprintln!("registration visible on all three replicas after {latencies:?}");

    for task in &tasks {
        for replica in &replicas {
            eventually(
                &format!("task {task} completed on every replica"),
                WAIT,
                || async {
                    let answer = task_json(replica, APPS[0].agent_id, *task).await?;
                    (answer["state"] == "completed" && answer["recipients"].is_object())
                        .then_some(())
                },
            )
            .await;
        }
    }
    assert_eq!(owners(&all, "hr").await.len(), 1, "one owner of the app");
    let exposition = get_text(&replicas[0].url("/metrics")).await.unwrap();
    let single_golden = golden_families("tests/golden/metric_families.txt");
    let replica_only: Vec<String> = exposed_families(&exposition)
        .into_iter()
        .filter(|family| family.starts_with("dingtalk_") && !single_golden.contains(family))
        .collect();
    let replica_golden = golden_families("tests/golden/metric_families_replicas.txt");
    assert_eq!(
        replica_only, replica_golden,
        "what a replica adds to the golden families"
    );
    let shared_calls = sim.stats().metered_calls;
    assert_one_poller_at_a_time(&sim.call_log());
    for replica in &replicas {
        let logs = replica.logs();
        assert!(
            !logs.contains(PASSWORD),
            "the password is in a replica's log"
        );
        let metrics = get_text(&replica.url("/metrics")).await.unwrap();
        assert!(!metrics.contains(PASSWORD));
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", replica.child.id())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(PASSWORD));
    }
    drop(replicas);

    // The same work for one exporter on its own SQLite file.
    let single_sim = simulator(apps).await;
    let single_config = config_file(pg.path(), &single_sim, apps);
    let (_dir, db) = common::temp_db();
    let single = ExporterProcess::start(
        &[
            "--config.file",
            &single_config,
            "--storage.path",
            &db,
            "--poll.min-interval",
            "200ms",
            "--poll.max-interval",
            "1s",
            "--dingtalk.timeout",
            "2s",
        ],
        &[],
    );
    let mut single_tasks = Vec::new();
    for _ in 0..3 {
        let task = single_sim.add_task(APPS[0].agent_id, timeline.clone());
        assert_eq!(register(&single, APPS[0].agent_id, task).await, 201);
        single_tasks.push(task);
    }
    for task in &single_tasks {
        eventually("the single exporter's task completed", WAIT, || async {
            let answer = task_json(&single, APPS[0].agent_id, *task).await?;
            (answer["state"] == "completed" && answer["recipients"].is_object()).then_some(())
        })
        .await;
    }
    let single_calls = single_sim.stats().metered_calls;
    eprintln!("metered calls: three replicas {shared_calls}, one exporter {single_calls}");
    assert!(
        (shared_calls as f64) <= single_calls as f64 * 1.1,
        "three replicas made {shared_calls} metered calls, one exporter {single_calls}"
    );
}

/// `kill -9` of the replica polling an app: another replica takes the app over within the
/// lease duration, and no task is polled by two replicas at once.
#[tokio::test]
async fn killing_the_owner_moves_its_app_within_the_lease() {
    let Some(pg) = PgCluster::start() else { return };
    let apps = &APPS[..1];
    let sim = simulator(apps).await;
    let config = config_file(pg.path(), &sim, apps);
    let lease = Duration::from_secs(3);
    let mut replicas = vec![
        replica(&pg, &config, &["--ha.lease-duration", "3s"]),
        replica(&pg, &config, &["--ha.lease-duration", "3s"]),
    ];
    let task = sim.add_task(APPS[0].agent_id, Timeline::stalled_at(40.0));
    assert_eq!(register(&replicas[0], APPS[0].agent_id, task).await, 201);
    let owner = eventually("one replica owns the app", WAIT, || async {
        let all: Vec<&ExporterProcess> = replicas.iter().collect();
        let owning = owners(&all, "hr").await;
        (owning.len() == 1).then(|| owning[0])
    })
    .await;
    eventually("the owner polls the task", WAIT, || async {
        (sim.call_log().len() >= 2).then_some(())
    })
    .await;

    let killed = replicas.remove(owner);
    let killed_at = Instant::now();
    killed.kill();
    let survivor = &replicas[0];
    eventually("the survivor owns the app", WAIT, || async {
        (metric(survivor, "dingtalk_ha_owner", &[("app", "hr")]).await == Some(1.0)).then_some(())
    })
    .await;
    let takeover = killed_at.elapsed();
    let calls_before = sim.call_log().len();
    eventually("the survivor polls the task", WAIT, || async {
        (sim.call_log().len() > calls_before + 1).then_some(())
    })
    .await;
    eprintln!("takeover after {takeover:?} (lease {lease:?})");
    assert!(
        takeover <= lease,
        "the app moved after {takeover:?}, longer than the lease of {lease:?}"
    );
    assert_one_poller_at_a_time(&sim.call_log());
}

/// Three replicas, each polling an app of its own at once, never spend more than the
/// monthly budget together: the count is raised in the database before each call.
#[tokio::test]
async fn the_budget_holds_across_replicas() {
    let Some(pg) = PgCluster::start() else { return };
    let sim = simulator(&APPS).await;
    let config = config_file(pg.path(), &sim, &APPS);
    let budget = "12";
    let extra = ["--dingtalk.monthly-call-budget", budget];
    let replicas = [
        replica(&pg, &config, &extra),
        replica(&pg, &config, &extra),
        replica(&pg, &config, &extra),
    ];
    let all: Vec<&ExporterProcess> = replicas.iter().collect();
    eventually("the apps spread over the replicas", WAIT, || async {
        let mut owning = Vec::new();
        for app in &APPS {
            let owners = owners(&all, app.name).await;
            if owners.len() != 1 {
                return None;
            }
            owning.push(owners[0]);
        }
        owning.sort();
        owning.dedup();
        (owning.len() == 3).then_some(())
    })
    .await;
    for app in &APPS {
        for _ in 0..4 {
            let task = sim.add_task(app.agent_id, Timeline::stalled_at(10.0));
            assert_eq!(register(&replicas[0], app.agent_id, task).await, 201);
        }
    }
    eventually("the budget spent", WAIT, || async {
        (pg.psql("SELECT coalesce(sum(calls), 0) FROM month_calls") == budget).then_some(())
    })
    .await;
    // Every replica holds its calls back now; give them a moment to (not) call.
    let spent_at = sim.stats().metered_calls;
    eventually("every replica sees the budget spent", WAIT, || async {
        for replica in &replicas {
            if metric(replica, "dingtalk_api_month_calls", &[]).await != Some(12.0) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let callers: std::collections::HashSet<String> = sim
        .call_log()
        .iter()
        .map(|record| caller(record).to_string())
        .collect();
    assert!(callers.len() >= 2, "several replicas polled: {callers:?}");
    assert!(
        sim.stats().metered_calls <= 12,
        "the replicas made {} metered calls on a budget of 12 (12 when the counter filled: {spent_at})",
        sim.stats().metered_calls
    );
}

/// Each corp of a third-party app is leased on its own: two replicas own one corp each
/// (`dingtalk_ha_owner{app,corp}`), and each corp's monthly budget holds across them,
/// counted in the database apart from the other corp's.
#[tokio::test]
async fn each_corp_of_a_third_party_app_is_leased_and_budgeted_apart() {
    let Some(pg) = PgCluster::start() else { return };
    const SUITE_KEY: &str = "suitereplicas01";
    const TICKET: &str = "ticket-replicas-4b2a";
    let corps = [
        ("dingacme01", "acme", 41_001),
        ("dingglobex02", "globex", 41_002),
    ];
    let sim = Simulator::start(SimConfig {
        suites: vec![SimSuite {
            suite_key: SUITE_KEY.to_string(),
            suite_secret: dingtalk_exporter::secret::Secret::new(SECRET),
            suite_ticket: TICKET.to_string(),
            corps: corps
                .iter()
                .map(|(corp_id, _, agent_id)| SimCorp {
                    corp_id: corp_id.to_string(),
                    agent_id: *agent_id,
                    monthly_quota: 0,
                })
                .collect(),
        }],
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let dir = pg.path();
    std::fs::write(dir.join("suite_secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(dir.join("suite_ticket"), format!("{TICKET}\n")).unwrap();
    let mut yaml = format!(
        "dingtalk:\n  api_url: {url}\n  openapi_url: {url}\n\
         apps:\n  - name: isv-suite\n    kind: third_party\n    suite_key: {SUITE_KEY}\n\
         \x20   suite_secret_file: suite_secret\n    suite_ticket_file: suite_ticket\n\
         \x20   corps:\n",
        url = sim.url()
    );
    for (corp_id, name, agent_id) in corps {
        yaml.push_str(&format!(
            "      - {{corp_id: {corp_id}, name: {name}, agent_id: {agent_id}, monthly_call_budget: 5}}\n"
        ));
    }
    let config = dir.join("config.yml");
    std::fs::write(&config, yaml).unwrap();
    let config = config.to_str().unwrap();
    let replicas = [replica(&pg, config, &[]), replica(&pg, config, &[])];

    eventually(
        "one replica owns each corp, not the same one",
        WAIT,
        || async {
            let acme = corp_owner(&replicas, "acme").await?;
            let globex = corp_owner(&replicas, "globex").await?;
            (acme != globex).then_some(())
        },
    )
    .await;

    for (_, _, agent_id) in corps {
        for _ in 0..4 {
            let task = sim.add_task(agent_id, Timeline::stalled_at(10.0));
            assert_eq!(register(&replicas[0], agent_id, task).await, 201);
        }
    }
    for (corp_id, _, _) in corps {
        let counted = format!(
            "SELECT coalesce(sum(calls), 0) FROM month_calls WHERE scope = 'isv-suite/{corp_id}'"
        );
        eventually(&format!("{corp_id}'s budget spent"), WAIT, || async {
            (pg.psql(&counted) == "5").then_some(())
        })
        .await;
    }
    // Only a corp's owner calls for it, so the owner shows its count; the other replica
    // shows the count as it last saw it.
    for (_, corp, _) in corps {
        let owner = corp_owner(&replicas, corp)
            .await
            .expect("the corp has one owner");
        let labels = [("app", "isv-suite"), ("corp", corp)];
        eventually(
            &format!("{corp}'s owner shows its budget spent"),
            WAIT,
            || async {
                (metric(&replicas[owner], "dingtalk_api_month_calls", &labels).await == Some(5.0))
                    .then_some(())
            },
        )
        .await;
    }
    let stats = sim.stats();
    for (corp_id, _, _) in corps {
        let calls = stats.corp_month_calls.get(corp_id).copied().unwrap_or(0);
        assert!(
            calls <= 5,
            "{corp_id} was called {calls} times on a budget of 5"
        );
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM month_calls WHERE scope = ''"),
        "0",
        "a corp's calls were counted as the organisation's"
    );
    assert_one_poller_at_a_time(&sim.call_log());
}

/// The database crashes and comes back: every registration acknowledged before, during and
/// after is there, and registrations flow between the replicas again.
#[tokio::test]
async fn a_database_restart_loses_no_acknowledged_registration() {
    let Some(pg) = PgCluster::start() else { return };
    let apps = &APPS[..1];
    let sim = simulator(apps).await;
    let config = config_file(pg.path(), &sim, apps);
    let first = replica(&pg, &config, &[]);
    let second = replica(&pg, &config, &[]);
    let agent = APPS[0].agent_id;
    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let task = sim.add_task(agent, Timeline::slow());
        assert_eq!(register(&first, agent, task).await, 201);
        acknowledged.push(task);
    }
    pg.crash();
    // While the database is down, registrations are refused, never acknowledged and lost.
    let task = sim.add_task(agent, Timeline::slow());
    let status = register(&first, agent, task).await;
    assert_ne!(
        status, 201,
        "a registration acknowledged without a database"
    );
    pg.start_again();
    let task = sim.add_task(agent, Timeline::slow());
    eventually("a registration accepted again", WAIT, || async {
        (register(&second, agent, task).await == 201).then_some(())
    })
    .await;
    acknowledged.push(task);
    for task in &acknowledged {
        eventually("every acknowledged task on both replicas", WAIT, || async {
            task_json(&first, agent, *task).await?;
            task_json(&second, agent, *task).await
        })
        .await;
        let stored = pg.psql(&format!(
            "SELECT count(*) FROM tasks WHERE task_id = {task}"
        ));
        assert_eq!(stored, "1", "task {task} is stored");
    }
    let metrics = get_text(&first.url("/metrics")).await.unwrap();
    assert!(sample(&metrics, "dingtalk_ha_owner", &[("app", "hr")]).is_some());
    assert!(!first.logs().contains(PASSWORD) && !second.logs().contains(PASSWORD));
}

/// `--config.check` shows where the database password comes from, never the password; a URL
/// holding a password is refused without repeating it.
#[test]
fn config_check_never_shows_the_database_password() {
    let run = |url: &str| {
        std::process::Command::new(common::binary())
            .args(["--config.check", "--storage.url", url])
            .env("DINGTALK_EXPORTER_STORAGE_PASSWORD", PASSWORD)
            .env_remove("DINGTALK_APP_SECRET")
            .output()
            .expect("the binary runs")
    };
    let good = run("postgres://dingtalk@db.internal:5432/dingtalk");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(good.status.success(), "{shown}");
    assert!(
        shown.contains("postgres://dingtalk@db.internal:5432/dingtalk"),
        "{shown}"
    );
    assert!(
        shown.contains("DINGTALK_EXPORTER_STORAGE_PASSWORD"),
        "{shown}"
    );
    assert!(!shown.contains(PASSWORD), "{shown}");

    let refused = run(&format!(
        "postgres://dingtalk:{PASSWORD}@db.internal:5432/dingtalk"
    ));
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "{shown}");
    assert!(
        shown.contains("--storage.url") && shown.contains("password"),
        "{shown}"
    );
    assert!(!shown.contains(PASSWORD), "{shown}");
}
