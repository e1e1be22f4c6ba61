//! `keyfold-load`: drives a running cluster through its REST API and reports
//! latencies, then runs the same phases in process for comparison.
//!
//! Usage (against `keyfold devnet`):
//! `cargo run --release -p keyfold-benches --bin keyfold-load -- --api http://127.0.0.1:7100 --token-file keyfold-devnet/api-token`
//!
//! Measures: the API's own round trip (`GET /v1/health`), online signing (from
//! a warm presignature pool) p50/p99, full ECDSA signing (HD path, so no
//! presignature), Ed25519 signing, the pool's refill rate, and in-process full
//! signing / presignature / online step.
//!
//! Every signature it gets back is verified here with independent
//! implementations (`k256`, `ed25519-dalek`, `bip32` for the HD child key)
//! against the key the API listed; one that does not verify stops the run
//! with an error. `--json FILE` writes the figures for scripts
//! (`testnets/netns/run.sh`), `--skip refill,local` leaves phases out and
//! `--wait-live SECS` waits for a cluster that is still starting.

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_proto::api::{
    CreateKeyRequest, KeyInfo, PayoutInfo, PayoutRequest, PayoutState, SignMode, SignRequest,
    SignResult, StatusInfo, Transfer,
};
use keyfold_proto::Curve;
use serde::Serialize;

/// The HD path of the full-signing phase, and its indices for the check.
const HD_PATH: &str = "m/0/1";
const HD_INDICES: [u32; 2] = [0, 1];

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
    /// Times `GET /v1/health` this many times first: the API's own round trip,
    /// to subtract from the signing figures.
    #[arg(long, default_value_t = 10)]
    api_rtt: usize,
    /// Phases to leave out (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<Phase>,
    /// Waits up to this many seconds for the API to answer and every signer
    /// to be live before starting (0: the cluster must be up already).
    #[arg(long, default_value_t = 0)]
    wait_live: u64,
    /// Also writes the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Online signatures to time while the presignature pool refills
    /// (presignature sessions running on the same machine); 0 skips it.
    #[arg(long, default_value_t = 20)]
    refilling: usize,
    /// A second cluster to compare with, for example one built with the
    /// `bench-unguarded` feature (no policy, modules nor audit log): the
    /// online ECDSA and Ed25519 phases of both run interleaved, and the
    /// ratio is printed.
    #[arg(long)]
    baseline_api: Option<String>,
    /// The API token file of `--baseline-api`.
    #[arg(long)]
    baseline_token_file: Option<std::path::PathBuf>,
    /// Payouts to time from a warm pool (each interleaved with an online
    /// signature of a typed transfer, so both see the same machine); 0
    /// skips the payout phases. Needs `--payout-rpc`.
    #[arg(long, default_value_t = 0)]
    payouts: usize,
    /// The chain (registry id) the payouts pay on.
    #[arg(long, default_value = "devnet-l1")]
    payout_chain: String,
    /// That chain's JSON-RPC URL: the tool asks the node itself when it
    /// holds each payout's transaction (the end of "API call to broadcast").
    #[arg(long)]
    payout_rpc: Option<String>,
    /// Payouts to submit at once, 4 at a time, for the sustained rate (0
    /// skips it).
    #[arg(long, default_value_t = 0)]
    payout_sustained: usize,
}

/// Phases that `--skip` can leave out.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Draining the presignature pool and timing its refill.
    Refill,
    /// The in-process comparison.
    Local,
}

/// A signature that the independent check refused.
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    #[error("field `{0}` is not hex")]
    Hex(&'static str),
    #[error("public key {0} is not a valid key of its curve")]
    Key(String),
    #[error("the signature is not 64 bytes of a valid signature")]
    Encoding,
    #[error("the ECDSA signature is not low-S")]
    HighS,
    #[error("unsupported hash or curve in the answer")]
    Unsupported,
    #[error("the answer names key {got}, the request key {want}")]
    WrongKey { want: String, got: String },
    #[error("the answer's public key {got} is not the expected {want}")]
    WrongPublicKey { want: String, got: String },
    #[error("HD derivation of the expected child key failed: {0}")]
    Derive(String),
    #[error("the signature does not verify")]
    Invalid,
}

