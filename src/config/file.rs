//! The YAML config file as written, before merging with the flags and validating.
//!
//! Fields a user must give are still `Option`s here, so that a missing one is reported with
//! every other problem instead of aborting the parse. Unknown keys are collected (with their
//! path) rather than refused by serde, for the same reason: one run of `--config.check` names
//! every misspelt key at once.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::duration::PromDuration;
use crate::secret::Secret;

use super::{LogFormat, LogLevel};

/// The file's top level. Every section may be left out.
#[derive(Debug, Default, Deserialize)]
pub(super) struct FileConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub web: WebSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dingtalk: DingTalkSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage: StorageSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ha: HaSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub poll: PollSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub task: TaskSection,
    /// `--tasks.max`; its dotted name's section, `tasks`, is the list of static tasks.
    pub tasks_max: Option<usize>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub log: LogSection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub proxy: ProxySection,
    #[serde(default, deserialize_with = "null_as_default")]
    pub apps: Vec<AppEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tasks: Vec<TaskEntry>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WebSection {
    pub listen_address: Option<String>,
    pub telemetry_path: Option<String>,
    pub config_file: Option<PathBuf>,
    pub api_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct DingTalkSection {
    pub api_url: Option<String>,
    pub app_key: Option<String>,
    pub app_secret_file: Option<PathBuf>,
    pub max_qps: Option<u32>,
    pub monthly_call_budget: Option<u64>,
    pub timeout: Option<FileDuration>,
    pub openapi_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct StorageSection {
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct HaSection {
    pub lease_duration: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct PollSection {
    pub min_interval: Option<FileDuration>,
    pub max_interval: Option<FileDuration>,
    pub stall_after: Option<FileDuration>,
    pub stalled_interval: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TaskSection {
    pub max_age: Option<FileDuration>,
    pub retention: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ProxySection {
    pub listen_address: Option<String>,
    pub upstream_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct LogSection {
    pub level: Option<LogLevel>,
    pub format: Option<LogFormat>,
}

/// One entry of `apps`.
#[derive(Debug, Deserialize)]
pub(super) struct AppEntry {
    pub name: Option<String>,
    pub agent_id: Option<RawId>,
    pub app_key: Option<String>,
    pub app_secret_file: Option<PathBuf>,
    pub app_secret: Option<Secret>,
    pub api_url: Option<String>,
    /// `internal` (the default) or `third_party`.
    pub kind: Option<String>,
    pub token_api: Option<String>,
    /// An internal app's own corp, for `token_api: unified`.
    pub corp_id: Option<String>,
    pub suite_key: Option<String>,
    pub suite_secret_file: Option<PathBuf>,
    pub suite_secret: Option<Secret>,
    pub suite_ticket_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub corps: Vec<CorpEntry>,
}

/// One entry of a third-party app's `corps`.
#[derive(Debug, Deserialize)]
pub(super) struct CorpEntry {
    pub corp_id: Option<String>,
    pub name: Option<String>,
    pub agent_id: Option<RawId>,
    pub monthly_call_budget: Option<u64>,
}

/// One entry of `tasks`.
#[derive(Debug, Deserialize)]
pub(super) struct TaskEntry {
    pub agent_id: Option<RawId>,
    pub task_id: Option<RawId>,
    pub name: Option<String>,
}

/// An `agent_id` or `task_id` as written: a YAML integer or a decimal string, like the task
/// API accepts. A number outside `i64` is kept as text so that it is reported together with
/// every other problem.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RawId {
    Number(i64),
    OutOfRange(String),
}

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;

        impl Visitor<'_> for IdVisitor {
            type Value = RawId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer from 1 to 2^63-1")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawId, E> {
                Ok(RawId::Number(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawId, E> {
                Ok(i64::try_from(value)
                    .map(RawId::Number)
                    .unwrap_or_else(|_| RawId::OutOfRange(value.to_string())))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawId, E> {
                match text.parse::<i64>() {
                    Ok(value) => Ok(RawId::Number(value)),
                    Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                        Ok(RawId::OutOfRange(text.to_string()))
                    }
                    Err(_) => Err(E::invalid_value(de::Unexpected::Str(text), &self)),
                }
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// A duration in the file. Parsed inside the visitor (not after reading a string, as
/// [`PromDuration`]'s own `Deserialize` does) so that an error carries the key's full path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct FileDuration(pub PromDuration);

impl<'de> Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = FileDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 5s, 1m, 1h30m or 1d")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<FileDuration, E> {
                text.parse().map(FileDuration).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A section or list written with no value (`apps:` alone on its line) is an empty one.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Parses the file's text. A value that cannot be read (a bad duration, a word where a
/// number belongs) is left out and reported, and the rest is read on, so one
/// `--config.check` shows every problem. `Err` when the file is not YAML at all.
pub(super) fn parse(text: &str) -> Result<ParsedFile, Vec<String>> {
    let mut problems = Vec::new();
    let mut document: Option<serde_yaml_ng::Value> = None;
    // Each round finds the first unreadable value, sets it aside and reads the rest again;
    // bounded, so a hostile file cannot keep it busy.
    for _ in 0..MAX_VALUE_PROBLEMS {
        let attempt = match &document {
            None => parse_once(text),
            Some(value) => match serde_yaml_ng::to_string(value) {
                Ok(rest) => parse_once(&rest),
                Err(err) => return Err(vec![err.to_string()]),
            },
        };
        let message = match attempt {
            Ok((file, unknown_keys)) => {
                return Ok(ParsedFile {
                    file,
                    unknown_keys,
                    unreadable: problems,
                });
            }
            Err(message) => message,
        };
        let Some(path) = problem_path(&message) else {
            problems.push(message);
            return Err(problems);
        };
        // Lines and columns are only true of the file itself, not of a rewritten rest.
        problems.push(if document.is_none() {
            message
        } else {
            strip_location(&message)
        });
        let value = match document.take() {
            Some(value) => value,
            None => match serde_yaml_ng::from_str(text) {
                Ok(value) => value,
                Err(_) => return Err(problems),
            },
        };
        match without_path(value, &path) {
            Some(rest) => document = Some(rest),
            None => return Err(problems),
        }
    }
    Err(problems)
}

/// A parsed file: what could be read, the keys the schema does not know (as
/// `apps[1].secret`), and a problem for each value that could not be read and was left out.
pub(super) struct ParsedFile {
    pub(super) file: FileConfig,
    pub(super) unknown_keys: Vec<String>,
    pub(super) unreadable: Vec<String>,
}

/// At most this many unreadable values are reported in one check.
const MAX_VALUE_PROBLEMS: usize = 50;

fn parse_once(text: &str) -> Result<(FileConfig, Vec<String>), String> {
    let mut unknown_keys = Vec::new();
    // An empty file, or one of comments only, is a file that sets nothing.
    let parsed: Option<FileConfig> =
        serde_ignored::deserialize(serde_yaml_ng::Deserializer::from_str(text), |path| {
            unknown_keys.push(format_path(&path))
        })
        .map_err(|err| err.to_string())?;
    Ok((parsed.unwrap_or_default(), unknown_keys))
}

/// The key an error message starts with (`poll.min_interval: invalid duration ...`).
fn problem_path(message: &str) -> Option<Vec<PathStep>> {
    let (path, _) = message.split_once(": ")?;
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, indices) = match part.split_once('[') {
            Some((key, rest)) => (key, Some(rest)),
            None => (part, None),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return None;
        }
        steps.push(PathStep::Key(key.to_string()));
        if let Some(indices) = indices {
            for index in indices.split('[') {
                let index = index.strip_suffix(']')?.parse().ok()?;
                steps.push(PathStep::Index(index));
            }
        }
    }
    Some(steps)
}

enum PathStep {
    Key(String),
    Index(usize),
}

/// `value` without the entry at `path`; `None` when there is no such entry.
fn without_path(
    mut value: serde_yaml_ng::Value,
    path: &[PathStep],
) -> Option<serde_yaml_ng::Value> {
    let (last, parents) = path.split_last()?;
    let mut here = &mut value;
    for step in parents {
        here = match step {
            PathStep::Key(key) => here.get_mut(key.as_str())?,
            PathStep::Index(index) => here.get_mut(*index)?,
        };
    }
    match last {
        PathStep::Key(key) => {
            here.as_mapping_mut()?.remove(key.as_str())?;
        }
        // An unreadable item of a list is left out whole; its siblings keep their places
        // only for this check, which reports and never uses the result.
        PathStep::Index(index) => {
            let items = here.as_sequence_mut()?;
            if *index >= items.len() {
                return None;
            }
            items.remove(*index);
        }
    }
    Some(value)
}

/// A message without its trailing ` at line L column C`.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// `apps[1].secret`, the way the rest of the error messages name keys.
fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        Path::Map { parent, key } => {
            let parent = format_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Misspelt keys are found at every depth and named by their full path.
    #[test]
    fn unknown_keys_are_named_by_path() {
        let unknown = parse(
            "web:\n  listen_adress: ':1'\napps:\n  - name: a\n    secret: x\n  - name: b\n    agentid: 1\nfoo: 1\n",
        )
        .unwrap()
        .unknown_keys;
        assert_eq!(
            unknown,
            [
                "web.listen_adress",
                "apps[0].secret",
                "apps[1].agentid",
                "foo"
            ]
        );
    }

    /// An empty file and empty sections set nothing instead of failing.
    #[test]
    fn empty_file_and_sections_are_empty() {
        for text in ["", "# only a comment\n", "apps:\ntasks:\nweb:\n"] {
            let parsed = parse(text).unwrap();
            assert!(
                parsed.file.apps.is_empty() && parsed.file.tasks.is_empty(),
                "{text:?}"
            );
            assert!(parsed.unknown_keys.is_empty() && parsed.unreadable.is_empty());
        }
    }

    /// Ids are accepted as YAML integers and as decimal strings; out-of-range ones are kept
    /// for the validator to report.
    #[test]
    fn ids_accept_numbers_and_decimal_strings() {
        let file = parse(
            "tasks:\n  - {agent_id: 1, task_id: '2'}\n  - {agent_id: 9223372036854775808, task_id: -1}\n",
        )
        .unwrap()
        .file;
        assert_eq!(file.tasks[0].agent_id, Some(RawId::Number(1)));
        assert_eq!(file.tasks[0].task_id, Some(RawId::Number(2)));
        assert_eq!(
            file.tasks[1].agent_id,
            Some(RawId::OutOfRange("9223372036854775808".into()))
        );
        assert_eq!(file.tasks[1].task_id, Some(RawId::Number(-1)));
        let err = unreadable("tasks:\n  - {agent_id: abc}\n");
        assert!(err.contains("tasks[0].agent_id"), "{err}");
    }

    /// A malformed duration is reported with its key, its line and the accepted forms.
    #[test]
    fn bad_duration_names_key_and_line() {
        let err = unreadable("poll:\n  min_interval: 5 seconds\n");
        assert!(err.contains("poll.min_interval"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("like 500ms"), "{err}");
        let err = unreadable("log:\n  level: verbose\n");
        assert!(err.contains("log.level"), "{err}");
        let err = unreadable("dingtalk:\n  max_qps: many\n");
        assert!(err.contains("dingtalk.max_qps"), "{err}");
    }

    /// The unreadable values of a file, one per line.
    fn unreadable(text: &str) -> String {
        parse(text).map_or_else(|err| err.join("\n"), |parsed| parsed.unreadable.join("\n"))
    }

    /// Every unreadable value is reported in one pass, and the readable rest is kept.
    #[test]
    fn every_unreadable_value_is_reported_at_once() {
        let parsed = parse(
            "poll:\n  min_interval: 5x\n  max_interval: 2m\ntask:\n  max_age: banana\n  retention: soon\ndingtalk:\n  max_qps: many\n  timeout: 3s\n",
        )
        .unwrap();
        assert_eq!(parsed.unreadable.len(), 4, "{:?}", parsed.unreadable);
        for key in [
            "poll.min_interval",
            "task.max_age",
            "task.retention",
            "dingtalk.max_qps",
        ] {
            assert!(
                parsed
                    .unreadable
                    .iter()
                    .any(|problem| problem.starts_with(key)),
                "{key}: {:?}",
                parsed.unreadable
            );
        }
        assert_eq!(
            parsed.file.poll.max_interval.map(|d| d.0.0),
            Some(std::time::Duration::from_secs(120))
        );
        assert!(parsed.unreadable[0].contains("line 2"));
    }
}
