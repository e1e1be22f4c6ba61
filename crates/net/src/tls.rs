//! Mutual TLS: a node's [`Identity`] (CA certificate, own certificate, own key),
//! the rustls configurations built from it (TLS 1.3 only, ALPN `keyfold/1`,
//! client certificates required and chained to our CA only), and the
//! [`PeerIdentity`] read from a verified peer certificate.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::ca::SAN_URI_PREFIX;
use crate::error::NetError;
use crate::id::{NodeId, Role};

/// The ALPN protocol every keyfold endpoint speaks.
pub const ALPN: &[u8] = b"keyfold/1";
/// Largest PEM file [`Identity::load`] reads.
pub const MAX_PEM_FILE: u64 = 1 << 20;

/// Who is at the other end of a connection, read from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// The node id (certificate SAN URI, matching its SAN DNS name).
    pub node: NodeId,
    /// The node's role.
    pub role: Role,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.node, self.role)
    }
}

impl PeerIdentity {
    /// Reads the identity from an end-entity certificate (DER). The certificate
    /// must carry exactly one SAN URI `keyfold:<role>:<node id>` and the node id
    /// as a SAN DNS name. Does NOT verify the chain: call it only on a
    /// certificate rustls has verified.
    pub fn from_certificate(der: &[u8]) -> Result<PeerIdentity, String> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("certificate does not parse: {e}"))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("bad subject alternative name extension: {e}"))?
            .ok_or("no subject alternative name")?;
        let mut uris = Vec::new();
        let mut dns = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) if u.starts_with(SAN_URI_PREFIX) => uris.push(*u),
                GeneralName::DNSName(d) => dns.push(*d),
                _ => {}
            }
        }
        let uri = match uris.as_slice() {
            [one] => *one,
            [] => return Err("no keyfold SAN URI (keyfold:<role>:<node id>)".into()),
            _ => return Err("several keyfold SAN URIs".into()),
        };
        let rest = &uri[SAN_URI_PREFIX.len()..];
        let (role, node) = rest
            .split_once(':')
            .ok_or_else(|| format!("SAN URI {uri:?} is not keyfold:<role>:<node id>"))?;
        let role: Role = role.parse().map_err(|e: NetError| e.to_string())?;
        let node = NodeId::new(node).map_err(|e| e.to_string())?;
        if !dns.contains(&node.as_str()) {
            return Err(format!("SAN DNS names do not include the node id {node}"));
        }
        Ok(PeerIdentity { node, role })
    }

    /// The identity of the peer of an established QUIC connection.
    pub fn of_connection(conn: &quinn::Connection) -> Result<PeerIdentity, NetError> {
        let refuse = |reason: String| NetError::PeerCertificate {
            addr: conn.remote_address(),
            reason,
        };
        let certs = conn
            .peer_identity()
            .ok_or_else(|| refuse("no certificate".into()))?
            .downcast::<Vec<CertificateDer<'static>>>()
            .map_err(|_| refuse("unexpected peer identity type".into()))?;
        let ee = certs
            .first()
            .ok_or_else(|| refuse("empty certificate chain".into()))?;
        PeerIdentity::from_certificate(ee).map_err(refuse)
    }
}

