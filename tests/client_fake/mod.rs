//! An in-process fake of DingTalk's API for the client's tests: a real HTTP/1.1 server on a
//! loopback port chosen by the OS, answering from a script, down to the byte when a test needs
//! a broken answer (a body cut short, a dropped connection, a server that never answers).
//! It speaks raw HTTP over TCP so that it can break the protocol on purpose.

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dingtalk_exporter::config::{AppConfig, DingTalkSettings};
use dingtalk_exporter::dingtalk::{ApiFailure, CallGate, Deferral, DingTalkClient};
use dingtalk_exporter::secret::Secret;
use dingtalk_exporter::telemetry::Telemetry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const APP_KEY: &str = "dingfakeappkey";
pub const APP_SECRET: &str = "Sup3rS3cretAppSecretValue";
pub const GETTOKEN: &str = "/gettoken";
pub const PROGRESS: &str = "/topapi/message/corpconversation/getsendprogress";
pub const RESULT: &str = "/topapi/message/corpconversation/getsendresult";

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn token(&self) -> Option<&str> {
        self.query.get("access_token").map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON request body")
    }
}

/// How the fake answers one request.
pub enum Reply {
    /// A complete answer with `Content-Type: application/json`.
    Json(u16, String),
    /// A complete answer with any content type and body.
    Raw(u16, &'static str, Vec<u8>),
    /// Announces `declared` bytes, sends `body` (fewer), then closes the connection.
    CutShort { declared: usize, body: Vec<u8> },
    /// Closes the connection without answering.
    Drop,
    /// Never answers; holds the connection until the client gives up.
    Hang,
    /// Waits, then answers.
    Delayed(Duration, Box<Reply>),
}

pub fn json(body: &str) -> Reply {
    Reply::Json(200, body.to_string())
}

pub fn token_answer(token: &str) -> Reply {
    json(&format!(
        r#"{{"errcode":0,"errmsg":"ok","access_token":"{token}","expires_in":7200}}"#
    ))
}

pub fn progress_answer(percent: u32, status: u32) -> Reply {
    json(&format!(
        r#"{{"errcode":0,"errmsg":"ok","progress":{{"progress_in_percent":{percent},"status":{status}}},"request_id":"req1"}}"#
    ))
}

pub fn error_answer(code: i64) -> Reply {
    json(&format!(r#"{{"errcode":{code},"errmsg":"error {code}"}}"#))
}

/// The script: the request and how many earlier requests had the same path.
pub type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

pub struct FakeDingTalk {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeDingTalk {
    /// Starts the fake on 127.0.0.1 with an OS-chosen port.
    pub async fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), log.clone()));
            }
        });
        FakeDingTalk { addr, seen }
    }

    /// A fake whose gettoken issues `token` and whose task APIs follow `script`.
    pub async fn with_token(
        token: &'static str,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        FakeDingTalk::start(move |seen, n| {
            if seen.path == GETTOKEN {
                token_answer(token)
            } else {
                script(seen, n)
            }
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far on `path`.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests(path).len()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Script>, log: Arc<Mutex<Vec<Seen>>>) {
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    let reply = {
        let mut log = log.lock().unwrap();
        let earlier = log.iter().filter(|s| s.path == seen.path).count();
        log.push(seen.clone());
        script(&seen, earlier)
    };
    answer(&mut stream, reply).await;
}

async fn answer(stream: &mut TcpStream, mut reply: Reply) {
    while let Reply::Delayed(pause, inner) = reply {
        tokio::time::sleep(pause).await;
        reply = *inner;
    }
    let (status, content_type, body, declared) = match reply {
        Reply::Json(status, body) => (status, "application/json", body.into_bytes(), None),
        Reply::Raw(status, content_type, body) => (status, content_type, body, None),
        Reply::CutShort { declared, body } => (200, "application/json", body, Some(declared)),
        Reply::Drop => return,
        Reply::Hang => {
            let mut sink = [0u8; 64];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        Reply::Delayed(..) => unreachable!("unwrapped above"),
    };
    let head = format!(
        "HTTP/1.1 {status} Answer\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        declared.unwrap_or(body.len())
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > 64 * 1024 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let url = reqwest::Url::parse(&format!("http://fake{target}")).ok()?;
    Some(Seen {
        at,
        method,
        path: url.path().to_string(),
        query: url.query_pairs().into_owned().collect(),
        content_type: headers.get("content-type").cloned(),
        body,
    })
}

/// A call gate that counts what the client asks of it, and refuses when told to.
#[derive(Default)]
pub struct CountingGate {
    pub reserved: AtomicUsize,
    pub exhausted: AtomicUsize,
    pub refuse_until_ms: Mutex<Option<i64>>,
}

impl CountingGate {
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::SeqCst)
    }

    pub fn exhausted(&self) -> usize {
        self.exhausted.load(Ordering::SeqCst)
    }
}

