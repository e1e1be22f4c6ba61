//! Conditional payouts (escrow, `docs/programmable.md`): a payout held until
//! its typed condition holds (a deadline, named approvers, an order that
//! settles, a confirmed token transfer into an address), then paid as an
//! ordinary payout `<escrow_id>.pay`; given up when it can no longer hold
//! (cancelled, or refunded as `<escrow_id>.refund`).
//!
//! The condition and its judgement are `keyfold_programmable::condition`
//! (pure, time as an input); this module stores escrows, serves the API
//! and gathers the facts the runner ([`runner`]) judges them with. Every
//! step is an `escrow` audit event naming why, so an auditor can replay
//! why a held payout was released.

pub mod runner;

use keyfold_audit::Event;
use keyfold_programmable::condition::{Condition, OnExpiry};
use keyfold_proto::api::{
    ConditionalPayoutInfo, CreateConditionalPayout, PayoutRequest, ScheduledPayout,
};
use keyfold_store::{EscrowOp, EscrowRow, Op, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::schedules::MAX_SCHEDULE_ID;
use crate::service::{Caller, ServiceError, Tenant};
use crate::Coordinator;

/// What an escrow pays and when: stored with it and logged with its
/// `created` event, never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// What is paid once the condition holds.
    pub payout: ScheduledPayout,
    /// The condition, its expiry and what happens then.
    pub escrow: keyfold_programmable::condition::Escrow,
}

impl Spec {
    fn parse(row: &EscrowRow) -> Result<Spec, ServiceError> {
        serde_json::from_str(&row.spec_json).map_err(|e| {
            ServiceError::Internal(format!("escrow {}: stored spec: {e}", row.escrow_id))
        })
    }

    /// The payout the escrow becomes: `<id>.pay` to its recipient, or
    /// `<id>.refund` to the refund address.
    pub fn payout_request(&self, escrow_id: &str, refund_to: Option<&str>) -> PayoutRequest {
        let p = &self.payout;
        PayoutRequest {
            payout_id: match refund_to {
                Some(_) => format!("{escrow_id}.refund"),
                None => format!("{escrow_id}.pay"),
            },
            wallet: p.wallet.clone(),
            chain: p.chain.clone(),
            asset: p.asset.clone(),
            to: refund_to.unwrap_or(&p.to).to_string(),
            amount: p.amount.clone(),
            reference: p.reference.clone(),
            recent_blockhash: None,
            derivation_path: p.derivation_path.clone(),
            client: None,
        }
    }
}

/// An operation of `/v1/conditional-payouts`.
#[derive(Debug, Clone)]
pub enum EscrowApiOp {
    /// `POST /v1/conditional-payouts`.
    Create(Box<CreateConditionalPayout>),
    /// `GET /v1/conditional-payouts/{id}`.
    Get(String),
    /// `POST /v1/conditional-payouts/{id}/release`: the caller, one of the
    /// named approvers, releases it.
    Release(String),
    /// `POST /v1/conditional-payouts/{id}/cancel`.
    Cancel(String),
}

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

fn json<T: Serialize>(v: &T) -> Result<String, ServiceError> {
    serde_json::to_string(v).map_err(|e| ServiceError::Internal(e.to_string()))
}

fn now_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The `escrow` audit event.
pub(crate) fn event(escrow_id: &str, action: &str, detail: String) -> Event {
    Event::Escrow {
        escrow_id: escrow_id.to_string(),
        action: action.to_string(),
        detail,
    }
}

impl Coordinator {
    /// Serves `/v1/conditional-payouts`.
    pub(crate) async fn escrow_api(
        &self,
        caller: Caller,
        op: EscrowApiOp,
    ) -> Result<ConditionalPayoutInfo, ServiceError> {
        match op {
            EscrowApiOp::Create(req) => self.create_escrow(caller, *req).await,
            EscrowApiOp::Get(id) => {
                let row = self.visible_escrow(&caller.tenant(), &id).await?;
                Self::escrow_view(row)
            }
            EscrowApiOp::Release(id) => self.release_escrow(caller, id).await,
            EscrowApiOp::Cancel(id) => self.cancel_escrow(caller, id).await,
        }
    }

