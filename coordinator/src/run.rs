//! Runs the coordinator: start-up (on a blocking thread), the background
//! loops, and the REST API until shutdown.
//!
//! | loop | what it does |
//! |---|---|
//! | timers | ticks requests whose time came (time locks, expiry, step retries) |
//! | presignature refill | one session at a time, yielding to live traffic |
//! | audit checkpoints | signs the log's tree head every `audit_checkpoint_secs` |
//! | token events | records token issues and revocations made by `keyfold token` |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::api::{self, ApiLimits};
use crate::config::CoordinatorConfig;
use crate::core::Coordinator;
use crate::presig_pool::{Refill, QUIET_BEFORE_REFILL};

/// How often token events made outside the coordinator are looked for.
const TOKEN_EVENTS_EVERY: Duration = Duration::from_secs(2);

impl Coordinator {
    /// Refills presignature pools until `stop` is notified.
    pub async fn refill_loop(self: Arc<Self>, stop: Arc<Notify>) {
        let refill = Refill {
            pool: self.pool.clone(),
            client: self.client.clone(),
            liveness: self.liveness.clone(),
            session_timeout: self.cfg.tuning.session_timeout(),
        };
        loop {
            let keys: Vec<_> = self
                .all_keys()
                .into_iter()
                .filter(|k| k.curve == keyfold_store::Curve::Secp256k1 && !crate::keys::is_cold(k))
                .collect();
            let made = refill.once(&keys).await;
            let pause = if made {
                Duration::from_millis(50)
            } else if self.pool.recently_active() {
                QUIET_BEFORE_REFILL
            } else {
                Duration::from_secs(2)
            };
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Signs a checkpoint of the audit log if it grew (off the runtime: it
    /// may be an HSM call).
    pub async fn audit_checkpoint(&self) {
        let trail = self.journal.trail().clone();
        match tokio::task::spawn_blocking(move || trail.checkpoint_now()).await {
            Ok(Ok(Some(cp))) => tracing::debug!(size = cp.checkpoint.tree_size, "audit checkpoint"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
        }
    }

    /// Checkpoints the audit log every `audit_checkpoint_secs` until `stop`
    /// is notified, and once more then.
    pub async fn audit_checkpoint_loop(self: Arc<Self>, stop: Arc<Notify>) {
        let every = Duration::from_secs(self.cfg.tuning.audit_checkpoint_secs.max(1));
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(every) => {}
            }
            self.audit_checkpoint().await;
        }
        self.audit_checkpoint().await;
    }

    /// Records token events until `stop` is notified.
    pub async fn token_loop(self: Arc<Self>, stop: Arc<Notify>) {
        loop {
            self.log_token_events().await;
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(TOKEN_EVENTS_EVERY) => {}
            }
        }
    }
}

/// Starts the coordinator and serves the API until `shutdown` completes.
pub async fn run(
    cfg: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let api_listen = cfg.api_listen;
    let coordinator = tokio::task::spawn_blocking(move || Coordinator::start(cfg))
        .await
        .map_err(|e| format!("start-up failed: {e}"))??;
    serve(coordinator, api_listen, shutdown).await
}

/// Runs the loops of a started coordinator and serves its API on
/// `api_listen` until `shutdown` completes.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    api_listen: std::net::SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // One Notify per loop: `notify_one` keeps a permit for a loop that is
    // busy when shutdown comes, so none can miss it.
    let stops: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
    let refill = tokio::spawn(coordinator.clone().refill_loop(stops[0].clone()));
    let timers = tokio::spawn(coordinator.clone().timer_loop(stops[1].clone()));
    let tokens = tokio::spawn(coordinator.clone().token_loop(stops[2].clone()));
    let audit = tokio::spawn(coordinator.clone().audit_checkpoint_loop(stops[3].clone()));
    // The order watchers (one per EVM chain with an RPC URL) and the
    // webhook outbox's delivery worker.
    let mut background = crate::orders::watcher::spawn_all(&coordinator);
    let delivery_stop = Arc::new(Notify::new());
    background.push((
        delivery_stop.clone(),
        tokio::spawn(crate::webhooks::delivery::run(
            Arc::downgrade(&coordinator),
            delivery_stop,
        )),
    ));
    background.extend(crate::treasury::spawn(&coordinator));
    background.extend(crate::risk::signers::spawn(&coordinator));
    background.extend(crate::schedules::runner::spawn(&coordinator));
    background.extend(crate::escrow::runner::spawn(&coordinator));
    if let Some(payments) = coordinator.payments.clone() {
        // Once at start, off the API's path: a chain that answers slowly
        // delays nothing.
        tokio::spawn(async move { payments.reconcile_nonces().await });
    }
    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .map_err(|e| format!("cannot listen on {api_listen}: {e}"))?;
    tracing::info!(%api_listen, "coordinator API listening");
    let router = api::router(coordinator.clone(), ApiLimits::default());
    let served = api::serve(listener, router, shutdown).await;
    for s in &stops[..3] {
        s.notify_one();
    }
    for (stop, _) in &background {
        stop.notify_one();
    }
    for (_, task) in background {
        let _ = task.await;
    }
    let _ = refill.await;
    let _ = timers.await;
    let _ = tokens.await;
    // Last: a final checkpoint covers everything recorded before shutdown.
    stops[3].notify_one();
    let _ = audit.await;
    served.map_err(|e| format!("API server: {e}"))
}
