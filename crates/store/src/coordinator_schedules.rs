//! The tables of scheduled payouts: each schedule (its payout template and
//! timing, immutable once created, and its state), and one row per handled
//! occurrence (the payout it became, or why it was skipped or refused).
//!
//! Every write is a [`ScheduleOp`] inside the journal's group, so it lands
//! in the same transaction as the `schedule` audit event that describes it.
//! An occurrence row moves the schedule's `next_occurrence` past it in that
//! same transaction; an occurrence is recorded once (its primary key), and
//! the payout it became has the deterministic id `<schedule id>.<n>`, so a
//! coordinator that crashed between the payout and the row pays nothing
//! twice: the retried payout id answers the payout already made.

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate;

/// Migration 12 -> 13: schedules and their occurrences.
pub(crate) const MIGRATION_13: &str = "CREATE TABLE schedules (
        schedule_id     TEXT PRIMARY KEY,
        merchant_id     TEXT,
        client          TEXT NOT NULL,
        fingerprint     BLOB NOT NULL,
        spec_json       TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('active', 'paused', 'cancelled', 'finished')),
        next_occurrence INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX schedules_by_state ON schedules (state);
    CREATE TABLE schedule_occurrences (
        schedule_id TEXT NOT NULL,
        occurrence  INTEGER NOT NULL,
        due_at      INTEGER NOT NULL,
        outcome     TEXT NOT NULL CHECK (outcome IN ('paid', 'skipped', 'refused')),
        payout_id   TEXT,
        reason      TEXT,
        at          INTEGER NOT NULL,
        PRIMARY KEY (schedule_id, occurrence)
    ) STRICT;";

/// The states of a schedule.
pub const SCHEDULE_STATES: [&str; 4] = ["active", "paused", "cancelled", "finished"];
/// What became of an occurrence.
pub const OCCURRENCE_OUTCOMES: [&str; 3] = ["paid", "skipped", "refused"];

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    /// Its id (chosen by the client).
    pub schedule_id: String,
    /// The merchant that owns it (`None`: the operator's).
    pub merchant_id: Option<String>,
    /// The API client that created it; its payouts are made in its name.
    pub client: String,
    /// Hash of the creation request (a retry with another body conflicts).
    pub fingerprint: Vec<u8>,
    /// The payout template and the timing (JSON, the coordinator's).
    pub spec_json: String,
    /// `active`, `paused`, `cancelled` or `finished`.
    pub state: String,
    /// The first occurrence not handled yet.
    pub next_occurrence: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A handled occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceRow {
    /// Its schedule.
    pub schedule_id: String,
    /// Its number (0 is the first).
    pub occurrence: u64,
    /// When it was due (Unix seconds).
    pub due_at: i64,
    /// `paid` (a payout was made: see its state), `skipped` or `refused`.
    pub outcome: String,
    /// The payout, for `paid`.
    pub payout_id: Option<String>,
    /// Why it was skipped or refused.
    pub reason: Option<String>,
    /// When it was handled (Unix seconds).
    pub at: i64,
}

/// A write of the schedules (inside a journal group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleOp {
    /// A new schedule ([`StoreError::Conflict`] if its id is taken).
    Insert(ScheduleRow),
    /// Changes a schedule's state from `from` to `to`
    /// ([`StoreError::Conflict`] if it is not in `from`).
    SetState {
        /// The schedule.
        schedule_id: String,
        /// The state it must be in.
        from: String,
        /// Its new state.
        to: String,
        /// Unix seconds.
        at: i64,
    },
    /// Records an occurrence and moves the schedule past it
    /// ([`StoreError::Conflict`] unless it is the schedule's next one).
    Occurrence(OccurrenceRow),
}

fn state(field: &'static str, s: &str) -> Result<(), StoreError> {
    if SCHEDULE_STATES.contains(&s) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            field,
            reason: format!("{s:?} is not one of {SCHEDULE_STATES:?}"),
        })
    }
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: format!("{v} is above 2^63 - 1"),
    })
}

/// Checks a schedule op's bounds before it is applied.
pub(crate) fn check(op: &ScheduleOp) -> Result<(), StoreError> {
    match op {
        ScheduleOp::Insert(r) => {
            validate::client_id("schedule_id", &r.schedule_id)?;
            if let Some(m) = &r.merchant_id {
                validate::id("merchant_id", m)?;
            }
            validate::client_id("client", &r.client)?;
            validate::bytes("fingerprint", &r.fingerprint, 64)?;
            validate::json("spec_json", &r.spec_json)?;
            state("state", &r.state)?;
            to_i64("next_occurrence", r.next_occurrence).map(|_| ())
        }
        ScheduleOp::SetState {
            schedule_id,
            from,
            to,
            ..
        } => {
            validate::client_id("schedule_id", schedule_id)?;
            state("from", from)?;
            state("to", to)
        }
        ScheduleOp::Occurrence(o) => {
            validate::client_id("schedule_id", &o.schedule_id)?;
            to_i64("occurrence", o.occurrence)?;
            if !OCCURRENCE_OUTCOMES.contains(&o.outcome.as_str()) {
                return Err(StoreError::InvalidInput {
                    field: "outcome",
                    reason: format!("{:?} is not one of {OCCURRENCE_OUTCOMES:?}", o.outcome),
                });
            }
            if let Some(p) = &o.payout_id {
                validate::client_id("payout_id", p)?;
            }
            if o.reason.as_ref().is_some_and(|r| r.len() > 1024) {
                return Err(StoreError::InvalidInput {
                    field: "reason",
                    reason: "must be at most 1024 bytes".into(),
                });
            }
            Ok(())
        }
    }
}

