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
//! poll:     {min_interval: 5s, max_interval: 5m}
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

mod file;
mod report;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{DemoArgs, DingTalkFlags, ExporterFlags, LogFlags, PollFlags, WebFlags};
use crate::duration::PromDuration;
use crate::secret::Secret;

pub use report::{CheckReport, check};

/// The name of the app configured by the `--dingtalk.*` flags; it serves every task whose
/// `agent_id` matches no app of the config file.
pub const DEFAULT_APP: &str = "default";

/// The `app` label the exporter gives tasks no app serves; no configured app may take it.
pub const UNCONFIGURED_APP: &str = "unconfigured";

pub const DEFAULT_LISTEN_ADDRESS: &str = ":10050";
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
pub const DEFAULT_API_URL: &str = "https://oapi.dingtalk.com";
pub const DEFAULT_MAX_QPS: u32 = 10;
pub const DEFAULT_MONTHLY_CALL_BUDGET: u64 = 0;
/// The demo's budget: the free edition's monthly quota, so the budget panels have data.
pub const DEMO_MONTHLY_CALL_BUDGET: u64 = 5000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_STORAGE_PATH: &str = "dingtalk-exporter.db";
pub const DEFAULT_POLL_MIN_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_POLL_MAX_INTERVAL: Duration = Duration::from_secs(5 * 60);
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

