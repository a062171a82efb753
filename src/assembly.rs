//! The one place that builds the running exporter and owns its reload.
//!
//! [`start`] opens the store, the budget ledger and the tracker, builds a DingTalk client
//! per app, and starts the poller and the HTTP server, handing each only the ports it needs
//! ([`poller::AppDirectory`], [`http::ExporterPort`]), both implemented here by
//! [`Exporter`]. [`Exporter::reload`] reads top to bottom: build the new configuration,
//! validate it (every app's client must build), swap it in, and track the static tasks it
//! lists. [`Running::stop`] stops cleanly: the server stops accepting, requests and polls in
//! flight finish, their results are saved, and only then does the process exit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{ms_to_seconds, now_ms};
use crate::config::flags::listen_address;
use crate::config::{AppConfig, Config, DingTalkSettings, PollSettings, TokenApi};
use crate::dingtalk::{Api, CallGate, DeliveryApi, DingTalkClient};
use crate::http::{ExporterPort, ServerLimits, WebConfigWatch};
use crate::poller::{self, AppDirectory};
use crate::proxy::{ProxySetup, TrackingProxy};
use crate::telemetry::Telemetry;
use crate::tracker::budget::{BudgetScope, MonthlyCallGate};
use crate::tracker::leases::{LeaseKey, Leases};
use crate::tracker::postgres::{PostgresStore, PostgresTarget};
use crate::tracker::sqlite::{SqliteStore, StoreLock};
use crate::tracker::{NewTask, TaskKey, TaskSource, TaskStore, Tracker};

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

/// Which client: an app's name, and the corp's id for a corp of a third-party app.
type ClientKey = (String, Option<String>);

fn client_key(app: &AppConfig) -> ClientKey {
    (app.name.clone(), app.corp.as_ref().and(app.corp_id.clone()))
}

/// The apps of a configuration with their clients, by app (and corp).
type AppClients = HashMap<ClientKey, (ClientSettings, Arc<dyn DeliveryApi>, Option<String>)>;

