//! Threshold ECDSA end to end in one process; every signature checked with k256.

mod common;

use common::*;
use futures::executor::block_on;
use futures::future::join_all;
use keyfold_mpc::delivery::Envelope;
use keyfold_mpc::ecdsa::{self, DerivationPath, HashAlg};
use keyfold_mpc::{
    local, test_fixtures, BlameKind, Culprit, MpcError, ProtocolKind, SessionDescriptor,
    SessionField, SignerSet,
};
use round_based::sim::async_env::Network;

const MSG: &[u8] = b"withdraw 1.5 BTC to bc1q-treasury";

fn presign_and_combine(shares: &[ecdsa::KeyShare], signers: &[u16], hash: HashAlg) {
    let presigs = presign(shares, signers).unwrap();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|p| p.issue_partial(MSG, hash))
        .collect();
    let info = shares[0].public_info();
    let sig = ecdsa::combine(&info, &partials, MSG, hash).unwrap();
    k256_verify(&info.public_key, MSG, hash, &sig.to_bytes());
}

#[test]
fn two_of_three_online_and_full_signing_with_any_quorum() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let pk = shares[0].public_key();
    assert!(
        shares.iter().all(|s| s.public_key() == pk),
        "parties disagree on the key"
    );

    presign_and_combine(&shares, &[0, 1], HashAlg::Sha256);
    presign_and_combine(&shares, &[2, 0], HashAlg::Keccak256);

    for signers in [[1u16, 2], [0, 2]] {
        let sigs = ecdsa_sign(&shares, &signers, MSG, HashAlg::Sha256, None).unwrap();
        for s in &sigs {
            k256_verify(&pk, MSG, HashAlg::Sha256, &s.to_bytes());
        }
    }
}

#[test]
fn three_of_five_with_two_different_subsets() {
    let shares = ecdsa_keygen(3, 5, &test_fixtures::aux_info(5));
    let pk = shares[0].public_key();
    for signers in [[0u16, 1, 2], [1, 3, 4]] {
        let sigs = ecdsa_sign(&shares, &signers, MSG, HashAlg::Keccak256, None).unwrap();
        k256_verify(&pk, MSG, HashAlg::Keccak256, &sigs[0].to_bytes());
    }
    presign_and_combine(&shares, &[4, 2, 0], HashAlg::Sha256);
}

#[test]
fn aux_info_serves_several_keys() {
    let aux = test_fixtures::aux_info(3);
    let a = ecdsa_keygen(2, 3, &aux);
    let b = ecdsa_keygen(2, 3, &aux);
    assert_ne!(a[0].public_key(), b[0].public_key());
    for shares in [&a, &b] {
        let sig = ecdsa_sign(shares, &[0, 2], MSG, HashAlg::Sha256, None).unwrap();
        k256_verify(
            &shares[0].public_key(),
            MSG,
            HashAlg::Sha256,
            &sig[0].to_bytes(),
        );
    }
}

#[test]
fn hd_child_key_matches_bip32_and_its_signature_verifies() {
    use bip32::{ChildNumber, ExtendedKeyAttrs, XPub};

    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let info = shares[0].public_info();
    let chain_code = info.chain_code.expect("keys are HD-capable");
    let path: DerivationPath = "m/44/0/7/1".parse().unwrap();

    // Independent derivation with the `bip32` crate from the extended public key.
    let root_vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&info.public_key).unwrap();
    let mut xpub = XPub::new(
        root_vk,
        ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: ChildNumber(0),
            chain_code,
        },
    );
    for &i in path.indices() {
        xpub = xpub
            .derive_child(ChildNumber::new(i, false).unwrap())
            .unwrap();
    }
    let expected: [u8; 33] = xpub
        .public_key()
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .unwrap();
    let child = shares[1].derive_public_key(&path).unwrap();
    assert_eq!(child, expected, "child key differs from BIP32");
    assert_ne!(child, info.public_key);

    let sigs = ecdsa_sign(&shares, &[0, 1], MSG, HashAlg::Sha256, Some(&path)).unwrap();
    k256_verify(&expected, MSG, HashAlg::Sha256, &sigs[0].to_bytes());
    // And it is not a signature under the root key.
    assert!(sigs[0]
        .verify(&info.public_key, MSG, HashAlg::Sha256)
        .is_err());
}

