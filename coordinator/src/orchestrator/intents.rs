//! Signing requests through the policy: a request becomes an intent (the
//! typed request the policy sees), is evaluated, waits for approvals or a
//! time lock, and is signed once allowed. The signers re-check everything
//! themselves (see `keyfold-signer`'s policy module); this is the first of
//! the two checks, not the only one.

use std::collections::BTreeSet;

use keyfold_audit::{record, Event};
use keyfold_mpc::ecdsa::{DerivationPath, HashAlg};
use keyfold_mpc::{KeyId, RequestId};
use keyfold_policy::{
    evaluate, verify_approval, Approval, Decision, EvalContext, History, Outcome, Payload,
    Request as PolicyRequest, SignedPolicy, Tier,
};
use keyfold_proto::api::{
    DecisionView, PolicyInfo, RequestList, RequestStatus, SignOutcome, SignRequest, SignResult,
};
use keyfold_proto::signer::{wallet_name, Command, PolicyIntent, Response};
use keyfold_proto::{Curve, MAX_MESSAGE_BYTES};
use keyfold_store::{IntentInsert, IntentRecord, IntentState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::{from_store, internal, now, Orchestrator};
use crate::service::ServiceError;

/// Longest asset or destination string accepted.
const MAX_FIELD_LEN: usize = 256;

/// An intent as stored: the typed request and how to sign it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredIntent {
    pub key_id: String,
    pub request: PolicyRequest,
    pub hash: Option<HashAlg>,
    pub path: Option<String>,
}

fn state_for(d: &Decision) -> IntentState {
    match d.outcome {
        Outcome::Allow => IntentState::Approved,
        Outcome::NeedApprovals { .. } => IntentState::PendingApproval,
        Outcome::TimeLocked { .. } => IntentState::TimeLocked,
        _ => IntentState::Denied,
    }
}

fn denied_message(request_id: &str, d: &DecisionView) -> String {
    let rule = d
        .rule
        .as_ref()
        .map(|r| format!("rule `{}`", r.name))
        .unwrap_or_else(|| "the policy".into());
    match &d.outcome {
        Outcome::Deny { reason } => {
            format!(
                "request {request_id} denied by {rule} (policy version {}): {reason}",
                d.policy_version
            )
        }
        other => format!("request {request_id}: {other:?}"),
    }
}

/// The decision as stored with the intent, with its evaluation time.
fn decision_view(decision: &Decision, evaluated_at: u64) -> Result<String, ServiceError> {
    let mut view = DecisionView::from(decision);
    view.evaluated_at = Some(evaluated_at);
    serde_json::to_string(&view).map_err(internal)
}

fn unix_now() -> u64 {
    u64::try_from(now()).unwrap_or(0)
}

fn check_field(name: &str, v: &str) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > MAX_FIELD_LEN || v.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "transfer.{name} must be 1 to {MAX_FIELD_LEN} printable characters"
        )));
    }
    Ok(())
}

