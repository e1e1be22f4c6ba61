//! Tests of the coordinator's HTTP layer (`keyfold_coordinator::api`).
//!
//! The real server runs on `127.0.0.1:0` and is driven with reqwest (and, where
//! reqwest cannot produce the request, raw HTTP/1.1 over a TCP socket). Behind
//! it sits [`TestDoubleCoordinator`], an in-memory test double of
//! `CoordinatorApi`: it signs nothing and checks no policy, it only lets these
//! tests reach every branch of the HTTP layer (answers, errors, panics, slow
//! calls). Nothing here exercises the real orchestrator.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyfold_coordinator::api::{router, serve, ApiLimits, ErrorCode};
use keyfold_coordinator::service::{
    BoxFuture, Caller, CoordinatorApi, KeyPage, Page, ServiceError, Tenant,
};
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_proto::api::{
    ApiError, CreateKeyRequest, KeyInfo, KeyList, PolicyInfo, RequestList, RequestStatus, SignMode,
    SignOutcome, SignRequest, SignResult, SignerHealth, StatusInfo,
};
use keyfold_proto::Curve;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The only token the test double accepts.
const TOKEN: &str = "kf_test";
/// The client name of [`TOKEN`].
const CLIENT: &str = "tester";
/// A token whose lookup fails inside the service (500 `internal`).
const BROKEN_TOKEN: &str = "kf_broken_lookup";
/// A key id that exists in no test double.
const UNKNOWN_KEY: &str = "0123456789abcdef0123456789abcdef";
/// `get_key` with this id panics before returning a future.
const PANIC_KEY: &str = "ffffffffffffffffffffffffffffffff";
/// `get_key` with this id panics inside the returned future.
const PANIC_LATER_KEY: &str = "fffffffffffffffffffffffffffffffe";
/// A realistic 32-byte message (a transaction hash), hex.
const MESSAGE: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The scripted failure each `get_key` id triggers, with the code it must map
/// to; ids are valid 32-hex-digit key ids.
fn scripted_errors() -> Vec<(&'static str, ServiceError, ErrorCode, u16)> {
    vec![
        (
            "e0000000000000000000000000000001",
            ServiceError::BadRequest("derivation_path is hardened".into()),
            ErrorCode::BadRequest,
            400,
        ),
        (
            "e0000000000000000000000000000002",
            ServiceError::NotFound("no key e0..02".into()),
            ErrorCode::NotFound,
            404,
        ),
        (
            "e0000000000000000000000000000003",
            ServiceError::Conflict("request id reused with another payload".into()),
            ErrorCode::Conflict,
            409,
        ),
        (
            "e0000000000000000000000000000004",
            ServiceError::InProgress("request is being signed".into()),
            ErrorCode::InProgress,
            409,
        ),
        (
            "e0000000000000000000000000000005",
            ServiceError::QuorumUnavailable("1 of 2 signers live".into()),
            ErrorCode::QuorumUnavailable,
            503,
        ),
        (
            "e0000000000000000000000000000006",
            ServiceError::SigningFailed("every attempt failed".into()),
            ErrorCode::SigningFailed,
            502,
        ),
        (
            "e0000000000000000000000000000008",
            ServiceError::PolicyDenied("denied by rule `deny-all`".into()),
            ErrorCode::PolicyDenied,
            403,
        ),
        (
            "e0000000000000000000000000000009",
            ServiceError::AuditUnavailable(
                "the coordinator cannot write its audit log (No space left on device); nothing was done"
                    .into(),
            ),
            ErrorCode::AuditUnavailable,
            503,
        ),
        (
            "e000000000000000000000000000000a",
            ServiceError::AuthRefused {
                reason: "wrong_device_key",
                message: "the signature of device \"phone-1\" does not verify".into(),
            },
            ErrorCode::PaymentAuthRefused,
            403,
        ),
        (
            "e000000000000000000000000000000b",
            ServiceError::ChainEnvironment {
                sandbox_key: true,
                message: "chain base is a live chain and merchant acme.sandbox calls with a sandbox API key".into(),
            },
            ErrorCode::SandboxChainOnly,
            403,
        ),
        (
            "e000000000000000000000000000000c",
            ServiceError::ChainEnvironment {
                sandbox_key: false,
                message: "chain devnet-sandbox is a sandbox chain and merchant acme calls with a live API key".into(),
            },
            ErrorCode::LiveChainOnly,
            403,
        ),
        (
            "e0000000000000000000000000000007",
            ServiceError::Internal("SQLITE_CORRUPT in /var/lib/keyfold/secret.db".into()),
            ErrorCode::Internal,
            500,
        ),
    ]
}