/// One phase's figures, in milliseconds.
#[derive(Serialize)]
struct PhaseReport {
    phase: &'static str,
    name: &'static str,
    n: usize,
    min_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// A key the run used.
#[derive(Serialize)]
struct KeyReport {
    curve: Curve,
    key_id: String,
    /// Time to create it through the API (absent when it existed already).
    created_ms: Option<f64>,
}

/// What `--json` writes.
#[derive(Serialize)]
struct Results {
    api: String,
    keys: Vec<KeyReport>,
    phases: Vec<PhaseReport>,
    local: Vec<PhaseReport>,
    /// Signatures received and verified independently (every one the API
    /// returned, including the pool-draining ones).
    signatures_verified: usize,
    online_fallbacks: usize,
    refill_per_sec: Option<f64>,
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

/// Prints one table row and returns the phase's figures (none when the phase
/// took no samples).
fn report(
    phase: &'static str,
    name: &'static str,
    mut samples: Vec<Duration>,
) -> Option<PhaseReport> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let r = PhaseReport {
        phase,
        name,
        n: samples.len(),
        min_ms: ms(samples[0]),
        p50_ms: ms(percentile(&samples, 0.5)),
        p99_ms: ms(percentile(&samples, 0.99)),
        max_ms: ms(samples[samples.len() - 1]),
    };
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        r.n, r.p50_ms, r.p99_ms, r.max_ms
    );
    Some(r)
}

/// The run's 2-of-3 key on `curve`: an existing one, else a new one (the
/// first ECDSA key of a signer group includes its aux info: minutes without
/// pregenerated primes).
async fn key(api: &Api, curve: Curve) -> Result<(KeyInfo, KeyReport), String> {
    let keys: serde_json::Value = api.get("/v1/keys").await?;
    let keys: Vec<KeyInfo> =
        serde_json::from_value(keys["keys"].clone()).map_err(|e| e.to_string())?;
    let (info, created_ms) = match keys
        .into_iter()
        .find(|k| k.curve == curve && k.t == 2 && k.n == 3)
    {
        Some(k) => (k, None),
        None => {
            eprintln!("keyfold-load: creating a 2-of-3 {curve} key");
            let t0 = Instant::now();
            let k: KeyInfo = api
                .post(
                    "/v1/keys",
                    &CreateKeyRequest {
                        client_id: Some(format!("keyfold-load-{curve}")),
                        curve,
                        t: 2,
                        n: 3,
                        tier: keyfold_policy::Tier::Hot,
                    },
                )
                .await?;
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            eprintln!("keyfold-load: key {} in {:.1} s", k.key_id, ms / 1e3);
            (k, Some(ms))
        }
    };
    let report = KeyReport {
        curve,
        key_id: info.key_id.clone(),
        created_ms,
    };
    Ok((info, report))
}

