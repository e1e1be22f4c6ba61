//! Time for requests: a sweep, once a second, of the requests whose
//! `wake_at` has passed (a time lock ended, a waiting request expired, a
//! post-signing step is due again). The times live in the store (indexed),
//! so nothing is lost across a restart; each due request gets a tick
//! through the lifecycle, a few at a time so that one slow request (a
//! signing, a module's step) does not hold up the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::core::Coordinator;

/// Requests handled at once by the sweep.
const CONCURRENT: usize = 8;
/// Due requests read per sweep.
const BATCH: usize = 200;

impl Coordinator {
    /// Ticks due requests every second until `stop` is notified.
    pub async fn timer_loop(self: Arc<Self>, stop: Arc<Notify>) {
        let slots = Arc::new(Semaphore::new(CONCURRENT));
        loop {
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let now = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
            let due = match self.read(move |s| s.due_requests(now, BATCH)).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read due requests");
                    continue;
                }
            };
            for row in due {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    me.wake(&row.request_id).await;
                    drop(permit);
                });
            }
        }
    }
}
