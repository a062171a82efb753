//! The outbound rate limit: at most `--dingtalk.max-qps` calls per second per API per app.
//!
//! DingTalk counts calls per app and API in a sliding one-second window at its end, and the
//! exporter shares that budget with the application that sends the notifications, so the
//! limit must hold in *every* one-second window, also under a burst of due polls. A token
//! bucket with a burst above one would let a burst land right after a steady stream and put
//! up to twice the limit into one window; instead each call gets its own slot, spaced evenly
//! with a little headroom ([`HEADROOM`]): then `max_qps + 1` calls span more than a second
//! even when network and scheduling jitter move some of them closer together.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::Api;

/// How much longer than a second `max_qps` slots take. DingTalk sees the calls when they
/// arrive, not when they leave, so this absorbs up to 100 ms of jitter between the first and
/// the last call of a window, at the cost of 10% of the nominal rate.
pub const HEADROOM: f64 = 1.1;

/// One limiter per API of one app. Callers wait for their slot rather than fail.
pub struct ApiLimiter {
    per_api: [DefaultDirectRateLimiter; 3],
    spacing: Duration,
}

impl ApiLimiter {
    /// A limiter allowing `max_qps` calls per second per API (0 is treated as 1).
    pub fn new(max_qps: u32) -> ApiLimiter {
        let spacing = slot_spacing(max_qps);
        let quota = Quota::with_period(spacing)
            .expect("the spacing is positive")
            .allow_burst(NonZeroU32::MIN);
        ApiLimiter {
            per_api: [
                RateLimiter::direct(quota),
                RateLimiter::direct(quota),
                RateLimiter::direct(quota),
            ],
            spacing,
        }
    }

    /// Waits until a call of `api` may be sent, then takes its slot.
    pub async fn acquire(&self, api: Api) {
        self.per_api[index(api)].until_ready().await;
    }

    /// The minimum gap between two calls of one API.
    pub fn spacing(&self) -> Duration {
        self.spacing
    }
}

/// The gap between two calls of one API: a second (plus headroom) shared by `max_qps` slots.
pub fn slot_spacing(max_qps: u32) -> Duration {
    let per_second = max_qps.max(1);
    let nanos = (1_000_000_000.0 * HEADROOM / f64::from(per_second)).ceil() as u64;
    Duration::from_nanos(nanos)
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

    /// `max_qps + 1` evenly spaced slots always span more than one second.
    #[test]
    fn slots_never_fit_more_than_max_qps_into_a_second() {
        for max_qps in [1, 2, 3, 7, 10, 20, 40, 60, 1000] {
            let span = slot_spacing(max_qps) * max_qps;
            assert!(
                span > Duration::from_secs(1),
                "{max_qps}: {max_qps}+1 calls span {span:?}"
            );
        }
        assert_eq!(slot_spacing(0), slot_spacing(1));
    }

    /// Each API has its own slots: a busy getsendprogress does not delay getsendresult.
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
}
