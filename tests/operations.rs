//! Operating the real binary: its web config (HTTPS, basic auth, `--config.check`), reload by
//! SIGHUP with a real config file, secrets kept out of every answer, and SIGTERM while
//! registrations are in flight.

mod common;
mod tls_common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ExporterProcess, binary, eventually, get_text, sample, temp_db};
use dingtalk_exporter::simulator::{SimApp, SimConfig, Simulator, Timeline};
use tls_common::{TestCa, WebConfigDir, bcrypt_hash, https_client};

const WAIT: Duration = Duration::from_secs(30);
const AGENT: i64 = 2_839_445_214;
const SECRET: &str = "app-secret-9f3b-never-shown";
const API_TOKEN: &str = "api-token-41d7-never-shown";
const APP_KEY: &str = "dingopsapp";

/// Runs `--config.check` with `args`: (success, stdout and stderr together).
fn config_check(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary())
        .arg("--config.check")
        .args(args)
        .env_remove("DINGTALK_APP_SECRET")
        .env_remove("DINGTALK_APP_KEY")
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn signal(process: &ExporterProcess, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &process.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

async fn metric(exporter: &ExporterProcess, name: &str) -> Option<f64> {
    sample(&get_text(&exporter.url("/metrics")).await?, name, &[])
}

async fn tracked_ids(exporter: &ExporterProcess) -> Vec<i64> {
    let text = get_text(&exporter.url("/api/v1/tasks"))
        .await
        .expect("the task list answers");
    let tasks: serde_json::Value = serde_json::from_str(&text).unwrap();
    tasks["tasks"]
        .as_array()
        .expect("a JSON list of tasks")
        .iter()
        .map(|task| task["task_id"].as_i64().unwrap())
        .collect()
}

/// `--config.check` validates the web config completely and names the offending key; a
/// valid one passes and is described.
#[test]
fn config_check_names_web_config_problems() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let path = files.write_config(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  cert_fil: typo.crt\n  min_version: TLS11\n",
    );
    let (valid, text) = config_check(&["--web.config.file", path.to_str().unwrap()]);
    assert!(!valid, "{text}");
    assert!(text.contains("--web.config.file"), "{text}");
    assert!(
        text.contains("tls_server_config.cert_fil: unknown key"),
        "{text}"
    );
    assert!(
        text.contains("tls_server_config.min_version: TLS11 is not supported"),
        "{text}"
    );

    // A certificate that does not go with its key is caught before the exporter starts.
    std::fs::write(files.path("tls.key"), ca.server().key).unwrap();
    let path =
        files.write_config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let (valid, text) = config_check(&["--web.config.file", path.to_str().unwrap()]);
    assert!(!valid, "{text}");
    assert!(
        text.contains("tls_server_config.key_file: does not belong"),
        "{text}"
    );

    let files = WebConfigDir::new(&ca.server());
    let path =
        files.write_config("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n");
    let (valid, text) = config_check(&["--web.config.file", path.to_str().unwrap()]);
    assert!(valid, "{text}");
    assert!(
        text.contains("(TLS 1.2 to 1.3, no client certificates; no basic auth)"),
        "{text}"
    );
}

