//! Officers' signed acts on the risk engine's outcomes: a review of a held
//! request, and the lifting of a freeze (two-person rule).
//!
//! Officers are the policy's approvers (treasury officers), each with an
//! Ed25519 key. The coordinator verifies these acts before it acts on them,
//! the signers verify a lift themselves before they forget a freeze, and the
//! auditor verifies both from the log: so every check is in this pure
//! module, over documented bytes, each under its own domain separator (an
//! approval, a policy signature or a tree signature can never be replayed as
//! one of these, nor the other way round).
//!
//! Bytes signed (strings are length-prefixed: u32 big-endian byte length,
//! then UTF-8):
//!
//! * review: [`REVIEW_DOMAIN`] ‖ request id ‖ verdict (1 byte: 1 approve,
//!   2 reject, 3 escalate) ‖ expires_at (u64 BE) ‖ nonce (16);
//! * freeze lift: [`FREEZE_LIFT_DOMAIN`] ‖ freeze id ‖ scope ‖ subject ‖
//!   expires_at (u64 BE) ‖ nonce (16), one signature per officer over the
//!   same bytes.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use keyfold_policy::{hex_array, Policy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::decision::FreezeScope;

/// Domain separator of [`review_bytes`].
pub const REVIEW_DOMAIN: &[u8] = b"keyfold-risk/review/v1\0";
/// Domain separator of [`lift_bytes`].
pub const FREEZE_LIFT_DOMAIN: &[u8] = b"keyfold-risk/freeze-lift/v1\0";
/// Distinct officers a freeze lift needs (the two-person rule).
pub const LIFT_QUORUM: usize = 2;
/// Most signatures a lift may carry.
pub const MAX_LIFT_SIGNATURES: usize = 16;
/// Longest id (request, freeze) or subject accepted, in bytes.
pub const MAX_OFFICER_FIELD: usize = 256;
/// Longest validity an officer may give an act, in seconds (a day): a
/// signed act lying around cannot be used months later.
pub const MAX_ACT_VALIDITY_SECS: u64 = 86_400;

/// Why an officer's act was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OfficerError {
    /// The policy names no approver key that parses.
    #[error("the policy in force names no officer (approver) key{}", group.as_ref().map(|g| format!(" in group {g}")).unwrap_or_default())]
    NoOfficers {
        /// The group asked for, if one was.
        group: Option<String>,
    },
    /// The named group does not exist in the policy.
    #[error("the policy has no approver group named {0}")]
    UnknownGroup(String),
    /// The signing key is not an officer's.
    #[error("key {0} is not an officer's key under the policy in force")]
    NotAnOfficer(String),
    /// The signature does not verify over the act's bytes.
    #[error("the signature of officer {0} does not verify over this act")]
    BadSignature(String),
    /// The act expired (`now >= expires_at`) or is valid for too long.
    #[error("the act expires at {expires_at}; now is {now} (an act may be valid for at most {MAX_ACT_VALIDITY_SECS} s)")]
    Expired {
        /// Its expiry.
        expires_at: u64,
        /// Now.
        now: u64,
    },
    /// The act names another request, freeze or subject.
    #[error("the act is for {field} {signed:?}, not {expected:?}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// What it signed.
        signed: String,
        /// What it was presented for.
        expected: String,
    },
    /// A field is empty or longer than [`MAX_OFFICER_FIELD`].
    #[error("{field} must be 1..={MAX_OFFICER_FIELD} bytes")]
    BadField {
        /// The field.
        field: &'static str,
    },
    /// Fewer distinct officers than [`LIFT_QUORUM`] signed the lift.
    #[error("a freeze lift needs {needed} distinct officers; {valid} valid signature(s)")]
    QuorumNotMet {
        /// Distinct valid officers.
        valid: usize,
        /// Needed.
        needed: usize,
    },
    /// More signatures than [`MAX_LIFT_SIGNATURES`].
    #[error("a lift carries {0} signatures, the limit is {MAX_LIFT_SIGNATURES}")]
    TooManySignatures(usize),
}

/// The officers of the policy in force: approvers' Ed25519 keys and their
/// display names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficerSet {
    keys: BTreeMap<[u8; 32], String>,
}

