//! Property tests: random sequences of events over two chains, two assets
//! each, three merchants and a handful of wallets.
//!
//! Each event is booked through both [`Ledger::apply`] and [`apply_to`]
//! (on a partial or whole copy of the ledger's balances) and through a
//! naive model that applies postings one by one; all three must agree on
//! acceptance and on the new balances. A refused entry must leave the
//! ledger as it was, the invariants must hold after every step, and
//! replaying the accepted entries must rebuild the same ledger.

use std::collections::BTreeMap;

use keyfold_ledger::{
    apply_to, Account, AssetKey, Balances, Entry, Event, Fee, Ledger, LedgerError, MerchantAccount,
    Posting, TransferKind, WalletRole,
};
use proptest::prelude::*;
use proptest::sample::{select, Index};

const CHAINS: [&str; 2] = ["devnet-l1", "devnet-l2"];
const ASSETS: [&str; 2] = ["ETH", "USDC"];
/// Each chain's native coin, the asset fees are paid in.
const NATIVE: &str = "ETH";
const MERCHANTS: [&str; 3] = ["m1", "m2", "m3"];
const DEPOSIT_ADDRESSES: [&str; 3] = ["0xd1", "0xd2", "0xD3"];

fn asset() -> impl Strategy<Value = AssetKey> {
    (select(&CHAINS[..]), select(&ASSETS[..])).prop_map(|(c, a)| AssetKey::new(c, a))
}

/// Mostly small amounts, so balances run short often enough to exercise
/// refusals; sometimes zero or too large for any balance.
fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![
        12 => 1u128..=1_000,
        3 => 1_000u128..=1_000_000,
        1 => Just(0u128),
        1 => (i128::MAX as u128 + 1)..=u128::MAX,
    ]
}

fn merchant() -> impl Strategy<Value = String> {
    select(&MERCHANTS[..]).prop_map(str::to_owned)
}

fn address() -> impl Strategy<Value = String> {
    select(&DEPOSIT_ADDRESSES[..]).prop_map(str::to_owned)
}

fn wallet() -> impl Strategy<Value = Account> {
    prop_oneof![
        3 => address().prop_map(|a| Account::wallet(WalletRole::Deposit, a)),
        2 => Just(Account::wallet(WalletRole::Hot, "0xh1")),
        1 => Just(Account::wallet(WalletRole::Cold, "0xc1")),
        1 => Just(Account::wallet(WalletRole::GasTank, "0xg1")),
    ]
}

fn any_account() -> impl Strategy<Value = Account> {
    prop_oneof![
        4 => wallet(),
        2 => (merchant(), select(&MerchantAccount::ALL[..]))
            .prop_map(|(m, kind)| Account::merchant(m, kind)),
        1 => Just(Account::World),
        1 => Just(Account::Owed),
        1 => Just(Account::NetworkFees),
        1 => Just(Account::Loss),
        1 => Just(Account::Adjustment),
    ]
}

/// Mostly a wallet, sometimes not, to exercise the wallet-only fields.
fn mostly_wallet() -> impl Strategy<Value = Account> {
    prop_oneof![9 => wallet(), 1 => any_account()]
}

/// An asset and a fee for a transaction in it: none, zero, on the same
/// chain (usual) or on the other chain (refused).
fn asset_and_fee() -> impl Strategy<Value = (AssetKey, Option<Fee>)> {
    (asset(), 0u8..10, 0u128..=30).prop_map(|(asset, pick, fee_amount)| {
        let other = if asset.chain == CHAINS[0] {
            CHAINS[1]
        } else {
            CHAINS[0]
        };
        let fee = match pick {
            0..=2 => None,
            3..=8 => Some(Fee {
                asset: AssetKey::new(asset.chain.clone(), NATIVE),
                amount: fee_amount,
            }),
            _ => Some(Fee {
                asset: AssetKey::new(other, NATIVE),
                amount: fee_amount,
            }),
        };
        (asset, fee)
    })
}

