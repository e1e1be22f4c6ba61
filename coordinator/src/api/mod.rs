//! The coordinator's REST API: JSON over HTTP/1.1, served with axum.
//!
//! [`router`] builds the routes on top of any [`CoordinatorApi`]; [`serve`]
//! runs them on a listener until a shutdown future completes. Every endpoint
//! lives under `/v1` and, except `GET /v1/health`, needs
//! `Authorization: Bearer <token>`, which is checked by
//! [`CoordinatorApi::authenticate`] and never logged.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | `GET` | `/v1/health` | | 200 `{"status":"ok"}` (no token needed) |
//! | `POST` | `/v1/keys` | `CreateKeyRequest` | 201 `KeyInfo` |
//! | `GET` | `/v1/keys?cursor=..&limit=..` | | 200 `KeyList` |
//! | `GET` | `/v1/keys/{key_id}` | | 200 `KeyInfo` |
//! | `POST` | `/v1/signatures` | `SignRequest` | 200 `SignResult`, or 202 `RequestStatus` while it waits for approvals or a time lock |
//! | `GET` | `/v1/signatures/{request_id}` | | 200 `SignResult` |
//! | `GET` | `/v1/requests?state=..&cursor=..&limit=..` | | 200 `RequestList` (newest first) |
//! | `GET` | `/v1/requests/{request_id}` | | 200 `RequestStatus` |
//! | `POST` | `/v1/requests/{request_id}/approvals` | `Approval` | 200 `RequestStatus` |
//! | `POST` | `/v1/requests/{request_id}/cancel` | `CancelRequest` | 200 `RequestStatus` |
//! | `POST` | `/v1/payouts` | `PayoutRequest` | 201 `PayoutInfo` (`docs/payments.md`) |
//! | `GET` | `/v1/payouts?chain=..&cursor=..&limit=..` | | 200 `PayoutList` (newest first) |
//! | `GET` | `/v1/payouts/{payout_id}` | | 200 `PayoutInfo` |
//! | `POST` | `/v1/schedules` | `CreateSchedule` | 201 `ScheduleInfo` (`docs/programmable.md`) |
//! | `GET` | `/v1/schedules?cursor=..&limit=..` | | 200 `ScheduleList` |
//! | `GET` | `/v1/schedules/{schedule_id}` | | 200 `ScheduleInfo` |
//! | `POST` | `/v1/schedules/{schedule_id}/pause\|resume\|cancel` | | 200 `ScheduleInfo` |
//! | `GET` | `/v1/policy` | | 200 `PolicyInfo` |
//! | `POST` | `/v1/policy` | `SignedPolicy` | 200 `PolicyInfo` |
//! | `POST` | `/v1/policy/shadow` | `SignedPolicy` | 200 `ShadowReport` (`docs/rollout.md`) |
//! | `GET` | `/v1/policy/shadow?cursor=..&limit=..` | | 200 `ShadowReport` |
//! | `DELETE` | `/v1/policy/shadow` | | 200 `ShadowReport` (its last report) |
//! | `GET` | `/v1/status` | | 200 `StatusInfo` |
//!
//! Every error is `{"error": {"code": ..., "message": ...}}` with one of the
//! codes of [`ErrorCode`]; axum's own plain-text rejections, unknown routes,
//! wrong methods, oversized or non-JSON bodies, handler panics and timeouts
//! all answer in that format too. The full reference is `docs/api.md`.
//!
//! Each request runs in a tracing span `http` with a fresh `request_id`
//! (returned as the `x-request-id` header), the method, the path and, once
//! authenticated, the client name; one event per request logs status and
//! latency.

mod auth;
mod error;
mod escrow;
mod extract;
mod merchants;
mod middleware;
mod orders;
mod policy_shadow;
mod rate_limit;
mod risk;
mod schedules;
mod signed_request;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyfold_policy::{Approval, SignedPolicy};
use keyfold_proto::api::{
    CancelRequest, CreateKeyRequest, KeyInfo, KeyList, PayoutInfo, PayoutList, PayoutRequest,
    PolicyInfo, RequestList, RequestStatus, SignOutcome, SignRequest, SignResult, StatusInfo,
};
use serde::Serialize;

pub use error::{ErrorCode, HttpError};
pub use middleware::REQUEST_ID_HEADER;

use crate::service::{CoordinatorApi, KeyPage, Page};
use extract::{
    check_key_id, check_message, check_request_id, check_request_ref, AppState, Client, JsonBody,
};

/// The address the API listens on unless configured otherwise.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:7100";

/// Size and time limits of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request body, in bytes; larger ones get 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Longest a request may run; past it the caller gets 504 `timeout` and the
    /// handler's future is dropped.
    pub request_timeout: Duration,
    /// Longest `POST /v1/keys` may run: a signer group's first key includes
    /// safe primes and aux info, minutes on a loaded machine.
    pub keygen_timeout: Duration,
}

