//! Policy versions installed in shadow: a future version, signed by the
//! admin quorum of the policy in force exactly like an update, evaluated on
//! every request next to the version in force, with its decision recorded
//! beside the real one, deciding nothing. Operators see, before promoting
//! it, which requests it would have decided otherwise.
//!
//! * The shadow is evaluated under the gate, right after the decision in
//!   force, on the same request, at the same time, with the same approvals
//!   and seen nonces. It keeps its own [`Spending`] aggregates (shaped for
//!   its own velocity limits and vesting rules) fed with the same history
//!   as the policy in force: the transfers the policy in force allowed,
//!   since those are the ones that were (or will be) signed.
//! * Approvals name the policy version they approve under, so the shadow
//!   would refuse every approval as "for another version". For a what-if
//!   evaluation that signs nothing, the shadow is evaluated as its own
//!   document with the version in force as its `version`: an approval for
//!   the request counts as it would had the officer approved under the
//!   shadow (the shadow's groups, members and quorums decide whether it
//!   counts). Nothing else in a document depends on its version.
//! * A shadow decision never makes a request fail: the evaluation is pure
//!   and cannot wait, a panic in it is caught, and an evaluation the shadow
//!   cannot answer (aggregates that do not fit) is recorded as a difference
//!   of kind `error` with its reason. Its store row is bounded (shortened
//!   reasons and rule names) so it always passes the store's checks.
//! * Only the policy in force decides; the signers never see the shadow.
//!   Shadow decisions are written to the store only, in the same journal
//!   step as the decision in force; the audit log records when a shadow
//!   was installed (with its signed update), removed or ended
//!   (`policy_shadow`, `docs/audit-log.md`).
//! * Installing a version as the real policy (`POST /v1/policy`) with the
//!   shadow's version or a higher one ends the shadow (`ended`, in the same
//!   journal step as the new policy version).
//!
//! `docs/rollout.md` describes the feature for operators.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use keyfold_audit::Event;
use keyfold_policy::{
    evaluate, Approval, Decision, EvalContext, HistoryEntry, Outcome, Policy, Request,
    SignedPolicy, Spending,
};
use keyfold_store::{CoordinatorStore, Op, ShadowDecisionRow, ShadowOp, ShadowRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::enforced::EnforcedPolicy;
use crate::core::Coordinator;
use crate::journal::Journal;
use crate::requests::record::StoredRequest;
use crate::service::ServiceError;

/// Most admin signatures a shadow's signed update may carry (each is an
/// Ed25519 verification; the same bound as a risk tree's update).
pub const MAX_SHADOW_SIGNATURES: usize = 64;

/// Differences per report page unless `limit` says otherwise.
pub const DEFAULT_REPORT_LIMIT: usize = 50;

/// Most differences per report page.
pub const MAX_REPORT_LIMIT: usize = keyfold_store::coordinator_shadow::MAX_SHADOW_PAGE;

/// Longest deny reason kept in a recorded outcome (bytes): a reason is
/// the engine's English text or a document's own words.
const MAX_REASON: usize = 512;

/// Longest rule name kept in a recorded outcome (bytes).
const MAX_RULE: usize = 128;

/// The kind of an outcome: what a difference compares, with the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Signed at once.
    Allow,
    /// Waits for approvals.
    NeedApprovals,
    /// Waits for a time lock.
    TimeLock,
    /// Refused.
    Deny,
    /// The shadow could not evaluate the request (never the policy in
    /// force): always a difference, `reason` says why.
    Error,
}

impl std::fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutcomeKind::Allow => "allow",
            OutcomeKind::NeedApprovals => "need_approvals",
            OutcomeKind::TimeLock => "time_lock",
            OutcomeKind::Deny => "deny",
            OutcomeKind::Error => "error",
        })
    }
}

/// One side of a shadow decision, as recorded and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// What was (or would have been) decided.
    pub outcome: OutcomeKind,
    /// The deciding rule, if a rule was reached.
    pub rule: Option<String>,
    /// A denial's reason, or the shadow's evaluation problem (shortened).
    pub reason: Option<String>,
}

