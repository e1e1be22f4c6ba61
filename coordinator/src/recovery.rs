//! After a crash: the store catches up with the audit log, and requests that
//! were being signed are closed.
//!
//! The journal writes a step's audit events (fsynced) and its store rows
//! (committed with `synchronous=NORMAL`) in one transaction, and records in
//! the store how many audit entries it reflects. A machine crash can lose
//! the store's last commits but not the log's entries: at start, the
//! entries past that count are applied to the store again ([`catch_up`]),
//! from the audit events alone: keys, policy versions, requests with their
//! decisions, approvals, signatures, failures and closings, token events,
//! policy shadows installed or ended (their per-request decisions are in
//! the store only and are not restored).
//!
//! Requests left `approved` or `signing` by a crash never got a signature
//! released (a signature is released only once logged, and a logged one
//! was applied above): they are closed as failed, with a `request_failed`
//! entry, so they stop counting against velocity limits and a retry signs
//! them ([`close_interrupted`]).

use std::collections::HashMap;

use keyfold_audit::{Entry, Event, SigningMode};
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_policy::{Approval, Outcome, RuleRef};
use keyfold_proto::api::{DecisionView, RequestState, SignMode, SignResult};
use keyfold_store::{CoordinatorStore, Op};

use crate::journal::Journal;
use crate::keys::{from_store, record_of};
use crate::requests::lifecycle::{self, Decided, Event as LifeEvent, Limits};
use crate::requests::record::{Loaded, StoredRequest};
use crate::requests::{record_events, Draft};

/// A request being rebuilt from the log.
struct Rebuilt {
    draft: Draft,
    ops: Vec<Op>,
    /// The last session's signers and mode (for the result).
    session: Option<(Vec<String>, SigningMode)>,
}

fn mode_of(m: SigningMode) -> SignMode {
    match m {
        SigningMode::Presignature => SignMode::Presignature,
        SigningMode::Hsm => SignMode::Hsm,
        _ => SignMode::Full,
    }
}

