//! Signing requests: the services that drive the pure [`lifecycle`].
//!
//! Every change to a request follows the same path, one task per request at
//! a time ([`locks`]):
//!
//! 1. read the request and build its lifecycle [`lifecycle::Snapshot`];
//! 2. feed the event (a submission, a module verdict, a decision, an
//!    approval, a tick, a signature, a cancellation) to
//!    [`lifecycle::step`], which says where the request goes, what the audit
//!    log must hold and what to do next;
//! 3. write the transition, its audit events and its store rows as one
//!    journal step (under the policy gate when a decision is involved);
//! 4. carry out the actions (evaluate, announce to the signers, sign, run a
//!    post-signing step, notify modules).
//!
//! The files: [`intake`] (canonical fields), [`record`] (stored forms),
//! [`lifecycle`] (the state machine), [`approvals`], [`view`] (what the API
//! shows), [`timers`] (time locks, expiry, step retries).

pub mod approvals;
pub mod intake;
pub mod lifecycle;
pub mod locks;
pub mod record;
pub mod timers;
pub mod view;

use std::collections::BTreeSet;

use keyfold_audit::{record as audit_record, Event};
use keyfold_policy::{Approval, Decision, HistoryEntry, Outcome};
use keyfold_proto::api::{
    DecisionView, ModuleData, RequestState, RequestStatus, SignOutcome, SignRequest, SignResult,
};
use keyfold_proto::signer::{Command, PolicyIntent, Response};
use keyfold_store::{NewRequest, Op, RequestUpdate, TransitionRow};
use tracing::Instrument;

use crate::core::Coordinator;
use crate::journal::JournalError;
use crate::modules::StepOutcome;
use crate::service::{Caller, ServiceError};
use crate::signing::Job;
use lifecycle::{Action, Canceller, Decided, Event as LifeEvent, Next, Record, Snapshot};
use record::{update_of, Loaded, StoredRequest};

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The lifecycle's view of a policy decision.
pub(crate) fn decided_of(d: &Decision) -> Decided {
    match &d.outcome {
        Outcome::Allow => Decided::Allow,
        Outcome::NeedApprovals { .. } => Decided::NeedApprovals,
        Outcome::TimeLocked { until } => Decided::TimeLocked { until: *until },
        Outcome::Deny { reason } => Decided::Deny {
            reason: format!(
                "{}{reason} (policy version {})",
                d.rule
                    .as_ref()
                    .map(|r| format!("rule `{}`: ", r.name))
                    .unwrap_or_default(),
                d.policy_version
            ),
        },
    }
}

/// The decision as stored with the request, with its evaluation time.
fn decision_json(decision: &Decision, at: u64) -> Result<String, ServiceError> {
    let mut view = DecisionView::from(decision);
    view.evaluated_at = Some(at);
    serde_json::to_string(&view).map_err(internal)
}

/// A request's row as it is about to be written: where it is now, and
/// what goes with the next write.
pub(crate) struct Draft {
    /// The request.
    pub stored: StoredRequest,
    /// `None` for a request not recorded yet; else its row's revision.
    pub rev: Option<i64>,
    /// Its snapshot before the event.
    pub snapshot: Snapshot,
    /// Columns kept from the row unless the step changes them.
    pub decision_json: Option<String>,
    /// The result.
    pub result_json: Option<String>,
    /// The error.
    pub error_json: Option<String>,
    /// Spent from.
    pub spent_at: Option<i64>,
    /// Fingerprint.
    pub fingerprint: [u8; 32],
    /// Transitions taken in memory and written with the next step (a
    /// resubmission's `failed -> received`): (from, to, cause).
    pub pending: Vec<(RequestState, RequestState, String)>,
}

impl Draft {
    /// A request never recorded.
    pub fn new(stored: StoredRequest) -> Draft {
        let fingerprint = stored.fingerprint();
        Draft {
            stored,
            rev: None,
            snapshot: Snapshot::received(),
            decision_json: None,
            result_json: None,
            error_json: None,
            spent_at: None,
            fingerprint,
            pending: Vec::new(),
        }
    }

