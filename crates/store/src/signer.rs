//! [`SignerStore`]: a signer node's embedded database (one SQLite file in the
//! node's data directory).
//!
//! It keeps key shares, aux info per signer group, the presignature pool,
//! pregenerated safe primes and the ids of sessions already run. Every secret
//! is sealed with the [`Sealer`] given at open, bound to this node's id, the
//! object type, the record id and its version (see [`crate::Aad`]).
//!
//! # Presignatures
//!
//! A presignature must be used at most once. [`SignerStore::take_presignature`]
//! marks it used (and deletes its sealed blob) in one `IMMEDIATE` transaction
//! that is committed, and therefore on disk (`synchronous=FULL`), **before**
//! the plaintext is unsealed and returned. The caller must not compute or send
//! a partial signature from a presignature unless `take_presignature`
//! returned `Ok`; any error (including [`StoreError::Busy`]) means "do not
//! sign with it".
//!
//! Restoring a signer database from a backup brings back presignatures that
//! may already have been used: after any restore, call
//! [`SignerStore::discard_all_presignatures`] before signing.
//!
//! # Sealing ids
//!
//! | object | [`crate::Aad`] id | version |
//! |---|---|---|
//! | key share ([`ObjectType::EcdsaShare`] / [`ObjectType::EddsaShare`]) | key id | 1 |
//! | aux info | group id | increases by one on each `put_aux` |
//! | presignature | `key_id\|signer_set\|presignature_id` (signer set as `0,1,2`) | 1 |
//! | safe primes | random 16-byte hex id | 1 |
//!
//! All methods block (SQLite, and the sealer); from async code call them via
//! `spawn_blocking`. A `SignerStore` is `Send + Sync`: share it in an `Arc`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use zeroize::Zeroizing;

use crate::db::{count, now, Db, Durability, Schema};
use crate::error::StoreError;
use crate::seal::{Aad, ObjectType, Sealer};
use crate::validate::{self, MAX_LIST_LIMIT, MAX_PUBLIC_KEY_LEN, MAX_SECRET_LEN};
use crate::Curve;

/// Schema version of signer databases written by this build.
pub const SIGNER_SCHEMA_VERSION: i64 = 3;

const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE shares (
        key_id     TEXT PRIMARY KEY,
        curve      TEXT NOT NULL,
        public_key BLOB NOT NULL,
        version    INTEGER NOT NULL,
        sealed     BLOB NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE aux_info (
        group_id   TEXT PRIMARY KEY,
        version    INTEGER NOT NULL,
        sealed     BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE presignatures (
        id         TEXT PRIMARY KEY,
        key_id     TEXT NOT NULL,
        signer_set TEXT NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('ready', 'used')),
        sealed     BLOB,
        created_at INTEGER NOT NULL,
        used_at    INTEGER,
        CHECK ((state = 'ready') = (sealed IS NOT NULL))
    ) STRICT;
    CREATE INDEX presignatures_pool ON presignatures (key_id, signer_set, state);
    CREATE TABLE primes (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        sealed     BLOB NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE sessions (
        session_id BLOB PRIMARY KEY,
        seen_at    INTEGER NOT NULL
    ) STRICT;",
    // 1 -> 2: the node's own policy state (see `signer_policy`)
    "CREATE TABLE policy_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        version    INTEGER NOT NULL,
        document   TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE seen_requests (
        request_id   TEXT PRIMARY KEY,
        request_hash BLOB NOT NULL,
        first_seen   INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE contributions (
        request_id   TEXT PRIMARY KEY,
        request_hash BLOB NOT NULL,
        entry_json   TEXT NOT NULL,
        signed_at    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE approval_nonces (
        nonce      BLOB PRIMARY KEY,
        request_id TEXT NOT NULL
    ) STRICT;",
    // 2 -> 3: freezes the node enforces (see `signer_freezes`)
    crate::signer_freezes::MIGRATION_3,
];

const SHARE_VERSION: u32 = 1;
const PRESIG_VERSION: u32 = 1;
const PRIMES_VERSION: u32 = 1;

/// A key share read back from the store.
pub struct ShareRecord {
    /// The key id.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The group public key, as given to [`SignerStore::put_share`].
    pub public_key: Vec<u8>,
    /// The unsealed share (opaque bytes, zeroized on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ShareRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareRecord")
            .field("key_id", &self.key_id)
            .field("curve", &self.curve)
            .field("public_key", &hex::encode(&self.public_key))
            .field("plaintext", &"<redacted>")
            .finish()
    }
}

/// A key share's public metadata (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareMeta {
    /// The key id.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The group public key.
    pub public_key: Vec<u8>,
    /// When it was stored (Unix seconds).
    pub created_at: i64,
}

/// A presignature marked used in a transaction, to unseal after it commits.
pub(crate) struct Taken {
    id: String,
    key_id: String,
    set: String,
    sealed: Vec<u8>,
}

/// A signer node's database. See the [module docs](self).
pub struct SignerStore {
    pub(crate) db: Db,
    node_id: String,
    sealer: Arc<dyn Sealer>,
}

impl fmt::Debug for SignerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerStore")
            .field("path", &self.db.path)
            .field("node_id", &self.node_id)
            .field("sealer", &self.sealer.describe())
            .finish()
    }
}

