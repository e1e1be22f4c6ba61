//! Getting a signature for an allowed request: from a presignature (one
//! round, ECDSA root keys), by full signing (Ed25519, HD children, an empty
//! pool, a failed online step), or inside the HSM (cold keys). Every
//! signature is verified independently ([`verify`]) before it is returned;
//! every session that does not produce one is recorded in the audit log
//! with the signer it blames, if any, before the next attempt.
//!
//! Blame rests on typed evidence only ([`crate::blame`]): the coordinator's
//! own failed requests, a signer's error about itself, or culprits that two
//! other parties agree on. A failed attempt without blame retries with
//! another signer set ([`quorum::choose`]).

pub mod quorum;
pub mod verify;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use keyfold_audit::{Event, SigningMode};
use keyfold_hsm::{ColdCurve, ColdKeys, HashAlg as HsmHash};
use keyfold_mpc::ecdsa::{self, DerivationPath, HashAlg};
use keyfold_mpc::{KeyId, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold};
use keyfold_proto::api::{KeyInfo, SignMode, SignResult};
use keyfold_proto::signer::{Command, ErrorCode, PolicyIntent, Response};
use keyfold_proto::Curve;
use keyfold_store::KeyRecord;

use crate::blame::{self, Report};
use crate::journal::Journal;
use crate::keys::{from_store, is_cold, COLD_PARTICIPANT};
use crate::presig_pool::{pool_set, PresigPool};
use crate::service::ServiceError;
use crate::signers::{describe, Liveness, NodeFailure, SignerClient};

pub use verify::{derive_child, verify};

/// A signature and the session that made it (logged with the signature).
pub struct Produced {
    /// The result the client gets.
    pub result: SignResult,
    /// The session, for the audit log.
    pub session: Event,
}

/// What to sign.
pub struct Job<'a> {
    /// The key.
    pub key: &'a KeyRecord,
    /// The typed request, its approvals and the policy version: each signer
    /// re-checks it and derives the message itself.
    pub intent: PolicyIntent,
    /// ECDSA pre-hash.
    pub hash: Option<HashAlg>,
    /// ECDSA HD path.
    pub path: Option<DerivationPath>,
}

/// Timeouts and attempts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A signing session's deadline.
    pub session_timeout: Duration,
    /// Quorums tried.
    pub attempts: usize,
}

/// The signing engine.
pub struct SigningEngine {
    client: SignerClient,
    liveness: Arc<Liveness>,
    pool: Arc<PresigPool>,
    journal: Journal,
    cold: Option<ColdKeys>,
    limits: Limits,
}

/// How the online step from a presignature ended.
enum Online {
    /// Signed.
    Signed(Box<Produced>),
    /// No presignature for a live signer set: use full signing.
    Unavailable,
    /// The online step failed (recorded in the audit log): use full signing.
    Failed(String),
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// Longest abort reason written to the audit log (its strings are bounded;
/// signers' error texts could exceed the bound and make the write fail).
const MAX_AUDIT_REASON: usize = 3000;

/// `reason`, cut at a character boundary to fit the audit log.
pub(crate) fn audit_reason(reason: String) -> String {
    if reason.len() <= MAX_AUDIT_REASON {
        return reason;
    }
    let mut end = MAX_AUDIT_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} ... (cut: {} bytes in all)",
        &reason[..end],
        reason.len()
    )
}

fn audit_error(e: crate::journal::JournalError) -> ServiceError {
    ServiceError::AuditUnavailable(e.to_string())
}

/// The one signature every signer returned (they must agree).
fn agreed_signature(answers: &[Response]) -> Result<[u8; 64], ServiceError> {
    let mut sig: Option<[u8; 64]> = None;
    for a in answers {
        let Response::Signed { signature } = a else {
            return Err(ServiceError::SigningFailed(format!(
                "a signer answered signing with {}",
                response_name(a)
            )));
        };
        let s: [u8; 64] = signature
            .as_slice()
            .try_into()
            .map_err(|_| ServiceError::SigningFailed("a signature is not 64 bytes".into()))?;
        if sig.is_some_and(|prev| prev != s) {
            return Err(ServiceError::SigningFailed(
                "the signers returned different signatures".into(),
            ));
        }
        sig = Some(s);
    }
    sig.ok_or_else(|| ServiceError::SigningFailed("no signature".into()))
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Status(_) => "a status",
        Response::Signed { .. } => "a signature",
        Response::Partial(_) => "a partial signature",
        _ => "another answer",
    }
}

