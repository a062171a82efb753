//! The monthly call gate over a real SQLite store: the budget is a hard ceiling, the count
//! rolls over at Shanghai midnight and survives restarts, and DingTalk's 90020 stop holds
//! until the month ends or the budget changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::time::{Duration, Instant};

use dingtalk_exporter::clock::{quota_month, quota_month_end_ms};
use dingtalk_exporter::dingtalk::{ApiFailure, CallGate, Deferral};
use dingtalk_exporter::telemetry::Telemetry;
use dingtalk_exporter::tracker::budget::MonthlyCallGate;
use dingtalk_exporter::tracker::sqlite::SqliteStore;
use dingtalk_exporter::tracker::{LearnedPace, StoreError, Task, TaskKey, TaskStore};

/// 2026-11-30T15:59:59.999Z: the last millisecond of November 2026 in Shanghai.
const LAST_MS_OF_NOVEMBER: i64 = 1_796_054_399_999;
/// 2026-11-15T04:00:00Z, mid-month.
const MID_NOVEMBER: i64 = 1_794_715_200_000;

fn scratch_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dingtalk-exporter.db");
    (dir, path)
}

/// A gate as the exporter builds it at start: the store file opened afresh, new telemetry.
fn start_gate(path: &Path, budget: u64, now_ms: i64) -> (MonthlyCallGate, Arc<Telemetry>) {
    let store = Arc::new(SqliteStore::open(path).expect("open store"));
    let telemetry = Arc::new(Telemetry::new());
    let gate = MonthlyCallGate::new(store, budget, telemetry.clone(), now_ms).expect("gate");
    (gate, telemetry)
}

fn deferral(result: Result<(), ApiFailure>) -> (Deferral, i64) {
    match result {
        Err(ApiFailure::Deferred { reason, until_ms }) => (reason, until_ms),
        other => panic!("expected a deferral, got {other:?}"),
    }
}

/// Many threads reserving at once never get more calls than the budget, and every one that
/// got through is counted in the store.
#[test]
fn budget_is_a_hard_ceiling_under_concurrent_callers() {
    let (_dir, path) = scratch_file();
    let budget = 7;
    let (gate, telemetry) = start_gate(&path, budget, MID_NOVEMBER);
    let gate = Arc::new(gate);
    let start = Arc::new(Barrier::new(16));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let gate = gate.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let mut granted = 0u64;
                for _ in 0..10 {
                    match gate.reserve(MID_NOVEMBER) {
                        Ok(()) => granted += 1,
                        Err(refused) => {
                            let (reason, until_ms) = deferral(Err(refused));
                            assert_eq!(reason, Deferral::MonthlyBudget);
                            assert_eq!(until_ms, quota_month_end_ms(MID_NOVEMBER));
                        }
                    }
                }
                granted
            })
        })
        .collect();
    let granted: u64 = callers
        .into_iter()
        .map(|caller| caller.join().expect("caller"))
        .sum();

    assert_eq!(granted, budget);
    assert_eq!(gate.calls_this_month(MID_NOVEMBER), budget);
    assert_eq!(gate.remaining(MID_NOVEMBER), Some(0));
    assert_eq!(telemetry.month_calls(), budget as i64);
    let reader = SqliteStore::open(&path).expect("second connection");
    assert_eq!(
        reader
            .month_calls("", &quota_month(MID_NOVEMBER))
            .expect("count"),
        budget,
        "each granted call was committed before it was granted"
    );
}

