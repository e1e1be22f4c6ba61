//! The coordinator's signing requests: one table with the request's typed
//! lifecycle state, its history of transitions, the approvals gathered for
//! it, and the write path that records a step of many requests at once.
//!
//! # One row per request
//!
//! A row holds what the client asked (`request_json`, opaque to the store),
//! the hash that makes retries idempotent (`fingerprint`), the lifecycle
//! state (a name the coordinator's state machine defines; the store checks
//! it is one of [`REQUEST_STATES`]), the latest policy decision, the result
//! or the error, the lifecycle's own data (`lifecycle_json`: expiry, holds,
//! post-signing steps, module data), and three indexed times:
//! `spent_at` (the request counts against velocity limits from then on),
//! `wake_at` (when the coordinator must look at it again: a time lock ends, a
//! waiting request expires, a step is retried) and `created_at`. Every change
//! goes through [`Op::UpdateRequest`] with the revision the caller read, so
//! two writers never overwrite each other silently. `seq` orders requests
//! for cursor paging.
//!
//! # Writing a step
//!
//! [`CoordinatorStore::apply_group`] applies the operations of several
//! callers in one SQLite transaction, each in its own savepoint (one
//! caller's conflict does not undo the others'), then runs a hook before
//! the commit: the coordinator appends the audit events of the callers
//! whose operations applied (one fsync for the whole group) and returns the
//! audit log's new size, which is stored in the same transaction. If the
//! hook fails, nothing of the group is committed. So a store row never
//! exists without its audit entry, and [`CoordinatorStore::audit_applied`]
//! tells, after a crash, from which audit entry on the log must be applied
//! again.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// The state names a request row may hold (the coordinator's lifecycle).
pub const REQUEST_STATES: &[&str] = &[
    "received",
    "pending_approval",
    "time_locked",
    "held",
    "approved",
    "signing",
    "signed",
    "completed",
    "failed",
    "rejected",
    "expired",
    "cancelled",
];

/// Most rows one page of [`CoordinatorStore::list_requests`] returns.
pub const MAX_PAGE: usize = 500;

/// Most approvals kept for one request (the policy counts at most 256).
pub const MAX_APPROVALS_PER_REQUEST: usize = 256;

/// Most transitions kept for one request.
pub const MAX_TRANSITIONS_PER_REQUEST: usize = 1000;

/// The 2 -> 3 migration: one request table with a typed lifecycle replaces
/// the `requests` (idempotency) and `intents` (policy) pair; the history of
/// transitions; idempotent key creation; the policy versions (they were a
/// file next to the database); which token events the audit log holds.
pub(crate) const MIGRATION_3: &str = "
    CREATE TABLE requests_v3 (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id     TEXT NOT NULL UNIQUE,
        fingerprint    BLOB NOT NULL,
        key_id         TEXT NOT NULL,
        initiator      TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('received', 'pending_approval',
                         'time_locked', 'held', 'approved', 'signing', 'signed', 'completed',
                         'failed', 'rejected', 'expired', 'cancelled')),
        rev            INTEGER NOT NULL,
        request_json   TEXT,
        decision_json  TEXT,
        result_json    TEXT,
        error_json     TEXT,
        lifecycle_json TEXT NOT NULL DEFAULT '{}',
        spent_at       INTEGER,
        wake_at        INTEGER,
        created_at     INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    ) STRICT;
    INSERT INTO requests_v3 (request_id, fingerprint, key_id, initiator, state, rev,
                             request_json, decision_json, result_json, error_json,
                             spent_at, created_at, updated_at)
    SELECT i.request_id, i.fingerprint,
           COALESCE(json_extract(i.intent_json, '$.key_id'), ''),
           COALESCE(json_extract(i.intent_json, '$.request.initiator'), ''),
           CASE i.state WHEN 'denied' THEN 'rejected'
                        WHEN 'signed' THEN 'completed'
                        ELSE i.state END,
           1, i.intent_json, i.decision_json, r.result_json, r.error_json,
           CASE WHEN i.state IN ('approved', 'signed')
                THEN COALESCE(json_extract(i.decision_json, '$.evaluated_at'), i.updated_at)
                END,
           i.created_at, i.updated_at
    FROM intents i LEFT JOIN requests r ON r.request_id = i.request_id
    ORDER BY i.created_at, i.request_id;
    -- Requests from before the policy existed: their results stay readable.
    INSERT INTO requests_v3 (request_id, fingerprint, key_id, initiator, state, rev,
                             request_json, result_json, error_json, created_at, updated_at)
    SELECT r.request_id, r.fingerprint, '', '',
           CASE r.state WHEN 'done' THEN 'completed' ELSE 'failed' END,
           1, NULL, r.result_json,
           CASE r.state WHEN 'in_progress'
                THEN '{\"error\":\"interrupted before the request lifecycle existed\"}'
                ELSE r.error_json END,
           r.created_at, r.updated_at
    FROM requests r WHERE r.request_id NOT IN (SELECT request_id FROM intents)
    ORDER BY r.created_at, r.request_id;
    DROP TABLE intents;
    DROP TABLE requests;
    ALTER TABLE requests_v3 RENAME TO requests;
    CREATE INDEX requests_by_state ON requests (state, seq);
    CREATE INDEX requests_by_initiator ON requests (initiator, seq);
    CREATE INDEX requests_spent ON requests (spent_at) WHERE spent_at IS NOT NULL;
    CREATE INDEX requests_wake ON requests (wake_at) WHERE wake_at IS NOT NULL;
    CREATE TABLE request_transitions (
        request_id TEXT NOT NULL,
        n          INTEGER NOT NULL,
        from_state TEXT,
        to_state   TEXT NOT NULL,
        at_ms      INTEGER NOT NULL,
        cause      TEXT NOT NULL,
        PRIMARY KEY (request_id, n)
    ) STRICT;
    INSERT INTO request_transitions (request_id, n, from_state, to_state, at_ms, cause)
    SELECT request_id, 0, NULL, state, updated_at * 1000, 'recorded before the request history existed'
    FROM requests;
    CREATE TABLE key_requests (
        client_id   TEXT PRIMARY KEY,
        fingerprint BLOB NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('in_progress', 'done', 'failed')),
        key_id      TEXT,
        error       TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE policy_versions (
        version     INTEGER PRIMARY KEY,
        document    TEXT NOT NULL,
        update_json TEXT,
        recorded_at INTEGER NOT NULL
    ) STRICT;
    ALTER TABLE tokens ADD COLUMN issue_logged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN revoke_logged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE keys ADD COLUMN seq INTEGER;
    UPDATE keys SET seq = rowid;
