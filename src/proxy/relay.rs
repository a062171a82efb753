//! Relaying one request to the upstream and its answer back, unchanged.
//!
//! What reaches the upstream: the method, the path and query (after the upstream URL's own
//! path, if it has one), every end-to-end header and the body bytes. What does not: the
//! hop-by-hop headers of RFC 9110 §7.6.1 (`Connection` and the headers it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`), which describe
//! the sender's connection to the proxy; `Host` names the upstream instead. The request
//! line's scheme and authority (an absolute-form target) and the `Host` header are ignored:
//! every request goes to the one upstream, so the proxy can never be used to reach another
//! address. The answer comes back the same way: status, end-to-end headers and body bytes.
//!
//! Bodies stream through (media uploads can be large), except on the two send paths, where
//! the request (at most [`MAX_SEND_BODY_BYTES`]) and the answer (up to
//! [`MAX_SEND_ANSWER_BYTES`]; a larger one streams on untracked) are read whole: the
//! registration needs both.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::meter::RelayedCallMeter;
use super::tracking::{TrackFailure, TrackQueue, report_failure};
use crate::clock::now_ms;
use crate::dingtalk::is_throttle_code;
use crate::dingtalk::message::{
    ASYNC_SEND_PATH, SEND_BY_TEMPLATE_PATH, clean_name, send_facts, send_outcome,
};
use crate::telemetry::Telemetry;
use crate::tracker::{NewTask, TaskKey, TaskSource};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body as relayed, either way.
pub type RelayBody = BoxBody<Bytes, BoxError>;

/// The largest send request read whole: 5,000 user ids and a message fit many times over,
/// and the main listener's 1 MiB would refuse a large `userid_list` with a long message.
pub const MAX_SEND_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The largest send answer read whole (DingTalk's are well under 1 KiB).
pub const MAX_SEND_ANSWER_BYTES: usize = 1024 * 1024;
/// How long the upstream may take to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream may take to answer (the head of the answer; a large body may take
/// longer to stream).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The sender's header that names the task a send creates.
pub const NAME_HEADER: &str = "x-dingtalk-exporter-name";

/// Which DingTalk API a request is for (the `api` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyApi {
    AsyncSend,
    SendByTemplate,
    GetToken,
    GetSendProgress,
    GetSendResult,
    Other,
}

impl ProxyApi {
    pub const ALL: [ProxyApi; 6] = [
        ProxyApi::AsyncSend,
        ProxyApi::SendByTemplate,
        ProxyApi::GetToken,
        ProxyApi::GetSendProgress,
        ProxyApi::GetSendResult,
        ProxyApi::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyApi::AsyncSend => "asyncsend_v2",
            ProxyApi::SendByTemplate => "sendbytemplate",
            ProxyApi::GetToken => "gettoken",
            ProxyApi::GetSendProgress => "getsendprogress",
            ProxyApi::GetSendResult => "getsendresult",
            ProxyApi::Other => "other",
        }
    }

    /// The API of a request path (as the sender wrote it, trailing slash allowed).
    pub fn of_path(path: &str) -> ProxyApi {
        let path = path.trim_end_matches('/');
        match path {
            ASYNC_SEND_PATH => ProxyApi::AsyncSend,
            SEND_BY_TEMPLATE_PATH => ProxyApi::SendByTemplate,
            "/gettoken" => ProxyApi::GetToken,
            "/topapi/message/corpconversation/getsendprogress" => ProxyApi::GetSendProgress,
            "/topapi/message/corpconversation/getsendresult" => ProxyApi::GetSendResult,
            _ => ProxyApi::Other,
        }
    }

    fn is_send(self) -> bool {
        matches!(self, ProxyApi::AsyncSend | ProxyApi::SendByTemplate)
    }
}

/// Whether a call to `path` counts toward the monthly quota: all do but the token APIs,
/// which DingTalk exempts.
pub fn is_metered(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    !(path == "/gettoken"
        || path == "/sns/gettoken"
        || path == "/service/get_corp_token"
        || path == "/get_jsapi_ticket"
        || path.starts_with("/v1.0/oauth2/"))
}