/// The running exporter: its live configuration, the tracked tasks, the DingTalk clients of
/// its apps and its telemetry, shared by the poller and the HTTP server.
pub struct Exporter {
    config: RwLock<Arc<Config>>,
    apps: RwLock<Arc<AppClients>>,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    /// The monthly budget ledger, whose budget a reload may change.
    budget: Arc<MonthlyCallGate>,
    source: ConfigSource,
    client_factory: ClientFactory,
    ready: AtomicBool,
    /// With a shared database: the leases saying which apps this replica polls.
    leases: Option<Arc<Leases>>,
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
        budget: Arc<MonthlyCallGate>,
        source: ConfigSource,
        client_factory: ClientFactory,
    ) -> Result<Exporter, String> {
        telemetry.start_api_series(Api::ALL.map(Api::as_str));
        let apps = build_clients(&config, None, &client_factory)?;
        telemetry.record_config_load(true, ms_to_seconds(now_ms()));
        Ok(Exporter {
            config: RwLock::new(Arc::new(config)),
            apps: RwLock::new(Arc::new(apps)),
            tracker,
            telemetry,
            budget,
            source,
            client_factory,
            ready: AtomicBool::new(true),
            leases: None,
        })
    }

    /// Polls only the apps whose lease this replica holds (with a shared database).
    fn with_leases(mut self, leases: Arc<Leases>) -> Exporter {
        self.leases = Some(leases);
        self
    }

    /// The leases of the apps configured now, which a reload may change.
    fn wanted_leases(&self) -> Vec<LeaseKey> {
        self.config().apps.iter().map(lease_key).collect()
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

    /// Marks the exporter ready or not (for `/-/ready`), e.g. not while it shuts down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Re-reads and validates the configuration; swaps it in only when it is valid and
    /// every app's client could be built. Apps whose settings did not change keep their
    /// client (and its cached token). The outcome is logged here, once.
    ///
    /// Refused as well: a config file that sets nothing (being rewritten, or cut short), and
    /// one that leaves no app while tasks are tracked (polling would stop for all of them).
    /// Settings read only at start keep their value; their flags are returned (and logged)
    /// so the caller learns that a restart is needed.
    pub async fn reload(&self) -> Result<Vec<&'static str>, String> {
        let previous = read(&self.apps);
        let in_force = self.config();
        let built = self.refuse_empty_config_file(&in_force).and_then(|()| {
            let config = (self.source)()?;
            self.refuse_losing_every_app(&in_force, &config)?;
            let apps = build_clients(&config, Some(&previous), &self.client_factory)?;
            Ok((config, apps))
        });
        let (config, apps) = match built {
            Ok(built) => built,
            Err(err) => {
                self.telemetry
                    .record_config_load(false, ms_to_seconds(now_ms()));
                tracing::error!(error = %err, "configuration reload failed; the previous configuration stays in force");
                return Err(err);
            }
        };

        for (gone, (_, _, corp)) in previous.iter().filter(|(key, _)| !apps.contains_key(*key)) {
            self.telemetry.forget_app(&gone.0, corp.as_deref());
        }
        let needs_restart = in_force.restart_only_changes(&config);
        let config = in_force.keeping_restart_only_settings(config);
        self.budget.set_budget(config.dingtalk.monthly_call_budget);
        self.tracker.set_tasks_max(config.poll.tasks_max);
        let config = Arc::new(config);
        write(&self.config, config.clone());
        write(&self.apps, Arc::new(apps));
        self.telemetry
            .record_config_load(true, ms_to_seconds(now_ms()));
        if needs_restart.is_empty() {
            tracing::info!("configuration reloaded");
        } else {
            tracing::warn!(
                restart_to_apply = %needs_restart.join(","),
                "configuration reloaded, except settings read only at start: restart to apply"
            );
        }
        // Static tasks added to the file are tracked now; removing one from the file does
        // not drop a task that was acknowledged.
        register_static_tasks(&self.tracker, &config).await?;
        Ok(needs_restart)
    }

    /// `Err` when the config file in force now sets nothing at all.
    fn refuse_empty_config_file(&self, in_force: &Config) -> Result<(), String> {
        let Some(path) = &in_force.config_file else {
            return Ok(());
        };
        match std::fs::read_to_string(path) {
            Ok(text) if crate::config::sets_nothing(&text) => Err(format!(
                "the config file {} is empty (or holds only comments): refused, as a file being rewritten or cut short would be; to run without its apps, write them out of it and keep the file's other settings, or restart",
                path.display()
            )),
            // Other problems are found and worded when the file is read for the reload.
            _ => Ok(()),
        }
    }

    /// `Err` when `next` has no app although the configuration in force has some and tasks
    /// are tracked: none of them would be polled again.
    fn refuse_losing_every_app(&self, in_force: &Config, next: &Config) -> Result<(), String> {
        let tracked = self.tracker.len();
        if next.apps.is_empty() && !in_force.apps.is_empty() && tracked > 0 {
            return Err(format!(
                "the new configuration has no app, and {tracked} tracked task(s) would no longer be polled: refused; keep at least one app (the config file's apps, or the --dingtalk.* flags)"
            ));
        }
        Ok(())
    }
}

impl AppDirectory for Exporter {
    fn client_for(&self, agent_id: i64) -> Option<Arc<dyn DeliveryApi>> {
        let key = client_key(self.config().app_for_agent(agent_id)?);
        read(&self.apps)
            .get(&key)
            .map(|(_, client, _)| client.clone())
    }

    fn all_clients(&self) -> Vec<Arc<dyn DeliveryApi>> {
        read(&self.apps)
            .values()
            .map(|(_, client, _)| client.clone())
            .collect()
    }

    fn poll_settings(&self) -> PollSettings {
        self.config().poll.clone()
    }

    fn polls_agent(&self, agent_id: i64) -> bool {
        let Some(leases) = &self.leases else {
            return true;
        };
        // Tasks of an agent no app serves are never called about, whoever looks at them.
        match self.config().app_for_agent(agent_id) {
            Some(app) => leases.owns(&lease_key(app)),
            None => true,
        }
    }

