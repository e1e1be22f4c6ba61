//! The signer-side check of a chain transaction against the typed payout
//! it is said to carry: decode the unsigned transaction independently and
//! compare every field that moves money. Signers, the coordinator and the
//! auditor run the same function; nothing here trusts the caller's reading
//! of the bytes.

use alloy_primitives::U256;

use crate::{evm, solana};

/// The fee a Solana transaction with one signature pays, in lamports (the
/// network's fixed base fee; Keyfold adds no priority fee).
pub const SOLANA_FEE_LAMPORTS: u128 = 5_000;

/// What the typed request says the transaction pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// EVM chain id; `None` for Solana.
    pub chain_id: Option<u64>,
    /// Token contract (EVM) or mint (Solana); `None` for the native asset.
    pub token_contract: Option<&'a str>,
    /// Recipient address.
    pub destination: &'a str,
    /// Amount in base units.
    pub amount: u128,
    /// The fee cap the policy evaluated (native base units).
    pub fee_cap: u128,
}

/// Why a transaction does not carry its payout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// The bytes are not a transfer this crate can decode.
    #[error("the transaction does not decode as a transfer: {0}")]
    Undecodable(String),
    /// A field of the request does not parse.
    #[error("the request's {field} is not valid: {reason}")]
    BadRequestField {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A field of the transaction differs from the request.
    #[error("the transaction's {field} is {found}, the request says {expected}")]
    Differs {
        /// Which field.
        field: &'static str,
        /// What the request says.
        expected: String,
        /// What the transaction holds.
        found: String,
    },
}

fn differs(field: &'static str, expected: impl ToString, found: impl ToString) -> Mismatch {
    Mismatch::Differs {
        field,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Checks that `tx` (an EIP-2718 signing payload for EVM chains, a
/// serialized message for Solana) pays exactly `expected`.
pub fn check_transaction(expected: &Expected<'_>, tx: &[u8]) -> Result<(), Mismatch> {
    match expected.chain_id {
        Some(chain_id) => check_evm(chain_id, expected, tx),
        None => check_solana(expected, tx),
    }
}

fn check_evm(chain_id: u64, e: &Expected<'_>, tx: &[u8]) -> Result<(), Mismatch> {
    let t = evm::decode_unsigned(tx).map_err(|err| Mismatch::Undecodable(err.to_string()))?;
    let bad = |field, err: evm::EvmError| Mismatch::BadRequestField {
        field,
        reason: err.to_string(),
    };
    if t.chain_id != chain_id {
        return Err(differs("chain id", chain_id, t.chain_id));
    }
    let to = evm::parse_address("destination", e.destination).map_err(|x| bad("destination", x))?;
    if t.to != to {
        return Err(differs("recipient", to, t.to));
    }
    if t.amount != U256::from(e.amount) {
        return Err(differs("amount", e.amount, t.amount));
    }
    let token = e
        .token_contract
        .map(|c| evm::parse_address("token_contract", c))
        .transpose()
        .map_err(|x| bad("token contract", x))?;
    if t.token != token {
        let show =
            |a: Option<evm::Address>| a.map_or("the native coin".to_string(), |a| a.to_string());
        return Err(differs("token", show(token), show(t.token)));
    }
    if t.fee_cap() != e.fee_cap {
        return Err(differs("fee cap", e.fee_cap, t.fee_cap()));
    }
    Ok(())
}

fn check_solana(e: &Expected<'_>, tx: &[u8]) -> Result<(), Mismatch> {
    let (transfer, _) =
        solana::decode_message(tx).map_err(|err| Mismatch::Undecodable(err.to_string()))?;
    let bad = |field, err: solana::SolanaError| Mismatch::BadRequestField {
        field,
        reason: err.to_string(),
    };
    let to =
        solana::parse_address("destination", e.destination).map_err(|x| bad("destination", x))?;
    let b58 = |k: &[u8; 32]| solana::address_of_public_key(k);
    if e.fee_cap != SOLANA_FEE_LAMPORTS {
        return Err(differs("fee cap", e.fee_cap, SOLANA_FEE_LAMPORTS));
    }
    match (transfer, e.token_contract) {
        (
            solana::SolanaTransfer::Sol {
                to: t, lamports, ..
            },
            None,
        ) => {
            if t != to {
                return Err(differs("recipient", b58(&to), b58(&t)));
            }
            if u128::from(lamports) != e.amount {
                return Err(differs("amount", e.amount, lamports));
            }
            Ok(())
        }
        (
            solana::SolanaTransfer::Spl {
                mint,
                to_owner,
                amount,
                ..
            },
            Some(m),
        ) => {
            let want =
                solana::parse_address("token_contract", m).map_err(|x| bad("token contract", x))?;
            if mint != want {
                return Err(differs("mint", b58(&want), b58(&mint)));
            }
            if to_owner != to {
                return Err(differs("recipient", b58(&to), b58(&to_owner)));
            }
            if u128::from(amount) != e.amount {
                return Err(differs("amount", e.amount, amount));
            }
            Ok(())
        }
        (solana::SolanaTransfer::Sol { .. }, Some(m)) => {
            Err(differs("asset", format!("token {m}"), "SOL"))
        }
        (solana::SolanaTransfer::Spl { mint, .. }, None) => {
            Err(differs("asset", "SOL", format!("token {}", b58(&mint))))
        }
    }
}
