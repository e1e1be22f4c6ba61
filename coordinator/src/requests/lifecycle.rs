//! The request lifecycle as a pure state machine (the quinn-proto pattern):
//! [`step`] takes a request's [`Snapshot`], an [`Event`] and the time, and
//! returns the transition to record and the [`Action`]s the services must
//! take. It does no I/O and reads no clock, so every path (time locks,
//! expiry, cancellation, retries, post-signing steps) is unit-tested with a
//! fake time.
//!
//! ```text
//!            Prepared: refuse              Decided: deny / approval rejected
//!   received ─────────────────▶ rejected ◀──────────────────────────┐
//!      │ Prepared: hold                                             │
//!      ├──────────────▶ held ── Released ──▶ (Evaluate)             │
//!      │ Prepared: continue                                         │
//!      ▼                                                            │
//!   (Evaluate) ── Decided ──▶ pending_approval ── ApprovalRecorded ──┤
//!                   │                 │                 (Evaluate)   │
//!                   │                 ▼                              │
//!                   ├──────────▶ time_locked ── Tick(until) ─────────┘
//!                   ▼                             (Evaluate)
//!                approved ──▶ signing ──▶ signed ──▶ completed
//!                                │          │ post-signing steps
//!                                ▼          ▼
//!                              failed ◀─────┘   (Resubmitted: evaluated again)
//!   waiting (pending_approval, held) ── Tick(expires_at) ──▶ expired
//!   waiting (pending_approval, time_locked, held) ── Cancel ──▶ cancelled
//! ```
//!
//! What counts against velocity limits (the policy history) is decided
//! here too: a request is *spent* from the decision that allows it until it
//! ends without a signature ([`Record::Failed`]).

use std::collections::BTreeSet;

use keyfold_proto::api::RequestState;

/// What the lifecycle needs to know about a request (kept with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its state.
    pub state: RequestState,
    /// When a waiting request expires (Unix seconds), once it waits.
    pub expires_at: Option<u64>,
    /// The end of its time lock, while time-locked.
    pub until: Option<u64>,
    /// Modules holding it.
    pub holds: BTreeSet<String>,
    /// Post-signing steps, in order, once signed.
    pub steps: Vec<StepState>,
}

impl Snapshot {
    /// A request just recorded.
    pub fn received() -> Snapshot {
        Snapshot {
            state: RequestState::Received,
            expires_at: None,
            until: None,
            holds: BTreeSet::new(),
            steps: Vec::new(),
        }
    }

    /// Whether the request counts against velocity limits (the policy allowed
    /// it and it has not ended without a signature).
    pub fn is_spent(&self) -> bool {
        matches!(
            self.state,
            RequestState::Approved
                | RequestState::Signing
                | RequestState::Signed
                | RequestState::Completed
        ) || (self.state == RequestState::Failed && !self.steps.is_empty())
    }
}

/// A post-signing step a module added.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepState {
    /// The module that runs it.
    pub module: String,
    /// The step's name within the module (`broadcast`, `confirmations` ...).
    pub name: String,
    /// Where it stands.
    pub status: StepStatus,
}

/// Where a post-signing step stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Not run yet, or to run again at `retry_at` (Unix seconds).
    Pending {
        /// When to run it again.
        #[serde(default)]
        retry_at: Option<u64>,
    },
    /// Done.
    Done,
    /// Failed for good.
    Failed {
        /// Why.
        reason: String,
    },
}

/// What a module said when it prepared a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the policy.
    Continue,
    /// Hold the request until the module releases it.
    Hold {
        /// Why, for a person.
        reason: String,
    },
    /// Refuse it.
    Refuse {
        /// Why, for a person.
        reason: String,
    },
}

/// The policy's outcome, as the lifecycle needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Sign now.
    Allow,
    /// Approvals are missing.
    NeedApprovals,
    /// Time-locked until then (Unix seconds).
    TimeLocked {
        /// End of the lock.
        until: u64,
    },
    /// Refused (by a rule, or by an officer's rejection).
    Deny {
        /// Why.
        reason: String,
    },
}

