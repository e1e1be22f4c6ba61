//! The auditor's checks of what the entries say, beyond the log's own
//! integrity: replayed entry by entry, with nothing but the log itself.
//!
//! [`Auditor`] is an [`EventCheck`]: given to [`crate::verify_with`], it keeps
//! the state the log describes (policies in force, keys, requests, approvals,
//! the signed history) and refuses an entry when
//! * a policy version is not the document it names, or an update lacks the
//!   admin quorum of the policy before it;
//! * a request's recorded hashes are not those of its typed request;
//! * an approval's Ed25519 signature does not verify, it approves another
//!   request, or its nonce was used for another request;
//! * a decision differs from a fresh evaluation of the recorded policy,
//!   request, approvals and history at the recorded time;
//! * a signing session or signature comes without an allowing decision, uses
//!   signers outside the key's participants or fewer than its threshold;
//! * a signature does not verify under the wallet key (with `k256` or
//!   `ed25519-dalek`; child keys re-derived with the `bip32` crate) over the
//!   message the request implies;
//! * a risk tree is not the document it names, or a later tree lacks the
//!   admin quorum of the policy in force;
//! * a risk decision, replayed in the engine's `seq` order, differs from
//!   what `keyfold_risk` computes from the tree and the steps before it
//!   (decisions and refused device signatures, one numbering), or a `seq`
//!   is missing or repeated;
//! * a risk refusal does not parse, names a code that is not a refused
//!   device signature, or a `code` other than its input's;
//! * a freeze, review or customer-auth change is malformed, or a lift lacks
//!   two officers or names no freeze in force;
//! * a policy version installed in shadow lacks the admin quorum of the
//!   policy in force or is not above it, or a shadow is removed or ended
//!   while it is not the one installed.
//!
//! The risk checks' findings are typed ([`RiskFinding`], reported as
//! [`EntryError::Risk`]); the others are text ([`EntryError::Rejected`]).

mod chain;
mod escrow;
mod risk;
mod schedule;
mod shadow;

pub use risk::{
    DecisionProblem, RefusalProblem, RiskFinding, MAX_RISK_REORDER, MAX_RISK_REORDER_BYTES,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keyfold_policy::{
    evaluate, Approval, EvalContext, HistoryEntry, Policy, Request, SignedPolicy, Spending,
};
use sha2::{Digest, Sha256};

use crate::event::{Entry, Event, SigningMode};
use crate::record::decision_event;
use crate::verify::{EntryError, EventCheck, VerifyError};

/// Counts of what an [`Auditor`] checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Policy versions checked (document hash, version, admin quorum).
    pub policies: u64,
    /// Keys created.
    pub keys: u64,
    /// Requests recorded.
    pub requests: u64,
    /// Approval signatures verified.
    pub approvals: u64,
    /// Decisions re-evaluated and matched.
    pub decisions: u64,
    /// Decisions that refused the request.
    pub denied: u64,
    /// Signatures verified under their wallet keys.
    pub signatures: u64,
    /// Aborted sessions.
    pub aborted: u64,
    /// Signer contributions (signer logs).
    pub contributions: u64,
    /// Risk trees checked (document hash, version, admin quorum).
    pub risk_trees: u64,
    /// Risk decisions recomputed with the risk engine and matched.
    pub risk_decisions: u64,
    /// Freezes added or lifted.
    pub freezes: u64,
    /// Officer reviews of held requests.
    pub reviews: u64,
    /// Refused device signatures counted by the replayed risk engine.
    pub risk_refusals: u64,
    /// Changes to customers' authentication set-up (devices, one-time
    /// codes, KYC tiers, payment passwords).
    pub customer_auth_changes: u64,
    /// Schedule events checked against their recomputed timing.
    pub schedule_events: u64,
    /// Conditional payout events checked against their condition.
    pub escrow_events: u64,
    /// Policy shadow events checked (installs verified like policy
    /// updates, removals and ends of the installed shadow).
    pub policy_shadows: u64,
}

