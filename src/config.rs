//! The exporter's configuration: flags (with environment twins) and the YAML config file,
//! merged and validated into one [`Config`].
//!
//! A config is always validated completely before it is used or swapped in on reload, so a
//! broken file changes nothing.
//!
//! # Precedence
//!
//! For every setting: a flag given on the command line or through its environment twin;
//! else the config file; else the default (the `DEFAULT_*` constants below, which
//! `interface.md` and `--help` repeat).
//!
//! # The config file
//!
//! ```yaml
//! web:      {listen_address: ":10050", telemetry_path: /metrics,
//!            config_file: web.yml, api_token_file: api-token}
//! dingtalk: {api_url: "https://oapi.dingtalk.com", app_key: dingabc, app_secret_file: secret,
//!            max_qps: 10, monthly_call_budget: 5000, timeout: 10s}
//! storage:  {path: dingtalk-exporter.db}
//! poll:     {min_interval: 5s, max_interval: 5m, stall_after: 1h, stalled_interval: 30m}
//! task:     {max_age: 24h, retention: 1h}
//! tasks_max: 10000
//! log:      {level: info, format: logfmt}
//! apps:
//!   - {name: hr-notices, agent_id: 2839445214, app_key: dingabc123,
//!      app_secret_file: /run/secrets/dingtalk-hr, api_url: "https://oapi.dingtalk.com"}
//! tasks:
//!   - {agent_id: 2839445214, task_id: 256271667526, name: payroll notice May}
//! ```
//!
//! Each flag lives under its dotted name's sections (`--poll.min-interval` is
//! `poll.min_interval`), except `--tasks.max`: its section name is taken by the list of
//! static tasks, so it is the top-level `tasks_max`. `dingtalk.app_key` and
//! `dingtalk.app_secret_file` configure the `default` app like the flags do, and
//! `dingtalk.api_url` is also the API of every app without an `api_url` of its own.
//! Relative paths in the file are relative to the file's directory (as in Prometheus);
//! relative paths in flags are relative to the working directory.
//!
//! # Validation
//!
//! [`ConfigErrors`] lists every problem at once, each naming the key as the user wrote it:
//! the flag (`--poll.min-interval`) when the value came from a flag, the file's key
//! (`apps[1].agent_id`) when it came from the file. Only a file that does not parse at all
//! stops at its first error (it still names the key and the line).
//!
//! Having no app at all is valid (tasks are tracked and shown but never polled): a
//! first-time user can start the exporter, register a task and look around before adding
//! credentials. [`warnings`] says so, for the log at startup and for `--config.check`.
//!
//! # Layout
//!
//! `file` is the YAML schema as written; `resolve` merges it with the flags and the
//! defaults section by section; `rules` holds the checks of single values; `report` words
//! `--config.check`'s answer.

mod file;
pub mod flags;
mod report;
mod resolve;
mod rules;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::PromDuration;
use crate::secret::Secret;

pub use report::{CheckReport, check};
pub use rules::{check_task_name, check_visible, invisible_char};

