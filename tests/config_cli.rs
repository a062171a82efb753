//! The command line as `interface.md` promises it: flag names, defaults, environment twins,
//! help texts and subcommands.

use std::time::Duration;

use clap::{CommandFactory, Parser};
use dingtalk_exporter::commands::cli::{Cli, Command};
use dingtalk_exporter::config::{self, LogFormat, LogLevel};

/// The exporter's flags and their defaults, as in interface.md's table ("none": no default).
const INTERFACE_FLAGS: &[(&str, &str)] = &[
    ("web.listen-address", ":10050"),
    ("web.telemetry-path", "/metrics"),
    ("web.config.file", "none"),
    ("web.api-token-file", "none"),
    ("config.file", "none"),
    ("dingtalk.api-url", "https://oapi.dingtalk.com"),
    ("dingtalk.app-key", "none"),
    ("dingtalk.app-secret-file", "none"),
    ("dingtalk.max-qps", "10"),
    ("dingtalk.monthly-call-budget", "0"),
    ("dingtalk.timeout", "10s"),
    ("storage.path", "dingtalk-exporter.db"),
    ("poll.min-interval", "5s"),
    ("poll.max-interval", "5m"),
    ("poll.stall-after", "1h"),
    ("poll.stalled-interval", "30m"),
    ("task.max-age", "24h"),
    ("task.retention", "1h"),
    ("tasks.max", "10000"),
    ("log.level", "info"),
    ("log.format", "logfmt"),
];

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("dingtalk-exporter").chain(args.iter().copied()))
}

/// clap's own consistency checks pass (unique ids, valid defaults, ...).
#[test]
fn command_line_definition_is_consistent() {
    Cli::command().debug_assert();
}

/// Every flag of interface.md exists, and nothing given means exactly its default.
#[test]
fn every_flag_default_matches_the_interface() {
    let command = Cli::command();
    let longs: Vec<&str> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .collect();
    for (flag, _) in INTERFACE_FLAGS {
        assert!(longs.contains(flag), "--{flag} is missing");
    }

    let cli = parse(&[]).unwrap();
    assert!(cli.command.is_none());
    assert!(!cli.exporter.config_check);
    let config = config::load(&cli.exporter).unwrap();
    let effective = [
        ("web.listen-address", config.web.listen_address.clone()),
        ("web.telemetry-path", config.web.telemetry_path.clone()),
        ("dingtalk.max-qps", config.dingtalk.max_qps.to_string()),
        (
            "dingtalk.monthly-call-budget",
            config.dingtalk.monthly_call_budget.to_string(),
        ),
        ("storage.path", config.storage_path.display().to_string()),
        ("tasks.max", config.poll.tasks_max.to_string()),
        ("log.level", config.log.level.to_string()),
        ("log.format", config.log.format.to_string()),
    ];
    for (flag, value) in effective {
        assert_eq!(interface_default(flag), value, "--{flag}");
    }
    let durations = [
        ("dingtalk.timeout", config.dingtalk.timeout),
        ("poll.min-interval", config.poll.min_interval),
        ("poll.max-interval", config.poll.max_interval),
        ("poll.stall-after", config.poll.stall_after),
        ("poll.stalled-interval", config.poll.stalled_interval),
        ("task.max-age", config.poll.task_max_age),
        ("task.retention", config.poll.task_retention),
    ];
    for (flag, value) in durations {
        let default: dingtalk_exporter::duration::PromDuration =
            interface_default(flag).parse().unwrap();
        assert_eq!(default.0, value, "--{flag}");
    }
    assert_eq!(config.web.config_file, None);
    assert_eq!(config.web.api_token, None);
    assert_eq!(config.config_file, None);
    assert!(config.apps.is_empty());
    assert_eq!(config.log.level, LogLevel::Info);
    assert_eq!(config.log.format, LogFormat::Logfmt);
}