#[test]
fn fewer_than_t_parties_cannot_sign() {
    let shares = ecdsa_keygen(3, 5, &test_fixtures::aux_info(5));
    // Building a short signer set fails at once, naming the counts.
    let err = ecdsa_sign(&shares, &[0, 1], MSG, HashAlg::Sha256, None).unwrap_err();
    assert!(
        matches!(
            err,
            MpcError::WrongSignerCount {
                got: 2,
                need: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(presign(&shares, &[3, 4]).is_err());

    // t-1 partial signatures of a real presignature do not combine.
    let presigs = presign(&shares, &[0, 1, 2]).unwrap();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|p| p.issue_partial(MSG, HashAlg::Sha256))
        .collect();
    let info = shares[0].public_info();
    let err = ecdsa::combine(&info, &partials[..2], MSG, HashAlg::Sha256).unwrap_err();
    assert!(matches!(err, MpcError::WrongSignerCount { .. }), "{err}");
    // Padding with a duplicate does not help either.
    let padded = [
        partials[0].clone(),
        partials[1].clone(),
        partials[1].clone(),
    ];
    let err = ecdsa::combine(&info, &padded, MSG, HashAlg::Sha256).unwrap_err();
    assert!(
        matches!(err, MpcError::DuplicateParty { party: 1, .. }),
        "{err}"
    );
    // The full set does combine, so the refusals above are not noise.
    ecdsa::combine(&info, &partials, MSG, HashAlg::Sha256).unwrap();
}

#[test]
fn partials_for_another_message_or_presignature_are_refused() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let info = shares[0].public_info();
    let a: Vec<_> = presign(&shares, &[0, 1]).unwrap();
    let b: Vec<_> = presign(&shares, &[0, 1]).unwrap();
    let mut a = a.into_iter();
    let mut b = b.into_iter();
    let a0 = a.next().unwrap().issue_partial(MSG, HashAlg::Sha256);
    let a1_other_msg = a
        .next()
        .unwrap()
        .issue_partial(b"something else", HashAlg::Sha256);
    let err = ecdsa::combine(&info, &[a0.clone(), a1_other_msg], MSG, HashAlg::Sha256).unwrap_err();
    assert!(
        err.to_string().contains("party 1 signed another message"),
        "{err}"
    );
    let _ = b.next();
    let b1 = b.next().unwrap().issue_partial(MSG, HashAlg::Sha256);
    let err = ecdsa::combine(&info, &[a0, b1], MSG, HashAlg::Sha256).unwrap_err();
    assert!(err.to_string().contains("different presignatures"), "{err}");
}

#[test]
fn a_wrong_partial_signature_is_caught_by_verification() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let info = shares[0].public_info();
    let partials: Vec<_> = presign(&shares, &[1, 2])
        .unwrap()
        .into_iter()
        .map(|p| p.issue_partial(MSG, HashAlg::Sha256))
        .collect();
    // A malicious signer alters its sigma; metadata stays consistent.
    let mut json = serde_json::to_value(&partials[1]).unwrap();
    let sigma = json["inner"]["sigma"]["scalar"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = hex::decode(&sigma).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    json["inner"]["sigma"]["scalar"] = serde_json::Value::String(hex::encode(bytes));
    let forged: ecdsa::PartialSignature = serde_json::from_value(json).unwrap();
    let err =
        ecdsa::combine(&info, &[partials[0].clone(), forged], MSG, HashAlg::Sha256).unwrap_err();
    assert!(matches!(err, MpcError::InvalidSignature { .. }), "{err}");
}

#[test]
fn mismatched_execution_ids_abort_naming_the_party_and_field() {
    let aux = test_fixtures::aux_info(3);
    let threshold = keyfold_mpc::Threshold::new(2, 3).unwrap();
    let session = descriptor(
        ProtocolKind::EcdsaKeygen,
        keyfold_mpc::KeyId::random(),
        threshold,
        &[],
    );
    let stray = session.clone().with_nonce([0xAA; 16]);
    // Every party runs until it fails on its own (each reads a message of the
    // other execution in round 1), rather than being stopped by the first
    // failure as `local::run` does.
    let mut net = Network::<Envelope<ecdsa::KeygenMsg>>::with_capacity(1024);
    let parties = (0..3u16).map(|i| {
        // Party 2 was handed another execution of the same keygen.
        let session = if i == 2 {
            stray.clone()
        } else {
            session.clone()
        };
        let aux = aux[usize::from(i)].clone();
        let d = net.connect_new_party();
        async move { ecdsa::keygen(&session, i, &aux, d).await }
    });
    let out = block_on(join_all(parties));
    // Parties 0 and 1 each name party 2, and only party 2.
    for i in [0, 1] {
        match &out[i] {
            Err(e @ MpcError::SessionMismatch { party, field, .. }) => {
                assert_eq!(*field, SessionField::ExecutionNonce, "party {i}: {e}");
                assert_eq!(*party, 2, "party {i}: {e}");
                assert_eq!(
                    e.culprits(),
                    [Culprit::new(2, BlameKind::SessionMismatch)],
                    "party {i}: {e}"
                );
            }
            Err(other) => panic!("party {i}: expected a session mismatch, got {other}"),
            Ok(_) => panic!("party {i} finished a key generation with a stray party"),
        }
    }
    // Party 2 sees the honest parties as the strays: it names the one whose
    // message it read first. One accuser against two: whoever weighs blame
    // (the coordinator) must count accusers, not believe one.
    match &out[2] {
        Err(e @ MpcError::SessionMismatch { party, .. }) => {
            assert!(*party == 0 || *party == 1, "{e}");
            assert_eq!(
                e.culprits(),
                [Culprit::new(*party, BlameKind::SessionMismatch)],
                "{e}"
            );
        }
        Err(other) => panic!("party 2: expected a session mismatch, got {other}"),
        Ok(_) => panic!("party 2 finished a key generation of another execution"),
    }
}

#[test]
fn a_party_with_another_signer_set_is_refused() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let t = shares[0].threshold();
    let make = |parties: &[u16]| {
        SessionDescriptor::new(
            ProtocolKind::EcdsaSign,
            shares[0].key_id(),
            request("r-1"),
            t,
            SignerSet::new(parties, t).unwrap(),
        )
        .unwrap()
        .with_nonce([7; 16])
    };
    let ours = make(&[0, 1]);
    let theirs = make(&[1, 2]);
    let out = block_on(local::run(2, |pos, d| {
        let (session, share) = if pos == 0 {
            (ours.clone(), shares[0].clone())
        } else {
            (theirs.clone(), shares[1].clone())
        };
        async move { ecdsa::sign(&session, &share, MSG, HashAlg::Sha256, None, d).await }
    }));
    let err = local::all_ok(out).unwrap_err();
    match &err {
        MpcError::SessionMismatch { field, .. } => assert_eq!(*field, SessionField::SignerSet),
        other => panic!("expected a signer-set mismatch, got {other}"),
    }
    assert!(err.to_string().contains("signer set"), "{err}");
}

