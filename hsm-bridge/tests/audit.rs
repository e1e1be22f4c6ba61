//! The HSM audit key signs checkpoints that keyfold-audit's offline verifier
//! accepts with the exported public key alone.

mod common;

use keyfold_audit::{sign_checkpoint, verify, CheckpointError, CheckpointSigner, Event, Log};
use keyfold_hsm::{ColdKeys, HsmAuditSigner, HsmError, DEFAULT_AUDIT_KEY_LABEL};

/// Entries for the log (integrity only: these tests check the checkpoint
/// signatures, not what the entries say).
fn entry_event(version: u64) -> Event {
    Event::RequestFailed {
        request_id: format!("r-{version}"),
        reason: "example".into(),
    }
}

#[test]
fn hsm_signed_checkpoints_verify_offline() {
    let (_t, hsm) = common::open_token("audit-verify");
    let signer = HsmAuditSigner::open_or_create(&hsm, DEFAULT_AUDIT_KEY_LABEL).unwrap();
    let mut log = Log::new("coordinator").unwrap();
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 0..10u64 {
        let entry = log
            .append(1_700_000_000_000 + i as i64, entry_event(i))
            .unwrap();
        entries.extend_from_slice(&entry.to_json_line());
        if i % 4 == 3 {
            checkpoints.push(
                log.checkpoint(&signer, 1_700_000_000_100 + i as i64)
                    .unwrap(),
            );
        }
    }
    checkpoints.push(log.checkpoint(&signer, 1_700_000_001_000).unwrap());

    // What the auditors get: the exported hex public key.
    let exported = signer.public_key_hex();
    let trusted: [u8; 32] = hex::decode(&exported).unwrap().try_into().unwrap();
    assert_eq!(trusted, signer.public_key());
    for cp in &checkpoints {
        assert_eq!(cp.public_key, trusted);
        cp.verify(&[trusted]).unwrap();
        // Independent check with ed25519-dalek, from the exported key alone.
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&trusted).unwrap();
        vk.verify_strict(
            &cp.checkpoint.canonical_bytes(),
            &ed25519_dalek::Signature::from_bytes(&cp.signature),
        )
        .unwrap();
    }
    let report = verify(&entries, &checkpoints, &[trusted]).unwrap();
    assert_eq!(report.entries, 10);
    assert_eq!(report.checkpoints, checkpoints.len());
    assert_eq!(report.anchored, 10);

    // Another key is not trusted; a tampered signature does not verify.
    assert!(verify(&entries, &checkpoints, &[[7u8; 32]]).is_err());
    let mut forged = checkpoints[0].clone();
    forged.signature[5] ^= 1;
    assert_eq!(
        forged.verify(&[trusted]),
        Err(CheckpointError::BadSignature)
    );
}

#[test]
fn audit_key_persists_and_is_locked_down() {
    let (t, hsm) = common::open_token("audit-persist");
    let first = HsmAuditSigner::open_or_create(&hsm, DEFAULT_AUDIT_KEY_LABEL).unwrap();
    let hsm2 = t.open().unwrap();
    let again = HsmAuditSigner::open(&hsm2, DEFAULT_AUDIT_KEY_LABEL).unwrap();
    assert_eq!(first.public_key(), again.public_key());
    assert_eq!(first.public_key_hex().len(), 64);
    let p = again.protection().unwrap();
    assert!(p.is_locked_down() && p.local, "{p:?}");
    // Not a cold key, and cold keys are not audit keys.
    assert!(ColdKeys::new(&hsm).list().unwrap().is_empty());
    ColdKeys::new(&hsm)
        .generate("cold-x", keyfold_hsm::ColdCurve::Ed25519)
        .unwrap();
    assert!(matches!(
        HsmAuditSigner::open(&hsm, "cold-x"),
        Err(HsmError::KeyNotFound { .. })
    ));
    let err = HsmAuditSigner::create(&hsm, DEFAULT_AUDIT_KEY_LABEL).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
    let debug = format!("{again:?}");
    assert!(debug.contains(&again.public_key_hex()), "{debug}");
}

#[test]
fn deleted_audit_key_gives_a_signer_error() {
    let (t, hsm) = common::open_token("audit-del");
    let signer = HsmAuditSigner::open_or_create(&hsm, "audit-2").unwrap();
    let cp = Log::new("signer-1").unwrap().tree_head(1);
    sign_checkpoint(cp.clone(), &signer).unwrap();
    t.pkcs11_tool(&["--delete-object", "--type", "privkey", "--label", "audit-2"])
        .unwrap();
    let err = sign_checkpoint(cp, &signer).unwrap_err();
    let CheckpointError::Signer(msg) = &err else {
        panic!("expected Signer, got {err:?}");
    };
    assert!(
        msg.contains(&format!(
            "the audit checkpoint key `audit-2` is missing from token `{}`",
            t.label
        )),
        "{msg}"
    );
}

#[test]
fn concurrent_open_or_create_makes_one_key() {
    let (_t, hsm) = common::open_token("audit-race");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let hsm = hsm.clone();
            std::thread::spawn(move || {
                HsmAuditSigner::open_or_create(&hsm, DEFAULT_AUDIT_KEY_LABEL)
                    .unwrap()
                    .public_key()
            })
        })
        .collect();
    let keys: Vec<[u8; 32]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
}
