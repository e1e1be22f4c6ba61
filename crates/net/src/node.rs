//! [`Node`]: one QUIC endpoint per process, server and client at once, with
//! request/response RPC (coordinator -> signer) and a connection cache.
//!
//! Every incoming connection is authenticated by mutual TLS before anything
//! else happens; its [`PeerIdentity`] comes from the verified certificate.
//! Bidirectional streams carry RPC (one request frame in, one response frame
//! out); unidirectional streams carry session messages (see [`crate::session`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, Endpoint, RecvStream, SendStream, WriteError};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::NetConfig;
use crate::error::{NetError, Refusal};
use crate::frame::{read_frame, write_frame};
use crate::id::{NodeId, PeerAddr, Role};
use crate::session::Registry;
use crate::tls::{Identity, PeerIdentity};

/// Serves requests (installed with [`Node::serve`]).
pub trait RpcHandler: Send + Sync + 'static {
    /// Answers `request` from `peer` (already authenticated, role allowed).
    /// Errors are the handler's to encode in the response.
    fn handle(
        &self,
        peer: PeerIdentity,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>>;
}

struct Rpc {
    handler: Arc<dyn RpcHandler>,
    allowed: Vec<Role>,
}

/// State shared with the accept loop and the stream tasks.
pub(crate) struct Shared {
    pub(crate) me: PeerIdentity,
    pub(crate) cfg: NetConfig,
    rpc: RwLock<Option<Arc<Rpc>>>,
    pub(crate) sessions: Mutex<Registry>,
}

impl Shared {
    pub(crate) fn sessions(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated
        // in a way that matters more than losing it: keep going.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rpc(&self) -> Option<Arc<Rpc>> {
        self.rpc
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_rpc(&self, rpc: Option<Arc<Rpc>>) {
        *self
            .rpc
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rpc;
    }
}

struct Cached {
    addr: SocketAddr,
    conn: quinn::Connection,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

struct Inner {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    client_config: quinn::ClientConfig,
    conns: Mutex<HashMap<NodeId, Slot>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.endpoint.close(Refusal::Closed.varint(), b"shutdown");
    }
}

/// A keyfold QUIC endpoint: accepts connections (RPC and session streams) and
/// dials peers. Cheap to clone; the endpoint closes when the last clone is
/// dropped or on [`Node::close`].
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.inner.shared.me.node)
            .field("role", &self.inner.shared.me.role)
            .field("addr", &self.inner.endpoint.local_addr().ok())
            .finish()
    }
}

fn transport(cfg: &NetConfig) -> Result<Arc<quinn::TransportConfig>, String> {
    let mut t = quinn::TransportConfig::default();
    let streams = quinn::VarInt::from_u32(cfg.max_concurrent_streams);
    t.max_concurrent_bidi_streams(streams);
    t.max_concurrent_uni_streams(streams);
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(cfg.idle_timeout).map_err(|e| e.to_string())?,
    ));
    t.keep_alive_interval(Some(cfg.keep_alive));
    Ok(Arc::new(t))
}

/// Is this a QUIC close caused by TLS (bad certificate, unknown CA, ...)?
fn is_tls_failure(e: &ConnectionError) -> bool {
    let code = match e {
        ConnectionError::TransportError(t) => u64::from(t.code),
        ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
        _ => return false,
    };
    (0x100..0x200).contains(&code)
}

/// Maps a connection-level failure with `peer` to an error.
pub(crate) fn connection_error(peer: &PeerAddr, e: ConnectionError) -> NetError {
    if is_tls_failure(&e) {
        return NetError::Handshake {
            peer: peer.node.clone(),
            addr: peer.addr,
            reason: e.to_string(),
        };
    }
    if let ConnectionError::ApplicationClosed(close) = &e {
        let code = close.error_code.into_inner();
        if code != 0 {
            return NetError::Refused {
                peer: peer.node.clone(),
                reason: Refusal::from_code(code),
            };
        }
    }
    NetError::Connection {
        peer: peer.node.clone(),
        reason: e.to_string(),
    }
}

