//! The settlement module's treasury (`docs/settlement.md`): keeps each
//! configured hot wallet between its low- and high-water marks by itself.
//!
//! Every `poll_ms`, for each tier (chain and asset) it reads the ledger's
//! balances, the transfers and payouts in flight and the network's fees,
//! asks the pure planner ([`plan`]) what to do, and does it through the
//! ordinary payout path: sweeps of deposit addresses into hot (HD children
//! of the merchants' collection keys, so full threshold signing), gas
//! top-ups from the gas tank before token sweeps, hot-to-cold transfers of
//! the excess (to the configured cold address only), and replenishments
//! from cold, which the policy sends to the officers' approvals queue like
//! any cold spend. Each transfer is recorded before its payout is submitted,
//! under a deterministic payout id, so a crash between the two submits the
//! same payout again and nothing is ever paid twice.
//!
//! The first time it sees a wallet it registers it with the ledger and books
//! its opening balance as read from the chain. It compares the ledger with
//! the chain for every wallet and deposit address it knows; a difference
//! with nothing in flight is an alert.

pub mod alerts;
pub mod config;
pub mod monitor;
pub mod plan;
pub mod settlement;
pub mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use keyfold_chain::amount::format_amount;
use keyfold_chain::evm;
use keyfold_chain::registry::{AssetRef, ChainEntry, ChainFamily};
use keyfold_ledger::{Account, AssetKey, Event, WalletRole};
use keyfold_proto::api::PayoutRequest;
use keyfold_store::{TreasuryTransfer, TreasuryWallet};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::payments::source_address;
use crate::service::{Caller, ServiceError};
use crate::Coordinator;
use alerts::{announce, describe, AlertKind, Scope, TreasuryAlert};
use config::{TierConfig, TreasuryConfig};
use plan::{Action, Deposit, Limits, TierState};

/// The client name the treasury's payouts are recorded under (the
/// policy's `initiator`).
pub const INITIATOR: &str = "treasury";

/// Sweeps waiting this long for a low presignature pool raise an alert.
pub const SWEEP_PAUSE_ALERT_SECS: u64 = 600;

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// One wallet of a tier as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalletView {
    /// Its key.
    pub key_id: String,
    /// Its address.
    pub address: String,
    /// The ledger's balance (base units, decimal).
    pub ledger_balance: String,
    /// The chain's balance at the latest block (base units, decimal);
    /// `None` if the chain did not answer.
    pub chain_balance: Option<String>,
    /// Whether the ledger knows it (its opening balance is booked; money
    /// sent to it from now on is an inflow to book).
    pub registered: bool,
}

/// A tier's state as `GET /v1/treasury` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TierView {
    /// Chain registry id.
    pub chain: String,
    /// EVM chain id.
    pub chain_id: Option<u64>,
    /// Asset symbol.
    pub asset: String,
    /// Hot wallet.
    pub hot: Option<WalletView>,
    /// Cold wallet.
    pub cold: Option<WalletView>,
    /// Gas tank (native coin).
    pub gas_tank: Option<WalletView>,
    /// The limits (base units, decimal).
    pub limits: BTreeMap<String, String>,
    /// The alerts the last round raised, in words.
    pub alerts: Vec<String>,
    /// Where the ledger and the chain differed in the last round.
    pub differences: Vec<monitor::Difference>,
    /// Its latest transfers (sweeps, gas top-ups, hot-to-cold,
    /// replenishments), newest first.
    pub transfers: Vec<TransferView>,
}

/// A transfer the treasury made, as `GET /v1/treasury` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferView {
    /// Its payout id.
    pub payout_id: String,
    /// `sweep`, `gas_top_up`, `hot_to_cold` or `replenishment`.
    pub kind: String,
    /// Asset symbol.
    pub asset: String,
    /// Paying address.
    pub source: String,
    /// Receiving address.
    pub destination: String,
    /// Base units (decimal).
    pub amount_base_units: String,
    /// Its payout's chain state.
    pub state: String,
    /// Its signing request.
    pub request_id: String,
    /// Its transaction, once signed.
    pub tx_hash: Option<String>,
}

/// What one round did (tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Payout ids of the transfers it created.
    pub created: Vec<String>,
    /// Alerts, in words.
    pub alerts: Vec<String>,
}

/// A tier with its wallets resolved to addresses.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    entry: ChainEntry,
    asset: String,
    token: Option<String>,
    decimals: u8,
    hot: TreasuryWallet,
    cold: TreasuryWallet,
    gas: Option<TreasuryWallet>,
}