";

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    /// Position in the table (cursor paging).
    pub seq: i64,
    /// The request id.
    pub request_id: String,
    /// Hash of what the client asked (a retry must match it).
    pub fingerprint: [u8; 32],
    /// The key it signs with.
    pub key_id: String,
    /// The API client that made it.
    pub initiator: String,
    /// Its lifecycle state (one of [`REQUEST_STATES`]).
    pub state: String,
    /// Revision: increases with every update.
    pub rev: i64,
    /// The request as the coordinator keeps it (JSON); `None` for a request
    /// recorded before the request lifecycle existed.
    pub request_json: Option<String>,
    /// The latest policy decision (JSON).
    pub decision_json: Option<String>,
    /// The result, once signed (JSON).
    pub result_json: Option<String>,
    /// The error, once failed (JSON).
    pub error_json: Option<String>,
    /// The lifecycle's own data (JSON).
    pub lifecycle_json: String,
    /// Counts against velocity limits from this time (Unix seconds).
    pub spent_at: Option<i64>,
    /// When the coordinator must look at it again (Unix seconds).
    pub wake_at: Option<i64>,
    /// First recorded (Unix seconds).
    pub created_at: i64,
    /// Last changed (Unix seconds).
    pub updated_at: i64,
    /// The merchant whose API key made it (`None`: an operator's).
    pub merchant_id: Option<String>,
}

/// A request to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// The request id.
    pub request_id: String,
    /// Hash of what the client asked.
    pub fingerprint: [u8; 32],
    /// The key.
    pub key_id: String,
    /// The API client.
    pub initiator: String,
    /// The request (JSON).
    pub request_json: String,
    /// Its first state and the rest of its columns.
    pub update: RequestUpdate,
    /// When (Unix seconds).
    pub at: i64,
}

/// The mutable columns of a request, all written at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestUpdate {
    /// The state.
    pub state: String,
    /// The latest decision.
    pub decision_json: Option<String>,
    /// The result.
    pub result_json: Option<String>,
    /// The error.
    pub error_json: Option<String>,
    /// The lifecycle's data.
    pub lifecycle_json: String,
    /// Spent from (see [`RequestRow::spent_at`]).
    pub spent_at: Option<i64>,
    /// Wake-up time (see [`RequestRow::wake_at`]).
    pub wake_at: Option<i64>,
}

/// One transition of a request's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    /// The state before (`None` for the first).
    pub from_state: Option<String>,
    /// The state after.
    pub to_state: String,
    /// When (Unix milliseconds).
    pub at_ms: i64,
    /// Why.
    pub cause: String,
}

