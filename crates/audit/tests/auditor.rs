//! The auditor's semantic checks ([`keyfold_audit::Auditor`]) on logs built
//! the way the coordinator builds them: a real policy (`keyfold_policy`),
//! approvals signed with Ed25519 keys, ECDSA signatures by `k256` (an HD
//! child derived with `bip32`), Ed25519 signatures by `ed25519-dalek`, events
//! recorded with `keyfold_audit::record` and chained by `Log::append`.
//!
//! Every lie below is written by the coordinator itself and chained and
//! checkpointed honestly, so the log's integrity is intact: only the
//! re-checking of what the entries say can catch it, and it must name the
//! lying entry.

mod common;

use common::*;
use keyfold_audit::{record, EntryError, Event, HexBytes, SigningMode, VerifyError};
use keyfold_policy::{Approval, ApprovalDecision, Decision, Outcome, Payload, SignedPolicy};
use sha2::{Digest, Sha256};

/// Asserts that the auditor refuses entry `index` (and nothing before it),
/// with a reason mentioning `why`.
#[track_caller]
fn rejected(events: &[Event], index: usize, why: &str) {
    match audit(events) {
        Err(VerifyError::BadEntry {
            index: i,
            reason: EntryError::Rejected(msg),
        }) => {
            assert_eq!(
                i, index as u64,
                "entry {i} was refused ({msg}), expected entry {index}"
            );
            assert!(
                msg.contains(why),
                "entry {index} refused for {msg:?}, expected a reason mentioning {why:?}"
            );
        }
        other => panic!("expected entry {index} to be refused ({why}), got {other:?}"),
    }
}

fn allow(honest: Decision) -> Decision {
    Decision {
        outcome: Outcome::Allow,
        ..honest
    }
}

/// Two treasury approvals by Alice and Bob on a large withdrawal of 0.2 BTC
/// from the root key, signed: the approvals are returned for replays.
fn approved_large(s: &mut Sim, id: &str, time: u64) -> [Approval; 2] {
    s.request(HOT_BTC, btc(id, HOT_BTC, 20_000_000, time));
    s.decide(id, time + 1);
    let a = s.approval(id, ALICE, ApprovalDecision::Approve);
    let b = s.approval(id, BOB, ApprovalDecision::Approve);
    s.add_approval(id, a.clone());
    s.add_approval(id, b.clone());
    let (_, d) = s.decide(id, time + 60);
    assert!(d.is_allowed(), "{:?}", d.outcome);
    s.default_session(id);
    s.sign(id);
    [a, b]
}

// ---------------------------------------------------------------------------
// Honest logs.

