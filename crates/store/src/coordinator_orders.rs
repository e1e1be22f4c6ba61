//! Payment orders, the deposits the chain watcher saw for them, and the
//! watcher's durable cursor per chain.
//!
//! An order belongs to one merchant (`order_id` is unique per merchant) and
//! has its own deposit address (unique per chain). Deposits are keyed by
//! (chain, transaction hash, log index; -1 for a native transfer), so a
//! rescan after a restart or a reorg never counts one twice. A deposit whose
//! block left the chain is kept with `removed_at` set (the history shows
//! it) and no longer counts.
//!
//! One scan of a chain is one transaction ([`CoordinatorStore::apply_scan`]):
//! the deposits it found or removed, the cursor and block hashes it moved to,
//! the orders' new states and the webhook events those changes cause (the
//! outbox of [`crate::coordinator_webhooks`]) are committed together, so a
//! crash never loses or invents an event. Amounts are decimal strings of base
//! units; the store does not interpret them.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::coordinator::CoordinatorStore;
use crate::coordinator_merchants::check_merchant_id;
use crate::coordinator_webhooks::{enqueue, NewEvent};
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// Most block hashes kept per chain for reorg detection.
pub const KEPT_BLOCKS: i64 = 256;

/// Migration 6 -> 7: orders, deposits, watcher cursors, merchants'
/// collection keys.
pub(crate) const MIGRATION_7: &str = "CREATE TABLE orders (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        merchant_id     TEXT NOT NULL REFERENCES merchants (merchant_id),
        order_id        TEXT NOT NULL,
        fingerprint     BLOB NOT NULL,
        chain           TEXT NOT NULL,
        asset           TEXT NOT NULL,
        token           TEXT,
        decimals        INTEGER NOT NULL,
        amount          TEXT NOT NULL,
        address         TEXT NOT NULL,
        key_id          TEXT NOT NULL,
        derivation_index INTEGER NOT NULL,
        derivation_path TEXT NOT NULL,
        payment_uri     TEXT NOT NULL,
        metadata        TEXT,
        confirmations   INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('new', 'processing', 'settled', 'expired', 'invalid')),
        statuses        TEXT NOT NULL DEFAULT '',
        confirmed_total TEXT NOT NULL DEFAULT '0',
        pending_total   TEXT NOT NULL DEFAULT '0',
        late_total      TEXT NOT NULL DEFAULT '0',
        settled_at      INTEGER,
        updated_at      INTEGER NOT NULL,
        UNIQUE (merchant_id, order_id),
        UNIQUE (chain, address),
        UNIQUE (key_id, derivation_index)
    ) STRICT;
    CREATE INDEX orders_by_merchant ON orders (merchant_id, seq);
    CREATE INDEX orders_open ON orders (chain, state);
    CREATE TABLE order_deposits (
        chain         TEXT NOT NULL,
        tx_hash       TEXT NOT NULL,
        log_index     INTEGER NOT NULL,
        order_seq     INTEGER NOT NULL REFERENCES orders (seq),
        token         TEXT,
        amount        TEXT NOT NULL,
        block_number  INTEGER NOT NULL,
        block_hash    TEXT NOT NULL,
        first_seen_at INTEGER NOT NULL,
        removed_at    INTEGER,
        PRIMARY KEY (chain, tx_hash, log_index)
    ) STRICT;
    CREATE INDEX deposits_by_order ON order_deposits (order_seq);
    CREATE INDEX deposits_by_block ON order_deposits (chain, block_number);
    CREATE TABLE chain_cursors (
        chain      TEXT PRIMARY KEY,
        head       INTEGER NOT NULL,
        scanned    INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE chain_blocks (
        chain  TEXT NOT NULL,
        number INTEGER NOT NULL,
        hash   TEXT NOT NULL,
        PRIMARY KEY (chain, number)
    ) STRICT;
    ALTER TABLE merchants ADD COLUMN collection_key_id TEXT;";

/// A new order, as the coordinator built it (its address already derived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Owner.
    pub merchant_id: String,
    /// The merchant's id for it.
    pub order_id: String,
    /// Idempotency fingerprint of what the merchant asked.
    pub fingerprint: Vec<u8>,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Token contract (`None`: the native coin).
    pub token: Option<String>,
    /// The asset's decimals.
    pub decimals: u8,
    /// Amount due, base units (decimal).
    pub amount: String,
    /// Confirmations required.
    pub confirmations: u32,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires (Unix seconds).
    pub expires_at: i64,
    /// Merchant's metadata (JSON), if any.
    pub metadata: Option<String>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Position (paging, and the order's internal number).
    pub seq: i64,
    /// Owner.
    pub merchant_id: String,
    /// The merchant's id.
    pub order_id: String,
    /// Idempotency fingerprint.
    pub fingerprint: Vec<u8>,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Token contract (`None`: native).
    pub token: Option<String>,
    /// Decimals.
    pub decimals: u8,
    /// Amount due (base units, decimal).
    pub amount: String,
    /// Deposit address.
    pub address: String,
    /// The collection key it derives from.
    pub key_id: String,
    /// Its derivation path from that key.
    pub derivation_path: String,
    /// EIP-681 / Solana Pay URI.
    pub payment_uri: String,
    /// Merchant's metadata (JSON).
    pub metadata: Option<String>,
    /// Confirmations required.
    pub confirmations: u32,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Expires (Unix seconds).
    pub expires_at: i64,
    /// `new`, `processing`, `settled`, `expired` or `invalid`.
    pub state: String,
    /// Extra statuses, space-separated (`paid_partial`, `paid_over`,
    /// `paid_late`).
    pub statuses: String,
    /// Confirmed on-time total (base units).
    pub confirmed_total: String,
    /// Seen, not yet confirmed, on-time total.
    pub pending_total: String,
    /// Total of deposits first seen after expiry.
    pub late_total: String,
    /// When it settled.
    pub settled_at: Option<i64>,
    /// Last change.
    pub updated_at: i64,
}

/// A deposit to an order's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRow {
    /// Chain registry id.
    pub chain: String,
    /// Transaction hash (0x hex).
    pub tx_hash: String,
    /// Log index of an ERC-20 transfer; -1 for a native transfer.
    pub log_index: i64,
    /// The order.
    pub order_seq: i64,
    /// Token contract (`None`: native).
    pub token: Option<String>,
    /// Amount (base units, decimal).
    pub amount: String,
    /// Its block.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: String,
    /// The time of the block it was first seen in (Unix seconds).
    pub first_seen_at: i64,
    /// When its block left the chain, if it did.
    pub removed_at: Option<i64>,
}

