//! `SignerStore::list_aux_groups`: lists every group with aux info, sorted,
//! once each (replacing aux info does not duplicate it), without unsealing.

mod common;

use common::sealer;
use keyfold_store::{SignerStore, SoftwareSealer, StoreError, Zeroizing};
use std::sync::Arc;

#[test]
fn lists_aux_groups_sorted_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.db");
    let store = SignerStore::open(&path, "node-1", sealer()).unwrap();
    assert!(store.list_aux_groups().unwrap().is_empty());

    store.put_aux("group-b", b"aux b").unwrap();
    store.put_aux("group-a", b"aux a").unwrap();
    store.put_aux("group-b", b"aux b v2").unwrap();
    // Shares and presignatures are not aux info.
    store
        .put_share("key-1", keyfold_store::Curve::Secp256k1, &[2; 33], b"share")
        .unwrap();
    store
        .add_presignature("p1", "key-1", &[0, 1], b"presig")
        .unwrap();
    assert_eq!(store.list_aux_groups().unwrap(), ["group-a", "group-b"]);
    drop(store);

    // Listing does not unseal: it works with a sealer that cannot open the
    // blobs, and opening one with it then fails.
    let other: Arc<dyn keyfold_store::Sealer> = Arc::new(SoftwareSealer::from_key(
        &Zeroizing::new([0x07; 32]),
        "another key",
    ));
    let store = SignerStore::open(&path, "node-1", other).unwrap();
    assert_eq!(store.list_aux_groups().unwrap(), ["group-a", "group-b"]);
    assert!(matches!(store.get_aux("group-a"), Err(StoreError::Seal(_))));
}
