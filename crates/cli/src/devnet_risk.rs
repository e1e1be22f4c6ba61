//! The devnet's risk scenario: a customer with a device and a one-time-code
//! authenticator makes one normal payment signed by the device, then a
//! burst from the same device that the default risk tree freezes
//! (`device-burst`); another customer's impossible travel is held for
//! review and an officer rejects it; the devnet shows the review queue,
//! lifts the freeze
//! with two officers' signatures (the code path of `keyfold freeze lift`)
//! and lets the device pay again. Last, four proofs the coordinator must
//! refuse: a signature by a key that is not the device's, a stale one, a
//! wrong one-time code and a replayed device signature.
//!
//! The device is simulated here as a customer's phone would be: it holds
//! its own Ed25519 key, signs the canonical bytes of each payment
//! (`keyfold_risk::DevicePayment`), and the one-time codes come from the
//! enrolled secret through `totp-rs`, not from the code that checks them.
//!
//! Each run uses a customer and a device named after the run, so a second
//! run on the same data directory starts from empty risk windows.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use keyfold_proto::api::{
    ApiError, CustomerInfo, DeviceProof, FreezeInfo, FreezeList, KeyInfo, PaymentClient,
    PayoutInfo, PayoutRequest, PayoutState, RegisterDevice, ReviewList, TotpEnrolled,
};
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::devnet_treasury::Officers;
use crate::http::Api;

/// The chain and asset of the scenario's payments.
const CHAIN: &str = "devnet-l1";
const ASSET: &str = "ETH";
/// 0.0001 ETH: small enough that no amount rule fires.
const AMOUNT: &str = "0.0001";
/// The same amount in wei, which the device signs (checked against the
/// coordinator's answer to the first payment).
const AMOUNT_WEI: u128 = 100_000_000_000_000;
/// Who the scenario pays.
const RECIPIENT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
/// The default tree freezes a device's sixth payment in ten minutes; a few
/// more are allowed before the devnet gives up on seeing the freeze (a
/// custom tree may set another threshold).
const MAX_BURST: usize = 10;
/// How long the devnet waits for a payment to reach the chain.
const PAYMENT_WAIT: Duration = Duration::from_secs(120);
/// How long the two officers' lift signatures stay valid.
const LIFT_VALID_SECS: u64 = 600;

/// The `risk` section of the `--out` JSON.
#[derive(Serialize, Clone, Default)]
pub struct RiskSummary {
    /// The risk engine's decision on every payout the scenario made.
    pub decisions: Vec<DecisionSummary>,
    /// The freezes those decisions added, as the coordinator lists them at
    /// the end of the run.
    pub freezes: Vec<FreezeSummary>,
    /// The proofs the coordinator refused, one per case.
    pub refused: Vec<RefusalSummary>,
}

/// One decision (a payout's `risk`).
#[derive(Serialize, Clone)]
pub struct DecisionSummary {
    /// The payout's signing request.
    pub request_id: String,
    /// 0..=100.
    pub score: u8,
    /// `allow`, `step_up`, `review`, `freeze` or `deny`.
    pub action: String,
    /// The rules that fired.
    pub reasons: Vec<String>,
}

/// One freeze.
#[derive(Serialize, Clone)]
pub struct FreezeSummary {
    /// Its id.
    pub freeze_id: String,
    /// `device`, `customer`, `wallet` or `merchant`.
    pub scope: String,
    /// The frozen subject (a device's pseudonym).
    pub subject: String,
    /// Why.
    pub reason: String,
    /// The officers who lifted it (empty while it holds).
    pub lifted_by: Vec<String>,
}

/// One refused proof.
#[derive(Serialize, Clone)]
pub struct RefusalSummary {
    /// What the devnet tried: `wrong_device_key`, `stale_timestamp`,
    /// `bad_totp` or `replayed_device_signature`.
    pub case: String,
    /// The API's `error.reason` (its `error.code` when it gives none;
    /// `accepted` if, wrongly, nothing was refused).
    pub code: String,
    /// The API's message, for the progress line.
    #[serde(skip)]
    detail: String,
}

/// The customer's phone: its id, its key and the customer's authenticator.
struct Device {
    customer_id: String,
    device_id: String,
    key: SigningKey,
    totp: totp_rs::TOTP,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, b.as_mut());
    b
}

