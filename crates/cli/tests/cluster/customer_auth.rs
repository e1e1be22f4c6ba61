//! Customers' payment authentication on the cluster: device signatures that
//! satisfy a step-up once the device is trusted, refused signatures with
//! their codes (counted until the device freezes), replays and reused
//! one-time codes refused, the payment password locked after repeated
//! failures, devices capped and revocable, the merchant's registered KYC
//! tier, and customer records that stay sealed. Each test uses customers of
//! its own. The device signs with ed25519-dalek here, the coordinator
//! verifies with its own code; one-time codes are computed with `totp-rs`.

use ed25519_dalek::{Signer, SigningKey};
use keyfold_proto::api::{
    CustomerInfo, DeviceProof, PaymentClient, PayoutInfo, PayoutRequest, PayoutState,
    RegisterDevice, TotpEnrolled,
};
use serde_json::Value;

use crate::fixture::*;
use crate::payouts::{payout, unique};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn new_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    SigningKey::from_bytes(&seed)
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
    n
}

/// ETH in base units (18 decimals), from the decimal string of a payout.
fn wei(eth: &str) -> u128 {
    let (int, frac) = eth.split_once('.').unwrap_or((eth, ""));
    let frac = format!("{frac:0<18}");
    int.parse::<u128>().unwrap() * 10u128.pow(18) + frac.parse::<u128>().unwrap()
}

/// The device's proof for `req`, as a phone would make it.
fn sign(req: &PayoutRequest, device: &str, key: &SigningKey, timestamp: u64) -> DeviceProof {
    let client = req.client.as_ref().unwrap();
    let nonce = nonce();
    let body = keyfold_risk::DevicePayment {
        customer_id: client.customer_id.clone(),
        device_id: device.to_string(),
        payment: keyfold_risk::Payment {
            chain: req.chain.clone(),
            asset: req.asset.clone(),
            amount: wei(&req.amount),
            destination: keyfold_risk::canonical_destination(&req.to).into_owned(),
            wallet: req.wallet.clone(),
            merchant: None,
        },
        payout_id: req.payout_id.clone(),
        timestamp,
        nonce: nonce.to_vec(),
    };
    let sig = key.sign(&body.canonical_bytes().unwrap());
    DeviceProof {
        timestamp,
        nonce: hex::encode(nonce),
        signature: hex::encode(sig.to_bytes()),
    }
}

/// The code of an enrolled authenticator at `at`.
fn totp_code(e: &TotpEnrolled, at: u64) -> String {
    let secret = totp_rs::Secret::Encoded(e.secret.clone())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        usize::from(e.digits),
        1,
        e.period,
        secret,
    )
    .generate(at)
}

/// A customer payout request of `amount` ETH on the L1.
fn request(c: &Cluster, prefix: &str, amount: &str, customer: &str, device: &str) -> PayoutRequest {
    let mut req = payout(&unique(prefix), c, "devnet-l1", "ETH", amount);
    req.client = Some(PaymentClient {
        customer_id: customer.into(),
        device_id: Some(device.into()),
        ip: Some("198.51.100.77".into()),
        country: Some("DE".into()),
        kyc_tier: None,
        device_signature: None,
        totp: None,
        password: None,
    });
    req
}

fn client_mut(req: &mut PayoutRequest) -> &mut PaymentClient {
    req.client.as_mut().unwrap()
}

