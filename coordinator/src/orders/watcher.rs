//! The chain watcher of payment orders: one loop per EVM chain with an RPC
//! URL, polling the node.
//!
//! Each tick:
//! 1. reads the head and the durable cursor (the last scanned block and the
//!    hashes of the blocks scanned before it);
//! 2. checks the newest kept hash against the chain; if it changed (a
//!    reorg), finds the fork point (`keyfold_chain::deposits::fork_point`):
//!    deposits above it are marked removed and scanning resumes after it;
//! 3. scans up to `max_blocks_per_poll` new blocks: native transfers to
//!    order addresses (with a successful receipt in the same block) and the
//!    registry tokens' `Transfer` logs to them;
//! 4. commits the deposits, the cursor, the block hashes, the orders' new
//!    states and their webhook events in one store transaction.
//!
//! A restart resumes from the cursor: nothing is missed or counted twice
//! (deposits are keyed by transaction and log index). Orders expire by the
//! coordinator's clock once the watcher has caught up with the head, and
//! otherwise by the time of the last block it scanned, so a watcher that
//! is behind never expires an order a scanned-later block paid on time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use futures::StreamExt;
use keyfold_chain::deposits::{fork_point, native_deposits, token_deposits};
use keyfold_chain::registry::{ChainEntry, ChainFamily};
use keyfold_store::{FoundDeposit, Scan, StoreError};
use tokio::sync::Notify;

use crate::chain_rpc::{EvmRpc, RpcError};
use crate::core::Coordinator;
use crate::service::{CoordinatorApi, ServiceError};

/// Kept hashes compared, newest first, when looking for a fork point
/// (every kept one: a reorg is found in one tick, however deep).
const FORK_SEARCH: usize = keyfold_store::coordinator_orders::KEPT_BLOCKS as usize;

/// Receipts of matching native transfers read at once.
const RECEIPTS_IN_FLIGHT: usize = 32;

/// Why a tick did not complete (it is retried at the next).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The node did not answer or answered badly.
    #[error("chain {chain}: {source}")]
    Rpc {
        /// Chain id.
        chain: String,
        /// What failed.
        source: RpcError,
    },
    /// The chain moved while the tick read it (a block's logs name another
    /// hash than the block read a moment before).
    #[error("chain {chain}: block {block} changed during the scan; scanning again")]
    Moved {
        /// Chain id.
        chain: String,
        /// The block.
        block: u64,
    },
    /// The store refused.
    #[error("chain {chain}: {source}")]
    Store {
        /// Chain id.
        chain: String,
        /// What failed.
        source: ServiceError,
    },
}

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickReport {
    /// The chain head.
    pub head: u64,
    /// Scanned up to.
    pub scanned: u64,
    /// New deposits recorded.
    pub deposits: usize,
    /// Orders whose state changed.
    pub changed: usize,
    /// A reorg was found above this block.
    pub reorg_above: Option<u64>,
}

fn parse_hash(h: &str) -> Option<B256> {
    h.parse().ok()
}

