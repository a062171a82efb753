//! The running exporter: its live configuration, the tracked tasks, the DingTalk clients of
//! its apps and its telemetry, shared by the scheduler and the HTTP server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{AppConfig, Config, DingTalkSettings};
use crate::dingtalk::DeliveryApi;
use crate::metrics::Telemetry;
use crate::tracker::Tracker;

/// Re-reads the configuration (the config file and the flags it was started with) and
/// validates it; errors are worded for the operator.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

/// Builds the DingTalk client of an app. The exporter uses the real HTTP client; tests can
/// put a fake behind the same seam.
pub type ClientFactory =
    Box<dyn Fn(&AppConfig, &Config) -> Result<Arc<dyn DeliveryApi>, String> + Send + Sync>;

/// What a client is built from: when none of it changes on reload, the client (with its
/// cached token and its rate limiter's history) is kept.
#[derive(Clone, PartialEq)]
struct ClientSettings {
    app: AppConfig,
    dingtalk: DingTalkSettings,
    ip_ban_cap: std::time::Duration,
}

impl ClientSettings {
    fn of(app: &AppConfig, config: &Config) -> ClientSettings {
        ClientSettings {
            app: app.clone(),
            dingtalk: config.dingtalk.clone(),
            ip_ban_cap: config.poll.max_interval,
        }
    }
}

/// The apps of a configuration with their clients.
struct AppClients {
    clients: HashMap<String, (ClientSettings, Arc<dyn DeliveryApi>)>,
}

pub struct Exporter {
    config: RwLock<Arc<Config>>,
    apps: RwLock<Arc<AppClients>>,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    source: ConfigSource,
    client_factory: ClientFactory,
    ready: AtomicBool,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = value;
}

