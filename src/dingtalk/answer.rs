//! Decoding of DingTalk's answers, leniently, into the exporter's types or an [`ApiFailure`].
//!
//! DingTalk's documentation and its answers disagree in small ways (`"errcode":"0"` as a
//! string, numbers sent as strings, `request_id` sometimes missing), and in front of it sit
//! gateways that answer with HTML pages or a per-IP punish answer without any errcode. Every
//! function here is pure (HTTP status and body bytes in, a value out) so it can be tested,
//! property-tested and fuzzed without a network, and none of them panics on any input.
//!
//! The order of classification:
//! 1. the per-IP throttle's punish answer (JSON or HTML) → [`ApiFailure::IpBanned`];
//! 2. a JSON object with a non-zero `errcode` → [`ApiFailure::DingTalk`], whatever the HTTP
//!    status (for errcode 88 the numeric `sub_code` is the code);
//! 3. any other non-2xx answer → [`ApiFailure::Http`];
//! 4. a 2xx answer that is not the expected JSON → [`ApiFailure::Decode`].

use serde_json::{Map, Value};

use super::redact::excerpt;
use super::{ApiFailure, RecipientCounts, SendProgress};
use crate::secret::Secret;

/// How long the per-IP ban lasts when the punish answer does not say (DingTalk documents
/// about five minutes).
pub const DEFAULT_IP_BAN_MS: i64 = 300_000;

/// DingTalk's gateway wrapper: the real cause is in `sub_code`.
const GATEWAY_WRAPPER: i64 = 88;

/// The throttle code an ISV's string QPS sub_code is classified as: DingTalk's per-app
/// per-API QPS limit, which it is for a third-party app's corp.
const ISV_QPS_THROTTLE: i64 = 90018;

/// How much of an unexpected answer is quoted in a decode error.
const QUOTE_LIMIT: usize = 120;

/// How much of an unexpected answer is redacted before the quote is cut from it.
const QUOTE_SOURCE_LIMIT: usize = 4 * 1024;

/// A token issued by `gettoken`.
#[derive(Clone, Debug, PartialEq)]
pub struct IssuedToken {
    pub access_token: Secret,
    /// Lifetime in seconds, as DingTalk stated it (7200 normally).
    pub expires_in_s: i64,
}

/// DingTalk's answer to `gettoken`.
pub fn decode_token(status: u16, body: &[u8]) -> Result<IssuedToken, ApiFailure> {
    let answer = decode_envelope(status, body)?;
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiFailure::Decode("gettoken answer without access_token".to_string()))?;
    let expires_in_s = match answer.get("expires_in") {
        None | Some(Value::Null) => 7200,
        Some(value) => lenient_i64(value)
            .filter(|seconds| *seconds > 0)
            .ok_or_else(|| ApiFailure::Decode("gettoken answer with a bad expires_in".into()))?,
    };
    Ok(IssuedToken {
        access_token: Secret::new(token),
        expires_in_s,
    })
}

/// DingTalk's answer to `getsendprogress`.
///
/// `progress_in_percent` may be an integer, a float or a string and is clamped to 0..=100;
/// `status` may be an integer or a string. When the percentage is missing it is taken from the
/// status (100 when finished, else 0), since a not-started task plausibly omits it.
pub fn decode_progress(status: u16, body: &[u8]) -> Result<SendProgress, ApiFailure> {
    let answer = decode_envelope(status, body)?;
    let progress = answer
        .get("progress")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiFailure::Decode("getsendprogress answer without progress".into()))?;
    let send_status = progress
        .get("status")
        .and_then(lenient_i64)
        .ok_or_else(|| ApiFailure::Decode("progress without a numeric status".into()))?;
    let percent = match progress.get("progress_in_percent") {
        None | Some(Value::Null) => {
            if send_status == 2 {
                100.0
            } else {
                0.0
            }
        }
        Some(value) => lenient_f64(value)
            .ok_or_else(|| ApiFailure::Decode("progress_in_percent is not a number".into()))?
            .clamp(0.0, 100.0),
    };
    Ok(SendProgress {
        percent,
        status: send_status,
    })
}

