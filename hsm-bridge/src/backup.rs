//! Offline backups of a signer node's secrets, encrypted to an offline
//! recovery key with [age](https://age-encryption.org/v1) (X25519 recipients).
//!
//! A signer's key shares are sealed by its HSM token under a key that never
//! leaves the token: if the token is lost, so are the shares. This module
//! moves them, re-encrypted, to a file that an operator keeps offline, and
//! back into a fresh node (with a fresh token) that then signs again under
//! the same group public keys.
//!
//! * [`recovery_keygen`] makes the offline recovery key: an age X25519
//!   identity (`AGE-SECRET-KEY-1...`, the secret, kept offline) and its
//!   recipient (`age1...`, public, given to the nodes that export).
//! * [`export`] reads every key share and every aux info from a
//!   [`SignerStore`] (unsealed by the node's own sealer, e.g. its HSM token)
//!   and encrypts them to the recipient. The plaintext only ever exists in
//!   memory, in buffers zeroized on drop (except the last chunk, up to 64 KiB,
//!   that the age encryptor buffers without zeroizing); nothing is written to
//!   disk here.
//! * [`DecryptedBackup::open`] decrypts and checks a backup in memory;
//!   [`inspect`] lists what it holds without writing anything;
//!   [`restore`] (or [`DecryptedBackup::restore_into`]) writes it into a
//!   store, where the store's sealer (the new node's token) seals it again.
//!
//! # What a backup holds
//!
//! The node id, the time of export, the Keyfold version, and for every key:
//! key id, curve, group public key and the share (the signer node's opaque
//! blob, byte for byte); for every signer group: its aux info (opaque blob).
//!
//! It never holds presignatures: a restored presignature may already have
//! been used, and using one twice leaks the key. [`restore`] also discards
//! every ready presignature already in the target store. The node's policy
//! history, seen requests and signing log are not in the backup either.
//!
//! # Format
//!
//! A standard binary age file (v1, one X25519 recipient stanza) whose
//! payload is a JSON document:
//!
//! ```json
//! { "format": "keyfold-signer-backup", "version": 1,
//!   "node_id": "signer-1", "created_at": 1700000000, "keyfold_version": "0.1.0",
//!   "shares": [ { "key_id": "...", "curve": "secp256k1", "public_key": "<hex>",
//!                 "created_at": 1700000000, "share": "<hex>" } ],
//!   "aux_info": [ { "group_id": "...", "aux": "<hex>" } ] }
//! ```
//!
//! The standard `age` tool can decrypt it (`age -d -i recovery.key backup.age`),
//! which is a last resort only: that writes the shares in the clear.
//!
//! # Errors
//!
//! Every failure is a [`BackupError`] that says what to do; a wrong recovery
//! key, a truncated, modified or foreign file never panics and never writes
//! anything to the store.

use std::collections::HashSet;
use std::fmt;
use std::io::{Read, Write};
use std::iter;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use keyfold_store::{Curve, SignerStore, StoreError};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

/// The `format` field of a backup's payload.
pub const BACKUP_FORMAT: &str = "keyfold-signer-backup";

/// The payload format version written by this build (and the newest it
/// reads).
pub const BACKUP_FORMAT_VERSION: u32 = 1;

/// Largest backup file, and largest decrypted payload, accepted: 256 MiB.
pub const MAX_BACKUP_LEN: usize = 256 * 1024 * 1024;

/// Largest recovery identity text (file) accepted: 64 KiB.
pub const MAX_IDENTITY_LEN: usize = 64 * 1024;

const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-1";
const RECIPIENT_PREFIX: &str = "age1";
const AGE_MAGIC: &[u8] = b"age-encryption.org/";

