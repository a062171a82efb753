//! The tracking proxy in the real binary, between a sender and the simulator, over real
//! HTTP: relayed unchanged, sends tracked, never an open proxy, nothing secret shown, relayed
//! calls counted across restarts.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ExporterProcess, eventually, exporter_against, get_text, metric, temp_db};
use dingtalk_exporter::simulator::{Behaviour, Simulator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "s3cret-of-the-sending-app-5d1e";
const APP_KEY: &str = "dingsenderapp";
const AGENT: i64 = 2_839_445_214;
const WAIT: Duration = Duration::from_secs(30);
const SEND_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";

async fn simulator() -> Simulator {
    common::start_simulator(APP_KEY, SECRET, Behaviour::default()).await
}

/// The exporter against `sim`, with the proxy in front of it and fast polling.
fn exporter_with_proxy(sim: &Simulator, db: &str, extra: &[&str]) -> (ExporterProcess, String) {
    let flags = [
        ("--poll.min-interval", "100ms"),
        ("--poll.max-interval", "1s"),
        ("--proxy.listen-address", "127.0.0.1:0"),
    ];
    let exporter = exporter_against(sim, (APP_KEY, SECRET), db, &flags, extra);
    let address = proxy_address(&exporter);
    (exporter, format!("http://{address}"))
}

/// The proxy's address, from the line that says it started.
fn proxy_address(exporter: &ExporterProcess) -> SocketAddr {
    let logs = exporter.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("tracking proxy started"))
        .unwrap_or_else(|| panic!("no proxy start line in:\n{logs}"));
    let start = line.find("proxy_address=").expect("proxy_address field") + "proxy_address=".len();
    line[start..]
        .split(|c: char| c.is_whitespace() || c == '"')
        .find(|part| !part.is_empty())
        .and_then(|address| address.parse().ok())
        .expect("a socket address")
}

async fn token_through(proxy: &str) -> String {
    let answer: Value = reqwest::get(format!(
        "{proxy}/gettoken?appkey={APP_KEY}&appsecret={SECRET}"
    ))
    .await
    .expect("gettoken through the proxy")
    .json()
    .await
    .expect("gettoken answer is JSON");
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// A raw HTTP/1.1 exchange: the request bytes as given, the answer's status line, headers
/// (in order) and body (read by its Content-Length).
async fn raw_exchange(
    address: SocketAddr,
    request: &[u8],
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(read > 0, "connection closed before the answer's head");
        received.extend_from_slice(&buffer[..read]);
        if let Some(at) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8(received[..head_end].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse().expect("a length"))
        .expect("a Content-Length");
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the body in time")
            .expect("read");
        assert!(read > 0, "connection closed inside the body");
        body.extend_from_slice(&buffer[..read]);
    }
    (status, headers, body)
}

