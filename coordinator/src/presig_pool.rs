//! The coordinator's index of the presignatures its signers hold, and the
//! refill that tops it up.
//!
//! The index lives in memory (loaded from the store at start): claiming a
//! presignature for a request is a pop from a queue, no I/O on the online
//! path. The claim is written to the store behind it, through the journal,
//! without waiting. Losing a claim in a crash is harmless: the signers
//! mark a presignature used durably before they use it, and refuse a second
//! use; the coordinator then signs with full signing.
//!
//! The refill runs one presignature session at a time, only while no
//! request arrived for [`QUIET_BEFORE_REFILL`] or the pool is below half,
//! so that its proofs (about a second of CPU at each signer, done at idle
//! priority there) do not delay the online signatures they exist to speed
//! up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyfold_mpc::{KeyId, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold};
use keyfold_proto::signer::Command;
use keyfold_store::{CoordinatorStore, KeyRecord, Op};

use crate::journal::Journal;
use crate::signers::{describe, Liveness, SignerClient};

/// A refill waits while requests arrived this recently and the pool is at
/// least half full.
pub const QUIET_BEFORE_REFILL: Duration = Duration::from_millis(500);

type PoolKey = (String, Vec<u16>);

/// The in-memory index of available presignatures, by key and signer set.
pub struct PresigPool {
    available: Mutex<HashMap<PoolKey, VecDeque<String>>>,
    last_request: Mutex<Option<Instant>>,
    journal: Journal,
    target: usize,
}

