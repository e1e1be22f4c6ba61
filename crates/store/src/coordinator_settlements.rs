//! Merchant settlement runs: each run pays a merchant's available balance
//! in one asset (less its fee) to its registered address through an
//! ordinary payout.
//!
//! A run is created in one transaction with its ledger entry (the amount
//! moves from the merchant's `available` to `paid_out`, the fee to `fees`)
//! and its `settlement.created` webhook event, so the same balance can
//! never be paid twice: the next run sees what is left. The run records
//! the journal positions it covers (`from_seq`, `to_seq`], so its report
//! is rebuilt from the ledger. When its payout ends without paying, the
//! run is closed `failed` with a correction entry that gives the amount
//! and fee back to `available`; when it completes, `paid`.

use keyfold_ledger::{Account, AssetKey, Entry, MerchantAccount, Posting};
use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::coordinator_ledger::{balance_in, post};
use crate::coordinator_webhooks::{enqueue, NewEvent};
use crate::error::StoreError;

/// Migration 9 -> 10: settlement runs.
pub(crate) const MIGRATION_10: &str = "CREATE TABLE settlement_runs (
        run_id      TEXT PRIMARY KEY,
        merchant_id TEXT NOT NULL,
        chain       TEXT NOT NULL,
        asset       TEXT NOT NULL,
        amount      TEXT NOT NULL,
        fee         TEXT NOT NULL,
        destination TEXT NOT NULL,
        from_seq    INTEGER NOT NULL,
        to_seq      INTEGER NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'paid', 'failed')),
        created_at  INTEGER NOT NULL,
        closed_at   INTEGER
    ) STRICT;
    CREATE INDEX runs_by_merchant ON settlement_runs (merchant_id, chain, asset, created_at);";

/// A settlement run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRun {
    /// Its id, also its payout's id.
    pub run_id: String,
    /// The merchant settled.
    pub merchant_id: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Base units paid out (after the fee).
    pub amount: u128,
    /// Base units charged as the fee.
    pub fee: u128,
    /// The merchant's registered address.
    pub destination: String,
    /// Journal positions covered: after this one ...
    pub from_seq: i64,
    /// ... up to and including this one (its own entry).
    pub to_seq: i64,
    /// `open`, `paid` or `failed`.
    pub state: String,
    /// Unix seconds.
    pub created_at: i64,
    /// When it was closed.
    pub closed_at: Option<i64>,
}

const RUN_COLUMNS: &str = "run_id, merchant_id, chain, asset, amount, fee, destination, \
     from_seq, to_seq, state, created_at, closed_at";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SettlementRun> {
    let amount = |i: usize| -> rusqlite::Result<u128> {
        let t: String = r.get(i)?;
        t.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    Ok(SettlementRun {
        run_id: r.get(0)?,
        merchant_id: r.get(1)?,
        chain: r.get(2)?,
        asset: r.get(3)?,
        amount: amount(4)?,
        fee: amount(5)?,
        destination: r.get(6)?,
        from_seq: r.get(7)?,
        to_seq: r.get(8)?,
        state: r.get(9)?,
        created_at: r.get(10)?,
        closed_at: r.get(11)?,
    })
}

/// A run to create: what the caller decided from the merchant's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Its id (and its payout's).
    pub run_id: String,
    /// The merchant.
    pub merchant_id: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// The available balance the caller saw; the run is refused if it
    /// changed since (it is decided again).
    pub available: u128,
    /// The fee out of it.
    pub fee: u128,
    /// Where it goes.
    pub destination: String,
    /// Unix seconds.
    pub now: i64,
}

fn merchant(id: &str, kind: MerchantAccount) -> Account {
    Account::Merchant {
        id: id.to_string(),
        kind,
    }
}

