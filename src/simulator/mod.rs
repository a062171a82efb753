//! A simulator of DingTalk's server API, for tests, the demo and benchmarks: no DingTalk
//! account needed, and every awkward behaviour of the real service on demand.
//!
//! It serves `gettoken`, `getsendprogress`, `getsendresult`, `asyncsend_v2` and
//! `sendbytemplate` the way
//! DingTalk's documentation and SDKs describe them, over plain HTTP on loopback:
//!
//! - **Tokens**: random, per app; `gettoken` while the token is valid returns the same one
//!   and extends it. A blank token gets errcode 88 / sub_code "40000"; an expired or unknown
//!   one gets, depending on [`ExpiryStyle`], 42001 / 40014 (`flat`) or 88 / sub_code "40014"
//!   (`wrapped`, the default). Wrong credentials get 40096. Every token issued is recorded.
//! - **Sends** (`asyncsend_v2`, `sendbytemplate`) create a task for the users named (ten per
//!   department, 500 for `to_all_user`) that lasts as long as delivering to them takes at
//!   `send_pace_per_minute` (DingTalk's 5,000 by default).
//! - **Tasks** belong to an agent id and follow a scripted [`Timeline`] (a pure function of
//!   the time since creation). An unknown task for that agent, or one older than the query
//!   window (24 h by default), gets 40035. `getsendresult` refuses tasks with more than 100
//!   recipients with 40035 too: DingTalk documents an error without saying which, so that
//!   code is this simulator's choice.
//! - **Limits**: per app and API, at most `qps_limit` calls in any sliding second (default
//!   20); more get 90018 and count toward nothing. Metered calls (send, getsendprogress,
//!   getsendresult; not gettoken) count toward a monthly quota (default none); past it, 90020.
//! - **Quirks**: with probability `quirks`, a success answer has `"errcode":"0"`, every
//!   number as a string and no `request_id`. Empty lists of `send_result` are always left out.
//! - **Faults** ([`FaultKind`]), drawn per request from a seeded RNG: `html502`, `punish`
//!   (the per-IP ban as JSON, HTTP 200), `punish-html` (the ban as an HTML page, HTTP 405),
//!   `busy` (errcode -1), `truncated` (JSON cut halfway), `slow` (answered after
//!   `slow_delay_ms`), `drop` (connection closed without an answer).
//! - **Third-party apps** ([`SimSuite`]): a suite's corps ([`SimCorp`]) get tokens from the
//!   unified `POST /v1.0/oauth2/{corpId}/token` (client credentials; HTTP 400
//!   `invalid.client` / `unsupported.grant.type`, 401 `unauthorized.client`), from
//!   `POST /v1.0/oauth2/corpAccessToken` (the current suite ticket; HTTP 400
//!   `invalidSuiteKey`, `invalidSuiteTicket`, `invalidAuthInfo`) and from the signed
//!   `POST /service/get_corp_token` (853001 timestamp not in ms, 853002 over a minute off,
//!   853003 unknown accessKey, 853004 bad signature, 41023 no ticket, 40085 outdated ticket,
//!   48004 corp not authorised). Every call issues a new token, bound to its corp: it asks
//!   only about that corp's agent (another agent's task gets 40035), and its metered calls
//!   count toward that corp's own monthly quota.
//! - Unknown paths get errcode 22; request bodies over `max_body_bytes` get HTTP 413.
//!
//! Simplifications: any internal app may query any agent's tasks; departments in `asyncsend_v2`
//! stand for ten users each and `to_all_user` for an organisation of 500.
//!
//! # The demo app
//!
//! Unless told otherwise the simulator knows one app: key [`DEMO_APP_KEY`] (`dingsimdemo`),
//! secret [`DEMO_APP_SECRET`] (`simulator-demo-secret`). [`DEMO_AGENT_ID`] is a handy agent id.
//!
//! # In-process use
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use dingtalk_exporter::simulator::{FaultConfig, FaultKind, SimConfig, Simulator, Timeline};
//! let sim = Simulator::start(SimConfig::default()).await?;
//! let task_id = sim.add_task(2_839_445_214, Timeline::fast());
//! // point a client at sim.url() ...
//! sim.set_faults(FaultConfig::always(FaultKind::Html502))?;
//! sim.expire_tokens();
//! assert_eq!(sim.stats().qps_rejections, 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # The control API
//!
//! `dingtalk-exporter simulate` is scripted over HTTP under `/_sim/` (no authentication: keep
//! the simulator on loopback). Bodies and answers are JSON; errors are `{"error": "..."}`
//! with a 4xx status.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /_sim/stats` | counters: `calls` per API, `metered_calls`, `month_calls`, `qps_rejections` (90018 answers), `quota_rejections` (90020), `token_rejections`, `tokens_issued`, `faults` per kind, `errcodes` answered, `tasks` |
//! | `POST /_sim/tasks` | adds a task, or an array of them (all or none): `{"agent_id": 1, "task_id": 2 (optional), "age_ms": 0 (optional), "timeline": {...}}`; answers 201 with `{"agent_id", "task_id"}` (or an array) |
//! | `GET /_sim/tasks` | every task with its timeline, `created_at_ms`, current `progress_in_percent` and `status` |
//! | `GET /_sim/faults` | the fault settings |
//! | `PUT /_sim/faults` | replaces them: `{"probability": 0.2, "kinds": ["html502", "drop"], "slow_delay_ms": 15000, "limit": null}` (missing fields take these defaults: 0, all kinds, 15000, no limit); `limit` stops after that many more faults |
//! | `PATCH /_sim/faults` | changes only the fields given, e.g. `{"probability": 0}` to switch faults off |
//! | `GET /_sim/behaviour` | the rules enforced |
//! | `PUT` / `PATCH /_sim/behaviour` | replaces / changes them: `token_lifetime_ms` (7200000), `expiry_style` (`"flat"` or `"wrapped"`), `qps_limit` (20, 0 = none), `monthly_quota` (0 = none), `query_window_ms` (86400000), `quirks` (0..1), `send_timeline` (the script of `asyncsend_v2` and `sendbytemplate` tasks), `send_pace_per_minute` (5000: a send lasts its recipient count at this pace; 0 = the script's `duration_ms`) |
//! | any method, `/_sim/echo/...` | answers what it received, for checking that a proxy relays faithfully: `{"method", "path", "query", "headers": [[name, value], ...] (in order), "body_length", "body_sha256", "body_base64" (bodies up to 64 KiB)}`, with the status of a `status` query parameter (200 by default) and the answer headers `x-echo: 1` and two `set-cookie` |
//! | `POST /_sim/expire-tokens` | expires every token now; answers `{"expired": n}` |
//! | `POST /_sim/suite-ticket` | DingTalk pushes a new suite ticket: `{"suite_key": "...", "ticket": "..."}`; the old one stops working |
//! | `GET /_sim/tokens` | every access token issued so far (for checking that none leaks into logs) |
//!
//! A timeline is `{"start_delay_ms": 0, "duration_ms": 5000, "stall_at_percent": null,
//! "recipients": 10, "read": 6, "failed": 1, "forbidden": 1, "invalid": 1,
//! "invalid_depts": 0, "seed": 0}` (those are the defaults of missing fields). Progress goes
//! linearly from 0 to 100 in whole percents over `duration_ms` after `start_delay_ms`
//! (`status` 0 before, 1 during, 2 at 100); with `stall_at_percent` it stops there with
//! `status` 1 forever; `start_delay_ms` 9223372036854775807 never starts. Recipients not
//! read, failed, forbidden or invalid are unread; `getsendresult` lists each delivered
//! recipient in its final list, delivery following progress.
//!
//! Example: `curl -X POST localhost:10051/_sim/tasks -d '{"agent_id":1,"timeline":{"stall_at_percent":40}}'`.

