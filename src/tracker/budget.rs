//! The monthly gate of metered DingTalk calls: `--dingtalk.monthly-call-budget` as a hard
//! ceiling, pacing that spreads a tight budget over the rest of the month, and the stop that
//! DingTalk's 90020 (monthly quota used up) imposes.
//!
//! # Counting
//!
//! Every metered call is counted in the store *before* it is sent, so a crash can at worst
//! count a call that was never made, never make one that was not counted: restarts cannot
//! reset the count, and the budget cannot be overspent. Calls admitted but not yet committed
//! already count against the ceiling, so concurrent callers cannot overrun it either.
//!
//! Committing means an fsync, so callers that arrive while one commit is under way are
//! gathered into the next one (group commit): a burst of due polls costs two fsyncs, not one
//! each, and no caller is told "go" before the commit that counts its call has returned. The
//! ledger lock is never held across a commit, so readers (`remaining`, `pace`) do not wait
//! for the disk, and on a multi-threaded Tokio runtime the wait is a `block_in_place`
//! section, so the other tasks of that worker thread (the HTTP server, other polls) move on.
//!
//! # Pacing
//!
//! A hard ceiling alone lets a busy week spend the budget and leave the exporter blind for
//! the rest of the month. So, when a budget is set, calls also draw from a token bucket:
//!
//! - it refills at `remaining / (month_end - now)`: what is left, spread evenly over what is
//!   left of the month. The rate is recomputed at every call, so it adapts on its own: a
//!   burst slows the rest of the month a little, quiet days speed it up;
//! - it holds at most one day's share of what is left, counting the current day too:
//!   `remaining / (days_left + 1)`, at least [`BURST_FLOOR`] calls, never more than what is
//!   left. A normal burst (a payroll notice polled a few dozen times) fits in it and is not
//!   slowed at all; a single burst can never spend everything, not even on the last day;
//! - it starts full, when the exporter starts, when a quota month begins and when the budget
//!   is changed (a reload is treated like a restart). A crash-looping exporter could thus
//!   spend one burst per start, faster than the pace; the hard ceiling still holds.
//!
//! When the bucket is empty the call is refused without being counted, with
//! `Deferred { reason: MonthlyBudget, until_ms }` naming when the next call accrues (never
//! after the month ends). The scheduler pauses until then and keeps every task's place in
//! line, so tasks whose information is oldest are asked first: intervals widen evenly
//! instead of some tasks going dark. Whether and how fast the bucket refills is visible
//! through [`MonthlyCallGate::pace`]; pacing beginning and ending to hold calls back is
//! logged at info level, at most once an hour.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};

use super::store::{StoreError, TaskStore};
use crate::clock::{quota_month, quota_month_end_ms};
use crate::dingtalk::{ApiFailure, CallGate, Deferral};
use crate::telemetry::Telemetry;

/// The store key under which the 90020 stop is kept across restarts (followed by the
/// scope's key for a third-party corp).
const QUOTA_EXHAUSTED_KEY: &str = "quota_exhausted";

/// Whose monthly quota a gate counts: a third-party app's corp, which DingTalk gives a quota
/// of its own. The gate without a scope counts the organisation of the internal apps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetScope {
    /// The app's name (its `app` label).
    pub app: String,
    /// The corp's id: its counts are stored under it, so renaming the corp keeps them.
    pub corp_id: String,
    /// The corp's name (its `corp` label).
    pub corp: String,
}

impl BudgetScope {
    /// The scope's key in the store: `app/corp_id`.
    pub fn store_key(&self) -> String {
        format!("{}/{}", self.app, self.corp_id)
    }
}

/// When the store cannot count a call, the call waits this long before it is tried again:
/// short, because a store hiccup (a locked file, a full disk being cleared) may pass soon.
const STORE_RETRY_MS: i64 = 5_000;

