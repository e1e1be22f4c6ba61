//! The error type of this crate: every variant names what is needed to act on it
//! (which peer, which session, which limit).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::id::NodeId;

/// Result of this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Why the transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A node id is not a DNS label of `[a-z0-9-]`.
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The refused text (truncated to 80 characters).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role is not one of `signer`, `coordinator`, `client`.
    #[error("invalid role {role:?}: expected signer, coordinator or client")]
    InvalidRole {
        /// The refused text (truncated to 80 characters).
        role: String,
    },
    /// Creating, signing or parsing a certificate failed.
    #[error("certificate: {context}: {reason}")]
    Certificate {
        /// What was being done.
        context: String,
        /// The underlying reason.
        reason: String,
    },
    /// A PEM document (certificate or key) is missing, malformed or too large.
    #[error("PEM {what}: {reason}")]
    Pem {
        /// Which document (file path or role of the document).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Building the TLS configuration failed.
    #[error("TLS configuration ({context}): {reason}")]
    TlsConfig {
        /// Which configuration.
        context: &'static str,
        /// The underlying reason.
        reason: String,
    },
    /// The UDP socket could not be bound, or no Tokio runtime is running.
    #[error("binding {addr}: {reason}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The underlying reason.
        reason: String,
    },
    /// A peer's certificate chain verified but carries no valid keyfold identity
    /// (SAN URI `keyfold:<role>:<node id>`).
    #[error("peer at {addr}: certificate refused: {reason}")]
    PeerCertificate {
        /// The peer's address.
        addr: SocketAddr,
        /// What is wrong with the certificate.
        reason: String,
    },
    /// A connection to a peer could not be started.
    #[error("connecting to {peer} at {addr}: {reason}")]
    Connect {
        /// The peer we dialed.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The underlying reason.
        reason: String,
    },
    /// The TLS handshake with a peer failed: wrong CA, wrong node id, no or
    /// expired certificate, ... (`reason` holds the TLS alert).
    #[error("TLS handshake with {peer} at {addr} failed: {reason}")]
    Handshake {
        /// The peer.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The TLS or QUIC reason.
        reason: String,
    },
    /// A peer did not complete the handshake in time.
    #[error("connecting to {peer} at {addr}: no handshake within {after:?}")]
    ConnectTimeout {
        /// The peer.
        peer: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The limit (`NetConfig::connect_timeout`).
        after: Duration,
    },
    /// The peer answered with a certificate for another node.
    #[error("{addr} claims to be {got}, expected node {expected}")]
    IdentityMismatch {
        /// The node we wanted.
        expected: NodeId,
        /// The identity in its certificate.
        got: String,
        /// Its address.
        addr: SocketAddr,
    },
    /// An established connection to a peer was lost or refused.
    #[error("connection with {peer}: {reason}")]
    Connection {
        /// The peer.
        peer: NodeId,
        /// The QUIC or TLS reason.
        reason: String,
    },
    /// Reading a stream failed (reset by the peer, connection lost ...).
    #[error("reading from {}: {source}", PeerLabel(peer))]
    Read {
        /// The peer, when known.
        peer: Option<NodeId>,
        /// The QUIC error.
        #[source]
        source: quinn::ReadError,
    },
    /// Writing a stream failed (stopped by the peer, connection lost ...).
    #[error("writing to {}: {source}", PeerLabel(peer))]
    Write {
        /// The peer, when known.
        peer: Option<NodeId>,
        /// The QUIC error.
        #[source]
        source: quinn::WriteError,
    },
    /// A frame announced more bytes than the limit; its body was not read.
    #[error(
        "frame of {len} bytes from {} exceeds the limit of {max} bytes",
        PeerLabel(peer)
    )]
    FrameTooLarge {
        /// The announced (or attempted) length.
        len: u64,
        /// The limit (`NetConfig::max_frame`).
        max: usize,
        /// The peer, when known (`None` for our own oversized payloads).
        peer: Option<NodeId>,
    },
    /// A stream ended in the middle of a frame.
    #[error("frame from {} ends after {got} of {expected} bytes", PeerLabel(peer))]
    FrameTruncated {
        /// Bytes announced (4 for the length prefix itself).
        expected: u64,
        /// Bytes received.
        got: u64,
        /// The peer, when known.
        peer: Option<NodeId>,
    },
    /// The peer refused our stream or request.
    #[error("{peer} refused: {reason}")]
    Refused {
        /// The peer.
        peer: NodeId,
        /// Its reason (from the stream's error code).
        reason: Refusal,
    },
    /// A request got no complete answer in time.
    #[error("request to {peer} got no answer within {after:?}")]
    RequestTimeout {
        /// The peer.
        peer: NodeId,
        /// The limit given to `Node::request`.
        after: Duration,
    },
    /// `join_session` was called with inconsistent parameters.
    #[error("session {}: invalid parameters: {reason}", hex::encode(session))]
    InvalidSession {
        /// The session id.
        session: [u8; 32],
        /// What is wrong.
        reason: String,
    },
    /// This node already takes part in that session.
    #[error("session {}: already joined on this node", hex::encode(session))]
    SessionExists {
        /// The session id.
        session: [u8; 32],
    },
    /// No message arrived within the round timeout while the protocol waited.
    #[error(
        "session {}: no message for {after:?}; waiting for {}",
        hex::encode(session),
        Parties(waiting_for)
    )]
    Timeout {
        /// The session id.
        session: [u8; 32],
        /// The suspects: the parties that sent fewer messages than the most
        /// active peer (all peers when none sent anything), as (index, node).
        waiting_for: Vec<(u16, NodeId)>,
        /// The round timeout.
        after: Duration,
    },
    /// A party's stream or connection closed in the middle of the session.
    #[error(
        "session {}: party {party} ({node}) is gone: {reason}",
        hex::encode(session)
    )]
    PeerGone {
        /// The session id.
        session: [u8; 32],
        /// The party's index in the session.
        party: u16,
        /// Its node id.
        node: NodeId,
        /// What happened.
        reason: String,
    },
    /// A party sent a message that does not decode as the protocol's message type.
    #[error(
        "session {}: message from party {party} ({node}) is malformed: {reason}",
        hex::encode(session)
    )]
    Malformed {
        /// The session id.
        session: [u8; 32],
        /// The culprit's index in the session.
        party: u16,
        /// Its node id.
        node: NodeId,
        /// The decoding error.
        reason: String,
    },
    /// One of our own messages could not be encoded.
    #[error(
        "session {}: encoding a message failed: {reason}",
        hex::encode(session)
    )]
    Encode {
        /// The session id.
        session: [u8; 32],
        /// The encoding error.
        reason: String,
    },
    /// The protocol addressed a message to a party that is not another member
    /// of the session.
    #[error(
        "session {}: recipient {recipient} is not another party of the {parties}-party session",
        hex::encode(session)
    )]
    BadRecipient {
        /// The session id.
        session: [u8; 32],
        /// The recipient index.
        recipient: u16,
        /// Number of parties.
        parties: u16,
    },
    /// The node was shut down.
    #[error("node {node} is shut down")]
    Closed {
        /// This node.
        node: NodeId,
    },
}