mod api;
mod config;
mod control;
mod echo;
mod endpoint;
mod faults;
mod server;
mod state;
mod timeline;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    Behaviour, DEMO_AGENT_ID, DEMO_APP_KEY, DEMO_APP_SECRET, DINGTALK_SEND_PACE_PER_MINUTE,
    ExpiryStyle, SimApp, SimClock, SimConfig, SimCorp, SimSuite,
};
pub use faults::{FaultConfig, FaultKind};
pub use state::{CallCounts, CallRecord, FaultCounts, SimStats, TaskSpec, TaskView};
pub use timeline::{
    ForbiddenEntry, MAX_RECIPIENTS, SEND_RESULT_MAX_RECIPIENTS, STATUS_FINISHED,
    STATUS_IN_PROGRESS, STATUS_NOT_STARTED, SendResult, Timeline, numbered_user_id,
};

use state::Shared;

/// A running simulator. Dropping it stops the server too; [`Simulator::shutdown`] also
/// waits for it to be gone.
pub struct Simulator {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    url: String,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `config.listen` and serves in the background.
    pub async fn start(config: SimConfig) -> Result<Simulator, String> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|why| format!("cannot listen on {}: {why}", config.listen))?;
        let local_addr = listener
            .local_addr()
            .map_err(|why| format!("cannot read the listening address: {why}"))?;
        let reachable = if local_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
        } else {
            local_addr
        };
        let shared = Arc::new(Shared::new(&config));
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, shared.clone(), stopped));
        Ok(Simulator {
            shared,
            local_addr,
            url: format!("http://{reachable}"),
            stop,
            server: Some(server),
        })
    }

    /// The base URL to give a client as its DingTalk API URL (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// "Now" on the simulator's clock, as Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.shared.now_ms()
    }

    /// Adds a task of `agent_id` created now, and returns its task id.
    ///
    /// # Panics
    /// If the timeline is impossible or the agent id is not positive: a bug in the caller's
    /// script. [`Simulator::add_task_spec`] returns the reason instead.
    pub fn add_task(&self, agent_id: i64, timeline: Timeline) -> i64 {
        let spec = TaskSpec {
            agent_id,
            task_id: None,
            timeline,
            age_ms: 0,
        };
        self.add_task_spec(spec)
            .unwrap_or_else(|why| panic!("cannot add the simulated task: {why}"))
    }

    /// Adds a task as the spec says (chosen task id, age), or says why it cannot.
    pub fn add_task_spec(&self, spec: TaskSpec) -> Result<i64, String> {
        let mut task_ids = self.shared.add_tasks(vec![spec])?;
        task_ids
            .pop()
            .ok_or_else(|| "no task was added".to_string())
    }

    /// Every task with its current progress.
    pub fn tasks(&self) -> Vec<TaskView> {
        self.shared.tasks()
    }

    /// Replaces the fault settings (`FaultConfig::off()` switches faults off).
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), String> {
        self.shared.set_faults(faults)
    }

    pub fn faults(&self) -> FaultConfig {
        self.shared.lock().faults.clone()
    }

    /// Replaces the rules enforced from the next request on.
    pub fn set_behaviour(&self, behaviour: Behaviour) -> Result<(), String> {
        self.shared.set_behaviour(behaviour)
    }

    pub fn behaviour(&self) -> Behaviour {
        self.shared.lock().behaviour.clone()
    }

    /// Expires every access token now, as if their lifetime had run out. Returns how many
    /// were still valid.
    pub fn expire_tokens(&self) -> usize {
        self.shared.expire_tokens()
    }

    /// DingTalk pushes a new suite ticket: from now on the ticket-based corp-token APIs
    /// accept only `ticket` for this suite. Returns whether the suite exists.
    pub fn set_suite_ticket(&self, suite_key: &str, ticket: &str) -> bool {
        self.shared.set_suite_ticket(suite_key, ticket)
    }

    /// Every access token issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued_tokens()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// The latest metered calls (up to 100,000), oldest first, with who made each.
    pub fn call_log(&self) -> Vec<CallRecord> {
        self.shared.lock().call_log.iter().cloned().collect()
    }

    /// Stops serving: in-flight requests get a moment to finish, then connections close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
