//! Signer backups against real SoftHSM2 tokens: export from a store sealed by
//! one token, restore into a fresh store sealed by a new token, and every way
//! a backup or its recovery key can be wrong.

mod common;

use std::path::Path;
use std::sync::Arc;

use keyfold_hsm::backup::{self, BackupError, DecryptedBackup, MAX_BACKUP_LEN};
use keyfold_hsm::{HsmSealer, DEFAULT_SEAL_KEY_LABEL};
use keyfold_store::{Curve, SealError, Sealer, SignerStore, StoreError};

const NODE: &str = "signer-1";
const ECDSA_SHARE: &[u8] =
    br#"{"participants":[0,1,2],"i":0,"container":"ecdsa-share-secret-7f3a9c1e"}"#;
const EDDSA_SHARE: &[u8] =
    br#"{"participants":[0,1,2],"i":0,"container":"eddsa-share-secret-52be0d44"}"#;
const AUX: &[u8] = br#"{"participants":[0,1,2],"aux":"aux-info-secret-0c9d7e21"}"#;
const PRESIG: &[u8] = b"presignature-secret-1d2e3f";

/// A store at `dir/signer.db` sealed by `token`'s sealing key (created).
fn hsm_store(dir: &Path, token: &keyfold_hsm::testing::TestToken, node: &str) -> SignerStore {
    let hsm = token.open().unwrap();
    let sealer = HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    SignerStore::open(dir.join("signer.db"), node, Arc::new(sealer)).unwrap()
}

