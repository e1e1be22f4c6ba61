//! Solana transfers through the solana-* crates.
//!
//! Builds the legacy message a Keyfold wallet (the fee payer and only signer)
//! signs for a SOL transfer or an SPL Token `TransferChecked` between
//! associated token accounts, attaches the FROST Ed25519 signature, and
//! decodes wire transactions and unsigned messages back into exactly one of
//! these transfers, refusing anything else. Serialization is the SDK's own
//! (wincode, bincode-compatible); nothing here does I/O.
//!
//! SPL transfers always carry two instructions: an associated-token-account
//! `CreateIdempotent` for the recipient's token account (paid by the sender,
//! a no-op when it already exists), then the `TransferChecked`. Only the
//! classic SPL Token program is supported (not Token-2022).

use solana_message::{compiled_instruction::CompiledInstruction, Hash, Message};
use solana_pubkey::Pubkey;
use solana_sanitize::Sanitize;
use solana_system_interface::instruction::SystemInstruction;
use solana_transaction::{Signature, Transaction};
use spl_associated_token_account_interface::{
    address::get_associated_token_address, instruction::create_associated_token_account_idempotent,
};
use spl_token_interface::instruction::{transfer_checked, TokenInstruction};

/// The largest Solana wire transaction, in bytes (the network packet limit).
pub const MAX_TRANSACTION_LEN: usize = 1232;

/// The largest legacy message a single signer can sign: the packet limit less
/// the one-byte signature count and the 64-byte signature.
pub const MAX_MESSAGE_LEN: usize = MAX_TRANSACTION_LEN - 1 - 64;

/// The longest text [`parse_address`] looks at (a 32-byte base58 value is at
/// most 44 characters).
pub const MAX_ADDRESS_TEXT_LEN: usize = 64;

/// Why a Solana address, message or transaction was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SolanaError {
    /// The text is an EVM (`0x…`) address given where a Solana one is needed.
    #[error("{field}: `{text}` is an EVM address, not a Solana address")]
    WrongFamily {
        /// The input field at fault.
        field: String,
        /// The text that was given.
        text: String,
    },
    /// The text is not base58.
    #[error("{field}: not a base58 Solana address: {reason}")]
    InvalidBase58 {
        /// The input field at fault.
        field: String,
        /// What the base58 decoder said.
        reason: String,
    },
    /// The text decodes to something other than 32 bytes.
    #[error("{field}: decodes to {len} bytes, a Solana address has 32")]
    WrongAddressLength {
        /// The input field at fault.
        field: String,
        /// How many bytes it decoded to.
        len: usize,
    },
    /// The input is longer than any valid one can be.
    #[error("{what} is {len} bytes, above the {max}-byte limit")]
    Oversize {
        /// Which input (`address`, `message`, `transaction`).
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes do not decode (truncated, trailing bytes, or bad indices).
    #[error("{what} does not decode: {reason}")]
    Malformed {
        /// Which input (`message`, `transaction`, an instruction).
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The bytes decode, but are not the canonical encoding (so the bytes
    /// signed would differ from the bytes sent).
    #[error("{what} is not in canonical encoding")]
    NotCanonical {
        /// Which input (`message`, `transaction`).
        what: &'static str,
    },
    /// The message needs a number of signatures other than one.
    #[error("message needs {required} signatures; Keyfold signs alone as fee payer (1)")]
    SignerCount {
        /// `num_required_signatures` of the message header.
        required: u8,
    },
    /// The wire transaction carries a number of signatures other than one.
    #[error("transaction carries {found} signatures; exactly 1 is expected")]
    SignatureCount {
        /// How many signatures it carries.
        found: usize,
    },
    /// An instruction calls a program Keyfold does not sign for.
    #[error("instruction {index} calls program {program}, which Keyfold does not sign for")]
    UnknownProgram {
        /// Index of the instruction in the message.
        index: usize,
        /// The program's base58 address.
        program: String,
    },
    /// The instructions are not the shape of a SOL or SPL transfer.
    #[error("message has {count} instructions ({programs}); expected one SOL transfer or an ATA create then an SPL transfer_checked")]
    UnexpectedInstructions {
        /// How many instructions the message has.
        count: usize,
        /// Their program addresses, comma-separated.
        programs: String,
    },
    /// An instruction of a known program is not the expected one.
    #[error("instruction {index}: {reason}")]
    UnexpectedInstruction {
        /// Index of the instruction in the message.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An account of the transfer is not the one it must be.
    #[error("{field} is {found}, expected {expected}")]
    AccountMismatch {
        /// The role of the account (`source`, `authority`, ...).
        field: &'static str,
        /// The base58 address found.
        found: String,
        /// The base58 address expected.
        expected: String,
    },
}

/// A native SOL transfer from the fee payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolTransfer {
    /// Sender, fee payer and only signer.
    pub from: [u8; 32],
    /// Recipient system account.
    pub to: [u8; 32],
    /// Amount in lamports.
    pub lamports: u64,
    /// Recent blockhash the message is bound to.
    pub recent_blockhash: [u8; 32],
}

/// An SPL Token transfer between the associated token accounts of two owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplTransfer {
    /// Sending wallet: owner of the source token account, fee payer and only
    /// signer.
    pub owner: [u8; 32],
    /// Token mint.
    pub mint: [u8; 32],
    /// Receiving wallet (its associated token account receives the tokens).
    pub to_owner: [u8; 32],
    /// Amount in the token's base units.
    pub amount: u64,
    /// The mint's decimals, checked on chain by `TransferChecked`.
    pub decimals: u8,
    /// Recent blockhash the message is bound to.
    pub recent_blockhash: [u8; 32],
}

/// A transfer interpreted from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolanaTransfer {
    /// Native SOL transfer.
    Sol {
        /// Sender and fee payer.
        from: [u8; 32],
        /// Recipient.
        to: [u8; 32],
        /// Amount in lamports.
        lamports: u64,
    },
    /// SPL Token `TransferChecked` between associated token accounts.
    Spl {
        /// Sending wallet and fee payer.
        owner: [u8; 32],
        /// Token mint.
        mint: [u8; 32],
        /// Receiving wallet.
        to_owner: [u8; 32],
        /// Amount in the token's base units.
        amount: u64,
        /// The mint's decimals.
        decimals: u8,
    },
}

