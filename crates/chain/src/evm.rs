//! EVM payments through alloy: addresses, EIP-1559 transfer transactions
//! (native coin or ERC-20 `transfer`), their signing payload and hash, and
//! attaching a threshold ECDSA signature (which comes without a recovery id).
//! Every decoder checks that the bytes mean exactly a plain transfer, so what
//! the signers approve is what gets signed.

use alloy_consensus::{
    transaction::RlpEcdsaDecodableTx, SignableTransaction, Signed, TxEip1559, TxEnvelope,
};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Bytes, Signature, TxKind};
use alloy_sol_types::SolCall;

pub use alloy_primitives::{Address, B256, U256};

/// The largest transaction (unsigned payload or signed envelope) accepted,
/// in bytes. A transfer is a few hundred bytes at most.
pub const MAX_TX_BYTES: usize = 4096;

/// The EIP-2718 type byte of an EIP-1559 transaction.
pub const EIP1559_TX_TYPE: u8 = 0x02;

/// The order of the secp256k1 group (n).
const SECP256K1_ORDER: U256 = U256::from_be_bytes([
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
]);

mod abi {
    alloy_sol_types::sol! {
        function transfer(address to, uint256 amount) external returns (bool);
        function approve(address spender, uint256 amount) external returns (bool);
        function transferFrom(address from, address to, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        // The test token's constructor, as a call, to encode its arguments.
        function testTokenConstructor(string name, string symbol, uint8 decimals, address holder, uint256 supply);
    }
}

/// Why an EVM address, key, transaction or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvmError {
    /// A public key that is not a valid SEC1 secp256k1 point.
    #[error("public key is not a valid secp256k1 key ({len} bytes): {reason}")]
    InvalidPublicKey {
        /// Length of the bytes given.
        len: usize,
        /// What is wrong.
        reason: String,
    },
    /// An address text that is not `0x` followed by 40 hex digits.
    #[error("{field} {text:?} is not an EVM address: {reason}")]
    Malformed {
        /// The field that held the address.
        field: String,
        /// The refused text (cut to 100 characters).
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// A mixed-case address whose EIP-55 checksum is wrong: likely a typo.
    #[error(
        "{field} {text:?} fails its EIP-55 checksum (a typo?); check the address, \
         or write it all in lowercase if you are sure"
    )]
    BadChecksum {
        /// The field that held the address.
        field: String,
        /// The refused text.
        text: String,
    },
    /// An address of another chain family (a Solana base58 address).
    #[error("{field} {text:?} looks like a {family} address, not an EVM (0x...) address")]
    WrongFamily {
        /// The field that held the address.
        field: String,
        /// The refused text.
        text: String,
        /// The family it looks like.
        family: String,
    },
    /// Transaction bytes that are empty or longer than [`MAX_TX_BYTES`].
    #[error("{what} is {len} bytes; it must be between 1 and {max} bytes")]
    BadLength {
        /// What was being decoded.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A transaction whose type byte is not EIP-1559's `0x02`.
    #[error(
        "transaction type byte is 0x{found:02x}; only EIP-1559 (0x02) transactions are \
         supported (0xc0 and above is a legacy transaction)"
    )]
    WrongTxType {
        /// The type byte found.
        found: u8,
    },
    /// Bytes that do not decode as an EIP-1559 transaction.
    #[error("{what} does not decode as an EIP-1559 transaction: {reason}")]
    Undecodable {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// Bytes after the end of the transaction.
    #[error("{what} has {extra} bytes after the end of the transaction")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes follow the transaction.
        extra: usize,
    },
    /// An encoding that decodes but is not the one alloy would produce
    /// (e.g. non-minimal lengths), so its hash would not match its meaning.
    #[error("{what} is not canonically encoded; rebuild it from its fields")]
    NonCanonical {
        /// What was being decoded.
        what: &'static str,
    },
    /// A well-formed transaction that is not a plain native or ERC-20
    /// transfer.
    #[error("transaction is not a plain transfer: {reason}")]
    NotATransfer {
        /// Why not.
        reason: String,
    },
    /// A signature with r or s out of range.
    #[error("signature is invalid: {reason}")]
    BadSignature {
        /// What is wrong.
        reason: String,
    },
    /// The signature does not come from the wallet's key under either
    /// recovery id.
    #[error(
        "signature does not match wallet {expected}: it recovers to {recovered:?} instead; \
         was the transaction signed with another wallet's key?"
    )]
    SignatureDoesNotMatchWallet {
        /// The wallet's address.
        expected: Address,
        /// The addresses recovered with y-parity 0 and 1.
        recovered: Vec<Address>,
    },
    /// An `eth_call` return value that is not one ABI-encoded `uint256`.
    #[error("eth_call returned {len} bytes; expected one uint256 (32 bytes)")]
    BadReturnData {
        /// The returned length.
        len: usize,
    },
}