impl Orchestrator {
    /// `POST /v1/signatures`: records the request as an intent, evaluates it,
    /// and signs it when the policy allows it now.
    pub(super) async fn submit(
        &self,
        client: String,
        req: SignRequest,
    ) -> Result<SignOutcome, ServiceError> {
        let request_id = RequestId::new(req.request_id.clone())
            .map_err(|e| ServiceError::BadRequest(format!("request_id: {e}")))?;
        let record = self.key(&req.key_id)?;
        let key: KeyId = record.key_id.parse().map_err(internal)?;
        let curve = from_store(record.curve);
        let tier = if super::cold::is_cold(&record) {
            if req.derivation_path.is_some() {
                return Err(ServiceError::BadRequest(
                    "cold (HSM) keys do not support derivation paths".into(),
                ));
            }
            Tier::Cold
        } else {
            Tier::Hot
        };
        let path = req
            .derivation_path
            .as_deref()
            .map(|p| p.parse::<DerivationPath>())
            .transpose()
            .map_err(|e| ServiceError::BadRequest(format!("derivation_path: {e}")))?;
        let hash = match curve {
            Curve::Secp256k1 => Some(req.hash.unwrap_or(HashAlg::Sha256)),
            _ => {
                if req.hash.is_some() || path.is_some() {
                    return Err(ServiceError::BadRequest(
                        "hash and derivation_path apply to secp256k1 keys only".into(),
                    ));
                }
                None
            }
        };
        let (payload, asset, amount, destination) = match (&req.transfer, &req.message) {
            (Some(t), None) => {
                check_field("asset", &t.asset)?;
                check_field("destination", &t.destination)?;
                let amount: u128 = t.amount.parse().map_err(|_| {
                    ServiceError::BadRequest(format!(
                        "transfer.amount `{}` is not a whole number of smallest units (0 to 2^128-1)",
                        t.amount
                    ))
                })?;
                (
                    Payload::TypedTransfer,
                    t.asset.clone(),
                    amount,
                    t.destination.clone(),
                )
            }
            (None, Some(m)) => {
                let bytes = hex::decode(m)
                    .map_err(|e| ServiceError::BadRequest(format!("message is not hex: {e}")))?;
                if bytes.len() > MAX_MESSAGE_BYTES {
                    return Err(ServiceError::BadRequest(format!(
                        "message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
                        bytes.len()
                    )));
                }
                (Payload::RawBytes { bytes }, String::new(), 0, String::new())
            }
            _ => return Err(ServiceError::BadRequest(
                "give exactly one of `transfer` (a typed transfer) and `message` (raw bytes, hex)"
                    .into(),
            )),
        };
        // What the client asked, without the arrival time: a retry with the
        // same id and fields is the same request.
        let canonical = serde_json::json!({
            "key_id": record.key_id,
            "transfer": req.transfer,
            "message": req.message.as_ref().map(|m| m.to_lowercase()),
            "hash": hash,
            "derivation_path": path.as_ref().map(|p| p.to_string()),
            "initiator": client,
        });
        let fingerprint: [u8; 32] = Sha256::digest(canonical.to_string().as_bytes()).into();
        let time = self.policy_time();
        let request = PolicyRequest {
            id: request_id.to_string(),
            wallet: wallet_name(&key, path.as_ref()),
            tier,
            asset,
            amount,
            destination,
            initiator: client.clone(),
            time,
            payload,
        };
        let stored = StoredIntent {
            key_id: record.key_id.clone(),
            request,
            hash,
            path: path.as_ref().map(|p| p.to_string()),
        };
        let json = serde_json::to_string(&stored).map_err(internal)?;
        if let Ok(mut last) = self.last_request.lock() {
            *last = Some(std::time::Instant::now());
        }
        let span =
            tracing::info_span!("request", request = %request_id, key = %record.key_id, %client);
        async move {
            let inserted = {
                // Evaluation and recording are one step, so two requests near
                // a velocity limit cannot both be allowed.
                let _gate = self.policy_lock.lock().await;
                let evaluated_at = self.policy_time();
                let decision = self.evaluate(&stored.request, evaluated_at)?;
                let state = self.bypass_state(state_for(&decision));
                let view = decision_view(&decision, evaluated_at)?;
                // The audit log records the request and its decision before
                // anything else happens to it; if it cannot, nothing does.
                if self
                    .store
                    .get_intent(request_id.as_str())
                    .map_err(internal)?
                    .is_none()
                {
                    self.audit(vec![
                        record::request_event(
                            &stored.key_id,
                            &stored.request,
                            stored.hash.map(|h| h.to_string()).as_deref(),
                            stored.path.as_deref(),
                        ),
                        record::decision_event(request_id.as_str(), evaluated_at, &decision),
                    ])?;
                }
                let ins = self
                    .store
                    .insert_intent(
                        request_id.as_str(),
                        fingerprint,
                        &json,
                        state,
                        Some(&view),
                        i64::try_from(time).unwrap_or(i64::MAX),
                    )
                    .map_err(internal)?;
                if ins == IntentInsert::New {
                    tracing::info!(
                        state = %state,
                        rule = ?decision.rule.as_ref().map(|r| &r.name),
                        policy_version = decision.policy_version,
                        "policy decision"
                    );
                }
                (ins, state)
            };
            match inserted {
                // A request that waits (approvals, time lock) is announced
                // before answering, so each signer fixes its own first-seen
                // time now. One signed at once is announced in the
                // background: the signing command itself records the
                // signers' first-seen time, and the announcement only matters
                // to signers outside this quorum if the request is retried
                // later.
                (IntentInsert::New, state) if state != IntentState::Approved => {
                    self.announce(&record.participants, &stored.request).await;
                }
                (IntentInsert::New, _) => {
                    if let Some(me) = self.me.upgrade() {
                        let participants = record.participants.clone();
                        let request = stored.request.clone();
                        tokio::spawn(async move { me.announce(&participants, &request).await });
                    }
                }
                (IntentInsert::Conflict, _) => {
                    return Err(ServiceError::Conflict(format!(
                        "request_id {request_id} was used for another request"
                    )))
                }
                (IntentInsert::Existing(rec), _) => {
                    tracing::info!(state = %rec.state, "request seen before");
                }
                #[allow(unreachable_patterns)]
                (other, _) => return Err(internal(format!("unexpected insert outcome {other:?}"))),
            }
            self.advance(request_id.as_str()).await
        }
        .instrument(span)
        .await
    }