impl OfficerSet {
    /// Every approver of `group` (or of every group) in `policy`. Keys that
    /// do not parse are skipped: the policy's own validation refuses them.
    pub fn from_policy(policy: &Policy, group: Option<&str>) -> Result<OfficerSet, OfficerError> {
        let groups = &policy.document().groups;
        if let Some(g) = group {
            if !groups.iter().any(|x| x.name == g) {
                return Err(OfficerError::UnknownGroup(g.to_string()));
            }
        }
        let mut keys = BTreeMap::new();
        for g in groups.iter().filter(|x| group.is_none_or(|n| x.name == n)) {
            for m in &g.members {
                let Ok(bytes) = hex::decode(m.key.trim()) else {
                    continue;
                };
                let Ok(k) = <[u8; 32]>::try_from(bytes) else {
                    continue;
                };
                if VerifyingKey::from_bytes(&k).is_err() {
                    continue;
                }
                let name = m.name.clone().unwrap_or_else(|| hex::encode(&k[..8]));
                keys.insert(k, name);
            }
        }
        if keys.is_empty() {
            return Err(OfficerError::NoOfficers {
                group: group.map(str::to_string),
            });
        }
        Ok(OfficerSet { keys })
    }

    /// The display name of officer `key`, if it is one.
    pub fn name(&self, key: &[u8; 32]) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// Number of officers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no officer (never, once built).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn check(&self, key: &[u8; 32], msg: &[u8], signature: &[u8; 64]) -> Result<(), OfficerError> {
        let name = self
            .name(key)
            .ok_or_else(|| OfficerError::NotAnOfficer(hex::encode(key)))?;
        let vk = VerifyingKey::from_bytes(key)
            .map_err(|_| OfficerError::NotAnOfficer(hex::encode(key)))?;
        vk.verify_strict(msg, &Signature::from_bytes(signature))
            .map_err(|_| OfficerError::BadSignature(name.to_string()))
    }
}

/// What an officer says about a held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// Release it to the policy (and signing).
    Approve,
    /// Close it, rejected.
    Reject,
    /// Keep it held for a senior officer (recorded, nothing changes).
    Escalate,
}

impl ReviewVerdict {
    /// The name used in JSON and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            ReviewVerdict::Approve => "approve",
            ReviewVerdict::Reject => "reject",
            ReviewVerdict::Escalate => "escalate",
        }
    }

    fn byte(self) -> u8 {
        match self {
            ReviewVerdict::Approve => 1,
            ReviewVerdict::Reject => 2,
            ReviewVerdict::Escalate => 3,
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Fields are bounded by MAX_OFFICER_FIELD before they are signed or
    // checked, so the length always fits.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn check_field(field: &'static str, s: &str) -> Result<(), OfficerError> {
    if s.is_empty() || s.len() > MAX_OFFICER_FIELD {
        return Err(OfficerError::BadField { field });
    }
    Ok(())
}

fn check_expiry(expires_at: u64, now: u64) -> Result<(), OfficerError> {
    if now >= expires_at || expires_at - now > MAX_ACT_VALIDITY_SECS {
        return Err(OfficerError::Expired { expires_at, now });
    }
    Ok(())
}

/// The bytes an officer signs for a review (see the module docs).
pub fn review_bytes(
    request_id: &str,
    verdict: ReviewVerdict,
    expires_at: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let mut out = REVIEW_DOMAIN.to_vec();
    push_str(&mut out, request_id);
    out.push(verdict.byte());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(nonce);
    out
}

/// An officer's signed review of a held request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReview {
    /// The request reviewed.
    pub request_id: String,
    /// The verdict.
    pub verdict: ReviewVerdict,
    /// Unix seconds after which it is void.
    pub expires_at: u64,
    /// Random nonce (each accepted once, like approvals').
    #[serde(with = "hex_array")]
    pub nonce: [u8; 16],
    /// The officer's Ed25519 public key.
    #[serde(with = "hex_array")]
    pub officer: [u8; 32],
    /// Ed25519 signature over [`review_bytes`].
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl SignedReview {
    /// Signs a review with an officer's key.
    pub fn sign(
        key: &SigningKey,
        request_id: &str,
        verdict: ReviewVerdict,
        expires_at: u64,
        nonce: [u8; 16],
    ) -> SignedReview {
        let msg = review_bytes(request_id, verdict, expires_at, &nonce);
        SignedReview {
            request_id: request_id.to_string(),
            verdict,
            expires_at,
            nonce,
            officer: key.verifying_key().to_bytes(),
            signature: key.sign(&msg).to_bytes(),
        }
    }

    /// Checks the review is for `request_id`, unexpired at `now`, and signed
    /// by one of `officers`; answers the officer's name.
    pub fn verify<'a>(
        &self,
        officers: &'a OfficerSet,
        request_id: &str,
        now: u64,
    ) -> Result<&'a str, OfficerError> {
        check_field("request_id", &self.request_id)?;
        if self.request_id != request_id {
            return Err(OfficerError::Mismatch {
                field: "request_id",
                signed: self.request_id.clone(),
                expected: request_id.to_string(),
            });
        }
        check_expiry(self.expires_at, now)?;
        let msg = review_bytes(&self.request_id, self.verdict, self.expires_at, &self.nonce);
        officers.check(&self.officer, &msg, &self.signature)?;
        officers
            .name(&self.officer)
            .ok_or_else(|| OfficerError::NotAnOfficer(hex::encode(self.officer)))
    }
}

