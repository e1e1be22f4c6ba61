//! The coordinator: its parts, wired together, and the operations the REST
//! API calls ([`CoordinatorApi`]). Each concern lives in its own module:
//!
//! | concern | module |
//! |---|---|
//! | start-up, recovery after a crash | [`crate::bootstrap`], [`crate::recovery`] |
//! | the write path (audit log + store, group commit) | [`crate::journal`] |
//! | signing requests and their lifecycle | [`crate::requests`] |
//! | the policy in force, its aggregates, updates | [`crate::policy`] |
//! | keys (DKG, cold keys, idempotent creation) | [`crate::keys`] |
//! | the signers: commands, liveness | [`crate::signers`] |
//! | getting a signature (presignature, full, HSM), blame | [`crate::signing`], [`crate::blame`] |
//! | the presignature index and its refill | [`crate::presig_pool`] |
//! | modules (payments, risk, settlement) | [`crate::modules`] |
//! | background loops | [`crate::run`] |

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};

use keyfold_audit::Event;
use keyfold_policy::{Approval, SignedPolicy};
use keyfold_proto::api::{
    CreateKeyRequest, CreateMerchantRequest, IssueMerchantKeyRequest, IssuedMerchantKey, KeyInfo,
    KeyList, MerchantInfo, MerchantKeyInfo, MerchantKeyList, MerchantList, MerchantSettings,
    MerchantSettingsResult, PolicyInfo, RequestList, RequestStatus, RotateMerchantKeyRequest,
    SignOutcome, SignRequest, SignResult, SignerHealth, StatusInfo,
};
use keyfold_store::{CoordinatorStore, KeyRecord, Op, StoreError};

use crate::clock::SharedClock;
use crate::config::CoordinatorConfig;
use crate::journal::Journal;
use crate::keys::is_cold;
use crate::modules::Modules;
use crate::policy::EnforcedPolicy;
use crate::presig_pool::{pool_set, PresigPool};
use crate::requests::lifecycle::Limits;
use crate::requests::locks::RequestLocks;
use crate::requests::view::Page;
use crate::service::{
    BoxFuture, Caller, CoordinatorApi, KeyPage, ServiceError, Tenant, WebhookAnswer, WebhookOp,
};
use crate::signers::{Liveness, SignerClient};
use crate::signing::{key_info, SigningEngine};

/// The coordinator (see the module docs).
pub struct Coordinator {
    /// Itself, so work can outlive a dropped HTTP request.
    pub(crate) me: Weak<Coordinator>,
    pub(crate) cfg: CoordinatorConfig,
    pub(crate) clock: SharedClock,
    pub(crate) store: Arc<CoordinatorStore>,
    pub(crate) journal: Journal,
    pub(crate) policy: EnforcedPolicy,
    pub(crate) client: SignerClient,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) pool: Arc<PresigPool>,
    pub(crate) signing: SigningEngine,
    pub(crate) modules: Modules,
    /// The payments module (payouts), also in `modules`.
    pub(crate) payments: Option<Arc<crate::payments::Payments>>,
    /// The treasury (settlement module), if tiers are configured.
    pub(crate) treasury: Option<Arc<crate::treasury::Treasury>>,
    /// The risk module (also in `modules`), if enabled.
    pub(crate) risk: Option<Arc<crate::risk::Risk>>,
    pub(crate) locks: RequestLocks,
    /// Every key, by id (keys are few and never change once made).
    pub(crate) keys: RwLock<HashMap<String, KeyRecord>>,
    pub(crate) limits: Limits,
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

impl Coordinator {
    /// Runs a store read off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&CoordinatorStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    /// Runs `work` on its own task: a client that disconnects or times out
    /// does not cancel a signing half-way, so a request is never left in
    /// progress forever; its outcome is stored and a retry gets it.
    async fn detached<T, F>(&self, work: impl FnOnce(Arc<Self>) -> F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
    {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| ServiceError::Internal("coordinator is shutting down".into()))?;
        tokio::spawn(work(me))
            .await
            .map_err(|e| ServiceError::Internal(format!("task failed: {e}")))?
    }

