//! JSON types of the coordinator's REST API (documented in `docs/api.md`).

use keyfold_mpc::ecdsa::HashAlg;
use serde::{Deserialize, Serialize};

use crate::Curve;

/// `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Idempotency key chosen by the caller (same rules as a request id): a
    /// retry with the same id and body answers the key created the first
    /// time, never a second key. Without it every call creates a new key.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `secp256k1` or `ed25519`.
    pub curve: Curve,
    /// Signers needed to sign (hot keys).
    #[serde(default)]
    pub t: u16,
    /// Signers holding a share (hot keys).
    #[serde(default)]
    pub n: u16,
    /// `hot` (default: a threshold key on the signers) or `cold` (a key
    /// generated inside the coordinator's HSM; `t` and `n` do not apply).
    #[serde(default = "hot")]
    pub tier: keyfold_policy::Tier,
}

fn hot() -> keyfold_policy::Tier {
    keyfold_policy::Tier::Hot
}

/// A key as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id (32 hex digits).
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// Threshold.
    pub t: u16,
    /// Parties.
    pub n: u16,
    /// Group public key, hex (33-byte compressed SEC1, or 32-byte Ed25519).
    pub public_key: String,
    /// BIP32 chain code, hex (secp256k1 keys).
    pub chain_code: Option<String>,
    /// Signer node ids by party index (`["hsm"]` for a cold key).
    pub participants: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// `hot` (threshold) or `cold` (HSM).
    #[serde(default = "hot")]
    pub tier: keyfold_policy::Tier,
}

/// `POST /v1/signatures`: exactly one of `transfer` and `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Idempotency key chosen by the caller: retrying with the same id returns
    /// the first result and never signs twice.
    pub request_id: String,
    /// The key.
    pub key_id: String,
    /// A typed transfer: the policy decides on its fields and the signers
    /// sign its transfer intent (`keyfold_policy::Request::signing_message`).
    #[serde(default)]
    pub transfer: Option<Transfer>,
    /// Raw bytes to sign, hex. Only policy rules with `allow_raw = true`
    /// match raw requests (the devnet default policy has none).
    #[serde(default)]
    pub message: Option<String>,
    /// ECDSA only: `sha256` (default) or `keccak256`.
    #[serde(default)]
    pub hash: Option<HashAlg>,
    /// ECDSA only: non-hardened path such as `m/0/1`.
    #[serde(default)]
    pub derivation_path: Option<String>,
}

/// A typed transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// Asset symbol, e.g. `ETH`.
    pub asset: String,
    /// Amount in the asset's smallest unit, as a decimal string (up to 2^128 - 1).
    pub amount: String,
    /// Destination address.
    pub destination: String,
}

/// What `POST /v1/signatures` answers: the signature (200), or where the
/// request waits (202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOutcome {
    /// Signed.
    Signed(SignResult),
    /// Waiting for approvals or a time lock.
    Pending(Box<RequestStatus>),
}

/// Where a signing request stands in its lifecycle.
///
/// ```text
/// received ──▶ pending_approval ──▶ time_locked ──▶ approved ──▶ signing ──▶ signed ──▶ completed
///    │              │   ▲ held        │                            │          │ (post-signing
///    │              ▼   │             ▼                            ▼          │  steps of modules)
///    └──────▶ rejected, expired, cancelled                       failed ◀─────┘
/// ```
///
/// `completed`, `rejected`, `expired` and `cancelled` are final. `failed` is
/// final too, except that resubmitting the same request (same id, same
/// fields) tries again: no signature was released for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RequestState {
    /// Recorded, not evaluated yet.
    Received,
    /// Waiting for approvals.
    PendingApproval,
    /// Approved (or needing none) but held until a time lock ends.
    TimeLocked,
    /// Held by a module (for example for a manual review).
    Held,
    /// Allowed by the policy and every module; about to be signed.
    Approved,
    /// The signers are signing it.
    Signing,
    /// Signed; post-signing steps of modules are still running.
    Signed,
    /// Signed, and every post-signing step is done (final).
    Completed,
    /// Allowed, but no signature came out (or a post-signing step failed).
    Failed,
    /// Refused by the policy, a module, or an officer's rejection (final).
    Rejected,
    /// Waited longer than the coordinator's limit (final).
    Expired,
    /// Cancelled by its initiator or an officer (final).
    Cancelled,
}

impl RequestState {
    /// Every state, in lifecycle order.
    pub const ALL: [RequestState; 12] = [
        RequestState::Received,
        RequestState::PendingApproval,
        RequestState::TimeLocked,
        RequestState::Held,
        RequestState::Approved,
        RequestState::Signing,
        RequestState::Signed,
        RequestState::Completed,
        RequestState::Failed,
        RequestState::Rejected,
        RequestState::Expired,
        RequestState::Cancelled,
    ];

