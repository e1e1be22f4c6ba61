//! Staged enforcement: a version whose new rules decide for a whitelist
//! first (named merchants, wallets, or a deterministic share of request
//! ids) while the rules of the version before still decide for everyone
//! else.
//!
//! The selection is part of the signed document and a pure function of the
//! request, so the coordinator, every signer and the offline auditor, which
//! all run [`crate::evaluate`], select the same requests. [`compose`] builds
//! such a document from the version in force and the next one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::document::{Action, PolicyDocument, Rule, VelocityLimit};
use crate::error::PolicyError;
use crate::request::Request;

/// Domain separator of a request id's rollout bucket ([`bucket`]).
pub const ROLLOUT_DOMAIN: &[u8] = b"keyfold-policy/rollout/v1\0";

/// Buckets of [`bucket`]: a share is counted in basis points of them.
pub const BUCKETS: u16 = 10_000;

/// Who the rules with `audience = "selected"` apply to; a request matching
/// any criterion is selected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Merchant ids: requests made with one of their API keys (initiator
    /// `<merchant>#<key id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchants: Option<Vec<String>>,
    /// Wallets (key ids; an HD child is selected with its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<Vec<String>>,
    /// A share of all requests in basis points (0..=10000), chosen by
    /// [`bucket`] of the request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_bps: Option<u16>,
}

/// Which requests a rule or velocity limit applies to in a rollout version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Only requests the document's `[rollout]` selects.
    Selected,
    /// Only the others.
    Others,
}

/// The merchant of an API client name: `acme` for `acme#mk_01`; `None` for
/// an operator's client.
pub fn merchant_of(initiator: &str) -> Option<&str> {
    initiator.split_once('#').map(|(m, _)| m)
}

