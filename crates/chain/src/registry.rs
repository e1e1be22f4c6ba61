//! The chain registry: which chains Keyfold pays on, their assets, fee caps,
//! confirmation depths and RPC endpoints, read from TOML. The built-in
//! `chains.toml` has no RPC URLs for real chains (Keyfold sends no traffic
//! anywhere by default); a deployment merges its own entries over it.

use std::collections::HashSet;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::evm;

/// The largest number of decimals an asset may have (ERC-20 allows up to
/// 255, but anything above 36 is a mistake and overflows amount maths).
pub const MAX_DECIMALS: u8 = 36;

/// The built-in registry text (`crates/chain/chains.toml`).
pub const BUILTIN_TOML: &str = include_str!("../chains.toml");

/// The kind of chain, which decides address format and transaction format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainFamily {
    /// Ethereum and EVM chains (EIP-1559 transactions, secp256k1).
    Evm,
    /// Solana (ed25519).
    Solana,
}

/// A token on a chain (ERC-20 contract or SPL mint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Ticker used in the API, e.g. `"USDC"` (matched case-insensitively).
    pub symbol: String,
    /// EVM: the contract's `0x` address (EIP-55 checksummed or all one
    /// case). Solana: the base58 mint address.
    pub contract: String,
    /// The token's decimals (USDC: 6).
    pub decimals: u8,
}

/// One chain Keyfold can pay on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntry {
    /// Slug used in the API, e.g. `"base"`: lowercase letters, digits and
    /// `-`, not all digits.
    pub id: String,
    /// Human name, e.g. `"Base"`.
    pub name: String,
    /// EVM or Solana.
    pub family: ChainFamily,
    /// EIP-155 chain id; required for EVM, absent for Solana.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// The native coin's symbol (`"ETH"`, `"POL"`, `"SOL"`).
    pub native_symbol: String,
    /// The native coin's decimals (18 on EVM, 9 on Solana).
    pub native_decimals: u8,
    /// Blocks (EVM) or slots (Solana) after inclusion before a payment
    /// counts as final.
    pub confirmations: u32,
    /// JSON-RPC endpoints, tried in order. Empty = not configured.
    #[serde(default)]
    pub rpc_urls: Vec<String>,
    /// Cap on `max_fee_per_gas`, wei (EVM). Integer or decimal string.
    #[serde(default, deserialize_with = "de_u128", serialize_with = "ser_u128")]
    pub max_fee_per_gas: u128,
    /// Cap on `max_priority_fee_per_gas`, wei (EVM). Integer or decimal
    /// string.
    #[serde(default, deserialize_with = "de_u128", serialize_with = "ser_u128")]
    pub max_priority_fee_per_gas: u128,
    /// Gas limit of a native transfer (default 21000).
    #[serde(default = "default_gas_native")]
    pub gas_limit_native: u64,
    /// Gas limit of a token transfer (default 100000).
    #[serde(default = "default_gas_token")]
    pub gas_limit_token: u64,
    /// Seconds after which a stuck transaction is replaced (default 120).
    #[serde(default = "default_replace_after")]
    pub replace_after_secs: u64,
    /// Tokens on this chain.
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// A sandbox chain (a local anvil, a testnet): only merchants' sandbox
    /// API keys (`kfm_test_...`) pay and take orders on it, and live keys
    /// only on the other chains (default false). Operators use any chain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sandbox: bool,
}

fn default_gas_native() -> u64 {
    21_000
}
fn default_gas_token() -> u64 {
    100_000
}
fn default_replace_after() -> u64 {
    120
}

/// A u128 written as a TOML integer (which is i64) or a decimal string.
fn de_u128<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrText {
        Int(i64),
        Text(String),
    }
    match IntOrText::deserialize(d)? {
        IntOrText::Int(i) => u128::try_from(i)
            .map_err(|_| serde::de::Error::custom(format!("{i} is negative; fees are >= 0"))),
        IntOrText::Text(t) => crate::amount::parse_base_units("fee", &t)
            .map_err(serde::de::Error::custom)
            .and_then(|v| crate::amount::to_u128("fee", v).map_err(serde::de::Error::custom)),
    }
}

/// Serialized as a decimal string, so JSON clients and TOML keep precision.
fn ser_u128<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// An asset of a chain: its native coin or one of its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetRef<'a> {
    /// The chain's native coin.
    Native,
    /// A token.
    Token(&'a Token),
}