/// A decoded, single-signer wire transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSolana {
    /// The fee payer (first account, the only signer).
    pub fee_payer: [u8; 32],
    /// The fee payer's signature (not verified here).
    pub signature: [u8; 64],
    /// The serialized legacy message the signature is over.
    pub message: Vec<u8>,
    /// The recent blockhash of the message.
    pub recent_blockhash: [u8; 32],
    /// The transfer the message performs.
    pub transfer: SolanaTransfer,
}

/// Parses a base58 Solana address; `field` names the input in errors.
pub fn parse_address(field: &str, text: &str) -> Result<[u8; 32], SolanaError> {
    let trimmed = text.trim();
    if trimmed.starts_with("0x") || trimmed.starts_with("0X") {
        return Err(SolanaError::WrongFamily {
            field: field.to_owned(),
            text: trimmed.chars().take(MAX_ADDRESS_TEXT_LEN).collect(),
        });
    }
    if trimmed.len() > MAX_ADDRESS_TEXT_LEN {
        return Err(SolanaError::Oversize {
            what: "address",
            len: trimmed.len(),
            max: MAX_ADDRESS_TEXT_LEN,
        });
    }
    let bytes = bs58::decode(trimmed)
        .into_vec()
        .map_err(|e| SolanaError::InvalidBase58 {
            field: field.to_owned(),
            reason: e.to_string(),
        })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SolanaError::WrongAddressLength {
        field: field.to_owned(),
        len: bytes.len(),
    })
}

/// The base58 Solana address of an Ed25519 public key.
pub fn address_of_public_key(pk: &[u8; 32]) -> String {
    Pubkey::new_from_array(*pk).to_string()
}

