//! `[risk]`: which tree the risk engine starts with, who reviews, how
//! customers authenticate their payments, and how long raw client context
//! is kept.

use std::path::PathBuf;

use keyfold_risk::PasswordConfig;
use serde::{Deserialize, Serialize};

/// `[risk]` (`docs/risk.md`, "Running it").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Judge payouts that carry a client context (default true).
    pub enabled: bool,
    /// The first tree (TOML) when the store holds none; the built-in
    /// default tree when unset. Later trees come only as admin-signed
    /// updates (`POST /v1/risk/tree`).
    pub tree_file: Option<PathBuf>,
    /// The policy group whose approvers review held payouts and lift
    /// freezes; every approver of every group when unset.
    pub officers_group: Option<String>,
    /// Refuse payouts that carry no client context (customer-facing
    /// deployments, where every payout has a customer behind it).
    pub require_client: bool,
    /// Most active devices per customer (default 5).
    pub device_cap: usize,
    /// Seconds after its registration before a device's signature may
    /// satisfy a step-up (default 86,400: a day). Earlier, a payment the
    /// tree asks a step-up for is refused with `device_too_new` unless a
    /// one-time code comes with it.
    pub new_device_delay_secs: u64,
    /// How far a device signature's timestamp may be from the
    /// coordinator's clock, seconds (default 300).
    pub signature_window_secs: u64,
    /// Days the raw IP address of a payout is kept for investigators
    /// (default 30; 0 keeps none). The audit log and the engine only ever
    /// see the address's /24 (IPv4) or /48 (IPv6) block.
    pub raw_context_retention_days: u64,
    /// Per-tier limits (`keyfold_risk::TierLimits` TOML): a customer
    /// payout above its tier's single or 24-hour limit in its asset is
    /// refused with `kyc_tier_limit`. No limits when unset (the tree's
    /// `require_kyc` rules still apply).
    pub tier_limits_file: Option<PathBuf>,
    /// Issuer name shown by authenticator apps (default `Keyfold`).
    pub totp_issuer: String,
    /// Payment password hashing and lockout.
    pub password: PasswordConfig,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: true,
            tree_file: None,
            officers_group: None,
            require_client: false,
            device_cap: 5,
            new_device_delay_secs: 24 * 3600,
            signature_window_secs: 300,
            raw_context_retention_days: 30,
            tier_limits_file: None,
            totp_issuer: "Keyfold".into(),
            password: PasswordConfig::default(),
        }
    }
}

impl RiskConfig {
    /// Checks the settings at start.
    pub fn validate(&self) -> Result<(), String> {
        if self.device_cap == 0 || self.device_cap > keyfold_risk::auth::MAX_DEVICE_RECORDS {
            return Err(format!(
                "[risk] device_cap must be 1..={}",
                keyfold_risk::auth::MAX_DEVICE_RECORDS
            ));
        }
        if self.signature_window_secs == 0 || self.signature_window_secs > 3600 {
            return Err("[risk] signature_window_secs must be 1..=3600".into());
        }
        if self.totp_issuer.is_empty()
            || self.totp_issuer.len() > keyfold_risk::auth::MAX_URI_LABEL_BYTES
        {
            return Err(format!(
                "[risk] totp_issuer must be 1..={} bytes",
                keyfold_risk::auth::MAX_URI_LABEL_BYTES
            ));
        }
        self.password
            .validate()
            .map_err(|e| format!("[risk.password]: {e}"))
    }
}