#[derive(Debug, Clone)]
struct KeyInfo {
    curve: String,
    tier: String,
    t: u16,
    participants: Vec<String>,
    public_key: Vec<u8>,
    chain_code: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
struct RequestState {
    key_id: String,
    request: Request,
    hash_alg: Option<String>,
    path: Option<Vec<u32>>,
    approvals: Vec<Approval>,
    /// The last decision allowed it (and it has not failed since).
    allowed: bool,
    signed: bool,
    /// Its sessions: (session id, aborted).
    sessions: Vec<(String, bool)>,
}

/// Allowed (and not failed) requests, as the policy's history: the raw entry
/// of each, and the aggregates the policy in force reads.
#[derive(Debug, Default)]
struct Spent {
    /// Request id -> its entry (counted from its latest allowing decision).
    entries: HashMap<String, HistoryEntry>,
    /// The entries as aggregates for the policy in force (`None` before the
    /// first policy). Rebuilt from `entries` when a new policy version has
    /// other velocity limits or vesting rules: O(entries) once per version.
    aggregates: Option<Spending>,
}

impl Spent {
    /// Makes the aggregates answer for `policy`, rebuilding them from every
    /// entry if they were built for another shape of policy.
    fn adopt(&mut self, policy: &Policy, now: u64) {
        if self.aggregates.as_ref().is_some_and(|a| a.fits(policy)) {
            return;
        }
        let mut a = Spending::from_entries(policy, self.entries.values().cloned());
        // Decisions never go back: nothing before the last one is needed.
        a.prune(now);
        self.aggregates = Some(a);
    }

    /// Counts `entry` for request `id` (replacing its earlier entry).
    fn insert(&mut self, id: &str, entry: HistoryEntry) -> Check {
        self.remove(id)?;
        if let Some(a) = &mut self.aggregates {
            a.add(&entry);
        }
        self.entries.insert(id.to_string(), entry);
        Ok(())
    }

