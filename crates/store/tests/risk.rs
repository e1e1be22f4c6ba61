//! The risk module's tables: decisions and refused device signatures share
//! the engine's numbering, customers' sealed authentication state, raw
//! request context and its purge, and the upgrade of a schema-11 store.
mod common;

use common::sealer;
use keyfold_store::{
    Aad, CoordinatorStore, GroupOutcome, ObjectType, Op, RiskDecisionRow, RiskOp, RiskRefusalRow,
    RiskStepRow, StoreError, MAX_SEALED_CUSTOMER_AUTH,
};

fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
    CoordinatorStore::open(dir.path().join("c.db")).unwrap()
}

/// Commits each op as its own job of one group; returns each job's result.
fn commit(s: &CoordinatorStore, ops: Vec<RiskOp>) -> Vec<Result<(), StoreError>> {
    let jobs: Vec<[Op; 1]> = ops.into_iter().map(|o| [Op::Risk(o)]).collect();
    let refs: Vec<&[Op]> = jobs.iter().map(|j| j.as_slice()).collect();
    match s.apply_group::<()>(&refs, false, |_| Ok(None)) {
        GroupOutcome::Committed(r) => r,
        other => panic!("{other:?}"),
    }
}

fn commit_one(s: &CoordinatorStore, op: RiskOp) -> Result<(), StoreError> {
    commit(s, vec![op]).remove(0)
}

fn decision(seq: u64, request_id: &str) -> RiskOp {
    RiskOp::InsertDecision {
        seq,
        request_id: request_id.into(),
        at: 1000 + seq as i64,
        input_json: format!("{{\"d\":{seq}}}"),
        decision_json: "{}".into(),
    }
}

fn refusal(seq: u64, request_id: &str) -> RiskOp {
    RiskOp::InsertRefusal {
        seq,
        request_id: request_id.into(),
        at: 1000 + seq as i64,
        input_json: format!("{{\"r\":{seq}}}"),
    }
}

#[test]
fn decisions_and_refusals_share_one_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert_eq!(s.risk_steps_since(0).unwrap(), (vec![], 0));
    let r = commit(
        &s,
        vec![
            refusal(1, "r-x1"),
            decision(2, "r-1"),
            refusal(3, "r-x2"),
            refusal(4, "r-x2"), // one request may be refused again
            decision(5, "r-2"),
        ],
    );
    assert!(r.iter().all(Result::is_ok), "{r:?}");

    let (steps, last) = s.risk_steps_since(0).unwrap();
    assert_eq!(last, 5);
    let seqs: Vec<u64> = steps.iter().map(RiskStepRow::seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(
        steps[0],
        RiskStepRow::Refusal(RiskRefusalRow {
            seq: 1,
            request_id: "r-x1".into(),
            at: 1001,
            input_json: "{\"r\":1}".into(),
        })
    );
    assert_eq!(
        steps[1],
        RiskStepRow::Decision(RiskDecisionRow {
            seq: 2,
            request_id: "r-1".into(),
            at: 1002,
            input_json: "{\"d\":2}".into(),
            decision_json: "{}".into(),
        })
    );
    assert_eq!(
        s.risk_refusal(3).unwrap().map(|r| r.request_id),
        Some("r-x2".into())
    );
    assert_eq!(s.risk_refusal(2).unwrap(), None, "a decision's seq");
    assert_eq!(s.risk_refusal(9).unwrap(), None);
    assert!(matches!(
        s.risk_refusal(u64::MAX),
        Err(StoreError::InvalidInput { .. })
    ));
    // Every step, whatever the first seq kept.
    assert_eq!(s.risk_steps_since(i64::MIN).unwrap().0.len(), 5);
    // From a later step on.
    let (steps, last) = s.risk_steps_since(3).unwrap();
    assert_eq!(last, 5);
    let seqs: Vec<u64> = steps.iter().map(RiskStepRow::seq).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(s.risk_steps_since(5).unwrap(), (vec![], 5));

    // The decisions alone, as before; the last seq counts refusals too.
    let (decisions, last) = s.risk_decisions_since(0).unwrap();
    assert_eq!(decisions.iter().map(|d| d.seq).collect::<Vec<_>>(), [2, 5]);
    assert_eq!(last, 5);
    commit_one(&s, refusal(6, "r-x3")).unwrap();
    assert_eq!(s.risk_decisions_since(0).unwrap().1, 6);
}

