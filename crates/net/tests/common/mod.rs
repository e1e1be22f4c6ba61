//! Helpers shared by the integration tests: a CA, nodes on 127.0.0.1 port 0,
//! an echo handler that counts what reaches it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyfold_net::{
    Ca, Identity, NetConfig, Node, NodeId, PeerAddr, PeerIdentity, Role, RpcHandler,
};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

pub fn identity(ca: &Ca, name: &str, role: Role) -> Identity {
    ca.issue_identity(&id(name), role).unwrap()
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn cfg() -> NetConfig {
    NetConfig {
        connect_timeout: Duration::from_secs(3),
        round_timeout: Duration::from_secs(5),
        ..NetConfig::default()
    }
}

pub fn node(ca: &Ca, name: &str, role: Role) -> Node {
    Node::bind(localhost(), &identity(ca, name, role), cfg()).unwrap()
}

pub fn addr(node: &Node) -> PeerAddr {
    PeerAddr::new(node.node_id().clone(), node.local_addr().unwrap())
}

/// Answers `"<peer node>/<peer role>:" + request` and counts requests.
#[derive(Default)]
pub struct Echo {
    pub hits: AtomicUsize,
}

impl Echo {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl RpcHandler for Echo {
    fn handle(
        &self,
        peer: PeerIdentity,
        request: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            self.hits.fetch_add(1, Ordering::SeqCst);
            let mut out = format!("{}/{}:", peer.node, peer.role).into_bytes();
            out.extend_from_slice(&request);
            out
        })
    }
}

pub fn serve_echo(node: &Node, allowed: &[Role]) -> Arc<Echo> {
    let echo = Arc::new(Echo::default());
    node.serve(echo.clone(), allowed);
    echo
}

pub const T: Duration = Duration::from_secs(5);

/// A UDP relay on 127.0.0.1 for one client: what arrives on its front port goes
/// to the current upstream, and answers go back to the client. Switching the
/// upstream models a peer that crashed and restarted at the same address: the
/// old process's packets (even its CONNECTION_CLOSE) never reach the client.
pub struct Relay {
    pub front: SocketAddr,
    front_sock: Arc<tokio::net::UdpSocket>,
    client: Arc<std::sync::Mutex<Option<SocketAddr>>>,
    upstream: Arc<std::sync::Mutex<(SocketAddr, Arc<tokio::net::UdpSocket>)>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let front = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        let relay = Relay {
            front: front.local_addr().unwrap(),
            front_sock: front.clone(),
            client: Arc::default(),
            upstream: Arc::new(std::sync::Mutex::new((upstream, back.clone()))),
            tasks: Default::default(),
        };
        let (client, state) = (relay.client.clone(), relay.upstream.clone());
        let forward = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                *client.lock().unwrap() = Some(from);
                let (to, sock) = state.lock().unwrap().clone();
                let _ = sock.send_to(&buf[..n], to).await;
            }
        });
        relay.tasks.lock().unwrap().push(forward);
        relay.spawn_back(back);
        relay
    }

    fn spawn_back(&self, back: Arc<tokio::net::UdpSocket>) {
        let (front, client) = (self.front_sock.clone(), self.client.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, _)) = back.recv_from(&mut buf).await else {
                    return;
                };
                let to = *client.lock().unwrap();
                if let Some(to) = to {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
        self.tasks.lock().unwrap().push(task);
    }

    /// Forwards to `upstream` from now on, through a new socket; packets from
    /// the old upstream are no longer relayed.
    pub async fn switch(&self, upstream: SocketAddr) {
        let back = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        {
            let mut tasks = self.tasks.lock().unwrap();
            if tasks.len() > 1 {
                tasks.remove(1).abort(); // the old return path
            }
        }
        *self.upstream.lock().unwrap() = (upstream, back.clone());
        self.spawn_back(back);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