/// Whether the text of a config file sets nothing at all: empty, blank or comments only.
/// Such a file is most often one being rewritten, or cut short; a reload refuses it.
pub fn sets_nothing(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

use flags::{DemoFlags, ExporterFlags};
use resolve::{AppSource, CommandFlags, Defaults, resolve};

/// Checks a web config file (`--web.config.file`) and sums up what it sets, or lists its
/// problems as (key, problem). The HTTP layer owns that format; `--config.check` passes its
/// check in, so this layer never reaches up into it.
pub type WebConfigCheck = dyn Fn(&Path) -> Result<String, Vec<(String, String)>> + Send + Sync;

/// The name of the app configured by the `--dingtalk.*` flags; it serves every task whose
/// `agent_id` matches no app of the config file.
pub const DEFAULT_APP: &str = "default";

/// The `app` label the exporter gives tasks no app serves; no configured app may take it.
pub const UNCONFIGURED_APP: &str = "unconfigured";

pub const DEFAULT_LISTEN_ADDRESS: &str = ":10050";
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub const DEFAULT_API_URL: &str = "https://oapi.dingtalk.com";
/// DingTalk's newer API host, where the corp tokens of third-party apps come from.
pub const DEFAULT_OPENAPI_URL: &str = "https://api.dingtalk.com";
pub const DEFAULT_MAX_QPS: u32 = 10;
pub const DEFAULT_MONTHLY_CALL_BUDGET: u64 = 0;
/// The demo's budget: the free edition's monthly quota, so the budget panels have data.
pub const DEMO_MONTHLY_CALL_BUDGET: u64 = 5000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STORAGE_PATH: &str = "dingtalk-exporter.db";
pub const DEFAULT_POLL_MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_POLL_MAX_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_POLL_STALL_AFTER: Duration = Duration::from_secs(3600);
pub const DEFAULT_POLL_STALLED_INTERVAL: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_TASK_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_TASK_RETENTION: Duration = Duration::from_secs(3600);
pub const DEFAULT_TASKS_MAX: usize = 10_000;

/// The longest task name, as for registrations through the API.
pub const MAX_TASK_NAME_CHARS: usize = 256;

/// DingTalk's per-app per-API QPS limit on the free edition.
const DINGTALK_FREE_QPS: u32 = 20;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub web: WebSettings,
    pub storage_path: PathBuf,
    /// A PostgreSQL database shared by several replicas (`--storage.url`), used instead of
    /// the SQLite file at `storage_path`.
    pub shared_store: Option<SharedStoreSettings>,
    pub dingtalk: DingTalkSettings,
    pub poll: PollSettings,
    /// The apps whose credentials poll tasks: those of the config file, then the `default`
    /// app from the flags when `--dingtalk.app-key` is set.
    pub apps: Vec<AppConfig>,
    /// Tasks listed in the config file; tracked as if registered through the API.
    pub static_tasks: Vec<StaticTask>,
    pub log: LogSettings,
    pub proxy: ProxySettings,
    /// The config file this came from, re-read on reload.
    pub config_file: Option<PathBuf>,
}

/// The tracking proxy (`--proxy.*`). Read at start: a reload leaves it as it was.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxySettings {
    /// Where it listens; `None`: the proxy is off.
    pub listen_address: Option<String>,
    /// The one destination it forwards to (no trailing slash).
    pub upstream_url: String,
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

#[derive(Clone, Debug, PartialEq)]
pub struct DingTalkSettings {
    /// Outbound calls per second per API per app.
    pub max_qps: u32,
    /// Metered calls allowed per calendar month; 0 means no budget.
    pub monthly_call_budget: u64,
    pub timeout: Duration,
    /// `--dingtalk.openapi-url`: the host of the newer token APIs (`/v1.0/oauth2/...`).
    pub openapi_url: String,
}

/// The PostgreSQL database several replicas share, and the lease on each app's polling.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedStoreSettings {
    /// `postgres://user@host:5432/db`, without a password (refused in the URL).
    pub url: String,
    /// From `--storage.password-file` or `DINGTALK_EXPORTER_STORAGE_PASSWORD`.
    pub password: Option<Secret>,
    /// How long a replica owns an app's polling without renewing (`--ha.lease-duration`).
    pub lease_duration: Duration,
}

pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// A task whose progress has not changed for this long is polled every
    /// `stalled_interval`.
    pub stall_after: Duration,
    pub stalled_interval: Duration,
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
    /// The app key, or a third-party app's SuiteKey.
    pub app_key: String,
    /// The app secret, or a third-party app's SuiteSecret.
    pub app_secret: Secret,
    pub api_url: String,
    /// Where the access tokens come from.
    pub token_api: TokenApi,
    /// The organisation the token is for: a third-party app's corp, or an internal app's own
    /// corp when it uses the unified token API. `None` for `gettoken`.
    pub corp_id: Option<String>,
    /// For one corp of a third-party app: its label, budget and suite ticket.
    pub corp: Option<CorpSettings>,
}

/// How an app gets its access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenApi {
    /// `GET {api_url}/gettoken` with the app key and secret (internal apps).
    GetToken,
    /// `POST {openapi_url}/v1.0/oauth2/{corpId}/token`: client credentials, no suite ticket.
    Unified,
    /// `POST {openapi_url}/v1.0/oauth2/corpAccessToken` with the suite ticket.
    CorpAccessToken,
    /// `POST {api_url}/service/get_corp_token`, signed with the suite secret and ticket.
    GetCorpToken,
}

