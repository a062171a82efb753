//! DingTalk's endpoints: request parameters in, DingTalk's answer out. No HTTP here; the
//! server turns the answer into a response and applies faults and quirks.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::config::{SimCorp, SimSuite};
pub(crate) use super::endpoint::{ApiError, Endpoint, OpenApiError};
use super::state::{State, TaskSpec};
use super::timeline::SEND_RESULT_MAX_RECIPIENTS;

/// Each `asyncsend_v2` department stands for this many users.
const USERS_PER_DEPT: usize = 10;
/// `to_all_user` reaches an organisation of this many users.
const ORGANISATION_SIZE: usize = 500;
/// DingTalk sends to at most this many users per call.
const MAX_SEND_USERS: usize = 5_000;

/// A request's parameters: the query string, then the body (JSON object or form), later
/// values winning. Every value is kept as text, as DingTalk accepts ids as numbers or strings.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, body: &[u8]) -> Params {
        let mut params = HashMap::new();
        let form_pairs = |bytes: &[u8]| {
            form_urlencoded::parse(bytes)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect::<Vec<_>>()
        };
        params.extend(form_pairs(query.unwrap_or_default().as_bytes()));
        if body.trim_ascii_start().starts_with(b"{") {
            if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
                params.extend(fields.into_iter().map(|(name, value)| {
                    let text = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (name, text)
                }));
            }
        } else {
            params.extend(form_pairs(body));
        }
        Params(params)
    }

    /// Sets a parameter that comes from the path (a path segment wins over any other value).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_string(), value.to_string());
    }

    pub fn text(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    /// A positive integer id, given as a number or a decimal string.
    fn id(&self, name: &str) -> Result<i64, ApiError> {
        self.text(name)
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| {
                ApiError::invalid_parameter(&format!("{name} must be a positive integer"))
            })
    }
}

/// A successful answer's fields (besides `errcode`, `errmsg` and `request_id`), or the error.
pub(crate) type Answer = Result<Value, ApiError>;

/// Answers one call the way DingTalk would: credentials, token, QPS limit and quota first,
/// then the API itself.
pub(crate) fn answer(
    state: &mut State,
    endpoint: Endpoint,
    params: &Params,
    now_ms: i64,
) -> Answer {
    match endpoint {
        Endpoint::Unknown => Err(ApiError::unknown_path()),
        Endpoint::GetToken => get_token(state, params, now_ms),
        Endpoint::GetSendProgress => authorise(state, endpoint, params, now_ms)
            .and_then(|()| get_send_progress(state, params, now_ms)),
        Endpoint::GetSendResult => authorise(state, endpoint, params, now_ms)
            .and_then(|()| get_send_result(state, params, now_ms)),
        Endpoint::AsyncSend => authorise(state, endpoint, params, now_ms)
            .and_then(|()| send(state, params, "msg", now_ms)),
        Endpoint::SendByTemplate => authorise(state, endpoint, params, now_ms)
            .and_then(|()| send(state, params, "template_id", now_ms)),
        Endpoint::GetCorpToken => get_corp_token(state, params, now_ms),
        // The server answers these through `openapi_answer`, in the newer host's form.
        Endpoint::UnifiedToken | Endpoint::CorpAccessToken => Err(ApiError::unknown_path()),
    }
}

/// The newer host's token endpoints: the answer's fields, or an HTTP status with a code.
pub(crate) fn openapi_answer(
    state: &mut State,
    endpoint: Endpoint,
    params: &Params,
    now_ms: i64,
) -> Result<Value, OpenApiError> {
    match endpoint {
        Endpoint::UnifiedToken => unified_token(state, params, now_ms),
        _ => corp_access_token(state, params, now_ms),
    }
}

const fn openapi_error(status: u16, code: &'static str, message: &'static str) -> OpenApiError {
    OpenApiError {
        status,
        code,
        message,
    }
}

/// The suite with this key and secret (the secret compared in constant time).
fn suite_with<'a>(state: &'a State, suite_key: &str, secret: &str) -> Option<&'a SimSuite> {
    use subtle::ConstantTimeEq;
    state.suites.iter().find(|suite| {
        suite.suite_key == suite_key
            && bool::from(
                suite
                    .suite_secret
                    .expose()
                    .as_bytes()
                    .ct_eq(secret.as_bytes()),
            )
    })
}

