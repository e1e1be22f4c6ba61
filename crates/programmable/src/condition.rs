//! Conditional payouts (escrow), as pure logic: a payout is held until its
//! typed condition holds, and given up (cancelled, or refunded to another
//! address) once it can no longer hold. The coordinator gathers the facts
//! (the time, who released it, the order's state, confirmed token
//! transfers) and asks [`Escrow::judge`]; the answer names why, and that
//! reason is what the audit log records.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Most approvers a condition may name.
pub const MAX_APPROVERS: usize = 16;
/// Longest name, id or address in a condition, in bytes.
pub const MAX_FIELD: usize = 128;

/// What must happen for a held payout to be paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// A deadline passes: paid at or after `at` (Unix seconds).
    After {
        /// The time.
        at: u64,
    },
    /// `quorum` of the named approvers (API client names) release it.
    Approvers {
        /// Who may release it.
        approvers: Vec<String>,
        /// How many of them must.
        quorum: u32,
    },
    /// A payment order of the same merchant settles.
    OrderSettled {
        /// The order.
        order_id: String,
    },
    /// A confirmed transfer of a token into an address: an ERC-20
    /// `Transfer` log the chain watcher matches.
    TokenTransfer {
        /// Chain registry id.
        chain: String,
        /// The token's symbol in the chain registry.
        asset: String,
        /// The receiving address.
        to: String,
        /// The least amount (base units, decimal string) one transfer
        /// must carry.
        #[serde(with = "base_units")]
        min_amount: u128,
    },
}

/// What happens when the condition can no longer hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OnExpiry {
    /// Nothing is paid.
    #[default]
    Cancel,
    /// The same amount is paid back to `to` instead.
    Refund {
        /// The refund address.
        to: String,
    },
}

/// A condition, when it stops being awaited, and what then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escrow {
    /// What releases the payout.
    pub condition: Condition,
    /// The condition can no longer hold after this time (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Cancel or refund then.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

/// The state of the order an `order_settled` condition names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFact {
    /// No such order (of this merchant).
    Unknown,
    /// Not settled yet (`new` or `processing`).
    Open,
    /// Settled.
    Settled,
    /// Expired or invalid: it will never settle.
    Closed,
}

/// A confirmed token transfer seen by the chain watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFact {
    /// Its transaction.
    pub tx_hash: String,
    /// Its amount, base units.
    pub amount: u128,
}

/// What the coordinator knows when it asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Now (Unix seconds).
    pub now: u64,
    /// The API clients that released the payout so far.
    pub released_by: BTreeSet<String>,
    /// The named order's state (for `order_settled`).
    pub order: Option<OrderFact>,
    /// The confirmed transfers into the address (for `token_transfer`).
    pub transfers: Vec<TransferFact>,
}

/// The answer of [`Escrow::judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Keep waiting.
    Wait,
    /// Pay the held payout, because of this.
    Release(String),
    /// Give up (cancel or refund, as `on_expiry` says), because of this.
    Expire(String),
}

/// Why an escrow is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionError {
    /// A field is out of bounds or inconsistent.
    #[error("condition {field}: {why}")]
    Invalid {
        /// The field (`condition.quorum`, `expires_at` ...).
        field: &'static str,
        /// What is wrong, and what is allowed.
        why: String,
    },
}

fn invalid(field: &'static str, why: impl Into<String>) -> ConditionError {
    ConditionError::Invalid {
        field,
        why: why.into(),
    }
}

fn bounded(field: &'static str, s: &str) -> Result<(), ConditionError> {
    if s.is_empty() || s.len() > MAX_FIELD {
        return Err(invalid(field, format!("must be 1 to {MAX_FIELD} bytes")));
    }
    Ok(())
}