/// Who cancels a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Canceller {
    /// The API client that made it.
    Initiator(String),
    /// A treasury officer (an approver of the policy in force).
    Officer(String),
}

impl std::fmt::Display for Canceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Canceller::Initiator(c) => write!(f, "its initiator {c}"),
            Canceller::Officer(c) => write!(f, "officer {c}"),
        }
    }
}

/// Something that happened to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every module prepared it (in module order).
    Prepared {
        /// Each module's verdict.
        verdicts: Vec<(String, Verdict)>,
    },
    /// A module releases its hold.
    Released {
        /// The module.
        module: String,
    },
    /// The policy decided.
    Decided(Decided),
    /// An officer's approval or rejection was recorded.
    ApprovalRecorded,
    /// Time passed (a scheduled wake-up, or the periodic sweep).
    Tick,
    /// The signers were asked.
    SigningStarted,
    /// The signature was made, verified and logged; modules asked for these
    /// post-signing steps (maybe none).
    Signed {
        /// The steps, in order.
        steps: Vec<(String, String)>,
    },
    /// No signature came out.
    SigningFailed {
        /// Why.
        reason: String,
    },
    /// A post-signing step finished.
    StepDone {
        /// Its index in [`Snapshot::steps`].
        index: usize,
    },
    /// A post-signing step failed; it runs again at `retry_at`, or never.
    StepFailed {
        /// Its index.
        index: usize,
        /// Why.
        reason: String,
        /// When to try again (`None`: the request fails).
        retry_at: Option<u64>,
    },
    /// Someone cancels it.
    Cancel {
        /// Who.
        by: Canceller,
        /// Why.
        reason: String,
    },
    /// The same request was submitted again after it failed.
    Resubmitted,
}

/// What the services must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask every module to prepare the request.
    Prepare,
    /// Evaluate the policy now.
    Evaluate,
    /// Tell the key's signers about the request (each records when it
    /// first saw it). `wait`: before answering the client, because the
    /// request will be signed later (by then the signers must know it).
    Announce {
        /// Whether to wait for the signers.
        wait: bool,
    },
    /// Count the request against velocity limits from now on.
    Spend,
    /// Ask the signers for a signature.
    Sign,
    /// Wake this request at that time (Unix seconds) with [`Event::Tick`].
    Schedule {
        /// When.
        at: u64,
    },
    /// Run post-signing step `index`.
    RunStep {
        /// Its index.
        index: usize,
    },
    /// Tell modules the state changed (webhooks and the like).
    Notify,
}

/// What the audit log must hold about the transition (besides the policy
/// decision and the signature, which the services record with their
/// inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An allowed request ended without a signature: it no longer counts
    /// against velocity limits.
    Failed {
        /// Why.
        reason: String,
    },
    /// A request was closed before it was allowed.
    Closed {
        /// `expired`, `cancelled` or `rejected`.
        state: RequestState,
        /// Who closed it, if a person or a client.
        by: Option<String>,
        /// Why.
        reason: String,
    },
}

/// The result of [`step`]: the new snapshot, why, what to log, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    /// The snapshot after the event.
    pub snapshot: Snapshot,
    /// The states passed through, in order (usually one; `signed` then
    /// `completed` when there is no post-signing step). Empty when the
    /// state did not change (for example a tick before the time lock ends).
    pub hops: Vec<RequestState>,
    /// Why, for a person (the history's `cause`).
    pub cause: String,
    /// Audit records of the transition.
    pub records: Vec<Record>,
    /// What to do next.
    pub actions: Vec<Action>,
}

/// Why an event does not apply to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Only waiting requests can be cancelled.
    #[error("a request that is {state} can no longer be cancelled (only pending_approval, time_locked and held requests can)")]
    NotCancellable {
        /// Its state.
        state: RequestState,
    },
    /// Approvals are taken only while a request waits for them or for its
    /// time lock.
    #[error("the request is {state}; it no longer takes approvals")]
    NoApprovals {
        /// Its state.
        state: RequestState,
    },
    /// A resubmission of a request that did not fail.
    #[error("the request is {state}; only a failed request can be submitted again")]
    NotFailed {
        /// Its state.
        state: RequestState,
    },
    /// The event does not belong to this state (a race another task won).
    #[error("event {event} does not apply to a request that is {state}")]
    Unexpected {
        /// Its state.
        state: RequestState,
        /// The event's name.
        event: &'static str,
    },
}