    /// A recorded request.
    pub fn of(l: &Loaded) -> Result<Draft, ServiceError> {
        Ok(Draft {
            stored: l.request()?.clone(),
            rev: Some(l.row.rev),
            snapshot: l.snapshot(),
            decision_json: l.row.decision_json.clone(),
            result_json: l.row.result_json.clone(),
            error_json: l.row.error_json.clone(),
            spent_at: l.row.spent_at,
            fingerprint: l.row.fingerprint,
            pending: Vec::new(),
        })
    }

    /// Takes `next` in memory only; its transition is written with the
    /// next step.
    pub fn hold(&mut self, next: Next) {
        for hop in &next.hops {
            self.pending
                .push((self.snapshot.state, *hop, next.cause.clone()));
        }
        self.snapshot = next.snapshot;
    }

    /// The history entry of the request counted from `at`.
    pub fn entry(&self, at: u64) -> HistoryEntry {
        self.stored.request.history_entry(at)
    }

    /// The store operations that record `next` (at `at_ms`) and move this
    /// draft past it.
    pub fn ops(&mut self, next: &Next, at_ms: i64) -> Result<Vec<Op>, ServiceError> {
        let at = at_ms.div_euclid(1000);
        let update: RequestUpdate = update_of(
            &next.snapshot,
            self.decision_json.clone(),
            self.result_json.clone(),
            self.error_json.clone(),
            self.spent_at,
        );
        let id = self.stored.request.id.clone();
        let mut ops = Vec::with_capacity(1 + next.hops.len());
        match self.rev {
            None => {
                ops.push(Op::InsertRequest(NewRequest {
                    request_id: id.clone(),
                    fingerprint: self.fingerprint,
                    key_id: self.stored.key_id.clone(),
                    initiator: self.stored.request.initiator.clone(),
                    request_json: serde_json::to_string(&self.stored).map_err(internal)?,
                    update,
                    at,
                }));
                self.rev = Some(1);
            }
            Some(rev) => {
                ops.push(Op::UpdateRequest {
                    request_id: id.clone(),
                    rev,
                    update,
                    at,
                });
                self.rev = Some(rev + 1);
            }
        }
        for (from, to, cause) in std::mem::take(&mut self.pending) {
            ops.push(Op::AddTransition {
                request_id: id.clone(),
                transition: TransitionRow {
                    from_state: Some(from.as_str().to_string()),
                    to_state: to.as_str().to_string(),
                    at_ms,
                    cause,
                },
            });
        }
        let mut from = match (self.snapshot.state, ops.first()) {
            (RequestState::Received, Some(Op::InsertRequest(_))) => None,
            (s, _) => Some(s),
        };
        for hop in &next.hops {
            ops.push(Op::AddTransition {
                request_id: id.clone(),
                transition: TransitionRow {
                    from_state: from.map(|s| s.as_str().to_string()),
                    to_state: hop.as_str().to_string(),
                    at_ms,
                    cause: next.cause.clone(),
                },
            });
            from = Some(*hop);
        }
        if self.rev == Some(1) && next.hops.is_empty() {
            // The first record of a request always has a history line.
            ops.push(Op::AddTransition {
                request_id: id,
                transition: TransitionRow {
                    from_state: None,
                    to_state: next.snapshot.state.as_str().to_string(),
                    at_ms,
                    cause: "recorded".into(),
                },
            });
        }
        self.snapshot = next.snapshot.clone();
        Ok(ops)
    }
}

/// The audit events of a transition's [`Record`]s.
pub(crate) fn record_events(request_id: &str, records: &[Record]) -> Vec<Event> {
    records
        .iter()
        .map(|r| match r {
            Record::Failed { reason } => Event::RequestFailed {
                request_id: request_id.to_string(),
                reason: crate::signing::audit_reason(reason.clone()),
            },
            Record::Closed { state, by, reason } => Event::RequestClosed {
                request_id: request_id.to_string(),
                state: state.as_str().to_string(),
                by: by.clone(),
                reason: crate::signing::audit_reason(reason.clone()),
            },
        })
        .collect()
}

/// The audit record of a request entering the coordinator.
pub(crate) fn request_event(stored: &StoredRequest) -> Event {
    audit_record::request_event(
        &stored.key_id,
        &stored.request,
        stored.hash.map(|h| h.to_string()).as_deref(),
        stored.path.as_deref(),
    )
}

