//! Merging the flags, the config file and the defaults, and validating the result; every
//! problem is recorded with the name the user gave the value under, and resolution goes on
//! so that one run reports them all.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::WebConfigCheck;
use super::flags::{
    AppFlags, DingTalkFlags, ExporterFlags, LogFlags, PollFlags, ProxyFlags, ReplicaFlags, WebFlags,
};
use crate::duration::PromDuration;
use crate::secret::Secret;

use super::{
    AppConfig, Config, ConfigError, ConfigErrors, CorpSettings, DEFAULT_API_URL, DEFAULT_APP,
    DEFAULT_LEASE_DURATION, DEFAULT_LISTEN_ADDRESS, DEFAULT_MAX_QPS, DEFAULT_MONTHLY_CALL_BUDGET,
    DEFAULT_OPENAPI_URL, DEFAULT_POLL_MAX_INTERVAL, DEFAULT_POLL_MIN_INTERVAL,
    DEFAULT_POLL_STALL_AFTER, DEFAULT_POLL_STALLED_INTERVAL, DEFAULT_STORAGE_PATH,
    DEFAULT_TASK_MAX_AGE, DEFAULT_TASK_RETENTION, DEFAULT_TASKS_MAX, DEFAULT_TELEMETRY_PATH,
    DEFAULT_TIMEOUT, DingTalkSettings, LogSettings, PollSettings, ProxySettings,
    SharedStoreSettings, StaticTask, TokenApi, WebSettings, file, rules,
};

/// The defaults that differ between the exporter and the demo.
pub(super) struct Defaults {
    pub(super) monthly_call_budget: u64,
    pub(super) storage_path: PathBuf,
}

/// Where the `default` app comes from.
pub(super) enum AppSource<'a> {
    /// The exporter's `--dingtalk.*` flags, completed by the file's `dingtalk` section.
    Flags(&'a AppFlags),
    /// Given by the caller (the demo's simulator).
    Given {
        api_url: String,
        app_key: String,
        app_secret: Secret,
    },
}

/// What one command's flags say, before the file and the defaults.
pub(super) struct CommandFlags<'a> {
    pub(super) config_file: Option<PathBuf>,
    pub(super) app: AppSource<'a>,
    pub(super) monthly_call_budget: Option<u64>,
    pub(super) storage_path: Option<PathBuf>,
    /// The shared database's flags; `None` for commands that always use SQLite (the demo).
    pub(super) replicas: Option<&'a ReplicaFlags>,
    pub(super) web: &'a WebFlags,
    pub(super) dingtalk: &'a DingTalkFlags,
    pub(super) poll: &'a PollFlags,
    pub(super) log: &'a LogFlags,
    /// The tracking proxy's flags; `None` for commands that take none (the demo starts its
    /// own proxy).
    pub(super) proxy: Option<&'a ProxyFlags>,
    pub(super) defaults: Defaults,
    /// Checks the web config file, when the caller can (the HTTP layer owns its format).
    pub(super) web_config_check: Option<&'a WebConfigCheck>,
}

