//! Merchant settlement: on each merchant's schedule, its available balance
//! in an asset (less its fee) is paid from the tier's hot wallet to its
//! registered address through the ordinary payout path, and a report of
//! what the run covers (orders, fee, payout) is built from the ledger.
//!
//! A run is booked when it is created (the store moves the amount to
//! `paid_out` and the fee to `fees` in the same transaction, with the
//! `settlement.created` event), so a balance is never paid twice; the run
//! closes `paid` when its payout completes, or `failed` (the amount and fee
//! go back to `available`) when the payout ends without paying.

use keyfold_chain::amount::format_amount;
use keyfold_chain::evm;
use keyfold_ledger::{Account, AssetKey, EntryKind, MerchantAccount};
use keyfold_proto::api::PayoutRequest;
use keyfold_store::{NewEvent, NewRun, SettlementRun};
use serde::{Deserialize, Serialize};

use super::config::SettlementConfig;
use super::{resolve, TickReport, INITIATOR};
use crate::service::{Caller, ServiceError, Tenant};
use crate::Coordinator;

/// A run that failed is tried again this long after it closed.
pub const FAILED_RETRY_SECS: i64 = 60;

/// The webhook event of a run (for its merchant).
fn run_event(run: &SettlementRun, tx_hash: Option<&str>) -> NewEvent {
    let event_type = format!(
        "settlement.{}",
        match run.state.as_str() {
            "open" => "created",
            other => other,
        }
    );
    let payload = serde_json::json!({
        "type": event_type,
        "timestamp": crate::orders::rfc3339(run.closed_at.unwrap_or(run.created_at)),
        "data": {
            "run_id": run.run_id,
            "merchant_id": run.merchant_id,
            "chain": run.chain,
            "asset": run.asset,
            "state": run.state,
            "amount_base_units": run.amount.to_string(),
            "fee_base_units": run.fee.to_string(),
            "destination": run.destination,
            "payout_id": run.run_id,
            "tx_hash": tx_hash,
        },
    });
    NewEvent {
        event_id: crate::webhooks::new_event_id(),
        merchant_id: run.merchant_id.clone(),
        event_type,
        payload: payload.to_string(),
    }
}

impl Coordinator {
    /// One settlement round for `s`: closes its finished runs, and starts a
    /// new one when it is due.
    pub(super) async fn settle(
        &self,
        s: &SettlementConfig,
        report: &mut TickReport,
    ) -> Result<(), ServiceError> {
        let now = self.clock.now_secs();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let merchant = s.merchant.clone();
        let runs = self
            .read(move |st| st.settlement_runs(Some(&merchant), None, 1000))
            .await?;
        let mine: Vec<&SettlementRun> = runs
            .iter()
            .filter(|r| r.chain == s.chain && r.asset.eq_ignore_ascii_case(&s.asset))
            .collect();
        let tier = self
            .treasury
            .as_ref()
            .and_then(|t| {
                t.config
                    .tiers
                    .iter()
                    .find(|t| t.chain == s.chain && t.asset.eq_ignore_ascii_case(&s.asset))
                    .cloned()
            })
            .ok_or_else(|| ServiceError::Internal(format!("settlement {}: no tier", s.name())))?;
        let r = resolve(self, &tier).await?;
        let mut open = false;
        for run in mine.iter().filter(|r| r.state == "open") {
            let id = run.run_id.clone();
            let payout = self.read(move |st| st.get_payout(&id)).await?;
            let (paid, reason, tx) = match payout {
                // Created, not yet submitted (a crash in between): again.
                None => {
                    self.submit_settlement(&r, run, s);
                    open = true;
                    continue;
                }
                Some(p) => match p.chain_state.as_str() {
                    "completed" => (true, String::new(), p.mined_tx_hash.or(p.tx_hash)),
                    "failed" | "released" => (
                        false,
                        p.reason.unwrap_or_else(|| p.chain_state.clone()),
                        None,
                    ),
                    _ => {
                        open = true;
                        continue;
                    }
                },
            };
            let id = run.run_id.clone();
            let closed = self
                .read(move |st| {
                    st.close_settlement_run(&id, paid, &reason, now_i, |run| {
                        Some(run_event(run, tx.as_deref()))
                    })
                })
                .await?;
            if closed {
                tracing::info!(run = %run.run_id, paid, "settlement run closed");
            }
        }
        if open {
            return Ok(());
        }
        // The schedule counts from the last run that paid; a run that
        // failed (the hot wallet could not pay, the policy refused) is
        // tried again a minute after it closed.
        if let Some(last) = mine.iter().find(|r| r.state != "failed") {
            let every = i64::try_from(s.every_secs).unwrap_or(i64::MAX);
            if now_i < last.created_at.saturating_add(every) {
                return Ok(());
            }
        }
        if let Some(failed) = mine.first().filter(|r| r.state == "failed") {
            let closed = failed.closed_at.unwrap_or(failed.created_at);
            if now_i < closed.saturating_add(FAILED_RETRY_SECS) {
                return Ok(());
            }
        }
        let key = AssetKey {
            chain: r.entry.id.clone(),
            asset: r.asset.clone(),
        };
        let account = Account::Merchant {
            id: s.merchant.clone(),
            kind: MerchantAccount::Available,
        };
        let available = self
            .read(move |st| st.ledger_balance(&account, &key))
            .await?;
        let available = u128::try_from(available).unwrap_or(0);
        if available == 0 || available < s.min_amount {
            return Ok(());
        }
        let Some(fee) = s.fee_of(available) else {
            report.alerts.push(format!(
                "settlement {}: the fee would take all of the {available} base units available; nothing is paid",
                s.name()
            ));
            return Ok(());
        };
        let run_id = format!(
            "settle-{}-{}-{}-{}",
            s.merchant,
            r.entry.id,
            r.asset.to_ascii_lowercase(),
            mine.len() + 1
        );
        let new = NewRun {
            run_id: run_id.clone(),
            merchant_id: s.merchant.clone(),
            chain: r.entry.id.clone(),
            asset: r.asset.clone(),
            available,
            fee,
            destination: s.payout_address.clone(),
            now: now_i,
        };
        let run = self
            .read(move |st| st.create_settlement_run(&new, |run| Some(run_event(run, None))))
            .await?;
        let Some(run) = run else {
            return Ok(());
        };
        tracing::info!(run = %run.run_id, amount = %run.amount, fee = %run.fee, "settlement run created");
        report.created.push(run_id);
        self.submit_settlement(&r, &run, s);
        Ok(())
    }