    fn quota_scope(&self, agent_id: i64) -> String {
        self.config()
            .app_for_agent(agent_id)
            .and_then(budget_scope)
            .map(|scope| scope.store_key())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ExporterPort for Exporter {
    fn config(&self) -> Arc<Config> {
        Exporter::config(self)
    }

    fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    async fn reload(&self) -> Result<Vec<&'static str>, String> {
        Exporter::reload(self).await
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
        let key = client_key(app);
        let reused = previous
            .and_then(|previous| previous.get(&key))
            .filter(|(old, _, _)| *old == settings)
            .map(|(_, client, _)| client.clone());
        let client = match reused {
            Some(client) => client,
            None => factory(app, config).map_err(|err| match app.corp_label() {
                None => format!("app {:?}: {err}", app.name),
                Some(corp) => format!("app {:?} corp {corp:?}: {err}", app.name),
            })?,
        };
        let corp = app.corp_label().map(str::to_string);
        clients.insert(key, (settings, client, corp));
    }
    Ok(clients)
}

/// The lease on `app`'s polling: each corp of a third-party app is leased apart, so the
/// corps of one app spread over replicas like apps do.
fn lease_key(app: &AppConfig) -> LeaseKey {
    match app.corp_label() {
        None => LeaseKey::app(&app.name),
        Some(corp) => LeaseKey::corp(&app.name, corp),
    }
}

/// The quota scope of a third-party app's corp; `None` for an internal app, whose calls
/// count toward its organisation's quota.
fn budget_scope(app: &AppConfig) -> Option<BudgetScope> {
    let (corp, corp_id) = (app.corp.as_ref()?, app.corp_id.as_ref()?);
    Some(BudgetScope {
        app: app.name.clone(),
        corp_id: corp_id.clone(),
        corp: corp.name.clone(),
    })
}

/// The monthly gates of third-party corps, one per app and corp, kept across reloads (a
/// reload changes a gate's budget; the count stays).
struct CorpGates {
    store: Arc<dyn TaskStore>,
    telemetry: Arc<Telemetry>,
    gates: std::sync::Mutex<HashMap<BudgetScope, Arc<MonthlyCallGate>>>,
}

impl CorpGates {
    /// The gate of `app`'s corp with the corp's budget; `None` for an internal app.
    fn gate_for(&self, app: &AppConfig) -> Result<Option<Arc<dyn CallGate>>, String> {
        let (Some(scope), Some(corp)) = (budget_scope(app), &app.corp) else {
            return Ok(None);
        };
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(gate) = gates.get(&scope) {
            gate.set_budget(corp.monthly_call_budget);
            return Ok(Some(gate.clone() as Arc<dyn CallGate>));
        }
        let gate = Arc::new(
            MonthlyCallGate::for_scope(
                self.store.clone(),
                Some(scope.clone()),
                corp.monthly_call_budget,
                self.telemetry.clone(),
                now_ms(),
            )
            .map_err(|err| err.to_string())?,
        );
        gates.insert(scope, gate.clone());
        Ok(Some(gate as Arc<dyn CallGate>))
    }
}

/// Tracks the config file's static tasks; tasks already tracked keep their state.
pub async fn register_static_tasks(tracker: &Tracker, config: &Config) -> Result<(), String> {
    if config.static_tasks.is_empty() {
        return Ok(());
    }
    let batch = config
        .static_tasks
        .iter()
        .map(|task| NewTask {
            key: TaskKey {
                agent_id: task.agent_id,
                task_id: task.task_id,
            },
            name: task.name.clone(),
            recipients: None,
            source: TaskSource::Config,
        })
        .collect();
    tracker
        .register(batch, now_ms())
        .await
        .map(|_| ())
        .map_err(|err| format!("static tasks of the config file: {err}"))
}

/// A running exporter.
pub struct Running {
    pub exporter: Arc<Exporter>,
    /// Where the HTTP server listens (the port the OS chose, for `:0`).
    pub address: SocketAddr,
    /// Where the tracking proxy listens, when `--proxy.listen-address` is set.
    pub proxy_address: Option<SocketAddr>,
    proxy: Option<TrackingProxy>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    poller: JoinHandle<()>,
    replication: Option<Replication>,
    /// The SQLite store's lock, held until the exporter has stopped and saved its last
    /// results (replicas on a shared database need none).
    store_lock: Option<StoreLock>,
}

/// This process's name among replicas sharing a database: the host (the pod's name in
/// Kubernetes) and the process id, unique among live replicas and short enough for
/// PostgreSQL's `application_name` (63 bytes).
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_string())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "replica".to_string());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(48)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// The shared database, its leases and the replica's name, when `--storage.url` is set.
struct Sharing {
    store: Arc<PostgresStore>,
    leases: Arc<Leases>,
    replica: String,
}

