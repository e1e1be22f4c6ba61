//! Routes of the operator's merchant administration: merchants, their
//! settings (rate limit, request signing, enablement) and API keys. Every
//! route takes an operator credential; a merchant key gets `403 forbidden`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use keyfold_proto::api::{
    CreateMerchantRequest, IssueMerchantKeyRequest, IssuedMerchantKey, MerchantInfo,
    MerchantKeyInfo, MerchantKeyList, MerchantList, MerchantSettings, MerchantSettingsResult,
    RotateMerchantKeyRequest,
};

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use super::path_param;

/// Adds the merchant routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/v1/merchants", get(list).post(create))
        .route("/v1/merchants/{merchant_id}/settings", post(settings))
        .route("/v1/merchants/{merchant_id}/keys", get(keys).post(issue))
        .route(
            "/v1/merchants/{merchant_id}/keys/{key_id}/rotate",
            post(rotate),
        )
        .route(
            "/v1/merchants/{merchant_id}/keys/{key_id}/revoke",
            post(revoke),
        )
}

async fn create(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<CreateMerchantRequest>,
) -> Result<(StatusCode, Json<MerchantInfo>), HttpError> {
    let by = client.operator()?;
    let m = st.svc.create_merchant(req).await?;
    tracing::info!(%by, merchant = %m.merchant_id, "merchant created");
    Ok((StatusCode::CREATED, Json(m)))
}

async fn list(State(st): State<AppState>, client: Client) -> Result<Json<MerchantList>, HttpError> {
    client.operator()?;
    Ok(Json(st.svc.list_merchants().await?))
}

async fn settings(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<MerchantSettings>,
) -> Result<Json<MerchantSettingsResult>, HttpError> {
    let by = client.operator()?;
    let id = path_param(id)?;
    tracing::info!(%by, merchant = %id, "merchant settings changed");
    Ok(Json(st.svc.merchant_settings(id, req).await?))
}

async fn issue(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
    JsonBody(req): JsonBody<IssueMerchantKeyRequest>,
) -> Result<(StatusCode, Json<IssuedMerchantKey>), HttpError> {
    let by = client.operator()?;
    let id = path_param(id)?;
    let k = st.svc.issue_merchant_key(id, req).await?;
    tracing::info!(%by, merchant = %k.key.merchant_id, key = %k.key.key_id, "merchant API key issued");
    Ok((StatusCode::CREATED, Json(k)))
}

async fn keys(
    State(st): State<AppState>,
    client: Client,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<MerchantKeyList>, HttpError> {
    client.operator()?;
    Ok(Json(st.svc.list_merchant_keys(path_param(id)?).await?))
}

async fn rotate(
    State(st): State<AppState>,
    client: Client,
    ids: Result<Path<(String, String)>, PathRejection>,
    JsonBody(req): JsonBody<RotateMerchantKeyRequest>,
) -> Result<(StatusCode, Json<IssuedMerchantKey>), HttpError> {
    let by = client.operator()?;
    let (merchant, key) = path_param(ids)?;
    let k = st
        .svc
        .rotate_merchant_key(merchant, key.clone(), req)
        .await?;
    tracing::info!(%by, merchant = %k.key.merchant_id, old = %key, new = %k.key.key_id, "merchant API key rotated");
    Ok((StatusCode::CREATED, Json(k)))
}

async fn revoke(
    State(st): State<AppState>,
    client: Client,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<MerchantKeyInfo>, HttpError> {
    let by = client.operator()?;
    let (merchant, key) = path_param(ids)?;
    let k = st.svc.revoke_merchant_key(merchant, key).await?;
    tracing::info!(%by, merchant = %k.merchant_id, key = %k.key_id, "merchant API key revoked");
    Ok(Json(k))
}