    /// Stops counting request `id`.
    fn remove(&mut self, id: &str) -> Check {
        if let Some(e) = self.entries.remove(id) {
            if let Some(a) = &mut self.aggregates {
                a.remove(&e)
                    .map_err(|e| format!("internal: spending aggregates: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Replays what a log says and checks it (see the module docs).
#[derive(Debug, Default)]
pub struct Auditor {
    policies: BTreeMap<u64, Policy>,
    current: Option<u64>,
    keys: HashMap<String, KeyInfo>,
    requests: HashMap<String, RequestState>,
    /// Request id -> the hash of its signed chain transaction.
    chain_txs: HashMap<String, String>,
    /// (chain id, sender, nonce) -> the request whose transaction was last
    /// sent at that nonce, and that transaction: a replacement must pay
    /// the same thing at the same nonce for more fees.
    nonce_txs:
        HashMap<(u64, keyfold_chain::evm::Address, u64), (String, keyfold_chain::evm::Transfer)>,
    /// Approval nonce -> the request it was recorded for.
    nonces: HashMap<[u8; 16], String>,
    spent: Spent,
    /// Time of the previous entry (ms): entry times never go back.
    last_entry: Option<i64>,
    /// Evaluation time of the previous decision: decisions never go back.
    last_decision: u64,
    /// The risk engine's trees, state and freezes, as the log describes them.
    risk: risk::RiskReplay,
    /// Scheduled payouts, as the log describes them.
    schedules: schedule::Schedules,
    /// Conditional payouts, as the log describes them.
    escrows: escrow::Escrows,
    /// The policy version installed in shadow, as the log describes it.
    shadow: shadow::InstalledShadow,
    stats: AuditStats,
}

type Check = Result<(), String>;

/// Longest accepted delay, in seconds, between a request's time (or a
/// decision's evaluation time) and the entry that records it: the same
/// bound the signers apply to a request's claimed time.
pub const MAX_RECORD_DELAY_SECS: u64 = 300;

/// Checks that `at` (Unix seconds) is not after the entry's time and at most
/// [`MAX_RECORD_DELAY_SECS`] before it.
fn recorded_in_time(what: &str, at: u64, entry_secs: u64) -> Check {
    if at > entry_secs {
        return Err(format!(
            "{what} {at} is after the entry's own time {entry_secs}"
        ));
    }
    if entry_secs - at > MAX_RECORD_DELAY_SECS {
        return Err(format!(
            "{what} {at} is {} s before the entry's own time {entry_secs} (at most {MAX_RECORD_DELAY_SECS} s)",
            entry_secs - at
        ));
    }
    Ok(())
}

/// A canonical decimal number: digits only, no leading zero (but `0`).
fn canonical_decimal(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_path(path: &str) -> Result<Vec<u32>, String> {
    let mut parts = path.split('/');
    if parts.next() != Some("m") {
        return Err(format!("derivation path `{path}` does not start with `m`"));
    }
    parts
        .map(|p| match canonical_decimal(p) {
            Some(i) if i < 1 << 31 => Ok(i as u32),
            _ => Err(format!(
                "derivation path `{path}`: `{p}` is not a non-hardened index in canonical decimal"
            )),
        })
        .collect()
}

/// The party names of a signer set recorded as canonical decimal indices.
fn party_names(key: &KeyInfo, signers: &[String]) -> Result<Vec<String>, String> {
    signers
        .iter()
        .map(|i| {
            canonical_decimal(i)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| key.participants.get(i).cloned())
                .ok_or_else(|| {
                    format!("signer set {signers:?} names parties the key does not have")
                })
        })
        .collect()
}

/// A decision's detail with the free-text `reason` left out: the auditor
/// compares what was decided, not the engine's wording.
fn structural(detail: &str) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(detail).ok()?;
    if let Some(o) = v.as_object_mut() {
        o.remove("reason");
    }
    Some(v)
}

fn ecdsa_digest(hash_alg: Option<&str>, message: &[u8]) -> Result<[u8; 32], String> {
    match hash_alg {
        Some("sha256") => Ok(Sha256::digest(message).into()),
        Some("keccak256") => Ok(sha3::Keccak256::digest(message).into()),
        other => Err(format!("unknown ECDSA hash {other:?}")),
    }
}

/// The secp256k1 child key at `path` below `(root, chain_code)`, SEC1 compressed.
fn derive_child(root: &[u8], chain_code: [u8; 32], path: &[u32]) -> Result<Vec<u8>, String> {
    use bip32::{ChildNumber, ExtendedKeyAttrs, XPub};
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(root)
        .map_err(|_| "wallet key is not a secp256k1 point".to_string())?;
    let mut xpub = XPub::new(
        vk,
        ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: ChildNumber(0),
            chain_code,
        },
    );
    for &i in path {
        let child = ChildNumber::new(i, false).map_err(|e| format!("path index {i}: {e}"))?;
        xpub = xpub
            .derive_child(child)
            .map_err(|e| format!("deriving child {i}: {e}"))?;
    }
    Ok(xpub.public_key().to_encoded_point(true).as_bytes().to_vec())
}

fn verify_signature(
    curve: &str,
    public_key: &[u8],
    message: &[u8],
    hash_alg: Option<&str>,
    signature: &[u8],
) -> Check {
    match curve {
        "secp256k1" => {
            use k256::ecdsa::signature::hazmat::PrehashVerifier;
            let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                .map_err(|_| "public key is not a secp256k1 point".to_string())?;
            let sig = k256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| "signature is not 64 bytes of r || s".to_string())?;
            if sig.normalize_s().is_some() {
                return Err("ECDSA signature is not low-S".into());
            }
            let digest = ecdsa_digest(hash_alg, message)?;
            vk.verify_prehash(&digest, &sig)
                .map_err(|_| "ECDSA signature does not verify under the wallet key".into())
        }
        "ed25519" => {
            let pk: [u8; 32] = public_key
                .try_into()
                .map_err(|_| "Ed25519 public key is not 32 bytes".to_string())?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk)
                .map_err(|_| "public key is not an Ed25519 point".to_string())?;
            let sig: [u8; 64] = signature
                .try_into()
                .map_err(|_| "Ed25519 signature is not 64 bytes".to_string())?;
            vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| "Ed25519 signature does not verify under the wallet key".into())
        }
        other => Err(format!("unknown curve `{other}`")),
    }
}

impl Auditor {
    /// A fresh auditor (nothing in force, no keys).
    pub fn new() -> Self {
        Self::default()
    }

    /// What was checked so far.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    fn policy(&self) -> Result<&Policy, String> {
        self.current
            .and_then(|v| self.policies.get(&v))
            .ok_or_else(|| "no policy version is in force yet".to_string())
    }

    fn request(&self, id: &str) -> Result<&RequestState, String> {
        self.requests
            .get(id)
            .ok_or_else(|| format!("request {id} was never recorded"))
    }

