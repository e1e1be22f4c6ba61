//! The outbox's delivery worker: sends due deliveries, at least once.
//!
//! - Every attempt carries the event's id as `webhook-id`, the attempt's
//!   time as `webhook-timestamp`, and `webhook-signature` with the
//!   endpoint's signature (two during a secret rotation).
//! - The target is resolved first and every address checked
//!   (`keyfold_webhooks::target`): a private, loopback or link-local one is
//!   refused unless the configuration allows it; the request then goes to
//!   exactly the checked addresses, so DNS cannot change between check and
//!   connect. Redirects are never followed (a 3xx is a failure), so a
//!   redirect cannot lead to a private address either.
//! - Each attempt has a short timeout and runs on its own task, at most
//!   `concurrency` at once: a slow endpoint delays neither signing nor other
//!   endpoints' deliveries.
//! - A failure is retried on the schedule of `keyfold_webhooks::schedule`
//!   (about 3 days in all); an endpoint that keeps failing is disabled
//!   (`disabled_reason` says why, and an alert is logged).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use keyfold_store::{AttemptOutcome, DisablePolicy, DueDelivery};
use keyfold_webhooks::sign::{self, Secret, SigningKey};
use keyfold_webhooks::target;
use tokio::sync::{Notify, Semaphore};

use crate::core::Coordinator;
use crate::service::CoordinatorApi;

/// Longest error text kept in the delivery log.
const MAX_ERROR_LEN: usize = 300;

/// HTTP clients kept for reuse (their connection pools), per host and
/// checked address set.
const MAX_CLIENTS: usize = 256;

/// Clients pinned to a host's checked addresses, reused across attempts so
/// deliveries to one endpoint share connections. A new address set (the
/// DNS answer changed) gets a new client.
#[derive(Default)]
struct Clients(Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>);

impl Clients {
    fn get(
        &self,
        host: &str,
        addrs: &[SocketAddr],
        timeout: Duration,
    ) -> Result<reqwest::Client, String> {
        let key = (host.to_string(), addrs.to_vec());
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .resolve_to_addrs(host, addrs)
            .user_agent("Keyfold-Webhooks/1")
            .build()
            .map_err(|e| format!("http client: {}", short(e)))?;
        if map.len() >= MAX_CLIENTS {
            map.clear();
        }
        map.insert(key, client.clone());
        Ok(client)
    }
}

/// The signatures of one attempt: the current secret's, and the previous
/// one's during a rotation's overlap.
fn signatures(d: &DueDelivery, ts: i64) -> Result<String, String> {
    let body = d.payload.as_bytes();
    let mut secrets: Vec<&str> = vec![d.endpoint.secret.as_str()];
    if let (Some(old), Some(until)) = (&d.endpoint.old_secret, d.endpoint.old_secret_until) {
        if ts < until {
            secrets.push(old.as_str());
        }
    }
    let mut sigs = Vec::new();
    for s in secrets {
        let sig = match d.endpoint.scheme.as_str() {
            "v1a" => {
                let key = SigningKey::parse(s).map_err(|e| format!("stored signing key: {e}"))?;
                sign::sign_v1a(&key, &d.event_id, ts, body)
            }
            _ => {
                let secret = Secret::parse(s).map_err(|e| format!("stored secret: {e}"))?;
                sign::sign_v1(&secret, &d.event_id, ts, body)
            }
        };
        sigs.push(sig);
    }
    Ok(sign::signature_header(&sigs))
}

fn short(e: impl std::fmt::Display) -> String {
    let mut s = e.to_string();
    if s.len() > MAX_ERROR_LEN {
        let mut cut = MAX_ERROR_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Sends one attempt; `Ok(status)` for any HTTP answer.
async fn send(
    d: &DueDelivery,
    ts: i64,
    allow_private: bool,
    timeout: Duration,
    clients: &Clients,
) -> Result<u16, String> {
    let url = target::parse_endpoint_url(&d.endpoint.url).map_err(short)?;
    let host = url
        .host_str()
        .ok_or_else(|| "the URL has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "the URL has no port".to_string())?;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {host} timed out"))?
            .map_err(|e| format!("cannot resolve {host}: {}", short(e)))?
            .collect();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    let ips: Vec<_> = addrs.iter().map(SocketAddr::ip).collect();
    target::check_resolved(&ips, allow_private).map_err(short)?;
    let client = clients.get(&host, &addrs, timeout)?;
    let header = signatures(d, ts)?;
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header(sign::HEADER_ID, &d.event_id)
        .header(sign::HEADER_TIMESTAMP, ts.to_string())
        .header(sign::HEADER_SIGNATURE, header)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else {
                format!("request failed: {}", short(e))
            }
        })?;
    Ok(resp.status().as_u16())
}

