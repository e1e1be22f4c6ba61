//! Node audit trails ([`Trail`]), export bundles, offline verification of a
//! bundle (with the auditor, inclusion and kept-checkpoint consistency) and
//! the cross-check of signer logs against the coordinator's log.

use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey};
use keyfold_audit::bundle::{self, BundleError, KEYS_FILE};
use keyfold_audit::merkle::{self, FullTree};
use keyfold_audit::trail::{KEY_FILE, PUBLIC_KEY_FILE};
use keyfold_audit::{record, Event, SignedCheckpoint, SigningMode, Trail};
use keyfold_policy::{evaluate, EvalContext, Payload, Policy, Request, Spending, Tier};
use sha2::{Digest, Sha256};

const POLICY: &str = r#"
version = 1

[[rules]]
name = "small-eth"
assets = ["ETH"]
amount = { max = 1000 }
action = { kind = "allow" }

[[rules]]
name = "deny-rest"
action = { kind = "deny" }
"#;

fn policy() -> Policy {
    Policy::from_toml(POLICY).unwrap()
}

fn transfer(id: &str, wallet: &str, amount: u128) -> Request {
    Request {
        id: id.into(),
        wallet: wallet.into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount,
        destination: "0xabc".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        // Now: a node records a request when it arrives.
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        payload: Payload::TypedTransfer,
    }
}

struct Nodes {
    coordinator: Trail,
    signer: Trail,
    wallet: SigningKey,
}

/// A coordinator and one signer (`signer-1`, the only participant of a
/// 1-of-1 Ed25519 key, so the signer set is just it) that record one
/// allowed and signed request and one denied request.
fn run_nodes(data: &Path) -> Nodes {
    let coordinator = Trail::open(data.join("coordinator/audit"), "coordinator", None).unwrap();
    let signer = Trail::open(data.join("signer-1/audit"), "signer-1", None).unwrap();
    let p = policy();
    let wallet = SigningKey::from_bytes(&[7; 32]);
    let key_event = Event::KeyCreated {
        key_id: "k1".into(),
        curve: "ed25519".into(),
        tier: "hot".into(),
        t: 1,
        n: 1,
        participants: vec!["signer-1".into()],
        public_key: wallet.verifying_key().to_bytes().to_vec().into(),
        chain_code: None,
    };
    for t in [&coordinator, &signer] {
        assert!(t.record_policy(record::policy_event(&p, None)).unwrap());
        t.record(vec![key_event.clone()]).unwrap();
    }
    let empty = Spending::new(&p);
    let nonces = Default::default();
    for (id, amount) in [("r1", 500), ("r2", 5000)] {
        let req = transfer(id, "k1", amount);
        let now = req.time;
        let decision = evaluate(
            &p,
            &req,
            &EvalContext {
                now,
                spent: &empty,
                exclude: None,
                approvals: &[],
                seen_nonces: &nonces,
            },
        );
        coordinator
            .record(vec![
                record::request_event("k1", &req, None, None),
                record::decision_event(id, now, &decision),
            ])
            .unwrap();
        if !decision.is_allowed() {
            continue;
        }
        let message = req.signing_message();
        signer
            .record(vec![Event::Contribution {
                request_id: id.into(),
                key_id: "k1".into(),
                request_hash: req.canonical_hash(),
                message_hash: Sha256::digest(&message).into(),
                policy_version: 1,
                signers: vec!["0".into()],
                mode: SigningMode::Full,
            }])
            .unwrap();
        coordinator
            .record(vec![
                Event::SigningSession {
                    request_id: id.into(),
                    session_id: format!("s-{id}"),
                    signers: vec!["signer-1".into()],
                    mode: SigningMode::Full,
                },
                Event::Signature {
                    request_id: id.into(),
                    key_id: "k1".into(),
                    public_key: wallet.verifying_key().to_bytes().to_vec().into(),
                    signature: wallet.sign(&message).to_bytes().to_vec().into(),
                },
            ])
            .unwrap();
    }
    for t in [&coordinator, &signer] {
        assert!(t.checkpoint_now().unwrap().is_some());
    }
    Nodes {
        coordinator,
        signer,
        wallet,
    }
}

fn keys(bundle: &Path) -> std::collections::BTreeMap<String, [u8; 32]> {
    bundle::read_keys(&bundle.join(KEYS_FILE)).unwrap()
}