    /// The store (token commands and tests).
    pub fn store(&self) -> &Arc<CoordinatorStore> {
        &self.store
    }

    /// The audit trail (checkpoints and tests).
    pub fn audit(&self) -> &Arc<keyfold_audit::Trail> {
        self.journal.trail()
    }

    /// Every key, in creation order.
    pub(crate) fn all_keys(&self) -> Vec<KeyRecord> {
        let mut keys: Vec<KeyRecord> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        keys
    }

    /// Checks a client token: its name, or `None`. The first time a token
    /// is used, its issue is recorded in the audit log first (its name is
    /// the initiator that policy rules match).
    async fn authenticate_token(&self, token: String) -> Result<Option<Caller>, ServiceError> {
        if token.starts_with(keyfold_store::coordinator_merchants::MERCHANT_KEY_PREFIX) {
            let now = self.now_unix();
            let auth = self
                .read(move |s| s.verify_merchant_key(&token, now))
                .await?;
            return Ok(auth.map(|a| Caller::Merchant(Box::new(a))));
        }
        let Some(info) = self.read(move |s| s.verify_token(&token)).await? else {
            return Ok(None);
        };
        if !info.issue_logged {
            self.log_token(info.id, &info.name, false).await?;
        }
        Ok(Some(Caller::Operator(info.name)))
    }

    /// "Not found" for a key `tenant` does not own (the same answer as for
    /// a key that does not exist).
    pub(crate) async fn check_key_visible(
        &self,
        tenant: &Tenant,
        key_id: &str,
    ) -> Result<(), ServiceError> {
        let Some(merchant) = tenant.merchant() else {
            return Ok(());
        };
        crate::requests::intake::check_key_id(key_id)?;
        let id = key_id.to_string();
        let owner = self.read(move |s| s.key_owner(&id)).await?;
        if owner.as_deref() == Some(merchant) {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no key {key_id}")))
        }
    }

    /// Records a token's issue or revocation in the audit log.
    pub(crate) async fn log_token(
        &self,
        id: i64,
        name: &str,
        revoked: bool,
    ) -> Result<(), ServiceError> {
        self.journal
            .write(
                vec![Event::ClientToken {
                    token_id: u64::try_from(id).unwrap_or(0),
                    name: name.to_string(),
                    action: if revoked { "revoked" } else { "issued" }.into(),
                }],
                vec![Op::TokenLogged { id, revoked }],
            )
            .await
            .map_err(|e| self.journal_error(e))
    }