impl<'a> CommandFlags<'a> {
    pub(super) fn exporter(
        flags: &'a ExporterFlags,
        web_config_check: Option<&'a WebConfigCheck>,
    ) -> Self {
        CommandFlags {
            config_file: flags.config_file.clone(),
            app: AppSource::Flags(&flags.app),
            monthly_call_budget: flags.monthly_call_budget,
            storage_path: flags.storage_path.clone(),
            replicas: Some(&flags.replicas),
            web: &flags.web,
            dingtalk: &flags.dingtalk,
            poll: &flags.poll,
            log: &flags.log,
            proxy: Some(&flags.proxy),
            defaults: Defaults {
                monthly_call_budget: DEFAULT_MONTHLY_CALL_BUDGET,
                storage_path: PathBuf::from(DEFAULT_STORAGE_PATH),
            },
            web_config_check,
        }
    }
}

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
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
const PROXY_LISTEN_ADDRESS: Key = Key {
    flag: "--proxy.listen-address",
    file: "proxy.listen_address",
};
const PROXY_UPSTREAM_URL: Key = Key {
    flag: "--proxy.upstream-url",
    file: "proxy.upstream_url",
};
const API_URL: Key = Key {
    flag: "--dingtalk.api-url",
    file: "dingtalk.api_url",
};
const OPENAPI_URL: Key = Key {
    flag: "--dingtalk.openapi-url",
    file: "dingtalk.openapi_url",
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
const STORAGE_URL: Key = Key {
    flag: "--storage.url",
    file: "storage.url",
};
const STORAGE_PASSWORD_FILE: Key = Key {
    flag: "--storage.password-file",
    file: "storage.password_file",
};
const LEASE_DURATION: Key = Key {
    flag: "--ha.lease-duration",
    file: "ha.lease_duration",
};
const MIN_INTERVAL: Key = Key {
    flag: "--poll.min-interval",
    file: "poll.min_interval",
};
const MAX_INTERVAL: Key = Key {
    flag: "--poll.max-interval",
    file: "poll.max_interval",
};
const STALL_AFTER: Key = Key {
    flag: "--poll.stall-after",
    file: "poll.stall_after",
};
const STALLED_INTERVAL: Key = Key {
    flag: "--poll.stalled-interval",
    file: "poll.stalled_interval",
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
pub(super) enum SecretSource {
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
pub(super) struct EffectiveSetting {
    pub(super) key: &'static str,
    pub(super) value: String,
    pub(super) origin: Origin,
}

/// A valid config, and where its parts came from.
pub(super) struct Resolved {
    pub(super) config: Config,
    pub(super) settings: Vec<EffectiveSetting>,
    /// How each app of `config.apps` got its secret, in the same order.
    pub(super) secret_sources: Vec<SecretSource>,
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

pub(super) fn resolve(flags: &CommandFlags<'_>) -> Result<Resolved, ConfigErrors> {
    let mut resolver = Resolver {
        errors: Vec::new(),
        settings: Vec::new(),
        base_dir: None,
    };
    let file = match &flags.config_file {
        None => file::FileConfig::default(),
        Some(path) => {
            resolver.base_dir = path.parent().map(Path::to_path_buf);
            read_config_file(&mut resolver, path)?
        }
    };

    let web = resolver.web(flags.web, file.web, flags.web_config_check);
    let api_url = resolver.api_url(&flags.app, file.dingtalk.api_url.clone());
    let dingtalk = resolver.dingtalk(flags, &file.dingtalk);
    let shared_store = resolver.shared_store(
        flags.replicas,
        file.storage.url,
        file.storage.password_file,
        file.ha.lease_duration.map(|d| d.0),
    );
    let storage_path = resolver.storage_path(flags, file.storage.path);
    let (poll, tasks_max_origin) = resolver.poll(flags.poll, file.poll, file.task, file.tasks_max);
    let log = resolver.log(flags.log, file.log);
    let proxy = resolver.proxy(flags.proxy, file.proxy, &api_url);

    // Apps: the file's, then the default one.
    let (mut apps, mut secret_sources): (Vec<_>, Vec<_>) =
        file_apps(&mut resolver, file.apps, &api_url)
            .into_iter()
            .unzip();
    if let Some((app, source)) = default_app(&mut resolver, &flags.app, &file.dingtalk, &api_url) {
        apps.push(app);
        secret_sources.push(source);
    }

    let static_tasks = static_tasks(&mut resolver, file.tasks);
    if static_tasks.len() > poll.tasks_max && poll.tasks_max > 0 {
        resolver.error(
            "tasks",
            format!(
                "{} static tasks are more than {}={} allows",
                static_tasks.len(),
                TASKS_MAX.name(tasks_max_origin),
                poll.tasks_max
            ),
        );
    }

    if !resolver.errors.is_empty() {
        return Err(ConfigErrors(resolver.errors));
    }
    Ok(Resolved {
        config: Config {
            web,
            storage_path,
            shared_store,
            dingtalk,
            poll,
            apps,
            static_tasks,
            log,
            proxy,
            config_file: flags.config_file.clone(),
        },
        settings: resolver.settings,
        secret_sources,
    })
}

/// One method per section of the file (and of `--help`): each picks its settings and
/// checks them, recording problems and going on.
impl Resolver {
    fn web(
        &mut self,
        flags: &WebFlags,
        file: file::WebSection,
        web_config_check: Option<&WebConfigCheck>,
    ) -> WebSettings {
        let (listen_address, origin) = self.pick(
            LISTEN_ADDRESS,
            flags.listen_address.clone(),
            file.listen_address,
            DEFAULT_LISTEN_ADDRESS.to_string(),
        );
        if let Err(problem) = super::flags::listen_address(&listen_address) {
            self.error(LISTEN_ADDRESS.name(origin), problem);
        }
        let (telemetry_path, origin) = self.pick(
            TELEMETRY_PATH,
            flags.telemetry_path.clone(),
            file.telemetry_path,
            DEFAULT_TELEMETRY_PATH.to_string(),
        );
        if let Err(problem) = rules::check_telemetry_path(&telemetry_path) {
            self.error(TELEMETRY_PATH.name(origin), problem);
        }
        // Checked completely, certificates included, so that `--config.check` and a reload
        // catch what the HTTP server would refuse.
        let config_file =
            self.pick_path(WEB_CONFIG_FILE, flags.config_file.clone(), file.config_file);
        if let (Some((path, origin)), Some(check)) = (&config_file, web_config_check) {
            match check(path) {
                // `--config.check` shows what the file sets beside its path.
                Ok(summary) => {
                    if let Some(setting) = self.settings.last_mut() {
                        setting.value = format!("{} ({summary})", setting.value);
                    }
                }
                Err(problems) => {
                    for (key, problem) in problems {
                        let problem = match key.as_str() {
                            "" => problem,
                            key => format!("{}: {key}: {problem}", path.display()),
                        };
                        self.error(WEB_CONFIG_FILE.name(*origin), problem);
                    }
                }
            }
        }
        let api_token = self
            .pick_path(
                API_TOKEN_FILE,
                flags.api_token_file.clone(),
                file.api_token_file,
            )
            .and_then(|(path, origin)| self.read_secret(API_TOKEN_FILE.name(origin), &path));
        WebSettings {
            listen_address,
            telemetry_path,
            config_file: config_file.map(|(path, _)| path),
            api_token,
        }
    }

    /// The tracking proxy: off unless a listen address is given; it forwards to
    /// `--dingtalk.api-url` unless told otherwise.
    fn proxy(
        &mut self,
        flags: Option<&ProxyFlags>,
        file: file::ProxySection,
        api_url: &str,
    ) -> ProxySettings {
        let flag_listen = flags.and_then(|flags| flags.listen_address.clone());
        let flag_upstream = flags.and_then(|flags| flags.upstream_url.clone());
        let listen_address = match (flag_listen, file.listen_address) {
            (None, None) => None,
            (flag, file) => {
                let (address, origin) = self.pick(PROXY_LISTEN_ADDRESS, flag, file, String::new());
                if let Err(problem) = super::flags::listen_address(&address) {
                    self.error(PROXY_LISTEN_ADDRESS.name(origin), problem);
                }
                Some(address)
            }
        };
        let upstream_url = match (flag_upstream, file.upstream_url) {
            (None, None) => api_url.to_string(),
            (flag, file) => {
                let (url, origin) = self.pick(PROXY_UPSTREAM_URL, flag, file, String::new());
                rules::normalize_api_url(&url).unwrap_or_else(|problem| {
                    self.error(PROXY_UPSTREAM_URL.name(origin), problem);
                    url
                })
            }
        };
        ProxySettings {
            listen_address,
            upstream_url,
        }
    }

    /// The API of the `default` app and of file apps without an `api_url`.
    fn api_url(&mut self, app: &AppSource<'_>, file: Option<String>) -> String {
        let (api_url, origin) = match app {
            AppSource::Flags(flags) => self.pick(
                API_URL,
                flags.api_url.clone(),
                file,
                DEFAULT_API_URL.to_string(),
            ),
            AppSource::Given { api_url, .. } => {
                self.pick(API_URL, Some(api_url.clone()), None, String::new())
            }
        };
        rules::normalize_api_url(&api_url).unwrap_or_else(|problem| {
            self.error(API_URL.name(origin), problem);
            api_url
        })
    }

    fn dingtalk(
        &mut self,
        flags: &CommandFlags<'_>,
        file: &file::DingTalkSection,
    ) -> DingTalkSettings {
        let (max_qps, origin) = self.pick(
            MAX_QPS,
            flags.dingtalk.max_qps,
            file.max_qps,
            DEFAULT_MAX_QPS,
        );
        if max_qps == 0 {
            self.error(MAX_QPS.name(origin), "must be at least 1");
        }
        let (monthly_call_budget, _) = self.pick(
            MONTHLY_CALL_BUDGET,
            flags.monthly_call_budget,
            file.monthly_call_budget,
            flags.defaults.monthly_call_budget,
        );
        let picked = self.pick(
            TIMEOUT,
            flags.dingtalk.timeout,
            file.timeout.map(|d| d.0),
            PromDuration(DEFAULT_TIMEOUT),
        );
        let timeout = self.positive(TIMEOUT, picked);
        let (openapi_url, origin) = self.pick(
            OPENAPI_URL,
            flags.dingtalk.openapi_url.clone(),
            file.openapi_url.clone(),
            DEFAULT_OPENAPI_URL.to_string(),
        );
        let openapi_url = rules::normalize_api_url(&openapi_url).unwrap_or_else(|problem| {
            self.error(OPENAPI_URL.name(origin), problem);
            openapi_url
        });
        DingTalkSettings {
            max_qps,
            monthly_call_budget,
            timeout,
            openapi_url,
        }
    }

    fn storage_path(&mut self, flags: &CommandFlags<'_>, file: Option<PathBuf>) -> PathBuf {
        let (path, origin) = self
            .pick_path(STORAGE_PATH, flags.storage_path.clone(), file)
            .unwrap_or((flags.defaults.storage_path.clone(), Origin::Default));
        if let Some(shown) = self.settings.last_mut()
            && shown.origin == Origin::Default
        {
            shown.value = path.display().to_string();
        }
        if let Err(problem) = rules::check_storage_path(&path) {
            self.error(STORAGE_PATH.name(origin), problem);
        }
        path
    }

    /// The shared PostgreSQL database, when `--storage.url` names one. The password comes
    /// from a file or the environment, never from the URL, so that it shows neither in the
    /// process list nor in `--config.check`.
    fn shared_store(
        &mut self,
        flags: Option<&ReplicaFlags>,
        file_url: Option<String>,
        file_password_file: Option<PathBuf>,
        file_lease: Option<PromDuration>,
    ) -> Option<SharedStoreSettings> {
        let flags = flags?;
        let (url, url_origin) = match (&flags.url, file_url) {
            (Some(url), _) => (Some(url.clone()), Origin::Flag),
            (None, Some(url)) => (Some(url), Origin::File),
            (None, None) => (None, Origin::Default),
        };
        let url_problem = url
            .as_deref()
            .and_then(|url| rules::check_storage_url(url).err());
        self.settings.push(EffectiveSetting {
            key: STORAGE_URL.file,
            // A URL with a password in it is refused and never shown.
            value: match (&url, &url_problem) {
                (Some(url), None) => url.clone(),
                (Some(_), Some(_)) => "(refused)".to_string(),
                (None, _) => "none (the embedded SQLite store)".to_string(),
            },
            origin: url_origin,
        });
        if let Some(problem) = url_problem {
            self.error(STORAGE_URL.name(url_origin), problem);
        }
        let password_file = self.pick_path(
            STORAGE_PASSWORD_FILE,
            flags.password_file.clone(),
            file_password_file,
        );
        let password = match (password_file, &flags.password) {
            (Some((_, origin)), Some(_)) => {
                self.error(
                    STORAGE_PASSWORD_FILE.name(origin),
                    "give the database password in a file or in DINGTALK_EXPORTER_STORAGE_PASSWORD, not both",
                );
                None
            }
            (Some((path, origin)), None) => {
                self.read_secret(STORAGE_PASSWORD_FILE.name(origin), &path)
            }
            (None, Some(password)) => {
                if let Some(shown) = self.settings.last_mut() {
                    shown.value = "from DINGTALK_EXPORTER_STORAGE_PASSWORD".to_string();
                }
                Some(password.clone())
            }
            (None, None) => None,
        };
        let picked = self.pick(
            LEASE_DURATION,
            flags.lease_duration,
            file_lease,
            PromDuration(DEFAULT_LEASE_DURATION),
        );
        let lease_origin = picked.1;
        let lease_duration = self.positive(LEASE_DURATION, picked);
        if !lease_duration.is_zero() && lease_duration < rules::MIN_LEASE_DURATION {
            self.error(
                LEASE_DURATION.name(lease_origin),
                format!(
                    "must be at least {}: a replica renews its leases several times per lease duration",
                    PromDuration(rules::MIN_LEASE_DURATION)
                ),
            );
        }
        Some(SharedStoreSettings {
            url: url?,
            password,
            lease_duration,
        })
    }

    /// The polling settings, and where `--tasks.max` came from (the static tasks are
    /// checked against it later).
    fn poll(
        &mut self,
        flags: &PollFlags,
        poll: file::PollSection,
        task: file::TaskSection,
        tasks_max: Option<usize>,
    ) -> (PollSettings, Origin) {
        let picked = self.pick(
            MIN_INTERVAL,
            flags.min_interval,
            poll.min_interval.map(|d| d.0),
            PromDuration(DEFAULT_POLL_MIN_INTERVAL),
        );
        let min_origin = picked.1;
        let min_interval = self.positive(MIN_INTERVAL, picked);
        let picked = self.pick(
            MAX_INTERVAL,
            flags.max_interval,
            poll.max_interval.map(|d| d.0),
            PromDuration(DEFAULT_POLL_MAX_INTERVAL),
        );
        let max_origin = picked.1;
        let max_interval = self.positive(MAX_INTERVAL, picked);
        if max_interval < min_interval {
            self.error(
                MAX_INTERVAL.name(max_origin),
                format!(
                    "{} is shorter than {} {}; the longest gap between polls cannot be \
                     shorter than the shortest",
                    PromDuration(max_interval),
                    MIN_INTERVAL.name(min_origin),
                    PromDuration(min_interval)
                ),
            );
        }
        let picked = self.pick(
            STALL_AFTER,
            flags.stall_after,
            poll.stall_after.map(|d| d.0),
            PromDuration(DEFAULT_POLL_STALL_AFTER),
        );
        let stall_after = self.positive(STALL_AFTER, picked);
        let picked = self.pick(
            STALLED_INTERVAL,
            flags.stalled_interval,
            poll.stalled_interval.map(|d| d.0),
            PromDuration(DEFAULT_POLL_STALLED_INTERVAL),
        );
        // A stalled interval shorter than --poll.max-interval is allowed; the policy then
        // polls stalled tasks at the max interval, never more often than running ones.
        let stalled_interval = self.positive(STALLED_INTERVAL, picked);
        let picked = self.pick(
            TASK_MAX_AGE,
            flags.task_max_age,
            task.max_age.map(|d| d.0),
            PromDuration(DEFAULT_TASK_MAX_AGE),
        );
        let task_max_age = self.positive(TASK_MAX_AGE, picked);
        // Zero is allowed: finished tasks then leave /metrics at once.
        let (task_retention, _) = self.pick(
            TASK_RETENTION,
            flags.task_retention,
            task.retention.map(|d| d.0),
            PromDuration(DEFAULT_TASK_RETENTION),
        );
        let (tasks_max, tasks_max_origin) =
            self.pick(TASKS_MAX, flags.tasks_max, tasks_max, DEFAULT_TASKS_MAX);
        if tasks_max == 0 {
            self.error(TASKS_MAX.name(tasks_max_origin), "must be at least 1");
        }
        let settings = PollSettings {
            min_interval,
            max_interval,
            stall_after,
            stalled_interval,
            task_max_age,
            task_retention: task_retention.0,
            tasks_max,
        };
        (settings, tasks_max_origin)
    }

    fn log(&mut self, flags: &LogFlags, file: file::LogSection) -> LogSettings {
        let defaults = LogSettings::default();
        let (level, _) = self.pick(LOG_LEVEL, flags.level, file.level, defaults.level);
        let (format, _) = self.pick(LOG_FORMAT, flags.format, file.format, defaults.format);
        LogSettings { level, format }
    }
}

/// Reads and parses the config file. A file that cannot be read or parsed stops the check
/// there, with every unreadable value it holds; unknown keys are collected with the rest.
fn read_config_file(
    resolver: &mut Resolver,
    path: &Path,
) -> Result<file::FileConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            key: "--config.file".to_string(),
            problem: format!("cannot read {}: {err}", path.display()),
        }])
    })?;
    let parsed = file::parse(&text).map_err(|problems| {
        ConfigErrors(
            problems
                .into_iter()
                .map(|problem| ConfigError {
                    key: path.display().to_string(),
                    problem,
                })
                .collect(),
        )
    })?;
    for problem in parsed.unreadable {
        resolver.error(path.display().to_string(), problem);
    }
    for key in parsed.unknown_keys {
        let problem = match known_keys(&key) {
            Some(known) => format!("unknown key; known here: {}", known.join(", ")),
            None => "unknown key".to_string(),
        };
        resolver.error(key, problem);
    }
    Ok(parsed.file)
}

