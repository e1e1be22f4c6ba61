//! Routes of the risk module: the review queue and freezes (operators and
//! officers only; `docs/api.md`, "Risk").

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyfold_proto::api::NewFreeze;
use keyfold_risk::{FreezeLift, SignedReview};

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;
use crate::service::{Caller, RiskAnswer, RiskApiOp};

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/reviews", get(list_reviews))
        .route("/v1/reviews/{request_id}", post(review))
        .route("/v1/freezes", get(list_freezes).post(add_freeze))
        .route("/v1/freezes/{freeze_id}/lift", post(lift_freeze))
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
    })
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