fn corp_of<'a>(suite: &'a SimSuite, corp_id: &str) -> Option<&'a SimCorp> {
    suite.corps.iter().find(|corp| corp.corp_id == corp_id)
}

/// `POST /v1.0/oauth2/{corpId}/token`: a suite's client credentials give a corp's token
/// (a new one each time); an internal app's give its own token.
fn unified_token(state: &mut State, params: &Params, now_ms: i64) -> Result<Value, OpenApiError> {
    if params.text("grant_type") != "client_credentials" {
        return Err(openapi_error(
            400,
            "unsupported.grant.type",
            "grant_type must be client_credentials",
        ));
    }
    let (client_id, secret) = (params.text("client_id"), params.text("client_secret"));
    let corp_id = params.text("corpId");
    if let Some(suite) = suite_with(state, client_id, secret) {
        let Some(corp) = corp_of(suite, corp_id) else {
            return Err(openapi_error(
                401,
                "unauthorized.client",
                "the organisation has not authorised this app",
            ));
        };
        let (suite_key, agent_id) = (suite.suite_key.clone(), corp.agent_id);
        let (token, expires_in) = state.issue_corp_token(&suite_key, corp_id, agent_id, now_ms);
        return Ok(json!({ "access_token": token, "expires_in": expires_in }));
    }
    let Some(app_key) = state
        .app_with(client_id, secret)
        .map(|app| app.app_key.clone())
    else {
        return Err(openapi_error(
            400,
            "invalid.client",
            "client_id or client_secret is wrong",
        ));
    };
    let (token, expires_in) = state.issue_token(&app_key, now_ms);
    Ok(json!({ "access_token": token, "expires_in": expires_in }))
}

/// `POST /v1.0/oauth2/corpAccessToken`: a corp's token with the current suite ticket.
fn corp_access_token(
    state: &mut State,
    params: &Params,
    now_ms: i64,
) -> Result<Value, OpenApiError> {
    let Some(suite) = suite_with(state, params.text("suiteKey"), params.text("suiteSecret")) else {
        return Err(openapi_error(
            400,
            "invalidSuiteKey",
            "suiteKey or suiteSecret is wrong",
        ));
    };
    if params.text("suiteTicket") != suite.suite_ticket {
        return Err(openapi_error(
            400,
            "invalidSuiteTicket",
            "the suite ticket is invalid or outdated",
        ));
    }
    let corp_id = params.text("authCorpId");
    let Some(corp) = corp_of(suite, corp_id) else {
        return Err(openapi_error(
            400,
            "invalidAuthInfo",
            "the organisation has not authorised this app",
        ));
    };
    let (suite_key, agent_id) = (suite.suite_key.clone(), corp.agent_id);
    let (token, expires_in) = state.issue_corp_token(&suite_key, corp_id, agent_id, now_ms);
    Ok(json!({ "accessToken": token, "expireIn": expires_in }))
}

/// How far a signature's timestamp may be from the simulator's clock.
const SIGNATURE_SKEW_MS: i64 = 60_000;

/// `POST /service/get_corp_token?accessKey&timestamp&suiteTicket&signature`: a corp's token,
/// signed with HMAC-SHA256 over `timestamp + "\n" + suiteTicket` keyed with the suite secret.
fn get_corp_token(state: &mut State, params: &Params, now_ms: i64) -> Answer {
    let Some(suite) = state
        .suites
        .iter()
        .find(|suite| suite.suite_key == params.text("accessKey"))
    else {
        return Err(ApiError::code(
            853003,
            "accessKey不存在 (unknown accessKey)",
        ));
    };
    let timestamp_text = params.text("timestamp");
    let Ok(timestamp) = timestamp_text.parse::<i64>() else {
        return Err(ApiError::code(
            853001,
            "timestamp参数不合法 (timestamp is not in milliseconds)",
        ));
    };
    // A timestamp in seconds is three digits short of DingTalk's milliseconds.
    if timestamp < 100_000_000_000 {
        return Err(ApiError::code(
            853001,
            "timestamp参数不合法 (timestamp is not in milliseconds)",
        ));
    }
    if (now_ms - timestamp).abs() > SIGNATURE_SKEW_MS {
        return Err(ApiError::code(
            853002,
            "timestamp与服务器时间相差过大 (timestamp too far from DingTalk's clock)",
        ));
    }
    let ticket = params.text("suiteTicket");
    if ticket.is_empty() {
        return Err(ApiError::code(
            41023,
            "缺少suiteTicket参数 (missing suite ticket)",
        ));
    }
    let expected = signature(suite.suite_secret.expose(), timestamp_text, ticket);
    if params.text("signature") != expected {
        return Err(ApiError::code(853004, "签名不匹配 (signature mismatch)"));
    }
    if ticket != suite.suite_ticket {
        return Err(ApiError::code(
            40085,
            "不存在的suite ticket (unknown suite ticket)",
        ));
    }
    let corp_id = params.text("auth_corpid");
    let Some(corp) = corp_of(suite, corp_id) else {
        return Err(ApiError::code(
            48004,
            "授权关系不存在 (no authorisation relation)",
        ));
    };
    let (suite_key, agent_id) = (suite.suite_key.clone(), corp.agent_id);
    let (token, expires_in) = state.issue_corp_token(&suite_key, corp_id, agent_id, now_ms);
    Ok(json!({ "access_token": token, "expires_in": expires_in }))
}