/// A deposit found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundDeposit {
    /// Transaction hash.
    pub tx_hash: String,
    /// Log index (-1 native).
    pub log_index: i64,
    /// The address paid (matched to an order by chain and address).
    pub to: String,
    /// Token contract (`None`: native).
    pub token: Option<String>,
    /// Amount.
    pub amount: String,
    /// Block.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// The block's time (Unix seconds): when the deposit was made.
    pub seen_at: i64,
}

/// What one scan of a chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The chain head the scan saw.
    pub head: u64,
    /// Blocks up to this one are scanned.
    pub scanned: u64,
    /// Hashes of the blocks scanned (kept for reorg detection).
    pub blocks: Vec<(u64, String)>,
    /// Blocks above this number left the chain (a reorg): their deposits
    /// and kept hashes are dropped before the new ones are recorded.
    pub reorg_above: Option<u64>,
    /// Deposits found.
    pub deposits: Vec<FoundDeposit>,
}

/// An order's new state, decided by the caller's evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderUpdate {
    /// New state.
    pub state: String,
    /// New statuses (space-separated).
    pub statuses: String,
    /// Confirmed on-time total.
    pub confirmed_total: String,
    /// Pending on-time total.
    pub pending_total: String,
    /// Late total.
    pub late_total: String,
    /// Settled at (set once).
    pub settled_at: Option<i64>,
    /// The webhook event this change causes, if any.
    pub event: Option<NewEvent>,
    /// What the order's deposits come to for the ledger (booked by
    /// difference with what it booked before, in the same transaction).
    pub booking: Option<crate::coordinator_ledger::OrderBooking>,
}

/// How a create call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRecorded {
    /// Created now.
    New(OrderRow),
    /// The merchant used this `order_id` before: the row (the caller
    /// compares fingerprints).
    Existing(OrderRow),
}

