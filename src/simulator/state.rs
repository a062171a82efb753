//! What the simulated DingTalk remembers: access tokens, tasks, the per-second windows, the
//! monthly quota, and the statistics tests read back.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::config::{Behaviour, ExpiryStyle, SimApp, SimConfig, SimSuite};
use super::endpoint::{ApiError, Endpoint};
use super::faults::{FaultConfig, FaultKind};
use super::timeline::{Timeline, numbered_user_id};
use crate::clock::quota_month;

/// How a test or script asks for a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The agent (app) the task belongs to; only this agent id finds it.
    pub agent_id: i64,
    /// A task id of your choice; by default the simulator picks one above 2^31.
    #[serde(default)]
    pub task_id: Option<i64>,
    #[serde(default)]
    pub timeline: Timeline,
    /// Pretend the task was created this long ago (to test the query window).
    #[serde(default)]
    pub age_ms: i64,
}

/// A task the simulator knows, as the control API lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub agent_id: i64,
    pub task_id: i64,
    pub created_at_ms: i64,
    pub timeline: Timeline,
    /// Progress and status right now, as `getsendprogress` would answer.
    pub progress_in_percent: f64,
    pub status: i64,
}

/// Requests received per API, whatever they were answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    pub gettoken: u64,
    pub getsendprogress: u64,
    pub getsendresult: u64,
    pub asyncsend_v2: u64,
    /// Corp-token requests of third-party apps, per API.
    #[serde(default)]
    pub unified_token: u64,
    #[serde(default)]
    pub corp_access_token: u64,
    #[serde(default)]
    pub get_corp_token: u64,
    #[serde(default)]
    pub sendbytemplate: u64,
    /// Requests to paths DingTalk does not have (answered with errcode 22).
    pub unknown: u64,
}

/// Faults injected, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub html502: u64,
    pub punish: u64,
    #[serde(rename = "punish-html")]
    pub punish_html: u64,
    pub busy: u64,
    pub truncated: u64,
    pub slow: u64,
    pub drop: u64,
}

impl FaultCounts {
    fn slot(&mut self, kind: FaultKind) -> &mut u64 {
        match kind {
            FaultKind::Html502 => &mut self.html502,
            FaultKind::Punish => &mut self.punish,
            FaultKind::PunishHtml => &mut self.punish_html,
            FaultKind::Busy => &mut self.busy,
            FaultKind::Truncated => &mut self.truncated,
            FaultKind::Slow => &mut self.slow,
            FaultKind::Drop => &mut self.drop,
        }
    }

    /// How many faults of `kind` were injected.
    pub fn of(&self, kind: FaultKind) -> u64 {
        match kind {
            FaultKind::Html502 => self.html502,
            FaultKind::Punish => self.punish,
            FaultKind::PunishHtml => self.punish_html,
            FaultKind::Busy => self.busy,
            FaultKind::Truncated => self.truncated,
            FaultKind::Slow => self.slow,
            FaultKind::Drop => self.drop,
        }
    }

    pub fn total(&self) -> u64 {
        FaultKind::ALL.iter().map(|&kind| self.of(kind)).sum()
    }
}

/// What happened so far, for tests to assert on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub calls: CallCounts,
    /// Calls counted toward the monthly quota since the start.
    pub metered_calls: u64,
    /// Calls counted toward the quota of the current month.
    pub month_calls: u64,
    /// Calls answered 90018 (over the QPS limit).
    pub qps_rejections: u64,
    /// Calls answered 90020 (monthly quota used up).
    pub quota_rejections: u64,
    /// Calls refused for a blank, unknown or expired access token.
    pub token_rejections: u64,
    /// Distinct access tokens handed out.
    pub tokens_issued: u64,
    pub faults: FaultCounts,
    /// Non-zero errcodes answered, by errcode (88 counted as 88).
    pub errcodes: BTreeMap<i64, u64>,
    /// Tasks known (scripted or sent).
    pub tasks: u64,
    /// Per corp of a third-party app: calls counted toward its own quota this month.
    #[serde(default)]
    pub corp_month_calls: BTreeMap<String, u64>,
    /// Per corp: access tokens issued to it.
    #[serde(default)]
    pub corp_tokens_issued: BTreeMap<String, u64>,
}

