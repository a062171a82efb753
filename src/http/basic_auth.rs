//! HTTP basic auth against the bcrypt hashes of a web config's `basic_auth_users`.
//!
//! - Timing reveals nothing about which users exist: a request naming an unknown user is
//!   checked against a decoy hash whose cost is the highest of the configured ones, so it
//!   costs the same bcrypt run as a known user's.
//! - bcrypt is slow on purpose (tens of milliseconds at the usual cost). Prometheus presents
//!   the same credentials at every scrape, so a successful check is remembered for
//!   [`VERIFIED_FOR`], keyed by an HMAC of user and password under a key drawn when the
//!   users were loaded: the cache never holds a password, and a scrape storm costs one
//!   bcrypt run per credential and period instead of one per request. Failures are not
//!   remembered, so guessing costs a full bcrypt run every time.
//! - At most one bcrypt run happens at a time, so a flood of wrong passwords takes one core,
//!   not all of them; credentials already verified never wait behind it.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use tokio::sync::Semaphore;

/// How long a successful check is remembered. Longer than the usual scrape intervals, so a
/// scraping Prometheus costs one bcrypt run every few minutes.
pub const VERIFIED_FOR: Duration = Duration::from_secs(5 * 60);

/// The most credentials remembered at once; past it, the cache starts over.
const MAX_VERIFIED: usize = 1024;

/// The `WWW-Authenticate` challenge of a refusal.
pub const CHALLENGE: &str = "Basic realm=\"dingtalk-exporter\"";

/// The users of `basic_auth_users` and what was verified recently.
pub struct BasicAuth {
    /// User name → bcrypt hash, every hash checked at load.
    users: HashMap<String, String>,
    /// A well-formed hash no password matches, at the highest cost of the users' hashes.
    decoy: String,
    cache_key: hmac::Key,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// One bcrypt run at a time.
    bcrypt_slot: Semaphore,
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

impl BasicAuth {
    /// Checks every user's hash; the problems name the user, never the hash.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, Vec<UserProblem>> {
        let mut problems = Vec::new();
        let mut highest_cost = bcrypt_min_cost();
        for (user, hash) in &users {
            if user.contains(':') {
                problems.push((
                    user.clone(),
                    "a user name cannot hold ':' (basic auth splits user and password at the first ':')".to_string(),
                ));
            }
            match bcrypt::HashParts::from_str(hash) {
                Ok(parts) if (bcrypt_min_cost()..=bcrypt_max_cost()).contains(&parts.get_cost()) => {
                    highest_cost = highest_cost.max(parts.get_cost());
                }
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
            decoy: decoy_hash(highest_cost),
            cache_key: hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()),
            verified: Mutex::new(HashMap::new()),
            bcrypt_slot: Semaphore::new(1),
            #[cfg(test)]
            bcrypt_runs: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Whether the request's `Authorization: Basic` credentials are those of a user.
    pub async fn allows(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let cache_key = self.cache_key(&user, &password);
        if self.recently_verified(&cache_key) {
            return true;
        }
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let Ok(_slot) = self.bcrypt_slot.acquire().await else {
            return false; // never closed
        };
        #[cfg(test)]
        self.bcrypt_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        // The decoy matches nothing; checking `known` too keeps it that way whatever it holds.
        let allowed = matches && known.is_some();
        if allowed {
            self.remember(cache_key);
        }
        allowed
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

    fn recently_verified(&self, key: &[u8; 32]) -> bool {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        verified
            .get(key)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, until| now < *until);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(key, now + VERIFIED_FOR);
    }
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

    /// An unknown user costs a bcrypt run at the users' highest cost, like a known one.
    #[tokio::test]
    async fn unknown_users_are_checked_against_a_decoy_of_the_highest_cost() {
        let mut hashes = BTreeMap::new();
        hashes.insert("cheap".to_string(), bcrypt::hash("a", 4).unwrap());
        hashes.insert("dear".to_string(), bcrypt::hash("b", 6).unwrap());
        let auth = BasicAuth::new(hashes).unwrap();
        let decoy = bcrypt::HashParts::from_str(&auth.decoy).unwrap();
        assert_eq!(decoy.get_cost(), 6);
        assert!(!auth.allows(&basic("stranger", "")).await);
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 1);
    }

    /// A scrape storm with the same credentials costs one bcrypt run; wrong passwords are
    /// never remembered.
    #[tokio::test]
    async fn successful_checks_are_remembered_failures_are_not() {
        let auth = users(&[("prometheus", "scrape-me")]);
        for _ in 0..100 {
            assert!(auth.allows(&basic("prometheus", "scrape-me")).await);
        }
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 1);
        for _ in 0..3 {
            assert!(!auth.allows(&basic("prometheus", "guess")).await);
        }
        assert_eq!(auth.bcrypt_runs.load(Ordering::Relaxed), 4);
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
