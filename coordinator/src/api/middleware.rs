//! Middleware around every route, outermost first:
//!
//! 1. [`trace`]: gives the request an id (returned as `x-request-id`), runs it
//!    in a tracing span and logs method, path, status, client and latency;
//! 2. [`json_errors`]: turns any error answer that is not already JSON (axum's
//!    405, for one) into the API's JSON error format;
//! 3. [`catch_panic`]: turns a panicking handler into a 500 JSON answer instead
//!    of a dropped connection;
//! 4. [`timeout`]: answers 504 when a request runs past the configured limit.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use super::error::{ErrorCode, HttpError};

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest path written to the log, in characters.
const MAX_LOGGED_PATH: usize = 256;

/// A fresh random request id: 24 hex digits.
fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Shortens what gets logged or echoed from the request path.
pub(crate) fn shown_path(path: &str) -> String {
    if path.chars().count() <= MAX_LOGGED_PATH {
        path.to_owned()
    } else {
        let mut s: String = path.chars().take(MAX_LOGGED_PATH).collect();
        s.push_str("...");
        s
    }
}

/// The request's tracing span, in the request extensions, so extractors can
/// record fields on it (the client name) wherever they run.
#[derive(Clone)]
pub(crate) struct RequestSpan(pub(crate) tracing::Span);

/// Request id, span and access log.
pub(crate) async fn trace(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    let method = req.method().clone();
    let path = shown_path(req.uri().path());
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %method,
        path = %path,
        client = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestSpan(span.clone()));
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| {
        if resp.status().is_server_error() {
            tracing::warn!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    resp
}

/// Rewrites non-JSON error answers (from axum itself) into JSON errors.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = shown_path(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let err = match status.as_u16() {
        404 => HttpError::new(
            ErrorCode::NotFound,
            format!("no such endpoint: {method} {path}"),
        ),
        405 => HttpError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "method {method} is not allowed on {path}; the Allow header lists those that are"
            ),
        ),
        413 => HttpError::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
        415 => HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as `Content-Type: application/json`",
        ),
        401 => HttpError::unauthorized("missing or invalid bearer token"),
        408 | 504 => HttpError::new(ErrorCode::Timeout, "the request timed out"),
        400..=499 => HttpError::bad_request(format!(
            "the request was refused ({})",
            status.canonical_reason().unwrap_or("client error")
        )),
        _ => HttpError::internal(),
    };
    let mut new = err.into_response();
    if let Some(allow) = allow {
        new.headers_mut().insert(header::ALLOW, allow);
    }
    new
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Turns a handler panic into a 500 JSON answer; the panic text goes to the
/// log only.
pub(crate) async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-text panic payload)".to_owned());
            tracing::error!(panic = %what, "handler panicked");
            HttpError::internal().into_response()
        }
    }
}

/// Answers 504 `timeout` when the request runs past `limit`. The handler's
/// future is dropped at that point.
pub(crate) async fn timeout(
    State(limits): State<super::ApiLimits>,
    req: Request,
    next: Next,
) -> Response {
    let is_sign = req.method() == Method::POST && req.uri().path() == "/v1/signatures";
    let is_keygen = req.method() == Method::POST && req.uri().path() == "/v1/keys";
    let limit = if is_keygen {
        limits.keygen_timeout
    } else {
        limits.request_timeout
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            let retry = if is_sign {
                "; the signature may still complete: fetch or retry it with the same request_id, which is never signed twice"
            } else {
                ""
            };
            HttpError::new(
                ErrorCode::Timeout,
                format!(
                    "the request did not finish within {} s{retry}",
                    limit.as_secs_f64()
                ),
            )
            .into_response()
        }
    }
}
