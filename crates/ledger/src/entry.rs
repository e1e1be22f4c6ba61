//! Entries: balanced sets of postings, applied all at once.
//!
//! A [`Posting`] moves an amount of one asset from one account to another.
//! An [`Entry`] groups 1 to [`MAX_POSTINGS`] postings under an id the
//! caller chooses (the idempotency key, e.g. `order:o1:settled`), a kind, a
//! free-form reference and a timestamp. Because every posting takes from
//! one account what it gives to another, an entry always balances per
//! asset; [`Entry::validate`] still checks it, so a future change to
//! postings cannot quietly break double entry.
//!
//! Amounts are `u128` base units (wei, lamports, token units), never
//! floats. In JSON they are decimal strings, because JSON numbers lose
//! precision above 2^53 in most readers.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::account::{Account, AssetKey};
use crate::error::{shown, LedgerError};

/// Longest entry id, in bytes.
pub const MAX_ENTRY_ID_LEN: usize = 128;
/// Longest reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 256;
/// Most postings in one entry: the largest event needs four; corrections
/// get some room, but an entry stays small enough to read.
pub const MAX_POSTINGS: usize = 16;

/// Net change per touched `(account, asset)`, as [`Entry::deltas`] returns.
pub type Deltas = BTreeMap<(Account, AssetKey), i128>;

/// Moves `amount` of `asset` from `from` to `to`: `from`'s balance goes
/// down by it and `to`'s goes up by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Posting {
    /// The account debited.
    pub from: Account,
    /// The account credited.
    pub to: Account,
    /// The asset moved.
    pub asset: AssetKey,
    /// How much, in base units; a decimal string in JSON.
    #[serde(with = "amount_string")]
    pub amount: u128,
}

impl Posting {
    /// A posting of `amount` of `asset` from `from` to `to`.
    pub fn new(from: Account, to: Account, asset: AssetKey, amount: u128) -> Self {
        Self {
            from,
            to,
            asset,
            amount,
        }
    }
}

/// What an entry records; each [`crate::Event`] builds one kind (a
/// [`crate::Event::Transfer`] builds the kind of its [`crate::TransferKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A deposit seen on chain, not settled yet.
    DepositSeen,
    /// A seen deposit settled: the merchant may now be paid it.
    DepositSettled,
    /// A deposit seen and settled in one entry.
    Deposit,
    /// A reorg removed a deposit before it was settled.
    DepositReversed,
    /// A reorg removed a deposit after it was settled; the loss is the
    /// treasury's.
    DepositLost,
    /// Deposit address to hot or cold wallet.
    Sweep,
    /// Gas sent to a wallet that needs it.
    GasTopUp,
    /// A payout to the outside world.
    Payout,
    /// Refilling the hot wallet.
    Replenishment,
    /// Hot wallet to cold storage.
    HotToCold,
    /// A fee charged to a merchant.
    MerchantFee,
    /// An inflow not from an order.
    Funding,
    /// A manual correction.
    Correction,
}

impl EntryKind {
    /// Every kind, in order.
    pub const ALL: [Self; 13] = [
        Self::DepositSeen,
        Self::DepositSettled,
        Self::Deposit,
        Self::DepositReversed,
        Self::DepositLost,
        Self::Sweep,
        Self::GasTopUp,
        Self::Payout,
        Self::Replenishment,
        Self::HotToCold,
        Self::MerchantFee,
        Self::Funding,
        Self::Correction,
    ];

    /// The kind's snake_case string, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DepositSeen => "deposit_seen",
            Self::DepositSettled => "deposit_settled",
            Self::Deposit => "deposit",
            Self::DepositReversed => "deposit_reversed",
            Self::DepositLost => "deposit_lost",
            Self::Sweep => "sweep",
            Self::GasTopUp => "gas_top_up",
            Self::Payout => "payout",
            Self::Replenishment => "replenishment",
            Self::HotToCold => "hot_to_cold",
            Self::MerchantFee => "merchant_fee",
            Self::Funding => "funding",
            Self::Correction => "correction",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| LedgerError::EntryKind { input: shown(s) })
    }
}

