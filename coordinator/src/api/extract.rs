//! Request extractors that answer with the API's JSON errors instead of axum's
//! plain-text rejections: [`Client`] (bearer authentication) and [`JsonBody`]
//! (content type, size limit, parsing with the culprit field named), plus the
//! validation of ids and messages shared by the handlers.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::auth::Authenticated;
use super::error::{ErrorCode, HttpError};
use super::middleware::RequestSpan;
use super::rate_limit::RateLimiter;
use super::ApiLimits;
use crate::service::{Caller, CoordinatorApi};

/// Longest bearer token passed to the service; longer ones are refused as
/// invalid without asking it.
const MAX_TOKEN_BYTES: usize = 1024;

/// After a body goes over the limit, how much more of it is read and dropped so
/// that the client sees the 413 answer instead of a reset connection.
const MAX_DRAIN_BYTES: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) svc: Arc<dyn CoordinatorApi>,
    pub(crate) limits: ApiLimits,
    /// Token buckets of merchant API keys.
    pub(crate) rate: Arc<RateLimiter>,
}

/// The authenticated API client: what the [`super::auth`] middleware found
/// for the request's bearer credential.
///
/// Extracting it records the client name in the request's tracing span. The
/// token itself is never logged.
#[derive(Debug, Clone)]
pub(crate) struct Client(pub(crate) Caller);

impl FromRequestParts<AppState> for Client {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, HttpError> {
        let caller = match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(outcome)) => outcome.clone()?,
            // The middleware stores an outcome whenever the header exists.
            None => {
                bearer_token(&parts.headers)?;
                return Err(HttpError::unauthorized(
                    "the bearer token is unknown, expired or revoked",
                ));
            }
        };
        let name = caller.client();
        match parts.extensions.get::<RequestSpan>() {
            Some(RequestSpan(span)) => span.record("client", name),
            None => tracing::Span::current().record("client", name),
        };
        Ok(Client(caller))
    }
}

impl Client {
    /// The caller, if it holds `scope` (operators hold every scope); a 403
    /// naming the missing scope otherwise.
    pub(crate) fn with_scope(self, scope: &str) -> Result<Caller, HttpError> {
        self.with_any_scope(&[scope])
    }

    /// The caller, if it holds one of `scopes`.
    pub(crate) fn with_any_scope(self, scopes: &[&str]) -> Result<Caller, HttpError> {
        match &self.0 {
            Caller::Operator(_) => Ok(self.0),
            Caller::Merchant(m) if scopes.iter().any(|s| m.key.scopes.iter().any(|k| k == s)) => {
                Ok(self.0)
            }
            Caller::Merchant(m) => Err(HttpError::forbidden(format!(
                "API key {} of merchant {} lacks the scope {}: issue a key with it",
                m.key.key_id,
                m.merchant.merchant_id,
                scopes.join(" or ")
            ))),
        }
    }

    /// The operator's client name; merchant keys get a 403.
    pub(crate) fn operator(self) -> Result<String, HttpError> {
        match self.0 {
            Caller::Operator(name) => Ok(name),
            Caller::Merchant(m) => Err(HttpError::forbidden(format!(
                "API key {} is a merchant key: this operation takes an operator or officer \
                 credential",
                m.key.key_id
            ))),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, HttpError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or_else(|| {
        HttpError::unauthorized(
            "missing Authorization header: send `Authorization: Bearer <token>`",
        )
    })?;
    if values.next().is_some() {
        return Err(HttpError::unauthorized(
            "more than one Authorization header: send exactly one",
        ));
    }
    let malformed =
        || HttpError::unauthorized("malformed Authorization header: expected `Bearer <token>`");
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(malformed());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(HttpError::unauthorized(
            "the bearer token is unknown, expired or revoked",
        ));
    }
    Ok(token)
}

/// A JSON request body, parsed into `T`.
///
/// Refuses (in this order) a body that is not `application/json` (415), one
/// larger than [`ApiLimits::max_body_bytes`] (413), and one that does not parse
/// (400, naming the field at fault when there is one).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, HttpError> {
        check_content_type(req.headers())?;
        let bytes = read_body(req, state.limits.max_body_bytes).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            "missing Content-Type: the body must be JSON, sent as `Content-Type: application/json`",
        ));
    };
    let mime = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        let shown: String = mime.chars().take(64).collect();
        Err(HttpError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type {shown:?} is not supported: send `Content-Type: application/json`"
            ),
        ))
    }
}