/// Loads the exporter's configuration from its flags and `--config.file`, validated.
pub fn load(flags: &ExporterFlags) -> Result<Config, ConfigErrors> {
    resolve(&CommandFlags::exporter(flags)).map(|resolved| resolved.config)
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

/// Loads the demo's configuration: its flags, with the `default` app pointing at the
/// simulator. The demo reads no config file.
pub fn load_demo(args: &DemoArgs, target: DemoTarget) -> Result<Config, ConfigErrors> {
    let flags = CommandFlags {
        config_file: None,
        app: AppSource::Given {
            api_url: target.api_url,
            app_key: target.app_key,
            app_secret: target.app_secret,
        },
        monthly_call_budget: args.monthly_call_budget,
        storage_path: args.storage_path.clone(),
        web: &args.web,
        dingtalk: &args.dingtalk,
        poll: &args.poll,
        log: &args.log,
        defaults: Defaults {
            monthly_call_budget: DEMO_MONTHLY_CALL_BUDGET,
            storage_path: target.scratch_storage_path,
        },
    };
    resolve(&flags).map(|resolved| resolved.config)
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

/// Whether a task name is acceptable (as for registrations through the API): at most
/// [`MAX_TASK_NAME_CHARS`] characters and no control characters.
pub fn check_task_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars > MAX_TASK_NAME_CHARS {
        return Err(format!(
            "name is {chars} characters long; at most {MAX_TASK_NAME_CHARS} are allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("name holds control characters (newlines, tabs, ...)".to_string());
    }
    Ok(())
}

/// Whether an `agent_id` or `task_id` is in DingTalk's range, 1 to 2^63-1.
fn check_id(id: i64) -> Result<(), String> {
    if id >= 1 {
        Ok(())
    } else {
        Err(format!(
            "{id} is not an id: ids are integers from 1 to 2^63-1"
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Resolution: flags, file and defaults merged, then validated.

/// The defaults that differ between the exporter and the demo.
struct Defaults {
    monthly_call_budget: u64,
    storage_path: PathBuf,
}

/// Where the `default` app comes from.
enum AppSource<'a> {
    /// The exporter's `--dingtalk.*` flags, completed by the file's `dingtalk` section.
    Flags(&'a crate::cli::AppFlags),
    /// Given by the caller (the demo's simulator).
    Given {
        api_url: String,
        app_key: String,
        app_secret: Secret,
    },
}

/// What one command's flags say, before the file and the defaults.
struct CommandFlags<'a> {
    config_file: Option<PathBuf>,
    app: AppSource<'a>,
    monthly_call_budget: Option<u64>,
    storage_path: Option<PathBuf>,
    web: &'a WebFlags,
    dingtalk: &'a DingTalkFlags,
    poll: &'a PollFlags,
    log: &'a LogFlags,
    defaults: Defaults,
}

impl<'a> CommandFlags<'a> {
    fn exporter(flags: &'a ExporterFlags) -> Self {
        CommandFlags {
            config_file: flags.config_file.clone(),
            app: AppSource::Flags(&flags.app),
            monthly_call_budget: flags.monthly_call_budget,
            storage_path: flags.storage_path.clone(),
            web: &flags.web,
            dingtalk: &flags.dingtalk,
            poll: &flags.poll,
            log: &flags.log,
            defaults: Defaults {
                monthly_call_budget: DEFAULT_MONTHLY_CALL_BUDGET,
                storage_path: PathBuf::from(DEFAULT_STORAGE_PATH),
            },
        }
    }
}

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Flag,
    File,
    Default,
}

/// A setting's two names.
#[derive(Clone, Copy, Debug)]
struct Key {
    flag: &'static str,
    file: &'static str,
}

impl Key {
    /// The name the user wrote the value under.
    fn name(self, origin: Origin) -> &'static str {
        match origin {
            Origin::File => self.file,
            Origin::Flag | Origin::Default => self.flag,
        }
    }
}

const LISTEN_ADDRESS: Key = Key {
    flag: "--web.listen-address",
    file: "web.listen_address",
};
const TELEMETRY_PATH: Key = Key {
    flag: "--web.telemetry-path",
    file: "web.telemetry_path",
};
const WEB_CONFIG_FILE: Key = Key {
    flag: "--web.config.file",
    file: "web.config_file",
};
const API_TOKEN_FILE: Key = Key {
    flag: "--web.api-token-file",
    file: "web.api_token_file",
};
const API_URL: Key = Key {
    flag: "--dingtalk.api-url",
    file: "dingtalk.api_url",
};
const APP_KEY: Key = Key {
    flag: "--dingtalk.app-key",
    file: "dingtalk.app_key",
};
const APP_SECRET_FILE: Key = Key {
    flag: "--dingtalk.app-secret-file",
    file: "dingtalk.app_secret_file",
};
const MAX_QPS: Key = Key {
    flag: "--dingtalk.max-qps",
    file: "dingtalk.max_qps",
};
const MONTHLY_CALL_BUDGET: Key = Key {
    flag: "--dingtalk.monthly-call-budget",
    file: "dingtalk.monthly_call_budget",
};
const TIMEOUT: Key = Key {
    flag: "--dingtalk.timeout",
    file: "dingtalk.timeout",
};
const STORAGE_PATH: Key = Key {
    flag: "--storage.path",
    file: "storage.path",
};
const MIN_INTERVAL: Key = Key {
    flag: "--poll.min-interval",
    file: "poll.min_interval",
};
const MAX_INTERVAL: Key = Key {
    flag: "--poll.max-interval",
    file: "poll.max_interval",
};
const TASK_MAX_AGE: Key = Key {
    flag: "--task.max-age",
    file: "task.max_age",
};
const TASK_RETENTION: Key = Key {
    flag: "--task.retention",
    file: "task.retention",
};
const TASKS_MAX: Key = Key {
    flag: "--tasks.max",
    file: "tasks_max",
};
const LOG_LEVEL: Key = Key {
    flag: "--log.level",
    file: "log.level",
};
const LOG_FORMAT: Key = Key {
    flag: "--log.format",
    file: "log.format",
};

/// How an app's secret was given, for `--config.check` (which never shows the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
enum SecretSource {
    File(PathBuf),
    Environment,
    Inline,
    /// Handed over by the program itself (the demo's simulator credentials).
    Program,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "from file {}", path.display()),
            SecretSource::Environment => f.write_str("from DINGTALK_APP_SECRET"),
            SecretSource::Inline => f.write_str("inline in the config file"),
            SecretSource::Program => f.write_str("set by the demo"),
        }
    }
}

/// One effective setting, for `--config.check`.
#[derive(Clone, Debug)]
struct EffectiveSetting {
    key: &'static str,
    value: String,
    origin: Origin,
}

/// A valid config, and where its parts came from.
struct Resolved {
    config: Config,
    settings: Vec<EffectiveSetting>,
    secret_sources: Vec<SecretSource>,
}

/// Merges and validates, collecting every problem.
struct Resolver {
    errors: Vec<ConfigError>,
    settings: Vec<EffectiveSetting>,
    /// The config file's directory, against which the file's relative paths are read.
    base_dir: Option<PathBuf>,
}

impl Resolver {
    fn error(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            problem: problem.into(),
        });
    }

    /// The flag if given, else the file's value, else the default; recorded for the report.
    fn pick<T: fmt::Display>(
        &mut self,
        key: Key,
        flag: Option<T>,
        file: Option<T>,
        default: T,
    ) -> (T, Origin) {
        let (value, origin) = match (flag, file) {
            (Some(value), _) => (value, Origin::Flag),
            (None, Some(value)) => (value, Origin::File),
            (None, None) => (default, Origin::Default),
        };
        self.settings.push(EffectiveSetting {
            key: key.file,
            value: value.to_string(),
            origin,
        });
        (value, origin)
    }

    /// Like [`Resolver::pick`] for a path without a default; a path from the file is read
    /// relative to the file's directory.
    fn pick_path(
        &mut self,
        key: Key,
        flag: Option<PathBuf>,
        file: Option<PathBuf>,
    ) -> Option<(PathBuf, Origin)> {
        let picked = match (flag, file) {
            (Some(path), _) => Some((path, Origin::Flag)),
            (None, Some(path)) => Some((self.file_relative(path), Origin::File)),
            (None, None) => None,
        };
        self.settings.push(EffectiveSetting {
            key: key.file,
            value: picked.as_ref().map_or_else(
                || "none".to_string(),
                |(path, _)| path.display().to_string(),
            ),
            origin: picked
                .as_ref()
                .map_or(Origin::Default, |(_, origin)| *origin),
        });
        picked
    }

    fn file_relative(&self, path: PathBuf) -> PathBuf {
        match &self.base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// Reads a secret file (trimmed); a problem names the key and the file, never content.
    fn read_secret(&mut self, key: &str, path: &Path) -> Option<Secret> {
        match Secret::from_file(path) {
            Ok(secret) if secret.is_empty() => {
                self.error(key, format!("{} is empty", path.display()));
                None
            }
            Ok(secret) => Some(secret),
            Err(err) => {
                self.error(key, format!("cannot read {}: {err}", path.display()));
                None
            }
        }
    }

    /// A duration that must be longer than zero.
    fn positive(&mut self, key: Key, (value, origin): (PromDuration, Origin)) -> Duration {
        if value.0.is_zero() {
            self.error(key.name(origin), "must be longer than 0");
        }
        value.0
    }
}

