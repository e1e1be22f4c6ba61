//! Start-up of a signer node: sealing, store, prime pool, QUIC endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use keyfold_mpc::primes::PrimePool;
use keyfold_net::{Identity, NetConfig, Node, Role};
use keyfold_store::seal::{Sealer, SoftwareSealer};
use keyfold_store::signer::SignerStore;

use crate::config::{Sealing, SignerConfig, Tuning};
use crate::handler::Handler;
use crate::policy::PolicyState;
use crate::primes::StorePrimes;
use crate::SignerError;

/// A running signer node.
pub struct SignerNode {
    pub(crate) id: String,
    pub(crate) net: Node,
    pub(crate) store: Arc<SignerStore>,
    pub(crate) pool: Arc<PrimePool>,
    pub(crate) tuning: Tuning,
    pub(crate) policy: PolicyState,
    /// The freezes this node enforces on its own.
    pub(crate) freezes: crate::freezes::Freezes,
    /// This node's audit log of what it contributed to (`data_dir/audit`).
    pub(crate) audit: Arc<keyfold_audit::Trail>,
    /// Presignature work, below the online path.
    pub(crate) background: crate::background::Background,
}

impl SignerNode {
    /// Opens the store, starts the prime pool and begins serving the coordinator.
    pub async fn start(config: SignerConfig) -> Result<Arc<Self>, SignerError> {
        let span = tracing::info_span!("signer", node = %config.node_id);
        let _enter = span.enter();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| SignerError::Config {
            path: config.data_dir.clone(),
            reason: format!("cannot create data directory: {e}"),
        })?;
        let sealer = open_sealer(&config)?;
        tracing::info!(sealing = %sealer.describe(), "sealing ready");
        let store = Arc::new(SignerStore::open(
            config.data_dir.join("signer.db"),
            &config.node_id,
            Arc::from(sealer),
        )?);
        let audit = Arc::new(open_audit(&config)?);
        let policy = PolicyState::load(&store, &config.policy_file, audit.last_policy())?;
        #[cfg(feature = "bench-unguarded")]
        let policy = if config.bench.unguarded {
            policy.unguarded()
        } else {
            policy
        };
        // The exact text in force (the genesis file, or a signed update's
        // document), so a restart does not record the same policy again.
        let current = policy.current();
        let document = match store.policy_document()? {
            Some((v, doc)) if v == current.version() => doc,
            _ => current
                .to_toml()
                .map_err(|e| SignerError::Internal(e.to_string()))?,
        };
        audit
            .record_policy(keyfold_audit::record::policy_document_event(
                &current, document, None,
            ))
            .map_err(|e| audit_error(&config, e))?;
        tracing::info!(checkpoint_key = %audit.public_key_hex(), "audit log open");
        let identity = Identity::load(&config.tls.ca_cert, &config.tls.cert, &config.tls.key)?;
        // Streams of a session that arrive before this node joins it (it may
        // still be finishing safe primes) are parked this long.
        let net_cfg = NetConfig {
            round_timeout: config.tuning.aux_round_timeout(),
            ..NetConfig::default()
        };
        let net = Node::bind(config.listen, &identity, net_cfg)?;
        let pool = Arc::new(PrimePool::new(
            Box::new(StorePrimes(store.clone())),
            config.tuning.primes_ready,
        ));
        pool.refill(config.tuning.prime_threads);
        let freezes = crate::freezes::Freezes::load(&store)?;
        if freezes.len() > 0 {
            tracing::warn!(freezes = freezes.len(), "freezes in force");
        }
        let node = Arc::new(SignerNode {
            id: config.node_id.clone(),
            net,
            store,
            pool,
            tuning: config.tuning.clone(),
            policy,
            freezes,
            audit,
            background: crate::background::Background::start(config.tuning.presign_workers)
                .map_err(|e| SignerError::Internal(format!("presignature workers: {e}")))?,
        });
        node.net
            .serve(Arc::new(Handler::new(node.clone())), &[Role::Coordinator]);
        tracing::info!(listen = %node.local_addr()?, "signer node serving");
        Ok(node)
    }

    /// The QUIC address the node listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, SignerError> {
        Ok(self.net.local_addr()?)
    }

    /// The node id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Opens the sealing backend a configuration names (also used by the
