//! `keyfold-policy`: pure, deterministic policy evaluation and approval checks.
//!
//! The same crate runs in the coordinator and, independently, in every signer
//! node, so a compromised coordinator cannot get a signature the policy
//! forbids. Nothing here reads the clock, the network or the disk: time,
//! history, approvals and seen nonces are inputs.
//!
//! * [`Policy::from_toml`] parses and validates a versioned document of ordered
//!   rules (first match decides, a final catch-all deny is mandatory).
//! * [`evaluate`] turns a [`Request`] and an [`EvalContext`] into a [`Decision`].
//! * [`Approval`] / [`verify_approval`]: Ed25519 approvals over documented
//!   canonical bytes ([`approval_bytes`], [`Request::canonical_hash`]).
//! * [`SignedPolicy::verify`]: policy updates signed by the current admin quorum.
//! * [`describe`]: each rule in plain words.
//!
//! See `docs/policy.md` for the rule language.
//!
//! ```
//! use std::collections::BTreeSet;
//! use keyfold_policy::{evaluate, EvalContext, History, Outcome, Payload, Policy, Request, Tier};
//!
//! let policy = Policy::from_toml(r#"
//!     version = 1
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
//!     amount: 999, destination: "0xabc".into(), initiator: "payments".into(),
//!     time: 1_700_000_000, payload: Payload::TypedTransfer,
//! };
//! let seen = BTreeSet::new();
//! let history = History::default();
//! let ctx = EvalContext { now: request.time, history: &history, approvals: &[], seen_nonces: &seen };
//! let decision = evaluate(&policy, &request, &ctx);
//! assert_eq!(decision.outcome, Outcome::Allow);
//! assert_eq!(decision.rule.map(|r| r.name).as_deref(), Some("small-hot"));
//! # Ok::<(), keyfold_policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod approval;
mod describe;
mod document;
mod error;
mod eval;
mod governance;
mod request;

pub use approval::{approval_bytes, verify_approval, Approval, ApprovalDecision, APPROVAL_DOMAIN};
pub use describe::{describe, describe_limits};
pub use document::{
    Action, AddressBook, AddressEntry, Admins, AmountRange, Approver, ApproverGroup, Combine,
    DestinationMatch, Policy, PolicyDocument, Rule, Tier, TimeMatch, VelocityLimit, VelocityScope,
    Weekday, MAX_DOCUMENT_BYTES,
};
pub use error::{ApprovalError, GovernanceError, PolicyError};
pub use eval::{
    evaluate, vested_amount, wallet_root, Decision, EvalContext, MissingApprovals, Outcome,
    RefusedApproval, RuleRef, MAX_APPROVALS,
};
pub use governance::{policy_update_bytes, AdminSignature, SignedPolicy, POLICY_DOMAIN};
pub use request::{History, HistoryEntry, Payload, Request, REQUEST_DOMAIN, TRANSFER_DOMAIN};

/// The devnet default policy, as TOML (also in `examples/devnet-default.toml`).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../examples/devnet-default.toml");

/// The policy shipped with the devnet: typed transfers from hot wallets are
/// allowed up to a per-wallet daily limit; raw-bytes signing is NOT allowed;
/// everything else is denied.
pub fn default_policy() -> Result<Policy, PolicyError> {
    Policy::from_toml(DEFAULT_POLICY_TOML)
}
