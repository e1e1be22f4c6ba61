//! Loading untrusted bytes: arbitrary input and mutations of valid encodings
//! never panic and never load as something else.

mod common;

use std::sync::OnceLock;

use common::*;
use keyfold_mpc::codec::{self, ObjectKind, MAX_BODY};
use keyfold_mpc::ecdsa;
use keyfold_mpc::primes::SafePrimes;
use keyfold_mpc::{eddsa, test_fixtures, MpcError};
use proptest::prelude::*;

fn ecdsa_share_bytes() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let shares = ecdsa_keygen(2, 3, &test_fixtures::aux_info(3));
        shares[0].to_bytes().unwrap().to_vec()
    })
}

fn eddsa_share_bytes() -> &'static Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| eddsa_keygen(2, 3)[1].to_bytes().unwrap().to_vec())
}

fn load_all(bytes: &[u8]) {
    let _ = ecdsa::KeyShare::from_bytes(bytes);
    let _ = ecdsa::AuxInfo::from_bytes(bytes);
    let _ = ecdsa::Presignature::from_bytes(bytes);
    let _ = eddsa::KeyShare::from_bytes(bytes);
    let _ = SafePrimes::from_bytes(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        kind in 1u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        // A container with a correct checksum around garbage JSON.
        let mut bytes = b"KFLD".to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let sum: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
        bytes.extend_from_slice(&sum);
        load_all(&bytes);
    }

    #[test]
    fn any_single_byte_change_to_a_share_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        for original in [ecdsa_share_bytes(), eddsa_share_bytes()] {
            let mut bytes = original.clone();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(ecdsa::KeyShare::from_bytes(&bytes).is_err());
            prop_assert!(eddsa::KeyShare::from_bytes(&bytes).is_err());
        }
    }
}

#[test]
fn an_oversized_declared_body_is_refused_without_allocating() {
    let mut bytes = b"KFLD".to_vec();
    bytes.push(1);
    bytes.extend_from_slice(&1u32.to_be_bytes());
    bytes.extend_from_slice(&((MAX_BODY as u32) + 1).to_be_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let err = ecdsa::KeyShare::from_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    let err = codec::encode(ObjectKind::SafePrimes, 1, &vec![0u8; MAX_BODY]).unwrap_err();
    assert!(matches!(err, MpcError::Internal(_)), "{err}");
}
