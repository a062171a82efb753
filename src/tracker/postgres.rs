//! The shared task store: a PostgreSQL database that several exporters (replicas) use at
//! once, behind the same [`TaskStore`] trait as the embedded SQLite file.
//!
//! Durability: every [`TaskStore`] method is one transaction, committed before it returns,
//! so a registration is acknowledged only once PostgreSQL has it.
//!
//! Sharing: a trigger announces every change of a task with `NOTIFY` on
//! [`TASK_CHANNEL`] (`replica agent_id task_id`), delivered when its transaction commits; the
//! other replicas read that task back ([`TaskStore::load`]) and so see a registration
//! within a second. The monthly call counter is raised with a row lock and never past the
//! budget ([`TaskStore::add_month_calls_within`]), so replicas together cannot overspend it.
//! The `leases` table says which replica polls which app (see `tracker::leases`).
//!
//! Connections: a small pool (`deadpool-postgres`) of `tokio-postgres` connections, TLS by
//! rustls when the server offers it (`sslmode` in the URL as usual). The trait is
//! synchronous (the SQLite store waits for the disk), so the pool lives on a runtime of its
//! own and a call waits for its answer there: it works alike from a blocking thread, a
//! `block_in_place` section or outside Tokio.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::pace::LearnedPace;
use super::store::{MonthGrant, StoreError, TaskStore};
use super::task::{PollMemory, ResultFetch, SendStatus, Task, TaskKey, TaskSource, TaskState};
use crate::dingtalk::RecipientCounts;
use crate::secret::Secret;

/// The channel on which every change of a task is announced.
pub const TASK_CHANNEL: &str = "dingtalk_exporter_tasks";

/// How long one store operation may take, connecting included, before it fails: a database
/// that does not answer must not hold a poll or a registration forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per replica: registrations, poll results, the budget counter and the leases
/// each take one for a moment; notifications have their own connection besides.
const POOL_SIZE: usize = 4;

/// An advisory lock key (any constant) serialising migrations of replicas that start at once.
const MIGRATION_LOCK: i64 = 0x6469_6e67_7461_6c6b;

/// One step of the schema's history, as in the SQLite store: version `n` turns version
/// `n - 1` into `n` in one transaction together with the bump of the recorded version.
struct Migration {
    version: i64,
    sql: &'static str,
}

/// The schema's history, oldest first; a shipped migration is never edited. The tasks table
/// has the columns of the SQLite store's (the same portable types); the rest is what
/// sharing needs: the leases, the replicas' heartbeats and the change trigger.
const MIGRATIONS: &[Migration] = &[Migration {
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
            poll_anchor_ms BIGINT,
            poll_anchor_ratio DOUBLE PRECISION NOT NULL DEFAULT 0,
            poll_anchored_running BIGINT NOT NULL DEFAULT 0,
            poll_result_attempts BIGINT NOT NULL DEFAULT 0,
            poll_last_interval_ms BIGINT NOT NULL DEFAULT 0,
            source TEXT NOT NULL DEFAULT 'api',
            recipients_expected BIGINT,
            poll_started_at_ms BIGINT,
            poll_first_placed BIGINT NOT NULL DEFAULT 0,
            expected_completion_at_ms BIGINT,
            PRIMARY KEY (agent_id, task_id)
        );
        -- The pace learned per app (by agent_id) from finished deliveries, as in the SQLite
        -- store.
        CREATE TABLE app_pace (
            agent_id BIGINT NOT NULL PRIMARY KEY,
            pace_log DOUBLE PRECISION NOT NULL,
            pace_samples BIGINT NOT NULL,
            quick_completion_log DOUBLE PRECISION NOT NULL,
            completion_samples BIGINT NOT NULL
        );
        -- Monthly call counts per quota scope, as in the SQLite store: '' for the
        -- organisation of the internal apps, `app/corp_id` for each corp of a third-party app.
        CREATE TABLE month_calls (
            scope TEXT NOT NULL,
            month TEXT NOT NULL,
            calls BIGINT NOT NULL,
            PRIMARY KEY (scope, month)
        );
        CREATE TABLE exporter_state (
            key TEXT NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        );
        -- Who polls an app (and, for third-party apps, a corp of it: '' for internal apps).
        CREATE TABLE leases (
            app TEXT NOT NULL,
            corp TEXT NOT NULL DEFAULT '',
            owner TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (app, corp)
        );
        -- Replicas alive, for spreading the apps evenly over them.
        CREATE TABLE replicas (
            replica TEXT NOT NULL PRIMARY KEY,
            seen_until TIMESTAMPTZ NOT NULL
        );
        CREATE FUNCTION dingtalk_exporter_task_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            changed RECORD;
        BEGIN
            IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
            PERFORM pg_notify('dingtalk_exporter_tasks',
                current_setting('application_name') || ' ' || changed.agent_id || ' ' || changed.task_id);
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER tasks_changed AFTER INSERT OR UPDATE OR DELETE ON tasks
            FOR EACH ROW EXECUTE FUNCTION dingtalk_exporter_task_changed();
    ",
}];

