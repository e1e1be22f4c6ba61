//! Key creation and signing across the signer nodes.
//!
//! The orchestrator picks live signers, describes each session (fresh execution
//! id bound to key, request and signer set), sends every signer its command over
//! QUIC in parallel, combines or collects the results and verifies every
//! signature with an independent implementation (k256, ed25519-dalek) before
//! answering. A signer that is down or times out is left out of the next quorum.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use keyfold_mpc::ecdsa::{self, DerivationPath, HashAlg};
use keyfold_mpc::{eddsa, KeyId, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold};
use keyfold_net::{Identity, NetConfig, Node, NodeId, PeerAddr};
use keyfold_policy::{Approval, SignedPolicy};
use keyfold_proto::api::{
    CreateKeyRequest, KeyInfo, PolicyInfo, RequestList, RequestStatus, SignMode, SignOutcome,
    SignRequest, SignResult, SignerHealth, StatusInfo,
};
use keyfold_proto::signer::{
    Command, ErrorCode, NodeAddr, NodeStatus, PolicyIntent, Request, Response,
};
use keyfold_proto::Curve;
use keyfold_store::coordinator::{BeginOutcome, CoordinatorStore, KeyRecord};
use keyfold_store::Curve as StoreCurve;
use sha2::{Digest, Sha256};

use crate::config::{CoordinatorConfig, SignerEntry};
use crate::policy_gate::PolicyGate;

mod cold;
mod intents;
use crate::service::{BoxFuture, CoordinatorApi, ServiceError};

/// Why a single signer's command failed.
#[derive(Debug, Clone)]
struct NodeFailure {
    node: String,
    reason: String,
    /// The signer's own error code, when it answered with an error.
    code: Option<ErrorCode>,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.node, self.reason)
    }
}

/// The coordinator's engine.
pub struct Orchestrator {
    /// Itself, so work can outlive a dropped HTTP request (see `detached`).
    me: std::sync::Weak<Orchestrator>,
    cfg: CoordinatorConfig,
    net: Node,
    store: Arc<CoordinatorStore>,
    /// Serializes presignature refills so they never starve signing of CPU.
    refill: tokio::sync::Mutex<()>,
    /// The last probe's live signers, reused for [`LIVE_TTL`] so a signing
    /// request does not wait for a status round trip to every signer.
    live_cache: std::sync::Mutex<Option<(std::time::Instant, HashSet<String>)>>,
    /// When the last signing request arrived: refills yield to live traffic.
    last_request: std::sync::Mutex<Option<std::time::Instant>>,
    /// The policy in force.
    policy: PolicyGate,
    /// Serializes policy evaluation with recording its outcome.
    policy_lock: tokio::sync::Mutex<()>,
    /// Cold-tier keys in the coordinator's HSM, when one is configured.
    cold: Option<keyfold_hsm::ColdKeys>,
    /// The coordinator's audit log (`data_dir/audit`).
    audit: keyfold_audit::Trail,
    /// The latest request or policy evaluation time (Unix seconds): these
    /// times never go back, even if the clock does (auditors require it).
    last_evaluated: std::sync::atomic::AtomicU64,
}

/// A refill waits while requests arrived this recently and the pool is at
/// least half full, so presignature proofs (seconds of CPU) do not slow down
/// the one-round signatures they exist to speed up.
const QUIET_BEFORE_REFILL: Duration = Duration::from_millis(500);

/// How long a probe of the signers' liveness is reused.
const LIVE_TTL: Duration = Duration::from_secs(1);

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

