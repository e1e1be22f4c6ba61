//! The risk module's tables: decision trees in force, every risk decision
//! with its (pseudonymised) input, freezes and officers' reviews.
//!
//! Every write here is a [`RiskOp`] inside the journal's group, so it lands
//! in the same transaction as the audit event that describes it (a
//! decision row never exists without its `risk_decision` entry, a lifted
//! freeze never without its `freeze` entry). The coordinator rebuilds its
//! in-memory risk windows at start from `risk_decisions`, in `seq` order.

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate;

/// Migration 10 -> 11: risk trees, decisions, freezes, reviews.
pub(crate) const MIGRATION_11: &str = "CREATE TABLE risk_trees (
        version     INTEGER PRIMARY KEY,
        document    TEXT NOT NULL,
        update_json TEXT,
        recorded_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE risk_decisions (
        seq           INTEGER PRIMARY KEY,
        request_id    TEXT NOT NULL UNIQUE,
        at            INTEGER NOT NULL,
        input_json    TEXT NOT NULL,
        decision_json TEXT NOT NULL
    ) STRICT;
    CREATE INDEX risk_decisions_by_time ON risk_decisions (at);
    CREATE TABLE risk_freezes (
        freeze_id  TEXT PRIMARY KEY,
        scope      TEXT NOT NULL CHECK (scope IN ('customer', 'device', 'wallet', 'merchant')),
        subject    TEXT NOT NULL,
        reason     TEXT NOT NULL,
        request_id TEXT,
        added_by   TEXT NOT NULL,
        added_at   INTEGER NOT NULL,
        lifted_at  INTEGER,
        lifted_by  TEXT,
        lift_json  TEXT
    ) STRICT;
    CREATE INDEX risk_freezes_active ON risk_freezes (scope, subject) WHERE lifted_at IS NULL;
    CREATE TABLE risk_reviews (
        nonce       BLOB PRIMARY KEY,
        request_id  TEXT NOT NULL,
        officer     TEXT NOT NULL,
        verdict     TEXT NOT NULL,
        review_json TEXT NOT NULL,
        at          INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX risk_reviews_by_request ON risk_reviews (request_id);";

/// A write of the risk module (inside a journal group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiskOp {
    /// A tree came into force (a no-op if this exact version is recorded;
    /// [`StoreError::Conflict`] if another document has its version).
    InsertTree {
        /// Its version.
        version: u64,
        /// The tree (TOML).
        document: String,
        /// The signed update that brought it (JSON), `None` for the first.
        update_json: Option<String>,
        /// Unix seconds.
        at: i64,
    },
    /// A decision ([`StoreError::Conflict`] if its seq or request is taken).
    InsertDecision {
        /// The engine's order.
        seq: u64,
        /// The request decided.
        request_id: String,
        /// Request time (Unix seconds).
        at: i64,
        /// JSON of the `RiskRequest` (pseudonymised ids).
        input_json: String,
        /// JSON of the decision.
        decision_json: String,
    },
    /// A freeze ([`StoreError::Conflict`] if its id is taken).
    AddFreeze(FreezeRow),
    /// Lifts an active freeze ([`StoreError::Conflict`] if it is not active).
    LiftFreeze {
        /// The freeze.
        freeze_id: String,
        /// The officers (display names, comma-separated).
        lifted_by: String,
        /// JSON of the signed lift.
        lift_json: String,
        /// Unix seconds.
        at: i64,
    },
    /// An officer's review ([`StoreError::Conflict`] if its nonce was used).
    AddReview {
        /// Its nonce.
        nonce: [u8; 16],
        /// The request.
        request_id: String,
        /// Officer's display name.
        officer: String,
        /// `approve`, `reject` or `escalate`.
        verdict: String,
        /// JSON of the signed review.
        review_json: String,
        /// Unix seconds.
        at: i64,
    },
}