/// The newest schema this binary can read and write.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const TASK_COLUMNS: &str = "agent_id, task_id, name, state, status, progress_ratio, \
    created_at_ms, last_poll_at_ms, last_progress_change_at_ms, last_errcode, ended_at_ms, \
    next_poll_at_ms, metered_calls, recipients_read, recipients_unread, recipients_failed, \
    recipients_forbidden, recipients_invalid, result_fetch, result_errcode, poll_anchor_ms, \
    poll_anchor_ratio, poll_anchored_running, poll_result_attempts, poll_last_interval_ms, \
    source, recipients_expected, poll_started_at_ms, poll_first_placed, \
    expected_completion_at_ms";
const TASK_PLACEHOLDERS: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
    $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30";

/// Where to connect, and as whom: enough to open the pool and the notification connection.
/// The password is kept apart from the URL and never printed.
#[derive(Clone)]
pub struct PostgresTarget {
    config: tokio_postgres::Config,
    /// The URL as given (it holds no password), named in every error.
    shown: String,
}

impl PostgresTarget {
    /// `url` has no password (configuration refuses one); `password` is set on the
    /// connection settings apart from it. `replica` names this replica's connections
    /// (`application_name`), so the change trigger can tell whose change it announces.
    pub fn new(
        url: &str,
        password: Option<&Secret>,
        replica: &str,
    ) -> Result<PostgresTarget, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError(format!("{url}: not a PostgreSQL URL: {err}")))?;
        if let Some(password) = password {
            config.password(password.expose());
        }
        config.application_name(replica);
        config.connect_timeout(OPERATION_TIMEOUT);
        Ok(PostgresTarget {
            config,
            shown: url.to_string(),
        })
    }

    /// The URL (without password), for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens one connection outside the pool and listens on `channel` there. The
    /// notifications arrive on the returned channel, which closes when the connection ends
    /// (the database restarted, the network broke): the caller then opens a new one.
    pub async fn listen(&self, channel: &str) -> Result<Listening, StoreError> {
        let (client, mut connection) =
            tokio::time::timeout(OPERATION_TIMEOUT, self.config.connect(tls_connector()))
                .await
                .map_err(|_| StoreError(format!("{}: connecting timed out", self.shown)))?
                .map_err(|err| StoreError(format!("{}: cannot connect: {err}", self.shown)))?;
        let (sender, notes) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(note))) => {
                        if sender.send(note).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        tokio::time::timeout(
            OPERATION_TIMEOUT,
            client.batch_execute(&format!("LISTEN {channel}")),
        )
        .await
        .map_err(|_| StoreError(format!("{}: LISTEN timed out", self.shown)))?
        .map_err(|err| StoreError(format!("{}: cannot LISTEN: {err}", self.shown)))?;
        Ok(Listening {
            _client: client,
            notes,
        })
    }
}

