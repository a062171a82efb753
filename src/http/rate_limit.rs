//! The web config's `rate_limit`: one token bucket for the whole server, as exporter-toolkit
//! builds it with Go's `rate.NewLimiter(rate.Every(interval), burst)`. The bucket starts
//! full with `burst` tokens and gains one every `interval`; a request takes one, or gets
//! 429 when none is left. `burst: 0` admits nothing (as in Go), which the check warns about.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket shared by every client.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A bucket of `burst` tokens refilled at one per `interval` (which is not zero).
    pub fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter {
            interval,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                updated: Instant::now(),
            }),
        }
    }

    /// Takes a token if one is left.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.updated);
        let refill = elapsed.as_secs_f64() / self.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.burst));
        bucket.updated = now.max(bucket.updated);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst passes at once, the next request is refused, and one more passes per
    /// interval after that.
    #[test]
    fn a_burst_then_one_per_interval() {
        let limiter = RateLimiter::new(Duration::from_secs(1), 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow_at(start));
        }
        assert!(!limiter.allow_at(start));
        assert!(!limiter.allow_at(start + Duration::from_millis(900)));
        assert!(limiter.allow_at(start + Duration::from_millis(1000)));
        assert!(!limiter.allow_at(start + Duration::from_millis(1100)));
        // A long pause refills the bucket to the burst, no further.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.allow_at(later));
        }
        assert!(!limiter.allow_at(later));
    }

    /// `burst: 0` admits nothing, however long one waits (Go's behaviour).
    #[test]
    fn a_zero_burst_admits_nothing() {
        let limiter = RateLimiter::new(Duration::from_millis(10), 0);
        let start = Instant::now();
        assert!(!limiter.allow_at(start));
        assert!(!limiter.allow_at(start + Duration::from_secs(10)));
    }
}