/// A request waiting for approvals, as the test double reports it.
fn pending_status(request_id: &str) -> RequestStatus {
    RequestStatus {
        request_id: request_id.to_string(),
        state: keyfold_proto::api::RequestState::PendingApproval,
        request: keyfold_policy::Request {
            id: request_id.to_string(),
            wallet: "a".repeat(32),
            tier: keyfold_policy::Tier::Hot,
            asset: "ETH".into(),
            amount: 5_000_000,
            destination: "0xabc".into(),
            initiator: CLIENT.into(),
            risk: None,
            origin: None,
            time: 1_700_000_000,
            payload: keyfold_policy::Payload::TypedTransfer,
        },
        request_hash: String::new(),
        message: String::new(),
        decision: None,
        approvals: Vec::new(),
        result: None,
        error: None,
        expires_at: Some(1_700_600_000),
        modules: Vec::new(),
        history: Vec::new(),
    }
}

/// Test double of `CoordinatorApi`, for testing the HTTP layer only.
///
/// Keys live in a `Mutex<HashMap>`; "signatures" are fixed fake bytes; the one
/// valid token is [`TOKEN`] for client [`CLIENT`]. Scripted ids trigger every
/// `ServiceError` variant, panics and slow calls. It has no request
/// lifecycle of its own (idempotency, states, expiry are the real
/// coordinator's, tested in `tests/lifecycle.rs`).
#[derive(Default)]
struct TestDoubleCoordinator {
    keys: Mutex<HashMap<String, KeyInfo>>,
    /// request id -> (the request as first seen, its result).
    signatures: Mutex<HashMap<String, (SignRequest, SignResult)>>,
    next_key: AtomicU64,
    /// How many `sign` calls reached the service (passed the HTTP checks).
    signings: AtomicUsize,
    /// How many times `authenticate` was asked.
    auth_calls: AtomicUsize,
    /// The client name each `sign` call received.
    sign_clients: Mutex<Vec<String>>,
}

impl TestDoubleCoordinator {
    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyInfo>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_signatures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (SignRequest, SignResult)>> {
        self.signatures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CoordinatorApi for TestDoubleCoordinator {
    fn create_key(
        &self,
        _tenant: Tenant,
        req: CreateKeyRequest,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        Box::pin(async move {
            let n = self.next_key.fetch_add(1, Ordering::SeqCst) + 1;
            let key_id = format!("{n:032x}");
            let (public_key, chain_code) = match req.curve {
                Curve::Secp256k1 => (
                    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798".to_owned(),
                    Some(
                        "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508"
                            .to_owned(),
                    ),
                ),
                _ => (
                    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".to_owned(),
                    None,
                ),
            };
            let info = KeyInfo {
                key_id: key_id.clone(),
                curve: req.curve,
                t: req.t,
                n: req.n,
                public_key,
                chain_code,
                participants: (1..=req.n).map(|i| format!("signer-{i}")).collect(),
                created_at: 1_700_000_000,
                tier: req.tier,
            };
            self.lock_keys().insert(key_id, info.clone());
            Ok(info)
        })
    }

    fn list_keys(
        &self,
        _tenant: Tenant,
        _page: KeyPage,
    ) -> BoxFuture<'_, Result<KeyList, ServiceError>> {
        Box::pin(async move {
            let mut keys: Vec<KeyInfo> = self.lock_keys().values().cloned().collect();
            keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
            Ok(KeyList {
                keys,
                next_cursor: None,
            })
        })
    }

    fn get_key(
        &self,
        _tenant: Tenant,
        key_id: String,
    ) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        if key_id == PANIC_KEY {
            panic!("test double panics on purpose (before the future)");
        }
        Box::pin(async move {
            if key_id == PANIC_LATER_KEY {
                tokio::task::yield_now().await;
                panic!("test double panics on purpose (inside the future)");
            }
            if let Some((_, err, _, _)) = scripted_errors().into_iter().find(|s| s.0 == key_id) {
                return Err(err);
            }
            self.lock_keys()
                .get(&key_id)
                .cloned()
                .ok_or_else(|| ServiceError::NotFound(format!("no key {key_id}")))
        })
    }

