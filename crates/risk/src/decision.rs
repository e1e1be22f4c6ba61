//! [`evaluate`]: a tree and a request's features in, a [`Decision`] out.
//!
//! Pure and deterministic: the same tree and features give the same decision,
//! byte for byte once serialized, which is what an auditor recomputes from
//! the logged features. Rules run in order; each matching rule adds its score
//! (the total is clamped to 100) and may force an action; the thresholds map
//! the final score to an action; the most severe action wins.

use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::input::AuthMethod;
use crate::tree::{Condition, RiskTree, Rule, RuleWindows};

/// What happens to the payment. Declaration order is severity order:
/// `allow < step_up < review < freeze < deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through.
    Allow,
    /// Ask for a second factor first.
    StepUp,
    /// Hold it for a person.
    Review,
    /// Refuse it and freeze an entity ([`Decision::freeze_scope`]).
    Freeze,
    /// Refuse it.
    Deny,
}

impl Action {
    /// The name used in trees and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::StepUp => "step_up",
            Action::Review => "review",
            Action::Freeze => "freeze",
            Action::Deny => "deny",
        }
    }
}

/// What a freeze applies to. Declaration order is breadth: when several
/// rules freeze, the broadest scope is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeScope {
    /// The device.
    Device,
    /// The customer (all their devices).
    Customer,
    /// The paying wallet.
    Wallet,
    /// The merchant.
    Merchant,
}

impl FreezeScope {
    /// The name used in trees and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FreezeScope::Device => "device",
            FreezeScope::Customer => "customer",
            FreezeScope::Wallet => "wallet",
            FreezeScope::Merchant => "merchant",
        }
    }

    /// The scope named `name` (as [`FreezeScope::name`] spells it).
    pub fn from_name(name: &str) -> Option<FreezeScope> {
        [
            FreezeScope::Device,
            FreezeScope::Customer,
            FreezeScope::Wallet,
            FreezeScope::Merchant,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// Why a rule contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// The rule's name.
    pub rule: String,
    /// What held, with the values seen (`kyc_required: ...` for a KYC refusal).
    pub detail: String,
    /// Points the rule added.
    pub score: u8,
}

/// The outcome of a risk check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Final score, 0..=100.
    pub score: u8,
    /// The action (after a satisfied step-up: `allow`).
    pub action: Action,
    /// What to freeze, when the action is `freeze`.
    pub freeze_scope: Option<FreezeScope>,
    /// A step-up was required and the request already carried a TOTP or a
    /// device signature, so it was allowed.
    pub step_up_satisfied: bool,
    /// The matching rules, in tree order.
    pub reasons: Vec<Reason>,
    /// Version of the tree that decided.
    pub tree_version: u64,
}

