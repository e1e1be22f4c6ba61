//! `keyfold ca init` / `keyfold ca issue`: the cluster's private CA on disk.
//!
//! Layout of a CA directory: `ca.pem` (certificate), `ca.key` (private key,
//! mode 0600), and one `NODE.pem` / `NODE.key` pair per issued node.

use std::fs;
use std::path::{Path, PathBuf};

use keyfold_net::ca::Ca;
use keyfold_net::{NodeId, Role};

/// Files of one node's identity.
pub struct NodeFiles {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The node's certificate.
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
}

/// Creates a CA in `dir` unless one is there; returns it.
pub fn init(dir: &Path, name: &str) -> Result<Ca, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert.exists() || key.exists() {
        return load(dir);
    }
    let ca = Ca::generate(name).map_err(|e| format!("cannot create CA: {e}"))?;
    crate::write_private_new(&key, ca.key_pem.as_bytes())?;
    fs::write(&cert, ca.cert_pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    Ok(ca)
}

/// Loads the CA of `dir`.
pub fn load(dir: &Path) -> Result<Ca, String> {
    let read = |p: PathBuf| {
        fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert = read(dir.join("ca.pem"))?;
    let key = zeroize::Zeroizing::new(read(dir.join("ca.key"))?);
    Ca::from_pem(&cert, &key).map_err(|e| format!("CA in {} is unusable: {e}", dir.display()))
}

/// Issues (or reuses) the certificate of `node` with `role`, under `dir`.
pub fn issue(dir: &Path, ca: &Ca, node: &str, role: Role) -> Result<NodeFiles, String> {
    let id = NodeId::new(node).map_err(|e| format!("node id {node:?}: {e}"))?;
    let files = NodeFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join(format!("{node}.pem")),
        key: dir.join(format!("{node}.key")),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let issued = ca
        .issue(&id, role)
        .map_err(|e| format!("cannot issue a certificate for {node}: {e}"))?;
    crate::write_private_new(&files.key, issued.key_pem.as_bytes())?;
    fs::write(&files.cert, issued.cert_pem.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", files.cert.display()))?;
    Ok(files)
}
