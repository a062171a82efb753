//! DingTalk's server API as the exporter uses it: access tokens, `getsendprogress` and
//! `getsendresult`, with rate limiting, retries and the classification of every answer.
//!
//! The tracker talks to DingTalk only through [`DeliveryApi`], so the scheduler and the HTTP
//! layer can be tested with a fake, and one client per configured app can sit behind it.

pub mod answer;
pub mod client;
pub mod corp_token;
pub mod limiter;
pub mod message;
pub mod redact;
pub mod token;

use std::fmt;
use std::time::Duration;

pub use client::DingTalkClient;

/// The DingTalk APIs the exporter calls, as they appear in the `api` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    GetToken,
    GetSendProgress,
    GetSendResult,
}

impl Api {
    pub const ALL: [Api; 3] = [Api::GetToken, Api::GetSendProgress, Api::GetSendResult];

    /// The `api` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::GetToken => "gettoken",
            Api::GetSendProgress => "getsendprogress",
            Api::GetSendResult => "getsendresult",
        }
    }

    /// Whether DingTalk counts calls of this API against the monthly quota (token APIs are
    /// exempt; the work-notification APIs are not).
    pub fn is_metered(self) -> bool {
        !matches!(self, Api::GetToken)
    }
}

/// What `getsendprogress` says about a task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SendProgress {
    /// `progress_in_percent`, 0..=100 (clamped when DingTalk says otherwise).
    pub percent: f64,
    /// `status`: 0 not started, 1 in progress, 2 finished. Other values are kept as sent.
    pub status: i64,
}

/// How many recipients `getsendresult` puts in each list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientCounts {
    pub read: u64,
    pub unread: u64,
    pub failed: u64,
    /// Dropped by flow control: the distinct users of `forbidden_user_id_list` and of the
    /// entries of `forbidden_list` (recipients, not refused messages).
    pub forbidden: u64,
    /// `invalid_user_id_list` plus `invalid_dept_id_list`.
    pub invalid: u64,
}

impl RecipientCounts {
    /// The counts as five columns (read, unread, failed, forbidden, invalid) read back from a
    /// store: all absent before `getsendresult` answered, all present after. `Err` when only
    /// some are, which no release writes.
    pub fn from_columns(columns: [Option<u64>; 5]) -> Result<Option<RecipientCounts>, String> {
        match columns {
            [None, None, None, None, None] => Ok(None),
            [
                Some(read),
                Some(unread),
                Some(failed),
                Some(forbidden),
                Some(invalid),
            ] => Ok(Some(RecipientCounts {
                read,
                unread,
                failed,
                forbidden,
                invalid,
            })),
            _ => Err("recipient counts are partly NULL".to_string()),
        }
    }
}

/// DingTalk error codes that get their own `errcode` label value; any other code is counted
/// as `other`, so the label stays a bounded set whatever DingTalk answers.
pub const KNOWN_ERRCODES: &[i64] = &[
    -1, 22, 88, 500, 40000, 40001, 40014, 40035, 40080, 40083, 40085, 40088, 40089, 40096, 41023,
    42001, 45009, 48004, 60011, 60020, 90002, 90003, 90004, 90005, 90006, 90007, 90008, 90009,
    90010, 90011, 90012, 90013, 90014, 90018, 90020, 853001, 853002, 853003, 853004,
];

/// How long to wait after a throttle answer: DingTalk's QPS throttles last about a second.
pub const THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// DingTalk's throttle codes (global, per org, per credential, per app and API): the caller
/// must pause, at least a second, before asking again.
pub fn is_throttle_code(code: i64) -> bool {
    matches!(code, 45009 | 90002..=90014 | 90018)
}

/// System busy (-1) or system error (500): worth another try after a backoff.
pub fn is_transient_code(code: i64) -> bool {
    matches!(code, -1 | 500)
}

/// Why a call produced no usable answer.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiFailure {
    /// DingTalk answered with a non-zero errcode. For errcode 88 `code` is the `sub_code`
    /// (when it is a number), since 88 only wraps the real cause.
    DingTalk { code: i64, message: String },
    /// The request never got an HTTP answer: connect error, timeout, reset. The text has any
    /// access token redacted.
    Transport(String),
    /// A non-2xx HTTP answer without a DingTalk error body (a gateway's HTML 502, say).
    Http(u16),
    /// DingTalk's newer API host (`api.dingtalk.com`) refused: an HTTP status with a string
    /// `code` (`invalid.client`, `invalidSuiteTicket`, ...) and a message.
    OpenApi {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer that could not be understood (truncated or malformed JSON, oversized).
    Decode(String),
    /// DingTalk's per-IP throttle answered with its punish page: the host is banned for a while.
    IpBanned { retry_after_ms: i64 },
    /// The call was not sent at all: the monthly budget, the exhausted upstream quota or an IP
    /// ban says to wait until `until_ms`. Nothing was spent.
    Deferred { until_ms: i64, reason: Deferral },
    /// The app's access token could not be fetched (`gettoken` failed as the inner failure
    /// says), so the task call itself was never sent.
    NoToken(Box<ApiFailure>),
}

/// Why a call was held back without being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferral {
    /// `--dingtalk.monthly-call-budget` is spent for this month (or paced to wait).
    MonthlyBudget,
    /// DingTalk answered 90020: the organisation's monthly quota is used up.
    QuotaExhausted,
    /// DingTalk's per-IP throttle banned this host.
    IpBan,
}

