//! The payments module's outgoing half: payouts on real chains
//! (`docs/payments.md`).
//!
//! `POST /v1/payouts` ([`endpoints`]) checks the payout
//! against the chain registry, reads the wallet's balance and the network's
//! fees, takes the wallet's next nonce from the durable nonce manager
//! (`keyfold_store::coordinator_payouts`), builds the unsigned transaction
//! (`keyfold_chain`), and submits it as an ordinary signing request whose
//! payload is the transaction: the policy sees chain, asset, token, amount,
//! destination and fee cap; every signer decodes the transaction itself
//! before it signs. Once signed, the module's post-signing steps
//! ([`steps`]) assemble the signed transaction, broadcast it, and follow it
//! to the required depth, rebroadcasting the same bytes if a reorg drops it
//! and replacing it with higher fees when it is stuck ([`replace`]).

pub mod endpoints;
pub mod payout;
pub mod replace;
pub mod steps;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use keyfold_chain::evm;
use keyfold_chain::registry::{ChainEntry, ChainFamily, ChainRegistry};
use keyfold_chain::solana;
use keyfold_policy::Payload;
use keyfold_proto::api::{RequestState, SignResult};
use keyfold_proto::Curve;
use keyfold_store::{CoordinatorStore, KeyRecord, NonceNote};

use crate::chain_rpc::evm::{EvmRpc, FeeEstimate};
use crate::clock::SharedClock;
use crate::keys::{from_store, is_cold};
use crate::modules::{Module, StepOutcome};
use crate::requests::record::StoredRequest;
use crate::service::{BoxFuture, ServiceError};
use crate::Coordinator;
use payout::Checked;

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

    pub(crate) fn entry(&self, chain: &str) -> Result<&ChainEntry, ServiceError> {
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

    /// The RPC client of `chain`, if it has RPC URLs.
    pub(crate) fn rpc_of(&self, chain: &str) -> Option<&EvmRpc> {
        self.rpcs.get(chain)
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
            .map_err(|e| match e {
                keyfold_store::StoreError::Conflict { what, id } => {
                    ServiceError::Conflict(format!("{what} id {id} is already used"))
                }
                other => internal(other),
            })
    }

    fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The most a transfer on `entry`'s chain may pay per gas if it is
    /// created within the next blocks: the cap a payout is sent with
    /// (twice the base fee plus the tip, within the chain's cap), with room
    /// for the base fee to rise by half meanwhile. The treasury reserves
    /// this much gas money when it sizes a sweep.
    pub(crate) async fn fee_reserve_per_gas(
        &self,
        entry: &ChainEntry,
    ) -> Result<u128, ServiceError> {
        let fees = self.fee_estimate(&entry.id).await?;
        let priority = fees
            .max_priority_fee_per_gas
            .min(entry.max_priority_fee_per_gas);
        Ok(fees
            .base_fee_per_gas
            .saturating_mul(3)
            .saturating_add(priority)
            .min(entry.max_fee_per_gas))
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

/// The webhook event of a merchant's payout whose chain state changed
/// (`payout.broadcast`, `payout.confirming`, `payout.completed`,
/// `payout.failed`); none for an operator's payout. The body carries the
/// chain facts; `GET /v1/payouts/{id}` has the whole view.
pub(crate) fn payout_event(
    row: &keyfold_store::PayoutRow,
    previous: &str,
) -> Option<keyfold_store::NewEvent> {
    let merchant = row.merchant_id.clone()?;
    let event_type = format!("payout.{}", row.chain_state);
    let payload = serde_json::json!({
        "type": event_type,
        "timestamp": crate::orders::rfc3339(row.updated_at),
        "data": {
            "payout_id": row.payout_id,
            "merchant_id": merchant,
            "chain": row.chain,
            "state": row.chain_state,
            "previous_state": previous,
            "tx_hash": row.mined_tx_hash.as_ref().or(row.tx_hash.as_ref()),
            "block_number": row.block_number,
            "confirmations": row.confirmations,
            "reason": row.reason,
        },
    });
    Some(keyfold_store::NewEvent {
        event_id: crate::webhooks::new_event_id(),
        merchant_id: merchant,
        event_type,
        payload: payload.to_string(),
    })
}

/// The paying address of `key` (or its HD child at `path`) on a chain of
/// `family`. A cold (HSM) key pays on EVM chains only from its root key.
pub(crate) fn source_address(
    key: &KeyRecord,
    path: Option<&str>,
    family: ChainFamily,
) -> Result<String, ServiceError> {
    let bad = |m: String| ServiceError::BadRequest(m);
    if is_cold(key) && (path.is_some() || family != ChainFamily::Evm) {
        return Err(bad(format!(
            "wallet {} is a cold (HSM) key: it pays only on EVM chains, from its root key",
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