/// Errors of backup export, inspection and restore. Every message says what
/// to do; none carries secret material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The recovery recipient does not parse.
    #[error("recovery recipient {shown:?} is not an age X25519 public key ({reason}): pass the `age1...` line printed by `keyfold backup keygen`")]
    InvalidRecipient {
        /// The recipient as given (shortened).
        shown: String,
        /// Why it was refused.
        reason: String,
    },
    /// The recovery identity does not parse.
    #[error("recovery identity is not an age X25519 secret key ({reason}): pass the identity file written by `keyfold backup keygen` (one `AGE-SECRET-KEY-1...` line)")]
    InvalidIdentity {
        /// Why it was refused (never the key itself).
        reason: String,
    },
    /// The backup is an age file, but not for this recovery key.
    #[error("the backup does not open with this recovery key: wrong identity file, or the backup was made for another recipient (or its header was damaged); try the recovery key the backup was made for, or another copy of the backup")]
    WrongIdentity,
    /// The input is not an age file (or its header is unreadable).
    #[error("not an age-encrypted Keyfold backup ({reason}): pass the file written by `keyfold backup export`, or use another copy")]
    NotABackup {
        /// What was found.
        reason: String,
    },
    /// The backup opened with the recovery key but its content fails
    /// authentication or ends early: it was truncated or modified.
    #[error("the backup is damaged: {reason}; it was truncated or modified after export: use another copy (never a partial restore)")]
    Damaged {
        /// What failed.
        reason: String,
    },
    /// The backup, or its decrypted payload, is larger than
    /// [`MAX_BACKUP_LEN`].
    #[error("the backup is larger than {max} bytes (at least {len}): refusing to read it; check the file is a Keyfold signer backup")]
    TooLarge {
        /// Its length, or how much was read before stopping.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The backup decrypted, but its payload is not a Keyfold signer backup.
    #[error("the backup decrypted but does not hold a Keyfold signer backup: {reason}; it was not made by `keyfold backup export`")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The payload's format version is newer than this build.
    #[error("backup format version {found} is newer than the {supported} this build reads: restore it with the Keyfold version that made it ({made_by}) or newer")]
    UnsupportedVersion {
        /// The version in the backup.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
        /// The Keyfold version that wrote it, if readable.
        made_by: String,
    },
    /// The backup holds another node's shares.
    #[error("this backup holds the shares of node `{backup_node}`, but the target store belongs to node `{store_node}`: restore it on a node configured with node_id = \"{backup_node}\" (with a certificate for that name)")]
    WrongNode {
        /// The node id in the backup.
        backup_node: String,
        /// The node id of the target store.
        store_node: String,
    },
    /// The store has nothing to back up.
    #[error("node `{node_id}` holds no key shares and no aux info: nothing to back up (export after key generation)")]
    NothingToExport {
        /// The node id.
        node_id: String,
    },
    /// A store operation failed. A [`StoreError::Conflict`] here means the
    /// target store holds different data under the same key or group id;
    /// nothing was written.
    #[error("{context}: {source}")]
    Store {
        /// What was being done, and what to do.
        context: String,
        /// The store's error (boxed: it is large).
        #[source]
        source: Box<StoreError>,
    },
    /// age encryption failed.
    #[error("encrypting the backup failed: {reason}")]
    Encrypt {
        /// The error.
        reason: String,
    },
}

fn store_err(context: impl Into<String>) -> impl FnOnce(StoreError) -> BackupError {
    let context = context.into();
    move |source| BackupError::Store {
        context,
        source: Box::new(source),
    }
}

// ---------------------------------------------------------------------------
// Recovery keys

/// An offline recovery key: an age X25519 identity and its recipient.
///
/// `Debug` shows the recipient only.
pub struct RecoveryKey {
    identity: Zeroizing<String>,
    recipient: String,
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryKey")
            .field("identity", &"<redacted>")
            .field("recipient", &self.recipient)
            .finish()
    }
}

impl RecoveryKey {
    /// The secret identity, `AGE-SECRET-KEY-1...` (keep it offline).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The public recipient, `age1...` (what nodes export to).
    pub fn recipient(&self) -> &str {
        &self.recipient
    }

    /// The identity file's text, in the layout `age-keygen` writes (comment
    /// lines, then the key), so the standard `age` tool reads it too.
    pub fn identity_file(&self) -> Zeroizing<String> {
        let header = "# Keyfold offline recovery key (age X25519 identity). Keep it offline.\n";
        let mut out = Zeroizing::new(String::with_capacity(
            header.len() + self.recipient.len() + self.identity.len() + 32,
        ));
        out.push_str(header);
        out.push_str("# public key: ");
        out.push_str(&self.recipient);
        out.push('\n');
        out.push_str(&self.identity);
        out.push('\n');
        out
    }
}