/// The keys the file accepts beside an unknown one, for the error message.
fn known_keys(unknown: &str) -> Option<&'static [&'static str]> {
    let section = unknown.rsplit_once('.').map_or("", |(section, _)| section);
    // `apps[0].corps[1]` is the section `apps.corps`.
    let mut plain = String::new();
    let mut in_index = false;
    for c in section.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => plain.push(c),
            _ => {}
        }
    }
    let section = plain.as_str();
    let known: &'static [&'static str] = match section {
        "" => &[
            "web",
            "dingtalk",
            "storage",
            "ha",
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
            "openapi_url",
        ],
        "storage" => &["path", "url", "password_file"],
        "ha" => &["lease_duration"],
        "poll" => &[
            "min_interval",
            "max_interval",
            "stall_after",
            "stalled_interval",
        ],
        "task" => &["max_age", "retention"],
        "log" => &["level", "format"],
        "apps" => &[
            "name",
            "agent_id",
            "app_key",
            "app_secret_file",
            "app_secret",
            "api_url",
            "kind",
            "token_api",
            "corp_id",
            "suite_key",
            "suite_secret_file",
            "suite_secret",
            "suite_ticket_file",
            "corps",
        ],
        "apps.corps" => &["corp_id", "name", "agent_id", "monthly_call_budget"],
        "tasks" => &["agent_id", "task_id", "name"],
        _ => return None,
    };
    Some(known)
}

