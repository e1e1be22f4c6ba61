//! The offline verifier: replays an exported log (entry lines and signed
//! checkpoints) with nothing but the trusted checkpoint public keys.
//!
//! It checks, in order: every checkpoint signature and that all checkpoints
//! name one log; then entry by entry the JSON form (strict, canonical), the
//! index, the size bounds, the hash chain, the per-event hooks
//! ([`EventCheck`]), and the Merkle root at every checkpoint size; then the
//! hooks' end-of-log check ([`EventCheck::finish`]). The first failure is
//! returned, naming the entry by index wherever the data allows.

use crate::auditor::RiskFinding;
use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::event::{BoundsError, Entry};
use crate::merkle::{CompactTree, Hash};

/// Longest accepted line (entry or checkpoint) in bytes, without the newline.
pub const MAX_LINE: usize = 8 * 1024 * 1024;

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The line is not a JSON audit entry.
    #[error("not a valid entry: {0}")]
    Malformed(String),
    /// The line parses but is not byte-for-byte the canonical JSON of its
    /// value (extra whitespace, key order, escapes, hex case ...).
    #[error("entry line is not in canonical form")]
    NonCanonical,
    /// The line is longer than [`MAX_LINE`].
    #[error("entry line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// The data ends in the middle of this entry (no final newline).
    #[error("log is truncated in the middle of this entry")]
    Truncated,
    /// The entry's `index` is not its position.
    #[error("entry has index {found}, expected its position")]
    IndexMismatch {
        /// The index recorded in the entry.
        found: u64,
    },
    /// A field is outside the size bounds.
    #[error("{0}")]
    OutOfBounds(BoundsError),
    /// `prev_hash` does not match the previous entry's hash (or zeros for entry 0).
    #[error("prev_hash does not match the hash of the previous entry")]
    PrevHashMismatch,
    /// The entry was altered: its hash no longer matches the `prev_hash`
    /// that the next entry recorded for it.
    #[error("entry was altered: its hash differs from the prev_hash recorded by the next entry")]
    Altered,
    /// The entry's chain link to the next entry is broken and the data cannot
    /// tell which of the two was altered (the next entry is the last one).
    #[error("hash chain broken between this entry and the next (one of them was altered)")]
    ChainBroken,
    /// Adding this entry does not give the signed root of a checkpoint.
    #[error("entry does not match the signed checkpoint of tree size {tree_size}")]
    NotInCheckpoint {
        /// Size of the checkpoint.
        tree_size: u64,
    },
    /// A per-event check ([`EventCheck`]) refused the entry.
    #[error("event check failed: {0}")]
    Rejected(String),
    /// The auditor's risk checks refused a risk event: a risk decision the
    /// engine does not recompute, out of the engine's order, or a risk tree,
    /// freeze or review that does not hold (see [`RiskFinding`]). Boxed:
    /// a finding quotes values, and every verification result carries the
    /// size of the largest error.
    #[error("risk check failed: {0}")]
    Risk(Box<RiskFinding>),
}

