//! Business events and the one balanced entry each of them books.
//!
//! The settlement module thinks in events (a deposit was seen, a sweep was
//! sent); [`Event::entry`] turns one into its [`Entry`], so the postings
//! of each kind of event are written once, here, and tested. The postings,
//! in the order the entry lists them (`a -> b` moves from `a` to `b`):
//!
//! | event                     | kind                 | postings                                                                 |
//! | ------------------------- | -------------------- | ------------------------------------------------------------------------ |
//! | [`Event::DepositSeen`]    | `deposit_seen`       | world -> wallet:deposit:address; owed -> merchant:pending                |
//! | [`Event::DepositSettled`] | `deposit_settled`    | merchant:pending -> merchant:available                                   |
//! | [`Event::Deposit`]        | `deposit`            | world -> wallet:deposit:address; owed -> merchant:available              |
//! | [`Event::DepositReversed`]| `deposit_reversed`   | wallet:deposit:address -> world; merchant:pending -> owed                |
//! | [`Event::DepositLost`]    | `deposit_lost`       | from -> loss                                                             |
//! | [`Event::Transfer`]       | per [`TransferKind`] | from -> to; fee: from -> network_fees                                    |
//! | [`Event::Payout`]         | `payout`             | from -> world; merchant: merchant:available -> merchant:paid_out; fee: from -> network_fees |
//! | [`Event::MerchantFee`]    | `merchant_fee`       | merchant:available -> merchant:fees                                      |
//! | [`Event::Funding`]        | `funding`            | world -> to                                                              |
//! | [`Event::Correction`]     | `correction`         | as given                                                                 |
//!
//! Amounts must be positive: an event that moves nothing is a bug
//! upstream and is refused. A fee of zero is different: "no gas was
//! charged" is a real outcome, so it simply adds no posting.

use serde::{Deserialize, Serialize};

use crate::account::{Account, AssetKey, MerchantAccount, WalletRole};
use crate::entry::{amount_string, signed, Entry, EntryKind, Posting};
use crate::error::LedgerError;

/// Gas paid to the network for a transaction, in the chain's native asset
/// (which may be the asset transferred).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fee {
    /// The asset the fee is paid in; on the same chain as the transfer.
    pub asset: AssetKey,
    /// How much, in base units; zero adds no posting.
    #[serde(with = "amount_string")]
    pub amount: u128,
}

/// Which movement between Keyfold's own wallets a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// Deposit address to hot or cold wallet.
    Sweep,
    /// Gas to a wallet that needs it.
    GasTopUp,
    /// Refilling the hot wallet.
    Replenishment,
    /// Hot wallet to cold storage.
    HotToCold,
}

impl TransferKind {
    /// The entry kind a transfer of this kind books.
    pub fn entry_kind(self) -> EntryKind {
        match self {
            Self::Sweep => EntryKind::Sweep,
            Self::GasTopUp => EntryKind::GasTopUp,
            Self::Replenishment => EntryKind::Replenishment,
            Self::HotToCold => EntryKind::HotToCold,
        }
    }
}