/// A write of one caller, applied with the others of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Records a new request ([`StoreError::Conflict`] if the id exists).
    InsertRequest(NewRequest),
    /// Replaces a request's mutable columns if its revision is still `rev`
    /// ([`StoreError::StaleRevision`] otherwise).
    UpdateRequest {
        /// The request.
        request_id: String,
        /// The revision the caller read.
        rev: i64,
        /// The new values.
        update: RequestUpdate,
        /// When (Unix seconds).
        at: i64,
    },
    /// Appends to a request's history.
    AddTransition {
        /// The request.
        request_id: String,
        /// The step.
        transition: TransitionRow,
    },
    /// Records an approval ([`StoreError::Conflict`] if its nonce served
    /// another request; a no-op if it is already recorded for this one).
    AddApproval {
        /// The request.
        request_id: String,
        /// The approval's nonce.
        nonce: [u8; 16],
        /// The approval (JSON).
        approval_json: String,
        /// When (Unix seconds).
        at: i64,
    },
    /// Records a policy version that came into force.
    InsertPolicy {
        /// Its version.
        version: u64,
        /// The document (TOML).
        document: String,
        /// The signed update that brought it (JSON), `None` for the genesis.
        update_json: Option<String>,
        /// When (Unix seconds).
        at: i64,
    },
    /// Records a key ([`StoreError::Conflict`] if another record has its id).
    InsertKey(crate::coordinator::KeyRecord),
    /// Records that the signers of `signer_set` hold presignature `id`.
    AddPresig {
        /// The presignature (its session id).
        id: String,
        /// Its key.
        key_id: String,
        /// The signer set (keygen indices).
        signer_set: Vec<u16>,
    },
    /// Marks a presignature claimed (it will never be offered again).
    ClaimPresig {
        /// The presignature.
        id: String,
    },
    /// Notes that the audit log holds a token's issue or revocation.
    TokenLogged {
        /// The token row id.
        id: i64,
        /// Its revocation (`true`) or its issue.
        revoked: bool,
    },
    /// A write of the risk module (trees, decisions, freezes, reviews).
    Risk(crate::coordinator_risk::RiskOp),
    /// A write of the scheduled payouts (schedules, occurrences).
    Schedule(crate::coordinator_schedules::ScheduleOp),
    /// A write of the conditional payouts (escrows).
    Escrow(crate::coordinator_escrows::EscrowOp),
    /// A write of the policy shadows (installs, ends, shadow decisions).
    Shadow(crate::coordinator_shadow::ShadowOp),
}

/// Which requests [`CoordinatorStore::list_requests`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only these states (empty: every state).
    pub states: Vec<String>,
    /// Only this initiator.
    pub initiator: Option<String>,
    /// Only this merchant's.
    pub merchant_id: Option<String>,
    /// Only rows older than this `seq` (the cursor of the previous page).
    pub before: Option<i64>,
    /// At most this many rows (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

const REQUEST_COLUMNS: &str = "seq, request_id, fingerprint, key_id, initiator, state, rev, \
     request_json, decision_json, result_json, error_json, lifecycle_json, spent_at, wake_at, \
     created_at, updated_at, merchant_id";

type Raw = (Base, Option<String>);

type Base = (
    i64,
    String,
    Vec<u8>,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
);

fn raw(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
            r.get(14)?,
            r.get(15)?,
        ),
        r.get(16)?,
    ))
}

fn check_state(field: &'static str, state: &str) -> Result<(), StoreError> {
    if REQUEST_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            field,
            reason: format!("unknown request state `{state}`"),
        })
    }
}

fn check_update(u: &RequestUpdate) -> Result<(), StoreError> {
    check_state("state", &u.state)?;
    for (field, v) in [
        ("decision_json", &u.decision_json),
        ("result_json", &u.result_json),
        ("error_json", &u.error_json),
    ] {
        if let Some(j) = v {
            validate::json(field, j)?;
        }
    }
    validate::json("lifecycle_json", &u.lifecycle_json)
}

