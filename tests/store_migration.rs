//! A store written by release 0.1.0 (schema version 1, the poller's memory as JSON text)
//! opens with this release, which converts it to columns and keeps everything else.

use dingtalk_exporter::dingtalk::RecipientCounts;
use dingtalk_exporter::tracker::sqlite::{SCHEMA_VERSION, SqliteStore};
use dingtalk_exporter::tracker::{
    PollMemory, ResultFetch, SendStatus, TaskKey, TaskSource, TaskState, TaskStore,
};
use rusqlite::Connection;

/// Release 0.1.0's schema, verbatim (its migration 1).
const RELEASE_0_1_0_SCHEMA: &str = "
    CREATE TABLE tasks (
        agent_id BIGINT NOT NULL,
        task_id BIGINT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT,
        progress_ratio DOUBLE PRECISION,
        created_at_ms BIGINT NOT NULL,
        last_poll_at_ms BIGINT,
        last_progress_change_at_ms BIGINT NOT NULL,
        last_errcode BIGINT,
        ended_at_ms BIGINT,
        next_poll_at_ms BIGINT,
        metered_calls BIGINT NOT NULL,
        recipients_read BIGINT,
        recipients_unread BIGINT,
        recipients_failed BIGINT,
        recipients_forbidden BIGINT,
        recipients_invalid BIGINT,
        result_fetch TEXT NOT NULL,
        result_errcode BIGINT,
        schedule TEXT NOT NULL,
        PRIMARY KEY (agent_id, task_id)
    );
    CREATE TABLE month_calls (
        month TEXT NOT NULL PRIMARY KEY,
        calls BIGINT NOT NULL
    );
    CREATE TABLE exporter_state (
        key TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    );
    PRAGMA user_version = 1;
";

/// Tasks as release 0.1.0 wrote them: `schedule` holds serde_json's text of its poll
/// memory (`null` before the first answer), or, in a damaged file, anything at all.
const RELEASE_0_1_0_TASKS: &str = r#"
    INSERT INTO tasks VALUES (7, 1, 'payroll', 'active', 'in_progress', 0.4, 1000, 61000,
        61000, 0, NULL, 91000, 3, NULL, NULL, NULL, NULL, NULL, 'pending', NULL,
        '{"anchor_ms":31000,"anchor_ratio":0.1,"anchored_running":true,"result_attempts":0,"last_interval_ms":30000}');
    INSERT INTO tasks VALUES (7, 2, 'just registered', 'active', NULL, NULL, 2000, NULL,
        2000, NULL, NULL, 2000, 0, NULL, NULL, NULL, NULL, NULL, 'pending', NULL, 'null');
    INSERT INTO tasks VALUES (7, 3, 'large', 'completed', 'completed', 1.0, 3000, 93000,
        93000, 0, 93000, NULL, 5, NULL, NULL, NULL, NULL, NULL, 'refused', 40035,
        '{"anchor_ms":3000,"anchor_ratio":0.0,"result_attempts":1,"last_interval_ms":5000}');
    INSERT INTO tasks VALUES (7, 4, 'read', 'completed', 'completed', 1.0, 4000, 64000,
        64000, 0, 64000, NULL, 2, 6, 1, 1, 1, 1, 'fetched', NULL,
        '{"anchor_ms":4000,"anchor_ratio":0,"anchored_running":false,"result_attempts":0,"last_interval_ms":60000}');
    INSERT INTO tasks VALUES (7, 5, 'odd memory', 'active', 'not_started', 0.0, 5000, 6000,
        5000, 0, NULL, 7000, 1, NULL, NULL, NULL, NULL, NULL, 'pending', NULL,
        '{"anchor_ms":"soon","anchor_ratio":"half","result_attempts":-1}');
    INSERT INTO tasks VALUES (7, 6, 'torn memory', 'active', NULL, NULL, 6000, NULL,
        6000, NULL, NULL, 6000, 0, NULL, NULL, NULL, NULL, NULL, 'pending', NULL, '{"anchor');
    INSERT INTO month_calls VALUES ('2026-11', 4242);
    INSERT INTO exporter_state VALUES ('quota_exhausted', '2026-10');
"#;

fn key(task_id: i64) -> TaskKey {
    TaskKey {
        agent_id: 7,
        task_id,
    }
}

