//! The loop that pays schedules' due occurrences.
//!
//! Every `poll_ms` it reads the open schedules, asks the timing which
//! occurrences are due from the first one not handled
//! (`Timing::due`, with the clock's time), and handles them in order under
//! the schedule's lock: a paused schedule skips them, a missed one past its
//! grace is paid late or skipped as its timing says, and a due one becomes
//! the payout `<schedule_id>.<n>`, made in the name of the client that
//! created the schedule. The occurrence is recorded (and the schedule moved
//! past it) only once the payout exists: a crash in between makes the same
//! payout id again, which answers the payout already made.

use std::sync::{Arc, Weak};
use std::time::Duration;

use keyfold_audit::Event;
use keyfold_policy::RequestOrigin;
use keyfold_programmable::schedule::Step;
use keyfold_proto::api::PayoutState;
use keyfold_store::{OccurrenceRow, ScheduleOp, ScheduleRow};
use tokio::sync::Notify;

use super::{Handled, Spec};
use crate::service::{BoxFuture, ServiceError, Tenant};
use crate::Coordinator;

/// Schedules read per page of a pass.
const PAGE: usize = 200;

/// Starts the loop if the coordinator has a payments module.
pub fn spawn(coordinator: &Arc<Coordinator>) -> Option<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    spawn_passes(coordinator, |c| Box::pin(c.pay_due_occurrences()))
}

/// Runs `pass` every `[schedules] poll_ms` while the coordinator lives and
/// until the returned `Notify` stops it, if the coordinator has a payments
/// module (schedules and conditional payouts both pay through it).
pub(crate) fn spawn_passes(
    coordinator: &Arc<Coordinator>,
    pass: fn(&Coordinator) -> BoxFuture<'_, ()>,
) -> Option<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    coordinator.payments.as_ref()?;
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run(Arc::downgrade(coordinator), stop.clone(), pass));
    Some((stop, task))
}

async fn run(
    coordinator: Weak<Coordinator>,
    stop: Arc<Notify>,
    pass: fn(&Coordinator) -> BoxFuture<'_, ()>,
) {
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let poll = Duration::from_millis(c.cfg.schedules.poll_ms.max(100));
        pass(&c).await;
        drop(c);
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Whether a failure to make an occurrence's payout may pass on a later
/// try (the signers, the chain or the audit log were unavailable) rather
/// than being the payout's own fault.
fn transient(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::QuorumUnavailable(_)
            | ServiceError::ChainUnavailable(_)
            | ServiceError::AuditUnavailable(_)
            | ServiceError::InProgress(_)
            | ServiceError::SigningFailed(_)
            | ServiceError::Internal(_)
    )
}

/// A payout that ended at once, without a transaction.
fn ended_unpaid(state: PayoutState) -> bool {
    matches!(
        state,
        PayoutState::Failed | PayoutState::Rejected | PayoutState::Expired | PayoutState::Cancelled
    )
}

