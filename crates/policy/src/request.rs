//! Typed signing requests, the signing history, and the request's canonical hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::Tier;

/// Domain separator of [`Request::canonical_hash`].
pub const REQUEST_DOMAIN: &[u8] = b"keyfold-policy/request/v1\0";

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
    /// Amount in the asset's smallest unit.
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
    /// one byte (0 typed transfer, 1 raw bytes) followed, for raw bytes, by the
    /// bytes. Every string and byte string is prefixed by its length as 8 bytes
    /// big-endian.
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
        }
        h.finalize().into()
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
    pub amount: u128,
}

/// Everything signed so far that the evaluator should count (velocity limits,
/// vesting releases). Order does not matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Entries, in any order.
    pub entries: Vec<HistoryEntry>,
}
