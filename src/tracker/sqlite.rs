//! The embedded task store: one SQLite file, written so that a commit that returned survives
//! `kill -9` and power loss.
//!
//! Durability: WAL journal with `synchronous=FULL`, so every commit is fsynced before it
//! returns, and every [`TaskStore`] method is exactly one transaction.
//!
//! Portability: a shared PostgreSQL store is planned behind the same trait, so the tables are
//! plain and their SQL is the common dialect of both (`BIGINT`, `TEXT`, `DOUBLE PRECISION`,
//! `INSERT ... ON CONFLICT`, `RETURNING`). Only the connection set-up (journal mode, sync
//! level) and the schema bookkeeping (`PRAGMA user_version`) are SQLite's own.
//!
//! How a [`Task`] maps to the `tasks` table:
//! - timestamps are Unix milliseconds in `BIGINT` columns, `NULL` for `None`;
//! - `state`, `status` and `result_fetch` are the `as_str()` words of their enums, so the file
//!   stays readable with the `sqlite3` shell; `ResultFetch::Refused`'s errcode sits in
//!   `result_errcode`;
//! - the recipient counts are five nullable columns (`recipients_read`, ...): all `NULL`
//!   before `getsendresult` answered, all set after, so they can be queried one by one;
//! - `source` is the word of [`TaskSource`]; `recipients_expected` is `NULL` when the
//!   registration did not say;
//! - the poller's memory ([`PollMemory`]) is five `poll_*` columns; `anchored_running` is
//!   0 or 1 in a `BIGINT`, as both databases read it alike. (Schema version 1 kept it as
//!   JSON text in `schedule`; version 2 moves it into the columns.)
//! - the pace learned per app ([`LearnedPace`]) is a row of `app_pace` per `agent_id`.

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::pace::LearnedPace;
use super::store::{StoreError, TaskStore};
use super::task::{PollMemory, ResultFetch, SendStatus, Task, TaskKey, TaskSource, TaskState};
use crate::dingtalk::RecipientCounts;

