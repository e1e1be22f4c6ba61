//! The signer's own policy check: every signing command is re-evaluated here,
//! against the policy this node enforces, with this node's clock, its own
//! velocity aggregates (`keyfold_policy::Spending`, the code the coordinator
//! and the auditor run) and its own record of consumed approvals, so a
//! compromised coordinator cannot obtain a signature share the policy
//! forbids.
//!
//! [`check`] is pure (inputs in, verdict out). [`PolicyState`] holds the
//! enforced document and the aggregates, and does the I/O around the check
//! off the async runtime:
//!
//! 1. reads (first-seen time, this request's earlier contribution, the
//!    owners of its approvals' nonces) on the blocking pool;
//! 2. under a short lock (no I/O): this node's decision time (never going
//!    back), the check, and counting the request if it passes, so two
//!    requests near a limit cannot both pass;
//! 3. the contribution written durably, in parallel: one store transaction
//!    (contribution, nonces, first-seen time and what the signature
//!    consumes: the presignature, marked used, or the session id) and one
//!    audit append. Both must succeed before any share leaves the node; if
//!    the store write fails the request stops counting again.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use keyfold_audit::Trail;
use keyfold_mpc::ecdsa::{DerivationPath, HashAlg};
use keyfold_mpc::KeyId;
use keyfold_policy::{
    evaluate, EvalContext, HistoryEntry, Outcome, Payload, Policy, SignedPolicy, Spending, Tier,
};
use keyfold_proto::signer::{wallet_name, PolicyIntent};
use keyfold_proto::MAX_MESSAGE_BYTES;
use keyfold_store::{Consume, SignerStore, Zeroizing};
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

