//! The schedules' tables: a schedule is recorded once, its state moves only
//! from the state the caller read, each occurrence is recorded once and in
//! turn (two coordinators racing on one record it once), and a schema-12
//! store is upgraded with the new tables.
mod common;

use keyfold_store::{
    CoordinatorStore, GroupOutcome, OccurrenceRow, Op, ScheduleOp, ScheduleRow, StoreError,
};

fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
    CoordinatorStore::open(dir.path().join("c.db")).unwrap()
}

fn commit(s: &CoordinatorStore, op: ScheduleOp) -> Result<(), StoreError> {
    let job = [Op::Schedule(op)];
    match s.apply_group::<()>(&[&job], false, |_| Ok(None)) {
        GroupOutcome::Committed(mut r) => r.remove(0),
        other => panic!("{other:?}"),
    }
}

fn row(id: &str, merchant: Option<&str>) -> ScheduleRow {
    ScheduleRow {
        schedule_id: id.into(),
        merchant_id: merchant.map(str::to_string),
        client: "ops".into(),
        fingerprint: vec![1; 32],
        spec_json: "{}".into(),
        state: "active".into(),
        next_occurrence: 0,
        created_at: 10,
        updated_at: 10,
    }
}

fn occurrence(id: &str, n: u64) -> ScheduleOp {
    ScheduleOp::Occurrence(OccurrenceRow {
        schedule_id: id.into(),
        occurrence: n,
        due_at: 100 + n as i64,
        outcome: "paid".into(),
        payout_id: Some(format!("{id}.{n}")),
        reason: None,
        at: 200,
    })
}

#[test]
fn a_schedule_is_recorded_once_and_occurrences_only_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    commit(&s, ScheduleOp::Insert(row("a", None))).unwrap();
    assert!(matches!(
        commit(&s, ScheduleOp::Insert(row("a", None))),
        Err(StoreError::Conflict { .. })
    ));
    commit(&s, occurrence("a", 0)).unwrap();
    // The same occurrence again (a second coordinator) and one out of turn.
    for n in [0, 2] {
        assert!(matches!(
            commit(&s, occurrence("a", n)),
            Err(StoreError::Conflict { .. })
        ));
    }
    commit(&s, occurrence("a", 1)).unwrap();
    assert_eq!(s.schedule("a").unwrap().unwrap().next_occurrence, 2);
    let o = s.schedule_occurrences("a", 10).unwrap();
    assert_eq!(
        o.iter().map(|o| o.occurrence).collect::<Vec<_>>(),
        [1, 0],
        "newest first"
    );
    assert_eq!(o[1].payout_id.as_deref(), Some("a.0"));
}

#[test]
fn a_state_moves_only_from_the_state_the_caller_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    commit(&s, ScheduleOp::Insert(row("b", Some("m_1")))).unwrap();
    let set = |from: &str, to: &str| ScheduleOp::SetState {
        schedule_id: "b".into(),
        from: from.into(),
        to: to.into(),
        at: 20,
    };
    commit(&s, set("active", "paused")).unwrap();
    assert!(matches!(
        commit(&s, set("active", "cancelled")),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        commit(&s, set("paused", "gone")),
        Err(StoreError::InvalidInput { field: "to", .. })
    ));
    commit(&s, set("paused", "cancelled")).unwrap();
    assert_eq!(s.schedule("b").unwrap().unwrap().state, "cancelled");
}

