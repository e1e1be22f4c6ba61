//! Webhooks (Standard Webhooks 1.0): a merchant's endpoints, and the
//! delivery of the events its objects' changes write to the outbox
//! ([`delivery`]).
//!
//! Each endpoint signs with its own secret: `v1` (HMAC-SHA256, a `whsec_`
//! secret shown to the merchant once) or `v1a` (Ed25519; the merchant gets
//! the `whpk_` public key). Rotating the secret keeps the old one signing
//! too, as a second signature, for the overlap.

pub mod delivery;

use keyfold_proto::api::{
    CreateWebhookRequest, RotateWebhookSecret, WebhookDeliveryInfo, WebhookDeliveryList,
    WebhookEndpointInfo, WebhookEndpointList, WebhookSecret,
};
use keyfold_store::{EndpointRow, NewEndpoint};
use keyfold_webhooks::sign::{Secret, SigningKey};
use zeroize::Zeroizing;

use crate::core::Coordinator;
use crate::service::{Caller, CoordinatorApi, ServiceError, Tenant};

/// Default overlap of a secret rotation, seconds.
pub const DEFAULT_SECRET_OVERLAP_SECS: u32 = 86_400;

/// A fresh event id (`msg_...`): the `webhook-id` of its deliveries.
pub fn new_event_id() -> String {
    keyfold_webhooks::sign::new_message_id()
}

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

fn merchant_of(caller: &Caller) -> Result<String, ServiceError> {
    match caller.tenant() {
        Tenant::Merchant(m) => Ok(m),
        Tenant::Operator => Err(bad(
            "webhook endpoints belong to a merchant: call with the merchant's API key",
        )),
    }
}

/// The API view of an endpoint.
pub fn endpoint_info(e: &EndpointRow) -> WebhookEndpointInfo {
    let public_key = (e.scheme == "v1a")
        .then(|| SigningKey::parse(&e.secret).ok().map(|k| k.public_key()))
        .flatten();
    WebhookEndpointInfo {
        endpoint_id: e.endpoint_id.clone(),
        url: e.url.clone(),
        filters: e.filters.clone(),
        signature: e.scheme.clone(),
        public_key,
        disabled_at: e.disabled_at,
        disabled_reason: e.disabled_reason.clone(),
        failures: e.failures,
        created_at: e.created_at,
    }
}

/// A new secret for `scheme`: what is stored, and what the merchant is
/// shown (`None` for `v1a`, whose public key is in the endpoint's view).
fn new_secret(scheme: &str) -> Result<(Zeroizing<String>, Option<String>), ServiceError> {
    match scheme {
        "v1" => {
            let s = Secret::generate().to_string();
            let shown = s.to_string();
            Ok((s, Some(shown)))
        }
        "v1a" => Ok((SigningKey::generate().to_string(), None)),
        other => Err(bad(format!(
            "signature must be \"v1\" (HMAC-SHA256) or \"v1a\" (Ed25519), not {:?}",
            other.chars().take(16).collect::<String>()
        ))),
    }
}

fn check_filters(filters: &[String]) -> Result<(), ServiceError> {
    if filters.is_empty() {
        return Err(bad("filters: give at least one, e.g. [\"order.*\"]"));
    }
    if filters.len() > keyfold_webhooks::filter::MAX_FILTERS {
        return Err(bad(format!(
            "filters: at most {}",
            keyfold_webhooks::filter::MAX_FILTERS
        )));
    }
    for f in filters {
        keyfold_webhooks::filter::parse_filter(f).map_err(|e| bad(format!("filters: {e}")))?;
    }
    Ok(())
}

impl Coordinator {
    /// `POST /v1/webhooks`.
    pub(crate) async fn create_webhook(
        &self,
        caller: Caller,
        req: CreateWebhookRequest,
    ) -> Result<WebhookSecret, ServiceError> {
        let merchant = merchant_of(&caller)?;
        let url = keyfold_webhooks::target::parse_endpoint_url(&req.url)
            .map_err(|e| bad(format!("url: {e}")))?;
        check_filters(&req.filters)?;
        let scheme = req.signature.unwrap_or_else(|| "v1".into());
        let (secret, shown) = new_secret(&scheme)?;
        let mut raw = [0u8; 8];
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let new = NewEndpoint {
            endpoint_id: format!("we_{}", hex::encode(raw)),
            merchant_id: merchant,
            url: url.to_string(),
            filters: req.filters,
            scheme,
            secret,
        };
        let now = self.now_unix();
        let row = self
            .store_call(move |s| s.create_endpoint(&new, now))
            .await?;
        tracing::info!(merchant = %row.merchant_id, endpoint = %row.endpoint_id, "webhook endpoint created");
        Ok(WebhookSecret {
            endpoint: endpoint_info(&row),
            secret: shown,
        })
    }

