//! `keyfold-sweeps-load`: what the treasury's sweeps cost and what they do to
//! payouts, against a running devnet (`keyfold devnet`, which configures a
//! treasury on its chains).
//!
//! 1. Baseline: `--probes` payouts from `--wallet` (the devnet's root
//!    secp256k1 key, a presignature payout each), one after the other: the
//!    time `POST /v1/payouts` takes (checks, nonce, policy, signing).
//! 2. Creates `--orders` native orders for a new merchant whose collection
//!    key is `--wallet` (deposit addresses are its HD children) and pays them
//!    from anvil's development account: each becomes a sweep (full
//!    threshold signing of an HD child).
//! 3. While the treasury sweeps them, the same probes run again.
//! 4. Reports sweeps per minute (first sweep created to last completed), the
//!    signers' CPU per sweep (user + system time of the `keyfold signer`
//!    processes on this machine, from `/proc`, over the sweeping phase), and
//!    the probes' median with and without sweeps running.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Sweep throughput and cost, and their effect on payouts, against a devnet")]
struct Args {
    /// The coordinator's API.
    #[arg(long, default_value = "http://127.0.0.1:7100")]
    api: String,
    /// File holding an operator token (the devnet's `api-token`).
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// The chain's JSON-RPC URL (an anvil with an unlocked dev account).
    #[arg(long)]
    rpc: String,
    /// The chain's registry id.
    #[arg(long, default_value = "devnet-l1")]
    chain: String,
    /// The paying and collection key (the devnet's secp256k1 key).
    #[arg(long)]
    wallet: String,
    /// Orders to pay (each becomes one sweep).
    #[arg(long, default_value_t = 20)]
    orders: usize,
    /// Probe payouts in each phase. Up to the pool's 8 per key they
    /// measure the online path; more drain the pool (the dry-pool case).
    #[arg(long, default_value_t = 6)]
    probes: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

use keyfold_benches::http::{Failure, Http};

/// User + system CPU seconds of every `keyfold signer` process.
fn signer_cpu_secs() -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let path = e.path();
        let Ok(cmd) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_signer = args
            .windows(2)
            .any(|w| w[0] == b"signer" && w[1] == b"--config");
        if !is_signer {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces).
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line (12 and 13
        // after the name and the state).
        if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
            total +=
                u.parse::<f64>().unwrap_or(0.0) / tick + s.parse::<f64>().unwrap_or(0.0) / tick;
        }
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits (up to 5 minutes) until the presignature pool holds enough for
/// the probes, so they measure the online path, not an empty pool.
async fn warm_pool(op: &Http, need: u64) -> Result<(), Failure> {
    let t0 = Instant::now();
    loop {
        let st = op.call(reqwest::Method::GET, "/v1/status", None).await?;
        if st["presignatures"].as_u64().unwrap_or(0) >= need {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err("the presignature pool did not refill in 5 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How the probes of `phase` were signed: (presignature, full).
async fn modes(op: &Http, tag: &str, phase: &str, n: usize) -> Result<(usize, usize), Failure> {
    let (mut pre, mut full) = (0, 0);
    for i in 0..n {
        let st = op
            .call(
                reqwest::Method::GET,
                &format!("/v1/requests/payout:probe-{tag}-{phase}-{i}"),
                None,
            )
            .await?;
        match st["result"]["mode"].as_str() {
            Some("presignature") => pre += 1,
            _ => full += 1,
        }
    }
    Ok((pre, full))
}

async fn probes(op: &Http, args: &Args, tag: &str, phase: &str) -> Result<Vec<f64>, Failure> {
    let mut out = Vec::new();
    for i in 0..args.probes {
        let t0 = Instant::now();
        let v = op
            .call(
                reqwest::Method::POST,
                "/v1/payouts",
                Some(json!({
                    "payout_id": format!("probe-{tag}-{phase}-{i}"), "wallet": args.wallet,
                    "chain": args.chain, "asset": "ETH",
                    "to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "amount": "0.0001"
                })),
            )
            .await?;
        out.push(t0.elapsed().as_secs_f64() * 1000.0);
        if v["state"] == "failed" {
            return Err(format!("probe payout failed: {v}").into());
        }
    }
    Ok(out)
}

async fn run(args: Args) -> Result<(), Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let op = Http {
        base: args.api.clone(),
        token: std::fs::read_to_string(&args.token_file)?
            .trim()
            .to_string(),
        client: client.clone(),
    };
    let tag = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let merchant = format!("sweeps-{tag}");
    op.call(
        reqwest::Method::POST,
        "/v1/merchants",
        Some(json!({ "merchant_id": merchant, "name": "sweep load", "rate_burst": 0 })),
    )
    .await?;
    op.call(
        reqwest::Method::POST,
        &format!("/v1/merchants/{merchant}/settings"),
        Some(json!({ "collection_key": args.wallet })),
    )
    .await?;
    let key = op
        .call(
            reqwest::Method::POST,
            &format!("/v1/merchants/{merchant}/keys"),
            Some(json!({ "scopes": ["orders:write", "orders:read"] })),
        )
        .await?;
    let m = Http {
        base: args.api.clone(),
        token: key["api_key"].as_str().ok_or("no api_key")?.to_string(),
        client: client.clone(),
    };

    // The pool holds `presignatures` (default 8) per root key; the
    // devnet has three secp256k1 root keys (its own and the treasury's hot
    // and gas tank): wait for the others' 16 and the probes' share.
    // More probes than the pool's 8 drain it: the dry-pool case.
    let need = 16 + args.probes.min(8) as u64;
    warm_pool(&op, need).await?;
    let baseline = probes(&op, &args, &tag, "alone").await?;
    let (pre, full) = modes(&op, &tag, "alone", args.probes).await?;
    println!(
        "probe payouts alone: {} payouts ({pre} from presignatures, {full} full), POST median {:.1} ms",
        baseline.len(),
        median(baseline.clone())
    );
    warm_pool(&op, need).await?;

    let mut addresses = Vec::new();
    for i in 0..args.orders {
        let o = m
            .call(
                reqwest::Method::POST,
                "/v1/orders",
                Some(
                    json!({ "order_id": format!("sw-{tag}-{i}"), "chain": args.chain,
                             "asset": "ETH", "amount": "0.01", "expires_in": 3600 }),
                ),
            )
            .await?;
        let address = o["address"].as_str().ok_or("no address")?.to_string();
        let dev: Value = client
            .post(&args.rpc)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}))
            .send()
            .await?
            .json()
            .await?;
        let from = dev["result"][0]
            .as_str()
            .ok_or("no dev account")?
            .to_string();
        client
            .post(&args.rpc)
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
                          "params": [{"from": from, "to": address, "value": "0x2386f26fc10000"}]}),
            )
            .send()
            .await?;
        addresses.push(address.to_ascii_lowercase());
    }
    println!(
        "{} orders of 0.01 ETH paid; waiting for their sweeps",
        addresses.len()
    );
    let cpu0 = signer_cpu_secs();
    let t0 = Instant::now();
    let during = probes(&op, &args, &tag, "sweeping").await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (mut first_created, mut last_done) = (f64::MAX, 0.0f64);
    loop {
        let list = op
            .call(
                reqwest::Method::GET,
                &format!("/v1/payouts?chain={}&limit=500", args.chain),
                None,
            )
            .await?;
        let mine: Vec<&Value> = list["payouts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["payout_id"].as_str().is_some_and(|id| {
                    addresses
                        .iter()
                        .any(|a| id.starts_with(&format!("sweep-{}-{a}-", args.chain)))
                })
            })
            .collect();
        let done: Vec<&&Value> = mine.iter().filter(|p| p["state"] == "completed").collect();
        if done.len() >= addresses.len() {
            for p in &mine {
                first_created = first_created.min(p["created_at"].as_f64().unwrap_or(f64::MAX));
                last_done = last_done.max(p["updated_at"].as_f64().unwrap_or(0.0));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} sweeps completed in time",
                done.len(),
                addresses.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cpu = signer_cpu_secs() - cpu0;
    let window = (last_done - first_created).max(1.0);
    println!(
        "sweeps: {} completed in {:.0} s from the first created to the last completed: {:.1} sweeps/min (waited {:.0} s)",
        addresses.len(),
        window,
        addresses.len() as f64 * 60.0 / window,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "signers' CPU over the sweeping phase: {:.2} s, {:.3} s per sweep (3 signers together; includes the {} probe payouts and presignature refills)",
        cpu,
        cpu / addresses.len() as f64,
        during.len()
    );
    let (a, b) = (median(baseline), median(during.clone()));
    let (pre, full) = modes(&op, &tag, "sweeping", args.probes).await?;
    println!(
        "probe payouts while sweeping ({pre} from presignatures, {full} full): POST median {:.1} ms vs {:.1} ms alone ({:.2}x)",
        b,
        a,
        if a > 0.0 { b / a } else { 0.0 }
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("keyfold-sweeps-load: {e}");
        std::process::exit(1);
    }
}
