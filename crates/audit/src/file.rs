//! The durable, file-backed log writer.
//!
//! A log lives in a directory with two append-only files:
//! * `entries.jsonl`: one compact JSON [`Entry`] per line;
//! * `checkpoints.jsonl`: one compact JSON [`SignedCheckpoint`] per line.
//!
//! Every append is written and `fsync`ed before it returns `Ok`; if it cannot
//! be made durable it returns an error and the file is rolled back, so the
//! caller can fail closed. Reopening a directory re-verifies both files and
//! continues the chain. Exporting a log is copying these two files.
//!
//! One process must own a log directory at a time; the writer takes no lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{CheckpointSigner, SignedCheckpoint};
use crate::event::{Entry, Event};
use crate::log::Log;
use crate::verify::{parse_checkpoints, replay, EventCheck, NoChecks, VerifyError, MAX_LINE};
use crate::{Error, Result};

/// File name of the entries file inside a log directory.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// File name of the checkpoints file inside a log directory.
pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// One append-only file with rollback on failed writes.
#[derive(Debug)]
struct AppendFile {
    path: PathBuf,
    file: File,
    len: u64,
}

impl AppendFile {
    /// Opens (creating if needed) and reads the whole file.
    fn open(path: PathBuf) -> Result<(Self, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(format!("open {}", path.display())))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(io(format!("read {}", path.display())))?;
        let len = data.len() as u64;
        Ok((AppendFile { path, file, len }, data))
    }

    /// Cuts an unterminated last line, if `recover`; else reports it.
    fn handle_torn_tail(&mut self, data: &mut Vec<u8>, recover: bool) -> Result<()> {
        if data.is_empty() || data.ends_with(b"\n") {
            return Ok(());
        }
        let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if !recover {
            return Err(Error::TornTail {
                path: self.path.display().to_string(),
                offset: keep as u64,
            });
        }
        tracing::warn!(
            path = %self.path.display(),
            offset = keep,
            "cutting an incomplete last line left by an interrupted append"
        );
        self.truncate(keep as u64)?;
        data.truncate(keep);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(io(format!("truncate {}", self.path.display())))?;
        self.file
            .sync_all()
            .map_err(io(format!("fsync {}", self.path.display())))?;
        self.len = len;
        Ok(())
    }

    /// Writes `line` at the end and fsyncs. On failure, rolls back to the
    /// previous length; returns `Err(Poisoned)` if even that fails.
    fn append(&mut self, line: &[u8]) -> Result<()> {
        let written = self
            .file
            .write_all(line)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                let err = io(format!("append to {}", self.path.display()))(e);
                let old = self.len;
                if self.truncate(old).is_err() {
                    tracing::error!(path = %self.path.display(), "rollback after a failed append failed");
                    return Err(Error::Poisoned);
                }
                Err(err)
            }
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Makes newly created files' directory entries durable.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync directory {}", dir.display())))
}

/// A log persisted in a directory; every append is durable before it returns.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    entries: AppendFile,
    checkpoints: AppendFile,
    log: Log,
    poisoned: bool,
    /// Largest tree size checkpointed in the checkpoints file.
    checkpointed: Option<u64>,
}

impl FileLog {
    /// Opens or creates the log in `dir` named `log_id`. An existing log is
    /// re-verified (chain, indices, checkpoint roots and signatures, log id);
    /// a file ending in an incomplete line gives [`Error::TornTail`].
    pub fn open(dir: impl AsRef<Path>, log_id: &str) -> Result<Self> {
        Self::open_inner(dir.as_ref(), log_id, false, &mut NoChecks)
    }

    /// Like [`FileLog::open`], but first cuts an incomplete last line (an
    /// append interrupted by a crash, which was never acknowledged).
    pub fn open_recover(dir: impl AsRef<Path>, log_id: &str) -> Result<Self> {
        Self::open_inner(dir.as_ref(), log_id, true, &mut NoChecks)
    }