/// The apps of the file's `apps` list, each validated; invalid ones are left out (their
/// problems are recorded). A third-party app yields one entry per corp.
fn file_apps(
    resolver: &mut Resolver,
    entries: Vec<file::AppEntry>,
    default_api_url: &str,
) -> Vec<(AppConfig, SecretSource)> {
    let mut apps = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut agents: HashMap<i64, String> = HashMap::new();
    for (index, mut entry) in entries.into_iter().enumerate() {
        let at = |field: &str| format!("apps[{index}].{field}");
        let errors_before = resolver.errors.len();

        let name = entry.name.take().unwrap_or_default();
        if name.trim().is_empty() {
            resolver.error(
                at("name"),
                "missing: every app needs a name (its `app` label)",
            );
        } else if let Err(problem) = rules::check_app_name(&name) {
            resolver.error(at("name"), problem);
        } else if let Some(first) = names.get(&name) {
            resolver.error(
                at("name"),
                format!("duplicate app name {name:?} (also apps[{first}])"),
            );
        } else {
            names.insert(name.clone(), index);
        }

        let api_url = match entry.api_url.take() {
            None => default_api_url.to_string(),
            Some(url) => rules::normalize_api_url(&url).unwrap_or_else(|problem| {
                resolver.error(at("api_url"), problem);
                url
            }),
        };

        let third_party = match entry.kind.as_deref() {
            None | Some("internal") => false,
            Some("third_party") => true,
            Some(other) => {
                resolver.error(
                    at("kind"),
                    format!("{other:?} is not an app kind: internal (the default) or third_party"),
                );
                continue;
            }
        };
        if third_party {
            let corps = third_party_app(resolver, index, entry, &mut agents);
            if resolver.errors.len() == errors_before
                && let Some((template, source, corps)) = corps
            {
                for (corp_id, agent_id, corp) in corps {
                    apps.push((
                        AppConfig {
                            name: name.clone(),
                            agent_id: Some(agent_id),
                            corp_id: Some(corp_id),
                            corp: Some(corp),
                            api_url: api_url.clone(),
                            ..template.clone()
                        },
                        source.clone(),
                    ));
                }
            }
            continue;
        }

        for field in [
            ("suite_key", entry.suite_key.is_some()),
            ("suite_secret_file", entry.suite_secret_file.is_some()),
            ("suite_secret", entry.suite_secret.is_some()),
            ("suite_ticket_file", entry.suite_ticket_file.is_some()),
            ("corps", !entry.corps.is_empty()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        {
            resolver.error(
                at(field),
                "only third-party apps have this; add `kind: third_party` or remove it",
            );
        }

        let agent_id = match entry.agent_id {
            None => {
                resolver.error(
                    at("agent_id"),
                    "missing: the agent whose tasks this app polls",
                );
                None
            }
            Some(raw) => claim_agent(
                resolver,
                &mut agents,
                raw,
                at("agent_id"),
                &format!("apps[{index}]"),
            ),
        };

        let app_key = entry.app_key.unwrap_or_default();
        if let Err(problem) = rules::check_app_key(&app_key) {
            resolver.error(at("app_key"), problem);
        }

        let secret = secret_of(
            resolver,
            index,
            ("app_secret_file", entry.app_secret_file),
            ("app_secret", entry.app_secret),
            "the app secret",
        );

        let token_api = match entry.token_api.as_deref() {
            None | Some("gettoken") => TokenApi::GetToken,
            Some("unified") => TokenApi::Unified,
            Some(other) => {
                resolver.error(
                    at("token_api"),
                    format!(
                        "{other:?} is not a token API of internal apps: gettoken (the default) \
                         or unified (with corp_id)"
                    ),
                );
                TokenApi::GetToken
            }
        };
        let corp_id = match (token_api, entry.corp_id) {
            (TokenApi::Unified, None) => {
                resolver.error(
                    at("corp_id"),
                    "missing: the unified token API needs the app's own corp id (ding...)",
                );
                None
            }
            (TokenApi::Unified, Some(corp_id)) => {
                if let Err(problem) = rules::check_corp_id(&corp_id) {
                    resolver.error(at("corp_id"), problem);
                }
                Some(corp_id)
            }
            (_, Some(_)) => {
                resolver.error(
                    at("corp_id"),
                    "only used with `token_api: unified`; remove it or set token_api",
                );
                None
            }
            (_, None) => None,
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
                    token_api,
                    corp_id,
                    corp: None,
                },
                source,
            ));
        }
    }
    apps
}

