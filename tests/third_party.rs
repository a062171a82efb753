//! Third-party enterprise apps (ISV suites): the real binary polls the tasks of two corps of
//! one suite through the simulator, each with its own corp token, under each of DingTalk's
//! three corp-token APIs, over loopback HTTP.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{ExporterProcess, eventually, get_text, metric, sample, task_json};
use dingtalk_exporter::simulator::{
    Behaviour, SimApp, SimConfig, SimCorp, SimSuite, Simulator, Timeline,
};

const SUITE_KEY: &str = "suiteisv0001";
const SUITE_SECRET: &str = "suite-secret-0f9c2a";
const FIRST_TICKET: &str = "ticket-first-7d1e";
const ACME: (&str, &str, i64) = ("dingacme01", "acme", 41_001);
const GLOBEX: (&str, &str, i64) = ("dingglobex02", "globex", 41_002);
const WAIT: Duration = Duration::from_secs(30);

const TOKEN_APIS: [&str; 3] = ["unified", "corp_access_token", "get_corp_token"];

/// A simulator knowing the suite with both corps; `acme_quota` is acme's monthly quota
/// (0: none).
async fn simulator(acme_quota: u64) -> Simulator {
    let corp = |(corp_id, _, agent_id): (&str, &str, i64), monthly_quota| SimCorp {
        corp_id: corp_id.to_string(),
        agent_id,
        monthly_quota,
    };
    Simulator::start(SimConfig {
        apps: vec![SimApp::demo()],
        suites: vec![SimSuite {
            suite_key: SUITE_KEY.to_string(),
            suite_secret: dingtalk_exporter::secret::Secret::new(SUITE_SECRET),
            suite_ticket: FIRST_TICKET.to_string(),
            corps: vec![corp(ACME, acme_quota), corp(GLOBEX, 0)],
        }],
        behaviour: Behaviour {
            qps_limit: 0,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// Writes the config file of one third-party app with both corps, its suite secret and its
/// suite ticket into `dir`; returns the config file's path.
fn write_config(dir: &Path, sim: &Simulator, token_api: &str, secret: &str) -> String {
    std::fs::write(dir.join("suite_secret"), format!("{secret}\n")).unwrap();
    std::fs::write(dir.join("suite_ticket"), format!("{FIRST_TICKET}\n")).unwrap();
    let corp = |(corp_id, name, agent_id): (&str, &str, i64)| {
        format!("      - {{corp_id: {corp_id}, name: {name}, agent_id: {agent_id}}}\n")
    };
    let text = format!(
        "dingtalk:\n  api_url: {url}\n  openapi_url: {url}\n\
         apps:\n  - name: isv-suite\n    kind: third_party\n    suite_key: {SUITE_KEY}\n\
         \x20   suite_secret_file: suite_secret\n    suite_ticket_file: suite_ticket\n\
         \x20   token_api: {token_api}\n    corps:\n{acme}{globex}",
        url = sim.url(),
        acme = corp(ACME),
        globex = corp(GLOBEX),
    );
    let path = dir.join("config.yml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn start_exporter(dir: &Path, config: &str, extra: &[&str]) -> ExporterProcess {
    let db = dir.join("exporter.db");
    let mut args = vec![
        "--config.file",
        config,
        "--storage.path",
        db.to_str().unwrap(),
        "--poll.min-interval",
        "100ms",
    ];
    args.extend_from_slice(extra);
    ExporterProcess::start(&args, &[])
}

async fn register(exporter: &ExporterProcess, agent_id: i64, task_id: i64) {
    let answer = reqwest::Client::new()
        .post(exporter.url("/api/v1/tasks"))
        .json(&serde_json::json!({"agent_id": agent_id, "task_id": task_id, "name": "notice"}))
        .send()
        .await
        .expect("the task API answers");
    assert!(answer.status().is_success(), "{}", answer.status());
}

fn quick() -> Timeline {
    Timeline {
        duration_ms: 600,
        ..Timeline::default()
    }
}

async fn wait_for_state(exporter: &ExporterProcess, agent_id: i64, task_id: i64, state: &str) {
    eventually(&format!("task {task_id} to be {state}"), WAIT, || async {
        let task = task_json(exporter, agent_id, task_id).await?;
        (task["state"] == state).then_some(())
    })
    .await;
}

/// Under each token API, the tasks of two corps complete, each polled with its own corp's
/// token (the simulator refuses another corp's token), their answers and series say which
/// corp they belong to, and the debug log holds no token, secret or ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_corps_complete_under_each_token_api() {
    for token_api in TOKEN_APIS {
        let sim = simulator(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sim, token_api, SUITE_SECRET);
        let exporter = start_exporter(dir.path(), &config, &["--log.level", "debug"]);
        let acme_task = sim.add_task(ACME.2, quick());
        let globex_task = sim.add_task(GLOBEX.2, quick());
        register(&exporter, ACME.2, acme_task).await;
        register(&exporter, GLOBEX.2, globex_task).await;
        wait_for_state(&exporter, ACME.2, acme_task, "completed").await;
        wait_for_state(&exporter, GLOBEX.2, globex_task, "completed").await;

        let acme = task_json(&exporter, ACME.2, acme_task).await.unwrap();
        assert_eq!(acme["app"], "isv-suite", "{token_api}");
        assert_eq!(acme["corp"], "acme", "{token_api}");
        let globex = task_json(&exporter, GLOBEX.2, globex_task).await.unwrap();
        assert_eq!(globex["corp"], "globex", "{token_api}");

        let stats = sim.stats();
        assert_eq!(
            stats.token_rejections, 0,
            "{token_api}: a token was refused"
        );
        let text = get_text(&exporter.url("/metrics")).await.unwrap();
        for (_, corp, agent_id) in [ACME, GLOBEX] {
            let labels = [("app", "isv-suite"), ("corp", corp)];
            assert_eq!(
                sample(&text, "dingtalk_up", &labels),
                Some(1.0),
                "{token_api}"
            );
            assert!(
                sample(
                    &text,
                    "dingtalk_last_poll_success_timestamp_seconds",
                    &labels
                )
                .is_some_and(|at| at > 0.0)
            );
            let info = [("agent_id", &*agent_id.to_string()), ("corp", corp)];
            assert_eq!(sample(&text, "dingtalk_task_info", &info), Some(1.0));
        }
        let calls = match token_api {
            "unified" => stats.calls.unified_token,
            "corp_access_token" => stats.calls.corp_access_token,
            _ => stats.calls.get_corp_token,
        };
        assert!(calls >= 2, "{token_api}: {calls} token requests");
        assert_eq!(stats.calls.gettoken, 0, "{token_api}: gettoken used");
        let logs = exporter.logs();
        for secret in sim
            .issued_tokens()
            .iter()
            .map(String::as_str)
            .chain([SUITE_SECRET, FIRST_TICKET])
        {
            assert!(
                !logs.contains(secret),
                "{token_api}: a secret is in the debug log"
            );
        }
    }
}

/// Each corp's token is fetched once per token lifetime however many polls it serves, even
/// though every corp-token request returns a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_fetch_per_corp_per_token_lifetime() {
    let sim = simulator(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "unified", SUITE_SECRET);
    let exporter = start_exporter(dir.path(), &config, &[]);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        for (_, _, agent_id) in [ACME, GLOBEX] {
            let task_id = sim.add_task(agent_id, quick());
            register(&exporter, agent_id, task_id).await;
            tasks.push((agent_id, task_id));
        }
    }
    for (agent_id, task_id) in &tasks {
        wait_for_state(&exporter, *agent_id, *task_id, "completed").await;
    }
    let stats = sim.stats();
    assert!(stats.calls.getsendprogress >= 8, "{:?}", stats.calls);
    for (corp_id, corp, _) in [ACME, GLOBEX] {
        assert_eq!(stats.corp_tokens_issued.get(corp_id), Some(&1), "{corp_id}");
        let labels = [("app", "isv-suite"), ("corp", corp)];
        let refreshes = metric(&exporter, "dingtalk_token_refreshes_total", &labels).await;
        assert_eq!(refreshes, Some(1.0), "{corp}");
    }
}

/// A suite ticket rotated by DingTalk and written to the ticket file by the ISV's service is
/// used for the next token, without a restart or a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_suite_ticket_is_picked_up_without_restart() {
    for token_api in ["corp_access_token", "get_corp_token"] {
        let sim = simulator(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sim, token_api, SUITE_SECRET);
        let exporter = start_exporter(dir.path(), &config, &[]);
        let first = sim.add_task(ACME.2, quick());
        register(&exporter, ACME.2, first).await;
        wait_for_state(&exporter, ACME.2, first, "completed").await;

        // DingTalk pushes a new ticket (the old one stops working), the ISV's callback
        // service writes it, and the tokens issued so far run out.
        assert!(sim.set_suite_ticket(SUITE_KEY, "ticket-second-44aa"));
        std::fs::write(dir.path().join("suite_ticket"), "ticket-second-44aa\n").unwrap();
        sim.expire_tokens();

        let second = sim.add_task(ACME.2, quick());
        register(&exporter, ACME.2, second).await;
        wait_for_state(&exporter, ACME.2, second, "completed").await;
        assert_eq!(
            sim.stats().corp_tokens_issued.get(ACME.0),
            Some(&2),
            "{token_api}"
        );
        let labels = [("app", "isv-suite"), ("corp", "acme")];
        let failures = metric(&exporter, "dingtalk_token_refresh_failures_total", &labels).await;
        assert_eq!(failures, Some(0.0), "{token_api}");
    }
}

/// One corp's monthly quota running out (90020) stops that corp's polling only: the other
/// corp's tasks still complete, and the exhausted corp is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corps_exhausted_quota_stops_only_that_corp() {
    let sim = simulator(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "unified", SUITE_SECRET);
    let exporter = start_exporter(dir.path(), &config, &[]);
    let slow = Timeline {
        duration_ms: 60_000,
        ..Timeline::default()
    };
    let acme_task = sim.add_task(ACME.2, slow.clone());
    register(&exporter, ACME.2, acme_task).await;
    eventually("acme's quota to run out", WAIT, || async {
        let task = task_json(&exporter, ACME.2, acme_task).await?;
        (task["last_errcode"] == 90020).then_some(())
    })
    .await;
    let acme_calls = sim.stats().corp_month_calls.get(ACME.0).copied();
    assert_eq!(acme_calls, Some(1));

    let globex_task = sim.add_task(GLOBEX.2, quick());
    register(&exporter, GLOBEX.2, globex_task).await;
    wait_for_state(&exporter, GLOBEX.2, globex_task, "completed").await;

    let stats = sim.stats();
    assert_eq!(
        stats.quota_rejections, 1,
        "acme was asked again after 90020"
    );
    assert_eq!(stats.corp_month_calls.get(ACME.0).copied(), Some(1));
    let acme = task_json(&exporter, ACME.2, acme_task).await.unwrap();
    assert_eq!(acme["state"], "active");
    let text = get_text(&exporter.url("/metrics")).await.unwrap();
    let calls = |corp| {
        sample(
            &text,
            "dingtalk_api_month_calls",
            &[("app", "isv-suite"), ("corp", corp)],
        )
    };
    assert_eq!(
        calls("acme"),
        Some(2.0),
        "one answered, one refused with 90020"
    );
    assert!(calls("globex").is_some_and(|calls| calls >= 1.0));
    assert!(
        exporter
            .logs()
            .contains("this corp's monthly API quota is used up"),
        "{}",
        exporter.logs()
    );
}

