//! A signer node's own policy state: the policy document it enforces, when it
//! first saw each request, what it contributed to, and which approval nonces
//! those contributions consumed.
//!
//! The signer keeps this itself, rather than trusting the coordinator for
//! it, so a compromised coordinator can neither backdate a request past a time
//! lock (the signer's own first-seen time bounds the claimed time), nor reset
//! velocity counters (the signer counts its own contributions), nor replay an
//! approval on another request (the signer remembers consumed nonces).
//!
//! Contents are policy data, not secrets: nothing here is sealed. Entries are
//! opaque JSON to the store; the signer node gives them meaning.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::db::now;
use crate::error::StoreError;
use crate::signer::SignerStore;
use crate::validate;

/// What [`SignerStore::first_seen`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstSeen {
    /// When this node first saw the request (Unix seconds, its own clock).
    pub at: i64,
    /// True if it was seen for the first time in this call.
    pub new: bool,
}

/// What a contribution consumes in its transaction.
#[derive(Debug, Clone, Copy)]
pub enum Consume<'a> {
    /// Nothing more.
    Nothing,
    /// A presignature, which must belong to `key_id` and `signer_set`.
    Presignature {
        /// Its id.
        id: &'a str,
        /// Its key.
        key_id: &'a str,
        /// Its signer set (keygen indices, any order).
        signer_set: &'a [u16],
    },
    /// A session id (refused if seen before).
    Session(&'a [u8; 32]),
}