/// An API answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `error.reason` of a refused proof (asserting it is one).
    fn refusal(&self) -> String {
        let v = self.json();
        assert_eq!(self.status, 403, "{}", self.body);
        assert_eq!(v["error"]["code"], "payment_auth_refused", "{}", self.body);
        v["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn payout(&self) -> PayoutInfo {
        assert_eq!(self.status, 201, "{}", self.body);
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Cluster {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        Answer {
            status: r.status().as_u16(),
            body: r.text().await.unwrap(),
        }
    }

    async fn pay(&self, req: &PayoutRequest) -> Answer {
        self.call(
            reqwest::Method::POST,
            "/v1/payouts",
            Some(serde_json::to_value(req).unwrap()),
        )
        .await
    }

    async fn register(&self, customer: &str, device: &str, key: &SigningKey) -> Answer {
        let body = RegisterDevice {
            device_id: device.into(),
            curve: "ed25519".into(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
        };
        self.call(
            reqwest::Method::POST,
            &format!("/v1/customers/{customer}/devices"),
            Some(serde_json::to_value(body).unwrap()),
        )
        .await
    }

    async fn enrol(&self, customer: &str) -> TotpEnrolled {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/customers/{customer}/totp"),
                None,
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        serde_json::from_str(&a.body).unwrap()
    }

    /// The `risk_refusal` entries of the coordinator's audit log: (request, code).
    fn refusals(&self) -> Vec<(String, String)> {
        self.coordinator_audit()
            .into_iter()
            .filter_map(|e| match e.event {
                keyfold_audit::Event::RiskRefusal {
                    request_id, code, ..
                } => Some((request_id, code)),
                _ => None,
            })
            .collect()
    }
}

fn risk_code(p: &PayoutInfo) -> Option<&str> {
    p.risk.as_ref().and_then(|r| r.code.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signature_satisfies_a_step_up_once_the_device_is_trusted() {
    let c = cluster().await;
    let customer = unique("stepup-signer");
    let (young, old) = (unique("young-phone"), unique("old-phone"));
    let (young_key, old_key) = (new_key(), new_key());
    assert_eq!(c.register(&customer, &young, &young_key).await.status, 201);
    assert_eq!(c.register(&customer, &old, &old_key).await.status, 201);

    // A large payment from a first-seen device asks a step-up; the young
    // device's signature verifies but may not stand in for one yet.
    let mut req = request(&c, "young", "0.6", &customer, &young);
    client_mut(&mut req).device_signature = Some(sign(&req, &young, &young_key, now()));
    let p = c.pay(&req).await.payout();
    assert_eq!(p.state, PayoutState::Rejected, "{p:?}");
    assert_eq!(risk_code(&p), Some("device_too_new"), "{p:?}");

    // The devnet trusts a device 2 s after its registration.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mut req = request(&c, "trusted", "0.6", &customer, &old);
    client_mut(&mut req).device_signature = Some(sign(&req, &old, &old_key, now()));
    let p = c.pay(&req).await.payout();
    let risk = p.risk.clone().expect("judged");
    assert_eq!(risk.action, "allow", "{p:?}");
    assert!(
        risk.reasons.contains(&"new-device-large-eth".to_string()),
        "the step-up rule fired and the signature satisfied it: {risk:?}"
    );
    assert_ne!(p.state, PayoutState::Rejected, "{p:?}");
    // The request records what the coordinator verified, not a claim.
    let (_, _, body) = c
        .get::<Value>(&format!("/v1/requests/{}", p.request_id))
        .await;
    assert!(body.contains("device_signature"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_device_signatures_carry_their_codes_and_three_freeze_the_device() {
    let c = cluster().await;
    let customer = unique("forger-target");
    let device = unique("phone");
    let key = new_key();
    assert_eq!(c.register(&customer, &device, &key).await.status, 201);

    let mut refused_ids = Vec::new();
    // Signed by a key that is not the device's.
    let mut req = request(&c, "wrongkey", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &new_key(), now()));
    assert_eq!(c.pay(&req).await.refusal(), "wrong_device_key");
    refused_ids.push(req.payout_id.clone());
    // A changed field: signed for another amount.
    let mut req = request(&c, "changed", "0.0001", &customer, &device);
    let mut other = req.clone();
    other.amount = "0.0002".into();
    client_mut(&mut req).device_signature = Some(sign(&other, &device, &key, now()));
    assert_eq!(c.pay(&req).await.refusal(), "wrong_device_key");
    refused_ids.push(req.payout_id.clone());
    // An hour old.
    let mut req = request(&c, "stale", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &key, now() - 3600));
    assert_eq!(c.pay(&req).await.refusal(), "stale_timestamp");
    refused_ids.push(req.payout_id.clone());

    // Each refusal is a numbered risk step in the audit log.
    let logged = c.refusals();
    for id in &refused_ids {
        assert!(
            logged.iter().any(|(r, _)| r.ends_with(id.as_str())),
            "no risk_refusal for {id}: {logged:?}"
        );
    }
    // The tree freezes a device with three refusals in the hour, even when
    // its next signature is good.
    let mut req = request(&c, "after", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &key, now()));
    let p = c.pay(&req).await.payout();
    assert_eq!(p.state, PayoutState::Rejected, "{p:?}");
    assert_eq!(risk_code(&p), Some("risk_frozen"), "{p:?}");
    assert!(
        p.risk
            .as_ref()
            .is_some_and(|r| r.reasons.contains(&"device-signature-refusals".to_string())),
        "{p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_device_signature_and_a_reused_code_are_refused() {
    let c = cluster().await;
    let customer = unique("replay-target");
    let device = unique("phone");
    let key = new_key();
    assert_eq!(c.register(&customer, &device, &key).await.status, 201);
    let enrolled = c.enrol(&customer).await;
    assert!(enrolled.uri.starts_with("otpauth://totp/"), "{enrolled:?}");
    let t = now();
    let valid: Vec<String> = [t - 30, t, t + 30, t + 60]
        .iter()
        .map(|at| totp_code(&enrolled, *at))
        .collect();
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();

    // A good signature with a wrong code: refused, and its nonce is spent.
    let mut req = request(&c, "replay", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &key, now()));
    client_mut(&mut req).totp = Some(wrong);
    assert_eq!(c.pay(&req).await.refusal(), "bad_totp");
    // The same signed request again, now with the right code: a replay.
    let code = totp_code(&enrolled, now());
    client_mut(&mut req).totp = Some(code.clone());
    assert_eq!(c.pay(&req).await.refusal(), "replayed_device_signature");

    // A fresh signature and the code: accepted once.
    let mut req = request(&c, "fresh", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &key, now()));
    client_mut(&mut req).totp = Some(code.clone());
    let a = c.pay(&req).await;
    if a.status == 403 && a.refusal() == "totp_reused" {
        // The time step turned between the two calls and the earlier code
        // is now behind the one just used: nothing to check here.
        return;
    }
    let p = a.payout();
    assert_ne!(p.state, PayoutState::Rejected, "{p:?}");
    // The same code for the next payout: refused.
    let mut req = request(&c, "again", "0.0001", &customer, &device);
    client_mut(&mut req).device_signature = Some(sign(&req, &device, &key, now()));
    client_mut(&mut req).totp = Some(code);
    assert_eq!(c.pay(&req).await.refusal(), "totp_reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_password_locks_after_repeated_failures() {
    let c = cluster().await;
    let customer = unique("password-owner");
    let device = unique("phone");
    let a = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{customer}/password"),
            Some(serde_json::json!({ "password": "correct horse" })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let with = |pw: &str| {
        let mut req = request(&c, "pw", "0.0001", &customer, &device);
        client_mut(&mut req).password = Some(pw.into());
        req
    };
    let p = c.pay(&with("correct horse")).await.payout();
    assert_ne!(p.state, PayoutState::Rejected, "{p:?}");
    // Five failures (the default) lock it.
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(c.pay(&with("battery staple")).await.refusal());
    }
    assert!(codes[..4].iter().all(|c| c == "bad_password"), "{codes:?}");
    // Locked: even the right password is refused now.
    assert_eq!(
        c.pay(&with("correct horse")).await.refusal(),
        "password_locked"
    );
    let info: CustomerInfo = c.get(&format!("/v1/customers/{customer}")).await.1.unwrap();
    assert!(info.password_locked_until.is_some(), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_capped_revocable_and_of_a_known_curve() {
    let c = cluster().await;
    let customer = unique("many-phones");
    let a = c
        .call(
            reqwest::Method::POST,
            &format!("/v1/customers/{customer}/devices"),
            Some(serde_json::json!({
                "device_id": "k1", "curve": "secp256k1", "public_key": "02".repeat(33)
            })),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains("curve") || a.body.contains("secp256k1"),
        "{}",
        a.body
    );

    let keys: Vec<(String, SigningKey)> =
        (0..5).map(|i| (format!("phone-{i}"), new_key())).collect();
    for (id, k) in &keys {
        assert_eq!(c.register(&customer, id, k).await.status, 201);
    }
    // The default cap is five active devices.
    let sixth = c.register(&customer, "phone-5", &new_key()).await;
    assert_eq!(sixth.status, 400, "{}", sixth.body);
    // An id is never reused.
    let again = c.register(&customer, "phone-0", &new_key()).await;
    assert_eq!(again.status, 409, "{}", again.body);

    let (id, key) = &keys[0];
    let a = c
        .call(
            reqwest::Method::POST,
            &format!("/v1/customers/{customer}/devices/{id}/revoke"),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let info: CustomerInfo = serde_json::from_str(&a.body).unwrap();
    assert!(info
        .devices
        .iter()
        .any(|d| &d.device_id == id && d.revoked_at.is_some()));
    let mut req = request(&c, "revoked", "0.0001", &customer, id);
    client_mut(&mut req).device_signature = Some(sign(&req, id, key, now()));
    assert_eq!(c.pay(&req).await.refusal(), "device_revoked");
    // A revoked device frees its place under the cap.
    assert_eq!(
        c.register(&customer, "phone-5", &new_key()).await.status,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_kyc_tier_counts_and_raw_ids_and_ips_stay_out_of_the_log() {
    let c = cluster().await;
    let customer = unique("kyc-customer@example.com");
    let device = unique("phone");
    let a = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{customer}/kyc"),
            Some(serde_json::json!({ "tier": "full" })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let bad = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{customer}/kyc"),
            Some(serde_json::json!({ "tier": "gold" })),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The client claims tier none; the registered tier counts.
    let mut req = request(&c, "kyc", "0.0001", &customer, &device);
    client_mut(&mut req).kyc_tier = Some("none".into());
    let p = c.pay(&req).await.payout();
    let (_, view, body) = c
        .get::<Value>(&format!("/v1/requests/{}", p.request_id))
        .await;
    let view = view.unwrap();
    let client = view["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["module"] == "client"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(client["data"]["context"]["kyc_tier"], "full", "{body}");
    // Only the IP's /24 is kept with the request and in the audit log.
    assert_eq!(client["data"]["context"]["ip"], "198.51.100.0", "{body}");
    let log = std::fs::read_to_string(c.dir.join("coordinator/audit/entries.jsonl")).unwrap();
    assert!(
        !log.contains("198.51.100.77"),
        "the audit log holds a raw IP"
    );
    assert!(
        !log.contains(&customer),
        "the audit log holds a raw customer id"
    );
    // The tier change is audited under the customer's pseudonym.
    let changes: Vec<(String, String)> = c
        .coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            keyfold_audit::Event::CustomerAuth {
                customer, action, ..
            } => Some((customer, action)),
            _ => None,
        })
        .collect();
    assert!(
        changes
            .iter()
            .any(|(cu, action)| cu.starts_with("cu_") && action == "kyc_tier_set"),
        "{changes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_records_are_sealed_at_rest() {
    let c = cluster().await;
    let customer = unique("sealed-customer");
    let key = new_key();
    assert_eq!(c.register(&customer, "phone", &key).await.status, 201);
    let enrolled = c.enrol(&customer).await;
    let public = hex::encode(key.verifying_key().to_bytes());
    let dir = c.dir.join("coordinator");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [&customer, &public, &enrolled.secret] {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds {secret} in the clear",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_limits_refuse_a_payment_above_the_customers_tier() {
    let mut c = cluster().await;
    // Tier limits for ETH only (so every other asset is refused to
    // customers: the limits fail closed). 0.001 / 0.0015 ETH at `none`.
    let limits = c.dir.join("tier-limits.toml");
    std::fs::write(
        &limits,
        r#"[none]
ETH = { max_single = "1000000000000000", max_24h = "1500000000000000" }
[basic]
ETH = { max_single = "10000000000000000", max_24h = "20000000000000000" }
[full]
ETH = { max_single = "1000000000000000000", max_24h = "2000000000000000000" }
"#,
    )
    .unwrap();
    let config = c.dir.join("config").join("coordinator.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let with_limits = original.replacen(
        "[risk]\n",
        &format!(
            "[risk]\ntier_limits_file = {:?}\n",
            limits.to_str().unwrap()
        ),
        1,
    );
    assert_ne!(with_limits, original, "the devnet writes a [risk] section");
    std::fs::write(&config, with_limits).unwrap();
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;

    let customer = unique("tiered");
    let device = unique("phone");
    let p = c
        .pay(&request(&c, "tier", "0.001", &customer, &device))
        .await
        .payout();
    assert_ne!(p.state, PayoutState::Rejected, "{p:?}");
    // A second 0.001 ETH makes 0.002 in 24 h, over `none`'s 0.0015.
    let p = c
        .pay(&request(&c, "tier", "0.001", &customer, &device))
        .await
        .payout();
    assert_eq!(p.state, PayoutState::Rejected, "{p:?}");
    assert_eq!(risk_code(&p), Some("kyc_tier_limit"), "{p:?}");
    let reason = p.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("max_24h") && reason.contains("KYC tier basic allows it"),
        "{reason}"
    );
    // Registered at `full`, the same customer may pay it.
    let a = c
        .call(
            reqwest::Method::PUT,
            &format!("/v1/customers/{customer}/kyc"),
            Some(serde_json::json!({ "tier": "full" })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let p = c
        .pay(&request(&c, "tier", "0.001", &customer, &device))
        .await
        .payout();
    assert_ne!(p.state, PayoutState::Rejected, "{p:?}");

    std::fs::write(&config, original).unwrap();
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_one_time_codes_lock_the_codes() {
    let c = cluster().await;
    let customer = unique("code-guesser-target");
    let device = unique("phone");
    let enrolled = c.enrol(&customer).await;
    let t = now();
    let valid: Vec<String> = [t - 30, t, t + 30, t + 60, t + 90]
        .iter()
        .map(|at| totp_code(&enrolled, *at))
        .collect();
    let wrong = (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap();
    let with = |code: &str| {
        let mut req = request(&c, "code", "0.0001", &customer, &device);
        client_mut(&mut req).totp = Some(code.into());
        req
    };
    // Five wrong codes in a row (the password's default) lock the codes.
    for _ in 0..5 {
        assert_eq!(c.pay(&with(&wrong)).await.refusal(), "bad_totp");
    }
    assert_eq!(
        c.pay(&with(&totp_code(&enrolled, now()))).await.refusal(),
        "totp_locked"
    );
    let info: CustomerInfo = c.get(&format!("/v1/customers/{customer}")).await.1.unwrap();
    assert!(info.totp_locked_until.is_some(), "{info:?}");
}
