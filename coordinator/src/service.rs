//! The coordinator's operations as the REST API sees them.
//!
//! [`CoordinatorApi`] is what `api/` serves over HTTP; the coordinator
//! ([`crate::Coordinator`]) implements it, and API tests may implement it in
//! memory to test the HTTP layer alone.

use std::future::Future;
use std::pin::Pin;

use keyfold_policy::{Approval, SignedPolicy};
use keyfold_proto::api::{
    CreateKeyRequest, KeyInfo, KeyList, PayoutInfo, PayoutList, PayoutRequest, PolicyInfo,
    RequestList, RequestStatus, SignOutcome, SignRequest, SignResult, StatusInfo,
};

pub use crate::requests::view::Page;

/// A page request of `GET /v1/keys`.
#[derive(Debug, Clone, Default)]
pub struct KeyPage {
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Keys per page (default 100, at most 500).
    pub limit: Option<usize>,
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an operation failed; each maps to one HTTP status and API error code.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The request is invalid (400, `bad_request`).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown key or request (404, `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// A request id reused with another payload (409, `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The same request id is being signed right now (409, `in_progress`).
    #[error("{0}")]
    InProgress(String),
    /// The policy refuses the request (403, `policy_denied`).
    #[error("{0}")]
    PolicyDenied(String),
    /// Not enough live signers (503, `quorum_unavailable`).
    #[error("{0}")]
    QuorumUnavailable(String),
    /// Every attempt failed (502, `signing_failed`).
    #[error("{0}")]
    SigningFailed(String),
    /// The audit log cannot record the step durably, so it was not taken
    /// (503, `audit_unavailable`).
    #[error("{0}")]
    AuditUnavailable(String),
    /// A chain's RPC does not answer; nothing was done (503,
    /// `chain_unavailable`).
    #[error("{0}")]
    ChainUnavailable(String),
    /// A bug or a storage failure on the coordinator (500, `internal`).
    #[error("{0}")]
    Internal(String),
}

/// The operations behind the REST API.
pub trait CoordinatorApi: Send + Sync + 'static {
    /// Creates a key on `n` signers with threshold `t`.
    fn create_key(&self, req: CreateKeyRequest) -> BoxFuture<'_, Result<KeyInfo, ServiceError>>;
    /// A page of keys, in creation order.
    fn list_keys(&self, page: KeyPage) -> BoxFuture<'_, Result<KeyList, ServiceError>>;
    /// One key, by its 32-hex-digit id.
    fn get_key(&self, key_id: String) -> BoxFuture<'_, Result<KeyInfo, ServiceError>>;
    /// Submits a signing request (idempotent per `request_id`) to the
    /// policy; signs it when allowed. `client` names the API client.
    fn sign(
        &self,
        client: String,
        req: SignRequest,
    ) -> BoxFuture<'_, Result<SignOutcome, ServiceError>>;
    /// A request's policy state.
    fn get_request(&self, request_id: String)
        -> BoxFuture<'_, Result<RequestStatus, ServiceError>>;
    /// A page of requests in the given states, newest first.
    fn list_requests(&self, page: Page) -> BoxFuture<'_, Result<RequestList, ServiceError>>;
    /// Records an approval or rejection by `client`'s officer and advances
    /// the request (signing it when the policy now allows).
    fn approve(
        &self,
        client: String,
        request_id: String,
        approval: Approval,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>>;
    /// Cancels a waiting request: by its initiator, or an officer.
    fn cancel(
        &self,
        client: String,
        request_id: String,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>>;
    /// The policy in force.
    fn policy(&self) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>>;
    /// Replaces the policy with an update signed by the admin quorum and
    /// pushes it to every signer.
    fn update_policy(
        &self,
        update: SignedPolicy,
    ) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>>;
    /// The result of an earlier request.
    fn get_signature(&self, request_id: String) -> BoxFuture<'_, Result<SignResult, ServiceError>>;
    /// Signer health.
    fn status(&self) -> BoxFuture<'_, Result<StatusInfo, ServiceError>>;
    /// Creates a payout (idempotent per `payout_id`) and submits it to the
    /// policy; `client` names the API client.
    fn create_payout(
        &self,
        client: String,
        req: PayoutRequest,
    ) -> BoxFuture<'_, Result<PayoutInfo, ServiceError>> {
        let _ = (client, req);
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// One payout.
    fn get_payout(&self, payout_id: String) -> BoxFuture<'_, Result<PayoutInfo, ServiceError>> {
        let _ = payout_id;
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// A page of payouts, newest first, optionally of one chain.
    fn list_payouts(
        &self,
        chain: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<PayoutList, ServiceError>> {
        let _ = (chain, cursor, limit);
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// The client name of a valid API token, or `None`.
    fn authenticate(&self, token: String) -> BoxFuture<'_, Result<Option<String>, ServiceError>>;
}
