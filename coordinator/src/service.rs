//! The coordinator's operations as the REST API sees them.
//!
//! [`CoordinatorApi`] is what `api/` serves over HTTP; the coordinator
//! ([`crate::Coordinator`]) implements it, and API tests may implement it in
//! memory to test the HTTP layer alone.

use std::future::Future;
use std::pin::Pin;

use keyfold_policy::{Approval, SignedPolicy};
use keyfold_proto::api::{
    CreateKeyRequest, CreateMerchantRequest, CreateOrderRequest, IssueMerchantKeyRequest,
    IssuedMerchantKey, KeyInfo, KeyList, MerchantInfo, MerchantKeyInfo, MerchantKeyList,
    MerchantList, MerchantSettings, MerchantSettingsResult, OrderInfo, OrderList, PayoutInfo,
    PayoutList, PayoutRequest, PolicyInfo, RequestList, RequestStatus, RotateMerchantKeyRequest,
    SignOutcome, SignRequest, SignResult, StatusInfo,
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

/// Whose objects a call may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenant {
    /// An operator (back office, treasury, admin tooling): every object.
    Operator,
    /// A merchant: its own objects only; another's are "not found".
    Merchant(String),
}

impl Tenant {
    /// The merchant, if a merchant calls.
    pub fn merchant(&self) -> Option<&str> {
        match self {
            Tenant::Operator => None,
            Tenant::Merchant(m) => Some(m),
        }
    }

    /// Whether an object owned by `owner` (`None`: the operator's) is
    /// visible to this tenant.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Tenant::Operator => true,
            Tenant::Merchant(m) => owner == Some(m.as_str()),
        }
    }
}

/// The authenticated caller of an API operation.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An operator token (`keyfold token issue`), by client name.
    Operator(String),
    /// A merchant API key, with its merchant's settings.
    Merchant(Box<keyfold_store::MerchantKeyAuth>),
}

impl Caller {
    /// The client name its requests are recorded under (the policy's
    /// `initiator`): the token's name, or `<merchant>#<key id>`.
    pub fn client(&self) -> &str {
        match self {
            Caller::Operator(name) => name,
            Caller::Merchant(m) => &m.key.client,
        }
    }

    /// Whose objects it sees.
    pub fn tenant(&self) -> Tenant {
        match self {
            Caller::Operator(_) => Tenant::Operator,
            Caller::Merchant(m) => Tenant::Merchant(m.merchant.merchant_id.clone()),
        }
    }
}

/// An operation on a merchant's webhook endpoints.
#[derive(Debug, Clone)]
pub enum WebhookOp {
    /// `POST /v1/webhooks`.
    Create(keyfold_proto::api::CreateWebhookRequest),
    /// `GET /v1/webhooks`.
    List,
    /// `GET /v1/webhooks/{id}`.
    Get(String),
    /// `POST /v1/webhooks/{id}/rotate`.
    Rotate(String, keyfold_proto::api::RotateWebhookSecret),
    /// `POST /v1/webhooks/{id}/enable` or `/disable`.
    SetEnabled(String, bool),
    /// `GET /v1/webhooks/{id}/deliveries`.
    Deliveries {
        /// Endpoint.
        endpoint_id: String,
        /// Cursor.
        cursor: Option<String>,
        /// Page size.
        limit: Option<usize>,
    },
    /// `POST /v1/webhooks/{id}/deliveries/{event_id}/redeliver`.
    Redeliver(String, String),
}

/// An operation of the risk module's API (operators and officers only).
#[derive(Debug, Clone)]
pub enum RiskApiOp {
    /// `GET /v1/reviews`.
    Reviews,
    /// `POST /v1/reviews/{request_id}`: an officer's signed review.
    Review(String, keyfold_risk::SignedReview),
    /// `GET /v1/freezes` (active only unless `all`).
    Freezes {
        /// Lifted ones too.
        all: bool,
    },
    /// `POST /v1/freezes`.
    AddFreeze(keyfold_proto::api::NewFreeze),
    /// `POST /v1/freezes/{id}/lift`: officers' signatures.
    LiftFreeze(String, keyfold_risk::FreezeLift),
    /// `GET /v1/risk/tree`.
    Tree,
    /// `POST /v1/risk/tree`: a new tree signed by the admin quorum.
    UpdateTree(keyfold_risk::SignedTree),
}

