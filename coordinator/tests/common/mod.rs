//! A real coordinator (store, journal, audit log, policy, lifecycle, REST
//! API) with in-process signers (`keyfold_coordinator::testing`) and a
//! manual clock, serving its API on a loopback port.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use keyfold_coordinator::clock::ManualClock;
use keyfold_coordinator::modules::Modules;
use keyfold_coordinator::testing::FakeSigners;
use keyfold_coordinator::{Coordinator, CoordinatorConfig, Parts};
use keyfold_proto::api::{CreateKeyRequest, KeyInfo};
use keyfold_proto::Curve;
use serde_json::Value;
use tokio::sync::Notify;

/// A policy: transfers up to 1000 signed at once; up to 5000 need 2 of 3
/// treasury officers; above, a 60 s time lock; a deny list; everything
/// else denied.
pub const POLICY: &str = r#"
version = 1
name = "lifecycle-test"

[admins]
keys = ["ADMIN1", "ADMIN2"]
quorum = 2

[[groups]]
name = "treasury"
quorum = 2
members = [
  { name = "alice", key = "ALICE", client = "ops-alice" },
  { name = "bob", key = "BOB" },
  { name = "carol", key = "CAROL" },
]

[[rules]]
name = "sanctioned"
destination = { allow = ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"] }
action = { kind = "deny", reason = "sanctioned address" }

[[rules]]
name = "small"
tier = "hot"
assets = ["ETH"]
amount = { max = 1000 }
action = { kind = "allow" }

[[rules]]
name = "medium"
tier = "hot"
assets = ["ETH"]
amount = { min = 1001, max = 5000 }
action = { kind = "require_approvals", groups = ["treasury"] }

[[rules]]
name = "large"
tier = "hot"
assets = ["ETH"]
amount = { min = 5001 }
action = { kind = "time_lock", delay_secs = 60 }

[[rules]]
name = "deny-all"
action = { kind = "deny" }
"#;

/// Officer keys by seed: 1 admin1, 2 admin2, 3 alice, 4 bob, 5 carol.
pub fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> String {
    hex::encode(key(seed).verifying_key().to_bytes())
}

/// [`POLICY`] with the test keys in it.
pub fn policy() -> String {
    POLICY
        .replace("ADMIN1", &pk(1))
        .replace("ADMIN2", &pk(2))
        .replace("ALICE", &pk(3))
        .replace("BOB", &pk(4))
        .replace("CAROL", &pk(5))
}

/// A stopped coordinator's directory, signers and client tokens.
pub struct Stopped {
    pub dir: tempfile::TempDir,
    pub signers: FakeSigners,
    pub tokens: std::collections::HashMap<String, String>,
}

impl Stopped {
    /// The store's database file.
    pub fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("data/coordinator.db")
    }

    /// Starts a coordinator again on this directory; the clients keep their
    /// tokens (a new token must be in the audit log before its first use).
    pub async fn start(self, extra_tuning: &str) -> Env {
        self.start_with("", extra_tuning).await
    }

    /// [`Stopped::start`] with top-level settings `top`.
    pub async fn start_with(self, top: &str, extra_tuning: &str) -> Env {
        let mut env = start_in_with(
            self.dir,
            self.signers,
            Modules::default(),
            top,
            extra_tuning,
        )
        .await;
        env.tokens = self.tokens;
        env
    }
}

/// The running coordinator and what tests drive it with.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub coordinator: Arc<Coordinator>,
    pub signers: FakeSigners,
    pub clock: ManualClock,
    pub url: String,
    pub tokens: std::collections::HashMap<String, String>,
    pub http: reqwest::Client,
    stop: Vec<Arc<Notify>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for s in &self.stop {
            s.notify_one();
        }
        self.server.abort();
    }
}

/// The configuration of a coordinator in `dir` with three signers.
pub fn config(dir: &Path, extra_tuning: &str) -> CoordinatorConfig {
    config_with(dir, "", extra_tuning)
}

