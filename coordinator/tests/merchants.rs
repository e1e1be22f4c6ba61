//! Merchants as tenants, against a real coordinator (store, journal, audit
//! log, policy) with in-process signers: every endpoint hides another
//! merchant's objects (404), scopes and operator-only routes answer 403,
//! keys rotate with an overlap and revoke at once, rate limits answer 429,
//! and signed write requests refuse forgery, staleness and replay.
//!
//! Request signatures are computed here from the documented canonical
//! string with `hmac`/`sha2` and `ed25519-dalek`, not with the server's code.

mod common;

use base64::Engine as _;
use common::{start, Env};
use hmac::Mac;
use keyfold_coordinator::modules::Modules;
use serde_json::{json, Value};
use sha2::Digest;

const ALL_SCOPES: &[&str] = &[
    "wallets:read",
    "wallets:write",
    "signatures:read",
    "signatures:write",
    "payouts:read",
    "payouts:write",
];

/// Creates merchant `id` with a key holding `scopes`, kept in `env.tokens`
/// under the merchant's id.
async fn merchant(env: &mut Env, id: &str, scopes: &[&str], rate: Option<(u32, u32)>) -> Value {
    let mut body = json!({ "merchant_id": id, "name": format!("{id} Ltd") });
    if let Some((burst, per_sec)) = rate {
        body["rate_burst"] = json!(burst);
        body["rate_per_sec"] = json!(per_sec);
    }
    let (s, v) = env.post("payments", "/v1/merchants", body).await;
    assert_eq!(s, 201, "{v}");
    issue(env, id, id, scopes).await
}

