//! One task per request at a time: an async lock per request id, created
//! when first needed and dropped when nobody holds or waits for it.
//!
//! It serializes the events of one request (a submission, an approval, a
//! tick, a cancellation), so each reads the state the previous one wrote.
//! It is held across that request's journal write (an fsync), which delays
//! only other events of the same request, never other requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Entries kept before dead ones are swept.
const SWEEP_AT: usize = 1024;

/// The per-request locks.
#[derive(Default)]
pub struct RequestLocks {
    map: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

impl RequestLocks {
    /// Waits for and takes request `id`'s lock.
    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= SWEEP_AT {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(id).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(AsyncMutex::new(()));
                    map.insert(id.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_task_per_request_and_others_run() {
        let locks = Arc::new(RequestLocks::default());
        let a = locks.lock("r-1").await;
        // Another request is not blocked.
        let b = tokio::time::timeout(Duration::from_millis(100), locks.lock("r-2")).await;
        assert!(b.is_ok());
        // The same request waits until the first is done.
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.lock("r-1").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(a);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn dead_entries_are_swept() {
        let locks = RequestLocks::default();
        for i in 0..(SWEEP_AT + 10) {
            drop(locks.lock(&format!("r-{i}")).await);
        }
        assert!(locks.map.lock().unwrap().len() <= SWEEP_AT);
    }
}
