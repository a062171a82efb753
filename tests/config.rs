//! The config file merged with the flags: what loads, what is refused and how it is worded,
//! and what `--config.check` reports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use dingtalk_exporter::commands::cli::{Cli, DemoArgs};
use dingtalk_exporter::config::flags::ExporterFlags;
use dingtalk_exporter::config::{
    self, AppConfig, Config, ConfigErrors, DemoTarget, LogFormat, LogLevel, StaticTask,
};
use dingtalk_exporter::secret::Secret;

/// A secret no message may ever contain.
const SECRET: &str = "s3cr3t-Zebra-Quokka-4711";

fn flags(args: &[&str]) -> ExporterFlags {
    Cli::try_parse_from(std::iter::once("dingtalk-exporter").chain(args.iter().copied()))
        .unwrap_or_else(|err| panic!("{args:?}: {err}"))
        .exporter
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Loads `yaml` as the config file, with extra flags.
fn load_yaml(dir: &Path, yaml: &str, extra: &[&str]) -> Result<Config, ConfigErrors> {
    let file = write(dir, "config.yml", yaml);
    let mut args = vec!["--config.file", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    config::load(&flags(&args))
}

fn errors_of(result: Result<Config, ConfigErrors>) -> ConfigErrors {
    match result {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors,
    }
}

const TWO_APPS: &str = "\
apps:
  - name: hr-notices
    agent_id: 2839445214
    app_key: dingabc123
    app_secret_file: hr-secret
  - name: it-alerts
    agent_id: 2839445215
    app_key: dingdef456
    app_secret: inline-secret
    api_url: http://127.0.0.1:9/dingtalk/
tasks:
  - agent_id: 2839445214
    task_id: 256271667526
    name: payroll notice May
  - agent_id: 2839445215
    task_id: '256271667527'
poll:
  min_interval: 2s
  max_interval: 1m
  stall_after: 90m
  stalled_interval: 20m
";

/// A file with two apps, static tasks and a poll section loads into exactly that.
#[test]
fn two_apps_static_tasks_and_poll_section_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", &format!("  {SECRET}\n"));
    let config = load_yaml(dir.path(), TWO_APPS, &[]).unwrap();

    assert_eq!(
        config.apps,
        vec![
            AppConfig {
                name: "hr-notices".into(),
                agent_id: Some(2839445214),
                app_key: "dingabc123".into(),
                app_secret: Secret::new(SECRET),
                api_url: "https://oapi.dingtalk.com".into(),
                token_api: dingtalk_exporter::config::TokenApi::GetToken,
                corp_id: None,
                corp: None,
            },
            AppConfig {
                name: "it-alerts".into(),
                agent_id: Some(2839445215),
                app_key: "dingdef456".into(),
                app_secret: Secret::new("inline-secret"),
                api_url: "http://127.0.0.1:9/dingtalk".into(),
                token_api: dingtalk_exporter::config::TokenApi::GetToken,
                corp_id: None,
                corp: None,
            },
        ]
    );
    assert_eq!(
        config.static_tasks,
        vec![
            StaticTask {
                agent_id: 2839445214,
                task_id: 256271667526,
                name: "payroll notice May".into(),
            },
            StaticTask {
                agent_id: 2839445215,
                task_id: 256271667527,
                name: String::new(),
            },
        ]
    );
    assert_eq!(config.poll.min_interval, Duration::from_secs(2));
    assert_eq!(config.poll.max_interval, Duration::from_secs(60));
    assert_eq!(config.poll.stall_after, Duration::from_secs(90 * 60));
    assert_eq!(config.poll.stalled_interval, Duration::from_secs(20 * 60));
    // What the file leaves out keeps its default.
    assert_eq!(config.poll.task_max_age, Duration::from_secs(24 * 3600));
    assert_eq!(config.web.listen_address, ":10050");
    // No default app: a task of another agent has no app.
    assert_eq!(config.app_for_agent(1), None);
    assert_eq!(
        config
            .app_for_agent(2839445215)
            .map(|app| app.name.as_str()),
        Some("it-alerts")
    );
}

/// The example config file shipped with the exporter loads.
#[test]
fn example_config_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yml"))
            .unwrap();
    // The example's paths are relative to it; give it the same files under a scratch directory.
    let root = dir.path().to_str().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    write(dir.path(), "secrets/dingtalk-hr", "hr\n");
    write(dir.path(), "secrets/dingtalk-it", "it\n");
    write(dir.path(), "secrets/isv-suite", "suite\n");

    let config = load_yaml(dir.path(), &example, &[]).unwrap();
    let names: Vec<(&str, Option<&str>)> = config
        .apps
        .iter()
        .map(|app| (app.name.as_str(), app.corp_label()))
        .collect();
    assert_eq!(
        names,
        [
            ("hr-notices", None),
            ("it-alerts", None),
            ("isv-suite", Some("acme")),
            ("isv-suite", Some("globex"))
        ]
    );
    assert_eq!(config.corp_label(1234567891), Some("globex"));
    assert_eq!(config.static_tasks.len(), 2);
    assert_eq!(config.dingtalk.monthly_call_budget, 5000);
    assert_eq!(config.log.format, LogFormat::Logfmt);
    assert!(check_config(&flags(&["--config.file", &format!("{root}/config.yml")])).valid);
}

