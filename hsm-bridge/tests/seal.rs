//! HsmSealer against a real SoftHSM2 token: round trips, AAD binding,
//! tampering, truncation, concurrency, a key deleted under a running sealer.

mod common;

use std::sync::Arc;

use keyfold_hsm::{HsmError, HsmSealer, DEFAULT_SEAL_KEY_LABEL, HSM_SEAL_OVERHEAD};
use keyfold_store::{Aad, ObjectType, SealError, Sealer, SoftwareSealer, MAX_SECRET_LEN};

fn aad() -> Aad {
    Aad::new("node-1", ObjectType::EcdsaShare, "key-7", 3)
}

fn share(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

#[test]
fn round_trip_of_many_sizes() {
    let (_t, hsm) = common::open_token("seal-rt");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    for len in [0, 1, 15, 16, 17, 2048, 65_537, MAX_SECRET_LEN] {
        let plaintext = share(len);
        let sealed = sealer.seal(&aad(), &plaintext).unwrap();
        assert_eq!(sealed.len(), len + HSM_SEAL_OVERHEAD);
        assert_eq!(sealed[0], keyfold_hsm::HSM_SEALED_FORMAT_V1);
        if len >= 16 {
            assert!(
                !sealed.windows(16).any(|w| w == &plaintext[..16]),
                "plaintext visible in the sealed blob"
            );
        }
        let opened = sealer.open(&aad(), &sealed).unwrap();
        assert_eq!(opened.as_slice(), plaintext.as_slice(), "len {len}");
    }
    // Two seals of the same plaintext differ (random IV).
    let a = sealer.seal(&aad(), b"same").unwrap();
    let b = sealer.seal(&aad(), b"same").unwrap();
    assert_ne!(a, b);
    assert!(sealer.describe().contains("keyfold-seal"));
    assert!(sealer.describe().contains(hsm.token_label()));
}

#[test]
fn too_large_plaintext_is_refused() {
    let (_t, hsm) = common::open_token("seal-big");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let err = sealer
        .seal(&aad(), &vec![0u8; MAX_SECRET_LEN + 1])
        .unwrap_err();
    assert!(matches!(err, SealError::TooLarge { .. }), "{err}");
}

#[test]
fn aad_mismatch_fails_to_open() {
    let (_t, hsm) = common::open_token("seal-aad");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let sealed = sealer.seal(&aad(), &share(2048)).unwrap();
    let others = [
        Aad::new("node-2", ObjectType::EcdsaShare, "key-7", 3),
        Aad::new("node-1", ObjectType::EddsaShare, "key-7", 3),
        Aad::new("node-1", ObjectType::EcdsaShare, "key-8", 3),
        Aad::new("node-1", ObjectType::EcdsaShare, "key-7", 4),
        Aad::new("node-", ObjectType::EcdsaShare, "1key-7", 3),
    ];
    for other in &others {
        match sealer.open(other, &sealed) {
            Err(SealError::Tampered { object, id }) => {
                assert_eq!(object, other.object);
                assert_eq!(id, other.id);
            }
            other_result => panic!("{other:?}: expected Tampered, got {other_result:?}"),
        }
    }
    // The original still opens after all those failures.
    assert_eq!(sealer.open(&aad(), &sealed).unwrap().len(), 2048);
}

#[test]
fn every_bit_flip_and_every_truncation_fails() {
    let (_t, hsm) = common::open_token("seal-flip");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let sealed = sealer.seal(&aad(), &share(64)).unwrap();
    for byte in 0..sealed.len() {
        for bit in 0..8 {
            let mut bad = sealed.clone();
            bad[byte] ^= 1 << bit;
            match sealer.open(&aad(), &bad) {
                Err(SealError::Tampered { .. } | SealError::Malformed { .. }) => {}
                other => panic!("flip of byte {byte} bit {bit}: {other:?}"),
            }
        }
    }
    for len in 0..sealed.len() {
        match sealer.open(&aad(), &sealed[..len]) {
            Err(SealError::Tampered { .. }) if len >= HSM_SEAL_OVERHEAD => {}
            Err(SealError::Malformed { .. }) if len < HSM_SEAL_OVERHEAD => {}
            other => panic!("truncation to {len}: {other:?}"),
        }
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        sealer.open(&aad(), &longer),
        Err(SealError::Tampered { .. })
    ));
    // A 2 KB share: flips at a spread of positions, including the tag.
    let big = sealer.seal(&aad(), &share(2048)).unwrap();
    for pos in (0..big.len()).step_by(97).chain(big.len() - 16..big.len()) {
        let mut bad = big.clone();
        bad[pos] ^= 0x80;
        assert!(
            matches!(
                sealer.open(&aad(), &bad),
                Err(SealError::Tampered { .. } | SealError::Malformed { .. })
            ),
            "flip at {pos}"
        );
    }
    assert_eq!(sealer.open(&aad(), &sealed).unwrap().as_slice(), share(64));
}

