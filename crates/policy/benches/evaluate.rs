//! Policy evaluation and approval verification, against the budget the
//! policy issue sets: well under 50 µs per request with 100 rules, far below
//! the online signing step.
//!
//! The request matches only the last rule before the catch-all, so every
//! rule is examined (the worst case for first-match evaluation); history
//! holds 1,000 entries counted by a velocity limit.
//!
//! The `spending` group measures what a decision costs as the past grows:
//! the same request evaluated against 1,000 and against 1,000,000 past
//! transfers held in the `Spending` aggregates (a per-wallet daily limit and
//! a per-destination limit over 20 wallets and their HD children, a vesting
//! rule), and the cost of recording one more transfer (`add` + `prune`) in
//! steady state.
//!
//! The `rollout` group compares the 100-rule policy with a rollout version
//! of it (the same rules for the requests a 50% share selects and for the
//! others: 200 rules and a request-id bucket per decision), for a request
//! the share does not select, which skips every selected rule first.

use std::collections::BTreeSet;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ed25519_dalek::SigningKey;
use keyfold_policy::{
    bucket, compose, evaluate, verify_approval, Approval, ApprovalDecision, EvalContext, History,
    HistoryEntry, Payload, Policy, Request, Rollout, Spending, Tier,
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
        risk: None,
        origin: None,
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
    let hist = history();
    let mut g = c.benchmark_group("policy_evaluate");
    for rules in [10usize, 100, 1000] {
        let p = policy(rules);
        let empty = Spending::new(&p);
        let spent = Spending::from_history(&p, &hist);
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
                            spent: &empty,
                            exclude: None,
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
                            spent: &spent,
                            exclude: None,
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
        let spent = Spending::from_history(&p, &hist);
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
                            spent: &spent,
                            exclude: None,
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

/// Window of both velocity limits of the spending bench (one day).
const DAY: u64 = 86_400;

/// The spending bench's policy: a per-wallet daily limit and a
/// per-destination daily limit on ETH, a vesting beneficiary, rules for
/// 20 hot wallets (and their HD children, which count with their key).
fn spending_policy() -> Policy {
    // Rules name wallets exactly: the bench's HD child is listed too.
    let mut wallets: Vec<String> = (0..20).map(|w| format!("\"hot-{w}\"")).collect();
    wallets.push("\"hot-3/m/0/7\"".into());
    let doc = format!(
        "version = 1\n\
         [[velocity]]\nname = \"wallet-daily\"\nper = \"wallet\"\nwindow_secs = {DAY}\nasset = \"ETH\"\n\
         max_amount = \"1000000000000000000000000000\"\nmax_count = 10000000\n\
         [[velocity]]\nname = \"destination-daily\"\nper = \"destination\"\nwindow_secs = {DAY}\nasset = \"ETH\"\n\
         max_amount = \"1000000000000000000000000000\"\n\
         [[rules]]\nname = \"vesting\"\nwallets = [\"vest-pool\"]\nassets = [\"TOK\"]\n\
         destination = {{ allow = [\"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"] }}\n\
         action = {{ kind = \"vesting\", start = {start}, cliff_secs = 0, duration_secs = 126144000, total = \"1000000000000000000000000\" }}\n\
         [[rules]]\nname = \"hot\"\nwallets = [{list}]\ntier = \"hot\"\nassets = [\"ETH\"]\naction = {{ kind = \"allow\" }}\n\
         [[rules]]\nname = \"deny-all\"\naction = {{ kind = \"deny\" }}\n",
        start = NOW - 365 * DAY,
        list = wallets.join(", "),
    );
    Policy::from_toml(&doc).expect("spending bench policy is valid")
}

/// Past transfer number `i` of `n`, all inside the last day: 20 wallets, a
/// quarter from HD children (`hot-w/m/0/c`), 10,000 destinations, one in a
/// hundred a vesting release.
fn past(i: u64, n: u64) -> HistoryEntry {
    let time = NOW - DAY + 1 + i * (DAY - 1) / n;
    if i % 100 == 99 {
        return HistoryEntry {
            time,
            wallet: "vest-pool".into(),
            asset: "TOK".into(),
            destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            initiator: "payroll".into(),
            amount: 10,
        };
    }
    let w = i % 20;
    let wallet = if i.is_multiple_of(4) {
        format!("hot-{w}/m/0/{}", (i / 20) % 50)
    } else {
        format!("hot-{w}")
    };
    HistoryEntry {
        time,
        wallet,
        asset: "ETH".into(),
        destination: format!("0xd{}", (i * 7) % 10_000),
        initiator: "payments".into(),
        amount: 1_000 + u128::from(i % 977),
    }
}

fn spending(c: &mut Criterion) {
    let p = spending_policy();
    let seen = BTreeSet::new();
    let req = Request {
        id: "r-spend".into(),
        wallet: "hot-3/m/0/7".into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: 5_000,
        destination: "0xd21".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: NOW,
        payload: Payload::TypedTransfer,
    };
    let vest = Request {
        id: "r-vest".into(),
        wallet: "vest-pool".into(),
        asset: "TOK".into(),
        amount: 10,
        destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
        initiator: "payroll".into(),
        risk: None,
        origin: None,
        ..req.clone()
    };
    let mut g = c.benchmark_group("spending");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (label, n) in [("1k", 1_000u64), ("1M", 1_000_000)] {
        let mut spent = Spending::from_entries(&p, (0..n).map(|i| past(i, n)));
        spent.prune(NOW);
        eprintln!("spending {label}: {:?}", spent);
        // A retry: the request's own earlier entry is in the aggregates.
        let own = req.history_entry(NOW - 60);
        spent.add(&own);
        for (case, r, exclude) in [
            ("evaluate_velocity", &req, None),
            ("evaluate_velocity_retry", &req, Some(&own)),
            ("evaluate_vesting", &vest, None),
        ] {
            g.bench_with_input(BenchmarkId::new(case, label), &spent, |b, spent| {
                b.iter(|| {
                    let d = evaluate(
                        &p,
                        r,
                        &EvalContext {
                            now: NOW,
                            spent,
                            exclude,
                            approvals: &[],
                            seen_nonces: &seen,
                        },
                    );
                    assert!(d.is_allowed(), "{d:?}");
                    d
                })
            });
        }
        // Steady state: one transfer in, about one out of the window, at
        // the rate that keeps `n` transfers in a day.
        // Entries are made beforehand so only `add` and `prune` are timed.
        let mut k = 0u64;
        let mut next: Vec<HistoryEntry> = (0..10_000).map(|i| past(i, n)).collect();
        g.bench_function(BenchmarkId::new("add_prune", label), |b| {
            b.iter(|| {
                k += 1;
                let t = NOW + k * DAY / n;
                let e = &mut next[(k % 10_000) as usize];
                e.time = t;
                spent.add(e);
                spent.prune(t);
            })
        });
    }
    g.finish();
}

fn rollout(c: &mut Criterion) {
    let base = policy(100);
    let mut next = base.document().clone();
    next.version = 2;
    let staged = Policy::from_document(
        compose(
            base.document(),
            &next,
            Rollout {
                merchants: None,
                wallets: None,
                share_bps: Some(5_000),
            },
        )
        .expect("the rollout composes"),
    )
    .expect("the rollout version is valid");
    // A request the share leaves with the base's rules.
    let id = (0..)
        .map(|i| format!("r-{i}"))
        .find(|id| bucket(id) >= 5_000)
        .expect("some id is outside the share");
    let req = Request {
        id,
        amount: 500,
        ..request()
    };
    let hist = history();
    let seen = BTreeSet::new();
    let mut g = c.benchmark_group("rollout");
    for (label, p) in [("plain_100_rules", &base), ("rollout_2x100_rules", &staged)] {
        let spent = Spending::from_history(p, &hist);
        g.bench_function(label, |b| {
            b.iter(|| {
                let d = evaluate(
                    p,
                    &req,
                    &EvalContext {
                        now: NOW,
                        spent: &spent,
                        exclude: None,
                        approvals: &[],
                        seen_nonces: &seen,
                    },
                );
                assert!(d.is_allowed());
                d
            })
        });
    }
    g.bench_function("bucket", |b| b.iter(|| bucket(&req.id)));
    g.finish();
}

criterion_group!(benches, bench, spending, rollout);
criterion_main!(benches);