/// The command in the example config's header, run as written from the repository, passes
/// its own check: the first thing a newcomer tries works.
#[test]
fn the_example_configs_own_check_command_passes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(repo.join("examples/config.yml")).unwrap();
    let command = example
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .find(|line| line.starts_with("dingtalk-exporter ") && line.contains("--config.check"))
        .expect("the header shows a --config.check command");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dingtalk-exporter"))
        .args(command.split_whitespace().skip(1))
        .current_dir(repo)
        .env_remove("DINGTALK_APP_SECRET")
        .env_remove("DINGTALK_APP_KEY")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every setting can be given in its section of the file.
#[test]
fn every_setting_can_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "web.yml", "{}\n");
    write(dir.path(), "token", "api-token\n");
    write(dir.path(), "default-secret", "default-secret\n");
    let config = load_yaml(
        dir.path(),
        "\
web: {listen_address: '127.0.0.1:0', telemetry_path: /m, config_file: web.yml, api_token_file: token}
dingtalk: {api_url: 'http://127.0.0.1:1/', app_key: dingdefault, app_secret_file: default-secret,
           max_qps: 3, monthly_call_budget: 900, timeout: 2s}
storage: {path: tasks.db}
poll: {min_interval: 1s, max_interval: 10s}
task: {max_age: 2h, retention: 5m}
tasks_max: 7
log: {level: debug, format: json}
",
        &[],
    )
    .unwrap();
    assert_eq!(config.web.listen_address, "127.0.0.1:0");
    assert_eq!(config.web.telemetry_path, "/m");
    assert_eq!(config.web.config_file, Some(dir.path().join("web.yml")));
    assert_eq!(config.web.api_token, Some(Secret::new("api-token")));
    assert_eq!(config.dingtalk.max_qps, 3);
    assert_eq!(config.dingtalk.monthly_call_budget, 900);
    assert_eq!(config.dingtalk.timeout, Duration::from_secs(2));
    assert_eq!(config.storage_path, dir.path().join("tasks.db"));
    assert_eq!(config.poll.min_interval, Duration::from_secs(1));
    assert_eq!(config.poll.max_interval, Duration::from_secs(10));
    assert_eq!(config.poll.task_max_age, Duration::from_secs(7200));
    assert_eq!(config.poll.task_retention, Duration::from_secs(300));
    assert_eq!(config.poll.tasks_max, 7);
    assert_eq!(config.log.level, LogLevel::Debug);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(
        config.apps,
        vec![AppConfig {
            name: "default".into(),
            agent_id: None,
            app_key: "dingdefault".into(),
            app_secret: Secret::new("default-secret"),
            api_url: "http://127.0.0.1:1".into(),
            token_api: dingtalk_exporter::config::TokenApi::GetToken,
            corp_id: None,
            corp: None,
        }]
    );
}

