//! The tables of policy versions installed in shadow: each installed
//! shadow (its document and the admin-signed update that let it in, when it
//! was installed and when and how it ended), and one row per request the
//! coordinator evaluated while a shadow was installed (what the version in
//! force decided, what the shadow would have decided, and whether they
//! differ).
//!
//! Every write is a [`ShadowOp`] inside the journal's group: an install or
//! an end lands in the same transaction as the `policy_shadow` audit event
//! that describes it, and a shadow decision in the same transaction as the
//! request's own decision. Shadow decisions are in the store only (the
//! audit log holds the decisions in force, which alone decide), so a
//! machine crash can lose the last few of them; the report is a rollout
//! aid, not evidence.
//!
//! At most one shadow is installed at a time: installing one ends the one
//! before it (`replaced`). Shadows are numbered by the coordinator
//! (`shadow_id`, from 1), so the report of a replaced shadow never mixes
//! with the next one's, even for the same version.

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// Migration 13 -> 14: installed shadows and their decisions.
///
/// `IF NOT EXISTS` keeps the step harmless on a store that already holds
/// the tables (the migration runs again on a store whose recorded version
/// was set back).
pub(crate) const MIGRATION_14: &str = "CREATE TABLE IF NOT EXISTS policy_shadows (
        shadow_id    INTEGER PRIMARY KEY,
        version      INTEGER NOT NULL,
        document     TEXT NOT NULL,
        update_json  TEXT NOT NULL,
        installed_at INTEGER NOT NULL,
        removed_at   INTEGER,
        end_action   TEXT CHECK (end_action IN ('removed', 'ended', 'replaced'))
    ) STRICT;
    CREATE INDEX IF NOT EXISTS policy_shadows_installed ON policy_shadows (removed_at);
    CREATE TABLE IF NOT EXISTS policy_shadow_decisions (
        seq            INTEGER PRIMARY KEY,
        shadow_id      INTEGER NOT NULL,
        request_id     TEXT NOT NULL,
        shadow_version INTEGER NOT NULL,
        at             INTEGER NOT NULL,
        in_force_json  TEXT NOT NULL,
        shadow_json    TEXT NOT NULL,
        differs        INTEGER NOT NULL CHECK (differs IN (0, 1))
    ) STRICT;
    CREATE INDEX IF NOT EXISTS policy_shadow_decisions_by_shadow
        ON policy_shadow_decisions (shadow_id, differs, seq);";

/// How a shadow can end: removed by an operator, ended by a policy version
/// at least its own coming into force.
pub const SHADOW_END_ACTIONS: [&str; 2] = ["removed", "ended"];

/// Most rows [`CoordinatorStore::shadow_differences`] returns at once.
pub const MAX_SHADOW_PAGE: usize = 500;

/// Longest outcome JSON of a shadow decision (each side): an outcome
/// kind, a rule name and a reason the coordinator shortens.
pub const MAX_SHADOW_OUTCOME_JSON: usize = 8 * 1024;

/// An installed (or ended) shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowRow {
    /// Its number (from 1), chosen by the coordinator.
    pub shadow_id: i64,
    /// The shadow document's version.
    pub version: u64,
    /// The document (TOML), exactly as the admins signed it.
    pub document: String,
    /// The signed update (JSON of `keyfold_policy::SignedPolicy`).
    pub update_json: String,
    /// Unix seconds.
    pub installed_at: i64,
    /// When it ended (Unix seconds), `None` while installed.
    pub removed_at: Option<i64>,
    /// `removed`, `ended` or `replaced` once it ended.
    pub end_action: Option<String>,
}

/// What the version in force and the shadow decided on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDecisionRow {
    /// Position in the table (cursor paging); ignored when inserting.
    pub seq: i64,
    /// The shadow it was evaluated under.
    pub shadow_id: i64,
    /// The request.
    pub request_id: String,
    /// The shadow's version.
    pub shadow_version: u64,
    /// The evaluation time (Unix seconds), the in-force decision's.
    pub at: i64,
    /// The in-force outcome (JSON, the coordinator's).
    pub in_force_json: String,
    /// The shadow's outcome (JSON, the coordinator's).
    pub shadow_json: String,
    /// Whether they differ (outcome kind or matched rule).
    pub differs: bool,
}

