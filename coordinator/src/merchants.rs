//! Merchants and their API keys, as the operator manages them through the
//! API (`/v1/merchants...`); `keyfold merchant` does the same on the store.
//! The tenancy itself (who sees what) is in the store and the API layer.

use keyfold_proto::api::{
    CreateMerchantRequest, IssueMerchantKeyRequest, IssuedMerchantKey, MerchantInfo,
    MerchantKeyInfo, MerchantKeyList, MerchantList, MerchantSettings, MerchantSettingsResult,
    RotateMerchantKeyRequest,
};
use keyfold_store::coordinator_merchants::MerchantKeyMeta;
use keyfold_store::{IssuedKey, Merchant, NewMerchant, StoreError};

use crate::core::Coordinator;
use crate::service::{CoordinatorApi, ServiceError};

/// Default burst of a merchant's API key.
pub const DEFAULT_RATE_BURST: u32 = 50;
/// Default sustained requests per second of a merchant's API key.
pub const DEFAULT_RATE_PER_SEC: u32 = 20;
/// Default overlap of a key rotation: a day.
pub const DEFAULT_ROTATION_OVERLAP_SECS: u32 = 86_400;

/// The API view of a merchant.
pub fn merchant_info(m: &Merchant) -> MerchantInfo {
    MerchantInfo {
        merchant_id: m.merchant_id.clone(),
        name: m.name.clone(),
        rate_burst: m.rate_burst,
        rate_per_sec: m.rate_per_sec,
        request_signing: m.signing.kind().to_string(),
        created_at: m.created_at,
        disabled_at: m.disabled_at,
        collection_key: m.collection_key_id.clone(),
        sandbox_of: m.sandbox_of().map(str::to_string),
    }
}

/// The API view of a key.
pub fn key_info(k: &MerchantKeyMeta) -> MerchantKeyInfo {
    MerchantKeyInfo {
        key_id: k.key_id.clone(),
        merchant_id: k.merchant_id.clone(),
        client: k.client.clone(),
        label: k.label.clone(),
        scopes: k.scopes.clone(),
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        sandbox: k.is_sandbox(),
    }
}

fn issued(k: IssuedKey) -> IssuedMerchantKey {
    IssuedMerchantKey {
        key: key_info(&k.meta),
        api_key: k.secret.to_string(),
    }
}

/// Store errors of merchant operations as the API's: the caller's input
/// or a missing merchant are theirs to fix.
fn store_err(e: StoreError) -> ServiceError {
    match e {
        StoreError::InvalidInput { field, reason } => {
            ServiceError::BadRequest(format!("{field}: {reason}"))
        }
        StoreError::NotFound { what, id } => ServiceError::NotFound(format!("no {what} {id}")),
        StoreError::Conflict { what, id } => {
            ServiceError::Conflict(format!("{what} {id} exists already"))
        }
        other => ServiceError::Internal(other.to_string()),
    }
}

