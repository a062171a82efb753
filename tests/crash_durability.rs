//! Crash durability of the real binary: clients register tasks concurrently while the
//! process is killed with SIGKILL at random moments, round after round. Every task the API
//! acknowledged (201 or 200) must be there after the restart, and the database file must pass
//! SQLite's own integrity check after every kill.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ExporterProcess, eventually, exporter_against, get_text, start_simulator, temp_db};
use dingtalk_exporter::simulator::{Behaviour, Simulator};
use rusqlite::OpenFlags;
use serde_json::Value;

const SECRET: &str = "crash-secret-9e2f";
const APP_KEY: &str = "dingcrashapp";
const ROUNDS: usize = 5;
const CLIENTS: usize = 4;

/// A registered task's key and the name it was given.
type Acknowledged = BTreeMap<(i64, i64), String>;

fn start_exporter(sim: &Simulator, db: &str) -> ExporterProcess {
    // Poll at once and often: the poller's saves race the registrations to the disk.
    exporter_against(
        sim,
        (APP_KEY, SECRET),
        db,
        &[
            ("--poll.min-interval", "100ms"),
            ("--poll.max-interval", "1s"),
        ],
        &[],
    )
}

/// Posts batches of new tasks back to back until the exporter stops answering, recording
/// every task whose registration was answered 201 or 200. Any other answer is a defect.
async fn register_until_killed(
    url: String,
    agent_id: i64,
    acknowledged: Arc<Mutex<Acknowledged>>,
    refusals: Arc<Mutex<Vec<String>>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for batch in 0i64.. {
        let size = batch % 4 + 1;
        let tasks: Vec<(i64, String)> = (0..size)
            .map(|index| {
                let task_id = batch * 4 + index + 1;
                (task_id, format!("crash \"{agent_id}\" #{task_id} ✓"))
            })
            .collect();
        let body: Vec<Value> = tasks
            .iter()
            .map(|(task_id, name)| {
                serde_json::json!({"agent_id": agent_id, "task_id": task_id, "name": name})
            })
            .collect();
        let Ok(answer) = client.post(&url).json(&body).send().await else {
            // The process is gone; a request it never answered was never acknowledged.
            return;
        };
        match answer.status().as_u16() {
            200 | 201 => {
                // The acknowledgement is the status line: the body may be cut by the kill.
                let mut acknowledged = acknowledged.lock().unwrap();
                for (task_id, name) in tasks {
                    acknowledged.insert((agent_id, task_id), name);
                }
            }
            status => {
                let text = answer.text().await.unwrap_or_default();
                refusals.lock().unwrap().push(format!("{status}: {text}"));
                return;
            }
        }
    }
}

/// Runs SQLite's `PRAGMA integrity_check` on the file through a read-only connection.
fn integrity_check(db: &str) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        Path::new(db),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("the database opens read-only after the kill");
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check runs")
}

/// Every tracked task's key and name, as the task API lists them.
async fn tracked_tasks(exporter: &ExporterProcess) -> BTreeMap<(i64, i64), String> {
    let text = eventually("the task list", Duration::from_secs(10), || async {
        get_text(&exporter.url("/api/v1/tasks")).await
    })
    .await;
    let list: Value = serde_json::from_str(&text).expect("the task list is JSON");
    list["tasks"]
        .as_array()
        .expect("a tasks array")
        .iter()
        .map(|task| {
            (
                (
                    task["agent_id"].as_i64().unwrap(),
                    task["task_id"].as_i64().unwrap(),
                ),
                task["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Asserts that every acknowledged registration is tracked with the name it was given.
async fn assert_nothing_lost(
    exporter: &ExporterProcess,
    acknowledged: &Acknowledged,
    round: usize,
) {
    let tracked = tracked_tasks(exporter).await;
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|(key, name)| tracked.get(*key) != Some(*name))
        .map(|(key, _)| key)
        .collect();
    assert!(
        lost.is_empty(),
        "after the kill of round {round}, {} of {} acknowledged tasks are missing or changed, e.g. {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Registrations acknowledged by the real binary survive SIGKILL at random moments over
/// several rounds, and the database file passes `PRAGMA integrity_check` after every kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_sigkill_of_the_binary() {
    let sim = start_simulator(APP_KEY, SECRET, Behaviour::default()).await;
    let (_dir, db) = temp_db();
    let acknowledged = Arc::new(Mutex::new(Acknowledged::new()));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let mut kills = Vec::new();

    for round in 0..ROUNDS {
        let exporter = start_exporter(&sim, &db);
        if round > 0 {
            let so_far = acknowledged.lock().unwrap().clone();
            assert_nothing_lost(&exporter, &so_far, round - 1).await;
        }
        let before = acknowledged.lock().unwrap().len();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                tokio::spawn(register_until_killed(
                    exporter.url("/api/v1/tasks"),
                    (round * CLIENTS + client + 1) as i64,
                    acknowledged.clone(),
                    refusals.clone(),
                ))
            })
            .collect();
        // The kill lands at a random point in the stream of registrations; the clients keep
        // posting, so some requests are in flight when it does.
        let kill_after = before
            + if round == 0 {
                rand::random_range(1..20usize)
            } else {
                rand::random_range(20..300usize)
            };
        eventually(
            &format!("{kill_after} acknowledged registrations"),
            Duration::from_secs(20),
            || async { (acknowledged.lock().unwrap().len() >= kill_after).then_some(()) },
        )
        .await;
        exporter.kill();
        kills.push(kill_after - before);
        for client in clients {
            client.await.unwrap();
        }
        assert_eq!(integrity_check(&db), "ok", "round {round}");
        let refused = refusals.lock().unwrap().clone();
        assert!(refused.is_empty(), "refused registrations: {refused:?}");
    }

    let exporter = start_exporter(&sim, &db);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_nothing_lost(&exporter, &acknowledged, ROUNDS - 1).await;
    assert!(
        acknowledged.len() >= 100,
        "only {} registrations were acknowledged: too few to prove anything",
        acknowledged.len()
    );
    eprintln!(
        "crash durability: {} registrations acknowledged over {ROUNDS} SIGKILLs (killed after {kills:?} new acknowledgements), none lost, integrity ok",
        acknowledged.len()
    );
}