impl Device {
    /// The proof of `req` by `key` at `timestamp` with a fresh nonce: the
    /// signature over the canonical bytes the coordinator rebuilds from the
    /// payout as it will execute it.
    fn sign_with(
        &self,
        key: &SigningKey,
        req: &PayoutRequest,
        timestamp: u64,
    ) -> Result<DeviceProof, String> {
        let nonce = random::<32>().to_vec();
        let body = keyfold_risk::DevicePayment {
            customer_id: self.customer_id.clone(),
            device_id: self.device_id.clone(),
            payment: keyfold_risk::Payment {
                chain: req.chain.clone(),
                asset: req.asset.clone(),
                amount: AMOUNT_WEI,
                destination: keyfold_risk::canonical_destination(&req.to).into_owned(),
                wallet: req.wallet.clone(),
                // The devnet pays with the operator's token, not a merchant's key.
                merchant: None,
            },
            payout_id: req.payout_id.clone(),
            timestamp,
            nonce: nonce.clone(),
        };
        let bytes = body
            .canonical_bytes()
            .map_err(|e| format!("payment {}: cannot sign it: {e}", req.payout_id))?;
        Ok(DeviceProof {
            timestamp,
            nonce: hex::encode(nonce),
            signature: hex::encode(key.sign(&bytes).to_bytes()),
        })
    }

    /// `req` with the customer's context and the device's own signature.
    fn signed(&self, req: PayoutRequest) -> Result<PayoutRequest, String> {
        let proof = self.sign_with(&self.key, &req, now())?;
        Ok(self.with_proof(req, proof, None))
    }

    fn with_proof(
        &self,
        mut req: PayoutRequest,
        proof: DeviceProof,
        totp: Option<String>,
    ) -> PayoutRequest {
        req.client = Some(PaymentClient {
            customer_id: self.customer_id.clone(),
            device_id: Some(self.device_id.clone()),
            ip: None,
            country: None,
            kyc_tier: None,
            device_signature: Some(proof),
            totp,
            password: None,
        });
        req
    }

    /// The authenticator's current code.
    fn code(&self) -> Zeroizing<String> {
        Zeroizing::new(self.totp.generate(now()))
    }

    /// A code the authenticator shows at none of the steps the coordinator
    /// accepts (the current one and its neighbours), so the refusal is
    /// certain, not a one-in-a-million guess.
    fn wrong_code(&self) -> String {
        let t = now();
        let step = self.totp.step;
        let valid: BTreeSet<String> = [t.saturating_sub(step), t, t.saturating_add(step)]
            .iter()
            .map(|at| self.totp.generate(*at))
            .collect();
        let width = self.totp.digits;
        (0u64..)
            .map(|i| format!("{i:0width$}"))
            .find(|c| !valid.contains(c))
            .unwrap_or_default()
    }
}

fn payout(key: &KeyInfo, payout_id: String) -> PayoutRequest {
    PayoutRequest {
        payout_id,
        wallet: key.key_id.clone(),
        chain: CHAIN.into(),
        asset: ASSET.into(),
        to: RECIPIENT.into(),
        amount: AMOUNT.into(),
        reference: Some("devnet risk scenario".into()),
        recent_blockhash: None,
        derivation_path: None,
        client: None,
    }
}

/// The answer to a `POST /v1/payouts` whose refusal the devnet needs to
/// read: the payout, or the API's error body.
enum Answer {
    Payout(Box<PayoutInfo>),
    Refused {
        status: u16,
        code: String,
        reason: Option<String>,
        message: String,
    },
}

/// `POST /v1/payouts` that keeps the error body (the shared [`Api`] client
/// folds it into a message without `error.reason`).
struct RawPayouts {
    url: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
}

impl RawPayouts {
    fn new(officers: &Officers) -> Result<RawPayouts, String> {
        let file = officers
            .target
            .token_file
            .as_deref()
            .ok_or("the devnet's API target has no token file")?;
        let token = std::fs::read_to_string(file)
            .map_err(|e| format!("API token file {}: {e}", file.display()))?;
        Ok(RawPayouts {
            url: format!("{}/v1/payouts", officers.target.url.trim_end_matches('/')),
            token: Zeroizing::new(token.trim().to_string()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))?,
        })
    }

    async fn post(&self, req: &PayoutRequest) -> Result<Answer, String> {
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth(self.token.as_str())
            .json(req)
            .send()
            .await
            .map_err(|e| format!("POST {}: {e} (is the coordinator running?)", self.url))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(|p| Answer::Payout(Box::new(p)))
                .map_err(|e| format!("POST /v1/payouts: unreadable answer: {e}"));
        }
        let err: ApiError = serde_json::from_str(&text)
            .map_err(|e| format!("POST /v1/payouts: HTTP {status}: {text} ({e})"))?;
        Ok(Answer::Refused {
            status: status.as_u16(),
            code: err.error.code,
            reason: err.error.reason,
            message: err.error.message,
        })
    }
}

