//! Exported audit bundles: what `keyfold audit export` writes and what
//! `keyfold audit verify` and `keyfold audit cross-check` read.
//!
//! A bundle is a directory with one sub-directory per log, named by its log
//! id (`coordinator`, `signer-1`, ...), each holding `entries.jsonl` and
//! `checkpoints.jsonl`, and `keys.json`: the checkpoint public key of each
//! log as the nodes published it. An auditor should compare `keys.json`
//! with the keys published out of band (or pass their own file).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::auditor::{AuditStats, Auditor};
use crate::checkpoint::SignedCheckpoint;
use crate::event::{Entry, Event};
use crate::file::{export, CHECKPOINTS_FILE, ENTRIES_FILE};
use crate::merkle::{self, FullTree, Hash};
use crate::trail::PUBLIC_KEY_FILE;
use crate::verify::{parse_checkpoints, verify_with_leaves, Report, VerifyError};

/// The file of a bundle that maps log ids to hex checkpoint public keys.
pub const KEYS_FILE: &str = "keys.json";

/// Why a bundle could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No audit log was found.
    #[error("no audit logs under {0} (looked for DIR/audit and DIR/*/audit)")]
    NoLogs(String),
    /// A file is not what it should be.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The trusted keys do not name this log.
    #[error("log {log}: no trusted checkpoint key for it")]
    NoKey {
        /// The log id.
        log: String,
    },
    /// The log does not verify.
    #[error("log {log}: {source}")]
    Log {
        /// The log id.
        log: String,
        /// The first problem.
        #[source]
        source: VerifyError,
    },
    /// An inclusion or consistency proof failed.
    #[error("log {log}: {reason}")]
    Proof {
        /// The log id.
        log: String,
        /// What failed.
        reason: String,
    },
    /// Exporting a log failed.
    #[error(transparent)]
    Export(#[from] crate::Error),
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> BundleError {
    move |source| BundleError::Io { context, source }
}

fn read(path: &Path) -> Result<Vec<u8>, BundleError> {
    std::fs::read(path).map_err(io(format!("read {}", path.display())))
}

/// One exported log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportedLog {
    /// Log id (the sub-directory name in the bundle).
    pub log_id: String,
    /// Bytes of entries written.
    pub entry_bytes: u64,
    /// Bytes of checkpoints written.
    pub checkpoint_bytes: u64,
    /// Hex checkpoint public key the node published.
    pub public_key: String,
}

/// The log directories under a data directory: `DIR/audit` (one node's data
/// directory) and `DIR/*/audit` (a devnet with one directory per node).
pub fn find_logs(data_dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let mut found = Vec::new();
    let own = data_dir.join("audit");
    if own.join(ENTRIES_FILE).is_file() {
        found.push(own);
    }
    let listing =
        std::fs::read_dir(data_dir).map_err(io(format!("list {}", data_dir.display())))?;
    let mut children: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path().join("audit")))
        .filter(|p| p.join(ENTRIES_FILE).is_file())
        .collect();
    children.sort();
    found.extend(children);
    if found.is_empty() {
        return Err(BundleError::NoLogs(data_dir.display().to_string()));
    }
    Ok(found)
}

/// The log id a log directory's checkpoints name.
fn log_id_of(dir: &Path) -> Result<String, BundleError> {
    let path = dir.join(CHECKPOINTS_FILE);
    let cps = parse_checkpoints(&read(&path)?).map_err(|e| BundleError::BadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    cps.first()
        .map(|c| c.checkpoint.log_id.clone())
        .ok_or_else(|| BundleError::BadFile {
            path: path.display().to_string(),
            reason: "no checkpoint yet: let the node run a few seconds, or stop it".into(),
        })
}

/// Exports every log under `data_dir` (see [`find_logs`]) into the bundle
/// directory `out`, with `keys.json`. Logs may be written to while this runs:
/// each is copied as a consistent snapshot ([`crate::file::export`]).
pub fn export_bundle(data_dir: &Path, out: &Path) -> Result<Vec<ExportedLog>, BundleError> {
    let mut keys = BTreeMap::new();
    let mut done = Vec::new();
    for dir in find_logs(data_dir)? {
        let log_id = log_id_of(&dir)?;
        if log_id.is_empty()
            || log_id.starts_with('.')
            || log_id.contains(['/', '\\'])
            || keys.contains_key(&log_id)
        {
            return Err(BundleError::BadFile {
                path: dir.display().to_string(),
                reason: format!("log id {log_id:?} is not usable as a unique directory name"),
            });
        }
        let key_path = dir.join(PUBLIC_KEY_FILE);
        let public_key = String::from_utf8_lossy(&read(&key_path)?)
            .trim()
            .to_string();
        let (entry_bytes, checkpoint_bytes) = export(&dir, out.join(&log_id))?;
        keys.insert(log_id.clone(), public_key.clone());
        done.push(ExportedLog {
            log_id,
            entry_bytes,
            checkpoint_bytes,
            public_key,
        });
    }
    let path = out.join(KEYS_FILE);
    let json = serde_json::to_vec_pretty(&keys).map_err(|e| BundleError::BadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(&path, json).map_err(io(format!("write {}", path.display())))?;
    Ok(done)
}

/// Reads a keys file: a JSON object of log id to hex Ed25519 public key.
pub fn read_keys(path: &Path) -> Result<BTreeMap<String, [u8; 32]>, BundleError> {
    let bad = |reason: String| BundleError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&read(path)?).map_err(|e| bad(e.to_string()))?;
    map.into_iter()
        .map(|(log, hex_key)| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut key)
                .map_err(|_| bad(format!("key of {log} is not 64 hex digits")))?;
            Ok((log, key))
        })
        .collect()
}

