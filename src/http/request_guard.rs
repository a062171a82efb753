//! Checks on a request as a whole, made before any handler sees it: the size of its head,
//! and whether a write comes from a web page rather than from a script.
//!
//! A browser can be made to send requests to the exporter by any page it shows: a form post
//! to `http://127.0.0.1:10050/api/v1/tasks` (CSRF), or a page whose own domain is re-pointed
//! at 127.0.0.1 after it loaded (DNS rebinding), which then counts as same-origin. Without an
//! API token the exporter trusts writes from loopback, so either could register tasks (and
//! spend the month's quota) or trigger reloads. Browsers give such requests away, and scripts
//! (`curl`, `dingtalk-exporter track`, SDKs) do not look like them:
//!
//! - a browser names the page in `Origin` on every POST, PUT and DELETE; a foreign one (or
//!   `null`, from a sandboxed page or a file) is refused, and so is `Sec-Fetch-Site:
//!   cross-site` or `same-site`;
//! - a rebinding page's requests carry its own domain in `Host`: a write trusted because it
//!   comes from loopback must name the exporter by one of its own names (an IP address,
//!   `localhost`, the machine's host name, the host of `--web.listen-address`). A write with
//!   the API token proves itself and may name the exporter however the network does;
//! - a page can send only `application/x-www-form-urlencoded`, `multipart/form-data` or
//!   `text/plain` bodies without asking the server first (a CORS preflight, which the
//!   exporter never grants), so writes that carry a body must say `application/json`
//!   (see [`json_body_refusal`]).

use std::net::IpAddr;
use std::sync::OnceLock;

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, ORIGIN, TRANSFER_ENCODING};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

use super::reply::{self, Answer};
use crate::config::Config;

/// `Sec-Fetch-Site`, sent by browsers only.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The size of a request's head as it was sent: the request line and every header line.
pub(super) fn head_bytes(parts: &Parts) -> usize {
    let request_line = parts.method.as_str().len()
        + parts
            .uri
            .path_and_query()
            .map_or(1, |target| target.as_str().len())
        + " HTTP/1.1\r\n ".len();
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    request_line + headers + "\r\n".len()
}

/// `Some(431)` when the request's head is larger than `limit` bytes. hyper only bounds the
/// buffer it reads into, which can hold more than its limit when the head arrives in a few
/// large reads, so the documented limit is enforced here, on what was actually received.
pub(super) fn oversized_head(parts: &Parts, limit: usize) -> Option<Answer> {
    let size = head_bytes(parts);
    (size > limit).then(|| {
        reply::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request line and headers are {size} bytes; this exporter reads at most {limit}\n"
            ),
        )
    })
}

/// Whether the method changes something (everything but GET, HEAD and OPTIONS).
pub(super) fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `Some(403)` when a write looks like it comes from a web page: a foreign `Origin`, a
/// cross-site fetch, or, for writes trusted because they come from loopback, a `Host` that
/// is none of the exporter's own names. Reads are never refused here.
pub(super) fn cross_site_refusal(
    parts: &Parts,
    config: &Config,
    has_token: bool,
) -> Option<Answer> {
    if !is_write(&parts.method) {
        return None;
    }
    let host = parts
        .headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| parts.uri.authority().map(|authority| authority.as_str()))
        .unwrap_or("");
    let refuse = |why: String| {
        let message = format!(
            "{why}; the exporter refuses writes from web pages (CSRF, DNS rebinding). Scripts send no Origin header; see the README's Security section"
        );
        let mut answer = if parts.uri.path().starts_with("/api/") {
            reply::error(StatusCode::FORBIDDEN, message)
        } else {
            reply::text(StatusCode::FORBIDDEN, message + "\n")
        };
        answer.headers_mut().insert(
            hyper::header::VARY,
            hyper::header::HeaderValue::from_static("Origin"),
        );
        answer
    };
    if let Some(site) = parts.headers.get(SEC_FETCH_SITE)
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Some(refuse(format!(
            "this write was sent by a browser from another site (Sec-Fetch-Site: {})",
            String::from_utf8_lossy(site.as_bytes())
        )));
    }
    if let Some(origin) = parts.headers.get(ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        if !origin_matches_host(&origin, host) {
            return Some(refuse(format!(
                "this write comes from the web page {:?}, not from the exporter's own pages at {:?}",
                shown(&origin),
                shown(host)
            )));
        }
    }
    if !has_token && !is_own_name(host_name(host), config) {
        return Some(refuse(format!(
            "this write names the exporter {:?}, which is not one of its own names or addresses (an IP address, localhost, this machine's host name or the host of --web.listen-address); writes trusted because they come from this host must use one of those, or carry the API token",
            shown(host)
        )));
    }
    None
}

