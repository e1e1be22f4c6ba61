//! Webhook endpoints, the event outbox and its deliveries.
//!
//! An event is written by [`enqueue`] in the same transaction as the state
//! change that causes it (an order settling, a payout completing), with one
//! delivery row per enabled endpoint of its merchant whose filters match;
//! so a crash never loses an event nor sends one for a change that did not
//! commit. The delivery worker sends what is due, at least once, with the
//! event's id as `webhook-id` on every attempt, and records each attempt in
//! the delivery log. Endpoint secrets are kept here because the coordinator
//! signs with them.

use rusqlite::{params, OptionalExtension, Transaction};
use zeroize::Zeroizing;

use crate::coordinator::CoordinatorStore;
use crate::coordinator_merchants::check_merchant_id;
use crate::error::StoreError;
use crate::validate::{self, MAX_JSON_LEN};

/// Attempts of a delivery before it fails (the retry schedule's length).
pub const DEFAULT_MAX_ATTEMPTS: i64 = 10;
/// Most endpoints per merchant.
pub const MAX_ENDPOINTS_PER_MERCHANT: i64 = 20;

/// Migration 7 -> 8: webhook endpoints, events, deliveries and attempts.
pub(crate) const MIGRATION_8: &str = "CREATE TABLE webhook_endpoints (
        endpoint_id      TEXT PRIMARY KEY,
        merchant_id      TEXT NOT NULL REFERENCES merchants (merchant_id),
        url              TEXT NOT NULL,
        filters          TEXT NOT NULL,
        scheme           TEXT NOT NULL CHECK (scheme IN ('v1', 'v1a')),
        secret           TEXT NOT NULL,
        old_secret       TEXT,
        old_secret_until INTEGER,
        failing_since    INTEGER,
        failures         INTEGER NOT NULL DEFAULT 0,
        disabled_at      INTEGER,
        disabled_reason  TEXT,
        created_at       INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX endpoints_by_merchant ON webhook_endpoints (merchant_id);
    CREATE TABLE webhook_events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id    TEXT NOT NULL UNIQUE,
        merchant_id TEXT NOT NULL,
        type        TEXT NOT NULL,
        payload     TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX events_by_merchant ON webhook_events (merchant_id, seq);
    CREATE TABLE webhook_deliveries (
        event_id     TEXT NOT NULL REFERENCES webhook_events (event_id),
        endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (endpoint_id),
        state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        next_at      INTEGER NOT NULL,
        last_status  INTEGER,
        last_error   TEXT,
        delivered_at INTEGER,
        PRIMARY KEY (event_id, endpoint_id)
    ) STRICT;
    CREATE INDEX deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
    CREATE TABLE webhook_attempts (
        event_id    TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        n           INTEGER NOT NULL,
        at          INTEGER NOT NULL,
        status      INTEGER,
        error       TEXT,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (endpoint_id, event_id, n)
    ) STRICT;";

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Its id (`msg_...`): the `webhook-id` of every delivery attempt.
    pub event_id: String,
    /// The merchant it is for.
    pub merchant_id: String,
    /// `order.settled`, `payout.completed` ...
    pub event_type: String,
    /// The body sent (JSON).
    pub payload: String,
}

/// A webhook endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointRow {
    /// Its id (`we_...`).
    pub endpoint_id: String,
    /// Owner.
    pub merchant_id: String,
    /// Where deliveries go.
    pub url: String,
    /// Event filters.
    pub filters: Vec<String>,
    /// `v1` (HMAC-SHA256, `whsec_` secret) or `v1a` (Ed25519, `whsk_` key).
    pub scheme: String,
    /// The secret it signs with.
    pub secret: Zeroizing<String>,
    /// The previous secret, still used during a rotation's overlap.
    pub old_secret: Option<Zeroizing<String>>,
    /// End of the overlap.
    pub old_secret_until: Option<i64>,
    /// Start of the current run of failures.
    pub failing_since: Option<i64>,
    /// Failed attempts in a row.
    pub failures: i64,
    /// Disabled at.
    pub disabled_at: Option<i64>,
    /// Why.
    pub disabled_reason: Option<String>,
    /// Created.
    pub created_at: i64,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("endpoint_id", &self.endpoint_id)
            .field("merchant_id", &self.merchant_id)
            .field("url", &self.url)
            .field("filters", &self.filters)
            .field("scheme", &self.scheme)
            .field("disabled_at", &self.disabled_at)
            .finish_non_exhaustive()
    }
}

/// A delivery due now, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The event (`webhook-id`).
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The body.
    pub payload: String,
    /// When the event was made.
    pub event_created_at: i64,
    /// Attempts made so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// The endpoint.
    pub endpoint: EndpointRow,
}

