//! The auditor's checks of `policy_shadow` entries: a policy version
//! installed in shadow must have been let in exactly as a policy update
//! would be (the admin quorum of the policy in force signed its document,
//! and its version is above the version in force), and a shadow can only
//! be removed, or ended by a version at least its own coming into force,
//! while it is the one installed.
//!
//! A shadow decides nothing (only the policy in force does, and decisions
//! are re-evaluated under it alone), so nothing else depends on it; its
//! per-request decisions are not in the log.

use keyfold_policy::SignedPolicy;
use sha2::{Digest, Sha256};

use super::{Auditor, Check};

/// The shadow installed, as the log describes it: its version and the
/// SHA-256 of its document.
#[derive(Debug, Default)]
pub(super) struct InstalledShadow(Option<(u64, [u8; 32])>);

impl Auditor {
    /// A `policy_shadow` entry (see the module docs).
    pub(super) fn policy_shadow(
        &mut self,
        version: u64,
        document_hash: &[u8; 32],
        document: &str,
        update: Option<&str>,
        action: &str,
    ) -> Check {
        let hash: [u8; 32] = Sha256::digest(document.as_bytes()).into();
        if &hash != document_hash {
            return Err("document_hash is not the SHA-256 of the shadow document".into());
        }
        match action {
            "installed" => {
                let Some(u) = update else {
                    return Err(format!(
                        "shadow version {version} installed without its signed update"
                    ));
                };
                let signed: SignedPolicy = serde_json::from_str(u)
                    .map_err(|e| format!("shadow update is not a signed policy: {e}"))?;
                if signed.document_toml != document {
                    return Err("the signed shadow update is not the recorded document".into());
                }
                // The same rule as a policy update: the admins of the policy
                // in force, and a version above it.
                let policy = signed
                    .verify(self.policy()?)
                    .map_err(|e| format!("shadow version not allowed: {e}"))?;
                if policy.version() != version {
                    return Err(format!(
                        "event says shadow version {version}, the document is version {}",
                        policy.version()
                    ));
                }
                // Installing replaces the shadow installed, if any.
                self.shadow.0 = Some((version, hash));
            }
            "removed" | "ended" => {
                if update.is_some() {
                    return Err(format!("a shadow {action} event carries an update"));
                }
                match self.shadow.0 {
                    Some((v, h)) if v == version && h == hash => {}
                    Some((v, _)) if v == version => {
                        return Err(format!(
                            "shadow version {version} {action}, but the installed shadow of that version has another document"
                        ))
                    }
                    Some((v, _)) => {
                        return Err(format!(
                            "shadow version {version} {action}, but the installed shadow is version {v}"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "shadow version {version} {action}, but no shadow is installed"
                        ))
                    }
                }
                if action == "ended" {
                    let in_force = self.policy()?.version();
                    if in_force < version {
                        return Err(format!(
                            "shadow version {version} ended while version {in_force} is in force (only a version at least the shadow's ends it)"
                        ));
                    }
                }
                self.shadow.0 = None;
            }
            other => {
                return Err(format!(
                    "policy shadow action {other:?} is not \"installed\", \"removed\" or \"ended\""
                ))
            }
        }
        self.stats.policy_shadows += 1;
        Ok(())
    }
}
