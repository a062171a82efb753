//! Parsing the body of `POST /api/v1/tasks`: a pure function from bytes to registrations, so
//! property tests and the fuzzer can drive it directly.
//!
//! The rules come from the interface contract: a single object or an array of them;
//! `agent_id` and `task_id` are integers from 1 to 2^63-1, as JSON numbers or decimal
//! strings; `name` is optional, at most [`MAX_NAME_CHARS`] characters and free of control
//! and invisible (bidirectional, zero-width) characters; no object names a key twice (JSON
//! parsers disagree on which one wins, so a body that says two things is refused); `recipients` is optional, an integer from 1 to [`MAX_RECIPIENTS`]; `source`
//! is optional, `api` (the default) or `send` (what `dingtalk-exporter send` says). Any
//! invalid item refuses the whole batch, and every refusal says which item and
//! which field is wrong and what would be accepted.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::config::check_visible;
use crate::tracker::{NewTask, TaskKey, TaskSource};

/// The longest task name accepted, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 256;

/// The fields a registration may carry.
const FIELDS: [&str; 5] = ["agent_id", "task_id", "name", "recipients", "source"];

/// The most recipients a registration may announce: far more than any organisation has,
/// few enough that an estimate built on it stays finite.
pub const MAX_RECIPIENTS: u64 = 100_000_000;

/// The sources a client may name; `config` and `proxy` are the exporter's own.
const CLIENT_SOURCES: [TaskSource; 2] = [TaskSource::Api, TaskSource::Send];

const EXAMPLE: &str = r#"{"agent_id":1,"task_id":2,"name":"optional"}"#;

/// What a valid body asked for; the answer keeps the same shape (object in, object out).
#[derive(Clone, Debug, PartialEq)]
pub enum Registrations {
    /// The body was one object.
    One(NewTask),
    /// The body was an array (never empty, no task twice).
    Batch(Vec<NewTask>),
}

impl Registrations {
    /// The requested tasks in body order.
    pub fn into_tasks(self) -> Vec<NewTask> {
        match self {
            Registrations::One(task) => vec![task],
            Registrations::Batch(tasks) => tasks,
        }
    }

    pub fn is_batch(&self) -> bool {
        matches!(self, Registrations::Batch(_))
    }
}

/// Why a registration body was refused, worded for the person who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationError(String);

impl RegistrationError {
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegistrationError {}

/// Parses and validates a registration body.
pub fn parse_registrations(body: &[u8]) -> Result<Registrations, RegistrationError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(RegistrationError(format!(
            "the body is empty; send a task as JSON, like {EXAMPLE}, or an array of them"
        )));
    }
    let document = serde_json::from_slice::<UniqueKeys>(body)
        .map_err(|err| {
            RegistrationError(format!(
                "the body is not valid JSON ({err}); send a task like {EXAMPLE}, or an array of them"
            ))
        })?
        .0;
    match document {
        Value::Object(fields) => parse_item(&fields, &Position::Single).map(Registrations::One),
        Value::Array(items) => parse_batch(&items).map(Registrations::Batch),
        other => Err(RegistrationError(format!(
            "the body is {}; send a task as a JSON object, like {EXAMPLE}, or an array of them",
            describe(&other)
        ))),
    }
}

fn parse_batch(items: &[Value]) -> Result<Vec<NewTask>, RegistrationError> {
    if items.is_empty() {
        return Err(RegistrationError(format!(
            "the array is empty; send at least one task, like [{EXAMPLE}]"
        )));
    }
    let mut tasks = Vec::with_capacity(items.len());
    let mut first_seen: HashMap<TaskKey, usize> = HashMap::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let position = Position::Item(index);
        let Value::Object(fields) = item else {
            return Err(RegistrationError(format!(
                "{position}: expected a task object like {EXAMPLE}, got {}",
                describe(item)
            )));
        };
        let task = parse_item(fields, &position)?;
        if let Some(earlier) = first_seen.insert(task.key, index) {
            return Err(RegistrationError(format!(
                "items {earlier} and {index} are the same task (agent_id {}, task_id {}); list each task once",
                task.key.agent_id, task.key.task_id
            )));
        }
        tasks.push(task);
    }
    Ok(tasks)
}

/// Where a problem is: the body's only object, or an item of an array.
enum Position {
    Single,
    Item(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Single => f.write_str("the task"),
            Position::Item(index) => write!(f, "item {index}"),
        }
    }
}

