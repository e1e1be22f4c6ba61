//! The one error type of the crate, [`LedgerError`].
//!
//! Every refusal names what the operator needs to find and fix the cause:
//! the entry id, the account, the asset, the field and the numbers. Text
//! that came from outside (an account string, an id) is kept to at most
//! [`MAX_SHOWN_CHARS`] characters in an error, so a hostile input cannot
//! blow up a log line, and is printed with `{:?}` so control characters
//! come out escaped.

use std::fmt;

use crate::account::{Account, AssetKey};
use crate::entry::{MAX_ENTRY_ID_LEN, MAX_POSTINGS, MAX_REFERENCE_LEN};

/// Most characters of an outside string kept in an error.
pub const MAX_SHOWN_CHARS: usize = 160;

/// Which name inside an account or asset key is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameField {
    /// The `<id>` of `merchant:<id>:<kind>`.
    MerchantId,
    /// The `<address>` of `wallet:<role>:<address>`.
    Address,
    /// [`AssetKey::chain`].
    Chain,
    /// [`AssetKey::asset`].
    Asset,
}

impl fmt::Display for NameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MerchantId => "merchant id",
            Self::Address => "wallet address",
            Self::Chain => "chain",
            Self::Asset => "asset",
        })
    }
}

/// Why the ledger refused an account string, an entry, an event or a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// An account string that is none of the known forms.
    #[error("{input:?} is not an account: expected world, owed, network_fees, loss, adjustment, wallet:<role>:<address> or merchant:<id>:<kind>")]
    AccountForm {
        /// The refused text (at most [`MAX_SHOWN_CHARS`] characters).
        input: String,
    },
    /// `wallet:<role>:<address>` with an unknown role.
    #[error("{input:?} is not an account: wallet role {role:?} is not one of deposit, hot, cold, gas_tank")]
    WalletRole {
        /// The refused account text (at most [`MAX_SHOWN_CHARS`] characters).
        input: String,
        /// The refused role.
        role: String,
    },
    /// `merchant:<id>:<kind>` with an unknown kind.
    #[error("{input:?} is not an account: merchant account kind {kind:?} is not one of pending, available, paid_out, fees")]
    MerchantAccountKind {
        /// The refused account text (at most [`MAX_SHOWN_CHARS`] characters).
        input: String,
        /// The refused kind.
        kind: String,
    },
    /// A merchant id, wallet address, chain or asset that breaks its rules
    /// (see [`crate::account`]).
    #[error("{}{field} {value:?} is not allowed: {}", entry_prefix(.entry), name_rule(*.field))]
    InvalidName {
        /// The entry it was found in, when it was found in one.
        entry: Option<String>,
        /// Which name.
        field: NameField,
        /// The refused name (at most [`MAX_SHOWN_CHARS`] characters).
        value: String,
    },
    /// An entry kind string that is not one of [`crate::EntryKind`].
    #[error("{input:?} is not an entry kind")]
    EntryKind {
        /// The refused text (at most [`MAX_SHOWN_CHARS`] characters).
        input: String,
    },
    /// An entry id that is empty, too long or holds control characters.
    #[error("entry id {id:?} must be 1 to {MAX_ENTRY_ID_LEN} bytes without control characters")]
    EntryId {
        /// The refused id (at most [`MAX_SHOWN_CHARS`] characters).
        id: String,
    },
    /// A reference that is too long or holds control characters.
    #[error("entry {entry:?}: the reference ({len} bytes) must be at most {MAX_REFERENCE_LEN} bytes without control characters")]
    Reference {
        /// Entry id.
        entry: String,
        /// Length of the refused reference in bytes.
        len: usize,
    },
    /// A correction whose reference does not say why it was made.
    #[error("entry {entry:?}: a correction needs a reference that says why it is made")]
    MissingReason {
        /// Entry id.
        entry: String,
    },
    /// An entry without postings.
    #[error("entry {entry:?} has no postings")]
    NoPostings {
        /// Entry id.
        entry: String,
    },
    /// An entry with more than [`MAX_POSTINGS`] postings.
    #[error("entry {entry:?} has {count} postings; the limit is {MAX_POSTINGS}")]
    TooManyPostings {
        /// Entry id.
        entry: String,
        /// Number of postings given.
        count: usize,
    },
    /// A zero amount: an entry that moves nothing is a mistake upstream.
    #[error("entry {entry:?}: {field} is 0; amounts must be positive")]
    ZeroAmount {
        /// Entry id.
        entry: String,
        /// The field, e.g. `amount` or `postings[2].amount`.
        field: String,
    },
    /// An amount above `i128::MAX`, which no balance could absorb.
    #[error(
        "entry {entry:?}: {field} {amount} is above the largest amount the ledger holds ({})",
        i128::MAX
    )]
    AmountTooLarge {
        /// Entry id.
        entry: String,
        /// The field, e.g. `amount` or `postings[2].amount`.
        field: String,
        /// The refused amount.
        amount: u128,
    },
    /// A posting from an account to itself.
    #[error("entry {entry:?}: posting {posting} moves {account} to itself")]
    SameAccount {
        /// Entry id.
        entry: String,
        /// Index of the posting in the entry.
        posting: usize,
        /// The account on both sides.
        account: Account,
    },
    /// An event field that must be a wallet and is not.
    #[error("entry {entry:?}: {field} must be a wallet account, not {account}")]
    NotAWallet {
        /// Entry id.
        entry: String,
        /// The event field (`from`, `to`).
        field: &'static str,
        /// The account given.
        account: Account,
    },
    /// A network fee in an asset of another chain than the transfer's.
    #[error("entry {entry:?}: the fee is paid in {fee_asset} but the transfer is of {asset}; a fee is paid on the transfer's chain")]
    FeeOnOtherChain {
        /// Entry id.
        entry: String,
        /// The transfer's asset.
        asset: AssetKey,
        /// The fee's asset.
        fee_asset: AssetKey,
    },
    /// The signed amounts of one asset in an entry do not sum to zero.
    #[error("entry {entry:?} does not balance in {asset}: its changes sum to {sum}")]
    Unbalanced {
        /// Entry id.
        entry: String,
        /// The asset.
        asset: AssetKey,
        /// The sum of the signed changes.
        sum: i128,
    },
    /// A balance or net change that would leave the `i128` range.
    #[error("entry {entry:?}: the balance of {account} in {asset} would overflow")]
    Overflow {
        /// Entry id.
        entry: String,
        /// The account.
        account: Account,
        /// The asset.
        asset: AssetKey,
    },
    /// A merchant's cumulative settled total that would leave the `i128`
    /// range (only [`crate::Ledger`] keeps that total).
    #[error(
        "entry {entry:?}: the settled total of merchant {merchant:?} in {asset} would overflow"
    )]
    SettledOverflow {
        /// Entry id.
        entry: String,
        /// Merchant id.
        merchant: String,
        /// The asset.
        asset: AssetKey,
    },
    /// An account that may not go negative would.
    #[error("entry {entry:?}: {account} would be {shortfall} short in {asset} (balance {balance}, change {change})")]
    InsufficientBalance {
        /// Entry id.
        entry: String,
        /// The account.
        account: Account,
        /// The asset.
        asset: AssetKey,
        /// Its balance before the entry.
        balance: i128,
        /// The entry's net change to it.
        change: i128,
        /// How far below zero it would end: what is missing.
        shortfall: u128,
    },
    /// An entry id that is already applied.
    #[error("entry {entry:?} is already applied")]
    Duplicate {
        /// Entry id.
        entry: String,
    },
    /// Invariant: the balances of one asset over all accounts do not sum
    /// to zero.
    #[error("the balances of {asset} sum to {} instead of 0", show_sum(*.sum))]
    AssetNotBalanced {
        /// The asset.
        asset: AssetKey,
        /// The sum, `None` when it does not even fit an `i128`.
        sum: Option<i128>,
    },
    /// Invariant: an account that may not go negative is negative.
    #[error("{account} is negative in {asset}: {balance}")]
    NegativeBalance {
        /// The account.
        account: Account,
        /// The asset.
        asset: AssetKey,
        /// Its balance.
        balance: i128,
    },
    /// Invariant: a merchant's available balance is not its settled total
    /// less what was paid out and charged.
    #[error("merchant {merchant:?} in {asset}: available is {available} but settled {settled} - paid out {paid_out} - fees {fees} differs")]
    MerchantMismatch {
        /// Merchant id.
        merchant: String,
        /// The asset.
        asset: AssetKey,
        /// `merchant:<id>:available`.
        available: i128,
        /// The settled total the ledger kept.
        settled: i128,
        /// `merchant:<id>:paid_out`.
        paid_out: i128,
        /// `merchant:<id>:fees`.
        fees: i128,
    },
}

impl LedgerError {
    /// Attaches the entry id to an [`LedgerError::InvalidName`] found while
    /// checking an entry; other errors already carry theirs.
    pub(crate) fn in_entry(self, id: &str) -> Self {
        match self {
            Self::InvalidName {
                entry: None,
                field,
                value,
            } => Self::InvalidName {
                entry: Some(id.to_owned()),
                field,
                value,
            },
            other => other,
        }
    }
}

/// At most [`MAX_SHOWN_CHARS`] characters of `s`, for an error.
pub(crate) fn shown(s: &str) -> String {
    s.chars().take(MAX_SHOWN_CHARS).collect()
}

fn entry_prefix(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map_or_else(String::new, |id| format!("entry {id:?}: "))
}

fn name_rule(field: NameField) -> String {
    use crate::account::{MAX_ASSET_PART_LEN, MAX_NAME_LEN};
    match field {
        NameField::MerchantId | NameField::Address => {
            format!("write 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")
        }
        NameField::Chain | NameField::Asset => {
            format!("write 1 to {MAX_ASSET_PART_LEN} bytes without control characters")
        }
    }
}

fn show_sum(sum: Option<i128>) -> String {
    sum.map_or_else(|| "more than fits an i128".to_owned(), |s| s.to_string())
}