/// A validated corp: its id, its agent and its settings.
type ValidCorp = (String, i64, CorpSettings);

/// The suite-wide part of a third-party app (as an [`AppConfig`] to complete per corp), how
/// its secret was given, and its corps; `None` when something is missing.
fn third_party_app(
    resolver: &mut Resolver,
    index: usize,
    entry: file::AppEntry,
    agents: &mut HashMap<i64, String>,
) -> Option<(AppConfig, SecretSource, Vec<ValidCorp>)> {
    let at = |field: &str| format!("apps[{index}].{field}");
    for (field, given) in [
        ("app_key", entry.app_key.is_some()),
        ("app_secret_file", entry.app_secret_file.is_some()),
        ("app_secret", entry.app_secret.is_some()),
        ("agent_id", entry.agent_id.is_some()),
        ("corp_id", entry.corp_id.is_some()),
    ] {
        if given {
            let hint = match field {
                "agent_id" | "corp_id" => {
                    "each corp of a third-party app has its own; give it under corps"
                }
                _ => "a third-party app uses suite_key and suite_secret_file (or suite_secret)",
            };
            resolver.error(at(field), format!("not for `kind: third_party`: {hint}"));
        }
    }
    let suite_key = entry.suite_key.unwrap_or_default();
    if suite_key.is_empty() {
        resolver.error(at("suite_key"), "missing: the suite's SuiteKey (Client ID)");
    } else if let Err(problem) = rules::check_app_key(&suite_key) {
        resolver.error(at("suite_key"), problem.replace("AppKey", "SuiteKey"));
    }
    let secret = secret_of(
        resolver,
        index,
        ("suite_secret_file", entry.suite_secret_file),
        ("suite_secret", entry.suite_secret),
        "the suite secret",
    );
    let token_api = match entry.token_api.as_deref() {
        None | Some("unified") => TokenApi::Unified,
        Some("corp_access_token") => TokenApi::CorpAccessToken,
        Some("get_corp_token") => TokenApi::GetCorpToken,
        Some(other) => {
            resolver.error(
                at("token_api"),
                format!(
                    "{other:?} is not a corp token API: unified (the default), \
                     corp_access_token or get_corp_token"
                ),
            );
            TokenApi::Unified
        }
    };
    let suite_ticket_file = entry
        .suite_ticket_file
        .map(|path| resolver.file_relative(path));
    if token_api.needs_suite_ticket() && suite_ticket_file.is_none() {
        resolver.error(
            at("suite_ticket_file"),
            format!(
                "missing: token_api {} needs the suite ticket; give the file your callback \
                 service writes it to",
                token_api.as_str()
            ),
        );
    }
    if entry.corps.is_empty() {
        resolver.error(
            at("corps"),
            "missing: a third-party app polls for the corps listed here (corp_id, name, agent_id)",
        );
    }
    let mut corps = Vec::new();
    let mut corp_ids: HashMap<String, usize> = HashMap::new();
    let mut corp_names: HashMap<String, usize> = HashMap::new();
    for (number, corp) in entry.corps.into_iter().enumerate() {
        let at = |field: &str| format!("apps[{index}].corps[{number}].{field}");
        let errors_before = resolver.errors.len();
        let corp_id = corp.corp_id.unwrap_or_default();
        if let Err(problem) = rules::check_corp_id(&corp_id) {
            resolver.error(at("corp_id"), problem);
        } else if let Some(first) = corp_ids.insert(corp_id.clone(), number) {
            resolver.error(
                at("corp_id"),
                format!("duplicate corp {corp_id:?} (also corps[{first}])"),
            );
        }
        let name = corp.name.unwrap_or_default();
        if name.trim().is_empty() {
            resolver.error(
                at("name"),
                "missing: every corp needs a name (its `corp` label)",
            );
        } else if let Err(problem) = rules::check_corp_name(&name) {
            resolver.error(at("name"), problem);
        } else if let Some(first) = corp_names.insert(name.clone(), number) {
            resolver.error(
                at("name"),
                format!("duplicate corp name {name:?} (also corps[{first}])"),
            );
        }
        let agent_id = match corp.agent_id {
            None => {
                resolver.error(
                    at("agent_id"),
                    "missing: the app's agent id in this corp (from get_auth_info or the \
                     corp's app settings)",
                );
                None
            }
            Some(raw) => claim_agent(
                resolver,
                agents,
                raw,
                at("agent_id"),
                &format!("apps[{index}].corps[{number}]"),
            ),
        };
        if resolver.errors.len() == errors_before
            && let Some(agent_id) = agent_id
        {
            corps.push((
                corp_id,
                agent_id,
                CorpSettings {
                    name,
                    monthly_call_budget: corp.monthly_call_budget.unwrap_or(0),
                    suite_ticket_file: suite_ticket_file.clone(),
                },
            ));
        }
    }
    let (app_secret, source) = secret?;
    let template = AppConfig {
        name: String::new(),
        agent_id: None,
        app_key: suite_key,
        app_secret,
        api_url: String::new(),
        token_api,
        corp_id: None,
        corp: None,
    };
    Some((template, source, corps))
}

