//! Keyfold signer node.
//!
//! A long-running process that holds key shares sealed at rest, keeps a pool of
//! safe primes and ECDSA presignatures, and answers the coordinator's commands
//! (see `keyfold_proto::signer`) by running MPC sessions with the other signers
//! over QUIC. Every presignature is marked used in the store, durably, before
//! the partial signature made from it leaves the node.
#![forbid(unsafe_code)]

mod background;
pub mod config;
mod freezes;
mod handler;
mod node;
pub mod policy;
mod primes;
mod transport;

use std::path::PathBuf;

pub use config::SignerConfig;
pub use node::{open_sealer, run, SignerNode};
pub use primes::import_primes;

use keyfold_proto::signer::{culprits_by_keygen_index, ErrorCode, WireCulprit, WireError};

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
    /// A session with other signers failed; `culprits` are the error's
    /// culprits mapped from session indices to keygen indices.
    #[error("{error}")]
    Session {
        /// The protocol engine's error (boxed: it is large).
        error: Box<keyfold_mpc::MpcError>,
        /// The parties it blames, by keygen index.
        culprits: Vec<WireCulprit>,
    },
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
    /// Attaches the culprits of a protocol failure in a session whose signer
    /// set is `signers` (session index `i` is keygen index `signers[i]`).
    /// Any other error is returned as it is.
    pub fn in_session(self, signers: &keyfold_mpc::SignerSet) -> Self {
        match self {
            SignerError::Mpc(error) => SignerError::Session {
                culprits: culprits_by_keygen_index(&error.culprits(), signers),
                error: Box::new(error),
            },
            other => other,
        }
    }

    /// The wire form sent back to the coordinator. Only a failed session
    /// ([`SignerError::Session`]) blames other parties; every other error is
    /// about this node or the command.
    pub fn to_wire(&self) -> WireError {
        use keyfold_store::StoreError as S;
        let code = match self {
            SignerError::Refused(_) => ErrorCode::Refused,
            SignerError::PolicyRefused(_) => ErrorCode::PolicyRefused,
            SignerError::NotFound(_) => ErrorCode::NotFound,
            SignerError::Mpc(_) | SignerError::Session { .. } => ErrorCode::ProtocolFailed,
            // This node could not set up its own side (its endpoint, its
            // session registry): about itself, not its peers.
            SignerError::Net(_) => ErrorCode::Internal,
            SignerError::Store(S::PresignatureUsed { .. }) => ErrorCode::PresignatureUsed,
            SignerError::Store(S::SessionReplayed { .. }) => ErrorCode::SessionReplayed,
            SignerError::Store(S::NotFound { .. }) => ErrorCode::NotFound,
            SignerError::Store(S::PresignatureMismatch { .. }) => ErrorCode::Refused,
            _ => ErrorCode::Internal,
        };
        let culprits = match self {
            SignerError::Session { culprits, .. } => culprits.clone(),
            _ => Vec::new(),
        };
        WireError {
            code,
            message: self.to_string(),
            culprits,
        }
    }
}

#[cfg(test)]
mod tests {
    use keyfold_mpc::{MpcError, SessionField, SignerSet, Threshold};
    use keyfold_proto::signer::WireBlameKind;

    use super::*;

    #[test]
    fn a_failed_session_blames_by_keygen_index_on_the_wire() {
        let t = Threshold::new(2, 3).unwrap();
        let signers = SignerSet::new(&[2, 0], t).unwrap();
        // Session position 1 of signers [0, 2] is keygen party 2.
        let err = SignerError::from(MpcError::SessionMismatch {
            party: 1,
            field: SessionField::RequestId,
            ours: "a".into(),
            theirs: "b (signer-1)".into(),
        })
        .in_session(&signers);
        let wire = err.to_wire();
        assert_eq!(wire.code, ErrorCode::ProtocolFailed);
        assert_eq!(
            wire.culprits,
            [WireCulprit {
                party: 2,
                kind: WireBlameKind::SessionMismatch
            }]
        );
        // Errors about this node blame nobody, in a session or not.
        let own = SignerError::NotFound("no share of key k (signer-2)".into()).in_session(&signers);
        assert!(own.to_wire().culprits.is_empty());
        let outside = SignerError::from(MpcError::UnexpectedSender {
            party: 1,
            parties: 2,
        });
        assert!(
            outside.to_wire().culprits.is_empty(),
            "no signer set, no mapping"
        );
    }
}
