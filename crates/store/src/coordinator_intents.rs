//! The coordinator's policy intents (a signing request as the policy sees
//! it, with its state) and the approvals gathered for them.
//!
//! An intent is recorded when a request arrives and moves through
//! `pending_approval` / `time_locked` to `approved`, then `signed` or
//! `failed`, or ends `denied`. Signing itself is tracked by the `requests`
//! table (idempotency, crash recovery); an intent waiting for approvals can
//! wait for days and survives restarts. Intent and approval contents are JSON,
//! opaque to the store.

use std::fmt;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::coordinator::CoordinatorStore;
use crate::db::now;
use crate::error::StoreError;
use crate::validate::{self, MAX_LIST_LIMIT};

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IntentState {
    /// Waiting for approvals.
    PendingApproval,
    /// Approved (or needing none) but time-locked.
    TimeLocked,
    /// Allowed by the policy; being signed.
    Approved,
    /// Refused by the policy (or rejected by an approver).
    Denied,
    /// Signed.
    Signed,
    /// Allowed, but signing failed.
    Failed,
}

impl IntentState {
    /// The stable name (also used by the API).
    pub fn as_str(self) -> &'static str {
        match self {
            IntentState::PendingApproval => "pending_approval",
            IntentState::TimeLocked => "time_locked",
            IntentState::Approved => "approved",
            IntentState::Denied => "denied",
            IntentState::Signed => "signed",
            IntentState::Failed => "failed",
        }
    }

    /// Parses [`IntentState::as_str`].
    pub fn parse(s: &str) -> Option<IntentState> {
        Some(match s {
            "pending_approval" => IntentState::PendingApproval,
            "time_locked" => IntentState::TimeLocked,
            "approved" => IntentState::Approved,
            "denied" => IntentState::Denied,
            "signed" => IntentState::Signed,
            "failed" => IntentState::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for IntentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRecord {
    /// The request id.
    pub request_id: String,
    /// Hash of what the client asked (idempotency: a retry must match it).
    pub fingerprint: [u8; 32],
    /// The intent (JSON).
    pub intent_json: String,
    /// Its state.
    pub state: IntentState,
    /// The last policy decision (JSON).
    pub decision_json: Option<String>,
    /// First seen (Unix seconds).
    pub created_at: i64,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// What [`CoordinatorStore::insert_intent`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntentInsert {
    /// Recorded now.
    New,
    /// Already recorded with the same fingerprint.
    Existing(IntentRecord),
    /// The id is taken by another request.
    Conflict,
}

type IntentRow = (String, Vec<u8>, String, String, Option<String>, i64, i64);

const INTENT_COLUMNS: &str =
    "request_id, fingerprint, intent_json, state, decision_json, created_at, updated_at";

fn intent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IntentRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

impl CoordinatorStore {
    fn intent_from_row(&self, row: IntentRow) -> Result<IntentRecord, StoreError> {
        let (request_id, fp, intent_json, state, decision_json, created_at, updated_at) = row;
        let fingerprint = <[u8; 32]>::try_from(fp.as_slice()).map_err(|_| {
            self.db
                .corrupt("intent", &request_id, "fingerprint length".into())
        })?;
        let state = IntentState::parse(&state).ok_or_else(|| {
            self.db
                .corrupt("intent", &request_id, format!("state `{state}`"))
        })?;
        Ok(IntentRecord {
            request_id,
            fingerprint,
            intent_json,
            state,
            decision_json,
            created_at,
            updated_at,
        })
    }

    /// Records a new intent in `state` with the decision that put it there
    /// (one durable write), or reports the one recorded before.
    pub fn insert_intent(
        &self,
        request_id: &str,
        fingerprint: [u8; 32],
        intent_json: &str,
        state: IntentState,
        decision_json: Option<&str>,
        created_at: i64,
    ) -> Result<IntentInsert, StoreError> {
        validate::client_id("request_id", request_id)?;
        validate::json("intent_json", intent_json)?;
        if let Some(d) = decision_json {
            validate::json("decision_json", d)?;
        }
        let err = self.db.err("insert_intent");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing = tx
            .query_row(
                &format!("SELECT {INTENT_COLUMNS} FROM intents WHERE request_id = ?1"),
                [request_id],
                intent_row,
            )
            .optional()
            .map_err(&err)?;
        if let Some(row) = existing {
            let rec = self.intent_from_row(row)?;
            if !crate::seal::ct_eq(&rec.fingerprint, &fingerprint) {
                return Ok(IntentInsert::Conflict);
            }
            return Ok(IntentInsert::Existing(rec));
        }
        tx.execute(
            "INSERT INTO intents (request_id, fingerprint, intent_json, state, decision_json, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                request_id,
                fingerprint.as_slice(),
                intent_json,
                state.as_str(),
                decision_json,
                created_at
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(IntentInsert::New)
    }

    /// Moves intent `request_id` to `state` with the decision that led there.
    /// Only a transition out of `from` is applied (compare-and-set, so two
    /// tasks never both start signing one intent); returns whether it was.
    pub fn transition_intent(
        &self,
        request_id: &str,
        from: &[IntentState],
        state: IntentState,
        decision_json: Option<&str>,
    ) -> Result<bool, StoreError> {
        validate::client_id("request_id", request_id)?;
        if let Some(d) = decision_json {
            validate::json("decision_json", d)?;
        }
        let err = self.db.err("transition_intent");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current: Option<String> = tx
            .query_row(
                "SELECT state FROM intents WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound {
                what: "intent",
                id: request_id.to_string(),
            });
        };
        let current = IntentState::parse(&current).ok_or_else(|| {
            self.db
                .corrupt("intent", request_id, format!("state `{current}`"))
        })?;
        if !from.contains(&current) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE intents SET state = ?2, decision_json = COALESCE(?3, decision_json), updated_at = ?4
             WHERE request_id = ?1",
            params![request_id, state.as_str(), decision_json, now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(true)
    }

    /// The intent `request_id`, `None` if unknown.
    pub fn get_intent(&self, request_id: &str) -> Result<Option<IntentRecord>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let row = self
            .db
            .lock()
            .query_row(
                &format!("SELECT {INTENT_COLUMNS} FROM intents WHERE request_id = ?1"),
                [request_id],
                intent_row,
            )
            .optional()
            .map_err(self.db.err("get_intent"))?;
        row.map(|r| self.intent_from_row(r)).transpose()
    }

    /// Intents in any of `states`, oldest first, at most `limit`
    /// (capped at the store's list limit).
    pub fn list_intents(
        &self,
        states: &[IntentState],
        limit: usize,
    ) -> Result<Vec<IntentRecord>, StoreError> {
        let err = self.db.err("list_intents");
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let limit = i64::try_from(limit.min(MAX_LIST_LIMIT)).unwrap_or(0);
        let rows = {
            let conn = self.db.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {INTENT_COLUMNS} FROM intents
                     WHERE state IN (SELECT value FROM json_each(?1))
                     ORDER BY created_at, request_id LIMIT ?2"
                ))
                .map_err(&err)?;
            let names_json =
                serde_json::to_string(&names).map_err(|e| StoreError::InvalidInput {
                    field: "states",
                    reason: e.to_string(),
                })?;
            let rows = stmt
                .query_map(params![names_json, limit], intent_row)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter().map(|r| self.intent_from_row(r)).collect()
    }

    /// Every intent that counts as spent (`approved` or `signed`) other than
    /// `except`, as (intent JSON, the time it counts from): the coordinator's
    /// velocity and vesting history. The time is the `evaluated_at` of the
    /// decision that allowed it (a member of the decision JSON the
    /// coordinator stores), else its last change. Not capped like
    /// [`CoordinatorStore::list_intents`]: a history cut short would
    /// under-count a limit.
    pub fn spent_intents(&self, except: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let err = self.db.err("spent_intents");
        let conn = self.db.lock();
        // json_extract reads the one member in SQLite, instead of handing
        // every decision document to the caller to parse on each request.
        let mut stmt = conn
            .prepare(
                "SELECT intent_json,
                        COALESCE(json_extract(decision_json, '$.evaluated_at'), updated_at)
                 FROM intents
                 WHERE state IN ('approved', 'signed') AND request_id != ?1
                 ORDER BY created_at, request_id",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([except], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Adds an approval (JSON) with `nonce` to intent `request_id`. Returns
    /// `false` if this nonce is already recorded for this request (a repeated
    /// submission); a nonce recorded for another request is a
    /// [`StoreError::Conflict`] (a replayed approval).
    pub fn add_approval(
        &self,
        request_id: &str,
        nonce: &[u8; 16],
        approval_json: &str,
    ) -> Result<bool, StoreError> {
        validate::client_id("request_id", request_id)?;
        validate::json("approval_json", approval_json)?;
        let err = self.db.err("add_approval");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT request_id FROM approvals WHERE nonce = ?1",
                [nonce.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        match owner {
            Some(o) if o == request_id => return Ok(false),
            Some(o) => {
                return Err(StoreError::Conflict {
                    what: "approval nonce",
                    id: format!("{} (used for request {o})", hex::encode(nonce)),
                })
            }
            None => {}
        }
        tx.execute(
            "INSERT INTO approvals (nonce, request_id, approval_json, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![nonce.as_slice(), request_id, approval_json, now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(true)
    }

    /// Approvals (JSON) gathered for `request_id`, in arrival order.
    pub fn approvals_for(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        let err = self.db.err("approvals_for");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare(
                "SELECT approval_json FROM approvals WHERE request_id = ?1 ORDER BY created_at, nonce",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([request_id], |r| r.get::<_, String>(0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Approval nonces recorded for requests other than `request_id`.
    pub fn approval_nonces_of_others(&self, request_id: &str) -> Result<Vec<[u8; 16]>, StoreError> {
        self.db
            .nonces_except("approval_nonces_of_others", "approvals", request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
        CoordinatorStore::open(dir.path().join("c.db")).unwrap()
    }

    #[test]
    fn intents_are_idempotent_and_transitions_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let ins = s
            .insert_intent("r-1", [1; 32], "{}", IntentState::PendingApproval, None, 10)
            .unwrap();
        assert_eq!(ins, IntentInsert::New);
        assert!(matches!(
            s.insert_intent("r-1", [1; 32], "{}", IntentState::Approved, None, 11)
                .unwrap(),
            IntentInsert::Existing(r) if r.state == IntentState::PendingApproval && r.created_at == 10
        ));
        assert_eq!(
            s.insert_intent("r-1", [2; 32], "{}", IntentState::Approved, None, 11)
                .unwrap(),
            IntentInsert::Conflict
        );
        assert!(s
            .transition_intent(
                "r-1",
                &[IntentState::PendingApproval],
                IntentState::Approved,
                Some("{\"a\":1}")
            )
            .unwrap());
        // A second task trying the same transition loses.
        assert!(!s
            .transition_intent(
                "r-1",
                &[IntentState::PendingApproval],
                IntentState::Approved,
                None
            )
            .unwrap());
        let r = s.get_intent("r-1").unwrap().unwrap();
        assert_eq!(r.state, IntentState::Approved);
        assert_eq!(r.decision_json.as_deref(), Some("{\"a\":1}"));
        assert_eq!(
            s.list_intents(&[IntentState::Approved], 10).unwrap().len(),
            1
        );
        assert!(s
            .list_intents(&[IntentState::PendingApproval], 10)
            .unwrap()
            .is_empty());
        assert_eq!(s.spent_intents("other").unwrap().len(), 1);
        assert!(s.spent_intents("r-1").unwrap().is_empty());
    }

    #[test]
    fn a_spent_intent_counts_from_its_allowing_decision() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let allowed = Some("{\"outcome\":\"allow\",\"evaluated_at\":1234}");
        s.insert_intent("r-1", [1; 32], "{}", IntentState::Approved, allowed, 10)
            .unwrap();
        s.insert_intent("r-2", [2; 32], "{}", IntentState::Approved, Some("{}"), 20)
            .unwrap();
        // The decision's time; without one, the last change.
        assert_eq!(
            s.spent_intents("none").unwrap(),
            vec![("{}".to_string(), 1234), ("{}".to_string(), 20)]
        );
    }

    #[test]
    fn an_approval_nonce_serves_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert!(s.add_approval("r-1", &[5; 16], "{}").unwrap());
        assert!(!s.add_approval("r-1", &[5; 16], "{}").unwrap());
        let e = s.add_approval("r-2", &[5; 16], "{}").unwrap_err();
        assert!(e.to_string().contains("used for request r-1"), "{e}");
        assert_eq!(s.approvals_for("r-1").unwrap().len(), 1);
        assert_eq!(s.approval_nonces_of_others("r-2").unwrap(), vec![[5; 16]]);
        assert!(s.approval_nonces_of_others("r-1").unwrap().is_empty());
    }
}