/// The same request as `raw_exchange` sends, with `host` for the Host header.
fn echo_request(host: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /_sim/echo/topapi/some/api?access_token=abc&x=%20y&x=2&status=418 HTTP/1.1\r\n\
         Host: {host}\r\n\
         User-Agent: sender/1.0\r\n\
         Content-Type: application/octet-stream\r\n\
         X-Multi: one\r\n\
         X-Multi: two\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A request reaches the upstream with its method, path, query, end-to-end headers (in
/// order, repeated ones included) and body bytes unchanged, hop-by-hop headers dropped; the
/// answer's status, headers and body come back exactly as the upstream sent them.
#[tokio::test]
async fn requests_and_answers_are_relayed_byte_identical() {
    let sim = simulator().await;
    let (dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let proxy_address: SocketAddr = proxy.trim_start_matches("http://").parse().unwrap();
    let body: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let upstream = sim.local_addr().to_string();

    // Direct, with the upstream's own Host; through the proxy, with the proxy's Host and
    // hop-by-hop headers that must not travel on.
    let (direct_status, direct_headers, direct_body) =
        raw_exchange(sim.local_addr(), &echo_request(&upstream, &body)).await;
    let mut proxied = echo_request(&proxy_address.to_string(), &body);
    let at = proxied.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    proxied.splice(
        at..at,
        b"Connection: keep-alive, X-Hop\r\nX-Hop: private\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
            .iter()
            .copied(),
    );
    let (status, headers, answer) = raw_exchange(proxy_address, &proxied).await;

    let echoed: Value = serde_json::from_slice(&answer).expect("the echo's JSON");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/_sim/echo/topapi/some/api");
    assert_eq!(echoed["query"], "access_token=abc&x=%20y&x=2&status=418");
    assert_eq!(echoed["body_length"], 3000);
    // Identical answers mean identical requests: the echo lists every header in order.
    assert!(
        answer == direct_body,
        "the upstream saw a different request through the proxy:\n{echoed}\ndirectly:\n{}",
        String::from_utf8_lossy(&direct_body)
    );
    assert_eq!(status, direct_status);
    assert!(status.contains("418"), "{status}");
    let without_date = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .filter(|(name, _)| name != "date")
            .cloned()
            .collect()
    };
    assert_eq!(without_date(&headers), without_date(&direct_headers));
    assert_eq!(
        headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .count(),
        2
    );
    drop((exporter, dir));
}

/// A large upload streams through unchanged (the two send paths are the only ones read
/// whole, within their own limit).
#[tokio::test]
async fn large_bodies_stream_through() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (_exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let body: Vec<u8> = (0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected: String = aws_lc_rs_free_sha256(&body);
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{proxy}/_sim/echo/media/upload?access_token=t&type=file"
        ))
        .body(body)
        .send()
        .await
        .expect("upload through the proxy")
        .json()
        .await
        .expect("the echo's JSON");
    assert_eq!(answer["body_length"], 24 * 1024 * 1024);
    assert_eq!(answer["body_sha256"], expected.as_str());
}

/// SHA-256 of `bytes` by the system's sha256sum, a check independent of the simulator's.
fn aws_lc_rs_free_sha256(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A JSON send through the proxy is answered as DingTalk answered it and tracked with the
/// message's title, its recipient count and `source: proxy`, then polled to completion; at
/// debug level no log line, page or answer of the exporter shows the sender's token or the
/// message's content.
#[tokio::test]
async fn json_send_is_tracked_and_polled_to_completion_without_leaking() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &["--log.level", "debug"]);
    let token = token_through(&proxy).await;
    let content = "CONTENT-never-shown-4a7b";
    let answer = reqwest::Client::new()
        .post(format!("{proxy}{SEND_PATH}?access_token={token}"))
        .json(&json!({
            "agent_id": AGENT,
            "userid_list": "alice,bob,carol",
            "msg": {"msgtype": "markdown", "markdown": {"title": "Payroll May", "text": content}},
        }))
        .send()
        .await
        .expect("send through the proxy");
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    let task_id = answer["task_id"].as_i64().expect("a task_id");
    assert!(sim.tasks().iter().any(|task| task.task_id == task_id));

    let task = eventually("the send to be tracked and complete", WAIT, || async {
        common::task_json(&exporter, AGENT, task_id)
            .await
            .filter(|task| task["state"] == "completed")
    })
    .await;
    assert_eq!(task["name"], "Payroll May");
    assert_eq!(task["source"], "proxy");
    assert_eq!(task["recipients_expected"], 3);
    assert_eq!(
        metric(&exporter, "dingtalk_proxy_tracked_total", &[]).await,
        Some(1.0)
    );
    assert_eq!(
        metric(
            &exporter,
            "dingtalk_proxy_requests_total",
            &[("api", "asyncsend_v2"), ("result", "ok")]
        )
        .await,
        Some(1.0)
    );

    let mut shown = exporter.logs();
    for path in ["/metrics", "/", "/api/v1/tasks"] {
        shown.push_str(&get_text(&exporter.url(path)).await.unwrap_or_default());
    }
    assert!(shown.contains("relayed"), "debug logging is on: {shown}");
    for secret in [token.as_str(), content, SECRET] {
        assert!(!shown.contains(secret), "{secret:?} was shown");
    }
}

