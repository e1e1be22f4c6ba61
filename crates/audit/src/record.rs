//! Builds audit events from the policy and risk engines' types, so the
//! coordinator that records a decision and the auditor who re-derives it
//! use the same mapping: a re-evaluation is checked by comparing the event
//! it yields with the recorded one.

use keyfold_policy::{Approval, Decision, Policy, Request, SignedPolicy};
use keyfold_risk::{
    Decision as RiskDecision, Features, FreezeScope, RefusalInput, RiskRequest, SignedTree,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::event::{Event, Outcome};

/// The audit outcome code of a policy outcome.
pub fn outcome_of(outcome: &keyfold_policy::Outcome) -> Outcome {
    match outcome {
        keyfold_policy::Outcome::Allow => Outcome::Allow,
        keyfold_policy::Outcome::NeedApprovals { .. } => Outcome::NeedApprovals,
        keyfold_policy::Outcome::TimeLocked { .. } => Outcome::TimeLock,
        // Deny, and anything a later policy version adds: refused.
        _ => Outcome::Deny,
    }
}

/// The `Decision` event of evaluating request `request_id` at `evaluated_at`.
pub fn decision_event(request_id: &str, evaluated_at: u64, decision: &Decision) -> Event {
    Event::Decision {
        request_id: request_id.to_string(),
        policy_version: decision.policy_version,
        evaluated_at,
        outcome: outcome_of(&decision.outcome),
        rule: decision.rule.as_ref().map(|r| r.name.clone()),
        // Plain data with string keys: serializing cannot fail.
        detail: serde_json::to_string(&decision.outcome).unwrap_or_default(),
    }
}

/// The `SignRequest` event of a typed request to sign with `key_id`.
pub fn request_event(
    key_id: &str,
    request: &Request,
    hash_alg: Option<&str>,
    derivation_path: Option<&str>,
) -> Event {
    Event::SignRequest {
        request_id: request.id.clone(),
        key_id: key_id.to_string(),
        request: serde_json::to_string(request).unwrap_or_default(),
        request_hash: request.canonical_hash(),
        message_hash: Sha256::digest(request.signing_message()).into(),
        hash_alg: hash_alg.map(str::to_string),
        derivation_path: derivation_path.map(str::to_string),
    }
}

/// The `Approval` event of an accepted approval or rejection.
pub fn approval_event(request_id: &str, approval: &Approval) -> Event {
    Event::Approval {
        request_id: request_id.to_string(),
        approval: serde_json::to_string(approval).unwrap_or_default(),
    }
}

/// The `PolicyVersion` event of a policy coming into force: the genesis
/// policy (`update == None`, the document is `policy.to_toml()`) or a signed
/// update (the document is the update's exact signed bytes).
pub fn policy_event(policy: &Policy, update: Option<&SignedPolicy>) -> Event {
    let document = match update {
        Some(u) => u.document_toml.clone(),
        None => policy.to_toml().unwrap_or_default(),
    };
    policy_document_event(policy, document, update)
}

/// The `PolicyVersion` event of `policy` as the exact `document` text a node
/// keeps (for a signed update, the update's document), so a node that
/// restarts recognizes the policy it recorded last by its hash.
pub fn policy_document_event(
    policy: &Policy,
    document: String,
    update: Option<&SignedPolicy>,
) -> Event {
    Event::PolicyVersion {
        version: policy.version(),
        document_hash: Sha256::digest(document.as_bytes()).into(),
        document,
        update: update.map(|u| serde_json::to_string(u).unwrap_or_default()),
    }
}

/// The `RiskTree` event of a risk tree coming into force: the first tree of
/// the log (`update == None`; `document` is the text the node loaded, byte
/// for byte) or a signed update (`document` must be exactly the update's
/// `tree_toml`, the bytes the admins signed: the auditor refuses anything
/// else). `version` is the tree's own version.
pub fn risk_tree_event(
    version: u64,
    document: &str,
    update: Option<&SignedTree>,
) -> Result<Event, serde_json::Error> {
    Ok(Event::RiskTree {
        version,
        document_hash: Sha256::digest(document.as_bytes()).into(),
        document: document.to_string(),
        update: update.map(serde_json::to_string).transpose()?,
    })
}

/// The `RiskDecision` event of the engine's evaluation number `seq` of
/// `input` (ids already pseudonymised): the features it computed before
/// the request counted, and the decision `evaluate` gave on them.
pub fn risk_decision_event(
    request_id: &str,
    seq: u64,
    input: &RiskRequest,
    features: &Features,
    decision: &RiskDecision,
) -> Result<Event, serde_json::Error> {
    Ok(Event::RiskDecision {
        request_id: request_id.to_string(),
        seq,
        tree_version: decision.tree_version,
        input: serde_json::to_string(input)?,
        features: serde_json::to_string(features)?,
        score: u64::from(decision.score),
        action: decision.action.name().to_string(),
        detail: serde_json::to_string(decision)?,
    })
}

/// The `RiskRefusal` event of the engine's step number `seq`: the refused
/// device signature `input` (ids already pseudonymised) it counted with
/// `keyfold_risk::refusal_step`. `code` is copied from the input, so the
/// two cannot differ in an event built here.
pub fn risk_refusal_event(
    request_id: &str,
    seq: u64,
    input: &RefusalInput,
) -> Result<Event, serde_json::Error> {
    Ok(Event::RiskRefusal {
        request_id: request_id.to_string(),
        seq,
        input: serde_json::to_string(input)?,
        code: input.code.clone(),
    })
}

/// A change to a customer's authentication set-up, as `CustomerAuth::action`
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomerAuthAction {
    /// A device was registered (needs the device).
    DeviceRegistered,
    /// A device was revoked (needs the device).
    DeviceRevoked,
    /// One-time codes were enrolled.
    TotpEnrolled,
    /// The customer's KYC tier was set.
    KycTierSet,
    /// The payment password was set or changed.
    PasswordSet,
}

impl CustomerAuthAction {
    /// Every action.
    pub const ALL: [CustomerAuthAction; 5] = [
        CustomerAuthAction::DeviceRegistered,
        CustomerAuthAction::DeviceRevoked,
        CustomerAuthAction::TotpEnrolled,
        CustomerAuthAction::KycTierSet,
        CustomerAuthAction::PasswordSet,
    ];

    /// The name in the `CustomerAuth` event.
    pub fn name(self) -> &'static str {
        match self {
            CustomerAuthAction::DeviceRegistered => "device_registered",
            CustomerAuthAction::DeviceRevoked => "device_revoked",
            CustomerAuthAction::TotpEnrolled => "totp_enrolled",
            CustomerAuthAction::KycTierSet => "kyc_tier_set",
            CustomerAuthAction::PasswordSet => "password_set",
        }
    }

    /// The action of a name, if it is one.
    pub fn from_name(name: &str) -> Option<CustomerAuthAction> {
        CustomerAuthAction::ALL
            .into_iter()
            .find(|a| a.name() == name)
    }

    /// Whether the action is about one device (and the event must name it).
    pub fn names_device(self) -> bool {
        matches!(
            self,
            CustomerAuthAction::DeviceRegistered | CustomerAuthAction::DeviceRevoked
        )
    }
}

