//! A signed payout's post-signing steps.
//!
//! * `broadcast` (EVM): assembles the signed transaction from the stored
//!   unsigned one and the threshold signature (deterministic: after a crash
//!   the same bytes come out), and sends it while recording the bytes and
//!   their hash in the store and the audit log (the step is done only once
//!   both hold them). A node that refuses them is asked whether it
//!   knows the hash (then it was sent already) and whether the nonce was
//!   used meanwhile by a transaction Keyfold did not send (then the payout
//!   fails with an alert; it is never signed again with another nonce).
//! * `confirm` (EVM): follows the receipt of whichever of the payout's
//!   transactions (its first, or a replacement) the chain mined to the
//!   required depth, checking the block it is in is still canonical; what
//!   to do while none is mined (send again, replace) is in [`replace`].
//! * `send_early`: before all of these, the moment the signature is
//!   logged, a first send of the transaction.
//! * `assemble` (Solana): the signed wire transaction, for the client to
//!   send.
//!
//! Decisions rest on what the node answers to typed queries (receipts,
//! transactions by hash, nonces), never on an error message's text.

use keyfold_chain::evm;
use keyfold_chain::solana;
use keyfold_proto::api::SignResult;
use keyfold_store::{PayoutChainUpdate, PayoutRow};

use super::payout::{is_replacement, StoredPayout};
use super::replace;
use super::Payments;
use crate::chain_rpc::error::RpcError;
use crate::modules::StepOutcome;
use crate::requests::record::StoredRequest;

/// Seconds between two looks at a transaction in flight.
pub(super) const POLL_SECS: u64 = 1;
/// Seconds before a broadcast refused by the node is tried again.
pub(super) const RETRY_SECS: u64 = 2;

pub(super) fn failed(reason: impl Into<String>) -> StepOutcome {
    StepOutcome::Failed {
        reason: reason.into(),
    }
}

/// Runs step `step` of a signed payout.
pub async fn run(
    p: &Payments,
    request: &StoredRequest,
    result: &SignResult,
    step: &str,
) -> StepOutcome {
    if is_replacement(&request.request.id) {
        return run_replacement(p, request, result, step).await;
    }
    let rid = request.request.id.clone();
    let row = match p.blocking(move |s| s.payout_of_request(&rid)).await {
        Ok(Some(row)) => row,
        Ok(None) => return failed(format!("no payout for request {}", request.request.id)),
        Err(e) => {
            return StepOutcome::Retry {
                at: p.now() + RETRY_SECS,
                reason: format!("store: {e}"),
            }
        }
    };
    let stored = match StoredPayout::parse(&row) {
        Ok(s) => s,
        Err(e) => return failed(e.to_string()),
    };
    let outcome = match step {
        "broadcast" => broadcast(p, &row, &stored, result).await,
        "confirm" => confirm(p, request, &row, &stored).await,
        "assemble" => assemble(p, &row, &stored, result).await,
        other => failed(format!("the payments module has no step {other}")),
    };
    if let StepOutcome::Failed { reason } = &outcome {
        if row.tx_hash.is_some() && row.broadcast_logged {
            if let Err(e) =
                audit(p, &row, "failed", None, row.block_number, row.confirmations).await
            {
                tracing::error!(payout = %row.payout_id, error = %e, "cannot log a failed payout");
            }
        }
        let update = PayoutChainUpdate {
            chain_state: "failed".into(),
            block_number: row.block_number,
            confirmations: row.confirmations,
            reason: Some(reason.clone()),
            mined_tx_hash: row.mined_tx_hash.clone(),
            ..Default::default()
        };
        let id = row.payout_id.clone();
        if let Err(e) = p
            .blocking(move |s| s.update_payout_chain(&id, &update, super::payout_event))
            .await
        {
            tracing::error!(payout = %row.payout_id, error = %e, "cannot record a failed payout");
        }
    }
    outcome
}

/// Sends an EVM transaction the moment its signature is logged, without
/// waiting for the client's answer and the broadcast step. Its bytes are a
/// pure function of what is durable already (the unsigned transaction and
/// the logged signature), so sending them before the step records them is
/// safe: the step assembles the same bytes, records them, and sends them
/// again (a node that has them says so). A failure here is only logged.
pub(super) fn send_early(p: &Payments, request: &StoredRequest, result: &SignResult) {
    let keyfold_policy::Payload::ChainTransaction {
        chain,
        chain_id: Some(_),
        source,
        tx,
        ..
    } = &request.request.payload
    else {
        return;
    };
    let Ok(rpc) = p.rpc(chain).cloned() else {
        return;
    };
    let built = signature_parts(result).and_then(|(r, s)| {
        let from = evm::parse_address("source", source).map_err(|e| e.to_string())?;
        evm::attach_signature(tx, r, s, from).map_err(|e| e.to_string())
    });
    let signed = match built {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(request = %request.request.id, error = %e, "cannot assemble the transaction early; the broadcast step will");
            return;
        }
    };
    let id = request.request.id.clone();
    tokio::spawn(async move {
        match rpc.send_raw_transaction(&signed.raw).await {
            Ok(_) => tracing::debug!(request = %id, tx = %signed.hash, "sent as soon as signed"),
            Err(e) => {
                tracing::debug!(request = %id, error = %e, "early send refused; the broadcast step follows up")
            }
        }
    });
}