fn resolve(flags: &CommandFlags<'_>) -> Result<Resolved, ConfigErrors> {
    let mut resolver = Resolver {
        errors: Vec::new(),
        settings: Vec::new(),
        base_dir: None,
    };
    let file = match &flags.config_file {
        None => file::FileConfig::default(),
        Some(path) => {
            resolver.base_dir = path.parent().map(Path::to_path_buf);
            read_config_file(&mut resolver, path).map_err(|error| ConfigErrors(vec![error]))?
        }
    };

    // Web.
    let (listen_address, origin) = resolver.pick(
        LISTEN_ADDRESS,
        flags.web.listen_address.clone(),
        file.web.listen_address,
        DEFAULT_LISTEN_ADDRESS.to_string(),
    );
    if let Err(problem) = crate::cli::listen_address(&listen_address) {
        resolver.error(LISTEN_ADDRESS.name(origin), problem);
    }
    let (telemetry_path, origin) = resolver.pick(
        TELEMETRY_PATH,
        flags.web.telemetry_path.clone(),
        file.web.telemetry_path,
        DEFAULT_TELEMETRY_PATH.to_string(),
    );
    if let Err(problem) = check_telemetry_path(&telemetry_path) {
        resolver.error(TELEMETRY_PATH.name(origin), problem);
    }
    let web_config_file = resolver.pick_path(
        WEB_CONFIG_FILE,
        flags.web.config_file.clone(),
        file.web.config_file,
    );
    if let Some((path, origin)) = &web_config_file
        && let Err(err) = std::fs::File::open(path)
    {
        resolver.error(
            WEB_CONFIG_FILE.name(*origin),
            format!("cannot read {}: {err}", path.display()),
        );
    }
    let api_token = resolver
        .pick_path(
            API_TOKEN_FILE,
            flags.web.api_token_file.clone(),
            file.web.api_token_file,
        )
        .and_then(|(path, origin)| resolver.read_secret(API_TOKEN_FILE.name(origin), &path));

    // DingTalk.
    let (api_url, origin) = match &flags.app {
        AppSource::Flags(app) => resolver.pick(
            API_URL,
            app.api_url.clone(),
            file.dingtalk.api_url.clone(),
            DEFAULT_API_URL.to_string(),
        ),
        AppSource::Given { api_url, .. } => {
            resolver.pick(API_URL, Some(api_url.clone()), None, String::new())
        }
    };
    let api_url = match normalize_api_url(&api_url) {
        Ok(url) => url,
        Err(problem) => {
            resolver.error(API_URL.name(origin), problem);
            api_url
        }
    };
    let (max_qps, origin) = resolver.pick(
        MAX_QPS,
        flags.dingtalk.max_qps,
        file.dingtalk.max_qps,
        DEFAULT_MAX_QPS,
    );
    if max_qps == 0 {
        resolver.error(MAX_QPS.name(origin), "must be at least 1");
    }
    let (monthly_call_budget, _) = resolver.pick(
        MONTHLY_CALL_BUDGET,
        flags.monthly_call_budget,
        file.dingtalk.monthly_call_budget,
        flags.defaults.monthly_call_budget,
    );
    let picked = resolver.pick(
        TIMEOUT,
        flags.dingtalk.timeout,
        file.dingtalk.timeout.map(|d| d.0),
        PromDuration(DEFAULT_TIMEOUT),
    );
    let timeout = resolver.positive(TIMEOUT, picked);

    // Storage.
    let (storage_path, origin) = resolver
        .pick_path(STORAGE_PATH, flags.storage_path.clone(), file.storage.path)
        .unwrap_or((flags.defaults.storage_path.clone(), Origin::Default));
    if let Some(last) = resolver.settings.last_mut()
        && last.origin == Origin::Default
    {
        last.value = storage_path.display().to_string();
    }
    if let Err(problem) = check_storage_path(&storage_path) {
        resolver.error(STORAGE_PATH.name(origin), problem);
    }

    // Polling.
    let picked = resolver.pick(
        MIN_INTERVAL,
        flags.poll.min_interval,
        file.poll.min_interval.map(|d| d.0),
        PromDuration(DEFAULT_POLL_MIN_INTERVAL),
    );
    let min_origin = picked.1;
    let min_interval = resolver.positive(MIN_INTERVAL, picked);
    let picked = resolver.pick(
        MAX_INTERVAL,
        flags.poll.max_interval,
        file.poll.max_interval.map(|d| d.0),
        PromDuration(DEFAULT_POLL_MAX_INTERVAL),
    );
    let max_origin = picked.1;
    let max_interval = resolver.positive(MAX_INTERVAL, picked);
    if max_interval < min_interval {
        resolver.error(
            MAX_INTERVAL.name(max_origin),
            format!(
                "{} is shorter than {} {}; the longest gap between polls cannot be shorter \
                 than the shortest",
                PromDuration(max_interval),
                MIN_INTERVAL.name(min_origin),
                PromDuration(min_interval)
            ),
        );
    }
    let picked = resolver.pick(
        TASK_MAX_AGE,
        flags.poll.task_max_age,
        file.task.max_age.map(|d| d.0),
        PromDuration(DEFAULT_TASK_MAX_AGE),
    );
    let task_max_age = resolver.positive(TASK_MAX_AGE, picked);
    let (task_retention, _) = resolver.pick(
        TASK_RETENTION,
        flags.poll.task_retention,
        file.task.retention.map(|d| d.0),
        PromDuration(DEFAULT_TASK_RETENTION),
    );
    let (tasks_max, tasks_max_origin) = resolver.pick(
        TASKS_MAX,
        flags.poll.tasks_max,
        file.tasks_max,
        DEFAULT_TASKS_MAX,
    );
    if tasks_max == 0 {
        resolver.error(TASKS_MAX.name(tasks_max_origin), "must be at least 1");
    }

    // Logging.
    let (level, _) = resolver.pick(LOG_LEVEL, flags.log.level, file.log.level, LogLevel::Info);
    let (format, _) = resolver.pick(
        LOG_FORMAT,
        flags.log.format,
        file.log.format,
        LogFormat::Logfmt,
    );

    // Apps: the file's, then the default one.
    let mut apps = Vec::new();
    let mut secret_sources = Vec::new();
    for (app, source) in file_apps(&mut resolver, file.apps, &api_url) {
        apps.push(app);
        secret_sources.push(source);
    }
    if let Some((app, source)) = default_app(&mut resolver, &flags.app, &file.dingtalk, &api_url) {
        apps.push(app);
        secret_sources.push(source);
    }

    let static_tasks = static_tasks(&mut resolver, file.tasks);
    if static_tasks.len() > tasks_max && tasks_max > 0 {
        resolver.error(
            "tasks",
            format!(
                "{} static tasks are more than {}={tasks_max} allows",
                static_tasks.len(),
                TASKS_MAX.name(tasks_max_origin)
            ),
        );
    }

    if !resolver.errors.is_empty() {
        return Err(ConfigErrors(resolver.errors));
    }
    Ok(Resolved {
        config: Config {
            web: WebSettings {
                listen_address,
                telemetry_path,
                config_file: web_config_file.map(|(path, _)| path),
                api_token,
            },
            storage_path,
            dingtalk: DingTalkSettings {
                max_qps,
                monthly_call_budget,
                timeout,
            },
            poll: PollSettings {
                min_interval,
                max_interval,
                task_max_age,
                task_retention: task_retention.0,
                tasks_max,
            },
            apps,
            static_tasks,
            log: LogSettings { level, format },
            config_file: flags.config_file.clone(),
        },
        settings: resolver.settings,
        secret_sources,
    })
}

