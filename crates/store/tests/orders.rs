//! Orders in the coordinator's store: a scan records only deposits of the
//! order's own asset (ether sent to a token order's address, such as the
//! gas tank's top-up before a sweep, is not a payment of the order).

use keyfold_store::{CoordinatorStore, FoundDeposit, NewMerchant, NewOrder, OrderUpdate, Scan};

const TOKEN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const ADDRESS: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn token_order(s: &CoordinatorStore) -> i64 {
    s.create_merchant(
        &NewMerchant {
            merchant_id: "shop".into(),
            name: "shop".into(),
            rate_burst: 10,
            rate_per_sec: 5,
        },
        100,
    )
    .unwrap();
    let new = NewOrder {
        merchant_id: "shop".into(),
        order_id: "o-1".into(),
        fingerprint: vec![1],
        chain: "l1".into(),
        asset: "KFT".into(),
        token: Some(TOKEN.into()),
        decimals: 18,
        amount: "1000".into(),
        confirmations: 1,
        created_at: 100,
        expires_at: 10_000,
        metadata: None,
    };
    match s
        .insert_order(&new, "key-1", |i| {
            Ok((ADDRESS.into(), format!("m/0/{i}"), "ethereum:x".into()))
        })
        .unwrap()
    {
        keyfold_store::OrderRecorded::New(row) => row.seq,
        other => panic!("expected a new order, got {other:?}"),
    }
}

fn deposit(tx: &str, log_index: i64, token: Option<&str>, amount: &str) -> FoundDeposit {
    FoundDeposit {
        tx_hash: tx.into(),
        log_index,
        to: ADDRESS.into(),
        token: token.map(Into::into),
        amount: amount.into(),
        block_number: 5,
        block_hash: "0xb5".into(),
        seen_at: 200,
    }
}

#[test]
fn a_scan_counts_only_the_orders_own_asset() {
    let dir = tempfile::tempdir().unwrap();
    let s = CoordinatorStore::open(dir.path().join("c.db")).unwrap();
    let seq = token_order(&s);
    let scan = Scan {
        head: 5,
        scanned: 5,
        blocks: vec![(5, "0xb5".into())],
        reorg_above: None,
        deposits: vec![
            // The gas tank's ether top-up: not a payment of a KFT order.
            deposit("0xaa", -1, None, "276803075200000"),
            // Another token sent to the address: not a payment either.
            deposit(
                "0xbb",
                0,
                Some("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"),
                "5",
            ),
            // The order's token, its contract written in lower case.
            deposit("0xcc", 1, Some(&TOKEN.to_lowercase()), "1000"),
        ],
    };
    let mut seen = Vec::new();
    s.apply_scan("l1", &scan, 200, |row, deps| {
        seen = deps.to_vec();
        Ok(OrderUpdate {
            state: row.state.clone(),
            statuses: row.statuses.clone(),
            confirmed_total: row.confirmed_total.clone(),
            pending_total: row.pending_total.clone(),
            late_total: row.late_total.clone(),
            settled_at: row.settled_at,
            event: None,
            booking: None,
        })
    })
    .unwrap();
    let recorded = s.order_deposits(seq).unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].tx_hash, "0xcc");
    assert_eq!(recorded[0].amount, "1000");
    assert_eq!(seen, recorded, "the evaluation saw other assets' transfers");
}
