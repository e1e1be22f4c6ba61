//! Typed signing requests, the signing history, and the request's canonical hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::Tier;

/// Domain separator of [`Request::canonical_hash`].
pub const REQUEST_DOMAIN: &[u8] = b"keyfold-policy/request/v1\0";

/// Domain separator of the message signed for a typed transfer
/// ([`Request::signing_message`]).
pub const TRANSFER_DOMAIN: &[u8] = b"keyfold/transfer-intent/v1\0";

/// What is to be signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A typed transfer whose amount and destination are the request fields.
    TypedTransfer,
    /// Raw bytes; matches only rules with `allow_raw = true` (and deny rules).
    RawBytes {
        /// The bytes to sign.
        bytes: Vec<u8>,
    },
    /// A chain transaction (a payout): the unsigned transaction the wallet
    /// signs, and the typed fields it must pay. The request's `asset`,
    /// `amount` (base units) and `destination` are the transfer; every
    /// signer decodes `tx` itself and refuses it unless it pays exactly
    /// that (`keyfold_chain::check`).
    ChainTransaction {
        /// Registry id of the chain (`base`, `devnet-l1`, `solana-devnet` ...).
        chain: String,
        /// EVM chain id (absent for Solana).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain_id: Option<u64>,
        /// Token contract or mint; absent for the native asset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_contract: Option<String>,
        /// The paying address (the wallet's address on that chain).
        source: String,
        /// The most the transaction can pay in fees, in the native asset's
        /// base units (EVM: max fee per gas x gas limit).
        #[serde(with = "crate::document::amount")]
        fee_cap: u128,
        /// The unsigned transaction: the EIP-2718 signing payload (EVM) or
        /// the serialized message (Solana), hex in JSON.
        #[serde(with = "hex::serde")]
        tx: Vec<u8>,
    },
}

impl Payload {
    /// The chain of a chain transaction.
    pub fn chain(&self) -> Option<&str> {
        match self {
            Payload::ChainTransaction { chain, .. } => Some(chain),
            _ => None,
        }
    }

    /// The fee cap of a chain transaction.
    pub fn fee_cap(&self) -> Option<u128> {
        match self {
            Payload::ChainTransaction { fee_cap, .. } => Some(*fee_cap),
            _ => None,
        }
    }
}

/// A signing request as seen by the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Request id (unique per request; binds approvals to one request).
    pub id: String,
    /// Wallet / key id.
    pub wallet: String,
    /// Tier of the wallet.
    pub tier: Tier,
    /// Asset symbol.
    pub asset: String,
    /// Amount in the asset's smallest unit (JSON: an integer, or a decimal
    /// string above 2^63 - 1).
    #[serde(with = "crate::document::amount")]
    pub amount: u128,
    /// Destination address.
    pub destination: String,
    /// Initiator (API client name).
    pub initiator: String,
    /// Time the request was made (Unix seconds, UTC). Time matchers, the
    /// address-book cool-down and time locks are computed from it.
    pub time: u64,
    /// Payload.
    pub payload: Payload,
    /// What the risk engine said, for a request it judged (a customer
    /// payout): rules with a `risk` matcher match only such requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskFacts>,
    /// Where the request comes from, when not straight from its initiator:
    /// an occurrence of a schedule or a released conditional payout. Rules
    /// with an `origins` matcher read it (absent = `direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<RequestOrigin>,
}

/// Where a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOrigin {
    /// Made by its initiator through the API.
    Direct,
    /// An occurrence of a scheduled payout.
    Scheduled,
    /// A conditional payout released (or refunded) by its condition.
    Conditional,
}

impl RequestOrigin {
    /// The origin's byte in [`Request::canonical_hash`].
    pub fn byte(self) -> u8 {
        match self {
            RequestOrigin::Direct => 0,
            RequestOrigin::Scheduled => 1,
            RequestOrigin::Conditional => 2,
        }
    }

    /// The origin of a request (absent = direct).
    pub fn of(req: &Request) -> RequestOrigin {
        req.origin.unwrap_or(RequestOrigin::Direct)
    }
}

/// The risk engine's outcome for a request, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskFacts {
    /// Score, 0..=100.
    pub score: u8,
    /// The engine's action (a request the policy sees was allowed, or held
    /// and released by an officer's review).
    pub action: RiskAction,
    /// The customer's verification tier.
    pub kyc_tier: KycLevel,
}

/// A risk engine action (the names of `keyfold-risk`'s trees).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Allowed.
    Allow,
    /// A step-up was required.
    StepUp,
    /// Held for review (and released by an officer).
    Review,
    /// Freeze.
    Freeze,
    /// Deny.
    Deny,
}

impl RiskAction {
    fn byte(self) -> u8 {
        match self {
            RiskAction::Allow => 0,
            RiskAction::StepUp => 1,
            RiskAction::Review => 2,
            RiskAction::Freeze => 3,
            RiskAction::Deny => 4,
        }
    }
}

/// A customer's verification tier. Ordered: `None < Basic < Full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KycLevel {
    /// Not verified.
    None,
    /// Basic checks.
    Basic,
    /// Full identity verification.
    Full,
}

impl KycLevel {
    fn byte(self) -> u8 {
        match self {
            KycLevel::None => 0,
            KycLevel::Basic => 1,
            KycLevel::Full => 2,
        }
    }
}

fn put_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