/// A transfer of a native coin or an ERC-20 token in an EIP-1559
/// transaction: exactly what the signers approve.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// EIP-155 chain id (1 Ethereum, 8453 Base, ...).
    pub chain_id: u64,
    /// The sender's account nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Maximum total fee per gas, wei.
    pub max_fee_per_gas: u128,
    /// Maximum priority fee (tip) per gas, wei.
    pub max_priority_fee_per_gas: u128,
    /// The recipient (for a token transfer, the token's recipient, not the
    /// contract).
    pub to: Address,
    /// Amount in base units (wei, or the token's smallest unit).
    pub amount: U256,
    /// The ERC-20 contract; `None` for the native coin.
    pub token: Option<Address>,
}

impl Transfer {
    /// The most this transaction can pay in fees, in wei:
    /// `max_fee_per_gas * gas_limit`, saturating at `u128::MAX`.
    pub fn fee_cap(&self) -> u128 {
        self.max_fee_per_gas
            .saturating_mul(u128::from(self.gas_limit))
    }

    fn to_tx(&self) -> TxEip1559 {
        let (to, value, input) = match self.token {
            None => (self.to, self.amount, Bytes::new()),
            Some(contract) => {
                let call = abi::transferCall {
                    to: self.to,
                    amount: self.amount,
                };
                (contract, U256::ZERO, Bytes::from(call.abi_encode()))
            }
        };
        TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas_limit,
            max_fee_per_gas: self.max_fee_per_gas,
            max_priority_fee_per_gas: self.max_priority_fee_per_gas,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        }
    }
}

/// A signed transaction, ready for `eth_sendRawTransaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTransaction {
    /// The EIP-2718 encoded signed transaction (`0x02 || rlp(...)`).
    pub raw: Vec<u8>,
    /// The transaction hash (keccak-256 of `raw`).
    pub hash: B256,
    /// The sender, recovered from the signature.
    pub from: Address,
    /// The signature's y-parity (recovery id).
    pub y_parity: bool,
}

/// The EVM address of a secp256k1 public key, given in SEC1 form: 33 bytes
/// compressed or 65 bytes uncompressed.
pub fn address_of_public_key(sec1: &[u8]) -> Result<Address, EvmError> {
    let invalid = |reason: &str| EvmError::InvalidPublicKey {
        len: sec1.len(),
        reason: reason.to_string(),
    };
    if sec1.len() != 33 && sec1.len() != 65 {
        return Err(invalid(
            "expected 33 bytes (compressed) or 65 bytes (uncompressed)",
        ));
    }
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
        .map_err(|_| invalid("not a point on the curve"))?;
    Ok(Address::from_public_key(&key))
}

/// Parses an EVM address: `0x` and 40 hex digits. All-lowercase and
/// all-uppercase are accepted as they are; mixed case must pass the EIP-55
/// checksum. `field` names the input in errors.
pub fn parse_address(field: &str, text: &str) -> Result<Address, EvmError> {
    let shown: String = text.chars().take(100).collect();
    let malformed = |reason: String| EvmError::Malformed {
        field: field.to_string(),
        text: shown.clone(),
        reason,
    };
    if text.len() > 100 {
        return Err(malformed(format!(
            "it is {} characters long; an address is 42",
            text.len()
        )));
    }
    let Some(body) = text.strip_prefix("0x") else {
        if looks_like_solana(text) {
            return Err(EvmError::WrongFamily {
                field: field.to_string(),
                text: shown,
                family: "Solana".to_string(),
            });
        }
        return Err(malformed("it must start with \"0x\"".to_string()));
    };
    if let Some(c) = body.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(malformed(format!("{c:?} is not a hex digit")));
    }
    if body.len() != 40 {
        return Err(malformed(format!(
            "it has {} hex digits; an address has 40",
            body.len()
        )));
    }
    let has_lower = body.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = body.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper {
        return Address::parse_checksummed(text, None).map_err(|_| EvmError::BadChecksum {
            field: field.to_string(),
            text: shown,
        });
    }
    text.parse::<Address>()
        .map_err(|e| malformed(e.to_string()))
}

