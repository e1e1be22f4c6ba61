//! Criterion benchmarks of the risk engine: the time of one request's
//! features, decision and observation with the windows of many customers in
//! memory (1M by default, `KEYFOLD_RISK_CUSTOMERS` to change), against the
//! same request on a state that holds only its own customer.
//!
//! Run: `cargo bench -p keyfold-benches --bench risk`. Building the 1M state
//! takes a few seconds and its memory is printed before the runs.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keyfold_risk::{
    default_tree, evaluate, AuthMethod, ClientContext, EntityKind, KycTier, Payment, RiskRequest,
    RiskState,
};

const START: u64 = 1_798_761_600;

fn request(customer: usize, n: u64) -> RiskRequest {
    RiskRequest {
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount: 25_000_000 + u128::from(n % 7) * 1_000_000,
            destination: format!("0x{:040x}", customer % 50_000 + 1),
            wallet: "hot-base-usdc".into(),
            merchant: Some(format!("shop-{}", customer % 100)),
        },
        context: ClientContext {
            customer_id: Some(format!("c-{customer}")),
            device_id: Some(format!("dev-{customer}")),
            ip: None,
            country: "DE".parse().ok(),
            kyc_tier: KycTier::Basic,
            auth: vec![AuthMethod::DeviceSignature],
        },
        at: START + n,
    }
}

/// A state with `customers` customers, each having paid three times over a
/// day (so every customer has windows, a device, destinations and amounts).
fn state(customers: usize) -> RiskState {
    let mut s = RiskState::new();
    for round in 0..3u64 {
        for c in 0..customers {
            let at = round * 28_800 + (c as u64 % 28_800);
            if s.observe(&request(c, at)).is_err() {
                panic!("the bench's own requests are valid");
            }
        }
    }
    s
}

fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn per_request(c: &mut Criterion) {
    let tree = match default_tree() {
        Ok(t) => t,
        Err(e) => panic!("the default tree: {e}"),
    };
    let many: usize = std::env::var("KEYFOLD_RISK_CUSTOMERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut g = c.benchmark_group("risk/request");
    g.measurement_time(Duration::from_secs(10));
    for (label, customers) in [("1_customer", 1usize), ("many_customers", many)] {
        let mut s = state(customers);
        eprintln!(
            "risk bench: {label}: {} customers, {} devices, {} destinations held; RSS {} MiB",
            s.len(EntityKind::Customer),
            s.len(EntityKind::Device),
            s.len(EntityKind::Destination),
            rss_mib().map_or("?".into(), |m| m.to_string())
        );
        let mut n = 90_000u64;
        g.bench_function(label, |b| {
            b.iter(|| {
                // A different customer each time, moving forward in time:
                // lookups miss the cache as they would in production.
                n += 1;
                let req = request((n as usize * 7_919) % customers, n);
                let f = match s.features(&tree, &req) {
                    Ok(f) => f,
                    Err(e) => panic!("{e}"),
                };
                let d = evaluate(&tree, &f);
                if s.observe(&req).is_err() {
                    panic!("observe");
                }
                d
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