/// A flag given on the command line wins over the file; the file wins over the default.
#[test]
fn flags_override_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "poll: {min_interval: 7s, max_interval: 9m}\ndingtalk: {max_qps: 4}\n";
    let config = load_yaml(
        dir.path(),
        yaml,
        &["--poll.min-interval", "3s", "--dingtalk.max-qps=6"],
    )
    .unwrap();
    assert_eq!(config.poll.min_interval, Duration::from_secs(3));
    assert_eq!(config.dingtalk.max_qps, 6);
    assert_eq!(config.poll.max_interval, Duration::from_secs(9 * 60));
    assert_eq!(config.dingtalk.timeout, Duration::from_secs(10));
}

/// The flags' app becomes `default`, after the file's apps, serving every other agent;
/// `--dingtalk.api-url` is also the API of file apps without their own.
#[test]
fn flag_app_is_the_default_for_other_agents() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", "hr\n");
    let flag_secret = write(dir.path(), "flag-secret", &format!("{SECRET}\n\n"));
    let config = load_yaml(
        dir.path(),
        TWO_APPS,
        &[
            "--dingtalk.app-key=dingflag",
            "--dingtalk.app-secret-file",
            flag_secret.to_str().unwrap(),
            "--dingtalk.api-url=http://127.0.0.1:2",
        ],
    )
    .unwrap();
    let names: Vec<&str> = config.apps.iter().map(|app| app.name.as_str()).collect();
    assert_eq!(names, ["hr-notices", "it-alerts", "default"]);
    let default = config.app_for_agent(99).unwrap();
    assert_eq!(default.name, "default");
    assert_eq!(default.app_secret.expose(), SECRET);
    assert_eq!(default.api_url, "http://127.0.0.1:2");
    assert_eq!(config.apps[0].api_url, "http://127.0.0.1:2");
    assert_eq!(config.apps[1].api_url, "http://127.0.0.1:9/dingtalk");
}

/// Unknown keys are refused, every one of them, each named by its full path.
#[test]
fn unknown_keys_are_refused_by_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", "hr\n");
    let yaml = TWO_APPS.replace("    app_key: dingabc123\n", "    app_kee: dingabc123\n")
        + "pol:\n  min_interval: 1s\n";
    let errors = errors_of(load_yaml(dir.path(), &yaml, &[]));
    let text = errors.to_string();
    assert!(
        text.contains("apps[0].app_kee: unknown key; known here: name, agent_id, app_key,"),
        "{text}"
    );
    assert!(
        text.contains("pol: unknown key; known here: web, dingtalk,"),
        "{text}"
    );
    // The misspelt app key also leaves the app without its key.
    assert!(text.contains("apps[0].app_key: missing"), "{text}");
}

/// Two apps for one agent are refused, naming both entries.
#[test]
fn duplicate_agent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", "hr\n");
    let yaml = TWO_APPS.replace(
        "agent_id: 2839445215\n    app_key",
        "agent_id: 2839445214\n    app_key",
    );
    let errors = errors_of(load_yaml(dir.path(), &yaml, &[]));
    assert_eq!(
        errors.to_string(),
        "apps[1].agent_id: duplicate agent 2839445214 (also apps[0])"
    );
}

/// One run reports every problem of a file, each with its key.
#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "\
apps:
  - name: default
    agent_id: 0
    app_key: ''
  - name: b
    agent_id: 9223372036854775808
    app_key: k
    app_secret: x
    app_secret_file: missing
    api_url: ftp://example.com
  - name: b
    agent_id: 3
    app_key: k
    app_secret_file: does-not-exist
