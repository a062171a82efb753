//! The task API over real HTTP: registration, its validation, reads, deletes and write auth.

mod http_common;

use std::sync::atomic::Ordering;

use dingtalk_exporter::secret::Secret;
use dingtalk_exporter::tracker::TaskKey;
use http_common::{TestServer, client, error_text, raw_exchange, test_config};
use serde_json::Value;

async fn post(server: &TestServer, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(server.tasks_url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers")
}

/// Registering a task answers 201 with the task, and 200 with the same task the second time.
#[tokio::test]
async fn registration_answers_201_then_200() {
    let server = TestServer::start(test_config()).await;
    let body = r#"{"agent_id":2839445214,"task_id":"256271667526","name":"payroll May"}"#;
    let first = post(&server, body).await;
    assert_eq!(first.status(), 201);
    let task: Value = first.json().await.unwrap();
    assert_eq!(task["agent_id"], 2839445214i64);
    assert_eq!(task["task_id"], 256271667526i64);
    assert_eq!(task["name"], "payroll May");
    assert_eq!(task["app"], "default");
    assert_eq!(task["state"], "active");
    assert_eq!(task["status"], Value::Null);
    assert_eq!(task["progress_ratio"], Value::Null);
    assert_eq!(task["last_poll_at"], Value::Null);
    assert_eq!(task["last_errcode"], Value::Null);
    let created_at = task["created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );
    assert!(created_at.ends_with('Z'));

    let second = post(&server, body).await;
    assert_eq!(second.status(), 200);
    let again: Value = second.json().await.unwrap();
    assert_eq!(again["created_at"], task["created_at"]);
}

/// An array registers every task and answers an array in the same order; 201 if any is new.
#[tokio::test]
async fn array_batches_register_every_task() {
    let server = TestServer::start(test_config()).await;
    assert_eq!(
        post(&server, r#"{"agent_id":1,"task_id":1}"#)
            .await
            .status(),
        201
    );
    let response = post(
        &server,
        r#"[{"agent_id":1,"task_id":1},{"agent_id":1,"task_id":2,"name":"b"},{"agent_id":"3","task_id":"4"}]"#,
    )
    .await;
    assert_eq!(response.status(), 201);
    let tasks: Vec<Value> = response.json().await.unwrap();
    let keys: Vec<(i64, i64)> = tasks
        .iter()
        .map(|task| {
            (
                task["agent_id"].as_i64().unwrap(),
                task["task_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [(1, 1), (1, 2), (3, 4)]);
    assert_eq!(server.exporter.tracker().len(), 3);

    let repeat = post(&server, r#"[{"agent_id":1,"task_id":2}]"#).await;
    assert_eq!(repeat.status(), 200);
    assert!(repeat.json::<Value>().await.unwrap().is_array());
}

/// Every class of invalid input is a clear 4xx naming the problem, never a 5xx, and a refused
/// batch registers nothing, not even its valid items.
#[tokio::test]
async fn invalid_registrations_are_clear_4xx_and_register_nothing() {
    let server = TestServer::start(test_config()).await;
    let long_name = "n".repeat(257);
    let cases: Vec<(String, &str)> = vec![
        ("{\"agent_id\":1,".to_string(), "not valid JSON"),
        ("".to_string(), "the body is empty"),
        (
            r#"{"agent_id":true,"task_id":1}"#.to_string(),
            "agent_id must be an integer",
        ),
        (
            r#"{"agent_id":1,"task_id":[2]}"#.to_string(),
            "task_id must be an integer",
        ),
        (
            r#"{"agent_id":0,"task_id":1}"#.to_string(),
            "got the number 0",
        ),
        (
            r#"{"agent_id":1,"task_id":-7}"#.to_string(),
            "got the number -7",
        ),
        (
            r#"{"agent_id":9223372036854775808,"task_id":1}"#.to_string(),
            "9223372036854775808",
        ),
        (
            r#"{"agent_id":"9223372036854775808","task_id":1}"#.to_string(),
            "9223372036854775808",
        ),
        (
            r#"{"agent_id":1.5,"task_id":1}"#.to_string(),
            "got the number 1.5",
        ),
        (
            r#"{"agent_id":1,"task_id":1,"name":1}"#.to_string(),
            "name must be a string",
        ),
        (
            format!(r#"{{"agent_id":1,"task_id":1,"name":"{long_name}"}}"#),
            "at most 256",
        ),
        (
            r#"{"agent_id":1,"task_id":1,"name":"a\u0007b"}"#.to_string(),
            "control character U+0007",
        ),
        (
            r#"{"agent_id":1,"task_id":1,"name":"a\nb"}"#.to_string(),
            "control character U+000A",
        ),
        (
            r#"{"agent_id":1,"task_id":1,"color":"red"}"#.to_string(),
            "unknown field \"color\"",
        ),
        ("[]".to_string(), "the array is empty"),
        ("42".to_string(), "the body is the number 42"),
        (
            r#"[{"agent_id":1,"task_id":1},{"agent_id":1,"task_id":1}]"#.to_string(),
            "items 0 and 1 are the same task",
        ),
        (
            r#"[{"agent_id":1,"task_id":10},{"agent_id":1,"task_id":0}]"#.to_string(),
            "item 1: task_id must be an integer",
        ),
    ];
    for (body, expected) in cases {
        let (status, message) = error_text(post(&server, body.clone()).await).await;
        assert_eq!(status, 400, "{body}: {message}");
        assert!(
            message.contains(expected),
            "{body}: {message:?} should mention {expected:?}"
        );
    }
    assert_eq!(
        server.exporter.tracker().len(),
        0,
        "a refused registration left tasks behind"
    );
}

/// A body over 1 MiB is refused with 413 and a JSON error, and the client reads that answer.
#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = TestServer::start(test_config()).await;
    let item = r#"{"agent_id":1,"task_id":1},"#;
    let mut body = String::from("[");
    while body.len() <= 1024 * 1024 {
        body.push_str(item);
    }
    body.push_str(r#"{"agent_id":1,"task_id":2}]"#);
    let (status, message) = error_text(post(&server, body.clone()).await).await;
    assert_eq!(status, 413);
    assert!(message.contains("larger than 1048576 bytes"), "{message}");

    // Without Content-Length (chunked), the limit holds as the bytes arrive.
    let mut request = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.address
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(64 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(server.address, &request).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("larger than 1048576 bytes"), "{answer}");
    assert_eq!(server.exporter.tracker().len(), 0);
}

/// A client that asks before sending an oversized body (`Expect: 100-continue`) gets the 413
/// at once, without being invited to send it.
#[tokio::test]
async fn oversized_body_refused_before_it_is_sent() {
    let server = TestServer::start(test_config()).await;
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        server.address,
        5 * 1024 * 1024
    );
    let answer = raw_exchange(server.address, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

/// A task can be read back; an unknown one is a JSON 404; bad ids in the path are a 400.
#[tokio::test]
async fn get_one_task_or_404() {
    let server = TestServer::start(test_config()).await;
    post(&server, r#"{"agent_id":5,"task_id":6,"name":"x"}"#).await;
    let found = client()
        .get(format!("{}/5/6", server.tasks_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    let task: Value = found.json().await.unwrap();
    assert_eq!(
        (task["agent_id"].as_i64(), task["task_id"].as_i64()),
        (Some(5), Some(6))
    );

    let missing = client()
        .get(format!("{}/5/7", server.tasks_url()))
        .send()
        .await
        .unwrap();
    let (status, message) = error_text(missing).await;
    assert_eq!(status, 404);
    assert!(
        message.contains("task 7 of agent 5 is not tracked"),
        "{message}"
    );

    let bad = client()
        .get(format!("{}/5/0", server.tasks_url()))
        .send()
        .await
        .unwrap();
    let (status, message) = error_text(bad).await;
    assert_eq!(status, 400);
    assert!(message.contains("task_id in the path"), "{message}");
}

/// The list answers {"tasks": [...]} ordered by agent and task id.
#[tokio::test]
async fn list_answers_every_task() {
    let server = TestServer::start(test_config()).await;
    post(
        &server,
        r#"[{"agent_id":2,"task_id":1},{"agent_id":1,"task_id":9}]"#,
    )
    .await;
    let list: Value = client()
        .get(server.tasks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["agent_id"], 1);
    assert_eq!(tasks[1]["agent_id"], 2);
}

/// DELETE stops tracking (204), and a second DELETE finds nothing (404).
#[tokio::test]
async fn delete_answers_204_then_404() {
    let server = TestServer::start(test_config()).await;
    post(&server, r#"{"agent_id":5,"task_id":6}"#).await;
    let url = format!("{}/5/6", server.tasks_url());
    let deleted = client().delete(&url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        server
            .exporter
            .tracker()
            .get(TaskKey {
                agent_id: 5,
                task_id: 6
            })
            .is_none()
    );
    let (status, _) = error_text(client().delete(&url).send().await.unwrap()).await;
    assert_eq!(status, 404);
}

/// Unknown API paths are a JSON 404; a wrong method is a 405 naming the allowed ones.
#[tokio::test]
async fn unknown_paths_and_wrong_methods() {
    let server = TestServer::start(test_config()).await;
    let (status, message) = error_text(
        client()
            .get(format!("{}/api/v2/tasks", server.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(message.contains("/api/v1/tasks"), "{message}");
    let (status, _) = error_text(
        client()
            .get(format!("{}/1/2/3", server.tasks_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    let wrong = client().put(server.tasks_url()).send().await.unwrap();
    assert_eq!(wrong.headers()["allow"], "GET, HEAD, POST");
    let (status, _) = error_text(wrong).await;
    assert_eq!(status, 405);
    let wrong = client()
        .post(format!("{}/1/2", server.tasks_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.headers()["allow"], "GET, HEAD, DELETE");
}

/// Without a token configured, writes from loopback are accepted.
#[tokio::test]
async fn loopback_writes_need_no_token_when_none_is_configured() {
    let server = TestServer::start(test_config()).await;
    assert_eq!(
        post(&server, r#"{"agent_id":1,"task_id":1}"#)
            .await
            .status(),
        201
    );
    let deleted = client()
        .delete(format!("{}/1/1", server.tasks_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

/// With a token configured, writes without it or with a wrong one get 401 and a Bearer
/// challenge, the right one is accepted; reads stay open.
#[tokio::test]
async fn configured_token_guards_writes() {
    let mut config = test_config();
    config.web.api_token = Some(Secret::new("correct-horse"));
    let server = TestServer::start(config).await;
    let body = r#"{"agent_id":1,"task_id":1}"#;

    for token in [None, Some("wrong"), Some("correct-horse-battery")] {
        let mut request = client().post(server.tasks_url()).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{token:?}"
        );
        let (status, message) = error_text(response).await;
        assert_eq!(status, 401, "{token:?}");
        assert!(message.contains("--web.api-token-file"), "{message}");
        assert!(
            !message.contains("correct-horse"),
            "the token leaked: {message}"
        );
    }
    assert_eq!(server.exporter.tracker().len(), 0);

    let accepted = client()
        .post(server.tasks_url())
        .bearer_auth("correct-horse")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 201);
    assert_eq!(
        client()
            .get(server.tasks_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let url = format!("{}/1/1", server.tasks_url());
    let (status, _) = error_text(client().delete(&url).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let deleted = client()
        .delete(&url)
        .bearer_auth("correct-horse")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

/// Past --tasks.max a registration is refused whole with 409 and what to do about it.
#[tokio::test]
async fn full_tracker_refuses_with_409() {
    let mut config = test_config();
    config.poll.tasks_max = 2;
    let server = TestServer::start(config).await;
    assert_eq!(
        post(&server, r#"{"agent_id":1,"task_id":1}"#)
            .await
            .status(),
        201
    );
    let response = post(
        &server,
        r#"[{"agent_id":1,"task_id":2},{"agent_id":1,"task_id":3}]"#,
    )
    .await;
    let (status, message) = error_text(response).await;
    assert_eq!(status, 409);
    assert!(message.contains("--tasks.max=2"), "{message}");
    assert_eq!(server.exporter.tracker().len(), 1);
    // Tasks already tracked can still be registered again.
    assert_eq!(
        post(&server, r#"{"agent_id":1,"task_id":1}"#)
            .await
            .status(),
        200
    );
}

/// When the store cannot commit, the answer is 503 and nothing is registered.
#[tokio::test]
async fn store_failure_is_503_and_registers_nothing() {
    let server = TestServer::start(test_config()).await;
    server.store.fail_writes.store(true, Ordering::SeqCst);
    let (status, message) = error_text(post(&server, r#"{"agent_id":1,"task_id":1}"#).await).await;
    assert_eq!(status, 503);
    assert!(message.contains("nothing was registered"), "{message}");
    assert_eq!(server.exporter.tracker().len(), 0);
}
