//! Hostile input against the real binary: registration bodies that the parser's own tests
//! (tests/http_api.rs, tests/http_registration.rs) do not already cover, each a clear 4xx
//! and none a 5xx or a crash; and task names with quotes, backslashes, newlines, non-ASCII
//! text and HTML reaching `/metrics` correctly escaped (checked by promtool) and the
//! landing page HTML-escaped.

mod common;
#[allow(dead_code)]
#[path = "http_common/exposition.rs"]
mod exposition;
mod prometheus_tools;

use common::{ExporterProcess, get_text, temp_db};
use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{Task, TaskKey, TaskStore};
use prometheus_tools::{check_metrics, prometheus_binary};
use serde_json::Value;

/// The most tasks the exporter of these tests tracks, so a batch can go past it cheaply.
const TASKS_MAX: usize = 100;

fn exporter(db: &str) -> ExporterProcess {
    let tasks_max = TASKS_MAX.to_string();
    ExporterProcess::start(&["--storage.path", db, "--tasks.max", &tasks_max], &[])
}

async fn post(exporter: &ExporterProcess, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the exporter answers");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

async fn tracked(exporter: &ExporterProcess) -> Vec<Value> {
    let text = get_text(&exporter.url("/api/v1/tasks"))
        .await
        .expect("the task list");
    let list: Value = serde_json::from_str(&text).unwrap();
    list["tasks"].as_array().unwrap().clone()
}

/// A batch of `count` distinct valid tasks, then `last` as the final item.
fn batch_ending_with(count: usize, last: &str) -> Vec<u8> {
    let mut body = String::from("[");
    for task_id in 1..=count {
        body.push_str(&format!(r#"{{"agent_id":1,"task_id":{task_id}}},"#));
    }
    body.push_str(last);
    body.push(']');
    body.into_bytes()
}

/// Bodies from the edges of JSON and of the id rules that the parser's own tests leave out:
/// the real binary refuses each with a 4xx and a JSON error naming the problem, stays up,
/// and registers nothing of them.
#[tokio::test]
async fn the_binary_refuses_hostile_registrations_with_a_clear_4xx() {
    let (_dir, db) = temp_db();
    let exporter = exporter(&db);
    let json = "application/json";
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "invalid UTF-8 in a name",
            json,
            b"{\"agent_id\":1,\"task_id\":1,\"name\":\"\xff\xfe\"}".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "a lone surrogate escape",
            json,
            br#"{"agent_id":1,"task_id":1,"name":"\ud800"}"#.to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "100,000 nested arrays (a stack overflow if parsed recursively without a limit)",
            json,
            "[".repeat(100_000).into_bytes(),
            400,
            "not valid JSON",
        ),
        (
            "a number beyond f64",
            json,
            br#"{"agent_id":1e400,"task_id":1}"#.to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "an id below i64::MIN",
            json,
            br#"{"agent_id":1,"task_id":-9223372036854775809}"#.to_vec(),
            400,
            "task_id must be an integer",
        ),
        (
            "an empty id string",
            json,
            br#"{"agent_id":"","task_id":1}"#.to_vec(),
            400,
            "agent_id must be an integer",
        ),
        (
            "an id string with a space, a sign or hex",
            json,
            br#"[{"agent_id":" 12","task_id":1},{"agent_id":"+12","task_id":2},{"agent_id":"0x1F","task_id":3}]"#.to_vec(),
            400,
            "item 0: agent_id must be an integer",
        ),
        (
            "a missing agent_id",
            json,
            br#"{"task_id":1}"#.to_vec(),
            400,
            "agent_id is missing",
        ),
        (
            "a null body",
            json,
            b"null".to_vec(),
            400,
            "the body is null",
        ),
        (
            "a name that is an object",
            json,
            br#"{"agent_id":1,"task_id":1,"name":{"first":"x"}}"#.to_vec(),
            400,
            "name must be a string",
        ),
        (
            "a byte-order mark before the JSON",
            json,
            b"\xef\xbb\xbf{\"agent_id\":1,\"task_id\":1}".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "two objects back to back",
            json,
            br#"{"agent_id":1,"task_id":1}{"agent_id":1,"task_id":2}"#.to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "a form instead of JSON",
            "application/x-www-form-urlencoded",
            b"agent_id=1&task_id=1".to_vec(),
            415,
            "Content-Type: application/json",
        ),
        (
            "257 four-byte characters in a name",
            json,
            format!(
                r#"{{"agent_id":1,"task_id":1,"name":"{}"}}"#,
                "😀".repeat(257)
            )
            .into_bytes(),
            400,
            "name is 257 characters long",
        ),
        (
            "a DEL character in a name",
            json,
            br#"{"agent_id":1,"task_id":1,"name":"a\u007fb"}"#.to_vec(),
            400,
            "control character U+007F",
        ),
        (
            "a key named twice (parsers disagree on which wins)",
            json,
            br#"{"agent_id":1,"task_id":1,"task_id":2}"#.to_vec(),
            400,
            "the key \"task_id\" appears twice",
        ),
        (
            "a right-to-left override in a name (dashboard spoofing)",
            json,
            "{\"agent_id\":1,\"task_id\":1,\"name\":\"pay\u{202E}llorp\"}"
                .as_bytes()
                .to_vec(),
            400,
            "invisible character U+202E",
        ),
        (
            "a zero-width space in a name, escaped",
            json,
            br#"{"agent_id":1,"task_id":1,"name":"pay\u200broll"}"#.to_vec(),
            400,
            "invisible character U+200B",
        ),
        (
            "20,000 valid items and a bad last one (almost 1 MiB)",
            json,
            batch_ending_with(20_000, r#"{"agent_id":1,"task_id":"x"}"#),
            400,
            "item 20000: task_id must be an integer",
        ),
        (
            "more new tasks than --tasks.max",
            json,
            batch_ending_with(TASKS_MAX, r#"{"agent_id":2,"task_id":1}"#),
            409,
            "would exceed --tasks.max=100",
        ),
    ];
    for (what, content_type, body, status, expected) in cases {
        assert!(body.len() <= 1024 * 1024, "{what}: the body is over 1 MiB");
        let (answered, text) = post(&exporter, content_type, body).await;
        assert_eq!(answered, status, "{what}: {text}");
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: the answer is not JSON: {text}"));
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{what}: {message:?} should mention {expected:?}"
        );
    }
    assert!(
        tracked(&exporter).await.is_empty(),
        "a refused registration left tasks behind"
    );
    let healthy = reqwest::get(exporter.url("/-/healthy")).await.unwrap();
    assert_eq!(healthy.status(), 200, "{}", exporter.logs());
    assert!(!exporter.logs().contains("panicked"), "{}", exporter.logs());
}

/// Names that are hard to quote, each registered through the API.
const API_NAMES: [&str; 5] = [
    r#"say "hi""#,
    r#"C:\reports\May"#,
    "工资通知 — Mai ✓ 😀",
    r#"<script>alert("x")</script> & 'co'"#,
    r#"all: \ " \n done"#,
];

/// A name the API refuses (a line break) but a store written by hand, or by an older
/// release, may still hold: it must come out escaped all the same.
const STORED_NAME: &str = "two\nlines\tand a tab";

/// Runs `promtool check metrics` on `text`, or `None` when promtool is missing and not
/// required (CI sets DINGTALK_EXPORTER_REQUIRE_PROMETHEUS so that it fails instead).
fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let promtool = prometheus_binary("promtool")?;
    Some(check_metrics(&promtool, text))
}

/// Task names with quotes, backslashes, line breaks, non-ASCII text and HTML come out of the
/// real binary exactly: escaped on `/metrics` (which promtool accepts), HTML-escaped on the
/// landing page, and as they were in the task API.
#[tokio::test]
async fn hostile_names_come_out_escaped_everywhere() {
    let (_dir, db) = temp_db();
    {
        let store = SqliteStore::open(std::path::Path::new(&db)).unwrap();
        let key = TaskKey {
            agent_id: 9,
            task_id: 99,
        };
        store
            .insert_new(&[Task::registered(key, STORED_NAME.to_string(), now_ms())])
            .unwrap();
    }
    let exporter = exporter(&db);
    let batch: Vec<Value> = API_NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| serde_json::json!({"agent_id": 7, "task_id": index + 1, "name": name}))
        .collect();
    let (status, text) = post(
        &exporter,
        "application/json",
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    let mut expected: Vec<(String, String)> = API_NAMES
        .iter()
        .enumerate()
        .map(|(index, name)| ((index + 1).to_string(), name.to_string()))
        .collect();
    expected.push(("99".to_string(), STORED_NAME.to_string()));

    let metrics = get_text(&exporter.url("/metrics")).await.unwrap();
    let parsed = exposition::parse(&metrics)
        .unwrap_or_else(|err| panic!("invalid exposition: {err}\n{metrics}"));
    for (task_id, name) in &expected {
        let info = parsed.find("dingtalk_task_info", &[("task_id", task_id)]);
        assert_eq!(info.len(), 1, "task {task_id}");
        assert_eq!(&info[0].labels["name"], name, "task {task_id}");
    }
    for escaped in [
        r#"name="say \"hi\"""#,
        r#"name="C:\\reports\\May""#,
        r#"name="all: \\ \" \\n done""#,
        r#"name="two\nlines	and a tab""#,
        "工资通知 — Mai ✓ 😀",
    ] {
        assert!(
            metrics.contains(escaped),
            "{escaped} not in the exposition:\n{metrics}"
        );
    }
    match promtool_check(&metrics) {
        Some(outcome) => outcome.unwrap_or_else(|said| panic!("promtool: {said}\n{metrics}")),
        None => eprintln!("promtool not in PATH; its check was skipped"),
    }

    let page = get_text(&exporter.url("/")).await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "unescaped name: {page}");
    assert!(page.contains("say &quot;hi&quot;"), "{page}");
    assert!(page.contains("工资通知 — Mai ✓ 😀"), "{page}");

    let listed: Vec<(String, String)> = tracked(&exporter)
        .await
        .iter()
        .map(|task| {
            (
                task["task_id"].to_string(),
                task["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for pair in &expected {
        assert!(listed.contains(pair), "{pair:?} not in {listed:?}");
    }
}