tasks:
  - {agent_id: 1, task_id: 2}
  - {agent_id: 1, task_id: 2, name: \"tab\\there\"}
  - {agent_id: -1}
web: {telemetry_path: metrics}
dingtalk: {max_qps: 0}
poll: {min_interval: 10s, max_interval: 5s}
tasks_max: 0
";
    let errors = errors_of(load_yaml(dir.path(), yaml, &[]));
    let keys: Vec<&str> = errors.0.iter().map(|error| error.key.as_str()).collect();
    for key in [
        "apps[0].name",
        "apps[0].agent_id",
        "apps[0].app_key",
        "apps[0].app_secret_file",
        "apps[1].agent_id",
        "apps[1]",
        "apps[1].api_url",
        "apps[2].name",
        "apps[2].app_secret_file",
        "tasks[1]",
        "tasks[1].name",
        "tasks[2].agent_id",
        "tasks[2].task_id",
        "web.telemetry_path",
        "dingtalk.max_qps",
        "poll.max_interval",
        "tasks_max",
    ] {
        assert!(keys.contains(&key), "{key} not in\n{errors}");
    }
    // Display is one problem per line.
    assert_eq!(errors.to_string().lines().count(), errors.0.len());
    let secret_file = &errors.for_key("apps[2].app_secret_file")[0].problem;
    assert!(secret_file.contains("does-not-exist"), "{secret_file}");
    assert!(
        errors.for_key("poll.max_interval")[0]
            .problem
            .contains("poll.min_interval 10s"),
        "{errors}"
    );
}

/// A malformed duration names its key and line in the file, or its flag on the command
/// line, and shows the accepted forms.
#[test]
fn bad_durations_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let errors = errors_of(load_yaml(dir.path(), "task:\n  retention: 1 hour\n", &[]));
    let text = errors.to_string();
    assert!(
        text.contains("task.retention: invalid duration \"1 hour\""),
        "{text}"
    );
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("1h30m"), "{text}");

    let err = Cli::try_parse_from(["dingtalk-exporter", "--poll.max-interval", "5min"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--poll.max-interval"), "{err}");
    assert!(err.contains("invalid duration \"5min\""), "{err}");
}

/// Durations that must be positive are refused at zero, naming the flag or the key.
#[test]
fn zero_durations_are_refused_where_they_matter() {
    let dir = tempfile::tempdir().unwrap();
    let errors = errors_of(load_yaml(
        dir.path(),
        "dingtalk: {timeout: 0}\n",
        &["--poll.min-interval=0"],
    ));
    assert_eq!(
        errors.to_string(),
        "dingtalk.timeout: must be longer than 0\n--poll.min-interval: must be longer than 0"
    );
    // Retention 0 is allowed: finished tasks leave /metrics at once.
    let config = load_yaml(dir.path(), "task: {retention: 0}\n", &[]).unwrap();
    assert_eq!(config.poll.task_retention, Duration::ZERO);
}

/// Secret files are trimmed, and a secret shows up in no error, no check report and no
/// debug output of the config.
#[test]
fn secrets_never_appear_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", &format!("\n {SECRET} \n"));
    let yaml = TWO_APPS.replace("inline-secret", SECRET);
    let file = write(dir.path(), "config.yml", &yaml);
    let env_secret_flags = |extra: &[&str]| {
        let mut args = vec![
            "--config.file".to_string(),
            file.display().to_string(),
            format!("--dingtalk.app-secret={SECRET}"),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        flags(&args)
    };

    // Valid: the secret is loaded, trimmed, but neither printed nor reported.
    let valid = env_secret_flags(&["--dingtalk.app-key=k"]);
    let config = config::load(&valid).unwrap();
    assert_eq!(config.apps[0].app_secret.expose(), SECRET);
    assert_eq!(config.apps[2].app_secret.expose(), SECRET);
    let report = check_config(&valid);
    assert!(report.valid, "{}", report.text);
    assert!(
        report.text.contains("secret from DINGTALK_APP_SECRET"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("secret inline in the config file"),
        "{}",
        report.text
    );
    for shown in [format!("{config:?}"), format!("{valid:?}"), report.text] {
        assert!(!shown.contains(SECRET), "{shown}");
    }

    // Invalid in several ways around the secrets: still nothing of them shows.
    let invalid = env_secret_flags(&[
        "--dingtalk.app-key=k",
        "--dingtalk.app-secret-file",
        file.to_str().unwrap(),
        "--web.api-token-file=/nonexistent/token",
    ]);
    let errors = config::load(&invalid).unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("--dingtalk.app-secret-file: the app secret is given twice"),
        "{errors}"
    );
    let report = check_config(&invalid);
    assert!(!report.valid);
    for shown in [errors.to_string(), report.text] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
}

/// An app key without a secret, or a secret without a key, is refused.
#[test]
fn app_key_and_secret_come_together() {
    let errors = config::load(&flags(&["--dingtalk.app-key=k"])).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "--dingtalk.app-key: the app has no secret: set --dingtalk.app-secret-file or DINGTALK_APP_SECRET"
    );
    let errors = config::load(&flags(&["--dingtalk.app-secret=x"])).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "--dingtalk.app-key: missing: an app secret is set but no app key"
    );
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "secret", "x\n");
    let errors = errors_of(load_yaml(
        dir.path(),
        "dingtalk: {app_secret_file: secret}\n",
        &[],
    ));
    assert_eq!(
        errors.to_string(),
        "dingtalk.app_key: missing: an app secret is set but no app key"
    );
}

