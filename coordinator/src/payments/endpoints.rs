//! The payout endpoints' side of the coordinator: `POST /v1/payouts`
//! (check, quote, take a nonce, build, submit), resuming a recorded payout,
//! and the API views of one payout and of a page of them.

use std::sync::Arc;

use keyfold_chain::evm;
use keyfold_chain::registry::ChainFamily;
use keyfold_chain::solana;
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_policy::{Payload, Request as PolicyRequest, Tier};
use keyfold_proto::api::{PayoutInfo, PayoutList, PayoutRequest, RequestState};
use keyfold_proto::signer::wallet_name;
use keyfold_store::{KeyRecord, NewPayout, PayoutRow, Recorded};

use super::payout::{self, request_id_of, StoredPayout};
use super::{internal, log_nonce_note, source_address, Payments};
use crate::requests::record::StoredRequest;
use crate::service::{Caller, ServiceError, Tenant};
use crate::Coordinator;

impl Coordinator {
    pub(crate) fn payments(&self) -> Result<&Arc<Payments>, ServiceError> {
        self.payments
            .as_ref()
            .ok_or_else(|| ServiceError::NotFound("this coordinator has no payments module".into()))
    }

    /// `POST /v1/payouts` (see the module docs).
    pub(crate) async fn create_payout(
        &self,
        caller: Caller,
        req: PayoutRequest,
    ) -> Result<PayoutInfo, ServiceError> {
        self.create_payout_for(caller.client(), caller.tenant(), req)
            .await
    }

    /// `POST /v1/payouts` in the name of API client `client` of `tenant`.
    pub(crate) async fn create_payout_for(
        &self,
        client: &str,
        tenant: Tenant,
        req: PayoutRequest,
    ) -> Result<PayoutInfo, ServiceError> {
        self.create_payout_from(client, tenant, req, None).await
    }

