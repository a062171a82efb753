//! End to end against a real Prometheus: the demo (simulator plus exporter) is scraped every
//! second by Debian's `prometheus` with the alert rules loaded, and every query of every
//! dashboard panel, with the dashboard variables substituted, must return data through
//! Prometheus' HTTP API. The scraped exposition passes `promtool check metrics` and matches
//! the golden list of metric families (`UPDATE_GOLDEN=1` rewrites it after a deliberate
//! change).
//!
//! `prometheus` and `promtool` are looked up in PATH; without them the test is skipped with
//! a note, unless DINGTALK_EXPORTER_REQUIRE_PROMETHEUS=1 (set by CI), which makes it fail.

mod dashboard_support;
mod prometheus_tools;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use dashboard_support::{
    PanelQuery, UPDATE_GOLDEN_ENV, exposition_families, golden_families_path, leftover_variable,
    load_dashboard, panel_queries, parse_family_list, render_family_list, rules_path,
    substitute_variables,
};
use prometheus_tools::{check_metrics, prometheus_binary};
use reqwest::Url;
use serde_json::Value;

/// The scrape job of the test's Prometheus; `$job` in the dashboard selects it.
const JOB: &str = "dingtalk-e2e";

/// The values Grafana would substitute, for a dashboard showing the last 5 minutes of a
/// Prometheus that scrapes every second.
const VARIABLES: &[(&str, &str)] = &[
    ("job", JOB),
    ("instance", ".+"),
    ("__rate_interval", "20s"),
    ("__interval", "2s"),
    ("__interval_ms", "2000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

/// How long the demo may take to print its URLs, and Prometheus to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the demo has to expose every metric family, and every panel to get data. The
/// last to come are the recipient counts: the demo's first fast task finishes 20 to 60
/// seconds after start, and is then polled and asked for its delivery result.
const DATA_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_PAUSE: Duration = Duration::from_millis(500);

/// Alerts that a healthy demo must never have pending or firing: they would page every user.
const QUIET_ALERTS: &[&str] = &[
    "DingTalkConfigReloadFailed",
    "DingTalkExporterDown",
    "DingTalkExporterAbsent",
];
/// The demo keeps registering invalid tasks, so this alert fires within seconds.
const EXPECTED_ALERT: &str = "DingTalkTaskInvalid";

/// A child process that is killed when the test ends, however it ends, with the lines it
/// printed kept for failure messages.
struct Process {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let (sender, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        forward_lines(stdout, sender.clone(), log.clone());
        forward_lines(stderr, sender, log.clone());
        Process {
            name,
            child,
            lines,
            log,
        }
    }

    /// Waits for a printed line that `parse` accepts, failing if the process exits first
    /// (both its output streams close).
    fn wait_for_line<T>(&mut self, what: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(POLL_PAUSE) {
                Ok(line) => {
                    if let Some(found) = parse(&line) {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Both output streams closed: the process is exiting.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for the process");
                    panic!(
                        "{} exited ({status}) before printing {what}:\n{}",
                        self.name,
                        self.recent_output()
                    );
                }
            }
        }
        panic!(
            "{} did not print {what} within {START_TIMEOUT:?}:\n{}",
            self.name,
            self.recent_output()
        );
    }

    fn recent_output(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a stream's lines to the channel and to a bounded log.
fn forward_lines(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<String>,
    log: Arc<Mutex<VecDeque<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                if log.len() == 40 {
                    log.pop_front();
                }
                log.push_back(line.clone());
            }
            // The receiver stops listening once it has what it waited for.
            let _ = sender.send(line);
        }
    });
}

/// The URL the demo prints as `Metrics:   http://127.0.0.1:PORT/metrics`.
fn metrics_url(line: &str) -> Option<Url> {
    let (_, rest) = line.split_once("Metrics:")?;
    Url::parse(rest.split_whitespace().next()?).ok()
}

