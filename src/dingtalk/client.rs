//! The DingTalk client of one configured app: `gettoken`, `getsendprogress`, `getsendresult`.
//!
//! Every metered attempt goes through the same steps, in this order:
//! 1. the IP-ban pause: while DingTalk's per-IP throttle bans this host, nothing is sent;
//! 2. the [`CallGate`]: the monthly budget reserves the call (durably) or defers it;
//! 3. the outbound [`ApiLimiter`]: wait for this API's next slot;
//! 4. the request itself, with `--dingtalk.timeout` and a bounded answer size;
//! 5. classification ([`super::answer`]), telemetry, and what to do next: done, retry after a
//!    backoff (-1, 500, transport errors), pause at least a second (throttle codes), refresh the
//!    token and retry once (token errors), or stop (everything else; 90020 also tells the gate).
//!
//! Nothing this module logs or returns contains the app secret or a token: error texts are
//! built without URLs and scrubbed by [`super::redact`] as well.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::json;

use super::answer;
use super::corp_token::{
    SuiteTicketFile, corp_token_signature, decode_corp_access_token, decode_unified_token,
};
use super::limiter::ApiLimiter;
use super::redact::redact_values;
use super::token::{CachedToken, TokenCache};
use super::{
    Api, ApiFailure, CallGate, Deferral, DeliveryApi, SendProgress, SendResult, THROTTLE_PAUSE,
    is_throttle_code, is_transient_code,
};
use crate::clock::{ms_to_seconds, now_ms};
use crate::config::{AppConfig, DingTalkSettings, TokenApi};
use crate::secret::Secret;
use crate::telemetry::Telemetry;

/// Answers larger than this are refused unread: DingTalk's answers are a few hundred bytes, a
/// `getsendresult` for 100 recipients a few kilobytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Attempts per call for retryable failures (DingTalk's docs: retry busy answers at most 3
/// times), counting the first.
pub const MAX_ATTEMPTS: u32 = 3;

/// Retries after a throttle answer: one, after a pause, since hammering a throttle only makes
/// it last longer; the scheduler polls again later anyway.
pub const MAX_THROTTLE_RETRIES: u32 = 1;

/// The first backoff after a retryable failure; doubled for each further one, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// The same failure is logged as a warning at most this often per API; the repeats go to
/// debug, and the counters still see every one.
const WARN_EVERY_MS: i64 = 60_000;

/// DingTalk codes meaning "this token is no good": refresh it and retry once.
const TOKEN_REJECTED: &[i64] = &[40014, 42001, 40001];

/// DingTalk codes meaning the request never got past authentication or the app's setup
/// (credentials, permissions, IP whitelist, blank token, wrong API URL): `dingtalk_up` is 0.
/// The corp-token errors of third-party apps (bad timestamp or signature, unknown or missing
/// suite ticket, bad suite credentials, no authorisation) are among them.
const NOT_AUTHENTICATED: &[i64] = &[
    22, 40000, 40001, 40014, 42001, 40089, 40096, 60011, 60020, 40080, 40083, 40085, 40088, 41023,
    48004, 853001, 853002, 853003, 853004,
];

/// What an operator can do about a refused token request, by DingTalk's code.
fn token_failure_hint(failure: &ApiFailure) -> Option<&'static str> {
    let hint = match failure {
        ApiFailure::DingTalk { code, .. } => match code {
            40089 | 40096 => "the app key or app secret is wrong",
            853001 => "the signature timestamp was not in milliseconds",
            853002 => "this host's clock is more than a minute off DingTalk's: fix its time (NTP)",
            853003 => "the suite key (accessKey) is wrong",
            853004 => {
                "the signature is wrong: check the suite secret and that the suite ticket file holds the latest ticket"
            }
            40085 => {
                "the suite ticket is unknown or outdated: the suite ticket file must hold the latest ticket DingTalk pushed"
            }
            41023 => "the suite ticket is missing: check the suite ticket file",
            40080 | 40083 | 40088 => "the suite key or suite secret is wrong",
            48004 => "this corp has not authorised the app (or revoked it): check corp_id",
            _ => return None,
        },
        ApiFailure::OpenApi { code, .. } => match code.as_str() {
            "invalid.client" | "unauthorized.client" | "invalidSuiteKey" => {
                "the suite key or suite secret (client id or secret) is wrong"
            }
            "invalidSuiteTicket" => {
                "the suite ticket is invalid or outdated: the suite ticket file must hold the latest ticket DingTalk pushed"
            }
            "invalidAuthInfo" => {
                "this corp has not authorised the app (or revoked it): check corp_id"
            }
            "unsupported.grant.type" => {
                "DingTalk refused the client-credentials grant for this app"
            }
            _ => return None,
        },
        _ => return None,
    };
    Some(hint)
}