fn check_op(op: &Op) -> Result<(), StoreError> {
    match op {
        Op::InsertRequest(n) => {
            validate::client_id("request_id", &n.request_id)?;
            validate::id("key_id", &n.key_id)?;
            if n.initiator.len() > validate::MAX_ID_LEN {
                return Err(StoreError::InvalidInput {
                    field: "initiator",
                    reason: "too long".into(),
                });
            }
            validate::json("request_json", &n.request_json)?;
            check_update(&n.update)
        }
        Op::UpdateRequest {
            request_id, update, ..
        } => {
            validate::client_id("request_id", request_id)?;
            check_update(update)
        }
        Op::AddTransition {
            request_id,
            transition,
        } => {
            validate::client_id("request_id", request_id)?;
            check_state("to_state", &transition.to_state)?;
            if let Some(f) = &transition.from_state {
                check_state("from_state", f)?;
            }
            if transition.cause.len() > 4096 {
                return Err(StoreError::InvalidInput {
                    field: "cause",
                    reason: "longer than 4096 bytes".into(),
                });
            }
            Ok(())
        }
        Op::AddApproval {
            request_id,
            approval_json,
            ..
        } => {
            validate::client_id("request_id", request_id)?;
            validate::json("approval_json", approval_json)
        }
        Op::InsertPolicy {
            document,
            update_json,
            ..
        } => {
            if document.len() > MAX_JSON_LEN {
                return Err(StoreError::InvalidInput {
                    field: "document",
                    reason: format!("longer than {MAX_JSON_LEN} bytes"),
                });
            }
            if let Some(u) = update_json {
                validate::json("update_json", u)?;
            }
            Ok(())
        }
        Op::InsertKey(k) => crate::coordinator::check_key(k),
        Op::AddPresig {
            id,
            key_id,
            signer_set,
        } => {
            validate::id("presignature id", id)?;
            validate::id("key_id", key_id)?;
            validate::signer_set(signer_set).map(|_| ())
        }
        Op::ClaimPresig { id } => validate::id("presignature id", id),
        Op::TokenLogged { .. } => Ok(()),
        Op::Risk(r) => crate::coordinator_risk::check(r),
        Op::Schedule(o) => crate::coordinator_schedules::check(o),
        Op::Escrow(o) => crate::coordinator_escrows::check(o),
        Op::Shadow(o) => crate::coordinator_shadow::check(o),
    }
}

