//! Which DingTalk API a request is for, and DingTalk's error answers: shared by the
//! endpoints and the simulator's state, which decides on quotas and tokens.

use serde_json::{Value, json};

const API_PREFIX: &str = "/topapi/message/corpconversation/";

/// The DingTalk APIs the simulator answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    GetToken,
    GetSendProgress,
    GetSendResult,
    AsyncSend,
    /// `POST /v1.0/oauth2/{corpId}/token`: the unified token API.
    UnifiedToken,
    /// `POST /v1.0/oauth2/corpAccessToken`: a corp's token with the suite ticket.
    CorpAccessToken,
    /// `POST /service/get_corp_token`: a corp's token, signed.
    GetCorpToken,
    SendByTemplate,
    Unknown,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Endpoint {
        match path {
            "/gettoken" => return Endpoint::GetToken,
            "/service/get_corp_token" => return Endpoint::GetCorpToken,
            "/v1.0/oauth2/corpAccessToken" => return Endpoint::CorpAccessToken,
            _ => {}
        }
        if unified_token_corp(path).is_some() {
            return Endpoint::UnifiedToken;
        }
        match path.strip_prefix(API_PREFIX) {
            Some("getsendprogress") => Endpoint::GetSendProgress,
            Some("getsendresult") => Endpoint::GetSendResult,
            Some("asyncsend_v2") => Endpoint::AsyncSend,
            Some("sendbytemplate") => Endpoint::SendByTemplate,
            _ => Endpoint::Unknown,
        }
    }

    /// The API's name, as in its path.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::GetToken => "gettoken",
            Endpoint::GetSendProgress => "getsendprogress",
            Endpoint::GetSendResult => "getsendresult",
            Endpoint::AsyncSend => "asyncsend_v2",
            Endpoint::SendByTemplate => "sendbytemplate",
            Endpoint::UnifiedToken => "oauth2/token",
            Endpoint::CorpAccessToken => "corpAccessToken",
            Endpoint::GetCorpToken => "get_corp_token",
            Endpoint::Unknown => "unknown",
        }
    }

    /// Whether errors come the newer host's way: an HTTP status and a string `code`.
    pub fn is_openapi(self) -> bool {
        matches!(self, Endpoint::UnifiedToken | Endpoint::CorpAccessToken)
    }

    /// Whether calls count toward the monthly quota (token calls are exempt).
    pub fn is_metered(self) -> bool {
        matches!(
            self,
            Endpoint::GetSendProgress
                | Endpoint::GetSendResult
                | Endpoint::AsyncSend
                | Endpoint::SendByTemplate
        )
    }
}

/// The `corpId` of a unified token path, `/v1.0/oauth2/{corpId}/token`.
pub(crate) fn unified_token_corp(path: &str) -> Option<&str> {
    let corp = path.strip_prefix("/v1.0/oauth2/")?.strip_suffix("/token")?;
    (!corp.is_empty() && !corp.contains('/') && corp != "corpAccessToken").then_some(corp)
}

/// An error answer of the newer API host: an HTTP status, a string `code` and a message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OpenApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

impl OpenApiError {
    pub fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message, "requestid": "sim" })
    }
}

/// A DingTalk error answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub errcode: i64,
    pub errmsg: String,
    /// For errcode 88: the real cause and its message.
    pub sub: Option<(String, String)>,
}

impl ApiError {
    fn new(errcode: i64, errmsg: &str) -> Self {
        ApiError {
            errcode,
            errmsg: errmsg.to_string(),
            sub: None,
        }
    }

    /// The topapi gateway's wrapper: errcode 88 carrying the real code as `sub_code`.
    fn wrapped(sub_code: &str, sub_msg: &str) -> Self {
        ApiError {
            errcode: 88,
            errmsg: format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
            sub: Some((sub_code.to_string(), sub_msg.to_string())),
        }
    }

    pub fn unknown_path() -> Self {
        ApiError::new(22, "不存在的API路径 (no such API)")
    }

    pub fn bad_credentials() -> Self {
        ApiError::new(
            40096,
            "不合法的appKey或appSecret (invalid appKey or appSecret)",
        )
    }

    pub fn blank_token() -> Self {
        ApiError::wrapped("40000", "access_token为空 (access_token is blank)")
    }

    pub fn token_expired() -> Self {
        ApiError::new(42001, "access_token超时 (access_token expired)")
    }

    pub fn token_invalid() -> Self {
        ApiError::new(40014, "不合法的access_token (invalid access_token)")
    }

    pub fn token_invalid_wrapped() -> Self {
        ApiError::wrapped("40014", "不合法的access_token (invalid access_token)")
    }

    pub fn invalid_parameter(detail: &str) -> Self {
        ApiError::new(
            40035,
            &format!("不合法的参数 (invalid parameter): {detail}"),
        )
    }

    pub fn qps_limited() -> Self {
        ApiError::new(
            90018,
            "当前应用调用该接口超过每秒限制 (this app exceeded the API's calls per second)",
        )
    }

    pub fn quota_exhausted() -> Self {
        ApiError::new(
            90020,
            "企业本月API调用量已超过配额 (the organisation's monthly API quota is used up)",
        )
    }

    /// An oapi error with any code (the signed corp-token endpoint's).
    pub fn code(errcode: i64, errmsg: &str) -> Self {
        ApiError::new(errcode, errmsg)
    }

    pub fn busy() -> Self {
        ApiError::new(-1, "系统繁忙 (system busy)")
    }

    /// The answer's JSON, without `request_id`.
    pub fn to_json(&self) -> Value {
        let mut body = json!({ "errcode": self.errcode, "errmsg": self.errmsg });
        if let Some((sub_code, sub_msg)) = &self.sub {
            body["sub_code"] = json!(sub_code);
            body["sub_msg"] = json!(sub_msg);
        }
        body
    }
}
