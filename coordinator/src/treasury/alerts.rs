//! The treasury's alerts: typed, compared round to round so each is logged
//! and announced once when it starts and once when it ends, and announced
//! as webhook events (`settlement.alert`, `settlement.alert_cleared`) to the
//! merchant account named by `[treasury] alerts_to`, an account the
//! operators keep for themselves, through the ordinary signed and retried
//! webhook outbox.

use keyfold_chain::amount::format_amount;
use keyfold_chain::evm;
use keyfold_store::NewEvent;
use serde::{Deserialize, Serialize};

use super::config::TreasuryConfig;
use super::monitor::Difference;
use super::plan::{self, Alert};
use super::Resolved;

/// What an alert is about (the webhook's `kind`, stable for routing).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The ledger and the chain differ with nothing in flight.
    LedgerDifference,
    /// A reorg took deposits merchants were already credited with.
    ReorgLoss,
    /// Hot is below its low-water mark and its replenishment was refused
    /// or failed.
    ReplenishmentRefused,
    /// Cold holds less than hot needs.
    ColdShort,
    /// The gas tank cannot pay a token sweep's gas.
    GasTankDry,
    /// The policy does not hold the hot wallet to its daily limit.
    DailyLimitNotEnforced,
    /// The tier could not run this round (a key or a chain unavailable).
    TierUnavailable,
    /// A merchant's settlement could not run this round.
    SettlementUnavailable,
    /// Sweeps have waited long for a presignature pool to refill.
    SweepsPaused,
}

impl AlertKind {
    /// Its name in logs and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::LedgerDifference => "ledger_difference",
            AlertKind::ReorgLoss => "reorg_loss",
            AlertKind::ReplenishmentRefused => "replenishment_refused",
            AlertKind::ColdShort => "cold_short",
            AlertKind::GasTankDry => "gas_tank_dry",
            AlertKind::DailyLimitNotEnforced => "daily_limit_not_enforced",
            AlertKind::TierUnavailable => "tier_unavailable",
            AlertKind::SettlementUnavailable => "settlement_unavailable",
            AlertKind::SweepsPaused => "sweeps_paused",
        }
    }
}

impl From<&plan::Alert> for AlertKind {
    fn from(a: &plan::Alert) -> Self {
        match a {
            plan::Alert::ReplenishmentRefused { .. } => AlertKind::ReplenishmentRefused,
            plan::Alert::ColdShort { .. } => AlertKind::ColdShort,
            plan::Alert::GasTankDry { .. } => AlertKind::GasTankDry,
        }
    }
}

/// One alert of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreasuryAlert {
    /// What it is about.
    pub kind: AlertKind,
    /// In words, with what to do.
    pub message: String,
    /// The balances, for a ledger difference.
    pub difference: Option<Difference>,
}

impl TreasuryAlert {
    /// An alert without a difference.
    pub fn new(kind: AlertKind, message: String) -> Self {
        Self {
            kind,
            message,
            difference: None,
        }
    }
}

/// Where an alert comes from: a tier or a merchant's settlement.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The tier (`l1/ETH`) or the settlement (`acme l1/ETH`).
    pub name: &'a str,
    /// `tier` or `settlement`.
    pub of: &'static str,
    /// Chain registry id.
    pub chain: &'a str,
    /// Asset symbol.
    pub asset: &'a str,
}

/// The alerts of `now` that `before` did not have (started) and those of
/// `before` that `now` no longer has (ended). An alert whose words change
/// (a new balance in it) ends and starts again.
pub fn changes<'a>(
    before: &'a [TreasuryAlert],
    now: &'a [TreasuryAlert],
) -> (Vec<&'a TreasuryAlert>, Vec<&'a TreasuryAlert>) {
    let started = now.iter().filter(|a| !before.contains(a)).collect();
    let ended = before.iter().filter(|a| !now.contains(a)).collect();
    (started, ended)
}

/// The webhook event announcing that `alert` started (`raised`) or ended,
/// for the operators' merchant account `to`, at `now` (Unix seconds).
pub fn event(
    to: &str,
    scope: Scope<'_>,
    alert: &TreasuryAlert,
    raised: bool,
    now: u64,
) -> NewEvent {
    let event_type = if raised {
        "settlement.alert"
    } else {
        "settlement.alert_cleared"
    };
    let payload = serde_json::json!({
        "type": event_type,
        "timestamp": crate::orders::rfc3339(i64::try_from(now).unwrap_or(i64::MAX)),
        "data": {
            "kind": alert.kind.as_str(),
            scope.of: scope.name,
            "chain": scope.chain,
            "asset": scope.asset,
            "message": alert.message,
            "difference": alert.difference,
        },
    });
    NewEvent {
        event_id: crate::webhooks::new_event_id(),
        merchant_id: to.to_string(),
        event_type: event_type.to_string(),
        payload: payload.to_string(),
    }
}