#[test]
fn duplicated_party_index_or_wrong_key_is_refused_before_any_message() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let good = SessionDescriptor::new(
        ProtocolKind::EcdsaPresign,
        shares[0].key_id(),
        request("r"),
        shares[0].threshold(),
        SignerSet::new(&[0, 1], shares[0].threshold()).unwrap(),
    )
    .unwrap();
    // A descriptor from the wire claiming signers [1, 1].
    let mut json = serde_json::to_value(&good).unwrap();
    json["parties"] = serde_json::json!([1, 1]);
    let dup: SessionDescriptor = serde_json::from_value(json).unwrap();
    let out = block_on(local::run(1, |_, d| {
        let dup = dup.clone();
        let share = shares[1].clone();
        async move { ecdsa::presign(&dup, &share, d).await }
    }));
    let err = local::all_ok(out).unwrap_err();
    assert!(
        matches!(err, MpcError::DuplicateParty { party: 1, .. }),
        "{err}"
    );

    // A session for another key.
    let other_key = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let out = block_on(local::run(1, |_, d| {
        let good = good.clone();
        let share = other_key[0].clone();
        async move { ecdsa::presign(&good, &share, d).await }
    }));
    let err = local::all_ok(out).unwrap_err();
    assert!(err.to_string().contains("the share is for key"), "{err}");
}