/// Reads and parses the config file. A file that cannot be read or parsed is one error
/// (nothing else can be checked against it); unknown keys are collected with the rest.
fn read_config_file(resolver: &mut Resolver, path: &Path) -> Result<file::FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
        key: "--config.file".to_string(),
        problem: format!("cannot read {}: {err}", path.display()),
    })?;
    let (parsed, unknown_keys) = file::parse(&text).map_err(|problem| ConfigError {
        key: path.display().to_string(),
        problem,
    })?;
    for key in unknown_keys {
        let problem = match known_keys(&key) {
            Some(known) => format!("unknown key; known here: {}", known.join(", ")),
            None => "unknown key".to_string(),
        };
        resolver.error(key, problem);
    }
    Ok(parsed)
}

/// The keys the file accepts beside an unknown one, for the error message.
fn known_keys(unknown: &str) -> Option<&'static [&'static str]> {
    let section = unknown.rsplit_once('.').map_or("", |(section, _)| section);
    let section = section.split('[').next().unwrap_or(section);
    let known: &'static [&'static str] = match section {
        "" => &[
            "web",
            "dingtalk",
            "storage",
            "poll",
            "task",
            "tasks_max",
            "log",
            "apps",
            "tasks",
        ],
        "web" => &[
            "listen_address",
            "telemetry_path",
            "config_file",
            "api_token_file",
        ],
        "dingtalk" => &[
            "api_url",
            "app_key",
            "app_secret_file",
            "max_qps",
            "monthly_call_budget",
            "timeout",
        ],
        "storage" => &["path"],
        "poll" => &["min_interval", "max_interval"],
        "task" => &["max_age", "retention"],
        "log" => &["level", "format"],
        "apps" => &[
            "name",
            "agent_id",
            "app_key",
            "app_secret_file",
            "app_secret",
            "api_url",
        ],
        "tasks" => &["agent_id", "task_id", "name"],
        _ => return None,
    };
    Some(known)
}

