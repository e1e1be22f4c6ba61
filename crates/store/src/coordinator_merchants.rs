//! Merchants (the API's tenants) and their API keys.
//!
//! A merchant owns the keys it creates, the signing requests and payouts its
//! API keys make; another merchant's key never sees them. Ownership is kept
//! without trusting the caller twice:
//! - a key is the merchant's when its creation request (`key_requests`) was
//!   the merchant's;
//! - a signing request is the merchant's when its initiator is one of the
//!   merchant's API keys (`merchant_keys.client`): the store fills
//!   `requests.merchant_id` on insert from the initiator, so a request rebuilt
//!   from the audit log after a crash gets the same owner;
//! - a payout is its request's.
//!
//! API keys are `kfm_` followed by 64 hex digits (`kfm_test_` for a
//! sandbox twin's, see [`crate::coordinator_sandbox`]), shown once; only their
//! SHA-256 is stored. Each has scopes, an optional expiry (the overlap
//! window of a rotation) and a revocation time. A merchant may require
//! signed write requests (HMAC-SHA256 with a secret the server keeps, or
//! Ed25519 with a public key), whose nonces are kept here until they can no
//! longer be replayed.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::coordinator::CoordinatorStore;
use crate::coordinator_sandbox::SANDBOX_KEY_PREFIX;
use crate::error::StoreError;
use crate::validate;

/// Prefix of merchant API keys.
pub const MERCHANT_KEY_PREFIX: &str = "kfm_";
/// Prefix of HMAC request-signing secrets.
pub const SIGNING_SECRET_PREFIX: &str = "kfs_";
const SECRET_BYTES: usize = 32;
const MERCHANT_KEY_LEN: usize = MERCHANT_KEY_PREFIX.len() + 2 * SECRET_BYTES;
const SANDBOX_KEY_LEN: usize = SANDBOX_KEY_PREFIX.len() + 2 * SECRET_BYTES;
/// Longest live merchant id (a sandbox twin's adds `.sandbox`).
pub const MAX_MERCHANT_ID_LEN: usize = 48;
/// Most API keys (active or not) a merchant may have.
pub const MAX_KEYS_PER_MERCHANT: i64 = 100;

/// Migration 5 -> 6: merchants, their API keys and request nonces; owners of
/// key creation requests, signing requests and payouts.
pub(crate) const MIGRATION_6: &str = "CREATE TABLE merchants (
        merchant_id  TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        rate_burst   INTEGER NOT NULL,
        rate_per_sec INTEGER NOT NULL,
        signing      TEXT NOT NULL CHECK (signing IN ('none', 'hmac', 'ed25519')),
        signing_key  BLOB,
        created_at   INTEGER NOT NULL,
        disabled_at  INTEGER
    ) STRICT;
    CREATE TABLE merchant_keys (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id      TEXT NOT NULL UNIQUE,
        merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
        client      TEXT NOT NULL UNIQUE,
        label       TEXT NOT NULL,
        scopes      TEXT NOT NULL,
        token_hash  BLOB NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        revoked_at  INTEGER
    ) STRICT;
    CREATE INDEX merchant_keys_by_merchant ON merchant_keys (merchant_id, id);
    CREATE TABLE request_nonces (
        merchant_id TEXT NOT NULL,
        nonce       TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (merchant_id, nonce)
    ) STRICT;
    CREATE INDEX request_nonces_expiry ON request_nonces (expires_at);
    ALTER TABLE key_requests ADD COLUMN merchant_id TEXT;
    ALTER TABLE requests ADD COLUMN merchant_id TEXT;
    CREATE INDEX requests_by_merchant ON requests (merchant_id, seq) WHERE merchant_id IS NOT NULL;
    ALTER TABLE payouts ADD COLUMN merchant_id TEXT;
    CREATE INDEX payouts_by_merchant ON payouts (merchant_id, seq) WHERE merchant_id IS NOT NULL;";

