//! Reconciliation of a merchant's period (`GET /v1/reconciliation`,
//! `keyfold reconcile`): what Keyfold recorded, checked against the chain
//! through the RPC, line by line (`keyfold_chain::reconcile` decides each
//! line's status, without I/O).
//!
//! Four sections, each paged:
//! - `orders`: each order created in the period; a token order's recorded
//!   deposits against the `Transfer` logs to its address, a native order's
//!   recorded deposits against their receipts and the address's balance;
//! - `payouts`: each payout created in the period against its receipt;
//! - `outflows`: every transaction sent from the merchant's paying addresses
//!   and order addresses (their nonces) that no payout holds: an alert;
//! - `ledger`: the ledger's balance at each of the merchant's order
//!   addresses against the chain's (money in flight is `pending`), and, for
//!   an operator, the treasury wallets where the ledger and the chain
//!   differed in the treasury's last round.

use std::collections::BTreeSet;

use alloy_primitives::{Address, B256, U256};
use keyfold_chain::deposits::decode_transfer;
use keyfold_chain::reconcile::{
    compare_balance, compare_transfers, unmatched_nonces, Status, Transfer,
};
use keyfold_proto::api::{ReconciliationItem, ReconciliationReport};
use keyfold_store::{DepositRow, OrderRow, PayoutRow};

use crate::chain_rpc::EvmRpc;
use crate::core::Coordinator;
use crate::service::{Caller, ServiceError, Tenant};

/// Report sections.
pub const SECTIONS: [&str; 4] = ["orders", "payouts", "outflows", "ledger"];

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

fn unavailable(chain: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::ChainUnavailable(format!("chain {chain}: {e}"))
}

fn parse_hash(h: &str) -> Result<B256, ServiceError> {
    h.parse()
        .map_err(|e| ServiceError::Internal(format!("stored hash {h}: {e}")))
}

fn units(v: &str) -> Result<U256, ServiceError> {
    keyfold_chain::amount::parse_base_units("amount", v)
        .map_err(|e| ServiceError::Internal(e.to_string()))
}

/// What one report call asks.
#[derive(Debug, Clone)]
pub struct ReconcileQuery {
    /// The merchant (operators name one; a merchant key is its own).
    pub merchant_id: Option<String>,
    /// Period start, Unix seconds.
    pub from: i64,
    /// Period end (exclusive).
    pub to: i64,
    /// `orders`, `payouts` or `outflows`.
    pub section: String,
    /// The previous page's cursor.
    pub cursor: Option<String>,
    /// Lines per page's worth of objects (default 100, at most 500).
    pub limit: Option<usize>,
}

struct Line {
    kind: &'static str,
    reference: String,
    chain: String,
    asset: String,
    address: String,
}

impl Line {
    fn item(
        &self,
        tx: Option<(B256, Option<u64>)>,
        recorded: Option<U256>,
        on_chain: Option<U256>,
        status: Status,
        reason: String,
    ) -> ReconciliationItem {
        ReconciliationItem {
            kind: self.kind.into(),
            reference: self.reference.clone(),
            chain: self.chain.clone(),
            asset: self.asset.clone(),
            address: self.address.clone(),
            tx_hash: tx.map(|(h, _)| h.to_string()),
            log_index: tx.and_then(|(_, i)| i),
            recorded_base_units: recorded.map(|v| v.to_string()),
            on_chain_base_units: on_chain.map(|v| v.to_string()),
            status: status.as_str().into(),
            reason,
        }
    }

    fn unchecked(&self) -> ReconciliationItem {
        ReconciliationItem {
            status: "unchecked".into(),
            ..self.item(
                None,
                None,
                None,
                Status::Pending,
                format!(
                    "chain {} has no RPC URL: nothing to compare with",
                    self.chain
                ),
            )
        }
    }
}