/// Store failures are logged at most this often, so a broken disk does not flood the log
/// with one warning per due task.
const STORE_WARNING_INTERVAL_MS: i64 = 60_000;

const DAY_MS: i64 = 86_400_000;

/// The smallest burst pacing allows (while that many calls are left): below it, holding
/// calls back would save too few calls to be worth the staler picture.
pub const BURST_FLOOR: u64 = 10;

/// "Pacing holds calls back" is logged at most this often, so that a pace that keeps
/// tipping in and out does not flood the log.
const PACING_NOTICE_INTERVAL_MS: i64 = 3_600_000;

/// Floating-point slack when checking for a whole token, so that waiting exactly until the
/// `until_ms` a refusal named is always enough.
const TOKEN_EPSILON: f64 = 1e-9;

/// The 90020 stop as stored: the quota month it holds for, and the budget configured when
/// DingTalk said so. A restart with a different budget lifts it: the operator changing the
/// budget is the operator saying the quota situation changed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct QuotaExhaustion {
    month: String,
    budget: u64,
}

/// Where pacing stands at a moment (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    /// Calls left under the budget this quota month; calls being counted are already spent.
    pub remaining: u64,
    /// How fast calls become available: what is left, spread over what is left of the month.
    pub calls_per_day: f64,
    /// The most calls that can go out at once, when none went out for a while.
    pub burst: u64,
    /// The calls that may go out right now without waiting.
    pub available: u64,
}

/// The refill rate and capacity of the bucket for `remaining` calls at `now_ms`.
#[derive(Clone, Copy, Debug)]
struct BucketTerms {
    per_ms: f64,
    capacity: f64,
}

impl BucketTerms {
    fn new(remaining: u64, now_ms: i64, month_end_ms: i64) -> BucketTerms {
        let left_ms = month_end_ms.saturating_sub(now_ms).max(1) as f64;
        let remaining = remaining as f64;
        let days_left = left_ms / DAY_MS as f64;
        let day_share = remaining / (days_left + 1.0);
        BucketTerms {
            per_ms: remaining / left_ms,
            capacity: day_share.max(BURST_FLOOR as f64).min(remaining),
        }
    }
}

/// The pacing token bucket. Its rate and capacity are not kept: they follow from the calls
/// left and the time left, at each call.
#[derive(Debug)]
struct Bucket {
    /// Tokens at `at_ms`; `None` for a full bucket, whatever its capacity turns out to be.
    tokens: Option<f64>,
    at_ms: i64,
}

impl Bucket {
    fn full() -> Bucket {
        Bucket {
            tokens: None,
            at_ms: i64::MIN,
        }
    }

    /// The tokens at `now_ms`: those kept plus what accrued since, up to the capacity.
    fn tokens_at(&self, terms: BucketTerms, now_ms: i64) -> f64 {
        match self.tokens {
            None => terms.capacity,
            Some(tokens) => {
                let elapsed = now_ms.saturating_sub(self.at_ms).max(0) as f64;
                (tokens + elapsed * terms.per_ms).min(terms.capacity)
            }
        }
    }
}

/// A stretch of time during which pacing held calls back.
#[derive(Debug)]
struct HoldBack {
    since_ms: i64,
    /// Whether its beginning was logged (so its end is logged too).
    announced: bool,
}

/// Where a batch's commit leaves its result (the month's new total), read by every caller
/// in the batch.
type CommitOutcome = Arc<OnceLock<Result<u64, StoreError>>>;

/// Calls admitted together and counted in the store by one commit.
struct Batch {
    month: String,
    calls: u64,
    outcome: CommitOutcome,
}

