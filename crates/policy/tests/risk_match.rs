//! Rules on the risk engine's outcome: score, action and KYC tier; only
//! requests the engine judged match them; the facts are part of the
//! canonical hash approvals sign.

mod common;

use common::*;
use keyfold_policy::*;

fn policy(extra: &str) -> Policy {
    let doc = format!(
        "version = 1\n\
         [[groups]]\nname = \"treasury\"\nquorum = 2\n\
         members = [{{ key = \"{}\" }}, {{ key = \"{}\" }}]\n\
         [[rules]]\nname = \"risky\"\n{extra}\naction = {{ kind = \"require_approvals\", groups = [\"treasury\"] }}\n\
         [[rules]]\nname = \"rest\"\nwallets = [\"hot-1\"]\naction = {{ kind = \"allow\" }}\n\
         [[rules]]\nname = \"deny-all\"\naction = {{ kind = \"deny\" }}\n",
        pk(1),
        pk(2)
    );
    match Policy::from_toml(&doc) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{doc}"),
    }
}

fn judged(score: u8, action: RiskAction, kyc: KycLevel) -> Request {
    let mut r = req("hot-1");
    r.risk = Some(RiskFacts {
        score,
        action,
        kyc_tier: kyc,
    });
    r
}

fn rule_of(p: &Policy, r: &Request) -> String {
    eval(p, r).rule.map(|x| x.name).unwrap_or_default()
}

#[test]
fn a_score_matcher_matches_only_judged_requests_above_it() {
    let p = policy("risk = { score_above = 40 }");
    assert_eq!(
        rule_of(&p, &judged(41, RiskAction::Allow, KycLevel::Full)),
        "risky"
    );
    assert_eq!(
        rule_of(&p, &judged(40, RiskAction::Allow, KycLevel::Full)),
        "rest"
    );
    // Not judged (no client context): never matches a risk rule.
    assert_eq!(rule_of(&p, &req("hot-1")), "rest");
    assert!(matches!(
        eval(&p, &judged(90, RiskAction::Review, KycLevel::None)).outcome,
        Outcome::NeedApprovals { .. }
    ));
}

#[test]
fn action_and_kyc_matchers_combine_with_the_amount() {
    let p =
        policy("amount = { min = 10 }\nrisk = { actions = [\"review\"], kyc_below = \"full\" }");
    let mut r = judged(10, RiskAction::Review, KycLevel::Basic);
    r.amount = 10;
    assert_eq!(rule_of(&p, &r), "risky");
    r.amount = 9;
    assert_eq!(rule_of(&p, &r), "rest", "below the amount");
    let mut full = judged(10, RiskAction::Review, KycLevel::Full);
    full.amount = 10;
    assert_eq!(rule_of(&p, &full), "rest", "full KYC is not below full");
    let mut allowed = judged(10, RiskAction::Allow, KycLevel::None);
    allowed.amount = 10;
    assert_eq!(rule_of(&p, &allowed), "rest", "not reviewed");
}

#[test]
fn a_bounded_score_range_matches_inside_it_only() {
    let p = policy("risk = { score_above = 20, score_at_most = 60 }");
    for (score, rule) in [(20, "rest"), (21, "risky"), (60, "risky"), (61, "rest")] {
        assert_eq!(
            rule_of(&p, &judged(score, RiskAction::Allow, KycLevel::Basic)),
            rule,
            "score {score}"
        );
    }
}

#[test]
fn contradictory_or_empty_risk_matchers_are_refused() {
    for (extra, needle) in [
        ("risk = {}", "risk"),
        ("risk = { score_above = 100 }", "100 or more"),
        (
            "risk = { score_above = 50, score_at_most = 50 }",
            "not below",
        ),
        ("risk = { actions = [] }", "empty list"),
        ("risk = { kyc_below = \"none\" }", "no tier"),
        ("risk = { actions = [\"maybe\"] }", "maybe"),
    ] {
        let doc = format!(
            "version = 1\n[[rules]]\nname = \"r\"\n{extra}\naction = {{ kind = \"allow\" }}\n\
             [[rules]]\nname = \"rest\"\naction = {{ kind = \"deny\" }}\n"
        );
        match Policy::from_toml(&doc) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => assert!(e.to_string().contains(needle), "{extra}: {e}"),
        }
    }
}

#[test]
fn risk_facts_extend_the_canonical_hash_and_leave_others_unchanged() {
    let plain = req("hot-1");
    let before = plain.canonical_hash();
    // A request without facts hashes as it always did (no trailing bytes).
    let mut same = plain.clone();
    same.risk = None;
    assert_eq!(same.canonical_hash(), before);
    let a = judged(41, RiskAction::Allow, KycLevel::Basic);
    assert_ne!(a.canonical_hash(), before);
    // Every fact is bound: an approval of one does not fit another.
    for other in [
        judged(42, RiskAction::Allow, KycLevel::Basic),
        judged(41, RiskAction::Review, KycLevel::Basic),
        judged(41, RiskAction::Allow, KycLevel::Full),
    ] {
        assert_ne!(other.canonical_hash(), a.canonical_hash());
    }
    // And they round-trip through the JSON the signers receive.
    let json = serde_json::to_string(&a).unwrap_or_default();
    assert!(
        json.contains("\"risk\":{\"score\":41,\"action\":\"allow\",\"kyc_tier\":\"basic\"}"),
        "{json}"
    );
    let back: Request = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, a);
    assert!(!serde_json::to_string(&plain)
        .unwrap_or_default()
        .contains("risk"));
}

#[test]
fn the_rule_is_described_in_plain_words() {
    let p = policy("risk = { score_above = 40, kyc_below = \"full\" }");
    let text = describe(&p).join("\n");
    assert!(
        text.contains("the risk engine judged it, score above 40, customer's KYC tier below full"),
        "{text}"
    );
}