/// A form-encoded send (msg as a JSON string) is tracked too, named by the
/// `X-DingTalk-Exporter-Name` header.
#[tokio::test]
async fn form_encoded_send_is_tracked_with_the_header_name() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let token = token_through(&proxy).await;
    let msg = json!({"msgtype": "text", "text": {"content": "hello"}}).to_string();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("agent_id", &AGENT.to_string())
        .append_pair("userid_list", "u1,u2")
        .append_pair("msg", &msg)
        .finish();
    let answer: Value = reqwest::Client::new()
        .post(format!("{proxy}{SEND_PATH}?access_token={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-dingtalk-exporter-name", "nightly report")
        .body(form)
        .send()
        .await
        .expect("send through the proxy")
        .json()
        .await
        .unwrap();
    let task_id = answer["task_id"].as_i64().expect("a task_id");
    let task = eventually("the form send to be tracked", WAIT, || {
        common::task_json(&exporter, AGENT, task_id)
    })
    .await;
    assert_eq!(task["name"], "nightly report");
    assert_eq!(task["recipients_expected"], 2);
    assert_eq!(task["source"], "proxy");
}

/// A send DingTalk refuses is relayed with its errcode and registers nothing.
#[tokio::test]
async fn refused_send_is_relayed_and_registers_nothing() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let token = token_through(&proxy).await;
    let answer: Value = reqwest::Client::new()
        .post(format!("{proxy}{SEND_PATH}?access_token={token}"))
        .json(&json!({"agent_id": AGENT, "userid_list": "u1"}))
        .send()
        .await
        .expect("send through the proxy")
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 40035, "{answer}");
    eventually("the refusal to be counted", WAIT, || async {
        metric(
            &exporter,
            "dingtalk_proxy_requests_total",
            &[("api", "asyncsend_v2"), ("result", "dingtalk_error")],
        )
        .await
        .filter(|count| *count == 1.0)
    })
    .await;
    let tasks: Value =
        serde_json::from_str(&get_text(&exporter.url("/api/v1/tasks")).await.unwrap()).unwrap();
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0), "{tasks}");
    assert_eq!(
        metric(&exporter, "dingtalk_proxy_tracked_total", &[]).await,
        Some(0.0)
    );
}

/// At `--tasks.max` a send still goes through and is answered; only its tracking is lost,
/// and that is counted.
#[tokio::test]
async fn sends_past_tasks_max_go_through_untracked() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &["--tasks.max", "1"]);
    let token = token_through(&proxy).await;
    let client = reqwest::Client::new();
    let mut task_ids = Vec::new();
    for user in ["u1", "u2"] {
        let answer: Value = client
            .post(format!("{proxy}{SEND_PATH}?access_token={token}"))
            .json(&json!({"agent_id": AGENT, "userid_list": user, "msg": {"msgtype": "text", "text": {"content": "x"}}}))
            .send()
            .await
            .expect("send through the proxy")
            .json()
            .await
            .unwrap();
        task_ids.push(answer["task_id"].as_i64().expect("every send is answered"));
    }
    eventually("the lost registration to be counted", WAIT, || async {
        metric(
            &exporter,
            "dingtalk_proxy_track_failures_total",
            &[("reason", "tasks_max")],
        )
        .await
        .filter(|count| *count == 1.0)
    })
    .await;
    assert!(
        common::task_json(&exporter, AGENT, task_ids[0])
            .await
            .is_some()
    );
    assert!(
        common::task_json(&exporter, AGENT, task_ids[1])
            .await
            .is_none()
    );
    assert_eq!(sim.tasks().len(), 2, "both sends reached DingTalk");
}

/// An absolute-form request line and a foreign `Host` header still go to the upstream, and
/// CONNECT is refused: the decoy address is never contacted.
#[tokio::test]
async fn requests_never_reach_another_address() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let proxy_address: SocketAddr = proxy.trim_start_matches("http://").parse().unwrap();
    let decoy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decoy_address = decoy.local_addr().unwrap();

    let absolute = format!(
        "GET http://{decoy_address}/_sim/echo/absolute HTTP/1.1\r\nHost: {decoy_address}\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _, body) = raw_exchange(proxy_address, absolute.as_bytes()).await;
    assert!(status.contains("200"), "{status}");
    let echoed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echoed["path"], "/_sim/echo/absolute");
    let host = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == "host")
        .map(|pair| pair[1].as_str().unwrap().to_string());
    assert_eq!(host.as_deref(), Some(sim.local_addr().to_string().as_str()));

    let foreign_host = format!(
        "GET /_sim/echo/host HTTP/1.1\r\nHost: {decoy_address}\r\nContent-Length: 0\r\n\r\n"
    );
    let (status, _, _) = raw_exchange(proxy_address, foreign_host.as_bytes()).await;
    assert!(status.contains("200"), "{status}");

    let connect = format!("CONNECT {decoy_address} HTTP/1.1\r\nHost: {decoy_address}\r\n\r\n");
    let (status, _, _) = raw_exchange(proxy_address, connect.as_bytes()).await;
    assert!(status.contains("405"), "{status}");

    // Every exchange above was answered, so a connection to the decoy would be waiting.
    let contacted = tokio::time::timeout(Duration::from_millis(1), decoy.accept()).await;
    assert!(contacted.is_err(), "the proxy connected to another address");
    assert_eq!(
        metric(
            &exporter,
            "dingtalk_proxy_requests_total",
            &[("api", "other"), ("result", "refused")]
        )
        .await,
        Some(1.0)
    );
}

