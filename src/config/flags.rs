//! The exporter's flags (each with an environment twin), one struct per section (web,
//! DingTalk, polling, logging), each flattened into the exporter's flags and the demo's, so
//! `--help` groups them and the two commands share them. The subcommands' own flags live
//! with the commands.
//!
//! Settings flags are `Option`s with no clap default: a flag that was not given (on the
//! command line or through its environment twin) leaves the setting to the config file, and
//! only then to the default of [`crate::config`]. The defaults are therefore written into
//! the help texts by hand; a test checks that each help text and the default in force agree.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::Args;

use super::{LogFormat, LogLevel};
use crate::duration::PromDuration;
use crate::secret::Secret;

/// The flags of the exporter (no subcommand), in the order of `--help`.
#[derive(Args, Clone, Debug, Default)]
pub struct ExporterFlags {
    #[command(flatten)]
    pub web: WebFlags,

    /// YAML file with DingTalk apps, static tasks and any other setting; a flag given on the
    /// command line or through its environment variable overrides the file.
    #[arg(
        long = "config.file",
        env = "DINGTALK_EXPORTER_CONFIG_FILE",
        value_name = "FILE",
        help_heading = "Configuration"
    )]
    pub config_file: Option<PathBuf>,

    /// Validate the flags and the config file, print what would be used, and exit: 0 when
    /// valid, 1 otherwise.
    // No environment twin: a variable left set in a service's environment would turn the
    // exporter into a one-shot check.
    #[arg(long = "config.check", help_heading = "Configuration")]
    pub config_check: bool,

    #[command(flatten)]
    pub app: AppFlags,

    /// Metered DingTalk calls the exporter may make per calendar month (Asia/Shanghai);
    /// polling paces itself to stay under it. 0: no budget. [default: 0]
    #[arg(
        long = "dingtalk.monthly-call-budget",
        env = "DINGTALK_EXPORTER_DINGTALK_MONTHLY_CALL_BUDGET",
        value_name = "CALLS",
        help_heading = "DingTalk"
    )]
    pub monthly_call_budget: Option<u64>,

    #[command(flatten)]
    pub dingtalk: DingTalkFlags,

    /// The embedded database (SQLite) holding tracked tasks and counters.
    /// [default: dingtalk-exporter.db]
    #[arg(
        long = "storage.path",
        env = "DINGTALK_EXPORTER_STORAGE_PATH",
        value_name = "FILE",
        help_heading = "Storage"
    )]
    pub storage_path: Option<PathBuf>,

    #[command(flatten)]
    pub replicas: ReplicaFlags,

    #[command(flatten)]
    pub poll: PollFlags,

    #[command(flatten)]
    pub log: LogFlags,

    #[command(flatten)]
    pub proxy: ProxyFlags,
}

/// The tracking proxy: senders point their DingTalk base URL at it, it relays to DingTalk
/// and tracks the sends it sees.
#[derive(Args, Clone, Debug, Default)]
pub struct ProxyFlags {
    /// Where the tracking proxy listens (`host:port`, e.g. 127.0.0.1:10051); senders use it
    /// as their DingTalk base URL. [default: none, the proxy is off]
    #[arg(
        id = "proxy_listen_address",
        long = "proxy.listen-address",
        env = "DINGTALK_EXPORTER_PROXY_LISTEN_ADDRESS",
        value_name = "ADDRESS",
        help_heading = "Tracking proxy"
    )]
    pub listen_address: Option<String>,

    /// Where the proxy forwards every request: the only destination it ever contacts.
    /// [default: --dingtalk.api-url]
    #[arg(
        id = "proxy_upstream_url",
        long = "proxy.upstream-url",
        env = "DINGTALK_EXPORTER_PROXY_UPSTREAM_URL",
        value_name = "URL",
        help_heading = "Tracking proxy"
    )]
    pub upstream_url: Option<String>,
}