/// Makes a new offline recovery key (an age X25519 identity) from the
/// operating system's random generator.
pub fn recovery_keygen() -> RecoveryKey {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = identity.to_string();
    RecoveryKey {
        identity: Zeroizing::new(secret.expose_secret().to_string()),
        recipient,
    }
}

/// Parses a recovery identity: either a bare `AGE-SECRET-KEY-1...` string or
/// the text of an identity file (blank lines and `#` comments ignored,
/// exactly one key line).
fn parse_identity(text: &str) -> Result<age::x25519::Identity, BackupError> {
    let invalid = |reason: &str| BackupError::InvalidIdentity {
        reason: reason.to_string(),
    };
    if text.len() > MAX_IDENTITY_LEN {
        return Err(invalid("longer than 64 KiB"));
    }
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let key = keys.next().ok_or_else(|| invalid("no key line found"))?;
    if keys.next().is_some() {
        return Err(invalid(
            "more than one key line: give the single recovery identity",
        ));
    }
    if !key.starts_with(SECRET_KEY_PREFIX) {
        return Err(invalid(if key.starts_with(RECIPIENT_PREFIX) {
            "this is a public recipient (age1...), not the secret identity"
        } else {
            "the key line does not start with AGE-SECRET-KEY-1"
        }));
    }
    age::x25519::Identity::from_str(key).map_err(invalid)
}

fn parse_recipient(recipient: &str) -> Result<age::x25519::Recipient, BackupError> {
    let r = recipient.trim();
    let shown: String = if r.len() > 80 {
        format!("{}...", r.chars().take(70).collect::<String>())
    } else {
        r.to_string()
    };
    if r.starts_with(SECRET_KEY_PREFIX) {
        // Do not echo a secret key back.
        return Err(BackupError::InvalidRecipient {
            shown: "AGE-SECRET-KEY-1...".into(),
            reason: "this is the secret identity: give its public recipient (age1...) instead, and keep the identity offline".into(),
        });
    }
    age::x25519::Recipient::from_str(r).map_err(|reason| BackupError::InvalidRecipient {
        shown,
        reason: reason.to_string(),
    })
}

/// The recipient (`age1...`) of a recovery identity (bare key or identity
/// file text), e.g. to check an identity file matches a recipient.
pub fn recipient_of(identity: &str) -> Result<String, BackupError> {
    Ok(parse_identity(identity)?.to_public().to_string())
}

// ---------------------------------------------------------------------------
// Zeroizing buffers

/// A growing byte buffer whose every allocation is zeroized when dropped or
/// outgrown (a plain `Vec` leaves copies behind when it reallocates).
struct SecretBuf {
    buf: Zeroizing<Vec<u8>>,
    max: usize,
}

impl SecretBuf {
    fn new(capacity: usize, max: usize) -> SecretBuf {
        SecretBuf {
            buf: Zeroizing::new(Vec::with_capacity(capacity.min(max))),
            max,
        }
    }

    /// Appends `data`; `false` (and nothing appended) past `max`.
    fn push(&mut self, data: &[u8]) -> bool {
        let len = self.buf.len();
        let Some(needed) = len.checked_add(data.len()) else {
            return false;
        };
        if needed > self.max {
            return false;
        }
        if self.buf.capacity() < needed {
            let cap = needed
                .max(self.buf.capacity().saturating_mul(2))
                .min(self.max);
            let mut grown = Zeroizing::new(Vec::with_capacity(cap));
            grown.extend_from_slice(&self.buf);
            // The old allocation is zeroized when dropped here.
            self.buf = grown;
        }
        self.buf.extend_from_slice(data);
        true
    }

    fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

impl Write for SecretBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.push(data) {
            Ok(data.len())
        } else {
            Err(std::io::Error::other("payload larger than the limit"))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serializes secret bytes as a hex string without leaving copies behind.
fn ser_secret_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut hex_buf = Zeroizing::new(vec![0u8; bytes.len() * 2]);
    hex::encode_to_slice(bytes, &mut hex_buf[..])
        .map_err(|_| serde::ser::Error::custom("hex encoding failed"))?;
    let text = std::str::from_utf8(&hex_buf[..])
        .map_err(|_| serde::ser::Error::custom("hex encoding failed"))?;
    s.serialize_str(text)
}

/// Deserializes a hex string into zeroizing bytes; errors never quote it.
fn de_secret_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
    struct HexVisitor;
    impl Visitor<'_> for HexVisitor {
        type Value = Zeroizing<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a hex string")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            if !s.len().is_multiple_of(2) {
                return Err(E::custom("secret is not a hex string (odd length)"));
            }
            let mut out = Zeroizing::new(vec![0u8; s.len() / 2]);
            hex::decode_to_slice(s, &mut out[..])
                .map_err(|_| E::custom("secret is not a hex string"))?;
            Ok(out)
        }
    }
    d.deserialize_str(HexVisitor)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Payload

#[derive(Serialize)]
struct PayloadOut<'a> {
    format: &'static str,
    version: u32,
    node_id: &'a str,
    created_at: i64,
    keyfold_version: &'static str,
    shares: Vec<ShareOut<'a>>,
    aux_info: Vec<AuxOut<'a>>,
}

#[derive(Serialize)]
struct ShareOut<'a> {
    key_id: &'a str,
    curve: &'static str,
    public_key: String,
    created_at: i64,
    #[serde(serialize_with = "ser_secret_hex")]
    share: &'a [u8],
}

#[derive(Serialize)]
struct AuxOut<'a> {
    group_id: &'a str,
    #[serde(serialize_with = "ser_secret_hex")]
    aux: &'a [u8],
}

