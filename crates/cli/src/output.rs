//! The JSON summary that `keyfold demo --out` and `keyfold devnet --out` write.

use serde::Serialize;

/// `{"ecdsa": {...}, "eddsa": {...}}`, every value hex.
#[derive(Serialize)]
pub struct Summary {
    /// The secp256k1 key and its signature.
    pub ecdsa: EcdsaSummary,
    /// The Ed25519 key and its signature.
    pub eddsa: EddsaSummary,
    /// Payouts paid on the devnet's chains (none without anvil, or in the demo).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payouts: Vec<crate::devnet_chains::PayoutSummary>,
    /// Signed Solana transfers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub solana: Vec<crate::devnet_chains::SolanaSummary>,
    /// The devnet's merchant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant: Option<crate::devnet_orders::MerchantSummary>,
    /// Its settled payment orders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<crate::devnet_orders::OrderSummary>,
    /// Every webhook delivery its receiver got.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::devnet_orders::WebhookSummary>,
    /// The treasury's tiers at the end of the run: hot and cold balances
    /// (ledger and chain), sweeps and replenishments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub treasury: Vec<crate::devnet_treasury::TreasurySummary>,
    /// The risk scenario: its payouts' decisions, the freeze it caused
    /// and its lift, the refused proofs (none without anvil, or in the demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::devnet_risk::RiskSummary>,
}

/// A secp256k1 signature: 33-byte compressed key, message, hash, 64-byte `r || s`.
#[derive(Serialize)]
pub struct EcdsaSummary {
    /// Compressed SEC1 public key, hex.
    pub public_key: String,
    /// The message, hex.
    pub message: String,
    /// `sha256` or `keccak256`.
    pub hash: String,
    /// `r || s`, hex.
    pub signature: String,
}

/// An Ed25519 signature: 32-byte key, message, 64-byte signature.
#[derive(Serialize)]
pub struct EddsaSummary {
    /// Public key, hex.
    pub public_key: String,
    /// The message, hex.
    pub message: String,
    /// Signature, hex.
    pub signature: String,
}

/// Writes the summary as pretty JSON.
pub fn write(path: &std::path::Path, summary: &Summary) -> Result<(), String> {
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| format!("cannot encode the summary: {e}"))?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
