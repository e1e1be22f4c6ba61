//! Deposits to order addresses, found in what an EVM block and its logs
//! hold; reorg detection against the block hashes the watcher stored; and
//! payment URIs (EIP-681, Solana Pay) for showing an order to a payer.
//!
//! Pure: the chain watcher fetches blocks, logs and hashes over RPC and
//! passes them here. Matching is deliberately strict (exact topic count,
//! exact data length, clean address padding) so that a contract that only
//! looks like an ERC-20 cannot fake a deposit; native matches still need
//! their receipt status checked by the caller (a reverted transaction keeps
//! its `to` and `value` in the block).

use std::collections::HashSet;
use std::fmt::Write as _;

use alloy_primitives::{b256, Address, B256, U256};

/// `keccak256("Transfer(address,address,uint256)")`, topic 0 of an ERC-20
/// `Transfer` event.
pub const TRANSFER_TOPIC: B256 =
    b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// A transaction of a block, as far as native transfers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTx {
    /// The transaction hash.
    pub hash: B256,
    /// The recipient; `None` for a contract creation.
    pub to: Option<Address>,
    /// Wei sent.
    pub value: U256,
}

/// An event log, as `eth_getLogs` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// The contract that emitted it.
    pub address: Address,
    /// Topic 0 is the event signature; the rest are indexed arguments.
    pub topics: Vec<B256>,
    /// The non-indexed arguments, ABI-encoded.
    pub data: Vec<u8>,
    /// The transaction that emitted it.
    pub tx_hash: B256,
    /// Its index in the block.
    pub log_index: u64,
    /// The block that includes it.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
    /// Set by the node when a reorg removed the log.
    pub removed: bool,
}

/// A payment to a watched address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    /// The paying transaction.
    pub tx_hash: B256,
    /// The `Transfer` log's index in the block; `None` for native coin.
    pub log_index: Option<u64>,
    /// The watched address paid.
    pub to: Address,
    /// The token contract; `None` for native coin.
    pub token: Option<Address>,
    /// Base units (wei for native coin).
    pub amount: U256,
    /// The block that includes it.
    pub block_number: u64,
    /// That block's hash (to tell a reorg apart from a re-read).
    pub block_hash: B256,
}

/// Native coin deposits of one block: transactions sending a non-zero
/// value to a watched address. The caller checks the receipt status of
/// these matches before counting them.
pub fn native_deposits(
    block_number: u64,
    block_hash: B256,
    txs: &[BlockTx],
    watched: &HashSet<Address>,
) -> Vec<Deposit> {
    txs.iter()
        .filter(|tx| !tx.value.is_zero())
        .filter_map(|tx| {
            let to = tx.to.filter(|to| watched.contains(to))?;
            Some(Deposit {
                tx_hash: tx.hash,
                log_index: None,
                to,
                token: None,
                amount: tx.value,
                block_number,
                block_hash,
            })
        })
        .collect()
}

/// Why a `Transfer` log of a listed token was not a standard ERC-20
/// `Transfer(address indexed from, address indexed to, uint256 value)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferLogError {
    /// Not 3 topics (an ERC-721 `Transfer` has 4; a non-indexed variant 1).
    #[error(
        "Transfer log has {found} topics, a standard ERC-20 Transfer has 3; check that the \
         listed contract is an ERC-20 token"
    )]
    TopicCount {
        /// The number of topics found.
        found: usize,
    },
    /// Data that is not one 32-byte word.
    #[error(
        "Transfer log has {found} bytes of data, a standard ERC-20 Transfer has 32; check that \
         the listed contract is an ERC-20 token"
    )]
    DataLength {
        /// The data length found.
        found: usize,
    },
    /// The recipient topic has non-zero bytes above the 20-byte address.
    #[error(
        "Transfer log's recipient topic {topic} is not a padded address (its upper 12 bytes \
         are not zero); the log is not a standard ERC-20 Transfer"
    )]
    DirtyAddress {
        /// The refused topic.
        topic: B256,
    },
}

/// A decoded ERC-20 `Transfer` (only what deposits need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// The recipient (topic 2).
    pub to: Address,
    /// Base units (the data word).
    pub amount: U256,
}

