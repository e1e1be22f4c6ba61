//! One step of the risk engine's sequence, shared by the coordinator (live)
//! and the auditor (replaying the log), so the two cannot drift apart.
//!
//! Decisions are numbered `seq` = 1, 2, 3 ... in the order the engine made
//! them. Step `seq` prunes idle entities when `seq` is a multiple of
//! [`PRUNE_EVERY_SEQ`] (at the request's own time, so pruning depends only on
//! the sequence, never on when a process happened to run), reads the
//! features, evaluates the tree, then counts the request, whatever the
//! decision: a refused burst still counts toward the next request's windows.

use crate::decision::{evaluate, Decision};
use crate::error::InputError;
use crate::features::Features;
use crate::input::RiskRequest;
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
