//! Start-up: the store, the HSM, the audit log and the journal; the store
//! caught up with the log after a crash; the policy in force (recorded if
//! new); keys the log does not name yet (an upgraded deployment); requests
//! a crash left in progress; the aggregates of what the policy allowed; the
//! presignature index; the transport to the signers.
//!
//! Everything here blocks (SQLite, PKCS#11, file reads): [`crate::run`]
//! calls it on a blocking thread, before the API serves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use keyfold_audit::record as audit_record;
use keyfold_net::{Identity, NetConfig, Node};
use keyfold_policy::{Policy, SignedPolicy, Spending};
use keyfold_store::{CoordinatorStore, Op};
use sha2::{Digest, Sha256};

use crate::clock::{SharedClock, SystemClock};
use crate::config::CoordinatorConfig;
use crate::core::Coordinator;
use crate::journal::Journal;
use crate::keys::key_event;
use crate::modules::Modules;
use crate::policy::EnforcedPolicy;
use crate::presig_pool::PresigPool;
use crate::requests::lifecycle::Limits;
use crate::requests::locks::RequestLocks;
use crate::requests::record::StoredRequest;
use crate::signers::{Liveness, QuicTransport, SignerClient, Transport};
use crate::signing::{self, SigningEngine};

/// Where a signed policy update used to be kept (before the store held
/// policy versions); read once, at the first start after an upgrade.
const LEGACY_UPDATE_FILE: &str = "policy-update.json";

/// What a test (or an embedding) can replace.
pub struct Parts {
    /// How commands reach the signers (`None`: QUIC with mutual TLS, from
    /// the configuration's certificates).
    pub transport: Option<Arc<dyn Transport>>,
    /// The clock.
    pub clock: SharedClock,
    /// Modules, in the order they run.
    pub modules: Modules,
}

impl Default for Parts {
    fn default() -> Self {
        Parts {
            transport: None,
            clock: Arc::new(SystemClock),
            modules: Modules::default(),
        }
    }
}

fn e(context: &str) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |err| format!("{context}: {err}")
}

/// The policy in force at start and its exact text: the newest stored
/// version when it is newer than the configured genesis file, else the
/// file. A file that changes a version already in force is refused.
fn load_policy(
    cfg: &CoordinatorConfig,
    store: &CoordinatorStore,
    journal: &Journal,
) -> Result<(Policy, String, Option<SignedPolicy>), String> {
    let file = &cfg.policy_file;
    let text = std::fs::read_to_string(file)
        .map_err(|err| format!("policy file {}: {err}", file.display()))?;
    let genesis =
        Policy::from_toml(&text).map_err(|err| format!("policy file {}: {err}", file.display()))?;
    let mut stored = store
        .latest_policy()
        .map_err(|err| e("coordinator store")(&err))?;
    // Upgrade: a signed update kept in a file by an older coordinator.
    let legacy = cfg.data_dir.join(LEGACY_UPDATE_FILE);
    if let Ok(bytes) = std::fs::read(&legacy) {
        let update: SignedPolicy =
            serde_json::from_slice(&bytes).map_err(|err| format!("{}: {err}", legacy.display()))?;
        let p = Policy::from_toml(&update.document_toml)
            .map_err(|err| format!("{}: {err}", legacy.display()))?;
        if stored.as_ref().is_none_or(|(v, _, _)| *v < p.version()) {
            let json = serde_json::to_string(&update).map_err(|err| err.to_string())?;
            journal
                .submit(
                    Vec::new(),
                    vec![Op::InsertPolicy {
                        version: p.version(),
                        document: update.document_toml.clone(),
                        update_json: Some(json.clone()),
                        at: 0,
                    }],
                )
                .done_blocking()
                .map_err(|err| e("importing the stored policy update")(&err))?;
            stored = Some((p.version(), update.document_toml, Some(json)));
        }
    }
    match stored {
        Some((v, doc, update)) if v > genesis.version() => {
            let p = Policy::from_toml(&doc)
                .map_err(|err| format!("stored policy version {v} no longer parses: {err}"))?;
            let update = update
                .map(|u| serde_json::from_str::<SignedPolicy>(&u))
                .transpose()
                .map_err(|err| format!("stored policy version {v}: {err}"))?;
            tracing::info!(version = v, "enforcing the stored signed policy update");
            Ok((p, doc, update))
        }
        Some((v, doc, _)) if v == genesis.version() && doc != text => Err(format!(
            "policy file {}: version {v} differs from the version {v} this coordinator already enforces; a changed policy needs a new version signed by the admins (POST /v1/policy)",
            file.display()
        )),
        _ => Ok((genesis, text, None)),
    }
}