/// Applies the audit entries the store does not reflect yet. Returns how
/// many were applied.
pub fn catch_up(
    store: &CoordinatorStore,
    journal: &Journal,
    tail: &[Entry],
) -> Result<usize, String> {
    if tail.is_empty() {
        return Ok(0);
    }
    tracing::warn!(
        entries = tail.len(),
        first = tail[0].index,
        "the store lags the audit log (a crash): applying the log's last entries again"
    );
    let limits = Limits::default();
    let mut requests: HashMap<String, Rebuilt> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut schedules_seen = crate::schedules::recovery::Seen::new();
    let mut escrows_created = std::collections::HashSet::new();
    let mut shadow_seen = crate::policy::shadow::RecoverySeen::default();
    let err = |e: &dyn std::fmt::Display| format!("catching up with the audit log: {e}");
    for entry in tail {
        let at_secs = u64::try_from(entry.time.div_euclid(1000)).unwrap_or(0);
        let event = &entry.event;
        if let Event::KeyCreated { key_id, .. } = event {
            if store.get_key(key_id).map_err(|e| err(&e))?.is_none() {
                if let Some(k) = record_of(event, entry.time.div_euclid(1000)) {
                    ops.push(Op::InsertKey(k));
                }
            }
            continue;
        }
        if let Event::PolicyVersion {
            version,
            document,
            update,
            ..
        } = event
        {
            ops.push(Op::InsertPolicy {
                version: *version,
                document: document.clone(),
                update_json: update.clone(),
                at: entry.time.div_euclid(1000),
            });
            continue;
        }
        if let Event::ClientToken {
            token_id, action, ..
        } = event
        {
            ops.push(Op::TokenLogged {
                id: i64::try_from(*token_id).unwrap_or(0),
                revoked: action == "revoked",
            });
            continue;
        }
        if matches!(
            event,
            Event::RiskTree { .. }
                | Event::RiskDecision { .. }
                | Event::RiskRefusal { .. }
                | Event::CustomerAuth { .. }
                | Event::Freeze { .. }
                | Event::Review { .. }
        ) {
            if let Some(op) =
                crate::risk::recovery::op_of(store, event, entry.time.div_euclid(1000))
                    .map_err(|e| err(&e))?
            {
                ops.push(Op::Risk(op));
            }
            continue;
        }
        if matches!(event, Event::Escrow { .. }) {
            if let Some(op) = crate::escrow::recovery_op(
                store,
                &mut escrows_created,
                event,
                entry.time.div_euclid(1000),
            )
            .map_err(|e| err(&e))?
            {
                ops.push(Op::Escrow(op));
            }
            continue;
        }
        if matches!(event, Event::Schedule { .. }) {
            if let Some(op) = crate::schedules::recovery::op_of(
                store,
                &mut schedules_seen,
                event,
                entry.time.div_euclid(1000),
            )
            .map_err(|e| err(&e))?
            {
                ops.push(Op::Schedule(op));
            }
            continue;
        }
        if matches!(event, Event::PolicyShadow { .. }) {
            if let Some(op) = crate::policy::shadow::recovery_op(
                store,
                &mut shadow_seen,
                event,
                entry.time.div_euclid(1000),
            )
            .map_err(|e| err(&e))?
            {
                ops.push(Op::Shadow(op));
            }
            continue;
        }
        let Some(id) = event.request_id().map(str::to_string) else {
            continue;
        };
        if !requests.contains_key(&id) {
            let draft = match store.get_request(&id).map_err(|e| err(&e))? {
                Some(row) => {
                    let l = Loaded::parse(row).map_err(|e| err(&e))?;
                    if l.stored.is_none() {
                        continue;
                    }
                    Draft::of(&l).map_err(|e| err(&e))?
                }
                None => {
                    let Event::SignRequest {
                        key_id,
                        request,
                        hash_alg,
                        derivation_path,
                        ..
                    } = event
                    else {
                        // An event of a request whose record was never
                        // applied and is not in this tail: nothing to do.
                        continue;
                    };
                    let stored = StoredRequest {
                        key_id: key_id.clone(),
                        request: serde_json::from_str(request).map_err(|e| err(&e))?,
                        hash: hash_alg
                            .as_deref()
                            .map(|h| h.parse::<HashAlg>())
                            .transpose()
                            .map_err(|e| err(&e))?,
                        path: derivation_path.clone(),
                        modules: Vec::new(),
                    };
                    Draft::new(stored)
                }
            };
            order.push(id.clone());
            requests.insert(
                id.clone(),
                Rebuilt {
                    draft,
                    ops: Vec::new(),
                    session: None,
                },
            );
        }
        let Some(r) = requests.get_mut(&id) else {
            continue;
        };
        if matches!(event, Event::Decision { .. }) && r.draft.snapshot.state == RequestState::Failed
        {
            // A failed request submitted again: decided anew.
            if let Ok(next) =
                lifecycle::step(&r.draft.snapshot, &LifeEvent::Resubmitted, at_secs, &limits)
            {
                r.draft.hold(next);
            }
        }
        let life = match event {
            Event::Decision {
                detail,
                evaluated_at,
                rule,
                policy_version,
                ..
            } => {
                let outcome: Outcome = serde_json::from_str(detail).map_err(|e| err(&e))?;
                let view = DecisionView {
                    outcome: outcome.clone(),
                    rule: rule.clone().map(|name| RuleRef { index: 0, name }),
                    policy_version: *policy_version,
                    refused_approvals: Vec::new(),
                    evaluated_at: Some(*evaluated_at),
                };
                r.draft.decision_json = serde_json::to_string(&view).ok();
                if matches!(outcome, Outcome::Allow) {
                    r.draft.spent_at = Some(i64::try_from(*evaluated_at).unwrap_or(i64::MAX));
                }
                Some(LifeEvent::Decided(match outcome {
                    Outcome::Allow => Decided::Allow,
                    Outcome::NeedApprovals { .. } => Decided::NeedApprovals,
                    Outcome::TimeLocked { until } => Decided::TimeLocked { until },
                    Outcome::Deny { reason } => Decided::Deny { reason },
                }))
            }
            Event::Approval { approval, .. } => {
                let a: Approval = serde_json::from_str(approval).map_err(|e| err(&e))?;
                r.ops.push(Op::AddApproval {
                    request_id: id.clone(),
                    nonce: a.nonce,
                    approval_json: approval.clone(),
                    at: entry.time.div_euclid(1000),
                });
                None
            }
            Event::SigningSession { signers, mode, .. } => {
                r.session = Some((signers.clone(), *mode));
                if r.draft.snapshot.state == RequestState::Approved {
                    Some(LifeEvent::SigningStarted)
                } else {
                    None
                }
            }
            Event::Signature {
                key_id,
                public_key,
                signature,
                ..
            } => {
                let (signers, mode) = r.session.clone().unwrap_or((Vec::new(), SigningMode::Full));
                let curve = store
                    .get_key(key_id)
                    .map_err(|e| err(&e))?
                    .map(|k| from_store(k.curve))
                    .ok_or_else(|| err(&format!("unknown key {key_id}")))?;
                let s = &r.draft.stored;
                let result = SignResult {
                    request_id: id.clone(),
                    key_id: key_id.clone(),
                    curve,
                    public_key: hex::encode(&public_key.0),
                    message: hex::encode(s.request.signing_message()),
                    hash: s.hash,
                    derivation_path: s.path.clone(),
                    signature: hex::encode(&signature.0),
                    signers,
                    mode: mode_of(mode),
                };
                r.draft.result_json = serde_json::to_string(&result).ok();
                Some(LifeEvent::Signed { steps: Vec::new() })
            }
            Event::RequestFailed { reason, .. } => {
                r.draft.spent_at = None;
                r.draft.error_json = Some(serde_json::json!({ "error": reason }).to_string());
                Some(LifeEvent::SigningFailed {
                    reason: reason.clone(),
                })
            }
            Event::RequestClosed { state, reason, .. } => {
                r.draft.spent_at = None;
                let mut snap = r.draft.snapshot.clone();
                snap.state = RequestState::parse(state).unwrap_or(RequestState::Rejected);
                let next = lifecycle::Next {
                    snapshot: snap.clone(),
                    hops: vec![snap.state],
                    cause: reason.clone(),
                    records: Vec::new(),
                    actions: Vec::new(),
                };
                let o = r.draft.ops(&next, entry.time).map_err(|e| err(&e))?;
                r.ops.extend(o);
                None
            }
            _ => None,
        };
        if let Some(ev) = life {
            match lifecycle::step(&r.draft.snapshot, &ev, at_secs, &limits) {
                Ok(next) => {
                    let o = r.draft.ops(&next, entry.time).map_err(|e| err(&e))?;
                    r.ops.extend(o);
                }
                Err(e) => {
                    tracing::warn!(request = %id, error = %e, "an audit entry did not fit the request's state; skipped");
                }
            }
        }
    }
    for id in order {
        if let Some(r) = requests.remove(&id) {
            ops.extend(r.ops);
        }
    }
    let n = tail.len();
    journal
        .submit(Vec::new(), ops)
        .done_blocking()
        .map_err(|e| err(&e))?;
    Ok(n)
}