/// `s` cut to at most `max` bytes on a character boundary, marked `…`.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Verdict {
    /// The verdict of a decision in force.
    pub fn of(d: &Decision) -> Verdict {
        let (outcome, reason) = match &d.outcome {
            Outcome::Allow => (OutcomeKind::Allow, None),
            Outcome::NeedApprovals { .. } => (OutcomeKind::NeedApprovals, None),
            Outcome::TimeLocked { .. } => (OutcomeKind::TimeLock, None),
            Outcome::Deny { reason } => (OutcomeKind::Deny, Some(shorten(reason, MAX_REASON))),
        };
        Verdict {
            outcome,
            rule: d.rule.as_ref().map(|r| shorten(&r.name, MAX_RULE)),
            reason,
        }
    }

    /// The verdict of a shadow decision: a denial the engine gives because
    /// its aggregates cannot answer (`internal:`) is the shadow's problem,
    /// not a decision.
    pub fn of_shadow(d: &Decision) -> Verdict {
        let mut v = Verdict::of(d);
        if v.outcome == OutcomeKind::Deny
            && v.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("internal:"))
        {
            v.outcome = OutcomeKind::Error;
        }
        v
    }

    /// A shadow evaluation that did not give a decision.
    pub fn problem(reason: &str) -> Verdict {
        Verdict {
            outcome: OutcomeKind::Error,
            rule: None,
            reason: Some(shorten(reason, MAX_REASON)),
        }
    }
}

/// Whether two verdicts differ: another outcome kind, or another deciding
/// rule (a reason's wording alone is no difference).
pub fn differs(in_force: &Verdict, shadow: &Verdict) -> bool {
    in_force.outcome != shadow.outcome || in_force.rule != shadow.rule
}

/// A request the shadow would have decided otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowDifference {
    /// The request.
    pub request_id: String,
    /// The evaluation time (Unix seconds).
    pub at: i64,
    /// What the version in force decided.
    pub in_force: Verdict,
    /// What the shadow would have decided.
    pub shadow: Verdict,
}

/// `GET /v1/policy/shadow`: the shadow and its difference report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowReport {
    /// The shadow's version.
    pub version: u64,
    /// SHA-256 of its document (hex).
    pub document_hash: String,
    /// When it was installed (Unix seconds).
    pub installed_at: i64,
    /// The version in force (the one that decides).
    pub in_force_version: u64,
    /// Whether it is still installed (`false` in the answer to `DELETE`).
    pub installed: bool,
    /// Requests evaluated under it since it was installed.
    pub evaluated: u64,
    /// How many of them it would have decided otherwise.
    pub differed: u64,
    /// The differing requests, newest first (one page).
    pub differences: Vec<ShadowDifference>,
    /// The `cursor` of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// What the shadow endpoints ask.
#[derive(Debug, Clone)]
pub enum ShadowApiOp {
    /// `POST /v1/policy/shadow`: installs (or replaces) the shadow.
    Install(SignedPolicy),
    /// `DELETE /v1/policy/shadow`: removes it.
    Remove,
    /// `GET /v1/policy/shadow?cursor=&limit=`: the report.
    Report {
        /// From a previous page's `next_cursor`.
        cursor: Option<String>,
        /// Differences per page (1 to [`MAX_REPORT_LIMIT`]).
        limit: Option<usize>,
    },
}

/// The shadow installed, under the gate (see the module docs).
#[derive(Debug, Clone)]
pub struct Shadow {
    id: i64,
    version: u64,
    document: String,
    document_hash: [u8; 32],
    installed_at: i64,
    /// The shadow as signed.
    policy: Policy,
    /// The shadow's document with the in-force version as its version, so
    /// approvals for the request count (see the module docs).
    eval: Policy,
    spent: Spending,
}

/// The shadow as signed, evaluated as version `in_force`.
fn evaluated_as(shadow: &Policy, in_force: u64) -> Result<Policy, String> {
    let mut doc = shadow.document().clone();
    doc.version = in_force;
    Policy::from_document(doc).map_err(|e| format!("shadow document: {e}"))
}

/// What identifies a shadow in a report.
#[derive(Debug, Clone)]
pub(crate) struct ShadowSummary {
    id: i64,
    version: u64,
    document_hash: [u8; 32],
    installed_at: i64,
}

impl Shadow {
    /// The shadow number `id`, version `policy`, whose exact document text
    /// is `document`, installed at `installed_at` while `in_force` decides,
    /// with aggregates `spent` built for it.
    pub(crate) fn new(
        id: i64,
        policy: Policy,
        document: String,
        installed_at: i64,
        in_force: u64,
        spent: Spending,
    ) -> Result<Shadow, String> {
        let eval = evaluated_as(&policy, in_force)?;
        Ok(Shadow {
            id,
            version: policy.version(),
            document_hash: Sha256::digest(document.as_bytes()).into(),
            document,
            installed_at,
            policy,
            eval,
            spent,
        })
    }