/// The scopes a merchant API key may hold.
pub const SCOPES: &[&str] = &[
    "wallets:read",
    "wallets:write",
    "signatures:read",
    "signatures:write",
    "payouts:read",
    "payouts:write",
    "orders:read",
    "orders:write",
    "webhooks:manage",
];

/// How a merchant signs its write requests.
#[derive(Clone, PartialEq, Eq)]
pub enum RequestSigning {
    /// Bearer key alone.
    None,
    /// HMAC-SHA256 with this secret (the server must keep it to verify).
    Hmac(Zeroizing<Vec<u8>>),
    /// Ed25519 with this public key.
    Ed25519([u8; 32]),
}

impl std::fmt::Debug for RequestSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl RequestSigning {
    /// `none`, `hmac` or `ed25519`.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestSigning::None => "none",
            RequestSigning::Hmac(_) => "hmac",
            RequestSigning::Ed25519(_) => "ed25519",
        }
    }
}

/// A merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// Its id (`m_...` or chosen at creation).
    pub merchant_id: String,
    /// Display name.
    pub name: String,
    /// Token-bucket burst of each of its API keys (0: unlimited).
    pub rate_burst: u32,
    /// Token-bucket refill per second of each key (0: unlimited).
    pub rate_per_sec: u32,
    /// How its write requests must be signed.
    pub signing: RequestSigning,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Disabled (Unix seconds): its keys stop working.
    pub disabled_at: Option<i64>,
    /// The key its payment orders' addresses derive from.
    pub collection_key_id: Option<String>,
}

/// A new merchant.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    /// Its id.
    pub merchant_id: String,
    /// Display name.
    pub name: String,
    /// Token-bucket burst per key.
    pub rate_burst: u32,
    /// Refill per second per key.
    pub rate_per_sec: u32,
}

/// A merchant API key's metadata (never the key or its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantKeyMeta {
    /// Public id (`mk_` and 16 hex digits).
    pub key_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// The API client name its requests are recorded under
    /// (`<merchant>#<key id>`).
    pub client: String,
    /// Free label.
    pub label: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Issued (Unix seconds).
    pub created_at: i64,
    /// Stops working at (rotation overlap), if set.
    pub expires_at: Option<i64>,
    /// Revoked at, if revoked.
    pub revoked_at: Option<i64>,
}

impl Merchant {
    /// The live merchant whose sandbox twin this is (`None`: a live
    /// merchant).
    pub fn sandbox_of(&self) -> Option<&str> {
        crate::coordinator_sandbox::live_id_of(&self.merchant_id)
    }
}

impl MerchantKeyMeta {
    /// Whether it is a sandbox key (`kfm_test_...`, of a sandbox twin).
    pub fn is_sandbox(&self) -> bool {
        crate::coordinator_sandbox::is_sandbox_merchant(&self.merchant_id)
    }
}

/// A merchant API key that verified: the key, and its merchant's settings.
#[derive(Debug, Clone)]
pub struct MerchantKeyAuth {
    /// Its row id (rate-limit bucket).
    pub id: i64,
    /// The key.
    pub key: MerchantKeyMeta,
    /// Its merchant.
    pub merchant: Merchant,
}

/// A key issued: its metadata and the secret, shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// Metadata.
    pub meta: MerchantKeyMeta,
    /// The `kfm_...` key.
    pub secret: Zeroizing<String>,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn random_hex(bytes: usize) -> Result<Zeroizing<String>, StoreError> {
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, raw.as_mut_slice()).map_err(|e| {
        crate::SealError::Rng {
            reason: e.to_string(),
        }
    })?;
    Ok(Zeroizing::new(hex::encode(raw.as_slice())))
}

/// Checks a merchant id: a live merchant's (1..=48 of `[a-z0-9_-]`,
/// starting with a letter) or a sandbox twin's (`<live id>.sandbox`, see
/// [`crate::coordinator_sandbox`]).
pub fn check_merchant_id(id: &str) -> Result<(), StoreError> {
    if crate::coordinator_sandbox::is_sandbox_merchant(id) {
        return Ok(());
    }
    check_live_merchant_id(id)
}