/// What opening the store brought besides the store.
enum Opened {
    /// The SQLite file, locked against a second exporter.
    Alone(StoreLock),
    /// The shared database, with this replica's leases.
    Shared(Sharing),
}

/// Opens the embedded SQLite store (locked), or the shared PostgreSQL database with this
/// replica's leases.
async fn open_store(
    config: &Config,
    telemetry: &Arc<Telemetry>,
) -> Result<(Arc<dyn TaskStore>, Opened), String> {
    let Some(shared) = &config.shared_store else {
        // Before the store is opened: a second exporter must not even migrate it.
        let store_lock = StoreLock::acquire(&config.storage_path).map_err(|err| err.to_string())?;
        let store = SqliteStore::open(&config.storage_path).map_err(|err| err.to_string())?;
        return Ok((Arc::new(store), Opened::Alone(store_lock)));
    };
    let replica = replica_name();
    let target = PostgresTarget::new(&shared.url, shared.password.as_ref(), &replica)
        .map_err(|err| err.to_string())?;
    let store = tokio::task::spawn_blocking(move || PostgresStore::open(target))
        .await
        .map_err(|err| format!("opening the shared database failed: {err}"))?
        .map_err(|err| err.to_string())?;
    let store = Arc::new(store);
    tracing::info!(
        database = %store.target().shown(),
        replica = %replica,
        lease_duration = %crate::duration::PromDuration(shared.lease_duration),
        "sharing the tasks with other replicas through PostgreSQL; each app is polled by the replica holding its lease"
    );
    let leases = Arc::new(Leases::new(
        &replica,
        shared.lease_duration,
        telemetry.clone(),
    ));
    Ok((
        store.clone(),
        Opened::Shared(Sharing {
            store,
            leases,
            replica,
        }),
    ))
}

/// Warns about every app whose DingTalk URL is plain `http://` to a host other than this
/// one: its app secret (in `gettoken`'s query) and access tokens would cross the network in
/// clear text. Loopback is fine: a local simulator or a TLS-terminating sidecar.
fn warn_about_plain_http(config: &Config) {
    // A third-party app is one entry per corp; it is named once per URL.
    let mut warned = std::collections::HashSet::new();
    for app in &config.apps {
        // The unified and corpAccessToken APIs send the secret to the newer API host.
        let token_url = matches!(app.token_api, TokenApi::Unified | TokenApi::CorpAccessToken)
            .then_some(config.dingtalk.openapi_url.as_str());
        for url in std::iter::once(app.api_url.as_str()).chain(token_url) {
            if !warned.insert((app.name.as_str(), url)) {
                continue;
            }
            if let Some(host) = plain_http_remote_host(url) {
                tracing::warn!(
                    app = %app.name,
                    api_url = %url,
                    "the DingTalk API URL is plain http:// to {host}: the app secret and access tokens travel in clear text; use https://"
                );
            }
        }
    }
}

/// The host of a plain `http://` URL, unless it is this machine (loopback).
fn plain_http_remote_host(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let remote = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.to_canonical().is_loopback(),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    };
    remote.then(|| host.to_string())
}