impl CoordinatorStore {
    /// Applies one operation inside the group's transaction.
    fn apply_op(&self, tx: &rusqlite::Connection, op: &Op) -> Result<(), StoreError> {
        let path = self.db.path.as_path();
        let err = |e| crate::db::map_err(path, "apply_group", e);
        match op {
            Op::InsertRequest(n) => {
                let u = &n.update;
                let inserted = tx
                .execute(
                    "INSERT INTO requests (request_id, fingerprint, key_id, initiator, state, rev,
                        request_json, decision_json, result_json, error_json, lifecycle_json,
                        spent_at, wake_at, created_at, updated_at, merchant_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13,
                        (SELECT merchant_id FROM merchant_keys WHERE client = ?4))
                     ON CONFLICT(request_id) DO NOTHING",
                    params![
                        n.request_id,
                        n.fingerprint.as_slice(),
                        n.key_id,
                        n.initiator,
                        u.state,
                        n.request_json,
                        u.decision_json,
                        u.result_json,
                        u.error_json,
                        u.lifecycle_json,
                        u.spent_at,
                        u.wake_at,
                        n.at
                    ],
                )
                .map_err(err)?;
                if inserted == 0 {
                    return Err(StoreError::Conflict {
                        what: "request",
                        id: n.request_id.clone(),
                    });
                }
            }
            Op::UpdateRequest {
                request_id,
                rev,
                update: u,
                at,
            } => {
                let changed = tx
                    .execute(
                        "UPDATE requests SET state = ?3, rev = rev + 1, decision_json = ?4,
                        result_json = ?5, error_json = ?6, lifecycle_json = ?7, spent_at = ?8,
                        wake_at = ?9, updated_at = ?10
                     WHERE request_id = ?1 AND rev = ?2",
                        params![
                            request_id,
                            rev,
                            u.state,
                            u.decision_json,
                            u.result_json,
                            u.error_json,
                            u.lifecycle_json,
                            u.spent_at,
                            u.wake_at,
                            at
                        ],
                    )
                    .map_err(err)?;
                if changed == 0 {
                    let found: Option<i64> = tx
                        .query_row(
                            "SELECT rev FROM requests WHERE request_id = ?1",
                            [request_id],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(err)?;
                    return Err(match found {
                        None => StoreError::NotFound {
                            what: "request",
                            id: request_id.clone(),
                        },
                        Some(found) => StoreError::StaleRevision {
                            request_id: request_id.clone(),
                            expected: *rev,
                            found,
                        },
                    });
                }
            }
            Op::AddTransition {
                request_id,
                transition: t,
            } => {
                let n: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM request_transitions WHERE request_id = ?1",
                        [request_id],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_TRANSITIONS_PER_REQUEST {
                    return Err(StoreError::InvalidInput {
                        field: "transition",
                        reason: format!(
                        "request {request_id} has {MAX_TRANSITIONS_PER_REQUEST} transitions already"
                    ),
                    });
                }
                tx.execute(
                "INSERT INTO request_transitions (request_id, n, from_state, to_state, at_ms, cause)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![request_id, n, t.from_state, t.to_state, t.at_ms, t.cause],
            )
            .map_err(err)?;
            }
            Op::AddApproval {
                request_id,
                nonce,
                approval_json,
                at,
            } => {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT request_id FROM approvals WHERE nonce = ?1",
                        [nonce.as_slice()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                match owner {
                    Some(o) if o == *request_id => {}
                    Some(o) => {
                        return Err(StoreError::Conflict {
                            what: "approval nonce",
                            id: format!("{} (used for request {o})", hex::encode(nonce)),
                        })
                    }
                    None => {
                        let n: i64 = tx
                            .query_row(
                                "SELECT COUNT(*) FROM approvals WHERE request_id = ?1",
                                [request_id],
                                |r| r.get(0),
                            )
                            .map_err(err)?;
                        if usize::try_from(n).unwrap_or(usize::MAX) >= MAX_APPROVALS_PER_REQUEST {
                            return Err(StoreError::InvalidInput {
                            field: "approval",
                            reason: format!(
                                "request {request_id} has {MAX_APPROVALS_PER_REQUEST} approvals already"
                            ),
                        });
                        }
                        tx.execute(
                            "INSERT INTO approvals (nonce, request_id, approval_json, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                            params![nonce.as_slice(), request_id, approval_json, at],
                        )
                        .map_err(err)?;
                    }
                }
            }
            Op::InsertPolicy {
                version,
                document,
                update_json,
                at,
            } => {
                let v = i64::try_from(*version).map_err(|_| StoreError::InvalidInput {
                    field: "version",
                    reason: "above 2^63".into(),
                })?;
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT document FROM policy_versions WHERE version = ?1",
                        [v],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                match existing {
                    Some(d) if d == *document => {}
                    Some(_) => {
                        return Err(StoreError::Conflict {
                            what: "policy version",
                            id: version.to_string(),
                        })
                    }
                    None => {
                        tx.execute(
                        "INSERT INTO policy_versions (version, document, update_json, recorded_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![v, document, update_json, at],
                    )
                    .map_err(err)?;
                    }
                }
            }
            Op::InsertKey(k) => {
                self.insert_key_in(tx, k)?;
            }
            Op::AddPresig {
                id,
                key_id,
                signer_set,
            } => {
                let set = validate::signer_set(signer_set)?;
                let changed = tx
                .execute(
                    "INSERT INTO presigs (id, key_id, signer_set, state, created_at, changed_at)
                     VALUES (?1, ?2, ?3, 'available', ?4, ?4) ON CONFLICT(id) DO NOTHING",
                    params![id, key_id, set, crate::db::now()],
                )
                .map_err(err)?;
                if changed == 0 {
                    return Err(StoreError::Conflict {
                        what: "presignature",
                        id: id.clone(),
                    });
                }
            }
            Op::ClaimPresig { id } => {
                tx.execute(
                    "UPDATE presigs SET state = 'claimed', changed_at = ?2 WHERE id = ?1",
                    params![id, crate::db::now()],
                )
                .map_err(err)?;
            }
            Op::TokenLogged { id, revoked } => {
                let sql = if *revoked {
                    "UPDATE tokens SET revoke_logged = 1 WHERE id = ?1"
                } else {
                    "UPDATE tokens SET issue_logged = 1 WHERE id = ?1"
                };
                tx.execute(sql, [id]).map_err(err)?;
            }
            Op::Risk(r) => crate::coordinator_risk::apply(tx, r, err)?,
            Op::Schedule(o) => crate::coordinator_schedules::apply(tx, o, err)?,
            Op::Escrow(o) => crate::coordinator_escrows::apply(tx, o, err)?,
            Op::Shadow(o) => crate::coordinator_shadow::apply(tx, o, err)?,
        }
        Ok(())
    }
}

/// What [`CoordinatorStore::apply_group`] did.
#[derive(Debug)]
pub enum GroupOutcome<E> {
    /// Committed; each caller's result, in order (a caller whose operations
    /// failed had them rolled back and its events must not be logged).
    Committed(Vec<Result<(), StoreError>>),
    /// The hook failed: nothing was committed.
    HookFailed(E),
    /// The database failed: nothing was committed.
    Failed(StoreError),
}

impl CoordinatorStore {
    fn row(&self, raw: Raw) -> Result<RequestRow, StoreError> {
        let (
            seq,
            request_id,
            fp,
            key_id,
            initiator,
            state,
            rev,
            request_json,
            decision_json,
            result_json,
            error_json,
            lifecycle_json,
            spent_at,
            wake_at,
            created_at,
            updated_at,
        ) = raw.0;
        let merchant_id = raw.1;
        let fingerprint = <[u8; 32]>::try_from(fp.as_slice()).map_err(|_| {
            self.db
                .corrupt("request", &request_id, "fingerprint length".into())
        })?;
        Ok(RequestRow {
            seq,
            request_id,
            fingerprint,
            key_id,
            initiator,
            state,
            rev,
            request_json,
            decision_json,
            result_json,
            error_json,
            lifecycle_json,
            spent_at,
            wake_at,
            created_at,
            updated_at,
            merchant_id,
        })
    }

