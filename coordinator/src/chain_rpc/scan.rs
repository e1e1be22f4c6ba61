//! What the chain watcher reads from an EVM node: a block with its
//! transactions, and the `Transfer` logs of a set of token contracts over a
//! block range. Decoded into `keyfold_chain::deposits` types, which match
//! them against order addresses without I/O.

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use keyfold_chain::deposits::{BlockTx, Log, TRANSFER_TOPIC};
use serde::Deserialize;
use serde_json::json;

use super::evm::EvmRpc;
use super::RpcError;

/// A block as the watcher needs it.
#[derive(Debug, Clone)]
pub struct ScannedBlock {
    /// Its number.
    pub number: u64,
    /// Its hash.
    pub hash: B256,
    /// Its timestamp (Unix seconds).
    pub timestamp: u64,
    /// Its transactions (native transfers are among them).
    pub txs: Vec<BlockTx>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcFullBlock {
    number: U64,
    hash: B256,
    timestamp: U64,
    #[serde(default)]
    transactions: Vec<RpcBlockTx>,
}

#[derive(Deserialize)]
struct RpcBlockTx {
    hash: B256,
    #[serde(default)]
    to: Option<Address>,
    value: U256,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcLog {
    address: Address,
    topics: Vec<B256>,
    data: Bytes,
    transaction_hash: B256,
    log_index: U64,
    block_number: U64,
    block_hash: B256,
    #[serde(default)]
    removed: bool,
}

fn quantity(n: u64) -> String {
    format!("0x{n:x}")
}

impl EvmRpc {
    /// Block `number` with its transactions; `None` if the node has none.
    pub async fn block_with_txs(&self, number: u64) -> Result<Option<ScannedBlock>, RpcError> {
        let block: Option<RpcFullBlock> = self
            .raw_request("eth_getBlockByNumber", json!([quantity(number), true]))
            .await?;
        Ok(block.map(|b| ScannedBlock {
            number: b.number.to(),
            hash: b.hash,
            timestamp: b.timestamp.to(),
            txs: b
                .transactions
                .into_iter()
                .map(|t| BlockTx {
                    hash: t.hash,
                    to: t.to,
                    value: t.value,
                })
                .collect(),
        }))
    }

    /// The `Transfer` logs of `tokens` in blocks `from..=to`.
    pub async fn transfer_logs(
        &self,
        tokens: &[Address],
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, RpcError> {
        self.transfer_logs_between(tokens, (None, None), from, to)
            .await
    }

    /// The `Transfer` logs of `tokens` in blocks `from..=to`, only those
    /// from `parties.0` and/or to `parties.1` when given.
    pub async fn transfer_logs_between(
        &self,
        tokens: &[Address],
        parties: (Option<Address>, Option<Address>),
        from: u64,
        to: u64,
    ) -> Result<Vec<Log>, RpcError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let topic = |a: Option<Address>| a.map(|a| B256::left_padding_from(a.as_slice()));
        let logs: Vec<RpcLog> = self
            .raw_request(
                "eth_getLogs",
                json!([{
                    "fromBlock": quantity(from),
                    "toBlock": quantity(to),
                    "address": tokens,
                    "topics": [TRANSFER_TOPIC, topic(parties.0), topic(parties.1)],
                }]),
            )
            .await?;
        Ok(logs
            .into_iter()
            .map(|l| Log {
                address: l.address,
                topics: l.topics,
                data: l.data.to_vec(),
                tx_hash: l.transaction_hash,
                log_index: l.log_index.to(),
                block_number: l.block_number.to(),
                block_hash: l.block_hash,
                removed: l.removed,
            })
            .collect())
    }
}