/// The count starts again at midnight in Shanghai; the spent month keeps its count.
#[test]
fn month_rolls_over_at_shanghai_midnight() {
    let (_dir, path) = scratch_file();
    let (gate, telemetry) = start_gate(&path, 2, LAST_MS_OF_NOVEMBER - 10);
    gate.reserve(LAST_MS_OF_NOVEMBER - 10).expect("first");
    gate.reserve(LAST_MS_OF_NOVEMBER - 5).expect("second");
    let (reason, until_ms) = deferral(gate.reserve(LAST_MS_OF_NOVEMBER));
    assert_eq!(reason, Deferral::MonthlyBudget);
    assert_eq!(
        until_ms,
        LAST_MS_OF_NOVEMBER + 1,
        "held until Shanghai midnight"
    );
    assert_eq!(telemetry.month_calls(), 2);

    let december = LAST_MS_OF_NOVEMBER + 1;
    assert_eq!(gate.calls_this_month(december), 0);
    assert_eq!(
        telemetry.month_calls(),
        0,
        "the gauge follows the new month"
    );
    assert_eq!(gate.remaining(december), Some(2));
    gate.reserve(december).expect("budget renewed");
    assert_eq!(telemetry.month_calls(), 1);

    let store = SqliteStore::open(&path).expect("reader");
    assert_eq!(store.month_calls("", "2026-11").expect("november"), 2);
    assert_eq!(store.month_calls("", "2026-12").expect("december"), 1);
}

/// A restarted exporter continues the month's count (gauge included) instead of resetting it.
#[test]
fn count_survives_a_restart() {
    let (_dir, path) = scratch_file();
    {
        let (gate, _telemetry) = start_gate(&path, 5, MID_NOVEMBER);
        for _ in 0..3 {
            gate.reserve(MID_NOVEMBER).expect("within budget");
        }
    }
    let (gate, telemetry) = start_gate(&path, 5, MID_NOVEMBER + 60_000);
    assert_eq!(telemetry.month_calls(), 3, "gauge right from the start");
    assert_eq!(gate.calls_this_month(MID_NOVEMBER + 60_000), 3);
    assert_eq!(gate.remaining(MID_NOVEMBER + 60_000), Some(2));
    gate.reserve(MID_NOVEMBER + 60_000).expect("fourth");
    gate.reserve(MID_NOVEMBER + 60_000).expect("fifth");
    let (reason, _) = deferral(gate.reserve(MID_NOVEMBER + 60_000));
    assert_eq!(reason, Deferral::MonthlyBudget);
}

/// Without a budget every call goes through, and is still counted.
#[test]
fn no_budget_counts_calls_without_limiting_them() {
    let (_dir, path) = scratch_file();
    let (gate, telemetry) = start_gate(&path, 0, MID_NOVEMBER);
    for _ in 0..25 {
        gate.reserve(MID_NOVEMBER).expect("unlimited");
    }
    assert_eq!(gate.budget(), 0);
    assert_eq!(gate.remaining(MID_NOVEMBER), None);
    assert_eq!(gate.calls_this_month(MID_NOVEMBER), 25);
    assert_eq!(telemetry.month_calls(), 25);
}

/// After 90020 no metered call goes out until the month ends, also after a restart with the
/// same budget.
#[test]
fn quota_stop_holds_until_month_end_and_across_a_restart() {
    let (_dir, path) = scratch_file();
    let end = quota_month_end_ms(MID_NOVEMBER);
    {
        let (gate, _telemetry) = start_gate(&path, 100, MID_NOVEMBER);
        gate.reserve(MID_NOVEMBER).expect("before 90020");
        gate.quota_exhausted(MID_NOVEMBER);
        assert_eq!(
            deferral(gate.reserve(MID_NOVEMBER + 1)),
            (Deferral::QuotaExhausted, end)
        );
        assert_eq!(gate.quota_exhausted_until(MID_NOVEMBER + 1), Some(end));
    }
    let (gate, telemetry) = start_gate(&path, 100, MID_NOVEMBER + 3_600_000);
    assert_eq!(
        deferral(gate.reserve(MID_NOVEMBER + 3_600_000)),
        (Deferral::QuotaExhausted, end)
    );
    assert_eq!(telemetry.month_calls(), 1, "refused calls are not counted");

    gate.reserve(end).expect("a new month lifts the stop");
    assert_eq!(gate.quota_exhausted_until(end), None);
}