impl TokenApi {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenApi::GetToken => "gettoken",
            TokenApi::Unified => "unified",
            TokenApi::CorpAccessToken => "corp_access_token",
            TokenApi::GetCorpToken => "get_corp_token",
        }
    }

    /// Whether the API needs the suite ticket DingTalk pushes to the ISV.
    pub fn needs_suite_ticket(self) -> bool {
        matches!(self, TokenApi::CorpAccessToken | TokenApi::GetCorpToken)
    }
}

/// One organisation (corp) that authorised a third-party app: its own agent, token, quota
/// and budget.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpSettings {
    /// The `corp` label value.
    pub name: String,
    /// Metered calls this corp's polling may make per calendar month; 0 for no budget.
    pub monthly_call_budget: u64,
    /// The file the ISV's callback service keeps the latest suite ticket in.
    pub suite_ticket_file: Option<PathBuf>,
}

impl AppConfig {
    /// The `corp` label of this app's series: the corp's name for a third-party app.
    pub fn corp_label(&self) -> Option<&str> {
        self.corp.as_ref().map(|corp| corp.name.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StaticTask {
    pub agent_id: i64,
    pub task_id: i64,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// The settings read only when the exporter starts, by the flag that sets them: a reload
/// that changes one keeps the value in force and says a restart is needed.
pub const RESTART_ONLY_SETTINGS: [&str; 7] = [
    "--web.listen-address",
    "--web.config.file",
    "--storage.path",
    "--storage.url",
    "--ha.lease-duration",
    "--log.level",
    "--log.format",
];

impl Config {
    /// The settings of [`RESTART_ONLY_SETTINGS`] whose value in `next` differs from the one
    /// in force (`self`), by flag name.
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let changed = [
            self.web.listen_address != next.web.listen_address,
            self.web.config_file != next.web.config_file,
            self.storage_path != next.storage_path,
            self.shared_store
                .as_ref()
                .map(|shared| (&shared.url, &shared.password))
                != next
                    .shared_store
                    .as_ref()
                    .map(|shared| (&shared.url, &shared.password)),
            self.shared_store
                .as_ref()
                .map(|shared| shared.lease_duration)
                != next
                    .shared_store
                    .as_ref()
                    .map(|shared| shared.lease_duration),
            self.log.level != next.log.level,
            self.log.format != next.log.format,
        ];
        RESTART_ONLY_SETTINGS
            .into_iter()
            .zip(changed)
            .filter_map(|(flag, changed)| changed.then_some(flag))
            .collect()
    }

    /// `next` with the restart-only settings of the configuration in force, so that the
    /// configuration in force always describes what the process does.
    pub fn keeping_restart_only_settings(&self, mut next: Config) -> Config {
        next.web.listen_address = self.web.listen_address.clone();
        next.web.config_file = self.web.config_file.clone();
        next.storage_path = self.storage_path.clone();
        next.shared_store = self.shared_store.clone();
        next.log = self.log;
        next
    }

    /// The app whose credentials serve tasks of `agent_id`: the config-file app with that
    /// agent, else the `default` app.
    pub fn app_for_agent(&self, agent_id: i64) -> Option<&AppConfig> {
        self.apps
            .iter()
            .find(|app| app.agent_id == Some(agent_id))
            .or_else(|| self.apps.iter().find(|app| app.agent_id.is_none()))
    }

    /// The `corp` label of tasks of `agent_id`: set when a third-party app's corp polls them.
    pub fn corp_label(&self, agent_id: i64) -> Option<&str> {
        self.app_for_agent(agent_id)
            .and_then(|app| app.corp_label())
    }

    /// The `app` label of tasks of `agent_id`: the app whose credentials poll them, or
    /// [`UNCONFIGURED_APP`].
    pub fn app_label(&self, agent_id: i64) -> &str {
        self.app_for_agent(agent_id)
            .map_or(UNCONFIGURED_APP, |app| app.name.as_str())
    }
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Logfmt => "logfmt",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: LogLevel::Info,
            format: LogFormat::Logfmt,
        }
    }
}

/// One problem with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag (`--poll.min-interval`) or file key (`apps[1].agent_id`) at fault.
    pub key: String,
    /// What is wrong, in words the operator can act on. Never holds a secret.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// Every problem found, in the order of the flags and the file. Displays one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems with this key (exactly as [`ConfigError::key`]).
    pub fn for_key(&self, key: &str) -> Vec<&ConfigError> {
        self.0.iter().filter(|error| error.key == key).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the exporter's configuration from its flags and `--config.file`, validated (the
/// web config file is the HTTP layer's to check, when the server starts).
///
/// Every call reads the config file, the secret files and the token file afresh, so a
/// reload (which calls this again with the same flags) picks up rotated credentials.
pub fn load(flags: &ExporterFlags) -> Result<Config, ConfigErrors> {
    resolve(&CommandFlags::exporter(flags, None)).map(|resolved| resolved.config)
}

/// Where the demo's exporter finds DingTalk: the simulator it started.
#[derive(Clone, Debug)]
pub struct DemoTarget {
    /// The simulator's base URL.
    pub api_url: String,
    pub app_key: String,
    pub app_secret: Secret,
    /// The store to use when `--storage.path` is not given (the demo's temporary file).
    pub scratch_storage_path: PathBuf,
}

/// Loads the demo's configuration: its flags and the settings of its `--config.file`, with
/// the `default` app pointing at the simulator and listening on loopback unless told
/// otherwise. The file's apps and static tasks are left out: they belong to a real
/// DingTalk, which the demo never calls.
pub fn load_demo(args: &DemoFlags, target: DemoTarget) -> Result<Config, ConfigErrors> {
    let mut web = args.web.clone();
    if web.listen_address.is_none() && !file_sets_listen_address(args.config_file.as_deref()) {
        web.listen_address = Some(DEMO_LISTEN_ADDRESS.to_string());
    }
    let flags = CommandFlags {
        config_file: args.config_file.clone(),
        app: AppSource::Given {
            api_url: target.api_url,
            app_key: target.app_key,
            app_secret: target.app_secret,
        },
        monthly_call_budget: args.monthly_call_budget,
        storage_path: args.storage_path.clone(),
        replicas: None,
        web: &web,
        dingtalk: &args.dingtalk,
        poll: &args.poll,
        log: &args.log,
        proxy: None,
        defaults: Defaults {
            monthly_call_budget: DEMO_MONTHLY_CALL_BUDGET,
            storage_path: target.scratch_storage_path,
        },
        web_config_check: None,
    };
    resolve(&flags).map(|resolved| {
        let mut config = resolved.config;
        config.apps.retain(|app| app.name == DEFAULT_APP);
        config.static_tasks.clear();
        config
    })
}

/// Where the demo listens unless told otherwise: loopback, since it serves sample data and
/// a writable task API to whoever can reach it.
pub const DEMO_LISTEN_ADDRESS: &str = "127.0.0.1:10050";

/// Whether the config file at `path` sets `web.listen_address` (a file that cannot be read
/// is reported by the resolution itself).
fn file_sets_listen_address(path: Option<&Path>) -> bool {
    let Some(text) = path.and_then(|path| std::fs::read_to_string(path).ok()) else {
        return false;
    };
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
        .ok()
        .and_then(|file| file.get("web")?.get("listen_address").cloned())
        .is_some_and(|address| !address.is_null())
}

/// Things that are valid but probably not what the operator wants, worded for the log at
/// startup (and shown by `--config.check`).
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.apps.is_empty() {
        warnings.push(
            "no DingTalk app is configured: tasks are tracked but never polled; set \
             --dingtalk.app-key with --dingtalk.app-secret-file (or DINGTALK_APP_SECRET), \
             or list apps in --config.file"
                .to_string(),
        );
    } else {
        for task in &config.static_tasks {
            if config.app_for_agent(task.agent_id).is_none() {
                warnings.push(format!(
                    "static task {} of agent {}: no app serves this agent and there is no \
                     default app, so it is never polled",
                    task.task_id, task.agent_id
                ));
            }
        }
    }
    if config.dingtalk.max_qps > DINGTALK_FREE_QPS {
        warnings.push(format!(
            "dingtalk.max_qps {} is above DingTalk's free-edition limit of {DINGTALK_FREE_QPS} \
             calls per second per API; expect throttling (errcode 90018) unless your edition \
             allows more",
            config.dingtalk.max_qps
        ));
    }
    if config.poll.task_max_age > DEFAULT_TASK_MAX_AGE {
        warnings.push(format!(
            "task.max_age {} is longer than the 24 hours DingTalk documents answers for; \
             older tasks may be answered with 40035 and end as invalid",
            PromDuration(config.poll.task_max_age)
        ));
    }
    warnings
}