/// backup commands, which unseal and reseal shares offline).
///
/// With PKCS#11, a node whose database already exists requires the sealing
/// key to be on the token: a deleted key is reported, never silently replaced
/// by a new one (which would make every stored share unreadable).
pub fn open_sealer(config: &SignerConfig) -> Result<Box<dyn Sealer>, SignerError> {
    match &config.sealing {
        Sealing::KeyFile { key_file } => {
            let sealer = if key_file.exists() {
                SoftwareSealer::from_key_file(key_file)?
            } else {
                SoftwareSealer::generate_key_file(key_file)?
            };
            Ok(Box::new(sealer))
        }
        Sealing::Passphrase { env, salt_file } => {
            let pass = std::env::var(env).map_err(|_| SignerError::Config {
                path: salt_file.clone(),
                reason: format!("sealing passphrase: environment variable {env} is not set"),
            })?;
            let pass = zeroize::Zeroizing::new(pass);
            Ok(Box::new(SoftwareSealer::from_passphrase(&pass, salt_file)?))
        }
        Sealing::Pkcs11 { key_label, .. } => {
            let hsm_err = hsm_error(config, "HSM sealing");
            let hsm = open_hsm(config)?.ok_or_else(|| no_token(config))?;
            let existing = config.data_dir.join("signer.db").exists();
            let sealer = if existing {
                keyfold_hsm::HsmSealer::open(&hsm, key_label)
            } else {
                keyfold_hsm::HsmSealer::open_or_create(&hsm, key_label)
            }
            .map_err(hsm_err)?;
            Ok(Box::new(sealer))
        }
    }
}

/// Maps an HSM error to a configuration error of `config` naming `what`.
fn hsm_error(
    config: &SignerConfig,
    what: &'static str,
) -> impl Fn(keyfold_hsm::HsmError) -> SignerError {
    let path = config.data_dir.clone();
    move |e| SignerError::Config {
        path: path.clone(),
        reason: format!("{what}: {e}"),
    }
}

fn no_token(config: &SignerConfig) -> SignerError {
    SignerError::Config {
        path: config.data_dir.clone(),
        reason: "the sealing section names no PKCS#11 token".into(),
    }
}

/// The node's HSM token, when it seals with PKCS#11 (one context per module
/// per process: the sealer and the audit key share it).
fn open_hsm(config: &SignerConfig) -> Result<Option<keyfold_hsm::Hsm>, SignerError> {
    let Sealing::Pkcs11 {
        module,
        token_label,
        pin,
        ..
    } = &config.sealing
    else {
        return Ok(None);
    };
    keyfold_hsm::Hsm::open(&keyfold_hsm::HsmConfig {
        module: module.clone(),
        token_label: token_label.clone(),
        pin: pin.clone(),
    })
    .map(Some)
    .map_err(hsm_error(config, "HSM"))
}

fn audit_error(config: &SignerConfig, e: keyfold_audit::Error) -> SignerError {
    SignerError::Config {
        path: config.data_dir.join("audit"),
        reason: format!("audit log: {e}"),
    }
}

/// Opens the node's audit log; its checkpoints are signed by the audit key
/// on the node's HSM token when it seals with PKCS#11, else by a software
/// key kept in the log directory.
fn open_audit(config: &SignerConfig) -> Result<keyfold_audit::Trail, SignerError> {
    let signer: Option<keyfold_audit::trail::SharedSigner> = match open_hsm(config)? {
        Some(hsm) => {
            let key = keyfold_hsm::HsmAuditSigner::open_or_create(
                &hsm,
                keyfold_hsm::DEFAULT_AUDIT_KEY_LABEL,
            )
            .map_err(hsm_error(config, "HSM audit key"))?;
            Some(Box::new(key))
        }
        None => None,
    };
    keyfold_audit::Trail::open(config.data_dir.join("audit"), &config.node_id, signer)
        .map_err(|e| audit_error(config, e))
}

impl SignerNode {
    /// Signs a checkpoint of the audit log if it grew (off the async runtime:
    /// it may be an HSM call).
    pub async fn audit_checkpoint(self: &Arc<Self>) {
        let node = self.clone();
        match tokio::task::spawn_blocking(move || node.audit.checkpoint_now()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
        }
    }
}

/// Runs a signer node until `shutdown` completes.
pub async fn run(
    config: SignerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SignerError> {
    let node = SignerNode::start(config).await?;
    let every = std::time::Duration::from_secs(node.tuning.audit_checkpoint_secs.max(1));
    let checkpoints = {
        let node = node.clone();
        async move {
            loop {
                tokio::time::sleep(every).await;
                node.audit_checkpoint().await;
            }
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = checkpoints => {}
    }
    // A final checkpoint covers everything recorded before shutdown.
    node.audit_checkpoint().await;
    tracing::info!(node = %node.id, "signer node stopping");
    // The handler holds the node: close the endpoint explicitly.
    node.net.close();
    node.net.wait_idle().await;
    Ok(())
}
