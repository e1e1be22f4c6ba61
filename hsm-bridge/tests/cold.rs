//! Cold keys generated inside SoftHSM2: signatures checked with independent
//! implementations (k256, ed25519-dalek), low-S, recovery ids, lookup.

mod common;

use ed25519_dalek::Signature as EdSignature;
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use keyfold_hsm::{ColdCurve, ColdKeys, HashAlg, HsmAuditSigner, HsmError, MAX_SIGN_MESSAGE};
use sha2::Digest;

#[test]
fn secp256k1_signatures_verify_with_k256_and_are_low_s() {
    let (_t, hsm) = common::open_token("cold-k1");
    let keys = ColdKeys::new(&hsm);
    let key = keys.generate("btc-cold-1", ColdCurve::Secp256k1).unwrap();
    assert_eq!(key.curve(), ColdCurve::Secp256k1);
    let pk = key.public_key();
    assert_eq!(pk.len(), 33);
    assert!(pk[0] == 0x02 || pk[0] == 0x03);
    let vk = VerifyingKey::from_sec1_bytes(pk).unwrap();
    // Enough signatures that the token's raw output is high-S for some of
    // them (about half are), so normalization is exercised.
    for i in 0..64u32 {
        let message = format!("withdrawal #{i} to bc1q...");
        let sig = key.sign(message.as_bytes()).unwrap();
        let parsed = Signature::from_slice(&sig).unwrap();
        assert!(parsed.normalize_s().is_none(), "signature {i} is high-S");
        let digest: [u8; 32] = sha2::Sha256::digest(message.as_bytes()).into();
        vk.verify_prehash(&digest, &parsed).unwrap();
        // Bound to the message.
        let other: [u8; 32] = sha2::Sha256::digest(b"another message").into();
        assert!(vk.verify_prehash(&other, &parsed).is_err());
    }
}

#[test]
fn keccak_signatures_recover_the_key() {
    let (_t, hsm) = common::open_token("cold-eth");
    let key = ColdKeys::new(&hsm)
        .generate("eth-cold", ColdCurve::Secp256k1)
        .unwrap();
    let vk = VerifyingKey::from_sec1_bytes(key.public_key()).unwrap();
    for i in 0..16u8 {
        let message = [i; 100];
        let digest: [u8; 32] = sha3::Keccak256::digest(message).into();
        let rs = key.sign_recoverable(&message, HashAlg::Keccak256).unwrap();
        let sig = Signature::from_slice(&rs.signature).unwrap();
        assert!(sig.normalize_s().is_none());
        let rid = RecoveryId::from_byte(rs.recovery_id).unwrap();
        let recovered = VerifyingKey::recover_from_prehash(&digest, &sig, rid).unwrap();
        assert_eq!(recovered, vk);
        let plain = key.sign_with_hash(&message, HashAlg::Keccak256).unwrap();
        vk.verify_prehash(&digest, &Signature::from_slice(&plain).unwrap())
            .unwrap();
    }
}

#[test]
fn ed25519_signatures_verify_strictly_with_dalek() {
    let (_t, hsm) = common::open_token("cold-ed");
    let key = ColdKeys::new(&hsm)
        .generate("sol-cold-1", ColdCurve::Ed25519)
        .unwrap();
    let pk: [u8; 32] = key.public_key().try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    for len in [0usize, 1, 32, 1232, 10_000] {
        let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let sig = key.sign(&message).unwrap();
        vk.verify_strict(&message, &EdSignature::from_bytes(&sig))
            .unwrap();
        let mut tampered = message.clone();
        tampered.push(1);
        assert!(vk
            .verify_strict(&tampered, &EdSignature::from_bytes(&sig))
            .is_err());
    }
    // Ed25519 takes no external hash.
    let err = key.sign_with_hash(b"m", HashAlg::Sha256).unwrap_err();
    assert!(matches!(err, HsmError::Unsupported { .. }), "{err}");
    let err = key.sign_recoverable(b"m", HashAlg::Keccak256).unwrap_err();
    assert!(matches!(err, HsmError::Unsupported { .. }), "{err}");
}

