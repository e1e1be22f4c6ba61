//! The settlement module against a real anvil chain (one per test) and a
//! real coordinator (in-process signers): the ledger books paid orders, the
//! treasury sweeps them into hot, keeps hot between its marks (excess to
//! cold, replenishment from cold through the officers' approvals), tops
//! deposit addresses up with gas before token sweeps, and the ledger equals
//! the balances read from the chain with plain JSON-RPC at the end of every
//! test. The journal is replayed with `keyfold_ledger::Ledger` and its
//! invariants checked.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_primitives::{Address, U256};
use common::Env;
use keyfold_coordinator::chain_rpc::devchain::DevChain;
use keyfold_coordinator::chain_rpc::find_anvil;
use keyfold_coordinator::modules::Modules;
use keyfold_coordinator::testing::FakeSigners;
use keyfold_ledger::{Entry, Ledger};
use keyfold_proto::Curve;
use serde_json::{json, Value};

const CHAIN: &str = "devnet-l1";
const ETH: u128 = 1_000_000_000_000_000_000;
const MILLI: u128 = ETH / 1000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Tier limits of a test (base units of the tier's asset).
#[derive(Clone, Copy)]
struct Marks {
    low: u128,
    target: u128,
    high: u128,
    daily: u128,
}

const MARKS: Marks = Marks {
    low: 2 * ETH,
    target: 3 * ETH,
    high: 5 * ETH,
    daily: 20 * ETH,
};

struct World {
    env: Env,
    /// What the first round (at start) created.
    first: std::sync::Mutex<Vec<String>>,
    chain: DevChain,
    hot: String,
    hot_addr: String,
    cold_addr: String,
}

fn address_of(key: &keyfold_proto::api::KeyInfo) -> String {
    let pk = hex::decode(&key.public_key).unwrap();
    keyfold_chain::evm::address_of_public_key(&pk)
        .unwrap()
        .to_checksum(None)
}

fn policy(hot: &str, cold: &str, daily: u128) -> String {
    let pk = |s: u8| hex::encode(common::key(s).verifying_key().to_bytes());
    format!(
        r#"version = 2
name = "treasury-test"

[admins]
keys = ["{a1}", "{a2}"]
quorum = 2

[[groups]]
name = "treasury"
quorum = 2
members = [
  {{ name = "alice", key = "{alice}", client = "ops-alice" }},
  {{ name = "bob", key = "{bob}" }},
  {{ name = "carol", key = "{carol}" }},
]

[[velocity]]
name = "hot-daily-outflow"
per = "wallet"
window_secs = 86400
asset = "ETH"
wallets = ["{hot}"]
max_amount = "{daily}"

[[rules]]
name = "cold-needs-two-officers"
wallets = ["{cold}"]
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "payouts-and-sweeps"
tier = "hot"
chains = ["{CHAIN}"]
action = {{ kind = "allow" }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        a1 = pk(1),
        a2 = pk(2),
        alice = pk(3),
        bob = pk(4),
        carol = pk(5),
    )
}

fn tiers(hot: &str, cold: &str, gas: &str, marks: Marks, token: bool) -> String {
    let mut t = format!(
        "\n[orders]\npoll_ms = 100\n\n[treasury]\npoll_ms = 200\nalerts_to = \"ops\"\n\n[[treasury.tiers]]\n\
         chain = \"{CHAIN}\"\nasset = \"ETH\"\nhot_wallet = \"{}\"\ncold_wallet = \"{}\"\n\
         gas_tank = \"{}\"\ndaily_limit = \"{}\"\nhigh_water = \"{}\"\nlow_water = \"{}\"\n\
         target = \"{}\"\nmax_sweeps_in_flight = 2\nreplenish_retry_secs = 600\n",
        hot, cold, gas, marks.daily, marks.high, marks.low, marks.target
    );
    if token {
        let sym = keyfold_coordinator::chain_rpc::devchain::TEST_TOKEN_SYMBOL;
        t.push_str(&format!(
            "\n[[treasury.tiers]]\nchain = \"{CHAIN}\"\nasset = \"{sym}\"\nhot_wallet = \"{}\"\n\
             cold_wallet = \"{}\"\ngas_tank = \"{}\"\ndaily_limit = \"1000000000000\"\n\
             high_water = \"1000000000000\"\nlow_water = \"0\"\ntarget = \"0\"\n",
            hot, cold, gas
        ));
    }
    t
}

/// A coordinator with hot, cold and gas-tank keys, a merchant `acme` with
/// a collection key, the treasury policy in force, and the wallets funded
/// with `hot`, `cold` and `gas` wei (opening balances); then restarted with
/// the treasury configured.
async fn world(hot: u128, cold: u128, gas: u128, marks: Marks, token: bool) -> World {
    world_with(hot, cold, gas, marks, token, "").await
}

/// An HSM cold key recorded on a coordinator that has no HSM: the key id
/// and its public key.
fn hsm_cold_key(env: &Env) -> keyfold_proto::api::KeyInfo {
    let sk = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let public_key = sk
        .verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec();
    let key_id = "c01dc01dc01dc01dc01dc01dc01dc01d".to_string();
    env.coordinator
        .store()
        .insert_key(keyfold_store::KeyRecord {
            key_id: key_id.clone(),
            curve: keyfold_store::Curve::Secp256k1,
            t: 1,
            n: 1,
            public_key: public_key.clone(),
            chain_code: None,
            group_id: keyfold_coordinator::keys::COLD_GROUP.into(),
            participants: vec![keyfold_coordinator::keys::COLD_PARTICIPANT.into()],
            created_at: 0,
        })
        .unwrap();
    serde_json::from_value(json!({
        "key_id": key_id, "curve": "secp256k1", "public_key": hex::encode(&public_key),
        "t": 1, "n": 1, "tier": "cold", "participants": ["hsm"], "created_at": 0
    }))
    .unwrap()
}

/// [`world`] with more treasury configuration (settlements).
async fn world_with(
    hot: u128,
    cold: u128,
    gas: u128,
    marks: Marks,
    token: bool,
    more: &str,
) -> World {
    world_setup(hot, cold, gas, marks, token, more, false).await
}

/// [`world_with`]; `hsm_cold`: the cold wallet is an HSM key on a
/// coordinator with no HSM.
async fn world_setup(
    hot: u128,
    cold: u128,
    gas: u128,
    marks: Marks,
    token: bool,
    more: &str,
    hsm_cold: bool,
) -> World {
    let anvil = find_anvil(Some(&root())).expect("anvil: run testnets/ensure-deps.sh");
    let chain = DevChain::start(&anvil, &root(), 31337, None, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("chains.toml");
    std::fs::write(&registry, chain.registry_toml(CHAIN, "Test L1", 2)).unwrap();
    let top = format!("chains_file = {:?}\n", registry.to_str().unwrap());
    let mut env =
        common::start_in_with(dir, FakeSigners::new(), Modules::default(), &top, "").await;
    let (h, c, g) = (
        env.key(Curve::Secp256k1).await,
        if hsm_cold {
            hsm_cold_key(&env)
        } else {
            env.key(Curve::Secp256k1).await
        },
        env.key(Curve::Secp256k1).await,
    );
    merchant(&mut env, "acme").await;
    let doc = policy(&h.key_id, &c.key_id, marks.daily);
    let sigs: Vec<_> = [1u8, 2]
        .iter()
        .map(|s| keyfold_policy::AdminSignature::sign(&common::key(*s), &doc))
        .collect();
    let (s, v) = env
        .post(
            "payments",
            "/v1/policy",
            json!({ "document_toml": doc, "signatures": sigs }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (hot_addr, cold_addr, gas_addr) = (address_of(&h), address_of(&c), address_of(&g));
    let tokens = if token {
        U256::from(1_000_000_000u64)
    } else {
        U256::ZERO
    };
    for (addr, wei, t) in [
        (&hot_addr, hot, tokens),
        (&cold_addr, cold, U256::ZERO),
        (&gas_addr, gas, U256::ZERO),
    ] {
        let a: Address = addr.parse().unwrap();
        chain.fund(a, U256::from(wei), t).await.unwrap();
    }
    let extra = tiers(&h.key_id, &c.key_id, &g.key_id, marks, token) + more;
    let env = env.stop().await.start_with(&top, &extra).await;
    let w = World {
        env,
        first: Default::default(),
        chain,
        hot: h.key_id,
        hot_addr,
        cold_addr,
    };
    // The watcher's first tick sets its cursor at the head; the treasury's
    // first round registers its wallets with their opening balances (as
    // the service's does at start, before anything is paid).
    watch(&w).await;
    let first = w.env.coordinator.treasury_tick().await.unwrap();
    *w.first.lock().unwrap() = first.created;
    w
}

async fn merchant(env: &mut Env, id: &str) {
    common::merchant_with_collection_key(
        env,
        id,
        &[
            "orders:read",
            "orders:write",
            "wallets:write",
            "payouts:read",
        ],
    )
    .await;
}

/// One tick of the order watcher.
async fn watch(w: &World) {
    let registry = keyfold_chain::registry::ChainRegistry::from_toml(
        &w.chain.registry_toml(CHAIN, "Test L1", 2),
    )
    .unwrap();
    let entry = registry.get(CHAIN).unwrap().clone();
    keyfold_coordinator::orders::watcher::tick(&w.env.coordinator, &entry, &w.chain.rpc())
        .await
        .unwrap();
}

/// Moves the world on: a block, 3 s of the coordinator's clock (payout
/// steps retry by it), the watcher, and a treasury round; its report.
/// The webhook events of type `t` queued for the operators' account `ops`
/// (`[treasury] alerts_to`), payloads as JSON.
fn ops_events(w: &World, t: &str) -> Vec<Value> {
    w.env
        .coordinator
        .store()
        .list_events("ops", 0, 100)
        .unwrap()
        .into_iter()
        .filter(|(_, e, _)| e.event_type == t)
        .map(|(_, e, _)| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

async fn step(w: &World) -> keyfold_coordinator::treasury::TickReport {
    w.chain.anvil.rpc().mine(1).await.unwrap();
    w.env.clock.advance_ms(3000);
    tokio::time::sleep(Duration::from_millis(250)).await;
    watch(w).await;
    w.env.coordinator.treasury_tick().await.unwrap()
}

/// Steps until `f` holds (at most 60 steps).
async fn until(
    w: &World,
    what: &str,
    mut f: impl FnMut(&keyfold_coordinator::treasury::TickReport) -> bool,
) {
    let mut last = Vec::new();
    for _ in 0..60 {
        let r = step(w).await;
        if f(&r) {
            return;
        }
        last = r.alerts;
    }
    panic!("{what} never happened; the last round's alerts: {last:?}");
}

/// Steps until the transfers created so far (from the first round on)
/// satisfy `f`; returns them.
async fn created_until(w: &World, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut created = std::mem::take(&mut *w.first.lock().unwrap());
    if f(&created) {
        return created;
    }
    until(w, what, |r| {
        created.extend(r.created.iter().cloned());
        f(&created)
    })
    .await;
    created
}

async fn order(w: &World, id: &str, asset: &str, amount: &str) -> Value {
    let (s, v) = w
        .env
        .post(
            "acme",
            "/v1/orders",
            json!({ "order_id": id, "chain": CHAIN, "asset": asset, "amount": amount,
                    "expires_in": 3600 }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn pay(w: &World, order: &Value, wei: u128, tokens: u128) {
    let to: Address = order["address"].as_str().unwrap().parse().unwrap();
    w.chain
        .fund(to, U256::from(wei), U256::from(tokens))
        .await
        .unwrap();
}

/// `eth_getBalance` at the latest block, with plain JSON-RPC (not
/// Keyfold's client).
async fn eth_balance(w: &World, address: &str) -> u128 {
    let v: Value = reqwest::Client::new()
        .post(w.chain.anvil.url())
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                      "params": [address, "latest"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    u128::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The test token's `balanceOf`, with plain JSON-RPC.
async fn token_balance(w: &World, address: &str) -> u128 {
    let data = format!(
        "0x70a08231{:0>64}",
        address.trim_start_matches("0x").to_lowercase()
    );
    let v: Value = reqwest::Client::new()
        .post(w.chain.anvil.url())
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
                      "params": [{"to": w.chain.token.to_checksum(None), "data": data}, "latest"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    u128::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Every ledger balance (operator view).
async fn balances(w: &World) -> Vec<Value> {
    let (s, v) = w.env.get("payments", "/v1/balances").await;
    assert_eq!(s, 200, "{v}");
    v["balances"].as_array().unwrap().clone()
}

fn balance_of(list: &[Value], account: &str, asset: &str) -> i128 {
    list.iter()
        .find(|b| b["account"] == account && b["asset"] == asset)
        .map(|b| b["balance"].as_str().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// The whole journal through the API, page by page.
async fn journal(w: &World) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/ledger?limit=7&cursor={c}"),
            None => "/v1/ledger?limit=7".to_string(),
        };
        let (s, v) = w.env.get("payments", &path).await;
        assert_eq!(s, 200, "{v}");
        for e in v["entries"].as_array().unwrap() {
            out.push(serde_json::from_value(e.clone()).unwrap());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// The ledger equals the chain for every wallet and deposit address it
/// holds, the journal replays to the same balances, and its invariants
/// hold.
async fn ledger_equals_chain(w: &World) {
    // Up to transactions in flight: let the open transfers finish first
    // (a refused replenishment's payout is final, so it does not count).
    let store = w.env.coordinator.store().clone();
    for _ in 0..40 {
        let open = store.treasury_transfers(Some(CHAIN), true, 100).unwrap();
        let waiting = open
            .iter()
            .all(|t| t.kind == "replenishment" && t.chain_state == "unsigned");
        if open.is_empty() || waiting {
            break;
        }
        step(w).await;
    }
    let list = balances(w).await;
    let entries = journal(w).await;
    let replayed = Ledger::replay(entries.iter()).expect("the journal replays");
    replayed.check_invariants().expect("ledger invariants");
    let sym = keyfold_coordinator::chain_rpc::devchain::TEST_TOKEN_SYMBOL;
    let mut checked = 0;
    for b in &list {
        let account = b["account"].as_str().unwrap();
        let asset = b["asset"].as_str().unwrap();
        let booked: i128 = b["balance"].as_str().unwrap().parse().unwrap();
        let acc: keyfold_ledger::Account = account.parse().unwrap();
        let key = keyfold_ledger::AssetKey::new(CHAIN, asset);
        assert_eq!(
            replayed.balance(&acc, &key),
            booked,
            "{account} {asset}: replay"
        );
        let Some(address) = account
            .strip_prefix("wallet:")
            .and_then(|r| r.split(':').nth(1))
        else {
            continue;
        };
        let on_chain = if asset == "ETH" {
            eth_balance(w, address).await
        } else {
            assert_eq!(asset, sym);
            token_balance(w, address).await
        };
        assert_eq!(
            u128::try_from(booked).unwrap(),
            on_chain,
            "{account} {asset}: ledger {booked}, chain {on_chain}; its entries: {}",
            serde_json::to_string_pretty(
                &entries
                    .iter()
                    .filter(|e| e
                        .postings
                        .iter()
                        .any(|p| p.from.to_string() == account || p.to.to_string() == account))
                    .collect::<Vec<_>>()
            )
            .unwrap()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the hot, cold and gas-tank wallets are in the ledger: {list:?}"
    );
}

/// An officer's approval of request `id` under the treasury policy
/// (version 2).
async fn approval(
    w: &World,
    seed: u8,
    id: &str,
    decision: keyfold_policy::ApprovalDecision,
) -> Value {
    let st = w.env.status(id).await;
    let request: keyfold_policy::Request = serde_json::from_value(st["request"].clone()).unwrap();
    let a = keyfold_policy::Approval::sign(
        &common::key(seed),
        request.canonical_hash(),
        2,
        decision,
        w.env.clock_secs() + 3600,
        common::nonce(seed, id),
    );
    serde_json::to_value(a).unwrap()
}

/// Payout `id` (its transfer's payout is submitted on its own task: waits
/// up to 10 s for it to exist).
async fn payout_state(w: &World, id: &str) -> Value {
    for _ in 0..100 {
        let (s, v) = w.env.get("payments", &format!("/v1/payouts/{id}")).await;
        if s == 200 {
            return v;
        }
        assert_eq!(s, 404, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("payout {id} was never submitted");
}

#[tokio::test]
async fn paid_orders_are_booked_swept_into_hot_and_the_ledger_equals_the_chain() {
    let w = world(3 * ETH, 10 * ETH, ETH, MARKS, false).await;
    let o1 = order(&w, "o-1", "ETH", "0.25").await;
    let o2 = order(&w, "o-2", "ETH", "0.5").await;
    pay(&w, &o1, 250 * MILLI, 0).await;
    pay(&w, &o2, 600 * MILLI, 0).await; // paid over
    let mut swept = Vec::new();
    until(&w, "both deposit addresses swept", |r| {
        swept.extend(
            r.created
                .iter()
                .filter(|id| id.starts_with("sweep-"))
                .cloned(),
        );
        swept.len() >= 2
    })
    .await;
    for id in &swept {
        let mut done = false;
        for _ in 0..40 {
            if payout_state(&w, id).await["state"] == "completed" {
                done = true;
                break;
            }
            step(&w).await;
        }
        assert!(done, "sweep {id} completed: {}", payout_state(&w, id).await);
    }
    let list = balances(&w).await;
    // The merchant was credited with everything confirmed on time.
    assert_eq!(
        balance_of(&list, "merchant:acme:available", "ETH"),
        (850 * MILLI) as i128
    );
    assert_eq!(balance_of(&list, "merchant:acme:pending", "ETH"), 0);
    // The deposit addresses keep only what the fee reserve left over.
    for o in [&o1, &o2] {
        let a = format!("wallet:deposit:{}", o["address"].as_str().unwrap());
        let left = balance_of(&list, &a, "ETH");
        assert!(
            left > 0 && left < MILLI as i128,
            "{a} keeps dust only: {left}"
        );
    }
    // Hot got both sweeps; fees went to the network.
    let hot = balance_of(&list, &format!("wallet:hot:{}", w.hot_addr), "ETH");
    assert!(
        hot > (3 * ETH + 849 * MILLI) as i128 && hot < (3 * ETH + 850 * MILLI) as i128,
        "hot {hot}"
    );
    assert!(balance_of(&list, "network_fees", "ETH") > 0);
    // A merchant sees its own accounts only.
    let (s, v) = w.env.get("acme", "/v1/balances").await;
    assert_eq!(s, 200, "{v}");
    assert!(v["balances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["account"].as_str().unwrap().starts_with("merchant:acme:")));
    let (s, _) = w
        .env
        .get(
            "acme",
            &format!("/v1/balances?account=wallet:hot:{}", w.hot_addr),
        )
        .await;
    assert_eq!(s, 404);
    // No second sweep of the swept addresses: they hold dust below the fee.
    for _ in 0..3 {
        let r = step(&w).await;
        assert!(
            r.created.iter().all(|id| !id.starts_with("sweep-")),
            "{:?}",
            r.created
        );
    }
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn hot_above_its_high_water_mark_is_swept_to_cold_down_to_its_target() {
    let w = world(7 * ETH, ETH, ETH, MARKS, false).await;
    let created = created_until(&w, "a hot-to-cold transfer", |created| !created.is_empty()).await;
    assert_eq!(created.len(), 1, "{created:?}");
    let id = &created[0];
    assert!(id.starts_with("hot_to_cold-"), "{id}");
    let p = payout_state(&w, id).await;
    assert_eq!(p["to"], w.cold_addr.as_str());
    assert_eq!(p["amount_base_units"], (4 * ETH).to_string(), "{p}");
    until(&w, "the transfer completes", |_| false_if_pending(&w, id)).await;
    // Within the marks now: nothing more is created.
    for _ in 0..3 {
        assert!(step(&w).await.created.is_empty());
    }
    let list = balances(&w).await;
    assert_eq!(
        balance_of(&list, &format!("wallet:cold:{}", w.cold_addr), "ETH"),
        (5 * ETH) as i128
    );
    ledger_equals_chain(&w).await;
}

/// Blocking check used inside `until`: whether payout `id` completed.
fn false_if_pending(w: &World, id: &str) -> bool {
    let store = w.env.coordinator.store().clone();
    store
        .get_payout(id)
        .unwrap()
        .is_some_and(|p| p.chain_state == "completed")
}

#[tokio::test]
async fn below_its_low_water_mark_hot_asks_cold_and_waits_for_two_officers() {
    let w = world(ETH, 10 * ETH, ETH, MARKS, false).await;
    let created = created_until(&w, "a replenishment request", |created| !created.is_empty()).await;
    assert_eq!(created.len(), 1, "{created:?}");
    let id = created[0].clone();
    assert!(id.starts_with("replenishment-"), "{id}");
    let request = format!("payout:{id}");
    payout_state(&w, &id).await;
    let st = w.env.wait_state(&request, "pending_approval").await;
    assert!(st.to_string().contains("cold-needs-two-officers"), "{st}");
    // While it waits, nothing else is asked for, and nothing moves.
    for _ in 0..3 {
        assert!(step(&w).await.created.is_empty());
    }
    assert_eq!(eth_balance(&w, &w.hot_addr).await, ETH);
    for (seed, client) in [(3u8, "ops-alice"), (4, "payments")] {
        let a = approval(
            &w,
            seed,
            &request,
            keyfold_policy::ApprovalDecision::Approve,
        )
        .await;
        let (s, v) = w
            .env
            .post(client, &format!("/v1/requests/{request}/approvals"), a)
            .await;
        assert_eq!(s, 200, "{v}");
    }
    until(&w, "the replenishment completes", |_| {
        false_if_pending(&w, &id)
    })
    .await;
    let p = payout_state(&w, &id).await;
    assert_eq!(p["amount_base_units"], (2 * ETH).to_string(), "{p}");
    assert_eq!(eth_balance(&w, &w.hot_addr).await, 3 * ETH);
    for _ in 0..3 {
        assert!(step(&w).await.created.is_empty());
    }
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn a_replenishment_officers_reject_moves_nothing_and_the_alert_stays() {
    let w = world(ETH, 10 * ETH, ETH, MARKS, false).await;
    let created = created_until(&w, "a replenishment request", |created| !created.is_empty()).await;
    let id = created[0].clone();
    let request = format!("payout:{id}");
    payout_state(&w, &id).await;
    w.env.wait_state(&request, "pending_approval").await;
    let a = approval(&w, 3, &request, keyfold_policy::ApprovalDecision::Reject).await;
    let (s, v) = w
        .env
        .post("ops-alice", &format!("/v1/requests/{request}/approvals"), a)
        .await;
    assert_eq!(s, 200, "{v}");
    w.env.wait_state(&request, "rejected").await;
    let mut alerts = Vec::new();
    for _ in 0..4 {
        let r = step(&w).await;
        assert!(
            r.created.is_empty(),
            "no new replenishment before the retry delay: {:?}",
            r.created
        );
        alerts = r.alerts;
    }
    assert!(
        alerts
            .iter()
            .any(|a| a.contains(&id) && a.contains("refused")),
        "{alerts:?}"
    );
    let (s, v) = w.env.get("payments", "/v1/treasury").await;
    assert_eq!(s, 200, "{v}");
    let tier = &v["tiers"][0];
    assert!(tier["alerts"][0].as_str().unwrap().contains(&id), "{v}");
    assert_eq!(tier["hot"]["ledger_balance"], ETH.to_string());
    assert_eq!(tier["hot"]["chain_balance"], ETH.to_string());
    assert_eq!(eth_balance(&w, &w.cold_addr).await, 10 * ETH);
    // After the delay, a new one is asked for (a new payout id).
    w.env.clock.advance_ms(600_000);
    let r = step(&w).await;
    assert!(
        r.created
            .iter()
            .any(|c| c.starts_with("replenishment-") && *c != id),
        "{:?}",
        r.created
    );
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn the_daily_outflow_limit_is_enforced_by_the_policy_on_the_hot_wallet() {
    let marks = Marks {
        daily: 2 * ETH,
        high: 100 * ETH,
        ..MARKS
    };
    let w = world(5 * ETH, 10 * ETH, ETH, marks, false).await;
    let pay = |id: &str, amount: &str| {
        json!({ "payout_id": id, "wallet": w.hot, "chain": CHAIN, "asset": "ETH",
                "to": "0x00000000000000000000000000000000000000aa", "amount": amount })
    };
    let (s, v) = w
        .env
        .post("payments", "/v1/payouts", pay("d-1", "1.5"))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = w
        .env
        .post("payments", "/v1/payouts", pay("d-2", "0.6"))
        .await;
    assert!(s == 201 || s == 403, "{s} {v}");
    let st = w.env.status("payout:d-2").await;
    assert_eq!(st["state"], "rejected", "{st}");
    assert!(st.to_string().contains("hot-daily-outflow"), "{st}");
    until(&w, "the first payout completes", |_| {
        false_if_pending(&w, "d-1")
    })
    .await;
    let list = balances(&w).await;
    assert!(balance_of(&list, "world", "ETH") < 0);
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn token_sweeps_wait_for_the_gas_tank_and_a_dry_tank_raises_an_alert() {
    let sym = keyfold_coordinator::chain_rpc::devchain::TEST_TOKEN_SYMBOL;
    // The gas tank holds nothing: token sweeps wait.
    let w = world(3 * ETH, 10 * ETH, 0, MARKS, true).await;
    let o = order(&w, "t-1", sym, "12.5").await;
    pay(&w, &o, 0, 12_500_000).await;
    let mut alerts = Vec::new();
    until(&w, "a gas-tank alert", |r| {
        alerts = r.alerts.clone();
        assert!(
            r.created.iter().all(|c| !c.starts_with("sweep-")),
            "{:?}",
            r.created
        );
        alerts.iter().any(|a| a.contains("gas tank"))
    })
    .await;
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn a_token_deposit_is_topped_up_with_gas_then_swept() {
    let sym = keyfold_coordinator::chain_rpc::devchain::TEST_TOKEN_SYMBOL;
    let w = world(3 * ETH, 10 * ETH, ETH, MARKS, true).await;
    let o = order(&w, "t-2", sym, "12.5").await;
    pay(&w, &o, 0, 12_500_000).await;
    let created = created_until(&w, "a token sweep", |created| {
        created.iter().any(|c| c.starts_with("sweep-"))
    })
    .await;
    assert!(
        created[0].starts_with("gas_top_up-"),
        "the top-up comes first: {created:?}"
    );
    assert_eq!(
        created
            .iter()
            .filter(|c| c.starts_with("gas_top_up-"))
            .count(),
        1,
        "one top-up: {created:?}"
    );
    let sweep = created
        .iter()
        .find(|c| c.starts_with("sweep-"))
        .unwrap()
        .clone();
    until(&w, "the token sweep completes", |_| {
        false_if_pending(&w, &sweep)
    })
    .await;
    ledger_equals_chain(&w).await;
    let list = balances(&w).await;
    let addr = o["address"].as_str().unwrap();
    assert_eq!(balance_of(&list, &format!("wallet:deposit:{addr}"), sym), 0);
    assert_eq!(
        balance_of(&list, &format!("wallet:hot:{}", w.hot_addr), sym),
        1_000_000_000 + 12_500_000
    );
    assert_eq!(
        balance_of(&list, "merchant:acme:available", sym),
        12_500_000
    );
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn a_sweep_recorded_before_a_crash_is_submitted_once_after_the_restart() {
    let w = world(3 * ETH, 10 * ETH, ETH, MARKS, false).await;
    let o = order(&w, "c-1", "ETH", "0.3").await;
    pay(&w, &o, 300 * MILLI, 0).await;
    // Settle the order (confirmations) without a treasury round.
    for _ in 0..3 {
        w.chain.anvil.rpc().mine(1).await.unwrap();
        watch(&w).await;
    }
    // A crash between recording the transfer and submitting its payout.
    let address = o["address"].as_str().unwrap().to_string();
    let id = format!("sweep-{CHAIN}-{}-1", address.to_ascii_lowercase());
    w.env
        .coordinator
        .store()
        .record_treasury_transfer(&keyfold_store::TreasuryTransfer {
            payout_id: id.clone(),
            kind: "sweep".into(),
            chain: CHAIN.into(),
            asset: "ETH".into(),
            source: address.clone(),
            destination: w.hot_addr.clone(),
            amount: (290 * MILLI).to_string(),
            created_at: w.env.clock_secs() as i64,
            chain_state: String::new(),
            request_id: String::new(),
            tx_hash: None,
            updated_at: 0,
        })
        .unwrap();
    // No second sweep of the address while the recorded one is open (one
    // of the remainder may follow once it completed).
    until(&w, "the recorded sweep completes", |r| {
        let done = false_if_pending(&w, &id);
        assert!(
            done || r.created.iter().all(|c| !c.starts_with("sweep-")),
            "no second sweep of the address while the first is open: {:?}",
            r.created,
        );
        done
    })
    .await;
    let p = payout_state(&w, &id).await;
    assert_eq!(p["amount_base_units"], (290 * MILLI).to_string());
    let swept: Vec<_> = w
        .env
        .coordinator
        .store()
        .treasury_transfers(Some(CHAIN), false, 100)
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == "sweep" && t.payout_id == id)
        .collect();
    assert_eq!(swept.len(), 1, "{swept:?}");
    // Its request was submitted once, with the recorded amount.
    let (s, v) = w
        .env
        .get("payments", &format!("/v1/requests/payout:{id}"))
        .await;
    assert_eq!(s, 200, "{v}");
    ledger_equals_chain(&w).await;
}

#[test]
fn a_tier_with_low_water_above_high_water_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "\n[[treasury.tiers]]\nchain = \"devnet-l1\"\nasset = \"ETH\"\nhot_wallet = \"h\"\n\
                 cold_wallet = \"c\"\ndaily_limit = \"10\"\nhigh_water = \"5\"\nlow_water = \"9\"\ntarget = \"7\"\n";
    let cfg = common::config_with(dir.path(), "", extra);
    let parts = keyfold_coordinator::Parts {
        transport: Some(std::sync::Arc::new(FakeSigners::new())),
        clock: std::sync::Arc::new(keyfold_coordinator::clock::ManualClock::at_ms(0)),
        modules: Modules::default(),
    };
    let err = match keyfold_coordinator::Coordinator::start_with(cfg, parts) {
        Ok(_) => panic!("a contradictory tier must not start"),
        Err(e) => e,
    };
    assert!(
        err.contains("devnet-l1/ETH") && err.contains("low_water (9) is above high_water (5)"),
        "{err}"
    );
}

const MERCHANT_ADDRESS: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

fn settlement(min: u128) -> String {
    format!(
        "\n[[treasury.settlements]]\nmerchant = \"acme\"\nchain = \"{CHAIN}\"\nasset = \"ETH\"\n\
         every_secs = 86400\nmin_amount = \"{min}\"\nfee_bps = 100\nfee_fixed = \"1000\"\n\
         payout_address = \"{MERCHANT_ADDRESS}\"\n"
    )
}

async fn settle_orders(w: &World) {
    for (id, amount, wei) in [("s-1", "0.25", 250 * MILLI), ("s-2", "0.5", 500 * MILLI)] {
        let o = order(w, id, "ETH", amount).await;
        pay(w, &o, wei, 0).await;
    }
}

#[tokio::test]
async fn a_merchant_is_settled_on_its_schedule_with_a_report_rebuilt_from_the_ledger() {
    let w = world_with(
        3 * ETH,
        10 * ETH,
        ETH,
        MARKS,
        false,
        &settlement(700 * MILLI),
    )
    .await;
    settle_orders(&w).await;
    let runs = created_until(&w, "a settlement run", |c| {
        c.iter().any(|c| c.starts_with("settle-"))
    })
    .await;
    let run = runs
        .iter()
        .find(|c| c.starts_with("settle-"))
        .unwrap()
        .clone();
    assert_eq!(run, format!("settle-acme-{CHAIN}-eth-1"));
    until(&w, "the settlement is paid", |_| false_if_pending(&w, &run)).await;
    // The run closes on the next round.
    step(&w).await;
    let (s, v) = w.env.get("acme", &format!("/v1/settlements/{run}")).await;
    assert_eq!(s, 200, "{v}");
    // 1 % + 1000 wei of the 0.75 ETH available.
    let fee = 750 * MILLI / 100 + 1000;
    assert_eq!(v["run"]["state"], "paid", "{v}");
    assert_eq!(v["run"]["fee_base_units"], fee.to_string());
    assert_eq!(
        v["run"]["amount_base_units"],
        (750 * MILLI - fee).to_string()
    );
    let mut orders: Vec<&str> = v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    orders.sort();
    assert_eq!(orders, ["s-1", "s-2"]);
    assert_eq!(v["payout"]["state"], "completed");
    // Paid on chain, to the registered address (plain JSON-RPC).
    assert_eq!(eth_balance(&w, MERCHANT_ADDRESS).await, 750 * MILLI - fee);
    // The CSV has the same postings.
    let resp = w
        .env
        .http
        .get(format!("{}/v1/settlements/{run}?format=csv", w.env.url))
        .bearer_auth(&w.env.tokens["acme"])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csv = resp.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "run_id,seq,entry_id,kind,from,to,amount_base_units,order_id"
    );
    assert_eq!(lines.count(), v["lines"].as_array().unwrap().len());
    assert!(csv.contains(&format!("merchant:acme:fees,{fee}")), "{csv}");
    let list = balances(&w).await;
    assert_eq!(balance_of(&list, "merchant:acme:available", "ETH"), 0);
    assert_eq!(balance_of(&list, "merchant:acme:fees", "ETH"), fee as i128);
    assert_eq!(
        balance_of(&list, "merchant:acme:paid_out", "ETH"),
        (750 * MILLI - fee) as i128
    );
    // Not again before its schedule, however much arrives.
    let o = order(&w, "s-3", "ETH", "1").await;
    pay(&w, &o, ETH, 0).await;
    for _ in 0..4 {
        assert!(step(&w)
            .await
            .created
            .iter()
            .all(|c| !c.starts_with("settle-")));
    }
    // Another merchant's key cannot read the run; an operator lists it.
    let (s, v) = w
        .env
        .get("payments", "/v1/settlements?merchant_id=acme")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settlements"][0]["run_id"], run.as_str());
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn a_settlement_the_policy_refuses_gives_the_balance_back_to_the_merchant() {
    // The hot wallet may send 0.5 ETH a day: the 0.75 ETH run is refused.
    let marks = Marks {
        daily: 500 * MILLI,
        ..MARKS
    };
    let w = world_with(
        3 * ETH,
        10 * ETH,
        ETH,
        marks,
        false,
        &settlement(700 * MILLI),
    )
    .await;
    settle_orders(&w).await;
    let runs = created_until(&w, "a settlement run", |c| {
        c.iter().any(|c| c.starts_with("settle-"))
    })
    .await;
    let run = runs
        .iter()
        .find(|c| c.starts_with("settle-"))
        .unwrap()
        .clone();
    let mut state = Value::Null;
    for _ in 0..30 {
        step(&w).await;
        let (_, v) = w
            .env
            .get("payments", &format!("/v1/settlements/{run}"))
            .await;
        state = v["run"]["state"].clone();
        if state == "failed" {
            break;
        }
    }
    assert_eq!(state, "failed");
    assert_eq!(payout_state(&w, &run).await["state"], "rejected");
    let list = balances(&w).await;
    assert_eq!(
        balance_of(&list, "merchant:acme:available", "ETH"),
        (750 * MILLI) as i128
    );
    assert_eq!(balance_of(&list, "merchant:acme:paid_out", "ETH"), 0);
    assert_eq!(balance_of(&list, "merchant:acme:fees", "ETH"), 0);
    assert_eq!(eth_balance(&w, MERCHANT_ADDRESS).await, 0);
    // Not before a minute has passed, then tried again as a new run.
    assert!(step(&w)
        .await
        .created
        .iter()
        .all(|c| !c.starts_with("settle-")));
    w.env.clock.advance_ms(60_000);
    let r = step(&w).await;
    assert!(
        r.created.contains(&format!("settle-acme-{CHAIN}-eth-2")),
        "{:?}",
        r.created
    );
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn money_that_reaches_a_wallet_outside_keyfold_is_an_alert_with_both_balances() {
    let w = world(3 * ETH, 10 * ETH, ETH, MARKS, false).await;
    for _ in 0..2 {
        let r = step(&w).await;
        assert!(
            r.alerts.is_empty(),
            "a quiet treasury has no alert: {:?}",
            r.alerts
        );
    }
    // Someone sends 0.5 ETH to the hot wallet directly.
    let hot: Address = w.hot_addr.parse().unwrap();
    w.chain
        .fund(hot, U256::from(500 * MILLI), U256::ZERO)
        .await
        .unwrap();
    let r = step(&w).await;
    let account = format!("wallet:hot:{}", w.hot_addr);
    assert!(
        r.alerts.iter().any(|a| a.contains(&account)
            && a.contains(&(3500 * MILLI).to_string())
            && a.contains(&(3 * ETH).to_string())),
        "{:?}",
        r.alerts
    );
    // The operators' account gets one webhook event, with both balances,
    // however many rounds the difference lasts.
    step(&w).await;
    let alerts = ops_events(&w, "settlement.alert");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let d = &alerts[0]["data"];
    assert_eq!(d["kind"], "ledger_difference", "{d}");
    assert_eq!(d["tier"], format!("{CHAIN}/ETH"), "{d}");
    assert_eq!(d["difference"]["account"], account.as_str(), "{d}");
    assert_eq!(d["difference"]["chain_balance"], (3500 * MILLI).to_string());
    assert_eq!(d["difference"]["ledger_balance"], (3 * ETH).to_string());
    assert!(ops_events(&w, "settlement.alert_cleared").is_empty());
    // `keyfold reconcile` (its ledger section) shows it to an operator.
    let to = w.env.clock_secs() + 1;
    let (s, v) = w
        .env
        .get(
            "payments",
            &format!("/v1/reconciliation?from=0&to={to}&section=ledger&merchant_id=acme"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let line = &v["items"][0];
    assert_eq!(line["kind"], "treasury_balance", "{v}");
    assert_eq!(line["reference"], account.as_str(), "{v}");
    assert_eq!(line["status"], "amount_mismatch", "{v}");
    assert_eq!(line["on_chain_base_units"], (3500 * MILLI).to_string());
    // A merchant's report holds only its own addresses.
    let (s, v) = w
        .env
        .get(
            "acme",
            &format!("/v1/reconciliation?from=0&to={to}&section=ledger"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(!v.to_string().contains("treasury_balance"), "{v}");
    let (s, v) = w.env.get("payments", "/v1/treasury").await;
    assert_eq!(s, 200, "{v}");
    let d = &v["tiers"][0]["differences"][0];
    assert_eq!(d["account"], account.as_str(), "{v}");
    assert_eq!(d["ledger_balance"], (3 * ETH).to_string());
    assert_eq!(d["chain_balance"], (3500 * MILLI).to_string());
    // Once explained, an operator books it; the difference is gone.
    let funding = json!({ "id": "fund-hot-1", "reference": "treasury top-up by ops",
        "event": { "event": "funding", "asset": { "chain": CHAIN, "asset": "ETH" },
                   "to": account, "amount": (500 * MILLI).to_string() } });
    let (s, v) = w
        .env
        .post("payments", "/v1/ledger/entries", funding.clone())
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], "manual:fund-hot-1");
    // The same id again books nothing more.
    let (s, _) = w.env.post("payments", "/v1/ledger/entries", funding).await;
    assert_eq!(s, 201);
    let r = step(&w).await;
    assert!(r.alerts.is_empty(), "{:?}", r.alerts);
    let cleared = ops_events(&w, "settlement.alert_cleared");
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    assert_eq!(cleared[0]["data"]["kind"], "ledger_difference");
    // Only funding and corrections, balanced, by operators.
    let payout = json!({ "id": "x", "reference": "r", "event": { "event": "funding",
        "asset": { "chain": CHAIN, "asset": "ETH" }, "to": account, "amount": "0" } });
    let (s, v) = w.env.post("payments", "/v1/ledger/entries", payout).await;
    assert_eq!(s, 400, "{v}");
    let overdraw = json!({ "id": "y", "reference": "a mistake", "event": { "event": "correction",
        "postings": [{ "from": account, "to": "adjustment",
                       "asset": { "chain": CHAIN, "asset": "ETH" }, "amount": (9 * ETH).to_string() }] } });
    let (s, v) = w.env.post("payments", "/v1/ledger/entries", overdraw).await;
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains(&account), "{v}");
    let (s, _) = w.env.post("acme", "/v1/ledger/entries", json!({})).await;
    assert!(s == 403 || s == 400, "{s}");
    ledger_equals_chain(&w).await;
}

#[tokio::test]
async fn a_reorg_that_removes_a_swept_deposit_books_the_loss_and_alerts() {
    let w = world(3 * ETH, 10 * ETH, ETH, MARKS, false).await;
    let head = w.chain.rpc().block_number().await.unwrap();
    let o = order(&w, "r-1", "ETH", "0.25").await;
    pay(&w, &o, 250 * MILLI, 0).await;
    let created = created_until(&w, "a sweep", |c| c.iter().any(|c| c.starts_with("sweep-"))).await;
    let sweep = created
        .iter()
        .find(|c| c.starts_with("sweep-"))
        .unwrap()
        .clone();
    until(&w, "the sweep completes", |_| false_if_pending(&w, &sweep)).await;
    assert_eq!(
        balance_of(&balances(&w).await, "merchant:acme:available", "ETH"),
        (250 * MILLI) as i128
    );
    // A reorg deeper than every confirmation takes the deposit (and the
    // sweep that spent it) away.
    let now = w.chain.rpc().block_number().await.unwrap();
    w.chain.anvil.rpc().reorg(now - head).await.unwrap();
    assert_eq!(eth_balance(&w, o["address"].as_str().unwrap()).await, 0);
    let r = step(&w).await;
    let (_, v) = w.env.get("acme", "/v1/orders/r-1").await;
    assert_eq!(v["status"], "invalid", "{v}");
    let list = balances(&w).await;
    // The merchant stays credited; the treasury books the loss.
    assert_eq!(
        balance_of(&list, "merchant:acme:available", "ETH"),
        (250 * MILLI) as i128
    );
    assert_eq!(balance_of(&list, "loss", "ETH"), (250 * MILLI) as i128);
    let addr = o["address"].as_str().unwrap();
    assert_eq!(
        balance_of(&list, &format!("wallet:deposit:{addr}"), "ETH"),
        0
    );
    assert!(
        r.alerts
            .iter()
            .any(|a| a.contains(&(250 * MILLI).to_string()) && a.contains("lost to reorgs")),
        "{:?}",
        r.alerts
    );
    let entries = journal(&w).await;
    assert!(entries
        .iter()
        .any(|e| e.kind == keyfold_ledger::EntryKind::DepositLost));
    Ledger::replay(entries.iter())
        .unwrap()
        .check_invariants()
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_cold_wallet_fails_the_replenishment_with_a_clear_state() {
    let w = world_setup(ETH, 10 * ETH, ETH, MARKS, false, "", true).await;
    let created = created_until(&w, "a replenishment request", |c| !c.is_empty()).await;
    let id = created[0].clone();
    assert!(id.starts_with("replenishment-"), "{id}");
    let request = format!("payout:{id}");
    payout_state(&w, &id).await;
    w.env.wait_state(&request, "pending_approval").await;
    for (seed, client) in [(3u8, "ops-alice"), (4, "payments")] {
        let a = approval(
            &w,
            seed,
            &request,
            keyfold_policy::ApprovalDecision::Approve,
        )
        .await;
        let (s, v) = w
            .env
            .post(client, &format!("/v1/requests/{request}/approvals"), a)
            .await;
        assert!(s == 200 || s == 502 || s == 503, "{s} {v}");
    }
    let st = w.env.wait_state(&request, "failed").await;
    assert!(
        st["error"].as_str().unwrap_or_default().contains("[hsm]"),
        "{st}"
    );
    // The policy judged it as a cold spend, never by the hot rules.
    assert_eq!(st["request"]["tier"], "cold", "{st}");
    let p = payout_state(&w, &id).await;
    assert_eq!(p["state"], "failed", "{p}");
    // Nothing moved; the round says why hot is not topped up.
    let r = step(&w).await;
    assert!(r.created.is_empty(), "{:?}", r.created);
    assert!(r.alerts.iter().any(|a| a.contains(&id)), "{:?}", r.alerts);
    assert_eq!(eth_balance(&w, &w.cold_addr).await, 10 * ETH);
    assert_eq!(eth_balance(&w, &w.hot_addr).await, ETH);
}
