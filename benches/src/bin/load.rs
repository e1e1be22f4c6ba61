//! `keyfold-load`: drives a running cluster through its REST API and reports
//! latencies, then runs the same phases in process for comparison.
//!
//! Usage (against `keyfold devnet`):
//! `cargo run --release -p keyfold-benches --bin keyfold-load -- --api http://127.0.0.1:7100 --token-file keyfold-devnet/api-token`
//!
//! Measures: online signing (from a warm presignature pool) p50/p99, full ECDSA
//! signing (HD path, so no presignature), Ed25519 signing, the pool's refill
//! rate, and in-process full signing / presignature / online step.

use std::time::{Duration, Instant};

use clap::Parser;
use keyfold_proto::api::{
    CreateKeyRequest, KeyInfo, SignMode, SignRequest, SignResult, StatusInfo, Transfer,
};
use keyfold_proto::Curve;

#[derive(Parser)]
struct Args {
    /// Coordinator API base URL.
    #[arg(long, default_value = "http://127.0.0.1:7100")]
    api: String,
    /// File holding an API token.
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// Online signatures to time (taken in bursts that fit the warm pool).
    #[arg(long, default_value_t = 40)]
    online: usize,
    /// Full ECDSA signatures to time.
    #[arg(long, default_value_t = 10)]
    full: usize,
    /// Ed25519 signatures to time.
    #[arg(long, default_value_t = 50)]
    eddsa: usize,
    /// The coordinator's presignature target (`tuning.presignatures`): bursts
    /// start from a full pool.
    #[arg(long, default_value_t = 8)]
    pool_target: usize,
    /// In-process repetitions for the comparison.
    #[arg(long, default_value_t = 5)]
    local: usize,
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| e.to_string())
    }

    async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, String> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

async fn key(api: &Api, curve: Curve) -> Result<KeyInfo, String> {
    let keys: serde_json::Value = api.get("/v1/keys").await?;
    let keys: Vec<KeyInfo> =
        serde_json::from_value(keys["keys"].clone()).map_err(|e| e.to_string())?;
    if let Some(k) = keys
        .into_iter()
        .find(|k| k.curve == curve && k.t == 2 && k.n == 3)
    {
        return Ok(k);
    }
    api.post(
        "/v1/keys",
        &CreateKeyRequest {
            curve,
            t: 2,
            n: 3,
            tier: keyfold_policy::Tier::Hot,
        },
    )
    .await
}

async fn pool(api: &Api) -> Result<usize, String> {
    Ok(api.get::<StatusInfo>("/v1/status").await?.presignatures)
}