/// Something that happened, to be booked as one balanced [`Entry`].
///
/// `merchant` fields are merchant ids and `address` fields are deposit
/// addresses; both follow the rules of [`crate::account`]. In JSON the
/// event is tagged by `"event"` and amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A deposit seen on chain, not settled yet.
    DepositSeen {
        /// The asset deposited.
        asset: AssetKey,
        /// The merchant it is for.
        merchant: String,
        /// The deposit address it arrived at.
        address: String,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A seen deposit settled: moved from pending to available.
    DepositSettled {
        /// The asset.
        asset: AssetKey,
        /// The merchant.
        merchant: String,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A deposit seen and settled at once.
    Deposit {
        /// The asset deposited.
        asset: AssetKey,
        /// The merchant it is for.
        merchant: String,
        /// The deposit address it arrived at.
        address: String,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A reorg removed a deposit that was seen but not settled.
    DepositReversed {
        /// The asset.
        asset: AssetKey,
        /// The merchant.
        merchant: String,
        /// The deposit address.
        address: String,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A reorg removed a deposit after it was settled: the merchant stays
    /// credited and the treasury books the loss, taken from the wallet
    /// that no longer holds the funds.
    DepositLost {
        /// The asset.
        asset: AssetKey,
        /// The wallet the funds are gone from.
        from: Account,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A movement between two of Keyfold's wallets.
    Transfer {
        /// Which movement.
        kind: TransferKind,
        /// The asset moved.
        asset: AssetKey,
        /// The sending wallet; it also pays the fee.
        from: Account,
        /// The receiving wallet.
        to: Account,
        /// How much arrives at `to`.
        #[serde(with = "amount_string")]
        amount: u128,
        /// Gas paid by `from`.
        fee: Option<Fee>,
    },
    /// A payment from a wallet to the outside world, for a merchant or for
    /// the treasury itself.
    Payout {
        /// The asset paid.
        asset: AssetKey,
        /// The paying wallet; it also pays the fee.
        from: Account,
        /// The merchant whose available balance pays for it, if any.
        merchant: Option<String>,
        /// How much the recipient gets.
        #[serde(with = "amount_string")]
        amount: u128,
        /// Gas paid by `from`.
        fee: Option<Fee>,
    },
    /// A fee charged to a merchant.
    MerchantFee {
        /// The asset.
        asset: AssetKey,
        /// The merchant.
        merchant: String,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// An inflow to a wallet that is not from an order.
    Funding {
        /// The asset.
        asset: AssetKey,
        /// The receiving wallet.
        to: Account,
        /// How much.
        #[serde(with = "amount_string")]
        amount: u128,
    },
    /// A manual correction: arbitrary postings, and a reference that says
    /// why.
    Correction {
        /// The postings, as given.
        postings: Vec<Posting>,
    },
}

impl Event {
    /// The kind of entry the event books.
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::DepositSeen { .. } => EntryKind::DepositSeen,
            Self::DepositSettled { .. } => EntryKind::DepositSettled,
            Self::Deposit { .. } => EntryKind::Deposit,
            Self::DepositReversed { .. } => EntryKind::DepositReversed,
            Self::DepositLost { .. } => EntryKind::DepositLost,
            Self::Transfer { kind, .. } => kind.entry_kind(),
            Self::Payout { .. } => EntryKind::Payout,
            Self::MerchantFee { .. } => EntryKind::MerchantFee,
            Self::Funding { .. } => EntryKind::Funding,
            Self::Correction { .. } => EntryKind::Correction,
        }
    }

    /// Builds the event's entry under `id` (the idempotency key), with
    /// `reference` and the caller's timestamp `at`, and validates it, so an
    /// `Ok` entry passes [`Entry::validate`].
    pub fn entry(&self, id: &str, reference: &str, at: u64) -> Result<Entry, LedgerError> {
        let postings = self.postings(id, reference)?;
        let entry = Entry {
            id: id.to_owned(),
            kind: self.kind(),
            reference: reference.to_owned(),
            at,
            postings,
        };
        entry.validate()?;
        Ok(entry)
    }

    /// The event's postings, after the checks the entry alone cannot make
    /// (wallet-only fields, fee chain, a correction's reason) and the
    /// amount checks, so those refusals name the event's fields rather
    /// than posting indexes.
    fn postings(&self, id: &str, reference: &str) -> Result<Vec<Posting>, LedgerError> {
        let merchant = |m: &str, kind| Account::merchant(m, kind);
        let deposit = |address: &str| Account::wallet(WalletRole::Deposit, address);
        let posting = |from: Account, to: Account, asset: &AssetKey, amount| {
            Posting::new(from, to, asset.clone(), amount)
        };
        Ok(match self {
            Self::DepositSeen {
                asset,
                merchant: m,
                address,
                amount,
            } => {
                positive(id, "amount", *amount)?;
                vec![
                    posting(Account::World, deposit(address), asset, *amount),
                    posting(
                        Account::Owed,
                        merchant(m, MerchantAccount::Pending),
                        asset,
                        *amount,
                    ),
                ]
            }
            Self::DepositSettled {
                asset,
                merchant: m,
                amount,
            } => {
                positive(id, "amount", *amount)?;
                vec![posting(
                    merchant(m, MerchantAccount::Pending),
                    merchant(m, MerchantAccount::Available),
                    asset,
                    *amount,
                )]
            }
            Self::Deposit {
                asset,
                merchant: m,
                address,
                amount,
            } => {
                positive(id, "amount", *amount)?;
                vec![
                    posting(Account::World, deposit(address), asset, *amount),
                    posting(
                        Account::Owed,
                        merchant(m, MerchantAccount::Available),
                        asset,
                        *amount,
                    ),
                ]
            }
            Self::DepositReversed {
                asset,
                merchant: m,
                address,
                amount,
            } => {
                positive(id, "amount", *amount)?;
                vec![
                    posting(deposit(address), Account::World, asset, *amount),
                    posting(
                        merchant(m, MerchantAccount::Pending),
                        Account::Owed,
                        asset,
                        *amount,
                    ),
                ]
            }
            Self::DepositLost {
                asset,
                from,
                amount,
            } => {
                wallet(id, "from", from)?;
                positive(id, "amount", *amount)?;
                vec![posting(from.clone(), Account::Loss, asset, *amount)]
            }
            Self::Transfer {
                kind: _,
                asset,
                from,
                to,
                amount,
                fee,
            } => {
                wallet(id, "from", from)?;
                wallet(id, "to", to)?;
                positive(id, "amount", *amount)?;
                let mut postings = vec![posting(from.clone(), to.clone(), asset, *amount)];
                postings.extend(fee_posting(id, asset, from, fee.as_ref())?);
                postings
            }
            Self::Payout {
                asset,
                from,
                merchant: m,
                amount,
                fee,
            } => {
                wallet(id, "from", from)?;
                positive(id, "amount", *amount)?;
                let mut postings = vec![posting(from.clone(), Account::World, asset, *amount)];
                if let Some(m) = m {
                    postings.push(posting(
                        merchant(m, MerchantAccount::Available),
                        merchant(m, MerchantAccount::PaidOut),
                        asset,
                        *amount,
                    ));
                }
                postings.extend(fee_posting(id, asset, from, fee.as_ref())?);
                postings
            }
            Self::MerchantFee {
                asset,
                merchant: m,
                amount,
            } => {
                positive(id, "amount", *amount)?;
                vec![posting(
                    merchant(m, MerchantAccount::Available),
                    merchant(m, MerchantAccount::Fees),
                    asset,
                    *amount,
                )]
            }
            Self::Funding { asset, to, amount } => {
                wallet(id, "to", to)?;
                positive(id, "amount", *amount)?;
                vec![posting(Account::World, to.clone(), asset, *amount)]
            }
            Self::Correction { postings } => {
                // The reference is the only record of why the books were
                // changed by hand, so it may not be blank.
                if reference.trim().is_empty() {
                    return Err(LedgerError::MissingReason {
                        entry: id.to_owned(),
                    });
                }
                postings.clone()
            }
        })
    }
}

/// Refuses a zero amount or one above `i128::MAX`, naming the event field.
fn positive(id: &str, field: &str, amount: u128) -> Result<(), LedgerError> {
    if amount == 0 {
        return Err(LedgerError::ZeroAmount {
            entry: id.to_owned(),
            field: field.to_owned(),
        });
    }
    signed(id, field, amount).map(|_| ())
}

/// Refuses a non-wallet account in a field that must hold a wallet.
fn wallet(id: &str, field: &'static str, account: &Account) -> Result<(), LedgerError> {
    if account.is_wallet() {
        Ok(())
    } else {
        Err(LedgerError::NotAWallet {
            entry: id.to_owned(),
            field,
            account: account.clone(),
        })
    }
}

/// The posting of a fee paid by `from`, none for a missing or zero fee.
fn fee_posting(
    id: &str,
    asset: &AssetKey,
    from: &Account,
    fee: Option<&Fee>,
) -> Result<Option<Posting>, LedgerError> {
    let Some(fee) = fee.filter(|f| f.amount > 0) else {
        return Ok(None);
    };
    // Gas is paid on the chain the transaction runs on; a fee booked on
    // another chain would move the wrong chain's balances.
    if fee.asset.chain != asset.chain {
        return Err(LedgerError::FeeOnOtherChain {
            entry: id.to_owned(),
            asset: asset.clone(),
            fee_asset: fee.asset.clone(),
        });
    }
    signed(id, "fee.amount", fee.amount)?;
    Ok(Some(Posting::new(
        from.clone(),
        Account::NetworkFees,
        fee.asset.clone(),
        fee.amount,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameField;

    fn eth() -> AssetKey {
        AssetKey::new("devnet-l1", "ETH")
    }
    fn usdc() -> AssetKey {
        AssetKey::new("devnet-l1", "USDC")
    }
    fn m(kind: MerchantAccount) -> Account {
        Account::merchant("m1", kind)
    }
    fn dep() -> Account {
        Account::wallet(WalletRole::Deposit, "0xd1")
    }
    fn hot() -> Account {
        Account::wallet(WalletRole::Hot, "0xh")
    }
    fn cold() -> Account {
        Account::wallet(WalletRole::Cold, "0xc")
    }
    fn p(from: Account, to: Account, asset: AssetKey, amount: u128) -> Posting {
        Posting::new(from, to, asset, amount)
    }
    fn fee(amount: u128) -> Option<Fee> {
        Some(Fee {
            asset: eth(),
            amount,
        })
    }

    /// Books `event` and checks kind, fields and postings.
    fn books(event: Event, kind: EntryKind, postings: Vec<Posting>) {
        let entry = event.entry("id-1", "ref", 42).unwrap();
        assert_eq!(entry.id, "id-1");
        assert_eq!(entry.reference, "ref");
        assert_eq!(entry.at, 42);
        assert_eq!(entry.kind, kind);
        assert_eq!(entry.postings, postings);
    }

    #[test]
    fn deposit_events() {
        books(
            Event::DepositSeen {
                asset: usdc(),
                merchant: "m1".into(),
                address: "0xd1".into(),
                amount: 500,
            },
            EntryKind::DepositSeen,
            vec![
                p(Account::World, dep(), usdc(), 500),
                p(Account::Owed, m(MerchantAccount::Pending), usdc(), 500),
            ],
        );
        books(
            Event::DepositSettled {
                asset: usdc(),
                merchant: "m1".into(),
                amount: 500,
            },
            EntryKind::DepositSettled,
            vec![p(
                m(MerchantAccount::Pending),
                m(MerchantAccount::Available),
                usdc(),
                500,
            )],
        );
        books(
            Event::Deposit {
                asset: usdc(),
                merchant: "m1".into(),
                address: "0xd1".into(),
                amount: 7,
            },
            EntryKind::Deposit,
            vec![
                p(Account::World, dep(), usdc(), 7),
                p(Account::Owed, m(MerchantAccount::Available), usdc(), 7),
            ],
        );
        books(
            Event::DepositReversed {
                asset: usdc(),
                merchant: "m1".into(),
                address: "0xd1".into(),
                amount: 9,
            },
            EntryKind::DepositReversed,
            vec![
                p(dep(), Account::World, usdc(), 9),
                p(m(MerchantAccount::Pending), Account::Owed, usdc(), 9),
            ],
        );
        books(
            Event::DepositLost {
                asset: usdc(),
                from: hot(),
                amount: 3,
            },
            EntryKind::DepositLost,
            vec![p(hot(), Account::Loss, usdc(), 3)],
        );
    }

    #[test]
    fn transfers() {
        let cases = [
            (TransferKind::Sweep, EntryKind::Sweep),
            (TransferKind::GasTopUp, EntryKind::GasTopUp),
            (TransferKind::Replenishment, EntryKind::Replenishment),
            (TransferKind::HotToCold, EntryKind::HotToCold),
        ];
        for (kind, entry_kind) in cases {
            // A token transfer whose gas is paid in the native coin.
            books(
                Event::Transfer {
                    kind,
                    asset: usdc(),
                    from: dep(),
                    to: hot(),
                    amount: 100,
                    fee: fee(21),
                },
                entry_kind,
                vec![
                    p(dep(), hot(), usdc(), 100),
                    p(dep(), Account::NetworkFees, eth(), 21),
                ],
            );
        }
        // Native transfer, no fee; and a zero fee adds nothing.
        for no_fee in [None, fee(0)] {
            books(
                Event::Transfer {
                    kind: TransferKind::HotToCold,
                    asset: eth(),
                    from: hot(),
                    to: cold(),
                    amount: 100,
                    fee: no_fee,
                },
                EntryKind::HotToCold,
                vec![p(hot(), cold(), eth(), 100)],
            );
        }
    }

    #[test]
    fn payouts_fees_funding() {
        books(
            Event::Payout {
                asset: usdc(),
                from: hot(),
                merchant: Some("m1".into()),
                amount: 40,
                fee: fee(2),
            },
            EntryKind::Payout,
            vec![
                p(hot(), Account::World, usdc(), 40),
                p(
                    m(MerchantAccount::Available),
                    m(MerchantAccount::PaidOut),
                    usdc(),
                    40,
                ),
                p(hot(), Account::NetworkFees, eth(), 2),
            ],
        );
        books(
            Event::Payout {
                asset: eth(),
                from: hot(),
                merchant: None,
                amount: 40,
                fee: fee(0),
            },
            EntryKind::Payout,
            vec![p(hot(), Account::World, eth(), 40)],
        );
        books(
            Event::MerchantFee {
                asset: usdc(),
                merchant: "m1".into(),
                amount: 1,
            },
            EntryKind::MerchantFee,
            vec![p(
                m(MerchantAccount::Available),
                m(MerchantAccount::Fees),
                usdc(),
                1,
            )],
        );
        books(
            Event::Funding {
                asset: eth(),
                to: Account::wallet(WalletRole::GasTank, "0xg"),
                amount: 1_000,
            },
            EntryKind::Funding,
            vec![p(
                Account::World,
                Account::wallet(WalletRole::GasTank, "0xg"),
                eth(),
                1_000,
            )],
        );
        let postings = vec![
            p(Account::Adjustment, hot(), eth(), 5),
            p(
                m(MerchantAccount::Fees),
                m(MerchantAccount::Available),
                usdc(),
                1,
            ),
        ];
        books(
            Event::Correction {
                postings: postings.clone(),
            },
            EntryKind::Correction,
            postings,
        );
    }

    #[test]
    fn refusals() {
        let err = |event: Event| event.entry("id-1", "ref", 0).unwrap_err();
        assert_eq!(
            err(Event::DepositSettled {
                asset: usdc(),
                merchant: "m1".into(),
                amount: 0
            }),
            LedgerError::ZeroAmount {
                entry: "id-1".into(),
                field: "amount".into()
            }
        );
        assert_eq!(
            err(Event::Funding {
                asset: eth(),
                to: hot(),
                amount: u128::MAX
            }),
            LedgerError::AmountTooLarge {
                entry: "id-1".into(),
                field: "amount".into(),
                amount: u128::MAX
            }
        );
        assert_eq!(
            err(Event::Payout {
                asset: eth(),
                from: hot(),
                merchant: None,
                amount: 1,
                fee: fee(u128::MAX)
            }),
            LedgerError::AmountTooLarge {
                entry: "id-1".into(),
                field: "fee.amount".into(),
                amount: u128::MAX
            }
        );
        assert_eq!(
            err(Event::Transfer {
                kind: TransferKind::Sweep,
                asset: eth(),
                from: dep(),
                to: Account::World,
                amount: 1,
                fee: None
            }),
            LedgerError::NotAWallet {
                entry: "id-1".into(),
                field: "to",
                account: Account::World
            }
        );
        assert_eq!(
            err(Event::Payout {
                asset: eth(),
                from: m(MerchantAccount::Available),
                merchant: None,
                amount: 1,
                fee: None
            }),
            LedgerError::NotAWallet {
                entry: "id-1".into(),
                field: "from",
                account: m(MerchantAccount::Available)
            }
        );
        assert!(matches!(
            err(Event::DepositLost {
                asset: eth(),
                from: Account::Loss,
                amount: 1
            }),
            LedgerError::NotAWallet { field: "from", .. }
        ));
        assert!(matches!(
            err(Event::Funding {
                asset: eth(),
                to: Account::Adjustment,
                amount: 1
            }),
            LedgerError::NotAWallet { field: "to", .. }
        ));
        assert_eq!(
            err(Event::Transfer {
                kind: TransferKind::HotToCold,
                asset: eth(),
                from: hot(),
                to: hot(),
                amount: 1,
                fee: None
            }),
            LedgerError::SameAccount {
                entry: "id-1".into(),
                posting: 0,
                account: hot()
            }
        );
        assert_eq!(
            err(Event::Transfer {
                kind: TransferKind::Sweep,
                asset: eth(),
                from: dep(),
                to: hot(),
                amount: 1,
                fee: Some(Fee {
                    asset: AssetKey::new("devnet-l2", "ETH"),
                    amount: 1
                })
            }),
            LedgerError::FeeOnOtherChain {
                entry: "id-1".into(),
                asset: eth(),
                fee_asset: AssetKey::new("devnet-l2", "ETH")
            }
        );
        assert_eq!(
            err(Event::DepositSeen {
                asset: eth(),
                merchant: "m/1".into(),
                address: "0xd1".into(),
                amount: 1
            }),
            LedgerError::InvalidName {
                entry: Some("id-1".into()),
                field: NameField::MerchantId,
                value: "m/1".into()
            }
        );
        let correction = Event::Correction {
            postings: vec![p(Account::Adjustment, hot(), eth(), 5)],
        };
        for blank in ["", "  "] {
            assert_eq!(
                correction.entry("c1", blank, 0),
                Err(LedgerError::MissingReason { entry: "c1".into() })
            );
        }
        assert_eq!(
            Event::Correction { postings: vec![] }.entry("c1", "why", 0),
            Err(LedgerError::NoPostings { entry: "c1".into() })
        );
        assert_eq!(
            Event::Correction {
                postings: vec![p(Account::Adjustment, hot(), eth(), 0)]
            }
            .entry("c1", "why", 0),
            Err(LedgerError::ZeroAmount {
                entry: "c1".into(),
                field: "postings[0].amount".into()
            })
        );
        // The entry id is checked too.
        assert_eq!(
            correction.entry("", "why", 0),
            Err(LedgerError::EntryId { id: "".into() })
        );
    }

    #[test]
    fn json_form() {
        let event = Event::Payout {
            asset: usdc(),
            from: hot(),
            merchant: Some("m1".into()),
            amount: 40,
            fee: fee(2),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "event": "payout",
                "asset": {"chain": "devnet-l1", "asset": "USDC"},
                "from": "wallet:hot:0xh",
                "merchant": "m1",
                "amount": "40",
                "fee": {"asset": {"chain": "devnet-l1", "asset": "ETH"}, "amount": "2"}
            })
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}