impl SignerStore {
    /// The policy document this node enforces (version, TOML), if one was
    /// stored.
    pub fn policy_document(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> = self
            .db
            .lock()
            .query_row(
                "SELECT version, document FROM policy_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db.err("policy_document"))?;
        row.map(|(v, doc)| {
            u64::try_from(v)
                .map(|v| (v, doc))
                .map_err(|_| self.db.corrupt("policy", "current", format!("version {v}")))
        })
        .transpose()
    }

    /// Stores `document` as the policy this node enforces. The caller has
    /// verified it (genesis from the node's configuration, or an update
    /// signed by the admin quorum). A version not above the stored one is
    /// refused with [`StoreError::Conflict`] unless it is the same document.
    pub fn set_policy_document(&self, version: u64, document: &str) -> Result<(), StoreError> {
        let v = i64::try_from(version).map_err(|_| StoreError::InvalidInput {
            field: "policy version",
            reason: format!("{version} is too large"),
        })?;
        let err = self.db.err("set_policy_document");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current: Option<(i64, String)> = tx
            .query_row(
                "SELECT version, document FROM policy_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        if let Some((cv, cdoc)) = current {
            if cv == v && cdoc == document {
                return Ok(());
            }
            if cv >= v {
                return Err(StoreError::Conflict {
                    what: "policy version",
                    id: format!("{version} (this node has version {cv})"),
                });
            }
        }
        tx.execute(
            "INSERT INTO policy_state (id, version, document, updated_at) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET version = ?1, document = ?2, updated_at = ?3",
            params![v, document, now()],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// When this node first saw request `request_id` (whose canonical hash is
    /// `request_hash`); records `now` if it never did. The same id with
    /// another hash is a [`StoreError::Conflict`]: a coordinator cannot change
    /// a request after a signer has seen it.
    pub fn first_seen(
        &self,
        request_id: &str,
        request_hash: &[u8; 32],
        now: i64,
    ) -> Result<FirstSeen, StoreError> {
        validate::client_id("request_id", request_id)?;
        let err = self.db.err("first_seen");
        let mut conn = self.db.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let existing: Option<(Vec<u8>, i64)> = tx
            .query_row(
                "SELECT request_hash, first_seen FROM seen_requests WHERE request_id = ?1",
                [request_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        if let Some((hash, at)) = existing {
            if hash.as_slice() != request_hash.as_slice() {
                return Err(StoreError::Conflict {
                    what: "request",
                    id: request_id.to_string(),
                });
            }
            return Ok(FirstSeen { at, new: false });
        }
        tx.execute(
            "INSERT INTO seen_requests (request_id, request_hash, first_seen) VALUES (?1, ?2, ?3)",
            params![request_id, request_hash.as_slice(), now],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(FirstSeen { at: now, new: true })
    }

    /// When this node first saw request `request_id`, without recording
    /// anything: `None` if never. The same id with another hash is a
    /// [`StoreError::Conflict`].
    pub fn peek_first_seen(
        &self,
        request_id: &str,
        request_hash: &[u8; 32],
    ) -> Result<Option<i64>, StoreError> {
        validate::client_id("request_id", request_id)?;
        let row: Option<(Vec<u8>, i64)> = self
            .db
            .lock()
            .query_row(
                "SELECT request_hash, first_seen FROM seen_requests WHERE request_id = ?1",
                [request_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db.err("peek_first_seen"))?;
        match row {
            Some((hash, _)) if hash.as_slice() != request_hash.as_slice() => {
                Err(StoreError::Conflict {
                    what: "request",
                    id: request_id.to_string(),
                })
            }
            Some((_, at)) => Ok(Some(at)),
            None => Ok(None),
        }
    }

    /// Records, durably and before any signature share leaves the node, that
    /// this node contributes to request `request_id`: `entry_json` is its
    /// history entry (counted by velocity limits and vesting), `nonces` the
    /// approval nonces it consumes. Repeating it for the same request (a
    /// retry with another quorum or presignature) is a no-op. A nonce already
    /// consumed by another request, or the id with another hash, is a
    /// [`StoreError::Conflict`] and nothing is recorded.
    ///
    /// `first_seen` is recorded as the request's first-seen time if none was
    /// (one durable write for both).
    pub fn record_contribution(
        &self,
        request_id: &str,
        request_hash: &[u8; 32],
        entry_json: &str,
        nonces: &[[u8; 16]],
        first_seen: i64,
    ) -> Result<(), StoreError> {
        self.contribute(
            request_id,
            request_hash,
            entry_json,
            nonces,
            first_seen,
            Consume::Nothing,
        )
        .map(|_| ())
    }

    /// [`SignerStore::record_contribution`], and in the same transaction
    /// (one durable write) what the signature consumes: a presignature
    /// (marked used; returned unsealed after the commit) or a session id
    /// (replay protection). If the presignature or the session is refused,
    /// nothing is recorded.
    pub fn contribute(
        &self,
        request_id: &str,
        request_hash: &[u8; 32],
        entry_json: &str,
        nonces: &[[u8; 16]],
        first_seen: i64,
        consume: Consume<'_>,
    ) -> Result<Option<crate::Zeroizing<Vec<u8>>>, StoreError> {
        validate::client_id("request_id", request_id)?;
        validate::json("entry_json", entry_json)?;
        let expect = match &consume {
            Consume::Presignature {
                key_id, signer_set, ..
            } => {
                validate::id("key_id", key_id)?;
                Some((key_id.to_string(), validate::signer_set(signer_set)?))
            }
            _ => None,
        };
        let err = self.db.err("record_contribution");
        let taken = {
            let mut conn = self.db.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let taken = match &consume {
                Consume::Presignature { id, .. } => Some(self.take_in(
                    &tx,
                    id,
                    expect.as_ref().map(|(k, s)| (k.as_str(), s.as_str())),
                )?),
                Consume::Session(sid) => {
                    self.record_session_in(&tx, sid)?;
                    None
                }
                Consume::Nothing => None,
            };
            self.contribution_in(
                &tx,
                request_id,
                request_hash,
                entry_json,
                nonces,
                first_seen,
            )?;
            tx.commit().map_err(&err)?;
            taken
        };
        taken.map(|t| self.open_taken(t)).transpose()
    }

    fn contribution_in(
        &self,
        tx: &rusqlite::Connection,
        request_id: &str,
        request_hash: &[u8; 32],
        entry_json: &str,
        nonces: &[[u8; 16]],
        first_seen: i64,
    ) -> Result<(), StoreError> {
        let err = self.db.err("record_contribution");
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT request_hash FROM contributions WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        match existing {
            Some(h) if h.as_slice() == request_hash.as_slice() => return Ok(()),
            Some(_) => {
                return Err(StoreError::Conflict {
                    what: "request",
                    id: request_id.to_string(),
                })
            }
            None => {}
        }
        for nonce in nonces {
            let owner: Option<String> = tx
                .query_row(
                    "SELECT request_id FROM approval_nonces WHERE nonce = ?1",
                    [nonce.as_slice()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?;
            match owner {
                Some(o) if o != request_id => {
                    return Err(StoreError::Conflict {
                        what: "approval nonce",
                        id: format!("{} (consumed by request {o})", hex::encode(nonce)),
                    })
                }
                Some(_) => {}
                None => {
                    tx.execute(
                        "INSERT INTO approval_nonces (nonce, request_id) VALUES (?1, ?2)",
                        params![nonce.as_slice(), request_id],
                    )
                    .map_err(&err)?;
                }
            }
        }
        tx.execute(
            "INSERT INTO contributions (request_id, request_hash, entry_json, signed_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![request_id, request_hash.as_slice(), entry_json, now()],
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO seen_requests (request_id, request_hash, first_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT(request_id) DO NOTHING",
            params![request_id, request_hash.as_slice(), first_seen],
        )
        .map_err(&err)?;
        Ok(())
    }

    /// The history entry (JSON) this node recorded for `request_id`, if it
    /// contributed to it before (a retry must not count against itself).
    pub fn contribution_of(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        validate::client_id("request_id", request_id)?;
        self.db
            .reader()
            .query_row(
                "SELECT entry_json FROM contributions WHERE request_id = ?1",
                [request_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("contribution_of"))
    }

    /// The request an approval nonce was consumed by, if any.
    pub fn nonce_owner(&self, nonce: &[u8; 16]) -> Result<Option<String>, StoreError> {
        self.db
            .reader()
            .query_row(
                "SELECT request_id FROM approval_nonces WHERE nonce = ?1",
                [nonce.as_slice()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("nonce_owner"))
    }

    /// Every contribution's history entry (JSON), oldest first.
    pub fn contributions(&self) -> Result<Vec<String>, StoreError> {
        let err = self.db.err("contributions");
        let conn = self.db.lock();
        let mut stmt = conn
            .prepare("SELECT entry_json FROM contributions ORDER BY signed_at, request_id")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows)
    }

    /// Approval nonces consumed by requests other than `request_id`.
    pub fn nonces_used_by_others(&self, request_id: &str) -> Result<Vec<[u8; 16]>, StoreError> {
        self.db
            .nonces_except("nonces_used_by_others", "approval_nonces", request_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::seal::SoftwareSealer;
    use crate::{SignerStore, StoreError};

    fn store(dir: &tempfile::TempDir) -> SignerStore {
        let sealer = SoftwareSealer::from_key(&zeroize::Zeroizing::new([7u8; 32]), "test");
        SignerStore::open(dir.path().join("s.db"), "node-1", Arc::new(sealer)).unwrap()
    }

    #[test]
    fn policy_versions_only_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        assert_eq!(s.policy_document().unwrap(), None);
        s.set_policy_document(1, "a").unwrap();
        s.set_policy_document(1, "a").unwrap();
        assert!(matches!(
            s.set_policy_document(1, "b"),
            Err(StoreError::Conflict { .. })
        ));
        s.set_policy_document(2, "b").unwrap();
        assert!(s.set_policy_document(1, "a").is_err());
        assert_eq!(s.policy_document().unwrap(), Some((2, "b".into())));
    }

    #[test]
    fn first_seen_is_kept_and_bound_to_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let f = s.first_seen("r-1", &[1; 32], 100).unwrap();
        assert!(f.new && f.at == 100);
        let f = s.first_seen("r-1", &[1; 32], 500).unwrap();
        assert!(!f.new && f.at == 100);
        assert!(matches!(
            s.first_seen("r-1", &[2; 32], 500),
            Err(StoreError::Conflict { .. })
        ));
    }

    #[test]
    fn nonces_are_consumed_once_across_requests() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.record_contribution("r-1", &[1; 32], "{}", &[[9; 16]], 5)
            .unwrap();
        // The same request again (a retry) is fine.
        s.record_contribution("r-1", &[1; 32], "{}", &[[9; 16]], 5)
            .unwrap();
        assert_eq!(
            s.nonces_used_by_others("r-1").unwrap(),
            Vec::<[u8; 16]>::new()
        );
        assert_eq!(s.nonces_used_by_others("r-2").unwrap(), vec![[9; 16]]);
        let e = s
            .record_contribution("r-2", &[2; 32], "{}", &[[8; 16], [9; 16]], 5)
            .unwrap_err();
        assert!(e.to_string().contains("consumed by request r-1"), "{e}");
        // Nothing of the refused contribution was kept.
        assert_eq!(s.contributions().unwrap().len(), 1);
        assert_eq!(s.peek_first_seen("r-2", &[2; 32]).unwrap(), None);
        // The accepted one recorded its first-seen time with it.
        assert_eq!(s.peek_first_seen("r-1", &[1; 32]).unwrap(), Some(5));
        assert!(s.peek_first_seen("r-1", &[7; 32]).is_err());
        assert_eq!(
            s.nonces_used_by_others("r-1").unwrap(),
            Vec::<[u8; 16]>::new()
        );
        assert!(matches!(
            s.record_contribution("r-1", &[3; 32], "{}", &[], 5),
            Err(StoreError::Conflict { .. })
        ));
    }
}