impl ApiLimits {
    /// Default [`ApiLimits::max_body_bytes`]: 256 KiB, room for the largest
    /// message ([`keyfold_proto::MAX_MESSAGE_BYTES`], hex-encoded) and the
    /// other fields.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
    /// Default [`ApiLimits::request_timeout`]: 120 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
    /// Default [`ApiLimits::keygen_timeout`]: 30 minutes.
    pub const DEFAULT_KEYGEN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            keygen_timeout: Self::DEFAULT_KEYGEN_TIMEOUT,
        }
    }
}

/// Builds the API's routes and middleware on top of `svc`.
pub fn router(svc: Arc<dyn CoordinatorApi>, limits: ApiLimits) -> Router {
    let state = AppState {
        svc,
        limits,
        rate: Arc::new(rate_limit::RateLimiter::new()),
    };
    let router = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{key_id}", get(get_key))
        .route("/v1/signatures", axum::routing::post(sign))
        .route("/v1/signatures/{request_id}", get(get_signature))
        .route("/v1/requests", get(list_requests))
        .route("/v1/requests/{request_id}", get(get_request))
        .route(
            "/v1/requests/{request_id}/approvals",
            axum::routing::post(approve),
        )
        .route(
            "/v1/requests/{request_id}/cancel",
            axum::routing::post(cancel),
        )
        .route("/v1/payouts", get(list_payouts).post(create_payout))
        .route("/v1/payouts/{payout_id}", get(get_payout))
        .route("/v1/policy", get(policy).post(update_policy))
        .route("/v1/status", get(status));
    escrow::routes(policy_shadow::routes(schedules::routes(risk::routes(
        orders::routes(merchants::routes(router)),
    ))))
    .route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::authenticate,
    ))
    .fallback(not_found)
    .layer(axum::middleware::from_fn_with_state(
        limits,
        middleware::timeout,
    ))
    .layer(axum::middleware::from_fn(middleware::catch_panic))
    .layer(axum::middleware::from_fn(middleware::json_errors))
    .layer(axum::middleware::from_fn(middleware::trace))
    .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting connections and waits for the requests in flight (each bounded by
/// [`ApiLimits::request_timeout`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /v1/health` answer.
#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn not_found(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        ErrorCode::NotFound,
        format!(
            "no such endpoint: {method} {}",
            middleware::shown_path(uri.path())
        ),
    )
}

/// The single path parameter, or a 400 saying why it could not be read.
pub(crate) fn path_param<T>(param: Result<Path<T>, PathRejection>) -> Result<T, HttpError> {
    param
        .map(|Path(p)| p)
        .map_err(|rej| HttpError::bad_request(format!("invalid path: {}", rej.body_text())))
}