/// The bucket (0..10000) of a request id: the first 8 bytes of
/// SHA-256([`ROLLOUT_DOMAIN`] ‖ id), big-endian, modulo [`BUCKETS`].
pub fn bucket(request_id: &str) -> u16 {
    let d = Sha256::new()
        .chain_update(ROLLOUT_DOMAIN)
        .chain_update(request_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u16
}

impl Rollout {
    /// Whether `req` is selected.
    pub fn selects(&self, req: &Request) -> bool {
        let merchant = merchant_of(&req.initiator);
        let root = crate::eval::wallet_root(&req.wallet);
        self.merchants
            .as_ref()
            .is_some_and(|l| merchant.is_some_and(|m| l.iter().any(|x| x == m)))
            || self
                .wallets
                .as_ref()
                .is_some_and(|l| l.iter().any(|w| w == &req.wallet || w == root))
            || self.share_bps.is_some_and(|s| bucket(&req.id) < s)
    }

    /// Checks the section on its own (the document checks that rules use it).
    pub(crate) fn check(&self) -> Result<(), PolicyError> {
        let bad = |why: String| PolicyError::BadRollout(why);
        for (what, list) in [("merchants", &self.merchants), ("wallets", &self.wallets)] {
            if let Some(l) = list {
                if l.is_empty() {
                    return Err(bad(format!("`{what}` is an empty list")));
                }
                if let Some(x) = l.iter().find(|x| x.is_empty() || x.contains('#')) {
                    return Err(bad(format!("`{what}` names {x:?}, not an id")));
                }
            }
        }
        if let Some(s) = self.share_bps {
            if s > BUCKETS {
                return Err(bad(format!("share_bps {s} is above {BUCKETS} (100%)")));
            }
        }
        if self.merchants.is_none() && self.wallets.is_none() && self.share_bps.unwrap_or(0) == 0 {
            return Err(bad(
                "it selects nothing: name `merchants`, `wallets` or a `share_bps` above 0".into(),
            ));
        }
        Ok(())
    }
}

/// The version `next` enforced for the requests `rollout` selects and
/// `base` (the version in force for everyone) for the others, as one
/// document with `next`'s version, name and admins:
/// - `next`'s rules with `audience = "selected"`, then `base`'s with
///   `"others"`, then `next`'s final catch-all deny for everyone;
/// - each side's velocity limits for its audience (a limit both have alike
///   stays one, for everyone);
/// - the union of both address books and approver groups (one name must
///   mean the same in both).
///
/// Enforcing `next` for everyone later is pushing `next` itself (with a
/// version above this one); rolling back is pushing `base`'s content the
/// same way.
pub fn compose(
    base: &PolicyDocument,
    next: &PolicyDocument,
    rollout: Rollout,
) -> Result<PolicyDocument, PolicyError> {
    let bad = |why: String| PolicyError::BadRollout(why);
    if base.rollout.is_some() || next.rollout.is_some() {
        return Err(bad(
            "compose from versions without a [rollout] section (the version in force for everyone and the next one)".into(),
        ));
    }
    if next.version <= base.version {
        return Err(bad(format!(
            "the next version {} is not above the version in force {}",
            next.version, base.version
        )));
    }
    rollout.check()?;
    let (Some(last_next), Some(_)) = (next.rules.last(), base.rules.last()) else {
        return Err(PolicyError::NoRules);
    };
    let mut doc = next.clone();
    doc.rollout = Some(rollout);

    // Address book: the union, one name and one address meaning one entry.
    let mut book = BTreeMap::new();
    for e in base
        .address_book
        .entries
        .iter()
        .chain(&next.address_book.entries)
    {
        match book.get(&e.name) {
            Some(prev) if prev != e => {
                return Err(bad(format!(
                    "address-book entry {:?} differs between the versions: rename one",
                    e.name
                )))
            }
            _ => {
                book.insert(e.name.clone(), e.clone());
            }
        }
    }
    doc.address_book.entries = book.into_values().collect();

    // Groups: the union, one name meaning one group.
    let mut groups = next.groups.clone();
    for g in &base.groups {
        match next.groups.iter().find(|n| n.name == g.name) {
            Some(n) if n != g => {
                return Err(bad(format!(
                    "approver group {:?} differs between the versions: rename one",
                    g.name
                )))
            }
            Some(_) => {}
            None => groups.push(g.clone()),
        }
    }
    doc.groups = groups;

    // Velocity: a limit both have alike applies to everyone.
    let tag = |v: &VelocityLimit, a| VelocityLimit {
        audience: Some(a),
        ..v.clone()
    };
    let mut velocity = Vec::new();
    for v in &next.velocity {
        if base.velocity.contains(v) {
            velocity.push(v.clone());
        } else {
            velocity.push(tag(v, Audience::Selected));
        }
    }
    for v in &base.velocity {
        if !next.velocity.contains(v) {
            velocity.push(tag(v, Audience::Others));
        }
    }
    doc.velocity = velocity;

    // Rules: each side's in its order, the final catch-all deny shared.
    let body = |rules: &[Rule], a: Audience| -> Vec<Rule> {
        let n = rules.len().saturating_sub(1);
        rules[..n]
            .iter()
            .map(|r| Rule {
                audience: Some(a),
                ..r.clone()
            })
            .collect()
    };
    if !(last_next.is_catch_all() && matches!(last_next.action, Action::Deny { .. })) {
        return Err(PolicyError::NoCatchAllDeny {
            rule: last_next.name.clone(),
        });
    }
    let mut rules = body(&next.rules, Audience::Selected);
    rules.extend(body(&base.rules, Audience::Others));
    rules.push(last_next.clone());
    doc.rules = rules;
    // Validated as any document (groups named, names unique per audience).
    crate::Policy::from_document(doc.clone())?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: another implementation (and every signer) must agree.
        assert_eq!(bucket("payout-1"), bucket("payout-1"));
        let n = 20_000;
        let under = (0..n)
            .filter(|i| bucket(&format!("req-{i}")) < 1_000)
            .count();
        // 10% of 20000 = 2000; a fair hash stays well within +-15%.
        assert!((1_700..=2_300).contains(&under), "{under}");
    }

    #[test]
    fn merchant_is_the_part_before_the_key() {
        assert_eq!(merchant_of("acme#mk_01"), Some("acme"));
        assert_eq!(merchant_of("ops"), None);
    }

    #[test]
    fn a_rollout_selecting_nothing_is_refused() {
        let r = Rollout {
            merchants: None,
            wallets: None,
            share_bps: Some(0),
        };
        assert!(matches!(r.check(), Err(PolicyError::BadRollout(_))));
        let r = Rollout {
            merchants: Some(vec![]),
            wallets: None,
            share_bps: None,
        };
        assert!(matches!(r.check(), Err(PolicyError::BadRollout(_))));
        let r = Rollout {
            merchants: None,
            wallets: None,
            share_bps: Some(10_001),
        };
        assert!(matches!(r.check(), Err(PolicyError::BadRollout(_))));
    }
}
