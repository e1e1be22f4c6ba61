//! Sealing of secrets at rest.
//!
//! Every secret the stores keep (key shares, aux info, presignatures, safe
//! primes) is sealed by a [`Sealer`] before it touches the disk, under
//! authenticated data ([`Aad`]) that names the node, the object type, the
//! record id and its version: a sealed blob copied to another node, record,
//! object type or version fails to open with [`SealError::Tampered`].
//!
//! [`SoftwareSealer`] is the software implementation: XChaCha20-Poly1305 under
//! a 32-byte key read from a key file or derived from a passphrase with
//! argon2id. The HSM bridge implements the same trait with keys that never
//! leave the HSM.
//!
//! # Sealed format (`SoftwareSealer`)
//!
//! ```text
//! byte 0       format version, 0x01
//! bytes 1..25  random 24-byte XChaCha20 nonce
//! bytes 25..   ciphertext followed by the 16-byte Poly1305 tag
//! ```
//!
//! The AEAD's associated data is [`Aad::canonical_bytes`].

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::validate::MAX_SECRET_LEN;

/// Seals and opens secrets at rest. Implemented by [`SoftwareSealer`] and by
/// the HSM bridge.
///
/// Implementations must authenticate `aad` (a blob sealed under one [`Aad`]
/// must not open under another), must not log plaintexts, and must return an
/// error, never panic, on any input to [`Sealer::open`].
pub trait Sealer: Send + Sync {
    /// Seals `plaintext` bound to `aad`.
    fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens a blob sealed by [`Sealer::seal`] under the same `aad`.
    fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
    /// A human-readable description of the backend for logs and errors
    /// (never key material).
    fn describe(&self) -> String;
}

/// The kind of secret being sealed. Part of the [`Aad`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectType {
    /// A cggmp21 (secp256k1 ECDSA) key share.
    EcdsaShare,
    /// A FROST (Ed25519) key share.
    EddsaShare,
    /// Auxiliary info (Paillier keys, ring-Pedersen parameters) of a signer group.
    AuxInfo,
    /// A presignature.
    Presignature,
    /// Pregenerated safe primes.
    SafePrimes,
    /// A backup blob (HSM bridge).
    Backup,
    /// A customer's payment-authentication state (devices, nonces,
    /// one-time-code secret, password hash), sealed by the coordinator.
    CustomerAuth,
}

impl ObjectType {
    /// The stable tag used in [`Aad::canonical_bytes`]; never changes for an
    /// existing variant.
    pub fn tag(self) -> &'static str {
        match self {
            ObjectType::EcdsaShare => "ecdsa-share",
            ObjectType::EddsaShare => "eddsa-share",
            ObjectType::AuxInfo => "aux-info",
            ObjectType::Presignature => "presignature",
            ObjectType::SafePrimes => "safe-primes",
            ObjectType::Backup => "backup",
            ObjectType::CustomerAuth => "customer-auth",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// Domain tag that starts [`Aad::canonical_bytes`].
pub const AAD_DOMAIN: &[u8] = b"keyfold/seal-aad/v1";

/// Associated data a secret is sealed under: which node, which kind of
/// object, which record, which version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aad {
    /// The node that owns the secret.
    pub node_id: String,
    /// What the secret is.
    pub object: ObjectType,
    /// The record id: key id, group id, presignature id (the stores may use
    /// a composite id, documented where they do).
    pub id: String,
    /// The record's version.
    pub version: u32,
}

impl Aad {
    /// Builds an [`Aad`].
    pub fn new(
        node_id: impl Into<String>,
        object: ObjectType,
        id: impl Into<String>,
        version: u32,
    ) -> Aad {
        Aad {
            node_id: node_id.into(),
            object,
            id: id.into(),
            version,
        }
    }

    /// Refuses a plaintext of `len` bytes above [`MAX_SECRET_LEN`], naming
    /// this record: the bound every [`Sealer`] applies before sealing.
    pub fn check_plaintext_len(&self, len: usize) -> Result<(), SealError> {
        if len > MAX_SECRET_LEN {
            return Err(SealError::TooLarge {
                object: self.object,
                id: self.id.clone(),
                len,
                max: MAX_SECRET_LEN,
            });
        }
        Ok(())
    }

