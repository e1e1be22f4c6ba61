//! Signed trees: quorum of the policy's admins, own domain, increasing versions.
mod common;

use common::*;
use ed25519_dalek::SigningKey;
use keyfold_policy::{AdminSignature, Policy};
use keyfold_risk::*;

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn pk(i: u8) -> [u8; 32] {
    key(i).verifying_key().to_bytes()
}

/// Admins 1, 2, 3 with quorum 2.
fn admins() -> AdminSet {
    match AdminSet::new(&[pk(1), pk(2), pk(3)], 2) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

fn tree_toml(version: u64) -> String {
    format!("version = {version}\n[[rules]]\nname = \"r\"\nwhen = {{ first_device = true }}\nscore = 10\n{THRESHOLDS}")
}

fn signed(version: u64, signers: &[u8]) -> SignedTree {
    let text = tree_toml(version);
    SignedTree {
        signatures: signers
            .iter()
            .map(|i| TreeSignature::sign(&key(*i), &text))
            .collect(),
        tree_toml: text,
    }
}

#[test]
fn quorum_of_admins_is_accepted() {
    let t = signed(2, &[1, 3]).verify(&admins(), None);
    assert_eq!(t.map(|t| t.version()), Ok(2));
}

#[test]
fn fewer_than_the_quorum_is_refused() {
    assert_eq!(
        signed(2, &[1]).verify(&admins(), None).err(),
        Some(GovernanceError::QuorumNotMet {
            valid: 1,
            quorum: 2
        })
    );
    // The same admin twice is one admin.
    assert_eq!(
        signed(2, &[1, 1]).verify(&admins(), None).err(),
        Some(GovernanceError::QuorumNotMet {
            valid: 1,
            quorum: 2
        })
    );
    // A non-admin does not count.
    assert_eq!(
        signed(2, &[1, 9]).verify(&admins(), None).err(),
        Some(GovernanceError::QuorumNotMet {
            valid: 1,
            quorum: 2
        })
    );
}

#[test]
fn signature_over_other_bytes_is_refused() {
    let mut s = signed(2, &[1, 2]);
    s.tree_toml.push('\n');
    assert!(matches!(
        s.verify(&admins(), None),
        Err(GovernanceError::QuorumNotMet { valid: 0, .. })
    ));
}

#[test]
fn policy_signature_is_not_accepted_on_a_tree() {
    let text = tree_toml(2);
    let replayed: Vec<TreeSignature> = [1u8, 2]
        .iter()
        .map(|i| {
            let p = AdminSignature::sign(&key(*i), &text);
            TreeSignature {
                key: p.key,
                signature: p.signature,
            }
        })
        .collect();
    let s = SignedTree {
        tree_toml: text,
        signatures: replayed,
    };
    assert_eq!(
        s.verify(&admins(), None).err(),
        Some(GovernanceError::QuorumNotMet {
            valid: 0,
            quorum: 2
        })
    );
    assert_ne!(
        tree_update_bytes("x"),
        keyfold_policy::policy_update_bytes("x")
    );
}

#[test]
fn version_must_increase() {
    let current = match signed(3, &[1, 2]).verify(&admins(), None) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    for v in [2, 3] {
        assert_eq!(
            signed(v, &[1, 2]).verify(&admins(), Some(&current)).err(),
            Some(GovernanceError::VersionNotIncreasing { current: 3, new: v })
        );
    }
    assert!(signed(4, &[1, 2]).verify(&admins(), Some(&current)).is_ok());
}

#[test]
fn invalid_tree_is_refused_even_when_signed() {
    let text = "version = 1\n".to_string();
    let s = SignedTree {
        signatures: vec![
            TreeSignature::sign(&key(1), &text),
            TreeSignature::sign(&key(2), &text),
        ],
        tree_toml: text,
    };
    assert!(matches!(
        s.verify(&admins(), None),
        Err(GovernanceError::Invalid(TreeError::Parse(_)))
    ));
}

#[test]
fn admin_set_comes_from_the_policy_in_force() {
    let policy = format!(
        "version = 1\n[admins]\nkeys = [\"{}\", \"{}\"]\nquorum = 2\n[[rules]]\nname = \"deny\"\naction = {{ kind = \"deny\" }}\n",
        hex::encode(pk(1)),
        hex::encode(pk(2))
    );
    let policy = match Policy::from_toml(&policy) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let set = match AdminSet::from_policy(&policy) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(set.quorum(), 2);
    assert!(signed(2, &[1, 2]).verify(&set, None).is_ok());
    assert!(signed(2, &[1, 3]).verify(&set, None).is_err());
    let no_admins = match Policy::from_toml(
        "version = 1\n[[rules]]\nname = \"deny\"\naction = { kind = \"deny\" }\n",
    ) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        AdminSet::from_policy(&no_admins).err(),
        Some(GovernanceError::NoAdmins)
    );
}

#[test]
fn bad_admin_sets_are_refused() {
    assert_eq!(
        AdminSet::new(&[pk(1)], 0).err(),
        Some(GovernanceError::BadAdminSet { quorum: 0, keys: 1 })
    );
    assert_eq!(
        AdminSet::new(&[pk(1), pk(1)], 2).err(),
        Some(GovernanceError::BadAdminSet { quorum: 2, keys: 1 })
    );
}

#[test]
fn signature_json_round_trips() {
    let s = TreeSignature::sign(&key(1), "x");
    let j = serde_json::to_string(&s).unwrap_or_default();
    assert_eq!(serde_json::from_str::<TreeSignature>(&j).ok(), Some(s));
    assert!(serde_json::from_str::<TreeSignature>(r#"{"key":"00","signature":"00"}"#).is_err());
}

#[test]
fn too_many_signatures_are_refused_before_any_is_checked() {
    let mut t = signed(2, &[1, 2]);
    let extra = t.signatures[0].clone();
    t.signatures
        .extend(std::iter::repeat_n(extra, MAX_TREE_SIGNATURES));
    assert_eq!(
        t.verify(&admins(), None).err(),
        Some(GovernanceError::TooManySignatures {
            count: MAX_TREE_SIGNATURES + 2,
            max: MAX_TREE_SIGNATURES
        })
    );
}