/// A restart with a changed budget lifts the 90020 stop for good, as does a reload.
#[test]
fn a_changed_budget_lifts_the_quota_stop() {
    let (_dir, path) = scratch_file();
    {
        let (gate, _telemetry) = start_gate(&path, 100, MID_NOVEMBER);
        gate.quota_exhausted(MID_NOVEMBER);
    }
    {
        let (gate, _telemetry) = start_gate(&path, 200, MID_NOVEMBER + 1);
        gate.reserve(MID_NOVEMBER + 1)
            .expect("restart with a new budget");
    }
    // Back to the old budget: the stop was cleared, not merely ignored.
    let (gate, _telemetry) = start_gate(&path, 100, MID_NOVEMBER + 2);
    gate.reserve(MID_NOVEMBER + 2).expect("stop stays lifted");

    gate.quota_exhausted(MID_NOVEMBER + 3);
    assert_eq!(
        deferral(gate.reserve(MID_NOVEMBER + 4)).0,
        Deferral::QuotaExhausted
    );
    gate.set_budget(100);
    assert_eq!(
        deferral(gate.reserve(MID_NOVEMBER + 5)).0,
        Deferral::QuotaExhausted,
        "reloading the same budget changes nothing"
    );
    gate.set_budget(150);
    gate.reserve(MID_NOVEMBER + 6)
        .expect("reload with a new budget");
}

/// Reloading the budget takes effect at once: lowered below the count it refuses, raised
/// it allows again.
#[test]
fn reloaded_budget_applies_immediately() {
    let (_dir, path) = scratch_file();
    let (gate, _telemetry) = start_gate(&path, 10, MID_NOVEMBER);
    for _ in 0..4 {
        gate.reserve(MID_NOVEMBER).expect("within budget");
    }
    gate.set_budget(3);
    assert_eq!(gate.budget(), 3);
    assert_eq!(gate.remaining(MID_NOVEMBER), Some(0));
    assert_eq!(
        deferral(gate.reserve(MID_NOVEMBER)).0,
        Deferral::MonthlyBudget
    );
    gate.set_budget(5);
    gate.reserve(MID_NOVEMBER).expect("raised budget");
    assert_eq!(
        deferral(gate.reserve(MID_NOVEMBER)).0,
        Deferral::MonthlyBudget
    );
}

/// A real SQLite store that counts the commits of the call counter and holds the first one
/// back until told to go, to see which callers share a commit.
struct HeldCommitStore {
    inner: SqliteStore,
    commits: AtomicU64,
    release_first: Mutex<Option<mpsc::Receiver<()>>>,
}

impl HeldCommitStore {
    fn open(path: &Path) -> (Arc<HeldCommitStore>, mpsc::Sender<()>) {
        let (release, released) = mpsc::channel();
        let store = HeldCommitStore {
            inner: SqliteStore::open(path).expect("open store"),
            commits: AtomicU64::new(0),
            release_first: Mutex::new(Some(released)),
        };
        (Arc::new(store), release)
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }
}

impl TaskStore for HeldCommitStore {
    fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        self.inner.insert_new(tasks)
    }
    fn save(&self, tasks: &[Task]) -> Result<(), StoreError> {
        self.inner.save(tasks)
    }
    fn remove(&self, key: TaskKey) -> Result<bool, StoreError> {
        self.inner.remove(key)
    }
    fn load_all(&self) -> Result<Vec<Task>, StoreError> {
        self.inner.load_all()
    }
    fn month_calls(&self, scope: &str, month: &str) -> Result<u64, StoreError> {
        self.inner.month_calls(scope, month)
    }
    fn add_month_calls(&self, scope: &str, month: &str, calls: u64) -> Result<u64, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let held = self.release_first.lock().expect("lock").take();
        if let Some(released) = held {
            released.recv().expect("the test releases the commit");
        }
        self.inner.add_month_calls(scope, month, calls)
    }
    fn exporter_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.exporter_state(key)
    }
    fn set_exporter_state(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.inner.set_exporter_state(key, value)
    }

    fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
        self.inner.learned_paces()
    }

    fn save_learned_pace(&self, agent_id: i64, pace: &LearnedPace) -> Result<(), StoreError> {
        self.inner.save_learned_pace(agent_id, pace)
    }
}