#[test]
fn a_seq_taken_by_either_kind_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    commit_one(&s, decision(1, "r-1")).unwrap();
    commit_one(&s, refusal(2, "r-x1")).unwrap();
    for op in [
        refusal(1, "r-x2"),
        refusal(2, "r-x2"),
        decision(2, "r-2"),
        decision(1, "r-3"),
    ] {
        let e = commit_one(&s, op.clone());
        assert!(
            matches!(e, Err(StoreError::Conflict { .. })),
            "{op:?}: {e:?}"
        );
    }
    // Nothing was written by the refused ops.
    let (steps, last) = s.risk_steps_since(0).unwrap();
    assert_eq!((steps.len(), last), (2, 2));
    // Within one group too: the second job's seq is taken by the first.
    let r = commit(&s, vec![decision(3, "r-4"), refusal(3, "r-x3")]);
    assert!(r[0].is_ok());
    assert!(matches!(r[1], Err(StoreError::Conflict { .. })), "{r:?}");
}

#[test]
fn refusal_ops_are_validated_before_sql() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let bad = [
        RiskOp::InsertRefusal {
            seq: 1,
            request_id: "".into(),
            at: 1,
            input_json: "{}".into(),
        },
        RiskOp::InsertRefusal {
            seq: 1,
            request_id: "r 1".into(),
            at: 1,
            input_json: "{}".into(),
        },
        RiskOp::InsertRefusal {
            seq: 1,
            request_id: "r-1".into(),
            at: 1,
            input_json: "{not json".into(),
        },
        RiskOp::InsertRefusal {
            seq: u64::MAX,
            request_id: "r-1".into(),
            at: 1,
            input_json: "{}".into(),
        },
    ];
    for op in bad {
        let e = commit_one(&s, op.clone());
        assert!(
            matches!(e, Err(StoreError::InvalidInput { .. })),
            "{op:?}: {e:?}"
        );
    }
    assert_eq!(s.risk_steps_since(0).unwrap(), (vec![], 0));
}

#[test]
fn customer_auth_is_stored_sealed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert_eq!(s.customer_auth("cu_1").unwrap(), None);
    // The coordinator seals the state under its own object type.
    let sealer = sealer();
    let aad = Aad::new("coordinator", ObjectType::CustomerAuth, "cu_1", 1);
    let plain = br#"{"kyc_tier":"basic","devices":{}}"#;
    let sealed = sealer.seal(&aad, plain).unwrap();
    commit_one(
        &s,
        RiskOp::PutCustomerAuth {
            customer: "cu_1".into(),
            sealed: sealed.clone(),
            at: 10,
        },
    )
    .unwrap();
    let stored = s.customer_auth("cu_1").unwrap().unwrap();
    assert_eq!(stored, sealed);
    assert_eq!(sealer.open(&aad, &stored).unwrap().as_slice(), plain);
    // Not under another object type.
    let other = Aad::new("coordinator", ObjectType::Backup, "cu_1", 1);
    assert!(sealer.open(&other, &stored).is_err());
    // Nothing of the plaintext on disk.
    assert!(!common::contains(
        &common::db_bytes(&dir.path().join("c.db")),
        b"kyc_tier"
    ));

    // Insert or replace.
    commit_one(
        &s,
        RiskOp::PutCustomerAuth {
            customer: "cu_1".into(),
            sealed: vec![2; 40],
            at: 20,
        },
    )
    .unwrap();
    assert_eq!(s.customer_auth("cu_1").unwrap(), Some(vec![2; 40]));
    assert_eq!(s.customer_auth("cu_2").unwrap(), None);
}