    /// The name on the wire and in the store (`pending_approval`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::PendingApproval => "pending_approval",
            RequestState::TimeLocked => "time_locked",
            RequestState::Held => "held",
            RequestState::Approved => "approved",
            RequestState::Signing => "signing",
            RequestState::Signed => "signed",
            RequestState::Completed => "completed",
            RequestState::Failed => "failed",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// Parses [`RequestState::as_str`].
    pub fn parse(s: &str) -> Option<RequestState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No transition leaves this state (`failed` may be retried by a
    /// resubmission, so it is not counted here).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RequestState::Completed
                | RequestState::Rejected
                | RequestState::Expired
                | RequestState::Cancelled
        )
    }

    /// Waiting for something outside the coordinator: approvals, a time
    /// lock, or a module's review. Only these can be cancelled.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            RequestState::PendingApproval | RequestState::TimeLocked | RequestState::Held
        )
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state before (`None` for the first record).
    pub from: Option<RequestState>,
    /// The state after.
    pub to: RequestState,
    /// When (Unix milliseconds, the coordinator's clock).
    pub at_ms: i64,
    /// What caused it, for a person (`policy: need_approvals (rule large)`,
    /// `cancelled by payments-backend: duplicate`, ...).
    pub cause: String,
}

/// `POST /v1/requests/{request_id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, for the audit log and the request's history (at most 256
    /// printable characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A request as the policy sees it, with its state. `GET /v1/requests/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStatus {
    /// The request id.
    pub request_id: String,
    /// Where it stands.
    pub state: RequestState,
    /// The typed request. Approvers recompute its hash themselves
    /// (`keyfold_policy::Request::canonical_hash`) before signing an approval.
    pub request: keyfold_policy::Request,
    /// Its canonical hash, hex (for display; never trust it blindly).
    pub request_hash: String,
    /// The message the signers sign for it, hex.
    pub message: String,
    /// The latest policy decision.
    pub decision: Option<DecisionView>,
    /// Approvals and rejections recorded so far.
    pub approvals: Vec<keyfold_policy::Approval>,
    /// The signature, once signed.
    #[serde(default)]
    pub result: Option<SignResult>,
    /// Why signing failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
    /// When a waiting request expires (Unix seconds), if it waits.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Data modules attached to the request (by module name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleData>,
    /// Every transition, oldest first.
    #[serde(default)]
    pub history: Vec<Transition>,
}

/// Typed data a coordinator module attached to a request before the policy
/// evaluated it (for example the chain transaction of a payout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleData {
    /// The module.
    pub module: String,
    /// Its data (the module's own JSON type).
    pub data: serde_json::Value,
}

/// A policy decision as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionView {
    /// What the policy says.
    pub outcome: keyfold_policy::Outcome,
    /// The rule that decided.
    pub rule: Option<keyfold_policy::RuleRef>,
    /// The policy version that decided.
    pub policy_version: u64,
    /// Approvals that were not counted, and why.
    pub refused_approvals: Vec<RefusedApprovalView>,
    /// When the policy decided (Unix seconds). An allowed request counts
    /// against velocity limits from this time on (the audit log records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<u64>,
}

/// An approval that was not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedApprovalView {
    /// Approver key, hex.
    pub approver: String,
    /// Nonce, hex.
    pub nonce: String,
    /// Why.
    pub reason: String,
}

impl From<&keyfold_policy::Decision> for DecisionView {
    fn from(d: &keyfold_policy::Decision) -> Self {
        DecisionView {
            outcome: d.outcome.clone(),
            rule: d.rule.clone(),
            policy_version: d.policy_version,
            refused_approvals: d
                .refused_approvals
                .iter()
                .map(|r| RefusedApprovalView {
                    approver: r.approver.clone(),
                    nonce: r.nonce.clone(),
                    reason: r.error.to_string(),
                })
                .collect(),
            evaluated_at: None,
        }
    }
}