/// A connection listening for notifications.
pub struct Listening {
    /// Dropping the client would end the session, and with it the LISTEN.
    _client: tokio_postgres::Client,
    pub notes: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
}

/// TLS by rustls with the system's roots; `sslmode=prefer` (the default) falls back to a
/// plain connection when the server offers no TLS, `sslmode=require` insists.
fn tls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the default TLS versions are supported")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// The tasks, counters and leases in a PostgreSQL database shared by the replicas.
pub struct PostgresStore {
    pool: Pool,
    target: PostgresTarget,
    /// Drives the pool's connections and runs the synchronous calls; shut down in the
    /// background on drop, which is allowed inside an async context too.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A failure inside an operation, before it is worded for the operator.
enum Failure {
    Sql(tokio_postgres::Error),
    Pool(String),
    Data(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(err: tokio_postgres::Error) -> Failure {
        Failure::Sql(err)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The server's own message (`db error: ...`) says more than the summary.
            Failure::Sql(err) => match err.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => write!(f, "{err}"),
            },
            Failure::Pool(text) | Failure::Data(text) => f.write_str(text),
        }
    }
}

impl PostgresStore {
    /// Connects, and brings the schema up to date (one replica at a time). Refuses a
    /// database whose schema a newer release wrote.
    pub fn open(target: PostgresTarget) -> Result<PostgresStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres-store")
            .enable_all()
            .build()
            .map_err(|err| StoreError(format!("cannot start the database runtime: {err}")))?;
        let manager = Manager::from_config(
            target.config.clone(),
            tls_connector(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _inside = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(OPERATION_TIMEOUT))
                .create_timeout(Some(OPERATION_TIMEOUT))
                .recycle_timeout(Some(OPERATION_TIMEOUT))
                .build()
                .map_err(|err| {
                    StoreError(format!("{}: cannot build the pool: {err}", target.shown))
                })?
        };
        let store = PostgresStore {
            pool,
            target,
            runtime: Some(runtime),
        };
        store.run(
            || "cannot bring the schema up to date".to_string(),
            |pool| async move { migrate(&pool, MIGRATIONS).await },
        )?;
        Ok(store)
    }

    /// Where it connects (without password), and how, for the lease keeper and listener.
    pub fn target(&self) -> &PostgresTarget {
        &self.target
    }

    /// The connection pool, for async callers on any runtime (the lease keeper).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `work` on the store's runtime and waits for it, with the operation timeout.
    fn run<T, F, Fut>(&self, what: impl FnOnce() -> String, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError("the database runtime is gone".to_string()))?;
        let future = work(self.pool.clone());
        let (sender, answer) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, future).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Failure::Pool(format!(
                    "no answer within {}s",
                    OPERATION_TIMEOUT.as_secs()
                ))),
            };
            let _ = sender.send(outcome);
        });
        let outcome = answer
            .recv()
            .unwrap_or_else(|_| Err(Failure::Pool("the operation was dropped".to_string())));
        outcome
            .map_err(|failure| StoreError(format!("{}: {}: {failure}", self.target.shown, what())))
    }
}

/// A connection from the pool, or why there is none.
async fn connection(pool: &Pool) -> Result<deadpool_postgres::Object, Failure> {
    pool.get()
        .await
        .map_err(|err| Failure::Pool(format!("cannot connect: {err}")))
}