/// A day of an honest coordinator touching every rule kind and every check.
fn honest_day() -> Sim {
    let mut s = Sim::new(BTC_DAILY);
    // Small BTC from the root key: allowed outright, presignature.
    s.allowed_transfer(HOT_BTC, btc("small", HOT_BTC, 5_000_000, T0), T0 + 1);
    // Large BTC from an HD child: 2 of 3 treasury officers, full signing
    // with the child key (the auditor re-derives it from the chain code).
    s.approved_transfer(
        HOT_BTC,
        btc("child", "hot-btc/m/0/7", 20_000_000, T0 + 100),
        &[ALICE, CAROL],
        T0 + 101,
    );
    // A SOL payout to an address-book entry: Ed25519.
    s.allowed_transfer(HOT_SOL, sol("payout", 5_000_000_000, T0 + 200), T0 + 201);
    // A large SOL transfer: treasury OR security; the security officer alone.
    s.approved_transfer(
        HOT_SOL,
        sol("sol-large", 2_000_000_000_000, T0 + 300),
        &[DAVE],
        T0 + 301,
    );
    // A raw message from `hot-sol`, approved by security, signed as is.
    let mut raw = sol("raw", 0, T0 + 400);
    raw.initiator = "ops-signing".into();
    raw.payload = Payload::RawBytes {
        bytes: b"login challenge 8f2c".to_vec(),
    };
    s.approved_transfer(HOT_SOL, raw, &[DAVE], T0 + 401);
    // Denied: a sanctioned destination, a raw message from the BTC key
    // (no rule allows it), and a request in the night freeze (02:30 UTC).
    let mut sanctioned = btc("sanctioned", HOT_BTC, 1_000, T0 + 500);
    sanctioned.destination = "bc1q-sanctioned".into();
    let mut raw_btc = btc("raw-btc", HOT_BTC, 0, T0 + 600);
    raw_btc.payload = Payload::RawBytes {
        bytes: vec![0xde; 32],
    };
    let night = btc("night", HOT_BTC, 1_000, T0 + 15_400);
    for r in [sanctioned, raw_btc, night] {
        let (id, time) = (r.id.clone(), r.time);
        s.request(HOT_BTC, r);
        let (_, d) = s.decide(&id, time + 1);
        assert!(matches!(d.outcome, Outcome::Deny { .. }), "{id}");
    }
    // After the night freeze (02:00-04:00 UTC, T0 + 13_600 .. T0 + 20_800):
    // an aborted session (a signer blamed), retried with the third signer.
    s.request(HOT_BTC, btc("retry", HOT_BTC, 1_000_000, T0 + 21_000));
    s.decide("retry", T0 + 21_001);
    s.session("retry", &["s1", "s2"], SigningMode::Presignature);
    s.abort("retry", Some("s2"), "invalid partial signature");
    s.session("retry", &["s1", "s3"], SigningMode::Presignature);
    s.sign("retry");
    // An allowed request that ends without a signature.
    s.request(HOT_BTC, btc("gave-up", HOT_BTC, 2_000_000, T0 + 22_000));
    s.decide("gave-up", T0 + 22_001);
    s.fail("gave-up", "no live quorum");
    // A policy update by 2 of 3 admins; approvals then name version 2.
    s.update(&policy_toml(2, 2 * BTC_DAILY), &[ADMINS[0], ADMINS[2]]);
    s.approved_transfer(
        HOT_BTC,
        btc("after-update", "hot-btc/m/1", 30_000_000, T0 + 23_000),
        &[BOB, CAROL],
        T0 + 23_001,
    );
    // A cold withdrawal: time-locked for a day, then signed in the HSM.
    s.request(COLD_BTC, btc("cold", COLD_BTC, 300_000_000, T0 + 24_000));
    let (_, d) = s.decide("cold", T0 + 24_001);
    assert_eq!(
        d.outcome,
        Outcome::TimeLocked {
            until: T0 + 24_000 + DAY
        }
    );
    let (_, d) = s.decide("cold", T0 + 24_000 + DAY);
    assert!(d.is_allowed());
    s.default_session("cold");
    s.sign("cold");
    s
}

#[test]
fn an_honest_log_passes_every_check() {
    let s = honest_day();
    let stats = audit(&s.events).unwrap();
    assert_eq!(stats.policies, 2);
    assert_eq!(stats.keys, 3);
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.approvals, 6);
    // 4 requests decided twice for approvals, the cold one twice for its
    // time lock, 7 once.
    assert_eq!(stats.decisions, 17);
    assert_eq!(stats.denied, 3);
    assert_eq!(stats.signatures, 8);
    assert_eq!(stats.aborted, 1);
    assert_eq!(stats.contributions, 0);
}

#[test]
fn the_sample_log_of_the_other_tests_is_honest() {
    let stats = audit(&sample_events()).unwrap();
    assert_eq!(
        (stats.requests, stats.approvals, stats.signatures),
        (3, 2, 1)
    );
    assert_eq!(stats.contributions, 1);
}

#[test]
fn an_hd_child_signature_is_checked_against_the_derived_key() {
    // The child key the test signs with comes from bip32's private
    // derivation; the auditor derives the public child from the recorded
    // root key and chain code. Signing with the root key instead fails.
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", "hot-btc/m/0/7", 1_000, T0));
    s.decide("r1", T0 + 1);
    s.default_session("r1");
    let good = s.signature_event("r1");
    let message = s.typed("r1").signing_message();
    let root = btc_key(&[]);
    let by_root = Event::Signature {
        request_id: "r1".into(),
        key_id: HOT_BTC.into(),
        public_key: HexBytes(sec1(&root)),
        signature: HexBytes(ecdsa_sig(&root, &message)),
    };
    let mut claims_child = by_root.clone();
    if let (
        Event::Signature { public_key, .. },
        Event::Signature {
            public_key: child, ..
        },
    ) = (&mut claims_child, &good)
    {
        *public_key = child.clone();
    }
    let mut ok = s.events.clone();
    ok.push(good);
    audit(&ok).unwrap();
    let at = s.push(by_root);
    rejected(&s.events, at, "not the wallet key");
    s.events[at] = claims_child;
    rejected(&s.events, at, "does not verify");
}

// ---------------------------------------------------------------------------
// Lying decisions.

