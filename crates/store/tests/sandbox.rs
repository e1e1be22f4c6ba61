//! Merchants' sandboxes in the coordinator's store: a sandbox key has the
//! `kfm_test_` prefix and authenticates as the sandbox twin (never as the
//! live merchant), a live id can never take the sandbox form, disabling
//! the live merchant stops its sandbox keys, the twin's objects are its own,
//! and a schema-15 store is upgraded with the link table.

mod common;

use keyfold_store::{
    CoordinatorStore, NewMerchant, NewPayout, Recorded, StoreError, SANDBOX_KEY_PREFIX,
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
    vec!["payouts:read".into(), "payouts:write".into()]
}

#[test]
fn a_sandbox_key_has_the_test_prefix_and_authenticates_as_the_twin_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    let live = s
        .issue_merchant_key("acme", "live", &scopes(), 100, None)
        .unwrap();
    let twin = s.sandbox_merchant("acme", 110).unwrap();
    assert_eq!(twin.merchant_id, "acme.sandbox");
    assert_eq!(twin.sandbox_of(), Some("acme"));
    assert_eq!((twin.rate_burst, twin.rate_per_sec), (10, 5));
    assert_eq!(
        s.sandbox_owner("acme.sandbox").unwrap().as_deref(),
        Some("acme")
    );
    assert_eq!(s.sandbox_owner("acme").unwrap(), None);
    // Made once: a second call answers the same twin.
    assert_eq!(s.sandbox_merchant("acme", 120).unwrap().created_at, 110);

    let k = s
        .issue_merchant_key(&twin.merchant_id, "test", &scopes(), 120, None)
        .unwrap();
    assert!(
        k.secret.starts_with(SANDBOX_KEY_PREFIX),
        "{}",
        k.meta.key_id
    );
    assert_eq!(k.secret.len(), SANDBOX_KEY_PREFIX.len() + 64);
    assert!(k.meta.is_sandbox());
    assert_eq!(k.meta.client, format!("acme.sandbox#{}", k.meta.key_id));
    // The live key keeps the live form.
    assert!(live.secret.starts_with("kfm_") && !live.secret.starts_with(SANDBOX_KEY_PREFIX));
    assert!(!live.meta.is_sandbox());

    let auth = s.verify_merchant_key(&k.secret, 130).unwrap().unwrap();
    assert_eq!(auth.merchant.merchant_id, "acme.sandbox");
    let auth = s.verify_merchant_key(&live.secret, 130).unwrap().unwrap();
    assert_eq!(auth.merchant.merchant_id, "acme");

    // The same 64 hex digits under the other prefix are another key.
    let hex = &k.secret[SANDBOX_KEY_PREFIX.len()..];
    assert!(s
        .verify_merchant_key(&format!("kfm_{hex}"), 130)
        .unwrap()
        .is_none());
    let hex = &live.secret["kfm_".len()..];
    assert!(s
        .verify_merchant_key(&format!("{SANDBOX_KEY_PREFIX}{hex}"), 130)
        .unwrap()
        .is_none());
    assert!(s
        .verify_merchant_key("kfm_test_abc", 130)
        .unwrap()
        .is_none());

    // The twin's keys are listed under the twin, never under the live one.
    let live_keys = s.list_merchant_keys("acme").unwrap();
    assert_eq!(live_keys.len(), 1);
    assert!(live_keys.iter().all(|m| !m.is_sandbox()));
    let twin_keys = s.list_merchant_keys("acme.sandbox").unwrap();
    assert_eq!(twin_keys.len(), 1);
    // A rotated sandbox key is a sandbox key again.
    let r = s
        .rotate_merchant_key("acme.sandbox", &k.meta.key_id, 140, 0)
        .unwrap();
    assert!(r.secret.starts_with(SANDBOX_KEY_PREFIX));
}

