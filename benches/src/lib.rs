//! Helpers for Keyfold's benchmarks: whole protocol sessions run in process
//! (every party on the calling thread, so a session's time is the sum of its
//! parties' CPU time) on TEST-ONLY fixtures; and [`http`], the load tools'
//! client of the REST API.
#![forbid(unsafe_code)]

pub mod http;

use futures::executor::block_on;
use keyfold_mpc::ecdsa::{self, AuxInfo, HashAlg};
use keyfold_mpc::primes::SafePrimes;
use keyfold_mpc::{
    eddsa, local, KeyId, MpcError, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold,
};

fn session(
    protocol: ProtocolKind,
    key: KeyId,
    threshold: Threshold,
    parties: SignerSet,
) -> Result<SessionDescriptor, MpcError> {
    SessionDescriptor::new(protocol, key, RequestId::new("bench")?, threshold, parties)
}

/// The first `t` parties: the signer set the benches use.
pub fn first_signers(threshold: Threshold) -> Result<SignerSet, MpcError> {
    let parties: Vec<u16> = (0..threshold.t()).collect();
    SignerSet::new(&parties, threshold)
}

/// Aux-info generation for `n` parties from the given primes.
pub fn aux_info(n: u16, primes: Vec<SafePrimes>) -> Result<Vec<AuxInfo>, MpcError> {
    let s = session(
        ProtocolKind::EcdsaAuxInfo,
        KeyId::random(),
        ecdsa::aux_threshold(n)?,
        SignerSet::all(n),
    )?;
    let mut primes: Vec<Option<SafePrimes>> = primes.into_iter().map(Some).collect();
    local::all_ok(block_on(local::run(n, |i, d| {
        let s = s.clone();
        let p = primes.get_mut(usize::from(i)).and_then(Option::take);
        async move {
            let p = p.ok_or_else(|| MpcError::Internal(format!("no primes for party {i}")))?;
            ecdsa::aux_info_gen(&s, i, p, d).await
        }
    })))
}

/// ECDSA key generation.
pub fn ecdsa_keygen(
    threshold: Threshold,
    aux: &[AuxInfo],
) -> Result<Vec<ecdsa::KeyShare>, MpcError> {
    let s = session(
        ProtocolKind::EcdsaKeygen,
        KeyId::random(),
        threshold,
        SignerSet::all(threshold.n()),
    )?;
    local::all_ok(block_on(local::run(threshold.n(), |i, d| {
        let s = s.clone();
        let aux = aux[usize::from(i)].clone();
        async move { ecdsa::keygen(&s, i, &aux, d).await }
    })))
}

/// Presignature generation by `signers`.
pub fn ecdsa_presign(
    shares: &[ecdsa::KeyShare],
    signers: &SignerSet,
) -> Result<Vec<ecdsa::Presignature>, MpcError> {
    let s = session(
        ProtocolKind::EcdsaPresign,
        shares[0].key_id(),
        shares[0].threshold(),
        signers.clone(),
    )?;
    local::all_ok(block_on(local::run(signers.len(), |pos, d| {
        let s = s.clone();
        let share = shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        async move { ecdsa::presign(&s, &share, d).await }
    })))
}

/// Full interactive signing by `signers`.
pub fn ecdsa_sign(
    shares: &[ecdsa::KeyShare],
    signers: &SignerSet,
    message: &[u8],
) -> Result<ecdsa::Signature, MpcError> {
    let s = session(
        ProtocolKind::EcdsaSign,
        shares[0].key_id(),
        shares[0].threshold(),
        signers.clone(),
    )?;
    let sigs = local::all_ok(block_on(local::run(signers.len(), |pos, d| {
        let s = s.clone();
        let share = shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        async move { ecdsa::sign(&s, &share, message, HashAlg::Sha256, None, d).await }
    })))?;
    sigs.into_iter()
        .next()
        .ok_or_else(|| MpcError::Internal("no signature".into()))
}

/// FROST key generation.
pub fn eddsa_keygen(threshold: Threshold) -> Result<Vec<eddsa::KeyShare>, MpcError> {
    let s = session(
        ProtocolKind::EddsaKeygen,
        KeyId::random(),
        threshold,
        SignerSet::all(threshold.n()),
    )?;
    local::all_ok(block_on(local::run(threshold.n(), |i, d| {
        let s = s.clone();
        async move { eddsa::keygen(&s, i, d).await }
    })))
}

/// FROST signing by `signers`.
pub fn eddsa_sign(
    shares: &[eddsa::KeyShare],
    signers: &SignerSet,
    message: &[u8],
) -> Result<eddsa::Signature, MpcError> {
    let s = session(
        ProtocolKind::EddsaSign,
        shares[0].key_id(),
        shares[0].threshold(),
        signers.clone(),
    )?;
    let sigs = local::all_ok(block_on(local::run(signers.len(), |pos, d| {
        let s = s.clone();
        let share = shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        async move { eddsa::sign(&s, &share, message, d).await }
    })))?;
    sigs.into_iter()
        .next()
        .ok_or_else(|| MpcError::Internal("no signature".into()))
}
