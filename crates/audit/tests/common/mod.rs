//! Shared helpers for the integration tests.
#![allow(dead_code)]

use keyfold_audit::{Ed25519Signer, Event, HexBytes, Log, Outcome, SignedCheckpoint, SigningMode};

/// The checkpoint key of the test logs (fixed seed).
pub fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(&[7u8; 32])
}

/// One event of every type, in a plausible order (key, policy, an approved
/// and signed withdrawal, a refused request, an aborted session).
pub fn sample_events() -> Vec<Event> {
    let req = |id: &str| Event::SignRequest {
        request_id: id.into(),
        key_id: "hot-btc".into(),
        client: "payments".into(),
        message_hash: HexBytes(vec![0xab; 32]),
        hash_alg: "sha256d".into(),
        derivation_path: Some("m/0/7".into()),
    };
    vec![
        Event::KeyCreated {
            key_id: "hot-btc".into(),
            curve: "secp256k1".into(),
            t: 2,
            n: 3,
            participants: vec!["s1".into(), "s2".into(), "s3".into()],
            public_key: HexBytes(vec![2; 33]),
        },
        Event::PolicyVersion {
            version: 4,
            document_hash: [9u8; 32],
        },
        req("r1"),
        Event::Decision {
            request_id: "r1".into(),
            rule: "large-withdrawal".into(),
            outcome: Outcome::NeedApprovals,
        },
        Event::Approval {
            request_id: "r1".into(),
            approver: "officer-a".into(),
            signature: HexBytes(vec![0x51; 64]),
        },
        Event::Decision {
            request_id: "r1".into(),
            rule: "large-withdrawal".into(),
            outcome: Outcome::Allow,
        },
        Event::SigningSession {
            request_id: "r1".into(),
            session_id: "sess-1".into(),
            signers: vec!["s1".into(), "s3".into()],
            mode: SigningMode::Presignature,
        },
        Event::Signature {
            request_id: "r1".into(),
            key_id: "hot-btc".into(),
            public_key: HexBytes(vec![3; 33]),
            signature: HexBytes(vec![0x30; 71]),
        },
        req("r2"),
        Event::Decision {
            request_id: "r2".into(),
            rule: "deny-list".into(),
            outcome: Outcome::Deny,
        },
        req("r3"),
        Event::SigningSession {
            request_id: "r3".into(),
            session_id: "sess-2".into(),
            signers: vec!["s2".into(), "s3".into()],
            mode: SigningMode::Full,
        },
        Event::Aborted {
            request_id: "r3".into(),
            session_id: "sess-2".into(),
            blamed: Some("s2".into()),
            reason: "invalid zk proof in round 2".into(),
        },
        Event::Aborted {
            request_id: "r3".into(),
            session_id: "sess-3".into(),
            blamed: None,
            reason: "timeout".into(),
        },
    ]
}

/// An exported log: entry lines, checkpoints and the in-memory log.
pub struct Exported {
    pub lines: Vec<Vec<u8>>,
    pub checkpoints: Vec<SignedCheckpoint>,
    pub log: Log,
}

impl Exported {
    pub fn bytes(&self) -> Vec<u8> {
        self.lines.concat()
    }

    pub fn checkpoint_bytes(&self) -> Vec<u8> {
        self.checkpoints
            .iter()
            .flat_map(|c| c.to_json_line())
            .collect()
    }
}

/// Builds a log of `events` named `log_id`, checkpointing after every entry
/// whose size is in `checkpoint_at` (and always at the end).
pub fn build(log_id: &str, events: Vec<Event>, checkpoint_at: &[u64]) -> Exported {
    let signer = signer();
    let mut log = Log::new(log_id).unwrap();
    let mut lines = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, ev) in events.into_iter().enumerate() {
        let e = log.append(1_700_000_000_000 + i as i64 * 1000, ev).unwrap();
        lines.push(e.to_json_line());
        if checkpoint_at.contains(&log.len()) {
            checkpoints.push(
                log.checkpoint(&signer, 1_800_000_000_000 + i as i64)
                    .unwrap(),
            );
        }
    }
    if checkpoints.last().map(|c| c.checkpoint.tree_size) != Some(log.len()) {
        checkpoints.push(log.checkpoint(&signer, 1_900_000_000_000).unwrap());
    }
    Exported {
        lines,
        checkpoints,
        log,
    }
}

/// The sample log with checkpoints at sizes 4, 9 and every size from n-1.
pub fn sample() -> Exported {
    let events = sample_events();
    let n = events.len() as u64;
    build("coordinator", events, &[4, 9, n - 1, n])
}

pub fn trusted() -> Vec<[u8; 32]> {
    use keyfold_audit::CheckpointSigner;
    vec![signer().public_key()]
}