/// Brings the schema up to the last of `migrations`, each step in its own transaction under
/// an advisory lock, so that replicas starting together migrate once.
async fn migrate(pool: &Pool, migrations: &[Migration]) -> Result<(), Failure> {
    let known = migrations.last().map_or(0, |last| last.version);
    let mut client = connection(pool).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS dingtalk_exporter_schema (version BIGINT NOT NULL)",
        )
        .await?;
    for migration in migrations {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let version: i64 = tx
            .query_opt("SELECT version FROM dingtalk_exporter_schema", &[])
            .await?
            .map_or(0, |row| row.get(0));
        if version > known {
            return Err(Failure::Data(format!(
                "the database has schema version {version}, newer than the {known} this \
                 dingtalk-exporter knows; it was written by a newer release: run that release \
                 on every replica"
            )));
        }
        if version >= migration.version {
            continue;
        }
        tx.batch_execute(migration.sql).await?;
        tx.execute("DELETE FROM dingtalk_exporter_schema", &[])
            .await?;
        tx.execute(
            "INSERT INTO dingtalk_exporter_schema (version) VALUES ($1)",
            &[&migration.version],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Parameters of one statement, owned so that they can travel to the store's runtime.
type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn borrowed(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|param| param.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl TaskStore for PostgresStore {
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        let rows = tasks.iter().map(task_values).collect::<Result<Vec<_>, _>>();
        let count = tasks.len();
        self.run(
            || format!("cannot register {count} task(s)"),
            |pool| async move {
                let rows = rows?;
                let mut client = connection(&pool).await?;
                let tx = client.transaction().await?;
                let insert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({TASK_PLACEHOLDERS}) \
                         ON CONFLICT (agent_id, task_id) DO NOTHING"
                    ))
                    .await?;
                let mut created = Vec::with_capacity(rows.len());
                for row in &rows {
                    created.push(tx.execute(&insert, &borrowed(row)).await? == 1);
                }
                tx.commit().await?;
                Ok(created)
            },
        )
    }

    fn save(&self, tasks: &[Task]) -> Result<(), StoreError> {
        let rows = tasks.iter().map(task_values).collect::<Result<Vec<_>, _>>();
        let count = tasks.len();
        self.run(
            || format!("cannot save {count} task(s)"),
            |pool| async move {
                let rows = rows?;
                let updates = TASK_COLUMNS
                    .split(", ")
                    .filter(|column| !matches!(*column, "agent_id" | "task_id"))
                    .map(|column| format!("{column} = excluded.{column}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut client = connection(&pool).await?;
                let tx = client.transaction().await?;
                let upsert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({TASK_PLACEHOLDERS}) \
                         ON CONFLICT (agent_id, task_id) DO UPDATE SET {updates}"
                    ))
                    .await?;
                for row in &rows {
                    tx.execute(&upsert, &borrowed(row)).await?;
                }
                tx.commit().await?;
                Ok(())
            },
        )
    }

    fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        self.run(
            || format!("cannot remove task {}/{}", key.agent_id, key.task_id),
            |pool| async move {
                let client = connection(&pool).await?;
                let removed = client
                    .execute(
                        "DELETE FROM tasks WHERE agent_id = $1 AND task_id = $2",
                        &[&key.agent_id, &key.task_id],
                    )
                    .await?;
                Ok(removed > 0)
            },
        )
    }

    fn load_all(&self) -> Result<Vec<Task>, StoreError> {
        self.run(
            || "cannot load the tracked tasks".to_string(),
            |pool| async move {
                let client = connection(&pool).await?;
                let rows = client
                    .query(&format!("SELECT {TASK_COLUMNS} FROM tasks"), &[])
                    .await?;
                rows.iter().map(task_from_row).collect()
            },
        )
    }

    fn load(&self, key: TaskKey) -> Result<Option<Task>, StoreError> {
        self.run(
            || format!("cannot load task {}/{}", key.agent_id, key.task_id),
            |pool| async move {
                let client = connection(&pool).await?;
                let row = client
                    .query_opt(
                        &format!(
                            "SELECT {TASK_COLUMNS} FROM tasks WHERE agent_id = $1 AND task_id = $2"
                        ),
                        &[&key.agent_id, &key.task_id],
                    )
                    .await?;
                row.as_ref().map(task_from_row).transpose()
            },
        )
    }

    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError> {
        let scope = scope.to_string();
        let month = month.to_string();
        let shown = month.clone();
        self.run(
            || format!("cannot read the call counter of {shown}"),
            |pool| async move {
                let client = connection(&pool).await?;
                let calls: Option<i64> = client
                    .query_opt(
                        "SELECT calls FROM month_calls WHERE scope = $1 AND month = $2",
                        &[&scope, &month],
                    )
                    .await?
                    .map(|row| row.get(0));
                calls.map_or(Ok(0), |calls| to_count("month_calls.calls", calls))
            },
        )
    }

    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError> {
        self.add_month_calls_within(scope, month, calls, 0)
            .map(|grant| grant.total)
    }

    fn add_month_calls_within(
        &self,
        scope: &str,
        month: &str,
        calls: u64,
        ceiling: u64,
    ) -> Result<MonthGrant, StoreError> {
        let scope = scope.to_string();
        let month = month.to_string();
        let shown = month.clone();
        self.run(
            || format!("cannot count {calls} call(s) in {shown}"),
            |pool| async move {
                let mut client = connection(&pool).await?;
                let tx = client.transaction().await?;
                tx.execute(
                    "INSERT INTO month_calls (scope, month, calls) VALUES ($1, $2, 0) \
                     ON CONFLICT (scope, month) DO NOTHING",
                    &[&scope, &month],
                )
                .await?;
                // The row lock makes reading, checking and raising the count one step for
                // every replica: two cannot both take the last call of the budget.
                let current: i64 = tx
                    .query_one(
                        "SELECT calls FROM month_calls \
                         WHERE scope = $1 AND month = $2 FOR UPDATE",
                        &[&scope, &month],
                    )
                    .await?
                    .get(0);
                let current = to_count("month_calls.calls", current)?;
                let granted = if ceiling == 0 {
                    calls
                } else {
                    calls.min(ceiling.saturating_sub(current))
                };
                let total = current.saturating_add(granted);
                tx.execute(
                    "UPDATE month_calls SET calls = $3 WHERE scope = $1 AND month = $2",
                    &[&scope, &month, &to_column("calls", total)?],
                )
                .await?;
                tx.commit().await?;
                Ok(MonthGrant { total, granted })
            },
        )
    }

    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        let shown = key.clone();
        self.run(
            || format!("cannot read the exporter state {shown:?}"),
            |pool| async move {
                let client = connection(&pool).await?;
                Ok(client
                    .query_opt("SELECT value FROM exporter_state WHERE key = $1", &[&key])
                    .await?
                    .map(|row| row.get(0)))
            },
        )
    }

    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let key = key.to_string();
        let shown = key.clone();
        let value = value.map(str::to_string);
        self.run(
            || format!("cannot write the exporter state {shown:?}"),
            |pool| async move {
                let client = connection(&pool).await?;
                match value {
                    Some(value) => {
                        client
                            .execute(
                                "INSERT INTO exporter_state (key, value) VALUES ($1, $2) \
                                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                &[&key, &value],
                            )
                            .await?
                    }
                    None => {
                        client
                            .execute("DELETE FROM exporter_state WHERE key = $1", &[&key])
                            .await?
                    }
                };
                Ok(())
            },
        )
    }

    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
        self.run(
            || "cannot load the learned paces".to_string(),
            |pool| async move {
                let client = connection(&pool).await?;
                let rows = client
                    .query(
                        "SELECT agent_id, pace_log, pace_samples, quick_completion_log, \
                         completion_samples FROM app_pace",
                        &[],
                    )
                    .await?;
                let mut paces = Vec::with_capacity(rows.len());
                for row in &rows {
                    let agent_id: i64 = row.try_get(0)?;
                    let samples = |index: usize, field: &str| -> Result<u32, Failure> {
                        let stored: i64 = row.try_get(index)?;
                        u32::try_from(stored).map_err(|_| {
                            Failure::Data(format!(
                                "app_pace {agent_id}: {field} is out of range ({stored})"
                            ))
                        })
                    };
                    let pace = LearnedPace {
                        pace_log: row.try_get(1)?,
                        pace_samples: samples(2, "pace_samples")?,
                        quick_completion_log: row.try_get(3)?,
                        completion_samples: samples(4, "completion_samples")?,
                    };
                    paces.push((agent_id, pace));
                }
                Ok(paces)
            },
        )
    }

    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError> {
        let pace = *pace;
        self.run(
            || format!("cannot save the learned pace of agent {agent_id}"),
            |pool| async move {
                let client = connection(&pool).await?;
                client
                    .execute(
                        "INSERT INTO app_pace (agent_id, pace_log, pace_samples, \
                         quick_completion_log, completion_samples) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (agent_id) DO UPDATE SET pace_log = excluded.pace_log, \
                         pace_samples = excluded.pace_samples, \
                         quick_completion_log = excluded.quick_completion_log, \
                         completion_samples = excluded.completion_samples",
                        &[
                            &agent_id,
                            &pace.pace_log,
                            &i64::from(pace.pace_samples),
                            &pace.quick_completion_log,
                            &i64::from(pace.completion_samples),
                        ],
                    )
                    .await?;
                Ok(())
            },
        )
    }
}