/// `GET /v1/requests`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestList {
    /// Requests, newest first.
    pub requests: Vec<RequestStatus>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/keys`: one page, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// Keys, in creation order.
    pub keys: Vec<KeyInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// Version in force at the coordinator.
    pub version: u64,
    /// The document, TOML.
    pub document: String,
    /// Each rule in plain words.
    pub rules: Vec<String>,
    /// The signed update that brought this version in force (`None` for the
    /// configured genesis document): send it again to push the policy to a
    /// signer that missed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_update: Option<keyfold_policy::SignedPolicy>,
}

/// How a signature was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignMode {
    /// One round from a stored presignature.
    Presignature,
    /// Full interactive signing.
    Full,
    /// Signed inside the HSM (cold tier).
    Hsm,
}

/// A finished signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The caller's request id.
    pub request_id: String,
    /// The key.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The key that verifies the signature (the child key when a path was given), hex.
    pub public_key: String,
    /// The message, hex.
    pub message: String,
    /// ECDSA hash.
    pub hash: Option<HashAlg>,
    /// ECDSA path.
    pub derivation_path: Option<String>,
    /// 64-byte signature, hex (`r || s`, low-S, for ECDSA).
    pub signature: String,
    /// Signer node ids that took part.
    pub signers: Vec<String>,
    /// Presignature or full signing.
    pub mode: SignMode,
}

/// Every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The error.
    pub error: ErrorBody,
}

/// Body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (see `docs/api.md`).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// A finer reason within `code`, when it has several: for
    /// `payment_auth_refused`, which check refused (`wrong_device_key`,
    /// `replayed_device_signature`, `stale_timestamp`, `bad_totp`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Every configured signer.
    pub signers: Vec<SignerHealth>,
    /// Keys known.
    pub keys: usize,
    /// Presignatures ready across all keys (the coordinator's index).
    #[serde(default)]
    pub presignatures: usize,
    /// Policy version the coordinator enforces.
    #[serde(default)]
    pub policy_version: u64,
}

/// One signer as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerHealth {
    /// Node id.
    pub node: String,
    /// Whether it answered a status request just now.
    pub live: bool,
    /// Its error when not live.
    pub error: Option<String>,
    /// Safe-prime pairs ready, when live.
    pub primes_ready: Option<usize>,
    /// Safe-prime pairs being generated, when live.
    #[serde(default)]
    pub primes_generating: Option<usize>,
    /// Policy version the signer enforces, when live.
    #[serde(default)]
    pub policy_version: Option<u64>,
}

/// `POST /v1/payouts`: pay `amount` of `asset` to `to` on `chain` from the
/// hot wallet `wallet` (documented in `docs/payments.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutRequest {
    /// The client's idempotency key (same rules as a request id): a retry
    /// with the same id and body answers the same payout, never a second
    /// transaction.
    pub payout_id: String,
    /// The paying wallet: a hot key id (secp256k1 for EVM chains, Ed25519
    /// for Solana).
    pub wallet: String,
    /// Chain registry id (`base`, `devnet-l1` ...) or EVM chain id (`8453`).
    pub chain: String,
    /// Asset symbol: the chain's native symbol or one of its tokens.
    pub asset: String,
    /// Recipient address (EIP-55 checksummed or all-lowercase `0x…` on EVM
    /// chains, base58 on Solana).
    pub to: String,
    /// Amount in the asset's units as a decimal string (`"0.5"`), at most
    /// the asset's decimals.
    pub amount: String,
    /// The client's own reference (up to 128 characters), shown back.
    #[serde(default)]
    pub reference: Option<String>,
    /// Solana only: the recent blockhash (base58) the transaction is bound
    /// to; Keyfold signs the transfer and returns it for the client to send.
    #[serde(default)]
    pub recent_blockhash: Option<String>,
    /// EVM only: pay from the wallet's non-hardened HD child at this path
    /// (`m/0/7`) instead of its root key (signed with full threshold
    /// signing, never from a presignature).
    #[serde(default)]
    pub derivation_path: Option<String>,
    /// A customer-initiated payout: who asks and from where. The risk
    /// engine judges payouts that carry it (`docs/risk.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<PaymentClient>,
}

/// The end customer behind a payout and where they ask from
/// (`docs/risk.md`, "Client context"). Identifiers are pseudonymised
/// (keyed hashes) before they are stored or logged.
///
/// `device_signature`, `totp` and `password` are the customer's proof for
/// this one payment (`docs/risk.md`, "Payment authentication"): checked by
/// the coordinator, never stored (only which methods passed is kept).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentClient {
    /// The merchant's id for its customer (1..=128 bytes).
    pub customer_id: String,
    /// The customer's device (1..=128 bytes), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The customer's IP address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// ISO 3166-1 alpha-2 country (`DE`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The customer's verification tier: `none` (default), `basic`, `full`.
    /// Ignored for a customer registered with `PUT /v1/customers/{id}/kyc`:
    /// the registered tier counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyc_tier: Option<String>,
    /// The device's signature over the payment (needs `device_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_signature: Option<DeviceProof>,
    /// A one-time code from the customer's enrolled authenticator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// The customer's payment password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