/// The associated token account of `owner` for `mint` (classic SPL Token).
pub fn associated_token_address(owner: &[u8; 32], mint: &[u8; 32]) -> [u8; 32] {
    get_associated_token_address(
        &Pubkey::new_from_array(*owner),
        &Pubkey::new_from_array(*mint),
    )
    .to_bytes()
}

fn sol_message_struct(t: &SolTransfer) -> Message {
    let from = Pubkey::new_from_array(t.from);
    let to = Pubkey::new_from_array(t.to);
    let ix = solana_system_interface::instruction::transfer(&from, &to, t.lamports);
    Message::new_with_blockhash(
        &[ix],
        Some(&from),
        &Hash::new_from_array(t.recent_blockhash),
    )
}

fn spl_message_struct(t: &SplTransfer) -> Message {
    let owner = Pubkey::new_from_array(t.owner);
    let mint = Pubkey::new_from_array(t.mint);
    let to_owner = Pubkey::new_from_array(t.to_owner);
    let token_program = spl_token_interface::ID;
    let source = get_associated_token_address(&owner, &mint);
    let destination = get_associated_token_address(&to_owner, &mint);
    let create =
        create_associated_token_account_idempotent(&owner, &to_owner, &mint, &token_program);
    let transfer = match transfer_checked(
        &token_program,
        &source,
        &mint,
        &destination,
        &owner,
        &[],
        t.amount,
        t.decimals,
    ) {
        Ok(ix) => ix,
        // `transfer_checked` fails only for a program id other than SPL
        // Token's own, and it is given that constant: no input reaches here.
        Err(e) => unreachable!("transfer_checked refused the SPL Token program id: {e}"),
    };
    Message::new_with_blockhash(
        &[create, transfer],
        Some(&owner),
        &Hash::new_from_array(t.recent_blockhash),
    )
}

/// The serialized legacy message `from` signs for a SOL transfer.
pub fn sol_transfer_message(t: &SolTransfer) -> Vec<u8> {
    sol_message_struct(t).serialize()
}

/// The serialized legacy message `owner` signs for an SPL transfer: an
/// idempotent create of the recipient's associated token account, then a
/// `TransferChecked` from the owner's associated token account to it.
pub fn spl_transfer_message(t: &SplTransfer) -> Vec<u8> {
    spl_message_struct(t).serialize()
}

