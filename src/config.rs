//! The exporter's configuration: flags (with environment twins) and the YAML config file,
//! merged and validated into one [`Config`].
//!
//! A config is always validated completely before it is used or swapped in on reload, so a
//! broken file changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// The name of the app configured by the `--dingtalk.*` flags; it serves every task whose
/// `agent_id` matches no app of the config file.
pub const DEFAULT_APP: &str = "default";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub web: WebSettings,
    pub storage_path: PathBuf,
    pub dingtalk: DingTalkSettings,
    pub poll: PollSettings,
    /// The apps whose credentials poll tasks: those of the config file, then the `default`
    /// app from the flags when `--dingtalk.app-key` is set.
    pub apps: Vec<AppConfig>,
    /// Tasks listed in the config file; tracked as if registered through the API.
    pub static_tasks: Vec<StaticTask>,
    pub log: LogSettings,
    /// The config file this came from, re-read on reload.
    pub config_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct WebSettings {
    pub listen_address: String,
    pub telemetry_path: String,
    pub config_file: Option<PathBuf>,
    /// The bearer token required by the task API's write calls, read from
    /// `--web.api-token-file`; `None`: writes only from loopback clients.
    pub api_token: Option<Secret>,
}

#[derive(Clone, Debug)]
pub struct DingTalkSettings {
    /// Outbound calls per second per API per app.
    pub max_qps: u32,
    /// Metered calls allowed per calendar month; 0 means no budget.
    pub monthly_call_budget: u64,
    pub timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Stop polling a task this long after it was created.
    pub task_max_age: Duration,
    /// How long a finished, expired or invalid task stays on `/metrics`.
    pub task_retention: Duration,
    /// Most tasks tracked at once.
    pub tasks_max: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AppConfig {
    /// The `app` label value.
    pub name: String,
    /// Tasks of this agent use this app; `None` for the `default` app.
    pub agent_id: Option<i64>,
    pub app_key: String,
    pub app_secret: Secret,
    pub api_url: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StaticTask {
    pub agent_id: i64,
    pub task_id: i64,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
}

impl Config {
    /// The app whose credentials serve tasks of `agent_id`: the config-file app with that
    /// agent, else the `default` app.
    pub fn app_for_agent(&self, agent_id: i64) -> Option<&AppConfig> {
        self.apps
            .iter()
            .find(|app| app.agent_id == Some(agent_id))
            .or_else(|| self.apps.iter().find(|app| app.agent_id.is_none()))
    }
}
