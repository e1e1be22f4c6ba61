//! Test support (feature `test-support`): signers in the test process, so
//! the real coordinator (request lifecycle, journal, store, audit log,
//! policy, blame) can be driven without sockets or MPC.
//!
//! [`FakeSigners`] implements [`Transport`]: it answers status, aux info,
//! key generation (one ordinary key per key id, the same for every "signer":
//! there is no threshold here), announcements, policy updates and full
//! signing, with real `k256` / `ed25519-dalek` signatures the coordinator
//! verifies like any other. It makes no presignatures, so the coordinator
//! signs with full signing. Each signer can be told to misbehave
//! ([`Behaviour`]): be unreachable, refuse under its policy, fail sessions
//! accusing a peer, or stall.
//!
//! **Tests only**: it holds whole private keys in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k256::ecdsa::signature::hazmat::PrehashSigner;
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_proto::signer::{
    Command, ErrorCode, NodeStatus, Request, Response, WireBlameKind, WireCulprit, WireError,
};
use keyfold_proto::Curve;

use crate::blame::RpcFailure;
use crate::config::SignerEntry;
use crate::service::BoxFuture;
use crate::signers::{Transport, Unreachable};

/// How one fake signer behaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answers correctly.
    #[default]
    Honest,
    /// Never answers (connection refused).
    Down,
    /// Refuses every signing command under "its own policy".
    RefusesPolicy,
    /// Fails every signing session, naming these parties (keygen indices)
    /// as culprits of the given kind, and says in its message text
    /// whatever `message` holds.
    Accuses {
        /// The parties it names.
        parties: Vec<u16>,
        /// What it claims they did.
        kind: WireBlameKind,
        /// Free text of its error (may quote other signers).
        message: String,
    },
    /// Takes this long to answer signing commands.
    Slow(Duration),
}

enum Secret {
    Ecdsa(k256::ecdsa::SigningKey),
    Eddsa(ed25519_dalek::SigningKey),
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Secret>,
    behaviour: HashMap<String, Behaviour>,
    calls: HashMap<String, Vec<String>>,
    policy_version: u64,
}

/// Signers in the test process (see the module docs).
#[derive(Clone, Default)]
pub struct FakeSigners {
    state: Arc<Mutex<State>>,
}

fn answer(r: &Response) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

fn error(code: ErrorCode, message: &str) -> Response {
    Response::Error(WireError {
        code,
        message: message.to_string(),
        culprits: Vec::new(),
    })
}

impl FakeSigners {
    /// Honest signers.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how `node` behaves from now on.
    pub fn set(&self, node: &str, b: Behaviour) {
        self.lock().behaviour.insert(node.to_string(), b);
    }