/// What the gate knows about the current quota month, under one lock so that checking the
/// count and admitting a call are one step for concurrent callers.
struct Ledger {
    budget: u64,
    /// The quota month (`YYYY-MM`, Asia/Shanghai) the counts below belong to.
    month: String,
    /// Metered calls counted in the store for `month`; `None` while unknown (a store read or
    /// write failed), in which case it is read again before any call is allowed.
    calls: Option<u64>,
    /// Admitted calls waiting for the next commit.
    gathering: Option<Batch>,
    /// Admitted calls whose commit is under way (outside the lock); at most one at a time, so
    /// the total a commit returns is the month's count.
    committing: Option<Batch>,
    bucket: Bucket,
    holding_back: Option<HoldBack>,
    last_pacing_notice_ms: Option<i64>,
    /// The quota month in which DingTalk answered 90020; it stops calls only in that month.
    exhausted_month: Option<String>,
    last_store_warning_ms: Option<i64>,
}

impl Ledger {
    /// Admitted calls of the current month not counted in the store yet.
    fn uncommitted(&self) -> u64 {
        [&self.gathering, &self.committing]
            .into_iter()
            .flatten()
            .filter(|batch| batch.month == self.month)
            .map(|batch| batch.calls)
            .sum()
    }

    /// Adds one call to the batch being gathered (starting one if none is) and returns the
    /// handle on which its commit's outcome will appear.
    fn join_batch(&mut self) -> CommitOutcome {
        let month = &self.month;
        let batch = self.gathering.get_or_insert_with(|| Batch {
            month: month.clone(),
            calls: 0,
            outcome: Arc::new(OnceLock::new()),
        });
        batch.calls += 1;
        batch.outcome.clone()
    }
}

/// Lets a metered call through only when it is counted durably and the configured monthly
/// budget, its pace and DingTalk's quota all allow it. Shared by every app's client, because
/// the quota belongs to the organisation.
pub struct MonthlyCallGate {
    store: Arc<dyn TaskStore>,
    scope: Option<BudgetScope>,
    /// The scope's key in the store: empty for the internal apps' organisation.
    scope_key: String,
    /// The store key of the 90020 stop of this scope.
    exhausted_key: String,
    telemetry: Arc<Telemetry>,
    ledger: Mutex<Ledger>,
    /// Signalled after every commit, for the callers waiting on theirs or for their turn.
    committed: Condvar,
}

impl MonthlyCallGate {
    /// Reads this month's count and any 90020 stop from the store. `budget` is the most
    /// metered calls per quota month, 0 for no budget (calls are still counted, not paced).
    pub fn new(
        store: Arc<dyn TaskStore>,
        budget: u64,
        telemetry: Arc<Telemetry>,
        now_ms: i64,
    ) -> Result<MonthlyCallGate, StoreError> {
        MonthlyCallGate::for_scope(store, None, budget, telemetry, now_ms)
    }

