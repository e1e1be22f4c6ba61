//! Routes of scheduled payouts (`docs/programmable.md`, `docs/api.md`):
//! merchants and operators with the payout scopes.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyfold_proto::api::CreateSchedule;

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;
use crate::schedules::{ScheduleAnswer, ScheduleApiOp, ScheduleChange};
use crate::service::Caller;

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/schedules", get(list).post(create))
        .route("/v1/schedules/{schedule_id}", get(one))
        .route("/v1/schedules/{schedule_id}/pause", post(pause))
        .route("/v1/schedules/{schedule_id}/resume", post(resume))
        .route("/v1/schedules/{schedule_id}/cancel", post(cancel))
}

async fn answer(
    st: &AppState,
    caller: Caller,
    op: ScheduleApiOp,
    status: StatusCode,
) -> Result<Response, HttpError> {
    Ok(match st.svc.schedules(caller, op).await? {
        ScheduleAnswer::One(s) => (status, Json(s)).into_response(),
        ScheduleAnswer::Page(p) => Json(p).into_response(),
    })
}

async fn create(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateSchedule>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    tracing::info!(client = %caller.client(), schedule = %req.schedule_id.chars().take(128).collect::<String>(), "schedule request");
    answer(
        &st,
        caller,
        ScheduleApiOp::Create(Box::new(req)),
        StatusCode::CREATED,
    )
    .await
}

async fn one(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:read")?;
    let op = ScheduleApiOp::Get(path_param(id)?);
    answer(&st, caller, op, StatusCode::OK).await
}

/// `GET /v1/schedules` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:read")?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let op = ScheduleApiOp::List {
        cursor: q.cursor,
        limit: q.limit,
    };
    answer(&st, caller, op, StatusCode::OK).await
}

async fn change(
    st: AppState,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    change: ScheduleChange,
) -> Result<Response, HttpError> {
    let caller = client.with_scope("payouts:write")?;
    let op = ScheduleApiOp::Change(path_param(id)?, change);
    answer(&st, caller, op, StatusCode::OK).await
}

async fn pause(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    change(st, client, id, ScheduleChange::Pause).await
}

async fn resume(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    change(st, client, id, ScheduleChange::Resume).await
}

async fn cancel(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    change(st, client, id, ScheduleChange::Cancel).await
}