/// The apps of the file's `apps` list, each validated; invalid ones are left out (their
/// problems are recorded).
fn file_apps(
    resolver: &mut Resolver,
    entries: Vec<file::AppEntry>,
    default_api_url: &str,
) -> Vec<(AppConfig, SecretSource)> {
    let mut apps = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut agents: HashMap<i64, usize> = HashMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let at = |field: &str| format!("apps[{index}].{field}");
        let errors_before = resolver.errors.len();

        let name = entry.name.unwrap_or_default();
        if name.trim().is_empty() {
            resolver.error(
                at("name"),
                "missing: every app needs a name (its `app` label)",
            );
        } else if let Err(problem) = check_app_name(&name) {
            resolver.error(at("name"), problem);
        } else if let Some(first) = names.get(&name) {
            resolver.error(
                at("name"),
                format!("duplicate app name {name:?} (also apps[{first}])"),
            );
        } else {
            names.insert(name.clone(), index);
        }

        let agent_id = match entry.agent_id {
            None => {
                resolver.error(
                    at("agent_id"),
                    "missing: the agent whose tasks this app polls",
                );
                None
            }
            Some(raw) => match raw_id(raw) {
                Err(problem) => {
                    resolver.error(at("agent_id"), problem);
                    None
                }
                Ok(agent_id) => {
                    if let Some(first) = agents.get(&agent_id) {
                        resolver.error(
                            at("agent_id"),
                            format!("duplicate agent {agent_id} (also apps[{first}])"),
                        );
                    } else {
                        agents.insert(agent_id, index);
                    }
                    Some(agent_id)
                }
            },
        };

        let app_key = entry.app_key.unwrap_or_default();
        if let Err(problem) = check_app_key(&app_key) {
            resolver.error(at("app_key"), problem);
        }

        let secret = match (entry.app_secret_file, entry.app_secret) {
            (Some(_), Some(_)) => {
                resolver.error(
                    format!("apps[{index}]"),
                    "give app_secret_file or app_secret, not both",
                );
                None
            }
            (None, None) => {
                resolver.error(
                    at("app_secret_file"),
                    "missing: give the app secret in a file (app_secret_file) or inline \
                     (app_secret)",
                );
                None
            }
            (Some(path), None) => {
                let path = resolver.file_relative(path);
                resolver
                    .read_secret(&at("app_secret_file"), &path)
                    .map(|secret| (secret, SecretSource::File(path)))
            }
            (None, Some(secret)) => {
                let secret = Secret::new(secret.expose().trim());
                if secret.is_empty() {
                    resolver.error(at("app_secret"), "is empty");
                    None
                } else {
                    Some((secret, SecretSource::Inline))
                }
            }
        };

        let api_url = match entry.api_url {
            None => default_api_url.to_string(),
            Some(url) => normalize_api_url(&url).unwrap_or_else(|problem| {
                resolver.error(at("api_url"), problem);
                url
            }),
        };

        if resolver.errors.len() == errors_before
            && let (Some(agent_id), Some((app_secret, source))) = (agent_id, secret)
        {
            apps.push((
                AppConfig {
                    name,
                    agent_id: Some(agent_id),
                    app_key,
                    app_secret,
                    api_url,
                },
                source,
            ));
        }
    }
    apps
}