/// How long a statement waits for another connection's lock (a backup tool, the `sqlite3`
/// shell) before it fails, instead of failing at once with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One step of the schema's history. Version `n` turns a database of version `n - 1` into
/// version `n`; it runs in one transaction together with the bump of `user_version`, so a crash
/// leaves either the old or the new schema, never half of one.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// The schema's history, oldest first. A migration that has shipped is never edited: a change
/// is a new entry at the end, and the binary then knows the schema up to that version and
/// refuses files written by a newer one. Adding a column, for example, would be:
///
/// ```text
/// Migration {
///     version: 3,
///     sql: "ALTER TABLE tasks ADD COLUMN app TEXT NOT NULL DEFAULT '';",
/// },
/// ```
///
/// together with reading and writing the new column in [`TASK_COLUMNS`], `task_values` and
/// `task_from_row`. The unit test `a_newer_schema_is_refused` runs exactly that, and
/// `tests/store_migration.rs` opens a file written by release 0.1.0 (schema version 1).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "
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
    ",
    },
    // The monthly call counts are kept per quota scope: '' for the organisation of the
    // internal apps (every count of 0.1.0), `app/corp_id` for each corp of a third-party app.
    // Who registered a task and for how many recipients (tasks of 0.1.0 came through the
    // API or the config file, which it did not tell apart: they read as `api`).
    // The poller's memory leaves its JSON text (about 760 of a task's ~1,190 bytes at rest,
    // and parsed for every task at start) for columns of its own. Whatever the text held
    // that is not of the expected type starts afresh, as the JSON reader of version 1 did.
    // json_* are SQLite's: only a SQLite store can have a version 1 to convert.
    // The poller's estimate of when a delivery started and ends, whether a new task's first
    // poll was placed, and the pace it learned per app from finished deliveries.
    Migration {
        version: 2,
        sql: "
        ALTER TABLE tasks ADD COLUMN poll_anchor_ms BIGINT;
        ALTER TABLE tasks ADD COLUMN poll_anchor_ratio DOUBLE PRECISION NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN poll_anchored_running BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN poll_result_attempts BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN poll_last_interval_ms BIGINT NOT NULL DEFAULT 0;
        UPDATE tasks SET
            poll_anchor_ms = CASE WHEN NOT json_valid(schedule) THEN NULL
                WHEN json_type(schedule, '$.anchor_ms') = 'integer'
                THEN json_extract(schedule, '$.anchor_ms') END,
            poll_anchor_ratio = CASE WHEN NOT json_valid(schedule) THEN 0
                WHEN json_type(schedule, '$.anchor_ratio') IN ('integer', 'real')
                THEN json_extract(schedule, '$.anchor_ratio') ELSE 0 END,
            poll_anchored_running = CASE WHEN NOT json_valid(schedule) THEN 0
                WHEN json_type(schedule, '$.anchored_running') = 'true' THEN 1 ELSE 0 END,
            poll_result_attempts = CASE WHEN NOT json_valid(schedule) THEN 0
                WHEN json_type(schedule, '$.result_attempts') = 'integer'
                    AND json_extract(schedule, '$.result_attempts') BETWEEN 0 AND 4294967295
                THEN json_extract(schedule, '$.result_attempts') ELSE 0 END,
            poll_last_interval_ms = CASE WHEN NOT json_valid(schedule) THEN 0
                WHEN json_type(schedule, '$.last_interval_ms') = 'integer'
                THEN json_extract(schedule, '$.last_interval_ms') ELSE 0 END;
        ALTER TABLE tasks DROP COLUMN schedule;
        ALTER TABLE tasks ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
        ALTER TABLE tasks ADD COLUMN recipients_expected BIGINT;
        CREATE TABLE month_calls_by_scope (
            scope TEXT NOT NULL,
            month TEXT NOT NULL,
            calls BIGINT NOT NULL,
            PRIMARY KEY (scope, month)
        );
        INSERT INTO month_calls_by_scope (scope, month, calls)
            SELECT '', month, calls FROM month_calls;
        DROP TABLE month_calls;
        ALTER TABLE month_calls_by_scope RENAME TO month_calls;
        ALTER TABLE tasks ADD COLUMN poll_started_at_ms BIGINT;
        ALTER TABLE tasks ADD COLUMN poll_first_placed BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE tasks ADD COLUMN expected_completion_at_ms BIGINT;
        CREATE TABLE app_pace (
            agent_id BIGINT NOT NULL PRIMARY KEY,
            pace_log DOUBLE PRECISION NOT NULL,
            pace_samples BIGINT NOT NULL,
            quick_completion_log DOUBLE PRECISION NOT NULL,
            completion_samples BIGINT NOT NULL
        );
    ",
    },
];

/// The newest schema this binary can read and write.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The columns of `tasks` in the order `task_values` writes them and `task_from_row` reads them.
const TASK_COLUMNS: &str = "agent_id, task_id, name, state, status, progress_ratio, \
    created_at_ms, last_poll_at_ms, last_progress_change_at_ms, last_errcode, ended_at_ms, \
    next_poll_at_ms, metered_calls, recipients_read, recipients_unread, recipients_failed, \
    recipients_forbidden, recipients_invalid, result_fetch, result_errcode, poll_anchor_ms, \
    poll_anchor_ratio, poll_anchored_running, poll_result_attempts, poll_last_interval_ms, \
    source, recipients_expected, poll_started_at_ms, poll_first_placed, \
    expected_completion_at_ms";
const TASK_PLACEHOLDERS: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30";

/// Registers a task unless its key is stored already, which it leaves untouched.
static INSERT_NEW_TASK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({TASK_PLACEHOLDERS}) \
         ON CONFLICT (agent_id, task_id) DO NOTHING"
    )
});

/// Stores a task whole, replacing every column of a stored one.
static UPSERT_TASK: LazyLock<String> = LazyLock::new(|| {
    let updates = TASK_COLUMNS
        .split(", ")
        .filter(|column| !matches!(*column, "agent_id" | "task_id"))
        .map(|column| format!("{column} = excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({TASK_PLACEHOLDERS}) \
         ON CONFLICT (agent_id, task_id) DO UPDATE SET {updates}"
    )
});

/// Refuses a damaged store before anything is read from or written to it: a damaged page
/// found later would fail every registration with 503 while the exporter looked ready.
/// `quick_check` reads every page once (a fraction of a second for the largest stores).
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |findings: String| {
        StoreError(format!(
            "{}: the store is damaged ({findings}); the exporter will not start on it. To recover: stop every exporter using it, keep a copy, then either salvage what is readable with `sqlite3 {} .recover | sqlite3 recovered.db` and start with --storage.path recovered.db, or move the file away to start empty (tracked tasks and the month's call count are then lost)",
            path.display(),
            path.display()
        ))
    };
    let mut statement = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|err| damaged(err.to_string()))?;
    let findings: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|err| damaged(err.to_string()))?;
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    let summary: String = findings.join("; ").chars().take(300).collect();
    Err(damaged(format!("quick_check: {summary}")))
}

