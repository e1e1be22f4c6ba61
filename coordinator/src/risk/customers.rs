//! Customers' payment authentication at the coordinator: the sealed
//! per-customer record (devices, nonces, one-time-code enrolment, payment
//! password, KYC tier), its API (`/v1/customers/...`), and the check of a
//! payout's proofs before the payout is recorded.
//!
//! * **Storage.** One `keyfold_risk::CustomerAuth` per customer, as JSON
//!   sealed with XChaCha20-Poly1305 under `DATA_DIR/risk-auth.key` and
//!   bound to the customer's pseudonym (a blob moved to another customer
//!   does not open). It holds the one-time-code secret and the password
//!   hash, so it is never written unsealed.
//! * **Order.** Everything that reads and rewrites one customer's record
//!   runs under that customer's lock (one of [`STRIPES`] async mutexes), so
//!   two payouts signed by one device cannot both see a nonce as unused.
//!   Each rewrite is a durable journal step (the audit log cannot restore
//!   the nonce log, so the store is fsynced before the payout goes on).
//! * **Payout proofs.** A device signature is verified over the payout's
//!   own fields (never a copy the client sent), then its timestamp and
//!   nonce; a refused one is a numbered risk step (`risk_refusal` in the
//!   audit log) that feeds the tree's `refusals_at_least`. A one-time code
//!   is accepted once per time step; the password locks after repeated
//!   failures. What passed becomes the request's `auth` methods, the only
//!   thing the risk engine learns of the proofs.

use keyfold_audit::Event;
use keyfold_proto::api::{
    CustomerDevice, CustomerInfo, PaymentClient, RegisterDevice, SetKycTier, SetPassword,
    TotpEnrolled,
};
use keyfold_risk::{
    AuthMethod, AuthRefusal, CustomerAuth, DeviceKey, DevicePayment, KycTier, PasswordState,
    Payment, PaymentPassword, SignedDevicePayment, TotpEnrolment, TotpSecret,
};
use keyfold_store::{Aad, ObjectType, Op, RiskOp, Sealer, SoftwareSealer};
use tokio::sync::{Mutex, MutexGuard};
use zeroize::Zeroizing;

use crate::service::{Caller, ServiceError};
use crate::Coordinator;

/// The key file sealing customers' records.
const KEY_FILE: &str = "risk-auth.key";

/// Customer locks (a customer maps to one by its pseudonym).
pub const STRIPES: usize = 64;

/// The sealed records' keeper.
pub(crate) struct CustomerVault {
    sealer: SoftwareSealer,
    stripes: Vec<Mutex<()>>,
}

impl std::fmt::Debug for CustomerVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerVault(<sealed>)")
    }
}