    fn sign(
        &self,
        caller: Caller,
        req: SignRequest,
    ) -> BoxFuture<'_, Result<SignOutcome, ServiceError>> {
        Box::pin(async move {
            self.sign_clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(caller.client().to_string());
            if req.request_id.starts_with("slow") {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            if req.request_id.starts_with("busy") {
                return Err(ServiceError::InProgress(format!(
                    "request {} is being signed; retry later",
                    req.request_id
                )));
            }
            if req.request_id.starts_with("wait") {
                return Ok(SignOutcome::Pending(Box::new(pending_status(
                    &req.request_id,
                ))));
            }
            let key = self
                .lock_keys()
                .get(&req.key_id)
                .cloned()
                .ok_or_else(|| ServiceError::NotFound(format!("no key {}", req.key_id)))?;
            self.signings.fetch_add(1, Ordering::SeqCst);
            let result = SignResult {
                request_id: req.request_id.clone(),
                key_id: req.key_id.clone(),
                curve: key.curve,
                public_key: key.public_key.clone(),
                message: req.message.clone().unwrap_or_default(),
                hash: req.hash,
                derivation_path: req.derivation_path.clone(),
                // Fake bytes: the test double signs nothing.
                signature: "ab".repeat(64),
                signers: key
                    .participants
                    .iter()
                    .take(key.t.into())
                    .cloned()
                    .collect(),
                mode: SignMode::Presignature,
            };
            self.lock_signatures()
                .insert(req.request_id.clone(), (req, result.clone()));
            Ok(SignOutcome::Signed(result))
        })
    }

    fn get_request(
        &self,
        _tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(async move {
            if request_id.starts_with("wait") {
                Ok(pending_status(&request_id))
            } else {
                Err(ServiceError::NotFound(format!("no request {request_id}")))
            }
        })
    }

    fn list_requests(
        &self,
        _tenant: Tenant,
        page: Page,
    ) -> BoxFuture<'_, Result<RequestList, ServiceError>> {
        Box::pin(async move {
            if page.states.iter().any(|s| s == "bogus") {
                return Err(ServiceError::BadRequest("unknown state `bogus`".into()));
            }
            Ok(RequestList {
                requests: vec![pending_status("wait-1")],
                next_cursor: None,
            })
        })
    }

    fn cancel(
        &self,
        _caller: Caller,
        request_id: String,
        _reason: Option<String>,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(async move {
            let mut st = pending_status(&request_id);
            st.state = keyfold_proto::api::RequestState::Cancelled;
            Ok(st)
        })
    }

    fn approve(
        &self,
        _client: String,
        request_id: String,
        approval: keyfold_policy::Approval,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(async move {
            let mut st = pending_status(&request_id);
            st.approvals.push(approval);
            Ok(st)
        })
    }

    fn policy(&self) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(async move {
            Ok(PolicyInfo {
                version: 1,
                document: "version = 1".into(),
                rules: vec!["rule 1 `deny-all`: deny".into()],
                signed_update: None,
            })
        })
    }

    fn update_policy(
        &self,
        _update: keyfold_policy::SignedPolicy,
    ) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(async move {
            Err(ServiceError::BadRequest(
                "policy update refused: quorum not met".into(),
            ))
        })
    }

    fn get_signature(
        &self,
        _tenant: Tenant,
        request_id: String,
    ) -> BoxFuture<'_, Result<SignResult, ServiceError>> {
        Box::pin(async move {
            self.lock_signatures()
                .get(&request_id)
                .map(|(_, r)| r.clone())
                .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<StatusInfo, ServiceError>> {
        Box::pin(async move {
            Ok(StatusInfo {
                signers: vec![
                    SignerHealth {
                        node: "signer-1".into(),
                        live: true,
                        error: None,
                        primes_ready: Some(4),
                        primes_generating: Some(0),
                        policy_version: Some(1),
                    },
                    SignerHealth {
                        node: "signer-2".into(),
                        live: false,
                        error: Some("connection refused".into()),
                        primes_ready: None,
                        primes_generating: None,
                        policy_version: None,
                    },
                ],
                keys: self.lock_keys().len(),
                presignatures: 0,
                policy_version: 1,
            })
        })
    }

    fn authenticate(&self, token: String) -> BoxFuture<'_, Result<Option<Caller>, ServiceError>> {
        Box::pin(async move {
            self.auth_calls.fetch_add(1, Ordering::SeqCst);
            match token.as_str() {
                TOKEN => Ok(Some(Caller::Operator(CLIENT.to_owned()))),
                BROKEN_TOKEN => Err(ServiceError::Internal(
                    "token table unreadable: /var/lib/keyfold/tokens.db".into(),
                )),
                _ => Ok(None),
            }
        })
    }
}

