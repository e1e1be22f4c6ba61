//! What a risk check is asked about: the payment, who asks for it and from
//! where, and when. Every string is bounded so that a hostile caller cannot
//! make the state grow without limit through one oversized id.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Longest id accepted (customer, device, wallet, merchant, destination,
/// chain, asset), in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Most authentication methods a request may list (there are three kinds;
/// duplicates are tolerated up to this bound).
pub const MAX_AUTH_METHODS: usize = 8;

/// Last supported request time (Unix seconds, about year 3331): bucket
/// indices are kept in 32 bits to keep each entity small.
pub const MAX_TIME: u64 = u32::MAX as u64 * 10 + 9;

/// An ISO 3166-1 alpha-2 country code: two uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only uppercase ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(CountryCode([*a, *b])),
            _ => Err(InputError::BadCountry {
                value: s.chars().take(16).collect(),
            }),
        }
    }
}

impl TryFrom<String> for CountryCode {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, InputError> {
        s.parse()
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.as_str().to_string()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far the customer's identity has been verified. Ordered: `None <
/// Basic < Full`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum KycTier {
    /// Not verified.
    #[default]
    None,
    /// Basic checks (e-mail, phone, name).
    Basic,
    /// Full identity verification.
    Full,
}

impl KycTier {
    /// The name used in trees and JSON.
    pub fn name(self) -> &'static str {
        match self {
            KycTier::None => "none",
            KycTier::Basic => "basic",
            KycTier::Full => "full",
        }
    }
}

/// An authentication method the customer used for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A signature by the customer's registered device key.
    DeviceSignature,
    /// A time-based one-time password.
    Totp,
    /// A password.
    Password,
}

impl AuthMethod {
    /// The name used in trees and JSON.
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::DeviceSignature => "device_signature",
            AuthMethod::Totp => "totp",
            AuthMethod::Password => "password",
        }
    }
}

/// The payment being assessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// Chain registry id (`base`, `solana`, ...).
    pub chain: String,
    /// Asset symbol as in the policy (`USDC`, `ETH`, ...).
    pub asset: String,
    /// Amount in the asset's base units.
    pub amount: u128,
    /// Destination address, in its canonical spelling.
    pub destination: String,
    /// Paying wallet (key id).
    pub wallet: String,
    /// Merchant on whose behalf the payment is made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<String>,
}

/// Who asks for the payment and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientContext {
    /// The end customer, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The customer's device, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The client's IP address, if known. The engine reads it only at
    /// block precision ([`ip_block`]: /24 for IPv4, /48 for IPv6), so the
    /// coordinator may pass (and log) just the block's network address
    /// and get the same features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Country the client is in (from the IP or the app), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<CountryCode>,
    /// The customer's verification tier.
    #[serde(default)]
    pub kyc_tier: KycTier,
    /// Authentication methods used for this request.
    #[serde(default)]
    pub auth: Vec<AuthMethod>,
}

/// One risk check: a payment, its context and its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRequest {
    /// The payment.
    pub payment: Payment,
    /// Who asks and from where.
    pub context: ClientContext,
    /// Request time, Unix seconds (an input: nothing here reads a clock).
    pub at: u64,
}

/// A destination as the engine compares it: an EVM-style `0x` hex address
/// in lower case (its checksum spelling, or none, names the same account,
/// so a listed address cannot be dodged by changing letter case, nor its
/// windows split), anything else (Solana's base58 is case-sensitive) as
/// given.
pub fn canonical_destination(d: &str) -> std::borrow::Cow<'_, str> {
    let hex = d
        .strip_prefix("0x")
        .or_else(|| d.strip_prefix("0X"))
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex && d.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(d.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(d)
    }
}

/// Prefix length at which the engine reads an IPv4 address.
pub const IPV4_BLOCK_PREFIX: u8 = 24;
/// Prefix length at which the engine reads an IPv6 address.
pub const IPV6_BLOCK_PREFIX: u8 = 48;

