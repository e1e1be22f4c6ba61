//! `[risk]`: which tree the risk engine starts with, who reviews, and how
//! customer identifiers are pseudonymised.

use std::path::PathBuf;

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
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: true,
            tree_file: None,
            officers_group: None,
            require_client: false,
        }
    }
}
