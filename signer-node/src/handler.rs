//! Answers the coordinator's commands by running MPC sessions with the other
//! signers.
//!
//! Who is who comes from what this node stored at key generation (the key's
//! participants by keygen index), never from the command: a command only says
//! which keygen indices take part and where nodes listen, and TLS authenticates
//! every peer's node id. Protocol work runs on the blocking pool so the QUIC
//! runtime keeps serving while a party computes its proofs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use keyfold_mpc::delivery::Envelope;
use keyfold_mpc::ecdsa::{self, HashAlg};
use keyfold_mpc::{eddsa, KeyId, ProtocolKind, SessionDescriptor};
use keyfold_net::{NodeId, PeerAddr, PeerIdentity, RpcHandler};
use keyfold_proto::signer::{
    Command, ErrorCode, NodeAddr, NodeStatus, PolicyIntent, Request, Response, WireError,
};
use keyfold_proto::{Curve, MAX_RPC_BYTES, PROTOCOL_VERSION};
use keyfold_store::Curve as StoreCurve;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::node::SignerNode;
use crate::policy::{Consumes, Contributed};
use crate::SignerError;

/// How long an aux-info command waits for this node's safe primes.
const PRIMES_WAIT: Duration = Duration::from_secs(30 * 60);

/// Where a session's computing runs.
#[derive(Debug, Clone, Copy)]
enum Lane {
    /// The blocking pool, at normal priority (signing, key generation).
    Online,
    /// The background workers, at the lowest priority (presignatures).
    Background,
}

/// What is sealed for a key: the share and who holds the other shares.
#[derive(Serialize, Deserialize)]
struct StoredShare {
    participants: Vec<String>,
    /// The keyfold-mpc container, hex.
    share: String,
}

impl Drop for StoredShare {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

/// What is sealed for a signer group: its aux info and its members.
#[derive(Serialize, Deserialize)]
struct StoredAux {
    members: Vec<String>,
    aux: String,
}

impl Drop for StoredAux {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.aux);
    }
}

/// A share as loaded from the store: its curve, who holds the other shares
/// (node ids by keygen index), and the keyfold-mpc container (secret).
struct LoadedShare {
    curve: StoreCurve,
    participants: Vec<String>,
    bytes: Zeroizing<Vec<u8>>,
}

pub(crate) struct Handler {
    node: Arc<SignerNode>,
}

impl Handler {
    pub(crate) fn new(node: Arc<SignerNode>) -> Self {
        Self { node }
    }
}

impl RpcHandler for Handler {
    fn handle(
        &self,
        peer: PeerIdentity,
        request: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            let response = self.answer(&peer, &request).await;
            serde_json::to_vec(&response).unwrap_or_else(|e| {
                format!(
                    r#"{{"type":"error","code":"internal","message":"cannot encode answer: {e}"}}"#
                )
                .into_bytes()
            })
        })
    }
}

fn wire(code: ErrorCode, message: String) -> Response {
    Response::Error(WireError::new(code, message))
}

