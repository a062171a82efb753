//! The HTTP server: `/metrics`, health and reload endpoints, the task API and the landing page.
//!
//! - [`site`]: what every request shares, the [`ExporterPort`] the server is given and its
//!   [`ServerLimits`];
//! - [`server`]: accepting connections, limits, graceful shutdown; `connections`: the
//!   table of open connections, a share per address, idle slots reclaimed first;
//! - `routes`: which handler answers which request;
//! - `api`: the task API, with [`registration`] (parsing bodies: pure, for the fuzzer) and
//!   [`task_json`] (the shape of a task answer);
//! - [`auth`]: who may write; `request_guard`: the size of a request's head, and writes
//!   that come from web pages (CSRF, DNS rebinding) or carry a body that is not JSON;
//! - [`web_config`]: the `--web.config.file` (exporter-toolkit format), with [`tls`] (and
//!   `certificate`, what it reads of client certificates), [`basic_auth`] and `rate_limit`;
//! - `connections`: the open connections, so idle ones can make room under a flood;
//! - `landing`: the HTML page at `/`;
//! - `reply`: building answers and reading bodies within their limits.

mod api;
pub mod auth;
pub mod basic_auth;
mod certificate;
mod connections;
mod landing;
mod problems;
mod rate_limit;
pub mod registration;
mod reply;
mod request_guard;
mod routes;
pub mod server;
mod site;
pub mod task_json;
pub mod tls;
pub mod web_config;

pub use api::MAX_BODY_BYTES;
pub use registration::{RegistrationError, Registrations, parse_registrations};
pub use server::{serve_with_limits, serve_with_web_config};
pub use site::{ExporterPort, ServerLimits};
pub use web_config::{WebConfig, WebConfigErrors, WebConfigWatch};
