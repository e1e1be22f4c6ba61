//! The API's error answers: one [`ErrorCode`] per failure class, each with one
//! HTTP status, always sent as `{"error": {"code": ..., "message": ...}}`
//! ([`keyfold_proto::api::ApiError`]).
//!
//! [`ServiceError`] maps onto these codes in one place (`From<ServiceError>`),
//! so the table in `docs/api.md` and the server cannot drift apart silently:
//! the tests in `coordinator/tests/api.rs` check every row.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyfold_proto::api::{ApiError, ErrorBody};

use crate::service::ServiceError;

/// Every error code the API answers with (the `error.code` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 401: the bearer token is missing, malformed, unknown or revoked.
    Unauthorized,
    /// 400: malformed JSON, an unknown field, a wrong type, an invalid value.
    BadRequest,
    /// 413: the body is larger than [`super::ApiLimits::max_body_bytes`].
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 404: unknown key, request or route.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: a request id reused with another payload.
    Conflict,
    /// 409: the same request id is being signed right now.
    InProgress,
    /// 403: the policy (at the coordinator or at the signers) refuses the request.
    PolicyDenied,
    /// 503: not enough live signers.
    QuorumUnavailable,
    /// 502: every signing attempt failed.
    SigningFailed,
    /// 504: the request took longer than [`super::ApiLimits::request_timeout`].
    Timeout,
    /// 500: a bug or a storage failure on the coordinator.
    Internal,
    /// 503: the audit log cannot be written durably; nothing was done.
    AuditUnavailable,
    /// 503: a chain's RPC does not answer (a payout could not be quoted);
    /// nothing was done.
    ChainUnavailable,
    /// 403: the credential may not do this (a merchant key without the
    /// scope, or an operator-only operation).
    Forbidden,
    /// 429: the API key's rate limit is spent; `Retry-After` says when to
    /// try again.
    RateLimited,
    /// 401: the merchant requires signed write requests and this one is not
    /// signed.
    SignatureRequired,
    /// 401: the request-signature headers are malformed.
    SignatureMalformed,
    /// 401: the request signature does not verify.
    SignatureInvalid,
    /// 401: the signed request's timestamp is outside the 5-minute window.
    RequestStale,
    /// 401: the signed request's nonce was used before (a replay).
    NonceReused,
    /// 403: the customer's proof for a payout (device signature, one-time
    /// code, payment password) was refused; `error.reason` says which
    /// check.
    PaymentAuthRefused,
    /// 403: a merchant's sandbox key (`kfm_test_...`) on a live chain.
    SandboxChainOnly,
    /// 403: a merchant's live key on a sandbox chain.
    LiveChainOnly,
}