/// One metered call as the simulator received it: when, about which task, and who asked
/// (the caller's `User-Agent`, which names the replica of an exporter sharing a database).
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub at_ms: i64,
    /// `getsendprogress`, `getsendresult` or `asyncsend_v2`.
    pub api: &'static str,
    pub agent_id: i64,
    pub task_id: i64,
    pub user_agent: String,
}

/// The call log keeps the latest calls only, so a long run cannot grow it without bound.
pub(crate) const CALL_LOG_LIMIT: usize = 100_000;

/// A task in the simulator.
#[derive(Clone, Debug)]
pub(crate) struct SimTask {
    pub agent_id: i64,
    pub created_at_ms: i64,
    pub timeline: Timeline,
    /// The user ids given to `asyncsend_v2`; scripted tasks have numbered users.
    pub user_ids: Option<Vec<String>>,
}

impl SimTask {
    pub fn user_id(&self, index: usize) -> String {
        self.user_ids
            .as_ref()
            .and_then(|ids| ids.get(index).cloned())
            .unwrap_or_else(|| numbered_user_id(index))
    }
}

struct IssuedToken {
    app_key: String,
    /// For a corp token: the corp and its agent, the only one the token may ask about.
    corp: Option<(String, i64)>,
    expires_at_ms: i64,
}

/// Whose a valid access token is.
pub(crate) struct TokenOwner {
    /// The app key, or `suite_key/corp_id` for a corp token (the QPS window's key).
    pub key: String,
    /// For a corp token: the corp and its agent.
    pub corp: Option<(String, i64)>,
}

pub(crate) struct State {
    pub behaviour: Behaviour,
    pub faults: FaultConfig,
    apps: Vec<SimApp>,
    pub suites: Vec<SimSuite>,
    /// Seeded: decides faults and quirks, so a run can be repeated.
    chance: StdRng,
    /// Seeded from the OS: tokens and ids must not be guessable from the seed.
    ids: StdRng,
    /// Every token ever issued, oldest first.
    issued: Vec<String>,
    /// Every token ever issued: whose it is and until when it is valid.
    tokens: HashMap<String, IssuedToken>,
    /// Each app's latest token, which `gettoken` hands out again while it is valid.
    current_token: HashMap<String, String>,
    /// By task id: DingTalk's task ids are unique across agents.
    tasks: HashMap<i64, SimTask>,
    next_task_id: i64,
    /// Times of the calls admitted in the last second, per app and API.
    windows: HashMap<(String, Endpoint), VecDeque<i64>>,
    quota_month: String,
    pub stats: SimStats,
    /// The latest metered calls, oldest first.
    pub call_log: VecDeque<CallRecord>,
}

impl State {
    pub fn new(config: &SimConfig) -> Self {
        let mut ids: StdRng = rand::make_rng();
        // Real task ids are around 2^37; starting there exercises 64-bit ids in clients.
        let next_task_id = 200_000_000_000 + ids.random_range(0..10_000_000_000);
        State {
            behaviour: config.behaviour.clone(),
            faults: config.faults.clone(),
            apps: config.apps.clone(),
            suites: config.suites.clone(),
            chance: StdRng::seed_from_u64(config.seed),
            ids,
            issued: Vec::new(),
            tokens: HashMap::new(),
            current_token: HashMap::new(),
            tasks: HashMap::new(),
            next_task_id,
            windows: HashMap::new(),
            quota_month: String::new(),
            stats: SimStats::default(),
            call_log: VecDeque::new(),
        }
    }

    /// Logs a metered call (dropping the oldest past [`CALL_LOG_LIMIT`]).
    pub fn log_call(&mut self, record: CallRecord) {
        if self.call_log.len() >= CALL_LOG_LIMIT {
            self.call_log.pop_front();
        }
        self.call_log.push_back(record);
    }

