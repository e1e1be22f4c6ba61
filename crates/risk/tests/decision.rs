//! Decisions: scoring, severity, step-up, KYC, determinism, and the default
//! tree on the attacks it is meant to catch.
mod common;

use common::*;
use keyfold_risk::*;

#[test]
fn most_severe_action_wins() {
    let t = tree(
        r#"
[[rules]]
name = "review-new-device"
when = { first_device = true }
score = 5
action = { kind = "review" }
[[rules]]
name = "step-up-new-destination"
when = { first_destination = true }
score = 5
action = { kind = "step_up" }
[[rules]]
name = "freeze-device-listed-ip"
when = { listed_ip = true }
action = { kind = "freeze", scope = "device" }
[[rules]]
name = "freeze-customer-listed-ip"
when = { listed_ip = true, first_device = true }
action = { kind = "freeze", scope = "customer" }
[lists]
ip_ranges = ["192.0.2.0/24"]
"#,
    );
    let s = RiskState::new();
    let mut r = request(T0);
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(
        (d.score, d.action, d.freeze_scope),
        (10, Action::Review, None)
    );
    assert_eq!(
        d.reasons
            .iter()
            .map(|r| r.rule.as_str())
            .collect::<Vec<_>>(),
        ["review-new-device", "step-up-new-destination"]
    );
    r.context.ip = "192.0.2.7".parse().ok();
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::Freeze);
    assert_eq!(
        d.freeze_scope,
        Some(FreezeScope::Customer),
        "the broader freeze is kept"
    );
}

#[test]
fn thresholds_decide_when_no_rule_forces() {
    let t = tree(
        "[[rules]]\nname = \"a\"\nwhen = { first_device = true }\nscore = 35\n[[rules]]\nname = \"b\"\nwhen = { first_destination = true }\nscore = 30",
    );
    let d = evaluate(&t, &features(&RiskState::new(), &t, &request(T0)));
    assert_eq!((d.score, d.action), (65, Action::Review));
}

#[test]
fn a_rule_cannot_lower_the_threshold_action() {
    let t = tree(
        "[[rules]]\nname = \"big\"\nwhen = { first_device = true }\nscore = 90\naction = { kind = \"allow\" }",
    );
    let d = evaluate(&t, &features(&RiskState::new(), &t, &request(T0)));
    assert_eq!(d.action, Action::Deny);
}

#[test]
fn score_is_clamped_to_100() {
    let mut body = String::new();
    for i in 0..5 {
        body.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\nwhen = {{ first_device = true }}\nscore = 60\n"
        ));
    }
    let t = tree(&body);
    let d = evaluate(&t, &features(&RiskState::new(), &t, &request(T0)));
    assert_eq!((d.score, d.action), (100, Action::Deny));
    assert_eq!(d.reasons.len(), 5);
}

#[test]
fn score_above_sees_the_earlier_rules_only() {
    let t = tree(
        "[[rules]]\nname = \"a\"\nwhen = { first_device = true }\nscore = 20\n[[rules]]\nname = \"b\"\nwhen = { score_above = 15 }\nscore = 20\n[[rules]]\nname = \"c\"\nwhen = { score_above = 40 }\nscore = 50",
    );
    let d = evaluate(&t, &features(&RiskState::new(), &t, &request(T0)));
    assert_eq!(d.score, 40, "{:?}", d.reasons);
}

fn step_up_tree() -> RiskTree {
    tree("[[rules]]\nname = \"new-device\"\nwhen = { first_device = true }\nscore = 5\naction = { kind = \"step_up\" }")
}

#[test]
fn step_up_satisfied_by_totp() {
    let t = step_up_tree();
    let s = RiskState::new();
    let mut r = request(T0);
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(
        (d.action, d.step_up_satisfied),
        (Action::StepUp, false),
        "a password is not a second factor"
    );
    r.context.auth = vec![AuthMethod::Password, AuthMethod::Totp];
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!((d.action, d.step_up_satisfied), (Action::Allow, true));
    assert_eq!(d.reasons.len(), 1, "the reason stays listed");
    r.context.auth = vec![AuthMethod::DeviceSignature];
    assert_eq!(evaluate(&t, &features(&s, &t, &r)).action, Action::Allow);
}

#[test]
fn totp_does_not_pass_a_review() {
    let t = tree(
        "[[rules]]\nname = \"r\"\nwhen = { first_device = true }\naction = { kind = \"review\" }",
    );
    let mut r = request(T0);
    r.context.auth = vec![AuthMethod::Totp];
    let d = evaluate(&t, &features(&RiskState::new(), &t, &r));
    assert_eq!((d.action, d.step_up_satisfied), (Action::Review, false));
}

#[test]
fn kyc_requirement_denies_lower_tiers() {
    let t = tree(
        "[[rules]]\nname = \"large\"\nwhen = { assets = [\"USDC\"], amount_above = 1000000000 }\nscore = 10\nrequire_kyc = \"full\"",
    );
    let s = RiskState::new();
    let mut r = request(T0);
    r.payment.amount = 2_000_000_000;
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::Deny);
    assert!(
        d.reasons
            .iter()
            .any(|x| x.rule == "large" && x.detail.starts_with("kyc_required")),
        "{:?}",
        d.reasons
    );
    r.context.kyc_tier = KycTier::Full;
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!((d.action, d.score), (Action::Allow, 10));
    // Below the amount the rule does not apply at all.
    let mut small = request(T0);
    small.context.kyc_tier = KycTier::None;
    assert_eq!(
        evaluate(&t, &features(&s, &t, &small)).action,
        Action::Allow
    );
}