/// Why a log did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The data is not an audit log at all (empty, binary, or the first line is
    /// not an entry).
    #[error("not an audit log: {0}")]
    NotALog(String),
    /// The first bad entry, by index.
    #[error("entry {index}: {reason}")]
    BadEntry {
        /// Index (position, from 0) of the entry.
        index: u64,
        /// What is wrong with it.
        reason: EntryError,
    },
    /// A checkpoint does not verify.
    #[error("checkpoint #{position} (tree size {tree_size}): {reason}")]
    BadCheckpoint {
        /// Position of the checkpoint in the list given.
        position: usize,
        /// Its tree size.
        tree_size: u64,
        /// What is wrong with it.
        reason: CheckpointError,
    },
    /// Checkpoints name different logs.
    #[error("checkpoints name different logs: {expected:?} and {found:?}")]
    MixedLogIds {
        /// The first checkpoint's log id.
        expected: String,
        /// A different log id.
        found: String,
    },
    /// Entries `first_unconfirmed..tree_size` do not give the signed root of
    /// the checkpoint of size `tree_size` (entries before `first_unconfirmed`
    /// are confirmed by an earlier checkpoint).
    #[error("entries {first_unconfirmed}..{tree_size} do not match the signed checkpoint root")]
    CheckpointMismatch {
        /// Size of the checkpoint.
        tree_size: u64,
        /// First entry not covered by an earlier matching checkpoint.
        first_unconfirmed: u64,
    },
    /// The log has fewer entries than a signed checkpoint covers: the tail was
    /// removed, starting at entry `first_missing`.
    #[error(
        "log truncated: entry {first_missing} is missing (a checkpoint covers {tree_size} entries)"
    )]
    Truncated {
        /// Index of the first missing entry (= number of entries present).
        first_missing: u64,
        /// Size of the largest checkpoint.
        tree_size: u64,
    },
    /// A checkpoint's time does not fit the log: earlier than an entry it
    /// covers, or than the checkpoint of a smaller tree.
    #[error("checkpoint of tree size {tree_size}: {reason}")]
    CheckpointTime {
        /// Its tree size.
        tree_size: u64,
        /// What does not fit.
        reason: String,
    },
    /// A line of a checkpoints file is not a signed checkpoint.
    #[error("checkpoints file line {line}: {reason}")]
    BadCheckpointLine {
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Hook for per-event checks that need more than the log itself (approval
/// signatures, policy re-evaluation, signatures against wallet keys). Called
/// once per entry, in order, after the entry's chain link has been checked.
pub trait EventCheck {
    /// Checks one entry; an `Err` names why it is refused.
    fn check(&mut self, entry: &Entry) -> Result<(), String>;

    /// Checks one entry, with a typed reason naming the entry it concerns:
    /// what the verifier calls. By default [`EventCheck::check`], its reason
    /// as [`EntryError::Rejected`] of this entry; a check with typed findings
    /// (the [`crate::Auditor`]'s risk checks) overrides it, and may name an
    /// earlier entry whose problem only this one revealed (a risk decision
    /// logged ahead of its turn is recomputed when its turn comes).
    fn check_entry(&mut self, entry: &Entry) -> Result<(), VerifyError> {
        self.check(entry).map_err(|m| VerifyError::BadEntry {
            index: entry.index,
            reason: EntryError::Rejected(m),
        })
    }

    /// Called once after the last entry was checked (and the log found
    /// complete up to its newest checkpoint): a problem only the whole log
    /// shows, such as a risk decision number that never came. The error
    /// names the entry it concerns.
    fn finish(&mut self) -> Result<(), VerifyError> {
        Ok(())
    }
}

/// An [`EventCheck`] that accepts everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoChecks;

impl EventCheck for NoChecks {
    fn check(&mut self, _entry: &Entry) -> Result<(), String> {
        Ok(())
    }
}

impl<F: FnMut(&Entry) -> Result<(), String>> EventCheck for F {
    fn check(&mut self, entry: &Entry) -> Result<(), String> {
        self(entry)
    }
}

/// Summary of a log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Number of entries.
    pub entries: u64,
    /// Number of checkpoints verified.
    pub checkpoints: usize,
    /// The log id named by the checkpoints, if any.
    pub log_id: Option<String>,
    /// Merkle root of all entries.
    pub root_hash: Hash,
    /// Hash of the last entry.
    pub head_hash: Hash,
    /// Largest checkpoint tree size (0 without checkpoints).
    pub anchored: u64,
    /// Entries after the largest checkpoint: chained, but not covered by a
    /// signature, so a truncation among them would go unnoticed.
    pub unanchored: u64,
}

/// Splits `data` into lines: (bytes without the newline, terminated?).
fn lines(data: &[u8]) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(p) => {
                out.push((&rest[..p], true));
                rest = &rest[p + 1..];
            }
            None => {
                out.push((rest, false));
                rest = &[];
            }
        }
    }
    out
}

