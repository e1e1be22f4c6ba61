//! Applying entries to balances: [`apply_to`] on a partial map, and the
//! whole in-memory [`Ledger`].
//!
//! The coordinator keeps balances in SQLite. Inside the database
//! transaction that records a state change it loads the balances of the
//! accounts an entry touches (keys from [`Entry::deltas`]), calls
//! [`apply_to`], and writes back what it returns; a refusal rolls the
//! whole transaction back. So [`apply_to`] needs only the touched
//! accounts, and treats any account missing from the map as holding 0.
//!
//! [`Ledger`] holds everything in memory, for auditors, `keyfold
//! reconcile` replay and tests. Its [`Ledger::apply`] is [`apply_to`] plus
//! a refusal of entry ids already applied and the bookkeeping that
//! [`Ledger::check_invariants`] needs.

use std::collections::{BTreeMap, BTreeSet};

use crate::account::{Account, AssetKey, MerchantAccount};
use crate::entry::{Entry, EntryKind};
use crate::error::LedgerError;

/// A balance key: an account in one asset.
pub type BalanceKey = (Account, AssetKey);

/// Balances in base units, by account and asset. In a map given to
/// [`apply_to`], a missing key means a balance of 0.
pub type Balances = BTreeMap<BalanceKey, i128>;

/// Validates `entry` and applies it to `current`, returning the new balance
/// of every `(account, asset)` the entry touches (and only those), in the
/// order of the keys.
///
/// `current` needs to hold only the touched accounts; missing ones count
/// as 0. The check is on each account's net change, not posting by
/// posting: the postings of an entry happen together, so money may pass
/// through an empty wallet within one entry.
///
/// Refuses, leaving the caller's balances as they were, when the entry is
/// invalid ([`Entry::validate`]), when an account that may not go negative
/// ([`Account::may_go_negative`]) would end below zero
/// ([`LedgerError::InsufficientBalance`], with the balance, the change and
/// the shortfall), or when a balance would leave the `i128` range. When
/// several accounts fall short, the first in key order is reported.
pub fn apply_to(current: &Balances, entry: &Entry) -> Result<Balances, LedgerError> {
    let mut new = Balances::new();
    for (key, change) in entry.deltas()? {
        let balance = current.get(&key).copied().unwrap_or(0);
        let (account, asset) = &key;
        let after = balance
            .checked_add(change)
            .ok_or_else(|| LedgerError::Overflow {
                entry: entry.id.clone(),
                account: account.clone(),
                asset: asset.clone(),
            })?;
        if after < 0 && !account.may_go_negative() {
            return Err(LedgerError::InsufficientBalance {
                entry: entry.id.clone(),
                account: account.clone(),
                asset: asset.clone(),
                balance,
                change,
                shortfall: after.unsigned_abs(),
            });
        }
        new.insert(key, after);
    }
    Ok(new)
}

/// A merchant's position in one asset, from [`Ledger::merchant_summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MerchantSummary {
    /// Deposits seen but not settled.
    pub pending: i128,
    /// Settled and owed to the merchant now.
    pub available: i128,
    /// Cumulative amount paid to or for the merchant.
    pub paid_out: i128,
    /// Cumulative fees charged to the merchant.
    pub fees: i128,
    /// Cumulative settled total (see [`Ledger`]); when the invariants hold,
    /// `available == settled - paid_out - fees`.
    pub settled: i128,
}

