//! The table of conditional payouts (escrow): the held payout's template,
//! its condition, who released it so far, and how it ended (the payout it
//! became, or why it was given up).
//!
//! Every write is an [`EscrowOp`] inside the journal's group, with the
//! `escrow` audit event that describes it. An escrow ends once: the store
//! moves it out of `held` only from `held`, so two coordinators (or a
//! retry) racing to end it record one ending; the payout it became has the
//! deterministic id `<escrow id>.pay` (or `.refund`), paid at most once.

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate;

/// Migration: the escrows.
pub(crate) const MIGRATION: &str = "CREATE TABLE IF NOT EXISTS escrows (
        escrow_id   TEXT PRIMARY KEY,
        merchant_id TEXT,
        client      TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        spec_json   TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('held', 'released', 'expired', 'cancelled')),
        released_by TEXT NOT NULL,
        from_block  INTEGER,
        reason      TEXT,
        payout_id   TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS escrows_by_state ON escrows (state);";

/// The states of an escrow.
pub const ESCROW_STATES: [&str; 4] = ["held", "released", "expired", "cancelled"];

/// A stored escrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowRow {
    /// Its id (chosen by the client).
    pub escrow_id: String,
    /// The merchant that owns it (`None`: the operator's).
    pub merchant_id: Option<String>,
    /// The API client that created it; its payout is made in its name.
    pub client: String,
    /// Hash of the creation request.
    pub fingerprint: Vec<u8>,
    /// The payout template and the escrow (JSON, the coordinator's).
    pub spec_json: String,
    /// `held`, `released`, `expired` or `cancelled`.
    pub state: String,
    /// The API clients that released it so far (sorted).
    pub released_by: Vec<String>,
    /// The chain's head when it was created (where a transfer condition
    /// starts looking).
    pub from_block: Option<u64>,
    /// Why it ended.
    pub reason: Option<String>,
    /// The payout it became (released, or refunded).
    pub payout_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A write of the escrows (inside a journal group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscrowOp {
    /// A new escrow ([`StoreError::Conflict`] if its id is taken).
    Insert(EscrowRow),
    /// An approver released it (a no-op if it already had).
    AddRelease {
        /// The escrow.
        escrow_id: String,
        /// The API client.
        client: String,
        /// Unix seconds.
        at: i64,
    },
    /// It ended ([`StoreError::Conflict`] unless it was held).
    End {
        /// The escrow.
        escrow_id: String,
        /// `released`, `expired` or `cancelled`.
        state: String,
        /// Why.
        reason: String,
        /// The payout it became, if any.
        payout_id: Option<String>,
        /// Unix seconds.
        at: i64,
    },
}

fn conflict(id: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        what: "held escrow",
        id: id.into(),
    }
}

fn reason(field: &'static str, r: &str) -> Result<(), StoreError> {
    if r.len() > 1024 {
        return Err(StoreError::InvalidInput {
            field,
            reason: "must be at most 1024 bytes".into(),
        });
    }
    Ok(())
}

/// Checks an escrow op's bounds before it is applied.
pub(crate) fn check(op: &EscrowOp) -> Result<(), StoreError> {
    match op {
        EscrowOp::Insert(r) => {
            validate::client_id("escrow_id", &r.escrow_id)?;
            if let Some(m) = &r.merchant_id {
                validate::id("merchant_id", m)?;
            }
            validate::client_id("client", &r.client)?;
            validate::bytes("fingerprint", &r.fingerprint, 64)?;
            validate::json("spec_json", &r.spec_json)?;
            if r.state != "held" {
                return Err(StoreError::InvalidInput {
                    field: "state",
                    reason: "a new escrow is held".into(),
                });
            }
            Ok(())
        }
        EscrowOp::AddRelease {
            escrow_id, client, ..
        } => {
            validate::client_id("escrow_id", escrow_id)?;
            validate::client_id("client", client)
        }
        EscrowOp::End {
            escrow_id,
            state,
            reason: why,
            payout_id,
            ..
        } => {
            validate::client_id("escrow_id", escrow_id)?;
            if !ESCROW_STATES[1..].contains(&state.as_str()) {
                return Err(StoreError::InvalidInput {
                    field: "state",
                    reason: format!("{state:?} is not one of {:?}", &ESCROW_STATES[1..]),
                });
            }
            if let Some(p) = payout_id {
                validate::client_id("payout_id", p)?;
            }
            reason("reason", why)
        }
    }
}

