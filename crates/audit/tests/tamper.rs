//! Tampering with an exported log: every case is caught and the entry named.

mod common;

use common::{build, sample, sample_events, trusted, Exported};
use keyfold_audit::{
    parse_checkpoints, verify, verify_with, Ed25519Signer, Entry, EntryError, Event, Outcome,
    VerifyError,
};
use serde_json::Value;

fn verify_exported(x: &Exported, lines: &[Vec<u8>]) -> Result<keyfold_audit::Report, VerifyError> {
    verify(&lines.concat(), &x.checkpoints, &trusted())
}

fn named(err: &VerifyError) -> Option<u64> {
    match err {
        VerifyError::BadEntry { index, .. } => Some(*index),
        VerifyError::Truncated { first_missing, .. } => Some(*first_missing),
        _ => None,
    }
}

#[test]
fn untouched_log_verifies() {
    let x = sample();
    let r = verify(&x.bytes(), &x.checkpoints, &trusted()).unwrap();
    assert_eq!(r.entries, 17);
    assert_eq!(r.checkpoints, 4);
    assert_eq!(r.log_id.as_deref(), Some("coordinator"));
    assert_eq!(r.root_hash, x.log.root());
    assert_eq!(r.head_hash, x.log.head_hash());
    assert_eq!(r.anchored, 17);
    assert_eq!(r.unanchored, 0);
    // Checkpoints round-trip through their file form.
    let cps = parse_checkpoints(&x.checkpoint_bytes()).unwrap();
    assert_eq!(cps, x.checkpoints);
}

/// Every mutated copy of a JSON value: one per leaf (and per array).
fn mutations(v: &Value, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    match v {
        Value::String(s) => {
            let m = match key {
                "type" => return out,
                "outcome" => {
                    if s == "deny" {
                        "allow".into()
                    } else {
                        "deny".into()
                    }
                }
                "mode" => {
                    if s == "full" {
                        "presignature".into()
                    } else {
                        "full".into()
                    }
                }
                _ if !s.is_empty()
                    && s.len() % 2 == 0
                    && s.bytes().all(|c| c.is_ascii_hexdigit()) =>
                {
                    let first = if s.starts_with('0') { "1" } else { "0" };
                    format!("{first}{}", &s[1..])
                }
                _ => format!("{s}x"),
            };
            out.push(Value::String(m));
        }
        Value::Number(n) => out.push(Value::from(n.as_i64().unwrap() + 1)),
        // A byte field must stay hex to parse; any other optional field
        // takes a string.
        Value::Null if key == "chain_code" => out.push(Value::String("00".repeat(32))),
        Value::Null => out.push(Value::String("x".into())),
        Value::Bool(b) => out.push(Value::Bool(!b)),
        Value::Array(a) => {
            let mut longer = a.clone();
            longer.push(Value::String("x".into()));
            out.push(Value::Array(longer));
            for (i, item) in a.iter().enumerate() {
                for m in mutations(item, key) {
                    let mut c = a.clone();
                    c[i] = m;
                    out.push(Value::Array(c));
                }
            }
        }
        Value::Object(o) => {
            for (k, item) in o {
                for m in mutations(item, k) {
                    let mut c = o.clone();
                    c.insert(k.clone(), m);
                    out.push(Value::Object(c));
                }
            }
        }
    }
    out
}

#[test]
fn editing_any_field_of_any_entry_is_caught_and_named() {
    let x = sample();
    let mut cases = 0;
    for k in 0..x.lines.len() {
        let v: Value = serde_json::from_slice(&x.lines[k]).unwrap();
        for m in mutations(&v, "") {
            let entry: Entry = serde_json::from_value(m.clone()).unwrap();
            let mut lines = x.lines.clone();
            lines[k] = entry.to_json_line();
            assert_ne!(lines[k], x.lines[k]);
            let err = verify_exported(&x, &lines).expect_err("tampering not caught");
            assert_eq!(named(&err), Some(k as u64), "entry {k}, {m}: {err}");
            cases += 1;
        }
    }
    assert!(cases > 100, "only {cases} cases");
}

#[test]
fn deleting_an_entry_is_caught_and_named() {
    let x = sample();
    for k in 0..x.lines.len() {
        let mut lines = x.lines.clone();
        lines.remove(k);
        let err = verify_exported(&x, &lines).unwrap_err();
        assert_eq!(named(&err), Some(k as u64), "{err}");
    }
}