/// The result of one relayed request (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayResult {
    /// The upstream answered; for a send, with errcode 0.
    Ok,
    /// A send answered with a non-zero errcode, or any answer with an HTTP error status.
    DingTalkError,
    /// The upstream could not be reached or broke off; the sender got 502 or 504.
    UpstreamError,
    /// The proxy refused the request itself (CONNECT, a send body over its limit).
    Refused,
}

impl RelayResult {
    pub const ALL: [RelayResult; 4] = [
        RelayResult::Ok,
        RelayResult::DingTalkError,
        RelayResult::UpstreamError,
        RelayResult::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RelayResult::Ok => "ok",
            RelayResult::DingTalkError => "dingtalk_error",
            RelayResult::UpstreamError => "upstream_error",
            RelayResult::Refused => "refused",
        }
    }
}

/// The one destination, split so a request's path can be appended.
#[derive(Clone, Debug)]
struct Upstream {
    scheme: String,
    authority: String,
    /// The `Host` header every relayed request carries.
    host: HeaderValue,
    /// The URL's own path without its trailing slash ("" for none).
    base_path: String,
}

impl Upstream {
    fn parse(url: &str) -> Result<Upstream, String> {
        let uri: Uri = url
            .parse()
            .map_err(|err| format!("--proxy.upstream-url {url:?}: {err}"))?;
        let scheme = uri
            .scheme_str()
            .filter(|scheme| matches!(*scheme, "http" | "https"))
            .ok_or_else(|| format!("--proxy.upstream-url {url:?} must be http:// or https://"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--proxy.upstream-url {url:?} has no host"))?;
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("--proxy.upstream-url {url:?} has an invalid host"))?;
        Ok(Upstream {
            scheme: scheme.to_string(),
            authority: authority.to_string(),
            host,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The upstream URI of a request, from its path and query only.
    fn uri_for(&self, request: &Uri) -> Result<Uri, String> {
        let path_and_query = request
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        if !path_and_query.starts_with('/') {
            return Err("the request target must be a path".to_string());
        }
        format!(
            "{}://{}{}{}",
            self.scheme, self.authority, self.base_path, path_and_query
        )
        .parse()
        .map_err(|_| "the request target is not a valid path".to_string())
    }
}

/// What every relayed request shares.
pub struct Relay {
    upstream: Upstream,
    client: Client<HttpsConnector<HttpConnector>, RelayBody>,
    telemetry: Arc<Telemetry>,
    meter: Arc<RelayedCallMeter>,
    queue: TrackQueue,
    body_read_timeout: Duration,
}

impl Relay {
    /// A relay to `upstream_url` over a pooled keep-alive client (HTTPS via rustls with the
    /// platform's trust store).
    pub fn new(
        upstream_url: &str,
        telemetry: Arc<Telemetry>,
        meter: Arc<RelayedCallMeter>,
        queue: TrackQueue,
        body_read_timeout: Duration,
    ) -> Result<Relay, String> {
        let upstream = Upstream::parse(upstream_url)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS setup for the proxy's upstream: {err}"))?;
        let tls = rustls_platform_verifier::BuilderVerifierExt::with_platform_verifier(tls)
            .map_err(|err| format!("TLS setup for the proxy's upstream: {err}"))?
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Relay {
            upstream,
            client,
            telemetry,
            meter,
            queue,
            body_read_timeout,
        })
    }

    /// Relays one request and returns the upstream's answer (or the proxy's own 4xx/5xx).
    pub async fn handle(&self, request: Request<Incoming>) -> Response<RelayBody> {
        let started = Instant::now();
        let api = ProxyApi::of_path(request.uri().path());
        let (answer, result, reached) = self.relay(api, request).await;
        self.telemetry.record_proxy_request(
            api.as_str(),
            result.as_str(),
            reached.then(|| started.elapsed()),
        );
        answer
    }

    async fn relay(
        &self,
        api: ProxyApi,
        request: Request<Incoming>,
    ) -> (Response<RelayBody>, RelayResult, bool) {
        if request.method() == Method::CONNECT {
            return (
                own_answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this is a DingTalk API relay, not a forward proxy\n",
                ),
                RelayResult::Refused,
                false,
            );
        }
        let uri = match self.upstream.uri_for(request.uri()) {
            Ok(uri) => uri,
            Err(why) => {
                return (
                    own_answer(StatusCode::BAD_REQUEST, &format!("{why}\n")),
                    RelayResult::Refused,
                    false,
                );
            }
        };
        let path = request.uri().path().to_string();
        let (parts, body) = request.into_parts();
        let name = parts
            .headers
            .get(NAME_HEADER)
            .map(|value| clean_name(&String::from_utf8_lossy(value.as_bytes())))
            .filter(|name| !name.is_empty());

        let mut upstream_request = Request::new(empty_body());
        *upstream_request.method_mut() = parts.method;
        *upstream_request.uri_mut() = uri;
        *upstream_request.headers_mut() = end_to_end(parts.headers);
        // The upstream's name, in the place the sender's Host header had.
        upstream_request
            .headers_mut()
            .insert(header::HOST, self.upstream.host.clone());

        let send_body = if api.is_send() {
            match read_bounded(body, MAX_SEND_BODY_BYTES, self.body_read_timeout).await {
                Ok(bytes) => {
                    *upstream_request.body_mut() = full(bytes.clone());
                    Some(bytes)
                }
                Err(status) => {
                    return (
                        own_answer(
                            status,
                            "the send's body is too large or too slow to arrive\n",
                        ),
                        RelayResult::Refused,
                        false,
                    );
                }
            }
        } else {
            *upstream_request.body_mut() = body.map_err(BoxError::from).boxed();
            None
        };

        let answer = match tokio::time::timeout(
            ANSWER_TIMEOUT,
            self.client.request(upstream_request),
        )
        .await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                // The error names the failure, never the URL (whose query holds the token).
                tracing::warn!(api = api.as_str(), error = %err, "the proxy could not reach its upstream");
                return (
                    own_answer(
                        StatusCode::BAD_GATEWAY,
                        "the DingTalk API could not be reached through the tracking proxy\n",
                    ),
                    RelayResult::UpstreamError,
                    true,
                );
            }
            Err(_) => {
                tracing::warn!(api = api.as_str(), timeout = ?ANSWER_TIMEOUT, "the proxy's upstream did not answer in time");
                return (
                    own_answer(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the DingTalk API did not answer in time\n",
                    ),
                    RelayResult::UpstreamError,
                    true,
                );
            }
        };
        // A send's answer is read below, and a send DingTalk throttled did not count
        // against the quota; other answers stream through unread and count once answered.
        if is_metered(&path) && !api.is_send() {
            self.meter.count_call(now_ms());
        }
        let (mut parts, body) = answer.into_parts();
        parts.headers = end_to_end(parts.headers);
        let status_result = if parts.status.is_client_error() || parts.status.is_server_error() {
            RelayResult::DingTalkError
        } else {
            RelayResult::Ok
        };
        tracing::debug!(
            api = api.as_str(),
            status = parts.status.as_u16(),
            "relayed"
        );

        let Some(send_body) = send_body else {
            let body = body.map_err(BoxError::from).boxed();
            return (Response::from_parts(parts, body), status_result, true);
        };
        match read_answer(body).await {
            Answer::Whole(bytes) => {
                let outcome = send_outcome(&bytes);
                if !matches!(outcome, Err(Some(code)) if is_throttle_code(code)) {
                    self.meter.count_call(now_ms());
                }
                let result = match outcome {
                    Ok(task_id) => {
                        self.track(&send_body, task_id, name);
                        RelayResult::Ok
                    }
                    Err(_) => RelayResult::DingTalkError,
                };
                (Response::from_parts(parts, full(bytes)), result, true)
            }
            Answer::Streaming(body) => {
                self.meter.count_call(now_ms());
                (Response::from_parts(parts, body), status_result, true)
            }
            Answer::Broken(err) => {
                tracing::warn!(api = api.as_str(), error = %err, "the upstream broke off its answer");
                (
                    own_answer(
                        StatusCode::BAD_GATEWAY,
                        "the DingTalk API broke off its answer\n",
                    ),
                    RelayResult::UpstreamError,
                    true,
                )
            }
        }
    }