#[test]
fn a_decision_flipped_from_need_approvals_to_allow_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 20_000_000, T0));
    let honest = s.evaluate("r1", T0 + 1);
    assert!(matches!(honest.outcome, Outcome::NeedApprovals { .. }));
    let at = s.record_decision("r1", T0 + 1, &allow(honest));
    s.default_session("r1");
    s.sign("r1");
    rejected(
        &s.events,
        at,
        "re-evaluating the policy gives NeedApprovals",
    );
}

#[test]
fn an_allow_one_approval_short_or_counting_an_outsider_is_refused() {
    for second in [None, Some(MALLORY)] {
        let mut s = Sim::new(BTC_DAILY);
        s.request(HOT_BTC, btc("r1", HOT_BTC, 20_000_000, T0));
        s.decide("r1", T0 + 1);
        s.approve("r1", ALICE);
        if let Some(outsider) = second {
            // A valid signature by a key in no approver group: recorded,
            // but the policy does not count it.
            s.approve("r1", outsider);
        }
        let honest = s.evaluate("r1", T0 + 60);
        assert!(matches!(honest.outcome, Outcome::NeedApprovals { .. }));
        let at = s.record_decision("r1", T0 + 60, &allow(honest));
        s.default_session("r1");
        s.sign("r1");
        rejected(&s.events, at, "re-evaluating");
    }
}

#[test]
fn an_allow_beyond_the_velocity_limit_is_refused() {
    // 5 x 0.1 BTC fill the 0.5 BTC daily limit of `hot-btc`, spread over the
    // root key and HD children (which count with their key).
    let mut s = Sim::new(BTC_DAILY);
    for i in 0..5u64 {
        let wallet = if i % 2 == 0 {
            HOT_BTC.to_string()
        } else {
            format!("hot-btc/m/0/{i}")
        };
        let id = format!("r{i}");
        s.allowed_transfer(
            HOT_BTC,
            btc(&id, &wallet, SMALL_BTC_MAX, T0 + i * 60),
            T0 + i * 60 + 1,
        );
    }
    s.request(HOT_BTC, btc("r5", "hot-btc/m/9", SMALL_BTC_MAX, T0 + 600));
    let honest = s.evaluate("r5", T0 + 601);
    assert!(
        matches!(&honest.outcome, Outcome::Deny { reason } if reason.contains("velocity")),
        "{:?}",
        honest.outcome
    );
    let at = s.record_decision("r5", T0 + 601, &allow(honest));
    s.default_session("r5");
    s.sign("r5");
    rejected(&s.events, at, "re-evaluating the policy gives Deny");

    // A day later the window has moved on and the same allow is honest.
    s.events.truncate(at);
    let (_, d) = s.decide("r5", T0 + 601 + DAY);
    assert!(d.is_allowed(), "{:?}", d.outcome);
    s.default_session("r5");
    s.sign("r5");
    audit(&s.events).unwrap();
}

#[test]
fn a_policy_update_that_changes_the_window_recounts_every_spend() {
    // 5 x 0.1 BTC fill the daily limit; version 2 counts per hour instead
    // (the auditor's aggregates are rebuilt and drop the old transfers from
    // the window), so 0.1 BTC two hours later is honest; version 3 is daily
    // again: the aggregates are rebuilt from every spend, and the five
    // transfers count again.
    let mut s = Sim::new(BTC_DAILY);
    for i in 0..5u64 {
        let id = format!("r{i}");
        s.allowed_transfer(
            HOT_BTC,
            btc(&id, HOT_BTC, SMALL_BTC_MAX, T0 + i * 60),
            T0 + i * 60 + 1,
        );
    }
    let hourly = policy_toml(2, BTC_DAILY).replace("window_secs = 86400", "window_secs = 3600");
    assert_ne!(hourly, policy_toml(2, BTC_DAILY));
    s.update(&hourly, &ADMINS[..2]);
    s.allowed_transfer(
        HOT_BTC,
        btc("r5", HOT_BTC, SMALL_BTC_MAX, T0 + 7_200),
        T0 + 7_201,
    );
    s.update(&policy_toml(3, BTC_DAILY), &ADMINS[..2]);
    s.request(HOT_BTC, btc("r6", HOT_BTC, SMALL_BTC_MAX, T0 + 7_800));
    let honest = s.evaluate("r6", T0 + 7_801);
    assert!(
        matches!(&honest.outcome, Outcome::Deny { reason } if reason.contains("velocity")),
        "{:?}",
        honest.outcome
    );
    let mut lie = s.events.clone();
    let at = s.record_decision("r6", T0 + 7_801, &honest);
    audit(&s.events).unwrap();
    lie.push(record::decision_event("r6", T0 + 7_801, &allow(honest)));
    rejected(&lie, at, "re-evaluating the policy gives Deny");
}

