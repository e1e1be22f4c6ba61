//! [`CoordinatorStore`]: the coordinator's embedded database (SQLite, same
//! durability settings as the signer store).
//!
//! It keeps the keys and their participants, signer groups, signature
//! requests with their idempotency state, and the coordinator's index of the
//! signers' presignature pools. It holds no key material. API tokens are in
//! [`crate::coordinator_tokens`], payouts and nonces in
//! [`crate::coordinator_payouts`].
//!
//! Signing requests, their history and approvals are in
//! [`crate::coordinator_requests`]: one table with a typed lifecycle, written
//! in groups together with the audit log.
//!
//! Durability: the write connection commits with `synchronous=NORMAL`. What
//! the coordinator must not lose (keys, requests, decisions, approvals,
//! policy versions, signatures) is in its audit log first, which is fsynced;
//! after a machine crash the coordinator applies the audit entries the store
//! had not yet written ([`CoordinatorStore::audit_applied`]). Writes the log
//! cannot restore (signer groups, key creation requests, tokens) commit with
//! `synchronous=FULL`.
//!
//! All methods block; from async code call them via `spawn_blocking`.

use std::fmt;
use std::path::Path;

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use crate::db::{count, now, Db, Durability, Schema};
use crate::error::StoreError;
use crate::validate::{self, MAX_PUBLIC_KEY_LEN};
use crate::Curve;

/// A key request row: fingerprint, state, key id, error.
type KeyRequestRow = (
    Vec<u8>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// One signer set (sorted keygen indices) and its available presignature
/// ids, oldest first.
pub type PresigsBySet = (Vec<u16>, Vec<String>);

/// Schema version of coordinator databases written by this build.
pub const COORDINATOR_SCHEMA_VERSION: i64 = 16;

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
    // 2 -> 3: see `coordinator_requests`
    crate::coordinator_requests::MIGRATION_3,
    // 3 -> 4: see `coordinator_payouts`
    crate::coordinator_payouts::MIGRATION_4,
    // 4 -> 5: see `coordinator_replacements`
    crate::coordinator_replacements::MIGRATION_5,
    // 5 -> 6: see `coordinator_merchants`
    crate::coordinator_merchants::MIGRATION_6,
    // 6 -> 7: see `coordinator_orders`
    crate::coordinator_orders::MIGRATION_7,
    // 7 -> 8: see `coordinator_webhooks`
    crate::coordinator_webhooks::MIGRATION_8,
    // 8 -> 9: see `coordinator_ledger`
    crate::coordinator_ledger::MIGRATION_9,
    // 9 -> 10: see `coordinator_settlements`
    crate::coordinator_settlements::MIGRATION_10,
    // 10 -> 11: see `coordinator_risk`
    crate::coordinator_risk::MIGRATION_11,
    // 11 -> 12: see `coordinator_risk`
    crate::coordinator_risk::MIGRATION_12,
    // 12 -> 13: see `coordinator_schedules`
    crate::coordinator_schedules::MIGRATION_13,
    // 13 -> 14: see `coordinator_shadow`
    crate::coordinator_shadow::MIGRATION_14,
    // 14 -> 15: see `coordinator_escrows`
    crate::coordinator_escrows::MIGRATION,
    // 15 -> 16: see `coordinator_sandbox`
    crate::coordinator_sandbox::MIGRATION_16,
];

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

/// What [`CoordinatorStore::begin_key_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRequest {
    /// First time: the caller creates the key.
    New,
    /// Failed before (this error): the caller tries again.
    Retry(String),
    /// Being created right now.
    InProgress,
    /// Created: this key.
    Done(String),
    /// The id was used with another body.
    Conflict,
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

/// Checks a key record before it reaches SQL.
pub(crate) fn check_key(key: &KeyRecord) -> Result<(), StoreError> {
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
    Ok(())
}

