//! Shared by the HTTP and metrics tests: the SQLite task store in a temporary directory, a
//! test configuration, the real server on a loopback port chosen by the OS, waiting with a
//! deadline, and a parser of the Prometheus text format.
#![allow(dead_code)]

pub mod exposition;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dingtalk_exporter::assembly::{ClientFactory, ConfigSource, Exporter};
use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::config::{
    AppConfig, Config, DingTalkSettings, LogFormat, LogLevel, LogSettings, PollSettings,
    WebSettings,
};
use dingtalk_exporter::dingtalk::{CallGate, DeliveryApi, DingTalkClient};
use dingtalk_exporter::http::{ServerLimits, serve_with_limits};
use dingtalk_exporter::secret::Secret;
use dingtalk_exporter::telemetry::Telemetry;
use dingtalk_exporter::tracker::budget::MonthlyCallGate;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{LearnedPace, StoreError, Task, TaskKey, TaskStore, Tracker};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The real SQLite store in a temporary directory, with a switch that makes every write
/// fail as a full or broken disk would.
pub struct TestStore {
    sqlite: SqliteStore,
    pub fail_writes: AtomicBool,
    _dir: TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sqlite =
            SqliteStore::open(&dir.path().join("dingtalk-exporter.db")).expect("the store opens");
        TestStore {
            sqlite,
            fail_writes: AtomicBool::new(false),
            _dir: dir,
        }
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            Err(StoreError(
                "disk I/O error (injected by the test)".to_string(),
            ))
        } else {
            Ok(())
        }
    }
}

impl TaskStore for TestStore {
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        self.check_writable()?;
        self.sqlite.insert_new(tasks)
    }

    fn save(&self, tasks: &[Task]) -> Result<(), StoreError> {
        self.check_writable()?;
        self.sqlite.save(tasks)
    }

    fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        self.check_writable()?;
        self.sqlite.remove(key)
    }

    fn load_all(&self) -> Result<Vec<Task>, StoreError> {
        self.sqlite.load_all()
    }

    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError> {
        self.sqlite.month_calls(scope, month)
    }

    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError> {
        self.check_writable()?;
        self.sqlite.add_month_calls(scope, month, calls)
    }

    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.sqlite.exporter_state(key)
    }

    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.check_writable()?;
        self.sqlite.set_exporter_state(key, value)
    }

    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
        self.sqlite.learned_paces()
    }

    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError> {
        self.check_writable()?;
        self.sqlite.save_learned_pace(agent_id, pace)
    }
}

/// The configuration of a test exporter: one `default` app, no API token.
pub fn test_config() -> Config {
    Config {
        web: WebSettings {
            listen_address: "127.0.0.1:0".to_string(),
            telemetry_path: "/metrics".to_string(),
            config_file: None,
            api_token: None,
        },
        // The tests hand the exporter its store; nothing opens this path.
        storage_path: PathBuf::from("dingtalk-exporter.db"),
        shared_store: None,
        dingtalk: DingTalkSettings {
            max_qps: 10,
            monthly_call_budget: 0,
            timeout: Duration::from_secs(10),
            openapi_url: "https://api.dingtalk.com".to_string(),
        },
        poll: PollSettings {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(300),
            stall_after: Duration::from_secs(3600),
            stalled_interval: Duration::from_secs(1800),
            task_max_age: Duration::from_secs(24 * 3600),
            task_retention: Duration::from_secs(3600),
            tasks_max: 10_000,
        },
        apps: vec![AppConfig {
            name: "default".to_string(),
            agent_id: None,
            app_key: "dingtestkey".to_string(),
            app_secret: Secret::new("test-app-secret"),
            api_url: "http://127.0.0.1:9".to_string(),
            token_api: dingtalk_exporter::config::TokenApi::GetToken,
            corp_id: None,
            corp: None,
        }],
        static_tasks: Vec::new(),
        log: LogSettings {
            level: LogLevel::Info,
            format: LogFormat::Logfmt,
        },
        proxy: Default::default(),
        config_file: None,
    }
}

/// An exporter over a fresh in-memory store; reloading gives back `config` again.
pub fn exporter(config: Config) -> (Arc<Exporter>, Arc<TestStore>) {
    let reloaded = config.clone();
    exporter_with_source(config, Box::new(move || Ok(reloaded.clone())))
}

pub fn exporter_with_source(
    config: Config,
    source: ConfigSource,
) -> (Arc<Exporter>, Arc<TestStore>) {
    let store = Arc::new(TestStore::new());
    let tracker = Tracker::open(store.clone(), config.poll.tasks_max).expect("the store opens");
    let telemetry = Arc::new(Telemetry::new());
    let budget = Arc::new(
        MonthlyCallGate::new(store.clone(), 0, telemetry.clone(), now_ms())
            .expect("the gate opens"),
    );
    let gate: Arc<dyn CallGate> = budget.clone();
    let client_telemetry = telemetry.clone();
    // The real client; these tests run no scheduler, so it is never asked to call out.
    let factory: ClientFactory = Box::new(move |app: &AppConfig, config: &Config| {
        let client = DingTalkClient::new(
            app,
            &config.dingtalk,
            config.poll.max_interval,
            client_telemetry.clone(),
            gate.clone(),
        )?;
        Ok(Arc::new(client) as Arc<dyn DeliveryApi>)
    });
    let exporter = Exporter::new(
        config,
        Arc::new(tracker),
        telemetry,
        budget,
        source,
        factory,
    )
    .expect("the test config is valid");
    (Arc::new(exporter), store)
}

/// The real server on 127.0.0.1 with an OS-chosen port.
pub struct TestServer {
    pub url: String,
    pub address: std::net::SocketAddr,
    pub exporter: Arc<Exporter>,
    pub store: Arc<TestStore>,
    shutdown: Option<oneshot::Sender<()>>,
    pub finished: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let (exporter, store) = exporter(config);
        TestServer::start_exporter(exporter, store, ServerLimits::default()).await
    }

    pub async fn start_exporter(
        exporter: Arc<Exporter>,
        store: Arc<TestStore>,
        limits: ServerLimits,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port is free");
        let address = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let finished = tokio::spawn(serve_with_limits(
            listener,
            exporter.clone(),
            limits,
            async move {
                let _ = stop.await;
            },
        ));
        TestServer {
            url: format!("http://{address}"),
            address,
            exporter,
            store,
            shutdown: Some(shutdown),
            finished: Some(finished),
        }
    }

    /// Starts a graceful shutdown; await `finished` to see it complete.
    pub fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub fn tasks_url(&self) -> String {
        format!("{}/api/v1/tasks", self.url)
    }

    /// GETs `/metrics` and returns its text, checking the status and content type.
    pub async fn scrape(&self) -> String {
        let response = client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        response.text().await.unwrap()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `error` text of a JSON error answer, checking it is JSON with a 4xx status.
pub async fn error_text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.expect("errors are JSON");
    let text = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text in {body}"))
        .to_string();
    (status, text)
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes it.
pub async fn raw_exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 30 s")
        .expect("the connection reads cleanly");
    String::from_utf8_lossy(&answer).into_owned()
}