// By hand: the derived form would print the one-time code and the password.
impl std::fmt::Debug for PaymentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentClient")
            .field("customer_id", &self.customer_id)
            .field("device_id", &self.device_id)
            .field("ip", &self.ip)
            .field("country", &self.country)
            .field("kyc_tier", &self.kyc_tier)
            .field("device_signature", &self.device_signature)
            .field("totp", &self.totp.as_ref().map(|_| "<redacted>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A device's signature authorizing one payout: over the canonical bytes
/// of the payout's fields, this timestamp and this nonce (`docs/risk.md`,
/// "Device signatures").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProof {
    /// When the device signed (Unix seconds, the device's clock).
    pub timestamp: u64,
    /// 16..=64 random bytes, hex.
    pub nonce: String,
    /// Ed25519: 64 bytes; P-256: DER or `r ‖ s`; hex.
    pub signature: String,
}

/// `POST /v1/customers/{customer_id}/devices`: binds a device key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// The merchant's id for the device (1..=128 bytes).
    pub device_id: String,
    /// `ed25519` or `p256`.
    pub curve: String,
    /// Ed25519: 32 bytes; P-256: SEC1, compressed or not; hex.
    pub public_key: String,
}

/// `PUT /v1/customers/{customer_id}/kyc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetKycTier {
    /// `none`, `basic` or `full`.
    pub tier: String,
}

/// `PUT /v1/customers/{customer_id}/password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The payment password (1..=256 bytes).
    pub password: String,
}

impl std::fmt::Debug for SetPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetPassword(<redacted>)")
    }
}

/// A customer's authentication set-up (`GET /v1/customers/{customer_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerInfo {
    /// The merchant's id for the customer.
    pub customer_id: String,
    /// `none`, `basic` or `full`.
    pub kyc_tier: String,
    /// Bound devices, revoked ones included.
    pub devices: Vec<CustomerDevice>,
    /// Whether a one-time-code authenticator is enrolled.
    pub totp_enrolled: bool,
    /// Until when one-time codes are locked after repeated wrong ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_locked_until: Option<u64>,
    /// Whether a payment password is set.
    pub password_set: bool,
    /// Until when the password is locked after repeated failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_locked_until: Option<u64>,
}

/// One bound device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerDevice {
    /// The merchant's id for the device.
    pub device_id: String,
    /// `ed25519` or `p256`.
    pub curve: String,
    /// Hex public key.
    pub public_key: String,
    /// Unix seconds.
    pub registered_at: u64,
    /// From when it may authorize payments that need a step-up.
    pub trusted_from: u64,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// `POST /v1/customers/{customer_id}/totp`: the new secret, shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolled {
    /// Base32 secret (RFC 4648, no padding) for the authenticator app.
    pub secret: String,
    /// `otpauth://totp/...` URI (a QR code of it enrols an app).
    pub uri: String,
    /// Digits per code.
    pub digits: u8,
    /// Seconds per code.
    pub period: u64,
}

impl std::fmt::Debug for TotpEnrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpEnrolled")
            .field("digits", &self.digits)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// What the risk engine decided on a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskSummary {
    /// The decision's place in the engine's order (its audit entry).
    pub seq: u64,
    /// 0..=100.
    pub score: u8,
    /// `allow`, `step_up`, `review`, `freeze` or `deny`.
    pub action: String,
    /// The rules that fired, in tree order.
    pub reasons: Vec<String>,
    /// Version of the tree that decided.
    pub tree_version: u64,
    /// Why the payout was refused or held, when it was:
    /// `step_up_required`, `risk_denied`, `risk_frozen` or `risk_review`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The freeze this decision added or ran into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_id: Option<String>,
}

/// A request the risk engine holds for review (`GET /v1/reviews`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInfo {
    /// The held request.
    pub request_id: String,
    /// Its payout, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// The request's state (`held` while it waits).
    pub state: RequestState,
    /// Paying wallet.
    pub wallet: String,
    /// Asset symbol.
    pub asset: String,
    /// Amount in base units (decimal string).
    pub amount_base_units: String,
    /// Destination.
    pub destination: String,
    /// Unix seconds it was held at.
    pub held_at: i64,
    /// Unix seconds it expires at if nobody acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The decision that held it.
    pub risk: RiskSummary,
    /// Officers' reviews so far (escalations included).
    pub reviews: Vec<ReviewEntry>,
}

/// One officer's review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    /// The officer's name.
    pub officer: String,
    /// `approve`, `reject` or `escalate`.
    pub verdict: String,
    /// Unix seconds.
    pub at: i64,
}