    /// The gate of one scope: `None` for the organisation of the internal apps, or one
    /// third-party corp, whose count and 90020 stop are stored apart from every other's.
    pub fn for_scope(
        store: Arc<dyn TaskStore>,
        scope: Option<BudgetScope>,
        budget: u64,
        telemetry: Arc<Telemetry>,
        now_ms: i64,
    ) -> Result<MonthlyCallGate, StoreError> {
        let scope_key = scope
            .as_ref()
            .map(BudgetScope::store_key)
            .unwrap_or_default();
        let exhausted_key = match &scope {
            None => QUOTA_EXHAUSTED_KEY.to_string(),
            Some(_) => format!("{QUOTA_EXHAUSTED_KEY}/{scope_key}"),
        };
        let month = quota_month(now_ms);
        let calls = store.month_calls(&scope_key, &month)?;
        let exhausted_month = match store.exporter_state(&exhausted_key)? {
            None => None,
            Some(text) => match serde_json::from_str::<QuotaExhaustion>(&text) {
                Ok(stop) if stop.month == month && stop.budget == budget => {
                    tracing::warn!(
                        month = %month,
                        "DingTalk answered 90020 (monthly API quota used up) earlier this month; metered calls stay stopped until the month ends or the budget is changed"
                    );
                    Some(stop.month)
                }
                Ok(stop) => {
                    if stop.month == month {
                        tracing::info!(
                            month = %month,
                            old_budget = stop.budget,
                            new_budget = budget,
                            "the monthly call budget changed: lifting the stop DingTalk's 90020 caused"
                        );
                    }
                    store.set_exporter_state(&exhausted_key, None)?;
                    None
                }
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring an unreadable stored 90020 stop");
                    store.set_exporter_state(&exhausted_key, None)?;
                    None
                }
            },
        };
        let gate_scope = scope.clone();
        let gate = MonthlyCallGate {
            store,
            scope: gate_scope,
            scope_key,
            exhausted_key,
            telemetry,
            ledger: Mutex::new(Ledger {
                budget,
                month,
                calls: Some(calls),
                gathering: None,
                committing: None,
                bucket: Bucket::full(),
                holding_back: None,
                last_pacing_notice_ms: None,
                exhausted_month,
                last_store_warning_ms: None,
            }),
            committed: Condvar::new(),
        };
        gate.show_month_calls(calls);
        Ok(gate)
    }

    /// Publishes this scope's count as `dingtalk_api_month_calls`.
    fn show_month_calls(&self, calls: u64) {
        let labels = self
            .scope
            .as_ref()
            .map(|scope| (scope.app.as_str(), scope.corp.as_str()));
        self.telemetry.record_month_calls(labels, calls);
    }

    /// The configured budget, 0 for none.
    pub fn budget(&self) -> u64 {
        self.lock().budget
    }

    /// Changes the budget (on config reload). The new budget applies to the very next call;
    /// the pacing bucket starts full at the new pace, as after a restart with that budget. A
    /// changed budget also lifts a 90020 stop, as a restart with a changed budget does.
    pub fn set_budget(&self, budget: u64) {
        blocking_section(|| {
            let mut ledger = self.lock();
            if ledger.budget == budget {
                return;
            }
            ledger.budget = budget;
            ledger.bucket = Bucket::full();
            if ledger.exhausted_month.take().is_some() {
                tracing::info!(
                    new_budget = budget,
                    "the monthly call budget changed: lifting the stop DingTalk's 90020 caused"
                );
                if let Err(err) = self.store.set_exporter_state(&self.exhausted_key, None) {
                    // The stored stop names the old budget, so a restart with the new one lifts
                    // it too; nothing is lost by only warning.
                    tracing::warn!(error = %err, "could not clear the stored 90020 stop");
                }
            }
        })
    }

    /// Metered calls counted in the quota month of `now_ms` (the last known count when the
    /// store cannot be read).
    pub fn calls_this_month(&self, now_ms: i64) -> u64 {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        self.known_calls(&mut ledger, now_ms).unwrap_or(0)
    }

    /// Calls left under the budget this quota month (calls being counted are spent); `None`
    /// when there is no budget.
    pub fn remaining(&self, now_ms: i64) -> Option<u64> {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        let spent = self
            .known_calls(&mut ledger, now_ms)
            .unwrap_or(0)
            .saturating_add(ledger.uncommitted());
        (ledger.budget > 0).then(|| ledger.budget.saturating_sub(spent))
    }

    /// How pacing stands at `now_ms`; `None` when there is no budget. Only looks: the bucket
    /// is not touched.
    pub fn pace(&self, now_ms: i64) -> Option<Pace> {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        if ledger.budget == 0 {
            return None;
        }
        let spent = self
            .known_calls(&mut ledger, now_ms)
            .unwrap_or(0)
            .saturating_add(ledger.uncommitted());
        let remaining = ledger.budget.saturating_sub(spent);
        let terms = BucketTerms::new(remaining, now_ms, quota_month_end_ms(now_ms));
        let available = if remaining == 0 {
            0.0
        } else {
            ledger.bucket.tokens_at(terms, now_ms)
        };
        Some(Pace {
            remaining,
            calls_per_day: terms.per_ms * DAY_MS as f64,
            burst: whole_calls(terms.capacity),
            available: whole_calls(available),
        })
    }

    /// Until when DingTalk's 90020 stops metered calls, if it does at `now_ms`.
    pub fn quota_exhausted_until(&self, now_ms: i64) -> Option<i64> {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        (ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()))
            .then(|| quota_month_end_ms(now_ms))
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // A panic cannot leave the ledger half-changed where it matters: the count is read
        // again when unknown, and a commit in progress is always concluded (see `commit`).
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (releasing the ledger) until the next commit concludes.
    fn wait<'a>(&self, ledger: MutexGuard<'a, Ledger>) -> MutexGuard<'a, Ledger> {
        self.committed
            .wait(ledger)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves one call at `now_ms`: admits it (or says until when to wait), then returns
    /// once the commit that counts it has succeeded, running that commit itself when no
    /// other caller is committing.
    fn reserve_counted(&self, now_ms: i64) -> Result<(), ApiFailure> {
        let mut ledger = self.lock();
        let outcome = loop {
            self.enter_month(&mut ledger, now_ms);
            if ledger
                .gathering
                .as_ref()
                .is_some_and(|batch| batch.month != ledger.month)
            {
                // Calls of the month that just ended are still waiting to be counted in it;
                // one batch gathers at a time, so let that one go first.
                ledger = self.wait(ledger);
                continue;
            }
            break self.admit(&mut ledger, now_ms)?;
        };
        loop {
            if let Some(result) = outcome.get() {
                return match result {
                    Ok(_) => Ok(()),
                    Err(err) => Err(self.refuse_uncounted(&mut ledger, now_ms, err)),
                };
            }
            // While no commit is under way, this call's batch is the one gathering.
            ledger = if ledger.committing.is_none() {
                self.commit(ledger)
            } else {
                self.wait(ledger)
            };
        }
    }

    /// Decides on one call under the lock: the 90020 stop, the ceiling, then the pace. An
    /// admitted call joins the batch being gathered.
    fn admit(&self, ledger: &mut Ledger, now_ms: i64) -> Result<CommitOutcome, ApiFailure> {
        let month_end_ms = quota_month_end_ms(now_ms);
        if ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()) {
            return Err(ApiFailure::Deferred {
                until_ms: month_end_ms,
                reason: Deferral::QuotaExhausted,
            });
        }
        let Some(calls) = self.known_calls(ledger, now_ms) else {
            return Err(ApiFailure::Deferred {
                until_ms: now_ms.saturating_add(STORE_RETRY_MS),
                reason: Deferral::MonthlyBudget,
            });
        };
        if ledger.budget > 0 {
            let spent = calls.saturating_add(ledger.uncommitted());
            let remaining = ledger.budget.saturating_sub(spent);
            if remaining == 0 {
                return Err(ApiFailure::Deferred {
                    until_ms: month_end_ms,
                    reason: Deferral::MonthlyBudget,
                });
            }
            self.take_token(ledger, remaining, now_ms, month_end_ms)?;
        }
        Ok(ledger.join_batch())
    }

    /// Takes one token from the pacing bucket, or says when the next one accrues.
    fn take_token(
        &self,
        ledger: &mut Ledger,
        remaining: u64,
        now_ms: i64,
        month_end_ms: i64,
    ) -> Result<(), ApiFailure> {
        let terms = BucketTerms::new(remaining, now_ms, month_end_ms);
        let tokens = ledger.bucket.tokens_at(terms, now_ms);
        ledger.bucket.at_ms = ledger.bucket.at_ms.max(now_ms);
        if tokens >= 1.0 - TOKEN_EPSILON {
            ledger.bucket.tokens = Some((tokens - 1.0).max(0.0));
            if tokens >= terms.capacity {
                // Full again: calls have stayed under the pace long enough for a whole
                // burst to be available, so pacing no longer holds anything back.
                self.stop_holding_back(ledger, now_ms, "calls are back within the pace");
            }
            return Ok(());
        }
        ledger.bucket.tokens = Some(tokens);
        // `per_ms > 0` because `remaining > 0`; after this wait one whole token has accrued
        // (the rate only grows while nothing is spent), and never later than the month's end.
        let wait_ms = ((1.0 - tokens) / terms.per_ms).ceil().max(1.0);
        let until_ms = if wait_ms >= (month_end_ms - now_ms) as f64 {
            month_end_ms
        } else {
            now_ms + wait_ms as i64
        };
        self.start_holding_back(ledger, now_ms, remaining, terms);
        Err(ApiFailure::Deferred {
            until_ms,
            reason: Deferral::MonthlyBudget,
        })
    }

    fn start_holding_back(
        &self,
        ledger: &mut Ledger,
        now_ms: i64,
        remaining: u64,
        terms: BucketTerms,
    ) {
        if ledger.holding_back.is_some() {
            return;
        }
        let announce = ledger
            .last_pacing_notice_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= PACING_NOTICE_INTERVAL_MS);
        if announce {
            ledger.last_pacing_notice_ms = Some(now_ms);
            tracing::info!(
                month = %ledger.month,
                budget = ledger.budget,
                remaining,
                calls_per_day = format!("{:.1}", terms.per_ms * DAY_MS as f64),
                "the monthly call budget is tight: spreading the calls left over the rest of the month, so polls are spaced wider (oldest information first)"
            );
        }
        ledger.holding_back = Some(HoldBack {
            since_ms: now_ms,
            announced: announce,
        });
    }

    fn stop_holding_back(&self, ledger: &mut Ledger, now_ms: i64, why: &str) {
        if let Some(stretch) = ledger.holding_back.take()
            && stretch.announced
        {
            tracing::info!(
                month = %ledger.month,
                held_back_for_s = now_ms.saturating_sub(stretch.since_ms).max(0) / 1000,
                "the monthly call budget no longer holds calls back: {why}"
            );
        }
    }

    /// Commits the batch being gathered, outside the lock, and tells every waiting caller.
    /// Called by a caller whose call is in that batch, so there is one.
    fn commit<'a>(&'a self, mut ledger: MutexGuard<'a, Ledger>) -> MutexGuard<'a, Ledger> {
        let batch = ledger
            .gathering
            .take()
            .expect("an uncommitted call is in the gathering batch while no commit is under way");
        let (month, calls) = (batch.month.clone(), batch.calls);
        ledger.committing = Some(batch);
        drop(ledger);
        // A panicking store must not leave `committing` set forever: every later call would
        // wait for a commit that never concludes.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.store.add_month_calls(&self.scope_key, &month, calls)
        }))
        .unwrap_or_else(|_| {
            Err(StoreError(format!(
                "counting {calls} call(s) in {month} failed unexpectedly"
            )))
        });
        let mut ledger = self.lock();
        if let Some(batch) = ledger.committing.take() {
            self.conclude(&mut ledger, &batch, &result);
            let _ = batch.outcome.set(result);
        }
        self.committed.notify_all();
        ledger
    }

    /// Brings the ledger up to date with a batch's commit.
    fn conclude(&self, ledger: &mut Ledger, batch: &Batch, result: &Result<u64, StoreError>) {
        if batch.month != ledger.month {
            // The month turned meanwhile; that month's count is no longer shown.
            return;
        }
        match result {
            Ok(total) => {
                let total = *total;
                ledger.calls = Some(total);
                self.show_month_calls(total);
                let budget = ledger.budget;
                if budget > 0 && total >= budget && total - batch.calls < budget {
                    tracing::info!(
                        month = %ledger.month,
                        budget,
                        "the monthly call budget is spent; metered calls wait for the next month"
                    );
                }
            }
            Err(_) => {
                // The commit may or may not have happened: read the count again before the
                // next call rather than guess. The calls were not made: their tokens return.
                ledger.calls = None;
                if let Some(tokens) = &mut ledger.bucket.tokens {
                    *tokens += batch.calls as f64;
                }
            }
        }
    }

    /// Switches the ledger to the quota month of `now_ms` when it has turned over, reading
    /// that month's count (normally 0) and showing it on the gauge. The new month's pacing
    /// starts with a full bucket.
    fn enter_month(&self, ledger: &mut Ledger, now_ms: i64) {
        let month = quota_month(now_ms);
        if ledger.month == month {
            return;
        }
        ledger.month = month;
        ledger.calls = None;
        ledger.bucket = Bucket::full();
        self.stop_holding_back(ledger, now_ms, "a new quota month began");
        let calls = self.known_calls(ledger, now_ms);
        self.show_month_calls(calls.unwrap_or(0));
    }

    /// The ledger's count, read from the store when unknown.
    fn known_calls(&self, ledger: &mut Ledger, now_ms: i64) -> Option<u64> {
        if ledger.calls.is_none() {
            match self.store.month_calls(&self.scope_key, &ledger.month) {
                Ok(calls) => {
                    ledger.calls = Some(calls);
                    self.show_month_calls(calls);
                }
                Err(err) => self.warn_store_failure(ledger, now_ms, &err),
            }
        }
        ledger.calls
    }

    fn warn_store_failure(&self, ledger: &mut Ledger, now_ms: i64, err: &StoreError) {
        let quiet = ledger
            .last_store_warning_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < STORE_WARNING_INTERVAL_MS);
        if !quiet {
            ledger.last_store_warning_ms = Some(now_ms);
            tracing::warn!(
                error = %err,
                "cannot count metered DingTalk calls in the store; holding calls back until it works again"
            );
        }
    }

    /// A call held back because it could not be counted: spending uncounted could overrun
    /// the budget after a crash, so the call waits instead.
    fn refuse_uncounted(&self, ledger: &mut Ledger, now_ms: i64, err: &StoreError) -> ApiFailure {
        self.warn_store_failure(ledger, now_ms, err);
        ApiFailure::Deferred {
            until_ms: now_ms.saturating_add(STORE_RETRY_MS),
            reason: Deferral::MonthlyBudget,
        }
    }
}