/// A write of the shadow tables (inside a journal group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowOp {
    /// Installs a shadow, ending the installed one, if any, as `replaced`
    /// ([`StoreError::Conflict`] if its id is taken).
    Install(ShadowRow),
    /// Ends the installed shadow `shadow_id` ([`StoreError::Conflict`] if it
    /// is not installed).
    End {
        /// The shadow.
        shadow_id: i64,
        /// `removed` or `ended`.
        action: String,
        /// Unix seconds.
        at: i64,
    },
    /// Records a request's shadow decision.
    Decision(ShadowDecisionRow),
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: format!("{v} is above 2^63 - 1"),
    })
}

fn shadow_id(id: i64) -> Result<(), StoreError> {
    if id < 1 {
        return Err(StoreError::InvalidInput {
            field: "shadow_id",
            reason: format!("{id} is not a shadow number (they start at 1)"),
        });
    }
    Ok(())
}

fn outcome(field: &'static str, json: &str) -> Result<(), StoreError> {
    if json.len() > MAX_SHADOW_OUTCOME_JSON {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("{} bytes, more than {MAX_SHADOW_OUTCOME_JSON}", json.len()),
        });
    }
    validate::json(field, json)
}

/// Checks a shadow op's bounds before it is applied.
pub(crate) fn check(op: &ShadowOp) -> Result<(), StoreError> {
    match op {
        ShadowOp::Install(r) => {
            shadow_id(r.shadow_id)?;
            to_i64("version", r.version)?;
            if r.document.is_empty() || r.document.len() > MAX_JSON_LEN {
                return Err(StoreError::InvalidInput {
                    field: "document",
                    reason: format!(
                        "must be 1 to {MAX_JSON_LEN} bytes, got {}",
                        r.document.len()
                    ),
                });
            }
            validate::json("update_json", &r.update_json)
        }
        ShadowOp::End {
            shadow_id: id,
            action,
            ..
        } => {
            shadow_id(*id)?;
            if !SHADOW_END_ACTIONS.contains(&action.as_str()) {
                return Err(StoreError::InvalidInput {
                    field: "action",
                    reason: format!("{action:?} is not one of {SHADOW_END_ACTIONS:?}"),
                });
            }
            Ok(())
        }
        ShadowOp::Decision(d) => {
            shadow_id(d.shadow_id)?;
            validate::client_id("request_id", &d.request_id)?;
            to_i64("shadow_version", d.shadow_version)?;
            outcome("in_force_json", &d.in_force_json)?;
            outcome("shadow_json", &d.shadow_json)
        }
    }
}

/// Applies a shadow op inside the group's transaction.
pub(crate) fn apply(
    tx: &rusqlite::Connection,
    op: &ShadowOp,
    err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    match op {
        ShadowOp::Install(r) => {
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT shadow_id FROM policy_shadows WHERE shadow_id = ?1",
                    [r.shadow_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(&err)?;
            if taken.is_some() {
                return Err(StoreError::Conflict {
                    what: "policy shadow",
                    id: r.shadow_id.to_string(),
                });
            }
            // One shadow at a time: the new one replaces the installed one.
            tx.execute(
                "UPDATE policy_shadows SET removed_at = ?1, end_action = 'replaced'
                 WHERE removed_at IS NULL",
                [r.installed_at],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO policy_shadows (shadow_id, version, document, update_json, installed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    r.shadow_id,
                    to_i64("version", r.version)?,
                    r.document,
                    r.update_json,
                    r.installed_at
                ],
            )
            .map_err(&err)?;
            Ok(())
        }
        ShadowOp::End {
            shadow_id,
            action,
            at,
        } => {
            let changed = tx
                .execute(
                    "UPDATE policy_shadows SET removed_at = ?2, end_action = ?3
                     WHERE shadow_id = ?1 AND removed_at IS NULL",
                    params![shadow_id, at, action],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(StoreError::Conflict {
                    what: "installed policy shadow",
                    id: shadow_id.to_string(),
                });
            }
            Ok(())
        }
        ShadowOp::Decision(d) => {
            tx.execute(
                "INSERT INTO policy_shadow_decisions (shadow_id, request_id, shadow_version, at,
                    in_force_json, shadow_json, differs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    d.shadow_id,
                    d.request_id,
                    to_i64("shadow_version", d.shadow_version)?,
                    d.at,
                    d.in_force_json,
                    d.shadow_json,
                    i64::from(d.differs)
                ],
            )
            .map_err(&err)?;
            Ok(())
        }
    }
}