/// The `default` app: from the flags (completed by the file's `dingtalk` section), or the
/// one the caller gave. `None` when no app key is set anywhere.
fn default_app(
    resolver: &mut Resolver,
    source: &AppSource<'_>,
    section: &file::DingTalkSection,
    api_url: &str,
) -> Option<(AppConfig, SecretSource)> {
    let flags = match source {
        AppSource::Given {
            app_key,
            app_secret,
            ..
        } => {
            return Some((
                AppConfig {
                    name: DEFAULT_APP.to_string(),
                    agent_id: None,
                    app_key: app_key.clone(),
                    app_secret: app_secret.clone(),
                    api_url: api_url.to_string(),
                },
                SecretSource::Program,
            ));
        }
        AppSource::Flags(flags) => flags,
    };
    let key = match (&flags.app_key, &section.app_key) {
        (Some(key), _) => Some((key.clone(), Origin::Flag)),
        (None, Some(key)) => Some((key.clone(), Origin::File)),
        (None, None) => None,
    };
    let secret_file = match (&flags.app_secret_file, &section.app_secret_file) {
        (Some(path), _) => Some((path.clone(), Origin::Flag)),
        (None, Some(path)) => Some((resolver.file_relative(path.clone()), Origin::File)),
        (None, None) => None,
    };
    if flags.app_secret_file.is_some() && flags.app_secret.is_some() {
        resolver.error(
            APP_SECRET_FILE.flag,
            "the app secret is given twice, here and in DINGTALK_APP_SECRET; unset one",
        );
        return None;
    }
    let secret = match (&flags.app_secret, secret_file) {
        (Some(secret), _) => {
            let secret = Secret::new(secret.expose().trim());
            if secret.is_empty() {
                resolver.error("DINGTALK_APP_SECRET", "is empty");
                return None;
            }
            Some((secret, SecretSource::Environment))
        }
        (None, Some((path, origin))) => Some(
            resolver
                .read_secret(APP_SECRET_FILE.name(origin), &path)
                .map(|secret| (secret, SecretSource::File(path)))?,
        ),
        (None, None) => None,
    };
    match (key, secret) {
        (None, None) => None,
        (Some((_, origin)), None) => {
            resolver.error(
                APP_KEY.name(origin),
                "the app has no secret: set --dingtalk.app-secret-file or DINGTALK_APP_SECRET",
            );
            None
        }
        (None, Some(_)) => {
            resolver.error(
                APP_KEY.flag,
                "missing: an app secret is set but no app key (DINGTALK_APP_KEY)",
            );
            None
        }
        (Some((app_key, origin)), Some((app_secret, source))) => {
            if let Err(problem) = check_app_key(&app_key) {
                resolver.error(APP_KEY.name(origin), problem);
                return None;
            }
            Some((
                AppConfig {
                    name: DEFAULT_APP.to_string(),
                    agent_id: None,
                    app_key,
                    app_secret,
                    api_url: api_url.to_string(),
                },
                source,
            ))
        }
    }
}