fn conflict(what: &'static str, id: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        what,
        id: id.into(),
    }
}

/// Applies a schedule op inside the group's transaction.
pub(crate) fn apply(
    tx: &rusqlite::Connection,
    op: &ScheduleOp,
    err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    match op {
        ScheduleOp::Insert(r) => {
            let changed = tx
                .execute(
                    "INSERT INTO schedules (schedule_id, merchant_id, client, fingerprint,
                        spec_json, state, next_occurrence, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (schedule_id) DO NOTHING",
                    params![
                        r.schedule_id,
                        r.merchant_id,
                        r.client,
                        r.fingerprint,
                        r.spec_json,
                        r.state,
                        to_i64("next_occurrence", r.next_occurrence)?,
                        r.created_at,
                        r.updated_at
                    ],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(conflict("schedule", &r.schedule_id));
            }
            Ok(())
        }
        ScheduleOp::SetState {
            schedule_id,
            from,
            to,
            at,
        } => {
            let changed = tx
                .execute(
                    "UPDATE schedules SET state = ?3, updated_at = ?4
                     WHERE schedule_id = ?1 AND state = ?2",
                    params![schedule_id, from, to, at],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(conflict(
                    "schedule in state",
                    format!("{schedule_id} ({from})"),
                ));
            }
            Ok(())
        }
        ScheduleOp::Occurrence(o) => {
            let n = to_i64("occurrence", o.occurrence)?;
            // Only the next occurrence moves the schedule: two coordinators
            // (or a retry) racing on one occurrence record it once.
            let changed = tx
                .execute(
                    "UPDATE schedules SET next_occurrence = ?2 + 1, updated_at = ?3
                     WHERE schedule_id = ?1 AND next_occurrence = ?2",
                    params![o.schedule_id, n, o.at],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(conflict(
                    "schedule occurrence",
                    format!("{}.{}", o.schedule_id, o.occurrence),
                ));
            }
            tx.execute(
                "INSERT INTO schedule_occurrences
                    (schedule_id, occurrence, due_at, outcome, payout_id, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    o.schedule_id,
                    n,
                    o.due_at,
                    o.outcome,
                    o.payout_id,
                    o.reason,
                    o.at
                ],
            )
            .map_err(&err)?;
            Ok(())
        }
    }
}

const COLUMNS: &str = "schedule_id, merchant_id, client, fingerprint, spec_json, state,
    next_occurrence, created_at, updated_at";

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    let next: i64 = r.get(6)?;
    Ok(ScheduleRow {
        schedule_id: r.get(0)?,
        merchant_id: r.get(1)?,
        client: r.get(2)?,
        fingerprint: r.get(3)?,
        spec_json: r.get(4)?,
        state: r.get(5)?,
        next_occurrence: u64::try_from(next).unwrap_or(0),
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

impl CoordinatorStore {
    /// One schedule.
    pub fn schedule(&self, schedule_id: &str) -> Result<Option<ScheduleRow>, StoreError> {
        validate::client_id("schedule_id", schedule_id)?;
        self.db
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = ?1"),
                [schedule_id],
                schedule_row,
            )
            .optional()
            .map_err(self.db.err("schedule"))
    }

    /// Schedules in one of `states` (every state if empty), of `merchant`
    /// only if given (`Some(None)`: the operator's), by id, after `after`,
    /// at most `limit`.
    pub fn schedules(
        &self,
        states: &[&str],
        merchant: Option<Option<&str>>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleRow>, StoreError> {
        for s in states {
            state("state", s)?;
        }
        let err = self.db.err("schedules");
        // The states are checked names, so they can be spelled in the SQL.
        let mut sql = format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id > ?1");
        if !states.is_empty() {
            let list: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        match merchant {
            Some(Some(_)) => sql.push_str(" AND merchant_id = ?3"),
            Some(None) => sql.push_str(" AND merchant_id IS NULL"),
            None => {}
        }
        sql.push_str(" ORDER BY schedule_id LIMIT ?2");
        let conn = self.db.reader();
        let mut stmt = conn.prepare(&sql).map_err(&err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.unwrap_or("");
        let rows = match merchant {
            Some(Some(m)) => stmt.query_map(params![after, limit, m], schedule_row),
            _ => stmt.query_map(params![after, limit], schedule_row),
        }
        .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    /// A schedule's handled occurrences, newest first, at most `limit`.
    pub fn schedule_occurrences(
        &self,
        schedule_id: &str,
        limit: usize,
    ) -> Result<Vec<OccurrenceRow>, StoreError> {
        validate::client_id("schedule_id", schedule_id)?;
        let err = self.db.err("schedule_occurrences");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT schedule_id, occurrence, due_at, outcome, payout_id, reason, at
                 FROM schedule_occurrences WHERE schedule_id = ?1
                 ORDER BY occurrence DESC LIMIT ?2",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![schedule_id, limit], |r| {
                let n: i64 = r.get(1)?;
                Ok(OccurrenceRow {
                    schedule_id: r.get(0)?,
                    occurrence: u64::try_from(n).unwrap_or(0),
                    due_at: r.get(2)?,
                    outcome: r.get(3)?,
                    payout_id: r.get(4)?,
                    reason: r.get(5)?,
                    at: r.get(6)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}