/// [`config`] with top-level settings `top` (such as `chains_file`).
pub fn config_with(dir: &Path, top: &str, extra_tuning: &str) -> CoordinatorConfig {
    let policy_file = dir.join("policy.toml");
    if !policy_file.exists() {
        std::fs::write(&policy_file, policy()).unwrap();
    }
    let text = format!(
        r#"
node_id = "coordinator"
data_dir = {data:?}
{top}
policy_file = {policy:?}
[tls]
ca_cert = "/nonexistent/ca.pem"
cert = "/nonexistent/c.pem"
key = "/nonexistent/c.key"
[[signers]]
node_id = "signer-1"
addr = "127.0.0.1:1"
[[signers]]
node_id = "signer-2"
addr = "127.0.0.1:2"
[[signers]]
node_id = "signer-3"
addr = "127.0.0.1:3"
[tuning]
request_expiry_secs = 600
{extra_tuning}
"#,
        data = dir.join("data"),
        policy = policy_file,
    );
    toml::from_str(&text).unwrap()
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Starts a coordinator with `modules`, serves its API, issues tokens for
/// the clients `payments`, `other` and `ops-alice`.
pub async fn start(modules: Modules, extra_tuning: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, FakeSigners::new(), modules, extra_tuning).await
}

/// Like [`start`], in an existing directory and with given signers.
pub async fn start_in(
    dir: tempfile::TempDir,
    signers: FakeSigners,
    modules: Modules,
    extra_tuning: &str,
) -> Env {
    start_in_with(dir, signers, modules, "", extra_tuning).await
}