    pub fn count_call(&mut self, endpoint: Endpoint) {
        let calls = &mut self.stats.calls;
        *match endpoint {
            Endpoint::GetToken => &mut calls.gettoken,
            Endpoint::GetSendProgress => &mut calls.getsendprogress,
            Endpoint::GetSendResult => &mut calls.getsendresult,
            Endpoint::AsyncSend => &mut calls.asyncsend_v2,
            Endpoint::UnifiedToken => &mut calls.unified_token,
            Endpoint::CorpAccessToken => &mut calls.corp_access_token,
            Endpoint::GetCorpToken => &mut calls.get_corp_token,
            Endpoint::SendByTemplate => &mut calls.sendbytemplate,
            Endpoint::Unknown => &mut calls.unknown,
        } += 1;
    }

    pub fn count_errcode(&mut self, errcode: i64) {
        *self.stats.errcodes.entry(errcode).or_default() += 1;
    }

    /// Decides whether this request gets a fault, and which.
    pub fn draw_fault(&mut self) -> Option<FaultKind> {
        if self.faults.probability <= 0.0 || self.faults.limit == Some(0) {
            return None;
        }
        if !self.chance.random_bool(self.faults.probability) {
            return None;
        }
        let candidates = self.faults.candidates();
        let kind = candidates[self.chance.random_range(0..candidates.len())];
        if let Some(limit) = &mut self.faults.limit {
            *limit -= 1;
        }
        *self.stats.faults.slot(kind) += 1;
        Some(kind)
    }

    /// Decides whether this successful answer comes in the quirky form.
    pub fn draw_quirk(&mut self) -> bool {
        self.behaviour.quirks > 0.0 && self.chance.random_bool(self.behaviour.quirks)
    }

