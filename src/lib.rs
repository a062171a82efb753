//! dingtalk-exporter: tracks DingTalk work-notification deliveries (`asyncsend_v2` tasks),
//! polls DingTalk for their progress within its rate limits and monthly quota, and publishes
//! what it learnt as Prometheus metrics.
//!
//! The architecture, one module per concern:
//! - [`dingtalk`]: the API client (tokens, rate limits, error classification) behind the
//!   [`dingtalk::DeliveryApi`] seam, so the tracker can be tested with a fake;
//! - [`tracker`]: the tracked tasks, their durable store and the polling scheduler;
//! - [`metrics`]: the exporter's own counters and the `/metrics` rendering;
//! - [`http`]: the HTTP server (metrics, health, task API, landing page, web config);
//! - [`config`]: flags, the YAML config file and their validation;
//! - [`simulator`]: a faithful simulator of DingTalk's API for tests, the demo and benchmarks;
//! - [`demo`]: the simulator and the exporter together on one machine.

pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod dingtalk;
pub mod duration;
pub mod exporter;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod runtime;
pub mod secret;
pub mod simulator;
pub mod track;
pub mod tracker;