/// DingTalk's answer to `getsendresult`, as counts per list.
///
/// Missing or null lists count as empty. A list sent as a comma-separated string counts its
/// items. `forbidden` counts recipients, not messages: the distinct user ids of
/// `forbidden_user_id_list` and of the `forbidden_list` entries (an entry's `count` is how many
/// messages that user was refused, so it is not added up); entries without a user id count
/// once each. `invalid` is `invalid_user_id_list` plus `invalid_dept_id_list`.
pub fn decode_result(status: u16, body: &[u8]) -> Result<RecipientCounts, ApiFailure> {
    let answer = decode_envelope(status, body)?;
    let result = answer
        .get("send_result")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiFailure::Decode("getsendresult answer without send_result".into()))?;
    let list = |name: &str| list_items(result.get(name), name);

    let mut forbidden_users: Vec<String> = list("forbidden_user_id_list")?;
    let mut anonymous_forbidden = 0u64;
    match result.get("forbidden_list") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for entry in entries {
                match entry.get("userid").and_then(id_text) {
                    Some(user) => forbidden_users.push(user),
                    None => anonymous_forbidden += 1,
                }
            }
        }
        Some(_) => return Err(ApiFailure::Decode("forbidden_list is not a list".into())),
    }
    forbidden_users.sort_unstable();
    forbidden_users.dedup();

    Ok(RecipientCounts {
        read: list("read_user_id_list")?.len() as u64,
        unread: list("unread_user_id_list")?.len() as u64,
        failed: list("failed_user_id_list")?.len() as u64,
        forbidden: forbidden_users.len() as u64 + anonymous_forbidden,
        invalid: (list("invalid_user_id_list")?.len() + list("invalid_dept_id_list")?.len()) as u64,
    })
}