/// The tasks and counters in one SQLite file.
pub struct SqliteStore {
    /// One connection: SQLite serialises writers anyway, and a single connection makes every
    /// method's transaction see the previous method's commit.
    conn: Mutex<Connection>,
    /// Named in every error, so an operator knows which file to look at.
    path: PathBuf,
}

/// What went wrong inside a transaction, before it is worded for the operator.
enum Failure {
    Sql(rusqlite::Error),
    /// A stored or given value the store cannot represent (a negative count read back, a
    /// count past `i64::MAX`, an unknown state word).
    Data(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Failure {
        Failure::Sql(err)
    }
}

/// The exclusive hold of one process on a store file, released when dropped (or when the
/// process ends, however it ends).
///
/// Two exporters on one file would each keep their own view of the tasks and their own
/// count of the month's calls, and the count would no longer bound the calls. So the file
/// `<store>.lock` beside the store is locked (`flock`) for as long as the exporter runs,
/// and holds its pid, which a second exporter names when it refuses to start.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    /// Takes the lock of the store at `store_path`, or says who holds it.
    pub fn acquire(store_path: &Path) -> Result<StoreLock, StoreError> {
        let lock_path = Self::lock_path(store_path);
        let fail = |what: &str, err: &dyn std::fmt::Display| {
            StoreError(format!("{}: {what}: {err}", lock_path.display()))
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|err| fail("cannot open the store's lock file", &err))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = std::io::Read::read_to_string(&mut file, &mut holder);
                let holder = holder.trim().parse::<u32>().map_or_else(
                    |_| "another process".to_string(),
                    |pid| format!("another process (pid {pid})"),
                );
                return Err(StoreError(format!(
                    "{}: the store is in use by {holder}: two exporters must not share one store file (each would keep its own tasks and its own count of the month's calls); stop the other one, or give this one its own --storage.path",
                    store_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(fail("cannot lock the store", &err));
            }
        }
        use std::io::{Seek, Write};
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{pid}"))
            .map_err(|err| fail("cannot write the store's lock file", &err))?;
        Ok(StoreLock { _file: file })
    }

    /// `<store>.lock`, beside the store.
    pub fn lock_path(store_path: &Path) -> PathBuf {
        let mut name = store_path.as_os_str().to_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the store at `path` and brings its schema up to date.
    /// Refuses a file that is not SQLite, a SQLite file of another application, a damaged
    /// one (SQLite's `quick_check`), and a file written by a newer version of the exporter.
    /// A file that exists but is empty is opened as a new store, with a warning: it may be
    /// a store that lost its content.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fail = |what: &str, err: &dyn std::fmt::Display| {
            StoreError(format!("{}: {what}: {err}", path.display()))
        };
        if std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == 0) {
            tracing::warn!(
                path = %path.display(),
                "the store file exists but is empty: starting with no tracked tasks and no calls counted this month; if it held tasks, it was truncated (restore it from a backup while the exporter is stopped)"
            );
        }
        let mut conn =
            Connection::open(path).map_err(|err| fail("cannot open the database", &err))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|err| fail("cannot configure the database", &err))?;
        // The first statement that reads the file is where SQLite notices it is not a database.
        let journal_mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|err| {
                fail(
                    "cannot use the file as the exporter's database (is it a SQLite file?)",
                    &err,
                )
            })?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(fail(
                "cannot switch to write-ahead logging",
                &format!("journal mode stays {journal_mode:?}"),
            ));
        }
        // FULL: with WAL, NORMAL may lose the last commits on power loss; an acknowledged
        // registration must not be lost.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|err| fail("cannot configure the database", &err))?;
        check_integrity(&conn, path)?;
        migrate(&mut conn, MIGRATIONS)
            .map_err(|err| StoreError(format!("{}: {err}", path.display())))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a method drops its open transaction, which rolls it back, so the
        // connection behind a poisoned lock is still consistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in one transaction and commits it; errors say what was being done.
    fn transaction<T>(
        &self,
        behavior: TransactionBehavior,
        what: impl FnOnce() -> String,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(behavior)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        result.map_err(|failure| {
            let cause = match failure {
                Failure::Sql(err) => err.to_string(),
                Failure::Data(text) => text,
            };
            StoreError(format!("{}: {}: {cause}", self.path.display(), what()))
        })
    }

    /// A write transaction takes the write lock at `BEGIN`, so it waits (busy timeout) for
    /// another writer instead of failing halfway when it upgrades from a read lock.
    fn write<T>(
        &self,
        what: impl FnOnce() -> String,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Immediate, what, work)
    }

    fn read<T>(
        &self,
        what: impl FnOnce() -> String,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.transaction(TransactionBehavior::Deferred, what, work)
    }
}