/// What a party of a session did, as this node's transport saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetBlame {
    /// Sent nothing within the round timeout while the protocol waited
    /// (a suspect of [`NetError::Timeout`]).
    Silent,
    /// Its stream or connection closed in the middle of the session, or we
    /// could not reach it ([`NetError::PeerGone`]).
    Gone,
    /// Sent a frame that is not a valid message ([`NetError::Malformed`]).
    Malformed,
}

impl fmt::Display for NetBlame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetBlame::Silent => "silent",
            NetBlame::Gone => "gone",
            NetBlame::Malformed => "malformed message",
        })
    }
}

/// A party of a session that a transport error blames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionCulprit {
    /// Its index in the session (as given to `Node::join_session`).
    pub party: u16,
    /// Its node id.
    pub node: NodeId,
    /// What it did.
    pub blame: NetBlame,
}

impl NetError {
    /// The parties of a session this error blames, as data: the suspects of a
    /// [`NetError::Timeout`], the party of a [`NetError::PeerGone`] or a
    /// [`NetError::Malformed`]. Empty for every other error (they are about
    /// this node, a request, or a peer outside any session).
    pub fn culprits(&self) -> Vec<SessionCulprit> {
        match self {
            NetError::Timeout { waiting_for, .. } => waiting_for
                .iter()
                .map(|(party, node)| SessionCulprit {
                    party: *party,
                    node: node.clone(),
                    blame: NetBlame::Silent,
                })
                .collect(),
            NetError::PeerGone { party, node, .. } => vec![SessionCulprit {
                party: *party,
                node: node.clone(),
                blame: NetBlame::Gone,
            }],
            NetError::Malformed { party, node, .. } => vec![SessionCulprit {
                party: *party,
                node: node.clone(),
                blame: NetBlame::Malformed,
            }],
            _ => Vec::new(),
        }
    }

