//! Which replica polls which app: a lease per app (per corp of a third-party app) in the
//! shared database, renewed well inside `--ha.lease-duration`.
//!
//! Timing, for a lease duration `d`:
//! - a replica renews its leases every `d/5`, and a renewal makes the lease last `4d/5`
//!   from the database's clock; so a dead owner's lease has run out at most `4d/5` after
//!   it died, and another replica, trying every `d/5`, takes it over within `d`;
//! - fencing: the owner counts its lease from the moment it *sent* the renewal (on its own
//!   monotonic clock, so before the database counted it) and stops starting calls `d/5`
//!   before that count runs out. An owner that cannot reach the database thus stops polling
//!   before anyone else can take its apps: a stale owner never polls;
//! - spreading: each replica keeps a heartbeat row, and takes at most its share of the
//!   apps (`ceil(apps / replicas alive)`); a replica over its share (another one joined)
//!   hands one app back per round, stopping its own polling of it first.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::watch;

use super::postgres::with_client;
use crate::telemetry::Telemetry;

/// What a lease is about: an app, and for a third-party app one corp of it by its `corp`
/// label (`""` for an internal app), as in the `leases` table's key and in the labels of
/// the lease metrics.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    pub app: String,
    pub corp: String,
}

impl LeaseKey {
    /// The lease of an internal app.
    pub fn app(name: &str) -> LeaseKey {
        LeaseKey {
            app: name.to_string(),
            corp: String::new(),
        }
    }

    /// The lease of one corp (by its `corp` label) of a third-party app.
    pub fn corp(app: &str, corp: &str) -> LeaseKey {
        LeaseKey {
            app: app.to_string(),
            corp: corp.to_string(),
        }
    }

    /// The `corp` label of the lease's metrics: none for an internal app.
    pub fn corp_label(&self) -> Option<&str> {
        (!self.corp.is_empty()).then_some(self.corp.as_str())
    }
}

/// The leases one replica holds, and the loop that keeps them.
pub struct Leases {
    replica: String,
    duration: Duration,
    /// Held leases and when, on this replica's monotonic clock, each runs out at the
    /// earliest (counted from when its last renewal was sent).
    held: Mutex<HashMap<LeaseKey, Instant>>,
    /// Leases this replica handed back, and since when: not taken again for a lease
    /// duration, so that another replica gets them.
    handed_back: Mutex<HashMap<LeaseKey, Instant>>,
    telemetry: Arc<Telemetry>,
}

impl Leases {
    pub fn new(replica: &str, duration: Duration, telemetry: Arc<Telemetry>) -> Leases {
        Leases {
            replica: replica.to_string(),
            duration,
            held: Mutex::new(HashMap::new()),
            handed_back: Mutex::new(HashMap::new()),
            telemetry,
        }
    }