/// Checks a live merchant's id: 1..=48 of `[a-z0-9_-]`, starting with a
/// letter (so never the sandbox form `<id>.sandbox`).
pub fn check_live_merchant_id(id: &str) -> Result<(), StoreError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_MERCHANT_ID_LEN
        && id.as_bytes()[0].is_ascii_lowercase()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidInput {
            field: "merchant_id",
            reason: format!(
                "must be 1 to {MAX_MERCHANT_ID_LEN} of a-z, 0-9, _ and -, starting with a letter"
            ),
        })
    }
}

fn check_scopes(scopes: &[String]) -> Result<(), StoreError> {
    if scopes.is_empty() {
        return Err(StoreError::InvalidInput {
            field: "scopes",
            reason: format!("give at least one of {}", SCOPES.join(", ")),
        });
    }
    for s in scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(StoreError::InvalidInput {
                field: "scopes",
                reason: format!(
                    "unknown scope {:?}: the scopes are {}",
                    s.chars().take(40).collect::<String>(),
                    SCOPES.join(", ")
                ),
            });
        }
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), StoreError> {
    if label.len() > 64 || label.chars().any(char::is_control) {
        return Err(StoreError::InvalidInput {
            field: "label",
            reason: "at most 64 bytes, no control characters".into(),
        });
    }
    Ok(())
}

const MERCHANT_COLUMNS: &str =
    "merchant_id, name, rate_burst, rate_per_sec, signing, signing_key, \
     created_at, disabled_at, collection_key_id";

const KEY_COLUMNS: &str =
    "key_id, merchant_id, client, label, scopes, created_at, expires_at, revoked_at";

fn key_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<MerchantKeyMeta> {
    let scopes: String = r.get(at + 4)?;
    Ok(MerchantKeyMeta {
        key_id: r.get(at)?,
        merchant_id: r.get(at + 1)?,
        client: r.get(at + 2)?,
        label: r.get(at + 3)?,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        created_at: r.get(at + 5)?,
        expires_at: r.get(at + 6)?,
        revoked_at: r.get(at + 7)?,
    })
}

impl CoordinatorStore {
    fn merchant_checked(&self, m: (Merchant, Option<String>)) -> Result<Merchant, StoreError> {
        match m.1 {
            None => Ok(m.0),
            Some(kind) => Err(self.db.corrupt(
                "merchant",
                &m.0.merchant_id,
                format!("request signing {kind:?} without a valid key"),
            )),
        }
    }