/// Whether a code of the newer API host asks the caller to slow down: the ISV throttles.
fn is_openapi_throttle(code: &str) -> bool {
    code.starts_with("QpsLimit") || code.eq_ignore_ascii_case("Throttling")
}

/// DingTalk's monthly API quota is used up.
const QUOTA_EXHAUSTED: i64 = 90020;

/// What to do after a failed attempt.
#[derive(Debug, PartialEq)]
enum Next {
    /// Transient: back off and try again (limited).
    Retry,
    /// A QPS throttle: pause at least a second, then try again (limited).
    Throttled,
    /// The token was rejected: refresh it and try once more.
    RefreshToken,
    /// Nothing to gain from trying again.
    GiveUp,
}

fn next_step(failure: &ApiFailure) -> Next {
    match failure {
        ApiFailure::Transport(_) => Next::Retry,
        ApiFailure::DingTalk { code, .. } => match *code {
            code if is_transient_code(code) => Next::Retry,
            code if is_throttle_code(code) => Next::Throttled,
            code if TOKEN_REJECTED.contains(&code) => Next::RefreshToken,
            _ => Next::GiveUp,
        },
        ApiFailure::OpenApi { code, .. } if code == "server.error" => Next::Retry,
        ApiFailure::OpenApi { code, .. } if is_openapi_throttle(code) => Next::Throttled,
        _ => Next::GiveUp,
    }
}

/// Whether a call's outcome shows DingTalk reachable with working credentials; `None` when
/// nothing was sent.
fn reached_and_authenticated<T>(outcome: &Result<T, ApiFailure>) -> Option<bool> {
    match outcome {
        Ok(_) => Some(true),
        Err(ApiFailure::Deferred { .. }) => None,
        Err(failure) => failure_reached_and_authenticated(failure),
    }
}

fn failure_reached_and_authenticated(failure: &ApiFailure) -> Option<bool> {
    match failure {
        ApiFailure::Deferred { .. } => None,
        ApiFailure::DingTalk { code, .. } => Some(!NOT_AUTHENTICATED.contains(code)),
        ApiFailure::OpenApi { code, .. } => Some(is_openapi_throttle(code)),
        ApiFailure::NoToken(cause) => failure_reached_and_authenticated(cause),
        _ => Some(false),
    }
}

/// A failed token fetch as the failure of the task call that needed the token: the call
/// was never sent. A deferral stays one (nothing was attempted either way).
fn without_token(failure: ApiFailure) -> ApiFailure {
    match failure {
        ApiFailure::Deferred { .. } => failure,
        other => ApiFailure::NoToken(Box::new(other)),
    }
}

/// One request as sent on each attempt.
#[derive(Clone, Copy)]
enum Request<'a> {
    Token,
    Task {
        api: Api,
        token: &'a Secret,
        agent_id: i64,
        task_id: i64,
    },
}

impl Request<'_> {
    fn api(&self) -> Api {
        match self {
            Request::Token => Api::GetToken,
            Request::Task { api, .. } => *api,
        }
    }
}

/// The pause of all calls while DingTalk's per-IP throttle bans this host.
#[derive(Default)]
struct IpBan {
    until_ms: AtomicI64,
}

impl IpBan {
    fn check(&self, now_ms: i64) -> Result<(), ApiFailure> {
        let until_ms = self.until_ms.load(Ordering::Acquire);
        if now_ms < until_ms {
            return Err(ApiFailure::Deferred {
                until_ms,
                reason: Deferral::IpBan,
            });
        }
        Ok(())
    }

    fn start(&self, until_ms: i64) {
        self.until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }
}

/// Keeps a persistent failure from writing a warning per call.
#[derive(Default)]
struct WarnLimit {
    last_warned_ms: Mutex<HashMap<(Api, String), i64>>,
}