/// Opens the store, starts the poller and the HTTP server, and reloads on SIGHUP.
pub async fn start(config: Config, source: ConfigSource) -> Result<Running, String> {
    let telemetry = Arc::new(Telemetry::new());
    warn_about_plain_http(&config);
    let (store, opened) = open_store(&config, &telemetry).await?;
    let (store_lock, sharing) = match opened {
        Opened::Alone(lock) => (Some(lock), None),
        Opened::Shared(sharing) => (None, Some(sharing)),
    };
    let budget = Arc::new(
        MonthlyCallGate::new(
            store.clone(),
            config.dingtalk.monthly_call_budget,
            telemetry.clone(),
            now_ms(),
        )
        .map_err(|err| err.to_string())?,
    );
    let tracker = Arc::new(
        Tracker::open(store.clone(), config.poll.tasks_max).map_err(|err| err.to_string())?,
    );

    let client_telemetry = telemetry.clone();
    let client_gate: Arc<dyn CallGate> = budget.clone();
    let client_replica = sharing.as_ref().map(|sharing| sharing.replica.clone());
    let corp_gates = CorpGates {
        store: store.clone(),
        telemetry: telemetry.clone(),
        gates: std::sync::Mutex::new(HashMap::new()),
    };
    let factory: ClientFactory = Box::new(move |app: &AppConfig, config: &Config| {
        // Each corp of a third-party app has its own quota, so its own gate.
        let gate = match corp_gates.gate_for(app)? {
            Some(gate) => gate,
            None => client_gate.clone(),
        };
        let mut client = DingTalkClient::new(
            app,
            &config.dingtalk,
            config.poll.max_interval,
            client_telemetry.clone(),
            gate,
        )?;
        if let Some(replica) = &client_replica {
            client.identify_replica(replica);
        }
        Ok(Arc::new(client) as Arc<dyn DeliveryApi>)
    });

    let web_config = match &config.web.config_file {
        Some(path) => {
            let watch = WebConfigWatch::open(path)
                .map_err(|errors| {
                    format!(
                        "--web.config.file {}:\n{}",
                        path.display(),
                        errors.to_string().replace('\n', "\n  ")
                    )
                })?
                .with_telemetry(telemetry.clone());
            tracing::info!(
                path = %path.display(),
                web_config = %watch.current().summary(),
                "web config loaded; it is re-read when it or its certificates change"
            );
            Some(Arc::new(watch))
        }
        None => None,
    };
    let scheme = match web_config.as_ref().and_then(|watch| watch.current().tls()) {
        Some(_) => "https",
        None => "http",
    };

    let address = listen_address(&config.web.listen_address)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.web.listen_address))?;
    let address = listener
        .local_addr()
        .map_err(|err| format!("cannot read the listening address: {err}"))?;

    let mut exporter = Exporter::new(
        config.clone(),
        tracker.clone(),
        telemetry.clone(),
        budget,
        source,
        factory,
    )?;
    if let Some(sharing) = &sharing {
        exporter = exporter.with_leases(sharing.leases.clone());
    }
    let exporter = Arc::new(exporter);
    register_static_tasks(&tracker, &config).await?;

    let proxy = match &config.proxy.listen_address {
        Some(listen) => {
            let address = listen_address(listen)?;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|err| {
                    format!("cannot listen on {listen} (--proxy.listen-address): {err}")
                })?;
            let proxy = TrackingProxy::start(ProxySetup {
                listener,
                upstream_url: config.proxy.upstream_url.clone(),
                tracker: tracker.clone(),
                store,
                telemetry: telemetry.clone(),
                limits: ServerLimits::default(),
                web_config: web_config.clone(),
            })?;
            // Worded without "listening", which scripts and tests take as the exporter's
            // own address line.
            tracing::info!(
                proxy_address = %proxy.address,
                scheme,
                upstream = %config.proxy.upstream_url,
                "tracking proxy started"
            );
            Some(proxy)
        }
        None => None,
    };

    let (shutdown, stopping) = watch::channel(false);
    let replication = sharing.map(|sharing| {
        let wanted_from = exporter.clone();
        let wanted: Arc<dyn Fn() -> Vec<LeaseKey> + Send + Sync> =
            Arc::new(move || wanted_from.wanted_leases());
        let keeper = tokio::spawn(sharing.leases.clone().run(
            sharing.store.pool().clone(),
            wanted,
            stopping.clone(),
        ));
        let follower = tokio::spawn(crate::tracker::changes::follow(
            tracker.clone(),
            sharing.store.target().clone(),
            sharing.replica.clone(),
            stopping.clone(),
        ));
        Replication {
            sharing,
            keeper,
            follower,
        }
    });
    let ports = Arc::new(poller::Ports {
        tracker,
        apps: exporter.clone(),
        telemetry,
    });
    tokio::spawn(poller::watch_credentials(ports.clone(), stopping.clone()));
    let poller = tokio::spawn(poller::run(ports, stopping.clone()));
    let mut server_stopping = stopping;
    let server = tokio::spawn(crate::http::serve_with_web_config(
        listener,
        exporter.clone(),
        ServerLimits::default(),
        web_config,
        async move {
            let _ = server_stopping.wait_for(|stop| *stop).await;
        },
    ));
    reload_on_sighup(exporter.clone());
    tracing::info!(address = %address, scheme, "dingtalk-exporter listening");
    Ok(Running {
        exporter,
        address,
        proxy_address: proxy.as_ref().map(|proxy| proxy.address),
        proxy,
        shutdown,
        server,
        poller,
        replication,
        store_lock,
    })
}

