//! Threshold Ed25519 (FROST) in one process; every signature checked with
//! ed25519-dalek's `verify_strict`.

mod common;

use common::*;
use futures::executor::block_on;
use keyfold_mpc::{
    eddsa, local, MpcError, ProtocolKind, SessionDescriptor, SessionField, SignerSet,
};

const MSG: &[u8] = b"payout 250 SOL to merchant 7";

#[test]
fn two_of_three_any_pair_signs() {
    let shares = eddsa_keygen(2, 3);
    let pk = shares[0].public_key();
    assert!(shares.iter().all(|s| s.public_key() == pk));
    for signers in [[0u16, 1], [1, 2], [2, 0]] {
        let sigs = eddsa_sign(&shares, &signers, MSG).unwrap();
        for s in &sigs {
            dalek_verify(&pk, MSG, &s.to_bytes());
        }
        // A signature of another message does not pass.
        assert!(sigs[0].verify(&pk, b"other").is_err());
    }
}

#[test]
fn three_of_five_two_subsets_and_short_quorum_refused() {
    let shares = eddsa_keygen(3, 5);
    let pk = shares[0].public_key();
    for signers in [[0u16, 2, 4], [1, 2, 3]] {
        let sig = eddsa_sign(&shares, &signers, MSG).unwrap();
        dalek_verify(&pk, MSG, &sig[0].to_bytes());
    }
    let err = eddsa_sign(&shares, &[0, 1], MSG).unwrap_err();
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
    let err = eddsa_sign(&shares, &[0, 1, 1], MSG).unwrap_err();
    assert!(
        matches!(err, MpcError::DuplicateParty { party: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_signer_on_another_request_is_refused() {
    let shares = eddsa_keygen(2, 3);
    let t = shares[0].threshold();
    let make = |req: &str| {
        SessionDescriptor::new(
            ProtocolKind::EddsaSign,
            shares[0].key_id(),
            request(req),
            t,
            SignerSet::new(&[0, 1], t).unwrap(),
        )
        .unwrap()
        .with_nonce([3; 16])
    };
    let (a, b) = (make("payout-1"), make("payout-2"));
    let out = block_on(local::run(2, |pos, d| {
        let session = if pos == 0 { a.clone() } else { b.clone() };
        let share = shares[usize::from(pos)].clone();
        async move { eddsa::sign(&session, &share, MSG, d).await }
    }));
    let err = local::all_ok(out).unwrap_err();
    match &err {
        MpcError::SessionMismatch { field, .. } => assert_eq!(*field, SessionField::RequestId),
        other => panic!("expected a request-id mismatch, got {other}"),
    }
    assert!(err.to_string().contains("payout-"), "{err}");
}

#[test]
fn share_round_trip_corruption_and_redaction() {
    let shares = eddsa_keygen(2, 3);
    let bytes = shares[1].to_bytes().unwrap();
    let back = eddsa::KeyShare::from_bytes(&bytes).unwrap();
    assert_eq!(back.public_info(), shares[1].public_info());
    for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x01;
        assert!(eddsa::KeyShare::from_bytes(&bad).is_err(), "flip at {at}");
    }
    assert!(eddsa::KeyShare::from_bytes(&bytes[..bytes.len() / 3]).is_err());

    // Secret altered, checksum recomputed: the share's own validation refuses it.
    let mut value = serde_json::to_value(&shares[1]).unwrap();
    let x = value["inner"]["x"].as_str().unwrap().to_string();
    let mut xb = hex::decode(&x).unwrap();
    xb[0] ^= 1;
    value["inner"]["x"] = serde_json::Value::String(hex::encode(xb));
    let repacked =
        keyfold_mpc::codec::encode(keyfold_mpc::codec::ObjectKind::EddsaKeyShare, 1, &value)
            .unwrap();
    assert!(matches!(
        eddsa::KeyShare::from_bytes(&repacked),
        Err(MpcError::Decode { .. })
    ));

    let dbg = format!("{:?}", shares[1]);
    assert!(dbg.contains("<redacted>") && !dbg.contains(&x), "{dbg}");
}

#[test]
fn seven_parties_are_accepted_and_eight_are_not() {
    let shares = eddsa_keygen(4, 7);
    let sig = eddsa_sign(&shares, &[6, 0, 3, 5], MSG).unwrap();
    dalek_verify(&shares[0].public_key(), MSG, &sig[0].to_bytes());
    assert!(matches!(
        keyfold_mpc::Threshold::new(4, 8),
        Err(MpcError::InvalidThreshold { n: 8, .. })
    ));
}