/// The logs of a bundle: sub-directories holding an entries file, by name.
pub fn bundle_logs(bundle: &Path) -> Result<Vec<String>, BundleError> {
    let listing = std::fs::read_dir(bundle).map_err(io(format!("list {}", bundle.display())))?;
    let mut logs: Vec<String> = listing
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(ENTRIES_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    logs.sort();
    if logs.is_empty() {
        return Err(BundleError::NoLogs(bundle.display().to_string()));
    }
    Ok(logs)
}

/// What one log's verification established.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogVerdict {
    /// Log id.
    pub log_id: String,
    /// Chain, tree and checkpoint summary.
    pub report: Report,
    /// What the semantic checks covered.
    pub stats: AuditStats,
    /// Entries whose inclusion proof in the newest checkpoint verified.
    pub included: u64,
    /// A kept checkpoint proven consistent with the newest: (old size, new size).
    pub consistent_with_kept: Option<(u64, u64)>,
}

/// Verifies one log of a bundle: everything [`crate::verify_with`] checks
/// with an [`Auditor`], an inclusion proof for every entry covered by the
/// newest checkpoint, and, given a checkpoint the auditor `kept` from an
/// earlier export, a consistency proof from it to the newest checkpoint.
pub fn verify_log(
    bundle: &Path,
    log_id: &str,
    key: [u8; 32],
    kept: Option<&SignedCheckpoint>,
) -> Result<LogVerdict, BundleError> {
    let dir = bundle.join(log_id);
    let entries = read(&dir.join(ENTRIES_FILE))?;
    let cp_path = dir.join(CHECKPOINTS_FILE);
    let checkpoints = parse_checkpoints(&read(&cp_path)?).map_err(|source| BundleError::Log {
        log: log_id.into(),
        source,
    })?;
    if let Some(other) = checkpoints.iter().find(|c| c.checkpoint.log_id != log_id) {
        return Err(BundleError::Log {
            log: log_id.into(),
            source: VerifyError::MixedLogIds {
                expected: log_id.into(),
                found: other.checkpoint.log_id.clone(),
            },
        });
    }
    let mut auditor = Auditor::new();
    let (report, leaves) = verify_with_leaves(&entries, &checkpoints, &[key], &mut auditor)
        .map_err(|source| BundleError::Log {
            log: log_id.into(),
            source,
        })?;
    let proof_err = |reason: String| BundleError::Proof {
        log: log_id.into(),
        reason,
    };
    let newest = checkpoints.iter().max_by_key(|c| c.checkpoint.tree_size);
    let mut included = 0;
    if let Some(newest) = newest {
        let size = newest.checkpoint.tree_size;
        let covered: Vec<Hash> = leaves.iter().take(size as usize).copied().collect();
        let tree = FullTree::new(covered);
        for (i, leaf) in leaves.iter().take(size as usize).enumerate() {
            let i = i as u64;
            let proof = tree
                .inclusion_proof(i)
                .map_err(|e| proof_err(format!("entry {i}: {e}")))?;
            merkle::verify_inclusion(leaf, i, size, &proof, &newest.checkpoint.root_hash)
                .map_err(|e| proof_err(format!("entry {i}: inclusion proof: {e}")))?;
            included += 1;
        }
    }
    let consistent_with_kept = match kept {
        None => None,
        Some(old) => Some(check_kept(log_id, key, old, newest, &leaves)?),
    };
    Ok(LogVerdict {
        log_id: log_id.into(),
        report,
        stats: auditor.stats().clone(),
        included,
        consistent_with_kept,
    })
}

