//! API tokens of the coordinator's clients: issued once (only their SHA-256
//! is stored), verified on every API call, revoked by name, and listed
//! without the secret. Issues and revocations are logged in the audit log
//! by the coordinator; this table remembers which ones are.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::coordinator::CoordinatorStore;
use crate::db::now;
use crate::error::StoreError;
use crate::validate;

/// Prefix of API tokens.
pub const TOKEN_PREFIX: &str = "kf_";
const TOKEN_BYTES: usize = 32;
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 2 * TOKEN_BYTES;

/// An API token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Token row id.
    pub id: i64,
    /// The token's name (who or what uses it).
    pub name: String,
    /// Whether the coordinator's audit log holds its issue.
    pub issue_logged: bool,
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

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl CoordinatorStore {
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

        self.db.durably("issue_token", |tx| {
            let err = self.db.err("issue_token");
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
            Ok(())
        })?;
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
            .reader()
            .query_row(
                "SELECT id, name, issue_logged FROM tokens WHERE token_hash = ?1 AND revoked_at IS NULL",
                [hash.as_slice()],
                |r| {
                    Ok(TokenInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        issue_logged: r.get::<_, i64>(2)? != 0,
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
        let n = self.db.durably("revoke_token", |tx| {
            tx.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now()],
            )
            .map_err(self.db.err("revoke_token"))
        })?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "active token",
                id: name.to_string(),
            });
        }
        tracing::info!(name, "revoked API token");
        Ok(())
    }

    /// Token issues and revocations the audit log does not hold yet: (token
    /// id, name, revoked).
    pub fn unlogged_token_events(&self) -> Result<Vec<(i64, String, bool)>, StoreError> {
        let err = self.db.err("unlogged_token_events");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, 0 FROM tokens WHERE issue_logged = 0
                 UNION ALL
                 SELECT id, name, 1 FROM tokens WHERE revoked_at IS NOT NULL AND revoke_logged = 0
                 ORDER BY 1, 3",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? == 1)))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// All tokens, active and revoked (metadata only), by id.
    pub fn list_tokens(&self) -> Result<Vec<TokenMeta>, StoreError> {
        let err = self.db.err("list_tokens");
        let conn = self.db.reader();
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
