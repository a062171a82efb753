//! The SQLite task store on real files: what goes in comes back out, across reopening and
//! across `kill -9` of the writing process; files it cannot trust are refused clearly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dingtalk_exporter::dingtalk::RecipientCounts;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{
    LearnedPace, PollMemory, ResultFetch, SendStatus, Task, TaskKey, TaskSource, TaskState,
    TaskStore,
};

fn scratch_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dingtalk-exporter.db");
    (dir, path)
}

fn key(agent_id: i64, task_id: i64) -> TaskKey {
    TaskKey { agent_id, task_id }
}

/// A task with every optional field set, recipients fetched and its poll memory full.
fn finished_task() -> Task {
    Task {
        key: key(i64::MAX, 256_271_667_526),
        name: "payroll \"May\" \\ 工资通知\nline two".to_string(),
        source: TaskSource::Send,
        recipients_expected: Some(u64::try_from(i64::MAX).unwrap()),
        state: TaskState::Completed,
        status: Some(SendStatus::Completed),
        progress_ratio: Some(0.1 + 0.2),
        created_at_ms: 1_790_000_000_000,
        last_poll_at_ms: Some(1_790_000_360_123),
        last_progress_change_at_ms: 1_790_000_300_456,
        last_errcode: Some(0),
        ended_at_ms: Some(1_790_000_360_123),
        next_poll_at_ms: None,
        metered_calls: 17,
        recipients: Some(RecipientCounts {
            read: 1,
            unread: 2,
            failed: 3,
            forbidden: 4,
            invalid: 5,
        }),
        result_fetch: ResultFetch::Fetched,
        poll_memory: PollMemory {
            anchor_ms: Some(1_790_000_000_500),
            anchor_ratio: 0.1 + 0.2,
            anchored_running: true,
            result_attempts: u32::MAX,
            last_interval_ms: i64::MAX,
            started_at_ms: Some(1_790_000_000_250),
            first_poll_placed: true,
        },
        expected_completion_at_ms: Some(1_790_000_360_000),
    }
}

/// A task whose result fetch DingTalk refused, polled with an error, still scheduled.
fn refused_task() -> Task {
    Task {
        key: key(1, 1),
        name: String::new(),
        source: TaskSource::Proxy,
        recipients_expected: Some(1),
        state: TaskState::Invalid,
        status: Some(SendStatus::InProgress),
        progress_ratio: Some(0.0),
        created_at_ms: -5,
        last_poll_at_ms: None,
        last_progress_change_at_ms: 0,
        last_errcode: Some(40035),
        ended_at_ms: Some(1),
        next_poll_at_ms: Some(i64::MAX),
        metered_calls: 0,
        recipients: None,
        result_fetch: ResultFetch::Refused { errcode: -1 },
        poll_memory: PollMemory {
            anchor_ms: None,
            anchor_ratio: 0.0,
            anchored_running: false,
            result_attempts: 2,
            last_interval_ms: -1,
            started_at_ms: None,
            first_poll_placed: false,
        },
        expected_completion_at_ms: None,
    }
}

/// A task just registered: no status, no answer yet, empty poll memory.
fn registered_task() -> Task {
    Task::registered(key(2839445214, 42), "fresh".to_string(), 1_790_000_000_000)
}

fn sorted(mut tasks: Vec<Task>) -> Vec<Task> {
    tasks.sort_by_key(|task| task.key);
    tasks
}

/// Every field of a task, set or unset, reads back exactly as it was stored.
#[test]
fn every_task_field_survives_a_round_trip() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).expect("open");
    let tasks = vec![finished_task(), refused_task(), registered_task()];
    assert_eq!(store.insert_new(&tasks).expect("insert"), vec![true; 3]);
    assert_eq!(sorted(store.load_all().expect("load")), sorted(tasks));
}

