//! A version rolled out to a whitelist, at the signer: the signer selects
//! the same requests as the coordinator (the selection is in the signed
//! document and a function of the request), so a coordinator cannot apply
//! the looser side to a wallet or request id the rollout selects, and the
//! origin of a request is matched as the coordinator's policy matches it.

use std::collections::BTreeSet;

use keyfold_mpc::KeyId;
use keyfold_policy::{
    bucket, compose, History, Payload, Policy, Request, RequestOrigin, Rollout, Spending, Tier,
};
use keyfold_proto::signer::{wallet_name, PolicyIntent};
use keyfold_signer::policy::{check, CheckInputs};
use keyfold_signer::SignerError;

const NOW: u64 = 1_800_000_000;

/// Version 4 in force for everyone: transfers up to 100.
const BASE: &str = r#"version = 4
[[rules]]
name = "small"
amount = { max = 100 }
action = { kind = "allow" }
[[rules]]
name = "deny-all"
action = { kind = "deny" }
"#;

/// Version 5: transfers up to 10, and scheduled ones up to 50.
const NEXT: &str = r#"version = 5
[[rules]]
name = "scheduled"
origins = ["scheduled"]
amount = { max = 50 }
action = { kind = "allow" }
[[rules]]
name = "small"
amount = { max = 10 }
action = { kind = "allow" }
[[rules]]
name = "deny-all"
action = { kind = "deny" }
"#;

fn selected_key() -> KeyId {
    "0123456789abcdef0123456789abcdef".parse().unwrap()
}

fn other_key() -> KeyId {
    "fedcba9876543210fedcba9876543210".parse().unwrap()
}

fn staged(rollout: Rollout) -> Policy {
    let doc = |t| Policy::from_toml(t).unwrap().document().clone();
    Policy::from_document(compose(&doc(BASE), &doc(NEXT), rollout).unwrap()).unwrap()
}

fn by_wallet() -> Policy {
    staged(Rollout {
        merchants: None,
        wallets: Some(vec![selected_key().to_string()]),
        share_bps: None,
    })
}

fn request(key: &KeyId, id: &str, amount: u128) -> Request {
    Request {
        id: id.into(),
        wallet: wallet_name(key, None),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount,
        destination: "0xdest".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: NOW - 10,
        payload: Payload::TypedTransfer,
    }
}

fn run(policy: &Policy, key: KeyId, req: Request) -> Result<Vec<u8>, SignerError> {
    let spent = Spending::from_history(policy, &History::default());
    check(
        &PolicyIntent {
            request: req,
            approvals: Vec::new(),
            policy_version: policy.version(),
            subjects: Vec::new(),
        },
        &CheckInputs {
            policy,
            key,
            path: None,
            hash: None,
            first_seen: NOW - 10,
            now: NOW,
            spent: &spent,
            exclude: None,
            seen_nonces: &BTreeSet::new(),
        },
    )
}

fn refused(r: Result<Vec<u8>, SignerError>) {
    assert!(
        matches!(r, Err(SignerError::PolicyRefused(_))),
        "expected a policy refusal, got {r:?}"
    );
}

#[test]
fn the_signer_holds_a_selected_wallet_to_the_new_version() {
    let p = by_wallet();
    refused(run(&p, selected_key(), request(&selected_key(), "r-1", 50)));
    assert!(run(&p, selected_key(), request(&selected_key(), "r-2", 10)).is_ok());
}

#[test]
fn the_signer_holds_the_other_wallets_to_the_version_before() {
    let p = by_wallet();
    assert!(run(&p, other_key(), request(&other_key(), "r-1", 50)).is_ok());
    refused(run(&p, other_key(), request(&other_key(), "r-2", 101)));
}

#[test]
fn the_signer_selects_by_request_id_as_the_bucket_says() {
    let p = staged(Rollout {
        merchants: None,
        wallets: None,
        share_bps: Some(5_000),
    });
    let ids: Vec<String> = (0..40).map(|i| format!("payout-{i}")).collect();
    let (inside, outside): (Vec<_>, Vec<_>) = ids.iter().partition(|id| bucket(id) < 5_000);
    assert!(!inside.is_empty() && !outside.is_empty());
    for id in inside {
        refused(run(&p, other_key(), request(&other_key(), id, 50)));
    }
    for id in outside {
        assert!(run(&p, other_key(), request(&other_key(), id, 50)).is_ok());
    }
}

#[test]
fn the_signer_matches_the_origin_under_the_new_version() {
    let p = by_wallet();
    let mut r = request(&selected_key(), "sched-1.3", 50);
    refused(run(&p, selected_key(), r.clone()));
    r.origin = Some(RequestOrigin::Scheduled);
    assert!(run(&p, selected_key(), r.clone()).is_ok());
    r.amount = 51;
    refused(run(&p, selected_key(), r));
}
