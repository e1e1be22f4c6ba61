//! The client context of a payout: checked at the API, pseudonymised, and
//! turned into the risk engine's input.
//!
//! Customer and device ids never reach the store, the audit log or the risk
//! engine as the merchant sent them: each becomes `HMAC-SHA256(key, kind ‖
//! 0 ‖ merchant ‖ 0 ‖ id)`, truncated to 16 bytes of hex with a prefix (`cu_`,
//! `dv_`). The engine only compares ids, so it needs nothing else; the key
//! stays with the coordinator, so a log reader cannot test guesses; and the
//! merchant is part of the input, so two merchants' customers named alike
//! never share windows (devices are scoped the same way).

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use keyfold_proto::api::PaymentClient;
use keyfold_risk::{ClientContext, CountryCode, KycTier, MAX_ID_BYTES};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::service::ServiceError;

/// The module data a payout's request carries for the risk engine (module
/// name [`CLIENT_DATA`]), as stored: pseudonyms, never raw ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutClient {
    /// The merchant the payout is for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
    /// The pseudonymised context (its `auth` is what the coordinator
    /// verified, its `ip` the /24 or /48 block).
    pub context: ClientContext,
    /// A device signature passed from a device still inside its delay
    /// (`[risk] new_device_delay_secs`): a step-up is then refused as
    /// `device_too_new`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub device_too_new: bool,
}

/// The name under which a payout's request carries its [`PayoutClient`].
pub const CLIENT_DATA: &str = "client";

/// The key of the pseudonyms.
pub struct PseudonymKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

impl PseudonymKey {
    /// A key from its bytes.
    pub fn new(bytes: [u8; 32]) -> PseudonymKey {
        PseudonymKey(Zeroizing::new(bytes))
    }

    /// The pseudonym of `id`, of kind `kind` (`cu`, `dv`), for `merchant`.
    pub fn pseudonym(&self, kind: &str, merchant: Option<&str>, id: &str) -> String {
        // A 32-byte key is always a valid HMAC key; the fallback never runs.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()) else {
            return format!("{kind}_unkeyed");
        };
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(merchant.unwrap_or("").as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{kind}_{}", hex::encode(&tag[..16]))
    }
}

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