impl ChainEntry {
    /// Looks up an asset by symbol (case-insensitive): the native symbol or
    /// a token's.
    pub fn asset(&self, symbol: &str) -> Option<AssetRef<'_>> {
        if self.native_symbol.eq_ignore_ascii_case(symbol) {
            return Some(AssetRef::Native);
        }
        self.tokens
            .iter()
            .find(|t| t.symbol.eq_ignore_ascii_case(symbol))
            .map(AssetRef::Token)
    }

    /// The decimals of an asset of this chain.
    pub fn asset_decimals(&self, asset: AssetRef<'_>) -> u8 {
        match asset {
            AssetRef::Native => self.native_decimals,
            AssetRef::Token(t) => t.decimals,
        }
    }

    /// The symbol of an asset of this chain, as configured.
    pub fn asset_symbol<'a>(&'a self, asset: AssetRef<'a>) -> &'a str {
        match asset {
            AssetRef::Native => &self.native_symbol,
            AssetRef::Token(t) => &t.symbol,
        }
    }

    /// The EVM contract address of a token of this (EVM) chain.
    pub fn token_address(&self, token: &Token) -> Result<evm::Address, evm::EvmError> {
        evm::parse_address(
            &format!("chains.{}.tokens.{}.contract", self.id, token.symbol),
            &token.contract,
        )
    }

    fn validate(&self, index: usize) -> Result<(), RegistryError> {
        let chain = || self.id.clone();
        if self.id.is_empty() {
            return Err(RegistryError::EmptyId { index });
        }
        if !self
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || self.id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RegistryError::BadId { id: chain() });
        }
        match (self.family, self.chain_id) {
            (ChainFamily::Evm, None) => {
                return Err(RegistryError::MissingChainId { chain: chain() })
            }
            (ChainFamily::Solana, Some(_)) => {
                return Err(RegistryError::UnexpectedChainId { chain: chain() })
            }
            _ => {}
        }
        if self.native_symbol.trim().is_empty() {
            return Err(RegistryError::EmptySymbol {
                chain: chain(),
                field: "native_symbol".to_string(),
            });
        }
        if self.native_decimals > MAX_DECIMALS {
            return Err(RegistryError::DecimalsTooLarge {
                chain: chain(),
                asset: self.native_symbol.clone(),
                decimals: self.native_decimals,
            });
        }
        if self.max_priority_fee_per_gas > self.max_fee_per_gas {
            return Err(RegistryError::PriorityAboveFeeCap {
                chain: chain(),
                priority: self.max_priority_fee_per_gas,
                cap: self.max_fee_per_gas,
            });
        }
        if self.family == ChainFamily::Evm && self.max_fee_per_gas == 0 {
            return Err(RegistryError::ZeroFeeCap { chain: chain() });
        }
        let mut seen: HashSet<String> = HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let upper = token.symbol.to_ascii_uppercase();
            if token.symbol.trim().is_empty() {
                return Err(RegistryError::EmptySymbol {
                    chain: chain(),
                    field: format!("tokens[{i}].symbol"),
                });
            }
            if token.symbol.eq_ignore_ascii_case(&self.native_symbol) {
                return Err(RegistryError::TokenIsNativeSymbol {
                    chain: chain(),
                    symbol: token.symbol.clone(),
                });
            }
            if !seen.insert(upper) {
                return Err(RegistryError::DuplicateToken {
                    chain: chain(),
                    symbol: token.symbol.clone(),
                });
            }
            if token.decimals > MAX_DECIMALS {
                return Err(RegistryError::DecimalsTooLarge {
                    chain: chain(),
                    asset: token.symbol.clone(),
                    decimals: token.decimals,
                });
            }
            let bad = |reason: String| RegistryError::BadContract {
                chain: chain(),
                symbol: token.symbol.clone(),
                reason,
            };
            match self.family {
                ChainFamily::Evm => {
                    self.token_address(token).map_err(|e| bad(e.to_string()))?;
                }
                ChainFamily::Solana => {
                    let len = token.contract.len();
                    if !(32..=44).contains(&len) {
                        return Err(bad(format!(
                            "mint {:?} is {len} characters; a base58 mint is 32 to 44",
                            token.contract.chars().take(64).collect::<String>()
                        )));
                    }
                    let bytes = bs58::decode(&token.contract)
                        .into_vec()
                        .map_err(|e| bad(format!("mint is not base58: {e}")))?;
                    if bytes.len() != 32 {
                        return Err(bad(format!(
                            "mint decodes to {} bytes; a Solana address is 32",
                            bytes.len()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Why a registry was refused. Each variant names the chain (and field or
/// token) to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The TOML does not parse or has unknown/missing fields.
    #[error("chain registry TOML is invalid: {message}")]
    Toml {
        /// The parser's message, with line and column.
        message: String,
    },
    /// An entry with an empty `id`.
    #[error("chain entry #{index} (counting from 1) has an empty id")]
    EmptyId {
        /// 1-based position of the entry.
        index: usize,
    },
    /// An id that is not a slug.
    #[error(
        "chain id {id:?} must be lowercase letters, digits and '-', and not all digits \
         (those look like an EVM chain id)"
    )]
    BadId {
        /// The refused id.
        id: String,
    },
    /// Two entries with the same id.
    #[error("chain {id:?} is defined twice")]
    DuplicateId {
        /// The duplicated id.
        id: String,
    },
    /// Two entries with the same EVM chain id.
    #[error("chains {first:?} and {second:?} both have chain_id {chain_id}")]
    DuplicateChainId {
        /// The shared chain id.
        chain_id: u64,
        /// The first entry.
        first: String,
        /// The second entry.
        second: String,
    },
    /// An EVM entry without `chain_id`.
    #[error("chain {chain:?} is an EVM chain but has no chain_id")]
    MissingChainId {
        /// The entry.
        chain: String,
    },
    /// A Solana entry with a `chain_id`.
    #[error("chain {chain:?} is a Solana chain; remove its chain_id (EVM only)")]
    UnexpectedChainId {
        /// The entry.
        chain: String,
    },
    /// An empty symbol.
    #[error("chain {chain:?}: {field} is empty")]
    EmptySymbol {
        /// The entry.
        chain: String,
        /// Which symbol.
        field: String,
    },
    /// A token whose symbol is the native coin's.
    #[error("chain {chain:?}: token {symbol:?} has the native coin's symbol")]
    TokenIsNativeSymbol {
        /// The entry.
        chain: String,
        /// The symbol.
        symbol: String,
    },
    /// Two tokens with the same symbol (case-insensitive).
    #[error("chain {chain:?}: token {symbol:?} is listed twice")]
    DuplicateToken {
        /// The entry.
        chain: String,
        /// The symbol.
        symbol: String,
    },
    /// A token contract or mint that is not a valid address.
    #[error("chain {chain:?}: token {symbol:?} has a bad contract: {reason}")]
    BadContract {
        /// The entry.
        chain: String,
        /// The token's symbol.
        symbol: String,
        /// What is wrong.
        reason: String,
    },
    /// An asset with more than [`MAX_DECIMALS`] decimals.
    #[error("chain {chain:?}: {asset} has {decimals} decimals; at most 36 are supported")]
    DecimalsTooLarge {
        /// The entry.
        chain: String,
        /// The asset's symbol.
        asset: String,
        /// The refused decimals.
        decimals: u8,
    },
    /// `max_priority_fee_per_gas` above `max_fee_per_gas`.
    #[error(
        "chain {chain:?}: max_priority_fee_per_gas {priority} is above \
         max_fee_per_gas {cap}"
    )]
    PriorityAboveFeeCap {
        /// The entry.
        chain: String,
        /// The priority cap.
        priority: u128,
        /// The fee cap.
        cap: u128,
    },
    /// An EVM entry with `max_fee_per_gas` zero (or missing).
    #[error("chain {chain:?}: max_fee_per_gas is missing or 0; set a cap in wei")]
    ZeroFeeCap {
        /// The entry.
        chain: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    chains: Vec<ChainEntry>,
}

/// The set of configured chains, validated, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRegistry {
    entries: Vec<ChainEntry>,
}

impl ChainRegistry {
    /// Parses and validates a registry: `[[chains]]` tables, each with
    /// `[[chains.tokens]]`.
    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Toml {
            message: e.to_string(),
        })?;
        Self::from_entries(file.chains)
    }

    /// Validates a list of entries into a registry.
    pub fn from_entries(entries: Vec<ChainEntry>) -> Result<Self, RegistryError> {
        for (i, e) in entries.iter().enumerate() {
            e.validate(i + 1)?;
        }
        let mut ids: HashSet<&str> = HashSet::new();
        for e in &entries {
            if !ids.insert(&e.id) {
                return Err(RegistryError::DuplicateId { id: e.id.clone() });
            }
        }
        for (i, e) in entries.iter().enumerate() {
            let Some(cid) = e.chain_id else { continue };
            if let Some(first) = entries[..i].iter().find(|f| f.chain_id == Some(cid)) {
                return Err(RegistryError::DuplicateChainId {
                    chain_id: cid,
                    first: first.id.clone(),
                    second: e.id.clone(),
                });
            }
        }
        Ok(Self { entries })
    }

    /// The built-in registry (`chains.toml`): mainnets and Sepolia with no
    /// RPC URLs, and the local devnet chains.
    pub fn builtin() -> Self {
        // Not input: the file ships inside the binary, and
        // tests/registry.rs parses it, so a broken one never gets released.
        #[allow(clippy::expect_used)]
        Self::from_toml(BUILTIN_TOML).expect("the built-in chains.toml is valid")
    }

    /// Merges `other` over this registry: an entry with an existing id
    /// replaces it (a deployment setting RPC URLs, the devnet adding its
    /// token); new ids are appended. Refused, leaving `self` unchanged, if
    /// the result would have two entries with one chain id.
    pub fn merge(&mut self, other: ChainRegistry) -> Result<(), RegistryError> {
        let mut merged = self.entries.clone();
        for entry in other.entries {
            match merged.iter_mut().find(|e| e.id == entry.id) {
                Some(slot) => *slot = entry,
                None => merged.push(entry),
            }
        }
        *self = Self::from_entries(merged)?;
        Ok(())
    }

    /// Finds a chain by slug (`"base"`) or by decimal EVM chain id
    /// (`"8453"`).
    pub fn get(&self, key: &str) -> Option<&ChainEntry> {
        if let Some(e) = self.entries.iter().find(|e| e.id == key) {
            return Some(e);
        }
        let cid: u64 = key.parse().ok()?;
        self.entries.iter().find(|e| e.chain_id == Some(cid))
    }

    /// All entries, in file order (merged entries last).
    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }
}
