//! Error types of the store and of sealing.
//!
//! Every variant names what to act on: the file path, the key id, the
//! presignature id, the request id. No variant ever carries secret material.

use std::path::PathBuf;

use crate::seal::ObjectType;

/// Errors of sealing and unsealing secrets ([`crate::Sealer`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A sealed blob failed authentication: it was modified, or it belongs to
    /// another node, object, id or version (its [`crate::Aad`] differs), or it
    /// was sealed under another key or passphrase.
    #[error("sealed {object} `{id}` failed authentication: tampered, moved from another record or node, or sealed under another key")]
    Tampered {
        /// The object type that was being opened.
        object: ObjectType,
        /// The id of the record (key id, group id, presignature id ...).
        id: String,
    },
    /// A sealed blob is not in a format this version understands (truncated,
    /// too large, unknown format version).
    #[error("sealed {object} `{id}` is malformed: {reason}")]
    Malformed {
        /// The object type that was being opened.
        object: ObjectType,
        /// The id of the record.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A plaintext is larger than [`crate::MAX_SECRET_LEN`].
    #[error("{object} `{id}` is {len} bytes, more than the {max} bytes that can be sealed")]
    TooLarge {
        /// The object type that was being sealed.
        object: ObjectType,
        /// The id of the record.
        id: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A key file has the wrong size or content.
    #[error("key file {path}: {reason}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key or KDF file is accessible by group or others (unix).
    #[error(
        "{path} has mode {mode:o}: it must not be accessible by group or others (chmod 600 {path})"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `generate_key_file` refuses to overwrite an existing file.
    #[error("key file {path} already exists: refusing to overwrite it")]
    KeyFileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A passphrase KDF file (salt and parameters) is malformed.
    #[error("KDF file {path}: {reason}")]
    BadKdfFile {
        /// The KDF file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The passphrase does not match the one the KDF file was created with.
    #[error("wrong passphrase: it does not match the check value in {path}")]
    WrongPassphrase {
        /// The KDF file holding the check value.
        path: PathBuf,
    },
    /// The passphrase is refused (empty or too short).
    #[error("passphrase refused: {reason}")]
    WeakPassphrase {
        /// Why.
        reason: String,
    },
    /// Key derivation failed (invalid argon2 parameters).
    #[error("argon2id key derivation failed: {reason}")]
    Kdf {
        /// The argon2 error.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("the operating system random generator failed: {reason}")]
    Rng {
        /// The error.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A sealing backend (such as the HSM bridge) failed.
    #[error("sealing backend {backend}: {reason}")]
    Backend {
        /// Which backend (as in [`crate::Sealer::describe`]).
        backend: String,
        /// What failed.
        reason: String,
    },
}

/// Errors of [`crate::SignerStore`] and [`crate::CoordinatorStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Opening or initializing the database file failed.
    #[error("opening database {path}: {reason}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// An SQLite operation failed.
    #[error("database {path}: {op}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The store operation.
        op: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database stayed locked by another connection longer than the busy
    /// timeout; the operation did not happen and can be retried.
    #[error(
        "database {path}: {op}: still locked by another connection after the busy timeout; retry"
    )]
    Busy {
        /// The database file.
        path: PathBuf,
        /// The store operation.
        op: &'static str,
    },
    /// The database was written by a newer version of Keyfold.
    #[error("database {path} has schema version {found}, newer than the {supported} this build supports: upgrade keyfold (do not downgrade a node)")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The database belongs to another kind of store or another node.
    #[error("database {path} was created for {found}, not {expected}")]
    WrongDatabase {
        /// The database file.
        path: PathBuf,
        /// What it was created for.
        found: String,
        /// What it was opened as.
        expected: String,
    },
    /// A record read from the database does not parse.
    #[error("database {path}: {what} `{id}` is corrupt: {reason}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The kind of record.
        what: &'static str,
        /// Its id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Sealing or unsealing failed (names the object and id).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Input was refused before touching the database.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The argument or field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// No record with this id.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// A record with this id exists with other content; it is never
    /// overwritten.
    #[error("{what} `{id}` already exists with different content: refusing to overwrite it")]
    Conflict {
        /// The kind of record (`key share`, `key`, `presignature` ...).
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The presignature was already taken (or discarded). The caller must
    /// not produce a partial signature with it.
    #[error("presignature `{id}` was already used or discarded")]
    PresignatureUsed {
        /// The presignature id.
        id: String,
    },
    /// The presignature exists but belongs to another key or signer set; it
    /// was left untouched.
    #[error("presignature `{id}` belongs to key `{key_id}` and signer set [{signer_set}], not the ones requested")]
    PresignatureMismatch {
        /// The presignature id.
        id: String,
        /// The key it belongs to.
        key_id: String,
        /// The signer set it belongs to (`0,1,2`).
        signer_set: String,
    },
    /// The session id was already recorded: a replayed or duplicated session.
    #[error("session {session_id} was already seen: replay refused")]
    SessionReplayed {
        /// The session id, hex.
        session_id: String,
    },
    /// A request changed since the caller read it (another writer moved
    /// it first): read it again.
    #[error("request `{request_id}` changed since it was read (revision {expected}, now {found})")]
    StaleRevision {
        /// The request id.
        request_id: String,
        /// The revision the caller read.
        expected: i64,
        /// The revision found.
        found: i64,
    },
}
