//! Accounts and the assets their balances are kept in.
//!
//! An [`Account`] has a stable string form, used as the key of the
//! coordinator's balance table, so [`fmt::Display`] and [`FromStr`] round
//! trip and serde goes through that string:
//!
//! | account                                | string                          | may go negative |
//! | -------------------------------------- | ------------------------------- | --------------- |
//! | [`Account::World`]                     | `world`                         | yes             |
//! | [`Account::Owed`]                      | `owed`                          | yes             |
//! | [`Account::Wallet`]                    | `wallet:<role>:<address>`       | no              |
//! | [`Account::Merchant`]                  | `merchant:<id>:<kind>`          | no              |
//! | [`Account::NetworkFees`]               | `network_fees`                  | no              |
//! | [`Account::Loss`]                      | `loss`                          | no              |
//! | [`Account::Adjustment`]                | `adjustment`                    | yes             |
//!
//! Merchant ids and wallet addresses are 1 to [`MAX_NAME_LEN`] characters of
//! `A-Z a-z 0-9 . _ -`: that covers EVM (`0xAbC…`) and Solana (base58)
//! addresses and the coordinator's merchant ids, and keeps `:` out so the
//! string form splits without ambiguity.
//!
//! An [`AssetKey`] is a chain registry id and an asset symbol. Both are
//! checked only loosely (1 to [`MAX_ASSET_PART_LEN`] bytes, no control
//! characters) because the chain registry, not the ledger, owns their
//! syntax; the ledger only needs them to be sane keys and log text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{shown, LedgerError, NameField};

/// Longest merchant id or wallet address, in characters (all ASCII).
pub const MAX_NAME_LEN: usize = 128;
/// Longest chain id or asset symbol, in bytes.
pub const MAX_ASSET_PART_LEN: usize = 64;

/// The asset a balance is kept in: a symbol on a chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssetKey {
    /// Chain registry id, e.g. `devnet-l1`.
    pub chain: String,
    /// Asset symbol on that chain, e.g. `ETH` or `USDC`.
    pub asset: String,
}

impl AssetKey {
    /// An asset key; check it with [`AssetKey::validate`] (entries do).
    pub fn new(chain: impl Into<String>, asset: impl Into<String>) -> Self {
        Self {
            chain: chain.into(),
            asset: asset.into(),
        }
    }

    /// Checks that chain and asset are 1 to [`MAX_ASSET_PART_LEN`] bytes
    /// without control characters.
    pub fn validate(&self) -> Result<(), LedgerError> {
        check_asset_part(NameField::Chain, &self.chain)?;
        check_asset_part(NameField::Asset, &self.asset)
    }
}

/// For messages only (`USDC on devnet-l1`); the fields are the key.
impl fmt::Display for AssetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.asset, self.chain)
    }
}

/// What a wallet is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalletRole {
    /// A per-order deposit address.
    Deposit,
    /// The hot wallet payouts are made from.
    Hot,
    /// Cold storage.
    Cold,
    /// The wallet that pays gas for the others.
    GasTank,
}

impl WalletRole {
    /// Every role, in order.
    pub const ALL: [Self; 4] = [Self::Deposit, Self::Hot, Self::Cold, Self::GasTank];

    /// The role's string: `deposit`, `hot`, `cold` or `gas_tank`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deposit => "deposit",
            Self::Hot => "hot",
            Self::Cold => "cold",
            Self::GasTank => "gas_tank",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for WalletRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the four accounts every merchant has per asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MerchantAccount {
    /// Deposits seen on chain but not settled yet.
    Pending,
    /// Settled: what Keyfold owes the merchant now.
    Available,
    /// Cumulative amount paid to or for the merchant.
    PaidOut,
    /// Cumulative fees charged to the merchant.
    Fees,
}

impl MerchantAccount {
    /// Every kind, in order.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Available, Self::PaidOut, Self::Fees];

    /// The kind's string: `pending`, `available`, `paid_out` or `fees`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Available => "available",
            Self::PaidOut => "paid_out",
            Self::Fees => "fees",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for MerchantAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ledger account. See the [module docs](self) for the string forms.
///
/// The derived order (by variant, then fields) is only there so accounts
/// can key a `BTreeMap`; it is not the order of the string forms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Account {
    /// The outside world: the counterparty of inflows and outflows on
    /// chain. Goes negative as value comes in.
    World,
    /// The counterparty of merchant obligations: the negative mirror of
    /// what Keyfold owes merchants.
    Owed,
    /// An on-chain wallet Keyfold controls.
    Wallet {
        /// What the wallet is for.
        role: WalletRole,
        /// Its on-chain address.
        address: String,
    },
    /// One of a merchant's accounts.
    Merchant {
        /// The merchant id.
        id: String,
        /// Which of its accounts.
        kind: MerchantAccount,
    },
    /// Cumulative gas paid to the network.
    NetworkFees,
    /// Cumulative losses, e.g. a settled deposit removed by a reorg.
    Loss,
    /// The counterparty of manual corrections.
    Adjustment,
}

impl Account {
    /// `wallet:<role>:<address>`.
    pub fn wallet(role: WalletRole, address: impl Into<String>) -> Self {
        Self::Wallet {
            role,
            address: address.into(),
        }
    }