    /// Records token issues and revocations made by `keyfold token` (the
    /// store is shared with the command) that the log does not hold yet.
    pub async fn log_token_events(&self) {
        match self.read(|s| s.unlogged_token_events()).await {
            Ok(events) => {
                for (id, name, revoked) in events {
                    if let Err(e) = self.log_token(id, &name, revoked).await {
                        tracing::error!(token = %name, error = %e, "cannot record a token event in the audit log");
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read token events"),
        }
    }

    async fn status_info(&self) -> Result<StatusInfo, ServiceError> {
        let signers: Vec<SignerHealth> = self
            .liveness
            .probe()
            .await
            .into_iter()
            .map(|(s, r)| match r {
                Ok(st) => SignerHealth {
                    node: s.node_id,
                    live: true,
                    error: None,
                    primes_ready: Some(st.primes_ready),
                    primes_generating: Some(st.primes_generating),
                    policy_version: Some(st.policy_version),
                },
                Err(e) => SignerHealth {
                    node: s.node_id,
                    live: false,
                    error: Some(e.to_string()),
                    primes_ready: None,
                    primes_generating: None,
                    policy_version: None,
                },
            })
            .collect();
        let live: HashSet<String> = signers
            .iter()
            .filter(|h| h.live)
            .map(|h| h.node.clone())
            .collect();
        let keys = self.all_keys();
        let presignatures = keys
            .iter()
            .filter(|k| k.curve == keyfold_store::Curve::Secp256k1 && !is_cold(k))
            .filter_map(|k| pool_set(k, &live).map(|set| self.pool.count(&k.key_id, set.parties())))
            .sum();
        Ok(StatusInfo {
            signers,
            keys: keys.len(),
            presignatures,
            policy_version: self.policy.current().version(),
        })
    }

    /// `GET /v1/keys`: a page in creation order.
    async fn key_page(&self, tenant: Tenant, page: KeyPage) -> Result<KeyList, ServiceError> {
        let limit = page.limit.unwrap_or(100);
        if limit == 0 || limit > 500 {
            return Err(ServiceError::BadRequest("limit must be 1 to 500".into()));
        }
        let after = crate::requests::view::parse_cursor(page.cursor.as_deref())?;
        let mut rows = self
            .read(move |s| s.list_keys_page(after, tenant.merchant(), limit + 1))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok(KeyList {
            next_cursor: if more {
                rows.last().map(|(seq, _)| seq.to_string())
            } else {
                None
            },
            keys: rows.iter().map(|(_, k)| key_info(k)).collect(),
        })
    }
}

impl CoordinatorApi for Coordinator {
    fn create_key(
        &self,
        tenant: Tenant,
        req: CreateKeyRequest,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.create_key(tenant, req).await }))
    }

