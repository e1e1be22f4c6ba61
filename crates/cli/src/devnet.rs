//! `keyfold devnet`: a local cluster on loopback, as separate processes.
//!
//! Issues certificates, writes configurations, starts three signer processes
//! and a coordinator process (this same binary), creates a 2-of-3 secp256k1 key
//! and a 2-of-3 Ed25519 key through the REST API, signs a typed transfer with
//! each (through the policy at the coordinator and at every signer), verifies
//! the signatures with k256 and ed25519-dalek, prints a summary and keeps
//! serving until interrupted. The policy is the built-in devnet policy or the
//! one given with `--policy` (written to `config/policy.toml`). All state lives under the data directory;
//! a second run reuses it (certificates, keys, aux info, presignatures).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyfold_net::Role;
use keyfold_proto::api::{
    CreateKeyRequest, KeyInfo, SignRequest, SignResult, StatusInfo, Transfer,
};
use keyfold_proto::Curve;

use crate::ca;
use crate::http::Api;

const SIGNERS: u16 = 3;
const T: u16 = 2;

/// Options of `keyfold devnet`.
pub struct Options {
    /// State directory.
    pub data_dir: PathBuf,
    /// Exit after the first signatures.
    pub once: bool,
    /// Where to write the JSON summary.
    pub out: Option<PathBuf>,
    /// API port; signers use the next three.
    pub base_port: u16,
    /// Policy document for the signers and the coordinator (default: the
    /// built-in devnet policy).
    pub policy: Option<PathBuf>,
    /// Approver keys the devnet approves its treasury's replenishments
    /// with (default: the two it makes for its own policy, if it uses it).
    pub officers: Vec<PathBuf>,
    /// TEST-ONLY: a directory of safe-prime files (`signer-N.primes`) loaded
    /// into each signer's pool before it starts, so tests skip minutes of
    /// prime generation.
    pub seed_primes: Option<PathBuf>,
    /// BENCH ONLY (builds with the `bench-unguarded` feature): nodes run
    /// without policy, modules and audit logs, to measure their cost.
    pub unguarded: bool,
}

/// How the signers seal their shares.
enum SealingChoice {
    /// A SoftHSM2 token per signer.
    SoftHsm(crate::softhsm::SoftHsm),
    /// Software sealing (SoftHSM is not installed).
    Software,
}

impl SealingChoice {
    /// The `[sealing]` section of signer `name`'s configuration.
    fn section(&self, name: &str, node_dir: &Path) -> Result<String, String> {
        Ok(match self {
            SealingChoice::SoftHsm(hsm) => {
                let label = format!("keyfold-{name}");
                let pin = hsm.token(&label)?;
                format!(
                    "[sealing]\nbackend = \"pkcs11\"\nmodule = {module:?}\ntoken_label = {label:?}\n\
                     pin = {{ file = {pin:?} }}\n",
                    module = keyfold_hsm::SOFTHSM2_MODULE,
                    pin = path_str(&pin),
                )
            }
            SealingChoice::Software => format!(
                "[sealing]\nbackend = \"key_file\"\nkey_file = {:?}\n",
                path_str(&node_dir.join("sealing.key"))
            ),
        })
    }

    /// Environment the signer processes need.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            SealingChoice::SoftHsm(hsm) => {
                vec![("SOFTHSM2_CONF".into(), path_str(&hsm.conf))]
            }
            SealingChoice::Software => Vec::new(),
        }
    }
}

