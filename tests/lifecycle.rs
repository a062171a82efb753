//! A task's life seen from outside the real binary: static tasks from the config file, the
//! `track` and `simulate` subcommands, expiry after `--task.max-age`, and leaving `/metrics`
//! after `--task.retention`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    ExporterProcess, binary, eventually, exporter_against, get_text, sample, start_simulator,
    temp_db,
};
use dingtalk_exporter::simulator::{Behaviour, Simulator, Timeline};

const SECRET: &str = "lifecycle-secret";
const APP_KEY: &str = "dinglifecycle";
const AGENT: i64 = 31;
const WAIT: Duration = Duration::from_secs(30);

async fn simulator() -> Simulator {
    start_simulator(APP_KEY, SECRET, Behaviour::default()).await
}

fn exporter(sim: &Simulator, db: &str, extra: &[&str]) -> ExporterProcess {
    let flags = [
        ("--poll.min-interval", "100ms"),
        ("--poll.max-interval", "500ms"),
    ];
    exporter_against(sim, (APP_KEY, SECRET), db, &flags, extra)
}

async fn task_json(exporter: &ExporterProcess, task_id: i64) -> Option<serde_json::Value> {
    common::task_json(exporter, AGENT, task_id).await
}

/// Tasks listed in the config file are tracked from the start, and ones added to the file
/// are tracked after a reload.
#[tokio::test]
async fn static_tasks_are_tracked_and_reloaded() {
    let sim = simulator().await;
    let first = sim.add_task(AGENT, Timeline::stalled_at(10.0));
    let second = sim.add_task(AGENT, Timeline::stalled_at(20.0));
    let (dir, db) = temp_db();
    let config = dir.path().join("config.yml");
    let write_config = |tasks: &[(i64, &str)]| {
        let mut text = String::from("tasks:\n");
        for (task, name) in tasks {
            text.push_str(&format!(
                "  - agent_id: {AGENT}\n    task_id: {task}\n    name: {name}\n"
            ));
        }
        std::fs::write(&config, text).unwrap();
    };
    write_config(&[(first, "payroll notice May")]);
    let config_arg = config.to_str().unwrap().to_string();
    let exporter = exporter(&sim, &db, &["--config.file", &config_arg]);

    let answer = task_json(&exporter, first)
        .await
        .expect("the static task is tracked");
    assert_eq!(answer["name"], "payroll notice May");
    assert!(task_json(&exporter, second).await.is_none());

    write_config(&[
        (first, "payroll notice May"),
        (second, "maintenance window"),
    ]);
    let reload = reqwest::Client::new()
        .post(exporter.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let answer = task_json(&exporter, second)
        .await
        .expect("tracked after the reload");
    assert_eq!(answer["name"], "maintenance window");
}

/// `dingtalk-exporter track` registers a task with a running exporter, and a second run
/// says it was already tracked.
#[tokio::test]
async fn the_track_command_registers_tasks() {
    let sim = simulator().await;
    let task = sim.add_task(AGENT, Timeline::slow());
    let (_dir, db) = temp_db();
    let exporter = exporter(&sim, &db, &[]);
    let track = || {
        Command::new(binary())
            .args(["track", "--exporter.url", &exporter.url("")])
            .args([
                "--agent-id",
                &AGENT.to_string(),
                "--task-id",
                &task.to_string(),
            ])
            .args(["--name", "from cron"])
            .output()
            .expect("track runs")
    };
    let first = track();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        task_json(&exporter, task).await.unwrap()["name"],
        "from cron"
    );
    let again = track();
    assert!(again.status.success());
    let bad = Command::new(binary())
        .args(["track", "--exporter.url", &exporter.url("")])
        .args(["--agent-id", "0", "--task-id", "5"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an invalid id is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--agent-id"));
}

/// `track` says what went wrong in words a user can act on: a negative id, a URL without
/// a scheme, a refused connection, a missing API token, and a new name for a tracked task.
#[tokio::test]
async fn the_track_command_explains_what_went_wrong() {
    let sim = simulator().await;
    let task = sim.add_task(AGENT, Timeline::slow());
    let (dir, db) = temp_db();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, "t0ken-for-writes\n").unwrap();
    let token_file = token_file.to_str().unwrap().to_string();
    let exporter = exporter(&sim, &db, &["--web.api-token-file", &token_file]);
    let task_id = task.to_string();
    let agent_id = AGENT.to_string();
    let track = |url: &str, extra: &[&str]| {
        let output = Command::new(binary())
            .args(["track", "--exporter.url", url])
            .args(extra)
            .output()
            .expect("track runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let url = exporter.url("");

    let (ok, _, err) = track(&url, &["--agent-id", "-5", "--task-id", "1"]);
    assert!(!ok);
    assert!(err.contains("-5 is not in 1.."), "{err}");
    assert!(!err.contains("unexpected argument"), "{err}");

    let no_scheme = url.trim_start_matches("http://").to_string();
    let (ok, _, err) = track(&no_scheme, &["--agent-id", "1", "--task-id", "1"]);
    assert!(!ok);
    assert!(err.contains("must start with http://"), "{err}");
    assert!(!err.contains("builder error"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (ok, _, err) = track(&closed_url, &["--agent-id", "1", "--task-id", "1"]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("connection refused"), "{err}");

    let ids = ["--agent-id", &agent_id, "--task-id", &task_id];
    let (ok, _, err) = track(&url, &ids);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("--web.api-token-file"), "{err}");

    let with_token = |name: &str| {
        let mut args = ids.to_vec();
        args.extend(["--web.api-token-file", &token_file, "--name", name]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let first = with_token("payroll");
    let (ok, out, err) = track(&url, &first.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(out.contains("now tracking"), "{out}");
    let renamed = with_token("payroll, second try");
    let (ok, out, err) = track(
        &url,
        &renamed.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("already tracking"), "{out}");
    assert!(
        out.contains("keeps the name it was first registered with"),
        "{out}"
    );
}

/// A task past `--task.max-age` becomes expired and is not polled again; once its
/// retention has passed it leaves `/metrics` and the task API.
#[tokio::test]
async fn old_tasks_expire_then_leave_metrics_after_retention() {
    let sim = simulator().await;
    let task = sim.add_task(AGENT, Timeline::stalled_at(50.0));
    let (_dir, db) = temp_db();
    let exporter = exporter(
        &sim,
        &db,
        &["--task.max-age", "2s", "--task.retention", "2s"],
    );
    let status = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&serde_json::json!({"agent_id": AGENT, "task_id": task, "name": "old"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let id = task.to_string();

    eventually("the task to expire", WAIT, || async {
        (task_json(&exporter, task).await?["state"] == "expired").then_some(())
    })
    .await;
    let metrics = get_text(&exporter.url("/metrics")).await.unwrap();
    assert_eq!(
        sample(&metrics, "dingtalk_tasks", &[("state", "expired")]),
        Some(1.0)
    );
    assert!(sample(&metrics, "dingtalk_task_info", &[("task_id", &id)]).is_some());
    let calls = task_json(&exporter, task).await.unwrap()["metered_calls"]
        .as_u64()
        .unwrap();

    eventually("the task to leave /metrics", WAIT, || async {
        let metrics = get_text(&exporter.url("/metrics")).await?;
        sample(&metrics, "dingtalk_task_info", &[("task_id", &id)])
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the task to be forgotten", WAIT, || async {
        task_json(&exporter, task).await.is_none().then_some(())
    })
    .await;
    assert!(
        sim.stats().calls.getsendprogress <= calls,
        "an expired task was polled again"
    );
}

/// `dingtalk-exporter simulate` serves DingTalk's API and its control API on its own.
#[tokio::test]
async fn the_simulate_command_serves_the_api() {
    let mut child = Command::new(binary())
        .args(["simulate", "--listen-address", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate starts");
    let stdout = child.stdout.take().unwrap();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split_once("listening on ")
                .map(|(_, url)| url.trim().to_string())
        })
        .expect("simulate says where it listens");
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/_sim/tasks"))
        .json(&serde_json::json!({"agent_id": 1, "timeline": {"stall_at_percent": 40}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["task_id"].as_i64().unwrap() > 0);
    let token: serde_json::Value = reqwest::get(format!(
        "{url}/gettoken?appkey=dingsimdemo&appsecret=simulator-demo-secret"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(token["errcode"], 0);
    let _ = child.kill();
    let _ = child.wait();
}

/// The demo says so in its log when it stops (on SIGTERM), after printing loopback URLs.
#[test]
fn the_demo_logs_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(binary())
        .args([
            "demo",
            "--web.listen-address",
            "127.0.0.1:0",
            "--storage.path",
        ])
        .arg(dir.path().join("demo.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        Box::new(demo.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(demo.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|stream| {
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        })
    })
    .collect();
    drop(lines_tx);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !seen.iter().any(|line: &String| line.contains("Metrics:")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = demo.kill();
                panic!("the demo printed no URLs:\n{}", seen.join("\n"));
            }
        }
    }
    let metrics_line = seen.iter().find(|line| line.contains("Metrics:")).unwrap();
    assert!(metrics_line.contains("http://127.0.0.1:"), "{metrics_line}");
    let pid = demo.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = demo.wait().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    seen.extend(lines_rx.try_iter());
    assert!(status.success(), "{status}: {}", seen.join("\n"));
    assert!(
        seen.iter().any(|line| line.contains("demo stopped")),
        "{}",
        seen.join("\n")
    );
}