/// Parses one entry line strictly: JSON of an [`Entry`], byte-for-byte canonical.
fn parse_line(line: &[u8], terminated: bool) -> Result<Entry, EntryError> {
    if line.len() > MAX_LINE {
        return Err(EntryError::TooLong);
    }
    let entry: Entry = match serde_json::from_slice(line) {
        Ok(e) => e,
        Err(e) if !terminated => {
            return Err(if e.is_eof() {
                EntryError::Truncated
            } else {
                EntryError::Malformed(e.to_string())
            })
        }
        Err(e) => return Err(EntryError::Malformed(e.to_string())),
    };
    if !terminated {
        return Err(EntryError::Truncated);
    }
    let canonical = serde_json::to_vec(&entry).map_err(|e| EntryError::Malformed(e.to_string()))?;
    if canonical != line {
        return Err(EntryError::NonCanonical);
    }
    Ok(entry)
}

/// Parses a checkpoints file: one compact JSON [`SignedCheckpoint`] per line.
/// Signatures are not checked here; [`verify()`] checks them.
pub fn parse_checkpoints(data: &[u8]) -> Result<Vec<SignedCheckpoint>, VerifyError> {
    let mut out = Vec::new();
    for (i, (line, terminated)) in lines(data).into_iter().enumerate() {
        let bad = |reason: String| VerifyError::BadCheckpointLine {
            line: i + 1,
            reason,
        };
        if line.len() > MAX_LINE {
            return Err(bad("line too long".into()));
        }
        if !terminated {
            return Err(bad("truncated (no final newline)".into()));
        }
        let cp: SignedCheckpoint = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let canonical = serde_json::to_vec(&cp).map_err(|e| bad(e.to_string()))?;
        if canonical != line {
            return Err(bad("not in canonical form".into()));
        }
        out.push(cp);
    }
    Ok(out)
}

/// Verifies a log with no per-event checks. See [`verify_with`].
pub fn verify(
    entries: &[u8],
    checkpoints: &[SignedCheckpoint],
    trusted_public_keys: &[[u8; 32]],
) -> Result<Report, VerifyError> {
    verify_with(entries, checkpoints, trusted_public_keys, &mut NoChecks)
}

/// Verifies a log: `entries` is the entries file (JSON lines), `checkpoints`
/// the signed checkpoints (any order), `trusted_public_keys` the published
/// Ed25519 checkpoint keys; `checks` is called on every entry.
pub fn verify_with(
    entries: &[u8],
    checkpoints: &[SignedCheckpoint],
    trusted_public_keys: &[[u8; 32]],
    checks: &mut dyn EventCheck,
) -> Result<Report, VerifyError> {
    let (report, _) = replay(
        entries,
        checkpoints,
        Some(trusted_public_keys),
        checks,
        false,
    )?;
    Ok(report)
}

/// Like [`verify_with`], and also returns every entry's Merkle leaf hash
/// (for inclusion and consistency proofs).
pub fn verify_with_leaves(
    entries: &[u8],
    checkpoints: &[SignedCheckpoint],
    trusted_public_keys: &[[u8; 32]],
    checks: &mut dyn EventCheck,
) -> Result<(Report, Vec<Hash>), VerifyError> {
    let (report, kept) = replay(
        entries,
        checkpoints,
        Some(trusted_public_keys),
        checks,
        true,
    )?;
    Ok((report, kept.into_iter().map(|(_, leaf)| leaf).collect()))
}

