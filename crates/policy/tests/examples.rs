//! The example policies in `examples/` (also in docs/policy.md) parse and behave as described.
mod common;

use common::*;
use keyfold_policy::*;

fn load(name: &str) -> Policy {
    match Policy::from_toml(&example(name)) {
        Ok(p) => p,
        Err(e) => panic!("{name}: {e}"),
    }
}

#[test]
fn all_examples_parse_and_describe() {
    for name in [
        "devnet-default.toml",
        "hot-daily-limit.toml",
        "treasury-2-of-3.toml",
        "cold-3-of-5-timelock.toml",
        "vesting.toml",
    ] {
        let p = load(name);
        let lines = describe(&p);
        assert_eq!(lines.len(), p.document().rules.len(), "{name}");
        assert!(!p.document().rules.iter().any(|r| r.allow_raw), "{name}");
    }
}

fn btc(wallet: &str, amount: u128, time: u64) -> Request {
    let mut r = req(wallet);
    r.asset = "BTC".into();
    r.amount = amount;
    r.time = time;
    r
}

fn btc_entry(time: u64, amount: u128) -> HistoryEntry {
    let mut e = entry(time, "hot-1", "addr-1", "client-a", amount);
    e.asset = "BTC".into();
    e
}

#[test]
fn hot_wallet_daily_limit() {
    let p = load("hot-daily-limit.toml");
    let none = History::default();
    let r = btc("hot-1", 60_000_000, T);
    assert!(eval_with(&p, &r, T, &[], &none).is_allowed());
    let h = History {
        entries: vec![btc_entry(T - 3600, 50_000_000)],
    };
    let d = eval_with(&p, &r, T, &[], &h);
    assert!(
        matches!(&d.outcome, Outcome::Deny { reason } if reason.contains("hot-1-daily-amount")),
        "{d:?}"
    );
    // exactly up to the limit is fine
    let r40 = btc("hot-1", 50_000_000, T);
    assert!(eval_with(&p, &r40, T, &[], &h).is_allowed());
    // 24 h later the earlier transfer has left the window
    let later = btc("hot-1", 60_000_000, T + 86_400 - 3600);
    assert!(eval_with(&p, &later, T + 86_400 - 3600, &[], &h).is_allowed());
    // the 51st transfer of the day is refused
    let many = History {
        entries: (0..50).map(|i| btc_entry(T - 10 - i, 1)).collect(),
    };
    assert!(!eval_with(&p, &btc("hot-1", 1, T), T, &[], &many).is_allowed());
    // another wallet, or raw bytes, are denied
    assert!(!eval(&p, &btc("hot-2", 1, T)).is_allowed());
    let mut raw = btc("hot-1", 1, T);
    raw.payload = Payload::RawBytes { bytes: vec![1] };
    assert!(!eval(&p, &raw).is_allowed());
}

#[test]
fn treasury_two_of_three() {
    let p = load("treasury-2-of-3.toml");
    let h = History::default();
    let mut small = req("hot-eth");
    small.amount = 10_000_000;
    assert!(eval(&p, &small).is_allowed());
    let mut big = req("hot-eth");
    big.amount = 10_000_001;
    big.initiator = "payments".into();
    let d = eval(&p, &big);
    assert!(
        matches!(&d.outcome, Outcome::NeedApprovals { missing, .. } if missing[0].have == 0 && missing[0].need == 2),
        "{d:?}"
    );
    let one = [approve(2, &big, 7, 2)];
    assert!(!eval_with(&p, &big, T, &one, &h).is_allowed());
    let two = [approve(2, &big, 7, 2), approve(3, &big, 7, 3)];
    assert!(eval_with(&p, &big, T, &two, &h).is_allowed());
    // Alice counts for "payments" requests ...
    let ab = [approve(1, &big, 7, 1), approve(2, &big, 7, 2)];
    assert!(eval_with(&p, &big, T, &ab, &h).is_allowed());
    // ... but not for her own "ops-alice" requests.
    let mut own = big.clone();
    own.initiator = "ops-alice".into();
    let ab = [approve(1, &own, 7, 1), approve(2, &own, 7, 2)];
    assert!(!eval_with(&p, &own, T, &ab, &h).is_allowed());
    // approvals made for the previous policy version do not count
    let old = [approve(2, &big, 6, 2), approve(3, &big, 6, 3)];
    assert!(!eval_with(&p, &big, T, &old, &h).is_allowed());
}