/// How long requests may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request waiting for approvals or a module's release expires this
    /// many seconds after it started waiting.
    pub waiting_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            waiting_secs: 7 * 24 * 3600,
        }
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Prepared { .. } => "prepared",
        Event::Released { .. } => "released",
        Event::Decided(_) => "decided",
        Event::ApprovalRecorded => "approval_recorded",
        Event::Tick => "tick",
        Event::SigningStarted => "signing_started",
        Event::Signed { .. } => "signed",
        Event::SigningFailed { .. } => "signing_failed",
        Event::StepDone { .. } => "step_done",
        Event::StepFailed { .. } => "step_failed",
        Event::Cancel { .. } => "cancel",
        Event::Resubmitted => "resubmitted",
    }
}

struct Builder {
    snapshot: Snapshot,
    hops: Vec<RequestState>,
    cause: String,
    records: Vec<Record>,
    actions: Vec<Action>,
}

impl Builder {
    fn new(s: &Snapshot) -> Self {
        Builder {
            snapshot: s.clone(),
            hops: Vec::new(),
            cause: String::new(),
            records: Vec::new(),
            actions: Vec::new(),
        }
    }

    fn go(mut self, to: RequestState, cause: impl Into<String>) -> Self {
        self.snapshot.state = to;
        if to != RequestState::TimeLocked {
            self.snapshot.until = None;
        }
        self.hops.push(to);
        self.cause = cause.into();
        self
    }

    fn act(mut self, a: Action) -> Self {
        self.actions.push(a);
        self
    }

    fn record(mut self, r: Record) -> Self {
        self.records.push(r);
        self
    }

    /// Starts (or keeps) the waiting deadline.
    fn waiting(mut self, now: u64, limits: &Limits) -> Self {
        let at = *self
            .snapshot
            .expires_at
            .get_or_insert(now.saturating_add(limits.waiting_secs));
        self.actions.push(Action::Schedule { at });
        self
    }

    fn done(self) -> Next {
        Next {
            snapshot: self.snapshot,
            hops: self.hops,
            cause: self.cause,
            records: self.records,
            actions: self.actions,
        }
    }
}

/// The next post-signing step to run, or completion.
fn after_steps(b: Builder, now: u64) -> Builder {
    let next = b
        .snapshot
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| match &s.status {
            StepStatus::Pending { retry_at } => Some((i, *retry_at)),
            _ => None,
        });
    match next {
        None => {
            let n = b.snapshot.steps.len();
            let cause = if n == 0 {
                "signed; no post-signing step".to_string()
            } else {
                format!("all {n} post-signing steps done")
            };
            b.go(RequestState::Completed, cause).act(Action::Notify)
        }
        Some((_, Some(at))) if at > now => b.act(Action::Schedule { at }),
        Some((index, _)) => b.act(Action::RunStep { index }),
    }
}