    /// Applies each caller's operations in its own savepoint of one
    /// transaction, runs `before_commit` with which callers succeeded, and
    /// commits with the audit size it returns (see the module docs).
    /// `durable`: commit with `synchronous=FULL` (for a group that holds a
    /// write the audit log cannot restore).
    pub fn apply_group<E>(
        &self,
        jobs: &[&[Op]],
        durable: bool,
        before_commit: impl FnOnce(&[bool]) -> Result<Option<u64>, E>,
    ) -> GroupOutcome<E> {
        let mut results: Vec<Result<(), StoreError>> = jobs
            .iter()
            .map(|ops| ops.iter().try_for_each(check_op))
            .collect();
        let run = || -> Result<GroupOutcome<E>, StoreError> {
            let err = self.db.err("apply_group");
            let mut conn = self.db.lock();
            let normal = durable && self.db.durability == crate::db::Durability::Normal;
            if normal {
                conn.pragma_update(None, "synchronous", "FULL")
                    .map_err(&err)?;
            }
            let outcome: Result<Option<E>, StoreError> = (|| {
                let mut tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(&err)?;
                for (ops, result) in jobs.iter().zip(results.iter_mut()) {
                    if result.is_err() {
                        continue;
                    }
                    let sp = tx.savepoint().map_err(&err)?;
                    let applied = ops.iter().try_for_each(|op| self.apply_op(&sp, op));
                    match applied {
                        Ok(()) => sp.commit().map_err(&err)?,
                        Err(e) => {
                            // Dropping the savepoint rolls it back.
                            drop(sp);
                            *result = Err(e);
                        }
                    }
                }
                let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
                match before_commit(&ok) {
                    Ok(audit_size) => {
                        if let Some(size) = audit_size {
                            tx.execute(
                                "INSERT INTO meta (key, value) VALUES ('audit_applied', ?1)
                                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                [size.to_string()],
                            )
                            .map_err(&err)?;
                        }
                        tx.commit().map_err(&err)?;
                        Ok(None)
                    }
                    Err(e) => {
                        tx.rollback().map_err(&err)?;
                        Ok(Some(e))
                    }
                }
            })();
            if normal {
                conn.pragma_update(None, "synchronous", "NORMAL")
                    .map_err(&err)?;
            }
            Ok(match outcome? {
                None => GroupOutcome::Committed(std::mem::take(&mut results)),
                Some(e) => GroupOutcome::HookFailed(e),
            })
        };
        match run() {
            Ok(o) => o,
            Err(e) => GroupOutcome::Failed(e),
        }
    }

    /// How many audit entries the store reflects (0 for a new store): after
    /// a crash, entries from this index on were logged but their store
    /// writes may be lost, and must be applied again.
    pub fn audit_applied(&self) -> Result<u64, StoreError> {
        let v: Option<String> = self
            .db
            .reader()
            .query_row(
                "SELECT value FROM meta WHERE key = 'audit_applied'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("audit_applied"))?;
        match v {
            None => Ok(0),
            Some(v) => v.parse::<u64>().map_err(|_| {
                self.db
                    .corrupt("meta", "audit_applied", format!("`{v}` is not a number"))
            }),
        }
    }

    /// The request `request_id`, `None` if unknown.
    pub fn get_request(&self, request_id: &str) -> Result<Option<RequestRow>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let r = self
            .db
            .reader()
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?1"),
                [request_id],
                raw,
            )
            .optional()
            .map_err(self.db.err("get_request"))?;
        r.map(|r| self.row(r)).transpose()
    }

    fn query_requests(
        &self,
        op: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let err = self.db.err(op);
        let rows = {
            let conn = self.db.reader();
            let mut stmt = conn.prepare(sql).map_err(&err)?;
            let rows = stmt
                .query_map(params, raw)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter().map(|r| self.row(r)).collect()
    }

    /// One page of requests, newest first. The next page's cursor is the
    /// last row's `seq`.
    pub fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        for s in &filter.states {
            check_state("state", s)?;
        }
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE seq < ?1");
        if !filter.states.is_empty() {
            // Checked above against the fixed list: safe to inline.
            let list = filter
                .states
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(",");
            sql.push_str(&format!(" AND state IN ({list})"));
        }
        sql.push_str(
            " AND (?2 IS NULL OR initiator = ?2) AND (?4 IS NULL OR merchant_id = ?4)
             ORDER BY seq DESC LIMIT ?3",
        );
        self.query_requests(
            "list_requests",
            &sql,
            params![
                filter.before.unwrap_or(i64::MAX),
                filter.initiator,
                i64::try_from(limit).unwrap_or(500),
                filter.merchant_id
            ],
        )
    }