impl Escrow {
    /// Checks the escrow at creation time `now`.
    pub fn check(&self, now: u64) -> Result<(), ConditionError> {
        match &self.condition {
            Condition::After { at } => {
                if self.expires_at.is_some_and(|e| e <= *at) {
                    return Err(invalid(
                        "expires_at",
                        "is not after condition.at: the condition could never hold",
                    ));
                }
            }
            Condition::Approvers { approvers, quorum } => {
                if approvers.is_empty() || approvers.len() > MAX_APPROVERS {
                    return Err(invalid(
                        "condition.approvers",
                        format!("must name 1 to {MAX_APPROVERS} API clients"),
                    ));
                }
                let distinct: BTreeSet<&String> = approvers.iter().collect();
                if distinct.len() != approvers.len() {
                    return Err(invalid("condition.approvers", "names a client twice"));
                }
                for a in approvers {
                    bounded("condition.approvers", a)?;
                }
                if *quorum == 0 || *quorum as usize > approvers.len() {
                    return Err(invalid(
                        "condition.quorum",
                        format!("must be 1 to {} (the approvers named)", approvers.len()),
                    ));
                }
            }
            Condition::OrderSettled { order_id } => bounded("condition.order_id", order_id)?,
            Condition::TokenTransfer {
                chain,
                asset,
                to,
                min_amount,
            } => {
                bounded("condition.chain", chain)?;
                bounded("condition.asset", asset)?;
                bounded("condition.to", to)?;
                if *min_amount == 0 {
                    return Err(invalid("condition.min_amount", "must be above 0"));
                }
            }
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(invalid("expires_at", "is in the past"));
        }
        if let OnExpiry::Refund { to } = &self.on_expiry {
            bounded("on_expiry.to", to)?;
            if self.expires_at.is_none()
                && !matches!(self.condition, Condition::OrderSettled { .. })
            {
                return Err(invalid(
                    "on_expiry",
                    "a refund needs expires_at (or an order that can expire): otherwise the condition never stops being awaited",
                ));
            }
        }
        Ok(())
    }

    /// Whether the held payout is paid now, kept, or given up.
    pub fn judge(&self, facts: &Facts) -> Judgement {
        let held = match &self.condition {
            Condition::After { at } => {
                (facts.now >= *at).then(|| format!("the deadline {at} passed"))
            }
            Condition::Approvers { approvers, quorum } => {
                let by: Vec<&String> = approvers
                    .iter()
                    .filter(|a| facts.released_by.contains(*a))
                    .collect();
                (by.len() >= *quorum as usize).then(|| {
                    let names: Vec<&str> = by.iter().map(|s| s.as_str()).collect();
                    format!(
                        "released by {} of {quorum} approvers: {}",
                        by.len(),
                        names.join(", ")
                    )
                })
            }
            Condition::OrderSettled { order_id } => match facts.order {
                Some(OrderFact::Settled) => Some(format!("order {order_id} settled")),
                Some(OrderFact::Closed) => {
                    return Judgement::Expire(format!(
                        "order {order_id} expired or became invalid: it will never settle"
                    ))
                }
                _ => None,
            },
            Condition::TokenTransfer {
                asset,
                to,
                min_amount,
                ..
            } => facts
                .transfers
                .iter()
                .find(|t| t.amount >= *min_amount)
                .map(|t| {
                    format!(
                        "a confirmed transfer of {} {asset} base units into {to} (transaction {})",
                        t.amount, t.tx_hash
                    )
                }),
        };
        match (held, self.expires_at) {
            (Some(why), _) => Judgement::Release(why),
            (None, Some(e)) if facts.now >= e => {
                Judgement::Expire(format!("the condition did not hold by {e}"))
            }
            _ => Judgement::Wait,
        }
    }
}