/// One report per signer asked, for blame.
fn reports(nodes: &[(u16, String)], results: &[Result<Response, NodeFailure>]) -> Vec<Report> {
    nodes
        .iter()
        .zip(results)
        .map(|((party, node), r)| Report {
            party: *party,
            node: node.clone(),
            evidence: match r {
                Ok(_) => blame::Evidence::Answered,
                Err(f) => f.evidence(),
            },
        })
        .collect()
}

impl SigningEngine {
    /// The engine over its parts.
    pub fn new(
        client: SignerClient,
        liveness: Arc<Liveness>,
        pool: Arc<PresigPool>,
        journal: Journal,
        cold: Option<ColdKeys>,
        limits: Limits,
    ) -> Self {
        SigningEngine {
            client,
            liveness,
            pool,
            journal,
            cold,
            limits,
        }
    }

    /// The HSM's cold keys, or an error saying how to configure them.
    pub fn cold_keys(&self) -> Result<&ColdKeys, ServiceError> {
        self.cold.as_ref().ok_or_else(|| {
            ServiceError::BadRequest(
                "no HSM is configured on the coordinator: cold wallets need an `[hsm]` section in its configuration"
                    .into(),
            )
        })
    }

    /// Signs `job`: the HSM for a cold key, else the online step when the
    /// key allows it, else full signing.
    pub async fn sign(&self, job: Job<'_>) -> Result<Produced, ServiceError> {
        let message = job.intent.request.signing_message();
        if is_cold(job.key) {
            return self.sign_cold(&job, &message).await;
        }
        let curve = from_store(job.key.curve);
        let live = self.liveness.live_for(job.key).await;
        // The online step only for root ECDSA keys (presignatures are never
        // combined with HD derivation), with a digest each signer computes
        // from the whole message.
        if let (Curve::Secp256k1, None, Some(hash)) = (curve, &job.path, job.hash) {
            match self.online(&job, &live, &message, hash).await? {
                Online::Signed(p) => return Ok(*p),
                Online::Unavailable => {}
                Online::Failed(why) => {
                    tracing::warn!(error = %why, "online step failed; signing with full signing");
                }
            }
        }
        self.full(&job, live, &message).await
    }

