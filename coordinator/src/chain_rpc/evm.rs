//! A minimal EVM JSON-RPC client over HTTP(S): what the coordinator needs to
//! pay on an EVM chain (nonces, fees, broadcast, inclusion tracking).
//!
//! Responses are decoded into small serde structs of this module over
//! `alloy-primitives` types rather than `alloy-rpc-types-eth`: the
//! coordinator reads a handful of fields, and decoding only those keeps
//! providers whose blocks or transactions carry chain-specific extras (or
//! miss fields a full type requires) working, with a smaller build.
//!
//! Every body read is bounded ([`MAX_RESPONSE_BYTES`]), every request has the
//! timeout given to [`EvmRpc::new`], and URLs are tried in order on transport
//! errors only. Logs and errors name an endpoint by scheme, host and port
//! only ([`redact_url`]): provider URLs often carry API keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U128, U256, U64};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::error::{redact_url, RpcError};

/// The largest response body read, in bytes; larger ones are refused with
/// [`RpcError::TooLarge`].
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Fees of the next transaction, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeEstimate {
    /// The latest block's `baseFeePerGas` (0 on a chain without EIP-1559).
    pub base_fee_per_gas: u128,
    /// `eth_maxPriorityFeePerGas`, or, where the node lacks that method,
    /// `eth_gasPrice` less the base fee.
    pub max_priority_fee_per_gas: u128,
}

/// A transaction as the node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxSeen {
    /// The block that includes it; `None` while pending.
    pub block_number: Option<u64>,
    pub nonce: u64,
    pub from: Address,
}

/// The receipt of a mined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptSeen {
    pub block_number: u64,
    pub block_hash: B256,
    /// `status == 1`: the transaction did not revert.
    pub success: bool,
    pub gas_used: u64,
    pub effective_gas_price: u128,
}

#[derive(Debug)]
struct Endpoint {
    url: reqwest::Url,
    /// `scheme://host[:port]`: the only form that is logged.
    redacted: String,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    next_id: AtomicU64,
}