#[test]
fn reordering_two_entries_is_caught_and_named() {
    let x = sample();
    for k in 0..x.lines.len() - 1 {
        let mut lines = x.lines.clone();
        lines.swap(k, k + 1);
        let err = verify_exported(&x, &lines).unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadEntry {
                index: k as u64,
                reason: EntryError::IndexMismatch {
                    found: k as u64 + 1
                }
            }
        );
    }
}

#[test]
fn truncating_the_tail_is_caught() {
    let x = sample();
    let n = x.lines.len();
    for keep in 1..n {
        let err = verify_exported(&x, &x.lines[..keep]).unwrap_err();
        // Either the first missing entry is named, or a checkpoint between
        // (whose size is in the kept part) still verifies and the larger one
        // reports the truncation: both name entry `keep`.
        assert_eq!(
            err,
            VerifyError::Truncated {
                first_missing: keep as u64,
                tree_size: n as u64
            }
        );
    }
}

#[test]
fn truncating_mid_entry_is_caught_and_named() {
    let x = sample();
    let all = x.bytes();
    let mut offset = 0;
    for (k, line) in x.lines.iter().enumerate() {
        for cut in [1, line.len() / 2, line.len() - 1] {
            let err = verify(&all[..offset + cut], &x.checkpoints, &trusted()).unwrap_err();
            if k == 0 {
                assert!(
                    matches!(
                        err,
                        VerifyError::NotALog(_)
                            | VerifyError::BadEntry {
                                index: 0,
                                reason: EntryError::Truncated
                            }
                    ),
                    "{err}"
                );
            } else {
                assert_eq!(
                    err,
                    VerifyError::BadEntry {
                        index: k as u64,
                        reason: EntryError::Truncated
                    }
                );
            }
        }
        offset += line.len();
    }
}

#[test]
fn replacing_a_checkpoint_signature_is_caught() {
    let x = sample();
    for i in 0..x.checkpoints.len() {
        // A signature of another checkpoint, a flipped bit, and zeros.
        let other = x.checkpoints[(i + 1) % x.checkpoints.len()].signature;
        let mut flipped = x.checkpoints[i].signature;
        flipped[10] ^= 1;
        for sig in [other, flipped, [0u8; 64]] {
            let mut cps = x.checkpoints.clone();
            cps[i].signature = sig;
            let err = verify(&x.bytes(), &cps, &trusted()).unwrap_err();
            assert!(
                matches!(err, VerifyError::BadCheckpoint { position, .. } if position == i),
                "{err}"
            );
        }
    }
}

#[test]
fn checkpoint_by_an_untrusted_key_is_refused() {
    let x = sample();
    let rogue = Ed25519Signer::from_seed(&[8u8; 32]);
    let mut cps = x.checkpoints.clone();
    cps[1] = x.log.checkpoint(&rogue, 5).unwrap();
    let err = verify(&x.bytes(), &cps, &trusted()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::BadCheckpoint {
                position: 1,
                reason: keyfold_audit::CheckpointError::UntrustedKey(_),
                ..
            }
        ),
        "{err}"
    );
    // No trusted key at all: nothing verifies.
    assert!(verify(&x.bytes(), &x.checkpoints, &[]).is_err());
}

#[test]
fn editing_a_checkpoint_field_is_caught() {
    let x = sample();
    let mut cps = x.checkpoints.clone();
    cps[2].checkpoint.tree_size += 1;
    assert!(matches!(
        verify(&x.bytes(), &cps, &trusted()).unwrap_err(),
        VerifyError::BadCheckpoint { position: 2, .. }
    ));
    let mut cps = x.checkpoints.clone();
    cps[0].checkpoint.log_id = "other".into();
    assert!(verify(&x.bytes(), &cps, &trusted()).is_err());
}

#[test]
fn splicing_in_an_entry_from_another_log_is_caught_and_named() {
    let x = sample();
    let mut events = sample_events();
    events.reverse();
    let other = build("coordinator", events, &[]);
    for k in 0..x.lines.len() {
        // Replace entry k with the other log's entry k (same index).
        let mut lines = x.lines.clone();
        lines[k] = other.lines[k].clone();
        let err = verify_exported(&x, &lines).unwrap_err();
        assert_eq!(named(&err), Some(k as u64), "replace {k}: {err}");
        // Insert it before entry k.
        let mut lines = x.lines.clone();
        lines.insert(k, other.lines[k].clone());
        let err = verify_exported(&x, &lines).unwrap_err();
        // A foreign genesis entry inserted at 0 is itself a valid first entry;
        // the displaced original entry 0 (now at position 1) is what fails.
        let want = if k == 0 { 1 } else { k as u64 };
        assert_eq!(named(&err), Some(want), "insert {k}: {err}");
    }
}