/// Runs the watcher of `chain` until `stop`.
pub async fn run(
    coordinator: Weak<Coordinator>,
    entry: ChainEntry,
    rpc: EvmRpc,
    stop: Arc<Notify>,
) {
    let Some(c) = coordinator.upgrade() else {
        return;
    };
    let poll = Duration::from_millis(c.cfg.orders.poll_ms.max(10));
    drop(c);
    tracing::info!(chain = %entry.id, "order watcher started");
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        match tick(&c, &entry, &rpc).await {
            Ok(r) => {
                if r.deposits > 0 || r.changed > 0 || r.reorg_above.is_some() {
                    tracing::info!(chain = %entry.id, head = r.head, scanned = r.scanned, deposits = r.deposits, orders_changed = r.changed, reorg_above = ?r.reorg_above, "order watcher tick");
                }
            }
            Err(e) => {
                tracing::warn!(alert = "order_watcher", error = %e, "order watcher tick failed")
            }
        }
        drop(c);
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One tick (see the module docs).
pub async fn tick(
    c: &Coordinator,
    entry: &ChainEntry,
    rpc: &EvmRpc,
) -> Result<TickReport, WatchError> {
    let chain = entry.id.clone();
    let rpc_err = |source| WatchError::Rpc {
        chain: chain.clone(),
        source,
    };
    let store_err = |source| WatchError::Store {
        chain: chain.clone(),
        source,
    };
    let head = rpc.block_number().await.map_err(rpc_err)?;
    let ch = chain.clone();
    let (cursor, kept) = c
        .read(move |s| s.chain_cursor(&ch))
        .await
        .map_err(store_err)?;
    // A new chain starts at its head: orders are younger than the watcher.
    let mut scanned = cursor.map_or(head.saturating_sub(1), |(_, s)| s);
    let mut reorg_above = None;
    let kept: Vec<(u64, B256)> = kept
        .iter()
        .filter_map(|(n, h)| parse_hash(h).map(|h| (*n, h)))
        .collect();
    if let Some((last, hash)) = kept.last().copied() {
        if rpc.block_hash(last).await.map_err(rpc_err)? != Some(hash) {
            let mut canonical = Vec::new();
            for (n, known) in kept.iter().rev().take(FORK_SEARCH) {
                let now = rpc.block_hash(*n).await.map_err(rpc_err)?;
                let same = now == Some(*known);
                canonical.push((*n, now));
                if same {
                    break;
                }
            }
            canonical.reverse();
            let fork = match fork_point(&kept, &canonical) {
                Some(f) => f,
                None => {
                    // Deeper than every kept hash: what lies below cannot be
                    // checked from here; the reconciliation report can.
                    let oldest = kept[kept.len().saturating_sub(FORK_SEARCH)..]
                        .first()
                        .map_or(0, |(n, _)| n.saturating_sub(1));
                    tracing::error!(alert = "deep_reorg", chain = %chain, oldest_kept = oldest + 1, "the chain no longer holds any block the watcher kept: deposits above the oldest are dropped; reconcile the orders below it");
                    oldest.min(head)
                }
            };
            tracing::warn!(chain = %chain, fork, was_scanned = scanned, "chain reorganised: deposits above the fork point are dropped and rescanned");
            reorg_above = Some(fork);
            scanned = fork;
        }
    } else if scanned > head {
        // Shorter than what was scanned, with no kept hash to find the fork
        // (a chain reset): everything above the head is gone.
        tracing::warn!(chain = %chain, head, was_scanned = scanned, "the chain is shorter than the scanned blocks: deposits above its head are dropped");
        reorg_above = Some(head);
        scanned = head;
    }
    let to = head.min(scanned.saturating_add(c.cfg.orders.max_blocks_per_poll.max(1)));
    let ch = chain.clone();
    let watched: HashSet<Address> = c
        .read(move |s| s.watched_addresses(&ch))
        .await
        .map_err(store_err)?
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let tokens: Vec<Address> = entry
        .tokens
        .iter()
        .filter_map(|t| entry.token_address(t).ok())
        .collect();
    let mut blocks: HashMap<u64, (B256, u64)> = HashMap::new();
    let mut deposits: Vec<FoundDeposit> = Vec::new();
    let mut last_time = 0;
    let mut end = scanned;
    for n in scanned.saturating_add(1)..=to {
        let Some(block) = rpc.block_with_txs(n).await.map_err(rpc_err)? else {
            break;
        };
        blocks.insert(n, (block.hash, block.timestamp));
        last_time = block.timestamp;
        end = n;
        if watched.is_empty() {
            continue;
        }
        // A reverted call moves no value: only a successful receipt in this
        // very block counts. Receipts are read RECEIPTS_IN_FLIGHT at a time.
        let matches = native_deposits(n, block.hash, &block.txs, &watched);
        let hashes: Vec<B256> = matches.iter().map(|d| d.tx_hash).collect();
        let receipts: Vec<_> = futures::stream::iter(hashes)
            .map(|h| {
                let rpc = rpc.clone();
                async move { rpc.transaction_receipt(h).await }
            })
            .buffered(RECEIPTS_IN_FLIGHT)
            .collect()
            .await;
        for (d, receipt) in matches.iter().zip(receipts) {
            if receipt
                .map_err(rpc_err)?
                .is_some_and(|r| r.success && r.block_hash == block.hash)
            {
                deposits.push(found(d, block.timestamp));
            }
        }
    }
    if !watched.is_empty() && end > scanned && !tokens.is_empty() {
        let logs = rpc
            .transfer_logs(&tokens, scanned + 1, end)
            .await
            .map_err(rpc_err)?;
        let token_set: HashSet<Address> = tokens.iter().copied().collect();
        let matched = token_deposits(&logs, &token_set, &watched);
        if matched.skipped > 0 {
            tracing::warn!(chain = %chain, skipped = matched.skipped, "token logs that are not standard Transfer events were skipped");
        }
        for d in matched.deposits {
            match blocks.get(&d.block_number) {
                Some((hash, time)) if *hash == d.block_hash => deposits.push(found(&d, *time)),
                _ => {
                    return Err(WatchError::Moved {
                        chain,
                        block: d.block_number,
                    })
                }
            }
        }
    }
    let now = c.now_unix();
    // Behind the head, time is the last scanned block's: an order is not
    // expired while blocks that may pay it are unread.
    let eval_now = if end >= head || last_time == 0 {
        now
    } else {
        now.min(i64::try_from(last_time).unwrap_or(i64::MAX))
    };
    let mut scanned_blocks: Vec<(u64, String)> = blocks
        .iter()
        .map(|(n, (h, _))| (*n, h.to_string()))
        .collect();
    scanned_blocks.sort_unstable();
    let scan = Scan {
        head,
        scanned: end,
        blocks: scanned_blocks,
        reorg_above,
        deposits,
    };
    let chain_id = entry.chain_id;
    let ch = chain.clone();
    let (changed, new) = c
        .read(move |s| {
            s.apply_scan(&ch, &scan, eval_now, |row, deps| {
                super::next_state(
                    row,
                    deps,
                    head,
                    eval_now,
                    chain_id,
                    crate::webhooks::new_event_id,
                )
                .map_err(|e| StoreError::InvalidInput {
                    field: "order",
                    reason: e.to_string(),
                })
            })
        })
        .await
        .map_err(store_err)?;
    Ok(TickReport {
        head,
        scanned: end,
        deposits: new,
        changed,
        reorg_above,
    })
}

fn found(d: &keyfold_chain::deposits::Deposit, time: u64) -> FoundDeposit {
    FoundDeposit {
        tx_hash: d.tx_hash.to_string(),
        log_index: d
            .log_index
            .map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX)),
        to: d.to.to_checksum(None),
        token: d.token.map(|t| t.to_checksum(None)),
        amount: d.amount.to_string(),
        block_number: d.block_number,
        block_hash: d.block_hash.to_string(),
        seen_at: i64::try_from(time).unwrap_or(i64::MAX),
    }
}

/// Starts a watcher for every EVM chain of the registry with an RPC URL;
/// each with the `Notify` that stops it.
pub fn spawn_all(
    coordinator: &Arc<Coordinator>,
) -> Vec<(Arc<Notify>, tokio::task::JoinHandle<()>)> {
    let Some(payments) = coordinator.payments.clone() else {
        return Vec::new();
    };
    payments
        .registry()
        .entries()
        .iter()
        .filter(|e| e.family == ChainFamily::Evm)
        .filter_map(|e| payments.rpc_of(&e.id).map(|rpc| (e.clone(), rpc.clone())))
        .map(|(entry, rpc)| {
            let stop = Arc::new(Notify::new());
            let task = tokio::spawn(run(Arc::downgrade(coordinator), entry, rpc, stop.clone()));
            (stop, task)
        })
        .collect()
}
