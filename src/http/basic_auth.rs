//! HTTP basic auth against the bcrypt hashes of a web config's `basic_auth_users`.
//!
//! - Timing reveals nothing about which users exist at the usual costs: a request naming an
//!   unknown user is checked against a decoy hash of cost [`DECOY_COST`] (exporter-toolkit's
//!   fixed cost, and the cost `htpasswd -B` and the documentation use), so it costs the same
//!   bcrypt run as a known user with a typical hash. The decoy does not follow the highest
//!   configured cost: one user with a cost-18 hash would otherwise make every mistyped user
//!   name take seconds, and a scrape time out instead of getting 401.
//! - bcrypt is slow on purpose (tens of milliseconds at the usual cost). Prometheus presents
//!   the same credentials at every scrape, so the outcome of a check is remembered for
//!   [`REMEMBERED_FOR`], as exporter-toolkit does, failures included, keyed by an HMAC of
//!   user and password under a key drawn when the users were loaded: the cache never holds
//!   a password. A scrape storm costs one bcrypt run per credential and period; repeating
//!   a wrong password costs one too. Successes and failures are kept apart, so a flood of
//!   different wrong passwords never evicts a valid user's entry.
//! - A flood of wrong passwords must not lock valid users out: at most [`bcrypt_parallelism`]
//!   bcrypt runs happen at once, a client address may have at most
//!   [`MAX_CHECKS_PER_CLIENT`] checks waiting or running (past it, 429), and at most
//!   [`MAX_PENDING_CHECKS`] wait in all (past it, 503). Each refusal comes at once, so the
//!   flood gets refusals instead of a queue. The checks of one address queue for a bcrypt
//!   slot one at a time, so a valid user from another address waits behind one check of
//!   each flooding address, not behind all of them. Remembered credentials never wait.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use tokio::sync::Semaphore;

/// How long the outcome of a check is remembered. Longer than the usual scrape intervals,
/// so a scraping Prometheus costs one bcrypt run every few minutes.
pub const REMEMBERED_FOR: Duration = Duration::from_secs(5 * 60);

/// The most outcomes of each kind (success, failure) remembered at once; past it, that
/// kind starts over.
const MAX_REMEMBERED: usize = 1024;

/// The bcrypt cost of the decoy an unknown user is checked against.
pub const DECOY_COST: u32 = 10;

/// Checks one client address may have waiting or running at once.
pub const MAX_CHECKS_PER_CLIENT: usize = 4;

/// Checks that may wait or run at once, from every client together.
pub const MAX_PENDING_CHECKS: usize = 64;

/// The `WWW-Authenticate` challenge of a refusal.
pub const CHALLENGE: &str = "Basic realm=\"dingtalk-exporter\"";

/// bcrypt runs at once: half the cores (at least one, at most four), so that a flood of
/// guesses leaves the other half to scrapes and polling.
pub fn bcrypt_parallelism() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    (cores / 2).clamp(1, 4)
}

/// What came of a request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials of a user.
    Allowed,
    /// No credentials, malformed ones, or not a user's: 401.
    Refused,
    /// Not checked: this client has [`MAX_CHECKS_PER_CLIENT`] checks pending (429).
    ClientBusy,
    /// Not checked: [`MAX_PENDING_CHECKS`] are pending (503).
    Overloaded,
}

/// The users of `basic_auth_users` and what was checked recently.
pub struct BasicAuth {
    /// User name → bcrypt hash, every hash checked at load.
    users: HashMap<String, String>,
    /// A well-formed hash of cost [`DECOY_COST`] no password matches.
    decoy: String,
    cache_key: hmac::Key,
    allowed: Mutex<HashMap<[u8; 32], Instant>>,
    refused: Mutex<HashMap<[u8; 32], Instant>>,
    bcrypt_slots: Semaphore,
    pending: AtomicUsize,
    /// Per client address: its pending checks, and the turn its checks take one at a time
    /// before they queue for a bcrypt slot.
    pending_by_client: Mutex<HashMap<IpAddr, ClientChecks>>,
    #[cfg(test)]
    bcrypt_runs: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        f.debug_struct("BasicAuth").field("users", &users).finish()
    }
}

/// A problem with one entry of `basic_auth_users`: the user name and what is wrong.
pub type UserProblem = (String, String);

