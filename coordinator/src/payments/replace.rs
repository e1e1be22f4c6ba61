//! A payout's transaction that the chain does not mine: rebroadcast when
//! the node lost it, replacement when it sits stuck.
//!
//! A transaction the node still holds but has not mined for the chain's
//! `replace_after_secs` (fees too low for the market) is replaced: the same
//! payout at the same nonce with fees bumped by [`keyfold_chain::replace`],
//! signed through a signing request of its own (`payout:{id}+r{n}`), so the
//! policy decides on it and every signer checks it like any payout. The
//! attempt is recorded before its request is submitted, so a crash resumes
//! it rather than starting another. Whichever of the payout's transactions
//! the chain mines completes the payout; only one can be, as they share a
//! nonce. The replacement's own post-signing step (`broadcast`) logs and
//! sends its bytes; the payout's first request keeps following the chain.

use keyfold_chain::evm;
use keyfold_chain::replace::{self as bump, Fees};
use keyfold_proto::api::SignResult;
use keyfold_store::{PayoutChainUpdate, PayoutRow, ReplacementRow};

use super::payout::{replacement_request_id, StoredPayout, MAX_REPLACEMENTS};
use super::steps::{assemble_evm, audit_tx, failed, record, retry, send_recording, POLL_SECS};
use super::Payments;
use crate::modules::StepOutcome;
use crate::requests::record::StoredRequest;

/// One of a payout's signed transactions.
pub(super) struct SentTx {
    /// The signing request that signed it.
    pub request_id: String,
    /// Its bytes.
    pub raw: Vec<u8>,
    /// Its hash.
    pub hash: evm::B256,
    /// Its hash as stored (0x hex).
    pub hash_text: String,
}

/// The payout's signed transactions: its first, then each signed
/// replacement.
pub(super) fn sent_transactions(
    row: &PayoutRow,
    replacements: &[ReplacementRow],
) -> Result<Vec<SentTx>, String> {
    let (Some(raw), Some(hash)) = (&row.raw_tx, &row.tx_hash) else {
        return Err("confirm before broadcast".into());
    };
    let mut out = vec![(row.request_id.as_str(), raw, hash)];
    for r in replacements {
        if let (Some(raw), Some(hash)) = (&r.raw_tx, &r.tx_hash) {
            out.push((r.request_id.as_str(), raw, hash));
        }
    }
    out.into_iter()
        .map(|(request_id, raw, hash_text)| {
            Ok(SentTx {
                request_id: request_id.to_string(),
                raw: raw.clone(),
                hash: hash_text
                    .parse()
                    .map_err(|_| format!("stored hash {hash_text} does not parse"))?,
                hash_text: hash_text.clone(),
            })
        })
        .collect()
}

/// None of the payout's transactions is mined: wait for it, replace it
/// when stuck, or send it again when the node lost it.
pub(super) async fn unmined(
    p: &Payments,
    request: &StoredRequest,
    row: &PayoutRow,
    stored: &StoredPayout,
    sent: &[SentTx],
    replacements: &[ReplacementRow],
) -> StepOutcome {
    let rpc = match p.rpc(&stored.chain) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let Some(latest) = sent.last() else {
        return failed("confirm before broadcast");
    };
    let mut held = false;
    for tx in sent.iter().rev() {
        match rpc.transaction_by_hash(tx.hash).await {
            Ok(Some(_)) => {
                held = true;
                break;
            }
            Ok(None) => {}
            Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
        }
    }
    if held {
        if row.chain_state != "broadcast" || row.block_number.is_some() {
            let update = PayoutChainUpdate {
                chain_state: "broadcast".into(),
                reason: Some("back in the mempool after a reorg".into()),
                ..Default::default()
            };
            if let Err(e) = record(p, row, update).await {
                return retry(p, POLL_SECS, format!("store: {e}"));
            }
        }
        let note = consider(p, request, row, stored, replacements).await;
        return retry(
            p,
            POLL_SECS,
            note.unwrap_or_else(|| "waiting to be mined".into()),
        );
    }
    // The node holds none of them. If the account's nonce moved past the
    // payout's, a transaction at it was mined: one of ours (mined since
    // the receipts were read) or one Keyfold did not send.
    if let (Ok(from), Some(nonce)) = (evm::parse_address("from", &stored.from), row.nonce) {
        match rpc.nonce(from, false).await {
            Ok(next) if next > nonce => {
                for tx in sent {
                    match rpc.transaction_receipt(tx.hash).await {
                        Ok(Some(_)) => return retry(p, 0, "mined meanwhile"),
                        Ok(None) => {}
                        Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
                    }
                }
                let reason = format!(
                    "nonce {nonce} of {} was used by a transaction Keyfold did not send; this payout was not paid",
                    stored.from
                );
                tracing::error!(payout = %row.payout_id, alert = "foreign_nonce", "{reason}");
                return failed(reason);
            }
            Ok(_) => {}
            Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
        }
    }
    // Dropped (a reorg took it out, or the mempool evicted it): the same
    // bytes go again, the newest ones.
    tracing::warn!(payout = %row.payout_id, tx = %latest.hash_text, "transaction left the chain; sending the same bytes again");
    let update = PayoutChainUpdate {
        chain_state: "broadcast".into(),
        reason: Some("dropped from the chain (reorg); sent again".into()),
        ..Default::default()
    };
    if let Err(e) = record(p, row, update).await {
        return retry(p, POLL_SECS, format!("store: {e}"));
    }
    if let Err(e) = rpc.send_raw_transaction(&latest.raw).await {
        return retry(p, POLL_SECS, format!("rebroadcast: {e}"));
    }
    if let Err(e) = audit_tx(
        p,
        &latest.request_id,
        &row.chain,
        "rebroadcast",
        &latest.hash_text,
        None,
        None,
        0,
    )
    .await
    {
        tracing::error!(payout = %row.payout_id, error = %e, "cannot log a rebroadcast");
    }
    retry(p, POLL_SECS, "sent again after a reorg")
}

