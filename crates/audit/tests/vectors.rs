//! The worked example of `docs/audit-log.md` (section 10), with snapshots so
//! that the page cannot drift from the code, and a sample export in the
//! layout of `keyfold audit export` for independent verifiers.
//!
//! ```text
//! cargo test -p keyfold-audit --test vectors -- --nocapture     # prints the example
//! KEYFOLD_AUDIT_DUMP=/tmp/x cargo test -p keyfold-audit --test vectors
//! python3 crates/audit/tools/independent_verify.py /tmp/x      # checks the export
//! ```
//!
//! Self-contained on purpose (no `mod common`): the values quoted in the docs
//! must not depend on helpers shared with other tests.

use std::collections::{BTreeMap, BTreeSet};

use k256::ecdsa::signature::hazmat::PrehashSigner;
use keyfold_audit::bundle;
use keyfold_audit::merkle::{self, verify_consistency, verify_inclusion};
use keyfold_audit::record::{
    approval_event, decision_event, freeze_added_event, freeze_lifted_event, policy_event,
    request_event, review_event, risk_decision_event, risk_tree_event, ReviewVerdict,
};
use keyfold_audit::{
    verify, verify_with, Auditor, CheckpointSigner, Ed25519Signer, Entry, Event, HexBytes, Log,
    SignedCheckpoint, SigningMode,
};
use keyfold_policy::{
    evaluate, AdminSignature, Approval, ApprovalDecision, EvalContext, HistoryEntry, Payload,
    Policy, Request, SignedPolicy, Spending, Tier,
};
use keyfold_risk::{
    evaluate as risk_evaluate, ClientContext, CountryCode, FreezeScope, KycTier, Payment,
    RiskRequest, RiskState, RiskTree, SignedTree, TreeSignature, DEFAULT_TREE_TOML,
};
use sha2::{Digest, Sha256};

/// The page the values below are quoted in.
const DOC: &str = include_str!("../../../docs/audit-log.md");

/// Whether `value` appears in the docs, ignoring all whitespace (long hex
/// values are wrapped over several lines there).
fn doc_contains(value: &str) -> bool {
    let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    strip(DOC).contains(&strip(value))
}

fn h(s: &str) -> String {
    s.to_string()
}

// ---------------------------------------------------------------------------
// Worked example (docs section 10)
// ---------------------------------------------------------------------------

/// The policy document of the worked example.
const EXAMPLE_POLICY: &str = "version = 1