/// Base58 text that decodes to 32 bytes: a Solana address or mint.
fn looks_like_solana(text: &str) -> bool {
    (32..=44).contains(&text.len())
        && bs58::decode(text)
            .into_vec()
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// The EIP-1559 signing payload of a transfer: `0x02 || rlp(fields)`, as
/// alloy's `SignableTransaction::encode_for_signing` builds it. A native
/// transfer sends `amount` to `to`; a token transfer calls
/// `transfer(to, amount)` on the token contract with value 0. The access
/// list is empty.
pub fn unsigned_payload(t: &Transfer) -> Vec<u8> {
    t.to_tx().encoded_for_signing()
}

/// The hash to sign: keccak-256 of the signing payload.
pub fn signing_hash(payload: &[u8]) -> B256 {
    alloy_primitives::keccak256(payload)
}

/// Decodes a signing payload made by [`unsigned_payload`] back into the
/// transfer it means; refuses anything that is not exactly a plain transfer.
/// `decode_unsigned(&unsigned_payload(t)) == Ok(t)` for every transfer whose
/// recipient and token are not the zero address.
pub fn decode_unsigned(payload: &[u8]) -> Result<Transfer, EvmError> {
    let tx = decode_unsigned_tx(payload)?;
    interpret(&tx)
}

const UNSIGNED: &str = "unsigned payload";
const SIGNED: &str = "signed transaction";

fn check_len(what: &'static str, bytes: &[u8]) -> Result<(), EvmError> {
    if bytes.is_empty() || bytes.len() > MAX_TX_BYTES {
        return Err(EvmError::BadLength {
            what,
            len: bytes.len(),
            max: MAX_TX_BYTES,
        });
    }
    Ok(())
}

fn decode_unsigned_tx(payload: &[u8]) -> Result<TxEip1559, EvmError> {
    check_len(UNSIGNED, payload)?;
    let (&ty, mut rest) = payload.split_first().ok_or(EvmError::BadLength {
        what: UNSIGNED,
        len: 0,
        max: MAX_TX_BYTES,
    })?;
    if ty != EIP1559_TX_TYPE {
        return Err(EvmError::WrongTxType { found: ty });
    }
    let tx = TxEip1559::rlp_decode(&mut rest).map_err(|e| EvmError::Undecodable {
        what: UNSIGNED,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(EvmError::TrailingBytes {
            what: UNSIGNED,
            extra: rest.len(),
        });
    }
    if tx.encoded_for_signing() != payload {
        return Err(EvmError::NonCanonical { what: UNSIGNED });
    }
    Ok(tx)
}

/// Reads a decoded EIP-1559 transaction as a plain transfer, or says why it
/// is not one.
fn interpret(tx: &TxEip1559) -> Result<Transfer, EvmError> {
    let not = |reason: String| EvmError::NotATransfer { reason };
    if !tx.access_list.0.is_empty() {
        return Err(not(format!(
            "it has an access list ({} entries)",
            tx.access_list.0.len()
        )));
    }
    let TxKind::Call(callee) = tx.to else {
        return Err(not("it creates a contract (no recipient)".to_string()));
    };
    if callee == Address::ZERO {
        return Err(not("it sends to the zero address".to_string()));
    }
    let base = |to: Address, amount: U256, token: Option<Address>| Transfer {
        chain_id: tx.chain_id,
        nonce: tx.nonce,
        gas_limit: tx.gas_limit,
        max_fee_per_gas: tx.max_fee_per_gas,
        max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
        to,
        amount,
        token,
    };
    if tx.input.is_empty() {
        return Ok(base(callee, tx.value, None));
    }
    if !tx.value.is_zero() {
        return Err(not(format!(
            "it sends both value ({} wei) and calldata",
            tx.value
        )));
    }
    let input = tx.input.as_ref();
    let selector = input.get(..4).unwrap_or(input);
    if selector == abi::transferCall::SELECTOR {
        if input.len() != 68 {
            return Err(not(format!(
                "its transfer(address,uint256) calldata is {} bytes, not 68",
                input.len()
            )));
        }
        let call = abi::transferCall::abi_decode_validate(input).map_err(|e| {
            not(format!(
                "its transfer(address,uint256) arguments are malformed: {e}"
            ))
        })?;
        if call.to == Address::ZERO {
            return Err(not("it transfers tokens to the zero address".to_string()));
        }
        return Ok(base(call.to, call.amount, Some(callee)));
    }
    let name = if selector == abi::approveCall::SELECTOR {
        "approve(address,uint256)"
    } else if selector == abi::transferFromCall::SELECTOR {
        "transferFrom(address,address,uint256)"
    } else {
        "an unknown function"
    };
    Err(not(format!(
        "its calldata calls {name} (selector 0x{}), not transfer(address,uint256)",
        hex::encode(selector)
    )))
}

/// Attaches a threshold ECDSA signature `(r, s)` over
/// [`signing_hash`]`(payload)` to the transaction in `payload`.
///
/// The signature has no recovery id: s is normalized to low-s (EIP-2), then
/// the y-parity whose recovered signer equals `expected_from` is chosen; if
/// neither does, [`EvmError::SignatureDoesNotMatchWallet`].
pub fn attach_signature(
    payload: &[u8],
    r: [u8; 32],
    s: [u8; 32],
    expected_from: Address,
) -> Result<SignedTransaction, EvmError> {
    let tx = decode_unsigned_tx(payload)?;
    interpret(&tx)?;
    let r = U256::from_be_bytes(r);
    let s = U256::from_be_bytes(s);
    for (name, v) in [("r", r), ("s", s)] {
        if v.is_zero() || v >= SECP256K1_ORDER {
            return Err(EvmError::BadSignature {
                reason: format!("{name} is zero or not below the curve order"),
            });
        }
    }
    let low_s = if s > SECP256K1_ORDER >> 1 {
        SECP256K1_ORDER - s
    } else {
        s
    };
    let prehash = signing_hash(payload);
    let mut recovered = Vec::with_capacity(2);
    for parity in [false, true] {
        let sig = Signature::new(r, low_s, parity);
        let Ok(addr) = sig.recover_address_from_prehash(&prehash) else {
            continue;
        };
        if addr == expected_from {
            let signed: Signed<TxEip1559> = tx.into_signed(sig);
            let hash = *signed.hash();
            let raw = TxEnvelope::from(signed).encoded_2718();
            return Ok(SignedTransaction {
                raw,
                hash,
                from: addr,
                y_parity: parity,
            });
        }
        recovered.push(addr);
    }
    Err(EvmError::SignatureDoesNotMatchWallet {
        expected: expected_from,
        recovered,
    })
}

/// Decodes a signed EIP-1559 transaction (as broadcast), recovers its
/// sender, and reads it as a transfer: `(transfer, from, tx hash)`.
/// Refuses other transaction types, high-s signatures and anything that is
/// not a plain transfer.
pub fn decode_signed(raw: &[u8]) -> Result<(Transfer, Address, B256), EvmError> {
    check_len(SIGNED, raw)?;
    if raw[0] != EIP1559_TX_TYPE {
        return Err(EvmError::WrongTxType { found: raw[0] });
    }
    let mut rest = raw;
    let envelope = TxEnvelope::decode_2718(&mut rest).map_err(|e| EvmError::Undecodable {
        what: SIGNED,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(EvmError::TrailingBytes {
            what: SIGNED,
            extra: rest.len(),
        });
    }
    let TxEnvelope::Eip1559(signed) = envelope else {
        return Err(EvmError::WrongTxType { found: raw[0] });
    };
    if signed.encoded_2718() != raw {
        return Err(EvmError::NonCanonical { what: SIGNED });
    }
    let sig = *signed.signature();
    if sig.normalize_s().is_some() {
        return Err(EvmError::BadSignature {
            reason: "s is in the upper half of the curve order (EIP-2 forbids it)".to_string(),
        });
    }
    let from = sig
        .recover_address_from_prehash(&signed.signature_hash())
        .map_err(|e| EvmError::BadSignature {
            reason: format!("no signer can be recovered: {e}"),
        })?;
    let transfer = interpret(signed.tx())?;
    Ok((transfer, from, *signed.hash()))
}

/// Calldata for the ERC-20 call `transfer(to, amount)` (what a token payout
/// carries; also how the devnet funds a wallet from a dev account).
pub fn erc20_transfer_calldata(to: Address, amount: U256) -> Vec<u8> {
    abi::transferCall { to, amount }.abi_encode()
}

/// The constructor arguments of Keyfold's test token
/// (`testnets/contracts/KeyfoldTestToken.sol`): `(string name, string
/// symbol, uint8 decimals, address holder, uint256 supply)`, ABI-encoded to
/// append to its creation bytecode.
pub fn test_token_constructor_args(
    name: &str,
    symbol: &str,
    decimals: u8,
    holder: Address,
    supply: U256,
) -> Vec<u8> {
    let call = abi::testTokenConstructorCall {
        name: name.to_string(),
        symbol: symbol.to_string(),
        decimals,
        holder,
        supply,
    };
    let mut out = Vec::new();
    // The arguments without the 4-byte selector.
    call.abi_encode_raw(&mut out);
    out
}

/// Calldata for the ERC-20 call `balanceOf(owner)`, for `eth_call`.
pub fn erc20_balance_of_calldata(owner: Address) -> Vec<u8> {
    abi::balanceOfCall { owner }.abi_encode()
}

/// Decodes an `eth_call` result that is one ABI-encoded `uint256` (exactly
/// 32 bytes), such as `balanceOf`'s.
pub fn decode_uint256_return(bytes: &[u8]) -> Result<U256, EvmError> {
    if bytes.len() != 32 {
        return Err(EvmError::BadReturnData { len: bytes.len() });
    }
    abi::balanceOfCall::abi_decode_returns_validate(bytes)
        .map_err(|_| EvmError::BadReturnData { len: bytes.len() })
}
