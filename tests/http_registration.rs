//! Property tests of registration parsing: hostile bytes never panic, valid bodies round-trip.

use dingtalk_exporter::config::invisible_char;
use dingtalk_exporter::http::registration::{MAX_NAME_CHARS, Registrations, parse_registrations};
use dingtalk_exporter::tracker::{NewTask, TaskKey};
use proptest::prelude::*;

fn valid_name() -> impl Strategy<Value = String> {
    // Printable text of any script, up to the limit: every Unicode range but the control
    // characters (U+0000..U+001F, U+007F..U+009F), the surrogates and the invisible
    // characters names may not hold (bidirectional controls, zero-width characters).
    let printable = prop_oneof![
        proptest::char::range(' ', '~'),
        proptest::char::range('\u{a0}', '\u{d7ff}'),
        proptest::char::range('\u{e000}', '\u{10ffff}'),
    ]
    .prop_filter("visible", |c| invisible_char(&c.to_string()).is_none());
    proptest::collection::vec(printable, 0..=MAX_NAME_CHARS)
        .prop_map(|chars| chars.into_iter().collect())
}

fn valid_task() -> impl Strategy<Value = NewTask> {
    (1..=i64::MAX, 1..=i64::MAX, valid_name()).prop_map(|(agent_id, task_id, name)| NewTask {
        key: TaskKey { agent_id, task_id },
        name,
        recipients: None,
        source: dingtalk_exporter::tracker::TaskSource::Api,
    })
}

fn as_json(task: &NewTask, ids_as_strings: bool) -> serde_json::Value {
    if ids_as_strings {
        serde_json::json!({
            "agent_id": task.key.agent_id.to_string(),
            "task_id": task.key.task_id.to_string(),
            "name": task.name,
        })
    } else {
        serde_json::json!({"agent_id": task.key.agent_id, "task_id": task.key.task_id, "name": task.name})
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Failing inputs are printed in full; nothing to persist next to an integration test.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_registrations(&body);
    }

    /// Arbitrary JSON-ish text (brackets, quotes, digits, field names) never panics, and any
    /// accepted body holds only ids in range and names within the rules.
    #[test]
    fn json_like_text_never_panics(body in r#"[\[\]{}",:0-9a-z_ \-.eE\\]{0,200}"#) {
        if let Ok(parsed) = parse_registrations(body.as_bytes()) {
            for task in parsed.into_tasks() {
                prop_assert!(task.key.agent_id >= 1 && task.key.task_id >= 1);
                prop_assert!(task.name.chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!task.name.chars().any(char::is_control));
                prop_assert!(invisible_char(&task.name).is_none());
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A valid task written as JSON (ids as numbers or strings) parses back to itself.
    #[test]
    fn one_valid_task_round_trips(task in valid_task(), ids_as_strings in any::<bool>()) {
        let body = as_json(&task, ids_as_strings).to_string();
        prop_assert_eq!(parse_registrations(body.as_bytes()), Ok(Registrations::One(task)));
    }

    /// A batch of distinct valid tasks parses back to the same tasks in the same order.
    #[test]
    fn valid_batches_round_trip(tasks in proptest::collection::vec(valid_task(), 1..8)) {
        let mut seen = std::collections::HashSet::new();
        let tasks: Vec<NewTask> = tasks.into_iter().filter(|task| seen.insert(task.key)).collect();
        let body = serde_json::Value::Array(tasks.iter().map(|task| as_json(task, false)).collect()).to_string();
        prop_assert_eq!(parse_registrations(body.as_bytes()), Ok(Registrations::Batch(tasks)));
    }
}
