//! `keyfold-orders-load`: the payment-order path under load, against a
//! running devnet (`keyfold devnet`).
//!
//! 1. Creates a merchant (no rate limit), its API key and a webhook endpoint
//!    served by a receiver inside this tool; the merchant's collection key
//!    is the devnet's secp256k1 key.
//! 2. Creates `--orders` orders through the API, `--concurrency` at a time:
//!    orders per second and the latency of one.
//! 3. Pays every order at once from anvil's development account (a burst of
//!    deposits), then waits for each order's `order.settled` webhook: how
//!    many deposits each block held, how long after its block each deposit
//!    was announced (block time to webhook received), and webhook
//!    deliveries per second.
//!
//! Webhook signatures are not verified here (the tests do that with the
//! reference library); this tool counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Load test of payment orders, deposits and webhooks against a devnet")]
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
    /// Orders to create and pay.
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    /// Order creations in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Give up waiting for settlement after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

use keyfold_benches::http::{Failure, Http};

async fn rpc(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    params: Value,
) -> Result<Value, Failure> {
    let v: Value = client
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
        .send()
        .await?
        .json()
        .await?;
    if let Some(e) = v.get("error") {
        return Err(format!("{method}: {e}").into());
    }
    Ok(v["result"].clone())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn run(args: Args) -> Result<(), Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()?;
    let token = std::fs::read_to_string(&args.token_file)?
        .trim()
        .to_string();
    let op = Http {
        base: args.api.clone(),
        token,
        client: client.clone(),
    };
    let tag = format!("{:x}", (unix_now() * 1000.0) as u64);
    let merchant = format!("load-{tag}");
    op.call(
        reqwest::Method::POST,
        "/v1/merchants",
        Some(json!({ "merchant_id": merchant, "name": "load test", "rate_burst": 0 })),
    )
    .await?;
    let key = op
        .call(
            reqwest::Method::POST,
            &format!("/v1/merchants/{merchant}/keys"),
            Some(json!({ "scopes": ["orders:read", "orders:write", "webhooks:manage"] })),
        )
        .await?;
    let keys = op.call(reqwest::Method::GET, "/v1/keys", None).await?;
    let collection = keys["keys"]
        .as_array()
        .and_then(|ks| {
            ks.iter()
                .find(|k| k["curve"] == "secp256k1" && k["tier"] != "cold")
        })
        .and_then(|k| k["key_id"].as_str())
        .ok_or("the devnet has no secp256k1 key: run keyfold devnet first")?
        .to_string();
    op.call(
        reqwest::Method::POST,
        &format!("/v1/merchants/{merchant}/settings"),
        Some(json!({ "collection_key": collection })),
    )
    .await?;
    let m = Arc::new(Http {
        base: args.api.clone(),
        token: key["api_key"].as_str().ok_or("no api_key")?.to_string(),
        client: client.clone(),
    });

    // The receiver: (arrival time, order id, type) of every delivery.
    let got: Arc<Mutex<Vec<(f64, String, String)>>> = Arc::default();
    let g = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    g.lock().unwrap_or_else(|p| p.into_inner()).push((
                        unix_now(),
                        v["data"]["order_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        v["type"].as_str().unwrap_or_default().to_string(),
                    ));
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    m.call(
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({ "url": url, "filters": ["order.*"] })),
    )
    .await?;

    // 1. Orders per second.
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    let mut orders: Vec<(String, String, String)> = Vec::new();
    let ids: Vec<String> = (0..args.orders).map(|i| format!("{tag}-{i}")).collect();
    for chunk in ids.chunks(args.concurrency.max(1)) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|id| {
                let (m, id, chain) = (m.clone(), id.clone(), args.chain.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let o = m
                        .call(
                            reqwest::Method::POST,
                            "/v1/orders",
                            Some(json!({ "order_id": id, "chain": chain, "asset": "ETH",
                                         "amount": "0.001", "expires_in": 3600 })),
                        )
                        .await?;
                    Ok::<_, Failure>((t.elapsed().as_secs_f64() * 1e3, id, o))
                })
            })
            .collect();
        for t in tasks {
            let (ms, id, o) = t.await??;
            latencies.push(ms);
            orders.push((
                id,
                o["address"].as_str().unwrap_or_default().to_string(),
                o["amount_base_units"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    let create_secs = t0.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!("| measure | value |\n|---|---|");
    println!(
        "| orders created | {} in {create_secs:.2} s: {:.0}/s ({} at a time) |",
        orders.len(),
        orders.len() as f64 / create_secs,
        args.concurrency
    );
    println!(
        "| order creation latency | p50 {:.1} ms, p99 {:.1} ms |",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99)
    );

    // 2. The burst: every order paid at once from the dev account.
    let dev = rpc(&client, &args.rpc, "eth_accounts", json!([])).await?[0]
        .as_str()
        .ok_or("no dev account")?
        .to_string();
    let t1 = Instant::now();
    let mut hashes: HashMap<String, String> = HashMap::new();
    for (id, address, wei) in &orders {
        let value = format!("0x{:x}", wei.parse::<u128>()?);
        let h = rpc(
            &client,
            &args.rpc,
            "eth_sendTransaction",
            json!([{ "from": dev, "to": address, "value": value }]),
        )
        .await?;
        hashes.insert(id.clone(), h.as_str().unwrap_or_default().to_string());
    }
    let send_secs = t1.elapsed().as_secs_f64();
    println!(
        "| burst sent | {} deposits in {send_secs:.2} s |",
        hashes.len()
    );

    // 3. Until every order's settlement webhook arrived.
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let settled = got
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, _, t)| t == "order.settled")
            .count();
        if settled >= orders.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{settled} of {} orders settled in time", orders.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_settled = t1.elapsed().as_secs_f64() - send_secs;
    // Blocks and their deposits, from the receipts.
    let mut block_of: HashMap<String, (u64, f64)> = HashMap::new();
    let mut per_block: HashMap<u64, usize> = HashMap::new();
    let mut block_time: HashMap<u64, f64> = HashMap::new();
    for (id, h) in &hashes {
        let r = rpc(&client, &args.rpc, "eth_getTransactionReceipt", json!([h])).await?;
        let n = u64::from_str_radix(
            r["blockNumber"]
                .as_str()
                .unwrap_or("0x0")
                .trim_start_matches("0x"),
            16,
        )?;
        *per_block.entry(n).or_default() += 1;
        if let std::collections::hash_map::Entry::Vacant(e) = block_time.entry(n) {
            let b = rpc(
                &client,
                &args.rpc,
                "eth_getBlockByNumber",
                json!([format!("0x{n:x}"), false]),
            )
            .await?;
            e.insert(u64::from_str_radix(
                b["timestamp"]
                    .as_str()
                    .unwrap_or("0x0")
                    .trim_start_matches("0x"),
                16,
            )? as f64);
        }
        block_of.insert(id.clone(), (n, block_time[&n]));
    }
    let deliveries = got.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut first_seen: HashMap<&str, f64> = HashMap::new();
    for (t, id, _) in &deliveries {
        first_seen
            .entry(id.as_str())
            .and_modify(|x| *x = x.min(*t))
            .or_insert(*t);
    }
    let mut lag: Vec<f64> = orders
        .iter()
        .filter_map(|(id, _, _)| Some(first_seen.get(id.as_str())? - block_of.get(id)?.1))
        .collect();
    lag.sort_by(f64::total_cmp);
    let mut sizes: Vec<usize> = per_block.values().copied().collect();
    sizes.sort_unstable();
    println!(
        "| deposits per block | {} blocks: median {}, max {} |",
        sizes.len(),
        sizes.get(sizes.len() / 2).copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0)
    );
    println!(
        "| block time to first webhook (seen, announced) | p50 {:.2} s, p99 {:.2} s, max {:.2} s (block times have 1 s resolution) |",
        pct(&lag, 0.5),
        pct(&lag, 0.99),
        lag.last().copied().unwrap_or(0.0)
    );
    let (first, last) = deliveries
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), (t, _, _)| {
            (a.min(*t), b.max(*t))
        });
    println!(
        "| webhook deliveries | {} in {:.2} s: {:.0}/s |",
        deliveries.len(),
        last - first,
        deliveries.len() as f64 / (last - first).max(0.001)
    );
    println!("| burst to all settled | {all_settled:.2} s after the last deposit was sent |");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold-orders-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
