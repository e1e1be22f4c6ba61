//! Deterministic evaluation of a request against a policy.
//!
//! Inputs are the validated [`Policy`], the [`Request`] and an [`EvalContext`]
//! (current time, spending aggregates, approvals, seen nonces); nothing is
//! read from the clock or from global state. Approvals are processed in a
//! canonical order, and the aggregates do not depend on the order in which
//! past transfers were added, so the decision does not depend on the order of
//! the inputs.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::approval::{verify_with_hash, Approval, ApprovalDecision};
use crate::document::{Action, Combine, Policy, Rule};
use crate::error::{ApprovalError, SpendingError};
use crate::request::{HistoryEntry, Payload, Request, RequestOrigin};
use crate::rollout::Audience;
use crate::spending::{scope_key, Spending, WindowTotal};

/// Most approvals considered in one evaluation; a request carrying more is
/// denied (bounds the verification work a caller can force on a signer).
pub const MAX_APPROVALS: usize = 256;

/// Everything the evaluator needs besides the policy and the request.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    /// Current time (Unix seconds): approval expiry, time locks, velocity
    /// windows and vesting are computed at this time.
    pub now: u64,
    /// Past signed (or allowed) transfers, as aggregates built for this
    /// policy ([`Spending::fits`]); a `Spending` built for another shape of
    /// policy makes the decision a deny with an `internal:` reason.
    pub spent: &'a Spending,
    /// The request's own entry in `spent`, if it has one (it was allowed
    /// before and is now retried or decided again): it does not count
    /// against the request itself. Must be an entry that was added to
    /// `spent` (and not removed); a window it falls in that does not hold it
    /// makes the decision an internal deny.
    pub exclude: Option<&'a HistoryEntry>,
    /// Approvals and rejections gathered for this request.
    pub approvals: &'a [Approval],
    /// Nonces consumed by other requests. Only membership of the nonces of
    /// `approvals` is ever tested, so a caller need only pass the nonces of
    /// THIS request's approvals that other requests already used (point
    /// lookups in its own record); any superset gives the same decision.
    pub seen_nonces: &'a BTreeSet<[u8; 16]>,
}

/// Approvals still missing for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingApprovals {
    /// Group name.
    pub group: String,
    /// Valid approvals from distinct members so far.
    pub have: usize,
    /// Quorum of the group.
    pub need: usize,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The request may be signed now.
    Allow,
    /// Approvals are missing.
    NeedApprovals {
        /// Groups named by the rule.
        groups: Vec<String>,
        /// How they combine.
        combine: Combine,
        /// Groups that have not reached their quorum yet.
        missing: Vec<MissingApprovals>,
    },
    /// Approved (or no approval needed) but time-locked until `until` (Unix seconds).
    TimeLocked {
        /// Earliest time at which signing is allowed.
        until: u64,
    },
    /// Refused.
    Deny {
        /// Why.
        reason: String,
    },
}

/// Which rule decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// Zero-based index in the document.
    pub index: usize,
    /// Rule name.
    pub name: String,
}

/// An approval that was not counted, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedApproval {
    /// Approver key (hex).
    pub approver: String,
    /// Nonce (hex).
    pub nonce: String,
    /// Why it was refused (serialized as its message).
    #[serde(serialize_with = "error_message")]
    pub error: ApprovalError,
}

fn error_message<S: serde::Serializer>(e: &ApprovalError, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&e.to_string())
}

/// The result of [`evaluate`] (serializable, e.g. for the API and the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What to do.
    pub outcome: Outcome,
    /// The deciding rule (`None` only if no rule was reached: too many
    /// approvals, or no rule matched, which a validated policy prevents).
    pub rule: Option<RuleRef>,
    /// Version of the policy that decided.
    pub policy_version: u64,
    /// Approvals that were refused, in canonical order.
    pub refused_approvals: Vec<RefusedApproval>,
}

impl Decision {
    /// True if the request may be signed now.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow)
    }
}

/// The key a wallet name belongs to: the part before the first `/` (HD
/// children are named `key_id/m/...`).
pub fn wallet_root(wallet: &str) -> &str {
    wallet.split('/').next().unwrap_or(wallet)
}

/// A velocity limit naming a wallet covers its HD children too.
pub(crate) fn wallet_listed(list: &Option<Vec<String>>, wallet: &str) -> bool {
    in_list(list, wallet) || in_list(list, wallet_root(wallet))
}