impl CallGate for CountingGate {
    fn reserve(&self, _now_ms: i64) -> Result<(), ApiFailure> {
        if let Some(until_ms) = *self.refuse_until_ms.lock().unwrap() {
            return Err(ApiFailure::Deferred {
                until_ms,
                reason: Deferral::MonthlyBudget,
            });
        }
        self.reserved.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn quota_exhausted(&self, _now_ms: i64) {
        self.exhausted.fetch_add(1, Ordering::SeqCst);
    }
}

/// A client of the app `hr-notices` against `api_url`, and what it reports to.
pub struct Harness {
    pub client: DingTalkClient,
    pub telemetry: Arc<Telemetry>,
    pub gate: Arc<CountingGate>,
}

pub struct Options {
    pub max_qps: u32,
    pub timeout: Duration,
    pub ip_ban_cap: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_qps: 1000,
            timeout: Duration::from_secs(5),
            ip_ban_cap: Duration::from_secs(300),
        }
    }
}

pub fn harness(api_url: &str, options: Options) -> Harness {
    harness_for_app(api_url, APP_KEY, APP_SECRET, options)
}

/// A client of the app `hr-notices` with the given credentials.
pub fn harness_for_app(
    api_url: &str,
    app_key: &str,
    app_secret: &str,
    options: Options,
) -> Harness {
    let app = AppConfig {
        name: "hr-notices".to_string(),
        agent_id: Some(2_839_445_214),
        app_key: app_key.to_string(),
        app_secret: Secret::new(app_secret),
        api_url: api_url.to_string(),
        token_api: dingtalk_exporter::config::TokenApi::GetToken,
        corp_id: None,
        corp: None,
    };
    let settings = DingTalkSettings {
        max_qps: options.max_qps,
        monthly_call_budget: 0,
        timeout: options.timeout,
        openapi_url: "https://api.dingtalk.com".to_string(),
    };
    let telemetry = Arc::new(Telemetry::new());
    let gate = Arc::new(CountingGate::default());
    let client = DingTalkClient::new(
        &app,
        &settings,
        options.ip_ban_cap,
        telemetry.clone(),
        gate.clone(),
    )
    .expect("a valid client");
    Harness {
        client,
        telemetry,
        gate,
    }
}

impl Harness {
    /// One series of the client's telemetry, 0 when it does not exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.telemetry.sample(name, labels).unwrap_or(0.0)
    }

    pub fn requests(&self, api: &str) -> u64 {
        self.value("dingtalk_api_requests_total", &[("api", api)]) as u64
    }

    pub fn errors(&self, api: &str, errcode: &str) -> u64 {
        self.value(
            "dingtalk_api_errors_total",
            &[("api", api), ("errcode", errcode)],
        ) as u64
    }

    pub fn up(&self) -> i64 {
        self.value("dingtalk_up", &[("app", "hr-notices")]) as i64
    }

    pub fn token_refreshes(&self) -> u64 {
        self.value("dingtalk_token_refreshes_total", &[("app", "hr-notices")]) as u64
    }

    pub fn token_refresh_failures(&self) -> u64 {
        self.value(
            "dingtalk_token_refresh_failures_total",
            &[("app", "hr-notices")],
        ) as u64
    }

    /// The whole `/metrics` text of this client's telemetry.
    pub fn metrics_text(&self) -> String {
        let families = self.telemetry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .expect("encodable metrics")
    }
}

/// A sample agent and task id, both above 2^31 as DingTalk's are.
pub const AGENT_ID: i64 = 2_839_445_214;
pub const TASK_ID: i64 = 256_271_667_526;