    /// The name of this replica in the `leases` table.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn renew_every(&self) -> Duration {
        self.duration / 5
    }

    /// How long a lease lasts in the database after a renewal.
    fn lasts(&self) -> Duration {
        self.duration - self.renew_every()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseKey, Instant>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this replica may start a call for `key` now: it holds the lease, and the
    /// lease cannot run out for a while yet (fencing).
    pub fn owns(&self, key: &LeaseKey) -> bool {
        let fence = Instant::now() + self.renew_every();
        self.lock().get(key).is_some_and(|until| *until > fence)
    }

    /// Keeps this replica's share of the leases of `wanted()` (the apps configured now,
    /// which a reload may change) until `shutdown`, then hands every lease back so that
    /// another replica takes over at once rather than after the lease runs out.
    pub async fn run(
        self: Arc<Self>,
        pool: Pool,
        wanted: Arc<dyn Fn() -> Vec<LeaseKey> + Send + Sync>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut warned = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = Instant::now();
            let wanted = wanted();
            match self.round(&pool, &wanted).await {
                Ok(()) => warned = false,
                Err(err) => {
                    if !warned {
                        tracing::warn!(error = %err, "cannot renew or take leases in the shared database; apps whose lease runs out stop being polled here");
                        warned = true;
                    }
                }
            }
            self.expire_local();
            let held = self.lock().keys().cloned().collect::<HashSet<_>>();
            for key in &wanted {
                self.telemetry
                    .record_lease_owner(&key.app, key.corp_label(), held.contains(key));
            }
            let pause = self.renew_every().saturating_sub(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Hands every held lease back (at a clean stop, once polls in flight have ended).
    pub async fn release_all(&self, pool: &Pool) {
        let held: Vec<LeaseKey> = self.lock().drain().map(|(key, _)| key).collect();
        for key in &held {
            self.telemetry
                .record_lease_owner(&key.app, key.corp_label(), false);
        }
        let replica = self.replica.clone();
        let outcome = with_client(pool, async |client| {
            client
                .execute("DELETE FROM leases WHERE owner = $1", &[&replica])
                .await?;
            client
                .execute("DELETE FROM replicas WHERE replica = $1", &[&replica])
                .await
        })
        .await;
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "could not hand the leases back; other replicas take them over once they run out");
        }
    }

    /// Leases whose local count ran out without a renewal are lost.
    fn expire_local(&self) {
        let now = Instant::now() + self.renew_every();
        let mut held = self.lock();
        let lost: Vec<LeaseKey> = held
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in lost {
            held.remove(&key);
            self.lost(&key, "it could not be renewed in time");
        }
    }

    fn lost(&self, key: &LeaseKey, why: &str) {
        tracing::warn!(app = %key.app, corp = %key.corp, replica = %self.replica, "lost the lease on an app's polling: {why}; this replica stops polling it");
        self.telemetry
            .record_lease_owner(&key.app, key.corp_label(), false);
        self.telemetry.record_lease_loss(&key.app, key.corp_label());
    }

    /// One round: heartbeat, renew what is held, take or hand back to reach the share.
    async fn round(&self, pool: &Pool, wanted: &[LeaseKey]) -> Result<(), String> {
        let lasts_ms = i64::try_from(self.lasts().as_millis()).unwrap_or(i64::MAX);
        let replica = self.replica.clone();
        let alive: i64 = with_client(pool, async |client| {
            client
                .execute(
                    "INSERT INTO replicas (replica, seen_until) \
                     VALUES ($1, now() + make_interval(secs => $2::BIGINT / 1000.0)) \
                     ON CONFLICT (replica) DO UPDATE SET seen_until = excluded.seen_until",
                    &[&replica, &lasts_ms],
                )
                .await?;
            client
                .execute(
                    "DELETE FROM replicas WHERE seen_until < now() - interval '1 hour'",
                    &[],
                )
                .await?;
            Ok(client
                .query_one(
                    "SELECT count(*) FROM replicas WHERE seen_until > now()",
                    &[],
                )
                .await?
                .get(0))
        })
        .await?;

        // Renew what is held; a lease no longer wanted (its app left the config) is handed
        // back like one over the share.
        let wanted_set: HashSet<&LeaseKey> = wanted.iter().collect();
        let held: Vec<LeaseKey> = self.lock().keys().cloned().collect();
        for key in &held {
            if !wanted_set.contains(key) {
                self.hand_back(pool, key).await?;
                continue;
            }
            self.renew(pool, key).await?;
        }

        let share = wanted
            .len()
            .div_ceil(usize::try_from(alive.max(1)).unwrap_or(1));
        let owned = self.lock().len();
        if owned > share {
            let mut held: Vec<LeaseKey> = self.lock().keys().cloned().collect();
            held.sort();
            if let Some(key) = held.last() {
                self.hand_back(pool, key).await?;
            }
            return Ok(());
        }
        let mut candidates: Vec<&LeaseKey> = wanted
            .iter()
            .filter(|key| !self.lock().contains_key(*key))
            .filter(|key| !self.recently_handed_back(key))
            .collect();
        // Replicas try the apps in different orders, so that they spread at once.
        candidates.sort_by_key(|key| self.preference(key));
        let mut owned = owned;
        for key in candidates {
            if owned >= share {
                break;
            }
            if self.take(pool, key).await? {
                owned += 1;
            }
        }
        Ok(())
    }

    fn preference(&self, key: &LeaseKey) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.replica, key).hash(&mut hasher);
        hasher.finish()
    }

    fn recently_handed_back(&self, key: &LeaseKey) -> bool {
        let mut handed_back = self
            .handed_back
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        handed_back.retain(|_, since| since.elapsed() < self.duration);
        handed_back.contains_key(key)
    }

    /// Extends a held lease; losing it (another replica has it now) stops polling it.
    async fn renew(&self, pool: &Pool, key: &LeaseKey) -> Result<(), String> {
        let sent = Instant::now();
        let lasts_ms = i64::try_from(self.lasts().as_millis()).unwrap_or(i64::MAX);
        let (app, corp, replica) = (key.app.clone(), key.corp.clone(), self.replica.clone());
        let renewed = with_client(pool, async |client| {
            client
                .execute(
                    "UPDATE leases SET expires_at = now() + make_interval(secs => $4::BIGINT / 1000.0) \
                     WHERE app = $1 AND corp = $2 AND owner = $3",
                    &[&app, &corp, &replica, &lasts_ms],
                )
                .await
        })
        .await?;
        if renewed == 1 {
            self.lock().insert(key.clone(), sent + self.lasts());
            self.telemetry
                .record_lease_renewal(&key.app, key.corp_label());
        } else if self.lock().remove(key).is_some() {
            self.lost(key, "another replica holds it now");
        }
        Ok(())
    }

    /// Takes a lease nobody holds or whose holder let it run out.
    async fn take(&self, pool: &Pool, key: &LeaseKey) -> Result<bool, String> {
        let sent = Instant::now();
        let lasts_ms = i64::try_from(self.lasts().as_millis()).unwrap_or(i64::MAX);
        let (app, corp, replica) = (key.app.clone(), key.corp.clone(), self.replica.clone());
        let taken = with_client(pool, async |client| {
            client
                .query_opt(
                    "INSERT INTO leases (app, corp, owner, expires_at) \
                     VALUES ($1, $2, $3, now() + make_interval(secs => $4::BIGINT / 1000.0)) \
                     ON CONFLICT (app, corp) DO UPDATE \
                     SET owner = excluded.owner, expires_at = excluded.expires_at \
                     WHERE leases.expires_at < now() OR leases.owner = excluded.owner \
                     RETURNING owner",
                    &[&app, &corp, &replica, &lasts_ms],
                )
                .await
        })
        .await?
        .is_some();
        if taken {
            self.lock().insert(key.clone(), sent + self.lasts());
            tracing::info!(app = %key.app, corp = %key.corp, replica = %self.replica, "took the lease on an app's polling");
            self.telemetry
                .record_lease_owner(&key.app, key.corp_label(), true);
            self.telemetry
                .record_lease_renewal(&key.app, key.corp_label());
        }
        Ok(taken)
    }

    /// Stops polling `key` here, then lets the lease run out after the fence, so that a
    /// call this replica started just before still ends before another replica starts.
    async fn hand_back(&self, pool: &Pool, key: &LeaseKey) -> Result<(), String> {
        if self.lock().remove(key).is_none() {
            return Ok(());
        }
        self.telemetry
            .record_lease_owner(&key.app, key.corp_label(), false);
        self.handed_back
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.clone(), Instant::now());
        tracing::info!(app = %key.app, corp = %key.corp, replica = %self.replica, "handing an app's polling to another replica");
        let fence_ms = i64::try_from(self.renew_every().as_millis()).unwrap_or(i64::MAX);
        let (app, corp, replica) = (key.app.clone(), key.corp.clone(), self.replica.clone());
        with_client(pool, async |client| {
            client
                .execute(
                    "UPDATE leases SET expires_at = LEAST(expires_at, now() + make_interval(secs => $4::BIGINT / 1000.0)) \
                     WHERE app = $1 AND corp = $2 AND owner = $3",
                    &[&app, &corp, &replica, &fence_ms],
                )
                .await
        })
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica polls an app only while it holds the lease with more than a fifth of the
    /// lease duration left (the fence), and a lease whose count ran out is lost, counted
    /// and shown as not owned.
    #[test]
    fn polling_stops_a_fifth_of_the_lease_before_it_can_run_out() {
        let telemetry = Arc::new(Telemetry::new());
        let leases = Leases::new("replica-a", Duration::from_secs(15), telemetry.clone());
        let hr = LeaseKey::app("hr");
        assert!(!leases.owns(&hr), "no lease, no polling");

        leases
            .lock()
            .insert(hr.clone(), Instant::now() + Duration::from_secs(12));
        assert!(leases.owns(&hr), "a freshly renewed lease");

        leases
            .lock()
            .insert(hr.clone(), Instant::now() + Duration::from_secs(2));
        assert!(!leases.owns(&hr), "inside the fence: held, but not polled");

        telemetry.record_lease_owner("hr", None, true);
        leases.expire_local();
        assert!(!leases.owns(&hr));
        assert_eq!(
            telemetry.sample("dingtalk_ha_owner", &[("app", "hr")]),
            Some(0.0)
        );
        assert_eq!(
            telemetry.sample("dingtalk_ha_lease_losses_total", &[("app", "hr")]),
            Some(1.0)
        );
    }
}