impl Orchestrator {
    /// Opens the store and the QUIC endpoint.
    pub fn start(cfg: CoordinatorConfig) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", cfg.data_dir.display()))?;
        let store = CoordinatorStore::open(cfg.data_dir.join("coordinator.db"))
            .map_err(|e| format!("coordinator store: {e}"))?;
        let identity = Identity::load(&cfg.tls.ca_cert, &cfg.tls.cert, &cfg.tls.key)
            .map_err(|e| format!("TLS identity: {e}"))?;
        // Requests a crash left in progress never got a signature out of this
        // process; close them so clients get an answer instead of waiting.
        for stuck in store
            .in_progress_requests()
            .map_err(|e| format!("coordinator store: {e}"))?
        {
            let err = serde_json::json!({
                "error": "the coordinator restarted while this request was being signed; no signature was released"
            })
            .to_string();
            if let Err(e) = store.fail_request(&stuck.request_id, &err) {
                tracing::error!(request = %stuck.request_id, error = %e, "cannot close a stuck request");
            }
        }
        let policy = PolicyGate::load(&cfg.policy_file, &cfg.data_dir)?;
        let (cold, audit_key) = match &cfg.hsm {
            Some(h) => {
                let hsm = keyfold_hsm::Hsm::open(h).map_err(|e| format!("HSM: {e}"))?;
                tracing::info!(token = %h.token_label, "cold tier: HSM ready");
                let key = keyfold_hsm::HsmAuditSigner::open_or_create(
                    &hsm,
                    keyfold_hsm::DEFAULT_AUDIT_KEY_LABEL,
                )
                .map_err(|e| format!("HSM audit key: {e}"))?;
                let key: keyfold_audit::trail::SharedSigner = Box::new(key);
                (Some(keyfold_hsm::ColdKeys::new(&hsm)), Some(key))
            }
            None => (None, None),
        };
        let audit = keyfold_audit::Trail::open(cfg.data_dir.join("audit"), &cfg.node_id, audit_key)
            .map_err(|e| format!("audit log: {e}"))?
            .with_byte_limit(cfg.tuning.audit_max_bytes);
        audit
            .record_policy(keyfold_audit::record::policy_document_event(
                &policy.current(),
                policy.document_text(),
                policy.signed_update().as_ref(),
            ))
            .map_err(|e| format!("audit log: {e}"))?;
        // Keys made before the audit log existed (an upgraded deployment):
        // recorded now, so the log names every key it signs with.
        let unrecorded: Vec<keyfold_audit::Event> = store
            .list_keys()
            .map_err(|e| format!("coordinator store: {e}"))?
            .iter()
            .filter(|k| !audit.has_key(&k.key_id))
            .map(|k| key_event(k, if cold::is_cold(k) { "cold" } else { "hot" }))
            .collect();
        if !unrecorded.is_empty() {
            tracing::warn!(
                keys = unrecorded.len(),
                "recording keys created before the audit log in it"
            );
            audit
                .record(unrecorded)
                .map_err(|e| format!("audit log: {e}"))?;
        }
        tracing::info!(dir = %audit.dir().display(), checkpoint_key = %audit.public_key_hex(), "audit log open");
        tracing::info!(version = policy.current().version(), "policy loaded");
        let listen = cfg.quic_bind_addr();
        let net = Node::bind(listen, &identity, NetConfig::default())
            .map_err(|e| format!("QUIC endpoint on {listen}: {e}"))?;
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            cfg,
            net,
            store: Arc::new(store),
            refill: tokio::sync::Mutex::new(()),
            live_cache: std::sync::Mutex::new(None),
            last_request: std::sync::Mutex::new(None),
            policy,
            policy_lock: tokio::sync::Mutex::new(()),
            cold,
            last_evaluated: std::sync::atomic::AtomicU64::new(
                u64::try_from(audit.last_time_ms().div_euclid(1000)).unwrap_or(0),
            ),
            audit,
        }))
    }

    /// Runs `work` on its own task: a client that disconnects or times out
    /// does not cancel a key generation or a signing half-way, so a request is
    /// never left "in progress" forever; the result is stored and a retry with
    /// the same request id gets it.
    async fn detached<T, F>(&self, work: impl FnOnce(Arc<Self>) -> F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ServiceError>> + Send + 'static,
    {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| ServiceError::Internal("coordinator is shutting down".into()))?;
        tokio::spawn(work(me))
            .await
            .map_err(|e| ServiceError::Internal(format!("task failed: {e}")))?
    }

    /// The store (for token commands and tests).
    pub fn store(&self) -> &Arc<CoordinatorStore> {
        &self.store
    }

    fn addrs(&self) -> Vec<NodeAddr> {
        self.cfg
            .signers
            .iter()
            .map(|s| NodeAddr {
                node: s.node_id.clone(),
                addr: s.addr,
            })
            .collect()
    }

    fn signer(&self, node: &str) -> Option<&SignerEntry> {
        self.cfg.signers.iter().find(|s| s.node_id == node)
    }

    async fn rpc(
        &self,
        signer: &SignerEntry,
        command: Command,
        timeout: Duration,
    ) -> Result<Response, NodeFailure> {
        let fail = |reason: String| NodeFailure {
            node: signer.node_id.clone(),
            reason,
            code: None,
        };
        let node = NodeId::new(&signer.node_id).map_err(|e| fail(e.to_string()))?;
        let peer = PeerAddr {
            node,
            addr: signer.addr,
        };
        let body = serde_json::to_vec(&Request::new(command)).map_err(|e| fail(e.to_string()))?;
        let answer = self
            .net
            .request(&peer, &body, timeout)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match serde_json::from_slice::<Response>(&answer) {
            Ok(Response::Error(e)) => Err(NodeFailure {
                code: Some(e.code),
                ..fail(e.to_string())
            }),
            Ok(r) => Ok(r),
            Err(e) => Err(fail(format!("unreadable answer: {e}"))),
        }
    }

    /// Asks every signer for its status, in parallel.
    async fn probe(&self) -> Vec<(SignerEntry, Result<NodeStatus, NodeFailure>)> {
        let timeout = self.cfg.tuning.probe_timeout();
        join_all(self.cfg.signers.iter().map(|s| async move {
            let r = match self.rpc(s, Command::Status, timeout).await {
                Ok(Response::Status(st)) => Ok(st),
                Ok(other) => Err(NodeFailure {
                    node: s.node_id.clone(),
                    reason: format!("unexpected answer {other:?}"),
                    code: None,
                }),
                Err(e) => Err(e),
            };
            (s.clone(), r)
        }))
        .await
    }

    /// Live signers: the cached probe if it is fresh, else a new probe.
    async fn live(&self) -> HashSet<String> {
        if let Ok(cache) = self.live_cache.lock() {
            if let Some((at, live)) = cache.as_ref() {
                if at.elapsed() < LIVE_TTL {
                    return live.clone();
                }
            }
        }
        self.probe_live().await
    }

    /// The live signers for signing with `record`: the cached probe, or a
    /// fresh one when the cached set cannot form the key's quorum (signers
    /// that came back within the cache's lifetime are not missed).
    async fn live_for(&self, record: &KeyRecord) -> HashSet<String> {
        let live = self.live().await;
        let usable = record
            .participants
            .iter()
            .filter(|p| live.contains(*p))
            .count();
        if usable >= usize::from(record.t) {
            return live;
        }
        self.probe_live().await
    }

    /// Probes every signer now and refreshes the cache.
    async fn probe_live(&self) -> HashSet<String> {
        let live: HashSet<String> = self
            .probe()
            .await
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| s.node_id)
            .collect();
        if let Ok(mut cache) = self.live_cache.lock() {
            *cache = Some((std::time::Instant::now(), live.clone()));
        }
        live
    }

    /// Forgets the cached probe (after a signer failed a command).
    fn forget_live(&self) {
        if let Ok(mut cache) = self.live_cache.lock() {
            *cache = None;
        }
    }

    /// Sends `commands[i]` to `nodes[i]` in parallel; all must succeed.
    async fn all<F>(
        &self,
        nodes: &[SignerEntry],
        timeout: Duration,
        command: F,
    ) -> Result<Vec<Response>, Vec<NodeFailure>>
    where
        F: Fn(&SignerEntry) -> Command,
    {
        let results = join_all(nodes.iter().map(|n| self.rpc(n, command(n), timeout))).await;
        let failures: Vec<_> = results.iter().filter_map(|r| r.clone().err()).collect();
        if !failures.is_empty() {
            self.forget_live();
        }
        if failures.is_empty() {
            Ok(results.into_iter().filter_map(Result::ok).collect())
        } else {
            Err(failures)
        }
    }

    /// The signer group id of a member list: stable, so aux info is reused.
    fn group_id(members: &[String]) -> KeyId {
        let mut h = Sha256::new();
        h.update(b"keyfold/group/v1\0");
        for m in members {
            h.update((m.len() as u32).to_be_bytes());
            h.update(m.as_bytes());
        }
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        KeyId::from_bytes(id)
    }

    async fn ensure_aux(&self, members: &[SignerEntry]) -> Result<KeyId, ServiceError> {
        let names: Vec<String> = members.iter().map(|m| m.node_id.clone()).collect();
        let group = Self::group_id(&names);
        let known = self.store.get_group(&group.to_string()).map_err(internal)?;
        if known.is_some_and(|g| g.aux_ready) {
            return Ok(group);
        }
        let n = names.len() as u16;
        let session = SessionDescriptor::new(
            ProtocolKind::EcdsaAuxInfo,
            group,
            RequestId::new(format!("aux-{group}")).map_err(internal)?,
            ecdsa::aux_threshold(n).map_err(|e| ServiceError::BadRequest(e.to_string()))?,
            SignerSet::all(n),
        )
        .map_err(internal)?;
        tracing::info!(%group, members = ?names, "generating aux info for signer group");
        let addrs = self.addrs();
        self.all(members, self.cfg.tuning.aux_timeout(), |_| {
            Command::AuxInfo {
                session: session.clone(),
                members: names.clone(),
                addrs: addrs.clone(),
            }
        })
        .await
        .map_err(|f| ServiceError::SigningFailed(format!("aux info failed: {}", join(&f))))?;
        self.store
            .upsert_group(&group.to_string(), names, true)
            .map_err(internal)?;
        Ok(group)
    }

    async fn create(&self, req: CreateKeyRequest) -> Result<KeyInfo, ServiceError> {
        if req.tier == keyfold_policy::Tier::Cold {
            if req.t != 0 || req.n != 0 {
                return Err(ServiceError::BadRequest(
                    "a cold key lives in the HSM: leave out `t` and `n`".into(),
                ));
            }
            return self.create_cold(req.curve).await;
        }
        let threshold =
            Threshold::new(req.t, req.n).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        if usize::from(req.n) > self.cfg.signers.len() {
            return Err(ServiceError::BadRequest(format!(
                "n = {} but only {} signers are configured",
                req.n,
                self.cfg.signers.len()
            )));
        }
        let live = self.probe_live().await;
        let members: Vec<SignerEntry> = self
            .cfg
            .signers
            .iter()
            .filter(|s| live.contains(&s.node_id))
            .take(usize::from(req.n))
            .cloned()
            .collect();
        if members.len() < usize::from(req.n) {
            return Err(ServiceError::QuorumUnavailable(format!(
                "key generation needs {} live signers, {} answered",
                req.n,
                members.len()
            )));
        }
        let names: Vec<String> = members.iter().map(|m| m.node_id.clone()).collect();
        let (group, protocol) = match req.curve {
            Curve::Secp256k1 => (self.ensure_aux(&members).await?, ProtocolKind::EcdsaKeygen),
            _ => (Self::group_id(&names), ProtocolKind::EddsaKeygen),
        };
        let key = KeyId::random();
        let session = SessionDescriptor::new(
            protocol,
            key,
            RequestId::new(format!("keygen-{key}")).map_err(internal)?,
            threshold,
            SignerSet::all(req.n),
        )
        .map_err(internal)?;
        let addrs = self.addrs();
        let answers = self
            .all(&members, self.cfg.tuning.session_timeout(), |_| {
                Command::Keygen {
                    curve: req.curve,
                    session: session.clone(),
                    group,
                    members: names.clone(),
                    addrs: addrs.clone(),
                }
            })
            .await
            .map_err(|f| {
                ServiceError::SigningFailed(format!("key generation failed: {}", join(&f)))
            })?;
        let mut public: Option<(Vec<u8>, Option<String>)> = None;
        for (node, answer) in names.iter().zip(answers) {
            let Response::KeygenDone {
                public_key,
                chain_code,
                ..
            } = answer
            else {
                return Err(ServiceError::SigningFailed(format!(
                    "{node} answered keygen with something else"
                )));
            };
            match &public {
                None => public = Some((public_key, chain_code)),
                Some((pk, _)) if *pk != public_key => {
                    return Err(ServiceError::SigningFailed(format!(
                        "signers disagree on the public key of {key} ({node} differs); key discarded"
                    )))
                }
                Some(_) => {}
            }
        }
        let (public_key, chain_code) =
            public.ok_or_else(|| ServiceError::Internal("no keygen answers".into()))?;
        let record = KeyRecord {
            key_id: key.to_string(),
            curve: to_store(req.curve)?,
            t: req.t,
            n: req.n,
            public_key,
            chain_code: chain_code
                .map(|c| hex::decode(c).map_err(internal))
                .transpose()?,
            group_id: group.to_string(),
            participants: names,
            created_at: now(),
        };
        self.audit(vec![key_event(&record, "hot")])?;
        self.store.insert_key(record.clone()).map_err(internal)?;
        tracing::info!(%key, curve = %req.curve, t = req.t, n = req.n, "key created");
        key_info(&record)
    }

    fn key(&self, key_id: &str) -> Result<KeyRecord, ServiceError> {
        key_id
            .parse::<KeyId>()
            .map_err(|e| ServiceError::BadRequest(format!("key_id: {e}")))?;
        self.store
            .get_key(key_id)
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound(format!("no key {key_id}")))
    }

    /// Records the request (idempotency), signs it, and records the outcome.
    #[allow(clippy::too_many_arguments)]
    async fn sign_recorded(
        &self,
        record: KeyRecord,
        curve: Curve,
        request_id: RequestId,
        fingerprint: [u8; 32],
        stored: serde_json::Value,
        intent: PolicyIntent,
        hash: Option<HashAlg>,
        path: Option<DerivationPath>,
    ) -> Result<SignResult, ServiceError> {
        let message = intent.request.signing_message();
        let cold = cold::is_cold(&record);
        match self
            .store
            .begin_request(request_id.as_str(), fingerprint, &stored.to_string())
            .map_err(internal)?
        {
            BeginOutcome::New => {}
            BeginOutcome::Done(json) => {
                tracing::info!("retried request: returning the first result");
                return serde_json::from_str(&json).map_err(internal);
            }
            BeginOutcome::InProgress => {
                return Err(ServiceError::InProgress(format!(
                    "request {request_id} is being signed; retry later"
                )))
            }
            BeginOutcome::Failed(json) => {
                // No signature was released for it: try again under the same id.
                if !self
                    .store
                    .retry_failed_request(request_id.as_str(), fingerprint)
                    .map_err(internal)?
                {
                    return Err(ServiceError::InProgress(format!(
                        "request {request_id} failed earlier ({json}) and is being retried now"
                    )));
                }
                tracing::info!(earlier = %json, "retrying a request that failed earlier");
            }
            BeginOutcome::Conflict => {
                return Err(ServiceError::Conflict(format!(
                    "request_id {request_id} was used for another request"
                )))
            }
            #[allow(unreachable_patterns)]
            other => return Err(internal(format!("unexpected begin outcome {other:?}"))),
        }
        let result = if cold {
            self.sign_cold(&record, curve, request_id.as_str(), &message, hash)
                .await
        } else {
            self.sign_new(&record, curve, &intent, &message, hash, path.as_ref())
                .await
        };
        // The signature is released only once the audit log holds it, with
        // the session that made it (one durable write for both; the signers
        // logged their contributions before they sent their shares).
        let result = result.and_then(|(r, session)| {
            self.audit(vec![
                session,
                keyfold_audit::Event::Signature {
                    request_id: r.request_id.clone(),
                    key_id: r.key_id.clone(),
                    public_key: hex::decode(&r.public_key).map_err(internal)?.into(),
                    signature: hex::decode(&r.signature).map_err(internal)?.into(),
                },
            ])?;
            Ok(r)
        });
        match &result {
            Ok(r) => {
                let json = serde_json::to_string(r).map_err(internal)?;
                self.store
                    .finish_request(request_id.as_str(), &json)
                    .map_err(internal)?;
            }
            Err(e) => {
                let json = serde_json::json!({ "error": e.to_string() }).to_string();
                if let Err(db) = self.store.fail_request(request_id.as_str(), &json) {
                    tracing::error!(error = %db, "cannot record a failed request");
                }
            }
        }
        result
    }

    async fn sign_new(
        &self,
        record: &KeyRecord,
        curve: Curve,
        intent: &PolicyIntent,
        message: &[u8],
        hash: Option<HashAlg>,
        path: Option<&DerivationPath>,
    ) -> Result<(SignResult, keyfold_audit::Event), ServiceError> {
        let request_id = &RequestId::new(intent.request.id.clone()).map_err(internal)?;
        let key: KeyId = record.key_id.parse().map_err(internal)?;
        let threshold = Threshold::new(record.t, record.n).map_err(internal)?;
        let verify_key = match (curve, path) {
            (Curve::Secp256k1, Some(p)) => derive_child(record, p)?,
            _ => record.public_key.clone(),
        };
        let mut base = SignResult {
            request_id: request_id.to_string(),
            key_id: record.key_id.clone(),
            curve,
            public_key: hex::encode(&verify_key),
            message: hex::encode(message),
            hash,
            derivation_path: path.map(|p| p.to_string()),
            signature: String::new(),
            signers: Vec::new(),
            mode: SignMode::Full,
        };
        let live = self.live_for(record).await;
        // One round from a presignature when the key allows it (ECDSA, no HD path).
        if let (Curve::Secp256k1, None, Some(h)) = (curve, path, hash) {
            match self
                .sign_with_presignature(record, key, threshold, &live, intent, message, h)
                .await
            {
                Ok(Some((sig, signers, session))) => {
                    base.signature = hex::encode(sig);
                    base.signers = signers;
                    base.mode = SignMode::Presignature;
                    return Ok((base, session));
                }
                Ok(None) => {}
                Err(f) => {
                    tracing::warn!(error = %f, "presignature path failed; falling back to full signing")
                }
            }
        }
        let mut excluded: HashSet<String> = HashSet::new();
        let mut errors = Vec::new();
        let mut policy_refusals: Vec<String> = Vec::new();
        for attempt in 0..self.cfg.tuning.attempts.max(1) {
            let live = if attempt == 0 {
                live.clone()
            } else {
                self.live_for(record).await
            };
            let chosen: Vec<(u16, String)> = record
                .participants
                .iter()
                .enumerate()
                .filter(|(_, n)| live.contains(*n) && !excluded.contains(*n))
                .take(usize::from(record.t))
                .map(|(i, n)| (i as u16, n.clone()))
                .collect();
            if chosen.len() < usize::from(record.t) && !policy_refusals.is_empty() {
                return Err(ServiceError::PolicyDenied(format!(
                    "signers refused request {request_id} under their own policy check: {}",
                    policy_refusals.join("; ")
                )));
            }
            if chosen.len() < usize::from(record.t) {
                let reason = format!(
                    "needs {} live signers of {:?}, usable now: {:?}{}",
                    record.t,
                    record.participants,
                    chosen.iter().map(|c| &c.1).collect::<Vec<_>>(),
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!("; earlier failures: {}", errors.join("; "))
                    }
                );
                return Err(ServiceError::QuorumUnavailable(reason));
            }
            let indices: Vec<u16> = chosen.iter().map(|c| c.0).collect();
            let protocol = match curve {
                Curve::Secp256k1 => ProtocolKind::EcdsaSign,
                _ => ProtocolKind::EddsaSign,
            };
            let session = SessionDescriptor::new(
                protocol,
                key,
                request_id.clone(),
                threshold,
                SignerSet::new(&indices, threshold).map_err(internal)?,
            )
            .map_err(internal)?;
            let nodes: Vec<SignerEntry> = chosen
                .iter()
                .filter_map(|(_, n)| self.signer(n).cloned())
                .collect();
            let addrs = self.addrs();
            tracing::info!(attempt, signers = ?chosen, session = %session.id(), "full signing");
            // Recorded with its outcome: with the signature, or as aborted.
            let session_event = keyfold_audit::Event::SigningSession {
                request_id: request_id.to_string(),
                session_id: session.id().to_string(),
                signers: chosen.iter().map(|c| c.1.clone()).collect(),
                mode: keyfold_audit::SigningMode::Full,
            };
            let aborted = |blamed: Option<String>, reason: String| keyfold_audit::Event::Aborted {
                request_id: request_id.to_string(),
                session_id: session.id().to_string(),
                blamed,
                reason,
            };
            match self
                .all(&nodes, self.cfg.tuning.session_timeout(), |_| {
                    Command::Sign {
                        session: session.clone(),
                        intent: intent.clone(),
                        hash,
                        path: path.cloned(),
                        addrs: addrs.clone(),
                    }
                })
                .await
            {
                Ok(answers) => {
                    let checked = first_signature(&answers).and_then(|sig| {
                        verify(curve, &verify_key, message, hash, &sig).map_err(|e| {
                            ServiceError::SigningFailed(format!(
                                "signers returned a bad signature: {e}"
                            ))
                        })?;
                        Ok(sig)
                    });
                    let sig = match checked {
                        Ok(sig) => sig,
                        Err(e) => {
                            self.audit(vec![session_event, aborted(None, e.to_string())])?;
                            return Err(e);
                        }
                    };
                    base.signature = hex::encode(sig);
                    base.signers = chosen.into_iter().map(|c| c.1).collect();
                    return Ok((base, session_event));
                }
                Err(failures) => {
                    let blame = blamed(&failures, &record.participants);
                    self.audit(vec![
                        session_event,
                        aborted(blame.first().cloned(), join(&failures)),
                    ])?;
                    // A signer that refuses under its own policy check is left
                    // out, and another quorum is tried: one signer may lack the
                    // request's announcement or lag a policy update. If every
                    // quorum refuses, the answer is `policy_denied`.
                    for f in failures
                        .iter()
                        .filter(|f| f.code == Some(ErrorCode::PolicyRefused))
                    {
                        policy_refusals.push(f.to_string());
                        excluded.insert(f.node.clone());
                    }
                    // Leave out signers that failed on their own (down, timed
                    // out, refused); a peer's failure shows in every report.
                    for f in &failures {
                        errors.push(f.to_string());
                        if is_own_failure(&f.reason) {
                            excluded.insert(f.node.clone());
                        }
                    }
                    for n in blame {
                        excluded.insert(n);
                    }
                    tracing::warn!(attempt, failures = %join(&failures), "signing attempt failed");
                }
            }
        }
        if !policy_refusals.is_empty() {
            return Err(ServiceError::PolicyDenied(format!(
                "signers refused request {request_id} under their own policy check: {}",
                policy_refusals.join("; ")
            )));
        }
        Err(ServiceError::SigningFailed(format!(
            "all {} attempts failed: {}",
            self.cfg.tuning.attempts.max(1),
            errors.join("; ")
        )))
    }

    #[allow(clippy::too_many_arguments)]
    async fn sign_with_presignature(
        &self,
        record: &KeyRecord,
        key: KeyId,
        threshold: Threshold,
        live: &HashSet<String>,
        intent: &PolicyIntent,
        message: &[u8],
        hash: HashAlg,
    ) -> Result<Option<([u8; 64], Vec<String>, keyfold_audit::Event)>, String> {
        let Some(set) = self.pool_set(record, threshold, live) else {
            return Ok(None);
        };
        let Some(id) = self
            .store
            .claim_presig(&record.key_id, set.parties())
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let presignature: keyfold_mpc::SessionId =
            serde_json::from_value(serde_json::Value::String(id.clone()))
                .map_err(|e| e.to_string())?;
        let names: Vec<String> = set
            .parties()
            .iter()
            .map(|&i| record.participants[usize::from(i)].clone())
            .collect();
        let nodes: Vec<SignerEntry> = names
            .iter()
            .filter_map(|n| self.signer(n).cloned())
            .collect();
        // Recorded with its outcome: with the signature, or as aborted.
        let session_event = keyfold_audit::Event::SigningSession {
            request_id: intent.request.id.clone(),
            session_id: id.clone(),
            signers: names.clone(),
            mode: keyfold_audit::SigningMode::Presignature,
        };
        // Records the session as aborted; returns the error to report
        // (the audit log's, if it cannot record it).
        let abort = |blamed: Option<String>, reason: String| -> String {
            let recorded = self.audit(vec![
                session_event.clone(),
                keyfold_audit::Event::Aborted {
                    request_id: intent.request.id.clone(),
                    session_id: id.clone(),
                    blamed,
                    reason: reason.clone(),
                },
            ]);
            match recorded {
                Ok(()) => reason,
                Err(e) => e.to_string(),
            }
        };
        let answers = match self
            .all(&nodes, self.cfg.tuning.session_timeout(), |_| {
                Command::SignWithPresignature {
                    key,
                    presignature,
                    signers: set.parties().to_vec(),
                    intent: intent.clone(),
                    hash,
                }
            })
            .await
        {
            Ok(a) => a,
            Err(f) => {
                return Err(abort(
                    blamed(&f, &record.participants).first().cloned(),
                    join(&f),
                ))
            }
        };
        let partials: Result<Vec<ecdsa::PartialSignature>, String> = answers
            .into_iter()
            .map(|a| match a {
                Response::Partial(p) => Ok(p),
                other => Err(format!("unexpected answer {other:?}")),
            })
            .collect();
        let partials = match partials {
            Ok(p) => p,
            Err(e) => return Err(abort(None, e)),
        };
        let info = ecdsa::PublicKeyInfo {
            key_id: key,
            threshold,
            public_key: record
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| "stored public key is not 33 bytes".to_string())?,
            chain_code: None,
        };
        match ecdsa::combine(&info, &partials, message, hash) {
            Ok(sig) => Ok(Some((sig.to_bytes(), names, session_event))),
            // A bad partial: the combination names no party.
            Err(e) => Err(abort(None, e.to_string())),
        }
    }

    /// The signer set whose presignatures serve a key: the first `t` live participants.
    fn pool_set(
        &self,
        record: &KeyRecord,
        threshold: Threshold,
        live: &HashSet<String>,
    ) -> Option<SignerSet> {
        let idx: Vec<u16> = record
            .participants
            .iter()
            .enumerate()
            .filter(|(_, n)| live.contains(*n))
            .take(usize::from(record.t))
            .map(|(i, _)| i as u16)
            .collect();
        SignerSet::new(&idx, threshold).ok()
    }

    /// Tops up presignatures for every ECDSA key, one session at a time.
    pub async fn refill_once(&self) -> Result<usize, ServiceError> {
        let _guard = self.refill.lock().await;
        let keys = self.store.list_keys().map_err(internal)?;
        let mut made = 0;
        let live = self.live().await;
        for record in keys
            .iter()
            .filter(|k| k.curve == StoreCurve::Secp256k1 && !cold::is_cold(k))
        {
            let threshold = Threshold::new(record.t, record.n).map_err(internal)?;
            let Some(set) = self.pool_set(record, threshold, &live) else {
                continue;
            };
            let have = self
                .store
                .count_presigs(&record.key_id, set.parties())
                .map_err(internal)?;
            if have >= self.cfg.tuning.presignatures {
                continue;
            }
            if have * 2 >= self.cfg.tuning.presignatures && self.recently_active() {
                continue;
            }
            let key: KeyId = record.key_id.parse().map_err(internal)?;
            let session = SessionDescriptor::new(
                ProtocolKind::EcdsaPresign,
                key,
                RequestId::new(format!("presign-{key}")).map_err(internal)?,
                threshold,
                set.clone(),
            )
            .map_err(internal)?;
            let nodes: Vec<SignerEntry> = set
                .parties()
                .iter()
                .filter_map(|&i| self.signer(&record.participants[usize::from(i)]).cloned())
                .collect();
            let addrs = self.addrs();
            match self
                .all(&nodes, self.cfg.tuning.session_timeout(), |_| {
                    Command::Presign {
                        session: session.clone(),
                        addrs: addrs.clone(),
                    }
                })
                .await
            {
                Ok(_) => {
                    self.store
                        .add_presig(&session.id().to_string(), &record.key_id, set.parties())
                        .map_err(internal)?;
                    made += 1;
                }
                Err(f) => {
                    tracing::warn!(key = %record.key_id, failures = %join(&f), "presignature refill failed");
                }
            }
        }
        Ok(made)
    }

    fn recently_active(&self) -> bool {
        self.last_request
            .lock()
            .ok()
            .and_then(|l| *l)
            .is_some_and(|at| at.elapsed() < QUIET_BEFORE_REFILL)
    }

    /// Appends `events` to the audit log durably; an error means the step
    /// they describe must not be taken (fail closed).
    pub(crate) fn audit(&self, events: Vec<keyfold_audit::Event>) -> Result<(), ServiceError> {
        self.audit.record(events).map_err(|e| {
            tracing::error!(error = %e, "audit log write failed: refusing the step");
            ServiceError::AuditUnavailable(format!(
                "the coordinator cannot write its audit log ({e}); nothing was done"
            ))
        })
    }

    /// Signs a checkpoint of the audit log if it grew.
    pub fn audit_checkpoint(&self) {
        match self.audit.checkpoint_now() {
            Ok(Some(cp)) => tracing::debug!(size = cp.checkpoint.tree_size, "audit checkpoint"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
        }
    }

    /// Checkpoints the audit log every `audit_checkpoint_secs` until `stop`
    /// is notified, and once more then.
    pub async fn audit_checkpoint_loop(self: Arc<Self>, stop: Arc<tokio::sync::Notify>) {
        let every = Duration::from_secs(self.cfg.tuning.audit_checkpoint_secs.max(1));
        loop {
            tokio::select! {
                _ = stop.notified() => break,
                _ = tokio::time::sleep(every) => {}
            }
            self.audit_checkpoint();
        }
        self.audit_checkpoint();
    }

    /// Releases time-locked requests whose lock has passed, once a second,
    /// until `stop` is notified.
    pub async fn time_lock_loop(self: Arc<Self>, stop: Arc<tokio::sync::Notify>) {
        loop {
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            self.release_time_locks().await;
        }
    }

    /// Refills presignature pools until `stop` is notified.
    pub async fn refill_loop(self: Arc<Self>, stop: Arc<tokio::sync::Notify>) {
        loop {
            let made = match self.refill_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "presignature refill");
                    0
                }
            };
            let pause = if made > 0 {
                Duration::from_millis(50)
            } else if self.recently_active() {
                QUIET_BEFORE_REFILL
            } else {
                Duration::from_secs(2)
            };
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn status_info(&self) -> Result<StatusInfo, ServiceError> {
        let signers: Vec<SignerHealth> = self
            .probe()
            .await
            .into_iter()
            .map(|(s, r)| match r {
                Ok(st) => SignerHealth {
                    node: s.node_id,
                    live: true,
                    error: None,
                    primes_ready: Some(st.primes_ready),
                    primes_generating: Some(st.primes_generating),
                    policy_version: Some(st.policy_version),
                },
                Err(e) => SignerHealth {
                    node: s.node_id,
                    live: false,
                    error: Some(e.reason),
                    primes_ready: None,
                    primes_generating: None,
                    policy_version: None,
                },
            })
            .collect();
        let keys = self.store.list_keys().map_err(internal)?;
        let mut presignatures = 0;
        let live: HashSet<String> = signers
            .iter()
            .filter(|h: &&SignerHealth| h.live)
            .map(|h| h.node.clone())
            .collect();
        for k in keys
            .iter()
            .filter(|k| k.curve == StoreCurve::Secp256k1 && !cold::is_cold(k))
        {
            let threshold = Threshold::new(k.t, k.n).map_err(internal)?;
            if let Some(set) = self.pool_set(k, threshold, &live) {
                presignatures += self
                    .store
                    .count_presigs(&k.key_id, set.parties())
                    .map_err(internal)?;
            }
        }
        Ok(StatusInfo {
            signers,
            keys: keys.len(),
            presignatures,
            policy_version: self.policy.current().version(),
        })
    }
}