    async fn endpoint(&self, merchant: String, id: String) -> Result<EndpointRow, ServiceError> {
        let shown = id.clone();
        self.read(move |s| s.get_endpoint(&merchant, &id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no webhook endpoint {shown}")))
    }

    /// `GET /v1/webhooks`.
    pub(crate) async fn list_webhooks(
        &self,
        caller: Caller,
    ) -> Result<WebhookEndpointList, ServiceError> {
        let merchant = merchant_of(&caller)?;
        let rows = self.read(move |s| s.list_endpoints(&merchant)).await?;
        Ok(WebhookEndpointList {
            endpoints: rows.iter().map(endpoint_info).collect(),
        })
    }

    /// `GET /v1/webhooks/{id}`.
    pub(crate) async fn get_webhook(
        &self,
        caller: Caller,
        id: String,
    ) -> Result<WebhookEndpointInfo, ServiceError> {
        let merchant = merchant_of(&caller)?;
        Ok(endpoint_info(&self.endpoint(merchant, id).await?))
    }

    /// `POST /v1/webhooks/{id}/rotate`.
    pub(crate) async fn rotate_webhook(
        &self,
        caller: Caller,
        id: String,
        req: RotateWebhookSecret,
    ) -> Result<WebhookSecret, ServiceError> {
        let merchant = merchant_of(&caller)?;
        let row = self.endpoint(merchant.clone(), id.clone()).await?;
        let (secret, shown) = new_secret(&row.scheme)?;
        let until = self.now_unix().saturating_add(i64::from(
            req.overlap_secs.unwrap_or(DEFAULT_SECRET_OVERLAP_SECS),
        ));
        let (m, i) = (merchant.clone(), id.clone());
        self.read(move |s| s.rotate_endpoint_secret(&m, &i, &secret, until))
            .await?;
        let row = self.endpoint(merchant, id).await?;
        Ok(WebhookSecret {
            endpoint: endpoint_info(&row),
            secret: shown,
        })
    }

    /// `POST /v1/webhooks/{id}/enable` and `/disable`.
    pub(crate) async fn set_webhook_enabled(
        &self,
        caller: Caller,
        id: String,
        enabled: bool,
    ) -> Result<WebhookEndpointInfo, ServiceError> {
        let merchant = merchant_of(&caller)?;
        self.endpoint(merchant.clone(), id.clone()).await?;
        let now = self.now_unix();
        let (m, i) = (merchant.clone(), id.clone());
        self.read(move |s| s.set_endpoint_enabled(&m, &i, enabled, now))
            .await?;
        Ok(endpoint_info(&self.endpoint(merchant, id).await?))
    }

    /// `GET /v1/webhooks/{id}/deliveries`.
    pub(crate) async fn list_webhook_deliveries(
        &self,
        caller: Caller,
        id: String,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<WebhookDeliveryList, ServiceError> {
        let merchant = merchant_of(&caller)?;
        self.endpoint(merchant.clone(), id.clone()).await?;
        let before = crate::requests::view::parse_cursor(cursor.as_deref())?;
        let limit = limit.unwrap_or(100).clamp(1, 500);
        let rows = self
            .read(move |s| s.list_deliveries(&merchant, &id, before, limit + 1))
            .await?;
        let more = rows.len() > limit;
        let last = rows[..rows.len().min(limit)].last().map(|(seq, _)| *seq);
        Ok(WebhookDeliveryList {
            deliveries: rows
                .into_iter()
                .take(limit)
                .map(|(_, d)| WebhookDeliveryInfo {
                    next_attempt_at: (d.state == "pending").then_some(d.next_at),
                    event_id: d.event_id,
                    event_type: d.event_type,
                    state: d.state,
                    attempts: d.attempts,
                    last_status: d.last_status,
                    last_error: d.last_error,
                    delivered_at: d.delivered_at,
                    created_at: d.event_created_at,
                })
                .collect(),
            next_cursor: if more {
                last.map(|s| s.to_string())
            } else {
                None
            },
        })
    }

    /// `POST /v1/webhooks/{id}/deliveries/{event_id}/redeliver`.
    pub(crate) async fn redeliver_webhook(
        &self,
        caller: Caller,
        id: String,
        event_id: String,
    ) -> Result<(), ServiceError> {
        let merchant = merchant_of(&caller)?;
        self.endpoint(merchant.clone(), id.clone()).await?;
        let now = self.now_unix();
        self.store_call(move |s| s.redeliver(&merchant, &id, &event_id, now))
            .await
    }
}
