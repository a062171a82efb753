//! Bodies of `POST /api/v1/tasks` from anyone who can reach the exporter: no bytes make the
//! parser panic, what it accepts obeys the API's input rules, and accepted registrations
//! written back as JSON parse to the same registrations.
#![no_main]

use std::collections::HashSet;

use dingtalk_exporter::http::registration::{MAX_NAME_CHARS, parse_registrations};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// A refusal is one short line whatever was sent: it is echoed to the client.
const REFUSAL_LIMIT: usize = 1024;

fuzz_target!(|body: &[u8]| {
    let parsed = match parse_registrations(body) {
        Ok(parsed) => parsed,
        Err(refusal) => {
            assert!(
                refusal.message().len() <= REFUSAL_LIMIT,
                "a refusal of {} bytes",
                refusal.message().len()
            );
            return;
        }
    };
    let batch = parsed.is_batch();
    let tasks = parsed.into_tasks();
    assert!(!tasks.is_empty(), "an empty registration was accepted");
    let mut keys = HashSet::new();
    for task in &tasks {
        assert!(task.key.agent_id >= 1 && task.key.task_id >= 1, "{task:?}");
        assert!(task.name.chars().count() <= MAX_NAME_CHARS, "{task:?}");
        assert!(!task.name.chars().any(char::is_control), "{task:?}");
        assert!(
            keys.insert(task.key),
            "{:?} accepted twice in one batch",
            task.key
        );
    }

    let items: Vec<Value> = tasks
        .iter()
        .map(|task| json!({"agent_id": task.key.agent_id, "task_id": task.key.task_id, "name": task.name}))
        .collect();
    let rewritten = if batch {
        Value::Array(items)
    } else {
        items[0].clone()
    };
    let again = parse_registrations(rewritten.to_string().as_bytes())
        .unwrap_or_else(|refusal| panic!("accepted tasks refused when written back: {refusal}"));
    assert_eq!(again.is_batch(), batch);
    assert_eq!(again.into_tasks(), tasks);
});
