//! The per-app access token cache.
//!
//! DingTalk asks callers to cache the token (it lives 7200 s), to refresh it a few minutes
//! before it expires, and throttles callers that fetch it too often. So the cache:
//! - hands out the cached token until its refresh time ([`refresh_margin_ms`] before expiry);
//! - refreshes single-flight: one fetch in flight, every other caller waits for its outcome
//!   (a failed fetch is shared too, so N waiters do not turn into N more fetches);
//! - keeps using a still-valid token when an early refresh fails;
//! - drops a token that DingTalk rejected, unless a newer one already replaced it.

use std::future::Future;
use std::sync::Mutex;

use super::ApiFailure;
use super::answer::IssuedToken;
use crate::secret::Secret;

/// DingTalk's advice: refresh a few minutes early.
const EARLY_REFRESH_MS: i64 = 5 * 60 * 1000;

/// How long before expiry a token is refreshed: five minutes, or a quarter of its lifetime
/// when that is shorter (test tokens and simulators use lifetimes of seconds).
pub fn refresh_margin_ms(lifetime_ms: i64) -> i64 {
    EARLY_REFRESH_MS.min(lifetime_ms / 4).max(0)
}

/// A token and when to stop using it.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub token: Secret,
    /// When DingTalk will stop accepting it (Unix ms).
    pub expires_at_ms: i64,
    /// When to fetch a new one (Unix ms).
    pub refresh_at_ms: i64,
}

impl CachedToken {
    /// The cache entry for a token issued at `now_ms`.
    pub fn issued(issued: IssuedToken, now_ms: i64) -> CachedToken {
        let lifetime_ms = issued.expires_in_s.saturating_mul(1000);
        let expires_at_ms = now_ms.saturating_add(lifetime_ms);
        CachedToken {
            token: issued.access_token,
            expires_at_ms,
            refresh_at_ms: expires_at_ms - refresh_margin_ms(lifetime_ms),
        }
    }
}

#[derive(Default)]
struct State {
    cached: Option<CachedToken>,
    /// Fetches finished so far; lets a waiter see that a fetch ended while it waited.
    fetches_done: u64,
    /// How the latest fetch failed, if it did.
    last_failure: Option<ApiFailure>,
}

/// The token cache of one app.
#[derive(Default)]
pub struct TokenCache {
    state: Mutex<State>,
    /// Held while a fetch is in flight: the single-flight gate.
    refresh: tokio::sync::Mutex<()>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// A token to use at `now_ms`: the cached one while it is fresh, else the result of
    /// `fetch`, run by at most one caller at a time.
    pub async fn get<F, Fut>(&self, now_ms: i64, fetch: F) -> Result<Secret, ApiFailure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedToken, ApiFailure>>,
    {
        let fetches_seen = {
            let state = self.lock();
            if let Some(fresh) = state.cached.as_ref().filter(|t| now_ms < t.refresh_at_ms) {
                return Ok(fresh.token.clone());
            }
            state.fetches_done
        };

        let _in_flight = self.refresh.lock().await;
        {
            let state = self.lock();
            if let Some(fresh) = state.cached.as_ref().filter(|t| now_ms < t.refresh_at_ms) {
                return Ok(fresh.token.clone());
            }
            if state.fetches_done != fetches_seen
                && let Some(failure) = &state.last_failure
            {
                // A fetch ended in failure while this caller waited: share its outcome, which
                // is the old token while that is still valid.
                return match state.cached.as_ref().filter(|t| now_ms < t.expires_at_ms) {
                    Some(still_valid) => Ok(still_valid.token.clone()),
                    None => Err(failure.clone()),
                };
            }
        }

        let outcome = fetch().await;
        let mut state = self.lock();
        state.fetches_done += 1;
        match outcome {
            Ok(fresh) => {
                let token = fresh.token.clone();
                state.cached = Some(fresh);
                state.last_failure = None;
                Ok(token)
            }
            Err(failure) => {
                state.last_failure = Some(failure.clone());
                match state.cached.as_ref().filter(|t| now_ms < t.expires_at_ms) {
                    // An early refresh failed; the old token still works for a while.
                    Some(still_valid) => Ok(still_valid.token.clone()),
                    None => {
                        state.cached = None;
                        Err(failure)
                    }
                }
            }
        }
    }

    /// DingTalk rejected `token`: forget it, unless a newer token replaced it meanwhile.
    pub fn invalidate(&self, token: &Secret) {
        let mut state = self.lock();
        if state.cached.as_ref().is_some_and(|t| &t.token == token) {
            state.cached = None;
        }
    }

    /// The cached token if DingTalk still accepts it at `now_ms`, without fetching.
    pub fn current(&self, now_ms: i64) -> Option<Secret> {
        self.lock()
            .cached
            .as_ref()
            .filter(|t| now_ms < t.expires_at_ms)
            .map(|t| t.token.clone())
    }