impl CoordinatorStore {
    /// Creates run `r` with its ledger entry and webhook event (see the
    /// module docs). `Ok(None)`: the merchant's available balance is no
    /// longer `r.available` (nothing was written).
    pub fn create_settlement_run(
        &self,
        r: &NewRun,
        event: impl FnOnce(&SettlementRun) -> Option<NewEvent>,
    ) -> Result<Option<SettlementRun>, StoreError> {
        self.db.durably("create_settlement_run", |tx| {
            let err = self.db.err("create_settlement_run");
            let key = AssetKey {
                chain: r.chain.clone(),
                asset: r.asset.clone(),
            };
            let available = balance_in(
                tx,
                &merchant(&r.merchant_id, MerchantAccount::Available),
                &key,
                &err,
            )?;
            if available != i128::try_from(r.available).unwrap_or(-1) || r.fee > r.available {
                return Ok(None);
            }
            let from_seq: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(to_seq), 0) FROM settlement_runs
                     WHERE merchant_id = ?1 AND chain = ?2 AND asset = ?3",
                    params![r.merchant_id, r.chain, r.asset],
                    |row| row.get(0),
                )
                .map_err(&err)?;
            let amount = r.available - r.fee;
            let mut postings = Vec::new();
            if amount > 0 {
                postings.push(Posting {
                    from: merchant(&r.merchant_id, MerchantAccount::Available),
                    to: merchant(&r.merchant_id, MerchantAccount::PaidOut),
                    asset: key.clone(),
                    amount,
                });
            }
            if r.fee > 0 {
                postings.push(Posting {
                    from: merchant(&r.merchant_id, MerchantAccount::Available),
                    to: merchant(&r.merchant_id, MerchantAccount::Fees),
                    asset: key.clone(),
                    amount: r.fee,
                });
            }
            let entry = Entry {
                id: format!("settlement:{}", r.run_id),
                kind: if amount > 0 {
                    keyfold_ledger::EntryKind::Payout
                } else {
                    keyfold_ledger::EntryKind::MerchantFee
                },
                reference: format!(
                    "settlement run {} of merchant {}: {amount} paid out to {}, fee {}",
                    r.run_id, r.merchant_id, r.destination, r.fee
                ),
                at: u64::try_from(r.now).unwrap_or(0),
                postings,
            };
            let to_seq = post(tx, &entry, &err)?.ok_or_else(|| StoreError::Conflict {
                what: "settlement run",
                id: r.run_id.clone(),
            })?;
            tx.execute(
                "INSERT INTO settlement_runs (run_id, merchant_id, chain, asset, amount, fee,
                     destination, from_seq, to_seq, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'open', ?10)",
                params![
                    r.run_id,
                    r.merchant_id,
                    r.chain,
                    r.asset,
                    amount.to_string(),
                    r.fee.to_string(),
                    r.destination,
                    from_seq,
                    to_seq,
                    r.now
                ],
            )
            .map_err(&err)?;
            let run = tx
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM settlement_runs WHERE run_id = ?1"),
                    [&r.run_id],
                    run_row,
                )
                .map_err(&err)?;
            if let Some(e) = event(&run) {
                enqueue(tx, &e, r.now)?;
            }
            Ok(Some(run))
        })
    }

    /// Closes open run `run_id` as `paid` or `failed` (a failed run's
    /// amount and fee go back to the merchant's available balance in the
    /// same transaction), with its webhook event. `Ok(false)`: it was not
    /// open.
    pub fn close_settlement_run(
        &self,
        run_id: &str,
        paid: bool,
        reason: &str,
        now: i64,
        event: impl FnOnce(&SettlementRun) -> Option<NewEvent>,
    ) -> Result<bool, StoreError> {
        self.db.durably("close_settlement_run", |tx| {
            let err = self.db.err("close_settlement_run");
            let run = tx
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM settlement_runs WHERE run_id = ?1"),
                    [run_id],
                    run_row,
                )
                .optional()
                .map_err(&err)?;
            let Some(mut run) = run else {
                return Ok(false);
            };
            if run.state != "open" {
                return Ok(false);
            }
            if !paid {
                let key = AssetKey {
                    chain: run.chain.clone(),
                    asset: run.asset.clone(),
                };
                let back = |kind, amount| Posting {
                    from: merchant(&run.merchant_id, kind),
                    to: merchant(&run.merchant_id, MerchantAccount::Available),
                    asset: key.clone(),
                    amount,
                };
                let mut postings = Vec::new();
                if run.amount > 0 {
                    postings.push(back(MerchantAccount::PaidOut, run.amount));
                }
                if run.fee > 0 {
                    postings.push(back(MerchantAccount::Fees, run.fee));
                }
                if !postings.is_empty() {
                    let entry = Entry {
                        id: format!("settlement:{run_id}:failed"),
                        kind: keyfold_ledger::EntryKind::Correction,
                        reference: format!(
                            "settlement run {run_id} was not paid ({}): amount and fee back to available",
                            reason.chars().take(150).collect::<String>()
                        ),
                        at: u64::try_from(now).unwrap_or(0),
                        postings,
                    };
                    post(tx, &entry, &err)?;
                }
            }
            let state = if paid { "paid" } else { "failed" };
            tx.execute(
                "UPDATE settlement_runs SET state = ?2, closed_at = ?3 WHERE run_id = ?1",
                params![run_id, state, now],
            )
            .map_err(&err)?;
            run.state = state.into();
            run.closed_at = Some(now);
            if let Some(e) = event(&run) {
                enqueue(tx, &e, now)?;
            }
            Ok(true)
        })
    }

    /// Runs newest first: of one merchant (all if `None`), of one state
    /// (all if `None`).
    pub fn settlement_runs(
        &self,
        merchant_id: Option<&str>,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SettlementRun>, StoreError> {
        let err = self.db.err("settlement_runs");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM settlement_runs
                 WHERE (?1 IS NULL OR merchant_id = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY created_at DESC, to_seq DESC LIMIT ?3"
            ))
            .map_err(&err)?;
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(100);
        let rows = stmt
            .query_map(params![merchant_id, state, limit], run_row)
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Run `run_id`.
    pub fn settlement_run(&self, run_id: &str) -> Result<Option<SettlementRun>, StoreError> {
        let err = self.db.err("settlement_run");
        let conn = self.db.reader();
        conn.query_row(
            &format!("SELECT {RUN_COLUMNS} FROM settlement_runs WHERE run_id = ?1"),
            [run_id],
            run_row,
        )
        .optional()
        .map_err(&err)
    }

    /// The entries of positions (`from_seq`, `to_seq`] that touch
    /// `merchant_id`'s accounts, oldest first (a run's report).
    pub fn merchant_entries_between(
        &self,
        merchant_id: &str,
        from_seq: i64,
        to_seq: i64,
    ) -> Result<Vec<crate::EntryRow>, StoreError> {
        let err = self.db.err("merchant_entries_between");
        let conn = self.db.reader();
        let prefix = format!("merchant:{merchant_id}:");
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.seq, e.body FROM ledger_entries e
                 WHERE e.seq > ?1 AND e.seq <= ?2 AND EXISTS (
                     SELECT 1 FROM ledger_postings p WHERE p.entry_seq = e.seq
                       AND substr(p.account, 1, length(?3)) = ?3)
                 ORDER BY e.seq LIMIT 100000",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![from_seq, to_seq, prefix], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        self.entry_rows(rows)
    }

    /// The merchant's `order_id` of the order with internal number `seq`.
    pub fn order_id_of_seq(&self, seq: i64) -> Result<Option<String>, StoreError> {
        let err = self.db.err("order_id_of_seq");
        let conn = self.db.reader();
        conn.query_row("SELECT order_id FROM orders WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .optional()
        .map_err(&err)
    }

    /// The key created under idempotency id `client_id`, if it was made.
    pub fn key_of_client_id(&self, client_id: &str) -> Result<Option<String>, StoreError> {
        let err = self.db.err("key_of_client_id");
        let conn = self.db.reader();
        conn.query_row(
            "SELECT key_id FROM key_requests WHERE client_id = ?1 AND key_id IS NOT NULL",
            [client_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(&err)
    }
}