/// `GET /v1/reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewList {
    /// Held requests, oldest first.
    pub reviews: Vec<ReviewInfo>,
}

/// A freeze (`GET /v1/freezes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeInfo {
    /// Its id.
    pub freeze_id: String,
    /// `customer`, `device`, `wallet` or `merchant`.
    pub scope: String,
    /// What is frozen: a wallet key id, a merchant id, or the pseudonym of
    /// a customer or device.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// The request whose decision froze it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Who added it (`risk`, or an operator).
    pub added_by: String,
    /// Unix seconds.
    pub added_at: i64,
    /// When it was lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<i64>,
    /// The officers who lifted it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifted_by: Vec<String>,
}

/// `GET /v1/freezes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeList {
    /// Newest first.
    pub freezes: Vec<FreezeInfo>,
}

/// `POST /v1/freezes`: an operator or officer freezes a subject by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFreeze {
    /// `customer`, `device`, `wallet` or `merchant`.
    pub scope: String,
    /// The customer or device id as the merchant knows it (pseudonymised
    /// here), or a wallet key id, or a merchant id.
    pub subject: String,
    /// Why (up to 256 printable characters).
    pub reason: String,
}

/// Where a payout stands.
///
/// ```text
/// pending_approval / time_locked / held ─▶ signing ─▶ broadcast ─▶ confirming ─▶ completed
///            │                                 │           │            │
///            ▼                                 ▼           ▼            ▼
///  rejected, expired, cancelled             failed      failed       failed (reverted)
/// ```
///
/// `signed` is where a payout ends on a chain Keyfold does not broadcast to
/// (Solana): the signed transaction is in `raw_tx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PayoutState {
    /// Waiting for officers' approvals.
    PendingApproval,
    /// Waiting for a time lock.
    TimeLocked,
    /// Held by a module.
    Held,
    /// Being signed (or just signed, not yet sent).
    Signing,
    /// Signed, not broadcast by Keyfold (`raw_tx` holds it).
    Signed,
    /// Sent to the chain's RPC, not yet in a block.
    Broadcast,
    /// Its transaction was stuck and a replacement at the same nonce with
    /// higher fees is being signed or was sent; not yet in a block
    /// (`transactions` lists them).
    Replaced,
    /// In a block, fewer confirmations than required.
    Confirming,
    /// Confirmed to the required depth.
    Completed,
    /// Failed (see `reason`).
    Failed,
    /// Refused by the policy or a module.
    Rejected,
    /// Waited too long for approvals.
    Expired,
    /// Cancelled before signing.
    Cancelled,
}

impl std::fmt::Display for PayoutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// A payout as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutInfo {
    /// The client's id.
    pub payout_id: String,
    /// The signing request that carries it (`GET /v1/requests/{id}`).
    pub request_id: String,
    /// Its state.
    pub state: PayoutState,
    /// Why it failed, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The paying wallet (key id).
    pub wallet: String,
    /// The HD child of the wallet that pays, if not its root key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<String>,
    /// Chain registry id.
    pub chain: String,
    /// EVM chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Asset symbol.
    pub asset: String,
    /// Token contract or mint; absent for the native asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_contract: Option<String>,
    /// Paying address.
    pub from: String,
    /// Recipient address (canonical spelling).
    pub to: String,
    /// Amount in the asset's units (decimal string).
    pub amount: String,
    /// Amount in base units (decimal string).
    pub amount_base_units: String,
    /// Account nonce (EVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// Most the transaction can pay in fees, native base units (decimal string).
    pub fee_cap: String,
    /// Signed transaction (0x hex of the EIP-2718 bytes; base64 for Solana).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_tx: Option<String>,
    /// Transaction hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Block that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    /// Confirmations seen.
    pub confirmations: u64,
    /// Confirmations required.
    pub confirmations_required: u32,
    /// The client's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Every transaction signed for this payout at its nonce: the first,
    /// then each replacement (listed once there is one). At most one of
    /// them is ever mined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<PayoutTransaction>,
    /// The risk engine's decision, for a payout it judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskSummary>,
}

/// One transaction of a payout (the first or a replacement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutTransaction {
    /// The signing request that signed it.
    pub request_id: String,
    /// 0 for the first transaction, then 1, 2 ... for replacements.
    pub attempt: u32,
    /// `max_fee_per_gas`, wei (decimal string).
    pub max_fee_per_gas: String,
    /// `max_priority_fee_per_gas`, wei (decimal string).
    pub max_priority_fee_per_gas: String,
    /// Its hash, once signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Whether it is the one the chain mined.
    pub mined: bool,
}

/// `GET /v1/payouts`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutList {
    /// Payouts, newest first.
    pub payouts: Vec<PayoutInfo>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- merchants