    /// A fresh id in DingTalk's `request_id` style (lowercase letters and digits).
    pub fn request_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..13)
            .map(|_| char::from(ALPHABET[self.ids.random_range(0..ALPHABET.len())]))
            .collect()
    }

    /// The app with these credentials. Secrets are compared in constant time.
    pub fn app_with(&self, app_key: &str, app_secret: &str) -> Option<&SimApp> {
        self.apps.iter().find(|app| {
            app.app_key == app_key
                && bool::from(
                    app.app_secret
                        .expose()
                        .as_bytes()
                        .ct_eq(app_secret.as_bytes()),
                )
        })
    }

    /// The app's access token: the current one, extended, while it is valid, else a new one.
    /// Returns the token and its lifetime in whole seconds.
    pub fn issue_token(&mut self, app_key: &str, now_ms: i64) -> (String, i64) {
        let lifetime_ms = self.behaviour.token_lifetime_ms;
        let expires_at_ms = now_ms.saturating_add(lifetime_ms);
        let expires_in_s = (lifetime_ms / 1000).max(1);
        if let Some(token) = self.current_token.get(app_key)
            && let Some(issued) = self.tokens.get_mut(token)
            && issued.expires_at_ms > now_ms
        {
            issued.expires_at_ms = expires_at_ms;
            return (token.clone(), expires_in_s);
        }
        let token: String = (0..32)
            .map(|_| char::from_digit(self.ids.random_range(0..16), 16).unwrap_or('0'))
            .collect();
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                corp: None,
                app_key: app_key.to_string(),
                expires_at_ms,
            },
        );
        self.current_token
            .insert(app_key.to_string(), token.clone());
        self.issued.push(token.clone());
        self.stats.tokens_issued += 1;
        (token, expires_in_s)
    }

    /// A new token for a corp of a suite: the corp-token APIs never hand out the same token
    /// twice. Returns the token and its lifetime in whole seconds.
    pub fn issue_corp_token(
        &mut self,
        suite_key: &str,
        corp_id: &str,
        agent_id: i64,
        now_ms: i64,
    ) -> (String, i64) {
        let lifetime_ms = self.behaviour.token_lifetime_ms;
        let token: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[self.ids.random_range(0..16)]))
            .collect();
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                app_key: format!("{suite_key}/{corp_id}"),
                corp: Some((corp_id.to_string(), agent_id)),
                expires_at_ms: now_ms + lifetime_ms,
            },
        );
        self.issued.push(token.clone());
        self.stats.tokens_issued += 1;
        *self
            .stats
            .corp_tokens_issued
            .entry(corp_id.to_string())
            .or_default() += 1;
        (token, (lifetime_ms / 1000).max(1))
    }

    /// The app (or corp) a call's access token belongs to, or the error DingTalk answers.
    pub fn authenticate(&mut self, token: &str, now_ms: i64) -> Result<TokenOwner, ApiError> {
        let style = self.behaviour.expiry_style;
        let verdict = if token.trim().is_empty() {
            Err(ApiError::blank_token())
        } else {
            match self.tokens.get(token) {
                Some(issued) if issued.expires_at_ms > now_ms => Ok(TokenOwner {
                    key: issued.app_key.clone(),
                    corp: issued.corp.clone(),
                }),
                Some(_) => Err(match style {
                    ExpiryStyle::Flat => ApiError::token_expired(),
                    ExpiryStyle::Wrapped => ApiError::token_invalid_wrapped(),
                }),
                None => Err(match style {
                    ExpiryStyle::Flat => ApiError::token_invalid(),
                    ExpiryStyle::Wrapped => ApiError::token_invalid_wrapped(),
                }),
            }
        };
        if verdict.is_err() {
            self.stats.token_rejections += 1;
        }
        verdict
    }

    /// Expires every token now; the next `gettoken` of each app issues a new one.
    /// Returns how many tokens were still valid.
    pub fn expire_tokens(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        for issued in self.tokens.values_mut() {
            if issued.expires_at_ms > now_ms {
                issued.expires_at_ms = now_ms;
                expired += 1;
            }
        }
        self.current_token.clear();
        expired
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.issued.clone()
    }

    /// Lets a call through the per-second limit and, for metered APIs, the monthly quota;
    /// a call refused here is not counted toward either.
    pub fn admit(
        &mut self,
        app_key: &str,
        corp: Option<&str>,
        endpoint: Endpoint,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let limit = self.behaviour.qps_limit as usize;
        let window = self
            .windows
            .entry((app_key.to_string(), endpoint))
            .or_default();
        while window.front().is_some_and(|&at| at <= now_ms - 1000) {
            window.pop_front();
        }
        if limit > 0 && window.len() >= limit {
            self.stats.qps_rejections += 1;
            return Err(ApiError::qps_limited());
        }
        if endpoint.is_metered() {
            let month = quota_month(now_ms);
            if month != self.quota_month {
                self.quota_month = month;
                self.stats.month_calls = 0;
                self.stats.corp_month_calls.clear();
            }
            // Each organisation has its own quota: the internal apps' one, and each corp
            // that authorised a suite.
            let (quota, used) = match corp {
                None => (self.behaviour.monthly_quota, &mut self.stats.month_calls),
                Some(corp_id) => {
                    let own = self
                        .suites
                        .iter()
                        .flat_map(|suite| &suite.corps)
                        .find(|known| known.corp_id == corp_id)
                        .map_or(0, |known| known.monthly_quota);
                    let quota = if own > 0 {
                        own
                    } else {
                        self.behaviour.monthly_quota
                    };
                    let used = self
                        .stats
                        .corp_month_calls
                        .entry(corp_id.to_string())
                        .or_default();
                    (quota, used)
                }
            };
            if quota > 0 && *used >= quota {
                self.stats.quota_rejections += 1;
                return Err(ApiError::quota_exhausted());
            }
            *used += 1;
            self.stats.metered_calls += 1;
        }
        window.push_back(now_ms);
        Ok(())
    }

    /// Why a task cannot be added, if it cannot.
    fn check_task(&self, spec: &TaskSpec) -> Result<(), String> {
        if spec.agent_id <= 0 {
            return Err("agent_id must be a positive integer".to_string());
        }
        if spec.age_ms < 0 {
            return Err("age_ms must not be negative".to_string());
        }
        match spec.task_id {
            Some(id) if id <= 0 => return Err("task_id must be a positive integer".to_string()),
            Some(id) if self.tasks.contains_key(&id) => {
                return Err(format!("task_id {id} is already taken"));
            }
            _ => {}
        }
        spec.timeline.validate()
    }

    /// Adds a task; refuses impossible scripts and taken task ids.
    pub fn add_task(
        &mut self,
        spec: TaskSpec,
        user_ids: Option<Vec<String>>,
        now_ms: i64,
    ) -> Result<i64, String> {
        self.check_task(&spec)?;
        let task_id = spec.task_id.unwrap_or_else(|| self.fresh_task_id());
        self.tasks.insert(
            task_id,
            SimTask {
                agent_id: spec.agent_id,
                created_at_ms: now_ms.saturating_sub(spec.age_ms),
                timeline: spec.timeline,
                user_ids,
            },
        );
        self.stats.tasks = self.tasks.len() as u64;
        Ok(task_id)
    }

    /// Adds all the tasks or, if any of them cannot be added, none.
    pub fn add_tasks(&mut self, specs: Vec<TaskSpec>, now_ms: i64) -> Result<Vec<i64>, String> {
        let mut chosen_ids = std::collections::HashSet::new();
        for spec in &specs {
            self.check_task(spec)?;
            if let Some(id) = spec.task_id
                && !chosen_ids.insert(id)
            {
                return Err(format!("task_id {id} appears twice"));
            }
        }
        specs
            .into_iter()
            .map(|spec| self.add_task(spec, None, now_ms))
            .collect()
    }

    fn fresh_task_id(&mut self) -> i64 {
        loop {
            let id = self.next_task_id;
            self.next_task_id += self.ids.random_range(1..1000);
            if !self.tasks.contains_key(&id) {
                return id;
            }
        }
    }

    /// The task, if this agent has it and it is still inside the query window.
    pub fn queryable_task(&self, agent_id: i64, task_id: i64, now_ms: i64) -> Option<&SimTask> {
        self.tasks.get(&task_id).filter(|task| {
            task.agent_id == agent_id
                && now_ms.saturating_sub(task.created_at_ms) <= self.behaviour.query_window_ms
        })
    }

    pub fn tasks(&self, now_ms: i64) -> Vec<TaskView> {
        let mut views: Vec<TaskView> = self
            .tasks
            .iter()
            .map(|(&task_id, task)| {
                let (progress_in_percent, status) = task
                    .timeline
                    .progress_at(now_ms.saturating_sub(task.created_at_ms));
                TaskView {
                    agent_id: task.agent_id,
                    task_id,
                    created_at_ms: task.created_at_ms,
                    timeline: task.timeline.clone(),
                    progress_in_percent,
                    status,
                }
            })
            .collect();
        views.sort_by_key(|view| (view.created_at_ms, view.task_id));
        views
    }
}

