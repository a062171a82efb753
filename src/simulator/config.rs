//! How a simulator is set up: where it listens, which apps exist, the rules it enforces and
//! its clock.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::faults::FaultConfig;
use super::timeline::Timeline;
use crate::secret::Secret;

/// The app key of the demo app every simulator knows unless told otherwise.
pub const DEMO_APP_KEY: &str = "dingsimdemo";
/// The demo app's secret. Not a secret at all: it only opens the simulator.
pub const DEMO_APP_SECRET: &str = "simulator-demo-secret";
/// An agent id for demo tasks (the simulator accepts any positive agent id).
pub const DEMO_AGENT_ID: i64 = 2_839_445_214;

/// One app's credentials, as `gettoken` checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimApp {
    pub app_key: String,
    pub app_secret: Secret,
}

impl SimApp {
    pub fn new(app_key: impl Into<String>, app_secret: impl Into<String>) -> Self {
        SimApp {
            app_key: app_key.into(),
            app_secret: Secret::new(app_secret),
        }
    }

    /// The demo app ([`DEMO_APP_KEY`], [`DEMO_APP_SECRET`]).
    pub fn demo() -> Self {
        SimApp::new(DEMO_APP_KEY, DEMO_APP_SECRET)
    }
}

/// A third-party app (an ISV suite) and the corps that authorised it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSuite {
    pub suite_key: String,
    pub suite_secret: Secret,
    /// The suite ticket DingTalk last pushed; the ticket-based token APIs accept only it.
    /// [`crate::simulator::Simulator::set_suite_ticket`] rotates it.
    pub suite_ticket: String,
    pub corps: Vec<SimCorp>,
}

/// One corp that authorised a suite: its agent for the suite's app and its own quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimCorp {
    pub corp_id: String,
    pub agent_id: i64,
    /// Metered calls per month of this organisation; 0 takes the behaviour's
    /// `monthly_quota`.
    pub monthly_quota: u64,
}

/// What a call with an expired or unknown access token gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryStyle {
    /// `errcode` 42001 for an expired token, 40014 for an unknown one.
    Flat,
    /// `errcode` 88 with `sub_code` "40014" for both, as the topapi gateway answers.
    #[default]
    Wrapped,
}

/// DingTalk delivers at most this many recipients a minute.
pub const DINGTALK_SEND_PACE_PER_MINUTE: u32 = 5_000;

/// The rules the simulated DingTalk enforces. Can be changed while the simulator runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    /// How long an access token lives; `gettoken` reports it in whole seconds (at least 1).
    pub token_lifetime_ms: i64,
    /// What calls with an expired or unknown token get.
    pub expiry_style: ExpiryStyle,
    /// Calls per second per app per API (sliding one-second window); 0 means no limit.
    pub qps_limit: u32,
    /// Metered calls (send, getsendprogress, getsendresult) per calendar month in
    /// Asia/Shanghai, shared by all apps as DingTalk counts it per organisation; 0 means
    /// no limit.
    pub monthly_quota: u64,
    /// How long after its creation a task can still be queried.
    pub query_window_ms: i64,
    /// Chance, from 0 to 1, that a successful answer comes in the odd form some DingTalk
    /// pages show: `"errcode":"0"`, every number as a string, no `request_id`.
    pub quirks: f64,
    /// The script of tasks created through `asyncsend_v2` and `sendbytemplate`, scaled to
    /// their recipients.
    pub send_timeline: Timeline,
    /// Recipients a send delivers to per minute: a send's `duration_ms` is its recipient
    /// count at this pace (DingTalk's ceiling is 5,000 a minute); 0 keeps the script's
    /// `duration_ms` whatever the count.
    pub send_pace_per_minute: u32,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            token_lifetime_ms: 7_200_000,
            expiry_style: ExpiryStyle::default(),
            qps_limit: 20,
            monthly_quota: 0,
            query_window_ms: 24 * 3_600_000,
            quirks: 0.0,
            send_timeline: Timeline {
                start_delay_ms: 500,
                ..Timeline::default()
            },
            send_pace_per_minute: DINGTALK_SEND_PACE_PER_MINUTE,
        }
    }
}

impl Behaviour {
    /// Checks that the rules make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_lifetime_ms <= 0 {
            return Err("token_lifetime_ms must be positive".to_string());
        }
        if self.query_window_ms < 0 {
            return Err("query_window_ms must not be negative".to_string());
        }
        if !(0.0..=1.0).contains(&self.quirks) {
            return Err("quirks must be a number from 0 to 1".to_string());
        }
        self.send_timeline
            .validate()
            .map_err(|why| format!("send_timeline: {why}"))
    }
}

/// The simulator's notion of "now", as Unix milliseconds. Injectable so tests can move time
/// (token expiry, the query window, the month) without waiting.
#[derive(Clone)]
pub struct SimClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl SimClock {
    /// The wall clock.
    pub fn wall() -> Self {
        SimClock(Arc::new(crate::clock::now_ms))
    }

    /// A clock that asks `now` for the time.
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        SimClock(Arc::new(now))
    }

    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }
}

impl Default for SimClock {
    fn default() -> Self {
        SimClock::wall()
    }
}

impl fmt::Debug for SimClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimClock")
    }
}

/// Everything a simulator starts with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 lets the OS choose.
    pub listen: SocketAddr,
    /// The apps `gettoken` accepts.
    pub apps: Vec<SimApp>,
    /// The third-party apps whose corps get tokens from the corp-token endpoints.
    pub suites: Vec<SimSuite>,
    /// Seeds the fault and quirk draws, so a run can be repeated.
    pub seed: u64,
    /// Request bodies larger than this get HTTP 413.
    pub max_body_bytes: usize,
    pub behaviour: Behaviour,
    pub faults: FaultConfig,
    pub clock: SimClock,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            apps: vec![SimApp::demo()],
            suites: Vec::new(),
            seed: 0,
            max_body_bytes: 256 * 1024,
            behaviour: Behaviour::default(),
            faults: FaultConfig::default(),
            clock: SimClock::default(),
        }
    }
}

impl SimConfig {
    /// Checks the whole configuration.
    pub fn validate(&self) -> Result<(), String> {
        if self.apps.is_empty() {
            return Err("the simulator needs at least one app".to_string());
        }
        if self.apps.iter().any(|app| app.app_key.is_empty()) {
            return Err("app keys must not be empty".to_string());
        }
        let mut agents = std::collections::HashSet::new();
        for suite in &self.suites {
            if suite.suite_key.is_empty() || suite.corps.is_empty() {
                return Err("a suite needs a suite key and at least one corp".to_string());
            }
            if suite.corps.iter().any(|corp| !agents.insert(corp.agent_id)) {
                return Err("each corp needs an agent id of its own".to_string());
            }
        }
        self.behaviour.validate()?;
        self.faults.validate()
    }
}
