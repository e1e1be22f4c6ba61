//! Append throughput (durable with an fsync per entry, durable with
//! `append_batch` group commit, in memory) and offline verification of a
//! realistic 100,000-entry coordinator log: integrity only (`verify`), and
//! with an `Auditor` re-checking every request hash, approval signature,
//! policy decision and wallet signature (`verify_with`).
//!
//! The log comes from the test fixture's honest coordinator
//! (`tests/common/mod.rs`): about 24,000 typed transfers, one a minute over
//! 17 days, against the fixture's 10-rule policy with a per-wallet daily
//! velocity limit. Per 20 requests: 12 small BTC transfers (ECDSA; one in
//! four from an HD child), 4 SOL payouts (Ed25519), 2 large SOL transfers
//! and 1 large BTC transfer that need approvals (two Ed25519 approvals, two
//! decisions), 1 to a sanctioned address (denied); the policy's night freeze
//! denies one hot request in twelve. Building it signs everything for real
//! once (a few seconds); the iterations only verify.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{btc, sol, Sim, ALICE, BOB, CAROL, DAVE, HOT_BTC, HOT_SOL, T0};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keyfold_audit::{
    verify_with, Auditor, CheckpointSigner, Ed25519Signer, Event, FileLog, Log, SignedCheckpoint,
};
use keyfold_policy::{Outcome, Request};

/// Entries in the verified log.
const N: usize = 100_000;
/// A checkpoint every this many entries.
const CHECKPOINT_EVERY: u64 = 1_000;
/// Daily BTC limit of `hot-btc` in the bench: 25 BTC, above the ~18 BTC a
/// day the mix spends, so the limit is checked on every BTC request (against
/// the whole history) but not hit.
const BTC_DAILY: u128 = 2_500_000_000;

/// Request, decision, approvals and a second decision when needed, then
/// session and signature if allowed (what the coordinator records).
fn run(s: &mut Sim, key_id: &str, request: Request, approvers: &[u8]) {
    let id = request.id.clone();
    let t = request.time;
    s.request(key_id, request);
    let (_, mut d) = s.decide(&id, t + 1);
    if matches!(d.outcome, Outcome::NeedApprovals { .. }) {
        for &a in approvers {
            s.approve(&id, a);
        }
        d = s.decide(&id, t + 30).1;
    }
    if d.is_allowed() {
        s.default_session(&id);
        s.sign(&id);
    }
}

/// The realistic mix described in the module docs, cut at `n` events.
fn realistic_events(n: usize) -> Vec<Event> {
    let mut s = Sim::new(BTC_DAILY);
    let mut i = 0u64;
    while s.events.len() < n {
        let t = T0 + i * 60;
        let id = format!("req-{i}");
        // Deterministic amounts that vary from request to request.
        let spread = (i * 7_919) % 9_000;
        match i % 20 {
            0..=11 => {
                let wallet = if i % 4 == 0 {
                    format!("hot-btc/m/0/{}", i % 50)
                } else {
                    HOT_BTC.to_string()
                };
                run(
                    &mut s,
                    HOT_BTC,
                    btc(&id, &wallet, 1_000 + u128::from(spread) * 100, t),
                    &[],
                );
            }
            12..=15 => run(
                &mut s,
                HOT_SOL,
                sol(&id, 1_000_000 + u128::from(spread) * 100_000, t),
                &[],
            ),
            16 => run(
                &mut s,
                HOT_SOL,
                sol(&id, 2_000_000_000_000, t),
                &[ALICE, BOB],
            ),
            17 => run(&mut s, HOT_SOL, sol(&id, 3_000_000_000_000, t), &[DAVE]),
            18 => {
                let mut r = btc(&id, HOT_BTC, 50_000, t);
                r.destination = "bc1q-sanctioned".into();
                run(&mut s, HOT_BTC, r, &[]);
            }
            _ => run(
                &mut s,
                HOT_BTC,
                btc(&id, HOT_BTC, 20_000_000, t),
                &[ALICE, CAROL],
            ),
        }
        i += 1;
    }
    s.events.truncate(n);
    s.events
}

/// Entries file and checkpoints of `events`.
fn export(events: &[Event], signer: &Ed25519Signer) -> (Vec<u8>, Vec<SignedCheckpoint>) {
    let mut log = Log::new("bench").unwrap();
    let mut bytes = Vec::new();
    let mut cps = Vec::new();
    let mut time = 1_700_000_000_000i64;
    for (i, e) in events.iter().enumerate() {
        // When a node would write it (after the request's or decision's own time).
        time = common::entry_time(time, e);
        let entry = log.append(time, e.clone()).unwrap();
        bytes.extend_from_slice(&entry.to_json_line());
        if log.len() % CHECKPOINT_EVERY == 0 {
            cps.push(log.checkpoint(signer, i as i64).unwrap());
        }
    }
    (bytes, cps)
}

fn append(c: &mut Criterion) {
    // A slice of the realistic mix, cycled.
    let events = realistic_events(4_096);
    let event = |i: u64| events[i as usize % events.len()].clone();
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let mut flog = FileLog::open(dir.path(), "bench").unwrap();
    let mut i = 0u64;
    g.throughput(Throughput::Elements(1));
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
    let started = Instant::now();
    let events = realistic_events(N);
    let built = started.elapsed();
    let signer = Ed25519Signer::from_seed(&[3; 32]);
    let (bytes, cps) = export(&events, &signer);
    let pk = signer.public_key();
    drop(events);
    // What the log holds, once (also checks that it is honest).
    let mut auditor = Auditor::new();
    let started = Instant::now();
    let report = verify_with(&bytes, &cps, &[pk], &mut auditor).unwrap();
    eprintln!(
        "realistic log: {} entries, {} checkpoints, {:.1} MB, built and signed in {:.1?}; \
         first audit {:.1?}; {:?}",
        report.entries,
        report.checkpoints,
        bytes.len() as f64 / 1e6,
        built,
        started.elapsed(),
        auditor.stats(),
    );

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("integrity_100k_entries_100_checkpoints", |b| {
        b.iter(|| {
            let r = keyfold_audit::verify(&bytes, &cps, &[pk]).unwrap();
            assert_eq!(r.entries, N as u64);
        })
    });
    g.bench_function("auditor_100k_entries_100_checkpoints", |b| {
        b.iter(|| {
            let mut auditor = Auditor::new();
            let r = verify_with(&bytes, &cps, &[pk], &mut auditor).unwrap();
            assert_eq!(r.entries, N as u64);
        })
    });
    g.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