    fn escrow_view(row: EscrowRow) -> Result<ConditionalPayoutInfo, ServiceError> {
        let spec = Spec::parse(&row)?;
        Ok(ConditionalPayoutInfo {
            escrow_id: row.escrow_id,
            state: row.state,
            payout: spec.payout,
            escrow: spec.escrow,
            released_by: row.released_by,
            reason: row.reason,
            payout_id: row.payout_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    async fn visible_escrow(&self, tenant: &Tenant, id: &str) -> Result<EscrowRow, ServiceError> {
        crate::requests::intake::check_client_id("escrow_id", id)?;
        let eid = id.to_string();
        self.read(move |s| s.escrow(&eid))
            .await?
            .filter(|r| tenant.sees(r.merchant_id.as_deref()))
            .ok_or_else(|| ServiceError::NotFound(format!("no conditional payout {id:?}")))
    }

    /// Logs `event` and applies `op` in one journal group, durably.
    pub(crate) async fn write_escrow(
        &self,
        event: Event,
        op: EscrowOp,
    ) -> Result<(), ServiceError> {
        match self
            .journal
            .submit_durable(vec![event], vec![Op::Escrow(op)])
            .done()
            .await
        {
            Ok(()) => Ok(()),
            Err(crate::journal::JournalError::Store(e)) => match &*e {
                StoreError::Conflict { what, id } => Err(ServiceError::Conflict(format!(
                    "{what} {id}: it was changed meanwhile"
                ))),
                other => Err(ServiceError::BadRequest(other.to_string())),
            },
            Err(e) => Err(ServiceError::AuditUnavailable(format!(
                "conditional payout change not recorded: {e}"
            ))),
        }
    }

    async fn create_escrow(
        &self,
        caller: Caller,
        req: CreateConditionalPayout,
    ) -> Result<ConditionalPayoutInfo, ServiceError> {
        let tenant = caller.tenant();
        crate::requests::intake::check_client_id("escrow_id", &req.escrow_id)?;
        if req.escrow_id.len() > MAX_SCHEDULE_ID {
            return Err(bad(format!(
                "escrow_id must be at most {MAX_SCHEDULE_ID} characters"
            )));
        }
        let now = self.clock.now_secs();
        req.escrow.check(now).map_err(|e| bad(e.to_string()))?;
        let payments = self.payments()?.clone();
        let entry = payments.entry_for(&tenant, &req.payout.chain)?.clone();
        if entry.family != keyfold_chain::registry::ChainFamily::Evm {
            return Err(bad(format!(
                "payout.chain: {} is not an EVM chain; a Solana transfer needs a recent blockhash at payment time",
                entry.id
            )));
        }
        let spec = Spec {
            payout: req.payout,
            escrow: req.escrow,
        };
        let check = |r: PayoutRequest, what: &str| {
            crate::payments::payout::check(&r, &entry).map_err(|e| match e {
                ServiceError::BadRequest(m) => bad(format!("{what}: {m}")),
                other => other,
            })
        };
        check(spec.payout_request(&req.escrow_id, None), "payout")?;
        if let OnExpiry::Refund { to } = &spec.escrow.on_expiry {
            check(
                spec.payout_request(&req.escrow_id, Some(to)),
                "on_expiry.to",
            )?;
        }
        self.check_key_visible(&tenant, &spec.payout.wallet).await?;
        self.key(&spec.payout.wallet)?;
        // The facts a condition names must be ones this coordinator sees.
        let mut from_block = None;
        match &spec.escrow.condition {
            Condition::OrderSettled { .. } if tenant.merchant().is_none() => {
                return Err(bad(
                    "condition.order_id: an order belongs to a merchant; only a merchant's key can wait for one",
                ));
            }
            Condition::TokenTransfer {
                chain, asset, to, ..
            } => {
                let e = payments.entry(chain)?;
                match e.asset(asset) {
                    Some(keyfold_chain::registry::AssetRef::Token(_)) => {}
                    _ => {
                        return Err(bad(format!(
                            "condition.asset: {asset} is not a token of chain {chain} (a token_transfer condition watches an ERC-20's Transfer logs)"
                        )))
                    }
                }
                keyfold_chain::evm::parse_address("condition.to", to)
                    .map_err(|e| bad(e.to_string()))?;
                let rpc = payments.rpc_of(&e.id).ok_or_else(|| {
                    bad(format!(
                        "condition.chain: chain {chain} has no RPC to watch"
                    ))
                })?;
                from_block =
                    Some(rpc.block_number().await.map_err(|e| {
                        ServiceError::ChainUnavailable(format!("chain {chain}: {e}"))
                    })?);
            }
            _ => {}
        }
        let fingerprint = Sha256::digest(json(&spec)?).to_vec();
        let _guard = self.locks.lock(&format!("escrow/{}", req.escrow_id)).await;
        let eid = req.escrow_id.clone();
        if let Some(row) = self.read(move |s| s.escrow(&eid)).await? {
            if row.fingerprint != fingerprint || row.merchant_id.as_deref() != tenant.merchant() {
                return Err(ServiceError::Conflict(format!(
                    "escrow_id {} was used for another conditional payout",
                    req.escrow_id
                )));
            }
            return Self::escrow_view(row);
        }
        let at = now_i64(now);
        let row = EscrowRow {
            escrow_id: req.escrow_id.clone(),
            merchant_id: tenant.merchant().map(str::to_string),
            client: caller.client().to_string(),
            fingerprint,
            spec_json: json(&spec)?,
            state: "held".into(),
            released_by: Vec::new(),
            from_block,
            reason: None,
            payout_id: None,
            created_at: at,
            updated_at: at,
        };
        let detail = json(&serde_json::json!({
            "merchant_id": row.merchant_id,
            "client": row.client,
            "spec": spec,
        }))?;
        self.write_escrow(
            event(&row.escrow_id, "created", detail),
            EscrowOp::Insert(row.clone()),
        )
        .await?;
        tracing::info!(escrow = %row.escrow_id, client = %row.client, "conditional payout held");
        Self::escrow_view(row)
    }

    async fn release_escrow(
        &self,
        caller: Caller,
        id: String,
    ) -> Result<ConditionalPayoutInfo, ServiceError> {
        let tenant = caller.tenant();
        let _guard = self.locks.lock(&format!("escrow/{id}")).await;
        let row = self.visible_escrow(&tenant, &id).await?;
        let spec = Spec::parse(&row)?;
        let Condition::Approvers { approvers, .. } = &spec.escrow.condition else {
            return Err(ServiceError::Conflict(format!(
                "conditional payout {id} is not released by approvers"
            )));
        };
        let client = caller.client().to_string();
        if !approvers.contains(&client) {
            return Err(ServiceError::Forbidden(format!(
                "API client {client} is not one of the approvers of conditional payout {id} ({})",
                approvers.join(", ")
            )));
        }
        if row.state != "held" {
            return Err(ServiceError::Conflict(format!(
                "conditional payout {id} is {}",
                row.state
            )));
        }
        if !row.released_by.contains(&client) {
            let at = now_i64(self.clock.now_secs());
            self.write_escrow(
                event(&id, "approved", json(&serde_json::json!({ "by": client }))?),
                EscrowOp::AddRelease {
                    escrow_id: id.clone(),
                    client,
                    at,
                },
            )
            .await?;
        }
        drop(_guard);
        // Judged at once, not at the next pass.
        self.judge_escrow(&id).await?;
        let row = self.visible_escrow(&tenant, &id).await?;
        Self::escrow_view(row)
    }

    async fn cancel_escrow(
        &self,
        caller: Caller,
        id: String,
    ) -> Result<ConditionalPayoutInfo, ServiceError> {
        let tenant = caller.tenant();
        let _guard = self.locks.lock(&format!("escrow/{id}")).await;
        let row = self.visible_escrow(&tenant, &id).await?;
        if row.state == "cancelled" {
            return Self::escrow_view(row);
        }
        if row.state != "held" {
            return Err(ServiceError::Conflict(format!(
                "conditional payout {id} is {}; only a held one can be cancelled",
                row.state
            )));
        }
        let reason = format!("cancelled by {}", caller.client());
        let at = now_i64(self.clock.now_secs());
        self.write_escrow(
            event(
                &id,
                "cancelled",
                json(&serde_json::json!({ "reason": reason }))?,
            ),
            EscrowOp::End {
                escrow_id: id.clone(),
                state: "cancelled".into(),
                reason,
                payout_id: None,
                at,
            },
        )
        .await?;
        let row = self.visible_escrow(&tenant, &id).await?;
        Self::escrow_view(row)
    }
}

/// Catching up with the audit log at start: the store write an `escrow`
/// event describes, if the store lacks it (see `crate::recovery`). `ended`
/// holds the escrows an earlier op of the same catch-up ended.
pub(crate) fn recovery_op(
    store: &keyfold_store::CoordinatorStore,
    created: &mut std::collections::HashSet<String>,
    event: &Event,
    at_secs: i64,
) -> Result<Option<EscrowOp>, String> {
    let Event::Escrow {
        escrow_id,
        action,
        detail,
    } = event
    else {
        return Ok(None);
    };
    let bad = |e: &dyn std::fmt::Display| format!("escrow {escrow_id} {action}: {e}");
    let row = store.escrow(escrow_id).map_err(|e| bad(&e))?;
    let v: serde_json::Value = serde_json::from_str(detail).map_err(|e| bad(&e))?;
    let held = row.as_ref().is_some_and(|r| r.state == "held") || created.contains(escrow_id);
    Ok(match action.as_str() {
        "created" if row.is_none() => {
            let spec: Spec = serde_json::from_value(v["spec"].clone()).map_err(|e| bad(&e))?;
            let spec_json = serde_json::to_string(&spec).map_err(|e| bad(&e))?;
            created.insert(escrow_id.clone());
            Some(EscrowOp::Insert(EscrowRow {
                escrow_id: escrow_id.clone(),
                merchant_id: v["merchant_id"].as_str().map(str::to_string),
                client: v["client"].as_str().unwrap_or_default().to_string(),
                fingerprint: Sha256::digest(spec_json.as_bytes()).to_vec(),
                spec_json,
                state: "held".into(),
                released_by: Vec::new(),
                // Where a transfer condition looks from is not logged: from
                // the head, at the next pass.
                from_block: None,
                reason: None,
                payout_id: None,
                created_at: at_secs,
                updated_at: at_secs,
            }))
        }
        "approved" if held => v["by"].as_str().map(|by| EscrowOp::AddRelease {
            escrow_id: escrow_id.clone(),
            client: by.to_string(),
            at: at_secs,
        }),
        "released" | "expired" | "cancelled" if held => {
            created.remove(escrow_id);
            Some(EscrowOp::End {
                escrow_id: escrow_id.clone(),
                state: action.clone(),
                reason: v["reason"].as_str().unwrap_or_default().to_string(),
                payout_id: v["payout_id"].as_str().map(str::to_string),
                at: at_secs,
            })
        }
        _ => None,
    })
}
