//! A merchant on the real cluster: its own wallet (made by distributed key
//! generation with its API key), a payout from it on the L1 chain with
//! `payout.*` webhooks to a receiver in the test (verified with the
//! `standardwebhooks` reference library), and the payout hidden from
//! another merchant on every payout and request route.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::fixture::*;
use crate::payouts::unique;

impl Cluster {
    async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    /// A merchant with every scope; its API key.
    async fn merchant(&self, id: &str) -> String {
        let token = self.token.clone();
        let (s, v) = self
            .call_as(
                &token,
                reqwest::Method::POST,
                "/v1/merchants",
                Some(json!({ "merchant_id": id, "name": id, "rate_burst": 0 })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = self
            .call_as(
                &token,
                reqwest::Method::POST,
                &format!("/v1/merchants/{id}/keys"),
                Some(
                    json!({ "scopes": ["wallets:read", "wallets:write", "payouts:read",
                    "payouts:write", "signatures:read", "webhooks:manage", "orders:read", "orders:write"] }),
                ),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["api_key"].as_str().unwrap().to_string()
    }
}

/// Verifies deliveries (`{"headers", "body"}`) with the `standardwebhooks`
/// reference library (`testnets/webhooks/verify.py`); `as_sent` checks the
/// signatures without the 5-minute clock tolerance (deliveries recorded
/// earlier).
pub fn verify_with_standardwebhooks(
    c: &Cluster,
    name: &str,
    secret: &Value,
    deliveries: Value,
    as_sent: bool,
) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let input = c.dir.join(format!("{name}-hooks.json"));
    std::fs::write(
        &input,
        json!({ "secret": secret, "deliveries": deliveries }).to_string(),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(root.join("testnets/.tools/py/bin/python"));
    cmd.arg(root.join("testnets/webhooks/verify.py"))
        .arg(&input);
    if as_sent {
        cmd.arg("--as-sent");
    }
    let out = cmd
        .output()
        .expect("testnets/.tools/py: run testnets/ensure-deps.sh");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_json(deliveries: &[(Value, String)]) -> Value {
    Value::Array(
        deliveries
            .iter()
            .map(|(h, b)| json!({ "headers": h, "body": b }))
            .collect(),
    )
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
                let v = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchants_payout_is_its_own_and_its_webhooks_follow_the_chain() {
    let c = cluster().await;
    let (acme, globex) = (
        unique("acme").to_lowercase(),
        unique("globex").to_lowercase(),
    );
    let ka = c.merchant(&acme).await;
    let kg = c.merchant(&globex).await;
    use reqwest::Method;
    // Its own wallet, by DKG on the three signers.
    let (s, key) = c
        .call_as(
            &ka,
            Method::POST,
            "/v1/keys",
            Some(json!({ "curve": "secp256k1", "t": 2, "n": 3 })),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let key_id = key["key_id"].as_str().unwrap().to_string();
    let wallet = keyfold_chain::evm::address_of_public_key(
        &hex::decode(key["public_key"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    c.chains
        .l1
        .fund(wallet, U256::from(10u64).pow(U256::from(18u64)), U256::ZERO)
        .await
        .unwrap();
    let (url, got) = receiver().await;
    let (s, ep) = c
        .call_as(
            &ka,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": url, "filters": ["payout.*"] })),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let secret = ep["secret"].as_str().unwrap().to_string();

    // Another merchant cannot pay from it.
    let body = |id: &str| {
        json!({ "payout_id": id, "wallet": key_id, "chain": "devnet-l1", "asset": "ETH",
                "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "amount": "0.01" })
    };
    let pid = unique("mp");
    let (s, v) = c
        .call_as(&kg, Method::POST, "/v1/payouts", Some(body(&pid)))
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = c
        .call_as(&ka, Method::POST, "/v1/payouts", Some(body(&pid)))
        .await;
    assert_eq!(s, 201, "{v}");

    // Completed, announced on each chain state, every delivery verified.
    let t0 = Instant::now();
    loop {
        let (_, p) = c
            .call_as(&ka, Method::GET, &format!("/v1/payouts/{pid}"), None)
            .await;
        if p["state"] == "completed" {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "{p}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deliveries = loop {
        let g = got.lock().unwrap().clone();
        if g.iter().any(|(_, b)| b.contains("\"payout.completed\"")) {
            break g;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{g:?}");
        drop(g);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let types: Vec<String> = deliveries
        .iter()
        .map(|(_, b)| {
            serde_json::from_str::<Value>(b).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(types.contains(&"payout.broadcast".to_string()), "{types:?}");
    let done: Value = serde_json::from_str(
        &deliveries
            .iter()
            .find(|(_, b)| b.contains("payout.completed"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(done["data"]["payout_id"], pid.as_str());
    assert!(done["data"]["tx_hash"].is_string(), "{done}");
    verify_with_standardwebhooks(&c, &pid, &json!(secret), as_json(&deliveries), false);

    // The other merchant sees none of it, on any route.
    let request = format!("payout:{pid}");
    for path in [
        format!("/v1/payouts/{pid}"),
        format!("/v1/requests/{request}"),
        format!("/v1/signatures/{request}"),
        format!("/v1/keys/{key_id}"),
    ] {
        let (s, v) = c.call_as(&kg, Method::GET, &path, None).await;
        assert_eq!(s, 404, "{path}: {v}");
    }
    let (s, v) = c.call_as(&kg, Method::GET, "/v1/payouts", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["payouts"], json!([]), "{v}");
    let (s, v) = c
        .call_as(
            &kg,
            Method::POST,
            &format!("/v1/requests/{request}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    // The owner and the operator see it.
    let (s, _) = c
        .call_as(&ka, Method::GET, &format!("/v1/requests/{request}"), None)
        .await;
    assert_eq!(s, 200);
    let token = c.token.clone();
    let (s, v) = c
        .call_as(&token, Method::GET, &format!("/v1/payouts/{pid}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    // The reconciliation of the period finds its payout matched and no
    // outflow from its wallet that is not a payout's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    for (section, kind) in [("payouts", "payout"), ("outflows", "outflow")] {
        let (s, v) = c
            .call_as(
                &ka,
                Method::GET,
                &format!("/v1/reconciliation?from=0&to={now}&section={section}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let items = v["items"].as_array().unwrap();
        assert!(!items.is_empty(), "{v}");
        assert!(
            items
                .iter()
                .all(|i| i["kind"] == kind && i["status"] == "matched"),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_while_orders_settle_announces_each_change_under_one_id() {
    let mut c = cluster().await;
    use reqwest::Method;
    let m = unique("shop").to_lowercase();
    let key = c.merchant(&m).await;
    let token = c.token.clone();
    let collection = c.ecdsa.key_id.clone();
    let (s, v) = c
        .call_as(
            &token,
            Method::POST,
            &format!("/v1/merchants/{m}/settings"),
            Some(json!({ "collection_key": collection })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (url, got) = receiver().await;
    let (s, ep) = c
        .call_as(
            &key,
            Method::POST,
            "/v1/webhooks",
            Some(json!({ "url": url, "filters": ["order.*"] })),
        )
        .await;
    assert_eq!(s, 201, "{ep}");
    let mut orders = Vec::new();
    for i in 0..30 {
        let id = format!("k-{i}");
        let (s, o) = c
            .call_as(&key, Method::POST, "/v1/orders", Some(json!({ "order_id": id, "chain": "devnet-l1", "asset": "ETH", "amount": "0.001" })))
            .await;
        assert_eq!(s, 201, "{o}");
        orders.push(o);
    }
    let rpc = c.chains.l1_rpc();
    for o in &orders {
        let to = o["address"].as_str().unwrap().parse().unwrap();
        rpc.send_from_dev(
            c.chains.l1.dev,
            Some(to),
            U256::from(10u64.pow(15)),
            Vec::new(),
        )
        .await
        .unwrap();
    }
    // Killed (SIGKILL) while the watcher records deposits and the outbox
    // delivers; started again a moment later.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.kill("coordinator");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let t0 = Instant::now();
    let deliveries = loop {
        let g = got.lock().unwrap().clone();
        let settled: std::collections::HashSet<String> = g
            .iter()
            .filter_map(|(_, b)| {
                let v: Value = serde_json::from_str(b).ok()?;
                (v["type"] == "order.settled")
                    .then(|| v["data"]["order_id"].as_str().unwrap().to_string())
            })
            .collect();
        if settled.len() == orders.len() {
            break g;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} of 30 settled",
            settled.len()
        );
        drop(g);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // Each (order, event type) went out under one webhook-id, however many
    // times it was sent.
    let mut ids: std::collections::HashMap<(String, String), std::collections::HashSet<String>> =
        Default::default();
    for (h, b) in &deliveries {
        let v: Value = serde_json::from_str(b).unwrap();
        ids.entry((
            v["data"]["order_id"].as_str().unwrap().into(),
            v["type"].as_str().unwrap().into(),
        ))
        .or_default()
        .insert(h["webhook-id"].as_str().unwrap().into());
    }
    for (k, set) in &ids {
        assert_eq!(set.len(), 1, "{k:?} was announced under {set:?}");
    }
    verify_with_standardwebhooks(&c, &m, &ep["secret"], as_json(&deliveries), false);
}