/// What a node runs with: the CA certificate it trusts (and only it), its own
/// certificate and private key. Validated on construction: the certificate
/// chains to the CA and carries a keyfold identity. `Debug` redacts the key.
#[derive(Clone)]
pub struct Identity {
    ca_cert_pem: String,
    cert_pem: String,
    key_pem: Zeroizing<String>,
    me: PeerIdentity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node", &self.me.node)
            .field("role", &self.me.role)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(what: &str, reason: impl fmt::Display) -> NetError {
    NetError::Pem {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn tls_err(context: &'static str, e: impl fmt::Display) -> NetError {
    NetError::TlsConfig {
        context,
        reason: e.to_string(),
    }
}

fn certs_der(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(what, e))?;
    if certs.is_empty() {
        return Err(pem_err(what, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The only certificate of a PEM document.
pub(crate) fn single_cert_der(pem: &str, what: &str) -> Result<CertificateDer<'static>, NetError> {
    let mut certs = certs_der(pem, what)?;
    if certs.len() != 1 {
        return Err(pem_err(what, "expected exactly one certificate"));
    }
    Ok(certs.remove(0))
}

fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, NetError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| pem_err("private key", e))?
        .ok_or_else(|| pem_err("private key", "no PRIVATE KEY block"))
}

fn roots(ca_cert_pem: &str) -> Result<Arc<RootCertStore>, NetError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_der(ca_cert_pem, "CA certificate")? {
        roots.add(cert).map_err(|e| pem_err("CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

fn read_pem(path: &Path) -> Result<String, NetError> {
    let file_err = |source| NetError::File {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(file_err)?;
    let mut text = String::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_string(&mut text)
        .map_err(file_err)?;
    if text.len() as u64 > MAX_PEM_FILE {
        return Err(pem_err(
            &path.display().to_string(),
            format!("larger than {MAX_PEM_FILE} bytes"),
        ));
    }
    Ok(text)
}

impl Identity {
    /// Builds and validates an identity from PEM text.
    pub fn from_pem(ca_cert_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, NetError> {
        let chain = certs_der(cert_pem, "node certificate")?;
        let me = PeerIdentity::from_certificate(&chain[0])
            .map_err(|e| pem_err("node certificate", e))?;
        key_der(key_pem)?;
        // The certificate must chain to the CA and be valid now for its node id.
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots(ca_cert_pem)?,
            provider(),
        )
        .build()
        .map_err(|e| tls_err("server verifier", e))?;
        let name = ServerName::try_from(me.node.as_str().to_string())
            .map_err(|e| pem_err("node certificate", e))?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .map_err(|e| pem_err("node certificate", format!("not valid under the CA: {e}")))?;
        let id = Identity {
            ca_cert_pem: ca_cert_pem.to_string(),
            cert_pem: cert_pem.to_string(),
            key_pem: Zeroizing::new(key_pem.to_string()),
            me,
        };
        // Checks that the key matches the certificate.
        id.server_config()?;
        Ok(id)
    }

    /// Loads an identity from three PEM files: the CA certificate, the node
    /// certificate (chain) and the node's private key (each at most 1 MiB).
    pub fn load(
        ca_cert: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, NetError> {
        let ca = read_pem(ca_cert.as_ref())?;
        let cert = read_pem(cert.as_ref())?;
        let key = Zeroizing::new(read_pem(key.as_ref())?);
        Self::from_pem(&ca, &cert, &key)
    }

    /// Writes the three PEM files (the key file with mode 0600 on Unix, set
    /// before the key is written).
    pub fn write(
        &self,
        ca_cert: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<(), NetError> {
        write_file(ca_cert.as_ref(), self.ca_cert_pem.as_bytes(), false)?;
        write_file(cert.as_ref(), self.cert_pem.as_bytes(), false)?;
        write_file(key.as_ref(), self.key_pem.as_bytes(), true)
    }

    /// This node's id (from its certificate).
    pub fn node_id(&self) -> &NodeId {
        &self.me.node
    }

    /// This node's role (from its certificate).
    pub fn role(&self) -> Role {
        self.me.role
    }

    /// The CA certificate (PEM).
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The node certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The node's private key (PEM). Secret.
    pub fn key_pem(&self) -> &Zeroizing<String> {
        &self.key_pem
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, NetError> {
        roots(&self.ca_cert_pem)
    }

    /// Server side: TLS 1.3 only, ALPN `keyfold/1`, a client certificate chained
    /// to our CA is required.
    pub fn server_config(&self) -> Result<ServerConfig, NetError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| tls_err("client verifier", e))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("server", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs_der(&self.cert_pem, "node certificate")?,
                key_der(&self.key_pem)?,
            )
            .map_err(|e| tls_err("server certificate and key", e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// Client side: TLS 1.3 only, ALPN `keyfold/1`, our CA as the only root,
    /// our certificate as client certificate.
    pub fn client_config(&self) -> Result<ClientConfig, NetError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_err("client", e))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                certs_der(&self.cert_pem, "node certificate")?,
                key_der(&self.key_pem)?,
            )
            .map_err(|e| tls_err("client certificate and key", e))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// Key material for QUIC stateless resets, derived from the private key:
    /// the HMAC key of reset tokens and the key of the connection-id generator
    /// (which must recognise the CIDs it issued before). A restarted node then
    /// answers packets of its previous incarnation's connections with a valid
    /// stateless reset, so peers drop stale connections at once.
    pub(crate) fn reset_secrets(&self) -> Result<(ring::hmac::Key, u64), NetError> {
        let der = key_der(&self.key_pem)?;
        let derive = |label: &[u8]| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(label);
            ctx.update(der.secret_der());
            ctx.finish()
        };
        let reset = derive(b"keyfold/1 quic stateless reset key\0");
        let cid = derive(b"keyfold/1 quic connection id key\0");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&cid.as_ref()[..8]);
        Ok((
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset.as_ref()),
            u64::from_le_bytes(cid_key),
        ))
    }
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), NetError> {
    use std::io::Write;
    let file_err = |source| NetError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(path).map_err(file_err)?;
    #[cfg(unix)]
    if private {
        // The mode above applies only to a new file: tighten an existing one.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(file_err)?;
    }
    file.write_all(data).map_err(file_err)?;
    file.sync_all().map_err(file_err)
}
