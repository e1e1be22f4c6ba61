//! Routes of the risk module: the review queue and freezes (operators and
//! officers only), and customers' payment authentication (merchants with
//! the payout scopes; `docs/api.md`, "Risk").

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use keyfold_proto::api::{NewFreeze, RegisterDevice, SetKycTier, SetPassword};
use keyfold_risk::{FreezeLift, SignedReview};

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;
use crate::risk::customers::{CustomerAnswer, CustomerOp};
use crate::service::{Caller, RiskAnswer, RiskApiOp};

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/reviews", get(list_reviews))
        .route("/v1/reviews/{request_id}", post(review))
        .route("/v1/freezes", get(list_freezes).post(add_freeze))
        .route("/v1/freezes/{freeze_id}/lift", post(lift_freeze))
        .route("/v1/risk/tree", get(get_tree).post(update_tree))
        .route("/v1/customers/{customer_id}", get(get_customer))
        .route("/v1/customers/{customer_id}/devices", post(register_device))
        .route(
            "/v1/customers/{customer_id}/devices/{device_id}/revoke",
            post(revoke_device),
        )
        .route("/v1/customers/{customer_id}/totp", post(enrol_totp))
        .route("/v1/customers/{customer_id}/kyc", put(set_kyc))
        .route("/v1/customers/{customer_id}/password", put(set_password))
}

async fn customer(
    st: &AppState,
    caller: Caller,
    op: CustomerOp,
    created: bool,
) -> Result<Response, HttpError> {
    Ok(match st.svc.customers(caller, op).await? {
        CustomerAnswer::Customer(c) if created => (StatusCode::CREATED, Json(c)).into_response(),
        CustomerAnswer::Customer(c) => Json(c).into_response(),
        CustomerAnswer::Totp(t) => (StatusCode::CREATED, Json(t)).into_response(),
    })
}

async fn get_customer(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["payouts:read", "payouts:write"])?;
    customer(&st, caller, CustomerOp::Get(path_param(id)?), false).await
}

async fn register_device(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<RegisterDevice>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let op = CustomerOp::RegisterDevice(path_param(id)?, body);
    customer(&st, caller, op, true).await
}

async fn revoke_device(
    State(st): State<AppState>,
    client: Client,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let (customer_id, device_id) = path_param(ids)?;
    let op = CustomerOp::RevokeDevice(customer_id, device_id);
    customer(&st, caller, op, false).await
}

async fn enrol_totp(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    customer(&st, caller, CustomerOp::EnrolTotp(path_param(id)?), false).await
}

async fn set_kyc(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<SetKycTier>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    customer(
        &st,
        caller,
        CustomerOp::SetKyc(path_param(id)?, body),
        false,
    )
    .await
}

async fn set_password(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<SetPassword>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let op = CustomerOp::SetPassword(path_param(id)?, body);
    customer(&st, caller, op, false).await
}

async fn risk(st: &AppState, client: Client, op: RiskApiOp) -> Result<Response, HttpError> {
    let name = client.operator()?;
    let created = matches!(op, RiskApiOp::AddFreeze(_));
    Ok(match st.svc.risk(Caller::Operator(name), op).await? {
        RiskAnswer::Reviews(r) => Json(r).into_response(),
        RiskAnswer::Review(r) => Json(r).into_response(),
        RiskAnswer::Freezes(f) => Json(f).into_response(),
        RiskAnswer::Freeze(f) if created => (StatusCode::CREATED, Json(f)).into_response(),
        RiskAnswer::Freeze(f) => Json(f).into_response(),
        RiskAnswer::Tree { version, document } => {
            Json(serde_json::json!({ "version": version, "tree_toml": document })).into_response()
        }
    })
}

async fn get_tree(State(st): State<AppState>, client: Client) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::Tree).await
}

async fn update_tree(
    State(st): State<AppState>,
    client: Client,
    JsonBody(body): JsonBody<keyfold_risk::SignedTree>,
) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::UpdateTree(body)).await
}

async fn list_reviews(State(st): State<AppState>, client: Client) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::Reviews).await
}

async fn review(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<SignedReview>,
) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::Review(path_param(id)?, body)).await
}

/// `GET /v1/freezes` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeQuery {
    /// `all` lists lifted freezes too (default `active`).
    #[serde(default)]
    state: Option<String>,
}

async fn list_freezes(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<FreezeQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let all = match q.state.as_deref() {
        None | Some("active") => false,
        Some("all") => true,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "state {other:?} is not one of active, all"
            )))
        }
    };
    risk(&st, client, RiskApiOp::Freezes { all }).await
}

async fn add_freeze(
    State(st): State<AppState>,
    client: Client,
    JsonBody(body): JsonBody<NewFreeze>,
) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::AddFreeze(body)).await
}

async fn lift_freeze(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<FreezeLift>,
) -> Result<Response, HttpError> {
    risk(&st, client, RiskApiOp::LiftFreeze(path_param(id)?, body)).await
}
