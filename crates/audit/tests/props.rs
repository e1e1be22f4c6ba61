//! Property tests: Merkle proofs, single-byte tampering, garbage input.

mod common;

use common::{sample, trusted};
use keyfold_audit::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    CompactTree,
};
use keyfold_audit::{parse_checkpoints, verify};
use proptest::prelude::*;

fn leaves(n: usize, salt: u64) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| leaf_hash(&[salt.to_be_bytes(), (i as u64).to_be_bytes()].concat()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compact_tree_matches_recursive_root(n in 0usize..300, salt: u64) {
        let l = leaves(n, salt);
        let mut t = CompactTree::new();
        for (i, leaf) in l.iter().enumerate() {
            prop_assert_eq!(t.root(), root(&l[..i]));
            t.push(*leaf);
        }
        prop_assert_eq!(t.root(), root(&l));
        prop_assert_eq!(t.size(), n as u64);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails(
        n in 1usize..200, salt: u64, pick: prop::sample::Index, flip: prop::sample::Index, bit in 0u8..8,
    ) {
        let l = leaves(n, salt);
        let r = root(&l);
        for i in 0..n as u64 {
            let p = inclusion_proof(&l, i, n as u64).unwrap();
            prop_assert!(verify_inclusion(&l[i as usize], i, n as u64, &p, &r).is_ok());
        }
        let i = pick.index(n) as u64;
        let p = inclusion_proof(&l, i, n as u64).unwrap();
        // Wrong leaf, wrong index, wrong root, flipped proof bit, short proof.
        let other = leaf_hash(b"other");
        prop_assert!(verify_inclusion(&other, i, n as u64, &p, &r).is_err());
        if n > 1 {
            let j = (i + 1) % n as u64;
            prop_assert!(verify_inclusion(&l[i as usize], j, n as u64, &p, &r).is_err());
        }
        // (A proof is bound to a (size, root) pair from a signed checkpoint; a
        // wrong size with the right root can still verify for some shapes, so
        // the size is not mutated here.)
        prop_assert!(verify_inclusion(&l[i as usize], i, n as u64, &p, &other).is_err());
        if !p.is_empty() {
            let mut bad = p.clone();
            let k = flip.index(bad.len());
            bad[k][bit as usize % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&l[i as usize], i, n as u64, &bad, &r).is_err());
            bad = p.clone();
            bad.pop();
            prop_assert!(verify_inclusion(&l[i as usize], i, n as u64, &bad, &r).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails(
        n in 1usize..300, salt: u64, a: prop::sample::Index, flip: prop::sample::Index, bit in 0u8..8,
    ) {
        let l = leaves(n, salt);
        let m = a.index(n + 1);
        let (rm, rn) = (root(&l[..m]), root(&l));
        let p = consistency_proof(&l, m as u64, n as u64).unwrap();
        prop_assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &p).is_ok());
        if m > 0 && m < n {
            let other = leaf_hash(b"other");
            prop_assert!(verify_consistency(m as u64, n as u64, &other, &rn, &p).is_err());
            prop_assert!(verify_consistency(m as u64, n as u64, &rm, &other, &p).is_err());
            let mut bad = p.clone();
            let k = flip.index(bad.len());
            bad[k][bit as usize % 32] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &bad).is_err());
            bad = p.clone();
            bad.pop();
            prop_assert!(verify_consistency(m as u64, n as u64, &rm, &rn, &bad).is_err());
            // A rewritten history (different leaf below m) is not consistent.
            let mut forged = l.clone();
            forged[m - 1] = other;
            let p2 = consistency_proof(&forged, m as u64, n as u64).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &rm, &root(&forged), &p2).is_err());
        }
    }

    #[test]
    fn all_consistency_proofs_small_trees(n in 1u64..70) {
        let l = leaves(n as usize, 1);
        for m in 0..=n {
            let p = consistency_proof(&l, m, n).unwrap();
            prop_assert!(verify_consistency(m, n, &root(&l[..m as usize]), &root(&l), &p).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any single-byte change anywhere in an exported log (entries file or
    /// checkpoints file) is detected.
    #[test]
    fn any_single_byte_change_is_detected(
        in_entries: bool, pos: prop::sample::Index, new_byte: u8,
    ) {
        let x = sample();
        let mut entries = x.bytes();
        let mut cps = x.checkpoint_bytes();
        let target = if in_entries { &mut entries } else { &mut cps };
        let i = pos.index(target.len());
        prop_assume!(target[i] != new_byte);
        target[i] = new_byte;
        let result = parse_checkpoints(&cps).and_then(|c| verify(&entries, &c, &trusted()));
        prop_assert!(result.is_err(), "change at {} ({}) not detected", i, in_entries);
    }

    /// Garbage never panics, in either file.
    #[test]
    fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let x = sample();
        let _ = verify(&data, &x.checkpoints, &trusted());
        let _ = parse_checkpoints(&data);
    }

    /// Garbage that looks like JSON lines never panics either.
    #[test]
    fn jsonish_garbage_never_panics(
        data in prop::collection::vec(prop::sample::select(b"{}[]\":,0123456789abcdef-\n xnulltrue".to_vec()), 0..512)
    ) {
        let x = sample();
        let _ = verify(&data, &x.checkpoints, &trusted());
        let _ = parse_checkpoints(&data);
    }

    /// Splicing random bytes into a valid log never panics and is detected.
    #[test]
    fn inserted_bytes_are_detected(pos: prop::sample::Index, junk in prop::collection::vec(any::<u8>(), 1..16)) {
        let x = sample();
        let mut entries = x.bytes();
        let i = pos.index(entries.len() + 1);
        entries.splice(i..i, junk);
        prop_assert!(verify(&entries, &x.checkpoints, &trusted()).is_err());
    }
}

#[test]
fn every_single_byte_change_is_detected_exhaustively() {
    // Exhaustive over positions (a few replacement bytes each), to back up the
    // random property test above. Positions are split over the CPUs: each
    // case replays the whole log, and there are three per byte.
    let x = sample();
    let entries = x.bytes();
    let cps = x.checkpoint_bytes();
    let cases: Vec<(bool, usize)> = (0..entries.len())
        .map(|i| (true, i))
        .chain((0..cps.len()).map(|i| (false, i)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for chunk in cases.chunks(cases.len().div_ceil(threads)) {
            let (entries, cps) = (&entries, &cps);
            scope.spawn(move || {
                for &(which, i) in chunk {
                    for b in [b'0', b'\n', 0xff] {
                        let data = if which { entries } else { cps };
                        if data[i] == b {
                            continue;
                        }
                        let mut e = entries.clone();
                        let mut c = cps.clone();
                        if which {
                            e[i] = b;
                        } else {
                            c[i] = b;
                        }
                        let r = parse_checkpoints(&c).and_then(|c| verify(&e, &c, &trusted()));
                        assert!(
                            r.is_err(),
                            "change at {i} to {b:#x} (entries: {which}) not detected"
                        );
                    }
                }
            });
        }
    });
}
