//! The policy the coordinator enforces: loaded from the configured genesis
//! file, replaced only by updates signed by the admin quorum of the policy in
//! force, which are kept in the data directory so a restart keeps them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use keyfold_policy::{Policy, SignedPolicy};

/// Where accepted updates are kept, under the data directory.
const UPDATE_FILE: &str = "policy-update.json";

/// The enforced policy.
pub struct PolicyGate {
    current: RwLock<Arc<Policy>>,
    data_dir: PathBuf,
    /// The genesis file's text, byte for byte (what the audit log records).
    genesis_text: String,
}

impl PolicyGate {
    /// Loads the genesis document `file`, or the signed update stored in
    /// `data_dir` when it is newer (it was verified against the admin quorum
    /// of the policy in force when it was accepted; the data directory is
    /// trusted like the database next to it).
    pub fn load(file: &Path, data_dir: &Path) -> Result<PolicyGate, String> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("policy file {}: {e}", file.display()))?;
        let genesis =
            Policy::from_toml(&text).map_err(|e| format!("policy file {}: {e}", file.display()))?;
        let update_path = data_dir.join(UPDATE_FILE);
        let policy = match std::fs::read(&update_path) {
            Ok(bytes) => {
                let update: SignedPolicy = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", update_path.display()))?;
                let new = Policy::from_toml(&update.document_toml)
                    .map_err(|e| format!("{}: {e}", update_path.display()))?;
                if new.version() > genesis.version() {
                    tracing::info!(
                        version = new.version(),
                        "enforcing the stored signed policy update"
                    );
                    new
                } else {
                    genesis
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => genesis,
            Err(e) => return Err(format!("{}: {e}", update_path.display())),
        };
        Ok(PolicyGate {
            current: RwLock::new(Arc::new(policy)),
            data_dir: data_dir.to_path_buf(),
            genesis_text: text,
        })
    }

    /// The enforced policy.
    pub fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The signed update that brought the policy in force, if it is not the
    /// genesis document (read from the data directory).
    pub fn signed_update(&self) -> Option<SignedPolicy> {
        let bytes = std::fs::read(self.data_dir.join(UPDATE_FILE)).ok()?;
        let update: SignedPolicy = serde_json::from_slice(&bytes).ok()?;
        update.is_in_force(&self.current()).then_some(update)
    }

    /// The exact text of the document in force: the signed update's
    /// document, or the genesis file as written (so a restart recognizes the
    /// policy the audit log recorded last by its hash, whatever the TOML
    /// library would print today).
    pub fn document_text(&self) -> String {
        match self.signed_update() {
            Some(u) => u.document_toml,
            None => self.genesis_text.clone(),
        }
    }

    /// Verifies `update` against the policy in force, keeps it durably and
    /// enforces it.
    pub fn update(&self, update: &SignedPolicy) -> Result<Arc<Policy>, String> {
        let new = update
            .verify(&self.current())
            .map_err(|e| format!("policy update refused: {e}"))?;
        let path = self.data_dir.join(UPDATE_FILE);
        let tmp = self.data_dir.join(format!("{UPDATE_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(update).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, json)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot keep the policy update in {}: {e}", path.display()))?;
        let new = Arc::new(new);
        match self.current.write() {
            Ok(mut g) => *g = new.clone(),
            Err(p) => *p.into_inner() = new.clone(),
        }
        tracing::info!(version = new.version(), "policy updated");
        Ok(new)
    }
}
