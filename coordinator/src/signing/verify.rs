//! Every signature is verified before it is logged or released, with an
//! implementation independent of the protocol libraries: `k256` for ECDSA
//! (through keyfold-mpc's thin wrapper over it) and `ed25519-dalek` for
//! Ed25519; HD children are derived from the public key and chain code.

use keyfold_mpc::ecdsa::{self, DerivationPath, HashAlg};
use keyfold_mpc::eddsa;
use keyfold_proto::Curve;
use keyfold_store::KeyRecord;

use crate::service::ServiceError;

/// Verifies `sig` over `message` under `public_key`.
pub fn verify(
    curve: Curve,
    public_key: &[u8],
    message: &[u8],
    hash: Option<HashAlg>,
    sig: &[u8; 64],
) -> Result<(), String> {
    match curve {
        Curve::Secp256k1 => {
            let pk: [u8; 33] = public_key
                .try_into()
                .map_err(|_| "public key is not 33 bytes".to_string())?;
            ecdsa::Signature::from_bytes(sig).verify(&pk, message, hash.unwrap_or(HashAlg::Sha256))
        }
        _ => {
            let pk: [u8; 32] = public_key
                .try_into()
                .map_err(|_| "public key is not 32 bytes".to_string())?;
            eddsa::Signature::from_bytes(*sig).verify(&pk, message)
        }
    }
}

/// The public key of `key`'s non-hardened child at `path`.
pub fn derive_child(key: &KeyRecord, path: &DerivationPath) -> Result<Vec<u8>, ServiceError> {
    let chain = key
        .chain_code
        .as_ref()
        .ok_or_else(|| ServiceError::BadRequest("this key does not support derivation".into()))?;
    let pk: [u8; 33] = key
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::Internal("stored public key is not 33 bytes".into()))?;
    let chain: [u8; 32] = chain
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::Internal("stored chain code is not 32 bytes".into()))?;
    ecdsa::derive_public_key(&pk, &chain, path)
        .map(|k| k.to_vec())
        .map_err(|e| ServiceError::BadRequest(e.to_string()))
}
