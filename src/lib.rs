//! dingtalk-exporter: tracks DingTalk work-notification deliveries (`asyncsend_v2` tasks),
//! polls DingTalk for their progress within its rate limits and monthly quota, and publishes
//! what it learnt as Prometheus metrics.
//!
//! Data flows one way, DingTalk → client → poller → tracker → exposition → HTTP, and every
//! import points down this list:
//!
//! - [`commands`]: the binary's commands (the exporter, `demo`, `simulate`, `track`, `send`);
//! - [`assembly`]: builds the running exporter and owns its reload;
//! - [`http`]: the server (metrics, health, task API, landing page, web config, auth), and
//!   beside it [`proxy`], the tracking proxy that relays senders' calls and tracks sends;
//! - [`exposition`]: renders `/metrics` from a snapshot of the tracked tasks;
//! - [`poller`]: the scheduler and the polling policy, behind narrow ports;
//! - [`tracker`]: the tracked tasks, the store trait and its SQLite store, the monthly
//!   budget ledger;
//! - [`dingtalk`]: the API client (tokens, rate limits, answers, redaction) behind the
//!   [`dingtalk::DeliveryApi`] seam, so the poller can be tested with a fake;
//! - [`telemetry`]: the exporter's own metrics, changed through named recording methods;
//! - leaves: [`config`], [`logging`], [`clock`], [`duration`], [`secret`].
//!
//! [`simulator`] stands beside them: a faithful simulator of DingTalk's API for tests, the
//! demo and benchmarks, which the exporter itself never imports.

pub mod assembly;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dingtalk;
pub mod duration;
pub mod exposition;
pub mod http;
pub mod logging;
pub mod poller;
pub mod proxy;
pub mod secret;
pub mod simulator;
pub mod telemetry;
pub mod tracker;