/// The `CustomerAuth` event of `action` on `customer`'s authentication
/// (pseudonyms: `cu_...`, `dv_...`); `device` names the device of a device
/// action. `detail` says what changed and must never hold a secret (no
/// one-time-code secret, no password or password hash).
pub fn customer_auth_event(
    customer: &str,
    action: CustomerAuthAction,
    device: Option<&str>,
    detail: &str,
) -> Event {
    Event::CustomerAuth {
        customer: customer.to_string(),
        action: action.name().to_string(),
        device: device.map(str::to_string),
        detail: detail.to_string(),
    }
}

/// The `Freeze` event of a freeze added by `by` (a module, e.g. `risk`, or
/// an operator), because of the risk decision on `request_id` if any.
pub fn freeze_added_event(
    freeze_id: &str,
    scope: FreezeScope,
    subject: &str,
    reason: &str,
    request_id: Option<&str>,
    by: &str,
) -> Event {
    Event::Freeze {
        freeze_id: freeze_id.to_string(),
        action: FREEZE_ADDED.to_string(),
        scope: scope.name().to_string(),
        subject: subject.to_string(),
        reason: reason.to_string(),
        request_id: request_id.map(str::to_string),
        by: vec![by.to_string()],
        lift: None,
    }
}

/// The `Freeze` event of lifting freeze `freeze_id` (the same id, scope and
/// subject as when it was added): `officers` are the officers who signed
/// `lift`, the signed lift, which must serialize to a JSON object.
pub fn freeze_lifted_event<L: Serialize>(
    freeze_id: &str,
    scope: FreezeScope,
    subject: &str,
    reason: &str,
    request_id: Option<&str>,
    officers: &[String],
    lift: &L,
) -> Result<Event, serde_json::Error> {
    Ok(Event::Freeze {
        freeze_id: freeze_id.to_string(),
        action: FREEZE_LIFTED.to_string(),
        scope: scope.name().to_string(),
        subject: subject.to_string(),
        reason: reason.to_string(),
        request_id: request_id.map(str::to_string),
        by: officers.to_vec(),
        lift: Some(serde_json::to_string(lift)?),
    })
}

/// `Freeze::action` of a freeze that was added.
pub const FREEZE_ADDED: &str = "added";
/// `Freeze::action` of a freeze that was lifted.
pub const FREEZE_LIFTED: &str = "lifted";

/// An officer's verdict on a request the risk engine held for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewVerdict {
    /// Let it continue.
    Approve,
    /// Refuse it.
    Reject,
    /// Hand it to a more senior officer.
    Escalate,
}

impl ReviewVerdict {
    /// Every verdict.
    pub const ALL: [ReviewVerdict; 3] = [
        ReviewVerdict::Approve,
        ReviewVerdict::Reject,
        ReviewVerdict::Escalate,
    ];

    /// The name in the `Review` event.
    pub fn name(self) -> &'static str {
        match self {
            ReviewVerdict::Approve => "approve",
            ReviewVerdict::Reject => "reject",
            ReviewVerdict::Escalate => "escalate",
        }
    }

    /// The verdict of a name, if it is one.
    pub fn from_name(name: &str) -> Option<ReviewVerdict> {
        ReviewVerdict::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// The `Review` event of `officer`'s verdict on `request_id`; `signed` is
/// the officer's signed review, which must serialize to a JSON object.
pub fn review_event<S: Serialize>(
    request_id: &str,
    officer: &str,
    verdict: ReviewVerdict,
    signed: &S,
) -> Result<Event, serde_json::Error> {
    Ok(Event::Review {
        request_id: request_id.to_string(),
        officer: officer.to_string(),
        verdict: verdict.name().to_string(),
        signed: serde_json::to_string(signed)?,
    })
}
