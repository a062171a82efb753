//! Building answers and reading request bodies within their limits.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// A response body made of pieces already in memory, sent one after the other with an exact
/// `Content-Length`: `/metrics` hands over its family texts without joining them first.
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Chunks {
        let chunks: VecDeque<Bytes> = chunks
            .into_iter()
            .filter(|chunk| !chunk.is_empty())
            .collect();
        let remaining = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        Chunks { chunks, remaining }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.chunks.pop_front();
        if let Some(chunk) = &next {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(next.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

pub type Answer = Response<Chunks>;

/// An answer with a body of one content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    chunked(status, content_type, [body.into()])
}

pub fn chunked(
    status: StatusCode,
    content_type: &'static str,
    chunks: impl IntoIterator<Item = Bytes>,
) -> Answer {
    let mut response = Response::new(Chunks::new(chunks));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    with_body(status, TEXT, body.into())
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, JSON, body),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be encoded as JSON: {err}"),
        ),
    }
}

/// The API's error answer: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    #[derive(serde::Serialize)]
    struct ErrorJson {
        error: String,
    }
    let body = serde_json::to_vec(&ErrorJson {
        error: message.into(),
    })
    .unwrap_or_else(|_| br#"{"error":"unknown error"}"#.to_vec());
    with_body(status, JSON, body)
}

pub fn empty(status: StatusCode) -> Answer {
    let mut response = Response::new(Chunks::new([]));
    *response.status_mut() = status;
    response
}

/// 405 with the methods the path does take.
pub fn method_not_allowed(allow: &'static str, as_json: bool) -> Answer {
    let message = format!("this endpoint takes {allow}");
    let mut response = if as_json {
        error(StatusCode::METHOD_NOT_ALLOWED, message)
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, message + "\n")
    };
    response
        .headers_mut()
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (by its `Content-Length` or by what arrived).
    TooLarge { limit: usize },
    /// The client did not finish sending it in time.
    TimedOut,
    /// The connection broke while reading it.
    Broken(hyper::Error),
}

impl BodyError {
    pub fn into_answer(self) -> Answer {
        match self {
            BodyError::TooLarge { limit } => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body is larger than {limit} bytes; split the tasks into smaller batches"
                ),
            ),
            BodyError::TimedOut => error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ),
            BodyError::Broken(err) => error(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {err}"),
            ),
        }
    }
}

/// Reads a whole body of at most `limit` bytes within `timeout`.
pub async fn read_body(
    headers: &HeaderMap,
    body: &mut Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let read = async {
        let mut collected = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Broken)?;
            if let Ok(data) = frame.into_data() {
                if collected.len() + data.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(collected))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

/// Reads and drops what is left of a body, up to `budget` bytes within `timeout`.
///
/// A server that answers early (413, 401) and closes with unread data makes the kernel reset
/// the connection, and the client may then lose the answer. Draining a bounded amount lets
/// ordinary clients read why they were refused; past the budget the connection is dropped.
pub async fn drain_body(body: &mut Incoming, budget: usize, timeout: Duration) {
    let drain = async {
        let mut drained = 0usize;
        while !body.is_end_stream() && drained <= budget {
            match body.frame().await {
                Some(Ok(frame)) => {
                    drained += frame.data_ref().map_or(0, Bytes::len);
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}