    /// The commands `node` received, by kind (`sign`, `announce`, ...).
    pub fn calls(&self, node: &str) -> Vec<String> {
        self.lock().calls.get(node).cloned().unwrap_or_default()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn handle(&self, node: &str, req: Request) -> Result<Response, Unreachable> {
        let behaviour = self.lock().behaviour.get(node).cloned().unwrap_or_default();
        if behaviour == Behaviour::Down {
            return Err(Unreachable {
                kind: RpcFailure::Unreachable,
                reason: format!("{node} is down (test)"),
            });
        }
        let kind = match &req.command {
            Command::Status => "status",
            Command::AuxInfo { .. } => "aux_info",
            Command::Keygen { .. } => "keygen",
            Command::Presign { .. } => "presign",
            Command::Announce { .. } => "announce",
            Command::UpdatePolicy { .. } => "update_policy",
            Command::SignWithPresignature { .. } => "sign_with_presignature",
            Command::Sign { .. } => "sign",
            _ => "other",
        };
        self.lock()
            .calls
            .entry(node.to_string())
            .or_default()
            .push(kind.to_string());
        Ok(match req.command {
            Command::Status => {
                let (keys, policy_version) = {
                    let st = self.lock();
                    (st.keys.len(), st.policy_version)
                };
                Response::Status(NodeStatus {
                    node: node.to_string(),
                    keys,
                    primes_ready: 1,
                    primes_generating: 0,
                    version: "test".into(),
                    policy_version,
                })
            }
            Command::AuxInfo { session, .. } => Response::AuxInfoDone {
                group: session.key_id(),
            },
            Command::Keygen { curve, session, .. } => {
                let key = session.key_id();
                let mut st = self.lock();
                let secret = st
                    .keys
                    .entry(key.to_string())
                    .or_insert_with(|| match curve {
                        Curve::Secp256k1 => {
                            Secret::Ecdsa(k256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
                        }
                        _ => Secret::Eddsa(ed25519_dalek::SigningKey::generate(
                            &mut rand_core::OsRng,
                        )),
                    });
                let (public_key, chain_code) = match secret {
                    Secret::Ecdsa(k) => (
                        k.verifying_key().to_encoded_point(true).as_bytes().to_vec(),
                        Some(hex::encode(TEST_CHAIN_CODE)),
                    ),
                    Secret::Eddsa(k) => (k.verifying_key().to_bytes().to_vec(), None),
                };
                Response::KeygenDone {
                    key,
                    public_key,
                    chain_code,
                }
            }
            Command::Presign { .. } => {
                error(ErrorCode::Refused, "the test signers make no presignatures")
            }
            Command::SignWithPresignature { .. } => {
                error(ErrorCode::NotFound, "no presignature here (test)")
            }
            Command::Announce { request } => Response::Announced {
                first_seen: i64::try_from(request.time).unwrap_or(0),
            },
            Command::UpdatePolicy { update } => {
                let v = keyfold_policy::Policy::from_toml(&update.document_toml)
                    .map(|p| p.version())
                    .unwrap_or(0);
                self.lock().policy_version = v;
                Response::PolicyUpdated { version: v }
            }
            Command::Sign {
                session,
                intent,
                hash,
                path,
                ..
            } => match behaviour {
                Behaviour::RefusesPolicy => error(
                    ErrorCode::PolicyRefused,
                    &format!(
                        "request {}: refused by this signer's policy (test)",
                        intent.request.id
                    ),
                ),
                Behaviour::Accuses {
                    parties,
                    kind,
                    message,
                } => Response::Error(WireError {
                    code: ErrorCode::ProtocolFailed,
                    message,
                    culprits: parties
                        .into_iter()
                        .map(|party| WireCulprit { party, kind })
                        .collect(),
                }),
                _ => {
                    let message = intent.request.signing_message();
                    let st = self.lock();
                    let child = match (&path, st.keys.get(&session.key_id().to_string())) {
                        (Some(p), Some(Secret::Ecdsa(k))) => match derive_child(k, p) {
                            Ok(c) => Some(Secret::Ecdsa(c)),
                            Err(e) => return Ok(error(ErrorCode::Refused, &e)),
                        },
                        (Some(_), _) => {
                            return Ok(error(
                                ErrorCode::Refused,
                                "the test signers derive secp256k1 children only",
                            ))
                        }
                        (None, _) => None,
                    };
                    match child
                        .as_ref()
                        .or(st.keys.get(&session.key_id().to_string()))
                    {
                        Some(Secret::Ecdsa(k)) => {
                            let digest = hash.unwrap_or(HashAlg::Sha256).digest(&message);
                            match PrehashSigner::<k256::ecdsa::Signature>::sign_prehash(k, &digest)
                            {
                                Ok(sig) => Response::Signed {
                                    signature: sig.normalize_s().unwrap_or(sig).to_bytes().to_vec(),
                                },
                                Err(e) => error(ErrorCode::Internal, &e.to_string()),
                            }
                        }
                        Some(Secret::Eddsa(k)) => {
                            use ed25519_dalek::Signer;
                            Response::Signed {
                                signature: k.sign(&message).to_bytes().to_vec(),
                            }
                        }
                        None => error(ErrorCode::NotFound, "no such key here"),
                    }
                }
            },
            _ => error(ErrorCode::BadRequest, "unknown command"),
        })
    }
}

impl Transport for FakeSigners {
    fn call<'a>(
        &'a self,
        signer: &'a SignerEntry,
        request: Vec<u8>,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<u8>, Unreachable>> {
        Box::pin(async move {
            let req: Request = serde_json::from_slice(&request).map_err(|e| Unreachable {
                kind: RpcFailure::BadAnswer,
                reason: e.to_string(),
            })?;
            let slow = match self.lock().behaviour.get(&signer.node_id) {
                Some(Behaviour::Slow(d)) if matches!(req.command, Command::Sign { .. }) => Some(*d),
                _ => None,
            };
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            self.handle(&signer.node_id, req).map(|r| answer(&r))
        })
    }
}

/// The child of `key` at `path` by BIP32 non-hardened derivation (the
/// `bip32` crate: an implementation independent of the coordinator's), with
/// the chain code every test key is made with.
fn derive_child(
    key: &k256::ecdsa::SigningKey,
    path: &keyfold_mpc::ecdsa::DerivationPath,
) -> Result<k256::ecdsa::SigningKey, String> {
    let mut key_bytes = [0u8; 33];
    key_bytes[1..].copy_from_slice(&key.to_bytes());
    let extended = bip32::ExtendedKey {
        prefix: bip32::Prefix::XPRV,
        attrs: bip32::ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: bip32::ChildNumber(0),
            chain_code: TEST_CHAIN_CODE,
        },
        key_bytes,
    };
    let mut xprv = bip32::XPrv::try_from(extended).map_err(|e| e.to_string())?;
    for &i in path.indices() {
        let n = bip32::ChildNumber::new(i, false).map_err(|e| e.to_string())?;
        xprv = xprv.derive_child(n).map_err(|e| e.to_string())?;
    }
    Ok(xprv.private_key().clone())
}

/// The chain code of every test key.
const TEST_CHAIN_CODE: [u8; 32] = [7u8; 32];