/// Like [`start_in`], with top-level settings `top`.
pub async fn start_in_with(
    dir: tempfile::TempDir,
    signers: FakeSigners,
    modules: Modules,
    top: &str,
    extra_tuning: &str,
) -> Env {
    let clock = ManualClock::at_ms(now_secs() * 1000);
    let cfg = config_with(dir.path(), top, extra_tuning);
    let parts = Parts {
        transport: Some(Arc::new(signers.clone())),
        clock: Arc::new(clock.clone()),
        modules,
    };
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start_with(cfg, parts))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("start: {e}"));
    let mut tokens = std::collections::HashMap::new();
    for name in ["payments", "other", "ops-alice"] {
        // Kept by `restart` when they exist already.
        if let Ok(t) = coordinator.store().issue_token(name) {
            tokens.insert(name.to_string(), t.to_string());
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = keyfold_coordinator::api::router(
        coordinator.clone(),
        keyfold_coordinator::api::ApiLimits::default(),
    );
    let server = tokio::spawn(async move {
        let _ = keyfold_coordinator::api::serve(listener, router, std::future::pending()).await;
    });
    let stop: Vec<Arc<Notify>> = (0..1).map(|_| Arc::new(Notify::new())).collect();
    tokio::spawn(coordinator.clone().timer_loop(stop[0].clone()));
    Env {
        dir,
        coordinator,
        signers,
        clock,
        url,
        tokens,
        http: reqwest::Client::new(),
        stop,
        server,
    }
}

impl Env {
    /// Stops this coordinator (as a clean shutdown would) and starts a new
    /// one on the same data directory and signers.
    pub async fn restart(self, extra_tuning: &str) -> Env {
        let stopped = self.stop().await;
        stopped.start(extra_tuning).await
    }

    /// Stops this coordinator and waits until it is gone.
    pub async fn stop(mut self) -> Stopped {
        for s in &self.stop {
            s.notify_one();
        }
        self.server.abort();
        let weak = Arc::downgrade(&self.coordinator);
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let signers = self.signers.clone();
        let tokens = self.tokens.clone();
        drop(self);
        for _ in 0..100 {
            if weak.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            weak.strong_count(),
            0,
            "the old coordinator is still running"
        );
        // Its journal thread ends when the last handle is gone.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Stopped {
            dir,
            signers,
            tokens,
        }
    }

    /// A request with `client`'s token; returns status and JSON body.
    pub async fn call(
        &self,
        client: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.tokens[client]);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn get(&self, client: &str, path: &str) -> (u16, Value) {
        self.call(client, reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, client: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(client, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Creates a 2-of-3 key.
    pub async fn key(&self, curve: Curve) -> KeyInfo {
        let (s, v) = self
            .post(
                "payments",
                "/v1/keys",
                serde_json::to_value(CreateKeyRequest {
                    client_id: None,
                    curve,
                    t: 2,
                    n: 3,
                    tier: keyfold_policy::Tier::Hot,
                })
                .unwrap(),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        serde_json::from_value(v).unwrap()
    }

    /// Submits a typed transfer.
    pub async fn transfer(
        &self,
        client: &str,
        id: &str,
        key: &KeyInfo,
        amount: u128,
    ) -> (u16, Value) {
        self.post(
            client,
            "/v1/signatures",
            serde_json::json!({
                "request_id": id,
                "key_id": key.key_id,
                "transfer": {
                    "asset": "ETH",
                    "amount": amount.to_string(),
                    "destination": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
                }
            }),
        )
        .await
    }

    /// A request's status.
    pub async fn status(&self, id: &str) -> Value {
        let (s, v) = self.get("payments", &format!("/v1/requests/{id}")).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Waits (up to 10 s) until request `id` is in `state`. A request a
    /// background task (a sweep, a replenishment) is still creating may not
    /// exist yet: not found counts as not yet in the state.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        for _ in 0..200 {
            let (s, v) = self.get("payments", &format!("/v1/requests/{id}")).await;
            assert!(s == 200 || s == 404, "{s} {v}");
            if v["state"] == state {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "request {id} never became {state}: {}",
            self.status(id).await
        );
    }

    /// Every audit event written so far (JSON values), in order.
    pub fn audit_events(&self) -> Vec<Value> {
        let path = self.dir.path().join("data/audit/entries.jsonl");
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
            .collect()
    }

    /// An officer's approval of request `id` (its current typed request).
    pub async fn approval(
        &self,
        seed: u8,
        id: &str,
        decision: keyfold_policy::ApprovalDecision,
    ) -> Value {
        let st = self.status(id).await;
        let request: keyfold_policy::Request =
            serde_json::from_value(st["request"].clone()).unwrap();
        let now = self.clock_secs();
        let a = keyfold_policy::Approval::sign(
            &key(seed),
            request.canonical_hash(),
            1,
            decision,
            now + 3600,
            nonce(seed, id),
        );
        serde_json::to_value(a).unwrap()
    }

    /// The coordinator's clock, in seconds.
    pub fn clock_secs(&self) -> u64 {
        use keyfold_coordinator::clock::Clock;
        self.clock.now_secs()
    }
}

/// A nonce unique to (officer, request).
pub fn nonce(seed: u8, id: &str) -> [u8; 16] {
    use sha2::Digest;
    let d = sha2::Sha256::digest([&[seed][..], id.as_bytes()].concat());
    let mut n = [0u8; 16];
    n.copy_from_slice(&d[..16]);
    n
}

/// Verifies an ECDSA signature result independently with k256 (SHA-256
/// pre-hash).
pub fn verify_ecdsa(result: &Value) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let pk = hex::decode(result["public_key"].as_str().unwrap()).unwrap();
    let msg = hex::decode(result["message"].as_str().unwrap()).unwrap();
    let sig = hex::decode(result["signature"].as_str().unwrap()).unwrap();
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
    assert!(sig.normalize_s().is_none(), "high-S signature");
    vk.verify_prehash(&sha2::Sha256::digest(&msg), &sig)
        .unwrap();
}

/// A merchant `id` (no rate limit) with an API key of `scopes` under `id`
/// in `env.tokens`, and a 2-of-3 secp256k1 collection key it created.
pub async fn merchant_with_collection_key(env: &mut Env, id: &str, scopes: &[&str]) {
    let (s, v) = env
        .post(
            "payments",
            "/v1/merchants",
            serde_json::json!({ "merchant_id": id, "name": id, "rate_burst": 0 }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = env
        .post(
            "payments",
            &format!("/v1/merchants/{id}/keys"),
            serde_json::json!({ "scopes": scopes }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    env.tokens
        .insert(id.into(), v["api_key"].as_str().unwrap().into());
    let (s, key) = env
        .post(
            id,
            "/v1/keys",
            serde_json::json!({ "curve": "secp256k1", "t": 2, "n": 3 }),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let (s, v) = env
        .post(
            "payments",
            &format!("/v1/merchants/{id}/settings"),
            serde_json::json!({ "collection_key": key["key_id"] }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}
