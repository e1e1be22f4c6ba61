//! An allocation plan as policy rules: one vesting rule per beneficiary,
//! so that the policy engine bounds every claim by what has vested, at the
//! coordinator, at every signer and in the auditor's replay, and the admin
//! quorum signs the plan by signing the policy version that carries it.
//!
//! A claim is an ordinary payout of the plan's token from the allocation
//! wallet to the beneficiary's registered address: the rule
//! `allocation/<plan>/<beneficiary>` matches it and allows at most what has
//! vested minus everything already paid from that wallet in that asset to
//! that address (the policy's all-time vesting total).

use keyfold_policy::{Action, DestinationMatch, Policy, PolicyDocument, Rule};

use crate::allocation::Plan;

/// Why a plan cannot be put into a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocationPolicyError {
    /// The policy document does not parse or is not valid.
    #[error("policy: {0}")]
    Policy(String),
    /// A beneficiary's address is not a valid destination.
    #[error("plan {plan}: beneficiary {beneficiary:?}: address {address:?}: {why}")]
    Address {
        /// The plan.
        plan: String,
        /// The beneficiary.
        beneficiary: String,
        /// Its address.
        address: String,
        /// What is wrong.
        why: String,
    },
    /// Two beneficiaries share an address: the policy counts what was paid
    /// per address, so their claims could not be told apart.
    #[error("plan {plan}: beneficiaries {first:?} and {second:?} share the address {address}; each needs its own")]
    SharedAddress {
        /// The plan.
        plan: String,
        /// One beneficiary.
        first: String,
        /// The other.
        second: String,
        /// The address.
        address: String,
    },
    /// The new document is not a valid policy.
    #[error("the policy with the plan's rules is not valid: {0}")]
    Invalid(String),
}

/// The prefix of the rules of plan `plan_id`.
pub fn rule_prefix(plan_id: &str) -> String {
    format!("allocation/{plan_id}/")
}

/// The vesting rules that enforce `plan` for payouts from `wallet` (a key
/// id, or a key id and HD path as the policy names wallets), one per
/// beneficiary, in the plan's order, then a rule that denies anything else
/// from `wallet`: the allocation wallet is dedicated to the plan.
pub fn vesting_rules(plan: &Plan, wallet: &str) -> Result<Vec<Rule>, AllocationPolicyError> {
    let mut rules = Vec::new();
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for group in plan.groups() {
        for b in &group.beneficiaries {
            let address = keyfold_policy::canonical_destination(&b.address).map_err(|e| {
                AllocationPolicyError::Address {
                    plan: plan.plan_id().into(),
                    beneficiary: b.id.clone(),
                    address: b.address.clone(),
                    why: e.to_string(),
                }
            })?;
            if let Some(first) = seen.insert(address.clone(), b.id.clone()) {
                return Err(AllocationPolicyError::SharedAddress {
                    plan: plan.plan_id().into(),
                    first,
                    second: b.id.clone(),
                    address,
                });
            }
            rules.push(Rule {
                name: format!("{}{}", rule_prefix(plan.plan_id()), b.id),
                wallets: Some(vec![wallet.to_string()]),
                tier: None,
                assets: Some(vec![plan.token().asset.clone()]),
                amount: None,
                destination: Some(DestinationMatch {
                    address_book: None,
                    any_address_book: false,
                    allow: Some(vec![address]),
                    deny: None,
                }),
                initiators: None,
                time: None,
                chains: Some(vec![plan.token().chain.clone()]),
                max_fee: None,
                risk: None,
                origins: None,
                audience: None,
                allow_raw: false,
                action: Action::Vesting {
                    start: b.start,
                    cliff_secs: b.cliff_secs,
                    duration_secs: b.duration_secs,
                    total: b.amount,
                    revoked_at: b.revoked_at,
                },
            });
        }
    }
    // The wallet pays the plan's claims and nothing else: without this, a
    // payout of the token on another chain, to another address or as a
    // plain transfer would fall through to the policy's other rules.
    rules.push(Rule {
        name: format!("{}only-claims", rule_prefix(plan.plan_id())),
        wallets: Some(vec![wallet.to_string()]),
        tier: None,
        assets: None,
        amount: None,
        destination: None,
        initiators: None,
        time: None,
        chains: None,
        max_fee: None,
        risk: None,
        origins: None,
        audience: None,
        allow_raw: false,
        action: Action::Deny {
            reason: Some(format!(
                "wallet {wallet} is the allocation wallet of plan {}: it pays only the plan's claims, to beneficiaries' registered addresses on {}",
                plan.plan_id(),
                plan.token().chain
            )),
        },
    });
    Ok(rules)
}