    /// Fills in the peer of a frame-level error (the frame functions do not
    /// know who is at the other end of the stream).
    pub fn with_peer(self, node: &NodeId) -> Self {
        match self {
            NetError::Read { peer: None, source } => NetError::Read {
                peer: Some(node.clone()),
                source,
            },
            NetError::Write { peer: None, source } => NetError::Write {
                peer: Some(node.clone()),
                source,
            },
            NetError::FrameTooLarge {
                len,
                max,
                peer: None,
            } => NetError::FrameTooLarge {
                len,
                max,
                peer: Some(node.clone()),
            },
            NetError::FrameTruncated {
                expected,
                got,
                peer: None,
            } => NetError::FrameTruncated {
                expected,
                got,
                peer: Some(node.clone()),
            },
            other => other,
        }
    }
}

/// Why a peer refused one of our streams; carried as the QUIC application error
/// code of the stream reset / stop (see [`Refusal::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Our role may not send requests to this peer.
    RoleNotAllowed,
    /// The peer serves no requests (no `RpcHandler` installed).
    NoHandler,
    /// A frame was over the peer's size limit.
    FrameTooLarge,
    /// A frame or stream header was malformed.
    Malformed,
    /// The session refused the stream: we are not the party we claimed to be,
    /// not a signer, or already have a stream in that session.
    NotInSession,
    /// The session was not joined on the peer within its round timeout.
    SessionUnknown,
    /// The peer has too many pending streams.
    Busy,
    /// Our certificate carries no valid keyfold identity.
    BadIdentity,
    /// The peer's handler failed (panicked) on our request.
    Internal,
    /// Closed normally (session over, node shutting down).
    Closed,
    /// Any other code.
    Other(u64),
}

impl Refusal {
    /// The QUIC application error code that carries this refusal.
    pub fn code(self) -> u64 {
        match self {
            Refusal::Closed => 0,
            Refusal::RoleNotAllowed => 1,
            Refusal::NoHandler => 2,
            Refusal::FrameTooLarge => 3,
            Refusal::Malformed => 4,
            Refusal::NotInSession => 5,
            Refusal::SessionUnknown => 6,
            Refusal::Busy => 7,
            Refusal::BadIdentity => 8,
            Refusal::Internal => 9,
            Refusal::Other(c) => c,
        }
    }

    /// The refusal carried by a QUIC application error code.
    pub fn from_code(code: u64) -> Self {
        match code {
            0 => Refusal::Closed,
            1 => Refusal::RoleNotAllowed,
            2 => Refusal::NoHandler,
            3 => Refusal::FrameTooLarge,
            4 => Refusal::Malformed,
            5 => Refusal::NotInSession,
            6 => Refusal::SessionUnknown,
            7 => Refusal::Busy,
            8 => Refusal::BadIdentity,
            9 => Refusal::Internal,
            c => Refusal::Other(c),
        }
    }

