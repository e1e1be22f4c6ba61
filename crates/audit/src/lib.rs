//! `keyfold-audit`: the append-only signing log that auditors replay offline.
//!
//! Every event of the custody engine (key created, policy version, request,
//! approval, decision, signing session, signature, abort) becomes an [`Entry`]:
//! canonically encoded ([`Entry::canonical_bytes`]), hash-chained to the previous
//! entry (`prev_hash`), and a leaf of an RFC 6962 Merkle tree ([`merkle`]).
//! Periodic [`Checkpoint`]s (log id, tree size, root hash, time) are signed
//! by a [`CheckpointSigner`] (the HSM audit key, or [`Ed25519Signer`] in software).
//!
//! * [`Log`] is the pure in-memory core; [`FileLog`] persists it as JSON lines
//!   and fsyncs every append before returning, so callers can fail closed.
//! * [`verify()`] replays exported bytes offline with nothing but the trusted
//!   checkpoint public keys, and names the first bad entry; with an
//!   [`Auditor`] ([`verify_with`]) it also re-checks what the entries say
//!   (approval signatures, policy decisions, signatures under wallet keys,
//!   risk trees and risk decisions).
//! * [`record`] builds events from the policy and risk engines' types.
//!
//! The byte-level format is specified in `docs/audit-log.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auditor;
pub mod bundle;
mod canonical;
pub mod checkpoint;
pub mod event;
pub mod file;
mod hexser;
pub mod log;
pub mod merkle;
pub mod record;
pub mod trail;
pub mod verify;

pub use auditor::{AuditStats, Auditor, DecisionProblem, RefusalProblem, RiskFinding};
pub use checkpoint::{
    sign_checkpoint, Checkpoint, CheckpointError, CheckpointSigner, Ed25519Signer, SignedCheckpoint,
};
pub use event::{BoundsError, Entry, Event, HexBytes, Outcome, SigningMode};
pub use file::FileLog;
pub use log::Log;
pub use merkle::{Hash, ProofError};
pub use trail::Trail;
pub use verify::{
    parse_checkpoints, verify, verify_with, EntryError, EventCheck, NoChecks, Report, VerifyError,
};

/// Errors of writing to a log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event is outside the size bounds.
    #[error("event rejected: {0}")]
    Bounds(#[from] BoundsError),
    /// The encoded entry line is longer than [`verify::MAX_LINE`].
    #[error("entry line would be longer than the maximum line length")]
    LineTooLong,
    /// The log id is empty or longer than [`checkpoint::MAX_LOG_ID`].
    #[error("log id must be 1 to {} bytes", checkpoint::MAX_LOG_ID)]
    BadLogId,
    /// Signing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A proof could not be produced for these sizes.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// Reading, writing or syncing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An existing log file does not verify; it was not modified.
    #[error("existing log does not verify: {0}")]
    Corrupt(#[from] VerifyError),
    /// A file ends with an incomplete line (a crash during an append that was
    /// never acknowledged). Use [`FileLog::open_recover`] to cut it off.
    #[error("{path} ends with an incomplete line at byte {offset}")]
    TornTail {
        /// The file.
        path: String,
        /// Byte offset where the incomplete line starts.
        offset: u64,
    },
    /// The entries file reached the size limit the operator set; nothing
    /// more is appended until it is raised (or the log archived).
    #[error("the audit log is full: {bytes} bytes of entries, limit {limit}")]
    Full {
        /// Bytes in the entries file.
        bytes: u64,
        /// The configured limit.
        limit: u64,
    },
    /// An earlier failed write could not be rolled back; the writer refuses
    /// further appends until the log is reopened.
    #[error("log writer is poisoned by an earlier failed write")]
    Poisoned,
}

/// Result type of this crate's writing operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