/// Checks an agent id and that no other app or corp polls that agent.
fn claim_agent(
    resolver: &mut Resolver,
    agents: &mut HashMap<i64, String>,
    raw: file::RawId,
    key: String,
    owner: &str,
) -> Option<i64> {
    match rules::raw_id(raw) {
        Err(problem) => {
            resolver.error(key, problem);
            None
        }
        Ok(agent_id) => {
            if let Some(first) = agents.get(&agent_id) {
                resolver.error(key, format!("duplicate agent {agent_id} (also {first})"));
            } else {
                agents.insert(agent_id, owner.to_string());
            }
            Some(agent_id)
        }
    }
}

/// A secret given in a file or inline (exactly one of them), with how it was given.
fn secret_of(
    resolver: &mut Resolver,
    index: usize,
    (file_field, file): (&str, Option<PathBuf>),
    (inline_field, inline): (&str, Option<Secret>),
    what: &str,
) -> Option<(Secret, SecretSource)> {
    let at = |field: &str| format!("apps[{index}].{field}");
    match (file, inline) {
        (Some(_), Some(_)) => {
            resolver.error(
                format!("apps[{index}]"),
                format!("give {file_field} or {inline_field}, not both"),
            );
            None
        }
        (None, None) => {
            resolver.error(
                at(file_field),
                format!("missing: give {what} in a file ({file_field}) or inline ({inline_field})"),
            );
            None
        }
        (Some(path), None) => {
            let path = resolver.file_relative(path);
            resolver
                .read_secret(&at(file_field), &path)
                .map(|secret| (secret, SecretSource::File(path)))
        }
        (None, Some(secret)) => {
            let secret = Secret::new(secret.expose().trim());
            if secret.is_empty() {
                resolver.error(at(inline_field), "is empty");
                None
            } else {
                Some((secret, SecretSource::Inline))
            }
        }
    }
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
                    token_api: TokenApi::GetToken,
                    corp_id: None,
                    corp: None,
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
        (None, Some((_, source))) => {
            // Name the key where the secret was given, so both end up in one place.
            let key = match source {
                SecretSource::File(_) if flags.app_secret_file.is_none() => APP_KEY.file,
                _ => APP_KEY.flag,
            };
            resolver.error(key, "missing: an app secret is set but no app key");
            None
        }
        (Some((app_key, origin)), Some((app_secret, source))) => {
            if let Err(problem) = rules::check_app_key(&app_key) {
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
                    token_api: TokenApi::GetToken,
                    corp_id: None,
                    corp: None,
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
        let mut id = |field: &str, raw: Option<file::RawId>| match raw.map(rules::raw_id) {
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
        if let Err(problem) = rules::check_task_name(&name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The known keys named in "unknown key" messages are exactly the keys the file takes.
    #[test]
    fn known_keys_match_the_schema() {
        let every_key = "\
web: {listen_address: ':1', telemetry_path: /m, config_file: w.yml, api_token_file: t}
dingtalk: {api_url: 'http://x', app_key: k, app_secret_file: s, max_qps: 1,
           monthly_call_budget: 1, timeout: 1s, openapi_url: 'http://y'}
storage: {path: x.db, url: 'postgres://u@h/d', password_file: p}
ha: {lease_duration: 15s}
poll: {min_interval: 1s, max_interval: 2s, stall_after: 1h, stalled_interval: 30m}
task: {max_age: 1h, retention: 1h}
tasks_max: 1
log: {level: info, format: json}
apps: [{name: a, agent_id: 1, app_key: k, app_secret_file: s, app_secret: x, api_url: 'http://x',
        kind: internal, token_api: gettoken, corp_id: c, suite_key: k, suite_secret_file: s,
        suite_secret: x, suite_ticket_file: t,
        corps: [{corp_id: c, name: n, agent_id: 2, monthly_call_budget: 1}]}]
tasks: [{agent_id: 1, task_id: 1, name: n}]
";
        let unknown = file::parse(every_key).unwrap().unknown_keys;
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
        let corps = &document["apps"][0]["corps"];
        assert_eq!(
            known_keys("apps[0].corps[0].x").unwrap(),
            keys_of(corps),
            "apps.corps"
        );
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