/// The tasks that keep a replica's leases and follow the other replicas' changes.
struct Replication {
    sharing: Sharing,
    keeper: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl Running {
    /// Stops serving and polling, waits for requests and polls in flight to finish and be
    /// saved.
    pub async fn stop(self) {
        self.exporter.set_ready(false);
        let _ = self.shutdown.send(true);
        // The proxy first: the sends it relayed are registered while the tracker and its
        // store still run.
        if let Some(proxy) = self.proxy {
            proxy.stop().await;
        }
        match self.server.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "HTTP server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        if let Err(err) = self.poller.await {
            tracing::warn!(error = %err, "poller task failed");
        }
        // Polls have ended: the leases go back now, so another replica takes over at once.
        if let Some(replication) = self.replication {
            let _ = replication.keeper.await;
            let _ = replication.follower.await;
            replication
                .sharing
                .leases
                .release_all(replication.sharing.store.pool())
                .await;
        }
        // The last results are saved: another exporter may take the store now.
        drop(self.store_lock);
    }
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reloads the configuration on every SIGHUP, until the process stops.
///
/// The handler is in place when this returns: [`start`] calls it before saying it listens,
/// so a SIGHUP sent as soon as the exporter is up (by a script, or systemd's `ExecReload`)
/// reloads instead of killing the process, which is SIGHUP's default.
fn reload_on_sighup(exporter: Arc<Exporter>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // The outcome is logged and published by reload itself.
                let _ = exporter.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = exporter;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::config::{LogFormat, LogLevel, LogSettings, PollSettings, WebSettings};
    use crate::dingtalk::{ApiFailure, SendProgress, SendResult};
    use crate::secret::Secret;

    /// Never asked to call out: these tests only build clients.
    struct Idle;

    #[async_trait::async_trait]
    impl DeliveryApi for Idle {
        async fn send_progress(&self, _: i64, _: i64) -> Result<SendProgress, ApiFailure> {
            Err(ApiFailure::Transport("idle".to_string()))
        }
        async fn send_result(&self, _: i64, _: i64) -> Result<SendResult, ApiFailure> {
            Err(ApiFailure::Transport("idle".to_string()))
        }
        async fn check_credentials(&self, _: Duration) -> Result<(), ApiFailure> {
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
            shared_store: None,
            dingtalk: DingTalkSettings {
                max_qps,
                monthly_call_budget: 0,
                timeout: Duration::from_secs(10),
                openapi_url: "https://api.dingtalk.com".to_string(),
            },
            poll: PollSettings {
                min_interval: Duration::from_secs(5),
                max_interval: Duration::from_secs(300),
                stall_after: Duration::from_secs(3600),
                stalled_interval: Duration::from_secs(1800),
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
                token_api: crate::config::TokenApi::GetToken,
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

    /// Reloading an unchanged app keeps its client (and so its cached token); changing the
    /// app's settings builds a new one; a broken config changes nothing and says so.
    /// Plain http:// to another host is flagged; https and loopback hosts are not.
    #[test]
    fn plain_http_is_flagged_unless_loopback() {
        assert_eq!(
            plain_http_remote_host("http://oapi.dingtalk.com").as_deref(),
            Some("oapi.dingtalk.com")
        );
        assert_eq!(
            plain_http_remote_host("http://10.0.0.5:8080/prefix").as_deref(),
            Some("10.0.0.5")
        );
        for quiet in [
            "https://oapi.dingtalk.com",
            "http://127.0.0.1:9",
            "http://localhost:8080",
            "http://[::1]:8080",
            "HTTPS://example.com",
        ] {
            assert_eq!(plain_http_remote_host(quiet), None, "{quiet}");
        }
    }

    #[tokio::test]
    async fn reload_keeps_clients_of_unchanged_apps() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn TaskStore> =
            Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let tracker = Arc::new(Tracker::open(store.clone(), 10).unwrap());
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
        let budget = Arc::new(MonthlyCallGate::new(store, 0, telemetry.clone(), now_ms()).unwrap());
        let exporter = Exporter::new(
            config(10),
            tracker,
            telemetry.clone(),
            budget,
            source,
            factory,
        )
        .unwrap();
        assert_eq!(built.load(Ordering::SeqCst), 1);
        assert_eq!(exporter.config().app_label(7), "hr");

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
        assert_eq!(
            telemetry.sample("dingtalk_config_last_reload_successful", &[]),
            Some(0.0)
        );
    }
}