fn presig_aad_id(key_id: &str, set: &str, id: &str) -> String {
    format!("{key_id}|{set}|{id}")
}

impl SignerStore {
    /// Opens (or creates) the signer database at `path` for node `node_id`,
    /// sealing secrets with `sealer`.
    ///
    /// The database is bound to `node_id` on creation; opening it as another
    /// node fails with [`StoreError::WrongDatabase`]. A database from a newer
    /// build fails with [`StoreError::SchemaTooNew`].
    pub fn open(
        path: impl AsRef<Path>,
        node_id: &str,
        sealer: Arc<dyn Sealer>,
    ) -> Result<SignerStore, StoreError> {
        validate::id("node_id", node_id)?;
        let path = path.as_ref();
        let db = Db::open(
            path,
            &Schema {
                kind: "signer",
                latest: SIGNER_SCHEMA_VERSION,
                migrations: MIGRATIONS,
                identity: Some(("node_id", node_id)),
                durability: Durability::Full,
            },
        )?;
        tracing::info!(path = %path.display(), node_id, sealer = %sealer.describe(), "opened signer store");
        Ok(SignerStore {
            db,
            node_id: node_id.to_string(),
            sealer,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    fn aad(&self, object: ObjectType, id: &str, version: u32) -> Aad {
        Aad::new(self.node_id.clone(), object, id, version)
    }

    // ---- key shares ----

    /// Stores the key share of `key_id`, sealed.
    ///
    /// Storing the same share again (same curve, public key and plaintext) is
    /// a no-op; a different one under an existing key id is refused with
    /// [`StoreError::Conflict`]: a share is never overwritten.
    pub fn put_share(
        &self,
        key_id: &str,
        curve: Curve,
        public_key: &[u8],
        plaintext: &[u8],
    ) -> Result<(), StoreError> {
        validate::id("key_id", key_id)?;
        validate::bytes("public_key", public_key, MAX_PUBLIC_KEY_LEN)?;
        validate::bytes("share", plaintext, MAX_SECRET_LEN)?;
        let aad = self.aad(curve.share_object(), key_id, SHARE_VERSION);
        let sealed = self.sealer.seal(&aad, plaintext)?;

        let err = self.db.err("put_share");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing: Option<(String, Vec<u8>, i64, Vec<u8>)> = tx
            .query_row(
                "SELECT curve, public_key, version, sealed FROM shares WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&err)?;
        if let Some((old_curve, old_pk, old_version, old_sealed)) = existing {
            let conflict = || StoreError::Conflict {
                what: "key share",
                id: key_id.to_string(),
            };
            if old_curve != curve.as_str() || old_pk != public_key {
                tracing::warn!(key_id, "refused to overwrite a key share");
                return Err(conflict());
            }
            let version = self.version("key share", key_id, old_version)?;
            let old = self.sealer.open(
                &self.aad(curve.share_object(), key_id, version),
                &old_sealed,
            )?;
            if !crate::seal::ct_eq(&old, plaintext) {
                tracing::warn!(key_id, "refused to overwrite a key share");
                return Err(conflict());
            }
            return Ok(());
        }
        tx.execute(
            "INSERT INTO shares (key_id, curve, public_key, version, sealed, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                key_id,
                curve.as_str(),
                public_key,
                SHARE_VERSION,
                sealed,
                now()
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::info!(key_id, %curve, "stored key share");
        Ok(())
    }

    fn version(&self, what: &'static str, id: &str, v: i64) -> Result<u32, StoreError> {
        u32::try_from(v).map_err(|_| StoreError::Corrupt {
            path: self.db.path.clone(),
            what,
            id: id.to_string(),
            reason: format!("version {v} out of range"),
        })
    }

    fn curve(&self, what: &'static str, id: &str, s: &str) -> Result<Curve, StoreError> {
        Curve::parse(s).ok_or_else(|| StoreError::Corrupt {
            path: self.db.path.clone(),
            what,
            id: id.to_string(),
            reason: format!("unknown curve `{s}`"),
        })
    }

    /// Reads and unseals the key share of `key_id`, `None` if there is none.
    pub fn get_share(&self, key_id: &str) -> Result<Option<ShareRecord>, StoreError> {
        validate::id("key_id", key_id)?;
        let row: Option<(String, Vec<u8>, i64, Vec<u8>)> = self
            .db
            .lock()
            .query_row(
                "SELECT curve, public_key, version, sealed FROM shares WHERE key_id = ?1",
                [key_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(self.db.err("get_share"))?;
        let Some((curve, public_key, version, sealed)) = row else {
            return Ok(None);
        };
        let curve = self.curve("key share", key_id, &curve)?;
        let version = self.version("key share", key_id, version)?;
        let plaintext = self
            .sealer
            .open(&self.aad(curve.share_object(), key_id, version), &sealed)?;
        Ok(Some(ShareRecord {
            key_id: key_id.to_string(),
            curve,
            public_key,
            plaintext,
        }))
    }

    /// Lists the key shares held (metadata only), ordered by key id.
    pub fn list_shares(&self) -> Result<Vec<ShareMeta>, StoreError> {
        let err = self.db.err("list_shares");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT key_id, curve, public_key, created_at FROM shares ORDER BY key_id")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (key_id, curve, public_key, created_at) = row.map_err(&err)?;
            let curve = self.curve("key share", &key_id, &curve)?;
            out.push(ShareMeta {
                key_id,
                curve,
                public_key,
                created_at,
            });
        }
        Ok(out)
    }

    // ---- aux info ----

    /// Stores (or replaces) the aux info of signer group `group_id`, sealed.
    ///
    /// Replacing bumps the record's version (part of the sealing [`Aad`]).
    /// Presignatures made with the old aux info are the caller's to discard
    /// ([`SignerStore::discard_presignatures`]).
    pub fn put_aux(&self, group_id: &str, plaintext: &[u8]) -> Result<(), StoreError> {
        validate::id("group_id", group_id)?;
        validate::bytes("aux info", plaintext, MAX_SECRET_LEN)?;
        let err = self.db.err("put_aux");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT version FROM aux_info WHERE group_id = ?1",
                [group_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        let version = match old {
            None => 1,
            Some(v) => self
                .version("aux info", group_id, v)?
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt {
                    path: self.db.path.clone(),
                    what: "aux info",
                    id: group_id.to_string(),
                    reason: "version overflow".into(),
                })?,
        };
        let sealed = self
            .sealer
            .seal(&self.aad(ObjectType::AuxInfo, group_id, version), plaintext)?;
        tx.execute(
            "INSERT INTO aux_info (group_id, version, sealed, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(group_id) DO UPDATE SET
                version = excluded.version, sealed = excluded.sealed, updated_at = excluded.updated_at",
            params![group_id, version, sealed, now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::info!(group_id, version, "stored aux info");
        Ok(())
    }

    /// Reads and unseals the aux info of `group_id`, `None` if there is none.
    pub fn get_aux(&self, group_id: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        validate::id("group_id", group_id)?;
        let row: Option<(i64, Vec<u8>)> = self
            .db
            .lock()
            .query_row(
                "SELECT version, sealed FROM aux_info WHERE group_id = ?1",
                [group_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db.err("get_aux"))?;
        let Some((version, sealed)) = row else {
            return Ok(None);
        };
        let version = self.version("aux info", group_id, version)?;
        Ok(Some(self.sealer.open(
            &self.aad(ObjectType::AuxInfo, group_id, version),
            &sealed,
        )?))
    }

    /// Lists the group ids that have aux info, in order (no secret is
    /// unsealed). Used by the backup export to carry every aux info.
    pub fn list_aux_groups(&self) -> Result<Vec<String>, StoreError> {
        let err = self.db.err("list_aux_groups");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT group_id FROM aux_info ORDER BY group_id")
            .map_err(&err)?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(&err)?;
        Ok(ids)
    }

    // ---- presignatures ----

    /// Adds a ready presignature for `key_id` and `signer_set` (party
    /// indices, any order, no duplicates), sealed.
    ///
    /// An id that exists already (ready or used) is refused with
    /// [`StoreError::Conflict`]: ids must be unique.
    pub fn add_presignature(
        &self,
        id: &str,
        key_id: &str,
        signer_set: &[u16],
        plaintext: &[u8],
    ) -> Result<(), StoreError> {
        validate::id("presignature id", id)?;
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        validate::bytes("presignature", plaintext, MAX_SECRET_LEN)?;
        let sealed = self.sealer.seal(
            &self.aad(
                ObjectType::Presignature,
                &presig_aad_id(key_id, &set, id),
                PRESIG_VERSION,
            ),
            plaintext,
        )?;
        let changed = self
            .db
            .lock()
            .execute(
                "INSERT INTO presignatures (id, key_id, signer_set, state, sealed, created_at)
                 VALUES (?1, ?2, ?3, 'ready', ?4, ?5) ON CONFLICT(id) DO NOTHING",
                params![id, key_id, set, sealed, now()],
            )
            .map_err(self.db.err("add_presignature"))?;
        if changed == 0 {
            return Err(StoreError::Conflict {
                what: "presignature",
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// Number of ready presignatures for `key_id` and `signer_set`.
    pub fn count_ready(&self, key_id: &str, signer_set: &[u16]) -> Result<usize, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let n: i64 = self
            .db
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM presignatures
                 WHERE key_id = ?1 AND signer_set = ?2 AND state = 'ready'",
                [key_id, &set],
                |r| r.get(0),
            )
            .map_err(self.db.err("count_ready"))?;
        Ok(count(n))
    }

    /// Ids of up to `limit` (at most 10,000) ready presignatures for `key_id`
    /// and `signer_set`, oldest first.
    pub fn ready_ids(
        &self,
        key_id: &str,
        signer_set: &[u16],
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let limit = i64::try_from(limit.min(MAX_LIST_LIMIT)).unwrap_or(0);
        let err = self.db.err("ready_ids");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id FROM presignatures
                 WHERE key_id = ?1 AND signer_set = ?2 AND state = 'ready'
                 ORDER BY rowid LIMIT ?3",
            )
            .map_err(&err)?;
        let ids = stmt
            .query_map(params![key_id, set, limit], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(&err)?;
        Ok(ids)
    }

    /// Takes presignature `id` for use: at most once, ever.
    ///
    /// In one `IMMEDIATE` transaction it checks the presignature is ready,
    /// marks it used (with `used_at`) and deletes its sealed blob; the
    /// transaction is committed, durably (`synchronous=FULL`), and only then
    /// the blob is unsealed and returned.
    ///
    /// **The caller must not compute or send a partial signature with this
    /// presignature unless this returned `Ok`.** A second take of the same id
    /// fails with [`StoreError::PresignatureUsed`], an unknown id with
    /// [`StoreError::NotFound`]. If unsealing fails after the commit, the
    /// presignature stays used (burnt) and the error is returned.
    pub fn take_presignature(&self, id: &str) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.take(id, None)
    }

    /// Like [`SignerStore::take_presignature`], but first checks, inside the
    /// same transaction, that the presignature belongs to `key_id` and
    /// `signer_set` (any order). On a mismatch it fails with
    /// [`StoreError::PresignatureMismatch`] and the presignature is **not**
    /// used up, so a wrong or malicious request cannot burn another key's
    /// pool. Prefer this one when the request names the key and signers.
    pub fn take_presignature_for(
        &self,
        id: &str,
        key_id: &str,
        signer_set: &[u16],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        self.take(id, Some((key_id, &set)))
    }

    fn take(
        &self,
        id: &str,
        expect: Option<(&str, &str)>,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        validate::id("presignature id", id)?;
        let err = self.db.err("take_presignature");
        let taken = {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let taken = self.take_in(&tx, id, expect)?;
            tx.commit().map_err(&err)?;
            taken
        };
        self.open_taken(taken)
    }

    /// Marks presignature `id` used inside `tx` (see [`SignerStore::take`]'s
    /// rules) and returns what is needed to unseal it after the commit.
    pub(crate) fn take_in(
        &self,
        tx: &rusqlite::Connection,
        id: &str,
        expect: Option<(&str, &str)>,
    ) -> Result<Taken, StoreError> {
        validate::id("presignature id", id)?;
        let err = self.db.err("take_presignature");
        let row: Option<(String, String, String, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT key_id, signer_set, state, sealed FROM presignatures WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(&err)?;
        let Some((key_id, set, state, sealed)) = row else {
            return Err(StoreError::NotFound {
                what: "presignature",
                id: id.to_string(),
            });
        };
        if let Some((want_key, want_set)) = expect {
            if key_id != want_key || set != want_set {
                tracing::warn!(
                    presignature = id,
                    key_id,
                    signer_set = set,
                    want_key,
                    want_set,
                    "refused a presignature of another key or signer set"
                );
                return Err(StoreError::PresignatureMismatch {
                    id: id.to_string(),
                    key_id,
                    signer_set: set,
                });
            }
        }
        if state != "ready" {
            tracing::warn!(presignature = id, "refused a second take of a presignature");
            return Err(StoreError::PresignatureUsed { id: id.to_string() });
        }
        let sealed = sealed.ok_or_else(|| StoreError::Corrupt {
            path: self.db.path.clone(),
            what: "presignature",
            id: id.to_string(),
            reason: "ready without a sealed blob".into(),
        })?;
        let changed = tx
            .execute(
                "UPDATE presignatures SET state = 'used', used_at = ?2, sealed = NULL
                 WHERE id = ?1 AND state = 'ready'",
                params![id, now()],
            )
            .map_err(&err)?;
        if changed != 1 {
            return Err(StoreError::PresignatureUsed { id: id.to_string() });
        }
        Ok(Taken {
            id: id.to_string(),
            key_id,
            set,
            sealed,
        })
    }

    /// Unseals a presignature taken by [`SignerStore::take_in`] (after its
    /// transaction committed: it stays used whatever happens here).
    pub(crate) fn open_taken(&self, t: Taken) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        tracing::debug!(
            presignature = t.id,
            key_id = t.key_id,
            signer_set = t.set,
            "presignature taken"
        );
        let aad = self.aad(
            ObjectType::Presignature,
            &presig_aad_id(&t.key_id, &t.set, &t.id),
            PRESIG_VERSION,
        );
        Ok(self.sealer.open(&aad, &t.sealed)?)
    }

    /// Marks every ready presignature of `key_id` and `signer_set` used
    /// (deleting their blobs), e.g. when the signer set or aux info changes.
    /// Returns how many were discarded.
    pub fn discard_presignatures(
        &self,
        key_id: &str,
        signer_set: &[u16],
    ) -> Result<usize, StoreError> {
        validate::id("key_id", key_id)?;
        let set = validate::signer_set(signer_set)?;
        let n = self
            .db
            .lock()
            .execute(
                "UPDATE presignatures SET state = 'used', used_at = ?3, sealed = NULL
                 WHERE key_id = ?1 AND signer_set = ?2 AND state = 'ready'",
                params![key_id, set, now()],
            )
            .map_err(self.db.err("discard_presignatures"))?;
        tracing::info!(
            key_id,
            signer_set = set,
            discarded = n,
            "discarded presignatures"
        );
        Ok(n)
    }

    /// Marks every ready presignature used. Call this after restoring the
    /// database from a backup, before signing anything. Returns how many were
    /// discarded.
    pub fn discard_all_presignatures(&self) -> Result<usize, StoreError> {
        let n = self
            .db
            .lock()
            .execute(
                "UPDATE presignatures SET state = 'used', used_at = ?1, sealed = NULL
                 WHERE state = 'ready'",
                [now()],
            )
            .map_err(self.db.err("discard_all_presignatures"))?;
        tracing::info!(discarded = n, "discarded all presignatures");
        Ok(n)
    }

    /// Deletes the records of presignatures used before `used_before` (Unix
    /// seconds) to bound the database's size. Afterwards a take of a purged id
    /// fails with [`StoreError::NotFound`] instead of
    /// [`StoreError::PresignatureUsed`]. Returns how many were deleted.
    pub fn purge_used_presignatures(&self, used_before: i64) -> Result<usize, StoreError> {
        self.db
            .lock()
            .execute(
                "DELETE FROM presignatures WHERE state = 'used' AND used_at < ?1",
                [used_before],
            )
            .map_err(self.db.err("purge_used_presignatures"))
    }

    // ---- safe primes ----

    /// Adds a pregenerated safe-primes blob to the pool, sealed.
    pub fn put_primes(&self, plaintext: &[u8]) -> Result<(), StoreError> {
        validate::bytes("primes", plaintext, MAX_SECRET_LEN)?;
        let mut raw = [0u8; 16];
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw).map_err(|e| {
            crate::SealError::Rng {
                reason: e.to_string(),
            }
        })?;
        let id = hex::encode(raw);
        let sealed = self.sealer.seal(
            &self.aad(ObjectType::SafePrimes, &id, PRIMES_VERSION),
            plaintext,
        )?;
        self.db
            .lock()
            .execute(
                "INSERT INTO primes (id, sealed, created_at) VALUES (?1, ?2, ?3)",
                params![id, sealed, now()],
            )
            .map_err(self.db.err("put_primes"))?;
        Ok(())
    }

    /// Takes the oldest safe-primes blob out of the pool: it is deleted in the
    /// same transaction that reads it (committed before unsealing), so it is
    /// handed out at most once. `None` if the pool is empty.
    pub fn take_primes(&self) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let err = self.db.err("take_primes");
        let (id, sealed) = {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let row: Option<(i64, String, Vec<u8>)> = tx
                .query_row(
                    "SELECT seq, id, sealed FROM primes ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(&err)?;
            let Some((seq, id, sealed)) = row else {
                return Ok(None);
            };
            tx.execute("DELETE FROM primes WHERE seq = ?1", [seq])
                .map_err(&err)?;
            tx.commit().map_err(&err)?;
            (id, sealed)
        };
        Ok(Some(self.sealer.open(
            &self.aad(ObjectType::SafePrimes, &id, PRIMES_VERSION),
            &sealed,
        )?))
    }

    /// Number of safe-primes blobs in the pool.
    pub fn count_primes(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .db
            .lock()
            .query_row("SELECT COUNT(*) FROM primes", [], |r| r.get(0))
            .map_err(self.db.err("count_primes"))?;
        Ok(count(n))
    }

    // ---- replay protection ----

    /// Records that session `session_id` ran on this node. A session id seen
    /// before fails with [`StoreError::SessionReplayed`]; the record is
    /// durable, so this holds across restarts.
    pub fn record_session(&self, session_id: &[u8; 32]) -> Result<(), StoreError> {
        let conn = self.db.lock();
        self.record_session_in(&conn, session_id)
    }

    /// Records a session id inside `tx` (see [`SignerStore::record_session`]).
    pub(crate) fn record_session_in(
        &self,
        tx: &rusqlite::Connection,
        session_id: &[u8; 32],
    ) -> Result<(), StoreError> {
        let changed = tx
            .execute(
                "INSERT INTO sessions (session_id, seen_at) VALUES (?1, ?2)
                 ON CONFLICT(session_id) DO NOTHING",
                params![session_id.as_slice(), now()],
            )
            .map_err(self.db.err("record_session"))?;
        if changed == 0 {
            let session_id = hex::encode(session_id);
            tracing::warn!(session_id, "refused a replayed session");
            return Err(StoreError::SessionReplayed { session_id });
        }
        Ok(())
    }
}
