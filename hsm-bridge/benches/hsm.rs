//! HSM bridge throughput against SoftHSM2: seal and open of a 2 KB share,
//! cold secp256k1 and Ed25519 signatures (each signature includes the
//! independent verification the bridge does before returning it).
//!
//! `cargo bench -p keyfold-hsm --bench hsm -- --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keyfold_hsm::testing::TestToken;
use keyfold_hsm::{ColdCurve, ColdKeys, HsmSealer, DEFAULT_SEAL_KEY_LABEL};
use keyfold_store::{Aad, ObjectType, Sealer};

fn bench(c: &mut Criterion) {
    let token = TestToken::create("bench").unwrap_or_else(|e| panic!("{e}"));
    let hsm = token.open().unwrap_or_else(|e| panic!("{e}"));
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let aad = Aad::new("node-1", ObjectType::EcdsaShare, "key-1", 1);
    let share = vec![0x5au8; 2048];
    let sealed = sealer.seal(&aad, &share).unwrap();

    let mut group = c.benchmark_group("hsm");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_2k", |b| {
        b.iter(|| sealer.seal(black_box(&aad), black_box(&share)).unwrap())
    });
    group.bench_function("open_2k", |b| {
        b.iter(|| sealer.open(black_box(&aad), black_box(&sealed)).unwrap())
    });

    let cold = ColdKeys::new(&hsm);
    let k1 = cold.generate("bench-k1", ColdCurve::Secp256k1).unwrap();
    let ed = cold.generate("bench-ed", ColdCurve::Ed25519).unwrap();
    let message = [0x42u8; 200];
    group.bench_function("cold_secp256k1_sign", |b| {
        b.iter(|| k1.sign(black_box(&message)).unwrap())
    });
    group.bench_function("cold_ed25519_sign", |b| {
        b.iter(|| ed.sign(black_box(&message)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
