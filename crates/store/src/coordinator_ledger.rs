//! The settlement ledger's tables: journal entries, their postings with the
//! balance each left behind (an account's statement), the current balance of
//! every account, the treasury's wallets, and the treasury's transfers
//! (sweeps, hot-to-cold, replenishments, gas top-ups: ordinary payouts the
//! settlement module created).
//!
//! An entry is posted inside the transaction of the state change that caused
//! it ([`post`]): the store loads the balances of the accounts it touches and
//! asks the pure ledger (`keyfold_ledger::apply_to`) for their new values,
//! which refuses an unbalanced entry or one that would take an account below
//! zero where its type does not allow it. Entries are never edited: the
//! entry id is an idempotency key (a second post of the same id is a no-op),
//! and a correction is a new entry. Amounts are decimal strings of base
//! units (balances are signed: `world`, `owed` and `adjustment` go below
//! zero by design).

use std::collections::BTreeMap;

use keyfold_ledger::{Account, AssetKey, Entry, WalletRole};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::coordinator::CoordinatorStore;
use crate::error::StoreError;

/// Most rows one page of entries or balances returns.
pub const MAX_LEDGER_PAGE: usize = 500;

/// Migration 8 -> 9: the ledger, the treasury's wallets and transfers, and
/// what each order has booked.
pub(crate) const MIGRATION_9: &str = "CREATE TABLE ledger_entries (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id TEXT NOT NULL UNIQUE,
        kind     TEXT NOT NULL,
        at       INTEGER NOT NULL,
        body     TEXT NOT NULL
    ) STRICT;
    CREATE TABLE ledger_postings (
        entry_seq INTEGER NOT NULL REFERENCES ledger_entries (seq),
        account   TEXT NOT NULL,
        chain     TEXT NOT NULL,
        asset     TEXT NOT NULL,
        delta     TEXT NOT NULL,
        balance   TEXT NOT NULL
    ) STRICT;
    CREATE INDEX postings_by_account ON ledger_postings (account, chain, asset, entry_seq);
    CREATE INDEX postings_by_entry ON ledger_postings (entry_seq);
    CREATE TABLE ledger_balances (
        account     TEXT NOT NULL,
        chain       TEXT NOT NULL,
        asset       TEXT NOT NULL,
        balance     TEXT NOT NULL,
        updated_seq INTEGER NOT NULL,
        PRIMARY KEY (account, chain, asset)
    ) STRICT;
    CREATE TABLE treasury_wallets (
        chain   TEXT NOT NULL,
        address TEXT NOT NULL,
        role    TEXT NOT NULL CHECK (role IN ('hot', 'cold', 'gas_tank')),
        key_id  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (chain, address)
    ) STRICT;
    CREATE TABLE treasury_transfers (
        payout_id   TEXT PRIMARY KEY,
        kind        TEXT NOT NULL CHECK (kind IN ('sweep', 'hot_to_cold', 'replenishment', 'gas_top_up')),
        chain       TEXT NOT NULL,
        asset       TEXT NOT NULL,
        source      TEXT NOT NULL,
        destination TEXT NOT NULL,
        amount      TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX transfers_by_source ON treasury_transfers (chain, source);
    ALTER TABLE orders ADD COLUMN booked_available TEXT NOT NULL DEFAULT '0';
    ALTER TABLE orders ADD COLUMN booked_funds TEXT NOT NULL DEFAULT '0';
    ALTER TABLE orders ADD COLUMN ledger_version INTEGER NOT NULL DEFAULT 0;";

/// One entry as stored, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// Position in the journal (paging).
    pub seq: i64,
    /// The entry.
    pub entry: Entry,
}

/// One account's balance in one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceRow {
    /// The account.
    pub account: Account,
    /// Chain and asset.
    pub asset: AssetKey,
    /// Signed base units.
    pub balance: i128,
}

/// A line of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    /// The entry's position.
    pub seq: i64,
    /// The entry's id.
    pub entry_id: String,
    /// Its kind.
    pub kind: String,
    /// Its time (Unix seconds).
    pub at: i64,
    /// Chain and asset.
    pub asset: AssetKey,
    /// Net change of the account by this entry.
    pub delta: i128,
    /// The account's balance after it.
    pub balance: i128,
}

