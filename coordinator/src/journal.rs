//! The coordinator's one write path: audit events and store operations,
//! written by one thread in groups.
//!
//! A step of a request (its record and decision, an approval, a signature,
//! a failure) is one [`Journal::submit`]: the audit events that describe it
//! and the store operations that apply it. The writer thread takes every
//! step waiting in its queue, applies their store operations in one SQLite
//! transaction (each step in its own savepoint), appends the audit events
//! of the steps whose operations applied with ONE fsync, and commits. So:
//!
//! * a step is either in both the audit log and the store, or in neither
//!   (a store row never exists without its audit entry; after a machine
//!   crash between the fsync and the store's own write, the entries past
//!   [`keyfold_store::CoordinatorStore::audit_applied`] are applied again at
//!   start, see `recovery`);
//! * steps reach the log in the order they were submitted, which is the
//!   order the policy evaluated them in (submitted under the policy gate);
//! * concurrent requests share fsyncs (group commit), and no lock that a
//!   request task waits on is held across the fsync: the writer thread owns
//!   the write connection and the log appends;
//! * an audit write that fails fails every step of its group (and the log
//!   refuses further appends until a restart): nothing happens that the log
//!   does not hold (`503 audit_unavailable`).

use std::sync::mpsc;
use std::sync::Arc;

use keyfold_audit::{Event, Trail};
use keyfold_store::{CoordinatorStore, GroupOutcome, Op, StoreError};
use tokio::sync::oneshot;

/// Most steps written in one group.
const MAX_GROUP: usize = 256;

/// Why a step was not written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The audit log could not take the events: nothing of the group was
    /// written.
    #[error("the coordinator cannot write its audit log ({0}); nothing was done")]
    AuditUnavailable(String),
    /// This step's store operations failed (the others of its group were
    /// written).
    #[error("{0}")]
    Store(Arc<StoreError>),
    /// The store failed as a whole: nothing of the group was written.
    #[error("the coordinator cannot write its store ({0}); nothing was done")]
    StoreUnavailable(String),
    /// The writer thread is gone (shutting down).
    #[error("the coordinator is shutting down")]
    Stopped,
}

struct Job {
    events: Vec<Event>,
    ops: Vec<Op>,
    durable: bool,
    reply: oneshot::Sender<Result<(), JournalError>>,
}

/// A step submitted to the writer: await it with [`Pending::done`].
#[must_use = "a submitted step must be awaited to know whether it was written"]
pub struct Pending(oneshot::Receiver<Result<(), JournalError>>);

impl Pending {
    /// Waits until the step is written (or refused).
    pub async fn done(self) -> Result<(), JournalError> {
        self.0.await.unwrap_or(Err(JournalError::Stopped))
    }

    /// Waits from a thread that is not an async task (start-up).
    pub fn done_blocking(self) -> Result<(), JournalError> {
        self.0.blocking_recv().unwrap_or(Err(JournalError::Stopped))
    }
}

/// The handle to the writer thread (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Job>,
    trail: Arc<Trail>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("audit", &self.trail.dir())
            .finish()
    }
}

impl Journal {
    /// Starts the writer thread over `store` and `trail`.
    pub fn start(store: Arc<CoordinatorStore>, trail: Arc<Trail>) -> std::io::Result<Journal> {
        Self::start_with(store, trail, true)
    }

    /// [`Journal::start`]; with `audit` false (bench builds only) no event
    /// reaches the log and every group commits with a full fsync instead.
    pub(crate) fn start_with(
        store: Arc<CoordinatorStore>,
        trail: Arc<Trail>,
        audit: bool,
    ) -> std::io::Result<Journal> {
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_trail = trail.clone();
        std::thread::Builder::new()
            .name("keyfold-journal".into())
            .spawn(move || writer(rx, &store, &writer_trail, audit))?;
        Ok(Journal { tx, trail })
    }

    /// The audit trail (checkpoints, reading).
    pub fn trail(&self) -> &Arc<Trail> {
        &self.trail
    }

    /// Queues a step; its place in the log is fixed now. Never blocks.
    pub fn submit(&self, events: Vec<Event>, ops: Vec<Op>) -> Pending {
        self.submit_job(events, ops, false)
    }

    /// Queues a step whose store operations the audit log cannot restore,
    /// so they are committed with a full fsync of the store too.
    pub fn submit_durable(&self, events: Vec<Event>, ops: Vec<Op>) -> Pending {
        self.submit_job(events, ops, true)
    }

    fn submit_job(&self, events: Vec<Event>, ops: Vec<Op>, durable: bool) -> Pending {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            events,
            ops,
            durable,
            reply,
        };
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            let _ = job.reply.send(Err(JournalError::Stopped));
        }
        Pending(rx)
    }

    /// Submits and waits.
    pub async fn write(&self, events: Vec<Event>, ops: Vec<Op>) -> Result<(), JournalError> {
        self.submit(events, ops).done().await
    }
}

/// The writer thread: takes every waiting step, writes them as one group.
fn writer(rx: mpsc::Receiver<Job>, store: &CoordinatorStore, trail: &Trail, audit: bool) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let ops: Vec<&[Op]> = group.iter().map(|j| j.ops.as_slice()).collect();
        let durable = !audit || group.iter().any(|j| j.durable);
        let outcome = store.apply_group(&ops, durable, |applied| -> Result<Option<u64>, String> {
            let events: Vec<Event> = group
                .iter()
                .zip(applied)
                .filter(|(_, ok)| **ok)
                .flat_map(|(j, _)| j.events.iter().cloned())
                .collect();
            if audit && !events.is_empty() {
                trail.record(events).map_err(|e| e.to_string())?;
            }
            // Every entry of the log is now reflected in the store.
            Ok(Some(trail.len()))
        });
        match outcome {
            GroupOutcome::Committed(results) => {
                for (job, result) in group.into_iter().zip(results) {
                    let _ = job
                        .reply
                        .send(result.map_err(|e| JournalError::Store(Arc::new(e))));
                }
            }
            GroupOutcome::HookFailed(reason) => {
                tracing::error!(error = %reason, steps = group.len(), "audit log write failed: refusing the steps");
                for job in group {
                    let _ = job
                        .reply
                        .send(Err(JournalError::AuditUnavailable(reason.clone())));
                }
            }
            GroupOutcome::Failed(e) => {
                tracing::error!(error = %e, steps = group.len(), "store write failed: refusing the steps");
                let reason = e.to_string();
                for job in group {
                    let _ = job
                        .reply
                        .send(Err(JournalError::StoreUnavailable(reason.clone())));
                }
            }
        }
    }
    tracing::debug!("journal writer stopped");
}