impl CallGate for MonthlyCallGate {
    fn reserve(&self, now_ms: i64) -> Result<(), ApiFailure> {
        blocking_section(|| self.reserve_counted(now_ms))
    }

    fn quota_exhausted(&self, now_ms: i64) {
        blocking_section(|| {
            let mut ledger = self.lock();
            self.enter_month(&mut ledger, now_ms);
            if ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()) {
                return;
            }
            ledger.exhausted_month = Some(ledger.month.clone());
            match &self.scope {
                None => tracing::warn!(
                    month = %ledger.month,
                    "DingTalk answered 90020: the organisation's monthly API quota is used up; metered calls stop until the month ends"
                ),
                Some(scope) => tracing::warn!(
                    app = %scope.app,
                    corp = %scope.corp,
                    month = %ledger.month,
                    "DingTalk answered 90020: this corp's monthly API quota is used up; its metered calls stop until the month ends (other corps and apps go on)"
                ),
            }
            let stop = QuotaExhaustion {
                month: ledger.month.clone(),
                budget: ledger.budget,
            };
            let stored = serde_json::to_string(&stop)
                .map_err(|err| StoreError(format!("cannot encode the 90020 stop: {err}")))
                .and_then(|text| {
                    self.store
                        .set_exporter_state(&self.exhausted_key, Some(&text))
                });
            if let Err(err) = stored {
                tracing::warn!(
                    error = %err,
                    "could not store the 90020 stop; it holds until the exporter restarts"
                );
            }
        })
    }
}

