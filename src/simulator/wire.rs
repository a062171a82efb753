//! The HTTP pieces the simulator's server and its control API share: responses, reading a
//! bounded body, and closing a connection without an answer.

use std::fmt;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// Returned by the request handler to make hyper close the connection without answering.
#[derive(Debug)]
pub(crate) struct CloseConnection(pub(crate) &'static str);

impl fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CloseConnection {}

/// The request body, or `None` when it is over `max_bytes`. A body that breaks off midway
/// closes the connection.
pub(crate) async fn read_body(
    request: Request<Incoming>,
    max_bytes: usize,
) -> Result<Option<Bytes>, CloseConnection> {
    match Limited::new(request.into_body(), max_bytes).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Ok(None),
        Err(_) => Err(CloseConnection("request body broke off")),
    }
}

/// A JSON answer with status 200, as DingTalk sends them.
pub(crate) fn json_response(body: Vec<u8>) -> HttpResponse {
    respond(StatusCode::OK, "application/json;charset=utf-8", body)
}

/// An answer with `status`, `content_type` and `body`.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
