//! Checks of the Grafana dashboard that need no Grafana server: the grafana/dashboard-linter
//! rules listed in conventions.md, its structure (ids, grid), Grafana's JSON Schema, and that
//! every metric it queries is one the exporter exposes.
//!
//! The JSON Schemas come from `../shared/reference/grafana-schema/` beside the clone.

mod dashboard_support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use dashboard_support::{
    BUILTIN_VARIABLES, SYNTHETIC_SERIES, all_panels, family_of, is_row, load_dashboard,
    panel_queries, parse_promql, read_golden_families, read_replica_golden_families,
    readme_anchors, selector_metric_name, shared_path, substitute_variables, vector_selectors,
    walk,
};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use serde_json::{Value, json};

/// The dashboard's URL path in Grafana; changing it breaks users' bookmarks and links.
const UID: &str = "dingtalk-exporter";
const SCHEMA_VERSION: i64 = 41;
const GRID_COLUMNS: i64 = 24;

/// Stand-ins for Grafana's interval variables while parsing: distinctive durations, so a
/// range selector can be traced back to the variable it was written with.
const RATE_INTERVAL_STANDIN: u64 = 7777;
const STANDINS: &[(&str, &str)] = &[
    ("__rate_interval", "7777s"),
    ("__interval", "9999s"),
    ("__interval_ms", "9999000"),
    ("__range", "8888s"),
    ("__range_s", "8888"),
    ("__range_ms", "8888000"),
];

/// Panel types and the reference schema file holding their options.
const PANEL_SCHEMAS: &[(&str, &str)] = &[
    ("stat", "stat"),
    ("table", "table"),
    ("bargauge", "bargauge"),
    ("state-timeline", "statetimeline"),
    ("timeseries", "timeseries"),
];

fn datasource_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

