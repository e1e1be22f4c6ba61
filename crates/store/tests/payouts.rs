//! The coordinator's payouts and nonce manager: consecutive nonces under
//! concurrent payouts and across reopening, released nonces handed out
//! first, the chain ahead (nonces used elsewhere) and behind (a chain that
//! lost transactions), one signed transaction per payout, and a payout that
//! failed before it took a nonce.

use std::sync::{Arc, Barrier};

use keyfold_store::{
    CoordinatorStore, NewPayout, NonceNote, PayoutChainUpdate, Recorded, StoreError,
};

const ADDR: &str = "0x2bD46Cc9319B54bBf111Ef0224803254a24Bb2B1";

fn new(id: &str, request: &str, chain_next: u64) -> NewPayout {
    NewPayout {
        payout_id: id.into(),
        request_id: request.into(),
        fingerprint: b"fp".to_vec(),
        chain: "devnet-l1".into(),
        source: ADDR.into(),
        chain_next_nonce: chain_next,
        merchant_id: None,
    }
}

fn insert(store: &CoordinatorStore, id: &str, chain_next: u64) -> (u64, NonceNote) {
    let request = format!("payout:{id}");
    match store
        .insert_payout(&new(id, &request, chain_next), |n| {
            Ok(format!("{{\"nonce\":{n}}}"))
        })
        .unwrap()
    {
        Recorded::New(row, note) => {
            assert_eq!(
                row.payout_json,
                format!("{{\"nonce\":{}}}", row.nonce.unwrap())
            );
            (row.nonce.unwrap(), note)
        }
        Recorded::Existing(row) => panic!("{id} existed: {row:?}"),
    }
}

fn open(dir: &tempfile::TempDir) -> CoordinatorStore {
    CoordinatorStore::open(dir.path().join("c.db")).unwrap()
}

#[test]
fn concurrent_payouts_from_one_address_get_consecutive_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (0..10)
                    .map(|j| insert(&store, &format!("p-{i}-{j}"), 5).0)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (5..85).collect::<Vec<_>>(), "no gap, no duplicate");
    // Reopened (a restart), counting goes on.
    drop(store);
    let store = open(&dir);
    assert_eq!(insert(&store, "after-restart", 5).0, 85);
}

#[test]
fn a_released_nonce_is_handed_out_first_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..3 {
        insert(&store, &format!("p{i}"), 0);
    }
    assert!(store.release_payout_nonce("p1", "rejected").unwrap());
    assert!(
        !store.release_payout_nonce("p1", "again").unwrap(),
        "released once"
    );
    assert_eq!(
        store.get_payout("p1").unwrap().unwrap().chain_state,
        "released"
    );
    assert_eq!(insert(&store, "p3", 0).0, 1, "the gap is filled");
    assert_eq!(insert(&store, "p4", 0).0, 3);
    // A signed payout's nonce is spent: never released.
    store
        .update_payout_chain(
            "p2",
            &PayoutChainUpdate {
                chain_state: "broadcast".into(),
                raw_tx: Some(vec![2, 1]),
                tx_hash: Some("0xaa".into()),
                ..Default::default()
            },
            |_, _| None,
        )
        .unwrap();
    assert!(!store.release_payout_nonce("p2", "late").unwrap());
    // A released nonce the chain has since passed is gone, not reused.
    assert!(store.release_payout_nonce("p4", "rejected").unwrap());
    assert_eq!(insert(&store, "p5", 7).0, 7);
}

#[test]
fn the_chain_ahead_is_reported_as_nonces_used_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(insert(&store, "a", 0), (0, NonceNote::InOrder));
    assert_eq!(
        insert(&store, "b", 4),
        (4, NonceNote::UsedElsewhere { from: 1, to: 4 })
    );
}

#[test]
fn the_chain_behind_with_nothing_in_flight_restarts_at_the_chain_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    insert(&store, "a", 0);
    insert(&store, "b", 0);
    // Payout b is in flight (unsigned): the chain being behind is normal.
    assert_eq!(insert(&store, "c", 0), (2, NonceNote::InOrder));
    for id in ["a", "b", "c"] {
        store
            .update_payout_chain(
                id,
                &PayoutChainUpdate {
                    chain_state: "completed".into(),
                    raw_tx: Some(id.as_bytes().to_vec()),
                    tx_hash: Some(format!("0x{id}")),
                    ..Default::default()
                },
                |_, _| None,
            )
            .unwrap();
    }
    // All completed, yet the chain reports nonce 1: it lost transactions.
    assert_eq!(
        insert(&store, "d", 1),
        (1, NonceNote::ChainBehind { ours: 3, chain: 1 })
    );
}

#[test]
fn a_chain_reset_forgets_the_nonces_released_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for id in ["a", "b", "c"] {
        insert(&store, id, 0);
    }
    for id in ["a", "b"] {
        store
            .update_payout_chain(
                id,
                &PayoutChainUpdate {
                    chain_state: "completed".into(),
                    raw_tx: Some(id.as_bytes().to_vec()),
                    tx_hash: Some(format!("0x{id}")),
                    ..Default::default()
                },
                |_, _| None,
            )
            .unwrap();
    }
    // The last payout ended unsigned: nonce 2 is released.
    assert!(store.release_payout_nonce("c", "rejected").unwrap());
    // The chain was reset (a fresh devnet): counting restarts at 0, and the
    // released 2 is not handed out before 0 and 1, which would strand it.
    assert_eq!(
        insert(&store, "d", 0),
        (0, NonceNote::ChainBehind { ours: 3, chain: 0 })
    );
    assert_eq!(insert(&store, "e", 0).0, 1);
    assert_eq!(insert(&store, "f", 0).0, 2);
    assert_eq!(insert(&store, "g", 0).0, 3);
}

