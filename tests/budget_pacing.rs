//! Pacing of the monthly call budget over a real SQLite store, in virtual time: a normal
//! month's bursts go through untouched, a tight budget is spread over what is left of the
//! month instead of being spent at once, and the hard ceiling holds throughout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use dingtalk_exporter::clock::{quota_month, quota_month_end_ms};
use dingtalk_exporter::dingtalk::{ApiFailure, CallGate, Deferral};
use dingtalk_exporter::telemetry::Telemetry;
use dingtalk_exporter::tracker::TaskStore;
use dingtalk_exporter::tracker::budget::{BURST_FLOOR, MonthlyCallGate};
use dingtalk_exporter::tracker::sqlite::SqliteStore;

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// 2026-12-01T00:00:00+08:00: the end of November 2026 in Shanghai.
const DECEMBER: i64 = 1_796_054_400_000;
/// 2026-11-01T00:00:00+08:00: the start of November 2026 in Shanghai.
const NOVEMBER: i64 = DECEMBER - 30 * DAY;

fn scratch_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dingtalk-exporter.db");
    (dir, path)
}

/// Counts `calls` in the store directly, as earlier days of the month would have.
fn spend_earlier(path: &Path, now_ms: i64, calls: u64) {
    let store = SqliteStore::open(path).expect("open store");
    store
        .add_month_calls("", &quota_month(now_ms), calls)
        .expect("count earlier calls");
}

/// A gate as the exporter builds it at start: the store file opened afresh, new telemetry.
fn start_gate(path: &Path, budget: u64, now_ms: i64) -> (MonthlyCallGate, Arc<Telemetry>) {
    let store = Arc::new(SqliteStore::open(path).expect("open store"));
    let telemetry = Arc::new(Telemetry::new());
    let gate = MonthlyCallGate::new(store, budget, telemetry.clone(), now_ms).expect("gate");
    (gate, telemetry)
}

fn stored_calls(path: &Path, now_ms: i64) -> u64 {
    SqliteStore::open(path)
        .expect("reader")
        .month_calls("", &quota_month(now_ms))
        .expect("count")
}

/// The wait a refusal names, checked to be a budget deferral.
fn budget_deferral(result: Result<(), ApiFailure>) -> i64 {
    match result {
        Err(ApiFailure::Deferred {
            reason: Deferral::MonthlyBudget,
            until_ms,
        }) => until_ms,
        other => panic!("expected a budget deferral, got {other:?}"),
    }
}

/// A caller that always has a task due, as the scheduler under a heavy load: it asks again
/// at once after each call and, when held back, exactly at the `until_ms` it was given. Runs
/// from `from_ms` until `to_ms`, checks every refusal, and returns when each call went out.
fn hungry_caller(gate: &MonthlyCallGate, budget: u64, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let mut granted = Vec::new();
    let mut now = from_ms;
    while now < to_ms {
        let remaining = gate.remaining(now).expect("a budget is set");
        match gate.reserve(now) {
            Ok(()) => granted.push(now),
            Err(refused) => {
                let until_ms = budget_deferral(Err(refused));
                let month_end = quota_month_end_ms(now);
                assert!(until_ms > now, "a refusal must name a later time");
                assert!(until_ms <= month_end, "never later than the month's end");
                if remaining > 0 {
                    // At most the gap between two calls at an even pace.
                    let fair_gap = ((month_end - now) as u64).div_ceil(remaining) as i64;
                    assert!(
                        until_ms - now <= fair_gap,
                        "held {}s, longer than one call's share of the time left ({}s)",
                        (until_ms - now) / SECOND,
                        fair_gap / SECOND
                    );
                }
                now = until_ms;
            }
        }
        assert!(
            gate.calls_this_month(now) <= budget,
            "the budget is a hard ceiling"
        );
    }
    granted
}