    /// The shadow's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn summary(&self) -> ShadowSummary {
        ShadowSummary {
            id: self.id,
            version: self.version,
            document_hash: self.document_hash,
            installed_at: self.installed_at,
        }
    }

    /// The shadow once `in_force` came into force: gone if it is at least
    /// the shadow's version, else evaluated as that version from now on.
    pub(crate) fn rebase(self, in_force: &Policy) -> Option<Shadow> {
        if in_force.version() >= self.version {
            return None;
        }
        match evaluated_as(&self.policy, in_force.version()) {
            Ok(eval) => Some(Shadow { eval, ..self }),
            Err(e) => {
                // The same document validated before: a bug, not input.
                tracing::error!(error = %e, version = self.version, "the shadow could not follow the new policy in force; it is no longer evaluated");
                None
            }
        }
    }

    /// Drops what left the shadow's velocity windows at `now`.
    pub(crate) fn prune(&mut self, now: u64) {
        self.spent.prune(now);
    }

    /// Counts a transfer the policy in force allowed.
    pub(crate) fn spend(&mut self, entry: &HistoryEntry) {
        self.spent.add(entry);
    }

    /// Stops counting a transfer that ended without a signature.
    pub(crate) fn unspend(&mut self, entry: &HistoryEntry) {
        if let Err(e) = self.spent.remove(entry) {
            tracing::error!(error = %e, wallet = %entry.wallet, "a request to stop counting was not counted by the shadow");
        }
    }

    /// The shadow's verdict on `request` (see the module docs): pure, and
    /// a panic in the engine becomes a problem, never the caller's.
    pub fn evaluate(
        &self,
        request: &Request,
        at: u64,
        approvals: &[Approval],
        seen: &BTreeSet<[u8; 16]>,
    ) -> Verdict {
        let decided = catch_unwind(AssertUnwindSafe(|| {
            evaluate(
                &self.eval,
                request,
                &EvalContext {
                    now: at,
                    spent: &self.spent,
                    exclude: None,
                    approvals,
                    seen_nonces: seen,
                },
            )
        }));
        match decided {
            Ok(d) => Verdict::of_shadow(&d),
            Err(_) => Verdict::problem("the shadow's evaluation panicked"),
        }
    }

    /// The store write recording the shadow's verdict on `request` next to
    /// `in_force`, the decision in force at `at`.
    pub fn record(
        &self,
        request: &Request,
        at: u64,
        approvals: &[Approval],
        seen: &BTreeSet<[u8; 16]>,
        in_force: &Decision,
    ) -> Op {
        let real = Verdict::of(in_force);
        let shadow = self.evaluate(request, at, approvals, seen);
        let differ = differs(&real, &shadow);
        // Serializing plain data cannot fail; an empty object still passes
        // the store's checks, so the request's step never fails here.
        let json = |v: &Verdict| serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
        Op::Shadow(ShadowOp::Decision(ShadowDecisionRow {
            seq: 0,
            shadow_id: self.id,
            request_id: request.id.clone(),
            shadow_version: self.version,
            at: i64::try_from(at).unwrap_or(i64::MAX),
            in_force_json: json(&real),
            shadow_json: json(&shadow),
            differs: differ,
        }))
    }

    /// The audit event of this shadow's `action`.
    fn event(&self, action: &str, update: Option<&SignedPolicy>) -> Event {
        Event::PolicyShadow {
            version: self.version,
            document_hash: self.document_hash,
            document: self.document.clone(),
            update: update.map(|u| serde_json::to_string(u).unwrap_or_default()),
            action: action.into(),
        }
    }

    /// The audit event and store write that end this shadow.
    fn end(&self, action: &str, at: i64) -> (Event, Op) {
        (
            self.event(action, None),
            Op::Shadow(ShadowOp::End {
                shadow_id: self.id,
                action: action.into(),
                at,
            }),
        )
    }
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// The history entries of the requests the policy in force counts.
fn spent_entries(rows: Vec<(String, i64)>) -> Result<Vec<HistoryEntry>, String> {
    rows.iter()
        .map(|(json, at)| {
            serde_json::from_str::<StoredRequest>(json)
                .map(|s| s.request.history_entry(u64::try_from(*at).unwrap_or(0)))
                .map_err(|e| format!("a stored request does not parse: {e}"))
        })
        .collect()
}

