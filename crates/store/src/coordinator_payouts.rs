//! The coordinator's payouts and the nonce manager behind them.
//!
//! # Payouts
//!
//! One row per payout, keyed by the client's `payout_id`: the typed payout
//! (`payout_json`, opaque to the store), the fingerprint that makes retries
//! idempotent, the signing request that carries it, the account nonce it
//! uses, and what the chain saw (`chain_state`, the signed bytes and their
//! hash, the block and confirmations). The signing request's own state
//! lives in the `requests` table; a payout's state is both read together.
//!
//! # Nonces
//!
//! `nonces` holds, per (chain, address), the next nonce to hand out;
//! `released_nonces` the nonces of payouts that ended without a signature
//! (rejected, expired, cancelled, failed before signing), which are handed
//! out again first so no gap stays behind. [`CoordinatorStore::insert_payout`]
//! takes a nonce and records the payout in one immediate transaction, so two
//! payouts racing for one wallet get consecutive nonces, and a crash never
//! leaves a nonce taken without its payout.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// Migration 3 -> 4: payouts and nonces.
pub(crate) const MIGRATION_4: &str = "CREATE TABLE payouts (
        payout_id     TEXT PRIMARY KEY,
        seq           INTEGER NOT NULL UNIQUE,
        request_id    TEXT NOT NULL UNIQUE,
        fingerprint   BLOB NOT NULL,
        payout_json   TEXT NOT NULL,
        chain         TEXT NOT NULL,
        source        TEXT NOT NULL,
        nonce         INTEGER,
        chain_state   TEXT NOT NULL CHECK (chain_state IN
                        ('unsigned', 'signed', 'broadcast', 'confirming', 'completed', 'failed',
                         'released')),
        raw_tx        BLOB,
        tx_hash       TEXT,
        block_number  INTEGER,
        confirmations INTEGER NOT NULL DEFAULT 0,
        reason        TEXT,
        broadcast_at  INTEGER,
        broadcast_logged INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX payouts_by_account ON payouts (chain, source, nonce);
    CREATE TABLE nonces (
        chain      TEXT NOT NULL,
        address    TEXT NOT NULL,
        next_nonce INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (chain, address)
    ) STRICT;
    CREATE TABLE released_nonces (
        chain   TEXT NOT NULL,
        address TEXT NOT NULL,
        nonce   INTEGER NOT NULL,
        PRIMARY KEY (chain, address, nonce)
    ) STRICT;";

/// Most rows one page of [`CoordinatorStore::list_payouts`] returns.
pub const MAX_PAYOUT_PAGE: usize = 500;

/// A payout row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRow {
    /// The client's id.
    pub payout_id: String,
    /// Paging order (insertion order).
    pub seq: i64,
    /// The signing request carrying it.
    pub request_id: String,
    /// Idempotency fingerprint of what the client asked.
    pub fingerprint: Vec<u8>,
    /// The typed payout (the coordinator's JSON).
    pub payout_json: String,
    /// Chain registry id.
    pub chain: String,
    /// Paying address.
    pub source: String,
    /// Account nonce (none for a payout that failed before it took one).
    pub nonce: Option<u64>,
    /// What the chain saw: `unsigned`, `broadcast`, `confirming`,
    /// `completed`, `failed` or `released` (ended unsigned, nonce released).
    pub chain_state: String,
    /// The signed transaction.
    pub raw_tx: Option<Vec<u8>>,
    /// Its hash (0x hex).
    pub tx_hash: Option<String>,
    /// The block that holds it.
    pub block_number: Option<u64>,
    /// Confirmations seen.
    pub confirmations: u64,
    /// Why it failed or what it waits for.
    pub reason: Option<String>,
    /// When it was first broadcast (Unix seconds).
    pub broadcast_at: Option<i64>,
    /// Whether the audit log holds its signed bytes.
    pub broadcast_logged: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The hash of the payout's transaction the chain mined (its first or a
    /// replacement), while mined.
    pub mined_tx_hash: Option<String>,
    /// The merchant whose API key made it (`None`: an operator's).
    pub merchant_id: Option<String>,
}

/// What recording a payout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded now, with what the nonce manager noticed.
    New(PayoutRow, NonceNote),
    /// `payout_id` was taken: the row that holds it (the caller compares
    /// fingerprints).
    Existing(PayoutRow),
}