fn parse_item(
    fields: &Map<String, Value>,
    position: &Position,
) -> Result<NewTask, RegistrationError> {
    if let Some(unknown) = fields
        .keys()
        .find(|field| !FIELDS.contains(&field.as_str()))
    {
        return Err(RegistrationError(format!(
            "{position}: unknown field {}; a task has the fields agent_id, task_id, name, recipients and source",
            quoted(unknown)
        )));
    }
    let agent_id = parse_id(fields, "agent_id", position)?;
    let task_id = parse_id(fields, "task_id", position)?;
    let name = parse_name(fields.get("name"), position)?;
    let recipients = parse_recipients(fields.get("recipients"), position)?;
    let source = parse_source(fields.get("source"), position)?;
    Ok(NewTask {
        key: TaskKey { agent_id, task_id },
        name,
        recipients,
        source,
    })
}

fn parse_recipients(
    value: Option<&Value>,
    position: &Position,
) -> Result<Option<u64>, RegistrationError> {
    let refuse = |got: &Value| {
        RegistrationError(format!(
            "{position}: recipients must be the number of people the message was sent to, an integer from 1 to {MAX_RECIPIENTS} (or left out); got {}",
            describe(got)
        ))
    };
    let count = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(value @ Value::Number(number)) => number.as_u64().ok_or_else(|| refuse(value))?,
        Some(value @ Value::String(text)) => parse_decimal_id(text)
            .and_then(|count| u64::try_from(count).ok())
            .ok_or_else(|| refuse(value))?,
        Some(other) => return Err(refuse(other)),
    };
    if (1..=MAX_RECIPIENTS).contains(&count) {
        Ok(Some(count))
    } else {
        Err(refuse(value.expect("a value was read")))
    }
}

fn parse_source(
    value: Option<&Value>,
    position: &Position,
) -> Result<TaskSource, RegistrationError> {
    let refuse = |got: &Value| {
        RegistrationError(format!(
            "{position}: source must be \"api\" or \"send\" (or left out); got {}",
            describe(got)
        ))
    };
    match value {
        None | Some(Value::Null) => Ok(TaskSource::Api),
        Some(value @ Value::String(text)) => TaskSource::parse(text)
            .filter(|source| CLIENT_SOURCES.contains(source))
            .ok_or_else(|| refuse(value)),
        Some(other) => Err(refuse(other)),
    }
}

fn parse_id(
    fields: &Map<String, Value>,
    field: &str,
    position: &Position,
) -> Result<i64, RegistrationError> {
    let refuse = |got: &Value| {
        RegistrationError(format!(
            "{position}: {field} must be an integer from 1 to {}, as a JSON number or a decimal string; got {}",
            i64::MAX,
            describe(got)
        ))
    };
    match fields.get(field) {
        None => Err(RegistrationError(format!(
            "{position}: {field} is missing; a task needs agent_id and task_id, like {EXAMPLE}"
        ))),
        Some(value @ Value::Number(number)) => match number.as_i64() {
            Some(id) if id >= 1 => Ok(id),
            _ => Err(refuse(value)),
        },
        Some(value @ Value::String(text)) => parse_decimal_id(text).ok_or_else(|| refuse(value)),
        Some(other) => Err(refuse(other)),
    }
}

/// Reads an id written as decimal digits (no sign, no spaces): `Some` only for 1..=2^63-1.
/// Also used for the ids in API paths.
pub fn parse_decimal_id(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|id| *id >= 1)
}

fn parse_name(value: Option<&Value>, position: &Position) -> Result<String, RegistrationError> {
    let name = match value {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(RegistrationError(format!(
                "{position}: name must be a string (or left out); got {}",
                describe(other)
            )));
        }
    };
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(RegistrationError(format!(
            "{position}: name is {length} characters long; at most {MAX_NAME_CHARS} are accepted"
        )));
    }
    if let Some((at, control)) = name.chars().enumerate().find(|(_, ch)| ch.is_control()) {
        return Err(RegistrationError(format!(
            "{position}: name holds the control character U+{:04X} at character {at}; names are shown on dashboards and must be one line of printable text",
            u32::from(control)
        )));
    }
    if let Err(problem) = check_visible(name) {
        return Err(RegistrationError(format!("{position}: name {problem}")));
    }
    Ok(name.clone())
}