/// Maps a stream failure with `peer` to an error: a reset / stop code becomes
/// [`NetError::Refused`], a lost connection [`connection_error`].
pub(crate) fn stream_error(peer: &PeerAddr, e: NetError) -> NetError {
    match e {
        NetError::Read {
            source: quinn::ReadError::Reset(code),
            ..
        }
        | NetError::Write {
            source: WriteError::Stopped(code),
            ..
        } => NetError::Refused {
            peer: peer.node.clone(),
            reason: Refusal::from_code(code.into_inner()),
        },
        NetError::Read {
            source: quinn::ReadError::ConnectionLost(ce),
            ..
        }
        | NetError::Write {
            source: WriteError::ConnectionLost(ce),
            ..
        } => connection_error(peer, ce),
        other => other.with_peer(&peer.node),
    }
}

/// Did this failure come from a QUIC stateless reset, i.e. the peer's endpoint
/// no longer knows the connection (it restarted)? Nothing we sent on it can
/// have been processed by the process now running there.
pub(crate) fn is_stateless_reset(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Read {
            source: quinn::ReadError::ConnectionLost(ConnectionError::Reset),
            ..
        } | NetError::Write {
            source: WriteError::ConnectionLost(ConnectionError::Reset),
            ..
        }
    )
}

fn refuse(send: &mut SendStream, recv: &mut RecvStream, why: Refusal) {
    let _ = send.reset(why.varint());
    let _ = recv.stop(why.varint());
}

impl Node {
    /// Binds a UDP socket on `listen` and starts accepting connections (session
    /// streams are served at once; requests once [`Node::serve`] installs a
    /// handler). Must be called inside a Tokio runtime.
    pub fn bind(listen: SocketAddr, identity: &Identity, cfg: NetConfig) -> Result<Node, NetError> {
        let bind_err = |reason: String| NetError::Bind {
            addr: listen,
            reason,
        };
        cfg.validate().map_err(bind_err)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| bind_err("not inside a Tokio runtime".into()))?;
        let transport = transport(&cfg).map_err(bind_err)?;

