//! Shared builders for the integration tests.
#![allow(dead_code)]

use keyfold_risk::*;

/// Midnight UTC, so every bucket boundary is easy to reason about.
pub const T0: u64 = 1_700_000_000 / 86_400 * 86_400;

/// Thresholds: 0..=29 allow, 30..=59 step up, 60..=79 review, 80..=100 deny.
pub const THRESHOLDS: &str = r#"
[[thresholds]]
from = 0
to = 29
action = { kind = "allow" }
[[thresholds]]
from = 30
to = 59
action = { kind = "step_up" }
[[thresholds]]
from = 60
to = 79
action = { kind = "review" }
[[thresholds]]
from = 80
to = 100
action = { kind = "deny" }
"#;

/// A tree of `body` (version 1) followed by [`THRESHOLDS`].
pub fn tree(body: &str) -> RiskTree {
    match RiskTree::from_toml(&format!("version = 1\n{body}\n{THRESHOLDS}")) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// The default tree.
pub fn default() -> RiskTree {
    match default_tree() {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

/// A 10 USDC payment by customer `c-1` on device `d-1` at `at`.
pub fn request(at: u64) -> RiskRequest {
    RiskRequest {
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount: 10_000_000,
            destination: "0xdest".into(),
            wallet: "hot-1".into(),
            merchant: Some("shop".into()),
        },
        context: ClientContext {
            customer_id: Some("c-1".into()),
            device_id: Some("d-1".into()),
            ip: None,
            country: None,
            kyc_tier: KycTier::Basic,
            auth: vec![AuthMethod::Password],
        },
        at,
    }
}

pub fn features(state: &RiskState, tree: &RiskTree, r: &RiskRequest) -> Features {
    match state.features(tree, r) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

pub fn observe(state: &mut RiskState, r: &RiskRequest) {
    if let Err(e) = state.observe(r) {
        panic!("{e}");
    }
}

/// Features then observe; returns the decision.
pub fn step(state: &mut RiskState, tree: &RiskTree, r: &RiskRequest) -> Decision {
    let d = evaluate(tree, &features(state, tree, r));
    observe(state, r);
    d
}

pub fn country(c: &str) -> CountryCode {
    match c.parse() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}
