//! Chain transactions for Keyfold's payments: pure builders and decoders
//! (EVM through alloy, Solana through the solana-* crates), addresses,
//! amounts and the chain registry. No I/O: RPC lives in the coordinator.
#![forbid(unsafe_code)]

pub mod amount;
pub mod check;
pub mod deposits;
pub mod evm;
pub mod orders;
pub mod reconcile;
pub mod registry;
pub mod replace;
pub mod solana;