    /// Queues the registration of a send DingTalk accepted.
    fn track(&self, request_body: &[u8], task_id: i64, name: Option<String>) {
        let facts = send_facts(request_body);
        let Some(agent_id) = facts.agent_id else {
            report_failure(&self.telemetry, TrackFailure::NoAgentId, None, "");
            return;
        };
        self.queue.submit(NewTask {
            key: TaskKey { agent_id, task_id },
            name: name.unwrap_or(facts.name),
            recipients: facts.recipients,
            source: TaskSource::Proxy,
        });
    }
}

/// The headers without the hop-by-hop ones (RFC 9110 §7.6.1), the others in their order.
/// (Copied rather than removed in place: removing from a `HeaderMap` reorders it.)
fn end_to_end(headers: HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let hop_by_hop = |name: &HeaderName| {
        matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "transfer-encoding"
                | "upgrade"
        ) || named.contains(name)
    };
    let mut kept = HeaderMap::with_capacity(headers.len());
    let mut current: Option<HeaderName> = None;
    for (name, value) in headers {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current
            && !hop_by_hop(name)
        {
            kept.append(name.clone(), value);
        }
    }
    kept
}

fn full(bytes: Bytes) -> RelayBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn empty_body() -> RelayBody {
    full(Bytes::new())
}

