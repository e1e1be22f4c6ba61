//! The signer's own policy check: every signing command is re-evaluated here,
//! against the policy this node enforces, with this node's clock, its own
//! velocity counters and its own record of consumed approvals, so a
//! compromised coordinator cannot obtain a signature share the policy forbids.
//!
//! [`check`] is pure (inputs in, verdict out); [`PolicyState`] holds the
//! enforced document and does the store I/O around it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use keyfold_mpc::ecdsa::DerivationPath;
use keyfold_mpc::KeyId;
use keyfold_policy::{
    evaluate, EvalContext, History, HistoryEntry, Outcome, Policy, SignedPolicy, Tier,
};
use keyfold_proto::signer::{wallet_name, PolicyIntent};
use keyfold_proto::MAX_MESSAGE_BYTES;
use keyfold_store::SignerStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SignerError;

/// How far a request's claimed time may be from when this node first saw it.
/// Bounds how much a coordinator can backdate a request past a time lock or
/// out of a velocity window.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// A contribution as stored: the request id (so a retry of the same request
/// is not counted against itself) and its history entry.
#[derive(Serialize, Deserialize)]
struct Contribution {
    request_id: String,
    entry: HistoryEntry,
}

/// This node's contributions: history entries and, in the same order, the
/// requests they belong to.
#[derive(Default)]
struct Spent {
    history: History,
    requests: Vec<String>,
}

impl Spent {
    /// The history without `request_id`'s own entry (a retry of a request
    /// must not count against itself). Borrowed unless the request is there.
    fn without(&self, request_id: &str) -> std::borrow::Cow<'_, History> {
        if !self.requests.iter().any(|r| r == request_id) {
            return std::borrow::Cow::Borrowed(&self.history);
        }
        let entries = self
            .history
            .entries
            .iter()
            .zip(&self.requests)
            .filter(|(_, r)| *r != request_id)
            .map(|(e, _)| e.clone())
            .collect();
        std::borrow::Cow::Owned(History { entries })
    }
}

/// Everything [`check`] needs that is not in the command.
pub struct CheckInputs<'a> {
    /// The policy this node enforces.
    pub policy: &'a Policy,
    /// The key that would sign.
    pub key: KeyId,
    /// The HD path, if any.
    pub path: Option<&'a DerivationPath>,
    /// When this node first saw the request (Unix seconds).
    pub first_seen: u64,
    /// This node's clock (Unix seconds).
    pub now: u64,
    /// What this node signed before (this request excluded).
    pub history: &'a History,
    /// Approval nonces consumed by other requests on this node.
    pub seen_nonces: &'a BTreeSet<[u8; 16]>,
}

/// Checks `intent` and returns the message to sign, or why this node refuses.
pub fn check(intent: &PolicyIntent, inputs: &CheckInputs<'_>) -> Result<Vec<u8>, SignerError> {
    let req = &intent.request;
    let refuse = |why: String| {
        Err(SignerError::PolicyRefused(format!(
            "request {}: {why}",
            req.id
        )))
    };
    if intent.policy_version != inputs.policy.version() {
        return refuse(format!(
            "the coordinator evaluated policy version {}, this signer enforces version {}",
            intent.policy_version,
            inputs.policy.version()
        ));
    }
    let wallet = wallet_name(&inputs.key, inputs.path);
    if req.wallet != wallet {
        return refuse(format!(
            "request names wallet `{}` but the signing command is for `{wallet}`",
            req.wallet
        ));
    }
    if req.tier != Tier::Hot {
        return refuse("threshold keys are hot wallets; the request says cold".into());
    }
    if req.time.abs_diff(inputs.first_seen) > MAX_CLOCK_SKEW_SECS {
        return refuse(format!(
            "request claims time {} but this signer first saw it at {} (more than {MAX_CLOCK_SKEW_SECS} s apart)",
            req.time, inputs.first_seen
        ));
    }
    let decision = evaluate(
        inputs.policy,
        req,
        &EvalContext {
            now: inputs.now,
            history: inputs.history,
            approvals: &intent.approvals,
            seen_nonces: inputs.seen_nonces,
        },
    );
    let rule = decision
        .rule
        .as_ref()
        .map(|r| format!("rule `{}`", r.name))
        .unwrap_or_else(|| "no rule".into());
    match &decision.outcome {
        Outcome::Allow => {}
        Outcome::Deny { reason } => return refuse(format!("denied by {rule}: {reason}")),
        Outcome::NeedApprovals { missing, .. } => {
            let missing: Vec<String> = missing
                .iter()
                .map(|m| format!("{} has {} of {}", m.group, m.have, m.need))
                .collect();
            let refused: Vec<String> = decision
                .refused_approvals
                .iter()
                .map(|r| format!("{}: {}", r.approver, r.error))
                .collect();
            return refuse(format!(
                "{rule} needs approvals ({}){}",
                missing.join(", "),
                if refused.is_empty() {
                    String::new()
                } else {
                    format!("; refused approvals: {}", refused.join("; "))
                }
            ));
        }
        Outcome::TimeLocked { until } => {
            return refuse(format!(
                "{rule} time-locks it until {until} (this signer's clock: {})",
                inputs.now
            ))
        }
    }
    let message = req.signing_message();
    if message.len() > MAX_MESSAGE_BYTES {
        return refuse(format!(
            "message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
            message.len()
        ));
    }
    Ok(message)
}