/// A freeze as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRow {
    /// Its id.
    pub freeze_id: String,
    /// `customer`, `device`, `wallet` or `merchant`.
    pub scope: String,
    /// What is frozen (a pseudonym for customers and devices).
    pub subject: String,
    /// Why.
    pub reason: String,
    /// The request whose decision froze it, if any.
    pub request_id: Option<String>,
    /// Who added it (`risk` for the engine, else an operator's client name).
    pub added_by: String,
    /// Unix seconds.
    pub added_at: i64,
    /// When it was lifted, if it was.
    pub lifted_at: Option<i64>,
    /// The officers who lifted it.
    pub lifted_by: Option<String>,
    /// The signed lift (JSON).
    pub lift_json: Option<String>,
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskDecisionRow {
    /// The engine's order.
    pub seq: u64,
    /// The request.
    pub request_id: String,
    /// Request time.
    pub at: i64,
    /// JSON of the `RiskRequest`.
    pub input_json: String,
    /// JSON of the decision.
    pub decision_json: String,
}

/// A recorded review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    /// The request.
    pub request_id: String,
    /// Officer's display name.
    pub officer: String,
    /// Verdict.
    pub verdict: String,
    /// Unix seconds.
    pub at: i64,
}

const SCOPES: [&str; 4] = ["customer", "device", "wallet", "merchant"];

fn text(field: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.is_empty() || s.len() > max {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("must be 1..={max} bytes"),
        });
    }
    Ok(())
}

/// Checks a risk op's bounds before it is applied.
pub(crate) fn check(op: &RiskOp) -> Result<(), StoreError> {
    match op {
        RiskOp::InsertTree {
            document,
            update_json,
            ..
        } => {
            text("document", document, validate::MAX_JSON_LEN)?;
            if let Some(u) = update_json {
                validate::json("update_json", u)?;
            }
            Ok(())
        }
        RiskOp::InsertDecision {
            request_id,
            input_json,
            decision_json,
            ..
        } => {
            validate::client_id("request_id", request_id)?;
            validate::json("input_json", input_json)?;
            validate::json("decision_json", decision_json)
        }
        RiskOp::AddFreeze(f) => {
            validate::id("freeze_id", &f.freeze_id)?;
            if !SCOPES.contains(&f.scope.as_str()) {
                return Err(StoreError::InvalidInput {
                    field: "scope",
                    reason: format!("{:?} is not one of {SCOPES:?}", f.scope),
                });
            }
            text("subject", &f.subject, 256)?;
            text("reason", &f.reason, 4096)?;
            text("added_by", &f.added_by, validate::MAX_ID_LEN)
        }
        RiskOp::LiftFreeze {
            freeze_id,
            lifted_by,
            lift_json,
            ..
        } => {
            validate::id("freeze_id", freeze_id)?;
            text("lifted_by", lifted_by, 1024)?;
            validate::json("lift_json", lift_json)
        }
        RiskOp::AddReview {
            request_id,
            officer,
            verdict,
            review_json,
            ..
        } => {
            validate::client_id("request_id", request_id)?;
            text("officer", officer, 256)?;
            text("verdict", verdict, 16)?;
            validate::json("review_json", review_json)
        }
    }
}

fn conflict(what: &'static str, id: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        what,
        id: id.into(),
    }
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: "above 2^63".into(),
    })
}