    fn policy_version(
        &mut self,
        version: u64,
        document_hash: &[u8; 32],
        document: &str,
        update: Option<&str>,
    ) -> Check {
        let hash: [u8; 32] = Sha256::digest(document.as_bytes()).into();
        if &hash != document_hash {
            return Err("document_hash is not the SHA-256 of the document".into());
        }
        let policy = match (self.current, update) {
            (None, None) => Policy::from_toml(document)
                .map_err(|e| format!("genesis policy does not parse: {e}"))?,
            (None, Some(_)) => return Err("the first policy version carries an update".into()),
            (Some(v), None) => {
                return Err(format!(
                    "policy version {version} replaces version {v} without a signed update"
                ))
            }
            (Some(_), Some(u)) => {
                let signed: SignedPolicy = serde_json::from_str(u)
                    .map_err(|e| format!("update is not a signed policy: {e}"))?;
                if signed.document_toml != document {
                    return Err("the signed update is not the recorded document".into());
                }
                signed
                    .verify(self.policy()?)
                    .map_err(|e| format!("policy update not allowed: {e}"))?
            }
        };
        if policy.version() != version {
            return Err(format!(
                "event says version {version}, the document is version {}",
                policy.version()
            ));
        }
        self.spent.adopt(&policy, self.last_decision);
        self.policies.insert(version, policy);
        self.current = Some(version);
        self.stats.policies += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn key_created(
        &mut self,
        key_id: &str,
        curve: &str,
        tier: &str,
        t: u16,
        n: u16,
        participants: &[String],
        public_key: &[u8],
        chain_code: Option<&[u8]>,
    ) -> Check {
        if self.keys.contains_key(key_id) {
            return Err(format!("key {key_id} was created before"));
        }
        match curve {
            "secp256k1" => {
                if public_key.len() != 33 {
                    return Err("secp256k1 public key is not 33 bytes (SEC1 compressed)".into());
                }
                k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| "public key is not a secp256k1 point")?;
            }
            "ed25519" => {
                let pk: [u8; 32] = public_key
                    .try_into()
                    .map_err(|_| "Ed25519 public key is not 32 bytes")?;
                ed25519_dalek::VerifyingKey::from_bytes(&pk)
                    .map_err(|_| "public key is not an Ed25519 point")?;
                if chain_code.is_some() {
                    return Err("an Ed25519 key has no BIP32 chain code".into());
                }
            }
            other => return Err(format!("unknown curve `{other}`")),
        }
        if !matches!(tier, "hot" | "cold") {
            return Err(format!("unknown tier `{tier}`"));
        }
        let distinct: BTreeSet<&String> = participants.iter().collect();
        if t == 0
            || t > n
            || usize::from(n) != participants.len()
            || distinct.len() != usize::from(n)
        {
            return Err(format!(
                "threshold {t} of {n} does not fit {} distinct participants",
                distinct.len()
            ));
        }
        let chain_code = chain_code
            .map(|c| <[u8; 32]>::try_from(c).map_err(|_| "chain code is not 32 bytes"))
            .transpose()?;
        self.keys.insert(
            key_id.to_string(),
            KeyInfo {
                curve: curve.into(),
                tier: tier.into(),
                t,
                participants: participants.to_vec(),
                public_key: public_key.to_vec(),
                chain_code,
            },
        );
        self.stats.keys += 1;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_request(
        &mut self,
        entry_secs: u64,
        request_id: &str,
        key_id: &str,
        request: &str,
        request_hash: &[u8; 32],
        message_hash: &[u8; 32],
        hash_alg: Option<&str>,
        derivation_path: Option<&str>,
    ) -> Check {
        if self.requests.contains_key(request_id) {
            return Err(format!("request id {request_id} was recorded before"));
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| format!("key {key_id} was never created"))?;
        let req: Request =
            serde_json::from_str(request).map_err(|e| format!("request does not parse: {e}"))?;
        // Time matchers and time locks run from the request's time: it must
        // be when the request arrived, not a backdated one.
        recorded_in_time("request time", req.time, entry_secs)?;
        if req.id != request_id {
            return Err(format!("the typed request has id {}", req.id));
        }
        if &req.canonical_hash() != request_hash {
            return Err("request_hash is not the canonical hash of the request".into());
        }
        let message: [u8; 32] = Sha256::digest(req.signing_message()).into();
        if &message != message_hash {
            return Err("message_hash is not the hash of the request's signing message".into());
        }
        if let keyfold_policy::Payload::ChainTransaction {
            chain,
            chain_id,
            token_contract,
            fee_cap,
            tx,
            ..
        } = &req.payload
        {
            // What was signed must pay what the policy decided on, checked
            // here from the bytes, as every signer did.
            keyfold_chain::check::check_transaction(
                &keyfold_chain::check::Expected {
                    chain_id: *chain_id,
                    token_contract: token_contract.as_deref(),
                    destination: &req.destination,
                    amount: req.amount,
                    fee_cap: *fee_cap,
                },
                tx,
            )
            .map_err(|m| format!("the {chain} transaction does not match the request: {m}"))?;
            let want = chain_id.map(|_| "keccak256");
            if hash_alg != want {
                return Err(format!(
                    "a {chain} transaction must be hashed with {}, the log says {}",
                    want.unwrap_or("nothing (Ed25519)"),
                    hash_alg.unwrap_or("nothing")
                ));
            }
        }
        let path = derivation_path.map(parse_path).transpose()?;
        let wallet = match derivation_path {
            Some(p) => format!("{key_id}/{p}"),
            None => key_id.to_string(),
        };
        if req.wallet != wallet {
            return Err(format!(
                "the request names wallet {}, the key and path give {wallet}",
                req.wallet
            ));
        }
        let tier = match req.tier {
            keyfold_policy::Tier::Hot => "hot",
            keyfold_policy::Tier::Cold => "cold",
        };
        if tier != key.tier {
            return Err(format!(
                "the request claims tier {tier}, key {key_id} is {}",
                key.tier
            ));
        }
        match (key.curve.as_str(), hash_alg) {
            ("secp256k1", Some(h)) => {
                ecdsa_digest(Some(h), b"")?;
            }
            ("ed25519", None) => {}
            (c, h) => return Err(format!("hash {h:?} does not fit a {c} key")),
        }
        if path.is_some() && key.chain_code.is_none() {
            return Err(format!(
                "key {key_id} has no chain code for a derivation path"
            ));
        }
        self.requests.insert(
            request_id.to_string(),
            RequestState {
                key_id: key_id.to_string(),
                request: req,
                hash_alg: hash_alg.map(str::to_string),
                path,
                approvals: Vec::new(),
                allowed: false,
                signed: false,
                sessions: Vec::new(),
            },
        );
        self.stats.requests += 1;
        Ok(())
    }

    fn approval(&mut self, request_id: &str, approval: &str) -> Check {
        let a: Approval =
            serde_json::from_str(approval).map_err(|e| format!("approval does not parse: {e}"))?;
        let req = self.request(request_id)?;
        if a.request_hash != req.request.canonical_hash() {
            return Err(format!(
                "the approval signs another request than {request_id}"
            ));
        }
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&a.approver)
            .map_err(|_| "approver key is not an Ed25519 point")?;
        vk.verify_strict(
            &a.signed_bytes(),
            &ed25519_dalek::Signature::from_bytes(&a.signature),
        )
        .map_err(|_| {
            format!(
                "approval signature by {} does not verify",
                hex::encode(a.approver)
            )
        })?;
        match self.nonces.get(&a.nonce) {
            Some(owner) if owner != request_id => {
                return Err(format!(
                    "approval nonce {} was used for request {owner}",
                    hex::encode(a.nonce)
                ))
            }
            Some(_) => return Err("the same approval was recorded twice".into()),
            None => {}
        }
        self.nonces.insert(a.nonce, request_id.to_string());
        if let Some(r) = self.requests.get_mut(request_id) {
            r.approvals.push(a);
        }
        self.stats.approvals += 1;
        Ok(())
    }