    fn list_keys(
        &self,
        tenant: Tenant,
        page: KeyPage,
    ) -> BoxFuture<'_, Result<KeyList, ServiceError>> {
        Box::pin(self.key_page(tenant, page))
    }

    fn get_key(
        &self,
        tenant: Tenant,
        key_id: String,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        Box::pin(async move {
            self.check_key_visible(&tenant, &key_id).await?;
            self.key_info(&key_id)
        })
    }

    fn create_payout(
        &self,
        caller: Caller,
        req: keyfold_proto::api::PayoutRequest,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::PayoutInfo, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.create_payout(caller, req).await }))
    }

    fn get_payout(
        &self,
        tenant: Tenant,
        payout_id: String,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::PayoutInfo, ServiceError>> {
        Box::pin(self.get_payout(tenant, payout_id))
    }

    fn list_payouts(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::PayoutList, ServiceError>> {
        Box::pin(self.list_payouts(tenant, chain, cursor, limit))
    }

    fn sign(
        &self,
        caller: Caller,
        req: SignRequest,
    ) -> BoxFuture<'_, Result<SignOutcome, ServiceError>> {
        Box::pin(self.detached(|me| async move {
            // A merchant signs only with its own keys; another's is unknown.
            me.check_key_visible(&caller.tenant(), &req.key_id).await?;
            me.submit(caller.client().to_string(), req).await
        }))
    }

    fn get_request(
        &self,
        tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(async move { self.request_status_for(&tenant, &request_id).await })
    }

    fn list_requests(
        &self,
        tenant: Tenant,
        page: Page,
    ) -> BoxFuture<'_, Result<RequestList, ServiceError>> {
        Box::pin(self.list_requests(tenant, page))
    }

    fn approve(
        &self,
        client: String,
        request_id: String,
        approval: Approval,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(
            self.detached(|me| async move { me.add_approval(client, request_id, approval).await }),
        )
    }

    fn cancel(
        &self,
        caller: Caller,
        request_id: String,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.cancel(caller, request_id, reason).await }))
    }

    fn policy(&self) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(async move { self.policy_info() })
    }

    fn update_policy(
        &self,
        update: SignedPolicy,
    ) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.update_policy(update).await }))
    }

    fn policy_shadow(
        &self,
        op: crate::policy::shadow::ShadowApiOp,
    ) -> BoxFuture<'_, Result<crate::policy::shadow::ShadowReport, ServiceError>> {
        // Detached like a policy update: an install half-way (evaluations
        // waiting) is not cancelled by a client that goes away.
        Box::pin(self.detached(|me| async move { me.shadow_api(op).await }))
    }

    fn get_signature(
        &self,
        tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<SignResult, ServiceError>> {
        Box::pin(async move {
            let l = self.load_for(&tenant, &request_id).await?;
            match l.row.result_json {
                Some(json) => serde_json::from_str(&json).map_err(internal),
                None => Err(ServiceError::NotFound(format!(
                    "request {request_id} has no signature ({})",
                    l.state
                ))),
            }
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<StatusInfo, ServiceError>> {
        Box::pin(self.status_info())
    }

    fn create_merchant(
        &self,
        req: CreateMerchantRequest,
    ) -> BoxFuture<'_, Result<MerchantInfo, ServiceError>> {
        Box::pin(self.create_merchant(req))
    }

    fn list_merchants(&self) -> BoxFuture<'_, Result<MerchantList, ServiceError>> {
        Box::pin(self.list_merchants())
    }

    fn merchant_settings(
        &self,
        merchant_id: String,
        settings: MerchantSettings,
    ) -> BoxFuture<'_, Result<MerchantSettingsResult, ServiceError>> {
        Box::pin(self.merchant_settings(merchant_id, settings))
    }

    fn issue_merchant_key(
        &self,
        merchant_id: String,
        req: IssueMerchantKeyRequest,
    ) -> BoxFuture<'_, Result<IssuedMerchantKey, ServiceError>> {
        Box::pin(self.issue_merchant_key(merchant_id, req))
    }

    fn list_merchant_keys(
        &self,
        merchant_id: String,
    ) -> BoxFuture<'_, Result<MerchantKeyList, ServiceError>> {
        Box::pin(self.list_merchant_keys(merchant_id))
    }

    fn rotate_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
        req: RotateMerchantKeyRequest,
    ) -> BoxFuture<'_, Result<IssuedMerchantKey, ServiceError>> {
        Box::pin(self.rotate_merchant_key(merchant_id, key_id, req))
    }

    fn revoke_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
    ) -> BoxFuture<'_, Result<MerchantKeyInfo, ServiceError>> {
        Box::pin(self.revoke_merchant_key(merchant_id, key_id))
    }

    fn create_order(
        &self,
        caller: Caller,
        req: keyfold_proto::api::CreateOrderRequest,
    ) -> BoxFuture<'_, Result<(bool, keyfold_proto::api::OrderInfo), ServiceError>> {
        Box::pin(self.create_order(caller, req))
    }

    fn get_order(
        &self,
        caller: Caller,
        order_id: String,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::OrderInfo, ServiceError>> {
        Box::pin(self.get_order(caller, order_id))
    }

    fn list_orders(
        &self,
        caller: Caller,
        state: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::OrderList, ServiceError>> {
        Box::pin(self.list_orders(caller, state, cursor, limit))
    }

    fn webhooks(
        &self,
        caller: Caller,
        op: WebhookOp,
    ) -> BoxFuture<'_, Result<WebhookAnswer, ServiceError>> {
        Box::pin(async move {
            Ok(match op {
                WebhookOp::Create(req) => {
                    WebhookAnswer::Secret(self.create_webhook(caller, req).await?)
                }
                WebhookOp::List => WebhookAnswer::List(self.list_webhooks(caller).await?),
                WebhookOp::Get(id) => WebhookAnswer::Endpoint(self.get_webhook(caller, id).await?),
                WebhookOp::Rotate(id, req) => {
                    WebhookAnswer::Secret(self.rotate_webhook(caller, id, req).await?)
                }
                WebhookOp::SetEnabled(id, on) => {
                    WebhookAnswer::Endpoint(self.set_webhook_enabled(caller, id, on).await?)
                }
                WebhookOp::Deliveries {
                    endpoint_id,
                    cursor,
                    limit,
                } => WebhookAnswer::Deliveries(
                    self.list_webhook_deliveries(caller, endpoint_id, cursor, limit)
                        .await?,
                ),
                WebhookOp::Redeliver(id, event) => {
                    self.redeliver_webhook(caller, id, event).await?;
                    WebhookAnswer::Scheduled
                }
            })
        })
    }

    fn reconcile(
        &self,
        caller: Caller,
        query: crate::reconcile::ReconcileQuery,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::ReconciliationReport, ServiceError>> {
        Box::pin(self.reconcile(caller, query))
    }

    fn balances(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        account: Option<String>,
    ) -> BoxFuture<'_, Result<crate::treasury::views::BalanceList, ServiceError>> {
        Box::pin(Coordinator::balances(self, tenant, chain, account))
    }

    fn ledger(
        &self,
        tenant: Tenant,
        account: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> BoxFuture<'_, Result<crate::treasury::views::LedgerPage, ServiceError>> {
        Box::pin(self.ledger_page(tenant, account, cursor, limit))
    }

    fn book_entry(
        &self,
        entry: crate::treasury::views::ManualEntry,
    ) -> BoxFuture<'_, Result<crate::treasury::views::LedgerEntryView, ServiceError>> {
        Box::pin(self.book_manual(entry))
    }

    fn settlements(
        &self,
        tenant: Tenant,
        merchant_id: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<crate::treasury::settlement::RunView>, ServiceError>> {
        Box::pin(self.settlement_list(tenant, merchant_id))
    }

    fn settlement_report(
        &self,
        tenant: Tenant,
        run_id: String,
    ) -> BoxFuture<'_, Result<crate::treasury::settlement::SettlementReport, ServiceError>> {
        Box::pin(Coordinator::settlement_report(self, tenant, run_id))
    }

    fn treasury(&self) -> BoxFuture<'_, Result<Vec<crate::treasury::TierView>, ServiceError>> {
        Box::pin(self.treasury_view())
    }

    fn risk(
        &self,
        caller: Caller,
        op: crate::service::RiskApiOp,
    ) -> BoxFuture<'_, Result<crate::service::RiskAnswer, ServiceError>> {
        Box::pin(self.risk_api(caller, op))
    }

    fn escrows(
        &self,
        caller: Caller,
        op: crate::escrow::EscrowApiOp,
    ) -> BoxFuture<'_, Result<keyfold_proto::api::ConditionalPayoutInfo, ServiceError>> {
        Box::pin(self.escrow_api(caller, op))
    }

    fn schedules(
        &self,
        caller: Caller,
        op: crate::schedules::ScheduleApiOp,
    ) -> BoxFuture<'_, Result<crate::schedules::ScheduleAnswer, ServiceError>> {
        Box::pin(self.schedule_api(caller, op))
    }

    fn customers(
        &self,
        caller: Caller,
        op: crate::risk::customers::CustomerOp,
    ) -> BoxFuture<'_, Result<crate::risk::customers::CustomerAnswer, ServiceError>> {
        Box::pin(self.customer_api(caller, op))
    }

    fn authenticate(&self, token: String) -> BoxFuture<'_, Result<Option<Caller>, ServiceError>> {
        Box::pin(self.authenticate_token(token))
    }

    fn now_unix(&self) -> i64 {
        i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX)
    }

    fn use_request_nonce(
        &self,
        merchant_id: String,
        nonce: String,
        expires_at: i64,
    ) -> BoxFuture<'_, Result<bool, ServiceError>> {
        let now = self.now_unix();
        Box::pin(async move {
            self.read(move |s| s.use_request_nonce(&merchant_id, &nonce, now, expires_at))
                .await
        })
    }
}
