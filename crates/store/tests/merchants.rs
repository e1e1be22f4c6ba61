//! Merchants and their API keys in the coordinator's store: keys verify
//! only while valid (expiry, revocation, a disabled merchant), ownership of
//! requests follows the initiator (also for a request written again from
//! the audit log), payouts and key creations keep their owner, and a
//! request nonce serves once.

use keyfold_store::{
    CoordinatorStore, GroupOutcome, NewMerchant, NewPayout, NewRequest, Op, Recorded,
    RequestFilter, RequestUpdate, StoreError,
};

fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
    CoordinatorStore::open(dir.path().join("c.db")).unwrap()
}

fn merchant(s: &CoordinatorStore, id: &str) {
    s.create_merchant(
        &NewMerchant {
            merchant_id: id.into(),
            name: id.into(),
            rate_burst: 10,
            rate_per_sec: 5,
        },
        100,
    )
    .unwrap();
}

fn scopes() -> Vec<String> {
    vec!["wallets:read".into()]
}

#[test]
fn a_key_verifies_until_it_expires_is_revoked_or_its_merchant_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    let k = s
        .issue_merchant_key("acme", "ci", &scopes(), 100, Some(200))
        .unwrap();
    let auth = s.verify_merchant_key(&k.secret, 150).unwrap().unwrap();
    assert_eq!(auth.merchant.merchant_id, "acme");
    assert_eq!(auth.key.client, format!("acme#{}", k.meta.key_id));
    assert!(s.verify_merchant_key(&k.secret, 200).unwrap().is_none());
    // One changed character, or a malformed key, never verifies.
    let mut other = k.secret.to_string();
    other.replace_range(10..11, if &other[10..11] == "0" { "1" } else { "0" });
    assert!(s.verify_merchant_key(&other, 150).unwrap().is_none());
    assert!(s.verify_merchant_key("kfm_xyz", 150).unwrap().is_none());

    let k2 = s
        .issue_merchant_key("acme", "ci", &scopes(), 100, None)
        .unwrap();
    s.disable_merchant("acme", 300).unwrap();
    assert!(s.verify_merchant_key(&k2.secret, 301).unwrap().is_none());
    s.enable_merchant("acme").unwrap();
    assert!(s.verify_merchant_key(&k2.secret, 301).unwrap().is_some());
    s.revoke_merchant_key("acme", &k2.meta.key_id, 302).unwrap();
    assert!(s.verify_merchant_key(&k2.secret, 303).unwrap().is_none());
    assert!(matches!(
        s.revoke_merchant_key("acme", &k2.meta.key_id, 304),
        Err(StoreError::NotFound { .. })
    ));
    // Another merchant cannot revoke or rotate it.
    merchant(&s, "globex");
    assert!(s
        .rotate_merchant_key("globex", &k.meta.key_id, 150, 10)
        .is_err());
}

#[test]
fn bad_scopes_ids_and_labels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    for bad in [vec![], vec!["orders:delete".to_string()]] {
        assert!(matches!(
            s.issue_merchant_key("acme", "x", &bad, 1, None),
            Err(StoreError::InvalidInput {
                field: "scopes",
                ..
            })
        ));
    }
    assert!(matches!(
        s.issue_merchant_key("nobody", "x", &scopes(), 1, None),
        Err(StoreError::NotFound { .. })
    ));
    for id in ["", "Acme", "1acme", "ac me", &"a".repeat(49)] {
        assert!(s.get_merchant(id).is_err(), "{id:?}");
    }
    assert!(matches!(
        s.create_merchant(
            &NewMerchant {
                merchant_id: "acme".into(),
                name: "again".into(),
                rate_burst: 1,
                rate_per_sec: 1
            },
            1
        ),
        Err(StoreError::Conflict { .. })
    ));
}

fn insert(id: &str, initiator: &str) -> Op {
    Op::InsertRequest(NewRequest {
        request_id: id.into(),
        fingerprint: [0; 32],
        key_id: "00112233445566778899aabbccddeeff".into(),
        initiator: initiator.into(),
        request_json: "{}".into(),
        update: RequestUpdate {
            state: "completed".into(),
            lifecycle_json: "{}".into(),
            ..Default::default()
        },
        at: 1,
    })
}