#[test]
fn a_live_id_can_never_take_the_sandbox_form() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    for id in ["acme.sandbox", "acme.live", "acme_sandbox.sandbox.sandbox"] {
        let r = s.create_merchant(
            &NewMerchant {
                merchant_id: id.into(),
                name: "x".into(),
                rate_burst: 0,
                rate_per_sec: 0,
            },
            100,
        );
        assert!(
            matches!(
                r,
                Err(StoreError::InvalidInput {
                    field: "merchant_id",
                    ..
                })
            ),
            "{id}: {r:?}"
        );
    }
    // A twin needs its live merchant, and is never a twin's twin.
    assert!(matches!(
        s.sandbox_merchant("ghost", 100),
        Err(StoreError::NotFound { .. })
    ));
    merchant(&s, "acme");
    s.sandbox_merchant("acme", 100).unwrap();
    assert!(matches!(
        s.sandbox_merchant("acme.sandbox", 100),
        Err(StoreError::InvalidInput {
            field: "merchant_id",
            ..
        })
    ));
    // Keys are issued only for a twin that was made.
    merchant(&s, "globex");
    assert!(matches!(
        s.issue_merchant_key("globex.sandbox", "", &scopes(), 100, None),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn disabling_the_live_merchant_stops_its_sandbox_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    let twin = s.sandbox_merchant("acme", 100).unwrap();
    let k = s
        .issue_merchant_key(&twin.merchant_id, "", &scopes(), 100, None)
        .unwrap();
    assert!(s.verify_merchant_key(&k.secret, 101).unwrap().is_some());
    s.disable_merchant("acme", 102).unwrap();
    assert!(s.verify_merchant_key(&k.secret, 103).unwrap().is_none());
    // Nor can a disabled merchant get new sandbox keys' twin.
    assert!(matches!(
        s.sandbox_merchant("acme", 103),
        Err(StoreError::InvalidInput { .. })
    ));
    s.enable_merchant("acme").unwrap();
    assert!(s.verify_merchant_key(&k.secret, 104).unwrap().is_some());
    // The twin alone may be disabled too.
    s.disable_merchant("acme.sandbox", 105).unwrap();
    assert!(s.verify_merchant_key(&k.secret, 106).unwrap().is_none());
}

#[test]
fn a_sandbox_payout_is_the_twins_and_not_the_live_merchants() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    merchant(&s, "acme");
    s.sandbox_merchant("acme", 100).unwrap();
    let new = NewPayout {
        payout_id: "sp-1".into(),
        request_id: "payout:sp-1".into(),
        fingerprint: vec![1; 32],
        chain: "devnet-sandbox".into(),
        source: "0x0000000000000000000000000000000000000001".into(),
        chain_next_nonce: 0,
        merchant_id: Some("acme.sandbox".into()),
    };
    let recorded = s.record_failed_payout(&new, "{}", "test").unwrap();
    assert!(matches!(recorded, Recorded::New(..)));
    assert_eq!(
        s.payout_owner("sp-1").unwrap().as_deref(),
        Some("acme.sandbox")
    );
    assert!(s
        .list_payouts(None, Some("acme"), None, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        s.list_payouts(None, Some("acme.sandbox"), None, 10)
            .unwrap()
            .len(),
        1
    );
}

/// A schema-15 store (the previous release: no sandboxes) is upgraded, and
/// takes a sandbox twin at once.
#[test]
fn a_schema_15_store_is_upgraded_with_the_sandbox_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let s = CoordinatorStore::open(&path).unwrap();
        merchant(&s, "acme");
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE merchant_sandboxes;").unwrap();
    }
    common::set_schema_version(&path, 15);
    let s = CoordinatorStore::open(&path).unwrap();
    let twin = s.sandbox_merchant("acme", 200).unwrap();
    let k = s
        .issue_merchant_key(&twin.merchant_id, "", &scopes(), 200, None)
        .unwrap();
    assert!(s.verify_merchant_key(&k.secret, 201).unwrap().is_some());
    drop(s);
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let latest = keyfold_store::coordinator::COORDINATOR_SCHEMA_VERSION;
    assert!(latest >= 16);
    assert_eq!(v, latest.to_string());
}
