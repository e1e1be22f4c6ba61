//! The auditor's replay of conditional payouts: each escrow's condition, as
//! its `created` event logged it, is checked against how the escrow ended.
//! An escrow ends once; a release by approvers must be backed by that
//! many `approved` entries of named approvers logged before it; a deadline
//! release must be logged no earlier than the deadline; a payout must be
//! `<escrow>.pay` for a release and `<escrow>.refund` for a refund.
//! Releases on an order's settlement or a token transfer name their
//! evidence (the order, the transaction) for the auditor to look up.

use std::collections::{BTreeSet, HashMap};

use keyfold_programmable::condition::{Condition, Escrow, OnExpiry};
use serde::Deserialize;

use super::Check;

#[derive(Debug)]
struct Replayed {
    escrow: Escrow,
    approved: BTreeSet<String>,
    ended: bool,
}

/// Every escrow of the log.
#[derive(Debug, Default)]
pub(super) struct Escrows {
    escrows: HashMap<String, Replayed>,
}

#[derive(Deserialize)]
struct CreatedSpec {
    escrow: Escrow,
}

#[derive(Deserialize)]
struct Created {
    spec: CreatedSpec,
}

#[derive(Deserialize)]
struct Approved {
    by: String,
}

#[derive(Deserialize)]
struct Ended {
    reason: String,
    #[serde(default)]
    payout_id: Option<String>,
}

impl Escrows {
    /// Checks one `escrow` event, logged at `entry_secs`.
    pub(super) fn check(&mut self, id: &str, action: &str, detail: &str, entry_secs: u64) -> Check {
        let who = |m: String| format!("conditional payout {id}: {m}");
        if action == "created" {
            if self.escrows.contains_key(id) {
                return Err(who("created twice".into()));
            }
            let c: Created = serde_json::from_str(detail)
                .map_err(|e| who(format!("the logged escrow does not parse: {e}")))?;
            self.escrows.insert(
                id.to_string(),
                Replayed {
                    escrow: c.spec.escrow,
                    approved: BTreeSet::new(),
                    ended: false,
                },
            );
            return Ok(());
        }
        let Some(e) = self.escrows.get_mut(id) else {
            return Err(who(format!("{action} before it was created")));
        };
        if e.ended {
            return Err(who(format!("{action} after it ended")));
        }
        match action {
            "approved" => {
                let a: Approved = serde_json::from_str(detail)
                    .map_err(|err| who(format!("approved: detail does not parse: {err}")))?;
                let Condition::Approvers { approvers, .. } = &e.escrow.condition else {
                    return Err(who("approved, but its condition names no approvers".into()));
                };
                if !approvers.contains(&a.by) {
                    return Err(who(format!(
                        "approved by {}, who is not a named approver",
                        a.by
                    )));
                }
                e.approved.insert(a.by);
                Ok(())
            }
            "released" | "expired" | "cancelled" => {
                let end: Ended = serde_json::from_str(detail)
                    .map_err(|err| who(format!("{action}: detail does not parse: {err}")))?;
                if action == "released" {
                    match &e.escrow.condition {
                        Condition::After { at } if entry_secs < *at => {
                            return Err(who(format!(
                                "released at {entry_secs}, before its deadline {at}"
                            )))
                        }
                        Condition::Approvers { quorum, .. }
                            if e.approved.len() < *quorum as usize =>
                        {
                            return Err(who(format!(
                                "released with {} logged approvals of the {quorum} required",
                                e.approved.len()
                            )))
                        }
                        _ => {}
                    }
                    if end.payout_id.as_deref() != Some(format!("{id}.pay").as_str()) {
                        return Err(who(format!(
                            "released as the payout {:?}, not {id}.pay",
                            end.payout_id
                        )));
                    }
                }
                if action == "expired" {
                    let refund = matches!(e.escrow.on_expiry, OnExpiry::Refund { .. });
                    let want = refund.then(|| format!("{id}.refund"));
                    if end.payout_id != want {
                        return Err(who(format!(
                            "expired with the payout {:?}, its on_expiry says {want:?}",
                            end.payout_id
                        )));
                    }
                    let closed_order = matches!(e.escrow.condition, Condition::OrderSettled { .. })
                        && end.reason.contains("will never settle");
                    if !closed_order && e.escrow.expires_at.is_none_or(|x| entry_secs < x) {
                        return Err(who(format!(
                            "expired at {entry_secs}, before its expiry {:?}",
                            e.escrow.expires_at
                        )));
                    }
                }
                if action == "cancelled" && end.payout_id.is_some() {
                    return Err(who("cancelled, yet names a payout".into()));
                }
                e.ended = true;
                Ok(())
            }
            other => Err(who(format!("action {other:?} is not an escrow action"))),
        }
    }
}
