//! Signer store: shares, aux info, the take-once presignature pool, primes,
//! replay protection, nothing secret on disk, schema and identity checks.

mod common;

use std::sync::{Arc, Barrier};

use common::{contains, db_bytes, sealer, set_schema_version};
use keyfold_store::{
    CoordinatorStore, Curve, ObjectType, SealError, SignerStore, SoftwareSealer, StoreError,
    Zeroizing,
};

fn open(path: &std::path::Path) -> SignerStore {
    SignerStore::open(path, "node-1", sealer()).unwrap()
}

#[test]
fn shares_round_trip_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    store
        .put_share("key-1", Curve::Secp256k1, &[2; 33], b"share one")
        .unwrap();
    store
        .put_share("key-2", Curve::Ed25519, &[3; 32], b"share two")
        .unwrap();
    // Same content again: no-op.
    store
        .put_share("key-1", Curve::Secp256k1, &[2; 33], b"share one")
        .unwrap();
    // Different content under an existing key id: refused.
    for (curve, pk, plain) in [
        (
            Curve::Secp256k1,
            [2u8; 33].as_slice(),
            b"share ONE".as_slice(),
        ),
        (
            Curve::Secp256k1,
            [4u8; 33].as_slice(),
            b"share one".as_slice(),
        ),
        (
            Curve::Ed25519,
            [2u8; 33].as_slice(),
            b"share one".as_slice(),
        ),
    ] {
        match store.put_share("key-1", curve, pk, plain) {
            Err(StoreError::Conflict { what, id }) => {
                assert_eq!(what, "key share");
                assert_eq!(id, "key-1");
            }
            other => panic!("{other:?}"),
        }
    }
    let rec = store.get_share("key-1").unwrap().unwrap();
    assert_eq!(rec.curve, Curve::Secp256k1);
    assert_eq!(rec.public_key, vec![2; 33]);
    assert_eq!(&rec.plaintext[..], b"share one");
    let dbg = format!("{rec:?}");
    assert!(
        dbg.contains("<redacted>") && !dbg.contains("share one"),
        "{dbg}"
    );
    assert!(store.get_share("key-3").unwrap().is_none());

    let list = store.list_shares().unwrap();
    assert_eq!(
        list.iter().map(|m| m.key_id.as_str()).collect::<Vec<_>>(),
        ["key-1", "key-2"]
    );
    assert_eq!(list[1].curve, Curve::Ed25519);
}

#[test]
fn aux_info_round_trip_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    assert!(store.get_aux("g1").unwrap().is_none());
    store.put_aux("g1", b"aux v1").unwrap();
    assert_eq!(&store.get_aux("g1").unwrap().unwrap()[..], b"aux v1");
    store.put_aux("g1", b"aux v2").unwrap();
    assert_eq!(&store.get_aux("g1").unwrap().unwrap()[..], b"aux v2");
}