    /// The time of a request or a policy evaluation: now, but never before
    /// an earlier one (a clock stepping back would otherwise let past
    /// transfers fall out of velocity windows or backdate a request past its
    /// time lock, and auditors refuse both).
    fn policy_time(&self) -> u64 {
        let now = unix_now();
        let before = self
            .last_evaluated
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        before.max(now)
    }

    /// With the test-only switch on, the coordinator skips its own policy
    /// check (to show that the signers still refuse).
    fn bypass_state(&self, state: IntentState) -> IntentState {
        #[cfg(feature = "test-skip-policy")]
        if self.cfg.policy.skip_for_tests {
            tracing::error!("TEST-ONLY: the coordinator skips its policy check");
            return IntentState::Approved;
        }
        state
    }

    /// Evaluates `request` against the policy in force with the
    /// coordinator's history and the approvals recorded for it.
    ///
    /// A spent request counts from the time of the decision that allowed it
    /// (recorded in its decision and in the audit log), so an auditor can
    /// rebuild the same history from the log alone.
    fn evaluate(&self, request: &PolicyRequest, now: u64) -> Result<Decision, ServiceError> {
        let policy = self.policy.current();
        let mut history = History::default();
        for (json, counts_from) in self.store.spent_intents(&request.id).map_err(internal)? {
            let s: StoredIntent = serde_json::from_str(&json).map_err(internal)?;
            let at = u64::try_from(counts_from).unwrap_or(0);
            history.entries.push(s.request.history_entry(at));
        }
        let approvals = self.approvals_of(&request.id)?;
        let seen: BTreeSet<[u8; 16]> = self
            .store
            .approval_nonces_of_others(&request.id)
            .map_err(internal)?
            .into_iter()
            .collect();
        Ok(evaluate(
            &policy,
            request,
            &EvalContext {
                now,
                history: &history,
                approvals: &approvals,
                seen_nonces: &seen,
            },
        ))
    }

    fn approvals_of(&self, request_id: &str) -> Result<Vec<Approval>, ServiceError> {
        self.store
            .approvals_for(request_id)
            .map_err(internal)?
            .iter()
            .map(|j| serde_json::from_str(j).map_err(internal))
            .collect()
    }

    fn intent(&self, request_id: &str) -> Result<(IntentRecord, StoredIntent), ServiceError> {
        let rec = self
            .store
            .get_intent(request_id)
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
        let stored = serde_json::from_str(&rec.intent_json).map_err(internal)?;
        Ok((rec, stored))
    }

