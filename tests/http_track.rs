//! `dingtalk-exporter track` against the real server.

mod http_common;

use dingtalk_exporter::commands::cli::TrackArgs;
use dingtalk_exporter::commands::track;
use dingtalk_exporter::secret::Secret;
use dingtalk_exporter::tracker::TaskKey;
use http_common::{TestServer, test_config};

fn args(server: &TestServer, token_file: Option<std::path::PathBuf>) -> TrackArgs {
    TrackArgs {
        exporter_url: format!("{}/", server.url),
        agent_id: 2839445214,
        task_id: 256271667526,
        name: Some("payroll May".to_string()),
        recipients: Some(1200),
        api_token_file: token_file,
    }
}

const KEY: TaskKey = TaskKey {
    agent_id: 2839445214,
    task_id: 256271667526,
};

/// `track` registers the task and says so; a second run says it was already tracked.
#[tokio::test]
async fn track_registers_a_task() {
    let server = TestServer::start(test_config()).await;
    let summary = track::run(&args(&server, None)).await.unwrap();
    assert_eq!(
        summary,
        "now tracking task 256271667526 of agent 2839445214 (\"payroll May\"): state active"
    );
    let tracked = server.exporter.tracker().get(KEY).unwrap();
    assert_eq!(tracked.name, "payroll May");
    assert_eq!(
        tracked.recipients_expected,
        Some(1200),
        "--recipients reaches the registration"
    );
    let again = track::run(&args(&server, None)).await.unwrap();
    assert!(
        again.starts_with("already tracking task 256271667526"),
        "{again}"
    );
}

/// `track` sends the (trimmed) token from its token file; a wrong token gives the
/// exporter's own error text, and the token is never in it.
#[tokio::test]
async fn track_uses_the_token_file() {
    let mut config = test_config();
    config.web.api_token = Some(Secret::new("tr4ck-token"));
    let server = TestServer::start(config).await;
    let dir = tempfile::tempdir().unwrap();

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let error = track::run(&args(&server, Some(wrong))).await.unwrap_err();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("the API token is wrong"), "{error}");
    assert!(
        !error.contains("not-the-token") && !error.contains("tr4ck-token"),
        "{error}"
    );
    assert!(server.exporter.tracker().get(KEY).is_none());

    let right = dir.path().join("right");
    std::fs::write(&right, "tr4ck-token\n").unwrap();
    let summary = track::run(&args(&server, Some(right))).await.unwrap();
    assert!(summary.starts_with("now tracking"), "{summary}");
    assert!(server.exporter.tracker().get(KEY).is_some());
}

/// An exporter that is not there gives an error naming where `track` looked.
#[tokio::test]
async fn track_reports_an_unreachable_exporter() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let args = TrackArgs {
        exporter_url: format!("http://{address}"),
        agent_id: 1,
        task_id: 2,
        name: None,
        recipients: None,
        api_token_file: None,
    };
    let error = track::run(&args).await.unwrap_err();
    assert!(
        error.starts_with(&format!(
            "could not reach the exporter at http://{address}/api/v1/tasks"
        )),
        "{error}"
    );
}

/// Ids the exporter refuses come back as its words, not as a crash.
#[tokio::test]
async fn track_relays_validation_errors() {
    let server = TestServer::start(test_config()).await;
    let mut refused = args(&server, None);
    refused.task_id = 0;
    let error = track::run(&refused).await.unwrap_err();
    assert!(error.contains("HTTP 400"), "{error}");
    assert!(
        error.contains("task_id must be an integer from 1"),
        "{error}"
    );
}
