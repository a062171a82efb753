//! The outbound rate limit: at most `--dingtalk.max-qps` calls per second per API per app.
//!
//! DingTalk counts calls per app and API in a sliding one-second window and answers 90018
//! beyond the limit, and the exporter shares that budget with the application that sends the
//! notifications, so the limit must hold in *every* one-second window, also under a burst of
//! due polls, while thousands of due tasks should get close to the whole budget. Two rules
//! together give both:
//!
//! - **Pacing**: each call gets a slot [`PACING`]` / max_qps` after the previous call's slot
//!   (or now, after a quiet spell), handed out in the order calls ask. Calls leave evenly
//!   spaced, never in bursts, at `max_qps / 1.04 s`: about 96% of the limit. The slots are
//!   fixed when they are handed out, so a call that wakes up late does not push the later
//!   ones back: late wake-ups do not add up to lost throughput.
//! - **A strict window**: a call leaves only once the call `max_qps` positions before it
//!   left more than [`WINDOW`] ago, counted from when calls really left. Pacing alone keeps
//!   `max_qps + 1` slots [`PACING`] apart; this rule keeps the calls themselves at least
//!   [`WINDOW`] apart even when one of them woke up late, so the limit holds however busy
//!   the machine is.
//!
//! A token bucket (such as `governor`'s) cannot promise this: with a burst above one, a burst
//! can land right after a steady stream and put up to twice the limit into one window; with a
//! burst of one, every late wake-up is throughput lost for good.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::Api;

/// The strict window: any `max_qps + 1` calls leave at least this far apart. The 20 ms beyond
/// DingTalk's second absorb differences in how long calls take to reach DingTalk (the first
/// of a window slower than the last).
pub const WINDOW: Duration = Duration::from_millis(1_020);

/// The window the slots are paced over. The 20 ms beyond [`WINDOW`] let a call wake up that
/// much late without making the call `max_qps` positions later wait for it; on time, calls
/// have 40 ms of headroom for network jitter. Costs 4% of the nominal rate.
pub const PACING: Duration = Duration::from_millis(1_040);

/// One limiter per API of one app. Callers wait for their turn, in the order they asked,
/// rather than fail.
pub struct ApiLimiter {
    per_api: [Mutex<Schedule>; 3],
}

impl ApiLimiter {
    /// A limiter allowing `max_qps` calls per second per API (0 is treated as 1).
    pub fn new(max_qps: u32) -> ApiLimiter {
        let limit = max_qps.max(1) as usize;
        ApiLimiter {
            per_api: [
                Mutex::new(Schedule::new(limit)),
                Mutex::new(Schedule::new(limit)),
                Mutex::new(Schedule::new(limit)),
            ],
        }
    }

    /// Waits until a call of `api` may be sent and counts it as sent now. A caller that
    /// gives up (its future is dropped) leaves its slot unused: the calls after it keep
    /// their slots, so giving up never lets a call out early.
    pub async fn acquire(&self, api: Api) {
        let schedule = &self.per_api[index(api)];
        let slot = lock(schedule).reserve(Instant::now());
        tokio::time::sleep_until(slot).await;
        loop {
            let ready = match lock(schedule).depart(Instant::now()) {
                Ok(()) => return,
                Err(ready) => ready,
            };
            tokio::time::sleep_until(ready).await;
        }
    }
}

fn lock(schedule: &Mutex<Schedule>) -> MutexGuard<'_, Schedule> {
    // Every change to a schedule is a single assignment or push, so a poisoned lock still
    // holds a consistent schedule.
    schedule
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The slots and the recent departures of one API.
struct Schedule {
    limit: usize,
    /// The gap between two slots.
    spacing: Duration,
    /// The earliest slot not handed out yet.
    next_slot: Option<Instant>,
    /// When the last `limit` calls really left, oldest first.
    departures: VecDeque<Instant>,
}

impl Schedule {
    fn new(limit: usize) -> Schedule {
        Schedule {
            limit,
            spacing: PACING / limit as u32,
            next_slot: None,
            departures: VecDeque::with_capacity(limit),
        }
    }

    /// Hands out the next slot to a call asking at `now`.
    fn reserve(&mut self, now: Instant) -> Instant {
        let slot = self.next_slot.map_or(now, |next| next.max(now));
        self.next_slot = Some(slot + self.spacing);
        slot
    }

    /// Lets a call leave at `now` and counts it, or says when the strict window allows it.
    fn depart(&mut self, now: Instant) -> Result<(), Instant> {
        if self.departures.len() >= self.limit
            && let Some(&oldest) = self.departures.front()
            && now < oldest + WINDOW
        {
            return Err(oldest + WINDOW);
        }
        if self.departures.len() >= self.limit {
            self.departures.pop_front();
        }
        self.departures.push_back(now);
        Ok(())
    }
}

