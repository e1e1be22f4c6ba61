//! A payout as the coordinator keeps it: what the client asked, checked and
//! in canonical form ([`Checked`]), the typed payout stored with its
//! transaction ([`StoredPayout`]), and the API view of both with the
//! signing request's state ([`view`]).

use keyfold_chain::amount::{format_amount, parse_amount, to_u128};
use keyfold_chain::evm;
use keyfold_chain::registry::{AssetRef, ChainEntry, ChainFamily};
use keyfold_chain::solana;
use keyfold_proto::api::{PayoutInfo, PayoutRequest, PayoutState, PayoutTransaction, RequestState};
use keyfold_store::{PayoutRow, ReplacementRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::requests::intake::{check_client_id, MAX_ID};
use crate::service::ServiceError;

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

/// Prefix of the signing requests that carry payouts (reserved: a client's
/// own signing request may not use it).
pub const REQUEST_PREFIX: &str = "payout:";

/// Most replacements of one payout's transaction.
pub const MAX_REPLACEMENTS: u32 = 5;

/// Longest `payout_id`: its request ids (`payout:{id}` and
/// `payout:{id}+r{n}`) must fit the 128-byte id limit.
pub const MAX_PAYOUT_ID: usize = MAX_ID - REQUEST_PREFIX.len() - "+r5".len();

/// The signing request id of payout `payout_id`.
pub fn request_id_of(payout_id: &str) -> String {
    format!("{REQUEST_PREFIX}{payout_id}")
}

/// The signing request id of replacement `attempt` of payout `payout_id`
/// (`+` never occurs in a client's id, so it cannot collide, and needs no
/// escaping in a URL path).
pub fn replacement_request_id(payout_id: &str, attempt: u32) -> String {
    format!("{REQUEST_PREFIX}{payout_id}+r{attempt}")
}

/// Whether `request_id` signs a replacement transaction.
pub fn is_replacement(request_id: &str) -> bool {
    request_id.starts_with(REQUEST_PREFIX) && request_id.contains('+')
}

/// A payout request, checked: every field in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// The client's id.
    pub payout_id: String,
    /// Key id of the paying wallet.
    pub wallet: String,
    /// The paying HD child (canonical path), if not the root key.
    pub derivation_path: Option<String>,
    /// Registry id of the chain.
    pub chain: String,
    /// EVM chain id.
    pub chain_id: Option<u64>,
    /// Asset symbol.
    pub asset: String,
    /// Token contract or mint (canonical spelling); none for native.
    pub token_contract: Option<String>,
    /// The asset's decimals.
    pub decimals: u8,
    /// Recipient (EIP-55 spelling on EVM chains).
    pub to: String,
    /// Amount in base units.
    pub amount: u128,
    /// The client's reference.
    pub reference: Option<String>,
    /// Solana: the recent blockhash.
    pub recent_blockhash: Option<[u8; 32]>,
    /// The customer behind it, pseudonymised (set by the endpoint, which
    /// holds the key). Absent from the fingerprint when absent, so payouts
    /// recorded before client contexts existed keep theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::risk::context::PayoutClient>,
}

impl Checked {
    /// What makes two submissions the same payout.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"keyfold/payout-fingerprint/v1\0");
        // Serializing plain data cannot fail.
        h.update(serde_json::to_vec(self).unwrap_or_default());
        h.finalize().to_vec()
    }
}

