//! Routes of a merchant's payment orders (`/v1/orders`) and webhook
//! endpoints (`/v1/webhooks`). They take a merchant API key with the
//! route's scope: orders and endpoints are a merchant's, and another
//! merchant's are not found.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyfold_proto::api::{
    CreateOrderRequest, CreateWebhookRequest, OrderInfo, OrderList, RotateWebhookSecret,
};
use serde_json::json;

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;
use crate::service::{WebhookAnswer, WebhookOp};

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/orders", get(list_orders).post(create_order))
        .route("/v1/orders/{order_id}", get(get_order))
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route("/v1/webhooks/{endpoint_id}", get(get_webhook))
        .route("/v1/webhooks/{endpoint_id}/rotate", post(rotate_webhook))
        .route("/v1/webhooks/{endpoint_id}/enable", post(enable_webhook))
        .route("/v1/webhooks/{endpoint_id}/disable", post(disable_webhook))
        .route("/v1/webhooks/{endpoint_id}/deliveries", get(deliveries))
        .route(
            "/v1/webhooks/{endpoint_id}/deliveries/{event_id}/redeliver",
            post(redeliver),
        )
        .route("/v1/reconciliation", get(reconciliation))
        .route("/v1/balances", get(balances))
        .route("/v1/ledger", get(ledger))
        .route("/v1/ledger/entries", post(book_entry))
        .route("/v1/treasury", get(treasury))
        .route("/v1/settlements", get(settlements))
        .route("/v1/settlements/{run_id}", get(settlement_report))
}

/// `GET /v1/settlements` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettlementsQuery {
    #[serde(default)]
    merchant_id: Option<String>,
}

async fn settlements(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<SettlementsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["orders:read", "payouts:read"])?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let runs = st.svc.settlements(caller.tenant(), q.merchant_id).await?;
    Ok(Json(json!({ "settlements": runs })).into_response())
}

/// `GET /v1/settlements/{run_id}` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

async fn settlement_report(
    State(st): State<AppState>,
    client: Client,
    run_id: Result<Path<String>, PathRejection>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["orders:read", "payouts:read"])?;
    let run_id = path_param(run_id)?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(HttpError::bad_request("format must be json or csv")),
    };
    let report = st.svc.settlement_report(caller.tenant(), run_id).await?;
    if csv {
        let text = report.to_csv()?;
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            text,
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}

/// `GET /v1/balances` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceQuery {
    #[serde(default)]
    chain: Option<String>,
    #[serde(default)]
    account: Option<String>,
}

async fn balances(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<BalanceQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["orders:read", "payouts:read"])?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let list = st.svc.balances(caller.tenant(), q.chain, q.account).await?;
    Ok(Json(list).into_response())
}

/// `GET /v1/ledger` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn ledger(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<LedgerQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["orders:read", "payouts:read"])?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let page = st
        .svc
        .ledger(caller.tenant(), q.account, q.cursor, q.limit)
        .await?;
    Ok(Json(page).into_response())
}

async fn book_entry(
    State(st): State<AppState>,
    client: Client,
    JsonBody(entry): JsonBody<crate::treasury::views::ManualEntry>,
) -> Result<Response, HttpError> {
    let who = client.operator()?;
    tracing::info!(client = %who, id = %entry.id.chars().take(64).collect::<String>(), "manual ledger entry");
    let view = st.svc.book_entry(entry).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn treasury(State(st): State<AppState>, client: Client) -> Result<Response, HttpError> {
    client.operator()?;
    Ok(Json(serde_json::json!({ "tiers": st.svc.treasury().await? })).into_response())
}

/// `GET /v1/reconciliation` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconQuery {
    from: i64,
    to: i64,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    merchant_id: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    format: Option<String>,
}

async fn reconciliation(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<ReconQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = client.with_any_scope(&["orders:read", "payouts:read"])?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(HttpError::bad_request("format must be json or csv")),
    };
    let report = st
        .svc
        .reconcile(
            caller,
            crate::reconcile::ReconcileQuery {
                merchant_id: q.merchant_id,
                from: q.from,
                to: q.to,
                section: q.section.unwrap_or_else(|| "orders".into()),
                cursor: q.cursor,
                limit: q.limit,
            },
        )
        .await?;
    if csv {
        let text = crate::reconcile::to_csv(&report)?;
        let mut resp = (
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            text,
        )
            .into_response();
        if let Some(next) = &report.next_cursor {
            if let Ok(v) = axum::http::HeaderValue::from_str(next) {
                resp.headers_mut().insert("x-next-cursor", v);
            }
        }
        Ok(resp)
    } else {
        Ok(Json(report).into_response())
    }
}

async fn create_order(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateOrderRequest>,
) -> Result<(StatusCode, Json<OrderInfo>), HttpError> {
    let caller = client.with_scope("orders:write")?;
    let (created, order) = st.svc.create_order(caller, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(order)))
}

async fn get_order(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderInfo>, HttpError> {
    let caller = client.with_scope("orders:read")?;
    Ok(Json(st.svc.get_order(caller, path_param(id)?).await?))
}

/// `GET /v1/orders` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list_orders(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<OrderList>, HttpError> {
    let caller = client.with_scope("orders:read")?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    Ok(Json(
        st.svc
            .list_orders(caller, q.state, q.cursor, q.limit)
            .await?,
    ))
}

async fn webhook(st: &AppState, client: Client, op: WebhookOp) -> Result<Response, HttpError> {
    let caller = client.with_scope("webhooks:manage")?;
    let created = matches!(op, WebhookOp::Create(_));
    Ok(match st.svc.webhooks(caller, op).await? {
        WebhookAnswer::Secret(s) if created => (StatusCode::CREATED, Json(s)).into_response(),
        WebhookAnswer::Secret(s) => Json(s).into_response(),
        WebhookAnswer::List(l) => Json(l).into_response(),
        WebhookAnswer::Endpoint(e) => Json(e).into_response(),
        WebhookAnswer::Deliveries(d) => Json(d).into_response(),
        WebhookAnswer::Scheduled => {
            (StatusCode::ACCEPTED, Json(json!({ "scheduled": true }))).into_response()
        }
    })
}

async fn create_webhook(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateWebhookRequest>,
) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::Create(req)).await
}

async fn list_webhooks(State(st): State<AppState>, client: Client) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::List).await
}

async fn get_webhook(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::Get(path_param(id)?)).await
}

async fn rotate_webhook(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<RotateWebhookSecret>,
) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::Rotate(path_param(id)?, req)).await
}

async fn enable_webhook(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::SetEnabled(path_param(id)?, true)).await
}

async fn disable_webhook(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    webhook(&st, client, WebhookOp::SetEnabled(path_param(id)?, false)).await
}

/// `GET /v1/webhooks/{id}/deliveries` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn deliveries(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let op = WebhookOp::Deliveries {
        endpoint_id: path_param(id)?,
        cursor: q.cursor,
        limit: q.limit,
    };
    webhook(&st, client, op).await
}

async fn redeliver(
    State(st): State<AppState>,
    client: Client,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, HttpError> {
    let (endpoint, event) = path_param(ids)?;
    webhook(&st, client, WebhookOp::Redeliver(endpoint, event)).await
}
