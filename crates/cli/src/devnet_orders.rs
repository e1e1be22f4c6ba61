//! The devnet's merchant: a merchant with an API key, a webhook endpoint
//! served by a small receiver inside the devnet (which checks every
//! delivery's Standard Webhooks signature as a merchant would, and records
//! what it got), and a native and a token order on each chain, paid from
//! anvil's development account and followed until they settle.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use keyfold_chain::evm;
use keyfold_proto::api::{KeyInfo, OrderInfo};
use keyfold_webhooks::sign::{self, Secret};
use serde::Serialize;
use serde_json::{json, Value};

use crate::devnet_chains::Chains;
use crate::http::Api;

/// The devnet merchant's id.
pub const MERCHANT: &str = "devnet-shop";

/// The merchant in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct MerchantSummary {
    /// Its id.
    pub id: String,
    /// The `whsec_...` secret of its devnet endpoint.
    pub webhook_secret: String,
}

/// A deposit in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct DepositSummary {
    /// Transaction hash.
    pub tx_hash: String,
    /// Amount, base units.
    pub amount_base_units: String,
    /// Confirmations when the devnet read it.
    pub confirmations: u64,
}

/// An order in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct OrderSummary {
    /// The merchant's id for it.
    pub order_id: String,
    /// EVM chain id.
    pub chain_id: u64,
    /// Asset symbol.
    pub asset: String,
    /// Its deposit address.
    pub address: String,
    /// Amount due, base units.
    pub amount_base_units: String,
    /// `settled`.
    pub status: String,
    /// What paid it.
    pub deposits: Vec<DepositSummary>,
}

/// A delivery the receiver got, in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct WebhookSummary {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub headers: Value,
    /// The raw body as received.
    pub body: String,
}

/// What the merchant part of the devnet did.
pub struct Accepted {
    /// The merchant.
    pub merchant: MerchantSummary,
    /// Its settled orders.
    pub orders: Vec<OrderSummary>,
    /// Every delivery the receiver got.
    pub webhooks: Vec<WebhookSummary>,
}

#[derive(Default)]
struct Received {
    valid: Vec<WebhookSummary>,
    invalid: usize,
}