/// A wallet of the treasury.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreasuryWallet {
    /// Chain registry id.
    pub chain: String,
    /// Address (the chain's canonical spelling).
    pub address: String,
    /// Hot, cold or gas tank.
    pub role: WalletRole,
    /// The key that controls it.
    pub key_id: String,
}

/// A transfer the settlement module created (a payout it owns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreasuryTransfer {
    /// The payout carrying it.
    pub payout_id: String,
    /// `sweep`, `hot_to_cold`, `replenishment` or `gas_top_up`.
    pub kind: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Paying address.
    pub source: String,
    /// Receiving address.
    pub destination: String,
    /// Base units (decimal).
    pub amount: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The payout's chain state (`unsigned`, `broadcast`, `confirming`,
    /// `completed`, `failed`, `released`).
    pub chain_state: String,
    /// Its signing request's id.
    pub request_id: String,
    /// Its transaction's hash, once signed.
    pub tx_hash: Option<String>,
    /// When its payout last changed (Unix seconds; when it was recorded,
    /// if it has no payout yet).
    pub updated_at: i64,
}

/// The ledger's refusal (its text names the entry, account and amounts).
fn ledger_err(e: keyfold_ledger::LedgerError) -> StoreError {
    StoreError::InvalidInput {
        field: "ledger entry",
        reason: e.to_string(),
    }
}

