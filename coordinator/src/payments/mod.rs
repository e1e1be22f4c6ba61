//! The payments module's outgoing half: payouts on real chains
//! (`docs/payments.md`).
//!
//! `POST /v1/payouts` ([`Coordinator::create_payout`]) checks the payout
//! against the chain registry, reads the wallet's balance and the network's
//! fees, takes the wallet's next nonce from the durable nonce manager
//! (`keyfold_store::coordinator_payouts`), builds the unsigned transaction
//! (`keyfold_chain`), and submits it as an ordinary signing request whose
//! payload is the transaction: the policy sees chain, asset, token, amount,
//! destination and fee cap; every signer decodes the transaction itself
//! before it signs. Once signed, the module's post-signing steps
//! ([`steps`]) assemble the signed transaction, broadcast it, and follow it
//! to the required depth, rebroadcasting the same bytes if a reorg drops it.

pub mod payout;
pub mod replace;
pub mod steps;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use keyfold_chain::evm;
use keyfold_chain::registry::{ChainEntry, ChainFamily, ChainRegistry};
use keyfold_chain::solana;
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_policy::{Payload, Request as PolicyRequest, Tier};
use keyfold_proto::api::{PayoutInfo, PayoutList, PayoutRequest, RequestState, SignResult};
use keyfold_proto::signer::wallet_name;
use keyfold_proto::Curve;
use keyfold_store::{CoordinatorStore, KeyRecord, NewPayout, NonceNote, PayoutRow, Recorded};

use crate::chain_rpc::evm::{EvmRpc, FeeEstimate};
use crate::clock::SharedClock;
use crate::keys::{from_store, is_cold};
use crate::modules::{Module, StepOutcome};
use crate::requests::record::StoredRequest;
use crate::service::{BoxFuture, ServiceError};
use crate::Coordinator;
use payout::{request_id_of, Checked, StoredPayout};

/// How long one RPC call may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a chain's fee estimate is reused: about a block on the fast
/// chains. A payout's fee cap leaves room for the base fee to double, and a
/// transaction that stalls anyway is replaced with fresh fees.
const FEE_CACHE: Duration = Duration::from_secs(1);

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The payments module: the chain registry, an RPC client per chain that
/// has RPC URLs, and the store its payouts live in.
pub struct Payments {
    registry: ChainRegistry,
    rpcs: HashMap<String, EvmRpc>,
    store: Arc<CoordinatorStore>,
    clock: SharedClock,
    journal: crate::journal::Journal,
    /// The coordinator, to submit replacement transactions' signing
    /// requests (set once it exists; weak, as it owns this module).
    coordinator: OnceLock<Weak<Coordinator>>,
    /// Each chain's latest fee estimate and when it was read.
    fees: std::sync::Mutex<HashMap<String, (std::time::Instant, FeeEstimate)>>,
}

impl Payments {
    /// The module for `registry`'s chains.
    pub fn new(
        registry: ChainRegistry,
        store: Arc<CoordinatorStore>,
        clock: SharedClock,
        journal: crate::journal::Journal,
    ) -> Result<Payments, String> {
        let mut rpcs = HashMap::new();
        for entry in registry.entries() {
            if entry.family == ChainFamily::Evm && !entry.rpc_urls.is_empty() {
                let rpc = EvmRpc::new(entry.rpc_urls.clone(), RPC_TIMEOUT)
                    .map_err(|e| format!("chain {}: {e}", entry.id))?;
                rpcs.insert(entry.id.clone(), rpc);
            }
        }
        Ok(Payments {
            registry,
            rpcs,
            store,
            clock,
            journal,
            coordinator: OnceLock::new(),
            fees: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Gives the module its coordinator (once, at construction).
    pub(crate) fn attach(&self, coordinator: Weak<Coordinator>) {
        let _ = self.coordinator.set(coordinator);
    }

    fn coordinator(&self) -> Option<Arc<Coordinator>> {
        self.coordinator.get().and_then(Weak::upgrade)
    }

    /// The chain registry.
    pub fn registry(&self) -> &ChainRegistry {
        &self.registry
    }

    fn entry(&self, chain: &str) -> Result<&ChainEntry, ServiceError> {
        self.registry.get(chain).ok_or_else(|| {
            let known: Vec<&str> = self
                .registry
                .entries()
                .iter()
                .map(|e| e.id.as_str())
                .collect();
            ServiceError::BadRequest(format!(
                "chain \"{}\" is not in the chain registry (known: {})",
                chain.chars().take(40).collect::<String>(),
                known.join(", ")
            ))
        })
    }

    fn rpc(&self, chain: &str) -> Result<&EvmRpc, ServiceError> {
        self.rpcs.get(chain).ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "chain {chain} has no RPC URL configured: set rpc_urls in the chain registry file (docs/payments.md)"
            ))
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CoordinatorStore) -> Result<T, keyfold_store::StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(internal)?
            .map_err(internal)
    }

    fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The chain's fee estimate, read at most once per [`FEE_CACHE`].
    async fn fee_estimate(&self, chain: &str) -> Result<FeeEstimate, ServiceError> {
        let cached = self
            .fees
            .lock()
            .ok()
            .and_then(|m| m.get(chain).copied())
            .filter(|(at, _)| at.elapsed() < FEE_CACHE);
        if let Some((_, fees)) = cached {
            return Ok(fees);
        }
        let fees = self.rpc(chain)?.fee_estimate().await.map_err(|e| {
            ServiceError::ChainUnavailable(format!(
                "chain {chain} RPC (nothing was signed; retry the same payout): {e}"
            ))
        })?;
        if let Ok(mut m) = self.fees.lock() {
            m.insert(chain.to_string(), (std::time::Instant::now(), fees));
        }
        Ok(fees)
    }
}

/// The paying address of `key` (or its HD child at `path`) on a chain of
/// `family`.
fn source_address(
    key: &KeyRecord,
    path: Option<&str>,
    family: ChainFamily,
) -> Result<String, ServiceError> {
    let bad = |m: String| ServiceError::BadRequest(m);
    if is_cold(key) {
        return Err(bad(format!(
            "wallet {} is a cold (HSM) key; payouts are paid from hot wallets",
            key.key_id
        )));
    }
    match (family, from_store(key.curve)) {
        (ChainFamily::Evm, Curve::Secp256k1) => {
            let public_key = match path {
                Some(p) => {
                    let p = crate::requests::intake::parse_path(p)?;
                    crate::signing::verify::derive_child(key, &p)?
                }
                None => key.public_key.clone(),
            };
            evm::address_of_public_key(&public_key)
                .map(|a| a.to_checksum(None))
                .map_err(internal)
        }
        (ChainFamily::Solana, Curve::Ed25519) => {
            let pk: [u8; 32] = key
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| internal(format!("key {} is not 32 bytes", key.key_id)))?;
            Ok(solana::address_of_public_key(&pk))
        }
        (family, curve) => Err(bad(format!(
            "wallet {} is a {curve} key; {family:?} chains need a {} key",
            key.key_id,
            if family == ChainFamily::Evm {
                "secp256k1"
            } else {
                "ed25519"
            }
        ))),
    }
}

/// Logs what the nonce manager noticed about (chain, address) as an alert.
fn log_nonce_note(chain: &str, address: &str, note: NonceNote) {
    match note {
        NonceNote::InOrder => {}
        NonceNote::UsedElsewhere { from, to } => tracing::error!(
            alert = "foreign_nonce",
            %chain,
            %address,
            "nonces {from}..{to} of this address were used by transactions Keyfold did not send"
        ),
        NonceNote::ChainBehind {
            ours,
            chain: theirs,
        } => tracing::error!(
            alert = "chain_behind",
            %chain,
            %address,
            "the chain's next nonce is {theirs}, Keyfold's was {ours}, and no payout is in flight: the chain lost transactions (reset or deep reorg); counting restarts at {theirs}"
        ),
    }
}

