//! Keyfold signer node.
//!
//! A long-running process that holds key shares sealed at rest, keeps a pool of
//! safe primes and ECDSA presignatures, and answers the coordinator's commands
//! (see `keyfold_proto::signer`) by running MPC sessions with the other signers
//! over QUIC. Every presignature is marked used in the store, durably, before
//! the partial signature made from it leaves the node.
#![forbid(unsafe_code)]

pub mod config;
mod handler;
mod node;
pub mod policy;
mod primes;

use std::path::PathBuf;

pub use config::SignerConfig;
pub use node::{open_sealer, run, SignerNode};
pub use primes::import_primes;

use keyfold_proto::signer::{ErrorCode, WireError};

/// What can stop a signer node or fail a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The configuration file is unusable.
    #[error("configuration {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// TLS identity or QUIC endpoint failure.
    #[error("network: {0}")]
    Net(#[from] keyfold_net::NetError),
    /// Store or sealing failure.
    #[error("store: {0}")]
    Store(#[from] keyfold_store::StoreError),
    /// Sealing set-up failure.
    #[error("sealing: {0}")]
    Seal(#[from] keyfold_store::SealError),
    /// A protocol failure.
    #[error("{0}")]
    Mpc(#[from] keyfold_mpc::MpcError),
    /// The command does not fit what this node holds.
    #[error("{0}")]
    Refused(String),
    /// This node's own policy check refused the request.
    #[error("policy refused: {0}")]
    PolicyRefused(String),
    /// Something this node needs is missing.
    #[error("{0}")]
    NotFound(String),
    /// A task panicked or was cancelled: a bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl SignerError {
    /// The wire form sent back to the coordinator.
    pub fn to_wire(&self) -> WireError {
        use keyfold_store::StoreError as S;
        let code = match self {
            SignerError::Refused(_) => ErrorCode::Refused,
            SignerError::PolicyRefused(_) => ErrorCode::PolicyRefused,
            SignerError::NotFound(_) => ErrorCode::NotFound,
            SignerError::Mpc(_) | SignerError::Net(_) => ErrorCode::ProtocolFailed,
            SignerError::Store(S::PresignatureUsed { .. }) => ErrorCode::PresignatureUsed,
            SignerError::Store(S::SessionReplayed { .. }) => ErrorCode::SessionReplayed,
            SignerError::Store(S::NotFound { .. }) => ErrorCode::NotFound,
            SignerError::Store(S::PresignatureMismatch { .. }) => ErrorCode::Refused,
            _ => ErrorCode::Internal,
        };
        WireError {
            code,
            message: self.to_string(),
        }
    }
}