    /// Submits a run's payout from the tier's hot wallet on its own task.
    fn submit_settlement(&self, r: &super::Resolved, run: &SettlementRun, s: &SettlementConfig) {
        let Some(me) = self.me.upgrade() else { return };
        let req = PayoutRequest {
            payout_id: run.run_id.clone(),
            wallet: r.hot.key_id.clone(),
            chain: run.chain.clone(),
            asset: run.asset.clone(),
            to: s.payout_address.clone(),
            amount: format_amount(evm::U256::from(run.amount), r.decimals),
            reference: Some(format!("settlement of merchant {}", run.merchant_id)),
            recent_blockhash: None,
            derivation_path: None,
            client: None,
        };
        let id = run.run_id.clone();
        tokio::spawn(async move {
            if let Err(e) = me
                .create_payout(Caller::Operator(INITIATOR.into()), req)
                .await
            {
                tracing::warn!(run = %id, error = %e, "settlement payout not submitted now; the next round tries again");
            }
        });
    }

    /// `GET /v1/settlements`: runs newest first (a merchant's own).
    pub async fn settlement_list(
        &self,
        tenant: Tenant,
        merchant_id: Option<String>,
    ) -> Result<Vec<RunView>, ServiceError> {
        let merchant = match tenant.merchant() {
            Some(m) => Some(m.to_string()),
            None => merchant_id,
        };
        let runs = self
            .read(move |st| st.settlement_runs(merchant.as_deref(), None, 1000))
            .await?;
        Ok(runs.into_iter().map(RunView::from).collect())
    }