impl Payments {
    /// Reconciles every account the nonce manager knows with its chain's
    /// pending nonce (at start): transactions Keyfold did not send are
    /// reported now, not when the next payout happens to take a nonce.
    pub(crate) async fn reconcile_nonces(&self) {
        let accounts = match self.blocking(|s| s.nonce_accounts()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the nonce accounts to reconcile");
                return;
            }
        };
        for (chain, address, ours) in accounts {
            let (Ok(rpc), Ok(from)) = (self.rpc(&chain), evm::parse_address("address", &address))
            else {
                continue;
            };
            let theirs = match rpc.nonce(from, true).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(%chain, %address, error = %e, "cannot reconcile nonces now; the next payout will");
                    continue;
                }
            };
            let (c, a) = (chain.clone(), address.clone());
            match self
                .blocking(move |s| s.reconcile_nonce(&c, &a, theirs))
                .await
            {
                Ok(note) => {
                    tracing::info!(%chain, %address, ours, theirs, "nonces reconciled with the chain");
                    log_nonce_note(&chain, &address, note);
                }
                Err(e) => tracing::error!(%chain, %address, error = %e, "cannot reconcile nonces"),
            }
        }
    }
}

/// What the chain says before a payout takes a nonce.
struct Quote {
    chain_next_nonce: u64,
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
    gas_limit: u64,
}

impl Payments {
    /// Reads nonce, fees and balances; `Err(reason)` when the payout cannot
    /// be paid now (it is recorded as failed, no nonce taken).
    async fn quote(
        &self,
        entry: &ChainEntry,
        c: &Checked,
        from: evm::Address,
    ) -> Result<Result<Quote, String>, ServiceError> {
        let rpc = self.rpc(&entry.id)?;
        let unavailable = |e: crate::chain_rpc::error::RpcError| {
            ServiceError::ChainUnavailable(format!(
                "chain {} RPC (nothing was signed; retry the same payout): {e}",
                entry.id
            ))
        };
        let token_balance = async {
            match &c.token_contract {
                None => Ok(None),
                Some(contract) => {
                    let token = evm::parse_address("token_contract", contract).map_err(internal)?;
                    let ret = rpc
                        .call(token, evm::erc20_balance_of_calldata(from))
                        .await
                        .map_err(unavailable)?;
                    evm::decode_uint256_return(&ret).map(Some).map_err(|e| {
                        ServiceError::ChainUnavailable(format!(
                            "chain {}: balanceOf on {contract}: {e}",
                            entry.id
                        ))
                    })
                }
            }
        };
        // Every read at once: one round trip to the node.
        let (nonce, fees, native, token_balance) = tokio::try_join!(
            async { rpc.nonce(from, true).await.map_err(unavailable) },
            self.fee_estimate(&entry.id),
            async { rpc.balance(from).await.map_err(unavailable) },
            token_balance
        )?;
        let priority = fees
            .max_priority_fee_per_gas
            .min(entry.max_priority_fee_per_gas);
        // Room for the base fee to double before the transaction stalls,
        // within the chain's cap.
        let max_fee = fees
            .base_fee_per_gas
            .saturating_mul(2)
            .saturating_add(priority)
            .min(entry.max_fee_per_gas);
        if fees.base_fee_per_gas.saturating_add(priority) > entry.max_fee_per_gas {
            return Ok(Err(format!(
                "the network's base fee ({} wei) plus tip is above the chain's cap of {} wei per gas",
                fees.base_fee_per_gas, entry.max_fee_per_gas
            )));
        }
        let gas_limit = if c.token_contract.is_some() {
            entry.gas_limit_token
        } else {
            entry.gas_limit_native
        };
        let fee_cap = evm::U256::from(max_fee.saturating_mul(u128::from(gas_limit)));
        let amount = evm::U256::from(c.amount);
        let short = |what: &str, have: evm::U256, need: evm::U256| {
            format!("insufficient balance: {from} holds {have} {what} base units, the payout needs {need}")
        };
        match &c.token_contract {
            None => {
                let need = amount.saturating_add(fee_cap);
                if native < need {
                    return Ok(Err(short(&entry.native_symbol, native, need)));
                }
            }
            Some(_) => {
                if native < fee_cap {
                    return Ok(Err(short(&entry.native_symbol, native, fee_cap)));
                }
                let have = token_balance.unwrap_or_default();
                if have < amount {
                    return Ok(Err(short(&c.asset, have, amount)));
                }
            }
        }
        Ok(Ok(Quote {
            chain_next_nonce: nonce,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority,
            gas_limit,
        }))
    }
}

