//! The ledger's API views: `GET /v1/balances` and `GET /v1/ledger` (a
//! merchant sees its own accounts and the entries that touch them; an
//! operator sees everything).

use keyfold_ledger::Entry;
use serde::{Deserialize, Serialize};

use crate::service::{ServiceError, Tenant};
use crate::Coordinator;

/// One account's balance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceView {
    /// The account (`merchant:acme:available`, `wallet:hot:0x…`, …).
    pub account: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// Base units, decimal (signed: `world`, `owed` and `adjustment` go
    /// below zero by design).
    pub balance: String,
}

/// `GET /v1/balances`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceList {
    /// In account order.
    pub balances: Vec<BalanceView>,
}

/// One journal entry with its position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntryView {
    /// Position in the journal (the next page's cursor).
    pub seq: i64,
    /// The entry: id, kind, reference, time and postings (amounts as
    /// decimal strings of base units).
    #[serde(flatten)]
    pub entry: Entry,
}

/// `GET /v1/ledger`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerPage {
    /// Oldest first.
    pub entries: Vec<LedgerEntryView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// The account prefix `tenant` may see within `requested`.
fn scope(tenant: &Tenant, requested: Option<String>) -> Result<Option<String>, ServiceError> {
    if requested.as_ref().is_some_and(|a| a.len() > 200) {
        return Err(ServiceError::BadRequest(
            "account is longer than 200 characters".into(),
        ));
    }
    match tenant.merchant() {
        None => Ok(requested),
        Some(m) => {
            let own = format!("merchant:{m}:");
            match requested {
                None => Ok(Some(own)),
                Some(a) if a.starts_with(&own) => Ok(Some(a)),
                // Another merchant's or the treasury's accounts: nothing.
                Some(_) => Err(ServiceError::NotFound("no such account among yours".into())),
            }
        }
    }
}

impl Coordinator {
    /// `GET /v1/balances?chain=&account=` (account: a name or its prefix).
    pub async fn balances(
        &self,
        tenant: Tenant,
        chain: Option<String>,
        account: Option<String>,
    ) -> Result<BalanceList, ServiceError> {
        let prefix = scope(&tenant, account)?;
        let rows = self
            .read(move |s| s.ledger_balances(chain.as_deref(), prefix.as_deref()))
            .await?;
        Ok(BalanceList {
            balances: rows
                .into_iter()
                .map(|r| BalanceView {
                    account: r.account.to_string(),
                    chain: r.asset.chain,
                    asset: r.asset.asset,
                    balance: r.balance.to_string(),
                })
                .collect(),
        })
    }

    /// `GET /v1/ledger?account=&cursor=&limit=`.
    pub async fn ledger_page(
        &self,
        tenant: Tenant,
        account: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<LedgerPage, ServiceError> {
        let prefix = scope(&tenant, account)?;
        let after = match cursor.as_deref() {
            None => 0,
            Some(c) => c.parse::<i64>().ok().filter(|c| *c >= 0).ok_or_else(|| {
                ServiceError::BadRequest(format!("cursor {c:?} is not one this API gave"))
            })?,
        };
        let limit = limit
            .unwrap_or(100)
            .clamp(1, keyfold_store::MAX_LEDGER_PAGE);
        let rows = self
            .read(move |s| s.ledger_entries(after, limit, prefix.as_deref()))
            .await?;
        let next_cursor = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.seq.to_string()))
            .flatten();
        Ok(LedgerPage {
            entries: rows
                .into_iter()
                .map(|r| LedgerEntryView {
                    seq: r.seq,
                    entry: r.entry,
                })
                .collect(),
            next_cursor,
        })
    }
}

/// `POST /v1/ledger/entries` (operators): an entry a person books, an
/// inflow from outside (`funding`, such as an operator funding a cold
/// wallet) or a `correction` (arbitrary postings, with the reason in
/// `reference`). Every other kind is booked by Keyfold itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManualEntry {
    /// Idempotency key (stored as `manual:<id>`): the same id books once.
    pub id: String,
    /// Why (required: the audit trail of the books).
    pub reference: String,
    /// `{"event": "funding", "asset": {"chain", "asset"}, "to": "wallet:cold:0x…",
    /// "amount": "…"}` or `{"event": "correction", "postings": […]}`.
    pub event: keyfold_ledger::Event,
}

impl Coordinator {
    /// Books `m` (see [`ManualEntry`]); the entry with its position.
    pub async fn book_manual(&self, m: ManualEntry) -> Result<LedgerEntryView, ServiceError> {
        if !matches!(
            m.event,
            keyfold_ledger::Event::Funding { .. } | keyfold_ledger::Event::Correction { .. }
        ) {
            return Err(ServiceError::BadRequest(
                "only funding and correction entries are booked by hand; Keyfold books the others with the state changes that cause them".into(),
            ));
        }
        if m.reference.trim().is_empty() {
            return Err(ServiceError::BadRequest(
                "reference must say why the entry is booked".into(),
            ));
        }
        crate::requests::intake::check_client_id("id", &m.id)?;
        let id = format!("manual:{}", m.id);
        let entry = m
            .event
            .entry(&id, &m.reference, self.clock.now_secs())
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let (store, e2) = (self.store.clone(), entry.clone());
        match tokio::task::spawn_blocking(move || store.post_entry(&e2))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
        {
            Ok(_) => {}
            // The ledger refused it (unbalanced, or an account below zero).
            Err(keyfold_store::StoreError::InvalidInput { reason, .. }) => {
                return Err(ServiceError::BadRequest(reason));
            }
            Err(e) => return Err(ServiceError::Internal(e.to_string())),
        }
        let wanted = id.clone();
        let rows = self
            .read(move |s| s.ledger_entry(&wanted))
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("entry {id} vanished")))?;
        if rows.entry != entry {
            return Err(ServiceError::Conflict(format!(
                "ledger entry id {} was used for another entry",
                m.id
            )));
        }
        tracing::info!(entry = %rows.entry.id, kind = %rows.entry.kind, "manual ledger entry booked");
        Ok(LedgerEntryView {
            seq: rows.seq,
            entry: rows.entry,
        })
    }
}
