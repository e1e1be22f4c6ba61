//! Node identities: [`NodeId`] (a DNS label, also the certificate's DNS name),
//! [`Role`] and [`PeerAddr`].

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::NetError;

/// Longest node id (a DNS label).
pub const MAX_NODE_ID_LEN: usize = 63;

/// The name of a node: 1 to 63 characters of `[a-z0-9-]`, not starting or
/// ending with `-`, not all digits (a DNS label that is also a valid TLS server
/// name). The CA puts it in the certificate as DNS name, so a client that dials
/// `signer-2` verifies with plain WebPKI that it reached `signer-2`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, NetError> {
        let id = id.into();
        let refuse = |reason| NetError::InvalidNodeId {
            id: id.chars().take(80).collect(),
            reason,
        };
        if id.is_empty() {
            return Err(refuse("empty"));
        }
        if id.len() > MAX_NODE_ID_LEN {
            return Err(refuse("longer than 63 characters"));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(refuse("only a-z, 0-9 and '-' are allowed"));
        }
        if id.starts_with('-') || id.ends_with('-') {
            return Err(refuse("starts or ends with '-'"));
        }
        // All-numeric and hex-looking labels are refused as TLS server names
        // (they could be read as an IPv4 address).
        if rustls::pki_types::ServerName::try_from(id.as_str()).is_err() {
            return Err(refuse("not a valid TLS server name (all digits or 0x..?)"));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl FromStr for NodeId {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = NetError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

/// What a node is allowed to do; carried by its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds key shares, runs MPC sessions with other signers, answers the coordinator.
    Signer,
    /// Orchestrates signers.
    Coordinator,
    /// Any other authenticated client (tools, operators).
    Client,
}

impl Role {
    /// The role's name as used in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Signer => "signer",
            Role::Coordinator => "coordinator",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "signer" => Ok(Role::Signer),
            "coordinator" => Ok(Role::Coordinator),
            "client" => Ok(Role::Client),
            other => Err(NetError::InvalidRole {
                role: other.chars().take(80).collect(),
            }),
        }
    }
}

/// Where to reach a node: its id (checked against its certificate) and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The node id its certificate must carry.
    pub node: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

impl PeerAddr {
    /// A peer address.
    pub fn new(node: NodeId, addr: SocketAddr) -> Self {
        Self { node, addr }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        for ok in ["signer-1", "a", "coordinator", "x9", &"a".repeat(63)] {
            assert!(NodeId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Signer",
            "a.b",
            "a_b",
            "123",
            "0x1f",
            "é",
            &"a".repeat(64),
        ] {
            assert!(NodeId::new(bad).is_err(), "{bad}");
        }
        let json = serde_json::to_string(&NodeId::new("signer-1").unwrap()).unwrap();
        assert_eq!(json, "\"signer-1\"");
        assert!(serde_json::from_str::<NodeId>("\"BAD\"").is_err());
    }

    #[test]
    fn roles() {
        for r in [Role::Signer, Role::Coordinator, Role::Client] {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