/// Proves that the log the auditor saw at checkpoint `old` is a prefix of
/// the log signed by `newest` (nothing removed or rewritten).
fn check_kept(
    log_id: &str,
    key: [u8; 32],
    old: &SignedCheckpoint,
    newest: Option<&SignedCheckpoint>,
    leaves: &[Hash],
) -> Result<(u64, u64), BundleError> {
    let err = |reason: String| BundleError::Proof {
        log: log_id.into(),
        reason: format!("kept checkpoint: {reason}"),
    };
    old.verify(&[key])
        .map_err(|e| err(format!("signature: {e}")))?;
    if old.checkpoint.log_id != log_id {
        return Err(err(format!("it is for log {}", old.checkpoint.log_id)));
    }
    let newest = newest.ok_or_else(|| err("the export has no checkpoint".into()))?;
    let (m, n) = (old.checkpoint.tree_size, newest.checkpoint.tree_size);
    if m > n {
        return Err(err(format!(
            "it covers {m} entries, the newest checkpoint only {n}: the log was truncated"
        )));
    }
    let proof =
        merkle::consistency_proof(&leaves[..n as usize], m, n).map_err(|e| err(e.to_string()))?;
    merkle::verify_consistency(
        m,
        n,
        &old.checkpoint.root_hash,
        &newest.checkpoint.root_hash,
        &proof,
    )
    .map_err(|e| {
        err(format!(
            "no consistency from size {m} to {n} ({e}): the first {m} entries were rewritten"
        ))
    })?;
    Ok((m, n))
}

/// One problem found by [`cross_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// The signer log.
    pub log_id: String,
    /// The entry in it.
    pub index: u64,
    /// The request.
    pub request_id: String,
    /// What the coordinator's log lacks.
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entry {}: request {}: {}",
            self.log_id, self.index, self.request_id, self.problem
        )
    }
}

fn parse_entries(path: &Path) -> Result<Vec<Entry>, BundleError> {
    let data = read(path)?;
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| BundleError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

#[derive(Default)]
struct CoordinatorView {
    /// request id -> (key id, request hash, message hash).
    requests: HashMap<String, (String, Hash, Hash)>,
    /// request id -> signer sets (names) of its sessions.
    sessions: HashMap<String, Vec<BTreeSet<String>>>,
    /// key id -> participants.
    keys: HashMap<String, Vec<String>>,
}

/// Compares the coordinator's log with every signer's log of a bundle: each
/// contribution a signer recorded must match a request the coordinator
/// recorded (same request hash) and a signing session of that request whose
/// signer set is the one the signer contributed to and includes it. Run it
/// after [`verify_log`] accepted every log. Returns what does not match.
pub fn cross_check(bundle: &Path, coordinator: &str) -> Result<Vec<Finding>, BundleError> {
    let mut view = CoordinatorView::default();
    for e in parse_entries(&bundle.join(coordinator).join(ENTRIES_FILE))? {
        match e.event {
            Event::SignRequest {
                request_id,
                key_id,
                request_hash,
                message_hash,
                ..
            } => {
                view.requests
                    .insert(request_id, (key_id, request_hash, message_hash));
            }
            Event::SigningSession {
                request_id,
                signers,
                ..
            } => view
                .sessions
                .entry(request_id)
                .or_default()
                .push(signers.into_iter().collect()),
            Event::KeyCreated {
                key_id,
                participants,
                ..
            } => {
                view.keys.insert(key_id, participants);
            }
            _ => {}
        }
    }
    let mut findings = Vec::new();
    for log in bundle_logs(bundle)?
        .into_iter()
        .filter(|l| l != coordinator)
    {
        for e in parse_entries(&bundle.join(&log).join(ENTRIES_FILE))? {
            let Event::Contribution {
                request_id,
                key_id,
                request_hash,
                message_hash,
                signers,
                ..
            } = e.event
            else {
                continue;
            };
            let mut finding = |problem: String| {
                findings.push(Finding {
                    log_id: log.clone(),
                    index: e.index,
                    request_id: request_id.clone(),
                    problem,
                })
            };
            match view.requests.get(&request_id) {
                None => {
                    finding("the coordinator's log has no such request".into());
                    continue;
                }
                Some((_, h, _)) if h != &request_hash => {
                    finding("the coordinator's log records another request under this id".into());
                    continue;
                }
                Some((k, _, _)) if k != &key_id => {
                    finding(format!(
                        "the coordinator's log has this request for key {k}"
                    ));
                    continue;
                }
                Some((_, _, m)) if m != &message_hash => {
                    finding("the signer signed another message than the request's".into());
                    continue;
                }
                Some(_) => {}
            }
            let Some(participants) = view.keys.get(&key_id) else {
                finding(format!("the coordinator's log has no key {key_id}"));
                continue;
            };
            let names: Option<BTreeSet<String>> = signers
                .iter()
                .map(|i| {
                    let canonical = i.len() == 1 || !i.starts_with('0');
                    i.bytes()
                        .all(|b| b.is_ascii_digit())
                        .then(|| i.parse::<usize>().ok())
                        .flatten()
                        .filter(|_| canonical)
                        .and_then(|i| participants.get(i).cloned())
                })
                .collect();
            let Some(names) = names else {
                finding(format!(
                    "signer set {signers:?} is not in the key's participants"
                ));
                continue;
            };
            if !names.contains(&log) {
                finding(format!(
                    "this signer is not in the signer set {names:?} it recorded"
                ));
                continue;
            }
            let sessions = view.sessions.get(&request_id).map(Vec::as_slice);
            if !sessions.unwrap_or(&[]).contains(&names) {
                finding(format!(
                    "the coordinator's log has no signing session with signers {names:?}"
                ));
            }
        }
    }
    Ok(findings)
}
