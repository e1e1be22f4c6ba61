//! Scheduled payouts (`docs/programmable.md`): a merchant or the treasury
//! defines a recurring payout once; each occurrence becomes an ordinary
//! payout, judged by the policy and paid like any other.
//!
//! The timing and its arithmetic are `keyfold_programmable::schedule`
//! (pure); this module keeps schedules in the store, serves the API
//! ([`Coordinator::create_schedule`] and friends) and drives the due
//! occurrences ([`runner`]). Occurrence `n` of schedule `s` is paid by the
//! payout `s.n`: a payout id is paid at most once, so a restart, a retry or
//! a second coordinator never pays an occurrence twice.

pub mod recovery;
pub mod runner;

use keyfold_audit::Event;
use keyfold_proto::api::{
    CreateSchedule, OccurrenceInfo, PayoutRequest, ScheduleInfo, ScheduleList, ScheduledPayout,
};
use keyfold_store::{Op, ScheduleOp, ScheduleRow, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::payments::payout::MAX_PAYOUT_ID;
use crate::service::{Caller, ServiceError, Tenant};
use crate::Coordinator;

/// Longest schedule id: room is left for `.` and the largest occurrence
/// number in the payout ids.
pub const MAX_SCHEDULE_ID: usize = MAX_PAYOUT_ID - ".18446744073709551615".len();
/// Occurrences shown with a schedule.
const SHOWN_OCCURRENCES: usize = 20;
/// Schedules per page of `GET /v1/schedules`.
const MAX_PAGE: usize = 100;
/// How far in the past a new schedule may start (clients' clocks drift).
const START_SLACK_SECS: u64 = 300;

/// `[schedules]` of the coordinator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// The shortest gap an `interval` rule may have (seconds). Calendar
    /// rules are at least a day apart.
    pub min_interval_secs: u64,
    /// How often the due occurrences are looked for (milliseconds).
    pub poll_ms: u64,
    /// Occurrences handled per schedule and pass (the rest wait a pass).
    pub max_per_pass: usize,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        SchedulesConfig {
            min_interval_secs: 3600,
            poll_ms: 1000,
            max_per_pass: 16,
        }
    }
}

/// What a schedule pays and when: stored with it and logged with its
/// `created` event, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// What each occurrence pays.
    pub payout: ScheduledPayout,
    /// When.
    pub timing: keyfold_programmable::schedule::Timing,
}

impl Spec {
    fn parse(row: &ScheduleRow) -> Result<Spec, ServiceError> {
        serde_json::from_str(&row.spec_json).map_err(|e| {
            ServiceError::Internal(format!("schedule {}: stored spec: {e}", row.schedule_id))
        })
    }

    /// SHA-256 of the spec's JSON: a retried creation must carry the same.
    fn fingerprint(&self) -> Result<Vec<u8>, ServiceError> {
        let json = serde_json::to_vec(self).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(Sha256::digest(json).to_vec())
    }

    /// The payout request of occurrence `n`.
    pub fn payout_request(&self, schedule_id: &str, n: u64) -> PayoutRequest {
        let p = &self.payout;
        PayoutRequest {
            payout_id: occurrence_payout_id(schedule_id, n),
            wallet: p.wallet.clone(),
            chain: p.chain.clone(),
            asset: p.asset.clone(),
            to: p.to.clone(),
            amount: p.amount.clone(),
            reference: p.reference.clone(),
            recent_blockhash: None,
            derivation_path: p.derivation_path.clone(),
            client: None,
        }
    }
}

/// The payout id of occurrence `n` of `schedule_id`.
pub fn occurrence_payout_id(schedule_id: &str, n: u64) -> String {
    format!("{schedule_id}.{n}")
}

/// What `created` logs: enough to rebuild the schedule's row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Created {
    pub merchant_id: Option<String>,
    pub client: String,
    #[serde(with = "hex::serde")]
    pub fingerprint: Vec<u8>,
    pub spec: Spec,
}