    /// A payout in the name of API client `client` of `tenant` (a caller,
    /// or the owner of a schedule or conditional payout), made for `origin`
    /// (`None`: the caller's own request), which the policy can match.
    pub(crate) async fn create_payout_from(
        &self,
        client: &str,
        tenant: Tenant,
        req: PayoutRequest,
        origin: Option<keyfold_policy::RequestOrigin>,
    ) -> Result<PayoutInfo, ServiceError> {
        let client = client.to_string();
        let payments = self.payments()?.clone();
        // Sandbox keys on sandbox chains, live keys on live ones.
        let entry = payments.entry_for(&tenant, &req.chain)?.clone();
        let mut c = payout::check(&req, &entry)?;
        if let Some(client) = &req.client {
            let risk = self.risk_module().map_err(|_| {
                ServiceError::BadRequest(
                    "client: this coordinator runs no risk module ([risk] enabled = false)".into(),
                )
            })?;
            c.client = Some(crate::risk::context::check(
                client,
                tenant.merchant(),
                risk.key(),
            )?);
        }
        // A merchant pays only from its own wallets; another's is unknown.
        self.check_key_visible(&tenant, &c.wallet).await?;
        let key = self.key(&c.wallet)?;
        let from = source_address(&key, c.derivation_path.as_deref(), entry.family)?;
        let fingerprint = c.fingerprint();
        let request_id = request_id_of(&c.payout_id);
        // One submission of a payout id at a time (not the request's own
        // lock: submitting the request takes that one).
        let _guard = self
            .locks
            .lock(&format!("payout-intake/{}", c.payout_id))
            .await;
        let pid = c.payout_id.clone();
        if let Some(row) = payments.blocking(move |s| s.get_payout(&pid)).await? {
            if row.fingerprint != fingerprint || row.merchant_id.as_deref() != tenant.merchant() {
                return Err(ServiceError::Conflict(format!(
                    "payout_id {} was used for another payout",
                    c.payout_id
                )));
            }
            if row.nonce.is_some() {
                return self.resume_payout(&client, row, false).await;
            }
            // Failed before it took a nonce: try again.
        }
        // The customer's proofs, checked once per payout (a retry of a
        // recorded payout was answered above and proves nothing again).
        if let (Some(raw), Some(pc)) = (&req.client, c.client.as_mut()) {
            let payment = keyfold_risk::Payment {
                chain: entry.id.clone(),
                asset: c.asset.clone(),
                amount: c.amount,
                destination: keyfold_risk::canonical_destination(&c.to).into_owned(),
                wallet: c.wallet.clone(),
                merchant: pc.merchant.clone(),
            };
            let customer = pc.context.customer_id.clone().unwrap_or_default();
            let proved = self
                .authenticate_payment(
                    raw,
                    &customer,
                    pc.context.device_id.as_deref(),
                    &payment,
                    &c.payout_id,
                    &request_id,
                )
                .await?;
            pc.context.auth = proved.methods;
            if let Some(tier) = proved.tier {
                pc.context.kyc_tier = tier;
            }
            pc.device_too_new = proved.device_too_new;
            self.keep_raw_context(&request_id, raw.ip.as_deref())
                .await?;
        }
        let new = |chain_next_nonce| NewPayout {
            payout_id: c.payout_id.clone(),
            request_id: request_id.clone(),
            fingerprint: fingerprint.clone(),
            chain: entry.id.clone(),
            source: from.clone(),
            chain_next_nonce,
            merchant_id: tenant.merchant().map(str::to_string),
        };
        let base = StoredPayout {
            payout_id: c.payout_id.clone(),
            wallet: c.wallet.clone(),
            derivation_path: c.derivation_path.clone(),
            chain: entry.id.clone(),
            chain_id: entry.chain_id,
            asset: c.asset.clone(),
            token_contract: c.token_contract.clone(),
            decimals: c.decimals,
            from: from.clone(),
            to: c.to.clone(),
            amount: c.amount.to_string(),
            fee_cap: String::new(),
            confirmations_required: entry.confirmations,
            reference: c.reference.clone(),
            evm: None,
            unsigned_tx: String::new(),
            client: c.client.clone(),
            origin,
        };
        let row = match entry.family {
            ChainFamily::Evm => {
                let from_addr = evm::parse_address("from", &from).map_err(internal)?;
                let quote = match payments.quote(&entry, &c, from_addr).await? {
                    Ok(q) => q,
                    Err(reason) => {
                        tracing::warn!(payout = %c.payout_id, %reason, "payout cannot be paid");
                        let json = serde_json::to_string(&base).map_err(internal)?;
                        let (n, j, r) = (new(0), json, reason);
                        let row = payments
                            .blocking(move |s| s.record_failed_payout(&n, &j, &r))
                            .await?;
                        let (Recorded::New(row, _) | Recorded::Existing(row)) = row;
                        return self.payout_view(row).await;
                    }
                };
                let to = evm::parse_address("to", &c.to).map_err(internal)?;
                let token = c
                    .token_contract
                    .as_deref()
                    .map(|t| evm::parse_address("token_contract", t))
                    .transpose()
                    .map_err(internal)?;
                let chain_id = entry
                    .chain_id
                    .ok_or_else(|| internal(format!("EVM chain {} has no chain id", entry.id)))?;
                let amount = evm::U256::from(c.amount);
                let n = new(quote.chain_next_nonce);
                let base = base.clone();
                payments
                    .blocking(move |s| {
                        s.insert_payout(&n, |nonce| {
                            let t = evm::Transfer {
                                chain_id,
                                nonce,
                                gas_limit: quote.gas_limit,
                                max_fee_per_gas: quote.max_fee_per_gas,
                                max_priority_fee_per_gas: quote.max_priority_fee_per_gas,
                                to,
                                amount,
                                token,
                            };
                            let stored = StoredPayout {
                                fee_cap: t.fee_cap().to_string(),
                                unsigned_tx: hex::encode(evm::unsigned_payload(&t)),
                                evm: Some(t),
                                ..base
                            };
                            serde_json::to_string(&stored).map_err(|e| {
                                keyfold_store::StoreError::InvalidInput {
                                    field: "payout_json",
                                    reason: e.to_string(),
                                }
                            })
                        })
                    })
                    .await?
            }
            ChainFamily::Solana => {
                let blockhash = c.recent_blockhash.ok_or_else(|| {
                    internal("a checked Solana payout has no blockhash".to_string())
                })?;
                let from_key = solana::parse_address("from", &from).map_err(internal)?;
                let to_key = solana::parse_address("to", &c.to).map_err(internal)?;
                let amount = u64::try_from(c.amount).map_err(|_| {
                    ServiceError::BadRequest(format!(
                        "amount {} is above what a Solana transfer can carry (2^64 - 1 base units)",
                        c.amount
                    ))
                })?;
                let message = match &c.token_contract {
                    None => solana::sol_transfer_message(&solana::SolTransfer {
                        from: from_key,
                        to: to_key,
                        lamports: amount,
                        recent_blockhash: blockhash,
                    }),
                    Some(mint) => solana::spl_transfer_message(&solana::SplTransfer {
                        owner: from_key,
                        mint: solana::parse_address("token_contract", mint).map_err(internal)?,
                        to_owner: to_key,
                        amount,
                        decimals: c.decimals,
                        recent_blockhash: blockhash,
                    }),
                };
                let stored = StoredPayout {
                    fee_cap: keyfold_chain::check::SOLANA_FEE_LAMPORTS.to_string(),
                    unsigned_tx: hex::encode(message),
                    ..base
                };
                let json = serde_json::to_string(&stored).map_err(internal)?;
                let n = new(0);
                payments
                    .blocking(move |s| s.insert_payout(&n, move |_| Ok(json)))
                    .await?
            }
        };
        let (row, fresh) = match row {
            Recorded::New(row, note) => {
                log_nonce_note(&entry.id, &row.source, note);
                (row, true)
            }
            Recorded::Existing(existing) => (existing, false),
        };
        self.resume_payout(&client, row, fresh).await
    }