    /// The canonical encoding authenticated by the AEAD:
    ///
    /// ```text
    /// "keyfold/seal-aad/v1"                       (19 bytes, the domain tag)
    /// u32 big-endian length || node_id            (UTF-8)
    /// u32 big-endian length || object tag         (ObjectType::tag, ASCII)
    /// u32 big-endian length || id                 (UTF-8)
    /// u32 big-endian version
    /// ```
    ///
    /// Length prefixes make the encoding injective: no two different [`Aad`]s
    /// encode to the same bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let tag = self.object.tag();
        let mut out = Vec::with_capacity(
            AAD_DOMAIN.len() + 16 + self.node_id.len() + tag.len() + self.id.len(),
        );
        out.extend_from_slice(AAD_DOMAIN);
        for field in [self.node_id.as_bytes(), tag.as_bytes(), self.id.as_bytes()] {
            // Fields are bounded far below 4 GiB by the stores; saturate anyway.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.version.to_be_bytes());
        out
    }
}

/// Format version byte of [`SoftwareSealer`] blobs.
pub const SEALED_FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a [`SoftwareSealer`] blob adds to its plaintext.
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest key file accepted before parsing (64 hex chars plus whitespace).
const MAX_KEY_FILE: usize = 128;
/// Largest KDF file accepted.
const MAX_KDF_FILE: usize = 1024;
const MAX_PASSPHRASE: usize = 1024;
const MIN_PASSPHRASE: usize = 8;
const SALT_LEN: usize = 16;
const KDF_HEADER: &str = "keyfold-kdf v1";
const KDF_CHECK_DOMAIN: &[u8] = b"keyfold/kdf-check/v1";

/// argon2id parameters for [`SoftwareSealer::from_passphrase_with_params`].
///
/// They are written to the KDF file when it is created and read back from it
/// afterwards, so changing the defaults never locks out an existing store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (the second recommended option of RFC 9106).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Very weak parameters (64 KiB, 1 pass) so tests run fast.
    /// **Tests only**: a passphrase store created with these is cheap to
    /// brute-force.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.p_cost) {
            return Err(format!("p_cost {} not in 1..=16", self.p_cost));
        }
        if !(1..=64).contains(&self.t_cost) {
            return Err(format!("t_cost {} not in 1..=64", self.t_cost));
        }
        let min_m = 8 * self.p_cost;
        if self.m_cost_kib < min_m || self.m_cost_kib > 4 * 1024 * 1024 {
            return Err(format!(
                "m_cost_kib {} not in {min_m}..={}",
                self.m_cost_kib,
                4 * 1024 * 1024
            ));
        }
        Ok(())
    }
}

/// Software [`Sealer`]: XChaCha20-Poly1305 with a 32-byte key, random nonces.
///
/// The key is zeroized on drop and never printed (`Debug` shows `<redacted>`).
pub struct SoftwareSealer {
    cipher: XChaCha20Poly1305,
    origin: String,
}

impl fmt::Debug for SoftwareSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSealer")
            .field("key", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SealError + '_ {
    move |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn random_bytes(out: &mut [u8]) -> Result<(), SealError> {
    OsRng.try_fill_bytes(out).map_err(|e| SealError::Rng {
        reason: e.to_string(),
    })
}

/// A zeroized read buffer and how many bytes of it are filled.
type Bounded<const N: usize> = (Zeroizing<[u8; N]>, usize);

/// Reads at most `N` bytes; `Ok(None)` if the file is larger.
fn read_bounded<const N: usize>(
    file: &mut File,
    path: &Path,
) -> Result<Option<Bounded<N>>, SealError> {
    let mut buf = Zeroizing::new([0u8; N]);
    let mut len = 0;
    loop {
        if len == N {
            // Full: anything more means the file is too large.
            let mut probe = [0u8; 1];
            return match file.read(&mut probe) {
                Ok(0) => Ok(Some((buf, len))),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(io_err(path)(e)),
            };
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(Some((buf, len))),
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        }
    }
}

/// Refuses a file accessible by group or others (unix only).
#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), SealError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SealError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), SealError> {
    Ok(())
}