/// Applies a risk op inside the group's transaction.
pub(crate) fn apply(
    tx: &rusqlite::Connection,
    op: &RiskOp,
    err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    match op {
        RiskOp::InsertTree {
            version,
            document,
            update_json,
            at,
        } => {
            let v = to_i64("version", *version)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT document FROM risk_trees WHERE version = ?1",
                    [v],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            match existing {
                Some(d) if d == *document => Ok(()),
                Some(_) => Err(conflict("risk tree version", version.to_string())),
                None => tx
                    .execute(
                        "INSERT INTO risk_trees (version, document, update_json, recorded_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![v, document, update_json, at],
                    )
                    .map(|_| ())
                    .map_err(err),
            }
        }
        RiskOp::InsertDecision {
            seq,
            request_id,
            at,
            input_json,
            decision_json,
        } => {
            let s = to_i64("seq", *seq)?;
            let n = tx
                .execute(
                    "INSERT INTO risk_decisions (seq, request_id, at, input_json, decision_json)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![s, request_id, at, input_json, decision_json],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(conflict("risk decision", format!("{seq} ({request_id})")));
            }
            Ok(())
        }
        RiskOp::AddFreeze(f) => {
            let n = tx
                .execute(
                    "INSERT INTO risk_freezes (freeze_id, scope, subject, reason, request_id,
                        added_by, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT DO NOTHING",
                    params![
                        f.freeze_id,
                        f.scope,
                        f.subject,
                        f.reason,
                        f.request_id,
                        f.added_by,
                        f.added_at
                    ],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(conflict("freeze", f.freeze_id.clone()));
            }
            Ok(())
        }
        RiskOp::LiftFreeze {
            freeze_id,
            lifted_by,
            lift_json,
            at,
        } => {
            let n = tx
                .execute(
                    "UPDATE risk_freezes SET lifted_at = ?2, lifted_by = ?3, lift_json = ?4
                     WHERE freeze_id = ?1 AND lifted_at IS NULL",
                    params![freeze_id, at, lifted_by, lift_json],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(conflict("active freeze", freeze_id.clone()));
            }
            Ok(())
        }
        RiskOp::AddReview {
            nonce,
            request_id,
            officer,
            verdict,
            review_json,
            at,
        } => {
            let n = tx
                .execute(
                    "INSERT INTO risk_reviews (nonce, request_id, officer, verdict, review_json, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                    params![nonce.as_slice(), request_id, officer, verdict, review_json, at],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(conflict("review nonce", hex::encode(nonce)));
            }
            Ok(())
        }
    }
}

const FREEZE_COLUMNS: &str = "freeze_id, scope, subject, reason, request_id, added_by, added_at, \
     lifted_at, lifted_by, lift_json";

fn decision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RiskDecisionRow> {
    let seq: i64 = r.get(0)?;
    Ok(RiskDecisionRow {
        seq: u64::try_from(seq).unwrap_or(0),
        request_id: r.get(1)?,
        at: r.get(2)?,
        input_json: r.get(3)?,
        decision_json: r.get(4)?,
    })
}

fn freeze_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FreezeRow> {
    Ok(FreezeRow {
        freeze_id: r.get(0)?,
        scope: r.get(1)?,
        subject: r.get(2)?,
        reason: r.get(3)?,
        request_id: r.get(4)?,
        added_by: r.get(5)?,
        added_at: r.get(6)?,
        lifted_at: r.get(7)?,
        lifted_by: r.get(8)?,
        lift_json: r.get(9)?,
    })
}

/// Most rows a freeze or review listing returns.
pub const MAX_RISK_PAGE: usize = 500;

