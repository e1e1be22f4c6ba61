//! JSON types of the coordinator's REST API (documented in `docs/api.md`).

use keyfold_mpc::ecdsa::HashAlg;
use serde::{Deserialize, Serialize};

use crate::Curve;

/// `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// `secp256k1` or `ed25519`.
    pub curve: Curve,
    /// Signers needed to sign.
    pub t: u16,
    /// Signers holding a share.
    pub n: u16,
}

/// A key as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id (32 hex digits).
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// Threshold.
    pub t: u16,
    /// Parties.
    pub n: u16,
    /// Group public key, hex (33-byte compressed SEC1, or 32-byte Ed25519).
    pub public_key: String,
    /// BIP32 chain code, hex (secp256k1 keys).
    pub chain_code: Option<String>,
    /// Signer node ids by party index.
    pub participants: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `POST /v1/signatures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// Idempotency key chosen by the caller: retrying with the same id returns
    /// the first result and never signs twice.
    pub request_id: String,
    /// The key.
    pub key_id: String,
    /// The whole message, hex.
    pub message: String,
    /// ECDSA only: `sha256` (default) or `keccak256`.
    #[serde(default)]
    pub hash: Option<HashAlg>,
    /// ECDSA only: non-hardened path such as `m/0/1`.
    #[serde(default)]
    pub derivation_path: Option<String>,
}

/// How a signature was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignMode {
    /// One round from a stored presignature.
    Presignature,
    /// Full interactive signing.
    Full,
}

/// A finished signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The caller's request id.
    pub request_id: String,
    /// The key.
    pub key_id: String,
    /// The curve.
    pub curve: Curve,
    /// The key that verifies the signature (the child key when a path was given), hex.
    pub public_key: String,
    /// The message, hex.
    pub message: String,
    /// ECDSA hash.
    pub hash: Option<HashAlg>,
    /// ECDSA path.
    pub derivation_path: Option<String>,
    /// 64-byte signature, hex (`r || s`, low-S, for ECDSA).
    pub signature: String,
    /// Signer node ids that took part.
    pub signers: Vec<String>,
    /// Presignature or full signing.
    pub mode: SignMode,
}

/// Every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// The error.
    pub error: ErrorBody,
}

/// Body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (see `docs/api.md`).
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Every configured signer.
    pub signers: Vec<SignerHealth>,
    /// Keys known.
    pub keys: usize,
    /// Presignatures ready across all keys (the coordinator's index).
    #[serde(default)]
    pub presignatures: usize,
}

/// One signer as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerHealth {
    /// Node id.
    pub node: String,
    /// Whether it answered a status request just now.
    pub live: bool,
    /// Its error when not live.
    pub error: Option<String>,
    /// Safe-prime pairs ready, when live.
    pub primes_ready: Option<usize>,
    /// Safe-prime pairs being generated, when live.
    #[serde(default)]
    pub primes_generating: Option<usize>,
}
