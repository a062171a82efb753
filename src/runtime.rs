//! Assembles the exporter (store, call gate, DingTalk clients, tracker, scheduler, HTTP
//! server with its web config), runs it, and stops it cleanly: the server stops accepting,
//! requests and polls in flight finish, their results are saved, and only then does the
//! process exit.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::config::Config;
use crate::dingtalk::{CallGate, DeliveryApi, DingTalkClient};
use crate::exporter::{ConfigSource, Exporter};
use crate::http::{ServerLimits, WebConfigWatch};
use crate::metrics::Telemetry;
use crate::tracker::gate::MonthlyCallGate;
use crate::tracker::sqlite::SqliteStore;
use crate::tracker::{NewTask, TaskKey, TaskStore, Tracker};

/// A running exporter.
pub struct Running {
    pub exporter: Arc<Exporter>,
    /// Where the HTTP server listens (the port the OS chose, for `:0`).
    pub address: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    scheduler: JoinHandle<()>,
}

/// Opens the store, starts the scheduler and the HTTP server, and reloads on SIGHUP.
pub async fn start(config: Config, source: ConfigSource) -> Result<Running, String> {
    let telemetry = Arc::new(Telemetry::new());
    let store: Arc<dyn TaskStore> =
        Arc::new(SqliteStore::open(&config.storage_path).map_err(|err| err.to_string())?);
    let gate = Arc::new(
        MonthlyCallGate::new(
            store.clone(),
            config.dingtalk.monthly_call_budget,
            telemetry.clone(),
            now_ms(),
        )
        .map_err(|err| err.to_string())?,
    );
    let tracker =
        Arc::new(Tracker::open(store, config.poll.tasks_max).map_err(|err| err.to_string())?);

    let client_telemetry = telemetry.clone();
    let client_gate: Arc<dyn CallGate> = gate.clone();
    let factory = Box::new(move |app: &crate::config::AppConfig, config: &Config| {
        let client = DingTalkClient::new(
            app,
            &config.dingtalk,
            config.poll.max_interval,
            client_telemetry.clone(),
            client_gate.clone(),
        )?;
        Ok(Arc::new(client) as Arc<dyn DeliveryApi>)
    });
    let budget_gate = gate.clone();
    let source: ConfigSource = Box::new(move || {
        let config = source()?;
        budget_gate.set_budget(config.dingtalk.monthly_call_budget);
        Ok(config)
    });

    let web_config = match &config.web.config_file {
        Some(path) => {
            let watch = WebConfigWatch::open(path).map_err(|errors| {
                format!(
                    "--web.config.file {}:\n{}",
                    path.display(),
                    errors.to_string().replace('\n', "\n  ")
                )
            })?;
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

    let address = crate::cli::listen_address(&config.web.listen_address)?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.web.listen_address))?;
    let address = listener
        .local_addr()
        .map_err(|err| format!("cannot read the listening address: {err}"))?;

    let exporter = Arc::new(Exporter::new(
        config.clone(),
        tracker.clone(),
        telemetry,
        source,
        factory,
    )?);
    register_static_tasks(&tracker, &config).await?;

    let (shutdown, stopping) = watch::channel(false);
    let scheduler = tokio::spawn(crate::tracker::scheduler::run(
        exporter.clone(),
        stopping.clone(),
    ));
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
        shutdown,
        server,
        scheduler,
    })
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
        })
        .collect();
    tracker
        .register(batch, now_ms())
        .await
        .map(|_| ())
        .map_err(|err| format!("static tasks of the config file: {err}"))
}

impl Running {
    /// Stops serving and polling, waits for requests and polls in flight to finish and be
    /// saved.
    pub async fn stop(self) {
        self.exporter.set_ready(false);
        let _ = self.shutdown.send(true);
        match self.server.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "HTTP server stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        if let Err(err) = self.scheduler.await {
            tracing::warn!(error = %err, "scheduler task failed");
        }
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
pub fn reload_on_sighup(exporter: Arc<Exporter>) {
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