/// A whole ledger in memory: every balance, the ids of the entries
/// applied, and each merchant's cumulative settled total per asset.
///
/// # The settled total
///
/// [`Ledger::check_invariants`] checks, for every merchant and asset, that
/// `available == settled - paid_out - fees`: what the merchant can still
/// be paid is exactly what was settled to it less what it was paid and
/// charged. The ledger keeps `settled` as it applies entries, by kind:
///
/// * `deposit_settled` and `deposit` entries: every posting into
///   `merchant:<id>:available` adds its amount to that merchant's
///   settled total, and every posting out of it subtracts it. (The events
///   only ever post into it.)
/// * `correction` entries: the merchant's `available`, `paid_out` and
///   `fees` form one group; a posting into the group from outside it adds
///   to the settled total, a posting out of the group to outside it
///   subtracts, and a posting within the group changes nothing. So a
///   correction into `available` counts as settled, one out of
///   `available` to anything but the merchant's own `paid_out`/`fees`
///   counts as negative settled, and a correction of `paid_out` or `fees`
///   from outside (booking a payout made off-ledger, say) counts as
///   settled too. Corrections therefore never break the invariant.
/// * Every other kind leaves the settled total alone. The events of those
///   kinds only move value within the group (`payout`: available ->
///   paid_out, `merchant_fee`: available -> fees) or do not touch it. An
///   entry of such a kind built by hand that moves value into or out of
///   the group is applied (balances alone cannot tell it is wrong) and
///   then reported by [`Ledger::check_invariants`] as
///   [`LedgerError::MerchantMismatch`]: that is what the check is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    balances: Balances,
    /// Settled total per (merchant id, asset).
    settled: BTreeMap<(String, AssetKey), i128>,
    applied: BTreeSet<String>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ledger with `entries` applied in order; stops at the first
    /// refusal and returns it. It does not run
    /// [`Ledger::check_invariants`]; call it on the result.
    pub fn replay<'a, I>(entries: I) -> Result<Self, LedgerError>
    where
        I: IntoIterator<Item = &'a Entry>,
    {
        let mut ledger = Self::new();
        for entry in entries {
            ledger.apply(entry)?;
        }
        Ok(ledger)
    }

    /// Applies `entry`, all or nothing: on any refusal the ledger is left
    /// exactly as it was.
    ///
    /// Refuses what [`apply_to`] refuses, an entry whose id was already
    /// applied ([`LedgerError::Duplicate`], whatever its content: the id is
    /// the idempotency key), and an entry that would push a merchant's
    /// settled total out of the `i128` range
    /// ([`LedgerError::SettledOverflow`], which takes more than 10^38 base
    /// units).
    pub fn apply(&mut self, entry: &Entry) -> Result<(), LedgerError> {
        if self.applied.contains(&entry.id) {
            return Err(LedgerError::Duplicate {
                entry: entry.id.clone(),
            });
        }
        let balances = apply_to(&self.balances, entry)?;
        let mut settled = BTreeMap::new();
        for ((merchant, asset), change) in settled_changes(entry)? {
            let key = (merchant, asset);
            let before = self.settled.get(&key).copied().unwrap_or(0);
            let after = before
                .checked_add(change)
                .ok_or_else(|| LedgerError::SettledOverflow {
                    entry: entry.id.clone(),
                    merchant: key.0.clone(),
                    asset: key.1.clone(),
                })?;
            settled.insert(key, after);
        }
        // Everything is computed; nothing below can fail.
        self.balances.extend(balances);
        self.settled.extend(settled);
        self.applied.insert(entry.id.clone());
        Ok(())
    }

    /// The balance of `account` in `asset`; 0 if never touched.
    pub fn balance(&self, account: &Account, asset: &AssetKey) -> i128 {
        self.balances
            .get(&(account.clone(), asset.clone()))
            .copied()
            .unwrap_or(0)
    }

    /// Every balance ever touched (zeros included), in key order.
    pub fn balances(&self) -> impl Iterator<Item = (&Account, &AssetKey, i128)> + '_ {
        self.balances
            .iter()
            .map(|((account, asset), &balance)| (account, asset, balance))
    }

    /// The balances as a map, e.g. to hand to [`apply_to`].
    pub fn balance_map(&self) -> &Balances {
        &self.balances
    }

    /// Whether an entry with this id was applied.
    pub fn is_applied(&self, id: &str) -> bool {
        self.applied.contains(id)
    }

    /// How many entries were applied.
    pub fn entry_count(&self) -> usize {
        self.applied.len()
    }

    /// A merchant's balances in one asset and its settled total.
    pub fn merchant_summary(&self, merchant: &str, asset: &AssetKey) -> MerchantSummary {
        let get = |kind| self.balance(&Account::merchant(merchant, kind), asset);
        MerchantSummary {
            pending: get(MerchantAccount::Pending),
            available: get(MerchantAccount::Available),
            paid_out: get(MerchantAccount::PaidOut),
            fees: get(MerchantAccount::Fees),
            settled: self
                .settled
                .get(&(merchant.to_owned(), asset.clone()))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Checks, and reports the first failure of:
    ///
    /// 1. for every asset, the balances of all accounts sum to zero
    ///    ([`LedgerError::AssetNotBalanced`]);
    /// 2. no account that may not go negative is negative
    ///    ([`LedgerError::NegativeBalance`]);
    /// 3. for every merchant and asset,
    ///    `available == settled - paid_out - fees`
    ///    ([`LedgerError::MerchantMismatch`]; see [`Ledger`] for how the
    ///    settled total is kept).
    ///
    /// [`Ledger::apply`] keeps 1 and 2 by construction, so a failure there
    /// means a bug in this crate; 3 also catches entries whose kind does
    /// not match what they do to merchant accounts.
    pub fn check_invariants(&self) -> Result<(), LedgerError> {
        let mut sums: BTreeMap<&AssetKey, WideSum> = BTreeMap::new();
        for ((_, asset), &balance) in &self.balances {
            sums.entry(asset).or_default().add(balance);
        }
        if let Some((asset, sum)) = sums.iter().find(|(_, s)| !s.is_zero()) {
            return Err(LedgerError::AssetNotBalanced {
                asset: (*asset).clone(),
                sum: sum.value(),
            });
        }
        if let Some(((account, asset), &balance)) = self
            .balances
            .iter()
            .find(|((account, _), &b)| b < 0 && !account.may_go_negative())
        {
            return Err(LedgerError::NegativeBalance {
                account: account.clone(),
                asset: asset.clone(),
                balance,
            });
        }
        let mut merchants: BTreeSet<(&str, &AssetKey)> = self
            .settled
            .keys()
            .map(|(merchant, asset)| (merchant.as_str(), asset))
            .collect();
        merchants.extend(
            self.balances
                .keys()
                .filter_map(|(account, asset)| Some((account.merchant_id()?, asset))),
        );
        for (merchant, asset) in merchants {
            let s = self.merchant_summary(merchant, asset);
            let expected = s
                .settled
                .checked_sub(s.paid_out)
                .and_then(|v| v.checked_sub(s.fees));
            if expected != Some(s.available) {
                return Err(LedgerError::MerchantMismatch {
                    merchant: merchant.to_owned(),
                    asset: asset.clone(),
                    available: s.available,
                    settled: s.settled,
                    paid_out: s.paid_out,
                    fees: s.fees,
                });
            }
        }
        Ok(())
    }
}

/// How `entry` changes merchants' settled totals, per (merchant, asset);
/// the rules are in the docs of [`Ledger`]. The entry passed validation,
/// so every amount fits an `i128`; their sum for one merchant may not (a
/// correction can credit `available`, `paid_out` and `fees` at once), and
/// is refused as [`LedgerError::SettledOverflow`] like the total itself.
fn settled_changes(entry: &Entry) -> Result<BTreeMap<(String, AssetKey), i128>, LedgerError> {
    let mut changes: BTreeMap<(String, AssetKey), i128> = BTreeMap::new();
    let mut add = |merchant: &str, asset: &AssetKey, amount: i128| {
        let change = changes
            .entry((merchant.to_owned(), asset.clone()))
            .or_insert(0);
        *change = change
            .checked_add(amount)
            .ok_or_else(|| LedgerError::SettledOverflow {
                entry: entry.id.clone(),
                merchant: merchant.to_owned(),
                asset: asset.clone(),
            })?;
        Ok::<(), LedgerError>(())
    };
    for p in &entry.postings {
        let amount = p.amount as i128;
        match entry.kind {
            EntryKind::DepositSettled | EntryKind::Deposit => {
                if let Some(m) = available_of(&p.to) {
                    add(m, &p.asset, amount)?;
                }
                if let Some(m) = available_of(&p.from) {
                    add(m, &p.asset, -amount)?;
                }
            }
            EntryKind::Correction => {
                let (from, to) = (settled_group_of(&p.from), settled_group_of(&p.to));
                if from != to {
                    if let Some(m) = to {
                        add(m, &p.asset, amount)?;
                    }
                    if let Some(m) = from {
                        add(m, &p.asset, -amount)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(changes)
}

/// The merchant of a `merchant:<id>:available` account.
fn available_of(account: &Account) -> Option<&str> {
    match account {
        Account::Merchant {
            id,
            kind: MerchantAccount::Available,
        } => Some(id),
        _ => None,
    }
}

/// The merchant of an account in a merchant's settled group: its
/// `available`, `paid_out` or `fees`.
fn settled_group_of(account: &Account) -> Option<&str> {
    match account {
        Account::Merchant { id, kind } if *kind != MerchantAccount::Pending => Some(id),
        _ => None,
    }
}

/// An exact sum of `i128`s that may leave the `i128` range on the way
/// (the positive balances of one asset can add up to more than
/// `i128::MAX` when several counterparty accounts are deep negative).
/// The true sum is `low + wraps * 2^128`.
#[derive(Debug, Default, Clone, Copy)]
struct WideSum {
    low: i128,
    wraps: i128,
}

impl WideSum {
    fn add(&mut self, value: i128) {
        let (low, wrapped) = self.low.overflowing_add(value);
        self.low = low;
        if wrapped {
            // Wrapping past i128::MAX lands 2^128 too low, and past
            // i128::MIN 2^128 too high.
            self.wraps += if value > 0 { 1 } else { -1 };
        }
    }

    fn is_zero(&self) -> bool {
        self.low == 0 && self.wraps == 0
    }

    /// The sum when it fits an `i128`.
    fn value(&self) -> Option<i128> {
        (self.wraps == 0).then_some(self.low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::WalletRole;
    use crate::entry::Posting;
    use crate::event::{Event, Fee, TransferKind};

    fn usdc() -> AssetKey {
        AssetKey::new("devnet-l1", "USDC")
    }
    fn eth() -> AssetKey {
        AssetKey::new("devnet-l1", "ETH")
    }
    fn dep() -> Account {
        Account::wallet(WalletRole::Deposit, "0xd1")
    }
    fn hot() -> Account {
        Account::wallet(WalletRole::Hot, "0xh")
    }
    fn m(kind: MerchantAccount) -> Account {
        Account::merchant("m1", kind)
    }
    fn book(ledger: &mut Ledger, id: &str, event: Event) -> Result<(), LedgerError> {
        ledger.apply(&event.entry(id, "ref", 1)?)
    }
    fn deposit(amount: u128) -> Event {
        Event::Deposit {
            asset: usdc(),
            merchant: "m1".into(),
            address: "0xd1".into(),
            amount,
        }
    }

    #[test]
    fn apply_to_uses_only_the_touched_accounts() {
        let entry = Event::Transfer {
            kind: TransferKind::Sweep,
            asset: usdc(),
            from: dep(),
            to: hot(),
            amount: 60,
            fee: Some(Fee {
                asset: eth(),
                amount: 3,
            }),
        }
        .entry("sweep:1", "tx 0xabc", 5)
        .unwrap();
        let current: Balances = [
            ((dep(), usdc()), 100),
            ((dep(), eth()), 10),
            // Not touched: not returned.
            ((hot(), eth()), 77),
        ]
        .into_iter()
        .collect();
        let new = apply_to(&current, &entry).unwrap();
        let expected: Balances = [
            ((dep(), usdc()), 40),
            ((dep(), eth()), 7),
            ((hot(), usdc()), 60),
            ((Account::NetworkFees, eth()), 3),
        ]
        .into_iter()
        .collect();
        assert_eq!(new, expected);
    }

    #[test]
    fn shortfall_names_the_numbers() {
        let entry = Event::Payout {
            asset: usdc(),
            from: hot(),
            merchant: Some("m1".into()),
            amount: 50,
            fee: None,
        }
        .entry("payout:p1", "", 5)
        .unwrap();
        let current: Balances = [
            ((hot(), usdc()), 80),
            ((m(MerchantAccount::Available), usdc()), 30),
        ]
        .into_iter()
        .collect();
        let err = apply_to(&current, &entry).unwrap_err();
        assert_eq!(
            err,
            LedgerError::InsufficientBalance {
                entry: "payout:p1".into(),
                account: m(MerchantAccount::Available),
                asset: usdc(),
                balance: 30,
                change: -50,
                shortfall: 20,
            }
        );
        assert_eq!(
            err.to_string(),
            r#"entry "payout:p1": merchant:m1:available would be 20 short in USDC on devnet-l1 (balance 30, change -50)"#
        );
        // A missing account counts as 0: the hot wallet is then short too,
        // and comes first in key order.
        let err = apply_to(&Balances::new(), &entry).unwrap_err();
        assert!(matches!(
            err,
            LedgerError::InsufficientBalance { ref account, balance: 0, change: -50, shortfall: 50, .. }
                if *account == hot()
        ));
    }

    #[test]
    fn counterparties_may_go_negative_and_net_changes_count() {
        // World goes negative on an inflow; money passes through an empty
        // wallet within one entry.
        let entry = Event::Correction {
            postings: vec![
                Posting::new(Account::World, hot(), eth(), 5),
                Posting::new(hot(), Account::Adjustment, eth(), 5),
            ],
        }
        .entry("c1", "pass-through test", 0)
        .unwrap();
        let new = apply_to(&Balances::new(), &entry).unwrap();
        assert_eq!(new.get(&(Account::World, eth())), Some(&-5));
        assert_eq!(new.get(&(hot(), eth())), Some(&0));
        assert_eq!(new.get(&(Account::Adjustment, eth())), Some(&5));
    }

    #[test]
    fn balance_overflow_is_refused() {
        let entry = Event::Funding {
            asset: eth(),
            to: hot(),
            amount: 2,
        }
        .entry("f1", "", 0)
        .unwrap();
        let current: Balances = [((hot(), eth()), i128::MAX - 1)].into_iter().collect();
        assert_eq!(
            apply_to(&current, &entry),
            Err(LedgerError::Overflow {
                entry: "f1".into(),
                account: hot(),
                asset: eth(),
            })
        );
        let current: Balances = [((Account::World, eth()), i128::MIN + 1)]
            .into_iter()
            .collect();
        assert_eq!(
            apply_to(&current, &entry),
            Err(LedgerError::Overflow {
                entry: "f1".into(),
                account: Account::World,
                asset: eth(),
            })
        );
    }

    #[test]
    fn a_merchant_lifecycle() {
        let mut ledger = Ledger::new();
        book(
            &mut ledger,
            "o1:seen",
            Event::DepositSeen {
                asset: usdc(),
                merchant: "m1".into(),
                address: "0xd1".into(),
                amount: 1_000,
            },
        )
        .unwrap();
        book(
            &mut ledger,
            "o1:settled",
            Event::DepositSettled {
                asset: usdc(),
                merchant: "m1".into(),
                amount: 1_000,
            },
        )
        .unwrap();
        book(&mut ledger, "o2", deposit(500)).unwrap();
        book(
            &mut ledger,
            "fee1",
            Event::MerchantFee {
                asset: usdc(),
                merchant: "m1".into(),
                amount: 15,
            },
        )
        .unwrap();
        book(
            &mut ledger,
            "sweep1",
            Event::Transfer {
                kind: TransferKind::Sweep,
                asset: usdc(),
                from: dep(),
                to: hot(),
                amount: 1_500,
                fee: None,
            },
        )
        .unwrap();
        book(
            &mut ledger,
            "p1",
            Event::Payout {
                asset: usdc(),
                from: hot(),
                merchant: Some("m1".into()),
                amount: 1_200,
                fee: None,
            },
        )
        .unwrap();
        ledger.check_invariants().unwrap();
        assert_eq!(
            ledger.merchant_summary("m1", &usdc()),
            MerchantSummary {
                pending: 0,
                available: 285,
                paid_out: 1_200,
                fees: 15,
                settled: 1_500,
            }
        );
        assert_eq!(ledger.balance(&hot(), &usdc()), 300);
        assert_eq!(ledger.balance(&dep(), &usdc()), 0);
        assert_eq!(ledger.balance(&Account::World, &usdc()), -300);
        assert_eq!(ledger.balance(&Account::Owed, &usdc()), -1_500);
        assert_eq!(ledger.balance(&hot(), &eth()), 0);
        assert_eq!(ledger.entry_count(), 6);
        assert!(ledger.is_applied("o2") && !ledger.is_applied("o3"));
        let sum: i128 = ledger.balances().map(|(_, _, b)| b).sum();
        assert_eq!(sum, 0);
    }

    #[test]
    fn refusals_leave_the_ledger_unchanged() {
        let mut ledger = Ledger::new();
        book(&mut ledger, "o1", deposit(100)).unwrap();
        let before = ledger.clone();
        // Duplicate id, even with other content.
        assert_eq!(
            book(&mut ledger, "o1", deposit(5)),
            Err(LedgerError::Duplicate { entry: "o1".into() })
        );
        assert_eq!(ledger, before);
        // A payout whose first posting fits but whose second does not.
        let err = book(
            &mut ledger,
            "p1",
            Event::Payout {
                asset: usdc(),
                from: dep(),
                merchant: Some("m1".into()),
                amount: 100,
                fee: Some(Fee {
                    asset: eth(),
                    amount: 1,
                }),
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            LedgerError::InsufficientBalance {
                entry: "p1".into(),
                account: dep(),
                asset: eth(),
                balance: 0,
                change: -1,
                shortfall: 1,
            }
        );
        assert_eq!(ledger, before);
        // A refused id is not burnt: it can be applied once it fits.
        book(&mut ledger, "p1", deposit(1)).unwrap();
        assert_eq!(ledger.merchant_summary("m1", &usdc()).settled, 101);
    }

    #[test]
    fn corrections_keep_the_merchant_invariant() {
        let mut ledger = Ledger::new();
        book(&mut ledger, "o1", deposit(100)).unwrap();
        let correct = |ledger: &mut Ledger, id: &str, from: Account, to: Account, amount| {
            ledger.apply(
                &Event::Correction {
                    postings: vec![Posting::new(from, to, usdc(), amount)],
                }
                .entry(id, "ticket 12", 0)
                .unwrap(),
            )
        };
        // Into available: settled.
        correct(
            &mut ledger,
            "c1",
            Account::Adjustment,
            m(MerchantAccount::Available),
            10,
        )
        .unwrap();
        // Out of available to outside: negative settled.
        correct(
            &mut ledger,
            "c2",
            m(MerchantAccount::Available),
            Account::Owed,
            4,
        )
        .unwrap();
        // Within the group: unchanged.
        correct(
            &mut ledger,
            "c3",
            m(MerchantAccount::Available),
            m(MerchantAccount::Fees),
            6,
        )
        .unwrap();
        // Into paid_out from outside: settled.
        correct(
            &mut ledger,
            "c4",
            Account::Adjustment,
            m(MerchantAccount::PaidOut),
            3,
        )
        .unwrap();
        ledger.check_invariants().unwrap();
        assert_eq!(
            ledger.merchant_summary("m1", &usdc()),
            MerchantSummary {
                pending: 0,
                available: 100,
                paid_out: 3,
                fees: 6,
                settled: 109,
            }
        );
    }

    #[test]
    fn mis_kinded_entries_break_the_merchant_invariant() {
        let mut ledger = Ledger::new();
        // A "sweep" that credits a merchant: balances cannot tell, the
        // invariant does.
        let entry = Entry {
            id: "bad".into(),
            kind: EntryKind::Sweep,
            reference: String::new(),
            at: 0,
            postings: vec![Posting::new(
                Account::Owed,
                m(MerchantAccount::Available),
                usdc(),
                7,
            )],
        };
        ledger.apply(&entry).unwrap();
        assert_eq!(
            ledger.check_invariants(),
            Err(LedgerError::MerchantMismatch {
                merchant: "m1".into(),
                asset: usdc(),
                available: 7,
                settled: 0,
                paid_out: 0,
                fees: 0,
            })
        );
    }

    #[test]
    fn corrupt_states_are_reported() {
        let mut ledger = Ledger::new();
        ledger.balances.insert((hot(), eth()), 5);
        assert_eq!(
            ledger.check_invariants(),
            Err(LedgerError::AssetNotBalanced {
                asset: eth(),
                sum: Some(5)
            })
        );
        ledger.balances.insert((Account::World, eth()), -5);
        ledger.check_invariants().unwrap();
        ledger.balances.insert((Account::World, eth()), 5);
        ledger.balances.insert((hot(), eth()), -5);
        assert_eq!(
            ledger.check_invariants(),
            Err(LedgerError::NegativeBalance {
                account: hot(),
                asset: eth(),
                balance: -5
            })
        );
        // A settled total without balances is checked too.
        let mut ledger = Ledger::new();
        ledger.settled.insert(("m9".into(), usdc()), 1);
        assert!(matches!(
            ledger.check_invariants(),
            Err(LedgerError::MerchantMismatch { ref merchant, settled: 1, available: 0, .. }) if merchant == "m9"
        ));
    }

    #[test]
    fn asset_sums_are_exact_beyond_i128() {
        // Positive balances above i128::MAX in total, balanced by two
        // deep-negative counterparties: the sum is exactly zero.
        let mut ledger = Ledger::new();
        ledger.balances.insert((hot(), eth()), i128::MAX);
        ledger.balances.insert((dep(), eth()), i128::MAX);
        ledger.balances.insert((Account::Loss, eth()), 2);
        ledger.balances.insert((Account::World, eth()), i128::MIN);
        ledger.balances.insert((Account::Owed, eth()), i128::MIN);
        ledger.check_invariants().unwrap();
        ledger.balances.insert((Account::Loss, eth()), 3);
        assert_eq!(
            ledger.check_invariants(),
            Err(LedgerError::AssetNotBalanced {
                asset: eth(),
                sum: Some(1)
            })
        );
        let mut wide = WideSum::default();
        wide.add(i128::MAX);
        wide.add(i128::MAX);
        assert_eq!(wide.value(), None);
        assert!(!wide.is_zero());
        wide.add(i128::MIN);
        wide.add(i128::MIN);
        wide.add(2);
        assert!(wide.is_zero());
    }

    #[test]
    fn settled_overflow_is_refused_atomically() {
        let max = i128::MAX as u128;
        let mut ledger = Ledger::new();
        book(&mut ledger, "o1", deposit(max)).unwrap();
        book(
            &mut ledger,
            "p1",
            Event::Payout {
                asset: usdc(),
                from: dep(),
                merchant: Some("m1".into()),
                amount: 1,
                fee: None,
            },
        )
        .unwrap();
        let before = ledger.clone();
        // Owed reaches i128::MIN and available i128::MAX: balances fit, the
        // settled total (i128::MAX + 1) does not.
        assert_eq!(
            book(&mut ledger, "o2", deposit(1)),
            Err(LedgerError::SettledOverflow {
                entry: "o2".into(),
                merchant: "m1".into(),
                asset: usdc(),
            })
        );
        assert_eq!(ledger, before);
        ledger.check_invariants().unwrap();
    }

    #[test]
    fn replay_rebuilds_and_stops_at_the_first_refusal() {
        let entries: Vec<Entry> = [("o1", deposit(10)), ("o2", deposit(20))]
            .into_iter()
            .map(|(id, e)| e.entry(id, "", 0).unwrap())
            .collect();
        let ledger = Ledger::replay(&entries).unwrap();
        assert_eq!(ledger.merchant_summary("m1", &usdc()).available, 30);
        let twice: Vec<&Entry> = entries.iter().chain(&entries).collect();
        assert_eq!(
            Ledger::replay(twice),
            Err(LedgerError::Duplicate { entry: "o1".into() })
        );
    }
}