/// A PostgreSQL database shared by several exporters instead of the embedded SQLite file.
#[derive(Args, Clone, Debug, Default)]
pub struct ReplicaFlags {
    /// A PostgreSQL database instead of the embedded SQLite store, shared by every replica:
    /// postgres://user@host:5432/db. The password never goes in the URL: give it with
    /// --storage.password-file or DINGTALK_EXPORTER_STORAGE_PASSWORD.
    #[arg(
        long = "storage.url",
        env = "DINGTALK_EXPORTER_STORAGE_URL",
        value_name = "URL",
        help_heading = "Storage"
    )]
    pub url: Option<String>,

    /// File holding the database password, surrounding whitespace trimmed. Alternatively put
    /// the password itself in the DINGTALK_EXPORTER_STORAGE_PASSWORD environment variable.
    #[arg(
        long = "storage.password-file",
        env = "DINGTALK_EXPORTER_STORAGE_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "Storage"
    )]
    pub password_file: Option<PathBuf>,

    /// The password itself, meant to come from DINGTALK_EXPORTER_STORAGE_PASSWORD. Hidden
    /// from the help: on the command line it would be visible in the process list.
    #[arg(
        long = "storage.password",
        env = "DINGTALK_EXPORTER_STORAGE_PASSWORD",
        hide = true,
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = parse_secret
    )]
    pub password: Option<Secret>,

    /// With a shared database: how long a replica owns an app's polling without renewing;
    /// a dead owner's apps move to another replica within it. [default: 15s]
    #[arg(
        long = "ha.lease-duration",
        env = "DINGTALK_EXPORTER_HA_LEASE_DURATION",
        value_name = "DURATION",
        help_heading = "Storage"
    )]
    pub lease_duration: Option<PromDuration>,
}

/// The DingTalk app of the command line, which becomes the app named `default`.
#[derive(Args, Clone, Debug, Default)]
pub struct AppFlags {
    /// Base URL of DingTalk's API, for this app and for config-file apps without an
    /// `api_url` of their own. [default: https://oapi.dingtalk.com]
    #[arg(
        long = "dingtalk.api-url",
        env = "DINGTALK_API_URL",
        value_name = "URL",
        help_heading = "DingTalk"
    )]
    pub api_url: Option<String>,

    /// AppKey (Client ID) of the app that polls every task whose agent_id no app of the
    /// config file claims.
    #[arg(
        long = "dingtalk.app-key",
        env = "DINGTALK_APP_KEY",
        value_name = "KEY",
        help_heading = "DingTalk"
    )]
    pub app_key: Option<String>,

    /// File holding that app's AppSecret (Client Secret), surrounding whitespace trimmed.
    /// Alternatively put the secret itself in the DINGTALK_APP_SECRET environment variable.
    #[arg(
        long = "dingtalk.app-secret-file",
        env = "DINGTALK_EXPORTER_DINGTALK_APP_SECRET_FILE",
        value_name = "FILE",
        help_heading = "DingTalk"
    )]
    pub app_secret_file: Option<PathBuf>,

    /// The AppSecret itself, meant to come from DINGTALK_APP_SECRET. Hidden from the help:
    /// on the command line a secret is visible to every local user in the process list.
    #[arg(
        long = "dingtalk.app-secret",
        env = "DINGTALK_APP_SECRET",
        hide = true,
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = parse_secret
    )]
    pub app_secret: Option<Secret>,
}

/// Where and how the exporter serves HTTP; shared by the exporter and the demo.
#[derive(Args, Clone, Debug, Default)]
pub struct WebFlags {
    /// Address to listen on for metrics and the task API: `:10050` (all interfaces),
    /// `host:port` or `[::1]:port`. [default: :10050]
    #[arg(
        long = "web.listen-address",
        env = "DINGTALK_EXPORTER_WEB_LISTEN_ADDRESS",
        value_name = "ADDRESS",
        help_heading = "Web"
    )]
    pub listen_address: Option<String>,

    /// Path under which to expose metrics. [default: /metrics]
    #[arg(
        long = "web.telemetry-path",
        env = "DINGTALK_EXPORTER_WEB_TELEMETRY_PATH",
        value_name = "PATH",
        help_heading = "Web"
    )]
    pub telemetry_path: Option<String>,

    /// Configuration file that can enable TLS or basic authentication (the Prometheus
    /// exporter-toolkit format: tls_server_config, basic_auth_users).
    #[arg(
        id = "web_config_file",
        long = "web.config.file",
        env = "DINGTALK_EXPORTER_WEB_CONFIG_FILE",
        value_name = "FILE",
        help_heading = "Web"
    )]
    pub config_file: Option<PathBuf>,

    /// File holding the bearer token that the task API's POST and DELETE require; without
    /// it, writes are accepted from loopback clients only.
    #[arg(
        long = "web.api-token-file",
        env = "DINGTALK_EXPORTER_WEB_API_TOKEN_FILE",
        value_name = "FILE",
        help_heading = "Web"
    )]
    pub api_token_file: Option<PathBuf>,
}