/// The file's static tasks, validated like registrations through the API.
fn static_tasks(resolver: &mut Resolver, entries: Vec<file::TaskEntry>) -> Vec<StaticTask> {
    let mut tasks = Vec::new();
    let mut seen: HashMap<(i64, i64), usize> = HashMap::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let at = |field: &str| format!("tasks[{index}].{field}");
        let errors_before = resolver.errors.len();
        let mut id = |field: &str, raw: Option<file::RawId>| match raw.map(raw_id) {
            None => {
                resolver.error(at(field), "missing");
                None
            }
            Some(Err(problem)) => {
                resolver.error(at(field), problem);
                None
            }
            Some(Ok(id)) => Some(id),
        };
        let agent_id = id("agent_id", entry.agent_id);
        let task_id = id("task_id", entry.task_id);
        let name = entry.name.unwrap_or_default();
        if let Err(problem) = check_task_name(&name) {
            resolver.error(at("name"), problem);
        }
        if let (Some(agent_id), Some(task_id)) = (agent_id, task_id) {
            if let Some(first) = seen.get(&(agent_id, task_id)) {
                resolver.error(
                    format!("tasks[{index}]"),
                    format!("duplicate task {task_id} of agent {agent_id} (also tasks[{first}])"),
                );
            } else {
                seen.insert((agent_id, task_id), index);
            }
            if resolver.errors.len() == errors_before {
                tasks.push(StaticTask {
                    agent_id,
                    task_id,
                    name,
                });
            }
        }
    }
    tasks
}

fn raw_id(raw: file::RawId) -> Result<i64, String> {
    match raw {
        file::RawId::Number(id) => check_id(id).map(|()| id),
        file::RawId::OutOfRange(text) => Err(format!(
            "{text} is not an id: ids are integers from 1 to 2^63-1"
        )),
    }
}

fn check_app_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err("holds control characters".to_string());
    }
    if name != name.trim() {
        return Err(format!("{name:?} has leading or trailing spaces"));
    }
    if name == DEFAULT_APP || name == UNCONFIGURED_APP {
        return Err(format!(
            "{name:?} is reserved (`default` is the app of the --dingtalk.* flags, \
             `unconfigured` labels tasks no app serves)"
        ));
    }
    Ok(())
}

