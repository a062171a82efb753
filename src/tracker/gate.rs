//! The monthly gate of metered DingTalk calls: `--dingtalk.monthly-call-budget` as a hard
//! ceiling, and the stop that DingTalk's 90020 (monthly quota used up) imposes.
//!
//! Every metered call is counted in the store *before* it is sent, so a crash can at worst
//! count a call that was never made, never make one that was not counted: restarts cannot
//! reset the count, and the budget cannot be overspent.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::store::{StoreError, TaskStore};
use crate::clock::{quota_month, quota_month_end_ms};
use crate::dingtalk::{ApiFailure, CallGate, Deferral};
use crate::metrics::Telemetry;

/// The store key under which the 90020 stop is kept across restarts.
const QUOTA_EXHAUSTED_KEY: &str = "quota_exhausted";

/// When the store cannot count a call, the call waits this long before it is tried again:
/// short, because a store hiccup (a locked file, a full disk being cleared) may pass soon.
const STORE_RETRY_MS: i64 = 5_000;

/// Store failures are logged at most this often, so a broken disk does not flood the log
/// with one warning per due task.
const STORE_WARNING_INTERVAL_MS: i64 = 60_000;

/// The 90020 stop as stored: the quota month it holds for, and the budget configured when
/// DingTalk said so. A restart with a different budget lifts it: the operator changing the
/// budget is the operator saying the quota situation changed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct QuotaExhaustion {
    month: String,
    budget: u64,
}

/// What the gate knows about the current quota month, under one lock so that checking the
/// count and counting a call are one step for concurrent callers.
struct Ledger {
    budget: u64,
    /// The quota month (`YYYY-MM`, Asia/Shanghai) the counts below belong to.
    month: String,
    /// Metered calls counted in the store for `month`; `None` while unknown (a store read or
    /// write failed), in which case it is read again before any call is allowed.
    calls: Option<u64>,
    /// The quota month in which DingTalk answered 90020; it stops calls only in that month.
    exhausted_month: Option<String>,
    last_store_warning_ms: Option<i64>,
}

/// Lets a metered call through only when it is counted durably and both the configured
/// monthly budget and DingTalk's quota allow it. Shared by every app's client, because the
/// quota belongs to the organisation.
pub struct MonthlyCallGate {
    store: Arc<dyn TaskStore>,
    telemetry: Arc<Telemetry>,
    ledger: Mutex<Ledger>,
}