#[test]
fn find_list_and_label_rules() {
    let (t, hsm) = common::open_token("cold-find");
    let keys = ColdKeys::new(&hsm);
    let a = keys.generate("b-key", ColdCurve::Secp256k1).unwrap();
    let b = keys.generate("a-key", ColdCurve::Ed25519).unwrap();
    // The audit key is not a cold key.
    let audit = HsmAuditSigner::open_or_create(&hsm, "keyfold-audit").unwrap();
    let listed = keys.list().unwrap();
    let labels: Vec<&str> = listed.iter().map(|k| k.label()).collect();
    assert_eq!(labels, ["a-key", "b-key"]);
    assert_eq!(listed[0].public_key(), b.public_key());
    assert_eq!(listed[1].public_key(), a.public_key());
    assert!(matches!(
        keys.find("keyfold-audit"),
        Err(HsmError::KeyNotFound { .. })
    ));
    assert_eq!(audit.label(), "keyfold-audit");

    // A fresh handle finds them by label with the same public key, and they sign.
    let keys2 = ColdKeys::new(&t.open().unwrap());
    let found = keys2.find("b-key").unwrap();
    assert_eq!(found.public_key(), a.public_key());
    assert_eq!(found.curve(), ColdCurve::Secp256k1);
    let sig = found.sign(b"hello").unwrap();
    let vk = VerifyingKey::from_sec1_bytes(a.public_key()).unwrap();
    let digest: [u8; 32] = sha2::Sha256::digest(b"hello").into();
    vk.verify_prehash(&digest, &Signature::from_slice(&sig).unwrap())
        .unwrap();

    let err = keys.find("missing").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no cold key labelled `missing` on token `{}`", t.label)
    );
    let err = keys.generate("a-key", ColdCurve::Secp256k1).unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
    // Labels in use by any object, even of another role, are refused.
    let err = keys
        .generate("keyfold-audit", ColdCurve::Ed25519)
        .unwrap_err();
    assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
    for bad in ["", " padded", "new\nline"] {
        let err = keys.generate(bad, ColdCurve::Ed25519).unwrap_err();
        assert!(matches!(err, HsmError::BadLabel { .. }), "{bad:?}: {err}");
    }
    let debug = format!("{found:?}");
    assert!(debug.contains("b-key") && debug.contains(&found.public_key_hex()));
}

#[test]
fn cold_private_keys_are_locked_down() {
    let (_t, hsm) = common::open_token("cold-attr");
    let keys = ColdKeys::new(&hsm);
    for (label, curve) in [("k1", ColdCurve::Secp256k1), ("ed", ColdCurve::Ed25519)] {
        let key = keys.generate(label, curve).unwrap();
        let p = key.protection().unwrap();
        assert!(p.is_locked_down(), "{label}: {p:?}");
        assert!(p.local, "{label}: generated on the token");
    }
}

#[test]
fn oversized_messages_are_refused() {
    let (_t, hsm) = common::open_token("cold-big");
    let key = ColdKeys::new(&hsm)
        .generate("big", ColdCurve::Ed25519)
        .unwrap();
    let err = key.sign(&vec![0u8; MAX_SIGN_MESSAGE + 1]).unwrap_err();
    assert!(matches!(err, HsmError::TooLarge { .. }), "{err}");
}

#[test]
fn deleted_cold_key_is_reported_missing() {
    let (t, hsm) = common::open_token("cold-del");
    let key = ColdKeys::new(&hsm)
        .generate("gone", ColdCurve::Secp256k1)
        .unwrap();
    key.sign(b"before").unwrap();
    t.pkcs11_tool(&["--delete-object", "--type", "privkey", "--label", "gone"])
        .unwrap();
    let err = key.sign(b"after").unwrap_err();
    assert!(matches!(err, HsmError::KeyMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "the cold key `gone` is missing from token `{}`",
            t.label
        )),
        "{err}"
    );
}

#[test]
fn cold_keys_sign_from_several_threads() {
    let (_t, hsm) = common::open_token("cold-mt");
    let keys = ColdKeys::new(&hsm);
    let k1 = keys.generate("k1", ColdCurve::Secp256k1).unwrap();
    let ed = keys.generate("ed", ColdCurve::Ed25519).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let (k1, ed) = (k1.clone(), ed.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let m = format!("{n}/{i}");
                    k1.sign(m.as_bytes()).unwrap();
                    ed.sign(m.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
