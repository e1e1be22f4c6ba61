//! One step of the risk engine's sequence, shared by the coordinator (live)
//! and the auditor (replaying the log), so the two cannot drift apart.
//!
//! Decisions are numbered `seq` = 1, 2, 3 ... in the order the engine made
//! them. Step `seq` prunes idle entities when `seq` is a multiple of
//! [`PRUNE_EVERY_SEQ`] (at the request's own time, so pruning depends only on
//! the sequence, never on when a process happened to run), reads the
//! features, evaluates the tree, then counts the request, whatever the
//! decision: a refused burst still counts toward the next request's windows.
//!
//! A refused device signature is a step of the same sequence
//! ([`refusal_step`]): the coordinator numbers refusals and decisions from
//! one counter, so replaying both kinds in `seq` order rebuilds exactly the
//! refusal counts (`refusals_at_least`) a later decision read.

use serde::{Deserialize, Serialize};

use crate::auth::DEVICE_REFUSAL_CODES;
use crate::decision::{evaluate, Decision};
use crate::error::InputError;
use crate::features::Features;
use crate::input::{check_id, check_time, RiskRequest};
use crate::state::RiskState;
use crate::tree::RiskTree;

/// Step numbers at which idle entities are pruned.
pub const PRUNE_EVERY_SEQ: u64 = 4096;

/// Runs step `seq` on `state` (see the module docs).
pub fn decide_step(
    state: &mut RiskState,
    tree: &RiskTree,
    seq: u64,
    req: &RiskRequest,
) -> Result<(Features, Decision), InputError> {
    req.validate()?;
    if seq > 0 && seq.is_multiple_of(PRUNE_EVERY_SEQ) {
        state.prune(req.at);
    }
    let features = state.features(tree, req)?;
    let decision = evaluate(tree, &features);
    state.observe(req)?;
    Ok((features, decision))
}

/// Step `seq` without a decision: what a restarted coordinator does with
/// each recorded decision to rebuild its windows (the same pruning, the
/// same counting as [`decide_step`]).
pub fn replay_step(state: &mut RiskState, seq: u64, req: &RiskRequest) -> Result<(), InputError> {
    req.validate()?;
    if seq > 0 && seq.is_multiple_of(PRUNE_EVERY_SEQ) {
        state.prune(req.at);
    }
    state.observe(req)
}

/// A refused device signature, as the engine counts it (ids pseudonymised
/// by the coordinator): the input of [`refusal_step`], and what the audit
/// log records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefusalInput {
    /// The customer the refused payment was for, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The device named by the refused signature, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The refusal's [`crate::AuthRefusal::code`], one of
    /// [`DEVICE_REFUSAL_CODES`].
    pub code: String,
    /// When the signature was refused (Unix seconds).
    pub at: u64,
}

impl RefusalInput {
    /// Checks every bound and the code; [`refusal_step`] calls it before
    /// changing anything.
    pub fn validate(&self) -> Result<(), InputError> {
        if !DEVICE_REFUSAL_CODES.contains(&self.code.as_str()) {
            return Err(InputError::UnknownRefusalCode {
                code: self.code.chars().take(64).collect(),
            });
        }
        // A refusal counted against nobody would still take a seq, and a
        // replay could not tell it from a record that lost its subject.
        if self.customer_id.is_none() && self.device_id.is_none() {
            return Err(InputError::RefusalWithoutSubject);
        }
        if let Some(id) = &self.customer_id {
            check_id("customer_id", id)?;
        }
        if let Some(id) = &self.device_id {
            check_id("device_id", id)?;
        }
        check_time(self.at)
    }
}

/// Step `seq` when it is a refused device signature: the same pruning as
/// [`decide_step`] (on `seq`, at the refusal's time), then
/// [`RiskState::record_refusal`] for its customer and device. Nothing is
/// changed if `r` is refused.
pub fn refusal_step(state: &mut RiskState, seq: u64, r: &RefusalInput) -> Result<(), InputError> {
    r.validate()?;
    if seq > 0 && seq.is_multiple_of(PRUNE_EVERY_SEQ) {
        state.prune(r.at);
    }
    state.record_refusal(r.customer_id.as_deref(), r.device_id.as_deref(), r.at)
}