/// Brings the schema up to the last of `migrations`, each step in its own transaction.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), String> {
    let known = migrations.last().map_or(0, |last| last.version);
    for migration in migrations {
        // IMMEDIATE: two processes opening a new file at once cannot both run a migration.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|err| format!("cannot read the schema version: {err}"))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|err| format!("cannot read the schema version: {err}"))?;
        if version > known {
            return Err(format!(
                "the database has schema version {version}, newer than the {known} this \
                 dingtalk-exporter knows; it was written by a newer release: run that \
                 release, or point --storage.path at another file"
            ));
        }
        if version >= migration.version {
            continue;
        }
        if version == 0 {
            refuse_foreign_tables(&tx)?;
        }
        let apply = || -> rusqlite::Result<()> {
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", migration.version)
        };
        apply().and_then(|()| tx.commit()).map_err(|err| {
            format!(
                "cannot migrate the schema to version {}: {err}",
                migration.version
            )
        })?;
    }
    Ok(())
}

/// A file with schema version 0 is new only if it holds no tables: anything else is another
/// application's SQLite database, which the exporter must not write into.
fn refuse_foreign_tables(tx: &Transaction<'_>) -> Result<(), String> {
    let foreign: Option<String> = tx
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(|err| format!("cannot read the schema: {err}"))?;
    match foreign {
        Some(table) => Err(format!(
            "the file is a SQLite database of another application (it has a table {table:?} but \
             no dingtalk-exporter schema version); point --storage.path at a new file"
        )),
        None => Ok(()),
    }
}

