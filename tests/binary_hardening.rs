//! Attacks on the store and the configuration, against the real binary: two exporters on
//! one store, a damaged store, a store file emptied behind the exporter's back, reloads that
//! would silently do less than they say, and DingTalk URLs that would send the secret in
//! clear text.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ExporterProcess, binary, metric, temp_db};

/// Runs the exporter with `args` (listening on an OS-chosen loopback port) and waits for it
/// to exit, at most 30 s: it is expected to refuse to start.
fn run_expecting_exit(args: &[&str]) -> Output {
    let mut child = Command::new(binary())
        .args(["--web.listen-address", "127.0.0.1:0"])
        .args(args)
        .env_remove("DINGTALK_APP_SECRET")
        .env_remove("DINGTALK_APP_KEY")
        .env_remove("DINGTALK_API_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the exporter binary starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "the exporter did not exit within 30 s; its output:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn register(exporter: &ExporterProcess, count: i64) {
    let batch: Vec<_> = (1..=count)
        .map(|task_id| serde_json::json!({"agent_id": 1, "task_id": task_id, "name": format!("task {task_id}")}))
        .collect();
    let answer = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&batch)
        .send()
        .await
        .expect("the exporter answers");
    assert_eq!(answer.status(), 201);
}

/// A second exporter on a store in use exits at once, saying the store is in use and by
/// which pid; the first keeps serving, and once it has stopped the store opens again.
#[tokio::test]
async fn a_second_exporter_on_the_same_store_exits_naming_the_first() {
    let (_dir, db) = temp_db();
    let first = ExporterProcess::start(&["--storage.path", &db], &[]);
    register(&first, 3).await;

    let second = run_expecting_exit(&["--storage.path", &db]);
    let text = all_output(&second);
    assert!(!second.status.success(), "{text}");
    assert!(text.contains("in use"), "{text}");
    assert!(
        text.contains(&format!("pid {}", first.child.id())),
        "{text}"
    );
    assert!(
        reqwest::get(first.url("/-/ready"))
            .await
            .unwrap()
            .status()
            .is_success(),
        "the first exporter still serves"
    );
    assert!(first.terminate().success());

    let again = ExporterProcess::start(&["--storage.path", &db], &[]);
    let tasks = common::get_text(&again.url("/api/v1/tasks")).await.unwrap();
    assert_eq!(tasks.matches("\"task_id\"").count(), 3, "{tasks}");
}

/// Overwrites the first page of an index of the `tasks` table (its table when it has none).
fn corrupt_a_tasks_index_page(db: &str) {
    let (page_size, root_page): (i64, i64) = {
        let conn = rusqlite::Connection::open(db).unwrap();
        let page_size = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        let root_page = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE tbl_name = 'tasks' AND rootpage > 0 \
                 ORDER BY type = 'index' DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .unwrap();
        (page_size, root_page)
    };
    assert!(
        !Path::new(&format!("{db}-wal")).exists()
            || std::fs::metadata(format!("{db}-wal")).unwrap().len() == 0,
        "the store was checkpointed at shutdown"
    );
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.seek(SeekFrom::Start(((root_page - 1) * page_size) as u64))
        .unwrap();
    file.write_all(&vec![0xA5; page_size as usize]).unwrap();
    file.sync_all().unwrap();
}

/// A store with a damaged index page is refused at start with a clear message and how to
/// recover, instead of starting ready and failing every registration.
#[tokio::test]
async fn a_damaged_store_is_refused_at_start() {
    let (_dir, db) = temp_db();
    let exporter = ExporterProcess::start(&["--storage.path", &db], &[]);
    register(&exporter, 300).await;
    assert!(exporter.terminate().success());
    corrupt_a_tasks_index_page(&db);

    let refused = run_expecting_exit(&["--storage.path", &db]);
    let text = all_output(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("the store is damaged"), "{text}");
    assert!(
        text.contains(".recover") && text.contains("--storage.path"),
        "{text}"
    );
}

/// A store file that exists but is empty starts as an empty store, with a warning that
/// names the file.
#[tokio::test]
async fn an_empty_store_file_is_reported_at_warn_level() {
    let (_dir, db) = temp_db();
    std::fs::write(&db, b"").unwrap();
    let exporter = ExporterProcess::start(&["--storage.path", &db], &[]);
    let logs = exporter.logs();
    let warning = logs
        .lines()
        .find(|line| line.contains("exists but is empty"))
        .unwrap_or_else(|| panic!("no warning about the empty store:\n{logs}"));
    assert!(warning.contains("level=warn"), "{warning}");
    assert!(warning.contains(&db), "{warning}");

    let (_other_dir, fresh) = temp_db();
    let quiet = ExporterProcess::start(&["--storage.path", &fresh], &[]);
    assert!(!quiet.logs().contains("exists but is empty"));
}

async fn reload(exporter: &ExporterProcess) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(exporter.url("/-/reload"))
        .send()
        .await
        .expect("the exporter answers");
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// A reload names the changed settings that need a restart (and keeps their old values);
/// an empty config file, and one that drops every app while tasks are tracked, are refused
/// and keep the configuration in force.
#[tokio::test]
async fn reloads_say_what_they_did_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("exporter.db").to_str().unwrap().to_string();
    let other_db = dir.path().join("other.db").to_str().unwrap().to_string();
    let config = dir.path().join("config.yml");
    let with_app = |storage: &str| {
        format!(
            "storage: {{path: '{storage}'}}\napps:\n  - name: hr\n    agent_id: 1\n    app_key: dinghr\n    app_secret: s3cret\n    api_url: http://127.0.0.1:9\n"
        )
    };
    std::fs::write(&config, with_app(&db)).unwrap();
    let exporter = ExporterProcess::start(&["--config.file", config.to_str().unwrap()], &[]);
    register(&exporter, 2).await;

    std::fs::write(&config, with_app(&other_db)).unwrap();
    let (status, text) = reload(&exporter).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("--storage.path") && text.contains("restart to apply"),
        "{text}"
    );
    assert!(
        exporter.logged_soon("restart to apply"),
        "{}",
        exporter.logs()
    );
    assert!(
        !Path::new(&other_db).exists(),
        "the store in use stays the one opened at start"
    );

    for (what, content, expected) in [
        ("an empty file", String::new(), "empty"),
        ("comments only", "# being rewritten\n".to_string(), "empty"),
        (
            "no app left",
            format!("storage: {{path: '{db}'}}\napps: []\n"),
            "no app",
        ),
    ] {
        std::fs::write(&config, content).unwrap();
        let (status, text) = reload(&exporter).await;
        assert_eq!(status, 500, "{what}: {text}");
        assert!(text.contains(expected), "{what}: {text}");
        assert_eq!(
            metric(&exporter, "dingtalk_config_last_reload_successful", &[]).await,
            Some(0.0),
            "{what}"
        );
        assert_eq!(
            metric(
                &exporter,
                "dingtalk_task_info",
                &[("task_id", "1"), ("app", "hr")]
            )
            .await,
            Some(1.0),
            "{what}: the app stays in force"
        );
    }

    std::fs::write(&config, with_app(&db)).unwrap();
    let (status, text) = reload(&exporter).await;
    assert_eq!((status, text.as_str()), (200, "configuration reloaded\n"));
}

/// A plain http:// DingTalk URL to another host is warned about at start; a loopback one
/// (a local simulator) is not.
#[tokio::test]
async fn plain_http_dingtalk_urls_are_warned_about_unless_loopback() {
    let (_dir, db) = temp_db();
    let start = |url: &str| {
        ExporterProcess::start(
            &[
                "--storage.path",
                &db,
                "--dingtalk.api-url",
                url,
                "--dingtalk.app-key",
                "dingkey",
            ],
            &[("DINGTALK_APP_SECRET", "s3cret-value")],
        )
    };
    let remote = start("http://192.0.2.10:8080");
    let logs = remote.logs();
    let warning = logs
        .lines()
        .find(|line| line.contains("plain http://"))
        .unwrap_or_else(|| panic!("no warning about plain http:\n{logs}"));
    assert!(
        warning.contains("level=warn") && warning.contains("192.0.2.10"),
        "{warning}"
    );
    assert!(!logs.contains("s3cret-value"));
    remote.terminate();

    let local = start("http://127.0.0.1:9");
    assert!(!local.logs().contains("plain http://"), "{}", local.logs());
}