/// The fees of a stored payout's transaction.
fn fees_of(stored: &StoredPayout) -> Option<Fees> {
    stored.evm.as_ref().map(|t| Fees {
        max_fee_per_gas: t.max_fee_per_gas,
        max_priority_fee_per_gas: t.max_priority_fee_per_gas,
    })
}

/// Whether the payout's transaction is stuck and what was done about it
/// (a note for the step's history), or `None` while it is not stuck.
async fn consider(
    p: &Payments,
    request: &StoredRequest,
    row: &PayoutRow,
    stored: &StoredPayout,
    replacements: &[ReplacementRow],
) -> Option<String> {
    let entry = p.registry.get(&stored.chain)?;
    let last = replacements.last();
    // An attempt not signed yet: resume it after a restart, or wait.
    if let Some(att) = last.filter(|a| a.tx_hash.is_none()) {
        let rid = att.request_id.clone();
        match p.blocking(move |s| s.get_request(&rid)).await {
            Ok(None) => {
                submit(p, &request.request.initiator, att).await;
                return Some(format!("replacement {} submitted again", att.attempt));
            }
            Ok(Some(r))
                if !matches!(
                    r.state.as_str(),
                    "rejected" | "expired" | "cancelled" | "failed"
                ) =>
            {
                return Some(format!("replacement {} is {}", att.attempt, r.state));
            }
            // Ended unsigned: it counts as tried.
            Ok(Some(_)) => {}
            Err(e) => return Some(format!("store: {e}")),
        }
    }
    // Stuck since the latest of: the first broadcast, the last replacement,
    // the last time the payout's chain state was written (a rebroadcast
    // after a reorg, back in the mempool), so a transaction sent again
    // gets the full time before it is replaced.
    let since = [
        last.map(|a| a.created_at),
        row.broadcast_at,
        Some(row.updated_at),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(row.updated_at);
    let waited = i64::try_from(p.now()).unwrap_or(i64::MAX) - since;
    if waited < i64::try_from(entry.replace_after_secs).unwrap_or(i64::MAX) {
        return None;
    }
    let attempts = last.map_or(0, |a| a.attempt);
    if attempts >= MAX_REPLACEMENTS {
        return Some(note_stuck(
            p,
            row,
            format!(
                "stuck after {MAX_REPLACEMENTS} replacements; look at the chain's fees and the registry's caps"
            ),
        )
        .await);
    }
    // Beat the highest fees any of its transactions offered.
    let mut old = fees_of(stored)?;
    for r in replacements {
        if let Some(f) = StoredPayout::parse_json(&r.payout_id, &r.payout_json)
            .ok()
            .as_ref()
            .and_then(fees_of)
        {
            old.max_fee_per_gas = old.max_fee_per_gas.max(f.max_fee_per_gas);
            old.max_priority_fee_per_gas =
                old.max_priority_fee_per_gas.max(f.max_priority_fee_per_gas);
        }
    }
    let network = match p.rpc(&stored.chain) {
        Ok(rpc) => match rpc.fee_estimate().await {
            Ok(f) => f,
            Err(e) => return Some(format!("stuck; cannot read the network's fees: {e}")),
        },
        Err(e) => return Some(e.to_string()),
    };
    let cap = Fees {
        max_fee_per_gas: entry.max_fee_per_gas,
        max_priority_fee_per_gas: entry.max_priority_fee_per_gas,
    };
    let fees = match bump::bump(
        old,
        network.base_fee_per_gas,
        network.max_priority_fee_per_gas,
        cap,
    ) {
        Ok(f) => f,
        Err(e) => return Some(note_stuck(p, row, format!("stuck, not replaced: {e}")).await),
    };
    let mut t = stored.evm.clone()?;
    t.max_fee_per_gas = fees.max_fee_per_gas;
    t.max_priority_fee_per_gas = fees.max_priority_fee_per_gas;
    let next = StoredPayout {
        fee_cap: t.fee_cap().to_string(),
        unsigned_tx: hex::encode(evm::unsigned_payload(&t)),
        evm: Some(t),
        ..stored.clone()
    };
    let json = match serde_json::to_string(&next) {
        Ok(j) => j,
        Err(e) => return Some(format!("cannot store a replacement: {e}")),
    };
    let (pid, now) = (row.payout_id.clone(), since.saturating_add(waited));
    let att = match p
        .blocking(move |s| {
            s.insert_replacement(&pid, now, |n| Ok((replacement_request_id(&pid, n), json)))
        })
        .await
    {
        Ok(a) => a,
        Err(e) => return Some(format!("cannot record a replacement: {e}")),
    };
    tracing::warn!(
        payout = %row.payout_id,
        attempt = att.attempt,
        waited_secs = waited,
        old_max_fee = old.max_fee_per_gas,
        new_max_fee = fees.max_fee_per_gas,
        new_tip = fees.max_priority_fee_per_gas,
        "transaction stuck; replacing it at the same nonce with higher fees"
    );
    let note = format!(
        "stuck for {waited} s; replacement {} at max fee {} wei per gas (was {})",
        att.attempt, fees.max_fee_per_gas, old.max_fee_per_gas
    );
    let update = PayoutChainUpdate {
        chain_state: "broadcast".into(),
        reason: Some(note.clone()),
        ..Default::default()
    };
    if let Err(e) = record(p, row, update).await {
        tracing::error!(payout = %row.payout_id, error = %e, "cannot record a replacement note");
    }
    submit(p, &request.request.initiator, &att).await;
    Some(note)
}

/// Records why a stuck payout is not replaced (once per new reason).
async fn note_stuck(p: &Payments, row: &PayoutRow, reason: String) -> String {
    if row.reason.as_deref() != Some(reason.as_str()) {
        tracing::error!(payout = %row.payout_id, alert = "payout_stuck", "{reason}");
        let update = PayoutChainUpdate {
            chain_state: "broadcast".into(),
            reason: Some(reason.clone()),
            ..Default::default()
        };
        if let Err(e) = record(p, row, update).await {
            tracing::error!(payout = %row.payout_id, error = %e, "cannot record a stuck payout");
        }
    }
    reason
}

/// Submits the signing request of a replacement attempt (the policy
/// decides on it like on any payout).
async fn submit(p: &Payments, initiator: &str, att: &ReplacementRow) {
    let Some(coordinator) = p.coordinator() else {
        tracing::warn!(request = %att.request_id, "the coordinator is stopping; the replacement waits");
        return;
    };
    let built = StoredPayout::parse_json(&att.payout_id, &att.payout_json).and_then(|stored| {
        let key = coordinator.key(&stored.wallet)?;
        coordinator.payout_request(initiator, &att.request_id, &stored, &key)
    });
    let request = match built {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request = %att.request_id, error = %e, "cannot build a replacement's request");
            return;
        }
    };
    match coordinator.submit_stored(request).await {
        Ok(keyfold_proto::api::SignOutcome::Signed(_)) => {
            tracing::info!(request = %att.request_id, "replacement signed")
        }
        Ok(keyfold_proto::api::SignOutcome::Pending(status)) => {
            tracing::info!(request = %att.request_id, state = %status.state, "replacement waits")
        }
        Err(e) => {
            tracing::warn!(request = %att.request_id, error = %e, "replacement not signed")
        }
    }
}