/// Registering a known task reports it as existing and keeps what the store had.
#[test]
fn insert_new_reports_new_and_keeps_existing_unchanged() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).expect("open");
    let stored = finished_task();
    assert_eq!(
        store
            .insert_new(std::slice::from_ref(&stored))
            .expect("first"),
        vec![true]
    );

    let mut again = registered_task();
    again.key = stored.key;
    let fresh = refused_task();
    let created = store
        .insert_new(&[again, fresh.clone(), fresh.clone()])
        .expect("second");
    assert_eq!(
        created,
        vec![false, true, false],
        "a repeat in one batch is not new"
    );
    assert_eq!(
        sorted(store.load_all().expect("load")),
        sorted(vec![stored, fresh])
    );
}

/// Saving replaces a stored task whole and stores a task it did not have.
#[test]
fn save_replaces_stored_tasks() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).expect("open");
    let registered = registered_task();
    store
        .insert_new(std::slice::from_ref(&registered))
        .expect("insert");

    let mut polled = finished_task();
    polled.key = registered.key;
    let other = refused_task();
    store.save(&[polled.clone(), other.clone()]).expect("save");
    assert_eq!(
        sorted(store.load_all().expect("load")),
        sorted(vec![polled.clone(), other])
    );

    // And back to unset fields: NULLs overwrite values.
    store
        .save(std::slice::from_ref(&registered))
        .expect("save back");
    let loaded = store.load_all().expect("load");
    assert!(loaded.contains(&registered), "{loaded:?}");
}

/// Removing a task deletes only it and says whether it was there.
#[test]
fn remove_reports_whether_the_task_was_stored() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).expect("open");
    store
        .insert_new(&[finished_task(), registered_task()])
        .expect("insert");
    assert!(store.remove(finished_task().key).expect("remove"));
    assert!(!store.remove(finished_task().key).expect("remove again"));
    assert_eq!(store.load_all().expect("load"), vec![registered_task()]);
}

/// Closing and reopening the file keeps tasks, call counters and exporter state.
#[test]
fn reopening_the_file_keeps_everything() {
    let (_dir, path) = scratch_file();
    let tasks = vec![finished_task(), refused_task(), registered_task()];
    {
        let store = SqliteStore::open(&path).expect("open");
        store.insert_new(&tasks).expect("insert");
        store.add_month_calls("", "2026-11", 12).expect("count");
        store
            .add_month_calls("isv/dingone", "2026-11", 5)
            .expect("count a corp's calls");
        store
            .set_exporter_state("quota_exhausted", Some("{\"month\":\"2026-11\"}"))
            .expect("state");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(sorted(store.load_all().expect("load")), sorted(tasks));
    assert_eq!(store.month_calls("", "2026-11").expect("calls"), 12);
    // Each quota scope (a third-party corp) counts apart from the internal apps'.
    assert_eq!(
        store.month_calls("isv/dingone", "2026-11").expect("calls"),
        5
    );
    assert_eq!(
        store.month_calls("isv/dingtwo", "2026-11").expect("calls"),
        0
    );
    assert_eq!(
        store
            .exporter_state("quota_exhausted")
            .expect("state")
            .as_deref(),
        Some("{\"month\":\"2026-11\"}")
    );
}

/// The monthly call counter adds up per month, starts at 0 and survives reopening.
#[test]
fn month_counter_is_per_month_and_persists() {
    let (_dir, path) = scratch_file();
    {
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(store.month_calls("", "2026-11").expect("unseen month"), 0);
        assert_eq!(store.add_month_calls("", "2026-11", 1).expect("add"), 1);
        assert_eq!(store.add_month_calls("", "2026-11", 4).expect("add"), 5);
        assert_eq!(store.add_month_calls("", "2026-12", 2).expect("add"), 2);
    }
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.month_calls("", "2026-11").expect("calls"), 5);
    assert_eq!(store.month_calls("", "2026-12").expect("calls"), 2);
    assert_eq!(store.month_calls("", "2027-01").expect("calls"), 0);
    assert_eq!(store.add_month_calls("", "2026-12", 1).expect("add"), 3);
}