/// Decodes a log whose topic 0 is [`TRANSFER_TOPIC`] as a standard ERC-20
/// `Transfer`. The caller has checked topic 0 and the emitting contract.
pub fn decode_transfer(log: &Log) -> Result<Transfer, TransferLogError> {
    let [_, _, to_topic] = log.topics.as_slice() else {
        return Err(TransferLogError::TopicCount {
            found: log.topics.len(),
        });
    };
    let data: &[u8; 32] =
        log.data
            .as_slice()
            .try_into()
            .map_err(|_| TransferLogError::DataLength {
                found: log.data.len(),
            })?;
    let (pad, addr) = to_topic.as_slice().split_at(12);
    // Solidity pads indexed addresses with zeros; anything else there means
    // the event is something else wearing Transfer's signature.
    if pad.iter().any(|b| *b != 0) {
        return Err(TransferLogError::DirtyAddress { topic: *to_topic });
    }
    Ok(Transfer {
        to: Address::from_slice(addr),
        amount: U256::from_be_bytes(*data),
    })
}

/// What [`token_deposits`] found in a batch of logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenScan {
    /// ERC-20 deposits to watched addresses.
    pub deposits: Vec<Deposit>,
    /// `Transfer` logs of listed tokens that were malformed (see
    /// [`decode_transfer`]) and skipped. Non-zero means a listed token does
    /// not behave like an ERC-20: the caller logs it for an operator.
    pub skipped: usize,
}

/// ERC-20 deposits in `logs`: `Transfer` logs emitted by a contract in
/// `tokens`, to an address in `watched`, of a non-zero amount.
///
/// Logs marked `removed` and logs of other contracts or other events are
/// ignored. A malformed `Transfer` log of a listed token is skipped and
/// counted in [`TokenScan::skipped`] instead of failing the whole block,
/// so one odd log cannot stall the watcher.
pub fn token_deposits(
    logs: &[Log],
    tokens: &HashSet<Address>,
    watched: &HashSet<Address>,
) -> TokenScan {
    let mut scan = TokenScan::default();
    for log in logs {
        if log.removed
            || !tokens.contains(&log.address)
            || log.topics.first() != Some(&TRANSFER_TOPIC)
        {
            continue;
        }
        let Ok(transfer) = decode_transfer(log) else {
            scan.skipped += 1;
            continue;
        };
        if transfer.amount.is_zero() || !watched.contains(&transfer.to) {
            continue;
        }
        scan.deposits.push(Deposit {
            tx_hash: log.tx_hash,
            log_index: Some(log.log_index),
            to: transfer.to,
            token: Some(log.address),
            amount: transfer.amount,
            block_number: log.block_number,
            block_hash: log.block_hash,
        });
    }
    scan
}

/// The highest block of `known` that is still on the canonical chain, or
/// `None` if even the oldest kept block was replaced.
///
/// `known` holds the watcher's stored `(number, hash)` pairs (ascending);
/// `canonical` the chain's hash at the same numbers now, `None` where the
/// chain no longer reaches that number. A known block missing from
/// `canonical` counts as replaced (it could not be checked).
///
/// - Nothing replaced: the highest known block (no reorg).
/// - Otherwise: the highest matching block below the lowest replaced one.
///   Looking below the *lowest* mismatch is deliberate: hashes commit to
///   their parents, so a match above a mismatch means inconsistent answers
///   (e.g. RPC nodes behind a load balancer at different views), and the
///   safe reading is the deeper reorg.
/// - `None`: the reorg is deeper than what was kept (or `known` is empty).
///   The caller must then rescan from its oldest kept block minus one
///   (and, as it cannot check that block either, keep more history).
///
/// The caller drops the deposits it recorded above the returned block and
/// rescans from the block after it.
pub fn fork_point(known: &[(u64, B256)], canonical: &[(u64, Option<B256>)]) -> Option<u64> {
    let lowest_replaced = known
        .iter()
        .filter(|block| !still_canonical(block, canonical))
        .map(|(number, _)| *number)
        .min();
    known
        .iter()
        .filter(|(number, _)| lowest_replaced.is_none_or(|low| *number < low))
        .filter(|block| still_canonical(block, canonical))
        .map(|(number, _)| *number)
        .max()
}

/// Whether any block of `known` was replaced or dropped (see
/// [`fork_point`] for where the chains part).
pub fn is_reorged(known: &[(u64, B256)], canonical: &[(u64, Option<B256>)]) -> bool {
    known.iter().any(|block| !still_canonical(block, canonical))
}

fn still_canonical((number, hash): &(u64, B256), canonical: &[(u64, Option<B256>)]) -> bool {
    canonical
        .iter()
        .any(|(n, h)| n == number && h.as_ref() == Some(hash))
}