fn to_column(field: &str, count: u64) -> Result<i64, Failure> {
    i64::try_from(count)
        .map_err(|_| Failure::Data(format!("{field} = {count} is too large to store")))
}

fn to_count(field: &str, stored: i64) -> Result<u64, Failure> {
    u64::try_from(stored)
        .map_err(|_| Failure::Data(format!("{field} holds a negative count {stored}")))
}

/// The values of [`TASK_COLUMNS`] for one task (the mapping of the SQLite store).
fn task_values(task: &Task) -> Result<Params, Failure> {
    let count = |field: &str, value: Option<u64>| -> Result<Option<i64>, Failure> {
        value.map(|count| to_column(field, count)).transpose()
    };
    let recipients = task.recipients;
    let memory = task.poll_memory;
    Ok(vec![
        Box::new(task.key.agent_id),
        Box::new(task.key.task_id),
        Box::new(task.name.clone()),
        Box::new(task.state.as_str().to_string()),
        Box::new(task.status.map(|status| status.as_str().to_string())),
        Box::new(task.progress_ratio),
        Box::new(task.created_at_ms),
        Box::new(task.last_poll_at_ms),
        Box::new(task.last_progress_change_at_ms),
        Box::new(task.last_errcode),
        Box::new(task.ended_at_ms),
        Box::new(task.next_poll_at_ms),
        Box::new(to_column("metered_calls", task.metered_calls)?),
        Box::new(count("recipients_read", recipients.map(|r| r.read))?),
        Box::new(count("recipients_unread", recipients.map(|r| r.unread))?),
        Box::new(count("recipients_failed", recipients.map(|r| r.failed))?),
        Box::new(count(
            "recipients_forbidden",
            recipients.map(|r| r.forbidden),
        )?),
        Box::new(count("recipients_invalid", recipients.map(|r| r.invalid))?),
        Box::new(task.result_fetch.as_str().to_string()),
        Box::new(task.result_fetch.refused_errcode()),
        Box::new(memory.anchor_ms),
        Box::new(memory.anchor_ratio),
        Box::new(i64::from(memory.anchored_running)),
        Box::new(i64::from(memory.result_attempts)),
        Box::new(memory.last_interval_ms),
        Box::new(task.source.as_str().to_string()),
        Box::new(count("recipients_expected", task.recipients_expected)?),
        Box::new(memory.started_at_ms),
        Box::new(i64::from(memory.first_poll_placed)),
        Box::new(task.expected_completion_at_ms),
    ])
}

