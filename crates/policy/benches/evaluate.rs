//! Policy evaluation and approval verification, against the budget the
//! policy issue sets: well under 50 µs per request with 100 rules, far below
//! the online signing step.
//!
//! The request matches only the last rule before the catch-all, so every
//! rule is examined (the worst case for first-match evaluation); history
//! holds 1,000 entries counted by a velocity limit.

use std::collections::BTreeSet;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ed25519_dalek::SigningKey;
use keyfold_policy::{
    evaluate, verify_approval, Approval, ApprovalDecision, EvalContext, History, HistoryEntry,
    Payload, Policy, Request, Tier,
};

const NOW: u64 = 1_800_000_000;

fn officers() -> Vec<SigningKey> {
    (1u8..=3)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect()
}

/// `rules` rules: `rules - 2` that do not match (other wallets), one that
/// allows small amounts, one that needs 2 of 3 treasury approvals, and the
/// catch-all deny.
fn policy(rules: usize) -> Policy {
    let keys: Vec<String> = officers()
        .iter()
        .map(|k| hex::encode(k.verifying_key().to_bytes()))
        .collect();
    let mut doc = format!(
        "version = 1\n\
         [[groups]]\nname = \"treasury\"\nquorum = 2\nmembers = [\
         {{ name = \"a\", key = \"{}\" }}, {{ name = \"b\", key = \"{}\" }}, {{ name = \"c\", key = \"{}\" }}]\n\
         [[velocity]]\nname = \"daily\"\nper = \"wallet\"\nwindow_secs = 86400\nasset = \"ETH\"\nmax_amount = 1000000000000\n",
        keys[0], keys[1], keys[2]
    );
    for i in 0..rules.saturating_sub(2) {
        doc.push_str(&format!(
            "[[rules]]\nname = \"other-{i}\"\nwallets = [\"wallet-{i}\"]\ntier = \"hot\"\n\
             amount = {{ max = 1000 }}\naction = {{ kind = \"allow\" }}\n"
        ));
    }
    doc.push_str(
        "[[rules]]\nname = \"small\"\nwallets = [\"hot-main\"]\ntier = \"hot\"\n\
         amount = { max = 1000 }\naction = { kind = \"allow\" }\n\
         [[rules]]\nname = \"large\"\ntier = \"hot\"\nassets = [\"ETH\"]\n\
         action = { kind = \"require_approvals\", groups = [\"treasury\"] }\n\
         [[rules]]\nname = \"deny-all\"\naction = { kind = \"deny\" }\n",
    );
    Policy::from_toml(&doc).expect("bench policy is valid")
}

fn request() -> Request {
    Request {
        id: "r-1".into(),
        wallet: "hot-main".into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: 5_000_000,
        destination: "0xdest".into(),
        initiator: "payments".into(),
        time: NOW,
        payload: Payload::TypedTransfer,
    }
}

fn history() -> History {
    History {
        entries: (0..1000u64)
            .map(|i| HistoryEntry {
                time: NOW - i * 60,
                wallet: "hot-main".into(),
                asset: "ETH".into(),
                destination: format!("0x{i}"),
                initiator: "payments".into(),
                amount: 1000,
            })
            .collect(),
    }
}

fn approvals(req: &Request) -> Vec<Approval> {
    officers()[..2]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Approval::sign(
                k,
                req.canonical_hash(),
                1,
                ApprovalDecision::Approve,
                NOW + 3600,
                [i as u8; 16],
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let req = request();
    let approvals = approvals(&req);
    let seen = BTreeSet::new();
    let empty = History::default();
    let hist = history();
    let mut g = c.benchmark_group("policy_evaluate");
    for rules in [10usize, 100, 1000] {
        let p = policy(rules);
        g.bench_with_input(
            BenchmarkId::new("2_approvals_no_history", rules),
            &p,
            |b, p| {
                b.iter(|| {
                    let d = evaluate(
                        p,
                        &req,
                        &EvalContext {
                            now: NOW,
                            history: &empty,
                            approvals: &approvals,
                            seen_nonces: &seen,
                        },
                    );
                    assert!(d.is_allowed());
                    d
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("2_approvals_1000_history", rules),
            &p,
            |b, p| {
                b.iter(|| {
                    evaluate(
                        p,
                        &req,
                        &EvalContext {
                            now: NOW,
                            history: &hist,
                            approvals: &approvals,
                            seen_nonces: &seen,
                        },
                    )
                })
            },
        );
    }
    let small = Request {
        amount: 500,
        ..request()
    };
    for rules in [10usize, 100, 1000] {
        let p = policy(rules);
        g.bench_with_input(
            BenchmarkId::new("allow_no_approvals_1000_history", rules),
            &p,
            |b, p| {
                b.iter(|| {
                    let d = evaluate(
                        p,
                        &small,
                        &EvalContext {
                            now: NOW,
                            history: &hist,
                            approvals: &[],
                            seen_nonces: &seen,
                        },
                    );
                    assert!(d.is_allowed());
                    d
                })
            },
        );
    }
    g.finish();
    let p = policy(100);
    c.bench_function("approval_verify_one", |b| {
        b.iter(|| verify_approval(&p, &req, &approvals[0], NOW, &seen).expect("valid"))
    });
    c.bench_function("request_canonical_hash", |b| {
        b.iter(|| req.canonical_hash())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