#[test]
fn a_request_belongs_to_the_merchant_of_its_initiator() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    let k = s
        .issue_merchant_key("acme", "", &scopes(), 1, None)
        .unwrap();
    // The same operation the audit-log catch-up writes: the owner comes from
    // the initiator, not from the caller.
    let ops = [insert("r-1", &k.meta.client), insert("r-2", "payments")];
    match s.apply_group::<()>(&[&ops], false, |_| Ok(Some(1))) {
        GroupOutcome::Committed(r) => assert!(r.iter().all(Result::is_ok), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.get_request("r-1")
            .unwrap()
            .unwrap()
            .merchant_id
            .as_deref(),
        Some("acme")
    );
    assert_eq!(s.get_request("r-2").unwrap().unwrap().merchant_id, None);
    let page = |m: Option<&str>| {
        s.list_requests(&RequestFilter {
            merchant_id: m.map(String::from),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect::<Vec<_>>()
    };
    assert_eq!(page(Some("acme")), vec!["r-1"]);
    assert_eq!(page(Some("globex")), Vec::<String>::new());
    assert_eq!(page(None), vec!["r-2", "r-1"]);
}

#[test]
fn payouts_and_key_creations_keep_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let new = |m: Option<&str>| NewPayout {
        payout_id: "p-1".into(),
        request_id: "payout:p-1".into(),
        fingerprint: b"fp".to_vec(),
        chain: "devnet-l1".into(),
        source: "0x2bD46Cc9319B54bBf111Ef0224803254a24Bb2B1".into(),
        chain_next_nonce: 0,
        merchant_id: m.map(String::from),
    };
    let row = match s
        .insert_payout(&new(Some("acme")), |_| Ok("{}".into()))
        .unwrap()
    {
        Recorded::New(row, _) => row,
        other => panic!("{other:?}"),
    };
    assert_eq!(row.merchant_id.as_deref(), Some("acme"));
    assert_eq!(s.payout_owner("p-1").unwrap().as_deref(), Some("acme"));
    // The same id from another owner: a conflict, never the row.
    for other in [Some("globex"), None] {
        assert!(matches!(
            s.insert_payout(&new(other), |_| Ok("{}".into())),
            Err(StoreError::Conflict { .. })
        ));
    }
    assert_eq!(
        s.list_payouts(None, Some("acme"), None, 10).unwrap().len(),
        1
    );
    assert!(s
        .list_payouts(None, Some("globex"), None, 10)
        .unwrap()
        .is_empty());

    use keyfold_store::KeyRequest;
    assert_eq!(
        s.begin_key_request("k-1", [1; 32], Some("acme")).unwrap(),
        KeyRequest::New
    );
    assert_eq!(
        s.begin_key_request("k-1", [1; 32], Some("globex")).unwrap(),
        KeyRequest::Conflict
    );
    let key = "00112233445566778899aabbccddeeff";
    s.finish_key_request("k-1", Ok(key)).unwrap();
    assert_eq!(s.key_owner(key).unwrap().as_deref(), Some("acme"));
    assert_eq!(
        s.key_owner("ffeeddccbbaa99887766554433221100").unwrap(),
        None
    );
}

#[test]
fn a_request_nonce_serves_once_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert!(s
        .use_request_nonce("acme", "n-0000000000000001", 10, 311)
        .unwrap());
    assert!(!s
        .use_request_nonce("acme", "n-0000000000000001", 11, 311)
        .unwrap());
    // Per merchant.
    assert!(s
        .use_request_nonce("globex", "n-0000000000000001", 11, 311)
        .unwrap());
    // Purged once expired (its timestamp would be refused by then).
    assert!(s
        .use_request_nonce("acme", "n-0000000000000001", 312, 623)
        .unwrap());
}

#[test]
fn merchants_sharing_a_collection_key_never_share_a_derivation_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    merchant(&s, "globex");
    let key = "00112233445566778899aabbccddeeff";
    let mut seen = Vec::new();
    for (m, id) in [("acme", "o-1"), ("globex", "o-1"), ("acme", "o-2")] {
        let new = keyfold_store::NewOrder {
            merchant_id: m.into(),
            order_id: id.into(),
            fingerprint: vec![1],
            chain: "devnet-l1".into(),
            asset: "ETH".into(),
            token: None,
            decimals: 18,
            amount: "1".into(),
            confirmations: 2,
            created_at: 1,
            expires_at: 100,
            metadata: None,
        };
        let row = match s
            .insert_order(&new, key, |i| {
                Ok((format!("addr-{i}"), format!("m/1/{i}"), String::new()))
            })
            .unwrap()
        {
            keyfold_store::OrderRecorded::New(r) => r,
            other => panic!("{other:?}"),
        };
        seen.push(row.derivation_path);
    }
    assert_eq!(seen, vec!["m/1/0", "m/1/1", "m/1/2"]);
}