#[test]
fn a_time_locked_withdrawal_allowed_early_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(COLD_BTC, btc("cold", COLD_BTC, 300_000_000, T0));
    let honest = s.evaluate("cold", T0 + 10);
    assert!(matches!(honest.outcome, Outcome::TimeLocked { .. }));
    let at = s.record_decision("cold", T0 + 10, &allow(honest));
    s.default_session("cold");
    s.sign("cold");
    rejected(&s.events, at, "TimeLock");
}

#[test]
fn a_decision_under_a_superseded_policy_version_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
    let honest = s.evaluate("r1", T0 + 1);
    s.update(&policy_toml(2, BTC_DAILY), &ADMINS[..2]);
    let at = s.record_decision("r1", T0 + 1, &honest);
    rejected(&s.events, at, "version 2 was in force");
}

// ---------------------------------------------------------------------------
// Approvals.

#[test]
fn a_forged_approval_signature_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 20_000_000, T0));
    s.decide("r1", T0 + 1);
    s.approve("r1", ALICE);
    // A flipped signature bit.
    let mut forged = s.approval("r1", BOB, ApprovalDecision::Approve);
    forged.signature[17] ^= 0x01;
    let at = s.add_approval("r1", forged);
    rejected(&s.events, at, "does not verify");
    // Signed by Mallory, claiming to be Bob.
    let mut claimed = s.approval("r1", MALLORY, ApprovalDecision::Approve);
    claimed.approver = ed(BOB).verifying_key().to_bytes();
    s.events[at] = record::approval_event("r1", &claimed);
    rejected(&s.events, at, "does not verify");
}

#[test]
fn an_approval_replayed_on_another_request_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    let [alice, _] = approved_large(&mut s, "r1", T0);
    s.request(HOT_BTC, btc("r2", HOT_BTC, 20_000_000, T0 + 100));
    s.decide("r2", T0 + 101);
    let at = s.add_approval("r2", alice.clone());
    rejected(&s.events, at, "signs another request than r2");

    // Re-signed for r2 but with the nonce already consumed by r1.
    let r2 = s.typed("r2").clone();
    let reused = Approval::sign(
        &ed(ALICE),
        r2.canonical_hash(),
        1,
        ApprovalDecision::Approve,
        r2.time + DAY,
        alice.nonce,
    );
    s.events[at] = record::approval_event("r2", &reused);
    rejected(&s.events, at, "was used for request r1");

    // The same approval recorded twice for its own request.
    s.events.truncate(at);
    let at = s.push(record::approval_event("r1", &alice));
    rejected(&s.events, at, "recorded twice");
}

// ---------------------------------------------------------------------------
// Sessions and signatures.

#[test]
fn a_signature_over_another_message_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.allowed_transfer(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0), T0 + 1);
    s.allowed_transfer(HOT_SOL, sol("p1", 1_000, T0 + 2), T0 + 3);
    for (key, request, other) in [
        (HOT_BTC, btc("r2", HOT_BTC, 2_000, T0 + 10), "r1"), // ECDSA
        (HOT_SOL, sol("p2", 2_000, T0 + 10), "p1"),          // Ed25519
    ] {
        let id = request.id.clone();
        s.request(key, request);
        s.decide(&id, T0 + 11);
        s.default_session(&id);
        // The wallet key over r1's (p1's) message, filed under r2 (p2).
        let message = s.typed(other).signing_message();
        let (public_key, signature) = s.sign_message(&id, &message);
        let at = s.push(Event::Signature {
            request_id: id.clone(),
            key_id: key.into(),
            public_key: HexBytes(public_key),
            signature: HexBytes(signature),
        });
        rejected(&s.events, at, "does not verify under the wallet key");
        // The signature over its own message is accepted in its place.
        s.events.pop();
        s.sign(&id);
        audit(&s.events).unwrap();
    }
}