#[test]
fn cold_three_of_five_with_time_lock() {
    let p = load("cold-3-of-5-timelock.toml");
    let h = History::default();
    let t0 = 1_700_200_000;
    let mut r = req("cold-1");
    r.tier = Tier::Cold;
    r.asset = "BTC".into();
    r.amount = 500_000_000;
    r.destination = "bc1qexchangea".into();
    r.time = t0;
    assert!(matches!(
        eval_with(&p, &r, t0, &[], &h).outcome,
        Outcome::NeedApprovals { .. }
    ));
    let two = [approve(4, &r, 3, 4), approve(5, &r, 3, 5)];
    assert!(matches!(
        eval_with(&p, &r, t0, &two, &h).outcome,
        Outcome::NeedApprovals { .. }
    ));
    let three = [
        approve(4, &r, 3, 4),
        approve(5, &r, 3, 5),
        approve(8, &r, 3, 8),
    ];
    assert_eq!(
        eval_with(&p, &r, t0, &three, &h).outcome,
        Outcome::TimeLocked { until: t0 + 86_400 }
    );
    assert_eq!(
        eval_with(&p, &r, t0 + 86_399, &three, &h).outcome,
        Outcome::TimeLocked { until: t0 + 86_400 }
    );
    assert!(eval_with(&p, &r, t0 + 86_400, &three, &h).is_allowed());
    // a rejection by a committee member cancels
    let vetoed = [
        approve(4, &r, 3, 4),
        approve(5, &r, 3, 5),
        approve(8, &r, 3, 8),
        reject(6, &r, 3, 6),
    ];
    assert!(matches!(
        eval_with(&p, &r, t0 + 86_400, &vetoed, &h).outcome,
        Outcome::Deny { .. }
    ));
    // a new address-book entry cannot be used during its cool-down
    let mut fresh = r.clone();
    fresh.destination = "bc1qnewpartner".into();
    fresh.time = 1_700_500_000 + 100;
    assert!(matches!(eval(&p, &fresh).outcome, Outcome::Deny { .. }));
    fresh.time = 1_700_500_000 + 86_400;
    assert!(matches!(
        eval(&p, &fresh).outcome,
        Outcome::NeedApprovals { .. }
    ));
    // not in the address book at all
    let mut stranger = r.clone();
    stranger.destination = "bc1qunknown".into();
    assert!(matches!(eval(&p, &stranger).outcome, Outcome::Deny { .. }));
}

#[test]
fn vesting_beneficiary() {
    let p = load("vesting.toml");
    let start = 1_700_000_000u64;
    let year = 31_536_000u64;
    let mut r = req("vesting-pool");
    r.asset = "TOKEN".into();
    r.destination = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359".into();
    let released = |amount| History {
        entries: vec![{
            let mut e = entry(
                start + year,
                "vesting-pool",
                "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
                "x",
                amount,
            );
            e.asset = "TOKEN".into();
            e
        }],
    };
    // before the cliff nothing is available
    r.amount = 1;
    r.time = start + year - 1;
    assert!(!eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
    // at the cliff, a quarter has vested
    r.time = start + year;
    r.amount = 1_000_000;
    assert!(eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
    r.amount = 1_000_001;
    assert!(!eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
    // after two years, half has vested; 1.5 M already released
    r.time = start + 2 * year;
    r.amount = 500_000;
    assert!(eval_with(&p, &r, r.time, &[], &released(1_500_000)).is_allowed());
    r.amount = 500_001;
    assert!(!eval_with(&p, &r, r.time, &[], &released(1_500_000)).is_allowed());
    // after the end everything is available, but never more than the total
    r.time = start + 5 * year;
    r.amount = 4_000_000;
    assert!(eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
    r.amount = 4_000_001;
    assert!(!eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
    // another destination is refused
    r.amount = 1;
    r.destination = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB".into();
    assert!(!eval_with(&p, &r, r.time, &[], &History::default()).is_allowed());
}

#[test]
fn amounts_beyond_i64_as_strings() {
    let doc = "version = 1\n[[rules]]\nname = \"big\"\namount = { min = \"18446744073709551616\" }\naction = { kind = \"deny\", reason = \"huge\" }\n[[rules]]\nname = \"deny-all\"\naction = { kind = \"deny\" }\n".to_string();
    let Ok(p) = Policy::from_toml(&doc) else {
        panic!()
    };
    let mut r = req("w");
    r.amount = u128::from(u64::MAX) + 1;
    assert_eq!(eval(&p, &r).rule.map(|x| x.name), Some("big".to_string()));
    assert!(Policy::from_toml(&doc.replace("\"18446744073709551616\"", "1.5")).is_err());
    assert!(Policy::from_toml(&doc.replace("\"18446744073709551616\"", "-1")).is_err());
    let Ok(text) = p.to_toml() else { panic!() };
    assert!(text.contains("18446744073709551616"));
    assert_eq!(vested_amount(0, 0, 10, u128::MAX, 5), u128::MAX / 2);
}

#[test]
fn docs_show_the_example_files_verbatim() {
    let path = format!("{}/../../docs/policy.md", env!("CARGO_MANIFEST_DIR"));
    let Ok(doc) = std::fs::read_to_string(&path) else {
        // The crate may be built outside the repository; nothing to compare.
        return;
    };
    for name in [
        "devnet-default.toml",
        "hot-daily-limit.toml",
        "treasury-2-of-3.toml",
        "cold-3-of-5-timelock.toml",
        "vesting.toml",
    ] {
        let text = example(name);
        assert!(
            doc.contains(text.trim_end()),
            "docs/policy.md does not show {name} verbatim"
        );
    }
}