/// One row of [`TASK_COLUMNS`] as a task; a value no release wrote is an error naming it.
fn task_from_row(row: &Row) -> Result<Task, Failure> {
    let key = TaskKey {
        agent_id: row.try_get(0)?,
        task_id: row.try_get(1)?,
    };
    let bad =
        |what: String| Failure::Data(format!("task {}/{}: {what}", key.agent_id, key.task_id));
    let count = |index: usize, field: &str| -> Result<Option<u64>, Failure> {
        let stored: Option<i64> = row.try_get(index)?;
        stored
            .map(|value| {
                u64::try_from(value).map_err(|_| bad(format!("{field} is negative ({value})")))
            })
            .transpose()
    };
    let state_word: String = row.try_get(3)?;
    let state = TaskState::parse(&state_word)
        .ok_or_else(|| bad(format!("unknown state {state_word:?}")))?;
    let status = match row.try_get::<_, Option<String>>(4)? {
        None => None,
        Some(word) => {
            Some(SendStatus::parse(&word).ok_or_else(|| bad(format!("unknown status {word:?}")))?)
        }
    };
    let metered_calls =
        count(12, "metered_calls")?.ok_or_else(|| bad("metered_calls is NULL".to_string()))?;
    let recipients = RecipientCounts::from_columns([
        count(13, "recipients_read")?,
        count(14, "recipients_unread")?,
        count(15, "recipients_failed")?,
        count(16, "recipients_forbidden")?,
        count(17, "recipients_invalid")?,
    ])
    .map_err(bad)?;
    let fetch_word: String = row.try_get(18)?;
    let refused_errcode: Option<i64> = row.try_get(19)?;
    let result_fetch = ResultFetch::from_stored(&fetch_word, refused_errcode)
        .ok_or_else(|| bad(format!("unknown result fetch {fetch_word:?}")))?;
    let result_attempts: i64 = row.try_get(23)?;
    let poll_memory = PollMemory {
        anchor_ms: row.try_get(20)?,
        anchor_ratio: row.try_get(21)?,
        anchored_running: row.try_get::<_, i64>(22)? != 0,
        result_attempts: u32::try_from(result_attempts).map_err(|_| {
            bad(format!(
                "poll_result_attempts is out of range ({result_attempts})"
            ))
        })?,
        last_interval_ms: row.try_get(24)?,
        started_at_ms: row.try_get(27)?,
        first_poll_placed: row.try_get::<_, i64>(28)? != 0,
    };
    let source_word: String = row.try_get(25)?;
    let source = TaskSource::parse(&source_word)
        .ok_or_else(|| bad(format!("unknown source {source_word:?}")))?;
    Ok(Task {
        key,
        name: row.try_get(2)?,
        source,
        recipients_expected: count(26, "recipients_expected")?,
        state,
        status,
        progress_ratio: row.try_get(5)?,
        created_at_ms: row.try_get(6)?,
        last_poll_at_ms: row.try_get(7)?,
        last_progress_change_at_ms: row.try_get(8)?,
        last_errcode: row.try_get(9)?,
        ended_at_ms: row.try_get(10)?,
        next_poll_at_ms: row.try_get(11)?,
        metered_calls,
        recipients,
        result_fetch,
        poll_memory,
        expected_completion_at_ms: row.try_get(29)?,
    })
}

/// Runs one statement on a pooled connection from async code (the lease keeper).
pub(super) async fn with_client<T>(
    pool: &Pool,
    work: impl AsyncFnOnce(&deadpool_postgres::Object) -> Result<T, tokio_postgres::Error>,
) -> Result<T, String> {
    let client = pool
        .get()
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    match tokio::time::timeout(OPERATION_TIMEOUT, work(&client)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(Failure::Sql(err).to_string()),
        Err(_) => Err(format!("no answer within {}s", OPERATION_TIMEOUT.as_secs())),
    }
}
