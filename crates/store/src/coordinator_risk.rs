//! The risk module's tables: decision trees in force, every risk decision
//! and refused device signature with its (pseudonymised) input, freezes,
//! officers' reviews, customers' sealed authentication state, and the raw
//! request context kept for a short while.
//!
//! Every write here is a [`RiskOp`] inside the journal's group, so it lands
//! in the same transaction as the audit event that describes it (a
//! decision row never exists without its `risk_decision` entry, a refusal
//! row never without its `risk_refusal` entry, a lifted freeze never
//! without its `freeze` entry). Decisions and refusals are the engine's
//! numbered steps and share one `seq` numbering across `risk_decisions` and
//! `risk_refusals`; the coordinator rebuilds its in-memory risk windows at
//! start from both ([`CoordinatorStore::risk_steps_since`]), in `seq`
//! order.
//!
//! `risk_raw_context` holds what the audit log must not (the client's full
//! IP address, which the engine reads only at /24 or /48 precision); it is
//! retention data, dropped with [`CoordinatorStore::purge_raw_context`].

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

/// Migration 11 -> 12: refused device signatures (steps of the risk
/// engine, numbered with the decisions), customers' sealed authentication
/// state, raw request context.
pub(crate) const MIGRATION_12: &str = "CREATE TABLE risk_refusals (
        seq        INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        at         INTEGER NOT NULL,
        input_json TEXT NOT NULL
    ) STRICT;
    CREATE INDEX risk_refusals_by_time ON risk_refusals (at);
    CREATE TABLE customer_auth (
        customer   TEXT PRIMARY KEY,
        sealed     BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE risk_raw_context (
        request_id TEXT PRIMARY KEY,
        at         INTEGER NOT NULL,
        ip         TEXT
    ) STRICT;
    CREATE INDEX risk_raw_context_by_time ON risk_raw_context (at);";

/// Largest sealed customer-auth blob accepted, in bytes (the devices,
/// nonces, one-time-code enrolment and password hash of one customer, as
/// sealed JSON).
pub const MAX_SEALED_CUSTOMER_AUTH: usize = 1024 * 1024;

/// Longest client IP text accepted in `risk_raw_context` (an IPv6 address
/// with a zone is at most 45 characters; a little slack).
pub const MAX_RAW_IP_LEN: usize = 64;

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
    /// A decision ([`StoreError::Conflict`] if its request is taken, or its
    /// seq by a decision or a refusal).
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
    /// A refused device signature, the engine's step `seq`
    /// ([`StoreError::Conflict`] if its seq is taken by a refusal or a
    /// decision).
    InsertRefusal {
        /// The engine's order (shared with the decisions).
        seq: u64,
        /// The refused request.
        request_id: String,
        /// Refusal time (Unix seconds).
        at: i64,
        /// JSON of the `RefusalInput` (pseudonymised ids).
        input_json: String,
    },
    /// Stores a customer's authentication state, sealed by the caller
    /// (under `ObjectType::CustomerAuth`), replacing the one stored.
    PutCustomerAuth {
        /// The customer (pseudonym).
        customer: String,
        /// The sealed state.
        sealed: Vec<u8>,
        /// Unix seconds.
        at: i64,
    },
    /// The raw context of a request (a no-op if the request has one):
    /// kept only until [`CoordinatorStore::purge_raw_context`].
    InsertRawContext {
        /// The request.
        request_id: String,
        /// Request time (Unix seconds).
        at: i64,
        /// The client's full IP address, if known.
        ip: Option<String>,
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

/// A recorded refused device signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskRefusalRow {
    /// The engine's order (shared with the decisions).
    pub seq: u64,
    /// The refused request.
    pub request_id: String,
    /// Refusal time.
    pub at: i64,
    /// JSON of the `RefusalInput`.
    pub input_json: String,
}

/// One numbered step of the risk engine, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RiskStepRow {
    /// A decision on a request.
    Decision(RiskDecisionRow),
    /// A refused device signature.
    Refusal(RiskRefusalRow),
}