async fn create_key(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyInfo>), HttpError> {
    let caller = client.with_scope("wallets:write")?;
    let client = caller.client().to_string();
    if req.tier == keyfold_policy::Tier::Hot {
        for (name, v) in [("t", req.t), ("n", req.n)] {
            if v == 0 {
                return Err(HttpError::bad_request(format!(
                    "missing field `{name}`: a hot (threshold) key needs `t` and `n`; a cold key says `\"tier\": \"cold\"`"
                )));
            }
        }
        keyfold_mpc::Threshold::new(req.t, req.n)
            .map_err(|e| HttpError::bad_request(e.to_string()))?;
    }
    tracing::info!(%client, curve = %req.curve, t = req.t, n = req.n, "creating key");
    let info = st.svc.create_key(caller.tenant(), req).await?;
    tracing::info!(key_id = %info.key_id, "key created");
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/keys` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_keys(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyList>, HttpError> {
    let caller = client.with_scope("wallets:read")?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    Ok(Json(
        st.svc
            .list_keys(
                caller.tenant(),
                KeyPage {
                    cursor: q.cursor,
                    limit: q.limit,
                },
            )
            .await?,
    ))
}

async fn get_key(
    State(st): State<AppState>,
    client: Client,
    key_id: Result<Path<String>, PathRejection>,
) -> Result<Json<KeyInfo>, HttpError> {
    let caller = client.with_scope("wallets:read")?;
    let key_id = path_param(key_id)?;
    check_key_id(&key_id)?;
    Ok(Json(st.svc.get_key(caller.tenant(), key_id).await?))
}

async fn sign(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<SignRequest>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("signatures:write")?;
    check_request_id(&req.request_id)?;
    check_key_id(&req.key_id)?;
    let message_bytes = match &req.message {
        Some(m) => check_message(m)?,
        None => 0,
    };
    tracing::info!(
        request = %req.request_id,
        key_id = %req.key_id,
        typed = req.transfer.is_some(),
        message_bytes,
        "sign request"
    );
    match st.svc.sign(caller, req).await? {
        SignOutcome::Signed(result) => {
            tracing::info!(request = %result.request_id, mode = ?result.mode, "signed");
            Ok(Json(result).into_response())
        }
        SignOutcome::Pending(status) => {
            tracing::info!(request = %status.request_id, state = %status.state, "waiting");
            Ok((StatusCode::ACCEPTED, Json(*status)).into_response())
        }
    }
}

/// `GET /v1/requests` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestQuery {
    /// Comma-separated states; default `pending_approval,time_locked,held`.
    #[serde(default)]
    state: Option<String>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    cursor: Option<String>,
    /// Requests per page (default 100, at most 500).
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_requests(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<RequestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RequestList>, HttpError> {
    let caller = client.with_any_scope(&["signatures:read", "payouts:read"])?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let states: Vec<String> = q
        .state
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(
        st.svc
            .list_requests(
                caller.tenant(),
                Page {
                    states,
                    cursor: q.cursor,
                    limit: q.limit,
                },
            )
            .await?,
    ))
}

async fn get_request(
    State(st): State<AppState>,
    client: Client,
    request_id: Result<Path<String>, PathRejection>,
) -> Result<Json<RequestStatus>, HttpError> {
    let caller = client.with_any_scope(&["signatures:read", "payouts:read"])?;
    let request_id = path_param(request_id)?;
    check_request_ref(&request_id)?;
    Ok(Json(st.svc.get_request(caller.tenant(), request_id).await?))
}

async fn approve(
    State(st): State<AppState>,
    client: Client,
    request_id: Result<Path<String>, PathRejection>,
    JsonBody(approval): JsonBody<Approval>,
) -> Result<Json<RequestStatus>, HttpError> {
    // Officers approve with their own credentials, never a merchant's key.
    let client = client.operator()?;
    let request_id = path_param(request_id)?;
    check_request_ref(&request_id)?;
    Ok(Json(st.svc.approve(client, request_id, approval).await?))
}

async fn cancel(
    State(st): State<AppState>,
    client: Client,
    request_id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<CancelRequest>,
) -> Result<Json<RequestStatus>, HttpError> {
    let caller = client.with_any_scope(&["signatures:write", "payouts:write"])?;
    let request_id = path_param(request_id)?;
    check_request_ref(&request_id)?;
    Ok(Json(st.svc.cancel(caller, request_id, body.reason).await?))
}

async fn policy(State(st): State<AppState>, client: Client) -> Result<Json<PolicyInfo>, HttpError> {
    client.operator()?;
    Ok(Json(st.svc.policy().await?))
}

async fn update_policy(
    State(st): State<AppState>,
    client: Client,
    JsonBody(update): JsonBody<SignedPolicy>,
) -> Result<Json<PolicyInfo>, HttpError> {
    let client = client.operator()?;
    tracing::info!(%client, signatures = update.signatures.len(), "policy update submitted");
    Ok(Json(st.svc.update_policy(update).await?))
}

async fn get_signature(
    State(st): State<AppState>,
    client: Client,
    request_id: Result<Path<String>, PathRejection>,
) -> Result<Json<SignResult>, HttpError> {
    let caller = client.with_any_scope(&["signatures:read", "payouts:read"])?;
    let request_id = path_param(request_id)?;
    check_request_ref(&request_id)?;
    Ok(Json(
        st.svc.get_signature(caller.tenant(), request_id).await?,
    ))
}

async fn status(State(st): State<AppState>, client: Client) -> Result<Json<StatusInfo>, HttpError> {
    client.operator()?;
    Ok(Json(st.svc.status().await?))
}

async fn create_payout(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<PayoutRequest>,
) -> Result<(StatusCode, Json<PayoutInfo>), HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let client = caller.client().to_string();
    crate::requests::intake::check_client_id("payout_id", &req.payout_id)
        .map_err(HttpError::from)?;
    tracing::info!(%client, payout = %req.payout_id, chain = %req.chain.chars().take(40).collect::<String>(), "payout request");
    let info = st.svc.create_payout(caller, req).await?;
    tracing::info!(payout = %info.payout_id, state = %info.state, "payout");
    Ok((StatusCode::CREATED, Json(info)))
}

/// `GET /v1/payouts` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PayoutQuery {
    #[serde(default)]
    chain: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_payouts(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<PayoutQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PayoutList>, HttpError> {
    let caller = client.with_scope("payouts:read")?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    Ok(Json(
        st.svc
            .list_payouts(caller.tenant(), q.chain, q.cursor, q.limit)
            .await?,
    ))
}

async fn get_payout(
    State(st): State<AppState>,
    client: Client,
    payout_id: Result<Path<String>, PathRejection>,
) -> Result<Json<PayoutInfo>, HttpError> {
    let caller = client.with_scope("payouts:read")?;
    let payout_id = path_param(payout_id)?;
    crate::requests::intake::check_client_id("payout_id", &payout_id).map_err(HttpError::from)?;
    Ok(Json(st.svc.get_payout(caller.tenant(), payout_id).await?))
}