/// Creates a new file with mode 0600, failing if it exists.
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// Flushes a directory entry to disk (best effort: not all platforms allow
/// opening a directory).
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn kdf_check_value(key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(KDF_CHECK_DOMAIN);
    h.update(key);
    h.finalize().into()
}

pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Contents of a passphrase KDF file.
struct KdfFile {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    /// `None` for a bare 16-byte salt file (no early wrong-passphrase check).
    check: Option<[u8; 32]>,
}

impl KdfFile {
    fn encode(&self) -> String {
        let mut s = format!(
            "{KDF_HEADER}\nalgorithm argon2id\nm_cost_kib {}\nt_cost {}\np_cost {}\nsalt {}\n",
            self.params.m_cost_kib,
            self.params.t_cost,
            self.params.p_cost,
            hex::encode(self.salt)
        );
        if let Some(check) = &self.check {
            s.push_str(&format!("check {}\n", hex::encode(check)));
        }
        s
    }

    fn parse(bytes: &[u8], default_params: KdfParams) -> Result<KdfFile, String> {
        if bytes.len() == SALT_LEN {
            // A bare salt file: parameters are the caller's.
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(bytes);
            return Ok(KdfFile {
                params: default_params,
                salt,
                check: None,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut lines = text.lines();
        if lines.next() != Some(KDF_HEADER) {
            return Err(format!(
                "first line must be `{KDF_HEADER}` (or the file must be a bare {SALT_LEN}-byte salt)"
            ));
        }
        let (mut alg, mut m, mut t, mut p, mut salt, mut check) =
            (None, None, None, None, None, None);
        for line in lines {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once(' ')
                .ok_or_else(|| format!("line `{line}` is not `name value`"))?;
            let num = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("`{k}` must be a number, got `{v}`"))
            };
            match k {
                "algorithm" => alg = Some(v.to_string()),
                "m_cost_kib" => m = Some(num(v)?),
                "t_cost" => t = Some(num(v)?),
                "p_cost" => p = Some(num(v)?),
                "salt" => {
                    let mut s = [0u8; SALT_LEN];
                    hex::decode_to_slice(v, &mut s)
                        .map_err(|_| format!("salt must be {} hex characters", 2 * SALT_LEN))?;
                    salt = Some(s);
                }
                "check" => {
                    let mut c = [0u8; 32];
                    hex::decode_to_slice(v, &mut c)
                        .map_err(|_| "check must be 64 hex characters".to_string())?;
                    check = Some(c);
                }
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        if alg.as_deref() != Some("argon2id") {
            return Err("algorithm must be argon2id".into());
        }
        let params = KdfParams {
            m_cost_kib: m.ok_or("missing m_cost_kib")?,
            t_cost: t.ok_or("missing t_cost")?,
            p_cost: p.ok_or("missing p_cost")?,
        };
        params.check()?;
        Ok(KdfFile {
            params,
            salt: salt.ok_or("missing salt")?,
            check,
        })
    }
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let kdf_err = |e: argon2::Error| SealError::Kdf {
        reason: e.to_string(),
    };
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(kdf_err)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut_slice())
        .map_err(kdf_err)?;
    Ok(key)
}

impl SoftwareSealer {
    /// A sealer over a key held in memory (for tests, or for a data key
    /// unwrapped by another component). `origin` appears in
    /// [`Sealer::describe`].
    pub fn from_key(key: &Zeroizing<[u8; 32]>, origin: &str) -> SoftwareSealer {
        SoftwareSealer {
            cipher: XChaCha20Poly1305::new(<&Key>::from(&**key)),
            origin: origin.to_string(),
        }
    }

    /// Loads the key from `path`: exactly 32 raw bytes, or 64 hex characters
    /// (surrounding whitespace allowed).
    ///
    /// On unix, a file accessible by group or others is refused
    /// ([`SealError::InsecurePermissions`]).
    pub fn from_key_file(path: impl AsRef<Path>) -> Result<SoftwareSealer, SealError> {
        let path = path.as_ref();
        let bad = |reason: String| SealError::BadKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = open_regular(path).map_err(|e| match e {
            OpenRegular::Io(e) => io_err(path)(e),
            OpenRegular::NotRegular => bad("not a regular file".into()),
        })?;
        let meta = file.metadata().map_err(io_err(path))?;
        check_private(path, &meta)?;
        let (buf, len) = read_bounded::<MAX_KEY_FILE>(&mut file, path)?.ok_or_else(|| {
            bad(format!(
                "larger than {MAX_KEY_FILE} bytes: expected 32 raw bytes or 64 hex characters"
            ))
        })?;
        let content = &buf[..len];
        let mut key = Zeroizing::new([0u8; 32]);
        if len == 32 {
            key.copy_from_slice(content);
        } else {
            let trimmed = content.trim_ascii();
            if trimmed.len() != 64 || hex::decode_to_slice(trimmed, key.as_mut_slice()).is_err() {
                return Err(bad(format!(
                    "holds {len} bytes: expected 32 raw bytes or 64 hex characters"
                )));
            }
        }
        if key.iter().all(|b| *b == 0) {
            return Err(bad("the key is all zeros".into()));
        }
        Ok(SoftwareSealer::from_key(
            &key,
            &format!("key file {}", path.display()),
        ))
    }

    /// Generates a random key, writes it to a new file at `path` (64 hex
    /// characters and a newline, mode 0600 on unix, synced to disk) and
    /// returns the sealer. Refuses to overwrite an existing file.
    pub fn generate_key_file(path: impl AsRef<Path>) -> Result<SoftwareSealer, SealError> {
        let path = path.as_ref();
        let mut key = Zeroizing::new([0u8; 32]);
        random_bytes(key.as_mut_slice())?;
        let mut file = create_private(path).map_err(|e| {
            if e.kind() == ErrorKind::AlreadyExists {
                SealError::KeyFileExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
        let mut text = Zeroizing::new([0u8; 65]);
        // 32 bytes encode to exactly 64 hex characters: cannot fail.
        hex::encode_to_slice(key.as_slice(), &mut text[..64]).map_err(|e| {
            SealError::BadKeyFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        text[64] = b'\n';
        let written = file
            .write_all(text.as_slice())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(io_err(path)(e));
        }
        sync_parent(path);
        tracing::info!(path = %path.display(), "generated a new sealing key file");
        Ok(SoftwareSealer::from_key(
            &key,
            &format!("key file {}", path.display()),
        ))
    }

    /// Derives the key from a passphrase with argon2id and the default
    /// [`KdfParams`]; see [`SoftwareSealer::from_passphrase_with_params`].
    pub fn from_passphrase(
        passphrase: &Zeroizing<String>,
        kdf_file: &Path,
    ) -> Result<SoftwareSealer, SealError> {
        SoftwareSealer::from_passphrase_with_params(passphrase, kdf_file, KdfParams::default())
    }

    /// Derives the key from a passphrase with argon2id.
    ///
    /// `kdf_file` holds the random 16-byte salt, the argon2id parameters and a
    /// check value (SHA-256 of a domain tag and the derived key) as a small
    /// text file. On first use it is created (mode 0600, atomically, never
    /// overwritten) with a fresh salt and `params`; afterwards the parameters
    /// in the file are used and `params` is ignored, and a passphrase that
    /// does not match the check value is refused with
    /// [`SealError::WrongPassphrase`]. A bare 16-byte salt file is also
    /// accepted (then `params` are used and a wrong passphrase only shows up
    /// as [`SealError::Tampered`] when opening).
    ///
    /// The passphrase must be 8 to 1024 bytes.
    pub fn from_passphrase_with_params(
        passphrase: &Zeroizing<String>,
        kdf_file: &Path,
        params: KdfParams,
    ) -> Result<SoftwareSealer, SealError> {
        let pass = passphrase.as_bytes();
        if pass.len() < MIN_PASSPHRASE || pass.len() > MAX_PASSPHRASE {
            return Err(SealError::WeakPassphrase {
                reason: format!(
                    "must be {MIN_PASSPHRASE} to {MAX_PASSPHRASE} bytes, got {}",
                    pass.len()
                ),
            });
        }
        params.check().map_err(|reason| SealError::Kdf { reason })?;
        let origin = format!("argon2id passphrase, KDF file {}", kdf_file.display());
        let bad = |reason: String| SealError::BadKdfFile {
            path: kdf_file.to_path_buf(),
            reason,
        };

        match open_regular(kdf_file) {
            Err(OpenRegular::NotRegular) => Err(bad("not a regular file".into())),
            Ok(mut file) => {
                let (buf, len) = read_bounded::<MAX_KDF_FILE>(&mut file, kdf_file)?
                    .ok_or_else(|| bad(format!("larger than {MAX_KDF_FILE} bytes")))?;
                let kdf = KdfFile::parse(&buf[..len], params).map_err(bad)?;
                let strong = KdfParams::default();
                if kdf.params.m_cost_kib < strong.m_cost_kib || kdf.params.t_cost < strong.t_cost {
                    tracing::warn!(path = %kdf_file.display(), params = ?kdf.params, "weak argon2id parameters in the KDF file");
                }
                let key = derive_key(pass, &kdf.salt, kdf.params)?;
                if let Some(expected) = kdf.check {
                    if !ct_eq(&kdf_check_value(&key), &expected) {
                        return Err(SealError::WrongPassphrase {
                            path: kdf_file.to_path_buf(),
                        });
                    }
                }
                Ok(SoftwareSealer::from_key(&key, &origin))
            }
            Err(OpenRegular::Io(e)) if e.kind() == ErrorKind::NotFound => {
                let mut salt = [0u8; SALT_LEN];
                random_bytes(&mut salt)?;
                let key = derive_key(pass, &salt, params)?;
                let kdf = KdfFile {
                    params,
                    salt,
                    check: Some(kdf_check_value(&key)),
                };
                if write_new_atomically(kdf_file, kdf.encode().as_bytes())? {
                    tracing::info!(path = %kdf_file.display(), "created passphrase KDF file");
                    Ok(SoftwareSealer::from_key(&key, &origin))
                } else {
                    // Another process created it meanwhile: use theirs.
                    SoftwareSealer::from_passphrase_with_params(passphrase, kdf_file, params)
                }
            }
            Err(OpenRegular::Io(e)) => Err(io_err(kdf_file)(e)),
        }
    }
}

enum OpenRegular {
    Io(std::io::Error),
    NotRegular,
}

/// Opens a file for reading only if it is a regular file (checked before
/// opening, so a FIFO or device cannot make the open block, and again after).
fn open_regular(path: &Path) -> Result<File, OpenRegular> {
    let meta = std::fs::metadata(path).map_err(OpenRegular::Io)?;
    if !meta.is_file() {
        return Err(OpenRegular::NotRegular);
    }
    let file = File::open(path).map_err(OpenRegular::Io)?;
    if !file.metadata().map_err(OpenRegular::Io)?.is_file() {
        return Err(OpenRegular::NotRegular);
    }
    Ok(file)
}

/// Writes `contents` to `path` only if `path` does not exist, so that a crash
/// never leaves a partial file: write a temporary file, sync, hard-link it
/// into place. Returns `false` if `path` appeared meanwhile.
fn write_new_atomically(path: &Path, contents: &[u8]) -> Result<bool, SealError> {
    let mut suffix = [0u8; 8];
    random_bytes(&mut suffix)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut f = create_private(&tmp).map_err(io_err(&tmp))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(path)(e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    sync_parent(path);
    result
}

impl Sealer for SoftwareSealer {
    fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        aad.check_plaintext_len(plaintext.len())?;
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        // Capacity for the whole blob up front: no reallocation can leave a
        // copy of the plaintext behind; the buffer is zeroized on error.
        let mut buf = Zeroizing::new(Vec::with_capacity(SEAL_OVERHEAD + plaintext.len()));
        buf.push(SEALED_FORMAT_V1);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                &XNonce::from(nonce),
                &aad.canonical_bytes(),
                &mut buf[HEADER_LEN..],
            )
            .map_err(|_| SealError::Backend {
                backend: self.describe(),
                reason: format!("encrypting {} `{}` failed", aad.object, aad.id),
            })?;
        buf.extend_from_slice(&tag);
        Ok(std::mem::take(&mut *buf))
    }

    fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let malformed = |reason: String| SealError::Malformed {
            object: aad.object,
            id: aad.id.clone(),
            reason,
        };
        if sealed.len() < SEAL_OVERHEAD {
            return Err(malformed(format!(
                "truncated: {} bytes, at least {SEAL_OVERHEAD} expected",
                sealed.len()
            )));
        }
        if sealed.len() > MAX_SECRET_LEN + SEAL_OVERHEAD {
            return Err(malformed(format!("{} bytes is too large", sealed.len())));
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (version, nonce) = header.split_at(1);
        if version != [SEALED_FORMAT_V1] {
            return Err(malformed(format!(
                "unknown sealed format version {}",
                version.first().copied().unwrap_or_default()
            )));
        }
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let (Ok(nonce), Ok(tag)) = (
            <[u8; NONCE_LEN]>::try_from(nonce),
            <[u8; TAG_LEN]>::try_from(tag),
        ) else {
            return Err(malformed("bad header".into()));
        };
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        self.cipher
            .decrypt_in_place_detached(
                &XNonce::from(nonce),
                &aad.canonical_bytes(),
                buf.as_mut_slice(),
                &Tag::from(tag),
            )
            .map_err(|_| SealError::Tampered {
                object: aad.object,
                id: aad.id.clone(),
            })?;
        Ok(buf)
    }

    fn describe(&self) -> String {
        format!("software XChaCha20-Poly1305 ({})", self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_encoding_is_injective_on_boundaries() {
        let a = Aad::new("ab", ObjectType::AuxInfo, "c", 1);
        let b = Aad::new("a", ObjectType::AuxInfo, "bc", 1);
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let mut expected = AAD_DOMAIN.to_vec();
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(b"aux-info");
        expected.extend_from_slice(&[0, 0, 0, 1]);
        expected.extend_from_slice(b"c");
        expected.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(a.canonical_bytes(), expected);
    }

    #[test]
    fn object_tags_are_stable_and_distinct() {
        // The tags are bound into every sealed blob: changing one makes
        // every blob of its kind unreadable.
        let all = [
            (ObjectType::EcdsaShare, "ecdsa-share"),
            (ObjectType::EddsaShare, "eddsa-share"),
            (ObjectType::AuxInfo, "aux-info"),
            (ObjectType::Presignature, "presignature"),
            (ObjectType::SafePrimes, "safe-primes"),
            (ObjectType::Backup, "backup"),
            (ObjectType::CustomerAuth, "customer-auth"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (object, tag) in all {
            // Every variant is listed: this match stops compiling otherwise.
            match object {
                ObjectType::EcdsaShare
                | ObjectType::EddsaShare
                | ObjectType::AuxInfo
                | ObjectType::Presignature
                | ObjectType::SafePrimes
                | ObjectType::Backup
                | ObjectType::CustomerAuth => {}
            }
            assert_eq!(object.tag(), tag);
            assert_eq!(object.to_string(), tag);
            assert!(seen.insert(tag), "{tag} twice");
        }
    }

    #[test]
    fn kdf_file_round_trip() {
        let f = KdfFile {
            params: KdfParams::default(),
            salt: [7; SALT_LEN],
            check: Some([9; 32]),
        };
        let parsed =
            KdfFile::parse(f.encode().as_bytes(), KdfParams::insecure_for_tests()).expect("parse");
        assert_eq!(parsed.params, f.params);
        assert_eq!(parsed.salt, f.salt);
        assert_eq!(parsed.check, f.check);
        assert!(KdfFile::parse(b"garbage", KdfParams::default()).is_err());
        let huge = f
            .encode()
            .replace("m_cost_kib 65536", "m_cost_kib 4294967295");
        assert!(KdfFile::parse(huge.as_bytes(), KdfParams::default()).is_err());
    }
}