    /// Like [`FileLog::open_recover`], and hands every existing entry to
    /// `seen` during the one pass that re-verifies them (so a caller learns
    /// what the log holds without reading it again).
    pub fn open_recover_with(
        dir: impl AsRef<Path>,
        log_id: &str,
        seen: &mut dyn EventCheck,
    ) -> Result<Self> {
        Self::open_inner(dir.as_ref(), log_id, true, seen)
    }

    fn open_inner(
        dir: &Path,
        log_id: &str,
        recover: bool,
        seen: &mut dyn EventCheck,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
        let mut log = Log::new(log_id)?;
        let (mut entries, mut entry_data) = AppendFile::open(dir.join(ENTRIES_FILE))?;
        let (mut checkpoints, mut cp_data) = AppendFile::open(dir.join(CHECKPOINTS_FILE))?;
        sync_dir(dir)?;
        entries.handle_torn_tail(&mut entry_data, recover)?;
        checkpoints.handle_torn_tail(&mut cp_data, recover)?;
        let cps = parse_checkpoints(&cp_data)?;
        if let Some(other) = cps.iter().find(|c| c.checkpoint.log_id != log_id) {
            return Err(Error::Corrupt(VerifyError::MixedLogIds {
                expected: log_id.to_string(),
                found: other.checkpoint.log_id.clone(),
            }));
        }
        if entry_data.is_empty() {
            // Only checkpoints of the empty tree may exist (each still verified).
            let empty = crate::merkle::empty_root();
            for (position, cp) in cps.iter().enumerate() {
                cp.verify(&[cp.public_key])
                    .map_err(|reason| VerifyError::BadCheckpoint {
                        position,
                        tree_size: cp.checkpoint.tree_size,
                        reason,
                    })?;
                if cp.checkpoint.tree_size != 0 || cp.checkpoint.root_hash != empty {
                    return Err(Error::Corrupt(VerifyError::Truncated {
                        first_missing: 0,
                        tree_size: cp.checkpoint.tree_size,
                    }));
                }
            }
        } else {
            let (_, hashes) = replay(&entry_data, &cps, None, seen, true)?;
            for (h, leaf) in hashes {
                log.commit(h, leaf);
            }
        }
        Ok(FileLog {
            dir: dir.to_path_buf(),
            entries,
            checkpoints,
            log,
            poisoned: false,
            checkpointed: cps.iter().map(|c| c.checkpoint.tree_size).max(),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Largest tree size covered by a checkpoint in the file (`None`: none yet).
    pub fn checkpointed(&self) -> Option<u64> {
        self.checkpointed
    }

    /// Bytes in the entries file.
    pub fn entries_bytes(&self) -> u64 {
        self.entries.len
    }

    /// The in-memory core (sizes, roots, proofs).
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Appends an event at `time` (Unix ms). Returns only after the entry is
    /// written and fsynced; on any error nothing was appended.
    pub fn append(&mut self, time: i64, event: Event) -> Result<Entry> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let entry = self.log.prepare(time, event)?;
        let line = entry.to_json_line();
        if line.len() > MAX_LINE {
            return Err(Error::LineTooLong);
        }
        let (h, leaf) = entry.hashes();
        if let Err(e) = self.entries.append(&line) {
            if matches!(e, Error::Poisoned) {
                self.poisoned = true;
            }
            return Err(e);
        }
        self.log.commit(h, leaf);
        Ok(entry)
    }

    /// Appends several events with a single write and a single fsync (group
    /// commit). All or none are appended: on any error nothing was.
    pub fn append_batch(
        &mut self,
        events: impl IntoIterator<Item = (i64, Event)>,
    ) -> Result<Vec<Entry>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let mut entries = Vec::new();
        let mut hashes = Vec::new();
        let mut buf = Vec::new();
        let mut head = self.log.head_hash();
        for (time, event) in events {
            event.validate()?;
            let entry = Entry {
                index: self.log.len() + entries.len() as u64,
                time,
                prev_hash: head,
                event,
            };
            let line = entry.to_json_line();
            if line.len() > MAX_LINE {
                return Err(Error::LineTooLong);
            }
            let (h, leaf) = entry.hashes();
            head = h;
            buf.extend_from_slice(&line);
            hashes.push((h, leaf));
            entries.push(entry);
        }
        if entries.is_empty() {
            return Ok(entries);
        }
        if let Err(e) = self.entries.append(&buf) {
            if matches!(e, Error::Poisoned) {
                self.poisoned = true;
            }
            return Err(e);
        }
        for (h, leaf) in hashes {
            self.log.commit(h, leaf);
        }
        Ok(entries)
    }

    /// Signs a checkpoint of the current tree at `time` and appends it durably
    /// to the checkpoints file.
    pub fn checkpoint(
        &mut self,
        signer: &dyn CheckpointSigner,
        time: i64,
    ) -> Result<SignedCheckpoint> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let cp = self.log.checkpoint(signer, time)?;
        if let Err(e) = self.checkpoints.append(&cp.to_json_line()) {
            if matches!(e, Error::Poisoned) {
                self.poisoned = true;
            }
            return Err(e);
        }
        self.checkpointed = self.checkpointed.max(Some(cp.checkpoint.tree_size));
        Ok(cp)
    }
}