#[test]
fn kyc_below_and_auth_lacks_conditions() {
    let t = tree("[[rules]]\nname = \"r\"\nwhen = { kyc_below = \"full\", auth_lacks = \"totp\" }\nscore = 30");
    let s = RiskState::new();
    let mut r = request(T0);
    assert_eq!(evaluate(&t, &features(&s, &t, &r)).score, 30);
    r.context.auth.push(AuthMethod::Totp);
    assert_eq!(evaluate(&t, &features(&s, &t, &r)).score, 0);
}

/// Feeds the same requests into a fresh state; returns every decision as JSON.
fn replay(t: &RiskTree) -> Vec<String> {
    let mut s = RiskState::new();
    let mut out = Vec::new();
    for i in 0..40u64 {
        let mut r = request(T0 + i * 37);
        r.payment.amount = u128::from(1_000_000 * (1 + i % 7) * if i == 33 { 1000 } else { 1 });
        r.context.country = Some(country(if i % 9 == 0 { "DE" } else { "FR" }));
        r.context.device_id = Some(format!("d-{}", i % 3));
        let d = step(&mut s, t, &r);
        match serde_json::to_string(&d) {
            Ok(j) => out.push(j),
            Err(e) => panic!("{e}"),
        }
    }
    out
}

#[test]
fn decisions_are_deterministic() {
    let t = default();
    let a = replay(&t);
    assert_eq!(a, replay(&t));
    // The features too, and a decision recomputed from logged features
    // (JSON round trip) is the same.
    let s = RiskState::new();
    let f = features(&s, &t, &request(T0));
    let logged = serde_json::to_string(&f).unwrap_or_default();
    let back: Features = match serde_json::from_str(&logged) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        serde_json::to_string(&evaluate(&t, &back)).ok(),
        serde_json::to_string(&evaluate(&t, &f)).ok()
    );
    let d: Decision = match serde_json::from_str(&a[0]) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(d.tree_version, 1);
}

// The default tree on what it is for.

#[test]
fn default_tree_freezes_a_bursting_device() {
    let t = default();
    let mut s = RiskState::new();
    let mut actions = Vec::new();
    for i in 0..7 {
        actions.push(step(&mut s, &t, &request(T0 + i * 60)).action);
    }
    assert_eq!(&actions[..5], &[Action::Allow; 5]);
    let d = evaluate(&t, &features(&s, &t, &request(T0 + 400)));
    assert_eq!(
        (d.action, d.freeze_scope),
        (Action::Freeze, Some(FreezeScope::Device))
    );
    assert!(d.reasons.iter().any(|r| r.rule == "device-burst"));
}

#[test]
fn default_tree_freezes_a_device_after_three_refused_signatures() {
    let t = default();
    let mut s = RiskState::new();
    observe(&mut s, &request(T0));
    for k in 0..3 {
        assert_eq!(
            s.record_refusal(Some("c-1"), Some("d-1"), T0 + 100 + k),
            Ok(())
        );
    }
    let d = evaluate(&t, &features(&s, &t, &request(T0 + 200)));
    assert_eq!(
        (d.action, d.freeze_scope),
        (Action::Freeze, Some(FreezeScope::Device))
    );
}

#[test]
fn default_tree_reviews_impossible_travel() {
    let t = default();
    let mut s = RiskState::new();
    let mut r = request(T0);
    r.context.country = Some(country("FR"));
    step(&mut s, &t, &r);
    r.context.country = Some(country("BR"));
    r.at = T0 + 1800;
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::Review, "{:?}", d.reasons);
    r.at = T0 + 8 * 3600;
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::Allow, "{:?}", d.reasons);
}

#[test]
fn default_tree_steps_up_a_large_payment_from_a_new_device() {
    let t = default();
    let mut s = RiskState::new();
    step(&mut s, &t, &request(T0));
    let mut r = request(T0 + 600);
    r.context.device_id = Some("d-new".into());
    r.payment.amount = 2_000_000_000; // 2,000 USDC
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::StepUp, "{:?}", d.reasons);
    r.context.auth.push(AuthMethod::Totp);
    assert_eq!(evaluate(&t, &features(&s, &t, &r)).action, Action::Allow);
}

#[test]
fn default_tree_denies_a_listed_destination() {
    let mut text = DEFAULT_TREE_TOML.replace("destinations = []", "destinations = [\"0xdest\"]");
    text = text.replace("version = 1", "version = 2");
    let t = match RiskTree::from_toml(&text) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let d = evaluate(&t, &features(&RiskState::new(), &t, &request(T0)));
    assert_eq!((d.action, d.score), (Action::Deny, 100));
}

#[test]
fn default_tree_reviews_an_amount_far_above_history() {
    let t = default();
    let mut s = RiskState::new();
    for i in 0..10 {
        step(&mut s, &t, &request(T0 + i * 3600));
    }
    let mut r = request(T0 + 11 * 3600);
    r.payment.amount = 900_000_000; // 900 USDC after a history of 10 USDC
    let d = evaluate(&t, &features(&s, &t, &r));
    assert_eq!(d.action, Action::Review, "{:?}", d.reasons);
    assert!(d
        .reasons
        .iter()
        .any(|x| x.rule == "amount-far-above-history"));
}

#[test]
fn default_tree_reviews_a_slow_drain() {
    let t = default();
    let mut s = RiskState::new();
    let mut last = None;
    // 900 USDC an hour, each well within history after the first few.
    for h in 0..16u64 {
        let mut r = request(T0 + h * 3600);
        r.payment.amount = 900_000_000;
        last = Some(step(&mut s, &t, &r));
    }
    let d = last.unwrap_or_else(|| panic!("no decision"));
    assert_eq!(d.action, Action::Review, "{:?}", d.reasons);
    assert!(d.reasons.iter().any(|x| x.rule == "slow-drain-stablecoin"));
}