/// Step `step` of a replacement's signing request (its failure leaves the
/// payout to its first request, which follows the chain).
async fn run_replacement(
    p: &Payments,
    request: &StoredRequest,
    result: &SignResult,
    step: &str,
) -> StepOutcome {
    let rid = request.request.id.clone();
    let att = match p.blocking(move |s| s.replacement_of_request(&rid)).await {
        Ok(Some(a)) => a,
        Ok(None) => return failed(format!("no replacement for request {}", request.request.id)),
        Err(e) => return retry(p, RETRY_SECS, format!("store: {e}")),
    };
    let keyfold_policy::Payload::ChainTransaction { chain, .. } = &request.request.payload else {
        return failed("a replacement that is not a chain transaction");
    };
    match step {
        "broadcast" => replace::broadcast(p, &att, chain, result).await,
        other => failed(format!("a replacement has no step {other}")),
    }
}

fn signature_parts(result: &SignResult) -> Result<([u8; 32], [u8; 32]), String> {
    let sig = hex::decode(&result.signature).map_err(|e| format!("signature hex: {e}"))?;
    let (r, s) = sig
        .split_at_checked(32)
        .ok_or_else(|| format!("signature of {} bytes", sig.len()))?;
    let r: [u8; 32] = r.try_into().map_err(|_| "r".to_string())?;
    let s: [u8; 32] = s
        .try_into()
        .map_err(|_| format!("signature of {} bytes", sig.len()))?;
    Ok((r, s))
}

/// The signed transaction of an EVM payout.
pub(super) fn assemble_evm(
    stored: &StoredPayout,
    result: &SignResult,
) -> Result<evm::SignedTransaction, String> {
    let unsigned = hex::decode(&stored.unsigned_tx).map_err(|e| format!("unsigned tx: {e}"))?;
    let (r, s) = signature_parts(result)?;
    let from = evm::parse_address("from", &stored.from).map_err(|e| e.to_string())?;
    evm::attach_signature(&unsigned, r, s, from).map_err(|e| e.to_string())
}

pub(super) async fn record(
    p: &Payments,
    row: &PayoutRow,
    update: PayoutChainUpdate,
) -> Result<(), String> {
    let id = row.payout_id.clone();
    p.blocking(move |s| s.update_payout_chain(&id, &update, super::payout_event))
        .await
        .map_err(|e| e.to_string())
}

/// Appends a chain-transaction event for the payout's first transaction
/// (see [`audit_tx`]).
async fn audit(
    p: &Payments,
    row: &PayoutRow,
    action: &str,
    raw_tx: Option<Vec<u8>>,
    block_number: Option<u64>,
    confirmations: u64,
) -> Result<(), String> {
    let Some(tx_hash) = row.tx_hash.clone().or_else(|| {
        raw_tx
            .as_ref()
            .map(|r| format!("{:#x}", alloy_primitives::keccak256(r)))
    }) else {
        return Err("no transaction hash to log".into());
    };
    audit_tx(
        p,
        &row.request_id,
        &row.chain,
        action,
        &tx_hash,
        raw_tx,
        block_number,
        confirmations,
    )
    .await
}

/// Appends a chain-transaction event to the audit log (and waits for it:
/// the step is not done until the log holds it).
#[allow(clippy::too_many_arguments)]
pub(super) async fn audit_tx(
    p: &Payments,
    request_id: &str,
    chain: &str,
    action: &str,
    tx_hash: &str,
    raw_tx: Option<Vec<u8>>,
    block_number: Option<u64>,
    confirmations: u64,
) -> Result<(), String> {
    let event = keyfold_audit::Event::ChainTransaction {
        request_id: request_id.to_string(),
        chain: chain.to_string(),
        action: action.to_string(),
        tx_hash: tx_hash.to_string(),
        raw_tx: raw_tx.map(keyfold_audit::HexBytes),
        block_number,
        confirmations,
    };
    p.journal
        .write(vec![event], Vec::new())
        .await
        .map_err(|e| format!("audit log: {e}"))
}

pub(super) fn retry(p: &Payments, secs: u64, reason: impl Into<String>) -> StepOutcome {
    StepOutcome::Retry {
        at: p.now() + secs,
        reason: reason.into(),
    }
}