impl Handler {
    async fn answer(&self, peer: &PeerIdentity, bytes: &[u8]) -> Response {
        if bytes.len() > MAX_RPC_BYTES {
            return wire(
                ErrorCode::BadRequest,
                format!("request of {} bytes exceeds {MAX_RPC_BYTES}", bytes.len()),
            );
        }
        let request: Request = match serde_json::from_slice(bytes) {
            Ok(r) => r,
            Err(e) => return wire(ErrorCode::BadRequest, format!("malformed request: {e}")),
        };
        if request.version != PROTOCOL_VERSION {
            return wire(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported (this node speaks {PROTOCOL_VERSION})",
                    request.version
                ),
            );
        }
        let span = tracing::info_span!("command", node = %self.node.id, from = %peer.node, kind = command_name(&request.command));
        self.dispatch(request.command).instrument(span).await
    }

    async fn dispatch(&self, command: Command) -> Response {
        let result = match command {
            Command::Status => self.status().await,
            Command::AuxInfo {
                session,
                members,
                addrs,
            } => self.aux_info(session, members, addrs).await,
            Command::Keygen {
                curve,
                session,
                group,
                members,
                addrs,
            } => self.keygen(curve, session, group, members, addrs).await,
            Command::Presign { session, addrs } => self.presign(session, addrs).await,
            Command::Announce { request } => self
                .node
                .policy
                .announce(&self.node.store, &request)
                .await
                .map(|first_seen| Response::Announced { first_seen }),
            Command::UpdatePolicy { update } => self
                .node
                .policy
                .update(&self.node.store, &self.node.audit, &update)
                .await
                .map(|version| Response::PolicyUpdated { version }),
            Command::Freeze { freeze_id, subject } => self
                .node
                .freezes
                .add(&self.node.store, freeze_id.clone(), subject)
                .await
                .map(|()| Response::Frozen { freeze_id }),
            Command::LiftFreeze { freeze_id, lift } => self
                .node
                .freezes
                .lift(
                    &self.node.store,
                    &self.node.policy.current(),
                    freeze_id.clone(),
                    lift,
                )
                .await
                .map(|()| Response::Unfrozen { freeze_id }),
            Command::SignWithPresignature {
                key,
                presignature,
                signers,
                intent,
                hash,
            } => {
                self.sign_with_presignature(key, presignature, signers, intent, hash)
                    .await
            }
            Command::Sign {
                session,
                intent,
                hash,
                path,
                addrs,
            } => self.sign(session, intent, hash, path, addrs).await,
            _ => Err(SignerError::Refused("unknown command".into())),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "command failed");
            Response::Error(e.to_wire())
        })
    }

    /// Runs store, HSM and audit work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SignerNode) -> Result<T, SignerError> + Send + 'static,
    ) -> Result<T, SignerError> {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|e| SignerError::Internal(format!("a blocking task failed: {e}")))?
    }

    async fn status(&self) -> Result<Response, SignerError> {
        let (pool, keys) = self
            .blocking(|n| Ok((n.pool.status()?, n.store.list_shares()?.len())))
            .await?;
        Ok(Response::Status(NodeStatus {
            node: self.node.id.clone(),
            keys,
            primes_ready: pool.ready,
            primes_generating: pool.generating,
            version: env!("CARGO_PKG_VERSION").to_string(),
            policy_version: self.node.policy.current().version(),
        }))
    }

    /// Joins the QUIC session mesh for `session` as party `me` of `peers` and
    /// runs `protocol` over it on the blocking pool (driving its I/O with the
    /// current runtime), so the runtime keeps serving while this party computes.
    async fn in_session<M, T, F, Fut>(
        &self,
        session: &SessionDescriptor,
        me: u16,
        peers: Vec<PeerAddr>,
        round_timeout: Duration,
        protocol: F,
    ) -> Result<T, SignerError>
    where
        M: Serialize + DeserializeOwned + Send + Unpin + 'static,
        T: Send + 'static,
        F: FnOnce(crate::transport::Blaming<Envelope<M>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, SignerError>> + Send + 'static,
    {
        self.in_session_on(Lane::Online, session, me, peers, round_timeout, protocol)
            .await
    }

    /// [`Handler::in_session`] on a chosen lane: presignature sessions run
    /// on the background workers, below the online path.
    async fn in_session_on<M, T, F, Fut>(
        &self,
        lane: Lane,
        session: &SessionDescriptor,
        me: u16,
        peers: Vec<PeerAddr>,
        round_timeout: Duration,
        protocol: F,
    ) -> Result<T, SignerError>
    where
        M: Serialize + DeserializeOwned + Send + Unpin + 'static,
        T: Send + 'static,
        F: FnOnce(crate::transport::Blaming<Envelope<M>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, SignerError>> + Send + 'static,
    {
        let net = self.node.net.clone();
        let sid = *session.id().as_bytes();
        let handle = tokio::runtime::Handle::current();
        let work = move || {
            handle.block_on(async move {
                let delivery = net
                    .join_session::<Envelope<M>>(sid, me, peers, round_timeout)
                    .await?;
                protocol(crate::transport::blaming(delivery)).await
            })
        };
        let result =
            match lane {
                Lane::Online => tokio::task::spawn_blocking(work)
                    .await
                    .map_err(|e| SignerError::Internal(format!("protocol task failed: {e}")))?,
                Lane::Background => self.node.background.run(work).await.ok_or_else(|| {
                    SignerError::Internal("the presignature workers are gone".into())
                })?,
            };
        result.map_err(|e| e.in_session(session.parties()))
    }

    fn my_index(&self, members: &[String]) -> Result<u16, SignerError> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = members.iter().find(|m| !seen.insert(m.as_str())) {
            return Err(SignerError::Refused(format!(
                "node {dup} appears twice among the parties"
            )));
        }
        members
            .iter()
            .position(|m| *m == self.node.id)
            .map(|p| p as u16)
            .ok_or_else(|| {
                SignerError::Refused(format!(
                    "this node ({}) is not among the parties {members:?}",
                    self.node.id
                ))
            })
    }

    async fn record(&self, session: &SessionDescriptor) -> Result<(), SignerError> {
        session.validate()?;
        let id = *session.id().as_bytes();
        self.blocking(move |n| Ok(n.store.record_session(&id)?))
            .await
    }

    async fn aux_info(
        &self,
        session: SessionDescriptor,
        members: Vec<String>,
        addrs: Vec<NodeAddr>,
    ) -> Result<Response, SignerError> {
        expect_protocol(&session, ProtocolKind::EcdsaAuxInfo)?;
        if members.len() != usize::from(session.threshold().n()) {
            return Err(SignerError::Refused(format!(
                "aux info for {} parties, but {} members named",
                session.threshold().n(),
                members.len()
            )));
        }
        let me = self.my_index(&members)?;
        self.record(&session).await?;
        let peers = peers_for(&members, &addrs)?;
        let group = session.key_id();
        let node = self.node.clone();
        let timeout = node.tuning.aux_round_timeout();
        let run = session.clone();
        // The session is joined first: peers' messages wait in it while this
        // node may still be finishing its safe primes.
        let aux = self
            .in_session::<ecdsa::AuxMsg, _, _, _>(
                &session,
                me,
                peers,
                timeout,
                move |d| async move {
                    let pool = node.pool.clone();
                    let primes = tokio::task::spawn_blocking(move || pool.take_wait(PRIMES_WAIT))
                        .await
                        .map_err(|e| SignerError::Internal(e.to_string()))??;
                    // Replace the pair just used, in the background.
                    node.pool.refill(node.tuning.prime_threads);
                    Ok(ecdsa::aux_info_gen(&run, me, primes, d).await?)
                },
            )
            .await?;
        let stored = StoredAux {
            members,
            aux: hex::encode(&*aux.to_bytes()?),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&stored).map_err(internal)?);
        let gid = group.to_string();
        self.blocking(move |n| Ok(n.store.put_aux(&gid, &plain)?))
            .await?;
        tracing::info!(%group, "aux info stored");
        Ok(Response::AuxInfoDone { group })
    }

    async fn keygen(
        &self,
        curve: Curve,
        session: SessionDescriptor,
        group: KeyId,
        members: Vec<String>,
        addrs: Vec<NodeAddr>,
    ) -> Result<Response, SignerError> {
        let expected = match curve {
            Curve::Secp256k1 => ProtocolKind::EcdsaKeygen,
            Curve::Ed25519 => ProtocolKind::EddsaKeygen,
            _ => return Err(SignerError::Refused(format!("unsupported curve {curve}"))),
        };
        expect_protocol(&session, expected)?;
        if members.len() != usize::from(session.threshold().n()) {
            return Err(SignerError::Refused(format!(
                "keygen for {} parties, but {} members named",
                session.threshold().n(),
                members.len()
            )));
        }
        let me = self.my_index(&members)?;
        let key = session.key_id();
        let aux = match curve {
            Curve::Secp256k1 => {
                let gid = group.to_string();
                let plain = self
                    .blocking(move |n| Ok(n.store.get_aux(&gid)?))
                    .await?
                    .ok_or_else(|| {
                        SignerError::NotFound(format!("no aux info for signer group {group} here"))
                    })?;
                let stored: StoredAux = serde_json::from_slice(&plain).map_err(internal)?;
                if stored.members != members {
                    return Err(SignerError::Refused(format!(
                        "signer group {group} is {:?}, the key names {members:?}",
                        stored.members
                    )));
                }
                let bytes = Zeroizing::new(hex::decode(&stored.aux).map_err(internal)?);
                Some(ecdsa::AuxInfo::from_bytes(&bytes)?)
            }
            _ => None,
        };
        self.record(&session).await?;
        let peers = peers_for(&members, &addrs)?;
        let timeout = self.node.tuning.round_timeout();
        let run = session.clone();
        let (share_bytes, public_key, chain_code) = match aux {
            Some(aux) => {
                self.in_session::<ecdsa::KeygenMsg, _, _, _>(
                    &session,
                    me,
                    peers,
                    timeout,
                    move |d| async move {
                        let share = ecdsa::keygen(&run, me, &aux, d).await?;
                        let info = share.public_info();
                        Ok((
                            share.to_bytes()?,
                            info.public_key.to_vec(),
                            info.chain_code.map(hex::encode),
                        ))
                    },
                )
                .await?
            }
            None => {
                self.in_session::<eddsa::KeygenMsg, _, _, _>(
                    &session,
                    me,
                    peers,
                    timeout,
                    move |d| async move {
                        let share = eddsa::keygen(&run, me, d).await?;
                        Ok((share.to_bytes()?, share.public_key().to_vec(), None))
                    },
                )
                .await?
            }
        };
        let stored = StoredShare {
            participants: members,
            share: hex::encode(&*share_bytes),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&stored).map_err(internal)?);
        let store_curve = match curve {
            Curve::Secp256k1 => StoreCurve::Secp256k1,
            _ => StoreCurve::Ed25519,
        };
        let threshold = session.threshold();
        let event = keyfold_audit::Event::KeyCreated {
            key_id: key.to_string(),
            curve: curve.to_string(),
            tier: "hot".into(),
            t: threshold.t(),
            n: threshold.n(),
            participants: stored.participants.clone(),
            public_key: public_key.clone().into(),
            chain_code: chain_code
                .as_deref()
                .and_then(|c| hex::decode(c).ok())
                .map(Into::into),
        };
        let pk = public_key.clone();
        self.blocking(move |n| {
            n.store
                .put_share(&key.to_string(), store_curve, &pk, &plain)?;
            n.audit
                .record(vec![event])
                .map_err(|e| SignerError::Internal(format!("audit log: {e}")))
        })
        .await?;
        tracing::info!(%key, %curve, "key share sealed and stored");
        Ok(Response::KeygenDone {
            key,
            public_key,
            chain_code,
        })
    }

    /// Loads a share and the participants stored with it (unsealing may be
    /// an HSM call: off the runtime).
    async fn load_share(&self, key: KeyId) -> Result<LoadedShare, SignerError> {
        let rec = self
            .blocking(move |n| Ok(n.store.get_share(&key.to_string())?))
            .await?
            .ok_or_else(|| SignerError::NotFound(format!("no share of key {key} on this node")))?;
        let stored: StoredShare = serde_json::from_slice(&rec.plaintext).map_err(internal)?;
        let bytes = Zeroizing::new(hex::decode(&stored.share).map_err(internal)?);
        Ok(LoadedShare {
            curve: rec.curve,
            participants: stored.participants.clone(),
            bytes,
        })
    }

    async fn presign(
        &self,
        session: SessionDescriptor,
        addrs: Vec<NodeAddr>,
    ) -> Result<Response, SignerError> {
        expect_protocol(&session, ProtocolKind::EcdsaPresign)?;
        let key = session.key_id();
        let LoadedShare {
            curve,
            participants,
            bytes,
        } = self.load_share(key).await?;
        if curve != StoreCurve::Secp256k1 {
            return Err(SignerError::Refused(format!(
                "key {key} is not an ECDSA key"
            )));
        }
        let share = ecdsa::KeyShare::from_bytes(&bytes)?;
        let (me, peers) = session_peers(&session, share.i(), &participants, &addrs)?;
        self.record(&session).await?;
        let timeout = self.node.tuning.round_timeout();
        let id = session.id();
        let signers = session.parties().parties().to_vec();
        let run = session.clone();
        let presig = self
            .in_session_on::<ecdsa::SignMsg, _, _, _>(
                Lane::Background,
                &session,
                me,
                peers,
                timeout,
                move |d| async move { Ok(ecdsa::presign(&run, &share, d).await?) },
            )
            .await?;
        let plain = presig.to_bytes()?;
        let (pid, kid) = (id.to_string(), key.to_string());
        self.blocking(move |n| Ok(n.store.add_presignature(&pid, &kid, &signers, &plain)?))
            .await?;
        Ok(Response::Presigned { presignature: id })
    }

    async fn sign_with_presignature(
        &self,
        key: KeyId,
        presignature: keyfold_mpc::SessionId,
        signers: Vec<u16>,
        intent: PolicyIntent,
        hash: HashAlg,
    ) -> Result<Response, SignerError> {
        // Its freezes first: a frozen wallet or subject is refused before
        // anything is consumed.
        self.node.freezes.check(&intent, &key.to_string())?;
        // This node's own policy check comes first, and its contribution is
        // recorded durably in the same transaction that marks the
        // presignature used: whatever happens next, it can never sign a
        // second message. A presignature of another key or signer set is
        // refused without being used up (and nothing is recorded).
        let (message, plain) = self
            .node
            .policy
            .authorize(
                &self.node.store,
                &self.node.audit,
                &intent,
                key,
                None,
                Some(hash),
                Contributed {
                    parties: &signers,
                    mode: keyfold_audit::SigningMode::Presignature,
                },
                Consumes::Presignature {
                    id: presignature.to_string(),
                    key: key.to_string(),
                    signers: signers.clone(),
                },
            )
            .await?;
        let plain = plain.ok_or_else(|| internal("the store returned no presignature"))?;
        let request_id = &intent.request.id;
        let presig = ecdsa::Presignature::from_bytes(&plain)?;
        if presig.key_id() != key || presig.signers().parties() != signers.as_slice() {
            return Err(SignerError::Refused(format!(
                "presignature {presignature} is not for key {key} with signers {signers:?}; it is now discarded"
            )));
        }
        tracing::info!(%key, %presignature, request = %request_id, "issuing partial signature");
        Ok(Response::Partial(presig.issue_partial(&message, hash)))
    }

    async fn sign(
        &self,
        session: SessionDescriptor,
        intent: PolicyIntent,
        hash: Option<HashAlg>,
        path: Option<ecdsa::DerivationPath>,
        addrs: Vec<NodeAddr>,
    ) -> Result<Response, SignerError> {
        if session.request_id().as_str() != intent.request.id {
            return Err(SignerError::Refused(format!(
                "session is for request {} but the intent is request {}",
                session.request_id(),
                intent.request.id
            )));
        }
        session.validate()?;
        self.node
            .freezes
            .check(&intent, &session.key_id().to_string())?;
        // The contribution and the session id (replay protection) are one
        // durable write.
        let (message, _) = self
            .node
            .policy
            .authorize(
                &self.node.store,
                &self.node.audit,
                &intent,
                session.key_id(),
                path.as_ref(),
                // ECDSA signs with SHA-256 unless told otherwise; Ed25519
                // sessions carry no hash.
                match session.protocol() {
                    ProtocolKind::EcdsaSign => Some(hash.unwrap_or(HashAlg::Sha256)),
                    _ => hash,
                },
                Contributed {
                    parties: session.parties().parties(),
                    mode: keyfold_audit::SigningMode::Full,
                },
                Consumes::Session(*session.id().as_bytes()),
            )
            .await?;
        let key = session.key_id();
        let LoadedShare {
            curve,
            participants,
            bytes,
        } = self.load_share(key).await?;
        let timeout = self.node.tuning.round_timeout();
        let run = session.clone();
        let signature = match curve {
            StoreCurve::Secp256k1 => {
                expect_protocol(&session, ProtocolKind::EcdsaSign)?;
                let share = ecdsa::KeyShare::from_bytes(&bytes)?;
                let (me, peers) = session_peers(&session, share.i(), &participants, &addrs)?;
                let hash = hash.unwrap_or(HashAlg::Sha256);
                self.in_session::<ecdsa::SignMsg, _, _, _>(
                    &session,
                    me,
                    peers,
                    timeout,
                    move |d| async move {
                        let sig =
                            ecdsa::sign(&run, &share, &message, hash, path.as_ref(), d).await?;
                        Ok(sig.to_bytes().to_vec())
                    },
                )
                .await?
            }
            _ => {
                expect_protocol(&session, ProtocolKind::EddsaSign)?;
                if path.is_some() {
                    return Err(SignerError::Refused(
                        "Ed25519 keys do not support derivation paths".into(),
                    ));
                }
                let share = eddsa::KeyShare::from_bytes(&bytes)?;
                let (me, peers) = session_peers(&session, share.i(), &participants, &addrs)?;
                self.in_session::<eddsa::SignMsg, _, _, _>(
                    &session,
                    me,
                    peers,
                    timeout,
                    move |d| async move {
                        let sig = eddsa::sign(&run, &share, &message, d).await?;
                        Ok(sig.to_bytes().to_vec())
                    },
                )
                .await?
            }
        };
        Ok(Response::Signed { signature })
    }
}

