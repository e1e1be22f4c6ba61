//! The cluster as separate processes on loopback: `keyfold devnet --once`, then
//! the same cluster run by hand to exercise retries, faults and restarts.
//!
//! Signers' safe-prime pools are seeded with TEST-ONLY primes through the
//! signer store before their first start, so the test does not spend minutes
//! finding primes; aux info, key generation and signing all run for real.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyfold_mpc::test_fixtures;
use keyfold_proto::api::{KeyInfo, SignRequest, SignResult, StatusInfo};
use keyfold_proto::Curve;
use keyfold_store::seal::SoftwareSealer;
use keyfold_store::signer::SignerStore;

const BIN: &str = env!("CARGO_BIN_EXE_keyfold");

fn seed_primes(dir: &Path) {
    for i in 1..=3usize {
        let node = format!("signer-{i}");
        let node_dir = dir.join(&node);
        std::fs::create_dir_all(&node_dir).unwrap();
        let sealer = SoftwareSealer::generate_key_file(node_dir.join("sealing.key")).unwrap();
        let store = SignerStore::open(node_dir.join("signer.db"), &node, Arc::new(sealer)).unwrap();
        let primes = test_fixtures::safe_primes(i - 1).to_bytes().unwrap();
        store.put_primes(&primes).unwrap();
    }
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
        let child = Command::new(BIN)
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
        assert!(status.is_success(), "sign failed: {status} {body}");
        let res: SignResult = serde_json::from_str(&body).unwrap();
        verify(&res);
        res
    }
}

fn request(id: &str, key: &KeyInfo, msg: &[u8], path: Option<&str>) -> SignRequest {
    SignRequest {
        request_id: id.to_string(),
        key_id: key.key_id.clone(),
        message: hex::encode(msg),
        hash: None,
        derivation_path: path.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_then_signatures_faults_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = 17100 + (std::process::id() % 500) as u16 * 4;
    seed_primes(&dir);

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
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "devnet failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
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

    // 10. A second `keyfold devnet --once` on the same directory reuses
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