/// An absent list matches everything.
pub(crate) fn in_list(list: &Option<Vec<String>>, v: &str) -> bool {
    list.as_ref().is_none_or(|l| l.iter().any(|x| x == v))
}

/// Whether a rule or limit for `audience` applies to a request that the
/// rollout does (`selected`) or does not select.
fn for_audience(audience: Option<Audience>, selected: bool) -> bool {
    match audience {
        None => true,
        Some(Audience::Selected) => selected,
        Some(Audience::Others) => !selected,
    }
}

/// Whether the document's rollout selects `req` (no rollout: none is).
fn selected(policy: &Policy, req: &Request) -> bool {
    policy
        .document()
        .rollout
        .as_ref()
        .is_some_and(|r| r.selects(req))
}

fn rule_matches(policy: &Policy, index: usize, rule: &Rule, req: &Request, selected: bool) -> bool {
    if !for_audience(rule.audience, selected) {
        return false;
    }
    if let Some(origins) = &rule.origins {
        if !origins.contains(&RequestOrigin::of(req)) {
            return false;
        }
    }
    let is_deny = matches!(rule.action, Action::Deny { .. });
    if matches!(req.payload, Payload::RawBytes { .. }) && !rule.allow_raw && !is_deny {
        return false;
    }
    if !in_list(&rule.wallets, &req.wallet)
        || !in_list(&rule.assets, &req.asset)
        || !in_list(&rule.initiators, &req.initiator)
    {
        return false;
    }
    if rule.tier.is_some_and(|t| t != req.tier) {
        return false;
    }
    if let Some(chains) = &rule.chains {
        if !req
            .payload
            .chain()
            .is_some_and(|c| chains.iter().any(|x| x == c))
        {
            return false;
        }
    }
    if let Some(m) = &rule.risk {
        if !req.risk.as_ref().is_some_and(|f| m.matches(f)) {
            return false;
        }
    }
    if let Some(max_fee) = rule.max_fee {
        if req.payload.fee_cap().is_none_or(|f| f > max_fee) {
            return false;
        }
    }
    if let Some(a) = &rule.amount {
        if req.amount < a.min || a.max.is_some_and(|m| req.amount > m) {
            return false;
        }
    }
    if let Some(d) = &rule.destination {
        if d.deny
            .as_ref()
            .is_some_and(|l| l.iter().any(|x| x == &req.destination))
        {
            return false;
        }
        let restricted = d.any_address_book || d.address_book.is_some() || d.allow.is_some();
        if restricted {
            let entry = policy.usable_entry(&req.destination, req.time);
            let ok = (d.any_address_book && entry.is_some())
                || d.address_book
                    .as_ref()
                    .is_some_and(|names| entry.is_some_and(|e| names.iter().any(|n| n == &e.name)))
                || d.allow
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|x| x == &req.destination));
            if !ok {
                return false;
            }
        }
    }
    if let Some(t) = &rule.time {
        if let Some(days) = &t.days {
            if !days.contains(&crate::document::Weekday::of_unix(req.time)) {
                return false;
            }
        }
        if let Some(Some(w)) = policy.windows.get(index) {
            let minute = ((req.time % 86_400) / 60) as u32;
            let inside = if w.from < w.to {
                minute >= w.from && minute < w.to
            } else {
                minute >= w.from || minute < w.to
            };
            if !inside {
                return false;
            }
        }
    }
    true
}

/// Amount vested at `now` for a linear schedule with a cliff.
pub fn vested_amount(
    start: u64,
    cliff_secs: u64,
    duration_secs: u64,
    total: u128,
    now: u64,
) -> u128 {
    if now < start.saturating_add(cliff_secs) {
        return 0;
    }
    let elapsed = now - start;
    if elapsed >= duration_secs || duration_secs == 0 {
        return total;
    }
    let d = u128::from(duration_secs);
    let e = u128::from(elapsed);
    // total * e / d without overflow: total = q*d + r.
    let (q, r) = (total / d, total % d);
    q.saturating_mul(e).saturating_add(r * e / d)
}

fn deny(reason: impl Into<String>) -> Outcome {
    Outcome::Deny {
        reason: reason.into(),
    }
}