/// The verifier's core. With `trusted == None` the checkpoint signatures are
/// checked against their own keys (used when reopening one's own log). With
/// `keep_leaves`, the leaf hashes are returned too.
pub(crate) fn replay(
    entries: &[u8],
    checkpoints: &[SignedCheckpoint],
    trusted: Option<&[[u8; 32]]>,
    checks: &mut dyn EventCheck,
    keep_leaves: bool,
) -> Result<(Report, Vec<(Hash, Hash)>), VerifyError> {
    // 1. Checkpoints: signatures and a single log id.
    for (position, cp) in checkpoints.iter().enumerate() {
        let own = [cp.public_key];
        cp.verify(trusted.unwrap_or(&own))
            .map_err(|reason| VerifyError::BadCheckpoint {
                position,
                tree_size: cp.checkpoint.tree_size,
                reason,
            })?;
    }
    let log_id = checkpoints.first().map(|c| c.checkpoint.log_id.clone());
    if let Some(id) = &log_id {
        if let Some(other) = checkpoints.iter().find(|c| &c.checkpoint.log_id != id) {
            return Err(VerifyError::MixedLogIds {
                expected: id.clone(),
                found: other.checkpoint.log_id.clone(),
            });
        }
    }
    let mut order: Vec<usize> = (0..checkpoints.len()).collect();
    order.sort_by_key(|&i| checkpoints[i].checkpoint.tree_size);
    // Tree heads of a growing log are signed in order.
    for pair in order.windows(2) {
        let (a, b) = (
            &checkpoints[pair[0]].checkpoint,
            &checkpoints[pair[1]].checkpoint,
        );
        if b.time < a.time {
            return Err(VerifyError::CheckpointTime {
                tree_size: b.tree_size,
                reason: format!(
                    "signed at {} ms, before the checkpoint of size {} at {} ms",
                    b.time, a.tree_size, a.time
                ),
            });
        }
    }
    let anchored = order
        .last()
        .map(|&i| checkpoints[i].checkpoint.tree_size)
        .unwrap_or(0);

    // 2. Entries.
    if entries.is_empty() {
        return Err(VerifyError::NotALog("the entries file is empty".into()));
    }
    let lines = lines(entries);
    let mut tree = CompactTree::new();
    let mut prev: Hash = [0u8; 32];
    let mut next_cp = 0usize;
    let mut confirmed = 0u64;
    let mut kept = Vec::new();

    // Checkpoints of size 0 must carry the empty root.
    if let Some(size) = next_mismatch(&order, checkpoints, &tree, &mut next_cp, &mut confirmed) {
        return Err(VerifyError::CheckpointMismatch {
            tree_size: size,
            first_unconfirmed: 0,
        });
    }

    for (pos, &(line, terminated)) in lines.iter().enumerate() {
        let index = pos as u64;
        let bad = |reason| VerifyError::BadEntry { index, reason };
        let entry = match parse_line(line, terminated) {
            Ok(e) => e,
            Err(EntryError::Malformed(m)) if pos == 0 => {
                return Err(VerifyError::NotALog(format!(
                    "the first line is not an audit entry: {m}"
                )))
            }
            Err(e) => return Err(bad(e)),
        };
        if entry.index != index {
            return Err(bad(EntryError::IndexMismatch { found: entry.index }));
        }
        entry
            .event
            .validate()
            .map_err(|e| bad(EntryError::OutOfBounds(e)))?;
        let (h, leaf) = entry.hashes();
        if entry.prev_hash != prev {
            return Err(blame(&lines, pos, &h, confirmed));
        }
        checks.check_entry(&entry)?;
        tree.push(leaf);
        prev = h;
        if keep_leaves {
            kept.push((h, leaf));
        }
        let before = confirmed;
        let first_cp = next_cp;
        if let Some(size) = next_mismatch(&order, checkpoints, &tree, &mut next_cp, &mut confirmed)
        {
            let reason = EntryError::NotInCheckpoint { tree_size: size };
            return Err(if size == before + 1 {
                // Only this entry is not yet covered by a matching checkpoint.
                bad(reason)
            } else if !next_link_ok(&lines, pos, &h) {
                // The next entry recorded a different hash for this one too.
                bad(EntryError::Altered)
            } else {
                VerifyError::CheckpointMismatch {
                    tree_size: size,
                    first_unconfirmed: before,
                }
            });
        }
        // A tree head signed before the entries it covers were written is
        // not what it claims to be.
        for &ci in &order[first_cp..next_cp] {
            let cp = &checkpoints[ci].checkpoint;
            if cp.time < entry.time {
                return Err(VerifyError::CheckpointTime {
                    tree_size: cp.tree_size,
                    reason: format!(
                        "signed at {} ms, before entry {index} (the last it covers) at {} ms",
                        cp.time, entry.time
                    ),
                });
            }
        }
    }

    if anchored > tree.size() {
        return Err(VerifyError::Truncated {
            first_missing: tree.size(),
            tree_size: anchored,
        });
    }
    checks.finish()?;
    let report = Report {
        entries: tree.size(),
        checkpoints: checkpoints.len(),
        log_id,
        root_hash: tree.root(),
        head_hash: prev,
        anchored,
        unanchored: tree.size() - anchored,
    };
    Ok((report, kept))
}

