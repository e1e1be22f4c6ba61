//! Merchants' sandbox on the real cluster: a sandbox key (`kfm_test_...`,
//! issued with `"sandbox": true`) makes its own wallet by distributed key
//! generation and pays on the sandbox chain (a third anvil registered with
//! `sandbox = true`) with the same API and webhooks as a live key; the
//! transaction is fetched from anvil and its sender recovered here (k256,
//! an RLP encoding of our own), not with the code that made it. A sandbox
//! key sees and moves nothing live and a live key nothing of the sandbox
//! (404 as for another merchant's object), and each kind of key is refused
//! on the other kind of chain with a typed error (`sandbox_chain_only`,
//! `live_chain_only`) and nothing recorded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{json, Value};
use sha3::{Digest, Keccak256};

use crate::chains::{SANDBOX_CHAIN, SANDBOX_CHAIN_ID};
use crate::fixture::*;
use crate::merchants::verify_with_standardwebhooks;
use crate::payouts::unique;

/// Every scope a merchant key may hold.
const SCOPES: [&str; 8] = [
    "wallets:read",
    "wallets:write",
    "payouts:read",
    "payouts:write",
    "signatures:read",
    "webhooks:manage",
    "orders:read",
    "orders:write",
];

/// Wei a sandbox payout sends (under the cluster policy's `small` rule).
const SANDBOX_WEI: u64 = 1000;
/// The same, in ETH as the API takes it.
const SANDBOX_AMOUNT: &str = "0.000000000000001";