/// A new payout: everything but the nonce, which the store hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    /// The client's id.
    pub payout_id: String,
    /// The signing request that will carry it.
    pub request_id: String,
    /// Idempotency fingerprint.
    pub fingerprint: Vec<u8>,
    /// Chain registry id.
    pub chain: String,
    /// Paying address.
    pub source: String,
    /// The nonce the chain reports as next for `source` (pending
    /// transactions included); the store never hands out less.
    pub chain_next_nonce: u64,
    /// The merchant making it (`None`: an operator).
    pub merchant_id: Option<String>,
}

/// What the chain showed for a payout, to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutChainUpdate {
    /// New chain state.
    pub chain_state: String,
    /// Signed bytes (set once).
    pub raw_tx: Option<Vec<u8>>,
    /// Their hash (set once).
    pub tx_hash: Option<String>,
    /// Block, when mined (None clears it: a reorg dropped it).
    pub block_number: Option<u64>,
    /// Confirmations.
    pub confirmations: u64,
    /// Reason or note.
    pub reason: Option<String>,
    /// Which of its transactions the chain mined (None: none is, or a
    /// reorg took it out).
    pub mined_tx_hash: Option<String>,
    /// The ledger entry of a payout that reached its final depth (or
    /// reverted there): booked once, in the same transaction.
    pub booking: Option<crate::coordinator_ledger::PayoutBooking>,
}

const PAYOUT_COLUMNS: &str =
    "payout_id, seq, request_id, fingerprint, payout_json, chain, source, \
     nonce, chain_state, raw_tx, tx_hash, block_number, confirmations, reason, broadcast_at, \
     created_at, updated_at, broadcast_logged, mined_tx_hash, merchant_id";

fn payout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PayoutRow> {
    Ok(PayoutRow {
        payout_id: r.get(0)?,
        seq: r.get(1)?,
        request_id: r.get(2)?,
        fingerprint: r.get(3)?,
        payout_json: r.get(4)?,
        chain: r.get(5)?,
        source: r.get(6)?,
        nonce: r
            .get::<_, Option<i64>>(7)?
            .and_then(|n| u64::try_from(n).ok()),
        chain_state: r.get(8)?,
        raw_tx: r.get(9)?,
        tx_hash: r.get(10)?,
        block_number: r
            .get::<_, Option<i64>>(11)?
            .and_then(|b| u64::try_from(b).ok()),
        confirmations: u64::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        reason: r.get(13)?,
        broadcast_at: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        broadcast_logged: r.get::<_, i64>(17)? != 0,
        mined_tx_hash: r.get(18)?,
        merchant_id: r.get(19)?,
    })
}

/// A payout id held by another owner is a conflict: the caller never learns
/// more of it than that the id is taken.
fn check_same_owner(existing: Option<&PayoutRow>, new: &NewPayout) -> Result<(), StoreError> {
    match existing {
        Some(row) if row.merchant_id != new.merchant_id => Err(StoreError::Conflict {
            what: "payout",
            id: new.payout_id.clone(),
        }),
        _ => Ok(()),
    }
}

/// The payout `payout_id`, read on `conn` (a write transaction or the
/// reader); `QueryReturnedNoRows` if there is none.
fn payout_by_id(conn: &rusqlite::Connection, payout_id: &str) -> rusqlite::Result<PayoutRow> {
    conn.query_row(
        &format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE payout_id = ?1"),
        [payout_id],
        payout_row,
    )
}

/// The paging order of the next payout.
fn next_seq(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM payouts", [], |r| {
        r.get(0)
    })
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: format!("{v} is larger than 2^63 - 1"),
    })
}

/// What the nonce manager noticed while handing out a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceNote {
    /// Nothing unusual.
    InOrder,
    /// The chain's next nonce was ahead of the manager's: nonces
    /// `from..to` of the address were used by transactions Keyfold did not
    /// send (an alert: someone else holds the key, or another system pays
    /// from it).
    UsedElsewhere {
        /// First nonce used elsewhere.
        from: u64,
        /// One past the last.
        to: u64,
    },
    /// The chain's next nonce was behind the manager's and no payout of
    /// Keyfold's is in flight with a nonce at or above it: the chain lost
    /// those transactions (a reset or a deep reorg), so counting restarts
    /// at the chain's nonce rather than leaving a gap nothing would fill.
    ChainBehind {
        /// The manager's next nonce.
        ours: u64,
        /// The chain's.
        chain: u64,
    },
}