fn transfer_kind() -> impl Strategy<Value = TransferKind> {
    select(
        &[
            TransferKind::Sweep,
            TransferKind::GasTopUp,
            TransferKind::Replenishment,
            TransferKind::HotToCold,
        ][..],
    )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (asset(), merchant(), address(), amount()).prop_map(|(asset, merchant, address, amount)| {
            Event::DepositSeen { asset, merchant, address, amount }
        }),
        3 => (asset(), merchant(), amount()).prop_map(|(asset, merchant, amount)| {
            Event::DepositSettled { asset, merchant, amount }
        }),
        4 => (asset(), merchant(), address(), amount()).prop_map(|(asset, merchant, address, amount)| {
            Event::Deposit { asset, merchant, address, amount }
        }),
        1 => (asset(), merchant(), address(), amount()).prop_map(|(asset, merchant, address, amount)| {
            Event::DepositReversed { asset, merchant, address, amount }
        }),
        1 => (asset(), mostly_wallet(), amount()).prop_map(|(asset, from, amount)| {
            Event::DepositLost { asset, from, amount }
        }),
        5 => (transfer_kind(), asset_and_fee(), mostly_wallet(), mostly_wallet(), amount())
            .prop_map(|(kind, (asset, fee), from, to, amount)| {
                Event::Transfer { kind, asset, from, to, amount, fee }
            }),
        4 => (asset_and_fee(), mostly_wallet(), prop::option::weighted(0.8, merchant()), amount())
            .prop_map(|((asset, fee), from, merchant, amount)| {
                Event::Payout { asset, from, merchant, amount, fee }
            }),
        2 => (asset(), merchant(), amount()).prop_map(|(asset, merchant, amount)| {
            Event::MerchantFee { asset, merchant, amount }
        }),
        2 => (asset(), mostly_wallet(), amount()).prop_map(|(asset, to, amount)| {
            Event::Funding { asset, to, amount }
        }),
        2 => prop::collection::vec(
            (any_account(), any_account(), asset(), amount())
                .prop_map(|(from, to, asset, amount)| Posting::new(from, to, asset, amount)),
            0..=3,
        )
        .prop_map(|postings| Event::Correction { postings }),
    ]
}

/// One step: an event, whether to give it a blank reference, and
/// sometimes the index of an earlier accepted entry whose id to reuse.
fn step() -> impl Strategy<Value = (Event, bool, Option<Index>)> {
    (
        event(),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.05, any::<Index>()),
    )
}

/// The naive model: postings one by one on a copy of every balance, then
/// a check of every touched account that may not go negative. Returns the
/// new balances of the touched accounts, or `None` for a refusal.
fn model(current: &Balances, entry: &Entry) -> Option<Balances> {
    let mut all = current.clone();
    let mut touched = Balances::new();
    for p in &entry.postings {
        let amount = i128::try_from(p.amount).ok()?;
        for (account, change) in [(&p.from, -amount), (&p.to, amount)] {
            let key = (account.clone(), p.asset.clone());
            let balance = all.entry(key.clone()).or_insert(0);
            *balance = balance.checked_add(change)?;
            touched.insert(key, *balance);
        }
    }
    let short = touched
        .iter()
        .any(|((account, _), &b)| b < 0 && !account.may_go_negative());
    (!short).then_some(touched)
}