#[test]
fn a_recorded_run_exports_verifies_and_cross_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = run_nodes(&tmp.path().join("data"));
    let out = tmp.path().join("bundle");
    let exported = bundle::export_bundle(&tmp.path().join("data"), &out).unwrap();
    let ids: Vec<&str> = exported.iter().map(|e| e.log_id.as_str()).collect();
    assert_eq!(ids, ["coordinator", "signer-1"]);
    let keys = keys(&out);
    assert_eq!(
        hex::encode(keys["coordinator"]),
        nodes.coordinator.public_key_hex()
    );

    let v = bundle::verify_log(&out, "coordinator", keys["coordinator"], None).unwrap();
    // policy, key, 2 x (request, decision), session, signature.
    assert_eq!(v.report.entries, 8);
    assert_eq!(v.included, 8);
    assert_eq!(v.report.unanchored, 0);
    assert_eq!(
        (v.stats.decisions, v.stats.denied, v.stats.signatures),
        (2, 1, 1)
    );
    let s = bundle::verify_log(&out, "signer-1", keys["signer-1"], None).unwrap();
    assert_eq!(s.stats.contributions, 1);
    assert!(bundle::cross_check(&out, "coordinator").unwrap().is_empty());

    // The other log's key does not verify this log's checkpoints.
    let err = bundle::verify_log(&out, "coordinator", keys["signer-1"], None).unwrap_err();
    assert!(err.to_string().contains("not trusted"), "{err}");
    drop(nodes.wallet);
}

#[test]
fn software_checkpoint_key_is_private_and_stable_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let first = Trail::open(&dir, "node", None).unwrap();
    let public = first.public_key_hex();
    assert_eq!(
        std::fs::read_to_string(dir.join(PUBLIC_KEY_FILE))
            .unwrap()
            .trim(),
        public
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!format!("{first:?}").contains(
        &std::fs::read_to_string(dir.join(KEY_FILE))
            .unwrap()
            .trim()
            .to_string()
    ));
    assert!(first
        .record_policy(record::policy_event(&policy(), None))
        .unwrap());
    drop(first);
    let again = Trail::open(&dir, "node", None).unwrap();
    assert_eq!(again.public_key_hex(), public);
    // The same policy is not recorded twice; the restart checkpointed.
    assert!(!again
        .record_policy(record::policy_event(&policy(), None))
        .unwrap());
    assert_eq!(again.len(), 1);
    assert!(again.checkpoint_now().unwrap().is_none());
}