/// Decodes a legacy message exactly and checks it needs exactly one
/// signature and re-encodes to the same bytes.
fn parse_message(message: &[u8]) -> Result<Message, SolanaError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(SolanaError::Oversize {
            what: "message",
            len: message.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let msg: Message = wincode::deserialize_exact(message).map_err(|e| SolanaError::Malformed {
        what: "message",
        reason: e.to_string(),
    })?;
    check_message(&msg)?;
    if msg.serialize() != message {
        return Err(SolanaError::NotCanonical { what: "message" });
    }
    Ok(msg)
}

fn check_message(msg: &Message) -> Result<(), SolanaError> {
    msg.sanitize().map_err(|e| SolanaError::Malformed {
        what: "message",
        reason: e.to_string(),
    })?;
    if msg.header.num_required_signatures != 1 {
        return Err(SolanaError::SignerCount {
            required: msg.header.num_required_signatures,
        });
    }
    Ok(())
}

/// The wire transaction: the message with the fee payer's signature, after
/// checking the message decodes exactly and needs exactly one signature.
pub fn attach_signature(message: &[u8], signature: [u8; 64]) -> Result<Vec<u8>, SolanaError> {
    let msg = parse_message(message)?;
    let tx = Transaction {
        signatures: vec![Signature::from(signature)],
        message: msg,
    };
    let wire = wincode::serialize(&tx).map_err(|e| SolanaError::Malformed {
        what: "transaction",
        reason: e.to_string(),
    })?;
    if wire.len() > MAX_TRANSACTION_LEN {
        return Err(SolanaError::Oversize {
            what: "transaction",
            len: wire.len(),
            max: MAX_TRANSACTION_LEN,
        });
    }
    Ok(wire)
}

/// Decodes a signed wire transaction into its fee payer, signature, message
/// bytes and transfer, refusing anything but one single-signer SOL or SPL
/// transfer as built here. The signature is returned, not verified.
pub fn decode_transaction(wire: &[u8]) -> Result<DecodedSolana, SolanaError> {
    if wire.len() > MAX_TRANSACTION_LEN {
        return Err(SolanaError::Oversize {
            what: "transaction",
            len: wire.len(),
            max: MAX_TRANSACTION_LEN,
        });
    }
    let tx: Transaction = wincode::deserialize_exact(wire).map_err(|e| SolanaError::Malformed {
        what: "transaction",
        reason: e.to_string(),
    })?;
    let signature = match tx.signatures.as_slice() {
        [one] => <[u8; 64]>::from(*one),
        other => return Err(SolanaError::SignatureCount { found: other.len() }),
    };
    check_message(&tx.message)?;
    let message = tx.message.serialize();
    // Canonical: the wire is exactly count || signature || message.
    if wire.len() != 1 + 64 + message.len() || wire.get(65..) != Some(message.as_slice()) {
        return Err(SolanaError::NotCanonical {
            what: "transaction",
        });
    }
    let (transfer, recent_blockhash) = decode_message(&message)?;
    let fee_payer = match transfer {
        SolanaTransfer::Sol { from, .. } => from,
        SolanaTransfer::Spl { owner, .. } => owner,
    };
    Ok(DecodedSolana {
        fee_payer,
        signature,
        message,
        recent_blockhash,
        transfer,
    })
}

fn key_at(msg: &Message, index: u8, what: &'static str) -> Result<Pubkey, SolanaError> {
    msg.account_keys
        .get(usize::from(index))
        .copied()
        .ok_or_else(|| SolanaError::Malformed {
            what,
            reason: format!("account index {index} out of range"),
        })
}

fn account_of(
    msg: &Message,
    ix: &CompiledInstruction,
    position: usize,
    ix_index: usize,
) -> Result<Pubkey, SolanaError> {
    let index = ix
        .accounts
        .get(position)
        .ok_or_else(|| SolanaError::UnexpectedInstruction {
            index: ix_index,
            reason: format!(
                "has {} accounts, needs more than {position}",
                ix.accounts.len()
            ),
        })?;
    key_at(msg, *index, "instruction")
}

fn program_of(msg: &Message, ix: &CompiledInstruction) -> Result<Pubkey, SolanaError> {
    key_at(msg, ix.program_id_index, "instruction")
}

fn expect_account(field: &'static str, found: Pubkey, expected: Pubkey) -> Result<(), SolanaError> {
    if found == expected {
        Ok(())
    } else {
        Err(SolanaError::AccountMismatch {
            field,
            found: found.to_string(),
            expected: expected.to_string(),
        })
    }
}

fn interpret_sol(msg: &Message, fee_payer: Pubkey) -> Result<SolTransfer, SolanaError> {
    let [ix] = msg.instructions.as_slice() else {
        return Err(shape_error(msg));
    };
    let system: SystemInstruction =
        wincode::deserialize_exact(&ix.data).map_err(|e| SolanaError::Malformed {
            what: "system instruction",
            reason: e.to_string(),
        })?;
    let SystemInstruction::Transfer { lamports } = system else {
        return Err(SolanaError::UnexpectedInstruction {
            index: 0,
            reason: "system instruction is not a transfer".to_owned(),
        });
    };
    let from = account_of(msg, ix, 0, 0)?;
    let to = account_of(msg, ix, 1, 0)?;
    expect_account("sender", from, fee_payer)?;
    Ok(SolTransfer {
        from: from.to_bytes(),
        to: to.to_bytes(),
        lamports,
        recent_blockhash: msg.recent_blockhash.to_bytes(),
    })
}

fn interpret_spl(msg: &Message, fee_payer: Pubkey) -> Result<SplTransfer, SolanaError> {
    let [create, transfer] = msg.instructions.as_slice() else {
        return Err(shape_error(msg));
    };
    if create.data.as_slice() != [1] {
        return Err(SolanaError::UnexpectedInstruction {
            index: 0,
            reason: "associated token account instruction is not CreateIdempotent".to_owned(),
        });
    }
    let (amount, decimals) = match TokenInstruction::unpack(&transfer.data) {
        Ok(TokenInstruction::TransferChecked { amount, decimals }) => (amount, decimals),
        Ok(_) => {
            return Err(SolanaError::UnexpectedInstruction {
                index: 1,
                reason: "token instruction is not TransferChecked".to_owned(),
            })
        }
        Err(e) => {
            return Err(SolanaError::Malformed {
                what: "token instruction",
                reason: e.to_string(),
            })
        }
    };
    // TransferChecked accounts: source, mint, destination, authority.
    let source = account_of(msg, transfer, 0, 1)?;
    let mint = account_of(msg, transfer, 1, 1)?;
    let destination = account_of(msg, transfer, 2, 1)?;
    let authority = account_of(msg, transfer, 3, 1)?;
    // CreateIdempotent accounts: funder, new account, wallet, mint, ...
    let to_owner = account_of(msg, create, 2, 0)?;
    expect_account("authority", authority, fee_payer)?;
    expect_account(
        "source token account",
        source,
        get_associated_token_address(&fee_payer, &mint),
    )?;
    expect_account(
        "destination token account",
        destination,
        get_associated_token_address(&to_owner, &mint),
    )?;
    Ok(SplTransfer {
        owner: fee_payer.to_bytes(),
        mint: mint.to_bytes(),
        to_owner: to_owner.to_bytes(),
        amount,
        decimals,
        recent_blockhash: msg.recent_blockhash.to_bytes(),
    })
}

fn shape_error(msg: &Message) -> SolanaError {
    let programs = msg
        .instructions
        .iter()
        .map(|ix| match program_of(msg, ix) {
            Ok(p) => p.to_string(),
            Err(_) => "?".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    SolanaError::UnexpectedInstructions {
        count: msg.instructions.len(),
        programs,
    }
}

/// Interprets an unsigned serialized legacy message (the signer-side check):
/// the transfer it performs and its recent blockhash. Refuses anything but
/// exactly the message [`sol_transfer_message`] or [`spl_transfer_message`]
/// builds for the transfer it describes.
pub fn decode_message(message: &[u8]) -> Result<(SolanaTransfer, [u8; 32]), SolanaError> {
    let msg = parse_message(message)?;
    let fee_payer = key_at(&msg, 0, "message")?;
    let system = solana_system_interface::program::ID;
    let ata = spl_associated_token_account_interface::program::ID;
    let token = spl_token_interface::ID;
    let mut programs = Vec::with_capacity(msg.instructions.len());
    for (index, ix) in msg.instructions.iter().enumerate() {
        let program = program_of(&msg, ix)?;
        if program != system && program != ata && program != token {
            return Err(SolanaError::UnknownProgram {
                index,
                program: program.to_string(),
            });
        }
        programs.push(program);
    }
    let (transfer, rebuilt) = match programs.as_slice() {
        [p] if *p == system => {
            let t = interpret_sol(&msg, fee_payer)?;
            (
                SolanaTransfer::Sol {
                    from: t.from,
                    to: t.to,
                    lamports: t.lamports,
                },
                sol_transfer_message(&t),
            )
        }
        [a, t] if *a == ata && *t == token => {
            let t = interpret_spl(&msg, fee_payer)?;
            (
                SolanaTransfer::Spl {
                    owner: t.owner,
                    mint: t.mint,
                    to_owner: t.to_owner,
                    amount: t.amount,
                    decimals: t.decimals,
                },
                spl_transfer_message(&t),
            )
        }
        _ => return Err(shape_error(&msg)),
    };
    // Whatever the checks above did not name (header flags, account order,
    // extra accounts, other token/ATA accounts) must still match exactly.
    if rebuilt != message {
        return Err(SolanaError::NotCanonical { what: "message" });
    }
    Ok((transfer, msg.recent_blockhash.to_bytes()))
}

/// Standard base64 (with padding) of a wire transaction, as Solana RPC's
/// `sendTransaction` takes with `encoding: "base64"`.
pub fn base64_wire(wire: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(wire)
}