    async fn online(
        &self,
        job: &Job<'_>,
        live: &HashSet<String>,
        message: &[u8],
        hash: HashAlg,
    ) -> Result<Online, ServiceError> {
        let key = job.key;
        let Some(set) = pool_set(key, live) else {
            return Ok(Online::Unavailable);
        };
        let Some(id) = self.pool.claim(&key.key_id, set.parties()) else {
            return Ok(Online::Unavailable);
        };
        let key_id: KeyId = key.key_id.parse().map_err(internal)?;
        let threshold = Threshold::new(key.t, key.n).map_err(internal)?;
        let presignature: keyfold_mpc::SessionId =
            serde_json::from_value(serde_json::Value::String(id.clone())).map_err(internal)?;
        let members: Vec<(u16, String)> = set
            .parties()
            .iter()
            .filter_map(|&i| key.participants.get(usize::from(i)).map(|n| (i, n.clone())))
            .collect();
        let nodes: Vec<_> = members
            .iter()
            .filter_map(|(_, n)| self.client.signer(n).cloned())
            .collect();
        let session = Event::SigningSession {
            request_id: job.intent.request.id.clone(),
            session_id: id.clone(),
            signers: members.iter().map(|m| m.1.clone()).collect(),
            mode: SigningMode::Presignature,
        };
        let results = self
            .client
            .call_each(&nodes, self.limits.session_timeout, |_| {
                Command::SignWithPresignature {
                    key: key_id,
                    presignature,
                    signers: set.parties().to_vec(),
                    intent: job.intent.clone(),
                    hash,
                }
            })
            .await;
        let failures: Vec<NodeFailure> = results.iter().filter_map(|r| r.clone().err()).collect();
        let outcome = if failures.is_empty() {
            let partials: Result<Vec<ecdsa::PartialSignature>, String> = results
                .into_iter()
                .filter_map(Result::ok)
                .map(|a| match a {
                    Response::Partial(p) => Ok(p),
                    other => Err(format!(
                        "a signer answered the online step with {}",
                        response_name(&other)
                    )),
                })
                .collect();
            let info = ecdsa::PublicKeyInfo {
                key_id,
                threshold,
                public_key: key
                    .public_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| internal("stored public key is not 33 bytes"))?,
                chain_code: None,
            };
            partials
                .and_then(|p| ecdsa::combine(&info, &p, message, hash).map_err(|e| e.to_string()))
                .and_then(|sig| {
                    let bytes = sig.to_bytes();
                    verify(
                        Curve::Secp256k1,
                        &key.public_key,
                        message,
                        Some(hash),
                        &bytes,
                    )
                    .map(|()| bytes)
                    .map_err(|e| format!("the combined signature does not verify: {e}"))
                })
                .map_err(|e| (None, e))
        } else {
            self.liveness.forget();
            let decision = blame::decide(&reports(&members, &results));
            Err((
                decision.blamed().map(str::to_string),
                format!("{}; {decision}", describe(&failures)),
            ))
        };
        match outcome {
            Ok(sig) => Ok(Online::Signed(Box::new(Produced {
                result: SignResult {
                    request_id: job.intent.request.id.clone(),
                    key_id: key.key_id.clone(),
                    curve: Curve::Secp256k1,
                    public_key: hex::encode(&key.public_key),
                    message: hex::encode(message),
                    hash: Some(hash),
                    derivation_path: None,
                    signature: hex::encode(sig),
                    signers: members.into_iter().map(|m| m.1).collect(),
                    mode: SignMode::Presignature,
                },
                session,
            }))),
            Err((blamed, reason)) => {
                // Recorded before anything else is tried: an audit failure
                // refuses the request (no silent fall-back).
                self.journal
                    .write(
                        vec![
                            session,
                            Event::Aborted {
                                request_id: job.intent.request.id.clone(),
                                session_id: id,
                                blamed,
                                reason: audit_reason(reason.clone()),
                            },
                        ],
                        Vec::new(),
                    )
                    .await
                    .map_err(audit_error)?;
                Ok(Online::Failed(reason))
            }
        }
    }

    async fn full(
        &self,
        job: &Job<'_>,
        first_live: HashSet<String>,
        message: &[u8],
    ) -> Result<Produced, ServiceError> {
        let key = job.key;
        let request_id = RequestId::new(job.intent.request.id.clone()).map_err(internal)?;
        let key_id: KeyId = key.key_id.parse().map_err(internal)?;
        let threshold = Threshold::new(key.t, key.n).map_err(internal)?;
        let curve = from_store(key.curve);
        let verify_key = match (&curve, &job.path) {
            (Curve::Secp256k1, Some(p)) => derive_child(key, p)?,
            _ => key.public_key.clone(),
        };
        let protocol = match curve {
            Curve::Secp256k1 => ProtocolKind::EcdsaSign,
            _ => ProtocolKind::EddsaSign,
        };
        let mut excluded: HashSet<String> = HashSet::new();
        let mut tried: Vec<Vec<u16>> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut refusals: Vec<String> = Vec::new();
        let attempts = self.limits.attempts.max(1);
        for attempt in 0..attempts {
            let live = if attempt == 0 {
                first_live.clone()
            } else {
                self.liveness.live_for(key).await
            };
            let Some(set) = quorum::choose(&key.participants, key.t, &live, &excluded, &tried)
            else {
                if !refusals.is_empty() {
                    return Err(ServiceError::PolicyDenied(format!(
                        "signers refused request {request_id} under their own policy check: {}",
                        refusals.join("; ")
                    )));
                }
                let usable: Vec<&String> = key
                    .participants
                    .iter()
                    .filter(|p| live.contains(*p) && !excluded.contains(*p))
                    .collect();
                return Err(ServiceError::QuorumUnavailable(format!(
                    "needs {} live signers of {:?}, usable now: {usable:?}{}",
                    key.t,
                    key.participants,
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!("; earlier failures: {}", errors.join("; "))
                    }
                )));
            };
            tried.push(set.clone());
            let members: Vec<(u16, String)> = set
                .iter()
                .filter_map(|&i| key.participants.get(usize::from(i)).map(|n| (i, n.clone())))
                .collect();
            let session = SessionDescriptor::new(
                protocol,
                key_id,
                request_id.clone(),
                threshold,
                SignerSet::new(&set, threshold).map_err(internal)?,
            )
            .map_err(internal)?;
            let nodes: Vec<_> = members
                .iter()
                .filter_map(|(_, n)| self.client.signer(n).cloned())
                .collect();
            let addrs = self.client.addrs();
            tracing::info!(attempt, signers = ?members, session = %session.id(), "full signing");
            let session_event = Event::SigningSession {
                request_id: request_id.to_string(),
                session_id: session.id().to_string(),
                signers: members.iter().map(|m| m.1.clone()).collect(),
                mode: SigningMode::Full,
            };
            let results = self
                .client
                .call_each(&nodes, self.limits.session_timeout, |_| Command::Sign {
                    session: session.clone(),
                    intent: job.intent.clone(),
                    hash: job.hash,
                    path: job.path.clone(),
                    addrs: addrs.clone(),
                })
                .await;
            let failures: Vec<NodeFailure> =
                results.iter().filter_map(|r| r.clone().err()).collect();
            if failures.is_empty() {
                let answers: Vec<Response> = results.into_iter().filter_map(Result::ok).collect();
                let checked = agreed_signature(&answers).and_then(|sig| {
                    verify(curve, &verify_key, message, job.hash, &sig).map_err(|e| {
                        ServiceError::SigningFailed(format!(
                            "the signers returned a bad signature: {e}"
                        ))
                    })?;
                    Ok(sig)
                });
                return match checked {
                    Ok(sig) => Ok(Produced {
                        result: SignResult {
                            request_id: request_id.to_string(),
                            key_id: key.key_id.clone(),
                            curve,
                            public_key: hex::encode(&verify_key),
                            message: hex::encode(message),
                            hash: job.hash,
                            derivation_path: job.path.as_ref().map(ToString::to_string),
                            signature: hex::encode(sig),
                            signers: members.into_iter().map(|m| m.1).collect(),
                            mode: SignMode::Full,
                        },
                        session: session_event,
                    }),
                    Err(e) => {
                        self.journal
                            .write(
                                vec![
                                    session_event,
                                    Event::Aborted {
                                        request_id: request_id.to_string(),
                                        session_id: session.id().to_string(),
                                        blamed: None,
                                        reason: audit_reason(e.to_string()),
                                    },
                                ],
                                Vec::new(),
                            )
                            .await
                            .map_err(audit_error)?;
                        Err(e)
                    }
                };
            }
            self.liveness.forget();
            let decision = blame::decide(&reports(&members, &results));
            self.journal
                .write(
                    vec![
                        session_event,
                        Event::Aborted {
                            request_id: request_id.to_string(),
                            session_id: session.id().to_string(),
                            blamed: decision.blamed().map(str::to_string),
                            reason: audit_reason(format!("{}; {decision}", describe(&failures))),
                        },
                    ],
                    Vec::new(),
                )
                .await
                .map_err(audit_error)?;
            for f in &failures {
                errors.push(f.to_string());
                // A signer that refuses under its own policy check is left
                // out and another quorum tried (it may lag a policy update
                // or have missed the announcement); if every quorum
                // refuses, the answer is `policy_denied`.
                if f.code() == Some(ErrorCode::PolicyRefused) {
                    refusals.push(f.to_string());
                }
            }
            for e in &decision.excluded {
                excluded.insert(e.node.clone());
            }
            tracing::warn!(attempt, failures = %describe(&failures), blame = %decision, "signing attempt failed");
        }
        if !refusals.is_empty() {
            return Err(ServiceError::PolicyDenied(format!(
                "signers refused request {request_id} under their own policy check: {}",
                refusals.join("; ")
            )));
        }
        Err(ServiceError::SigningFailed(format!(
            "all {attempts} attempts failed: {}",
            errors.join("; ")
        )))
    }

    /// Signs with a cold key inside the HSM (off the async runtime) and
    /// verifies the signature independently before returning it.
    async fn sign_cold(&self, job: &Job<'_>, message: &[u8]) -> Result<Produced, ServiceError> {
        let key = job.key;
        let cold = self.cold_keys()?.clone();
        let curve = from_store(key.curve);
        let label = key.key_id.clone();
        let msg = message.to_vec();
        let hsm_hash = match job.hash {
            Some(HashAlg::Keccak256) => Some(HsmHash::Keccak256),
            Some(_) => Some(HsmHash::Sha256),
            None => None,
        };
        let request_id = job.intent.request.id.clone();
        let session_id = format!("hsm-{request_id}");
        let session = Event::SigningSession {
            request_id: request_id.clone(),
            session_id: session_id.clone(),
            signers: vec![COLD_PARTICIPANT.into()],
            mode: SigningMode::Hsm,
        };
        let signed = tokio::task::spawn_blocking(move || {
            let k = cold.find(&label)?;
            match hsm_hash {
                Some(h) => k.sign_with_hash(&msg, h),
                None => k.sign(&msg),
            }
        })
        .await
        .map_err(internal)?
        .map_err(|e| ServiceError::SigningFailed(format!("HSM: {e}")))
        .and_then(|sig| {
            verify(curve, &key.public_key, message, job.hash, &sig).map_err(|e| {
                ServiceError::SigningFailed(format!("the HSM returned a bad signature: {e}"))
            })?;
            Ok(sig)
        });
        match signed {
            Ok(sig) => Ok(Produced {
                result: SignResult {
                    request_id,
                    key_id: key.key_id.clone(),
                    curve,
                    public_key: hex::encode(&key.public_key),
                    message: hex::encode(message),
                    hash: job.hash,
                    derivation_path: None,
                    signature: hex::encode(sig),
                    signers: vec![COLD_PARTICIPANT.into()],
                    mode: SignMode::Hsm,
                },
                session,
            }),
            Err(e) => {
                self.journal
                    .write(
                        vec![
                            session,
                            Event::Aborted {
                                request_id,
                                session_id,
                                blamed: Some(COLD_PARTICIPANT.into()),
                                reason: audit_reason(e.to_string()),
                            },
                        ],
                        Vec::new(),
                    )
                    .await
                    .map_err(audit_error)?;
                Err(e)
            }
        }
    }

    /// Generates a cold key inside the HSM (off the async runtime).
    pub async fn generate_cold(
        &self,
        curve: Curve,
        label: String,
    ) -> Result<Vec<u8>, ServiceError> {
        let cold = self.cold_keys()?.clone();
        let hsm_curve = match curve {
            Curve::Secp256k1 => ColdCurve::Secp256k1,
            _ => ColdCurve::Ed25519,
        };
        let key = tokio::task::spawn_blocking(move || cold.generate(&label, hsm_curve))
            .await
            .map_err(internal)?
            .map_err(|e| ServiceError::Internal(format!("HSM: {e}")))?;
        Ok(key.public_key().to_vec())
    }
}

/// A key as the API shows it (kept here so signing and keys agree on tiers).
pub fn key_info(r: &KeyRecord) -> KeyInfo {
    KeyInfo {
        key_id: r.key_id.clone(),
        curve: from_store(r.curve),
        t: r.t,
        n: r.n,
        public_key: hex::encode(&r.public_key),
        chain_code: r.chain_code.as_ref().map(hex::encode),
        participants: r.participants.clone(),
        created_at: r.created_at,
        tier: if is_cold(r) {
            keyfold_policy::Tier::Cold
        } else {
            keyfold_policy::Tier::Hot
        },
    }
}

#[cfg(test)]
mod tests {
    use super::audit_reason;

    #[test]
    fn long_reasons_are_cut_to_fit_the_audit_log() {
        assert_eq!(audit_reason("short".into()), "short");
        let long = "é".repeat(4000);
        let cut = audit_reason(long);
        assert!(cut.len() < 4096, "{}", cut.len());
        assert!(cut.ends_with("(cut: 8000 bytes in all)"));
    }
}