/// The binary refuses to start with a broken web config, saying why.
#[test]
fn a_broken_web_config_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(&path, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    let (_db_dir, db) = temp_db();
    let output = Command::new(binary())
        .args(["--web.listen-address", "127.0.0.1:0", "--storage.path", &db])
        .args(["--web.config.file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("basic_auth_users.prometheus"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// The binary serves HTTPS with basic auth from its web config.
#[tokio::test]
async fn the_binary_serves_https_with_basic_auth() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let path = files.write_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
        bcrypt_hash("scrape-secret")
    ));
    let (_db_dir, db) = temp_db();
    let exporter = ExporterProcess::start(
        &[
            "--storage.path",
            &db,
            "--web.config.file",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        exporter.logs().contains("scheme=https"),
        "{}",
        exporter.logs()
    );
    let client = https_client(&ca).build().unwrap();
    let url = format!("https://{}/metrics", exporter.address);
    let scrape = client
        .get(&url)
        .basic_auth("prometheus", Some("scrape-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(
        scrape
            .text()
            .await
            .unwrap()
            .contains("dingtalk_exporter_build_info")
    );
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
}

/// SIGHUP with a broken config file keeps the old config and sets
/// `dingtalk_config_last_reload_successful` to 0; once fixed, SIGHUP puts the new file in
/// force and sets it back to 1.
#[tokio::test]
async fn sighup_reload_with_a_broken_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yml");
    let write = |text: &str| tls_common::replace_file(&config_path, text);
    write("tasks:\n  - {agent_id: 1, task_id: 11, name: first}\n");
    let (_db_dir, db) = temp_db();
    let exporter = ExporterProcess::start(
        &[
            "--config.file",
            config_path.to_str().unwrap(),
            "--storage.path",
            &db,
        ],
        &[],
    );
    assert_eq!(
        metric(&exporter, "dingtalk_config_last_reload_successful").await,
        Some(1.0)
    );
    let started_at = metric(
        &exporter,
        "dingtalk_config_last_reload_success_timestamp_seconds",
    )
    .await
    .unwrap();
    assert_eq!(tracked_ids(&exporter).await, [11]);

    write("tasks:\n  - {agent_id: 1, task_id: 12}\npoll:\n  min_interval: soon\n");
    signal(&exporter, "HUP");
    eventually("the failed reload on /metrics", WAIT, || async {
        (metric(&exporter, "dingtalk_config_last_reload_successful").await? == 0.0).then_some(())
    })
    .await;
    assert_eq!(
        tracked_ids(&exporter).await,
        [11],
        "the broken file changed nothing"
    );
    assert!(
        exporter.logged_soon("poll.min_interval"),
        "{}",
        exporter.logs()
    );
    assert!(
        get_text(&exporter.url("/-/healthy")).await.is_some(),
        "the exporter keeps serving"
    );

    write("tasks:\n  - {agent_id: 1, task_id: 11}\n  - {agent_id: 1, task_id: 13}\n");
    signal(&exporter, "HUP");
    eventually("the successful reload on /metrics", WAIT, || async {
        (metric(&exporter, "dingtalk_config_last_reload_successful").await? == 1.0).then_some(())
    })
    .await;
    let mut ids = tracked_ids(&exporter).await;
    ids.sort();
    assert_eq!(ids, [11, 13]);
    let reloaded_at = metric(
        &exporter,
        "dingtalk_config_last_reload_success_timestamp_seconds",
    )
    .await
    .unwrap();
    assert!(reloaded_at >= started_at, "{reloaded_at} < {started_at}");
    let status = exporter.terminate();
    assert!(status.success(), "{status:?}");
}

/// The app secret and the API token never appear in the task API's answers, the landing
/// page, `/metrics`, `--config.check` or the logs (at debug level), even after polling.
#[tokio::test]
async fn secrets_appear_in_no_answer_and_no_log() {
    let sim = Simulator::start(SimConfig {
        apps: vec![SimApp::new(APP_KEY, SECRET)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let task = sim.add_task(AGENT, Timeline::stalled_at(40.0));
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("app-secret");
    let token_file = dir.path().join("api-token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    std::fs::write(&token_file, format!("{API_TOKEN}\n")).unwrap();
    let (_db_dir, db) = temp_db();
    let args = [
        "--dingtalk.api-url",
        sim.url(),
        "--dingtalk.app-key",
        APP_KEY,
        "--dingtalk.app-secret-file",
        secret_file.to_str().unwrap(),
        "--web.api-token-file",
        token_file.to_str().unwrap(),
        "--storage.path",
        &db,
        "--poll.min-interval",
        "100ms",
        "--poll.max-interval",
        "1s",
        "--log.level",
        "debug",
    ];
    let exporter = ExporterProcess::start(&args, &[]);
    let client = reqwest::Client::new();
    let tasks_url = exporter.url("/api/v1/tasks");
    let mut answers = Vec::new();
    for (token, body) in [
        (
            API_TOKEN,
            serde_json::json!({"agent_id": AGENT, "task_id": task, "name": "notice"}),
        ),
        (
            API_TOKEN,
            serde_json::json!([{"agent_id": AGENT, "task_id": 77}]),
        ),
        (API_TOKEN, serde_json::json!({"agent_id": "x"})),
        (
            "wrong-token",
            serde_json::json!({"agent_id": AGENT, "task_id": 78}),
        ),
    ] {
        let response = client
            .post(&tasks_url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        answers.push(response.text().await.unwrap());
    }
    let task_url = exporter.url(&format!("/api/v1/tasks/{AGENT}/{task}"));
    eventually("a first poll of the task", WAIT, || async {
        let answer: serde_json::Value = serde_json::from_str(&get_text(&task_url).await?).ok()?;
        answer["last_poll_at"].as_str().map(str::to_string)
    })
    .await;
    for path in [
        "/api/v1/tasks".to_string(),
        format!("/api/v1/tasks/{AGENT}/{task}"),
        "/api/v1/tasks/1/404".to_string(),
        "/".to_string(),
        "/metrics".to_string(),
    ] {
        let response = client.get(exporter.url(&path)).send().await.unwrap();
        answers.push(response.text().await.unwrap());
    }
    let (valid, check) = config_check(&args);
    assert!(valid, "{check}");
    answers.push(check);
    let logs = exporter.logs();
    assert!(logs.contains("level=debug"));
    answers.push(logs);

    let tokens = sim.issued_tokens();
    assert!(!tokens.is_empty(), "the exporter fetched a token");
    for answer in &answers {
        for secret in [SECRET, API_TOKEN]
            .into_iter()
            .chain(tokens.iter().map(String::as_str))
        {
            assert!(!answer.contains(secret), "a secret leaked into:\n{answer}");
        }
    }
    assert!(answers[4].contains("\"task_id\""), "the task list was read");
}

/// SIGTERM while clients keep registering: the exporter exits 0, and every registration it
/// acknowledged is there after a restart.
#[tokio::test]
async fn sigterm_during_registrations_loses_no_acknowledged_task() {
    let (_db_dir, db) = temp_db();
    let exporter = ExporterProcess::start(&["--storage.path", &db], &[]);
    let url = exporter.url("/api/v1/tasks");
    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut writers = Vec::new();
    for writer in 0..8_i64 {
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for sequence in 1.. {
                let task_id = writer * 1_000_000 + sequence;
                let sent = client
                    .post(&url)
                    .json(&serde_json::json!({"agent_id": AGENT, "task_id": task_id}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.lock().unwrap().push(task_id);
                    }
                    // Refused or cut off during shutdown: not acknowledged, so it may be lost.
                    Ok(_) | Err(_) => break,
                }
            }
        }));
    }
    eventually("registrations under way", WAIT, || async {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    assert!(
        writers.iter().all(|writer| !writer.is_finished()),
        "every writer is still registering when SIGTERM arrives"
    );
    let status = tokio::task::spawn_blocking(move || exporter.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    for writer in writers {
        writer.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let restarted = ExporterProcess::start(&["--storage.path", &db], &[]);
    let tracked: std::collections::HashSet<i64> =
        tracked_ids(&restarted).await.into_iter().collect();
    let lost: Vec<&i64> = acknowledged
        .iter()
        .filter(|task_id| !tracked.contains(task_id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged tasks lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

/// Oversized requests are refused before they cost anything: headers far over the 64 KiB
/// limit get 431 (or a closed connection), a body over 1 MiB gets 413, and the exporter
/// keeps serving.
#[tokio::test]
async fn oversized_headers_and_bodies_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_db_dir, db) = temp_db();
    let exporter = ExporterProcess::start(&["--storage.path", &db], &[]);

    // 200 KiB: past the limit even with hyper's read-ahead (under twice the limit), and
    // well within hyper's own default of about 400 KiB, which would answer it.
    let stream = tokio::net::TcpStream::connect(exporter.address)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let padding = "x".repeat(200 * 1024);
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}\r\n\r\n");
    // The server answers and closes before reading it all: writing may fail, and reading
    // meanwhile catches the answer before the connection is reset.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(request.as_bytes()).await;
        writer
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, reader.read_to_end(&mut answer)).await;
    let _ = writing.await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    let body = format!(
        "[{}]",
        vec!["{\"agent_id\":1,\"task_id\":1}"; 50_000].join(",")
    );
    assert!(body.len() > 1024 * 1024);
    let response = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(get_text(&exporter.url("/-/healthy")).await.is_some());
    assert!(tracked_ids(&exporter).await.is_empty());
}

/// `track` registers through basic auth given in the exporter URL, and never prints the
/// password, not even when it is refused.
#[tokio::test]
async fn track_passes_basic_auth_from_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let web_config = dir.path().join("web.yml");
    std::fs::write(
        &web_config,
        format!(
            "basic_auth_users:\n  ops: {}\n",
            bcrypt_hash("track-password-5e2a")
        ),
    )
    .unwrap();
    let (_db_dir, db) = temp_db();
    let exporter = ExporterProcess::start(
        &[
            "--storage.path",
            &db,
            "--web.config.file",
            web_config.to_str().unwrap(),
        ],
        &[],
    );
    let track = |password: &str| {
        Command::new(binary())
            .args(["track", "--agent-id", "7", "--task-id", "70"])
            .args([
                "--exporter.url",
                &format!("http://ops:{password}@{}", exporter.address),
            ])
            .output()
            .unwrap()
    };
    let refused = track("wrong-password-0b9c");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("basic auth"), "{said}");
    assert!(!said.contains("wrong-password-0b9c"), "{said}");

    let accepted = track("track-password-5e2a");
    let said = String::from_utf8_lossy(&accepted.stdout);
    assert!(accepted.status.success(), "{said}");
    assert!(!said.contains("track-password-5e2a"), "{said}");
    let client = reqwest::Client::new();
    let answer = client
        .get(exporter.url("/api/v1/tasks/7/70"))
        .basic_auth("ops", Some("track-password-5e2a"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
