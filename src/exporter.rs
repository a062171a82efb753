//! The running exporter: its live configuration, the tracked tasks, the DingTalk clients of
//! its apps and its telemetry, shared by the scheduler and the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::metrics::Telemetry;
use crate::tracker::Tracker;

/// Re-reads the configuration (the config file and the flags it was started with) and
/// validates it; errors are worded for the operator.
pub type ConfigSource = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

pub struct Exporter {
    config: RwLock<Arc<Config>>,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    source: ConfigSource,
    ready: AtomicBool,
}

impl Exporter {
    pub fn new(
        config: Config,
        tracker: Arc<Tracker>,
        telemetry: Arc<Telemetry>,
        source: ConfigSource,
    ) -> Exporter {
        Exporter {
            config: RwLock::new(Arc::new(config)),
            tracker,
            telemetry,
            source,
            ready: AtomicBool::new(true),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
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

    /// Marks the exporter ready or not (for `/-/ready`).
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

    /// Re-reads and validates the configuration; swaps it in only when it is valid.
    pub async fn reload(&self) -> Result<(), String> {
        match (self.source)() {
            Ok(config) => {
                self.tracker.set_tasks_max(config.poll.tasks_max);
                *self
                    .config
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
                self.telemetry.config_reload_successful.set(1);
                self.telemetry
                    .config_reload_timestamp
                    .set(crate::clock::ms_to_seconds(crate::clock::now_ms()));
                Ok(())
            }
            Err(err) => {
                self.telemetry.config_reload_successful.set(0);
                Err(err)
            }
        }
    }
}