/// An answer of the proxy itself (never relayed content).
fn own_answer(status: StatusCode, text: &str) -> Response<RelayBody> {
    let mut answer = Response::new(full(Bytes::from(text.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// Reads a request body whole, within `limit` bytes and `timeout`.
async fn read_bounded(
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, StatusCode> {
    if body.size_hint().lower() > limit as u64 {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
        Err(_) => Err(StatusCode::REQUEST_TIMEOUT),
    }
}

enum Answer {
    /// Read whole.
    Whole(Bytes),
    /// Too large to read whole: what was read, then the rest, streamed.
    Streaming(RelayBody),
    Broken(hyper::Error),
}

/// Reads a send's answer whole when it fits [`MAX_SEND_ANSWER_BYTES`].
async fn read_answer(mut body: Incoming) -> Answer {
    let mut read = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                    if read.len() > MAX_SEND_ANSWER_BYTES {
                        let rest = Prefixed {
                            prefix: Some(read.freeze()),
                            rest: body,
                        };
                        return Answer::Streaming(rest.map_err(BoxError::from).boxed());
                    }
                }
            }
            Err(err) => return Answer::Broken(err),
        }
    }
    Answer::Whole(read.freeze())
}

/// The part of a body already read, then the rest of it.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Incoming,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let prefix = self.prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
        hint.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only DingTalk's exact send paths are sends; the token APIs are the unmetered ones.
    #[test]
    fn paths_map_to_apis_and_metering() {
        assert_eq!(
            ProxyApi::of_path("/topapi/message/corpconversation/asyncsend_v2"),
            ProxyApi::AsyncSend
        );
        assert_eq!(
            ProxyApi::of_path("/topapi/message/corpconversation/sendbytemplate/"),
            ProxyApi::SendByTemplate
        );
        assert_eq!(ProxyApi::of_path("/media/upload"), ProxyApi::Other);
        assert!(!is_metered("/gettoken"));
        assert!(!is_metered("/v1.0/oauth2/accessToken"));
        assert!(is_metered("/topapi/message/corpconversation/asyncsend_v2"));
    }

    /// Hop-by-hop headers go, and so do the ones `Connection` names; the rest stay.
    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert("x-acs-dingtalk-access-token", HeaderValue::from_static("t"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let kept = end_to_end(headers);
        let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-acs-dingtalk-access-token", "content-type"]);
    }

    /// An absolute-form target keeps only its path and query: the upstream is fixed.
    #[test]
    fn absolute_form_targets_go_to_the_upstream() {
        let upstream = Upstream::parse("https://oapi.dingtalk.com/base/").unwrap();
        let target: Uri = "http://evil.example:8080/gettoken?appkey=k"
            .parse()
            .unwrap();
        assert_eq!(
            upstream.uri_for(&target).unwrap().to_string(),
            "https://oapi.dingtalk.com/base/gettoken?appkey=k"
        );
    }
}