/// Runs `work`, which may wait for the disk, without stalling the async tasks that share its
/// thread: on a multi-threaded Tokio runtime `block_in_place` hands them to another worker
/// meanwhile. On a current-thread runtime that is not possible (and would panic), and
/// outside Tokio there is nothing to hand over, so there `work` simply runs.
fn blocking_section<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Whole calls in a fractional amount of tokens.
fn whole_calls(tokens: f64) -> u64 {
    (tokens + TOKEN_EPSILON).floor().max(0.0) as u64
}

/// A count on an `IntGauge`, saturating where `i64` ends.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::pace::LearnedPace;
    use crate::tracker::task::{Task, TaskKey};

    /// A store whose counter cannot be written, like a full disk: the one failure a real
    /// SQLite file cannot be made to produce on demand in a test.
    struct UnwritableCounter {
        calls: u64,
    }

    impl TaskStore for UnwritableCounter {
        fn insert_new(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
            Ok(vec![true; tasks.len()])
        }
        fn save(&self, _tasks: &[Task]) -> Result<(), StoreError> {
            Ok(())
        }
        fn remove(&self, _key: TaskKey) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn load_all(&self) -> Result<Vec<Task>, StoreError> {
            Ok(Vec::new())
        }
        fn month_calls(&self, _scope: &str, _month: &str) -> Result<u64, StoreError> {
            Ok(self.calls)
        }
        fn add_month_calls(
            &self,
            _scope: &str,
            _month: &str,
            _calls: u64,
        ) -> Result<u64, StoreError> {
            Err(StoreError("disk full".to_string()))
        }
        fn exporter_state(&self, _key: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        fn set_exporter_state(&self, _key: &str, _value: Option<&str>) -> Result<(), StoreError> {
            Ok(())
        }
        fn learned_paces(&self) -> Result<Vec<(i64, LearnedPace)>, StoreError> {
            Ok(Vec::new())
        }
        fn save_learned_pace(&self, _agent_id: i64, _pace: &LearnedPace) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// The burst is one day's share of what is left (counting today), so a single burst can
    /// never spend everything, not even hours before the month ends; small remainders may go
    /// at once.
    #[test]
    fn a_burst_is_a_days_share_of_what_is_left() {
        let month_end = 1_796_054_400_000;
        let early = BucketTerms::new(5_000, month_end - 30 * DAY_MS, month_end);
        assert!((early.capacity - 5_000.0 / 31.0).abs() < 1e-6);
        assert!((early.per_ms * DAY_MS as f64 - 5_000.0 / 30.0).abs() < 1e-6);

        let last_hours = BucketTerms::new(100, month_end - DAY_MS / 4, month_end);
        assert!((last_hours.capacity - 80.0).abs() < 1e-6);

        let floor = BucketTerms::new(100, month_end - 20 * DAY_MS, month_end);
        assert_eq!(floor.capacity, BURST_FLOOR as f64);
        let small = BucketTerms::new(4, month_end - 20 * DAY_MS, month_end);
        assert_eq!(small.capacity, 4.0);
    }

    /// A call that cannot be counted is not made, even with no budget; it is retried soon.
    #[test]
    fn a_call_the_store_cannot_count_is_held_back_briefly() {
        let now_ms = 1_790_000_000_000;
        let gate = MonthlyCallGate::new(
            Arc::new(UnwritableCounter { calls: 3 }),
            0,
            Arc::new(Telemetry::new()),
            now_ms,
        )
        .expect("gate");
        match gate.reserve(now_ms) {
            Err(ApiFailure::Deferred { until_ms, reason }) => {
                assert_eq!(reason, Deferral::MonthlyBudget);
                assert_eq!(until_ms, now_ms + STORE_RETRY_MS);
            }
            other => panic!("expected a short deferral, got {other:?}"),
        }
        assert_eq!(
            gate.calls_this_month(now_ms),
            3,
            "count read again from the store"
        );
    }
}