const ORDER_COLUMNS: &str = "seq, merchant_id, order_id, fingerprint, chain, asset, token, \
     decimals, amount, address, key_id, derivation_path, payment_uri, metadata, confirmations, \
     created_at, expires_at, state, statuses, confirmed_total, pending_total, late_total, \
     settled_at, updated_at";

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok(OrderRow {
        seq: r.get(0)?,
        merchant_id: r.get(1)?,
        order_id: r.get(2)?,
        fingerprint: r.get(3)?,
        chain: r.get(4)?,
        asset: r.get(5)?,
        token: r.get(6)?,
        decimals: u8::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        amount: r.get(8)?,
        address: r.get(9)?,
        key_id: r.get(10)?,
        derivation_path: r.get(11)?,
        payment_uri: r.get(12)?,
        metadata: r.get(13)?,
        confirmations: u32::try_from(r.get::<_, i64>(14)?).unwrap_or(u32::MAX),
        created_at: r.get(15)?,
        expires_at: r.get(16)?,
        state: r.get(17)?,
        statuses: r.get(18)?,
        confirmed_total: r.get(19)?,
        pending_total: r.get(20)?,
        late_total: r.get(21)?,
        settled_at: r.get(22)?,
        updated_at: r.get(23)?,
    })
}

const DEPOSIT_COLUMNS: &str = "chain, tx_hash, log_index, order_seq, token, amount, \
     block_number, block_hash, first_seen_at, removed_at";

fn deposit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DepositRow> {
    Ok(DepositRow {
        chain: r.get(0)?,
        tx_hash: r.get(1)?,
        log_index: r.get(2)?,
        order_seq: r.get(3)?,
        token: r.get(4)?,
        amount: r.get(5)?,
        block_number: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        block_hash: r.get(7)?,
        first_seen_at: r.get(8)?,
        removed_at: r.get(9)?,
    })
}

fn to_i64(field: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: format!("{v} is too large"),
    })
}

fn order_by_seq(conn: &rusqlite::Connection, seq: i64) -> rusqlite::Result<OrderRow> {
    conn.query_row(
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE seq = ?1"),
        [seq],
        order_row,
    )
}

fn deposits_of(conn: &rusqlite::Connection, seq: i64) -> rusqlite::Result<Vec<DepositRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEPOSIT_COLUMNS} FROM order_deposits WHERE order_seq = ?1
         ORDER BY block_number, tx_hash, log_index"
    ))?;
    let rows = stmt.query_map([seq], deposit_row)?;
    rows.collect()
}

