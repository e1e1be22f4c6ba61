//! Helpers shared by the integration tests: run whole sessions in process and
//! verify results with implementations independent of the ones that signed.
#![allow(dead_code)]

use futures::executor::block_on;
use keyfold_mpc::ecdsa::{self, AuxInfo, DerivationPath, HashAlg};
use keyfold_mpc::{
    eddsa, local, KeyId, MpcError, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold,
};

pub fn request(id: &str) -> RequestId {
    RequestId::new(id).unwrap()
}

pub fn descriptor(
    protocol: ProtocolKind,
    key: KeyId,
    threshold: Threshold,
    parties: &[u16],
) -> SessionDescriptor {
    let set = if protocol.is_all_parties() {
        SignerSet::all(threshold.n())
    } else {
        SignerSet::new(parties, threshold).unwrap()
    };
    SessionDescriptor::new(protocol, key, request("test-request"), threshold, set).unwrap()
}

pub fn ecdsa_keygen(t: u16, n: u16, aux: &[AuxInfo]) -> Vec<ecdsa::KeyShare> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = descriptor(ProtocolKind::EcdsaKeygen, KeyId::random(), threshold, &[]);
    let out = block_on(local::run(n, |i, d| {
        let session = session.clone();
        let aux = aux[usize::from(i)].clone();
        async move { ecdsa::keygen(&session, i, &aux, d).await }
    }));
    local::all_ok(out).unwrap()
}

/// Picks the shares of `signers` (keygen indices), in signer-set order.
pub fn pick<'a, S>(shares: &'a [S], signers: &[u16]) -> Vec<&'a S> {
    let mut sorted = signers.to_vec();
    sorted.sort_unstable();
    sorted.iter().map(|&i| &shares[usize::from(i)]).collect()
}

pub fn presign(
    shares: &[ecdsa::KeyShare],
    signers: &[u16],
) -> Result<Vec<ecdsa::Presignature>, MpcError> {
    let s0 = &shares[0];
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaPresign,
        s0.key_id(),
        request("presign"),
        s0.threshold(),
        SignerSet::new(signers, s0.threshold())?,
    )?;
    let mine = pick(shares, signers);
    let out = block_on(local::run(mine.len() as u16, |pos, d| {
        let session = session.clone();
        let share = mine[usize::from(pos)].clone();
        async move { ecdsa::presign(&session, &share, d).await }
    }));
    local::all_ok(out)
}

pub fn ecdsa_sign(
    shares: &[ecdsa::KeyShare],
    signers: &[u16],
    message: &[u8],
    hash: HashAlg,
    path: Option<&DerivationPath>,
) -> Result<Vec<ecdsa::Signature>, MpcError> {
    let s0 = &shares[0];
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaSign,
        s0.key_id(),
        request("sign"),
        s0.threshold(),
        SignerSet::new(signers, s0.threshold())?,
    )?;
    let mine = pick(shares, signers);
    let out = block_on(local::run(mine.len() as u16, |pos, d| {
        let session = session.clone();
        let share = mine[usize::from(pos)].clone();
        let path = path.cloned();
        async move { ecdsa::sign(&session, &share, message, hash, path.as_ref(), d).await }
    }));
    local::all_ok(out)
}

pub fn eddsa_keygen(t: u16, n: u16) -> Vec<eddsa::KeyShare> {
    let threshold = Threshold::new(t, n).unwrap();
    let session = descriptor(ProtocolKind::EddsaKeygen, KeyId::random(), threshold, &[]);
    let out = block_on(local::run(n, |i, d| {
        let session = session.clone();
        async move { eddsa::keygen(&session, i, d).await }
    }));
    local::all_ok(out).unwrap()
}

pub fn eddsa_sign(
    shares: &[eddsa::KeyShare],
    signers: &[u16],
    message: &[u8],
) -> Result<Vec<eddsa::Signature>, MpcError> {
    let s0 = &shares[0];
    let session = SessionDescriptor::new(
        ProtocolKind::EddsaSign,
        s0.key_id(),
        request("sign"),
        s0.threshold(),
        SignerSet::new(signers, s0.threshold())?,
    )?;
    let mine = pick(shares, signers);
    let out = block_on(local::run(mine.len() as u16, |pos, d| {
        let session = session.clone();
        let share = mine[usize::from(pos)].clone();
        async move { eddsa::sign(&session, &share, message, d).await }
    }));
    local::all_ok(out)
}

/// Verifies with `k256` directly (not through keyfold's own wrapper) and checks low-S.
pub fn k256_verify(public_key: &[u8; 33], message: &[u8], hash: HashAlg, sig: &[u8; 64]) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(sig).unwrap();
    assert!(sig.normalize_s().is_none(), "signature is high-S");
    let digest: [u8; 32] = match hash {
        HashAlg::Sha256 => sha2::Sha256::digest(message).into(),
        HashAlg::Keccak256 => sha3::Keccak256::digest(message).into(),
        _ => unreachable!(),
    };
    vk.verify_prehash(&digest, &sig)
        .expect("k256 rejects the signature");
}

/// Verifies with `ed25519-dalek` 2.x `verify_strict`.
pub fn dalek_verify(public_key: &[u8; 32], message: &[u8], sig: &[u8; 64]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key).unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(sig))
        .expect("ed25519-dalek rejects the signature");
}
