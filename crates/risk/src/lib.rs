//! `keyfold-risk`: pure, deterministic risk features and decision tree.
//!
//! Like `keyfold-policy`, the same crate runs in the coordinator, in every
//! signer (which re-checks freezes) and in the auditor (which recomputes
//! decisions from the logged features). Nothing here reads the clock, the
//! network or the disk: time is an input.
//!
//! * [`RiskState`] remembers activity per customer, device, destination,
//!   wallet and merchant in bounded, O(1)-updated windows and baselines:
//!   [`RiskState::features`] reads them for a request (before it counts),
//!   [`RiskState::observe`] records the request after its decision,
//!   [`RiskState::record_refusal`] a refused device signature, and
//!   [`RiskState::prune`] drops idle entities.
//! * [`RiskTree::from_toml`] parses and validates a versioned decision tree:
//!   lists, scored rules over typed conditions, score thresholds.
//! * [`evaluate`] turns a tree and [`Features`] into a [`Decision`]: a score,
//!   the most severe action, and the reasons.
//! * [`SignedTree::verify`]: tree updates signed by the admin quorum of the
//!   policy in force, under their own domain separator.
//! * [`decide_step`]: one numbered step of the live engine, as the
//!   coordinator runs it and the auditor replays it; [`refusal_step`] the
//!   same for a refused device signature ([`RefusalInput`]), which shares
//!   the decisions' numbering.
//! * [`describe`]: each rule in plain words.
//! * [`SignedReview`] and [`FreezeLift`]: officers' signed reviews of held
//!   requests and two-person freeze lifts, checked against [`OfficerSet`].
//! * Customer payment authentication ([`auth`] module, re-exported here):
//!   devices bound to a customer and their signatures over a payment
//!   ([`verify_device_signature`]), one-time codes ([`TotpEnrolment`]),
//!   payment passwords ([`PasswordState`]) and KYC tier limits
//!   ([`TierLimits`]).
//!
//! ```
//! use keyfold_risk::*;
//!
//! let tree = default_tree()?;
//! let mut state = RiskState::new();
//! let mut request = RiskRequest {
//!     payment: Payment {
//!         chain: "base".into(), asset: "USDC".into(), amount: 25_000_000,
//!         destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
//!         wallet: "hot-1".into(), merchant: Some("shop".into()),
//!     },
//!     context: ClientContext {
//!         customer_id: Some("c-1".into()), device_id: Some("d-1".into()),
//!         kyc_tier: KycTier::Basic, ..ClientContext::default()
//!     },
//!     at: 1_700_000_000,
//! };
//! for i in 0..7 {
//!     request.at += 30;
//!     let features = state.features(&tree, &request)?;
//!     let decision = evaluate(&tree, &features);
//!     if i < 5 {
//!         assert_eq!(decision.action, Action::Allow);
//!     } else {
//!         // The sixth payment from one device in ten minutes.
//!         assert_eq!(decision.action, Action::Freeze);
//!         assert_eq!(decision.freeze_scope, Some(FreezeScope::Device));
//!     }
//!     state.observe(&request)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod baseline;
mod decision;
mod describe;
mod engine;
mod error;
mod features;
mod governance;
mod input;
mod officer;
mod state;
mod tree;
mod windows;

pub use auth::{
    verify_device_signature, AuthError, AuthRefusal, CustomerAuth, CustomerDevices, Device,
    DeviceKey, DevicePayment, NonceLog, PasswordCheck, PasswordConfig, PasswordState,
    PaymentPassword, SignedDevicePayment, TierLimits, TotpEnrolment, TotpSecret,
    DEVICE_REFUSAL_CODES,
};
pub use baseline::{
    AMOUNT_ALPHA, MIN_AMOUNT_HISTORY, MIN_BASELINE_HOURS, RATE_ALPHA, RATE_STD_FLOOR,
};
pub use decision::{evaluate, Action, Decision, FreezeScope, Reason};
pub use describe::{describe, describe_thresholds};
pub use engine::{decide_step, refusal_step, replay_step, RefusalInput, PRUNE_EVERY_SEQ};
pub use error::{GovernanceError, InputError, TreeError};
pub use features::{EntityFeatures, EntityKind, Features};
pub use governance::{
    tree_update_bytes, AdminSet, SignedTree, TreeSignature, MAX_TREE_SIGNATURES, RISK_TREE_DOMAIN,
};
pub use input::{
    canonical_destination, ip_block, AuthMethod, ClientContext, CountryCode, KycTier, Payment,
    RiskRequest, IPV4_BLOCK_PREFIX, IPV6_BLOCK_PREFIX, MAX_AUTH_METHODS, MAX_ID_BYTES, MAX_TIME,
};
pub use officer::{
    lift_bytes, review_bytes, FreezeLift, LiftSignature, OfficerError, OfficerSet, ReviewVerdict,
    SignedReview, FREEZE_LIFT_DOMAIN, LIFT_QUORUM, MAX_ACT_VALIDITY_SECS, MAX_LIFT_SIGNATURES,
    MAX_OFFICER_FIELD, REVIEW_DOMAIN,
};
pub use state::{
    RiskState, AMOUNT_ASSETS, DEFAULT_RETENTION_SECS, DESTINATION_RETENTION_SECS, MAX_REFUSALS,
    RECENT_DESTINATIONS, RECENT_DEVICES, REFUSAL_WINDOW_SECS,
};
pub use tree::{
    ActionSpec, Amount, Condition, CountCondition, Lists, RateSpike, RiskTree, Rule, SumCondition,
    Threshold, TreeDocument, MAX_LIST_ENTRIES, MAX_RULES, MAX_RULE_NAME, MAX_TREE_BYTES,
};
pub use windows::{Window, WindowTotal, MAX_ASSETS};

/// The default risk tree, as TOML (`crates/risk/default-tree.toml`).
pub const DEFAULT_TREE_TOML: &str = include_str!("../default-tree.toml");

/// The default risk tree: freezes a device bursting or failing its
/// signature, reviews impossible travel, amounts far above the customer's
/// history and slow drains, steps up large payments from new devices,
/// denies listed destinations.
pub fn default_tree() -> Result<RiskTree, TreeError> {
    RiskTree::from_toml(DEFAULT_TREE_TOML)
}