/// Base64(HMAC-SHA256(secret, timestamp + "\n" + ticket)), as the signature arrives after
/// its one percent-decoding.
fn signature(secret: &str, timestamp: &str, ticket: &str) -> String {
    use aws_lc_rs::hmac;
    use base64::Engine;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}\n{ticket}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The checks before a topapi call is served: a valid token, then the app's QPS limit and
/// the monthly quota.
fn authorise(
    state: &mut State,
    endpoint: Endpoint,
    params: &Params,
    now_ms: i64,
) -> Result<(), ApiError> {
    let owner = state.authenticate(params.text("access_token"), now_ms)?;
    if let Some((_, agent_id)) = &owner.corp {
        // A corp's token opens only that corp's agent: another corp's tasks are not found.
        if endpoint != Endpoint::AsyncSend && params.text("agent_id").trim() != agent_id.to_string()
        {
            return Err(ApiError::invalid_parameter(
                "agent_id does not belong to the organisation of this access token",
            ));
        }
    }
    let corp = owner.corp.as_ref().map(|(corp_id, _)| corp_id.as_str());
    state.admit(&owner.key, corp, endpoint, now_ms)
}

fn get_token(state: &mut State, params: &Params, now_ms: i64) -> Answer {
    let app_key = state
        .app_with(params.text("appkey"), params.text("appsecret"))
        .map(|app| app.app_key.clone())
        .ok_or_else(ApiError::bad_credentials)?;
    state.admit(&app_key, None, Endpoint::GetToken, now_ms)?;
    let (token, expires_in) = state.issue_token(&app_key, now_ms);
    Ok(json!({ "access_token": token, "expires_in": expires_in }))
}

/// The task named by `agent_id` and `task_id`, and how long ago it was created.
fn find_task<'a>(
    state: &'a State,
    params: &Params,
    now_ms: i64,
) -> Result<(&'a super::state::SimTask, i64), ApiError> {
    let agent_id = params.id("agent_id")?;
    let task_id = params.id("task_id")?;
    let task = state
        .queryable_task(agent_id, task_id, now_ms)
        .ok_or_else(|| ApiError::invalid_parameter("no such task for this agent_id"))?;
    Ok((task, now_ms.saturating_sub(task.created_at_ms)))
}

fn get_send_progress(state: &mut State, params: &Params, now_ms: i64) -> Answer {
    let (task, elapsed_ms) = find_task(state, params, now_ms)?;
    let (percent, status) = task.timeline.progress_at(elapsed_ms);
    // DingTalk sends whole percents as integers (`100`, not `100.0`); only a scripted
    // fractional stall point shows up as a fraction.
    let percent = if percent.fract() == 0.0 {
        json!(percent as i64)
    } else {
        json!(percent)
    };
    Ok(json!({ "progress": { "progress_in_percent": percent, "status": status } }))
}