impl CustomerVault {
    /// Opens the vault's key, creating it (0600) on first start.
    pub(crate) fn open(data_dir: &std::path::Path) -> Result<CustomerVault, String> {
        let path = data_dir.join(KEY_FILE);
        let sealer = if path.exists() {
            SoftwareSealer::from_key_file(&path)
        } else {
            SoftwareSealer::generate_key_file(&path)
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(CustomerVault {
            sealer,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    fn aad(customer: &str) -> Aad {
        Aad::new("coordinator", ObjectType::CustomerAuth, customer, 1)
    }

    /// Waits for `customer`'s lock.
    pub(crate) async fn lock(&self, customer: &str) -> MutexGuard<'_, ()> {
        let h = customer.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        self.stripes[h % STRIPES].lock().await
    }

    fn seal(&self, customer: &str, auth: &CustomerAuth) -> Result<Vec<u8>, ServiceError> {
        let json = Zeroizing::new(serde_json::to_vec(auth).map_err(internal)?);
        self.sealer
            .seal(&Self::aad(customer), &json)
            .map_err(internal)
    }

    fn unseal(&self, customer: &str, blob: &[u8]) -> Result<CustomerAuth, ServiceError> {
        let json = self
            .sealer
            .open(&Self::aad(customer), blob)
            .map_err(|e| internal(format!("customer record {customer}: {e}")))?;
        serde_json::from_slice(&json)
            .map_err(|e| internal(format!("customer record {customer} does not parse: {e}")))
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

fn bad(msg: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(msg.into())
}

/// The API error of a refused proof.
fn refused(r: &AuthRefusal) -> ServiceError {
    ServiceError::AuthRefused {
        reason: r.code(),
        message: r.to_string(),
    }
}

/// An operation on a customer (`/v1/customers/{customer_id}/...`).
#[derive(Debug, Clone)]
pub enum CustomerOp {
    /// `GET /v1/customers/{id}`.
    Get(String),
    /// `POST /v1/customers/{id}/devices`.
    RegisterDevice(String, RegisterDevice),
    /// `POST /v1/customers/{id}/devices/{device_id}/revoke`.
    RevokeDevice(String, String),
    /// `POST /v1/customers/{id}/totp`.
    EnrolTotp(String),
    /// `PUT /v1/customers/{id}/kyc`.
    SetKyc(String, SetKycTier),
    /// `PUT /v1/customers/{id}/password`.
    SetPassword(String, SetPassword),
}

/// What a [`CustomerOp`] answers.
#[derive(Debug, Clone)]
pub enum CustomerAnswer {
    /// The customer's set-up.
    Customer(CustomerInfo),
    /// A new one-time-code secret (shown once).
    Totp(TotpEnrolled),
}

/// What a payout's proofs established.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Authenticated {
    /// The methods that passed.
    pub methods: Vec<AuthMethod>,
    /// The registered tier, for a registered customer.
    pub tier: Option<KycTier>,
    /// A device signature passed, from a device still inside its delay.
    pub device_too_new: bool,
}

fn tier_of(name: &str) -> Result<KycTier, ServiceError> {
    match name {
        "none" => Ok(KycTier::None),
        "basic" => Ok(KycTier::Basic),
        "full" => Ok(KycTier::Full),
        other => Err(bad(format!(
            "tier {other:?} is not one of none, basic, full"
        ))),
    }
}

fn info(auth: &CustomerAuth, now: u64, delay: u64) -> CustomerInfo {
    CustomerInfo {
        customer_id: auth.devices.customer_id.clone(),
        kyc_tier: auth.kyc_tier.name().to_string(),
        devices: auth
            .devices
            .devices
            .iter()
            .map(|d| CustomerDevice {
                device_id: d.id.clone(),
                curve: d.key.curve().name().to_string(),
                public_key: d.key.public_key_hex(),
                registered_at: d.registered_at,
                trusted_from: d.registered_at.saturating_add(delay),
                revoked_at: d.revoked_at,
            })
            .collect(),
        totp_enrolled: auth.totp.is_some(),
        totp_locked_until: auth.totp.as_ref().and_then(|t| t.locked_until(now)),
        password_set: auth.password.is_some(),
        password_locked_until: auth
            .password
            .as_ref()
            .and_then(PasswordState::locked_until)
            .filter(|u| *u > now),
    }
}

impl Coordinator {
    fn merchant_of(caller: &Caller) -> Option<String> {
        caller.tenant().merchant().map(str::to_string)
    }

    /// The customer's pseudonym (the record's key) for this caller.
    fn customer_key(&self, caller: &Caller, customer_id: &str) -> Result<String, ServiceError> {
        crate::risk::context::check_id("customer_id", customer_id)?;
        let risk = self.risk_module()?;
        Ok(risk
            .key()
            .pseudonym("cu", Self::merchant_of(caller).as_deref(), customer_id))
    }

    async fn load_customer(&self, key: &str) -> Result<Option<CustomerAuth>, ServiceError> {
        let risk = self.risk_module()?;
        let k = key.to_string();
        let blob = self.read(move |s| s.customer_auth(&k)).await?;
        blob.map(|b| risk.vault().unseal(key, &b)).transpose()
    }

    /// Seals and stores a record, with its audit event if any, durably.
    async fn store_customer(
        &self,
        key: &str,
        auth: &CustomerAuth,
        event: Option<Event>,
    ) -> Result<(), ServiceError> {
        let risk = self.risk_module()?;
        let sealed = risk.vault().seal(key, auth)?;
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        self.journal
            .submit_durable(
                event.into_iter().collect(),
                vec![Op::Risk(RiskOp::PutCustomerAuth {
                    customer: key.to_string(),
                    sealed,
                    at,
                })],
            )
            .done()
            .await
            .map_err(|e| ServiceError::AuditUnavailable(format!("customer record not saved: {e}")))
    }

    /// The `/v1/customers` operations.
    pub(crate) async fn customer_api(
        &self,
        caller: Caller,
        op: CustomerOp,
    ) -> Result<CustomerAnswer, ServiceError> {
        let risk = self.risk_module()?.clone();
        let cfg = risk.config().clone();
        let id = match &op {
            CustomerOp::Get(id)
            | CustomerOp::RegisterDevice(id, _)
            | CustomerOp::RevokeDevice(id, _)
            | CustomerOp::EnrolTotp(id)
            | CustomerOp::SetKyc(id, _)
            | CustomerOp::SetPassword(id, _) => id.clone(),
        };
        let key = self.customer_key(&caller, &id)?;
        let merchant = Self::merchant_of(&caller);
        let _guard = risk.vault().lock(&key).await;
        let now = self.clock.now_secs();
        let mut auth = match (self.load_customer(&key).await?, &op) {
            (Some(a), _) => a,
            (None, CustomerOp::Get(_)) => {
                return Err(ServiceError::NotFound(format!(
                    "no customer {id:?} is registered"
                )))
            }
            (None, _) => CustomerAuth::new(&id).map_err(|e| bad(format!("customer_id: {e}")))?,
        };
        let event = |action: &str, device: Option<&str>, detail: String| Event::CustomerAuth {
            customer: key.clone(),
            action: action.to_string(),
            device: device.map(|d| risk.key().pseudonym("dv", merchant.as_deref(), d)),
            detail: format!("{detail}; by {}", caller.client()),
        };
        let (ev, answer) = match op {
            CustomerOp::Get(_) => {
                return Ok(CustomerAnswer::Customer(info(
                    &auth,
                    now,
                    cfg.new_device_delay_secs,
                )))
            }
            CustomerOp::RegisterDevice(_, req) => {
                crate::risk::context::check_id("device_id", &req.device_id)?;
                let dk = DeviceKey::parse(&req.curve, &req.public_key)
                    .map_err(|e| bad(format!("public_key: {e}")))?;
                let detail = format!("{} key {}", dk.curve().name(), dk.public_key_hex());
                auth.devices = auth
                    .devices
                    .register(now, &req.device_id, dk, cfg.device_cap)
                    .map_err(|e| match e {
                        keyfold_risk::AuthError::DeviceIdTaken { .. }
                        | keyfold_risk::AuthError::DuplicateKey { .. } => {
                            ServiceError::Conflict(e.to_string())
                        }
                        other => bad(other.to_string()),
                    })?;
                (
                    event("device_registered", Some(&req.device_id), detail),
                    None,
                )
            }
            CustomerOp::RevokeDevice(_, device) => {
                auth.devices = auth
                    .devices
                    .revoke(now, &device)
                    .map_err(|e| ServiceError::NotFound(e.to_string()))?;
                (
                    event("device_revoked", Some(&device), "revoked".into()),
                    None,
                )
            }
            CustomerOp::EnrolTotp(_) => {
                let mut bytes = Zeroizing::new([0u8; keyfold_risk::auth::TOTP_SECRET_BYTES]);
                rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, bytes.as_mut())
                    .map_err(internal)?;
                let secret = TotpSecret::new(*bytes);
                let b32 = secret.to_base32();
                let enrolment = TotpEnrolment::enrol(secret);
                let uri = enrolment
                    .provisioning_uri(&cfg.totp_issuer, &id)
                    .map_err(|e| bad(e.to_string()))?;
                let shown = TotpEnrolled {
                    secret: b32.to_string(),
                    uri: uri.to_string(),
                    digits: enrolment.digits(),
                    period: keyfold_risk::auth::TOTP_STEP_SECS,
                };
                let replaced = auth.totp.is_some();
                auth.totp = Some(enrolment);
                (
                    event(
                        "totp_enrolled",
                        None,
                        if replaced {
                            "replaced the previous authenticator".into()
                        } else {
                            "first authenticator".into()
                        },
                    ),
                    Some(CustomerAnswer::Totp(shown)),
                )
            }
            CustomerOp::SetKyc(_, req) => {
                let tier = tier_of(&req.tier)?;
                let was = auth.kyc_tier;
                auth.kyc_tier = tier;
                (
                    event(
                        "kyc_tier_set",
                        None,
                        format!("tier {} (was {})", tier.name(), was.name()),
                    ),
                    None,
                )
            }
            CustomerOp::SetPassword(_, req) => {
                let pw = PaymentPassword::new(req.password)
                    .map_err(|e| bad(format!("password: {e}")))?;
                let mut salt = [0u8; keyfold_risk::auth::PASSWORD_SALT_BYTES];
                rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut salt)
                    .map_err(internal)?;
                let pcfg = cfg.password.clone();
                // argon2id: tens of milliseconds and megabytes; not on a worker.
                let state =
                    tokio::task::spawn_blocking(move || PasswordState::set(&pw, &salt, &pcfg))
                        .await
                        .map_err(internal)?
                        .map_err(|e| bad(format!("password: {e}")))?;
                let replaced = auth.password.is_some();
                auth.password = Some(state);
                (
                    event(
                        "password_set",
                        None,
                        if replaced { "replaced" } else { "first" }.into(),
                    ),
                    None,
                )
            }
        };
        self.store_customer(&key, &auth, Some(ev)).await?;
        tracing::info!(customer = %key, "customer authentication changed");
        Ok(answer.unwrap_or_else(|| {
            CustomerAnswer::Customer(info(&auth, now, cfg.new_device_delay_secs))
        }))
    }

    /// Checks a payout's proofs (see the module docs). `customer` and
    /// `device` are the pseudonyms of the client context; `payment` the
    /// payout as it will be executed.
    #[allow(clippy::too_many_arguments)] // the payout's parts, named
    pub(crate) async fn authenticate_payment(
        &self,
        raw: &PaymentClient,
        customer: &str,
        device: Option<&str>,
        payment: &Payment,
        payout_id: &str,
        request_id: &str,
    ) -> Result<Authenticated, ServiceError> {
        let risk = self.risk_module()?.clone();
        let _guard = risk.vault().lock(customer).await;
        let now = self.clock.now_secs();
        let Some(mut auth) = self.load_customer(customer).await? else {
            if raw.device_signature.is_some() {
                let r = AuthRefusal::UnknownDevice {
                    customer_id: raw.customer_id.clone(),
                    device_id: raw.device_id.clone().unwrap_or_default(),
                };
                self.count_refusal(request_id, customer, device, &r).await?;
                return Err(refused(&r));
            }
            if raw.totp.is_some() || raw.password.is_some() {
                return Err(bad(format!(
                    "client: customer {:?} has no one-time code or password set up \
                     (POST /v1/customers/{{id}}/totp, PUT /v1/customers/{{id}}/password)",
                    raw.customer_id
                )));
            }
            return Ok(Authenticated::default());
        };
        let mut out = Authenticated {
            tier: Some(auth.kyc_tier),
            ..Authenticated::default()
        };
        let mut changed = false;
        let result = self
            .check_proofs(
                risk.config(),
                raw,
                &mut auth,
                &mut out,
                &mut changed,
                payment,
                payout_id,
                now,
            )
            .await;
        // Whatever the outcome, what was consumed stays consumed: a nonce
        // that passed, a code used, a password failure counted.
        if changed {
            self.store_customer(customer, &auth, None).await?;
        }
        if let Err(r) = &result {
            if r.counts_as_device_refusal() {
                self.count_refusal(request_id, customer, device, r).await?;
            }
            tracing::info!(customer, code = r.code(), "payment authentication refused");
        }
        result.map_err(|r| refused(&r))?;
        Ok(out)
    }

    /// The proofs against the record (which it updates).
    #[allow(clippy::too_many_arguments)]
    async fn check_proofs(
        &self,
        cfg: &crate::risk::config::RiskConfig,
        raw: &PaymentClient,
        auth: &mut CustomerAuth,
        out: &mut Authenticated,
        changed: &mut bool,
        payment: &Payment,
        payout_id: &str,
        now: u64,
    ) -> Result<(), AuthRefusal> {
        if let Some(proof) = &raw.device_signature {
            let device_id = raw.device_id.clone().unwrap_or_default();
            let malformed =
                |field: &'static str, why: String| AuthRefusal::MalformedRequest { field, why };
            let nonce = hex::decode(&proof.nonce)
                .map_err(|e| malformed("device_signature.nonce", format!("is not hex: {e}")))?;
            if proof.signature.len() > 2 * keyfold_risk::auth::MAX_SIGNATURE_BYTES {
                return Err(malformed(
                    "device_signature.signature",
                    "is too long".to_string(),
                ));
            }
            let signature = hex::decode(&proof.signature)
                .map_err(|e| malformed("device_signature.signature", format!("is not hex: {e}")))?;
            let signed = SignedDevicePayment {
                body: DevicePayment {
                    customer_id: raw.customer_id.clone(),
                    device_id: device_id.clone(),
                    payment: payment.clone(),
                    payout_id: payout_id.to_string(),
                    timestamp: proof.timestamp,
                    nonce,
                },
                signature,
            };
            auth.nonces = keyfold_risk::verify_device_signature(
                &auth.devices,
                &auth.nonces,
                &signed,
                now,
                cfg.signature_window_secs,
            )?;
            *changed = true;
            if auth
                .devices
                .may_authorize_large(now, &device_id, cfg.new_device_delay_secs)
                .is_ok()
            {
                out.methods.push(AuthMethod::DeviceSignature);
            } else {
                out.device_too_new = true;
            }
        }
        if let Some(code) = &raw.totp {
            let Some(enrolment) = &auth.totp else {
                return Err(AuthRefusal::BadTotp);
            };
            // Wrong codes lock on the password's settings.
            let check = enrolment.check_counting(
                code,
                now,
                cfg.password.max_failures,
                cfg.password.lockout_secs,
            );
            auth.totp = Some(check.state);
            *changed = true;
            check.result?;
            out.methods.push(AuthMethod::Totp);
        }
        if let Some(pw) = &raw.password {
            let Some(state) = auth.password.clone() else {
                return Err(AuthRefusal::BadPassword { remaining: 0 });
            };
            let pw =
                PaymentPassword::new(pw.clone()).map_err(|e| AuthRefusal::MalformedRequest {
                    field: "password",
                    why: e.to_string(),
                })?;
            let pcfg = cfg.password.clone();
            // argon2id: tens of milliseconds and megabytes; not on a worker.
            let check = tokio::task::spawn_blocking(move || state.check(&pw, now, &pcfg))
                .await
                .map_err(|e| AuthRefusal::MalformedRequest {
                    field: "password",
                    why: format!("could not be checked ({e}); retry"),
                })?;
            auth.password = Some(check.state);
            *changed = true;
            check.result?;
            out.methods.push(AuthMethod::Password);
        }
        Ok(())
    }

    /// Keeps a payout's raw IP for investigators, for
    /// `[risk] raw_context_retention_days` (none when that is 0). The
    /// store, the audit log and the engine otherwise hold only its block.
    pub(crate) async fn keep_raw_context(
        &self,
        request_id: &str,
        ip: Option<&str>,
    ) -> Result<(), ServiceError> {
        let risk = self.risk_module()?;
        let (Some(ip), true) = (ip, risk.config().raw_context_retention_days > 0) else {
            return Ok(());
        };
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        self.journal
            .write(
                Vec::new(),
                vec![Op::Risk(RiskOp::InsertRawContext {
                    request_id: request_id.to_string(),
                    at,
                    ip: Some(ip.to_string()),
                })],
            )
            .await
            .map_err(|e| ServiceError::AuditUnavailable(format!("client context not saved: {e}")))
    }

    /// Deletes raw client context older than the retention period; the
    /// number of rows deleted.
    pub(crate) async fn purge_raw_context(&self) -> Result<usize, ServiceError> {
        let risk = self.risk_module()?;
        let days = risk.config().raw_context_retention_days;
        let now = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let before =
            now.saturating_sub(i64::try_from(days.saturating_mul(86_400)).unwrap_or(i64::MAX));
        self.read(move |s| s.purge_raw_context(before)).await
    }

    /// Records a refused device signature as the engine's next step.
    async fn count_refusal(
        &self,
        request_id: &str,
        customer: &str,
        device: Option<&str>,
        r: &AuthRefusal,
    ) -> Result<(), ServiceError> {
        let risk = self.risk_module()?;
        risk.refusal(request_id, Some(customer), device, r.code())
            .await
            .map(|_| ())
            .map_err(|e| ServiceError::AuditUnavailable(format!("refusal not recorded: {e}")))
    }
}