/// Read first, to report a foreign or newer format before anything else.
#[derive(Deserialize)]
struct PayloadHead {
    format: String,
    version: u32,
    #[serde(default)]
    keyfold_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadIn {
    #[allow(dead_code)]
    format: String,
    #[allow(dead_code)]
    version: u32,
    node_id: String,
    created_at: i64,
    keyfold_version: String,
    shares: Vec<ShareIn>,
    aux_info: Vec<AuxIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareIn {
    key_id: String,
    curve: String,
    public_key: String,
    created_at: i64,
    #[serde(deserialize_with = "de_secret_hex")]
    share: Zeroizing<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuxIn {
    group_id: String,
    #[serde(deserialize_with = "de_secret_hex")]
    aux: Zeroizing<Vec<u8>>,
}

// ---------------------------------------------------------------------------
// Export

/// Exports every key share and every aux info of `store` (never its
/// presignatures), encrypted to the age X25519 `recipient` (`age1...`).
///
/// Returns the age file's bytes; the caller writes them (mode 0600). The
/// plaintext only exists in zeroizing memory buffers. Fails with
/// [`BackupError::NothingToExport`] when the store holds neither shares nor
/// aux info, [`BackupError::InvalidRecipient`] for a bad recipient, and
/// [`BackupError::Store`] when a secret cannot be read or unsealed.
pub fn export(store: &SignerStore, recipient: &str) -> Result<Vec<u8>, BackupError> {
    let recipient = parse_recipient(recipient)?;

    let metas = store
        .list_shares()
        .map_err(store_err("listing the node's key shares"))?;
    let mut shares = Vec::with_capacity(metas.len());
    for meta in &metas {
        let record = store
            .get_share(&meta.key_id)
            .map_err(store_err(format!(
                "reading key share `{}` (does this configuration's sealer open the store?)",
                meta.key_id
            )))?
            .ok_or_else(|| BackupError::Store {
                context: "reading the node's key shares".into(),
                source: Box::new(StoreError::NotFound {
                    what: "key share",
                    id: meta.key_id.clone(),
                }),
            })?;
        shares.push((meta, record));
    }
    let groups = store
        .list_aux_groups()
        .map_err(store_err("listing the node's aux info"))?;
    let mut aux = Vec::with_capacity(groups.len());
    for group_id in &groups {
        let plaintext = store
            .get_aux(group_id)
            .map_err(store_err(format!(
                "reading the aux info of group `{group_id}`"
            )))?
            .ok_or_else(|| BackupError::Store {
                context: "reading the node's aux info".into(),
                source: Box::new(StoreError::NotFound {
                    what: "aux info",
                    id: group_id.clone(),
                }),
            })?;
        aux.push((group_id, plaintext));
    }
    if shares.is_empty() && aux.is_empty() {
        return Err(BackupError::NothingToExport {
            node_id: store.node_id().to_string(),
        });
    }

    let payload = PayloadOut {
        format: BACKUP_FORMAT,
        version: BACKUP_FORMAT_VERSION,
        node_id: store.node_id(),
        created_at: now(),
        keyfold_version: env!("CARGO_PKG_VERSION"),
        shares: shares
            .iter()
            .map(|(meta, record)| ShareOut {
                key_id: &meta.key_id,
                curve: record.curve.as_str(),
                public_key: hex::encode(&record.public_key),
                created_at: meta.created_at,
                share: &record.plaintext,
            })
            .collect(),
        aux_info: aux
            .iter()
            .map(|(group_id, plaintext)| AuxOut {
                group_id,
                aux: plaintext,
            })
            .collect(),
    };
    // Hex doubles the secrets; ids, public keys and field names are small.
    let estimate = shares
        .iter()
        .map(|(_, r)| 2 * r.plaintext.len() + 2 * r.public_key.len() + 512)
        .chain(aux.iter().map(|(_, a)| 2 * a.len() + 256))
        .fold(1024usize, usize::saturating_add);
    let mut buf = SecretBuf::new(estimate, MAX_BACKUP_LEN);
    serde_json::to_writer(&mut buf, &payload).map_err(|e| {
        if e.is_io() {
            BackupError::TooLarge {
                len: MAX_BACKUP_LEN,
                max: MAX_BACKUP_LEN,
            }
        } else {
            BackupError::Encrypt {
                reason: format!("serializing the payload: {e}"),
            }
        }
    })?;
    let plaintext = buf.into_inner();

    let encrypt_err = |e: std::io::Error| BackupError::Encrypt {
        reason: e.to_string(),
    };
    let encryptor = age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
        .map_err(|e| BackupError::Encrypt {
            reason: e.to_string(),
        })?;
    let out = Vec::with_capacity(plaintext.len() + plaintext.len() / 1024 + 512);
    let mut writer = encryptor.wrap_output(out).map_err(encrypt_err)?;
    writer.write_all(&plaintext).map_err(encrypt_err)?;
    let out = writer.finish().map_err(encrypt_err)?;
    tracing::info!(
        node_id = store.node_id(),
        shares = shares.len(),
        aux_info = aux.len(),
        bytes = out.len(),
        "exported signer backup"
    );
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decrypt, inspect, restore

/// One key share listed in a backup (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUpShare {
    /// The key id.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The group public key.
    pub public_key: Vec<u8>,
    /// When the share was stored on the exporting node (Unix seconds).
    pub created_at: i64,
    /// Size of the share blob, bytes.
    pub share_len: usize,
}

/// One aux info listed in a backup (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUpAux {
    /// The signer group id.
    pub group_id: String,
    /// Size of the aux info blob, bytes.
    pub aux_len: usize,
}

/// What a backup holds (no secret): see [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupContents {
    /// The node whose shares these are.
    pub node_id: String,
    /// When the backup was made (Unix seconds).
    pub created_at: i64,
    /// The Keyfold version that made it.
    pub keyfold_version: String,
    /// The payload format version.
    pub format_version: u32,
    /// The key shares, by key id.
    pub shares: Vec<BackedUpShare>,
    /// The aux info, by group id.
    pub aux_info: Vec<BackedUpAux>,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// What the backup holds (every key id and public key).
    pub contents: BackupContents,
    /// Key shares written.
    pub shares_written: usize,
    /// Key shares that were already in the store, identical (a repeated
    /// restore).
    pub shares_already_present: usize,
    /// Aux info written.
    pub aux_written: usize,
    /// Aux info already in the store, identical.
    pub aux_already_present: usize,
    /// Ready presignatures of the target store that were discarded.
    pub presignatures_discarded: usize,
}

struct ShareEntry {
    key_id: String,
    curve: Curve,
    public_key: Vec<u8>,
    created_at: i64,
    share: Zeroizing<Vec<u8>>,
}

struct AuxEntry {
    group_id: String,
    aux: Zeroizing<Vec<u8>>,
}

/// A backup decrypted and checked in memory (secrets zeroized on drop;
/// `Debug` shows no secret).
pub struct DecryptedBackup {
    node_id: String,
    created_at: i64,
    keyfold_version: String,
    shares: Vec<ShareEntry>,
    aux: Vec<AuxEntry>,
}

impl fmt::Debug for DecryptedBackup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedBackup")
            .field("node_id", &self.node_id)
            .field("created_at", &self.created_at)
            .field(
                "shares",
                &self.shares.iter().map(|s| &s.key_id).collect::<Vec<_>>(),
            )
            .field(
                "aux_info",
                &self.aux.iter().map(|a| &a.group_id).collect::<Vec<_>>(),
            )
            .field("secrets", &"<redacted>")
            .finish()
    }
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    match e {
        age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => {
            BackupError::WrongIdentity
        }
        age::DecryptError::InvalidHeader => BackupError::NotABackup {
            reason: "its age header is invalid or damaged".into(),
        },
        age::DecryptError::UnknownFormat => BackupError::NotABackup {
            reason: "unknown age format version, or not an age file".into(),
        },
        age::DecryptError::ExcessiveWork { .. } => BackupError::NotABackup {
            reason: "it is encrypted to a passphrase, not to a recovery key".into(),
        },
        age::DecryptError::InvalidMac => BackupError::Damaged {
            reason: "the age header's MAC does not verify".into(),
        },
        age::DecryptError::DecryptionFailed => BackupError::Damaged {
            reason: "the payload failed authentication".into(),
        },
        age::DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            BackupError::NotABackup {
                reason: "the file ends inside the age header (truncated)".into(),
            }
        }
        other => BackupError::NotABackup {
            reason: format!("unreadable age header: {other}"),
        },
    }
}