fn index(api: Api) -> usize {
    match api {
        Api::GetToken => 0,
        Api::GetSendProgress => 1,
        Api::GetSendResult => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `calls` calls that all ask at once (thousands of due tasks) through a schedule of
    /// `limit` in virtual time; each wakes up `lateness(i)` after it was told to. Returns
    /// when each left.
    fn run(limit: usize, calls: usize, lateness: impl Fn(usize) -> Duration) -> Vec<Instant> {
        let mut schedule = Schedule::new(limit);
        let start = Instant::now();
        let slots: Vec<Instant> = (0..calls).map(|_| schedule.reserve(start)).collect();
        let mut left: Vec<Instant> = Vec::with_capacity(calls);
        for (call, slot) in slots.into_iter().enumerate() {
            // Calls are taken in the order they leave; a late one holds up no one but itself.
            let mut wake = (slot + lateness(call)).max(left.last().copied().unwrap_or(start));
            while let Err(ready) = schedule.depart(wake) {
                wake = ready + lateness(call);
            }
            left.push(wake);
        }
        left
    }

    /// The shortest span of any `limit + 1` consecutive departures.
    fn tightest_span(left: &[Instant], limit: usize) -> Duration {
        left.windows(limit + 1)
            .map(|calls| calls[limit] - calls[0])
            .min()
            .expect("more than `limit` calls")
    }

    /// The steady rate once the first window has passed, in calls per second.
    fn steady_rate(left: &[Instant], limit: usize) -> f64 {
        let steady = &left[limit..];
        let elapsed = (steady[steady.len() - 1] - steady[0]).as_secs_f64();
        (steady.len() - 1) as f64 / elapsed
    }

    /// Never more than `max_qps` calls in any window of a second (plus the margin), for any
    /// limit, also when calls wake up late by up to 35 ms.
    #[test]
    fn no_window_ever_holds_more_than_max_qps_calls() {
        for limit in [1, 2, 3, 7, 10, 20, 40, 60, 1000] {
            for late_ms in [0, 1, 19, 35] {
                let left = run(limit, 5 * limit + 3, |call| {
                    Duration::from_millis(if call % 3 == 0 { late_ms } else { 0 })
                });
                let span = tightest_span(&left, limit);
                assert!(
                    span >= WINDOW,
                    "{limit} per second, {late_ms} ms late: {} calls within {span:?}",
                    limit + 1
                );
            }
        }
    }

    /// With thousands of calls waiting, the rate is at least 95% of `max_qps` and never above
    /// it, also when every call wakes up a few milliseconds late.
    #[test]
    fn steady_rate_is_at_least_95_percent_of_the_limit() {
        for limit in [1, 10, 20, 60] {
            for late_ms in [0, 2, 10] {
                let left = run(limit, 60 * limit, |call| {
                    Duration::from_millis(late_ms * (call as u64 % 2))
                });
                let rate = steady_rate(&left, limit);
                assert!(
                    rate >= 0.95 * limit as f64 && rate <= limit as f64,
                    "{limit} per second, {late_ms} ms late: {rate:.3} calls/s"
                );
            }
        }
    }

    /// Calls leave evenly spaced rather than in bursts, also the first ones after a quiet
    /// spell.
    #[test]
    fn calls_are_evenly_spaced() {
        let limit = 20;
        let left = run(limit, 100, |_| Duration::ZERO);
        for pair in left.windows(2) {
            assert_eq!(pair[1] - pair[0], PACING / limit as u32);
        }
    }

    /// A slot is never before the moment it is asked for, and after a quiet spell the next
    /// call goes at once.
    #[test]
    fn after_a_quiet_spell_the_next_call_goes_at_once() {
        let mut schedule = Schedule::new(10);
        let start = Instant::now();
        assert_eq!(schedule.reserve(start), start);
        assert_eq!(schedule.reserve(start), start + PACING / 10);
        let later = start + Duration::from_secs(5);
        assert_eq!(schedule.reserve(later), later);
    }

    /// Each API has its own schedule: a busy getsendprogress does not delay getsendresult.
    #[tokio::test]
    async fn apis_are_limited_independently() {
        let limiter = ApiLimiter::new(1);
        limiter.acquire(Api::GetSendProgress).await;
        let other = tokio::time::timeout(
            Duration::from_millis(500),
            limiter.acquire(Api::GetSendResult),
        )
        .await;
        assert!(other.is_ok(), "getsendresult waited for getsendprogress");
        let same = tokio::time::timeout(
            Duration::from_millis(200),
            limiter.acquire(Api::GetSendProgress),
        )
        .await;
        assert!(
            same.is_err(),
            "a second getsendprogress got through at once"
        );
    }

    /// Real calls under contention keep to the limit: of 7 concurrent callers at 5 per
    /// second, the sixth leaves more than a second after the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_keep_to_the_window() {
        let limiter = std::sync::Arc::new(ApiLimiter::new(5));
        let callers: Vec<_> = (0..7)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire(Api::GetSendProgress).await;
                    Instant::now()
                })
            })
            .collect();
        let mut left = Vec::new();
        for caller in callers {
            left.push(caller.await.expect("caller finished"));
        }
        left.sort();
        assert!(tightest_span(&left, 5) > Duration::from_secs(1));
    }
}