/// A JSON-RPC client for one EVM chain over one or more equivalent URLs.
///
/// Cheap to clone (the clones share the connection pool and the id
/// counter). Its connection pool belongs to the tokio runtime it is first
/// used on: build one per runtime.
#[derive(Debug, Clone)]
pub struct EvmRpc {
    inner: Arc<Inner>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcBlock {
    hash: Option<B256>,
    #[serde(default)]
    base_fee_per_gas: Option<U128>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcTx {
    #[serde(default)]
    block_number: Option<U64>,
    nonce: U64,
    from: Address,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RpcReceipt {
    #[serde(default)]
    block_number: Option<U64>,
    #[serde(default)]
    block_hash: Option<B256>,
    #[serde(default)]
    status: Option<U64>,
    gas_used: U64,
    #[serde(default)]
    effective_gas_price: Option<U128>,
}

/// `0x`-prefixed hex quantity of `n`, as JSON-RPC wants numbers.
pub(crate) fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// The reason of a reqwest error, without the URL reqwest puts in it.
fn transport_reason(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if timeout && !reason.contains("timed out") {
        reason.push_str(" (timed out)");
    }
    reason
}

impl EvmRpc {
    /// A client trying `urls` in order (on transport errors only), each
    /// request bounded by `timeout` (connecting, sending and reading the
    /// whole body).
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self, RpcError> {
        if urls.is_empty() {
            return Err(RpcError::Config {
                reason: "no RPC URL given".into(),
            });
        }
        let mut endpoints = Vec::with_capacity(urls.len());
        for (i, u) in urls.iter().enumerate() {
            // The parse error never repeats the URL; say which entry it was.
            let url = reqwest::Url::parse(u).map_err(|e| RpcError::Config {
                reason: format!("RPC URL #{i} does not parse: {e}"),
            })?;
            if url.scheme() != "http" && url.scheme() != "https" {
                return Err(RpcError::Config {
                    reason: format!("RPC URL #{i} is not http(s): {}", url.scheme()),
                });
            }
            let redacted = redact_url(&url);
            endpoints.push(Endpoint { url, redacted });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // An RPC endpoint that redirects is misconfigured; following
            // would also carry the request body elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RpcError::Config {
                reason: format!("HTTP client: {}", transport_reason(e)),
            })?;
        Ok(EvmRpc {
            inner: Arc::new(Inner {
                client,
                endpoints,
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The endpoints, redacted to `scheme://host[:port]`, in the order tried.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner
            .endpoints
            .iter()
            .map(|e| e.redacted.clone())
            .collect()
    }

    /// Calls `method` with `params` (a JSON array) and decodes its result.
    /// Public for the methods this type has no wrapper for (anvil's).
    pub async fn raw_request<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, RpcError> {
        Ok(self.request_from(method, params).await?.0)
    }

    /// [`EvmRpc::raw_request`], also naming the (redacted) endpoint that
    /// answered, for errors found in the result.
    async fn request_from<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<(T, String), RpcError> {
        let endpoints = &self.inner.endpoints;
        let mut last = RpcError::Config {
            reason: "no RPC URL given".into(),
        };
        for ep in endpoints {
            match self.request_one(ep, method, &params).await {
                Ok(result) => {
                    return match serde_json::from_value(result) {
                        Ok(v) => Ok((v, ep.redacted.clone())),
                        Err(e) => Err(RpcError::BadResponse {
                            url: ep.redacted.clone(),
                            method: method.to_string(),
                            reason: format!("unexpected result: {e}"),
                        }),
                    };
                }
                Err(e @ RpcError::Transport { .. }) => {
                    // With one URL the caller gets the error and decides
                    // what to say; a fallback to the next URL is worth a warning.
                    if endpoints.len() > 1 {
                        tracing::warn!(endpoint = %ep.redacted, method, error = %e, "RPC endpoint failed");
                    } else {
                        tracing::debug!(endpoint = %ep.redacted, method, error = %e, "RPC endpoint failed");
                    }
                    last = e;
                }
                Err(e) => return Err(e),
            }
        }
        // `new` refuses an empty list, so `last` is an endpoint's error.
        Err(last)
    }

    /// One JSON-RPC call to one endpoint: its `result` value.
    async fn request_one(
        &self,
        ep: &Endpoint,
        method: &str,
        params: &Value,
    ) -> Result<Value, RpcError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        tracing::debug!(endpoint = %ep.redacted, method, id, "RPC request");
        let transport = |reason: String| RpcError::Transport {
            url: ep.redacted.clone(),
            reason,
        };
        let bad = |reason: String| RpcError::BadResponse {
            url: ep.redacted.clone(),
            method: method.to_string(),
            reason,
        };
        let mut resp = self
            .inner
            .client
            .post(ep.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(transport_reason(e)))?;
        let status = resp.status();
        let too_large = || RpcError::TooLarge {
            url: ep.redacted.clone(),
            limit: MAX_RESPONSE_BYTES,
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport(transport_reason(e)))?
        {
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        let parsed: Option<Value> = serde_json::from_slice(&buf).ok();
        let rpc_error = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .filter(|e| !e.is_null());
        if let Some(err) = rpc_error {
            let code = err.get("code").and_then(Value::as_i64).ok_or_else(|| {
                bad(format!(
                    "JSON-RPC error without an integer code (HTTP {status})"
                ))
            })?;
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Err(RpcError::Rpc {
                url: ep.redacted.clone(),
                method: method.to_string(),
                code,
                message,
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(transport(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(bad(format!("HTTP {status}")));
        }
        let Some(mut v) = parsed else {
            return Err(bad("body is not JSON".into()));
        };
        if v.get("id") != Some(&json!(id)) {
            return Err(bad(format!("response id is not {id}")));
        }
        match v.get_mut("result") {
            Some(r) => Ok(r.take()),
            None => Err(bad("neither result nor error".into())),
        }
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let n: U64 = self.raw_request("eth_chainId", json!([])).await?;
        Ok(n.to())
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let n: U64 = self.raw_request("eth_blockNumber", json!([])).await?;
        Ok(n.to())
    }

    /// The hash of block `number`; `None` when the node has no such block.
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, RpcError> {
        let block: Option<RpcBlock> = self
            .raw_request("eth_getBlockByNumber", json!([quantity(number), false]))
            .await?;
        Ok(block.and_then(|b| b.hash))
    }

    /// `eth_getTransactionCount` at `"pending"` (counting the node's pending
    /// transactions of `address`) or `"latest"`.
    pub async fn nonce(&self, address: Address, pending: bool) -> Result<u64, RpcError> {
        let tag = if pending { "pending" } else { "latest" };
        let n: U64 = self
            .raw_request("eth_getTransactionCount", json!([address, tag]))
            .await?;
        Ok(n.to())
    }

    /// `eth_getBalance` at `"latest"`, in wei.
    pub async fn balance(&self, address: Address) -> Result<U256, RpcError> {
        self.raw_request("eth_getBalance", json!([address, "latest"]))
            .await
    }

    /// `eth_call` of `to` with `data` at `"latest"`: the returned bytes.
    pub async fn call(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let out: Bytes = self
            .raw_request(
                "eth_call",
                json!([{"to": to, "data": Bytes::from(data)}, "latest"]),
            )
            .await?;
        Ok(out.to_vec())
    }

    /// The latest block's base fee and a priority fee (see [`FeeEstimate`]).
    /// The priority fee falls back to `eth_gasPrice` only when the node
    /// answers `eth_maxPriorityFeePerGas` with a JSON-RPC error.
    pub async fn fee_estimate(&self) -> Result<FeeEstimate, RpcError> {
        // Both asked at once: one round trip, not two.
        let (block, priority) = tokio::join!(
            self.request_from::<Option<RpcBlock>>("eth_getBlockByNumber", json!(["latest", false])),
            self.raw_request::<U128>("eth_maxPriorityFeePerGas", json!([]))
        );
        let (block, url) = block?;
        let block = block.ok_or_else(|| RpcError::BadResponse {
            url,
            method: "eth_getBlockByNumber".into(),
            reason: "no latest block".into(),
        })?;
        let base_fee_per_gas: u128 = block.base_fee_per_gas.map(|b| b.to()).unwrap_or(0);
        let priority = match priority {
            Ok(p) => p.to(),
            Err(RpcError::Rpc { code, .. }) => {
                tracing::debug!(code, "eth_maxPriorityFeePerGas refused, using eth_gasPrice");
                let price: U128 = self.raw_request("eth_gasPrice", json!([])).await?;
                price.to::<u128>().saturating_sub(base_fee_per_gas)
            }
            Err(e) => return Err(e),
        };
        Ok(FeeEstimate {
            base_fee_per_gas,
            max_priority_fee_per_gas: priority,
        })
    }

    /// `eth_sendRawTransaction` of a signed, EIP-2718-encoded transaction:
    /// its hash. A node that already knows the transaction may answer with
    /// an error (see the tests for anvil's code): check
    /// [`EvmRpc::transaction_by_hash`] before treating any error as a loss.
    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.raw_request(
            "eth_sendRawTransaction",
            json!([Bytes::copy_from_slice(raw)]),
        )
        .await
    }

    /// `eth_getTransactionByHash`; `None` when the node does not know it.
    pub async fn transaction_by_hash(&self, hash: B256) -> Result<Option<TxSeen>, RpcError> {
        let tx: Option<RpcTx> = self
            .raw_request("eth_getTransactionByHash", json!([hash]))
            .await?;
        Ok(tx.map(|t| TxSeen {
            block_number: t.block_number.map(|n| n.to()),
            nonce: t.nonce.to(),
            from: t.from,
        }))
    }

    /// `eth_getTransactionReceipt`; `None` while the transaction is not
    /// mined (or unknown).
    pub async fn transaction_receipt(&self, hash: B256) -> Result<Option<ReceiptSeen>, RpcError> {
        const METHOD: &str = "eth_getTransactionReceipt";
        let (r, url): (Option<RpcReceipt>, _) = self.request_from(METHOD, json!([hash])).await?;
        let Some(r) = r else { return Ok(None) };
        // Some nodes return a pending receipt without a block: not mined.
        let (Some(block_number), Some(block_hash)) = (r.block_number, r.block_hash) else {
            return Ok(None);
        };
        let bad = |reason: &str| RpcError::BadResponse {
            url: url.clone(),
            method: METHOD.into(),
            reason: reason.into(),
        };
        let status = r.status.ok_or_else(|| bad("receipt without status"))?;
        let price = r
            .effective_gas_price
            .ok_or_else(|| bad("receipt without effectiveGasPrice"))?;
        Ok(Some(ReceiptSeen {
            block_number: block_number.to(),
            block_hash,
            success: status == U64::from(1),
            gas_used: r.gas_used.to(),
            effective_gas_price: price.to(),
        }))
    }

    /// Polls [`EvmRpc::transaction_receipt`] every 100 ms until a receipt
    /// shows up (`Some`) or `timeout` passes (`None`).
    pub async fn wait_receipt(
        &self,
        hash: B256,
        timeout: Duration,
    ) -> Result<Option<ReceiptSeen>, RpcError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.transaction_receipt(hash).await? {
                return Ok(Some(r));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_keys_from_urls() {
        let u = reqwest::Url::parse("https://user:pw@eth.example.com/v3/SECRETKEY?key=K").unwrap();
        assert_eq!(redact_url(&u), "https://eth.example.com");
        let u = reqwest::Url::parse("http://127.0.0.1:8545/abc").unwrap();
        assert_eq!(redact_url(&u), "http://127.0.0.1:8545");
    }

    #[test]
    fn rejects_bad_config_without_echoing_the_url() {
        let e = EvmRpc::new(vec![], Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, RpcError::Config { .. }));
        let e = EvmRpc::new(vec!["not a url SECRET".into()], Duration::from_secs(1)).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = EvmRpc::new(vec!["ftp://h/SECRET".into()], Duration::from_secs(1)).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn quantities_are_hex() {
        assert_eq!(quantity(0), "0x0");
        assert_eq!(quantity(255), "0xff");
    }
}