/// What a [`RiskApiOp`] answers.
#[derive(Debug, Clone)]
pub enum RiskAnswer {
    /// Held requests.
    Reviews(keyfold_proto::api::ReviewList),
    /// One held (or released, or rejected) request.
    Review(Box<keyfold_proto::api::ReviewInfo>),
    /// Freezes.
    Freezes(keyfold_proto::api::FreezeList),
    /// One freeze.
    Freeze(keyfold_proto::api::FreezeInfo),
    /// The tree in force: its version and TOML.
    Tree {
        /// The tree's version.
        version: u64,
        /// The tree (TOML).
        document: String,
    },
}

/// What a [`WebhookOp`] answers.
#[derive(Debug, Clone)]
pub enum WebhookAnswer {
    /// An endpoint with its new secret (shown once).
    Secret(keyfold_proto::api::WebhookSecret),
    /// Endpoints.
    List(keyfold_proto::api::WebhookEndpointList),
    /// One endpoint.
    Endpoint(keyfold_proto::api::WebhookEndpointInfo),
    /// Deliveries.
    Deliveries(keyfold_proto::api::WebhookDeliveryList),
    /// Done (a redelivery was scheduled).
    Scheduled,
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
    /// The customer's proof for a payout was refused (403,
    /// `payment_auth_refused`, with `reason` the refusal's code).
    #[error("{message}")]
    AuthRefused {
        /// `keyfold_risk::AuthRefusal::code`.
        reason: &'static str,
        /// What was refused and what to do.
        message: String,
    },
    /// The caller may not do this to this object (403, `forbidden`): for
    /// example an API client that is not among a conditional payout's
    /// approvers.
    #[error("{0}")]
    Forbidden(String),
    /// A merchant's sandbox key on a live chain (403, `sandbox_chain_only`)
    /// or a live key on a sandbox chain (403, `live_chain_only`).
    #[error("{message}")]
    ChainEnvironment {
        /// Whether the caller's key is a sandbox key.
        sandbox_key: bool,
        /// The chain, the key's kind, and what to use instead.
        message: String,
    },
    /// A bug or a storage failure on the coordinator (500, `internal`).
    #[error("{0}")]
    Internal(String),
}