/// A secret or token file that cannot be read is named; an empty one is refused.
#[test]
fn unreadable_and_empty_secret_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty", " \n");
    let errors = config::load(&flags(&[
        "--dingtalk.app-key=k",
        "--dingtalk.app-secret-file=/nonexistent/secret",
        "--web.api-token-file",
        empty.to_str().unwrap(),
    ]))
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!(
            "--web.api-token-file: {} is empty\n\
             --dingtalk.app-secret-file: cannot read /nonexistent/secret: No such file or directory (os error 2)",
            empty.display()
        )
    );
}

/// The API token file is read into the web settings, trimmed.
#[test]
fn api_token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "tok-123\n");
    let config = config::load(&flags(&["--web.api-token-file", token.to_str().unwrap()])).unwrap();
    assert_eq!(config.web.api_token, Some(Secret::new("tok-123")));
}

/// A missing or unparseable config file is one clear error.
#[test]
fn unreadable_or_broken_config_file_is_one_error() {
    let errors = config::load(&flags(&["--config.file=/nonexistent/config.yml"])).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].key, "--config.file");
    assert!(
        errors.0[0].problem.contains("/nonexistent/config.yml"),
        "{errors}"
    );

    let dir = tempfile::tempdir().unwrap();
    let errors = errors_of(load_yaml(dir.path(), "apps: [\n", &[]));
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].key.ends_with("config.yml"), "{errors}");
    assert!(errors.0[0].problem.contains("line"), "{errors}");
}

/// More static tasks than --tasks.max allows are refused.
#[test]
fn static_tasks_beyond_tasks_max_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let errors = errors_of(load_yaml(
        dir.path(),
        "tasks: [{agent_id: 1, task_id: 1}, {agent_id: 1, task_id: 2}]\n",
        &["--tasks.max=1"],
    ));
    assert_eq!(
        errors.to_string(),
        "tasks: 2 static tasks are more than --tasks.max=1 allows"
    );
}