impl TaskStore for SqliteStore {
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        self.write(
            || format!("cannot register {} task(s)", tasks.len()),
            |tx| {
                let mut insert = tx.prepare_cached(&INSERT_NEW_TASK)?;
                let mut created = Vec::with_capacity(tasks.len());
                for task in tasks {
                    let inserted =
                        insert.execute(rusqlite::params_from_iter(task_values(task)?))?;
                    created.push(inserted == 1);
                }
                Ok(created)
            },
        )
    }

    fn save(&self, tasks: &[Task]) -> Result<(), StoreError> {
        self.write(
            || format!("cannot save {} task(s)", tasks.len()),
            |tx| {
                let mut upsert = tx.prepare_cached(&UPSERT_TASK)?;
                for task in tasks {
                    upsert.execute(rusqlite::params_from_iter(task_values(task)?))?;
                }
                Ok(())
            },
        )
    }

    fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        self.write(
            || format!("cannot remove task {}/{}", key.agent_id, key.task_id),
            |tx| {
                let removed = tx.execute(
                    "DELETE FROM tasks WHERE agent_id = ?1 AND task_id = ?2",
                    (key.agent_id, key.task_id),
                )?;
                Ok(removed > 0)
            },
        )
    }

    fn load_all(&self) -> Result<Vec<Task>, StoreError> {
        self.read(
            || "cannot load the tracked tasks".to_string(),
            |tx| {
                let mut select = tx.prepare(&format!("SELECT {TASK_COLUMNS} FROM tasks"))?;
                let mut rows = select.query([])?;
                let mut tasks = Vec::new();
                while let Some(row) = rows.next()? {
                    tasks.push(task_from_row(row)?);
                }
                Ok(tasks)
            },
        )
    }

    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError> {
        self.read(
            || format!("cannot read the call counter of {month}"),
            |tx| {
                let calls: Option<i64> = tx
                    .query_row(
                        "SELECT calls FROM month_calls WHERE scope = ?1 AND month = ?2",
                        [scope, month],
                        |row| row.get(0),
                    )
                    .optional()?;
                calls.map_or(Ok(0), |calls| to_count("month_calls.calls", calls))
            },
        )
    }

    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError> {
        self.write(
            || format!("cannot count {calls} call(s) in {month}"),
            |tx| {
                let total: i64 = tx.query_row(
                    "INSERT INTO month_calls (scope, month, calls) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (scope, month) DO UPDATE \
                     SET calls = month_calls.calls + excluded.calls \
                     RETURNING calls",
                    (scope, month, to_column("calls", calls)?),
                    |row| row.get(0),
                )?;
                to_count("month_calls.calls", total)
            },
        )
    }

    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(
            || format!("cannot read the exporter state {key:?}"),
            |tx| {
                Ok(tx
                    .query_row(
                        "SELECT value FROM exporter_state WHERE key = ?1",
                        [key],
                        |row| row.get(0),
                    )
                    .optional()?)
            },
        )
    }

    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.write(
            || format!("cannot write the exporter state {key:?}"),
            |tx| {
                match value {
                    Some(value) => tx.execute(
                        "INSERT INTO exporter_state (key, value) VALUES (?1, ?2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, value),
                    )?,
                    None => tx.execute("DELETE FROM exporter_state WHERE key = ?1", [key])?,
                };
                Ok(())
            },
        )
    }

    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
        self.read(
            || "cannot load the learned paces".to_string(),
            |tx| {
                let mut select = tx.prepare(
                    "SELECT agent_id, pace_log, pace_samples, quick_completion_log, \
                     completion_samples FROM app_pace",
                )?;
                let mut rows = select.query([])?;
                let mut paces = Vec::new();
                while let Some(row) = rows.next()? {
                    let agent_id: i64 = row.get(0)?;
                    let samples = |index: usize, field: &str| -> Result<u32, Failure> {
                        let stored: i64 = row.get(index)?;
                        u32::try_from(stored).map_err(|_| {
                            Failure::Data(format!(
                                "app_pace {agent_id}: {field} is out of range ({stored})"
                            ))
                        })
                    };
                    let pace = LearnedPace {
                        pace_log: row.get(1)?,
                        pace_samples: samples(2, "pace_samples")?,
                        quick_completion_log: row.get(3)?,
                        completion_samples: samples(4, "completion_samples")?,
                    };
                    paces.push((agent_id, pace));
                }
                Ok(paces)
            },
        )
    }

    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError> {
        self.write(
            || format!("cannot save the learned pace of agent {agent_id}"),
            |tx| {
                tx.execute(
                    "INSERT INTO app_pace (agent_id, pace_log, pace_samples, \
                     quick_completion_log, completion_samples) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (agent_id) DO UPDATE SET pace_log = excluded.pace_log, \
                     pace_samples = excluded.pace_samples, \
                     quick_completion_log = excluded.quick_completion_log, \
                     completion_samples = excluded.completion_samples",
                    (
                        agent_id,
                        pace.pace_log,
                        i64::from(pace.pace_samples),
                        pace.quick_completion_log,
                        i64::from(pace.completion_samples),
                    ),
                )?;
                Ok(())
            },
        )
    }
}

/// A count as a `BIGINT`; counts past `i64::MAX` cannot happen in practice and are refused
/// rather than wrapped.
fn to_column(field: &str, count: u64) -> Result<i64, Failure> {
    i64::try_from(count)
        .map_err(|_| Failure::Data(format!("{field} = {count} is too large to store")))
}

/// A `BIGINT` read back as a count; a negative one means the file was edited by hand.
fn to_count(field: &str, stored: i64) -> Result<u64, Failure> {
    u64::try_from(stored)
        .map_err(|_| Failure::Data(format!("{field} holds a negative count {stored}")))
}