/// Each corp's monthly count is kept across a restart, apart from the other corp's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corp_counts_survive_a_restart() {
    let sim = simulator(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "unified", SUITE_SECRET);
    let exporter = start_exporter(dir.path(), &config, &[]);
    let task_id = sim.add_task(ACME.2, quick());
    register(&exporter, ACME.2, task_id).await;
    wait_for_state(&exporter, ACME.2, task_id, "completed").await;
    let acme = [("app", "isv-suite"), ("corp", "acme")];
    let counted = metric(&exporter, "dingtalk_api_month_calls", &acme)
        .await
        .unwrap();
    assert!(counted >= 1.0);
    exporter.kill();

    let exporter = start_exporter(dir.path(), &config, &[]);
    assert_eq!(
        metric(&exporter, "dingtalk_api_month_calls", &acme).await,
        Some(counted)
    );
    let globex = [("app", "isv-suite"), ("corp", "globex")];
    assert_eq!(
        metric(&exporter, "dingtalk_api_month_calls", &globex).await,
        Some(0.0)
    );
}

/// A wrong suite secret is named in a clear log line under every token API, sets
/// `dingtalk_up` to 0 for each corp, counts a failed refresh, and never shows the secret in
/// the debug log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_suite_secret_is_a_clear_error_that_leaks_nothing() {
    const WRONG: &str = "wrong-suite-secret-5e5e";
    for (token_api, hint) in [
        ("unified", "the suite key or suite secret"),
        ("corp_access_token", "the suite key or suite secret"),
        ("get_corp_token", "the signature is wrong"),
    ] {
        let sim = simulator(0).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &sim, token_api, WRONG);
        let exporter = start_exporter(dir.path(), &config, &["--log.level", "debug"]);
        for (_, _, agent_id) in [ACME, GLOBEX] {
            let task_id = sim.add_task(agent_id, quick());
            register(&exporter, agent_id, task_id).await;
        }
        for corp in ["acme", "globex"] {
            let labels = [("app", "isv-suite"), ("corp", corp)];
            eventually(&format!("{token_api}: {corp} down"), WAIT, || async {
                let up = metric(&exporter, "dingtalk_up", &labels).await?;
                let failures =
                    metric(&exporter, "dingtalk_token_refresh_failures_total", &labels).await?;
                (up == 0.0 && failures >= 1.0).then_some(())
            })
            .await;
        }
        let logs = exporter.logs();
        assert!(
            logs.contains("DingTalk refused the access token request") && logs.contains(hint),
            "{token_api}: {logs}"
        );
        assert!(!logs.contains(WRONG), "{token_api}: the secret was logged");
        assert!(
            !logs.contains(FIRST_TICKET),
            "{token_api}: the ticket was logged"
        );
    }
}