    pub(crate) fn varint(self) -> quinn::VarInt {
        quinn::VarInt::from_u64(self.code()).unwrap_or(quinn::VarInt::MAX)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RoleNotAllowed => f.write_str("our role may not make this request"),
            Refusal::NoHandler => f.write_str("the peer serves no requests"),
            Refusal::FrameTooLarge => f.write_str("a frame exceeded the peer's size limit"),
            Refusal::Malformed => f.write_str("malformed frame or header"),
            Refusal::NotInSession => {
                f.write_str("not a party of that session (or a duplicate stream)")
            }
            Refusal::SessionUnknown => f.write_str("the session was not joined in time"),
            Refusal::Busy => f.write_str("too many pending streams"),
            Refusal::BadIdentity => f.write_str("our certificate carries no keyfold identity"),
            Refusal::Internal => f.write_str("the peer's handler failed"),
            Refusal::Closed => f.write_str("closed"),
            Refusal::Other(c) => write!(f, "error code {c}"),
        }
    }
}

struct PeerLabel<'a>(&'a Option<NodeId>);

impl fmt::Display for PeerLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("peer"),
        }
    }
}

struct Parties<'a>(&'a [(u16, NodeId)]);

impl fmt::Display for Parties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, (i, n)) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "party {i} ({n})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_round_trip() {
        for r in [
            Refusal::Closed,
            Refusal::RoleNotAllowed,
            Refusal::NoHandler,
            Refusal::FrameTooLarge,
            Refusal::Malformed,
            Refusal::NotInSession,
            Refusal::SessionUnknown,
            Refusal::Busy,
            Refusal::BadIdentity,
            Refusal::Internal,
            Refusal::Other(77),
        ] {
            assert_eq!(Refusal::from_code(r.code()), r);
        }
    }

    #[test]
    fn timeout_names_the_suspects() {
        let e = NetError::Timeout {
            session: [0xab; 32],
            waiting_for: vec![(2, NodeId::new("signer-3").unwrap())],
            after: Duration::from_secs(2),
        };
        let text = e.to_string();
        assert!(text.contains("party 2 (signer-3)"), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "{text}");
    }

    fn culprit(party: u16, node: &str, blame: NetBlame) -> SessionCulprit {
        SessionCulprit {
            party,
            node: NodeId::new(node).unwrap(),
            blame,
        }
    }

    #[test]
    fn session_errors_name_their_culprits_as_data() {
        let node = |s: &str| NodeId::new(s).unwrap();
        let timeout = NetError::Timeout {
            session: [1; 32],
            waiting_for: vec![(0, node("signer-1")), (2, node("signer-3"))],
            after: Duration::from_secs(2),
        };
        assert_eq!(
            timeout.culprits(),
            vec![
                culprit(0, "signer-1", NetBlame::Silent),
                culprit(2, "signer-3", NetBlame::Silent)
            ]
        );
        // The reason text is free-form (it may quote a peer); culprits never
        // come from it.
        let gone = NetError::PeerGone {
            session: [1; 32],
            party: 1,
            node: node("signer-2"),
            reason: "party 0 (signer-1) is gone".into(),
        };
        assert_eq!(
            gone.culprits(),
            vec![culprit(1, "signer-2", NetBlame::Gone)]
        );
        let malformed = NetError::Malformed {
            session: [1; 32],
            party: 2,
            node: node("signer-3"),
            reason: "waiting for party 0 (signer-1)".into(),
        };
        assert_eq!(
            malformed.culprits(),
            vec![culprit(2, "signer-3", NetBlame::Malformed)]
        );
        for other in [
            NetError::RequestTimeout {
                peer: node("signer-2"),
                after: Duration::from_secs(1),
            },
            NetError::Connection {
                peer: node("signer-2"),
                reason: "party 1 (signer-2) lost".into(),
            },
            NetError::Encode {
                session: [1; 32],
                reason: "party 1".into(),
            },
        ] {
            assert!(other.culprits().is_empty(), "{other}");
        }
    }
}