/// The session a contribution is for, as the audit log records it.
#[derive(Debug, Clone, Copy)]
pub struct Contributed<'a> {
    /// The session's signer set, as party indices of the key.
    pub parties: &'a [u16],
    /// How the signature is produced.
    pub mode: keyfold_audit::SigningMode,
}

fn audit_failed(e: keyfold_audit::Error) -> SignerError {
    tracing::error!(error = %e, "audit log write failed: refusing");
    SignerError::Internal(format!("this signer cannot write its audit log: {e}"))
}

/// The policy this node enforces, kept in the store.
pub struct PolicyState {
    current: RwLock<Arc<Policy>>,
    /// What this node contributed to, kept in memory (read from the store
    /// once, at start) so a signing request does not reread and reparse the
    /// whole history. Its lock serializes check-and-record, so two requests
    /// near a velocity limit cannot both pass before either is counted.
    spent: tokio::sync::Mutex<Spent>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PolicyState {
    /// Loads the enforced policy: the one in the store if it is newer than
    /// the configured `genesis` file (it arrived as a signed update), else
    /// the genesis document, which is then stored.
    pub fn load(store: &SignerStore, genesis: &Path) -> Result<PolicyState, SignerError> {
        let config_err = |reason: String| SignerError::Config {
            path: genesis.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(genesis)
            .map_err(|e| config_err(format!("cannot read the policy file: {e}")))?;
        let file_policy = Policy::from_toml(&text).map_err(|e| config_err(e.to_string()))?;
        let policy = match store.policy_document()? {
            Some((v, doc)) if v > file_policy.version() => {
                let p = Policy::from_toml(&doc).map_err(|e| {
                    config_err(format!("the stored policy version {v} no longer parses: {e}"))
                })?;
                tracing::info!(
                    version = v,
                    file_version = file_policy.version(),
                    "enforcing the policy received as a signed update (newer than the file)"
                );
                p
            }
            Some((v, doc)) if v == file_policy.version() && doc != text => {
                return Err(config_err(format!(
                    "policy version {v} in this file differs from the version {v} this node already enforces; \
                     a changed policy needs a new version signed by the admins"
                )))
            }
            _ => {
                store.set_policy_document(file_policy.version(), &text)?;
                file_policy
            }
        };
        tracing::info!(version = policy.version(), "policy loaded");
        let mut spent = Spent::default();
        for json in store.contributions()? {
            let c: Contribution = serde_json::from_str(&json).map_err(|e| {
                SignerError::Internal(format!("stored contribution does not parse: {e}"))
            })?;
            spent.history.entries.push(c.entry);
            spent.requests.push(c.request_id);
        }
        Ok(PolicyState {
            current: RwLock::new(Arc::new(policy)),
            spent: tokio::sync::Mutex::new(spent),
        })
    }

    /// The enforced policy.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Applies an update signed by the current admin quorum.
    pub fn update(
        &self,
        store: &SignerStore,
        audit: &keyfold_audit::Trail,
        update: &SignedPolicy,
    ) -> Result<u64, SignerError> {
        let current = self.current();
        // The policy in force, pushed again (to reach a signer that missed
        // it): nothing to change here.
        if update.is_in_force(&current) {
            return Ok(current.version());
        }
        let new = update
            .verify(&current)
            .map_err(|e| SignerError::PolicyRefused(format!("policy update refused: {e}")))?;
        audit
            .record_policy(keyfold_audit::record::policy_event(&new, Some(update)))
            .map_err(audit_failed)?;
        store.set_policy_document(new.version(), &update.document_toml)?;
        let version = new.version();
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(new),
            Err(p) => *p.into_inner() = Arc::new(new),
        }
        tracing::info!(version, "policy updated");
        Ok(version)
    }

    /// Records when this node first saw the request; refuses one whose
    /// claimed time is too far from this node's clock.
    pub fn announce(
        &self,
        store: &SignerStore,
        request: &keyfold_policy::Request,
    ) -> Result<i64, SignerError> {
        let now = unix_now();
        let seen = store.first_seen(
            &request.id,
            &request.canonical_hash(),
            i64::try_from(now).unwrap_or(i64::MAX),
        )?;
        let at = u64::try_from(seen.at).unwrap_or(0);
        if request.time.abs_diff(at) > MAX_CLOCK_SKEW_SECS {
            return Err(SignerError::PolicyRefused(format!(
                "request {} claims time {} but this signer first saw it at {at}",
                request.id, request.time
            )));
        }
        Ok(seen.at)
    }

    /// Checks the intent for `key` / `path` and records this node's
    /// contribution durably before returning the message to sign.
    ///
    /// The contribution is also appended to this node's audit log (with the
    /// session's signer set); if that fails, nothing is signed.
    pub async fn authorize(
        &self,
        store: &SignerStore,
        audit: &keyfold_audit::Trail,
        intent: &PolicyIntent,
        key: KeyId,
        path: Option<&DerivationPath>,
        session: Contributed<'_>,
    ) -> Result<Vec<u8>, SignerError> {
        let mut spent = self.spent.lock().await;
        let req = &intent.request;
        let hash = req.canonical_hash();
        let now = unix_now();
        // Read only: the first-seen time is written with the contribution,
        // in one durable transaction (an announced request has it already).
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let first_seen = store.peek_first_seen(&req.id, &hash)?.unwrap_or(now_i);
        let history = spent.without(&req.id);
        let seen_nonces: BTreeSet<[u8; 16]> =
            store.nonces_used_by_others(&req.id)?.into_iter().collect();
        let policy = self.current();
        let message = check(
            intent,
            &CheckInputs {
                policy: &policy,
                key,
                path,
                first_seen: u64::try_from(first_seen).unwrap_or(0),
                now,
                history: &history,
                seen_nonces: &seen_nonces,
            },
        )?;
        let retry = matches!(history, std::borrow::Cow::Owned(_));
        drop(history);
        let contribution = Contribution {
            request_id: req.id.clone(),
            entry: req.history_entry(now),
        };
        let entry = serde_json::to_string(&contribution)
            .map_err(|e| SignerError::Internal(e.to_string()))?;
        let nonces: Vec<[u8; 16]> = intent.approvals.iter().map(|a| a.nonce).collect();
        store
            .record_contribution(&req.id, &hash, &entry, &nonces, first_seen)
            .map_err(|e| match e {
                keyfold_store::StoreError::Conflict { what, id } => SignerError::PolicyRefused(
                    format!("request {}: {what} {id} was already used", req.id),
                ),
                other => other.into(),
            })?;
        audit
            .record(vec![keyfold_audit::Event::Contribution {
                request_id: req.id.clone(),
                key_id: key.to_string(),
                request_hash: hash,
                message_hash: Sha256::digest(&message).into(),
                policy_version: policy.version(),
                signers: session.parties.iter().map(u16::to_string).collect(),
                mode: session.mode,
            }])
            .map_err(audit_failed)?;
        if !retry {
            spent.history.entries.push(contribution.entry);
            spent.requests.push(contribution.request_id);
        }
        tracing::info!(
            request = %req.id,
            wallet = %req.wallet,
            amount = %req.amount,
            policy_version = policy.version(),
            "policy allows; contribution recorded"
        );
        Ok(message)
    }
}