impl CoordinatorStore {
    /// Sets the key a merchant's order addresses derive from (an ECDSA key;
    /// the caller checks it is the merchant's).
    pub fn set_collection_key(&self, merchant_id: &str, key_id: &str) -> Result<(), StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("key_id", key_id)?;
        let n = self.db.durably("set_collection_key", |tx| {
            tx.execute(
                "UPDATE merchants SET collection_key_id = ?2 WHERE merchant_id = ?1",
                params![merchant_id, key_id],
            )
            .map_err(self.db.err("set_collection_key"))
        })?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "merchant",
                id: merchant_id.to_string(),
            });
        }
        Ok(())
    }

    /// A merchant's collection key, if set.
    pub fn collection_key(&self, merchant_id: &str) -> Result<Option<String>, StoreError> {
        check_merchant_id(merchant_id)?;
        let key: Option<Option<String>> = self
            .db
            .reader()
            .query_row(
                "SELECT collection_key_id FROM merchants WHERE merchant_id = ?1",
                [merchant_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("collection_key"))?;
        Ok(key.flatten())
    }

    /// Records an order, or returns the merchant's existing one with this
    /// `order_id`. `derive(index)` gives the address, derivation path and
    /// payment URI for the collection key's next derivation index, inside
    /// the transaction that takes the index, so two orders (of any
    /// merchants sharing the key) never share one.
    pub fn insert_order(
        &self,
        new: &NewOrder,
        key_id: &str,
        derive: impl FnOnce(u32) -> Result<(String, String, String), StoreError>,
    ) -> Result<OrderRecorded, StoreError> {
        check_merchant_id(&new.merchant_id)?;
        validate::client_id("order_id", &new.order_id)?;
        if new
            .metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_JSON_LEN)
        {
            return Err(StoreError::InvalidInput {
                field: "metadata",
                reason: format!("longer than {MAX_JSON_LEN} bytes"),
            });
        }
        self.db.durably("insert_order", |tx| {
            let err = self.db.err("insert_order");
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = ?1 AND order_id = ?2"
                    ),
                    params![new.merchant_id, new.order_id],
                    order_row,
                )
                .optional()
                .map_err(&err)?;
            if let Some(row) = existing {
                return Ok(OrderRecorded::Existing(row));
            }
            let index: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(derivation_index) + 1, 0) FROM orders WHERE key_id = ?1",
                    [key_id],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            let index = u32::try_from(index)
                .ok()
                .filter(|i| *i < 0x8000_0000)
                .ok_or_else(|| StoreError::InvalidInput {
                    field: "merchant_id",
                    reason: "the collection key used every non-hardened derivation index".into(),
                })?;
            let (address, path, uri) = derive(index)?;
            tx.execute(
                "INSERT INTO orders (merchant_id, order_id, fingerprint, chain, asset, token,
                     decimals, amount, address, key_id, derivation_path, payment_uri, metadata,
                     confirmations, created_at, expires_at, state, updated_at, derivation_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     'new', ?15, ?17)",
                params![
                    new.merchant_id,
                    new.order_id,
                    new.fingerprint,
                    new.chain,
                    new.asset,
                    new.token,
                    new.decimals,
                    new.amount,
                    address,
                    key_id,
                    path,
                    uri,
                    new.metadata,
                    new.confirmations,
                    new.created_at,
                    new.expires_at,
                    index
                ],
            )
            .map_err(&err)?;
            let seq = tx.last_insert_rowid();
            order_by_seq(tx, seq)
                .map(OrderRecorded::New)
                .map_err(&err)
        })
    }

    /// A merchant's order.
    pub fn get_order(
        &self,
        merchant_id: &str,
        order_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        check_merchant_id(merchant_id)?;
        validate::client_id("order_id", order_id)?;
        self.db
            .reader()
            .query_row(
                &format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE merchant_id = ?1 AND order_id = ?2"
                ),
                params![merchant_id, order_id],
                order_row,
            )
            .optional()
            .map_err(self.db.err("get_order"))
    }

    /// A page of orders, newest first: of one merchant (or all), optionally
    /// in one state and created within `[from, to)`.
    pub fn list_orders(
        &self,
        merchant_id: Option<&str>,
        state: Option<&str>,
        created: (Option<i64>, Option<i64>),
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let err = self.db.err("list_orders");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE (?1 IS NULL OR merchant_id = ?1) AND (?2 IS NULL OR state = ?2)
                   AND (?3 IS NULL OR created_at >= ?3) AND (?4 IS NULL OR created_at < ?4)
                   AND (?5 IS NULL OR seq < ?5)
                 ORDER BY seq DESC LIMIT ?6"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map(
                params![
                    merchant_id,
                    state,
                    created.0,
                    created.1,
                    before,
                    i64::try_from(limit.min(1000)).unwrap_or(100)
                ],
                order_row,
            )
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// An order's deposits (removed ones included), oldest block first.
    pub fn order_deposits(&self, seq: i64) -> Result<Vec<DepositRow>, StoreError> {
        deposits_of(&self.db.reader(), seq).map_err(self.db.err("order_deposits"))
    }

    /// The addresses of a chain's orders the watcher must look for (not
    /// settled long ago: every order, as a late or extra payment to a
    /// settled order's address is still recorded), with their token.
    pub fn watched_addresses(&self, chain: &str) -> Result<Vec<String>, StoreError> {
        let err = self.db.err("watched_addresses");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached("SELECT address FROM orders WHERE chain = ?1")
            .map_err(&err)?;
        let rows = stmt
            .query_map([chain], |r| r.get(0))
            .map_err(&err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(&err);
        rows
    }

    /// The chain head the watcher last saw (0 before its first scan): what
    /// deposits' confirmations count from.
    pub fn chain_head(&self, chain: &str) -> Result<u64, StoreError> {
        let head: Option<i64> = self
            .db
            .reader()
            .query_row(
                "SELECT head FROM chain_cursors WHERE chain = ?1",
                [chain],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("chain_head"))?;
        Ok(head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
    }

    /// The watcher's cursor of a chain: (head seen, scanned up to), and the
    /// kept block hashes, ascending.
    #[allow(clippy::type_complexity)]
    pub fn chain_cursor(
        &self,
        chain: &str,
    ) -> Result<(Option<(u64, u64)>, Vec<(u64, String)>), StoreError> {
        let err = self.db.err("chain_cursor");
        let conn = self.db.reader();
        let cursor = conn
            .query_row(
                "SELECT head, scanned FROM chain_cursors WHERE chain = ?1",
                [chain],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(&err)?
            .map(|(h, s)| (u64::try_from(h).unwrap_or(0), u64::try_from(s).unwrap_or(0)));
        let mut stmt = conn
            .prepare_cached(
                "SELECT number, hash FROM chain_blocks WHERE chain = ?1 ORDER BY number",
            )
            .map_err(&err)?;
        let blocks = stmt
            .query_map([chain], |r| {
                Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok((cursor, blocks))
    }

    /// Applies one scan of `chain` (see the module docs) and re-evaluates
    /// its orders that may have changed: every order not final, and every
    /// order a deposit of this scan touched. `evaluate` decides each one's
    /// new state from its row and its (live) deposits; rows whose state or
    /// totals change are written with their event. Returns how many orders
    /// changed and how many deposits were new.
    pub fn apply_scan(
        &self,
        chain: &str,
        scan: &Scan,
        now: i64,
        mut evaluate: impl FnMut(&OrderRow, &[DepositRow]) -> Result<OrderUpdate, StoreError>,
    ) -> Result<(usize, usize), StoreError> {
        self.db.durably("apply_scan", |tx| {
            let err = self.db.err("apply_scan");
            let mut touched: Vec<i64> = Vec::new();
            if let Some(above) = scan.reorg_above {
                let above = to_i64("reorg_above", above)?;
                let mut stmt = tx
                    .prepare(
                        "UPDATE order_deposits SET removed_at = ?3
                         WHERE chain = ?1 AND block_number > ?2 AND removed_at IS NULL
                         RETURNING order_seq",
                    )
                    .map_err(&err)?;
                let seqs = stmt
                    .query_map(params![chain, above, now], |r| r.get::<_, i64>(0))
                    .map_err(&err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&err)?;
                touched.extend(seqs);
                tx.execute(
                    "DELETE FROM chain_blocks WHERE chain = ?1 AND number > ?2",
                    params![chain, above],
                )
                .map_err(&err)?;
            }
            let mut new_deposits = 0;
            for d in &scan.deposits {
                let Some((seq, token)) = tx
                    .query_row(
                        "SELECT seq, token FROM orders WHERE chain = ?1 AND address = ?2",
                        params![chain, d.to],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?)),
                    )
                    .optional()
                    .map_err(&err)?
                else {
                    continue;
                };
                // Only the order's own asset pays it: ether sent to a token
                // order's address (the gas tank's top-up before a sweep, or a
                // customer's mistake) or another token is not a payment.
                let same_asset = match (&token, &d.token) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => false,
                };
                if !same_asset {
                    continue;
                }
                // Seen again (a rescan, or back after a reorg): the same row,
                // alive, in the block that holds it now.
                let n = tx
                    .execute(
                        "INSERT INTO order_deposits (chain, tx_hash, log_index, order_seq, token,
                             amount, block_number, block_hash, first_seen_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (chain, tx_hash, log_index) DO UPDATE SET
                             block_number = excluded.block_number,
                             block_hash = excluded.block_hash, removed_at = NULL
                         WHERE removed_at IS NOT NULL OR block_hash <> excluded.block_hash",
                        params![
                            chain,
                            d.tx_hash,
                            d.log_index,
                            seq,
                            d.token,
                            d.amount,
                            to_i64("block_number", d.block_number)?,
                            d.block_hash,
                            d.seen_at
                        ],
                    )
                    .map_err(&err)?;
                if n > 0 {
                    new_deposits += 1;
                    touched.push(seq);
                }
            }
            for (number, hash) in &scan.blocks {
                tx.execute(
                    "INSERT INTO chain_blocks (chain, number, hash) VALUES (?1, ?2, ?3)
                     ON CONFLICT (chain, number) DO UPDATE SET hash = excluded.hash",
                    params![chain, to_i64("block", *number)?, hash],
                )
                .map_err(&err)?;
            }
            let scanned = to_i64("scanned", scan.scanned)?;
            tx.execute(
                "DELETE FROM chain_blocks WHERE chain = ?1 AND number <= ?2",
                params![chain, scanned - KEPT_BLOCKS],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO chain_cursors (chain, head, scanned, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (chain) DO UPDATE SET head = excluded.head,
                     scanned = excluded.scanned, updated_at = excluded.updated_at",
                params![chain, to_i64("head", scan.head)?, scanned, now],
            )
            .map_err(&err)?;

            let mut seqs: Vec<i64> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT seq FROM orders WHERE chain = ?1 AND state IN ('new', 'processing')",
                    )
                    .map_err(&err)?;
                let open = stmt
                    .query_map([chain], |r| r.get::<_, i64>(0))
                    .map_err(&err)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&err)?;
                open
            };
            seqs.extend(touched);
            seqs.sort_unstable();
            seqs.dedup();
            let mut changed = 0;
            for seq in seqs {
                changed += usize::from(evaluate_one(tx, seq, now, &mut evaluate, &err)?);
            }
            Ok((changed, new_deposits))
        })
    }

    /// Re-evaluates one order now (its expiry, without a scan).
    pub fn reevaluate_order(
        &self,
        seq: i64,
        now: i64,
        mut evaluate: impl FnMut(&OrderRow, &[DepositRow]) -> Result<OrderUpdate, StoreError>,
    ) -> Result<bool, StoreError> {
        self.db.durably("reevaluate_order", |tx| {
            let err = self.db.err("reevaluate_order");
            evaluate_one(tx, seq, now, &mut evaluate, &err)
        })
    }
}

