//! Runs the coordinator: orchestrator, presignature refill, REST API.

use std::future::Future;
use std::sync::Arc;

use crate::api::{self, ApiLimits};
use crate::config::CoordinatorConfig;
use crate::orchestrator::Orchestrator;

/// Serves the API until `shutdown` completes.
pub async fn run(
    cfg: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let api_listen = cfg.api_listen;
    let orch = Orchestrator::start(cfg)?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let refill = tokio::spawn(orch.clone().refill_loop(stop.clone()));
    // One Notify per loop: `notify_one` keeps a permit for a loop that is
    // busy when shutdown comes, so neither can miss it.
    let stop_locks = Arc::new(tokio::sync::Notify::new());
    let time_locks = tokio::spawn(orch.clone().time_lock_loop(stop_locks.clone()));
    let stop_audit = Arc::new(tokio::sync::Notify::new());
    let audit = tokio::spawn(orch.clone().audit_checkpoint_loop(stop_audit.clone()));
    let listener = tokio::net::TcpListener::bind(api_listen)
        .await
        .map_err(|e| format!("cannot listen on {api_listen}: {e}"))?;
    tracing::info!(%api_listen, "coordinator API listening");
    let router = api::router(orch.clone(), ApiLimits::default());
    let served = api::serve(listener, router, shutdown).await;
    stop.notify_one();
    stop_locks.notify_one();
    let _ = refill.await;
    let _ = time_locks.await;
    // Last: a final checkpoint covers everything recorded before shutdown.
    stop_audit.notify_one();
    let _ = audit.await;
    served.map_err(|e| format!("API server: {e}"))
}