fn check_app_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing: the app's AppKey (Client ID)".to_string());
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds spaces or control characters; an AppKey has none".to_string());
    }
    Ok(())
}

/// Checks an API base URL and drops trailing slashes, so that `{api_url}/gettoken` is right.
fn normalize_api_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("{text:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not hold credentials: they would show wherever the URL is logged".to_string(),
        );
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn check_telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path == "/" {
        return Err("\"/\" is the landing page; use a path like /metrics".to_string());
    }
    if path.starts_with("/-/") || path.starts_with("/api/") {
        return Err(format!(
            "{path:?} is taken by the exporter's own endpoints (/-/..., /api/...)"
        ));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!("{path:?} must not hold spaces, ? or #"));
    }
    Ok(())
}

fn check_storage_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    if path.is_dir() {
        return Err(format!("{} is a directory; name a file", path.display()));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("the directory {} does not exist", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API URLs must be plain http(s) base URLs; a trailing slash is dropped.
    #[test]
    fn api_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_api_url("https://oapi.dingtalk.com/").unwrap(),
            "https://oapi.dingtalk.com"
        );
        assert_eq!(
            normalize_api_url("http://127.0.0.1:8080/proxy").unwrap(),
            "http://127.0.0.1:8080/proxy"
        );
        for bad in [
            "oapi.dingtalk.com",
            "ftp://oapi.dingtalk.com",
            "https://oapi.dingtalk.com/?x=1",
            "https://user:pw@oapi.dingtalk.com",
        ] {
            assert!(normalize_api_url(bad).is_err(), "{bad}");
        }
    }

    /// The metrics path must be a real path of its own.
    #[test]
    fn telemetry_path_rules() {
        assert!(check_telemetry_path("/metrics").is_ok());
        assert!(check_telemetry_path("/x/metrics").is_ok());
        for bad in [
            "metrics",
            "/",
            "/-/metrics",
            "/api/v1/tasks",
            "/me trics",
            "/m?x",
        ] {
            assert!(check_telemetry_path(bad).is_err(), "{bad}");
        }
    }

    /// Task names follow the task API's rules.
    #[test]
    fn task_name_rules() {
        assert!(check_task_name("").is_ok());
        assert!(check_task_name(&"名".repeat(256)).is_ok());
        assert!(check_task_name(&"a".repeat(257)).is_err());
        assert!(check_task_name("line\nbreak").is_err());
    }

    /// The known keys named in "unknown key" messages are exactly the keys the file takes.
    #[test]
    fn known_keys_match_the_schema() {
        let every_key = "\
web: {listen_address: ':1', telemetry_path: /m, config_file: w.yml, api_token_file: t}
dingtalk: {api_url: 'http://x', app_key: k, app_secret_file: s, max_qps: 1,
           monthly_call_budget: 1, timeout: 1s}
storage: {path: x.db}
poll: {min_interval: 1s, max_interval: 2s}
task: {max_age: 1h, retention: 1h}
tasks_max: 1
log: {level: info, format: json}
apps: [{name: a, agent_id: 1, app_key: k, app_secret_file: s, app_secret: x, api_url: 'http://x'}]
tasks: [{agent_id: 1, task_id: 1, name: n}]
";
        let (_, unknown) = file::parse(every_key).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let document: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(every_key).unwrap();
        let keys_of = |value: &serde_yaml_ng::Value| -> Vec<String> {
            let mapping = match value {
                serde_yaml_ng::Value::Sequence(items) => items[0].as_mapping().unwrap(),
                other => other.as_mapping().unwrap(),
            };
            mapping
                .keys()
                .map(|key| key.as_str().unwrap().to_string())
                .collect()
        };
        let top: Vec<String> = document
            .keys()
            .map(|k| k.as_str().unwrap().into())
            .collect();
        assert_eq!(known_keys("x").unwrap(), top);
        for (section, value) in &document {
            let section = section.as_str().unwrap();
            if section == "tasks_max" {
                continue;
            }
            assert_eq!(
                known_keys(&format!("{section}.x")).unwrap(),
                keys_of(value),
                "{section}"
            );
        }
    }
}