/// Reconciles the stored next nonce of (chain, address) with the chain's
/// (pending transactions included) without taking one: released nonces the
/// chain has passed are dropped, the stored next nonce moves to the chain's
/// when the chain is ahead (nonces used elsewhere) or behind with nothing
/// of Keyfold's in flight (the chain lost them). Returns the next nonce
/// and what was noticed.
fn reconcile(
    tx: &Transaction<'_>,
    chain: &str,
    address: &str,
    chain_next: u64,
) -> Result<(i64, NonceNote), rusqlite::Error> {
    let chain_next_i = i64::try_from(chain_next).unwrap_or(i64::MAX);
    // A released nonce below what the chain has mined or holds pending was
    // used meanwhile: it is gone, not a gap.
    tx.execute(
        "DELETE FROM released_nonces WHERE chain = ?1 AND address = ?2 AND nonce < ?3",
        params![chain, address, chain_next_i],
    )?;
    let stored: Option<i64> = tx
        .query_row(
            "SELECT next_nonce FROM nonces WHERE chain = ?1 AND address = ?2",
            params![chain, address],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match stored {
        None => (chain_next_i, NonceNote::InOrder),
        Some(s) if s < chain_next_i => (
            chain_next_i,
            NonceNote::UsedElsewhere {
                from: u64::try_from(s).unwrap_or(0),
                to: chain_next,
            },
        ),
        Some(s) if s > chain_next_i => {
            let in_flight: i64 = tx.query_row(
                "SELECT COUNT(*) FROM payouts WHERE chain = ?1 AND source = ?2 AND nonce >= ?3
                   AND chain_state IN ('unsigned', 'broadcast', 'confirming')",
                params![chain, address, chain_next_i],
                |r| r.get(0),
            )?;
            if in_flight == 0 {
                // Counting restarts at the chain's nonce, so a nonce released
                // above it is no hole any more: handing it out first would
                // open the very gap the restart closes.
                tx.execute(
                    "DELETE FROM released_nonces WHERE chain = ?1 AND address = ?2 AND nonce >= ?3",
                    params![chain, address, chain_next_i],
                )?;
                (
                    chain_next_i,
                    NonceNote::ChainBehind {
                        ours: u64::try_from(s).unwrap_or(0),
                        chain: chain_next,
                    },
                )
            } else {
                (s, NonceNote::InOrder)
            }
        }
        Some(s) => (s, NonceNote::InOrder),
    })
}

fn store_next(
    tx: &Transaction<'_>,
    chain: &str,
    address: &str,
    next: i64,
    now: i64,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO nonces (chain, address, next_nonce, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(chain, address) DO UPDATE SET next_nonce = excluded.next_nonce,
             updated_at = excluded.updated_at",
        params![chain, address, next, now],
    )?;
    Ok(())
}

