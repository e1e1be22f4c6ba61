//! The policy in force at the coordinator, the aggregates of what it
//! allowed (velocity windows, vesting totals: `keyfold_policy::Spending`,
//! the same code the signers and the offline auditor run), and the time of
//! its decisions, behind one short lock: the gate.
//!
//! Under the gate a request is evaluated, counted if allowed, and its step
//! queued to the journal, in one go: two requests near a velocity limit
//! cannot both be allowed, and the audit log holds decisions in the order
//! they were made, each with the history the auditor will rebuild. Nothing
//! under the gate waits for I/O (queuing a journal step does not wait).
//!
//! Decision times never go back, even if the clock does: a stepped-back
//! clock would let past transfers fall out of velocity windows or backdate
//! a request past its time lock, and auditors refuse both.
//!
//! A version installed in shadow ([`super::shadow`]) lives under the gate
//! too: it is fed the same history and pruned at the same times as the
//! policy in force, so its decisions see what the real ones see.
//!
//! A policy update swaps the policy and rebuilds the aggregates for its
//! limits. While one is being prepared the gate is *updating*: evaluations
//! wait for it (without holding anything) so that no decision is made
//! under the old policy but logged after the new one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use keyfold_policy::{
    evaluate, Approval, Decision, EvalContext, HistoryEntry, Policy, Request, SignedPolicy,
    Spending,
};
use tokio::sync::Notify;

use super::shadow::Shadow;

/// Everything under the gate.
pub struct Gate {
    policy: Arc<Policy>,
    /// The exact text of the document in force (what the audit log holds).
    document: String,
    /// The signed update that brought it, `None` for the genesis document.
    update: Option<SignedPolicy>,
    spent: Spending,
    last: u64,
    updating: Option<Arc<Notify>>,
    /// The version installed in shadow, if any.
    shadow: Option<Shadow>,
}

impl Gate {
    /// The policy in force.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The time of a decision made now: `now`, or the last decision's time
    /// if the clock went back. Drops what left every window.
    pub fn decision_time(&mut self, now: u64) -> u64 {
        let t = self.last.max(now);
        self.last = t;
        self.spent.prune(t);
        if let Some(s) = &mut self.shadow {
            s.prune(t);
        }
        t
    }

    /// Evaluates `request` at time `at` (from [`Gate::decision_time`]) with
    /// what the policy allowed so far and the request's approvals. `seen`:
    /// nonces among `approvals` that other requests already used.
    pub fn evaluate(
        &self,
        request: &Request,
        at: u64,
        approvals: &[Approval],
        seen: &BTreeSet<[u8; 16]>,
    ) -> Decision {
        evaluate(
            &self.policy,
            request,
            &EvalContext {
                now: at,
                spent: &self.spent,
                // The coordinator evaluates only requests it has not
                // counted yet (new, waiting, or failed and submitted again).
                exclude: None,
                approvals,
                seen_nonces: seen,
            },
        )
    }

    /// Counts an allowed request from now on.
    pub fn spend(&mut self, entry: &HistoryEntry) {
        self.spent.add(entry);
        if let Some(s) = &mut self.shadow {
            s.spend(entry);
        }
    }

    /// Stops counting a request that ended without a signature.
    pub fn unspend(&mut self, entry: &HistoryEntry) {
        if let Err(e) = self.spent.remove(entry) {
            tracing::error!(error = %e, wallet = %entry.wallet, "a request to stop counting was not counted");
        }
        if let Some(s) = &mut self.shadow {
            s.unspend(entry);
        }
    }

    /// The version installed in shadow, if any.
    pub fn shadow(&self) -> Option<&Shadow> {
        self.shadow.as_ref()
    }

    /// Installs (or with `None` removes) the shadow; returns the one before.
    pub fn set_shadow(&mut self, shadow: Option<Shadow>) -> Option<Shadow> {
        std::mem::replace(&mut self.shadow, shadow)
    }

    /// Entries the aggregates hold (metrics).
    pub fn spent_len(&self) -> usize {
        self.spent.len()
    }
}

/// The policy in force (see the module docs).
pub struct EnforcedPolicy {
    gate: Mutex<Gate>,
}

impl EnforcedPolicy {
    /// The policy `policy` (whose exact text is `document`), with the
    /// aggregates `spent` built for it, decisions not before `last`.
    pub fn new(
        policy: Policy,
        document: String,
        update: Option<SignedPolicy>,
        spent: Spending,
        last: u64,
    ) -> Self {
        EnforcedPolicy {
            gate: Mutex::new(Gate {
                policy: Arc::new(policy),
                document,
                update,
                spent,
                last,
                updating: None,
                shadow: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Gate> {
        // Nothing under the gate can panic half-way through an update of
        // its fields that matters: reuse it after a panic elsewhere.
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.lock().policy.clone()
    }

    /// The exact document text in force and its signed update.
    pub fn document(&self) -> (String, Option<SignedPolicy>) {
        let g = self.lock();
        (g.document.clone(), g.update.clone())
    }

    /// Runs `f` under the gate, waiting for any update in preparation.
    pub async fn decide<R>(&self, mut f: impl FnMut(&mut Gate) -> R) -> R {
        loop {
            let notify = {
                let mut g = self.lock();
                match &g.updating {
                    None => return f(&mut g),
                    Some(n) => n.clone(),
                }
            };
            // Registered before checking again, so the update's
            // notification cannot slip between the check and the wait.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let still = self
                .lock()
                .updating
                .as_ref()
                .is_some_and(|n| Arc::ptr_eq(n, &notify));
            if still {
                notified.await;
            }
        }
    }

    /// Starts preparing an update: evaluations wait until
    /// [`EnforcedPolicy::finish_update`] or [`EnforcedPolicy::abandon_update`].
    /// `false` if another update is being prepared.
    pub fn begin_update(&self) -> bool {
        let mut g = self.lock();
        if g.updating.is_some() {
            return false;
        }
        g.updating = Some(Arc::new(Notify::new()));
        true
    }

    /// Swaps in the new policy and its aggregates, runs `f` under the gate
    /// (to queue the update's journal step in order), and lets evaluations
    /// go on.
    pub fn finish_update<R>(
        &self,
        policy: Policy,
        document: String,
        update: SignedPolicy,
        spent: Spending,
        f: impl FnOnce() -> R,
    ) -> R {
        let mut g = self.lock();
        g.policy = Arc::new(policy);
        g.document = document;
        g.update = Some(update);
        g.spent = spent;
        // A version at least the shadow's ends it (the caller logs that in
        // the same step); an older one is what the shadow now runs beside.
        let policy = g.policy.clone();
        g.shadow = g.shadow.take().and_then(|s| s.rebase(&policy));
        let out = f();
        if let Some(n) = g.updating.take() {
            n.notify_waiters();
        }
        out
    }

    /// Ends an update in preparation that changes the gate otherwise than
    /// with a new policy (the shadow): runs `f` under the gate (to queue
    /// its journal step in order) and lets evaluations go on.
    pub fn finish_update_with<R>(&self, f: impl FnOnce(&mut Gate) -> R) -> R {
        let mut g = self.lock();
        let out = f(&mut g);
        if let Some(n) = g.updating.take() {
            n.notify_waiters();
        }
        out
    }

    /// Reads the gate now, without waiting for an update in preparation
    /// (what it shows may change once that update is done).
    pub fn inspect<R>(&self, f: impl FnOnce(&Gate) -> R) -> R {
        f(&self.lock())
    }

    /// Gives up an update in preparation.
    pub fn abandon_update(&self) {
        if let Some(n) = self.lock().updating.take() {
            n.notify_waiters();
        }
    }
}
