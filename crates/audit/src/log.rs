//! The in-memory log core: assigns indices, chains hashes, keeps the Merkle
//! leaves, produces checkpoints and proofs. No I/O.

use crate::checkpoint::{sign_checkpoint, Checkpoint, CheckpointSigner, SignedCheckpoint};
use crate::event::{Entry, Event};
use crate::merkle::{self, CompactTree, Hash};
use crate::{Error, Result};

/// An append-only, hash-chained, Merkle-tree log held in memory.
///
/// It keeps one 32-byte leaf hash per entry (for proofs), not the entries.
#[derive(Clone, Debug)]
pub struct Log {
    log_id: String,
    leaves: Vec<Hash>,
    tree: CompactTree,
    head: Hash,
}

impl Log {
    /// An empty log named `log_id` (1 to [`crate::checkpoint::MAX_LOG_ID`] bytes).
    pub fn new(log_id: impl Into<String>) -> Result<Self> {
        let log_id = log_id.into();
        if log_id.is_empty() || log_id.len() > crate::checkpoint::MAX_LOG_ID {
            return Err(Error::BadLogId);
        }
        Ok(Log {
            log_id,
            leaves: Vec::new(),
            tree: CompactTree::new(),
            head: [0u8; 32],
        })
    }

    /// The log id that checkpoints carry.
    pub fn log_id(&self) -> &str {
        &self.log_id
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Whether the log has no entries.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Hash of the last entry (32 zero bytes when empty): the next entry's `prev_hash`.
    pub fn head_hash(&self) -> Hash {
        self.head
    }

    /// Merkle root of all entries.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Merkle root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        if size > self.len() {
            return Err(merkle::ProofError::BadSizes {
                old: size,
                new: self.len(),
            }
            .into());
        }
        Ok(merkle::root(&self.leaves[..size as usize]))
    }

    /// Leaf hashes of all entries, in order.
    pub fn leaf_hashes(&self) -> &[Hash] {
        &self.leaves
    }

    /// Builds the next entry without adding it (the file writer persists it first).
    pub(crate) fn prepare(&self, time: i64, event: Event) -> Result<Entry> {
        event.validate()?;
        Ok(Entry {
            index: self.len(),
            time,
            prev_hash: self.head,
            event,
        })
    }

    /// Adds an entry built by [`Log::prepare`] (or verified from a file).
    pub(crate) fn commit(&mut self, chain_hash: Hash, leaf_hash: Hash) {
        self.leaves.push(leaf_hash);
        self.tree.push(leaf_hash);
        self.head = chain_hash;
    }

    /// Appends an event at `time` (Unix ms) and returns the new entry.
    pub fn append(&mut self, time: i64, event: Event) -> Result<Entry> {
        let entry = self.prepare(time, event)?;
        if entry.to_json_line().len() > crate::verify::MAX_LINE {
            return Err(Error::LineTooLong);
        }
        let (h, leaf) = entry.hashes();
        self.commit(h, leaf);
        Ok(entry)
    }

    /// The unsigned checkpoint of the current tree at `time`.
    pub fn tree_head(&self, time: i64) -> Checkpoint {
        Checkpoint {
            log_id: self.log_id.clone(),
            tree_size: self.len(),
            root_hash: self.root(),
            time,
        }
    }

    /// Signs a checkpoint of the current tree at `time`.
    pub fn checkpoint(&self, signer: &dyn CheckpointSigner, time: i64) -> Result<SignedCheckpoint> {
        Ok(sign_checkpoint(self.tree_head(time), signer)?)
    }

    /// Inclusion proof of entry `index` in the tree of the first `tree_size` entries.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>> {
        Ok(merkle::inclusion_proof(&self.leaves, index, tree_size)?)
    }

    /// Consistency proof from the tree of size `old` to the tree of size `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>> {
        Ok(merkle::consistency_proof(&self.leaves, old, new)?)
    }
}