fn join(f: &[NodeFailure]) -> String {
    f.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a failure report is about the reporting node itself (unreachable,
/// timed out talking to it) rather than about a peer it waited for.
fn is_own_failure(reason: &str) -> bool {
    !(reason.contains("party") || reason.contains("waiting for"))
}

/// Participants named as culprits in signers' failure reports: keyfold-net
/// names a silent or vanished peer as "party N (node-id)".
fn blamed(failures: &[NodeFailure], participants: &[String]) -> Vec<String> {
    participants
        .iter()
        .filter(|p| {
            let tag = format!("({p})");
            failures.iter().any(|f| f.reason.contains(&tag))
        })
        .cloned()
        .collect()
}

fn first_signature(answers: &[Response]) -> Result<[u8; 64], ServiceError> {
    let mut sig: Option<[u8; 64]> = None;
    for a in answers {
        let Response::Signed { signature } = a else {
            return Err(ServiceError::SigningFailed(format!(
                "unexpected answer {a:?}"
            )));
        };
        let s: [u8; 64] = signature
            .as_slice()
            .try_into()
            .map_err(|_| ServiceError::SigningFailed("signature is not 64 bytes".into()))?;
        if sig.is_some_and(|prev| prev != s) {
            return Err(ServiceError::SigningFailed(
                "signers returned different signatures".into(),
            ));
        }
        sig = Some(s);
    }
    sig.ok_or_else(|| ServiceError::SigningFailed("no signature".into()))
}

/// Verifies with k256 / ed25519-dalek (through keyfold-mpc's wrappers, which use them).
fn verify(
    curve: Curve,
    public_key: &[u8],
    message: &[u8],
    hash: Option<HashAlg>,
    sig: &[u8; 64],
) -> Result<(), String> {
    match curve {
        Curve::Secp256k1 => {
            let pk: [u8; 33] = public_key
                .try_into()
                .map_err(|_| "public key is not 33 bytes".to_string())?;
            ecdsa::Signature::from_bytes(sig).verify(&pk, message, hash.unwrap_or(HashAlg::Sha256))
        }
        _ => {
            let pk: [u8; 32] = public_key
                .try_into()
                .map_err(|_| "public key is not 32 bytes".to_string())?;
            eddsa::Signature::from_bytes(*sig).verify(&pk, message)
        }
    }
}

fn derive_child(record: &KeyRecord, path: &DerivationPath) -> Result<Vec<u8>, ServiceError> {
    let chain = record
        .chain_code
        .as_ref()
        .ok_or_else(|| ServiceError::BadRequest("this key does not support derivation".into()))?;
    let pk: [u8; 33] = record
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::Internal("stored public key is not 33 bytes".into()))?;
    let chain: [u8; 32] = chain
        .as_slice()
        .try_into()
        .map_err(|_| ServiceError::Internal("stored chain code is not 32 bytes".into()))?;
    ecdsa::derive_public_key(&pk, &chain, path)
        .map(|k| k.to_vec())
        .map_err(|e| ServiceError::BadRequest(e.to_string()))
}

/// The audit log's record of a new key.
fn key_event(r: &KeyRecord, tier: &str) -> keyfold_audit::Event {
    keyfold_audit::Event::KeyCreated {
        key_id: r.key_id.clone(),
        curve: from_store(r.curve).to_string(),
        tier: tier.into(),
        t: r.t,
        n: r.n,
        participants: r.participants.clone(),
        public_key: r.public_key.clone().into(),
        chain_code: r.chain_code.clone().map(Into::into),
    }
}

fn to_store(c: Curve) -> Result<StoreCurve, ServiceError> {
    match c {
        Curve::Secp256k1 => Ok(StoreCurve::Secp256k1),
        Curve::Ed25519 => Ok(StoreCurve::Ed25519),
        #[allow(unreachable_patterns)]
        other => Err(ServiceError::BadRequest(format!(
            "unsupported curve {other}"
        ))),
    }
}

fn from_store(c: StoreCurve) -> Curve {
    match c {
        StoreCurve::Secp256k1 => Curve::Secp256k1,
        _ => Curve::Ed25519,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn key_info(r: &KeyRecord) -> Result<KeyInfo, ServiceError> {
    Ok(KeyInfo {
        key_id: r.key_id.clone(),
        curve: from_store(r.curve),
        t: r.t,
        n: r.n,
        public_key: hex::encode(&r.public_key),
        chain_code: r.chain_code.as_ref().map(hex::encode),
        participants: r.participants.clone(),
        created_at: r.created_at,
        tier: if cold::is_cold(r) {
            keyfold_policy::Tier::Cold
        } else {
            keyfold_policy::Tier::Hot
        },
    })
}

impl CoordinatorApi for Orchestrator {
    fn create_key(&self, req: CreateKeyRequest) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.create(req).await }))
    }

    fn list_keys(&self) -> BoxFuture<'_, Result<Vec<KeyInfo>, ServiceError>> {
        Box::pin(async move {
            self.store
                .list_keys()
                .map_err(internal)?
                .iter()
                .map(key_info)
                .collect()
        })
    }

    fn get_key(&self, key_id: String) -> BoxFuture<'_, Result<KeyInfo, ServiceError>> {
        Box::pin(async move { key_info(&self.key(&key_id)?) })
    }

    fn sign(
        &self,
        client: String,
        req: SignRequest,
    ) -> BoxFuture<'_, Result<SignOutcome, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.submit(client, req).await }))
    }

    fn get_request(
        &self,
        request_id: String,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(async move { self.request_status(&request_id) })
    }

    fn list_requests(
        &self,
        states: Vec<String>,
    ) -> BoxFuture<'_, Result<RequestList, ServiceError>> {
        Box::pin(async move { self.list_request_status(&states) })
    }

    fn approve(
        &self,
        client: String,
        request_id: String,
        approval: Approval,
    ) -> BoxFuture<'_, Result<RequestStatus, ServiceError>> {
        Box::pin(
            self.detached(|me| async move { me.add_approval(client, request_id, approval).await }),
        )
    }

    fn policy(&self) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(async move { self.policy_info() })
    }

    fn update_policy(
        &self,
        update: SignedPolicy,
    ) -> BoxFuture<'_, Result<PolicyInfo, ServiceError>> {
        Box::pin(self.detached(|me| async move { me.apply_policy_update(update).await }))
    }

    fn get_signature(&self, request_id: String) -> BoxFuture<'_, Result<SignResult, ServiceError>> {
        Box::pin(async move {
            let rec = self
                .store
                .get_request(&request_id)
                .map_err(internal)?
                .ok_or_else(|| ServiceError::NotFound(format!("no request {request_id}")))?;
            match rec.result_json {
                Some(json) => serde_json::from_str(&json).map_err(internal),
                None => Err(ServiceError::NotFound(format!(
                    "request {request_id} has no signature ({})",
                    rec.state
                ))),
            }
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<StatusInfo, ServiceError>> {
        Box::pin(self.status_info())
    }

    fn authenticate(&self, token: String) -> BoxFuture<'_, Result<Option<String>, ServiceError>> {
        Box::pin(async move {
            Ok(self
                .store
                .verify_token(&token)
                .map_err(internal)?
                .map(|t| t.name))
        })
    }
}
