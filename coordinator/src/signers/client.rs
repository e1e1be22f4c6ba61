//! Talking to the signers: one JSON command per request over a
//! [`Transport`] (QUIC with mutual TLS in production, in-process in tests),
//! with failures kept as typed data: the coordinator's own observation (it
//! could not reach the signer) is told apart from what a signer says.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use keyfold_net::{Node, NodeId, PeerAddr};
use keyfold_proto::signer::{Command, NodeAddr, Request, Response, WireError};

use crate::blame::RpcFailure;
use crate::config::SignerEntry;
use crate::service::BoxFuture;

/// Why the transport could not deliver a command or bring back its answer.
/// This is the coordinator's own observation of that signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// What kind of failure (typed: blame rests on it).
    pub kind: RpcFailure,
    /// What happened, for a person.
    pub reason: String,
}

/// Carries one command to a signer and brings back its answer bytes.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` (an encoded [`Request`]) to `signer`, waits at most
    /// `timeout` for the answer.
    fn call<'a>(
        &'a self,
        signer: &'a SignerEntry,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, Unreachable>>;
}

/// QUIC with mutual TLS (keyfold-net).
pub struct QuicTransport {
    net: Node,
}

impl QuicTransport {
    /// Wraps the coordinator's QUIC endpoint.
    pub fn new(net: Node) -> Self {
        QuicTransport { net }
    }
}

impl Transport for QuicTransport {
    fn call<'a>(
        &'a self,
        signer: &'a SignerEntry,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, Unreachable>> {
        Box::pin(async move {
            let node = NodeId::new(&signer.node_id).map_err(|e| Unreachable {
                kind: RpcFailure::NotSent,
                reason: e.to_string(),
            })?;
            let peer = PeerAddr {
                node,
                addr: signer.addr,
            };
            self.net
                .request(&peer, &request, timeout)
                .await
                .map_err(|e| Unreachable {
                    kind: RpcFailure::from_net(&e),
                    reason: e.to_string(),
                })
        })
    }
}

/// How one signer failed a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The coordinator could not reach it or got no answer in time: its own
    /// observation, evidence it can act on by itself.
    Unreachable(Unreachable),
    /// It answered with an error (its code, message and any culprits it
    /// names: claims, not evidence).
    Answered(WireError),
    /// It answered something that is not a valid answer to the command.
    BadAnswer(String),
}

/// One signer's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The signer.
    pub node: String,
    /// What went wrong.
    pub failure: Failure,
}

impl NodeFailure {
    /// The signer's own error code, when it answered with an error.
    pub fn code(&self) -> Option<keyfold_proto::signer::ErrorCode> {
        match &self.failure {
            Failure::Answered(w) => Some(w.code),
            _ => None,
        }
    }

    /// What this failure is evidence of, for blame.
    pub fn evidence(&self) -> crate::blame::Evidence {
        match &self.failure {
            Failure::Unreachable(u) => crate::blame::Evidence::Rpc(u.kind),
            Failure::Answered(w) => crate::blame::Evidence::from_wire(w),
            Failure::BadAnswer(_) => crate::blame::Evidence::Rpc(RpcFailure::BadAnswer),
        }
    }
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Failure::Unreachable(u) => write!(f, "{}: {} ({})", self.node, u.kind, u.reason),
            Failure::Answered(w) => write!(f, "{}: {w}", self.node),
            Failure::BadAnswer(r) => write!(f, "{}: bad answer: {r}", self.node),
        }
    }
}

/// Joins failures for a message.
pub fn describe(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The configured signers and the transport to them.
#[derive(Clone)]
pub struct SignerClient {
    signers: Arc<Vec<SignerEntry>>,
    transport: Arc<dyn Transport>,
}

impl SignerClient {
    /// A client for `signers` over `transport`.
    pub fn new(signers: Vec<SignerEntry>, transport: Arc<dyn Transport>) -> Self {
        SignerClient {
            signers: Arc::new(signers),
            transport,
        }
    }

    /// Every configured signer.
    pub fn all_signers(&self) -> &[SignerEntry] {
        &self.signers
    }

    /// The signer named `node`, if configured.
    pub fn signer(&self, node: &str) -> Option<&SignerEntry> {
        self.signers.iter().find(|s| s.node_id == node)
    }

    /// Where every signer listens (sent with session commands).
    pub fn addrs(&self) -> Vec<NodeAddr> {
        self.signers
            .iter()
            .map(|s| NodeAddr {
                node: s.node_id.clone(),
                addr: s.addr,
            })
            .collect()
    }

    /// Sends one command and reads its answer.
    pub async fn call(
        &self,
        signer: &SignerEntry,
        command: Command,
        timeout: Duration,
    ) -> Result<Response, NodeFailure> {
        let fail = |failure| NodeFailure {
            node: signer.node_id.clone(),
            failure,
        };
        let body = serde_json::to_vec(&Request::new(command)).map_err(|e| {
            fail(Failure::BadAnswer(format!(
                "cannot encode the command: {e}"
            )))
        })?;
        let answer = self
            .transport
            .call(signer, body, timeout)
            .await
            .map_err(|u| fail(Failure::Unreachable(u)))?;
        match serde_json::from_slice::<Response>(&answer) {
            Ok(Response::Error(e)) => Err(fail(Failure::Answered(e))),
            Ok(r) => Ok(r),
            Err(e) => Err(fail(Failure::BadAnswer(format!("unreadable answer: {e}")))),
        }
    }

    /// Sends `command(n)` to every node of `nodes` in parallel; returns each
    /// answer in order, or every failure.
    pub async fn call_all<F>(
        &self,
        nodes: &[SignerEntry],
        timeout: Duration,
        command: F,
    ) -> Result<Vec<Response>, Vec<NodeFailure>>
    where
        F: Fn(&SignerEntry) -> Command,
    {
        let results = join_all(nodes.iter().map(|n| self.call(n, command(n), timeout))).await;
        let mut answers = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for r in results {
            match r {
                Ok(a) => answers.push(a),
                Err(f) => failures.push(f),
            }
        }
        if failures.is_empty() {
            Ok(answers)
        } else {
            Err(failures)
        }
    }

    /// Sends `command(n)` to every node and returns each result (no
    /// all-or-nothing).
    pub async fn call_each<F>(
        &self,
        nodes: &[SignerEntry],
        timeout: Duration,
        command: F,
    ) -> Vec<Result<Response, NodeFailure>>
    where
        F: Fn(&SignerEntry) -> Command,
    {
        join_all(nodes.iter().map(|n| self.call(n, command(n), timeout))).await
    }
}