impl Coordinator {
    /// A store call whose refusals are the caller's to fix (bad input, not
    /// found, conflict) rather than internal errors.
    pub(crate) async fn store_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&keyfold_store::CoordinatorStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(store_err)
    }

    async fn merchant(&self, merchant_id: String) -> Result<Merchant, ServiceError> {
        let id = merchant_id.clone();
        self.store_call(move |s| s.get_merchant(&id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no merchant {merchant_id}")))
    }

    pub(crate) async fn create_merchant(
        &self,
        req: CreateMerchantRequest,
    ) -> Result<MerchantInfo, ServiceError> {
        let now = self.now_unix();
        let new = NewMerchant {
            merchant_id: req.merchant_id,
            name: req.name,
            rate_burst: req.rate_burst.unwrap_or(DEFAULT_RATE_BURST),
            rate_per_sec: req.rate_per_sec.unwrap_or(DEFAULT_RATE_PER_SEC),
        };
        let m = self
            .store_call(move |s| s.create_merchant(&new, now))
            .await?;
        Ok(merchant_info(&m))
    }

    pub(crate) async fn list_merchants(&self) -> Result<MerchantList, ServiceError> {
        let all = self.store_call(|s| s.list_merchants()).await?;
        Ok(MerchantList {
            merchants: all.iter().map(merchant_info).collect(),
        })
    }

    pub(crate) async fn merchant_settings(
        &self,
        merchant_id: String,
        set: MerchantSettings,
    ) -> Result<MerchantSettingsResult, ServiceError> {
        // Parsed before anything changes, so a bad field changes nothing.
        let public_key = match (&set.request_signing, &set.ed25519_public_key) {
            (Some(kind), Some(hexkey)) if kind == "ed25519" => {
                let bytes = hex::decode(hexkey)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                let pk = bytes
                    .filter(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_ok())
                    .ok_or_else(|| {
                        ServiceError::BadRequest(
                            "ed25519_public_key: 64 hex digits of a valid Ed25519 public key"
                                .into(),
                        )
                    })?;
                Some(pk)
            }
            (Some(kind), None) if kind == "ed25519" => {
                return Err(ServiceError::BadRequest(
                    "request_signing ed25519 needs ed25519_public_key".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(ServiceError::BadRequest(
                    "ed25519_public_key goes with request_signing \"ed25519\"".into(),
                ))
            }
            _ => None,
        };
        let current = self.merchant(merchant_id.clone()).await?;
        if let Some(key_id) = &set.collection_key {
            // An ECDSA hot key with a chain code, the merchant's own or an
            // operator's (never another merchant's).
            let key = self.key(key_id)?;
            if key.curve != keyfold_store::Curve::Secp256k1 || crate::keys::is_cold(&key) {
                return Err(ServiceError::BadRequest(format!(
                    "collection_key {key_id} must be a hot secp256k1 key"
                )));
            }
            let id = key_id.clone();
            let owner = self.store_call(move |s| s.key_owner(&id)).await?;
            if owner.is_some_and(|o| o != merchant_id) {
                return Err(ServiceError::NotFound(format!("no key {key_id}")));
            }
        }
        let now = self.now_unix();
        let id = merchant_id.clone();
        let secret = self
            .store_call(move |s| {
                if set.rate_burst.is_some() || set.rate_per_sec.is_some() {
                    s.set_merchant_rate(
                        &id,
                        set.rate_burst.unwrap_or(current.rate_burst),
                        set.rate_per_sec.unwrap_or(current.rate_per_sec),
                    )?;
                }
                match set.disabled {
                    Some(true) => s.disable_merchant(&id, now)?,
                    Some(false) => s.enable_merchant(&id)?,
                    None => {}
                }
                if let Some(key_id) = &set.collection_key {
                    s.set_collection_key(&id, key_id)?;
                }
                match &set.request_signing {
                    Some(kind) => s.set_request_signing(&id, kind, public_key),
                    None => Ok(None),
                }
            })
            .await?;
        let merchant = self.merchant(merchant_id).await?;
        Ok(MerchantSettingsResult {
            merchant: merchant_info(&merchant),
            hmac_secret: secret.map(|s| s.to_string()),
        })
    }

    pub(crate) async fn issue_merchant_key(
        &self,
        merchant_id: String,
        req: IssueMerchantKeyRequest,
    ) -> Result<IssuedMerchantKey, ServiceError> {
        let now = self.now_unix();
        let k = self
            .store_call(move |s| {
                // A sandbox key goes to the merchant's sandbox twin (made
                // on its first one); keys issued on the twin's own id are
                // sandbox keys too.
                let target = if req.sandbox && !keyfold_store::is_sandbox_merchant(&merchant_id) {
                    s.sandbox_merchant(&merchant_id, now)?.merchant_id
                } else {
                    merchant_id
                };
                s.issue_merchant_key(&target, &req.label, &req.scopes, now, None)
            })
            .await?;
        Ok(issued(k))
    }

    pub(crate) async fn list_merchant_keys(
        &self,
        merchant_id: String,
    ) -> Result<MerchantKeyList, ServiceError> {
        self.merchant(merchant_id.clone()).await?;
        let keys = self
            .store_call(move |s| s.list_merchant_keys(&merchant_id))
            .await?;
        Ok(MerchantKeyList {
            keys: keys.iter().map(key_info).collect(),
        })
    }

    pub(crate) async fn rotate_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
        req: RotateMerchantKeyRequest,
    ) -> Result<IssuedMerchantKey, ServiceError> {
        let now = self.now_unix();
        let overlap = i64::from(req.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS));
        let k = self
            .store_call(move |s| s.rotate_merchant_key(&merchant_id, &key_id, now, overlap))
            .await?;
        Ok(issued(k))
    }

    pub(crate) async fn revoke_merchant_key(
        &self,
        merchant_id: String,
        key_id: String,
    ) -> Result<MerchantKeyInfo, ServiceError> {
        let now = self.now_unix();
        let k = self
            .store_call(move |s| {
                s.revoke_merchant_key(&merchant_id, &key_id, now)?;
                s.merchant_key(&merchant_id, &key_id)
            })
            .await?
            .ok_or_else(|| ServiceError::Internal("revoked key vanished".into()))?;
        Ok(key_info(&k))
    }
}
