//! Payment orders: a merchant asks to be paid an amount of an asset on a
//! chain; the order gets its own deposit address, the chain watcher
//! ([`watcher`]) records what is paid to it, and its state follows
//! (`keyfold_chain::orders::evaluate`, pure).
//!
//! The deposit address is the non-hardened child `m/1/<n>` of the
//! merchant's collection key (an ECDSA threshold key), derived from its
//! public key and chain code alone: creating an order signs nothing and
//! needs no signer. `n` counts the orders of that key (merchants may share
//! one), so no two orders share an address, and the funds stay spendable by
//! the same threshold key (a payout with `derivation_path` `m/1/<n>`).
//!
//! Every change of an order's state writes a webhook event (`order.<state>`,
//! or `order.updated` when only its amounts or statuses change) in the same
//! transaction (see `keyfold_store::coordinator_webhooks`).

pub mod watcher;

use alloy_primitives::U256;
use keyfold_chain::amount::{format_amount, parse_amount};
use keyfold_chain::deposits::{eip681_native, eip681_token};
use keyfold_chain::orders::{evaluate, OrderState, OrderTerms, SeenDeposit};
use keyfold_chain::registry::{AssetRef, ChainEntry, ChainFamily};
use keyfold_proto::api::{CreateOrderRequest, DepositInfo, OrderInfo, OrderList};
use keyfold_store::{DepositRow, NewEvent, NewOrder, OrderRecorded, OrderRow, OrderUpdate};
use sha2::{Digest, Sha256};

use crate::core::Coordinator;
use crate::service::{Caller, CoordinatorApi, ServiceError, Tenant};

/// Default life of an order, seconds.
pub const DEFAULT_EXPIRES_IN: u64 = 3600;
/// Shortest and longest life of an order, seconds.
pub const EXPIRES_IN_RANGE: (u64, u64) = (60, 7 * 24 * 3600);
/// Largest `metadata`, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The branch of the collection key that order addresses derive from.
pub const ORDER_BRANCH: u32 = 1;

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

fn bad(m: impl Into<String>) -> ServiceError {
    ServiceError::BadRequest(m.into())
}

/// The merchant a caller acts for; orders are merchants' only.
fn merchant_of(caller: &Caller) -> Result<String, ServiceError> {
    match caller.tenant() {
        Tenant::Merchant(m) => Ok(m),
        Tenant::Operator => Err(ServiceError::BadRequest(
            "payment orders belong to a merchant: call with the merchant's API key".into(),
        )),
    }
}

/// What makes two submissions the same order.
fn fingerprint(
    entry: &ChainEntry,
    asset: &str,
    amount: U256,
    expires_in: u64,
    meta: &str,
) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"keyfold/order-fingerprint/v1\0");
    for part in [
        entry.id.as_str(),
        asset,
        &amount.to_string(),
        &expires_in.to_string(),
        meta,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_vec()
}

/// The Unix time as RFC 3339 (webhook payloads).
pub(crate) fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A row's amount (decimal base units), parsed.
fn units(field: &str, text: &str) -> Result<U256, ServiceError> {
    keyfold_chain::amount::parse_base_units(field, text).map_err(internal)
}