        let server_tls = QuicServerConfig::try_from(identity.server_config()?).map_err(|e| {
            NetError::TlsConfig {
                context: "QUIC server",
                reason: e.to_string(),
            }
        })?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_tls));
        server_config.transport_config(transport.clone());

        let client_tls = QuicClientConfig::try_from(identity.client_config()?).map_err(|e| {
            NetError::TlsConfig {
                context: "QUIC client",
                reason: e.to_string(),
            }
        })?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_tls));
        client_config.transport_config(transport);

        let (reset_key, cid_key) = identity.reset_secrets()?;
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let socket = std::net::UdpSocket::bind(listen).map_err(|e| bind_err(e.to_string()))?;
        let endpoint = {
            let _guard = runtime.enter();
            Endpoint::new(
                endpoint_config,
                Some(server_config),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|e| bind_err(e.to_string()))?
        };
        let me = PeerIdentity {
            node: identity.node_id().clone(),
            role: identity.role(),
        };
        let shared = Arc::new(Shared {
            me: me.clone(),
            cfg,
            rpc: RwLock::new(None),
            sessions: Mutex::new(Registry::default()),
        });
        let addr = endpoint.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let span = info_span!("node", node = %me.node, role = %me.role, %addr);
        runtime.spawn(accept_loop(endpoint.clone(), shared.clone()).instrument(span));
        info!(node = %me.node, role = %me.role, %addr, "listening");
        Ok(Node {
            inner: Arc::new(Inner {
                endpoint,
                shared,
                client_config,
                conns: Mutex::new(HashMap::new()),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|e| NetError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                reason: e.to_string(),
            })
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.shared.me.node
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.inner.shared.me.role
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.inner.shared.cfg
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Serves requests with `handler`, from peers whose role is in
    /// `allowed_roles`; other peers get their stream reset with
    /// [`Refusal::RoleNotAllowed`] and nothing reaches the handler. Replaces any
    /// previous handler.
    pub fn serve(&self, handler: Arc<dyn RpcHandler>, allowed_roles: &[Role]) {
        self.inner.shared.set_rpc(Some(Arc::new(Rpc {
            handler,
            allowed: allowed_roles.to_vec(),
        })));
    }

    /// Closes every connection and stops accepting; drops the RPC handler (which
    /// may hold a clone of this node). Pending data is not flushed: see
    /// [`Node::wait_idle`].
    pub fn close(&self) {
        self.inner.shared.set_rpc(None);
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.inner
            .endpoint
            .close(Refusal::Closed.varint(), b"shutdown");
    }

    /// Waits until every connection is closed (after [`Node::close`]), so the
    /// peers have been told.
    pub async fn wait_idle(&self) {
        self.inner.endpoint.wait_idle().await;
    }

    /// A connection to `peer`: the cached one if it is still open, else a new
    /// one (whose certificate must name `peer.node`). The boolean tells whether
    /// it came from the cache.
    pub(crate) async fn connection(
        &self,
        peer: &PeerAddr,
    ) -> Result<(quinn::Connection, bool), NetError> {
        let slot = {
            let mut map = self
                .inner
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(peer.node.clone()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.addr == peer.addr && c.conn.close_reason().is_none() {
                return Ok((c.conn.clone(), true));
            }
        }
        *cached = None;
        let conn = self.dial(peer).await?;
        *cached = Some(Cached {
            addr: peer.addr,
            conn: conn.clone(),
        });
        Ok((conn, false))
    }

    /// The (cached) authenticated connection to `peer`: for callers that need
    /// raw QUIC streams (tests, diagnostics). Requests and sessions do not need it.
    pub async fn connect(&self, peer: &PeerAddr) -> Result<quinn::Connection, NetError> {
        Ok(self.connection(peer).await?.0)
    }

    async fn dial(&self, peer: &PeerAddr) -> Result<quinn::Connection, NetError> {
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(NetError::Closed {
                node: self.node_id().clone(),
            });
        }
        let connecting = self
            .inner
            .endpoint
            .connect_with(
                self.inner.client_config.clone(),
                peer.addr,
                peer.node.as_str(),
            )
            .map_err(|e| NetError::Connect {
                peer: peer.node.clone(),
                addr: peer.addr,
                reason: e.to_string(),
            })?;
        let after = self.inner.shared.cfg.connect_timeout;
        let conn = match tokio::time::timeout(after, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(connection_error(peer, e)),
            Err(_) => {
                return Err(NetError::ConnectTimeout {
                    peer: peer.node.clone(),
                    addr: peer.addr,
                    after,
                })
            }
        };
        let id = match PeerIdentity::of_connection(&conn) {
            Ok(id) => id,
            Err(e) => {
                conn.close(Refusal::BadIdentity.varint(), b"no keyfold identity");
                return Err(e);
            }
        };
        if id.node != peer.node {
            conn.close(Refusal::BadIdentity.varint(), b"unexpected node id");
            return Err(NetError::IdentityMismatch {
                expected: peer.node.clone(),
                got: id.to_string(),
                addr: peer.addr,
            });
        }
        debug!(peer = %id, addr = %peer.addr, "connected");
        Ok(conn)
    }

    /// Sends `payload` to `peer` as one request and returns its response, all
    /// within `timeout`. Uses the cached connection; if that connection turns
    /// out to be stale because the peer restarted (QUIC stateless reset), the
    /// request is sent once more on a new connection.
    pub async fn request(
        &self,
        peer: &PeerAddr,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, NetError> {
        let max = self.inner.shared.cfg.max_frame;
        if payload.len() > max {
            return Err(NetError::FrameTooLarge {
                len: payload.len() as u64,
                max,
                peer: Some(peer.node.clone()),
            });
        }
        let span = info_span!("request", peer = %peer.node, len = payload.len());
        tokio::time::timeout(timeout, self.request_inner(peer, payload))
            .instrument(span)
            .await
            .map_err(|_| NetError::RequestTimeout {
                peer: peer.node.clone(),
                after: timeout,
            })?
    }

    async fn request_inner(&self, peer: &PeerAddr, payload: &[u8]) -> Result<Vec<u8>, NetError> {
        let max = self.inner.shared.cfg.max_frame;
        let mut retried = false;
        loop {
            let (conn, cached) = self.connection(peer).await?;
            match exchange(&conn, payload, max).await {
                Ok(response) => return Ok(response),
                Err(e) if cached && !retried && is_stateless_reset(&e) => {
                    info!(peer = %peer.node, "cached connection was reset (peer restarted); retrying on a new one");
                    retried = true;
                }
                Err(e) => return Err(stream_error(peer, e)),
            }
        }
    }
}

async fn exchange(
    conn: &quinn::Connection,
    payload: &[u8],
    max: usize,
) -> Result<Vec<u8>, NetError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| NetError::Write {
        peer: None,
        source: WriteError::ConnectionLost(e),
    })?;
    write_frame(&mut send, payload).await?;
    let _ = send.finish();
    match read_frame(&mut recv, max).await? {
        Some(response) => Ok(response),
        None => Err(NetError::FrameTruncated {
            expected: crate::frame::LEN_PREFIX as u64,
            got: 0,
            peer: None,
        }),
    }
}