#[test]
fn a_payout_has_one_signed_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    insert(&store, "p", 0);
    let signed = |raw: u8| PayoutChainUpdate {
        chain_state: "broadcast".into(),
        raw_tx: Some(vec![raw]),
        tx_hash: Some(format!("0x{raw:02x}")),
        ..Default::default()
    };
    store
        .update_payout_chain("p", &signed(1), |_, _| None)
        .unwrap();
    store
        .update_payout_chain("p", &signed(1), |_, _| None)
        .unwrap();
    assert!(matches!(
        store.update_payout_chain("p", &signed(2), |_, _| None),
        Err(StoreError::Conflict { .. })
    ));
    // Asking for the same payout id again answers the existing row.
    let again = store
        .insert_payout(&new("p", "payout:p", 0), |_| Ok("{}".into()))
        .unwrap();
    assert!(matches!(again, Recorded::Existing(r) if r.raw_tx == Some(vec![1])));
}

#[test]
fn a_payout_that_failed_before_taking_a_nonce_starts_over_when_submitted_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let failed = store
        .record_failed_payout(&new("f", "payout:f", 0), "{}", "insufficient balance")
        .unwrap();
    let Recorded::New(row, _) = failed else {
        panic!("recorded")
    };
    assert_eq!((row.nonce, row.chain_state.as_str()), (None, "failed"));
    assert_eq!(insert(&store, "other", 0).0, 0, "no nonce was burnt");
    assert_eq!(insert(&store, "f", 0).0, 1, "the same id, now funded");
    assert_eq!(store.list_payouts(None, None, None, 10).unwrap().len(), 2);
}

#[test]
fn replacements_are_numbered_per_payout_survive_reopening_and_sign_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        insert(&store, "stuck", 3);
        insert(&store, "other", 3);
        for (payout, expect) in [("stuck", 1), ("stuck", 2), ("other", 1)] {
            let row = store
                .insert_replacement(payout, 1_700_000_000, |n| {
                    Ok((
                        format!("payout:{payout}+r{n}"),
                        format!("{{\"attempt\":{n}}}"),
                    ))
                })
                .unwrap();
            assert_eq!(row.attempt, expect);
            assert_eq!(row.request_id, format!("payout:{payout}+r{expect}"));
            assert_eq!((row.raw_tx, row.logged), (None, false));
        }
        store
            .record_replacement_tx("payout:stuck+r1", b"signed-1", "0xaa")
            .unwrap();
        // The same bytes again (a retried step) are fine; others are not.
        store
            .record_replacement_tx("payout:stuck+r1", b"signed-1", "0xaa")
            .unwrap();
        assert!(matches!(
            store.record_replacement_tx("payout:stuck+r1", b"signed-2", "0xbb"),
            Err(StoreError::Conflict { .. })
        ));
        assert!(store
            .record_replacement_tx("payout:none+r1", b"x", "0xcc")
            .is_err());
        store.mark_replacement_logged("payout:stuck+r1").unwrap();
    }
    let store = open(&dir);
    let rows = store.replacements("stuck").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].raw_tx.as_deref(), Some(&b"signed-1"[..]));
    assert_eq!(rows[0].tx_hash.as_deref(), Some("0xaa"));
    assert!(rows[0].logged);
    assert_eq!(rows[1].tx_hash, None);
    let by_request = store.replacement_of_request("payout:stuck+r2").unwrap();
    assert_eq!(by_request, Some(rows[1].clone()));
    assert_eq!(store.replacement_of_request("payout:stuck").unwrap(), None);
}

#[test]
fn the_mined_transaction_is_recorded_and_cleared_with_each_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    insert(&store, "mined", 0);
    let update = |state: &str, mined: Option<&str>| PayoutChainUpdate {
        chain_state: state.into(),
        mined_tx_hash: mined.map(str::to_string),
        ..Default::default()
    };
    store
        .update_payout_chain("mined", &update("confirming", Some("0xbb")), |_, _| None)
        .unwrap();
    let row = store.get_payout("mined").unwrap().unwrap();
    assert_eq!(row.mined_tx_hash.as_deref(), Some("0xbb"));
    // A reorg took it out: no transaction of the payout is mined.
    store
        .update_payout_chain("mined", &update("broadcast", None), |_, _| None)
        .unwrap();
    assert_eq!(
        store.get_payout("mined").unwrap().unwrap().mined_tx_hash,
        None
    );
}

#[test]
fn reconciling_at_start_reports_the_chain_ahead_or_behind_and_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    insert(&store, "a", 10); // nonce 10, next 11
    assert_eq!(
        store.nonce_accounts().unwrap(),
        [("devnet-l1".to_string(), ADDR.to_string(), 11)]
    );
    // In step: nothing changes.
    assert_eq!(
        store.reconcile_nonce("devnet-l1", ADDR, 11).unwrap(),
        NonceNote::InOrder
    );
    // Behind, but payout a (nonce 10) is in flight: it may still be sent.
    assert_eq!(
        store.reconcile_nonce("devnet-l1", ADDR, 10).unwrap(),
        NonceNote::InOrder
    );
    assert_eq!(store.next_nonce("devnet-l1", ADDR).unwrap(), Some(11));
    // Ahead: nonces 11..14 were used by transactions Keyfold did not send.
    assert_eq!(
        store.reconcile_nonce("devnet-l1", ADDR, 14).unwrap(),
        NonceNote::UsedElsewhere { from: 11, to: 14 }
    );
    assert_eq!(store.next_nonce("devnet-l1", ADDR).unwrap(), Some(14));
    // Reconciling took no nonce: the next payout gets 14.
    assert_eq!(insert(&store, "b", 0).0, 14);
}