/// `--config.check` on a valid file lists the apps, the static tasks and the effective
/// settings with where each came from.
#[test]
fn check_reports_what_was_loaded() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", "hr\n");
    let file = write(dir.path(), "config.yml", TWO_APPS);
    let report = check_config(&flags(&[
        "--config.file",
        file.to_str().unwrap(),
        "--log.level=debug",
    ]));
    assert!(report.valid, "{}", report.text);
    let text = report.text;
    assert!(
        text.starts_with(&format!(
            "configuration from config file {} is valid\n",
            file.display()
        )),
        "{text}"
    );
    assert!(text.contains("apps: 2\n"), "{text}");
    assert!(
        text.contains(&format!(
            "  hr-notices: agent_id 2839445214, app_key dingabc123, api_url https://oapi.dingtalk.com, secret from file {}\n",
            dir.path().join("hr-secret").display()
        )),
        "{text}"
    );
    assert!(text.contains("  it-alerts: agent_id 2839445215, app_key dingdef456, api_url http://127.0.0.1:9/dingtalk, secret inline in the config file\n"), "{text}");
    assert!(text.contains("static tasks: 2\n"), "{text}");
    let settings: Vec<String> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "poll.min_interval = 2s (config file)",
        "poll.stall_after = 1h30m (config file)",
        "poll.stalled_interval = 20m (config file)",
        "log.level = debug (flag)",
        "web.listen_address = :10050 (default)",
        "dingtalk.monthly_call_budget = 0 (default)",
    ] {
        assert!(settings.iter().any(|shown| shown == line), "{line}: {text}");
    }
    assert!(text.contains("web api token: none"), "{text}");
}

/// `--config.check` on a broken configuration fails and lists every problem.
#[test]
fn check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "config.yml",
        "poll: {min_interval: 1m, max_interval: 1s}\nlog: {level: loud}\n",
    );
    let report = check_config(&flags(&["--config.file", file.to_str().unwrap()]));
    assert!(!report.valid);
    // The unreadable level does not hide the durations' problem: both in one run.
    assert!(
        report.text.contains("is INVALID (2 problems)"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("log.level: unknown variant `loud`"),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains("poll.max_interval: 1s is shorter than"),
        "{}",
        report.text
    );

    std::fs::write(&file, "poll: {min_interval: 1m, max_interval: 1s}\n").unwrap();
    let report = check_config(&flags(&[
        "--config.file",
        file.to_str().unwrap(),
        "--web.telemetry-path=/",
    ]));
    assert!(!report.valid);
    assert!(
        report.text.contains("is INVALID (2 problems)"),
        "{}",
        report.text
    );
    assert!(
        report.text.contains("  --web.telemetry-path: "),
        "{}",
        report.text
    );
    assert!(
        report
            .text
            .contains("  poll.max_interval: 1s is shorter than poll.min_interval 1m"),
        "{}",
        report.text
    );
}

/// Having no app at all is valid, with a warning a first-time user can act on.
#[test]
fn no_app_is_valid_with_a_warning() {
    let flags = flags(&[]);
    let config = config::load(&flags).unwrap();
    assert!(config.apps.is_empty());
    let warnings = config::warnings(&config);
    assert!(
        warnings[0].contains("no DingTalk app is configured"),
        "{warnings:?}"
    );
    assert!(
        check_config(&flags)
            .text
            .contains("warnings:\n  no DingTalk app")
    );
}

/// Valid but doubtful settings are pointed out: tasks no app polls, a QPS above DingTalk's
/// limit, a task age past DingTalk's query window.
#[test]
fn warnings_point_at_likely_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hr-secret", "hr\n");
    let yaml = TWO_APPS.replace(
        "task_id: '256271667527'",
        "task_id: 5\n  - agent_id: 77\n    task_id: 6",
    );
    let config = load_yaml(
        dir.path(),
        &yaml,
        &["--dingtalk.max-qps=25", "--task.max-age=48h"],
    )
    .unwrap();
    let warnings = config::warnings(&config);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].starts_with("static task 6 of agent 77: no app serves this agent"));
    assert!(warnings[1].starts_with("dingtalk.max_qps 25 is above"));
    assert!(warnings[2].starts_with("task.max_age 2d is longer than the 24 hours"));

    let config = load_yaml(dir.path(), TWO_APPS, &[]).unwrap();
    assert_eq!(config::warnings(&config), Vec::<String>::new());
}

