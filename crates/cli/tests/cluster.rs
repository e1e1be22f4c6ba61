//! The cluster as separate processes on loopback: `keyfold devnet --once`, then
//! the same cluster run by hand to exercise retries, faults and restarts.
//!
//! Signers' safe-prime pools are seeded with TEST-ONLY primes (`keyfold
//! devnet --seed-primes`) before their first start, so the test does not
//! spend minutes finding primes; aux info, key generation and signing all run
//! for real. With SoftHSM installed (the test command installs it), every
//! signer seals its shares in its own SoftHSM token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyfold_mpc::test_fixtures;
use keyfold_proto::api::{KeyInfo, RequestStatus, SignRequest, SignResult, StatusInfo, Transfer};
use keyfold_proto::Curve;

const BIN: &str = env!("CARGO_BIN_EXE_keyfold");

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

fn verify(res: &SignResult) {
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

struct Cluster {
    dir: PathBuf,
    port: u16,
    token: String,
    procs: HashMap<String, Child>,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.procs.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn start(&mut self, name: &str) {
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
        self.procs.insert(name.to_string(), child);
    }

    fn kill(&mut self, name: &str) {
        let mut c = self.procs.remove(name).expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn status(&self) -> Option<StatusInfo> {
        let r = self
            .http
            .get(self.url("/v1/status"))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    async fn wait_live(&self, expect: &[&str]) {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.status().await {
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

    async fn sign(&self, req: &SignRequest) -> (reqwest::StatusCode, String) {
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

    async fn sign_ok(&self, req: &SignRequest) -> SignResult {
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

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> (u16, Option<T>, String) {
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

    /// `keyfold approve|reject ID --key OFFICER.key` against this cluster.
    fn decide(&self, verb: &str, id: &str, officer: &str) -> String {
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

    fn restart_coordinator(&mut self, extra_config: Option<&str>) {
        let p = self.dir.join("config").join("coordinator.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        if let Some(marker) = text.find("\n# TEST-ONLY\n") {
            text.truncate(marker);
        }
        if let Some(extra) = extra_config {
            text.push_str("\n# TEST-ONLY\n");
            text.push_str(extra);
        }
        std::fs::write(&p, text).unwrap();
        if self.procs.contains_key("coordinator") {
            self.kill("coordinator");
        }
        self.start("coordinator");
    }
}

/// A typed ETH transfer of `amount` to `destination`.
fn transfer(
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

/// A small transfer (allowed without approvals by the test policy), to a
/// destination identifier made from `msg` (identifiers are letters, digits
/// and `:._-`: see docs/api.md, "Field formats").
fn request(id: &str, key: &KeyInfo, msg: &[u8], path: Option<&str>) -> SignRequest {
    let dest = format!("dest-{}", hex::encode(&msg[..msg.len().min(60)]));
    transfer(id, key, 100, &dest, path)
}

/// The transfer intent the signers must have signed for `req`, computed
/// here from the typed fields (not taken from the coordinator's answer).
fn expected_message(req: &SignRequest) -> Vec<u8> {
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
        time: 0,
        payload: keyfold_policy::Payload::TypedTransfer,
    }
    .signing_message()
}

/// Runs the `keyfold` binary, returns stdout; panics with its output on failure.
fn keyfold(args: &[&str]) -> String {
    keyfold_env(args, &[])
}

/// [`keyfold`] with extra environment variables.
fn keyfold_env(args: &[&str], env: &[(&str, &Path)]) -> String {
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

/// The cluster test's policy: ETH transfers up to `small_max` are allowed,
/// larger ones need 2 of the 3 treasury officers, transfers to `slow`
/// wait 3 s, cold (HSM) wallets need 2 officers and then wait 2 s,
/// everything else (raw bytes included) is denied. The officers are also the
/// admins (2 of 3) who sign policy updates.
fn test_policy(keys: &[String], version: u64, small_max: u128) -> String {
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
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_then_signatures_faults_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // KEYFOLD_TEST_KEEP=1 keeps the directory (node logs, stores, audit logs)
    // for inspection after a failure.
    let _tmp = if std::env::var_os("KEYFOLD_TEST_KEEP").is_some() {
        eprintln!("keeping {}", dir.display());
        std::mem::forget(tmp);
        None
    } else {
        Some(tmp)
    };
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
    std::fs::write(&policy_file, test_policy(&officers, 1, 1_000_000)).unwrap();
    let check = keyfold(&["policy", "check", policy_file.to_str().unwrap()]);
    assert!(check.contains("valid policy version 1"), "{check}");

    // 1. `keyfold devnet --once`: certificates, 3 signers + coordinator as
    // processes, 2-of-3 keys on both curves over QUIC, one signature each.
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

    // Short round deadlines so fault cases finish quickly.
    for i in 1..=3 {
        let p = dir.join("config").join(format!("signer-{i}.toml"));
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("\n[tuning]\nround_timeout_secs = 4\n");
        std::fs::write(&p, text).unwrap();
    }
    let p = dir.join("config").join("coordinator.toml");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("\n[tuning]\npresignatures = 4\nsession_timeout_secs = 20\n");
    std::fs::write(&p, text).unwrap();

    let mut c = Cluster {
        dir: dir.clone(),
        port,
        token: std::fs::read_to_string(dir.join("api-token"))
            .unwrap()
            .trim()
            .to_string(),
        procs: HashMap::new(),
        http: reqwest::Client::new(),
    };
    for n in ["signer-1", "signer-2", "signer-3", "coordinator"] {
        c.start(n);
    }
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;

    // 2. The keys made by the devnet survived its shutdown.
    let keys: serde_json::Value = c
        .http
        .get(c.url("/v1/keys"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<KeyInfo> = serde_json::from_value(keys["keys"].clone()).unwrap();
    let ecdsa = keys
        .iter()
        .find(|k| k.curve == Curve::Secp256k1)
        .unwrap()
        .clone();
    let eddsa = keys
        .iter()
        .find(|k| k.curve == Curve::Ed25519)
        .unwrap()
        .clone();

    // 3. 20 signatures with each key, each verified with k256 / ed25519-dalek.
    let mut modes = Vec::new();
    for i in 0..20 {
        let msg = format!("payout #{i}");
        let r = c
            .sign_ok(&request(&format!("e-{i}"), &ecdsa, msg.as_bytes(), None))
            .await;
        modes.push(r.mode);
        c.sign_ok(&request(&format!("d-{i}"), &eddsa, msg.as_bytes(), None))
            .await;
    }
    assert!(
        modes.contains(&keyfold_proto::api::SignMode::Presignature),
        "the presignature pool never served: {modes:?}"
    );

    // 4. Idempotency: a retry returns the first result; another payload under
    // the same id is a conflict.
    let first = c.sign_ok(&request("idem-1", &ecdsa, b"once", None)).await;
    let again = c.sign_ok(&request("idem-1", &ecdsa, b"once", None)).await;
    assert_eq!(first, again);
    let (status, body) = c.sign(&request("idem-1", &ecdsa, b"twice", None)).await;
    assert_eq!(status.as_u16(), 409, "{body}");
    assert!(body.contains("conflict"), "{body}");

    // 4b. Policy: raw bytes are denied by the catch-all rule.
    let raw = SignRequest {
        request_id: "raw-1".into(),
        key_id: ecdsa.key_id.clone(),
        transfer: None,
        message: Some(hex::encode(b"blind bytes")),
        hash: None,
        derivation_path: None,
    };
    let (status, body) = c.sign(&raw).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    assert!(
        body.contains("policy_denied") && body.contains("deny-all"),
        "{body}"
    );

    // 4c. A large withdrawal waits for 2 of 3 officers, approved with the CLI.
    let big = transfer("big-1", &ecdsa, 5_000_000, "treasury-payout", None);
    let (status, body) = c.sign(&big).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let st: RequestStatus = serde_json::from_str(&body).unwrap();
    assert_eq!(st.state, keyfold_proto::api::RequestState::PendingApproval);
    let listed = keyfold(&[
        "approvals",
        "list",
        "--api",
        &c.url(""),
        "--token-file",
        dir.join("api-token").to_str().unwrap(),
    ]);
    assert!(
        listed.contains("big-1") && listed.contains("treasury 0/2"),
        "{listed}"
    );
    let out = c.decide("approve", "big-1", "alice");
    assert!(out.contains("now pending_approval"), "{out}");
    // The same officer twice still counts once.
    let out = c.decide("approve", "big-1", "alice");
    assert!(out.contains("now pending_approval"), "{out}");
    let out = c.decide("approve", "big-1", "bob");
    assert!(out.contains("now completed"), "{out}");
    let (code, res, body) = c.get::<SignResult>("/v1/signatures/big-1").await;
    assert_eq!(code, 200, "{body}");
    let res = res.unwrap();
    verify(&res);
    assert_eq!(hex::decode(&res.message).unwrap(), expected_message(&big));
    // Retrying the request returns the signature.
    assert_eq!(c.sign_ok(&big).await, res);

    // 4d. A rejection by an officer denies a waiting request.
    let vetoed = transfer("big-2", &ecdsa, 7_000_000, "suspicious", None);
    let (status, body) = c.sign(&vetoed).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let out = c.decide("reject", "big-2", "carol");
    assert!(out.contains("now rejected"), "{out}");
    let (status, body) = c.sign(&vetoed).await;
    assert_eq!(status.as_u16(), 403, "{body}");

    // 4e. A time-locked transfer is released by the coordinator after 3 s.
    let slow = transfer("slow-1", &eddsa, 10, "slow", None);
    let (status, body) = c.sign(&slow).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    assert!(body.contains("time_locked"), "{body}");
    let t0 = Instant::now();
    let res = loop {
        let (code, res, body) = c.get::<SignResult>("/v1/signatures/slow-1").await;
        if code == 200 {
            break res.unwrap();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never released: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    verify(&res);
    assert!(t0.elapsed() >= Duration::from_secs(1), "released early");

    // 4g. Governance: version 2 (small transfers only up to 100) signed by
    // two admins with the CLI and pushed; one signature is not enough.
    let v2 = dir.join("policy-v2.toml");
    std::fs::write(&v2, test_policy(&officers, 2, 100)).unwrap();
    let token_file = dir.join("api-token");
    let mut sig_files = Vec::new();
    for officer in ["alice", "bob"] {
        let sig = keyfold(&[
            "policy",
            "sign",
            v2.to_str().unwrap(),
            "--key",
            dir.join(format!("{officer}.key")).to_str().unwrap(),
        ]);
        let f = dir.join(format!("v2-{officer}.sig.json"));
        std::fs::write(&f, sig.trim()).unwrap();
        sig_files.push(f);
    }
    let out = Command::new(BIN)
        .args(["policy", "push", v2.to_str().unwrap(), "--signature"])
        .arg(&sig_files[0])
        .args(["--api", &c.url(""), "--token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "one admin signature must not be enough"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only 1 valid admin signature"), "{err}");
    let out = keyfold(&[
        "policy",
        "push",
        v2.to_str().unwrap(),
        "--signature",
        sig_files[0].to_str().unwrap(),
        "--signature",
        sig_files[1].to_str().unwrap(),
        "--api",
        &c.url(""),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.contains("policy version 2 is in force"), "{out}");
    let status = c.status().await.unwrap();
    assert_eq!(status.policy_version, 2);
    assert!(
        status.signers.iter().all(|h| h.policy_version == Some(2)),
        "{status:?}"
    );
    // 5 000 units now needs approvals; 100 still signs at once.
    let (status, body) = c
        .sign(&transfer("v2-1", &ecdsa, 5_000, "under-v2", None))
        .await;
    assert_eq!(status.as_u16(), 202, "{body}");
    c.sign_ok(&transfer("v2-2", &ecdsa, 100, "under-v2", None))
        .await;

    // 4h. Cold tier: keys generated inside the coordinator's HSM, signed
    // through the same API after 2 approvals and a 2 s time lock.
    for curve in ["secp256k1", "ed25519"] {
        let r = c
            .http
            .post(c.url("/v1/keys"))
            .bearer_auth(&c.token)
            .json(&serde_json::json!({"curve": curve, "tier": "cold"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let cold: KeyInfo = r.json().await.unwrap();
        assert_eq!(cold.tier, keyfold_policy::Tier::Cold);
        assert_eq!(cold.participants, vec!["hsm".to_string()]);
        let id = format!("cold-{curve}");
        let req = transfer(&id, &cold, 42, "cold-sweep", None);
        let (status, body) = c.sign(&req).await;
        assert_eq!(status.as_u16(), 202, "{body}");
        assert!(body.contains("pending_approval"), "{body}");
        c.decide("approve", &id, "alice");
        let out = c.decide("approve", &id, "carol");
        assert!(
            out.contains("now time_locked") || out.contains("now completed"),
            "{out}"
        );
        let t0 = Instant::now();
        let res = loop {
            let (code, res, body) = c.get::<SignResult>(&format!("/v1/signatures/{id}")).await;
            if code == 200 {
                break res.unwrap();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "cold never signed: {body}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        verify(&res);
        assert_eq!(res.mode, keyfold_proto::api::SignMode::Hsm);
        assert_eq!(hex::decode(&res.message).unwrap(), expected_message(&req));
        assert_eq!(res.public_key, cold.public_key);
        // No HD derivation for cold keys.
        let (status, body) = c
            .sign(&transfer("cold-path", &cold, 1, "dest-1", Some("m/0")))
            .await;
        assert_eq!(status.as_u16(), 400, "{body}");
    }

    // 4i. The audit key in the coordinator's HSM: created once, the same
    // public key on every export (auditors verify checkpoints with it).
    let coord_conf = dir.join("config").join("coordinator.toml");
    let softhsm_env = dir.join("softhsm").join("softhsm2.conf");
    let audit_args = ["hsm", "audit-key", "--config", coord_conf.to_str().unwrap()];
    let k1 = keyfold_env(&audit_args, &[("SOFTHSM2_CONF", softhsm_env.as_path())]);
    let k2 = keyfold_env(&audit_args, &[("SOFTHSM2_CONF", softhsm_env.as_path())]);
    assert_eq!(k1.trim().len(), 64, "{k1}");
    assert_eq!(k1, k2);
    ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(k1.trim()).unwrap().try_into().unwrap())
        .expect("an Ed25519 public key");

    // 5. A signer down before the session: another quorum signs.
    c.kill("signer-1");
    let r = c
        .sign_ok(&request(
            "down-1",
            &ecdsa,
            b"signer-1 is down",
            Some("m/0/5"),
        ))
        .await;
    assert!(!r.signers.contains(&"signer-1".to_string()), "{r:?}");
    let r = c
        .sign_ok(&request("down-2", &eddsa, b"signer-1 is down", None))
        .await;
    assert!(!r.signers.contains(&"signer-1".to_string()), "{r:?}");

    // 6. The killed signer restarts with its shares and signs again: with
    // signer-2 down, the only quorum is {signer-1, signer-3}.
    c.start("signer-1");
    c.wait_live(&["signer-1"]).await;
    c.kill("signer-2");
    let r = c
        .sign_ok(&request("back-1", &ecdsa, b"signer-1 is back", Some("m/1")))
        .await;
    assert_eq!(
        r.signers,
        vec!["signer-1".to_string(), "signer-3".to_string()]
    );
    let r = c
        .sign_ok(&request("back-2", &eddsa, b"signer-1 is back", None))
        .await;
    assert_eq!(
        r.signers,
        vec!["signer-1".to_string(), "signer-3".to_string()]
    );

    // 7. With only one signer left, signing fails with a clear error, no hang.
    c.kill("signer-3");
    let t0 = Instant::now();
    let (status, body) = c
        .sign(&request("alone-1", &eddsa, b"no quorum", None))
        .await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body.contains("quorum_unavailable"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(30));

    // 8. A signer killed during a session: the session aborts within its
    // deadline and the request succeeds on another quorum.
    c.start("signer-2");
    c.start("signer-3");
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    let victim = {
        let http = c.http.clone();
        let url = c.url("/v1/signatures");
        let token = c.token.clone();
        let req = request("during-1", &ecdsa, b"killed mid-session", Some("m/7"));
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&req)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.kill("signer-1");
    let (status, body) = victim.await.unwrap();
    assert!(status.is_success(), "{status} {body}");
    let r: SignResult = serde_json::from_str(&body).unwrap();
    verify(&r);
    // The request that failed for lack of a quorum succeeds when retried
    // under the same id now that signers are back.
    let r = c
        .sign_ok(&request("alone-1", &eddsa, b"no quorum", None))
        .await;
    assert_eq!(r.request_id, "alone-1");

    // 9. The coordinator killed and restarted: keys and results survive, and a
    // retried request id returns the first result.
    c.kill("coordinator");
    c.start("coordinator");
    c.wait_live(&["signer-2", "signer-3"]).await;
    let again = c.sign_ok(&request("idem-1", &ecdsa, b"once", None)).await;
    assert_eq!(first, again);

    // 9b. Recovery drill: signer-1's shares exported to an offline recovery
    // key, its data directory and HSM token wiped, a fresh token made,
    // the backup restored; it signs again under the same group keys.
    let softhsm_conf = dir.join("softhsm").join("softhsm2.conf");
    let env = [("SOFTHSM2_CONF", softhsm_conf.as_path())];
    let recovery_key = dir.join("recovery.key");
    let recipient = keyfold(&["backup", "keygen", "--out", recovery_key.to_str().unwrap()]);
    let signer1_conf = dir.join("config").join("signer-1.toml");
    let backup = dir.join("signer-1.backup");
    keyfold_env(
        &[
            "backup",
            "export",
            "--config",
            signer1_conf.to_str().unwrap(),
            "--recipient",
            recipient.trim(),
            "--out",
            backup.to_str().unwrap(),
        ],
        &env,
    );
    std::fs::remove_dir_all(dir.join("signer-1")).unwrap();
    let softhsm = |args: &[&str]| {
        let out = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    softhsm(&["--delete-token", "--token", "keyfold-signer-1"]);
    let new_pin = "fresh-token-pin-4821";
    softhsm(&[
        "--init-token",
        "--free",
        "--label",
        "keyfold-signer-1",
        "--so-pin",
        "fresh-so-pin-7730",
        "--pin",
        new_pin,
    ]);
    let pin_file = dir.join("softhsm").join("keyfold-signer-1.pin");
    std::fs::write(&pin_file, new_pin).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let restored = keyfold_env(
        &[
            "backup",
            "restore",
            "--config",
            signer1_conf.to_str().unwrap(),
            "--identity",
            recovery_key.to_str().unwrap(),
            "--in",
            backup.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        restored.contains(&ecdsa.key_id) && restored.contains(&eddsa.key_id),
        "{restored}"
    );
    c.start("signer-1");
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    // The restored node starts from the genesis policy file: push the policy
    // in force again (the same signed update), as the runbook says.
    let out = keyfold(&[
        "policy",
        "push",
        v2.to_str().unwrap(),
        "--signature",
        sig_files[0].to_str().unwrap(),
        "--signature",
        sig_files[1].to_str().unwrap(),
        "--api",
        &c.url(""),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(out.contains("policy version 2 is in force"), "{out}");
    c.kill("signer-2");
    for key in [&ecdsa, &eddsa] {
        let r = c
            .sign_ok(&request(
                &format!("restored-{}", key.curve),
                key,
                b"after recovery",
                None,
            ))
            .await;
        assert_eq!(
            r.signers,
            vec!["signer-1".to_string(), "signer-3".to_string()]
        );
        assert_eq!(r.public_key, key.public_key, "same group key after restore");
    }

    // 10. Audit: every node's log exported and verified offline with the
    // CLI (chain, tree, checkpoint signatures, inclusion, approvals, policy
    // re-evaluation, signatures), cross-checked, then tampered with.
    c.start("signer-2");
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    // Nodes checkpoint every 5 s; killed ones checkpointed at restart.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let bundle = dir.join("audit-bundle");
    let out = keyfold(&[
        "audit",
        "export",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.contains("exported 4 logs"), "{out}");
    let out = keyfold(&["audit", "verify", bundle.to_str().unwrap()]);
    assert!(out.contains("all 4 logs verified"), "{out}");
    let coord_line = out
        .lines()
        .find(|l| l.starts_with("coordinator: OK"))
        .unwrap_or_default()
        .to_string();
    let count = |what: &str| -> u64 {
        let before = coord_line.split(what).next().unwrap_or_default();
        before
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // Keys on both curves and tiers, approvals, a denied raw request and a
    // rejected one, an aborted session, signatures (both curves, HD, cold).
    assert!(count(" keys") >= 4, "{coord_line}");
    assert!(count(" approvals verified") >= 6, "{coord_line}");
    assert!(count(" denials") >= 2, "{coord_line}");
    assert!(count(" aborted sessions") >= 1, "{coord_line}");
    assert!(count(" signatures verified") >= 40, "{coord_line}");
    assert!(count(" policy versions") >= 2, "{coord_line}");
    for s in ["signer-1: OK", "signer-2: OK", "signer-3: OK"] {
        assert!(out.contains(s), "{out}");
    }
    let out = keyfold(&["audit", "cross-check", bundle.to_str().unwrap()]);
    assert!(out.contains("cross-check OK"), "{out}");

    // An auditor who kept the first checkpoint proves the log only grew.
    let coord_dir = bundle.join("coordinator");
    let cps = std::fs::read_to_string(coord_dir.join("checkpoints.jsonl")).unwrap();
    let kept = dir.join("kept-checkpoint.json");
    std::fs::write(&kept, cps.lines().next().unwrap()).unwrap();
    let out = keyfold(&[
        "audit",
        "verify",
        bundle.to_str().unwrap(),
        "--kept",
        kept.to_str().unwrap(),
    ]);
    assert!(out.contains("was only appended to"), "{out}");

    // Tampering: each copy of the bundle is refused, naming the entry.
    let entries = std::fs::read_to_string(coord_dir.join("entries.jsonl")).unwrap();
    let lines: Vec<&str> = entries.lines().collect();
    let tampered = |name: &str, entries: String, checkpoints: Option<String>| -> String {
        let copy = dir.join(format!("audit-{name}"));
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        for log in ["coordinator", "signer-1", "signer-2", "signer-3"] {
            let to = copy.join(log);
            std::fs::create_dir_all(&to).unwrap();
            for f in ["entries.jsonl", "checkpoints.jsonl"] {
                std::fs::copy(bundle.join(log).join(f), to.join(f)).unwrap();
            }
        }
        std::fs::copy(bundle.join("keys.json"), copy.join("keys.json")).unwrap();
        std::fs::write(copy.join("coordinator").join("entries.jsonl"), entries).unwrap();
        if let Some(cp) = checkpoints {
            std::fs::write(copy.join("coordinator").join("checkpoints.jsonl"), cp).unwrap();
        }
        copy.to_str().unwrap().to_string()
    };
    let refused = |dir: &str, extra: &[&str]| -> String {
        let out = Command::new(BIN)
            .args(["audit", "verify", dir])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "tampered bundle {dir} verified");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // An approved large withdrawal's amount lowered after the fact.
    let victim = lines
        .iter()
        .position(|l| l.contains("\\\"amount\\\":5000000"))
        .expect("the approved withdrawal is in the log");
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[victim] = edited[victim].replace("\\\"amount\\\":5000000", "\\\"amount\\\":5000");
    let out = refused(&tampered("edit", edited.join("\n") + "\n", None), &[]);
    assert!(
        out.contains(&format!("FAILED: log coordinator: entry {victim}:")),
        "{out}"
    );
    // An entry deleted.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(victim);
    let out = refused(&tampered("delete", deleted.join("\n") + "\n", None), &[]);
    assert!(out.contains("FAILED: log coordinator: entry"), "{out}");
    // The tail cut off below the newest checkpoint.
    let cut = lines[..lines.len() - 3].join("\n") + "\n";
    let out = refused(&tampered("truncate", cut, None), &[]);
    assert!(out.contains("truncated"), "{out}");
    // A checkpoint signature replaced.
    let mut cp_lines: Vec<String> = cps.lines().map(str::to_string).collect();
    let last = cp_lines.len() - 1;
    let sig_at = cp_lines[last].find("\"signature\":\"").unwrap() + 13;
    let flipped = if &cp_lines[last][sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    cp_lines[last].replace_range(sig_at..sig_at + 1, flipped);
    let out = refused(
        &tampered(
            "checkpoint",
            entries.clone(),
            Some(cp_lines.join("\n") + "\n"),
        ),
        &[],
    );
    assert!(out.contains("checkpoint"), "{out}");
    // A coordinator that hides requests from its log (a consistent,
    // re-signed prefix): the signers' logs still show what they signed.
    let cp_list: Vec<&str> = cps.lines().collect();
    let middle = cp_list[cp_list.len() / 2];
    let mid: keyfold_audit::SignedCheckpoint = serde_json::from_str(middle).unwrap();
    let keep = mid.checkpoint.tree_size as usize;
    assert!(keep > 0 && keep < lines.len(), "{keep} of {}", lines.len());
    let hidden = tampered(
        "hidden",
        lines[..keep].join("\n") + "\n",
        Some(middle.to_string() + "\n"),
    );
    let out = Command::new(BIN)
        .args(["audit", "cross-check", &hidden])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("MISSING: signer-") && text.contains("has no such request"),
        "{text}"
    );
    // The hidden tail is also caught by an auditor who kept a later checkpoint.
    let newest = dir.join("newest-checkpoint.json");
    std::fs::write(&newest, cps.lines().last().unwrap()).unwrap();
    let out = refused(&hidden, &["--kept", newest.to_str().unwrap()]);
    assert!(out.contains("truncated"), "{out}");

    // 10b. Fail closed: a coordinator whose audit log refuses another entry
    // (the operator's size guard, here 1 byte) answers 503 audit_unavailable
    // and does nothing: the request does not exist afterwards.
    c.restart_coordinator(Some("audit_max_bytes = 1\n"));
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    let unlogged = transfer("unlogged-1", &ecdsa, 10, "abc", None);
    let (status, body) = c.sign(&unlogged).await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body.contains("audit_unavailable"), "{body}");
    let resp = c
        .http
        .get(c.url("/v1/requests/unlogged-1"))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    c.restart_coordinator(None);
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    verify(&c.sign_ok(&unlogged).await);

    // 11. A coordinator that skips its own policy check (TEST-ONLY switch):
    // every signer re-evaluates and refuses a large withdrawal without
    // approvals, so no signature comes out.
    c.restart_coordinator(Some("[policy]\nskip_for_tests = true\n"));
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    let sneaky = transfer("sneaky-1", &ecdsa, 9_000_000, "attacker", None);
    let (status, body) = c.sign(&sneaky).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    assert!(
        body.contains("policy refused") && body.contains("needs approvals"),
        "{body}"
    );
    let sneaky_ed = transfer("sneaky-2", &eddsa, 9_000_000, "attacker", None);
    let (status, body) = c.sign(&sneaky_ed).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    c.restart_coordinator(None);
    c.wait_live(&["signer-1", "signer-2", "signer-3"]).await;
    // The auditor catches the bypass from the coordinator's own log: it
    // recorded "needs approvals" and still opened a signing session.
    let bundle2 = dir.join("audit-bundle-2");
    keyfold(&[
        "audit",
        "export",
        "--data-dir",
        dir.to_str().unwrap(),
        "--out",
        bundle2.to_str().unwrap(),
    ]);
    let out = refused(bundle2.to_str().unwrap(), &[]);
    assert!(
        out.contains("FAILED: log coordinator: entry")
            && out.contains("request sneaky-1, which no decision allowed"),
        "{out}"
    );

    // 12. A second `keyfold devnet --once` on the same directory reuses
    // certificates and keys.
    for n in ["signer-1", "signer-2", "signer-3", "coordinator"] {
        if c.procs.contains_key(n) {
            c.kill(n);
        }
    }
    let run = Command::new(BIN)
        .args([
            "devnet",
            "--once",
            "--base-port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "second devnet run failed:\n{stdout}");
    assert!(
        stdout.contains(&format!("key {} (reused)", ecdsa.key_id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("key {} (reused)", eddsa.key_id)),
        "{stdout}"
    );
}
