//! Catching up with the audit log at start: a `schedule` event logged
//! before a crash whose store write was lost is applied again (the audit
//! log is written first; see `crate::recovery`).

use std::collections::HashMap;

use keyfold_audit::Event;
use keyfold_store::{CoordinatorStore, OccurrenceRow, ScheduleOp, ScheduleRow};

use super::{Changed, Created, Handled};

/// Each schedule's (state, next occurrence) as the ops found so far leave
/// it: several events of one schedule in the tail build on each other.
pub(crate) type Seen = HashMap<String, (String, u64)>;

/// The store write that `event` describes, if the store lacks it.
pub(crate) fn op_of(
    store: &CoordinatorStore,
    seen: &mut Seen,
    event: &Event,
    at_secs: i64,
) -> Result<Option<ScheduleOp>, String> {
    let Event::Schedule {
        schedule_id,
        action,
        occurrence,
        detail,
    } = event
    else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| format!("schedule {schedule_id} {action}: {e}");
    let cur = match seen.get(schedule_id) {
        Some(s) => Some(s.clone()),
        None => store
            .schedule(schedule_id)
            .map_err(|e| bad(&e))?
            .map(|r| (r.state, r.next_occurrence)),
    };
    let op = match (action.as_str(), occurrence, cur.clone()) {
        ("created", _, None) => {
            let c: Created = serde_json::from_str(detail).map_err(|e| bad(&e))?;
            Some(ScheduleOp::Insert(ScheduleRow {
                schedule_id: schedule_id.clone(),
                merchant_id: c.merchant_id,
                client: c.client,
                fingerprint: c.fingerprint,
                spec_json: serde_json::to_string(&c.spec).map_err(|e| bad(&e))?,
                state: "active".into(),
                next_occurrence: 0,
                created_at: at_secs,
                updated_at: at_secs,
            }))
        }
        ("paused" | "resumed" | "cancelled" | "finished", None, Some((state, _))) => {
            let c: Changed = serde_json::from_str(detail).map_err(|e| bad(&e))?;
            (state == c.from).then(|| ScheduleOp::SetState {
                schedule_id: schedule_id.clone(),
                from: c.from,
                to: c.to,
                at: at_secs,
            })
        }
        ("paid" | "skipped" | "refused", Some(n), Some((_, next))) if next == *n => {
            let h: Handled = serde_json::from_str(detail).map_err(|e| bad(&e))?;
            Some(ScheduleOp::Occurrence(OccurrenceRow {
                schedule_id: schedule_id.clone(),
                occurrence: *n,
                due_at: h.due_at,
                outcome: action.clone(),
                payout_id: h.payout_id,
                reason: h.reason,
                at: at_secs,
            }))
        }
        _ => None,
    };
    let after = match (&op, cur) {
        (Some(ScheduleOp::Insert(r)), _) => Some((r.state.clone(), 0)),
        (Some(ScheduleOp::SetState { to, .. }), Some((_, next))) => Some((to.clone(), next)),
        (Some(ScheduleOp::Occurrence(o)), Some((state, _))) => {
            Some((state, o.occurrence.saturating_add(1)))
        }
        _ => None,
    };
    if let Some(a) = after {
        seen.insert(schedule_id.clone(), a);
    }
    Ok(op)
}