impl Request {
    /// Canonical SHA-256 hash of the request, signed (indirectly) by approvals.
    ///
    /// Bytes hashed, in order: [`REQUEST_DOMAIN`]; then `id`, `wallet`;
    /// tier as one byte (0 hot, 1 cold); `asset`; amount as 16 bytes big-endian;
    /// `destination`, `initiator`; time as 8 bytes big-endian; payload tag as
    /// one byte (0 typed transfer, 1 raw bytes, 2 chain transaction) followed,
    /// for raw bytes, by the bytes; for a chain transaction by `chain`, the
    /// chain id (one byte 0 when absent, or 1 and 8 bytes big-endian), the
    /// token contract (same presence byte, then the string), `source`, the
    /// fee cap as 16 bytes big-endian and `tx`; then, only for a request
    /// with risk facts, the byte `R`, the score, the action (0 allow, 1
    /// step_up, 2 review, 3 freeze, 4 deny) and the KYC tier (0 none, 1
    /// basic, 2 full), one byte each. Every string and byte string is
    /// prefixed by its length as 8 bytes big-endian.
    pub fn canonical_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(REQUEST_DOMAIN);
        put_str(&mut h, &self.id);
        put_str(&mut h, &self.wallet);
        h.update([match self.tier {
            Tier::Hot => 0u8,
            Tier::Cold => 1u8,
        }]);
        put_str(&mut h, &self.asset);
        h.update(self.amount.to_be_bytes());
        put_str(&mut h, &self.destination);
        put_str(&mut h, &self.initiator);
        h.update(self.time.to_be_bytes());
        match &self.payload {
            Payload::TypedTransfer => h.update([0u8]),
            Payload::RawBytes { bytes } => {
                h.update([1u8]);
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
            Payload::ChainTransaction {
                chain,
                chain_id,
                token_contract,
                source,
                fee_cap,
                tx,
            } => {
                h.update([2u8]);
                put_str(&mut h, chain);
                match chain_id {
                    None => h.update([0u8]),
                    Some(id) => {
                        h.update([1u8]);
                        h.update(id.to_be_bytes());
                    }
                }
                match token_contract {
                    None => h.update([0u8]),
                    Some(c) => {
                        h.update([1u8]);
                        put_str(&mut h, c);
                    }
                }
                put_str(&mut h, source);
                h.update(fee_cap.to_be_bytes());
                h.update((tx.len() as u64).to_be_bytes());
                h.update(tx);
            }
        }
        // Appended only when present, so a request without risk facts keeps
        // the hash it always had (approvals already signed stay valid).
        if let Some(r) = &self.risk {
            h.update([b'R', r.score, r.action.byte(), r.kyc_tier.byte()]);
        }
        // Likewise the origin, when one was given.
        if let Some(o) = self.origin {
            h.update([b'O', o.byte()]);
        }
        h.finalize().into()
    }
}

impl Request {
    /// The bytes the wallet key signs for this request.
    ///
    /// For raw bytes, the bytes themselves; for a chain transaction, the
    /// unsigned transaction (ECDSA wallets sign its keccak-256, the chain's
    /// signing hash). For a typed transfer, a
    /// transfer intent that binds the fields the policy decided on:
    /// [`TRANSFER_DOMAIN`] ‖ `id` ‖ `wallet` ‖ `asset` ‖ amount (16 bytes
    /// big-endian) ‖ `destination`, each string prefixed by its length as 8
    /// bytes big-endian. Signers compute it themselves from the request, so
    /// a coordinator cannot get a signature over anything but what the
    /// policy allowed.
    pub fn signing_message(&self) -> Vec<u8> {
        match &self.payload {
            Payload::RawBytes { bytes } => bytes.clone(),
            Payload::ChainTransaction { tx, .. } => tx.clone(),
            Payload::TypedTransfer => {
                let mut out = TRANSFER_DOMAIN.to_vec();
                for s in [&self.id, &self.wallet, &self.asset] {
                    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                out.extend_from_slice(&self.amount.to_be_bytes());
                out.extend_from_slice(&(self.destination.len() as u64).to_be_bytes());
                out.extend_from_slice(self.destination.as_bytes());
                out
            }
        }
    }

    /// The history entry this request adds once signed.
    pub fn history_entry(&self, signed_at: u64) -> HistoryEntry {
        HistoryEntry {
            time: signed_at,
            wallet: self.wallet.clone(),
            asset: self.asset.clone(),
            destination: self.destination.clone(),
            initiator: self.initiator.clone(),
            amount: self.amount,
        }
    }
}

/// One past signed transfer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Time it was signed (Unix seconds).
    pub time: u64,
    /// Wallet.
    pub wallet: String,
    /// Asset.
    pub asset: String,
    /// Destination address.
    pub destination: String,
    /// Initiator.
    pub initiator: String,
    /// Amount (smallest units).
    #[serde(with = "crate::document::amount")]
    pub amount: u128,
}

/// A list of past signed transfers (velocity limits, vesting releases), in any
/// order. The evaluator reads them as [`crate::Spending`] aggregates
/// ([`crate::Spending::from_history`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Entries, in any order.
    pub entries: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests travel inside internally tagged enums (the signer protocol),
    /// where serde_json cannot buffer a bare u128: amounts must survive that.
    #[test]
    fn huge_amounts_survive_an_internally_tagged_enum() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        #[serde(tag = "type")]
        enum Wrap {
            R { request: Request },
        }
        for amount in [0, 7, i64::MAX as u128, u128::MAX] {
            let w = Wrap::R {
                request: Request {
                    id: "r".into(),
                    wallet: "w".into(),
                    tier: Tier::Hot,
                    asset: "ETH".into(),
                    amount,
                    destination: "d".into(),
                    initiator: "i".into(),
                    risk: None,
                    origin: None,
                    time: 1,
                    payload: Payload::TypedTransfer,
                },
            };
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(serde_json::from_str::<Wrap>(&json).unwrap(), w);
        }
    }
}
