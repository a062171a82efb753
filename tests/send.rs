//! `dingtalk-exporter send` end to end: the real binary sends through the simulator and
//! registers with a running exporter; a send that went out is never lost to a failed
//! registration; `--dry-run` sends nothing.

mod common;

use std::process::{Output, Stdio};

use std::time::Duration;
use tokio::io::AsyncWriteExt;

use common::{binary, eventually, exporter_against, temp_db};
use dingtalk_exporter::simulator::{Behaviour, Simulator};

const SECRET: &str = "send-command-secret-93be";
const APP_KEY: &str = "dingsendcmd";
const AGENT: i64 = 4_100_200_300;
const WAIT: Duration = Duration::from_secs(30);

async fn simulator() -> Simulator {
    common::start_simulator(APP_KEY, SECRET, Behaviour::default()).await
}

/// Runs `send` with the app's credentials (the secret from the environment, as the
/// exporter takes it), `args`, and `stdin` on standard input.
async fn run_send(sim: &Simulator, args: &[&str], stdin: &str) -> Output {
    let mut child = tokio::process::Command::new(binary())
        .arg("send")
        .args([
            "--dingtalk.api-url",
            sim.url(),
            "--dingtalk.app-key",
            APP_KEY,
        ])
        .args(args)
        .env("DINGTALK_APP_SECRET", SECRET)
        .env_remove("DINGTALK_API_URL")
        .env_remove("DINGTALK_APP_KEY")
        .env_remove("DINGTALK_EXPORTER_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("send finishes in time")
        .expect("send runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The text read from standard input is sent, the task_id printed, and the exporter
/// tracks the task with its name, recipient count and `source: send`.
#[tokio::test]
async fn sends_and_registers_with_the_exporter() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let exporter = exporter_against(&sim, (APP_KEY, SECRET), &db, &[], &[]);
    let exporter_url = exporter.url("");
    let output = run_send(
        &sim,
        &[
            "--agent-id",
            &AGENT.to_string(),
            "--user-ids",
            "ann,ben,ann",
            "--name",
            "backup finished",
            "--exporter.url",
            &exporter_url,
        ],
        "the nightly backup finished\n",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let task_id: i64 = text(&output.stdout).trim().parse().expect("the task_id");
    let sent = sim
        .tasks()
        .into_iter()
        .find(|task| task.task_id == task_id)
        .expect("the simulator has the task");
    assert_eq!(sent.agent_id, AGENT);
    let task = eventually("the task to be tracked", WAIT, || {
        common::task_json(&exporter, AGENT, task_id)
    })
    .await;
    assert_eq!(task["name"], "backup finished");
    assert_eq!(task["recipients_expected"], 2);
    assert_eq!(task["source"], "send");
    for shown in [text(&output.stdout), text(&output.stderr)] {
        assert!(!shown.contains(SECRET));
    }
}

/// With the exporter down the message still goes out once: the task_id is printed, the
/// failure explained, and the exit status is 3.
#[tokio::test]
async fn registration_failure_exits_3_with_the_task_id() {
    let sim = simulator().await;
    let msg_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        msg_file.path(),
        r#"{"msgtype":"markdown","markdown":{"title":"Outage notice","text":"details"}}"#,
    )
    .unwrap();
    let output = run_send(
        &sim,
        &[
            "--agent-id",
            &AGENT.to_string(),
            "--dept-ids",
            "3",
            "--msg-file",
            msg_file.path().to_str().unwrap(),
            "--exporter.url",
            "http://127.0.0.1:1",
        ],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let task_id: i64 = text(&output.stdout).trim().parse().expect("the task_id");
    assert_eq!(sim.stats().calls.asyncsend_v2, 1, "sent exactly once");
    assert!(sim.tasks().iter().any(|task| task.task_id == task_id));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not registered"), "{stderr}");
    assert!(stderr.contains(&format!("--task-id {task_id}")), "{stderr}");
}

/// `--dry-run` prints the request, without the access token, and calls nothing.
#[tokio::test]
async fn dry_run_prints_the_request_and_sends_nothing() {
    let sim = simulator().await;
    let output = run_send(
        &sim,
        &[
            "--agent-id",
            &AGENT.to_string(),
            "--all-users",
            "--text",
            "hello everyone",
            "--dry-run",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("asyncsend_v2"), "{stdout}");
    assert!(stdout.contains("\"to_all_user\": true"), "{stdout}");
    assert!(stdout.contains("hello everyone"), "{stdout}");
    assert!(!stdout.contains(SECRET));
    let calls = sim.stats().calls;
    assert_eq!(calls.gettoken + calls.asyncsend_v2, 0);
}

/// A send DingTalk refuses exits 1 with DingTalk's reason and registers nothing.
#[tokio::test]
async fn refused_send_exits_1() {
    let sim = simulator().await;
    let output = run_send(
        &sim,
        &["--agent-id", "0", "--user-ids", "ann", "--text", "hi"],
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("errcode"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout).trim().is_empty());
}