/// Checks a payout request against the chain registry.
pub fn check(req: &PayoutRequest, entry: &ChainEntry) -> Result<Checked, ServiceError> {
    check_client_id("payout_id", &req.payout_id)?;
    // The signing request ids add a prefix and a suffix; they must fit.
    if req.payout_id.len() > MAX_PAYOUT_ID {
        return Err(bad(format!(
            "payout_id must be at most {MAX_PAYOUT_ID} characters"
        )));
    }
    crate::requests::intake::check_key_id(&req.wallet).map_err(|e| bad(format!("wallet: {e}")))?;
    let (token_contract, decimals) = match entry.asset(&req.asset) {
        Some(AssetRef::Native) => (None, entry.native_decimals),
        Some(AssetRef::Token(t)) => (Some(t.contract.clone()), t.decimals),
        None => {
            let mut known = vec![entry.native_symbol.clone()];
            known.extend(entry.tokens.iter().map(|t| t.symbol.clone()));
            return Err(bad(format!(
                "asset \"{}\" is not accepted on {} (accepted: {})",
                req.asset.chars().take(40).collect::<String>(),
                entry.id,
                known.join(", ")
            )));
        }
    };
    let amount = parse_amount("amount", &req.amount, decimals)
        .and_then(|a| to_u128("amount", a))
        .map_err(|e| bad(e.to_string()))?;
    if amount == 0 {
        return Err(bad("amount must be more than zero".into()));
    }
    if let Some(r) = &req.reference {
        if r.len() > MAX_ID || r.chars().any(char::is_control) {
            return Err(bad(format!(
                "reference must be at most {MAX_ID} characters without control characters"
            )));
        }
    }
    let derivation_path = req
        .derivation_path
        .as_deref()
        .map(|p| {
            if entry.family != ChainFamily::Evm {
                return Err(bad(format!(
                    "derivation_path applies to EVM (secp256k1) wallets, not {}",
                    entry.id
                )));
            }
            crate::requests::intake::parse_path(p).map(|p| p.to_string())
        })
        .transpose()?;
    let (to, recent_blockhash) = match entry.family {
        ChainFamily::Evm => {
            if req.recent_blockhash.is_some() {
                return Err(bad(format!(
                    "recent_blockhash applies to Solana chains only, not {}",
                    entry.id
                )));
            }
            let a = evm::parse_address("to", &req.to).map_err(|e| bad(e.to_string()))?;
            (a.to_checksum(None), None)
        }
        ChainFamily::Solana => {
            let a = solana::parse_address("to", &req.to).map_err(|e| bad(e.to_string()))?;
            let bh = req.recent_blockhash.as_deref().ok_or_else(|| {
                bad(format!(
                    "a payout on {} needs recent_blockhash (base58): Keyfold signs it and returns the transaction for you to send",
                    entry.id
                ))
            })?;
            let bh =
                solana::parse_address("recent_blockhash", bh).map_err(|e| bad(e.to_string()))?;
            (solana::address_of_public_key(&a), Some(bh))
        }
    };
    Ok(Checked {
        payout_id: req.payout_id.clone(),
        wallet: req.wallet.clone(),
        derivation_path,
        chain: entry.id.clone(),
        chain_id: entry.chain_id,
        asset: req.asset.clone(),
        token_contract,
        decimals,
        to,
        amount,
        reference: req.reference.clone(),
        recent_blockhash,
        client: None,
    })
}

/// The typed payout as stored (`payout_json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPayout {
    /// The client's id.
    pub payout_id: String,
    /// The paying wallet (key id).
    pub wallet: String,
    /// The paying HD child, if not the root key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<String>,
    /// Chain registry id.
    pub chain: String,
    /// EVM chain id.
    pub chain_id: Option<u64>,
    /// Asset symbol.
    pub asset: String,
    /// Token contract or mint.
    pub token_contract: Option<String>,
    /// The asset's decimals.
    pub decimals: u8,
    /// Paying address.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Amount in base units (decimal string).
    pub amount: String,
    /// Fee cap, native base units (decimal string).
    pub fee_cap: String,
    /// Confirmations required.
    pub confirmations_required: u32,
    /// The client's reference.
    pub reference: Option<String>,
    /// The EVM transaction's fields.
    pub evm: Option<evm::Transfer>,
    /// The unsigned transaction, hex.
    pub unsigned_tx: String,
    /// The customer behind it, pseudonymised, for the risk engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<crate::risk::context::PayoutClient>,
    /// Where it comes from when not from its creator's request (a
    /// schedule's occurrence, a conditional payout), for the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<keyfold_policy::RequestOrigin>,
}

impl StoredPayout {
    /// Parses a stored row's JSON.
    pub fn parse(row: &PayoutRow) -> Result<StoredPayout, ServiceError> {
        Self::parse_json(&row.payout_id, &row.payout_json)
    }

    /// Parses the JSON stored for payout `payout_id` (its row's or a
    /// replacement's).
    pub fn parse_json(payout_id: &str, json: &str) -> Result<StoredPayout, ServiceError> {
        serde_json::from_str(json).map_err(|e| {
            ServiceError::Internal(format!("stored payout {payout_id} does not parse: {e}"))
        })
    }

    /// The amount in base units.
    pub fn amount_base_units(&self) -> u128 {
        self.amount.parse().unwrap_or(0)
    }
}

/// The payout's state from its signing request's state, what the chain
/// showed and whether its transaction was replaced.
pub fn state_of(request: Option<RequestState>, chain_state: &str, replaced: bool) -> PayoutState {
    match chain_state {
        "completed" => return PayoutState::Completed,
        "confirming" => return PayoutState::Confirming,
        "broadcast" if replaced => return PayoutState::Replaced,
        "broadcast" => return PayoutState::Broadcast,
        "signed" => return PayoutState::Signed,
        "failed" => return PayoutState::Failed,
        _ => {}
    }
    match request {
        Some(RequestState::PendingApproval) => PayoutState::PendingApproval,
        Some(RequestState::TimeLocked) => PayoutState::TimeLocked,
        Some(RequestState::Held) => PayoutState::Held,
        Some(RequestState::Rejected) => PayoutState::Rejected,
        Some(RequestState::Expired) => PayoutState::Expired,
        Some(RequestState::Cancelled) => PayoutState::Cancelled,
        Some(RequestState::Failed) => PayoutState::Failed,
        _ => PayoutState::Signing,
    }
}