/// Checks an id the merchant sent (`field` names it in the error).
pub(crate) fn check_id(field: &str, v: &str) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > MAX_ID_BYTES || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{field} must be 1..={MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks the API's client context, pseudonymises its ids and keeps only
/// the IP's block (`keyfold_risk::ip_block`). The authentication methods
/// are never taken from the client: they are set from what the
/// coordinator itself verified (`customers::authenticate_payment`).
pub fn check(
    client: &PaymentClient,
    merchant: Option<&str>,
    key: &PseudonymKey,
) -> Result<PayoutClient, ServiceError> {
    check_id("client.customer_id", &client.customer_id)?;
    if let Some(d) = &client.device_id {
        check_id("client.device_id", d)?;
    }
    if client.device_signature.is_some() && client.device_id.is_none() {
        return Err(bad(
            "client.device_signature needs client.device_id (the device that signed)".into(),
        ));
    }
    if let Some(code) = &client.totp {
        if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "client.totp must be the 6 to 8 digits of a one-time code".into(),
            ));
        }
    }
    let ip = client
        .ip
        .as_deref()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| bad(format!("client.ip {s:?} is not an IPv4 or IPv6 address")))
        })
        .transpose()?;
    let country = client
        .country
        .as_deref()
        .map(|c| {
            c.parse::<CountryCode>()
                .map_err(|e| bad(format!("client.country: {e}")))
        })
        .transpose()?;
    let kyc_tier = match client.kyc_tier.as_deref() {
        None | Some("none") => KycTier::None,
        Some("basic") => KycTier::Basic,
        Some("full") => KycTier::Full,
        Some(other) => {
            return Err(bad(format!(
                "client.kyc_tier {other:?} is not one of none, basic, full"
            )))
        }
    };
    Ok(PayoutClient {
        merchant: merchant.map(str::to_string),
        context: ClientContext {
            customer_id: Some(key.pseudonym("cu", merchant, &client.customer_id)),
            device_id: client
                .device_id
                .as_deref()
                .map(|d| key.pseudonym("dv", merchant, d)),
            ip: ip.map(keyfold_risk::ip_block),
            country,
            kyc_tier,
            auth: Vec::new(),
        },
        device_too_new: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> PaymentClient {
        PaymentClient {
            customer_id: "alice@example.com".into(),
            device_id: Some("iphone-1".into()),
            ip: Some("203.0.113.7".into()),
            country: Some("DE".into()),
            kyc_tier: Some("basic".into()),
            device_signature: None,
            totp: None,
            password: None,
        }
    }

    #[test]
    fn ids_are_pseudonymised_per_merchant_and_key() {
        let k = PseudonymKey::new([1; 32]);
        let a = check(&client(), Some("shop"), &k).unwrap_or_else(|e| panic!("{e}"));
        let cu = a.context.customer_id.clone().unwrap_or_default();
        assert!(cu.starts_with("cu_") && cu.len() == 35, "{cu}");
        assert!(!cu.contains("alice"));
        // Same input, same pseudonym: windows follow the customer.
        let again = check(&client(), Some("shop"), &k).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.context.customer_id, a.context.customer_id);
        // Another merchant or another key: unrelated.
        let other = check(&client(), Some("other"), &k).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(other.context.customer_id, a.context.customer_id);
        let k2 = PseudonymKey::new([2; 32]);
        let rekeyed = check(&client(), Some("shop"), &k2).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(rekeyed.context.customer_id, a.context.customer_id);
        assert_eq!(a.context.kyc_tier, KycTier::Basic);
        assert!(a.context.auth.is_empty());
    }

    #[test]
    fn only_the_ip_block_is_kept() {
        let k = PseudonymKey::new([1; 32]);
        let mut c = client();
        let a = check(&c, None, &k).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.context.ip, Some("203.0.113.0".parse().unwrap()));
        c.ip = Some("2001:db8:1234:5678::1".into());
        let b = check(&c, None, &k).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.context.ip, Some("2001:db8:1234::".parse().unwrap()));
    }

    #[test]
    fn proofs_are_checked_for_shape_and_never_kept() {
        let k = PseudonymKey::new([1; 32]);
        let mut c = client();
        c.device_id = None;
        c.device_signature = Some(keyfold_proto::api::DeviceProof {
            timestamp: 1,
            nonce: "00".repeat(16),
            signature: "00".repeat(64),
        });
        match check(&c, None, &k) {
            Err(ServiceError::BadRequest(m)) => assert!(m.contains("device_id"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut c = client();
        c.totp = Some("12ab56".into());
        match check(&c, None, &k) {
            Err(ServiceError::BadRequest(m)) => assert!(m.contains("client.totp"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut c = client();
        c.totp = Some("123456".into());
        c.password = Some("hunter2".into());
        let kept = check(&c, None, &k).unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&kept).unwrap_or_default();
        assert!(
            !json.contains("123456") && !json.contains("hunter2"),
            "{json}"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("123456") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn bad_fields_are_refused_naming_the_field() {
        let k = PseudonymKey::new([1; 32]);
        for (mutate, field) in [
            (
                Box::new(|c: &mut PaymentClient| c.customer_id.clear())
                    as Box<dyn Fn(&mut PaymentClient)>,
                "customer_id",
            ),
            (
                Box::new(|c: &mut PaymentClient| c.device_id = Some("x".repeat(129))),
                "device_id",
            ),
            (
                Box::new(|c: &mut PaymentClient| c.ip = Some("300.1.1.1".into())),
                "client.ip",
            ),
            (
                Box::new(|c: &mut PaymentClient| c.country = Some("germany".into())),
                "client.country",
            ),
            (
                Box::new(|c: &mut PaymentClient| c.kyc_tier = Some("gold".into())),
                "kyc_tier",
            ),
        ] {
            let mut c = client();
            mutate(&mut c);
            match check(&c, None, &k) {
                Err(ServiceError::BadRequest(m)) => assert!(m.contains(field), "{m}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_key_is_redacted_in_debug() {
        assert_eq!(
            format!("{:?}", PseudonymKey::new([9; 32])),
            "PseudonymKey(<redacted>)"
        );
    }
}
