//! Typed audit events and log entries, with their JSON form and canonical bytes.
//!
//! The JSON form (one line per entry in the log file) is only a transport: what
//! gets hashed, chained and put in the Merkle tree are the *canonical bytes*
//! produced by [`Entry::canonical_bytes`], documented byte by byte in
//! `docs/audit-log.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::Writer;
use crate::hexser;
use crate::merkle::{self, Hash};

/// Domain tag that starts the canonical bytes of every entry.
pub const ENTRY_TAG: &[u8] = b"keyfold/audit/entry";
/// Version of the canonical entry encoding.
pub const ENTRY_VERSION: u16 = 2;

/// Longest accepted string field, in bytes of UTF-8.
pub const MAX_STRING: usize = 4096;
/// Longest accepted document field (policy document, signed update, typed
/// request, decision detail, risk tree and its signed update, risk input,
/// features and decision, refusal input, freeze lift, signed review), in
/// bytes of UTF-8.
pub const MAX_DOCUMENT: usize = 1024 * 1024;
/// Longest accepted byte field (keys, signatures, hashes), in bytes.
pub const MAX_BYTES: usize = 1024;
/// Most items accepted in a list field (participants, signers, a freeze's `by`).
pub const MAX_LIST: usize = 1024;

/// A byte string that appears in JSON as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct HexBytes(pub Vec<u8>);

impl std::fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HexBytes({})", hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(v: Vec<u8>) -> Self {
        HexBytes(v)
    }
}

impl From<&[u8]> for HexBytes {
    fn from(v: &[u8]) -> Self {
        HexBytes(v.to_vec())
    }
}

impl AsRef<[u8]> for HexBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hexser::serialize_vec(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        hexser::deserialize_vec(d).map(HexBytes)
    }
}

/// Outcome of a policy decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The request may be signed now.
    Allow,
    /// The request needs (more) approvals.
    NeedApprovals,
    /// The request is held by a time lock.
    TimeLock,
    /// The request is refused.
    Deny,
}

impl Outcome {
    /// Code of the outcome in the canonical bytes.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Allow => 1,
            Outcome::NeedApprovals => 2,
            Outcome::TimeLock => 3,
            Outcome::Deny => 4,
        }
    }
}

/// How a signing session produced its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SigningMode {
    /// Full interactive threshold signing.
    Full,
    /// One-round online step from a presignature.
    Presignature,
    /// A cold key signed inside the HSM (no threshold session).
    Hsm,
}

impl SigningMode {
    /// Code of the mode in the canonical bytes.
    pub fn code(self) -> u8 {
        match self {
            SigningMode::Full => 1,
            SigningMode::Presignature => 2,
            SigningMode::Hsm => 3,
        }
    }
}