impl Coordinator {
    /// Starts a coordinator talking QUIC to its signers.
    pub fn start(cfg: CoordinatorConfig) -> Result<Arc<Self>, String> {
        Self::start_with(cfg, Parts::default())
    }

    /// Starts a coordinator with the given parts (see [`Parts`]).
    pub fn start_with(cfg: CoordinatorConfig, parts: Parts) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|err| format!("cannot create {}: {err}", cfg.data_dir.display()))?;
        let store = Arc::new(
            CoordinatorStore::open(cfg.data_dir.join("coordinator.db"))
                .map_err(|err| e("coordinator store")(&err))?,
        );
        let (cold, audit_key) = match &cfg.hsm {
            Some(h) => {
                let hsm = keyfold_hsm::Hsm::open(h).map_err(|err| e("HSM")(&err))?;
                tracing::info!(token = %h.token_label, "cold tier: HSM ready");
                let key = keyfold_hsm::HsmAuditSigner::open_or_create(
                    &hsm,
                    keyfold_hsm::DEFAULT_AUDIT_KEY_LABEL,
                )
                .map_err(|err| e("HSM audit key")(&err))?;
                let key: keyfold_audit::trail::SharedSigner = Box::new(key);
                (Some(keyfold_hsm::ColdKeys::new(&hsm)), Some(key))
            }
            None => (None, None),
        };
        let applied = store
            .audit_applied()
            .map_err(|err| e("coordinator store")(&err))?;
        let (trail, tail) = keyfold_audit::Trail::open_with_tail(
            cfg.data_dir.join("audit"),
            &cfg.node_id,
            audit_key,
            applied,
        )
        .map_err(|err| e("audit log")(&err))?;
        let trail = Arc::new(trail.with_byte_limit(cfg.tuning.audit_max_bytes));
        #[cfg(feature = "bench-unguarded")]
        let audit_on = !cfg.bench.unguarded;
        #[cfg(not(feature = "bench-unguarded"))]
        let audit_on = true;
        let journal = Journal::start_with(store.clone(), trail.clone(), audit_on)
            .map_err(|err| e("journal writer")(&err))?;
        let caught_up = crate::recovery::catch_up(&store, &journal, &tail)?;
        if caught_up > 0 {
            tracing::warn!(entries = caught_up, "store caught up with the audit log");
        }

        let (policy, document, update) = load_policy(&cfg, &store, &journal)?;
        let hash: [u8; 32] = Sha256::digest(document.as_bytes()).into();
        if trail.last_policy_hash() != Some(hash) {
            journal
                .submit(
                    vec![audit_record::policy_document_event(
                        &policy,
                        document.clone(),
                        update.as_ref(),
                    )],
                    vec![Op::InsertPolicy {
                        version: policy.version(),
                        document: document.clone(),
                        update_json: update
                            .as_ref()
                            .map(serde_json::to_string)
                            .transpose()
                            .map_err(|err| err.to_string())?,
                        at: parts.clock.now_ms().div_euclid(1000),
                    }],
                )
                .done_blocking()
                .map_err(|err| e("audit log")(&err))?;
        }

        // Keys made before the audit log existed (an upgraded deployment).
        let keys = store
            .list_keys()
            .map_err(|err| e("coordinator store")(&err))?;
        let unrecorded: Vec<_> = keys
            .iter()
            .filter(|k| !trail.has_key(&k.key_id))
            .map(key_event)
            .collect();
        if !unrecorded.is_empty() {
            tracing::warn!(
                keys = unrecorded.len(),
                "recording keys created before the audit log in it"
            );
            journal
                .submit(unrecorded, Vec::new())
                .done_blocking()
                .map_err(|err| e("audit log")(&err))?;
        }
        let failed_keys = store
            .fail_unfinished_key_requests()
            .map_err(|err| e("coordinator store")(&err))?;
        if failed_keys > 0 {
            tracing::warn!(
                failed_keys,
                "key creations interrupted by the last run are marked failed"
            );
        }
        crate::recovery::close_interrupted(&store, &journal, parts.clock.now_ms())?;

        // What the policy allowed so far, for its limits.
        let spent = store
            .spent_requests()
            .map_err(|err| e("coordinator store")(&err))?
            .into_iter()
            .map(|(json, at)| {
                serde_json::from_str::<StoredRequest>(&json)
                    .map(|s| s.request.history_entry(u64::try_from(at).unwrap_or(0)))
                    .map_err(|err| format!("a stored request does not parse: {err}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        tracing::info!(
            version = policy.version(),
            spent = spent.len(),
            "policy loaded"
        );
        let aggregates = Spending::from_entries(&policy, spent);
        let last = u64::try_from(trail.last_time_ms().div_euclid(1000)).unwrap_or(0);
        let enforced = EnforcedPolicy::new(policy, document, update, aggregates, last);
        // A version installed in shadow before the restart, evaluated again.
        crate::policy::shadow::restore(
            &store,
            &journal,
            &enforced,
            parts.clock.now_ms().div_euclid(1000),
        )?;

        let hot_ecdsa: Vec<_> = keys
            .iter()
            .filter(|k| k.curve == keyfold_store::Curve::Secp256k1 && !crate::keys::is_cold(k))
            .cloned()
            .collect();
        let pool = Arc::new(
            PresigPool::load(
                &store,
                &hot_ecdsa,
                journal.clone(),
                cfg.tuning.presignatures,
            )
            .map_err(|err| e("coordinator store")(&err))?,
        );
        let transport: Arc<dyn Transport> = match parts.transport {
            Some(t) => t,
            None => {
                let identity = Identity::load(&cfg.tls.ca_cert, &cfg.tls.cert, &cfg.tls.key)
                    .map_err(|err| e("TLS identity")(&err))?;
                let listen = cfg.quic_bind_addr();
                let net = Node::bind(listen, &identity, NetConfig::default())
                    .map_err(|err| format!("QUIC endpoint on {listen}: {err}"))?;
                Arc::new(QuicTransport::new(net))
            }
        };
        let client = SignerClient::new(cfg.signers.clone(), transport);
        let liveness = Arc::new(Liveness::new(client.clone(), cfg.tuning.probe_timeout()));
        let signing = SigningEngine::new(
            client.clone(),
            liveness.clone(),
            pool.clone(),
            journal.clone(),
            cold,
            signing::Limits {
                session_timeout: cfg.tuning.session_timeout(),
                attempts: cfg.tuning.attempts,
            },
        );
        let limits = Limits {
            waiting_secs: cfg.tuning.request_expiry_secs,
        };
        tracing::info!(dir = %trail.dir().display(), checkpoint_key = %trail.public_key_hex(), "audit log open");
        let key_map: HashMap<_, _> = keys.into_iter().map(|k| (k.key_id.clone(), k)).collect();
        let mut registry = keyfold_chain::registry::ChainRegistry::builtin();
        if let Some(path) = &cfg.chains_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| format!("chain registry {}: {err}", path.display()))?;
            let extra = keyfold_chain::registry::ChainRegistry::from_toml(&text)
                .map_err(|err| format!("chain registry {}: {err}", path.display()))?;
            registry
                .merge(extra)
                .map_err(|err| format!("chain registry {}: {err}", path.display()))?;
        }
        let payments = Arc::new(crate::payments::Payments::new(
            registry,
            store.clone(),
            parts.clock.clone(),
            journal.clone(),
        )?);
        let treasury = if cfg.treasury.tiers.is_empty() {
            None
        } else {
            Some(Arc::new(crate::treasury::Treasury::new(
                cfg.treasury.clone(),
            )?))
        };
        let risk = if cfg.risk.enabled {
            Some(Arc::new(crate::risk::Risk::open(
                cfg.risk.clone(),
                &cfg.data_dir,
                &store,
                journal.clone(),
                parts.clock.clone(),
                client.clone(),
                cfg.tuning.probe_timeout(),
                skip_freezes(&cfg),
            )?))
        } else {
            None
        };
        let mut modules: Vec<Arc<dyn crate::modules::Module>> =
            parts.modules.iter().cloned().collect();
        // Risk first: a payout it refuses or holds never reaches the policy.
        if let Some(r) = &risk {
            modules.push(r.clone());
        }
        modules.push(payments.clone());
        Ok(Arc::new_cyclic(|me| {
            payments.attach(me.clone());
            Coordinator {
                me: me.clone(),
                cfg,
                clock: parts.clock,
                store,
                journal,
                policy: enforced,
                client,
                liveness,
                pool,
                signing,
                modules: Modules::new(modules),
                payments: Some(payments),
                treasury,
                risk,
                locks: RequestLocks::default(),
                keys: RwLock::new(key_map),
                limits,
            }
        }))
    }
}

/// TEST ONLY: whether this coordinator ignores freezes (the signers must
/// still refuse); always false outside test builds.
fn skip_freezes(cfg: &CoordinatorConfig) -> bool {
    #[cfg(feature = "test-skip-policy")]
    {
        cfg.policy.skip_freezes
    }
    #[cfg(not(feature = "test-skip-policy"))]
    {
        let _ = cfg;
        false
    }
}

/// Whether `dir` holds a coordinator store (for commands that must not
/// create one by mistake).
pub fn has_store(dir: &Path) -> bool {
    dir.join("coordinator.db").is_file()
}