impl Coordinator {
    /// The shadow endpoints.
    pub(crate) async fn shadow_api(&self, op: ShadowApiOp) -> Result<ShadowReport, ServiceError> {
        match op {
            ShadowApiOp::Install(update) => self.install_shadow(update).await,
            ShadowApiOp::Remove => self.remove_shadow().await,
            ShadowApiOp::Report { cursor, limit } => {
                let before = match cursor.as_deref() {
                    None | Some("") => None,
                    Some(c) => Some(c.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                        ServiceError::BadRequest(format!(
                            "cursor {:?} is not one a report page gave (next_cursor)",
                            shorten(c, 64)
                        ))
                    })?),
                };
                let limit = limit.unwrap_or(DEFAULT_REPORT_LIMIT);
                if !(1..=MAX_REPORT_LIMIT).contains(&limit) {
                    return Err(ServiceError::BadRequest(format!(
                        "limit {limit} is out of range: 1 to {MAX_REPORT_LIMIT}"
                    )));
                }
                let summary = self
                    .policy
                    .inspect(|g| g.shadow().map(Shadow::summary))
                    .ok_or_else(no_shadow)?;
                self.shadow_report(summary, true, before, limit).await
            }
        }
    }

    /// The report of shadow `s`, one page of differences.
    async fn shadow_report(
        &self,
        s: ShadowSummary,
        installed: bool,
        before: Option<i64>,
        limit: usize,
    ) -> Result<ShadowReport, ServiceError> {
        let id = s.id;
        let ((evaluated, differed), rows) = self
            .read(move |st| {
                Ok((
                    st.shadow_counts(id)?,
                    st.shadow_differences(id, before, limit)?,
                ))
            })
            .await?;
        let full = rows.len() == limit;
        let next_cursor = rows.last().filter(|_| full).map(|r| r.seq.to_string());
        let differences = rows
            .into_iter()
            .map(|r| {
                Ok(ShadowDifference {
                    in_force: serde_json::from_str(&r.in_force_json).map_err(internal)?,
                    shadow: serde_json::from_str(&r.shadow_json).map_err(internal)?,
                    request_id: r.request_id,
                    at: r.at,
                })
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        Ok(ShadowReport {
            version: s.version,
            document_hash: hex::encode(s.document_hash),
            installed_at: s.installed_at,
            in_force_version: self.policy.current().version(),
            installed,
            evaluated,
            differed,
            differences,
            next_cursor,
        })
    }

    /// `POST /v1/policy/shadow`.
    async fn install_shadow(&self, update: SignedPolicy) -> Result<ShadowReport, ServiceError> {
        if update.signatures.len() > MAX_SHADOW_SIGNATURES {
            return Err(ServiceError::BadRequest(format!(
                "shadow refused: {} signatures, at most {MAX_SHADOW_SIGNATURES} are accepted (the admin quorum is enough)",
                update.signatures.len()
            )));
        }
        // The document first: its own errors, before anything about admins.
        let proposed = Policy::from_toml(&update.document_toml)
            .map_err(|e| ServiceError::BadRequest(format!("shadow policy document: {e}")))?;
        self.check_rollout_names(&proposed).await?;
        let current = self.policy.current();
        if proposed.version() <= current.version() {
            return Err(ServiceError::BadRequest(format!(
                "shadow refused: version {} is not above the version in force ({}); a shadow is a future version",
                proposed.version(),
                current.version()
            )));
        }
        let proposed = update
            .verify(&current)
            .map_err(|e| ServiceError::BadRequest(format!("shadow refused: {e}")))?;
        let hash: [u8; 32] = Sha256::digest(update.document_toml.as_bytes()).into();
        let same = self.policy.inspect(|g| {
            g.shadow()
                .filter(|s| s.version == proposed.version() && s.document_hash == hash)
                .map(Shadow::summary)
        });
        if let Some(s) = same {
            // A retry of the same install: its report goes on.
            return self
                .shadow_report(s, true, None, DEFAULT_REPORT_LIMIT)
                .await;
        }
        if !self.policy.begin_update() {
            return Err(ServiceError::InProgress(
                "a policy update or shadow change is being applied; retry".into(),
            ));
        }
        let installed = self.enforce_shadow(proposed, &update).await;
        if installed.is_err() {
            self.policy.abandon_update();
        }
        let summary = installed?;
        tracing::info!(
            version = summary.version,
            "policy version installed in shadow"
        );
        self.shadow_report(summary, true, None, DEFAULT_REPORT_LIMIT)
            .await
    }

    /// Builds the shadow's aggregates from what the policy in force counts
    /// (evaluations wait meanwhile, as for a policy update), then swaps it
    /// in and queues its journal step under the gate.
    async fn enforce_shadow(
        &self,
        proposed: Policy,
        update: &SignedPolicy,
    ) -> Result<ShadowSummary, ServiceError> {
        // Every step queued so far is written once this one is: the store
        // then holds every request counted until now.
        self.journal
            .write(Vec::new(), Vec::new())
            .await
            .map_err(|e| self.journal_error(e))?;
        let (rows, id) = self
            .read(|s| Ok((s.spent_requests()?, s.next_shadow_id()?)))
            .await?;
        let entries = spent_entries(rows).map_err(internal)?;
        let spent = Spending::from_entries(&proposed, entries);
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let shadow = Shadow::new(
            id,
            proposed,
            update.document_toml.clone(),
            at,
            self.policy.current().version(),
            spent,
        )
        .map_err(internal)?;
        let summary = shadow.summary();
        let event = shadow.event("installed", Some(update));
        let op = Op::Shadow(ShadowOp::Install(ShadowRow {
            shadow_id: id,
            version: shadow.version,
            document: update.document_toml.clone(),
            update_json: serde_json::to_string(update).map_err(internal)?,
            installed_at: at,
            removed_at: None,
            end_action: None,
        }));
        let (before, pending) = self.policy.finish_update_with(|g| {
            let before = g.set_shadow(Some(shadow));
            (before, self.journal.submit(vec![event], vec![op]))
        });
        if let Err(e) = pending.done().await {
            // Not recorded: the shadow before it (if any) is back, unless
            // a policy version reached it meanwhile.
            self.policy
                .decide(|g| {
                    if g.shadow().is_some_and(|s| s.id == id) {
                        let back = before.clone().and_then(|b| b.rebase(g.policy()));
                        g.set_shadow(back);
                    }
                })
                .await;
            return Err(self.journal_error(e));
        }
        Ok(summary)
    }

    /// `DELETE /v1/policy/shadow`: the removed shadow's last report.
    async fn remove_shadow(&self) -> Result<ShadowReport, ServiceError> {
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let (removed, pending) = self
            .policy
            .decide(|g| {
                let s = g.set_shadow(None)?;
                let (event, op) = s.end("removed", at);
                Some((s, self.journal.submit(vec![event], vec![op])))
            })
            .await
            .ok_or_else(no_shadow)?;
        if let Err(e) = pending.done().await {
            let id = removed.id;
            self.policy
                .decide(|g| {
                    if g.shadow().is_none() {
                        let back = removed.clone().rebase(g.policy());
                        g.set_shadow(back);
                    }
                })
                .await;
            tracing::error!(
                shadow = id,
                "the shadow's removal could not be recorded; it stays installed"
            );
            return Err(self.journal_error(e));
        }
        tracing::info!(version = removed.version, "shadow policy version removed");
        self.shadow_report(removed.summary(), false, None, DEFAULT_REPORT_LIMIT)
            .await
    }

    /// The audit events and store writes that end the shadow when `new`
    /// comes into force (its version or a higher one), to go in the same
    /// journal step as the new policy version. Called while the update is
    /// prepared, so no shadow change can come in between.
    pub(crate) fn shadow_ended_by(&self, new: &Policy) -> (Vec<Event>, Vec<Op>) {
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        self.policy
            .inspect(|g| {
                g.shadow()
                    .filter(|s| new.version() >= s.version)
                    .map(|s| s.end("ended", at))
            })
            .map_or((Vec::new(), Vec::new()), |(e, o)| (vec![e], vec![o]))
    }
}

fn no_shadow() -> ServiceError {
    ServiceError::NotFound(
        "no policy version is installed in shadow (POST /v1/policy/shadow installs one)".into(),
    )
}

/// At start: puts the shadow the store holds back under the gate (with
/// aggregates rebuilt from what the policy in force counts), or ends it if
/// the policy in force reached its version, or removes it if it no longer
/// parses (a later release's stricter validation), recording either.
pub(crate) fn restore(
    store: &CoordinatorStore,
    journal: &Journal,
    enforced: &EnforcedPolicy,
    now_secs: i64,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("policy shadow: {e}");
    let Some(row) = store.installed_shadow().map_err(|e| err(&e))? else {
        return Ok(());
    };
    let in_force = enforced.current();
    let parsed = Policy::from_toml(&row.document);
    let end = match &parsed {
        Err(e) => {
            tracing::error!(version = row.version, error = %e, "the installed shadow no longer parses: removing it");
            Some("removed")
        }
        Ok(_) if in_force.version() >= row.version => Some("ended"),
        Ok(_) => None,
    };
    if let Some(action) = end {
        let hash: [u8; 32] = Sha256::digest(row.document.as_bytes()).into();
        let event = Event::PolicyShadow {
            version: row.version,
            document_hash: hash,
            document: row.document.clone(),
            update: None,
            action: action.into(),
        };
        let op = Op::Shadow(ShadowOp::End {
            shadow_id: row.shadow_id,
            action: action.into(),
            at: now_secs,
        });
        return journal
            .submit(vec![event], vec![op])
            .done_blocking()
            .map_err(|e| err(&e));
    }
    let policy = parsed.map_err(|e| err(&e))?;
    let entries = spent_entries(store.spent_requests().map_err(|e| err(&e))?)?;
    let spent = Spending::from_entries(&policy, entries);
    let shadow = Shadow::new(
        row.shadow_id,
        policy,
        row.document,
        row.installed_at,
        in_force.version(),
        spent,
    )?;
    tracing::info!(
        version = shadow.version,
        "policy version in shadow restored"
    );
    if !enforced.begin_update() {
        return Err(err(&"an update is in preparation at start"));
    }
    enforced.finish_update_with(|g| g.set_shadow(Some(shadow)));
    Ok(())
}

/// The installed shadow as the catch-up's ops leave it, and the number of
/// the next one: several `policy_shadow` events in the tail build on each
/// other.
#[derive(Debug, Default)]
pub(crate) struct RecoverySeen {
    loaded: bool,
    /// (shadow id, version, document hash) of the installed shadow.
    installed: Option<(i64, u64, [u8; 32])>,
    next_id: i64,
}

/// The store write a `policy_shadow` event of the audit log's tail
/// describes, if the store lacks it (see `crate::recovery`).
pub(crate) fn recovery_op(
    store: &CoordinatorStore,
    seen: &mut RecoverySeen,
    event: &Event,
    at_secs: i64,
) -> Result<Option<ShadowOp>, String> {
    let Event::PolicyShadow {
        version,
        document_hash,
        document,
        update,
        action,
    } = event
    else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| format!("policy shadow {version} {action}: {e}");
    if !seen.loaded {
        seen.installed = store.installed_shadow().map_err(|e| bad(&e))?.map(|r| {
            let h: [u8; 32] = Sha256::digest(r.document.as_bytes()).into();
            (r.shadow_id, r.version, h)
        });
        seen.next_id = store.next_shadow_id().map_err(|e| bad(&e))?;
        seen.loaded = true;
    }
    let matches = seen
        .installed
        .is_some_and(|(_, v, h)| v == *version && h == *document_hash);
    let op = match action.as_str() {
        "installed" if !matches => {
            let Some(update) = update else {
                return Err(bad(&"logged without its signed update"));
            };
            let id = seen.next_id;
            seen.next_id = id.saturating_add(1);
            seen.installed = Some((id, *version, *document_hash));
            Some(ShadowOp::Install(ShadowRow {
                shadow_id: id,
                version: *version,
                document: document.clone(),
                update_json: update.clone(),
                installed_at: at_secs,
                removed_at: None,
                end_action: None,
            }))
        }
        "removed" | "ended" if matches => {
            let id = seen.installed.map_or(0, |(id, _, _)| id);
            seen.installed = None;
            Some(ShadowOp::End {
                shadow_id: id,
                action: action.clone(),
                at: at_secs,
            })
        }
        _ => None,
    };
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_policy::{Payload, RuleRef, Tier};

    fn verdict(outcome: OutcomeKind, rule: Option<&str>) -> Verdict {
        Verdict {
            outcome,
            rule: rule.map(str::to_string),
            reason: None,
        }
    }

    #[test]
    fn a_difference_is_another_outcome_kind_or_another_rule() {
        use OutcomeKind::*;
        let base = verdict(Allow, Some("small"));
        assert!(!differs(&base, &verdict(Allow, Some("small"))));
        assert!(differs(&base, &verdict(Deny, Some("small"))));
        assert!(differs(&base, &verdict(Allow, Some("other"))));
        assert!(differs(&base, &verdict(Allow, None)));
        // The wording of a denial is no difference.
        let mut a = verdict(Deny, Some("cap"));
        let mut b = a.clone();
        a.reason = Some("too much".into());
        b.reason = Some("far too much".into());
        assert!(!differs(&a, &b));
        // A shadow that could not evaluate always differs.
        assert!(differs(&base, &Verdict::problem("boom")));
        for k in [NeedApprovals, TimeLock, Deny] {
            assert!(differs(&verdict(k, Some("r")), &verdict(Allow, Some("r"))));
        }
    }

    #[test]
    fn verdicts_name_the_kind_rule_and_a_shortened_reason() {
        let d = Decision {
            outcome: Outcome::Deny {
                reason: "é".repeat(1000),
            },
            rule: Some(RuleRef {
                index: 3,
                name: "x".repeat(500),
            }),
            policy_version: 2,
            refused_approvals: Vec::new(),
        };
        let v = Verdict::of(&d);
        assert_eq!(v.outcome, OutcomeKind::Deny);
        assert!(v.reason.as_ref().unwrap().len() <= MAX_REASON);
        assert!(v.reason.as_ref().unwrap().ends_with('…'));
        assert!(v.rule.as_ref().unwrap().len() <= MAX_RULE);
        // The engine's internal denial is a shadow problem, not a decision
        // (and stays a denial in force).
        let internal = Decision {
            outcome: Outcome::Deny {
                reason: "internal: spending aggregates were built for another policy".into(),
            },
            rule: None,
            policy_version: 2,
            refused_approvals: Vec::new(),
        };
        assert_eq!(Verdict::of_shadow(&internal).outcome, OutcomeKind::Error);
        assert_eq!(Verdict::of(&internal).outcome, OutcomeKind::Deny);
        let json = serde_json::to_string(&Verdict::of(&Decision {
            outcome: Outcome::TimeLocked { until: 5 },
            rule: Some(RuleRef {
                index: 0,
                name: "slow".into(),
            }),
            policy_version: 1,
            refused_approvals: Vec::new(),
        }))
        .unwrap();
        assert_eq!(
            json,
            r#"{"outcome":"time_lock","rule":"slow","reason":null}"#
        );
    }

    const OFFICER: [u8; 32] = [0xb1; 32];

    fn officer_hex() -> String {
        hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&OFFICER)
                .verifying_key()
                .to_bytes(),
        )
    }

    /// Transfers up to `small` are allowed, larger ones need one officer,
    /// at most `daily` a day per wallet.
    fn policy(version: u64, small: u64, daily: u64) -> Policy {
        Policy::from_toml(&format!(
            r#"version = {version}

[[groups]]
name = "treasury"
quorum = 1
members = [{{ name = "alice", key = "{o}" }}]

[[velocity]]
name = "daily"
per = "wallet"
window_secs = 86400
asset = "ETH"
max_amount = {daily}

[[rules]]
name = "small"
amount = {{ max = {small} }}
action = {{ kind = "allow" }}

[[rules]]
name = "large"
amount = {{ min = {large} }}
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
            large = small + 1,
            o = officer_hex()
        ))
        .unwrap()
    }

    fn request(id: &str, amount: u128) -> Request {
        Request {
            id: id.into(),
            wallet: "w".into(),
            tier: Tier::Hot,
            asset: "ETH".into(),
            amount,
            destination: "d".into(),
            initiator: "ops".into(),
            risk: None,
            origin: None,
            time: 1000,
            payload: Payload::TypedTransfer,
        }
    }

    fn shadow_of(p: Policy, in_force: u64) -> Shadow {
        let spent = Spending::new(&p);
        let doc = p.to_toml().unwrap();
        Shadow::new(1, p, doc, 0, in_force, spent).unwrap()
    }

    #[test]
    fn an_approval_for_the_version_in_force_counts_under_the_shadow() {
        let in_force = policy(1, 100, 1_000_000);
        let shadow = shadow_of(policy(2, 10, 1_000_000), 1);
        let r = request("r1", 50);
        let key = ed25519_dalek::SigningKey::from_bytes(&OFFICER);
        let a = Approval::sign(
            &key,
            r.canonical_hash(),
            in_force.version(),
            keyfold_policy::ApprovalDecision::Approve,
            5000,
            [7; 16],
        );
        let none = BTreeSet::new();
        // Without approval: the shadow waits for one where version 1 allows.
        let v = shadow.evaluate(&r, 1000, &[], &none);
        assert_eq!(
            (v.outcome, v.rule.as_deref()),
            (OutcomeKind::NeedApprovals, Some("large"))
        );
        // With the approval signed under version 1: it counts.
        let v = shadow.evaluate(&r, 1000, std::slice::from_ref(&a), &none);
        assert_eq!(v.outcome, OutcomeKind::Allow, "{v:?}");
        // A replayed nonce does not.
        let v = shadow.evaluate(&r, 1000, &[a], &BTreeSet::from([[7; 16]]));
        assert_eq!(v.outcome, OutcomeKind::NeedApprovals);
    }

    #[test]
    fn the_shadow_counts_what_the_policy_in_force_allowed_with_its_own_limits() {
        // In force: no practical daily limit; the shadow: 100 a day.
        let mut shadow = shadow_of(policy(2, 1000, 100), 1);
        let none = BTreeSet::new();
        let first = request("a", 80);
        assert_eq!(
            shadow.evaluate(&first, 1000, &[], &none).outcome,
            OutcomeKind::Allow
        );
        shadow.spend(&first.history_entry(1000));
        let v = shadow.evaluate(&request("b", 30), 1001, &[], &none);
        assert_eq!(v.outcome, OutcomeKind::Deny);
        assert!(v.reason.unwrap().contains("velocity limit"));
        // A transfer that failed stops counting.
        shadow.unspend(&first.history_entry(1000));
        assert_eq!(
            shadow.evaluate(&request("b", 30), 1001, &[], &none).outcome,
            OutcomeKind::Allow
        );
        // Aggregates built for another shape are a problem, not a denial.
        let wrong = Shadow {
            spent: Spending::new(&policy(9, 1, 1)),
            ..shadow_of(
                Policy::from_toml(
                    &policy(2, 1000, 100)
                        .to_toml()
                        .unwrap()
                        .replace("window_secs = 86400", "window_secs = 3600"),
                )
                .unwrap(),
                1,
            )
        };
        let v = wrong.evaluate(&request("c", 1), 1002, &[], &none);
        assert_eq!(v.outcome, OutcomeKind::Error, "{v:?}");
    }

    #[test]
    fn a_recorded_decision_holds_both_verdicts_and_the_difference() {
        let shadow = shadow_of(policy(2, 10, 1_000_000), 1);
        let in_force = Decision {
            outcome: Outcome::Allow,
            rule: Some(RuleRef {
                index: 0,
                name: "small".into(),
            }),
            policy_version: 1,
            refused_approvals: Vec::new(),
        };
        let op = shadow.record(&request("r9", 50), 1000, &[], &BTreeSet::new(), &in_force);
        let Op::Shadow(ShadowOp::Decision(row)) = op else {
            panic!("{op:?}")
        };
        assert_eq!(
            (
                row.request_id.as_str(),
                row.shadow_version,
                row.at,
                row.differs
            ),
            ("r9", 2, 1000, true)
        );
        assert_eq!(
            row.in_force_json,
            r#"{"outcome":"allow","rule":"small","reason":null}"#
        );
        assert_eq!(
            row.shadow_json,
            r#"{"outcome":"need_approvals","rule":"large","reason":null}"#
        );
    }

    #[test]
    fn a_shadow_ends_when_the_policy_in_force_reaches_its_version() {
        let shadow = shadow_of(policy(3, 10, 100), 1);
        let kept = shadow.clone().rebase(&policy(2, 10, 100)).unwrap();
        assert_eq!(kept.eval.version(), 2);
        assert_eq!(kept.version(), 3);
        assert!(shadow.clone().rebase(&policy(3, 10, 100)).is_none());
        assert!(shadow.rebase(&policy(4, 10, 100)).is_none());
    }
}