impl Exporter {
    /// Starts from a validated config, building a client for each of its apps.
    pub fn new(
        config: Config,
        tracker: Arc<Tracker>,
        telemetry: Arc<Telemetry>,
        source: ConfigSource,
        client_factory: ClientFactory,
    ) -> Result<Exporter, String> {
        let apps = build_clients(&config, None, &client_factory)?;
        telemetry.config_reload_successful.set(1);
        telemetry
            .config_reload_timestamp
            .set(crate::clock::ms_to_seconds(crate::clock::now_ms()));
        Ok(Exporter {
            config: RwLock::new(Arc::new(config)),
            apps: RwLock::new(Arc::new(apps)),
            tracker,
            telemetry,
            source,
            client_factory,
            ready: AtomicBool::new(true),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        read(&self.config)
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// `/-/ready`: the store is open and the config valid.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the exporter ready or not (for `/-/ready`), e.g. not while it shuts down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The `app` label of a task: the app whose credentials poll it.
    pub fn app_name(&self, agent_id: i64) -> String {
        self.config()
            .app_for_agent(agent_id)
            .map(|app| app.name.clone())
            .unwrap_or_else(|| "unconfigured".to_string())
    }

    /// The app and client that poll tasks of `agent_id`, if any app serves it.
    pub fn client_for(&self, agent_id: i64) -> Option<(String, Arc<dyn DeliveryApi>)> {
        let config = self.config();
        let app = config.app_for_agent(agent_id)?;
        let apps = read(&self.apps);
        let (_, client) = apps.clients.get(&app.name)?;
        Some((app.name.clone(), client.clone()))
    }

    /// Re-reads and validates the configuration; swaps it in only when it is valid and
    /// every app's client could be built. Apps whose settings did not change keep their
    /// client (and its cached token).
    pub async fn reload(&self) -> Result<(), String> {
        let result = (self.source)().and_then(|config| {
            let previous = read(&self.apps);
            let apps = build_clients(&config, Some(&previous), &self.client_factory)?;
            Ok((config, apps, previous))
        });
        match result {
            Ok((config, apps, previous)) => {
                for gone in previous
                    .clients
                    .keys()
                    .filter(|name| !apps.clients.contains_key(*name))
                {
                    self.forget_app_series(gone);
                }
                self.tracker.set_tasks_max(config.poll.tasks_max);
                write(&self.config, Arc::new(config));
                write(&self.apps, Arc::new(apps));
                self.telemetry.config_reload_successful.set(1);
                self.telemetry
                    .config_reload_timestamp
                    .set(crate::clock::ms_to_seconds(crate::clock::now_ms()));
                tracing::info!("configuration reloaded");
                // Static tasks added to the file are tracked now; removing one from the
                // file does not drop a task that was acknowledged.
                crate::runtime::register_static_tasks(&self.tracker, &self.config()).await
            }
            Err(err) => {
                self.telemetry.config_reload_successful.set(0);
                tracing::error!(error = %err, "configuration reload failed; the previous configuration stays in force");
                Err(err)
            }
        }
    }

    /// An app removed by a reload no longer has series.
    fn forget_app_series(&self, app: &str) {
        let telemetry = &self.telemetry;
        let _ = telemetry.up.remove_label_values(&[app]);
        let _ = telemetry.token_expiry.remove_label_values(&[app]);
        let _ = telemetry.last_poll_success.remove_label_values(&[app]);
        let _ = telemetry.token_refreshes.remove_label_values(&[app]);
        let _ = telemetry.token_refresh_failures.remove_label_values(&[app]);
    }
}

fn build_clients(
    config: &Config,
    previous: Option<&AppClients>,
    factory: &ClientFactory,
) -> Result<AppClients, String> {
    let mut clients = HashMap::new();
    for app in &config.apps {
        let settings = ClientSettings::of(app, config);
        let reused = previous
            .and_then(|previous| previous.clients.get(&app.name))
            .filter(|(old, _)| *old == settings)
            .map(|(_, client)| client.clone());
        let client = match reused {
            Some(client) => client,
            None => factory(app, config).map_err(|err| format!("app {:?}: {err}", app.name))?,
        };
        clients.insert(app.name.clone(), (settings, client));
    }
    Ok(AppClients { clients })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::config::{LogFormat, LogLevel, LogSettings, PollSettings, WebSettings};
    use crate::dingtalk::{ApiFailure, RecipientCounts, SendProgress};
    use crate::secret::Secret;
    use crate::tracker::sqlite::SqliteStore;

    /// Never asked to call out: these tests only build clients.
    struct Idle;

    #[async_trait::async_trait]
    impl DeliveryApi for Idle {
        async fn send_progress(&self, _: i64, _: i64) -> Result<SendProgress, ApiFailure> {
            Err(ApiFailure::Transport("idle".to_string()))
        }
        async fn send_result(&self, _: i64, _: i64) -> Result<RecipientCounts, ApiFailure> {
            Err(ApiFailure::Transport("idle".to_string()))
        }
    }

    fn config(max_qps: u32) -> Config {
        Config {
            web: WebSettings {
                listen_address: "127.0.0.1:0".to_string(),
                telemetry_path: "/metrics".to_string(),
                config_file: None,
                api_token: None,
            },
            storage_path: "unused.db".into(),
            dingtalk: DingTalkSettings {
                max_qps,
                monthly_call_budget: 0,
                timeout: Duration::from_secs(10),
            },
            poll: PollSettings {
                min_interval: Duration::from_secs(5),
                max_interval: Duration::from_secs(300),
                task_max_age: Duration::from_secs(86_400),
                task_retention: Duration::from_secs(3_600),
                tasks_max: 10,
            },
            apps: vec![AppConfig {
                name: "hr".to_string(),
                agent_id: Some(7),
                app_key: "key".to_string(),
                app_secret: Secret::new("secret"),
                api_url: "http://127.0.0.1:9".to_string(),
            }],
            static_tasks: Vec::new(),
            log: LogSettings {
                level: LogLevel::Info,
                format: LogFormat::Logfmt,
            },
            config_file: None,
        }
    }

    /// Reloading an unchanged app keeps its client (and so its cached token); changing the
    /// app's settings builds a new one; a broken config changes nothing and says so.
    #[tokio::test]
    async fn reload_keeps_clients_of_unchanged_apps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let tracker = Arc::new(Tracker::open(store, 10).unwrap());
        let built = Arc::new(AtomicUsize::new(0));
        let counter = built.clone();
        let factory: ClientFactory = Box::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(Idle) as Arc<dyn DeliveryApi>)
        });
        let next: Arc<Mutex<Result<Config, String>>> = Arc::new(Mutex::new(Ok(config(10))));
        let source_next = next.clone();
        let source: ConfigSource = Box::new(move || source_next.lock().unwrap().clone());
        let telemetry = Arc::new(Telemetry::new());
        let exporter =
            Exporter::new(config(10), tracker, telemetry.clone(), source, factory).unwrap();
        assert_eq!(built.load(Ordering::SeqCst), 1);
        assert_eq!(exporter.app_name(7), "hr");

        exporter.reload().await.unwrap();
        assert_eq!(
            built.load(Ordering::SeqCst),
            1,
            "unchanged app, same client"
        );

        *next.lock().unwrap() = Ok(config(5));
        exporter.reload().await.unwrap();
        assert_eq!(
            built.load(Ordering::SeqCst),
            2,
            "new rate limit, new client"
        );
        assert_eq!(exporter.config().dingtalk.max_qps, 5);

        *next.lock().unwrap() = Err("apps[0].agent_id: not a number".to_string());
        assert!(exporter.reload().await.is_err());
        assert_eq!(
            exporter.config().dingtalk.max_qps,
            5,
            "the old config stays"
        );
        assert_eq!(telemetry.config_reload_successful.get(), 0);
    }
}