/// A reload adds a corp (its tasks are polled from then on) and removes one (its series
/// leave `/metrics`), without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_corps() {
    let sim = simulator(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sim, "unified", SUITE_SECRET);
    let both = std::fs::read_to_string(&config).unwrap();
    let globex_line = both
        .lines()
        .find(|line| line.contains(GLOBEX.0))
        .unwrap()
        .to_string();
    let acme_line = both
        .lines()
        .find(|line| line.contains(ACME.0))
        .unwrap()
        .to_string();
    std::fs::write(&config, both.replace(&format!("{globex_line}\n"), "")).unwrap();
    let exporter = start_exporter(dir.path(), &config, &[]);
    let acme_task = sim.add_task(ACME.2, quick());
    register(&exporter, ACME.2, acme_task).await;
    wait_for_state(&exporter, ACME.2, acme_task, "completed").await;
    let globex_labels = [("app", "isv-suite"), ("corp", "globex")];
    assert_eq!(metric(&exporter, "dingtalk_up", &globex_labels).await, None);

    let reload = |exporter: &ExporterProcess| {
        let url = exporter.url("/-/reload");
        async move {
            let answer = reqwest::Client::new().post(url).send().await.unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        }
    };
    std::fs::write(&config, &both).unwrap();
    reload(&exporter).await;
    let globex_task = sim.add_task(GLOBEX.2, quick());
    register(&exporter, GLOBEX.2, globex_task).await;
    wait_for_state(&exporter, GLOBEX.2, globex_task, "completed").await;
    assert_eq!(
        task_json(&exporter, GLOBEX.2, globex_task).await.unwrap()["corp"],
        "globex"
    );
    assert_eq!(
        metric(&exporter, "dingtalk_up", &globex_labels).await,
        Some(1.0)
    );

    std::fs::write(&config, both.replace(&format!("{acme_line}\n"), "")).unwrap();
    reload(&exporter).await;
    let acme_labels = [("app", "isv-suite"), ("corp", "acme")];
    assert_eq!(metric(&exporter, "dingtalk_up", &acme_labels).await, None);
    assert_eq!(
        metric(&exporter, "dingtalk_token_refreshes_total", &acme_labels).await,
        None
    );
    assert_eq!(
        metric(&exporter, "dingtalk_up", &globex_labels).await,
        Some(1.0)
    );
}

