//! Which handler answers which request.
//!
//! | path | methods |
//! |---|---|
//! | `/` | GET: the landing page |
//! | the telemetry path (`/metrics`) | GET: the exposition |
//! | `/-/healthy`, `/-/ready` | GET |
//! | `/-/reload` | POST or PUT (a write: token or loopback) |
//! | `/api/v1/tasks...` | the task API ([`super::api`]) |
//!
//! GET routes answer HEAD too (hyper leaves out the body). Unknown API paths get a JSON 404,
//! other unknown paths a plain one; a known path with the wrong method gets 405 and `Allow`.
//!
//! Checks that guard every endpoint alike (the rate limit and basic auth of
//! `--web.config.file`) belong in [`handle`], before [`route`]; the bearer token of the task
//! API's writes is checked by the write handlers themselves through
//! [`super::auth::guard_write`].
//!
//! Basic auth and the bearer token both travel in the one `Authorization` header a request
//! has. So when both are configured, a write that carries a bearer token skips basic auth
//! and is judged by the token alone (a credential at least as strong, and the one the task
//! API asks for); everything else, reads in particular, needs basic auth.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use hyper::body::{Body as _, Incoming};
use hyper::header::{EXPECT, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use hyper::{Method, Request, StatusCode};

use super::api::{self, MAX_BODY_BYTES};
use super::auth::{bearer_token, guard_write};
use super::basic_auth;
use super::landing;
use super::reply::{self, Answer};
use super::request_guard;
use super::site::{ExporterPort, Site};
use super::web_config::WebConfig;
use crate::clock::now_ms;
use crate::exposition::{TEXT_FORMAT_CONTENT_TYPE, TaskSnapshot, render_metrics_parts};

/// How much of an unwanted body is read and dropped so the client can still read the answer
/// (see [`reply::drain_body`]).
const DRAIN_BUDGET: usize = 4 * MAX_BODY_BYTES;

/// Answers one request from `peer`.
pub(super) async fn handle(request: Request<Incoming>, site: &Site, peer: SocketAddr) -> Answer {
    let (parts, mut body) = request.into_parts();
    let web_config = site.web_config.as_ref().map(|watch| watch.current());
    let mut refusal = request_guard::oversized_head(&parts, site.limits.max_header_bytes);
    if refusal.is_none()
        && let Some(web_config) = &web_config
    {
        refusal = web_config_refusal(&parts, web_config, site.exporter.as_ref(), peer.ip()).await;
    }
    if refusal.is_none() {
        let config = site.exporter.config();
        refusal =
            request_guard::cross_site_refusal(&parts, &config, config.web.api_token.is_some());
    }
    let mut answer = match refusal {
        Some(refusal) => refusal,
        None => route(&parts, &mut body, site, peer.ip()).await,
    };
    // A client that sent `Expect: 100-continue` waits for our word before sending its body;
    // reading it now would only invite a body that is refused anyway.
    let awaits_continue = parts
        .headers
        .get(EXPECT)
        .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !body.is_end_stream() && !awaits_continue {
        reply::drain_body(&mut body, DRAIN_BUDGET, site.limits.body_read_timeout).await;
    }
    if let Some(web_config) = &web_config {
        for (name, value) in web_config.extra_headers() {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// `Some(answer)` when the web config refuses the request: 429 past its `rate_limit`, 401
/// when it sets basic auth and the request does not pass it, 429 or 503 when too many
/// password checks are pending (see [`basic_auth`]).
async fn web_config_refusal(
    parts: &Parts,
    web_config: &WebConfig,
    exporter: &dyn ExporterPort,
    peer: IpAddr,
) -> Option<Answer> {
    let path = parts.uri.path();
    // Liveness probes (kubelet, systemd, load balancers) carry no credentials, and a probe
    // refused for a busy moment would get the exporter restarted.
    if path == "/-/healthy" {
        return None;
    }
    let is_api = path == "/api" || path.starts_with("/api/");
    let refuse = |status: StatusCode, message: &str, retry_after_s: u64| {
        let mut answer = if is_api {
            reply::error(status, message)
        } else {
            reply::text(status, format!("{message}\n"))
        };
        answer
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
        Some(answer)
    };
    if let Some(limit) = web_config.rate_limit()
        && !limit.allow()
    {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: past the rate_limit of the exporter's web config file",
            limit.interval().as_secs().max(1),
        );
    }
    let users = web_config.basic_auth()?;
    let is_write = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if is_write
        && exporter.config().web.api_token.is_some()
        && bearer_token(&parts.headers).is_some()
    {
        return None;
    }
    match users.check(&parts.headers, peer).await {
        basic_auth::Verdict::Allowed => return None,
        basic_auth::Verdict::Refused => {}
        basic_auth::Verdict::ClientBusy => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests: this address has too many password checks pending; try again shortly",
                1,
            );
        }
        basic_auth::Verdict::Overloaded => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks are pending; try again shortly",
                1,
            );
        }
    }
    let message = "this exporter requires basic auth: send the user name and password of a user of its web config file's basic_auth_users";
    let mut answer = if is_api {
        reply::error(StatusCode::UNAUTHORIZED, message)
    } else {
        reply::text(StatusCode::UNAUTHORIZED, format!("{message}\n"))
    };
    answer.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(basic_auth::CHALLENGE),
    );
    Some(answer)
}

