//! Append throughput (durable, fsync per entry; and in memory) and offline
//! verification of a 100,000-entry log.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use keyfold_audit::{
    CheckpointSigner, Ed25519Signer, Event, FileLog, HexBytes, Log, Outcome, SignedCheckpoint,
};

fn event(i: u64) -> Event {
    match i % 4 {
        0 => Event::SignRequest {
            request_id: format!("req-{i}"),
            key_id: "hot-btc".into(),
            client: "payments".into(),
            message_hash: HexBytes(vec![0xab; 32]),
            hash_alg: "sha256d".into(),
            derivation_path: Some("m/0/7".into()),
        },
        1 => Event::Decision {
            request_id: format!("req-{}", i - 1),
            rule: "default-allow".into(),
            outcome: Outcome::Allow,
        },
        2 => Event::SigningSession {
            request_id: format!("req-{}", i - 2),
            session_id: format!("sess-{i}"),
            signers: vec!["s1".into(), "s2".into()],
            mode: keyfold_audit::SigningMode::Presignature,
        },
        _ => Event::Signature {
            request_id: format!("req-{}", i - 3),
            key_id: "hot-btc".into(),
            public_key: HexBytes(vec![2; 33]),
            signature: HexBytes(vec![0x30; 71]),
        },
    }
}

fn build(n: u64, every: u64) -> (Vec<u8>, Vec<SignedCheckpoint>, [u8; 32]) {
    let signer = Ed25519Signer::from_seed(&[3; 32]);
    let mut log = Log::new("bench").unwrap();
    let mut bytes = Vec::new();
    let mut cps = Vec::new();
    for i in 0..n {
        bytes.extend_from_slice(&log.append(i as i64, event(i)).unwrap().to_json_line());
        if log.len() % every == 0 {
            cps.push(log.checkpoint(&signer, i as i64).unwrap());
        }
    }
    (bytes, cps, signer.public_key())
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let mut flog = FileLog::open(dir.path(), "bench").unwrap();
    let mut i = 0u64;
    g.bench_function("durable_fsync", |b| {
        b.iter(|| {
            i += 1;
            flog.append(i as i64, event(i)).unwrap()
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("durable_fsync_batch_of_64", |b| {
        b.iter(|| {
            let batch: Vec<(i64, Event)> = (0..64)
                .map(|_| {
                    i += 1;
                    (i as i64, event(i))
                })
                .collect();
            flog.append_batch(batch).unwrap()
        })
    });
    g.throughput(Throughput::Elements(1));
    let mut log = Log::new("bench").unwrap();
    g.bench_function("in_memory", |b| {
        b.iter(|| {
            i += 1;
            log.append(i as i64, event(i)).unwrap()
        })
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    const N: u64 = 100_000;
    let (bytes, cps, pk) = build(N, 1000);
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("100k_entries_100_checkpoints", |b| {
        b.iter_batched(
            || (),
            |()| {
                let r = keyfold_audit::verify(&bytes, &cps, &[pk]).unwrap();
                assert_eq!(r.entries, N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
