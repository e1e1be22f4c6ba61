//! The request canonical hash with a request's origin (a schedule's
//! occurrence, a conditional payout), as the independent verifier
//! (Python, docs/audit-log.md alone) computes it: the same bytes as
//! `keyfold_policy`, with and without the origin and the risk facts.
mod common;

use keyfold_policy::{KycLevel, Payload, Request, RequestOrigin, RiskAction, RiskFacts, Tier};

fn request(origin: Option<RequestOrigin>, risk: bool) -> Request {
    Request {
        id: "sched-1.4".into(),
        wallet: "0123456789abcdef0123456789abcdef".into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: 1_000_000_000_000_000,
        destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
        initiator: "acme#mk_01".into(),
        time: 1_800_000_000,
        payload: Payload::TypedTransfer,
        risk: risk.then_some(RiskFacts {
            score: 12,
            action: RiskAction::Allow,
            kyc_tier: KycLevel::Basic,
        }),
        origin,
    }
}

/// Skipped with a message where `python3` is missing (the test script
/// installs it).
#[test]
fn the_independent_verifier_hashes_the_origin_as_the_policy_does() {
    let mut cases = Vec::new();
    for origin in [
        None,
        Some(RequestOrigin::Direct),
        Some(RequestOrigin::Scheduled),
        Some(RequestOrigin::Conditional),
    ] {
        for risk in [false, true] {
            let r = request(origin, risk);
            cases.push(serde_json::json!({
                "json": serde_json::to_string(&r).unwrap(),
                "want": hex::encode(r.canonical_hash()),
            }));
        }
    }
    // Each origin changes the hash; none is the hash without one.
    let hashes: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c["want"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), cases.len());
    let program = "import json\nfrom independent_verify import parse_request, request_hash\n\
         bad = [c['json'] for c in json.load(sys.stdin)\n\
                if request_hash(parse_request(c['json'])).hex() != c['want']]\n\
         print(json.dumps(bad)); sys.exit(1 if bad else 0)\n";
    let Some(out) = common::run_python(program, &serde_json::json!(cases)) else {
        eprintln!("python3 is missing: the independent verifier's hash was not compared");
        return;
    };
    assert!(
        out.status.success(),
        "the verifier disagrees: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