/// The first velocity limit the request would exceed, as a reason. Each
/// limit reads its window total from the aggregates (O(log n)), never the
/// past transfers one by one.
fn check_velocity(
    policy: &Policy,
    req: &Request,
    ctx: &EvalContext<'_>,
    selected: bool,
) -> Result<Option<String>, SpendingError> {
    for (i, v) in policy.document().velocity.iter().enumerate() {
        if v.asset != req.asset
            || !wallet_listed(&v.wallets, &req.wallet)
            || !for_audience(v.audience, selected)
        {
            continue;
        }
        let key = scope_key(v.per, &req.wallet, &req.destination, &req.initiator);
        let WindowTotal { amount: sum, count } = ctx.spent.window(i, key, ctx.now, ctx.exclude)?;
        if let Some(max) = v.max_amount {
            if sum.saturating_add(req.amount) > max {
                return Ok(Some(format!(
                    "velocity limit {:?} exceeded: {} already in the last {} s, +{} > {}",
                    v.name, sum, v.window_secs, req.amount, max
                )));
            }
        }
        if let Some(max) = v.max_count {
            if count.saturating_add(1) > max {
                return Ok(Some(format!(
                    "velocity limit {:?} exceeded: {} transfer(s) already in the last {} s, max {}",
                    v.name, count, v.window_secs, max
                )));
            }
        }
    }
    Ok(None)
}

/// The reason of a deny caused by aggregates that cannot answer exactly.
fn internal(e: &SpendingError) -> Outcome {
    deny(format!("internal: {e}"))
}

/// Verified approvals split into approvers and rejecters, plus the refusals.
struct Tally {
    approvers: BTreeSet<[u8; 32]>,
    rejecters: BTreeSet<[u8; 32]>,
    refused: Vec<RefusedApproval>,
}

fn tally(policy: &Policy, req: &Request, ctx: &EvalContext<'_>) -> Tally {
    let hash = req.canonical_hash();
    let mut sorted: Vec<&Approval> = ctx.approvals.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut used = BTreeSet::new();
    let mut t = Tally {
        approvers: BTreeSet::new(),
        rejecters: BTreeSet::new(),
        refused: Vec::new(),
    };
    for a in sorted {
        let res = if used.contains(&a.nonce) {
            Err(ApprovalError::Replayed {
                nonce: hex::encode(a.nonce),
            })
        } else {
            verify_with_hash(policy, &hash, &req.initiator, a, ctx.now, ctx.seen_nonces)
        };
        match res {
            Ok(()) => {
                used.insert(a.nonce);
                match a.decision {
                    ApprovalDecision::Approve => t.approvers.insert(a.approver),
                    ApprovalDecision::Reject => t.rejecters.insert(a.approver),
                };
            }
            Err(error) => t.refused.push(RefusedApproval {
                approver: hex::encode(a.approver),
                nonce: hex::encode(a.nonce),
                error,
            }),
        }
    }
    // A rejection overrides an approval by the same approver.
    let rejecters = t.rejecters.clone();
    t.approvers.retain(|k| !rejecters.contains(k));
    t
}

fn rejecter_in(policy: &Policy, tally: &Tally, groups: &[String]) -> Option<[u8; 32]> {
    tally.rejecters.iter().copied().find(|k| {
        groups.iter().any(|g| {
            policy
                .groups
                .get(g)
                .is_some_and(|pg| pg.members.contains_key(k))
        })
    })
}