/// Evaluates one order in `tx`; writes it (and its event) if it changed.
fn evaluate_one(
    tx: &Transaction<'_>,
    seq: i64,
    now: i64,
    evaluate: &mut impl FnMut(&OrderRow, &[DepositRow]) -> Result<OrderUpdate, StoreError>,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<bool, StoreError> {
    let row = order_by_seq(tx, seq).map_err(err)?;
    let deposits: Vec<DepositRow> = deposits_of(tx, seq)
        .map_err(err)?
        .into_iter()
        .filter(|d| d.removed_at.is_none())
        .collect();
    let u = evaluate(&row, &deposits)?;
    let booked = match &u.booking {
        Some(b) => book_order_or_alert(tx, seq, b, now, err)?,
        None => false,
    };
    let same = u.state == row.state
        && u.statuses == row.statuses
        && u.confirmed_total == row.confirmed_total
        && u.pending_total == row.pending_total
        && u.late_total == row.late_total;
    if same {
        return Ok(booked);
    }
    tx.execute(
        "UPDATE orders SET state = ?2, statuses = ?3, confirmed_total = ?4, pending_total = ?5,
             late_total = ?6, settled_at = COALESCE(settled_at, ?7), updated_at = ?8
         WHERE seq = ?1",
        params![
            seq,
            u.state,
            u.statuses,
            u.confirmed_total,
            u.pending_total,
            u.late_total,
            u.settled_at,
            now
        ],
    )
    .map_err(err)?;
    if let Some(event) = &u.event {
        enqueue(tx, event, now)?;
    }
    Ok(true)
}

/// Books an order's deposits in the ledger inside a savepoint: a refusal by
/// the ledger (an invariant would break) is an alert for a person, never a
/// reason to stop following the chain, so it is logged, nothing of it is
/// kept, and the next evaluation tries again.
fn book_order_or_alert(
    tx: &Transaction<'_>,
    seq: i64,
    booking: &crate::coordinator_ledger::OrderBooking,
    now: i64,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<bool, StoreError> {
    tx.execute_batch("SAVEPOINT book_order").map_err(err)?;
    match crate::coordinator_ledger::book_order(tx, seq, booking, now, err) {
        Ok((booked, loss)) => {
            tx.execute_batch("RELEASE book_order").map_err(err)?;
            if let Some(lost) = loss {
                tracing::error!(
                    alert = "settlement.deposit_lost",
                    order_seq = seq,
                    lost_base_units = %lost,
                    "a reorg removed deposits of a settled order after its merchant was credited; the ledger booked the loss"
                );
            }
            Ok(booked)
        }
        Err(StoreError::InvalidInput { field, reason }) => {
            tx.execute_batch("ROLLBACK TO book_order; RELEASE book_order")
                .map_err(err)?;
            tracing::error!(alert = "settlement.ledger_refused", order_seq = seq, %field, %reason, "the ledger refused an order's entry; nothing of it was booked");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
