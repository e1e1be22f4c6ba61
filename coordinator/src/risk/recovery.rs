//! Catching up with the audit log after a crash: the store writes of the
//! risk module's events that the store lost (see `crate::recovery`).

use keyfold_audit::Event;
use keyfold_risk::{FreezeLift, RefusalInput, RiskRequest, SignedReview};
use keyfold_store::{CoordinatorStore, FreezeRow, RiskOp};

/// The store write that `event` (logged at `at`, Unix seconds) stands for,
/// if it is a risk event the store does not hold yet. `Ok(None)` for other
/// events and for writes already applied.
pub(crate) fn op_of(
    store: &CoordinatorStore,
    event: &Event,
    at: i64,
) -> Result<Option<RiskOp>, String> {
    let e = |x: &dyn std::fmt::Display| format!("risk event: {x}");
    Ok(match event {
        Event::RiskTree {
            version,
            document,
            update,
            ..
        } => Some(RiskOp::InsertTree {
            version: *version,
            document: document.clone(),
            update_json: update.clone(),
            at,
        }),
        Event::RiskDecision {
            request_id,
            seq,
            input,
            detail,
            ..
        } => {
            if store
                .risk_decision(request_id)
                .map_err(|x| e(&x))?
                .is_some()
            {
                return Ok(None);
            }
            let parsed: RiskRequest = serde_json::from_str(input).map_err(|x| e(&x))?;
            Some(RiskOp::InsertDecision {
                seq: *seq,
                request_id: request_id.clone(),
                at: i64::try_from(parsed.at).unwrap_or(i64::MAX),
                input_json: input.clone(),
                decision_json: detail.clone(),
            })
        }
        Event::RiskRefusal {
            request_id,
            seq,
            input,
            ..
        } => {
            if store.risk_refusal(*seq).map_err(|x| e(&x))?.is_some() {
                return Ok(None);
            }
            let parsed: RefusalInput = serde_json::from_str(input).map_err(|x| e(&x))?;
            Some(RiskOp::InsertRefusal {
                seq: *seq,
                request_id: request_id.clone(),
                at: i64::try_from(parsed.at).unwrap_or(i64::MAX),
                input_json: input.clone(),
            })
        }
        // A customer record is written with a full fsync of the store
        // before its step returns, so the store never lacks it; the event
        // holds no secret to restore it from anyway.
        Event::CustomerAuth { .. } => None,
        Event::Freeze {
            freeze_id,
            action,
            scope,
            subject,
            reason,
            request_id,
            by,
            lift,
        } => {
            let existing = store.freeze(freeze_id).map_err(|x| e(&x))?;
            match action.as_str() {
                "added" if existing.is_none() => Some(RiskOp::AddFreeze(FreezeRow {
                    freeze_id: freeze_id.clone(),
                    scope: scope.clone(),
                    subject: subject.clone(),
                    reason: reason.clone(),
                    request_id: request_id.clone(),
                    added_by: by.first().cloned().unwrap_or_else(|| "risk".into()),
                    added_at: at,
                    lifted_at: None,
                    lifted_by: None,
                    lift_json: None,
                })),
                "lifted" if existing.is_some_and(|f| f.lifted_at.is_none()) => {
                    let lift_json = lift.clone().unwrap_or_default();
                    // Only a lift that parses was ever logged.
                    serde_json::from_str::<FreezeLift>(&lift_json).map_err(|x| e(&x))?;
                    Some(RiskOp::LiftFreeze {
                        freeze_id: freeze_id.clone(),
                        lifted_by: by.join(", "),
                        lift_json,
                        at,
                    })
                }
                _ => None,
            }
        }
        Event::Review {
            request_id,
            officer,
            verdict,
            signed,
        } => {
            let review: SignedReview = serde_json::from_str(signed).map_err(|x| e(&x))?;
            if store.review_nonce_used(&review.nonce).map_err(|x| e(&x))? {
                return Ok(None);
            }
            Some(RiskOp::AddReview {
                nonce: review.nonce,
                request_id: request_id.clone(),
                officer: officer.clone(),
                verdict: verdict.clone(),
                review_json: signed.clone(),
                at,
            })
        }
        _ => None,
    })
}
