//! Checks of the mixin's generated files and of the alert and recording rules: the committed
//! files are what `mixin/` generates, `promtool check rules` and `promtool test rules` on the
//! shipped files, the naming and annotation conventions, a unit test for every alert, a
//! runbook section for every alert, only exported metrics, and the Grafana-managed form of
//! the alerts against a schema of Grafana's provisioning format and against the Prometheus
//! rules.
//!
//! `promtool` and `jsonnet` are looked up in PATH; without them their tests are skipped with
//! a note, unless DINGTALK_EXPORTER_REQUIRE_PROMETHEUS=1 or DINGTALK_EXPORTER_REQUIRE_JSONNET=1
//! (both set by CI) make them fail.

mod dashboard_support;
mod prometheus_tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use dashboard_support::{
    SYNTHETIC_SERIES, family_of, generate_mixin, grafana_alert_schema_path, grafana_alerts_path,
    jsonnet_binary, parse_promql, read_golden_families, readme_anchors, repo_path, rule_tests_dir,
    rules_path, selector_metric_name, vector_selectors,
};
use prometheus_tools::prometheus_binary;
use serde_json::Value;

/// Where each alert's `runbook_url` points: a heading of the README named after the alert.
const RUNBOOK_BASE: &str =
    "https://github.com/dingtalk-exporter/dingtalk-exporter/blob/main/README.md#";
const SEVERITIES: &[&str] = &["critical", "warning", "info"];

fn read_yaml(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not YAML: {err}", path.display()))
}

/// Every rule of the rule file, alerts and recording rules alike.
fn rules() -> Vec<Value> {
    let file = read_yaml(&rules_path());
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn alerts() -> Vec<Value> {
    let alerts: Vec<Value> = rules()
        .into_iter()
        .filter(|rule| rule.get("alert").is_some())
        .collect();
    assert!(!alerts.is_empty(), "the rule file has no alerts");
    alerts
}

fn rule_test_files() -> Vec<PathBuf> {
    let dir = rule_tests_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule tests in {}", dir.display());
    files
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `promtool check rules` accepts the shipped rule file.
#[test]
fn promtool_accepts_the_rule_file() {
    let Some(promtool) = prometheus_binary("promtool") else {
        return;
    };
    let (ok, output) = run(Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(rules_path()));
    assert!(ok, "promtool check rules failed:\n{output}");
}

/// Every `promtool test rules` unit test of the alerts passes.
#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    let Some(promtool) = prometheus_binary("promtool") else {
        return;
    };
    let (ok, output) = run(Command::new(promtool)
        .arg("test")
        .arg("rules")
        .args(rule_test_files()));
    assert!(ok, "promtool test rules failed:\n{output}");
}

