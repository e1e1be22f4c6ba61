//! The freezes this node enforces on its own (`docs/risk.md`, "Freezes at
//! the signers"): every signing command is refused while its wallet, or the
//! customer, device or merchant it names, is frozen.
//!
//! The coordinator pushes each freeze as it adds it, and re-pushes every
//! active one when a signer comes up; it can always add one. Only a lift
//! signed by two distinct officers of the policy THIS node enforces takes
//! one away (`keyfold_risk::FreezeLift`), so a compromised coordinator can
//! neither lift a freeze nor sign around it for a frozen wallet.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use keyfold_policy::Policy;
use keyfold_proto::signer::{FreezeSubject, PolicyIntent, MAX_FREEZE_FIELD, MAX_LIFT_JSON};
use keyfold_risk::{FreezeLift, FreezeScope, OfficerSet};
use keyfold_store::SignerStore;

use crate::SignerError;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn join_failed(e: tokio::task::JoinError) -> SignerError {
    SignerError::Internal(format!("freeze store task failed: {e}"))
}

/// Active freezes: (scope, subject) -> freeze id.
pub(crate) struct Freezes {
    active: RwLock<HashMap<(String, String), String>>,
}

impl Freezes {
    /// Loads the active freezes from the store.
    pub(crate) fn load(store: &SignerStore) -> Result<Freezes, SignerError> {
        let mut active = HashMap::new();
        for f in store.active_freezes()? {
            active.insert((f.scope, f.subject), f.freeze_id);
        }
        Ok(Freezes {
            active: RwLock::new(active),
        })
    }

    /// How many are in force.
    pub(crate) fn len(&self) -> usize {
        self.active
            .read()
            .map(|m| m.len())
            .unwrap_or_else(|p| p.into_inner().len())
    }

    /// Refuses `intent` if its wallet (`wallet_key`, the signing key's id)
    /// or a subject it names is frozen.
    pub(crate) fn check(&self, intent: &PolicyIntent, wallet_key: &str) -> Result<(), SignerError> {
        let map = match self.active.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let wallet = FreezeSubject {
            scope: "wallet".into(),
            subject: wallet_key.to_string(),
        };
        for s in intent.subjects.iter().chain(std::iter::once(&wallet)) {
            if let Some(id) = map.get(&(s.scope.clone(), s.subject.clone())) {
                return Err(SignerError::PolicyRefused(format!(
                    "request {}: its {} is frozen ({id}) on this signer",
                    intent.request.id, s.scope
                )));
            }
        }
        Ok(())
    }

    /// Takes a freeze (idempotent; a lifted id is never brought back).
    pub(crate) async fn add(
        &self,
        store: &Arc<SignerStore>,
        freeze_id: String,
        subject: FreezeSubject,
    ) -> Result<(), SignerError> {
        if FreezeScope::from_name(&subject.scope).is_none() {
            return Err(SignerError::Refused(format!(
                "freeze scope {:?} is not one of customer, device, wallet, merchant",
                subject.scope
            )));
        }
        for (field, v) in [("freeze_id", &freeze_id), ("subject", &subject.subject)] {
            if v.is_empty() || v.len() > MAX_FREEZE_FIELD {
                return Err(SignerError::Refused(format!(
                    "freeze {field} must be 1..={MAX_FREEZE_FIELD} bytes"
                )));
            }
        }
        let (st, id, sc, su) = (
            store.clone(),
            freeze_id.clone(),
            subject.scope.clone(),
            subject.subject.clone(),
        );
        let held = tokio::task::spawn_blocking(move || {
            st.add_freeze(&id, &sc, &su)?;
            st.freeze(&id)
        })
        .await
        .map_err(join_failed)??;
        // In force unless this id was lifted before (a replayed push).
        if let Some(f) = held.filter(|f| f.lifted_at.is_none()) {
            let mut map = match self.active.write() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.insert((f.scope, f.subject), f.freeze_id);
            tracing::warn!(freeze = %freeze_id, scope = %subject.scope, "freeze in force");
        }
        Ok(())
    }

    /// Lifts a freeze with a lift signed by two officers of `policy`.
    pub(crate) async fn lift(
        &self,
        store: &Arc<SignerStore>,
        policy: &Policy,
        freeze_id: String,
        lift_json: String,
    ) -> Result<(), SignerError> {
        if lift_json.len() > MAX_LIFT_JSON {
            return Err(SignerError::Refused(format!(
                "a lift is at most {MAX_LIFT_JSON} bytes"
            )));
        }
        let lift: FreezeLift = serde_json::from_str(&lift_json)
            .map_err(|e| SignerError::Refused(format!("the lift does not parse: {e}")))?;
        let (st, id) = (store.clone(), freeze_id.clone());
        let held = tokio::task::spawn_blocking(move || st.freeze(&id))
            .await
            .map_err(join_failed)??
            .ok_or_else(|| {
                SignerError::NotFound(format!("this signer holds no freeze {freeze_id}"))
            })?;
        if held.lifted_at.is_some() {
            return Ok(());
        }
        let scope = FreezeScope::from_name(&held.scope).ok_or_else(|| {
            SignerError::Internal(format!("freeze {freeze_id} has scope {}", held.scope))
        })?;
        let officers = OfficerSet::from_policy(policy, None)
            .map_err(|e| SignerError::PolicyRefused(e.to_string()))?;
        let names = lift
            .verify(&officers, &freeze_id, scope, &held.subject, unix_now())
            .map_err(|e| SignerError::PolicyRefused(format!("lift of {freeze_id} refused: {e}")))?;
        let (st, id) = (store.clone(), freeze_id.clone());
        tokio::task::spawn_blocking(move || st.lift_freeze(&id, &lift_json))
            .await
            .map_err(join_failed)??;
        let mut map = match self.active.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.remove(&(held.scope, held.subject));
        tracing::warn!(freeze = %freeze_id, officers = %names.join(", "), "freeze lifted");
        Ok(())
    }
}
