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
}

impl Default for TreasuryConfig {
    fn default() -> Self {
        Self {
            poll_ms: 2000,
            tiers: Vec::new(),
        }
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
        if self.poll_ms == 0 {
            return Err("[treasury] poll_ms must be at least 1".into());
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
