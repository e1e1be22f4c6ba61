//! Routes of conditional payouts (`docs/programmable.md`, `docs/api.md`):
//! merchants and operators with the payout scopes; a release needs the
//! caller to be one of the escrow's named approvers.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use keyfold_proto::api::{ConditionalPayoutInfo, CreateConditionalPayout};

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;
use crate::escrow::EscrowApiOp;

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/conditional-payouts", post(create))
        .route("/v1/conditional-payouts/{escrow_id}", get(one))
        .route("/v1/conditional-payouts/{escrow_id}/release", post(release))
        .route("/v1/conditional-payouts/{escrow_id}/cancel", post(cancel))
}

async fn create(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateConditionalPayout>,
) -> Result<(StatusCode, Json<ConditionalPayoutInfo>), HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let info = st
        .svc
        .escrows(caller, EscrowApiOp::Create(Box::new(req)))
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn one(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConditionalPayoutInfo>, HttpError> {
    let caller = client.with_scope("payouts:read")?;
    Ok(Json(
        st.svc
            .escrows(caller, EscrowApiOp::Get(path_param(id)?))
            .await?,
    ))
}

async fn release(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConditionalPayoutInfo>, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    Ok(Json(
        st.svc
            .escrows(caller, EscrowApiOp::Release(path_param(id)?))
            .await?,
    ))
}

async fn cancel(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ConditionalPayoutInfo>, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    Ok(Json(
        st.svc
            .escrows(caller, EscrowApiOp::Cancel(path_param(id)?))
            .await?,
    ))
}