fn to_json(list: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::InvalidInput {
        field: "released_by",
        reason: e.to_string(),
    })
}

/// Applies an escrow op inside the group's transaction.
pub(crate) fn apply(
    tx: &rusqlite::Connection,
    op: &EscrowOp,
    err: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    match op {
        EscrowOp::Insert(r) => {
            let from_block = r.from_block.map(i64::try_from).transpose().map_err(|_| {
                StoreError::InvalidInput {
                    field: "from_block",
                    reason: "above 2^63 - 1".into(),
                }
            })?;
            let changed = tx
                .execute(
                    "INSERT INTO escrows (escrow_id, merchant_id, client, fingerprint, spec_json,
                        state, released_by, from_block, reason, payout_id, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'held', ?6, ?7, NULL, NULL, ?8, ?9)
                     ON CONFLICT (escrow_id) DO NOTHING",
                    params![
                        r.escrow_id,
                        r.merchant_id,
                        r.client,
                        r.fingerprint,
                        r.spec_json,
                        to_json(&r.released_by)?,
                        from_block,
                        r.created_at,
                        r.updated_at
                    ],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(StoreError::Conflict {
                    what: "escrow",
                    id: r.escrow_id.clone(),
                });
            }
            Ok(())
        }
        EscrowOp::AddRelease {
            escrow_id,
            client,
            at,
        } => {
            let current: Option<(String, String)> = tx
                .query_row(
                    "SELECT state, released_by FROM escrows WHERE escrow_id = ?1",
                    [escrow_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&err)?;
            let Some((state, json)) = current else {
                return Err(conflict(escrow_id));
            };
            if state != "held" {
                return Err(conflict(escrow_id));
            }
            let mut list: Vec<String> = serde_json::from_str(&json).unwrap_or_default();
            if !list.contains(client) {
                list.push(client.clone());
                list.sort();
            }
            tx.execute(
                "UPDATE escrows SET released_by = ?2, updated_at = ?3 WHERE escrow_id = ?1",
                params![escrow_id, to_json(&list)?, at],
            )
            .map_err(&err)?;
            Ok(())
        }
        EscrowOp::End {
            escrow_id,
            state,
            reason: why,
            payout_id,
            at,
        } => {
            let changed = tx
                .execute(
                    "UPDATE escrows SET state = ?2, reason = ?3, payout_id = ?4, updated_at = ?5
                     WHERE escrow_id = ?1 AND state = 'held'",
                    params![escrow_id, state, why, payout_id, at],
                )
                .map_err(&err)?;
            if changed == 0 {
                return Err(conflict(escrow_id));
            }
            Ok(())
        }
    }
}

const COLUMNS: &str = "escrow_id, merchant_id, client, fingerprint, spec_json, state,
    released_by, from_block, reason, payout_id, created_at, updated_at";

fn escrow_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EscrowRow> {
    let released: String = r.get(6)?;
    let from_block: Option<i64> = r.get(7)?;
    Ok(EscrowRow {
        escrow_id: r.get(0)?,
        merchant_id: r.get(1)?,
        client: r.get(2)?,
        fingerprint: r.get(3)?,
        spec_json: r.get(4)?,
        state: r.get(5)?,
        released_by: serde_json::from_str(&released).unwrap_or_default(),
        from_block: from_block.and_then(|b| u64::try_from(b).ok()),
        reason: r.get(8)?,
        payout_id: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl CoordinatorStore {
    /// One escrow.
    pub fn escrow(&self, escrow_id: &str) -> Result<Option<EscrowRow>, StoreError> {
        validate::client_id("escrow_id", escrow_id)?;
        self.db
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM escrows WHERE escrow_id = ?1"),
                [escrow_id],
                escrow_row,
            )
            .optional()
            .map_err(self.db.err("escrow"))
    }

    /// Held escrows by id, after `after`, at most `limit`.
    pub fn held_escrows(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EscrowRow>, StoreError> {
        let err = self.db.err("held_escrows");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM escrows WHERE state = 'held' AND escrow_id > ?1
                 ORDER BY escrow_id LIMIT ?2"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after.unwrap_or(""), limit], escrow_row)
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}