    /// Submits (or looks up) the signing request of a recorded payout and
    /// answers its view.
    async fn resume_payout(
        &self,
        client: &str,
        row: PayoutRow,
        fresh: bool,
    ) -> Result<PayoutInfo, ServiceError> {
        let stored = StoredPayout::parse(&row)?;
        // Submitted once: a payout whose request failed stays failed (its
        // nonce went back to the pool). A payout recorded just now has no
        // request yet (`fresh`).
        let submitted = !fresh && self.load(&row.request_id).await?.is_some();
        if !submitted {
            let key = self.key(&stored.wallet)?;
            let request = self.payout_request(client, &row.request_id, &stored, &key)?;
            match self.submit_stored(request).await {
                Ok(_) => {}
                // The payout's state tells what happened.
                Err(
                    ServiceError::PolicyDenied(_)
                    | ServiceError::SigningFailed(_)
                    | ServiceError::Conflict(_)
                    | ServiceError::InProgress(_),
                ) => {}
                Err(e) => return Err(e),
            }
        }
        let id = row.payout_id.clone();
        let row = self
            .payments()?
            .blocking(move |s| s.get_payout(&id))
            .await?
            .ok_or_else(|| internal(format!("payout {} vanished", row.payout_id)))?;
        self.payout_view(row).await
    }

    /// The signing request `request_id` that carries a payout's transaction
    /// (its first, or a replacement).
    pub(crate) fn payout_request(
        &self,
        client: &str,
        request_id: &str,
        stored: &StoredPayout,
        key: &KeyRecord,
    ) -> Result<StoredRequest, ServiceError> {
        let key_id: keyfold_mpc::KeyId = key.key_id.parse().map_err(internal)?;
        let path = stored
            .derivation_path
            .as_deref()
            .map(crate::requests::intake::parse_path)
            .transpose()?;
        #[allow(unused_mut)]
        let mut tx = hex::decode(&stored.unsigned_tx).map_err(internal)?;
        #[cfg(feature = "test-skip-policy")]
        if let Some(to) = &self.cfg.policy.tamper_payout_to {
            tamper_recipient(&mut tx, to);
        }
        Ok(StoredRequest {
            key_id: key.key_id.clone(),
            request: PolicyRequest {
                id: request_id.to_string(),
                wallet: wallet_name(&key_id, path.as_ref()),
                // A cold (HSM) key's payout is judged by the cold rules:
                // it never borrows the hot wallets' allowances.
                tier: if crate::keys::is_cold(key) {
                    Tier::Cold
                } else {
                    Tier::Hot
                },
                asset: stored.asset.clone(),
                amount: stored.amount_base_units(),
                destination: stored.to.clone(),
                initiator: client.to_string(),
                risk: None,
                origin: stored.origin,
                time: 0,
                payload: Payload::ChainTransaction {
                    chain: stored.chain.clone(),
                    chain_id: stored.chain_id,
                    token_contract: stored.token_contract.clone(),
                    source: stored.from.clone(),
                    fee_cap: stored.fee_cap.parse().map_err(internal)?,
                    tx,
                },
            },
            hash: stored.chain_id.map(|_| HashAlg::Keccak256),
            // An HD child signs with full threshold signing (presignatures
            // are for root keys only, docs/mpc.md).
            path: stored.derivation_path.clone(),
            // The customer behind the payout, for the risk module (and
            // shown with the request).
            modules: match &stored.client {
                Some(client) => vec![keyfold_proto::api::ModuleData {
                    module: crate::risk::context::CLIENT_DATA.to_string(),
                    data: serde_json::to_value(client).map_err(internal)?,
                }],
                None => Vec::new(),
            },
        })
    }