/// A planner's alert in words, with the tier's amounts and addresses.
pub(super) fn describe(a: &Alert, r: &Resolved) -> String {
    let unit = |v: u128| {
        format!(
            "{} {}",
            format_amount(evm::U256::from(v), r.decimals),
            r.asset
        )
    };
    match a {
        Alert::ReplenishmentRefused {
            payout_id,
            hot,
            retry_at,
        } => format!(
            "the hot wallet ({}) is below its low-water mark and replenishment {payout_id} was refused or failed; a new one is requested at {retry_at} (Unix seconds), or approve a transfer from cold by hand",
            unit(*hot)
        ),
        Alert::ColdShort { needed, cold } => format!(
            "the cold wallet holds {}, less than the {} the hot wallet needs: fund the cold wallet {}",
            unit(*cold),
            unit(*needed),
            r.cold.address
        ),
        Alert::GasTankDry { needed, tank } => format!(
            "the gas tank {} holds {} wei, less than the {needed} wei a token sweep's gas needs: token sweeps wait until it is funded",
            r.gas.as_ref().map(|g| g.address.as_str()).unwrap_or("-"),
            tank
        ),
    }
}

/// Logs the alerts of `scope` that start or end this round (a round every
/// second would otherwise repeat them; they stay in the view meanwhile) and
/// returns their webhook events when `[treasury] alerts_to` names an
/// account.
pub(super) fn announce(
    config: &TreasuryConfig,
    scope: Scope<'_>,
    before: &[TreasuryAlert],
    now_alerts: &[TreasuryAlert],
    now: u64,
) -> Vec<NewEvent> {
    let (started, ended) = changes(before, now_alerts);
    for a in &started {
        match &a.difference {
            Some(d) => {
                tracing::error!(alert = "settlement.ledger_difference", account = %d.account, asset = %d.asset, ledger = %d.ledger_balance, chain = %d.chain_balance, "the ledger and the chain differ")
            }
            None => {
                tracing::warn!(alert = "settlement.treasury", kind = a.kind.as_str(), scope = %scope.name, "{}", a.message)
            }
        }
    }
    for a in &ended {
        tracing::info!(kind = a.kind.as_str(), scope = %scope.name, "treasury alert cleared: {}", a.message);
    }
    let Some(to) = &config.alerts_to else {
        return Vec::new();
    };
    started
        .into_iter()
        .map(|a| event(to, scope, a, true, now))
        .chain(ended.into_iter().map(|a| event(to, scope, a, false, now)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, m: &str) -> TreasuryAlert {
        TreasuryAlert::new(kind, m.into())
    }

    #[test]
    fn an_alert_starts_once_and_ends_once() {
        let a = alert(AlertKind::ColdShort, "cold holds 1");
        let b = alert(AlertKind::GasTankDry, "tank holds 0");
        let (s, e) = changes(&[], std::slice::from_ref(&a));
        assert_eq!((s, e), (vec![&a], vec![]));
        let (s, e) = changes(std::slice::from_ref(&a), std::slice::from_ref(&a));
        assert!(s.is_empty() && e.is_empty());
        let now = [a.clone(), b.clone()];
        let (s, e) = changes(std::slice::from_ref(&a), &now);
        assert_eq!((s, e), (vec![&b], vec![]));
        let (s, e) = changes(&now, std::slice::from_ref(&b));
        assert_eq!((s, e), (vec![], vec![&a]));
        // New words: the old one ends, the new one starts.
        let a2 = alert(AlertKind::ColdShort, "cold holds 2");
        let (s, e) = changes(std::slice::from_ref(&a), std::slice::from_ref(&a2));
        assert_eq!((s, e), (vec![&a2], vec![&a]));
    }

    #[test]
    fn the_event_names_its_kind_scope_and_balances() {
        let d = Difference {
            account: "wallet:hot:0xabc".into(),
            chain: "l1".into(),
            asset: "ETH".into(),
            ledger_balance: "3".into(),
            chain_balance: "4".into(),
        };
        let a = TreasuryAlert {
            kind: AlertKind::LedgerDifference,
            message: d.describe(),
            difference: Some(d),
        };
        let scope = Scope {
            name: "l1/ETH",
            of: "tier",
            chain: "l1",
            asset: "ETH",
        };
        let e = event("ops", scope, &a, true, 1_800_000_000);
        assert_eq!(e.merchant_id, "ops");
        assert_eq!(e.event_type, "settlement.alert");
        let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(v["type"], "settlement.alert");
        assert_eq!(v["data"]["kind"], "ledger_difference");
        assert_eq!(v["data"]["tier"], "l1/ETH");
        assert_eq!(v["data"]["difference"]["chain_balance"], "4");
        let e = event("ops", scope, &a, false, 1_800_000_000);
        assert_eq!(e.event_type, "settlement.alert_cleared");
    }
}