/// A running server with its test double.
struct TestServer {
    base: String,
    addr: std::net::SocketAddr,
    double: Arc<TestDoubleCoordinator>,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(ApiLimits::default()).await
    }

    async fn start_with(limits: ApiLimits) -> Self {
        let double = Arc::new(TestDoubleCoordinator::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(double.clone(), limits);
        let task = tokio::spawn(serve(listener, app, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            addr,
            double,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the valid token.
    fn authed(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(TOKEN)
    }

    async fn create_key(&self, curve: &str, t: u16, n: u16) -> KeyInfo {
        let resp = self
            .authed(Method::POST, "/v1/keys")
            .json(&json!({"curve": curve, "t": t, "n": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops after shutdown")
            .expect("server task does not panic")
            .expect("serve returns Ok");
    }
}

/// Checks an error answer: status, JSON content type, code; returns the message.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "status of {}", resp.url());
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "error content type is {content_type:?}"
    );
    assert!(
        resp.headers().contains_key("x-request-id"),
        "errors carry x-request-id too"
    );
    let text = resp.text().await.unwrap();
    let err: ApiError = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not an ApiError ({e}): {text}"));
    assert_eq!(err.error.code, code, "body: {text}");
    assert!(!err.error.message.is_empty());
    err.error.message
}

/// Sends raw bytes over HTTP/1.1 and returns (status, body).
async fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn sign_body(request_id: &str, key_id: &str) -> Value {
    json!({
        "request_id": request_id,
        "key_id": key_id,
        "message": MESSAGE,
        "hash": "sha256",
    })
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn health_answers_ok_without_a_token() {
    let srv = TestServer::start().await;
    let resp = srv.http.get(srv.url("/v1/health")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));
    assert_eq!(srv.double.auth_calls.load(Ordering::SeqCst), 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn create_list_and_get_keys() {
    let srv = TestServer::start().await;
    let k1 = srv.create_key("secp256k1", 2, 3).await;
    assert_eq!(k1.curve, Curve::Secp256k1);
    assert_eq!((k1.t, k1.n), (2, 3));
    assert_eq!(k1.key_id.len(), 32);
    assert_eq!(k1.participants.len(), 3);
    let k2 = srv.create_key("ed25519", 2, 2).await;
    assert_eq!(k2.curve, Curve::Ed25519);

    let resp = srv.authed(Method::GET, "/v1/keys").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let keys: Vec<KeyInfo> = serde_json::from_value(body["keys"].clone()).unwrap();
    assert_eq!(keys, vec![k1.clone(), k2.clone()]);

    let resp = srv
        .authed(Method::GET, &format!("/v1/keys/{}", k1.key_id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<KeyInfo>().await.unwrap(), k1);

    let resp = srv
        .authed(Method::GET, &format!("/v1/keys/{UNKNOWN_KEY}"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "not_found").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn sign_then_fetch_the_signature() {
    let srv = TestServer::start().await;
    let key = srv.create_key("secp256k1", 2, 3).await;
    let body = json!({
        "request_id": "payout-2024-0001",
        "key_id": key.key_id,
        "message": MESSAGE,
        "hash": "keccak256",
        "derivation_path": "m/0/7",
    });
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let result: SignResult = resp.json().await.unwrap();
    assert_eq!(result.request_id, "payout-2024-0001");
    assert_eq!(result.key_id, key.key_id);
    assert_eq!(result.message, MESSAGE);
    assert_eq!(result.hash, Some(HashAlg::Keccak256));
    assert_eq!(result.derivation_path.as_deref(), Some("m/0/7"));
    assert_eq!(result.signature.len(), 128);
    assert_eq!(
        *srv.double.sign_clients.lock().unwrap(),
        vec![CLIENT.to_owned()],
        "the authenticated client name reaches the service"
    );

    let resp = srv
        .authed(Method::GET, "/v1/signatures/payout-2024-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<SignResult>().await.unwrap(), result);

    let resp = srv
        .authed(Method::GET, "/v1/signatures/never-sent")
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "not_found").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn in_progress_is_409_with_retry_after() {
    let srv = TestServer::start().await;
    let key = srv.create_key("secp256k1", 2, 3).await;
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&sign_body("busy-1", &key.key_id))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    expect_error(resp, 409, "in_progress").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn status_reports_signers() {
    let srv = TestServer::start().await;
    srv.create_key("ed25519", 2, 3).await;
    let resp = srv.authed(Method::GET, "/v1/status").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let status: StatusInfo = resp.json().await.unwrap();
    assert_eq!(status.keys, 1);
    assert_eq!(status.signers.len(), 2);
    assert!(status.signers[0].live);
    srv.shutdown().await;
}

#[tokio::test]
async fn every_response_gets_a_fresh_request_id() {
    let srv = TestServer::start().await;
    let mut ids = Vec::new();
    for path in ["/v1/health", "/v1/health", "/v1/nowhere"] {
        let resp = srv.http.get(srv.url(path)).send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 24);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    srv.shutdown().await;
}

// ------------------------------------------------------------- authentication

#[tokio::test]
async fn missing_token_is_401_on_every_protected_endpoint() {
    let srv = TestServer::start().await;
    let requests = [
        (
            Method::POST,
            "/v1/keys",
            Some(json!({"curve": "ed25519", "t": 2, "n": 3})),
        ),
        (Method::GET, "/v1/keys", None),
        (
            Method::GET,
            "/v1/keys/0123456789abcdef0123456789abcdef",
            None,
        ),
        (
            Method::POST,
            "/v1/signatures",
            Some(sign_body("r1", UNKNOWN_KEY)),
        ),
        (Method::GET, "/v1/signatures/r1", None),
        (Method::GET, "/v1/status", None),
    ];
    for (method, path, body) in requests {
        let mut req = srv.http.request(method.clone(), srv.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{method} {path}"
        );
        let msg = expect_error(resp, 401, "unauthorized").await;
        assert!(msg.contains("Authorization"), "{msg}");
    }
    assert_eq!(srv.double.auth_calls.load(Ordering::SeqCst), 0);
    assert!(srv.double.lock_keys().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn wrong_or_malformed_token_is_401() {
    let srv = TestServer::start().await;
    let resp = srv
        .http
        .get(srv.url("/v1/keys"))
        .bearer_auth("kf_wrong")
        .send()
        .await
        .unwrap();
    assert!(resp
        .headers()
        .contains_key(reqwest::header::WWW_AUTHENTICATE));
    let msg = expect_error(resp, 401, "unauthorized").await;
    assert!(!msg.contains("kf_wrong"), "the token is not echoed: {msg}");

    for header in [
        "Basic a2Zfd3Jvbmc6",
        "Bearer",
        "Bearer ",
        "kf_test",
        "Bearer kf_test extra",
    ] {
        let resp = srv
            .http
            .get(srv.url("/v1/keys"))
            .header(reqwest::header::AUTHORIZATION, header)
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "unauthorized").await;
    }

    // The scheme is case-insensitive.
    let resp = srv
        .http
        .get(srv.url("/v1/keys"))
        .header(reqwest::header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // An absurdly long token is refused without asking the service.
    let before = srv.double.auth_calls.load(Ordering::SeqCst);
    let resp = srv
        .http
        .get(srv.url("/v1/keys"))
        .bearer_auth("k".repeat(5000))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "unauthorized").await;
    assert_eq!(srv.double.auth_calls.load(Ordering::SeqCst), before);
    srv.shutdown().await;
}

#[tokio::test]
async fn failing_token_lookup_is_500_without_details() {
    let srv = TestServer::start().await;
    let resp = srv
        .http
        .get(srv.url("/v1/keys"))
        .bearer_auth(BROKEN_TOKEN)
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 500, "internal").await;
    assert!(!msg.contains("tokens.db"), "{msg}");
    srv.shutdown().await;
}

// ----------------------------------------------------------------- bad input

#[tokio::test]
async fn malformed_json_is_400() {
    let srv = TestServer::start().await;
    for body in [
        "{\"curve\": \"ed25519\", \"t\": 2,",
        "{curve: ed25519}",
        "{\"curve\":\"ed25519\",\"t\":2,\"n\":3} trailing",
        "",
    ] {
        let resp = srv
            .authed(Method::POST, "/v1/keys")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, 400, "bad_request").await;
        assert!(
            msg.contains("JSON") || msg.contains("empty"),
            "{body:?}: {msg}"
        );
    }
    assert!(srv.double.lock_keys().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_field_is_400_naming_it() {
    let srv = TestServer::start().await;
    let resp = srv
        .authed(Method::POST, "/v1/keys")
        .json(&json!({"curve": "ed25519", "t": 2, "n": 3, "owner": "treasury"}))
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("unknown field `owner`"), "{msg}");

    let mut body = sign_body("r-unknown", UNKNOWN_KEY);
    body["digest"] = json!(MESSAGE);
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("`digest`"), "{msg}");
    srv.shutdown().await;
}

#[tokio::test]
async fn wrong_type_or_value_is_400_naming_the_field() {
    let srv = TestServer::start().await;
    let cases = [
        (json!({"curve": "ed25519", "t": "2", "n": 3}), "`t`"),
        (json!({"curve": "ed25519", "t": 2, "n": -1}), "`n`"),
        (json!({"curve": "ed25519", "t": 2, "n": 70000}), "`n`"),
        (json!({"curve": "p256", "t": 2, "n": 3}), "`curve`"),
        (json!({"curve": 1, "t": 2, "n": 3}), "`curve`"),
        (json!({"curve": "ed25519", "n": 3}), "missing field `t`"),
        (json!([1, 2, 3]), "JSON object"),
        (json!(["ed25519", 2, 3]), "JSON object"),
        (json!("ed25519"), "JSON object"),
    ];
    for (body, needle) in cases {
        let resp = srv
            .authed(Method::POST, "/v1/keys")
            .json(&body)
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, 400, "bad_request").await;
        assert!(msg.contains(needle), "{body}: {msg}");
    }

    let mut body = sign_body("r-type", UNKNOWN_KEY);
    body["hash"] = json!("md5");
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("`hash`"), "{msg}");

    let resp = srv
        .authed(Method::POST, "/v1/keys")
        .json(&json!({"curve": "ed25519", "t": 4, "n": 3}))
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("invalid threshold 4-of-3"), "{msg}");
    assert!(srv.double.lock_keys().is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_sign_fields_are_400() {
    let srv = TestServer::start().await;
    let key = srv.create_key("secp256k1", 2, 3).await;
    let too_long_message = "00".repeat(keyfold_proto::MAX_MESSAGE_BYTES + 1);
    let cases = [
        ("message", json!("not hex at all"), "message must be hex"),
        ("message", json!("abc"), "message must be hex"),
        ("message", json!(too_long_message), "limit is 65536 bytes"),
        (
            "request_id",
            json!(""),
            "request_id must be 1 to 128 characters",
        ),
        (
            "request_id",
            json!("x".repeat(129)),
            "request_id must be 1 to 128",
        ),
        ("request_id", json!("two words"), "A-Z a-z 0-9 . _ : -"),
        ("request_id", json!("caf\u{e9}"), "A-Z a-z 0-9 . _ : -"),
        ("request_id", json!("."), "starting with a letter or digit"),
        (
            "key_id",
            json!("not-a-key"),
            "key_id must be 32 lowercase hex digits",
        ),
    ];
    for (field, value, needle) in cases {
        let mut body = sign_body("r-invalid", &key.key_id);
        body[field] = value;
        let resp = srv
            .authed(Method::POST, "/v1/signatures")
            .json(&body)
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, 400, "bad_request").await;
        assert!(msg.contains(needle), "{field}: {msg}");
    }
    // The largest message is accepted.
    let mut body = sign_body("r-largest", &key.key_id);
    body["message"] = json!("00".repeat(keyfold_proto::MAX_MESSAGE_BYTES));
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(srv.double.signings.load(Ordering::SeqCst), 1);

    // Path parameters are checked too.
    let resp = srv
        .authed(Method::GET, "/v1/keys/XYZ")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "bad_request").await;
    let resp = srv
        .authed(Method::GET, "/v1/signatures/two%20words")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "bad_request").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let limits = ApiLimits {
        max_body_bytes: 1024,
        ..ApiLimits::default()
    };
    let srv = TestServer::start_with(limits).await;
    let mut body = sign_body("r-big", UNKNOWN_KEY);
    body["message"] = json!("00".repeat(2048));
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 413, "payload_too_large").await;
    assert!(msg.contains("1024"), "{msg}");

    // The default limit: 256 KiB.
    let srv2 = TestServer::start().await;
    let resp = srv2
        .authed(Method::POST, "/v1/keys")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 256 * 1024 + 1])
        .send()
        .await
        .unwrap();
    expect_error(resp, 413, "payload_too_large").await;

    // Without Content-Length (chunked), the limit holds as the body streams in.
    let chunk = "x".repeat(4000);
    let mut raw = format!(
        "POST /v1/keys HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    for _ in 0..3 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let (status, body) = raw_http(srv.addr, raw.as_bytes()).await;
    assert_eq!(status, 413);
    let err: ApiError = serde_json::from_str(&body).unwrap();
    assert_eq!(err.error.code, "payload_too_large");
    assert!(srv.double.lock_keys().is_empty());
    srv.shutdown().await;
    srv2.shutdown().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let srv = TestServer::start().await;
    let body = r#"{"curve":"ed25519","t":2,"n":3}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = srv.authed(Method::POST, "/v1/keys").body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        let msg = expect_error(resp, 415, "unsupported_media_type").await;
        assert!(msg.contains("application/json"), "{msg}");
    }
    // Parameters and case do not matter.
    let resp = srv
        .authed(Method::POST, "/v1/keys")
        .header(
            reqwest::header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    srv.shutdown().await;
}

// -------------------------------------------------------------------- routing

#[tokio::test]
async fn unknown_route_is_404_json() {
    let srv = TestServer::start().await;
    for path in ["/", "/v1", "/v2/keys", "/v1/keys/a/b", "/v1/signature"] {
        let resp = srv.authed(Method::GET, path).send().await.unwrap();
        let msg = expect_error(resp, 404, "not_found").await;
        assert!(msg.contains("no such endpoint"), "{path}: {msg}");
    }
    // No token needed to learn that a route does not exist.
    let resp = srv.http.get(srv.url("/v1/nope")).send().await.unwrap();
    expect_error(resp, 404, "not_found").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn wrong_method_is_405_json() {
    let srv = TestServer::start().await;
    let cases = [
        (Method::DELETE, "/v1/keys"),
        (Method::PUT, "/v1/keys/0123456789abcdef0123456789abcdef"),
        (Method::GET, "/v1/signatures"),
        (Method::POST, "/v1/status"),
        (Method::POST, "/v1/health"),
    ];
    for (method, path) in cases {
        let resp = srv.authed(method.clone(), path).send().await.unwrap();
        assert!(
            resp.headers().contains_key(reqwest::header::ALLOW),
            "{method} {path}"
        );
        let msg = expect_error(resp, 405, "method_not_allowed").await;
        assert!(msg.contains(method.as_str()), "{msg}");
    }
    srv.shutdown().await;
}

// ------------------------------------------------------------ service errors

#[tokio::test]
async fn every_service_error_maps_to_its_status_and_code() {
    let srv = TestServer::start().await;
    for (key_id, err, code, status) in scripted_errors() {
        assert_eq!(code.status().as_u16(), status);
        let resp = srv
            .authed(Method::GET, &format!("/v1/keys/{key_id}"))
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, status, code.as_str()).await;
        match err {
            ServiceError::Internal(detail) => {
                assert!(!msg.contains(&detail), "internal details leak: {msg}");
                assert!(!msg.contains("SQLITE"), "{msg}");
            }
            other => assert_eq!(msg, other.to_string()),
        }
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn quorum_unavailable_carries_retry_after() {
    let srv = TestServer::start().await;
    let resp = srv
        .authed(Method::GET, "/v1/keys/e0000000000000000000000000000005")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    expect_error(resp, 503, "quorum_unavailable").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn every_error_code_has_a_distinct_name() {
    let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ErrorCode::ALL.len());
}

// ----------------------------------------------------------- panics, timeouts

#[tokio::test]
async fn handler_panic_is_500_json_and_the_server_keeps_serving() {
    let srv = TestServer::start().await;
    for key_id in [PANIC_KEY, PANIC_LATER_KEY, PANIC_KEY] {
        let resp = srv
            .authed(Method::GET, &format!("/v1/keys/{key_id}"))
            .send()
            .await
            .unwrap();
        let msg = expect_error(resp, 500, "internal").await;
        assert!(
            !msg.contains("panic"),
            "the panic text does not leak: {msg}"
        );
        assert!(!msg.contains("on purpose"), "{msg}");
    }
    // Same server, same client: it still answers.
    let key = srv.create_key("ed25519", 2, 3).await;
    let resp = srv
        .authed(Method::GET, &format!("/v1/keys/{}", key.key_id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.shutdown().await;
}

#[tokio::test]
async fn slow_request_is_504_timeout() {
    let limits = ApiLimits {
        request_timeout: Duration::from_millis(300),
        ..ApiLimits::default()
    };
    let srv = TestServer::start_with(limits).await;
    let key = srv.create_key("secp256k1", 2, 3).await;
    let started = std::time::Instant::now();
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&sign_body("slow-1", &key.key_id))
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 504, "timeout").await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(msg.contains("same request_id"), "{msg}");
    let resp = srv.authed(Method::GET, "/v1/status").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let srv = TestServer::start().await;
    let addr = srv.addr;
    srv.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

// ------------------------------------------------------------------- logging

/// Collects every span field and event field as text.
struct CaptureSubscriber {
    lines: Arc<Mutex<Vec<String>>>,
    next_id: AtomicU64,
}

/// Writes `name=value` pairs into a line.
struct FieldWriter<'a>(&'a mut String);

impl tracing::field::Visit for FieldWriter<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl CaptureSubscriber {
    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }
}

impl tracing::Subscriber for CaptureSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = format!("span {}:", span.metadata().name());
        span.record(&mut FieldWriter(&mut line));
        self.push(line);
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = "record:".to_owned();
        values.record(&mut FieldWriter(&mut line));
        self.push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("event {}:", event.metadata().level());
        event.record(&mut FieldWriter(&mut line));
        self.push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs on the current-thread runtime, so the thread-local subscriber sees the
/// server's spans and events.
#[tokio::test(flavor = "current_thread")]
async fn requests_are_logged_with_client_and_status_but_never_the_token() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(CaptureSubscriber {
        lines: lines.clone(),
        next_id: AtomicU64::new(0),
    });
    let srv = TestServer::start().await;
    let resp = srv.authed(Method::GET, "/v1/status").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let resp = srv
        .http
        .get(srv.url("/v1/status"))
        .bearer_auth("kf_wrong_secret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = srv
        .http
        .get(srv.url("/v1/keys/e0000000000000000000000000000007"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    srv.shutdown().await;

    let log = lines.lock().unwrap().join("\n");
    assert!(log.contains(&request_id), "request id logged:\n{log}");
    assert!(log.contains("method=GET"), "{log}");
    assert!(log.contains("path=/v1/status"), "{log}");
    assert!(log.contains(&format!("client={CLIENT:?}")), "{log}");
    assert!(log.contains("status=200"), "{log}");
    assert!(log.contains("status=401"), "{log}");
    assert!(log.contains("latency_ms="), "{log}");
    assert!(
        log.contains("SQLITE_CORRUPT"),
        "internal details go to the log:\n{log}"
    );
    assert!(!log.contains(TOKEN), "a token was logged:\n{log}");
    assert!(
        !log.contains("kf_wrong_secret"),
        "a token was logged:\n{log}"
    );
}

// ------------------------------------------------------- policy and approvals

#[tokio::test]
async fn a_request_that_waits_answers_202_with_its_status() {
    let srv = TestServer::start().await;
    let key = srv.create_key("secp256k1", 2, 3).await;
    let body = json!({
        "request_id": "wait-1",
        "key_id": key.key_id,
        "transfer": {"asset": "ETH", "amount": "5000000", "destination": "0xabc"},
    });
    let resp = srv
        .authed(Method::POST, "/v1/signatures")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let st: RequestStatus = resp.json().await.unwrap();
    assert_eq!(st.state, keyfold_proto::api::RequestState::PendingApproval);
    assert_eq!(st.request.amount, 5_000_000);
    srv.shutdown().await;
}

#[tokio::test]
async fn request_endpoints_answer_and_refuse_clearly() {
    let srv = TestServer::start().await;
    let resp = srv
        .authed(Method::GET, "/v1/requests")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let list: RequestList = resp.json().await.unwrap();
    assert_eq!(list.requests[0].request_id, "wait-1");
    let resp = srv
        .authed(Method::GET, "/v1/requests?state=bogus")
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("bogus"), "{msg}");
    let resp = srv
        .authed(Method::GET, "/v1/requests?colour=red")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "bad_request").await;
    let resp = srv
        .authed(Method::GET, "/v1/requests/wait-7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = srv
        .authed(Method::GET, "/v1/requests/nope")
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "not_found").await;
    let resp = srv
        .authed(Method::GET, "/v1/requests/two%20words")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "bad_request").await;
    // Every new endpoint needs the token.
    for (m, p) in [
        (Method::GET, "/v1/requests"),
        (Method::GET, "/v1/requests/wait-1"),
        (Method::POST, "/v1/requests/wait-1/approvals"),
        (Method::GET, "/v1/policy"),
        (Method::POST, "/v1/policy"),
    ] {
        let resp = srv.http.request(m, srv.url(p)).send().await.unwrap();
        expect_error(resp, 401, "unauthorized").await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn approvals_are_parsed_strictly() {
    let srv = TestServer::start().await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let approval = keyfold_policy::Approval::sign(
        &key,
        [1u8; 32],
        1,
        keyfold_policy::ApprovalDecision::Approve,
        1_900_000_000,
        [2u8; 16],
    );
    let resp = srv
        .authed(Method::POST, "/v1/requests/wait-1/approvals")
        .json(&approval)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let st: RequestStatus = resp.json().await.unwrap();
    assert_eq!(st.approvals, vec![approval.clone()]);
    // A signature of the wrong length, a missing field, a bad decision.
    let mut bad = serde_json::to_value(&approval).unwrap();
    bad["signature"] = json!("abcd");
    let mut missing = serde_json::to_value(&approval).unwrap();
    missing.as_object_mut().unwrap().remove("nonce");
    let mut decision = serde_json::to_value(&approval).unwrap();
    decision["decision"] = json!("maybe");
    for body in [bad, missing, decision] {
        let resp = srv
            .authed(Method::POST, "/v1/requests/wait-1/approvals")
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "bad_request").await;
    }
    // Policy: read, and a refused update says why.
    let resp = srv.authed(Method::GET, "/v1/policy").send().await.unwrap();
    let info: PolicyInfo = resp.json().await.unwrap();
    assert_eq!(info.version, 1);
    let resp = srv
        .authed(Method::POST, "/v1/policy")
        .json(&json!({"document_toml": "version = 2", "signatures": []}))
        .send()
        .await
        .unwrap();
    let msg = expect_error(resp, 400, "bad_request").await;
    assert!(msg.contains("quorum"), "{msg}");
    srv.shutdown().await;
}