fn internal(e: impl std::fmt::Display) -> SignerError {
    SignerError::Internal(e.to_string())
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Status => "status",
        Command::AuxInfo { .. } => "aux_info",
        Command::Keygen { .. } => "keygen",
        Command::Presign { .. } => "presign",
        Command::SignWithPresignature { .. } => "sign_with_presignature",
        Command::Sign { .. } => "sign",
        Command::Announce { .. } => "announce",
        Command::UpdatePolicy { .. } => "update_policy",
        Command::Freeze { .. } => "freeze",
        Command::LiftFreeze { .. } => "lift_freeze",
        _ => "unknown",
    }
}

fn expect_protocol(session: &SessionDescriptor, kind: ProtocolKind) -> Result<(), SignerError> {
    if session.protocol() != kind {
        return Err(SignerError::Refused(format!(
            "command expects a {kind} session, got {}",
            session.protocol()
        )));
    }
    Ok(())
}

/// The QUIC peers of a session, by session index, from node ids and addresses.
fn peers_for(members: &[String], addrs: &[NodeAddr]) -> Result<Vec<PeerAddr>, SignerError> {
    let by_node: HashMap<&str, std::net::SocketAddr> =
        addrs.iter().map(|a| (a.node.as_str(), a.addr)).collect();
    members
        .iter()
        .map(|m| {
            let addr = by_node
                .get(m.as_str())
                .copied()
                .ok_or_else(|| SignerError::Refused(format!("no address given for party {m}")))?;
            let node = NodeId::new(m).map_err(|e| SignerError::Refused(e.to_string()))?;
            Ok(PeerAddr { node, addr })
        })
        .collect()
}

/// This node's session index and the session's peers, mapping the session's
/// keygen indices to node ids through the participants stored with the share.
fn session_peers(
    session: &SessionDescriptor,
    my_keygen_index: u16,
    participants: &[String],
    addrs: &[NodeAddr],
) -> Result<(u16, Vec<PeerAddr>), SignerError> {
    let me = session.parties().position(my_keygen_index)?;
    let nodes = session
        .parties()
        .parties()
        .iter()
        .map(|&k| {
            participants.get(usize::from(k)).cloned().ok_or_else(|| {
                SignerError::Refused(format!(
                    "party {k} is not a participant of key {}",
                    session.key_id()
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((me, peers_for(&nodes, addrs)?))
}