fn too_large(limit: usize) -> HttpError {
    HttpError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads the whole body, at most `limit` bytes.
pub(crate) async fn read_body(req: Request, limit: usize) -> Result<Vec<u8>, HttpError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > (limit.saturating_add(MAX_DRAIN_BYTES)) as u64 {
            return Err(too_large(limit));
        }
    }
    let mut stream = req.into_body().into_data_stream();
    let mut buf = Vec::with_capacity(declared.map_or(0, |l| l.min(limit as u64) as usize));
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "reading the request body failed");
            HttpError::bad_request("the request body could not be read")
        })?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            // Drop the rest (up to a bound) so the client reads our answer
            // rather than a connection reset.
            while let Some(Ok(chunk)) = stream.next().await {
                total = total.saturating_add(chunk.len());
                if total > limit.saturating_add(MAX_DRAIN_BYTES) {
                    break;
                }
            }
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Parses a JSON body into `T`, with a message that says what is wrong.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request(
            "the request body is empty: expected a JSON object",
        ));
    }
    // serde would also take a struct from a positional array: only objects.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(HttpError::bad_request(
            "invalid request: the body must be a JSON object",
        ));
    }
    let err = match serde_json::from_slice::<T>(bytes) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // Syntax first: serde may stop at a type error before a later syntax error,
    // and serde_json reports some type errors (a number for an enum) as syntax.
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(HttpError::bad_request(format!("malformed JSON: {syntax}")));
    }
    // A well-formed document of the wrong shape: name the field at fault,
    // with its path inside nested objects (`transfer.amount`).
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path.is_empty() || path == "." {
                Err(HttpError::bad_request(format!("invalid request: {inner}")))
            } else {
                let path: String = path.chars().take(64).collect();
                Err(HttpError::bad_request(format!(
                    "invalid request: field `{path}`: {inner}"
                )))
            }
        }
        Ok(_) => Err(HttpError::bad_request(format!("invalid request: {err}"))),
    }
}

/// Checks a caller-chosen request id (canonical form: see
/// `crate::requests::intake`).
pub(crate) fn check_request_id(id: &str) -> Result<(), HttpError> {
    crate::requests::intake::check_client_id("request_id", id).map_err(HttpError::from)
}

/// Checks the id of a request to look up or act on (a client's, or a
/// payout replacement's).
pub(crate) fn check_request_ref(id: &str) -> Result<(), HttpError> {
    crate::requests::intake::check_request_ref("request_id", id).map_err(HttpError::from)
}

/// Checks a key id: 32 lowercase hex digits.
pub(crate) fn check_key_id(id: &str) -> Result<(), HttpError> {
    crate::requests::intake::check_key_id(id).map_err(HttpError::from)
}

/// Checks a message to sign: hex, at most [`keyfold_proto::MAX_MESSAGE_BYTES`]
/// bytes once decoded. Returns its length in bytes.
pub(crate) fn check_message(hex_message: &str) -> Result<usize, HttpError> {
    let max = keyfold_proto::MAX_MESSAGE_BYTES;
    if hex_message.len() / 2 > max {
        return Err(HttpError::bad_request(format!(
            "message is {} bytes; the limit is {max} bytes",
            hex_message.len() / 2
        )));
    }
    match hex::decode(hex_message) {
        Ok(bytes) => Ok(bytes.len()),
        Err(e) => Err(HttpError::bad_request(format!(
            "message must be hex (two digits per byte): {e}"
        ))),
    }
}
