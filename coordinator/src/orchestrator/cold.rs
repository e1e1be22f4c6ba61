//! Cold-tier wallets: keys generated inside the coordinator's HSM that never
//! leave it (`keyfold-hsm`), offered through the same API as the threshold
//! (hot) wallets and signed only after the policy allows the request with
//! `tier = "cold"`.
//!
//! A cold key is recorded in the coordinator's key table with the marker
//! group [`COLD_GROUP`] (threshold keys have 32-hex-digit group ids), one
//! participant `hsm`, `t = n = 1`. Its HSM object label is its key id.

use keyfold_hsm::{ColdCurve, ColdKeys, HashAlg as HsmHash};
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_proto::api::{KeyInfo, SignMode, SignResult};
use keyfold_proto::Curve;
use keyfold_store::coordinator::KeyRecord;

use super::{internal, key_info, now, to_store, verify, Orchestrator};
use crate::service::ServiceError;

/// Group id that marks a cold key in the key table.
pub(crate) const COLD_GROUP: &str = "cold";
/// The single "participant" of a cold key.
pub(crate) const COLD_PARTICIPANT: &str = "hsm";

/// Whether a key record is a cold (HSM) key.
pub(crate) fn is_cold(record: &KeyRecord) -> bool {
    record.group_id == COLD_GROUP
}

fn hsm_error(e: keyfold_hsm::HsmError) -> ServiceError {
    ServiceError::Internal(format!("HSM: {e}"))
}

impl Orchestrator {
    fn cold_keys(&self) -> Result<&ColdKeys, ServiceError> {
        self.cold.as_ref().ok_or_else(|| {
            ServiceError::BadRequest(
                "no HSM is configured on the coordinator: cold wallets need an `[hsm]` section in its configuration"
                    .into(),
            )
        })
    }

    /// Generates a cold key inside the HSM and records it.
    pub(super) async fn create_cold(&self, curve: Curve) -> Result<KeyInfo, ServiceError> {
        let cold = self.cold_keys()?.clone();
        let hsm_curve = match curve {
            Curve::Secp256k1 => ColdCurve::Secp256k1,
            _ => ColdCurve::Ed25519,
        };
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let key_id = hex::encode(id);
        let label = key_id.clone();
        let key = tokio::task::spawn_blocking(move || cold.generate(&label, hsm_curve))
            .await
            .map_err(internal)?
            .map_err(hsm_error)?;
        let record = KeyRecord {
            key_id: key_id.clone(),
            curve: to_store(curve)?,
            t: 1,
            n: 1,
            public_key: key.public_key().to_vec(),
            chain_code: None,
            group_id: COLD_GROUP.into(),
            participants: vec![COLD_PARTICIPANT.into()],
            created_at: now(),
        };
        self.audit(vec![super::key_event(&record, "cold")])?;
        self.store.insert_key(record.clone()).map_err(internal)?;
        tracing::info!(key = %key_id, %curve, "cold key generated in the HSM");
        key_info(&record)
    }

    /// Signs `message` with a cold key in the HSM and verifies the signature
    /// independently (k256 / ed25519-dalek) before answering.
    pub(super) async fn sign_cold(
        &self,
        record: &KeyRecord,
        curve: Curve,
        request_id: &str,
        message: &[u8],
        hash: Option<HashAlg>,
    ) -> Result<(SignResult, keyfold_audit::Event), ServiceError> {
        let cold = self.cold_keys()?.clone();
        let label = record.key_id.clone();
        let msg = message.to_vec();
        let hsm_hash = match hash {
            Some(HashAlg::Keccak256) => Some(HsmHash::Keccak256),
            Some(_) => Some(HsmHash::Sha256),
            None => None,
        };
        let session_id = format!("hsm-{request_id}");
        // Recorded with its outcome: with the signature, or as aborted.
        let session = keyfold_audit::Event::SigningSession {
            request_id: request_id.to_string(),
            session_id: session_id.clone(),
            signers: vec![COLD_PARTICIPANT.into()],
            mode: keyfold_audit::SigningMode::Hsm,
        };
        let signed = tokio::task::spawn_blocking(move || {
            let key = cold.find(&label)?;
            match hsm_hash {
                Some(h) => key.sign_with_hash(&msg, h),
                None => key.sign(&msg),
            }
        })
        .await
        .map_err(internal)?
        .map_err(|e| ServiceError::SigningFailed(format!("HSM: {e}")))
        .and_then(|sig| {
            verify(curve, &record.public_key, message, hash, &sig).map_err(|e| {
                ServiceError::SigningFailed(format!("the HSM returned a bad signature: {e}"))
            })?;
            Ok(sig)
        });
        let sig = match signed {
            Ok(sig) => sig,
            Err(e) => {
                self.audit(vec![
                    session,
                    keyfold_audit::Event::Aborted {
                        request_id: request_id.to_string(),
                        session_id,
                        blamed: Some(COLD_PARTICIPANT.into()),
                        reason: e.to_string(),
                    },
                ])?;
                return Err(e);
            }
        };
        let result = SignResult {
            request_id: request_id.to_string(),
            key_id: record.key_id.clone(),
            curve,
            public_key: hex::encode(&record.public_key),
            message: hex::encode(message),
            hash,
            derivation_path: None,
            signature: hex::encode(sig),
            signers: vec![COLD_PARTICIPANT.into()],
            mode: SignMode::Hsm,
        };
        Ok((result, session))
    }
}