fn parse_balance(text: &str) -> rusqlite::Result<i128> {
    text.parse::<i128>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn parse_account(text: &str) -> rusqlite::Result<Account> {
    text.parse::<Account>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Posts `entry` in `tx` (see the module docs): its position in the
/// journal, or `None` when an entry with this id is already there (nothing
/// changed).
pub(crate) fn post(
    tx: &Transaction<'_>,
    entry: &Entry,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<Option<i64>, StoreError> {
    let seen: Option<i64> = tx
        .query_row(
            "SELECT seq FROM ledger_entries WHERE entry_id = ?1",
            [&entry.id],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    if seen.is_some() {
        return Ok(None);
    }
    entry.validate().map_err(ledger_err)?;
    let deltas = entry.deltas().map_err(ledger_err)?;
    let mut current = BTreeMap::new();
    for (account, asset) in deltas.keys() {
        let b = balance_in(tx, account, asset, err)?;
        current.insert((account.clone(), asset.clone()), b);
    }
    let next = keyfold_ledger::apply_to(&current, entry).map_err(ledger_err)?;
    let body = serde_json::to_string(entry).map_err(|e| StoreError::InvalidInput {
        field: "ledger entry",
        reason: e.to_string(),
    })?;
    tx.execute(
        "INSERT INTO ledger_entries (entry_id, kind, at, body) VALUES (?1, ?2, ?3, ?4)",
        params![
            entry.id,
            entry.kind.to_string(),
            i64::try_from(entry.at).unwrap_or(i64::MAX),
            body
        ],
    )
    .map_err(err)?;
    let seq = tx.last_insert_rowid();
    for ((account, asset), delta) in &deltas {
        let balance = next
            .get(&(account.clone(), asset.clone()))
            .copied()
            .unwrap_or(0);
        let account = account.to_string();
        tx.execute(
            "INSERT INTO ledger_postings (entry_seq, account, chain, asset, delta, balance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                seq,
                account,
                asset.chain,
                asset.asset,
                delta.to_string(),
                balance.to_string()
            ],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO ledger_balances (account, chain, asset, balance, updated_seq)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (account, chain, asset) DO UPDATE SET
                 balance = excluded.balance, updated_seq = excluded.updated_seq",
            params![account, asset.chain, asset.asset, balance.to_string(), seq],
        )
        .map_err(err)?;
    }
    Ok(Some(seq))
}

/// The balance of `account` in `asset` as `tx` sees it (0 if never posted).
pub(crate) fn balance_in(
    tx: &rusqlite::Connection,
    account: &Account,
    asset: &AssetKey,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<i128, StoreError> {
    let b: Option<String> = tx
        .query_row(
            "SELECT balance FROM ledger_balances WHERE account = ?1 AND chain = ?2 AND asset = ?3",
            params![account.to_string(), asset.chain, asset.asset],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    b.map(|b| parse_balance(&b).map_err(err))
        .transpose()
        .map(|b| b.unwrap_or(0))
}

/// The ledger account of `address` on `chain`: a treasury wallet, an
/// order's deposit address, or none (outside the ledger).
pub(crate) fn wallet_account(
    conn: &rusqlite::Connection,
    chain: &str,
    address: &str,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<Option<Account>, StoreError> {
    let role: Option<String> = conn
        .query_row(
            "SELECT role FROM treasury_wallets WHERE chain = ?1 AND address = ?2",
            params![chain, address],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    let role = match role.as_deref() {
        Some("hot") => Some(WalletRole::Hot),
        Some("cold") => Some(WalletRole::Cold),
        Some("gas_tank") => Some(WalletRole::GasTank),
        _ => {
            let deposit: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM orders WHERE chain = ?1 AND address = ?2",
                    params![chain, address],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            deposit.map(|_| WalletRole::Deposit)
        }
    };
    Ok(role.map(|role| Account::Wallet {
        role,
        address: address.to_string(),
    }))
}

fn role_text(role: WalletRole) -> &'static str {
    match role {
        WalletRole::Hot => "hot",
        WalletRole::Cold => "cold",
        WalletRole::GasTank => "gas_tank",
        WalletRole::Deposit => "deposit",
    }
}

fn role_of(text: &str) -> rusqlite::Result<WalletRole> {
    match text {
        "hot" => Ok(WalletRole::Hot),
        "cold" => Ok(WalletRole::Cold),
        "gas_tank" => Ok(WalletRole::GasTank),
        "deposit" => Ok(WalletRole::Deposit),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown wallet role {other}").into(),
        )),
    }
}

const TRANSFER_COLUMNS: &str = "t.payout_id, t.kind, t.chain, t.asset, t.source, t.destination, \
     t.amount, t.created_at, p.chain_state, p.request_id, COALESCE(p.mined_tx_hash, p.tx_hash), \
     COALESCE(p.updated_at, t.created_at)";

fn transfer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TreasuryTransfer> {
    Ok(TreasuryTransfer {
        payout_id: r.get(0)?,
        kind: r.get(1)?,
        chain: r.get(2)?,
        asset: r.get(3)?,
        source: r.get(4)?,
        destination: r.get(5)?,
        amount: r.get(6)?,
        created_at: r.get(7)?,
        chain_state: r
            .get::<_, Option<String>>(8)?
            .unwrap_or_else(|| "unsigned".into()),
        request_id: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
        tx_hash: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl CoordinatorStore {
    /// Posts `entry` on its own (opening balances, corrections); `Ok(false)`
    /// if its id is already in the journal.
    pub fn post_entry(&self, entry: &Entry) -> Result<bool, StoreError> {
        self.db.durably("post_entry", |tx| {
            let err = self.db.err("post_entry");
            post(tx, entry, &err).map(|seq| seq.is_some())
        })
    }

    /// Registers a treasury wallet (once; a second call with the same
    /// chain, address, role and key is a no-op) and, the first time, posts
    /// `opening` (its opening balances, read from the chain) in the same
    /// transaction. A wallet already registered with another role or key is
    /// a conflict.
    pub fn register_treasury_wallet(
        &self,
        wallet: &TreasuryWallet,
        opening: &[Entry],
    ) -> Result<bool, StoreError> {
        self.db.durably("register_treasury_wallet", |tx| {
            let err = self.db.err("register_treasury_wallet");
            let existing: Option<(String, String)> = tx
                .query_row(
                    "SELECT role, key_id FROM treasury_wallets WHERE chain = ?1 AND address = ?2",
                    params![wallet.chain, wallet.address],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&err)?;
            if let Some((role, key)) = existing {
                if role != role_text(wallet.role) || key != wallet.key_id {
                    return Err(StoreError::Conflict {
                        what: "treasury wallet (another role or key holds this address)",
                        id: format!("{}/{}", wallet.chain, wallet.address),
                    });
                }
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO treasury_wallets (chain, address, role, key_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    wallet.chain,
                    wallet.address,
                    role_text(wallet.role),
                    wallet.key_id,
                    crate::db::now()
                ],
            )
            .map_err(&err)?;
            for entry in opening {
                post(tx, entry, &err)?;
            }
            Ok(true)
        })
    }

    /// Every treasury wallet.
    pub fn treasury_wallets(&self) -> Result<Vec<TreasuryWallet>, StoreError> {
        let err = self.db.err("treasury_wallets");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare("SELECT chain, address, role, key_id FROM treasury_wallets ORDER BY chain, role, address")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TreasuryWallet {
                    chain: r.get(0)?,
                    address: r.get(1)?,
                    role: role_of(&r.get::<_, String>(2)?)?,
                    key_id: r.get(3)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// The balance of one account in one asset (0 if never posted).
    pub fn ledger_balance(&self, account: &Account, asset: &AssetKey) -> Result<i128, StoreError> {
        let err = self.db.err("ledger_balance");
        let conn = self.db.reader();
        balance_in(&conn, account, asset, &err)
    }

    /// Balances, optionally of one chain and of accounts whose name starts
    /// with `prefix` (`merchant:acme:`, `wallet:`), in account order.
    pub fn ledger_balances(
        &self,
        chain: Option<&str>,
        prefix: Option<&str>,
    ) -> Result<Vec<BalanceRow>, StoreError> {
        let err = self.db.err("ledger_balances");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT account, chain, asset, balance FROM ledger_balances
                 WHERE (?1 IS NULL OR chain = ?1)
                   AND (?2 IS NULL OR substr(account, 1, length(?2)) = ?2)
                 ORDER BY account, chain, asset",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![chain, prefix], |r| {
                Ok(BalanceRow {
                    account: parse_account(&r.get::<_, String>(0)?)?,
                    asset: AssetKey {
                        chain: r.get(1)?,
                        asset: r.get(2)?,
                    },
                    balance: parse_balance(&r.get::<_, String>(3)?)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// A page of the journal, oldest first, after position `after`;
    /// `account_prefix` keeps the entries that touch such an account.
    pub fn ledger_entries(
        &self,
        after: i64,
        limit: usize,
        account_prefix: Option<&str>,
    ) -> Result<Vec<EntryRow>, StoreError> {
        let err = self.db.err("ledger_entries");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.seq, e.body FROM ledger_entries e
                 WHERE e.seq > ?1 AND (?3 IS NULL OR EXISTS (
                     SELECT 1 FROM ledger_postings p WHERE p.entry_seq = e.seq
                       AND substr(p.account, 1, length(?3)) = ?3))
                 ORDER BY e.seq LIMIT ?2",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, MAX_LEDGER_PAGE)).unwrap_or(100);
        let rows = stmt
            .query_map(params![after, limit, account_prefix], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        self.entry_rows(rows)
    }

    /// Stored (position, JSON) rows as entries; one that does not parse is
    /// a corrupt record.
    pub(crate) fn entry_rows(&self, rows: Vec<(i64, String)>) -> Result<Vec<EntryRow>, StoreError> {
        rows.into_iter()
            .map(|(seq, body)| {
                let entry: Entry = serde_json::from_str(&body).map_err(|e| {
                    self.db
                        .corrupt("ledger entry", &seq.to_string(), e.to_string())
                })?;
                Ok(EntryRow { seq, entry })
            })
            .collect()
    }

    /// The entry `entry_id`, if booked.
    pub fn ledger_entry(&self, entry_id: &str) -> Result<Option<EntryRow>, StoreError> {
        let err = self.db.err("ledger_entry");
        let conn = self.db.reader();
        let row: Option<(i64, String)> = conn
            .query_row(
                "SELECT seq, body FROM ledger_entries WHERE entry_id = ?1",
                [entry_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        row.map(|(seq, body)| {
            let entry: Entry = serde_json::from_str(&body)
                .map_err(|e| self.db.corrupt("ledger entry", entry_id, e.to_string()))?;
            Ok(EntryRow { seq, entry })
        })
        .transpose()
    }

    /// A page of one account's statement, oldest first after `after`.
    pub fn ledger_statement(
        &self,
        account: &Account,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StatementLine>, StoreError> {
        let err = self.db.err("ledger_statement");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.seq, e.entry_id, e.kind, e.at, p.chain, p.asset, p.delta, p.balance
                 FROM ledger_postings p JOIN ledger_entries e ON e.seq = p.entry_seq
                 WHERE p.account = ?1 AND p.entry_seq > ?2
                 ORDER BY p.entry_seq, p.chain, p.asset LIMIT ?3",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, MAX_LEDGER_PAGE)).unwrap_or(100);
        let rows = stmt
            .query_map(params![account.to_string(), after, limit], |r| {
                Ok(StatementLine {
                    seq: r.get(0)?,
                    entry_id: r.get(1)?,
                    kind: r.get(2)?,
                    at: r.get(3)?,
                    asset: AssetKey {
                        chain: r.get(4)?,
                        asset: r.get(5)?,
                    },
                    delta: parse_balance(&r.get::<_, String>(6)?)?,
                    balance: parse_balance(&r.get::<_, String>(7)?)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Records a transfer the settlement module is about to submit as
    /// payout `payout_id` (before the payout exists, so a crash between the
    /// two leaves the transfer known and the same payout id is submitted
    /// again). `Ok(false)`: already recorded.
    pub fn record_treasury_transfer(&self, t: &TreasuryTransfer) -> Result<bool, StoreError> {
        self.db.durably("record_treasury_transfer", |tx| {
            let err = self.db.err("record_treasury_transfer");
            let n = tx
                .execute(
                    "INSERT INTO treasury_transfers (payout_id, kind, chain, asset, source,
                         destination, amount, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                    params![
                        t.payout_id,
                        t.kind,
                        t.chain,
                        t.asset,
                        t.source,
                        t.destination,
                        t.amount,
                        t.created_at
                    ],
                )
                .map_err(&err)?;
            Ok(n > 0)
        })
    }

    /// Transfers of `chain` (all chains if `None`), newest first; `open`
    /// keeps those whose payout is not final (no payout yet, unsigned,
    /// broadcast or confirming).
    pub fn treasury_transfers(
        &self,
        chain: Option<&str>,
        open: bool,
        limit: usize,
    ) -> Result<Vec<TreasuryTransfer>, StoreError> {
        let err = self.db.err("treasury_transfers");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {TRANSFER_COLUMNS} FROM treasury_transfers t
                 LEFT JOIN payouts p ON p.payout_id = t.payout_id
                 WHERE (?1 IS NULL OR t.chain = ?1)
                   AND (?2 = 0 OR p.chain_state IS NULL
                        OR p.chain_state IN ('unsigned', 'broadcast', 'confirming'))
                 ORDER BY t.created_at DESC, t.payout_id DESC LIMIT ?3"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(100);
        let rows = stmt
            .query_map(params![chain, i64::from(open), limit], transfer_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Payouts paid from `source` on `chain` that are not final (unsigned,
    /// broadcast or confirming): (payout id, the payout's JSON).
    pub fn open_payouts_from(
        &self,
        chain: &str,
        source: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let err = self.db.err("open_payouts_from");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT payout_id, payout_json FROM payouts
                 WHERE chain = ?1 AND source = ?2
                   AND chain_state IN ('unsigned', 'broadcast', 'confirming')",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![chain, source], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// The collection key and derivation path of the order whose deposit
    /// address is `address` on `chain`.
    pub fn order_address_key(
        &self,
        chain: &str,
        address: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let err = self.db.err("order_address_key");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT key_id, derivation_path FROM orders WHERE chain = ?1 AND address = ?2",
            params![chain, address],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(&err)
    }

    /// Addresses of `chain` with money in flight: the sources and
    /// recipients of payouts that are not final, and the deposit addresses
    /// of orders with deposits still gathering confirmations. Their ledger
    /// and chain balances may differ for now.
    pub fn addresses_in_flight(&self, chain: &str) -> Result<Vec<String>, StoreError> {
        let err = self.db.err("addresses_in_flight");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT source FROM payouts
                   WHERE chain = ?1 AND chain_state IN ('unsigned', 'broadcast', 'confirming')
                 UNION
                 SELECT json_extract(payout_json, '$.to') FROM payouts
                   WHERE chain = ?1 AND chain_state IN ('unsigned', 'broadcast', 'confirming')
                 UNION
                 SELECT address FROM orders WHERE chain = ?1 AND pending_total <> '0'",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([chain], |r| r.get::<_, Option<String>>(0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// How many transfers of `kind` were ever recorded from `source` on
    /// `chain` (numbers the next one's payout id).
    pub fn count_treasury_transfers(
        &self,
        chain: &str,
        source: &str,
        kind: &str,
    ) -> Result<u64, StoreError> {
        let err = self.db.err("count_treasury_transfers");
        let conn = self.db.reader();
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM treasury_transfers WHERE chain = ?1 AND source = ?2 AND kind = ?3",
                params![chain, source, kind],
                |r| r.get(0),
            )
            .map_err(&err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deposit addresses of `chain`'s orders in `asset` whose ledger
    /// balance in it is at least `min` base units: (address, the order's
    /// collection key, its derivation path, the balance). An address is
    /// swept only in its order's asset: the gas a token order's address
    /// was given stays for its sweep.
    pub fn sweepable_deposits(
        &self,
        chain: &str,
        asset: &str,
        min: u128,
        limit: usize,
    ) -> Result<Vec<(String, String, String, u128)>, StoreError> {
        let err = self.db.err("sweepable_deposits");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.address, o.key_id, o.derivation_path, b.balance
                 FROM ledger_balances b JOIN orders o
                   ON b.account = 'wallet:deposit:' || o.address AND o.chain = b.chain
                 WHERE b.chain = ?1 AND b.asset = ?2 AND o.asset = ?2 AND b.balance <> '0'
                 ORDER BY o.seq LIMIT ?3",
            )
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(100);
        let rows = stmt
            .query_map(params![chain, asset, limit], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    parse_balance(&r.get::<_, String>(3)?)?,
                ))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(a, k, p, b)| {
                let b = u128::try_from(b).ok()?;
                (b >= min.max(1)).then_some((a, k, p, b))
            })
            .collect())
    }
}

/// What an order's deposits come to for the ledger, as its evaluation
/// decided: the caller's view of the order, booked by difference with what
/// the order booked before ([`book_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderBooking {
    /// Confirmed deposits at the order's address (on time or late): the
    /// funds Keyfold holds for it.
    pub funds: u128,
    /// The part credited to the merchant's available balance (the on-time
    /// confirmed total of a settled order; 0 before it settles).
    pub available: u128,
    /// The order is invalid (a reorg deeper than its confirmations took a
    /// deposit of a settled order): the merchant keeps what it was
    /// credited, and missing funds are booked as a loss.
    pub keep_available: bool,
}

/// Books the difference between what order `seq` booked and `booking`, in
/// `tx`: deposits seen (to the merchant's pending balance), settled (pending
/// to available), reversed (a reorg, from pending) or lost (a reorg after
/// the merchant was credited: the treasury's loss, from the deposit address
/// or, once swept, the hot wallet). Returns the loss booked, if any, for
/// the caller's alert, and whether anything was booked. A refusal by the ledger is returned as an error and
/// nothing is booked.
pub(crate) fn book_order(
    tx: &Transaction<'_>,
    seq: i64,
    booking: &OrderBooking,
    now: i64,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(bool, Option<u128>), StoreError> {
    use keyfold_ledger::Event;
    let (merchant, chain, asset, address, a0, f0, version): (
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
    ) = tx
        .query_row(
            "SELECT merchant_id, chain, asset, address, booked_available, booked_funds,
                    ledger_version FROM orders WHERE seq = ?1",
            [seq],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .map_err(err)?;
    let parse = |field: &'static str, t: &str| {
        t.parse::<u128>().map_err(|_| StoreError::InvalidInput {
            field,
            reason: format!("order {seq}: {t:?} is not a base-unit amount"),
        })
    };
    let (a0, f0) = (parse("booked_available", &a0)?, parse("booked_funds", &f0)?);
    let a1 = if booking.keep_available {
        a0
    } else {
        booking.available
    };
    let f1 = booking.funds;
    if a1 == a0 && f1 == f0 {
        return Ok((false, None));
    }
    let key = AssetKey {
        chain: chain.clone(),
        asset: asset.clone(),
    };
    let version = version + 1;
    let at = u64::try_from(now).unwrap_or(0);
    let reference = format!("order {seq} of merchant {merchant}");
    let id = |step: &str| format!("order:{seq}:{version}:{step}");
    let mut events: Vec<(String, Event)> = Vec::new();
    let mut loss = None;
    if f1 > f0 {
        events.push((
            id("seen"),
            Event::DepositSeen {
                asset: key.clone(),
                merchant: merchant.clone(),
                address: address.clone(),
                amount: f1 - f0,
            },
        ));
    }
    if a1 > a0 {
        events.push((
            id("settled"),
            Event::DepositSettled {
                asset: key.clone(),
                merchant: merchant.clone(),
                amount: a1 - a0,
            },
        ));
    }
    if f0 > f1 {
        let gone = f0 - f1;
        // Pending funds go back first; what the merchant was already
        // credited with stays credited and is the treasury's loss.
        let pending = f0.saturating_sub(a0);
        let reversed = gone.min(pending);
        if reversed > 0 {
            events.push((
                id("reversed"),
                Event::DepositReversed {
                    asset: key.clone(),
                    merchant: merchant.clone(),
                    address: address.clone(),
                    amount: reversed,
                },
            ));
        }
        let mut lost = gone - reversed;
        if lost > 0 {
            loss = Some(lost);
            let deposit = Account::Wallet {
                role: WalletRole::Deposit,
                address: address.clone(),
            };
            // After a reversal above, the deposit account holds `reversed`
            // less; what it still holds is lost first, then (swept) hot.
            let held = u128::try_from(balance_in(tx, &deposit, &key, err)?)
                .unwrap_or(0)
                .saturating_sub(reversed);
            let from_deposit = lost.min(held);
            if from_deposit > 0 {
                events.push((
                    id("lost"),
                    Event::DepositLost {
                        asset: key.clone(),
                        from: deposit,
                        amount: from_deposit,
                    },
                ));
                lost -= from_deposit;
            }
            if lost > 0 {
                let hot: Option<String> = tx
                    .query_row(
                        "SELECT address FROM treasury_wallets WHERE chain = ?1 AND role = 'hot'
                         ORDER BY created_at LIMIT 1",
                        [&chain],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                let Some(hot) = hot else {
                    return Err(StoreError::InvalidInput {
                        field: "ledger entry",
                        reason: format!(
                            "order {seq}: {lost} base units lost to a reorg are neither at its deposit address nor in a hot wallet of {chain}"
                        ),
                    });
                };
                events.push((
                    id("lost-swept"),
                    Event::DepositLost {
                        asset: key.clone(),
                        from: Account::Wallet {
                            role: WalletRole::Hot,
                            address: hot,
                        },
                        amount: lost,
                    },
                ));
            }
        }
    }
    for (entry_id, event) in events {
        let entry = event.entry(&entry_id, &reference, at).map_err(ledger_err)?;
        post(tx, &entry, err)?;
    }
    tx.execute(
        "UPDATE orders SET booked_available = ?2, booked_funds = ?3, ledger_version = ?4
         WHERE seq = ?1",
        params![seq, a1.to_string(), f1.to_string(), version],
    )
    .map_err(err)?;
    Ok((true, loss))
}

/// What a payout that reached its final depth moved, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutBooking {
    /// Its asset's symbol.
    pub asset: String,
    /// The chain's native symbol (the fee's asset).
    pub native: String,
    /// Recipient address.
    pub to: String,
    /// Base units paid (0 when it reverted).
    pub amount: u128,
    /// Network fee paid (gas used times the effective gas price).
    pub fee: u128,
    /// The merchant whose available balance pays it, if any.
    pub merchant: Option<String>,
    /// It reverted: only the fee was paid.
    pub reverted: bool,
}

/// The ledger entry of payout `payout_id`, or `None` when its paying
/// address is outside the ledger (not a treasury wallet nor an order's
/// deposit address).
fn payout_entry(
    tx: &rusqlite::Connection,
    payout_id: &str,
    b: &PayoutBooking,
    now: i64,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<Option<Entry>, StoreError> {
    use keyfold_ledger::{EntryKind, Event, Fee, Posting, TransferKind};
    let (chain, source): (String, String) = tx
        .query_row(
            "SELECT chain, source FROM payouts WHERE payout_id = ?1",
            [payout_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(err)?;
    let Some(from) = wallet_account(tx, &chain, &source, err)? else {
        return Ok(None);
    };
    let id = format!("payout:{payout_id}");
    let reference = format!("payout {payout_id}");
    let at = u64::try_from(now).unwrap_or(0);
    let asset = AssetKey {
        chain: chain.clone(),
        asset: b.asset.clone(),
    };
    let fee = (b.fee > 0).then(|| Fee {
        asset: AssetKey {
            chain: chain.clone(),
            asset: b.native.clone(),
        },
        amount: b.fee,
    });
    if b.reverted || b.amount == 0 {
        let Some(fee) = fee else { return Ok(None) };
        return Ok(Some(Entry {
            id,
            kind: EntryKind::Payout,
            reference: format!("{reference} (reverted: only its fee was paid)"),
            at,
            postings: vec![Posting {
                from,
                to: Account::NetworkFees,
                asset: fee.asset,
                amount: fee.amount,
            }],
        }));
    }
    let event = match wallet_account(tx, &chain, &b.to, err)? {
        Some(to) => {
            let role = |a: &Account| match a {
                Account::Wallet { role, .. } => Some(*role),
                _ => None,
            };
            // Named by the pair of roles; otherwise by where it goes.
            let kind = match (role(&from), role(&to)) {
                (Some(WalletRole::Deposit), Some(WalletRole::Hot)) => TransferKind::Sweep,
                (_, Some(WalletRole::Cold)) => TransferKind::HotToCold,
                (_, Some(WalletRole::Hot)) => TransferKind::Replenishment,
                (_, Some(WalletRole::Deposit | WalletRole::GasTank)) => TransferKind::GasTopUp,
                _ => TransferKind::Sweep,
            };
            Event::Transfer {
                kind,
                asset,
                from,
                to,
                amount: b.amount,
                fee,
            }
        }
        None => Event::Payout {
            asset,
            from,
            merchant: b.merchant.clone(),
            amount: b.amount,
            fee,
        },
    };
    event
        .entry(&id, &reference, at)
        .map(Some)
        .map_err(ledger_err)
}

/// Books payout `payout_id` in `tx` inside a savepoint; a refusal by the
/// ledger is logged as an alert (the payout's own state is recorded all the
/// same: the chain already moved the funds, and reconciliation shows the
/// difference).
pub(crate) fn book_payout_or_alert(
    tx: &Transaction<'_>,
    payout_id: &str,
    booking: &PayoutBooking,
    now: i64,
    err: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<(), StoreError> {
    tx.execute_batch("SAVEPOINT book_payout").map_err(err)?;
    let result = payout_entry(tx, payout_id, booking, now, err)
        .and_then(|entry| entry.map(|e| post(tx, &e, err)).transpose());
    match result {
        Ok(_) => tx.execute_batch("RELEASE book_payout").map_err(err),
        Err(StoreError::InvalidInput { field, reason }) => {
            tx.execute_batch("ROLLBACK TO book_payout; RELEASE book_payout")
                .map_err(err)?;
            tracing::error!(alert = "settlement.ledger_refused", payout = %payout_id, %field, %reason, "the ledger refused a payout's entry; nothing of it was booked");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
