//! The tree parser on hostile input: any mutation of a valid tree (bytes
//! replaced, cut, repeated) parses or is refused with a typed error, never
//! panics; and whatever parses decides every request with a score in
//! 0..=100.
mod common;

use common::*;
use keyfold_risk::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Cut(usize),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut b = text.as_bytes().to_vec();
    for m in muts {
        if b.is_empty() {
            break;
        }
        match *m {
            Mutation::Replace(i, x) => {
                let i = i % b.len();
                b[i] = x;
            }
            Mutation::Cut(i) => b.truncate(i % b.len()),
            Mutation::Repeat(i, n) => {
                let i = i % b.len();
                let end = (i + n).min(b.len());
                let piece = b[i..end].to_vec();
                b.splice(i..i, piece);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_mutated_tree_parses_or_is_refused_and_never_panics(
        muts in proptest::collection::vec(mutation(), 1..6),
        at in 1_700_000_000u64..1_900_000_000,
    ) {
        let text = apply(DEFAULT_TREE_TOML, &muts);
        if let Ok(tree) = RiskTree::from_toml(&text) {
            let state = RiskState::new();
            let f = state.features(&tree, &request(at));
            prop_assert!(f.is_ok());
            if let Ok(f) = f {
                let d = evaluate(&tree, &f);
                prop_assert!(d.score <= 100);
                prop_assert_eq!(d.tree_version, tree.version());
            }
        }
    }
}