/// Applies `event` to a request in `snapshot` at time `now` (Unix seconds).
pub fn step(
    snapshot: &Snapshot,
    event: &Event,
    now: u64,
    limits: &Limits,
) -> Result<Next, Refusal> {
    use RequestState as S;
    let state = snapshot.state;
    let unexpected = || Refusal::Unexpected {
        state,
        event: event_name(event),
    };
    let b = Builder::new(snapshot);
    let next = match (state, event) {
        // ---- preparation by modules ----
        (S::Received, Event::Prepared { verdicts }) => {
            if let Some((module, Verdict::Refuse { reason })) = verdicts
                .iter()
                .find(|(_, v)| matches!(v, Verdict::Refuse { .. }))
            {
                let why = format!("refused by module {module}: {reason}");
                b.go(S::Rejected, why.clone())
                    .record(Record::Closed {
                        state: S::Rejected,
                        by: Some(module.clone()),
                        reason: why,
                    })
                    .act(Action::Notify)
            } else {
                let holds: Vec<(&String, &String)> = verdicts
                    .iter()
                    .filter_map(|(m, v)| match v {
                        Verdict::Hold { reason } => Some((m, reason)),
                        _ => None,
                    })
                    .collect();
                if holds.is_empty() {
                    b.act(Action::Evaluate)
                } else {
                    let cause = holds
                        .iter()
                        .map(|(m, r)| format!("held by module {m}: {r}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let mut b = b.go(S::Held, cause);
                    b.snapshot.holds = holds.iter().map(|(m, _)| (*m).clone()).collect();
                    b.act(Action::Announce { wait: true })
                        .act(Action::Notify)
                        .waiting(now, limits)
                }
            }
        }
        (S::Held, Event::Released { module }) => {
            let mut b = b;
            if !b.snapshot.holds.remove(module) {
                return Err(unexpected());
            }
            if b.snapshot.holds.is_empty() {
                b.act(Action::Evaluate)
            } else {
                // Still held by another module: nothing changes yet.
                b
            }
        }

        // ---- the policy's decision ----
        (S::Received | S::PendingApproval | S::TimeLocked | S::Held, Event::Decided(d)) => {
            if state == S::Held && !snapshot.holds.is_empty() {
                return Err(unexpected());
            }
            let first = state == S::Received;
            match d {
                Decided::Allow => {
                    let b = b
                        .go(S::Approved, "allowed by the policy")
                        .act(Action::Spend)
                        .act(Action::Announce { wait: false })
                        .act(Action::Sign);
                    if first {
                        b
                    } else {
                        b.act(Action::Notify)
                    }
                }
                Decided::NeedApprovals => {
                    let b = if state == S::PendingApproval {
                        // Still missing approvals: same state, same deadline.
                        b
                    } else {
                        b.go(S::PendingApproval, "the policy needs approvals")
                            .act(Action::Notify)
                    };
                    let b = if first {
                        b.act(Action::Announce { wait: true })
                    } else {
                        b
                    };
                    b.waiting(now, limits)
                }
                Decided::TimeLocked { until } => {
                    let b = if state == S::TimeLocked && snapshot.until == Some(*until) {
                        b
                    } else {
                        b.go(S::TimeLocked, format!("time-locked until {until}"))
                            .act(Action::Notify)
                    };
                    let mut b = if first {
                        b.act(Action::Announce { wait: true })
                    } else {
                        b
                    };
                    b.snapshot.until = Some(*until);
                    b.act(Action::Schedule { at: *until })
                }
                Decided::Deny { reason } => {
                    let why = format!("denied: {reason}");
                    b.go(S::Rejected, why.clone())
                        .record(Record::Closed {
                            state: S::Rejected,
                            by: None,
                            reason: why,
                        })
                        .act(Action::Notify)
                }
            }
        }

        // ---- approvals and time ----
        (S::PendingApproval | S::TimeLocked, Event::ApprovalRecorded) => b.act(Action::Evaluate),
        (_, Event::ApprovalRecorded) => return Err(Refusal::NoApprovals { state }),
        (S::PendingApproval | S::Held, Event::Tick)
            if snapshot.expires_at.is_some_and(|at| now >= at) =>
        {
            let why = format!(
                "expired: waited {} s without being allowed",
                limits.waiting_secs
            );
            b.go(S::Expired, why.clone())
                .record(Record::Closed {
                    state: S::Expired,
                    by: None,
                    reason: why,
                })
                .act(Action::Notify)
        }
        (S::TimeLocked, Event::Tick) if snapshot.until.is_some_and(|u| now >= u) => {
            b.act(Action::Evaluate)
        }
        (S::Signed, Event::Tick) => after_steps(b, now),
        (_, Event::Tick) => b,

        // ---- signing ----
        (S::Approved, Event::SigningStarted) => b.go(S::Signing, "the signers are signing"),
        (S::Approved | S::Signing, Event::Signed { steps }) => {
            let mut b = b.go(S::Signed, "signature made, verified and logged");
            b.snapshot.steps = steps
                .iter()
                .map(|(module, name)| StepState {
                    module: module.clone(),
                    name: name.clone(),
                    status: StepStatus::Pending { retry_at: None },
                })
                .collect();
            after_steps(b, now)
        }
        (S::Approved | S::Signing, Event::SigningFailed { reason }) => {
            let why = format!("signing failed: {reason}");
            b.go(S::Failed, why.clone())
                .record(Record::Failed { reason: why })
                .act(Action::Notify)
        }

        // ---- post-signing steps ----
        (S::Signed, Event::StepDone { index }) => {
            let mut b = b;
            let Some(s) = b.snapshot.steps.get_mut(*index) else {
                return Err(unexpected());
            };
            s.status = StepStatus::Done;
            after_steps(b, now)
        }
        (
            S::Signed,
            Event::StepFailed {
                index,
                reason,
                retry_at,
            },
        ) => {
            let mut b = b;
            let Some(s) = b.snapshot.steps.get_mut(*index) else {
                return Err(unexpected());
            };
            let label = format!("{}/{}", s.module, s.name);
            match retry_at {
                Some(at) => {
                    s.status = StepStatus::Pending {
                        retry_at: Some(*at),
                    };
                    b.act(Action::Schedule { at: *at })
                }
                None => {
                    s.status = StepStatus::Failed {
                        reason: reason.clone(),
                    };
                    // The signature was released: the request still counts
                    // against the limits (no `Record::Failed`).
                    b.go(
                        S::Failed,
                        format!("post-signing step {label} failed: {reason}"),
                    )
                    .act(Action::Notify)
                }
            }
        }

        // ---- cancellation and resubmission ----
        (s, Event::Cancel { by, reason }) if s.is_waiting() => {
            let why = format!("cancelled by {by}: {reason}");
            let who = match by {
                Canceller::Initiator(c) | Canceller::Officer(c) => c.clone(),
            };
            b.go(S::Cancelled, why.clone())
                .record(Record::Closed {
                    state: S::Cancelled,
                    by: Some(who),
                    reason: why,
                })
                .act(Action::Notify)
        }
        (_, Event::Cancel { .. }) => return Err(Refusal::NotCancellable { state }),
        (S::Failed, Event::Resubmitted) if snapshot.steps.is_empty() => {
            let mut b = b.go(S::Received, "submitted again after it failed");
            b.snapshot.expires_at = None;
            b.act(Action::Evaluate)
        }
        (_, Event::Resubmitted) => return Err(Refusal::NotFailed { state }),

        _ => return Err(unexpected()),
    };
    Ok(next.done())
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestState as S;

    const T0: u64 = 1_750_000_000;

    fn limits() -> Limits {
        Limits { waiting_secs: 600 }
    }

    /// Runs `events` from a fresh request at the given times; returns every
    /// result.
    fn run(events: &[(u64, Event)]) -> Vec<Result<Next, Refusal>> {
        let mut s = Snapshot::received();
        let mut out = Vec::new();
        for (at, e) in events {
            let r = step(&s, e, *at, &limits());
            if let Ok(n) = &r {
                s = n.snapshot.clone();
            }
            out.push(r);
        }
        out
    }

    fn ok(r: &Result<Next, Refusal>) -> &Next {
        r.as_ref().unwrap_or_else(|e| panic!("refused: {e}"))
    }

    fn prepared() -> Event {
        Event::Prepared { verdicts: vec![] }
    }

    #[test]
    fn an_allowed_request_is_spent_signed_and_completed() {
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (T0, Event::SigningStarted),
            (T0 + 1, Event::Signed { steps: vec![] }),
        ]);
        assert_eq!(ok(&r[0]).actions, vec![Action::Evaluate]);
        assert!(ok(&r[0]).hops.is_empty());
        let allowed = ok(&r[1]);
        assert_eq!(allowed.hops, vec![S::Approved]);
        assert_eq!(
            allowed.actions,
            vec![
                Action::Spend,
                Action::Announce { wait: false },
                Action::Sign
            ]
        );
        assert!(allowed.snapshot.is_spent());
        assert_eq!(ok(&r[2]).hops, vec![S::Signing]);
        let signed = ok(&r[3]);
        assert_eq!(signed.hops, vec![S::Signed, S::Completed]);
        assert!(signed.snapshot.is_spent());
        assert!(signed.records.is_empty());
    }

    #[test]
    fn a_denied_request_is_rejected_and_logged_closed() {
        let r = run(&[
            (T0, prepared()),
            (
                T0,
                Event::Decided(Decided::Deny {
                    reason: "deny-all".into(),
                }),
            ),
        ]);
        let n = ok(&r[1]);
        assert_eq!(n.hops, vec![S::Rejected]);
        assert!(!n.snapshot.is_spent());
        assert!(matches!(
            &n.records[..],
            [Record::Closed {
                state: S::Rejected,
                by: None,
                ..
            }]
        ));
        // Final: nothing else applies.
        let s = n.snapshot.clone();
        assert!(step(&s, &Event::Decided(Decided::Allow), T0, &limits()).is_err());
        assert!(matches!(
            step(
                &s,
                &Event::Cancel {
                    by: Canceller::Initiator("c".into()),
                    reason: "x".into()
                },
                T0,
                &limits()
            ),
            Err(Refusal::NotCancellable { state: S::Rejected })
        ));
    }

    #[test]
    fn approvals_are_waited_for_then_the_request_is_signed() {
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::NeedApprovals)),
            (T0 + 10, Event::ApprovalRecorded),
            (T0 + 10, Event::Decided(Decided::NeedApprovals)),
            (T0 + 20, Event::ApprovalRecorded),
            (T0 + 20, Event::Decided(Decided::Allow)),
        ]);
        let waiting = ok(&r[1]);
        assert_eq!(waiting.hops, vec![S::PendingApproval]);
        assert_eq!(waiting.snapshot.expires_at, Some(T0 + 600));
        assert!(waiting.actions.contains(&Action::Announce { wait: true }));
        assert!(waiting.actions.contains(&Action::Schedule { at: T0 + 600 }));
        assert!(!waiting.snapshot.is_spent());
        assert_eq!(ok(&r[2]).actions, vec![Action::Evaluate]);
        // Still missing: no transition, the deadline does not move.
        let still = ok(&r[3]);
        assert!(still.hops.is_empty());
        assert_eq!(still.snapshot.expires_at, Some(T0 + 600));
        assert!(!still.actions.contains(&Action::Announce { wait: true }));
        let allowed = ok(&r[5]);
        assert_eq!(allowed.hops, vec![S::Approved]);
        assert!(allowed.actions.contains(&Action::Sign));
        assert!(allowed.actions.contains(&Action::Spend));
    }

    #[test]
    fn a_time_lock_is_released_only_when_it_has_passed() {
        let until = T0 + 3;
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::TimeLocked { until })),
            (T0 + 1, Event::Tick),
            (until - 1, Event::Tick),
            (until, Event::Tick),
            (until, Event::Decided(Decided::Allow)),
        ]);
        let locked = ok(&r[1]);
        assert_eq!(locked.hops, vec![S::TimeLocked]);
        assert_eq!(locked.snapshot.until, Some(until));
        assert!(locked.actions.contains(&Action::Schedule { at: until }));
        // Early ticks change nothing and ask for nothing.
        for early in [&r[2], &r[3]] {
            let n = ok(early);
            assert!(n.hops.is_empty() && n.actions.is_empty(), "{n:?}");
        }
        assert_eq!(ok(&r[4]).actions, vec![Action::Evaluate]);
        let allowed = ok(&r[5]);
        assert_eq!(allowed.hops, vec![S::Approved]);
        assert_eq!(allowed.snapshot.until, None);
    }

    #[test]
    fn a_time_locked_request_does_not_expire_before_its_lock_ends() {
        // Waiting limit 600 s, lock of 2 000 s: ticks past the waiting limit
        // leave it locked.
        let until = T0 + 2000;
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::TimeLocked { until })),
            (T0 + 1000, Event::Tick),
        ]);
        let n = ok(&r[2]);
        assert!(n.hops.is_empty());
        assert_eq!(n.snapshot.state, S::TimeLocked);
    }

    #[test]
    fn a_waiting_request_expires_at_its_deadline_and_not_before() {
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::NeedApprovals)),
            (T0 + 599, Event::Tick),
            (T0 + 600, Event::Tick),
        ]);
        assert!(ok(&r[2]).hops.is_empty());
        let expired = ok(&r[3]);
        assert_eq!(expired.hops, vec![S::Expired]);
        assert!(matches!(
            &expired.records[..],
            [Record::Closed {
                state: S::Expired,
                ..
            }]
        ));
        // Too late for an approval.
        assert_eq!(
            step(
                &expired.snapshot,
                &Event::ApprovalRecorded,
                T0 + 601,
                &limits()
            ),
            Err(Refusal::NoApprovals { state: S::Expired })
        );
    }

    #[test]
    fn waiting_requests_can_be_cancelled_and_others_cannot() {
        let cancel = |by: Canceller| Event::Cancel {
            by,
            reason: "duplicate".into(),
        };
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::NeedApprovals)),
            (T0 + 5, cancel(Canceller::Officer("alice".into()))),
        ]);
        let n = ok(&r[2]);
        assert_eq!(n.hops, vec![S::Cancelled]);
        assert_eq!(n.cause, "cancelled by officer alice: duplicate");
        assert!(matches!(
            &n.records[..],
            [Record::Closed { state: S::Cancelled, by: Some(b), .. }] if b == "alice"
        ));
        // A time-locked one too.
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::TimeLocked { until: T0 + 60 })),
            (T0 + 5, cancel(Canceller::Initiator("payments".into()))),
        ]);
        assert_eq!(ok(&r[2]).hops, vec![S::Cancelled]);
        // Not one that is being signed or done.
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (T0, Event::SigningStarted),
            (T0, cancel(Canceller::Initiator("payments".into()))),
        ]);
        assert_eq!(r[3], Err(Refusal::NotCancellable { state: S::Signing }));
    }

    #[test]
    fn a_failed_signing_leaves_the_history_and_can_be_resubmitted() {
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (T0, Event::SigningStarted),
            (
                T0 + 1,
                Event::SigningFailed {
                    reason: "quorum unavailable".into(),
                },
            ),
            (T0 + 50, Event::Resubmitted),
            (T0 + 50, Event::Decided(Decided::Allow)),
        ]);
        let failed = ok(&r[3]);
        assert_eq!(failed.hops, vec![S::Failed]);
        assert!(!failed.snapshot.is_spent());
        assert!(matches!(&failed.records[..], [Record::Failed { .. }]));
        let again = ok(&r[4]);
        assert_eq!(again.hops, vec![S::Received]);
        assert_eq!(again.actions, vec![Action::Evaluate]);
        assert_eq!(ok(&r[5]).hops, vec![S::Approved]);
        // Only a failed request can be resubmitted.
        let s = ok(&r[5]).snapshot.clone();
        assert_eq!(
            step(&s, &Event::Resubmitted, T0, &limits()),
            Err(Refusal::NotFailed { state: S::Approved })
        );
    }

    #[test]
    fn a_module_can_refuse_or_hold_and_release() {
        let refused = run(&[(
            T0,
            Event::Prepared {
                verdicts: vec![
                    ("risk".into(), Verdict::Continue),
                    (
                        "payments".into(),
                        Verdict::Refuse {
                            reason: "unknown chain".into(),
                        },
                    ),
                ],
            },
        )]);
        let n = ok(&refused[0]);
        assert_eq!(n.hops, vec![S::Rejected]);
        assert!(n.cause.contains("payments") && n.cause.contains("unknown chain"));

        let held = run(&[
            (
                T0,
                Event::Prepared {
                    verdicts: vec![
                        (
                            "risk".into(),
                            Verdict::Hold {
                                reason: "review".into(),
                            },
                        ),
                        (
                            "kyc".into(),
                            Verdict::Hold {
                                reason: "tier".into(),
                            },
                        ),
                    ],
                },
            ),
            (
                T0 + 1,
                Event::Released {
                    module: "risk".into(),
                },
            ),
            (T0 + 2, Event::Decided(Decided::Allow)),
            (
                T0 + 3,
                Event::Released {
                    module: "kyc".into(),
                },
            ),
            (T0 + 3, Event::Decided(Decided::Allow)),
        ]);
        let h = ok(&held[0]);
        assert_eq!(h.hops, vec![S::Held]);
        assert_eq!(h.snapshot.holds.len(), 2);
        assert!(h.actions.contains(&Action::Schedule { at: T0 + 600 }));
        // One release of two: still held, no evaluation.
        let one = ok(&held[1]);
        assert!(one.actions.is_empty() && one.hops.is_empty());
        // A decision while still held is refused (never signed while held).
        assert!(held[2].is_err());
        assert_eq!(ok(&held[3]).actions, vec![Action::Evaluate]);
        assert_eq!(ok(&held[4]).hops, vec![S::Approved]);
    }

    #[test]
    fn a_held_request_expires() {
        let r = run(&[
            (
                T0,
                Event::Prepared {
                    verdicts: vec![(
                        "risk".into(),
                        Verdict::Hold {
                            reason: "review".into(),
                        },
                    )],
                },
            ),
            (T0 + 600, Event::Tick),
        ]);
        assert_eq!(ok(&r[1]).hops, vec![S::Expired]);
    }

    #[test]
    fn post_signing_steps_run_in_order_with_retries() {
        let steps = vec![
            ("payments".to_string(), "broadcast".to_string()),
            ("payments".to_string(), "confirmations".to_string()),
        ];
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (T0, Event::SigningStarted),
            (T0, Event::Signed { steps }),
            (
                T0 + 1,
                Event::StepFailed {
                    index: 0,
                    reason: "rpc down".into(),
                    retry_at: Some(T0 + 30),
                },
            ),
            (T0 + 10, Event::Tick),
            (T0 + 30, Event::Tick),
            (T0 + 31, Event::StepDone { index: 0 }),
            (T0 + 90, Event::StepDone { index: 1 }),
        ]);
        let signed = ok(&r[3]);
        assert_eq!(signed.hops, vec![S::Signed]);
        assert_eq!(signed.actions, vec![Action::RunStep { index: 0 }]);
        assert_eq!(
            ok(&r[4]).actions,
            vec![Action::Schedule { at: T0 + 30 }],
            "retry scheduled"
        );
        assert_eq!(ok(&r[5]).actions, vec![Action::Schedule { at: T0 + 30 }]);
        assert_eq!(ok(&r[6]).actions, vec![Action::RunStep { index: 0 }]);
        assert_eq!(ok(&r[7]).actions, vec![Action::RunStep { index: 1 }]);
        let done = ok(&r[8]);
        assert_eq!(done.hops, vec![S::Completed]);
        assert!(done.snapshot.is_spent());
    }

    #[test]
    fn a_post_signing_step_that_fails_for_good_fails_the_request_but_it_stays_spent() {
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (
                T0,
                Event::Signed {
                    steps: vec![("payments".into(), "broadcast".into())],
                },
            ),
            (
                T0 + 1,
                Event::StepFailed {
                    index: 0,
                    reason: "rejected by the chain".into(),
                    retry_at: None,
                },
            ),
        ]);
        let n = ok(&r[3]);
        assert_eq!(n.hops, vec![S::Failed]);
        assert!(
            n.records.is_empty(),
            "no request_failed: a signature exists"
        );
        assert!(n.snapshot.is_spent());
        // And it cannot be resubmitted (it was signed).
        assert!(step(&n.snapshot, &Event::Resubmitted, T0 + 2, &limits()).is_err());
    }

    #[test]
    fn events_out_of_place_are_refused_not_applied() {
        let s = Snapshot::received();
        for e in [
            Event::SigningStarted,
            Event::Signed { steps: vec![] },
            Event::StepDone { index: 0 },
            Event::Released {
                module: "risk".into(),
            },
        ] {
            assert!(step(&s, &e, T0, &limits()).is_err(), "{e:?}");
        }
        // A step index out of range.
        let r = run(&[
            (T0, prepared()),
            (T0, Event::Decided(Decided::Allow)),
            (
                T0,
                Event::Signed {
                    steps: vec![("m".into(), "s".into())],
                },
            ),
            (T0, Event::StepDone { index: 7 }),
        ]);
        assert!(r[3].is_err());
    }
}
