//! Policy updates: a new document signed by the admin quorum of the policy
//! in force is verified, logged and stored in one journal step, enforced,
//! and pushed to every signer (each verifies the admin signatures itself).
//!
//! A policy already in force can be pushed again (to reach a signer that
//! missed it) only as the exact signed update that brought it: a bare
//! document with no signatures is refused, so a client token alone cannot
//! make the coordinator talk to every signer.

use keyfold_audit::record as audit_record;
use keyfold_policy::{Policy, SignedPolicy, Spending};
use keyfold_proto::api::PolicyInfo;
use keyfold_proto::signer::Command;
use keyfold_store::Op;

use crate::core::Coordinator;
use crate::requests::record::StoredRequest;
use crate::service::ServiceError;

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

impl Coordinator {
    /// `GET /v1/policy`.
    pub(crate) fn policy_info(&self) -> Result<PolicyInfo, ServiceError> {
        let p = self.policy.current();
        let (_, update) = self.policy.document();
        Ok(PolicyInfo {
            version: p.version(),
            document: p.to_toml().map_err(internal)?,
            rules: keyfold_policy::describe(&p),
            signed_update: update,
        })
    }

    /// `POST /v1/policy`.
    pub(crate) async fn update_policy(
        &self,
        update: SignedPolicy,
    ) -> Result<PolicyInfo, ServiceError> {
        // The document first: its own errors, before anything about admins.
        let proposed = Policy::from_toml(&update.document_toml)
            .map_err(|e| ServiceError::BadRequest(format!("policy document: {e}")))?;
        self.check_rollout_names(&proposed).await?;
        let current = self.policy.current();
        if update.is_in_force(&current) {
            let (_, in_force) = self.policy.document();
            if in_force.as_ref() != Some(&update) {
                return Err(ServiceError::BadRequest(format!(
                    "policy version {} is in force already; to push it to the signers again, send the signed update that brought it exactly as accepted (GET /v1/policy shows it as signed_update){}",
                    current.version(),
                    if in_force.is_none() {
                        " — the version in force is the configured genesis document, which every signer loads from its own file"
                    } else {
                        ""
                    }
                )));
            }
            tracing::info!(
                version = current.version(),
                "pushing the policy in force again"
            );
            self.push_policy(&update).await?;
            return self.policy_info();
        }
        if proposed.version() <= current.version() {
            return Err(ServiceError::BadRequest(format!(
                "policy update refused: version {} is not above the version in force ({})",
                proposed.version(),
                current.version()
            )));
        }
        let new = update
            .verify(&current)
            .map_err(|e| ServiceError::BadRequest(format!("policy update refused: {e}")))?;
        if !self.policy.begin_update() {
            return Err(ServiceError::InProgress(
                "another policy update is being applied; retry".into(),
            ));
        }
        let applied = self.enforce_update(new, &update).await;
        if applied.is_err() {
            self.policy.abandon_update();
        }
        applied?;
        tracing::info!(version = proposed.version(), "policy updated");
        self.push_policy(&update).await?;
        self.policy_info()
    }

    /// Refuses a version whose `[rollout]` names a merchant or a wallet this
    /// coordinator does not know: a typo would silently select nobody. (The
    /// signers, which know neither, apply the selection as written.)
    pub(crate) async fn check_rollout_names(&self, proposed: &Policy) -> Result<(), ServiceError> {
        let Some(rollout) = &proposed.document().rollout else {
            return Ok(());
        };
        for m in rollout.merchants.iter().flatten() {
            let id = m.clone();
            if self
                .store_call(move |s| s.get_merchant(&id))
                .await?
                .is_none()
            {
                return Err(ServiceError::BadRequest(format!(
                    "policy document: rollout.merchants names {m:?}, which is no merchant of this coordinator"
                )));
            }
        }
        for w in rollout.wallets.iter().flatten() {
            if self.key(w).is_err() {
                return Err(ServiceError::BadRequest(format!(
                    "policy document: rollout.wallets names {w:?}, which is no key of this coordinator"
                )));
            }
        }
        Ok(())
    }

    /// Rebuilds the aggregates for `new`, then swaps it in and queues its
    /// journal step under the gate, so every decision logged after the
    /// update was made under it.
    async fn enforce_update(&self, new: Policy, update: &SignedPolicy) -> Result<(), ServiceError> {
        // Every step queued so far is written once this one is: the store
        // then holds every request counted until now (evaluations wait).
        self.journal
            .write(Vec::new(), Vec::new())
            .await
            .map_err(|e| self.journal_error(e))?;
        let spent = self.read(|s| s.spent_requests()).await?;
        let entries = spent
            .iter()
            .map(|(json, at)| {
                let s: StoredRequest = serde_json::from_str(json).map_err(internal)?;
                Ok(s.request.history_entry(u64::try_from(*at).unwrap_or(0)))
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        let aggregates = Spending::from_entries(&new, entries);
        let event = audit_record::policy_event(&new, Some(update));
        let op = Op::InsertPolicy {
            version: new.version(),
            document: update.document_toml.clone(),
            update_json: Some(serde_json::to_string(update).map_err(internal)?),
            at: i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX),
        };
        // A shadow of this version or an older one ends with this step.
        let (mut events, mut ops) = (vec![event], vec![op]);
        let (ended, end_ops) = self.shadow_ended_by(&new);
        events.extend(ended);
        ops.extend(end_ops);
        let pending = self.policy.finish_update(
            new,
            update.document_toml.clone(),
            update.clone(),
            aggregates,
            || self.journal.submit(events, ops),
        );
        pending.done().await.map_err(|e| {
            tracing::error!(error = %e, "a policy update was enforced but could not be recorded: restart the coordinator");
            self.journal_error(e)
        })
    }

    /// Sends `update` to every signer; names the ones that did not take it.
    async fn push_policy(&self, update: &SignedPolicy) -> Result<(), ServiceError> {
        let results = self
            .client
            .call_each(
                self.client.all_signers(),
                self.cfg.tuning.probe_timeout(),
                |_| Command::UpdatePolicy {
                    update: update.clone(),
                },
            )
            .await;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|f| f.to_string()))
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(ServiceError::SigningFailed(format!(
            "the coordinator enforces the policy, but these signers did not take it (push it again when they are up): {}",
            failed.join("; ")
        )))
    }
}