    /// When the cached token expires, if there is one.
    pub fn expires_at_ms(&self) -> Option<i64> {
        self.lock().cached.as_ref().map(|t| t.expires_at_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn issued(token: &str, lifetime_s: i64, now_ms: i64) -> CachedToken {
        CachedToken::issued(
            IssuedToken {
                access_token: Secret::new(token),
                expires_in_s: lifetime_s,
            },
            now_ms,
        )
    }

    /// A 7200 s token is refreshed five minutes early, a 20 s one 5 s early.
    #[test]
    fn refresh_margin_scales_with_short_lifetimes() {
        let long = issued("t", 7200, 0);
        assert_eq!(long.expires_at_ms, 7_200_000);
        assert_eq!(long.refresh_at_ms, 6_900_000);
        let short = issued("t", 20, 1000);
        assert_eq!(short.refresh_at_ms, 16_000);
    }

    /// A call that waited for its rate-limit slot sees the token a refresh put in the cache
    /// meanwhile, and nothing once the token has expired.
    #[tokio::test]
    async fn current_shows_the_latest_valid_token() {
        let cache = TokenCache::new();
        assert_eq!(cache.current(0), None);
        let first = cache
            .get(0, || async { Ok(issued("first", 20, 0)) })
            .await
            .unwrap();
        assert_eq!(cache.current(1_000), Some(first.clone()));
        cache.invalidate(&first);
        let second = cache
            .get(2_000, || async { Ok(issued("second", 20, 2_000)) })
            .await
            .unwrap();
        assert_eq!(cache.current(3_000), Some(second));
        assert_eq!(cache.current(22_000), None);
    }

    /// The cached token is reused until its refresh time, then fetched again.
    #[tokio::test]
    async fn reuses_until_refresh_time() {
        let cache = TokenCache::new();
        let fetches = AtomicUsize::new(0);
        let fetch = |now| {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(issued(&format!("t{n}"), 7200, now)) }
        };
        assert_eq!(cache.get(0, || fetch(0)).await.unwrap().expose(), "t0");
        assert_eq!(
            cache
                .get(6_899_999, || fetch(6_899_999))
                .await
                .unwrap()
                .expose(),
            "t0"
        );
        assert_eq!(
            cache
                .get(6_900_000, || fetch(6_900_000))
                .await
                .unwrap()
                .expose(),
            "t1"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    /// Many callers without a token cause exactly one fetch, and all get its token.
    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let mut callers = Vec::new();
        for _ in 0..16 {
            let (cache, fetches, started, release) = (
                cache.clone(),
                fetches.clone(),
                started.clone(),
                release.clone(),
            );
            callers.push(tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                cache
                    .get(0, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        release.acquire().await.expect("open").forget();
                        Ok(issued("shared", 7200, 0))
                    })
                    .await
            }));
        }
        // On this single-threaded runtime a caller that has started has run up to its first
        // wait, so every caller is either fetching or queued behind the fetch.
        while started.load(Ordering::SeqCst) < 16 {
            tokio::task::yield_now().await;
        }
        release.add_permits(16);
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().expose(), "shared");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    /// Callers that waited on a failed fetch get its failure instead of fetching again.
    #[tokio::test]
    async fn a_failed_fetch_is_shared_with_waiters() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let failing = {
            let (cache, fetches, gate) = (cache.clone(), fetches.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get(0, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Err(ApiFailure::Http(502))
                    })
                    .await
            })
        };
        while fetches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (cache, fetches, started) =
                (cache.clone(), fetches.clone(), waiter_started.clone());
            tokio::spawn(async move {
                started.store(true, Ordering::SeqCst);
                cache
                    .get(0, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        Ok(issued("late", 7200, 0))
                    })
                    .await
            })
        };
        // Single-threaded runtime: once the waiter has started it is queued on the fetch.
        while !waiter_started.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(failing.await.unwrap(), Err(ApiFailure::Http(502)));
        assert_eq!(waiter.await.unwrap(), Err(ApiFailure::Http(502)));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // A later caller tries again.
        let token = cache
            .get(1, || async { Ok(issued("next", 7200, 1)) })
            .await
            .unwrap();
        assert_eq!(token.expose(), "next");
    }

    /// An early refresh that fails keeps the still-valid token in use.
    #[tokio::test]
    async fn failed_early_refresh_keeps_the_valid_token() {
        let cache = TokenCache::new();
        cache
            .get(0, || async { Ok(issued("old", 7200, 0)) })
            .await
            .unwrap();
        let token = cache
            .get(7_000_000, || async { Err(ApiFailure::Http(503)) })
            .await
            .unwrap();
        assert_eq!(token.expose(), "old");
        let expired = cache
            .get(7_200_000, || async { Err(ApiFailure::Http(503)) })
            .await;
        assert_eq!(expired, Err(ApiFailure::Http(503)));
    }

    /// Invalidating a rejected token forces a fetch; a stale rejection keeps a newer token.
    #[tokio::test]
    async fn invalidate_drops_only_the_rejected_token() {
        let cache = TokenCache::new();
        let first = cache
            .get(0, || async { Ok(issued("a", 7200, 0)) })
            .await
            .unwrap();
        cache.invalidate(&first);
        let second = cache
            .get(1, || async { Ok(issued("b", 7200, 1)) })
            .await
            .unwrap();
        assert_eq!(second.expose(), "b");
        cache.invalidate(&first);
        let still = cache
            .get(2, || async { Ok(issued("c", 7200, 2)) })
            .await
            .unwrap();
        assert_eq!(still.expose(), "b");
        assert_eq!(cache.expires_at_ms(), Some(7_200_001));
    }
}
