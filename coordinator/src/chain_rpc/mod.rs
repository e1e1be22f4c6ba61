//! JSON-RPC clients for the chains Keyfold pays on.
//!
//! - [`evm`]: [`EvmRpc`], an EVM JSON-RPC client over HTTP(S) with URL
//!   fallback, bounded bodies and typed JSON-RPC error codes.
//! - [`scan`]: blocks with their transactions and token `Transfer` logs,
//!   for the chain watcher of payment orders.
//! - [`anvil`]: a local anvil dev node as a child process, and the
//!   anvil-only methods (mining, snapshots, reorgs) on [`EvmRpc`].

pub mod anvil;
pub mod devchain;
pub mod error;
pub mod evm;
pub mod scan;

pub use anvil::{find_anvil, Anvil, AnvilError};
pub use error::{redact_url, RpcError};
pub use evm::{EvmRpc, FeeEstimate, ReceiptSeen, TxSeen, MAX_RESPONSE_BYTES};
