//! Which `t` signers to ask: pure, so the retry rules are unit-tested.
//!
//! A quorum is `t` keygen indices of the key's participants that are live
//! and not left out. Among those, the first set (in lexicographic order of
//! indices) that was not tried already is chosen, so that a failure nobody
//! could be blamed for (a single, unconfirmed accusation) leads to a
//! different set rather than the same one again.

use std::collections::HashSet;

/// Most candidate sets examined before falling back to the first one (the
/// number of sets grows fast with `n`; attempts are few).
const MAX_EXAMINED: usize = 10_000;

/// Picks a quorum of `t` keygen indices (see the module docs), or `None`
/// when fewer than `t` participants are usable.
pub fn choose(
    participants: &[String],
    t: u16,
    live: &HashSet<String>,
    excluded: &HashSet<String>,
    tried: &[Vec<u16>],
) -> Option<Vec<u16>> {
    let usable: Vec<u16> = participants
        .iter()
        .enumerate()
        .filter(|(_, n)| live.contains(*n) && !excluded.contains(*n))
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    let t = usize::from(t);
    if t == 0 || usable.len() < t {
        return None;
    }
    // Combinations of `usable`, lexicographic, as positions into it.
    let mut pos: Vec<usize> = (0..t).collect();
    let first: Vec<u16> = pos.iter().map(|&p| usable[p]).collect();
    for _ in 0..MAX_EXAMINED {
        let set: Vec<u16> = pos.iter().map(|&p| usable[p]).collect();
        if !tried.contains(&set) {
            return Some(set);
        }
        // Next combination.
        let mut i = t;
        loop {
            if i == 0 {
                return Some(first);
            }
            i -= 1;
            if pos[i] < usable.len() - t + i {
                break;
            }
        }
        pos[i] += 1;
        for j in i + 1..t {
            pos[j] = pos[j - 1] + 1;
        }
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("signer-{i}")).collect()
    }

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_live_signers_are_chosen() {
        let p = names(3);
        let live = set(&["signer-1", "signer-2", "signer-3"]);
        assert_eq!(choose(&p, 2, &live, &HashSet::new(), &[]), Some(vec![0, 1]));
        let live = set(&["signer-1", "signer-3"]);
        assert_eq!(choose(&p, 2, &live, &HashSet::new(), &[]), Some(vec![0, 2]));
    }

    #[test]
    fn excluded_signers_are_left_out() {
        let p = names(3);
        let live = set(&["signer-1", "signer-2", "signer-3"]);
        let ex = set(&["signer-1"]);
        assert_eq!(choose(&p, 2, &live, &ex, &[]), Some(vec![1, 2]));
        let ex = set(&["signer-1", "signer-2"]);
        assert_eq!(choose(&p, 2, &live, &ex, &[]), None);
    }

    #[test]
    fn a_set_that_failed_without_blame_is_not_tried_first_again() {
        let p = names(3);
        let live = set(&["signer-1", "signer-2", "signer-3"]);
        let none = HashSet::new();
        assert_eq!(choose(&p, 2, &live, &none, &[vec![0, 1]]), Some(vec![0, 2]));
        assert_eq!(
            choose(&p, 2, &live, &none, &[vec![0, 1], vec![0, 2]]),
            Some(vec![1, 2])
        );
        // Every set tried: the first again (a transient failure may pass).
        assert_eq!(
            choose(&p, 2, &live, &none, &[vec![0, 1], vec![0, 2], vec![1, 2]]),
            Some(vec![0, 1])
        );
    }

    #[test]
    fn too_few_usable_signers_is_none() {
        let p = names(5);
        let live = set(&["signer-2", "signer-5"]);
        assert_eq!(choose(&p, 3, &live, &HashSet::new(), &[]), None);
        assert_eq!(choose(&p, 2, &live, &HashSet::new(), &[]), Some(vec![1, 4]));
        assert_eq!(choose(&p, 0, &live, &HashSet::new(), &[]), None);
    }

    #[test]
    fn large_groups_stay_bounded() {
        let p = names(200);
        let live: HashSet<String> = p.iter().cloned().collect();
        let tried: Vec<Vec<u16>> = vec![(0..100).collect()];
        let got = choose(&p, 100, &live, &HashSet::new(), &tried).unwrap();
        assert_eq!(got.len(), 100);
        assert_ne!(got, tried[0]);
    }
}