#[test]
fn a_signature_under_another_key_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
    s.decide("r1", T0 + 1);
    s.default_session("r1");
    let message = s.typed("r1").signing_message();
    let wallet = sec1(&btc_key(&[]));
    let other = cold_key();
    let sig = |public_key: Vec<u8>| Event::Signature {
        request_id: "r1".into(),
        key_id: HOT_BTC.into(),
        public_key: HexBytes(public_key),
        signature: HexBytes(ecdsa_sig(&other, &message)),
    };
    // Filed under the wallet key: the signature does not verify.
    let at = s.push(sig(wallet));
    rejected(&s.events, at, "does not verify");
    // Filed under the key that made it: not the wallet's key.
    s.events[at] = sig(sec1(&other));
    rejected(&s.events, at, "not the wallet key");

    // Ed25519: a signature by another key, filed under the wallet key.
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_SOL, sol("p1", 1_000, T0));
    s.decide("p1", T0 + 1);
    s.default_session("p1");
    let message = s.typed("p1").signing_message();
    let at = s.push(Event::Signature {
        request_id: "p1".into(),
        key_id: HOT_SOL.into(),
        public_key: HexBytes(sol_key().verifying_key().to_bytes().to_vec()),
        signature: HexBytes(
            ed25519_dalek::Signer::sign(&ed(MALLORY), &message)
                .to_bytes()
                .to_vec(),
        ),
    });
    rejected(&s.events, at, "does not verify");
}

#[test]
fn a_high_s_ecdsa_signature_is_refused() {
    // (r, n - s) verifies as ECDSA but is the malleated twin of the signature
    // the system produces; the log accepts only the low-S form.
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
    s.decide("r1", T0 + 1);
    s.default_session("r1");
    let mut ev = s.signature_event("r1");
    if let Event::Signature { signature, .. } = &mut ev {
        let sig = k256::ecdsa::Signature::from_slice(&signature.0).unwrap();
        let (r, low_s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -low_s).unwrap();
        assert!(high.normalize_s().is_some(), "the twin is high-S");
        signature.0 = high.to_bytes().to_vec();
    }
    let at = s.push(ev);
    rejected(&s.events, at, "low-S");
}

#[test]
fn signing_a_denied_request_is_refused() {
    let mut s = Sim::new(BTC_DAILY);
    let mut r = btc("r1", HOT_BTC, 1_000, T0);
    r.destination = "bc1q-sanctioned".into();
    s.request(HOT_BTC, r);
    let (_, d) = s.decide("r1", T0 + 1);
    assert!(matches!(d.outcome, Outcome::Deny { .. }));
    let before = s.events.clone();
    // A session for it ...
    let at = s.default_session("r1");
    rejected(&s.events, at, "which no decision allowed");
    // ... or a signature straight away.
    s.events = before;
    let at = s.sign("r1");
    rejected(&s.events, at, "which no decision allowed");
}

#[test]
fn a_signature_needs_a_session_and_is_recorded_once() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
    s.decide("r1", T0 + 1);
    let at = s.sign("r1");
    rejected(&s.events, at, "without a signing session");
    s.events.pop();
    s.default_session("r1");
    s.sign("r1");
    let at = s.sign("r1");
    rejected(&s.events, at, "already signed");
}

#[test]
fn a_session_outside_the_key_holders_or_below_threshold_is_refused() {
    for (signers, mode, why) in [
        (
            &["s1", "s9"][..],
            SigningMode::Presignature,
            "signer s9 holds no share",
        ),
        (&["s1"][..], SigningMode::Presignature, "threshold is 2"),
        (&["s2", "s2"][..], SigningMode::Full, "threshold is 2"),
        (&["hsm-1"][..], SigningMode::Hsm, "HSM signature for a hot"),
    ] {
        let mut s = Sim::new(BTC_DAILY);
        s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
        s.decide("r1", T0 + 1);
        let at = s.session("r1", signers, mode);
        s.sign("r1");
        rejected(&s.events, at, why);
    }
}

// ---------------------------------------------------------------------------
// Policy versions.

#[test]
fn a_policy_update_without_the_admin_quorum_is_refused() {
    let doc = policy_toml(2, 10 * BTC_DAILY);
    let next = keyfold_policy::Policy::from_toml(&doc).unwrap();
    let one_admin = Sim::signed_update(&doc, &ADMINS[..1]);
    // An officer's signature is no admin signature; an admin signing twice counts once.
    let admin_and_officer = Sim::signed_update(&doc, &[ADMINS[1], ALICE]);
    let admin_twice = Sim::signed_update(&doc, &[ADMINS[2], ADMINS[2]]);
    for signed in [one_admin, admin_and_officer, admin_twice] {
        let mut s = Sim::new(BTC_DAILY);
        let at = s.push(record::policy_event(&next, Some(&signed)));
        rejected(
            &s.events,
            at,
            "only 1 valid admin signature(s), the current policy needs 2",
        );
    }

    // No signed update at all.
    let mut s = Sim::new(BTC_DAILY);
    let at = s.push(record::policy_event(&next, None));
    rejected(&s.events, at, "without a signed update");

    // A quorum signed one document, another is recorded.
    let signed = Sim::signed_update(&doc, &ADMINS[..2]);
    let mut ev = record::policy_event(&next, Some(&signed));
    if let Event::PolicyVersion {
        document,
        document_hash,
        ..
    } = &mut ev
    {
        *document = policy_toml(2, 100 * BTC_DAILY);
        *document_hash = Sha256::digest(document.as_bytes()).into();
    }
    s.events[at] = ev;
    rejected(&s.events, at, "not the recorded document");

    // A quorum signed a document that does not move the version forward.
    let same = policy_toml(1, 10 * BTC_DAILY);
    let replay = Sim::signed_update(&same, &ADMINS[..2]);
    let p = keyfold_policy::Policy::from_toml(&same).unwrap();
    s.events[at] = record::policy_event(&p, Some(&replay));
    rejected(&s.events, at, "not greater");

    // The quorum-signed update itself is accepted.
    s.events[at] = record::policy_event(&next, Some(&signed));
    assert_eq!(audit(&s.events).unwrap().policies, 2);
}