/// An internal app may take its token from the unified token API with its own corp id: its
/// tasks complete, its series carry no `corp` label, and `gettoken` is never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_app_on_the_unified_token_api() {
    use dingtalk_exporter::simulator::{DEMO_AGENT_ID, DEMO_APP_KEY, DEMO_APP_SECRET};
    let sim = simulator(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "dingtalk: {{api_url: '{url}', openapi_url: '{url}'}}\n\
             apps:\n  - {{name: hr, agent_id: {DEMO_AGENT_ID}, app_key: {DEMO_APP_KEY}, \
             app_secret: {DEMO_APP_SECRET}, token_api: unified, corp_id: dingownorg}}\n",
            url = sim.url()
        ),
    )
    .unwrap();
    let exporter = start_exporter(dir.path(), config.to_str().unwrap(), &[]);
    let task_id = sim.add_task(DEMO_AGENT_ID, quick());
    register(&exporter, DEMO_AGENT_ID, task_id).await;
    wait_for_state(&exporter, DEMO_AGENT_ID, task_id, "completed").await;
    let task = task_json(&exporter, DEMO_AGENT_ID, task_id).await.unwrap();
    assert_eq!(task["app"], "hr");
    assert_eq!(task["corp"], serde_json::Value::Null);
    let stats = sim.stats();
    assert_eq!(stats.calls.gettoken, 0);
    assert!(stats.calls.unified_token >= 1);
    let text = get_text(&exporter.url("/metrics")).await.unwrap();
    assert!(text.contains("dingtalk_up{app=\"hr\"} 1"), "{text}");
}