/// The refusals an event may get from this generator: nothing here makes
/// a malformed name, an unbalanced entry or an overflow.
fn expected_event_refusal(err: &LedgerError) -> bool {
    matches!(
        err,
        LedgerError::ZeroAmount { .. }
            | LedgerError::AmountTooLarge { .. }
            | LedgerError::NotAWallet { .. }
            | LedgerError::SameAccount { .. }
            | LedgerError::FeeOnOtherChain { .. }
            | LedgerError::MissingReason { .. }
            | LedgerError::NoPostings { .. }
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn apply_and_apply_to_agree(steps in prop::collection::vec(step(), 1..=200)) {
        let mut ledger = Ledger::new();
        let mut accepted: Vec<Entry> = Vec::new();
        let mut refused = 0usize;
        let mut not_booked = 0usize;
        let mut duplicates = 0usize;
        for (n, (event, blank_reference, reuse)) in steps.iter().enumerate() {
            let id = match reuse {
                Some(ix) if !accepted.is_empty() => accepted[ix.index(accepted.len())].id.clone(),
                _ => format!("e{n}"),
            };
            let reference = if *blank_reference { "" } else { "ticket 1" };
            let entry = match event.entry(&id, reference, n as u64) {
                Ok(entry) => entry,
                Err(err) => {
                    prop_assert!(expected_event_refusal(&err), "unexpected {err:?} for {event:?}");
                    not_booked += 1;
                    continue;
                }
            };
            prop_assert_eq!(entry.kind, event.kind());
            prop_assert!(entry.postings.iter().all(|p| p.amount > 0));

            let before = ledger.clone();
            // Every other step, only the touched accounts the ledger
            // knows (missing ones must count as 0); otherwise everything.
            let current: Balances = if n % 2 == 0 {
                entry
                    .deltas()
                    .unwrap()
                    .into_keys()
                    .filter_map(|k| before.balance_map().get(&k).map(|&b| (k, b)))
                    .collect()
            } else {
                before.balance_map().clone()
            };
            let by_apply_to = apply_to(&current, &entry);
            let by_model = model(before.balance_map(), &entry);
            let result = ledger.apply(&entry);

            // apply_to and the model agree, whatever the id.
            match (&by_apply_to, &by_model) {
                (Ok(new), Some(expected)) => prop_assert_eq!(new, expected),
                (Err(LedgerError::InsufficientBalance { account, asset, balance, change, shortfall, .. }), None) => {
                    let key = (account.clone(), asset.clone());
                    prop_assert_eq!(*balance, before.balance(account, asset));
                    prop_assert_eq!(Some(*change), entry.deltas().unwrap().get(&key).copied());
                    prop_assert_eq!(*shortfall, (balance + change).unsigned_abs());
                    prop_assert!(balance + change < 0);
                }
                other => prop_assert!(false, "apply_to and the model disagree: {other:?}"),
            }

            if before.is_applied(&id) {
                prop_assert_eq!(result, Err(LedgerError::Duplicate { entry: id.clone() }));
                prop_assert_eq!(&ledger, &before);
                duplicates += 1;
            } else {
                match (&result, &by_apply_to) {
                    (Ok(()), Ok(new)) => {
                        // Exactly the touched balances changed, to the new
                        // values.
                        let mut expected = before.balance_map().clone();
                        expected.extend(new.clone());
                        prop_assert_eq!(ledger.balance_map(), &expected);
                        prop_assert!(ledger.is_applied(&id));
                        prop_assert_eq!(ledger.entry_count(), before.entry_count() + 1);
                        accepted.push(entry.clone());
                    }
                    (Err(a), Err(b)) => {
                        prop_assert_eq!(a, b);
                        prop_assert_eq!(&ledger, &before);
                        refused += 1;
                    }
                    other => prop_assert!(false, "apply and apply_to disagree: {other:?}"),
                }
            }
            if let Err(err) = ledger.check_invariants() {
                prop_assert!(false, "after {id}: {err}");
            }
        }

        // Per asset, the balances sum to zero (checked here directly too).
        let mut sums: BTreeMap<&AssetKey, i128> = BTreeMap::new();
        for (_, asset, balance) in ledger.balances() {
            *sums.entry(asset).or_default() += balance;
        }
        prop_assert!(sums.values().all(|&s| s == 0), "{sums:?}");
        // Every merchant's available is settled - paid_out - fees.
        for m in MERCHANTS {
            for c in CHAINS {
                for a in ASSETS {
                    let s = ledger.merchant_summary(m, &AssetKey::new(c, a));
                    prop_assert_eq!(s.available, s.settled - s.paid_out - s.fees);
                    prop_assert!(s.pending >= 0 && s.available >= 0 && s.paid_out >= 0 && s.fees >= 0);
                }
            }
        }
        prop_assert_eq!(accepted.len() + refused + not_booked + duplicates, steps.len());

        let replayed = Ledger::replay(&accepted).unwrap();
        prop_assert_eq!(replayed.balance_map(), ledger.balance_map());
        prop_assert_eq!(&replayed, &ledger);
    }
}
