//! Treasury officers' approvals and rejections: verified at once (a bad one
//! is refused with the reason), then recorded with the decision they lead
//! to in one journal step, and the request moves on (signed when the
//! policy now allows it).

use keyfold_policy::{verify_approval, Approval};
use keyfold_proto::api::RequestStatus;

use super::lifecycle::Event as LifeEvent;
use super::{intake, Draft};
use crate::core::Coordinator;
use crate::service::ServiceError;

impl Coordinator {
    /// `POST /v1/requests/{id}/approvals`.
    pub(crate) async fn add_approval(
        &self,
        client: String,
        request_id: String,
        approval: Approval,
    ) -> Result<RequestStatus, ServiceError> {
        intake::check_request_ref("request_id", &request_id)?;
        {
            let _guard = self.locks.lock(&request_id).await;
            let loaded = self
                .load(&request_id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
            let mut draft = Draft::of(&loaded)?;
            // Only a request that waits takes approvals.
            self.step(&draft.snapshot, &LifeEvent::ApprovalRecorded)?;
            let known = self
                .approvals_of(&request_id)
                .await?
                .iter()
                .any(|a| a.nonce == approval.nonce);
            if !known {
                let policy = self.policy.current();
                let nonce = approval.nonce;
                let id = request_id.clone();
                let owner = self
                    .read(move |s| s.approval_nonce_owner(&nonce))
                    .await?
                    .filter(|o| *o != id);
                let seen = owner.iter().map(|_| nonce).collect();
                verify_approval(
                    &policy,
                    &draft.stored.request,
                    &approval,
                    self.clock.now_secs(),
                    &seen,
                )
                .map_err(|e| {
                    ServiceError::BadRequest(format!(
                        "approval by {} refused: {e}",
                        hex::encode(approval.approver)
                    ))
                })?;
                let decided = self.decide(&mut draft, Some(&approval)).await?;
                tracing::info!(
                    request = %request_id,
                    %client,
                    approver = %hex::encode(approval.approver),
                    decision = ?approval.decision,
                    state = %decided.snapshot.state,
                    "approval recorded"
                );
                match self.carry_out(&mut draft, &decided).await {
                    Ok(()) | Err(ServiceError::PolicyDenied(_)) => {}
                    Err(e) => {
                        tracing::warn!(request = %request_id, error = %e, "request did not advance")
                    }
                }
            }
        }
        self.request_status(&request_id).await
    }
}
