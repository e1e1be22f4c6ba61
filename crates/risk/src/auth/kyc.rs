//! Payment limits per KYC tier.
//!
//! ```toml
//! [none]
//! USDC = { max_single = "0", max_24h = "0" }
//! [basic]
//! USDC = { max_single = "1000000000", max_24h = "5000000000" }        # 1,000 / 5,000 USDC
//! [full]
//! USDC = { max_single = "100000000000", max_24h = "500000000000" }    # 100,000 / 500,000 USDC
//! ```
//!
//! Amounts are base units, as decimal strings (TOML integers stop at
//! 2^63). An asset a tier does not list cannot be paid at that tier: the
//! limits fail closed. A higher tier must allow at least what a lower one
//! does, so "the tier that would allow it" is well defined.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{AuthError, AuthRefusal, LimitKind};
use crate::input::{KycTier, MAX_ID_BYTES};
use crate::tree::Amount;

/// Largest tier-limits document, bytes.
pub const MAX_TIER_LIMITS_BYTES: usize = 64 * 1024;

/// Most assets listed per tier.
pub const MAX_TIER_ASSETS: usize = 256;

/// One asset's limits at one tier, base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetLimit {
    /// The largest single payment.
    pub max_single: Amount,
    /// The largest total over 24 hours, the payment included.
    pub max_24h: Amount,
}

/// The limits of the three tiers. Built with [`TierLimits::from_toml`],
/// [`TierLimits::new`] or serde, all of which validate. The default lists
/// no asset, so it refuses every payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TierTables", into = "TierTables")]
pub struct TierLimits {
    none: BTreeMap<String, AssetLimit>,
    basic: BTreeMap<String, AssetLimit>,
    full: BTreeMap<String, AssetLimit>,
}

/// The document shape of [`TierLimits`], validated when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierTables {
    #[serde(default)]
    none: BTreeMap<String, AssetLimit>,
    #[serde(default)]
    basic: BTreeMap<String, AssetLimit>,
    #[serde(default)]
    full: BTreeMap<String, AssetLimit>,
}

impl TryFrom<TierTables> for TierLimits {
    type Error = AuthError;
    fn try_from(t: TierTables) -> Result<TierLimits, AuthError> {
        TierLimits::new(t.none, t.basic, t.full)
    }
}

impl From<TierLimits> for TierTables {
    fn from(l: TierLimits) -> TierTables {
        TierTables {
            none: l.none,
            basic: l.basic,
            full: l.full,
        }
    }
}

const TIERS: [KycTier; 3] = [KycTier::None, KycTier::Basic, KycTier::Full];

impl TierLimits {
    /// Builds and validates limits from per-tier tables.
    pub fn new(
        none: BTreeMap<String, AssetLimit>,
        basic: BTreeMap<String, AssetLimit>,
        full: BTreeMap<String, AssetLimit>,
    ) -> Result<TierLimits, AuthError> {
        let limits = TierLimits { none, basic, full };
        limits.validate()?;
        Ok(limits)
    }

    /// Parses and validates a TOML document (at most
    /// [`MAX_TIER_LIMITS_BYTES`]).
    pub fn from_toml(text: &str) -> Result<TierLimits, AuthError> {
        if text.len() > MAX_TIER_LIMITS_BYTES {
            return Err(AuthError::TierLimits(format!(
                "{} bytes, the limit is {MAX_TIER_LIMITS_BYTES}",
                text.len()
            )));
        }
        // Read the plain tables first, so a validation error comes back
        // typed rather than inside a TOML message.
        let tables: TierTables =
            toml::from_str(text).map_err(|e| AuthError::TierLimits(e.to_string()))?;
        TierLimits::try_from(tables)
    }

    /// One tier's table.
    pub fn tier(&self, tier: KycTier) -> &BTreeMap<String, AssetLimit> {
        match tier {
            KycTier::None => &self.none,
            KycTier::Basic => &self.basic,
            KycTier::Full => &self.full,
        }
    }

