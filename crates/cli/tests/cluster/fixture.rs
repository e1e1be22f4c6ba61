//! The cluster every test of this binary shares: `keyfold devnet --once`
//! run once, then the same data directory run by hand (three signers and a
//! coordinator as processes on loopback), so faults and restarts can be
//! driven from outside.
//!
//! Tests take the cluster in turn ([`cluster`] holds a lock) and find it
//! healthy: every node running (none frozen), the coordinator on its normal
//! configuration, every signer enforcing the coordinator's policy version.
//! A failed test so leaves nothing behind that hides the next one's result.
//!
//! Nodes are stopped when the test process ends, even on a panic or a kill:
//! a watchdog shell per node kills it once the test process is gone (a
//! static's destructor never runs), and another removes the data directory
//! (kept with `KEYFOLD_TEST_KEEP=1`, to read node logs after a failure).
//!
//! Signers' safe-prime pools are seeded with TEST-ONLY primes (`keyfold
//! devnet --seed-primes`); aux info, key generation and signing run for
//! real. With SoftHSM installed (the test command installs it), every signer
//! seals its shares in its own SoftHSM token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keyfold_mpc::test_fixtures;
use keyfold_proto::api::{KeyInfo, SignRequest, SignResult, StatusInfo, Transfer};
use keyfold_proto::Curve;
use tokio::sync::{Mutex, MutexGuard};

pub const BIN: &str = env!("CARGO_BIN_EXE_keyfold");

/// The nodes of the cluster, in start order.
pub const NODES: [&str; 4] = ["signer-1", "signer-2", "signer-3", "coordinator"];
pub const SIGNERS: [&str; 3] = ["signer-1", "signer-2", "signer-3"];

/// Marks the lines a test appended to the coordinator's configuration.
const TEST_ONLY_MARKER: &str = "\n# TEST-ONLY\n";
/// Marks the short deadlines appended to every node's configuration.
const TUNING_MARKER: &str = "\n# cluster-test tuning\n";

/// The state the tests share (behind [`cluster`]'s lock).
pub struct Shared {
    pub dir: PathBuf,
    pub port: u16,
    pub token: String,
    /// The officers' Ed25519 public keys (hex): alice, bob, carol.
    pub officers: Vec<String>,
    /// The keys `keyfold devnet --once` made.
    pub ecdsa: KeyInfo,
    pub eddsa: KeyInfo,
    /// The policy version in force and the files of the signed update that
    /// brought it (`None` while the genesis policy is in force): a signer
    /// restored from a backup starts from the genesis policy and gets it
    /// pushed again.
    pub policy_version: u64,
    pub policy_push: Option<(PathBuf, Vec<PathBuf>)>,
    /// The local chains the coordinator pays on.
    pub chains: crate::chains::Chains,
    procs: HashMap<String, Child>,
}

static FIXTURE: OnceLock<Result<Mutex<Shared>, String>> = OnceLock::new();

/// The shared cluster, healthy, for the calling test alone.
pub async fn cluster() -> Cluster {
    let fixture = FIXTURE.get_or_init(|| {
        // Set up on a thread of its own: the first caller's runtime cannot
        // block on another runtime.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(setup())
        })
        .join()
        .map(Mutex::new)
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into())
        })
    });
    let shared = match fixture {
        Ok(m) => m.lock().await,
        Err(why) => panic!("the shared cluster could not be set up: {why}"),
    };
    let mut c = Cluster {
        s: shared,
        http: reqwest::Client::new(),
    };
    c.ensure_healthy().await;
    c
}

/// TEST-ONLY prime fixtures, one file per signer, for `devnet --seed-primes`.
fn prime_files(dir: &Path) -> PathBuf {
    let primes = dir.join("test-primes");
    std::fs::create_dir_all(&primes).unwrap();
    for i in 1..=3usize {
        let bytes = test_fixtures::safe_primes(i - 1).to_bytes().unwrap();
        std::fs::write(primes.join(format!("signer-{i}.primes")), &*bytes).unwrap();
    }
    primes
}