/// Issues another key of merchant `id`, kept under `name`.
async fn issue(env: &mut Env, id: &str, name: &str, scopes: &[&str]) -> Value {
    let (s, v) = env
        .post(
            "payments",
            &format!("/v1/merchants/{id}/keys"),
            json!({ "label": name, "scopes": scopes }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let key = v["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("kfm_") && key.len() == 68, "{key}");
    env.tokens.insert(name.to_string(), key);
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A 2-of-3 ECDSA key created by `client`.
async fn key_of(env: &Env, client: &str) -> String {
    let (s, v) = env
        .post(
            client,
            "/v1/keys",
            json!({ "curve": "secp256k1", "t": 2, "n": 3 }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["key_id"].as_str().unwrap().to_string()
}

async fn transfer(env: &Env, client: &str, id: &str, key_id: &str, amount: u64) -> (u16, Value) {
    env.post(
        client,
        "/v1/signatures",
        json!({
            "request_id": id,
            "key_id": key_id,
            "transfer": {
                "asset": "ETH",
                "amount": amount.to_string(),
                "destination": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
            }
        }),
    )
    .await
}

#[tokio::test]
async fn a_merchant_never_sees_another_merchants_objects_on_any_endpoint() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", ALL_SCOPES, None).await;
    merchant(&mut env, "globex", ALL_SCOPES, None).await;
    let key = key_of(&env, "acme").await;
    let (s, v) = transfer(&env, "acme", "acme-1", &key, 10).await;
    assert_eq!(s, 200, "{v}");
    common::verify_ecdsa(&v);
    // Waits for two officers.
    let (s, v) = transfer(&env, "acme", "acme-wait", &key, 3000).await;
    assert_eq!(s, 202, "{v}");

    // The owner sees everything it made.
    for path in [
        format!("/v1/keys/{key}"),
        "/v1/requests/acme-1".into(),
        "/v1/signatures/acme-1".into(),
        "/v1/requests/acme-wait".into(),
    ] {
        let (s, v) = env.get("acme", &path).await;
        assert_eq!(s, 200, "{path}: {v}");
    }

    // Another merchant: every read and write on them is "not found".
    for path in [
        format!("/v1/keys/{key}"),
        "/v1/requests/acme-1".into(),
        "/v1/signatures/acme-1".into(),
        "/v1/requests/acme-wait".into(),
    ] {
        let (s, v) = env.get("globex", &path).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(code(&v), "not_found");
    }
    let (s, v) = transfer(&env, "globex", "globex-1", &key, 10).await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    let (s, v) = env
        .post("globex", "/v1/requests/acme-wait/cancel", json!({}))
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"), "{v}");
    // Lists leave them out.
    let (s, v) = env.get("globex", "/v1/keys").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"], json!([]), "{v}");
    for states in ["", "?state=completed", "?state=pending_approval,completed"] {
        let (s, v) = env.get("globex", &format!("/v1/requests{states}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["requests"], json!([]), "{states}: {v}");
    }
    let (s, v) = env.get("acme", "/v1/requests?state=completed").await;
    assert_eq!(s, 200);
    assert_eq!(v["requests"].as_array().unwrap().len(), 1, "{v}");
    // Payouts: this coordinator has no payments module, so they are not
    // found for anyone; `tests/cluster` checks payouts on real chains.
    let (s, _) = env.get("globex", "/v1/payouts/acme-p1").await;
    assert_eq!(s, 404);
    // Reusing another merchant's ids is a conflict that shows nothing of it.
    let own = key_of(&env, "globex").await;
    let (s, v) = transfer(&env, "globex", "acme-1", &own, 10).await;
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");
    assert!(!v.to_string().contains(&key), "{v}");
    let body = json!({ "client_id": "shared-1", "curve": "ed25519", "t": 2, "n": 3 });
    let (s, _) = env.post("acme", "/v1/keys", body.clone()).await;
    assert_eq!(s, 201);
    let (s, v) = env.post("globex", "/v1/keys", body).await;
    assert_eq!((s, code(&v)), (409, "conflict"), "{v}");

    // The operator sees every merchant's objects.
    let (s, _) = env.get("payments", "/v1/requests/acme-1").await;
    assert_eq!(s, 200);
    let (s, v) = env.get("payments", "/v1/keys").await;
    assert_eq!(s, 200);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3, "{v}");
    // A merchant's request is recorded under its key's client name.
    let (_, v) = env.get("acme", "/v1/requests/acme-1").await;
    let initiator = v["request"]["initiator"].as_str().unwrap();
    assert!(initiator.starts_with("acme#mk_"), "{initiator}");
}

#[tokio::test]
async fn scopes_and_operator_only_routes_answer_403() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", &["wallets:read"], None).await;
    let key = key_of(&env, "payments").await;
    let (s, v) = env
        .post(
            "acme",
            "/v1/keys",
            json!({ "curve": "secp256k1", "t": 2, "n": 3 }),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wallets:write"),
        "{v}"
    );
    let (s, v) = transfer(&env, "acme", "a-1", &key, 10).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    for path in [
        "/v1/requests",
        "/v1/payouts",
        "/v1/policy",
        "/v1/status",
        "/v1/merchants",
    ] {
        let (s, v) = env.get("acme", path).await;
        assert_eq!((s, code(&v)), (403, "forbidden"), "{path}: {v}");
    }
    // Officers approve with their own credentials, never a merchant key.
    let (s, v) = transfer(&env, "payments", "w-1", &key, 3000).await;
    assert_eq!(s, 202, "{v}");
    let approval = env
        .approval(3, "w-1", keyfold_policy::ApprovalDecision::Approve)
        .await;
    let (s, v) = env
        .post("acme", "/v1/requests/w-1/approvals", approval)
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = env
        .post(
            "acme",
            "/v1/merchants",
            json!({ "merchant_id": "evil", "name": "x" }),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    // The scope it has works.
    let (s, _) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_rotated_key_works_for_the_overlap_and_a_revoked_one_stops_at_once() {
    let mut env = start(Modules::default(), "").await;
    let first = merchant(&mut env, "acme", &["wallets:read"], None).await;
    let old_id = first["key"]["key_id"].as_str().unwrap().to_string();
    let (s, v) = env
        .post(
            "payments",
            &format!("/v1/merchants/acme/keys/{old_id}/rotate"),
            json!({ "overlap_secs": 60 }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let new_id = v["key"]["key_id"].as_str().unwrap().to_string();
    assert_ne!(new_id, old_id);
    assert_eq!(v["key"]["scopes"], json!(["wallets:read"]));
    env.tokens
        .insert("acme-new".into(), v["api_key"].as_str().unwrap().into());
    for who in ["acme", "acme-new"] {
        let (s, v) = env.get(who, "/v1/keys").await;
        assert_eq!(s, 200, "{who}: {v}");
    }
    env.clock.advance_ms(61_000);
    let (s, v) = env.get("acme", "/v1/keys").await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
    let (s, _) = env.get("acme-new", "/v1/keys").await;
    assert_eq!(s, 200);
    let (s, v) = env
        .post(
            "payments",
            &format!("/v1/merchants/acme/keys/{new_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["revoked_at"].is_i64(), "{v}");
    let (s, v) = env.get("acme-new", "/v1/keys").await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
    // The list shows both, never a secret.
    let (s, v) = env.get("payments", "/v1/merchants/acme/keys").await;
    assert_eq!(s, 200);
    assert_eq!(v["keys"].as_array().unwrap().len(), 2, "{v}");
    assert!(!v.to_string().contains("kfm_"), "{v}");
}

#[tokio::test]
async fn a_disabled_merchant_is_refused_until_enabled() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", &["wallets:read"], None).await;
    let (s, v) = env
        .post(
            "payments",
            "/v1/merchants/acme/settings",
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["merchant"]["disabled_at"].is_i64(), "{v}");
    let (s, _) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 401);
    let (s, _) = env
        .post(
            "payments",
            "/v1/merchants/acme/settings",
            json!({ "disabled": false }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 200);
    let (s, v) = env.get("payments", "/v1/merchants").await;
    assert_eq!(s, 200);
    assert_eq!(v["merchants"][0]["merchant_id"], "acme", "{v}");
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", &["wallets:read"], Some((3, 1))).await;
    merchant(&mut env, "globex", &["wallets:read"], Some((3, 1))).await;
    for _ in 0..3 {
        let (s, _) = env.get("acme", "/v1/keys").await;
        assert_eq!(s, 200);
    }
    let resp = env
        .http
        .get(format!("{}/v1/keys", env.url))
        .bearer_auth(&env.tokens["acme"])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "rate_limited");
    // Another merchant's bucket is its own; operators are not limited.
    let (s, _) = env.get("globex", "/v1/keys").await;
    assert_eq!(s, 200);
    for _ in 0..10 {
        let (s, _) = env.get("payments", "/v1/keys").await;
        assert_eq!(s, 200);
    }
    // A token comes back after a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 200);
}

/// A signed POST; `sign` gets the canonical string and returns the header
/// value.
async fn signed_post(
    env: &Env,
    client: &str,
    path: &str,
    body: &Value,
    ts: i64,
    nonce: &str,
    sign: impl Fn(&[u8]) -> String,
) -> (u16, Value) {
    let body = serde_json::to_vec(body).unwrap();
    let canonical = format!(
        "KEYFOLD-REQUEST-V1\nPOST\n{path}\n{ts}\n{nonce}\n{}",
        hex::encode(sha2::Sha256::digest(&body))
    );
    let resp = env
        .http
        .post(format!("{}{path}", env.url))
        .bearer_auth(&env.tokens[client])
        .header("content-type", "application/json")
        .header("keyfold-timestamp", ts.to_string())
        .header("keyfold-nonce", nonce)
        .header("keyfold-signature", sign(canonical.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

fn hmac_sig(secret: &str) -> impl Fn(&[u8]) -> String + '_ {
    move |msg| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(msg);
        format!(
            "v1={}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    }
}

#[tokio::test]
async fn signed_requests_refuse_forgery_staleness_and_replay_across_a_restart() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", ALL_SCOPES, None).await;
    let (s, v) = env
        .post(
            "payments",
            "/v1/merchants/acme/settings",
            json!({ "request_signing": "hmac" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["merchant"]["request_signing"], "hmac");
    let secret = v["hmac_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("kfs_"), "{secret}");
    let body = json!({ "curve": "ed25519", "t": 2, "n": 3, "client_id": "k-1" });
    let now = env.clock_secs() as i64;

    // Unsigned writes are refused; reads need no signature.
    let (s, v) = env.post("acme", "/v1/keys", body.clone()).await;
    assert_eq!((s, code(&v)), (401, "signature_required"), "{v}");
    let (s, _) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 200);

    let sig = hmac_sig(&secret);
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "nonce-0000000001",
        &sig,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The same nonce again: a replay.
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "nonce-0000000001",
        &sig,
    )
    .await;
    assert_eq!((s, code(&v)), (401, "nonce_reused"), "{v}");
    // Outside the 5-minute window, either way.
    for ts in [now - 301, now + 301] {
        let (s, v) = signed_post(
            &env,
            "acme",
            "/v1/keys",
            &body,
            ts,
            "nonce-0000000002",
            &sig,
        )
        .await;
        assert_eq!((s, code(&v)), (401, "request_stale"), "{v}");
    }
    let (s, _) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now - 300,
        "nonce-0000000003",
        &sig,
    )
    .await;
    assert_eq!(s, 201);
    // A signature over another body (or with another secret) is forged.
    let forged = |msg: &[u8]| {
        let tampered = String::from_utf8_lossy(msg).replace("POST", "PUT");
        sig(tampered.as_bytes())
    };
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "nonce-0000000004",
        forged,
    )
    .await;
    assert_eq!((s, code(&v)), (401, "signature_invalid"), "{v}");
    let other = hmac_sig("kfs_not-the-secret");
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "nonce-0000000005",
        &other,
    )
    .await;
    assert_eq!((s, code(&v)), (401, "signature_invalid"), "{v}");
    let (s, v) = signed_post(&env, "acme", "/v1/keys", &body, now, "short", &sig).await;
    assert_eq!((s, code(&v)), (401, "signature_malformed"), "{v}");

    // A restart does not forget the nonces.
    let env = env.restart("").await;
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "nonce-0000000001",
        &sig,
    )
    .await;
    assert_eq!((s, code(&v)), (401, "nonce_reused"), "{v}");
}

#[tokio::test]
async fn ed25519_signed_requests_verify_against_the_merchants_public_key() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", ALL_SCOPES, None).await;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let (s, v) = env
        .post(
            "payments",
            "/v1/merchants/acme/settings",
            json!({
                "request_signing": "ed25519",
                "ed25519_public_key": hex::encode(sk.verifying_key().to_bytes())
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("hmac_secret").is_none(), "{v}");
    let sign = |msg: &[u8]| {
        use ed25519_dalek::Signer;
        format!(
            "v1a={}",
            base64::engine::general_purpose::STANDARD.encode(sk.sign(msg).to_bytes())
        )
    };
    let now = env.clock_secs() as i64;
    let body = json!({ "curve": "secp256k1", "t": 2, "n": 3 });
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "ed-nonce-00000001",
        sign,
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // An HMAC signature is the wrong scheme for this merchant.
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "ed-nonce-00000002",
        hmac_sig("x"),
    )
    .await;
    assert_eq!((s, code(&v)), (401, "signature_invalid"), "{v}");
    // Another key's signature does not verify.
    let wrong = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (s, v) = signed_post(
        &env,
        "acme",
        "/v1/keys",
        &body,
        now,
        "ed-nonce-00000003",
        |m: &[u8]| {
            use ed25519_dalek::Signer;
            format!(
                "v1a={}",
                base64::engine::general_purpose::STANDARD.encode(wrong.sign(m).to_bytes())
            )
        },
    )
    .await;
    assert_eq!((s, code(&v)), (401, "signature_invalid"), "{v}");
}

#[tokio::test]
async fn an_unknown_merchant_key_is_refused_and_a_merchants_keys_list_as_its_own() {
    let mut env = start(Modules::default(), "").await;
    merchant(&mut env, "acme", ALL_SCOPES, None).await;
    // A well-formed but unknown merchant key.
    env.tokens
        .insert("ghost".into(), format!("kfm_{}", "ab".repeat(32)));
    let (s, v) = env.get("ghost", "/v1/keys").await;
    assert_eq!((s, code(&v)), (401, "unauthorized"), "{v}");
    // Key creation with the merchant's key shows up as its own.
    let key = key_of(&env, "acme").await;
    let (s, v) = env.get("acme", "/v1/keys").await;
    assert_eq!(s, 200);
    assert_eq!(v["keys"][0]["key_id"], key.as_str(), "{v}");
}