/// The API view of a payout.
pub fn view(
    row: &PayoutRow,
    stored: &StoredPayout,
    replacements: &[ReplacementRow],
    request: Option<RequestState>,
    request_reason: Option<String>,
    risk: Option<keyfold_proto::api::RiskSummary>,
) -> PayoutInfo {
    let state = state_of(request, &row.chain_state, !replacements.is_empty());
    let amount = stored.amount_base_units();
    let transactions = transactions(row, stored, replacements);
    // The transaction that paid once mined, else the newest signed one.
    let (raw, tx_hash) = match &row.mined_tx_hash {
        Some(h) if row.tx_hash.as_ref() != Some(h) => replacements
            .iter()
            .find(|r| r.tx_hash.as_ref() == Some(h))
            .map(|r| (r.raw_tx.clone(), r.tx_hash.clone()))
            .unwrap_or((row.raw_tx.clone(), row.tx_hash.clone())),
        Some(_) => (row.raw_tx.clone(), row.tx_hash.clone()),
        None => replacements
            .iter()
            .rev()
            .find(|r| r.tx_hash.is_some())
            .map(|r| (r.raw_tx.clone(), r.tx_hash.clone()))
            .unwrap_or((row.raw_tx.clone(), row.tx_hash.clone())),
    };
    let raw_tx = raw.as_ref().map(|raw| {
        if stored.chain_id.is_some() {
            format!("0x{}", hex::encode(raw))
        } else {
            solana::base64_wire(raw)
        }
    });
    // Ended before it was signed: why the request ended says more than
    // the store's note that the nonce went back.
    let reason = if row.chain_state == "released" {
        request_reason.or(row.reason.clone())
    } else {
        row.reason.clone().or(match state {
            PayoutState::Rejected
            | PayoutState::Expired
            | PayoutState::Cancelled
            | PayoutState::Failed => request_reason,
            _ => None,
        })
    };
    PayoutInfo {
        payout_id: row.payout_id.clone(),
        request_id: row.request_id.clone(),
        state,
        reason,
        wallet: stored.wallet.clone(),
        derivation_path: stored.derivation_path.clone(),
        chain: stored.chain.clone(),
        chain_id: stored.chain_id,
        asset: stored.asset.clone(),
        token_contract: stored.token_contract.clone(),
        from: stored.from.clone(),
        to: stored.to.clone(),
        amount: format_amount(evm::U256::from(amount), stored.decimals),
        amount_base_units: amount.to_string(),
        // Solana transactions have no account nonce (the blockhash binds them).
        nonce: row.nonce.filter(|_| stored.chain_id.is_some()),
        fee_cap: stored.fee_cap.clone(),
        raw_tx,
        tx_hash,
        block_number: row.block_number,
        confirmations: row.confirmations,
        confirmations_required: stored.confirmations_required,
        reference: stored.reference.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
        transactions,
        risk,
    }
}

/// The payout's transactions at its nonce (none listed while it has only
/// its first: the payout's own fields say it all).
fn transactions(
    row: &PayoutRow,
    stored: &StoredPayout,
    replacements: &[ReplacementRow],
) -> Vec<PayoutTransaction> {
    if replacements.is_empty() {
        return Vec::new();
    }
    let entry = |request_id: &str, attempt, s: &StoredPayout, hash: &Option<String>| {
        let (max, tip) = s
            .evm
            .as_ref()
            .map(|t| (t.max_fee_per_gas, t.max_priority_fee_per_gas))
            .unwrap_or_default();
        PayoutTransaction {
            request_id: request_id.to_string(),
            attempt,
            max_fee_per_gas: max.to_string(),
            max_priority_fee_per_gas: tip.to_string(),
            tx_hash: hash.clone(),
            mined: hash.is_some() && *hash == row.mined_tx_hash,
        }
    };
    let mut out = vec![entry(&row.request_id, 0, stored, &row.tx_hash)];
    for r in replacements {
        if let Ok(s) = StoredPayout::parse_json(&r.payout_id, &r.payout_json) {
            out.push(entry(&r.request_id, r.attempt, &s, &r.tx_hash));
        }
    }
    out
}