    fn decision(&mut self, recorded: &Event, entry_secs: u64) -> Check {
        let Event::Decision {
            request_id,
            policy_version,
            evaluated_at,
            ..
        } = recorded
        else {
            return Ok(());
        };
        recorded_in_time("evaluation time", *evaluated_at, entry_secs)?;
        // An evaluation time earlier than a past decision's would let past
        // transfers fall outside velocity windows.
        if *evaluated_at < self.last_decision {
            return Err(format!(
                "evaluation time {evaluated_at} is before the previous decision's {}",
                self.last_decision
            ));
        }
        let policy = self
            .current
            .and_then(|v| self.policies.get(&v))
            .ok_or_else(|| "no policy version is in force yet".to_string())?;
        if *policy_version != policy.version() {
            return Err(format!(
                "decided under policy version {policy_version}, version {} was in force",
                policy.version()
            ));
        }
        let req = self
            .requests
            .get(request_id)
            .ok_or_else(|| format!("request {request_id} was never recorded"))?;
        if req.signed {
            return Err(format!(
                "decision on request {request_id}, which was already signed"
            ));
        }
        let spent = self
            .spent
            .aggregates
            .as_mut()
            .ok_or_else(|| "no policy version is in force yet".to_string())?;
        // Decisions never go back: what left the velocity windows at the
        // previous decision is never needed again. (Not at this decision's
        // time: a refused decision must not move the floor.)
        spent.prune(self.last_decision);
        // The history excludes the request itself, like the coordinator's,
        // and so do the consumed nonces (its own approvals are not replays):
        // only this request's nonces recorded for another request are seen.
        let own = self.spent.entries.get(request_id);
        let seen: BTreeSet<[u8; 16]> = req
            .approvals
            .iter()
            .map(|a| a.nonce)
            .filter(|n| self.nonces.get(n).is_some_and(|owner| owner != request_id))
            .collect();
        let fresh = evaluate(
            policy,
            &req.request,
            &EvalContext {
                now: *evaluated_at,
                spent,
                exclude: own,
                approvals: &req.approvals,
                seen_nonces: &seen,
            },
        );
        let expected = decision_event(request_id, *evaluated_at, &fresh);
        if !same_decision(&expected, recorded) {
            let Event::Decision {
                outcome,
                rule,
                detail,
                ..
            } = expected
            else {
                return Err("re-evaluation did not give a decision".into());
            };
            return Err(format!(
                "re-evaluating the policy gives {outcome:?} by rule {rule:?} ({detail}), not the recorded decision"
            ));
        }
        let allowed = fresh.is_allowed();
        let entry = req.request.history_entry(*evaluated_at);
        if allowed {
            self.spent.insert(request_id, entry)?;
        } else {
            self.spent.remove(request_id)?;
            if matches!(fresh.outcome, keyfold_policy::Outcome::Deny { .. }) {
                self.stats.denied += 1;
            }
        }
        if let Some(r) = self.requests.get_mut(request_id) {
            r.allowed = allowed;
        }
        self.last_decision = *evaluated_at;
        self.stats.decisions += 1;
        Ok(())
    }

