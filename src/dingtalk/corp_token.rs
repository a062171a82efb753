//! Access tokens of third-party (ISV) apps, one per authorising corp, through DingTalk's
//! three corp-token APIs, and of internal apps through the unified token API.
//!
//! - unified: `POST {openapi}/v1.0/oauth2/{corpId}/token` with client credentials;
//! - `POST {openapi}/v1.0/oauth2/corpAccessToken` with the suite ticket;
//! - legacy `POST {oapi}/service/get_corp_token`, signed with the suite secret and ticket.
//!
//! Each of them answers every request with a *new* token, so the client caches one per corp
//! ([`super::token::TokenCache`]) and refreshes it single-flight, a few minutes early. The
//! newer host answers errors with an HTTP status and a string `code`; they become
//! [`ApiFailure::OpenApi`].

use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine;
use serde_json::{Map, Value};

use super::ApiFailure;
use super::answer::{IssuedToken, lenient_i64};
use crate::secret::Secret;

/// The signature of a `get_corp_token` (and `get_auth_info`) request: Base64 of
/// HMAC-SHA256 keyed with the suite secret over `timestamp + "\n" + suite_ticket`. The
/// caller percent-encodes it exactly once, as a query value.
pub fn corp_token_signature(suite_secret: &str, timestamp_ms: i64, suite_ticket: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, suite_secret.as_bytes());
    let message = format!("{timestamp_ms}\n{suite_ticket}");
    let tag = hmac::sign(&key, message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The file in which the ISV's callback service keeps the latest suite ticket. DingTalk
/// pushes a new ticket about every five hours and each one invalidates the previous, so the
/// file is read afresh for every token request (which happens about once per token lifetime
/// per corp): a rotated ticket is picked up without a restart or a reload.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteTicketFile {
    path: PathBuf,
}

impl SuiteTicketFile {
    pub fn new(path: impl Into<PathBuf>) -> SuiteTicketFile {
        SuiteTicketFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current ticket, trimmed; an unreadable or empty file says why.
    pub fn read(&self) -> Result<Secret, String> {
        match Secret::from_file(&self.path) {
            Ok(ticket) if ticket.is_empty() => Err(format!(
                "the suite ticket file {} is empty",
                self.path.display()
            )),
            Ok(ticket) => Ok(ticket),
            Err(err) => Err(format!(
                "cannot read the suite ticket file {}: {err}",
                self.path.display()
            )),
        }
    }
}

/// The codes of the newer API host that get their own `errcode` label value; any other is
/// counted as `other`.
pub const KNOWN_OPENAPI_CODES: &[&str] = &[
    "invalid.client",
    "unsupported.grant.type",
    "unauthorized.client",
    "server.error",
    "invalidSuiteKey",
    "invalidSuiteTicket",
    "invalidAuthInfo",
    "QpsLimitForSuitekeyAndOrgAndApi",
];

/// Decodes a unified token answer: `{"access_token","expires_in"}`.
pub fn decode_unified_token(status: u16, body: &[u8]) -> Result<IssuedToken, ApiFailure> {
    decode_openapi_token(status, body, "access_token", "expires_in")
}

/// Decodes a `corpAccessToken` answer: `{"accessToken","expireIn"}`.
pub fn decode_corp_access_token(status: u16, body: &[u8]) -> Result<IssuedToken, ApiFailure> {
    decode_openapi_token(status, body, "accessToken", "expireIn")
}

fn decode_openapi_token(
    status: u16,
    body: &[u8],
    token_field: &str,
    lifetime_field: &str,
) -> Result<IssuedToken, ApiFailure> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    };
    if !(200..300).contains(&status) {
        return Err(match object.as_ref().and_then(openapi_error) {
            Some((code, message)) => ApiFailure::OpenApi {
                status,
                code,
                message,
            },
            None => ApiFailure::Http(status),
        });
    }
    let object = object
        .ok_or_else(|| ApiFailure::Decode("the token answer is not a JSON object".to_string()))?;
    if let Some((code, message)) = openapi_error(&object) {
        return Err(ApiFailure::OpenApi {
            status,
            code,
            message,
        });
    }
    let token = object
        .get(token_field)
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiFailure::Decode(format!("the token answer has no {token_field}")))?;
    let lifetime_s = object
        .get(lifetime_field)
        .and_then(lenient_i64)
        .filter(|lifetime| *lifetime > 0)
        .ok_or_else(|| {
            ApiFailure::Decode(format!("the token answer has no positive {lifetime_field}"))
        })?;
    Ok(IssuedToken {
        access_token: Secret::new(token),
        expires_in_s: lifetime_s,
    })
}

/// The string `code` and `message` of an error answer of the newer host.
fn openapi_error(object: &Map<String, Value>) -> Option<(String, String)> {
    let code = object.get("code").and_then(Value::as_str)?;
    let message = object
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The code is DingTalk's, but bound its length: it ends up in a log line.
    let code: String = code.chars().take(64).collect();
    let message: String = message.chars().take(256).collect();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature matches a vector worked out independently from DingTalk's algorithm
    /// (Base64 of HMAC-SHA256 keyed with the suite secret over `timestamp + "\n" + ticket`),
    /// and goes into the query percent-encoded exactly once.
    #[test]
    fn signature_matches_the_documented_algorithm() {
        let signature =
            corp_token_signature("suite-secret-for-vector", 1_700_000_000_000, "ticket-abc");
        assert_eq!(signature, "VdjexWx8N8O+7MVfd8v/Qgp/JwXQL7HXTKLEyJc2t8g=");
        let mut url =
            reqwest::Url::parse("https://oapi.dingtalk.com/service/get_corp_token").unwrap();
        url.query_pairs_mut().append_pair("signature", &signature);
        assert_eq!(
            url.query(),
            Some("signature=VdjexWx8N8O%2B7MVfd8v%2FQgp%2FJwXQL7HXTKLEyJc2t8g%3D")
        );
    }

    /// Unified answers give a token; its HTTP 400 answers give the string code.
    #[test]
    fn unified_answers_and_errors() {
        let token =
            decode_unified_token(200, br#"{"access_token":"abc","expires_in":7200}"#).unwrap();
        assert_eq!(token.access_token.expose(), "abc");
        assert_eq!(token.expires_in_s, 7200);
        let refused = decode_unified_token(
            400,
            br#"{"code":"invalid.client","message":"bad client_secret"}"#,
        );
        assert_eq!(
            refused,
            Err(ApiFailure::OpenApi {
                status: 400,
                code: "invalid.client".into(),
                message: "bad client_secret".into()
            })
        );
        assert_eq!(
            decode_unified_token(502, b"<html>bad gateway</html>"),
            Err(ApiFailure::Http(502))
        );
        assert!(matches!(
            decode_unified_token(200, br#"{"expires_in":7200}"#),
            Err(ApiFailure::Decode(_))
        ));
    }

    /// corpAccessToken answers name their fields in camel case.
    #[test]
    fn corp_access_token_answers() {
        let token =
            decode_corp_access_token(200, br#"{"accessToken":"t1","expireIn":"7200"}"#).unwrap();
        assert_eq!(token.access_token.expose(), "t1");
        assert_eq!(token.expires_in_s, 7200);
        let refused = decode_corp_access_token(
            400,
            br#"{"code":"invalidSuiteTicket","message":"ticket expired"}"#,
        )
        .unwrap_err();
        assert_eq!(
            refused.errcode_label().as_deref(),
            Some("invalidSuiteTicket")
        );
    }
}