/// The values of [`TASK_COLUMNS`] for one task.
fn task_values(task: &Task) -> Result<Vec<Value>, Failure> {
    let integer = |value: Option<i64>| value.map_or(Value::Null, Value::Integer);
    let count = |field: &str, value: Option<u64>| -> Result<Value, Failure> {
        value.map_or(Ok(Value::Null), |count| {
            to_column(field, count).map(Value::Integer)
        })
    };
    let recipients = task.recipients;
    let memory = task.poll_memory;
    Ok(vec![
        Value::Integer(task.key.agent_id),
        Value::Integer(task.key.task_id),
        Value::Text(task.name.clone()),
        Value::Text(task.state.as_str().to_string()),
        task.status.map_or(Value::Null, |status| {
            Value::Text(status.as_str().to_string())
        }),
        task.progress_ratio.map_or(Value::Null, Value::Real),
        Value::Integer(task.created_at_ms),
        integer(task.last_poll_at_ms),
        Value::Integer(task.last_progress_change_at_ms),
        integer(task.last_errcode),
        integer(task.ended_at_ms),
        integer(task.next_poll_at_ms),
        Value::Integer(to_column("metered_calls", task.metered_calls)?),
        count("recipients_read", recipients.map(|r| r.read))?,
        count("recipients_unread", recipients.map(|r| r.unread))?,
        count("recipients_failed", recipients.map(|r| r.failed))?,
        count("recipients_forbidden", recipients.map(|r| r.forbidden))?,
        count("recipients_invalid", recipients.map(|r| r.invalid))?,
        Value::Text(task.result_fetch.as_str().to_string()),
        integer(task.result_fetch.refused_errcode()),
        integer(memory.anchor_ms),
        Value::Real(memory.anchor_ratio),
        Value::Integer(i64::from(memory.anchored_running)),
        Value::Integer(i64::from(memory.result_attempts)),
        Value::Integer(memory.last_interval_ms),
        Value::Text(task.source.as_str().to_string()),
        count("recipients_expected", task.recipients_expected)?,
        integer(memory.started_at_ms),
        Value::Integer(i64::from(memory.first_poll_placed)),
        integer(task.expected_completion_at_ms),
    ])
}