/// The address Prometheus logs as `msg="Listening on" address=127.0.0.1:PORT`, the port the
/// OS chose for `--web.listen-address=127.0.0.1:0`.
fn prometheus_address(line: &str) -> Option<String> {
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    let (_, rest) = line.split_once("address=")?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// A YAML single-quoted string (the clone's path may hold spaces or colons).
fn yaml_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn start_demo(dir: &Path) -> (Process, Url) {
    let mut demo = Process::spawn(
        "dingtalk-exporter demo",
        Command::new(env!("CARGO_BIN_EXE_dingtalk-exporter"))
            .arg("demo")
            .args(["--web.listen-address", "127.0.0.1:0"])
            .arg("--storage.path")
            .arg(dir.join("demo.db")),
    );
    let url = demo.wait_for_line("its Metrics: URL", metrics_url);
    (demo, url)
}

fn start_prometheus(binary: &Path, dir: &Path, target: &Url) -> (Process, Url) {
    let host = target.host_str().expect("metrics URL has a host");
    let port = target
        .port_or_known_default()
        .expect("metrics URL has a port");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: {JOB}\n    metrics_path: {path}\n    static_configs:\n      - targets: [{target}]\n",
        rules = yaml_string(&rules_path().display().to_string()),
        path = yaml_string(target.path()),
        target = yaml_string(&format!("{host}:{port}")),
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let mut prometheus = Process::spawn(
        "prometheus",
        Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0"),
    );
    let address = prometheus.wait_for_line("its listen address", prometheus_address);
    let base = Url::parse(&format!("http://{address}/")).expect("Prometheus URL");
    (prometheus, base)
}

async fn get_text(client: &reqwest::Client, url: &Url) -> Result<String, String> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|err| err.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// An instant query through Prometheus' HTTP API: the result series, or the error.
async fn instant_query(
    client: &reqwest::Client,
    prometheus: &Url,
    expr: &str,
) -> Result<Vec<Value>, String> {
    let mut url = prometheus.join("api/v1/query").expect("query URL");
    url.query_pairs_mut().append_pair("query", expr);
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|err| err.to_string())?;
    let body: Value = response.json().await.map_err(|err| err.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(match &body["data"]["result"] {
        Value::Array(series) => series.clone(),
        // A scalar or string result is one value.
        other if !other.is_null() => vec![other.clone()],
        _ => Vec::new(),
    })
}

async fn api_get(client: &reqwest::Client, prometheus: &Url, path: &str) -> Value {
    let url = prometheus.join(path).expect("API URL");
    let text = get_text(client, &url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url}: not JSON: {err}"))
}

/// Scrapes the exporter until every golden metric family is exposed (or the deadline passes)
/// and returns the last exposition.
async fn scrape_until_complete(
    client: &reqwest::Client,
    url: &Url,
    golden: &BTreeMap<String, String>,
    deadline: Instant,
) -> String {
    loop {
        let scraped = get_text(client, url).await;
        if let Ok(text) = &scraped {
            // Families appear as the demo's tasks get polled, fail and finish. (A renamed
            // family never appears: the comparison after the deadline names it.)
            let exposed = exposition_families(text);
            let complete = golden.keys().all(|name| exposed.contains_key(name));
            if complete || Instant::now() >= deadline {
                return text.clone();
            }
        } else if Instant::now() >= deadline {
            panic!("scraping {url} failed: {scraped:?}");
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// Every metric and sample name of an exposition that ends in `_percent`.
fn percent_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .chain(exposition_families(exposition).keys().map(String::as_str))
        .filter(|name| name.ends_with("_percent"))
        .map(str::to_string)
        .collect()
}

/// Queries every pending panel query until each has returned data or the deadline passes;
/// returns the ones that never did, with their last answer.
async fn queries_without_data(
    client: &reqwest::Client,
    prometheus: &Url,
    queries: Vec<(PanelQuery, String)>,
    deadline: Instant,
) -> Vec<String> {
    let mut pending: Vec<(PanelQuery, String, String)> = queries
        .into_iter()
        .map(|(query, expr)| (query, expr, "not asked yet".to_string()))
        .collect();
    loop {
        let mut still_pending = Vec::new();
        for (query, expr, _) in pending {
            match instant_query(client, prometheus, &expr).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => still_pending.push((query, expr, "no data".to_string())),
                Err(err) => still_pending.push((query, expr, err)),
            }
        }
        pending = still_pending;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
    pending
        .into_iter()
        .map(|(query, expr, answer)| format!("{}: {answer}\n    {expr}", query.describe()))
        .collect()
}

/// Waits until every rule has been evaluated at least once; returns the unhealthy ones.
async fn unhealthy_rules(
    client: &reqwest::Client,
    prometheus: &Url,
    deadline: Instant,
) -> Vec<String> {
    loop {
        let answer = api_get(client, prometheus, "api/v1/rules").await;
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = !rules.is_empty()
            && rules.iter().all(|rule| {
                !rule["lastEvaluation"]
                    .as_str()
                    .unwrap_or("0001")
                    .starts_with("0001")
            });
        if evaluated || Instant::now() >= deadline {
            if rules.is_empty() {
                return vec!["Prometheus loaded no rules".to_string()];
            }
            return rules
                .iter()
                .filter(|rule| rule["health"] != "ok")
                .map(|rule| format!("{}: {} {}", rule["name"], rule["health"], rule["lastError"]))
                .collect();
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// Active alerts by name and state (`pending` or `firing`).
async fn active_alerts(client: &reqwest::Client, prometheus: &Url) -> BTreeMap<String, String> {
    let answer = api_get(client, prometheus, "api/v1/alerts").await;
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|alert| {
            (
                alert["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                alert["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn compare_with_golden(exposed: &BTreeMap<String, String>) -> Result<(), String> {
    let path: PathBuf = golden_families_path();
    if std::env::var(UPDATE_GOLDEN_ENV).as_deref() == Ok("1") {
        std::fs::write(&path, render_family_list(exposed)).expect("write golden file");
        eprintln!("rewrote {}", path.display());
        return Ok(());
    }
    let golden = parse_family_list(&std::fs::read_to_string(&path).expect("read golden file"));
    if &golden == exposed {
        return Ok(());
    }
    let mut diff = Vec::new();
    for (name, kind) in &golden {
        match exposed.get(name) {
            None => diff.push(format!("- {name} {kind} (missing from /metrics)")),
            Some(other) if other != kind => diff.push(format!("~ {name} {kind} is now {other}")),
            Some(_) => {}
        }
    }
    for (name, kind) in exposed {
        if !golden.contains_key(name) {
            diff.push(format!("+ {name} {kind} (not in the golden list)"));
        }
    }
    Err(format!(
        "the exposition's metric families differ from {} (rerun with {UPDATE_GOLDEN_ENV}=1 \
         if the change is deliberate, and update the dashboard, alerts and README):\n  {}",
        path.display(),
        diff.join("\n  ")
    ))
}

/// Every panel query has data from the demo in a real Prometheus, whose rules run and alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_has_data_from_the_demo_in_a_real_prometheus() {
    let Some(prometheus_bin) = prometheus_binary("prometheus") else {
        return;
    };
    let Some(promtool) = prometheus_binary("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");

    let (demo, metrics) = start_demo(dir.path());
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, dir.path(), &metrics);
    let deadline = Instant::now() + DATA_TIMEOUT;

    // The exposition: every golden family present, accepted by promtool, no percentages.
    let golden = parse_family_list(
        &std::fs::read_to_string(golden_families_path()).expect("read golden file"),
    );
    let exposition = scrape_until_complete(&client, &metrics, &golden, deadline).await;
    let exposed = exposition_families(&exposition);
    if let Err(diff) = compare_with_golden(&exposed) {
        panic!("{diff}\ndemo output:\n{}", demo.recent_output());
    }
    if let Err(problems) = check_metrics(&promtool, &exposition) {
        panic!("promtool check metrics rejects /metrics:\n{problems}");
    }
    let percent = percent_names(&exposition);
    assert!(
        percent.is_empty(),
        "ratios are 0..1, not percent: {percent:?}"
    );

    // Every query of every panel, as Grafana would send it.
    let dashboard = load_dashboard();
    let queries: Vec<(PanelQuery, String)> = panel_queries(&dashboard)
        .into_iter()
        .map(|query| {
            let expr = substitute_variables(&query.expr, VARIABLES);
            assert_eq!(
                leftover_variable(&expr),
                None,
                "{}: variable left in {expr}",
                query.describe()
            );
            (query, expr)
        })
        .collect();
    assert!(!queries.is_empty(), "the dashboard has no queries");
    let no_data = queries_without_data(&client, &prometheus, queries, deadline).await;
    assert!(
        no_data.is_empty(),
        "panel queries without data after {DATA_TIMEOUT:?}:\n  {}\ndemo output:\n{}",
        no_data.join("\n  "),
        demo.recent_output()
    );
    let job_values = api_get(
        &client,
        &prometheus,
        "api/v1/label/job/values?match[]=dingtalk_exporter_build_info",
    )
    .await;
    // The `job` variable lists the scrape job (its query is label_values on build_info).
    assert!(
        job_values["data"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|job| job == JOB)),
        "the job variable would not offer {JOB}: {job_values}"
    );

    // The alert rules evaluate against real series without errors (e.g. no many-to-many
    // matches in their joins), the invalid demo task fires its alert, and nothing that would
    // page every user is pending.
    let unhealthy = unhealthy_rules(&client, &prometheus, deadline).await;
    assert!(
        unhealthy.is_empty(),
        "rules failing in Prometheus:\n  {}",
        unhealthy.join("\n  ")
    );
    let mut alerts = active_alerts(&client, &prometheus).await;
    while alerts.get(EXPECTED_ALERT).map(String::as_str) != Some("firing")
        && Instant::now() < deadline
    {
        tokio::time::sleep(POLL_PAUSE).await;
        alerts = active_alerts(&client, &prometheus).await;
    }
    assert_eq!(
        alerts.get(EXPECTED_ALERT).map(String::as_str),
        Some("firing"),
        "the demo's invalid tasks should fire {EXPECTED_ALERT}; active alerts: {alerts:?}"
    );
    for quiet in QUIET_ALERTS {
        assert!(
            !alerts.contains_key(*quiet),
            "{quiet} is {} on a healthy demo; active alerts: {alerts:?}",
            alerts[*quiet]
        );
    }
}
