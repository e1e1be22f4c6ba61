//! The auditor's replay of scheduled payouts: each schedule's timing, as
//! its `created` event logged it, is recomputed with
//! `keyfold_programmable::schedule`, so every occurrence is checked to be
//! the schedule's next one, due when the timing says, handled no earlier
//! than that, paid by the payout id `<schedule>.<n>` and never after the
//! schedule was cancelled or finished.

use std::collections::HashMap;

use keyfold_programmable::schedule::{Missed, Timing};
use serde::Deserialize;

use super::Check;

/// What the log said of one schedule so far.
#[derive(Debug)]
pub(super) struct Replayed {
    timing: Timing,
    state: &'static str,
    next: u64,
}

/// Every schedule of the log.
#[derive(Debug, Default)]
pub(super) struct Schedules {
    schedules: HashMap<String, Replayed>,
}

#[derive(Deserialize)]
struct CreatedSpec {
    timing: Timing,
}

#[derive(Deserialize)]
struct Created {
    spec: CreatedSpec,
}

#[derive(Deserialize)]
struct Changed {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct Handled {
    due_at: i64,
    #[serde(default)]
    payout_id: Option<String>,
}

fn state_name(s: &str) -> Option<&'static str> {
    ["active", "paused", "cancelled", "finished"]
        .into_iter()
        .find(|n| *n == s)
}

impl Schedules {
    /// Checks one `schedule` event, logged at `entry_secs`.
    pub(super) fn check(
        &mut self,
        schedule_id: &str,
        action: &str,
        occurrence: Option<u64>,
        detail: &str,
        entry_secs: u64,
    ) -> Check {
        let who = |m: String| format!("schedule {schedule_id}: {m}");
        if action == "created" {
            if self.schedules.contains_key(schedule_id) {
                return Err(who("created twice".into()));
            }
            let c: Created = serde_json::from_str(detail)
                .map_err(|e| who(format!("created: the logged schedule does not parse: {e}")))?;
            c.spec
                .timing
                .check(0)
                .map_err(|e| who(format!("created with an invalid timing: {e}")))?;
            self.schedules.insert(
                schedule_id.to_string(),
                Replayed {
                    timing: c.spec.timing,
                    state: "active",
                    next: 0,
                },
            );
            return Ok(());
        }
        let Some(s) = self.schedules.get_mut(schedule_id) else {
            return Err(who(format!("{action} before the schedule was created")));
        };
        match (action, occurrence) {
            ("paused" | "resumed" | "cancelled" | "finished", None) => {
                let c: Changed = serde_json::from_str(detail)
                    .map_err(|e| who(format!("{action}: detail does not parse: {e}")))?;
                let (from, to): (&[&str], &str) = match action {
                    "paused" => (&["active"], "paused"),
                    "resumed" => (&["paused"], "active"),
                    "cancelled" => (&["active", "paused"], "cancelled"),
                    _ => (&["active"], "finished"),
                };
                if c.from != s.state || !from.contains(&s.state) || c.to != to {
                    return Err(who(format!(
                        "{action} from {} to {} while the log has it {}",
                        c.from, c.to, s.state
                    )));
                }
                if action == "finished" && s.timing.occurrence_at(s.next).is_some() {
                    return Err(who(format!(
                        "finished although occurrence {} is still to come",
                        s.next
                    )));
                }
                s.state = state_name(to).unwrap_or("active");
                Ok(())
            }
            ("paid" | "skipped" | "refused", Some(n)) => {
                if s.state != "active" && s.state != "paused" {
                    return Err(who(format!(
                        "occurrence {n} {action} after it was {}",
                        s.state
                    )));
                }
                if n != s.next {
                    return Err(who(format!(
                        "occurrence {n} {action} where occurrence {} was next",
                        s.next
                    )));
                }
                let h: Handled = serde_json::from_str(detail)
                    .map_err(|e| who(format!("occurrence {n}: detail does not parse: {e}")))?;
                let Some(due) = s.timing.occurrence_at(n) else {
                    return Err(who(format!("occurrence {n} is beyond the schedule's end")));
                };
                if i64::try_from(due).ok() != Some(h.due_at) {
                    return Err(who(format!(
                        "occurrence {n} logged due at {}, its timing says {due}",
                        h.due_at
                    )));
                }
                if entry_secs < due {
                    return Err(who(format!(
                        "occurrence {n} {action} at {entry_secs}, before it was due ({due})"
                    )));
                }
                // A paused schedule skips what falls due, but an occurrence
                // whose payout was made before the pause is recorded as
                // what it became (paid or refused).
                if action == "skipped"
                    && s.state == "active"
                    && (s.timing.missed != Missed::Skip
                        || entry_secs <= due.saturating_add(s.timing.grace_secs))
                {
                    return Err(who(format!(
                        "occurrence {n} skipped, but the schedule was active and the occurrence was not missed by its timing's rule"
                    )));
                }
                let expected = format!("{schedule_id}.{n}");
                if action == "paid" && h.payout_id.as_deref() != Some(expected.as_str()) {
                    return Err(who(format!(
                        "occurrence {n} paid by {:?}, not by the payout {expected}",
                        h.payout_id
                    )));
                }
                s.next = n.saturating_add(1);
                Ok(())
            }
            _ => Err(who(format!(
                "action {action:?} (occurrence {occurrence:?}) is not a schedule action"
            ))),
        }
    }
}
