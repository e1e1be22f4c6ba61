//! Coordinator store: keys, groups, requests (the upgrade from the
//! two-table schema, concurrent writers), key creation requests,
//! presignature index, API tokens, schema checks.

mod common;

use std::sync::{Arc, Barrier};

use common::{contains, db_bytes, set_schema_version};
use keyfold_store::{
    CoordinatorStore, Curve, GroupOutcome, KeyRecord, KeyRequest, NewRequest, Op, RequestUpdate,
    StoreError,
};

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

/// The schema 2 tables as a coordinator of the previous release made them
/// (frozen here: they are history).
const SCHEMA_2: &str = "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    INSERT INTO meta VALUES ('kind', 'coordinator'), ('schema_version', '2');
    CREATE TABLE keys (key_id TEXT PRIMARY KEY, curve TEXT NOT NULL, t INTEGER NOT NULL,
        n INTEGER NOT NULL, public_key BLOB NOT NULL, chain_code BLOB, group_id TEXT NOT NULL,
        participants TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT;
    CREATE TABLE groups (group_id TEXT PRIMARY KEY, members TEXT NOT NULL,
        members_key TEXT NOT NULL, aux_ready INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;
    CREATE INDEX groups_by_members ON groups (members_key);
    CREATE TABLE requests (request_id TEXT PRIMARY KEY, fingerprint BLOB NOT NULL,
        request_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_progress', 'done', 'failed')),
        result_json TEXT, error_json TEXT, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL) STRICT;
    CREATE INDEX requests_by_state ON requests (state);
    CREATE TABLE presigs (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, signer_set TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('available', 'claimed', 'dropped')),
        created_at INTEGER NOT NULL, changed_at INTEGER NOT NULL) STRICT;
    CREATE INDEX presigs_pool ON presigs (key_id, signer_set, state);
    CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE, created_at INTEGER NOT NULL, revoked_at INTEGER) STRICT;
    CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
    CREATE TABLE intents (request_id TEXT PRIMARY KEY, fingerprint BLOB NOT NULL,
        intent_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('pending_approval', 'time_locked', 'approved', 'denied', 'signed', 'failed')),
        decision_json TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL) STRICT;
    CREATE INDEX intents_by_state ON intents (state);
    CREATE TABLE approvals (nonce BLOB PRIMARY KEY, request_id TEXT NOT NULL,
        approval_json TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT;
    CREATE INDEX approvals_by_request ON approvals (request_id);
";

fn intent(key: &str, initiator: &str) -> String {
    serde_json::json!({
        "key_id": key,
        "request": {"id": "x", "initiator": initiator},
        "hash": null, "path": null,
    })
    .to_string()
}

#[test]
fn a_schema_2_store_is_upgraded_with_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(SCHEMA_2).unwrap();
        let k = "00112233445566778899aabbccddeeff";
        for (id, state, decision) in [
            (
                "signed-1",
                "signed",
                Some(r#"{"outcome":{"outcome":"allow"},"evaluated_at":1700000100}"#),
            ),
            (
                "denied-1",
                "denied",
                Some(r#"{"outcome":{"outcome":"deny","reason":"x"}}"#),
            ),
            ("waiting-1", "pending_approval", None),
            ("failed-1", "failed", None),
        ] {
            c.execute(
                "INSERT INTO intents VALUES (?1, zeroblob(32), ?2, ?3, ?4, 1700000000, 1700000200)",
                rusqlite::params![id, intent(k, "payments"), state, decision],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO requests VALUES ('signed-1', zeroblob(32), '{}', 'done', '{\"sig\":\"ab\"}', NULL, 1, 2)",
            [],
        )
        .unwrap();
        // A request from before the policy existed: only its result.
        c.execute(
            "INSERT INTO requests VALUES ('old-1', zeroblob(32), '{}', 'done', '{\"sig\":\"cd\"}', NULL, 1, 2)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO approvals VALUES (X'05050505050505050505050505050505', 'waiting-1', '{}', 5)",
            [],
        )
        .unwrap();
    }
    let store = CoordinatorStore::open(&path).unwrap();
    let row = |id: &str| store.get_request(id).unwrap().unwrap();
    let signed = row("signed-1");
    assert_eq!(signed.state, "completed");
    assert_eq!(signed.result_json.as_deref(), Some(r#"{"sig":"ab"}"#));
    assert_eq!(
        signed.spent_at,
        Some(1_700_000_100),
        "counts from its decision"
    );
    assert_eq!(signed.initiator, "payments");
    assert_eq!(signed.key_id, "00112233445566778899aabbccddeeff");
    assert_eq!(row("denied-1").state, "rejected");
    assert_eq!(row("denied-1").spent_at, None);
    assert_eq!(row("waiting-1").state, "pending_approval");
    assert_eq!(row("failed-1").state, "failed");
    let old = row("old-1");
    assert_eq!(old.state, "completed");
    assert!(old.request_json.is_none());
    assert_eq!(old.result_json.as_deref(), Some(r#"{"sig":"cd"}"#));
    assert_eq!(store.approvals_for("waiting-1").unwrap().len(), 1);
    assert_eq!(store.transitions("signed-1").unwrap().len(), 1);
    assert_eq!(store.spent_requests().unwrap().len(), 1);
    assert_eq!(store.audit_applied().unwrap(), 0);
}

fn insert(id: &str) -> Op {
    Op::InsertRequest(NewRequest {
        request_id: id.into(),
        fingerprint: [0; 32],
        key_id: "00112233445566778899aabbccddeeff".into(),
        initiator: "payments".into(),
        request_json: "{}".into(),
        update: RequestUpdate {
            state: "approved".into(),
            lifecycle_json: "{}".into(),
            ..Default::default()
        },
        at: 1,
    })
}

#[test]
fn two_writers_record_each_request_once() {
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
                        let ops = [insert(&format!("r{i}"))];
                        match s.apply_group::<()>(&[&ops], false, |_| Ok(None)) {
                            GroupOutcome::Committed(r) => r[0].is_ok(),
                            other => panic!("{other:?}"),
                        }
                    })
                    .count()
            })
        })
        .collect();
    let firsts: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(firsts, 30);
}