impl ApiFailure {
    /// The `errcode` label of `dingtalk_api_errors_total`: a known DingTalk code, `other`, or
    /// `transport`, `http`, `decode`, `ip_banned`. `None` for deferred calls, which were
    /// never made and so are not errors of the API.
    pub fn errcode_label(&self) -> Option<String> {
        match self {
            ApiFailure::DingTalk { code, .. } if KNOWN_ERRCODES.contains(code) => {
                Some(code.to_string())
            }
            ApiFailure::DingTalk { .. } => Some("other".to_string()),
            ApiFailure::OpenApi { code, .. }
                if corp_token::KNOWN_OPENAPI_CODES.contains(&code.as_str()) =>
            {
                Some(code.clone())
            }
            ApiFailure::OpenApi { .. } => Some("other".to_string()),
            ApiFailure::Transport(_) => Some("transport".to_string()),
            ApiFailure::Http(_) => Some("http".to_string()),
            ApiFailure::Decode(_) => Some("decode".to_string()),
            ApiFailure::IpBanned { .. } => Some("ip_banned".to_string()),
            ApiFailure::Deferred { .. } => None,
            ApiFailure::NoToken(cause) => cause.errcode_label(),
        }
    }

    /// The API whose failure this is: `gettoken` when the token could not be had, else the
    /// API that was called.
    pub fn failed_api(&self, called: Api) -> Api {
        match self {
            ApiFailure::NoToken(_) => Api::GetToken,
            _ => called,
        }
    }

    /// Whether DingTalk itself answered the task call (with an answer or an errcode), which
    /// is when the call counts against the monthly quota.
    pub fn dingtalk_answered(&self) -> bool {
        matches!(self, ApiFailure::DingTalk { .. })
    }

    /// Whether DingTalk asked the caller to slow down (a throttle code).
    pub fn is_throttle(&self) -> bool {
        match self {
            ApiFailure::DingTalk { code, .. } => is_throttle_code(*code),
            ApiFailure::NoToken(cause) => cause.is_throttle(),
            _ => false,
        }
    }

    /// The DingTalk errcode to show as a task's `last_errcode`, when DingTalk answered.
    pub fn dingtalk_code(&self) -> Option<i64> {
        match self {
            ApiFailure::DingTalk { code, .. } => Some(*code),
            ApiFailure::NoToken(cause) => cause.dingtalk_code(),
            _ => None,
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiFailure::DingTalk { code, message } => {
                write!(f, "DingTalk answered errcode {code}: {message}")
            }
            ApiFailure::Transport(text) => write!(f, "request failed: {text}"),
            ApiFailure::Http(status) => write!(f, "HTTP status {status} without a DingTalk answer"),
            ApiFailure::OpenApi {
                status,
                code,
                message,
            } => write!(f, "DingTalk answered HTTP {status}, code {code}: {message}"),
            ApiFailure::Decode(text) => write!(f, "answer not understood: {text}"),
            ApiFailure::IpBanned { retry_after_ms } => write!(
                f,
                "DingTalk's per-IP throttle banned this host for {}s",
                retry_after_ms / 1000
            ),
            ApiFailure::Deferred { reason, .. } => match reason {
                Deferral::MonthlyBudget => f.write_str("held back by the monthly call budget"),
                Deferral::QuotaExhausted => {
                    f.write_str("held back: DingTalk's monthly API quota is used up (90020)")
                }
                Deferral::IpBan => f.write_str("held back: DingTalk's per-IP throttle ban"),
            },
            ApiFailure::NoToken(cause) => write!(f, "no access token (gettoken failed): {cause}"),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// What `getsendresult` says about a finished task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// The recipients in each list.
    Recipients(RecipientCounts),
    /// DingTalk answers `getsendresult` only for tasks of at most 100 recipients and refused
    /// this one (errcode 40035 for a task `getsendprogress` knows): an expected refusal, not
    /// a fault of the API.
    TooManyRecipients,
}

/// The seam between the tracker and DingTalk: one implementation per configured app.
#[async_trait::async_trait]
pub trait DeliveryApi: Send + Sync {
    /// `getsendprogress` for one task (a metered call).
    async fn send_progress(&self, agent_id: i64, task_id: i64) -> Result<SendProgress, ApiFailure>;

    /// `getsendresult` for one task (a metered call).
    async fn send_result(&self, agent_id: i64, task_id: i64) -> Result<SendResult, ApiFailure>;

    /// Asks DingTalk for an access token (not metered) unless the app made a call in the
    /// last `idle_for`, so `dingtalk_up` tells whether the credentials work and DingTalk is
    /// reachable even while no task is due.
    async fn check_credentials(&self, idle_for: Duration) -> Result<(), ApiFailure>;
}

/// Decides whether a metered call may be sent now. Shared by every app's client, because
/// the monthly quota belongs to the organisation, not to one app.
pub trait CallGate: Send + Sync {
    /// Reserves one metered call at `now_ms`, counting it durably before it is sent so that a
    /// crash can never lead to overspending; or says until when to wait.
    fn reserve(&self, now_ms: i64) -> Result<(), ApiFailure>;

    /// DingTalk answered 90020: stop metered calls until the quota month ends.
    fn quota_exhausted(&self, now_ms: i64);
}