/// `POST /v1/merchants` (operator only): a new merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantRequest {
    /// Its id: 1 to 48 of `a-z 0-9 _ -`, starting with a letter.
    pub merchant_id: String,
    /// Display name (at most 64 bytes).
    pub name: String,
    /// Token-bucket burst of each API key (default 50; 0: unlimited).
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// Requests per second each API key sustains (default 20; 0: unlimited).
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
}

/// A merchant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantInfo {
    /// Its id.
    pub merchant_id: String,
    /// Display name.
    pub name: String,
    /// Token-bucket burst of each API key (0: unlimited).
    pub rate_burst: u32,
    /// Sustained requests per second of each API key (0: unlimited).
    pub rate_per_sec: u32,
    /// How its write requests must be signed: `none`, `hmac` or `ed25519`.
    pub request_signing: String,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Disabled at (Unix seconds): its keys stop working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    /// The key its orders' deposit addresses derive from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_key: Option<String>,
    /// For a sandbox twin (`<merchant>.sandbox`): its live merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_of: Option<String>,
}

/// `GET /v1/merchants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantList {
    /// Merchants, by id.
    pub merchants: Vec<MerchantInfo>,
}

/// `POST /v1/merchants/{id}/settings` (operator only): what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantSettings {
    /// New burst per key.
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// New sustained rate per key.
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
    /// `none`, `hmac` (a new secret is made and returned once) or `ed25519`
    /// (with `ed25519_public_key`).
    #[serde(default)]
    pub request_signing: Option<String>,
    /// The merchant's Ed25519 public key (64 hex digits), for `ed25519`.
    #[serde(default)]
    pub ed25519_public_key: Option<String>,
    /// `true` disables the merchant (its keys stop at once), `false`
    /// enables it again.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// The ECDSA key (32 hex digits) its payment orders' deposit addresses
    /// derive from: the merchant's own or an operator's key.
    #[serde(default)]
    pub collection_key: Option<String>,
}

/// The answer to a settings change.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantSettingsResult {
    /// The merchant now.
    pub merchant: MerchantInfo,
    /// The new HMAC request-signing secret (`kfs_...`), shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
}

/// `POST /v1/merchants/{id}/keys` (operator only): a new API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueMerchantKeyRequest {
    /// Free label (at most 64 bytes).
    #[serde(default)]
    pub label: String,
    /// Scopes, e.g. `["orders:write", "orders:read"]`.
    pub scopes: Vec<String>,
    /// A sandbox key (`kfm_test_...`): it acts for the merchant's sandbox
    /// twin (`<merchant>.sandbox`, made now if needed), on sandbox chains
    /// only, and sees none of the live merchant's objects (default false).
    #[serde(default)]
    pub sandbox: bool,
}

/// `POST /v1/merchants/{id}/keys/{key_id}/rotate` (operator only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateMerchantKeyRequest {
    /// How long the old key keeps working, in seconds (default 86400; 0:
    /// it stops at once).
    #[serde(default)]
    pub overlap_secs: Option<u32>,
}

/// A merchant API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantKeyInfo {
    /// Public id (`mk_...`).
    pub key_id: String,
    /// Its merchant.
    pub merchant_id: String,
    /// The client name its requests are recorded under (policy
    /// `initiator`, audit log).
    pub client: String,
    /// Label.
    pub label: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Issued (Unix seconds).
    pub created_at: i64,
    /// Stops working at (the overlap of a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Revoked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// A sandbox key (`kfm_test_...`, of a sandbox twin).
    #[serde(default)]
    pub sandbox: bool,
}

/// A key just issued: shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedMerchantKey {
    /// Its metadata.
    pub key: MerchantKeyInfo,
    /// The `kfm_...` API key (`kfm_test_...` for a sandbox key): shown
    /// once, stored only as a hash.
    pub api_key: String,
}

/// `GET /v1/merchants/{id}/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantKeyList {
    /// Keys, oldest first.
    pub keys: Vec<MerchantKeyInfo>,
}

// By hand: the derived form would print the API key into logs.
impl std::fmt::Debug for IssuedMerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedMerchantKey")
            .field("key", &self.key)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

// By hand: the derived form would print the HMAC secret into logs.
impl std::fmt::Debug for MerchantSettingsResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerchantSettingsResult")
            .field("merchant", &self.merchant)
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

// ------------------------------------------------------------------- orders

