//! RFC 6962 (section 2.1) Merkle tree over SHA-256: tree heads, inclusion
//! proofs and consistency proofs, with the verification algorithms of
//! RFC 9162 sections 2.1.3.2 and 2.1.4.2.
//!
//! Leaves are given as leaf hashes (`SHA-256(0x00 || data)`, see
//! [`leaf_hash`]); interior nodes are `SHA-256(0x01 || left || right)`.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// Why a proof did not verify, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A tree size is larger than the tree, or the old size exceeds the new one.
    #[error("bad tree sizes: {old} and {new}")]
    BadSizes {
        /// Old (or requested) size.
        old: u64,
        /// New (or available) size.
        new: u64,
    },
    /// The proof has the wrong number of hashes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof's hashes do not lead to the expected root(s).
    #[error("proof does not match the root hash")]
    RootMismatch,
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Merkle tree hash (MTH) of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Inclusion proof (audit path) for leaf `index` in the tree of the first
/// `size` leaves (RFC 6962 section 2.1.1).
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::BadSizes {
            old: size,
            new: leaves.len() as u64,
        });
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(to_usize(index), &leaves[..to_usize(size)], &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    let n = d.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// Consistency proof between the trees of the first `old` and the first `new`
/// leaves (RFC 6962 section 2.1.2). Empty when `old` is 0 or equals `new`.
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    if old > new || new > leaves.len() as u64 {
        return Err(ProofError::BadSizes { old, new });
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(to_usize(old), &leaves[..to_usize(new)], true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !b {
            out.push(root(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], b, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between an old tree head and a new one
/// (RFC 9162 section 2.1.4.2). An old size of 0 is consistent with anything
/// (with an empty proof).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Incremental tree head: keeps the roots of the perfect subtrees that make
/// up the tree (one per set bit of the size), so appending is amortised O(1)
/// and the root is O(log n).
#[derive(Clone, Debug, Default)]
pub struct CompactTree {
    size: u64,
    /// Perfect subtree roots, largest (leftmost) first.
    stack: Vec<Hash>,
}

impl CompactTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // A perfect subtree of the same height is on the stack: merge.
            if let Some(left) = self.stack.pop() {
                h = node_hash(&left, &h);
            }
            s >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The current root (MTH of all leaves pushed so far).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// Every level of the tree over a fixed list of leaves, for producing many
/// inclusion proofs in O(log n) each (an auditor proving every entry).
///
/// Built bottom-up, pairing neighbours and carrying a lone last node up a
/// level unchanged, which yields the RFC 6962 tree for any size.
#[derive(Debug, Clone)]
pub struct FullTree {
    levels: Vec<Vec<Hash>>,
}

impl FullTree {
    /// The tree over `leaves` (leaf hashes).
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or(&[]);
            let up: Vec<Hash> = below
                .chunks(2)
                .map(|c| match c {
                    [l, r] => node_hash(l, r),
                    [lone, ..] => *lone,
                    // chunks(2) never yields an empty chunk.
                    [] => empty_root(),
                })
                .collect();
            levels.push(up);
        }
        FullTree { levels }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Root hash ([`empty_root`] for no leaves).
    pub fn root(&self) -> Hash {
        match self.levels.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => empty_root(),
        }
    }

    /// Inclusion proof of leaf `index` in the whole tree, bottom-up (the
    /// order [`verify_inclusion`] takes).
    pub fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, ProofError> {
        if index >= self.size() {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: self.size(),
            });
        }
        let mut i = index as usize;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                proof.push(*sibling);
            }
            i >>= 1;
        }
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        out.copy_from_slice(&hex::decode(s).unwrap());
        out
    }

    /// The eight leaves of the certificate-transparency reference tests.
    fn ct_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root(&[]), empty_root());
        assert_eq!(CompactTree::new().root(), empty_root());
    }

    #[test]
    fn ct_reference_roots() {
        let leaves = ct_leaves();
        let mut ct = CompactTree::new();
        for (i, want) in CT_ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..=i])), *want, "size {}", i + 1);
            ct.push(leaves[i]);
            assert_eq!(hex::encode(ct.root()), *want, "compact size {}", i + 1);
        }
    }

    #[test]
    fn ct_reference_inclusion_proofs() {
        let leaves = ct_leaves();
        // (leaf index, tree size, path) from the certificate-transparency tests.
        let cases: Vec<(u64, u64, Vec<&str>)> = vec![
            (0, 1, vec![]),
            (
                0,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                vec![
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                vec![
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            let got: Vec<String> = proof.iter().map(hex::encode).collect();
            assert_eq!(got, want, "leaf {index} size {size}");
            let r = h(CT_ROOTS[(size - 1) as usize]);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &r).unwrap();
        }
    }

    #[test]
    fn ct_reference_consistency_proofs() {
        let leaves = ct_leaves();
        let cases: Vec<(u64, u64, Vec<&str>)> = vec![
            (1, 1, vec![]),
            (
                1,
                8,
                vec![
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                vec![
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                vec![
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = consistency_proof(&leaves, old, new).unwrap();
            let got: Vec<String> = proof.iter().map(hex::encode).collect();
            assert_eq!(got, want, "{old} -> {new}");
            let r1 = h(CT_ROOTS[(old - 1) as usize]);
            let r2 = h(CT_ROOTS[(new - 1) as usize]);
            verify_consistency(old, new, &r1, &r2, &proof).unwrap();
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        let leaves = ct_leaves();
        assert!(inclusion_proof(&leaves, 8, 8).is_err());
        assert!(inclusion_proof(&leaves, 0, 9).is_err());
        assert!(consistency_proof(&leaves, 5, 4).is_err());
        assert!(consistency_proof(&leaves, 1, 9).is_err());
        let r = root(&leaves);
        assert!(verify_inclusion(&leaves[0], 8, 8, &[], &r).is_err());
        assert!(verify_consistency(5, 4, &r, &r, &[]).is_err());
        // A proof for size 8 with one hash missing, or one extra.
        let p = inclusion_proof(&leaves, 3, 8).unwrap();
        assert!(verify_inclusion(&leaves[3], 3, 8, &p[..2], &r).is_err());
        let mut longer = p.clone();
        longer.push(r);
        assert!(verify_inclusion(&leaves[3], 3, 8, &longer, &r).is_err());
    }
}
