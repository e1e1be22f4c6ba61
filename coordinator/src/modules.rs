//! Where payment, risk and settlement modules plug into the request
//! lifecycle (the contract is in `docs/architecture.md`, "Module hooks").
//!
//! A [`Module`] may:
//!
//! 1. **prepare** a new request before the policy evaluates it: attach
//!    typed data (stored with the request, shown in its status, and part of
//!    what the signers receive), refuse it (it ends `rejected`, logged), or
//!    hold it (it waits in `held` until the module calls
//!    `Coordinator::release`, or expires);
//! 2. add **post-signing steps** once the signature is made, verified and
//!    logged (broadcast, confirmations ...): they run in order after the
//!    client got its answer, each retried at the time it asks for, until
//!    done (the request ends `completed`) or failed for good (`failed`; the
//!    signature was released, so it still counts against the limits);
//! 3. act at once when a request is **signed** (before the client's
//!    answer), and be **notified** of every state change (webhooks).
//!
//! Hooks run outside every coordinator lock except the request's own (one
//! task per request at a time), so a slow module delays only its request.

use std::sync::Arc;

use keyfold_proto::api::{RequestState, SignResult};

use crate::requests::lifecycle::Verdict;
use crate::requests::record::StoredRequest;
use crate::service::BoxFuture;

/// What a module says about a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Go on, hold or refuse.
    pub verdict: Verdict,
    /// Typed data to attach (the module's own JSON), if any.
    pub data: Option<serde_json::Value>,
}

impl Prepared {
    /// Go on, nothing attached.
    pub fn proceed() -> Self {
        Prepared {
            verdict: Verdict::Continue,
            data: None,
        }
    }
}

/// How a post-signing step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Done.
    Done,
    /// Not yet (for example waiting for confirmations): run it again at
    /// `at` (Unix seconds).
    Retry {
        /// When.
        at: u64,
        /// Why, for the logs and the request's history.
        reason: String,
    },
    /// Failed for good.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A coordinator module (see the module docs).
pub trait Module: Send + Sync + 'static {
    /// Its name: unique, stable (stored with requests).
    fn name(&self) -> &'static str;

    /// Before the policy evaluates a new request.
    fn prepare<'a>(&'a self, request: &'a StoredRequest) -> BoxFuture<'a, Prepared> {
        let _ = request;
        Box::pin(async { Prepared::proceed() })
    }

    /// The signature was made, verified and logged: called before the
    /// client's answer and the post-signing steps, for work that must not
    /// wait for them (sending a transaction whose bytes are now fixed).
    /// Must not block: spawn anything slow. The steps stay the record of
    /// what was done.
    fn signed(&self, request: &StoredRequest, result: &SignResult) {
        let _ = (request, result);
    }

    /// The steps to run after the signature, in order (names unique within
    /// the module).
    fn post_signing(&self, request: &StoredRequest, result: &SignResult) -> Vec<String> {
        let _ = (request, result);
        Vec::new()
    }

    /// Runs one post-signing step.
    fn run_step<'a>(
        &'a self,
        request: &'a StoredRequest,
        result: &'a SignResult,
        step: &'a str,
    ) -> BoxFuture<'a, StepOutcome> {
        let _ = (request, result);
        let step = step.to_string();
        Box::pin(async move {
            StepOutcome::Failed {
                reason: format!("this module has no step {step}"),
            }
        })
    }

    /// A request's state changed (called after it is recorded).
    fn notify(&self, request_id: &str, state: RequestState) {
        let _ = (request_id, state);
    }
}

/// The modules of a coordinator, in the order they run.
#[derive(Clone, Default)]
pub struct Modules(Vec<Arc<dyn Module>>);

impl Modules {
    /// The given modules.
    pub fn new(list: Vec<Arc<dyn Module>>) -> Self {
        Modules(list)
    }

    /// The module named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Module>> {
        self.0.iter().find(|m| m.name() == name)
    }

    /// Every module.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Module>> {
        self.0.iter()
    }
}