/// `POST /v1/orders`: a payment order (merchant keys with `orders:write`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// The merchant's id for it (idempotent: the same id and body answer
    /// the same order).
    pub order_id: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol: the chain's native symbol or one of its tokens.
    pub asset: String,
    /// Amount due, in the asset's units as a decimal string (`"12.5"`).
    pub amount: String,
    /// Seconds until it expires (60 to 604800; default 3600).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The merchant's own data (a JSON object, at most 4 KiB), shown back
    /// and sent in webhooks.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// A deposit seen for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositInfo {
    /// Transaction hash.
    pub tx_hash: String,
    /// Log index of a token transfer (absent for a native transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// Amount, asset units (decimal).
    pub amount: String,
    /// Amount, base units (decimal).
    pub amount_base_units: String,
    /// Its block.
    pub block_number: u64,
    /// Confirmations now (0 once its block left the chain).
    pub confirmations: u64,
    /// Seen first (the block's time, Unix seconds).
    pub seen_at: i64,
    /// Its block left the chain (a reorg): it no longer counts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// A payment order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    /// The merchant's id for it.
    pub order_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// Chain registry id.
    pub chain: String,
    /// EIP-155 chain id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Asset symbol.
    pub asset: String,
    /// Token contract (absent for the native coin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_contract: Option<String>,
    /// Amount due, asset units.
    pub amount: String,
    /// Amount due, base units.
    pub amount_base_units: String,
    /// The order's own deposit address.
    pub address: String,
    /// EIP-681 (EVM) or Solana Pay URI to show the payer.
    pub payment_uri: String,
    /// `new`, `processing`, `settled`, `expired` or `invalid`.
    pub status: String,
    /// `paid_partial`, `paid_over`, `paid_late`, when they apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_status: Vec<String>,
    /// Confirmed, on time, base units.
    pub confirmed_base_units: String,
    /// Seen, not yet confirmed, base units.
    pub pending_base_units: String,
    /// Paid after expiry, base units.
    pub late_base_units: String,
    /// Confirmations each deposit needs.
    pub confirmations_required: u32,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires (Unix seconds).
    pub expires_at: i64,
    /// Settled (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
    /// Deposits, oldest first.
    pub deposits: Vec<DepositInfo>,
    /// The merchant's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `GET /v1/orders`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderList {
    /// Orders.
    pub orders: Vec<OrderInfo>,
    /// The next page's cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ----------------------------------------------------------------- webhooks

/// `POST /v1/webhooks`: a webhook endpoint (merchant keys with
/// `webhooks:manage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries go (`https://...`; `http://` is accepted too).
    pub url: String,
    /// Event filters: `order.*`, `payout.*`, an exact type, or `*`.
    pub filters: Vec<String>,
    /// `v1` (HMAC-SHA256 with a `whsec_` secret, default) or `v1a`
    /// (Ed25519: the answer holds the `whpk_` public key to verify with).
    #[serde(default)]
    pub signature: Option<String>,
}

/// A webhook endpoint (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpointInfo {
    /// Its id (`we_...`).
    pub endpoint_id: String,
    /// URL.
    pub url: String,
    /// Filters.
    pub filters: Vec<String>,
    /// `v1` or `v1a`.
    pub signature: String,
    /// The Ed25519 public key (`whpk_...`) that verifies `v1a` deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Disabled at (Unix seconds), by the merchant or after failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    /// Why it was disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub failures: i64,
    /// Created (Unix seconds).
    pub created_at: i64,
}

/// A new endpoint, or a rotated secret: the secret is shown once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecret {
    /// The endpoint.
    pub endpoint: WebhookEndpointInfo,
    /// `whsec_...` (for `v1`); absent for `v1a`, whose public key is in
    /// `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

// By hand: the derived form would print the secret into logs.
impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `GET /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpointList {
    /// Endpoints.
    pub endpoints: Vec<WebhookEndpointInfo>,
}

/// `POST /v1/webhooks/{id}/rotate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecret {
    /// Seconds the old secret keeps signing too (default 86400).
    #[serde(default)]
    pub overlap_secs: Option<u32>,
}

/// One event's delivery to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryInfo {
    /// The event's id (the `webhook-id` header).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt (Unix seconds), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The last answer's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i64>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Delivered at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
    /// The event's time.
    pub created_at: i64,
}

/// `GET /v1/webhooks/{id}/deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeliveryList {
    /// Deliveries.
    pub deliveries: Vec<WebhookDeliveryInfo>,
    /// The next page's cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

// ----------------------------------------------------------- reconciliation

