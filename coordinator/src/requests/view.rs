//! What the API shows of requests: one request's status with its history,
//! and pages of requests (newest first, with a cursor).

use keyfold_proto::api::{RequestList, RequestState, RequestStatus, SignResult, Transition};
use keyfold_store::RequestFilter;

use super::intake;
use super::record::Loaded;
use crate::core::Coordinator;
use crate::service::{ServiceError, Tenant};

/// Requests per page unless the client asks for fewer.
pub const DEFAULT_PAGE: usize = 100;
/// Most requests per page.
pub const MAX_PAGE: usize = keyfold_store::coordinator_requests::MAX_PAGE;

/// A list cursor as this API hands them out (a positive row sequence
/// number), or `400` for anything else.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, ServiceError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ServiceError::BadRequest("cursor is not one this API gave".into()))
        })
        .transpose()
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// A page request of `GET /v1/requests`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// States to list (empty: the waiting ones).
    pub states: Vec<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Requests per page (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

impl Coordinator {
    /// The status of a recorded request.
    pub(crate) async fn status_of(&self, l: &Loaded) -> Result<RequestStatus, ServiceError> {
        let stored = l.stored.as_ref().ok_or_else(|| {
            ServiceError::NotFound(format!(
                "request {} was recorded before requests had a lifecycle; GET /v1/signatures/{} has its result",
                l.row.request_id, l.row.request_id
            ))
        })?;
        let id = l.row.request_id.clone();
        let history = {
            let id = id.clone();
            self.read(move |s| s.transitions(&id)).await?
        };
        let history = history
            .into_iter()
            .map(|t| {
                Ok(Transition {
                    from: t
                        .from_state
                        .as_deref()
                        .map(|s| RequestState::parse(s).ok_or_else(|| internal(s)))
                        .transpose()?,
                    to: RequestState::parse(&t.to_state).ok_or_else(|| internal(&t.to_state))?,
                    at_ms: t.at_ms,
                    cause: t.cause,
                })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        let result = l
            .row
            .result_json
            .as_deref()
            .map(serde_json::from_str::<SignResult>)
            .transpose()
            .map_err(internal)?;
        let error = if l.state == RequestState::Failed {
            l.row.error_json.clone()
        } else {
            None
        };
        Ok(RequestStatus {
            request_id: id.clone(),
            state: l.state,
            request_hash: hex::encode(stored.request.canonical_hash()),
            message: hex::encode(stored.request.signing_message()),
            request: stored.request.clone(),
            decision: l.decision()?,
            approvals: self.approvals_of(&id).await?,
            result,
            error,
            expires_at: if l.state.is_waiting() {
                l.life.expires_at
            } else {
                None
            },
            modules: stored.modules.clone(),
            history,
        })
    }

    /// `GET /v1/requests/{id}`.
    pub(crate) async fn request_status(
        &self,
        request_id: &str,
    ) -> Result<RequestStatus, ServiceError> {
        self.request_status_for(&Tenant::Operator, request_id).await
    }

    /// The status of a request `tenant` sees (another merchant's is
    /// "not found").
    pub(crate) async fn request_status_for(
        &self,
        tenant: &Tenant,
        request_id: &str,
    ) -> Result<RequestStatus, ServiceError> {
        let l = self.load_for(tenant, request_id).await?;
        self.status_of(&l).await
    }

    /// A request `tenant` sees, or "not found".
    pub(crate) async fn load_for(
        &self,
        tenant: &Tenant,
        request_id: &str,
    ) -> Result<Loaded, ServiceError> {
        intake::check_request_ref("request_id", request_id)?;
        self.load(request_id)
            .await?
            .filter(|l| tenant.sees(l.row.merchant_id.as_deref()))
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))
    }

    /// `GET /v1/requests`: one page, newest first.
    pub(crate) async fn list_requests(
        &self,
        tenant: Tenant,
        page: Page,
    ) -> Result<RequestList, ServiceError> {
        let states: Vec<String> = if page.states.is_empty() {
            vec![
                RequestState::PendingApproval.as_str().into(),
                RequestState::TimeLocked.as_str().into(),
                RequestState::Held.as_str().into(),
            ]
        } else {
            page.states
                .iter()
                .map(|s| {
                    RequestState::parse(s)
                        .map(|st| st.as_str().to_string())
                        .ok_or_else(|| {
                            let all: Vec<&str> =
                                RequestState::ALL.iter().map(|s| s.as_str()).collect();
                            ServiceError::BadRequest(format!(
                                "unknown state `{}` (one of: {})",
                                s.chars().take(40).collect::<String>(),
                                all.join(", ")
                            ))
                        })
                })
                .collect::<Result<_, _>>()?
        };
        let limit = page.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ServiceError::BadRequest(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        let before = parse_cursor(page.cursor.as_deref())?;
        let filter = RequestFilter {
            states,
            initiator: None,
            merchant_id: tenant.merchant().map(str::to_string),
            before,
            limit: limit + 1,
        };
        let mut rows = self.read(move |s| s.list_requests(&filter)).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        let mut requests = Vec::with_capacity(rows.len());
        for row in rows {
            requests.push(self.status_of(&Loaded::parse(row)?).await?);
        }
        Ok(RequestList {
            requests,
            next_cursor,
        })
    }
}
