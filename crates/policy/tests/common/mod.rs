#![allow(dead_code)]
use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use keyfold_policy::*;

/// Monday 2023-11-13 10:00:00 UTC.
pub const T: u64 = 1_699_869_600;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn pk(seed: u8) -> String {
    hex::encode(key(seed).verifying_key().to_bytes())
}

pub fn req(wallet: &str) -> Request {
    Request {
        id: format!("req-{wallet}"),
        wallet: wallet.into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: 5,
        destination: "addr-1".into(),
        initiator: "client-a".into(),
        risk: None,
        origin: None,
        time: T,
        payload: Payload::TypedTransfer,
    }
}

pub fn approve(seed: u8, r: &Request, version: u64, nonce: u8) -> Approval {
    Approval::sign(
        &key(seed),
        r.canonical_hash(),
        version,
        ApprovalDecision::Approve,
        r.time + 3600 * 48,
        [nonce; 16],
    )
}

pub fn reject(seed: u8, r: &Request, version: u64, nonce: u8) -> Approval {
    Approval::sign(
        &key(seed),
        r.canonical_hash(),
        version,
        ApprovalDecision::Reject,
        r.time + 3600 * 48,
        [nonce; 16],
    )
}

pub fn eval_with(
    p: &Policy,
    r: &Request,
    now: u64,
    approvals: &[Approval],
    history: &History,
) -> Decision {
    let seen = BTreeSet::new();
    // The history as aggregates built in one go (the incremental add /
    // remove / prune path is checked against a plain scan in `spending.rs`).
    let spent = Spending::from_history(p, history);
    evaluate(
        p,
        r,
        &EvalContext {
            now,
            spent: &spent,
            exclude: None,
            approvals,
            seen_nonces: &seen,
        },
    )
}

pub fn eval(p: &Policy, r: &Request) -> Decision {
    eval_with(p, r, r.time, &[], &History::default())
}

pub fn entry(time: u64, wallet: &str, dest: &str, initiator: &str, amount: u128) -> HistoryEntry {
    HistoryEntry {
        time,
        wallet: wallet.into(),
        asset: "ETH".into(),
        destination: dest.into(),
        initiator: initiator.into(),
        amount,
    }
}

pub fn example(name: &str) -> String {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