    /// Tells the key's signers about a new request so each records when it
    /// first saw it. Best effort: a signer that misses it records the time
    /// when it is asked to sign, which refuses a request older than the
    /// allowed skew (for example one that waited for approvals).
    async fn announce(&self, participants: &[String], request: &PolicyRequest) {
        let nodes: Vec<_> = participants
            .iter()
            .filter_map(|n| self.signer(n).cloned())
            .collect();
        let timeout = self.cfg.tuning.probe_timeout();
        let results = futures::future::join_all(nodes.iter().map(|n| {
            self.rpc(
                n,
                Command::Announce {
                    request: request.clone(),
                },
                timeout,
            )
        }))
        .await;
        for r in results {
            match r {
                Ok(Response::Announced { .. }) => {}
                Ok(other) => tracing::warn!(answer = ?other, "unexpected answer to announce"),
                Err(f) => {
                    tracing::warn!(node = %f.node, reason = %f.reason, "a signer did not record the request")
                }
            }
        }
    }

    /// Moves an intent forward as far as it can go now: re-evaluates a
    /// waiting one, signs an allowed one, reports a finished one.
    pub(super) async fn advance(&self, request_id: &str) -> Result<SignOutcome, ServiceError> {
        let (rec, stored) = self.intent(request_id)?;
        match rec.state {
            IntentState::Signed => return self.signed_result(request_id).map(SignOutcome::Signed),
            IntentState::Denied => {
                let view = self.status_of(&rec, &stored)?;
                let msg = view
                    .decision
                    .as_ref()
                    .map(|d| denied_message(request_id, d))
                    .unwrap_or_else(|| format!("request {request_id} was denied"));
                return Err(ServiceError::PolicyDenied(msg));
            }
            IntentState::Approved => {}
            _ => {
                let _gate = self.policy_lock.lock().await;
                let evaluated_at = self.policy_time();
                let decision = self.evaluate(&stored.request, evaluated_at)?;
                let state = self.bypass_state(state_for(&decision));
                let view = decision_view(&decision, evaluated_at)?;
                self.audit(vec![record::decision_event(
                    request_id,
                    evaluated_at,
                    &decision,
                )])?;
                let moved = self
                    .store
                    .transition_intent(request_id, &[rec.state], state, Some(&view))
                    .map_err(internal)?;
                if moved && state != rec.state {
                    tracing::info!(request = request_id, from = %rec.state, to = %state, "request advanced");
                }
                if !moved {
                    // Another task moved it first; report where it is.
                    let (rec, stored) = self.intent(request_id)?;
                    return Ok(SignOutcome::Pending(Box::new(
                        self.status_of(&rec, &stored)?,
                    )));
                }
                match state {
                    IntentState::Approved => {}
                    IntentState::Denied => {
                        return Err(ServiceError::PolicyDenied(denied_message(
                            request_id,
                            &DecisionView::from(&decision),
                        )))
                    }
                    _ => {
                        let (rec, stored) = self.intent(request_id)?;
                        return Ok(SignOutcome::Pending(Box::new(
                            self.status_of(&rec, &stored)?,
                        )));
                    }
                }
            }
        }
        self.sign_intent(&stored).await.map(SignOutcome::Signed)
    }

    /// Signs an allowed intent and records how it ended.
    async fn sign_intent(&self, stored: &StoredIntent) -> Result<SignResult, ServiceError> {
        let id = stored.request.id.clone();
        let record = self.key(&stored.key_id)?;
        let curve = from_store(record.curve);
        let path = stored
            .path
            .as_deref()
            .map(|p| p.parse::<DerivationPath>())
            .transpose()
            .map_err(internal)?;
        let intent = PolicyIntent {
            request: stored.request.clone(),
            approvals: self.approvals_of(&id)?,
            policy_version: self.policy.current().version(),
        };
        let request_id = RequestId::new(id.clone()).map_err(internal)?;
        let fingerprint: [u8; 32] =
            Sha256::digest(serde_json::to_string(stored).map_err(internal)?.as_bytes()).into();
        let stored_json = serde_json::json!({
            "client": stored.request.initiator,
            "request": stored,
        });
        let result = self
            .sign_recorded(
                record,
                curve,
                request_id,
                fingerprint,
                stored_json,
                intent,
                stored.hash,
                path,
            )
            .await;
        let (to, from) = match &result {
            Ok(_) => (
                IntentState::Signed,
                [IntentState::Approved, IntentState::Failed],
            ),
            Err(ServiceError::InProgress(_)) => return result,
            Err(_) => (
                IntentState::Failed,
                [IntentState::Approved, IntentState::Approved],
            ),
        };
        if let Err(e) = &result {
            // Allowed but not signed: it no longer counts against limits.
            if let Err(a) = self.audit(vec![Event::RequestFailed {
                request_id: id.clone(),
                reason: e.to_string(),
            }]) {
                tracing::error!(request = %id, error = %a, "cannot record the failure in the audit log");
            }
        }
        if let Err(e) = self.store.transition_intent(&id, &from, to, None) {
            tracing::error!(request = %id, error = %e, "cannot record the end of a request");
        }
        result
    }