/// One line of a reconciliation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationItem {
    /// `order_deposit` (a token deposit), `order_balance` (an order
    /// address's native balance against its recorded deposits), `payout`,
    /// or `outflow` (a transaction from a Keyfold address).
    pub kind: String,
    /// The order id, payout id, or address it is about.
    pub reference: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// The address concerned.
    pub address: String,
    /// The transaction, when one is concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Log index of a token transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
    /// What Keyfold recorded, base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_base_units: Option<String>,
    /// What the chain shows, base units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_chain_base_units: Option<String>,
    /// `matched`, `missing_on_chain`, `not_recorded`, `amount_mismatch`,
    /// `unmatched_outflow` (an alert), or `unchecked` (the chain has no RPC).
    pub status: String,
    /// Why, in words.
    pub reason: String,
}

/// `GET /v1/reconciliation`: one page of one section of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationReport {
    /// The merchant.
    pub merchant_id: String,
    /// Period start (Unix seconds, inclusive): objects created from then.
    pub from: i64,
    /// Period end (exclusive).
    pub to: i64,
    /// `orders`, `payouts` or `outflows`.
    pub section: String,
    /// Lines.
    pub items: Vec<ReconciliationItem>,
    /// Lines of this page that matched.
    pub matched: usize,
    /// Lines of this page that differ.
    pub differences: usize,
    /// Lines that are alerts (`unmatched_outflow`).
    pub alerts: usize,
    /// The next page's cursor (same section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The payout each occurrence of a schedule makes (`POST /v1/schedules`):
/// the fields of a [`PayoutRequest`] that do not change between
/// occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledPayout {
    /// The paying wallet (a hot secp256k1 key id; EVM chains only).
    pub wallet: String,
    /// Chain registry id or EVM chain id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Recipient address.
    pub to: String,
    /// Amount of each occurrence in the asset's units (decimal string).
    pub amount: String,
    /// The client's reference, given to every occurrence's payout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Pay from this non-hardened HD child of the wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<String>,
}

/// `POST /v1/schedules`: a recurring payout (`docs/programmable.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// The client's id (same rules as a payout id, at most 100 bytes):
    /// occurrence `n` is paid by the payout `<schedule_id>.<n>`. A retry
    /// with the same id and body answers the same schedule.
    pub schedule_id: String,
    /// What each occurrence pays.
    pub payout: ScheduledPayout,
    /// When.
    pub timing: keyfold_programmable::schedule::Timing,
}

/// What became of one occurrence of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OccurrenceInfo {
    /// Its number (0 is the first).
    pub occurrence: u64,
    /// When it was due (Unix seconds).
    pub due_at: i64,
    /// `paid` (its payout was made: see the payout's own state),
    /// `skipped` (missed or paused) or `refused` (the payout was refused).
    pub outcome: String,
    /// Its payout (`GET /v1/payouts/{payout_id}`), for `paid` and for a
    /// `refused` one the coordinator recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// Why it was skipped or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was handled (Unix seconds).
    pub at: i64,
}

/// A schedule as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The client's id.
    pub schedule_id: String,
    /// `active`, `paused`, `cancelled` or `finished`.
    pub state: String,
    /// What each occurrence pays.
    pub payout: ScheduledPayout,
    /// When.
    pub timing: keyfold_programmable::schedule::Timing,
    /// The first occurrence not handled yet.
    pub next_occurrence: u64,
    /// When it is due (absent once none is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_at: Option<u64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The latest handled occurrences, newest first (at most 20).
    pub occurrences: Vec<OccurrenceInfo>,
}

/// `GET /v1/schedules`: a page of schedules, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleList {
    /// The schedules.
    pub schedules: Vec<ScheduleInfo>,
    /// The cursor of the next page, if there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/conditional-payouts`: a payout held until its condition holds
/// (`docs/programmable.md`, "Conditional payouts").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConditionalPayout {
    /// The client's id (same rules as a payout id, at most 100 bytes): the
    /// payout it becomes is `<escrow_id>.pay` (or `<escrow_id>.refund`). A
    /// retry with the same id and body answers the same escrow.
    pub escrow_id: String,
    /// What is paid once the condition holds.
    pub payout: ScheduledPayout,
    /// The condition, its expiry and what happens then.
    pub escrow: keyfold_programmable::condition::Escrow,
}

/// A conditional payout as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionalPayoutInfo {
    /// The client's id.
    pub escrow_id: String,
    /// `held`, `released`, `expired` or `cancelled`.
    pub state: String,
    /// What is paid once the condition holds.
    pub payout: ScheduledPayout,
    /// The condition, its expiry and what happens then.
    pub escrow: keyfold_programmable::condition::Escrow,
    /// The API clients that released it so far (an `approvers` condition).
    pub released_by: Vec<String>,
    /// Why it was released, expired or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The payout it became (`GET /v1/payouts/{payout_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}