/// An EIP-681 URI asking for `wei` of the native coin of chain `chain_id`
/// to be sent to `to`: `ethereum:<to>@<chain_id>?value=<wei>`, the address
/// EIP-55 checksummed and the value in decimal wei.
pub fn eip681_native(to: Address, chain_id: u64, wei: U256) -> String {
    format!("ethereum:{}@{chain_id}?value={wei}", to.to_checksum(None))
}

/// An EIP-681 URI asking for an ERC-20 `transfer` of `amount` base units of
/// `token` to `to`:
/// `ethereum:<token>@<chain_id>/transfer?address=<to>&uint256=<amount>`.
pub fn eip681_token(token: Address, chain_id: u64, to: Address, amount: U256) -> String {
    format!(
        "ethereum:{}@{chain_id}/transfer?address={}&uint256={amount}",
        token.to_checksum(None),
        to.to_checksum(None)
    )
}

/// A Solana Pay transfer request URI:
/// `solana:<recipient>?amount=<decimal>[&spl-token=<mint>][&label=<label>]`.
///
/// `amount_decimal` is in the asset's units ("1.5" SOL), e.g. from
/// [`crate::amount::format_amount`] (which writes the leading `0` Solana
/// Pay asks for below 1). Every part is percent-encoded, which leaves valid
/// base58 and decimal text unchanged and keeps a hostile value from adding
/// parameters of its own.
pub fn solana_pay(
    recipient_base58: &str,
    amount_decimal: &str,
    spl_token_mint: Option<&str>,
    label: Option<&str>,
) -> String {
    let mut uri = format!(
        "solana:{}?amount={}",
        percent_encode(recipient_base58),
        percent_encode(amount_decimal)
    );
    if let Some(mint) = spl_token_mint {
        uri.push_str("&spl-token=");
        uri.push_str(&percent_encode(mint));
    }
    if let Some(label) = label {
        uri.push_str("&label=");
        uri.push_str(&percent_encode(label));
    }
    uri
}