#[test]
fn customer_auth_sizes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let put = |customer: &str, sealed: Vec<u8>| RiskOp::PutCustomerAuth {
        customer: customer.into(),
        sealed,
        at: 1,
    };
    let long = "c".repeat(129);
    for op in [
        put(&long, vec![1]),
        put("", vec![1]),
        put("cu|1", vec![1]),
        put("cu_1", vec![]),
        put("cu_1", vec![0; MAX_SEALED_CUSTOMER_AUTH + 1]),
    ] {
        let e = commit_one(&s, op);
        assert!(matches!(e, Err(StoreError::InvalidInput { .. })), "{e:?}");
    }
    commit_one(&s, put(&"c".repeat(128), vec![0; MAX_SEALED_CUSTOMER_AUTH])).unwrap();
    assert!(matches!(
        s.customer_auth(&long),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn raw_context_is_kept_once_and_purged_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let raw = |id: &str, at: i64, ip: Option<&str>| RiskOp::InsertRawContext {
        request_id: id.into(),
        at,
        ip: ip.map(str::to_string),
    };
    let r = commit(
        &s,
        vec![
            raw("r-1", 100, Some("192.0.2.7")),
            raw("r-2", 200, Some("2001:db8::1")),
            raw("r-3", 300, None),
        ],
    );
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    // Insert or ignore: the first context of a request stays.
    commit_one(&s, raw("r-1", 999, Some("198.51.100.1"))).unwrap();
    assert_eq!(
        s.raw_context("r-1").unwrap(),
        Some((100, Some("192.0.2.7".into())))
    );
    assert_eq!(s.raw_context("r-3").unwrap(), Some((300, None)));
    assert_eq!(s.raw_context("r-9").unwrap(), None);
    for bad in [
        raw("r-4", 1, Some("not an ip")),
        raw("r-4", 1, Some("")),
        raw("", 1, None),
    ] {
        let e = commit_one(&s, bad);
        assert!(matches!(e, Err(StoreError::InvalidInput { .. })), "{e:?}");
    }

    // Strictly before: r-2, made at 200, stays at 200.
    assert_eq!(s.purge_raw_context(200).unwrap(), 1);
    assert_eq!(s.raw_context("r-1").unwrap(), None);
    assert!(s.raw_context("r-2").unwrap().is_some());
    assert_eq!(s.purge_raw_context(200).unwrap(), 0);
    assert_eq!(s.purge_raw_context(i64::MAX).unwrap(), 2);
    assert_eq!(s.raw_context("r-3").unwrap(), None);
}

/// A schema-11 store (the previous release: risk decisions, no refusals,
/// customer auth or raw context) is upgraded, its decisions kept.
#[test]
fn a_schema_11_store_is_upgraded_to_12() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let s = CoordinatorStore::open(&path).unwrap();
        commit(&s, vec![decision(1, "r-1"), decision(2, "r-2")]);
    }
    // Back to what release 11 left: without this release's tables.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TABLE risk_refusals; DROP TABLE customer_auth; DROP TABLE risk_raw_context;
             DROP TABLE schedule_occurrences; DROP TABLE schedules;
             DROP TABLE policy_shadow_decisions; DROP TABLE policy_shadows;
             DROP TABLE escrows;",
        )
        .unwrap();
    }
    common::set_schema_version(&path, 11);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'risk_refusals'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0);
    }
    let s = CoordinatorStore::open(&path).unwrap();
    let (steps, last) = s.risk_steps_since(0).unwrap();
    assert_eq!((steps.len(), last), (2, 2));
    commit_one(&s, refusal(3, "r-x1")).unwrap();
    assert!(matches!(
        commit_one(&s, refusal(2, "r-x1")),
        Err(StoreError::Conflict { .. })
    ));
    commit_one(
        &s,
        RiskOp::PutCustomerAuth {
            customer: "cu_1".into(),
            sealed: vec![1],
            at: 1,
        },
    )
    .unwrap();
    commit_one(
        &s,
        RiskOp::InsertRawContext {
            request_id: "r-3".into(),
            at: 5,
            ip: None,
        },
    )
    .unwrap();
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Upgraded through every later migration too.
    assert_eq!(
        v,
        keyfold_store::coordinator::COORDINATOR_SCHEMA_VERSION.to_string()
    );
}