async fn broadcast(
    p: &Payments,
    row: &PayoutRow,
    stored: &StoredPayout,
    result: &SignResult,
) -> StepOutcome {
    let signed = match assemble_evm(stored, result) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot assemble the signed transaction: {e}")),
    };
    let hash = format!("{:#x}", signed.hash);
    let rpc = match p.rpc(&stored.chain) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    // The bytes go to the store and the audit log while they are sent: they
    // are a pure function of what is already durable (the unsigned
    // transaction and the logged signature), so a crash at any point
    // resumes with the very same transaction, and a node that has it
    // already is found by its hash. Both records are done before the step
    // is.
    let persist = async {
        if row.raw_tx.is_none() {
            let update = PayoutChainUpdate {
                chain_state: "broadcast".into(),
                raw_tx: Some(signed.raw.clone()),
                tx_hash: Some(hash.clone()),
                ..Default::default()
            };
            record(p, row, update)
                .await
                .map_err(|e| format!("store: {e}"))?;
            tracing::info!(payout = %row.payout_id, tx = %hash, nonce = ?row.nonce, "payout signed");
        }
        if !row.broadcast_logged {
            audit(p, row, "broadcast", Some(signed.raw.clone()), None, 0).await?;
            let id = row.payout_id.clone();
            p.blocking(move |s| s.mark_broadcast_logged(&id))
                .await
                .map_err(|e| format!("store: {e}"))?;
        }
        Ok::<(), String>(())
    };
    match send_recording(p, rpc, &signed.raw, persist).await {
        Ok(Ok(())) => {
            tracing::info!(payout = %row.payout_id, tx = %hash, "payout broadcast");
            StepOutcome::Done
        }
        Ok(Err(e)) => refused(p, row, stored, signed.hash, e).await,
        Err(outcome) => outcome,
    }
}

/// Sends `raw` while `persist` records it (in the store and the audit
/// log): a failed record or an unreachable node is retried
/// (`Err(outcome)`); otherwise what the node answered (`Ok(Err)` is a
/// refusal, for the caller to look into).
pub(super) async fn send_recording(
    p: &Payments,
    rpc: &crate::chain_rpc::EvmRpc,
    raw: &[u8],
    persist: impl std::future::Future<Output = Result<(), String>>,
) -> Result<Result<(), RpcError>, StepOutcome> {
    let (persisted, sent) = tokio::join!(persist, rpc.send_raw_transaction(raw));
    if let Err(e) = persisted {
        return Err(retry(p, RETRY_SECS, e));
    }
    match sent {
        Ok(_) => Ok(Ok(())),
        Err(e) if e.is_transport() => Err(retry(p, RETRY_SECS, format!("RPC unreachable: {e}"))),
        Err(e) => Ok(Err(e)),
    }
}

/// The node refused the bytes: find out why from typed queries.
async fn refused(
    p: &Payments,
    row: &PayoutRow,
    stored: &StoredPayout,
    hash: evm::B256,
    error: RpcError,
) -> StepOutcome {
    let Ok(rpc) = p.rpc(&stored.chain) else {
        return failed("no RPC");
    };
    match rpc.transaction_by_hash(hash).await {
        // Already known (sent before a crash, or by another node): done.
        Ok(Some(_)) => return StepOutcome::Done,
        Ok(None) => {}
        Err(e) => return retry(p, RETRY_SECS, format!("RPC: {e}")),
    }
    if let (Ok(from), Some(nonce)) = (evm::parse_address("from", &stored.from), row.nonce) {
        match rpc.nonce(from, false).await {
            Ok(mined) if mined > nonce => {
                let reason = format!(
                    "nonce {nonce} of {} was used by a transaction Keyfold did not send; this payout was not paid",
                    stored.from
                );
                tracing::error!(payout = %row.payout_id, alert = "foreign_nonce", "{reason}");
                return failed(reason);
            }
            Ok(_) => {}
            Err(e) => return retry(p, RETRY_SECS, format!("RPC: {e}")),
        }
    }
    retry(
        p,
        RETRY_SECS,
        format!("the node refused the transaction: {error}"),
    )
}