/// Metered calls relayed (not the exempt gettoken) are counted this month and the count
/// survives a restart.
#[tokio::test]
async fn relayed_metered_calls_are_counted_across_restarts() {
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let token = token_through(&proxy).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        client
            .post(format!(
                "{proxy}/topapi/message/corpconversation/getsendprogress?access_token={token}"
            ))
            .json(&json!({"agent_id": AGENT, "task_id": 1}))
            .send()
            .await
            .expect("relayed");
    }
    client
        .post(format!("{proxy}{SEND_PATH}?access_token={token}"))
        .json(&json!({"agent_id": AGENT, "userid_list": "u1", "msg": {"msgtype": "text", "text": {"content": "x"}}}))
        .send()
        .await
        .expect("relayed");
    assert_eq!(
        metric(&exporter, "dingtalk_proxy_month_calls", &[]).await,
        Some(3.0)
    );
    assert!(exporter.terminate().success());

    let (restarted, _) = exporter_with_proxy(&sim, &db, &[]);
    assert_eq!(
        metric(&restarted, "dingtalk_proxy_month_calls", &[]).await,
        Some(3.0)
    );
    // The exporter's own polls of the tracked send count apart from the relayed calls.
    eventually("the exporter's own polls to be counted", WAIT, || async {
        metric(&restarted, "dingtalk_api_month_calls", &[])
            .await
            .filter(|calls| *calls >= 1.0)
    })
    .await;
    assert_eq!(
        metric(&restarted, "dingtalk_proxy_month_calls", &[]).await,
        Some(3.0)
    );
}

/// A third-party DingTalk SDK from PyPI (`dingapi`), pointed at the proxy by its API host,
/// sends a work notification; the proxy relays it and tracks the task.
#[tokio::test]
async fn third_party_python_sdk_sends_through_the_proxy() {
    let required = std::env::var("DINGTALK_EXPORTER_REQUIRE_PYTHON_SDK").as_deref() == Ok("1");
    let available = std::process::Command::new("python3")
        .args(["-c", "import dingapi.client"])
        .current_dir(std::env::temp_dir())
        .output()
        .is_ok_and(|output| output.status.success());
    if !available {
        assert!(
            !required,
            "python3 with the dingapi package is required (pip install dingapi==0.0.6)"
        );
        eprintln!("skipped: python3 with the dingapi package is not installed");
        return;
    }
    let sim = simulator().await;
    let (_dir, db) = temp_db();
    let (exporter, proxy) = exporter_with_proxy(&sim, &db, &[]);
    let script = format!(
        r#"
from dingapi.client import DingApi
client = DingApi("{APP_KEY}", "{SECRET}", {AGENT})
client.host = "{proxy}"
answer = client.message.asyncsend_v2(
    {{"msgtype": "action_card", "action_card": {{"title": "Quarterly review", "markdown": "body", "single_title": "open", "single_url": "https://example.com"}}}},
    userid_list=["ann", "ben", "cid", "dan"],
)
print(answer["task_id"])
"#
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the SDK's send failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let task_id: i64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the SDK printed the task_id");
    let task = eventually("the SDK's send to be tracked", WAIT, || {
        common::task_json(&exporter, AGENT, task_id)
    })
    .await;
    assert_eq!(task["name"], "Quarterly review");
    assert_eq!(task["recipients_expected"], 4);
    assert_eq!(task["source"], "proxy");
}
