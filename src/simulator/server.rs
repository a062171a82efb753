//! The HTTP side: accepts connections, sends `/_sim/` to the control API and everything else
//! to the simulated DingTalk, and applies faults and quirks on the way out.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::api::{self, Answer, ApiError, Endpoint, Params};
use super::control;
use super::echo;
use super::endpoint::unified_token_corp;
use super::faults::{self, FaultKind};
use super::state::{CallRecord, Shared, State};
use super::wire::{CloseConnection, HttpResponse, json_response, read_body, respond};

/// How long in-flight requests get to finish once the simulator stops.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// A client that opens a connection and sends no complete request head is cut off after this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves connections until `stop` changes or its sender is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = shared.clone();
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        // A failed connection (a dropped one included) concerns only its client.
                        let _ = connection.await;
                    });
                }
                // Running out of file descriptors: let some connections finish first.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    connections.abort_all();
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<HttpResponse, CloseConnection> {
    if request.uri().path().starts_with(echo::PREFIX) {
        return echo::handle(request).await;
    }
    if request.uri().path().starts_with(control::PREFIX) {
        return control::handle(&shared, request).await;
    }
    let endpoint = Endpoint::from_path(request.uri().path());
    let (fault, slow_delay) = {
        let mut state = shared.lock();
        state.count_call(endpoint);
        (state.draw_fault(), state.faults.slow_delay())
    };
    match fault {
        Some(FaultKind::Drop) => return Err(CloseConnection("dropped by fault injection")),
        Some(FaultKind::Html502) => {
            return Ok(html(StatusCode::BAD_GATEWAY, faults::HTML_502_PAGE));
        }
        Some(FaultKind::PunishHtml) => {
            return Ok(html(
                StatusCode::METHOD_NOT_ALLOWED,
                faults::PUNISH_HTML_PAGE,
            ));
        }
        Some(FaultKind::Punish) => {
            let uuid = shared.lock().request_id();
            return Ok(json_response(
                faults::punish_json(&uuid).to_string().into_bytes(),
            ));
        }
        Some(FaultKind::Busy) => {
            let body = render(&mut shared.lock(), endpoint, Err(ApiError::busy()));
            return Ok(json_response(body));
        }
        Some(FaultKind::Slow) => tokio::time::sleep(slow_delay).await,
        Some(FaultKind::Truncated) | None => {}
    }
    let query = request.uri().query().map(str::to_string);
    let user_agent = request
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = request.uri().path().to_string();
    let body = read_body(request, shared.max_body_bytes).await?;
    let Some(body) = body else {
        return Ok(html(StatusCode::PAYLOAD_TOO_LARGE, PAYLOAD_TOO_LARGE_PAGE));
    };
    let mut params = Params::parse(query.as_deref(), &body);
    let now_ms = shared.now_ms();
    if endpoint.is_openapi() {
        if let Some(corp_id) = unified_token_corp(&path) {
            params.set("corpId", corp_id);
        }
        let answer = api::openapi_answer(&mut shared.lock(), endpoint, &params, now_ms);
        return Ok(match answer {
            Ok(body) => json_response(body.to_string().into_bytes()),
            Err(error) => respond(
                StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST),
                "application/json;charset=utf-8",
                error.to_json().to_string().into_bytes(),
            ),
        });
    }
    let answer = {
        let mut state = shared.lock();
        if endpoint.is_metered() {
            state.log_call(CallRecord {
                at_ms: now_ms,
                api: endpoint.name(),
                agent_id: params.text("agent_id").parse().unwrap_or(0),
                task_id: params.text("task_id").parse().unwrap_or(0),
                user_agent,
            });
        }
        let answer = api::answer(&mut state, endpoint, &params, now_ms);
        render(&mut state, endpoint, answer)
    };
    let answer = if fault == Some(FaultKind::Truncated) {
        faults::truncate(&answer).to_vec()
    } else {
        answer
    };
    Ok(json_response(answer))
}

const PAYLOAD_TOO_LARGE_PAGE: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n</body>\r\n</html>\r\n";

/// DingTalk's JSON for an answer. `gettoken` answers carry no `request_id`; topapi answers
/// do, except in the quirky form.
fn render(state: &mut State, endpoint: Endpoint, answer: Answer) -> Vec<u8> {
    let mut body = match answer {
        Ok(mut fields) => {
            fields["errcode"] = json!(0);
            fields["errmsg"] = json!("ok");
            fields
        }
        Err(error) => {
            state.count_errcode(error.errcode);
            error.to_json()
        }
    };
    if !matches!(endpoint, Endpoint::GetToken | Endpoint::GetCorpToken) {
        body["request_id"] = json!(state.request_id());
    }
    if body["errcode"] == 0 && state.draw_quirk() {
        if let Value::Object(fields) = &mut body {
            fields.remove("request_id");
        }
        body = quirky(body);
    }
    body.to_string().into_bytes()
}

/// The odd form of an answer: every number, `errcode` included, as a string.
fn quirky(value: Value) -> Value {
    match value {
        Value::Number(number) => Value::String(number.to_string()),
        Value::Array(items) => Value::Array(items.into_iter().map(quirky).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| (name, quirky(value)))
                .collect(),
        ),
        other => other,
    }
}

fn html(status: StatusCode, page: &'static str) -> HttpResponse {
    respond(status, "text/html;charset=utf-8", page.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quirky form turns every number into a string and leaves the rest alone.
    #[test]
    fn quirky_form_stringifies_numbers() {
        let body = json!({"errcode": 0, "progress": {"progress_in_percent": 42.0, "status": 1}, "ok": true, "list": [1]});
        assert_eq!(
            quirky(body),
            json!({"errcode": "0", "progress": {"progress_in_percent": "42.0", "status": "1"}, "ok": true, "list": ["1"]})
        );
    }
}