    fn session(
        &mut self,
        request_id: &str,
        session_id: &str,
        signers: &[String],
        mode: SigningMode,
    ) -> Check {
        let req = self.request(request_id)?;
        if !req.allowed {
            return Err(format!(
                "signing session for request {request_id}, which no decision allowed"
            ));
        }
        if req.signed {
            return Err(format!("request {request_id} was already signed"));
        }
        let key = self
            .keys
            .get(&req.key_id)
            .ok_or_else(|| format!("key {} was never created", req.key_id))?;
        check_signers(key, signers, mode)?;
        if let Some(r) = self.requests.get_mut(request_id) {
            r.sessions.push((session_id.to_string(), false));
        }
        Ok(())
    }

    fn signature(
        &mut self,
        request_id: &str,
        key_id: &str,
        public_key: &[u8],
        signature: &[u8],
    ) -> Check {
        let req = self.request(request_id)?;
        if req.key_id != key_id {
            return Err(format!("request {request_id} is for key {}", req.key_id));
        }
        if !req.allowed {
            return Err(format!(
                "signature for request {request_id}, which no decision allowed"
            ));
        }
        if req.signed {
            return Err(format!("request {request_id} was already signed"));
        }
        if !req.sessions.iter().any(|(_, aborted)| !aborted) {
            return Err(format!(
                "signature for request {request_id} without a signing session that was not aborted"
            ));
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| format!("key {key_id} was never created"))?;
        let expected_key = match (&req.path, key.chain_code) {
            (Some(path), Some(cc)) => derive_child(&key.public_key, cc, path)?,
            (Some(_), None) => return Err(format!("key {key_id} has no chain code")),
            (None, _) => key.public_key.clone(),
        };
        if expected_key != public_key {
            return Err("public_key is not the wallet key of the request".into());
        }
        verify_signature(
            &key.curve,
            &expected_key,
            &req.request.signing_message(),
            req.hash_alg.as_deref(),
            signature,
        )?;
        if let Some(r) = self.requests.get_mut(request_id) {
            r.signed = true;
        }
        self.stats.signatures += 1;
        Ok(())
    }

