//! [`CoordinatorStore`]: the coordinator's embedded database (SQLite, same
//! durability settings as the signer store).
//!
//! It keeps the keys and their participants, signer groups, signature
//! requests with their idempotency state, the coordinator's index of the
//! signers' presignature pools, and API tokens. It holds no key material; the
//! only secret-derived data are SHA-256 hashes of API tokens.
//!
//! # Idempotent requests
//!
//! [`CoordinatorStore::begin_request`] is the single entry point of a
//! signature request: the first call with a request id records it as in
//! progress and returns [`BeginOutcome::New`], and only that caller may
//! proceed to sign. Later calls with the same id and the same fingerprint
//! (hash of the canonical request) get the stored state back; with another
//! fingerprint they get [`BeginOutcome::Conflict`]. Requests left in progress
//! by a crash are listed by [`CoordinatorStore::in_progress_requests`]; the
//! coordinator must resolve them (find out from the signers and the audit log
//! whether a signature was produced) before finishing or failing them.
//!
//! All methods block; from async code call them via `spawn_blocking`.

use std::fmt;
use std::path::Path;

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::db::{count, now, Db, Schema};
use crate::error::StoreError;
use crate::validate::{self, MAX_PUBLIC_KEY_LEN};
use crate::Curve;

/// Schema version of coordinator databases written by this build.
pub const COORDINATOR_SCHEMA_VERSION: i64 = 2;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE keys (
        key_id       TEXT PRIMARY KEY,
        curve        TEXT NOT NULL,
        t            INTEGER NOT NULL,
        n            INTEGER NOT NULL,
        public_key   BLOB NOT NULL,
        chain_code   BLOB,
        group_id     TEXT NOT NULL,
        participants TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE groups (
        group_id    TEXT PRIMARY KEY,
        members     TEXT NOT NULL,
        members_key TEXT NOT NULL,
        aux_ready   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX groups_by_members ON groups (members_key);
    CREATE TABLE requests (
        request_id   TEXT PRIMARY KEY,
        fingerprint  BLOB NOT NULL,
        request_json TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('in_progress', 'done', 'failed')),
        result_json  TEXT,
        error_json   TEXT,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX requests_by_state ON requests (state);
    CREATE TABLE presigs (
        id         TEXT PRIMARY KEY,
        key_id     TEXT NOT NULL,
        signer_set TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('available', 'claimed', 'dropped')),
        created_at INTEGER NOT NULL,
        changed_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX presigs_pool ON presigs (key_id, signer_set, state);
    CREATE TABLE tokens (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;",
    // 1 -> 2: policy intents and approvals (see `coordinator_intents`)
    "CREATE TABLE intents (
        request_id    TEXT PRIMARY KEY,
        fingerprint   BLOB NOT NULL,
        intent_json   TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN
                        ('pending_approval', 'time_locked', 'approved', 'denied', 'signed', 'failed')),
        decision_json TEXT,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX intents_by_state ON intents (state);
    CREATE TABLE approvals (
        nonce         BLOB PRIMARY KEY,
        request_id    TEXT NOT NULL,
        approval_json TEXT NOT NULL,
        created_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX approvals_by_request ON approvals (request_id);",
];

/// Prefix of API tokens.
pub const TOKEN_PREFIX: &str = "kf_";
const TOKEN_BYTES: usize = 32;
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 2 * TOKEN_BYTES;
const CHAIN_CODE_LEN: usize = 32;

/// A threshold key as the coordinator knows it (public data only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// Threshold: signers needed to sign.
    pub t: u16,
    /// Number of share holders; equals `participants.len()`.
    pub n: u16,
    /// The group public key.
    pub public_key: Vec<u8>,
    /// The BIP32 chain code (32 bytes) if the key supports HD derivation.
    pub chain_code: Option<Vec<u8>>,
    /// The signer group whose aux info the key uses.
    pub group_id: String,
    /// Node ids of the share holders, by party index.
    pub participants: Vec<String>,
    /// When the key was created (Unix seconds).
    pub created_at: i64,
}

/// A signer group: nodes that ran aux-info generation together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The group id.
    pub group_id: String,
    /// Node ids by party index.
    pub members: Vec<String>,
    /// Whether every member holds aux info for the group.
    pub aux_ready: bool,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// State of a signature request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestState {
    /// Accepted, not finished (or interrupted by a crash).
    InProgress,
    /// Finished with a result.
    Done,
    /// Finished with an error.
    Failed,
}