/// Removes `dir` once this test process is gone (unless kept).
fn remove_when_done(dir: &Path) {
    if std::env::var_os("KEYFOLD_TEST_KEEP").is_some() {
        eprintln!("keeping {}", dir.display());
        return;
    }
    // The nodes' watchdogs poll every second: give them time to kill first.
    let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; sleep 3; rm -rf \"$2\"";
    let _ = Command::new("sh")
        .args(["-c", script, "sh", &std::process::id().to_string()])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// `keyfold devnet --once` with the test policy, then the nodes started by
/// hand with short deadlines.
async fn setup() -> Shared {
    let dir = tempfile::tempdir().unwrap().keep();
    remove_when_done(&dir);
    let port = 17100 + (std::process::id() % 500) as u16 * 4;
    let primes = prime_files(&dir);

    // Three treasury officers' keys, made with the CLI, and the policy naming them.
    let officers: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let path = dir.join(format!("{n}.key"));
            keyfold(&["approver", "keygen", "--out", path.to_str().unwrap()])
                .trim()
                .to_string()
        })
        .collect();
    let policy_file = dir.join("cluster-policy.toml");
    std::fs::write(&policy_file, test_policy(&officers, 1, SMALL_MAX)).unwrap();
    let check = keyfold(&["policy", "check", policy_file.to_str().unwrap()]);
    assert!(check.contains("valid policy version 1"), "{check}");

    // Certificates, 3 signers + coordinator as processes, 2-of-3 keys on
    // both curves over QUIC, one signature each.
    let out = dir.join("devnet.json");
    let run = Command::new(BIN)
        .args([
            "devnet",
            "--once",
            "--base-port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--policy")
        .arg(&policy_file)
        // Two of the officers approve the treasury's replenishments.
        .arg("--officer")
        .arg(dir.join("alice.key"))
        .arg("--officer")
        .arg(dir.join("bob.key"))
        .arg("--seed-primes")
        .arg(&primes)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "devnet failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("sealing: SoftHSM2 token per signer"),
        "signers must seal in SoftHSM tokens (run ./testnets/ensure-deps.sh):\n{stdout}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["ecdsa"]["public_key"].as_str().unwrap().len(), 66);
    assert_eq!(doc["eddsa"]["public_key"].as_str().unwrap().len(), 64);
    // The devnet paid on both chains through the MPC wallet (checked by
    // `the_devnet_json_holds_completed_payouts_on_both_chains`); its anvils
    // stopped with it. Fresh ones take their ports.
    let wallet = keyfold_chain::evm::address_of_public_key(
        &hex::decode(doc["ecdsa"]["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let chains = crate::chains::start(&dir, port, wallet).await;

    let mut s = Shared {
        dir: dir.clone(),
        port,
        token: std::fs::read_to_string(dir.join("api-token"))
            .unwrap()
            .trim()
            .to_string(),
        officers,
        // Filled in below, from the running cluster.
        ecdsa: placeholder_key(),
        eddsa: placeholder_key(),
        policy_version: 1,
        policy_push: None,
        chains,
        procs: HashMap::new(),
    };
    apply_tuning(&dir);
    for n in NODES {
        s.start(n);
    }
    let http = reqwest::Client::new();
    wait_live(&http, port, &s.token, &SIGNERS).await;
    let keys: serde_json::Value = http
        .get(format!("http://127.0.0.1:{port}/v1/keys"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<KeyInfo> = serde_json::from_value(keys["keys"].clone()).unwrap();
    let find = |curve| keys.iter().find(|k| k.curve == curve).cloned().unwrap();
    s.ecdsa = find(Curve::Secp256k1);
    s.eddsa = find(Curve::Ed25519);
    s.adopt_policy_in_force(&http).await;
    s
}

fn placeholder_key() -> KeyInfo {
    serde_json::from_value(serde_json::json!({
        "key_id": "placeholder", "curve": "secp256k1", "tier": "hot", "t": 2, "n": 3,
        "participants": [], "public_key": "", "chain_code": null, "created_at": 0
    }))
    .expect("a placeholder key")
}

/// Short deadlines so fault cases finish quickly (appended once; `keyfold
/// devnet` may rewrite the files, so [`Cluster::ensure_healthy`] calls this
/// again).
fn apply_tuning(dir: &Path) {
    for i in 1..=3 {
        append_once(
            &dir.join("config").join(format!("signer-{i}.toml")),
            "[tuning]\nround_timeout_secs = 4\n",
        );
    }
    append_once(
        &dir.join("config").join("coordinator.toml"),
        "[tuning]\npresignatures = 4\nsession_timeout_secs = 20\n",
    );
}

fn append_once(path: &Path, tuning: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    if text.contains(TUNING_MARKER) {
        return;
    }
    // The tuning goes before any TEST-ONLY section (which a test removes).
    let tail = match text.find(TEST_ONLY_MARKER) {
        Some(at) => text.split_off(at),
        None => String::new(),
    };
    text.push_str(TUNING_MARKER);
    text.push_str(tuning);
    text.push_str(&tail);
    std::fs::write(path, text).unwrap();
}

impl Shared {
    pub fn start(&mut self, name: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap();
        let kind = if name == "coordinator" {
            "coordinator"
        } else {
            "signer"
        };
        let mut cmd = Command::new(BIN);
        let softhsm = self.dir.join("softhsm").join("softhsm2.conf");
        if softhsm.exists() {
            cmd.env("SOFTHSM2_CONF", softhsm);
        }
        let child = cmd
            .args([kind, "--config"])
            .arg(self.dir.join("config").join(format!("{name}.toml")))
            .env("RUST_LOG", "info,round_based=error")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // Killed once this test process is gone (or once it exits itself).
        let script = "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; \
                      do sleep 1; done; kill -9 \"$2\" 2>/dev/null";
        let _ = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.procs.insert(name.to_string(), child);
    }

    pub fn kill(&mut self, name: &str) {
        let mut c = self.procs.remove(name).expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn kill_all(&mut self) {
        for n in NODES {
            if self.procs.contains_key(n) {
                self.kill(n);
            }
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to a running node.
    pub fn signal(&self, name: &str, signal: &str) {
        let pid = self.procs.get(name).expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {name}");
    }

    /// Whether `name` is running (started by this fixture and not exited).
    fn running(&mut self, name: &str) -> bool {
        match self.procs.get_mut(name) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The coordinator's configuration with `extra` appended as a TEST-ONLY
    /// section (`None`: without one), restarted.
    pub fn restart_coordinator(&mut self, extra_config: Option<&str>) {
        let p = self.dir.join("config").join("coordinator.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        if let Some(marker) = text.find(TEST_ONLY_MARKER) {
            text.truncate(marker);
        }
        if let Some(extra) = extra_config {
            text.push_str(TEST_ONLY_MARKER);
            text.push_str(extra);
        }
        std::fs::write(&p, text).unwrap();
        if self.procs.contains_key("coordinator") {
            self.kill("coordinator");
        }
        self.start("coordinator");
    }

    fn coordinator_has_test_section(&self) -> bool {
        let p = self.dir.join("config").join("coordinator.toml");
        std::fs::read_to_string(p)
            .map(|t| t.contains(TEST_ONLY_MARKER))
            .unwrap_or(false)
    }

    /// Takes the coordinator's policy in force as the tests' own: `keyfold
    /// devnet` pushes signed updates (its allocation claim puts a plan in
    /// force, then its policy back as a newer version), so after a devnet
    /// run the genesis version is no longer in force. Its signed update is
    /// kept in files for [`Cluster::push_policy_in_force`].
    pub async fn adopt_policy_in_force(&mut self, http: &reqwest::Client) {
        let info: keyfold_proto::api::PolicyInfo = http
            .get(format!("http://127.0.0.1:{}/v1/policy", self.port))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        self.policy_version = info.version;
        self.policy_push = info.signed_update.map(|u| {
            let v = info.version;
            let doc = self.dir.join(format!("policy-in-force-v{v}.toml"));
            std::fs::write(&doc, &u.document_toml).unwrap();
            let sigs = u
                .signatures
                .iter()
                .enumerate()
                .map(|(i, sig)| {
                    let f = self.dir.join(format!("policy-in-force-v{v}-{i}.sig.json"));
                    std::fs::write(&f, serde_json::to_string(sig).unwrap()).unwrap();
                    f
                })
                .collect();
            (doc, sigs)
        });
    }

    /// The coordinator's audit log entries, as written so far.
    pub fn coordinator_audit(&self) -> Vec<keyfold_audit::Entry> {
        let p = self
            .dir
            .join("coordinator")
            .join("audit")
            .join("entries.jsonl");
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("the coordinator's audit log {}: {e}", p.display()));
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A test's hold on the shared cluster, with an HTTP client of its own (a
/// client's connections belong to the runtime that made them).
pub struct Cluster {
    pub s: MutexGuard<'static, Shared>,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Cluster {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.s
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Shared {
        &mut self.s
    }
}

async fn status_of(http: &reqwest::Client, port: u16, token: &str) -> Option<StatusInfo> {
    let r = http
        .get(format!("http://127.0.0.1:{port}/v1/status"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn wait_live(http: &reqwest::Client, port: u16, token: &str, expect: &[&str]) {
    let t0 = Instant::now();
    loop {
        if let Some(s) = status_of(http, port, token).await {
            let live: Vec<_> = s
                .signers
                .iter()
                .filter(|h| h.live)
                .map(|h| h.node.as_str())
                .collect();
            if expect.iter().all(|e| live.contains(e)) {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "cluster not live: {expect:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Cluster {
    /// Every node running and unfrozen, the coordinator on its normal
    /// configuration, every signer live and on the policy in force.
    async fn ensure_healthy(&mut self) {
        apply_tuning(&self.dir.clone());
        // A test that failed while the L1's RPC refused broadcasts.
        self.chains
            .refuse_broadcast
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.chains
            .refuse_all
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.chains.resume_mining().await;
        // `keyfold devnet` run again on this directory (a test does) points
        // the registry at its own, stopped, chains: back to the fixture's.
        let registry = self.dir.join("config").join("chains.toml");
        let changed = std::fs::read_to_string(&registry).ok().as_deref()
            != Some(self.chains.registry.as_str());
        if changed {
            std::fs::write(&registry, &self.chains.registry).unwrap();
        }
        if self.coordinator_has_test_section() || (changed && self.s.running("coordinator")) {
            self.restart_coordinator(None);
        }
        for n in NODES {
            if self.s.running(n) {
                // A test that failed while a node was frozen.
                self.signal(n, "CONT");
            } else {
                self.s.procs.remove(n);
                self.s.start(n);
            }
        }
        self.wait_live(&SIGNERS).await;
        let status = self.status().await.expect("the coordinator answers");
        if status
            .signers
            .iter()
            .any(|h| h.policy_version != Some(status.policy_version))
        {
            self.push_policy_in_force();
        }
    }

    /// Pushes the signed update in force again (a node restored from a
    /// backup starts from the genesis policy file).
    pub fn push_policy_in_force(&self) {
        let Some((doc, sigs)) = &self.policy_push else {
            return;
        };
        let mut args = vec!["policy", "push", doc.to_str().unwrap()];
        for s in sigs {
            args.extend(["--signature", s.to_str().unwrap()]);
        }
        let api = self.url("");
        let token = self.dir.join("api-token");
        args.extend(["--api", &api, "--token-file", token.to_str().unwrap()]);
        let out = keyfold(&args);
        assert!(
            out.contains(&format!(
                "policy version {} is in force",
                self.policy_version
            )),
            "{out}"
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn status(&self) -> Option<StatusInfo> {
        status_of(&self.http, self.port, &self.token).await
    }

    pub async fn wait_live(&self, expect: &[&str]) {
        wait_live(&self.http, self.port, &self.token, expect).await
    }

    pub async fn sign(&self, req: &SignRequest) -> (reqwest::StatusCode, String) {
        let r = self
            .http
            .post(self.url("/v1/signatures"))
            .bearer_auth(&self.token)
            .json(req)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.text().await.unwrap())
    }

    /// Signs `req` (200), verifies the signature independently and checks
    /// that it covers the transfer intent of the typed fields.
    pub async fn sign_ok(&self, req: &SignRequest) -> SignResult {
        let (status, body) = self.sign(req).await;
        assert_eq!(status.as_u16(), 200, "sign failed: {status} {body}");
        let res: SignResult = serde_json::from_str(&body).unwrap();
        verify(&res);
        assert_eq!(
            hex::decode(&res.message).unwrap(),
            expected_message(req),
            "the signature must cover the transfer intent of the typed fields"
        );
        res
    }

    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> (u16, Option<T>, String) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        (status, serde_json::from_str(&body).ok(), body)
    }

    /// Polls `GET /v1/signatures/{id}` until it answers 200 (at most 30 s).
    pub async fn wait_signed(&self, id: &str) -> SignResult {
        let t0 = Instant::now();
        loop {
            let (code, res, body) = self
                .get::<SignResult>(&format!("/v1/signatures/{id}"))
                .await;
            if code == 200 {
                return res.unwrap();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{id} never signed: {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `keyfold approve|reject ID --key OFFICER.key` against this cluster.
    pub fn decide(&self, verb: &str, id: &str, officer: &str) -> String {
        let key = self.dir.join(format!("{officer}.key"));
        let token = self.dir.join("api-token");
        keyfold(&[
            verb,
            id,
            "--key",
            key.to_str().unwrap(),
            "--api",
            &self.url(""),
            "--token-file",
            token.to_str().unwrap(),
        ])
    }
}

/// Verifies a signature with k256 / ed25519-dalek (not the code that made it).
pub fn verify(res: &SignResult) {
    let pk = hex::decode(&res.public_key).unwrap();
    let msg = hex::decode(&res.message).unwrap();
    let sig = hex::decode(&res.signature).unwrap();
    match res.curve {
        Curve::Secp256k1 => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            use sha2::Digest;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
            let s = k256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert!(s.normalize_s().is_none(), "high-S");
            vk.verify_prehash(&sha2::Sha256::digest(&msg), &s)
                .expect("k256 verifies");
        }
        _ => {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk.try_into().unwrap()).unwrap();
            vk.verify_strict(
                &msg,
                &ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap()),
            )
            .expect("ed25519-dalek verifies");
        }
    }
}

/// A typed ETH transfer of `amount` to `destination`.
pub fn transfer(
    id: &str,
    key: &KeyInfo,
    amount: u128,
    destination: &str,
    path: Option<&str>,
) -> SignRequest {
    SignRequest {
        request_id: id.to_string(),
        key_id: key.key_id.clone(),
        transfer: Some(Transfer {
            asset: "ETH".into(),
            amount: amount.to_string(),
            destination: destination.to_string(),
        }),
        message: None,
        hash: None,
        derivation_path: path.map(str::to_string),
    }
}

/// A small transfer (allowed without approvals under every policy version
/// the tests put in force), to a destination identifier made from `msg`
/// (identifiers are letters, digits and `:._-`: see docs/api.md, "Field
/// formats").
pub fn request(id: &str, key: &KeyInfo, msg: &[u8], path: Option<&str>) -> SignRequest {
    let dest = format!("dest-{}", hex::encode(&msg[..msg.len().min(60)]));
    transfer(id, key, 100, &dest, path)
}

/// The transfer intent the signers must have signed for `req`, computed
/// here from the typed fields (not taken from the coordinator's answer).
pub fn expected_message(req: &SignRequest) -> Vec<u8> {
    let t = req.transfer.as_ref().unwrap();
    let wallet = match &req.derivation_path {
        Some(p) => format!("{}/{p}", req.key_id),
        None => req.key_id.clone(),
    };
    keyfold_policy::Request {
        id: req.request_id.clone(),
        wallet,
        tier: keyfold_policy::Tier::Hot,
        asset: t.asset.clone(),
        amount: t.amount.parse().unwrap(),
        destination: t.destination.clone(),
        initiator: String::new(),
        risk: None,
        origin: None,
        time: 0,
        payload: keyfold_policy::Payload::TypedTransfer,
    }
    .signing_message()
}

/// Runs the `keyfold` binary, returns stdout; panics with its output on failure.
pub fn keyfold(args: &[&str]) -> String {
    keyfold_env(args, &[])
}

/// [`keyfold`] with extra environment variables.
pub fn keyfold_env(args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "keyfold {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The largest transfer the genesis policy allows without approvals.
pub const SMALL_MAX: u128 = 1_000_000;
/// Payouts of this many base units or more need the treasury's approval (50 ETH).
pub const PAYOUT_LARGE: u128 = 50_000_000_000_000_000_000;

/// The cluster test's policy: customer payouts the risk engine scored
/// above 40 need 2 of the 3 treasury officers, ETH transfers up to
/// `small_max` are allowed, larger ones need 2 of the 3 treasury officers, transfers to `slow`
/// wait 3 s, cold (HSM) wallets need 2 officers and then wait 2 s,
/// everything else (raw bytes included) is denied. The officers are also the
/// admins (2 of 3) who sign policy updates.
pub fn test_policy(keys: &[String], version: u64, small_max: u128) -> String {
    format!(
        r#"version = {version}
name = "cluster-test"

[admins]
keys = ["{a}", "{b}", "{c}"]
quorum = 2

[[groups]]
name = "treasury"
quorum = 2
members = [
  {{ name = "alice", key = "{a}" }},
  {{ name = "bob", key = "{b}" }},
  {{ name = "carol", key = "{c}" }},
]

[[rules]]
name = "large-payouts"
tier = "hot"
chains = ["devnet-l1", "devnet-l2", "solana-devnet"]
amount = {{ min = "{payout_large}" }}
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "risky-payouts"
tier = "hot"
chains = ["devnet-l1", "devnet-l2", "solana-devnet"]
risk = {{ score_above = 40 }}
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "payouts"
tier = "hot"
chains = ["devnet-l1", "devnet-l2", "solana-devnet"]
max_fee = "10000000000000000"
action = {{ kind = "allow" }}

[[rules]]
name = "slow-destination"
tier = "hot"
assets = ["ETH"]
destination = {{ allow = ["slow"] }}
action = {{ kind = "time_lock", delay_secs = 3 }}

[[rules]]
name = "small"
tier = "hot"
assets = ["ETH"]
amount = {{ max = {small_max} }}
action = {{ kind = "allow" }}

[[rules]]
name = "large"
tier = "hot"
assets = ["ETH"]
amount = {{ min = {large_min} }}
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "cold"
tier = "cold"
action = {{ kind = "require_approvals", groups = ["treasury"], delay_secs = 2 }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny", reason = "not allowed in the cluster test" }}
"#,
        a = keys[0],
        b = keys[1],
        c = keys[2],
        large_min = small_max + 1,
        payout_large = PAYOUT_LARGE,
    )
}