/// A balanced set of postings applied all at once.
///
/// Deserializing does not check the rules; [`Entry::validate`] does, and
/// [`crate::apply_to`] and [`crate::Ledger::apply`] call it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Idempotency key chosen by the caller, e.g. `order:o1:settled`: 1 to
    /// [`MAX_ENTRY_ID_LEN`] bytes without control characters.
    pub id: String,
    /// What the entry records.
    pub kind: EntryKind,
    /// Free text tying the entry to its cause (an order, a transaction
    /// hash, a ticket): at most [`MAX_REFERENCE_LEN`] bytes without
    /// control characters.
    pub reference: String,
    /// The caller's timestamp (Unix seconds in the coordinator); stored,
    /// never interpreted.
    pub at: u64,
    /// 1 to [`MAX_POSTINGS`] postings.
    pub postings: Vec<Posting>,
}

impl Entry {
    /// Checks the entry on its own, without balances: id and reference
    /// bounds, posting count, every account and asset well-formed, every
    /// amount in `1..=i128::MAX`, no posting from an account to itself,
    /// and each asset's signed changes summing to zero.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.id.is_empty()
            || self.id.len() > MAX_ENTRY_ID_LEN
            || self.id.chars().any(char::is_control)
        {
            return Err(LedgerError::EntryId {
                id: shown(&self.id),
            });
        }
        let entry = || self.id.clone();
        if self.reference.len() > MAX_REFERENCE_LEN || self.reference.chars().any(char::is_control)
        {
            return Err(LedgerError::Reference {
                entry: entry(),
                len: self.reference.len(),
            });
        }
        if self.postings.is_empty() {
            return Err(LedgerError::NoPostings { entry: entry() });
        }
        if self.postings.len() > MAX_POSTINGS {
            return Err(LedgerError::TooManyPostings {
                entry: entry(),
                count: self.postings.len(),
            });
        }
        let mut sums: BTreeMap<&AssetKey, i128> = BTreeMap::new();
        for (i, p) in self.postings.iter().enumerate() {
            let named = |e: LedgerError| e.in_entry(&self.id);
            p.asset.validate().map_err(named)?;
            p.from.validate().map_err(named)?;
            p.to.validate().map_err(named)?;
            if p.amount == 0 {
                return Err(LedgerError::ZeroAmount {
                    entry: entry(),
                    field: format!("postings[{i}].amount"),
                });
            }
            let amount = signed(&self.id, &format!("postings[{i}].amount"), p.amount)?;
            if p.from == p.to {
                return Err(LedgerError::SameAccount {
                    entry: entry(),
                    posting: i,
                    account: p.from.clone(),
                });
            }
            // Credit then debit: the running sum stays at zero, so this
            // cannot overflow today; it is checked in case postings ever
            // become one-sided, and an overflow can only come from a sum
            // that is already off zero.
            let sum = sums.entry(&p.asset).or_insert(0);
            *sum = sum
                .checked_add(amount)
                .and_then(|s| s.checked_sub(amount))
                .ok_or_else(|| LedgerError::Unbalanced {
                    entry: entry(),
                    asset: p.asset.clone(),
                    sum: *sum,
                })?;
        }
        if let Some((asset, &sum)) = sums.iter().find(|(_, &s)| s != 0) {
            return Err(LedgerError::Unbalanced {
                entry: entry(),
                asset: (*asset).clone(),
                sum,
            });
        }
        Ok(())
    }

    /// Validates the entry, then returns the net change of every account it
    /// touches, per asset. An account that appears on both sides is listed
    /// once with its net change, possibly zero.
    pub fn deltas(&self) -> Result<Deltas, LedgerError> {
        self.validate()?;
        let mut deltas = Deltas::new();
        for p in &self.postings {
            // validate() checked amount <= i128::MAX.
            let amount = p.amount as i128;
            for (account, change) in [(&p.from, -amount), (&p.to, amount)] {
                let key = (account.clone(), p.asset.clone());
                let delta = deltas.entry(key).or_insert(0);
                *delta = delta
                    .checked_add(change)
                    .ok_or_else(|| LedgerError::Overflow {
                        entry: self.id.clone(),
                        account: account.clone(),
                        asset: p.asset.clone(),
                    })?;
            }
        }
        Ok(deltas)
    }
}