#[test]
fn presignature_is_taken_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    store
        .add_presignature("p1", "key-1", &[2, 0, 1], b"presig one")
        .unwrap();
    store
        .add_presignature("p2", "key-1", &[0, 1, 2], b"presig two")
        .unwrap();
    store
        .add_presignature("p3", "key-1", &[0, 1], b"other set")
        .unwrap();
    assert!(matches!(
        store.add_presignature("p1", "key-1", &[0, 1, 2], b"again"),
        Err(StoreError::Conflict { .. })
    ));
    // Signer sets are compared as sets.
    assert_eq!(store.count_ready("key-1", &[1, 2, 0]).unwrap(), 2);
    assert_eq!(
        store.ready_ids("key-1", &[0, 1, 2], 10).unwrap(),
        ["p1", "p2"]
    );
    assert_eq!(store.ready_ids("key-1", &[0, 1, 2], 1).unwrap(), ["p1"]);

    assert_eq!(&store.take_presignature("p1").unwrap()[..], b"presig one");
    match store.take_presignature("p1") {
        Err(StoreError::PresignatureUsed { id }) => assert_eq!(id, "p1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.take_presignature("nope"),
        Err(StoreError::NotFound { .. })
    ));
    // A used id can never be added back.
    assert!(matches!(
        store.add_presignature("p1", "key-1", &[0, 1, 2], b"presig one"),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.count_ready("key-1", &[0, 1, 2]).unwrap(), 1);

    assert_eq!(store.discard_presignatures("key-1", &[0, 1, 2]).unwrap(), 1);
    assert!(matches!(
        store.take_presignature("p2"),
        Err(StoreError::PresignatureUsed { .. })
    ));
    assert_eq!(store.count_ready("key-1", &[0, 1]).unwrap(), 1);
    assert_eq!(store.discard_all_presignatures().unwrap(), 1);
    assert_eq!(store.count_ready("key-1", &[0, 1]).unwrap(), 0);

    // Purging old used records turns PresignatureUsed into NotFound.
    assert_eq!(store.purge_used_presignatures(0).unwrap(), 0);
    assert_eq!(store.purge_used_presignatures(i64::MAX).unwrap(), 3);
    assert!(matches!(
        store.take_presignature("p1"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn presignature_take_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    {
        let store = open(&path);
        store
            .add_presignature("p1", "key-1", &[0, 1], b"presig")
            .unwrap();
        store
            .add_presignature("p2", "key-1", &[0, 1], b"presig 2")
            .unwrap();
    }
    {
        let store = open(&path);
        assert_eq!(&store.take_presignature("p1").unwrap()[..], b"presig");
        // Dropped without any further write or clean shutdown step.
    }
    let store = open(&path);
    assert!(matches!(
        store.take_presignature("p1"),
        Err(StoreError::PresignatureUsed { .. })
    ));
    assert_eq!(store.ready_ids("key-1", &[0, 1], 10).unwrap(), ["p2"]);
}

#[test]
fn take_is_durable_before_returning() {
    // A second connection sees the presignature used as soon as take returns,
    // while the first is still open.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    let a = open(&path);
    let b = open(&path);
    a.add_presignature("p1", "key-1", &[0, 1], b"presig")
        .unwrap();
    a.take_presignature("p1").unwrap();
    assert!(matches!(
        b.take_presignature("p1"),
        Err(StoreError::PresignatureUsed { .. })
    ));
}

#[test]
fn concurrent_takes_on_two_connections_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    let a = Arc::new(open(&path));
    let b = Arc::new(open(&path));
    let ids: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    for id in &ids {
        a.add_presignature(id, "key-1", &[0, 1], id.as_bytes())
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [a, b]
        .into_iter()
        .map(|store| {
            let ids = ids.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = Vec::new();
                for id in &ids {
                    match store.take_presignature(id) {
                        Ok(plain) => {
                            assert_eq!(&plain[..], id.as_bytes());
                            won.push(id.clone());
                        }
                        Err(StoreError::PresignatureUsed { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut all: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(all, expected, "every presignature taken exactly once");
}

#[test]
fn nothing_secret_is_written_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    let markers: [&[u8]; 4] = [
        b"MARKER-SHARE-7f3a9c",
        b"MARKER-AUX-1b2c3d",
        b"MARKER-PRESIG-99aa",
        b"MARKER-PRIMES-4e5f",
    ];
    let store = open(&path);
    store
        .put_share("key-1", Curve::Secp256k1, &[2; 33], markers[0])
        .unwrap();
    store.put_aux("g1", markers[1]).unwrap();
    store
        .add_presignature("p1", "key-1", &[0, 1], markers[2])
        .unwrap();
    store.put_primes(markers[3]).unwrap();
    let live = db_bytes(&path);
    assert!(contains(&live, b"key-1"), "sanity: ids are stored in clear");
    for m in markers {
        assert!(
            !contains(&live, m),
            "{} on disk",
            String::from_utf8_lossy(m)
        );
    }
    // Taking the presignature and the primes deletes their sealed blobs.
    store.take_presignature("p1").unwrap();
    store.take_primes().unwrap();
    drop(store);
    let closed = db_bytes(&path);
    for m in markers {
        assert!(
            !contains(&closed, m),
            "{} on disk",
            String::from_utf8_lossy(m)
        );
    }
}

#[test]
fn moved_blobs_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    let store = open(&path);
    store
        .put_share("key-1", Curve::Secp256k1, &[2; 33], b"share one")
        .unwrap();
    store
        .put_share("key-2", Curve::Secp256k1, &[3; 33], b"share two")
        .unwrap();
    store
        .add_presignature("p1", "key-1", &[0, 1], b"a")
        .unwrap();
    store
        .add_presignature("p2", "key-2", &[0, 1], b"b")
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    // Copy key-1's sealed share into key-2's row.
    raw.execute(
        "UPDATE shares SET sealed = (SELECT sealed FROM shares WHERE key_id = 'key-1') WHERE key_id = 'key-2'",
        [],
    )
    .unwrap();
    match store.get_share("key-2") {
        Err(StoreError::Seal(SealError::Tampered { object, id })) => {
            assert_eq!(object, ObjectType::EcdsaShare);
            assert_eq!(id, "key-2");
        }
        other => panic!("{other:?}"),
    }
    // Re-label a presignature as belonging to another key.
    raw.execute(
        "UPDATE presignatures SET key_id = 'key-1' WHERE id = 'p2'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.take_presignature("p2"),
        Err(StoreError::Seal(SealError::Tampered { .. }))
    ));
    // And it is burnt anyway.
    assert!(matches!(
        store.take_presignature("p2"),
        Err(StoreError::PresignatureUsed { .. })
    ));
    // Truncated blob.
    raw.execute(
        "UPDATE shares SET sealed = x'0102' WHERE key_id = 'key-1'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.get_share("key-1"),
        Err(StoreError::Seal(SealError::Malformed { .. }))
    ));
    // Unknown curve written behind the store's back.
    raw.execute(
        "UPDATE shares SET curve = 'p256' WHERE key_id = 'key-1'",
        [],
    )
    .unwrap();
    assert!(matches!(
        store.get_share("key-1"),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.list_shares(),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn another_node_or_key_cannot_open_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    {
        let store = open(&path);
        store
            .put_share("key-1", Curve::Ed25519, &[3; 32], b"share")
            .unwrap();
    }
    assert!(matches!(
        SignerStore::open(&path, "node-2", sealer()),
        Err(StoreError::WrongDatabase { .. })
    ));
    let other = Arc::new(SoftwareSealer::from_key(&Zeroizing::new([1; 32]), "other"));
    let store = SignerStore::open(&path, "node-1", other).unwrap();
    assert!(matches!(
        store.get_share("key-1"),
        Err(StoreError::Seal(SealError::Tampered { .. }))
    ));
}

#[test]
fn safe_primes_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    assert_eq!(store.count_primes().unwrap(), 0);
    assert!(store.take_primes().unwrap().is_none());
    store.put_primes(b"primes 1").unwrap();
    store.put_primes(b"primes 2").unwrap();
    assert_eq!(store.count_primes().unwrap(), 2);
    assert_eq!(&store.take_primes().unwrap().unwrap()[..], b"primes 1");
    assert_eq!(&store.take_primes().unwrap().unwrap()[..], b"primes 2");
    assert!(store.take_primes().unwrap().is_none());
    assert_eq!(store.count_primes().unwrap(), 0);
}

#[test]
fn replayed_session_is_refused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    {
        let store = open(&path);
        store.record_session(&[1; 32]).unwrap();
        store.record_session(&[2; 32]).unwrap();
        assert!(matches!(
            store.record_session(&[1; 32]),
            Err(StoreError::SessionReplayed { .. })
        ));
    }
    let store = open(&path);
    match store.record_session(&[2; 32]) {
        Err(StoreError::SessionReplayed { session_id }) => {
            assert_eq!(session_id, hex::encode([2u8; 32]))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    drop(open(&path));
    set_schema_version(&path, 999);
    match SignerStore::open(&path, "node-1", sealer()) {
        Err(StoreError::SchemaTooNew {
            path: p,
            found,
            supported,
        }) => {
            assert_eq!(p, path);
            assert_eq!(found, 999);
            assert_eq!(supported, keyfold_store::signer::SIGNER_SCHEMA_VERSION);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_kind_of_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coord = dir.path().join("coordinator.db");
    drop(CoordinatorStore::open(&coord).unwrap());
    assert!(matches!(
        SignerStore::open(&coord, "node-1", sealer()),
        Err(StoreError::WrongDatabase { .. })
    ));
    let signer = dir.path().join("signer.db");
    drop(open(&signer));
    assert!(matches!(
        CoordinatorStore::open(&signer),
        Err(StoreError::WrongDatabase { .. })
    ));
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x55u8; 8192]).unwrap();
    assert!(matches!(
        SignerStore::open(&junk, "node-1", sealer()),
        Err(StoreError::Open { .. })
    ));
}

#[test]
fn database_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    drop(open(&path));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidInput { .. }));
    assert!(invalid(store.put_share("", Curve::Ed25519, &[1], b"x")));
    assert!(invalid(store.put_share("a b", Curve::Ed25519, &[1], b"x")));
    assert!(invalid(store.put_share("k|1", Curve::Ed25519, &[1], b"x")));
    assert!(invalid(store.put_share(
        &"k".repeat(129),
        Curve::Ed25519,
        &[1],
        b"x"
    )));
    assert!(invalid(store.put_share("k", Curve::Ed25519, &[], b"x")));
    assert!(invalid(store.put_share("k", Curve::Ed25519, &[1], b"")));
    assert!(invalid(store.add_presignature("p", "k", &[], b"x")));
    assert!(invalid(store.add_presignature("p", "k", &[1, 1], b"x")));
    assert!(invalid(store.add_presignature("p", "k", &[0, 1], b"")));
    assert!(matches!(
        store.take_presignature("bad id"),
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        SignerStore::open(dir.path().join("x.db"), "", sealer()),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn take_for_checks_key_and_set_without_burning() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("signer.db"));
    store
        .add_presignature("p1", "key-1", &[0, 2], b"presig")
        .unwrap();
    for (key, set) in [("key-2", [0u16, 2]), ("key-1", [0, 1])] {
        match store.take_presignature_for("p1", key, &set) {
            Err(StoreError::PresignatureMismatch {
                id,
                key_id,
                signer_set,
            }) => {
                assert_eq!((id.as_str(), key_id.as_str()), ("p1", "key-1"));
                assert_eq!(signer_set, "0,2");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.count_ready("key-1", &[0, 2]).unwrap(), 1);
    assert_eq!(
        &store.take_presignature_for("p1", "key-1", &[2, 0]).unwrap()[..],
        b"presig"
    );
    assert!(matches!(
        store.take_presignature_for("p1", "key-1", &[0, 2]),
        Err(StoreError::PresignatureUsed { .. })
    ));
    assert!(matches!(
        store.take_presignature_for("p9", "key-1", &[0, 2]),
        Err(StoreError::NotFound { .. })
    ));
}

/// Environment variable that turns `take_survives_process_crash` into the
/// crashing child process.
const CRASH_CHILD_DB: &str = "KEYFOLD_STORE_TEST_CRASH_DB";

#[test]
fn take_survives_process_crash() {
    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        // Child: take, then die at once: no destructor, no connection close.
        let store = open(std::path::Path::new(&path));
        store.take_presignature("p1").unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    {
        let store = open(&path);
        store
            .add_presignature("p1", "key-1", &[0, 1], b"presig")
            .unwrap();
        store
            .add_presignature("p2", "key-1", &[0, 1], b"presig 2")
            .unwrap();
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "take_survives_process_crash",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DB, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have crashed");
    let store = open(&path);
    assert!(matches!(
        store.take_presignature("p1"),
        Err(StoreError::PresignatureUsed { .. })
    ));
    assert_eq!(&store.take_presignature("p2").unwrap()[..], b"presig 2");
}