impl WarnLimit {
    fn should_warn(&self, api: Api, label: &str, now_ms: i64) -> bool {
        let mut last = self
            .last_warned_ms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (api, label.to_string());
        match last.get(&key) {
            Some(at) if now_ms - at < WARN_EVERY_MS => false,
            _ => {
                last.insert(key, now_ms);
                true
            }
        }
    }
}

/// The DingTalk client of one app, or of one corp of a third-party app (its own token,
/// limiter and monthly gate). Cheap to share (`Arc`); calls may run concurrently.
pub struct DingTalkClient {
    app: String,
    /// The `corp` label, for a third-party app's corp.
    corp: Option<String>,
    api_url: Url,
    /// The newer API host, for the unified and `corpAccessToken` token APIs.
    openapi_url: Url,
    token_api: TokenApi,
    corp_id: Option<String>,
    suite_ticket: Option<SuiteTicketFile>,
    app_key: String,
    app_secret: Secret,
    http: reqwest::Client,
    tokens: TokenCache,
    limiter: ApiLimiter,
    ip_ban: IpBan,
    ip_ban_cap_ms: i64,
    telemetry: Arc<Telemetry>,
    gate: Arc<dyn CallGate>,
    warnings: WarnLimit,
    /// Names the replica in the `User-Agent` when several share a database, so that a
    /// call in DingTalk's (or a proxy's) logs says which replica made it.
    replica: Option<String>,
    /// When a call last told whether DingTalk is reachable and accepts the credentials.
    last_checked_ms: AtomicI64,
}

impl DingTalkClient {
    /// Names the replica this client's calls come from (in their `User-Agent`).
    pub fn identify_replica(&mut self, replica: &str) {
        self.replica = Some(replica.to_string());
    }