fn decrypt(identity: &str, backup: &[u8]) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let identity = parse_identity(identity)?;
    if backup.len() > MAX_BACKUP_LEN {
        return Err(BackupError::TooLarge {
            len: backup.len(),
            max: MAX_BACKUP_LEN,
        });
    }
    if backup.is_empty() {
        return Err(BackupError::NotABackup {
            reason: "the file is empty".into(),
        });
    }
    if !backup.starts_with(AGE_MAGIC) {
        return Err(BackupError::NotABackup {
            reason: if backup.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
                "it is ASCII-armored: dearmor it first (Keyfold writes binary age files)".into()
            } else {
                "it does not start with the age header".into()
            },
        });
    }
    let decryptor = age::Decryptor::new_buffered(backup).map_err(decrypt_error)?;
    if decryptor.is_scrypt() {
        return Err(BackupError::NotABackup {
            reason: "it is encrypted to a passphrase, not to a recovery key".into(),
        });
    }
    let mut reader = decryptor
        .decrypt(iter::once(&identity as &dyn age::Identity))
        .map_err(decrypt_error)?;
    let mut out = SecretBuf::new(backup.len(), MAX_BACKUP_LEN);
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = match reader.read(&mut chunk[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(BackupError::Damaged {
                    reason: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        "the payload ends early (truncated)".to_string()
                    } else {
                        format!("the payload failed authentication ({e})")
                    },
                })
            }
        };
        if !out.push(&chunk[..n]) {
            return Err(BackupError::TooLarge {
                len: MAX_BACKUP_LEN,
                max: MAX_BACKUP_LEN,
            });
        }
    }
    Ok(out.into_inner())
}

fn malformed(reason: impl Into<String>) -> BackupError {
    BackupError::Malformed {
        reason: reason.into(),
    }
}