/// One auditable event. The JSON form carries a `"type"` tag in snake_case.
///
/// Events that an auditor re-checks carry their inputs in full: the policy
/// document, the typed request (JSON of `keyfold_policy::Request`), each
/// approval (JSON of `keyfold_policy::Approval`), the time and policy version
/// of each decision; the risk tree, and each risk decision's request and
/// features (JSON of the `keyfold_risk` types). See [`crate::record`] for
/// building them from the policy and risk types and [`crate::auditor`] for
/// the checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Event {
    /// A key was created (distributed key generation, or in the HSM for cold keys).
    KeyCreated {
        /// Key identifier.
        key_id: String,
        /// Curve name: `secp256k1` or `ed25519`.
        curve: String,
        /// Tier: `hot` (threshold) or `cold` (HSM).
        tier: String,
        /// Threshold: signers needed to sign.
        t: u16,
        /// Number of share holders.
        n: u16,
        /// Identifiers of the share holders.
        participants: Vec<String>,
        /// Group public key (SEC1 compressed for secp256k1, 32 bytes for Ed25519).
        public_key: HexBytes,
        /// BIP32 chain code of an HD-capable secp256k1 key.
        chain_code: Option<HexBytes>,
    },
    /// A policy document came into force.
    PolicyVersion {
        /// Version number (the document's own `version`).
        version: u64,
        /// SHA-256 of `document` (UTF-8 bytes).
        #[serde(with = "hexser::h32")]
        document_hash: Hash,
        /// The policy document (TOML).
        document: String,
        /// For every version after the first: the signed update (JSON of
        /// `keyfold_policy::SignedPolicy`) whose admin signatures let it in.
        update: Option<String>,
    },
    /// A signing request entered the coordinator.
    SignRequest {
        /// Request identifier.
        request_id: String,
        /// Key to sign with.
        key_id: String,
        /// The typed request the policy evaluates (JSON of `keyfold_policy::Request`).
        request: String,
        /// `Request::canonical_hash` of `request` (what approvals sign).
        #[serde(with = "hexser::h32")]
        request_hash: Hash,
        /// SHA-256 of `Request::signing_message` (the bytes the key signs).
        #[serde(with = "hexser::h32")]
        message_hash: Hash,
        /// ECDSA pre-hash (`sha256` or `keccak256`); none for Ed25519.
        hash_alg: Option<String>,
        /// BIP32 derivation path (non-hardened), if any.
        derivation_path: Option<String>,
    },
    /// An approval or rejection was accepted for a request.
    Approval {
        /// Request identifier.
        request_id: String,
        /// The signed approval (JSON of `keyfold_policy::Approval`).
        approval: String,
    },
    /// The policy engine decided on a request.
    Decision {
        /// Request identifier.
        request_id: String,
        /// Policy version that decided.
        policy_version: u64,
        /// Evaluation time (Unix seconds), the `now` of the evaluation.
        evaluated_at: u64,
        /// What the policy decided.
        outcome: Outcome,
        /// Name of the rule that decided, if a rule was reached.
        rule: Option<String>,
        /// The full outcome (JSON of `keyfold_policy::Outcome`: reason, missing
        /// approvals, time-lock end).
        detail: String,
    },
    /// A signing session started with a signer set.
    SigningSession {
        /// Request identifier.
        request_id: String,
        /// Session (execution) identifier.
        session_id: String,
        /// Identifiers of the signers in the session.
        signers: Vec<String>,
        /// How the signature is produced.
        mode: SigningMode,
    },
    /// A signature was produced and verified.
    Signature {
        /// Request identifier.
        request_id: String,
        /// Key that signed.
        key_id: String,
        /// Public key the signature verifies under (after derivation).
        public_key: HexBytes,
        /// The signature (64 bytes: `r || s` low-S for ECDSA, `R || S` for Ed25519).
        signature: HexBytes,
    },
    /// A signing session was aborted.
    Aborted {
        /// Request identifier.
        request_id: String,
        /// Session identifier.
        session_id: String,
        /// Party blamed for the abort, if identified.
        blamed: Option<String>,
        /// Why the session was aborted.
        reason: String,
    },
    /// A request that was allowed ended without a signature; it no longer
    /// counts against velocity limits.
    RequestFailed {
        /// Request identifier.
        request_id: String,
        /// Why.
        reason: String,
    },
    /// A request was closed before it was signed: rejected (by a module
    /// before the policy saw it, or by the policy), expired while it waited,
    /// or cancelled by its initiator or an officer. If it was allowed, it no
    /// longer counts against velocity limits.
    RequestClosed {
        /// Request identifier.
        request_id: String,
        /// `rejected`, `expired` or `cancelled`.
        state: String,
        /// Who closed it (an API client, an officer, a module), if someone did.
        by: Option<String>,
        /// Why.
        reason: String,
    },
    /// An API client token was issued or revoked. The token's name is the
    /// `initiator` of the requests it makes (policy rules match it).
    ClientToken {
        /// The token's number in the coordinator's store.
        token_id: u64,
        /// The client name.
        name: String,
        /// `issued` or `revoked`.
        action: String,
    },
    /// What became of a signed chain transaction (a payout): sent,
    /// sent again after it left the chain, confirmed, or failed. The first
    /// event of a transaction carries its signed bytes.
    ChainTransaction {
        /// Request identifier (the payout's signing request).
        request_id: String,
        /// Chain registry id.
        chain: String,
        /// `broadcast` (a payout's first transaction), `replacement` (a
        /// stuck payout's transaction replaced at the same nonce, signed by
        /// this request), `rebroadcast`, `confirmed` or `failed`.
        action: String,
        /// The transaction hash (0x hex).
        tx_hash: String,
        /// The signed transaction (EIP-2718 bytes), on its first event.
        raw_tx: Option<HexBytes>,
        /// The block that holds it (`confirmed`).
        block_number: Option<u64>,
        /// Confirmations seen (`confirmed`), else 0.
        confirmations: u64,
    },
    /// A signer node contributed to a signature (signer logs only).
    Contribution {
        /// Request identifier.
        request_id: String,
        /// Key that signed.
        key_id: String,
        /// `Request::canonical_hash` of the request the signer checked.
        #[serde(with = "hexser::h32")]
        request_hash: Hash,
        /// SHA-256 of the message the signer signed a share of.
        #[serde(with = "hexser::h32")]
        message_hash: Hash,
        /// Policy version the signer enforced.
        policy_version: u64,
        /// The signer set of the session, as party indices (decimal, from 0)
        /// in the key's participant list.
        signers: Vec<String>,
        /// Presignature or full signing.
        mode: SigningMode,
    },
    /// A risk decision tree came into force (the first one at start, later
    /// ones by a signed update).
    RiskTree {
        /// The tree's own `version`.
        version: u64,
        /// SHA-256 of `document` (UTF-8 bytes).
        #[serde(with = "hexser::h32")]
        document_hash: Hash,
        /// The tree (TOML), bounded by [`MAX_DOCUMENT`].
        document: String,
        /// For every tree after the first: the signed update (JSON of
        /// `keyfold_risk::SignedTree`) whose admin signatures let it in.
        update: Option<String>,
    },
    /// The risk engine decided on a request.
    RiskDecision {
        /// Request identifier.
        request_id: String,
        /// The engine's own order of evaluation: 1, 2, 3 ... with no gap,
        /// across restarts. Entries may be appended slightly out of this
        /// order (the coordinator numbers under its own lock and appends
        /// later); the auditor replays in `seq` order.
        seq: u64,
        /// Version of the tree that decided.
        tree_version: u64,
        /// The request assessed (JSON of `keyfold_risk::RiskRequest`, ids
        /// already pseudonymised by the coordinator).
        input: String,
        /// Its features as computed before the request counted (JSON of
        /// `keyfold_risk::Features`).
        features: String,
        /// Final score, 0..=100.
        score: u64,
        /// `allow`, `step_up`, `review`, `freeze` or `deny`.
        action: String,
        /// The full decision (JSON of `keyfold_risk::Decision`).
        detail: String,
    },
    /// A freeze was added or lifted.
    Freeze {
        /// The freeze's identifier.
        freeze_id: String,
        /// `added` or `lifted`.
        action: String,
        /// `customer`, `device`, `wallet` or `merchant`.
        scope: String,
        /// The frozen customer, device, wallet or merchant (pseudonymised id).
        subject: String,
        /// Why.
        reason: String,
        /// The request whose risk decision froze it, if any.
        request_id: Option<String>,
        /// Who added it (a module or operator name), or the officers who
        /// lifted it.
        by: Vec<String>,
        /// For `lifted`: the signed lift (JSON, the officers' signatures).
        lift: Option<String>,
    },
    /// An officer reviewed a request the risk engine held.
    Review {
        /// Request identifier.
        request_id: String,
        /// The officer.
        officer: String,
        /// `approve`, `reject` or `escalate`.
        verdict: String,
        /// The officer's signed review (JSON).
        signed: String,
    },
    /// A customer payment's device signature was refused; the risk engine
    /// counted it as step `seq` (`keyfold_risk::refusal_step`), in the same
    /// numbering as the `risk_decision` entries.
    RiskRefusal {
        /// The refused request's identifier.
        request_id: String,
        /// The engine's step number, shared with `risk_decision`: 1, 2, 3
        /// ... with no gap over both kinds; appended possibly out of order
        /// like the decisions, replayed in `seq` order.
        seq: u64,
        /// What the engine counted (JSON of `keyfold_risk::RefusalInput`,
        /// ids already pseudonymised by the coordinator).
        input: String,
        /// The refusal's code (`AuthRefusal::code`), the same as `input`'s:
        /// readable without parsing `input`.
        code: String,
    },
    /// A customer's authentication set-up changed (a device registered or
    /// revoked, a one-time code enrolled, a KYC tier or payment password
    /// set). Secrets never appear here.
    CustomerAuth {
        /// The customer (pseudonym, `cu_...`).
        customer: String,
        /// `device_registered`, `device_revoked`, `totp_enrolled`,
        /// `kyc_tier_set` or `password_set`.
        action: String,
        /// The device (pseudonym, `dv_...`), for the device actions.
        device: Option<String>,
        /// What changed, in words or JSON (the new tier, the device's
        /// curve), at most [`MAX_STRING`] bytes; never a secret.
        detail: String,
    },
    /// A conditional payout's life (escrow): created (with its payout and
    /// condition), released by an approver, and how it ended: released
    /// (the condition held, and why), expired (cancelled or refunded) or
    /// cancelled.
    Escrow {
        /// The escrow.
        escrow_id: String,
        /// `created`, `approved`, `released`, `expired` or `cancelled`.
        action: String,
        /// JSON: the escrow (`created`), who released it (`approved`), or
        /// why it ended and the payout it became.
        detail: String,
    },
    /// A scheduled payout's life: created (with its template and timing),
    /// paused, resumed, cancelled or finished, and each occurrence handled
    /// (the payout it became, or why it was skipped or refused).
    Schedule {
        /// The schedule.
        schedule_id: String,
        /// `created`, `paused`, `resumed`, `cancelled`, `finished`, `paid`,
        /// `skipped` or `refused`.
        action: String,
        /// The occurrence, for `paid`, `skipped` and `refused`.
        occurrence: Option<u64>,
        /// JSON: the schedule (`created`), the occurrence's due time,
        /// payout id or reason (occurrences), or who changed the state.
        detail: String,
    },
    /// A policy version was installed in shadow (evaluated next to the
    /// version in force on every request, deciding nothing), removed by an
    /// operator, or ended because a version at least its own came into
    /// force. The shadow's decisions are in the coordinator's store only.
    PolicyShadow {
        /// The shadow document's own `version`.
        version: u64,
        /// SHA-256 of `document` (UTF-8 bytes).
        #[serde(with = "hexser::h32")]
        document_hash: Hash,
        /// The shadow document (TOML), exactly as the admins signed it.
        document: String,
        /// For `installed`: the signed update (JSON of
        /// `keyfold_policy::SignedPolicy`), signed by the admin quorum of
        /// the policy in force; `None` for `removed` and `ended`.
        update: Option<String>,
        /// `installed`, `removed` or `ended`.
        action: String,
    },
}