/// Classifies an answer and, when it is a DingTalk success, returns its JSON object.
pub fn decode_envelope(status: u16, body: &[u8]) -> Result<Map<String, Value>, ApiFailure> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let object = match parsed {
        Some(Value::Object(object)) => object,
        _ => {
            if looks_like_punish_page(body) {
                return Err(ApiFailure::IpBanned {
                    retry_after_ms: DEFAULT_IP_BAN_MS,
                });
            }
            if !is_success(status) {
                return Err(ApiFailure::Http(status));
            }
            return Err(ApiFailure::Decode(describe_unparseable(body)));
        }
    };

    if is_punish_answer(&object) {
        let wait_ms = object
            .get("wait")
            .and_then(lenient_i64)
            .filter(|minutes| *minutes > 0)
            // In minutes: DingTalk documents a ban of about five minutes and shows the
            // answer with `"wait":5`.
            .map_or(DEFAULT_IP_BAN_MS, |minutes| minutes.saturating_mul(60_000));
        return Err(ApiFailure::IpBanned {
            retry_after_ms: wait_ms,
        });
    }

    match object.get("errcode") {
        Some(value) => {
            let code = lenient_i64(value)
                .ok_or_else(|| ApiFailure::Decode("errcode is not a number".into()))?;
            if code != 0 {
                return Err(dingtalk_failure(code, &object));
            }
        }
        // Without an errcode this is no DingTalk error answer: a gateway's JSON error page
        // on a non-2xx status, or (on 2xx) a success in the newer API's style, which the
        // caller accepts only if the fields it needs are there.
        None if !is_success(status) => return Err(ApiFailure::Http(status)),
        None => {}
    }
    if !is_success(status) {
        // errcode 0 on an error status: DingTalk did not say what went wrong.
        return Err(ApiFailure::Http(status));
    }
    Ok(object)
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A non-zero errcode; for the gateway wrapper 88 the numeric `sub_code` is the real cause.
fn dingtalk_failure(code: i64, object: &Map<String, Value>) -> ApiFailure {
    let text = |name: &str| {
        object
            .get(name)
            .and_then(|value| match value {
                Value::String(text) => Some(text.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .filter(|text| !text.is_empty())
    };
    let errmsg = text("errmsg").unwrap_or_default();
    if code == GATEWAY_WRAPPER
        && let Some(sub_code) = object.get("sub_code").and_then(lenient_i64)
    {
        let sub_msg = text("sub_msg").unwrap_or(errmsg);
        return ApiFailure::DingTalk {
            code: sub_code,
            message: sub_msg,
        };
    }
    if code == GATEWAY_WRAPPER
        && object
            .get("sub_code")
            .and_then(Value::as_str)
            .is_some_and(|sub_code| sub_code.starts_with("QpsLimit"))
    {
        // The ISV form of the per-app per-API QPS throttle
        // (`QpsLimitForSuitekeyAndOrgAndApi`): back off like 90018.
        let sub_msg = text("sub_msg").unwrap_or(errmsg);
        return ApiFailure::DingTalk {
            code: ISV_QPS_THROTTLE,
            message: sub_msg,
        };
    }
    ApiFailure::DingTalk {
        code,
        message: errmsg,
    }
}

/// The per-IP throttle's JSON answer: `{"status":1111,"wait":5,"source":"x5","punish":"deny"}`.
fn is_punish_answer(object: &Map<String, Value>) -> bool {
    object.get("errcode").is_none()
        && (object.contains_key("punish")
            || object.get("status").and_then(lenient_i64) == Some(1111))
}

/// The per-IP throttle's HTML page. Alibaba's gateway (x5) names its punish page in the markup
/// (`punish`, `x5sec`, `_____tmd_____`); an ordinary error page (a 502) says none of these.
fn looks_like_punish_page(body: &[u8]) -> bool {
    const MARKERS: &[&[u8]] = &[b"punish", b"x5sec", b"_____tmd_____", b"x5secdata"];
    let lower: Vec<u8> = body
        .iter()
        .take(64 * 1024)
        .map(u8::to_ascii_lowercase)
        .collect();
    MARKERS
        .iter()
        .any(|marker| lower.windows(marker.len()).any(|window| window == *marker))
}

fn describe_unparseable(body: &[u8]) -> String {
    if body.is_empty() {
        return "empty answer".to_string();
    }
    // Redacted before it is cut (see `redact::excerpt`): enough of the body is read that a
    // credential near the cut is seen whole.
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTE_SOURCE_LIMIT)]);
    let quoted = excerpt(text.trim(), &[], QUOTE_LIMIT);
    format!(
        "not a JSON object ({} bytes): {}",
        body.len(),
        quoted.trim()
    )
}

/// The items of a list field: absent or null is empty, an array gives its items, a string
/// gives its comma-separated items.
fn list_items(value: Option<&Value>, name: &str) -> Result<Vec<String>, ApiFailure> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(|item| id_text(item).unwrap_or_else(|| item.to_string()))
            .collect()),
        Some(Value::String(text)) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()),
        Some(_) => Err(ApiFailure::Decode(format!("{name} is not a list"))),
    }
}

/// A user or department id, sent as a string or a number.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// An integer sent as a number (integral float accepted) or as a decimal string.
pub fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e18)
                .map(|float| float as i64)
        }),
        Value::String(text) => {
            let text = text.trim();
            text.parse::<i64>().ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e18)
                    .map(|float| float as i64)
            })
        }
        _ => None,
    }
}