/// One row of [`TASK_COLUMNS`] as a task; a value no release wrote is an error naming the task.
fn task_from_row(row: &Row<'_>) -> Result<Task, Failure> {
    let key = TaskKey {
        agent_id: row.get(0)?,
        task_id: row.get(1)?,
    };
    let bad =
        |what: String| Failure::Data(format!("task {}/{}: {what}", key.agent_id, key.task_id));
    let count = |index: usize, field: &str| -> Result<Option<u64>, Failure> {
        let stored: Option<i64> = row.get(index)?;
        stored
            .map(|value| {
                u64::try_from(value).map_err(|_| bad(format!("{field} is negative ({value})")))
            })
            .transpose()
    };

    let state_word: String = row.get(3)?;
    let state = TaskState::parse(&state_word)
        .ok_or_else(|| bad(format!("unknown state {state_word:?}")))?;
    let status = match row.get::<_, Option<String>>(4)? {
        None => None,
        Some(word) => {
            Some(SendStatus::parse(&word).ok_or_else(|| bad(format!("unknown status {word:?}")))?)
        }
    };
    let metered_calls =
        count(12, "metered_calls")?.ok_or_else(|| bad("metered_calls is NULL".to_string()))?;
    let recipient_columns = [
        count(13, "recipients_read")?,
        count(14, "recipients_unread")?,
        count(15, "recipients_failed")?,
        count(16, "recipients_forbidden")?,
        count(17, "recipients_invalid")?,
    ];
    let recipients = RecipientCounts::from_columns(recipient_columns).map_err(bad)?;
    let fetch_word: String = row.get(18)?;
    let refused_errcode: Option<i64> = row.get(19)?;
    let result_fetch = ResultFetch::from_stored(&fetch_word, refused_errcode)
        .ok_or_else(|| bad(format!("unknown result fetch {fetch_word:?}")))?;
    let result_attempts: i64 = row.get(23)?;
    let poll_memory = PollMemory {
        anchor_ms: row.get(20)?,
        anchor_ratio: row.get(21)?,
        anchored_running: row.get::<_, i64>(22)? != 0,
        result_attempts: u32::try_from(result_attempts).map_err(|_| {
            bad(format!(
                "poll_result_attempts is out of range ({result_attempts})"
            ))
        })?,
        last_interval_ms: row.get(24)?,
        started_at_ms: row.get(27)?,
        first_poll_placed: row.get::<_, i64>(28)? != 0,
    };
    let source_word: String = row.get(25)?;
    let source = TaskSource::parse(&source_word)
        .ok_or_else(|| bad(format!("unknown source {source_word:?}")))?;
    let recipients_expected = count(26, "recipients_expected")?;

    Ok(Task {
        key,
        name: row.get(2)?,
        source,
        recipients_expected,
        state,
        status,
        progress_ratio: row.get(5)?,
        created_at_ms: row.get(6)?,
        last_poll_at_ms: row.get(7)?,
        last_progress_change_at_ms: row.get(8)?,
        last_errcode: row.get(9)?,
        ended_at_ms: row.get(10)?,
        next_poll_at_ms: row.get(11)?,
        metered_calls,
        recipients,
        result_fetch,
        poll_memory,
        expected_completion_at_ms: row.get(29)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tasks.db");
        (dir, path)
    }

    /// Migrations are numbered 1, 2, 3, ... so that `user_version` names exactly which ran.
    #[test]
    fn migrations_are_numbered_consecutively_from_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1);
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i64);
    }

    /// A file migrated by a later release (one more migration) is refused with a clear
    /// message, and the later release's migration keeps the tasks it finds.
    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = scratch_file();
        let store = SqliteStore::open(&path).expect("open");
        let task = Task::registered(
            TaskKey {
                agent_id: 1,
                task_id: 2,
            },
            "kept".into(),
            1_000,
        );
        store
            .insert_new(std::slice::from_ref(&task))
            .expect("insert");
        drop(store);

        let mut later: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|migration| Migration {
                version: migration.version,
                sql: migration.sql,
            })
            .collect();
        later.push(Migration {
            version: SCHEMA_VERSION + 1,
            sql: "ALTER TABLE tasks ADD COLUMN app TEXT NOT NULL DEFAULT '';",
        });
        let mut conn = Connection::open(&path).expect("reopen");
        migrate(&mut conn, &later).expect("migrate one further");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION + 1);
        let (name, app): (String, String) = conn
            .query_row("SELECT name, app FROM tasks", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("row");
        assert_eq!((name.as_str(), app.as_str()), ("kept", ""));

        drop(conn);
        let err = SqliteStore::open(&path)
            .err()
            .expect("newer schema refused");
        assert!(
            err.0
                .contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
    }

    /// The store writes in WAL mode with full fsync, the settings its durability promise needs.
    #[test]
    fn connection_is_configured_for_durable_commits() {
        let (_dir, path) = scratch_file();
        let store = SqliteStore::open(&path).expect("open");
        let conn = store.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal mode");
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .expect("synchronous");
        assert_eq!(mode, "wal");
        assert_eq!(synchronous, 2, "synchronous=FULL");
    }

    /// A row edited into an impossible shape is reported with the task it belongs to.
    #[test]
    fn impossible_stored_values_are_reported_with_the_task() {
        let (_dir, path) = scratch_file();
        let store = SqliteStore::open(&path).expect("open");
        let task = Task::registered(
            TaskKey {
                agent_id: 7,
                task_id: 9,
            },
            String::new(),
            0,
        );
        store.insert_new(&[task]).expect("insert");
        store
            .lock()
            .execute("UPDATE tasks SET state = 'paused'", [])
            .expect("edit");
        let err = store.load_all().expect_err("unknown state");
        assert!(
            err.0.contains("task 7/9") && err.0.contains("\"paused\""),
            "{err}"
        );
    }

    /// A SQLite file of another application is refused, not written into.
    #[test]
    fn another_applications_database_is_refused() {
        let (_dir, path) = scratch_file();
        Connection::open(&path)
            .expect("create")
            .execute_batch("CREATE TABLE invoices (id INTEGER);")
            .expect("foreign table");
        let err = SqliteStore::open(&path)
            .err()
            .expect("foreign file refused");
        assert!(
            err.0.contains("another application") && err.0.contains("invoices"),
            "{err}"
        );
    }
}