/// Why an event or entry is outside the accepted bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BoundsError {
    /// A string field is longer than its bound ([`MAX_STRING`] or [`MAX_DOCUMENT`]).
    #[error("field `{0}` is too long")]
    StringTooLong(&'static str),
    /// A byte field is longer than [`MAX_BYTES`].
    #[error("field `{0}` is longer than {MAX_BYTES} bytes")]
    BytesTooLong(&'static str),
    /// A list field has more than [`MAX_LIST`] items.
    #[error("field `{0}` has more than {MAX_LIST} items")]
    ListTooLong(&'static str),
}

fn check_str(name: &'static str, s: &str) -> Result<(), BoundsError> {
    if s.len() > MAX_STRING {
        Err(BoundsError::StringTooLong(name))
    } else {
        Ok(())
    }
}

fn check_doc(name: &'static str, s: &str) -> Result<(), BoundsError> {
    if s.len() > MAX_DOCUMENT {
        Err(BoundsError::StringTooLong(name))
    } else {
        Ok(())
    }
}

fn check_opt(name: &'static str, s: &Option<String>) -> Result<(), BoundsError> {
    s.as_deref().map_or(Ok(()), |s| check_str(name, s))
}

fn check_bytes(name: &'static str, b: &HexBytes) -> Result<(), BoundsError> {
    if b.0.len() > MAX_BYTES {
        Err(BoundsError::BytesTooLong(name))
    } else {
        Ok(())
    }
}

fn check_list(name: &'static str, l: &[String]) -> Result<(), BoundsError> {
    if l.len() > MAX_LIST {
        return Err(BoundsError::ListTooLong(name));
    }
    l.iter().try_for_each(|s| check_str(name, s))
}

impl Event {
    /// Code of the event type in the canonical bytes.
    pub fn type_code(&self) -> u16 {
        match self {
            Event::KeyCreated { .. } => 1,
            Event::PolicyVersion { .. } => 2,
            Event::SignRequest { .. } => 3,
            Event::Approval { .. } => 4,
            Event::Decision { .. } => 5,
            Event::SigningSession { .. } => 6,
            Event::Signature { .. } => 7,
            Event::Aborted { .. } => 8,
            Event::RequestFailed { .. } => 9,
            Event::Contribution { .. } => 10,
            Event::RequestClosed { .. } => 11,
            Event::ClientToken { .. } => 12,
            Event::ChainTransaction { .. } => 13,
            Event::RiskTree { .. } => 14,
            Event::RiskDecision { .. } => 15,
            Event::Freeze { .. } => 16,
            Event::Review { .. } => 17,
            Event::RiskRefusal { .. } => 18,
            Event::CustomerAuth { .. } => 19,
            Event::Schedule { .. } => 20,
            Event::Escrow { .. } => 22,
            Event::PolicyShadow { .. } => 21,
        }
    }

    /// Request id this event belongs to, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Event::KeyCreated { .. }
            | Event::PolicyVersion { .. }
            | Event::ClientToken { .. }
            | Event::RiskTree { .. }
            | Event::CustomerAuth { .. }
            | Event::Schedule { .. }
            | Event::Escrow { .. }
            | Event::PolicyShadow { .. } => None,
            Event::Freeze { request_id, .. } => request_id.as_deref(),
            Event::SignRequest { request_id, .. }
            | Event::Approval { request_id, .. }
            | Event::Decision { request_id, .. }
            | Event::SigningSession { request_id, .. }
            | Event::Signature { request_id, .. }
            | Event::Aborted { request_id, .. }
            | Event::RequestFailed { request_id, .. }
            | Event::RequestClosed { request_id, .. }
            | Event::ChainTransaction { request_id, .. }
            | Event::Contribution { request_id, .. }
            | Event::RiskDecision { request_id, .. }
            | Event::Review { request_id, .. }
            | Event::RiskRefusal { request_id, .. } => Some(request_id),
        }
    }

    /// Checks every field against the size bounds ([`MAX_STRING`],
    /// [`MAX_DOCUMENT`], [`MAX_BYTES`], [`MAX_LIST`]).
    pub fn validate(&self) -> Result<(), BoundsError> {
        match self {
            Event::KeyCreated {
                key_id,
                curve,
                tier,
                participants,
                public_key,
                chain_code,
                ..
            } => {
                check_str("key_id", key_id)?;
                check_str("curve", curve)?;
                check_str("tier", tier)?;
                check_list("participants", participants)?;
                check_bytes("public_key", public_key)?;
                chain_code
                    .as_ref()
                    .map_or(Ok(()), |c| check_bytes("chain_code", c))
            }
            Event::PolicyVersion {
                document, update, ..
            } => {
                check_doc("document", document)?;
                update.as_deref().map_or(Ok(()), |u| check_doc("update", u))
            }
            Event::SignRequest {
                request_id,
                key_id,
                request,
                hash_alg,
                derivation_path,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_str("key_id", key_id)?;
                check_doc("request", request)?;
                check_opt("hash_alg", hash_alg)?;
                check_opt("derivation_path", derivation_path)
            }
            Event::Approval {
                request_id,
                approval,
            } => {
                check_str("request_id", request_id)?;
                check_str("approval", approval)
            }
            Event::Decision {
                request_id,
                rule,
                detail,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_opt("rule", rule)?;
                check_doc("detail", detail)
            }
            Event::SigningSession {
                request_id,
                session_id,
                signers,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_str("session_id", session_id)?;
                check_list("signers", signers)
            }
            Event::Signature {
                request_id,
                key_id,
                public_key,
                signature,
            } => {
                check_str("request_id", request_id)?;
                check_str("key_id", key_id)?;
                check_bytes("public_key", public_key)?;
                check_bytes("signature", signature)
            }
            Event::Aborted {
                request_id,
                session_id,
                blamed,
                reason,
            } => {
                check_str("request_id", request_id)?;
                check_str("session_id", session_id)?;
                check_opt("blamed", blamed)?;
                check_str("reason", reason)
            }
            Event::RequestFailed { request_id, reason } => {
                check_str("request_id", request_id)?;
                check_str("reason", reason)
            }
            Event::RequestClosed {
                request_id,
                state,
                by,
                reason,
            } => {
                check_str("request_id", request_id)?;
                check_str("state", state)?;
                check_opt("by", by)?;
                check_str("reason", reason)
            }
            Event::ClientToken { name, action, .. } => {
                check_str("name", name)?;
                check_str("action", action)
            }
            Event::ChainTransaction {
                request_id,
                chain,
                action,
                tx_hash,
                raw_tx,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_str("chain", chain)?;
                check_str("action", action)?;
                check_str("tx_hash", tx_hash)?;
                match raw_tx {
                    Some(b) if b.0.len() > MAX_BYTES => Err(BoundsError::BytesTooLong("raw_tx")),
                    _ => Ok(()),
                }
            }
            Event::Contribution {
                request_id,
                key_id,
                signers,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_str("key_id", key_id)?;
                check_list("signers", signers)
            }
            Event::RiskTree {
                document, update, ..
            } => {
                check_doc("document", document)?;
                update.as_deref().map_or(Ok(()), |u| check_doc("update", u))
            }
            Event::RiskDecision {
                request_id,
                input,
                features,
                action,
                detail,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_doc("input", input)?;
                check_doc("features", features)?;
                check_str("action", action)?;
                check_doc("detail", detail)
            }
            Event::Freeze {
                freeze_id,
                action,
                scope,
                subject,
                reason,
                request_id,
                by,
                lift,
            } => {
                check_str("freeze_id", freeze_id)?;
                check_str("action", action)?;
                check_str("scope", scope)?;
                check_str("subject", subject)?;
                check_str("reason", reason)?;
                check_opt("request_id", request_id)?;
                check_list("by", by)?;
                // A lift carries several officers' signatures: a document,
                // not a short string.
                lift.as_deref().map_or(Ok(()), |l| check_doc("lift", l))
            }
            Event::Review {
                request_id,
                officer,
                verdict,
                signed,
            } => {
                check_str("request_id", request_id)?;
                check_str("officer", officer)?;
                check_str("verdict", verdict)?;
                check_doc("signed", signed)
            }
            Event::RiskRefusal {
                request_id,
                input,
                code,
                ..
            } => {
                check_str("request_id", request_id)?;
                check_doc("input", input)?;
                check_str("code", code)
            }
            Event::CustomerAuth {
                customer,
                action,
                device,
                detail,
            } => {
                check_str("customer", customer)?;
                check_str("action", action)?;
                check_opt("device", device)?;
                check_str("detail", detail)
            }
            Event::Escrow {
                escrow_id,
                action,
                detail,
            } => {
                check_str("escrow_id", escrow_id)?;
                check_str("action", action)?;
                check_doc("detail", detail)
            }
            Event::Schedule {
                schedule_id,
                action,
                detail,
                ..
            } => {
                check_str("schedule_id", schedule_id)?;
                check_str("action", action)?;
                check_doc("detail", detail)
            }
            Event::PolicyShadow {
                document,
                update,
                action,
                ..
            } => {
                check_doc("document", document)?;
                update
                    .as_deref()
                    .map_or(Ok(()), |u| check_doc("update", u))?;
                check_str("action", action)
            }
        }
    }

    /// Appends the canonical encoding of the event (type code, then fields) to `w`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16(self.type_code());
        match self {
            Event::KeyCreated {
                key_id,
                curve,
                tier,
                t,
                n,
                participants,
                public_key,
                chain_code,
            } => {
                w.str(key_id);
                w.str(curve);
                w.str(tier);
                w.u16(*t);
                w.u16(*n);
                w.list(participants);
                w.bytes(&public_key.0);
                w.opt_bytes(chain_code.as_ref().map(|c| c.0.as_slice()));
            }
            Event::PolicyVersion {
                version,
                document_hash,
                document,
                update,
            } => {
                w.u64(*version);
                w.raw(document_hash);
                w.str(document);
                w.opt_str(update.as_deref());
            }
            Event::SignRequest {
                request_id,
                key_id,
                request,
                request_hash,
                message_hash,
                hash_alg,
                derivation_path,
            } => {
                w.str(request_id);
                w.str(key_id);
                w.str(request);
                w.raw(request_hash);
                w.raw(message_hash);
                w.opt_str(hash_alg.as_deref());
                w.opt_str(derivation_path.as_deref());
            }
            Event::Approval {
                request_id,
                approval,
            } => {
                w.str(request_id);
                w.str(approval);
            }
            Event::Decision {
                request_id,
                policy_version,
                evaluated_at,
                outcome,
                rule,
                detail,
            } => {
                w.str(request_id);
                w.u64(*policy_version);
                w.u64(*evaluated_at);
                w.u8(outcome.code());
                w.opt_str(rule.as_deref());
                w.str(detail);
            }
            Event::SigningSession {
                request_id,
                session_id,
                signers,
                mode,
            } => {
                w.str(request_id);
                w.str(session_id);
                w.list(signers);
                w.u8(mode.code());
            }
            Event::Signature {
                request_id,
                key_id,
                public_key,
                signature,
            } => {
                w.str(request_id);
                w.str(key_id);
                w.bytes(&public_key.0);
                w.bytes(&signature.0);
            }
            Event::Aborted {
                request_id,
                session_id,
                blamed,
                reason,
            } => {
                w.str(request_id);
                w.str(session_id);
                w.opt_str(blamed.as_deref());
                w.str(reason);
            }
            Event::RequestFailed { request_id, reason } => {
                w.str(request_id);
                w.str(reason);
            }
            Event::RequestClosed {
                request_id,
                state,
                by,
                reason,
            } => {
                w.str(request_id);
                w.str(state);
                w.opt_str(by.as_deref());
                w.str(reason);
            }
            Event::ClientToken {
                token_id,
                name,
                action,
            } => {
                w.u64(*token_id);
                w.str(name);
                w.str(action);
            }
            Event::ChainTransaction {
                request_id,
                chain,
                action,
                tx_hash,
                raw_tx,
                block_number,
                confirmations,
            } => {
                w.str(request_id);
                w.str(chain);
                w.str(action);
                w.str(tx_hash);
                w.opt_bytes(raw_tx.as_ref().map(|b| b.0.as_slice()));
                match block_number {
                    None => w.u8(0),
                    Some(n) => {
                        w.u8(1);
                        w.u64(*n);
                    }
                }
                w.u64(*confirmations);
            }
            Event::Contribution {
                request_id,
                key_id,
                request_hash,
                message_hash,
                policy_version,
                signers,
                mode,
            } => {
                w.str(request_id);
                w.str(key_id);
                w.raw(request_hash);
                w.raw(message_hash);
                w.u64(*policy_version);
                w.list(signers);
                w.u8(mode.code());
            }
            Event::RiskTree {
                version,
                document_hash,
                document,
                update,
            } => {
                w.u64(*version);
                w.raw(document_hash);
                w.str(document);
                w.opt_str(update.as_deref());
            }
            Event::RiskDecision {
                request_id,
                seq,
                tree_version,
                input,
                features,
                score,
                action,
                detail,
            } => {
                w.str(request_id);
                w.u64(*seq);
                w.u64(*tree_version);
                w.str(input);
                w.str(features);
                w.u64(*score);
                w.str(action);
                w.str(detail);
            }
            Event::Freeze {
                freeze_id,
                action,
                scope,
                subject,
                reason,
                request_id,
                by,
                lift,
            } => {
                w.str(freeze_id);
                w.str(action);
                w.str(scope);
                w.str(subject);
                w.str(reason);
                w.opt_str(request_id.as_deref());
                w.list(by);
                w.opt_str(lift.as_deref());
            }
            Event::Review {
                request_id,
                officer,
                verdict,
                signed,
            } => {
                w.str(request_id);
                w.str(officer);
                w.str(verdict);
                w.str(signed);
            }
            Event::RiskRefusal {
                request_id,
                seq,
                input,
                code,
            } => {
                w.str(request_id);
                w.u64(*seq);
                w.str(input);
                w.str(code);
            }
            Event::CustomerAuth {
                customer,
                action,
                device,
                detail,
            } => {
                w.str(customer);
                w.str(action);
                w.opt_str(device.as_deref());
                w.str(detail);
            }
            Event::Escrow {
                escrow_id,
                action,
                detail,
            } => {
                w.str(escrow_id);
                w.str(action);
                w.str(detail);
            }
            Event::Schedule {
                schedule_id,
                action,
                occurrence,
                detail,
            } => {
                w.str(schedule_id);
                w.str(action);
                match occurrence {
                    None => w.u8(0),
                    Some(n) => {
                        w.u8(1);
                        w.u64(*n);
                    }
                }
                w.str(detail);
            }
            Event::PolicyShadow {
                version,
                document_hash,
                document,
                update,
                action,
            } => {
                w.u64(*version);
                w.raw(document_hash);
                w.str(document);
                w.opt_str(update.as_deref());
                w.str(action);
            }
        }
    }
}

