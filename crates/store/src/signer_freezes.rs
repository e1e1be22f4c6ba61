//! The freezes a signer node enforces on its own: customers, devices,
//! wallets and merchants it refuses to sign for, whatever the coordinator
//! says, until a lift signed by two officers of its own policy arrives.
//! Kept in the node's store so a restart forgets none.

use rusqlite::{params, OptionalExtension};

use crate::db::now;
use crate::error::StoreError;
use crate::signer::SignerStore;

/// Migration 2 -> 3.
pub(crate) const MIGRATION_3: &str = "CREATE TABLE freezes (
        freeze_id TEXT PRIMARY KEY,
        scope     TEXT NOT NULL,
        subject   TEXT NOT NULL,
        added_at  INTEGER NOT NULL,
        lifted_at INTEGER,
        lift_json TEXT
    ) STRICT;";

/// A freeze as the signer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerFreeze {
    /// Its id.
    pub freeze_id: String,
    /// `customer`, `device`, `wallet` or `merchant`.
    pub scope: String,
    /// The subject.
    pub subject: String,
    /// When it was lifted, if it was.
    pub lifted_at: Option<i64>,
}

fn bounded(field: &'static str, v: &str, max: usize) -> Result<(), StoreError> {
    if v.is_empty() || v.len() > max {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("must be 1..={max} bytes"),
        });
    }
    Ok(())
}

impl SignerStore {
    /// Records a freeze (a no-op if this id is held already, lifted or not:
    /// a lifted freeze is never brought back by a replayed push).
    pub fn add_freeze(
        &self,
        freeze_id: &str,
        scope: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        bounded("freeze_id", freeze_id, 256)?;
        bounded("scope", scope, 16)?;
        bounded("subject", subject, 256)?;
        self.db
            .lock()
            .execute(
                "INSERT INTO freezes (freeze_id, scope, subject, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(freeze_id) DO NOTHING",
                params![freeze_id, scope, subject, now()],
            )
            .map(|_| ())
            .map_err(self.db.err("add_freeze"))
    }

    /// One freeze.
    pub fn freeze(&self, freeze_id: &str) -> Result<Option<SignerFreeze>, StoreError> {
        self.db
            .lock()
            .query_row(
                "SELECT freeze_id, scope, subject, lifted_at FROM freezes WHERE freeze_id = ?1",
                [freeze_id],
                |r| {
                    Ok(SignerFreeze {
                        freeze_id: r.get(0)?,
                        scope: r.get(1)?,
                        subject: r.get(2)?,
                        lifted_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.db.err("freeze"))
    }

    /// Marks a freeze lifted, with the signed lift that did it.
    pub fn lift_freeze(&self, freeze_id: &str, lift_json: &str) -> Result<(), StoreError> {
        bounded("lift_json", lift_json, 16 * 1024)?;
        self.db
            .lock()
            .execute(
                "UPDATE freezes SET lifted_at = ?2, lift_json = ?3
                 WHERE freeze_id = ?1 AND lifted_at IS NULL",
                params![freeze_id, now(), lift_json],
            )
            .map(|_| ())
            .map_err(self.db.err("lift_freeze"))
    }

    /// Every freeze in force.
    pub fn active_freezes(&self) -> Result<Vec<SignerFreeze>, StoreError> {
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare(
                "SELECT freeze_id, scope, subject, lifted_at FROM freezes WHERE lifted_at IS NULL",
            )
            .map_err(self.db.err("active_freezes"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SignerFreeze {
                    freeze_id: r.get(0)?,
                    scope: r.get(1)?,
                    subject: r.get(2)?,
                    lifted_at: r.get(3)?,
                })
            })
            .map_err(self.db.err("active_freezes"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db.err("active_freezes"))?;
        Ok(rows)
    }
}
