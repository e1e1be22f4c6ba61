//! The policy shadows' tables: one shadow installed at a time (a new one
//! replaces it), an end only of the installed shadow, decisions counted
//! and the differing ones paged newest first per shadow, bounds refused
//! with the field named, and a schema-13 store upgraded with the tables.
mod common;

use keyfold_store::{
    CoordinatorStore, GroupOutcome, Op, ShadowDecisionRow, ShadowOp, ShadowRow, StoreError,
};

fn store(dir: &tempfile::TempDir) -> CoordinatorStore {
    CoordinatorStore::open(dir.path().join("c.db")).unwrap()
}

fn commit(s: &CoordinatorStore, op: ShadowOp) -> Result<(), StoreError> {
    let job = [Op::Shadow(op)];
    match s.apply_group::<()>(&[&job], false, |_| Ok(None)) {
        GroupOutcome::Committed(mut r) => r.remove(0),
        other => panic!("{other:?}"),
    }
}

fn install(id: i64, version: u64, at: i64) -> ShadowOp {
    ShadowOp::Install(ShadowRow {
        shadow_id: id,
        version,
        document: format!("version = {version}\n"),
        update_json: r#"{"document_toml":"","signatures":[]}"#.into(),
        installed_at: at,
        removed_at: None,
        end_action: None,
    })
}

fn decision(shadow_id: i64, request: &str, differs: bool) -> ShadowOp {
    ShadowOp::Decision(ShadowDecisionRow {
        seq: 0,
        shadow_id,
        request_id: request.into(),
        shadow_version: 2,
        at: 100,
        in_force_json: r#"{"outcome":"allow","rule":"small"}"#.into(),
        shadow_json: if differs {
            r#"{"outcome":"deny","rule":"cap","reason":"too much"}"#.into()
        } else {
            r#"{"outcome":"allow","rule":"small"}"#.into()
        },
        differs,
    })
}

#[test]
fn one_shadow_is_installed_at_a_time_and_ends_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert_eq!(s.installed_shadow().unwrap(), None);
    assert_eq!(s.next_shadow_id().unwrap(), 1);
    commit(&s, install(1, 2, 10)).unwrap();
    assert!(matches!(
        commit(&s, install(1, 3, 11)),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.next_shadow_id().unwrap(), 2);
    commit(&s, install(2, 3, 12)).unwrap();
    let first = s.shadow(1).unwrap().unwrap();
    assert_eq!(
        (first.removed_at, first.end_action.as_deref()),
        (Some(12), Some("replaced"))
    );
    let installed = s.installed_shadow().unwrap().unwrap();
    assert_eq!((installed.shadow_id, installed.version), (2, 3));
    // Only the installed shadow ends, and only once.
    let end = |id, action: &str| ShadowOp::End {
        shadow_id: id,
        action: action.into(),
        at: 20,
    };
    assert!(matches!(
        commit(&s, end(1, "removed")),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        commit(&s, end(2, "replaced")),
        Err(StoreError::InvalidInput {
            field: "action",
            ..
        })
    ));
    commit(&s, end(2, "ended")).unwrap();
    assert!(matches!(
        commit(&s, end(2, "removed")),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.installed_shadow().unwrap(), None);
    assert_eq!(
        s.shadow(2).unwrap().unwrap().end_action.as_deref(),
        Some("ended")
    );
}

#[test]
fn decisions_are_counted_and_the_differing_ones_paged_per_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    commit(&s, install(1, 2, 10)).unwrap();
    for (i, differs) in [false, true, false, true, true].into_iter().enumerate() {
        commit(&s, decision(1, &format!("r-{i}"), differs)).unwrap();
    }
    // Another shadow's decisions never mix in.
    commit(&s, decision(7, "other", true)).unwrap();
    assert_eq!(s.shadow_counts(1).unwrap(), (5, 3));
    assert_eq!(s.shadow_counts(3).unwrap(), (0, 0));
    let page = s.shadow_differences(1, None, 2).unwrap();
    let ids: Vec<_> = page.iter().map(|d| d.request_id.as_str()).collect();
    assert_eq!(ids, ["r-4", "r-3"], "newest first");
    assert!(page.iter().all(|d| d.differs && d.shadow_id == 1));
    let next = s
        .shadow_differences(1, Some(page[1].seq), 2)
        .unwrap()
        .into_iter()
        .map(|d| d.request_id)
        .collect::<Vec<_>>();
    assert_eq!(next, ["r-1"]);
    // A limit of 0 still answers one row; a huge one is capped.
    assert_eq!(s.shadow_differences(1, None, 0).unwrap().len(), 1);
    assert_eq!(s.shadow_differences(1, None, usize::MAX).unwrap().len(), 3);
}

#[test]
fn out_of_bounds_writes_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert!(matches!(
        commit(&s, install(0, 2, 10)),
        Err(StoreError::InvalidInput {
            field: "shadow_id",
            ..
        })
    ));
    assert!(matches!(
        commit(&s, install(1, u64::MAX, 10)),
        Err(StoreError::InvalidInput {
            field: "version",
            ..
        })
    ));
    let mut bad = decision(1, "r", true);
    if let ShadowOp::Decision(d) = &mut bad {
        d.shadow_json = "{not json".into();
    }
    assert!(matches!(
        commit(&s, bad),
        Err(StoreError::InvalidInput {
            field: "shadow_json",
            ..
        })
    ));
    let mut long = decision(1, "r", true);
    if let ShadowOp::Decision(d) = &mut long {
        d.in_force_json = format!("\"{}\"", "x".repeat(9000));
    }
    assert!(matches!(
        commit(&s, long),
        Err(StoreError::InvalidInput {
            field: "in_force_json",
            ..
        })
    ));
    assert!(matches!(
        commit(&s, decision(1, "with space", false)),
        Err(StoreError::InvalidInput {
            field: "request_id",
            ..
        })
    ));
    assert_eq!(s.shadow_counts(1).unwrap(), (0, 0));
}

/// A schema-13 store (the previous release: no shadows) is upgraded, and
/// takes shadows and their decisions at once.
#[test]
fn a_schema_13_store_is_upgraded_with_the_shadow_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(CoordinatorStore::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE policy_shadow_decisions; DROP TABLE policy_shadows;")
            .unwrap();
    }
    common::set_schema_version(&path, 13);
    let s = CoordinatorStore::open(&path).unwrap();
    commit(&s, install(1, 2, 10)).unwrap();
    commit(&s, decision(1, "r-1", true)).unwrap();
    assert_eq!(s.shadow_counts(1).unwrap(), (1, 1));
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // Upgraded through 14 (this module's tables) and every later migration.
    let latest = keyfold_store::coordinator::COORDINATOR_SCHEMA_VERSION;
    assert!(latest >= 14);
    assert_eq!(v, latest.to_string());
}
