//! The risk module's API on the coordinator: the review queue
//! (`GET /v1/reviews`, `POST /v1/reviews/{request_id}`) and freezes
//! (`GET /v1/freezes`, `POST /v1/freezes`, `POST /v1/freezes/{id}/lift`).
//!
//! Reviews and lifts are officers' signed acts (`keyfold_risk::officer`),
//! verified against the approvers of the policy in force; the API client
//! that carries them must be an operator, but it is the signature, not the
//! client, that decides who acted.

use std::sync::Arc;

use keyfold_audit::Event;
use keyfold_proto::api::{
    FreezeInfo, FreezeList, NewFreeze, ReviewEntry, ReviewInfo, ReviewList, RiskSummary,
};
use keyfold_risk::{
    Decision, FreezeLift, FreezeScope, OfficerSet, ReviewVerdict, RiskRequest, SignedReview,
};
use keyfold_store::{FreezeRow, Op, RiskOp};

use super::{freeze_event, Risk, MODULE};
use crate::requests::lifecycle::{Canceller, Event as LifeEvent};
use crate::service::{Caller, RiskAnswer, RiskApiOp, ServiceError};
use crate::Coordinator;

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

fn operator(caller: &Caller) -> Result<(), ServiceError> {
    match caller {
        Caller::Operator(_) => Ok(()),
        // Merchants never see the review queue or freezes: they hold other
        // merchants' subjects.
        Caller::Merchant(_) => Err(ServiceError::NotFound("no such resource".into())),
    }
}

