//! A strict reader of Prometheus text format 0.0.4, to check the exporter's output without
//! promtool: syntax, escaping, HELP/TYPE once per family before its samples, each family's
//! lines together, no duplicate series, no timestamps.

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → (HELP text, TYPE).
    pub families: HashMap<String, (Option<String>, Option<String>)>,
}

impl Exposition {
    /// Samples of metric `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|sample| {
                sample.name == name
                    && labels.iter().all(|(label, value)| {
                        sample.labels.get(*label).map(String::as_str) == Some(*value)
                    })
            })
            .collect()
    }

    /// The value of the one sample matching, panicking when there is not exactly one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "expected one {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// The family a sample belongs to, given the declared types.
fn family_of<'a>(
    name: &'a str,
    types: &HashMap<String, (Option<String>, Option<String>)>,
) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some((_, Some(kind))) = types.get(base)
            && (kind == "histogram" || kind == "summary")
        {
            return base;
        }
    }
    name
}

/// Parses `{a="x",b="y"} rest` and returns the labels and what follows the brace.
fn parse_labels(text: &str, line: usize) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').expect("called at a brace");
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest
            .find('=')
            .ok_or(format!("line {line}: label without '='"))?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("line {line}: bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or(format!("line {line}: label value of {name} not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (at, ch) = chars
                .next()
                .ok_or(format!("line {line}: unterminated label value"))?;
            match ch {
                '"' => break at,
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => {
                        return Err(format!("line {line}: bad escape {other:?} in label {name}"));
                    }
                },
                '\n' => return Err(format!("line {line}: raw newline in label {name}")),
                other => value.push(other),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("line {line}: label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!(
                "line {line}: expected ',' or '}}' after label {name}"
            ));
        }
    }
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".to_string());
    }
    let mut exposition = Exposition::default();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    let mut sampled: HashSet<String> = HashSet::new();

    let mut enter =
        |family: &str, current: &mut Option<String>, line: usize| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if finished.contains(family) {
                    return Err(format!(
                        "line {line}: family {family} appears in two places"
                    ));
                }
                if let Some(previous) = current.take() {
                    finished.insert(previous);
                }
                *current = Some(family.to_string());
            }
            Ok(())
        };

    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = words
                .next()
                .ok_or(format!("line {number}: {keyword} without a name"))?;
            if !is_metric_name(name) {
                return Err(format!("line {number}: bad metric name {name:?}"));
            }
            let rest = words.next().unwrap_or_default().to_string();
            enter(name, &mut current, number)?;
            if sampled.contains(name) {
                return Err(format!(
                    "line {number}: {keyword} of {name} after its samples"
                ));
            }
            let entry = exposition.families.entry(name.to_string()).or_default();
            if keyword == "HELP" {
                if entry.0.replace(rest).is_some() {
                    return Err(format!("line {number}: second HELP for {name}"));
                }
            } else {
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest.as_str())
                {
                    return Err(format!("line {number}: bad TYPE {rest:?} for {name}"));
                }
                if entry.1.replace(rest).is_some() {
                    return Err(format!("line {number}: second TYPE for {name}"));
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("line {number}: no value"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("line {number}: bad metric name {name:?}"));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..], number)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or(format!("line {number}: no space before the value"))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or_default();
        let value =
            parse_value(value_text).ok_or(format!("line {number}: bad value {value_text:?}"))?;
        if fields.next().is_some() {
            return Err(format!(
                "line {number}: a timestamp or trailing text after the value"
            ));
        }
        let family = family_of(name, &exposition.families).to_string();
        enter(&family, &mut current, number)?;
        sampled.insert(family);
        if !series.insert((name.to_string(), labels.clone())) {
            return Err(format!("line {number}: duplicate series {name}{labels:?}"));
        }
        exposition.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(exposition)
}