/// A store holding two shares, one aux info and two presignatures.
fn populated(dir: &Path, token: &keyfold_hsm::testing::TestToken) -> SignerStore {
    let store = hsm_store(dir, token, NODE);
    store
        .put_share("key-ecdsa", Curve::Secp256k1, &[2; 33], ECDSA_SHARE)
        .unwrap();
    store
        .put_share("key-eddsa", Curve::Ed25519, &[7; 32], EDDSA_SHARE)
        .unwrap();
    store.put_aux("group-a", AUX).unwrap();
    store
        .add_presignature("presig-1", "key-ecdsa", &[0, 1], PRESIG)
        .unwrap();
    store
        .add_presignature("presig-2", "key-ecdsa", &[0, 1], PRESIG)
        .unwrap();
    store
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_restored(store: &SignerStore) {
    let e = store.get_share("key-ecdsa").unwrap().unwrap();
    assert_eq!(e.curve, Curve::Secp256k1);
    assert_eq!(e.public_key, vec![2; 33]);
    assert_eq!(&e.plaintext[..], ECDSA_SHARE);
    let d = store.get_share("key-eddsa").unwrap().unwrap();
    assert_eq!(d.curve, Curve::Ed25519);
    assert_eq!(d.public_key, vec![7; 32]);
    assert_eq!(&d.plaintext[..], EDDSA_SHARE);
    assert_eq!(&store.get_aux("group-a").unwrap().unwrap()[..], AUX);
    // No presignature came back.
    assert_eq!(store.count_ready("key-ecdsa", &[0, 1]).unwrap(), 0);
    for id in ["presig-1", "presig-2"] {
        assert!(
            matches!(
                store.take_presignature(id),
                Err(StoreError::NotFound { .. })
            ),
            "{id} restored"
        );
    }
}

#[test]
fn export_then_restore_on_a_new_token() {
    let old_token = common::token("bk-old");
    let new_token = common::token("bk-new");
    let old_dir = tempfile::tempdir().unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let old = populated(old_dir.path(), &old_token);

    let key = backup::recovery_keygen();
    assert!(key.recipient().starts_with("age1"));
    assert!(key.identity().starts_with("AGE-SECRET-KEY-1"));
    assert_eq!(
        backup::recipient_of(&key.identity_file()).unwrap(),
        key.recipient()
    );
    let dbg = format!("{key:?}");
    assert!(
        !dbg.contains(key.identity()) && dbg.contains("<redacted>"),
        "{dbg}"
    );

    let bytes = backup::export(&old, key.recipient()).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    for secret in [ECDSA_SHARE, EDDSA_SHARE, AUX, PRESIG] {
        assert!(!contains(&bytes, secret), "plaintext in the backup");
        assert!(
            !contains(&bytes, hex::encode(secret).as_bytes()),
            "hex plaintext in the backup"
        );
    }
    // Export changes nothing in the source.
    assert_eq!(old.count_ready("key-ecdsa", &[0, 1]).unwrap(), 2);

    // Inspect: lists without writing.
    let contents = backup::inspect(key.identity(), &bytes).unwrap();
    assert_eq!(contents.node_id, NODE);
    assert_eq!(contents.format_version, backup::BACKUP_FORMAT_VERSION);
    let ids: Vec<_> = contents.shares.iter().map(|s| s.key_id.as_str()).collect();
    assert_eq!(ids, ["key-ecdsa", "key-eddsa"]);
    assert_eq!(contents.shares[0].public_key, vec![2; 33]);
    assert_eq!(contents.shares[0].share_len, ECDSA_SHARE.len());
    assert_eq!(contents.shares[1].curve, Curve::Ed25519);
    assert_eq!(contents.aux_info.len(), 1);
    assert_eq!(contents.aux_info[0].group_id, "group-a");
    assert_eq!(contents.aux_info[0].aux_len, AUX.len());
    let opened = DecryptedBackup::open(&key.identity_file(), &bytes).unwrap();
    // Debug shows what is public (node, key and group ids) and `<redacted>`
    // for the rest: none of the secret payloads, in any form, nor the key.
    let dbg = format!("{opened:?}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    assert!(dbg.contains(NODE) && dbg.contains("key-ecdsa"), "{dbg}");
    for secret in [ECDSA_SHARE, EDDSA_SHARE, AUX] {
        let text = std::str::from_utf8(secret).unwrap();
        assert!(!dbg.contains(text), "{dbg}");
        assert!(!dbg.contains(&hex::encode(secret)), "{dbg}");
        assert!(!dbg.contains(&format!("{secret:?}")), "{dbg}");
    }
    for marker in [
        "ecdsa-share-secret-7f3a9c1e",
        "eddsa-share-secret-52be0d44",
        "aux-info-secret-0c9d7e21",
        key.identity(),
    ] {
        assert!(!dbg.contains(marker), "{marker} in {dbg}");
    }

    // Restore into a fresh store sealed by a new token.
    let new = hsm_store(new_dir.path(), &new_token, NODE);
    let report = backup::restore(&new, &key.identity_file(), &bytes).unwrap();
    assert_eq!(report.shares_written, 2);
    assert_eq!(report.shares_already_present, 0);
    assert_eq!(report.aux_written, 1);
    assert_eq!(report.presignatures_discarded, 0);
    assert_eq!(report.contents, contents);
    assert_restored(&new);

    // Idempotent.
    let again = backup::restore(&new, key.identity(), &bytes).unwrap();
    assert_eq!(again.shares_written, 0);
    assert_eq!(again.shares_already_present, 2);
    assert_eq!(again.aux_written, 0);
    assert_eq!(again.aux_already_present, 1);
    assert_restored(&new);

    // Presignatures made after the first restore are discarded by the next.
    new.add_presignature("presig-3", "key-ecdsa", &[0, 2], PRESIG)
        .unwrap();
    let third = backup::restore(&new, key.identity(), &bytes).unwrap();
    assert_eq!(third.presignatures_discarded, 1);
    assert_eq!(new.count_ready("key-ecdsa", &[0, 2]).unwrap(), 0);
    drop(new);

    // Sealing is per token: the old token's key cannot open the new store.
    let old_hsm = old_token.open().unwrap();
    let old_sealer = HsmSealer::open(&old_hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let new_with_old_key = SignerStore::open(
        new_dir.path().join("signer.db"),
        NODE,
        Arc::new(old_sealer) as Arc<dyn Sealer>,
    )
    .unwrap();
    match new_with_old_key.get_share("key-ecdsa") {
        Err(StoreError::Seal(SealError::Tampered { .. })) => {}
        other => panic!("old token opened the new store: {other:?}"),
    }
    assert!(matches!(
        new_with_old_key.get_aux("group-a"),
        Err(StoreError::Seal(SealError::Tampered { .. }))
    ));
}

#[test]
fn a_conflicting_store_is_refused_and_left_untouched() {
    let token = common::token("bk-conf");
    let other_token = common::token("bk-conf2");
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let src = populated(dir.path(), &token);
    let key = backup::recovery_keygen();
    let bytes = backup::export(&src, key.recipient()).unwrap();

    let target = hsm_store(other_dir.path(), &other_token, NODE);
    target
        .put_share(
            "key-eddsa",
            Curve::Ed25519,
            &[7; 32],
            b"another share under the same id",
        )
        .unwrap();
    target
        .add_presignature("keep", "key-eddsa", &[0, 1], PRESIG)
        .unwrap();
    let err = backup::restore(&target, key.identity(), &bytes).unwrap_err();
    match &err {
        BackupError::Store { source, .. } => match &**source {
            StoreError::Conflict { what, id } => {
                assert_eq!(*what, "key share");
                assert_eq!(id, "key-eddsa");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("key-eddsa"), "{err}");
    // Nothing written, nothing discarded.
    assert!(target.get_share("key-ecdsa").unwrap().is_none());
    assert!(target.get_aux("group-a").unwrap().is_none());
    assert_eq!(target.count_ready("key-eddsa", &[0, 1]).unwrap(), 1);

    // A different aux info under the same group id is refused too.
    let third_dir = tempfile::tempdir().unwrap();
    let third = hsm_store(third_dir.path(), &other_token, NODE);
    third.put_aux("group-a", b"newer aux info").unwrap();
    match backup::restore(&third, key.identity(), &bytes) {
        Err(BackupError::Store { source, .. }) => match *source {
            StoreError::Conflict { what, id } => {
                assert_eq!((what, id.as_str()), ("aux info", "group-a"))
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(third.get_share("key-ecdsa").unwrap().is_none());
}

#[test]
fn bad_keys_and_bad_files_give_clear_errors() {
    let token = common::token("bk-bad");
    let dir = tempfile::tempdir().unwrap();
    let src = populated(dir.path(), &token);
    let key = backup::recovery_keygen();
    let bytes = backup::export(&src, key.recipient()).unwrap();

    let target_dir = tempfile::tempdir().unwrap();
    let target = hsm_store(target_dir.path(), &token, NODE);
    let untouched = |target: &SignerStore| {
        assert!(target.list_shares().unwrap().is_empty());
        assert!(target.list_aux_groups().unwrap().is_empty());
    };

    // Wrong identity.
    let other = backup::recovery_keygen();
    let err = backup::restore(&target, other.identity(), &bytes).unwrap_err();
    assert!(matches!(err, BackupError::WrongIdentity), "{err:?}");
    assert!(
        err.to_string()
            .contains("the backup does not open with this recovery key"),
        "{err}"
    );
    untouched(&target);

    // Bad identity and recipient strings: clear errors, no secret echoed.
    for bad in [
        "",
        "# only a comment\n",
        "AGE-SECRET-KEY-1NOTAKEY",
        key.recipient(),
    ] {
        let err = backup::restore(&target, bad, &bytes).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidIdentity { .. }),
            "{err:?}"
        );
    }
    let two = format!("{}\n{}\n", key.identity(), other.identity());
    let err = backup::restore(&target, &two, &bytes).unwrap_err();
    assert!(
        matches!(err, BackupError::InvalidIdentity { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains(key.identity()), "{err}");
    for bad in ["", "age1nope", "ssh-ed25519 AAAA", key.identity()] {
        let err = backup::export(&src, bad).unwrap_err();
        assert!(
            matches!(err, BackupError::InvalidRecipient { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains(key.identity()), "{err}");
    }

    // Empty, random, not age.
    let err = backup::restore(&target, key.identity(), b"").unwrap_err();
    assert!(matches!(err, BackupError::NotABackup { .. }), "{err:?}");
    let mut random = vec![0u8; 4096];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
    let err = backup::restore(&target, key.identity(), &random).unwrap_err();
    assert!(matches!(err, BackupError::NotABackup { .. }), "{err:?}");
    let err = backup::restore(&target, key.identity(), b"{\"format\":1}").unwrap_err();
    assert!(matches!(err, BackupError::NotABackup { .. }), "{err:?}");
    let mut armored = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
    armored.extend_from_slice(&bytes[..64]);
    let err = backup::restore(&target, key.identity(), &armored).unwrap_err();
    assert!(err.to_string().contains("armored"), "{err}");
    let err = backup::inspect(key.identity(), &vec![b'a'; MAX_BACKUP_LEN + 1]).unwrap_err();
    assert!(matches!(err, BackupError::TooLarge { .. }), "{err:?}");

    // Tampered: flip bytes at many offsets, header and payload.
    let header_end = bytes
        .windows(4)
        .position(|w| w == b"--- ")
        .expect("age header MAC line")
        + 4
        + 43
        + 1;
    let mut offsets = vec![
        0,
        3,
        10,
        22,
        25,
        40,
        header_end - 30,
        header_end - 2,
        header_end,
        header_end + 8,
        header_end + 16,
        header_end + 17,
        bytes.len() / 2,
        bytes.len() - 17,
        bytes.len() - 1,
    ];
    offsets.extend((0..bytes.len()).step_by(37));
    for offset in offsets {
        let mut bad = bytes.clone();
        bad[offset] ^= 0x01;
        let err = backup::restore(&target, key.identity(), &bad).unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Damaged { .. }
                    | BackupError::NotABackup { .. }
                    | BackupError::WrongIdentity
            ),
            "offset {offset}: {err:?}"
        );
        // Past the header and nonce, only the payload's authentication fails.
        if offset >= header_end + 16 {
            assert!(
                matches!(err, BackupError::Damaged { .. }),
                "offset {offset}: {err:?}"
            );
        }
    }
    untouched(&target);

    // Truncated at many lengths.
    let mut lengths = vec![
        1,
        10,
        21,
        22,
        50,
        header_end - 1,
        header_end,
        header_end + 15,
    ];
    lengths.extend([
        header_end + 16,
        header_end + 40,
        bytes.len() - 16,
        bytes.len() - 1,
    ]);
    lengths.extend((1..bytes.len()).step_by(53));
    for len in lengths {
        let err = backup::restore(&target, key.identity(), &bytes[..len]).unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Damaged { .. } | BackupError::NotABackup { .. }
            ),
            "length {len}: {err:?}"
        );
    }
    // Extra bytes appended.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"trailing");
    let err = backup::restore(&target, key.identity(), &longer).unwrap_err();
    assert!(matches!(err, BackupError::Damaged { .. }), "{err:?}");
    untouched(&target);

    // A genuine age file for the right recipient that is not a backup.
    let recipient: age::x25519::Recipient = key.recipient().parse().unwrap();
    for (payload, want_version) in [
        (b"not json".as_slice(), false),
        (br#"{"format":"other","version":1}"#.as_slice(), false),
        (
            br#"{"format":"keyfold-signer-backup","version":9,"keyfold_version":"9.0.0"}"#
                .as_slice(),
            true,
        ),
        (
            br#"{"format":"keyfold-signer-backup","version":1,"node_id":"signer-1","created_at":0,"keyfold_version":"0.1.0","shares":[{"key_id":"k","curve":"secp256k1","public_key":"02","created_at":0,"share":"zz"}],"aux_info":[]}"#
                .as_slice(),
            false,
        ),
        (
            br#"{"format":"keyfold-signer-backup","version":1,"node_id":"signer-1","created_at":0,"keyfold_version":"0.1.0","shares":[{"key_id":"k","curve":"p384","public_key":"02","created_at":0,"share":"00"}],"aux_info":[]}"#
                .as_slice(),
            false,
        ),
        (
            br#"{"format":"keyfold-signer-backup","version":1,"node_id":"signer-1","created_at":0,"keyfold_version":"0.1.0","shares":[],"aux_info":[{"group_id":"g","aux":"00"},{"group_id":"g","aux":"01"}]}"#
                .as_slice(),
            false,
        ),
    ] {
        let file = age::encrypt(&recipient, payload).unwrap();
        let err = backup::restore(&target, key.identity(), &file).unwrap_err();
        if want_version {
            assert!(
                matches!(err, BackupError::UnsupportedVersion { found: 9, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("9.0.0"), "{err}");
        } else {
            assert!(matches!(err, BackupError::Malformed { .. }), "{err:?}");
        }
    }
    untouched(&target);
}

#[test]
fn a_backup_of_another_node_is_refused() {
    let token = common::token("bk-node");
    let dir = tempfile::tempdir().unwrap();
    let src = populated(dir.path(), &token);
    let key = backup::recovery_keygen();
    let bytes = backup::export(&src, key.recipient()).unwrap();

    let other_dir = tempfile::tempdir().unwrap();
    let other = hsm_store(other_dir.path(), &token, "signer-2");
    let err = backup::restore(&other, key.identity(), &bytes).unwrap_err();
    match &err {
        BackupError::WrongNode {
            backup_node,
            store_node,
        } => {
            assert_eq!(backup_node, NODE);
            assert_eq!(store_node, "signer-2");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("signer-1") && msg.contains("signer-2"),
        "{msg}"
    );
    assert!(other.list_shares().unwrap().is_empty());
}

#[test]
fn an_empty_store_has_nothing_to_export() {
    let token = common::token("bk-empty");
    let dir = tempfile::tempdir().unwrap();
    let store = hsm_store(dir.path(), &token, NODE);
    let key = backup::recovery_keygen();
    let err = backup::export(&store, key.recipient()).unwrap_err();
    assert!(
        matches!(err, BackupError::NothingToExport { .. }),
        "{err:?}"
    );

    // Aux info alone (before key generation) is worth keeping.
    store.put_aux("group-a", AUX).unwrap();
    let bytes = backup::export(&store, key.recipient()).unwrap();
    let contents = backup::inspect(key.identity(), &bytes).unwrap();
    assert!(contents.shares.is_empty());
    assert_eq!(contents.aux_info.len(), 1);
}

#[test]
fn large_secrets_round_trip() {
    // Several age chunks (64 KiB each) and a reallocating payload buffer.
    let token = common::token("bk-large");
    let dir = tempfile::tempdir().unwrap();
    let store = hsm_store(dir.path(), &token, NODE);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + 3) as u8).collect();
    store
        .put_share("key-big", Curve::Secp256k1, &[3; 33], &big)
        .unwrap();
    store.put_aux("group-big", &big[..200_000]).unwrap();
    let key = backup::recovery_keygen();
    let bytes = backup::export(&store, key.recipient()).unwrap();

    let new_token = common::token("bk-large2");
    let new_dir = tempfile::tempdir().unwrap();
    let new = hsm_store(new_dir.path(), &new_token, NODE);
    let report = backup::restore(&new, key.identity(), &bytes).unwrap();
    assert_eq!(report.shares_written, 1);
    assert_eq!(
        &new.get_share("key-big").unwrap().unwrap().plaintext[..],
        &big[..]
    );
    assert_eq!(
        &new.get_aux("group-big").unwrap().unwrap()[..],
        &big[..200_000]
    );
}