/// What the scenario has seen so far.
#[derive(Default)]
struct Record {
    summary: RiskSummary,
    /// Payouts still on their way to the chain when they were recorded.
    in_flight: Vec<String>,
    /// Freezes the scenario's decisions added.
    freeze_ids: Vec<String>,
}

impl Record {
    /// Records `p`'s decision; a line describing it.
    fn decision(&mut self, p: &PayoutInfo) -> String {
        let Some(r) = &p.risk else {
            return format!("{} (no risk decision)", p.state);
        };
        self.summary.decisions.push(DecisionSummary {
            request_id: p.request_id.clone(),
            score: r.score,
            action: r.action.clone(),
            reasons: r.reasons.clone(),
        });
        if let Some(f) = &r.freeze_id {
            if !self.freeze_ids.contains(f) {
                self.freeze_ids.push(f.clone());
            }
        }
        if !is_final(&p.state) {
            self.in_flight.push(p.payout_id.clone());
        }
        format!(
            "{}, risk {} (score {}{}{}){}",
            p.state,
            r.action,
            r.score,
            if r.reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reasons.join(", "))
            },
            r.code
                .as_deref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default(),
            r.freeze_id
                .as_deref()
                .map(|f| format!(", freeze {f}"))
                .unwrap_or_default()
        )
    }
}

fn is_final(s: &PayoutState) -> bool {
    matches!(
        s,
        PayoutState::Completed
            | PayoutState::Signed
            | PayoutState::Failed
            | PayoutState::Rejected
            | PayoutState::Expired
            | PayoutState::Cancelled
    )
}

fn is_frozen(p: &PayoutInfo) -> bool {
    p.risk
        .as_ref()
        .is_some_and(|r| r.code.as_deref() == Some("risk_frozen"))
}