/// Makes one attempt of `d` and records it.
async fn attempt(c: Arc<Coordinator>, d: DueDelivery, clients: Arc<Clients>) {
    let cfg = c.cfg.webhooks.clone();
    let ts = c.now_unix();
    // Claimed first: a round that read the outbox before this delivery's
    // last attempt was recorded must not send it again.
    // Longer than the attempt can take (resolution and the request, each
    // bounded by the timeout), short enough that an attempt lost to a crash
    // is made again soon after the restart.
    let lease = ts.saturating_add(i64::try_from(cfg.timeout_ms / 1000).unwrap_or(0) * 2 + 5);
    let (event, endpoint, attempts) = (
        d.event_id.clone(),
        d.endpoint.endpoint_id.clone(),
        d.attempts,
    );
    match c
        .read(move |s| s.claim_delivery(&event, &endpoint, attempts, ts, lease))
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, event = %d.event_id, "cannot claim a webhook delivery");
            return;
        }
    }
    let start = Instant::now();
    let sent = send(
        &d,
        ts,
        cfg.allow_private_targets,
        Duration::from_millis(cfg.timeout_ms.max(1)),
        &clients,
    )
    .await;
    let duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (status, delivered, error) = match sent {
        Ok(s) if (200..300).contains(&s) => (Some(s), true, None),
        Ok(s) if (300..400).contains(&s) => (
            Some(s),
            false,
            Some(format!("answered {s}: redirects are not followed")),
        ),
        Ok(s) => (Some(s), false, Some(format!("answered {s}"))),
        Err(e) => (None, false, Some(e)),
    };
    let made = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
    let retry_at = if delivered || i64::from(made) >= d.max_attempts {
        None
    } else {
        let jitter = rand_core::RngCore::next_u32(&mut rand_core::OsRng);
        keyfold_webhooks::schedule::delay_after(made, jitter)
            .map(|delay| ts.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(i64::MAX)))
    };
    let outcome = AttemptOutcome {
        status,
        delivered,
        error,
        duration_ms,
        retry_at,
    };
    let policy = DisablePolicy {
        failures: cfg.disable_after_failures,
        after_secs: cfg.disable_after_secs,
    };
    match &outcome.error {
        None => {
            tracing::debug!(event = %d.event_id, endpoint = %d.endpoint.endpoint_id, attempt = made, "webhook delivered")
        }
        Some(e) => {
            tracing::info!(event = %d.event_id, endpoint = %d.endpoint.endpoint_id, attempt = made, error = %e, next = ?retry_at, "webhook attempt failed")
        }
    }
    let (event, endpoint) = (d.event_id.clone(), d.endpoint.endpoint_id.clone());
    match c
        .read(move |s| s.record_attempt(&event, &endpoint, ts, &outcome, policy))
        .await
    {
        Ok(Some(reason)) => tracing::warn!(
            alert = "webhook_endpoint_disabled",
            merchant = %d.endpoint.merchant_id,
            endpoint = %d.endpoint.endpoint_id,
            %reason,
            "webhook endpoint disabled"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, event = %d.event_id, "cannot record a webhook attempt; it will be sent again")
        }
    }
}

/// Runs the worker until `stop`.
pub async fn run(coordinator: Weak<Coordinator>, stop: Arc<Notify>) {
    let Some(c) = coordinator.upgrade() else {
        return;
    };
    let cfg = c.cfg.webhooks.clone();
    drop(c);
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    // What is being sent: a slow attempt is not picked again meanwhile.
    let in_flight: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let clients: Arc<Clients> = Arc::default();
    let poll = Duration::from_millis(cfg.poll_ms.max(10));
    loop {
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        let now = c.now_unix();
        let limit = cfg.concurrency.max(1) * 4;
        // More is due than this round took: look again soon, not a whole
        // poll interval later.
        let mut backlog = false;
        match c.read(move |s| s.due_deliveries(now, limit)).await {
            Ok(due) => {
                backlog = due.len() >= limit;
                for d in due {
                    let key = (d.event_id.clone(), d.endpoint.endpoint_id.clone());
                    {
                        let mut f = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                        if !f.insert(key.clone()) {
                            continue;
                        }
                    }
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        backlog = true;
                        break;
                    };
                    let (c2, flights, pool) = (c.clone(), in_flight.clone(), clients.clone());
                    tokio::spawn(async move {
                        attempt(c2, d, pool).await;
                        flights
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                        drop(permit);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the webhook outbox"),
        }
        drop(c);
        let wait = if backlog {
            Duration::from_millis(10).min(poll)
        } else {
            poll
        };
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
