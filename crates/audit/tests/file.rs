//! The durable file-backed writer: append, reopen, continue, torn tails.

mod common;

use common::{sample_events, signer, trusted};
use keyfold_audit::file::{CHECKPOINTS_FILE, ENTRIES_FILE};
use keyfold_audit::{parse_checkpoints, verify, Error, FileLog};

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn append_reopen_continue_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_events();
    let (first, second) = events.split_at(6);
    let s = signer();
    {
        let mut log = FileLog::open(dir.path(), "coordinator").unwrap();
        for (i, e) in first.iter().enumerate() {
            let entry = log.append(i as i64, e.clone()).unwrap();
            assert_eq!(entry.index, i as u64);
        }
        log.checkpoint(&s, 100).unwrap();
    }
    let root_before;
    {
        let mut log = FileLog::open(dir.path(), "coordinator").unwrap();
        assert_eq!(log.log().len(), 6);
        root_before = log.log().root();
        for (i, e) in second.iter().enumerate() {
            let entry = log.append(100 + i as i64, e.clone()).unwrap();
            assert_eq!(entry.index, 6 + i as u64);
        }
        log.checkpoint(&s, 200).unwrap();
        // The new head is consistent with the old one.
        let p = log.log().consistency_proof(6, log.log().len()).unwrap();
        keyfold_audit::merkle::verify_consistency(
            6,
            log.log().len(),
            &root_before,
            &log.log().root(),
            &p,
        )
        .unwrap();
    }
    let cps = parse_checkpoints(&read(dir.path(), CHECKPOINTS_FILE)).unwrap();
    assert_eq!(cps.len(), 2);
    let r = verify(&read(dir.path(), ENTRIES_FILE), &cps, &trusted()).unwrap();
    assert_eq!(r.entries, events.len() as u64);
    assert_eq!(r.anchored, events.len() as u64);
}

#[test]
fn reopening_a_tampered_log_fails() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        for (i, e) in sample_events().into_iter().enumerate() {
            log.append(i as i64, e).unwrap();
        }
    }
    let path = dir.path().join(ENTRIES_FILE);
    let data = std::fs::read(&path).unwrap();
    // Rename the rule of a recorded decision.
    let tampered = String::from_utf8(data.clone()).unwrap().replacen(
        r#""rule":"large-btc""#,
        r#""rule":"large-eth""#,
        1,
    );
    assert_ne!(tampered.as_bytes(), &data[..]);
    std::fs::write(&path, tampered).unwrap();
    let err = FileLog::open(dir.path(), "c").unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
}

#[test]
fn reopening_with_another_log_id_fails() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        log.append(1, sample_events().remove(0)).unwrap();
        log.checkpoint(&signer(), 2).unwrap();
    }
    assert!(FileLog::open(dir.path(), "other").is_err());
    assert!(FileLog::open(dir.path(), "c").is_ok());
}

#[test]
fn torn_tail_is_reported_then_recovered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        for (i, e) in sample_events().into_iter().take(3).enumerate() {
            log.append(i as i64, e).unwrap();
        }
    }
    let path = dir.path().join(ENTRIES_FILE);
    let good = std::fs::read(&path).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(b"{\"index\":3,\"ti");
    std::fs::write(&path, &torn).unwrap();
    let err = FileLog::open(dir.path(), "c").unwrap_err();
    assert!(
        matches!(err, Error::TornTail { offset, .. } if offset == good.len() as u64),
        "{err}"
    );
    let mut log = FileLog::open_recover(dir.path(), "c").unwrap();
    assert_eq!(log.log().len(), 3);
    assert_eq!(std::fs::read(&path).unwrap(), good);
    let e = log.append(9, sample_events().remove(3)).unwrap();
    assert_eq!(e.index, 3);
    verify(&std::fs::read(&path).unwrap(), &[], &[]).unwrap();
}