/// Everything [`check`] needs that is not in the command.
pub struct CheckInputs<'a> {
    /// The policy this node enforces.
    pub policy: &'a Policy,
    /// The key that would sign.
    pub key: KeyId,
    /// The HD path, if any.
    pub path: Option<&'a DerivationPath>,
    /// How the command says to hash the message (ECDSA); `None` for Ed25519.
    pub hash: Option<HashAlg>,
    /// When this node first saw the request (Unix seconds).
    pub first_seen: u64,
    /// This node's decision time (Unix seconds).
    pub now: u64,
    /// What this node signed before, as aggregates for `policy`.
    pub spent: &'a Spending,
    /// This request's own earlier contribution (a retry), not counted.
    pub exclude: Option<&'a HistoryEntry>,
    /// Nonces among the intent's approvals that other requests consumed on
    /// this node.
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
    if inputs.path.is_some_and(DerivationPath::is_root) {
        // `key/m` would be a wallet name of its own while the root key signs:
        // a rule written for the key would not see it.
        return refuse(
            "a derivation path must name a child key (`m` alone is the root key: send no path)"
                .into(),
        );
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
    if let Payload::ChainTransaction {
        chain,
        chain_id,
        token_contract,
        fee_cap,
        tx,
        ..
    } = &req.payload
    {
        // No blind signing: this node decodes the transaction itself and
        // signs only if it pays exactly what the policy is about to see.
        let expected = keyfold_chain::check::Expected {
            chain_id: *chain_id,
            token_contract: token_contract.as_deref(),
            destination: &req.destination,
            amount: req.amount,
            fee_cap: *fee_cap,
        };
        if let Err(m) = keyfold_chain::check::check_transaction(&expected, tx) {
            return refuse(format!(
                "the {chain} transaction does not match its payout: {m}"
            ));
        }
        // EVM: the wallet signs the chain's signing hash (keccak-256 of the
        // whole signing payload) and nothing else; Solana: the message.
        let want = chain_id.map(|_| HashAlg::Keccak256);
        if inputs.hash != want {
            return refuse(format!(
                "a {chain} transaction is signed with hash {}, the command asks for {}",
                want.map_or("none (Ed25519)".to_string(), |h| h.to_string()),
                inputs
                    .hash
                    .map_or("none (Ed25519)".to_string(), |h| h.to_string())
            ));
        }
    }
    let decision = evaluate(
        inputs.policy,
        req,
        &EvalContext {
            now: inputs.now,
            spent: inputs.spent,
            exclude: inputs.exclude,
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

/// What the signature consumes, written with the contribution.
#[derive(Debug, Clone)]
pub enum Consumes {
    /// A presignature of `key` and the signer set `signers`.
    Presignature {
        /// Its id.
        id: String,
        /// Its key.
        key: String,
        /// Its signer set.
        signers: Vec<u16>,
    },
    /// A session id (replay protection of full signing).
    Session([u8; 32]),
}

fn audit_failed(e: keyfold_audit::Error) -> SignerError {
    tracing::error!(error = %e, "audit log write failed: refusing");
    SignerError::Internal(format!("this signer cannot write its audit log: {e}"))
}

fn join_failed(e: tokio::task::JoinError) -> SignerError {
    SignerError::Internal(format!("a blocking task failed: {e}"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The aggregates and this node's decision time, under one short lock.
struct Counted {
    spent: Spending,
    /// The last decision time: decisions never go back, even if the clock
    /// does (a stepped-back clock would let transfers leave windows early).
    last: u64,
}

/// The policy this node enforces, kept in the store, and what it counted.
pub struct PolicyState {
    current: RwLock<Arc<Policy>>,
    counted: Mutex<Counted>,
    /// BENCH ONLY: sign without the check and the audit entry.
    unguarded: bool,
}

/// Every contribution recorded in `store`, as history entries.
fn contributions(store: &SignerStore) -> Result<Vec<HistoryEntry>, SignerError> {
    store
        .contributions()?
        .iter()
        .map(|json| {
            serde_json::from_str::<Contribution>(json)
                .map(|c| c.entry)
                .map_err(|e| {
                    SignerError::Internal(format!("stored contribution does not parse: {e}"))
                })
        })
        .collect()
}

impl PolicyState {
    /// Loads the enforced policy: the one in the store if it is newer than
    /// the configured `genesis` file (it arrived as a signed update), else
    /// the genesis document, which is then stored.
    ///
    /// `logged` is the last policy version the audit log holds (document and
    /// signed update): if a crash came between logging an update and storing
    /// it, the update is verified again and stored now, so the log and the
    /// enforced policy agree.
    pub fn load(
        store: &SignerStore,
        genesis: &Path,
        logged: Option<(String, Option<String>)>,
    ) -> Result<PolicyState, SignerError> {
        let config_err = |reason: String| SignerError::Config {
            path: genesis.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(genesis)
            .map_err(|e| config_err(format!("cannot read the policy file: {e}")))?;
        let file_policy = Policy::from_toml(&text).map_err(|e| config_err(e.to_string()))?;
        let mut policy = match store.policy_document()? {
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
        if let Some((doc, Some(update_json))) = logged {
            if let Ok(update) = serde_json::from_str::<SignedPolicy>(&update_json) {
                if update.document_toml == doc && !update.is_in_force(&policy) {
                    match update.verify(&policy) {
                        Ok(newer) if newer.version() > policy.version() => {
                            tracing::warn!(
                                version = newer.version(),
                                "the audit log holds a policy update the store missed (a crash): storing it"
                            );
                            store.set_policy_document(newer.version(), &update.document_toml)?;
                            policy = newer;
                        }
                        _ => {}
                    }
                }
            }
        }
        tracing::info!(version = policy.version(), "policy loaded");
        let spent = Spending::from_entries(&policy, contributions(store)?);
        Ok(PolicyState {
            current: RwLock::new(Arc::new(policy)),
            counted: Mutex::new(Counted { spent, last: 0 }),
            unguarded: false,
        })
    }

    /// BENCH ONLY (feature `bench-unguarded`): signs without the policy
    /// check and the audit entry, to measure what they cost.
    #[cfg(feature = "bench-unguarded")]
    pub fn unguarded(mut self) -> Self {
        tracing::error!("BENCH ONLY: this signer signs without its policy check and audit log");
        self.unguarded = true;
        self
    }

    /// The enforced policy.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, Counted> {
        self.counted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies an update signed by the current admin quorum: logged first,
    /// then stored, then enforced (a crash between the two is repaired at
    /// start, see [`PolicyState::load`]).
    pub async fn update(
        &self,
        store: &Arc<SignerStore>,
        audit: &Arc<Trail>,
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
        let event = keyfold_audit::record::policy_event(&new, Some(update));
        let (store2, audit2, doc, version) = (
            store.clone(),
            audit.clone(),
            update.document_toml.clone(),
            new.version(),
        );
        let spent = tokio::task::spawn_blocking(move || {
            audit2.record_policy(event).map_err(audit_failed)?;
            store2.set_policy_document(version, &doc)?;
            contributions(&store2)
        })
        .await
        .map_err(join_failed)??;
        let aggregates = Spending::from_entries(&new, spent);
        {
            let mut c = self.counted();
            match self.current.write() {
                Ok(mut g) => *g = Arc::new(new),
                Err(p) => *p.into_inner() = Arc::new(new),
            }
            c.spent = aggregates;
        }
        tracing::info!(version, "policy updated");
        Ok(version)
    }

    /// Records when this node first saw the request; refuses one whose
    /// claimed time is too far from this node's clock.
    pub async fn announce(
        &self,
        store: &Arc<SignerStore>,
        request: &keyfold_policy::Request,
    ) -> Result<i64, SignerError> {
        let now = unix_now();
        let (store, id, hash) = (store.clone(), request.id.clone(), request.canonical_hash());
        let seen = tokio::task::spawn_blocking(move || {
            store.first_seen(&id, &hash, i64::try_from(now).unwrap_or(i64::MAX))
        })
        .await
        .map_err(join_failed)??;
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
    /// contribution durably (store and audit log) before returning the
    /// message to sign and, for the online step, the presignature it
    /// consumed (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub async fn authorize(
        &self,
        store: &Arc<SignerStore>,
        audit: &Arc<Trail>,
        intent: &PolicyIntent,
        key: KeyId,
        path: Option<&DerivationPath>,
        sign_hash: Option<HashAlg>,
        session: Contributed<'_>,
        consumes: Consumes,
    ) -> Result<(Vec<u8>, Option<Zeroizing<Vec<u8>>>), SignerError> {
        let req = &intent.request;
        let hash = req.canonical_hash();
        // 1. Reads, off the runtime.
        let nonces: Vec<[u8; 16]> = intent.approvals.iter().map(|a| a.nonce).collect();
        let (first_seen, own, seen_nonces) = {
            let (store, id, nonces) = (store.clone(), req.id.clone(), nonces.clone());
            tokio::task::spawn_blocking(move || -> Result<_, SignerError> {
                let first_seen = store.peek_first_seen(&id, &hash)?;
                let own = store
                    .contribution_of(&id)?
                    .map(|j| serde_json::from_str::<Contribution>(&j).map(|c| c.entry))
                    .transpose()
                    .map_err(|e| {
                        SignerError::Internal(format!("stored contribution does not parse: {e}"))
                    })?;
                let mut seen = BTreeSet::new();
                for n in nonces {
                    if store.nonce_owner(&n)?.is_some_and(|o| o != id) {
                        seen.insert(n);
                    }
                }
                Ok((first_seen, own, seen))
            })
            .await
            .map_err(join_failed)??
        };
        // 2. Check and count, under a short lock.
        let policy = self.current();
        let (message, entry, counted) = {
            let mut c = self.counted();
            let now = c.last.max(unix_now());
            c.last = now;
            c.spent.prune(now);
            let now_i = i64::try_from(now).unwrap_or(i64::MAX);
            let first_seen = first_seen.unwrap_or(now_i);
            let message = if self.unguarded {
                req.signing_message()
            } else {
                check(
                    intent,
                    &CheckInputs {
                        policy: &policy,
                        key,
                        path,
                        hash: sign_hash,
                        first_seen: u64::try_from(first_seen).unwrap_or(0),
                        now,
                        spent: &c.spent,
                        exclude: own.as_ref(),
                        seen_nonces: &seen_nonces,
                    },
                )?
            };
            let entry = req.history_entry(now);
            // A retry was counted by its first contribution.
            let counted = own.is_none();
            if counted {
                c.spent.add(&entry);
            }
            (message, (entry, first_seen), counted)
        };
        let (entry, first_seen) = entry;
        let uncount = |e: &HistoryEntry| {
            if counted {
                if let Err(err) = self.counted().spent.remove(e) {
                    tracing::error!(error = %err, "a contribution to stop counting was not counted");
                }
            }
        };
        // 3. Durable, in parallel: the store transaction and the audit entry.
        let contribution = Contribution {
            request_id: req.id.clone(),
            entry: entry.clone(),
        };
        let entry_json = serde_json::to_string(&contribution)
            .map_err(|e| SignerError::Internal(e.to_string()))?;
        let stored = {
            let (store, id) = (store.clone(), req.id.clone());
            let consumes = consumes.clone();
            tokio::task::spawn_blocking(move || {
                let consume = match &consumes {
                    Consumes::Presignature { id, key, signers } => Consume::Presignature {
                        id,
                        key_id: key,
                        signer_set: signers,
                    },
                    Consumes::Session(s) => Consume::Session(s),
                };
                store.contribute(&id, &hash, &entry_json, &nonces, first_seen, consume)
            })
        };
        let unguarded = self.unguarded;
        let logged = {
            let audit = audit.clone();
            let event = keyfold_audit::Event::Contribution {
                request_id: req.id.clone(),
                key_id: key.to_string(),
                request_hash: hash,
                message_hash: Sha256::digest(&message).into(),
                policy_version: policy.version(),
                signers: session.parties.iter().map(u16::to_string).collect(),
                mode: session.mode,
            };
            tokio::task::spawn_blocking(move || {
                if unguarded {
                    return Ok(());
                }
                audit.record(vec![event])
            })
        };
        let (stored, logged) = tokio::join!(stored, logged);
        let presignature = match stored.map_err(join_failed) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                uncount(&entry);
                return Err(match e {
                    keyfold_store::StoreError::Conflict { what, id } => SignerError::PolicyRefused(
                        format!("request {}: {what} {id} was already used", req.id),
                    ),
                    other => other.into(),
                });
            }
            Err(e) => {
                uncount(&entry);
                return Err(e);
            }
        };
        // The store holds the contribution: it keeps counting even if the
        // audit log refuses it (nothing leaves the node then).
        logged.map_err(join_failed)?.map_err(audit_failed)?;
        tracing::info!(
            request = %req.id,
            wallet = %req.wallet,
            amount = %req.amount,
            policy_version = policy.version(),
            "policy allows; contribution recorded"
        );
        Ok((message, presignature))
    }
}