/// A payroll notice polled a few dozen times early in the month, with the free edition's
/// 5,000 calls, is never held back.
#[test]
fn a_burst_early_in_the_month_is_not_held_back() {
    let (_dir, path) = scratch_file();
    let start = NOVEMBER + DAY + 9 * HOUR;
    let (gate, telemetry) = start_gate(&path, 5_000, start);
    for poll in 0..48 {
        gate.reserve(start + poll * 5 * SECOND)
            .unwrap_or_else(|refused| panic!("poll {poll} held back: {refused:?}"));
    }
    assert_eq!(telemetry.month_calls(), 48);
    let pace = gate.pace(start + 4 * 60 * SECOND).expect("a budget is set");
    assert!(
        pace.available >= 100,
        "most of the burst allowance is left: {pace:?}"
    );
}

/// A whole month of ordinary use (a notice a day, polled 48 times, and a bigger send on
/// payday) stays within the pace: not one call is held back.
#[test]
fn a_month_of_normal_use_is_never_held_back() {
    let (_dir, path) = scratch_file();
    let (gate, _telemetry) = start_gate(&path, 5_000, NOVEMBER);
    let mut made = 0u64;
    for day in 0..30 {
        let polls = if day == 14 { 120 } else { 48 };
        let morning = NOVEMBER + day * DAY + 10 * HOUR;
        for poll in 0..polls {
            let now = morning + poll * 5 * SECOND;
            gate.reserve(now)
                .unwrap_or_else(|refused| panic!("day {day} poll {poll} held back: {refused:?}"));
            made += 1;
        }
    }
    assert_eq!(gate.calls_this_month(DECEMBER - 1), made);
    assert_eq!(stored_calls(&path, DECEMBER - 1), made);
}

/// With 300 calls left for the last 10 days, an always-hungry poller is spread out: each
/// day gets about its share of what is left, the last day still gets calls, and the budget
/// is spent by the month's end, never beyond it.
#[test]
fn a_tight_budget_is_spread_over_the_rest_of_the_month() {
    let (_dir, path) = scratch_file();
    let budget = 5_000;
    let start = DECEMBER - 10 * DAY;
    spend_earlier(&path, start, budget - 300);
    let (gate, _telemetry) = start_gate(&path, budget, start);
    let burst = gate.pace(start).expect("a budget is set").burst;

    let granted = hungry_caller(&gate, budget, start, DECEMBER);

    let mut remaining = 300u64;
    for day in 0..10 {
        let from = start + day * DAY;
        let made = granted
            .iter()
            .filter(|at| (from..from + DAY).contains(*at))
            .count() as u64;
        let share = remaining as f64 / (10 - day) as f64;
        let low = share * 0.8 - 1.0;
        let high = share * 1.2 + 1.0 + if day == 0 { burst as f64 } else { 0.0 };
        assert!(
            (low..=high).contains(&(made as f64)),
            "day {day}: {made} calls, expected about {share:.1} (of {remaining} left)"
        );
        remaining -= made;
    }
    let last_day = granted.iter().filter(|at| **at >= DECEMBER - DAY).count();
    assert!(last_day >= 10, "the last day still gets calls: {last_day}");
    assert!(
        granted.iter().any(|at| *at >= DECEMBER - 6 * HOUR),
        "calls go out in the month's last hours too"
    );
    assert!(
        remaining <= 3,
        "what was left is spent by the month's end ({remaining} unused)"
    );
    let spent = stored_calls(&path, DECEMBER - 1);
    assert_eq!(spent, budget - remaining);
}