    /// Requests in any of `states`, oldest first (start-up recovery).
    pub fn requests_in_states(&self, states: &[&str]) -> Result<Vec<RequestRow>, StoreError> {
        for s in states {
            check_state("state", s)?;
        }
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let list = states
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        self.query_requests(
            "requests_in_states",
            &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE state IN ({list}) ORDER BY seq"),
            [],
        )
    }

    /// Requests due at `now` (their `wake_at` has passed), oldest first, at
    /// most `limit`.
    pub fn due_requests(&self, now: i64, limit: usize) -> Result<Vec<RequestRow>, StoreError> {
        self.query_requests(
            "due_requests",
            &format!(
                "SELECT {REQUEST_COLUMNS} FROM requests WHERE wake_at IS NOT NULL AND wake_at <= ?1
                 ORDER BY wake_at LIMIT ?2"
            ),
            params![now, i64::try_from(limit.min(MAX_PAGE)).unwrap_or(500)],
        )
    }

    /// Every request that counts against velocity limits: its request JSON
    /// and the time it counts from, in that order. Read once at start and
    /// when the policy changes; evaluations use the in-memory aggregates.
    pub fn spent_requests(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let err = self.db.err("spent_requests");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT request_json, spent_at FROM requests
                 WHERE spent_at IS NOT NULL AND request_json IS NOT NULL ORDER BY spent_at, seq",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// A request's history, oldest first.
    pub fn transitions(&self, request_id: &str) -> Result<Vec<TransitionRow>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let err = self.db.err("transitions");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT from_state, to_state, at_ms, cause FROM request_transitions
                 WHERE request_id = ?1 ORDER BY n",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([request_id], |r| {
                Ok(TransitionRow {
                    from_state: r.get(0)?,
                    to_state: r.get(1)?,
                    at_ms: r.get(2)?,
                    cause: r.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// The approvals recorded for `request_id` (JSON), in arrival order.
    pub fn approvals_for(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let err = self.db.err("approvals_for");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT approval_json FROM approvals WHERE request_id = ?1 ORDER BY created_at, rowid",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([request_id], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// The request an approval nonce was recorded for, if any.
    pub fn approval_nonce_owner(&self, nonce: &[u8; 16]) -> Result<Option<String>, StoreError> {
        self.db
            .reader()
            .query_row(
                "SELECT request_id FROM approvals WHERE nonce = ?1",
                [nonce.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("approval_nonce_owner"))
    }

    /// The newest policy version recorded: (version, document, signed
    /// update JSON).
    pub fn latest_policy(&self) -> Result<Option<(u64, String, Option<String>)>, StoreError> {
        let row: Option<(i64, String, Option<String>)> = self
            .db
            .reader()
            .query_row(
                "SELECT version, document, update_json FROM policy_versions
                 ORDER BY version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.db.err("latest_policy"))?;
        Ok(row.map(|(v, d, u)| (u64::try_from(v).unwrap_or(0), d, u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
        CoordinatorStore::open(dir.path().join("c.db")).unwrap()
    }

    fn new_request(id: &str, state: &str) -> Op {
        Op::InsertRequest(NewRequest {
            request_id: id.into(),
            fingerprint: [1; 32],
            key_id: "00112233445566778899aabbccddeeff".into(),
            initiator: "payments".into(),
            request_json: "{}".into(),
            update: RequestUpdate {
                state: state.into(),
                lifecycle_json: "{}".into(),
                ..Default::default()
            },
            at: 10,
        })
    }

    fn commit(s: &CoordinatorStore, jobs: &[&[Op]]) -> Vec<Result<(), StoreError>> {
        match s.apply_group::<()>(jobs, false, |_| Ok(Some(7))) {
            GroupOutcome::Committed(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_conflicting_job_does_not_undo_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let a = [new_request("r-1", "pending_approval")];
        let b = [new_request("r-1", "approved")];
        let c = [new_request("r-2", "approved")];
        let r = commit(&s, &[&a, &b, &c]);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(StoreError::Conflict { .. })));
        assert!(r[2].is_ok());
        assert_eq!(
            s.get_request("r-1").unwrap().unwrap().state,
            "pending_approval"
        );
        assert_eq!(s.get_request("r-2").unwrap().unwrap().state, "approved");
        assert_eq!(s.audit_applied().unwrap(), 7);
    }

    #[test]
    fn a_failing_hook_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let a = [new_request("r-1", "approved")];
        let out = s.apply_group(&[&a], false, |ok| {
            assert_eq!(ok, &[true]);
            Err("audit log unavailable")
        });
        assert!(matches!(
            out,
            GroupOutcome::HookFailed("audit log unavailable")
        ));
        assert!(s.get_request("r-1").unwrap().is_none());
        assert_eq!(s.audit_applied().unwrap(), 0);
    }

    #[test]
    fn updates_compare_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        commit(&s, &[&[new_request("r-1", "pending_approval")]]);
        let row = s.get_request("r-1").unwrap().unwrap();
        let update = |rev| Op::UpdateRequest {
            request_id: "r-1".into(),
            rev,
            update: RequestUpdate {
                state: "approved".into(),
                lifecycle_json: "{}".into(),
                spent_at: Some(20),
                ..Default::default()
            },
            at: 20,
        };
        assert!(commit(&s, &[&[update(row.rev)]])[0].is_ok());
        // The same revision again: someone else moved it.
        assert!(matches!(
            commit(&s, &[&[update(row.rev)]])[0],
            Err(StoreError::StaleRevision {
                expected: 1,
                found: 2,
                ..
            })
        ));
        let row = s.get_request("r-1").unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.rev, row.spent_at),
            ("approved", 2, Some(20))
        );
        assert_eq!(s.spent_requests().unwrap(), vec![("{}".to_string(), 20)]);
    }

    #[test]
    fn unknown_states_are_refused_before_sql() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let r = commit(&s, &[&[new_request("r-1", "denied")]]);
        assert!(matches!(
            r[0],
            Err(StoreError::InvalidInput { field: "state", .. })
        ));
        assert!(s
            .list_requests(&RequestFilter {
                states: vec!["x' OR 1=1 --".into()],
                limit: 10,
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn pages_are_newest_first_with_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        for i in 0..7 {
            let st = if i % 2 == 0 {
                "completed"
            } else {
                "pending_approval"
            };
            commit(&s, &[&[new_request(&format!("r-{i}"), st)]]);
        }
        let page = |before, states: &[&str]| {
            s.list_requests(&RequestFilter {
                states: states.iter().map(|x| x.to_string()).collect(),
                before,
                limit: 3,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.request_id))
            .collect::<Vec<_>>()
        };
        let p1 = page(None, &[]);
        assert_eq!(
            p1.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            ["r-6", "r-5", "r-4"]
        );
        let p2 = page(Some(p1[2].0), &[]);
        assert_eq!(
            p2.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            ["r-3", "r-2", "r-1"]
        );
        let p3 = page(Some(p2[2].0), &[]);
        assert_eq!(p3.len(), 1);
        let waiting = page(None, &["pending_approval"]);
        assert_eq!(
            waiting.iter().map(|x| x.1.as_str()).collect::<Vec<_>>(),
            ["r-5", "r-3", "r-1"]
        );
    }

    #[test]
    fn an_approval_nonce_serves_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let add = |req: &str| Op::AddApproval {
            request_id: req.into(),
            nonce: [5; 16],
            approval_json: "{}".into(),
            at: 1,
        };
        assert!(commit(&s, &[&[add("r-1")]])[0].is_ok());
        assert!(
            commit(&s, &[&[add("r-1")]])[0].is_ok(),
            "same request: no-op"
        );
        let e = commit(&s, &[&[add("r-2")]]).remove(0).unwrap_err();
        assert!(e.to_string().contains("used for request r-1"), "{e}");
        assert_eq!(s.approvals_for("r-1").unwrap().len(), 1);
        assert_eq!(
            s.approval_nonce_owner(&[5; 16]).unwrap().as_deref(),
            Some("r-1")
        );
        assert_eq!(s.approval_nonce_owner(&[6; 16]).unwrap(), None);
    }

    #[test]
    fn transitions_and_wake_ups() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut ins = new_request("r-1", "time_locked");
        if let Op::InsertRequest(n) = &mut ins {
            n.update.wake_at = Some(100);
        }
        let t = Op::AddTransition {
            request_id: "r-1".into(),
            transition: TransitionRow {
                from_state: None,
                to_state: "time_locked".into(),
                at_ms: 10_000,
                cause: "time-locked until 100".into(),
            },
        };
        commit(&s, &[&[ins, t]]);
        assert!(s.due_requests(99, 10).unwrap().is_empty());
        assert_eq!(s.due_requests(100, 10).unwrap()[0].request_id, "r-1");
        let h = s.transitions("r-1").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].to_state, "time_locked");
    }
}
