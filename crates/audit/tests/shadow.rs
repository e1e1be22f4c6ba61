//! The auditor's checks of policy versions installed in shadow: an install
//! signed by the admin quorum of the policy in force, above its version,
//! verifies, as do its removal and its end once a version at least its own
//! is in force; an install with too few admin signatures, a version not
//! above the one in force, a removal or end of a shadow that is not
//! installed, an early end, a wrong document hash or an unknown action is
//! refused.
mod common;

use common::{audit, ed_hex, Sim, ADMINS};
use keyfold_audit::{record, Event};
use keyfold_policy::Policy;
use sha2::{Digest, Sha256};

/// A small policy of `version` whose admins are [`ADMINS`] (2 of 3);
/// transfers up to `small_max` are allowed.
fn document(version: u64, small_max: u64) -> String {
    format!(
        r#"version = {version}

[admins]
keys = ["{a}", "{b}", "{c}"]
quorum = 2

[[rules]]
name = "small"
amount = {{ max = {small_max} }}
action = {{ kind = "allow" }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        a = ed_hex(ADMINS[0]),
        b = ed_hex(ADMINS[1]),
        c = ed_hex(ADMINS[2]),
    )
}

fn genesis() -> Event {
    let doc = document(1, 1000);
    let p = Policy::from_toml(&doc).unwrap();
    record::policy_document_event(&p, doc, None)
}

fn shadow(version: u64, small_max: u64, admins: &[u8], action: &str) -> Event {
    let doc = document(version, small_max);
    Event::PolicyShadow {
        version,
        document_hash: Sha256::digest(doc.as_bytes()).into(),
        update: (action == "installed")
            .then(|| serde_json::to_string(&Sim::signed_update(&doc, admins)).unwrap()),
        document: doc,
        action: action.into(),
    }
}

fn in_force(version: u64, small_max: u64) -> Event {
    let doc = document(version, small_max);
    let signed = Sim::signed_update(&doc, &ADMINS[..2]);
    let p = signed
        .verify(&Policy::from_toml(&document(1, 1000)).unwrap())
        .unwrap();
    record::policy_event(&p, Some(&signed))
}

fn refused(events: &[Event], needle: &str) {
    let e = audit(events).expect_err("the auditor must refuse this log");
    assert!(e.to_string().contains(needle), "{e}");
}

#[test]
fn a_shadow_installed_removed_replaced_and_ended_by_its_promotion_verifies() {
    let events = vec![
        genesis(),
        shadow(2, 10, &ADMINS[..2], "installed"),
        shadow(2, 10, &[], "removed"),
        shadow(3, 10, &ADMINS[1..], "installed"),
        // A replacement needs no removal first.
        shadow(4, 20, &ADMINS[..2], "installed"),
        in_force(4, 20),
        shadow(4, 20, &[], "ended"),
    ];
    let stats = audit(&events).unwrap();
    assert_eq!(stats.policy_shadows, 5);
    assert_eq!(stats.policies, 2);
}

#[test]
fn a_shadow_signed_by_too_few_admins_is_refused() {
    refused(
        &[genesis(), shadow(2, 10, &ADMINS[..1], "installed")],
        "only 1 valid admin signature",
    );
}

#[test]
fn a_shadow_not_above_the_version_in_force_is_refused() {
    refused(
        &[genesis(), shadow(1, 10, &ADMINS[..2], "installed")],
        "not greater than current version 1",
    );
}

#[test]
fn a_shadow_removed_or_ended_while_not_installed_is_refused() {
    refused(
        &[genesis(), shadow(2, 10, &[], "removed")],
        "no shadow is installed",
    );
    refused(
        &[
            genesis(),
            shadow(2, 10, &ADMINS[..2], "installed"),
            shadow(3, 10, &[], "removed"),
        ],
        "the installed shadow is version 2",
    );
    refused(
        &[
            genesis(),
            shadow(2, 10, &ADMINS[..2], "installed"),
            shadow(2, 99, &[], "removed"),
        ],
        "has another document",
    );
}

#[test]
fn a_shadow_ended_before_a_version_at_least_its_own_is_in_force_is_refused() {
    refused(
        &[
            genesis(),
            shadow(3, 10, &ADMINS[..2], "installed"),
            in_force(2, 10),
            shadow(3, 10, &[], "ended"),
        ],
        "ended while version 2 is in force",
    );
}

#[test]
fn a_malformed_shadow_event_is_refused() {
    let mut wrong_hash = shadow(2, 10, &ADMINS[..2], "installed");
    if let Event::PolicyShadow { document_hash, .. } = &mut wrong_hash {
        document_hash[0] ^= 1;
    }
    refused(&[genesis(), wrong_hash], "document_hash");
    let mut bare = shadow(2, 10, &ADMINS[..2], "installed");
    if let Event::PolicyShadow { update, .. } = &mut bare {
        *update = None;
    }
    refused(&[genesis(), bare], "without its signed update");
    refused(
        &[genesis(), shadow(2, 10, &ADMINS[..2], "promoted")],
        "is not \"installed\"",
    );
    // A shadow before any policy is in force.
    refused(
        &[shadow(2, 10, &ADMINS[..2], "installed")],
        "no policy version is in force",
    );
}

/// Writes `events` as an export (the layout of `keyfold audit export`) and
/// runs the independent Python verifier on it: `None` without python3,
/// else whether it passed and what it printed.
fn independent(events: &[Event]) -> Option<(bool, String)> {
    use keyfold_audit::{bundle, CheckpointSigner};
    let x = common::build("coordinator", events.to_vec(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("coordinator");
    std::fs::create_dir_all(&log_dir).unwrap();
    let keys = std::collections::BTreeMap::from([(
        "coordinator".to_string(),
        hex::encode(common::signer().public_key()),
    )]);
    std::fs::write(
        dir.path().join(bundle::KEYS_FILE),
        serde_json::to_string_pretty(&keys).unwrap(),
    )
    .unwrap();
    std::fs::write(log_dir.join("entries.jsonl"), x.bytes()).unwrap();
    std::fs::write(log_dir.join("checkpoints.jsonl"), x.checkpoint_bytes()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/independent_verify.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .output()
        .ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn the_independent_verifier_agrees_on_shadow_events() {
    let good = vec![
        genesis(),
        shadow(2, 10, &ADMINS[..2], "installed"),
        shadow(2, 10, &[], "removed"),
        shadow(4, 20, &ADMINS[1..], "installed"),
        in_force(4, 20),
        shadow(4, 20, &[], "ended"),
    ];
    let Some((ok, text)) = independent(&good) else {
        eprintln!("python3 is missing: the independent verifier was not run");
        return;
    };
    assert!(ok, "{text}");
    assert!(text.contains("'policy shadows': 4"), "{text}");
    for (events, why) in [
        (
            vec![genesis(), shadow(2, 10, &ADMINS[..1], "installed")],
            "1 of 2 admin signatures",
        ),
        (
            vec![genesis(), shadow(1, 10, &ADMINS[..2], "installed")],
            "version does not increase",
        ),
        (
            vec![genesis(), shadow(2, 10, &[], "removed")],
            "no shadow is installed",
        ),
        (
            vec![
                genesis(),
                shadow(3, 10, &ADMINS[..2], "installed"),
                in_force(2, 10),
                shadow(3, 10, &[], "ended"),
            ],
            "ended before a version at least its own",
        ),
    ] {
        let (ok, text) = independent(&events).unwrap();
        assert!(!ok && text.contains(why), "expected {why:?}: {text}");
    }
}