async fn route(parts: &Parts, body: &mut Incoming, site: &Site, peer: IpAddr) -> Answer {
    let path = parts.uri.path();
    let is_read = matches!(parts.method, Method::GET | Method::HEAD);
    if path == site.exporter.config().web.telemetry_path {
        return if is_read {
            metrics(site).await
        } else {
            reply::method_not_allowed("GET, HEAD", false)
        };
    }
    match path {
        "/" if is_read => landing_page(site).await,
        "/-/healthy" if is_read => reply::text(StatusCode::OK, "dingtalk-exporter is healthy.\n"),
        "/-/ready" if is_read => ready(site.exporter.as_ref()),
        "/" | "/-/healthy" | "/-/ready" => reply::method_not_allowed("GET, HEAD", false),
        "/-/reload" => match parts.method {
            Method::POST | Method::PUT => reload(parts, site, peer).await,
            _ => reply::method_not_allowed("POST, PUT", false),
        },
        _ if path == "/api" || path.starts_with("/api/") => {
            api::route(parts, body, site, peer).await
        }
        _ => reply::text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

async fn metrics(site: &Site) -> Answer {
    let exporter = site.exporter.clone();
    // Rendering is CPU work proportional to the tasks: keep it off the async workers.
    let render = move || {
        let config = exporter.config();
        let snapshot = TaskSnapshot::take(exporter.tracker(), now_ms(), config.poll.task_retention);
        render_metrics_parts(exporter.telemetry(), snapshot, &config)
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(parts) => reply::chunked(
            StatusCode::OK,
            TEXT_FORMAT_CONTENT_TYPE,
            parts.into_iter().map(Bytes::from),
        ),
        Err(err) => reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the metrics failed: {err}\n"),
        ),
    }
}

async fn landing_page(site: &Site) -> Answer {
    let exporter = site.exporter.clone();
    match tokio::task::spawn_blocking(move || landing::render(exporter.as_ref(), now_ms())).await {
        Ok(page) => reply::with_body(StatusCode::OK, reply::HTML, page),
        Err(err) => reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page failed: {err}\n"),
        ),
    }
}

fn ready(exporter: &dyn ExporterPort) -> Answer {
    if exporter.is_ready() {
        reply::text(StatusCode::OK, "dingtalk-exporter is ready.\n")
    } else {
        reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "dingtalk-exporter is not ready: its task store is not open or its configuration is not valid; see its log.\n",
        )
    }
}

/// Like Prometheus: 200 when the new configuration is in force, 500 with the reason when it
/// was refused (the old configuration stays).
async fn reload(parts: &Parts, site: &Site, peer: IpAddr) -> Answer {
    if let Some(refusal) = guard_write(parts, peer, &site.exporter.config(), false) {
        return refusal;
    }
    if let Some(refusal) = request_guard::json_body_refusal(parts, false, false) {
        return refusal;
    }
    match site.exporter.reload().await {
        Ok(needs_restart) if needs_restart.is_empty() => {
            reply::text(StatusCode::OK, "configuration reloaded\n")
        }
        Ok(needs_restart) => reply::text(
            StatusCode::OK,
            format!(
                "configuration reloaded, except {}: changed, but read only at start; restart to apply\n",
                needs_restart.join(", ")
            ),
        ),
        Err(err) => {
            // The reload itself logged why.
            reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "failed to reload the configuration, the previous one stays in force: {err}\n"
                ),
            )
        }
    }
}