const SHADOW_COLUMNS: &str =
    "shadow_id, version, document, update_json, installed_at, removed_at, end_action";

fn shadow_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShadowRow> {
    let version: i64 = r.get(1)?;
    Ok(ShadowRow {
        shadow_id: r.get(0)?,
        version: u64::try_from(version).unwrap_or(0),
        document: r.get(2)?,
        update_json: r.get(3)?,
        installed_at: r.get(4)?,
        removed_at: r.get(5)?,
        end_action: r.get(6)?,
    })
}

impl CoordinatorStore {
    /// The shadow installed now, if any.
    pub fn installed_shadow(&self) -> Result<Option<ShadowRow>, StoreError> {
        self.db
            .reader()
            .query_row(
                &format!(
                    "SELECT {SHADOW_COLUMNS} FROM policy_shadows WHERE removed_at IS NULL
                     ORDER BY shadow_id DESC LIMIT 1"
                ),
                [],
                shadow_row,
            )
            .optional()
            .map_err(self.db.err("installed_shadow"))
    }

    /// One shadow, installed or ended.
    pub fn shadow(&self, shadow_id: i64) -> Result<Option<ShadowRow>, StoreError> {
        self.db
            .reader()
            .query_row(
                &format!("SELECT {SHADOW_COLUMNS} FROM policy_shadows WHERE shadow_id = ?1"),
                [shadow_id],
                shadow_row,
            )
            .optional()
            .map_err(self.db.err("shadow"))
    }

    /// The number the next installed shadow takes.
    pub fn next_shadow_id(&self) -> Result<i64, StoreError> {
        let max: Option<i64> = self
            .db
            .reader()
            .query_row("SELECT MAX(shadow_id) FROM policy_shadows", [], |r| {
                r.get(0)
            })
            .map_err(self.db.err("next_shadow_id"))?;
        Ok(max.unwrap_or(0).saturating_add(1))
    }

    /// How many requests were evaluated under shadow `shadow_id`, and how
    /// many of them differed.
    pub fn shadow_counts(&self, shadow_id: i64) -> Result<(u64, u64), StoreError> {
        let (all, differed): (i64, Option<i64>) = self
            .db
            .reader()
            .query_row(
                "SELECT COUNT(*), SUM(differs) FROM policy_shadow_decisions WHERE shadow_id = ?1",
                [shadow_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db.err("shadow_counts"))?;
        Ok((
            u64::try_from(all).unwrap_or(0),
            u64::try_from(differed.unwrap_or(0)).unwrap_or(0),
        ))
    }

    /// The decisions of shadow `shadow_id` that differed, newest first,
    /// before `before` (a `seq`, the cursor of the previous page), at most
    /// `limit` (capped at [`MAX_SHADOW_PAGE`]).
    pub fn shadow_differences(
        &self,
        shadow_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ShadowDecisionRow>, StoreError> {
        let err = self.db.err("shadow_differences");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT seq, shadow_id, request_id, shadow_version, at, in_force_json,
                    shadow_json, differs
                 FROM policy_shadow_decisions
                 WHERE shadow_id = ?1 AND differs = 1 AND seq < ?2
                 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, MAX_SHADOW_PAGE)).unwrap_or(1);
        let rows = stmt
            .query_map(params![shadow_id, before.unwrap_or(i64::MAX), limit], |r| {
                let version: i64 = r.get(3)?;
                let differs: i64 = r.get(7)?;
                Ok(ShadowDecisionRow {
                    seq: r.get(0)?,
                    shadow_id: r.get(1)?,
                    request_id: r.get(2)?,
                    shadow_version: u64::try_from(version).unwrap_or(0),
                    at: r.get(4)?,
                    in_force_json: r.get(5)?,
                    shadow_json: r.get(6)?,
                    differs: differs != 0,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}