    /// `merchant:<id>:<kind>`.
    pub fn merchant(id: impl Into<String>, kind: MerchantAccount) -> Self {
        Self::Merchant {
            id: id.into(),
            kind,
        }
    }

    /// Whether the balance may be below zero: only the counterparty
    /// accounts (world, owed, adjustment) may; real holdings and
    /// cumulative totals may not.
    pub fn may_go_negative(&self) -> bool {
        matches!(self, Self::World | Self::Owed | Self::Adjustment)
    }

    /// Whether this is a [`Account::Wallet`].
    pub fn is_wallet(&self) -> bool {
        matches!(self, Self::Wallet { .. })
    }

    /// The merchant id of a [`Account::Merchant`] account.
    pub fn merchant_id(&self) -> Option<&str> {
        match self {
            Self::Merchant { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Checks the merchant id or wallet address (the variants can be built
    /// directly, bypassing [`FromStr`]).
    pub fn validate(&self) -> Result<(), LedgerError> {
        match self {
            Self::Wallet { address, .. } => check_name(NameField::Address, address),
            Self::Merchant { id, .. } => check_name(NameField::MerchantId, id),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::World => f.write_str("world"),
            Self::Owed => f.write_str("owed"),
            Self::Wallet { role, address } => write!(f, "wallet:{role}:{address}"),
            Self::Merchant { id, kind } => write!(f, "merchant:{id}:{kind}"),
            Self::NetworkFees => f.write_str("network_fees"),
            Self::Loss => f.write_str("loss"),
            Self::Adjustment => f.write_str("adjustment"),
        }
    }
}

impl FromStr for Account {
    type Err = LedgerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "world" => return Ok(Self::World),
            "owed" => return Ok(Self::Owed),
            "network_fees" => return Ok(Self::NetworkFees),
            "loss" => return Ok(Self::Loss),
            "adjustment" => return Ok(Self::Adjustment),
            _ => {}
        }
        if let Some((role, address)) = s.strip_prefix("wallet:").and_then(|r| r.split_once(':')) {
            // Split at the first `:` after the role, so a `:` inside the
            // address is reported as a bad address, not a bad role.
            let role = WalletRole::parse(role).ok_or_else(|| LedgerError::WalletRole {
                input: shown(s),
                role: shown(role),
            })?;
            check_name(NameField::Address, address)?;
            return Ok(Self::wallet(role, address));
        }
        if let Some((id, kind)) = s.strip_prefix("merchant:").and_then(|r| r.rsplit_once(':')) {
            // Split at the last `:`, so a `:` inside the id is reported as
            // a bad id, not a bad kind.
            let kind =
                MerchantAccount::parse(kind).ok_or_else(|| LedgerError::MerchantAccountKind {
                    input: shown(s),
                    kind: shown(kind),
                })?;
            check_name(NameField::MerchantId, id)?;
            return Ok(Self::merchant(id, kind));
        }
        Err(LedgerError::AccountForm { input: shown(s) })
    }
}

impl TryFrom<String> for Account {
    type Error = LedgerError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Account> for String {
    fn from(a: Account) -> Self {
        a.to_string()
    }
}

/// A merchant id or wallet address: 1 to [`MAX_NAME_LEN`] of
/// `A-Z a-z 0-9 . _ -`.
fn check_name(field: NameField, value: &str) -> Result<(), LedgerError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidName {
            entry: None,
            field,
            value: shown(value),
        })
    }
}

/// A chain id or asset symbol: 1 to [`MAX_ASSET_PART_LEN`] bytes without
/// control characters.
fn check_asset_part(field: NameField, value: &str) -> Result<(), LedgerError> {
    if !value.is_empty()
        && value.len() <= MAX_ASSET_PART_LEN
        && !value.chars().any(char::is_control)
    {
        Ok(())
    } else {
        Err(LedgerError::InvalidName {
            entry: None,
            field,
            value: shown(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_forms() -> Vec<Account> {
        let mut v = vec![
            Account::World,
            Account::Owed,
            Account::NetworkFees,
            Account::Loss,
            Account::Adjustment,
        ];
        for role in WalletRole::ALL {
            v.push(Account::wallet(role, "0xAbC123"));
        }
        for kind in MerchantAccount::ALL {
            v.push(Account::merchant("m_1.x-y", kind));
        }
        v
    }

    #[test]
    fn strings_are_stable() {
        let expected = [
            "world",
            "owed",
            "network_fees",
            "loss",
            "adjustment",
            "wallet:deposit:0xAbC123",
            "wallet:hot:0xAbC123",
            "wallet:cold:0xAbC123",
            "wallet:gas_tank:0xAbC123",
            "merchant:m_1.x-y:pending",
            "merchant:m_1.x-y:available",
            "merchant:m_1.x-y:paid_out",
            "merchant:m_1.x-y:fees",
        ];
        let forms = all_forms();
        assert_eq!(forms.len(), expected.len());
        for (account, text) in forms.iter().zip(expected) {
            assert_eq!(account.to_string(), text);
            assert_eq!(text.parse::<Account>().unwrap(), *account);
            // Serde goes through the same string.
            let json = serde_json::to_string(account).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Account>(&json).unwrap(), *account);
        }
    }

    #[test]
    fn who_may_go_negative() {
        let negative: Vec<String> = all_forms()
            .into_iter()
            .filter(Account::may_go_negative)
            .map(|a| a.to_string())
            .collect();
        assert_eq!(negative, ["world", "owed", "adjustment"]);
    }

    #[test]
    fn names_at_the_limits() {
        let longest = "a".repeat(MAX_NAME_LEN);
        let account: Account = format!("merchant:{longest}:fees").parse().unwrap();
        assert_eq!(account.merchant_id(), Some(longest.as_str()));
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            format!("wallet:hot:{too_long}").parse::<Account>(),
            Err(LedgerError::InvalidName {
                entry: None,
                field: NameField::Address,
                value: too_long,
            })
        );
    }

    #[test]
    fn refusals_name_the_bad_part() {
        let cases: Vec<(&str, LedgerError)> = vec![
            ("", LedgerError::AccountForm { input: "".into() }),
            (
                "World",
                LedgerError::AccountForm {
                    input: "World".into(),
                },
            ),
            (
                "wallet:hot",
                LedgerError::AccountForm {
                    input: "wallet:hot".into(),
                },
            ),
            (
                "merchant:m1",
                LedgerError::AccountForm {
                    input: "merchant:m1".into(),
                },
            ),
            (
                "vault:x:y",
                LedgerError::AccountForm {
                    input: "vault:x:y".into(),
                },
            ),
            (
                "wallet:warm:0x1",
                LedgerError::WalletRole {
                    input: "wallet:warm:0x1".into(),
                    role: "warm".into(),
                },
            ),
            (
                "wallet:hot:",
                LedgerError::InvalidName {
                    entry: None,
                    field: NameField::Address,
                    value: "".into(),
                },
            ),
            (
                "wallet:hot:0x1:2",
                LedgerError::InvalidName {
                    entry: None,
                    field: NameField::Address,
                    value: "0x1:2".into(),
                },
            ),
            (
                "merchant:m1:owed",
                LedgerError::MerchantAccountKind {
                    input: "merchant:m1:owed".into(),
                    kind: "owed".into(),
                },
            ),
            (
                "merchant::fees",
                LedgerError::InvalidName {
                    entry: None,
                    field: NameField::MerchantId,
                    value: "".into(),
                },
            ),
            (
                "merchant:a:b:fees",
                LedgerError::InvalidName {
                    entry: None,
                    field: NameField::MerchantId,
                    value: "a:b".into(),
                },
            ),
            (
                "merchant:m 1:fees",
                LedgerError::InvalidName {
                    entry: None,
                    field: NameField::MerchantId,
                    value: "m 1".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Account>(), Err(expected), "{text:?}");
        }
        // Serde refuses the same strings.
        assert!(serde_json::from_str::<Account>("\"wallet:warm:0x1\"").is_err());
    }

    #[test]
    fn errors_keep_outside_text_short() {
        let long = "x".repeat(10_000);
        let Err(LedgerError::AccountForm { input }) = long.parse::<Account>() else {
            panic!("expected AccountForm");
        };
        assert_eq!(input.len(), crate::error::MAX_SHOWN_CHARS);
    }

    #[test]
    fn validate_catches_directly_built_variants() {
        assert!(Account::wallet(WalletRole::Hot, "0x1").validate().is_ok());
        assert_eq!(
            Account::merchant("a:b", MerchantAccount::Fees).validate(),
            Err(LedgerError::InvalidName {
                entry: None,
                field: NameField::MerchantId,
                value: "a:b".into(),
            })
        );
    }

    #[test]
    fn asset_keys() {
        let key = AssetKey::new("devnet-l1", "USDC");
        assert!(key.validate().is_ok());
        assert_eq!(key.to_string(), "USDC on devnet-l1");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, r#"{"chain":"devnet-l1","asset":"USDC"}"#);
        assert_eq!(serde_json::from_str::<AssetKey>(&json).unwrap(), key);
        assert_eq!(
            AssetKey::new("", "ETH").validate(),
            Err(LedgerError::InvalidName {
                entry: None,
                field: NameField::Chain,
                value: "".into(),
            })
        );
        assert_eq!(
            AssetKey::new("devnet-l1", "ET\nH").validate(),
            Err(LedgerError::InvalidName {
                entry: None,
                field: NameField::Asset,
                value: "ET\nH".into(),
            })
        );
        assert!(AssetKey::new("c", "A".repeat(MAX_ASSET_PART_LEN))
            .validate()
            .is_ok());
        assert!(AssetKey::new("c", "A".repeat(MAX_ASSET_PART_LEN + 1))
            .validate()
            .is_err());
    }
}