#[test]
fn consistent_rewrite_without_the_key_is_caught_by_checkpoints() {
    // The operator rewrites entry 6 and recomputes the chain after it: the
    // chain is then internally consistent, but the signed roots are not.
    let x = sample();
    let mut log = keyfold_audit::Log::new("coordinator").unwrap();
    let mut lines = Vec::new();
    for (i, line) in x.lines.iter().enumerate() {
        let mut e: Entry = serde_json::from_slice(line).unwrap();
        if i == 6 {
            e.event = Event::Decision {
                request_id: "r1".into(),
                policy_version: 1,
                evaluated_at: 1_700_000_600,
                outcome: Outcome::Allow,
                rule: Some("forged".into()),
                detail: r#"{"outcome":"allow"}"#.into(),
            };
        }
        lines.push(log.append(e.time, e.event).unwrap().to_json_line());
    }
    let err = verify_exported(&x, &lines).unwrap_err();
    // Checkpoints at 4 and 9: the rewrite is located to entries 4..9.
    assert_eq!(
        err,
        VerifyError::CheckpointMismatch {
            tree_size: 9,
            first_unconfirmed: 4
        }
    );
}

#[test]
fn event_hooks_can_refuse_an_entry() {
    let x = sample();
    let mut seen = 0u64;
    let mut deny_is_bad = |e: &Entry| {
        seen += 1;
        match &e.event {
            Event::Decision {
                outcome: Outcome::Deny,
                ..
            } => Err("deny decisions are refused by this check".to_string()),
            _ => Ok(()),
        }
    };
    let err = verify_with(&x.bytes(), &x.checkpoints, &trusted(), &mut deny_is_bad).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::BadEntry {
            index: 10,
            reason: EntryError::Rejected(_)
        }
    ));
    assert_eq!(seen, 11);
}

/// The line with its `prev_hash` value in uppercase hex.
fn uppercase_prev_hash(line: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(line.to_vec()).unwrap();
    let e: Entry = serde_json::from_str(&s).unwrap();
    let lower = hex::encode(e.prev_hash);
    assert!(lower.bytes().any(|c| c.is_ascii_alphabetic()));
    s.replacen(&lower, &lower.to_uppercase(), 1).into_bytes()
}

#[test]
fn non_canonical_json_is_refused() {
    let x = sample();
    let cases: Vec<(usize, Vec<u8>)> = vec![
        // Whitespace.
        (2, {
            let mut l = x.lines[2].clone();
            l.insert(1, b' ');
            l
        }),
        // Uppercase hex (the hash of entry 0, which has letters).
        (1, uppercase_prev_hash(&x.lines[1])),
        // Unknown field.
        (
            3,
            String::from_utf8(x.lines[3].clone())
                .unwrap()
                .replacen("{\"index\"", "{\"extra\":1,\"index\"", 1)
                .into_bytes(),
        ),
    ];
    for (k, line) in cases {
        let mut lines = x.lines.clone();
        lines[k] = line;
        let err = verify_exported(&x, &lines).unwrap_err();
        assert_eq!(named(&err), Some(k as u64), "{err}");
    }
}

#[test]
fn not_a_log_gives_a_clear_error() {
    let x = sample();
    let cps = &x.checkpoints;
    for data in [
        &b""[..],
        b"\n",
        b"hello world\n",
        b"{}\n",
        b"\x00\x01\x02\xff\xfe",
        b"[1,2,3]",
        b"{\"index\":0",
    ] {
        let err = verify(data, cps, &trusted()).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.is_empty());
        assert!(
            matches!(
                err,
                VerifyError::NotALog(_) | VerifyError::BadEntry { index: 0, .. }
            ),
            "{data:?}: {err}"
        );
    }
    for data in [&b"not json\n"[..], b"{\"checkpoint\":1}\n", b"\xff"] {
        assert!(parse_checkpoints(data).is_err());
    }
    assert!(parse_checkpoints(b"").unwrap().is_empty());
}
