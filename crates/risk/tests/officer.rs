//! Officers' signed reviews and two-person freeze lifts: who may sign, over
//! what, until when, and how many.

use ed25519_dalek::SigningKey;
use keyfold_policy::Policy;
use keyfold_risk::*;

const NOW: u64 = 1_800_000_000;
const NONCE: [u8; 16] = [7; 16];

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn pk_hex(i: u8) -> String {
    hex::encode(key(i).verifying_key().to_bytes())
}

/// Officers 1 and 2 in group `treasury`, 3 in group `risk`.
fn policy() -> Policy {
    let doc = format!(
        "version = 1\n\
         [[groups]]\nname = \"treasury\"\nquorum = 1\n\
         members = [{{ key = \"{}\", name = \"alice\" }}, {{ key = \"{}\", name = \"bob\" }}]\n\
         [[groups]]\nname = \"risk\"\nquorum = 1\nmembers = [{{ key = \"{}\", name = \"carol\" }}]\n\
         [[rules]]\nname = \"deny\"\naction = {{ kind = \"deny\" }}\n",
        pk_hex(1),
        pk_hex(2),
        pk_hex(3)
    );
    match Policy::from_toml(&doc) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn officers(group: Option<&str>) -> OfficerSet {
    match OfficerSet::from_policy(&policy(), group) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn officers_are_the_policy_approvers_of_the_named_group() {
    assert_eq!(officers(None).len(), 3);
    let t = officers(Some("treasury"));
    assert_eq!(t.len(), 2);
    assert_eq!(t.name(&key(1).verifying_key().to_bytes()), Some("alice"));
    assert_eq!(t.name(&key(3).verifying_key().to_bytes()), None);
    assert_eq!(
        OfficerSet::from_policy(&policy(), Some("nobody")),
        Err(OfficerError::UnknownGroup("nobody".into()))
    );
}

#[test]
fn a_signed_review_verifies_and_names_its_officer() {
    let r = SignedReview::sign(&key(1), "req-1", ReviewVerdict::Approve, NOW + 600, NONCE);
    assert_eq!(r.verify(&officers(None), "req-1", NOW), Ok("alice"));
}

#[test]
fn a_review_for_another_request_or_by_a_stranger_or_expired_is_refused() {
    let o = officers(Some("treasury"));
    let r = SignedReview::sign(&key(1), "req-1", ReviewVerdict::Approve, NOW + 600, NONCE);
    assert!(matches!(
        r.verify(&o, "req-2", NOW),
        Err(OfficerError::Mismatch {
            field: "request_id",
            ..
        })
    ));
    assert!(matches!(
        r.verify(&o, "req-1", NOW + 600),
        Err(OfficerError::Expired { .. })
    ));
    let long = SignedReview::sign(
        &key(1),
        "req-1",
        ReviewVerdict::Approve,
        NOW + MAX_ACT_VALIDITY_SECS + 1,
        NONCE,
    );
    assert!(matches!(
        long.verify(&o, "req-1", NOW),
        Err(OfficerError::Expired { .. })
    ));
    // Carol is an officer, but not of the treasury group.
    let carol = SignedReview::sign(&key(3), "req-1", ReviewVerdict::Approve, NOW + 600, NONCE);
    assert!(matches!(
        carol.verify(&o, "req-1", NOW),
        Err(OfficerError::NotAnOfficer(_))
    ));
}

#[test]
fn a_review_whose_verdict_was_changed_does_not_verify() {
    let mut r = SignedReview::sign(&key(1), "req-1", ReviewVerdict::Reject, NOW + 600, NONCE);
    r.verdict = ReviewVerdict::Approve;
    assert_eq!(
        r.verify(&officers(None), "req-1", NOW),
        Err(OfficerError::BadSignature("alice".into()))
    );
}

fn lift(signers: &[u8]) -> FreezeLift {
    let mut l = FreezeLift::new("frz-1", FreezeScope::Device, "dev-9", NOW + 600, NONCE);
    for i in signers {
        l.sign(&key(*i));
    }
    l
}

#[test]
fn two_officers_lift_a_freeze() {
    let names = lift(&[1, 3]).verify(&officers(None), "frz-1", FreezeScope::Device, "dev-9", NOW);
    assert_eq!(names, Ok(vec!["alice".to_string(), "carol".to_string()]));
}

#[test]
fn one_officer_cannot_lift_a_freeze_even_signing_twice() {
    for signers in [&[1u8][..], &[1, 1][..]] {
        assert_eq!(
            lift(signers).verify(&officers(None), "frz-1", FreezeScope::Device, "dev-9", NOW),
            Err(OfficerError::QuorumNotMet {
                valid: 1,
                needed: LIFT_QUORUM
            })
        );
    }
}

#[test]
fn a_lift_with_a_stranger_as_second_signer_is_refused_naming_it() {
    let r = lift(&[1, 9]).verify(&officers(None), "frz-1", FreezeScope::Device, "dev-9", NOW);
    assert!(matches!(r, Err(OfficerError::NotAnOfficer(_))), "{r:?}");
}

#[test]
fn a_lift_signed_for_another_freeze_subject_or_scope_is_refused() {
    let o = officers(None);
    let l = lift(&[1, 2]);
    assert!(matches!(
        l.verify(&o, "frz-2", FreezeScope::Device, "dev-9", NOW),
        Err(OfficerError::Mismatch {
            field: "freeze_id",
            ..
        })
    ));
    assert!(matches!(
        l.verify(&o, "frz-1", FreezeScope::Customer, "dev-9", NOW),
        Err(OfficerError::Mismatch { field: "scope", .. })
    ));
    // The subject changed after signing: the signatures no longer hold.
    let mut moved = lift(&[1, 2]);
    moved.subject = "dev-10".into();
    assert!(matches!(
        moved.verify(&o, "frz-1", FreezeScope::Device, "dev-10", NOW),
        Err(OfficerError::BadSignature(_))
    ));
}

#[test]
fn a_review_signature_is_not_a_lift_signature() {
    // The same officer key over the review domain never counts for a lift.
    let r = SignedReview::sign(&key(1), "frz-1", ReviewVerdict::Approve, NOW + 600, NONCE);
    let mut l = lift(&[2]);
    l.signatures.push(LiftSignature {
        officer: r.officer,
        signature: r.signature,
    });
    assert_eq!(
        l.verify(&officers(None), "frz-1", FreezeScope::Device, "dev-9", NOW),
        Err(OfficerError::BadSignature("alice".into()))
    );
}

#[test]
fn signed_acts_round_trip_through_json() {
    let l = lift(&[1, 2]);
    let json = match serde_json::to_string(&l) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    let back: FreezeLift = match serde_json::from_str(&json) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(back, l);
    assert!(json.contains("\"scope\":\"device\""));
}