fn freeze_info(f: FreezeRow) -> FreezeInfo {
    FreezeInfo {
        freeze_id: f.freeze_id,
        scope: f.scope,
        subject: f.subject,
        reason: f.reason,
        request_id: f.request_id,
        added_by: f.added_by,
        added_at: f.added_at,
        lifted_at: f.lifted_at,
        lifted_by: f
            .lifted_by
            .map(|s| s.split(", ").map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(ServiceError::BadRequest(format!(
            "{field} must be 1..={max} printable characters"
        )));
    }
    Ok(())
}

impl Coordinator {
    pub(crate) fn risk_module(&self) -> Result<&Arc<Risk>, ServiceError> {
        self.risk
            .as_ref()
            .ok_or_else(|| ServiceError::NotFound("this coordinator has no risk module".into()))
    }

    fn officers(&self) -> Result<OfficerSet, ServiceError> {
        let risk = self.risk_module()?;
        OfficerSet::from_policy(
            &self.policy.current(),
            risk.config().officers_group.as_deref(),
        )
        .map_err(|e| ServiceError::PolicyDenied(e.to_string()))
    }

    /// Serves one risk API operation.
    pub(crate) async fn risk_api(
        &self,
        caller: Caller,
        op: RiskApiOp,
    ) -> Result<RiskAnswer, ServiceError> {
        operator(&caller)?;
        match op {
            RiskApiOp::Reviews => Ok(RiskAnswer::Reviews(self.reviews().await?)),
            RiskApiOp::Review(id, review) => Ok(RiskAnswer::Review(Box::new(
                self.review(caller.client(), id, review).await?,
            ))),
            RiskApiOp::Freezes { all } => {
                let rows = self
                    .read(move |s| s.freezes(!all, keyfold_store::MAX_RISK_PAGE))
                    .await?;
                Ok(RiskAnswer::Freezes(FreezeList {
                    freezes: rows.into_iter().map(freeze_info).collect(),
                }))
            }
            RiskApiOp::AddFreeze(f) => Ok(RiskAnswer::Freeze(
                self.add_freeze(caller.client(), f).await?,
            )),
            RiskApiOp::LiftFreeze(id, lift) => {
                Ok(RiskAnswer::Freeze(self.lift_freeze(id, lift).await?))
            }
            RiskApiOp::Tree => {
                let v = self.risk_module()?.tree().version();
                let row = self.read(|s| s.latest_risk_tree()).await?;
                let (version, document, _) =
                    row.ok_or_else(|| internal(format!("risk tree {v} is not in the store")))?;
                Ok(RiskAnswer::Tree { version, document })
            }
            RiskApiOp::UpdateTree(signed) => {
                let version = self.update_tree(signed).await?;
                let row = self.read(|s| s.latest_risk_tree()).await?;
                let document = row.map(|r| r.1).unwrap_or_default();
                Ok(RiskAnswer::Tree { version, document })
            }
        }
    }

    /// Puts a new tree in force: signed by the admin quorum of the policy in
    /// force, its version above the current one. Recorded (with the signed
    /// update, which the auditor verifies) before it decides anything.
    async fn update_tree(&self, signed: keyfold_risk::SignedTree) -> Result<u64, ServiceError> {
        let risk = self.risk_module()?.clone();
        let admins = keyfold_risk::AdminSet::from_policy(&self.policy.current()).map_err(|e| {
            ServiceError::PolicyDenied(format!("no admins to sign risk trees: {e}"))
        })?;
        let update_json = serde_json::to_string(&signed).map_err(internal)?;
        let at = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        risk.replace_tree(&signed, &admins, update_json, at).await
    }

    /// The review view of request `request_id` from its decision row.
    async fn review_info(
        &self,
        row: keyfold_store::RiskDecisionRow,
    ) -> Result<ReviewInfo, ServiceError> {
        let input: RiskRequest = serde_json::from_str(&row.input_json).map_err(internal)?;
        let decision: Decision = serde_json::from_str(&row.decision_json).map_err(internal)?;
        let loaded = self
            .load(&row.request_id)
            .await?
            .ok_or_else(|| internal(format!("held request {} vanished", row.request_id)))?;
        let id = row.request_id.clone();
        let reviews = self.read(move |s| s.reviews_of(&id)).await?;
        let payout_id = row
            .request_id
            .strip_prefix(crate::payments::payout::REQUEST_PREFIX)
            .map(str::to_string);
        Ok(ReviewInfo {
            request_id: row.request_id.clone(),
            payout_id,
            state: loaded.state,
            wallet: input.payment.wallet,
            asset: input.payment.asset,
            amount_base_units: input.payment.amount.to_string(),
            destination: input.payment.destination,
            held_at: row.at,
            expires_at: loaded.life.expires_at.and_then(|e| i64::try_from(e).ok()),
            risk: RiskSummary {
                seq: row.seq,
                score: decision.score,
                action: decision.action.name().to_string(),
                reasons: decision.reasons.iter().map(|r| r.rule.clone()).collect(),
                tree_version: decision.tree_version,
                code: Some("risk_review".into()),
                freeze_id: None,
            },
            reviews: reviews
                .into_iter()
                .map(|r| ReviewEntry {
                    officer: r.officer,
                    verdict: r.verdict,
                    at: r.at,
                })
                .collect(),
        })
    }

    /// `GET /v1/reviews`: requests held for review, oldest first.
    async fn reviews(&self) -> Result<ReviewList, ServiceError> {
        self.risk_module()?;
        let rows = self
            .read(|s| s.held_for_review(keyfold_store::MAX_RISK_PAGE))
            .await?;
        let mut reviews = Vec::with_capacity(rows.len());
        for row in rows {
            reviews.push(self.review_info(row).await?);
        }
        Ok(ReviewList { reviews })
    }

    /// `POST /v1/reviews/{request_id}`: an officer's signed review of a
    /// held request. `approve` releases it to the policy, `reject` cancels
    /// it, `escalate` records the review and leaves it held.
    async fn review(
        &self,
        client: &str,
        request_id: String,
        review: SignedReview,
    ) -> Result<ReviewInfo, ServiceError> {
        crate::requests::intake::check_request_ref("request_id", &request_id)?;
        let officers = self.officers()?;
        let now = self.clock.now_secs();
        let officer = review
            .verify(&officers, &request_id, now)
            .map_err(|e| ServiceError::PolicyDenied(format!("review refused: {e}")))?
            .to_string();
        let id = request_id.clone();
        let row = self
            .read(move |s| s.risk_decision(&id))
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("no risk decision for request {request_id}"))
            })?;
        let loaded = self
            .load(&request_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
        if !loaded.life.holds.contains(MODULE) {
            return Err(ServiceError::Conflict(format!(
                "request {request_id} is not held for review (it is {})",
                loaded.state
            )));
        }
        let nonce = review.nonce;
        if self.read(move |s| s.review_nonce_used(&nonce)).await? {
            return Err(ServiceError::Conflict(
                "this review's nonce was used already: sign a new one".into(),
            ));
        }
        let review_json = serde_json::to_string(&review).map_err(internal)?;
        let verdict = review.verdict.name().to_string();
        self.journal
            .write(
                vec![Event::Review {
                    request_id: request_id.clone(),
                    officer: officer.clone(),
                    verdict: verdict.clone(),
                    signed: review_json.clone(),
                }],
                vec![Op::Risk(RiskOp::AddReview {
                    nonce: review.nonce,
                    request_id: request_id.clone(),
                    officer: officer.clone(),
                    verdict: verdict.clone(),
                    review_json,
                    at: i64::try_from(now).unwrap_or(i64::MAX),
                })],
            )
            .await
            .map_err(|e| self.journal_error(e))?;
        tracing::info!(request = %request_id, %officer, %verdict, %client, "risk review");
        match review.verdict {
            ReviewVerdict::Approve => self.release(&request_id, MODULE).await?,
            ReviewVerdict::Reject => {
                self.apply(
                    &request_id,
                    LifeEvent::Cancel {
                        by: Canceller::Officer(officer.clone()),
                        reason: format!("rejected in risk review by {officer}"),
                    },
                )
                .await?
            }
            ReviewVerdict::Escalate => {}
        }
        self.review_info(row).await
    }

    /// `POST /v1/freezes`: an operator freezes a subject at once (no
    /// officer needed to add a freeze; two to lift it).
    async fn add_freeze(&self, client: &str, f: NewFreeze) -> Result<FreezeInfo, ServiceError> {
        let risk = self.risk_module()?.clone();
        let scope = FreezeScope::from_name(&f.scope).ok_or_else(|| {
            ServiceError::BadRequest(format!(
                "scope {:?} is not one of customer, device, wallet, merchant",
                f.scope
            ))
        })?;
        check_text("subject", &f.subject, keyfold_risk::MAX_ID_BYTES)?;
        check_text("reason", &f.reason, 256)?;
        // Customers and devices are known by pseudonyms; an operator names
        // them as the merchant does, together with the merchant.
        let subject = match scope {
            keyfold_risk::FreezeScope::Customer | keyfold_risk::FreezeScope::Device => {
                let (merchant, id) = match f.subject.split_once('/') {
                    Some((m, id)) => (Some(m), id),
                    None => (None, f.subject.as_str()),
                };
                let kind = if scope == keyfold_risk::FreezeScope::Customer {
                    "cu"
                } else {
                    "dv"
                };
                risk.key().pseudonym(kind, merchant, id)
            }
            _ => f.subject.clone(),
        };
        if let Some(id) = risk.frozen(scope, &subject) {
            return Err(ServiceError::Conflict(format!(
                "this {} is frozen already ({id})",
                scope.name()
            )));
        }
        let mut nonce = [0u8; 8];
        rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut nonce).map_err(internal)?;
        let row = FreezeRow {
            freeze_id: format!("frz-m{}", hex::encode(nonce)),
            scope: scope.name().to_string(),
            subject: subject.clone(),
            reason: f.reason,
            request_id: None,
            added_by: client.to_string(),
            added_at: i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX),
            lifted_at: None,
            lifted_by: None,
            lift_json: None,
        };
        self.journal
            .write(
                vec![freeze_event(&row, "added", vec![client.to_string()], None)],
                vec![Op::Risk(RiskOp::AddFreeze(row.clone()))],
            )
            .await
            .map_err(|e| self.journal_error(e))?;
        risk.set_frozen(scope, &subject, Some(&row.freeze_id));
        risk.push_freeze(&row);
        tracing::warn!(freeze = %row.freeze_id, scope = scope.name(), %client, "freeze added");
        Ok(freeze_info(row))
    }

    /// `POST /v1/freezes/{id}/lift`: two officers' signatures lift it.
    async fn lift_freeze(
        &self,
        freeze_id: String,
        lift: FreezeLift,
    ) -> Result<FreezeInfo, ServiceError> {
        let risk = self.risk_module()?.clone();
        crate::requests::intake::check_request_ref("freeze_id", &freeze_id)?;
        let id = freeze_id.clone();
        let row = self
            .read(move |s| s.freeze(&id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no freeze {freeze_id}")))?;
        if row.lifted_at.is_some() {
            return Err(ServiceError::Conflict(format!(
                "freeze {freeze_id} was lifted already"
            )));
        }
        let scope = FreezeScope::from_name(&row.scope)
            .ok_or_else(|| internal(format!("freeze {freeze_id} has scope {}", row.scope)))?;
        let now = self.clock.now_secs();
        let names = lift
            .verify(&self.officers()?, &freeze_id, scope, &row.subject, now)
            .map_err(|e| ServiceError::PolicyDenied(format!("lift refused: {e}")))?;
        let lift_json = serde_json::to_string(&lift).map_err(internal)?;
        let pushed = lift_json.clone();
        let lifted_by = names.join(", ");
        self.journal
            .write(
                vec![freeze_event(
                    &row,
                    "lifted",
                    names.clone(),
                    Some(lift_json.clone()),
                )],
                vec![Op::Risk(RiskOp::LiftFreeze {
                    freeze_id: freeze_id.clone(),
                    lifted_by: lifted_by.clone(),
                    lift_json,
                    at: i64::try_from(now).unwrap_or(i64::MAX),
                })],
            )
            .await
            .map_err(|e| self.journal_error(e))?;
        risk.set_frozen(scope, &row.subject, None);
        risk.push_lift(&freeze_id, &pushed);
        tracing::warn!(freeze = %freeze_id, officers = %lifted_by, "freeze lifted");
        let id = freeze_id.clone();
        let row = self
            .read(move |s| s.freeze(&id))
            .await?
            .ok_or_else(|| internal(format!("freeze {freeze_id} vanished")))?;
        Ok(freeze_info(row))
    }
}
