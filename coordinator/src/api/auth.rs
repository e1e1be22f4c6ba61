//! Authentication of API calls, as middleware on every route.
//!
//! The bearer credential is an operator token (`kf_...`, every object) or a
//! merchant API key (`kfm_...`, its merchant's objects only, within its
//! scopes; a sandbox key `kfm_test_...` is its merchant's sandbox twin's,
//! see `crate::sandbox`). For a merchant key the middleware also:
//! - spends a token of the key's bucket (the merchant's rate limit), or
//!   answers `429` with `Retry-After`;
//! - on a write (`POST`) of a merchant that requires signed requests, reads
//!   the body (bounded), verifies the signature over method, path,
//!   timestamp, nonce and body hash, refuses a timestamp outside the 5-minute
//!   window and a nonce used before (recorded in the store, so a restart does
//!   not reopen the window), then hands the body on unchanged.
//!
//! The outcome goes into the request's extensions; the [`super::Client`]
//! extractor turns it into the caller or the `401`, so a route that needs no
//! caller (`/v1/health`) is not refused for a bad header.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ErrorCode, HttpError};
use super::extract::{bearer_token, read_body, AppState};
use super::rate_limit::{RateLimit, RetryAfter};
use super::signed_request::{self, RequestKey, MAX_SKEW_SECS};
use crate::service::Caller;
use keyfold_store::RequestSigning;

/// The authentication outcome of a request that carried credentials.
#[derive(Clone)]
pub(crate) struct Authenticated(pub(crate) Result<Caller, HttpError>);

/// The middleware (see the module docs).
pub(crate) async fn authenticate(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return next.run(req).await;
    }
    let caller = match bearer_token(req.headers()) {
        Ok(token) => match st.svc.authenticate(token.to_owned()).await {
            Ok(Some(caller)) => Ok(caller),
            Ok(None) => Err(HttpError::unauthorized(
                "the bearer token is unknown, expired or revoked",
            )),
            Err(e) => Err(HttpError::from(e)),
        },
        Err(e) => Err(e),
    };
    if let Ok(Caller::Merchant(m)) = &caller {
        let limit = RateLimit {
            capacity: m.merchant.rate_burst,
            refill_per_sec: m.merchant.rate_per_sec,
        };
        if let Err(RetryAfter(secs)) = st.rate.check(m.id, limit, Instant::now()) {
            tracing::info!(merchant = %m.merchant.merchant_id, key = %m.key.key_id, "rate limited");
            return HttpError::rate_limited(secs).into_response();
        }
        if req.method() == Method::POST && m.merchant.signing != RequestSigning::None {
            match verify_signed(&st, m, req).await {
                Ok(r) => req = r,
                Err(e) => return e.into_response(),
            }
        }
    }
    req.extensions_mut().insert(Authenticated(caller));
    next.run(req).await
}

/// Verifies a merchant's signed write request and records its nonce;
/// returns the request with its body restored.
async fn verify_signed(
    st: &AppState,
    m: &keyfold_store::MerchantKeyAuth,
    req: Request,
) -> Result<Request, HttpError> {
    let key = match &m.merchant.signing {
        RequestSigning::Hmac(secret) => RequestKey::Hmac(secret.clone()),
        RequestSigning::Ed25519(pk) => RequestKey::Ed25519(
            ed25519_dalek::VerifyingKey::from_bytes(pk).map_err(|_| {
                tracing::error!(merchant = %m.merchant.merchant_id, "stored request-signing key is not a valid Ed25519 point");
                HttpError::internal()
            })?,
        ),
        RequestSigning::None => return Ok(req),
    };
    let (parts, body) = req.into_parts();
    let signed = match signed_request::parts(&parts.headers) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(HttpError::new(
                ErrorCode::SignatureRequired,
                format!(
                    "merchant {} requires signed write requests: send keyfold-timestamp, \
                     keyfold-nonce and keyfold-signature (see docs/signed-requests.md)",
                    m.merchant.merchant_id
                ),
            ))
        }
        Err(e) => return Err(HttpError::new(e.code(), e.to_string())),
    };
    let bytes = read_body(
        Request::from_parts(parts.clone(), body),
        st.limits.max_body_bytes,
    )
    .await?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |p| p.as_str());
    let now = st.svc.now_unix();
    let verified = signed_request::verify(&key, &signed, parts.method.as_str(), path, &bytes, now)
        .map_err(|e| HttpError::new(e.code(), e.to_string()))?;
    // Kept while its timestamp would still be accepted: after that the
    // window refuses a replay by itself.
    let expires_at = verified.timestamp.saturating_add(MAX_SKEW_SECS + 1);
    let fresh = st
        .svc
        .use_request_nonce(
            m.merchant.merchant_id.clone(),
            verified.nonce.clone(),
            expires_at,
        )
        .await?;
    if !fresh {
        return Err(HttpError::new(
            ErrorCode::NonceReused,
            format!(
                "keyfold-nonce {} was used before by merchant {}: a replay is refused; \
                 send each request with a new random nonce",
                verified.nonce, m.merchant.merchant_id
            ),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
