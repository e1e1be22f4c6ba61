//! Presignature work below the online path.
//!
//! A presignature session costs about a second of proofs per party; the
//! online step it prepares costs microseconds. On a small machine, proofs
//! running on the same threads as online requests make those requests wait
//! (measured: ECDSA online p50 went from ~4 ms to 18 ms while the pool
//! refilled). So presignature sessions run here: on their own threads
//! (bounded: `tuning.presign_workers`), scheduled as batch work at a low
//! priority (Linux `SCHED_BATCH`, nice 9: about a tenth of the CPU weight of
//! a normal thread, and never preempting one on wake-up). Not `SCHED_IDLE`:
//! an idle-class thread gets no CPU at all while anything else runs, so on
//! a busy machine a presignature session starves and its peers, waiting for
//! its messages, time out. The session's network I/O is still driven by the
//! node's runtime; only the work of computing runs here.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The background workers (see the module docs).
pub struct Background {
    tx: Mutex<mpsc::Sender<Job>>,
}

/// The crate's cross-platform priority that maps to nice 9 on Linux.
const BATCH_PRIORITY: u8 = 25;

/// Puts the calling thread below normal threads (see the module docs);
/// says why if it cannot (the work then runs at normal priority, still
/// bounded).
fn lower_priority() {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let result = ThreadPriorityValue::try_from(BATCH_PRIORITY)
        .map_err(|e| format!("{e:?}"))
        .and_then(|p| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(p),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
            )
            .map_err(|e| format!("{e:?}"))
        });
    if let Err(e) = result {
        tracing::warn!(error = ?e, "cannot lower the priority of a presignature worker; it runs at normal priority");
    }
}

impl Background {
    /// Starts `workers` threads (at least one).
    pub fn start(workers: usize) -> std::io::Result<Background> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("keyfold-presign-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = {
                            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
                            rx.recv()
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Background { tx: Mutex::new(tx) })
    }

    /// Runs `f` on a background worker and waits for its result (`None` if
    /// the workers are gone).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}