/// The state and settings the server, the control API and the in-process handle share.
pub(crate) struct Shared {
    state: std::sync::Mutex<State>,
    pub clock: super::config::SimClock,
    pub max_body_bytes: usize,
}

impl Shared {
    pub fn new(config: &SimConfig) -> Self {
        Shared {
            state: std::sync::Mutex::new(State::new(config)),
            clock: config.clock.clone(),
            max_body_bytes: config.max_body_bytes,
        }
    }

    /// The state. A panic while it was held cannot leave it half-updated in a way that
    /// matters to a simulator, so a poisoned lock is simply taken over.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn add_tasks(&self, specs: Vec<TaskSpec>) -> Result<Vec<i64>, String> {
        let now_ms = self.now_ms();
        self.lock().add_tasks(specs, now_ms)
    }

    pub fn tasks(&self) -> Vec<TaskView> {
        let now_ms = self.now_ms();
        self.lock().tasks(now_ms)
    }

    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), String> {
        faults.validate()?;
        self.lock().faults = faults;
        Ok(())
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) -> Result<(), String> {
        behaviour.validate()?;
        self.lock().behaviour = behaviour;
        Ok(())
    }

    /// DingTalk pushes a new suite ticket; returns whether the suite exists.
    pub fn set_suite_ticket(&self, suite_key: &str, ticket: &str) -> bool {
        let mut state = self.lock();
        match state
            .suites
            .iter_mut()
            .find(|suite| suite.suite_key == suite_key)
        {
            Some(suite) => {
                suite.suite_ticket = ticket.to_string();
                true
            }
            None => false,
        }
    }

    pub fn expire_tokens(&self) -> usize {
        let now_ms = self.now_ms();
        self.lock().expire_tokens(now_ms)
    }
}
