//! Which signers are up: a status probe of every signer, cached for a
//! second so a signing request does not wait for a round trip to each, and
//! probed again when the cached set cannot form a key's quorum (a signer
//! that came back within the cache's lifetime is not missed).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use keyfold_proto::signer::{Command, NodeStatus, Response};
use keyfold_store::KeyRecord;

use super::client::{Failure, NodeFailure, SignerClient};
use crate::config::SignerEntry;

/// How long a probe is reused.
const LIVE_TTL: Duration = Duration::from_secs(1);

/// The liveness view of the signers.
pub struct Liveness {
    client: SignerClient,
    probe_timeout: Duration,
    cache: Mutex<Option<(Instant, HashSet<String>)>>,
}

impl Liveness {
    /// Liveness of `client`'s signers, probing with `probe_timeout`.
    pub fn new(client: SignerClient, probe_timeout: Duration) -> Self {
        Liveness {
            client,
            probe_timeout,
            cache: Mutex::new(None),
        }
    }

    /// Asks every signer for its status, in parallel, and refreshes the
    /// cache with the answers (a status request is as fresh a probe as any).
    pub async fn probe(&self) -> Vec<(SignerEntry, Result<NodeStatus, NodeFailure>)> {
        let answers = self.ask_all().await;
        let live = answers
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| s.node_id.clone())
            .collect();
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), live));
        answers
    }

    async fn ask_all(&self) -> Vec<(SignerEntry, Result<NodeStatus, NodeFailure>)> {
        let timeout = self.probe_timeout;
        join_all(self.client.all_signers().iter().map(|s| async move {
            let r = match self.client.call(s, Command::Status, timeout).await {
                Ok(Response::Status(st)) => Ok(st),
                Ok(other) => Err(NodeFailure {
                    node: s.node_id.clone(),
                    failure: Failure::BadAnswer(format!("unexpected answer to status: {other:?}")),
                }),
                Err(e) => Err(e),
            };
            (s.clone(), r)
        }))
        .await
    }

    /// Probes every signer now and refreshes the cache.
    pub async fn probe_live(&self) -> HashSet<String> {
        self.probe()
            .await
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| s.node_id)
            .collect()
    }

    /// Live signers: the cached probe if fresh, else a new probe.
    pub async fn live(&self) -> HashSet<String> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < LIVE_TTL)
            .map(|(_, live)| live.clone());
        match cached {
            Some(live) => live,
            None => self.probe_live().await,
        }
    }

    /// The live signers for signing with `key`: the cached probe, or a
    /// fresh one when the cached set cannot form the key's quorum.
    pub async fn live_for(&self, key: &KeyRecord) -> HashSet<String> {
        let live = self.live().await;
        let usable = key
            .participants
            .iter()
            .filter(|p| live.contains(*p))
            .count();
        if usable >= usize::from(key.t) {
            return live;
        }
        self.probe_live().await
    }

    /// Forgets the cached probe (after a signer failed a command).
    pub fn forget(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
