//! Environment twins of the flags, read from the real process environment.
//!
//! This file holds a single test on purpose: it changes the process environment, which no
//! other test of this binary may read at the same time.

use std::time::Duration;

use clap::{CommandFactory, Parser};
use dingtalk_exporter::commands::cli::{Cli, Command};
use dingtalk_exporter::config::{self, LogFormat, LogLevel};

/// A secret no output may ever contain.
const SECRET: &str = "env-s3cr3t-Okapi-9321";

/// Every setting can be given through its environment variable, a flag on the command line
/// still wins, the demo reads the same variables, and the secret's value is never shown.
#[test]
fn environment_twins_configure_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok\n").unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    let config_file = dir.path().join("config.yml");
    std::fs::write(&config_file, "log: {format: json}\n").unwrap();
    let db = dir.path().join("env.db");
    let variables = [
        ("DINGTALK_EXPORTER_WEB_LISTEN_ADDRESS", "127.0.0.1:0"),
        ("DINGTALK_EXPORTER_WEB_TELEMETRY_PATH", "/env-metrics"),
        (
            "DINGTALK_EXPORTER_WEB_API_TOKEN_FILE",
            token.to_str().unwrap(),
        ),
        (
            "DINGTALK_EXPORTER_CONFIG_FILE",
            config_file.to_str().unwrap(),
        ),
        ("DINGTALK_API_URL", "http://127.0.0.1:7"),
        ("DINGTALK_APP_KEY", "env-key"),
        ("DINGTALK_APP_SECRET", SECRET),
        ("DINGTALK_EXPORTER_DINGTALK_MAX_QPS", "4"),
        ("DINGTALK_EXPORTER_DINGTALK_MONTHLY_CALL_BUDGET", "123"),
        ("DINGTALK_EXPORTER_DINGTALK_TIMEOUT", "3s"),
        ("DINGTALK_EXPORTER_STORAGE_PATH", db.to_str().unwrap()),
        ("DINGTALK_EXPORTER_POLL_MIN_INTERVAL", "2s"),
        ("DINGTALK_EXPORTER_POLL_MAX_INTERVAL", "2m"),
        ("DINGTALK_EXPORTER_TASK_MAX_AGE", "6h"),
        ("DINGTALK_EXPORTER_TASK_RETENTION", "30m"),
        ("DINGTALK_EXPORTER_TASKS_MAX", "77"),
        ("DINGTALK_EXPORTER_LOG_LEVEL", "debug"),
    ];
    for (name, value) in variables {
        // SAFETY: this test binary runs this one test only; no other thread reads the
        // environment while it is changed.
        unsafe { std::env::set_var(name, value) };
    }

    let cli = Cli::try_parse_from(["dingtalk-exporter"]).unwrap();
    let config = config::load(&cli.exporter).unwrap();
    assert_eq!(config.web.listen_address, "127.0.0.1:0");
    assert_eq!(config.web.telemetry_path, "/env-metrics");
    assert_eq!(config.web.api_token.as_ref().unwrap().expose(), "tok");
    assert_eq!(config.config_file.as_deref(), Some(config_file.as_path()));
    assert_eq!(config.dingtalk.max_qps, 4);
    assert_eq!(config.dingtalk.monthly_call_budget, 123);
    assert_eq!(config.dingtalk.timeout, Duration::from_secs(3));
    assert_eq!(config.storage_path, db);
    assert_eq!(config.poll.min_interval, Duration::from_secs(2));
    assert_eq!(config.poll.max_interval, Duration::from_secs(120));
    assert_eq!(config.poll.task_max_age, Duration::from_secs(6 * 3600));
    assert_eq!(config.poll.task_retention, Duration::from_secs(1800));
    assert_eq!(config.poll.tasks_max, 77);
    assert_eq!(config.log.level, LogLevel::Debug);
    // Not set in the environment: the config file named by the environment decides.
    assert_eq!(config.log.format, LogFormat::Json);
    let app = &config.apps[0];
    assert_eq!(
        (
            app.name.as_str(),
            app.app_key.as_str(),
            app.api_url.as_str()
        ),
        ("default", "env-key", "http://127.0.0.1:7")
    );
    assert_eq!(app.app_secret.expose(), SECRET);

    // A flag on the command line wins over its environment variable.
    let cli =
        Cli::try_parse_from(["dingtalk-exporter", "--tasks.max=5", "--log.level=error"]).unwrap();
    let config = config::load(&cli.exporter).unwrap();
    assert_eq!(config.poll.tasks_max, 5);
    assert_eq!(config.log.level, LogLevel::Error);

    // The secret's value shows nowhere: not in help, not in debug output, not in the check
    // report, not when it is given twice.
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("DINGTALK_EXPORTER_TASKS_MAX=77"), "{help}");
    let report = check_config(&cli.exporter);
    assert!(report.valid, "{}", report.text);
    let cli_twice = Cli::try_parse_from([
        "dingtalk-exporter",
        "--dingtalk.app-secret-file",
        secret_file.to_str().unwrap(),
    ])
    .unwrap();
    let twice = config::load(&cli_twice.exporter).unwrap_err().to_string();
    assert!(twice.contains("given twice"), "{twice}");
    for shown in [help, format!("{cli:?}"), report.text, twice] {
        assert!(!shown.contains(SECRET), "{shown}");
    }

    // The demo reads the same variables (except the store's and the app's).
    let cli = Cli::try_parse_from(["dingtalk-exporter", "demo"]).unwrap();
    let Some(Command::Demo(args)) = cli.command else {
        panic!("not the demo");
    };
    assert_eq!(
        args.settings.web.listen_address.as_deref(),
        Some("127.0.0.1:0")
    );
    assert_eq!(args.settings.monthly_call_budget, Some(123));
    assert_eq!(args.settings.poll.tasks_max, Some(77));
    assert_eq!(args.settings.storage_path, None);
}

/// `--config.check` as the binary runs it, web config file included.
fn check_config(
    flags: &dingtalk_exporter::config::flags::ExporterFlags,
) -> dingtalk_exporter::config::CheckReport {
    dingtalk_exporter::config::check(flags, &dingtalk_exporter::http::WebConfig::check_file)
}