    /// The API view of a payout row.
    pub(crate) async fn payout_view(&self, row: PayoutRow) -> Result<PayoutInfo, ServiceError> {
        let stored = StoredPayout::parse(&row)?;
        // Only a transaction that was sent can have been replaced.
        let replacements = if matches!(row.chain_state.as_str(), "unsigned" | "released") {
            Vec::new()
        } else {
            let id = row.payout_id.clone();
            self.payments()?
                .blocking(move |s| s.replacements(&id))
                .await?
        };
        let loaded = self.load(&row.request_id).await?;
        let state = loaded.as_ref().map(|l| l.state);
        // The request's last word explains a payout that ended there (see
        // `payout::view`); one in flight needs none, and skips the read.
        let explains = matches!(
            state,
            Some(
                RequestState::Rejected
                    | RequestState::Expired
                    | RequestState::Cancelled
                    | RequestState::Failed
            )
        );
        let reason = match &loaded {
            Some(l) if explains || row.chain_state == "released" => {
                let status = self.status_of(l).await?;
                status.history.last().map(|t| t.cause.clone())
            }
            _ => None,
        };
        let risk = loaded
            .as_ref()
            .and_then(|l| l.stored.as_ref())
            .and_then(|s| s.modules.iter().find(|m| m.module == crate::risk::MODULE))
            .and_then(|m| serde_json::from_value(m.data.clone()).ok());
        Ok(payout::view(
            &row,
            &stored,
            &replacements,
            state,
            reason,
            risk,
        ))
    }

    /// `GET /v1/payouts/{id}`.
    pub(crate) async fn get_payout(
        &self,
        tenant: Tenant,
        payout_id: String,
    ) -> Result<PayoutInfo, ServiceError> {
        crate::requests::intake::check_client_id("payout_id", &payout_id)?;
        let id = payout_id.clone();
        let row = self
            .payments()?
            .blocking(move |s| s.get_payout(&id))
            .await?
            .filter(|row| tenant.sees(row.merchant_id.as_deref()))
            .ok_or_else(|| ServiceError::NotFound(format!("no payout {payout_id}")))?;
        self.payout_view(row).await
    }

    /// `GET /v1/payouts`: newest first, optionally of one chain.
    pub(crate) async fn list_payouts(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<PayoutList, ServiceError> {
        let payments = self.payments()?.clone();
        let chain = chain
            .map(|c| payments.entry(&c).map(|e| e.id.clone()))
            .transpose()?;
        let before = crate::requests::view::parse_cursor(cursor.as_deref())?;
        let limit = limit
            .unwrap_or(100)
            .clamp(1, keyfold_store::MAX_PAYOUT_PAGE);
        let rows = payments
            .blocking(move |s| {
                s.list_payouts(chain.as_deref(), tenant.merchant(), before, limit + 1)
            })
            .await?;
        let more = rows.len() > limit;
        let mut payouts = Vec::new();
        let mut last = None;
        for row in rows.into_iter().take(limit) {
            last = Some(row.seq);
            payouts.push(self.payout_view(row).await?);
        }
        Ok(PayoutList {
            payouts,
            next_cursor: if more {
                last.map(|s| s.to_string())
            } else {
                None
            },
        })
    }
}

/// TEST ONLY: a coordinator that rewrites the recipient inside an EVM
/// payout's transaction (the typed request keeps the real one).
#[cfg(feature = "test-skip-policy")]
fn tamper_recipient(tx: &mut Vec<u8>, to: &str) {
    if let (Ok(mut t), Ok(to)) = (evm::decode_unsigned(tx), evm::parse_address("to", to)) {
        t.to = to;
        *tx = evm::unsigned_payload(&t);
        tracing::error!("TEST ONLY: this payout's transaction now pays someone else");
    }
}
