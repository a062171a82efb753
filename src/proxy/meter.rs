//! The organisation's share of the monthly quota that the exporter cannot see by itself:
//! the metered calls of other applications that the proxy relays.
//!
//! The count lives in the store's monthly call counters under a quota scope of its own,
//! `proxy`, beside the exporter's own scopes (`""` for the organisation, `app/corp_id` for a
//! third-party corp, which always holds a slash), instead of in a table of its own: it is
//! the same kind of fact (calls of a quota month, added to and read back), every store
//! already keeps it durably, and no schema change is needed. The exporter's ledgers read
//! only their own scopes, so the counts never mix.
//!
//! Unlike the exporter's own calls, which are counted before they are made (the budget must
//! never be overspent), a relayed call is counted after it is relayed, and without holding
//! it up: calls gather in memory and a flusher commits them about once a second, and once
//! more at shutdown. A `kill -9` can lose at most that last second of counts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{now_ms, quota_month};
use crate::telemetry::Telemetry;
use crate::tracker::TaskStore;

/// How often gathered counts are committed.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The quota scope under which the store keeps the relayed calls of each month.
pub const SCOPE: &str = "proxy";

struct Count {
    month: String,
    /// Committed to the store for `month`.
    stored: u64,
    /// Counted since the last commit.
    pending: u64,
}

/// Counts the metered calls the proxy relays, per quota month, kept across restarts.
pub struct RelayedCallMeter {
    store: Arc<dyn TaskStore>,
    telemetry: Arc<Telemetry>,
    count: Mutex<Count>,
}

impl RelayedCallMeter {
    /// Reads back the current month's count.
    pub fn open(
        store: Arc<dyn TaskStore>,
        telemetry: Arc<Telemetry>,
    ) -> Result<RelayedCallMeter, String> {
        let month = quota_month(now_ms());
        let stored = store
            .month_calls(SCOPE, &month)
            .map_err(|err| err.to_string())?;
        telemetry.record_proxy_month_calls(stored);
        Ok(RelayedCallMeter {
            store,
            telemetry,
            count: Mutex::new(Count {
                month,
                stored,
                pending: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Count> {
        self.count
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One metered call relayed now.
    pub fn count_call(&self, now_ms: i64) {
        let month = quota_month(now_ms);
        let mut count = self.lock();
        if count.month != month {
            // A new quota month: what was pending of the old one is committed by the next
            // flush under the old key before this count replaces it.
            self.roll_over(&mut count, month);
        }
        count.pending += 1;
        self.telemetry
            .record_proxy_month_calls(count.stored + count.pending);
    }

    /// Starts a new month. Pending calls of the old month are committed here, on the
    /// caller's thread: this happens once a month.
    fn roll_over(&self, count: &mut Count, month: String) {
        if count.pending > 0
            && let Err(err) = self
                .store
                .add_month_calls(SCOPE, &count.month, count.pending)
        {
            tracing::warn!(error = %err, "could not save the proxy's call count of the month that ended");
        }
        count.stored = self.store.month_calls(SCOPE, &month).unwrap_or(0);
        count.month = month;
        count.pending = 0;
    }

    /// Commits the calls counted since the last flush.
    pub fn flush(&self) {
        let (month, pending) = {
            let mut count = self.lock();
            let pending = std::mem::take(&mut count.pending);
            (count.month.clone(), pending)
        };
        if pending == 0 {
            return;
        }
        match self.store.add_month_calls(SCOPE, &month, pending) {
            Ok(total) => {
                let mut count = self.lock();
                if count.month == month {
                    count.stored = total;
                    self.telemetry
                        .record_proxy_month_calls(count.stored + count.pending);
                }
            }
            Err(err) => {
                // Kept for the next flush: a store hiccup loses no count.
                tracing::warn!(error = %err, "could not save the proxy's relayed call count; retrying");
                let mut count = self.lock();
                if count.month == month {
                    count.pending += pending;
                }
            }
        }
    }

    /// The calls of the current month, committed or not.
    pub fn calls_this_month(&self) -> u64 {
        let count = self.lock();
        count.stored + count.pending
    }

    /// Flushes about once a second until `stopping` turns true, then once more.
    pub fn spawn_flusher(self: &Arc<Self>, mut stopping: watch::Receiver<bool>) -> JoinHandle<()> {
        let meter = self.clone();
        tokio::spawn(async move {
            let stop_signal = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            tokio::pin!(stop_signal);
            let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = &mut stop_signal => break,
                }
                let flushing = meter.clone();
                let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
            }
            let flushing = meter.clone();
            let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
        })
    }
}
