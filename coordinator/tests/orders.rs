//! Payment orders and webhooks against a real anvil chain (one per test,
//! with the test token) and a real coordinator (in-process signers: orders
//! sign nothing). The chain watcher runs tick by tick where a test needs to
//! see an intermediate state (a reorg), else in the background; webhook
//! deliveries go to a receiver in the test and are verified with the
//! `standardwebhooks` reference library (Python, installed by
//! `testnets/ensure-deps.sh`), not with Keyfold's code.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{start_in_with, Env};
use keyfold_coordinator::chain_rpc::devchain::DevChain;
use keyfold_coordinator::chain_rpc::find_anvil;
use keyfold_coordinator::modules::Modules;
use keyfold_coordinator::testing::FakeSigners;
use serde_json::{json, Value};
use tokio::sync::Notify;

const CHAIN: &str = "devnet-l1";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the receiver got: (path, headers, body), and how to answer.
#[derive(Default)]
struct Receiver {
    got: Vec<(String, Value, String)>,
}

/// A receiver on loopback: `/ok` answers 204, `/fail` 500, `/slow` after
/// 3 s, `/redirect` 302 to `/ok`.
async fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect_to = format!("{base}/ok");
    let st = state.clone();
    let handler = move |axum::extract::Path(path): axum::extract::Path<String>,
                        headers: HeaderMap,
                        body: Bytes| {
        let (st, redirect_to) = (st.clone(), redirect_to.clone());
        async move {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            st.lock().unwrap().got.push((
                path.clone(),
                json!({
                    "webhook-id": h("webhook-id"),
                    "webhook-timestamp": h("webhook-timestamp"),
                    "webhook-signature": h("webhook-signature"),
                }),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            match path.as_str() {
                "ok" => StatusCode::NO_CONTENT.into_response_parts(),
                "fail" => StatusCode::INTERNAL_SERVER_ERROR.into_response_parts(),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    StatusCode::NO_CONTENT.into_response_parts()
                }
                _ => (
                    StatusCode::FOUND,
                    [(axum::http::header::LOCATION, redirect_to)],
                )
                    .into_response_parts(),
            }
        }
    };
    let app = axum::Router::new().route("/{path}", axum::routing::post(handler));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

trait Parts {
    fn into_response_parts(self) -> axum::response::Response;
}
impl<T: axum::response::IntoResponse> Parts for T {
    fn into_response_parts(self) -> axum::response::Response {
        self.into_response()
    }
}

/// The chain, the coordinator (with a merchant `acme` whose collection key
/// is set) and the merchant's API key under `acme` in `env.tokens`.
struct World {
    env: Env,
    chain: DevChain,
    dir_top: String,
    extra: String,
}

fn extra(allow_private: bool) -> String {
    format!(
        "\n[orders]\npoll_ms = 100\n\n[webhooks]\nallow_private_targets = {allow_private}\n\
         poll_ms = 50\ntimeout_ms = 1000\ndisable_after_failures = 4\ndisable_after_secs = 0\n"
    )
}

async fn world(allow_private: bool) -> World {
    let anvil = find_anvil(Some(&root())).expect("anvil: run testnets/ensure-deps.sh");
    // Automine: a block per transaction; tests mine more for confirmations.
    let chain = DevChain::start(&anvil, &root(), 31337, None, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("chains.toml");
    std::fs::write(&registry, chain.registry_toml(CHAIN, "Test L1", 2)).unwrap();
    let top = format!("chains_file = {:?}\n", registry.to_str().unwrap());
    let extra = extra(allow_private);
    let mut env = start_in_with(dir, FakeSigners::new(), Modules::default(), &top, &extra).await;
    merchant(&mut env, "acme").await;
    let w = World {
        env,
        chain,
        dir_top: top,
        extra,
    };
    // The watcher's first tick sets its cursor at the head: what the
    // tests pay comes after.
    tick(&w).await;
    w
}

/// A merchant with every order and webhook scope and a collection key.
async fn merchant(env: &mut Env, id: &str) {
    common::merchant_with_collection_key(
        env,
        id,
        &[
            "orders:read",
            "orders:write",
            "webhooks:manage",
            "wallets:write",
        ],
    )
    .await;
}

/// Starts the background watcher and delivery worker; their stop handles.
fn background(env: &Env) -> Vec<Arc<Notify>> {
    let mut stops: Vec<Arc<Notify>> =
        keyfold_coordinator::orders::watcher::spawn_all(&env.coordinator)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    let stop = Arc::new(Notify::new());
    tokio::spawn(keyfold_coordinator::webhooks::delivery::run(
        Arc::downgrade(&env.coordinator),
        stop.clone(),
    ));
    stops.push(stop);
    stops
}

async fn order(env: &Env, who: &str, id: &str, asset: &str, amount: &str, expires: u64) -> Value {
    let (s, v) = env
        .post(
            who,
            "/v1/orders",
            json!({ "order_id": id, "chain": CHAIN, "asset": asset, "amount": amount,
                    "expires_in": expires, "metadata": { "ref": id } }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Pays `base_units` of the order's asset to its address from the dev
/// account; the transaction hash.
async fn pay(w: &World, order: &Value, base_units: u128) -> String {
    let to: Address = order["address"].as_str().unwrap().parse().unwrap();
    let rpc = w.chain.rpc();
    let amount = U256::from(base_units);
    let hash = if order["token_contract"].is_string() {
        rpc.send_from_dev(
            w.chain.dev,
            Some(w.chain.token),
            U256::ZERO,
            keyfold_chain::evm::erc20_transfer_calldata(to, amount),
        )
        .await
    } else {
        rpc.send_from_dev(w.chain.dev, Some(to), amount, Vec::new())
            .await
    }
    .unwrap();
    // Mined before the caller looks (anvil may mine just after answering).
    rpc.wait_receipt(hash, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the payment is mined");
    hash.to_string()
}

async fn mine(w: &World, blocks: u64) {
    w.chain.anvil.rpc().mine(blocks).await.unwrap();
}

async fn get_order(env: &Env, who: &str, id: &str) -> Value {
    let (s, v) = env.get(who, &format!("/v1/orders/{id}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Waits (up to 20 s) until order `id` has `status`.
async fn wait_status(env: &Env, id: &str, status: &str) -> Value {
    for _ in 0..200 {
        let v = get_order(env, "acme", id).await;
        if v["status"] == status {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "order {id} never became {status}: {}",
        get_order(env, "acme", id).await
    );
}

/// One watcher tick now.
async fn tick(w: &World) -> keyfold_coordinator::orders::watcher::TickReport {
    let registry = keyfold_chain::registry::ChainRegistry::from_toml(
        &w.chain.registry_toml(CHAIN, "Test L1", 2),
    )
    .unwrap();
    let entry = registry.get(CHAIN).unwrap().clone();
    keyfold_coordinator::orders::watcher::tick(&w.env.coordinator, &entry, &w.chain.rpc())
        .await
        .unwrap()
}

/// Verifies deliveries with the `standardwebhooks` reference library.
fn verify_with_python(secret: &str, deliveries: &[(String, Value, String)]) {
    let python = root().join("testnets/.tools/py/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run testnets/ensure-deps.sh",
        python.display()
    );
    let doc = json!({
        "secret": secret,
        "deliveries": deliveries
            .iter()
            .map(|(_, h, b)| json!({ "headers": h, "body": b }))
            .collect::<Vec<_>>(),
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc.to_string()).unwrap();
    let out = std::process::Command::new(python)
        .arg(root().join("testnets/webhooks/verify.py"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a delivery: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn endpoint(env: &Env, who: &str, url: &str, filters: Value) -> Value {
    let (s, v) = env
        .post(
            who,
            "/v1/webhooks",
            json!({ "url": url, "filters": filters }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

fn bodies_of(r: &Arc<Mutex<Receiver>>, path: &str) -> Vec<(String, Value, String)> {
    r.lock()
        .unwrap()
        .got
        .iter()
        .filter(|(p, _, _)| p == path)
        .cloned()
        .collect()
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(t) = f() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn native_and_token_orders_settle_and_their_webhooks_verify_with_standardwebhooks() {
    let w = world(true).await;
    let (base, rx) = receiver().await;
    let ep = endpoint(&w.env, "acme", &format!("{base}/ok"), json!(["order.*"])).await;
    let secret = ep["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let _stops = background(&w.env);
    let eth = order(&w.env, "acme", "o-eth", "ETH", "0.25", 600).await;
    let kft = order(&w.env, "acme", "o-kft", "KFT", "12.5", 600).await;
    assert_ne!(eth["address"], kft["address"], "one address per order");
    assert_eq!(eth["status"], "new");
    assert_eq!(eth["amount_base_units"], "250000000000000000");
    assert_eq!(kft["amount_base_units"], "12500000");
    assert_eq!(
        eth["payment_uri"],
        format!(
            "ethereum:{}@31337?value=250000000000000000",
            eth["address"].as_str().unwrap()
        )
    );
    let h1 = pay(&w, &eth, 250_000_000_000_000_000).await;
    let h2 = pay(&w, &kft, 12_500_000).await;
    mine(&w, 2).await;
    let eth = wait_status(&w.env, "o-eth", "settled").await;
    let kft = wait_status(&w.env, "o-kft", "settled").await;
    assert_eq!(eth["deposits"][0]["tx_hash"], h1.as_str());
    assert_eq!(kft["deposits"][0]["tx_hash"], h2.as_str());
    assert!(kft["deposits"][0]["log_index"].is_u64(), "{kft}");
    assert!(eth["deposits"][0]["confirmations"].as_u64().unwrap() >= 2);
    assert_eq!(eth["metadata"], json!({ "ref": "o-eth" }));

    // The receiver got order.processing and order.settled for both.
    let got = wait_for("both settlement webhooks", || {
        let got = bodies_of(&rx, "ok");
        let settled = got
            .iter()
            .filter(|(_, _, b)| b.contains("\"type\":\"order.settled\""))
            .count();
        (settled == 2).then_some(got)
    })
    .await;
    verify_with_python(&secret, &got);
    let settled: Value = serde_json::from_str(
        &got.iter()
            .find(|(_, _, b)| b.contains("o-eth") && b.contains("order.settled"))
            .unwrap()
            .2,
    )
    .unwrap();
    assert_eq!(settled["data"]["status"], "settled");
    assert_eq!(
        settled["data"]["confirmed_base_units"],
        "250000000000000000"
    );
    // Each event has one id; the delivery log shows them delivered.
    let mut ids: Vec<&str> = got
        .iter()
        .map(|(_, h, _)| h["webhook-id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an event delivered once per id");
    let (s, log) = w
        .env
        .get(
            "acme",
            &format!(
                "/v1/webhooks/{}/deliveries",
                ep["endpoint"]["endpoint_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "delivered"),
        "{log}"
    );
}

#[tokio::test]
async fn overpaying_deposits_settle_as_paid_over_and_a_short_one_expires_as_paid_partial() {
    let w = world(true).await;
    let over = order(&w.env, "acme", "o-over", "KFT", "10", 600).await;
    let short = order(&w.env, "acme", "o-short", "ETH", "1", 120).await;
    pay(&w, &over, 6_000_000).await;
    pay(&w, &over, 6_000_000).await;
    pay(&w, &short, 400_000_000_000_000_000).await;
    mine(&w, 2).await;
    tick(&w).await;
    let v = get_order(&w.env, "acme", "o-over").await;
    assert_eq!(v["status"], "settled", "{v}");
    assert_eq!(v["additional_status"], json!(["paid_over"]));
    assert_eq!(v["confirmed_base_units"], "12000000");
    assert_eq!(v["deposits"].as_array().unwrap().len(), 2);
    let v = get_order(&w.env, "acme", "o-short").await;
    assert_eq!(v["status"], "processing", "{v}");
    assert_eq!(v["additional_status"], json!(["paid_partial"]));
    // Past its expiry (the coordinator's clock; the chain's too).
    w.env.clock.advance_ms(121_000);
    tick(&w).await;
    let v = get_order(&w.env, "acme", "o-short").await;
    assert_eq!(v["status"], "expired", "{v}");
    assert_eq!(v["additional_status"], json!(["paid_partial"]));
}

#[tokio::test]
async fn a_deposit_to_an_expired_order_is_recorded_as_late_and_does_not_settle_it() {
    let w = world(true).await;
    let o = order(&w.env, "acme", "o-late", "ETH", "0.5", 60).await;
    tick(&w).await;
    w.env.clock.advance_ms(61_000);
    // The chain's time moves as far, so the payment's block is after expiry.
    let _: Value = w
        .chain
        .rpc()
        .raw_request("evm_increaseTime", json!([61]))
        .await
        .unwrap();
    tick(&w).await;
    assert_eq!(
        get_order(&w.env, "acme", "o-late").await["status"],
        "expired"
    );
    pay(&w, &o, 500_000_000_000_000_000).await;
    mine(&w, 2).await;
    tick(&w).await;
    let v = get_order(&w.env, "acme", "o-late").await;
    assert_eq!(v["status"], "expired", "{v}");
    assert_eq!(v["additional_status"], json!(["paid_late"]));
    assert_eq!(v["late_base_units"], "500000000000000000");
    assert_eq!(v["deposits"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_reorg_that_removes_a_deposit_takes_the_order_back_and_a_restart_misses_nothing() {
    let w = world(true).await;
    let o = order(&w.env, "acme", "o-reorg", "ETH", "0.5", 600).await;
    tick(&w).await;
    pay(&w, &o, 500_000_000_000_000_000).await;
    let r = tick(&w).await;
    assert_eq!(r.deposits, 1);
    assert_eq!(
        get_order(&w.env, "acme", "o-reorg").await["status"],
        "processing"
    );
    // The block that paid it is replaced by an empty one.
    w.chain.anvil.rpc().reorg(1).await.unwrap();
    let r = tick(&w).await;
    assert!(r.reorg_above.is_some(), "{r:?}");
    let v = get_order(&w.env, "acme", "o-reorg").await;
    assert_eq!(v["status"], "new", "{v}");
    assert_eq!(v["deposits"][0]["removed"], true, "{v}");
    assert_eq!(v["deposits"][0]["confirmations"], 0);

    // Paid again while the coordinator is down: found once after restart.
    let World {
        env,
        chain,
        dir_top,
        extra,
    } = w;
    let stopped = env.stop().await;
    let w = World {
        env: stopped.start_with(&dir_top, &extra).await,
        chain,
        dir_top,
        extra,
    };
    pay(&w, &o, 500_000_000_000_000_000).await;
    mine(&w, 2).await;
    let first = tick(&w).await;
    let again = tick(&w).await;
    assert_eq!((first.deposits, again.deposits), (1, 0));
    let v = get_order(&w.env, "acme", "o-reorg").await;
    assert_eq!(v["status"], "settled", "{v}");
    let live: Vec<&Value> = v["deposits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["removed"].is_null())
        .collect();
    assert_eq!(live.len(), 1, "{v}");
}

#[tokio::test]
async fn bad_orders_are_refused_and_ids_are_idempotent_per_merchant() {
    let mut w = world(true).await;
    let body = |asset: &str, amount: &str| json!({ "order_id": "o-1", "chain": CHAIN, "asset": asset, "amount": amount });
    for (b, field) in [
        (body("DOGE", "1"), "asset"),
        (body("ETH", "0"), "amount"),
        (body("ETH", "-1"), "amount"),
        (body("ETH", "0.0000000000000000001"), "amount"),
        (
            json!({ "order_id": "o-1", "chain": "nowhere", "asset": "ETH", "amount": "1" }),
            "chain",
        ),
        (
            json!({ "order_id": "o-1", "chain": CHAIN, "asset": "ETH", "amount": "1", "expires_in": 5 }),
            "expires_in",
        ),
        (
            json!({ "order_id": "o-1", "chain": CHAIN, "asset": "ETH", "amount": "1", "metadata": [1] }),
            "metadata",
        ),
    ] {
        let (s, v) = w.env.post("acme", "/v1/orders", b.clone()).await;
        assert_eq!(s, 400, "{b}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(field), "{b}: {msg}");
    }
    // Operators have no orders: they belong to merchants.
    let (s, _) = w.env.post("payments", "/v1/orders", body("ETH", "1")).await;
    assert_eq!(s, 400);
    let first = order(&w.env, "acme", "o-1", "ETH", "1", 3600).await;
    let (s, again) = w
        .env
        .post(
            "acme",
            "/v1/orders",
            json!({ "order_id": "o-1", "chain": CHAIN, "asset": "ETH", "amount": "1",
                    "expires_in": 3600, "metadata": { "ref": "o-1" } }),
        )
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["address"], first["address"]);
    let (s, v) = w.env.post("acme", "/v1/orders", body("ETH", "2")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{v}"
    );

    // Another merchant: its own namespace, and acme's objects are not found.
    merchant(&mut w.env, "globex").await;
    let theirs = order(&w.env, "globex", "o-1", "ETH", "1", 3600).await;
    assert_ne!(theirs["address"], first["address"]);
    let (s, _) = w.env.get("globex", "/v1/orders/o-2").await;
    assert_eq!(s, 404);
    let (_, list) = w.env.get("globex", "/v1/orders").await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(list["orders"][0]["merchant_id"], "globex");
    let (base, _) = receiver().await;
    let ep = endpoint(&w.env, "acme", &format!("{base}/ok"), json!(["order.*"])).await;
    let id = ep["endpoint"]["endpoint_id"].as_str().unwrap();
    for path in [
        format!("/v1/webhooks/{id}"),
        format!("/v1/webhooks/{id}/deliveries"),
    ] {
        let (s, v) = w.env.get("globex", &path).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    for path in [
        format!("/v1/webhooks/{id}/disable"),
        format!("/v1/webhooks/{id}/rotate"),
        format!("/v1/webhooks/{id}/deliveries/msg_x/redeliver"),
    ] {
        let (s, v) = w.env.post("globex", &path, json!({})).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    let (_, l) = w.env.get("globex", "/v1/webhooks").await;
    assert_eq!(l["endpoints"], json!([]));
}

#[tokio::test]
async fn failing_endpoints_are_retried_with_the_same_id_and_never_delay_a_good_one() {
    let w = world(true).await;
    let (base, rx) = receiver().await;
    let good = endpoint(
        &w.env,
        "acme",
        &format!("{base}/ok"),
        json!(["order.settled"]),
    )
    .await;
    let mut bad = HashMap::new();
    for path in ["fail", "slow", "redirect"] {
        bad.insert(
            path,
            endpoint(
                &w.env,
                "acme",
                &format!("{base}/{path}"),
                json!(["order.*"]),
            )
            .await,
        );
    }
    let _stops = background(&w.env);
    let o = order(&w.env, "acme", "o-hooks", "ETH", "0.1", 600).await;
    pay(&w, &o, 100_000_000_000_000_000).await;
    // Seen (order.processing), then confirmed (order.settled).
    wait_status(&w.env, "o-hooks", "processing").await;
    mine(&w, 2).await;
    wait_status(&w.env, "o-hooks", "settled").await;
    // The good endpoint gets its event at once, whatever the others do.
    let got = wait_for("the good endpoint's delivery", || {
        let g = bodies_of(&rx, "ok");
        (!g.is_empty()).then_some(g)
    })
    .await;
    verify_with_python(good["secret"].as_str().unwrap(), &got);
    assert!(got.iter().all(|(_, _, b)| b.contains("order.settled")));
    // The redirect was not followed: /ok saw only the good endpoint's.
    assert_eq!(got.len(), 1, "{got:?}");

    // The failing ones are retried (5 s later on the coordinator's clock)
    // with the same webhook-id.
    let fail_id = bad["fail"]["endpoint"]["endpoint_id"]
        .as_str()
        .unwrap()
        .to_string();
    let clock = w.env.clock.clone();
    let log = wait_for("a retry of the failing endpoint", || {
        clock.advance_ms(700);
        let f = bodies_of(&rx, "fail");
        let settled: Vec<_> = f
            .iter()
            .filter(|(_, _, b)| b.contains("order.settled"))
            .cloned()
            .collect();
        (settled.len() >= 2).then_some(settled)
    })
    .await;
    assert_eq!(log[0].1["webhook-id"], log[1].1["webhook-id"]);
    assert_eq!(log[0].2, log[1].2, "the same body");
    let (_, d) = w
        .env
        .get("acme", &format!("/v1/webhooks/{fail_id}/deliveries"))
        .await;
    let settled = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["event_type"] == "order.settled")
        .unwrap()
        .clone();
    assert_eq!(settled["last_status"], 500, "{d}");
    let slow_id = bad["slow"]["endpoint"]["endpoint_id"].as_str().unwrap();
    let e = wait_for_delivery_error(&w.env, slow_id).await;
    assert!(e.contains("no answer within"), "{e}");
    let redirect_id = bad["redirect"]["endpoint"]["endpoint_id"].as_str().unwrap();
    let e = wait_for_delivery_error(&w.env, redirect_id).await;
    assert!(e.contains("redirects are not followed"), "{e}");

    // Four failures in a row (the configured run) disable an endpoint,
    // with the reason.
    let v = wait_for_endpoint_disabled(&w.env, &fail_id).await;
    assert!(
        v["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("failed attempts"),
        "{v}"
    );

    // Manual redelivery to the good endpoint: the same id again.
    let event = got[0].1["webhook-id"].as_str().unwrap().to_string();
    let good_id = good["endpoint"]["endpoint_id"].as_str().unwrap();
    let (s, v) = w
        .env
        .post(
            "acme",
            &format!("/v1/webhooks/{good_id}/deliveries/{event}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let again = wait_for("the redelivery", || {
        let g = bodies_of(&rx, "ok");
        (g.len() == 2).then_some(g)
    })
    .await;
    assert_eq!(again[1].1["webhook-id"], event.as_str());
    verify_with_python(good["secret"].as_str().unwrap(), &again);
}

async fn wait_for_endpoint_disabled(env: &Env, id: &str) -> Value {
    for _ in 0..300 {
        env.clock.advance_ms(700);
        let (_, v) = env.get("acme", &format!("/v1/webhooks/{id}")).await;
        if v["disabled_at"].is_i64() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("endpoint {id} was never disabled");
}

#[tokio::test]
async fn a_private_target_is_refused_unless_the_configuration_allows_it() {
    let w = world(false).await;
    let (base, rx) = receiver().await;
    let ep = endpoint(&w.env, "acme", &format!("{base}/ok"), json!(["*"])).await;
    let id = ep["endpoint"]["endpoint_id"].as_str().unwrap().to_string();
    let _stops = background(&w.env);
    let o = order(&w.env, "acme", "o-private", "ETH", "0.1", 600).await;
    pay(&w, &o, 100_000_000_000_000_000).await;
    wait_status(&w.env, "o-private", "processing").await;
    let d = wait_for_delivery_error(&w.env, &id).await;
    assert!(d.contains("private"), "{d}");
    assert!(
        bodies_of(&rx, "ok").is_empty(),
        "nothing reached the loopback receiver"
    );
}

async fn wait_for_delivery_error(env: &Env, id: &str) -> String {
    for _ in 0..300 {
        let (_, v) = env
            .get("acme", &format!("/v1/webhooks/{id}/deliveries"))
            .await;
        if let Some(e) = v["deliveries"][0]["last_error"].as_str() {
            return e.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no failed delivery at {id}");
}

#[tokio::test]
async fn an_event_committed_before_a_crash_is_sent_after_the_restart_with_its_id() {
    let w = world(true).await;
    let (base, rx) = receiver().await;
    let ep = endpoint(
        &w.env,
        "acme",
        &format!("{base}/ok"),
        json!(["order.settled"]),
    )
    .await;
    let o = order(&w.env, "acme", "o-crash", "KFT", "1", 600).await;
    pay(&w, &o, 1_000_000).await;
    mine(&w, 2).await;
    // The state change and its event commit together; no worker runs yet.
    tick(&w).await;
    assert_eq!(
        get_order(&w.env, "acme", "o-crash").await["status"],
        "settled"
    );
    assert!(bodies_of(&rx, "ok").is_empty());
    let World {
        env,
        chain,
        dir_top,
        extra,
    } = w;
    let stopped = env.stop().await;
    let env = stopped.start_with(&dir_top, &extra).await;
    let _stops = background(&env);
    let got = wait_for("the delivery after the restart", || {
        let g = bodies_of(&rx, "ok");
        (!g.is_empty()).then_some(g)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bodies_of(&rx, "ok").len(), 1, "sent once");
    verify_with_python(ep["secret"].as_str().unwrap(), &got);
    assert!(got[0].2.contains("o-crash"));
    drop(chain);
}

#[tokio::test]
async fn a_period_reconciles_without_difference_until_funds_leave_an_order_address() {
    let mut w = world(true).await;
    merchant(&mut w.env, "globex").await;
    let eth = order(&w.env, "acme", "r-eth", "ETH", "0.2", 600).await;
    let kft = order(&w.env, "acme", "r-kft", "KFT", "3", 600).await;
    pay(&w, &eth, 200_000_000_000_000_000).await;
    pay(&w, &kft, 3_000_000).await;
    mine(&w, 2).await;
    tick(&w).await;
    let to = w.env.clock_secs() + 1;
    let report = |who: &'static str, section: &'static str, extra: &'static str| {
        let env = &w.env;
        async move {
            let (s, v) = env
                .get(
                    who,
                    &format!("/v1/reconciliation?from=0&to={to}&section={section}{extra}"),
                )
                .await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let v = report("acme", "orders", "").await;
    let items = v["items"].as_array().unwrap();
    // KFT: one transfer; ETH: its receipt and the address's balance.
    assert_eq!(items.len(), 3, "{v}");
    assert!(items.iter().all(|i| i["status"] == "matched"), "{v}");
    assert_eq!(
        (v["differences"].as_u64(), v["alerts"].as_u64()),
        (Some(0), Some(0))
    );
    let v = report("acme", "outflows", "").await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "matched"),
        "{v}"
    );
    // The ledger holds at each order address what the chain does.
    let v = report("acme", "ledger", "").await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert!(
        items
            .iter()
            .all(|i| i["kind"] == "ledger_balance" && i["status"] == "matched"),
        "{v}"
    );
    let eth_line = items.iter().find(|i| i["reference"] == "r-eth").unwrap();
    assert_eq!(eth_line["recorded_base_units"], "200000000000000000");
    let kft_line = items.iter().find(|i| i["reference"] == "r-kft").unwrap();
    assert_eq!(kft_line["on_chain_base_units"], "3000000");
    // The operator names the merchant; another merchant cannot.
    let v = report("payments", "orders", "&merchant_id=acme").await;
    assert_eq!(v["matched"], 3);
    let (s, _) = w
        .env
        .get(
            "globex",
            &format!("/v1/reconciliation?from=0&to={to}&merchant_id=acme"),
        )
        .await;
    assert_eq!(s, 400);
    // CSV, with a header line.
    let resp = w
        .env
        .http
        .get(format!(
            "{}/v1/reconciliation?from=0&to={to}&format=csv",
            w.env.url
        ))
        .bearer_auth(&w.env.tokens["acme"])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("kind,reference,chain,asset,address,tx_hash"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");

    // Funds leave the ETH order's address with no payout: an alert, and
    // its balance no longer holds what was recorded.
    let addr: Address = eth["address"].as_str().unwrap().parse().unwrap();
    let rpc = w.chain.rpc();
    rpc.impersonate(addr).await.unwrap();
    rpc.send_from_dev(
        addr,
        Some(w.chain.dev),
        U256::from(10u64.pow(17)),
        Vec::new(),
    )
    .await
    .unwrap();
    let v = report("acme", "outflows", "").await;
    let alert: Vec<&Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "unmatched_outflow")
        .collect();
    assert_eq!(alert.len(), 1, "{v}");
    assert_eq!(alert[0]["address"], eth["address"]);
    assert_eq!(v["alerts"], 1);
    let v = report("acme", "orders", "").await;
    let balance = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "order_balance")
        .unwrap()
        .clone();
    assert_eq!(balance["status"], "missing_on_chain", "{v}");
    let v = report("acme", "ledger", "").await;
    let line = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == "r-eth")
        .unwrap()
        .clone();
    assert_eq!(line["status"], "missing_on_chain", "{v}");
    assert_eq!(line["recorded_base_units"], "200000000000000000");
    assert_eq!(v["differences"], 1, "{v}");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_and_v1a_endpoints_sign_with_ed25519() {
    use base64::Engine as _;
    let w = world(true).await;
    let (base, rx) = receiver().await;
    let hmac_ep = endpoint(&w.env, "acme", &format!("{base}/ok"), json!(["order.*"])).await;
    let old = hmac_ep["secret"].as_str().unwrap().to_string();
    let id = hmac_ep["endpoint"]["endpoint_id"].as_str().unwrap();
    let (s, rotated) = w
        .env
        .post(
            "acme",
            &format!("/v1/webhooks/{id}/rotate"),
            json!({ "overlap_secs": 3600 }),
        )
        .await;
    assert_eq!(s, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    let (s, ed) = w
        .env
        .post(
            "acme",
            "/v1/webhooks",
            json!({ "url": format!("{base}/ok"), "filters": ["order.settled"], "signature": "v1a" }),
        )
        .await;
    assert_eq!(s, 201, "{ed}");
    assert!(ed.get("secret").is_none(), "{ed}");
    let public = ed["endpoint"]["public_key"].as_str().unwrap().to_string();
    assert!(public.starts_with("whpk_"), "{public}");
    let _stops = background(&w.env);
    let o = order(&w.env, "acme", "o-rot", "ETH", "0.1", 600).await;
    pay(&w, &o, 100_000_000_000_000_000).await;
    mine(&w, 2).await;
    wait_status(&w.env, "o-rot", "settled").await;
    let got = wait_for("deliveries to both endpoints", || {
        let g = bodies_of(&rx, "ok");
        let v1a = g
            .iter()
            .filter(|(_, h, _)| h["webhook-signature"].as_str().unwrap().starts_with("v1a,"))
            .count();
        (v1a >= 1 && g.len() >= 2).then_some(g)
    })
    .await;
    let (hmac, ed25519): (Vec<_>, Vec<_>) = got
        .into_iter()
        .partition(|(_, h, _)| h["webhook-signature"].as_str().unwrap().starts_with("v1,"));
    // Two signatures during the overlap: the old secret and the new one
    // each verify with the reference library.
    for (_, h, _) in &hmac {
        assert_eq!(
            h["webhook-signature"].as_str().unwrap().split(' ').count(),
            2,
            "{h}"
        );
    }
    verify_with_python(&old, &hmac);
    verify_with_python(&new, &hmac);
    // v1a: Ed25519 over id.timestamp.body, verified with ed25519-dalek.
    let pk: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(public.trim_start_matches("whpk_"))
        .unwrap()
        .try_into()
        .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    for (_, h, body) in &ed25519 {
        let sig = h["webhook-signature"]
            .as_str()
            .unwrap()
            .trim_start_matches("v1a,");
        let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .unwrap()
            .try_into()
            .unwrap();
        let content = format!(
            "{}.{}.{}",
            h["webhook-id"].as_str().unwrap(),
            h["webhook-timestamp"].as_str().unwrap(),
            body
        );
        vk.verify_strict(
            content.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .expect("v1a signature");
    }
}

#[tokio::test]
async fn the_watcher_follows_a_chain_that_became_shorter_than_its_cursor() {
    let w = world(true).await;
    let o = order(&w.env, "acme", "o-reset", "ETH", "0.5", 600).await;
    pay(&w, &o, 500_000_000_000_000_000).await;
    mine(&w, 5).await;
    tick(&w).await;
    assert_eq!(
        get_order(&w.env, "acme", "o-reset").await["status"],
        "settled"
    );
    // Every block replaced at once, deeper than anything else: the chain
    // starts again from genesis (anvil_reset), shorter than the cursor.
    let _: Value = w
        .chain
        .rpc()
        .raw_request("anvil_reset", json!([]))
        .await
        .unwrap();
    let r = tick(&w).await;
    assert!(r.reorg_above.is_some(), "{r:?}");
    let v = get_order(&w.env, "acme", "o-reset").await;
    assert_eq!(
        v["status"], "invalid",
        "a settled order lost its deposit: {v}"
    );
    assert_eq!(v["deposits"][0]["removed"], true, "{v}");
    // New blocks on the new chain are scanned again from its head.
    let rpc = w.chain.rpc();
    let to: Address = o["address"].as_str().unwrap().parse().unwrap();
    let hash = rpc
        .send_from_dev(w.chain.dev, Some(to), U256::from(1u64), Vec::new())
        .await
        .unwrap();
    rpc.wait_receipt(hash, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("mined on the new chain");
    let r = tick(&w).await;
    assert_eq!(r.deposits, 1, "{r:?}");
    assert_eq!(r.reorg_above, None);
}
