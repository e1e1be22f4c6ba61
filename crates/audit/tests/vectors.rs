//! Serialization snapshots and the worked example of `docs/audit-log.md`.
//!
//! Run `cargo test --test vectors -- --nocapture` to print the example.

use keyfold_audit::merkle::{verify_consistency, verify_inclusion};
use keyfold_audit::{verify, CheckpointSigner, Ed25519Signer, Event, HexBytes, Log, Outcome};

fn example() -> (
    Log,
    Vec<keyfold_audit::Entry>,
    keyfold_audit::SignedCheckpoint,
    Ed25519Signer,
) {
    let signer = Ed25519Signer::from_seed(&[0x01; 32]);
    let mut log = Log::new("devnet-coordinator").unwrap();
    let events = vec![
        Event::KeyCreated {
            key_id: "k1".into(),
            curve: "ed25519".into(),
            t: 2,
            n: 3,
            participants: vec!["s1".into(), "s2".into(), "s3".into()],
            public_key: HexBytes(vec![0x11; 32]),
        },
        Event::SignRequest {
            request_id: "r1".into(),
            key_id: "k1".into(),
            client: "pay".into(),
            message_hash: HexBytes(vec![0x22; 32]),
            hash_alg: "sha256".into(),
            derivation_path: None,
        },
        Event::Decision {
            request_id: "r1".into(),
            rule: "small".into(),
            outcome: Outcome::Allow,
        },
    ];
    let mut entries = Vec::new();
    for (i, e) in events.into_iter().enumerate() {
        entries.push(log.append(1_735_689_600_000 + i as i64, e).unwrap());
    }
    let cp = log.checkpoint(&signer, 1_735_689_601_000).unwrap();
    (log, entries, cp, signer)
}

#[test]
fn worked_example() {
    let (log, entries, cp, signer) = example();
    let mut file = Vec::new();
    for e in &entries {
        let line = e.to_json_line();
        println!(
            "entry {} line: {}",
            e.index,
            String::from_utf8_lossy(&line).trim_end()
        );
        println!(
            "entry {} canonical: {}",
            e.index,
            hex::encode(e.canonical_bytes())
        );
        println!("entry {} hash: {}", e.index, hex::encode(e.hash()));
        println!("entry {} leaf: {}", e.index, hex::encode(e.leaf_hash()));
        file.extend_from_slice(&line);
    }
    println!("root(3): {}", hex::encode(log.root()));
    println!("root(2): {}", hex::encode(log.root_at(2).unwrap()));
    println!(
        "checkpoint line: {}",
        String::from_utf8_lossy(&cp.to_json_line()).trim_end()
    );
    println!(
        "checkpoint canonical: {}",
        hex::encode(cp.checkpoint.canonical_bytes())
    );
    println!(
        "checkpoint public key: {}",
        hex::encode(signer.public_key())
    );
    let incl = log.inclusion_proof(1, 3).unwrap();
    println!(
        "inclusion(1, 3): {:?}",
        incl.iter().map(hex::encode).collect::<Vec<_>>()
    );
    let cons = log.consistency_proof(2, 3).unwrap();
    println!(
        "consistency(2, 3): {:?}",
        cons.iter().map(hex::encode).collect::<Vec<_>>()
    );

    verify_inclusion(&entries[1].leaf_hash(), 1, 3, &incl, &log.root()).unwrap();
    verify_consistency(2, 3, &log.root_at(2).unwrap(), &log.root(), &cons).unwrap();
    verify(&file, std::slice::from_ref(&cp), &[signer.public_key()]).unwrap();

    // Snapshots: these values are quoted in docs/audit-log.md.
    assert_eq!(hex::encode(entries[0].hash()), SNAP_HASH0);
    assert_eq!(hex::encode(entries[2].hash()), SNAP_HASH2);
    assert_eq!(hex::encode(log.root()), SNAP_ROOT);
    assert_eq!(hex::encode(cp.signature), SNAP_SIG);
}

const SNAP_HASH0: &str = "5d184642aec1759d6b09b2c27b3514c83354604488dd0c94d2eda9ac71d4b9ae";
const SNAP_HASH2: &str = "9b4e1e3382ce0eecfb4d3a675eeb17e6bfcf972418bffdbbdb6a2ea838f21ebf";
const SNAP_ROOT: &str = "af199835ddc42429dd783302a2a7ecfcf25121c523020db6adda38c160debbd4";
const SNAP_SIG: &str =
    "7e4ace4fd6510cc616ba9d0cd32ad6aec4a948ff502c1d0032bf387ebef2d3d7959bc93a9e15a9cd615e612f1a7d9ea1401f4cdf7eb6e122abe19eff4f393b09";

mod common;

/// Snapshot of every event type's JSON and canonical encoding: the sample log
/// (one event of each type) must keep its exact bytes and root across changes.
#[test]
fn all_event_types_snapshot() {
    use sha2::Digest;
    let x = common::sample();
    let file_digest = hex::encode(sha2::Sha256::digest(x.bytes()));
    let root = hex::encode(x.log.root());
    println!("sample file sha256: {file_digest}\nsample root: {root}");
    // Set KEYFOLD_AUDIT_DUMP=DIR to write the sample log out (for checking it
    // with an independent verifier).
    if let Some(dir) = std::env::var_os("KEYFOLD_AUDIT_DUMP") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("entries.jsonl"), x.bytes()).unwrap();
        std::fs::write(dir.join("checkpoints.jsonl"), x.checkpoint_bytes()).unwrap();
    }
    assert_eq!(file_digest, SNAP_SAMPLE_FILE);
    assert_eq!(root, SNAP_SAMPLE_ROOT);
}

const SNAP_SAMPLE_FILE: &str = "dcdfea86b61f00dea6ab7e860361d04c2d51aef016dd0fea50c3ee9f211232b1";
const SNAP_SAMPLE_ROOT: &str = "71fbff8db6dbe3cae074714b60acd8e3d8205fa955c21102af34ec77d363d458";