/// What an occurrence's event logs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Handled {
    pub due_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a state change logs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Changed {
    pub from: String,
    pub to: String,
    pub by: String,
}

/// A change asked through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleChange {
    /// `POST /v1/schedules/{id}/pause`: occurrences due while paused are
    /// skipped.
    Pause,
    /// `POST /v1/schedules/{id}/resume`.
    Resume,
    /// `POST /v1/schedules/{id}/cancel`: no occurrence is paid any more.
    Cancel,
}

impl ScheduleChange {
    /// (the states it applies to, the new state, the event's action).
    fn transition(self) -> (&'static [&'static str], &'static str, &'static str) {
        match self {
            ScheduleChange::Pause => (&["active"], "paused", "paused"),
            ScheduleChange::Resume => (&["paused"], "active", "resumed"),
            ScheduleChange::Cancel => (&["active", "paused"], "cancelled", "cancelled"),
        }
    }
}

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

fn now_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl Coordinator {
    fn schedules_config(&self) -> &SchedulesConfig {
        &self.cfg.schedules
    }

    /// The schedule `id` as `tenant` may see it.
    async fn visible_schedule(
        &self,
        tenant: &Tenant,
        id: &str,
    ) -> Result<ScheduleRow, ServiceError> {
        crate::requests::intake::check_client_id("schedule_id", id)?;
        let sid = id.to_string();
        self.read(move |s| s.schedule(&sid))
            .await?
            .filter(|r| tenant.sees(r.merchant_id.as_deref()))
            .ok_or_else(|| ServiceError::NotFound(format!("no schedule {id:?}")))
    }

    /// A schedule's API view.
    async fn schedule_view(&self, row: ScheduleRow) -> Result<ScheduleInfo, ServiceError> {
        let spec = Spec::parse(&row)?;
        let sid = row.schedule_id.clone();
        let occurrences = self
            .read(move |s| s.schedule_occurrences(&sid, SHOWN_OCCURRENCES))
            .await?
            .into_iter()
            .map(|o| OccurrenceInfo {
                occurrence: o.occurrence,
                due_at: o.due_at,
                outcome: o.outcome,
                payout_id: o.payout_id,
                reason: o.reason,
                at: o.at,
            })
            .collect();
        let open = row.state == "active" || row.state == "paused";
        Ok(ScheduleInfo {
            next_due_at: if open {
                spec.timing.occurrence_at(row.next_occurrence)
            } else {
                None
            },
            schedule_id: row.schedule_id,
            state: row.state,
            payout: spec.payout,
            timing: spec.timing,
            next_occurrence: row.next_occurrence,
            created_at: row.created_at,
            updated_at: row.updated_at,
            occurrences,
        })
    }

    /// `POST /v1/schedules`: checks the template and the timing, then
    /// records the schedule (idempotent per `schedule_id`).
    pub(crate) async fn create_schedule(
        &self,
        caller: Caller,
        req: CreateSchedule,
    ) -> Result<ScheduleInfo, ServiceError> {
        let tenant = caller.tenant();
        crate::requests::intake::check_client_id("schedule_id", &req.schedule_id)?;
        if req.schedule_id.len() > MAX_SCHEDULE_ID {
            return Err(bad(format!(
                "schedule_id must be at most {MAX_SCHEDULE_ID} characters (the payout of occurrence n is <schedule_id>.n)"
            )));
        }
        let now = self.clock.now_secs();
        req.timing
            .check(self.schedules_config().min_interval_secs)
            .map_err(|e| bad(e.to_string()))?;
        if req.timing.start.saturating_add(START_SLACK_SECS) < now {
            return Err(bad(format!(
                "timing.start: {} is in the past (now is {now}); a schedule starts now or later",
                req.timing.start
            )));
        }
        let payments = self.payments()?.clone();
        let entry = payments.entry_for(&tenant, &req.payout.chain)?.clone();
        if entry.family != keyfold_chain::registry::ChainFamily::Evm {
            return Err(bad(format!(
                "payout.chain: {} is not an EVM chain; a Solana transfer needs a recent blockhash from the client at each payment, so it cannot be scheduled",
                entry.id
            )));
        }
        let spec = Spec {
            payout: req.payout,
            timing: req.timing,
        };
        // The template must make a valid payout: the first occurrence's
        // request is checked exactly as `POST /v1/payouts` would.
        crate::payments::payout::check(&spec.payout_request(&req.schedule_id, 0), &entry).map_err(
            |e| match e {
                ServiceError::BadRequest(m) => bad(format!("payout: {m}")),
                other => other,
            },
        )?;
        self.check_key_visible(&tenant, &spec.payout.wallet).await?;
        // Operators see every key, so visibility alone does not say it exists.
        self.key(&spec.payout.wallet)?;
        let fingerprint = spec.fingerprint()?;
        let _guard = self
            .locks
            .lock(&format!("schedule/{}", req.schedule_id))
            .await;
        let sid = req.schedule_id.clone();
        if let Some(row) = self.read(move |s| s.schedule(&sid)).await? {
            if row.fingerprint != fingerprint || row.merchant_id.as_deref() != tenant.merchant() {
                return Err(ServiceError::Conflict(format!(
                    "schedule_id {} was used for another schedule",
                    req.schedule_id
                )));
            }
            return self.schedule_view(row).await;
        }
        let at = now_i64(now);
        let row = ScheduleRow {
            schedule_id: req.schedule_id.clone(),
            merchant_id: tenant.merchant().map(str::to_string),
            client: caller.client().to_string(),
            fingerprint: fingerprint.clone(),
            spec_json: serde_json::to_string(&spec)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            state: "active".into(),
            next_occurrence: 0,
            created_at: at,
            updated_at: at,
        };
        let detail = serde_json::to_string(&Created {
            merchant_id: row.merchant_id.clone(),
            client: row.client.clone(),
            fingerprint,
            spec,
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let event = Event::Schedule {
            schedule_id: row.schedule_id.clone(),
            action: "created".into(),
            occurrence: None,
            detail,
        };
        self.write_schedule(event, ScheduleOp::Insert(row.clone()))
            .await?;
        tracing::info!(schedule = %row.schedule_id, client = %row.client, "schedule created");
        self.schedule_view(row).await
    }

    /// Logs `event` and applies `op` in one journal group, durably.
    pub(crate) async fn write_schedule(
        &self,
        event: Event,
        op: ScheduleOp,
    ) -> Result<(), ServiceError> {
        match self
            .journal
            .submit_durable(vec![event], vec![Op::Schedule(op)])
            .done()
            .await
        {
            Ok(()) => Ok(()),
            Err(crate::journal::JournalError::Store(e)) => match &*e {
                StoreError::Conflict { what, id } => Err(ServiceError::Conflict(format!(
                    "{what} {id} changed meanwhile"
                ))),
                other => Err(ServiceError::BadRequest(other.to_string())),
            },
            Err(e) => Err(ServiceError::AuditUnavailable(format!(
                "schedule change not recorded: {e}"
            ))),
        }
    }

    /// `GET /v1/schedules/{id}`.
    pub(crate) async fn get_schedule(
        &self,
        tenant: Tenant,
        id: String,
    ) -> Result<ScheduleInfo, ServiceError> {
        let row = self.visible_schedule(&tenant, &id).await?;
        self.schedule_view(row).await
    }

    /// `GET /v1/schedules`: the tenant's schedules by id, after `cursor`.
    pub(crate) async fn list_schedules(
        &self,
        tenant: Tenant,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<ScheduleList, ServiceError> {
        if let Some(c) = &cursor {
            crate::requests::intake::check_client_id("cursor", c)?;
        }
        let limit = limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let merchant = match &tenant {
            Tenant::Operator => None,
            Tenant::Merchant(m) => Some(Some(m.clone())),
        };
        let rows = self
            .read(move |s| {
                s.schedules(
                    &[],
                    merchant.as_ref().map(|m| m.as_deref()),
                    cursor.as_deref(),
                    limit,
                )
            })
            .await?;
        let next_cursor = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.schedule_id.clone()))
            .flatten();
        let mut schedules = Vec::with_capacity(rows.len());
        for row in rows {
            schedules.push(self.schedule_view(row).await?);
        }
        Ok(ScheduleList {
            schedules,
            next_cursor,
        })
    }

    /// `POST /v1/schedules/{id}/pause|resume|cancel`.
    pub(crate) async fn change_schedule(
        &self,
        caller: Caller,
        id: String,
        change: ScheduleChange,
    ) -> Result<ScheduleInfo, ServiceError> {
        let tenant = caller.tenant();
        let _guard = self.locks.lock(&format!("schedule/{id}")).await;
        let row = self.visible_schedule(&tenant, &id).await?;
        let (from, to, action) = change.transition();
        if row.state == to {
            // Asked twice: already done.
            return self.schedule_view(row).await;
        }
        if !from.contains(&row.state.as_str()) {
            return Err(ServiceError::Conflict(format!(
                "schedule {id} is {}; it can be {action} only when {}",
                row.state,
                from.join(" or ")
            )));
        }
        let at = now_i64(self.clock.now_secs());
        let detail = serde_json::to_string(&Changed {
            from: row.state.clone(),
            to: to.into(),
            by: caller.client().into(),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.write_schedule(
            Event::Schedule {
                schedule_id: id.clone(),
                action: action.into(),
                occurrence: None,
                detail,
            },
            ScheduleOp::SetState {
                schedule_id: id.clone(),
                from: row.state.clone(),
                to: to.into(),
                at,
            },
        )
        .await?;
        tracing::info!(schedule = %id, %action, by = %caller.client(), "schedule changed");
        let row = self.visible_schedule(&tenant, &id).await?;
        self.schedule_view(row).await
    }
}

/// An operation of `/v1/schedules`.
#[derive(Debug, Clone)]
pub enum ScheduleApiOp {
    /// `POST /v1/schedules`.
    Create(Box<CreateSchedule>),
    /// `GET /v1/schedules/{id}`.
    Get(String),
    /// `GET /v1/schedules?cursor=..&limit=..`.
    List {
        /// The last id of the previous page.
        cursor: Option<String>,
        /// Page size.
        limit: Option<usize>,
    },
    /// `POST /v1/schedules/{id}/pause|resume|cancel`.
    Change(String, ScheduleChange),
}

/// The answer of a [`ScheduleApiOp`].
#[derive(Debug, Clone)]
pub enum ScheduleAnswer {
    /// One schedule.
    One(Box<ScheduleInfo>),
    /// A page.
    Page(ScheduleList),
}

impl Coordinator {
    /// Serves `/v1/schedules`.
    pub(crate) async fn schedule_api(
        &self,
        caller: Caller,
        op: ScheduleApiOp,
    ) -> Result<ScheduleAnswer, ServiceError> {
        let one = |i: ScheduleInfo| ScheduleAnswer::One(Box::new(i));
        Ok(match op {
            ScheduleApiOp::Create(req) => one(self.create_schedule(caller, *req).await?),
            ScheduleApiOp::Get(id) => one(self.get_schedule(caller.tenant(), id).await?),
            ScheduleApiOp::List { cursor, limit } => {
                ScheduleAnswer::Page(self.list_schedules(caller.tenant(), cursor, limit).await?)
            }
            ScheduleApiOp::Change(id, change) => {
                one(self.change_schedule(caller, id, change).await?)
            }
        })
    }
}
