//! The signer node's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SignerError;

/// A signer node's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    /// Node id: the DNS name in this node's certificate.
    pub node_id: String,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Where the store (SQLite) and logs live.
    pub data_dir: PathBuf,
    /// Certificates.
    pub tls: TlsFiles,
    /// How shares are sealed at rest.
    pub sealing: Sealing,
    /// The policy document (TOML) this node enforces from its first start.
    /// Later versions arrive as updates signed by the admin quorum of the
    /// policy in force and are kept in the store; see `docs/policy.md`.
    pub policy_file: PathBuf,
    /// BENCH ONLY (feature `bench-unguarded`): `[bench] unguarded = true`
    /// skips this node's policy check and audit log, to measure their cost.
    #[cfg(feature = "bench-unguarded")]
    #[serde(default)]
    pub bench: BenchSwitches,
    /// Timeouts and pool sizes.
    #[serde(default)]
    pub tuning: Tuning,
}

/// BENCH ONLY switches (feature `bench-unguarded`, never in a deployed build).
#[cfg(feature = "bench-unguarded")]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSwitches {
    /// Sign without this node's policy check and without its audit entry
    /// (the contribution is still stored durably).
    #[serde(default)]
    pub unguarded: bool,
}

/// PEM files of the node's TLS identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// The sealing backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sealing {
    /// XChaCha20-Poly1305 under a 32-byte key kept in a file (mode 0600).
    KeyFile {
        /// The key file; created on first start if missing.
        key_file: PathBuf,
    },
    /// XChaCha20-Poly1305 under a key derived (argon2id) from a passphrase read
    /// from an environment variable, never from the file or the command line.
    Passphrase {
        /// Name of the environment variable holding the passphrase.
        env: String,
        /// File holding the random salt; created on first start.
        salt_file: PathBuf,
    },
    /// AES-256-GCM inside an HSM reached through PKCS#11, under a
    /// non-extractable key that never leaves it (`keyfold-hsm`).
    Pkcs11 {
        /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
        module: PathBuf,
        /// The token's label (tokens are found by label, never by slot).
        token_label: String,
        /// Where the user PIN comes from: `{ env = "VAR" }` or
        /// `{ file = "/path" }` (mode 0600); never the configuration itself.
        pin: keyfold_hsm::PinSource,
        /// Label of the sealing key on the token; created on the node's
        /// first start, required afterwards.
        #[serde(default = "default_seal_key")]
        key_label: String,
    },
}

fn default_seal_key() -> String {
    keyfold_hsm::DEFAULT_SEAL_KEY_LABEL.to_string()
}

/// Timeouts and pool sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// Longest wait for a peer's message in signing and keygen rounds, seconds.
    pub round_timeout_secs: u64,
    /// Longest wait for a peer's message in aux-info rounds, seconds (they do
    /// seconds of proofs per round).
    pub aux_round_timeout_secs: u64,
    /// Safe-prime pairs kept ready for the next signer group.
    pub primes_ready: usize,
    /// Threads generating safe primes in the background.
    pub prime_threads: usize,
    /// Seconds between signed checkpoints of the audit log (when it grew).
    pub audit_checkpoint_secs: u64,
    /// Threads computing presignatures, at the lowest CPU priority.
    pub presign_workers: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            round_timeout_secs: 30,
            aux_round_timeout_secs: 300,
            primes_ready: 1,
            prime_threads: 1,
            audit_checkpoint_secs: 5,
            presign_workers: 1,
        }
    }
}

impl Tuning {
    /// Round deadline for signing and keygen.
    pub fn round_timeout(&self) -> Duration {
        Duration::from_secs(self.round_timeout_secs.max(1))
    }

    /// Round deadline for aux info.
    pub fn aux_round_timeout(&self) -> Duration {
        Duration::from_secs(self.aux_round_timeout_secs.max(1))
    }
}

impl SignerConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, SignerError> {
        let text = std::fs::read_to_string(path).map_err(|e| SignerError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| SignerError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
