//! Aux-info generation for real (from pooled safe primes), then a key and a
//! signature on top of it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::executor::block_on;
use keyfold_mpc::ecdsa::{self, aux_threshold, HashAlg};
use keyfold_mpc::primes::{MemoryPrimeStore, PrimePool};
use keyfold_mpc::{local, test_fixtures, KeyId, ProtocolKind, SessionDescriptor, SignerSet};

#[test]
fn aux_info_from_the_pool_then_keygen_and_sign() {
    // Primes come through the pool as in production; the generator replays the
    // test fixture so the test does not spend minutes finding primes.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pool = PrimePool::with_generator(
        Box::new(MemoryPrimeStore::new()),
        3,
        Arc::new(move || {
            test_fixtures::safe_primes(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        }),
    );
    pool.refill(1);
    let primes: Vec<_> = (0..3)
        .map(|_| pool.take_wait(Duration::from_secs(60)).unwrap())
        .collect();
    let group = KeyId::random();
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaAuxInfo,
        group,
        request("aux"),
        aux_threshold(3).unwrap(),
        SignerSet::all(3),
    )
    .unwrap();
    let mut primes: Vec<_> = primes.into_iter().map(Some).collect();
    let out = block_on(local::run(3, |i, d| {
        let session = session.clone();
        let p = primes[usize::from(i)].take().unwrap();
        async move { ecdsa::aux_info_gen(&session, i, p, d).await }
    }));
    let aux = local::all_ok(out).unwrap();
    assert!(aux.iter().all(|a| a.group() == group && a.n() == 3));
    let back = ecdsa::AuxInfo::from_bytes(&aux[1].to_bytes().unwrap()).unwrap();
    assert_eq!(back.i(), 1);

    let shares = ecdsa_keygen(2, 3, &aux);
    let sig = ecdsa_sign(&shares, &[0, 2], b"hello", HashAlg::Sha256, None).unwrap();
    k256_verify(
        &shares[0].public_key(),
        b"hello",
        HashAlg::Sha256,
        &sig[0].to_bytes(),
    );
}

#[test]
fn keygen_refuses_aux_info_of_another_party() {
    let aux = test_fixtures::aux_info(3);
    let threshold = keyfold_mpc::Threshold::new(2, 3).unwrap();
    let session = descriptor(ProtocolKind::EcdsaKeygen, KeyId::random(), threshold, &[]);
    let out = block_on(local::run(3, |i, d| {
        let session = session.clone();
        // Everyone gets party 0's aux info.
        let aux = aux[0].clone();
        async move { ecdsa::keygen(&session, i, &aux, d).await }
    }));
    let err = local::all_ok(out).unwrap_err();
    assert!(err.to_string().contains("aux info"), "{err}");
}
