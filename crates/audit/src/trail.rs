//! A node's audit trail: its [`FileLog`] behind a lock, the key that signs
//! its checkpoints, and the published public key next to it.
//!
//! The coordinator and every signer node keep one. A log directory holds
//! `entries.jsonl`, `checkpoints.jsonl` and `checkpoint-key.pub` (the hex
//! Ed25519 public key auditors trust); with no HSM the software checkpoint
//! key is `checkpoint-key` (hex seed, mode 0600). Every record is durable
//! before [`Trail::record`] returns `Ok`, so callers fail closed on `Err`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::checkpoint::{CheckpointSigner, Ed25519Signer, SignedCheckpoint};
use crate::event::{Entry, Event};
use crate::file::FileLog;
use crate::merkle::Hash;
use crate::verify::EventCheck;
use crate::{Error, Result};

/// File of the software checkpoint key (hex Ed25519 seed), when no HSM holds it.
pub const KEY_FILE: &str = "checkpoint-key";
/// File of the published checkpoint public key (hex).
pub const PUBLIC_KEY_FILE: &str = "checkpoint-key.pub";

/// A checkpoint signer that can be shared between threads.
pub type SharedSigner = Box<dyn CheckpointSigner + Send + Sync>;

struct State {
    log: FileLog,
    /// Document hash of the last policy version recorded.
    policy: Option<Hash>,
    /// The last policy version recorded: its document and signed update.
    policy_doc: Option<(String, Option<String>)>,
    /// Time of the last entry: entry times never go back, even if the
    /// clock does (auditors require it).
    last_time: i64,
    /// Keys the log recorded the creation of.
    keys: HashSet<String>,
}

/// A node's audit log with its checkpoint key (see the module docs).
pub struct Trail {
    dir: PathBuf,
    state: Mutex<State>,
    signer: SharedSigner,
    /// Refuse records once the entries file holds this many bytes.
    limit: Option<u64>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail")
            .field("dir", &self.dir)
            .field("public_key", &hex::encode(self.signer.public_key()))
            .finish()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// Loads the software checkpoint key of `dir`, creating it (mode 0600) on first use.
fn software_key(dir: &Path) -> Result<Ed25519Signer> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path).map(Zeroizing::new) {
        Ok(text) => {
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|_| Error::Io {
                context: format!("read {}", path.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a 64-hex-digit Ed25519 seed",
                ),
            })?;
            Ok(Ed25519Signer::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
            let text = Zeroizing::new(hex::encode(seed.as_ref()));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(&path)
                .map_err(io(format!("create {}", path.display())))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io(format!("write {}", path.display())))?;
            Ok(Ed25519Signer::from_seed(&seed))
        }
        Err(e) => Err(io(format!("read {}", path.display()))(e)),
    }
}

/// What a node needs to know about its log when it reopens it, gathered
/// while [`FileLog`] re-verifies the entries.
#[derive(Default)]
struct Scan {
    /// Document hash of the last `PolicyVersion` entry.
    policy: Option<Hash>,
    /// Its document and signed update.
    policy_doc: Option<(String, Option<String>)>,
    /// Time of the last entry (0 for an empty log).
    time: i64,
    /// Keys with a `KeyCreated` entry.
    keys: HashSet<String>,
    /// Entries from this index on are kept in `tail`.
    tail_from: u64,
    /// The entries from `tail_from` on.
    tail: Vec<Entry>,
}

impl EventCheck for Scan {
    fn check(&mut self, entry: &Entry) -> std::result::Result<(), String> {
        self.time = entry.time;
        if entry.index >= self.tail_from {
            self.tail.push(entry.clone());
        }
        match &entry.event {
            Event::PolicyVersion {
                document_hash,
                document,
                update,
                ..
            } => {
                self.policy = Some(*document_hash);
                self.policy_doc = Some((document.clone(), update.clone()));
            }
            Event::KeyCreated { key_id, .. } => {
                self.keys.insert(key_id.clone());
            }
            _ => {}
        }
        Ok(())
    }
}

impl Trail {
    /// Opens (or creates) the log `log_id` in `dir`. `signer` is the HSM
    /// audit key when one is configured; `None` uses (or creates) the
    /// software key in `dir`. Writes the public key to [`PUBLIC_KEY_FILE`],
    /// cuts an incomplete last line left by a crash, and checkpoints entries
    /// that a crash left without a checkpoint.
    pub fn open(dir: impl AsRef<Path>, log_id: &str, signer: Option<SharedSigner>) -> Result<Self> {
        Self::open_with_tail(dir, log_id, signer, u64::MAX).map(|(t, _)| t)
    }

