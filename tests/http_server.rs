//! The server itself over real HTTP: health, readiness, reload, the landing page, the
//! telemetry path, and its limits and graceful shutdown.

mod http_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::http::ServerLimits;
use dingtalk_exporter::secret::Secret;
use dingtalk_exporter::tracker::{NewTask, TaskKey};
use http_common::{
    TestServer, client, eventually, exporter, exporter_with_source, raw_exchange, test_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// /-/healthy answers 200 while the process runs.
#[tokio::test]
async fn healthy_answers_200() {
    let server = TestServer::start(test_config()).await;
    let response = client()
        .get(format!("{}/-/healthy", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// /-/ready follows the exporter's readiness: 200 when ready, 503 when not.
#[tokio::test]
async fn ready_follows_readiness() {
    let server = TestServer::start(test_config()).await;
    let url = format!("{}/-/ready", server.url);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 200);
    server.exporter.set_ready(false);
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("not ready"));
}

/// POST /-/reload answers 200 when the new config is valid, 500 with the reason (and the
/// reload gauge at 0) when it is not.
#[tokio::test]
async fn reload_reports_success_and_failure() {
    let broken = Arc::new(AtomicBool::new(false));
    let config = test_config();
    let source_config = config.clone();
    let source_broken = broken.clone();
    let (exporter, store) = exporter_with_source(
        config,
        Box::new(move || {
            if source_broken.load(Ordering::SeqCst) {
                Err("config.yml: apps[0].agent_id must be a positive integer".to_string())
            } else {
                Ok(source_config.clone())
            }
        }),
    );
    let server = TestServer::start_exporter(exporter, store, ServerLimits::default()).await;
    let url = format!("{}/-/reload", server.url);

    assert_eq!(client().post(&url).send().await.unwrap().status(), 200);
    assert_eq!(
        server
            .exporter
            .telemetry()
            .sample("dingtalk_config_last_reload_successful", &[]),
        Some(1.0)
    );

    broken.store(true, Ordering::SeqCst);
    let response = client().post(&url).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("apps[0].agent_id must be a positive integer"),
        "{text}"
    );
    assert_eq!(
        server
            .exporter
            .telemetry()
            .sample("dingtalk_config_last_reload_successful", &[]),
        Some(0.0)
    );

    assert_eq!(client().get(&url).send().await.unwrap().status(), 405);
}

/// With an API token configured, reloading is a write like any other: it needs the token.
#[tokio::test]
async fn reload_needs_the_token_when_one_is_configured() {
    let mut config = test_config();
    config.web.api_token = Some(Secret::new("t0ken"));
    let server = TestServer::start(config).await;
    let url = format!("{}/-/reload", server.url);
    let refused = client().post(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    let accepted = client()
        .post(&url)
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
}

/// The landing page names the exporter, links its endpoints and lists tasks with every
/// task-provided string HTML-escaped.
#[tokio::test]
async fn landing_page_lists_tasks_escaped() {
    let server = TestServer::start(test_config()).await;
    let hostile = r#"<script>alert("x")</script> & 'co'"#;
    server
        .exporter
        .tracker()
        .register(
            vec![NewTask {
                key: TaskKey {
                    agent_id: 11,
                    task_id: 22,
                },
                name: hostile.to_string(),
                recipients: None,
                source: dingtalk_exporter::tracker::TaskSource::Api,
            }],
            now_ms(),
        )
        .await
        .unwrap();
    let response = client().get(&server.url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("DingTalk Exporter"));
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.contains("href=\"/metrics\""));
    assert!(page.contains("href=\"/-/healthy\""));
    assert!(page.contains("href=\"/api/v1/tasks\""));
    assert!(
        page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert"),
        "unescaped name on the page"
    );
    assert!(page.contains("<td class=\"num\">22</td>"));
}

/// The landing page shows at most 500 tasks, the newest first, and says so.
#[tokio::test]
async fn landing_page_caps_its_rows() {
    let (exporter, store) = exporter(test_config());
    let start = now_ms();
    for task_id in 1..=600i64 {
        let task = NewTask {
            key: TaskKey {
                agent_id: 1,
                task_id,
            },
            name: format!("task-{task_id}"),
            recipients: None,
            source: dingtalk_exporter::tracker::TaskSource::Api,
        };
        exporter
            .tracker()
            .register(vec![task], start + task_id)
            .await
            .unwrap();
    }
    let server = TestServer::start_exporter(exporter, store, ServerLimits::default()).await;
    let page = client()
        .get(&server.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows = page.matches("<tr><td>task-").count();
    assert_eq!(rows, 500);
    assert!(page.contains("Showing the 500 most recently registered"));
    assert!(page.contains(">task-600<"));
    assert!(!page.contains(">task-100<"));
    assert!(page.find(">task-600<").unwrap() < page.find(">task-599<").unwrap());
}

/// --web.telemetry-path moves the exposition; the old path is then unknown.
#[tokio::test]
async fn telemetry_path_is_configurable() {
    let mut config = test_config();
    config.web.telemetry_path = "/custom/metrics".to_string();
    let server = TestServer::start(config).await;
    let moved = client()
        .get(format!("{}/custom/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    assert!(
        moved
            .text()
            .await
            .unwrap()
            .contains("dingtalk_tasks{state=\"active\"} 0")
    );
    let old = client()
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 404);
}

/// Shutdown lets a request in flight finish, then stops accepting and returns.
#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    let mut server = TestServer::start(test_config()).await;
    let body = br#"{"agent_id":1,"task_id":1}"#;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // "100 Continue" comes when the handler starts reading the body: the request is in flight.
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).await.unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));

    server.shut_down();
    let address = server.address;
    eventually(
        "the listener to close",
        Duration::from_secs(10),
        || async move { TcpStream::connect(address).await.is_err().then_some(()) },
    )
    .await;

    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201 Created"), "{answer}");
    let finished = server.finished.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), finished)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(server.exporter.tracker().len(), 1);
}