/// The demo points the `default` app at the simulator, keeps the budget panels busy with
/// a 5000-call budget and uses its scratch store, unless told otherwise.
#[test]
fn demo_config_points_at_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let target = || DemoTarget {
        api_url: "http://127.0.0.1:4321".into(),
        app_key: "demo-key".into(),
        app_secret: Secret::new("demo-secret"),
        scratch_storage_path: dir.path().join("demo.db"),
    };
    let demo_args = |args: &[&str]| -> DemoArgs {
        let cli = Cli::try_parse_from(
            ["dingtalk-exporter", "demo"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        match cli.command {
            Some(dingtalk_exporter::commands::cli::Command::Demo(args)) => args,
            other => panic!("{other:?}"),
        }
    };

    let config = config::load_demo(&demo_args(&[]).settings, target()).unwrap();
    assert_eq!(config.dingtalk.monthly_call_budget, 5000);
    assert_eq!(config.storage_path, dir.path().join("demo.db"));
    assert_eq!(config.config_file, None);
    assert_eq!(
        config.apps,
        vec![AppConfig {
            name: "default".into(),
            agent_id: None,
            app_key: "demo-key".into(),
            app_secret: Secret::new("demo-secret"),
            api_url: "http://127.0.0.1:4321".into(),
            token_api: dingtalk_exporter::config::TokenApi::GetToken,
            corp_id: None,
            corp: None,
        }]
    );

    let other_store = dir.path().join("mine.db");
    let config = config::load_demo(
        &demo_args(&[
            "--dingtalk.monthly-call-budget=0",
            "--storage.path",
            other_store.to_str().unwrap(),
            "--poll.min-interval=1s",
        ])
        .settings,
        target(),
    )
    .unwrap();
    assert_eq!(config.dingtalk.monthly_call_budget, 0);
    assert_eq!(config.storage_path, other_store);
    assert_eq!(config.poll.min_interval, Duration::from_secs(1));
}

/// The demo listens on loopback unless told otherwise, and takes the settings of a
/// `--config.file` (as the README says it takes the exporter's flags) without its apps and
/// static tasks.
#[test]
fn demo_listens_on_loopback_and_reads_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = || DemoTarget {
        api_url: "http://127.0.0.1:4321".into(),
        app_key: "demo-key".into(),
        app_secret: Secret::new("demo-secret"),
        scratch_storage_path: dir.path().join("demo.db"),
    };
    let demo_args = |args: &[&str]| -> DemoArgs {
        let cli = Cli::try_parse_from(
            ["dingtalk-exporter", "demo"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap();
        match cli.command {
            Some(dingtalk_exporter::commands::cli::Command::Demo(args)) => args,
            other => panic!("{other:?}"),
        }
    };
    let config = config::load_demo(&demo_args(&[]).settings, target()).unwrap();
    assert_eq!(config.web.listen_address, "127.0.0.1:10050");

    write(dir.path(), "secret", "s\n");
    let file = write(
        dir.path(),
        "demo.yml",
        "poll: {max_interval: 40s}\napps: [{name: real, agent_id: 7, app_key: k, app_secret_file: secret}]\ntasks: [{agent_id: 7, task_id: 8}]\n",
    );
    let config = config::load_demo(
        &demo_args(&["--config.file", file.to_str().unwrap()]).settings,
        target(),
    )
    .unwrap();
    assert_eq!(config.poll.max_interval, Duration::from_secs(40));
    assert_eq!(config.web.listen_address, "127.0.0.1:10050");
    let apps: Vec<&str> = config.apps.iter().map(|app| app.name.as_str()).collect();
    assert_eq!(apps, ["default"]);
    assert!(config.static_tasks.is_empty());

    let listening = write(dir.path(), "listen.yml", "web: {listen_address: ':0'}\n");
    let config = config::load_demo(
        &demo_args(&["--config.file", listening.to_str().unwrap()]).settings,
        target(),
    )
    .unwrap();
    assert_eq!(config.web.listen_address, ":0");
}

/// `--config.check` as the binary runs it, web config file included.
fn check_config(
    flags: &dingtalk_exporter::config::flags::ExporterFlags,
) -> dingtalk_exporter::config::CheckReport {
    dingtalk_exporter::config::check(flags, &dingtalk_exporter::http::WebConfig::check_file)
}

/// The shared database comes from the file's `storage.url`, `storage.password_file` (read
/// relative to the file, trimmed) and `ha.lease_duration`; without a URL there is none.
#[test]
fn shared_database_settings_come_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "db-password", &format!("{SECRET}\n"));
    let config = load_yaml(
        dir.path(),
        "storage:\n  url: postgres://exporter@db:5432/dingtalk\n  password_file: db-password\nha:\n  lease_duration: 30s\n",
        &[],
    )
    .expect("valid");
    let shared = config.shared_store.expect("a shared database");
    assert_eq!(shared.url, "postgres://exporter@db:5432/dingtalk");
    assert_eq!(shared.password.unwrap().expose(), SECRET);
    assert_eq!(shared.lease_duration, Duration::from_secs(30));

    let config = load_yaml(dir.path(), "poll: {min_interval: 5s}\n", &[]).expect("valid");
    assert!(
        config.shared_store.is_none(),
        "SQLite unless a URL is given"
    );
}