#[test]
fn schedules_are_listed_by_state_owner_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    for (id, m) in [
        ("s1", None),
        ("s2", Some("m_1")),
        ("s3", Some("m_1")),
        ("s4", Some("m_2")),
    ] {
        commit(&s, ScheduleOp::Insert(row(id, m))).unwrap();
    }
    commit(
        &s,
        ScheduleOp::SetState {
            schedule_id: "s3".into(),
            from: "active".into(),
            to: "cancelled".into(),
            at: 1,
        },
    )
    .unwrap();
    let ids = |rows: Vec<ScheduleRow>| rows.into_iter().map(|r| r.schedule_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.schedules(&[], None, None, 10).unwrap()),
        ["s1", "s2", "s3", "s4"]
    );
    assert_eq!(
        ids(s.schedules(&["active"], None, None, 10).unwrap()),
        ["s1", "s2", "s4"]
    );
    assert_eq!(
        ids(s.schedules(&[], Some(Some("m_1")), None, 10).unwrap()),
        ["s2", "s3"]
    );
    assert_eq!(ids(s.schedules(&[], Some(None), None, 10).unwrap()), ["s1"]);
    assert_eq!(ids(s.schedules(&[], None, Some("s2"), 1).unwrap()), ["s3"]);
    assert!(matches!(
        s.schedules(&["bogus' OR 1=1 --"], None, None, 10),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn a_schema_12_store_is_upgraded_with_the_schedule_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(CoordinatorStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        // Back to release 12: without this release's tables or later ones.
        c.execute_batch(
            "DROP TABLE schedule_occurrences; DROP TABLE schedules;
             DROP TABLE policy_shadow_decisions; DROP TABLE policy_shadows;
             DROP TABLE escrows;",
        )
        .unwrap();
    }
    common::set_schema_version(&path, 12);
    let s = CoordinatorStore::open(&path).unwrap();
    commit(&s, ScheduleOp::Insert(row("c", None))).unwrap();
    commit(&s, occurrence("c", 0)).unwrap();
    assert_eq!(s.schedule("c").unwrap().unwrap().next_occurrence, 1);
}

/// Escrows (the table after the schedules'): an escrow ends once, only
/// from held, and releases are recorded once each while it is held.
#[test]
fn an_escrow_ends_once_and_takes_releases_only_while_held() {
    use keyfold_store::{EscrowOp, EscrowRow};
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let job = |op: EscrowOp| {
        let job = [Op::Escrow(op)];
        match s.apply_group::<()>(&[&job], false, |_| Ok(None)) {
            GroupOutcome::Committed(mut r) => r.remove(0),
            other => panic!("{other:?}"),
        }
    };
    let row = EscrowRow {
        escrow_id: "e".into(),
        merchant_id: None,
        client: "ops".into(),
        fingerprint: vec![2; 32],
        spec_json: "{}".into(),
        state: "held".into(),
        released_by: Vec::new(),
        from_block: Some(7),
        reason: None,
        payout_id: None,
        created_at: 1,
        updated_at: 1,
    };
    job(EscrowOp::Insert(row.clone())).unwrap();
    assert!(matches!(
        job(EscrowOp::Insert(row)),
        Err(StoreError::Conflict { .. })
    ));
    let release = |who: &str| EscrowOp::AddRelease {
        escrow_id: "e".into(),
        client: who.into(),
        at: 2,
    };
    job(release("bob")).unwrap();
    job(release("alice")).unwrap();
    job(release("bob")).unwrap();
    assert_eq!(
        s.escrow("e").unwrap().unwrap().released_by,
        ["alice", "bob"]
    );
    let end = |state: &str| EscrowOp::End {
        escrow_id: "e".into(),
        state: state.into(),
        reason: "why".into(),
        payout_id: Some("e.pay".into()),
        at: 3,
    };
    job(end("released")).unwrap();
    assert!(matches!(
        job(end("cancelled")),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        job(release("carol")),
        Err(StoreError::Conflict { .. })
    ));
    let e = s.escrow("e").unwrap().unwrap();
    assert_eq!(
        (e.state.as_str(), e.payout_id.as_deref(), e.from_block),
        ("released", Some("e.pay"), Some(7))
    );
    assert!(s.held_escrows(None, 10).unwrap().is_empty());
    assert!(matches!(
        job(end("held")),
        Err(StoreError::InvalidInput { .. })
    ));
}
