//! Keys: threshold keys made by distributed key generation on the signers
//! (with the signer group's aux info for secp256k1), and cold keys made in
//! the coordinator's HSM. Creation is idempotent per `client_id`, and a key
//! is recorded in the store and the audit log in one journal step.
//!
//! A cold key is recorded with the marker group [`COLD_GROUP`] (threshold
//! keys have 32-hex-digit group ids), one participant [`COLD_PARTICIPANT`],
//! `t = n = 1`; its HSM object label is its key id.

use keyfold_audit::Event;
use keyfold_mpc::ecdsa;
use keyfold_mpc::{KeyId, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold};
use keyfold_proto::api::{CreateKeyRequest, KeyInfo};
use keyfold_proto::signer::{Command, Response};
use keyfold_proto::Curve;
use keyfold_store::{Curve as StoreCurve, KeyRecord, KeyRequest, Op};
use sha2::{Digest, Sha256};

use crate::core::Coordinator;
use crate::requests::intake;
use crate::service::ServiceError;
use crate::service::Tenant;
use crate::signers::describe;
use crate::signing::key_info;

/// Group id that marks a cold key in the key table.
pub const COLD_GROUP: &str = "cold";
/// The single "participant" of a cold key.
pub const COLD_PARTICIPANT: &str = "hsm";

/// Whether a key record is a cold (HSM) key.
pub fn is_cold(record: &KeyRecord) -> bool {
    record.group_id == COLD_GROUP
}

/// The API's curve of a stored key.
pub fn from_store(c: StoreCurve) -> Curve {
    match c {
        StoreCurve::Secp256k1 => Curve::Secp256k1,
        _ => Curve::Ed25519,
    }
}

/// The store's curve of an API curve.
pub fn to_store(c: Curve) -> Result<StoreCurve, ServiceError> {
    match c {
        Curve::Secp256k1 => Ok(StoreCurve::Secp256k1),
        Curve::Ed25519 => Ok(StoreCurve::Ed25519),
        #[allow(unreachable_patterns)]
        other => Err(ServiceError::BadRequest(format!(
            "unsupported curve {other}"
        ))),
    }
}