/// A delivery (the state of one event at one endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Endpoint.
    pub endpoint_id: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt (pending).
    pub next_at: i64,
    /// Last HTTP status.
    pub last_status: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
    /// When delivered.
    pub delivered_at: Option<i64>,
    /// When the event was made.
    pub event_created_at: i64,
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Delivered (a 2xx answer).
    pub delivered: bool,
    /// What went wrong, for the log.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// When to try again, if attempts are left and it failed.
    pub retry_at: Option<i64>,
}

/// When an endpoint that keeps failing is disabled: after this many failed
/// attempts in a row, once the first of them is this old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// Failed attempts in a row.
    pub failures: i64,
    /// Seconds since the first of them.
    pub after_secs: i64,
}

/// Whether any of an endpoint's stored filters takes event type `t`
/// (filters that no longer parse take nothing).
fn takes(filters: &str, t: &keyfold_webhooks::filter::EventType) -> bool {
    filters
        .split(' ')
        .filter_map(|f| keyfold_webhooks::filter::parse_filter(f).ok())
        .any(|f| keyfold_webhooks::filter::matches(&f, t))
}

/// Writes `event` and a pending delivery for each enabled endpoint of its
/// merchant that takes it, in the caller's transaction.
pub(crate) fn enqueue(tx: &Transaction<'_>, event: &NewEvent, now: i64) -> Result<(), StoreError> {
    let err = |e| crate::db::map_err(std::path::Path::new("coordinator.db"), "enqueue_event", e);
    if event.payload.len() > MAX_JSON_LEN {
        return Err(StoreError::InvalidInput {
            field: "payload",
            reason: format!("longer than {MAX_JSON_LEN} bytes"),
        });
    }
    let n = tx
        .execute(
            "INSERT INTO webhook_events (event_id, merchant_id, type, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (event_id) DO NOTHING",
            params![
                event.event_id,
                event.merchant_id,
                event.event_type,
                event.payload,
                now
            ],
        )
        .map_err(err)?;
    if n == 0 {
        // Enqueued before: the same id is the same event.
        return Ok(());
    }
    let event_type =
        keyfold_webhooks::filter::EventType::parse(&event.event_type).map_err(|e| {
            StoreError::InvalidInput {
                field: "event_type",
                reason: e.to_string(),
            }
        })?;
    let endpoints: Vec<(String, String)> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT endpoint_id, filters FROM webhook_endpoints
                 WHERE merchant_id = ?1 AND disabled_at IS NULL",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([&event.merchant_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        rows
    };
    for (endpoint_id, filters) in endpoints {
        if takes(&filters, &event_type) {
            tx.execute(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, state, max_attempts, next_at)
                 VALUES (?1, ?2, 'pending', ?3, ?4)",
                params![event.event_id, endpoint_id, DEFAULT_MAX_ATTEMPTS, now],
            )
            .map_err(err)?;
        }
    }
    Ok(())
}

const ENDPOINT_COLUMNS: &str = "endpoint_id, merchant_id, url, filters, scheme, secret, \
     old_secret, old_secret_until, failing_since, failures, disabled_at, disabled_reason, created_at";

fn endpoint_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<EndpointRow> {
    let filters: String = r.get(at + 3)?;
    Ok(EndpointRow {
        endpoint_id: r.get(at)?,
        merchant_id: r.get(at + 1)?,
        url: r.get(at + 2)?,
        filters: filters
            .split(' ')
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect(),
        scheme: r.get(at + 4)?,
        secret: Zeroizing::new(r.get(at + 5)?),
        old_secret: r.get::<_, Option<String>>(at + 6)?.map(Zeroizing::new),
        old_secret_until: r.get(at + 7)?,
        failing_since: r.get(at + 8)?,
        failures: r.get(at + 9)?,
        disabled_at: r.get(at + 10)?,
        disabled_reason: r.get(at + 11)?,
        created_at: r.get(at + 12)?,
    })
}

/// A new endpoint.
#[derive(Clone)]
pub struct NewEndpoint {
    /// Its id.
    pub endpoint_id: String,
    /// Owner.
    pub merchant_id: String,
    /// URL (checked by the caller).
    pub url: String,
    /// Filters (checked by the caller).
    pub filters: Vec<String>,
    /// `v1` or `v1a`.
    pub scheme: String,
    /// Its secret (`whsec_...` or `whsk_...`).
    pub secret: Zeroizing<String>,
}