/// The simulator's signed corp-token endpoint checks what DingTalk checks: the timestamp in
/// milliseconds and within a minute, the signature (percent-decoded once), the current
/// ticket and the authorisation; a corp's token opens only that corp's agent.
#[tokio::test]
async fn simulator_checks_the_signed_corp_token_request() {
    use dingtalk_exporter::dingtalk::corp_token::corp_token_signature;
    let sim = simulator(0).await;
    let http = reqwest::Client::new();
    let ask = |timestamp: i64, ticket: &str, signature: String, corp: &str| {
        let mut url =
            reqwest::Url::parse(&format!("{}/service/get_corp_token", sim.url())).unwrap();
        url.query_pairs_mut()
            .append_pair("accessKey", SUITE_KEY)
            .append_pair("timestamp", &timestamp.to_string())
            .append_pair("suiteTicket", ticket)
            .append_pair("signature", &signature);
        let request = http
            .post(url)
            .json(&serde_json::json!({"auth_corpid": corp}));
        async move {
            let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            answer
        }
    };
    let now = sim.now_ms();
    let signed =
        |timestamp: i64, ticket: &str| corp_token_signature(SUITE_SECRET, timestamp, ticket);
    let good = ask(now, FIRST_TICKET, signed(now, FIRST_TICKET), ACME.0).await;
    assert_eq!(good["errcode"], 0, "{good}");
    let token = good["access_token"].as_str().unwrap().to_string();
    let again = ask(now, FIRST_TICKET, signed(now, FIRST_TICKET), ACME.0).await;
    assert_ne!(
        again["access_token"], good["access_token"],
        "a new token every call"
    );

    let seconds = now / 1000;
    let cases = [
        (
            ask(seconds, FIRST_TICKET, signed(seconds, FIRST_TICKET), ACME.0).await,
            853001,
        ),
        (
            ask(
                now - 120_000,
                FIRST_TICKET,
                signed(now - 120_000, FIRST_TICKET),
                ACME.0,
            )
            .await,
            853002,
        ),
        (
            ask(
                now,
                FIRST_TICKET,
                signed(now, FIRST_TICKET)
                    .replace('+', "%2B")
                    .replace('/', "%2F")
                    .replace('=', "%3D"),
                ACME.0,
            )
            .await,
            853004,
        ),
        (
            ask(
                now,
                FIRST_TICKET,
                corp_token_signature("wrong", now, FIRST_TICKET),
                ACME.0,
            )
            .await,
            853004,
        ),
        (
            ask(now, "old-ticket", signed(now, "old-ticket"), ACME.0).await,
            40085,
        ),
        (ask(now, "", signed(now, ""), ACME.0).await, 41023),
        (
            ask(now, FIRST_TICKET, signed(now, FIRST_TICKET), "dingstranger").await,
            48004,
        ),
    ];
    for (answer, errcode) in cases {
        assert_eq!(answer["errcode"], errcode, "{answer}");
    }

    // acme's token asks about acme's agent, never about globex's.
    let globex_task = sim.add_task(GLOBEX.2, quick());
    let progress = |agent_id: i64, task_id: i64| {
        let url = format!(
            "{}/topapi/message/corpconversation/getsendprogress?access_token={token}",
            sim.url()
        );
        let request = http
            .post(url)
            .json(&serde_json::json!({"agent_id": agent_id, "task_id": task_id}));
        async move {
            let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            answer
        }
    };
    assert_eq!(progress(GLOBEX.2, globex_task).await["errcode"], 40035);
    let acme_task = sim.add_task(ACME.2, quick());
    assert_eq!(progress(ACME.2, acme_task).await["errcode"], 0);
}

