//! Property tests: limits are never bypassed without approvals, and evaluation
//! is deterministic and independent of the order of approvals and history.
mod common;

use common::*;
use keyfold_policy::*;
use proptest::prelude::*;

const LIMIT: u128 = 10_000_000;

fn policy() -> Policy {
    let mut text = example("treasury-2-of-3.toml");
    text.push_str(
        "\n[[velocity]]\nname = \"daily\"\nper = \"wallet\"\nwindow_secs = 86400\nasset = \"ETH\"\nmax_amount = 1000000000\nmax_count = 5\n",
    );
    match Policy::from_toml(&text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

#[derive(Debug, Clone)]
struct ApprovalSpec {
    seed: u8,
    reject: bool,
    version_ok: bool,
    expired: bool,
    same_request: bool,
}

fn approval_spec() -> impl Strategy<Value = ApprovalSpec> {
    (
        1u8..=9,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(seed, reject, version_ok, expired, same_request)| ApprovalSpec {
                seed,
                reject,
                version_ok,
                expired,
                same_request,
            },
        )
}

fn build(r: &Request, specs: &[ApprovalSpec]) -> Vec<Approval> {
    let other = {
        let mut o = r.clone();
        o.id.push_str("-other");
        o
    };
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let target = if s.same_request { r } else { &other };
            Approval::sign(
                &key(s.seed),
                target.canonical_hash(),
                if s.version_ok { 7 } else { 6 },
                if s.reject {
                    ApprovalDecision::Reject
                } else {
                    ApprovalDecision::Approve
                },
                if s.expired { T } else { T + 3600 },
                [i as u8; 16],
            )
        })
        .collect()
}

fn request(amount: u128, initiator: &str) -> Request {
    let mut r = req("hot-eth");
    r.amount = amount;
    r.initiator = initiator.into();
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_request_above_limit_is_allowed_without_its_approvals(
        amount in prop_oneof![0u128..=2 * LIMIT, any::<u128>()],
        initiator in prop::sample::select(vec!["payments", "ops-alice"]),
        specs in prop::collection::vec(approval_spec(), 0..6),
    ) {
        let p = policy();
        let r = request(amount, initiator);
        let approvals = build(&r, &specs);
        let d = eval_with(&p, &r, T, &approvals, &History::default());
        if d.is_allowed() && amount > LIMIT {
            // count approvals that are genuinely valid, independently of the evaluator
            let mut valid = std::collections::BTreeSet::new();
            for s in &specs {
                let member = (1..=3).contains(&s.seed);
                let own = s.seed == 1 && initiator == "ops-alice";
                if member && !own && !s.reject && s.version_ok && !s.expired && s.same_request {
                    valid.insert(s.seed);
                }
            }
            prop_assert!(valid.len() >= 2, "allowed {amount} with approvers {valid:?}: {d:?}");
        }
        if amount <= LIMIT {
            prop_assert!(d.is_allowed());
        }
    }

    #[test]
    fn evaluation_is_deterministic_and_order_independent(
        amount in 0u128..=3 * LIMIT,
        specs in prop::collection::vec(approval_spec(), 0..6),
        hist in prop::collection::vec((0u64..200_000, 0u128..400_000_000, prop::bool::ANY), 0..8),
        seed in any::<u64>(),
    ) {
        let p = policy();
        let r = request(amount, "payments");
        let approvals = build(&r, &specs);
        let history = History {
            entries: hist
                .iter()
                .map(|(ago, amt, same)| {
                    entry(T.saturating_sub(*ago), if *same { "hot-eth" } else { "other" }, "addr-1", "payments", *amt)
                })
                .collect(),
        };
        let d1 = eval_with(&p, &r, T, &approvals, &history);
        let d2 = eval_with(&p, &r, T, &approvals, &history);
        prop_assert_eq!(&d1, &d2);
        // deterministic permutation from `seed`
        let mut a2 = approvals.clone();
        let mut h2 = history.clone();
        let mut s = seed | 1;
        let mut next = |n: usize| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s % n as u64) as usize };
        for i in (1..a2.len()).rev() { let j = next(i + 1); a2.swap(i, j); }
        for i in (1..h2.entries.len()).rev() { let j = next(i + 1); h2.entries.swap(i, j); }
        a2.reverse();
        let d3 = eval_with(&p, &r, T, &a2, &h2);
        prop_assert_eq!(&d1, &d3);
    }
}