fn interface_default(flag: &str) -> &'static str {
    INTERFACE_FLAGS
        .iter()
        .find(|(name, _)| *name == flag)
        .map(|(_, default)| *default)
        .unwrap()
}

/// `--help` states each flag's default as interface.md does.
#[test]
fn help_states_every_default() {
    let command = Cli::command();
    for (flag, default) in INTERFACE_FLAGS {
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(*flag))
            .unwrap();
        let help = arg
            .get_help()
            .map(|help| help.to_string())
            .unwrap_or_default();
        // Durations print in their shortest form (24h is 1d); both mean the same.
        let shown = match *default {
            "24h" => "1d".to_string(),
            other => other.to_string(),
        };
        if *default == "none" {
            assert!(!help.contains("[default:"), "--{flag}: {help}");
        } else {
            assert!(
                help.contains(&format!("[default: {default}]"))
                    || help.contains(&format!("[default: {shown}]")),
                "--{flag}: {help}"
            );
        }
    }
}

/// Each flag has its environment twin, `DINGTALK_EXPORTER_<NAME>` or the `DINGTALK_*` name
/// interface.md gives; `--config.check` has none, and neither has the demo's store (that
/// variable names a real exporter's store).
#[test]
fn every_flag_has_its_environment_twin() {
    let mut command = Cli::command();
    command.build();
    let demo = command.find_subcommand("demo").unwrap();
    let exporter_args = command.get_arguments().map(|arg| ("", arg));
    let demo_args = demo.get_arguments().map(|arg| ("demo", arg));
    for (subcommand, arg) in exporter_args.chain(demo_args) {
        let Some(long) = arg.get_long() else { continue };
        let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
        let expected = match (subcommand, long) {
            (_, "dingtalk.api-url") => Some("DINGTALK_API_URL".to_string()),
            (_, "dingtalk.app-key") => Some("DINGTALK_APP_KEY".to_string()),
            (_, "dingtalk.app-secret") => Some("DINGTALK_APP_SECRET".to_string()),
            (_, "config.check" | "help" | "version") | ("demo", "storage.path") => None,
            (_, other) => Some(format!(
                "DINGTALK_EXPORTER_{}",
                other.replace(['.', '-'], "_").to_uppercase()
            )),
        };
        assert_eq!(env, expected, "{subcommand} --{long}");
    }
}

/// The app secret's environment variable is documented but its value never shown, and the
/// secret has no visible command-line flag (arguments show in the process list).
#[test]
fn app_secret_comes_from_the_environment_unseen() {
    let command = Cli::command();
    let secret = command
        .get_arguments()
        .find(|arg| {
            arg.get_env()
                .is_some_and(|env| env == "DINGTALK_APP_SECRET")
        })
        .unwrap();
    assert!(secret.is_hide_env_values_set());
    assert!(secret.is_hide_set());
    let help = Cli::command().render_long_help().to_string();
    assert!(help.contains("DINGTALK_APP_SECRET"), "{help}");
    assert!(!help.contains("--dingtalk.app-secret "), "{help}");
}