/// `amount` as an `i128`, or [`LedgerError::AmountTooLarge`] naming `field`.
pub(crate) fn signed(entry: &str, field: &str, amount: u128) -> Result<i128, LedgerError> {
    i128::try_from(amount).map_err(|_| LedgerError::AmountTooLarge {
        entry: entry.to_owned(),
        field: field.to_owned(),
        amount,
    })
}

/// Serde for `u128` amounts as canonical decimal strings: digits only, no
/// sign, no leading zeros (except `"0"` itself), so one amount has exactly
/// one JSON form.
pub(crate) mod amount_string {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(amount: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(amount)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "amount {:?} is not a decimal string of base units (digits only, no leading zeros, at most {})",
                crate::error::shown(&text),
                u128::MAX
            ))
        })
    }

    pub fn parse(text: &str) -> Option<u128> {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if canonical {
            text.parse().ok()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{MerchantAccount, WalletRole};
    use crate::error::NameField;

    fn eth() -> AssetKey {
        AssetKey::new("devnet-l1", "ETH")
    }

    fn hot() -> Account {
        Account::wallet(WalletRole::Hot, "0xh")
    }

    fn entry(postings: Vec<Posting>) -> Entry {
        Entry {
            id: "e1".into(),
            kind: EntryKind::Correction,
            reference: "ticket 7".into(),
            at: 1_700_000_000,
            postings,
        }
    }

    fn one(amount: u128) -> Entry {
        entry(vec![Posting::new(Account::World, hot(), eth(), amount)])
    }

    #[test]
    fn json_round_trip_with_string_amounts() {
        let e = entry(vec![
            Posting::new(Account::World, hot(), eth(), u128::MAX / 3),
            Posting::new(
                Account::Owed,
                Account::merchant("m1", MerchantAccount::Available),
                AssetKey::new("devnet-l1", "USDC"),
                5,
            ),
        ]);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "e1",
                "kind": "correction",
                "reference": "ticket 7",
                "at": 1_700_000_000u64,
                "postings": [
                    {
                        "from": "world",
                        "to": "wallet:hot:0xh",
                        "asset": {"chain": "devnet-l1", "asset": "ETH"},
                        "amount": "113427455640312821154458202477256070485"
                    },
                    {
                        "from": "owed",
                        "to": "merchant:m1:available",
                        "asset": {"chain": "devnet-l1", "asset": "USDC"},
                        "amount": "5"
                    }
                ]
            })
        );
        let back: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn amounts_must_be_canonical_strings() {
        let posting = |amount: &str| {
            format!(
                r#"{{"from":"world","to":"loss","asset":{{"chain":"c","asset":"A"}},"amount":{amount}}}"#
            )
        };
        for good in [r#""0""#, r#""7""#, &format!("\"{}\"", u128::MAX)] {
            assert!(
                serde_json::from_str::<Posting>(&posting(good)).is_ok(),
                "{good}"
            );
        }
        let too_big = format!("\"{}0\"", u128::MAX);
        for bad in [
            "7", r#""""#, r#""+7""#, r#""-7""#, r#""07""#, r#"" 7""#, r#""7.0""#, r#""1e3""#,
            &too_big,
        ] {
            assert!(
                serde_json::from_str::<Posting>(&posting(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn entry_kinds_round_trip() {
        for kind in EntryKind::ALL {
            let text = kind.to_string();
            assert_eq!(text.parse::<EntryKind>().unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{text}\""));
        }
        assert_eq!(EntryKind::GasTopUp.to_string(), "gas_top_up");
        assert_eq!(
            "refund".parse::<EntryKind>(),
            Err(LedgerError::EntryKind {
                input: "refund".into()
            })
        );
    }

    #[test]
    fn deltas_net_per_account() {
        let usdc = AssetKey::new("devnet-l1", "USDC");
        let cold = Account::wallet(WalletRole::Cold, "0xc");
        let e = entry(vec![
            Posting::new(Account::World, hot(), eth(), 10),
            Posting::new(hot(), cold.clone(), eth(), 4),
            Posting::new(cold.clone(), hot(), eth(), 4),
            Posting::new(Account::World, hot(), usdc.clone(), 3),
        ]);
        let deltas = e.deltas().unwrap();
        let expected: Deltas = [
            ((Account::World, eth()), -10),
            ((hot(), eth()), 10),
            ((cold, eth()), 0),
            ((Account::World, usdc.clone()), -3),
            ((hot(), usdc), 3),
        ]
        .into_iter()
        .collect();
        assert_eq!(deltas, expected);
    }

    #[test]
    fn deltas_refuse_overflowing_sums() {
        let big = i128::MAX as u128;
        let e = entry(vec![
            Posting::new(Account::World, hot(), eth(), big),
            Posting::new(Account::Owed, hot(), eth(), 1),
        ]);
        assert_eq!(
            e.deltas(),
            Err(LedgerError::Overflow {
                entry: "e1".into(),
                account: hot(),
                asset: eth(),
            })
        );
    }

    #[test]
    fn refusals() {
        assert!(one(1).validate().is_ok());
        assert_eq!(
            one(0).validate(),
            Err(LedgerError::ZeroAmount {
                entry: "e1".into(),
                field: "postings[0].amount".into()
            })
        );
        assert_eq!(
            one(i128::MAX as u128 + 1).validate(),
            Err(LedgerError::AmountTooLarge {
                entry: "e1".into(),
                field: "postings[0].amount".into(),
                amount: i128::MAX as u128 + 1,
            })
        );
        assert!(one(i128::MAX as u128).validate().is_ok());
        assert_eq!(
            entry(vec![Posting::new(hot(), hot(), eth(), 1)]).validate(),
            Err(LedgerError::SameAccount {
                entry: "e1".into(),
                posting: 0,
                account: hot(),
            })
        );
        assert_eq!(
            entry(vec![]).validate(),
            Err(LedgerError::NoPostings { entry: "e1".into() })
        );
        let posting = Posting::new(Account::World, hot(), eth(), 1);
        assert!(entry(vec![posting.clone(); MAX_POSTINGS])
            .validate()
            .is_ok());
        assert_eq!(
            entry(vec![posting; MAX_POSTINGS + 1]).validate(),
            Err(LedgerError::TooManyPostings {
                entry: "e1".into(),
                count: MAX_POSTINGS + 1
            })
        );
        assert_eq!(
            entry(vec![Posting::new(
                Account::World,
                Account::wallet(WalletRole::Deposit, "0x:1"),
                eth(),
                1
            )])
            .validate(),
            Err(LedgerError::InvalidName {
                entry: Some("e1".into()),
                field: NameField::Address,
                value: "0x:1".into(),
            })
        );
        assert_eq!(
            entry(vec![Posting::new(
                Account::World,
                hot(),
                AssetKey::new("devnet-l1", ""),
                1
            )])
            .validate(),
            Err(LedgerError::InvalidName {
                entry: Some("e1".into()),
                field: NameField::Asset,
                value: "".into(),
            })
        );
    }

    #[test]
    fn id_and_reference_bounds() {
        let mut e = one(1);
        e.id = "x".repeat(MAX_ENTRY_ID_LEN);
        assert!(e.validate().is_ok());
        for bad in [
            "".to_owned(),
            "x".repeat(MAX_ENTRY_ID_LEN + 1),
            "a\nb".into(),
        ] {
            e.id = bad.clone();
            assert_eq!(e.validate(), Err(LedgerError::EntryId { id: bad }));
        }
        let mut e = one(1);
        e.reference = "r".repeat(MAX_REFERENCE_LEN);
        assert!(e.validate().is_ok());
        e.reference.push('r');
        assert_eq!(
            e.validate(),
            Err(LedgerError::Reference {
                entry: "e1".into(),
                len: MAX_REFERENCE_LEN + 1
            })
        );
        e.reference = "tab\there".into();
        assert!(matches!(e.validate(), Err(LedgerError::Reference { .. })));
    }

    #[test]
    fn error_messages_carry_the_details() {
        let err = one(0).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"entry "e1": postings[0].amount is 0; amounts must be positive"#
        );
        let err: LedgerError = "merchant:a b:fees".parse::<Account>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"merchant id "a b" is not allowed: write 1 to 128 characters of A-Z a-z 0-9 . _ -"#
        );
    }
}