/// Post-signing step of a replacement's request: records its bytes in the
/// store and the audit log, and sends them.
pub(super) async fn broadcast(
    p: &Payments,
    att: &ReplacementRow,
    chain: &str,
    result: &SignResult,
) -> StepOutcome {
    let stored = match StoredPayout::parse_json(&att.payout_id, &att.payout_json) {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let signed = match assemble_evm(&stored, result) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot assemble the replacement: {e}")),
    };
    let hash = format!("{:#x}", signed.hash);
    let rpc = match p.rpc(chain) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    // As for a first transaction: the bytes are durable and logged before
    // the step is done, whatever the node answers.
    let persist = async {
        if att.raw_tx.is_none() {
            let (rid, raw, h) = (att.request_id.clone(), signed.raw.clone(), hash.clone());
            p.blocking(move |s| s.record_replacement_tx(&rid, &raw, &h))
                .await
                .map_err(|e| format!("store: {e}"))?;
        }
        if !att.logged {
            audit_tx(
                p,
                &att.request_id,
                chain,
                "replacement",
                &hash,
                Some(signed.raw.clone()),
                None,
                0,
            )
            .await?;
            let rid = att.request_id.clone();
            p.blocking(move |s| s.mark_replacement_logged(&rid))
                .await
                .map_err(|e| format!("store: {e}"))?;
        }
        Ok::<(), String>(())
    };
    match send_recording(p, rpc, &signed.raw, persist).await {
        Ok(Ok(())) => {
            tracing::info!(payout = %att.payout_id, attempt = att.attempt, tx = %hash, "replacement broadcast");
            StepOutcome::Done
        }
        Err(outcome) => outcome,
        Ok(Err(e)) => {
            // Refused (an earlier transaction was mined meanwhile, or the
            // node wants more): the payout's own request follows the
            // chain and replaces again if it stays stuck.
            tracing::warn!(payout = %att.payout_id, attempt = att.attempt, error = %e, "the node refused the replacement");
            StepOutcome::Done
        }
    }
}
