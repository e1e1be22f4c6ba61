//! Keyfold's transport: QUIC (quinn + rustls) with mutual TLS between signer
//! nodes and the coordinator.
//!
//! * [`ca`]: a private CA (rcgen) issuing node certificates that carry the node
//!   id (SAN DNS name) and role (SAN URI `keyfold:<role>:<node id>`).
//! * [`tls`]: a node's [`Identity`], the rustls configurations (TLS 1.3 only,
//!   client certificates required, our CA as the only root) and the
//!   [`PeerIdentity`] read from a verified certificate.
//! * [`frame`]: length-prefixed frames with a size limit checked before reading.
//! * [`Node`]: one QUIC endpoint per process: request/response RPC with a
//!   connection cache, and [`SessionDelivery`], a `round_based::Delivery` that
//!   carries MPC protocol messages between the parties of a session.
//!
//! All I/O of the MPC protocols is here; `keyfold-mpc` stays free of sockets.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
mod config;
mod error;
pub mod frame;
mod id;
mod node;
pub mod session;
pub mod tls;

pub use ca::{Ca, NodeCert};
pub use config::{NetConfig, DEFAULT_MAX_FRAME};
pub use error::{NetBlame, NetError, Refusal, Result, SessionCulprit};
pub use id::{NodeId, PeerAddr, Role, MAX_NODE_ID_LEN};
pub use node::{Node, RpcHandler};
pub use session::{SessionDelivery, SessionIncoming, SessionOutgoing};
pub use tls::{Identity, PeerIdentity, ALPN};