/// One log entry: position, time, link to the previous entry, and the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, starting at 0.
    pub index: u64,
    /// Time of the entry in Unix milliseconds (supplied by the caller).
    pub time: i64,
    /// Hash ([`Entry::hash`]) of the previous entry; 32 zero bytes for entry 0.
    #[serde(with = "hexser::h32")]
    pub prev_hash: Hash,
    /// The event.
    pub event: Event,
}

impl Entry {
    /// The canonical bytes of the entry (see `docs/audit-log.md`).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.bytes(ENTRY_TAG);
        w.u16(ENTRY_VERSION);
        w.u64(self.index);
        w.i64(self.time);
        w.raw(&self.prev_hash);
        self.event.encode(&mut w);
        w.into_bytes()
    }

    /// Entry hash, the link of the hash chain: SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// Merkle leaf hash: SHA-256(0x00 || canonical bytes).
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.canonical_bytes())
    }

    /// Both the chain hash and the leaf hash, encoding the entry once.
    pub fn hashes(&self) -> (Hash, Hash) {
        let bytes = self.canonical_bytes();
        (Sha256::digest(&bytes).into(), merkle::leaf_hash(&bytes))
    }

    /// The entry's line in the log file: compact JSON followed by `\n`.
    pub fn to_json_line(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