    /// Like [`Trail::open`], and also returns the entries from index `from`
    /// on, read while the log is verified (a node whose store lags its log
    /// after a crash applies them again).
    pub fn open_with_tail(
        dir: impl AsRef<Path>,
        log_id: &str,
        signer: Option<SharedSigner>,
        from: u64,
    ) -> Result<(Self, Vec<Entry>)> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let signer: SharedSigner = match signer {
            Some(s) => s,
            None => Box::new(software_key(dir)?),
        };
        let pub_path = dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&pub_path, format!("{}\n", hex::encode(signer.public_key())))
            .map_err(io(format!("write {}", pub_path.display())))?;
        let mut seen = Scan {
            tail_from: from,
            ..Scan::default()
        };
        let log = FileLog::open_recover_with(dir, log_id, &mut seen)?;
        let Scan {
            policy,
            policy_doc,
            time: last_time,
            keys,
            tail,
            ..
        } = seen;
        let trail = Trail {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                log,
                policy,
                policy_doc,
                last_time,
                keys,
            }),
            signer,
            limit: None,
        };
        // A restart always leaves a signed tree head of everything before it.
        trail.checkpoint_now()?;
        Ok((trail, tail))
    }

    /// Refuses further records once the entries file holds `limit` bytes
    /// (so a node stops taking work before its disk fills, instead of
    /// failing half-way; checkpoints are still written).
    pub fn with_byte_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The hex public key that verifies this log's checkpoints.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signer.public_key())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the file half-written
        // (appends roll back), so the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `events` durably, in order, with one fsync. On `Err` none was
    /// appended: the caller must not take the step they describe.
    pub fn record(&self, events: Vec<Event>) -> Result<()> {
        let mut st = self.lock();
        let time = now_ms().max(st.last_time);
        if let Some(limit) = self.limit {
            let bytes = st.log.entries_bytes();
            if bytes >= limit {
                return Err(Error::Full { bytes, limit });
            }
        }
        let written = st.log.append_batch(events.into_iter().map(|e| (time, e)))?;
        st.last_time = time;
        for e in &written {
            match &e.event {
                Event::PolicyVersion {
                    document_hash,
                    document,
                    update,
                    ..
                } => {
                    st.policy = Some(*document_hash);
                    st.policy_doc = Some((document.clone(), update.clone()));
                }
                Event::KeyCreated { key_id, .. } => {
                    st.keys.insert(key_id.clone());
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records a `PolicyVersion` event unless it is the policy the log
    /// recorded last (same document hash). Returns whether it was recorded.
    pub fn record_policy(&self, event: Event) -> Result<bool> {
        let Event::PolicyVersion { document_hash, .. } = &event else {
            return Ok(false);
        };
        if self.lock().policy == Some(*document_hash) {
            return Ok(false);
        }
        self.record(vec![event])?;
        Ok(true)
    }

    /// The last policy version the log recorded: its document and signed
    /// update (JSON).
    pub fn last_policy(&self) -> Option<(String, Option<String>)> {
        self.lock().policy_doc.clone()
    }

    /// Document hash of the last policy version the log recorded.
    pub fn last_policy_hash(&self) -> Option<Hash> {
        self.lock().policy
    }

    /// Time (Unix ms) of the last entry; the next entry's time is not
    /// earlier, whatever the clock says.
    pub fn last_time_ms(&self) -> i64 {
        self.lock().last_time
    }

    /// Whether the log recorded the creation of key `key_id`.
    pub fn has_key(&self, key_id: &str) -> bool {
        self.lock().keys.contains(key_id)
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.lock().log.log().len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Signs and appends a checkpoint if entries were added since the last
    /// one (or none exists yet). Returns it, or `None` if nothing changed.
    pub fn checkpoint_now(&self) -> Result<Option<SignedCheckpoint>> {
        let mut st = self.lock();
        let size = st.log.log().len();
        if st.log.checkpointed() == Some(size) {
            return Ok(None);
        }
        let time = now_ms().max(st.last_time);
        let cp = st.log.checkpoint(self.signer.as_ref(), time)?;
        Ok(Some(cp))
    }
}