#[test]
fn key_creation_requests_are_idempotent_and_retried_after_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = CoordinatorStore::open(&path).unwrap();
    assert_eq!(
        store.begin_key_request("k-1", [1; 32], None).unwrap(),
        KeyRequest::New
    );
    assert_eq!(
        store.begin_key_request("k-1", [1; 32], None).unwrap(),
        KeyRequest::InProgress
    );
    assert_eq!(
        store.begin_key_request("k-1", [2; 32], None).unwrap(),
        KeyRequest::Conflict
    );
    store.finish_key_request("k-1", Ok("abc")).unwrap();
    assert_eq!(
        store.begin_key_request("k-1", [1; 32], None).unwrap(),
        KeyRequest::Done("abc".into())
    );
    // A failure may be retried; a crash leaves it failed, not in progress.
    assert_eq!(
        store.begin_key_request("k-2", [1; 32], None).unwrap(),
        KeyRequest::New
    );
    store.finish_key_request("k-2", Err("quorum")).unwrap();
    assert_eq!(
        store.begin_key_request("k-2", [1; 32], None).unwrap(),
        KeyRequest::Retry("quorum".into())
    );
    assert_eq!(store.fail_unfinished_key_requests().unwrap(), 1);
    drop(store);
    let store = CoordinatorStore::open(&path).unwrap();
    assert!(matches!(
        store.begin_key_request("k-2", [1; 32], None).unwrap(),
        KeyRequest::Retry(_)
    ));
    assert!(store.begin_key_request("bad id", [1; 32], None).is_err());
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
    let newer = keyfold_store::coordinator::COORDINATOR_SCHEMA_VERSION + 1;
    set_schema_version(&path, newer);
    assert!(matches!(
        CoordinatorStore::open(&path),
        Err(StoreError::SchemaTooNew {
            found,
            supported: keyfold_store::coordinator::COORDINATOR_SCHEMA_VERSION,
            ..
        }) if found == newer
    ));
}