impl Coordinator {
    /// Reads and parses request `request_id` (off the async runtime).
    pub(crate) async fn load(&self, request_id: &str) -> Result<Option<Loaded>, ServiceError> {
        let id = request_id.to_string();
        let row = self.read(move |s| s.get_request(&id)).await?;
        row.map(Loaded::parse).transpose()
    }

    /// Maps a journal failure to the API's error.
    pub(crate) fn journal_error(&self, e: JournalError) -> ServiceError {
        match e {
            JournalError::AuditUnavailable(_) | JournalError::StoreUnavailable(_) => {
                ServiceError::AuditUnavailable(e.to_string())
            }
            JournalError::Store(s) => match s.as_ref() {
                keyfold_store::StoreError::Conflict { what, id } => {
                    ServiceError::Conflict(format!("{what} {id} is already used"))
                }
                keyfold_store::StoreError::StaleRevision { request_id, .. } => {
                    ServiceError::InProgress(format!(
                        "request {request_id} changed while this call handled it; retry"
                    ))
                }
                other => ServiceError::Internal(other.to_string()),
            },
            JournalError::Stopped => ServiceError::Internal(e.to_string()),
        }
    }

    /// `POST /v1/signatures`: records the request, lets the modules and the
    /// policy decide, and signs it when allowed now.
    pub(crate) async fn submit(
        &self,
        client: String,
        req: SignRequest,
    ) -> Result<SignOutcome, ServiceError> {
        intake::check_client_id("request_id", &req.request_id)?;
        if req
            .request_id
            .starts_with(crate::payments::payout::REQUEST_PREFIX)
        {
            return Err(ServiceError::BadRequest(format!(
                "request_id may not start with \"{}\": those are the payouts' own requests (POST /v1/payouts)",
                crate::payments::payout::REQUEST_PREFIX
            )));
        }
        let key = self.key(&req.key_id)?;
        self.pool.touch();
        let stored = intake::accept(&client, &req, &key, 0)?;
        let span =
            tracing::info_span!("request", request = %req.request_id, key = %key.key_id, %client);
        self.submit_locked(stored).instrument(span).await
    }

    /// Submits a request a module built (a payout): the same path as
    /// `POST /v1/signatures` from there on.
    pub(crate) async fn submit_stored(
        &self,
        stored: StoredRequest,
    ) -> Result<SignOutcome, ServiceError> {
        self.pool.touch();
        let span =
            tracing::info_span!("request", request = %stored.request.id, key = %stored.key_id);
        self.submit_locked(stored).instrument(span).await
    }

    async fn submit_locked(&self, stored: StoredRequest) -> Result<SignOutcome, ServiceError> {
        let request_id = stored.request.id.clone();
        let _guard = self.locks.lock(&request_id).await;
        let mut draft = match self.load(&request_id).await? {
            Some(existing) => {
                if existing.row.fingerprint != stored.fingerprint() {
                    return Err(ServiceError::Conflict(format!(
                        "request_id {request_id} was used for another request"
                    )));
                }
                if existing.state != RequestState::Failed
                    || !existing.life.steps.is_empty()
                    || matches!(
                        stored.request.payload,
                        keyfold_policy::Payload::ChainTransaction { .. }
                    )
                {
                    // A failed payout gave its nonce back (another payout
                    // may hold it now): its transaction is never signed
                    // again. The payout stays failed; pay with a new one.
                    tracing::info!(state = %existing.state, "request seen before");
                    return self.outcome_of(&existing).await;
                }
                // Failed earlier, no signature released: evaluate it again.
                tracing::info!("a failed request submitted again");
                let mut draft = Draft::of(&existing)?;
                let next = self.step(&draft.snapshot, &LifeEvent::Resubmitted)?;
                draft.hold(next);
                draft.error_json = None;
                draft
            }
            None => {
                let mut draft = Draft::new(stored);
                // Modules first: they may attach data, hold or refuse.
                let mut verdicts = Vec::new();
                #[cfg(feature = "bench-unguarded")]
                let modules: Vec<_> = if self.cfg.bench.unguarded {
                    Vec::new()
                } else {
                    self.modules.iter().collect()
                };
                #[cfg(not(feature = "bench-unguarded"))]
                let modules: Vec<_> = self.modules.iter().collect();
                for m in modules {
                    let p = m.prepare(&draft.stored).await;
                    if let Some(data) = p.data {
                        draft.stored.modules.push(ModuleData {
                            module: m.name().to_string(),
                            data,
                        });
                    }
                    verdicts.push((m.name().to_string(), p.verdict));
                }
                // The policy (here and at every signer) may match the risk
                // engine's outcome; the facts become part of the request
                // (and of its canonical hash, which approvals sign).
                draft.stored.request.risk = crate::risk::facts_of(&draft.stored);
                let next = self.step(&draft.snapshot, &LifeEvent::Prepared { verdicts })?;
                if !next.actions.contains(&Action::Evaluate) {
                    // Held or refused by a module: recorded without a
                    // decision.
                    self.record_prepared(&mut draft, &next).await?;
                    self.carry_out(&mut draft, &next).await?;
                    return self.answer(&request_id).await;
                }
                draft
            }
        };
        let decided = self.decide(&mut draft, None).await?;
        self.carry_out(&mut draft, &decided).await?;
        self.answer(&request_id).await
    }