/// Polls `condition` until it holds, failing the test after a generous deadline.
fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Callers arriving while a commit is under way share the next one (one fsync, not one each),
/// none is let through before its call is counted, and the gate still answers meanwhile.
#[test]
fn callers_waiting_on_a_commit_share_the_next_one() {
    let (_dir, path) = scratch_file();
    let (store, release) = HeldCommitStore::open(&path);
    let telemetry = Arc::new(Telemetry::new());
    let gate = Arc::new(
        MonthlyCallGate::new(store.clone(), 1_000, telemetry.clone(), MID_NOVEMBER).expect("gate"),
    );
    let reserve = |gate: &Arc<MonthlyCallGate>| {
        let gate = gate.clone();
        std::thread::spawn(move || gate.reserve(MID_NOVEMBER))
    };
    let first = reserve(&gate);
    wait_for("the first commit", || store.commits() == 1);
    let others: Vec<_> = (0..8).map(|_| reserve(&gate)).collect();
    wait_for("eight calls gathered behind it", || {
        gate.remaining(MID_NOVEMBER) == Some(1_000 - 9)
    });
    assert_eq!(telemetry.month_calls(), 0, "nothing counted yet");
    assert!(
        !first.is_finished(),
        "no call goes out before it is counted"
    );
    assert!(others.iter().all(|other| !other.is_finished()));

    release.send(()).expect("release");
    first.join().expect("first").expect("granted");
    for other in others {
        other.join().expect("caller").expect("granted");
    }
    assert_eq!(store.commits(), 2, "eight calls, one commit");
    assert_eq!(gate.calls_this_month(MID_NOVEMBER), 9);
    assert_eq!(
        SqliteStore::open(&path)
            .expect("reader")
            .month_calls("", &quota_month(MID_NOVEMBER))
            .expect("count"),
        9
    );
}

/// On a multi-threaded runtime a call waiting for its commit does not stall the other tasks
/// of its worker thread (here the only one).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_commit_under_way_does_not_stall_other_async_tasks() {
    let (_dir, path) = scratch_file();
    let (store, release) = HeldCommitStore::open(&path);
    let gate = Arc::new(
        MonthlyCallGate::new(store.clone(), 0, Arc::new(Telemetry::new()), MID_NOVEMBER)
            .expect("gate"),
    );
    let reserving = tokio::spawn({
        let gate = gate.clone();
        async move { gate.reserve(MID_NOVEMBER) }
    });
    wait_for("the reserve to be committing", || store.commits() == 1);
    // Waited for with blocking calls on this thread, which is not the worker: were the worker
    // stalled, Tokio's timers would stall with it and a timeout would never fire.
    let (ran, other_ran) = mpsc::channel();
    tokio::spawn(async move {
        let _ = ran.send(());
    });
    let other_ran = other_ran.recv_timeout(Duration::from_secs(10));
    release.send(()).expect("release");
    assert!(
        other_ran.is_ok(),
        "another task ran while the commit was held"
    );
    reserving.await.expect("task").expect("granted");
}

/// Reserving from a current-thread runtime (where blocking cannot be handed off) works too.
#[tokio::test]
async fn reserving_on_a_current_thread_runtime_works() {
    let (_dir, path) = scratch_file();
    let (gate, telemetry) = start_gate(&path, 10, MID_NOVEMBER);
    gate.reserve(MID_NOVEMBER).expect("granted");
    gate.quota_exhausted(MID_NOVEMBER);
    gate.set_budget(20);
    gate.reserve(MID_NOVEMBER)
        .expect("granted after the budget changed");
    assert_eq!(telemetry.month_calls(), 2);
}
