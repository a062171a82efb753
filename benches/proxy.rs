//! Proxy overhead: the latency a sender sees for small DingTalk calls made through the
//! tracking proxy, next to the same calls made straight to the simulator in the same run.
//!
//! One keep-alive client per path (as an SDK keeps its connection), calls interleaved
//! (direct, proxied, direct, ...) so both see the same machine load. Two kinds of call: a
//! `getsendprogress` (relayed as a stream, the common case) and an `asyncsend_v2` to three
//! users (read whole, parsed and queued for tracking: the proxy's most expensive path).
//! The proxy runs in-process with a real SQLite store, as in the exporter; the simulator
//! has no QPS limit so that no call is throttled.
//!
//! `cargo bench --bench proxy` (add `-- --calls N`, default 2000 of each kind and path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dingtalk_exporter::http::ServerLimits;
use dingtalk_exporter::proxy::{ProxySetup, TrackingProxy};
use dingtalk_exporter::simulator::{Behaviour, SimApp, SimConfig, Simulator, Timeline};
use dingtalk_exporter::telemetry::Telemetry;
use dingtalk_exporter::tracker::Tracker;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use serde_json::{Value, json};

const APP_KEY: &str = "dingbenchapp";
const SECRET: &str = "bench-secret-31c9";
const AGENT: i64 = 2_839_445_214;
const WARMUP: usize = 50;

fn calls() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--calls")
        .and_then(|at| args.get(at + 1))
        .map(|value| value.parse().expect("--calls takes a number"))
        .unwrap_or(2000)
}

fn percentile(latencies: &mut [Duration], fraction: f64) -> Duration {
    latencies.sort();
    let at = ((latencies.len() as f64 - 1.0) * fraction).round() as usize;
    latencies[at]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// One call; its latency to the last byte of the answer.
async fn timed(client: &reqwest::Client, url: &str, body: &Value) -> Duration {
    let started = Instant::now();
    let answer = client
        .post(url)
        .json(body)
        .send()
        .await
        .expect("the call is answered");
    let bytes = answer.bytes().await.expect("the answer arrives");
    let elapsed = started.elapsed();
    let value: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(value["errcode"], 0, "{value}");
    elapsed
}

struct Row {
    kind: &'static str,
    direct: Vec<Duration>,
    proxied: Vec<Duration>,
}

#[tokio::main]
async fn main() {
    let calls = calls();
    let sim = Simulator::start(SimConfig {
        apps: vec![SimApp::new(APP_KEY, SECRET)],
        behaviour: Behaviour {
            qps_limit: 0,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap());
    // Room for every send of the run: each one is tracked.
    let tracker = Arc::new(Tracker::open(store.clone(), calls * 2 + WARMUP * 2).unwrap());
    let proxy = TrackingProxy::start(ProxySetup {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        upstream_url: sim.url().to_string(),
        tracker,
        store,
        telemetry: Arc::new(Telemetry::new()),
        limits: ServerLimits::default(),
        web_config: None,
    })
    .expect("the proxy starts");
    let direct_base = sim.url().to_string();
    let proxied_base = format!("http://{}", proxy.address);

    let direct_client = reqwest::Client::new();
    let proxied_client = reqwest::Client::new();
    let token: Value = direct_client
        .get(format!(
            "{direct_base}/gettoken?appkey={APP_KEY}&appsecret={SECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let task_id = sim.add_task(AGENT, Timeline::default());
    let progress_path =
        format!("/topapi/message/corpconversation/getsendprogress?access_token={token}");
    let send_path = format!("/topapi/message/corpconversation/asyncsend_v2?access_token={token}");
    let progress_body = json!({"agent_id": AGENT, "task_id": task_id});
    let send_body = json!({
        "agent_id": AGENT,
        "userid_list": "ann,ben,cid",
        "msg": {"msgtype": "markdown", "markdown": {"title": "benchmark", "text": "x"}},
    });

    let mut rows = Vec::new();
    for (kind, path, body) in [
        ("getsendprogress (streamed)", &progress_path, &progress_body),
        ("asyncsend_v2 (read whole, tracked)", &send_path, &send_body),
    ] {
        let direct_url = format!("{direct_base}{path}");
        let proxied_url = format!("{proxied_base}{path}");
        for _ in 0..WARMUP {
            timed(&direct_client, &direct_url, body).await;
            timed(&proxied_client, &proxied_url, body).await;
        }
        let mut row = Row {
            kind,
            direct: Vec::with_capacity(calls),
            proxied: Vec::with_capacity(calls),
        };
        for _ in 0..calls {
            row.direct
                .push(timed(&direct_client, &direct_url, body).await);
            row.proxied
                .push(timed(&proxied_client, &proxied_url, body).await);
        }
        rows.push(row);
    }
    proxy.stop().await;

    println!("### Tracking proxy overhead ({calls} calls of each kind per path, loopback)\n");
    println!(
        "| call | direct p50 | proxied p50 | added p50 | proxied / direct p50 | direct p95 | proxied p95 | added p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut worst_added = 0.0f64;
    for row in &mut rows {
        let direct_p50 = percentile(&mut row.direct, 0.5);
        let proxied_p50 = percentile(&mut row.proxied, 0.5);
        let direct_p95 = percentile(&mut row.direct, 0.95);
        let proxied_p95 = percentile(&mut row.proxied, 0.95);
        let added_p50 = micros(proxied_p50) - micros(direct_p50);
        worst_added = worst_added.max(added_p50);
        println!(
            "| {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.2}x | {:.0} µs | {:.0} µs | {:.0} µs |",
            row.kind,
            micros(direct_p50),
            micros(proxied_p50),
            added_p50,
            micros(proxied_p50) / micros(direct_p50),
            micros(direct_p95),
            micros(proxied_p95),
            micros(proxied_p95) - micros(direct_p95),
        );
    }
    println!(
        "\nResult: the proxy adds at most {:.0} µs to the median call (target: under 1000 µs): {}",
        worst_added,
        if worst_added < 1000.0 { "yes" } else { "no" }
    );
}