/// Waits (up to [`PAYMENT_WAIT`]) until payout `id` ends or waits for
/// people (approvals, a review); its last view.
async fn settle(api: &Api, id: &str) -> Result<PayoutInfo, String> {
    let t0 = Instant::now();
    loop {
        let p: PayoutInfo = api.get(&format!("/v1/payouts/{id}")).await?;
        let waits_for_people = matches!(
            p.state,
            PayoutState::PendingApproval | PayoutState::TimeLocked | PayoutState::Held
        );
        if is_final(&p.state) || waits_for_people || t0.elapsed() > PAYMENT_WAIT {
            return Ok(p);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs the scenario (see the module docs) with the ECDSA hot wallet `key`;
/// `officers` lift the freeze (two keys needed, else the devnet says how).
pub async fn run(
    api: &Api,
    key: &KeyInfo,
    officers: &Officers,
    run_id: &str,
) -> Result<RiskSummary, String> {
    let raw = RawPayouts::new(officers)?;
    let mut rec = Record::default();

    // The customer's phone: a key made here, bound to the customer.
    let customer_id = format!("devnet-{run_id}-customer");
    let device_id = format!("devnet-{run_id}-phone");
    let device_key = SigningKey::from_bytes(&random::<32>());
    let info: CustomerInfo = api
        .post(
            &format!("/v1/customers/{customer_id}/devices"),
            &RegisterDevice {
                device_id: device_id.clone(),
                curve: "ed25519".into(),
                public_key: hex::encode(device_key.verifying_key().to_bytes()),
            },
        )
        .await?;
    let trusted_from = info
        .devices
        .iter()
        .find(|d| d.device_id == device_id)
        .map_or(0, |d| d.trusted_from);
    // The enrolment takes no body; the client sends an empty object.
    let enrolled: TotpEnrolled = api
        .post(&format!("/v1/customers/{customer_id}/totp"), &json!({}))
        .await?;
    let secret = Zeroizing::new(
        totp_rs::Secret::Encoded(enrolled.secret.clone())
            .to_bytes()
            .map_err(|e| format!("the enrolled one-time-code secret: {e}"))?,
    );
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        usize::from(enrolled.digits),
        1,
        enrolled.period,
        secret.to_vec(),
    )
    .map_err(|e| format!("the enrolled one-time-code secret: {e}"))?;
    let device = Device {
        customer_id,
        device_id,
        key: device_key,
        totp,
    };
    println!(
        "[4/5] risk: customer {} with device {} (Ed25519 key {}) and an authenticator ({}-digit codes every {} s)",
        device.customer_id,
        device.device_id,
        hex::encode(device.key.verifying_key().to_bytes()),
        enrolled.digits,
        enrolled.period
    );
    // A device may satisfy a step-up once it is trusted (the devnet's
    // coordinator trusts new devices after 2 s): wait for that, so no
    // decision below depends on the device's age.
    let wait = trusted_from.saturating_sub(now()).saturating_add(1).min(30);
    tokio::time::sleep(Duration::from_secs(wait)).await;

    // One normal payment, signed by the device, followed to the chain.
    let first = payout(key, format!("devnet-{run_id}-risk-1"));
    let p: PayoutInfo = api.post("/v1/payouts", &device.signed(first)?).await?;
    if p.amount_base_units != AMOUNT_WEI.to_string() {
        return Err(format!(
            "payout {}: the coordinator reads {AMOUNT} {ASSET} as {} base units, the device signed {AMOUNT_WEI}",
            p.payout_id, p.amount_base_units
        ));
    }
    let line = rec.decision(&p);
    rec.in_flight.retain(|id| *id != p.payout_id);
    let done = settle(api, &p.payout_id).await?;
    let mut paid = usize::from(done.state == PayoutState::Completed);
    println!(
        "      payment 1: {AMOUNT} {ASSET} on {CHAIN} signed by the device: {line}; {}{}",
        done.state,
        done.tx_hash
            .as_deref()
            .map(|h| format!(" in {h}"))
            .unwrap_or_default()
    );

    // A burst from the same device until the tree freezes it.
    let mut frozen = None;
    for i in 2..=MAX_BURST {
        let req = device.signed(payout(key, format!("devnet-{run_id}-risk-{i}")))?;
        let p: PayoutInfo = api.post("/v1/payouts", &req).await?;
        let line = rec.decision(&p);
        println!("      payment {i} (burst): {line}");
        if is_frozen(&p) {
            frozen = p.risk.and_then(|r| r.freeze_id);
            break;
        }
    }
    let Some(freeze_id) = frozen else {
        return Err(format!(
            "the risk tree froze none of {MAX_BURST} payments from device {} in a burst (is the default tree in force?)",
            device.device_id
        ));
    };

    // Another customer pays from Germany, then from Brazil a moment later:
    // impossible travel, which the default tree holds for an analyst.
    let traveller = format!("devnet-{run_id}-traveller");
    let mut held = None;
    for (i, country) in ["DE", "BR"].iter().enumerate() {
        let mut req = payout(key, format!("devnet-{run_id}-travel-{i}"));
        req.client = Some(PaymentClient {
            customer_id: traveller.clone(),
            device_id: None,
            ip: None,
            country: Some((*country).into()),
            kyc_tier: None,
            device_signature: None,
            totp: None,
            password: None,
        });
        let p: PayoutInfo = api.post("/v1/payouts", &req).await?;
        let line = rec.decision(&p);
        println!("      {traveller} pays from {country}: {line}");
        if p.state == PayoutState::Held {
            held = Some(p.request_id.clone());
        }
    }

    // The review queue (a freeze does not wait there: it waits for a lift).
    let reviews: ReviewList = api.get("/v1/reviews").await?;
    println!(
        "      review queue: {} held payout(s){}",
        reviews.reviews.len(),
        reviews
            .reviews
            .iter()
            .map(|r| format!(
                "\n        {} score {} [{}]",
                r.request_id,
                r.risk.score,
                r.risk.reasons.join(", ")
            ))
            .collect::<String>()
    );

    // An officer rejects the held payout, as `keyfold review reject` does:
    // it is cancelled and never signed. Without an officer's key the
    // devnet, as operator, cancels it: a held payout keeps its nonce, and
    // would hold back every later payout from the wallet.
    match (&held, officers.keys.first()) {
        (Some(request_id), Some(officer)) => {
            let out = crate::review::decide(
                &officers.target,
                request_id,
                officer,
                keyfold_risk::ReviewVerdict::Reject,
                LIFT_VALID_SECS,
            )
            .await?;
            println!("      review: {out}");
        }
        (Some(request_id), None) => {
            let _: serde_json::Value = api
                .post(
                    &format!("/v1/requests/{request_id}/cancel"),
                    &keyfold_proto::api::CancelRequest {
                        reason: Some("devnet: no officer key to review it".into()),
                    },
                )
                .await?;
            println!(
                "      review: no officer key given; the devnet cancelled {request_id} (review it with keyfold review reject {request_id} --key K)"
            );
        }
        (None, _) => {}
    }

    // Two officers lift the freeze, as `keyfold freeze lift` does.
    let mut lifted = false;
    if officers.keys.len() >= 2 {
        let out = crate::review::lift(
            &officers.target,
            &freeze_id,
            &officers.keys[..2],
            None,
            None,
            LIFT_VALID_SECS,
        )
        .await?;
        println!("      {out}");
        lifted = true;
    } else {
        println!(
            "      freeze {freeze_id} holds: lift it with two officer keys: keyfold freeze lift {freeze_id} --key A --key B"
        );
    }

    // The device pays again. Its burst is still inside the ten-minute
    // window, so the tree may freeze it again: that is recorded, not fought.
    if lifted {
        let req = device.signed(payout(key, format!("devnet-{run_id}-risk-after-lift")))?;
        let p: PayoutInfo = api.post("/v1/payouts", &req).await?;
        let line = rec.decision(&p);
        if is_frozen(&p) {
            println!(
                "      after the lift: {line} (the burst is still in the device's 10-minute window)"
            );
        } else {
            println!("      after the lift, the device pays again: {line}");
        }
    }

    // Proofs the coordinator must refuse (last: three refused device
    // signatures freeze the customer's next payment).
    let cases = refusals(&raw, &device, key, run_id).await?;
    for r in &cases {
        if r.case == r.code {
            println!("      {}: refused as expected ({})", r.case, r.detail);
        } else {
            println!(
                "      {}: UNEXPECTED answer {} ({})",
                r.case, r.code, r.detail
            );
        }
    }
    rec.summary.refused = cases;

    // The burst's payments, to the chain before the devnet moves on.
    for id in std::mem::take(&mut rec.in_flight) {
        let p = settle(api, &id).await?;
        if p.state == PayoutState::Completed {
            paid += 1;
        } else {
            println!("      payout {id} is {}", p.state);
        }
    }
    let all: FreezeList = api.get("/v1/freezes?state=all").await?;
    rec.summary.freezes = rec
        .freeze_ids
        .iter()
        .filter_map(|id| all.freezes.iter().find(|f| f.freeze_id == *id))
        .map(freeze_summary)
        .collect();
    println!(
        "      risk: {} decisions, {} paid, {} freeze(s) ({} lifted), {} refusals",
        rec.summary.decisions.len(),
        paid,
        rec.summary.freezes.len(),
        rec.summary
            .freezes
            .iter()
            .filter(|f| !f.lifted_by.is_empty())
            .count(),
        rec.summary.refused.len()
    );
    Ok(rec.summary)
}

fn freeze_summary(f: &FreezeInfo) -> FreezeSummary {
    FreezeSummary {
        freeze_id: f.freeze_id.clone(),
        scope: f.scope.clone(),
        subject: f.subject.clone(),
        reason: f.reason.clone(),
        lifted_by: f.lifted_by.clone(),
    }
}

/// The four refusal cases; each posts a payout the coordinator must
/// refuse, and records the `error.reason` it answered.
async fn refusals(
    raw: &RawPayouts,
    device: &Device,
    key: &KeyInfo,
    run_id: &str,
) -> Result<Vec<RefusalSummary>, String> {
    let mut out = Vec::new();
    let mut record = |case: &str, answer: Answer| {
        let (code, detail) = match answer {
            Answer::Refused {
                status,
                code,
                reason,
                message,
            } => (
                reason.unwrap_or_else(|| code.clone()),
                format!("HTTP {status} {code}: {message}"),
            ),
            Answer::Payout(p) => (
                "accepted".to_string(),
                format!("payout {} was made and is {}", p.payout_id, p.state),
            ),
        };
        out.push(RefusalSummary {
            case: case.into(),
            code,
            detail,
        });
    };

    // A key that is not the registered one.
    let req = payout(key, format!("devnet-{run_id}-risk-wrong-key"));
    let stranger = SigningKey::from_bytes(&random::<32>());
    let proof = device.sign_with(&stranger, &req, now())?;
    record(
        "wrong_device_key",
        raw.post(&device.with_proof(req, proof, None)).await?,
    );

    // Signed an hour ago: outside the coordinator's 300 s window.
    let req = payout(key, format!("devnet-{run_id}-risk-stale"));
    let proof = device.sign_with(&device.key, &req, now().saturating_sub(3600))?;
    record(
        "stale_timestamp",
        raw.post(&device.with_proof(req, proof, None)).await?,
    );

    // A good signature with a wrong code: the signature verifies (its nonce
    // is spent), the code is refused.
    let req = payout(key, format!("devnet-{run_id}-risk-replay"));
    let proof = device.sign_with(&device.key, &req, now())?;
    let wrong = device.with_proof(req.clone(), proof.clone(), Some(device.wrong_code()));
    record("bad_totp", raw.post(&wrong).await?);

    // The same payout and signature again with the right code: the spent
    // nonce makes it a replay.
    let again = device.with_proof(req, proof, Some(device.code().to_string()));
    record("replayed_device_signature", raw.post(&again).await?);
    Ok(out)
}
