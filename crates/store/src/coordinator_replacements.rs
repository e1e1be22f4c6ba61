//! Replacement transactions of stuck payouts.
//!
//! A payout whose transaction sits unmined past its chain's
//! `replace_after_secs` is replaced by a transaction at the same nonce with
//! higher fees, signed through a signing request of its own. Each attempt
//! is one row here, recorded before its signing request is submitted (so a
//! crash resumes the same attempt instead of starting another), with the
//! bytes and hash once signed. The payout's own row keeps its first
//! transaction; `payouts.mined_tx_hash` names whichever transaction the
//! chain mined.

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// Migration 4 -> 5: replacement attempts, and which transaction of a
/// payout the chain mined.
pub(crate) const MIGRATION_5: &str = "CREATE TABLE payout_replacements (
        payout_id   TEXT NOT NULL REFERENCES payouts (payout_id),
        attempt     INTEGER NOT NULL,
        request_id  TEXT NOT NULL UNIQUE,
        payout_json TEXT NOT NULL,
        raw_tx      BLOB,
        tx_hash     TEXT,
        logged      INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (payout_id, attempt)
    ) STRICT;
    ALTER TABLE payouts ADD COLUMN mined_tx_hash TEXT;";

/// One replacement attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacementRow {
    /// The payout it replaces a transaction of.
    pub payout_id: String,
    /// 1 for the first replacement, then 2 ...
    pub attempt: u32,
    /// Its signing request.
    pub request_id: String,
    /// The typed payout with the replacing transaction (the coordinator's
    /// JSON).
    pub payout_json: String,
    /// The signed transaction, once signed.
    pub raw_tx: Option<Vec<u8>>,
    /// Its hash (0x hex).
    pub tx_hash: Option<String>,
    /// Whether the audit log holds its signed bytes.
    pub logged: bool,
    /// When the attempt was recorded (the caller's clock, Unix seconds).
    pub created_at: i64,
}

const COLUMNS: &str =
    "payout_id, attempt, request_id, payout_json, raw_tx, tx_hash, logged, created_at";

fn replacement_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReplacementRow> {
    Ok(ReplacementRow {
        payout_id: r.get(0)?,
        attempt: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        request_id: r.get(2)?,
        payout_json: r.get(3)?,
        raw_tx: r.get(4)?,
        tx_hash: r.get(5)?,
        logged: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
    })
}

impl CoordinatorStore {
    /// Records the next replacement attempt of `payout_id`; `build` gets
    /// its number and returns its signing request id and payout JSON.
    pub fn insert_replacement(
        &self,
        payout_id: &str,
        created_at: i64,
        build: impl FnOnce(u32) -> Result<(String, String), StoreError>,
    ) -> Result<ReplacementRow, StoreError> {
        validate::client_id("payout_id", payout_id)?;
        self.db.durably("insert_replacement", |tx| {
            let err = self.db.err("insert_replacement");
            let last: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(attempt), 0) FROM payout_replacements
                     WHERE payout_id = ?1",
                    [payout_id],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            let attempt = u32::try_from(last + 1).map_err(|_| StoreError::InvalidInput {
                field: "attempt",
                reason: format!("{last} attempts already"),
            })?;
            let (request_id, json) = build(attempt)?;
            validate::client_id("request_id", &request_id)?;
            if json.len() > MAX_JSON_LEN {
                return Err(StoreError::InvalidInput {
                    field: "payout_json",
                    reason: format!("{} bytes exceeds {MAX_JSON_LEN}", json.len()),
                });
            }
            tx.execute(
                "INSERT INTO payout_replacements (payout_id, attempt, request_id, payout_json,
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![payout_id, attempt, request_id, json, created_at],
            )
            .map_err(&err)?;
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM payout_replacements WHERE request_id = ?1"),
                [&request_id],
                replacement_row,
            )
            .map_err(&err)
        })
    }

    /// The replacement attempts of `payout_id`, oldest first.
    pub fn replacements(&self, payout_id: &str) -> Result<Vec<ReplacementRow>, StoreError> {
        let err = self.db.err("replacements");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM payout_replacements WHERE payout_id = ?1 ORDER BY attempt"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map([payout_id], replacement_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// The replacement attempt signed by request `request_id`.
    pub fn replacement_of_request(
        &self,
        request_id: &str,
    ) -> Result<Option<ReplacementRow>, StoreError> {
        self.db
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM payout_replacements WHERE request_id = ?1"),
                [request_id],
                replacement_row,
            )
            .optional()
            .map_err(self.db.err("replacement_of_request"))
    }

    /// Records the signed bytes of a replacement. Set once: different
    /// bytes for the same attempt are refused.
    pub fn record_replacement_tx(
        &self,
        request_id: &str,
        raw_tx: &[u8],
        tx_hash: &str,
    ) -> Result<(), StoreError> {
        self.db.durably("record_replacement_tx", |tx| {
            let err = self.db.err("record_replacement_tx");
            let old: Option<Option<Vec<u8>>> = tx
                .query_row(
                    "SELECT raw_tx FROM payout_replacements WHERE request_id = ?1",
                    [request_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            match old {
                None => Err(StoreError::InvalidInput {
                    field: "request_id",
                    reason: format!("no replacement signed by {request_id}"),
                }),
                Some(Some(o)) if o != raw_tx => Err(StoreError::Conflict {
                    what: "signed transaction of replacement",
                    id: request_id.to_string(),
                }),
                Some(Some(_)) => Ok(()),
                Some(None) => {
                    tx.execute(
                        "UPDATE payout_replacements SET raw_tx = ?2, tx_hash = ?3
                         WHERE request_id = ?1",
                        params![request_id, raw_tx, tx_hash],
                    )
                    .map_err(&err)?;
                    Ok(())
                }
            }
        })
    }

    /// Records that the audit log holds a replacement's signed bytes.
    pub fn mark_replacement_logged(&self, request_id: &str) -> Result<(), StoreError> {
        self.db
            .lock()
            .execute(
                "UPDATE payout_replacements SET logged = 1 WHERE request_id = ?1",
                [request_id],
            )
            .map_err(self.db.err("mark_replacement_logged"))?;
        Ok(())
    }
}
