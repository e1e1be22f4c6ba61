//! A request as the coordinator keeps it: the stored JSON forms of the
//! typed request and of the lifecycle's data, the idempotency fingerprint,
//! and the conversions between a store row and a lifecycle [`Snapshot`].

use std::collections::BTreeSet;

use keyfold_mpc::ecdsa::{DerivationPath, HashAlg};
use keyfold_policy::Request as PolicyRequest;
use keyfold_proto::api::{DecisionView, ModuleData, RequestState};
use keyfold_store::{RequestRow, RequestUpdate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::lifecycle::{Snapshot, StepState};
use crate::service::ServiceError;

/// The request as stored (`request_json`): the typed request the policy
/// sees and how to sign it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    /// The key.
    pub key_id: String,
    /// The typed request.
    pub request: PolicyRequest,
    /// ECDSA pre-hash.
    pub hash: Option<HashAlg>,
    /// ECDSA HD path (canonical text).
    pub path: Option<String>,
    /// Data modules attached before the policy evaluated it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleData>,
}

/// What makes two submissions "the same request": everything the client
/// chose, without the request's time (a retry arrives later).
#[derive(Serialize)]
struct Fingerprinted<'a> {
    key_id: &'a str,
    wallet: &'a str,
    tier: &'a keyfold_policy::Tier,
    asset: &'a str,
    amount: String,
    destination: &'a str,
    initiator: &'a str,
    payload: &'a keyfold_policy::Payload,
    hash: Option<String>,
    path: Option<&'a str>,
}

impl StoredRequest {
    /// The idempotency fingerprint (also computed from the audit log's
    /// record of the request, so a restored request keeps it).
    pub fn fingerprint(&self) -> [u8; 32] {
        let r = &self.request;
        let f = Fingerprinted {
            key_id: &self.key_id,
            wallet: &r.wallet,
            tier: &r.tier,
            asset: &r.asset,
            amount: r.amount.to_string(),
            destination: &r.destination,
            initiator: &r.initiator,
            payload: &r.payload,
            hash: self.hash.map(|h| h.to_string()),
            path: self.path.as_deref(),
        };
        let mut h = Sha256::new();
        h.update(b"keyfold/request-fingerprint/v1\0");
        // Serializing plain data cannot fail.
        h.update(serde_json::to_vec(&f).unwrap_or_default());
        h.finalize().into()
    }

    /// The HD path, parsed.
    pub fn derivation_path(&self) -> Result<Option<DerivationPath>, ServiceError> {
        self.path
            .as_deref()
            .map(|p| p.parse::<DerivationPath>())
            .transpose()
            .map_err(|e| ServiceError::Internal(format!("stored derivation path: {e}")))
    }
}

/// The lifecycle's own data (`lifecycle_json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleData {
    /// When a waiting request expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The end of its time lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// Modules holding it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub holds: BTreeSet<String>,
    /// Post-signing steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepState>,
}

/// A request read from the store, parsed.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The row.
    pub row: RequestRow,
    /// The request (`None` for one recorded before the request lifecycle).
    pub stored: Option<StoredRequest>,
    /// Its state.
    pub state: RequestState,
    /// The lifecycle's data.
    pub life: LifecycleData,
}

fn corrupt(id: &str, what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("stored request {id}: {what}: {e}"))
}

impl Loaded {
    /// Parses a row.
    pub fn parse(row: RequestRow) -> Result<Loaded, ServiceError> {
        let id = row.request_id.clone();
        let state =
            RequestState::parse(&row.state).ok_or_else(|| corrupt(&id, "state", &row.state))?;
        let stored = row
            .request_json
            .as_deref()
            .map(serde_json::from_str::<StoredRequest>)
            .transpose()
            .map_err(|e| corrupt(&id, "request", e))?;
        let life: LifecycleData =
            serde_json::from_str(&row.lifecycle_json).map_err(|e| corrupt(&id, "lifecycle", e))?;
        Ok(Loaded {
            row,
            stored,
            state,
            life,
        })
    }

    /// The lifecycle's view.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            expires_at: self.life.expires_at,
            until: self.life.until,
            holds: self.life.holds.clone(),
            steps: self.life.steps.clone(),
        }
    }

    /// The stored request, or an error for a request from before the
    /// lifecycle existed.
    pub fn request(&self) -> Result<&StoredRequest, ServiceError> {
        self.stored.as_ref().ok_or_else(|| {
            ServiceError::Conflict(format!(
                "request {} was recorded before requests had a lifecycle; only its result can be read",
                self.row.request_id
            ))
        })
    }

    /// The latest decision.
    pub fn decision(&self) -> Result<Option<DecisionView>, ServiceError> {
        self.row
            .decision_json
            .as_deref()
            .map(serde_json::from_str::<DecisionView>)
            .transpose()
            .map_err(|e| corrupt(&self.row.request_id, "decision", e))
    }
}

/// The earliest time the lifecycle asked to be woken at, from a snapshot:
/// a time lock's end, a waiting request's expiry, a step's retry.
pub fn wake_at(s: &Snapshot) -> Option<i64> {
    let mut at: Option<u64> = None;
    let mut consider = |t: Option<u64>| {
        if let Some(t) = t {
            at = Some(at.map_or(t, |a| a.min(t)));
        }
    };
    match s.state {
        RequestState::TimeLocked => consider(s.until),
        RequestState::PendingApproval | RequestState::Held => consider(s.expires_at),
        RequestState::Signed => {
            for step in &s.steps {
                if let super::lifecycle::StepStatus::Pending { retry_at } = &step.status {
                    consider(Some(retry_at.unwrap_or(0)));
                }
            }
        }
        _ => {}
    }
    at.map(|t| i64::try_from(t).unwrap_or(i64::MAX))
}

/// The store columns of a snapshot and its side data.
pub fn update_of(
    s: &Snapshot,
    decision_json: Option<String>,
    result_json: Option<String>,
    error_json: Option<String>,
    spent_at: Option<i64>,
) -> RequestUpdate {
    let life = LifecycleData {
        expires_at: s.expires_at,
        until: s.until,
        holds: s.holds.clone(),
        steps: s.steps.clone(),
    };
    RequestUpdate {
        state: s.state.as_str().to_string(),
        decision_json,
        result_json,
        error_json,
        // Serializing plain data cannot fail.
        lifecycle_json: serde_json::to_string(&life).unwrap_or_else(|_| "{}".into()),
        spent_at,
        wake_at: wake_at(s),
    }
}