impl CoordinatorStore {
    /// The newest risk tree recorded: (version, document, update JSON).
    pub fn latest_risk_tree(&self) -> Result<Option<(u64, String, Option<String>)>, StoreError> {
        let err = self.db.err("latest_risk_tree");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT version, document, update_json FROM risk_trees ORDER BY version DESC LIMIT 1",
            [],
            |r| {
                let v: i64 = r.get(0)?;
                Ok((u64::try_from(v).unwrap_or(0), r.get(1)?, r.get(2)?))
            },
        )
        .optional()
        .map_err(err)
    }

    /// Decisions made at or after `since` (Unix seconds), in `seq` order,
    /// and the highest seq ever recorded (the next decision takes the one
    /// after it, whatever retention dropped).
    pub fn risk_decisions_since(
        &self,
        since: i64,
    ) -> Result<(Vec<RiskDecisionRow>, u64), StoreError> {
        let err = self.db.err("risk_decisions_since");
        let conn = self.db.reader();
        let last: Option<i64> = conn
            .query_row("SELECT MAX(seq) FROM risk_decisions", [], |r| r.get(0))
            .map_err(&err)?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, request_id, at, input_json, decision_json FROM risk_decisions
                 WHERE at >= ?1 ORDER BY seq",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([since], decision_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok((rows, last.and_then(|l| u64::try_from(l).ok()).unwrap_or(0)))
    }

    /// The decision of request `request_id`, if the risk engine made one.
    pub fn risk_decision(&self, request_id: &str) -> Result<Option<RiskDecisionRow>, StoreError> {
        let err = self.db.err("risk_decision");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT seq, request_id, at, input_json, decision_json FROM risk_decisions
             WHERE request_id = ?1",
            [request_id],
            decision_row,
        )
        .optional()
        .map_err(err)
    }

    /// Active freezes, or every freeze, newest first (at most `limit`).
    pub fn freezes(&self, active_only: bool, limit: usize) -> Result<Vec<FreezeRow>, StoreError> {
        let err = self.db.err("freezes");
        let conn = self.db.reader();
        let sql = format!(
            "SELECT {FREEZE_COLUMNS} FROM risk_freezes {} ORDER BY added_at DESC, freeze_id LIMIT ?1",
            if active_only { "WHERE lifted_at IS NULL" } else { "" }
        );
        let mut stmt = conn.prepare(&sql).map_err(&err)?;
        let limit = i64::try_from(limit.min(MAX_RISK_PAGE)).unwrap_or(1);
        let rows = stmt
            .query_map([limit], freeze_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Every active freeze (loaded at start: freezes are few, and a
    /// payout checks them in memory).
    pub fn active_freezes(&self) -> Result<Vec<FreezeRow>, StoreError> {
        let err = self.db.err("active_freezes");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {FREEZE_COLUMNS} FROM risk_freezes WHERE lifted_at IS NULL"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map([], freeze_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Requests the risk engine holds for review that still wait (state
    /// `held`), oldest decision first, at most `limit`.
    pub fn held_for_review(&self, limit: usize) -> Result<Vec<RiskDecisionRow>, StoreError> {
        let err = self.db.err("held_for_review");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT d.seq, d.request_id, d.at, d.input_json, d.decision_json
                 FROM risk_decisions d JOIN requests r ON r.request_id = d.request_id
                 WHERE r.state = 'held' ORDER BY d.seq LIMIT ?1",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit.min(MAX_RISK_PAGE)).unwrap_or(1);
        let rows = stmt
            .query_map([limit], decision_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// One freeze.
    pub fn freeze(&self, freeze_id: &str) -> Result<Option<FreezeRow>, StoreError> {
        let err = self.db.err("freeze");
        let conn = self.db.reader();
        conn.query_row(
            &format!("SELECT {FREEZE_COLUMNS} FROM risk_freezes WHERE freeze_id = ?1"),
            [freeze_id],
            freeze_row,
        )
        .optional()
        .map_err(err)
    }

    /// The reviews of a request, oldest first.
    pub fn reviews_of(&self, request_id: &str) -> Result<Vec<ReviewRow>, StoreError> {
        let err = self.db.err("reviews_of");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT request_id, officer, verdict, at FROM risk_reviews
                 WHERE request_id = ?1 ORDER BY at, rowid",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([request_id], |r| {
                Ok(ReviewRow {
                    request_id: r.get(0)?,
                    officer: r.get(1)?,
                    verdict: r.get(2)?,
                    at: r.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Whether a review nonce was used.
    pub fn review_nonce_used(&self, nonce: &[u8; 16]) -> Result<bool, StoreError> {
        let err = self.db.err("review_nonce_used");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT 1 FROM risk_reviews WHERE nonce = ?1",
            [nonce.as_slice()],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(err)
    }
}