#[test]
fn a_policy_version_that_is_not_its_document_is_refused() {
    let mut s = Sim::empty(&policy_toml(1, BTC_DAILY));
    let mut ev = record::policy_event(&s.policy, None);
    if let Event::PolicyVersion { document_hash, .. } = &mut ev {
        document_hash[0] ^= 1;
    }
    let at = s.push(ev);
    rejected(&s.events, at, "document_hash");
    let mut ev = record::policy_event(&s.policy, None);
    if let Event::PolicyVersion { version, .. } = &mut ev {
        *version = 9;
    }
    s.events[at] = ev;
    rejected(&s.events, at, "the document is version 1");
    // A first version cannot claim to be an update.
    let signed: SignedPolicy = Sim::signed_update(&s.policy.to_toml().unwrap(), &ADMINS);
    s.events[at] = record::policy_event(&s.policy, Some(&signed));
    rejected(&s.events, at, "carries an update");
}

// ---------------------------------------------------------------------------
// Requests.

#[test]
fn a_request_whose_hashes_are_not_its_request_is_refused() {
    let r = btc("r1", HOT_BTC, 20_000_000, T0);
    let base = Sim::new(BTC_DAILY);
    let honest = base.request_event(HOT_BTC, &r);
    let edit = |f: &dyn Fn(&mut Event)| {
        let mut s = Sim::new(BTC_DAILY);
        let mut ev = honest.clone();
        f(&mut ev);
        let at = s.push(ev);
        (s.events, at)
    };
    // request_hash of another request (what a forged approval would sign).
    let (events, at) = edit(&|ev| {
        if let Event::SignRequest { request_hash, .. } = ev {
            *request_hash = btc("r1", HOT_BTC, 1_000, T0).canonical_hash();
        }
    });
    rejected(&events, at, "request_hash is not the canonical hash");
    // message_hash of another message (what the key would be made to sign).
    let (events, at) = edit(&|ev| {
        if let Event::SignRequest { message_hash, .. } = ev {
            *message_hash = Sha256::digest(b"some other transaction").into();
        }
    });
    rejected(&events, at, "message_hash is not the hash");
    // The typed request edited (a smaller amount for the policy to see),
    // the hashes of the real one kept.
    let (events, at) = edit(&|ev| {
        if let Event::SignRequest { request, .. } = ev {
            let mut smaller = r.clone();
            smaller.amount = 1_000;
            *request = serde_json::to_string(&smaller).unwrap();
        }
    });
    rejected(&events, at, "request_hash is not the canonical hash");
    // A request for another wallet than the key and path it is filed under.
    let (events, at) = edit(&|ev| {
        if let Event::SignRequest {
            derivation_path, ..
        } = ev
        {
            *derivation_path = Some("m/0/8".into());
        }
    });
    rejected(&events, at, "names wallet hot-btc");
}

// ---------------------------------------------------------------------------
// Failed requests and the velocity history.

