//! The tracking proxy in-process: its fail-open promise, with a store that breaks or stalls
//! on cue (a send is relayed and answered whatever becomes of its registration, and
//! registrations still queued at a clean shutdown are committed before the proxy stops),
//! and the web config's TLS on its listener.

mod tls_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use dingtalk_exporter::http::ServerLimits;
use dingtalk_exporter::proxy::{ProxySetup, TrackingProxy};
use dingtalk_exporter::simulator::{SimApp, SimConfig, Simulator};
use dingtalk_exporter::telemetry::Telemetry;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{LearnedPace, StoreError, Task, TaskKey, TaskStore, Tracker};
use serde_json::{Value, json};

const APP_KEY: &str = "dingfailopen";
const SECRET: &str = "fail-open-secret";
const AGENT: i64 = 77;
const SEND_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";
const WAIT: Duration = Duration::from_secs(30);

/// SQLite, whose task writes fail while `broken` is set and wait while `held` is set.
struct UnreliableStore {
    sqlite: SqliteStore,
    broken: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
    _dir: tempfile::TempDir,
}

impl UnreliableStore {
    fn new() -> UnreliableStore {
        let dir = tempfile::tempdir().unwrap();
        UnreliableStore {
            sqlite: SqliteStore::open(&dir.path().join("store.db")).unwrap(),
            broken: AtomicBool::new(false),
            held: Mutex::new(false),
            released: Condvar::new(),
            _dir: dir,
        }
    }

    fn hold(&self, held: bool) {
        *self.held.lock().unwrap() = held;
        self.released.notify_all();
    }
}

impl TaskStore for UnreliableStore {
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.released.wait(held).unwrap();
        }
        drop(held);
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError("disk I/O error (injected)".to_string()));
        }
        self.sqlite.insert_new(tasks)
    }
    fn save(&self, tasks: &[Task]) -> Result<(), StoreError> {
        self.sqlite.save(tasks)
    }
    fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        self.sqlite.remove(key)
    }
    fn load_all(&self) -> Result<Vec<Task>, StoreError> {
        self.sqlite.load_all()
    }
    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError> {
        self.sqlite.month_calls(scope, month)
    }
    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError> {
        self.sqlite.add_month_calls(scope, month, calls)
    }
    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.sqlite.exporter_state(key)
    }
    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.sqlite.set_exporter_state(key, value)
    }
    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
        self.sqlite.learned_paces()
    }
    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError> {
        self.sqlite.save_learned_pace(agent_id, pace)
    }
}

struct Setup {
    sim: Simulator,
    store: Arc<UnreliableStore>,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    proxy: TrackingProxy,
    url: String,
}

async fn setup() -> Setup {
    setup_with(None).await
}

async fn setup_with(web_config: Option<Arc<dingtalk_exporter::http::WebConfigWatch>>) -> Setup {
    let sim = Simulator::start(SimConfig {
        apps: vec![SimApp::new(APP_KEY, SECRET)],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let store = Arc::new(UnreliableStore::new());
    let tracker = Arc::new(Tracker::open(store.clone(), 100).unwrap());
    let telemetry = Arc::new(Telemetry::new());
    let proxy = TrackingProxy::start(ProxySetup {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        upstream_url: sim.url().to_string(),
        tracker: tracker.clone(),
        store: store.clone(),
        telemetry: telemetry.clone(),
        limits: ServerLimits::default(),
        web_config,
    })
    .unwrap();
    let url = format!("http://{}", proxy.address);
    Setup {
        sim,
        store,
        tracker,
        telemetry,
        proxy,
        url,
    }
}

/// Sends one text message through the proxy; the answer's task_id.
async fn send(url: &str, user: &str) -> i64 {
    let client = reqwest::Client::new();
    let token: Value = client
        .get(format!(
            "{url}/gettoken?appkey={APP_KEY}&appsecret={SECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let answer: Value = tokio::time::timeout(
        WAIT,
        client
            .post(format!("{url}{SEND_PATH}?access_token={token}"))
            .json(&json!({"agent_id": AGENT, "userid_list": user, "msg": {"msgtype": "text", "text": {"content": "x"}}}))
            .send(),
    )
    .await
    .expect("the send is answered without waiting for its registration")
    .unwrap()
    .json()
    .await
    .unwrap();
    answer["task_id"].as_i64().expect("a task_id")
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// With a broken store the send is still relayed and answered; the lost registration is
/// counted with reason `store`.
#[tokio::test(flavor = "multi_thread")]
async fn broken_store_loses_only_the_registration() {
    let setup = setup().await;
    setup.store.broken.store(true, Ordering::SeqCst);
    let task_id = send(&setup.url, "u1").await;
    assert!(setup.sim.tasks().iter().any(|task| task.task_id == task_id));
    until("the failure to be counted", || {
        setup.telemetry.sample(
            "dingtalk_proxy_track_failures_total",
            &[("reason", "store")],
        ) == Some(1.0)
    })
    .await;
    assert!(
        setup
            .tracker
            .get(TaskKey {
                agent_id: AGENT,
                task_id
            })
            .is_none()
    );
    setup.proxy.stop().await;
}

/// Sends answered while the store is stalled are registered at a clean shutdown, before
/// the proxy's stop returns.
#[tokio::test(flavor = "multi_thread")]
async fn queued_registrations_survive_a_clean_shutdown() {
    let setup = setup().await;
    setup.store.hold(true);
    let first = send(&setup.url, "u1").await;
    let second = send(&setup.url, "u2").await;
    let stopping = tokio::spawn(setup.proxy.stop());
    setup.store.hold(false);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the proxy stops")
        .unwrap();
    let stored: Vec<i64> = setup
        .store
        .load_all()
        .unwrap()
        .into_iter()
        .map(|task| task.key.task_id)
        .collect();
    assert!(
        stored.contains(&first) && stored.contains(&second),
        "{stored:?}"
    );
    assert_eq!(
        setup.telemetry.sample("dingtalk_proxy_tracked_total", &[]),
        Some(2.0)
    );
}

/// With `--web.config.file`, the proxy speaks TLS with the operator's certificate; its basic
/// auth does not apply (DingTalk's token authenticates senders); plain HTTP gets no answer.
#[tokio::test(flavor = "multi_thread")]
async fn web_config_tls_applies_but_basic_auth_does_not() {
    let ca = tls_common::TestCa::new("operator CA");
    let files = tls_common::WebConfigDir::new(&ca.server());
    let path = files.write_config(&format!(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: {}\n",
        tls_common::bcrypt_hash("scrape-password")
    ));
    let watch = Arc::new(dingtalk_exporter::http::WebConfigWatch::open(&path).unwrap());
    let setup = setup_with(Some(watch)).await;
    let https = setup.url.replace("http://", "https://");
    let answer: Value = tls_common::https_client(&ca)
        .build()
        .unwrap()
        .get(format!(
            "{https}/gettoken?appkey={APP_KEY}&appsecret={SECRET}"
        ))
        .send()
        .await
        .expect("an answer over TLS")
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
    let plain = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap()
        .get(format!(
            "{}/gettoken?appkey={APP_KEY}&appsecret={SECRET}",
            setup.url
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered");
    setup.proxy.stop().await;
}