impl Coordinator {
    /// `POST /v1/orders`: the order, and whether it was created now.
    pub(crate) async fn create_order(
        &self,
        caller: Caller,
        req: CreateOrderRequest,
    ) -> Result<(bool, OrderInfo), ServiceError> {
        let merchant = merchant_of(&caller)?;
        crate::requests::intake::check_client_id("order_id", &req.order_id)?;
        let payments = self.payments()?.clone();
        // Sandbox keys on sandbox chains, live keys on live ones.
        let entry = payments.entry_for(&caller.tenant(), &req.chain)?.clone();
        if entry.family != ChainFamily::Evm {
            return Err(bad(format!(
                "chain {} is a {:?} chain: payment orders are taken on EVM chains",
                entry.id, entry.family
            )));
        }
        let chain_id = entry
            .chain_id
            .ok_or_else(|| internal(format!("EVM chain {} has no chain id", entry.id)))?;
        let asset = entry.asset(&req.asset).ok_or_else(|| {
            let mut known = vec![entry.native_symbol.clone()];
            known.extend(entry.tokens.iter().map(|t| t.symbol.clone()));
            bad(format!(
                "asset \"{}\" is not on chain {} (known: {})",
                req.asset.chars().take(32).collect::<String>(),
                entry.id,
                known.join(", ")
            ))
        })?;
        let decimals = entry.asset_decimals(asset);
        let symbol = entry.asset_symbol(asset).to_string();
        let token = match asset {
            AssetRef::Native => None,
            AssetRef::Token(t) => Some(entry.token_address(t).map_err(internal)?),
        };
        let amount =
            parse_amount("amount", &req.amount, decimals).map_err(|e| bad(e.to_string()))?;
        if amount.is_zero() {
            return Err(bad("amount must be more than 0"));
        }
        let expires_in = req.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        if !(EXPIRES_IN_RANGE.0..=EXPIRES_IN_RANGE.1).contains(&expires_in) {
            return Err(bad(format!(
                "expires_in must be {} to {} seconds",
                EXPIRES_IN_RANGE.0, EXPIRES_IN_RANGE.1
            )));
        }
        let metadata = match &req.metadata {
            None => None,
            Some(v @ serde_json::Value::Object(_)) => {
                let text = serde_json::to_string(v).map_err(internal)?;
                if text.len() > MAX_METADATA_BYTES {
                    return Err(bad(format!(
                        "metadata is {} bytes; at most {MAX_METADATA_BYTES}",
                        text.len()
                    )));
                }
                Some(text)
            }
            Some(_) => return Err(bad("metadata must be a JSON object")),
        };
        let m = merchant.clone();
        let key_id = self
            .read(move |s| s.collection_key(&m))
            .await?
            .ok_or_else(|| {
                bad(format!(
                    "merchant {merchant} has no collection key: the operator sets one \
                     (POST /v1/merchants/{merchant}/settings with collection_key)"
                ))
            })?;
        let key = self.key(&key_id)?;
        let fp = fingerprint(
            &entry,
            &symbol,
            amount,
            expires_in,
            metadata.as_deref().unwrap_or(""),
        );
        let now = self.now_unix();
        let new = NewOrder {
            merchant_id: merchant.clone(),
            order_id: req.order_id.clone(),
            fingerprint: fp.clone(),
            chain: entry.id.clone(),
            asset: symbol,
            token: token.map(|t| t.to_checksum(None)),
            decimals,
            amount: amount.to_string(),
            confirmations: entry.confirmations,
            created_at: now,
            expires_at: now.saturating_add(i64::try_from(expires_in).unwrap_or(i64::MAX)),
            metadata,
        };
        let kid = key_id.clone();
        let recorded = self
            .read(move |s| {
                s.insert_order(&new, &kid, |index| {
                    let path = format!("m/{ORDER_BRANCH}/{index}");
                    let address =
                        crate::payments::source_address(&key, Some(&path), ChainFamily::Evm)
                            .map_err(|e| keyfold_store::StoreError::InvalidInput {
                                field: "collection_key",
                                reason: e.to_string(),
                            })?;
                    let to =
                        keyfold_chain::evm::parse_address("address", &address).map_err(|e| {
                            keyfold_store::StoreError::InvalidInput {
                                field: "collection_key",
                                reason: e.to_string(),
                            }
                        })?;
                    let uri = match token {
                        None => eip681_native(to, chain_id, amount),
                        Some(t) => eip681_token(t, chain_id, to, amount),
                    };
                    Ok((address, path, uri))
                })
            })
            .await?;
        match recorded {
            OrderRecorded::New(row) => {
                tracing::info!(merchant = %row.merchant_id, order = %row.order_id, chain = %row.chain, address = %row.address, "order created");
                Ok((true, self.order_view(&row).await?))
            }
            OrderRecorded::Existing(row) if row.fingerprint == fp => {
                Ok((false, self.order_view(&row).await?))
            }
            OrderRecorded::Existing(_) => Err(ServiceError::Conflict(format!(
                "order_id {} was used for another order",
                req.order_id
            ))),
        }
    }