/// How the exporter calls DingTalk; shared by the exporter and the demo.
#[derive(Args, Clone, Debug, Default)]
pub struct DingTalkFlags {
    /// Outbound calls per second per API per app. DingTalk allows 20 on the free edition
    /// and the sending application needs its share. [default: 10]
    #[arg(
        long = "dingtalk.max-qps",
        env = "DINGTALK_EXPORTER_DINGTALK_MAX_QPS",
        value_name = "QPS",
        help_heading = "DingTalk"
    )]
    pub max_qps: Option<u32>,

    /// Timeout of each request to DingTalk. [default: 10s]
    #[arg(
        long = "dingtalk.timeout",
        env = "DINGTALK_EXPORTER_DINGTALK_TIMEOUT",
        value_name = "DURATION",
        help_heading = "DingTalk"
    )]
    pub timeout: Option<PromDuration>,

    /// Base URL of DingTalk's newer API host, where third-party apps get their corps'
    /// access tokens. [default: https://api.dingtalk.com]
    #[arg(
        long = "dingtalk.openapi-url",
        env = "DINGTALK_EXPORTER_DINGTALK_OPENAPI_URL",
        value_name = "URL",
        help_heading = "DingTalk"
    )]
    pub openapi_url: Option<String>,
}

/// How tasks are polled and kept; shared by the exporter and the demo.
#[derive(Args, Clone, Debug, Default)]
pub struct PollFlags {
    /// Shortest gap between two polls of one task. [default: 5s]
    #[arg(
        long = "poll.min-interval",
        env = "DINGTALK_EXPORTER_POLL_MIN_INTERVAL",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub min_interval: Option<PromDuration>,

    /// Longest gap between two polls of a task still in progress; bounds how late a stall
    /// or a completion is seen. [default: 5m]
    #[arg(
        long = "poll.max-interval",
        env = "DINGTALK_EXPORTER_POLL_MAX_INTERVAL",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub max_interval: Option<PromDuration>,

    /// A task whose progress has not changed for this long (stalled, or never started) is
    /// polled at the stalled interval. [default: 1h]
    #[arg(
        long = "poll.stall-after",
        env = "DINGTALK_EXPORTER_POLL_STALL_AFTER",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub stall_after: Option<PromDuration>,

    /// Gap between polls of a task whose progress has not changed for --poll.stall-after; a
    /// change returns it to normal polling. [default: 30m]
    #[arg(
        long = "poll.stalled-interval",
        env = "DINGTALK_EXPORTER_POLL_STALLED_INTERVAL",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub stalled_interval: Option<PromDuration>,

    /// Stop polling a task this long after it was created (DingTalk answers about the last
    /// 24 hours only). [default: 24h]
    #[arg(
        long = "task.max-age",
        env = "DINGTALK_EXPORTER_TASK_MAX_AGE",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub task_max_age: Option<PromDuration>,

    /// How long a finished, expired or invalid task stays on the metrics page.
    /// [default: 1h]
    #[arg(
        long = "task.retention",
        env = "DINGTALK_EXPORTER_TASK_RETENTION",
        value_name = "DURATION",
        help_heading = "Polling"
    )]
    pub task_retention: Option<PromDuration>,

    /// Most tasks tracked at once; registrations past it are refused. [default: 10000]
    #[arg(
        long = "tasks.max",
        env = "DINGTALK_EXPORTER_TASKS_MAX",
        value_name = "COUNT",
        help_heading = "Polling"
    )]
    pub tasks_max: Option<usize>,
}