    /// A client for `app`. `ip_ban_cap` bounds how long one punish answer pauses the calls
    /// (the exporter passes `--poll.max-interval`); `gate` decides on every metered call.
    pub fn new(
        app: &AppConfig,
        settings: &DingTalkSettings,
        ip_ban_cap: Duration,
        telemetry: Arc<Telemetry>,
        gate: Arc<dyn CallGate>,
    ) -> Result<DingTalkClient, String> {
        let base_url = |text: &str, example: &str| {
            let url = Url::parse(text.trim())
                .map_err(|err| format!("app {}: invalid API URL: {err}", app.name))?;
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                return Err(format!(
                    "app {}: the API URL must be an http or https URL, like {example}",
                    app.name
                ));
            }
            Ok(url)
        };
        let api_url = base_url(&app.api_url, "https://oapi.dingtalk.com")?;
        let openapi_url = base_url(&settings.openapi_url, "https://api.dingtalk.com")?;
        if app.token_api != TokenApi::GetToken && app.corp_id.is_none() {
            return Err(format!(
                "app {}: the {} token API needs a corp id",
                app.name,
                app.token_api.as_str()
            ));
        }
        let suite_ticket = app
            .corp
            .as_ref()
            .and_then(|corp| corp.suite_ticket_file.as_ref())
            .map(SuiteTicketFile::new);
        if app.token_api.needs_suite_ticket() && suite_ticket.is_none() {
            return Err(format!(
                "app {}: the {} token API needs a suite ticket file",
                app.name,
                app.token_api.as_str()
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect would carry the token in its query to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dingtalk-exporter/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| format!("app {}: cannot build the HTTP client: {err}", app.name))?;
        // The token series exist from the start, so rate() and alerts see a 0 before the
        // first refresh instead of a missing series.
        telemetry.start_app_series(&app.name, app.corp_label());
        Ok(DingTalkClient {
            app: app.name.clone(),
            corp: app.corp_label().map(str::to_string),
            api_url,
            openapi_url,
            token_api: app.token_api,
            corp_id: app.corp_id.clone(),
            suite_ticket,
            app_key: app.app_key.clone(),
            app_secret: app.app_secret.clone(),
            http,
            tokens: TokenCache::new(),
            limiter: ApiLimiter::new(settings.max_qps),
            ip_ban: IpBan::default(),
            ip_ban_cap_ms: i64::try_from(ip_ban_cap.as_millis()).unwrap_or(i64::MAX),
            telemetry,
            gate,
            replica: None,
            warnings: WarnLimit::default(),
            last_checked_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// Makes sure the app has a valid access token (fetching one if needed; `gettoken` is not
    /// metered) and sets `dingtalk_up` from the outcome: lets the exporter check an app's
    /// credentials at start, before any task is due.
    pub async fn authenticate(&self) -> Result<(), ApiFailure> {
        if let Some(token) = self.tokens.current(now_ms()) {
            // A cached token proves nothing about now: ask DingTalk again.
            self.tokens.invalidate(&token);
        }
        let outcome = self.token().await.map(|_| ());
        self.record_outcome(Api::GetToken, None, &outcome);
        outcome
    }

    /// A metered task call: with a cached token, retried as its failures allow, and once more
    /// with a fresh token when DingTalk rejected the one it got.
    async fn task_call<T>(
        &self,
        api: Api,
        agent_id: i64,
        task_id: i64,
        decode: fn(u16, &[u8]) -> Result<T, ApiFailure>,
    ) -> Result<T, ApiFailure> {
        let outcome = async {
            let token = self.token().await.map_err(without_token)?;
            let request = Request::Task {
                api,
                token: &token,
                agent_id,
                task_id,
            };
            match self.with_retries(request, decode).await {
                Err(failure) if next_step(&failure) == Next::RefreshToken => {
                    tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = api.as_str(), errcode = ?failure.dingtalk_code(), "token rejected; refreshing it and retrying once");
                    self.tokens.invalidate(&token);
                    let fresh = self.token().await.map_err(without_token)?;
                    let request = Request::Task {
                        api,
                        token: &fresh,
                        agent_id,
                        task_id,
                    };
                    self.with_retries(request, decode).await
                }
                other => other,
            }
        }
        .await;
        self.record_outcome(api, Some((agent_id, task_id)), &outcome);
        outcome
    }

    /// The app's access token, from the cache or fetched (single-flight).
    async fn token(&self) -> Result<Secret, ApiFailure> {
        self.tokens.get(now_ms(), || self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<CachedToken, ApiFailure> {
        self.telemetry
            .record_token_refresh(&self.app, self.corp.as_deref());
        let decode = match self.token_api {
            TokenApi::GetToken | TokenApi::GetCorpToken => answer::decode_token,
            TokenApi::Unified => decode_unified_token,
            TokenApi::CorpAccessToken => decode_corp_access_token,
        };
        match self.with_retries(Request::Token, decode).await {
            Ok(issued) => {
                let lifetime_s = issued.expires_in_s;
                let cached = CachedToken::issued(issued, now_ms());
                self.telemetry.record_token_issued(
                    &self.app,
                    self.corp.as_deref(),
                    ms_to_seconds(cached.expires_at_ms),
                );
                tracing::debug!(app = %self.app, corp = self.corp.as_deref(), token_api = self.token_api.as_str(), lifetime_s, "fetched a new access token");
                Ok(cached)
            }
            Err(failure) => {
                if !matches!(failure, ApiFailure::Deferred { .. }) {
                    self.telemetry
                        .record_token_refresh_failure(&self.app, self.corp.as_deref());
                }
                if let Some(hint) = token_failure_hint(&failure)
                    && self
                        .warnings
                        .should_warn(Api::GetToken, "refused", now_ms())
                {
                    tracing::warn!(app = %self.app, corp = self.corp.as_deref(), token_api = self.token_api.as_str(), error = %failure, "DingTalk refused the access token request: {hint}");
                }
                Err(failure)
            }
        }
    }

    /// Runs attempts of `request` until one succeeds or its failure is not worth retrying.
    async fn with_retries<T>(
        &self,
        request: Request<'_>,
        decode: fn(u16, &[u8]) -> Result<T, ApiFailure>,
    ) -> Result<T, ApiFailure> {
        let mut attempts = 0;
        let mut throttle_retries = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(request, attempts, decode).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let pause = match next_step(&failure) {
                Next::Retry if attempts < MAX_ATTEMPTS => backoff(attempts),
                Next::Throttled
                    if attempts < MAX_ATTEMPTS && throttle_retries < MAX_THROTTLE_RETRIES =>
                {
                    throttle_retries += 1;
                    throttle_pause()
                }
                _ => return Err(failure),
            };
            tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = request.api().as_str(), error = %failure, pause_ms = pause.as_millis() as u64, "retrying after a pause");
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: the ban check, the gate, the limiter, the request, and its telemetry.
    async fn attempt<T>(
        &self,
        request: Request<'_>,
        attempt: u32,
        decode: fn(u16, &[u8]) -> Result<T, ApiFailure>,
    ) -> Result<T, ApiFailure> {
        let api = request.api();
        self.ip_ban.check(now_ms())?;
        if api.is_metered() {
            self.gate.reserve(now_ms())?;
        }
        self.limiter.acquire(api).await;
        // A ban may have begun while this call waited for its slot.
        self.ip_ban.check(now_ms())?;
        // And another call may have refreshed the token meanwhile: sending the one taken
        // before the wait would spend a metered call on a sure 40014.
        let refreshed;
        let request = match request {
            Request::Task {
                api,
                token,
                agent_id,
                task_id,
            } => match self.tokens.current(now_ms()) {
                Some(current) if current != *token => {
                    refreshed = current;
                    Request::Task {
                        api,
                        token: &refreshed,
                        agent_id,
                        task_id,
                    }
                }
                _ => request,
            },
            Request::Token => request,
        };

        let started = Instant::now();
        let outcome = match self.send(request).await {
            Ok((status, body)) => decode(status, &body),
            Err(failure) => Err(failure),
        }
        .map_err(|failure| self.scrub(failure, request));
        let elapsed = started.elapsed();

        let failure = match &outcome {
            Ok(_) => {
                self.telemetry.record_call(api.as_str(), elapsed, None);
                tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = api.as_str(), attempt, outcome = "ok", duration_ms = elapsed.as_millis() as u64, "DingTalk call");
                return outcome;
            }
            Err(failure) => failure,
        };
        let label = failure.errcode_label().unwrap_or_default();
        self.telemetry
            .record_call(api.as_str(), elapsed, Some(&label));
        tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = api.as_str(), attempt, outcome = %label, duration_ms = elapsed.as_millis() as u64, error = %failure, "DingTalk call");

        match failure {
            ApiFailure::IpBanned { retry_after_ms } => {
                let pause_ms = (*retry_after_ms).min(self.ip_ban_cap_ms).max(0);
                self.ip_ban.start(now_ms().saturating_add(pause_ms));
                tracing::warn!(app = %self.app, corp = self.corp.as_deref(), api = api.as_str(), pause_s = pause_ms / 1000, "DingTalk's per-IP throttle banned this host; pausing every call of this app");
                return Err(ApiFailure::IpBanned {
                    retry_after_ms: pause_ms,
                });
            }
            ApiFailure::DingTalk { code, .. } if *code == QUOTA_EXHAUSTED && api.is_metered() => {
                self.gate.quota_exhausted(now_ms());
            }
            _ => {}
        }
        outcome
    }

    /// Sends one request and reads its answer, at most [`MAX_ANSWER_BYTES`] of it.
    async fn send(&self, request: Request<'_>) -> Result<(u16, Vec<u8>), ApiFailure> {
        let builder = match request {
            Request::Token => self.token_request(),
            Request::Task {
                api,
                token,
                agent_id,
                task_id,
            } => {
                // The `api` label of the task APIs is their endpoint's name.
                let mut url =
                    self.endpoint(&["topapi", "message", "corpconversation", api.as_str()]);
                url.query_pairs_mut()
                    .append_pair("access_token", token.expose());
                self.http
                    .post(url)
                    .json(&json!({"agent_id": agent_id, "task_id": task_id}))
            }
        };
        let builder = match &self.replica {
            Some(replica) => builder.header(
                reqwest::header::USER_AGENT,
                format!(
                    "dingtalk-exporter/{} (replica {replica})",
                    env!("CARGO_PKG_VERSION")
                ),
            ),
            None => builder,
        };
        let mut response = builder.send().await.map_err(transport_failure)?;
        let status = response.status().as_u16();
        let too_large = || {
            if (200..300).contains(&status) {
                ApiFailure::Decode(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
            } else {
                ApiFailure::Http(status)
            }
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(body_failure)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    /// The token request of this app's token API.
    fn token_request(&self) -> reqwest::RequestBuilder {
        let corp_id = self.corp_id.as_deref().unwrap_or_default();
        match self.token_api {
            TokenApi::GetToken => {
                let mut url = self.endpoint(&["gettoken"]);
                url.query_pairs_mut()
                    .append_pair("appkey", &self.app_key)
                    .append_pair("appsecret", self.app_secret.expose());
                self.http.get(url)
            }
            TokenApi::Unified => {
                let url = join(&self.openapi_url, &["v1.0", "oauth2", corp_id, "token"]);
                self.http.post(url).json(&json!({
                    "client_id": self.app_key,
                    "client_secret": self.app_secret.expose(),
                    "grant_type": "client_credentials",
                }))
            }
            TokenApi::CorpAccessToken => {
                let url = join(&self.openapi_url, &["v1.0", "oauth2", "corpAccessToken"]);
                let ticket = self.suite_ticket();
                self.http.post(url).json(&json!({
                    "suiteKey": self.app_key,
                    "suiteSecret": self.app_secret.expose(),
                    "authCorpId": corp_id,
                    "suiteTicket": ticket.expose(),
                }))
            }
            TokenApi::GetCorpToken => {
                let ticket = self.suite_ticket();
                let timestamp = now_ms();
                let signature =
                    corp_token_signature(self.app_secret.expose(), timestamp, ticket.expose());
                let mut url = self.endpoint(&["service", "get_corp_token"]);
                // append_pair percent-encodes each value once: `+`, `/` and `=` of the
                // Base64 signature included, as DingTalk requires.
                url.query_pairs_mut()
                    .append_pair("accessKey", &self.app_key)
                    .append_pair("timestamp", &timestamp.to_string())
                    .append_pair("suiteTicket", ticket.expose())
                    .append_pair("signature", &signature);
                self.http.post(url).json(&json!({ "auth_corpid": corp_id }))
            }
        }
    }

    /// The suite ticket as the file holds it now. A ticket that cannot be read is sent
    /// empty: DingTalk then answers with its missing-ticket error, which is logged and
    /// counted like every other refusal, and the next attempt reads the file again.
    fn suite_ticket(&self) -> Secret {
        let Some(file) = &self.suite_ticket else {
            return Secret::new("");
        };
        file.read().unwrap_or_else(|problem| {
            tracing::warn!(app = %self.app, corp = self.corp.as_deref(), "{problem}");
            Secret::new("")
        })
    }

    /// `{api_url}/segments...`, keeping any path prefix of the configured URL.
    fn endpoint(&self, segments: &[&str]) -> Url {
        join(&self.api_url, segments)
    }

    /// Removes the app secret and the token of `request` from a failure's text, wherever
    /// they might appear (a URL, an echoed parameter, a quoted answer).
    fn scrub(&self, failure: ApiFailure, request: Request<'_>) -> ApiFailure {
        let token = match request {
            Request::Task { token, .. } => token.expose(),
            Request::Token => "",
        };
        let ticket = match (request, &self.suite_ticket) {
            (Request::Token, Some(file)) => file.read().unwrap_or_else(|_| Secret::new("")),
            _ => Secret::new(""),
        };
        let clean = |text: String| {
            redact_values(&text, &[self.app_secret.expose(), token, ticket.expose()])
        };
        match failure {
            ApiFailure::DingTalk { code, message } => ApiFailure::DingTalk {
                code,
                message: clean(message),
            },
            ApiFailure::Transport(text) => ApiFailure::Transport(clean(text)),
            ApiFailure::Decode(text) => ApiFailure::Decode(clean(text)),
            ApiFailure::OpenApi {
                status,
                code,
                message,
            } => ApiFailure::OpenApi {
                status,
                code: clean(code),
                message: clean(message),
            },
            other => other,
        }
    }

    /// Sets `dingtalk_up` from a finished call and warns about failures (rate-limited).
    /// Every line names the API that failed (`gettoken` when the token was the problem,
    /// with the API it was needed `for`), the host asked, and the task, when there is one.
    fn record_outcome<T>(
        &self,
        api: Api,
        task: Option<(i64, i64)>,
        outcome: &Result<T, ApiFailure>,
    ) {
        if let Some(up) = reached_and_authenticated(outcome) {
            self.telemetry
                .record_reachability(&self.app, self.corp.as_deref(), up);
            self.last_checked_ms.store(now_ms(), Ordering::Relaxed);
        }
        let Err(failure) = outcome else { return };
        let failed_api = failure.failed_api(api);
        let (agent_id, task_id) = match task {
            Some((agent_id, task_id)) => (Some(agent_id), Some(task_id)),
            None => (None, None),
        };
        let host = self.host();
        let Some(label) = failure.errcode_label() else {
            tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = failed_api.as_str(), host = %host, agent_id, task_id, reason = %failure, "call held back");
            return;
        };
        let needed_for = (failed_api != api).then_some(api.as_str());
        if self.warnings.should_warn(failed_api, &label, now_ms()) {
            tracing::warn!(app = %self.app, corp = self.corp.as_deref(), api = failed_api.as_str(), host = %host, needed_for, agent_id, task_id, errcode = %label, error = %failure, "DingTalk call failed");
        } else {
            tracing::debug!(app = %self.app, corp = self.corp.as_deref(), api = failed_api.as_str(), host = %host, needed_for, agent_id, task_id, errcode = %label, error = %failure, "DingTalk call failed (repeat)");
        }
    }

    /// The host (and port, when one is given) of the app's API URL: where the calls go.
    fn host(&self) -> String {
        let host = self.api_url.host_str().unwrap_or_default();
        match self.api_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl DeliveryApi for DingTalkClient {
    async fn send_progress(&self, agent_id: i64, task_id: i64) -> Result<SendProgress, ApiFailure> {
        let outcome = self
            .task_call(
                Api::GetSendProgress,
                agent_id,
                task_id,
                answer::decode_progress,
            )
            .await;
        if outcome.is_ok() {
            self.telemetry.record_poll_success(
                &self.app,
                self.corp.as_deref(),
                ms_to_seconds(now_ms()),
            );
        }
        outcome
    }

    async fn send_result(&self, agent_id: i64, task_id: i64) -> Result<SendResult, ApiFailure> {
        self.task_call(
            Api::GetSendResult,
            agent_id,
            task_id,
            answer::decode_send_result,
        )
        .await
    }

    async fn check_credentials(&self, idle_for: Duration) -> Result<(), ApiFailure> {
        let idle_ms = i64::try_from(idle_for.as_millis()).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(self.last_checked_ms.load(Ordering::Relaxed)) < idle_ms {
            return Ok(());
        }
        self.authenticate().await
    }
}

/// `{base}/segments...`, keeping any path prefix of the base URL and dropping its query.
fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .expect("checked in new(): the API URLs can be a base")
        .pop_if_empty()
        .extend(segments);
    url
}

/// A failure before any answer arrived. The text comes from an error without its URL, so it
/// holds no token even before redaction.
fn transport_failure(err: reqwest::Error) -> ApiFailure {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "no answer"
    };
    ApiFailure::Transport(format!("{kind}: {}", error_chain(err)))
}

/// A failure while reading an answer whose head had arrived: a timeout is a transport
/// failure; a connection closed mid-answer left an answer cut short, which is a decode failure.
fn body_failure(err: reqwest::Error) -> ApiFailure {
    if err.is_timeout() {
        ApiFailure::Transport(format!(
            "timed out reading the answer: {}",
            error_chain(err)
        ))
    } else {
        ApiFailure::Decode(format!("answer cut short: {}", error_chain(err)))
    }
}

/// An error and its causes on one line ("error sending request" alone hides the
/// "Connection refused" beneath it), without the request URL, which may carry a token.
pub fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Exponential backoff with jitter after the `attempt`-th failure: about 250 ms, 500 ms, ...
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    base.mul_f64(rand::random_range(0.5..1.5))
}

/// At least a second after a throttle answer, plus jitter so that callers throttled together
/// do not come back together.
fn throttle_pause() -> Duration {
    THROTTLE_PAUSE + Duration::from_millis(rand::random_range(0..500))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dingtalk(code: i64) -> ApiFailure {
        ApiFailure::DingTalk {
            code,
            message: String::new(),
        }
    }

    /// Only transient failures are retried; throttles pause; token errors refresh.
    #[test]
    fn next_steps_follow_the_error_table() {
        assert_eq!(next_step(&dingtalk(-1)), Next::Retry);
        assert_eq!(next_step(&dingtalk(500)), Next::Retry);
        assert_eq!(next_step(&ApiFailure::Transport("x".into())), Next::Retry);
        for code in [90002, 90003, 90014, 90018, 45009] {
            assert_eq!(next_step(&dingtalk(code)), Next::Throttled, "{code}");
        }
        for code in [40014, 42001, 40001] {
            assert_eq!(next_step(&dingtalk(code)), Next::RefreshToken, "{code}");
        }
        for failure in [
            dingtalk(40035),
            dingtalk(40000),
            dingtalk(40089),
            dingtalk(40096),
            dingtalk(60011),
            dingtalk(90020),
            dingtalk(88),
            ApiFailure::Http(502),
            ApiFailure::Decode("x".into()),
            ApiFailure::IpBanned {
                retry_after_ms: 1000,
            },
        ] {
            assert_eq!(next_step(&failure), Next::GiveUp, "{failure:?}");
        }
    }

    /// dingtalk_up is 1 for authenticated DingTalk answers, 0 for credential and reach problems.
    #[test]
    fn up_follows_reach_and_authentication() {
        let up = |failure: ApiFailure| reached_and_authenticated::<()>(&Err(failure));
        assert_eq!(reached_and_authenticated(&Ok(())), Some(true));
        assert_eq!(up(dingtalk(40035)), Some(true));
        assert_eq!(up(dingtalk(90018)), Some(true));
        assert_eq!(up(dingtalk(90020)), Some(true));
        assert_eq!(up(dingtalk(40096)), Some(false));
        assert_eq!(up(dingtalk(42001)), Some(false));
        assert_eq!(up(dingtalk(60020)), Some(false));
        assert_eq!(up(ApiFailure::Http(502)), Some(false));
        assert_eq!(up(ApiFailure::Transport("x".into())), Some(false));
        assert_eq!(
            up(ApiFailure::Deferred {
                until_ms: 1,
                reason: Deferral::MonthlyBudget
            }),
            None
        );
    }

    /// Backoff grows and stays jittered around its nominal value; throttle pauses last ≥ 1 s.
    #[test]
    fn pauses() {
        for _ in 0..100 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(125) && first < Duration::from_millis(375));
            let second = backoff(2);
            assert!(second >= Duration::from_millis(250) && second < Duration::from_millis(750));
            assert!(throttle_pause() >= Duration::from_secs(1));
        }
    }

    /// The endpoint keeps a path prefix of the API URL and drops its query.
    #[test]
    fn endpoints_keep_the_path_prefix() {
        let client = |api_url: &str| {
            let app = AppConfig {
                name: "a".into(),
                agent_id: None,
                app_key: "k".into(),
                app_secret: Secret::new("s"),
                api_url: api_url.into(),
                token_api: crate::config::TokenApi::GetToken,
                corp_id: None,
                corp: None,
            };
            let settings = DingTalkSettings {
                max_qps: 10,
                monthly_call_budget: 0,
                timeout: Duration::from_secs(1),
                openapi_url: "https://api.dingtalk.com".to_string(),
            };
            DingTalkClient::new(
                &app,
                &settings,
                Duration::from_secs(60),
                Arc::new(Telemetry::new()),
                Arc::new(NoGate),
            )
        };
        let plain = client("https://oapi.dingtalk.com").unwrap();
        assert_eq!(
            plain.endpoint(&["gettoken"]).as_str(),
            "https://oapi.dingtalk.com/gettoken"
        );
        let prefixed = client("http://127.0.0.1:8080/dingtalk/?x=1").unwrap();
        assert_eq!(
            prefixed.endpoint(&["topapi", "x"]).as_str(),
            "http://127.0.0.1:8080/dingtalk/topapi/x"
        );
        assert!(client("ftp://example.invalid").is_err());
        assert!(client("not a url").is_err());
    }

    struct NoGate;

    impl CallGate for NoGate {
        fn reserve(&self, _now_ms: i64) -> Result<(), ApiFailure> {
            Ok(())
        }
        fn quota_exhausted(&self, _now_ms: i64) {}
    }
}