    /// Creates a merchant ([`StoreError::Conflict`] if the id exists).
    pub fn create_merchant(&self, m: &NewMerchant, now: i64) -> Result<Merchant, StoreError> {
        // A sandbox twin is made with its first sandbox key, never here.
        check_live_merchant_id(&m.merchant_id)?;
        check_label(&m.name)?;
        self.db.durably("create_merchant", |tx| {
            let n = tx
                .execute(
                    "INSERT INTO merchants (merchant_id, name, rate_burst, rate_per_sec, signing,
                     created_at) VALUES (?1, ?2, ?3, ?4, 'none', ?5) ON CONFLICT DO NOTHING",
                    params![m.merchant_id, m.name, m.rate_burst, m.rate_per_sec, now],
                )
                .map_err(self.db.err("create_merchant"))?;
            if n == 0 {
                return Err(StoreError::Conflict {
                    what: "merchant",
                    id: m.merchant_id.clone(),
                });
            }
            Ok(())
        })?;
        tracing::info!(merchant = %m.merchant_id, "created merchant");
        Ok(Merchant {
            merchant_id: m.merchant_id.clone(),
            name: m.name.clone(),
            rate_burst: m.rate_burst,
            rate_per_sec: m.rate_per_sec,
            signing: RequestSigning::None,
            created_at: now,
            disabled_at: None,
            collection_key_id: None,
        })
    }

    /// One merchant.
    pub fn get_merchant(&self, merchant_id: &str) -> Result<Option<Merchant>, StoreError> {
        check_merchant_id(merchant_id)?;
        let row = self
            .db
            .reader()
            .query_row(
                &format!("SELECT {MERCHANT_COLUMNS} FROM merchants WHERE merchant_id = ?1"),
                [merchant_id],
                |r| merchant_row_at(r, 0),
            )
            .optional()
            .map_err(self.db.err("get_merchant"))?;
        row.map(|m| self.merchant_checked(m)).transpose()
    }

    /// All merchants, by id.
    pub fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        let err = self.db.err("list_merchants");
        let rows = {
            let conn = self.db.reader();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {MERCHANT_COLUMNS} FROM merchants ORDER BY merchant_id"
                ))
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |r| merchant_row_at(r, 0))
                .map_err(&err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?;
            rows
        };
        rows.into_iter().map(|m| self.merchant_checked(m)).collect()
    }

    fn update_merchant(
        &self,
        op: &'static str,
        merchant_id: &str,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        check_merchant_id(merchant_id)?;
        let n = self
            .db
            .durably(op, |tx| tx.execute(sql, args).map_err(self.db.err(op)))?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "merchant",
                id: merchant_id.to_string(),
            });
        }
        Ok(())
    }

    /// Disables a merchant: every key of it stops working at once; its
    /// objects stay for the operator.
    pub fn disable_merchant(&self, merchant_id: &str, now: i64) -> Result<(), StoreError> {
        self.update_merchant(
            "disable_merchant",
            merchant_id,
            "UPDATE merchants SET disabled_at = COALESCE(disabled_at, ?2) WHERE merchant_id = ?1",
            &[&merchant_id, &now],
        )?;
        tracing::info!(merchant = %merchant_id, "disabled merchant");
        Ok(())
    }

    /// Enables a disabled merchant again.
    pub fn enable_merchant(&self, merchant_id: &str) -> Result<(), StoreError> {
        self.update_merchant(
            "enable_merchant",
            merchant_id,
            "UPDATE merchants SET disabled_at = NULL WHERE merchant_id = ?1",
            &[&merchant_id],
        )
    }

    /// Sets a merchant's rate limit per API key (0 for either: unlimited).
    pub fn set_merchant_rate(
        &self,
        merchant_id: &str,
        burst: u32,
        per_sec: u32,
    ) -> Result<(), StoreError> {
        self.update_merchant(
            "set_merchant_rate",
            merchant_id,
            "UPDATE merchants SET rate_burst = ?2, rate_per_sec = ?3 WHERE merchant_id = ?1",
            &[&merchant_id, &burst, &per_sec],
        )
    }

    /// Requires signed write requests: `None` turns it off; an Ed25519
    /// public key; or HMAC, for which a new secret is made and returned
    /// (shown once; it replaces any earlier one at once).
    pub fn set_request_signing(
        &self,
        merchant_id: &str,
        kind: &str,
        ed25519_public_key: Option<[u8; 32]>,
    ) -> Result<Option<Zeroizing<String>>, StoreError> {
        let (key, secret): (Option<Vec<u8>>, Option<Zeroizing<String>>) =
            match (kind, ed25519_public_key) {
                ("none", None) => (None, None),
                ("ed25519", Some(pk)) => (Some(pk.to_vec()), None),
                ("hmac", None) => {
                    let mut s = Zeroizing::new(String::from(SIGNING_SECRET_PREFIX));
                    s.push_str(&random_hex(SECRET_BYTES)?);
                    (Some(s.as_bytes().to_vec()), Some(s))
                }
                _ => {
                    return Err(StoreError::InvalidInput {
                        field: "signing",
                        reason: "one of none, hmac, or ed25519 with its public key".into(),
                    })
                }
            };
        let key = key.map(Zeroizing::new);
        self.update_merchant(
            "set_request_signing",
            merchant_id,
            "UPDATE merchants SET signing = ?2, signing_key = ?3 WHERE merchant_id = ?1",
            &[&merchant_id, &kind, &key.as_deref()],
        )?;
        tracing::info!(merchant = %merchant_id, signing = kind, "set request signing");
        Ok(secret)
    }

    /// Issues an API key for a merchant with `scopes`; the `kfm_...` secret
    /// (`kfm_test_...` for a sandbox twin) is returned once, only its hash
    /// is stored. `expires_at` bounds it.
    pub fn issue_merchant_key(
        &self,
        merchant_id: &str,
        label: &str,
        scopes: &[String],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<IssuedKey, StoreError> {
        check_merchant_id(merchant_id)?;
        check_label(label)?;
        check_scopes(scopes)?;
        let prefix = if crate::coordinator_sandbox::is_sandbox_merchant(merchant_id) {
            SANDBOX_KEY_PREFIX
        } else {
            MERCHANT_KEY_PREFIX
        };
        let mut secret = Zeroizing::new(String::with_capacity(SANDBOX_KEY_LEN));
        secret.push_str(prefix);
        secret.push_str(&random_hex(SECRET_BYTES)?);
        let key_id = format!("mk_{}", random_hex(8)?.as_str());
        let client = format!("{merchant_id}#{key_id}");
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let hashed = hash(&secret);
        self.db.durably("issue_merchant_key", |tx| {
            let err = self.db.err("issue_merchant_key");
            let (exists, disabled): (i64, Option<i64>) = tx
                .query_row(
                    "SELECT COUNT(*), MAX(disabled_at) FROM merchants WHERE merchant_id = ?1",
                    [merchant_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&err)?;
            if exists == 0 {
                return Err(StoreError::NotFound {
                    what: "merchant",
                    id: merchant_id.to_string(),
                });
            }
            if disabled.is_some() {
                return Err(StoreError::InvalidInput {
                    field: "merchant_id",
                    reason: format!("merchant {merchant_id} is disabled: enable it first"),
                });
            }
            let keys: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM merchant_keys WHERE merchant_id = ?1",
                    [merchant_id],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if keys >= MAX_KEYS_PER_MERCHANT {
                return Err(StoreError::InvalidInput {
                    field: "merchant_id",
                    reason: format!("merchant {merchant_id} has {MAX_KEYS_PER_MERCHANT} API keys, the most allowed"),
                });
            }
            tx.execute(
                "INSERT INTO merchant_keys (key_id, merchant_id, client, label, scopes, token_hash,
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key_id,
                    merchant_id,
                    client,
                    label,
                    scopes.join(" "),
                    hashed.as_slice(),
                    now,
                    expires_at
                ],
            )
            .map_err(&err)?;
            Ok(())
        })?;
        tracing::info!(merchant = %merchant_id, key = %key_id, "issued merchant API key");
        Ok(IssuedKey {
            meta: MerchantKeyMeta {
                key_id,
                merchant_id: merchant_id.to_string(),
                client,
                label: label.to_string(),
                scopes,
                created_at: now,
                expires_at,
                revoked_at: None,
            },
            secret,
        })
    }

    /// One API key of a merchant.
    pub fn merchant_key(
        &self,
        merchant_id: &str,
        key_id: &str,
    ) -> Result<Option<MerchantKeyMeta>, StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("key_id", key_id)?;
        self.db
            .reader()
            .query_row(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM merchant_keys WHERE merchant_id = ?1 AND key_id = ?2"
                ),
                [merchant_id, key_id],
                |r| key_row(r, 0),
            )
            .optional()
            .map_err(self.db.err("merchant_key"))
    }

    /// Rotates an API key: a new key with the same label and scopes, and
    /// the old one kept working until `now + overlap_secs` (0: revoked at
    /// once).
    pub fn rotate_merchant_key(
        &self,
        merchant_id: &str,
        key_id: &str,
        now: i64,
        overlap_secs: i64,
    ) -> Result<IssuedKey, StoreError> {
        let old = self
            .merchant_key(merchant_id, key_id)?
            .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now))
            .ok_or_else(|| StoreError::NotFound {
                what: "active merchant API key",
                id: key_id.to_string(),
            })?;
        let until = now.saturating_add(overlap_secs.max(0));
        let new = self.issue_merchant_key(merchant_id, &old.label, &old.scopes, now, None)?;
        self.update_merchant(
            "rotate_merchant_key",
            merchant_id,
            "UPDATE merchant_keys SET expires_at = MIN(COALESCE(expires_at, ?3), ?3)
             WHERE merchant_id = ?1 AND key_id = ?2",
            &[&merchant_id, &key_id, &until],
        )?;
        tracing::info!(merchant = %merchant_id, old = %key_id, new = %new.meta.key_id, until, "rotated merchant API key");
        Ok(new)
    }

    /// Revokes an API key at once.
    pub fn revoke_merchant_key(
        &self,
        merchant_id: &str,
        key_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        validate::id("key_id", key_id)?;
        check_merchant_id(merchant_id)?;
        let n = self.db.durably("revoke_merchant_key", |tx| {
            tx.execute(
                "UPDATE merchant_keys SET revoked_at = ?3
                 WHERE merchant_id = ?1 AND key_id = ?2 AND revoked_at IS NULL",
                params![merchant_id, key_id, now],
            )
            .map_err(self.db.err("revoke_merchant_key"))
        })?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "active merchant API key",
                id: key_id.to_string(),
            });
        }
        tracing::info!(merchant = %merchant_id, key = %key_id, "revoked merchant API key");
        Ok(())
    }

    /// A merchant's API keys (metadata), oldest first.
    pub fn list_merchant_keys(
        &self,
        merchant_id: &str,
    ) -> Result<Vec<MerchantKeyMeta>, StoreError> {
        check_merchant_id(merchant_id)?;
        let err = self.db.err("list_merchant_keys");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM merchant_keys WHERE merchant_id = ?1 ORDER BY id"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map([merchant_id], |r| key_row(r, 0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Checks a merchant API key: `Some` if it is a well-formed, unrevoked,
    /// unexpired key of an enabled merchant (for a sandbox key: of an
    /// enabled sandbox twin whose live merchant is enabled too); `None`
    /// otherwise (malformed input never reaches the database).
    pub fn verify_merchant_key(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<Option<MerchantKeyAuth>, StoreError> {
        let sandbox = secret.starts_with(SANDBOX_KEY_PREFIX);
        let (prefix, len) = if sandbox {
            (SANDBOX_KEY_PREFIX, SANDBOX_KEY_LEN)
        } else {
            (MERCHANT_KEY_PREFIX, MERCHANT_KEY_LEN)
        };
        if secret.len() != len
            || !secret.starts_with(prefix)
            || !secret.as_bytes()[prefix.len()..]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Ok(None);
        }
        let hashed = hash(secret);
        let row = self
            .db
            .reader()
            .query_row(
                "SELECT k.id, k.key_id, k.merchant_id, k.client, k.label, k.scopes, k.created_at,
                        k.expires_at, k.revoked_at, m.merchant_id, m.name, m.rate_burst,
                        m.rate_per_sec, m.signing, m.signing_key, m.created_at, m.disabled_at,
                        m.collection_key_id
                 FROM merchant_keys k JOIN merchants m ON m.merchant_id = k.merchant_id
                 LEFT JOIN merchant_sandboxes s ON s.sandbox_id = m.merchant_id
                 LEFT JOIN merchants l ON l.merchant_id = s.merchant_id
                 WHERE k.token_hash = ?1 AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > ?2)
                   AND m.disabled_at IS NULL AND l.disabled_at IS NULL",
                params![hashed.as_slice(), now],
                |r| {
                    let key = key_row(r, 1)?;
                    let merchant = merchant_row_at(r, 9)?;
                    Ok((r.get::<_, i64>(0)?, key, merchant))
                },
            )
            .optional()
            .map_err(self.db.err("verify_merchant_key"))?;
        match row {
            None => Ok(None),
            // The hash covers the prefix, so only a store edited behind
            // Keyfold's back could pair a key's form with the other kind of
            // merchant: refused.
            Some((_, key, _)) if key.is_sandbox() != sandbox => {
                tracing::error!(merchant = %key.merchant_id, key = %key.key_id, "an API key's form does not match its merchant's kind (sandbox or live): refused");
                Ok(None)
            }
            Some((id, key, merchant)) => Ok(Some(MerchantKeyAuth {
                id,
                key,
                merchant: self.merchant_checked(merchant)?,
            })),
        }
    }

    /// Records a signed request's nonce; `false` if the merchant used it
    /// before (a replay). Nonces are kept until `expires_at`, past which the
    /// request's timestamp would be refused anyway, then purged.
    pub fn use_request_nonce(
        &self,
        merchant_id: &str,
        nonce: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        check_merchant_id(merchant_id)?;
        validate::client_id("nonce", nonce)?;
        let err = self.db.err("use_request_nonce");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute("DELETE FROM request_nonces WHERE expires_at <= ?1", [now])
            .map_err(&err)?;
        let n = tx
            .execute(
                "INSERT INTO request_nonces (merchant_id, nonce, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![merchant_id, nonce, expires_at],
            )
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(n == 1)
    }

    /// The merchant that owns key `key_id` (`None`: the operator's).
    pub fn key_owner(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        validate::id("key_id", key_id)?;
        let owner: Option<Option<String>> = self
            .db
            .reader()
            .query_row(
                "SELECT merchant_id FROM key_requests WHERE key_id = ?1 AND state = 'done'
                 AND merchant_id IS NOT NULL LIMIT 1",
                [key_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("key_owner"))?;
        Ok(owner.flatten())
    }

    /// The merchant that owns payout `payout_id` (`None`: the operator's).
    pub fn payout_owner(&self, payout_id: &str) -> Result<Option<String>, StoreError> {
        validate::client_id("payout_id", payout_id)?;
        let owner: Option<Option<String>> = self
            .db
            .reader()
            .query_row(
                "SELECT merchant_id FROM payouts WHERE payout_id = ?1",
                [payout_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("payout_owner"))?;
        Ok(owner.flatten())
    }
}

fn merchant_row_at(
    r: &rusqlite::Row<'_>,
    at: usize,
) -> rusqlite::Result<(Merchant, Option<String>)> {
    let kind: String = r.get(at + 4)?;
    let key: Option<Vec<u8>> = r.get(at + 5)?;
    let (signing, bad) = match (kind.as_str(), key) {
        ("none", _) => (RequestSigning::None, None),
        ("hmac", Some(k)) if !k.is_empty() => (RequestSigning::Hmac(Zeroizing::new(k)), None),
        ("ed25519", Some(k)) => match <[u8; 32]>::try_from(k.as_slice()) {
            Ok(pk) => (RequestSigning::Ed25519(pk), None),
            Err(_) => (RequestSigning::None, Some(kind)),
        },
        _ => (RequestSigning::None, Some(kind)),
    };
    Ok((
        Merchant {
            merchant_id: r.get(at)?,
            name: r.get(at + 1)?,
            rate_burst: u32::try_from(r.get::<_, i64>(at + 2)?).unwrap_or(0),
            rate_per_sec: u32::try_from(r.get::<_, i64>(at + 3)?).unwrap_or(0),
            signing,
            created_at: r.get(at + 6)?,
            disabled_at: r.get(at + 7)?,
            collection_key_id: r.get(at + 8)?,
        },
        bad,
    ))
}