impl PresigPool {
    /// Loads the available presignatures of every ECDSA hot key from `store`.
    pub fn load(
        store: &CoordinatorStore,
        keys: &[KeyRecord],
        journal: Journal,
        target: usize,
    ) -> Result<PresigPool, keyfold_store::StoreError> {
        let mut available: HashMap<PoolKey, VecDeque<String>> = HashMap::new();
        for key in keys {
            for (set, ids) in store.available_presigs(&key.key_id)? {
                available
                    .entry((key.key_id.clone(), set))
                    .or_default()
                    .extend(ids);
            }
        }
        Ok(PresigPool {
            available: Mutex::new(available),
            last_request: Mutex::new(None),
            journal,
            target,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, VecDeque<String>>> {
        self.available.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many are available for `key_id` and `set`.
    pub fn count(&self, key_id: &str, set: &[u16]) -> usize {
        self.map()
            .get(&(key_id.to_string(), set.to_vec()))
            .map_or(0, VecDeque::len)
    }

    /// Takes the oldest available presignature of `key_id` and `set`; the
    /// claim is written to the store behind it.
    pub fn claim(&self, key_id: &str, set: &[u16]) -> Option<String> {
        let id = self
            .map()
            .get_mut(&(key_id.to_string(), set.to_vec()))?
            .pop_front()?;
        // Not awaited: see the module docs.
        drop(
            self.journal
                .submit(Vec::new(), vec![Op::ClaimPresig { id: id.clone() }]),
        );
        Some(id)
    }

    /// Adds a presignature the signers of `set` now hold (written first).
    pub async fn add(&self, key_id: &str, set: &[u16], id: String) -> Result<(), String> {
        self.journal
            .write(
                Vec::new(),
                vec![Op::AddPresig {
                    id: id.clone(),
                    key_id: key_id.to_string(),
                    signer_set: set.to_vec(),
                }],
            )
            .await
            .map_err(|e| e.to_string())?;
        self.map()
            .entry((key_id.to_string(), set.to_vec()))
            .or_default()
            .push_back(id);
        Ok(())
    }

    /// Notes that a signing request arrived (refills yield to traffic).
    pub fn touch(&self) {
        *self.last_request.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a request arrived in the last [`QUIET_BEFORE_REFILL`].
    pub fn recently_active(&self) -> bool {
        self.last_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < QUIET_BEFORE_REFILL)
    }

    /// The presignatures kept ready per key and signer set.
    pub fn target(&self) -> usize {
        self.target
    }

    /// The emptiest pool the refill keeps (a key and signer set it has
    /// filled before) when it holds less than half the target, with its
    /// count: payouts from that key are about to fall back to full signing.
    pub fn low(&self) -> Option<(String, usize)> {
        lowest_below_half(
            self.map()
                .iter()
                .map(|((key, _), q)| (key.as_str(), q.len())),
            self.target,
        )
    }
}

/// The signer set whose presignatures serve a key: its first `t` live
/// participants (keygen indices).
pub fn pool_set(key: &KeyRecord, live: &HashSet<String>) -> Option<SignerSet> {
    let threshold = Threshold::new(key.t, key.n).ok()?;
    let idx: Vec<u16> = key
        .participants
        .iter()
        .enumerate()
        .filter(|(_, n)| live.contains(*n))
        .take(usize::from(key.t))
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    SignerSet::new(&idx, threshold).ok()
}

/// What the refill needs.
pub struct Refill {
    /// The index.
    pub pool: Arc<PresigPool>,
    /// Commands to the signers.
    pub client: SignerClient,
    /// Who is up.
    pub liveness: Arc<Liveness>,
    /// How long a presignature session may take.
    pub session_timeout: Duration,
}

impl Refill {
    /// Runs at most one presignature session for the first key that needs
    /// one. Returns whether it made one.
    pub async fn once(&self, keys: &[KeyRecord]) -> bool {
        let live = self.liveness.live().await;
        for key in keys {
            let Some(set) = pool_set(key, &live) else {
                continue;
            };
            let have = self.pool.count(&key.key_id, set.parties());
            let target = self.pool.target();
            if have >= target || (have * 2 >= target && self.pool.recently_active()) {
                continue;
            }
            return self.one(key, set).await;
        }
        false
    }

    async fn one(&self, key: &KeyRecord, set: SignerSet) -> bool {
        let (Ok(key_id), Ok(threshold)) =
            (key.key_id.parse::<KeyId>(), Threshold::new(key.t, key.n))
        else {
            return false;
        };
        let session = RequestId::new(format!("presign-{key_id}"))
            .map_err(|e| e.to_string())
            .and_then(|rid| {
                SessionDescriptor::new(
                    ProtocolKind::EcdsaPresign,
                    key_id,
                    rid,
                    threshold,
                    set.clone(),
                )
                .map_err(|e| e.to_string())
            });
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(key = %key.key_id, error = %e, "cannot describe a presignature session");
                return false;
            }
        };
        let nodes: Vec<_> = set
            .parties()
            .iter()
            .filter_map(|&i| key.participants.get(usize::from(i)))
            .filter_map(|n| self.client.signer(n).cloned())
            .collect();
        let addrs = self.client.addrs();
        match self
            .client
            .call_all(&nodes, self.session_timeout, |_| Command::Presign {
                session: session.clone(),
                addrs: addrs.clone(),
            })
            .await
        {
            Ok(_) => match self
                .pool
                .add(&key.key_id, set.parties(), session.id().to_string())
                .await
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(key = %key.key_id, error = %e, "cannot record a presignature");
                    false
                }
            },
            Err(f) => {
                self.liveness.forget();
                tracing::warn!(key = %key.key_id, failures = %describe(&f), "presignature refill failed");
                false
            }
        }
    }
}

/// The emptiest of `pools` ((key, available)) when it holds less than half
/// of `target` (ties: the smallest key id, the same on every round).
fn lowest_below_half<'a>(
    pools: impl Iterator<Item = (&'a str, usize)>,
    target: usize,
) -> Option<(String, usize)> {
    if target == 0 {
        return None;
    }
    pools
        .filter(|(_, n)| n.saturating_mul(2) < target)
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)))
        .map(|(k, n)| (k.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::lowest_below_half;

    #[test]
    fn a_pool_is_low_below_half_its_target() {
        let pools = [("k2", 3usize), ("k1", 5), ("k3", 3)];
        assert_eq!(
            lowest_below_half(pools.into_iter(), 10),
            Some(("k2".to_string(), 3))
        );
        // Exactly half is not low; no pool kept, or no target, neither.
        assert_eq!(lowest_below_half([("k", 5)].into_iter(), 10), None);
        assert_eq!(lowest_below_half([].into_iter(), 10), None);
        assert_eq!(lowest_below_half([("k", 0)].into_iter(), 0), None);
    }
}
