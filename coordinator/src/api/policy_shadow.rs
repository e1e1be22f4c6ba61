//! Routes of the policy version in shadow (`docs/rollout.md`,
//! `docs/api.md`): operator tokens only, like `POST /v1/policy`, since a
//! shadow is installed by the same admin signatures as a policy update.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use keyfold_policy::SignedPolicy;

use super::error::HttpError;
use super::extract::{AppState, Client, JsonBody};
use crate::policy::shadow::{ShadowApiOp, ShadowReport};

/// Adds the routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.route(
        "/v1/policy/shadow",
        get(report).post(install).delete(remove),
    )
}

/// `GET /v1/policy/shadow` query.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn report(
    State(st): State<AppState>,
    client: Client,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ShadowReport>, HttpError> {
    client.operator()?;
    let Query(q) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let op = ShadowApiOp::Report {
        cursor: q.cursor,
        limit: q.limit,
    };
    Ok(Json(st.svc.policy_shadow(op).await?))
}

async fn install(
    State(st): State<AppState>,
    client: Client,
    JsonBody(update): JsonBody<SignedPolicy>,
) -> Result<Json<ShadowReport>, HttpError> {
    let client = client.operator()?;
    tracing::info!(%client, signatures = update.signatures.len(), "policy shadow submitted");
    Ok(Json(
        st.svc.policy_shadow(ShadowApiOp::Install(update)).await?,
    ))
}

async fn remove(
    State(st): State<AppState>,
    client: Client,
) -> Result<Json<ShadowReport>, HttpError> {
    let client = client.operator()?;
    tracing::info!(%client, "policy shadow removal");
    Ok(Json(st.svc.policy_shadow(ShadowApiOp::Remove).await?))
}