[[rules]]
name = \"small-hot\"
tier = \"hot\"
amount = { max = 100000 }
action = { kind = \"allow\" }

[[rules]]
name = \"deny-all\"
action = { kind = \"deny\" }
";

/// The secp256k1 generator G (the public key of secret key 1), SEC1 compressed.
const EXAMPLE_PUBLIC_KEY: &str =
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

/// The typed request of the worked example.
fn example_request() -> Request {
    Request {
        id: "r1".into(),
        wallet: "k1".into(),
        tier: Tier::Hot,
        asset: "BTC".into(),
        amount: 50_000,
        destination: "bc1qdest".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: 1_735_689_600,
        payload: Payload::TypedTransfer,
    }
}

struct Example {
    log: Log,
    entries: Vec<Entry>,
    /// Checkpoints of size 3 (kept by an auditor) and 4.
    checkpoints: Vec<SignedCheckpoint>,
    signer: Ed25519Signer,
}

fn example() -> Example {
    let signer = Ed25519Signer::from_seed(&[0x01; 32]);
    let mut log = Log::new("coordinator").unwrap();
    let policy = Policy::from_toml(EXAMPLE_POLICY).unwrap();
    let request = example_request();
    let evaluated_at = 1_735_689_601;
    let decision = evaluate(
        &policy,
        &request,
        &EvalContext {
            now: evaluated_at,
            spent: &Spending::new(&policy),
            exclude: None,
            approvals: &[],
            seen_nonces: &BTreeSet::new(),
        },
    );
    let events = vec![
        Event::KeyCreated {
            key_id: "k1".into(),
            curve: "secp256k1".into(),
            tier: "hot".into(),
            t: 2,
            n: 3,
            participants: vec!["signer-1".into(), "signer-2".into(), "signer-3".into()],
            public_key: HexBytes(hex::decode(EXAMPLE_PUBLIC_KEY).unwrap()),
            chain_code: Some(HexBytes(vec![0x11; 32])),
        },
        Event::PolicyVersion {
            version: 1,
            document_hash: Sha256::digest(EXAMPLE_POLICY.as_bytes()).into(),
            document: EXAMPLE_POLICY.into(),
            update: None,
        },
        request_event("k1", &request, Some("sha256"), None),
        decision_event("r1", evaluated_at, &decision),
    ];
    // Entry times (ms) are when the node writes each entry: never going
    // back, the request recorded after its own time, the decision after the
    // time it was evaluated at (docs section 9.2).
    let times: [i64; 4] = [
        1_735_689_600_000,
        1_735_689_600_001,
        1_735_689_600_002,
        1_735_689_601_003,
    ];
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    for (e, time) in events.into_iter().zip(times) {
        entries.push(log.append(time, e).unwrap());
        if log.len() == 3 {
            checkpoints.push(log.checkpoint(&signer, 1_735_689_600_500).unwrap());
        }
    }
    checkpoints.push(log.checkpoint(&signer, 1_735_689_601_500).unwrap());
    Example {
        log,
        entries,
        checkpoints,
        signer,
    }
}

fn hexes(v: &[[u8; 32]]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

#[test]
fn worked_example() {
    let x = example();
    let mut file = Vec::new();
    // Every value printed here must appear verbatim in docs/audit-log.md.
    let mut quoted: Vec<(String, String)> = Vec::new();
    let mut show = |name: String, value: String| {
        println!("{name}: {value}");
        quoted.push((name, value));
    };
    for e in &x.entries {
        let line = e.to_json_line();
        show(
            format!("entry {} line", e.index),
            String::from_utf8(line[..line.len() - 1].to_vec()).unwrap(),
        );
        show(
            format!("entry {} canonical", e.index),
            hex::encode(e.canonical_bytes()),
        );
        show(format!("entry {} hash", e.index), hex::encode(e.hash()));
        show(
            format!("entry {} leaf", e.index),
            hex::encode(e.leaf_hash()),
        );
        file.extend_from_slice(&line);
    }
    let req = example_request();
    show(
        h("request canonical_hash"),
        hex::encode(req.canonical_hash()),
    );
    show(
        h("request signing_message"),
        hex::encode(req.signing_message()),
    );
    show(
        h("request message_hash"),
        hex::encode(Sha256::digest(req.signing_message())),
    );
    let leaves = x.log.leaf_hashes().to_vec();
    show(h("node(0,1)"), hex::encode(merkle::root(&leaves[..2])));
    show(h("node(2,3)"), hex::encode(merkle::root(&leaves[2..4])));
    show(h("root(3)"), hex::encode(x.log.root_at(3).unwrap()));
    show(h("root(4)"), hex::encode(x.log.root()));
    for cp in &x.checkpoints {
        let size = cp.checkpoint.tree_size;
        let line = cp.to_json_line();
        show(
            format!("checkpoint {size} line"),
            String::from_utf8(line[..line.len() - 1].to_vec()).unwrap(),
        );
        show(
            format!("checkpoint {size} canonical"),
            hex::encode(cp.checkpoint.canonical_bytes()),
        );
        show(
            format!("checkpoint {size} signature"),
            hex::encode(cp.signature),
        );
    }
    show(
        h("checkpoint public key"),
        hex::encode(x.signer.public_key()),
    );
    let incl = x.log.inclusion_proof(2, 4).unwrap();
    show(h("inclusion(2, 4)"), hexes(&incl).join(" "));
    let incl1 = x.log.inclusion_proof(1, 3).unwrap();
    show(h("inclusion(1, 3)"), hexes(&incl1).join(" "));
    let cons = x.log.consistency_proof(3, 4).unwrap();
    show(h("consistency(3, 4)"), hexes(&cons).join(" "));

    // The values are consistent with each other and with the verifier ...
    let root3 = x.log.root_at(3).unwrap();
    verify_inclusion(&x.entries[2].leaf_hash(), 2, 4, &incl, &x.log.root()).unwrap();
    verify_inclusion(&x.entries[1].leaf_hash(), 1, 3, &incl1, &root3).unwrap();
    verify_consistency(3, 4, &root3, &x.log.root(), &cons).unwrap();
    let trusted = [x.signer.public_key()];
    verify(&file, &x.checkpoints, &trusted).unwrap();
    // ... and the example is a valid log for the auditor's semantic checks.
    let mut auditor = Auditor::new();
    verify_with(&file, &x.checkpoints, &trusted, &mut auditor).unwrap();
    assert_eq!(auditor.stats().decisions, 1);

    // Snapshots of the main values.
    assert_eq!(hex::encode(x.entries[0].hash()), SNAP_HASH0);
    assert_eq!(hex::encode(x.entries[3].hash()), SNAP_HASH3);
    assert_eq!(hex::encode(x.log.root()), SNAP_ROOT4);
    assert_eq!(hex::encode(root3), SNAP_ROOT3);
    assert_eq!(hex::encode(x.checkpoints[1].signature), SNAP_SIG4);

    // And every printed value is quoted in the docs.
    let missing: Vec<&str> = quoted
        .iter()
        .filter(|(_, v)| !doc_contains(v))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "docs/audit-log.md does not quote these values (run with --nocapture and paste them): {missing:?}"
    );
}

const SNAP_HASH0: &str = "6c6221987416ae036f8d66e94a2dccd1bc5400cd081a74780d70df3691a63949";
const SNAP_HASH3: &str = "4b769c40507f4353eb66e516bba52055788e6503c4c8c7506c286164ab26cb0a";
const SNAP_ROOT3: &str = "605061d861e8f540aa053eb2bcf1b5aea7e87f4629042ec5c4de904bf4eebe55";
const SNAP_ROOT4: &str = "5426ea26996267c92fe9adee762b82015cca2dbcfd8c34ce346a535736ce7647";
const SNAP_SIG4: &str =
    "acf32ecb2814fc8390b3ad57035192370717ff1cf43395c79940c6c75b1b404d56a8f2a5e9ca906018182f68cf8ebc79419dd479bb6b348cd7e5a85c37d9c503";

// ---------------------------------------------------------------------------
// Sample export (KEYFOLD_AUDIT_DUMP)
// ---------------------------------------------------------------------------

/// A log being written, with its own checkpoint key and a millisecond clock.
struct Writer {
    log: Log,
    key: Ed25519Signer,
    lines: Vec<u8>,
    checkpoints: Vec<SignedCheckpoint>,
    clock: i64,
}

impl Writer {
    fn new(log_id: &str, seed: u8) -> Self {
        Writer {
            log: Log::new(log_id).unwrap(),
            key: Ed25519Signer::from_seed(&[seed; 32]),
            lines: Vec::new(),
            checkpoints: Vec::new(),
            clock: 1_735_689_600_000,
        }
    }

    /// Moves the clock to `secs` (Unix seconds) unless it is already past
    /// it: entry times never go back (a node's trail clamps them).
    fn at(&mut self, secs: u64) -> &mut Self {
        self.clock = self.clock.max(secs as i64 * 1000);
        self
    }

    /// Decides `req` at `now` and records the decision, written after the
    /// evaluation time as the coordinator writes it.
    fn decide(&mut self, eng: &mut Engine, policy: &Policy, req: &Request, now: u64) -> &mut Self {
        let d = eng.decide(policy, req, now);
        self.at(now).push(d)
    }

    fn push(&mut self, event: Event) -> &mut Self {
        self.clock += 1;
        let e = self.log.append(self.clock, event).unwrap();
        self.lines.extend_from_slice(&e.to_json_line());
        self
    }

    fn checkpoint(&mut self) -> &mut Self {
        self.clock += 1;
        let cp = self.log.checkpoint(&self.key, self.clock).unwrap();
        self.checkpoints.push(cp);
        self
    }

    fn checkpoint_bytes(&self) -> Vec<u8> {
        self.checkpoints
            .iter()
            .flat_map(|c| c.to_json_line())
            .collect()
    }
}

fn policy_toml(version: u64, admin: &[u8; 32], alice: &[u8; 32], max_btc: u64) -> String {
    format!(
        "version = {version}
name = \"audit-sample\"

[admins]
keys = [\"{admin}\"]
quorum = 1

[[groups]]
name = \"treasury\"
quorum = 1
members = [{{ name = \"alice\", key = \"{alice}\" }}]

[[velocity]]
name = \"hot-btc-daily\"
per = \"wallet\"
window_secs = 86400
asset = \"BTC\"
max_amount = {max_btc}

[[rules]]
name = \"small-hot\"
tier = \"hot\"
amount = {{ max = 100000 }}
action = {{ kind = \"allow\" }}

[[rules]]
name = \"large-hot\"
tier = \"hot\"
action = {{ kind = \"require_approvals\", groups = [\"treasury\"] }}

[[rules]]
name = \"cold\"
tier = \"cold\"
action = {{ kind = \"allow\" }}

[[rules]]
name = \"deny-all\"
action = {{ kind = \"deny\" }}
",
        admin = hex::encode(admin),
        alice = hex::encode(alice),
    )
}

/// The coordinator's view while building the sample: the same history and
/// nonce rules as the auditor, to produce the decisions it will re-derive.
#[derive(Default)]
struct Engine {
    history: Vec<(String, HistoryEntry)>,
    approvals: BTreeMap<String, Vec<Approval>>,
}

impl Engine {
    fn decide(&mut self, policy: &Policy, req: &Request, now: u64) -> Event {
        self.history.retain(|(id, _)| id != &req.id);
        let own = self.approvals.get(&req.id).cloned().unwrap_or_default();
        let seen: BTreeSet<[u8; 16]> = self
            .approvals
            .iter()
            .filter(|(id, _)| *id != &req.id)
            .flat_map(|(_, a)| a.iter().map(|a| a.nonce))
            .collect();
        let spent = Spending::from_entries(policy, self.history.iter().map(|(_, e)| e.clone()));
        let d = evaluate(
            policy,
            req,
            &EvalContext {
                now,
                spent: &spent,
                exclude: None,
                approvals: &own,
                seen_nonces: &seen,
            },
        );
        if d.is_allowed() {
            self.history.push((req.id.clone(), req.history_entry(now)));
        }
        decision_event(&req.id, now, &d)
    }

    fn failed(&mut self, id: &str) {
        self.history.retain(|(i, _)| i != id);
    }
}

fn transfer(id: &str, wallet: &str, tier: Tier, asset: &str, amount: u128, time: u64) -> Request {
    Request {
        id: id.into(),
        wallet: wallet.into(),
        tier,
        asset: asset.into(),
        amount,
        destination: format!("dest-of-{id}"),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time,
        payload: Payload::TypedTransfer,
    }
}

fn contribution(
    req: &Request,
    key_id: &str,
    policy_version: u64,
    party_indices: &[&str],
    mode: SigningMode,
) -> Event {
    Event::Contribution {
        request_id: req.id.clone(),
        key_id: key_id.into(),
        request_hash: req.canonical_hash(),
        message_hash: Sha256::digest(req.signing_message()).into(),
        policy_version,
        signers: names(party_indices),
        mode,
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A payment of `amount` USDC base units by customer `c-1` from `device`
/// in `country`, at `at`.
fn risk_payment(amount: u128, device: &str, country: &str, at: u64) -> RiskRequest {
    RiskRequest {
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount,
            destination: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into(),
            wallet: "k1".into(),
            merchant: Some("shop".into()),
        },
        context: ClientContext {
            customer_id: Some("c-1".into()),
            device_id: Some(device.into()),
            country: Some(country.parse::<CountryCode>().unwrap()),
            kyc_tier: KycTier::Basic,
            ..ClientContext::default()
        },
        at,
    }
}

/// The risk engine's part of the sample: the default tree, decisions on
/// four payments (the first two logged in the other order, as concurrent
/// requests can be), an officer's review of the held one, a freeze added
/// and lifted by two officers, and a tree update signed by the admin of
/// the policy in force. Appended after the entries the sample had before
/// risk events existed, so those keep their bytes.
fn risk_events(c: &mut Writer, admin: &ed25519_dalek::SigningKey, t0: u64) {
    let mut tree = RiskTree::from_toml(DEFAULT_TREE_TOML).unwrap();
    let mut state = RiskState::new();
    let mut seq = 0;
    let mut decide = |tree: &RiskTree, id: &str, input: &RiskRequest| {
        let features = state.features(tree, input).unwrap();
        let decision = risk_evaluate(tree, &features);
        state.observe(input).unwrap();
        seq += 1;
        (
            decision.action,
            risk_decision_event(id, seq, input, &features, &decision).unwrap(),
        )
    };
    // 25 USDC from a first device and destination: allowed. 2,000 USDC from
    // another new device: a step-up. The same customer in the US ten
    // minutes after France: impossible travel, held for review.
    let (a1, d1) = decide(
        &tree,
        "p-1",
        &risk_payment(25_000_000, "d-1", "FR", t0 + 410),
    );
    let (a2, d2) = decide(
        &tree,
        "p-2",
        &risk_payment(2_000_000_000, "d-2", "FR", t0 + 411),
    );
    let (a3, d3) = decide(
        &tree,
        "p-3",
        &risk_payment(30_000_000, "d-1", "US", t0 + 1010),
    );
    assert_eq!(
        (a1.name(), a2.name(), a3.name()),
        ("allow", "step_up", "review")
    );
    c.at(t0 + 400)
        .push(risk_tree_event(1, DEFAULT_TREE_TOML, None).unwrap())
        .at(t0 + 411)
        .push(d2)
        .push(d1)
        .at(t0 + 1010)
        .push(d3)
        .at(t0 + 1200)
        .push(
            review_event(
                "p-3",
                "carol",
                ReviewVerdict::Reject,
                &serde_json::json!({ "request_id": "p-3", "verdict": "reject", "signature": "00" }),
            )
            .unwrap(),
        )
        .push(freeze_added_event(
            "fz-1",
            FreezeScope::Customer,
            "c-1",
            "customer reported a stolen phone",
            None,
            "ops-alice",
        ))
        .at(t0 + 1800)
        .push(
            freeze_lifted_event(
                "fz-1",
                FreezeScope::Customer,
                "c-1",
                "phone recovered",
                None,
                &names(&["alice", "bob"]),
                &serde_json::json!({ "freeze_id": "fz-1", "signatures": ["00", "00"] }),
            )
            .unwrap(),
        );
    // A signed tree update, then a decision under it.
    let doc2 = DEFAULT_TREE_TOML.replace("version = 1\n", "version = 2\n");
    let signed = SignedTree {
        tree_toml: doc2.clone(),
        signatures: vec![TreeSignature::sign(admin, &doc2)],
    };
    tree = RiskTree::from_toml(&doc2).unwrap();
    let (_, d4) = decide(
        &tree,
        "p-4",
        &risk_payment(10_000_000, "d-1", "US", t0 + 2000),
    );
    c.at(t0 + 1900)
        .push(risk_tree_event(2, &doc2, Some(&signed)).unwrap())
        .at(t0 + 2000)
        .push(d4)
        .checkpoint();
}

/// The sample export: a coordinator log with one event of every coordinator
/// type (including a signed policy update, an approval, a denial, aborted
/// sessions, a failed request, ECDSA signatures with sha256 and keccak256,
/// a BIP32 child key, an HSM Ed25519 signature, and the risk engine's trees,
/// decisions, a review and a freeze) and three signer logs with their
/// contributions. Every log passes the auditor's checks, including the
/// time rules: each node's clock only moves forward, a request is recorded
/// just after its own time and a decision just after its evaluation time.
fn sample_export() -> Vec<Writer> {
    let admin = ed25519_dalek::SigningKey::from_bytes(&[0xad; 32]);
    let alice = ed25519_dalek::SigningKey::from_bytes(&[0xa1; 32]);
    let admin_pk = admin.verifying_key().to_bytes();
    let alice_pk = alice.verifying_key().to_bytes();
    let doc1 = policy_toml(1, &admin_pk, &alice_pk, 200_000);
    let doc2 = policy_toml(2, &admin_pk, &alice_pk, 400_000);
    let p1 = Policy::from_toml(&doc1).unwrap();
    let update = SignedPolicy {
        document_toml: doc2.clone(),
        signatures: vec![AdminSignature::sign(&admin, &doc2)],
    };
    let p2 = update.verify(&p1).unwrap();
    let genesis = policy_event(&p1, None);
    let second = policy_event(&p2, Some(&update));

    // Hot key k1: a BIP32 master key, so children can be derived from its
    // public key and chain code. Cold key c1: an Ed25519 key in the HSM.
    let xprv = bip32::XPrv::new([0x42; 32]).unwrap();
    let k1_pub = xprv
        .public_key()
        .public_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec();
    let k1_cc = xprv.attrs().chain_code;
    let k1_created = Event::KeyCreated {
        key_id: "k1".into(),
        curve: "secp256k1".into(),
        tier: "hot".into(),
        t: 2,
        n: 3,
        participants: names(&["signer-1", "signer-2", "signer-3"]),
        public_key: HexBytes(k1_pub.clone()),
        chain_code: Some(HexBytes(k1_cc.to_vec())),
    };
    let c1 = ed25519_dalek::SigningKey::from_bytes(&[0xc1; 32]);
    let c1_created = Event::KeyCreated {
        key_id: "c1".into(),
        curve: "ed25519".into(),
        tier: "cold".into(),
        t: 1,
        n: 1,
        participants: names(&["hsm"]),
        public_key: HexBytes(c1.verifying_key().to_bytes().to_vec()),
        chain_code: None,
    };
    let ecdsa = |sk: &k256::ecdsa::SigningKey, digest: &[u8]| -> Vec<u8> {
        let sig: k256::ecdsa::Signature = sk.sign_prehash(digest).unwrap();
        sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
    };
    let child = xprv
        .derive_child(bip32::ChildNumber::new(0, false).unwrap())
        .unwrap()
        .derive_child(bip32::ChildNumber::new(7, false).unwrap())
        .unwrap();
    let child_pub = child
        .public_key()
        .public_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec();

    let t0: u64 = 1_735_689_600;
    let r1 = transfer("r-1", "k1/m/0/7", Tier::Hot, "BTC", 50_000, t0);
    let r2 = transfer("r-2", "k1", Tier::Hot, "BTC", 150_000, t0 + 60);
    let r3 = transfer("r-3", "c1", Tier::Cold, "SOL", 5_000_000_000, t0 + 120);
    let r4 = transfer("r-4", "k1", Tier::Hot, "BTC", 10_000, t0 + 180);
    let r5 = transfer("r-5", "k1", Tier::Hot, "ETH", 100, t0 + 240);
    let r6 = transfer("r-6", "k1", Tier::Hot, "BTC", 10_000, t0 + 300);
    let approval = Approval::sign(
        &alice,
        r2.canonical_hash(),
        1,
        ApprovalDecision::Approve,
        t0 + 3600,
        [0x5a; 16],
    );

    let mut eng = Engine::default();
    let mut c = Writer::new("coordinator", 0xc0);
    c.push(genesis.clone())
        .push(Event::ClientToken {
            token_id: 1,
            name: "payments".into(),
            action: "issued".into(),
        })
        .push(k1_created)
        .push(c1_created);
    // r-1: a derived child key, ECDSA over SHA-256, presignature.
    c.at(t0)
        .push(request_event("k1", &r1, Some("sha256"), Some("m/0/7")))
        .decide(&mut eng, &p1, &r1, t0 + 1)
        .checkpoint();
    let sig = ecdsa(child.private_key(), &Sha256::digest(r1.signing_message()));
    c.push(Event::SigningSession {
        request_id: "r-1".into(),
        session_id: "sess-1".into(),
        signers: names(&["signer-1", "signer-3"]),
        mode: SigningMode::Presignature,
    })
    .push(Event::Signature {
        request_id: "r-1".into(),
        key_id: "k1".into(),
        public_key: HexBytes(child_pub),
        signature: HexBytes(sig),
    });
    // r-2: needs an approval; keccak256; one aborted session, then a full one.
    c.at(t0 + 60)
        .push(request_event("k1", &r2, Some("keccak256"), None))
        .decide(&mut eng, &p1, &r2, t0 + 61);
    eng.approvals.insert("r-2".into(), vec![approval.clone()]);
    c.at(t0 + 89)
        .push(approval_event("r-2", &approval))
        .decide(&mut eng, &p1, &r2, t0 + 90);
    let sig = ecdsa(
        xprv.private_key(),
        &sha3::Keccak256::digest(r2.signing_message()),
    );
    c.push(Event::SigningSession {
        request_id: "r-2".into(),
        session_id: "sess-2".into(),
        signers: names(&["signer-1", "signer-2"]),
        mode: SigningMode::Full,
    })
    .push(Event::Aborted {
        request_id: "r-2".into(),
        session_id: "sess-2".into(),
        blamed: Some("signer-2".into()),
        reason: "invalid share in round 2".into(),
    })
    .push(Event::SigningSession {
        request_id: "r-2".into(),
        session_id: "sess-3".into(),
        signers: names(&["signer-1", "signer-3"]),
        mode: SigningMode::Full,
    })
    .push(Event::Signature {
        request_id: "r-2".into(),
        key_id: "k1".into(),
        public_key: HexBytes(k1_pub.clone()),
        signature: HexBytes(sig),
    })
    .checkpoint();
    // r-3: a cold key in the HSM, Ed25519 over the transfer intent itself.
    c.at(t0 + 120)
        .push(request_event("c1", &r3, None, None))
        .decide(&mut eng, &p1, &r3, t0 + 121)
        .push(Event::SigningSession {
            request_id: "r-3".into(),
            session_id: "hsm-r-3".into(),
            signers: names(&["hsm"]),
            mode: SigningMode::Hsm,
        })
        .push(Event::Signature {
            request_id: "r-3".into(),
            key_id: "c1".into(),
            public_key: HexBytes(c1.verifying_key().to_bytes().to_vec()),
            signature: HexBytes(
                ed25519_dalek::Signer::sign(&c1, &r3.signing_message())
                    .to_bytes()
                    .to_vec(),
            ),
        });
    // r-4: over the velocity limit (r-1 and r-2 used it up): denied.
    c.at(t0 + 180)
        .push(request_event("k1", &r4, Some("sha256"), None))
        .decide(&mut eng, &p1, &r4, t0 + 181)
        .push(Event::RequestClosed {
            request_id: "r-4".into(),
            state: "rejected".into(),
            by: None,
            reason: "denied by rule velocity".into(),
        });
    // r-5: allowed, its only session times out, and it fails.
    c.at(t0 + 240)
        .push(request_event("k1", &r5, Some("keccak256"), None))
        .decide(&mut eng, &p1, &r5, t0 + 241)
        .push(Event::SigningSession {
            request_id: "r-5".into(),
            session_id: "sess-4".into(),
            signers: names(&["signer-2", "signer-3"]),
            mode: SigningMode::Full,
        })
        .push(Event::Aborted {
            request_id: "r-5".into(),
            session_id: "sess-4".into(),
            blamed: None,
            reason: "timeout".into(),
        })
        .push(Event::RequestFailed {
            request_id: "r-5".into(),
            reason: "no signer quorum".into(),
        });
    eng.failed("r-5");
    // A signed policy update raises the limit; r-6 now passes.
    c.at(t0 + 270).push(second.clone()).checkpoint();
    let sig = ecdsa(xprv.private_key(), &Sha256::digest(r6.signing_message()));
    c.at(t0 + 300)
        .push(request_event("k1", &r6, Some("sha256"), None))
        .decide(&mut eng, &p2, &r6, t0 + 301)
        .push(Event::SigningSession {
            request_id: "r-6".into(),
            session_id: "sess-5".into(),
            signers: names(&["signer-2", "signer-3"]),
            mode: SigningMode::Presignature,
        })
        .push(Event::Signature {
            request_id: "r-6".into(),
            key_id: "k1".into(),
            public_key: HexBytes(k1_pub),
            signature: HexBytes(sig),
        })
        .checkpoint();
    risk_events(&mut c, &admin, t0);

    // Signer logs, as signer nodes write them: the policy versions they
    // enforce and what they contributed to (signer sets as party indices in
    // the key's participant list: signer-1 is 0).
    let signer_log = |id: &str, seed: u8| {
        let mut w = Writer::new(id, seed);
        w.push(genesis.clone());
        w
    };
    let mut s1 = signer_log("signer-1", 0x51);
    s1.at(t0 + 2)
        .push(contribution(
            &r1,
            "k1",
            1,
            &["0", "2"],
            SigningMode::Presignature,
        ))
        .checkpoint()
        .at(t0 + 91)
        .push(contribution(&r2, "k1", 1, &["0", "1"], SigningMode::Full))
        .push(contribution(&r2, "k1", 1, &["0", "2"], SigningMode::Full))
        .at(t0 + 271)
        .push(second.clone())
        .checkpoint();
    let mut s2 = signer_log("signer-2", 0x52);
    s2.at(t0 + 91)
        .push(contribution(&r2, "k1", 1, &["0", "1"], SigningMode::Full))
        .at(t0 + 271)
        .push(second.clone())
        .at(t0 + 302)
        .push(contribution(
            &r6,
            "k1",
            2,
            &["1", "2"],
            SigningMode::Presignature,
        ))
        .checkpoint();
    let mut s3 = signer_log("signer-3", 0x53);
    s3.at(t0 + 2)
        .push(contribution(
            &r1,
            "k1",
            1,
            &["0", "2"],
            SigningMode::Presignature,
        ))
        .at(t0 + 92)
        .push(contribution(&r2, "k1", 1, &["0", "2"], SigningMode::Full))
        .at(t0 + 271)
        .push(second)
        .checkpoint()
        .at(t0 + 302)
        .push(contribution(
            &r6,
            "k1",
            2,
            &["1", "2"],
            SigningMode::Presignature,
        ))
        .checkpoint();
    vec![c, s1, s2, s3]
}

/// The sample export verifies (integrity and the auditor's checks), keeps
/// its exact bytes, and is written out with `KEYFOLD_AUDIT_DUMP=DIR` in the
/// layout of `keyfold audit export`.
#[test]
fn sample_export_snapshot() {
    let logs = sample_export();
    let mut keys = BTreeMap::new();
    for w in &logs {
        let trusted = [w.key.public_key()];
        let mut auditor = Auditor::new();
        let report = verify_with(&w.lines, &w.checkpoints, &trusted, &mut auditor)
            .unwrap_or_else(|e| panic!("{}: {e}", w.log.log_id()));
        assert_eq!(report.unanchored, 0);
        keys.insert(w.log.log_id().to_string(), hex::encode(w.key.public_key()));
    }
    let coordinator = &logs[0];
    let stats = {
        let mut a = Auditor::new();
        verify_with(
            &coordinator.lines,
            &coordinator.checkpoints,
            &[coordinator.key.public_key()],
            &mut a,
        )
        .unwrap();
        a.stats().clone()
    };
    assert_eq!(
        (stats.policies, stats.keys, stats.requests, stats.approvals),
        (2, 2, 6, 1)
    );
    assert_eq!(
        (
            stats.decisions,
            stats.denied,
            stats.signatures,
            stats.aborted
        ),
        (7, 1, 4, 2)
    );
    assert_eq!(
        (
            stats.risk_trees,
            stats.risk_decisions,
            stats.freezes,
            stats.reviews
        ),
        (2, 4, 2, 1)
    );
    // The entries from before the risk events keep their bytes: the
    // checkpoint of their 33 entries signs the root the sample had then.
    let before = coordinator
        .checkpoints
        .iter()
        .find(|c| c.checkpoint.tree_size == 33)
        .unwrap();
    assert_eq!(
        hex::encode(before.checkpoint.root_hash),
        SNAP_SAMPLE_ROOT_33
    );

    // Every event type appears.
    let mut types = BTreeSet::new();
    for w in &logs {
        for line in w.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e: Entry = serde_json::from_slice(line).unwrap();
            types.insert(e.event.type_code());
        }
    }
    // (Chain transactions, 13, have their own tests: they need a chain.)
    assert_eq!(types, (1..=12).chain(14..=17).collect::<BTreeSet<u16>>());

    // `keys.json` as `keyfold audit export` writes it (pretty JSON object).
    let keys_json = serde_json::to_string_pretty(&keys).unwrap();
    let mut digest = Sha256::new();
    digest.update(keys_json.as_bytes());
    for w in &logs {
        let root = hex::encode(w.log.root());
        println!(
            "sample {}: {} entries, {} checkpoints, root {root}",
            w.log.log_id(),
            w.log.len(),
            w.checkpoints.len()
        );
        digest.update(&w.lines);
        digest.update(w.checkpoint_bytes());
    }
    let digest = hex::encode(digest.finalize());
    println!("sample export sha256: {digest}");

    // Write the bundle (to KEYFOLD_AUDIT_DUMP, or a temporary directory) and
    // check it with the bundle reader of `keyfold audit verify` / `cross-check`.
    let tmp = tempfile::tempdir().unwrap();
    let dump = std::env::var_os("KEYFOLD_AUDIT_DUMP").map(std::path::PathBuf::from);
    let dir = dump.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(bundle::KEYS_FILE), &keys_json).unwrap();
    for w in &logs {
        let d = dir.join(w.log.log_id());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("entries.jsonl"), &w.lines).unwrap();
        std::fs::write(d.join("checkpoints.jsonl"), w.checkpoint_bytes()).unwrap();
    }
    // A checkpoint an auditor kept from an earlier export: the coordinator's
    // first one (for `keyfold audit verify DIR --kept FILE`). Kept outside
    // the log directories.
    let kept = coordinator.checkpoints[0].clone();
    std::fs::write(dir.join("kept-checkpoint.jsonl"), kept.to_json_line()).unwrap();
    if let Some(d) = &dump {
        println!("sample export written to {}", d.display());
    }
    let trusted = bundle::read_keys(&dir.join(bundle::KEYS_FILE)).unwrap();
    let listed = bundle::bundle_logs(&dir).unwrap();
    assert_eq!(listed, ["coordinator", "signer-1", "signer-2", "signer-3"]);
    for log in &listed {
        let kept = (log == "coordinator").then_some(&kept);
        let verdict = bundle::verify_log(&dir, log, trusted[log], kept)
            .unwrap_or_else(|e| panic!("{log}: {e}"));
        assert_eq!(verdict.included, verdict.report.entries);
        if kept.is_some() {
            assert_eq!(verdict.consistent_with_kept, Some((6, 42)));
        }
    }
    let findings = bundle::cross_check(&dir, "coordinator").unwrap();
    assert!(findings.is_empty(), "{findings:?}");

    assert_eq!(hex::encode(coordinator.log.root()), SNAP_SAMPLE_ROOT);
    assert_eq!(digest, SNAP_SAMPLE_EXPORT);
}

/// The coordinator's root over its first 33 entries: the whole sample
/// before the risk events were appended.
const SNAP_SAMPLE_ROOT_33: &str =
    "78edb3e58655f08f651ee3061c583467d891f9d3032b4a014e997fd915b84cf6";
const SNAP_SAMPLE_ROOT: &str = "3eb7d111edc46b66eaeb653c29b46fd36a8c8359fc4fab2b2c181c8e9aa73880";
const SNAP_SAMPLE_EXPORT: &str = "eca5d5c58eb293d669ac410ce80a9cdc5bc0df728e67689fc52808a787b6336c";