/// A client that does not finish its request headers in time is disconnected.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (exporter, store) = exporter(test_config());
    let limits = ServerLimits {
        header_read_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = TestServer::start_exporter(exporter, store, limits).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
}

/// Past the connection cap, an idle keep-alive connection gives up its slot: the new client
/// is served at once and the idle one is closed.
#[tokio::test]
async fn connection_cap_reclaims_idle_connections() {
    let (exporter, store) = exporter(test_config());
    let limits = ServerLimits {
        max_connections: 1,
        ..ServerLimits::default()
    };
    let server = TestServer::start_exporter(exporter, store, limits).await;
    let request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n";

    let mut first = TcpStream::connect(server.address).await.unwrap();
    first.write_all(request).await.unwrap();
    let mut answer = [0u8; 15];
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");

    let mut second = TcpStream::connect(server.address).await.unwrap();
    second.write_all(request).await.unwrap();
    let mut answer = [0u8; 15];
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut answer))
        .await
        .expect("the new client is served while the idle one holds the only slot")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert!(
        rest.ends_with(b"healthy.\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
}

/// Past the connection cap, when every connection is answering a request, a new client
/// waits until one closes, then is served.
#[tokio::test]
async fn connection_cap_queues_new_clients_while_all_are_busy() {
    let (exporter, store) = exporter(test_config());
    let limits = ServerLimits {
        max_connections: 1,
        ..ServerLimits::default()
    };
    let server = TestServer::start_exporter(exporter, store, limits).await;

    // The first client holds the only slot with a request in flight: its head is read and
    // the handler waits for the body it was invited to send.
    let body = br#"{"agent_id":1,"task_id":1}"#;
    let mut first = TcpStream::connect(server.address).await.unwrap();
    let head = format!(
        "POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    first.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    first.read_exact(&mut interim).await.unwrap();
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));

    // From another address: one address past its share is refused, not queued.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut second = socket.connect(server.address).await.unwrap();
    second
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
    assert!(early.is_err(), "the second client was served past the cap");

    first.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 201 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut answer = [0u8; 15];
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut answer))
        .await
        .expect("the second client is served once the first leaves")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
}

/// Unknown pages are a plain 404; a HEAD of /metrics answers like a GET without a body.
#[tokio::test]
async fn unknown_pages_and_head_requests() {
    let server = TestServer::start(test_config()).await;
    let answer = raw_exchange(
        server.address,
        b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found"), "{answer}");
    let head = client()
        .head(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(head.text().await.unwrap().is_empty());
}