fn read_schema(name: &str) -> Value {
    let path = shared_path(&format!("reference/grafana-schema/{name}.jsonschema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {} (the shared reference folder must sit beside the clone): {err}",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("schema is JSON")
}

/// The dashboard schema with its three over-strict definitions relaxed (real Grafana exports
/// fail them too): an override property's `value` and a matcher's `options` hold strings and
/// numbers, and a variable's `query` may be an object.
fn relaxed_dashboard_schema() -> Value {
    let mut schema = read_schema("dashboard");
    for (pointer, relaxed) in [
        (
            "/definitions/DynamicConfigValue/properties/value",
            json!({}),
        ),
        ("/definitions/MatcherConfig/properties/options", json!({})),
        (
            "/definitions/VariableModel/properties/query",
            json!({"type": ["string", "object"]}),
        ),
    ] {
        *schema
            .pointer_mut(pointer)
            .unwrap_or_else(|| panic!("the schema changed: {pointer} is gone")) = relaxed;
    }
    schema
}

/// A panel type's schema. The table's cell options are a `oneOf` whose branches all accept
/// any cell `type` (each only gives its own as a default), so every cell option object matches
/// several branches and fails; pinning each branch's `type` to its default makes the `oneOf`
/// pick the branch Grafana means, and so checks the other properties against it.
fn panel_schema(file: &str) -> Value {
    let mut schema = read_schema(file);
    let branches: Vec<String> = schema
        .pointer("/definitions/TableCellOptions/oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|branch| branch["$ref"].as_str())
        .map(|reference| reference.trim_start_matches("#/definitions/").to_string())
        .collect();
    for branch in branches {
        let kind = &mut schema["definitions"][&branch]["properties"]["type"];
        let default = kind["default"].clone();
        assert!(default.is_string(), "{branch} has no default cell type");
        *kind = json!({ "const": default });
    }
    schema
}

/// Validation errors of `instance` against `#/definitions/...` of a schema file, each with
/// the place it occurred.
fn schema_errors(schema: &Value, reference: &str, instance: &Value, context: &str) -> Vec<String> {
    let rooted = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": schema["definitions"],
        "$ref": reference,
    });
    let validator = jsonschema::draft7::new(&rooted)
        .unwrap_or_else(|err| panic!("schema for {reference} does not compile: {err}"));
    validator
        .iter_errors(instance)
        .map(|err| format!("{context}{}: {err}", err.instance_path()))
        .collect()
}

/// The definition a panel schema's `FieldConfig` stands for (some are a bare `$ref`).
fn field_config_definition(schema: &Value) -> Option<String> {
    let field_config = schema["definitions"].get("FieldConfig")?;
    Some(match field_config["$ref"].as_str() {
        Some(reference) => reference
            .strip_prefix("#/definitions/")
            .expect("local reference")
            .to_string(),
        None => "FieldConfig".to_string(),
    })
}

fn grafana_units() -> HashSet<String> {
    read_schema("units")["definitions"]
        .as_object()
        .expect("definitions")
        .values()
        .filter_map(|unit| unit["const"].as_str().map(str::to_string))
        .collect()
}

fn title(panel: &Value) -> String {
    format!(
        "panel {:?} (id {})",
        panel["title"].as_str().unwrap_or("<untitled>"),
        panel["id"]
    )
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` variable"))
}

/// Each panel query parsed with the interval variables replaced by their stand-ins; `$job`
/// and `$instance` stay as they are, inside the matchers' strings.
fn parsed_queries(dashboard: &Value) -> Vec<(String, Result<Expr, String>)> {
    panel_queries(dashboard)
        .into_iter()
        .map(|query| {
            let expr = substitute_variables(&query.expr, STANDINS);
            (query.describe(), parse_promql(&expr))
        })
        .collect()
}

/// The dashboard keeps its uid and carries nothing that only belongs to an export for sharing.
#[test]
fn dashboard_has_a_stable_identity_and_no_import_placeholders() {
    let dashboard = load_dashboard();
    assert_eq!(
        dashboard["uid"], UID,
        "the uid is part of the dashboard's URL"
    );
    assert!(
        UID.len() <= 40
            && UID
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "uid must be lowercase letters, digits and dashes, at most 40 characters"
    );
    assert_eq!(dashboard["schemaVersion"], SCHEMA_VERSION);
    assert_eq!(
        dashboard["editable"], false,
        "provisioned dashboards are read-only"
    );
    assert!(
        dashboard.get("id").is_none(),
        "`id` belongs to one Grafana instance"
    );
    for key in ["__inputs", "__requires", "__elements"] {
        assert!(
            dashboard.get(key).is_none(),
            "`{key}` makes provisioning fail"
        );
    }
    assert!(!dashboard["title"].as_str().unwrap_or_default().is_empty());
}

/// The dashboard, and each panel's options and field config, validate against Grafana's schema.
#[test]
fn dashboard_validates_against_grafana_json_schema() {
    let dashboard = load_dashboard();
    let dashboard_schema = relaxed_dashboard_schema();
    let mut problems = schema_errors(&dashboard_schema, "#/definitions/Dashboard", &dashboard, "");

    let schemas: BTreeMap<&str, Value> = PANEL_SCHEMAS
        .iter()
        .map(|(kind, file)| (*kind, panel_schema(file)))
        .collect();
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        let context = title(panel);
        let kind = panel["type"].as_str().unwrap_or_default();
        let Some(schema) = schemas.get(kind) else {
            problems.push(format!("{context}: no reference schema for type {kind:?}"));
            continue;
        };
        problems.extend(schema_errors(
            schema,
            "#/definitions/Options",
            &panel["options"],
            &format!("{context} options"),
        ));
        let field_config = field_config_definition(schema);
        let custom = &panel["fieldConfig"]["defaults"]["custom"];
        match &field_config {
            Some(definition) => problems.extend(schema_errors(
                schema,
                &format!("#/definitions/{definition}"),
                if custom.is_null() {
                    &Value::Null
                } else {
                    custom
                },
                &format!("{context} fieldConfig.defaults.custom"),
            )),
            None if !custom.is_null() => problems.push(format!(
                "{context}: type {kind} has no custom field config, found {custom}"
            )),
            None => {}
        }
        // Override properties are typed loosely by the dashboard schema: check each against
        // the field config property it sets.
        for (index, override_) in panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for property in override_["properties"].as_array().into_iter().flatten() {
                let id = property["id"].as_str().unwrap_or_default();
                let where_ = format!("{context} override {index} property {id}");
                let (schema, reference) = match id.strip_prefix("custom.") {
                    Some(custom_id) => match &field_config {
                        Some(definition) => (
                            schema,
                            format!("#/definitions/{definition}/properties/{custom_id}"),
                        ),
                        None => {
                            problems.push(format!("{where_}: type {kind} has no custom options"));
                            continue;
                        }
                    },
                    None => (
                        &dashboard_schema,
                        format!("#/definitions/FieldConfig/properties/{id}"),
                    ),
                };
                if schema.pointer(reference.trim_start_matches('#')).is_none() {
                    problems.push(format!("{where_}: unknown field config property"));
                    continue;
                }
                problems.extend(schema_errors(
                    schema,
                    &reference,
                    &property["value"],
                    &where_,
                ));
            }
        }
    }
    assert_no_problems("schema violations", problems);
}

/// template-datasource-rule: one Prometheus data source variable, named and labelled as expected.
#[test]
fn datasource_variable_follows_linter_rules() {
    let dashboard = load_dashboard();
    let datasources: Vec<&Value> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "datasource")
        .collect();
    assert_eq!(datasources.len(), 1, "exactly one data source variable");
    let datasource = datasources[0];
    assert_eq!(datasource["name"], "datasource");
    assert_eq!(datasource["label"], "Data source");
    assert_eq!(datasource["query"], "prometheus");
}

/// template-job/instance/label-promql/reload rules: `job` and `instance` filter by exported jobs.
#[test]
fn job_and_instance_variables_follow_linter_rules() {
    let dashboard = load_dashboard();
    let golden = read_golden_families();
    let mut problems = Vec::new();
    for (name, label) in [("job", "Job"), ("instance", "Instance")] {
        let var = variable(&dashboard, name);
        let mut expect = |field: &str, expected: Value| {
            if var[field] != expected {
                problems.push(format!(
                    "variable {name}: {field} is {}, should be {expected}",
                    var[field]
                ));
            }
        };
        expect("type", json!("query"));
        expect("label", json!(label));
        expect("datasource", datasource_ref());
        expect("multi", json!(true));
        expect("includeAll", json!(true));
        expect("allValue", json!(".+"));
        expect("refresh", json!(2));

        let query = var["query"].as_str().unwrap_or_default();
        let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
        else {
            problems.push(format!(
                "variable {name}: {query:?} is not label_values(...)"
            ));
            continue;
        };
        let Some((selector, label_name)) = args.rsplit_once(',') else {
            problems.push(format!("variable {name}: {query:?} names no label"));
            continue;
        };
        if label_name.trim() != name {
            problems.push(format!("variable {name}: lists label {label_name:?}"));
        }
        match parse_promql(selector) {
            Ok(expr) => {
                for vs in vector_selectors(&expr) {
                    let metric = selector_metric_name(vs).unwrap_or_default();
                    if family_of(&metric, &golden).is_none() {
                        problems.push(format!(
                            "variable {name}: {metric:?} is not an exported metric"
                        ));
                    }
                }
            }
            Err(err) => problems.push(format!("variable {name}: {err}")),
        }
    }
    let instance_query = variable(&dashboard, "instance")["query"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !instance_query.contains(r#"job=~"$job""#) {
        problems.push("the instance list must follow the chosen job".to_string());
    }
    assert_no_problems("variable problems", problems);
}

/// panel-datasource and panel-no-targets rules: every panel and target queries `${datasource}`.
#[test]
fn every_panel_and_target_uses_the_datasource_variable() {
    let dashboard = load_dashboard();
    let mut problems = Vec::new();
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        if panel["datasource"] != datasource_ref() {
            problems.push(format!(
                "{}: datasource {} is not the variable",
                title(panel),
                panel["datasource"]
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{}: no targets", title(panel)));
        }
        for target in targets {
            if target["datasource"] != datasource_ref() {
                problems.push(format!(
                    "{} target {}: datasource {} is not the variable",
                    title(panel),
                    target["refId"],
                    target["datasource"]
                ));
            }
        }
    }
    assert_no_problems("panels not using ${datasource}", problems);
}

/// panel-title-description and panel-units rules: each panel says what, what to do, in which unit.
#[test]
fn every_panel_has_title_description_and_unit() {
    let dashboard = load_dashboard();
    let units = grafana_units();
    let mut problems = Vec::new();
    for panel in all_panels(&dashboard) {
        let name = title(panel);
        if panel["title"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            problems.push(format!("{name}: no title"));
        }
        if is_row(panel) {
            continue;
        }
        // A description that helps on call says what the panel shows and what to do.
        let description = panel["description"].as_str().unwrap_or_default();
        if description.split_whitespace().count() < 12 {
            problems.push(format!("{name}: description too short: {description:?}"));
        }
        let defaults = &panel["fieldConfig"]["defaults"];
        let has_mappings = defaults["mappings"]
            .as_array()
            .is_some_and(|m| !m.is_empty());
        match defaults["unit"].as_str() {
            Some(unit) if units.contains(unit) => {}
            Some(unit) => problems.push(format!("{name}: unknown unit {unit:?}")),
            None if has_mappings => {}
            None => problems.push(format!("{name}: neither a unit nor value mappings")),
        }
        for override_ in panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for property in override_["properties"].as_array().into_iter().flatten() {
                if property["id"] == "unit" {
                    let unit = property["value"].as_str().unwrap_or_default();
                    if !units.contains(unit) {
                        problems.push(format!("{name}: override with unknown unit {unit:?}"));
                    }
                }
            }
        }
    }
    assert_no_problems("panels lacking title, description or unit", problems);
}

/// target-promql/job/instance rules: valid PromQL, every selector filters `$job` and `$instance`.
#[test]
fn every_query_is_promql_that_filters_job_and_instance() {
    let dashboard = load_dashboard();
    let mut problems = Vec::new();
    let queries = parsed_queries(&dashboard);
    assert!(queries.len() >= 20, "the dashboard lost its queries");
    for (query, parsed) in &queries {
        let expr = match parsed {
            Ok(expr) => expr,
            Err(err) => {
                problems.push(format!("{query}: {err}"));
                continue;
            }
        };
        for selector in vector_selectors(expr) {
            for (label, value) in [("job", "$job"), ("instance", "$instance")] {
                let filtered =
                    selector.matchers.matchers.iter().any(|m| {
                        m.name == label && matches!(m.op, MatchOp::Re(_)) && m.value == value
                    });
                if !filtered {
                    problems.push(format!(
                        "{query}: selector {selector} lacks {label}=~\"{value}\""
                    ));
                }
            }
        }
    }
    assert_no_problems("queries breaking the linter's PromQL rules", problems);
}

/// target-rate-interval and counter-agg rules: rates use `$__rate_interval`, counters are rated.
#[test]
fn every_rate_uses_rate_interval_and_every_counter_is_rated() {
    let dashboard = load_dashboard();
    let golden = read_golden_families();
    let is_counter = |name: &str| {
        name.ends_with("_total")
            || family_of(name, &golden).is_some_and(|family| golden[family] == "counter")
    };
    let mut problems = Vec::new();
    let mut rates = 0;
    for (query, parsed) in parsed_queries(&dashboard) {
        let Ok(expr) = parsed else { continue };
        walk(&expr, &mut Vec::new(), &mut |node, parents| {
            let parent_call = parents.last().and_then(|p| match p {
                Expr::Call(call) => Some(call.func.name),
                _ => None,
            });
            match node {
                Expr::MatrixSelector(ms) => {
                    if matches!(parent_call, Some("rate" | "irate")) {
                        rates += 1;
                        if ms.range != Duration::from_secs(RATE_INTERVAL_STANDIN) {
                            problems.push(format!("{query}: {ms} should use [$__rate_interval]"));
                        }
                    }
                    let name = selector_metric_name(&ms.vs).unwrap_or_default();
                    if is_counter(&name)
                        && !matches!(parent_call, Some("rate" | "irate" | "increase"))
                    {
                        problems.push(format!(
                            "{query}: counter {name} is read without rate, irate or increase"
                        ));
                    }
                }
                Expr::VectorSelector(vs) => {
                    let name = selector_metric_name(vs).unwrap_or_default();
                    if is_counter(&name) {
                        problems.push(format!(
                            "{query}: counter {name} is read without rate, irate or increase"
                        ));
                    }
                }
                _ => {}
            }
        });
    }
    assert!(rates > 0, "the dashboard lost its rates");
    assert_no_problems("rates and counters", problems);
}

/// Every query uses only Grafana variables the dashboard defines or Grafana provides.
#[test]
fn every_query_uses_only_known_variables() {
    let dashboard = load_dashboard();
    let mut known: Vec<String> = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    known.extend(BUILTIN_VARIABLES.iter().map(|v| v.to_string()));
    let values: Vec<(&str, &str)> = known.iter().map(|name| (name.as_str(), "")).collect();
    let mut problems = Vec::new();
    for query in panel_queries(&dashboard) {
        let substituted = substitute_variables(&query.expr, &values);
        if let Some(variable) = dashboard_support::leftover_variable(&substituted) {
            problems.push(format!("{}: unknown variable {variable}", query.describe()));
        }
    }
    assert_no_problems("unknown variables", problems);
}

/// Panel ids are unique and panels stay inside the grid without overlaps, collapsed row included.
#[test]
fn panel_ids_are_unique_and_the_grid_has_no_overlaps() {
    let dashboard = load_dashboard();
    let mut problems = Vec::new();

    let mut ids = BTreeSet::new();
    for panel in all_panels(&dashboard) {
        match panel["id"].as_i64() {
            Some(id) if ids.insert(id) => {}
            Some(id) => problems.push(format!("{}: id {id} used twice", title(panel))),
            None => problems.push(format!("{}: no id", title(panel))),
        }
    }

    let top_level: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    problems.extend(grid_problems(&top_level));
    for row in top_level.iter().filter(|p| is_row(p)) {
        let nested: Vec<&Value> = row["panels"].as_array().into_iter().flatten().collect();
        if row["collapsed"] != true {
            // An expanded row's panels live at the top level, after it.
            if !nested.is_empty() {
                problems.push(format!("{}: expanded row holds panels", title(row)));
            }
            continue;
        }
        problems.extend(grid_problems(&nested));
        let row_y = row["gridPos"]["y"].as_i64().unwrap_or(0);
        for panel in nested {
            if panel["gridPos"]["y"].as_i64().unwrap_or(0) <= row_y {
                problems.push(format!("{}: placed above its collapsed row", title(panel)));
            }
        }
    }
    for row in top_level.iter().filter(|p| is_row(p)) {
        let pos = &row["gridPos"];
        if pos["x"] != 0 || pos["w"] != GRID_COLUMNS {
            problems.push(format!("{}: a row spans the whole width", title(row)));
        }
    }
    assert_no_problems("layout problems", problems);
}

/// Grid bounds of each panel and overlaps between any two of them.
fn grid_problems(panels: &[&Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut placed: Vec<(&Value, [i64; 4])> = Vec::new();
    for panel in panels {
        let pos = &panel["gridPos"];
        let field = |name: &str| pos[name].as_i64();
        let (Some(x), Some(y), Some(w), Some(h)) = (field("x"), field("y"), field("w"), field("h"))
        else {
            problems.push(format!("{}: incomplete gridPos {pos}", title(panel)));
            continue;
        };
        if x < 0 || y < 0 || w < 1 || h < 1 || x + w > GRID_COLUMNS {
            problems.push(format!("{}: gridPos {pos} leaves the grid", title(panel)));
        }
        for (other, [ox, oy, ow, oh]) in &placed {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                problems.push(format!("{} overlaps {}", title(panel), title(other)));
            }
        }
        placed.push((panel, [x, y, w, h]));
    }
    problems
}

/// Every metric a panel queries is in the golden exposition, and every dingtalk family is shown.
#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let dashboard = load_dashboard();
    let golden = read_golden_families();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (query, parsed) in parsed_queries(&dashboard) {
        let Ok(expr) = parsed else {
            problems.push(format!("{query}: does not parse"));
            continue;
        };
        for selector in vector_selectors(&expr) {
            match selector_metric_name(selector) {
                Some(name) if SYNTHETIC_SERIES.contains(&name.as_str()) => {}
                Some(name) => match family_of(&name, &golden) {
                    Some(family) => {
                        used.insert(family.to_string());
                    }
                    None => problems.push(format!("{query}: {name} is not exported")),
                },
                None => problems.push(format!("{query}: selector {selector} names no metric")),
            }
        }
    }
    assert_no_problems("metrics the exporter does not expose", problems);
    // The on-call view covers every task and API family, not just a few of them.
    let unused: Vec<&String> = golden
        .keys()
        .filter(|family| family.starts_with("dingtalk_") && !used.contains(*family))
        .collect();
    assert!(unused.is_empty(), "families no panel shows: {unused:?}");
}

/// Families the exporter exposes beyond interface.md's table, each documented in the
/// README's metric table.
const BEYOND_CONTRACT: &[&str] = &[
    // whether a change of the --web.config.file was put in force (a rewrite that would
    // weaken authentication is refused while running)
    "dingtalk_web_config_last_reload_successful",
    // the lease's renewals and losses of a replica on a shared database
    "dingtalk_ha_lease_losses_total",
    "dingtalk_ha_lease_renewals_total",
    // what each ended task cost of the monthly quota (calls per finished task)
    "dingtalk_task_calls",
    // the latency of calls relayed by the tracking proxy (interface.md names the proxy's
    // other metrics and leaves this one's name to the exporter)
    "dingtalk_proxy_request_duration_seconds",
];

/// The golden expositions (of one exporter, and what a replica on a shared database adds)
/// list the same `dingtalk_*` metrics and types as interface.md, plus those of
/// [`BEYOND_CONTRACT`].
#[test]
fn golden_metric_families_match_the_interface_contract() {
    let path = shared_path("interface.md");
    let contract = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let documented: BTreeMap<String, String> = contract
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.next()?;
            (name.starts_with("dingtalk_") && !kind.is_empty())
                .then(|| (name.to_string(), kind.to_string()))
        })
        .collect();
    let mut exported: BTreeMap<String, String> = read_golden_families()
        .into_iter()
        .chain(read_replica_golden_families())
        .filter(|(name, _)| name.starts_with("dingtalk_"))
        .collect();
    for family in BEYOND_CONTRACT {
        assert!(
            !documented.contains_key(*family),
            "{family} is in interface.md now: take it off BEYOND_CONTRACT"
        );
        assert!(
            exported.remove(*family).is_some(),
            "{family} is not in the golden file"
        );
    }
    assert!(
        documented.len() >= 20,
        "could not read interface.md's metric table"
    );
    assert_eq!(exported, documented);
}

/// Field overrides name fields the panel really produces (after renames), so they apply.
#[test]
fn field_overrides_match_the_fields_they_style() {
    let dashboard = load_dashboard();
    let mut problems = Vec::new();
    for panel in all_panels(&dashboard).into_iter().filter(|p| !is_row(p)) {
        let mut names: HashSet<String> = HashSet::new();
        for transformation in panel["transformations"].as_array().into_iter().flatten() {
            for renamed in transformation["options"]["renameByName"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                names.extend(renamed.as_str().map(str::to_string));
            }
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            names.extend(target["legendFormat"].as_str().map(str::to_string));
        }
        for override_ in panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let matcher = &override_["matcher"];
            if matcher["id"] != "byName" {
                problems.push(format!(
                    "{}: matcher {} is not byName",
                    title(panel),
                    matcher
                ));
                continue;
            }
            let name = matcher["options"].as_str().unwrap_or_default();
            if !names.contains(name) {
                problems.push(format!(
                    "{}: override for {name:?}, a field the panel does not produce",
                    title(panel)
                ));
            }
        }
    }
    assert_no_problems("dangling overrides", problems);
}

/// The dashboard's links to the README land on a heading that exists.
#[test]
fn dashboard_links_point_at_readme_sections() {
    let dashboard = load_dashboard();
    let anchors = readme_anchors();
    let links: Vec<&str> = dashboard["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|link| link["url"].as_str())
        .filter(|url| url.contains("/README.md#"))
        .collect();
    assert!(!links.is_empty(), "the dashboard lost its runbook link");
    for url in links {
        let (_, anchor) = url.rsplit_once('#').expect("an anchor");
        assert!(anchors.contains(anchor), "{url}: no such README heading");
    }
}