/// Waits until the API answers and every configured signer is live.
async fn wait_live(api: &Api, limit: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let last = match api.get::<StatusInfo>("/v1/status").await {
            Ok(s) if !s.signers.is_empty() && s.signers.iter().all(|h| h.live) => return Ok(()),
            Ok(s) => {
                let down: Vec<_> = s
                    .signers
                    .iter()
                    .filter(|h| !h.live)
                    .map(|h| h.node.as_str())
                    .collect();
                format!("signers not live: {}", down.join(", "))
            }
            Err(e) => e,
        };
        if t0.elapsed() >= limit {
            return Err(format!(
                "the cluster was not up within {} s ({last})",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until no signer is generating safe primes: a signer refills its
/// prime pool in the background after aux info (10-40 s of a core per pair),
/// which would otherwise compete with the phases being timed.
async fn wait_primes_idle(api: &Api, limit: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    let mut told = false;
    loop {
        let status: StatusInfo = api.get("/v1/status").await?;
        let busy: Vec<_> = status
            .signers
            .iter()
            .filter(|h| h.primes_generating.unwrap_or(0) > 0)
            .map(|h| h.node.as_str())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        if !told {
            eprintln!(
                "keyfold-load: waiting for background safe-prime generation to finish ({})",
                busy.join(", ")
            );
            told = true;
        }
        if t0.elapsed() >= limit {
            return Err(format!(
                "signers still generating safe primes after {} s: {}",
                limit.as_secs(),
                busy.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn unhex(field: &'static str, value: &str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(value).map_err(|_| VerifyError::Hex(field))
}

/// The secp256k1 child key at `path` below `key` (BIP32, unhardened), hex
/// of its compressed SEC1 encoding.
fn hd_child(key: &KeyInfo, path: &[u32]) -> Result<String, VerifyError> {
    use bip32::{ChildNumber, ExtendedKeyAttrs, XPub};
    let root = unhex("public_key", &key.public_key)?;
    let chain_code: [u8; 32] = unhex("chain_code", key.chain_code.as_deref().unwrap_or(""))?
        .try_into()
        .map_err(|_| VerifyError::Derive("the key has no 32-byte chain code".into()))?;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&root)
        .map_err(|_| VerifyError::Key(key.public_key.clone()))?;
    let mut xpub = XPub::new(
        vk,
        ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: ChildNumber(0),
            chain_code,
        },
    );
    for &i in path {
        let child = ChildNumber::new(i, false).map_err(|e| VerifyError::Derive(e.to_string()))?;
        xpub = xpub
            .derive_child(child)
            .map_err(|e| VerifyError::Derive(e.to_string()))?;
    }
    Ok(hex::encode(
        xpub.public_key().to_encoded_point(true).as_bytes(),
    ))
}

/// Checks an answer of `POST /v1/signatures` without Keyfold's own code: the
/// key is the requested one, the public key is the key's (or its HD child at
/// `path`), and the signature verifies with `k256` (low-S, over the message's
/// SHA-256 or Keccak-256) or `ed25519-dalek` (`verify_strict`).
fn verify(key: &KeyInfo, path: Option<&[u32]>, res: &SignResult) -> Result<(), VerifyError> {
    if res.key_id != key.key_id {
        return Err(VerifyError::WrongKey {
            want: key.key_id.clone(),
            got: res.key_id.clone(),
        });
    }
    let want = match path {
        Some(p) => hd_child(key, p)?,
        None => key.public_key.clone(),
    };
    if !res.public_key.eq_ignore_ascii_case(&want) {
        return Err(VerifyError::WrongPublicKey {
            want,
            got: res.public_key.clone(),
        });
    }
    let pk = unhex("public_key", &res.public_key)?;
    let msg = unhex("message", &res.message)?;
    let sig = unhex("signature", &res.signature)?;
    match res.curve {
        Curve::Secp256k1 => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            use sha2::Digest as _;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk)
                .map_err(|_| VerifyError::Key(res.public_key.clone()))?;
            let s = k256::ecdsa::Signature::from_slice(&sig).map_err(|_| VerifyError::Encoding)?;
            if s.normalize_s().is_some() {
                return Err(VerifyError::HighS);
            }
            let digest: [u8; 32] = match res.hash {
                Some(HashAlg::Sha256) => sha2::Sha256::digest(&msg).into(),
                Some(HashAlg::Keccak256) => sha3::Keccak256::digest(&msg).into(),
                _ => return Err(VerifyError::Unsupported),
            };
            vk.verify_prehash(&digest, &s)
                .map_err(|_| VerifyError::Invalid)
        }
        Curve::Ed25519 => {
            let pk: [u8; 32] = pk
                .try_into()
                .map_err(|_| VerifyError::Key(res.public_key.clone()))?;
            let sig: [u8; 64] = sig.try_into().map_err(|_| VerifyError::Encoding)?;
            ed25519_dalek::VerifyingKey::from_bytes(&pk)
                .map_err(|_| VerifyError::Key(res.public_key.clone()))?
                .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| VerifyError::Invalid)
        }
        _ => Err(VerifyError::Unsupported),
    }
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

/// Signs a small transfer, times the request end to end, and verifies the
/// answer (see [`verify`]) after the clock stopped.
async fn sign(
    api: &Api,
    id: String,
    key: &KeyInfo,
    hd: bool,
    verified: &mut usize,
) -> Result<(Duration, SignResult), String> {
    let req = SignRequest {
        request_id: id,
        key_id: key.key_id.clone(),
        transfer: Some(Transfer {
            asset: "ETH".into(),
            amount: "1000".into(),
            destination: "load-test-destination".into(),
        }),
        message: None,
        hash: None,
        derivation_path: hd.then(|| HD_PATH.to_string()),
    };
    let t0 = Instant::now();
    let r: SignResult = api.post("/v1/signatures", &req).await?;
    let took = t0.elapsed();
    verify(key, hd.then_some(&HD_INDICES[..]), &r)
        .map_err(|e| format!("signature of request {} refused: {e}", r.request_id))?;
    *verified += 1;
    Ok((took, r))
}

fn connect(base: &str, token_file: &std::path::Path) -> Result<Api, String> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("{}: {e}", token_file.display()))?;
    Ok(Api {
        base: base.trim_end_matches('/').to_string(),
        token: token.trim().to_string(),
        http: reqwest::Client::new(),
    })
}

/// Online signatures from a warm pool, in bursts the pool can serve; only
/// the ones served from a presignature count. Returns them and how many
/// fell back to full signing.
async fn online_phase(
    api: &Api,
    key: &KeyInfo,
    n: usize,
    pool_target: usize,
    tag: &str,
    verified: &mut usize,
) -> Result<(Vec<Duration>, usize), String> {
    let burst = 4usize;
    let mut online = Vec::new();
    let mut fallbacks = 0;
    while online.len() < n {
        wait_pool(api, pool_target).await?;
        for _ in 0..burst {
            let id = format!("{tag}-{}", online.len() + fallbacks);
            let (d, r) = sign(api, id, key, false, verified).await?;
            if r.mode == SignMode::Presignature {
                online.push(d);
            } else {
                fallbacks += 1;
            }
        }
    }
    Ok((online, fallbacks))
}

/// Online signatures while presignature sessions run: the pool is taken
/// below half (so its refill starts at once) and requests keep coming, one
/// every 150 ms; only those served from a presignature count.
async fn refilling_phase(
    api: &Api,
    key: &KeyInfo,
    n: usize,
    pool_target: usize,
    tag: &str,
    verified: &mut usize,
) -> Result<Vec<Duration>, String> {
    wait_pool(api, pool_target).await?;
    let mut online = Vec::new();
    let mut i = 0;
    while online.len() < n {
        if pool(api).await? == 0 {
            wait_pool(api, 1).await?;
        }
        let (d, r) = sign(api, format!("{tag}-{i}"), key, false, verified).await?;
        i += 1;
        if r.mode == SignMode::Presignature {
            online.push(d);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    Ok(online)
}

fn p50_ms(samples: &[Duration]) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    percentile(&s, 0.5).as_secs_f64() * 1e3
}

/// This cluster against a baseline cluster, interleaved in rounds so both
/// see the same machine load.
async fn compare(
    args: &Args,
    api: &Api,
    base: &Api,
    run_id: u128,
    verified: &mut usize,
) -> Result<(), String> {
    let (ecdsa, _) = key(api, Curve::Secp256k1).await?;
    let (eddsa, _) = key(api, Curve::Ed25519).await?;
    let (b_ecdsa, _) = key(base, Curve::Secp256k1).await?;
    let (b_eddsa, _) = key(base, Curve::Ed25519).await?;
    let (mut on, mut b_on, mut ed, mut b_ed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let rounds = 4usize;
    for r in 0..rounds {
        let per = args.online.div_ceil(rounds);
        let tag = format!("cmp-{run_id}-on-{r}");
        on.extend(
            online_phase(api, &ecdsa, per, args.pool_target, &tag, verified)
                .await?
                .0,
        );
        let tag = format!("cmp-{run_id}-bon-{r}");
        b_on.extend(
            online_phase(base, &b_ecdsa, per, args.pool_target, &tag, verified)
                .await?
                .0,
        );
        for i in 0..args.eddsa.div_ceil(rounds) {
            let id = format!("cmp-{run_id}-ed-{r}-{i}");
            ed.push(sign(api, id, &eddsa, false, verified).await?.0);
            let id = format!("cmp-{run_id}-bed-{r}-{i}");
            b_ed.push(sign(base, id, &b_eddsa, false, verified).await?.0);
        }
    }
    println!(
        "\n| phase (this cluster vs the baseline, interleaved) | n | p50 | baseline p50 | ratio |"
    );
    println!("|---|---|---|---|---|");
    for (name, a, b) in [
        ("ECDSA online (presignature) sign", &on, &b_on),
        ("Ed25519 sign", &ed, &b_ed),
    ] {
        let (pa, pb) = (p50_ms(a), p50_ms(b));
        println!(
            "| {name} | {} | {pa:.2} ms | {pb:.2} ms | {:.2}x |",
            a.len(),
            pa / pb
        );
    }
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let api = connect(&args.api, &args.token_file)?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if args.wait_live > 0 {
        wait_live(&api, Duration::from_secs(args.wait_live)).await?;
    }
    let (ecdsa, ecdsa_report) = key(&api, Curve::Secp256k1).await?;
    let (eddsa, eddsa_report) = key(&api, Curve::Ed25519).await?;
    wait_primes_idle(&api, Duration::from_secs(600)).await?;
    let mut phases = Vec::new();
    let mut verified = 0usize;
    println!("| phase (through the API) | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");

    // The API's own round trip (no signer involved), on the connection the
    // signing requests reuse.
    let mut rtt = Vec::new();
    for _ in 0..args.api_rtt {
        let t0 = Instant::now();
        api.get::<serde_json::Value>("/v1/health").await?;
        rtt.push(t0.elapsed());
    }
    phases.extend(report("api_rtt", "API round trip (GET /v1/health)", rtt));

    // Online signing from a warm pool, in bursts that the pool can serve.
    let burst = 4usize;
    let (online, fallbacks) = online_phase(
        &api,
        &ecdsa,
        args.online,
        args.pool_target,
        &format!("load-{run_id}-on"),
        &mut verified,
    )
    .await?;
    phases.extend(report("online", "ECDSA online (presignature) sign", online));
    if args.refilling > 0 {
        let during = refilling_phase(
            &api,
            &ecdsa,
            args.refilling,
            args.pool_target,
            &format!("load-{run_id}-refill"),
            &mut verified,
        )
        .await?;
        phases.extend(report(
            "online_refilling",
            "ECDSA online sign while the pool refills",
            during,
        ));
    }

    // Refill rate: drain the pool, then time how long the coordinator's refill
    // loop takes to make `burst` presignatures.
    let mut refill = None;
    if !args.skip.contains(&Phase::Refill) {
        let mut drained = 0;
        while pool(&api).await? > 0 && drained < 1000 {
            sign(
                &api,
                format!("load-{run_id}-drain-{drained}"),
                &ecdsa,
                false,
                &mut verified,
            )
            .await?;
            drained += 1;
        }
        refill = Some(wait_pool(&api, burst).await?);
    }

    // Full signing with a warm pool (so the refill loop is idle).
    if args.full > 0 {
        wait_pool(&api, burst.min(args.pool_target)).await?;
    }
    let mut full = Vec::new();
    for i in 0..args.full {
        let (d, r) = sign(
            &api,
            format!("load-{run_id}-full-{i}"),
            &ecdsa,
            true,
            &mut verified,
        )
        .await?;
        if r.mode != SignMode::Full {
            return Err(format!(
                "request {} with an HD path was signed from a presignature",
                r.request_id
            ));
        }
        full.push(d);
    }
    phases.extend(report("full", "ECDSA full sign (HD child)", full));
    let mut ed = Vec::new();
    for i in 0..args.eddsa {
        let (d, _) = sign(
            &api,
            format!("load-{run_id}-ed-{i}"),
            &eddsa,
            false,
            &mut verified,
        )
        .await?;
        ed.push(d);
    }
    phases.extend(report("eddsa", "Ed25519 sign", ed));
    println!();
    if let Some(refill) = refill {
        println!(
            "presignature refill: {burst} presignatures in {:.2} s = {:.2} per second (2-of-3, both signers on this machine)",
            refill.as_secs_f64(),
            burst as f64 / refill.as_secs_f64()
        );
    }
    println!(
        "{verified} signatures verified independently (k256 / ed25519-dalek, bip32 for HD children); {fallbacks} online requests fell back to full signing"
    );

    // The same phases in process.
    let mut local_reports = Vec::new();
    if !args.skip.contains(&Phase::Local) {
        println!("\n| phase (in process, all parties on one thread) | n | p50 | p99 | max |");
        println!("|---|---|---|---|---|");
        let local = tokio::task::spawn_blocking(move || local_phases(args.local))
            .await
            .map_err(|e| e.to_string())??;
        for (phase, name, samples) in local {
            local_reports.extend(report(phase, name, samples));
        }
    }

    if args.payouts > 0 || args.payout_sustained > 0 {
        let rpc = args
            .payout_rpc
            .clone()
            .ok_or("--payouts needs --payout-rpc (the chain's JSON-RPC URL)")?;
        payout_phases(&args, &api, &ecdsa, &rpc, run_id, &mut verified).await?;
    }

    if let (Some(b), Some(t)) = (&args.baseline_api, &args.baseline_token_file) {
        let base = connect(b, t)?;
        compare(&args, &api, &base, run_id, &mut verified).await?;
    }

    if let Some(path) = &args.json {
        let results = Results {
            api: api.base.clone(),
            keys: vec![ecdsa_report, eddsa_report],
            phases,
            local: local_reports,
            signatures_verified: verified,
            online_fallbacks: fallbacks,
            refill_per_sec: refill.map(|d| burst as f64 / d.as_secs_f64()),
        };
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The `result` of JSON-RPC `method` on the chain's node.
async fn rpc_result(
    http: &reqwest::Client,
    rpc: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut v: serde_json::Value = http
        .post(rpc)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(v["result"].take())
}

/// Whether the chain's node holds transaction `hash` (pending or mined).
async fn node_has(http: &reqwest::Client, rpc: &str, hash: &str) -> Result<bool, String> {
    let r = rpc_result(
        http,
        rpc,
        "eth_getTransactionByHash",
        serde_json::json!([hash]),
    )
    .await?;
    Ok(!r.is_null())
}

/// Whether the node holds a transaction of `from` at `nonce` (its pending
/// count is past it): known the moment the node accepts the bytes, whoever
/// sent them, without waiting for Keyfold to report the hash.
async fn node_has_nonce(
    http: &reqwest::Client,
    rpc: &str,
    from: &str,
    nonce: u64,
) -> Result<bool, String> {
    let r = rpc_result(
        http,
        rpc,
        "eth_getTransactionCount",
        serde_json::json!([from, "pending"]),
    )
    .await?;
    let count = r
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| format!("eth_getTransactionCount answered {r}"))?;
    Ok(count > nonce)
}

/// The addresses keccak-256(`message`) signed with `sig` recovers to (one
/// per y-parity), with k256 and sha3 alone.
fn recovers_to(message_hex: &str, sig_hex: &str) -> Result<Vec<String>, String> {
    use sha3::{Digest, Keccak256};
    let message = hex::decode(message_hex).map_err(|e| e.to_string())?;
    let digest = Keccak256::digest(&message);
    let sig = k256::ecdsa::Signature::from_slice(&hex::decode(sig_hex).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok((0u8..2)
        .filter_map(|v| {
            let id = k256::ecdsa::RecoveryId::from_byte(v)?;
            let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, id).ok()?;
            let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
            Some(format!("0x{}", hex::encode(&h[12..])))
        })
        .collect())
}

/// Checks a payout's signature independently (the sender recovered with
/// k256 over a keccak-256 of the unsigned transaction computed here) and
/// returns how it was signed.
async fn check_payout(api: &Api, p: &PayoutInfo, verified: &mut usize) -> Result<SignMode, String> {
    let r: SignResult = api.get(&format!("/v1/signatures/{}", p.request_id)).await?;
    if !recovers_to(&r.message, &r.signature)?
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&p.from))
    {
        return Err(format!(
            "payout {}: the signature does not recover to {}",
            p.payout_id, p.from
        ));
    }
    *verified += 1;
    Ok(r.mode)
}

fn payout_request(args: &Args, key: &KeyInfo, id: String) -> PayoutRequest {
    PayoutRequest {
        payout_id: id,
        wallet: key.key_id.clone(),
        chain: args.payout_chain.clone(),
        asset: "ETH".into(),
        to: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        amount: "0.000001".into(),
        reference: None,
        recent_blockhash: None,
        derivation_path: None,
        client: None,
    }
}

/// Payouts from a warm pool, each next to an online signature: the payout
/// API call until its signed bytes were accepted (its POST, until the
/// chain's node holds a transaction at the payout's nonce, checked to be
/// the payout's own after the clock stops), and the online signature's
/// POST. Then a sustained burst from one wallet.
async fn payout_phases(
    args: &Args,
    api: &Api,
    key: &KeyInfo,
    rpc: &str,
    run_id: u128,
    verified: &mut usize,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    let mut to_node = Vec::new();
    let mut post = Vec::new();
    let mut online = Vec::new();
    let mut i = 0;
    println!("\n| payouts (through the API, warm pool) | n | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    while to_node.len() < args.payouts {
        wait_pool(api, args.pool_target).await?;
        for _ in 0..2 {
            let (d, r) = sign(
                api,
                format!("load-{run_id}-po-on-{i}"),
                key,
                false,
                verified,
            )
            .await?;
            let t0 = Instant::now();
            let p: PayoutInfo = api
                .post(
                    "/v1/payouts",
                    &payout_request(args, key, format!("load-{run_id}-po-{i}")),
                )
                .await?;
            let posted = t0.elapsed();
            if matches!(p.state, PayoutState::Failed | PayoutState::Rejected) {
                return Err(format!(
                    "payout {} {}: {:?}",
                    p.payout_id, p.state, p.reason
                ));
            }
            let nonce = p
                .nonce
                .ok_or_else(|| format!("payout {} has no nonce", p.payout_id))?;
            // Until the node holds a transaction at the payout's nonce (the
            // load is the only sender from this wallet).
            while !node_has_nonce(&http, rpc, &p.from, nonce).await? {}
            let took = t0.elapsed();
            // ... and it is the payout's own.
            let hash = loop {
                let now: PayoutInfo = api.get(&format!("/v1/payouts/{}", p.payout_id)).await?;
                if let Some(h) = now.tx_hash.clone() {
                    break h;
                }
            };
            if !node_has(&http, rpc, &hash).await? {
                return Err(format!(
                    "the node holds another transaction at nonce {nonce} than payout {}'s",
                    p.payout_id
                ));
            }
            i += 1;
            let mode = check_payout(api, &p, verified).await?;
            if mode == SignMode::Presignature && r.mode == SignMode::Presignature {
                to_node.push(took);
                post.push(posted);
                online.push(d);
            }
        }
    }
    let on = p50_ms(&online);
    let to = p50_ms(&to_node);
    report(
        "online_next_to_payouts",
        "ECDSA online sign (typed transfer), interleaved",
        online,
    );
    report(
        "payout_post",
        "payout POST (checks, balance and fees, nonce, sign)",
        post,
    );
    report(
        "payout_to_node",
        "payout call until the node holds the transaction",
        to_node,
    );
    println!(
        "\npayout call to broadcast over online signing: +{:.2} ms at p50 ({:.2}x)",
        to - on,
        to / on
    );

    if args.payout_sustained > 0 {
        let n = args.payout_sustained;
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
        let t0 = Instant::now();
        let mut ids = Vec::new();
        let mut tasks = Vec::new();
        for j in 0..n {
            let id = format!("load-{run_id}-sus-{j}");
            ids.push(id.clone());
            let req = payout_request(args, key, id);
            let (base, token) = (api.base.clone(), api.token.clone());
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await;
                let a = Api {
                    base,
                    token,
                    http: reqwest::Client::new(),
                };
                a.post::<_, PayoutInfo>("/v1/payouts", &req).await
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        let signed = t0.elapsed();
        let mut hashes = Vec::new();
        for id in &ids {
            loop {
                let p: PayoutInfo = api.get(&format!("/v1/payouts/{id}")).await?;
                if let Some(h) = p.tx_hash.clone() {
                    hashes.push(h);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for h in &hashes {
            while !node_has(&http, rpc, h).await? {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let broadcast = t0.elapsed();
        let mut presig = 0;
        for id in &ids {
            loop {
                let p: PayoutInfo = api.get(&format!("/v1/payouts/{id}")).await?;
                match p.state {
                    PayoutState::Completed => {
                        if check_payout(api, &p, verified).await? == SignMode::Presignature {
                            presig += 1;
                        }
                        break;
                    }
                    PayoutState::Failed | PayoutState::Rejected => {
                        return Err(format!("payout {id} {}: {:?}", p.state, p.reason))
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        let completed = t0.elapsed();
        println!(
            "sustained, one wallet, {n} payouts 4 at a time: signed in {:.2} s ({:.1}/s), all on the node in {:.2} s ({:.1}/s), all completed in {:.2} s ({:.1}/s); {presig} of {n} from presignatures",
            signed.as_secs_f64(),
            n as f64 / signed.as_secs_f64(),
            broadcast.as_secs_f64(),
            n as f64 / broadcast.as_secs_f64(),
            completed.as_secs_f64(),
            n as f64 / completed.as_secs_f64(),
        );
    }
    Ok(())
}

type Samples = (&'static str, &'static str, Vec<Duration>);

fn local_phases(n: usize) -> Result<Vec<Samples>, String> {
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
        ("local_full", "ECDSA full sign 2-of-3", full),
        ("local_presignature", "ECDSA presignature 2-of-3", pre),
        (
            "local_online",
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