/// Every alert has a unit test in which it fires and one in which it stays silent.
#[test]
fn every_alert_is_unit_tested_firing_and_silent() {
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in rule_test_files() {
        let tests = read_yaml(&file);
        for test in tests["tests"].as_array().into_iter().flatten() {
            for case in test["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_string();
                let expected = case["exp_alerts"].as_array().cloned().unwrap_or_default();
                if expected.is_empty() {
                    silent.insert(name);
                } else {
                    firing.insert(name);
                }
            }
        }
    }
    let mut problems = Vec::new();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap_or_default().to_string();
        if !firing.contains(&name) {
            problems.push(format!("{name}: no test where it fires"));
        }
        if !silent.contains(&name) {
            problems.push(format!("{name}: no test where it stays silent"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Alerts are DingTalk-prefixed CamelCase with a severity, static summary, description and runbook_url.
#[test]
fn alerts_follow_naming_and_annotation_conventions() {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap_or_default();
        if !names.insert(name.to_string()) {
            problems.push(format!("{name}: defined twice"));
        }
        let camel_case = name.starts_with("DingTalk")
            && name.len() > "DingTalk".len()
            && name.chars().all(|c| c.is_ascii_alphanumeric())
            && name["DingTalk".len()..].starts_with(|c: char| c.is_ascii_uppercase());
        if !camel_case {
            problems.push(format!("{name}: not CamelCase with the DingTalk prefix"));
        }
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        if !SEVERITIES.contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?} not one of {SEVERITIES:?}"
            ));
        }
        for annotation in ["summary", "description", "runbook_url"] {
            if alert["annotations"][annotation]
                .as_str()
                .is_none_or(|text| text.trim().is_empty())
            {
                problems.push(format!("{name}: no {annotation} annotation"));
            }
        }
        // The mixin style guide: a static summary (it titles grouped notifications), the
        // details with templates in the description.
        if alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|summary| summary.contains("{{"))
        {
            problems.push(format!("{name}: the summary is templated"));
        }
        let expected_url = format!("{RUNBOOK_BASE}{}", name.to_lowercase());
        if alert["annotations"]["runbook_url"] != expected_url.as_str() {
            problems.push(format!("{name}: runbook_url should be {expected_url}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every alert's runbook_url anchor is a heading of the README (or of the draft beside it).
#[test]
fn every_runbook_url_points_at_a_readme_section() {
    let anchors = readme_anchors();
    let missing: Vec<String> = alerts()
        .iter()
        .filter_map(|alert| {
            let url = alert["annotations"]["runbook_url"].as_str()?;
            let anchor = url.rsplit_once('#').map(|(_, anchor)| anchor)?;
            (!anchors.contains(anchor)).then(|| format!("{url} has no heading"))
        })
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Rules read only exported or recorded metrics; recording rules are well named and used.
#[test]
fn every_metric_a_rule_reads_is_exported_or_recorded() {
    let golden = read_golden_families();
    let rules = rules();
    let recorded: BTreeSet<String> = rules
        .iter()
        .filter_map(|rule| rule["record"].as_str().map(str::to_string))
        .collect();
    let mut problems = Vec::new();
    let mut reads: BTreeMap<String, usize> = BTreeMap::new();
    for rule in &rules {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or_default();
        let expr = rule["expr"].as_str().unwrap_or_default();
        let parsed = match parse_promql(expr) {
            Ok(parsed) => parsed,
            Err(err) => {
                problems.push(format!("{name}: {err}"));
                continue;
            }
        };
        for selector in vector_selectors(&parsed) {
            let Some(metric) = selector_metric_name(selector) else {
                problems.push(format!("{name}: selector {selector} names no metric"));
                continue;
            };
            *reads.entry(metric.clone()).or_default() += 1;
            let known = SYNTHETIC_SERIES.contains(&metric.as_str())
                || recorded.contains(&metric)
                || family_of(&metric, &golden).is_some();
            if !known {
                problems.push(format!("{name}: {metric} is neither exported nor recorded"));
            }
        }
    }
    for record in &recorded {
        if record.split(':').count() != 3 {
            problems.push(format!("{record}: not named level:metric:operations"));
        }
        if !reads.contains_key(record) {
            problems.push(format!("{record}: recorded but never used"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The files the mixin generates, as committed.
const GENERATED_FILES: &[&str] = &[
    "alerts/dingtalk-exporter.rules.yml",
    "alerts/grafana/dingtalk-exporter.yaml",
    "dashboards/dingtalk-exporter.json",
];

/// The Grafana provisioning variable that holds the uid of the user's Prometheus data source.
const DATASOURCE_UID_VARIABLE: &str = "${DINGTALK_EXPORTER_PROMETHEUS_UID}";

/// Every Grafana-managed rule of the provisioning file.
fn grafana_rules() -> Vec<Value> {
    let file = read_yaml(&grafana_alerts_path());
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The committed dashboard and rule files are byte for byte what `make mixin` generates.
#[test]
fn committed_files_are_what_the_mixin_generates() {
    let Some(jsonnet) = jsonnet_binary() else {
        return;
    };
    let generated = generate_mixin(&jsonnet, "{}");
    let paths: Vec<&str> = generated.keys().map(String::as_str).collect();
    assert_eq!(paths, GENERATED_FILES, "the mixin generates other files");
    let stale: Vec<&str> = generated
        .iter()
        .filter(|(path, text)| {
            std::fs::read_to_string(repo_path(path)).ok().as_ref() != Some(*text)
        })
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what mixin/ generates: change the jsonnet, not the output, \
         and run `make mixin`"
    );
}

/// One line of `_config` (the stall threshold) changes the alert, its Grafana twin and the panel.
#[test]
fn the_stall_threshold_is_set_in_one_line_of_config() {
    let Some(jsonnet) = jsonnet_binary() else {
        return;
    };
    let generated = generate_mixin(&jsonnet, "{ deliveryStalledAfterSeconds: 45 * 60 }");
    let rules: Value =
        serde_yaml_ng::from_str(&generated["alerts/dingtalk-exporter.rules.yml"]).expect("YAML");
    let stalled = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .find(|rule| rule["alert"] == "DingTalkDeliveryStalled")
        .expect("the stall alert");
    let expr = stalled["expr"].as_str().unwrap_or_default();
    assert!(
        expr.trim_end().ends_with("> 2700"),
        "alert expression: {expr}"
    );

    let grafana: Value =
        serde_yaml_ng::from_str(&generated["alerts/grafana/dingtalk-exporter.yaml"]).expect("YAML");
    let rule = grafana["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|rule| rule["title"] == "DingTalkDeliveryStalled")
        .expect("the Grafana stall rule");
    let threshold = rule["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|query| query["refId"] == rule["condition"])
        .map(|query| query["model"]["conditions"][0]["evaluator"]["params"][0].clone());
    assert_eq!(threshold, Some(serde_json::json!(2700)));

    let dashboard: Value =
        serde_json::from_str(&generated["dashboards/dingtalk-exporter.json"]).expect("JSON");
    let panel = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|panel| panel["title"] == "Stalled")
        .expect("the Stalled panel");
    assert!(
        panel["targets"][0]["expr"]
            .as_str()
            .is_some_and(|expr| expr.contains(") > 2700")),
        "panel query: {}",
        panel["targets"][0]["expr"]
    );
    assert!(
        panel["description"]
            .as_str()
            .is_some_and(|text| text.contains("45 minutes")),
        "panel description: {}",
        panel["description"]
    );
}

/// The Grafana alert file is valid Grafana alert-rule provisioning (apiVersion 1).
#[test]
fn grafana_alert_file_validates_against_the_provisioning_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(grafana_alert_schema_path()).expect("read the schema"),
    )
    .expect("the schema is JSON");
    let validator = jsonschema::draft7::new(&schema).expect("the schema compiles");
    let file = read_yaml(&grafana_alerts_path());
    let problems: Vec<String> = validator
        .iter_errors(&file)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // What the schema cannot say: unique uids, a condition that names a query, each
    // expression reading a query defined before it, the data source left to the user.
    let mut uids = BTreeSet::new();
    let mut problems = Vec::new();
    for rule in grafana_rules() {
        let title = rule["title"].as_str().unwrap_or_default().to_string();
        if !uids.insert(rule["uid"].to_string()) {
            problems.push(format!("{title}: uid {} used twice", rule["uid"]));
        }
        let mut defined = BTreeSet::new();
        for query in rule["data"].as_array().into_iter().flatten() {
            let model = &query["model"];
            if query["refId"] != model["refId"] {
                problems.push(format!(
                    "{title}: refId {} differs in its model",
                    query["refId"]
                ));
            }
            if query["datasourceUid"] == "__expr__" {
                if !defined.contains(&model["expression"].to_string()) {
                    problems.push(format!(
                        "{title}: {} reads {}, not defined before it",
                        query["refId"], model["expression"]
                    ));
                }
            } else {
                if query["datasourceUid"] != DATASOURCE_UID_VARIABLE
                    || model["datasource"]["uid"] != DATASOURCE_UID_VARIABLE
                {
                    problems.push(format!(
                        "{title}: {} does not use the data source variable {DATASOURCE_UID_VARIABLE}",
                        query["refId"]
                    ));
                }
                if let Err(err) = parse_promql(model["expr"].as_str().unwrap_or_default()) {
                    problems.push(format!("{title}: {err}"));
                }
            }
            defined.insert(query["refId"].to_string());
        }
        if !defined.contains(&rule["condition"].to_string()) {
            problems.push(format!(
                "{title}: condition {} names no query",
                rule["condition"]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Each Prometheus alert has a Grafana rule of the same name, severity, duration and texts.
#[test]
fn grafana_rules_mirror_the_prometheus_alerts() {
    let prometheus: Vec<Value> = alerts();
    let grafana = grafana_rules();
    let names = |rules: &[Value], key: &str| -> Vec<String> {
        rules
            .iter()
            .map(|rule| rule[key].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&grafana, "title"), names(&prometheus, "alert"));
    let mut problems = Vec::new();
    for (alert, rule) in prometheus.iter().zip(&grafana) {
        let name = alert["alert"].as_str().unwrap_or_default();
        if rule["labels"] != alert["labels"] {
            problems.push(format!(
                "{name}: labels {} vs {}",
                rule["labels"], alert["labels"]
            ));
        }
        let duration = alert["for"].as_str().unwrap_or("0s");
        if rule["for"] != duration {
            problems.push(format!("{name}: for {} vs {duration}", rule["for"]));
        }
        for annotation in ["summary", "runbook_url"] {
            if rule["annotations"][annotation] != alert["annotations"][annotation] {
                problems.push(format!("{name}: {annotation} differs"));
            }
        }
        // Grafana gives the compared value as $values.B.Value where Prometheus has $value.
        let description = alert["annotations"]["description"]
            .as_str()
            .unwrap_or_default()
            .replace("$value", "$values.B.Value");
        if rule["annotations"]["description"] != description.as_str() {
            problems.push(format!("{name}: description differs"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