/// RFC 3986 percent-encoding of UTF-8 bytes: everything but the unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amount::format_amount;
    use alloy_primitives::{address, keccak256};

    const WATCHED: Address = address!("00000000000000000000000000000000000000a1");
    const OTHER: Address = address!("00000000000000000000000000000000000000b2");
    const USDC: Address = address!("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48");
    const NOT_LISTED: Address = address!("dac17f958d2ee523a2206206994597c13d831ec7");
    const BLOCK_HASH: B256 = B256::repeat_byte(0xbb);

    fn set(addrs: &[Address]) -> HashSet<Address> {
        addrs.iter().copied().collect()
    }

    fn topic(addr: Address) -> B256 {
        addr.into_word()
    }

    fn word(v: u64) -> Vec<u8> {
        U256::from(v).to_be_bytes::<32>().to_vec()
    }

    fn transfer_log(token: Address, to: Address, amount: u64, log_index: u64) -> Log {
        Log {
            address: token,
            topics: vec![TRANSFER_TOPIC, topic(OTHER), topic(to)],
            data: word(amount),
            tx_hash: B256::repeat_byte(0x11),
            log_index,
            block_number: 7,
            block_hash: BLOCK_HASH,
            removed: false,
        }
    }

    fn scan(logs: &[Log]) -> TokenScan {
        token_deposits(logs, &set(&[USDC]), &set(&[WATCHED]))
    }

    #[test]
    fn transfer_topic_is_the_event_hash() {
        assert_eq!(
            TRANSFER_TOPIC,
            keccak256("Transfer(address,address,uint256)")
        );
    }

    #[test]
    fn native_matches_watched_nonzero_transfers() {
        let txs = [
            BlockTx {
                hash: B256::repeat_byte(1),
                to: Some(WATCHED),
                value: U256::from(5u8),
            },
            BlockTx {
                hash: B256::repeat_byte(2),
                to: Some(OTHER),
                value: U256::from(5u8),
            },
            BlockTx {
                hash: B256::repeat_byte(3),
                to: Some(WATCHED),
                value: U256::ZERO,
            },
            BlockTx {
                hash: B256::repeat_byte(4),
                to: None,
                value: U256::from(9u8),
            },
        ];
        let found = native_deposits(42, BLOCK_HASH, &txs, &set(&[WATCHED]));
        assert_eq!(
            found,
            vec![Deposit {
                tx_hash: B256::repeat_byte(1),
                log_index: None,
                to: WATCHED,
                token: None,
                amount: U256::from(5u8),
                block_number: 42,
                block_hash: BLOCK_HASH,
            }]
        );
    }

    #[test]
    fn erc20_transfer_to_watched_address_matches() {
        let s = scan(&[transfer_log(USDC, WATCHED, 1_000_000, 3)]);
        assert_eq!(s.skipped, 0);
        assert_eq!(
            s.deposits,
            vec![Deposit {
                tx_hash: B256::repeat_byte(0x11),
                log_index: Some(3),
                to: WATCHED,
                token: Some(USDC),
                amount: U256::from(1_000_000u64),
                block_number: 7,
                block_hash: BLOCK_HASH,
            }]
        );
    }

    #[test]
    fn unwatched_address_and_other_token_are_ignored() {
        let s = scan(&[
            transfer_log(USDC, OTHER, 5, 0),
            transfer_log(NOT_LISTED, WATCHED, 5, 1),
        ]);
        assert_eq!(s, TokenScan::default());
    }

    #[test]
    fn other_events_are_ignored_not_counted() {
        let mut approval = transfer_log(USDC, WATCHED, 5, 0);
        approval.topics[0] = keccak256("Approval(address,address,uint256)");
        let mut anonymous = transfer_log(USDC, WATCHED, 5, 1);
        anonymous.topics.clear();
        assert_eq!(scan(&[approval, anonymous]), TokenScan::default());
    }

    #[test]
    fn wrong_topic_count_is_skipped_and_counted() {
        let mut erc721 = transfer_log(USDC, WATCHED, 5, 0);
        erc721.topics.push(B256::with_last_byte(1));
        erc721.data.clear();
        let mut unindexed = transfer_log(USDC, WATCHED, 5, 1);
        unindexed.topics.truncate(1);
        let good = transfer_log(USDC, WATCHED, 5, 2);
        let s = scan(&[erc721.clone(), unindexed, good]);
        assert_eq!(s.skipped, 2);
        assert_eq!(s.deposits.len(), 1, "one odd log does not fail the block");
        assert_eq!(
            decode_transfer(&erc721),
            Err(TransferLogError::TopicCount { found: 4 })
        );
    }

    #[test]
    fn wrong_data_length_is_skipped_and_counted() {
        let mut short = transfer_log(USDC, WATCHED, 5, 0);
        short.data.pop();
        let mut long = transfer_log(USDC, WATCHED, 5, 1);
        long.data.extend(word(1));
        assert_eq!(scan(&[short.clone(), long]).skipped, 2);
        assert!(decode_transfer(&short)
            .unwrap_err()
            .to_string()
            .contains("31 bytes of data"));
    }

    #[test]
    fn dirty_topic_upper_bytes_are_skipped_and_counted() {
        let mut dirty = transfer_log(USDC, WATCHED, 5, 0);
        let mut t = topic(WATCHED);
        t[0] = 0x01;
        dirty.topics[2] = t;
        let s = scan(&[dirty.clone()]);
        assert_eq!((s.deposits.len(), s.skipped), (0, 1));
        assert_eq!(
            decode_transfer(&dirty),
            Err(TransferLogError::DirtyAddress { topic: t })
        );
    }

    #[test]
    fn removed_log_and_zero_amount_are_ignored() {
        let mut removed = transfer_log(USDC, WATCHED, 5, 0);
        removed.removed = true;
        let zero = transfer_log(USDC, WATCHED, 0, 1);
        assert_eq!(scan(&[removed, zero]), TokenScan::default());
    }

    #[test]
    fn full_width_amount_decodes() {
        let mut log = transfer_log(USDC, WATCHED, 0, 0);
        log.data = vec![0xff; 32];
        assert_eq!(scan(&[log]).deposits[0].amount, U256::MAX);
    }

    fn h(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    fn known() -> Vec<(u64, B256)> {
        vec![(10, h(10)), (11, h(11)), (12, h(12)), (13, h(13))]
    }

    #[test]
    fn fork_point_without_reorg_is_the_tip() {
        let canonical: Vec<_> = known().into_iter().map(|(n, x)| (n, Some(x))).collect();
        assert_eq!(fork_point(&known(), &canonical), Some(13));
        assert!(!is_reorged(&known(), &canonical));
    }

    #[test]
    fn fork_point_of_a_reorg_at_the_tip() {
        let canonical = [
            (10, Some(h(10))),
            (11, Some(h(11))),
            (12, Some(h(12))),
            (13, Some(h(0xee))),
        ];
        assert_eq!(fork_point(&known(), &canonical), Some(12));
        assert!(is_reorged(&known(), &canonical));
    }

    #[test]
    fn fork_point_of_a_reorg_deeper_than_kept_is_none() {
        let canonical = [
            (10, Some(h(0xe0))),
            (11, Some(h(0xe1))),
            (12, Some(h(0xe2))),
            (13, Some(h(0xe3))),
        ];
        assert_eq!(fork_point(&known(), &canonical), None);
        assert!(is_reorged(&known(), &canonical));
        assert_eq!(fork_point(&[], &canonical), None);
    }

    #[test]
    fn fork_point_when_the_chain_is_shorter() {
        let canonical = [(10, Some(h(10))), (11, Some(h(11))), (12, None), (13, None)];
        assert_eq!(fork_point(&known(), &canonical), Some(11));
        // A number left out of the answer cannot be trusted either.
        let partial = [(10, Some(h(10))), (11, Some(h(11))), (13, Some(h(13)))];
        assert_eq!(fork_point(&known(), &partial), Some(11));
    }

    #[test]
    fn fork_point_reads_inconsistent_answers_as_the_deeper_reorg() {
        let canonical = [
            (10, Some(h(10))),
            (11, Some(h(0xee))),
            (12, Some(h(12))),
            (13, Some(h(13))),
        ];
        assert_eq!(fork_point(&known(), &canonical), Some(10));
    }

    /// EIP-55 written out with the `sha3` crate, to check alloy's
    /// checksum independently: a hex digit is upper-cased when the matching
    /// nibble of keccak256(lowercase hex) is 8 or more.
    fn eip55_by_hand(addr: Address) -> String {
        use sha3::{Digest, Keccak256};
        let lower = hex::encode(addr);
        let hash = Keccak256::digest(lower.as_bytes());
        let body: String = lower
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
                if nibble >= 8 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        format!("0x{body}")
    }

    #[test]
    fn eip681_native_matches_the_eip_example_form() {
        // EIP-681's example address; its EIP-55 form is one of EIP-55's
        // own test vectors.
        let to = address!("fb6916095ca1df60bb79ce92ce3ea74c37c5d359");
        assert_eq!(
            to.to_checksum(None),
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
        );
        assert_eq!(to.to_checksum(None), eip55_by_hand(to));
        let wei = U256::from(2_014_000_000_000_000_000u64);
        assert_eq!(
            eip681_native(to, 1, wei),
            "ethereum:0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359@1?value=2014000000000000000"
        );
    }

    #[test]
    fn eip681_token_matches_the_eip_example_form() {
        // EIP-681's ERC-20 example: token 0x8920..43e7, recipient 0x8e23..d052.
        let token = address!("89205a3a3b2a69de6dbf7f01ed13b2108b2c43e7");
        let to = address!("8e23ee67d1332ad560396262c48ffbb01f93d052");
        assert_eq!(token.to_checksum(None), eip55_by_hand(token));
        assert_eq!(to.to_checksum(None), eip55_by_hand(to));
        assert_eq!(
            eip681_token(token, 1, to, U256::from(1u8)),
            format!(
                "ethereum:{}@1/transfer?address={}&uint256=1",
                token.to_checksum(None),
                to.to_checksum(None)
            )
        );
        assert_eq!(
            eip681_token(token, 8453, to, U256::from(1_500_000u64)),
            "ethereum:0x89205A3A3b2A69De6Dbf7f01ED13B2108B2c43e7@8453/transfer?\
             address=0x8e23Ee67d1332aD560396262C48ffbB01F93D052&uint256=1500000"
        );
    }

    #[test]
    fn solana_pay_uris() {
        let recipient = "mvines9iiHiQTysrwkJjGf2gb9Ex9jXJX8ns3qwf2kN";
        let usdc = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
        assert_eq!(
            solana_pay(
                recipient,
                &format_amount(U256::from(1_000_000_000u64), 9),
                None,
                None
            ),
            format!("solana:{recipient}?amount=1")
        );
        assert_eq!(
            solana_pay(
                recipient,
                &format_amount(U256::from(10_000u64), 6),
                Some(usdc),
                Some("Michael's Café & Bar")
            ),
            format!(
                "solana:{recipient}?amount=0.01&spl-token={usdc}\
                 &label=Michael%27s%20Caf%C3%A9%20%26%20Bar"
            )
        );
        // A hostile recipient cannot smuggle in parameters.
        assert_eq!(
            solana_pay("a?amount=999&x", "1", None, None),
            "solana:a%3Famount%3D999%26x?amount=1"
        );
    }
}