/// Checks a rule's condition; the details of what held, or `None`.
fn check(c: &Condition, w: RuleWindows, f: &Features, running: u8) -> Option<Vec<String>> {
    let mut d = Vec::new();
    if let Some(assets) = &c.assets {
        if !assets.contains(&f.asset) {
            return None;
        }
        d.push(format!("asset {}", f.asset));
    }
    if let Some(chains) = &c.chains {
        if !chains.contains(&f.chain) {
            return None;
        }
        d.push(format!("chain {}", f.chain));
    }
    if let Some(a) = c.amount_above {
        if f.amount <= a.0 {
            return None;
        }
        d.push(format!("amount {} > {}", f.amount, a.0));
    }
    if let (Some(cc), Some(win)) = (&c.count, w.count) {
        let e = f.entity(cc.entity);
        let n = e.window(win).count;
        if !e.present || n <= cc.above {
            return None;
        }
        d.push(format!(
            "{} requests in {win}: {n} > {}",
            cc.entity.name(),
            cc.above
        ));
    }
    if let (Some(sc), Some(win)) = (&c.sum, w.sum) {
        let e = f.entity(sc.entity);
        let s = e.window(win).sum;
        if !e.present || s <= sc.above.0 {
            return None;
        }
        d.push(format!(
            "{} {} in {win}: {s} > {}",
            sc.entity.name(),
            f.asset,
            sc.above.0
        ));
    }
    if let Some(r) = &c.rate_spike {
        let e = f.entity(r.entity);
        if !e.present || e.rate_z <= r.z_above {
            return None;
        }
        d.push(format!(
            "{} rate z-score {:.2} > {}",
            r.entity.name(),
            e.rate_z,
            r.z_above
        ));
    }
    if let Some(z) = c.amount_z_above {
        if f.amount_z <= z {
            return None;
        }
        d.push(format!("amount z-score {:.2} > {z}", f.amount_z));
    }
    if let Some(r) = c.amount_ratio_above {
        if f.amount_ratio <= r {
            return None;
        }
        d.push(format!(
            "amount {:.2}x the customer's mean > {r}",
            f.amount_ratio
        ));
    }
    for (name, want, have) in [
        (
            "first_destination",
            c.first_destination,
            f.first_destination,
        ),
        ("first_device", c.first_device, f.first_device),
        ("country_changed", c.country_changed, f.country_changed),
        (
            "impossible_travel",
            c.impossible_travel,
            f.impossible_travel,
        ),
        ("listed_country", c.listed_country, f.listed_country),
        (
            "listed_destination",
            c.listed_destination,
            f.listed_destination,
        ),
        ("listed_ip", c.listed_ip, f.listed_ip),
    ] {
        if let Some(want) = want {
            if want != have {
                return None;
            }
            d.push(format!("{name} = {want}"));
        }
    }
    if let Some(n) = c.refusals_at_least {
        if f.device_signature_refusals < n {
            return None;
        }
        d.push(format!(
            "device signature refusals in 1h: {} >= {n}",
            f.device_signature_refusals
        ));
    }
    if let Some(t) = c.kyc_below {
        if f.kyc_tier >= t {
            return None;
        }
        d.push(format!("kyc {} < {}", f.kyc_tier.name(), t.name()));
    }
    if let Some(m) = c.auth_lacks {
        if f.has_auth(m) {
            return None;
        }
        d.push(format!("no {}", m.name()));
    }
    if let Some(s) = c.score_above {
        if running <= s {
            return None;
        }
        d.push(format!("score so far {running} > {s}"));
    }
    Some(d)
}

/// Keeps the more severe of two (action, scope) pairs; between two
/// freezes, the broader scope.
fn worst(
    a: (Action, Option<FreezeScope>),
    b: (Action, Option<FreezeScope>),
) -> (Action, Option<FreezeScope>) {
    match a.0.cmp(&b.0) {
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Equal => (a.0, a.1.max(b.1)),
    }
}

/// Evaluates the tree on a request's features.
pub fn evaluate(tree: &RiskTree, f: &Features) -> Decision {
    let mut total: u8 = 0;
    let mut reasons = Vec::new();
    let mut forced = (Action::Allow, None);
    let rules: &[Rule] = &tree.document().rules;
    for (rule, w) in rules.iter().zip(tree.windows.iter()) {
        let Some(details) = check(&rule.when, *w, f, total) else {
            continue;
        };
        total = total.saturating_add(rule.score).min(100);
        reasons.push(Reason {
            rule: rule.name.clone(),
            detail: details.join("; "),
            score: rule.score,
        });
        if let Some(a) = rule.action {
            forced = worst(forced, a.split());
        }
        if let Some(required) = rule.require_kyc {
            if f.kyc_tier < required {
                forced = worst(forced, (Action::Deny, None));
                reasons.push(Reason {
                    rule: rule.name.clone(),
                    detail: format!(
                        "kyc_required: tier {} is below {}",
                        f.kyc_tier.name(),
                        required.name()
                    ),
                    score: 0,
                });
            }
        }
    }
    let (mut action, freeze_scope) = worst(tree.threshold_action(total).split(), forced);
    // A step-up asks for a second factor; a request that already carries
    // one has passed it.
    let step_up_satisfied = action == Action::StepUp
        && (f.has_auth(AuthMethod::Totp) || f.has_auth(AuthMethod::DeviceSignature));
    if step_up_satisfied {
        action = Action::Allow;
    }
    Decision {
        score: total,
        action,
        freeze_scope: if action == Action::Freeze {
            freeze_scope
        } else {
            None
        },
        step_up_satisfied,
        reasons,
        tree_version: tree.version(),
    }
}