impl Coordinator {
    fn payments(&self) -> Result<&Arc<Payments>, ServiceError> {
        self.payments
            .as_ref()
            .ok_or_else(|| ServiceError::NotFound("this coordinator has no payments module".into()))
    }

    /// `POST /v1/payouts` (see the module docs).
    pub(crate) async fn create_payout(
        &self,
        client: String,
        req: PayoutRequest,
    ) -> Result<PayoutInfo, ServiceError> {
        let payments = self.payments()?.clone();
        let entry = payments.entry(&req.chain)?.clone();
        let c = payout::check(&req, &entry)?;
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
            if row.fingerprint != fingerprint {
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
        let new = |chain_next_nonce| NewPayout {
            payout_id: c.payout_id.clone(),
            request_id: request_id.clone(),
            fingerprint: fingerprint.clone(),
            chain: entry.id.clone(),
            source: from.clone(),
            chain_next_nonce,
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
                tier: Tier::Hot,
                asset: stored.asset.clone(),
                amount: stored.amount_base_units(),
                destination: stored.to.clone(),
                initiator: client.to_string(),
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
            modules: Vec::new(),
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
        Ok(payout::view(&row, &stored, &replacements, state, reason))
    }

    /// `GET /v1/payouts/{id}`.
    pub(crate) async fn get_payout(&self, payout_id: String) -> Result<PayoutInfo, ServiceError> {
        crate::requests::intake::check_client_id("payout_id", &payout_id)?;
        let id = payout_id.clone();
        let row = self
            .payments()?
            .blocking(move |s| s.get_payout(&id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no payout {payout_id}")))?;
        self.payout_view(row).await
    }

    /// `GET /v1/payouts`: newest first, optionally of one chain.
    pub(crate) async fn list_payouts(
        &self,
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
            .blocking(move |s| s.list_payouts(chain.as_deref(), before, limit + 1))
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

impl Module for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn post_signing(&self, request: &StoredRequest, _result: &SignResult) -> Vec<String> {
        if payout::is_replacement(&request.request.id) {
            // The payout's first request follows whichever is mined.
            return vec!["broadcast".into()];
        }
        match &request.request.payload {
            Payload::ChainTransaction {
                chain_id: Some(_), ..
            } => {
                vec!["broadcast".into(), "confirm".into()]
            }
            Payload::ChainTransaction { chain_id: None, .. } => vec!["assemble".into()],
            _ => Vec::new(),
        }
    }

    fn run_step<'a>(
        &'a self,
        request: &'a StoredRequest,
        result: &'a SignResult,
        step: &'a str,
    ) -> BoxFuture<'a, StepOutcome> {
        Box::pin(steps::run(self, request, result, step))
    }

    fn signed(&self, request: &StoredRequest, result: &SignResult) {
        steps::send_early(self, request, result);
    }

    fn notify(&self, request_id: &str, state: RequestState) {
        // A payout that ends unsigned gives its nonce back, so no gap stays
        // behind it (the store releases only a nonce whose transaction was
        // never signed; such a payout is final, never signed later).
        if !matches!(
            state,
            RequestState::Rejected
                | RequestState::Expired
                | RequestState::Cancelled
                | RequestState::Failed
        ) {
            return;
        }
        // A replacement's nonce belongs to the payout's first transaction.
        if payout::is_replacement(request_id) {
            return;
        }
        let Some(payout_id) = request_id
            .strip_prefix(payout::REQUEST_PREFIX)
            .map(str::to_string)
        else {
            return;
        };
        let store = self.store.clone();
        let request_id = request_id.to_string();
        let reason = format!("{state} before it was signed; its nonce went back to the pool");
        tokio::task::spawn_blocking(move || {
            // Only a request that never released a signature: a signed
            // transaction could still be sent by anyone who has it, so its
            // nonce must never pay for something else.
            match store.get_request(&request_id) {
                Ok(Some(r)) if r.result_json.is_none() => {}
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(payout = %payout_id, error = %e, "cannot read the payout's request; its nonce stays taken");
                    return;
                }
            }
            match store.release_payout_nonce(&payout_id, &reason) {
                Ok(true) => tracing::info!(payout = %payout_id, "nonce released"),
                Ok(false) => {}
                Err(e) => tracing::error!(payout = %payout_id, error = %e, "cannot release nonce"),
            }
        });
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
