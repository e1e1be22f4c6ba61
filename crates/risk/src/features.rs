//! What the decision tree looks at: the features of one request, computed by
//! [`crate::RiskState::features`] from the state before the request is
//! observed. A `Features` value is plain data, so it can be logged with the
//! decision and an auditor can check `evaluate(tree, features)` on its own.

use serde::{Deserialize, Serialize};

use crate::input::{AuthMethod, CountryCode, KycTier};
use crate::windows::{Window, WindowTotal};

/// The entities activity is aggregated per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// The end customer (`context.customer_id`).
    Customer,
    /// The customer's device (`context.device_id`).
    Device,
    /// The destination address.
    Destination,
    /// The paying wallet.
    Wallet,
    /// The merchant (`payment.merchant`).
    Merchant,
}

impl EntityKind {
    /// Every kind.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Customer,
        EntityKind::Device,
        EntityKind::Destination,
        EntityKind::Wallet,
        EntityKind::Merchant,
    ];

    /// The name used in trees.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Customer => "customer",
            EntityKind::Device => "device",
            EntityKind::Destination => "destination",
            EntityKind::Wallet => "wallet",
            EntityKind::Merchant => "merchant",
        }
    }
}

/// One entity's activity as seen by a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityFeatures {
    /// The request names this entity (a request without a device has no
    /// device features: every count is 0 and no count condition holds).
    pub present: bool,
    /// Count and sum per window, in [`Window::ALL`] order, this request
    /// included; sums are in the request's asset.
    pub windows: [WindowTotal; 5],
    /// z-score of this hour's requests (this one included) against the
    /// entity's hourly baseline; 0 until the baseline has a day of history.
    pub rate_z: f64,
}

impl EntityFeatures {
    /// The count and sum in one window.
    pub fn window(&self, w: Window) -> WindowTotal {
        self.windows[w.index()]
    }
}

/// The features of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Request time as evaluated (never before the latest observed time).
    pub at: u64,
    /// The payment's chain.
    pub chain: String,
    /// The payment's asset.
    pub asset: String,
    /// The payment's amount, base units.
    pub amount: u128,
    /// The customer's activity.
    pub customer: EntityFeatures,
    /// The device's activity.
    pub device: EntityFeatures,
    /// The destination's activity (all customers).
    pub destination: EntityFeatures,
    /// The wallet's activity.
    pub wallet: EntityFeatures,
    /// The merchant's activity.
    pub merchant: EntityFeatures,
    /// The largest `rate_z` of the entities.
    pub rate_spike_z: f64,
    /// The amount's z-score against the customer's amounts in this asset
    /// (0 until the customer has paid 5 times in it).
    pub amount_z: f64,
    /// The amount divided by the customer's mean amount in this asset (0
    /// without that history).
    pub amount_ratio: f64,
    /// Amounts the customer paid before in this asset (saturated).
    pub amount_history: u32,
    /// The customer never paid this destination (among their last 256).
    pub first_destination: bool,
    /// The customer never used this device (among their last 32).
    pub first_device: bool,
    /// The request's country, if known.
    pub country: Option<CountryCode>,
    /// The country differs from the customer's previous one.
    pub country_changed: bool,
    /// The country changed sooner than the tree's `min_travel_secs`.
    pub impossible_travel: bool,
    /// The country is listed.
    pub listed_country: bool,
    /// The destination is listed.
    pub listed_destination: bool,
    /// The IP's block (/24, IPv6 /48: [`crate::ip_block`]) overlaps a
    /// listed range.
    pub listed_ip: bool,
    /// Refused device signatures in the last hour, the customer's or the
    /// device's, whichever is more.
    pub device_signature_refusals: u32,
    /// The customer's KYC tier.
    pub kyc_tier: KycTier,
    /// Authentication methods used, sorted and without duplicates.
    pub auth: Vec<AuthMethod>,
}

impl Features {
    /// One entity's features.
    pub fn entity(&self, kind: EntityKind) -> &EntityFeatures {
        match kind {
            EntityKind::Customer => &self.customer,
            EntityKind::Device => &self.device,
            EntityKind::Destination => &self.destination,
            EntityKind::Wallet => &self.wallet,
            EntityKind::Merchant => &self.merchant,
        }
    }

    /// Whether the request was authenticated with `m`.
    pub fn has_auth(&self, m: AuthMethod) -> bool {
        self.auth.contains(&m)
    }
}