/// Every task, every field and the month's count of a 0.1.0 store survive the upgrade, and
/// the poller's memory reads back from its new columns as 0.1.0 read it from JSON.
#[test]
fn a_release_0_1_0_store_opens_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dingtalk-exporter.db");
    let old = Connection::open(&path).unwrap();
    old.execute_batch(RELEASE_0_1_0_SCHEMA).unwrap();
    old.execute_batch(RELEASE_0_1_0_TASKS).unwrap();
    drop(old);

    let store = SqliteStore::open(&path).expect("a 0.1.0 store opens");
    let mut tasks = store.load_all().unwrap();
    tasks.sort_by_key(|task| task.key);
    assert_eq!(tasks.len(), 6, "no task is lost");

    let running = &tasks[0];
    assert_eq!(running.key, key(1));
    assert_eq!(running.name, "payroll");
    assert_eq!(running.state, TaskState::Active);
    assert_eq!(running.status, Some(SendStatus::InProgress));
    assert_eq!(running.progress_ratio, Some(0.4));
    assert_eq!(running.next_poll_at_ms, Some(91_000));
    assert_eq!(running.metered_calls, 3);
    assert_eq!(
        running.source,
        TaskSource::Api,
        "0.1.0 did not tell sources apart"
    );
    assert_eq!(running.recipients_expected, None);
    assert_eq!(
        running.poll_memory,
        PollMemory {
            anchor_ms: Some(31_000),
            anchor_ratio: 0.1,
            anchored_running: true,
            result_attempts: 0,
            last_interval_ms: 30_000,
            started_at_ms: None,
            first_poll_placed: false,
        }
    );

    assert_eq!(tasks[1].poll_memory, PollMemory::default(), "null: afresh");

    let refused = &tasks[2];
    assert_eq!(
        refused.result_fetch,
        ResultFetch::Refused { errcode: 40035 }
    );
    assert_eq!(refused.ended_at_ms, Some(93_000));
    assert_eq!(
        refused.poll_memory,
        PollMemory {
            anchor_ms: Some(3_000),
            anchor_ratio: 0.0,
            anchored_running: false,
            result_attempts: 1,
            last_interval_ms: 5_000,
            started_at_ms: None,
            first_poll_placed: false,
        },
        "fields 0.1.0 wrote without a default come through"
    );

    assert_eq!(
        tasks[3].recipients,
        Some(RecipientCounts {
            read: 6,
            unread: 1,
            failed: 1,
            forbidden: 1,
            invalid: 1,
        })
    );
    assert_eq!(tasks[3].poll_memory.last_interval_ms, 60_000);

    assert_eq!(
        tasks[4].poll_memory,
        PollMemory::default(),
        "values of the wrong type start afresh"
    );
    assert_eq!(tasks[4].status, Some(SendStatus::NotStarted));
    assert_eq!(
        tasks[5].poll_memory,
        PollMemory::default(),
        "text that is not JSON starts afresh"
    );

    assert_eq!(store.month_calls("", "2026-11").unwrap(), 4242);
    assert_eq!(store.month_calls("isv/dingone", "2026-11").unwrap(), 0);
    assert_eq!(
        store.exporter_state("quota_exhausted").unwrap().as_deref(),
        Some("2026-10")
    );
    drop(store);

    let upgraded = Connection::open(&path).unwrap();
    let version: i64 = upgraded
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let has_schedule: i64 = upgraded
        .query_row(
            "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'schedule'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(has_schedule, 0, "the JSON column is gone");
    let integrity: String = upgraded
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// A migrated store takes new tasks and keeps the poller's memory in its columns across a
/// reopen, as a restart does.
#[test]
fn a_migrated_store_saves_and_reloads_poll_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dingtalk-exporter.db");
    let old = Connection::open(&path).unwrap();
    old.execute_batch(RELEASE_0_1_0_SCHEMA).unwrap();
    old.execute_batch(RELEASE_0_1_0_TASKS).unwrap();
    drop(old);

    let store = SqliteStore::open(&path).unwrap();
    let mut task = store
        .load_all()
        .unwrap()
        .into_iter()
        .find(|task| task.key == key(2))
        .unwrap();
    task.poll_memory = PollMemory {
        anchor_ms: Some(12_345),
        anchor_ratio: 0.25,
        anchored_running: true,
        result_attempts: 2,
        last_interval_ms: 20_000,
        started_at_ms: Some(12_000),
        first_poll_placed: true,
    };
    store.save(std::slice::from_ref(&task)).unwrap();
    drop(store);

    let reopened = SqliteStore::open(&path).unwrap();
    let saved = reopened
        .load_all()
        .unwrap()
        .into_iter()
        .find(|saved| saved.key == key(2))
        .unwrap();
    assert_eq!(saved, task);
}