/// `Some(415)` when a write's body is not declared as JSON. `body_required`: the endpoint
/// reads a body (the task API); otherwise (reload) a request without body and without
/// `Content-Type`, as `curl -X POST` and service managers send it, passes too.
pub(super) fn json_body_refusal(
    parts: &Parts,
    body_required: bool,
    as_json: bool,
) -> Option<Answer> {
    let content_type = parts.headers.get(CONTENT_TYPE);
    let declared_json = content_type.is_some_and(|value| is_json_media_type(value.as_bytes()));
    if declared_json {
        return None;
    }
    let has_body = parts.headers.contains_key(TRANSFER_ENCODING)
        || parts
            .headers
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if content_type.is_none() && !has_body && !body_required {
        return None;
    }
    let got = match content_type {
        Some(value) => format!(
            "Content-Type {:?}",
            shown(&String::from_utf8_lossy(value.as_bytes()))
        ),
        None => "no Content-Type".to_string(),
    };
    let message = if body_required {
        format!(
            "this call takes a JSON body and the request has {got}; send Content-Type: application/json (curl: -H 'Content-Type: application/json')"
        )
    } else {
        format!(
            "this call takes no body, or a JSON one, and the request has {got}; send it without a body and without Content-Type (curl -X POST URL), or with Content-Type: application/json"
        )
    };
    Some(if as_json {
        reply::error(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    } else {
        reply::text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message + "\n")
    })
}

/// `application/json`, with any parameters (`; charset=utf-8`), in any case.
fn is_json_media_type(value: &[u8]) -> bool {
    let essence = value.split(|byte| *byte == b';').next().unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
}

/// Whether `origin` (`scheme://host[:port]`) is the site the request was sent to.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null`, or garbage
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |authority: &str| -> String {
        let authority = authority.to_ascii_lowercase();
        if authority.ends_with(']') || !authority.contains(':') {
            format!("{authority}:{default_port}")
        } else {
            authority
        }
    };
    !authority.is_empty() && with_port(authority) == with_port(host)
}

/// The host part of a `Host` value: `[::1]:10050` → `::1`, `name:10050` → `name`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Whether `name` (from `Host`) names this exporter: an IP address (a page cannot re-point
/// those), `localhost` or a name under it, the machine's host name (whole or its first
/// label), or the host of `--web.listen-address`.
fn is_own_name(name: &str, config: &Config) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return false;
    }
    if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if host_name(&config.web.listen_address).eq_ignore_ascii_case(&name) {
        return true;
    }
    machine_names().contains(&name)
}

/// The machine's host name, and its first label when it is a fully qualified one.
fn machine_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let read = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        let full = read.trim().trim_end_matches('.').to_ascii_lowercase();
        let mut names = Vec::new();
        if !full.is_empty() {
            if let Some((short, _)) = full.split_once('.') {
                names.push(short.to_string());
            }
            names.push(full);
        }
        names
    })
}

/// A header value cut short for an error message.
fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An origin matches the host it was sent to, default ports included; others do not.
    #[test]
    fn origins_match_their_own_host_only() {
        assert!(origin_matches_host(
            "http://127.0.0.1:10050",
            "127.0.0.1:10050"
        ));
        assert!(origin_matches_host(
            "https://exporter.example",
            "Exporter.example:443"
        ));
        assert!(origin_matches_host("http://[::1]:10050", "[::1]:10050"));
        assert!(!origin_matches_host(
            "http://evil.example",
            "127.0.0.1:10050"
        ));
        assert!(!origin_matches_host(
            "http://127.0.0.1:8080",
            "127.0.0.1:10050"
        ));
        assert!(!origin_matches_host("null", "127.0.0.1:10050"));
        assert!(!origin_matches_host("file://", ""));
    }

    /// `application/json` with or without parameters is JSON; forms and text are not.
    #[test]
    fn only_json_media_types_count() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
        ] {
            assert!(is_json_media_type(json.as_bytes()), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json_media_type(other.as_bytes()), "{other}");
        }
    }

    /// Host values are reduced to the name, IPv6 brackets and ports removed.
    #[test]
    fn host_names_lose_ports_and_brackets() {
        assert_eq!(host_name("[::1]:10050"), "::1");
        assert_eq!(host_name("localhost:10050"), "localhost");
        assert_eq!(host_name("example"), "example");
    }
}