const KEY_COLUMNS: &str =
    "key_id, curve, t, n, public_key, chain_code, group_id, participants, created_at";

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
                durability: Durability::Normal,
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
        check_key(&key)?;
        let inserted = self
            .db
            .durably("insert_key", |tx| self.insert_key_in(tx, &key))?;
        if inserted {
            tracing::info!(key_id = key.key_id, curve = %key.curve, t = key.t, n = key.n, "recorded key");
        }
        Ok(())
    }

    /// Inserts a checked key in `tx`; `false` if the same record was there.
    pub(crate) fn insert_key_in(
        &self,
        tx: &rusqlite::Connection,
        key: &KeyRecord,
    ) -> Result<bool, StoreError> {
        let err = self.db.err("insert_key");
        let participants =
            serde_json::to_string(&key.participants).map_err(|e| StoreError::InvalidInput {
                field: "participants",
                reason: e.to_string(),
            })?;
        let changed = tx
            .execute(
                &format!(
                    "INSERT INTO keys ({KEY_COLUMNS}, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                        (SELECT COALESCE(MAX(seq), 0) + 1 FROM keys))
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
            if existing != *key {
                tracing::warn!(key_id = key.key_id, "refused to overwrite a key record");
                return Err(StoreError::Conflict {
                    what: "key",
                    id: key.key_id.clone(),
                });
            }
            return Ok(false);
        }
        Ok(true)
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
            .reader()
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
        Ok(self
            .list_keys_page(None, None, usize::MAX)?
            .into_iter()
            .map(|(_, k)| k)
            .collect())
    }

    /// Keys created after cursor `after` (a key's `seq`), oldest first, at
    /// most `limit`; each with its `seq` (the next page's cursor). With
    /// `merchant_id`, only that merchant's keys.
    pub fn list_keys_page(
        &self,
        after: Option<i64>,
        merchant_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, KeyRecord)>, StoreError> {
        let err = self.db.err("list_keys");
        let rows = {
            let conn = self.db.reader();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {KEY_COLUMNS}, seq FROM keys WHERE seq > ?1
                     AND (?3 IS NULL OR key_id IN (SELECT key_id FROM key_requests
                          WHERE merchant_id = ?3 AND state = 'done'))
                     ORDER BY seq LIMIT ?2"
                ))
                .map_err(&err)?;
            let rows = stmt
                .query_map(
                    params![
                        after.unwrap_or(0),
                        i64::try_from(limit).unwrap_or(i64::MAX),
                        merchant_id
                    ],
                    |r| Ok((key_row(r)?, r.get::<_, i64>(9)?)),
                )
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter()
            .map(|(r, seq)| Ok((seq, self.key_from_row(r)?)))
            .collect()
    }

    // ---- key creation requests ----

    /// Starts key creation request `client_id` (the caller's idempotency
    /// key), or reports what happened to it before. Durable when it returns.
    pub fn begin_key_request(
        &self,
        client_id: &str,
        fingerprint: [u8; 32],
        merchant_id: Option<&str>,
    ) -> Result<KeyRequest, StoreError> {
        validate::client_id("client_id", client_id)?;
        self.db.durably("begin_key_request", |tx| {
            let err = self.db.err("begin_key_request");
            let row: Option<KeyRequestRow> = tx
                .query_row(
                    "SELECT fingerprint, state, key_id, error, merchant_id FROM key_requests
                     WHERE client_id = ?1",
                    [client_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(&err)?;
            match row {
                Some((fp, state, key_id, error, owner)) => {
                    // Another owner's id: a conflict, with nothing of it shown.
                    if !crate::seal::ct_eq(&fp, &fingerprint) || owner.as_deref() != merchant_id {
                        return Ok(KeyRequest::Conflict);
                    }
                    Ok(match (state.as_str(), key_id, error) {
                        ("done", Some(k), _) => KeyRequest::Done(k),
                        ("failed", _, e) => {
                            // Failed earlier: this call tries again.
                            tx.execute(
                                "UPDATE key_requests SET state = 'in_progress', error = NULL,
                                 updated_at = ?2 WHERE client_id = ?1",
                                params![client_id, now()],
                            )
                            .map_err(&err)?;
                            KeyRequest::Retry(e.unwrap_or_default())
                        }
                        _ => KeyRequest::InProgress,
                    })
                }
                None => {
                    tx.execute(
                        "INSERT INTO key_requests (client_id, fingerprint, state, created_at,
                         updated_at, merchant_id) VALUES (?1, ?2, 'in_progress', ?3, ?3, ?4)",
                        params![client_id, fingerprint.as_slice(), now(), merchant_id],
                    )
                    .map_err(&err)?;
                    Ok(KeyRequest::New)
                }
            }
        })
    }

    /// Ends key creation request `client_id` with the key made, or the
    /// error (a later call with the same id tries again).
    pub fn finish_key_request(
        &self,
        client_id: &str,
        outcome: Result<&str, &str>,
    ) -> Result<(), StoreError> {
        validate::client_id("client_id", client_id)?;
        self.db.durably("finish_key_request", |tx| {
            let (state, key_id, error) = match outcome {
                Ok(k) => ("done", Some(k), None),
                Err(e) => ("failed", None, Some(e)),
            };
            tx.execute(
                "UPDATE key_requests SET state = ?2, key_id = ?3, error = ?4, updated_at = ?5
                 WHERE client_id = ?1",
                params![client_id, state, key_id, error, now()],
            )
            .map_err(self.db.err("finish_key_request"))?;
            Ok(())
        })
    }

    /// Key creation requests left in progress by a crash: marked failed
    /// (no key was recorded for them), so a retry tries again. Returns how
    /// many.
    pub fn fail_unfinished_key_requests(&self) -> Result<usize, StoreError> {
        self.db.durably("fail_unfinished_key_requests", |tx| {
            tx.execute(
                "UPDATE key_requests SET state = 'failed',
                 error = 'the coordinator restarted during key generation', updated_at = ?1
                 WHERE state = 'in_progress'",
                [now()],
            )
            .map_err(self.db.err("fail_unfinished_key_requests"))
        })
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
        self.db.durably("upsert_group", |tx| {
            let err = self.db.err("upsert_group");
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
            Ok(())
        })
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

    /// The available presignatures of `key_id`, by signer set (sorted keygen
    /// indices), each oldest first.
    pub fn available_presigs(&self, key_id: &str) -> Result<Vec<PresigsBySet>, StoreError> {
        validate::id("key_id", key_id)?;
        let err = self.db.err("available_presigs");
        let rows: Vec<(String, String)> = {
            let conn = self.db.reader();
            let mut stmt = conn
                .prepare(
                    "SELECT signer_set, id FROM presigs WHERE key_id = ?1 AND state = 'available'
                     ORDER BY signer_set, rowid",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map([key_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        let mut out: Vec<PresigsBySet> = Vec::new();
        for (set, id) in rows {
            let parties = set
                .split(',')
                .map(|p| p.parse::<u16>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| self.corrupt("presignature", &id, format!("signer set `{set}`")))?;
            match out.last_mut() {
                Some((s, ids)) if *s == parties => ids.push(id),
                _ => out.push((parties, vec![id])),
            }
        }
        Ok(out)
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
}