    /// `GET /v1/orders/{order_id}`.
    pub(crate) async fn get_order(
        &self,
        caller: Caller,
        order_id: String,
    ) -> Result<OrderInfo, ServiceError> {
        let merchant = merchant_of(&caller)?;
        crate::requests::intake::check_client_id("order_id", &order_id)?;
        let id = order_id.clone();
        let row = self
            .read(move |s| s.get_order(&merchant, &id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no order {order_id}")))?;
        self.order_view(&row).await
    }

    /// `GET /v1/orders`: newest first.
    pub(crate) async fn list_orders(
        &self,
        caller: Caller,
        state: Option<String>,
        cursor: Option<String>,
        limit: Option<usize>,
    ) -> Result<OrderList, ServiceError> {
        let merchant = merchant_of(&caller)?;
        if let Some(s) = &state {
            OrderState::parse(s).map_err(|_| {
                bad("state must be one of new, processing, settled, expired, invalid")
            })?;
        }
        let before = crate::requests::view::parse_cursor(cursor.as_deref())?;
        let limit = limit.unwrap_or(100).clamp(1, 500);
        let rows = self
            .read(move |s| {
                s.list_orders(
                    Some(&merchant),
                    state.as_deref(),
                    (None, None),
                    before,
                    limit + 1,
                )
            })
            .await?;
        let more = rows.len() > limit;
        let mut orders = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit) {
            last = Some(row.seq);
            orders.push(self.order_view(row).await?);
        }
        Ok(OrderList {
            orders,
            next_cursor: if more {
                last.map(|s| s.to_string())
            } else {
                None
            },
        })
    }

    /// The API view of an order, with its deposits' confirmations now.
    pub(crate) async fn order_view(&self, row: &OrderRow) -> Result<OrderInfo, ServiceError> {
        let (seq, chain) = (row.seq, row.chain.clone());
        let (deposits, head) = self
            .read(move |s| {
                let d = s.order_deposits(seq)?;
                let head = s.chain_head(&chain)?;
                Ok((d, head))
            })
            .await?;
        let chain_id = self
            .payments()
            .ok()
            .and_then(|p| p.registry().get(&row.chain).and_then(|e| e.chain_id));
        view(row, &deposits, head, chain_id)
    }
}

/// The API view of an order (pure).
pub fn view(
    row: &OrderRow,
    deposits: &[DepositRow],
    head: u64,
    chain_id: Option<u64>,
) -> Result<OrderInfo, ServiceError> {
    let amount = units("amount", &row.amount)?;
    Ok(OrderInfo {
        order_id: row.order_id.clone(),
        merchant_id: row.merchant_id.clone(),
        chain: row.chain.clone(),
        chain_id,
        asset: row.asset.clone(),
        token_contract: row.token.clone(),
        amount: format_amount(amount, row.decimals),
        amount_base_units: row.amount.clone(),
        address: row.address.clone(),
        payment_uri: row.payment_uri.clone(),
        status: row.state.clone(),
        additional_status: row
            .statuses
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        confirmed_base_units: row.confirmed_total.clone(),
        pending_base_units: row.pending_total.clone(),
        late_base_units: row.late_total.clone(),
        confirmations_required: row.confirmations,
        created_at: row.created_at,
        expires_at: row.expires_at,
        settled_at: row.settled_at,
        deposits: deposits
            .iter()
            .map(|d| {
                let a = units("deposit amount", &d.amount)?;
                Ok(DepositInfo {
                    tx_hash: d.tx_hash.clone(),
                    log_index: u64::try_from(d.log_index).ok(),
                    amount: format_amount(a, row.decimals),
                    amount_base_units: d.amount.clone(),
                    block_number: d.block_number,
                    confirmations: if d.removed_at.is_some() || d.block_number > head {
                        0
                    } else {
                        head - d.block_number + 1
                    },
                    seen_at: d.first_seen_at,
                    removed: d.removed_at.is_some(),
                })
            })
            .collect::<Result<_, ServiceError>>()?,
        metadata: row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
    })
}

/// An order's next state from its live deposits (pure): the store update,
/// with the webhook event when the state or the amounts changed.
pub fn next_state(
    row: &OrderRow,
    deposits: &[DepositRow],
    head: u64,
    now: i64,
    chain_id: Option<u64>,
    event_id: impl FnOnce() -> String,
) -> Result<OrderUpdate, ServiceError> {
    let terms = OrderTerms {
        amount: units("amount", &row.amount)?,
        expires_at: u64::try_from(row.expires_at).unwrap_or(0),
        confirmations: row.confirmations,
    };
    let seen = deposits
        .iter()
        .map(|d| {
            Ok(SeenDeposit {
                amount: units("deposit amount", &d.amount)?,
                block_number: d.block_number,
                first_seen_at: u64::try_from(d.first_seen_at).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, ServiceError>>()?;
    let previous = OrderState::parse(&row.state).ok();
    let st = evaluate(
        previous,
        &terms,
        &seen,
        head,
        u64::try_from(now).unwrap_or(0),
    );
    let mut next = row.clone();
    next.state = st.state.as_str().to_string();
    next.statuses = st.statuses().join(" ");
    next.confirmed_total = st.confirmed_total.to_string();
    next.pending_total = st.pending_total.to_string();
    next.late_total = st.late_total.to_string();
    if st.state == OrderState::Settled && next.settled_at.is_none() {
        next.settled_at = Some(now);
    }
    let changed_state = next.state != row.state;
    let changed = changed_state
        || next.statuses != row.statuses
        || next.confirmed_total != row.confirmed_total
        || next.pending_total != row.pending_total
        || next.late_total != row.late_total;
    let event = if changed {
        let event_type = if changed_state {
            format!("order.{}", next.state)
        } else {
            "order.updated".to_string()
        };
        let data = view(&next, deposits, head, chain_id)?;
        let payload = serde_json::json!({
            "type": event_type,
            "timestamp": rfc3339(now),
            "data": data,
        });
        Some(NewEvent {
            event_id: event_id(),
            merchant_id: row.merchant_id.clone(),
            event_type,
            payload: serde_json::to_string(&payload).map_err(internal)?,
        })
    } else {
        None
    };
    // For the ledger: every confirmed deposit is held for the merchant
    // (pending); a settled order's on-time total is available to it.
    let funds = seen
        .iter()
        .filter(|d| d.is_confirmed(&terms, head))
        .fold(U256::ZERO, |t, d| t.saturating_add(d.amount));
    let as_u128 = |v: U256| u128::try_from(v).unwrap_or(u128::MAX);
    let booking = keyfold_store::OrderBooking {
        funds: as_u128(funds),
        available: if st.state == OrderState::Settled {
            as_u128(st.confirmed_total)
        } else {
            0
        },
        keep_available: st.state == OrderState::Invalid,
    };
    Ok(OrderUpdate {
        booking: Some(booking),
        state: next.state,
        statuses: next.statuses,
        confirmed_total: next.confirmed_total,
        pending_total: next.pending_total,
        late_total: next.late_total,
        settled_at: next.settled_at,
        event,
    })
}