mod base_units {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(
                "an amount in base units is a string of decimal digits",
            ));
        }
        s.parse()
            .map_err(|_| serde::de::Error::custom("amount above 2^128 - 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escrow(json: &str) -> Escrow {
        serde_json::from_str(json).unwrap()
    }

    fn facts(now: u64) -> Facts {
        Facts {
            now,
            ..Facts::default()
        }
    }

    #[test]
    fn a_deadline_releases_at_its_time_and_not_before() {
        let e = escrow(r#"{"condition": {"kind": "after", "at": 100}}"#);
        e.check(50).unwrap();
        assert_eq!(e.judge(&facts(99)), Judgement::Wait);
        assert!(matches!(e.judge(&facts(100)), Judgement::Release(w) if w.contains("100")));
    }

    #[test]
    fn approvers_release_at_their_quorum_and_others_do_not_count() {
        let e = escrow(
            r#"{"condition": {"kind": "approvers", "approvers": ["ops-alice", "ops-bob", "ops-carol"], "quorum": 2}, "expires_at": 1000}"#,
        );
        e.check(0).unwrap();
        let mut f = facts(10);
        f.released_by = ["ops-alice".to_string(), "mallory".to_string()].into();
        assert_eq!(e.judge(&f), Judgement::Wait);
        f.released_by.insert("ops-carol".into());
        assert!(matches!(e.judge(&f), Judgement::Release(w) if w.contains("ops-alice, ops-carol")));
        // Not enough by the expiry: given up.
        let mut late = facts(1000);
        late.released_by = ["ops-alice".to_string()].into();
        assert!(matches!(e.judge(&late), Judgement::Expire(_)));
    }

    #[test]
    fn an_order_releases_when_it_settles_and_expires_when_it_cannot() {
        let e = escrow(
            r#"{"condition": {"kind": "order_settled", "order_id": "o-1"}, "on_expiry": {"kind": "refund", "to": "0xabc"}}"#,
        );
        e.check(0).unwrap();
        let with = |o| Facts {
            order: Some(o),
            ..facts(5)
        };
        assert_eq!(e.judge(&with(OrderFact::Open)), Judgement::Wait);
        assert_eq!(e.judge(&with(OrderFact::Unknown)), Judgement::Wait);
        assert!(matches!(
            e.judge(&with(OrderFact::Settled)),
            Judgement::Release(_)
        ));
        assert!(matches!(
            e.judge(&with(OrderFact::Closed)),
            Judgement::Expire(_)
        ));
    }

    #[test]
    fn a_token_transfer_releases_only_from_its_least_amount() {
        let e = escrow(
            r#"{"condition": {"kind": "token_transfer", "chain": "devnet-l1", "asset": "KFT", "to": "0xabc", "min_amount": "1000"}}"#,
        );
        e.check(0).unwrap();
        let mut f = facts(5);
        f.transfers = vec![TransferFact {
            tx_hash: "0x01".into(),
            amount: 999,
        }];
        assert_eq!(e.judge(&f), Judgement::Wait);
        f.transfers.push(TransferFact {
            tx_hash: "0x02".into(),
            amount: 1000,
        });
        assert!(matches!(e.judge(&f), Judgement::Release(w) if w.contains("0x02")));
    }

    #[test]
    fn impossible_or_unknown_conditions_are_refused_naming_the_field() {
        let bad = |json: &str, field: &str| {
            let e: Result<Escrow, _> = serde_json::from_str(json);
            match e {
                Err(err) => assert!(err.to_string().contains(field), "{err}"),
                Ok(e) => {
                    let err = e.check(100).unwrap_err();
                    assert!(err.to_string().contains(field), "{err}");
                }
            }
        };
        bad(r#"{"condition": {"kind": "moon_phase"}}"#, "moon_phase");
        bad(
            r#"{"condition": {"kind": "approvers", "approvers": ["a"], "quorum": 2}}"#,
            "condition.quorum",
        );
        bad(
            r#"{"condition": {"kind": "approvers", "approvers": ["a", "a"], "quorum": 1}}"#,
            "condition.approvers",
        );
        bad(
            r#"{"condition": {"kind": "after", "at": 500}, "expires_at": 400}"#,
            "expires_at",
        );
        bad(
            r#"{"condition": {"kind": "after", "at": 500}, "expires_at": 50}"#,
            "expires_at",
        );
        bad(
            r#"{"condition": {"kind": "token_transfer", "chain": "c", "asset": "a", "to": "t", "min_amount": "0"}}"#,
            "condition.min_amount",
        );
        bad(
            r#"{"condition": {"kind": "token_transfer", "chain": "c", "asset": "a", "to": "t", "min_amount": "1.5"}}"#,
            "decimal digits",
        );
        bad(
            r#"{"condition": {"kind": "after", "at": 500}, "on_expiry": {"kind": "refund", "to": "0xabc"}}"#,
            "on_expiry",
        );
    }
}
