//! Reconciliation, pure: what Keyfold recorded against what the chain
//! shows, item by item, each with a status and the reason a person needs.
//!
//! - [`compare_transfers`]: the token deposits recorded for an address
//!   against the `Transfer` logs to it on chain (by transaction and log
//!   index);
//! - [`compare_balance`]: the native deposits recorded for an address that
//!   never pays out (an order's) against its balance;
//! - [`unmatched_nonces`]: the transactions an address sent on chain (its
//!   nonce) that no payout accounts for.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{B256, U256};

/// One transfer: the transaction, its log index (token transfers) and
/// the amount in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Transfer {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index (`None` for a native transfer).
    pub log_index: Option<u64>,
    /// Amount.
    pub amount: U256,
}

/// How one item compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Recorded and on chain, equal.
    Matched,
    /// Recorded, but not on chain (a reorg Keyfold has not seen yet, or a
    /// wrong record).
    MissingOnChain,
    /// On chain, but not recorded (the watcher has not reached it yet, or
    /// missed it).
    NotRecorded,
    /// Both, with different amounts.
    AmountMismatch,
    /// Funds left a Keyfold address with no payout for them: an alert.
    UnmatchedOutflow,
    /// Recorded and on chain, but not the same (another block, another
    /// outcome).
    Differs,
    /// Not settled on chain yet (a payout in flight): nothing to compare.
    Pending,
}

impl Status {
    /// The report's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::MissingOnChain => "missing_on_chain",
            Status::NotRecorded => "not_recorded",
            Status::AmountMismatch => "amount_mismatch",
            Status::UnmatchedOutflow => "unmatched_outflow",
            Status::Differs => "differs",
            Status::Pending => "pending",
        }
    }

    /// Whether it needs a look.
    pub fn is_difference(self) -> bool {
        !matches!(self, Status::Matched | Status::Pending)
    }
}

/// One compared transfer: what was recorded, what the chain shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index.
    pub log_index: Option<u64>,
    /// Recorded amount.
    pub recorded: Option<U256>,
    /// Amount on chain.
    pub on_chain: Option<U256>,
    /// The verdict.
    pub status: Status,
}

/// Recorded transfers against on-chain ones, matched by (transaction, log
/// index); sorted by transaction hash and log index.
pub fn compare_transfers(recorded: &[Transfer], on_chain: &[Transfer]) -> Vec<Compared> {
    let key = |t: &Transfer| (t.tx_hash, t.log_index);
    // (recorded, on chain) per (transaction, log index).
    type Sides = (Option<U256>, Option<U256>);
    let mut all: BTreeMap<(B256, Option<u64>), Sides> = BTreeMap::new();
    for t in recorded {
        let e = all.entry(key(t)).or_default();
        e.0 = Some(e.0.unwrap_or_default().saturating_add(t.amount));
    }
    for t in on_chain {
        let e = all.entry(key(t)).or_default();
        e.1 = Some(e.1.unwrap_or_default().saturating_add(t.amount));
    }
    all.into_iter()
        .map(|((tx_hash, log_index), (recorded, on_chain))| Compared {
            tx_hash,
            log_index,
            recorded,
            on_chain,
            status: match (recorded, on_chain) {
                (Some(r), Some(c)) if r == c => Status::Matched,
                (Some(_), Some(_)) => Status::AmountMismatch,
                (Some(_), None) => Status::MissingOnChain,
                _ => Status::NotRecorded,
            },
        })
        .collect()
}

/// The native deposits recorded to an address that only receives, against
/// its balance: equal is matched; a higher balance holds funds not recorded
/// (yet); a lower one means recorded funds are not there.
pub fn compare_balance(recorded_total: U256, balance: U256) -> Status {
    match balance.cmp(&recorded_total) {
        std::cmp::Ordering::Equal => Status::Matched,
        std::cmp::Ordering::Greater => Status::NotRecorded,
        std::cmp::Ordering::Less => Status::MissingOnChain,
    }
}

/// The nonces an address used on chain (`0..chain_nonce`) that no payout
/// (or replacement: they share the payout's nonce) holds.
pub fn unmatched_nonces(chain_nonce: u64, payout_nonces: &BTreeSet<u64>) -> Vec<u64> {
    (0..chain_nonce)
        .filter(|n| !payout_nonces.contains(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u8, i: Option<u64>, a: u64) -> Transfer {
        Transfer {
            tx_hash: B256::repeat_byte(h),
            log_index: i,
            amount: U256::from(a),
        }
    }

    #[test]
    fn transfers_match_by_transaction_and_log_index() {
        let rec = [t(1, Some(0), 5), t(2, Some(3), 7), t(3, Some(0), 9)];
        let chain = [t(1, Some(0), 5), t(2, Some(3), 8), t(4, Some(1), 1)];
        let out = compare_transfers(&rec, &chain);
        let st: Vec<Status> = out.iter().map(|c| c.status).collect();
        assert_eq!(
            st,
            vec![
                Status::Matched,
                Status::AmountMismatch,
                Status::MissingOnChain,
                Status::NotRecorded
            ]
        );
        assert_eq!(out[1].recorded, Some(U256::from(7)));
        assert_eq!(out[1].on_chain, Some(U256::from(8)));
        // The same transaction with another log index is another transfer.
        let out = compare_transfers(&[t(1, Some(0), 5)], &[t(1, Some(1), 5)]);
        assert_eq!(out.len(), 2);
        assert!(compare_transfers(&[], &[]).is_empty());
    }

    #[test]
    fn balances_and_nonces() {
        assert_eq!(
            compare_balance(U256::from(5), U256::from(5)),
            Status::Matched
        );
        assert_eq!(
            compare_balance(U256::from(5), U256::from(6)),
            Status::NotRecorded
        );
        assert_eq!(
            compare_balance(U256::from(5), U256::from(4)),
            Status::MissingOnChain
        );
        let held: BTreeSet<u64> = [0, 1, 3].into_iter().collect();
        assert_eq!(unmatched_nonces(5, &held), vec![2, 4]);
        assert!(unmatched_nonces(0, &held).is_empty());
        assert!(unmatched_nonces(2, &held).is_empty());
        assert!(Status::UnmatchedOutflow.is_difference());
        assert!(!Status::Matched.is_difference());
    }
}