/// The next version of `policy_toml` carrying `plan`'s rules for `wallet`:
/// the rules of an earlier version of the plan are replaced, the new ones
/// go before the first rule that is not a deny (leading deny rules, such as
/// a night freeze, still apply to claims), and the version goes up by one.
/// The result is checked as a policy; the admins sign it as any update.
pub fn policy_with_plan(
    policy_toml: &str,
    plan: &Plan,
    wallet: &str,
) -> Result<String, AllocationPolicyError> {
    let current =
        Policy::from_toml(policy_toml).map_err(|e| AllocationPolicyError::Policy(e.to_string()))?;
    let mut doc: PolicyDocument = current.document().clone();
    let prefix = rule_prefix(plan.plan_id());
    doc.rules.retain(|r| !r.name.starts_with(&prefix));
    let at = doc
        .rules
        .iter()
        .position(|r| !matches!(r.action, Action::Deny { .. }))
        .unwrap_or(doc.rules.len());
    let new = vesting_rules(plan, wallet)?;
    doc.rules.splice(at..at, new);
    doc.version = doc
        .version
        .checked_add(1)
        .ok_or_else(|| AllocationPolicyError::Invalid("the version cannot go up".into()))?;
    let next =
        Policy::from_document(doc).map_err(|e| AllocationPolicyError::Invalid(e.to_string()))?;
    next.to_toml()
        .map_err(|e| AllocationPolicyError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_policy::{evaluate, EvalContext, Outcome, Payload, Request, Spending, Tier};

    const BASE: u64 = 1_800_000_000;

    fn plan() -> Plan {
        Plan::from_toml(&format!(
            r#"plan_id = "kft-2027"
version = 1
total = "1000"
[token]
chain = "devnet-l1"
asset = "KFT"
decimals = 0
[[groups]]
name = "team"
share_bps = 10000
[[groups.beneficiaries]]
id = "alice"
address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
amount = "600"
start = {BASE}
cliff_secs = 100
duration_secs = 1000
[[groups.beneficiaries]]
id = "bob"
address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
amount = "400"
start = {BASE}
cliff_secs = 0
duration_secs = 400
revoked_at = {revoked}
"#,
            revoked = BASE + 100
        ))
        .unwrap()
    }

    const POLICY: &str = r#"version = 7
[[rules]]
name = "night"
time = { from = "00:00", to = "01:00" }
action = { kind = "deny" }
[[rules]]
name = "hot"
tier = "hot"
action = { kind = "allow" }
[[rules]]
name = "deny-all"
action = { kind = "deny" }
"#;

    fn claim(p: &Policy, to: &str, amount: u128, now: u64) -> Outcome {
        let req = Request {
            id: "c".into(),
            wallet: "w".into(),
            tier: Tier::Hot,
            asset: "KFT".into(),
            amount,
            destination: to.into(),
            initiator: "ops".into(),
            time: now,
            payload: Payload::ChainTransaction {
                chain: "devnet-l1".into(),
                chain_id: Some(31337),
                token_contract: None,
                source: "0x0000000000000000000000000000000000000001".into(),
                fee_cap: 1,
                tx: vec![1],
            },
            risk: None,
            origin: None,
        };
        let spent = Spending::new(p);
        evaluate(
            p,
            &req,
            &EvalContext {
                now,
                spent: &spent,
                exclude: None,
                approvals: &[],
                seen_nonces: &Default::default(),
            },
        )
        .outcome
    }

    #[test]
    fn the_plan_becomes_the_next_version_with_a_vesting_rule_per_beneficiary() {
        let text = policy_with_plan(POLICY, &plan(), "w").unwrap();
        let p = Policy::from_toml(&text).unwrap();
        assert_eq!(p.version(), 8);
        let names: Vec<&str> = p.document().rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "night",
                "allocation/kft-2027/alice",
                "allocation/kft-2027/bob",
                "allocation/kft-2027/only-claims",
                "hot",
                "deny-all"
            ]
        );
        // Again with the plan: its rules are replaced, not added twice.
        let again = policy_with_plan(&text, &plan(), "w").unwrap();
        let p2 = Policy::from_toml(&again).unwrap();
        assert_eq!(p2.document().rules.len(), 6);
        assert_eq!(p2.version(), 9);
    }

    #[test]
    fn the_policy_bounds_each_claim_by_what_has_vested() {
        let p = Policy::from_toml(&policy_with_plan(POLICY, &plan(), "w").unwrap()).unwrap();
        let alice = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let bob = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
        // Before alice's cliff nothing; at half her period 300 of 600.
        assert!(matches!(
            claim(&p, alice, 1, BASE + 99),
            Outcome::Deny { .. }
        ));
        assert_eq!(claim(&p, alice, 300, BASE + 500), Outcome::Allow);
        assert!(matches!(
            claim(&p, alice, 301, BASE + 500),
            Outcome::Deny { .. }
        ));
        // Bob was revoked at a quarter of his period: 100 of 400, for ever.
        assert_eq!(claim(&p, bob, 100, BASE + 10_000), Outcome::Allow);
        assert!(matches!(
            claim(&p, bob, 101, BASE + 10_000),
            Outcome::Deny { .. }
        ));
        // Anything else from the allocation wallet is denied.
        let carol = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
        assert!(
            matches!(claim(&p, carol, 1, BASE + 500), Outcome::Deny { ref reason } if reason.contains("allocation wallet")),
        );
        // The plan's figures and the policy's agree.
        let (_, b) = plan()
            .beneficiary("alice")
            .map(|(g, b)| (g.clone(), b.clone()))
            .unwrap();
        assert_eq!(b.vested(BASE + 500), 300);
    }

    #[test]
    fn beneficiaries_sharing_an_address_or_with_a_bad_one_are_refused() {
        let shared = plan().document().clone();
        let mut doc = shared.clone();
        doc.groups[0].beneficiaries[1].address =
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into();
        let p = Plan::from_document(doc).unwrap();
        assert!(matches!(
            policy_with_plan(POLICY, &p, "w"),
            Err(AllocationPolicyError::SharedAddress { .. })
        ));
        let mut doc = shared;
        doc.groups[0].beneficiaries[0].address =
            "0x70997970C51812DC3A010C7d01b50e0d17dc79C8".into();
        let p = Plan::from_document(doc).unwrap();
        let e = policy_with_plan(POLICY, &p, "w").unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