fn get_send_result(state: &mut State, params: &Params, now_ms: i64) -> Answer {
    let (task, elapsed_ms) = find_task(state, params, now_ms)?;
    if task.timeline.recipients > SEND_RESULT_MAX_RECIPIENTS {
        // DingTalk documents that larger tasks get an error but not which; 40035 is the
        // simulator's choice, being what this API answers for parameters it refuses.
        return Err(ApiError::invalid_parameter(
            "getsendresult only answers for tasks with at most 100 recipients",
        ));
    }
    let result = task
        .timeline
        .send_result_at(elapsed_ms, |index| task.user_id(index));
    Ok(json!({ "send_result": result }))
}

/// `asyncsend_v2` (whose content is `msg`) and `sendbytemplate` (`template_id`): a task
/// for the users named, lasting as long as delivering to them takes at the configured pace.
fn send(state: &mut State, params: &Params, content: &str, now_ms: i64) -> Answer {
    let agent_id = params.id("agent_id")?;
    if params.text(content).trim().is_empty() {
        return Err(ApiError::invalid_parameter(&format!(
            "{content} is required"
        )));
    }
    let list = |name: &str| -> Vec<String> {
        params
            .text(name)
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut user_ids = list("userid_list");
    for dept in list("dept_id_list") {
        user_ids.extend((1..=USERS_PER_DEPT).map(|n| format!("dept{dept}-user{n:02}")));
    }
    if params.text("to_all_user") == "true" {
        user_ids = (1..=ORGANISATION_SIZE)
            .map(|n| format!("staff{n:04}"))
            .collect();
    }
    user_ids.sort();
    user_ids.dedup();
    if user_ids.is_empty() {
        return Err(ApiError::invalid_parameter(
            "give userid_list, dept_id_list or to_all_user",
        ));
    }
    if user_ids.len() > MAX_SEND_USERS {
        return Err(ApiError::invalid_parameter("at most 5000 users per call"));
    }
    let mut timeline = state
        .behaviour
        .send_timeline
        .with_recipients(user_ids.len() as u32);
    let pace = i64::from(state.behaviour.send_pace_per_minute);
    if pace > 0 {
        timeline.duration_ms = (user_ids.len() as i64 * 60_000 + pace - 1) / pace;
    }
    let spec = TaskSpec {
        agent_id,
        task_id: None,
        timeline,
        age_ms: 0,
    };
    let task_id = state
        .add_task(spec, Some(user_ids), now_ms)
        .map_err(|why| ApiError::invalid_parameter(&why))?;
    Ok(json!({ "task_id": task_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids arrive as JSON numbers, JSON strings or form fields alike; garbage gives no params.
    #[test]
    fn parameters_are_read_leniently() {
        let json = Params::parse(
            Some("access_token=abc"),
            br#"{"agent_id":12,"task_id":"34"}"#,
        );
        assert_eq!(json.id("agent_id"), Ok(12));
        assert_eq!(json.id("task_id"), Ok(34));
        assert_eq!(json.text("access_token"), "abc");

        let form = Params::parse(None, b"agent_id=12&task_id=34");
        assert_eq!(form.id("task_id"), Ok(34));

        let garbage = Params::parse(None, b"{\"agent_id\":");
        assert_eq!(garbage.id("agent_id").unwrap_err().errcode, 40035);
        let negative = Params::parse(None, br#"{"agent_id":-3}"#);
        assert!(negative.id("agent_id").is_err());
    }

    /// Only DingTalk's exact paths are endpoints.
    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(Endpoint::from_path("/gettoken"), Endpoint::GetToken);
        assert_eq!(
            Endpoint::from_path("/topapi/message/corpconversation/getsendprogress"),
            Endpoint::GetSendProgress
        );
        assert_eq!(
            Endpoint::from_path("/topapi/message/corpconversation/getsendprogress/x"),
            Endpoint::Unknown
        );
        assert_eq!(Endpoint::from_path("/"), Endpoint::Unknown);
        assert_eq!(
            Endpoint::from_path("/topapi/message/corpconversation/sendbytemplate"),
            Endpoint::SendByTemplate
        );
    }

    /// The 88 wrapper carries the real cause in sub_code and in errmsg.
    #[test]
    fn wrapped_errors_carry_the_sub_code() {
        let body = ApiError::token_invalid_wrapped().to_json();
        assert_eq!(body["errcode"], 88);
        assert_eq!(body["sub_code"], "40014");
        assert!(
            body["errmsg"]
                .as_str()
                .unwrap()
                .starts_with("ding talk error[subcode=40014,")
        );
    }
}
