//! Coordinator store: keys, groups, idempotent requests, presignature index,
//! API tokens, schema checks.

mod common;

use std::sync::{Arc, Barrier};

use common::{contains, db_bytes, set_schema_version};
use keyfold_store::{BeginOutcome, CoordinatorStore, Curve, KeyRecord, RequestState, StoreError};

fn key(id: &str) -> KeyRecord {
    KeyRecord {
        key_id: id.into(),
        curve: Curve::Secp256k1,
        t: 2,
        n: 3,
        public_key: vec![2; 33],
        chain_code: Some(vec![9; 32]),
        group_id: "g1".into(),
        participants: vec!["node-1".into(), "node-2".into(), "node-3".into()],
        created_at: 1_700_000_000,
    }
}

#[test]
fn keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = CoordinatorStore::open(dir.path().join("c.db")).unwrap();
    store.insert_key(key("k1")).unwrap();
    store.insert_key(key("k1")).unwrap(); // identical: no-op
    let mut other = key("k1");
    other.public_key = vec![3; 33];
    assert!(matches!(
        store.insert_key(other),
        Err(StoreError::Conflict { what: "key", .. })
    ));
    let mut ed = key("k2");
    ed.curve = Curve::Ed25519;
    ed.chain_code = None;
    ed.created_at += 1;
    store.insert_key(ed.clone()).unwrap();
    assert_eq!(store.get_key("k1").unwrap().unwrap(), key("k1"));
    assert_eq!(store.get_key("k2").unwrap().unwrap(), ed);
    assert!(store.get_key("k3").unwrap().is_none());
    assert_eq!(store.list_keys().unwrap(), vec![key("k1"), ed]);

    let mut bad = key("k4");
    bad.t = 4;
    assert!(matches!(
        store.insert_key(bad),
        Err(StoreError::InvalidInput { field: "t", .. })
    ));
    let mut bad = key("k4");
    bad.n = 2;
    assert!(matches!(
        store.insert_key(bad),
        Err(StoreError::InvalidInput { field: "n", .. })
    ));
    let mut bad = key("k4");
    bad.chain_code = Some(vec![1; 31]);
    assert!(matches!(
        store.insert_key(bad),
        Err(StoreError::InvalidInput { .. })
    ));
    let mut bad = key("k4");
    bad.participants[2] = "node-1".into();
    assert!(matches!(
        store.insert_key(bad),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = CoordinatorStore::open(dir.path().join("c.db")).unwrap();
    let members: Vec<String> = vec!["n2".into(), "n1".into(), "n3".into()];
    store.upsert_group("g1", members.clone(), false).unwrap();
    let g = store.get_group("g1").unwrap().unwrap();
    assert_eq!(g.members, members);
    assert!(!g.aux_ready);
    store.upsert_group("g1", members.clone(), true).unwrap();
    assert!(store.get_group("g1").unwrap().unwrap().aux_ready);
    assert!(matches!(
        store.upsert_group("g1", vec!["n1".into(), "n2".into()], true),
        Err(StoreError::Conflict { .. })
    ));
    // find_group matches the member set in any order and keeps the group's order.
    let found = store
        .find_group(&["n1".into(), "n3".into(), "n2".into()])
        .unwrap()
        .unwrap();
    assert_eq!(found.group_id, "g1");
    assert_eq!(found.members, members);
    assert!(store
        .find_group(&["n1".into(), "n2".into()])
        .unwrap()
        .is_none());
    // A newer group of the same members without aux info is not preferred.
    store.upsert_group("g2", members.clone(), false).unwrap();
    assert_eq!(store.find_group(&members).unwrap().unwrap().group_id, "g1");
}

#[test]
fn request_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = CoordinatorStore::open(&path).unwrap();
    let fp = [1u8; 32];
    let req = r#"{"to":"bc1q...","amount":"1000"}"#;
    assert_eq!(
        store.begin_request("r1", fp, req).unwrap(),
        BeginOutcome::New
    );
    assert_eq!(
        store.begin_request("r1", fp, req).unwrap(),
        BeginOutcome::InProgress
    );
    assert_eq!(
        store.begin_request("r1", [2u8; 32], req).unwrap(),
        BeginOutcome::Conflict
    );
    assert_eq!(store.in_progress_requests().unwrap().len(), 1);

    store.finish_request("r1", r#"{"sig":"ab"}"#).unwrap();
    store.finish_request("r1", r#"{"sig":"ab"}"#).unwrap(); // repeated: no-op
    assert!(matches!(
        store.finish_request("r1", r#"{"sig":"cd"}"#),
        Err(StoreError::RequestNotInProgress {
            state: RequestState::Done,
            ..
        })
    ));
    assert!(matches!(
        store.fail_request("r1", r#"{"e":1}"#),
        Err(StoreError::RequestNotInProgress { .. })
    ));
    assert_eq!(
        store.begin_request("r1", fp, req).unwrap(),
        BeginOutcome::Done(r#"{"sig":"ab"}"#.into())
    );
    assert_eq!(
        store.begin_request("r1", [2u8; 32], req).unwrap(),
        BeginOutcome::Conflict
    );

    assert_eq!(
        store.begin_request("r2", fp, req).unwrap(),
        BeginOutcome::New
    );
    store.fail_request("r2", r#"{"error":"denied"}"#).unwrap();
    assert_eq!(
        store.begin_request("r2", fp, req).unwrap(),
        BeginOutcome::Failed(r#"{"error":"denied"}"#.into())
    );

    assert!(matches!(
        store.finish_request("r9", "{}"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.begin_request("r3", fp, "not json"),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.begin_request("r 3", fp, "{}"),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.finish_request("r2", "{"),
        Err(StoreError::InvalidInput { .. })
    ));

    // A request left in progress by a crash is listed after reopening.
    assert_eq!(
        store.begin_request("r4", fp, req).unwrap(),
        BeginOutcome::New
    );
    drop(store);
    let store = CoordinatorStore::open(&path).unwrap();
    let pending = store.in_progress_requests().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].request_id, "r4");
    assert_eq!(pending[0].fingerprint, fp);
    assert_eq!(pending[0].request_json, req);
    let r1 = store.get_request("r1").unwrap().unwrap();
    assert_eq!(r1.state, RequestState::Done);
    assert_eq!(r1.result_json.as_deref(), Some(r#"{"sig":"ab"}"#));
    assert!(store.get_request("zz").unwrap().is_none());
}

#[test]
fn concurrent_begin_gives_one_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let stores: Vec<_> = (0..2)
        .map(|_| Arc::new(CoordinatorStore::open(&path).unwrap()))
        .collect();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = stores
        .into_iter()
        .map(|s| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..30)
                    .filter(|i| {
                        s.begin_request(&format!("r{i}"), [0; 32], "{}").unwrap()
                            == BeginOutcome::New
                    })
                    .count()
            })
        })
        .collect();
    let news: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(news, 30);
}

#[test]
fn presig_index_claims_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let a = Arc::new(CoordinatorStore::open(&path).unwrap());
    let b = Arc::new(CoordinatorStore::open(&path).unwrap());
    for i in 0..50 {
        a.add_presig(&format!("p{i}"), "k1", &[1, 0]).unwrap();
    }
    a.add_presig("p0", "k1", &[0, 1]).unwrap(); // same: no-op
    assert!(matches!(
        a.add_presig("p0", "k2", &[0, 1]),
        Err(StoreError::Conflict { .. })
    ));
    a.add_presig("q0", "k1", &[0, 2]).unwrap();
    assert_eq!(a.count_presigs("k1", &[0, 1]).unwrap(), 50);

    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [a.clone(), b]
        .into_iter()
        .map(|s| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut got = Vec::new();
                while let Some(id) = s.claim_presig("k1", &[0, 1]).unwrap() {
                    got.push(id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    expected.sort();
    assert_eq!(all, expected);
    // Re-adding a claimed id does not make it available again.
    a.add_presig("p0", "k1", &[0, 1]).unwrap();
    assert_eq!(a.count_presigs("k1", &[0, 1]).unwrap(), 0);

    assert_eq!(a.count_presigs("k1", &[2, 0]).unwrap(), 1);
    assert_eq!(a.drop_presigs("k1", &[0, 2]).unwrap(), 1);
    assert!(a.claim_presig("k1", &[0, 2]).unwrap().is_none());
    assert_eq!(a.purge_presigs(i64::MAX).unwrap(), 51);
}

#[test]
fn tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = CoordinatorStore::open(&path).unwrap();
    let t1 = store.issue_token("payments").unwrap();
    assert!(t1.starts_with("kf_") && t1.len() == 67, "{}", t1.as_str());
    let t2 = store.issue_token("treasury").unwrap();
    assert_ne!(t1.as_str(), t2.as_str());
    assert!(matches!(
        store.issue_token("payments"),
        Err(StoreError::Conflict { .. })
    ));

    let info = store.verify_token(&t1).unwrap().unwrap();
    assert_eq!(info.name, "payments");
    assert_eq!(store.verify_token(&t2).unwrap().unwrap().name, "treasury");
    // Near misses and junk fail without error.
    let mut wrong = t1.to_string();
    wrong.pop();
    wrong.push(if t1.ends_with('0') { '1' } else { '0' });
    for bad in [
        wrong.as_str(),
        "",
        "kf_",
        "kf_zz",
        &t1.to_uppercase(),
        &"x".repeat(100_000),
    ] {
        assert!(store.verify_token(bad).unwrap().is_none(), "{bad}");
    }

    // The database never holds the token, only its hash.
    let bytes = db_bytes(&path);
    for t in [&t1, &t2] {
        assert!(!contains(&bytes, t.as_bytes()));
        assert!(!contains(&bytes, &t.as_bytes()[3..]));
        assert!(!contains(&bytes, &hex::decode(&t[3..]).unwrap()));
    }

    store.revoke_token("payments").unwrap();
    assert!(store.verify_token(&t1).unwrap().is_none());
    assert!(matches!(
        store.revoke_token("payments"),
        Err(StoreError::NotFound { .. })
    ));
    // Rotation: a new token under the same name.
    let t3 = store.issue_token("payments").unwrap();
    assert_eq!(store.verify_token(&t3).unwrap().unwrap().name, "payments");
    assert!(store.verify_token(&t1).unwrap().is_none());

    let list = store.list_tokens().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list[0].revoked_at.is_some());
    assert!(list[1].revoked_at.is_none() && list[2].revoked_at.is_none());
    assert!(!format!("{list:?}").contains(&t3[3..]));
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(CoordinatorStore::open(&path).unwrap());
    set_schema_version(&path, 3);
    assert!(matches!(
        CoordinatorStore::open(&path),
        Err(StoreError::SchemaTooNew {
            found: 3,
            supported: 2,
            ..
        })
    ));
}

#[test]
fn a_failed_request_can_be_retried_with_the_same_payload_only() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        keyfold_store::coordinator::CoordinatorStore::open(dir.path().join("c.db")).unwrap();
    let fp = [7u8; 32];
    assert_eq!(
        store.begin_request("r-1", fp, "{}").unwrap(),
        keyfold_store::coordinator::BeginOutcome::New
    );
    store
        .fail_request("r-1", r#"{"error":"no quorum"}"#)
        .unwrap();
    assert!(
        !store.retry_failed_request("r-1", [8u8; 32]).unwrap(),
        "other payload"
    );
    assert!(store.retry_failed_request("r-1", fp).unwrap());
    assert_eq!(
        store.begin_request("r-1", fp, "{}").unwrap(),
        keyfold_store::coordinator::BeginOutcome::InProgress
    );
    assert!(
        !store.retry_failed_request("r-1", fp).unwrap(),
        "not failed any more"
    );
    store.finish_request("r-1", r#"{"ok":true}"#).unwrap();
    assert!(
        !store.retry_failed_request("r-1", fp).unwrap(),
        "done stays done"
    );
}