    /// `GET /v1/settlements/{run_id}`: a run's report, rebuilt from the
    /// ledger (another merchant's run is not found).
    pub async fn settlement_report(
        &self,
        tenant: Tenant,
        run_id: String,
    ) -> Result<SettlementReport, ServiceError> {
        let id = run_id.clone();
        let run = self
            .read(move |st| st.settlement_run(&id))
            .await?
            .filter(|r| tenant.merchant().is_none_or(|m| m == r.merchant_id))
            .ok_or_else(|| ServiceError::NotFound(format!("no settlement run {run_id}")))?;
        let (m, from, to) = (run.merchant_id.clone(), run.from_seq, run.to_seq);
        let entries = self
            .read(move |st| st.merchant_entries_between(&m, from, to))
            .await?;
        let key = AssetKey {
            chain: run.chain.clone(),
            asset: run.asset.clone(),
        };
        let available = Account::Merchant {
            id: run.merchant_id.clone(),
            kind: MerchantAccount::Available,
        };
        let mut orders = Vec::new();
        let mut lines = Vec::new();
        for e in &entries {
            for p in e.entry.postings.iter().filter(|p| p.asset == key) {
                let merchant_side = p.from.merchant_id() == Some(run.merchant_id.as_str())
                    || p.to.merchant_id() == Some(run.merchant_id.as_str());
                if !merchant_side {
                    continue;
                }
                lines.push(ReportLine {
                    seq: e.seq,
                    entry_id: e.entry.id.clone(),
                    kind: e.entry.kind.to_string(),
                    from: p.from.to_string(),
                    to: p.to.to_string(),
                    amount_base_units: p.amount.to_string(),
                });
                let settles =
                    matches!(e.entry.kind, EntryKind::DepositSettled | EntryKind::Deposit)
                        && p.to == available;
                if settles {
                    let seq = e
                        .entry
                        .id
                        .strip_prefix("order:")
                        .and_then(|r| r.split(':').next())
                        .and_then(|s| s.parse::<i64>().ok());
                    let order_id = match seq {
                        Some(seq) => self.read(move |st| st.order_id_of_seq(seq)).await?,
                        None => None,
                    };
                    orders.push(ReportOrder {
                        order_id,
                        entry_id: e.entry.id.clone(),
                        amount_base_units: p.amount.to_string(),
                    });
                }
            }
        }
        let pid = run.run_id.clone();
        let payout = self.read(move |st| st.get_payout(&pid)).await?;
        Ok(SettlementReport {
            payout: payout.map(|p| ReportPayout {
                payout_id: p.payout_id,
                state: p.chain_state,
                tx_hash: p.mined_tx_hash.or(p.tx_hash),
            }),
            run: RunView::from(run),
            orders,
            lines,
        })
    }
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunView {
    /// Its id (and its payout's).
    pub run_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// `open`, `paid` or `failed`.
    pub state: String,
    /// Paid out (base units, decimal).
    pub amount_base_units: String,
    /// Fee (base units, decimal).
    pub fee_base_units: String,
    /// The registered address.
    pub destination: String,
    /// The journal positions it covers: after ...
    pub from_seq: i64,
    /// ... up to and including.
    pub to_seq: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// When it closed.
    pub closed_at: Option<i64>,
}

impl From<SettlementRun> for RunView {
    fn from(r: SettlementRun) -> Self {
        RunView {
            run_id: r.run_id,
            merchant_id: r.merchant_id,
            chain: r.chain,
            asset: r.asset,
            state: r.state,
            amount_base_units: r.amount.to_string(),
            fee_base_units: r.fee.to_string(),
            destination: r.destination,
            from_seq: r.from_seq,
            to_seq: r.to_seq,
            created_at: r.created_at,
            closed_at: r.closed_at,
        }
    }
}

/// An order a run covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportOrder {
    /// The merchant's order id.
    pub order_id: Option<String>,
    /// The ledger entry that made it available.
    pub entry_id: String,
    /// Credited (base units, decimal).
    pub amount_base_units: String,
}

/// A posting on the merchant's accounts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportLine {
    /// Journal position.
    pub seq: i64,
    /// Entry id.
    pub entry_id: String,
    /// Entry kind.
    pub kind: String,
    /// From account.
    pub from: String,
    /// To account.
    pub to: String,
    /// Base units, decimal.
    pub amount_base_units: String,
}

/// The run's payout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportPayout {
    /// Its id.
    pub payout_id: String,
    /// Its chain state.
    pub state: String,
    /// Its transaction.
    pub tx_hash: Option<String>,
}

/// `GET /v1/settlements/{run_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SettlementReport {
    /// The run.
    pub run: RunView,
    /// Its payout, once submitted.
    pub payout: Option<ReportPayout>,
    /// The orders settled into the balance it paid.
    pub orders: Vec<ReportOrder>,
    /// Every posting on the merchant's accounts in the asset that it covers.
    pub lines: Vec<ReportLine>,
}

impl SettlementReport {
    /// The report as CSV (the `csv` crate): one row per posting, after a
    /// header `run_id,seq,entry_id,kind,from,to,amount_base_units,order_id`.
    pub fn to_csv(&self) -> Result<String, ServiceError> {
        let fail = |e: csv::Error| ServiceError::Internal(format!("csv: {e}"));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "run_id",
            "seq",
            "entry_id",
            "kind",
            "from",
            "to",
            "amount_base_units",
            "order_id",
        ])
        .map_err(fail)?;
        for l in &self.lines {
            let order = self
                .orders
                .iter()
                .find(|o| o.entry_id == l.entry_id)
                .and_then(|o| o.order_id.clone())
                .unwrap_or_default();
            w.write_record([
                self.run.run_id.as_str(),
                &l.seq.to_string(),
                &l.entry_id,
                &l.kind,
                &l.from,
                &l.to,
                &l.amount_base_units,
                &order,
            ])
            .map_err(fail)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| ServiceError::Internal(format!("csv: {e}")))?;
        String::from_utf8(bytes).map_err(|e| ServiceError::Internal(format!("csv: {e}")))
    }
}