impl RequestState {
    fn as_str(self) -> &'static str {
        match self {
            RequestState::InProgress => "in_progress",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<RequestState> {
        match s {
            "in_progress" => Some(RequestState::InProgress),
            "done" => Some(RequestState::Done),
            "failed" => Some(RequestState::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`CoordinatorStore::begin_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginOutcome {
    /// First time this request id is seen: it is now recorded in progress and
    /// the caller owns it.
    New,
    /// Same request already in progress (a concurrent retry, or left by a
    /// crash): do not start it again.
    InProgress,
    /// Same request already done: answer with this stored result.
    Done(String),
    /// Same request already failed: answer with this stored error.
    Failed(String),
    /// The request id is taken by a different request (other fingerprint).
    Conflict,
}

/// A stored signature request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request id (idempotency key).
    pub request_id: String,
    /// Hash of the canonical request.
    pub fingerprint: [u8; 32],
    /// The request as JSON.
    pub request_json: String,
    /// Its state.
    pub state: RequestState,
    /// The result, once done.
    pub result_json: Option<String>,
    /// The error, once failed.
    pub error_json: Option<String>,
    /// When it was first seen (Unix seconds).
    pub created_at: i64,
    /// Last state change (Unix seconds).
    pub updated_at: i64,
}

/// An API token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token row id.
    pub id: i64,
    /// The token's name (who or what uses it).
    pub name: String,
}

/// An API token's metadata (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMeta {
    /// Token row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// When it was issued (Unix seconds).
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// The coordinator's database. See the [module docs](self).
pub struct CoordinatorStore {
    pub(crate) db: Db,
}

impl fmt::Debug for CoordinatorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorStore")
            .field("path", &self.db.path)
            .finish()
    }
}

fn members_key(members: &[String]) -> String {
    let mut sorted: Vec<&str> = members.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.join("|")
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

type KeyRow = (
    String,
    String,
    i64,
    i64,
    Vec<u8>,
    Option<Vec<u8>>,
    String,
    String,
    i64,
);

fn key_row(r: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

const KEY_COLUMNS: &str =
    "key_id, curve, t, n, public_key, chain_code, group_id, participants, created_at";

type RequestRow = (
    String,
    Vec<u8>,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn request_row(r: &Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

const REQUEST_COLUMNS: &str =
    "request_id, fingerprint, request_json, state, result_json, error_json, created_at, updated_at";

impl CoordinatorStore {
    /// Opens (or creates) the coordinator database at `path`.
    ///
    /// A database from a newer build fails with [`StoreError::SchemaTooNew`],
    /// a signer database with [`StoreError::WrongDatabase`].
    pub fn open(path: impl AsRef<Path>) -> Result<CoordinatorStore, StoreError> {
        let path = path.as_ref();
        let db = Db::open(
            path,
            &Schema {
                kind: "coordinator",
                latest: COORDINATOR_SCHEMA_VERSION,
                migrations: MIGRATIONS,
                identity: None,
            },
        )?;
        tracing::info!(path = %path.display(), "opened coordinator store");
        Ok(CoordinatorStore { db })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    fn corrupt(&self, what: &'static str, id: &str, reason: String) -> StoreError {
        self.db.corrupt(what, id, reason)
    }

    fn parse_members(
        &self,
        what: &'static str,
        id: &str,
        json: &str,
    ) -> Result<Vec<String>, StoreError> {
        let members: Vec<String> = serde_json::from_str(json)
            .map_err(|e| self.corrupt(what, id, format!("member list: {e}")))?;
        validate::members("members", &members)
            .map_err(|e| self.corrupt(what, id, e.to_string()))?;
        Ok(members)
    }

    // ---- keys ----

    /// Records a key. Inserting an identical record again is a no-op; a
    /// different record under an existing key id is refused with
    /// [`StoreError::Conflict`].
    pub fn insert_key(&self, key: KeyRecord) -> Result<(), StoreError> {
        validate::id("key_id", &key.key_id)?;
        validate::id("group_id", &key.group_id)?;
        validate::members("participants", &key.participants)?;
        validate::bytes("public_key", &key.public_key, MAX_PUBLIC_KEY_LEN)?;
        if key.t == 0 || key.t > key.n {
            return Err(StoreError::InvalidInput {
                field: "t",
                reason: format!("threshold {} must be in 1..=n ({})", key.t, key.n),
            });
        }
        if usize::from(key.n) != key.participants.len() {
            return Err(StoreError::InvalidInput {
                field: "n",
                reason: format!(
                    "n is {} but there are {} participants",
                    key.n,
                    key.participants.len()
                ),
            });
        }
        if let Some(cc) = &key.chain_code {
            if cc.len() != CHAIN_CODE_LEN {
                return Err(StoreError::InvalidInput {
                    field: "chain_code",
                    reason: format!("must be {CHAIN_CODE_LEN} bytes, got {}", cc.len()),
                });
            }
        }
        let participants =
            serde_json::to_string(&key.participants).map_err(|e| StoreError::InvalidInput {
                field: "participants",
                reason: e.to_string(),
            })?;
        let err = self.db.err("insert_key");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let changed = tx
            .execute(
                &format!(
                    "INSERT INTO keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT(key_id) DO NOTHING"
                ),
                params![
                    key.key_id,
                    key.curve.as_str(),
                    key.t,
                    key.n,
                    key.public_key,
                    key.chain_code,
                    key.group_id,
                    participants,
                    key.created_at
                ],
            )
            .map_err(&err)?;
        if changed == 0 {
            let row = tx
                .query_row(
                    &format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"),
                    [&key.key_id],
                    key_row,
                )
                .map_err(&err)?;
            let existing = self.key_from_row(row)?;
            if existing != key {
                tracing::warn!(key_id = key.key_id, "refused to overwrite a key record");
                return Err(StoreError::Conflict {
                    what: "key",
                    id: key.key_id,
                });
            }
            return Ok(());
        }
        tx.commit().map_err(&err)?;
        tracing::info!(key_id = key.key_id, curve = %key.curve, t = key.t, n = key.n, "recorded key");
        Ok(())
    }

    fn key_from_row(&self, row: KeyRow) -> Result<KeyRecord, StoreError> {
        let (key_id, curve, t, n, public_key, chain_code, group_id, participants, created_at) = row;
        let curve = Curve::parse(&curve)
            .ok_or_else(|| self.corrupt("key", &key_id, format!("unknown curve `{curve}`")))?;
        let t = u16::try_from(t).map_err(|_| self.corrupt("key", &key_id, format!("t = {t}")))?;
        let n = u16::try_from(n).map_err(|_| self.corrupt("key", &key_id, format!("n = {n}")))?;
        let participants = self.parse_members("key", &key_id, &participants)?;
        Ok(KeyRecord {
            key_id,
            curve,
            t,
            n,
            public_key,
            chain_code,
            group_id,
            participants,
            created_at,
        })
    }

    /// The key `key_id`, `None` if unknown.
    pub fn get_key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        validate::id("key_id", key_id)?;
        let row = self
            .db
            .lock()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1"),
                [key_id],
                key_row,
            )
            .optional()
            .map_err(self.db.err("get_key"))?;
        row.map(|r| self.key_from_row(r)).transpose()
    }

    /// All keys, oldest first.
    pub fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let err = self.db.err("list_keys");
        let rows = {
            let conn = self.db.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys ORDER BY created_at, key_id"
                ))
                .map_err(&err)?;
            let rows = stmt
                .query_map([], key_row)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter().map(|r| self.key_from_row(r)).collect()
    }

    // ---- signer groups ----

    /// Records a signer group, or updates its `aux_ready` flag. The members of
    /// an existing group cannot change ([`StoreError::Conflict`]): use a new
    /// group id.
    pub fn upsert_group(
        &self,
        group_id: &str,
        members: Vec<String>,
        aux_ready: bool,
    ) -> Result<(), StoreError> {
        validate::id("group_id", group_id)?;
        validate::members("members", &members)?;
        let json = serde_json::to_string(&members).map_err(|e| StoreError::InvalidInput {
            field: "members",
            reason: e.to_string(),
        })?;
        let err = self.db.err("upsert_group");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT members FROM groups WHERE group_id = ?1",
                [group_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        match existing {
            Some(old) => {
                if self.parse_members("group", group_id, &old)? != members {
                    tracing::warn!(group_id, "refused to change a group's members");
                    return Err(StoreError::Conflict {
                        what: "group",
                        id: group_id.to_string(),
                    });
                }
                tx.execute(
                    "UPDATE groups SET aux_ready = ?2, updated_at = ?3 WHERE group_id = ?1",
                    params![group_id, aux_ready, now()],
                )
                .map_err(&err)?;
            }
            None => {
                tx.execute(
                    "INSERT INTO groups (group_id, members, members_key, aux_ready, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![group_id, json, members_key(&members), aux_ready, now()],
                )
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(())
    }

    fn group_from_row(
        &self,
        (group_id, members, aux_ready, updated_at): (String, String, bool, i64),
    ) -> Result<GroupRecord, StoreError> {
        let members = self.parse_members("group", &group_id, &members)?;
        Ok(GroupRecord {
            group_id,
            members,
            aux_ready,
            updated_at,
        })
    }

    /// The group `group_id`, `None` if unknown.
    pub fn get_group(&self, group_id: &str) -> Result<Option<GroupRecord>, StoreError> {
        validate::id("group_id", group_id)?;
        let row = self
            .db
            .lock()
            .query_row(
                "SELECT group_id, members, aux_ready, updated_at FROM groups WHERE group_id = ?1",
                [group_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.db.err("get_group"))?;
        row.map(|r| self.group_from_row(r)).transpose()
    }

    /// A group with exactly these members (in any order; the returned record
    /// has the group's own party order). Prefers a group whose aux info is
    /// ready, then the most recently updated. `None` if there is none.
    pub fn find_group(&self, members: &[String]) -> Result<Option<GroupRecord>, StoreError> {
        validate::members("members", members)?;
        let row = self
            .db
            .lock()
            .query_row(
                "SELECT group_id, members, aux_ready, updated_at FROM groups
                 WHERE members_key = ?1
                 ORDER BY aux_ready DESC, updated_at DESC, group_id LIMIT 1",
                [members_key(members)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.db.err("find_group"))?;
        row.map(|r| self.group_from_row(r)).transpose()
    }

    // ---- signature requests ----

    /// Starts request `request_id` or reports what happened to it before.
    /// See the [module docs](self). `request_json` must be valid JSON of at
    /// most 1 MiB; `fingerprint` is the hash of the canonical request.
    pub fn begin_request(
        &self,
        request_id: &str,
        fingerprint: [u8; 32],
        request_json: &str,
    ) -> Result<BeginOutcome, StoreError> {
        validate::client_id("request_id", request_id)?;
        validate::json("request_json", request_json)?;
        let err = self.db.err("begin_request");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing = tx
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?1"),
                [request_id],
                request_row,
            )
            .optional()
            .map_err(&err)?;
        if let Some(row) = existing {
            let rec = self.request_from_row(row)?;
            if !crate::seal::ct_eq(&rec.fingerprint, &fingerprint) {
                tracing::warn!(request_id, "request id reused for a different request");
                return Ok(BeginOutcome::Conflict);
            }
            let missing = |f: &str| self.corrupt("request", request_id, format!("{f} missing"));
            return Ok(match rec.state {
                RequestState::InProgress => BeginOutcome::InProgress,
                RequestState::Done => {
                    BeginOutcome::Done(rec.result_json.ok_or_else(|| missing("result"))?)
                }
                RequestState::Failed => {
                    BeginOutcome::Failed(rec.error_json.ok_or_else(|| missing("error"))?)
                }
            });
        }
        let t = now();
        tx.execute(
            "INSERT INTO requests (request_id, fingerprint, request_json, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'in_progress', ?4, ?4)",
            params![request_id, fingerprint.as_slice(), request_json, t],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(BeginOutcome::New)
    }

    fn request_from_row(&self, row: RequestRow) -> Result<RequestRecord, StoreError> {
        let (request_id, fp, request_json, state, result_json, error_json, created_at, updated_at) =
            row;
        let fingerprint = <[u8; 32]>::try_from(fp.as_slice()).map_err(|_| {
            self.corrupt(
                "request",
                &request_id,
                format!("fingerprint of {} bytes", fp.len()),
            )
        })?;
        let state = RequestState::parse(&state)
            .ok_or_else(|| self.corrupt("request", &request_id, format!("state `{state}`")))?;
        Ok(RequestRecord {
            request_id,
            fingerprint,
            request_json,
            state,
            result_json,
            error_json,
            created_at,
            updated_at,
        })
    }

    fn finish(
        &self,
        op: &'static str,
        request_id: &str,
        state: RequestState,
        json: &str,
    ) -> Result<(), StoreError> {
        validate::client_id("request_id", request_id)?;
        validate::json(
            if state == RequestState::Done {
                "result_json"
            } else {
                "error_json"
            },
            json,
        )?;
        let err = self.db.err(op);
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let row = tx
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?1"),
                [request_id],
                request_row,
            )
            .optional()
            .map_err(&err)?
            .ok_or_else(|| StoreError::NotFound {
                what: "request",
                id: request_id.to_string(),
            })?;
        let rec = self.request_from_row(row)?;
        if rec.state != RequestState::InProgress {
            let stored = match rec.state {
                RequestState::Done => rec.result_json.as_deref(),
                _ => rec.error_json.as_deref(),
            };
            if rec.state == state && stored == Some(json) {
                return Ok(()); // the same call repeated
            }
            return Err(StoreError::RequestNotInProgress {
                request_id: request_id.to_string(),
                state: rec.state,
            });
        }
        let sql = match state {
            RequestState::Done => {
                "UPDATE requests SET state = 'done', result_json = ?2, updated_at = ?3 WHERE request_id = ?1"
            }
            _ => {
                "UPDATE requests SET state = 'failed', error_json = ?2, updated_at = ?3 WHERE request_id = ?1"
            }
        };
        tx.execute(sql, params![request_id, json, now()])
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(())
    }

    /// Marks an in-progress request done with `result_json`. Repeating the
    /// same call is a no-op; finishing a request that is not in progress
    /// otherwise fails with [`StoreError::RequestNotInProgress`].
    pub fn finish_request(&self, request_id: &str, result_json: &str) -> Result<(), StoreError> {
        self.finish(
            "finish_request",
            request_id,
            RequestState::Done,
            result_json,
        )
    }

    /// Moves a `Failed` request back to `InProgress` so that a retry with the
    /// same id and the same payload (`fingerprint`) can try again. A failed
    /// request released no signature, and a second attempt signs the same
    /// message, so this keeps "one request, at most one released signature".
    /// Returns `false` (and changes nothing) when the request is not failed or
    /// its fingerprint differs.
    pub fn retry_failed_request(
        &self,
        request_id: &str,
        fingerprint: [u8; 32],
    ) -> Result<bool, StoreError> {
        validate::client_id("request_id", request_id)?;
        let err = self.db.err("retry_failed_request");
        let conn = self.db.lock();
        let changed = conn
            .execute(
                "UPDATE requests SET state = 'in_progress', error_json = NULL, updated_at = ?3
                 WHERE request_id = ?1 AND fingerprint = ?2 AND state = 'failed'",
                params![request_id, fingerprint.as_slice(), now()],
            )
            .map_err(&err)?;
        Ok(changed == 1)
    }

    /// Marks an in-progress request failed with `error_json` (same rules as
    /// [`CoordinatorStore::finish_request`]).
    pub fn fail_request(&self, request_id: &str, error_json: &str) -> Result<(), StoreError> {
        self.finish("fail_request", request_id, RequestState::Failed, error_json)
    }

    /// The request `request_id`, `None` if unknown.
    pub fn get_request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let row = self
            .db
            .lock()
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = ?1"),
                [request_id],
                request_row,
            )
            .optional()
            .map_err(self.db.err("get_request"))?;
        row.map(|r| self.request_from_row(r)).transpose()
    }

    /// Requests still in progress (after a crash: the ones to resolve), oldest
    /// first.
    pub fn in_progress_requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        let err = self.db.err("in_progress_requests");
        let rows = {
            let conn = self.db.lock();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {REQUEST_COLUMNS} FROM requests WHERE state = 'in_progress'
                     ORDER BY created_at, request_id"
                ))
                .map_err(&err)?;
            let rows = stmt
                .query_map([], request_row)
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter().map(|r| self.request_from_row(r)).collect()
    }

    // ---- presignature index ----

    /// Records that the signers of `signer_set` hold presignature `id` for
    /// `key_id`. Adding the same id for the same key and set again is a no-op
    /// (it does not make a claimed one available again); for another key or
    /// set it is a [`StoreError::Conflict`].
    pub fn add_presig(&self, id: &str, key_id: &str, signer_set: &[u16]) -> Result<(), StoreError> {
        validate::id("presignature id", id)?;
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let err = self.db.err("add_presig");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let t = now();
        let changed = tx
            .execute(
                "INSERT INTO presigs (id, key_id, signer_set, state, created_at, changed_at)
                 VALUES (?1, ?2, ?3, 'available', ?4, ?4) ON CONFLICT(id) DO NOTHING",
                params![id, key_id, set, t],
            )
            .map_err(&err)?;
        if changed == 0 {
            let (k, s): (String, String) = tx
                .query_row(
                    "SELECT key_id, signer_set FROM presigs WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&err)?;
            if k != key_id || s != set {
                return Err(StoreError::Conflict {
                    what: "presignature",
                    id: id.to_string(),
                });
            }
            return Ok(());
        }
        tx.commit().map_err(&err)?;
        Ok(())
    }

    /// Claims one available presignature of `key_id` and `signer_set` (the
    /// oldest), atomically: two callers never get the same id. `None` if none
    /// is available.
    pub fn claim_presig(
        &self,
        key_id: &str,
        signer_set: &[u16],
    ) -> Result<Option<String>, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let err = self.db.err("claim_presig");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM presigs WHERE key_id = ?1 AND signer_set = ?2 AND state = 'available'
                 ORDER BY rowid LIMIT 1",
                [key_id, &set],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let Some(id) = id else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE presigs SET state = 'claimed', changed_at = ?2 WHERE id = ?1",
            params![id, now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(Some(id))
    }

    /// Number of available presignatures of `key_id` and `signer_set`.
    pub fn count_presigs(&self, key_id: &str, signer_set: &[u16]) -> Result<usize, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let n: i64 = self
            .db
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM presigs WHERE key_id = ?1 AND signer_set = ?2 AND state = 'available'",
                [key_id, &set],
                |r| r.get(0),
            )
            .map_err(self.db.err("count_presigs"))?;
        Ok(count(n))
    }

    /// Drops every available presignature of `key_id` and `signer_set` (they
    /// will never be claimed). Returns how many.
    pub fn drop_presigs(&self, key_id: &str, signer_set: &[u16]) -> Result<usize, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        self.db
            .lock()
            .execute(
                "UPDATE presigs SET state = 'dropped', changed_at = ?3
                 WHERE key_id = ?1 AND signer_set = ?2 AND state = 'available'",
                params![key_id, set, now()],
            )
            .map_err(self.db.err("drop_presigs"))
    }

    /// Deletes claimed and dropped presignature records last changed before
    /// `changed_before` (Unix seconds), to bound the database's size. Returns
    /// how many.
    pub fn purge_presigs(&self, changed_before: i64) -> Result<usize, StoreError> {
        self.db
            .lock()
            .execute(
                "DELETE FROM presigs WHERE state <> 'available' AND changed_at < ?1",
                [changed_before],
            )
            .map_err(self.db.err("purge_presigs"))
    }

    // ---- API tokens ----

    /// Issues an API token named `name` and returns it: `kf_` followed by 64
    /// hex characters (32 random bytes). Show it once; only its SHA-256 is
    /// stored. A name with an active token is refused
    /// ([`StoreError::Conflict`]); revoke it first to rotate.
    pub fn issue_token(&self, name: &str) -> Result<Zeroizing<String>, StoreError> {
        validate::id("token name", name)?;
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, raw.as_mut_slice()).map_err(
            |e| crate::SealError::Rng {
                reason: e.to_string(),
            },
        )?;
        let mut hexbuf = Zeroizing::new([0u8; 2 * TOKEN_BYTES]);
        hex::encode_to_slice(raw.as_slice(), hexbuf.as_mut_slice()).map_err(|e| {
            StoreError::InvalidInput {
                field: "token",
                reason: e.to_string(),
            }
        })?;
        let mut token = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        token.push_str(TOKEN_PREFIX);
        token.extend(hexbuf.iter().map(|b| char::from(*b)));
        let hash = token_hash(&token);

        let err = self.db.err("issue_token");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let active: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
                [name],
                |r| r.get(0),
            )
            .map_err(&err)?;
        if active > 0 {
            return Err(StoreError::Conflict {
                what: "token",
                id: name.to_string(),
            });
        }
        tx.execute(
            "INSERT INTO tokens (name, token_hash, created_at) VALUES (?1, ?2, ?3)",
            params![name, hash.as_slice(), now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::info!(name, "issued API token");
        Ok(token)
    }

    /// Checks an API token: `Some` with its id and name if it is a valid,
    /// unrevoked token, `None` otherwise (including malformed input, which
    /// never reaches the database).
    pub fn verify_token(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        if token.len() != TOKEN_LEN
            || !token.starts_with(TOKEN_PREFIX)
            || !token.as_bytes()[TOKEN_PREFIX.len()..]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Ok(None);
        }
        let hash = token_hash(token);
        self.db
            .lock()
            .query_row(
                "SELECT id, name FROM tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
                [hash.as_slice()],
                |r| {
                    Ok(TokenInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.db.err("verify_token"))
    }

    /// Revokes the active token named `name` ([`StoreError::NotFound`] if
    /// there is none).
    pub fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        validate::id("token name", name)?;
        let n = self
            .db
            .lock()
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now()],
            )
            .map_err(self.db.err("revoke_token"))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "active token",
                id: name.to_string(),
            });
        }
        tracing::info!(name, "revoked API token");
        Ok(())
    }

    /// All tokens, active and revoked (metadata only), by id.
    pub fn list_tokens(&self) -> Result<Vec<TokenMeta>, StoreError> {
        let err = self.db.err("list_tokens");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT id, name, created_at, revoked_at FROM tokens ORDER BY id")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TokenMeta {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }
}