/// The signer group id of a member list: stable, so aux info is reused.
pub fn group_id(members: &[String]) -> KeyId {
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

/// The audit log's record of a new key.
pub fn key_event(r: &KeyRecord) -> Event {
    Event::KeyCreated {
        key_id: r.key_id.clone(),
        curve: from_store(r.curve).to_string(),
        tier: if is_cold(r) { "cold" } else { "hot" }.into(),
        t: r.t,
        n: r.n,
        participants: r.participants.clone(),
        public_key: r.public_key.clone().into(),
        chain_code: r.chain_code.clone().map(Into::into),
    }
}

/// The key record an audit `KeyCreated` event describes (start-up recovery).
pub fn record_of(event: &Event, created_at: i64) -> Option<KeyRecord> {
    let Event::KeyCreated {
        key_id,
        curve,
        tier,
        t,
        n,
        participants,
        public_key,
        chain_code,
    } = event
    else {
        return None;
    };
    let curve = StoreCurve::parse(curve)?;
    let group = if tier == "cold" {
        COLD_GROUP.to_string()
    } else {
        group_id(participants).to_string()
    };
    Some(KeyRecord {
        key_id: key_id.clone(),
        curve,
        t: *t,
        n: *n,
        public_key: public_key.0.clone(),
        chain_code: chain_code.as_ref().map(|c| c.0.clone()),
        group_id: group,
        participants: participants.clone(),
        created_at,
    })
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// What identifies a key creation request (idempotency).
fn fingerprint(req: &CreateKeyRequest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyfold/key-request/v1\0");
    h.update(req.curve.to_string().as_bytes());
    h.update([0]);
    h.update(req.t.to_be_bytes());
    h.update(req.n.to_be_bytes());
    h.update(match req.tier {
        keyfold_policy::Tier::Hot => b"hot".as_slice(),
        keyfold_policy::Tier::Cold => b"cold".as_slice(),
    });
    h.finalize().into()
}

impl Coordinator {
    /// `POST /v1/keys`: idempotent per `client_id`.
    /// A merchant's key is recorded as its own through a key creation
    /// request, so one without a `client_id` gets a generated one.
    pub(crate) async fn create_key(
        &self,
        tenant: Tenant,
        req: CreateKeyRequest,
    ) -> Result<KeyInfo, ServiceError> {
        let client_id = match (&req.client_id, tenant.merchant()) {
            (Some(id), _) => id.clone(),
            (None, None) => return self.make_key(&req).await,
            (None, Some(m)) => {
                let mut raw = [0u8; 12];
                rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
                    .map_err(internal)?;
                format!("{m}:auto-{}", hex::encode(raw))
            }
        };
        intake::check_client_id("client_id", &client_id)?;
        let fp = fingerprint(&req);
        let store = self.store.clone();
        let id = client_id.clone();
        let owner = tenant.merchant().map(str::to_string);
        let begun =
            tokio::task::spawn_blocking(move || store.begin_key_request(&id, fp, owner.as_deref()))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        match begun {
            KeyRequest::New => {}
            KeyRequest::Retry(earlier) => {
                tracing::info!(%client_id, %earlier, "retrying a key creation that failed earlier");
            }
            KeyRequest::Done(key_id) => return self.key_info(&key_id),
            KeyRequest::InProgress => {
                return Err(ServiceError::InProgress(format!(
                    "key request {client_id} is being created; retry later"
                )))
            }
            KeyRequest::Conflict => {
                return Err(ServiceError::Conflict(format!(
                    "client_id {client_id} was used for another key request"
                )))
            }
            #[allow(unreachable_patterns)]
            other => return Err(internal(format!("unexpected {other:?}"))),
        }
        let made = self.make_key(&req).await;
        let store = self.store.clone();
        let outcome = match &made {
            Ok(k) => Ok(k.key_id.clone()),
            Err(e) => Err(e.to_string()),
        };
        tokio::task::spawn_blocking(move || {
            store.finish_key_request(
                &client_id,
                outcome.as_ref().map(String::as_str).map_err(String::as_str),
            )
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        made
    }

    async fn make_key(&self, req: &CreateKeyRequest) -> Result<KeyInfo, ServiceError> {
        if req.tier == keyfold_policy::Tier::Cold {
            if req.t != 0 || req.n != 0 {
                return Err(ServiceError::BadRequest(
                    "a cold key lives in the HSM: leave out `t` and `n`".into(),
                ));
            }
            return self.make_cold_key(req.curve).await;
        }
        let threshold =
            Threshold::new(req.t, req.n).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let configured = self.client.all_signers().len();
        if usize::from(req.n) > configured {
            return Err(ServiceError::BadRequest(format!(
                "n = {} but only {configured} signers are configured",
                req.n
            )));
        }
        let live = self.liveness.probe_live().await;
        let members: Vec<_> = self
            .client
            .all_signers()
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
            Curve::Secp256k1 => (
                self.ensure_aux(&members, &names).await?,
                ProtocolKind::EcdsaKeygen,
            ),
            _ => (group_id(&names), ProtocolKind::EddsaKeygen),
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
        let addrs = self.client.addrs();
        let answers = self
            .client
            .call_all(&members, self.cfg.tuning.session_timeout(), |_| {
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
                self.liveness.forget();
                ServiceError::SigningFailed(format!("key generation failed: {}", describe(&f)))
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
            created_at: i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX),
        };
        self.record_key(&record).await?;
        tracing::info!(%key, curve = %req.curve, t = req.t, n = req.n, "key created");
        Ok(key_info(&record))
    }

    /// Records a new key in the store and the audit log, in one step.
    async fn record_key(&self, record: &KeyRecord) -> Result<(), ServiceError> {
        self.journal
            .write(vec![key_event(record)], vec![Op::InsertKey(record.clone())])
            .await
            .map_err(|e| self.journal_error(e))?;
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(record.key_id.clone(), record.clone());
        Ok(())
    }

    async fn ensure_aux(
        &self,
        members: &[crate::config::SignerEntry],
        names: &[String],
    ) -> Result<KeyId, ServiceError> {
        let group = group_id(names);
        let store = self.store.clone();
        let gid = group.to_string();
        let known = tokio::task::spawn_blocking(move || store.get_group(&gid))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        if known.is_some_and(|g| g.aux_ready) {
            return Ok(group);
        }
        let n = u16::try_from(names.len()).map_err(internal)?;
        let session = SessionDescriptor::new(
            ProtocolKind::EcdsaAuxInfo,
            group,
            RequestId::new(format!("aux-{group}")).map_err(internal)?,
            ecdsa::aux_threshold(n).map_err(|e| ServiceError::BadRequest(e.to_string()))?,
            SignerSet::all(n),
        )
        .map_err(internal)?;
        tracing::info!(%group, members = ?names, "generating aux info for signer group");
        let addrs = self.client.addrs();
        self.client
            .call_all(members, self.cfg.tuning.aux_timeout(), |_| {
                Command::AuxInfo {
                    session: session.clone(),
                    members: names.to_vec(),
                    addrs: addrs.clone(),
                }
            })
            .await
            .map_err(|f| {
                ServiceError::SigningFailed(format!("aux info failed: {}", describe(&f)))
            })?;
        let store = self.store.clone();
        let gid = group.to_string();
        let names = names.to_vec();
        tokio::task::spawn_blocking(move || store.upsert_group(&gid, names, true))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        Ok(group)
    }

    /// Generates a cold key inside the HSM and records it.
    async fn make_cold_key(&self, curve: Curve) -> Result<KeyInfo, ServiceError> {
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let key_id = hex::encode(id);
        let public_key = self.signing.generate_cold(curve, key_id.clone()).await?;
        let record = KeyRecord {
            key_id: key_id.clone(),
            curve: to_store(curve)?,
            t: 1,
            n: 1,
            public_key,
            chain_code: None,
            group_id: COLD_GROUP.into(),
            participants: vec![COLD_PARTICIPANT.into()],
            created_at: i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX),
        };
        self.record_key(&record).await?;
        tracing::info!(key = %key_id, %curve, "cold key generated in the HSM");
        Ok(key_info(&record))
    }

    /// The key `key_id` (canonical: 32 lowercase hex digits).
    pub(crate) fn key(&self, key_id: &str) -> Result<KeyRecord, ServiceError> {
        intake::check_key_id(key_id)?;
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("no key {key_id}")))
    }

    /// The API view of key `key_id`.
    pub(crate) fn key_info(&self, key_id: &str) -> Result<KeyInfo, ServiceError> {
        self.key(key_id).map(|k| key_info(&k))
    }
}