    fn signed_result(&self, request_id: &str) -> Result<SignResult, ServiceError> {
        let rec = self
            .store
            .get_request(request_id)
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound(format!("no signature for {request_id}")))?;
        let json = rec.result_json.ok_or_else(|| {
            ServiceError::NotFound(format!("request {request_id} has no signature"))
        })?;
        serde_json::from_str(&json).map_err(internal)
    }

    fn status_of(
        &self,
        rec: &IntentRecord,
        stored: &StoredIntent,
    ) -> Result<RequestStatus, ServiceError> {
        let decision = rec
            .decision_json
            .as_deref()
            .map(serde_json::from_str::<DecisionView>)
            .transpose()
            .map_err(internal)?;
        let signing = self.store.get_request(&rec.request_id).map_err(internal)?;
        let result = signing
            .as_ref()
            .and_then(|r| r.result_json.as_deref())
            .map(serde_json::from_str::<SignResult>)
            .transpose()
            .map_err(internal)?;
        let error = if rec.state == IntentState::Failed {
            signing.and_then(|r| r.error_json)
        } else {
            None
        };
        Ok(RequestStatus {
            request_id: rec.request_id.clone(),
            state: rec.state.to_string(),
            request_hash: hex::encode(stored.request.canonical_hash()),
            message: hex::encode(stored.request.signing_message()),
            request: stored.request.clone(),
            decision,
            approvals: self.approvals_of(&rec.request_id)?,
            result,
            error,
        })
    }

    pub(super) fn request_status(&self, request_id: &str) -> Result<RequestStatus, ServiceError> {
        let (rec, stored) = self.intent(request_id)?;
        self.status_of(&rec, &stored)
    }

    pub(super) fn list_request_status(
        &self,
        states: &[String],
    ) -> Result<RequestList, ServiceError> {
        let states: Vec<IntentState> = if states.is_empty() {
            vec![IntentState::PendingApproval, IntentState::TimeLocked]
        } else {
            states
                .iter()
                .map(|s| {
                    IntentState::parse(s).ok_or_else(|| {
                        ServiceError::BadRequest(format!(
                            "unknown state `{s}` (pending_approval, time_locked, approved, denied, signed, failed)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let requests = self
            .store
            .list_intents(&states, 1000)
            .map_err(internal)?
            .iter()
            .map(|rec| {
                let stored: StoredIntent =
                    serde_json::from_str(&rec.intent_json).map_err(internal)?;
                self.status_of(rec, &stored)
            })
            .collect::<Result<_, _>>()?;
        Ok(RequestList { requests })
    }

    /// Records an approval or rejection and advances the request.
    pub(super) async fn add_approval(
        &self,
        client: String,
        request_id: String,
        approval: Approval,
    ) -> Result<RequestStatus, ServiceError> {
        let (rec, stored) = self.intent(&request_id)?;
        if !matches!(
            rec.state,
            IntentState::PendingApproval | IntentState::TimeLocked
        ) {
            return Err(ServiceError::Conflict(format!(
                "request {request_id} is {}; it no longer takes approvals",
                rec.state
            )));
        }
        let policy = self.policy.current();
        let seen: BTreeSet<[u8; 16]> = self
            .store
            .approval_nonces_of_others(&request_id)
            .map_err(internal)?
            .into_iter()
            .collect();
        verify_approval(&policy, &stored.request, &approval, unix_now(), &seen).map_err(|e| {
            ServiceError::BadRequest(format!(
                "approval by {} refused: {e}",
                hex::encode(approval.approver)
            ))
        })?;
        let json = serde_json::to_string(&approval).map_err(internal)?;
        {
            // Logged and stored in the order the evaluations see them.
            let _gate = self.policy_lock.lock().await;
            let known = self
                .approvals_of(&request_id)?
                .iter()
                .any(|a| a.nonce == approval.nonce);
            if !known {
                self.audit(vec![record::approval_event(&request_id, &approval)])?;
            }
            self.store
                .add_approval(&request_id, &approval.nonce, &json)
                .map_err(|e| ServiceError::BadRequest(format!("approval refused: {e}")))?;
        }
        tracing::info!(
            request = %request_id,
            %client,
            approver = %hex::encode(approval.approver),
            decision = ?approval.decision,
            "approval recorded"
        );
        match self.advance(&request_id).await {
            Ok(_) | Err(ServiceError::PolicyDenied(_)) => {}
            Err(e) => tracing::warn!(request = %request_id, error = %e, "request did not advance"),
        }
        self.request_status(&request_id)
    }

    /// Requests whose time lock has passed: advance them.
    pub(super) async fn release_time_locks(&self) {
        let Ok(locked) = self.store.list_intents(&[IntentState::TimeLocked], 1000) else {
            return;
        };
        let now = unix_now();
        for rec in locked {
            let until = rec
                .decision_json
                .as_deref()
                .and_then(|d| serde_json::from_str::<DecisionView>(d).ok())
                .and_then(|d| match d.outcome {
                    Outcome::TimeLocked { until } => Some(until),
                    _ => None,
                });
            if until.is_some_and(|u| u > now) {
                continue;
            }
            match self.advance(&rec.request_id).await {
                Ok(SignOutcome::Signed(_)) => {
                    tracing::info!(request = %rec.request_id, "time lock passed: signed")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(request = %rec.request_id, error = %e, "time-locked request")
                }
            }
        }
    }

    /// The policy in force.
    pub(super) fn policy_info(&self) -> Result<PolicyInfo, ServiceError> {
        let p = self.policy.current();
        Ok(PolicyInfo {
            version: p.version(),
            document: p.to_toml().map_err(internal)?,
            rules: keyfold_policy::describe(&p),
        })
    }

    /// Verifies and applies a signed policy update, then pushes it to every
    /// signer; a signer that cannot take it is named in the error.
    pub(super) async fn apply_policy_update(
        &self,
        update: SignedPolicy,
    ) -> Result<PolicyInfo, ServiceError> {
        let _gate = self.policy_lock.lock().await;
        let repeat = update.is_in_force(&self.policy.current());
        if repeat {
            // The update in force, pushed again for signers that missed it:
            // each signer verifies the admin signatures itself.
            tracing::info!(
                version = self.policy.current().version(),
                "pushing the policy in force again"
            );
        } else {
            let new = update
                .verify(&self.policy.current())
                .map_err(|e| ServiceError::BadRequest(format!("policy update refused: {e}")))?;
            self.audit(vec![record::policy_event(&new, Some(&update))])?;
            self.policy
                .update(&update)
                .map_err(ServiceError::BadRequest)?;
        }
        let timeout = self.cfg.tuning.probe_timeout();
        let results = futures::future::join_all(self.cfg.signers.iter().map(|s| {
            self.rpc(
                s,
                Command::UpdatePolicy {
                    update: update.clone(),
                },
                timeout,
            )
        }))
        .await;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|f| f.to_string()))
            .collect();
        if !failed.is_empty() {
            return Err(ServiceError::SigningFailed(format!(
                "the coordinator enforces the new policy, but these signers did not take it (push it again when they are up): {}",
                failed.join("; ")
            )));
        }
        self.policy_info()
    }
}
