//! `keyfold-ledger`: a pure double-entry ledger for Keyfold settlement.
//!
//! Balances are exact integers in base units (wei, lamports, token
//! units), per account and per asset ([`AssetKey`]: a chain and a
//! symbol); there are no floats anywhere. Nothing here does I/O, reads the
//! clock or draws random numbers: an entry's timestamp is an argument, so
//! the coordinator's settlement module drives these functions from inside
//! its database transactions and every rule is testable on its own.
//!
//! * [`account`]: accounts ([`Account`]: world, owed, wallets, merchant
//!   accounts, network fees, loss, adjustment) with a stable string form
//!   used as a database key, and asset keys ([`AssetKey`]).
//! * [`entry`]: postings ([`Posting`], an amount moved from one account
//!   to another) and entries ([`Entry`], 1 to [`MAX_POSTINGS`] postings
//!   under an idempotency key), with [`Entry::validate`] and
//!   [`Entry::deltas`].
//! * [`event`]: the business events of settlement ([`Event`]), each
//!   building its one balanced entry with [`Event::entry`].
//! * [`balances`]: [`apply_to()`], which checks an entry against the
//!   current balances of just the accounts it touches and returns their
//!   new balances (what the coordinator's SQLite store needs), and the
//!   whole in-memory [`Ledger`] with duplicate refusal,
//!   [`Ledger::replay`] and [`Ledger::check_invariants`].
//! * [`error`]: the one error type, [`LedgerError`], naming the entry,
//!   account, asset and field of every refusal.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Refusals carry the entry id, account, asset and numbers by value so the
// caller can act on them without parsing text; that makes `LedgerError`
// about 160 bytes. Ledger calls run inside database transactions, where
// moving that on the error path costs nothing measurable, so the size is
// accepted rather than boxing every field.
#![allow(clippy::result_large_err)]

pub mod account;
pub mod balances;
pub mod entry;
pub mod error;
pub mod event;

pub use account::{
    Account, AssetKey, MerchantAccount, WalletRole, MAX_ASSET_PART_LEN, MAX_NAME_LEN,
};
pub use balances::{apply_to, BalanceKey, Balances, Ledger, MerchantSummary};
pub use entry::{
    Deltas, Entry, EntryKind, Posting, MAX_ENTRY_ID_LEN, MAX_POSTINGS, MAX_REFERENCE_LEN,
};
pub use error::{LedgerError, NameField, MAX_SHOWN_CHARS};
pub use event::{Event, Fee, TransferKind};
