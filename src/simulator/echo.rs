//! `/_sim/echo/...`: answers with what it received, so a test can check that a proxy in
//! between changed nothing (method, path, query, headers in order, body bytes), and with
//! a fixed set of answer headers and a chosen status, so it can check the way back too.
//! Bodies of any size stream through it: it hashes them instead of keeping them.

use aws_lc_rs::digest;
use base64::Engine;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};
use serde_json::json;

use super::wire::{CloseConnection, HttpResponse, respond};

/// Every echo path starts with this.
pub(crate) const PREFIX: &str = "/_sim/echo";

/// Bodies up to this size are answered in full (base64), larger ones by length and hash.
const INLINE_BODY_BYTES: usize = 64 * 1024;

pub(crate) async fn handle(request: Request<Incoming>) -> Result<HttpResponse, CloseConnection> {
    let (parts, mut body) = request.into_parts();
    let status = parts
        .uri
        .query()
        .into_iter()
        .flat_map(|query| form_urlencoded::parse(query.as_bytes()))
        .find(|(name, _)| name == "status")
        .and_then(|(_, value)| value.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut length = 0usize;
    let mut inline = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| CloseConnection("request body broke off"))?;
        if let Ok(data) = frame.into_data() {
            hash.update(&data);
            length += data.len();
            if length <= INLINE_BODY_BYTES {
                inline.extend_from_slice(&data);
            }
        }
    }
    let headers: Vec<[String; 2]> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let sha256: String = hash
        .finish()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let answer = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_length": length,
        "body_sha256": sha256,
        "body_base64": (length <= INLINE_BODY_BYTES)
            .then(|| base64::engine::general_purpose::STANDARD.encode(&inline)),
    });
    let mut response = respond(
        status,
        "application/json;charset=utf-8",
        answer.to_string().into_bytes(),
    );
    let headers = response.headers_mut();
    headers.insert("x-echo", HeaderValue::from_static("1"));
    headers.append(SET_COOKIE, HeaderValue::from_static("first=1; Path=/"));
    headers.append(SET_COOKIE, HeaderValue::from_static("second=2; Path=/"));
    Ok(response)
}
