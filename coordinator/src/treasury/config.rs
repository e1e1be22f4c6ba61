//! The treasury's configuration: one tier per chain and asset (which keys
//! hold the hot, cold and gas-tank wallets, and the hot wallet's limits),
//! checked at start so a coordinator never runs with limits that contradict
//! each other.

use serde::{Deserialize, Serialize};

/// `[treasury]`: the settlement module's tiers and pacing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TreasuryConfig {
    /// How often the treasury looks at its balances, milliseconds (default
    /// 2000).
    pub poll_ms: u64,
    /// One tier per chain and asset.
    pub tiers: Vec<TierConfig>,
    /// Merchants settled from the tiers' hot wallets.
    pub settlements: Vec<SettlementConfig>,
    /// The merchant account whose webhook endpoints receive the treasury's
    /// alerts (`settlement.alert` when one starts, `settlement.alert_cleared`
    /// when it ends): an account the operators keep for themselves.
    pub alerts_to: Option<String>,
}

impl Default for TreasuryConfig {
    fn default() -> Self {
        Self {
            poll_ms: 2000,
            tiers: Vec::new(),
            settlements: Vec::new(),
            alerts_to: None,
        }
    }
}

/// `[[treasury.settlements]]`: how one merchant is settled in one asset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    /// The merchant.
    pub merchant: String,
    /// Chain registry id (a tier of this chain and asset pays).
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// A run at most this often (86400: daily).
    pub every_secs: u64,
    /// Smaller available balances wait for the next run (base units).
    #[serde(default, with = "amount")]
    pub min_amount: u128,
    /// Fee in basis points of the balance settled (50 = 0.5 %).
    #[serde(default)]
    pub fee_bps: u32,
    /// Fixed fee per run (base units), added to the proportional one.
    #[serde(default, with = "amount")]
    pub fee_fixed: u128,
    /// The merchant's registered payout address.
    pub payout_address: String,
}

impl SettlementConfig {
    /// `merchant chain/asset`.
    pub fn name(&self) -> String {
        format!("{} {}/{}", self.merchant, self.chain, self.asset)
    }

    /// The fee of settling `available`: the fixed part plus `fee_bps` of
    /// it, rounded down; `None` when it would take everything.
    pub fn fee_of(&self, available: u128) -> Option<u128> {
        let proportional = available / 10_000 * u128::from(self.fee_bps)
            + available % 10_000 * u128::from(self.fee_bps) / 10_000;
        let fee = proportional.checked_add(self.fee_fixed)?;
        (fee < available).then_some(fee)
    }
}

/// `[[treasury.tiers]]`: the wallets and limits of one chain and asset.
/// Amounts are base units (decimal strings or integers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol (the chain's native symbol or one of its tokens).
    pub asset: String,
    /// The hot wallet: a threshold key (its root address pays).
    pub hot_wallet: String,
    /// The cold wallet: the HSM's cold key, or a threshold key the policy
    /// gives a stricter quorum.
    pub cold_wallet: String,
    /// The gas tank: a threshold key whose native coin pays the gas of
    /// token sweeps (required for a token tier).
    #[serde(default)]
    pub gas_tank: Option<String>,
    /// The hot wallet's outflow limit per rolling 24 hours (the policy
    /// enforces it; `keyfold treasury policy` writes the rule).
    #[serde(with = "amount")]
    pub daily_limit: u128,
    /// Above it, the excess over `target` is swept to cold.
    #[serde(with = "amount")]
    pub high_water: u128,
    /// Below it, a replenishment from cold up to `target` is requested.
    #[serde(with = "amount")]
    pub low_water: u128,
    /// What sweeps to cold and replenishments aim for.
    #[serde(with = "amount")]
    pub target: u128,
    /// Deposit addresses holding less (after the sweep's fee) are left
    /// until more arrives (default 0: anything above the fee).
    #[serde(default, with = "amount")]
    pub sweep_min: u128,
    /// Sweeps in flight at once (default 1): each needs full threshold
    /// signing (an HD child), so a few at a time keep the signers free for
    /// payouts.
    #[serde(default = "default_in_flight")]
    pub max_sweeps_in_flight: u32,
    /// New sweeps started per minute at most (default 30).
    #[serde(default = "default_per_minute")]
    pub sweeps_per_minute: u32,
    /// After officers reject (or let expire) a replenishment, wait this
    /// long before asking again (default 3600); the alert stays meanwhile.
    #[serde(default = "default_retry")]
    pub replenish_retry_secs: u64,
}

fn default_in_flight() -> u32 {
    1
}
fn default_per_minute() -> u32 {
    30
}
fn default_retry() -> u64 {
    3600
}

mod amount {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Int(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Int(n) => Ok(u128::from(n)),
            Either::Text(t) => {
                if t.is_empty() || t.len() > 39 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(serde::de::Error::custom(format!(
                        "{t:?} is not an amount in base units (decimal digits only)"
                    )));
                }
                t.parse().map_err(serde::de::Error::custom)
            }
        }
    }
}

impl TierConfig {
    /// `chain/asset`, as logs and errors name the tier.
    pub fn name(&self) -> String {
        format!("{}/{}", self.chain, self.asset)
    }
}