/// The pace learned per app is stored per agent, replaced on save, and kept across reopening.
#[test]
fn learned_paces_are_per_app_and_persist() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.learned_paces().unwrap().is_empty());
    let mut quick = LearnedPace::default();
    quick.learn_pace(500, 10_000);
    quick.learn_completion(12_000);
    let mut slow = LearnedPace::default();
    slow.learn_pace(10, 60_000);
    store.save_learned_pace(7, &slow).unwrap();
    store.save_learned_pace(7, &quick).unwrap();
    store.save_learned_pace(i64::MAX, &slow).unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let mut paces = store.learned_paces().unwrap();
    paces.sort_by_key(|(agent, _)| *agent);
    assert_eq!(paces, vec![(7, quick), (i64::MAX, slow)]);
}

/// Exporter state can be written, overwritten and cleared.
#[test]
fn exporter_state_is_written_overwritten_and_cleared() {
    let (_dir, path) = scratch_file();
    let store = SqliteStore::open(&path).expect("open");
    assert_eq!(store.exporter_state("k").expect("read"), None);
    store.set_exporter_state("k", Some("one")).expect("write");
    store
        .set_exporter_state("k", Some("two"))
        .expect("overwrite");
    store
        .set_exporter_state("other", Some("x"))
        .expect("write other");
    assert_eq!(
        store.exporter_state("k").expect("read").as_deref(),
        Some("two")
    );
    store.set_exporter_state("k", None).expect("clear");
    assert_eq!(store.exporter_state("k").expect("read"), None);
    assert_eq!(
        store.exporter_state("other").expect("read").as_deref(),
        Some("x")
    );
}

/// A file written by a newer release (higher schema version) is refused, saying so.
#[test]
fn a_newer_schema_version_is_refused_with_a_clear_error() {
    let (_dir, path) = scratch_file();
    drop(SqliteStore::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.pragma_update(None, "user_version", 99)
        .expect("bump version");
    drop(conn);

    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("schema version 99") && text.contains("newer"),
        "{text}"
    );
}

/// A file that is not a SQLite database is refused with an error naming it, and left alone.
#[test]
fn a_garbage_file_is_refused_with_a_clear_error() {
    let (_dir, path) = scratch_file();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");

    let err = SqliteStore::open(&path).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("not a database"), "{text}");
    assert_eq!(
        std::fs::read(&path).expect("read back"),
        garbage,
        "file untouched"
    );
}