/// Closes the requests a crash left `approved` or `signing` (see the module
/// docs). Returns how many.
pub fn close_interrupted(
    store: &CoordinatorStore,
    journal: &Journal,
    now_ms: i64,
) -> Result<usize, String> {
    let rows = store
        .requests_in_states(&["approved", "signing", "received"])
        .map_err(|e| e.to_string())?;
    let limits = Limits::default();
    let now = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
    let mut closed = 0;
    for row in rows {
        let id = row.request_id.clone();
        let l = Loaded::parse(row).map_err(|e| e.to_string())?;
        if l.stored.is_none() {
            continue;
        }
        let mut draft = Draft::of(&l).map_err(|e| e.to_string())?;
        let reason =
            "the coordinator restarted while this request was being signed; no signature was released"
                .to_string();
        if draft.snapshot.state == RequestState::Received {
            // Recorded but never decided: nothing was spent.
            draft.snapshot.state = RequestState::Approved;
        }
        let next = lifecycle::step(
            &draft.snapshot,
            &LifeEvent::SigningFailed {
                reason: reason.clone(),
            },
            now,
            &limits,
        )
        .map_err(|e| e.to_string())?;
        draft.spent_at = None;
        draft.error_json = Some(serde_json::json!({ "error": reason }).to_string());
        let events = record_events(&id, &next.records);
        let ops = draft.ops(&next, now_ms).map_err(|e| e.to_string())?;
        journal
            .submit(events, ops)
            .done_blocking()
            .map_err(|e| e.to_string())?;
        tracing::warn!(request = %id, "closed a request the last run left in progress");
        closed += 1;
    }
    Ok(closed)
}