async fn call(
    c: &Cluster,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = c.http.request(method, c.url(path)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

/// A live merchant with a live key holding every scope: (id, key).
async fn live_merchant(c: &Cluster, prefix: &str) -> (String, String) {
    let id = unique(prefix).to_lowercase();
    let op = c.token.clone();
    let (s, v) = call(
        c,
        &op,
        Method::POST,
        "/v1/merchants",
        Some(json!({ "merchant_id": id, "name": id, "rate_burst": 0 })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = call(
        c,
        &op,
        Method::POST,
        &format!("/v1/merchants/{id}/keys"),
        Some(json!({ "scopes": SCOPES })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["key"]["sandbox"], false, "{v}");
    (id, v["api_key"].as_str().unwrap().to_string())
}

/// A sandbox key of live merchant `id`: (key, its metadata).
async fn sandbox_key(c: &Cluster, id: &str) -> (String, Value) {
    let op = c.token.clone();
    let (s, v) = call(
        c,
        &op,
        Method::POST,
        &format!("/v1/merchants/{id}/keys"),
        Some(json!({ "scopes": SCOPES, "label": "integration", "sandbox": true })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (v["api_key"].as_str().unwrap().to_string(), v["key"].clone())
}

/// The EVM address of a secp256k1 public key (SEC1 hex), computed here.
fn address_of(sec1_hex: &str) -> Address {
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(sec1_hex).unwrap()).unwrap();
    let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
    Address::from_slice(&h[12..])
}

/// A wallet made by DKG with `key`: (key id, address).
async fn wallet(c: &Cluster, key: &str) -> (String, Address) {
    let (s, v) = call(
        c,
        key,
        Method::POST,
        "/v1/keys",
        Some(json!({ "curve": "secp256k1", "t": 2, "n": 3 })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (
        v["key_id"].as_str().unwrap().to_string(),
        address_of(v["public_key"].as_str().unwrap()),
    )
}

/// A fresh destination address, from `seed`.
fn destination(seed: &str) -> Address {
    Address::from_slice(&Keccak256::digest(seed.as_bytes())[12..])
}

fn payout(id: &str, wallet: &str, chain: &str, to: Address, amount: &str) -> Value {
    json!({ "payout_id": id, "wallet": wallet, "chain": chain, "asset": "ETH",
            "to": to.to_checksum(None), "amount": amount })
}

/// Polls `GET /v1/payouts/{id}` with `key` until it is completed.
async fn wait_completed(c: &Cluster, key: &str, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (s, p) = call(c, key, Method::GET, &format!("/v1/payouts/{id}"), None).await;
        assert_eq!(s, 200, "{p}");
        if p["state"] == "completed" {
            return p;
        }
        assert!(
            !["failed", "rejected", "expired", "cancelled"].contains(&p["state"].as_str().unwrap()),
            "{p}"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "{p}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A receiver that keeps (headers, body) of every delivery.
async fn receiver() -> (String, Arc<Mutex<Vec<(Value, String)>>>) {
    let got: Arc<Mutex<Vec<(Value, String)>>> = Arc::default();
    let g = got.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |h: HeaderMap, body: Bytes| {
            let g = g.clone();
            async move {
                let v = |n: &str| {
                    h.get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                g.lock().unwrap().push((
                    json!({ "webhook-id": v("webhook-id"), "webhook-timestamp": v("webhook-timestamp"),
                            "webhook-signature": v("webhook-signature") }),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// A JSON-RPC call straight to an anvil (no Keyfold code in the way).
async fn rpc(url: &str, method: &str, params: Value) -> Value {
    let v: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["error"].is_null(), "{method}: {v}");
    v["result"].clone()
}

fn quantity(v: &Value) -> U256 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a quantity: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn data(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap()
}

/// RLP of a byte string.
fn rlp_bytes(b: &[u8]) -> Vec<u8> {
    if b.len() == 1 && b[0] < 0x80 {
        return b.to_vec();
    }
    let mut out = rlp_len(0x80, b.len());
    out.extend_from_slice(b);
    out
}

/// RLP of a list of already encoded items.
fn rlp_list(items: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = items.concat();
    let mut out = rlp_len(0xc0, body.len());
    out.extend(body);
    out
}

fn rlp_len(offset: u8, len: usize) -> Vec<u8> {
    if len <= 55 {
        return vec![offset + len as u8];
    }
    let be = len.to_be_bytes();
    let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut out = vec![offset + 55 + trimmed.len() as u8];
    out.extend(trimmed);
    out
}

fn rlp_uint(v: U256) -> Vec<u8> {
    rlp_bytes(&v.to_be_bytes_trimmed_vec())
}

/// The EIP-1559 transaction `hash` as anvil holds it: its hash recomputed
/// from its fields (so the fields are exactly what was signed), and the
/// address its signature recovers to. Returns (sender, the transaction).
async fn recover_sender(url: &str, hash: &str) -> (Address, Value) {
    let tx = rpc(url, "eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(tx["type"], "0x2", "{tx}");
    assert!(
        tx["accessList"].as_array().is_none_or(|a| a.is_empty()),
        "{tx}"
    );
    let fields = vec![
        rlp_uint(quantity(&tx["chainId"])),
        rlp_uint(quantity(&tx["nonce"])),
        rlp_uint(quantity(&tx["maxPriorityFeePerGas"])),
        rlp_uint(quantity(&tx["maxFeePerGas"])),
        rlp_uint(quantity(&tx["gas"])),
        rlp_bytes(&data(&tx["to"])),
        rlp_uint(quantity(&tx["value"])),
        rlp_bytes(&data(&tx["input"])),
        rlp_list(&[]),
    ];
    let y = quantity(if tx["yParity"].is_null() {
        &tx["v"]
    } else {
        &tx["yParity"]
    });
    let (r, s) = (quantity(&tx["r"]), quantity(&tx["s"]));
    let mut signed = fields.clone();
    signed.extend([rlp_uint(y), rlp_uint(r), rlp_uint(s)]);
    let mut envelope = vec![0x02];
    envelope.extend(rlp_list(&signed));
    assert_eq!(
        format!("0x{}", hex::encode(Keccak256::digest(&envelope))),
        hash,
        "the fields anvil returns must hash to the transaction's hash"
    );
    let mut payload = vec![0x02];
    payload.extend(rlp_list(&fields));
    let digest = Keccak256::digest(&payload);
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&r.to_be_bytes::<32>());
    rs[32..].copy_from_slice(&s.to_be_bytes::<32>());
    let sig = k256::ecdsa::Signature::from_slice(&rs).unwrap();
    assert!(sig.normalize_s().is_none(), "high-S signature");
    let id = k256::ecdsa::RecoveryId::from_byte(y.to::<u8>()).unwrap();
    let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, id).unwrap();
    let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
    (Address::from_slice(&h[12..]), tx)
}

/// `code` and a message naming `needles`, in the API's one error shape.
fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, needles: &[&str]) {
    assert_eq!(status, want_status, "{body}");
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 1, "{body}");
    let err = body["error"].as_object().unwrap();
    assert_eq!(err["code"], code, "{body}");
    let message = err["message"].as_str().unwrap();
    for n in needles {
        assert!(message.contains(n), "{n:?} not in {message:?}");
    }
    assert!(
        err.keys()
            .all(|k| ["code", "message", "reason"].contains(&k.as_str())),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_key_has_the_test_prefix_and_pays_on_the_sandbox_chain_with_webhooks() {
    let c = cluster().await;
    let (m, live) = live_merchant(&c, "sbx").await;
    let (sk, meta) = sandbox_key(&c, &m).await;
    let twin = format!("{m}.sandbox");
    let hexpart = sk
        .strip_prefix("kfm_test_")
        .expect("a sandbox key's prefix");
    assert_eq!(hexpart.len(), 64);
    assert!(hexpart
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(!live.starts_with("kfm_test_"), "a live key keeps kfm_");
    assert_eq!(meta["merchant_id"], twin.as_str(), "{meta}");
    assert_eq!(meta["sandbox"], true, "{meta}");
    assert!(meta["client"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{twin}#")));
    // The operator sees the twin, linked to its live merchant.
    let op = c.token.clone();
    let (s, v) = call(&c, &op, Method::GET, "/v1/merchants", None).await;
    assert_eq!(s, 200, "{v}");
    let listed = v["merchants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["merchant_id"] == twin.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{twin} not listed: {v}"));
    assert_eq!(listed["sandbox_of"], m.as_str(), "{listed}");

    // Its own wallet, funded on the sandbox chain only.
    let (key_id, addr) = wallet(&c, &sk).await;
    c.chains
        .sandbox
        .fund(addr, U256::from(10u64).pow(U256::from(18u64)), U256::ZERO)
        .await
        .unwrap();
    let (url, got) = receiver().await;
    let (s, ep) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/webhooks",
        Some(json!({ "url": url, "filters": ["payout.*"] })),
    )
    .await;
    assert_eq!(s, 201, "{ep}");

    let pid = unique("sbx-pay");
    let to = destination(&pid);
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/payouts",
        Some(payout(&pid, &key_id, SANDBOX_CHAIN, to, SANDBOX_AMOUNT)),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let p = wait_completed(&c, &sk, &pid).await;
    assert_eq!(p["chain"], SANDBOX_CHAIN, "{p}");
    let tx_hash = p["tx_hash"].as_str().unwrap().to_string();

    // Checked on the sandbox anvil itself: sent by the wallet's address
    // (recovered here), on chain 31339, paying exactly the payout, mined
    // with success and confirmed.
    let anvil = c.chains.sandbox.anvil.url().to_string();
    let (sender, tx) = recover_sender(&anvil, &tx_hash).await;
    assert_eq!(
        sender, addr,
        "the signature must recover to the sandbox wallet"
    );
    assert_eq!(quantity(&tx["chainId"]), U256::from(SANDBOX_CHAIN_ID));
    assert_eq!(
        tx["to"].as_str().unwrap().to_lowercase(),
        format!("{to:#x}")
    );
    assert_eq!(quantity(&tx["value"]), U256::from(SANDBOX_WEI));
    let receipt = rpc(&anvil, "eth_getTransactionReceipt", json!([tx_hash])).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let mined = quantity(&receipt["blockNumber"]);
    let head = quantity(&rpc(&anvil, "eth_blockNumber", json!([])).await);
    assert!(
        head >= mined + U256::from(1u64),
        "mined {mined}, head {head}"
    );
    let balance = quantity(
        &rpc(
            &anvil,
            "eth_getBalance",
            json!([format!("{to:#x}"), "latest"]),
        )
        .await,
    );
    assert_eq!(balance, U256::from(SANDBOX_WEI));
    // Nothing of it on the live chains.
    for live_rpc in [c.chains.l1.anvil.url(), c.chains.l2.anvil.url()] {
        let seen = rpc(live_rpc, "eth_getTransactionByHash", json!([tx_hash])).await;
        assert!(seen.is_null(), "{seen}");
    }

    // The same webhooks as live, signed with the endpoint's secret.
    let t0 = Instant::now();
    let deliveries = loop {
        let g = got.lock().unwrap().clone();
        if g.iter().any(|(_, b)| b.contains("\"payout.completed\"")) {
            break g;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{g:?}");
        drop(g);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let done: Value = serde_json::from_str(
        &deliveries
            .iter()
            .find(|(_, b)| b.contains("payout.completed"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(done["data"]["payout_id"], pid.as_str(), "{done}");
    assert_eq!(done["data"]["tx_hash"], tx_hash.as_str(), "{done}");
    let as_json = Value::Array(
        deliveries
            .iter()
            .map(|(h, b)| json!({ "headers": h, "body": b }))
            .collect(),
    );
    verify_with_standardwebhooks(&c, &pid, &ep["secret"], as_json, false);

    // The operator sees the sandbox payout; the live key does not.
    let (s, v) = call(&c, &op, Method::GET, &format!("/v1/payouts/{pid}"), None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&c, &live, Method::GET, &format!("/v1/payouts/{pid}"), None).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(&c, &live, Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["endpoints"], json!([]), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_key_cannot_read_or_move_a_live_object_nor_a_live_key_a_sandbox_one() {
    let c = cluster().await;
    let op = c.token.clone();
    let (m, live) = live_merchant(&c, "iso").await;
    let (sk, _) = sandbox_key(&c, &m).await;

    // Live objects: a wallet, a completed payout on the L1, an order.
    let (live_wallet, live_addr) = wallet(&c, &live).await;
    c.chains
        .l1
        .fund(
            live_addr,
            U256::from(10u64).pow(U256::from(18u64)),
            U256::ZERO,
        )
        .await
        .unwrap();
    let pid = unique("iso-live");
    let (s, v) = call(
        &c,
        &live,
        Method::POST,
        "/v1/payouts",
        Some(payout(
            &pid,
            &live_wallet,
            "devnet-l1",
            destination(&pid),
            "0.01",
        )),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    wait_completed(&c, &live, &pid).await;
    let (s, v) = call(
        &c,
        &op,
        Method::POST,
        &format!("/v1/merchants/{m}/settings"),
        Some(json!({ "collection_key": live_wallet })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, live_order) = call(
        &c,
        &live,
        Method::POST,
        "/v1/orders",
        Some(json!({ "order_id": "o-live", "chain": "devnet-l1", "asset": "ETH", "amount": "0.001" })),
    )
    .await;
    assert_eq!(s, 201, "{live_order}");

    // Sandbox objects: a wallet (collecting its orders) and an order on the
    // sandbox chain.
    let (sb_wallet, _) = wallet(&c, &sk).await;
    let (s, v) = call(
        &c,
        &op,
        Method::POST,
        &format!("/v1/merchants/{m}.sandbox/settings"),
        Some(json!({ "collection_key": sb_wallet })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, sb_order) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/orders",
        Some(json!({ "order_id": "o-sandbox", "chain": SANDBOX_CHAIN, "asset": "ETH", "amount": "0.001" })),
    )
    .await;
    assert_eq!(s, 201, "{sb_order}");

    // The sandbox key reads nothing live: 404, as for another merchant's.
    let request = format!("payout:{pid}");
    for path in [
        format!("/v1/payouts/{pid}"),
        format!("/v1/requests/{request}"),
        format!("/v1/signatures/{request}"),
        format!("/v1/keys/{live_wallet}"),
        "/v1/orders/o-live".to_string(),
    ] {
        let (s, v) = call(&c, &sk, Method::GET, &path, None).await;
        assert_error(s, &v, 404, "not_found", &[]);
    }
    // ... and its lists hold only sandbox objects.
    let (s, v) = call(&c, &sk, Method::GET, "/v1/payouts", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["payouts"], json!([]), "{v}");
    let (s, v) = call(&c, &sk, Method::GET, "/v1/keys", None).await;
    assert_eq!(s, 200, "{v}");
    let keys: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [sb_wallet.as_str()], "{v}");
    let (s, v) = call(&c, &sk, Method::GET, "/v1/orders", None).await;
    assert_eq!(s, 200, "{v}");
    let orders: Vec<&str> = v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders, ["o-sandbox"], "{v}");

    // It moves nothing live: the live wallet is unknown to it on the
    // sandbox chain, and the live chain is refused outright.
    let moved = unique("iso-move");
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/payouts",
        Some(payout(
            &moved,
            &live_wallet,
            SANDBOX_CHAIN,
            destination(&moved),
            SANDBOX_AMOUNT,
        )),
    )
    .await;
    assert_error(s, &v, 404, "not_found", &[&live_wallet]);
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/payouts",
        Some(payout(
            &moved,
            &live_wallet,
            "devnet-l1",
            destination(&moved),
            "0.01",
        )),
    )
    .await;
    assert_error(s, &v, 403, "sandbox_chain_only", &["devnet-l1"]);
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        &format!("/v1/requests/{request}/cancel"),
        Some(json!({})),
    )
    .await;
    assert_error(s, &v, 404, "not_found", &[]);
    let (s, v) = call(&c, &op, Method::GET, &format!("/v1/payouts/{moved}"), None).await;
    assert_eq!(s, 404, "nothing was recorded: {v}");

    // The other way round: the live key sees nothing of the sandbox.
    for path in [
        format!("/v1/keys/{sb_wallet}"),
        "/v1/orders/o-sandbox".to_string(),
    ] {
        let (s, v) = call(&c, &live, Method::GET, &path, None).await;
        assert_error(s, &v, 404, "not_found", &[]);
    }
    let (s, v) = call(&c, &live, Method::GET, "/v1/orders", None).await;
    assert_eq!(s, 200, "{v}");
    let orders: Vec<&str> = v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders, ["o-live"], "{v}");
    // The order addresses differ: each derives from its own tenant's key.
    assert_ne!(live_order["address"], sb_order["address"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_key_is_refused_on_the_other_kind_of_chain_with_a_typed_error() {
    let c = cluster().await;
    let op = c.token.clone();
    let (m, live) = live_merchant(&c, "env").await;
    let (sk, _) = sandbox_key(&c, &m).await;
    let (sb_wallet, _) = wallet(&c, &sk).await;
    let (live_wallet, _) = wallet(&c, &live).await;

    // A sandbox key on a live chain: payouts, orders and schedules.
    let pid = unique("env-sb");
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/payouts",
        Some(payout(
            &pid,
            &sb_wallet,
            "devnet-l1",
            destination(&pid),
            SANDBOX_AMOUNT,
        )),
    )
    .await;
    assert_error(
        s,
        &v,
        403,
        "sandbox_chain_only",
        &["devnet-l1", "sandbox", SANDBOX_CHAIN],
    );
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/orders",
        Some(json!({ "order_id": "o-1", "chain": "devnet-l2", "asset": "ETH", "amount": "0.001" })),
    )
    .await;
    assert_error(s, &v, 403, "sandbox_chain_only", &["devnet-l2"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sid = unique("env-sched");
    let (s, v) = call(
        &c,
        &sk,
        Method::POST,
        "/v1/schedules",
        Some(json!({
            "schedule_id": sid,
            "payout": {"wallet": sb_wallet, "chain": "devnet-l1", "asset": "ETH",
                       "to": destination(&sid).to_checksum(None), "amount": SANDBOX_AMOUNT},
            "timing": {"rule": {"kind": "interval", "every_secs": 3600},
                       "start": now + 3600, "count": 1},
        })),
    )
    .await;
    assert_error(s, &v, 403, "sandbox_chain_only", &["devnet-l1"]);

    // A live key on the sandbox chain.
    let lid = unique("env-live");
    let (s, v) = call(
        &c,
        &live,
        Method::POST,
        "/v1/payouts",
        Some(payout(
            &lid,
            &live_wallet,
            SANDBOX_CHAIN,
            destination(&lid),
            SANDBOX_AMOUNT,
        )),
    )
    .await;
    assert_error(
        s,
        &v,
        403,
        "live_chain_only",
        &[SANDBOX_CHAIN, "live API key"],
    );
    let (s, v) = call(
        &c,
        &live,
        Method::POST,
        "/v1/orders",
        Some(
            json!({ "order_id": "o-1", "chain": SANDBOX_CHAIN, "asset": "ETH", "amount": "0.001" }),
        ),
    )
    .await;
    assert_error(s, &v, 403, "live_chain_only", &[SANDBOX_CHAIN]);

    // Refused before anything was recorded.
    for id in [&pid, &lid] {
        let (s, v) = call(&c, &op, Method::GET, &format!("/v1/payouts/{id}"), None).await;
        assert_eq!(s, 404, "{id}: {v}");
    }
    let (s, v) = call(&c, &op, Method::GET, &format!("/v1/schedules/{sid}"), None).await;
    assert_eq!(s, 404, "{v}");
    for key in [&sk, &live] {
        let (s, v) = call(&c, key, Method::GET, "/v1/orders", None).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["orders"], json!([]), "{v}");
    }
}