#[test]
fn a_kept_checkpoint_proves_appends_and_catches_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let nodes = run_nodes(&data);
    let kept: SignedCheckpoint = {
        let text =
            std::fs::read_to_string(data.join("coordinator/audit/checkpoints.jsonl")).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    nodes
        .coordinator
        .record(vec![Event::RequestFailed {
            request_id: "r2".into(),
            reason: "example".into(),
        }])
        .unwrap();
    nodes.coordinator.checkpoint_now().unwrap();
    let out = tmp.path().join("bundle");
    bundle::export_bundle(&data, &out).unwrap();
    let key = keys(&out)["coordinator"];
    let v = bundle::verify_log(&out, "coordinator", key, Some(&kept)).unwrap();
    assert_eq!(v.consistent_with_kept, Some((8, 9)));

    // A log rebuilt with another first entry and re-signed with the same key
    // verifies on its own, but not against the kept checkpoint.
    let forged = tmp.path().join("forged");
    let seed = std::fs::read_to_string(data.join("coordinator/audit").join(KEY_FILE)).unwrap();
    std::fs::create_dir_all(forged.join("coordinator/audit")).unwrap();
    std::fs::write(forged.join("coordinator/audit").join(KEY_FILE), seed).unwrap();
    let rewritten = Trail::open(forged.join("coordinator/audit"), "coordinator", None).unwrap();
    let other = Policy::from_toml(&POLICY.replace("1000", "999")).unwrap();
    rewritten
        .record(vec![record::policy_event(&other, None)])
        .unwrap();
    for i in 0..9 {
        rewritten
            .record(vec![Event::KeyCreated {
                key_id: format!("k-{i}"),
                curve: "ed25519".into(),
                tier: "hot".into(),
                t: 1,
                n: 1,
                participants: vec!["signer-1".into()],
                public_key: nodes.wallet.verifying_key().to_bytes().to_vec().into(),
                chain_code: None,
            }])
            .unwrap();
    }
    rewritten.checkpoint_now().unwrap();
    let out2 = tmp.path().join("bundle2");
    bundle::export_bundle(&forged, &out2).unwrap();
    assert_eq!(keys(&out2)["coordinator"], key);
    bundle::verify_log(&out2, "coordinator", key, None).unwrap();
    let err = bundle::verify_log(&out2, "coordinator", key, Some(&kept)).unwrap_err();
    assert!(err.to_string().contains("were rewritten"), "{err}");

    // A log cut below the kept checkpoint (and its later checkpoints
    // dropped) verifies on its own, but not against the kept checkpoint.
    let short = tmp.path().join("short");
    std::fs::create_dir_all(short.join("coordinator")).unwrap();
    let entries = std::fs::read_to_string(out.join("coordinator/entries.jsonl")).unwrap();
    let cps = std::fs::read_to_string(out.join("coordinator/checkpoints.jsonl")).unwrap();
    let first_cp = cps.lines().next().unwrap();
    let first: SignedCheckpoint = serde_json::from_str(first_cp).unwrap();
    assert!(first.checkpoint.tree_size < 5);
    let head: Vec<&str> = entries.lines().take(5).collect();
    std::fs::write(
        short.join("coordinator/entries.jsonl"),
        head.join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(
        short.join("coordinator/checkpoints.jsonl"),
        format!("{first_cp}\n"),
    )
    .unwrap();
    bundle::verify_log(&short, "coordinator", key, None).unwrap();
    let err = bundle::verify_log(&short, "coordinator", key, Some(&kept)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn cross_check_names_a_contribution_the_coordinator_log_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let nodes = run_nodes(&data);
    let hidden = transfer("hidden-1", "k1", 10);
    nodes
        .signer
        .record(vec![Event::Contribution {
            request_id: "hidden-1".into(),
            key_id: "k1".into(),
            request_hash: hidden.canonical_hash(),
            message_hash: Sha256::digest(hidden.signing_message()).into(),
            policy_version: 1,
            signers: vec!["0".into()],
            mode: SigningMode::Full,
        }])
        .unwrap();
    nodes.signer.checkpoint_now().unwrap();
    let out = tmp.path().join("bundle");
    bundle::export_bundle(&data, &out).unwrap();
    let findings = bundle::cross_check(&out, "coordinator").unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!(
        (f.log_id.as_str(), f.request_id.as_str()),
        ("signer-1", "hidden-1")
    );
    assert_eq!(f.index, 3);
    assert!(f.to_string().contains("no such request"), "{f}");
}

#[test]
fn export_needs_logs_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let err = bundle::export_bundle(tmp.path(), &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, BundleError::NoLogs(_)), "{err}");
    let err = bundle::read_keys(&tmp.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    std::fs::write(tmp.path().join("k.json"), r#"{"coordinator":"zz"}"#).unwrap();
    let err = bundle::read_keys(&tmp.path().join("k.json")).unwrap_err();
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[test]
fn full_tree_proofs_match_the_rfc6962_tree_for_every_size() {
    for n in 1..70u64 {
        let leaves: Vec<merkle::Hash> = (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let tree = FullTree::new(leaves.clone());
        assert_eq!(tree.root(), merkle::root(&leaves), "size {n}");
        for i in 0..n {
            let proof = tree.inclusion_proof(i).unwrap();
            assert_eq!(
                proof,
                merkle::inclusion_proof(&leaves, i, n).unwrap(),
                "size {n} leaf {i}"
            );
            merkle::verify_inclusion(&leaves[i as usize], i, n, &proof, &tree.root()).unwrap();
        }
        assert!(tree.inclusion_proof(n).is_err());
    }
    assert_eq!(FullTree::new(Vec::new()).root(), merkle::empty_root());
}

#[test]
fn checkpoint_times_must_follow_the_entries_they_cover() {
    let signer = keyfold_audit::Ed25519Signer::from_seed(&[5; 32]);
    let trusted = [keyfold_audit::CheckpointSigner::public_key(&signer)];
    let mut log = keyfold_audit::Log::new("coordinator").unwrap();
    let mut bytes = Vec::new();
    for i in 0..4i64 {
        let e = log
            .append(
                10_000 + i * 1000,
                Event::RequestFailed {
                    request_id: format!("r{i}"),
                    reason: "example".into(),
                },
            )
            .unwrap();
        bytes.extend(e.to_json_line());
    }
    // Honest: signed after the last entry it covers.
    let ok = log.checkpoint(&signer, 13_000).unwrap();
    keyfold_audit::verify(&bytes, std::slice::from_ref(&ok), &trusted).unwrap();
    // Claims to be signed before entry 3 was written.
    let early = log.checkpoint(&signer, 12_999).unwrap();
    let err = keyfold_audit::verify(&bytes, &[early], &trusted).unwrap_err();
    assert!(
        matches!(
            err,
            keyfold_audit::VerifyError::CheckpointTime { tree_size: 4, .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("before entry 3"), "{err}");
    // The head of a smaller tree signed after the head of the larger one.
    let mut small = keyfold_audit::Log::new("coordinator").unwrap();
    for line in bytes.split(|&b| b == b'\n').take(2) {
        let e: keyfold_audit::Entry = serde_json::from_slice(line).unwrap();
        small.append(e.time, e.event).unwrap();
    }
    let late_small = small.checkpoint(&signer, 20_000).unwrap();
    let err = keyfold_audit::verify(&bytes, &[late_small, ok], &trusted).unwrap_err();
    assert!(
        matches!(
            err,
            keyfold_audit::VerifyError::CheckpointTime { tree_size: 4, .. }
        ),
        "{err}"
    );
}