/// The network address of the block `ip` is in: its /24 for IPv4, its /48
/// for IPv6 (an IPv4-mapped IPv6 address is the IPv4 address it maps, and
/// gives an IPv4 block).
///
/// This is all of an IP the engine reads (the `listed_ip` feature), so a
/// request carrying `ip_block(ip)` gets the same features as one carrying
/// `ip`, and the audit log need not keep the full address of a customer:
/// a /24 or /48 is typically a network, not a household.
pub fn ip_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let mask = u32::MAX << (32 - u32::from(IPV4_BLOCK_PREFIX));
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - u32::from(IPV6_BLOCK_PREFIX));
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// The block of `ip` ([`ip_block`]) as a network.
pub(crate) fn ip_block_net(ip: IpAddr) -> IpNet {
    match ip_block(ip) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new_assert(v4, IPV4_BLOCK_PREFIX)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, IPV6_BLOCK_PREFIX)),
    }
}

/// Checks one id field: present ids are 1..=[`MAX_ID_BYTES`] bytes.
pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), InputError> {
    if value.is_empty() {
        return Err(InputError::Empty { field });
    }
    if value.len() > MAX_ID_BYTES {
        return Err(InputError::TooLong {
            field,
            len: value.len(),
            max: MAX_ID_BYTES,
        });
    }
    Ok(())
}

/// Checks a time: at most [`MAX_TIME`].
pub(crate) fn check_time(at: u64) -> Result<(), InputError> {
    if at > MAX_TIME {
        return Err(InputError::TimeOutOfRange { at, max: MAX_TIME });
    }
    Ok(())
}

impl RiskRequest {
    /// Checks every bound; [`crate::RiskState`] calls it before reading or
    /// changing anything.
    pub fn validate(&self) -> Result<(), InputError> {
        let p = &self.payment;
        check_id("payment.chain", &p.chain)?;
        check_id("payment.asset", &p.asset)?;
        check_id("payment.destination", &p.destination)?;
        check_id("payment.wallet", &p.wallet)?;
        if let Some(m) = &p.merchant {
            check_id("payment.merchant", m)?;
        }
        let c = &self.context;
        if let Some(id) = &c.customer_id {
            check_id("context.customer_id", id)?;
        }
        if let Some(id) = &c.device_id {
            check_id("context.device_id", id)?;
        }
        if c.auth.len() > MAX_AUTH_METHODS {
            return Err(InputError::TooManyAuthMethods {
                count: c.auth.len(),
                max: MAX_AUTH_METHODS,
            });
        }
        check_time(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RiskRequest {
        RiskRequest {
            payment: Payment {
                chain: "base".into(),
                asset: "USDC".into(),
                amount: 5,
                destination: "0xabc".into(),
                wallet: "hot-1".into(),
                merchant: None,
            },
            context: ClientContext::default(),
            at: 1_700_000_000,
        }
    }

    #[test]
    fn country_codes_are_two_uppercase_letters() {
        assert_eq!(
            "FR".parse::<CountryCode>().map(|c| c.to_string()),
            Ok("FR".into())
        );
        for bad in ["fr", "F", "FRA", "", "F1", "ÉÉ"] {
            assert!(bad.parse::<CountryCode>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<CountryCode>("\"de\"").is_err());
    }

    #[test]
    fn oversized_id_is_refused_naming_the_field() {
        let mut r = request();
        r.context.device_id = Some("d".repeat(MAX_ID_BYTES + 1));
        assert_eq!(
            r.validate(),
            Err(InputError::TooLong {
                field: "context.device_id",
                len: MAX_ID_BYTES + 1,
                max: MAX_ID_BYTES
            })
        );
        r.context.device_id = Some("d".repeat(MAX_ID_BYTES));
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn empty_destination_and_late_time_are_refused() {
        let mut r = request();
        r.payment.destination.clear();
        assert_eq!(
            r.validate(),
            Err(InputError::Empty {
                field: "payment.destination"
            })
        );
        let mut r = request();
        r.at = MAX_TIME + 1;
        assert!(matches!(
            r.validate(),
            Err(InputError::TimeOutOfRange { .. })
        ));
    }

    #[test]
    fn kyc_tier_is_ordered_and_snake_case() {
        assert!(KycTier::None < KycTier::Basic && KycTier::Basic < KycTier::Full);
        assert_eq!(
            serde_json::to_string(&KycTier::Full).ok().as_deref(),
            Some("\"full\"")
        );
        assert_eq!(
            serde_json::to_string(&AuthMethod::DeviceSignature)
                .ok()
                .as_deref(),
            Some("\"device_signature\"")
        );
    }
}