impl Coordinator {
    /// One page of one section of the report.
    pub(crate) async fn reconcile(
        &self,
        caller: Caller,
        q: ReconcileQuery,
    ) -> Result<ReconciliationReport, ServiceError> {
        let merchant = match (caller.tenant(), q.merchant_id) {
            (Tenant::Merchant(m), None) => m,
            (Tenant::Merchant(m), Some(asked)) if asked == m => m,
            (Tenant::Merchant(_), Some(_)) => {
                return Err(bad(
                    "merchant_id: a merchant key reconciles its own merchant",
                ))
            }
            (Tenant::Operator, Some(m)) => m,
            (Tenant::Operator, None) => return Err(bad("merchant_id: name the merchant")),
        };
        if q.from >= q.to {
            return Err(bad("from must be before to"));
        }
        let limit = q.limit.unwrap_or(100).clamp(1, 500);
        let cursor = crate::requests::view::parse_cursor(q.cursor.as_deref())?;
        let m = merchant.clone();
        if self
            .store_call(move |s| s.get_merchant(&m))
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound(format!("no merchant {merchant}")));
        }
        let (items, next) = match q.section.as_str() {
            "orders" => {
                self.orders_section(&merchant, (q.from, q.to), cursor, limit)
                    .await?
            }
            "payouts" => {
                self.payouts_section(&merchant, (q.from, q.to), cursor, limit)
                    .await?
            }
            "outflows" => self.outflows_section(&merchant, cursor, limit).await?,
            "ledger" => {
                let operator = matches!(caller.tenant(), Tenant::Operator);
                self.ledger_section(&merchant, operator, cursor, limit)
                    .await?
            }
            other => {
                return Err(bad(format!(
                    "section must be one of {}, not {:?}",
                    SECTIONS.join(", "),
                    other.chars().take(16).collect::<String>()
                )))
            }
        };
        Ok(report(merchant, (q.from, q.to), q.section, items, next))
    }

    fn rpc_for(&self, chain: &str) -> Option<EvmRpc> {
        self.payments
            .as_ref()
            .and_then(|p| p.rpc_of(chain).cloned())
    }

    async fn orders_section(
        &self,
        merchant: &str,
        period: (i64, i64),
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ReconciliationItem>, Option<i64>), ServiceError> {
        let m = merchant.to_string();
        let rows = self
            .read(move |s| {
                s.list_orders(
                    Some(&m),
                    None,
                    (Some(period.0), Some(period.1)),
                    before,
                    limit + 1,
                )
            })
            .await?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].seq);
        let mut items = Vec::new();
        for row in rows.into_iter().take(limit) {
            let seq = row.seq;
            let deposits: Vec<DepositRow> = self
                .read(move |s| s.order_deposits(seq))
                .await?
                .into_iter()
                .filter(|d| d.removed_at.is_none())
                .collect();
            items.extend(self.order_lines(&row, &deposits).await?);
        }
        Ok((items, next))
    }

    async fn order_lines(
        &self,
        row: &OrderRow,
        deposits: &[DepositRow],
    ) -> Result<Vec<ReconciliationItem>, ServiceError> {
        let line = Line {
            kind: "order_deposit",
            reference: row.order_id.clone(),
            chain: row.chain.clone(),
            asset: row.asset.clone(),
            address: row.address.clone(),
        };
        let Some(rpc) = self.rpc_for(&row.chain) else {
            return Ok(vec![line.unchecked()]);
        };
        let address: Address = row
            .address
            .parse()
            .map_err(|e| ServiceError::Internal(format!("order address: {e}")))?;
        let recorded = deposits
            .iter()
            .map(|d| {
                Ok(Transfer {
                    tx_hash: parse_hash(&d.tx_hash)?,
                    log_index: u64::try_from(d.log_index).ok(),
                    amount: units(&d.amount)?,
                })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        let head = rpc
            .block_number()
            .await
            .map_err(|e| unavailable(&row.chain, e))?;
        let mut items = Vec::new();
        match &row.token {
            Some(token) => {
                let token: Address = token
                    .parse()
                    .map_err(|e| ServiceError::Internal(format!("token: {e}")))?;
                let logs = rpc
                    .transfer_logs_between(&[token], (None, Some(address)), 0, head)
                    .await
                    .map_err(|e| unavailable(&row.chain, e))?;
                let on_chain: Vec<Transfer> = logs
                    .iter()
                    .filter(|l| !l.removed)
                    .filter_map(|l| {
                        decode_transfer(l).ok().map(|t| Transfer {
                            tx_hash: l.tx_hash,
                            log_index: Some(l.log_index),
                            amount: t.amount,
                        })
                    })
                    .collect();
                for c in compare_transfers(&recorded, &on_chain) {
                    let reason = match c.status {
                        Status::Matched => "recorded deposit found on chain".to_string(),
                        Status::NotRecorded => {
                            "a transfer to the order's address that Keyfold has not recorded (the watcher may not have reached its block yet)".into()
                        }
                        Status::MissingOnChain => {
                            "a recorded deposit the chain no longer holds (a reorg not seen yet)".into()
                        }
                        _ => "the chain shows another amount than recorded".into(),
                    };
                    items.push(line.item(
                        Some((c.tx_hash, c.log_index)),
                        c.recorded,
                        c.on_chain,
                        c.status,
                        reason,
                    ));
                }
            }
            None => {
                for (t, d) in recorded.iter().zip(deposits) {
                    let r = rpc
                        .transaction_receipt(t.tx_hash)
                        .await
                        .map_err(|e| unavailable(&row.chain, e))?;
                    let (status, reason) = match r {
                        Some(r) if r.success && r.block_number == d.block_number => (
                            Status::Matched,
                            "receipt found in the recorded block".into(),
                        ),
                        Some(r) if r.success => (
                            Status::Differs,
                            format!(
                                "mined in block {}, recorded in block {}",
                                r.block_number, d.block_number
                            ),
                        ),
                        Some(_) => (Status::Differs, "the transaction reverted".to_string()),
                        None => (
                            Status::MissingOnChain,
                            "no receipt: the chain no longer holds it".into(),
                        ),
                    };
                    items.push(line.item(
                        Some((t.tx_hash, None)),
                        Some(t.amount),
                        None,
                        status,
                        reason,
                    ));
                }
                let total = recorded
                    .iter()
                    .fold(U256::ZERO, |a, t| a.saturating_add(t.amount));
                let balance = rpc
                    .balance(address)
                    .await
                    .map_err(|e| unavailable(&row.chain, e))?;
                let status = compare_balance(total, balance);
                let reason = match status {
                    Status::Matched => "the address holds exactly the recorded deposits".into(),
                    Status::NotRecorded => {
                        "the address holds more than recorded: a payment not recorded yet".into()
                    }
                    _ => "the address holds less than recorded: funds left it or a deposit is gone"
                        .into(),
                };
                items.push(
                    Line {
                        kind: "order_balance",
                        ..line
                    }
                    .item(None, Some(total), Some(balance), status, reason),
                );
            }
        }
        Ok(items)
    }

    async fn payouts_section(
        &self,
        merchant: &str,
        period: (i64, i64),
        after: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ReconciliationItem>, Option<i64>), ServiceError> {
        let m = merchant.to_string();
        let rows = self
            .read(move |s| s.list_payouts_created(Some(&m), period, after.unwrap_or(0), limit + 1))
            .await?;
        let next = (rows.len() > limit).then(|| rows[limit - 1].seq);
        let mut items = Vec::new();
        for row in rows.iter().take(limit) {
            items.push(self.payout_line(row).await?);
        }
        Ok((items, next))
    }

    async fn payout_line(&self, row: &PayoutRow) -> Result<ReconciliationItem, ServiceError> {
        let stored: serde_json::Value = serde_json::from_str(&row.payout_json).unwrap_or_default();
        let line = Line {
            kind: "payout",
            reference: row.payout_id.clone(),
            chain: row.chain.clone(),
            asset: stored["asset"].as_str().unwrap_or_default().to_string(),
            address: row.source.clone(),
        };
        let amount = stored["amount"]
            .as_str()
            .and_then(|a| keyfold_chain::amount::parse_base_units("amount", a).ok());
        let Some(rpc) = self.rpc_for(&row.chain) else {
            return Ok(line.unchecked());
        };
        let hash = row.mined_tx_hash.as_ref().or(row.tx_hash.as_ref());
        let Some(hash) = hash else {
            return Ok(line.item(
                None,
                amount,
                None,
                Status::Matched,
                format!(
                    "{}: never sent, nothing on chain{}",
                    row.chain_state,
                    row.reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            ));
        };
        let h = parse_hash(hash)?;
        let receipt = rpc
            .transaction_receipt(h)
            .await
            .map_err(|e| unavailable(&row.chain, e))?;
        let (status, reason) = match (row.chain_state.as_str(), receipt) {
            ("completed", Some(r)) if r.success && Some(r.block_number) == row.block_number => (
                Status::Matched,
                format!("completed in block {}", r.block_number),
            ),
            ("completed", Some(r)) => (
                Status::Differs,
                format!(
                    "recorded completed in block {:?}; the chain has it in block {} (success {})",
                    row.block_number, r.block_number, r.success
                ),
            ),
            ("completed", None) => (
                Status::MissingOnChain,
                "recorded completed, but the chain has no receipt".into(),
            ),
            ("failed", Some(r)) if !r.success => (
                Status::Matched,
                format!("reverted in block {}", r.block_number),
            ),
            (state, Some(r)) if r.success => (
                Status::Pending,
                format!(
                    "{state}: mined in block {}, not yet confirmed",
                    r.block_number
                ),
            ),
            (state, _) => (Status::Pending, format!("{state}: sent, not mined yet")),
        };
        Ok(line.item(Some((h, None)), amount, None, status, reason))
    }

    async fn outflows_section(
        &self,
        merchant: &str,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ReconciliationItem>, Option<i64>), ServiceError> {
        let m = merchant.to_string();
        let mut addresses: Vec<((String, String), BTreeSet<u64>)> =
            self.read(move |s| s.payout_sources(Some(&m))).await?;
        let m = merchant.to_string();
        let orders = self
            .read(move |s| s.list_orders(Some(&m), None, (None, None), None, 1000))
            .await?;
        for o in orders {
            let key = (o.chain.clone(), o.address.clone());
            if !addresses.iter().any(|(k, _)| *k == key) {
                addresses.push((key, BTreeSet::new()));
            }
        }
        addresses.sort();
        let start = usize::try_from(after.unwrap_or(0)).unwrap_or(0);
        let page: Vec<_> = addresses.iter().skip(start).take(limit).cloned().collect();
        let next = (addresses.len() > start + limit)
            .then(|| i64::try_from(start + limit).unwrap_or(i64::MAX));
        let mut items = Vec::new();
        for ((chain, address), held) in page {
            let line = Line {
                kind: "outflow",
                reference: address.clone(),
                chain: chain.clone(),
                asset: String::new(),
                address: address.clone(),
            };
            let Some(rpc) = self.rpc_for(&chain) else {
                items.push(line.unchecked());
                continue;
            };
            let a: Address = address
                .parse()
                .map_err(|e| ServiceError::Internal(format!("address: {e}")))?;
            let sent = rpc
                .nonce(a, false)
                .await
                .map_err(|e| unavailable(&chain, e))?;
            let stray = unmatched_nonces(sent, &held);
            if stray.is_empty() {
                items.push(line.item(
                    None,
                    None,
                    None,
                    Status::Matched,
                    format!("{sent} transaction(s) sent, each one a payout's"),
                ));
            }
            for n in stray {
                tracing::warn!(alert = "unmatched_outflow", %chain, %address, nonce = n, "a transaction from a Keyfold address matches no payout");
                items.push(line.item(
                    None,
                    None,
                    None,
                    Status::UnmatchedOutflow,
                    format!(
                        "the transaction with nonce {n} from this address matches no payout: \
                         find who holds a key to it"
                    ),
                ));
            }
        }
        Ok((items, next))
    }
}

impl Coordinator {
    async fn ledger_section(
        &self,
        merchant: &str,
        operator: bool,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ReconciliationItem>, Option<i64>), ServiceError> {
        let m = merchant.to_string();
        let orders = self
            .read(move |s| s.list_orders(Some(&m), None, (None, None), None, 1000))
            .await?;
        let start = usize::try_from(after.unwrap_or(0)).unwrap_or(0);
        let next = (orders.len() > start + limit)
            .then(|| i64::try_from(start + limit).unwrap_or(i64::MAX));
        let mut items = Vec::new();
        if operator && start == 0 {
            // The treasury's own wallets belong to no merchant: an operator
            // sees where they differed, with the treasury's balances.
            for d in self.treasury_differences() {
                if d.account.starts_with("wallet:deposit:") {
                    continue;
                }
                items.push(ReconciliationItem {
                    kind: "treasury_balance".into(),
                    reference: d.account.clone(),
                    chain: d.chain.clone(),
                    asset: d.asset.clone(),
                    address: d.account.rsplit(':').next().unwrap_or_default().into(),
                    tx_hash: None,
                    log_index: None,
                    recorded_base_units: Some(d.ledger_balance.clone()),
                    on_chain_base_units: Some(d.chain_balance.clone()),
                    status: Status::AmountMismatch.as_str().into(),
                    reason: d.describe(),
                });
            }
        }
        // Per chain, the addresses with money in flight.
        let mut busy: std::collections::HashMap<String, BTreeSet<String>> = Default::default();
        for o in orders.iter().skip(start).take(limit) {
            let line = Line {
                kind: "ledger_balance",
                reference: o.order_id.clone(),
                chain: o.chain.clone(),
                asset: o.asset.clone(),
                address: o.address.clone(),
            };
            if self.rpc_for(&o.chain).is_none() {
                items.push(line.unchecked());
                continue;
            }
            if !busy.contains_key(&o.chain) {
                let c = o.chain.clone();
                let in_flight = self.read(move |s| s.addresses_in_flight(&c)).await?;
                busy.insert(
                    o.chain.clone(),
                    in_flight.iter().map(|a| a.to_ascii_lowercase()).collect(),
                );
            }
            let account = keyfold_ledger::Account::Wallet {
                role: keyfold_ledger::WalletRole::Deposit,
                address: o.address.clone(),
            };
            let asset = keyfold_ledger::AssetKey {
                chain: o.chain.clone(),
                asset: o.asset.clone(),
            };
            let ledger = self
                .read(move |s| s.ledger_balance(&account, &asset))
                .await?;
            let on_chain =
                crate::treasury::chain_balance(self, &o.chain, o.token.as_deref(), &o.address)
                    .await?;
            let ledger_units = U256::from(u128::try_from(ledger).unwrap_or(0));
            let chain_units = U256::from(on_chain);
            let pending = busy
                .get(&o.chain)
                .is_some_and(|b| b.contains(&o.address.to_ascii_lowercase()));
            let (status, reason) = if ledger < 0 {
                (
                    Status::AmountMismatch,
                    format!("the ledger holds a negative balance ({ledger}) here: a booking error"),
                )
            } else if pending {
                (
                    Status::Pending,
                    "money in flight (a deposit confirming or a payout not final): compared later"
                        .into(),
                )
            } else {
                match compare_balance(ledger_units, chain_units) {
                    Status::Matched => (
                        Status::Matched,
                        "the ledger's balance is the chain's".into(),
                    ),
                    Status::NotRecorded => (
                        Status::NotRecorded,
                        "the chain holds more than the ledger: money arrived that no order                          counts (another asset's sweep gas, a payment of another asset, or                          an outside transfer); book it or return it"
                            .into(),
                    ),
                    other => (
                        other,
                        "the chain holds less than the ledger: money left that Keyfold did                          not send; treat it as an incident"
                            .into(),
                    ),
                }
            };
            items.push(line.item(None, Some(ledger_units), Some(chain_units), status, reason));
        }
        Ok((items, next))
    }
}

/// A report of `items`, with its counts: lines that matched, that differ
/// (neither matched, pending nor unchecked) and alerts.
pub fn report(
    merchant_id: String,
    period: (i64, i64),
    section: String,
    items: Vec<ReconciliationItem>,
    next_cursor: Option<i64>,
) -> ReconciliationReport {
    let status = |s: &str| items.iter().filter(|i| i.status == s).count();
    ReconciliationReport {
        merchant_id,
        from: period.0,
        to: period.1,
        section,
        matched: status("matched"),
        differences: items
            .iter()
            .filter(|i| !matches!(i.status.as_str(), "matched" | "pending" | "unchecked"))
            .count(),
        alerts: status("unmatched_outflow"),
        items,
        next_cursor: next_cursor.map(|n| n.to_string()),
    }
}

/// The report as CSV (the `csv` crate's RFC 4180 quoting), with a header
/// line.
pub fn to_csv(r: &ReconciliationReport) -> Result<String, ServiceError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| ServiceError::Internal(format!("csv: {e}"));
    w.write_record([
        "kind",
        "reference",
        "chain",
        "asset",
        "address",
        "tx_hash",
        "log_index",
        "recorded_base_units",
        "on_chain_base_units",
        "status",
        "reason",
    ])
    .map_err(fail)?;
    for i in &r.items {
        w.write_record([
            i.kind.as_str(),
            &i.reference,
            &i.chain,
            &i.asset,
            &i.address,
            i.tx_hash.as_deref().unwrap_or_default(),
            &i.log_index.map(|l| l.to_string()).unwrap_or_default(),
            i.recorded_base_units.as_deref().unwrap_or_default(),
            i.on_chain_base_units.as_deref().unwrap_or_default(),
            &i.status,
            &i.reason,
        ])
        .map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ServiceError::Internal(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ServiceError::Internal(format!("csv: {e}")))
}