impl TreasuryConfig {
    /// Refuses limits that contradict each other, naming the tier and the
    /// fields.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tiers {
            let name = t.name();
            let bad = |m: String| Err(format!("[[treasury.tiers]] {name}: {m}"));
            if !seen.insert((t.chain.clone(), t.asset.clone())) {
                return bad("a second tier for the same chain and asset".into());
            }
            if t.low_water > t.high_water {
                return bad(format!(
                    "low_water ({}) is above high_water ({}): the hot wallet would be swept to cold and replenished at once",
                    t.low_water, t.high_water
                ));
            }
            if !(t.low_water..=t.high_water).contains(&t.target) {
                return bad(format!(
                    "target ({}) must lie between low_water ({}) and high_water ({})",
                    t.target, t.low_water, t.high_water
                ));
            }
            if t.daily_limit == 0 {
                return bad("daily_limit is 0: the hot wallet could pay nothing".into());
            }
            if t.hot_wallet == t.cold_wallet {
                return bad("hot_wallet and cold_wallet are the same key".into());
            }
            if t.gas_tank.as_deref() == Some(t.hot_wallet.as_str())
                || t.gas_tank.as_deref() == Some(t.cold_wallet.as_str())
            {
                return bad("the gas tank must be its own key".into());
            }
            if t.max_sweeps_in_flight == 0 || t.sweeps_per_minute == 0 {
                return bad("max_sweeps_in_flight and sweeps_per_minute must be at least 1".into());
            }
        }
        let mut settled = std::collections::BTreeSet::new();
        for s in &self.settlements {
            let name = s.name();
            let bad = |m: String| Err(format!("[[treasury.settlements]] {name}: {m}"));
            if !settled.insert((s.merchant.clone(), s.chain.clone(), s.asset.clone())) {
                return bad("a second settlement of the same merchant, chain and asset".into());
            }
            if !self
                .tiers
                .iter()
                .any(|t| t.chain == s.chain && t.asset.eq_ignore_ascii_case(&s.asset))
            {
                return bad("no [[treasury.tiers]] of this chain and asset pays it".into());
            }
            if s.fee_bps > 10_000 {
                return bad(format!("fee_bps {} is above 10000 (100 %)", s.fee_bps));
            }
            if s.every_secs == 0 {
                return bad("every_secs must be at least 1".into());
            }
            if let Err(e) = keyfold_chain::evm::parse_address("payout_address", &s.payout_address) {
                return bad(e.to_string());
            }
        }
        if self.poll_ms == 0 {
            return Err("[treasury] poll_ms must be at least 1".into());
        }
        if let Some(m) = &self.alerts_to {
            keyfold_store::check_merchant_id(m)
                .map_err(|e| format!("[treasury] alerts_to: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(low: u128, target: u128, high: u128) -> TreasuryConfig {
        TreasuryConfig {
            poll_ms: 1000,
            settlements: Vec::new(),
            alerts_to: None,
            tiers: vec![TierConfig {
                chain: "devnet-l1".into(),
                asset: "ETH".into(),
                hot_wallet: "h".into(),
                cold_wallet: "c".into(),
                gas_tank: None,
                daily_limit: 10,
                high_water: high,
                low_water: low,
                target,
                sweep_min: 0,
                max_sweeps_in_flight: 1,
                sweeps_per_minute: 30,
                replenish_retry_secs: 60,
            }],
        }
    }

    #[test]
    fn low_water_above_high_water_is_refused_with_the_reason() {
        let e = tier(9, 8, 5).validate().unwrap_err();
        assert!(
            e.contains("devnet-l1/ETH") && e.contains("low_water (9) is above high_water (5)"),
            "{e}"
        );
        assert!(tier(1, 9, 5).validate().unwrap_err().contains("target (9)"));
        assert!(tier(1, 3, 5).validate().is_ok());
    }

    #[test]
    fn settlements_need_a_tier_a_valid_address_and_a_sane_fee() {
        let mut c = tier(1, 3, 5);
        let s = SettlementConfig {
            merchant: "acme".into(),
            chain: "devnet-l1".into(),
            asset: "ETH".into(),
            every_secs: 86400,
            min_amount: 0,
            fee_bps: 50,
            fee_fixed: 7,
            payout_address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
        };
        c.settlements = vec![s.clone()];
        assert!(c.validate().is_ok());
        assert_eq!(s.fee_of(1_000_000), Some(5_007));
        assert_eq!(s.fee_of(7), None);
        let mut bad = c.clone();
        bad.settlements[0].chain = "base".into();
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("no [[treasury.tiers]]"));
        let mut bad = c.clone();
        bad.settlements[0].payout_address = "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into();
        assert!(bad.validate().is_err());
        let mut bad = c.clone();
        bad.settlements[0].fee_bps = 10_001;
        assert!(bad.validate().unwrap_err().contains("fee_bps"));
        let mut bad = c;
        bad.settlements.push(s);
        assert!(bad.validate().unwrap_err().contains("second settlement"));
    }

    #[test]
    fn amounts_parse_from_strings_and_integers_and_nothing_else() {
        let ok: TreasuryConfig = toml::from_str(
            r#"[[tiers]]
chain = "devnet-l1"
asset = "ETH"
hot_wallet = "h"
cold_wallet = "c"
daily_limit = "340282366920938463463374607431768211455"
high_water = 5
low_water = "1"
target = "3"
"#,
        )
        .unwrap();
        assert_eq!(ok.tiers[0].daily_limit, u128::MAX);
        assert_eq!(ok.tiers[0].high_water, 5);
        for bad in ["\"1.5\"", "\"-1\"", "\"1e9\"", "\"\"", "-3"] {
            let text = format!(
                "[[tiers]]\nchain = \"a\"\nasset = \"b\"\nhot_wallet = \"h\"\ncold_wallet = \"c\"\ndaily_limit = {bad}\nhigh_water = 5\nlow_water = 1\ntarget = 3\n"
            );
            assert!(toml::from_str::<TreasuryConfig>(&text).is_err(), "{bad}");
        }
    }
}
