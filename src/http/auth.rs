//! Who may change things: the task API's writes (POST, DELETE) and `POST /-/reload`.
//!
//! With `--web.api-token-file` set, a write must carry `Authorization: Bearer <token>`; the
//! token is compared in constant time so timing reveals nothing about it. Without a token,
//! writes are accepted from loopback clients only, so a fresh install is never writable from
//! the network. Reads stay open (basic auth from `--web.config.file`, when configured, guards
//! every endpoint before this check is reached).

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use hyper::http::request::Parts;
use subtle::ConstantTimeEq;

use super::reply::{self, Answer};
use crate::config::Config;
use crate::secret::Secret;

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// 401: the token is missing or wrong. `challenge` is the `WWW-Authenticate` value.
    Unauthenticated {
        message: String,
        challenge: &'static str,
    },
    /// 403: no token is configured and the client is not on loopback.
    Forbidden { message: String },
}

/// Decides whether a write may proceed.
pub fn authorize_write(
    headers: &HeaderMap,
    peer: IpAddr,
    api_token: Option<&Secret>,
) -> Result<(), WriteRefusal> {
    let Some(expected) = api_token else {
        if peer.to_canonical().is_loopback() {
            return Ok(());
        }
        return Err(WriteRefusal::Forbidden {
            message: format!(
                "writes from {peer} are refused: the exporter has no API token configured, so it accepts writes only from loopback clients (127.0.0.1 or ::1), and a connection from the same machine to another of its addresses is not loopback; start it with --web.api-token-file and send the token as Authorization: Bearer <token>"
            ),
        });
    };
    let Some(presented) = bearer_token(headers) else {
        return Err(WriteRefusal::Unauthenticated {
            message: "this call needs the API token: send Authorization: Bearer <token> with the token from the exporter's --web.api-token-file".to_string(),
            challenge: "Bearer realm=\"dingtalk-exporter\"",
        });
    };
    // An empty token never matches, even if an empty one was configured by mistake.
    // Digests of equal length are compared, so the time taken reveals neither the token
    // nor its length.
    let digest = |bytes: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let matches = !presented.is_empty()
        && bool::from(
            digest(presented)
                .as_ref()
                .ct_eq(digest(expected.expose().as_bytes()).as_ref()),
        );
    if matches {
        Ok(())
    } else {
        Err(WriteRefusal::Unauthenticated {
            message: "the API token is wrong: send the token from the exporter's --web.api-token-file as Authorization: Bearer <token>".to_string(),
            challenge: "Bearer realm=\"dingtalk-exporter\", error=\"invalid_token\"",
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// `Some(answer)` when the write must be refused: 401 (with `WWW-Authenticate`) or 403.
pub(super) fn guard_write(
    parts: &Parts,
    peer: IpAddr,
    config: &Config,
    as_json: bool,
) -> Option<Answer> {
    let refusal = authorize_write(&parts.headers, peer, config.web.api_token.as_ref()).err()?;
    let (status, message, challenge) = match refusal {
        WriteRefusal::Unauthenticated { message, challenge } => {
            (StatusCode::UNAUTHORIZED, message, Some(challenge))
        }
        WriteRefusal::Forbidden { message } => (StatusCode::FORBIDDEN, message, None),
    };
    let mut answer = if as_json {
        reply::error(status, message)
    } else {
        reply::text(status, message + "\n")
    };
    if let Some(challenge) = challenge {
        answer
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    /// Without a token, loopback clients (IPv4, IPv6 and IPv4-mapped) may write, others may not.
    #[test]
    fn without_token_only_loopback_writes() {
        let none = HeaderMap::new();
        for peer in [
            LOOPBACK,
            "::1".parse().unwrap(),
            "::ffff:127.0.0.1".parse().unwrap(),
        ] {
            assert_eq!(authorize_write(&none, peer, None), Ok(()), "{peer}");
        }
        match authorize_write(&none, REMOTE, None) {
            Err(WriteRefusal::Forbidden { message }) => {
                assert!(message.contains("--web.api-token-file"), "{message}");
                // "its own host" read as "any address of this machine"; it means loopback.
                assert!(message.contains("only from loopback clients"), "{message}");
                assert!(!message.contains("own host"), "{message}");
            }
            other => panic!("remote write without token: {other:?}"),
        }
    }

    /// With a token, only the right bearer token passes, from anywhere, loopback included.
    #[test]
    fn with_token_the_bearer_token_decides() {
        let token = Secret::new("s3cret-token");
        assert_eq!(
            authorize_write(
                &with_authorization("Bearer s3cret-token"),
                REMOTE,
                Some(&token)
            ),
            Ok(())
        );
        assert_eq!(
            authorize_write(
                &with_authorization("bearer s3cret-token"),
                LOOPBACK,
                Some(&token)
            ),
            Ok(())
        );
        for refused in [
            HeaderMap::new(),
            with_authorization("Bearer wrong"),
            with_authorization("Bearer s3cret-token-and-more"),
            with_authorization("Basic czNjcmV0LXRva2Vu"),
            with_authorization("Bearer"),
        ] {
            assert!(
                matches!(
                    authorize_write(&refused, LOOPBACK, Some(&token)),
                    Err(WriteRefusal::Unauthenticated { .. })
                ),
                "{refused:?}"
            );
        }
    }

    /// A configured empty token lets nobody in with an empty bearer token.
    #[test]
    fn empty_token_never_matches() {
        let empty = Secret::new("");
        assert!(authorize_write(&with_authorization("Bearer "), LOOPBACK, Some(&empty)).is_err());
    }

    /// Refusal messages never contain the configured token.
    #[test]
    fn refusals_do_not_reveal_the_token() {
        let token = Secret::new("s3cret-token");
        let Err(WriteRefusal::Unauthenticated { message, challenge }) =
            authorize_write(&with_authorization("Bearer s3cret"), LOOPBACK, Some(&token))
        else {
            panic!("a wrong token must be refused");
        };
        assert!(!message.contains("s3cret-token") && !challenge.contains("s3cret"));
    }
}