/// The pending checks of one client address.
#[derive(Default)]
struct ClientChecks {
    count: usize,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// A pending check, counted until it is dropped.
struct Pending<'a> {
    auth: &'a BasicAuth,
    client: IpAddr,
    /// Held while the check waits for a bcrypt slot and runs: one per address at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.auth.pending.fetch_sub(1, Ordering::AcqRel);
        let mut by_client = lock(&self.auth.pending_by_client);
        if let Some(checks) = by_client.get_mut(&self.client) {
            checks.count -= 1;
            if checks.count == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BasicAuth {
    /// Checks every user's hash; the problems name the user, never the hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, Vec<UserProblem>> {
        let mut problems = Vec::new();
        for (user, hash) in &users {
            if user.contains(':') {
                problems.push((
                    user.clone(),
                    "a user name cannot hold ':' (basic auth splits user and password at the first ':')".to_string(),
                ));
            }
            match bcrypt::HashParts::from_str(hash) {
                Ok(parts) if (bcrypt_min_cost()..=bcrypt_max_cost()).contains(&parts.get_cost()) => {}
                Ok(parts) => problems.push((
                    user.clone(),
                    format!(
                        "bcrypt cost {} is outside {}..={}",
                        parts.get_cost(),
                        bcrypt_min_cost(),
                        bcrypt_max_cost()
                    ),
                )),
                Err(_) => problems.push((
                    user.clone(),
                    "is not a bcrypt hash ($2y$..., 60 characters; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".to_string(),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(BasicAuth {
            users: users.into_iter().collect(),
            decoy: decoy_hash(DECOY_COST),
            cache_key: hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()),
            allowed: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            bcrypt_slots: Semaphore::new(bcrypt_parallelism()),
            pending: AtomicUsize::new(0),
            pending_by_client: Mutex::new(HashMap::new()),
            #[cfg(test)]
            bcrypt_runs: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Judges the request's `Authorization: Basic` credentials, sent from `client`.
    pub async fn check(&self, headers: &HeaderMap, client: IpAddr) -> Verdict {
        let Some((user, password)) = basic_credentials(headers) else {
            return Verdict::Refused;
        };
        let cache_key = self.cache_key(&user, &password);
        if remembered(&self.allowed, &cache_key) {
            return Verdict::Allowed;
        }
        if remembered(&self.refused, &cache_key) {
            return Verdict::Refused;
        }
        let pending = match self.admit(client.to_canonical()) {
            Ok(pending) => pending,
            Err(verdict) => return verdict,
        };
        // One check per address queues for a slot at a time, so that a valid user from
        // another address waits behind one check of each flooding address, not all of them.
        let _turn = pending.turn.lock().await;
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let Ok(_slot) = self.bcrypt_slots.acquire().await else {
            return Verdict::Refused; // never closed
        };
        #[cfg(test)]
        self.bcrypt_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        // The decoy matches nothing; checking `known` too keeps it that way whatever it holds.
        if matches && known.is_some() {
            remember(&self.allowed, cache_key);
            Verdict::Allowed
        } else {
            remember(&self.refused, cache_key);
            Verdict::Refused
        }
    }

    /// Counts a check for `client`, or says why it cannot wait.
    fn admit(&self, client: IpAddr) -> Result<Pending<'_>, Verdict> {
        let mut by_client = lock(&self.pending_by_client);
        let checks = by_client.entry(client).or_default();
        if checks.count >= MAX_CHECKS_PER_CLIENT {
            return Err(Verdict::ClientBusy);
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_CHECKS {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if checks.count == 0 {
                by_client.remove(&client);
            }
            return Err(Verdict::Overloaded);
        }
        checks.count += 1;
        let turn = checks.turn.clone();
        Ok(Pending {
            auth: self,
            client,
            turn,
        })
    }

    fn cache_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        // Length-prefixed so that no two (user, password) pairs give the same message.
        let mut context = hmac::Context::with_key(&self.cache_key);
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password);
        let mut key = [0; 32];
        key.copy_from_slice(context.sign().as_ref());
        key
    }
}

fn remembered(outcomes: &Mutex<HashMap<[u8; 32], Instant>>, key: &[u8; 32]) -> bool {
    lock(outcomes)
        .get(key)
        .is_some_and(|until| Instant::now() < *until)
}

fn remember(outcomes: &Mutex<HashMap<[u8; 32], Instant>>, key: [u8; 32]) {
    let mut outcomes = lock(outcomes);
    let now = Instant::now();
    if outcomes.len() >= MAX_REMEMBERED {
        outcomes.retain(|_, until| now < *until);
        if outcomes.len() >= MAX_REMEMBERED {
            outcomes.clear();
        }
    }
    outcomes.insert(key, now + REMEMBERED_FOR);
}

/// The user and password of an `Authorization: Basic` header (the scheme is
/// case-insensitive); `None` when there is none or it is malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, encoded) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&byte| byte == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// A syntactically valid bcrypt hash of random bytes: checking a password against it costs
/// a full bcrypt run at `cost`, and no password matches it.
fn decoy_hash(cost: u32) -> String {
    let salt = bcrypt::BASE_64.encode(rand::random::<[u8; 16]>());
    let digest = bcrypt::BASE_64.encode(rand::random::<[u8; 23]>());
    format!("$2y${cost:02}${salt}{digest}")
}

/// bcrypt's cost bounds (the crate checks them when hashing but does not export them).
const fn bcrypt_min_cost() -> u32 {
    4
}

const fn bcrypt_max_cost() -> u32 {
    31
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use std::sync::atomic::Ordering;

    /// Cost 4 keeps these tests fast; the behaviour does not depend on the cost.
    fn users(pairs: &[(&str, &str)]) -> BasicAuth {
        BasicAuth::new(
            pairs
                .iter()
                .map(|(user, password)| (user.to_string(), bcrypt::hash(password, 4).unwrap()))
                .collect(),
        )
        .unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    impl BasicAuth {
        async fn allows(&self, headers: &HeaderMap) -> bool {
            self.check(headers, CLIENT).await == Verdict::Allowed
        }
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    /// The right password of a known user passes; a wrong one, an unknown user, a malformed
    /// or missing header do not.
    #[tokio::test]
    async fn only_a_users_own_password_passes() {
        let auth = users(&[("prometheus", "scrape-me"), ("ops", "p:ss word")]);
        assert!(auth.allows(&basic("prometheus", "scrape-me")).await);
        assert!(auth.allows(&basic("ops", "p:ss word")).await);
        assert!(!auth.allows(&basic("prometheus", "scrape-me!")).await);
        assert!(!auth.allows(&basic("ops", "scrape-me")).await);
        assert!(!auth.allows(&basic("nobody", "scrape-me")).await);
        assert!(!auth.allows(&HeaderMap::new()).await);
        for malformed in [
            "Basic !!!",
            "Bearer scrape-me",
            "Basic",
            "Basic cHJvbWV0aGV1cw==",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static(malformed));
            assert!(!auth.allows(&headers).await, "{malformed}");
        }
    }

    /// An unknown user costs one bcrypt run at the fixed decoy cost, whatever the users'
    /// costs: a cost-18 user does not make every mistyped name take seconds.
    #[tokio::test]
    async fn unknown_users_are_checked_against_a_decoy_of_fixed_cost() {
        let mut hashes = BTreeMap::new();
        hashes.insert("cheap".to_string(), bcrypt::hash("a", 4).unwrap());
        // A syntactically valid cost-18 hash: never verified here, so it costs nothing.
        hashes.insert("dear".to_string(), decoy_hash(18));
        let auth = BasicAuth::new(hashes).unwrap();
        let decoy = bcrypt::HashParts::from_str(&auth.decoy).unwrap();
        assert_eq!(decoy.get_cost(), DECOY_COST);
        assert!(!auth.allows(&basic("stranger", "")).await);
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 1);
    }

    /// A scrape storm with the same credentials costs one bcrypt run, and so does a
    /// repeated wrong password (as exporter-toolkit caches it); a new wrong password costs
    /// one more.
    #[tokio::test]
    async fn outcomes_are_remembered_both_ways() {
        let auth = users(&[("prometheus", "scrape-me")]);
        for _ in 0..100 {
            assert!(auth.allows(&basic("prometheus", "scrape-me")).await);
        }
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 1);
        for _ in 0..3 {
            assert!(!auth.allows(&basic("prometheus", "guess")).await);
        }
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 2);
        assert!(!auth.allows(&basic("prometheus", "another guess")).await);
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 3);
        // Poisoning the cache with a user name that holds the hash does not work.
        assert!(!auth.allows(&basic("prometheus$2y$04$", "scrape-me")).await);
    }

    /// A client with its share of checks pending gets `ClientBusy` at once, another client
    /// is still checked; past the total, everyone gets `Overloaded` at once.
    #[tokio::test]
    async fn pending_checks_are_capped_per_client_and_in_all() {
        let auth = users(&[("prometheus", "scrape-me")]);
        let flooder: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_CHECKS_PER_CLIENT)
            .map(|_| auth.admit(flooder).unwrap())
            .collect();
        assert_eq!(
            auth.check(&basic("prometheus", "guess"), flooder).await,
            Verdict::ClientBusy
        );
        assert_eq!(
            auth.check(&basic("prometheus", "scrape-me"), CLIENT).await,
            Verdict::Allowed
        );
        drop(held);
        let many: Vec<_> = (0..MAX_PENDING_CHECKS)
            .map(|index| {
                auth.admit(IpAddr::V4(std::net::Ipv4Addr::from(
                    0x0a00_0000 + index as u32,
                )))
                .unwrap()
            })
            .collect();
        assert_eq!(
            auth.check(&basic("prometheus", "other"), CLIENT).await,
            Verdict::Overloaded
        );
        // A remembered credential never waits for a slot.
        assert_eq!(
            auth.check(&basic("prometheus", "scrape-me"), CLIENT).await,
            Verdict::Allowed
        );
        drop(many);
        assert!(lock(&auth.pending_by_client).is_empty());
        assert_eq!(auth.pending.load(Ordering::Relaxed), 0);
    }

    /// Hashes that are not bcrypt, costs out of range and user names with ':' are refused,
    /// each naming its user and never the hash.
    #[test]
    fn bad_entries_name_their_user() {
        let mut hashes = BTreeMap::new();
        hashes.insert("plain".to_string(), "hunter2".to_string());
        hashes.insert(
            "cheap".to_string(),
            "$2y$03$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi".to_string(),
        );
        hashes.insert("a:b".to_string(), bcrypt::hash("x", 4).unwrap());
        let problems = BasicAuth::new(hashes).unwrap_err();
        let named: Vec<&str> = problems.iter().map(|(user, _)| user.as_str()).collect();
        assert_eq!(named, ["a:b", "cheap", "plain"]);
        assert!(
            problems
                .iter()
                .all(|(_, problem)| !problem.contains("hunter2"))
        );
        assert!(problems[1].1.contains("cost 3"), "{:?}", problems[1]);
    }
}
