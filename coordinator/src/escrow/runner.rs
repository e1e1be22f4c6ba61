//! The loop that judges held conditional payouts.
//!
//! Every `[schedules] poll_ms` it gathers, for each held escrow, the facts
//! its condition names (the time, who released it, its order's state, the
//! confirmed `Transfer` logs into its address since it was created) and
//! asks `Escrow::judge` (pure). A released escrow becomes the payout
//! `<escrow_id>.pay`; an expired one is cancelled, or refunded as the
//! payout `<escrow_id>.refund`. The escrow is ended (with the reason, in
//! its `escrow` audit event) only once that payout exists: a crash in
//! between makes the same payout id again, which answers the payout made.

use std::collections::BTreeSet;
use std::sync::Arc;

use keyfold_policy::RequestOrigin;
use keyfold_programmable::condition::{
    Condition, Facts, Judgement, OnExpiry, OrderFact, TransferFact,
};
use keyfold_store::{EscrowOp, EscrowRow};
use tokio::sync::Notify;

use super::{event, json, now_i64, Spec};
use crate::service::{ServiceError, Tenant};
use crate::Coordinator;

/// Escrows read per page of a pass.
const PAGE: usize = 200;
/// Blocks one `eth_getLogs` call covers at most.
const MAX_LOG_SPAN: u64 = 10_000;

/// Starts the loop if the coordinator has a payments module (the same
/// passes as the schedules').
pub fn spawn(coordinator: &Arc<Coordinator>) -> Option<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    crate::schedules::runner::spawn_passes(coordinator, |c| Box::pin(c.judge_held_escrows()))
}

impl Coordinator {
    async fn judge_held_escrows(&self) {
        let mut after: Option<String> = None;
        loop {
            let a = after.clone();
            let page = match self.read(move |s| s.held_escrows(a.as_deref(), PAGE)).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the held conditional payouts");
                    return;
                }
            };
            let full = page.len() == PAGE;
            after = page.last().map(|r| r.escrow_id.clone());
            for row in page {
                if let Err(e) = self.judge_escrow(&row.escrow_id).await {
                    tracing::warn!(escrow = %row.escrow_id, error = %e, "conditional payout not judged; tried again");
                }
            }
            if !full {
                return;
            }
        }
    }

    /// The facts `row`'s condition names.
    async fn escrow_facts(&self, row: &EscrowRow, spec: &Spec) -> Result<Facts, ServiceError> {
        let mut facts = Facts {
            now: self.clock.now_secs(),
            released_by: row.released_by.iter().cloned().collect::<BTreeSet<_>>(),
            ..Facts::default()
        };
        match &spec.escrow.condition {
            Condition::OrderSettled { order_id } => {
                let (m, o) = (
                    row.merchant_id.clone().unwrap_or_default(),
                    order_id.clone(),
                );
                let order = self.read(move |s| s.get_order(&m, &o)).await?;
                facts.order = Some(match order.as_ref().map(|o| o.state.as_str()) {
                    None => OrderFact::Unknown,
                    Some("settled") => OrderFact::Settled,
                    Some("expired" | "invalid") => OrderFact::Closed,
                    Some(_) => OrderFact::Open,
                });
            }
            Condition::TokenTransfer {
                chain, asset, to, ..
            } => {
                let payments = self.payments()?;
                let entry = payments.entry(chain)?;
                let Some(keyfold_chain::registry::AssetRef::Token(token)) = entry.asset(asset)
                else {
                    return Err(ServiceError::Internal(format!(
                        "escrow {}: {asset} is no longer a token of {chain}",
                        row.escrow_id
                    )));
                };
                let token = entry
                    .token_address(token)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let to = keyfold_chain::evm::parse_address("condition.to", to)
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                let rpc = payments.rpc_of(&entry.id).ok_or_else(|| {
                    ServiceError::ChainUnavailable(format!("chain {chain} has no RPC"))
                })?;
                let unavailable = |e: crate::chain_rpc::RpcError| {
                    ServiceError::ChainUnavailable(format!("chain {chain}: {e}"))
                };
                let head = rpc.block_number().await.map_err(unavailable)?;
                // Only transfers at the chain's confirmation depth count.
                let confirmed =
                    head.saturating_sub(u64::from(entry.confirmations.saturating_sub(1)));
                let from = row.from_block.unwrap_or(confirmed);
                let mut start = from;
                while start <= confirmed {
                    let end = confirmed.min(start.saturating_add(MAX_LOG_SPAN - 1));
                    let logs = rpc
                        .transfer_logs_between(&[token], (None, Some(to)), start, end)
                        .await
                        .map_err(unavailable)?;
                    for log in logs.iter().filter(|l| !l.removed && l.address == token) {
                        if let Ok(t) = keyfold_chain::deposits::decode_transfer(log) {
                            if t.to == to {
                                facts.transfers.push(TransferFact {
                                    tx_hash: format!("{:#x}", log.tx_hash),
                                    amount: u128::try_from(t.amount).unwrap_or(u128::MAX),
                                });
                            }
                        }
                    }
                    if !facts.transfers.is_empty() || end == u64::MAX {
                        break;
                    }
                    start = end + 1;
                }
            }
            Condition::After { .. } | Condition::Approvers { .. } => {}
        }
        Ok(facts)
    }

    /// Judges one held escrow and acts on the judgement, under its lock.
    pub(crate) async fn judge_escrow(&self, id: &str) -> Result<(), ServiceError> {
        let _guard = self.locks.lock(&format!("escrow/{id}")).await;
        let eid = id.to_string();
        let Some(row) = self.read(move |s| s.escrow(&eid)).await? else {
            return Ok(());
        };
        if row.state != "held" {
            return Ok(());
        }
        let spec = Spec::parse(&row)?;
        let facts = self.escrow_facts(&row, &spec).await?;
        let (state, reason, refund_to) = match spec.escrow.judge(&facts) {
            Judgement::Wait => return Ok(()),
            Judgement::Release(why) => ("released", why, None),
            Judgement::Expire(why) => match &spec.escrow.on_expiry {
                OnExpiry::Cancel => ("expired", format!("{why}; cancelled"), None),
                OnExpiry::Refund { to } => (
                    "expired",
                    format!("{why}; refunded to {to}"),
                    Some(to.clone()),
                ),
            },
        };
        let pays = state == "released" || refund_to.is_some();
        let payout_id = if pays {
            let tenant = match &row.merchant_id {
                Some(m) => Tenant::Merchant(m.clone()),
                None => Tenant::Operator,
            };
            let req = spec.payout_request(&row.escrow_id, refund_to.as_deref());
            let payout_id = req.payout_id.clone();
            // A failure here leaves the escrow held: judged again next pass
            // (the payout id makes the retry answer a payout already made).
            self.create_payout_from(&row.client, tenant, req, Some(RequestOrigin::Conditional))
                .await?;
            Some(payout_id)
        } else {
            None
        };
        let at = now_i64(facts.now);
        let detail = json(&serde_json::json!({
            "reason": reason,
            "payout_id": payout_id,
            "released_by": row.released_by,
            "at": facts.now,
        }))?;
        let action = if state == "released" {
            "released"
        } else {
            "expired"
        };
        self.write_escrow(
            event(&row.escrow_id, action, detail),
            EscrowOp::End {
                escrow_id: row.escrow_id.clone(),
                state: state.into(),
                reason: reason.clone(),
                payout_id: payout_id.clone(),
                at,
            },
        )
        .await?;
        tracing::info!(escrow = %row.escrow_id, %state, %reason, payout = ?payout_id, "conditional payout");
        Ok(())
    }
}