#[test]
fn append_to_an_unwritable_log_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    // The entries "file" is a directory: opening the log fails, cleanly.
    std::fs::create_dir(dir.path().join(ENTRIES_FILE)).unwrap();
    let err = FileLog::open(dir.path(), "c").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn oversized_events_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(dir.path(), "c").unwrap();
    let err = log
        .append(
            1,
            keyfold_audit::Event::Aborted {
                request_id: "r".into(),
                session_id: "s".into(),
                blamed: None,
                reason: "x".repeat(keyfold_audit::event::MAX_STRING + 1),
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Bounds(_)), "{err}");
    assert_eq!(log.log().len(), 0);
    assert!(read(dir.path(), ENTRIES_FILE).is_empty());
}

#[test]
fn bad_log_ids_are_refused() {
    assert!(keyfold_audit::Log::new("").is_err());
    assert!(keyfold_audit::Log::new("x".repeat(257)).is_err());
}

#[test]
fn secret_key_debug_is_redacted() {
    let s = keyfold_audit::Ed25519Signer::from_seed(&[0x42; 32]);
    let d = format!("{s:?}");
    assert!(d.contains("<redacted>"));
    assert!(!d.contains(&hex::encode([0x42u8; 32])));
}

#[test]
fn checkpoint_of_an_empty_log_survives_reopen_and_truncation_to_empty_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        log.checkpoint(&signer(), 1).unwrap();
    }
    {
        let mut log = FileLog::open(dir.path(), "c").unwrap();
        log.append(2, sample_events().remove(0)).unwrap();
        log.checkpoint(&signer(), 3).unwrap();
    }
    // Emptying the entries file is caught on reopen.
    std::fs::write(dir.path().join(ENTRIES_FILE), b"").unwrap();
    let err = FileLog::open(dir.path(), "c").unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
}

#[test]
fn batch_append_is_one_durable_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(dir.path(), "c").unwrap();
    log.append(0, sample_events().remove(0)).unwrap();
    let batch: Vec<_> = sample_events()
        .into_iter()
        .skip(1)
        .enumerate()
        .map(|(i, e)| (i as i64 + 1, e))
        .collect();
    let n = batch.len();
    let entries = log.append_batch(batch).unwrap();
    assert_eq!(entries.len(), n);
    assert_eq!(entries[0].index, 1);
    assert!(log.append_batch(Vec::new()).unwrap().is_empty());
    // A batch with one oversized event appends nothing.
    let bad = vec![
        (99, sample_events().remove(0)),
        (
            100,
            keyfold_audit::Event::Aborted {
                request_id: "r".into(),
                session_id: "s".into(),
                blamed: None,
                reason: "x".repeat(keyfold_audit::event::MAX_STRING + 1),
            },
        ),
    ];
    assert!(log.append_batch(bad).is_err());
    assert_eq!(log.log().len(), 1 + n as u64);
    log.checkpoint(&signer(), 200).unwrap();
    drop(log);
    let reopened = FileLog::open(dir.path(), "c").unwrap();
    assert_eq!(reopened.log().len(), 1 + n as u64);
    let cps = parse_checkpoints(&read(dir.path(), CHECKPOINTS_FILE)).unwrap();
    verify(&read(dir.path(), ENTRIES_FILE), &cps, &trusted()).unwrap();
}

#[test]
fn export_snapshots_a_live_log_and_verifies() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(src.path(), "c").unwrap();
    for (i, e) in sample_events().into_iter().enumerate() {
        log.append(i as i64, e).unwrap();
    }
    log.checkpoint(&signer(), 50).unwrap();
    // A live writer mid-append: an incomplete line at the end.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(src.path().join(ENTRIES_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"index\":17,").unwrap();
    let (e, c) = keyfold_audit::file::export(src.path(), out.path()).unwrap();
    assert!(e > 0 && c > 0);
    let cps = parse_checkpoints(&read(out.path(), CHECKPOINTS_FILE)).unwrap();
    let r = verify(&read(out.path(), ENTRIES_FILE), &cps, &trusted()).unwrap();
    assert_eq!(r.entries, sample_events().len() as u64);
    assert!(keyfold_audit::file::export(out.path().join("missing"), out.path()).is_err());
}