#[test]
fn blobs_of_other_formats_are_malformed_with_a_reason() {
    let (_t, hsm) = common::open_token("seal-fmt");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let software = SoftwareSealer::generate_key_file(dir.path().join("key")).unwrap();
    let foreign = software.seal(&aad(), &share(100)).unwrap();
    let err = sealer.open(&aad(), &foreign).unwrap_err();
    assert!(matches!(err, SealError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("software sealer"), "{err}");
    let mut unknown = sealer.seal(&aad(), &share(10)).unwrap();
    unknown[0] = 0x7f;
    let err = sealer.open(&aad(), &unknown).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown sealed format version 0x7f"),
        "{err}"
    );
    assert!(matches!(
        sealer.open(&aad(), &[]),
        Err(SealError::Malformed { .. })
    ));
}

#[test]
fn key_is_reused_and_other_keys_cannot_open() {
    let (t, hsm) = common::open_token("seal-reuse");
    let first = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let sealed = first.seal(&aad(), &share(300)).unwrap();
    // A second handle on the same token (new session pool) finds the same key.
    let hsm2 = t.open().unwrap();
    let second = HsmSealer::open(&hsm2, DEFAULT_SEAL_KEY_LABEL).unwrap();
    assert_eq!(second.open(&aad(), &sealed).unwrap().as_slice(), share(300));
    let again = HsmSealer::open_or_create(&hsm2, DEFAULT_SEAL_KEY_LABEL).unwrap();
    assert_eq!(again.open(&aad(), &sealed).unwrap().len(), 300);
    // A different key cannot.
    let other = HsmSealer::create(&hsm, "other-seal").unwrap();
    assert!(matches!(
        other.open(&aad(), &sealed),
        Err(SealError::Tampered { .. })
    ));
    // Creating a key with a used label is refused.
    let err = HsmSealer::create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
    // Opening an absent key names it and the token.
    let err = HsmSealer::open(&hsm, "nope").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no sealing key labelled `nope` on token `{}`", t.label)
    );
}

#[test]
fn sealing_key_is_sensitive_and_never_extractable() {
    let (_t, hsm) = common::open_token("seal-attr");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let p = sealer.protection().unwrap();
    assert!(p.is_locked_down(), "{p:?}");
    assert!(p.local && p.sensitive && !p.extractable && p.never_extractable && p.token);
}

#[test]
fn concurrent_seal_and_open_from_several_threads() {
    let (_t, hsm) = common::open_token("seal-mt");
    let sealer = Arc::new(HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let sealer = Arc::clone(&sealer);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let a = Aad::new(
                        format!("node-{n}"),
                        ObjectType::Presignature,
                        format!("p-{i}"),
                        1,
                    );
                    let pt = share(100 + i);
                    let sealed = sealer.seal(&a, &pt).unwrap();
                    assert_eq!(sealer.open(&a, &sealed).unwrap().as_slice(), pt.as_slice());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(hsm.idle_sessions() >= 1);
    assert!(hsm.idle_sessions() <= keyfold_hsm::session::MAX_IDLE_SESSIONS);
}

#[test]
fn sealing_key_deleted_under_a_running_sealer_is_a_backend_error() {
    let (t, hsm) = common::open_token("seal-del");
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let sealed = sealer.seal(&aad(), &share(2048)).unwrap();
    assert!(sealer.open(&aad(), &sealed).is_ok());
    // Delete it from another process, as an operator (or an attacker) would.
    t.pkcs11_tool(&[
        "--delete-object",
        "--type",
        "secrkey",
        "--label",
        DEFAULT_SEAL_KEY_LABEL,
    ])
    .unwrap();
    for result in [
        sealer.open(&aad(), &sealed).map(|_| ()),
        sealer.seal(&aad(), &share(10)).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        let SealError::Backend { reason, .. } = &err else {
            panic!("expected Backend, got {err:?}");
        };
        assert!(
            reason.contains(&format!(
                "the sealing key `keyfold-seal` is missing from token `{}`",
                t.label
            )),
            "{reason}"
        );
        assert!(
            reason.contains("shares sealed under it cannot be opened"),
            "{reason}"
        );
        assert!(reason.contains("restore"), "{reason}");
    }
    assert!(matches!(sealer.check(), Err(HsmError::KeyMissing { .. })));
}