/// The bytes each officer signs to lift a freeze (see the module docs).
pub fn lift_bytes(
    freeze_id: &str,
    scope: FreezeScope,
    subject: &str,
    expires_at: u64,
    nonce: &[u8; 16],
) -> Vec<u8> {
    let mut out = FREEZE_LIFT_DOMAIN.to_vec();
    push_str(&mut out, freeze_id);
    push_str(&mut out, scope.name());
    push_str(&mut out, subject);
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(nonce);
    out
}

/// One officer's signature on a lift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftSignature {
    /// The officer's Ed25519 public key.
    #[serde(with = "hex_array")]
    pub officer: [u8; 32],
    /// Ed25519 signature over [`lift_bytes`].
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

/// Lifting a freeze: the freeze named, and officers' signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeLift {
    /// The freeze.
    pub freeze_id: String,
    /// Its scope.
    pub scope: FreezeScope,
    /// Its subject (as the freeze names it).
    pub subject: String,
    /// Unix seconds after which the signatures are void.
    pub expires_at: u64,
    /// Random nonce, shared by the officers' signatures.
    #[serde(with = "hex_array")]
    pub nonce: [u8; 16],
    /// The officers' signatures.
    pub signatures: Vec<LiftSignature>,
}

impl FreezeLift {
    /// A lift with no signature yet.
    pub fn new(
        freeze_id: &str,
        scope: FreezeScope,
        subject: &str,
        expires_at: u64,
        nonce: [u8; 16],
    ) -> FreezeLift {
        FreezeLift {
            freeze_id: freeze_id.to_string(),
            scope,
            subject: subject.to_string(),
            expires_at,
            nonce,
            signatures: Vec::new(),
        }
    }

    /// The bytes its officers sign.
    pub fn message(&self) -> Vec<u8> {
        lift_bytes(
            &self.freeze_id,
            self.scope,
            &self.subject,
            self.expires_at,
            &self.nonce,
        )
    }

    /// Adds an officer's signature.
    pub fn sign(&mut self, key: &SigningKey) {
        let signature = key.sign(&self.message()).to_bytes();
        self.signatures.push(LiftSignature {
            officer: key.verifying_key().to_bytes(),
            signature,
        });
    }

    /// Checks the lift is for this freeze, unexpired at `now`, and signed by
    /// at least [`LIFT_QUORUM`] distinct officers; answers their names. A
    /// signature that does not verify, or by a key that is not an officer's,
    /// does not count (and is named in the error when the quorum fails).
    pub fn verify(
        &self,
        officers: &OfficerSet,
        freeze_id: &str,
        scope: FreezeScope,
        subject: &str,
        now: u64,
    ) -> Result<Vec<String>, OfficerError> {
        check_field("freeze_id", &self.freeze_id)?;
        check_field("subject", &self.subject)?;
        if self.signatures.len() > MAX_LIFT_SIGNATURES {
            return Err(OfficerError::TooManySignatures(self.signatures.len()));
        }
        for (field, signed, expected) in [
            ("freeze_id", self.freeze_id.as_str(), freeze_id),
            ("scope", self.scope.name(), scope.name()),
            ("subject", self.subject.as_str(), subject),
        ] {
            if signed != expected {
                return Err(OfficerError::Mismatch {
                    field,
                    signed: signed.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        check_expiry(self.expires_at, now)?;
        let msg = self.message();
        let mut valid = BTreeSet::new();
        let mut first_error = None;
        for s in &self.signatures {
            match officers.check(&s.officer, &msg, &s.signature) {
                Ok(()) => {
                    valid.insert(s.officer);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if valid.len() < LIFT_QUORUM {
            // A forged or foreign signature is named when there is one (it
            // is what to look into); otherwise, the quorum.
            return Err(match first_error {
                Some(e) => e,
                None => OfficerError::QuorumNotMet {
                    valid: valid.len(),
                    needed: LIFT_QUORUM,
                },
            });
        }
        Ok(valid
            .iter()
            .filter_map(|k| officers.name(k).map(str::to_string))
            .collect())
    }
}