/// Checks every checkpoint of the current tree size against the current
/// root; returns the size of the first mismatching one. Advances `next_cp`
/// and `confirmed` over the matching ones.
fn next_mismatch(
    order: &[usize],
    checkpoints: &[SignedCheckpoint],
    tree: &CompactTree,
    next_cp: &mut usize,
    confirmed: &mut u64,
) -> Option<u64> {
    while let Some(&ci) = order.get(*next_cp) {
        let cp = &checkpoints[ci].checkpoint;
        if cp.tree_size != tree.size() {
            break;
        }
        if cp.root_hash != tree.root() {
            return Some(cp.tree_size);
        }
        *confirmed = cp.tree_size;
        *next_cp += 1;
    }
    None
}

/// Whether the entry after `pos` exists, parses and records `hash_of_pos`
/// as its `prev_hash`. A missing next entry counts as "ok" (no evidence).
fn next_link_ok(lines: &[(&[u8], bool)], pos: usize, hash_of_pos: &Hash) -> bool {
    match lines.get(pos + 1) {
        None => true,
        Some(&(line, terminated)) => parse_line(line, terminated)
            .map(|n| &n.prev_hash == hash_of_pos)
            .unwrap_or(false),
    }
}

/// Decides which entry to name when the link into entry `pos` is broken.
///
/// If entry `pos` is intact (the entry after it recorded its hash), the
/// previous entry was altered; if that link is broken too, entry `pos` was
/// altered; if `pos` is the last entry, the data cannot tell, and the earlier
/// entry is named as the first that may be bad. An earlier entry already
/// covered by a matching checkpoint is known good, so `pos` is named.
fn blame(lines: &[(&[u8], bool)], pos: usize, hash_of_pos: &Hash, confirmed: u64) -> VerifyError {
    // Entry 0 has no predecessor; entries below `confirmed` match a signed root.
    if pos == 0 || confirmed >= pos as u64 {
        return VerifyError::BadEntry {
            index: pos as u64,
            reason: EntryError::PrevHashMismatch,
        };
    }
    match lines.get(pos + 1) {
        Some(&(line, terminated)) => {
            let next_ok = parse_line(line, terminated)
                .map(|n| &n.prev_hash == hash_of_pos)
                .unwrap_or(false);
            if next_ok {
                VerifyError::BadEntry {
                    index: pos as u64 - 1,
                    reason: EntryError::Altered,
                }
            } else {
                VerifyError::BadEntry {
                    index: pos as u64,
                    reason: EntryError::PrevHashMismatch,
                }
            }
        }
        None => VerifyError::BadEntry {
            index: pos as u64 - 1,
            reason: EntryError::ChainBroken,
        },
    }
}