impl CoordinatorStore {
    /// Adds an endpoint.
    pub fn create_endpoint(&self, e: &NewEndpoint, now: i64) -> Result<EndpointRow, StoreError> {
        check_merchant_id(&e.merchant_id)?;
        validate::id("endpoint_id", &e.endpoint_id)?;
        self.db.durably("create_endpoint", |tx| {
            let err = self.db.err("create_endpoint");
            let count: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM webhook_endpoints WHERE merchant_id = ?1",
                    [&e.merchant_id],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if count >= MAX_ENDPOINTS_PER_MERCHANT {
                return Err(StoreError::InvalidInput {
                    field: "merchant_id",
                    reason: format!(
                        "the merchant has {MAX_ENDPOINTS_PER_MERCHANT} endpoints, the most allowed"
                    ),
                });
            }
            tx.execute(
                "INSERT INTO webhook_endpoints (endpoint_id, merchant_id, url, filters, scheme,
                     secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    e.endpoint_id,
                    e.merchant_id,
                    e.url,
                    e.filters.join(" "),
                    e.scheme,
                    e.secret.as_str(),
                    now
                ],
            )
            .map_err(&err)?;
            endpoint_by_id(tx, &e.merchant_id, &e.endpoint_id)
                .map_err(&err)?
                .ok_or_else(|| {
                    self.db.corrupt(
                        "webhook endpoint",
                        &e.endpoint_id,
                        "vanished after insert".into(),
                    )
                })
        })
    }

    /// A merchant's endpoint.
    pub fn get_endpoint(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<EndpointRow>, StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("endpoint_id", endpoint_id)?;
        endpoint_by_id(&self.db.reader(), merchant_id, endpoint_id)
            .map_err(self.db.err("get_endpoint"))
    }

    /// A merchant's endpoints.
    pub fn list_endpoints(&self, merchant_id: &str) -> Result<Vec<EndpointRow>, StoreError> {
        check_merchant_id(merchant_id)?;
        let err = self.db.err("list_endpoints");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = ?1
                 ORDER BY created_at, endpoint_id"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map([merchant_id], |r| endpoint_row(r, 0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Replaces an endpoint's secret; the old one keeps signing (a second
    /// signature) until `old_until`.
    pub fn rotate_endpoint_secret(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
        secret: &str,
        old_until: i64,
    ) -> Result<(), StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("endpoint_id", endpoint_id)?;
        let n = self.db.durably("rotate_endpoint_secret", |tx| {
            tx.execute(
                "UPDATE webhook_endpoints SET old_secret = secret, old_secret_until = ?3,
                     secret = ?4 WHERE merchant_id = ?1 AND endpoint_id = ?2",
                params![merchant_id, endpoint_id, old_until, secret],
            )
            .map_err(self.db.err("rotate_endpoint_secret"))
        })?;
        found(n, endpoint_id)
    }

    /// Enables or disables an endpoint (enabling clears its failure run).
    pub fn set_endpoint_enabled(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("endpoint_id", endpoint_id)?;
        let n = self.db.durably("set_endpoint_enabled", |tx| {
            let sql = if enabled {
                "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL,
                     failures = 0, failing_since = NULL WHERE merchant_id = ?1 AND endpoint_id = ?2
                     AND ?3 IS NOT NULL"
            } else {
                "UPDATE webhook_endpoints SET disabled_at = ?3, disabled_reason = 'disabled by the merchant'
                     WHERE merchant_id = ?1 AND endpoint_id = ?2"
            };
            tx.execute(sql, params![merchant_id, endpoint_id, now])
                .map_err(self.db.err("set_endpoint_enabled"))
        })?;
        found(n, endpoint_id)
    }

    /// Deliveries due at `now`, oldest first, at most `limit`.
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<DueDelivery>, StoreError> {
        let err = self.db.err("due_deliveries");
        let conn = self.db.reader();
        let cols = ENDPOINT_COLUMNS
            .split(", ")
            .map(|c| format!("w.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT d.event_id, e.type, e.payload, e.created_at, d.attempts, d.max_attempts, {cols}
                 FROM webhook_deliveries d
                 JOIN webhook_events e ON e.event_id = d.event_id
                 JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id
                 WHERE d.state = 'pending' AND d.next_at <= ?1 AND w.disabled_at IS NULL
                 ORDER BY d.next_at, e.seq LIMIT ?2"
            ))
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![now, i64::try_from(limit).unwrap_or(100)], |r| {
                Ok(DueDelivery {
                    event_id: r.get(0)?,
                    event_type: r.get(1)?,
                    payload: r.get(2)?,
                    event_created_at: r.get(3)?,
                    attempts: r.get(4)?,
                    max_attempts: r.get(5)?,
                    endpoint: endpoint_row(r, 6)?,
                })
            })
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Claims a due delivery for one attempt: moves its next attempt to
    /// `lease_until` (so no other round picks it meanwhile) if it is still
    /// pending after `attempts` attempts; `false` if it is not (it was just
    /// delivered or attempted by another round).
    pub fn claim_delivery(
        &self,
        event_id: &str,
        endpoint_id: &str,
        attempts: i64,
        now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let n = self.db.write("claim_delivery", |tx| {
            tx.execute(
                "UPDATE webhook_deliveries SET next_at = ?5
                 WHERE event_id = ?1 AND endpoint_id = ?2 AND state = 'pending'
                   AND attempts = ?3 AND next_at <= ?4",
                params![event_id, endpoint_id, attempts, now, lease_until],
            )
            .map_err(self.db.err("claim_delivery"))
        })?;
        Ok(n == 1)
    }

    /// Records one attempt: the delivery log, the delivery's state, the
    /// endpoint's failure run (and disables it under `disable`). Returns
    /// `Some(reason)` when this attempt disabled the endpoint. Committed
    /// without a full sync: a record lost to a machine crash means the
    /// event is sent again, with the same id (at least once).
    pub fn record_attempt(
        &self,
        event_id: &str,
        endpoint_id: &str,
        at: i64,
        outcome: &AttemptOutcome,
        disable: DisablePolicy,
    ) -> Result<Option<String>, StoreError> {
        self.db.write("record_attempt", |tx| {
            let err = self.db.err("record_attempt");
            let attempts: i64 = tx
                .query_row(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE event_id = ?1
                     AND endpoint_id = ?2 AND state = 'pending' RETURNING attempts",
                    params![event_id, endpoint_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&err)?
                .unwrap_or(0);
            if attempts == 0 {
                // Not pending any more (redelivered or finished by another
                // worker): nothing to record.
                return Ok(None);
            }
            tx.execute(
                "INSERT INTO webhook_attempts (event_id, endpoint_id, n, at, status, error,
                     duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT DO NOTHING",
                params![
                    event_id,
                    endpoint_id,
                    attempts,
                    at,
                    outcome.status,
                    outcome.error,
                    i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX)
                ],
            )
            .map_err(&err)?;
            if outcome.delivered {
                tx.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = ?3,
                         last_status = ?4, last_error = NULL
                     WHERE event_id = ?1 AND endpoint_id = ?2",
                    params![event_id, endpoint_id, at, outcome.status],
                )
                .map_err(&err)?;
                tx.execute(
                    "UPDATE webhook_endpoints SET failures = 0, failing_since = NULL
                     WHERE endpoint_id = ?1",
                    [endpoint_id],
                )
                .map_err(&err)?;
                return Ok(None);
            }
            let (state, next_at) = match outcome.retry_at {
                Some(t) => ("pending", t),
                None => ("failed", at),
            };
            tx.execute(
                "UPDATE webhook_deliveries SET state = CASE WHEN attempts >= max_attempts
                         THEN 'failed' ELSE ?3 END,
                     next_at = ?4, last_status = ?5, last_error = ?6
                 WHERE event_id = ?1 AND endpoint_id = ?2",
                params![
                    event_id,
                    endpoint_id,
                    state,
                    next_at,
                    outcome.status,
                    outcome.error
                ],
            )
            .map_err(&err)?;
            let (failures, since): (i64, i64) = tx
                .query_row(
                    "UPDATE webhook_endpoints SET failures = failures + 1,
                         failing_since = COALESCE(failing_since, ?2)
                     WHERE endpoint_id = ?1 RETURNING failures, failing_since",
                    params![endpoint_id, at],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(&err)?;
            if failures >= disable.failures && at - since >= disable.after_secs {
                let reason = format!(
                    "{failures} failed attempts in a row since {since} (Unix time): fix the \
                     endpoint, then enable it and redeliver what it missed"
                );
                tx.execute(
                    "UPDATE webhook_endpoints SET disabled_at = ?2, disabled_reason = ?3
                     WHERE endpoint_id = ?1 AND disabled_at IS NULL",
                    params![endpoint_id, at, reason],
                )
                .map_err(&err)?;
                return Ok(Some(reason));
            }
            Ok(None)
        })
    }

    /// Schedules one more attempt of an event at an endpoint of the
    /// merchant, now (manual redelivery), whatever its state.
    pub fn redeliver(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
        event_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("endpoint_id", endpoint_id)?;
        validate::id("event_id", event_id)?;
        let n = self.db.durably("redeliver", |tx| {
            let err = self.db.err("redeliver");
            let owned: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM webhook_endpoints w JOIN webhook_events e
                         ON e.merchant_id = w.merchant_id
                     WHERE w.merchant_id = ?1 AND w.endpoint_id = ?2 AND e.event_id = ?3",
                    params![merchant_id, endpoint_id, event_id],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if owned == 0 {
                return Ok(0);
            }
            tx.execute(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, state, max_attempts, next_at)
                 VALUES (?1, ?2, 'pending', 1, ?3)
                 ON CONFLICT (event_id, endpoint_id) DO UPDATE SET state = 'pending',
                     max_attempts = attempts + 1, next_at = ?3",
                params![event_id, endpoint_id, now],
            )
            .map_err(&err)
        })?;
        found(n, event_id)
    }

    /// A page of an endpoint's deliveries, newest event first.
    pub fn list_deliveries(
        &self,
        merchant_id: &str,
        endpoint_id: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<(i64, DeliveryRow)>, StoreError> {
        check_merchant_id(merchant_id)?;
        validate::id("endpoint_id", endpoint_id)?;
        let err = self.db.err("list_deliveries");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.seq, d.event_id, e.type, d.endpoint_id, d.state, d.attempts, d.next_at,
                     d.last_status, d.last_error, d.delivered_at, e.created_at
                 FROM webhook_deliveries d
                 JOIN webhook_events e ON e.event_id = d.event_id
                 JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id
                 WHERE w.merchant_id = ?1 AND d.endpoint_id = ?2 AND (?3 IS NULL OR e.seq < ?3)
                 ORDER BY e.seq DESC LIMIT ?4",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(
                params![
                    merchant_id,
                    endpoint_id,
                    before,
                    i64::try_from(limit.min(500)).unwrap_or(100)
                ],
                |r| {
                    Ok((
                        r.get(0)?,
                        DeliveryRow {
                            event_id: r.get(1)?,
                            event_type: r.get(2)?,
                            endpoint_id: r.get(3)?,
                            state: r.get(4)?,
                            attempts: r.get(5)?,
                            next_at: r.get(6)?,
                            last_status: r.get(7)?,
                            last_error: r.get(8)?,
                            delivered_at: r.get(9)?,
                            event_created_at: r.get(10)?,
                        },
                    ))
                },
            )
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// Records an event that no other state change carries (an operator's
    /// treasury alert) with its deliveries, in its own transaction.
    pub fn enqueue_event(&self, event: &NewEvent, now: i64) -> Result<(), StoreError> {
        check_merchant_id(&event.merchant_id)?;
        self.db
            .durably("enqueue_event", |tx| enqueue(tx, event, now))
    }

    /// Events of a merchant, oldest first after `after_seq` (for tests and
    /// the reconciliation of what was announced).
    pub fn list_events(
        &self,
        merchant_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, NewEvent, i64)>, StoreError> {
        check_merchant_id(merchant_id)?;
        let err = self.db.err("list_events");
        let conn = self.db.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, event_id, merchant_id, type, payload, created_at FROM webhook_events
                 WHERE merchant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(
                params![
                    merchant_id,
                    after_seq,
                    i64::try_from(limit.min(1000)).unwrap_or(100)
                ],
                |r| {
                    Ok((
                        r.get(0)?,
                        NewEvent {
                            event_id: r.get(1)?,
                            merchant_id: r.get(2)?,
                            event_type: r.get(3)?,
                            payload: r.get(4)?,
                        },
                        r.get(5)?,
                    ))
                },
            )
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err);
        rows
    }

    /// The oldest pending delivery's event time (the outbox's age), if any.
    pub fn oldest_pending_delivery(&self) -> Result<Option<i64>, StoreError> {
        self.db
            .reader()
            .query_row(
                "SELECT MIN(e.created_at) FROM webhook_deliveries d
                 JOIN webhook_events e ON e.event_id = d.event_id WHERE d.state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(self.db.err("oldest_pending_delivery"))
    }
}

fn endpoint_by_id(
    conn: &rusqlite::Connection,
    merchant_id: &str,
    endpoint_id: &str,
) -> rusqlite::Result<Option<EndpointRow>> {
    conn.query_row(
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE merchant_id = ?1 AND endpoint_id = ?2"
        ),
        params![merchant_id, endpoint_id],
        |r| endpoint_row(r, 0),
    )
    .optional()
}

fn found(n: usize, id: &str) -> Result<(), StoreError> {
    if n == 0 {
        Err(StoreError::NotFound {
            what: "webhook endpoint or event",
            id: id.to_string(),
        })
    } else {
        Ok(())
    }
}