/// Concurrent callers at one instant share the burst: exactly that many calls go out, each
/// counted in the store, and the others are told to wait for the next call's share of time.
#[test]
fn concurrent_callers_cannot_spend_more_than_the_burst() {
    let (_dir, path) = scratch_file();
    let now = NOVEMBER + 15 * DAY;
    spend_earlier(&path, now, 4_900);
    let (gate, _telemetry) = start_gate(&path, 5_000, now);
    let burst = gate.pace(now).expect("a budget is set").burst;
    assert_eq!(burst, BURST_FLOOR, "100 calls over 15 days: the floor");
    let gate = Arc::new(gate);
    let start = Arc::new(Barrier::new(16));
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let (gate, start) = (gate.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut granted = 0u64;
                for _ in 0..5 {
                    match gate.reserve(now) {
                        Ok(()) => granted += 1,
                        Err(refused) => {
                            let until_ms = budget_deferral(Err(refused));
                            assert!(until_ms > now);
                            assert!(until_ms - now <= 15 * DAY / 90 + 1);
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
    assert_eq!(granted, burst);
    assert_eq!(stored_calls(&path, now), 4_900 + burst);
}

/// A restart continues the month's count and keeps the ceiling: each start may spend one
/// burst, but all the restarts together never get past the budget.
#[test]
fn restarts_keep_the_count_and_the_ceiling() {
    let (_dir, path) = scratch_file();
    let budget = 5_000;
    let mut now = NOVEMBER + 15 * DAY;
    spend_earlier(&path, now, budget - 100);
    let mut granted_total = 0u64;
    for restart in 0..15 {
        let (gate, telemetry) = start_gate(&path, budget, now);
        let counted = budget - 100 + granted_total;
        assert_eq!(telemetry.month_calls(), counted as i64, "gauge at start");
        assert_eq!(gate.remaining(now), Some(budget - counted));
        let pace = gate.pace(now).expect("a budget is set");
        let mut granted = 0;
        let refusal = loop {
            match gate.reserve(now) {
                Ok(()) => granted += 1,
                Err(refused) => break budget_deferral(Err(refused)),
            }
        };
        assert_eq!(granted, pace.burst, "restart {restart}: one burst");
        granted_total += granted;
        if granted_total < 100 {
            assert!(refusal < quota_month_end_ms(now), "paced, not spent");
        } else {
            assert_eq!(refusal, DECEMBER, "spent: held until the month ends");
        }
        now += 10 * 60 * SECOND;
    }
    assert_eq!(granted_total, 100);
    assert_eq!(stored_calls(&path, now), budget);
}

/// Reloading a larger budget makes calls go out faster at once; a smaller one slows them.
#[test]
fn a_reloaded_budget_changes_the_pace() {
    let (_dir, path) = scratch_file();
    let start = DECEMBER - 10 * DAY;
    spend_earlier(&path, start, 4_900);
    let (gate, _telemetry) = start_gate(&path, 5_000, start);
    // Let the first burst go, then count a day's calls at the pace.
    hungry_caller(&gate, 5_000, start, start + HOUR);
    let tight = hungry_caller(&gate, 5_000, start + HOUR, start + DAY + HOUR).len();
    assert!((7..=13).contains(&tight), "about 10 a day: {tight}");
    let before = gate.pace(start + DAY + HOUR).expect("budget");

    gate.set_budget(6_000);
    let after = gate.pace(start + DAY + HOUR).expect("budget");
    assert!(after.calls_per_day > 10.0 * before.calls_per_day);
    assert_eq!(
        after.available, after.burst,
        "a new budget starts a full burst"
    );
    hungry_caller(&gate, 6_000, start + DAY + HOUR, start + DAY + 2 * HOUR);
    let loose = hungry_caller(
        &gate,
        6_000,
        start + DAY + 2 * HOUR,
        start + 2 * DAY + 2 * HOUR,
    )
    .len();
    assert!(
        loose >= 10 * tight,
        "{loose} calls a day after the raise, {tight} before"
    );

    let later = start + 2 * DAY + 2 * HOUR;
    let lowered = gate.calls_this_month(later) + 60;
    gate.set_budget(lowered);
    hungry_caller(&gate, lowered, later, later + HOUR);
    let slowed = hungry_caller(&gate, lowered, later + HOUR, later + DAY + HOUR).len();
    assert!(
        (4..=10).contains(&slowed),
        "about 6 a day after lowering (50 left for 8 days), {loose} before: {slowed}"
    );
}