/// Four 0.1 BTC transfers signed; a fifth allowed, aborted and failed; a
/// sixth allowed: 0.5 BTC counts only without the failed one. Returns the
/// events, the index of the `RequestFailed` and of the sixth decision.
fn freed_by_a_failure() -> (Vec<Event>, usize, usize) {
    let mut s = Sim::new(BTC_DAILY);
    for i in 0..4u64 {
        let id = format!("r{i}");
        s.allowed_transfer(HOT_BTC, btc(&id, HOT_BTC, SMALL_BTC_MAX, T0 + i), T0 + i);
    }
    s.request(HOT_BTC, btc("r4", HOT_BTC, SMALL_BTC_MAX, T0 + 10));
    s.decide("r4", T0 + 10);
    s.default_session("r4");
    s.abort("r4", None, "timeout");
    let failed = s.fail("r4", "gave up after the abort");
    s.request(HOT_BTC, btc("r5", HOT_BTC, SMALL_BTC_MAX, T0 + 20));
    s.request(HOT_BTC, btc("r6", HOT_BTC, 1, T0 + 20));
    let (decided, d) = s.decide("r5", T0 + 21);
    assert!(d.is_allowed(), "{:?}", d.outcome);
    s.default_session("r5");
    s.sign("r5");
    // And the limit is full again: one more satoshi is denied.
    let (_, d) = s.decide("r6", T0 + 22);
    assert!(matches!(d.outcome, Outcome::Deny { .. }));
    (s.events, failed, decided)
}

#[test]
fn a_failed_request_frees_its_velocity() {
    let (events, _, _) = freed_by_a_failure();
    let stats = audit(&events).unwrap();
    assert_eq!(stats.signatures, 5);
    assert_eq!(stats.denied, 1);
}

#[test]
fn without_the_failure_the_same_allow_is_refused() {
    let (mut events, failed, decided) = freed_by_a_failure();
    events.remove(failed);
    rejected(&events, decided - 1, "velocity limit");
}

#[test]
fn a_failed_request_cannot_be_signed_or_fail_after_signing() {
    let (mut events, failed, _) = freed_by_a_failure();
    events.truncate(failed + 1);
    let mut s = Sim::new(BTC_DAILY);
    s.events = events;
    // Its old session does not count: a new one needs a new decision.
    let at = s.push(Event::SigningSession {
        request_id: "r4".into(),
        session_id: "sess-late".into(),
        signers: vec!["s1".into(), "s2".into()],
        mode: SigningMode::Presignature,
    });
    rejected(&s.events, at, "which no decision allowed");
    s.events.pop();
    let at = s.push(Event::RequestFailed {
        request_id: "r0".into(),
        reason: "pretend r0 was never signed".into(),
    });
    rejected(&s.events, at, "failed after it was signed");
}

#[test]
fn a_cancelled_request_frees_its_velocity_like_a_failed_one() {
    let (mut events, failed, _) = freed_by_a_failure();
    events[failed] = Event::RequestClosed {
        request_id: "r4".into(),
        state: "cancelled".into(),
        by: Some("payments".into()),
        reason: "cancelled by its initiator".into(),
    };
    let stats = audit(&events).unwrap();
    assert_eq!(stats.signatures, 5);
}

#[test]
fn a_request_closed_in_an_unknown_state_or_after_signing_is_refused() {
    let (mut events, failed, _) = freed_by_a_failure();
    events[failed] = Event::RequestClosed {
        request_id: "r4".into(),
        state: "completed".into(),
        by: None,
        reason: "not a closing state".into(),
    };
    rejected(&events, failed, "closed in state \"completed\"");
    let (mut events, failed, _) = freed_by_a_failure();
    events[failed] = Event::RequestClosed {
        request_id: "r0".into(),
        state: "expired".into(),
        by: None,
        reason: "pretend r0 expired".into(),
    };
    rejected(&events, failed, "failed after it was signed");
}

#[test]
fn a_client_token_entry_names_issued_or_revoked() {
    let mut s = Sim::new(BTC_DAILY);
    let token = |action: &str| Event::ClientToken {
        token_id: 7,
        name: "payments".into(),
        action: action.into(),
    };
    s.push(token("issued"));
    s.push(token("revoked"));
    audit(&s.events).unwrap();
    let at = s.push(token("granted"));
    rejected(&s.events, at, "client token action");
}

#[test]
fn a_decision_after_signing_cannot_free_velocity() {
    // r1 (0.3 BTC) is approved and signed. Carol's rejection arrives later,
    // and an honest re-evaluation of r1 now says deny: recorded, it would
    // drop r1's 0.3 BTC from the velocity history although the signature
    // exists, and r2 (0.3 BTC) would pass with 0.6 BTC signed in a day
    // against a 0.5 BTC limit. A signed request takes no new decision.
    let mut s = Sim::new(BTC_DAILY);
    s.approved_transfer(
        HOT_BTC,
        btc("r1", HOT_BTC, 30_000_000, T0),
        &[ALICE, BOB],
        T0 + 1,
    );
    let reject = s.approval("r1", CAROL, ApprovalDecision::Reject);
    s.add_approval("r1", reject);
    let (at, d) = s.decide("r1", T0 + 100);
    assert!(matches!(d.outcome, Outcome::Deny { .. }));
    s.approved_transfer(
        HOT_BTC,
        btc("r2", HOT_BTC, 30_000_000, T0 + 200),
        &[ALICE, BOB],
        T0 + 201,
    );
    rejected(&s.events, at, "already signed");
}