/// The treasury (see the module docs).
pub struct Treasury {
    config: TreasuryConfig,
    /// Wallets registered with the ledger (so the chain is read for the
    /// opening balance only once).
    registered: Mutex<BTreeSet<(String, String)>>,
    /// The last round's alerts per tier.
    alerts: Mutex<HashMap<String, Vec<TreasuryAlert>>>,
    /// The last round's differences between ledger and chain per tier.
    differences: Mutex<HashMap<String, Vec<monitor::Difference>>>,
    /// The last round's alert of each settlement that could not run.
    settlement_alerts: Mutex<HashMap<String, TreasuryAlert>>,
    /// Since when sweeps wait for a low presignature pool.
    sweeps_paused_since: Mutex<Option<u64>>,
}

impl Treasury {
    /// The treasury of a validated configuration.
    pub fn new(config: TreasuryConfig) -> Result<Treasury, String> {
        config.validate()?;
        Ok(Treasury {
            config,
            registered: Mutex::new(BTreeSet::new()),
            alerts: Mutex::new(HashMap::new()),
            differences: Mutex::new(HashMap::new()),
            settlement_alerts: Mutex::new(HashMap::new()),
            sweeps_paused_since: Mutex::new(None),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &TreasuryConfig {
        &self.config
    }
}

async fn wallet_of(
    c: &Coordinator,
    entry: &ChainEntry,
    key_id: &str,
    role: WalletRole,
) -> Result<TreasuryWallet, ServiceError> {
    // A key id, or the idempotency id (`client_id`) it was created with, so
    // a configuration can name keys made after it was written.
    let key = match c.key(key_id) {
        Ok(k) => Ok(k),
        Err(_) => {
            let client_id = key_id.to_string();
            match c.read(move |s| s.key_of_client_id(&client_id)).await? {
                Some(id) => c.key(&id),
                None => Err(ServiceError::NotFound(String::new())),
            }
        }
    }
    .map_err(|_| {
        ServiceError::BadRequest(format!(
            "the treasury's {role:?} wallet key {key_id} does not exist on this coordinator (neither as a key id nor as a client_id)"
        ))
    })?;
    let address = source_address(&key, None, entry.family)?;
    Ok(TreasuryWallet {
        chain: entry.id.clone(),
        address,
        role,
        key_id: key.key_id,
    })
}

pub(crate) async fn resolve(c: &Coordinator, t: &TierConfig) -> Result<Resolved, ServiceError> {
    let payments = c.payments()?;
    let entry = payments.entry(&t.chain)?.clone();
    if entry.family != ChainFamily::Evm {
        return Err(ServiceError::BadRequest(format!(
            "treasury tier {}: only EVM chains have a treasury",
            t.name()
        )));
    }
    let asset = entry.asset(&t.asset).ok_or_else(|| {
        ServiceError::BadRequest(format!(
            "treasury tier {}: {} is not an asset of chain {}",
            t.name(),
            t.asset,
            entry.id
        ))
    })?;
    let (token, decimals, symbol) = match asset {
        AssetRef::Native => (None, entry.native_decimals, entry.native_symbol.clone()),
        AssetRef::Token(tok) => (Some(tok.contract.clone()), tok.decimals, tok.symbol.clone()),
    };
    if token.is_some() && t.gas_tank.is_none() {
        return Err(ServiceError::BadRequest(format!(
            "treasury tier {}: a token tier needs a gas_tank to pay its sweeps' gas",
            t.name()
        )));
    }
    let hot = wallet_of(c, &entry, &t.hot_wallet, WalletRole::Hot).await?;
    let cold = wallet_of(c, &entry, &t.cold_wallet, WalletRole::Cold).await?;
    let gas = match t.gas_tank.as_deref() {
        Some(g) => Some(wallet_of(c, &entry, g, WalletRole::GasTank).await?),
        None => None,
    };
    Ok(Resolved {
        entry,
        asset: symbol,
        token,
        decimals,
        hot,
        cold,
        gas,
    })
}

/// The chain's balance of `address` in the tier's asset (`token`) or the
/// native coin.
pub(crate) async fn chain_balance(
    c: &Coordinator,
    chain: &str,
    token: Option<&str>,
    address: &str,
) -> Result<u128, ServiceError> {
    let rpc = c
        .payments()?
        .rpc_of(chain)
        .ok_or_else(|| ServiceError::BadRequest(format!("chain {chain} has no RPC URL")))?;
    let who = evm::parse_address("address", address).map_err(internal)?;
    let unavailable = |e: crate::chain_rpc::error::RpcError| {
        ServiceError::ChainUnavailable(format!("chain {chain}: {e}"))
    };
    let value = match token {
        None => rpc.balance(who).await.map_err(unavailable)?,
        Some(t) => {
            let contract = evm::parse_address("token", t).map_err(internal)?;
            let ret = rpc
                .call(contract, evm::erc20_balance_of_calldata(who))
                .await
                .map_err(unavailable)?;
            evm::decode_uint256_return(&ret).map_err(internal)?
        }
    };
    u128::try_from(value)
        .map_err(|_| internal(format!("{address} holds more than 2^128 base units")))
}

pub(crate) fn account(w: &TreasuryWallet) -> Account {
    Account::Wallet {
        role: w.role,
        address: w.address.clone(),
    }
}

fn key(chain: &str, asset: &str) -> AssetKey {
    AssetKey {
        chain: chain.to_string(),
        asset: asset.to_string(),
    }
}

/// Registers `w` with the ledger the first time, with opening balances of
/// every asset of `assets` ((symbol, token contract)) read from the chain.
async fn register(
    c: &Coordinator,
    t: &Treasury,
    w: &TreasuryWallet,
    assets: &[(String, Option<String>)],
    now: u64,
) -> Result<(), ServiceError> {
    let id = (w.chain.clone(), w.address.clone());
    if t.registered
        .lock()
        .map(|r| r.contains(&id))
        .unwrap_or(false)
    {
        return Ok(());
    }
    let known = c.read(|s| s.treasury_wallets()).await?;
    if !known
        .iter()
        .any(|k| k.chain == w.chain && k.address == w.address)
    {
        let mut opening = Vec::new();
        for (symbol, token) in assets {
            let balance = chain_balance(c, &w.chain, token.as_deref(), &w.address).await?;
            if balance == 0 {
                continue;
            }
            let entry = Event::Funding {
                asset: key(&w.chain, symbol),
                to: account(w),
                amount: balance,
            }
            .entry(
                &format!("opening:{}:{}:{symbol}", w.chain, w.address),
                &format!(
                    "opening balance of the {:?} wallet, read from the chain",
                    w.role
                ),
                now,
            )
            .map_err(internal)?;
            opening.push(entry);
        }
        let wallet = w.clone();
        c.read(move |s| s.register_treasury_wallet(&wallet, &opening))
            .await
            .map_err(|e| {
                ServiceError::Conflict(format!("treasury wallet {} on {}: {e}", w.address, w.chain))
            })?;
        tracing::info!(chain = %w.chain, address = %w.address, role = ?w.role, "treasury wallet registered with the ledger");
    }
    if let Ok(mut r) = t.registered.lock() {
        r.insert(id);
    }
    Ok(())
}

fn amount_of_json(json: &str, asset: &str) -> u128 {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return 0,
    };
    if v["asset"].as_str() != Some(asset) {
        return 0;
    }
    v["amount"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

impl Coordinator {
    /// The treasury, if one is configured.
    pub fn treasury(&self) -> Option<&Arc<Treasury>> {
        self.treasury.as_ref()
    }

    /// Where the ledger and the chain differed in the treasury's last round,
    /// over every tier.
    pub fn treasury_differences(&self) -> Vec<monitor::Difference> {
        self.treasury
            .as_ref()
            .and_then(|t| {
                t.differences
                    .lock()
                    .ok()
                    .map(|m| m.values().flatten().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// One round of every tier (see the module docs).
    pub async fn treasury_tick(&self) -> Result<TickReport, ServiceError> {
        let Some(t) = self.treasury.clone() else {
            return Ok(TickReport::default());
        };
        let mut report = TickReport::default();
        let now = self.clock.now_secs();
        let mut events = Vec::new();
        for tier in &t.config.tiers {
            let alerts = match self.tier_tick(&t, tier, &mut report).await {
                Ok(alerts) => alerts,
                Err(e) => vec![TreasuryAlert::new(
                    AlertKind::TierUnavailable,
                    format!("the tier cannot run now: {e}"),
                )],
            };
            report.alerts.extend(
                alerts
                    .iter()
                    .map(|a| format!("{}: {}", tier.name(), a.message)),
            );
            let name = tier.name();
            let scope = Scope {
                name: &name,
                of: "tier",
                chain: &tier.chain,
                asset: &tier.asset,
            };
            let before = t
                .alerts
                .lock()
                .ok()
                .and_then(|mut m| m.insert(name.clone(), alerts.clone()))
                .unwrap_or_default();
            events.extend(announce(&t.config, scope, &before, &alerts, now));
        }
        for s in &t.config.settlements {
            let alert = match self.settle(s, &mut report).await {
                Ok(()) => None,
                Err(e) => Some(TreasuryAlert::new(
                    AlertKind::SettlementUnavailable,
                    format!("settlement {}: cannot run now: {e}", s.name()),
                )),
            };
            if let Some(a) = &alert {
                report.alerts.push(a.message.clone());
            }
            let name = s.name();
            let before = t
                .settlement_alerts
                .lock()
                .ok()
                .and_then(|mut m| match &alert {
                    Some(a) => m.insert(name.clone(), a.clone()),
                    None => m.remove(&name),
                });
            let scope = Scope {
                name: &name,
                of: "settlement",
                chain: &s.chain,
                asset: &s.asset,
            };
            events.extend(announce(
                &t.config,
                scope,
                before.as_slice(),
                alert.as_slice(),
                now,
            ));
        }
        for e in events {
            let at = i64::try_from(now).unwrap_or(i64::MAX);
            let (event_id, event_type) = (e.event_id.clone(), e.event_type.clone());
            // An alert the outbox could not take is still in the log and the
            // view; the round goes on.
            if let Err(err) = self.read(move |s| s.enqueue_event(&e, at)).await {
                tracing::error!(%event_id, %event_type, error = %err, "a treasury alert could not be queued for its webhook");
            }
        }
        Ok(report)
    }

    async fn tier_tick(
        &self,
        t: &Treasury,
        tier: &TierConfig,
        report: &mut TickReport,
    ) -> Result<Vec<TreasuryAlert>, ServiceError> {
        let now = self.clock.now_secs();
        let r = resolve(self, tier).await?;
        let chain = r.entry.id.clone();
        let native_symbol = r.entry.native_symbol.clone();
        // Opening balances of every asset any tier of this chain holds: a
        // wallet shared by two tiers is registered once.
        let mut assets = vec![(native_symbol.clone(), None)];
        for other in t.config.tiers.iter().filter(|o| o.chain == tier.chain) {
            if let Some(AssetRef::Token(tok)) = r.entry.asset(&other.asset) {
                assets.push((tok.symbol.clone(), Some(tok.contract.clone())));
            }
        }
        for w in [Some(&r.hot), Some(&r.cold), r.gas.as_ref()]
            .into_iter()
            .flatten()
        {
            register(self, t, w, &assets, now).await?;
        }
        let asset = key(&chain, &r.asset);
        let native = key(&chain, &native_symbol);
        let (hot_acc, cold_acc) = (account(&r.hot), account(&r.cold));
        let gas_acc = r.gas.as_ref().map(account);
        let c2 = chain.clone();
        let hot_address = r.hot.address.clone();
        let (asset2, native2, min) = (asset.clone(), native.clone(), tier.sweep_min);
        let (hot, cold, tank, transfers, hot_payouts, candidates) = self
            .read(move |s| {
                let hot = s.ledger_balance(&hot_acc, &asset2)?;
                let cold = s.ledger_balance(&cold_acc, &asset2)?;
                let tank = match &gas_acc {
                    Some(g) => s.ledger_balance(g, &native2)?,
                    None => 0,
                };
                let transfers = s.treasury_transfers(Some(&c2), false, 1000)?;
                let hot_payouts = s.open_payouts_from(&c2, &hot_address)?;
                let mut candidates = Vec::new();
                for (address, key_id, path, balance) in
                    s.sweepable_deposits(&c2, &asset2.asset, min, 1000)?
                {
                    let acc = Account::Wallet {
                        role: WalletRole::Deposit,
                        address: address.clone(),
                    };
                    let native = if asset2 == native2 {
                        balance
                    } else {
                        u128::try_from(s.ledger_balance(&acc, &native2)?).unwrap_or(0)
                    };
                    candidates.push((address, key_id, path, balance, native));
                }
                Ok((hot, cold, tank, transfers, hot_payouts, candidates))
            })
            .await?;
        let positive = |b: i128| u128::try_from(b).unwrap_or(0);
        let open = |x: &TreasuryTransfer| {
            matches!(
                x.chain_state.as_str(),
                "unsigned" | "broadcast" | "confirming"
            )
        };
        // Transfers recorded but never submitted (a crash between the two):
        // the same payout id again.
        for x in transfers.iter().filter(|x| x.request_id.is_empty()) {
            self.submit_transfer(&r, x.clone(), report);
        }
        let mine: Vec<&TreasuryTransfer> = transfers
            .iter()
            .filter(|x| x.asset == r.asset || x.kind == "gas_top_up")
            .collect();
        let transfer_ids: BTreeSet<&str> = transfers.iter().map(|x| x.payout_id.as_str()).collect();
        let hot_outgoing: u128 = hot_payouts
            .iter()
            .filter(|(id, _)| {
                // A hot-to-cold transfer counts below, with the others.
                !transfer_ids.contains(id.as_str())
            })
            .map(|(_, json)| amount_of_json(json, &r.asset))
            .sum::<u128>()
            + mine
                .iter()
                .filter(|x| open(x) && x.source == r.hot.address && x.asset == r.asset)
                .map(|x| x.amount.parse::<u128>().unwrap_or(0))
                .sum::<u128>();
        let hot_incoming: u128 = mine
            .iter()
            .filter(|x| open(x) && x.destination == r.hot.address && x.asset == r.asset)
            .map(|x| x.amount.parse::<u128>().unwrap_or(0))
            .sum();
        let replenishments: Vec<&&TreasuryTransfer> = mine
            .iter()
            .filter(|x| x.kind == "replenishment" && x.asset == r.asset)
            .collect();
        let replenishment_open = replenishments
            .iter()
            .find(|x| open(x) || x.request_id.is_empty())
            .map(|x| x.payout_id.clone());
        // Newest first: the last one that ended without paying.
        let replenishment_refused = replenishments
            .first()
            .filter(|x| matches!(x.chain_state.as_str(), "released" | "failed"))
            .map(|x| {
                (
                    x.payout_id.clone(),
                    u64::try_from(x.updated_at).unwrap_or(0),
                )
            });
        let busy: BTreeSet<String> = transfers
            .iter()
            .filter(|x| {
                (open(x) || x.request_id.is_empty())
                    && matches!(x.kind.as_str(), "sweep" | "gas_top_up")
            })
            .map(|x| {
                if x.kind == "sweep" {
                    x.source.clone()
                } else {
                    x.destination.clone()
                }
            })
            .collect();
        let sweeps_open = u32::try_from(
            transfers
                .iter()
                .filter(|x| {
                    (open(x) || x.request_id.is_empty())
                        && matches!(x.kind.as_str(), "sweep" | "gas_top_up")
                })
                .count(),
        )
        .unwrap_or(u32::MAX);
        let sweeps_last_minute = u32::try_from(
            transfers
                .iter()
                .filter(|x| matches!(x.kind.as_str(), "sweep" | "gas_top_up"))
                .filter(|x| i64::try_from(now).unwrap_or(i64::MAX) - x.created_at < 60)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let payments = self.payments()?;
        let per_gas = payments.fee_reserve_per_gas(&r.entry).await?;
        let gas_limit = if r.token.is_some() {
            r.entry.gas_limit_token
        } else {
            r.entry.gas_limit_native
        };
        // Sweeps wait while a presignature pool is low (see `plan`); after
        // SWEEP_PAUSE_ALERT_SECS of waiting with deposits to sweep, a person
        // should look at the refill.
        let low = self.pool.low();
        let paused_for = match t.sweeps_paused_since.lock() {
            Ok(mut since) => match (&low, *since) {
                (Some((key, n)), None) => {
                    tracing::info!(%key, available = n, target = self.pool.target(), "sweeps wait for the presignature pool to refill");
                    *since = Some(now);
                    0
                }
                (Some(_), Some(at)) => now.saturating_sub(at),
                (None, _) => {
                    *since = None;
                    0
                }
            },
            Err(_) => 0,
        };
        let state = TierState {
            pool_low: low.is_some(),
            native: r.token.is_none(),
            hot: positive(hot),
            hot_outgoing,
            hot_incoming,
            cold: positive(cold),
            gas_tank: positive(tank),
            hot_to_cold_open: mine
                .iter()
                .any(|x| x.kind == "hot_to_cold" && (open(x) || x.request_id.is_empty())),
            replenishment_open,
            replenishment_refused,
            busy,
            sweeps_open,
            sweeps_last_minute,
            deposits: candidates
                .iter()
                .map(|(a, _, _, b, n)| Deposit {
                    address: a.clone(),
                    balance: *b,
                    native: *n,
                })
                .collect(),
            fee_reserve: per_gas.saturating_mul(u128::from(gas_limit)),
            top_up_fee_reserve: per_gas.saturating_mul(u128::from(r.entry.gas_limit_native)),
        };
        let limits = Limits {
            high_water: tier.high_water,
            low_water: tier.low_water,
            target: tier.target,
            sweep_min: tier.sweep_min,
            max_sweeps_in_flight: tier.max_sweeps_in_flight,
            sweeps_per_minute: tier.sweeps_per_minute,
            replenish_retry_secs: tier.replenish_retry_secs,
        };
        let mut alerts = Vec::new();
        let source_of = |address: &str| {
            candidates
                .iter()
                .find(|(a, ..)| a == address)
                .map(|(_, k, p, ..)| (k.clone(), p.clone()))
        };
        for action in plan::plan(&limits, &state, now) {
            let (kind, source, source_key, path, destination, amount, asset) = match action {
                Action::Sweep { address, amount } => {
                    let Some((k, p)) = source_of(&address) else {
                        continue;
                    };
                    (
                        "sweep",
                        address,
                        k,
                        Some(p),
                        r.hot.address.clone(),
                        amount,
                        r.asset.clone(),
                    )
                }
                Action::GasTopUp { address, amount } => {
                    let Some(g) = &r.gas else { continue };
                    (
                        "gas_top_up",
                        g.address.clone(),
                        g.key_id.clone(),
                        None,
                        address,
                        amount,
                        native_symbol.clone(),
                    )
                }
                Action::HotToCold { amount } => (
                    "hot_to_cold",
                    r.hot.address.clone(),
                    r.hot.key_id.clone(),
                    None,
                    r.cold.address.clone(),
                    amount,
                    r.asset.clone(),
                ),
                Action::Replenish { amount } => (
                    "replenishment",
                    r.cold.address.clone(),
                    r.cold.key_id.clone(),
                    None,
                    r.hot.address.clone(),
                    amount,
                    r.asset.clone(),
                ),
                Action::Alert(a) => {
                    alerts.push(TreasuryAlert::new((&a).into(), describe(&a, &r)));
                    continue;
                }
            };
            let (c3, s3, k3) = (chain.clone(), source.clone(), kind);
            let n = self
                .read(move |s| s.count_treasury_transfers(&c3, &s3, k3))
                .await?;
            // Deterministic: the n-th transfer of this kind from this
            // address (a retry after a crash finds the same id recorded).
            let payout_id = format!("{kind}-{chain}-{}-{}", source.to_ascii_lowercase(), n + 1);
            let transfer = TreasuryTransfer {
                payout_id: payout_id.clone(),
                kind: kind.to_string(),
                chain: chain.clone(),
                asset,
                source,
                destination,
                amount: amount.to_string(),
                created_at: i64::try_from(now).unwrap_or(i64::MAX),
                chain_state: "unsigned".into(),
                request_id: String::new(),
                tx_hash: None,
                updated_at: 0,
            };
            let t2 = transfer.clone();
            self.read(move |s| s.record_treasury_transfer(&t2)).await?;
            tracing::info!(%payout_id, kind, amount = %amount, key = %source_key, path = ?path, "treasury transfer created");
            report.created.push(payout_id);
            self.submit_transfer_with(&r, transfer, source_key, path, report);
        }
        if let Some((key, _)) =
            low.filter(|_| paused_for >= SWEEP_PAUSE_ALERT_SECS && !state.deposits.is_empty())
        {
            alerts.push(TreasuryAlert::new(
                AlertKind::SweepsPaused,
                format!(
                    "sweeps have waited more than {} minutes for the presignature pool of key {key} to refill above half of its {}: check the signers (keyfold status) and their refill, or lower max_sweeps_in_flight",
                    SWEEP_PAUSE_ALERT_SECS / 60,
                    self.pool.target()
                ),
            ));
        }
        if let Some(a) = daily_limit_missing(&self.policy.current(), tier, &r) {
            alerts.push(TreasuryAlert::new(AlertKind::DailyLimitNotEnforced, a));
        }
        // Losses stay an alert until a person books what was done about
        // them (a correction out of `loss`).
        let loss_key = asset.clone();
        let lost = self
            .read(move |s| s.ledger_balance(&Account::Loss, &loss_key))
            .await?;
        if lost > 0 {
            alerts.push(TreasuryAlert::new(AlertKind::ReorgLoss, format!(
                "{lost} base units of {} were lost to reorgs after merchants were credited (ledger account `loss`; entries of kind deposit_lost name the orders)",
                r.asset
            )));
        }
        let deposits: Vec<String> = candidates.iter().map(|(a, ..)| a.clone()).collect();
        let differences = self.compare_with_chain(&r, &deposits).await?;
        alerts.extend(differences.iter().map(|d| TreasuryAlert {
            kind: AlertKind::LedgerDifference,
            message: d.describe(),
            difference: Some(d.clone()),
        }));
        if let Ok(mut m) = t.differences.lock() {
            m.insert(tier.name(), differences);
        }
        Ok(alerts)
    }

    fn submit_transfer(&self, r: &Resolved, x: TreasuryTransfer, report: &mut TickReport) {
        // The key and path of the source, from what the tier knows.
        let (key, path) = if x.source == r.hot.address {
            (r.hot.key_id.clone(), None)
        } else if x.source == r.cold.address {
            (r.cold.key_id.clone(), None)
        } else if let Some(g) = r.gas.as_ref().filter(|g| g.address == x.source) {
            (g.key_id.clone(), None)
        } else {
            // A deposit address: its order knows its key and path.
            let Some(me) = self.me.upgrade() else { return };
            let (chain, source) = (x.chain.clone(), x.source.clone());
            let r = r.clone();
            tokio::spawn(async move {
                let found = me.read(move |s| s.order_address_key(&chain, &source)).await;
                if let Ok(Some((key, path))) = found {
                    let mut report = TickReport::default();
                    me.submit_transfer_with(&r, x, key, Some(path), &mut report);
                }
            });
            return;
        };
        self.submit_transfer_with(r, x, key, path, report);
    }

    /// Submits transfer `x` as a payout on its own task (a sweep's full
    /// signing takes a while; the round goes on).
    fn submit_transfer_with(
        &self,
        r: &Resolved,
        x: TreasuryTransfer,
        key: String,
        path: Option<String>,
        _report: &mut TickReport,
    ) {
        let Some(me) = self.me.upgrade() else { return };
        let decimals = if x.asset == r.asset {
            r.decimals
        } else {
            r.entry.native_decimals
        };
        let amount = match x.amount.parse::<u128>() {
            Ok(a) => format_amount(evm::U256::from(a), decimals),
            Err(_) => return,
        };
        let req = PayoutRequest {
            payout_id: x.payout_id.clone(),
            wallet: key,
            chain: x.chain.clone(),
            asset: x.asset.clone(),
            to: x.destination.clone(),
            amount,
            reference: Some(format!("treasury {}", x.kind)),
            recent_blockhash: None,
            derivation_path: path,
            client: None,
        };
        tokio::spawn(async move {
            match me
                .create_payout(Caller::Operator(INITIATOR.into()), req)
                .await
            {
                Ok(p) => {
                    tracing::info!(payout = %p.payout_id, state = ?p.state, "treasury transfer submitted")
                }
                Err(e) => {
                    tracing::warn!(payout = %x.payout_id, error = %e, "treasury transfer not submitted now; the next round tries again")
                }
            }
        });
    }

    /// `GET /v1/treasury`: each tier's wallets with their ledger and chain
    /// balances, its limits and its alerts.
    pub async fn treasury_view(&self) -> Result<Vec<TierView>, ServiceError> {
        let Some(t) = self.treasury.clone() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for tier in &t.config.tiers {
            let alerts: Vec<String> = t
                .alerts
                .lock()
                .ok()
                .and_then(|m| {
                    m.get(&tier.name())
                        .map(|v| v.iter().map(|a| a.message.clone()).collect())
                })
                .unwrap_or_default();
            let limits = BTreeMap::from([
                ("daily_limit".to_string(), tier.daily_limit.to_string()),
                ("high_water".to_string(), tier.high_water.to_string()),
                ("low_water".to_string(), tier.low_water.to_string()),
                ("target".to_string(), tier.target.to_string()),
            ]);
            let r = match resolve(self, tier).await {
                Ok(r) => r,
                Err(e) => {
                    out.push(TierView {
                        chain: tier.chain.clone(),
                        chain_id: None,
                        asset: tier.asset.clone(),
                        hot: None,
                        cold: None,
                        gas_tank: None,
                        limits,
                        alerts: vec![e.to_string()],
                        differences: Vec::new(),
                        transfers: Vec::new(),
                    });
                    continue;
                }
            };
            let known = self.read(|s| s.treasury_wallets()).await?;
            let known = &known;
            let view = |w: TreasuryWallet, symbol: String, token: Option<String>| async move {
                let registered = known
                    .iter()
                    .any(|k| k.chain == w.chain && k.address == w.address);
                let acc = account(&w);
                let k = key(&w.chain, &symbol);
                let ledger = self
                    .read(move |s| s.ledger_balance(&acc, &k))
                    .await
                    .unwrap_or(0);
                let chain = chain_balance(self, &w.chain, token.as_deref(), &w.address)
                    .await
                    .ok()
                    .map(|b| b.to_string());
                WalletView {
                    key_id: w.key_id,
                    address: w.address,
                    ledger_balance: ledger.to_string(),
                    chain_balance: chain,
                    registered,
                }
            };
            let native = r.entry.native_symbol.clone();
            out.push(TierView {
                chain: r.entry.id.clone(),
                chain_id: r.entry.chain_id,
                asset: r.asset.clone(),
                hot: Some(view(r.hot.clone(), r.asset.clone(), r.token.clone()).await),
                cold: Some(view(r.cold.clone(), r.asset.clone(), r.token.clone()).await),
                gas_tank: match r.gas.clone() {
                    Some(g) => Some(view(g, native, None).await),
                    None => None,
                },
                limits,
                alerts,
                differences: t
                    .differences
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&tier.name()).cloned())
                    .unwrap_or_default(),
                transfers: {
                    let (chain, asset) = (r.entry.id.clone(), r.asset.clone());
                    self.read(move |s| s.treasury_transfers(Some(&chain), false, 200))
                        .await?
                        .into_iter()
                        .filter(|x| {
                            x.asset == asset || (x.kind == "gas_top_up" && r.token.is_some())
                        })
                        .take(50)
                        .map(|x| TransferView {
                            payout_id: x.payout_id,
                            kind: x.kind,
                            asset: x.asset,
                            source: x.source,
                            destination: x.destination,
                            amount_base_units: x.amount,
                            state: x.chain_state,
                            request_id: x.request_id,
                            tx_hash: x.tx_hash,
                        })
                        .collect()
                },
            });
        }
        Ok(out)
    }
}

/// Whether the policy in force holds the tier's hot wallet to its daily
/// limit (a velocity limit per wallet over at most 24 hours, of the tier's
/// asset, naming the hot key, at most `daily_limit`): the treasury only
/// plans within the limit; the coordinator and every signer enforce it, so
/// without the rule the limit is a wish. An alert in words if not.
fn daily_limit_missing(
    policy: &keyfold_policy::Policy,
    tier: &TierConfig,
    r: &Resolved,
) -> Option<String> {
    let held = policy.document().velocity.iter().any(|v| {
        v.per == keyfold_policy::VelocityScope::Wallet
            && v.window_secs >= 86_400
            && v.asset.eq_ignore_ascii_case(&r.asset)
            && v.max_amount.is_some_and(|m| m <= tier.daily_limit)
            && v.wallets
                .as_ref()
                .is_some_and(|w| w.iter().any(|k| k == &r.hot.key_id))
    });
    (!held).then(|| {
        format!(
            "the policy in force (version {}) does not hold hot wallet {} to its daily limit of {} {} base units: run `keyfold treasury policy` and have the admins sign and push its velocity limit",
            policy.version(),
            r.hot.key_id,
            tier.daily_limit,
            r.asset
        )
    })
}

/// Runs the treasury every `poll_ms` until `stop` is notified.
pub async fn run(coordinator: Weak<Coordinator>, stop: Arc<Notify>) {
    let poll = coordinator
        .upgrade()
        .and_then(|c| c.treasury.as_ref().map(|t| t.config.poll_ms))
        .unwrap_or(2000);
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        if let Err(e) = c.treasury_tick().await {
            tracing::warn!(error = %e, "treasury round failed; the next one tries again");
        }
        drop(c);
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(Duration::from_millis(poll)) => {}
        }
    }
}

/// Starts the treasury loop if a treasury is configured.
pub fn spawn(coordinator: &Arc<Coordinator>) -> Option<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    coordinator.treasury.as_ref()?;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run(Arc::downgrade(coordinator), stop.clone()));
    Some((stop, task))
}
