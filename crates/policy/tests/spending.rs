//! `Spending` against the plain scan it replaced: random sequences of add,
//! remove, prune and evaluate must give exactly the totals and decisions of
//! a scan over every past entry (the old `evaluate` code, kept here as the
//! oracle), with several velocity scopes, HD children, vesting rules,
//! retries (`exclude`) and amounts near `u128::MAX`.

use std::collections::{BTreeSet, HashSet};

use keyfold_policy::*;
use proptest::prelude::*;

const BASE: u64 = 1_700_000_000;
const WALLETS: &[&str] = &[
    "w1",
    "w1/m/0/1",
    "w1/m/0/2",
    "w2",
    "w2/m/0/1",
    "vest",
    "vest/m/0/1",
];
const ASSETS: &[&str] = &["ETH", "TOK"];
const DESTS: &[&str] = &["d1", "d2", "ben1"];
const INITIATORS: &[&str] = &["i1", "i2"];

/// Four velocity limits (per wallet, per destination with a wallet filter
/// that covers HD children, per initiator, per wallet filtered on one HD
/// child), maxima that make saturation matter, and two vesting rules.
fn policy() -> Policy {
    let text = format!(
        r#"
version = 3
[[velocity]]
name = "wallet-eth"
per = "wallet"
window_secs = 100
asset = "ETH"
max_amount = "{near_max}"
max_count = 6
[[velocity]]
name = "dest-eth-w1"
per = "destination"
window_secs = 50
asset = "ETH"
wallets = ["w1"]
max_amount = 2000
[[velocity]]
name = "initiator-tok"
per = "initiator"
window_secs = 30
asset = "TOK"
max_count = 3
[[velocity]]
name = "child-eth"
per = "wallet"
window_secs = 1000
asset = "ETH"
wallets = ["w2/m/0/1", "vest"]
max_amount = "{max}"
max_count = 9

[[rules]]
name = "vest-tok"
wallets = ["vest", "vest/m/0/1"]
assets = ["TOK"]
destination = {{ allow = ["ben1"] }}
action = {{ kind = "vesting", start = {BASE}, cliff_secs = 10, duration_secs = 200, total = "{half}" }}
[[rules]]
name = "vest-eth"
wallets = ["w2"]
assets = ["ETH"]
destination = {{ allow = ["d1"] }}
action = {{ kind = "vesting", start = {BASE}, cliff_secs = 0, duration_secs = 300, total = 1000000 }}
[[rules]]
name = "hot"
tier = "hot"
action = {{ kind = "allow" }}
[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        near_max = u128::MAX - 5,
        max = u128::MAX,
        half = u128::MAX / 2,
    );
    match Policy::from_toml(&text) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

// ---------------------------------------------------------------------------
// The oracle: the scan `evaluate` used before `Spending`.

fn in_list(list: &Option<Vec<String>>, v: &str) -> bool {
    list.as_ref().is_none_or(|l| l.iter().any(|x| x == v))
}

fn wallet_listed(list: &Option<Vec<String>>, wallet: &str) -> bool {
    in_list(list, wallet) || in_list(list, wallet_root(wallet))
}

fn same_key(v: &VelocityLimit, e: &HistoryEntry, wallet: &str, dest: &str, init: &str) -> bool {
    match v.per {
        VelocityScope::Wallet => wallet_root(&e.wallet) == wallet_root(wallet),
        VelocityScope::Destination => e.destination == dest,
        VelocityScope::Initiator => e.initiator == init,
    }
}

/// Sum and count of `history` for limit `v` at `now`, for a request with
/// these fields (the old `check_velocity` loop).
fn naive_window(
    v: &VelocityLimit,
    history: &[HistoryEntry],
    now: u64,
    wallet: &str,
    dest: &str,
    init: &str,
) -> (u128, u64) {
    let lo = now.saturating_sub(v.window_secs);
    let mut sum: u128 = 0;
    let mut count: u64 = 0;
    for e in history {
        if same_key(v, e, wallet, dest, init)
            && e.asset == v.asset
            && wallet_listed(&v.wallets, &e.wallet)
            && e.time > lo
            && e.time <= now
        {
            sum = sum.saturating_add(e.amount);
            count = count.saturating_add(1);
        }
    }
    (sum, count)
}

fn naive_velocity(
    policy: &Policy,
    req: &Request,
    history: &[HistoryEntry],
    now: u64,
) -> Option<String> {
    for v in &policy.document().velocity {
        if v.asset != req.asset || !wallet_listed(&v.wallets, &req.wallet) {
            continue;
        }
        let (sum, count) = naive_window(
            v,
            history,
            now,
            &req.wallet,
            &req.destination,
            &req.initiator,
        );
        if let Some(max) = v.max_amount {
            if sum.saturating_add(req.amount) > max {
                return Some(format!(
                    "velocity limit {:?} exceeded: {} already in the last {} s, +{} > {}",
                    v.name, sum, v.window_secs, req.amount, max
                ));
            }
        }
        if let Some(max) = v.max_count {
            if count.saturating_add(1) > max {
                return Some(format!(
                    "velocity limit {:?} exceeded: {} transfer(s) already in the last {} s, max {}",
                    v.name, count, v.window_secs, max
                ));
            }
        }
    }
    None
}

fn naive_released(history: &[HistoryEntry], wallet: &str, asset: &str, dest: &str) -> u128 {
    history
        .iter()
        .filter(|e| e.wallet == wallet && e.asset == asset && e.destination == dest)
        .fold(0u128, |s, e| s.saturating_add(e.amount))
}

/// The outcome the old `evaluate` gave, for the rule `evaluate` picked
/// (rule matching does not depend on the history).
fn naive_outcome(
    policy: &Policy,
    rule: &RuleRef,
    req: &Request,
    history: &[HistoryEntry],
    now: u64,
) -> Outcome {
    let r = &policy.document().rules[rule.index];
    if let Action::Deny { .. } = r.action {
        panic!("the test policy only denies with its catch-all");
    }
    if let Action::Vesting {
        start,
        cliff_secs,
        duration_secs,
        total,
        revoked_at,
    } = r.action
    {
        let at = revoked_at.map_or(now, |r| r.min(now));
        let vested = vested_amount(start, cliff_secs, duration_secs, total, at);
        let released = naive_released(history, &req.wallet, &req.asset, &req.destination);
        let available = vested.saturating_sub(released);
        if req.amount > available {
            return Outcome::Deny {
                reason: format!(
                    "vesting: {} requested but only {available} available ({vested} vested, {released} released)",
                    req.amount
                ),
            };
        }
    }
    if let Some(reason) = naive_velocity(policy, req, history, now) {
        return Outcome::Deny { reason };
    }
    Outcome::Allow
}

// ---------------------------------------------------------------------------
// Random operations.

#[derive(Debug, Clone)]
struct EntrySpec {
    wallet: usize,
    asset: usize,
    dest: usize,
    init: usize,
    amount: u128,
    /// Offset from the clock: -60 .. +20 (some entries are in the future).
    offset: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Add(EntrySpec),
    /// Remove the live entry at this index (modulo the live count).
    Remove(usize),
    /// Prune at the clock minus this margin.
    Prune(u64),
    /// Move the clock: forward by up to 30 s, or back by up to 40 s.
    Tick(i64),
    /// Evaluate a request; `retry` picks a live entry as the request's own
    /// earlier entry (the request then has that entry's fields).
    Evaluate {
        request: EntrySpec,
        retry: Option<usize>,
    },
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        4 => 0u128..1_500,
        2 => (u128::MAX - 1_000)..=u128::MAX,
        1 => Just(u128::MAX / 2),
        1 => any::<u128>(),
    ]
}

fn entry_spec() -> impl Strategy<Value = EntrySpec> {
    (
        0..WALLETS.len(),
        0..ASSETS.len(),
        0..DESTS.len(),
        0..INITIATORS.len(),
        amount(),
        -60i64..=20,
    )
        .prop_map(|(wallet, asset, dest, init, amount, offset)| EntrySpec {
            wallet,
            asset,
            dest,
            init,
            amount,
            offset,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => entry_spec().prop_map(Op::Add),
        2 => any::<usize>().prop_map(Op::Remove),
        2 => prop_oneof![3 => Just(0u64), 1 => 0u64..10].prop_map(Op::Prune),
        3 => prop_oneof![6 => 0i64..=30, 1 => -40i64..0].prop_map(Op::Tick),
        4 => (entry_spec(), prop::option::weighted(0.4, any::<usize>()))
            .prop_map(|(request, retry)| Op::Evaluate { request, retry }),
    ]
}

fn make_entry(s: &EntrySpec, clock: u64) -> HistoryEntry {
    HistoryEntry {
        time: clock.saturating_add_signed(s.offset),
        wallet: WALLETS[s.wallet].into(),
        asset: ASSETS[s.asset].into(),
        destination: DESTS[s.dest].into(),
        initiator: INITIATORS[s.init].into(),
        amount: s.amount,
    }
}

fn request_of(id: &str, e: &HistoryEntry, now: u64) -> Request {
    Request {
        id: id.into(),
        wallet: e.wallet.clone(),
        tier: Tier::Hot,
        asset: e.asset.clone(),
        amount: e.amount,
        destination: e.destination.clone(),
        initiator: e.initiator.clone(),
        risk: None,
        origin: None,
        time: now,
        payload: Payload::TypedTransfer,
    }
}

/// `history` without one occurrence of `exclude`.
fn without(history: &[HistoryEntry], exclude: Option<&HistoryEntry>) -> Vec<HistoryEntry> {
    let mut out = history.to_vec();
    if let Some(x) = exclude {
        if let Some(i) = out.iter().position(|e| e == x) {
            out.remove(i);
        }
    }
    out
}

/// Window records the aggregates should hold: each live entry once per
/// limit it counts for, unless that limit's cut passed its time.
fn expected_records(p: &Policy, live: &[HistoryEntry], cuts: &[Option<u64>]) -> u64 {
    let mut n = 0;
    for (v, cut) in p.document().velocity.iter().zip(cuts) {
        for e in live {
            let counts = e.asset == v.asset && wallet_listed(&v.wallets, &e.wallet);
            if counts && !cut.is_some_and(|c| e.time <= c) {
                n += 1;
            }
        }
    }
    n
}

fn vesting_tracked(p: &Policy, wallet: &str, asset: &str) -> bool {
    p.document().rules.iter().any(|r| {
        matches!(r.action, Action::Vesting { .. })
            && in_list(&r.wallets, wallet)
            && in_list(&r.assets, asset)
    })
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let p = policy();
    let mut spent = Spending::new(&p);
    let mut live: Vec<HistoryEntry> = Vec::new();
    let mut clock = BASE + 100;
    let mut max_prune: Option<u64> = None;
    let mut cuts: Vec<Option<u64>> = vec![None; p.document().velocity.len()];
    let seen = BTreeSet::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add(s) => {
                let e = make_entry(&s, clock);
                spent.add(&e);
                live.push(e);
            }
            Op::Remove(i) => {
                if !live.is_empty() {
                    let e = live.remove(i % live.len());
                    prop_assert_eq!(spent.remove(&e), Ok(()));
                }
            }
            Op::Prune(margin) => {
                let at = clock.saturating_sub(margin);
                spent.prune(at);
                max_prune = Some(max_prune.map_or(at, |m| m.max(at)));
                for (v, cut) in p.document().velocity.iter().zip(cuts.iter_mut()) {
                    let lo = at.saturating_sub(v.window_secs);
                    *cut = Some(cut.map_or(lo, |c| c.max(lo)));
                }
            }
            Op::Tick(d) => clock = clock.saturating_add_signed(d),
            Op::Evaluate { request, retry } => {
                let now = clock;
                let own = retry
                    .filter(|_| !live.is_empty())
                    .map(|i| live[i % live.len()].clone());
                let base = own.clone().unwrap_or_else(|| make_entry(&request, now));
                let req = request_of(&format!("r-{step}"), &base, now);
                let counted = without(&live, own.as_ref());
                // A window may only be refused when a prune ran after `now`.
                let may_be_stale = max_prune.is_some_and(|m| m > now);

                // Aggregates rebuilt in one go from the live entries
                // (nothing pruned) always answer exactly.
                let fresh = Spending::from_entries(&p, live.iter().cloned());
                // Every window total, for every scope value.
                let mut stale = false;
                for (i, v) in p.document().velocity.iter().enumerate() {
                    let keys: Vec<(&str, &str, &str)> = match v.per {
                        VelocityScope::Wallet => WALLETS.iter().map(|w| (*w, "", "")).collect(),
                        VelocityScope::Destination => DESTS.iter().map(|d| ("", *d, "")).collect(),
                        VelocityScope::Initiator => {
                            INITIATORS.iter().map(|x| ("", "", *x)).collect()
                        }
                    };
                    for (w, d, x) in keys {
                        let key = match v.per {
                            VelocityScope::Wallet => wallet_root(w),
                            VelocityScope::Destination => d,
                            VelocityScope::Initiator => x,
                        };
                        let (sum, count) = naive_window(v, &counted, now, w, d, x);
                        match spent.window(i, key, now, own.as_ref()) {
                            Ok(t) => {
                                prop_assert_eq!(
                                    (t.amount, t.count),
                                    (sum, count),
                                    "limit {} key {}",
                                    i,
                                    key
                                );
                            }
                            Err(SpendingError::Pruned { .. }) => {
                                prop_assert!(may_be_stale, "refused a window with no later prune");
                                stale = true;
                            }
                            Err(e) => prop_assert!(false, "window: {}", e),
                        }
                        let t = fresh.window(i, key, now, own.as_ref());
                        prop_assert_eq!(t.map(|t| (t.amount, t.count)), Ok((sum, count)));
                    }
                }
                for w in WALLETS {
                    for a in ASSETS {
                        for d in DESTS {
                            let r = spent.released(w, a, d, own.as_ref());
                            if vesting_tracked(&p, w, a) {
                                prop_assert_eq!(r, Ok(naive_released(&counted, w, a, d)));
                            } else {
                                let refused = matches!(r, Err(SpendingError::NotTracked { .. }));
                                prop_assert!(refused);
                            }
                        }
                    }
                }

                // The decision.
                let d = evaluate(
                    &p,
                    &req,
                    &EvalContext {
                        now,
                        spent: &spent,
                        exclude: own.as_ref(),
                        approvals: &[],
                        seen_nonces: &seen,
                    },
                );
                let Some(rule) = d.rule.clone() else {
                    return Err(TestCaseError::fail(format!("no rule: {d:?}")));
                };
                if rule.name == "deny-all" {
                    prop_assert!(!d.is_allowed());
                    continue;
                }
                let expected = naive_outcome(&p, &rule, &req, &counted, now);
                match &d.outcome {
                    Outcome::Deny { reason } if reason.starts_with("internal:") => {
                        prop_assert!(stale, "internal deny without a stale window: {}", reason);
                    }
                    other => prop_assert_eq!(other, &expected),
                }
            }
        }
        prop_assert_eq!(spent.window_records(), expected_records(&p, &live, &cuts));
        let totals: HashSet<(&str, &str, &str)> = live
            .iter()
            .filter(|e| vesting_tracked(&p, &e.wallet, &e.asset))
            .map(|e| (e.wallet.as_str(), e.asset.as_str(), e.destination.as_str()))
            .collect();
        prop_assert_eq!(spent.vesting_totals(), totals.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn spending_matches_the_scan(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}

// ---------------------------------------------------------------------------
// Fixed cases.

fn entry(time: u64, wallet: &str, asset: &str, dest: &str, amount: u128) -> HistoryEntry {
    HistoryEntry {
        time,
        wallet: wallet.into(),
        asset: asset.into(),
        destination: dest.into(),
        initiator: "i1".into(),
        amount,
    }
}

fn eval(p: &Policy, spent: &Spending, req: &Request, exclude: Option<&HistoryEntry>) -> Decision {
    evaluate(
        p,
        req,
        &EvalContext {
            now: req.time,
            spent,
            exclude,
            approvals: &[],
            seen_nonces: &BTreeSet::new(),
        },
    )
}

fn internal_reason(d: &Decision) -> Option<&str> {
    match &d.outcome {
        Outcome::Deny { reason } if reason.starts_with("internal:") => Some(reason),
        _ => None,
    }
}

#[test]
fn aggregates_of_another_policy_deny() {
    let p = policy();
    let other = Policy::from_toml(
        "version = 3\n[[velocity]]\nname = \"x\"\nper = \"wallet\"\nwindow_secs = 5\nasset = \"ETH\"\nmax_count = 1\n\
         [[rules]]\nname = \"deny-all\"\naction = { kind = \"deny\" }\n",
    )
    .unwrap();
    let spent = Spending::new(&other);
    assert!(!spent.fits(&p));
    let req = request_of("r", &entry(BASE, "w1", "ETH", "d1", 1), BASE);
    let d = eval(&p, &spent, &req, None);
    assert!(
        internal_reason(&d).is_some_and(|r| r.contains("other limits")),
        "{d:?}"
    );
    assert_eq!(d.rule, None);
    // A later version with the same limits and vesting matchers fits.
    let text = p
        .to_toml()
        .unwrap()
        .replacen("version = 3", "version = 4", 1);
    let v4 = Policy::from_toml(&text).unwrap();
    assert_eq!(v4.version(), 4);
    assert!(Spending::new(&p).fits(&v4));
    assert_eq!(Spending::new(&p).policy_version(), 3);
}

#[test]
fn retry_does_not_count_against_itself() {
    let p = policy();
    let mut spent = Spending::new(&p);
    // `dest-eth-w1`: 2000 per 50 s per destination for w1 and its children.
    let own = entry(BASE, "w1/m/0/1", "ETH", "d2", 1_500);
    spent.add(&own);
    spent.add(&entry(BASE + 1, "w1", "ETH", "d2", 400));
    let req = request_of("r", &own, BASE + 2);
    assert!(!eval(&p, &spent, &req, None).is_allowed());
    assert!(eval(&p, &spent, &req, Some(&own)).is_allowed());
    // An exclude that was never added is refused, never silently subtracted.
    let ghost = entry(BASE, "w1", "ETH", "d2", 999);
    assert!(internal_reason(&eval(&p, &spent, &req, Some(&ghost))).is_some());
    // Removing it makes room for good; removing it twice is refused.
    assert_eq!(spent.remove(&own), Ok(()));
    assert!(eval(&p, &spent, &req, None).is_allowed());
    assert!(matches!(
        spent.remove(&own),
        Err(SpendingError::NotHeld { .. })
    ));
    // An entry that no limit or vesting rule counts is nothing to remove.
    assert_eq!(spent.remove(&entry(BASE, "zz", "XRP", "d2", 5)), Ok(()));
}

#[test]
fn prune_drops_the_window_and_refuses_to_look_back() {
    let p = policy();
    let mut spent = Spending::new(&p);
    for t in 0..200 {
        spent.add(&entry(BASE + t, "w2", "ETH", "d9", 1));
    }
    // wallet-eth (100 s) and child-eth (1000 s, w2's child only: not w2).
    assert_eq!(spent.window_records(), 200);
    spent.prune(BASE + 199);
    // Kept: times in (BASE + 99, ...].
    assert_eq!(spent.window_records(), 100);
    let t = spent.window(0, "w2", BASE + 199, None).unwrap();
    assert_eq!((t.amount, t.count), (100, 100));
    // A prune back in time is ignored; an evaluation before the prune that
    // needs dropped entries is refused, not under-counted.
    spent.prune(BASE + 10);
    assert_eq!(spent.window_records(), 100);
    assert!(matches!(
        spent.window(0, "w2", BASE + 150, None),
        Err(SpendingError::Pruned { .. })
    ));
    let req = request_of("r", &entry(BASE + 150, "w2", "ETH", "d9", 1), BASE + 150);
    assert!(internal_reason(&eval(&p, &spent, &req, None)).is_some());
    // Entries added at a time already cut are not held.
    spent.add(&entry(BASE + 5, "w2", "ETH", "d9", 1));
    assert_eq!(spent.window_records(), 100);
    assert_eq!(spent.remove(&entry(BASE + 5, "w2", "ETH", "d9", 1)), Ok(()));
    // Vesting totals are all-time: never pruned.
    assert_eq!(spent.released("w2", "ETH", "d9", None), Ok(200));
    assert_eq!(spent.len(), 101);
}

#[test]
fn sums_saturate_like_the_scan() {
    let p = policy();
    let mut spent = Spending::new(&p);
    let big = entry(BASE, "w2", "ETH", "d1", u128::MAX);
    spent.add(&big);
    spent.add(&big);
    spent.add(&entry(BASE, "w2", "ETH", "d1", 3));
    let t = spent.window(0, "w2", BASE, None).unwrap();
    assert_eq!((t.amount, t.count), (u128::MAX, 3));
    // Exact below the saturation: removing both big ones leaves 3.
    spent.remove(&big).unwrap();
    let t = spent.window(0, "w2", BASE, Some(&big)).unwrap();
    assert_eq!((t.amount, t.count), (3, 1));
    assert_eq!(spent.released("w2", "ETH", "d1", Some(&big)), Ok(3));
}

/// A revoked vesting rule (an allocation plan's revocation) stops vesting
/// at its revocation: what had vested by then stays claimable, nothing
/// more, however late the claim.
#[test]
fn a_revoked_vesting_rule_stops_vesting_at_its_revocation() {
    let text = format!(
        r#"version = 1
[[rules]]
name = "allocation/plan/alice"
wallets = ["vest"]
assets = ["TOK"]
destination = {{ allow = ["ben1"] }}
action = {{ kind = "vesting", start = {BASE}, cliff_secs = 10, duration_secs = 200, total = 1000, revoked_at = {revoked} }}
[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        revoked = BASE + 100
    );
    let p = Policy::from_toml(&text).unwrap();
    let spent = Spending::new(&p);
    let at = |amount: u128, now: u64| {
        let req = request_of("r", &entry(now, "vest", "TOK", "ben1", amount), now);
        eval(&p, &spent, &req, None).outcome
    };
    // Half the period had passed at the revocation: 500 of 1000 vested.
    assert_eq!(at(500, BASE + 1000), Outcome::Allow);
    assert!(
        matches!(at(501, BASE + 1000), Outcome::Deny { ref reason } if reason.contains("only 500 available")),
        "{:?}",
        at(501, BASE + 1000)
    );
    // Before the revocation, vesting runs as usual.
    assert_eq!(at(250, BASE + 50), Outcome::Allow);
    assert!(matches!(at(251, BASE + 50), Outcome::Deny { .. }));
    // The document keeps the revocation through a round trip.
    assert!(p.to_toml().unwrap().contains("revoked_at"));
}