impl Coordinator {
    /// One pass over the open schedules.
    pub(crate) async fn pay_due_occurrences(&self) {
        let mut after: Option<String> = None;
        loop {
            let a = after.clone();
            let page = match self
                .read(move |s| s.schedules(&["active", "paused"], None, a.as_deref(), PAGE))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the schedules");
                    return;
                }
            };
            let full = page.len() == PAGE;
            after = page.last().map(|r| r.schedule_id.clone());
            for row in page {
                let id = row.schedule_id.clone();
                if let Err(e) = self.run_schedule(&id).await {
                    tracing::warn!(schedule = %id, error = %e, "schedule pass failed");
                }
            }
            if !full {
                return;
            }
        }
    }

    /// Handles the due occurrences of one schedule, under its lock.
    async fn run_schedule(&self, id: &str) -> Result<(), ServiceError> {
        let _guard = self.locks.lock(&format!("schedule/{id}")).await;
        let sid = id.to_string();
        // Read again under the lock: a pause or a cancel may have come.
        let Some(row) = self.read(move |s| s.schedule(&sid)).await? else {
            return Ok(());
        };
        if row.state != "active" && row.state != "paused" {
            return Ok(());
        }
        let spec = Spec::parse(&row)?;
        let now = self.clock.now_secs();
        let due = spec
            .timing
            .due(row.next_occurrence, now, self.cfg.schedules.max_per_pass);
        for step in &due.steps {
            let handled = self.handle(&row, &spec, *step, now).await?;
            if !handled {
                // Retried at the next pass.
                return Ok(());
            }
        }
        if due.finished && row.state == "active" {
            let detail = serde_json::to_string(&super::Changed {
                from: "active".into(),
                to: "finished".into(),
                by: "schedule".into(),
            })
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
            self.write_schedule(
                Event::Schedule {
                    schedule_id: row.schedule_id.clone(),
                    action: "finished".into(),
                    occurrence: None,
                    detail,
                },
                ScheduleOp::SetState {
                    schedule_id: row.schedule_id.clone(),
                    from: "active".into(),
                    to: "finished".into(),
                    at: super::now_i64(now),
                },
            )
            .await?;
            tracing::info!(schedule = %row.schedule_id, "schedule finished");
        }
        Ok(())
    }

    /// Handles one occurrence; `false` when it must be tried again later.
    async fn handle(
        &self,
        row: &ScheduleRow,
        spec: &Spec,
        step: Step,
        now: u64,
    ) -> Result<bool, ServiceError> {
        let (n, due_at) = match step {
            Step::Pay { occurrence, due_at } | Step::Skip { occurrence, due_at } => {
                (occurrence, due_at)
            }
        };
        // A payout already made for this occurrence (its first try failed
        // after it was recorded, or a crash came before the occurrence was)
        // is finished, never skipped: it may still be signed.
        let pid = super::occurrence_payout_id(&row.schedule_id, n);
        let started = self.read(move |s| s.get_payout(&pid)).await?.is_some();
        let step = if started {
            Step::Pay {
                occurrence: n,
                due_at,
            }
        } else {
            step
        };
        let paused = row.state == "paused" && !started;
        let (outcome, payout_id, reason) = match step {
            _ if paused => (
                "skipped",
                None,
                Some("the schedule was paused when it came due".to_string()),
            ),
            Step::Skip { .. } => (
                "skipped",
                None,
                Some(format!(
                    "missed: not paid within {} s of its time, and the schedule skips missed occurrences",
                    spec.timing.grace_secs
                )),
            ),
            Step::Pay { .. } => {
                let tenant = match &row.merchant_id {
                    Some(m) => Tenant::Merchant(m.clone()),
                    None => Tenant::Operator,
                };
                let req = spec.payout_request(&row.schedule_id, n);
                let payout_id = req.payout_id.clone();
                match self
                    .create_payout_from(&row.client, tenant, req, Some(RequestOrigin::Scheduled))
                    .await
                {
                    Ok(info) if ended_unpaid(info.state) => (
                        "refused",
                        Some(payout_id),
                        Some(
                            info.reason
                                .unwrap_or_else(|| format!("the payout ended {}", info.state)),
                        ),
                    ),
                    Ok(_) => ("paid", Some(payout_id), None),
                    Err(e) if transient(&e) => {
                        tracing::warn!(schedule = %row.schedule_id, occurrence = n, error = %e, "occurrence not paid yet; tried again");
                        return Ok(false);
                    }
                    Err(e) => ("refused", None, Some(e.to_string())),
                }
            }
        };
        let due_at = super::now_i64(due_at);
        let at = super::now_i64(now);
        let detail = serde_json::to_string(&Handled {
            due_at,
            payout_id: payout_id.clone(),
            reason: reason.clone(),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let recorded = self
            .write_schedule(
                Event::Schedule {
                    schedule_id: row.schedule_id.clone(),
                    action: outcome.into(),
                    occurrence: Some(n),
                    detail,
                },
                ScheduleOp::Occurrence(OccurrenceRow {
                    schedule_id: row.schedule_id.clone(),
                    occurrence: n,
                    due_at,
                    outcome: outcome.into(),
                    payout_id: payout_id.clone(),
                    reason,
                    at,
                }),
            )
            .await;
        match recorded {
            Ok(()) => {
                tracing::info!(schedule = %row.schedule_id, occurrence = n, %outcome, payout = ?payout_id, "schedule occurrence");
                Ok(true)
            }
            // Recorded by another coordinator meanwhile: read it again.
            Err(ServiceError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