/// A path in a missing directory is refused with an error naming it.
#[test]
fn an_unopenable_path_is_refused_naming_it() {
    let (dir, _path) = scratch_file();
    let path = dir.path().join("missing-dir").join("tasks.db");
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

/// Set in the environment of the re-executed test binary: the child's database file.
const CRASH_CHILD_DB: &str = "DINGTALK_EXPORTER_TEST_CRASH_CHILD_DB";
/// Set with it: the round, so each round registers keys of its own.
const CRASH_CHILD_ROUND: &str = "DINGTALK_EXPORTER_TEST_CRASH_CHILD_ROUND";
const CRASH_TEST_NAME: &str = "acknowledged_writes_survive_sigkill_and_the_file_stays_intact";
const CRASH_WRITERS: i64 = 4;

/// Registrations and state saves acknowledged before a SIGKILL are all there afterwards, and
/// the file passes `PRAGMA integrity_check`, over several rounds killed at random moments.
#[test]
fn acknowledged_writes_survive_sigkill_and_the_file_stays_intact() {
    if let Some(db) = std::env::var_os(CRASH_CHILD_DB) {
        let round: i64 = std::env::var(CRASH_CHILD_ROUND)
            .expect("round")
            .parse()
            .expect("round number");
        write_until_killed(Path::new(&db), round);
        return;
    }

    let (_dir, path) = scratch_file();
    let mut registered = BTreeSet::new();
    let mut saved = BTreeSet::new();
    for round in 0..6 {
        // Round 0 kills at once, possibly while the schema is being created; round 1 soon
        // after the first commits; the others once the writers are in full swing.
        let kill_after = match round {
            0 => 0,
            1 => rand::random_range(1..50usize),
            _ => rand::random_range(50..400usize),
        };
        let acks = run_child_and_kill(&path, round, kill_after);
        for (kind, task_key) in acks {
            match kind.as_str() {
                "registered" => registered.insert(task_key),
                "saved" => saved.insert(task_key),
                other => panic!("unexpected acknowledgement {other}"),
            };
        }
        if !path.exists() {
            assert!(registered.is_empty(), "acknowledged writes but no file");
            continue;
        }

        let conn = rusqlite::Connection::open(&path).expect("raw open");
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(integrity, "ok", "round {round}");
        drop(conn);

        let store = SqliteStore::open(&path).expect("reopen after kill");
        let stored: BTreeMap<TaskKey, Task> = store
            .load_all()
            .expect("load")
            .into_iter()
            .map(|task| (task.key, task))
            .collect();
        for task_key in &registered {
            assert!(
                stored.contains_key(task_key),
                "round {round}: lost {task_key:?}"
            );
        }
        for task_key in &saved {
            assert_eq!(
                stored[task_key].metered_calls, 1,
                "round {round}: lost the saved state of {task_key:?}"
            );
        }
    }
    assert!(
        registered.len() >= 100 && !saved.is_empty(),
        "the rounds acknowledged too little to prove anything: {} registered, {} saved",
        registered.len(),
        saved.len()
    );
}

/// Runs one child writer, SIGKILLs it after `kill_after` acknowledgements, and returns every
/// acknowledgement it printed before it died.
fn run_child_and_kill(path: &Path, round: i64, kill_after: usize) -> Vec<(String, TaskKey)> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            CRASH_TEST_NAME,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DB, path)
        .env(CRASH_CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acks.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => acks.extend(parse_ack(&line)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!(
                    "round {round}: only {} acknowledgements in 60 s",
                    acks.len()
                );
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!(
                    "round {round}: the child writer exited early: {:?}",
                    child.wait()
                );
            }
        }
    }
    child.kill().expect("SIGKILL the child writer");
    // What the child printed before it died was acknowledged too.
    reader.join().expect("reader thread");
    acks.extend(lines.try_iter().filter_map(|line| parse_ack(&line)));
    let status = child.wait().expect("reap child");
    assert!(
        !status.success(),
        "round {round}: the child was not killed: {status}"
    );
    acks
}

fn parse_ack(line: &str) -> Option<(String, TaskKey)> {
    let mut words = line.split_whitespace();
    let kind = words.next()?;
    if kind != "registered" && kind != "saved" {
        return None; // the test harness's own lines
    }
    let agent_id = words.next()?.parse().ok()?;
    let task_id = words.next()?.parse().ok()?;
    Some((kind.to_string(), key(agent_id, task_id)))
}

/// The child: several threads register batches and save state changes as fast as the store
/// commits them, printing each acknowledged write, until the parent kills the process.
fn write_until_killed(path: &Path, round: i64) {
    let store = Arc::new(SqliteStore::open(path).expect("child open"));
    let writers: Vec<_> = (0..CRASH_WRITERS)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                let agent_id = round * CRASH_WRITERS + writer + 1;
                let mut out = std::io::stdout();
                // Bounded so that a child whose parent vanished does not run forever.
                for batch in 0..10_000i64 {
                    let size = batch % 3 + 1;
                    let tasks: Vec<Task> = (0..size)
                        .map(|i| {
                            let task_key = key(agent_id, batch * 3 + i + 1);
                            Task::registered(task_key, format!("crash {batch}"), batch)
                        })
                        .collect();
                    store.insert_new(&tasks).expect("child insert");
                    for task in &tasks {
                        let line =
                            format!("registered {} {}\n", task.key.agent_id, task.key.task_id);
                        if out
                            .write_all(line.as_bytes())
                            .and_then(|()| out.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                    let mut polled = tasks[0].clone();
                    polled.metered_calls = 1;
                    polled.status = Some(SendStatus::InProgress);
                    store.save(&[polled.clone()]).expect("child save");
                    let line = format!("saved {} {}\n", polled.key.agent_id, polled.key.task_id);
                    if out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("child writer");
    }
}
