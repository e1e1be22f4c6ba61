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
//!
//! Scaling (`audit_scaling`, one-shot timed runs after the criterion
//! groups): the same auditing of logs of 100k, 200k, 500k and 1M entries,
//! each the beginning of one 1M-entry log of the same mix (about 69 days,
//! every signature real and verified). That log is built once (about a
//! minute) and kept under the target directory's `tmp/` for later runs;
//! `KEYFOLD_AUDIT_RUNS` (default 3) sets the runs per size, whose median is
//! reported. Run only it with `cargo bench -p keyfold-audit --bench verify
//! -- audit_scaling`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{btc, sol, Sim, ALICE, BOB, CAROL, DAVE, HOT_BTC, HOT_SOL, T0};
use criterion::{criterion_group, Criterion, Throughput};
use keyfold_audit::{
    parse_checkpoints, verify_with, Auditor, CheckpointSigner, Ed25519Signer, Event, FileLog, Log,
    SignedCheckpoint,
};
use keyfold_policy::{Outcome, Request};

/// Entries in the verified log.
const N: usize = 100_000;
/// Sizes of the scaling runs (entries).
const SCALING: [usize; 4] = [100_000, 200_000, 500_000, 1_000_000];
/// Names the cached log's format: change it when the fixture or the mix
/// changes (a cached log that no longer audits is rebuilt anyway).
const CACHE_TAG: &str = "v2";
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
                let wallet = if i.is_multiple_of(4) {
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
    for e in events {
        // When a node would write it (after the request's or decision's own time).
        time = common::entry_time(time, e);
        let entry = log.append(time, e.clone()).unwrap();
        bytes.extend_from_slice(&entry.to_json_line());
        if log.len().is_multiple_of(CHECKPOINT_EVERY) {
            // Signed when its last entry was written (a tree head signed
            // before the entries it covers is refused).
            cps.push(log.checkpoint(signer, time).unwrap());
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

/// Where the scaling log is kept between runs.
fn cache_paths(n: usize) -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keyfold-audit-bench");
    (
        dir.join(format!("realistic-{CACHE_TAG}-{n}.jsonl")),
        dir.join(format!("realistic-{CACHE_TAG}-{n}.checkpoints.jsonl")),
    )
}

/// The realistic log of `n` entries and its checkpoints: read from the
/// cache, or built (every signature real), written to the cache, and
/// returned. `rebuild` ignores the cache.
fn realistic_log(
    n: usize,
    signer: &Ed25519Signer,
    rebuild: bool,
) -> (Vec<u8>, Vec<SignedCheckpoint>) {
    let (entries, cps) = cache_paths(n);
    if !rebuild {
        if let (Ok(bytes), Ok(cp_bytes)) = (std::fs::read(&entries), std::fs::read(&cps)) {
            if let Ok(cps) = parse_checkpoints(&cp_bytes) {
                eprintln!(
                    "realistic log of {n} entries read from {}",
                    entries.display()
                );
                return (bytes, cps);
            }
        }
    }
    let started = Instant::now();
    let events = realistic_events(n);
    let built = started.elapsed();
    let (bytes, checkpoints) = export(&events, signer);
    drop(events);
    eprintln!(
        "realistic log of {n} entries built and signed in {built:.1?}, exported in {:.1?}",
        started.elapsed() - built
    );
    if let Some(dir) = entries.parent() {
        let cp_bytes: Vec<u8> = checkpoints.iter().flat_map(|c| c.to_json_line()).collect();
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&entries, &bytes))
            .and_then(|()| std::fs::write(&cps, cp_bytes));
        if let Err(e) = written {
            eprintln!("could not cache the log in {}: {e}", dir.display());
        }
    }
    (bytes, checkpoints)
}

/// The first `n` entries of a log and the checkpoints that cover at most
/// them (the log is checkpointed every [`CHECKPOINT_EVERY`] entries, so a
/// prefix of a multiple of it ends on a checkpoint).
fn prefix<'a>(
    bytes: &'a [u8],
    cps: &[SignedCheckpoint],
    n: usize,
) -> (&'a [u8], Vec<SignedCheckpoint>) {
    let end = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(bytes.len(), |(i, _)| i + 1);
    let cps = cps
        .iter()
        .filter(|c| c.checkpoint.tree_size <= n as u64)
        .cloned()
        .collect();
    (&bytes[..end], cps)
}