/// Flags given with values reach the configuration.
#[test]
fn flags_set_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let cli = parse(&[
        "--web.listen-address=127.0.0.1:0",
        "--web.telemetry-path=/probe",
        "--dingtalk.api-url=http://127.0.0.1:1/",
        "--dingtalk.max-qps=3",
        "--dingtalk.monthly-call-budget=100",
        "--dingtalk.timeout=1500ms",
        "--storage.path",
        db.to_str().unwrap(),
        "--poll.min-interval=1s",
        "--poll.max-interval=1h30m",
        "--poll.stall-after=2h",
        "--poll.stalled-interval=45m",
        "--task.max-age=12h",
        "--task.retention=10m",
        "--tasks.max=5",
        "--log.level=warn",
        "--log.format=json",
    ])
    .unwrap();
    let config = config::load(&cli.exporter).unwrap();
    assert_eq!(config.web.listen_address, "127.0.0.1:0");
    assert_eq!(config.web.telemetry_path, "/probe");
    assert_eq!(config.dingtalk.max_qps, 3);
    assert_eq!(config.dingtalk.monthly_call_budget, 100);
    assert_eq!(config.dingtalk.timeout, Duration::from_millis(1500));
    assert_eq!(config.storage_path, db);
    assert_eq!(config.poll.min_interval, Duration::from_secs(1));
    assert_eq!(config.poll.max_interval, Duration::from_secs(5400));
    assert_eq!(config.poll.stall_after, Duration::from_secs(7200));
    assert_eq!(config.poll.stalled_interval, Duration::from_secs(2700));
    assert_eq!(config.poll.task_max_age, Duration::from_secs(12 * 3600));
    assert_eq!(config.poll.task_retention, Duration::from_secs(600));
    assert_eq!(config.poll.tasks_max, 5);
    assert_eq!(config.log.level, LogLevel::Warn);
    assert_eq!(config.log.format, LogFormat::Json);
}

/// Values of the wrong kind are refused by the parser, naming the flag.
#[test]
fn malformed_flag_values_are_refused() {
    for (args, flag) in [
        (&["--dingtalk.max-qps=lots"][..], "--dingtalk.max-qps"),
        (&["--tasks.max=-1"][..], "--tasks.max"),
        (&["--log.level=verbose"][..], "--log.level"),
        (&["--log.format=text"][..], "--log.format"),
        (&["--task.retention=1 h"][..], "--task.retention"),
        (&["--poll.stall-after=soon"][..], "--poll.stall-after"),
        (
            &["--poll.stalled-interval=30"][..],
            "--poll.stalled-interval",
        ),
    ] {
        let err = parse(args).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

/// Exporter flags before a subcommand would be ignored by it, so they are refused.
#[test]
fn exporter_flags_before_a_subcommand_are_refused() {
    let err = parse(&["--web.listen-address=:1", "demo"])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
}

/// The demo takes the exporter's settings but not the DingTalk app flags.
#[test]
fn demo_takes_settings_but_not_app_flags() {
    let cli = parse(&[
        "demo",
        "--web.listen-address=127.0.0.1:0",
        "--poll.max-interval=30s",
        "--log.format=json",
        "--demo.task-interval=5s",
    ])
    .unwrap();
    let Some(Command::Demo(args)) = cli.command else {
        panic!("not the demo: {cli:?}");
    };
    assert_eq!(
        args.settings.web.listen_address.as_deref(),
        Some("127.0.0.1:0")
    );
    assert_eq!(
        args.settings.poll.max_interval.map(|d| d.0),
        Some(Duration::from_secs(30))
    );
    assert_eq!(args.settings.log.format, Some(LogFormat::Json));
    assert_eq!(args.task_interval.0, Duration::from_secs(5));
    assert_eq!(
        parse(&["demo"])
            .map(|cli| match cli.command {
                Some(Command::Demo(args)) => args.task_interval.0,
                _ => Duration::ZERO,
            })
            .unwrap(),
        Duration::from_secs(20)
    );

    for app_flag in [
        "--dingtalk.app-key=k",
        "--dingtalk.api-url=http://x",
        "--dingtalk.app-secret-file=s",
        "--config.file=c.yml",
    ] {
        let err = parse(&["demo", app_flag]).map(|_| ()).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::UnknownArgument,
            "{app_flag}"
        );
    }
}

/// `track` keeps its flags.
#[test]
fn track_parses_its_flags() {
    let cli = parse(&[
        "track",
        "--agent-id",
        "2839445214",
        "--task-id",
        "256271667526",
    ])
    .unwrap();
    let Some(Command::Track(args)) = cli.command else {
        panic!("not track: {cli:?}");
    };
    assert_eq!((args.agent_id, args.task_id), (2839445214, 256271667526));
    assert_eq!(args.exporter_url, "http://127.0.0.1:10050");
}