/// SoftHSM when it is installed (and this devnet directory did not start
/// with software sealing), else software sealing, said in one line.
fn choose_sealing(dir: &Path) -> Result<SealingChoice, String> {
    let software_before = dir.join("config").join("signer-1.toml").exists()
        && !dir.join("softhsm").join("softhsm2.conf").exists();
    if software_before {
        println!(
            "      sealing: software key files (this devnet directory was made without SoftHSM)"
        );
        return Ok(SealingChoice::Software);
    }
    if crate::softhsm::available() {
        let hsm = crate::softhsm::SoftHsm::prepare(&dir.join("softhsm"))?;
        println!(
            "      sealing: SoftHSM2 token per signer (SOFTHSM2_CONF={})",
            hsm.conf.display()
        );
        Ok(SealingChoice::SoftHsm(hsm))
    } else {
        println!(
            "      sealing: SoftHSM2 is not installed, so signers seal shares in software (run ./testnets/ensure-deps.sh for HSM sealing)"
        );
        Ok(SealingChoice::Software)
    }
}

/// Kills the cluster's processes when dropped, so no signer outlives the devnet.
struct Cluster {
    children: Vec<(String, Child)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn check_alive(&mut self, data_dir: &Path) -> Result<(), String> {
        for (name, c) in &mut self.children {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!(
                    "{name} exited ({status}); see {}",
                    data_dir.join("logs").join(format!("{name}.log")).display()
                ));
            }
        }
        Ok(())
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Writes the configuration files (once) and returns their paths.
fn configure(
    dir: &Path,
    base_port: u16,
    policy: Option<&Path>,
    sealing: &SealingChoice,
) -> Result<(Vec<(String, PathBuf)>, PathBuf), String> {
    let ca_dir = dir.join("ca");
    let ca = ca::init(&ca_dir, "keyfold devnet CA")?;
    let conf_dir = dir.join("config");
    fs::create_dir_all(&conf_dir).map_err(|e| format!("{}: {e}", conf_dir.display()))?;
    let policy_file = conf_dir.join("policy.toml");
    match policy {
        Some(src) => {
            let text = fs::read_to_string(src).map_err(|e| format!("{}: {e}", src.display()))?;
            keyfold_policy::Policy::from_toml(&text)
                .map_err(|e| format!("policy {}: {e}", src.display()))?;
            fs::write(&policy_file, text).map_err(|e| format!("{}: {e}", policy_file.display()))?;
        }
        None if !policy_file.exists() => {
            // The built-in devnet policy with two officers made here, who
            // approve the treasury's cold spends and sign policy updates.
            let officers_dir = dir.join("officers");
            fs::create_dir_all(&officers_dir)
                .map_err(|e| format!("{}: {e}", officers_dir.display()))?;
            let mut officers = Vec::new();
            for name in ["alice", "bob"] {
                let path = officers_dir.join(format!("{name}.key"));
                let public = if path.exists() {
                    let key = crate::officer::load_key(&path)?;
                    hex::encode(key.verifying_key().to_bytes())
                } else {
                    crate::officer::keygen(&path)?
                };
                officers.push((name.to_string(), public));
            }
            fs::write(
                &policy_file,
                crate::devnet_treasury::default_policy(&officers),
            )
            .map_err(|e| format!("{}: {e}", policy_file.display()))?;
        }
        None => {}
    }
    let policy_line = format!("policy_file = {:?}\n", path_str(&policy_file));
    let mut signers = Vec::new();
    let mut entries = String::new();
    for i in 1..=SIGNERS {
        let name = format!("signer-{i}");
        let files = ca::issue(&ca_dir, &ca, &name, Role::Signer)?;
        let port = base_port + i;
        let node_dir = dir.join(&name);
        let path = conf_dir.join(format!("{name}.toml"));
        if !path.exists() {
            let text = format!(
                "# Signer {i} of the Keyfold devnet (made by `keyfold devnet`).\n\
                 {policy_line}node_id = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {dd:?}\n\n\
                 [tls]\nca_cert = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n\n{sealing}",
                dd = path_str(&node_dir),
                ca = path_str(&files.ca_cert),
                cert = path_str(&files.cert),
                key = path_str(&files.key),
                sealing = sealing.section(&name, &node_dir)?,
            );
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        add_policy_line(&path, &policy_line)?;
        apply_ports(&path, base_port)?;
        entries.push_str(&format!(
            "\n[[signers]]\nnode_id = \"{name}\"\naddr = \"127.0.0.1:{port}\"\n"
        ));
        signers.push((name, path));
    }
    let files = ca::issue(&ca_dir, &ca, "coordinator", Role::Coordinator)?;
    let coord = conf_dir.join("coordinator.toml");
    if !coord.exists() {
        // With SoftHSM, the coordinator's own token holds the cold wallets.
        let hsm = match sealing {
            SealingChoice::SoftHsm(h) => {
                let label = "keyfold-coordinator";
                let pin = h.token(label)?;
                format!(
                    "\n[hsm]\nmodule = {module:?}\ntoken_label = {label:?}\npin = {{ file = {pin:?} }}\n",
                    module = keyfold_hsm::SOFTHSM2_MODULE,
                    pin = path_str(&pin),
                )
            }
            SealingChoice::Software => String::new(),
        };
        let text = format!(
            "# Coordinator of the Keyfold devnet (made by `keyfold devnet`).\n\
             {policy_line}node_id = \"coordinator\"\napi_listen = \"127.0.0.1:{base_port}\"\ndata_dir = {dd:?}\n\n\
             [tls]\nca_cert = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n{hsm}{entries}",
            dd = path_str(&dir.join("coordinator")),
            ca = path_str(&files.ca_cert),
            cert = path_str(&files.cert),
            key = path_str(&files.key),
        );
        fs::write(&coord, text).map_err(|e| format!("{}: {e}", coord.display()))?;
    }
    add_policy_line(&coord, &policy_line)?;
    apply_ports(&coord, base_port)?;
    // The devnet's webhook receiver listens on loopback.
    let text = fs::read_to_string(&coord).map_err(|e| format!("{}: {e}", coord.display()))?;
    if !text.contains("[webhooks]") {
        fs::write(
            &coord,
            format!("{text}\n[webhooks]\nallow_private_targets = true\n"),
        )
        .map_err(|e| format!("{}: {e}", coord.display()))?;
    }
    // Customers' new devices are trusted after two seconds, so the demo
    // (and the tests on it) need not wait the production default of a day.
    let text = fs::read_to_string(&coord).map_err(|e| format!("{}: {e}", coord.display()))?;
    if !text.contains("[risk]") {
        fs::write(
            &coord,
            format!("{text}\n[risk]\nnew_device_delay_secs = 2\n"),
        )
        .map_err(|e| format!("{}: {e}", coord.display()))?;
    }
    // Schedules may pay every few seconds, so a demo shows occurrences
    // without waiting the production minimum of an hour between them.
    let text = fs::read_to_string(&coord).map_err(|e| format!("{}: {e}", coord.display()))?;
    if !text.contains("[schedules]") {
        fs::write(
            &coord,
            format!("{text}\n[schedules]\nmin_interval_secs = 2\npoll_ms = 500\n"),
        )
        .map_err(|e| format!("{}: {e}", coord.display()))?;
    }
    Ok((signers, coord))
}

/// Rewrites the addresses of a configuration this devnet wrote for
/// `base_port` (a data directory reused with another `--base-port` would
/// otherwise keep its old ports, and the cluster would never come up where
/// the devnet looks for it). Says so when it changes anything.
fn apply_ports(path: &Path, base_port: u16) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let port_of = |node: &str| -> Option<u16> {
        node.strip_prefix("signer-")
            .and_then(|i| i.parse::<u16>().ok())
            .map(|i| base_port + i)
    };
    let mut node: Option<String> = None;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let key = trimmed.split('=').next().unwrap_or("").trim();
        if key == "node_id" {
            node = trimmed.split('"').nth(1).map(str::to_string);
        }
        let port = match key {
            "api_listen" => Some(base_port),
            "listen" | "addr" => node.as_deref().and_then(port_of),
            _ => None,
        };
        match port {
            Some(p) => out.push_str(&format!("{key} = \"127.0.0.1:{p}\"")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if out != text {
        fs::write(path, &out).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!(
            "keyfold devnet: {} was written for other ports; updated for --base-port {base_port}",
            path.display()
        );
    }
    Ok(())
}

/// Configurations written before policies existed get the policy file as
/// their first line (a top-level key must precede the tables).
fn add_policy_line(path: &Path, line: &str) -> Result<(), String> {
    add_top_line(path, "policy_file", line)
}

/// Adds the top-level setting `key` as the first line of a configuration
/// that lacks it (a top-level key must precede the tables).
fn add_top_line(path: &Path, key: &str, line: &str) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !text.lines().any(|l| l.trim_start().starts_with(key)) {
        fs::write(path, format!("{line}{text}")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Result<Child, String> {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find keyfold binary: {e}"))?;
    Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,round_based=error".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))
}

/// The devnet's API token: issued once, kept (mode 0600) for the next runs.
fn token(dir: &Path) -> Result<String, String> {
    let path = dir.join("api-token");
    if let Ok(t) = fs::read_to_string(&path) {
        return Ok(t.trim().to_string());
    }
    let db = dir.join("coordinator");
    fs::create_dir_all(&db).map_err(|e| format!("{}: {e}", db.display()))?;
    let store = keyfold_store::coordinator::CoordinatorStore::open(db.join("coordinator.db"))
        .map_err(|e| format!("coordinator store: {e}"))?;
    let token = store
        .issue_token("devnet")
        .map_err(|e| format!("cannot issue an API token: {e}"))?;
    crate::write_private_new(&path, token.as_bytes())?;
    Ok(token.to_string())
}

/// Prints the signers' prime-pool state every few seconds while `work` runs.
async fn with_progress<T>(api: &Api, what: &str, work: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let detail = match api.get::<StatusInfo>("/v1/status").await {
                    Ok(s) => s.signers.iter().map(|h| match (h.primes_ready, h.primes_generating) {
                        (Some(r), Some(g)) => format!("{}: primes {r} ready, {g} generating", h.node),
                        _ => format!("{}: {}", h.node, if h.live { "busy" } else { "down" }),
                    }).collect::<Vec<_>>().join("; "),
                    Err(_) => "waiting".into(),
                };
                eprintln!("      ... {what} ({} s; {detail})", started.elapsed().as_secs());
            }
        }
    }
}

/// Runs the devnet.
pub async fn run(opts: Options) -> Result<(), String> {
    // SIGTERM (a service manager, `kill`) stops the devnet like Ctrl-C: the
    // run is dropped, and with it the cluster, whose drop kills every node
    // (without this the process died and its nodes kept running).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    tokio::select! {
        r = run_cluster(opts) => r,
        _ = term.recv() => {
            println!("terminated: stopping the cluster");
            Ok(())
        }
    }
}