/// What is logged and how; shared by the exporter and the demo.
#[derive(Args, Clone, Debug, Default)]
pub struct LogFlags {
    /// Only log messages with the given severity or above. [default: info]
    #[arg(
        long = "log.level",
        env = "DINGTALK_EXPORTER_LOG_LEVEL",
        value_name = "LEVEL",
        help_heading = "Logging"
    )]
    pub level: Option<LogLevel>,

    /// Output format of log messages. [default: logfmt]
    #[arg(
        long = "log.format",
        env = "DINGTALK_EXPORTER_LOG_FORMAT",
        value_name = "FORMAT",
        help_heading = "Logging"
    )]
    pub format: Option<LogFormat>,
}

/// The settings flags of `dingtalk-exporter demo`: the exporter's, without the DingTalk app
/// (the demo's app is the simulator's).
#[derive(Args, Clone, Debug)]
pub struct DemoFlags {
    #[command(flatten)]
    pub web: WebFlags,

    /// YAML file of settings (web, poll, task, log, ...), as the exporter reads it; its apps
    /// and static tasks are left out, since the demo's app is the simulator.
    // No environment twin: DINGTALK_EXPORTER_CONFIG_FILE names a real exporter's file,
    // whose apps and tasks the demo must not pick up by accident.
    #[arg(
        long = "config.file",
        value_name = "FILE",
        help_heading = "Configuration"
    )]
    pub config_file: Option<PathBuf>,

    /// Metered calls per month the demo's exporter may make; set by default so that the
    /// budget panels have data. [default: 5000, the free edition's quota]
    #[arg(
        long = "dingtalk.monthly-call-budget",
        env = "DINGTALK_EXPORTER_DINGTALK_MONTHLY_CALL_BUDGET",
        value_name = "CALLS",
        help_heading = "DingTalk"
    )]
    pub monthly_call_budget: Option<u64>,

    #[command(flatten)]
    pub dingtalk: DingTalkFlags,

    /// The database of the demo's tracked tasks. [default: a temporary file, removed on
    /// exit]
    // No environment twin: DINGTALK_EXPORTER_STORAGE_PATH names a real exporter's store,
    // which must never receive the demo's sample tasks.
    #[arg(long = "storage.path", value_name = "FILE", help_heading = "Storage")]
    pub storage_path: Option<PathBuf>,

    #[command(flatten)]
    pub poll: PollFlags,

    #[command(flatten)]
    pub log: LogFlags,
}

/// Never fails, so clap never echoes the value in an error message.
fn parse_secret(text: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(text))
}

/// The socket address to bind for a `--web.listen-address` value, read the way Prometheus
/// exporters read it: `:10050` is every IPv4 interface (`0.0.0.0:10050`), `host:port` and
/// `[::1]:port` as written; a host name is resolved and its first address used.
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let invalid = |why: &str| {
        format!("invalid listen address {text:?}: {why}; use :10050, host:port or [::1]:port")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port must be a number from 0 to 65535"))?;
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if host.contains(':') || host.starts_with('[') {
        // An IPv6 address that did not parse: unbracketed (`::1:80`) or malformed.
        return Err(invalid(
            "write an IPv6 address in brackets, like [::1]:10050",
        ));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|err| invalid(&format!("cannot resolve {host:?}: {err}")))?
        .next()
        .ok_or_else(|| invalid(&format!("{host:?} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `:port` listens on every interface, as in every Prometheus exporter.
    #[test]
    fn port_only_listens_on_all_interfaces() {
        assert_eq!(
            listen_address(":10050").unwrap(),
            "0.0.0.0:10050".parse().unwrap()
        );
    }

    /// IPv4 and bracketed IPv6 addresses are bound as written, port 0 included.
    #[test]
    fn host_and_port_are_taken_as_written() {
        assert_eq!(
            listen_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            listen_address("[::1]:9000").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert!(
            listen_address("localhost:10050")
                .unwrap()
                .ip()
                .is_loopback()
        );
    }

    /// Addresses without a usable port, or unbracketed IPv6, are refused with a hint.
    #[test]
    fn malformed_addresses_are_refused() {
        for bad in ["10050", "127.0.0.1", ":http", ":70000", "::1:80", "[::1:80"] {
            let err = listen_address(bad).unwrap_err();
            assert!(err.contains("host:port"), "{bad}: {err}");
        }
    }
}