impl RiskStepRow {
    /// The step's number.
    pub fn seq(&self) -> u64 {
        match self {
            RiskStepRow::Decision(d) => d.seq,
            RiskStepRow::Refusal(r) => r.seq,
        }
    }
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
        RiskOp::InsertRefusal {
            request_id,
            input_json,
            ..
        } => {
            validate::client_id("request_id", request_id)?;
            validate::json("input_json", input_json)
        }
        RiskOp::PutCustomerAuth {
            customer, sealed, ..
        } => {
            validate::id("customer", customer)?;
            validate::bytes("sealed", sealed, MAX_SEALED_CUSTOMER_AUTH)
        }
        RiskOp::InsertRawContext { request_id, ip, .. } => {
            validate::client_id("request_id", request_id)?;
            if let Some(ip) = ip {
                text("ip", ip, MAX_RAW_IP_LEN)?;
                ip.parse::<std::net::IpAddr>()
                    .map_err(|e| StoreError::InvalidInput {
                        field: "ip",
                        reason: format!("not an IP address: {e}"),
                    })?;
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
            if seq_taken(tx, "risk_refusals", s).map_err(&err)? {
                return Err(conflict("risk step seq", format!("{seq} ({request_id})")));
            }
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
        RiskOp::InsertRefusal {
            seq,
            request_id,
            at,
            input_json,
        } => {
            let s = to_i64("seq", *seq)?;
            if seq_taken(tx, "risk_decisions", s).map_err(&err)? {
                return Err(conflict("risk step seq", format!("{seq} ({request_id})")));
            }
            let n = tx
                .execute(
                    "INSERT INTO risk_refusals (seq, request_id, at, input_json)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                    params![s, request_id, at, input_json],
                )
                .map_err(err)?;
            if n == 0 {
                return Err(conflict("risk step seq", format!("{seq} ({request_id})")));
            }
            Ok(())
        }
        RiskOp::PutCustomerAuth {
            customer,
            sealed,
            at,
        } => tx
            .execute(
                "INSERT INTO customer_auth (customer, sealed, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (customer) DO UPDATE
                 SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                params![customer, sealed, at],
            )
            .map(|_| ())
            .map_err(err),
        RiskOp::InsertRawContext { request_id, at, ip } => tx
            .execute(
                "INSERT INTO risk_raw_context (request_id, at, ip) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![request_id, at, ip],
            )
            .map(|_| ())
            .map_err(err),
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

/// Whether `seq` is a row of `table` (`risk_decisions` or `risk_refusals`):
/// the two tables share the engine's numbering, so a step's seq must be
/// free in the other one too.
fn seq_taken(tx: &rusqlite::Connection, table: &str, seq: i64) -> rusqlite::Result<bool> {
    tx.query_row(
        &format!("SELECT 1 FROM {table} WHERE seq = ?1"),
        [seq],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// The highest seq of a decision or a refusal, if any.
fn last_step(conn: &rusqlite::Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM risk_decisions
                             UNION ALL SELECT MAX(seq) FROM risk_refusals)",
        [],
        |r| r.get(0),
    )
}

fn refusal_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RiskRefusalRow> {
    let seq: i64 = r.get(0)?;
    Ok(RiskRefusalRow {
        seq: u64::try_from(seq).unwrap_or(0),
        request_id: r.get(1)?,
        at: r.get(2)?,
        input_json: r.get(3)?,
    })
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
    /// and the highest seq ever recorded, by a decision or a refusal (the
    /// next step takes the one after it, whatever retention dropped). A
    /// replay that must count refusals too reads
    /// [`CoordinatorStore::risk_steps_since`].
    pub fn risk_decisions_since(
        &self,
        since: i64,
    ) -> Result<(Vec<RiskDecisionRow>, u64), StoreError> {
        let err = self.db.err("risk_decisions_since");
        let conn = self.db.reader();
        let last = last_step(&conn).map_err(&err)?;
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

    /// The engine's steps (decisions and refused device signatures) after
    /// step `after_seq`, in `seq` order, and the highest seq ever recorded
    /// in either table (0 if none: the next step takes the one after it).
    /// What a restarting coordinator replays; `after_seq` lets it resume
    /// from a snapshot, or start from the first step with 0.
    pub fn risk_steps_since(&self, after_seq: i64) -> Result<(Vec<RiskStepRow>, u64), StoreError> {
        let err = self.db.err("risk_steps_since");
        let conn = self.db.reader();
        let last = last_step(&conn).map_err(&err)?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, request_id, at, input_json, decision_json FROM risk_decisions
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(&err)?;
        let decisions = stmt
            .query_map([after_seq], decision_row)
            .map_err(&err)?
            .map(|r| r.map(RiskStepRow::Decision))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        let mut stmt = conn
            .prepare(
                "SELECT seq, request_id, at, input_json FROM risk_refusals
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(&err)?;
        let refusals = stmt
            .query_map([after_seq], refusal_row)
            .map_err(&err)?
            .map(|r| r.map(RiskStepRow::Refusal))
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        // Both lists are sorted and their seqs disjoint (the ops refuse a
        // seq taken in the other table): merge them.
        let mut steps = Vec::with_capacity(decisions.len() + refusals.len());
        let mut d = decisions.into_iter().peekable();
        let mut r = refusals.into_iter().peekable();
        loop {
            let take_decision = match (d.peek(), r.peek()) {
                (Some(a), Some(b)) => a.seq() < b.seq(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_decision { d.next() } else { r.next() };
            steps.extend(next);
        }
        Ok((steps, last.and_then(|l| u64::try_from(l).ok()).unwrap_or(0)))
    }

    /// The refused device signature recorded as step `seq`, if any (what
    /// recovery checks before it inserts a logged refusal again).
    pub fn risk_refusal(&self, seq: u64) -> Result<Option<RiskRefusalRow>, StoreError> {
        let s = to_i64("seq", seq)?;
        let err = self.db.err("risk_refusal");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT seq, request_id, at, input_json FROM risk_refusals WHERE seq = ?1",
            [s],
            refusal_row,
        )
        .optional()
        .map_err(err)
    }

    /// A customer's sealed authentication state, if stored.
    pub fn customer_auth(&self, customer: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate::id("customer", customer)?;
        let err = self.db.err("customer_auth");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT sealed FROM customer_auth WHERE customer = ?1",
            [customer],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)
    }

    /// The raw context of a request, if still kept: (request time, full
    /// client IP if known).
    pub fn raw_context(
        &self,
        request_id: &str,
    ) -> Result<Option<(i64, Option<String>)>, StoreError> {
        let err = self.db.err("raw_context");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT at, ip FROM risk_raw_context WHERE request_id = ?1",
            [request_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(err)
    }

    /// Deletes the raw context of requests made before `before` (Unix
    /// seconds) and returns how many rows went. Retention housekeeping,
    /// not part of any journal group: nothing in the audit log refers to
    /// these rows, so they can go whenever the retention says.
    pub fn purge_raw_context(&self, before: i64) -> Result<usize, StoreError> {
        let err = self.db.err("purge_raw_context");
        let conn = self.db.lock();
        conn.execute("DELETE FROM risk_raw_context WHERE at < ?1", [before])
            .map_err(err)
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