    /// What `POST /v1/signatures` answers for a request in its current state.
    async fn answer(&self, request_id: &str) -> Result<SignOutcome, ServiceError> {
        let loaded = self
            .load(request_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
        self.outcome_of(&loaded).await
    }

    /// The answer for a request that exists.
    pub(crate) async fn outcome_of(&self, l: &Loaded) -> Result<SignOutcome, ServiceError> {
        let id = &l.row.request_id;
        match l.state {
            RequestState::Completed | RequestState::Signed => {
                let json = l.row.result_json.as_deref().ok_or_else(|| {
                    ServiceError::Internal(format!("signed request {id} has no result"))
                })?;
                Ok(SignOutcome::Signed(
                    serde_json::from_str(json).map_err(internal)?,
                ))
            }
            RequestState::Rejected => {
                let status = self.status_of(l).await?;
                let why = status
                    .history
                    .last()
                    .map(|t| t.cause.clone())
                    .unwrap_or_else(|| "rejected".into());
                Err(ServiceError::PolicyDenied(format!("request {id} {why}")))
            }
            RequestState::Expired | RequestState::Cancelled => {
                Err(ServiceError::Conflict(format!(
                    "request {id} is {}; submit a new request with a new request_id",
                    l.state
                )))
            }
            RequestState::Failed => {
                let why = l.row.error_json.clone().unwrap_or_default();
                Err(ServiceError::SigningFailed(format!(
                    "request {id} failed: {why}"
                )))
            }
            RequestState::Approved | RequestState::Signing | RequestState::Received => Err(
                ServiceError::InProgress(format!("request {id} is being signed; retry later")),
            ),
            _ => Ok(SignOutcome::Pending(Box::new(self.status_of(l).await?))),
        }
    }

    /// Applies a lifecycle event (pure) with the coordinator's limits.
    pub(crate) fn step(&self, s: &Snapshot, e: &LifeEvent) -> Result<Next, ServiceError> {
        lifecycle::step(s, e, self.clock.now_secs(), &self.limits).map_err(|r| match r {
            lifecycle::Refusal::NotCancellable { .. }
            | lifecycle::Refusal::NoApprovals { .. }
            | lifecycle::Refusal::NotFailed { .. } => ServiceError::Conflict(r.to_string()),
            other => ServiceError::InProgress(other.to_string()),
        })
    }

    /// Records a new request that a module held or refused (no decision).
    async fn record_prepared(&self, draft: &mut Draft, next: &Next) -> Result<(), ServiceError> {
        let now_ms = self.clock.now_ms();
        let pending = self
            .policy
            .decide(|gate| {
                let t = gate.decision_time(self.clock.now_secs());
                let mut d = Draft::new(draft.stored.clone());
                d.stored.request.time = t;
                let mut events = vec![request_event(&d.stored)];
                events.extend(record_events(&d.stored.request.id, &next.records));
                let ops = d.ops(next, now_ms)?;
                Ok::<_, ServiceError>((d, self.journal.submit(events, ops)))
            })
            .await;
        let (d, pending) = pending?;
        pending.done().await.map_err(|e| self.journal_error(e))?;
        *draft = d;
        Ok(())
    }

    /// Evaluates the policy for `draft` (a new, waiting or resubmitted
    /// request) and records the decision, with `approval` when one arrived
    /// with it, all in one journal step queued under the gate.
    pub(crate) async fn decide(
        &self,
        draft: &mut Draft,
        approval: Option<&Approval>,
    ) -> Result<Next, ServiceError> {
        let id = draft.stored.request.id.clone();
        let mut approvals = self.approvals_of(&id).await?;
        if let Some(a) = approval {
            if !approvals.iter().any(|x| x.nonce == a.nonce) {
                approvals.push(a.clone());
            }
        }
        let seen = self.nonces_used_elsewhere(&id, &approvals).await?;
        let now_ms = self.clock.now_ms();
        let new = draft.rev.is_none();
        let decided = self
            .policy
            .decide(|gate| {
                let t = gate.decision_time(self.clock.now_secs());
                let mut d = Draft {
                    stored: draft.stored.clone(),
                    rev: draft.rev,
                    snapshot: draft.snapshot.clone(),
                    decision_json: draft.decision_json.clone(),
                    result_json: draft.result_json.clone(),
                    error_json: draft.error_json.clone(),
                    spent_at: draft.spent_at,
                    fingerprint: draft.fingerprint,
                    pending: draft.pending.clone(),
                };
                if new {
                    d.stored.request.time = t;
                }
                let decision = self.evaluate(gate, &d.stored.request, t, &approvals, &seen);
                // The version in shadow, if any, on the same inputs: its
                // verdict is only recorded (`policy::shadow`).
                let shadow = gate
                    .shadow()
                    .map(|s| s.record(&d.stored.request, t, &approvals, &seen, &decision));
                let lifecycle_decision = self.bypass(decided_of(&decision));
                let next = lifecycle::step(
                    &d.snapshot,
                    &LifeEvent::Decided(lifecycle_decision),
                    t,
                    &self.limits,
                )
                .map_err(|r| ServiceError::Conflict(r.to_string()))?;
                d.decision_json = Some(decision_json(&decision, t)?);
                let spend = next.actions.contains(&Action::Spend).then(|| d.entry(t));
                if spend.is_some() {
                    d.spent_at = Some(i64::try_from(t).unwrap_or(i64::MAX));
                }
                let mut events = Vec::new();
                // A resubmitted request keeps its record (and its time): the
                // log gets a new decision, not a second request.
                if new {
                    events.push(request_event(&d.stored));
                }
                if let Some(a) = approval {
                    events.push(audit_record::approval_event(&id, a));
                }
                events.push(audit_record::decision_event(&id, t, &decision));
                events.extend(record_events(&id, &next.records));
                let mut ops = Vec::new();
                if let Some(a) = approval {
                    ops.push(Op::AddApproval {
                        request_id: id.clone(),
                        nonce: a.nonce,
                        approval_json: serde_json::to_string(a).map_err(internal)?,
                        at: now_ms.div_euclid(1000),
                    });
                }
                ops.extend(d.ops(&next, now_ms)?);
                ops.extend(shadow);
                if let Some(e) = &spend {
                    gate.spend(e);
                }
                let pending = self.journal.submit(events, ops);
                Ok::<_, ServiceError>((d, next, decision, spend, pending))
            })
            .await;
        let (d, next, decision, spend, pending) = decided?;
        if let Err(e) = pending.done().await {
            if let Some(entry) = &spend {
                self.policy.decide(|g| g.unspend(entry)).await;
            }
            return Err(self.journal_error(e));
        }
        if !next.hops.is_empty() || new {
            tracing::info!(
                state = %next.snapshot.state,
                rule = ?decision.rule.as_ref().map(|r| &r.name),
                policy_version = decision.policy_version,
                "policy decision"
            );
        }
        *draft = d;
        Ok(next)
    }

    /// The policy's decision (a bench build with `[bench] unguarded`
    /// allows everything without evaluating, to measure the policy's cost).
    fn evaluate(
        &self,
        gate: &crate::policy::Gate,
        request: &keyfold_policy::Request,
        at: u64,
        approvals: &[Approval],
        seen: &BTreeSet<[u8; 16]>,
    ) -> Decision {
        #[cfg(feature = "bench-unguarded")]
        if self.cfg.bench.unguarded {
            return Decision {
                outcome: Outcome::Allow,
                rule: None,
                policy_version: gate.policy().version(),
                refused_approvals: Vec::new(),
            };
        }
        gate.evaluate(request, at, approvals, seen)
    }

    /// With the test-only switch on, the coordinator skips its own policy
    /// check (to show that the signers still refuse).
    fn bypass(&self, d: Decided) -> Decided {
        #[cfg(feature = "test-skip-policy")]
        if self.cfg.policy.skip_for_tests {
            tracing::error!("TEST-ONLY: the coordinator skips its policy check");
            return Decided::Allow;
        }
        d
    }

    /// The approvals recorded for a request.
    pub(crate) async fn approvals_of(
        &self,
        request_id: &str,
    ) -> Result<Vec<Approval>, ServiceError> {
        let id = request_id.to_string();
        let rows = self.read(move |s| s.approvals_for(&id)).await?;
        rows.iter()
            .map(|j| serde_json::from_str(j).map_err(internal))
            .collect()
    }

    /// Nonces among `approvals` that other requests already used.
    async fn nonces_used_elsewhere(
        &self,
        request_id: &str,
        approvals: &[Approval],
    ) -> Result<BTreeSet<[u8; 16]>, ServiceError> {
        if approvals.is_empty() {
            return Ok(BTreeSet::new());
        }
        let id = request_id.to_string();
        let nonces: Vec<[u8; 16]> = approvals.iter().map(|a| a.nonce).collect();
        self.read(move |s| {
            let mut used = BTreeSet::new();
            for n in nonces {
                if s.approval_nonce_owner(&n)?.is_some_and(|o| o != id) {
                    used.insert(n);
                }
            }
            Ok(used)
        })
        .await
    }

    /// Carries out a transition's actions (other than the evaluation and
    /// counting the decision step did already).
    pub(crate) fn carry_out<'a>(
        &'a self,
        draft: &'a mut Draft,
        next: &'a Next,
    ) -> crate::service::BoxFuture<'a, Result<(), ServiceError>> {
        Box::pin(self.carry_out_inner(draft, next))
    }

    async fn carry_out_inner(&self, draft: &mut Draft, next: &Next) -> Result<(), ServiceError> {
        for hop in &next.hops {
            for m in self.modules.iter() {
                m.notify(&draft.stored.request.id, *hop);
            }
        }
        for action in &next.actions {
            match action {
                Action::Announce { wait: true } => self.announce(&draft.stored).await,
                Action::Announce { wait: false } => {
                    // The signing command itself records the signers'
                    // first-seen time; the announcement matters only to
                    // signers outside this quorum if the request is retried.
                    if let Some(me) = self.me.upgrade() {
                        let stored = draft.stored.clone();
                        tokio::spawn(async move { me.announce(&stored).await });
                    }
                }
                Action::Sign => {
                    self.sign(draft).await?;
                }
                Action::RunStep { index } => {
                    self.run_step(draft, *index).await?;
                }
                Action::Evaluate => {
                    // A release or a tick that asks for a decision.
                    let decided = self.decide(draft, None).await?;
                    self.carry_out(draft, &decided).await?;
                }
                Action::Spend | Action::Schedule { .. } | Action::Notify | Action::Prepare => {
                    // Counted by the decision step; schedules are in the
                    // row's `wake_at`; modules were notified above.
                }
            }
        }
        Ok(())
    }

    /// Tells the key's signers about a request so each records when it
    /// first saw it. Best effort: a signer that misses it records the time
    /// when it is asked to sign, which refuses a request older than the
    /// allowed skew (for example one that waited for approvals).
    async fn announce(&self, stored: &StoredRequest) {
        let Ok(key) = self.key(&stored.key_id) else {
            return;
        };
        let nodes: Vec<_> = key
            .participants
            .iter()
            .filter_map(|n| self.client.signer(n).cloned())
            .collect();
        let request = stored.request.clone();
        let results = self
            .client
            .call_each(&nodes, self.cfg.tuning.probe_timeout(), |_| {
                Command::Announce {
                    request: request.clone(),
                }
            })
            .await;
        for r in results {
            match r {
                Ok(Response::Announced { .. }) => {}
                Ok(other) => tracing::warn!(answer = ?other, "unexpected answer to announce"),
                Err(f) => tracing::warn!(failure = %f, "a signer did not record the request"),
            }
        }
    }

    /// Signs an approved request and records how it ended.
    async fn sign(&self, draft: &mut Draft) -> Result<(), ServiceError> {
        let id = draft.stored.request.id.clone();
        let key = self.key(&draft.stored.key_id)?;
        let started = self.step(&draft.snapshot, &LifeEvent::SigningStarted)?;
        // Queued, not awaited: the journal keeps it before the outcome.
        drop(
            self.journal
                .submit(Vec::new(), draft.ops(&started, self.clock.now_ms())?),
        );
        let policy_version = self.policy.current().version();
        let job = Job {
            key: &key,
            intent: PolicyIntent {
                request: draft.stored.request.clone(),
                approvals: self.approvals_of(&id).await?,
                policy_version,
                subjects: crate::risk::intent_subjects(&draft.stored),
            },
            hash: draft.stored.hash,
            path: draft.stored.derivation_path()?,
        };
        match self.signing.sign(job).await {
            Ok(produced) => {
                let steps: Vec<(String, String)> = self
                    .modules
                    .iter()
                    .flat_map(|m| {
                        m.post_signing(&draft.stored, &produced.result)
                            .into_iter()
                            .map(|s| (m.name().to_string(), s))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let next = self.step(&draft.snapshot, &LifeEvent::Signed { steps })?;
                draft.result_json =
                    Some(serde_json::to_string(&produced.result).map_err(internal)?);
                let r = &produced.result;
                let events = vec![
                    produced.session,
                    Event::Signature {
                        request_id: id.clone(),
                        key_id: r.key_id.clone(),
                        public_key: hex::decode(&r.public_key).map_err(internal)?.into(),
                        signature: hex::decode(&r.signature).map_err(internal)?.into(),
                    },
                ];
                // The signature is released only once the audit log holds
                // it with the session that made it.
                let ops = draft.ops(&next, self.clock.now_ms())?;
                self.journal
                    .write(events, ops)
                    .await
                    .map_err(|e| self.journal_error(e))?;
                tracing::info!(mode = ?r.mode, signers = ?r.signers, "signed");
                for m in self.modules.iter() {
                    m.signed(&draft.stored, &produced.result);
                }
                for hop in &next.hops {
                    for m in self.modules.iter() {
                        m.notify(&id, *hop);
                    }
                }
                if next
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::RunStep { .. }))
                {
                    // Post-signing steps run after the client has its answer.
                    if let Some(me) = self.me.upgrade() {
                        let rid = id.clone();
                        tokio::spawn(async move { me.wake(&rid).await });
                    }
                }
                Ok(())
            }
            Err(error) => {
                let next = self.step(
                    &draft.snapshot,
                    &LifeEvent::SigningFailed {
                        reason: error.to_string(),
                    },
                )?;
                draft.error_json =
                    Some(serde_json::json!({ "error": error.to_string() }).to_string());
                let entry = draft
                    .spent_at
                    .map(|at| draft.entry(u64::try_from(at).unwrap_or(0)));
                draft.spent_at = None;
                let events = record_events(&id, &next.records);
                let ops = draft.ops(&next, self.clock.now_ms())?;
                // No longer counted, in log order with the decisions.
                let pending = self
                    .policy
                    .decide(|gate| {
                        if let Some(e) = &entry {
                            gate.unspend(e);
                        }
                        self.journal.submit(events.clone(), ops.clone())
                    })
                    .await;
                if let Err(e) = pending.done().await {
                    tracing::error!(request = %id, error = %e, "cannot record the end of a request");
                }
                for hop in &next.hops {
                    for m in self.modules.iter() {
                        m.notify(&id, *hop);
                    }
                }
                Err(error)
            }
        }
    }

    /// Runs post-signing step `index` of a signed request and records it.
    async fn run_step(&self, draft: &mut Draft, index: usize) -> Result<(), ServiceError> {
        let id = draft.stored.request.id.clone();
        let Some(step) = draft.snapshot.steps.get(index).cloned() else {
            return Err(internal(format!("request {id} has no step {index}")));
        };
        let result: SignResult = draft
            .result_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(internal)?
            .ok_or_else(|| internal(format!("signed request {id} has no result")))?;
        let outcome = match self.modules.get(&step.module) {
            Some(m) => m.run_step(&draft.stored, &result, &step.name).await,
            None => StepOutcome::Failed {
                reason: format!("module {} is not loaded", step.module),
            },
        };
        let event = match outcome {
            StepOutcome::Done => LifeEvent::StepDone { index },
            StepOutcome::Retry { at, reason } => LifeEvent::StepFailed {
                index,
                reason,
                retry_at: Some(at),
            },
            StepOutcome::Failed { reason } => LifeEvent::StepFailed {
                index,
                reason,
                retry_at: None,
            },
        };
        let next = self.step(&draft.snapshot, &event)?;
        let ops = draft.ops(&next, self.clock.now_ms())?;
        self.journal
            .write(Vec::new(), ops)
            .await
            .map_err(|e| self.journal_error(e))?;
        self.carry_out(draft, &next).await
    }

    /// Feeds a tick to a request (its `wake_at` passed): time locks,
    /// expiry, step retries.
    pub(crate) async fn wake(&self, request_id: &str) {
        if let Err(e) = self.apply(request_id, LifeEvent::Tick).await {
            tracing::warn!(request = %request_id, error = %e, "request did not advance");
        }
    }

    /// Applies `event` to a recorded request: records its transition and
    /// carries out its actions.
    pub(crate) async fn apply(
        &self,
        request_id: &str,
        event: LifeEvent,
    ) -> Result<(), ServiceError> {
        let _guard = self.locks.lock(request_id).await;
        let loaded = self
            .load(request_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
        let mut draft = Draft::of(&loaded)?;
        let next = self.step(&draft.snapshot, &event)?;
        if !next.hops.is_empty() || !next.records.is_empty() {
            let events = record_events(request_id, &next.records);
            let ops = draft.ops(&next, self.clock.now_ms())?;
            self.journal
                .write(events, ops)
                .await
                .map_err(|e| self.journal_error(e))?;
        } else if next.snapshot != draft.snapshot {
            let ops = draft.ops(&next, self.clock.now_ms())?;
            self.journal
                .write(Vec::new(), ops)
                .await
                .map_err(|e| self.journal_error(e))?;
        }
        self.carry_out(&mut draft, &next).await
    }

    /// `POST /v1/requests/{id}/cancel`: by its initiator, or by an officer
    /// (an API client the policy names as an approver's client).
    pub(crate) async fn cancel(
        &self,
        caller: Caller,
        request_id: String,
        reason: Option<String>,
    ) -> Result<RequestStatus, ServiceError> {
        intake::check_request_ref("request_id", &request_id)?;
        let reason = reason.unwrap_or_else(|| "no reason given".into());
        if reason.len() > 256 || reason.chars().any(char::is_control) {
            return Err(ServiceError::BadRequest(
                "reason must be at most 256 printable characters".into(),
            ));
        }
        let loaded = self.load_for(&caller.tenant(), &request_id).await?;
        let client = caller.client().to_string();
        let initiator = &loaded.row.initiator;
        let by = match &caller {
            // Any key of the merchant (a rotated key included) cancels its
            // merchant's requests; `load_for` hid the others'.
            Caller::Merchant(_) => Canceller::Initiator(client.clone()),
            Caller::Operator(_) if *initiator == client => Canceller::Initiator(client.clone()),
            Caller::Operator(_) if self.is_officer(&client) => Canceller::Officer(client.clone()),
            // Another client's request: it does not exist for this one.
            Caller::Operator(_) => {
                return Err(ServiceError::NotFound(format!("no request {request_id}")))
            }
        };
        self.apply(&request_id, LifeEvent::Cancel { by, reason })
            .await?;
        tracing::info!(request = %request_id, %client, "request cancelled");
        self.request_status(&request_id).await
    }

    /// Whether `client` is an officer under the policy in force: the API
    /// client of one of its approvers.
    fn is_officer(&self, client: &str) -> bool {
        self.policy
            .current()
            .document()
            .groups
            .iter()
            .flat_map(|g| &g.members)
            .any(|m| m.client.as_deref() == Some(client))
    }

    /// Lets go of a module's hold on a request (the module's review passed).
    pub async fn release(&self, request_id: &str, module: &str) -> Result<(), ServiceError> {
        self.apply(
            request_id,
            LifeEvent::Released {
                module: module.to_string(),
            },
        )
        .await
    }
}