#[test]
fn an_abort_names_an_open_session_and_leaves_none_to_sign_with() {
    let mut s = Sim::new(BTC_DAILY);
    s.request(HOT_BTC, btc("r1", HOT_BTC, 1_000, T0));
    s.decide("r1", T0 + 1);
    s.default_session("r1");
    let open = s.events.clone();
    // An abort of a session that never started.
    let at = s.push(Event::Aborted {
        request_id: "r1".into(),
        session_id: "sess-404".into(),
        blamed: Some("s3".into()),
        reason: "timeout".into(),
    });
    rejected(&s.events, at, "sess-404");
    // The only session aborted (twice), then a signature without a new one.
    s.events = open;
    s.abort("r1", Some("s2"), "invalid partial signature");
    let mut with_sig = s.events.clone();
    let at = s.abort("r1", None, "again");
    rejected(&s.events, at, "sess-1");
    let at = with_sig.len();
    with_sig.push(s.signature_event("r1"));
    rejected(&with_sig, at, "without a signing session");
}

// ---------------------------------------------------------------------------
// Times: a decision or request dated away from the entry that records it,
// or decisions that go back in time, are refused (they would skip time
// locks or hide spends from velocity windows).

#[test]
fn a_decision_dated_in_the_future_is_refused() {
    // The cold withdrawal's decision claims to be evaluated a day after the
    // request (the end of its time lock), but the entry is written seconds
    // after the request, and the HSM signs at once.
    let mut s = Sim::new(BTC_DAILY);
    s.request(COLD_BTC, btc("cold", COLD_BTC, 300_000_000, T0));
    s.decide("cold", T0 + DAY);
    s.default_session("cold");
    s.sign("cold");
    // Written as a node would at T0 + index seconds: minutes, not a day.
    let at = s.events.len() - 3;
    let mut log = keyfold_audit::Log::new("coordinator").unwrap();
    let mut bytes = Vec::new();
    for (i, e) in s.events.iter().enumerate() {
        let time = (T0 as i64 + i as i64) * 1000;
        bytes.extend(log.append(time, e.clone()).unwrap().to_json_line());
    }
    let cp = log.checkpoint(&signer(), (T0 as i64 + 100) * 1000).unwrap();
    let err = keyfold_audit::verify_with(
        &bytes,
        &[cp],
        &trusted(),
        &mut keyfold_audit::Auditor::new(),
    )
    .expect_err("time lock skipped");
    assert!(
        matches!(&err, VerifyError::BadEntry { index, reason: EntryError::Rejected(m) }
            if *index == at as u64 && m.contains("after the entry's own time")),
        "{err}"
    );
}

#[test]
fn decisions_out_of_time_order_do_not_bypass_velocity() {
    // Five 0.1 BTC transfers decided at T0 + 1000.. fill the 0.5 BTC limit;
    // the sixth is then decided "at T0 + 999", before all of them, so none
    // counts (`time <= now`) and 0.6 BTC is signed.
    let mut s = Sim::new(BTC_DAILY);
    for i in 0..5u64 {
        let id = format!("r{i}");
        s.allowed_transfer(
            HOT_BTC,
            btc(&id, HOT_BTC, SMALL_BTC_MAX, T0 + i),
            T0 + 1000 + i,
        );
    }
    s.request(HOT_BTC, btc("r5", HOT_BTC, SMALL_BTC_MAX, T0 + 10));
    let (_, d) = s.decide("r5", T0 + 999);
    assert!(d.is_allowed());
    s.default_session("r5");
    s.sign("r5");
    assert!(
        audit(&s.events).is_err(),
        "0.6 BTC signed against a 0.5 BTC daily limit"
    );
}

#[test]
fn a_backdated_request_does_not_skip_its_time_lock() {
    // Written to the log at about T0, the cold withdrawal claims to have
    // been requested two days earlier: its one-day time lock is over at once.
    let mut s = Sim::new(BTC_DAILY);
    s.request(COLD_BTC, btc("cold", COLD_BTC, 300_000_000, T0 - 2 * DAY));
    let (_, d) = s.decide("cold", T0);
    assert!(d.is_allowed());
    s.default_session("cold");
    s.sign("cold");
    assert!(audit(&s.events).is_err(), "time lock skipped");
}
