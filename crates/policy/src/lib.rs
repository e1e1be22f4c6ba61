//! `keyfold-policy`: pure, deterministic policy evaluation and approval checks.
//!
//! The same crate runs in the coordinator and, independently, in every signer
//! node, so a compromised coordinator cannot get a signature the policy
//! forbids. Nothing here reads the clock, the network or the disk: time,
//! past spends, approvals and seen nonces are inputs.
//!
//! * [`Policy::from_toml`] parses and validates a versioned document of ordered
//!   rules (first match decides, a final catch-all deny is mandatory).
//! * [`evaluate`] turns a [`Request`] and an [`EvalContext`] into a [`Decision`].
//! * [`Spending`]: the past transfers velocity limits and vesting count, kept
//!   as windowed aggregates ([`Spending::add`], [`Spending::remove`],
//!   [`Spending::prune`]), so a decision costs the same after a million
//!   transfers as after ten.
//! * [`Approval`] / [`verify_approval`]: Ed25519 approvals over documented
//!   canonical bytes ([`approval_bytes`], [`Request::canonical_hash`]).
//! * [`SignedPolicy::verify`]: policy updates signed by the current admin quorum.
//! * [`describe`]: each rule in plain words.
//!
//! See `docs/policy.md` for the rule language.
//!
//! ```
//! use std::collections::BTreeSet;
//! use keyfold_policy::{evaluate, EvalContext, Outcome, Payload, Policy, Request, Spending, Tier};
//!
//! let policy = Policy::from_toml(r#"
//!     version = 1
//!     [[velocity]]
//!     name = "daily"
//!     per = "wallet"
//!     window_secs = 86400
//!     asset = "ETH"
//!     max_amount = 1500
//!     [[rules]]
//!     name = "small-hot"
//!     tier = "hot"
//!     amount = { max = 1000 }
//!     action = { kind = "allow" }
//!     [[rules]]
//!     name = "deny-all"
//!     action = { kind = "deny" }
//! "#)?;
//! let request = Request {
//!     id: "r-1".into(), wallet: "hot-1".into(), tier: Tier::Hot, asset: "ETH".into(),
//!     amount: 999, destination: "0xabc".into(), initiator: "payments".into(), risk: None,
//!     origin: None,
//!     time: 1_700_000_000, payload: Payload::TypedTransfer,
//! };
//! let seen = BTreeSet::new();
//! // Past transfers, kept as aggregates for this policy.
//! let mut spent = Spending::new(&policy);
//! let ctx = EvalContext {
//!     now: request.time, spent: &spent, exclude: None, approvals: &[], seen_nonces: &seen,
//! };
//! let decision = evaluate(&policy, &request, &ctx);
//! assert_eq!(decision.outcome, Outcome::Allow);
//! assert_eq!(decision.rule.map(|r| r.name).as_deref(), Some("small-hot"));
//!
//! // Once signed, the transfer counts against the daily limit ...
//! spent.add(&request.history_entry(request.time));
//! let second = Request { id: "r-2".into(), time: request.time + 60, ..request.clone() };
//! spent.prune(second.time); // drop what left the windows (time never goes back)
//! let ctx = EvalContext {
//!     now: second.time, spent: &spent, exclude: None, approvals: &[], seen_nonces: &seen,
//! };
//! assert!(matches!(evaluate(&policy, &second, &ctx).outcome, Outcome::Deny { .. }));
//! // ... but a retry of the same request does not count against itself.
//! let own = request.history_entry(request.time);
//! let ctx = EvalContext { exclude: Some(&own), ..ctx };
//! assert_eq!(evaluate(&policy, &request, &ctx).outcome, Outcome::Allow);
//! # Ok::<(), keyfold_policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod approval;
mod describe;
mod document;
mod error;
mod eval;
mod governance;
mod request;
mod rollout;
mod spending;

pub use address::{canonical_destination, is_solana_address, AddressError, MAX_DESTINATION};
pub use approval::{
    approval_bytes, hex_array, verify_approval, Approval, ApprovalDecision, APPROVAL_DOMAIN,
};
pub use describe::{describe, describe_limits};
pub use document::{
    Action, AddressBook, AddressEntry, Admins, AmountRange, Approver, ApproverGroup, Combine,
    DestinationMatch, Policy, PolicyDocument, RiskMatch, Rule, Tier, TimeMatch, VelocityLimit,
    VelocityScope, Weekday, MAX_DOCUMENT_BYTES,
};
pub use error::{ApprovalError, GovernanceError, PolicyError, SpendingError};
pub use eval::{
    evaluate, vested_amount, wallet_root, Decision, EvalContext, MissingApprovals, Outcome,
    RefusedApproval, RuleRef, MAX_APPROVALS,
};
pub use governance::{
    policy_update_bytes, valid_admin_signers, AdminSignature, SignedPolicy, POLICY_DOMAIN,
};
pub use request::{
    History, HistoryEntry, KycLevel, Payload, Request, RequestOrigin, RiskAction, RiskFacts,
    REQUEST_DOMAIN, TRANSFER_DOMAIN,
};
pub use rollout::{bucket, compose, merchant_of, Audience, Rollout, BUCKETS, ROLLOUT_DOMAIN};
pub use spending::{Spending, WindowTotal, SPENDING_DOMAIN};

/// The devnet default policy, as TOML (also in `examples/devnet-default.toml`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../examples/devnet-default.toml");

/// The policy shipped with the devnet: typed transfers from hot wallets are
/// allowed up to a per-wallet daily limit; raw-bytes signing is NOT allowed;
/// everything else is denied.
pub fn default_policy() -> Result<Policy, PolicyError> {
    Policy::from_toml(DEFAULT_POLICY_TOML)
}