/// A lease too short to renew several times, a password in the URL, and a password given
/// twice are refused, each under the name it was given with, never echoing the password.
#[test]
fn shared_database_mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "db-password", SECRET);
    let errors = errors_of(load_yaml(
        dir.path(),
        &format!(
            "storage:\n  url: postgres://exporter:{SECRET}@db/dingtalk\nha:\n  lease_duration: 1s\n"
        ),
        &["--storage.password-file", "db-password"],
    ))
    .to_string();
    assert!(
        errors.contains("storage.url") && errors.contains("password"),
        "{errors}"
    );
    assert!(
        errors.contains("ha.lease_duration") && errors.contains("at least 3s"),
        "{errors}"
    );
    assert!(!errors.contains(SECRET), "{errors}");

    let file = write(dir.path(), "empty.yml", "");
    let both = flags(&[
        "--config.file",
        file.to_str().unwrap(),
        "--storage.url",
        "postgres://exporter@db/dingtalk",
        "--storage.password-file",
        dir.path().join("db-password").to_str().unwrap(),
        "--storage.password",
        SECRET,
    ]);
    let errors = errors_of(config::load(&both)).to_string();
    assert!(
        errors.contains("--storage.password-file") && errors.contains("not both"),
        "{errors}"
    );
    assert!(!errors.contains(SECRET), "{errors}");
}

/// The tracking proxy is off by default, forwards to `--dingtalk.api-url` unless told
/// otherwise, can be set in the file's `proxy` section, and refuses bad addresses and URLs
/// by the names the user wrote them under.
#[test]
fn proxy_settings_resolve_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let off = config::load(&flags(&["--dingtalk.api-url", "http://127.0.0.1:8080/"])).unwrap();
    assert_eq!(off.proxy.listen_address, None);
    assert_eq!(off.proxy.upstream_url, "http://127.0.0.1:8080");

    let from_file = load_yaml(
        dir.path(),
        "proxy: {listen_address: \"127.0.0.1:10051\", upstream_url: \"https://oapi.dingtalk.com/\"}\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        from_file.proxy.listen_address.as_deref(),
        Some("127.0.0.1:10051")
    );
    assert_eq!(from_file.proxy.upstream_url, "https://oapi.dingtalk.com");

    let errors = errors_of(load_yaml(
        dir.path(),
        "proxy: {upstream_url: \"ftp://example.com\"}\n",
        &["--proxy.listen-address", "10051"],
    ))
    .to_string();
    assert!(errors.contains("--proxy.listen-address"), "{errors}");
    assert!(errors.contains("proxy.upstream_url"), "{errors}");
}