async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(serve_connection(shared, incoming).in_current_span());
    }
    debug!("endpoint closed; accept loop ends");
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            debug!(%remote, error = %e, "incoming connection failed");
            return;
        }
    };
    let conn = match tokio::time::timeout(shared.cfg.connect_timeout, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            warn!(%remote, error = %e, "handshake refused");
            return;
        }
        Err(_) => {
            warn!(%remote, "handshake timed out");
            return;
        }
    };
    let peer = match PeerIdentity::of_connection(&conn) {
        Ok(p) => p,
        Err(e) => {
            warn!(%remote, error = %e, "peer refused");
            conn.close(Refusal::BadIdentity.varint(), b"no keyfold identity");
            return;
        }
    };
    let span = info_span!("conn", peer = %peer.node, role = %peer.role, %remote);
    async move {
        debug!("connection accepted");
        loop {
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => {
                        tokio::spawn(
                            rpc_stream(shared.clone(), peer.clone(), send, recv).in_current_span(),
                        );
                    }
                    Err(e) => {
                        debug!(reason = %e, "connection closed");
                        break;
                    }
                },
                uni = conn.accept_uni() => match uni {
                    Ok(recv) => {
                        tokio::spawn(
                            crate::session::incoming_stream(shared.clone(), peer.clone(), recv)
                                .in_current_span(),
                        );
                    }
                    Err(e) => {
                        debug!(reason = %e, "connection closed");
                        break;
                    }
                },
            }
        }
    }
    .instrument(span)
    .await;
}

async fn rpc_stream(
    shared: Arc<Shared>,
    peer: PeerIdentity,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let Some(rpc) = shared.rpc() else {
        warn!("request refused: no handler installed");
        refuse(&mut send, &mut recv, Refusal::NoHandler);
        return;
    };
    if !rpc.allowed.contains(&peer.role) {
        warn!(role = %peer.role, "request refused: role not allowed");
        refuse(&mut send, &mut recv, Refusal::RoleNotAllowed);
        return;
    }
    let max = shared.cfg.max_frame;
    let request =
        match tokio::time::timeout(shared.cfg.idle_timeout, read_frame(&mut recv, max)).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                debug!("empty request stream");
                refuse(&mut send, &mut recv, Refusal::Malformed);
                return;
            }
            Ok(Err(e @ NetError::FrameTooLarge { .. })) => {
                warn!(error = %e.with_peer(&peer.node), "request refused");
                refuse(&mut send, &mut recv, Refusal::FrameTooLarge);
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e.with_peer(&peer.node), "reading request failed");
                refuse(&mut send, &mut recv, Refusal::Malformed);
                return;
            }
            Err(_) => {
                debug!("request did not arrive in time");
                refuse(&mut send, &mut recv, Refusal::Malformed);
                return;
            }
        };
    let handled = std::panic::AssertUnwindSafe(rpc.handler.handle(peer.clone(), request));
    let response = match futures::FutureExt::catch_unwind(handled).await {
        Ok(r) => r,
        Err(_) => {
            warn!("request handler panicked");
            refuse(&mut send, &mut recv, Refusal::Internal);
            return;
        }
    };
    if response.len() > max {
        warn!(
            len = response.len(),
            max, "response exceeds max_frame; refused"
        );
        refuse(&mut send, &mut recv, Refusal::FrameTooLarge);
        return;
    }
    if let Err(e) = write_frame(&mut send, &response).await {
        debug!(error = %e.with_peer(&peer.node), "sending response failed");
        return;
    }
    let _ = send.finish();
}