    /// Checks: asset names 1..=128 bytes, at most [`MAX_TIER_ASSETS`] per
    /// tier, `max_single <= max_24h`, and each asset of a tier listed by
    /// every higher tier with limits at least as high.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |why: String| Err(AuthError::TierLimits(why));
        for tier in TIERS {
            let table = self.tier(tier);
            if table.len() > MAX_TIER_ASSETS {
                return bad(format!(
                    "tier {} lists {} assets, the limit is {MAX_TIER_ASSETS}",
                    tier.name(),
                    table.len()
                ));
            }
            for (asset, l) in table {
                if asset.is_empty() || asset.len() > MAX_ID_BYTES {
                    return bad(format!(
                        "tier {}: asset name {:?} must be 1 to {MAX_ID_BYTES} bytes",
                        tier.name(),
                        asset.chars().take(32).collect::<String>()
                    ));
                }
                if l.max_single.0 > l.max_24h.0 {
                    return bad(format!(
                        "tier {} {asset}: max_single {} is above max_24h {}, so it can never be used",
                        tier.name(),
                        l.max_single.0,
                        l.max_24h.0
                    ));
                }
            }
        }
        for (lower, higher) in [
            (KycTier::None, KycTier::Basic),
            (KycTier::Basic, KycTier::Full),
        ] {
            for (asset, l) in self.tier(lower) {
                let Some(h) = self.tier(higher).get(asset) else {
                    return bad(format!(
                        "tier {} lists {asset} but tier {} does not: a higher tier must allow at least what a lower one does",
                        lower.name(),
                        higher.name()
                    ));
                };
                if h.max_single.0 < l.max_single.0 || h.max_24h.0 < l.max_24h.0 {
                    return bad(format!(
                        "tier {} {asset} limits are below tier {}'s: a higher tier must allow at least what a lower one does",
                        higher.name(),
                        lower.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Which limit of `tier` a payment of `amount` after `spent_24h` (the
    /// customer's total in this asset over the last 24 hours, before this
    /// payment) exceeds, if any: `(kind, limit, attempted)`.
    fn exceeded(
        &self,
        tier: KycTier,
        asset: &str,
        amount: u128,
        spent_24h: u128,
    ) -> Option<(LimitKind, u128, u128)> {
        let Some(l) = self.tier(tier).get(asset) else {
            // Not listed: nothing of this asset may be paid at this tier.
            return Some((LimitKind::Single, 0, amount));
        };
        if amount > l.max_single.0 {
            return Some((LimitKind::Single, l.max_single.0, amount));
        }
        // Saturating: a total past u128 exceeds any limit anyway.
        let total = spent_24h.saturating_add(amount);
        if total > l.max_24h.0 {
            return Some((LimitKind::Total24h, l.max_24h.0, total));
        }
        None
    }

    /// Checks a payment against the customer's tier: `amount` at most the
    /// tier's `max_single` for the asset, and `spent_24h + amount` at most
    /// its `max_24h`. The refusal (`kyc_tier_limit`) names the tier, the
    /// limit and the lowest tier that would allow the payment.
    ///
    /// `spent_24h` is the customer's total in this asset over the last 24
    /// hours, this payment excluded (for example the customer's `24h` sum
    /// in [`crate::Features`] minus the payment, or the coordinator's
    /// ledger).
    pub fn check_tier(
        &self,
        tier: KycTier,
        asset: &str,
        amount: u128,
        spent_24h: u128,
    ) -> Result<(), AuthRefusal> {
        let Some((kind, limit, attempted)) = self.exceeded(tier, asset, amount, spent_24h) else {
            return Ok(());
        };
        let allowed_by = TIERS
            .into_iter()
            .filter(|t| *t > tier)
            .find(|t| self.exceeded(*t, asset, amount, spent_24h).is_none());
        Err(AuthRefusal::KycTierLimit {
            tier,
            asset: asset.chars().take(MAX_ID_BYTES).collect(),
            kind,
            limit,
            attempted,
            allowed_by,
        })
    }
}
