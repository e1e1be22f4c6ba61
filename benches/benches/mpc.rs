//! Criterion benchmarks of every protocol phase, in process, plus the plain
//! k256 signature that `docs/performance.md` uses as its baseline.
//!
//! Run: `cargo bench -p keyfold-benches --bench mpc`. Sessions run all parties on
//! one thread, so a session's time is the sum of its parties' CPU; the per-party
//! figure in `docs/performance.md` divides by the number of parties.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use keyfold_benches as b;
use keyfold_mpc::ecdsa::{self, HashAlg};
use keyfold_mpc::{test_fixtures, Threshold};

const MSG: &[u8] = b"withdraw 1.5 BTC to bc1q-treasury";

fn baseline(c: &mut Criterion) {
    use k256::ecdsa::signature::Signer;
    let sk = k256::ecdsa::SigningKey::random(&mut rand_core_os());
    c.bench_function("baseline/k256_sign", |bench| {
        bench.iter(|| {
            let sig: k256::ecdsa::Signature = sk.sign(MSG);
            sig
        })
    });
}

fn rand_core_os() -> k256::elliptic_curve::rand_core::OsRng {
    k256::elliptic_curve::rand_core::OsRng
}

fn aux_info(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecdsa/aux_info");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    for n in [3u16, 5] {
        let primes: Vec<_> = (0..usize::from(n))
            .map(|i| test_fixtures::safe_primes(i).to_bytes().expect("encode"))
            .collect();
        g.bench_function(format!("n{n}"), |bench| {
            bench.iter_batched(
                || {
                    primes
                        .iter()
                        .map(|p| keyfold_mpc::primes::SafePrimes::from_bytes(p).expect("decode"))
                        .collect::<Vec<_>>()
                },
                |p| b::aux_info(n, p).expect("aux info"),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn ecdsa_phases(c: &mut Criterion) {
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        let threshold = Threshold::new(t, n).expect("threshold");
        let aux = test_fixtures::aux_info(n);
        let signers = b::first_signers(threshold).expect("signers");
        let label = format!("{t}of{n}");

        let mut g = c.benchmark_group("ecdsa/keygen");
        g.bench_function(&label, |bench| {
            bench.iter(|| b::ecdsa_keygen(threshold, &aux).expect("keygen"))
        });
        g.finish();

        let shares = b::ecdsa_keygen(threshold, &aux).expect("keygen");
        let mut g = c.benchmark_group("ecdsa/presign");
        g.sample_size(10);
        g.bench_function(&label, |bench| {
            bench.iter(|| b::ecdsa_presign(&shares, &signers).expect("presign"))
        });
        g.finish();

        let mut g = c.benchmark_group("ecdsa/full_sign");
        g.sample_size(10);
        g.bench_function(&label, |bench| {
            bench.iter(|| b::ecdsa_sign(&shares, &signers, MSG).expect("sign"))
        });
        g.finish();

        // The online step: one party turns a stored presignature into a partial
        // signature. A presignature is single-use, so every iteration loads a
        // fresh copy from its encoding (setup, not timed). Signing the same
        // message with copies of one presignature yields the same partial and
        // leaks nothing; real code never does this, the type system forbids it.
        let presigs = b::ecdsa_presign(&shares, &signers).expect("presign");
        let stored: Vec<_> = presigs
            .iter()
            .map(|p| p.to_bytes().expect("encode"))
            .collect();
        let mut g = c.benchmark_group("ecdsa/online_partial");
        g.bench_function(&label, |bench| {
            bench.iter_batched(
                || ecdsa::Presignature::from_bytes(&stored[0]).expect("decode"),
                |p| p.issue_partial(MSG, HashAlg::Sha256),
                BatchSize::SmallInput,
            )
        });
        g.finish();

        let partials: Vec<_> = stored
            .iter()
            .map(|s| {
                ecdsa::Presignature::from_bytes(s)
                    .expect("decode")
                    .issue_partial(MSG, HashAlg::Sha256)
            })
            .collect();
        let info = shares[0].public_info();
        let mut g = c.benchmark_group("ecdsa/combine_and_verify");
        g.bench_function(&label, |bench| {
            bench.iter(|| ecdsa::combine(&info, &partials, MSG, HashAlg::Sha256).expect("combine"))
        });
        g.finish();
    }
}

fn frost(c: &mut Criterion) {
    for (t, n) in [(2u16, 3u16), (3, 5)] {
        let threshold = Threshold::new(t, n).expect("threshold");
        let label = format!("{t}of{n}");
        let mut g = c.benchmark_group("eddsa/keygen");
        g.bench_function(&label, |bench| {
            bench.iter(|| b::eddsa_keygen(threshold).expect("keygen"))
        });
        g.finish();
        let shares = b::eddsa_keygen(threshold).expect("keygen");
        let signers = b::first_signers(threshold).expect("signers");
        let mut g = c.benchmark_group("eddsa/sign");
        g.bench_function(&label, |bench| {
            bench.iter(|| b::eddsa_sign(&shares, &signers, MSG).expect("sign"))
        });
        g.finish();
    }
}

criterion_group!(benches, baseline, ecdsa_phases, frost, aux_info);
criterion_main!(benches);