/// The receiver: verifies each delivery with the endpoint's secret, keeps
/// the valid ones, answers 401 to the others.
async fn receiver(
    secret: Arc<Mutex<Option<Secret>>>,
    got: Arc<Mutex<Received>>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("webhook receiver: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("webhook receiver: {e}"))?;
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (secret, got) = (secret.clone(), got.clone());
        async move {
            let h = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let (id, ts, sig) = (
                h(sign::HEADER_ID),
                h(sign::HEADER_TIMESTAMP),
                h(sign::HEADER_SIGNATURE),
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            let ok = {
                let s = secret.lock().unwrap_or_else(|p| p.into_inner());
                match (s.as_ref(), sign::parse_timestamp(&ts)) {
                    (Some(secret), Ok(t)) => {
                        sign::verify(&sig, &id, t, &body, now, std::slice::from_ref(secret), &[])
                            .is_ok()
                    }
                    _ => false,
                }
            };
            let mut g = got.lock().unwrap_or_else(|p| p.into_inner());
            if ok {
                g.valid.push(WebhookSummary {
                    headers: json!({
                        "webhook-id": id,
                        "webhook-timestamp": ts,
                        "webhook-signature": sig,
                    }),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                StatusCode::NO_CONTENT
            } else {
                g.invalid += 1;
                StatusCode::UNAUTHORIZED
            }
        }
    };
    let app = axum::Router::new().route("/hooks", axum::routing::post(handler));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

/// Runs the merchant part (see the module docs) with the operator's `api`.
pub async fn accept(
    operator: &Api,
    base: &str,
    chains: &Chains,
    collection_key: &KeyInfo,
    run_id: &str,
) -> Result<Accepted, String> {
    // The merchant (kept across runs), a fresh key, its collection key.
    match operator
        .post::<_, Value>(
            "/v1/merchants",
            &json!({ "merchant_id": MERCHANT, "name": "Devnet Shop", "rate_burst": 0 }),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.contains("conflict") => {}
        Err(e) => return Err(e),
    }
    let key: Value = operator
        .post(
            &format!("/v1/merchants/{MERCHANT}/keys"),
            &json!({
                "label": format!("devnet {run_id}"),
                "scopes": ["orders:read", "orders:write", "webhooks:manage"]
            }),
        )
        .await?;
    let api_key = key["api_key"]
        .as_str()
        .ok_or("the merchant key answer has no api_key")?
        .to_string();
    let _: Value = operator
        .post(
            &format!("/v1/merchants/{MERCHANT}/settings"),
            &json!({ "collection_key": collection_key.key_id }),
        )
        .await?;
    let merchant = Api::new(
        base,
        zeroize::Zeroizing::new(api_key),
        Duration::from_secs(60),
    )?;

    // The receiver and the endpoint (earlier runs' endpoints point at
    // receivers that are gone: disabled).
    let secret = Arc::new(Mutex::new(None));
    let got = Arc::new(Mutex::new(Received::default()));
    let (addr, _server) = receiver(secret.clone(), got.clone()).await?;
    let old: Value = merchant.get("/v1/webhooks").await?;
    for e in old["endpoints"].as_array().into_iter().flatten() {
        if e["disabled_at"].is_null() {
            if let Some(id) = e["endpoint_id"].as_str() {
                let _: Value = merchant
                    .post(&format!("/v1/webhooks/{id}/disable"), &json!({}))
                    .await?;
            }
        }
    }
    let endpoint: Value = merchant
        .post(
            "/v1/webhooks",
            &json!({ "url": format!("http://{addr}/hooks"), "filters": ["order.*"] }),
        )
        .await?;
    let whsec = endpoint["secret"]
        .as_str()
        .ok_or("the endpoint answer has no secret")?
        .to_string();
    *secret.lock().unwrap_or_else(|p| p.into_inner()) =
        Some(Secret::parse(&whsec).map_err(|e| format!("endpoint secret: {e}"))?);
    println!("[4/5] merchant {MERCHANT}: API key issued, webhook endpoint {addr}/hooks");

    // A native and a token order per chain, paid by the dev account.
    let mut placed = Vec::new();
    for (chain_id, chain) in &chains.chains {
        for (asset, amount) in [("ETH", "0.015"), ("KFT", "12.5")] {
            let order_id = format!("devnet-{run_id}-{chain_id}-{asset}");
            let order: OrderInfo = merchant
                .post(
                    "/v1/orders",
                    &json!({
                        "order_id": order_id, "chain": chain_id, "asset": asset,
                        "amount": amount, "expires_in": 900,
                        "metadata": { "cart": run_id }
                    }),
                )
                .await?;
            let to: Address = order
                .address
                .parse()
                .map_err(|e| format!("order address: {e}"))?;
            let due = U256::from_str_radix(&order.amount_base_units, 10)
                .map_err(|e| format!("order amount: {e}"))?;
            let rpc = chain.rpc();
            let hash = if order.token_contract.is_some() {
                rpc.send_from_dev(
                    chain.dev,
                    Some(chain.token),
                    U256::ZERO,
                    evm::erc20_transfer_calldata(to, due),
                )
                .await
            } else {
                rpc.send_from_dev(chain.dev, Some(to), due, Vec::new())
                    .await
            }
            .map_err(|e| format!("paying order {order_id}: {e}"))?;
            println!(
                "      order {order_id}: {amount} {asset} to {} ({}), paid in {hash}",
                order.address, order.payment_uri
            );
            placed.push(order_id);
        }
    }

    // Until every order settled and its settlement webhook arrived.
    let started = Instant::now();
    let mut orders = Vec::new();
    for order_id in &placed {
        let order = loop {
            let o: OrderInfo = merchant.get(&format!("/v1/orders/{order_id}")).await?;
            if o.status == "settled" {
                break o;
            }
            if started.elapsed() > Duration::from_secs(90) {
                return Err(format!("order {order_id} is still {} after 90 s", o.status));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        orders.push(OrderSummary {
            order_id: order.order_id.clone(),
            chain_id: order.chain_id.unwrap_or(0),
            asset: order.asset.clone(),
            address: order.address.clone(),
            amount_base_units: order.amount_base_units.clone(),
            status: order.status.clone(),
            deposits: order
                .deposits
                .iter()
                .map(|d| DepositSummary {
                    tx_hash: d.tx_hash.clone(),
                    amount_base_units: d.amount_base_units.clone(),
                    confirmations: d.confirmations,
                })
                .collect(),
        });
    }
    loop {
        let settled = {
            let g = got.lock().unwrap_or_else(|p| p.into_inner());
            placed
                .iter()
                .filter(|id| {
                    g.valid.iter().any(|w| {
                        w.body.contains("\"order.settled\"")
                            && w.body.contains(&format!("\"order_id\":\"{id}\""))
                    })
                })
                .count()
        };
        if settled == placed.len() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the receiver got {settled} of {} order.settled webhooks within 120 s",
                placed.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let g = got.lock().unwrap_or_else(|p| p.into_inner());
    if g.invalid > 0 {
        return Err(format!(
            "the receiver refused {} delivery(ies) whose signature did not verify",
            g.invalid
        ));
    }
    println!(
        "[4/5] {} orders settled; the receiver verified {} webhook deliveries",
        orders.len(),
        g.valid.len()
    );
    if let Some(w) = g
        .valid
        .iter()
        .find(|w| w.body.contains("\"order.settled\""))
    {
        println!("      webhook {}: {}", w.headers, w.body);
    }
    Ok(Accepted {
        merchant: MerchantSummary {
            id: MERCHANT.into(),
            webhook_secret: whsec,
        },
        orders,
        webhooks: g.valid.clone(),
    })
}