impl MonthlyCallGate {
    /// Reads this month's count and any 90020 stop from the store. `budget` is the most
    /// metered calls per quota month, 0 for no budget (calls are still counted).
    pub fn new(
        store: Arc<dyn TaskStore>,
        budget: u64,
        telemetry: Arc<Telemetry>,
        now_ms: i64,
    ) -> Result<MonthlyCallGate, StoreError> {
        let month = quota_month(now_ms);
        let calls = store.month_calls(&month)?;
        let exhausted_month = match store.exporter_state(QUOTA_EXHAUSTED_KEY)? {
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
                    store.set_exporter_state(QUOTA_EXHAUSTED_KEY, None)?;
                    None
                }
                Err(err) => {
                    tracing::warn!(error = %err, "ignoring an unreadable stored 90020 stop");
                    store.set_exporter_state(QUOTA_EXHAUSTED_KEY, None)?;
                    None
                }
            },
        };
        telemetry.month_calls.set(gauge_value(calls));
        Ok(MonthlyCallGate {
            store,
            telemetry,
            ledger: Mutex::new(Ledger {
                budget,
                month,
                calls: Some(calls),
                exhausted_month,
                last_store_warning_ms: None,
            }),
        })
    }

    /// The configured budget, 0 for none.
    pub fn budget(&self) -> u64 {
        self.lock().budget
    }

    /// Changes the budget (on config reload). A changed budget also lifts a 90020 stop, as a
    /// restart with a changed budget does.
    pub fn set_budget(&self, budget: u64) {
        let mut ledger = self.lock();
        if ledger.budget == budget {
            return;
        }
        ledger.budget = budget;
        if ledger.exhausted_month.take().is_some() {
            tracing::info!(
                new_budget = budget,
                "the monthly call budget changed: lifting the stop DingTalk's 90020 caused"
            );
            if let Err(err) = self.store.set_exporter_state(QUOTA_EXHAUSTED_KEY, None) {
                // The stored stop names the old budget, so a restart with the new one lifts
                // it too; nothing is lost by only warning.
                tracing::warn!(error = %err, "could not clear the stored 90020 stop");
            }
        }
    }

    /// Metered calls counted in the quota month of `now_ms` (the last known count when the
    /// store cannot be read).
    pub fn calls_this_month(&self, now_ms: i64) -> u64 {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        self.known_calls(&mut ledger, now_ms).unwrap_or(0)
    }

    /// Calls left under the budget this quota month; `None` when there is no budget.
    pub fn remaining(&self, now_ms: i64) -> Option<u64> {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        let calls = self.known_calls(&mut ledger, now_ms).unwrap_or(0);
        (ledger.budget > 0).then(|| ledger.budget.saturating_sub(calls))
    }

    /// Until when DingTalk's 90020 stops metered calls, if it does at `now_ms`.
    pub fn quota_exhausted_until(&self, now_ms: i64) -> Option<i64> {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        (ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()))
            .then(|| quota_month_end_ms(now_ms))
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // Every change to the ledger is a single assignment, so a poisoned one is consistent.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Switches the ledger to the quota month of `now_ms` when it has turned over, reading
    /// that month's count (normally 0) and showing it on the gauge.
    fn enter_month(&self, ledger: &mut Ledger, now_ms: i64) {
        let month = quota_month(now_ms);
        if ledger.month == month {
            return;
        }
        ledger.month = month;
        ledger.calls = None;
        let calls = self.known_calls(ledger, now_ms);
        self.telemetry
            .month_calls
            .set(gauge_value(calls.unwrap_or(0)));
    }

    /// The ledger's count, read from the store when unknown.
    fn known_calls(&self, ledger: &mut Ledger, now_ms: i64) -> Option<u64> {
        if ledger.calls.is_none() {
            match self.store.month_calls(&ledger.month) {
                Ok(calls) => {
                    ledger.calls = Some(calls);
                    self.telemetry.month_calls.set(gauge_value(calls));
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
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        let month_end_ms = quota_month_end_ms(now_ms);
        if ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()) {
            return Err(ApiFailure::Deferred {
                until_ms: month_end_ms,
                reason: Deferral::QuotaExhausted,
            });
        }
        let Some(calls) = self.known_calls(&mut ledger, now_ms) else {
            return Err(ApiFailure::Deferred {
                until_ms: now_ms.saturating_add(STORE_RETRY_MS),
                reason: Deferral::MonthlyBudget,
            });
        };
        let budget = ledger.budget;
        if budget > 0 && calls >= budget {
            return Err(ApiFailure::Deferred {
                until_ms: month_end_ms,
                reason: Deferral::MonthlyBudget,
            });
        }
        let month = ledger.month.clone();
        match self.store.add_month_calls(&month, 1) {
            Ok(total) => {
                ledger.calls = Some(total);
                self.telemetry.month_calls.set(gauge_value(total));
                if budget > 0 && total == budget {
                    tracing::info!(
                        month = %month,
                        budget,
                        "the monthly call budget is spent; metered calls wait for the next month"
                    );
                }
                Ok(())
            }
            Err(err) => {
                // The commit may or may not have happened: read the count again before the
                // next call rather than guess.
                ledger.calls = None;
                Err(self.refuse_uncounted(&mut ledger, now_ms, &err))
            }
        }
    }

    fn quota_exhausted(&self, now_ms: i64) {
        let mut ledger = self.lock();
        self.enter_month(&mut ledger, now_ms);
        if ledger.exhausted_month.as_deref() == Some(ledger.month.as_str()) {
            return;
        }
        ledger.exhausted_month = Some(ledger.month.clone());
        tracing::warn!(
            month = %ledger.month,
            "DingTalk answered 90020: the organisation's monthly API quota is used up; metered calls stop until the month ends"
        );
        let stop = QuotaExhaustion {
            month: ledger.month.clone(),
            budget: ledger.budget,
        };
        let stored = serde_json::to_string(&stop)
            .map_err(|err| StoreError(format!("cannot encode the 90020 stop: {err}")))
            .and_then(|text| {
                self.store
                    .set_exporter_state(QUOTA_EXHAUSTED_KEY, Some(&text))
            });
        if let Err(err) = stored {
            tracing::warn!(
                error = %err,
                "could not store the 90020 stop; it holds until the exporter restarts"
            );
        }
    }
}

/// A count on an `IntGauge`, saturating where `i64` ends.
fn gauge_value(calls: u64) -> i64 {
    i64::try_from(calls).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        fn month_calls(&self, _month: &str) -> Result<u64, StoreError> {
            Ok(self.calls)
        }
        fn add_month_calls(&self, _month: &str, _calls: u64) -> Result<u64, StoreError> {
            Err(StoreError("disk full".to_string()))
        }
        fn exporter_state(&self, _key: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        fn set_exporter_state(&self, _key: &str, _value: Option<&str>) -> Result<(), StoreError> {
            Ok(())
        }
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