/// The operations behind the REST API.
pub trait CoordinatorApi: Send + Sync + 'static {
    /// Creates a key on `n` signers with threshold `t`.
    /// The key belongs to `tenant`'s merchant, if a merchant creates it.
    fn create_key(
        &self,
        tenant: Tenant,
        req: CreateKeyRequest,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>>;
    /// A page of the keys `tenant` sees, in creation order.
    fn list_keys(
        &self,
        tenant: Tenant,
        page: KeyPage,
    ) -> BoxFuture<'_, Result<KeyList, ServiceError>>;
    /// One key, by its 32-hex-digit id.
    fn get_key(
        &self,
        tenant: Tenant,
        key_id: String,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>>;
    /// Submits a signing request (idempotent per `request_id`) to the
    /// policy; signs it when allowed. `client` names the API client.
    fn sign(
        &self,
        caller: Caller,
        req: SignRequest,
    ) -> BoxFuture<'_, Result<SignOutcome, ServiceError>>;
    /// A request's policy state.
    fn get_request(
        &self,
        tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>>;
    /// A page of requests in the given states, newest first.
    fn list_requests(
        &self,
        tenant: Tenant,
        page: Page,
    ) -> BoxFuture<'_, Result<RequestList, ServiceError>>;
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
        caller: Caller,
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
    /// A future policy version in shadow (`/v1/policy/shadow`): install,
    /// remove, report (operators only).
    fn policy_shadow(
        &self,
        op: crate::policy::shadow::ShadowApiOp,
    ) -> BoxFuture<'_, Result<crate::policy::shadow::ShadowReport, ServiceError>> {
        let _ = op;
        not_served()
    }
    /// The result of an earlier request.
    fn get_signature(
        &self,
        tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<SignResult, ServiceError>>;
    /// Signer health.
    fn status(&self) -> BoxFuture<'_, Result<StatusInfo, ServiceError>>;
    /// Creates a payout (idempotent per `payout_id`) and submits it to the
    /// policy; `client` names the API client.
    fn create_payout(
        &self,
        caller: Caller,
        req: PayoutRequest,
    ) -> BoxFuture<'_, Result<PayoutInfo, ServiceError>> {
        let _ = (caller, req);
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// One payout.
    fn get_payout(
        &self,
        tenant: Tenant,
        payout_id: String,
    ) -> BoxFuture<'_, Result<PayoutInfo, ServiceError>> {
        let _ = (tenant, payout_id);
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// A page of payouts, newest first, optionally of one chain.
    fn list_payouts(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<PayoutList, ServiceError>> {
        let _ = (tenant, chain, cursor, limit);
        Box::pin(async { Err(ServiceError::NotFound("payouts are not served here".into())) })
    }
    /// Creates a merchant (operator only).
    fn create_merchant(
        &self,
        req: CreateMerchantRequest,
    ) -> BoxFuture<'_, Result<MerchantInfo, ServiceError>> {
        let _ = req;
        not_served()
    }
    /// Every merchant.
    fn list_merchants(&self) -> BoxFuture<'_, Result<MerchantList, ServiceError>> {
        not_served()
    }
    /// Changes a merchant's rate limit, request signing or enablement.
    fn merchant_settings(
        &self,
        merchant_id: String,
        settings: MerchantSettings,
    ) -> BoxFuture<'_, Result<MerchantSettingsResult, ServiceError>> {
        let _ = (merchant_id, settings);
        not_served()
    }
    /// Issues an API key for a merchant.
    fn issue_merchant_key(
        &self,
        merchant_id: String,
        req: IssueMerchantKeyRequest,
    ) -> BoxFuture<'_, Result<IssuedMerchantKey, ServiceError>> {
        let _ = (merchant_id, req);
        not_served()
    }
    /// A merchant's API keys.
    fn list_merchant_keys(
        &self,
        merchant_id: String,
    ) -> BoxFuture<'_, Result<MerchantKeyList, ServiceError>> {
        let _ = merchant_id;
        not_served()
    }
    /// Rotates an API key (the old one works for the overlap).
    fn rotate_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
        req: RotateMerchantKeyRequest,
    ) -> BoxFuture<'_, Result<IssuedMerchantKey, ServiceError>> {
        let _ = (merchant_id, key_id, req);
        not_served()
    }
    /// Revokes an API key at once.
    fn revoke_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
    ) -> BoxFuture<'_, Result<MerchantKeyInfo, ServiceError>> {
        let _ = (merchant_id, key_id);
        not_served()
    }
    /// Creates a payment order (or answers the merchant's existing one with
    /// this `order_id`): the order, and whether it is new.
    fn create_order(
        &self,
        caller: Caller,
        req: CreateOrderRequest,
    ) -> BoxFuture<'_, Result<(bool, OrderInfo), ServiceError>> {
        let _ = (caller, req);
        not_served()
    }
    /// One of the caller's orders.
    fn get_order(
        &self,
        caller: Caller,
        order_id: String,
    ) -> BoxFuture<'_, Result<OrderInfo, ServiceError>> {
        let _ = (caller, order_id);
        not_served()
    }
    /// A page of the caller's orders, newest first.
    fn list_orders(
        &self,
        caller: Caller,
        state: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<OrderList, ServiceError>> {
        let _ = (caller, state, cursor, limit);
        not_served()
    }
    /// Conditional payouts (`/v1/conditional-payouts`).
    fn escrows(
        &self,
        caller: Caller,
        op: crate::escrow::EscrowApiOp,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::ConditionalPayoutInfo, ServiceError>> {
        let _ = (caller, op);
        Box::pin(async {
            Err(ServiceError::NotFound(
                "conditional payouts are not served here".into(),
            ))
        })
    }
    /// Scheduled payouts (`/v1/schedules`).
    fn schedules(
        &self,
        caller: Caller,
        op: crate::schedules::ScheduleApiOp,
    ) -> BoxFuture<'_, Result<crate::schedules::ScheduleAnswer, ServiceError>> {
        let _ = (caller, op);
        Box::pin(async {
            Err(ServiceError::NotFound(
                "schedules are not served here".into(),
            ))
        })
    }
    /// Webhook endpoints: create, list, get, rotate, enable/disable,
    /// deliveries and redelivery.
    fn webhooks(
        &self,
        caller: Caller,
        op: WebhookOp,
    ) -> BoxFuture<'_, Result<WebhookAnswer, ServiceError>> {
        let _ = (caller, op);
        not_served()
    }
    /// Customers' payment authentication (`/v1/customers/...`).
    fn customers(
        &self,
        caller: Caller,
        op: crate::risk::customers::CustomerOp,
    ) -> BoxFuture<'_, Result<crate::risk::customers::CustomerAnswer, ServiceError>> {
        let _ = (caller, op);
        not_served()
    }
    /// The risk module's reviews and freezes.
    fn risk(
        &self,
        caller: Caller,
        op: RiskApiOp,
    ) -> BoxFuture<'_, Result<RiskAnswer, ServiceError>> {
        let _ = (caller, op);
        not_served()
    }
    /// Ledger balances (`GET /v1/balances`).
    fn balances(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        account: Option<String>,
    ) -> BoxFuture<'_, Result<crate::treasury::views::BalanceList, ServiceError>> {
        let _ = (tenant, chain, account);
        not_served()
    }
    /// A page of the ledger's journal (`GET /v1/ledger`).
    fn ledger(
        &self,
        tenant: Tenant,
        account: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<crate::treasury::views::LedgerPage, ServiceError>> {
        let _ = (tenant, account, cursor, limit);
        not_served()
    }
    /// Books a funding or correction entry by hand (operators).
    fn book_entry(
        &self,
        entry: crate::treasury::views::ManualEntry,
    ) -> BoxFuture<'_, Result<crate::treasury::views::LedgerEntryView, ServiceError>> {
        let _ = entry;
        not_served()
    }
    /// Settlement runs (`GET /v1/settlements`).
    fn settlements(
        &self,
        tenant: Tenant,
        merchant_id: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::treasury::settlement::RunView>, ServiceError>> {
        let _ = (tenant, merchant_id);
        not_served()
    }
    /// A settlement run's report (`GET /v1/settlements/{run_id}`).
    fn settlement_report(
        &self,
        tenant: Tenant,
        run_id: String,
    ) -> BoxFuture<'_, Result<crate::treasury::settlement::SettlementReport, ServiceError>> {
        let _ = (tenant, run_id);
        not_served()
    }
    /// The treasury's tiers (`GET /v1/treasury`, operator only).
    fn treasury(&self) -> BoxFuture<'_, Result<Vec<crate::treasury::TierView>, ServiceError>> {
        not_served()
    }
    /// One page of one section of a merchant's reconciliation report.
    fn reconcile(
        &self,
        caller: Caller,
        query: crate::reconcile::ReconcileQuery,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::ReconciliationReport, ServiceError>> {
        let _ = (caller, query);
        not_served()
    }
    /// The caller of a valid operator token or merchant API key, or `None`.
    fn authenticate(&self, token: String) -> BoxFuture<'_, Result<Option<Caller>, ServiceError>>;
    /// The coordinator's clock (Unix seconds): signed requests' timestamps
    /// are compared with it.
    fn now_unix(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
    /// Records a signed request's nonce for `merchant_id` until
    /// `expires_at`; `false` if it was used before (a replay).
    fn use_request_nonce(
        &self,
        merchant_id: String,
        nonce: String,
        expires_at: i64,
    ) -> BoxFuture<'_, Result<bool, ServiceError>> {
        let _ = (merchant_id, nonce, expires_at);
        Box::pin(async {
            Err(ServiceError::Internal(
                "signed requests are not served here".into(),
            ))
        })
    }
}

fn not_served<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, ServiceError>> {
    Box::pin(async {
        Err(ServiceError::NotFound(
            "merchants are not served here".into(),
        ))
    })
}