/// One full audit (chain, Merkle roots, checkpoints, and every check of the
/// `Auditor`) of `bytes`.
fn audit_once(bytes: &[u8], cps: &[SignedCheckpoint], pk: [u8; 32], n: usize) -> Duration {
    let started = Instant::now();
    let mut auditor = Auditor::new();
    let r = verify_with(bytes, cps, &[pk], &mut auditor).expect("the realistic log audits");
    let took = started.elapsed();
    assert_eq!(r.entries, n as u64);
    took
}

/// The 1M-entry log (cached), checked once: a stale cache is rebuilt.
fn scaling_log(signer: &Ed25519Signer) -> (Vec<u8>, Vec<SignedCheckpoint>) {
    let max = SCALING[SCALING.len() - 1];
    let pk = signer.public_key();
    let (bytes, cps) = realistic_log(max, signer, false);
    let (head, head_cps) = prefix(&bytes, &cps, N);
    let mut auditor = Auditor::new();
    match verify_with(head, &head_cps, &[pk], &mut auditor) {
        Ok(_) => (bytes, cps),
        Err(e) => {
            eprintln!("the cached log does not audit ({e}): rebuilding it");
            realistic_log(max, signer, true)
        }
    }
}

fn verify(c: &mut Criterion) {
    let signer = Ed25519Signer::from_seed(&[3; 32]);
    let pk = signer.public_key();
    let (all, all_cps) = scaling_log(&signer);
    let (bytes, cps) = prefix(&all, &all_cps, N);
    // What the log holds, once (also checks that it is honest).
    let mut auditor = Auditor::new();
    let started = Instant::now();
    let report = verify_with(bytes, &cps, &[pk], &mut auditor).unwrap();
    eprintln!(
        "realistic log: {} entries, {} checkpoints, {:.1} MB; first audit {:.1?}; {:?}",
        report.entries,
        report.checkpoints,
        bytes.len() as f64 / 1e6,
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
            let r = keyfold_audit::verify(bytes, &cps, &[pk]).unwrap();
            assert_eq!(r.entries, N as u64);
        })
    });
    g.bench_function("auditor_100k_entries_100_checkpoints", |b| {
        b.iter(|| {
            let mut auditor = Auditor::new();
            let r = verify_with(bytes, &cps, &[pk], &mut auditor).unwrap();
            assert_eq!(r.entries, N as u64);
        })
    });
    g.finish();
}

/// Full audits of 100k .. 1M entries: medians of one-shot runs, entries per
/// second, and the growth from one size to the next.
fn scaling() {
    let runs: usize = std::env::var("KEYFOLD_AUDIT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(3);
    let signer = Ed25519Signer::from_seed(&[3; 32]);
    let pk = signer.public_key();
    let (all, all_cps) = scaling_log(&signer);
    let mut previous: Option<(usize, f64)> = None;
    println!("audit_scaling: full audit (verify_with + Auditor), median of {runs} run(s)");
    println!(
        "| entries | MB | median | runs | entries/s | time ratio to previous size | size ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for n in SCALING {
        let (bytes, cps) = prefix(&all, &all_cps, n);
        let mut times: Vec<Duration> = (0..runs).map(|_| audit_once(bytes, &cps, pk, n)).collect();
        times.sort();
        let median = times[times.len() / 2].as_secs_f64();
        let all_runs: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect();
        let growth = previous.map_or(String::new(), |(_, t)| format!("{:.2}x", median / t));
        let size = previous.map_or(String::new(), |(m, _)| {
            format!("{:.2}x", n as f64 / m as f64)
        });
        println!(
            "| {n} | {:.1} | {median:.2} s | {} | {:.0} | {growth} | {size} |",
            bytes.len() as f64 / 1e6,
            all_runs.join(" / "),
            n as f64 / median,
        );
        previous = Some((n, median));
    }
}

/// Whether the command line asks for the scaling runs: always without a
/// filter, or when the filter names them.
fn wants_scaling() -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| "audit_scaling".contains(f.as_str()))
}

criterion_group!(benches, append, verify);

fn main() {
    benches();
    if wants_scaling() {
        scaling();
    }
    Criterion::default().configure_from_args().final_summary();
}