/// Takes the next nonce of (chain, address): the lowest released one, else
/// the stored next one reconciled with what the chain reports.
fn take_nonce(
    tx: &Transaction<'_>,
    chain: &str,
    address: &str,
    chain_next: u64,
    now: i64,
) -> Result<(u64, NonceNote), rusqlite::Error> {
    let (next, note) = reconcile(tx, chain, address, chain_next)?;
    let released: Option<i64> = tx
        .query_row(
            "SELECT MIN(nonce) FROM released_nonces WHERE chain = ?1 AND address = ?2
               AND nonce < ?3",
            params![chain, address, next],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if let Some(n) = released {
        tx.execute(
            "DELETE FROM released_nonces WHERE chain = ?1 AND address = ?2 AND nonce = ?3",
            params![chain, address, n],
        )?;
        store_next(tx, chain, address, next, now)?;
        return Ok((u64::try_from(n).unwrap_or(0), note));
    }
    store_next(tx, chain, address, next.saturating_add(1), now)?;
    Ok((u64::try_from(next).unwrap_or(0), note))
}

impl CoordinatorStore {
    /// Records a new payout with the next nonce of its (chain, source) and
    /// returns its row and what the nonce manager noticed, or the existing
    /// row if `payout_id` is taken (the caller compares fingerprints).
    /// `payout_json` is built from the nonce by `build` (the unsigned
    /// transaction includes it), inside the same transaction.
    pub fn insert_payout(
        &self,
        new: &NewPayout,
        build: impl FnOnce(u64) -> Result<String, StoreError>,
    ) -> Result<Recorded, StoreError> {
        validate::client_id("payout_id", &new.payout_id)?;
        validate::client_id("request_id", &new.request_id)?;
        self.db.durably("insert_payout", |tx| {
            let err = self.db.err("insert_payout");
            let existing = payout_by_id(tx, &new.payout_id).optional().map_err(&err)?;
            check_same_owner(existing.as_ref(), new)?;
            match existing {
                Some(row) if row.nonce.is_some() => return Ok(Recorded::Existing(row)),
                // Failed before it took a nonce: submitted again, it starts over.
                Some(_) => {
                    tx.execute("DELETE FROM payouts WHERE payout_id = ?1", [&new.payout_id])
                        .map_err(&err)?;
                }
                None => {}
            }
            let now = crate::db::now();
            let (nonce, note) =
                take_nonce(tx, &new.chain, &new.source, new.chain_next_nonce, now).map_err(&err)?;
            let json = build(nonce)?;
            if json.len() > MAX_JSON_LEN {
                return Err(StoreError::InvalidInput {
                    field: "payout_json",
                    reason: format!("{} bytes exceeds {MAX_JSON_LEN}", json.len()),
                });
            }
            let seq: i64 = next_seq(tx).map_err(&err)?;
            tx.execute(
                "INSERT INTO payouts (payout_id, seq, request_id, fingerprint, payout_json, chain,
                     source, nonce, chain_state, created_at, updated_at, merchant_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'unsigned', ?9, ?9, ?10)",
                params![
                    new.payout_id,
                    seq,
                    new.request_id,
                    new.fingerprint,
                    json,
                    new.chain,
                    new.source,
                    to_i64("nonce", nonce)?,
                    now,
                    new.merchant_id
                ],
            )
            .map_err(&err)?;
            payout_by_id(tx, &new.payout_id)
                .map(|row| Recorded::New(row, note))
                .map_err(&err)
        })
    }

    /// Records a payout that failed before it took a nonce (unknown
    /// balance, fees above the cap ...), or replaces such a record when the
    /// client submits it again. Returns the existing row instead if
    /// `payout_id` holds a payout that did take a nonce.
    pub fn record_failed_payout(
        &self,
        new: &NewPayout,
        payout_json: &str,
        reason: &str,
    ) -> Result<Recorded, StoreError> {
        validate::client_id("payout_id", &new.payout_id)?;
        self.db.durably("record_failed_payout", |tx| {
            let err = self.db.err("record_failed_payout");
            let existing = payout_by_id(tx, &new.payout_id).optional().map_err(&err)?;
            check_same_owner(existing.as_ref(), new)?;
            if let Some(row) = existing.filter(|r| r.nonce.is_some()) {
                return Ok(Recorded::Existing(row));
            }
            let now = crate::db::now();
            let seq: i64 = next_seq(tx).map_err(&err)?;
            tx.execute(
                "INSERT INTO payouts (payout_id, seq, request_id, fingerprint, payout_json, chain,
                     source, nonce, chain_state, reason, created_at, updated_at, merchant_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, 'failed', ?8, ?9, ?9, ?10)
                 ON CONFLICT(payout_id) DO UPDATE SET fingerprint = excluded.fingerprint,
                     payout_json = excluded.payout_json, reason = excluded.reason,
                     updated_at = excluded.updated_at",
                params![
                    new.payout_id,
                    seq,
                    new.request_id,
                    new.fingerprint,
                    payout_json,
                    new.chain,
                    new.source,
                    reason,
                    now,
                    new.merchant_id
                ],
            )
            .map_err(&err)?;
            payout_by_id(tx, &new.payout_id)
                .map(|row| Recorded::New(row, NonceNote::InOrder))
                .map_err(&err)
        })
    }

    /// The payout `payout_id`.
    pub fn get_payout(&self, payout_id: &str) -> Result<Option<PayoutRow>, StoreError> {
        validate::client_id("payout_id", payout_id)?;
        payout_by_id(&self.db.reader(), payout_id)
            .optional()
            .map_err(self.db.err("get_payout"))
    }

    /// The payout carried by signing request `request_id`.
    pub fn payout_of_request(&self, request_id: &str) -> Result<Option<PayoutRow>, StoreError> {
        self.db
            .reader()
            .query_row(
                &format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE request_id = ?1"),
                [request_id],
                payout_row,
            )
            .optional()
            .map_err(self.db.err("payout_of_request"))
    }

    /// One page of payouts, newest first, optionally of one chain and with
    /// `seq` below `before`.
    pub fn list_payouts(
        &self,
        chain: Option<&str>,
        merchant_id: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<PayoutRow>, StoreError> {
        let err = self.db.err("list_payouts");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {PAYOUT_COLUMNS} FROM payouts
                 WHERE (?1 IS NULL OR chain = ?1) AND (?2 IS NULL OR seq < ?2)
                   AND (?4 IS NULL OR merchant_id = ?4)
                 ORDER BY seq DESC LIMIT ?3"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit.min(MAX_PAYOUT_PAGE)).unwrap_or(100);
        let rows = stmt
            .query_map(params![chain, before, limit, merchant_id], payout_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// A page of payouts created within `[from, to)`, of one merchant (or
    /// all), oldest first after seq `after`.
    pub fn list_payouts_created(
        &self,
        merchant_id: Option<&str>,
        created: (i64, i64),
        after: i64,
        limit: usize,
    ) -> Result<Vec<PayoutRow>, StoreError> {
        let err = self.db.err("list_payouts_created");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PAYOUT_COLUMNS} FROM payouts
                 WHERE (?1 IS NULL OR merchant_id = ?1) AND created_at >= ?2 AND created_at < ?3
                   AND seq > ?4 ORDER BY seq LIMIT ?5"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit.min(MAX_PAYOUT_PAGE)).unwrap_or(100);
        let rows = stmt
            .query_map(
                params![merchant_id, created.0, created.1, after, limit],
                payout_row,
            )
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// The paying addresses of a merchant's payouts (or everyone's): (chain,
    /// address), and every nonce payouts of that address hold.
    #[allow(clippy::type_complexity)]
    pub fn payout_sources(
        &self,
        merchant_id: Option<&str>,
    ) -> Result<Vec<((String, String), std::collections::BTreeSet<u64>)>, StoreError> {
        let err = self.db.err("payout_sources");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT p.chain, p.source, q.nonce FROM
                   (SELECT DISTINCT chain, source FROM payouts WHERE ?1 IS NULL OR merchant_id = ?1) p
                 LEFT JOIN payouts q ON q.chain = p.chain AND q.source = p.source
                   AND q.nonce IS NOT NULL
                 ORDER BY p.chain, p.source",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![merchant_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        let mut out: Vec<((String, String), std::collections::BTreeSet<u64>)> = Vec::new();
        for (chain, source, nonce) in rows {
            if out.last().map(|(k, _)| (&k.0, &k.1)) != Some((&chain, &source)) {
                out.push(((chain, source), Default::default()));
            }
            if let (Some(n), Some(last)) =
                (nonce.and_then(|n| u64::try_from(n).ok()), out.last_mut())
            {
                last.1.insert(n);
            }
        }
        Ok(out)
    }

    /// Records what the chain showed for a payout. The signed bytes and
    /// their hash, once set, never change: a different value is refused
    /// (one signed transaction per payout).
    ///
    /// When the chain state changes, `event(row, previous_state)` may name
    /// a webhook event, written in the same transaction (the outbox).
    pub fn update_payout_chain(
        &self,
        payout_id: &str,
        update: &PayoutChainUpdate,
        event: impl FnOnce(&PayoutRow, &str) -> Option<crate::NewEvent>,
    ) -> Result<(), StoreError> {
        self.db.durably("update_payout_chain", |tx| {
            let err = self.db.err("update_payout_chain");
            let (raw, hash, previous): (Option<Vec<u8>>, Option<String>, String) = tx
                .query_row(
                    "SELECT raw_tx, tx_hash, chain_state FROM payouts WHERE payout_id = ?1",
                    [payout_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(&err)?
                .ok_or_else(|| StoreError::InvalidInput {
                    field: "payout_id",
                    reason: format!("no payout {payout_id}"),
                })?;
            let differs = |old: &Option<Vec<u8>>, new: &Option<Vec<u8>>| {
                matches!((old, new), (Some(o), Some(n)) if o != n)
            };
            if differs(&raw, &update.raw_tx)
                || matches!((&hash, &update.tx_hash), (Some(o), Some(n)) if o != n)
            {
                return Err(StoreError::Conflict {
                    what: "signed transaction of payout",
                    id: payout_id.to_string(),
                });
            }
            let now = crate::db::now();
            let block = update
                .block_number
                .map(|b| to_i64("block_number", b))
                .transpose()?;
            tx.execute(
                "UPDATE payouts SET chain_state = ?2, raw_tx = COALESCE(raw_tx, ?3),
                     tx_hash = COALESCE(tx_hash, ?4), block_number = ?5, confirmations = ?6,
                     reason = ?7, updated_at = ?8, mined_tx_hash = ?9,
                     broadcast_at = CASE WHEN ?2 = 'broadcast' THEN COALESCE(broadcast_at, ?8)
                                         ELSE broadcast_at END
                 WHERE payout_id = ?1",
                params![
                    payout_id,
                    update.chain_state,
                    update.raw_tx,
                    update.tx_hash,
                    block,
                    to_i64("confirmations", update.confirmations)?,
                    update.reason,
                    now,
                    update.mined_tx_hash
                ],
            )
            .map_err(&err)?;
            if let Some(booking) = &update.booking {
                crate::coordinator_ledger::book_payout_or_alert(tx, payout_id, booking, now, &err)?;
            }
            if previous != update.chain_state {
                let row = payout_by_id(tx, payout_id).map_err(&err)?;
                if let Some(e) = event(&row, &previous) {
                    crate::coordinator_webhooks::enqueue(tx, &e, now)?;
                }
            }
            Ok(())
        })
    }

    /// A payout ended without a signature: its nonce goes back to the pool
    /// (handed out again first) and the payout is marked `released`. A
    /// payout already signed is left alone (its nonce is spent).
    pub fn release_payout_nonce(&self, payout_id: &str, reason: &str) -> Result<bool, StoreError> {
        self.db.durably("release_payout_nonce", |tx| {
            let err = self.db.err("release_payout_nonce");
            let row: Option<(String, String, Option<i64>, String)> = tx
                .query_row(
                    "SELECT chain, source, nonce, chain_state FROM payouts WHERE payout_id = ?1",
                    [payout_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(&err)?;
            let Some((chain, source, Some(nonce), state)) = row else {
                return Ok(false);
            };
            if state != "unsigned" {
                return Ok(false);
            }
            tx.execute(
                "INSERT OR IGNORE INTO released_nonces (chain, address, nonce) VALUES (?1, ?2, ?3)",
                params![chain, source, nonce],
            )
            .map_err(&err)?;
            tx.execute(
                "UPDATE payouts SET chain_state = 'released', reason = ?2, updated_at = ?3
                 WHERE payout_id = ?1",
                params![payout_id, reason, crate::db::now()],
            )
            .map_err(&err)?;
            Ok(true)
        })
    }

    /// Records that the audit log holds the payout's signed bytes.
    pub fn mark_broadcast_logged(&self, payout_id: &str) -> Result<(), StoreError> {
        self.db
            .lock()
            .execute(
                "UPDATE payouts SET broadcast_logged = 1 WHERE payout_id = ?1",
                [payout_id],
            )
            .map_err(self.db.err("mark_broadcast_logged"))?;
        Ok(())
    }

    /// The next nonce the manager would hand out for (chain, address),
    /// released nonces aside.
    pub fn next_nonce(&self, chain: &str, address: &str) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = self
            .db
            .reader()
            .query_row(
                "SELECT next_nonce FROM nonces WHERE chain = ?1 AND address = ?2",
                params![chain, address],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("next_nonce"))?;
        Ok(n.and_then(|n| u64::try_from(n).ok()))
    }

    /// Every (chain, address) the nonce manager has handed nonces out for,
    /// with its next nonce.
    pub fn nonce_accounts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let err = self.db.err("nonce_accounts");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare("SELECT chain, address, next_nonce FROM nonces ORDER BY chain, address")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                ))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Reconciles (chain, address) with the chain's next nonce (pending
    /// included) without taking one, as taking a nonce does (see
    /// [`NonceNote`]); the coordinator does it for every account at start.
    pub fn reconcile_nonce(
        &self,
        chain: &str,
        address: &str,
        chain_next: u64,
    ) -> Result<NonceNote, StoreError> {
        self.db.durably("reconcile_nonce", |tx| {
            let err = self.db.err("reconcile_nonce");
            let (next, note) = reconcile(tx, chain, address, chain_next).map_err(&err)?;
            if note != NonceNote::InOrder {
                store_next(tx, chain, address, next, crate::db::now()).map_err(&err)?;
            }
            Ok(note)
        })
    }
}