    fn aborted(&mut self, request_id: &str, session_id: &str) -> Check {
        let session = self
            .requests
            .get_mut(request_id)
            .ok_or_else(|| format!("request {request_id} was never recorded"))?
            .sessions
            .iter_mut()
            .find(|(id, aborted)| id == session_id && !*aborted)
            .ok_or_else(|| {
                format!("abort of session {session_id}, which request {request_id} has not open")
            })?;
        session.1 = true;
        self.stats.aborted += 1;
        Ok(())
    }

    fn failed(&mut self, request_id: &str) -> Check {
        let req = self.request(request_id)?;
        if req.signed {
            return Err(format!("request {request_id} failed after it was signed"));
        }
        self.spent.remove(request_id)?;
        if let Some(r) = self.requests.get_mut(request_id) {
            r.allowed = false;
            // A failed request's sessions are over: a later signature
            // needs a new decision and a new session.
            for s in &mut r.sessions {
                s.1 = true;
            }
        }
        Ok(())
    }

    /// A request closed before it was signed (rejected, expired or
    /// cancelled) leaves the history exactly as a failed one does.
    fn closed(&mut self, request_id: &str, state: &str) -> Check {
        if !matches!(state, "rejected" | "expired" | "cancelled") {
            return Err(format!(
                "request {request_id} closed in state {state:?}, not rejected, expired or cancelled"
            ));
        }
        self.failed(request_id)
    }

    fn contribution(
        &mut self,
        key_id: &str,
        policy_version: u64,
        signers: &[String],
        mode: SigningMode,
    ) -> Check {
        let policy = self.policy()?;
        if policy.version() != policy_version {
            return Err(format!(
                "contributed under policy version {policy_version}, this signer's log has version {} in force",
                policy.version()
            ));
        }
        // A signer names the session's signers by party index in the key.
        if let Some(key) = self.keys.get(key_id) {
            let names = party_names(key, signers)?;
            check_signers(key, &names, mode)?;
        }
        self.stats.contributions += 1;
        Ok(())
    }
}

/// Whether two `Decision` events decide the same: every field equal, the
/// detail compared without its free-text reason.
fn same_decision(a: &Event, b: &Event) -> bool {
    match (a, b) {
        (
            Event::Decision {
                request_id: r1,
                policy_version: v1,
                evaluated_at: t1,
                outcome: o1,
                rule: n1,
                detail: d1,
            },
            Event::Decision {
                request_id: r2,
                policy_version: v2,
                evaluated_at: t2,
                outcome: o2,
                rule: n2,
                detail: d2,
            },
        ) => {
            (r1, v1, t1, o1, n1) == (r2, v2, t2, o2, n2)
                && structural(d1).is_some()
                && structural(d1) == structural(d2)
        }
        _ => false,
    }
}

fn check_signers(key: &KeyInfo, signers: &[String], mode: SigningMode) -> Check {
    if mode == SigningMode::Hsm {
        if key.tier != "cold" {
            return Err("an HSM signature for a hot (threshold) key".into());
        }
        return Ok(());
    }
    if key.tier == "cold" {
        return Err("a threshold session for a cold (HSM) key".into());
    }
    let distinct: BTreeSet<&String> = signers.iter().collect();
    if distinct.len() != signers.len() || distinct.len() < key.t.into() {
        return Err(format!(
            "signer set of {} distinct nodes, threshold is {}",
            distinct.len(),
            key.t
        ));
    }
    if let Some(s) = signers.iter().find(|s| !key.participants.contains(s)) {
        return Err(format!("signer {s} holds no share of this key"));
    }
    Ok(())
}

impl EventCheck for Auditor {
    fn check(&mut self, entry: &Entry) -> Result<(), String> {
        self.check_entry(entry).map_err(|e| match e {
            VerifyError::BadEntry {
                reason: EntryError::Rejected(m),
                ..
            } => m,
            other => other.to_string(),
        })
    }