/// `--config.check` reports every problem of a third-party app at once and prints no secret.
#[test]
fn config_check_reports_third_party_problems_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("suite_secret"), "hidden-suite-secret\n").unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "apps:\n  - name: isv\n    kind: third_party\n    suite_secret_file: suite_secret\n\
         \x20   token_api: get_corp_token\n    app_key: oops\n    corps:\n\
         \x20     - {corp_id: dingone, name: one, agent_id: 7}\n\
         \x20     - {corp_id: dingone, name: one, agent_id: 7, budget: 3}\n\
         \x20 - name: internal\n    agent_id: 7\n    app_key: k\n    app_secret: s\n",
    )
    .unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["--config.check", "--config.file", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "apps[0].suite_key",
        "apps[0].suite_ticket_file",
        "apps[0].app_key",
        "apps[0].corps[1].corp_id",
        "apps[0].corps[1].name",
        "apps[0].corps[1].agent_id",
        "apps[0].corps[1].budget",
        "apps[1].agent_id",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("hidden-suite-secret"), "{text}");
}

/// A valid third-party app is described by `--config.check`: each corp with its token API
/// and budget, the secret only by where it comes from.
#[test]
fn config_check_describes_each_corp() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("suite_secret"), "hidden-suite-secret\n").unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        "apps:\n  - name: isv\n    kind: third_party\n    suite_key: suitekey1\n\
         \x20   suite_secret_file: suite_secret\n    corps:\n\
         \x20     - {corp_id: dingone, name: one, agent_id: 7, monthly_call_budget: 300}\n\
         \x20     - {corp_id: dingtwo, name: two, agent_id: 8}\n",
    )
    .unwrap();
    let output = std::process::Command::new(common::binary())
        .args(["--config.check", "--config.file", config.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("corp one (dingone): agent_id 7"), "{text}");
    assert!(text.contains("token_api unified"), "{text}");
    assert!(text.contains("monthly budget 300"), "{text}");
    assert!(!text.contains("hidden-suite-secret"), "{text}");
}
