//! Validation, table-driven decisions, approvals and governance.
mod common;

use std::collections::BTreeSet;

use common::*;
use keyfold_policy::*;

fn base_toml() -> String {
    format!(
        r#"
version = 5
[admins]
keys = ["{a1}", "{a2}", "{a3}"]
quorum = 2

[address_book]
cooldown_secs = 3600
entries = [
  {{ name = "ex", address = "addr-ex", added_at = {added} }},
  {{ name = "fresh", address = "addr-fresh", added_at = {fresh} }},
]

[[groups]]
name = "g1"
quorum = 2
members = [
  {{ key = "{k1}", name = "alice", client = "client-a" }},
  {{ key = "{k2}", name = "bob" }},
  {{ key = "{k3}", name = "carol" }},
]

[[groups]]
name = "g2"
quorum = 1
members = [{{ key = "{k4}" }}]

[[velocity]]
name = "per-dest"
per = "destination"
window_secs = 3600
asset = "ETH"
wallets = ["w-vel-dest"]
max_amount = 100

[[velocity]]
name = "per-init"
per = "initiator"
window_secs = 3600
asset = "ETH"
max_count = 2

[[velocity]]
name = "per-wallet"
per = "wallet"
window_secs = 3600
asset = "ETH"
wallets = ["w-vel-wallet"]
max_amount = 100
max_count = 3

[[rules]]
name = "deny-bad"
destination = {{ allow = ["addr-bad"] }}
action = {{ kind = "deny", reason = "blocked address" }}

[[rules]]
name = "wallet"
wallets = ["w-allow", "w-vel-dest", "w-vel-init", "w-vel-wallet"]
action = {{ kind = "allow" }}

[[rules]]
name = "tier-cold"
tier = "cold"
action = {{ kind = "deny", reason = "cold" }}

[[rules]]
name = "asset"
assets = ["DOGE"]
action = {{ kind = "allow" }}

[[rules]]
name = "amount"
wallets = ["w-amt"]
amount = {{ min = 10, max = 20 }}
action = {{ kind = "allow" }}

[[rules]]
name = "book"
wallets = ["w-book"]
destination = {{ address_book = ["ex", "fresh"] }}
action = {{ kind = "allow" }}

[[rules]]
name = "any-book"
wallets = ["w-anybook"]
destination = {{ any_address_book = true }}
action = {{ kind = "allow" }}

[[rules]]
name = "denylist"
wallets = ["w-deny"]
destination = {{ deny = ["addr-x"] }}
action = {{ kind = "allow" }}

[[rules]]
name = "initiator"
initiators = ["client-z"]
action = {{ kind = "allow" }}

[[rules]]
name = "time"
wallets = ["w-time"]
time = {{ days = ["mon", "tue"], from = "09:00", to = "17:00" }}
action = {{ kind = "allow" }}

[[rules]]
name = "night"
wallets = ["w-night"]
time = {{ from = "22:00", to = "06:00" }}
action = {{ kind = "allow" }}

[[rules]]
name = "raw"
wallets = ["w-raw"]
allow_raw = true
action = {{ kind = "allow" }}

[[rules]]
name = "and"
wallets = ["w-and"]
action = {{ kind = "require_approvals", groups = ["g1", "g2"], combine = "all" }}

[[rules]]
name = "or"
wallets = ["w-or"]
action = {{ kind = "require_approvals", groups = ["g1", "g2"], combine = "any" }}

[[rules]]
name = "lock"
wallets = ["w-lock"]
action = {{ kind = "time_lock", delay_secs = 600, cancel_groups = ["g2"] }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        a1 = pk(1),
        a2 = pk(2),
        a3 = pk(3),
        k1 = pk(1),
        k2 = pk(2),
        k3 = pk(3),
        k4 = pk(4),
        added = T - 7200,
        fresh = T - 60,
    )
}

fn base() -> Policy {
    match Policy::from_toml(&base_toml()) {
        Ok(p) => p,
        Err(e) => panic!("base policy: {e}"),
    }
}

#[derive(Debug, PartialEq)]
enum Kind {
    Allow,
    Need,
    Locked,
    Deny,
}

fn kind(d: &Decision) -> Kind {
    match d.outcome {
        Outcome::Allow => Kind::Allow,
        Outcome::NeedApprovals { .. } => Kind::Need,
        Outcome::TimeLocked { .. } => Kind::Locked,
        Outcome::Deny { .. } => Kind::Deny,
    }
}

#[test]
fn table_driven_matchers_and_actions() {
    let p = base();
    type Case = (&'static str, fn(&mut Request), &'static str, Kind);
    let cases: Vec<Case> = vec![
        (
            "wallet matches",
            |r| r.wallet = "w-allow".into(),
            "wallet",
            Kind::Allow,
        ),
        (
            "wallet no match falls through",
            |r| r.wallet = "w-none".into(),
            "deny-all",
            Kind::Deny,
        ),
        (
            "cold tier",
            |r| {
                r.wallet = "w-none".into();
                r.tier = Tier::Cold
            },
            "tier-cold",
            Kind::Deny,
        ),
        (
            "asset matches",
            |r| {
                r.wallet = "w-none".into();
                r.asset = "DOGE".into()
            },
            "asset",
            Kind::Allow,
        ),
        (
            "amount at min",
            |r| {
                r.wallet = "w-amt".into();
                r.amount = 10
            },
            "amount",
            Kind::Allow,
        ),
        (
            "amount at max",
            |r| {
                r.wallet = "w-amt".into();
                r.amount = 20
            },
            "amount",
            Kind::Allow,
        ),
        (
            "amount below",
            |r| {
                r.wallet = "w-amt".into();
                r.amount = 9
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "amount above",
            |r| {
                r.wallet = "w-amt".into();
                r.amount = 21
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "address book after cool-down",
            |r| {
                r.wallet = "w-book".into();
                r.destination = "addr-ex".into()
            },
            "book",
            Kind::Allow,
        ),
        (
            "address book during cool-down",
            |r| {
                r.wallet = "w-book".into();
                r.destination = "addr-fresh".into()
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "address book unknown address",
            |r| {
                r.wallet = "w-book".into();
                r.destination = "addr-zzz".into()
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "any address book entry",
            |r| {
                r.wallet = "w-anybook".into();
                r.destination = "addr-ex".into()
            },
            "any-book",
            Kind::Allow,
        ),
        (
            "any address book, fresh",
            |r| {
                r.wallet = "w-anybook".into();
                r.destination = "addr-fresh".into()
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "fresh entry usable after cool-down",
            |r| {
                r.wallet = "w-book".into();
                r.destination = "addr-fresh".into();
                r.time = T + 3600
            },
            "book",
            Kind::Allow,
        ),
        (
            "allowlist deny rule",
            |r| {
                r.wallet = "w-allow".into();
                r.destination = "addr-bad".into()
            },
            "deny-bad",
            Kind::Deny,
        ),
        (
            "denylist excludes",
            |r| {
                r.wallet = "w-deny".into();
                r.destination = "addr-x".into()
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "denylist other address",
            |r| {
                r.wallet = "w-deny".into();
                r.destination = "addr-y".into()
            },
            "denylist",
            Kind::Allow,
        ),
        (
            "initiator matches",
            |r| {
                r.wallet = "w-none".into();
                r.initiator = "client-z".into()
            },
            "initiator",
            Kind::Allow,
        ),
        (
            "time inside (Mon 10:00)",
            |r| r.wallet = "w-time".into(),
            "time",
            Kind::Allow,
        ),
        (
            "time outside hours (Mon 18:00)",
            |r| {
                r.wallet = "w-time".into();
                r.time = T + 8 * 3600
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "time wrong day (Wed 10:00)",
            |r| {
                r.wallet = "w-time".into();
                r.time = T + 2 * 86400
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "time end is exclusive (17:00)",
            |r| {
                r.wallet = "w-time".into();
                r.time = T + 7 * 3600
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "window over midnight 23:00",
            |r| {
                r.wallet = "w-night".into();
                r.time = T + 13 * 3600
            },
            "night",
            Kind::Allow,
        ),
        (
            "window over midnight 05:59",
            |r| {
                r.wallet = "w-night".into();
                r.time = T + 19 * 3600 + 59 * 60
            },
            "night",
            Kind::Allow,
        ),
        (
            "window over midnight 10:00",
            |r| r.wallet = "w-night".into(),
            "deny-all",
            Kind::Deny,
        ),
        (
            "raw bytes on raw rule",
            |r| {
                r.wallet = "w-raw".into();
                r.payload = Payload::RawBytes { bytes: vec![1, 2] }
            },
            "raw",
            Kind::Allow,
        ),
        (
            "raw bytes skip non-raw allow",
            |r| {
                r.wallet = "w-allow".into();
                r.payload = Payload::RawBytes { bytes: vec![1] }
            },
            "deny-all",
            Kind::Deny,
        ),
        (
            "raw bytes still hit deny rule",
            |r| {
                r.wallet = "w-allow".into();
                r.destination = "addr-bad".into();
                r.payload = Payload::RawBytes { bytes: vec![1] }
            },
            "deny-bad",
            Kind::Deny,
        ),
        (
            "approvals AND needed",
            |r| r.wallet = "w-and".into(),
            "and",
            Kind::Need,
        ),
        (
            "approvals OR needed",
            |r| r.wallet = "w-or".into(),
            "or",
            Kind::Need,
        ),
        (
            "time lock",
            |r| r.wallet = "w-lock".into(),
            "lock",
            Kind::Locked,
        ),
    ];
    for (name, f, rule, expect) in cases {
        let mut r = req("w-allow");
        f(&mut r);
        let d = eval(&p, &r);
        assert_eq!(
            d.rule.as_ref().map(|x| x.name.as_str()),
            Some(rule),
            "{name}: {d:?}"
        );
        assert_eq!(kind(&d), expect, "{name}: {d:?}");
        assert_eq!(d.policy_version, 5);
    }
}

#[test]
fn approvals_and_or() {
    let p = base();
    // AND: g1 needs 2 of (1,2,3), g2 needs key 4. Initiator client-b so alice counts.
    let mut r = req("w-and");
    r.initiator = "client-b".into();
    let h = History::default();
    let d = eval_with(&p, &r, T, &[approve(1, &r, 5, 1), approve(2, &r, 5, 2)], &h);
    match &d.outcome {
        Outcome::NeedApprovals { missing, .. } => {
            assert_eq!(
                missing,
                &vec![MissingApprovals {
                    group: "g2".into(),
                    have: 0,
                    need: 1
                }]
            )
        }
        o => panic!("{o:?}"),
    }
    let all = [
        approve(1, &r, 5, 1),
        approve(2, &r, 5, 2),
        approve(4, &r, 5, 4),
    ];
    assert!(eval_with(&p, &r, T, &all, &h).is_allowed());
    // Same approver twice (different nonces) counts once.
    let dup = [
        approve(1, &r, 5, 1),
        approve(1, &r, 5, 9),
        approve(4, &r, 5, 4),
    ];
    assert_eq!(kind(&eval_with(&p, &r, T, &dup, &h)), Kind::Need);
    // OR: key 4 alone suffices.
    let mut r = req("w-or");
    r.initiator = "client-b".into();
    assert!(eval_with(&p, &r, T, &[approve(4, &r, 5, 4)], &h).is_allowed());
    // A rejection by a group member denies.
    let d = eval_with(&p, &r, T, &[approve(4, &r, 5, 4), reject(2, &r, 5, 2)], &h);
    assert_eq!(kind(&d), Kind::Deny);
}

#[test]
fn initiator_never_counts_as_own_approver() {
    let p = base();
    let r = req("w-or"); // initiator client-a == alice's client
    let d = eval_with(
        &p,
        &r,
        T,
        &[approve(1, &r, 5, 1), approve(2, &r, 5, 2)],
        &History::default(),
    );
    assert_eq!(kind(&d), Kind::Need);
    assert!(matches!(
        d.refused_approvals[0].error,
        ApprovalError::SignerIsInitiator { .. }
    ));
}

#[test]
fn approval_refusal_reasons() {
    let p = base();
    let r = req("w-and");
    let seen = BTreeSet::new();
    let ok = approve(2, &r, 5, 7);
    assert_eq!(verify_approval(&p, &r, &ok, T, &seen), Ok(()));
    // expired
    assert!(matches!(
        verify_approval(&p, &r, &ok, ok.expires_at, &seen),
        Err(ApprovalError::Expired { .. })
    ));
    // replayed
    let mut used = BTreeSet::new();
    used.insert(ok.nonce);
    assert!(matches!(
        verify_approval(&p, &r, &ok, T, &used),
        Err(ApprovalError::Replayed { .. })
    ));
    // forged: tamper with expiry after signing
    let mut forged = ok.clone();
    forged.expires_at += 1;
    assert_eq!(
        verify_approval(&p, &r, &forged, T, &seen),
        Err(ApprovalError::Forged)
    );
    let mut forged = ok.clone();
    forged.signature[0] ^= 1;
    assert_eq!(
        verify_approval(&p, &r, &forged, T, &seen),
        Err(ApprovalError::Forged)
    );
    // another request
    let other = req("w-or");
    assert!(matches!(
        verify_approval(&p, &other, &ok, T, &seen),
        Err(ApprovalError::WrongRequest { .. })
    ));
    // another policy version
    let v4 = approve(2, &r, 4, 8);
    assert_eq!(
        verify_approval(&p, &r, &v4, T, &seen),
        Err(ApprovalError::WrongPolicyVersion {
            expected: 5,
            got: 4
        })
    );
    // not a member
    let stranger = approve(9, &r, 5, 9);
    assert!(matches!(
        verify_approval(&p, &r, &stranger, T, &seen),
        Err(ApprovalError::NotAMember { .. })
    ));
    // signer is the initiator
    let own = approve(1, &r, 5, 1);
    assert!(matches!(
        verify_approval(&p, &r, &own, T, &seen),
        Err(ApprovalError::SignerIsInitiator { .. })
    ));
    // invalid key bytes
    let mut badkey = ok.clone();
    badkey.approver = [0xff; 32];
    assert!(verify_approval(&p, &r, &badkey, T, &seen).is_err());
}

#[test]
fn replay_within_batch_and_across_requests() {
    let p = base();
    let mut r = req("w-and");
    r.initiator = "client-b".into();
    // Two approvals with the same nonce from different approvers: one is refused as a replay.
    let batch = [
        approve(2, &r, 5, 3),
        approve(3, &r, 5, 3),
        approve(4, &r, 5, 4),
    ];
    let d = eval_with(&p, &r, T, &batch, &History::default());
    assert_eq!(kind(&d), Kind::Need);
    assert!(d
        .refused_approvals
        .iter()
        .any(|x| matches!(x.error, ApprovalError::Replayed { .. })));
    // Nonces consumed earlier are refused.
    let ok = [
        approve(2, &r, 5, 2),
        approve(3, &r, 5, 3),
        approve(4, &r, 5, 4),
    ];
    let mut seen = BTreeSet::new();
    seen.insert([3u8; 16]);
    let d = evaluate(
        &p,
        &r,
        &EvalContext {
            now: T,
            spent: &Spending::new(&p),
            exclude: None,
            approvals: &ok,
            seen_nonces: &seen,
        },
    );
    assert_eq!(kind(&d), Kind::Need);
}

#[test]
fn too_many_approvals_are_refused() {
    let p = base();
    let r = req("w-allow");
    let a = approve(2, &r, 5, 1);
    let many = vec![a; MAX_APPROVALS + 1];
    let d = eval_with(&p, &r, T, &many, &History::default());
    assert_eq!(kind(&d), Kind::Deny);
    assert_eq!(d.rule, None);
}

#[test]
fn time_lock_before_after_and_cancel() {
    let p = base();
    let r = req("w-lock");
    let h = History::default();
    assert_eq!(
        eval_with(&p, &r, T, &[], &h).outcome,
        Outcome::TimeLocked { until: T + 600 }
    );
    // signed early: still locked one second before the end
    assert_eq!(kind(&eval_with(&p, &r, T + 599, &[], &h)), Kind::Locked);
    assert!(eval_with(&p, &r, T + 600, &[], &h).is_allowed());
    // cancelled by an approver of the cancel group
    let d = eval_with(&p, &r, T + 600, &[reject(4, &r, 5, 4)], &h);
    assert!(matches!(&d.outcome, Outcome::Deny { reason } if reason.contains("cancelled")));
    // a rejection by a non-cancel-group approver does not cancel
    assert!(eval_with(&p, &r, T + 600, &[reject(2, &r, 5, 2)], &h).is_allowed());
}

#[test]
fn velocity_per_wallet_destination_initiator() {
    let p = base();
    // per destination: 100 per hour to the same destination, any initiator.
    let mut r = req("w-vel-dest");
    r.amount = 60;
    let h = History {
        entries: vec![entry(T - 100, "w-vel-dest", "addr-1", "x", 40)],
    };
    assert!(eval_with(&p, &r, T, &[], &h).is_allowed());
    let h = History {
        entries: vec![entry(T - 100, "w-vel-dest", "addr-1", "x", 41)],
    };
    assert_eq!(kind(&eval_with(&p, &r, T, &[], &h)), Kind::Deny);
    // other destinations, other assets and wallets outside the filter do not count
    let mut other_asset = entry(T - 100, "w-vel-dest", "addr-1", "x", 1000);
    other_asset.asset = "BTC".into();
    let h = History {
        entries: vec![
            entry(T - 100, "w-vel-dest", "addr-2", "x", 1000),
            entry(T - 100, "unfiltered", "addr-1", "x", 1000),
            other_asset,
        ],
    };
    assert!(eval_with(&p, &r, T, &[], &h).is_allowed());
    // the decision serializes (for the API / audit log)
    let d = eval_with(&p, &r, T, &[], &h);
    let Ok(json) = serde_json::to_string(&d) else {
        panic!()
    };
    assert!(json.contains("\"allow\""), "{json}");
    // outside the window it no longer counts
    let h = History {
        entries: vec![entry(T - 3600, "w", "addr-1", "x", 1000)],
    };
    assert!(eval_with(&p, &r, T, &[], &h).is_allowed());
    // per initiator: max 2 transfers per hour
    let r = req("w-vel-init");
    let one = History {
        entries: vec![entry(T - 10, "a", "b", "client-a", 1)],
    };
    assert!(eval_with(&p, &r, T, &[], &one).is_allowed());
    let two = History {
        entries: vec![
            entry(T - 10, "a", "b", "client-a", 1),
            entry(T - 20, "c", "d", "client-a", 1),
        ],
    };
    assert_eq!(kind(&eval_with(&p, &r, T, &[], &two)), Kind::Deny);
    // per wallet: amount and count
    let r = req("w-vel-wallet");
    let h = History {
        entries: vec![entry(T - 10, "w-vel-wallet", "z", "q", 96)],
    };
    assert_eq!(kind(&eval_with(&p, &r, T, &[], &h)), Kind::Deny);
    let h = History {
        entries: vec![
            entry(T - 10, "w-vel-wallet", "z", "q", 1),
            entry(T - 11, "w-vel-wallet", "z", "q", 1),
            entry(T - 12, "w-vel-wallet", "z", "q", 1),
        ],
    };
    assert_eq!(kind(&eval_with(&p, &r, T, &[], &h)), Kind::Deny);
}

fn err(toml: &str) -> PolicyError {
    match Policy::from_toml(toml) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e,
    }
}

const DENY_ALL: &str = "[[rules]]\nname = \"deny-all\"\naction = { kind = \"deny\" }\n";

#[test]
fn validation_errors() {
    // no catch-all deny
    let e = err("version = 1\n[[rules]]\nname = \"a\"\naction = { kind = \"allow\" }\n");
    assert!(matches!(e, PolicyError::NoCatchAllDeny { .. }), "{e}");
    let e = err(
        "version = 1\n[[rules]]\nname = \"a\"\nwallets = [\"w\"]\naction = { kind = \"deny\" }\n",
    );
    assert!(matches!(e, PolicyError::NoCatchAllDeny { .. }), "{e}");
    assert_eq!(err("version = 1\n"), PolicyError::NoRules);
    // unknown field, top level and nested
    let e = err(&format!("version = 1\ncolour = \"red\"\n{DENY_ALL}"));
    assert!(
        matches!(&e, PolicyError::Parse(m) if m.contains("colour")),
        "{e}"
    );
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\namount = {{ min = 1, maxx = 2 }}\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert!(
        matches!(&e, PolicyError::Parse(m) if m.contains("maxx")),
        "{e}"
    );
    // never-matching rules
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\namount = {{ min = 5, max = 2 }}\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert!(
        matches!(&e, PolicyError::RuleNeverMatches { rule, .. } if rule == "a"),
        "{e}"
    );
    let e = err(&format!(
        "version = 1\n{DENY_ALL}[[rules]]\nname = \"late\"\naction = {{ kind = \"deny\" }}\n"
    ));
    assert!(
        matches!(&e, PolicyError::RuleNeverMatches { rule, .. } if rule == "late"),
        "{e}"
    );
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\nwallets = []\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert!(matches!(e, PolicyError::RuleNeverMatches { .. }), "{e}");
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\ntime = {{ from = \"10:00\", to = \"10:00\" }}\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert!(matches!(e, PolicyError::RuleNeverMatches { .. }), "{e}");
    // group quorum larger than members
    let e = err(&format!(
        "version = 1\n[[groups]]\nname = \"g\"\nquorum = 3\nmembers = [{{ key = \"{}\" }}, {{ key = \"{}\" }}]\n{DENY_ALL}",
        pk(1),
        pk(2)
    ));
    assert_eq!(
        e,
        PolicyError::BadGroupQuorum {
            group: "g".into(),
            quorum: 3,
            members: 2
        }
    );
    // duplicate rule names
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"deny-all\"\nwallets = [\"w\"]\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert_eq!(e, PolicyError::DuplicateRuleName("deny-all".into()));
    // other checks
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\naction = {{ kind = \"require_approvals\", groups = [\"nope\"] }}\nwallets = [\"w\"]\n{DENY_ALL}"
    ));
    assert!(matches!(e, PolicyError::UnknownGroup { .. }), "{e}");
    let e = err(&format!(
        "version = 1\n[admins]\nkeys = [\"zz\"]\nquorum = 1\n{DENY_ALL}"
    ));
    assert!(matches!(e, PolicyError::BadKey { .. }), "{e}");
    let e = err(&format!(
        "version = 1\n[admins]\nkeys = [\"{}\"]\nquorum = 2\n{DENY_ALL}",
        pk(1)
    ));
    assert!(matches!(e, PolicyError::BadAdminQuorum { .. }), "{e}");
    let e = err(&format!(
        "version = 1\n[[rules]]\nname = \"a\"\ntime = {{ from = \"25:00\", to = \"10:00\" }}\naction = {{ kind = \"allow\" }}\n{DENY_ALL}"
    ));
    assert!(matches!(e, PolicyError::BadTimeOfDay { .. }), "{e}");
    let big = "#".repeat(MAX_DOCUMENT_BYTES + 1);
    assert!(matches!(err(&big), PolicyError::TooLarge { .. }));
}

#[test]
fn default_policy_refuses_raw_bytes() {
    let p = match default_policy() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let r = req("any");
    assert!(eval(&p, &r).is_allowed());
    let mut raw = req("any");
    raw.payload = Payload::RawBytes {
        bytes: vec![0xde, 0xad],
    };
    assert_eq!(kind(&eval(&p, &raw)), Kind::Deny);
    let mut cold = req("any");
    cold.tier = Tier::Cold;
    assert_eq!(kind(&eval(&p, &cold)), Kind::Deny);
    assert!(!p.document().rules.iter().any(|r| r.allow_raw));
}

#[test]
fn governance_requires_current_admin_quorum() {
    let p = base();
    let new_doc = base_toml().replacen("version = 5", "version = 6", 1);
    let one = SignedPolicy {
        document_toml: new_doc.clone(),
        signatures: vec![AdminSignature::sign(&key(1), &new_doc)],
    };
    assert_eq!(
        one.verify(&p),
        Err(GovernanceError::QuorumNotMet {
            valid: 1,
            quorum: 2
        })
    );
    // the same admin twice counts once; a non-admin does not count
    let dup = SignedPolicy {
        document_toml: new_doc.clone(),
        signatures: vec![
            AdminSignature::sign(&key(1), &new_doc),
            AdminSignature::sign(&key(1), &new_doc),
            AdminSignature::sign(&key(9), &new_doc),
        ],
    };
    assert!(matches!(
        dup.verify(&p),
        Err(GovernanceError::QuorumNotMet { valid: 1, .. })
    ));
    // signature over other bytes does not count
    let mut tampered = SignedPolicy {
        document_toml: new_doc.clone(),
        signatures: vec![
            AdminSignature::sign(&key(1), &new_doc),
            AdminSignature::sign(&key(2), &new_doc),
        ],
    };
    tampered.document_toml.push_str("\n# changed\n");
    assert!(matches!(
        tampered.verify(&p),
        Err(GovernanceError::QuorumNotMet { valid: 0, .. })
    ));
    let good = SignedPolicy {
        document_toml: new_doc.clone(),
        signatures: vec![
            AdminSignature::sign(&key(1), &new_doc),
            AdminSignature::sign(&key(3), &new_doc),
        ],
    };
    match good.verify(&p) {
        Ok(newp) => assert_eq!(newp.version(), 6),
        Err(e) => panic!("{e}"),
    }
    // version must increase
    let same = SignedPolicy {
        document_toml: base_toml(),
        signatures: vec![
            AdminSignature::sign(&key(1), &base_toml()),
            AdminSignature::sign(&key(2), &base_toml()),
        ],
    };
    assert!(matches!(
        same.verify(&p),
        Err(GovernanceError::VersionNotIncreasing { .. })
    ));
    // the new document must be valid
    let bad = "version = 9\n";
    let badsig = SignedPolicy {
        document_toml: bad.into(),
        signatures: vec![
            AdminSignature::sign(&key(1), bad),
            AdminSignature::sign(&key(2), bad),
        ],
    };
    assert!(matches!(
        badsig.verify(&p),
        Err(GovernanceError::Invalid(PolicyError::NoRules))
    ));
    // a policy without admins cannot be changed
    let Ok(dp) = default_policy() else { panic!() };
    assert_eq!(good.verify(&dp), Err(GovernanceError::NoAdmins));
    // serde round trip of the signed update
    let Ok(json) = serde_json::to_string(&good) else {
        panic!()
    };
    let Ok(back) = serde_json::from_str::<SignedPolicy>(&json) else {
        panic!()
    };
    assert_eq!(back, good);
}

#[test]
fn canonical_bytes_are_stable() {
    let r = req("w");
    let a = approve(2, &r, 5, 1);
    let bytes = a.signed_bytes();
    assert_eq!(bytes.len(), 92);
    assert!(bytes.starts_with(APPROVAL_DOMAIN));
    assert_eq!(&bytes[27..59], &r.canonical_hash());
    assert_eq!(bytes[67], 1);
    // every field changes the request hash
    let h = r.canonical_hash();
    let mut m = r.clone();
    m.amount += 1;
    assert_ne!(m.canonical_hash(), h);
    let mut m = r.clone();
    m.destination.push('x');
    assert_ne!(m.canonical_hash(), h);
    let mut m = r.clone();
    m.payload = Payload::RawBytes { bytes: vec![] };
    assert_ne!(m.canonical_hash(), h);
    // approval JSON round trip
    let Ok(json) = serde_json::to_string(&a) else {
        panic!()
    };
    let Ok(back) = serde_json::from_str::<Approval>(&json) else {
        panic!()
    };
    assert_eq!(back, a);
}

#[test]
fn describe_and_round_trip() {
    let p = base();
    let lines = describe(&p);
    assert_eq!(lines.len(), p.document().rules.len());
    assert!(lines[0].contains("deny"));
    assert!(lines
        .last()
        .is_some_and(|l| l.contains("every request") && l.contains("deny")));
    assert!(lines
        .iter()
        .any(|l| l.contains("require approvals from g1 (2 of 3) and g2 (1 of 1)")));
    let Ok(text) = p.to_toml() else { panic!() };
    let Ok(again) = Policy::from_toml(&text) else {
        panic!("{text}")
    };
    assert_eq!(again, p);
}

#[test]
fn empty_matchers_are_refused_with_a_fix() {
    for (matcher, body) in [("destination", "destination = {}"), ("time", "time = {}")] {
        let doc = format!(
            "version = 1\n[[rules]]\nname = \"x\"\n{body}\naction = {{ kind = \"allow\" }}\n\
             [[rules]]\nname = \"d\"\naction = {{ kind = \"deny\" }}\n"
        );
        let err = keyfold_policy::Policy::from_toml(&doc).unwrap_err();
        assert!(
            matches!(err, keyfold_policy::PolicyError::EmptyMatcher { matcher: m, .. } if m == matcher),
            "{err}"
        );
        assert!(
            err.to_string().contains("would match every request"),
            "{err}"
        );
    }
}

#[test]
fn describe_limits_names_groups_velocity_and_admins() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/hot-daily-limit.toml"
    ))
    .unwrap();
    let p = keyfold_policy::Policy::from_toml(&text).unwrap();
    let lines = keyfold_policy::describe_limits(&p);
    assert!(lines
        .iter()
        .any(|l| l.contains("velocity hot-1-daily-amount")
            && l.contains("at most 100000000 BTC")
            && l.contains("at most 50 transfers")));
    assert!(lines.iter().any(|l| l.starts_with("admins: none")));
}

#[test]
fn an_update_equal_to_the_policy_in_force_is_recognized() {
    let doc = "version = 3\n[[rules]]\nname = \"d\"\naction = { kind = \"deny\" }\n";
    let current = Policy::from_toml(doc).unwrap();
    let same = SignedPolicy {
        document_toml: doc.to_string(),
        signatures: Vec::new(),
    };
    assert!(same.is_in_force(&current));
    let newer = SignedPolicy {
        document_toml: doc.replace("version = 3", "version = 4"),
        signatures: Vec::new(),
    };
    assert!(!newer.is_in_force(&current));
    let broken = SignedPolicy {
        document_toml: "not toml".into(),
        signatures: Vec::new(),
    };
    assert!(!broken.is_in_force(&current));
}

#[test]
fn addresses_in_a_policy_have_their_canonical_spelling() {
    let doc = |addr: &str| {
        format!(
            r#"version = 1
[[rules]]
name = "sanctioned"
destination = {{ allow = ["{addr}"] }}
action = {{ kind = "deny" }}
[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}"#
        )
    };
    Policy::from_toml(&doc("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")).unwrap();
    // Lowercase hex: the same address, but requests carry the EIP-55 form,
    // so this list would never match: refused, naming the form to use.
    let e = Policy::from_toml(&doc("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        "{e}"
    );
    for bad in ["0xbad", "0xbad ", "dest\u{200b}"] {
        let e = Policy::from_toml(&doc(bad)).unwrap_err().to_string();
        assert!(
            e.contains("rule \"sanctioned\" destination.allow"),
            "{bad:?}: {e}"
        );
    }
}

/// A payout on `chain` with fee cap `fee_cap`.
fn chain_request(chain: &str, fee_cap: u128) -> keyfold_policy::Request {
    keyfold_policy::Request {
        id: "p-1".into(),
        wallet: "hot-1".into(),
        tier: keyfold_policy::Tier::Hot,
        asset: "ETH".into(),
        amount: 5,
        destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: 1_800_000_000,
        payload: keyfold_policy::Payload::ChainTransaction {
            chain: chain.into(),
            chain_id: Some(8453),
            token_contract: None,
            source: "0x2bD46Cc9319B54bBf111Ef0224803254a24Bb2B1".into(),
            fee_cap,
            tx: vec![2, 1, 2, 3],
        },
    }
}

fn chain_policy() -> keyfold_policy::Policy {
    keyfold_policy::Policy::from_toml(
        r#"version = 1
[[rules]]
name = "l2-payouts"
chains = ["base", "arbitrum"]
max_fee = "1000"
action = { kind = "allow" }

[[rules]]
name = "deny-all"
action = { kind = "deny" }
"#,
    )
    .unwrap()
}

fn decided_by(p: &keyfold_policy::Policy, r: &keyfold_policy::Request) -> String {
    let spent = keyfold_policy::Spending::from_history(p, &keyfold_policy::History::default());
    let d = keyfold_policy::evaluate(
        p,
        r,
        &keyfold_policy::EvalContext {
            now: r.time,
            spent: &spent,
            exclude: None,
            approvals: &[],
            seen_nonces: &Default::default(),
        },
    );
    d.rule.map(|r| r.name).unwrap_or_default()
}

#[test]
fn chain_and_fee_matchers_match_only_chain_transactions_within_the_cap() {
    let p = chain_policy();
    assert_eq!(decided_by(&p, &chain_request("base", 1000)), "l2-payouts");
    assert_eq!(decided_by(&p, &chain_request("arbitrum", 0)), "l2-payouts");
    assert_eq!(decided_by(&p, &chain_request("ethereum", 10)), "deny-all");
    assert_eq!(decided_by(&p, &chain_request("base", 1001)), "deny-all");
    let mut typed = chain_request("base", 1);
    typed.payload = keyfold_policy::Payload::TypedTransfer;
    assert_eq!(
        decided_by(&p, &typed),
        "deny-all",
        "not a chain transaction"
    );
}

#[test]
fn a_chain_transaction_s_fields_are_all_in_its_canonical_hash() {
    let base = chain_request("base", 1000);
    let h = base.canonical_hash();
    let mut variants = Vec::new();
    for f in 0..5 {
        let mut r = base.clone();
        if let keyfold_policy::Payload::ChainTransaction {
            chain,
            chain_id,
            token_contract,
            fee_cap,
            tx,
            ..
        } = &mut r.payload
        {
            match f {
                0 => *chain = "arbitrum".into(),
                1 => *chain_id = Some(42161),
                2 => *token_contract = Some("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913".into()),
                3 => *fee_cap += 1,
                _ => tx.push(0),
            }
        }
        variants.push(r.canonical_hash());
    }
    for v in &variants {
        assert_ne!(*v, h);
    }
    assert_eq!(
        base.signing_message(),
        vec![2, 1, 2, 3],
        "the transaction is what is signed"
    );
}