impl ErrorCode {
    /// Every code, in the order of `docs/api.md`.
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::InProgress,
        ErrorCode::PolicyDenied,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Internal,
        ErrorCode::SigningFailed,
        ErrorCode::QuorumUnavailable,
        ErrorCode::Timeout,
        ErrorCode::AuditUnavailable,
        ErrorCode::ChainUnavailable,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::SignatureRequired,
        ErrorCode::SignatureMalformed,
        ErrorCode::SignatureInvalid,
        ErrorCode::RequestStale,
        ErrorCode::NonceReused,
        ErrorCode::PaymentAuthRefused,
        ErrorCode::SandboxChainOnly,
        ErrorCode::LiveChainOnly,
    ];

    /// The stable machine-readable name sent as `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InProgress => "in_progress",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::QuorumUnavailable => "quorum_unavailable",
            ErrorCode::SigningFailed => "signing_failed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::ChainUnavailable => "chain_unavailable",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SignatureRequired => "signature_required",
            ErrorCode::SignatureMalformed => "signature_malformed",
            ErrorCode::SignatureInvalid => "signature_invalid",
            ErrorCode::RequestStale => "request_stale",
            ErrorCode::NonceReused => "nonce_reused",
            ErrorCode::PaymentAuthRefused => "payment_auth_refused",
            ErrorCode::SandboxChainOnly => "sandbox_chain_only",
            ErrorCode::LiveChainOnly => "live_chain_only",
        }
    }

    /// The HTTP status this code is always sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized
            | ErrorCode::SignatureRequired
            | ErrorCode::SignatureMalformed
            | ErrorCode::SignatureInvalid
            | ErrorCode::RequestStale
            | ErrorCode::NonceReused => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden
            | ErrorCode::PaymentAuthRefused
            | ErrorCode::SandboxChainOnly
            | ErrorCode::LiveChainOnly => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::InProgress => StatusCode::CONFLICT,
            ErrorCode::PolicyDenied => StatusCode::FORBIDDEN,
            ErrorCode::QuorumUnavailable
            | ErrorCode::AuditUnavailable
            | ErrorCode::ChainUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SigningFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds after which a retry may succeed, sent as `Retry-After`.
    fn retry_after(self) -> Option<&'static str> {
        match self {
            ErrorCode::InProgress => Some("1"),
            ErrorCode::QuorumUnavailable | ErrorCode::ChainUnavailable => Some("5"),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a code and a message meant for the caller.
///
/// The message never carries internal details (panics, storage errors): those
/// go to the coordinator's log, and the caller gets a generic text plus the
/// `x-request-id` header to quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    code: ErrorCode,
    message: String,
    /// Seconds for `Retry-After`, when the code's default does not fit.
    retry_after: Option<u64>,
    /// `error.reason`, when the code has finer reasons.
    reason: Option<String>,
}

impl HttpError {
    /// An error with `code` and a message for the caller.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            reason: None,
        }
    }

    /// The same error with a finer reason (`error.reason`).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The finer reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// A 429 answer that says when the key's bucket has a token again.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: format!(
                "this API key's rate limit is spent: retry in {retry_after_secs} s \
                 (the operator sets the limit per merchant)"
            ),
            retry_after: Some(retry_after_secs.max(1)),
            reason: None,
        }
    }

    /// A 403 for a credential that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// A 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// A 500 `internal` with the generic message (details belong in the log).
    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error on the coordinator; the operator can find the details \
             in its log under this answer's x-request-id",
        )
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body, as [`ApiError`].
    pub fn to_api_error(&self) -> ApiError {
        ApiError {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
                reason: self.reason.clone(),
            },
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<ServiceError> for HttpError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::BadRequest(m) => Self::new(ErrorCode::BadRequest, m),
            ServiceError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            ServiceError::Forbidden(m) => Self::new(ErrorCode::Forbidden, m),
            ServiceError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            ServiceError::InProgress(m) => Self::new(ErrorCode::InProgress, m),
            ServiceError::PolicyDenied(m) => Self::new(ErrorCode::PolicyDenied, m),
            ServiceError::QuorumUnavailable(m) => Self::new(ErrorCode::QuorumUnavailable, m),
            ServiceError::SigningFailed(m) => Self::new(ErrorCode::SigningFailed, m),
            ServiceError::AuditUnavailable(m) => Self::new(ErrorCode::AuditUnavailable, m),
            ServiceError::ChainUnavailable(m) => Self::new(ErrorCode::ChainUnavailable, m),
            ServiceError::AuthRefused { reason, message } => {
                Self::new(ErrorCode::PaymentAuthRefused, message).with_reason(reason)
            }
            ServiceError::ChainEnvironment {
                sandbox_key,
                message,
            } => Self::new(
                if sandbox_key {
                    ErrorCode::SandboxChainOnly
                } else {
                    ErrorCode::LiveChainOnly
                },
                message,
            ),
            ServiceError::Internal(detail) => {
                // The detail may name files, SQL or peers: log it, do not send it.
                tracing::error!(error = %detail, "internal error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut resp = (status, Json(self.to_api_error())).into_response();
        let headers = resp.headers_mut();
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if let Some(secs) = self.code.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
        }
        resp
    }
}