async fn wait_pool(api: &Api, at_least: usize) -> Result<Duration, String> {
    let t0 = Instant::now();
    while pool(api).await? < at_least {
        if t0.elapsed() > Duration::from_secs(600) {
            return Err("presignature pool did not fill in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(t0.elapsed())
}

async fn sign(
    api: &Api,
    id: String,
    key: &KeyInfo,
    path: Option<&str>,
) -> Result<(Duration, SignResult), String> {
    let req = SignRequest {
        request_id: id,
        key_id: key.key_id.clone(),
        transfer: Some(Transfer {
            asset: "ETH".into(),
            amount: "1000".into(),
            destination: "0xload-test-destination".into(),
        }),
        message: None,
        hash: None,
        derivation_path: path.map(str::to_string),
    };
    let t0 = Instant::now();
    let r: SignResult = api.post("/v1/signatures", &req).await?;
    Ok((t0.elapsed(), r))
}

async fn run(args: Args) -> Result<(), String> {
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| format!("{}: {e}", args.token_file.display()))?;
    let api = Api {
        base: args.api.trim_end_matches('/').to_string(),
        token: token.trim().to_string(),
        http: reqwest::Client::new(),
    };
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let ecdsa = key(&api, Curve::Secp256k1).await?;
    let eddsa = key(&api, Curve::Ed25519).await?;
    println!("| phase (through the API) | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");

    // Online signing from a warm pool, in bursts that the pool can serve.
    let burst = 4usize;
    let mut online = Vec::new();
    let mut fallbacks = 0;
    while online.len() < args.online {
        wait_pool(&api, args.pool_target).await?;
        for _ in 0..burst {
            let (d, r) = sign(
                &api,
                format!("load-{run_id}-on-{}", online.len() + fallbacks),
                &ecdsa,
                None,
            )
            .await?;
            if r.mode == SignMode::Presignature {
                online.push(d);
            } else {
                fallbacks += 1;
            }
        }
    }
    report("ECDSA online (presignature) sign", online);

    // Refill rate: drain the pool, then time how long the coordinator's refill
    // loop takes to make `burst` presignatures.
    let mut drained = 0;
    while pool(&api).await? > 0 && drained < 1000 {
        sign(&api, format!("load-{run_id}-drain-{drained}"), &ecdsa, None).await?;
        drained += 1;
    }
    let refill = wait_pool(&api, burst).await?;

    // Full signing with a warm pool (so the refill loop is idle).
    wait_pool(&api, burst).await?;
    let mut full = Vec::new();
    for i in 0..args.full {
        let (d, r) = sign(
            &api,
            format!("load-{run_id}-full-{i}"),
            &ecdsa,
            Some("m/0/1"),
        )
        .await?;
        assert_eq!(r.mode, SignMode::Full);
        full.push(d);
    }
    report("ECDSA full sign (HD child)", full);
    let mut ed = Vec::new();
    for i in 0..args.eddsa {
        let (d, _) = sign(&api, format!("load-{run_id}-ed-{i}"), &eddsa, None).await?;
        ed.push(d);
    }
    report("Ed25519 sign", ed);
    println!(
        "\npresignature refill: {burst} presignatures in {:.2} s = {:.2} per second (2-of-3, both signers on this machine); {fallbacks} online requests fell back to full signing",
        refill.as_secs_f64(),
        burst as f64 / refill.as_secs_f64()
    );

    // The same phases in process.
    println!("\n| phase (in process, all parties on one thread) | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    let local = tokio::task::spawn_blocking(move || local_phases(args.local))
        .await
        .map_err(|e| e.to_string())??;
    for (name, samples) in local {
        report(name, samples);
    }
    Ok(())
}

fn local_phases(n: usize) -> Result<Vec<(&'static str, Vec<Duration>)>, String> {
    use keyfold_benches as b;
    use keyfold_mpc::ecdsa::{self, HashAlg};
    let threshold = keyfold_mpc::Threshold::new(2, 3).map_err(|e| e.to_string())?;
    let aux = keyfold_mpc::test_fixtures::aux_info(3);
    let shares = b::ecdsa_keygen(threshold, &aux).map_err(|e| e.to_string())?;
    let signers = b::first_signers(threshold).map_err(|e| e.to_string())?;
    let msg = b"load test payout";
    let (mut full, mut pre, mut online) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        b::ecdsa_sign(&shares, &signers, msg).map_err(|e| e.to_string())?;
        full.push(t0.elapsed());
        let t0 = Instant::now();
        let presigs = b::ecdsa_presign(&shares, &signers).map_err(|e| e.to_string())?;
        pre.push(t0.elapsed());
        let t0 = Instant::now();
        let partials: Vec<_> = presigs
            .into_iter()
            .map(|p| p.issue_partial(msg, HashAlg::Sha256))
            .collect();
        ecdsa::combine(&shares[0].public_info(), &partials, msg, HashAlg::Sha256)
            .map_err(|e| e.to_string())?;
        online.push(t0.elapsed());
    }
    Ok(vec![
        ("ECDSA full sign 2-of-3", full),
        ("ECDSA presignature 2-of-3", pre),
        (
            "ECDSA online step, both partials + combine + verify",
            online,
        ),
    ])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