/// Evaluate `req` against `policy`.
///
/// Order: aggregates built for another policy shape deny (`internal:`). The
/// first matching rule is found (a raw-bytes payload only matches
/// rules with `allow_raw = true` or deny rules). A deny rule denies. A vesting
/// rule denies anything beyond vested-minus-released. Velocity limits are then
/// checked for every non-deny rule. Finally approvals (a valid rejection by a
/// member of a named group denies) and time locks decide.
pub fn evaluate(policy: &Policy, req: &Request, ctx: &EvalContext<'_>) -> Decision {
    let version = policy.version();
    if !ctx.spent.fits(policy) {
        let e = SpendingError::OtherPolicy {
            built_for: ctx.spent.policy_version(),
            policy: version,
        };
        return Decision {
            outcome: internal(&e),
            rule: None,
            policy_version: version,
            refused_approvals: Vec::new(),
        };
    }
    if ctx.approvals.len() > MAX_APPROVALS {
        return Decision {
            outcome: deny(format!(
                "{} approvals supplied, at most {MAX_APPROVALS} are accepted",
                ctx.approvals.len()
            )),
            rule: None,
            policy_version: version,
            refused_approvals: Vec::new(),
        };
    }
    let selected = selected(policy, req);
    let found = policy
        .document()
        .rules
        .iter()
        .enumerate()
        .find(|(i, r)| rule_matches(policy, *i, r, req, selected));
    let Some((index, rule)) = found else {
        return Decision {
            outcome: deny("no rule matched"),
            rule: None,
            policy_version: version,
            refused_approvals: Vec::new(),
        };
    };
    let rule_ref = RuleRef {
        index,
        name: rule.name.clone(),
    };
    let done = |outcome, refused| Decision {
        outcome,
        rule: Some(rule_ref.clone()),
        policy_version: version,
        refused_approvals: refused,
    };
    if let Action::Deny { reason } = &rule.action {
        let reason = reason
            .clone()
            .unwrap_or_else(|| format!("denied by rule {:?}", rule.name));
        return done(deny(reason), Vec::new());
    }
    if let Action::Vesting {
        start,
        cliff_secs,
        duration_secs,
        total,
        revoked_at,
    } = &rule.action
    {
        // A revoked allocation stops vesting at its revocation.
        let at = revoked_at.map_or(ctx.now, |r| r.min(ctx.now));
        let vested = vested_amount(*start, *cliff_secs, *duration_secs, *total, at);
        // Everything ever released from this wallet in this asset to this
        // beneficiary (an all-time total kept by the aggregates).
        let released =
            match ctx
                .spent
                .released(&req.wallet, &req.asset, &req.destination, ctx.exclude)
            {
                Ok(r) => r,
                Err(e) => return done(internal(&e), Vec::new()),
            };
        let available = vested.saturating_sub(released);
        if req.amount > available {
            return done(
                deny(format!(
                    "vesting: {} requested but only {available} available ({vested} vested, {released} released)",
                    req.amount
                )),
                Vec::new(),
            );
        }
    }
    match check_velocity(policy, req, ctx, selected) {
        Ok(None) => {}
        Ok(Some(reason)) => return done(deny(reason), Vec::new()),
        Err(e) => return done(internal(&e), Vec::new()),
    }
    let outcome = match &rule.action {
        Action::Allow | Action::Vesting { .. } => Outcome::Allow,
        Action::Deny { .. } => deny("denied"),
        Action::RequireApprovals {
            groups,
            combine,
            delay_secs,
        } => {
            let t = tally(policy, req, ctx);
            if let Some(k) = rejecter_in(policy, &t, groups) {
                return done(
                    deny(format!("rejected by approver {}", hex::encode(k))),
                    t.refused,
                );
            }
            let mut missing = Vec::new();
            let mut satisfied_any = false;
            for g in groups {
                let Some(pg) = policy.groups.get(g) else {
                    continue;
                };
                let have = pg
                    .members
                    .keys()
                    .filter(|k| t.approvers.contains(*k))
                    .count();
                if have >= pg.quorum {
                    satisfied_any = true;
                } else {
                    missing.push(MissingApprovals {
                        group: g.clone(),
                        have,
                        need: pg.quorum,
                    });
                }
            }
            let satisfied = match combine {
                Combine::All => missing.is_empty(),
                Combine::Any => satisfied_any,
            };
            let until = req.time.saturating_add(*delay_secs);
            let outcome = if !satisfied {
                Outcome::NeedApprovals {
                    groups: groups.clone(),
                    combine: *combine,
                    missing,
                }
            } else if ctx.now < until {
                Outcome::TimeLocked { until }
            } else {
                Outcome::Allow
            };
            return done(outcome, t.refused);
        }
        Action::TimeLock {
            delay_secs,
            cancel_groups,
        } => {
            let t = tally(policy, req, ctx);
            if let Some(k) = rejecter_in(policy, &t, cancel_groups) {
                return done(
                    deny(format!(
                        "time lock cancelled by approver {}",
                        hex::encode(k)
                    )),
                    t.refused,
                );
            }
            let until = req.time.saturating_add(*delay_secs);
            let outcome = if ctx.now < until {
                Outcome::TimeLocked { until }
            } else {
                Outcome::Allow
            };
            return done(outcome, t.refused);
        }
    };
    done(outcome, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::vested_amount;

    #[test]
    fn vesting_curve() {
        assert_eq!(vested_amount(100, 10, 100, 1000, 109), 0);
        assert_eq!(vested_amount(100, 10, 100, 1000, 110), 100);
        assert_eq!(vested_amount(100, 10, 100, 1000, 150), 500);
        assert_eq!(vested_amount(100, 10, 100, 1000, 200), 1000);
        assert_eq!(vested_amount(100, 10, 100, 1000, u64::MAX), 1000);
        assert_eq!(vested_amount(100, 0, 3, 10, 101), 3);
        assert_eq!(vested_amount(u64::MAX, 1, 2, 10, 5), 0);
    }
}