async fn confirm(
    p: &Payments,
    request: &StoredRequest,
    row: &PayoutRow,
    stored: &StoredPayout,
) -> StepOutcome {
    let id = row.payout_id.clone();
    let replacements = match p.blocking(move |s| s.replacements(&id)).await {
        Ok(r) => r,
        Err(e) => return retry(p, POLL_SECS, format!("store: {e}")),
    };
    let sent = match replace::sent_transactions(row, &replacements) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let rpc = match p.rpc(&stored.chain) {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    // Whichever of its transactions the chain mined (they share a nonce:
    // at most one can be), newest first.
    let mut mined = None;
    for tx in sent.iter().rev() {
        match rpc.transaction_receipt(tx.hash).await {
            Ok(Some(receipt)) => {
                mined = Some((tx, receipt));
                break;
            }
            Ok(None) => {}
            Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
        }
    }
    let Some((tx, receipt)) = mined else {
        return replace::unmined(p, request, row, stored, &sent, &replacements).await;
    };
    let head = match rpc.block_number().await {
        Ok(h) => h,
        Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
    };
    // The block must still be the canonical one at its height.
    match rpc.block_hash(receipt.block_number).await {
        Ok(Some(h)) if h == receipt.block_hash => {}
        Ok(_) => {
            return retry(
                p,
                POLL_SECS,
                "its block was reorganized away; looking again",
            )
        }
        Err(e) => return retry(p, POLL_SECS, format!("RPC: {e}")),
    }
    let confirmations = head.saturating_sub(receipt.block_number) + 1;
    let required = u64::from(stored.confirmations_required.max(1));
    let done = confirmations >= required;
    if !receipt.success {
        let reason = format!(
            "the transaction reverted on chain in block {}",
            receipt.block_number
        );
        // Its fee was paid all the same: the ledger books it.
        let update = PayoutChainUpdate {
            chain_state: "failed".into(),
            block_number: Some(receipt.block_number),
            confirmations: confirmations.min(required),
            mined_tx_hash: Some(tx.hash_text.clone()),
            reason: Some(reason.clone()),
            booking: Some(booking(p, row, stored, &receipt, true)),
            ..Default::default()
        };
        if let Err(e) = record(p, row, update).await {
            return retry(p, POLL_SECS, format!("store: {e}"));
        }
        return failed(reason);
    }
    let update = PayoutChainUpdate {
        chain_state: if done { "completed" } else { "confirming" }.into(),
        block_number: Some(receipt.block_number),
        confirmations: confirmations.min(required),
        mined_tx_hash: Some(tx.hash_text.clone()),
        booking: done.then(|| booking(p, row, stored, &receipt, false)),
        ..Default::default()
    };
    if let Err(e) = record(p, row, update).await {
        return retry(p, POLL_SECS, format!("store: {e}"));
    }
    if done {
        if let Err(e) = audit_tx(
            p,
            &tx.request_id,
            &row.chain,
            "confirmed",
            &tx.hash_text,
            None,
            Some(receipt.block_number),
            confirmations,
        )
        .await
        {
            return retry(p, POLL_SECS, e);
        }
        tracing::info!(payout = %row.payout_id, tx = %tx.hash_text, block = receipt.block_number, "payout confirmed");
        StepOutcome::Done
    } else {
        retry(
            p,
            POLL_SECS,
            format!("{confirmations} of {required} confirmations"),
        )
    }
}

async fn assemble(
    p: &Payments,
    row: &PayoutRow,
    stored: &StoredPayout,
    result: &SignResult,
) -> StepOutcome {
    let built = (|| {
        let message = hex::decode(&stored.unsigned_tx).map_err(|e| e.to_string())?;
        let sig = hex::decode(&result.signature).map_err(|e| e.to_string())?;
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| "signature is not 64 bytes".to_string())?;
        let wire = solana::attach_signature(&message, sig).map_err(|e| e.to_string())?;
        Ok::<_, String>((wire, bs58::encode(sig).into_string()))
    })();
    let (wire, txid) = match built {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot assemble the signed transaction: {e}")),
    };
    let update = PayoutChainUpdate {
        chain_state: "signed".into(),
        raw_tx: Some(wire),
        tx_hash: Some(txid),
        ..Default::default()
    };
    match record(p, row, update).await {
        Ok(()) => StepOutcome::Done,
        Err(e) => retry(p, RETRY_SECS, format!("store: {e}")),
    }
}

/// What a mined payout moved, for the ledger: its amount (none if it
/// reverted) and the fee its receipt shows.
fn booking(
    p: &Payments,
    row: &PayoutRow,
    stored: &StoredPayout,
    receipt: &crate::chain_rpc::evm::ReceiptSeen,
    reverted: bool,
) -> keyfold_store::PayoutBooking {
    let native = p
        .registry()
        .get(&stored.chain)
        .map(|e| e.native_symbol.clone())
        .unwrap_or_default();
    keyfold_store::PayoutBooking {
        asset: stored.asset.clone(),
        native,
        to: stored.to.clone(),
        amount: if reverted {
            0
        } else {
            stored.amount.parse().unwrap_or(0)
        },
        fee: u128::from(receipt.gas_used).saturating_mul(receipt.effective_gas_price),
        merchant: row.merchant_id.clone(),
        reverted,
    }
}
