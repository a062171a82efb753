//! The HTTP server: `/metrics`, health and reload endpoints, the task API and the landing page.
//!
//! - [`server`]: accepting connections, limits, graceful shutdown;
//! - `routes`: which handler answers which request;
//! - `api`: the task API, with [`registration`] (parsing bodies: pure, for the fuzzer) and
//!   [`task_json`] (the shape of a task answer);
//! - [`auth`]: who may write;
//! - `landing`: the HTML page at `/`;
//! - `reply`: building answers and reading bodies within their limits.

mod api;
pub mod auth;
mod landing;
pub mod registration;
mod reply;
mod routes;
pub mod server;
pub mod task_json;

pub use api::MAX_BODY_BYTES;
pub use registration::{RegistrationError, Registrations, parse_registrations};
pub use server::{ServerLimits, serve, serve_with_limits};