    fn check_entry(&mut self, entry: &Entry) -> Result<(), VerifyError> {
        let rejected = |m| VerifyError::BadEntry {
            index: entry.index,
            reason: EntryError::Rejected(m),
        };
        if let Some(prev) = self.last_entry {
            if entry.time < prev {
                return Err(rejected(format!(
                    "entry time {} is before the previous entry's {prev}",
                    entry.time
                )));
            }
        }
        self.last_entry = Some(entry.time);
        let risk = match &entry.event {
            Event::RiskTree {
                version,
                document_hash,
                document,
                update,
            } => self.risk_tree(*version, document_hash, document, update.as_deref()),
            e @ Event::RiskDecision { .. } => self.risk_decision(entry.index, e),
            e @ Event::Freeze { .. } => self.freeze(e),
            e @ Event::Review { .. } => self.review(e),
            e @ Event::RiskRefusal { .. } => self.risk_refusal(entry.index, e),
            e @ Event::CustomerAuth { .. } => self.customer_auth(e),
            _ => return self.policy_event(entry).map_err(rejected),
        };
        risk.map_err(|f| VerifyError::BadEntry {
            // A decision is named where it was logged, which is earlier
            // than this entry when it was logged ahead of its turn.
            index: match &f {
                RiskFinding::Decision { entry, .. } | RiskFinding::Refusal { entry, .. } => *entry,
                _ => entry.index,
            },
            reason: EntryError::Risk(Box::new(f)),
        })
    }

    fn finish(&mut self) -> Result<(), VerifyError> {
        self.risk_finish()
    }
}

impl Auditor {
    /// The checks of every event but the risk ones.
    fn policy_event(&mut self, entry: &Entry) -> Check {
        let entry_secs = u64::try_from(entry.time.div_euclid(1000)).unwrap_or(0);
        match &entry.event {
            Event::KeyCreated {
                key_id,
                curve,
                tier,
                t,
                n,
                participants,
                public_key,
                chain_code,
            } => self.key_created(
                key_id,
                curve,
                tier,
                *t,
                *n,
                participants,
                &public_key.0,
                chain_code.as_ref().map(|c| c.0.as_slice()),
            ),
            Event::PolicyVersion {
                version,
                document_hash,
                document,
                update,
            } => self.policy_version(*version, document_hash, document, update.as_deref()),
            Event::SignRequest {
                request_id,
                key_id,
                request,
                request_hash,
                message_hash,
                hash_alg,
                derivation_path,
            } => self.sign_request(
                entry_secs,
                request_id,
                key_id,
                request,
                request_hash,
                message_hash,
                hash_alg.as_deref(),
                derivation_path.as_deref(),
            ),
            Event::Approval {
                request_id,
                approval,
            } => self.approval(request_id, approval),
            e @ Event::Decision { .. } => self.decision(e, entry_secs),
            Event::SigningSession {
                request_id,
                session_id,
                signers,
                mode,
            } => self.session(request_id, session_id, signers, *mode),
            Event::Signature {
                request_id,
                key_id,
                public_key,
                signature,
            } => self.signature(request_id, key_id, &public_key.0, &signature.0),
            Event::Aborted {
                request_id,
                session_id,
                ..
            } => self.aborted(request_id, session_id),
            Event::RequestFailed { request_id, .. } => self.failed(request_id),
            Event::RequestClosed {
                request_id, state, ..
            } => self.closed(request_id, state),
            Event::ClientToken { action, .. } => match action.as_str() {
                "issued" | "revoked" => Ok(()),
                other => Err(format!(
                    "client token action {other:?} is not \"issued\" or \"revoked\""
                )),
            },
            Event::Contribution {
                key_id,
                policy_version,
                signers,
                mode,
                ..
            } => self.contribution(key_id, *policy_version, signers, *mode),
            Event::ChainTransaction {
                request_id,
                action,
                tx_hash,
                raw_tx,
                ..
            } => self.chain_transaction(
                request_id,
                action,
                tx_hash,
                raw_tx.as_ref().map(|b| b.0.as_slice()),
            ),
            Event::Escrow {
                escrow_id,
                action,
                detail,
            } => {
                self.escrows.check(escrow_id, action, detail, entry_secs)?;
                self.stats.escrow_events += 1;
                Ok(())
            }
            Event::Schedule {
                schedule_id,
                action,
                occurrence,
                detail,
            } => {
                self.schedules
                    .check(schedule_id, action, *occurrence, detail, entry_secs)?;
                self.stats.schedule_events += 1;
                Ok(())
            }
            Event::PolicyShadow {
                version,
                document_hash,
                document,
                update,
                action,
            } => self.policy_shadow(*version, document_hash, document, update.as_deref(), action),
            // Dispatched to the risk checks by `check_entry`; fail closed
            // should that ever change.
            Event::RiskTree { .. }
            | Event::RiskDecision { .. }
            | Event::Freeze { .. }
            | Event::Review { .. }
            | Event::RiskRefusal { .. }
            | Event::CustomerAuth { .. } => {
                Err("internal: a risk event reached the policy checks".into())
            }
        }
    }
}
