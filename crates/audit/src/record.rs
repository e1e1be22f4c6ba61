//! Builds audit events from the policy engine's types, so the coordinator
//! that records a decision and the auditor who re-derives it use the same
//! mapping: a re-evaluation is checked by comparing the event it yields
//! with the recorded one.

use keyfold_policy::{Approval, Decision, Policy, Request, SignedPolicy};
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
