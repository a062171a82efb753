//! What the dashboard, alert-rule and end-to-end Prometheus tests share: the files of the
//! mixin, the queries of the dashboard, the golden list of metric families the exporter
//! exposes, and PromQL selector extraction.
//!
//! Each test crate uses its own part of this module, hence `dead_code` is allowed.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use promql_parser::parser::{Expr, VectorSelector};
use serde_json::Value;

/// Rewrites the golden file from the live exposition instead of comparing with it.
pub const UPDATE_GOLDEN_ENV: &str = "UPDATE_GOLDEN";

/// Series Prometheus creates itself for every target; they are no exporter metric.
pub const SYNTHETIC_SERIES: &[&str] = &["up"];

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn dashboard_path() -> PathBuf {
    repo_path("dashboards/dingtalk-exporter.json")
}

pub fn rules_path() -> PathBuf {
    repo_path("alerts/dingtalk-exporter.rules.yml")
}

pub fn grafana_alerts_path() -> PathBuf {
    repo_path("alerts/grafana/dingtalk-exporter.yaml")
}

/// The mixin's entry point: an object of generated file contents by repository path.
pub fn mixin_generator_path() -> PathBuf {
    repo_path("mixin/generate.jsonnet")
}

pub fn grafana_alert_schema_path() -> PathBuf {
    repo_path("tests/dashboard_support/grafana-alert-provisioning.schema.json")
}

/// The environment variable under which a missing `jsonnet` fails a test instead of
/// skipping it (CI sets it after installing Debian's `jsonnet`).
pub const REQUIRE_JSONNET_ENV: &str = "DINGTALK_EXPORTER_REQUIRE_JSONNET";

/// `jsonnet` from `PATH`; without it, `None` after a printed note, or a failure when
/// [`REQUIRE_JSONNET_ENV`] is set.
pub fn jsonnet_binary() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("jsonnet"))
            .find(|candidate| {
                candidate
                    .metadata()
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
    });
    if found.is_some() {
        return found;
    }
    if std::env::var_os(REQUIRE_JSONNET_ENV).is_some() {
        panic!(
            "`jsonnet` is not in PATH but {REQUIRE_JSONNET_ENV} requires it \
             (Debian: apt-get install jsonnet)"
        );
    }
    // Written to the process's stderr directly: the harness captures eprintln!, and a skip
    // nobody sees looks like a pass.
    let note = format!(
        "note: skipping a test, `jsonnet` is not in PATH (Debian: apt-get install jsonnet; \
         set {REQUIRE_JSONNET_ENV}=1 to make this a failure)\n"
    );
    let _ = std::io::stderr().write_all(note.as_bytes());
    None
}

/// The files the mixin generates, by repository path, with `config` (a jsonnet object)
/// overriding settings of `mixin/config.libsonnet` as a user's own jsonnet would. The texts
/// end in the newline `jsonnet -S -m` (`make mixin`) writes after each.
pub fn generate_mixin(jsonnet: &Path, config: &str) -> BTreeMap<String, String> {
    let output = Command::new(jsonnet)
        .arg("-J")
        .arg(repo_path(""))
        .arg("--tla-code")
        .arg(format!("config={config}"))
        .arg(mixin_generator_path())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", jsonnet.display()));
    assert!(
        output.status.success(),
        "jsonnet failed on the mixin:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files: BTreeMap<String, String> = serde_json::from_slice(&output.stdout)
        .expect("the mixin generates an object of file texts");
    files
        .into_iter()
        .map(|(path, text)| (path, text + "\n"))
        .collect()
}

pub fn rule_tests_dir() -> PathBuf {
    repo_path("alerts/tests")
}

pub fn golden_families_path() -> PathBuf {
    repo_path("tests/golden/metric_families.txt")
}

/// The shared contract folder, beside the clone (CI checks it out there too).
pub fn shared_path(relative: &str) -> PathBuf {
    repo_path("../shared").join(relative)
}

pub fn load_dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
}

/// Every panel, rows included, with the panels nested in collapsed rows.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn collect<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                collect(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    collect(&dashboard["panels"], &mut out);
    out
}

pub fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// One query of one panel, as written in the dashboard (variables not yet substituted).
#[derive(Clone, Debug)]
pub struct PanelQuery {
    pub panel_id: i64,
    pub panel_title: String,
    pub ref_id: String,
    pub expr: String,
}

impl PanelQuery {
    /// How a failure names the query: `panel "Tasks" (id 10) target C`.
    pub fn describe(&self) -> String {
        format!(
            "panel {:?} (id {}) target {}",
            self.panel_title, self.panel_id, self.ref_id
        )
    }
}

pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for panel in all_panels(dashboard).into_iter().filter(|p| !is_row(p)) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(PanelQuery {
                panel_id: panel["id"].as_i64().unwrap_or(-1),
                panel_title: panel["title"].as_str().unwrap_or_default().to_string(),
                ref_id: target["refId"].as_str().unwrap_or_default().to_string(),
                expr: target["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    queries
}

/// Grafana's built-in variables a query may use.
pub const BUILTIN_VARIABLES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

/// Substitutes `$name` and `${name}` the way Grafana does before sending a query. Longer
/// names go first so `$__range_s` is not read as `$__range` followed by `_s`.
pub fn substitute_variables(expr: &str, values: &[(&str, &str)]) -> String {
    let mut ordered: Vec<&(&str, &str)> = values.iter().collect();
    ordered.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_string();
    for (name, value) in ordered {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    out
}

/// Any `$variable` left in a query after substitution.
pub fn leftover_variable(expr: &str) -> Option<String> {
    let start = expr.find('$')?;
    let rest = &expr[start + 1..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '{' || c == '}'))
        .unwrap_or(rest.len());
    Some(format!("${}", &rest[..end]))
}

/// Parses PromQL, with a message that names what failed.
pub fn parse_promql(expr: &str) -> Result<Expr, String> {
    promql_parser::parser::parse(expr).map_err(|err| format!("{err} in `{expr}`"))
}

/// Every vector selector of an expression (including those inside range selectors).
pub fn vector_selectors(expr: &Expr) -> Vec<&VectorSelector> {
    let mut out = Vec::new();
    walk(expr, &mut Vec::new(), &mut |node, _| match node {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        _ => {}
    });
    out
}

/// Visits every node depth-first, passing the chain of its ancestors (outermost first).
pub fn walk<'a>(
    expr: &'a Expr,
    parents: &mut Vec<&'a Expr>,
    visit: &mut dyn FnMut(&'a Expr, &[&'a Expr]),
) {
    visit(expr, parents);
    parents.push(expr);
    match expr {
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                walk(param, parents, visit);
            }
            walk(&agg.expr, parents, visit);
        }
        Expr::Unary(unary) => walk(&unary.expr, parents, visit),
        Expr::Binary(binary) => {
            walk(&binary.lhs, parents, visit);
            walk(&binary.rhs, parents, visit);
        }
        Expr::Paren(paren) => walk(&paren.expr, parents, visit),
        Expr::Subquery(subquery) => walk(&subquery.expr, parents, visit),
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk(arg, parents, visit);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
    parents.pop();
}

/// The metric name a selector asks for, from `name{...}` or `{__name__="name"}`.
pub fn selector_metric_name(selector: &VectorSelector) -> Option<String> {
    selector.name.clone().or_else(|| {
        selector
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__")
            .map(|m| m.value.clone())
    })
}

/// The golden list of metric families: name → type (`counter`, `gauge`, `histogram`, ...).
pub fn read_golden_families() -> BTreeMap<String, String> {
    let path = golden_families_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    parse_family_list(&text)
}

/// Parses `name type` lines; `#` starts a comment line.
pub fn parse_family_list(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().expect("a name").to_string();
            let kind = fields
                .next()
                .unwrap_or_else(|| panic!("golden line without a type: {line:?}"))
                .to_string();
            (name, kind)
        })
        .collect()
}

/// The metric families of a Prometheus text exposition, from its `# TYPE` lines.
pub fn exposition_families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut fields = rest.split_whitespace();
            Some((fields.next()?.to_string(), fields.next()?.to_string()))
        })
        .collect()
}

pub fn render_family_list(families: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Metric families of dingtalk-exporter's /metrics (name and type), as the demo exposes\n\
         # them. tests/e2e_prometheus.rs compares the live exposition with this list, the\n\
         # dashboard and alert tests check every metric they use against it.\n\
         # Regenerate after a deliberate change: UPDATE_GOLDEN=1 cargo test --test e2e_prometheus\n",
    );
    for (name, kind) in families {
        out.push_str(&format!("{name} {kind}\n"));
    }
    out
}

/// The family a series name belongs to: itself, or a histogram/summary's `_bucket`, `_sum`,
/// `_count` series.
pub fn family_of<'a>(series: &str, families: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if let Some((name, _)) = families.get_key_value(series) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        let (name, kind) = families.get_key_value(base)?;
        let has_series = match *suffix {
            "_bucket" => kind == "histogram",
            _ => kind == "histogram" || kind == "summary",
        };
        has_series.then_some(name.as_str())
    })
}

/// GitHub's anchor for a Markdown heading: lowercase, spaces to dashes, punctuation dropped.
pub fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of the README's headings. The mixin's sections may still sit in the draft
/// `README.mixin.md` beside it, so both are read.
pub fn readme_anchors() -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut read_any = false;
    for file in ["README.md", "README.mixin.md"] {
        let Ok(text) = std::fs::read_to_string(repo_path(file)) else {
            continue;
        };
        read_any = true;
        for line in text.lines() {
            if let Some(heading) = line.strip_prefix('#') {
                anchors.insert(github_anchor(heading.trim_start_matches('#')));
            }
        }
    }
    assert!(read_any, "no README to hold the runbooks");
    anchors
}