async fn run_cluster(opts: Options) -> Result<(), String> {
    let dir = &opts.data_dir;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("Keyfold devnet in {}", dir.display());
    let sealing = choose_sealing(&dir)?;
    let (signers, coord) = configure(&dir, opts.base_port, opts.policy.as_deref(), &sealing)?;
    if opts.unguarded {
        for path in signers
            .iter()
            .map(|(_, p)| p)
            .chain(std::iter::once(&coord))
        {
            let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if !text.contains("\n[bench]") {
                fs::write(path, format!("{text}\n[bench]\nunguarded = true\n"))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        eprintln!("keyfold devnet: BENCH ONLY: no policy check, no modules, no audit log");
    }
    let token = token(&dir)?;
    if let Some(primes) = &opts.seed_primes {
        for (name, path) in &signers {
            let file = primes.join(format!("{name}.primes"));
            let status = spawn(
                &dir,
                name,
                &[
                    "signer",
                    "--config",
                    &path_str(path),
                    "--import-primes",
                    &path_str(&file),
                ],
                &sealing.env(),
            )?
            .wait()
            .map_err(|e| format!("importing primes into {name}: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "importing primes into {name} failed; see {}",
                    dir.join("logs").join(format!("{name}.log")).display()
                ));
            }
        }
    }
    println!(
        "[1/5] certificates and configuration ready ({} signers, 1 coordinator)",
        signers.len()
    );
    // Two local chains (anvil) with the test token, before the coordinator
    // starts: it reads their registry file.
    let chains = crate::devnet_chains::start(&dir, opts.base_port).await?;
    if let Some(c) = &chains {
        add_top_line(
            &coord,
            "chains_file",
            &format!("chains_file = {:?}\n", path_str(&c.registry_file)),
        )?;
        let text = fs::read_to_string(&coord).map_err(|e| format!("{}: {e}", coord.display()))?;
        if !text.contains("[treasury]") {
            let ids: Vec<&str> = c.chains.iter().map(|(id, _)| id.as_str()).collect();
            fs::write(
                &coord,
                format!("{text}{}", crate::devnet_treasury::config_section(&ids)),
            )
            .map_err(|e| format!("{}: {e}", coord.display()))?;
        }
        for (id, chain) in &c.chains {
            println!(
                "      chain {id}: anvil at {} (chain id {}), test token {} at {}",
                chain.anvil.url(),
                chain.anvil.chain_id(),
                keyfold_coordinator::chain_rpc::devchain::TEST_TOKEN_SYMBOL,
                chain.token.to_checksum(None)
            );
        }
    }

    let mut cluster = Cluster {
        children: Vec::new(),
    };
    for (name, path) in &signers {
        let child = spawn(
            &dir,
            name,
            &["signer", "--config", &path_str(path)],
            &sealing.env(),
        )?;
        cluster.children.push((name.clone(), child));
    }
    let child = spawn(
        &dir,
        "coordinator",
        &["coordinator", "--config", &path_str(&coord)],
        &sealing.env(),
    )?;
    cluster.children.push(("coordinator".into(), child));

    let api_addr = SocketAddr::from(([127, 0, 0, 1], opts.base_port));
    let api = Api::new(
        &format!("http://{api_addr}"),
        zeroize::Zeroizing::new(token),
        Duration::from_secs(3600),
    )?;
    // Wait for every signer to be live through the coordinator.
    let started = Instant::now();
    loop {
        cluster.check_alive(&dir)?;
        if let Ok(s) = api.get::<StatusInfo>("/v1/status").await {
            if s.signers.iter().all(|h| h.live) {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the cluster did not come up within 60 s; see the logs in {}",
                dir.join("logs").display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "[2/5] 3 signers and the coordinator are up (API http://{api_addr}, logs in {})",
        dir.join("logs").display()
    );

    let existing: serde_json::Value = api.get("/v1/keys").await?;
    let existing: Vec<KeyInfo> =
        serde_json::from_value(existing["keys"].clone()).map_err(|e| format!("/v1/keys: {e}"))?;
    let mut keys = Vec::new();
    for curve in [Curve::Secp256k1, Curve::Ed25519] {
        if let Some(k) = existing
            .iter()
            .find(|k| k.curve == curve && k.t == T && k.n == SIGNERS)
        {
            println!("[3/5] {curve} {T}-of-{SIGNERS} key {} (reused)", k.key_id);
            keys.push(k.clone());
            continue;
        }
        let hint = if curve == Curve::Secp256k1 {
            " (first run: safe primes and aux info take a minute or more)"
        } else {
            ""
        };
        println!("[3/5] creating a {curve} {T}-of-{SIGNERS} key{hint}");
        let t0 = Instant::now();
        let key: KeyInfo = with_progress(
            &api,
            "key generation",
            api.post(
                "/v1/keys",
                &CreateKeyRequest {
                    // A retry (after a timeout) answers the same key.
                    client_id: Some(format!("devnet-{curve}")),
                    curve,
                    t: T,
                    n: SIGNERS,
                    tier: keyfold_policy::Tier::Hot,
                },
            ),
        )
        .await?;
        println!(
            "      key {} in {:.1} s",
            key.key_id,
            t0.elapsed().as_secs_f64()
        );
        keys.push(key);
    }

    let run_id = hex::encode(rand_bytes());
    let mut results = Vec::new();
    for key in &keys {
        let req = SignRequest {
            request_id: format!("devnet-{run_id}-{}", key.curve),
            key_id: key.key_id.clone(),
            transfer: Some(Transfer {
                asset: "ETH".into(),
                amount: "250000".into(),
                destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            }),
            message: None,
            hash: None,
            derivation_path: None,
        };
        let t0 = Instant::now();
        let answer: serde_json::Value = match api.post("/v1/signatures", &req).await {
            Ok(a) => a,
            Err(e) if e.contains("policy_denied") => {
                println!(
                    "[4/5] {} transfer refused by the configured policy: {e}",
                    key.curve
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        if answer.get("signature").is_none() {
            let state = answer["state"].as_str().unwrap_or("waiting");
            println!(
                "[4/5] {} request {} is {state} under the configured policy; \
                 see `keyfold approvals list` and `keyfold approve`",
                key.curve, req.request_id
            );
            continue;
        }
        let res: SignResult = serde_json::from_value(answer)
            .map_err(|e| format!("/v1/signatures: unreadable answer: {e}"))?;
        verify(&res)?;
        println!(
            "[4/5] {} signature by {:?} ({:?}) in {:.0} ms, verified independently",
            key.curve,
            res.signers,
            res.mode,
            t0.elapsed().as_secs_f64() * 1000.0
        );
        println!("      public key {}", res.public_key);
        println!("      signature  {}", res.signature);
        results.push(res);
    }

    let mut payouts = Vec::new();
    let mut solana = Vec::new();
    let mut accepted = None;
    let mut treasury = Vec::new();
    let mut risk = None;
    let mut programmable = None;
    if let Some(ecdsa_key) = keys.iter().find(|k| k.curve == Curve::Secp256k1) {
        if let Some(c) = &chains {
            let address = crate::devnet_chains::fund(c, ecdsa_key).await?;
            println!(
                "[4/5] hot wallet {address} funded on both chains from anvil's development account"
            );
            payouts = crate::devnet_chains::pay(&api, c, ecdsa_key, &run_id).await?;
            // The treasury's wallets, funded before the merchant's orders
            // are paid (its settlement is paid from the hot wallet). The
            // devnet's own policy names its officers; with another one,
            // those given with --officer approve.
            let policy_file = dir.join("config").join("policy.toml");
            let own_policy = opts.policy.is_none()
                && fs::read_to_string(&policy_file)
                    .is_ok_and(|t| t.contains("cold-spends-need-two-officers"));
            let mut officer_keys = opts.officers.clone();
            if officer_keys.is_empty() && own_policy {
                officer_keys = ["alice", "bob"]
                    .iter()
                    .map(|n| dir.join("officers").join(format!("{n}.key")))
                    .filter(|p| p.exists())
                    .collect();
            }
            let officers = crate::devnet_treasury::Officers {
                keys: officer_keys,
                target: crate::officer::ApiTarget {
                    url: format!("http://{api_addr}"),
                    token_file: Some(dir.join("api-token")),
                },
            };
            let prepared = crate::devnet_treasury::prepare(
                &api,
                c,
                matches!(sealing, SealingChoice::SoftHsm(_)),
                Some(&officers),
                own_policy.then_some(policy_file.as_path()),
                &run_id,
            )
            .await?;
            accepted = Some(
                crate::devnet_orders::accept(
                    &api,
                    &format!("http://{api_addr}"),
                    c,
                    ecdsa_key,
                    &run_id,
                )
                .await?,
            );
            treasury = if prepared.stale {
                println!(
                    "      the treasury's cycle is skipped: the ledger holds an earlier run's balances on chains that are gone, against which its sweeps, replenishments and settlements would be judged (start with a fresh --data-dir to run it)"
                );
                Vec::new()
            } else {
                crate::devnet_treasury::run(&api, c, &prepared.hot, Some(&officers), &dir, &run_id)
                    .await?
            };
            // A customer's device pays, bursts into a freeze that two
            // officers lift, and the coordinator refuses forged proofs.
            risk = Some(crate::devnet_risk::run(&api, ecdsa_key, &officers, &run_id).await?);
            // A scheduled payout, and an allocation claim under a plan the
            // officers sign into the policy (then the policy goes back).
            programmable = Some(
                crate::devnet_programmable::run(&api, c, ecdsa_key, &officers, &run_id).await?,
            );
        }
    }
    if let Some(eddsa_key) = keys.iter().find(|k| k.curve == Curve::Ed25519) {
        solana.push(crate::devnet_chains::sign_solana(&api, eddsa_key, &run_id).await?);
    }

    if let Some(out) = &opts.out {
        let [e, d] = results.as_slice() else {
            return Err(format!(
                "--out needs both signatures, but the policy held {} request(s) back",
                2 - results.len()
            ));
        };
        let doc = crate::output::Summary {
            ecdsa: crate::output::EcdsaSummary {
                public_key: e.public_key.clone(),
                message: e.message.clone(),
                hash: "sha256".into(),
                signature: e.signature.clone(),
            },
            eddsa: crate::output::EddsaSummary {
                public_key: d.public_key.clone(),
                message: d.message.clone(),
                signature: d.signature.clone(),
            },
            payouts: payouts.clone(),
            solana: solana.clone(),
            merchant: accepted.as_ref().map(|a| a.merchant.clone()),
            orders: accepted
                .as_ref()
                .map(|a| a.orders.clone())
                .unwrap_or_default(),
            webhooks: accepted
                .as_ref()
                .map(|a| a.webhooks.clone())
                .unwrap_or_default(),
            treasury: treasury.clone(),
            risk: risk.clone(),
        };
        crate::devnet_programmable::write(out, &doc, programmable.as_ref())?;
        println!("[5/5] wrote {}", out.display());
    }
    println!(
        "      audit logs: `keyfold audit export --data-dir {} --out BUNDLE`, then `keyfold audit verify BUNDLE`",
        dir.display()
    );
    if opts.once {
        println!("done (--once): stopping the cluster");
        return Ok(());
    }
    println!(
        "[5/5] serving: API http://{api_addr}, token in {} — Ctrl-C to stop",
        dir.join("api-token").display()
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => cluster.check_alive(&dir)?,
        }
    }
    println!("stopping the cluster");
    Ok(())
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

/// Verifies an API answer with k256 / ed25519-dalek directly.
fn verify(res: &SignResult) -> Result<(), String> {
    let pk = hex::decode(&res.public_key).map_err(|e| e.to_string())?;
    let msg = hex::decode(&res.message).map_err(|e| e.to_string())?;
    let sig = hex::decode(&res.signature).map_err(|e| e.to_string())?;
    match res.curve {
        Curve::Secp256k1 => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).map_err(|e| e.to_string())?;
            let s = k256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
            if s.normalize_s().is_some() {
                return Err("ECDSA signature is high-S".into());
            }
            let digest = keyfold_mpc::ecdsa::HashAlg::Sha256.digest(&msg);
            vk.verify_prehash(&digest, &s)
                .map_err(|_| "ECDSA signature does not verify with k256".to_string())
        }
        _ => {
            let pk: [u8; 32] = pk.try_into().map_err(|_| "Ed25519 key is not 32 bytes")?;
            let sig: [u8; 64] = sig.try_into().map_err(|_| "signature is not 64 bytes")?;
            ed25519_dalek::VerifyingKey::from_bytes(&pk)
                .map_err(|e| e.to_string())?
                .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| "Ed25519 signature does not verify with ed25519-dalek".to_string())
        }
    }
}