/// A finite number sent as a number or as a decimal string.
pub fn lenient_f64(value: &Value) -> Option<f64> {
    let float = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .ok()?,
        _ => return None,
    };
    float.is_finite().then_some(float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dingtalk(code: i64) -> Result<(), i64> {
        Err(code)
    }

    fn code_of<T: std::fmt::Debug>(result: Result<T, ApiFailure>) -> Result<(), i64> {
        match result {
            Err(ApiFailure::DingTalk { code, .. }) => Err(code),
            other => panic!("expected a DingTalk error, got {other:?}"),
        }
    }

    /// The documented success answer decodes into progress and status.
    #[test]
    fn documented_progress_answer() {
        let body = br#"{"errcode":0,"errmsg":"ok","progress":{"progress_in_percent":100,"status":2},"request_id":"4jzllmte0wau"}"#;
        assert_eq!(
            decode_progress(200, body),
            Ok(SendProgress {
                percent: 100.0,
                status: 2
            })
        );
    }

    /// A string errcode, numbers as strings and no request_id are accepted.
    #[test]
    fn lenient_progress_answer() {
        let body = br#"{"errcode":"0","progress":{"progress_in_percent":"42.5","status":"1"}}"#;
        assert_eq!(
            decode_progress(200, body),
            Ok(SendProgress {
                percent: 42.5,
                status: 1
            })
        );
        let body = br#"{"errcode":0.0,"progress":{"progress_in_percent":7.0,"status":1.0}}"#;
        assert_eq!(decode_progress(200, body).map(|p| p.percent), Ok(7.0));
    }

    /// A percentage outside 0..=100 is clamped; a missing one follows the status.
    #[test]
    fn progress_is_clamped_and_defaulted() {
        let over = br#"{"errcode":0,"progress":{"progress_in_percent":140,"status":2}}"#;
        assert_eq!(decode_progress(200, over).map(|p| p.percent), Ok(100.0));
        let under = br#"{"errcode":0,"progress":{"progress_in_percent":-3,"status":1}}"#;
        assert_eq!(decode_progress(200, under).map(|p| p.percent), Ok(0.0));
        let missing = br#"{"errcode":0,"progress":{"status":2}}"#;
        assert_eq!(decode_progress(200, missing).map(|p| p.percent), Ok(100.0));
        let not_started = br#"{"errcode":0,"progress":{"status":0}}"#;
        assert_eq!(
            decode_progress(200, not_started).map(|p| p.percent),
            Ok(0.0)
        );
    }

    /// errcode 88 is classified by its numeric sub_code; a non-numeric one keeps 88.
    #[test]
    fn gateway_wrapper_uses_sub_code() {
        let body = br#"{"errcode":88,"sub_code":"40014","sub_msg":"invalid token","errmsg":"ding talk error[subcode=40014]"}"#;
        assert_eq!(code_of(decode_progress(200, body)), dingtalk(40014));
        let body = br#"{"errcode":"88","sub_code":"isv.unknown","sub_msg":"x"}"#;
        assert_eq!(code_of(decode_progress(200, body)), dingtalk(88));
        let body = br#"{"errcode":88,"sub_code":40000}"#;
        assert_eq!(code_of(decode_progress(200, body)), dingtalk(40000));
    }

    /// The ISV QPS throttle, a string sub_code of 88, is classified as a throttle.
    #[test]
    fn isv_qps_throttle_is_a_throttle() {
        let body =
            br#"{"errcode":88,"sub_code":"QpsLimitForSuitekeyAndOrgAndApi","sub_msg":"too fast"}"#;
        let failure = decode_progress(200, body).unwrap_err();
        assert!(failure.is_throttle(), "{failure:?}");
    }

    /// A plain errcode is reported with its errmsg.
    #[test]
    fn plain_errcode() {
        let body = br#"{"errcode":40035,"errmsg":"invalid parameter"}"#;
        assert_eq!(
            decode_progress(200, body),
            Err(ApiFailure::DingTalk {
                code: 40035,
                message: "invalid parameter".into()
            })
        );
    }

    /// The punish answer, JSON or HTML, means an IP ban; `wait` is in minutes.
    #[test]
    fn punish_answers_are_ip_bans() {
        let body = br#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"u"}"#;
        assert_eq!(
            decode_progress(200, body),
            Err(ApiFailure::IpBanned {
                retry_after_ms: 300_000
            })
        );
        let body = br#"{"punish":"deny"}"#;
        assert_eq!(
            decode_progress(403, body),
            Err(ApiFailure::IpBanned {
                retry_after_ms: DEFAULT_IP_BAN_MS
            })
        );
        let html = b"<html><body><script>location.href='/_____tmd_____/punish?x5secdata=1'</script></body></html>";
        assert!(matches!(
            decode_progress(200, html),
            Err(ApiFailure::IpBanned { .. })
        ));
    }

    /// An HTML error page is an HTTP failure, a DingTalk body on an error status is DingTalk's.
    #[test]
    fn http_errors() {
        let html = b"<html><head><title>502 Bad Gateway</title></head></html>";
        assert_eq!(decode_progress(502, html), Err(ApiFailure::Http(502)));
        assert_eq!(decode_progress(503, b""), Err(ApiFailure::Http(503)));
        assert_eq!(
            decode_progress(400, br#"{"code":"InvalidAuthentication"}"#),
            Err(ApiFailure::Http(400))
        );
        let body = br#"{"errcode":500,"errmsg":"system error"}"#;
        assert_eq!(code_of(decode_progress(500, body)), dingtalk(500));
    }

    /// Truncated or shapeless answers on 2xx are decode failures.
    #[test]
    fn decode_errors() {
        for body in [
            &br#"{"errcode":0,"progress":{"progress_in_perc"#[..],
            b"",
            b"null",
            br#"[1,2]"#,
            br#"{"errcode":0}"#,
            br#"{"errcode":0,"progress":{"progress_in_percent":"NaN","status":1}}"#,
            br#"{"errcode":"zero","progress":{}}"#,
        ] {
            assert!(
                matches!(decode_progress(200, body), Err(ApiFailure::Decode(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// gettoken answers give the token and its lifetime; credential errors are DingTalk errors.
    #[test]
    fn token_answers() {
        let body = br#"{"errcode":0,"access_token":"tok","expires_in":"7200"}"#;
        let token = decode_token(200, body).unwrap();
        assert_eq!(token.access_token.expose(), "tok");
        assert_eq!(token.expires_in_s, 7200);
        let body = br#"{"errcode":40096,"errmsg":"invalid appkey or appsecret"}"#;
        assert_eq!(code_of(decode_token(200, body)), dingtalk(40096));
        assert!(matches!(
            decode_token(200, br#"{"errcode":0,"access_token":""}"#),
            Err(ApiFailure::Decode(_))
        ));
    }

    /// getsendresult lists are counted; forbidden counts distinct users.
    #[test]
    fn result_counts() {
        let body = br#"{"errcode":0,"send_result":{
            "read_user_id_list":["a","b"],
            "unread_user_id_list":["c"],
            "failed_user_id_list":[],
            "forbidden_user_id_list":["d"],
            "forbidden_list":[{"code":"143105","count":3,"userid":"d"},{"code":"143106","count":1,"userid":"e"},{"code":"143106","count":1}],
            "invalid_user_id_list":["x"],
            "invalid_dept_id_list":[12,13]
        },"request_id":"r"}"#;
        assert_eq!(
            decode_result(200, body),
            Ok(RecipientCounts {
                read: 2,
                unread: 1,
                failed: 0,
                forbidden: 3,
                invalid: 3
            })
        );
        let sparse = br#"{"errcode":"0","send_result":{"read_user_id_list":"u1,u2","unread_user_id_list":null}}"#;
        assert_eq!(
            decode_result(200, sparse),
            Ok(RecipientCounts {
                read: 2,
                ..RecipientCounts::default()
            })
        );
        assert!(matches!(
            decode_result(
                200,
                br#"{"errcode":0,"send_result":{"read_user_id_list":5}}"#
            ),
            Err(ApiFailure::Decode(_))
        ));
    }

    fn json_number_or_string(value: i64) -> impl Strategy<Value = String> {
        prop_oneof![
            Just(value.to_string()),
            Just(format!("\"{value}\"")),
            Just(format!("{value}.0")),
        ]
    }

    proptest! {
        /// No byte string makes a decoder panic, whatever the HTTP status.
        #[test]
        fn arbitrary_bytes_never_panic(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_progress(status, &body);
            let _ = decode_result(status, &body);
            let _ = decode_token(status, &body);
        }

        /// JSON-shaped noise never panics either (deeper than random bytes reach).
        #[test]
        fn arbitrary_json_never_panics(status in 100u16..600, body in "\\{(\"(errcode|sub_code|progress|status|wait|punish|send_result|progress_in_percent|forbidden_list|userid)\":(-?[0-9]{1,20}(\\.[0-9]+)?|\"[0-9a-z]{0,6}\"|null|\\[\\]|\\{\\}|\\[\\{\"userid\":1\\}\\]),?){0,6}\\}") {
            let _ = decode_progress(status, body.as_bytes());
            let _ = decode_result(status, body.as_bytes());
            let _ = decode_token(status, body.as_bytes());
        }

        /// A valid progress answer, however its numbers are spelt, decodes to what was sent.
        #[test]
        fn progress_round_trips(
            percent in 0i64..=100,
            send_status in 0i64..=2,
            errcode in json_number_or_string(0),
            percent_text in prop_oneof![Just(0u8), Just(1), Just(2)],
            with_request_id in any::<bool>(),
        ) {
            let percent_json = match percent_text {
                0 => percent.to_string(),
                1 => format!("\"{percent}\""),
                _ => format!("{percent}.0"),
            };
            let request_id = if with_request_id { r#","request_id":"abc""# } else { "" };
            let body = format!(
                r#"{{"errcode":{errcode},"errmsg":"ok","progress":{{"progress_in_percent":{percent_json},"status":"{send_status}"}}{request_id}}}"#
            );
            prop_assert_eq!(
                decode_progress(200, body.as_bytes()),
                Ok(SendProgress { percent: percent as f64, status: send_status })
            );
        }

        /// A valid getsendresult answer decodes to the sizes of its lists.
        #[test]
        fn result_round_trips(read in 0usize..20, unread in 0usize..20, failed in 0usize..20, forbidden in 0usize..20, invalid_users in 0usize..20, invalid_depts in 0usize..20) {
            let ids = |prefix: &str, n: usize| {
                let items: Vec<String> = (0..n).map(|i| format!("\"{prefix}{i}\"")).collect();
                format!("[{}]", items.join(","))
            };
            let depts: Vec<String> = (0..invalid_depts).map(|i| i.to_string()).collect();
            let forbidden_entries: Vec<String> = (0..forbidden)
                .map(|i| format!(r#"{{"code":"143105","count":2,"userid":"f{i}"}}"#))
                .collect();
            let body = format!(
                r#"{{"errcode":0,"send_result":{{"read_user_id_list":{},"unread_user_id_list":{},"failed_user_id_list":{},"forbidden_list":[{}],"invalid_user_id_list":{},"invalid_dept_id_list":[{}]}}}}"#,
                ids("r", read), ids("u", unread), ids("x", failed), forbidden_entries.join(","), ids("i", invalid_users), depts.join(",")
            );
            prop_assert_eq!(
                decode_result(200, body.as_bytes()),
                Ok(RecipientCounts {
                    read: read as u64,
                    unread: unread as u64,
                    failed: failed as u64,
                    forbidden: forbidden as u64,
                    invalid: (invalid_users + invalid_depts) as u64,
                })
            );
        }

        /// Any non-zero errcode, as number or string, is reported as that DingTalk code.
        #[test]
        fn errcodes_round_trip(code in prop_oneof![-1i64..=-1, 1i64..=87, 89i64..=99_999]) {
            for spelt in [code.to_string(), format!("\"{code}\"")] {
                let body = format!(r#"{{"errcode":{spelt},"errmsg":"m"}}"#);
                prop_assert_eq!(code_of(decode_progress(200, body.as_bytes())), dingtalk(code));
            }
        }
    }
}