impl DecryptedBackup {
    /// Decrypts `backup` with the recovery `identity` (a bare
    /// `AGE-SECRET-KEY-1...` or an identity file's text) and checks its
    /// content, in memory only.
    pub fn open(identity: &str, backup: &[u8]) -> Result<DecryptedBackup, BackupError> {
        let payload = decrypt(identity, backup)?;

        let head: PayloadHead = serde_json::from_slice(&payload)
            .map_err(|e| malformed(format!("the payload is not a backup document ({e})")))?;
        if head.format != BACKUP_FORMAT {
            let shown: String = head.format.chars().take(64).collect();
            return Err(malformed(format!(
                "format is {shown:?}, not {BACKUP_FORMAT:?}"
            )));
        }
        if head.version > BACKUP_FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion {
                found: head.version,
                supported: BACKUP_FORMAT_VERSION,
                made_by: head
                    .keyfold_version
                    .map(|v| v.chars().take(32).collect())
                    .unwrap_or_else(|| "unknown".into()),
            });
        }
        if head.version == 0 {
            return Err(malformed("format version 0"));
        }
        let body: PayloadIn = serde_json::from_slice(&payload)
            .map_err(|e| malformed(format!("version {} document: {e}", head.version)))?;
        drop(payload);

        if body.node_id.is_empty() || body.node_id.len() > keyfold_store::MAX_ID_LEN {
            return Err(malformed("node id missing or too long"));
        }
        let mut shares = Vec::with_capacity(body.shares.len());
        let mut seen = HashSet::new();
        for s in body.shares {
            if !seen.insert(s.key_id.clone()) {
                return Err(malformed(format!("key id `{}` appears twice", s.key_id)));
            }
            let curve = Curve::parse(&s.curve).ok_or_else(|| {
                malformed(format!(
                    "key `{}` has unknown curve {:?} (made by a newer Keyfold?)",
                    s.key_id,
                    s.curve.chars().take(32).collect::<String>()
                ))
            })?;
            let public_key = hex::decode(&s.public_key)
                .map_err(|_| malformed(format!("key `{}`: public key is not hex", s.key_id)))?;
            if s.share.is_empty() {
                return Err(malformed(format!("key `{}`: empty share", s.key_id)));
            }
            shares.push(ShareEntry {
                key_id: s.key_id,
                curve,
                public_key,
                created_at: s.created_at,
                share: s.share,
            });
        }
        let mut aux = Vec::with_capacity(body.aux_info.len());
        let mut seen = HashSet::new();
        for a in body.aux_info {
            if !seen.insert(a.group_id.clone()) {
                return Err(malformed(format!(
                    "aux info of group `{}` appears twice",
                    a.group_id
                )));
            }
            if a.aux.is_empty() {
                return Err(malformed(format!(
                    "aux info of group `{}` is empty",
                    a.group_id
                )));
            }
            aux.push(AuxEntry {
                group_id: a.group_id,
                aux: a.aux,
            });
        }
        if shares.is_empty() && aux.is_empty() {
            return Err(malformed("it holds no key shares and no aux info"));
        }
        Ok(DecryptedBackup {
            node_id: body.node_id,
            created_at: body.created_at,
            keyfold_version: body.keyfold_version,
            shares,
            aux,
        })
    }

    /// The node whose shares these are.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What the backup holds (no secret).
    pub fn contents(&self) -> BackupContents {
        BackupContents {
            node_id: self.node_id.clone(),
            created_at: self.created_at,
            keyfold_version: self.keyfold_version.clone(),
            format_version: BACKUP_FORMAT_VERSION,
            shares: self
                .shares
                .iter()
                .map(|s| BackedUpShare {
                    key_id: s.key_id.clone(),
                    curve: s.curve,
                    public_key: s.public_key.clone(),
                    created_at: s.created_at,
                    share_len: s.share.len(),
                })
                .collect(),
            aux_info: self
                .aux
                .iter()
                .map(|a| BackedUpAux {
                    group_id: a.group_id.clone(),
                    aux_len: a.aux.len(),
                })
                .collect(),
        }
    }

    /// Writes the backup into `store`: every share via
    /// [`SignerStore::put_share`] and every aux info via
    /// [`SignerStore::put_aux`] (sealed by the store's sealer), then discards
    /// every ready presignature of the store.
    ///
    /// First checks everything: a store of another node fails with
    /// [`BackupError::WrongNode`]; a store holding a different share or aux
    /// info under a backed-up id fails with [`BackupError::Store`] wrapping
    /// [`StoreError::Conflict`]. In both cases nothing is written. Records
    /// already present and identical are left as they are, so restoring
    /// twice is harmless.
    pub fn restore_into(&self, store: &SignerStore) -> Result<RestoreReport, BackupError> {
        if store.node_id() != self.node_id {
            return Err(BackupError::WrongNode {
                backup_node: self.node_id.clone(),
                store_node: store.node_id().to_string(),
            });
        }
        let conflict_context = "the target store already holds different data: restore into a fresh data directory (never over another key's share)";

        // Check every record before writing any.
        let mut share_present = Vec::with_capacity(self.shares.len());
        for s in &self.shares {
            let existing = store.get_share(&s.key_id).map_err(store_err(format!(
                "checking key share `{}` in the target store",
                s.key_id
            )))?;
            let present = match existing {
                None => false,
                Some(old) => {
                    if old.curve != s.curve
                        || old.public_key != s.public_key
                        || !ct_eq(&old.plaintext, &s.share)
                    {
                        return Err(BackupError::Store {
                            context: conflict_context.into(),
                            source: Box::new(StoreError::Conflict {
                                what: "key share",
                                id: s.key_id.clone(),
                            }),
                        });
                    }
                    true
                }
            };
            share_present.push(present);
        }
        let mut aux_present = Vec::with_capacity(self.aux.len());
        for a in &self.aux {
            let existing = store.get_aux(&a.group_id).map_err(store_err(format!(
                "checking the aux info of group `{}` in the target store",
                a.group_id
            )))?;
            let present = match existing {
                None => false,
                Some(old) if ct_eq(&old, &a.aux) => true,
                Some(_) => {
                    return Err(BackupError::Store {
                        context: conflict_context.into(),
                        source: Box::new(StoreError::Conflict {
                            what: "aux info",
                            id: a.group_id.clone(),
                        }),
                    })
                }
            };
            aux_present.push(present);
        }

        let mut report = RestoreReport {
            contents: self.contents(),
            shares_written: 0,
            shares_already_present: 0,
            aux_written: 0,
            aux_already_present: 0,
            presignatures_discarded: 0,
        };
        for (s, present) in self.shares.iter().zip(share_present) {
            if present {
                report.shares_already_present += 1;
                continue;
            }
            store
                .put_share(&s.key_id, s.curve, &s.public_key, &s.share)
                .map_err(store_err(format!("restoring key share `{}`", s.key_id)))?;
            report.shares_written += 1;
        }
        for (a, present) in self.aux.iter().zip(aux_present) {
            if present {
                report.aux_already_present += 1;
                continue;
            }
            store
                .put_aux(&a.group_id, &a.aux)
                .map_err(store_err(format!(
                    "restoring the aux info of group `{}`",
                    a.group_id
                )))?;
            report.aux_written += 1;
        }
        report.presignatures_discarded = store
            .discard_all_presignatures()
            .map_err(store_err("discarding presignatures after the restore"))?;
        tracing::info!(
            node_id = %self.node_id,
            shares_written = report.shares_written,
            shares_already_present = report.shares_already_present,
            aux_written = report.aux_written,
            presignatures_discarded = report.presignatures_discarded,
            "restored signer backup"
        );
        Ok(report)
    }
}

/// Decrypts `backup` with `identity` and lists what it holds, writing
/// nothing: a check that a backup and its recovery key work.
pub fn inspect(identity: &str, backup: &[u8]) -> Result<BackupContents, BackupError> {
    Ok(DecryptedBackup::open(identity, backup)?.contents())
}

/// Decrypts `backup` with the recovery `identity` and restores it into
/// `store` (see [`DecryptedBackup::restore_into`]).
pub fn restore(
    store: &SignerStore,
    identity: &str,
    backup: &[u8],
) -> Result<RestoreReport, BackupError> {
    DecryptedBackup::open(identity, backup)?.restore_into(store)
}