#[test]
fn share_round_trips_and_corruption_is_refused() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let bytes = shares[2].to_bytes().unwrap();
    let back = ecdsa::KeyShare::from_bytes(&bytes).unwrap();
    assert_eq!(back.public_info(), shares[2].public_info());
    assert_eq!(back.i(), 2);

    for at in [0, 4, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x40;
        let err = ecdsa::KeyShare::from_bytes(&bad).unwrap_err();
        assert!(
            matches!(err, MpcError::Decode { .. }),
            "flip at {at}: {err}"
        );
    }
    let err = ecdsa::KeyShare::from_bytes(&bytes[..bytes.len() - 10]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = ecdsa::KeyShare::from_bytes(&[]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // A share whose secret no longer matches its public share, re-packed with a
    // valid checksum: cggmp21's validation refuses it.
    let mut value = serde_json::to_value(&shares[2]).unwrap();
    let x = value["inner"]["core"]["x"].as_str().unwrap().to_string();
    let mut xb = hex::decode(&x).unwrap();
    xb[31] ^= 1;
    value["inner"]["core"]["x"] = serde_json::Value::String(hex::encode(xb));
    let repacked =
        keyfold_mpc::codec::encode(keyfold_mpc::codec::ObjectKind::EcdsaKeyShare, 1, &value)
            .unwrap();
    let err = ecdsa::KeyShare::from_bytes(&repacked).unwrap_err();
    assert!(matches!(err, MpcError::Decode { .. }), "{err}");

    // An Ed25519 share is not an ECDSA share.
    let ed = eddsa_keygen(2, 3);
    let err = ecdsa::KeyShare::from_bytes(&ed[0].to_bytes().unwrap()).unwrap_err();
    assert!(err.to_string().contains("Ed25519 key share"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let value = serde_json::to_value(&shares[0]).unwrap();
    let x = value["inner"]["core"]["x"].as_str().unwrap().to_string();
    let dbg = format!("{:?}", shares[0]);
    assert!(dbg.contains("<redacted>"), "{dbg}");
    assert!(
        !dbg.to_lowercase().contains(&x.to_lowercase()),
        "secret in Debug"
    );

    let presig = presign(&shares, &[0, 1]).unwrap().remove(0);
    let pj = serde_json::to_value(&presig).unwrap();
    let k = pj["inner"]["k"]["scalar"].as_str().unwrap().to_string();
    let dbg = format!("{presig:?}");
    assert!(dbg.contains("<redacted>") && !dbg.contains(&k), "{dbg}");
    let aux = format!("{:?}", test_fixtures::aux_info(3)[0]);
    assert!(aux.contains("<redacted>"), "{aux}");
    assert_eq!(
        format!("{:?}", test_fixtures::safe_primes(0)),
        "SafePrimes(<redacted>)"
    );
}

#[test]
fn presignature_survives_persistence_once() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let presigs = presign(&shares, &[0, 2]).unwrap();
    // Stored and loaded (as a signer's pool does), then consumed.
    let loaded: Vec<_> = presigs
        .iter()
        .map(|p| ecdsa::Presignature::from_bytes(&p.to_bytes().unwrap()).unwrap())
        .collect();
    drop(presigs);
    let partials: Vec<_> = loaded
        .into_iter()
        .map(|p| p.issue_partial(MSG, HashAlg::Sha256))
        .collect();
    let info = shares[0].public_info();
    let sig = ecdsa::combine(&info, &partials, MSG, HashAlg::Sha256).unwrap();
    k256_verify(&info.public_key, MSG, HashAlg::Sha256, &sig.to_bytes());
}

#[test]
fn public_derivation_without_a_share_matches_the_share() {
    let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
    let info = shares[0].public_info();
    let path: DerivationPath = "m/1/2/3".parse().unwrap();
    let child =
        ecdsa::derive_public_key(&info.public_key, &info.chain_code.unwrap(), &path).unwrap();
    assert_eq!(child, shares[2].derive_public_key(&path).unwrap());
}