/// A JSON document read like [`Value`], except that an object naming a key twice is an
/// error (serde_json would keep the last one silently).
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        UniqueKeys::deserialize(deserializer).map(|unique| unique.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {} appears twice in one object; name each field once",
                    quoted(&key)
                )));
            }
            let UniqueKeys(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// A JSON value described for an error message, short enough to quote.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {}", quoted(text)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A user-supplied string quoted as JSON and cut short, so an error message stays one short
/// line whatever was sent.
fn quoted(text: &str) -> String {
    const SHOWN: usize = 40;
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(SHOWN).collect();
    let mut shown = serde_json::to_string(&head).unwrap_or_else(|_| "\"?\"".to_string());
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str) -> String {
        match parse_registrations(body.as_bytes()) {
            Ok(parsed) => panic!("{body:?} was accepted as {parsed:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn task(agent_id: i64, task_id: i64, name: &str) -> NewTask {
        NewTask {
            key: TaskKey { agent_id, task_id },
            name: name.to_string(),
            recipients: None,
            source: TaskSource::Api,
        }
    }

    /// A registration may say how many people the message went to and that `send` made
    /// it; anything else in those fields is refused with the accepted range.
    #[test]
    fn recipients_and_source_are_read_and_checked() {
        let parsed = parse_registrations(
            br#"{"agent_id":1,"task_id":2,"recipients":"5000","source":"send"}"#,
        )
        .unwrap()
        .into_tasks();
        assert_eq!(parsed[0].recipients, Some(5000));
        assert_eq!(parsed[0].source, TaskSource::Send);
        let plain = parse_registrations(br#"{"agent_id":1,"task_id":2,"recipients":1}"#)
            .unwrap()
            .into_tasks();
        assert_eq!(
            (plain[0].recipients, plain[0].source),
            (Some(1), TaskSource::Api)
        );
        for bad in ["0", "-3", "1.5", "\"many\"", "100000001", "true"] {
            let body = format!(r#"{{"agent_id":1,"task_id":2,"recipients":{bad}}}"#);
            let err = refusal(&body);
            assert!(err.contains("recipients must be"), "{bad}: {err}");
        }
        for bad in ["\"proxy\"", "\"config\"", "\"API\"", "1"] {
            let body = format!(r#"{{"agent_id":1,"task_id":2,"source":{bad}}}"#);
            let err = refusal(&body);
            assert!(err.contains("source must be"), "{bad}: {err}");
        }
    }

    /// A single object registers one task; numbers and decimal strings both work.
    #[test]
    fn accepts_one_task_with_numbers_or_strings() {
        assert_eq!(
            parse_registrations(br#"{"agent_id":1,"task_id":"9223372036854775807","name":"May"}"#),
            Ok(Registrations::One(task(1, i64::MAX, "May")))
        );
        assert_eq!(
            parse_registrations(br#"{"agent_id":"42","task_id":7,"name":null}"#),
            Ok(Registrations::One(task(42, 7, "")))
        );
    }

    /// An array registers each of its tasks, in order, and keeps the array shape.
    #[test]
    fn accepts_a_batch() {
        assert_eq!(
            parse_registrations(
                br#"[{"agent_id":1,"task_id":2},{"agent_id":1,"task_id":3,"name":"b"}]"#
            ),
            Ok(Registrations::Batch(vec![task(1, 2, ""), task(1, 3, "b")]))
        );
    }

    /// Each kind of bad id is refused with a message naming the field and the item.
    #[test]
    fn refuses_bad_ids_naming_field_and_item() {
        for (bad, shown) in [
            ("0", "got the number 0"),
            ("-5", "got the number -5"),
            ("9223372036854775808", "got the number 9223372036854775808"),
            ("1.5", "got the number 1.5"),
            ("1e3", "got the number 1000.0"),
            ("true", "got the boolean true"),
            ("null", "got null"),
            ("\"12a\"", "got the string \"12a\""),
            ("\"-3\"", "got the string \"-3\""),
            (
                "\"9223372036854775808\"",
                "got the string \"9223372036854775808\"",
            ),
            ("[1]", "got an array"),
        ] {
            let message = refusal(&format!(
                r#"[{{"agent_id":1,"task_id":1}},{{"agent_id":1,"task_id":{bad}}}]"#
            ));
            assert!(
                message.starts_with(
                    "item 1: task_id must be an integer from 1 to 9223372036854775807"
                ),
                "{message}"
            );
            assert!(message.ends_with(shown), "{bad}: {message}");
        }
    }

    /// Missing ids, unknown fields and wrong shapes say what a task looks like.
    #[test]
    fn refuses_wrong_shapes() {
        assert!(refusal(r#"{"task_id":1}"#).starts_with("the task: agent_id is missing"));
        assert!(
            refusal(r#"{"agent_id":1,"task_id":1,"nmae":"x"}"#).contains("unknown field \"nmae\"")
        );
        assert!(refusal(r#"[1]"#).starts_with("item 0: expected a task object"));
        assert!(refusal(r#""hello""#).starts_with("the body is the string \"hello\""));
        assert!(
            refusal(r#"{"agent_id":1,"task_id":1,"name":5}"#).contains("name must be a string")
        );
    }

    /// Invalid JSON is refused with serde's position of the problem.
    #[test]
    fn refuses_invalid_json_with_position() {
        let message = refusal("{\"agent_id\":1,\n\"task_id\":}");
        assert!(
            message.starts_with("the body is not valid JSON"),
            "{message}"
        );
        assert!(message.contains("line 2 column"), "{message}");
        assert!(refusal("  \n").starts_with("the body is empty"));
    }

    /// A key named twice in one object refuses the body, at any depth, naming the key;
    /// the same key in different objects is fine.
    #[test]
    fn refuses_duplicate_keys() {
        for body in [
            r#"{"agent_id":1,"task_id":2,"task_id":3}"#,
            r#"[{"agent_id":1,"task_id":2},{"agent_id":1,"agent_id":1,"task_id":3}]"#,
            r#"{"agent_id":1,"task_id":2,"name":"a","name":"b"}"#,
        ] {
            let message = refusal(body);
            assert!(message.contains("appears twice"), "{body}: {message}");
        }
        assert!(
            parse_registrations(br#"[{"agent_id":1,"task_id":2},{"agent_id":1,"task_id":3}]"#)
                .is_ok()
        );
    }

    /// Bidirectional controls and zero-width characters in a name are refused by code point.
    #[test]
    fn refuses_invisible_characters_in_names() {
        for (name, code) in [
            ("pay\u{202E}llorp", "U+202E"),
            ("pay\u{200B}roll", "U+200B"),
            ("\u{2066}payroll\u{2069}", "U+2066"),
            ("payroll\u{FEFF}", "U+FEFF"),
        ] {
            let body = serde_json::json!({"agent_id": 1, "task_id": 1, "name": name}).to_string();
            let message = refusal(&body);
            assert!(
                message.contains(code) && message.contains("invisible"),
                "{message}"
            );
        }
        let ok = serde_json::json!({"agent_id": 1, "task_id": 1, "name": "工资 — ✓ ü"}).to_string();
        assert!(parse_registrations(ok.as_bytes()).is_ok());
    }

    /// Names: 256 characters (not bytes) pass, 257 do not, control characters never.
    #[test]
    fn checks_name_length_in_characters_and_control_characters() {
        let longest = "é".repeat(MAX_NAME_CHARS);
        let body = serde_json::json!({"agent_id": 1, "task_id": 1, "name": longest}).to_string();
        assert!(parse_registrations(body.as_bytes()).is_ok());
        let too_long = "a".repeat(MAX_NAME_CHARS + 1);
        let body = serde_json::json!({"agent_id": 1, "task_id": 1, "name": too_long}).to_string();
        assert!(refusal(&body).contains("name is 257 characters long; at most 256"));
        for control in [
            "line\nbreak",
            "tab\there",
            "nul\u{0}",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            let body =
                serde_json::json!({"agent_id": 1, "task_id": 1, "name": control}).to_string();
            assert!(refusal(&body).contains("control character"), "{control:?}");
        }
    }

    /// An empty array and a task listed twice are refused whole.
    #[test]
    fn refuses_empty_and_duplicate_batches() {
        assert!(refusal("[]").starts_with("the array is empty"));
        let message = refusal(
            r#"[{"agent_id":1,"task_id":2},{"agent_id":3,"task_id":4},{"agent_id":"1","task_id":"2"}]"#,
        );
        assert!(
            message.starts_with("items 0 and 2 are the same task (agent_id 1, task_id 2)"),
            "{message}"
        );
    }

    /// Long user strings are cut short in messages.
    #[test]
    fn quotes_are_bounded() {
        let long = "x".repeat(10_000);
        let message = refusal(&format!(r#"{{"agent_id":"{long}","task_id":1}}"#));
        assert!(message.len() < 300, "{} bytes", message.len());
    }
}