/// Cuts `data` after its last `\n` (drops an incomplete last line).
fn complete_lines(mut data: Vec<u8>) -> Vec<u8> {
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    data.truncate(keep);
    data
}

/// Copies the log in `src` (possibly being appended to by a live writer) to
/// `out` as a consistent snapshot for offline verification: the checkpoints
/// are read before the entries (so every checkpoint's entries are included),
/// and an incomplete last line of either file is left out. Both output files
/// are fsynced. Returns the number of bytes of (entries, checkpoints) written.
pub fn export(src: impl AsRef<Path>, out: impl AsRef<Path>) -> Result<(u64, u64)> {
    let (src, out) = (src.as_ref(), out.as_ref());
    let read = |name: &str| {
        let p = src.join(name);
        std::fs::read(&p).map_err(io(format!("read {}", p.display())))
    };
    let checkpoints = complete_lines(read(CHECKPOINTS_FILE)?);
    let entries = complete_lines(read(ENTRIES_FILE)?);
    std::fs::create_dir_all(out).map_err(io(format!("create {}", out.display())))?;
    for (name, data) in [(ENTRIES_FILE, &entries), (CHECKPOINTS_FILE, &checkpoints)] {
        let p = out.join(name);
        let mut f = File::create(&p).map_err(io(format!("create {}", p.display())))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("write {}", p.display())))?;
    }
    sync_dir(out)?;
    Ok((entries.len() as u64, checkpoints.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> Event {
        Event::RequestFailed {
            request_id: format!("r-{i}"),
            reason: "test".into(),
        }
    }

    /// A write that fails (here: the handle cannot write) is reported, the
    /// entry is not counted, and, as the rollback cannot truncate through
    /// that handle either, the writer refuses everything after it.
    #[test]
    fn a_failed_write_is_refused_and_poisons_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        log.append(1, event(0)).unwrap();
        let path = dir.path().join(ENTRIES_FILE);
        let before = std::fs::read(&path).unwrap();
        log.entries.file = File::open(&path).unwrap();
        let err = log.append(2, event(1)).unwrap_err();
        assert!(matches!(err, Error::Poisoned), "{err}");
        assert_eq!(log.log().len(), 1, "the failed entry is not counted");
        assert!(matches!(log.append(3, event(2)), Err(Error::Poisoned)));
        assert!(matches!(
            log.append_batch([(4, event(3))]),
            Err(Error::Poisoned)
        ));
        let signer = crate::Ed25519Signer::from_seed(&[1; 32]);
        assert!(matches!(log.checkpoint(&signer, 5), Err(Error::Poisoned)));
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
        // Reopened, the log holds exactly what was acknowledged.
        drop(log);
        let reopened = FileLog::open(dir.path(), "c").unwrap();
        assert_eq!(reopened.log().len(), 1);
    }
}
