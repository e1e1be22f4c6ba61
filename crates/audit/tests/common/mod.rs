//! Shared fixtures for the integration tests (and `benches/verify.rs`, which
//! includes this file): real keys, a real policy, and [`Sim`], a small honest
//! coordinator that evaluates requests with `keyfold_policy`, signs with
//! `k256` / `ed25519-dalek` / `bip32`, and records what it does with the
//! `keyfold_audit::record` helpers. Tests that need a lying coordinator push
//! their own events between honest ones, so the log is chained correctly and
//! only the semantic checks of the `Auditor` can catch the lie.
//!
//! Every key comes from a fixed seed and every signature is deterministic
//! (RFC 6979 for ECDSA, Ed25519 by construction), so the logs are identical
//! from run to run.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};

use bip32::{ChildNumber, XPrv};
use ed25519_dalek::Signer as _;
use k256::ecdsa::signature::hazmat::PrehashSigner;
use keyfold_audit::{
    record, verify_with, AuditStats, Auditor, Ed25519Signer, Event, HexBytes, Log,
    SignedCheckpoint, SigningMode, VerifyError,
};
use keyfold_policy::{
    evaluate, AdminSignature, Approval, ApprovalDecision, Decision, EvalContext, HistoryEntry,
    Payload, Policy, Request, SignedPolicy, Spending, Tier,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Checkpoint key and exported logs.

/// The checkpoint key of the test logs (fixed seed).
pub fn signer() -> Ed25519Signer {
    Ed25519Signer::from_seed(&[7u8; 32])
}

/// The published checkpoint public keys an auditor trusts.
pub fn trusted() -> Vec<[u8; 32]> {
    use keyfold_audit::CheckpointSigner;
    vec![signer().public_key()]
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

/// The time (ms) a node would write `ev` at, after an entry written at
/// `prev`: a request when it arrives, a decision when it is evaluated, other
/// events a second after the previous one (entry times never go back).
pub fn entry_time(prev: i64, ev: &Event) -> i64 {
    let own = match ev {
        Event::SignRequest { request, .. } => serde_json::from_str::<Request>(request)
            .ok()
            .map(|r| r.time as i64 * 1000),
        Event::Decision { evaluated_at, .. } => Some(*evaluated_at as i64 * 1000),
        _ => None,
    };
    own.unwrap_or(prev + 1000).max(prev)
}

/// Builds a log of `events` named `log_id`, checkpointing after every entry
/// whose size is in `checkpoint_at` (and always at the end).
pub fn build(log_id: &str, events: Vec<Event>, checkpoint_at: &[u64]) -> Exported {
    let signer = signer();
    let mut log = Log::new(log_id).unwrap();
    let mut lines = Vec::new();
    let mut checkpoints = Vec::new();
    let mut time = 1_700_000_000_000i64;
    for (i, ev) in events.into_iter().enumerate() {
        time = entry_time(time, &ev);
        let e = log.append(time, ev).unwrap();
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

/// Chains `events` into a checkpointed log and replays it with an
/// [`Auditor`]: what an auditor does with an exported log.
pub fn audit(events: &[Event]) -> Result<AuditStats, VerifyError> {
    let x = build("coordinator", events.to_vec(), &[]);
    let mut auditor = Auditor::new();
    verify_with(&x.bytes(), &x.checkpoints, &trusted(), &mut auditor)?;
    Ok(auditor.stats().clone())
}

// ---------------------------------------------------------------------------
// People and keys.

/// Tuesday 2023-11-14 22:13:20 UTC: outside the policy's night freeze.
pub const T0: u64 = 1_700_000_000;
/// One day in seconds.
pub const DAY: u64 = 86_400;
/// 0.1 BTC in satoshi: the largest transfer the policy allows without approvals.
pub const SMALL_BTC_MAX: u128 = 10_000_000;
/// 0.5 BTC: the daily velocity limit of `hot-btc` (and its HD children) in the tests.
pub const BTC_DAILY: u128 = 50_000_000;

/// An Ed25519 key from a one-byte seed (admins, officers, the Solana wallet).
pub fn ed(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

pub fn ed_hex(seed: u8) -> String {
    hex::encode(ed(seed).verifying_key().to_bytes())
}

/// Policy admins (2 of 3 sign an update).
pub const ADMINS: [u8; 3] = [0xa1, 0xa2, 0xa3];
/// Treasury officers (2 of 3 approve large transfers). Alice also uses the
/// API client `ops-alice`.
pub const ALICE: u8 = 0xb1;
pub const BOB: u8 = 0xb2;
pub const CAROL: u8 = 0xb3;
/// The security officer (may cancel cold time locks, approves huge transfers).
pub const DAVE: u8 = 0xd1;
/// Someone with a valid Ed25519 key who is in no approver group.
pub const MALLORY: u8 = 0xee;

/// Hot secp256k1 key, HD-capable (children `hot-btc/m/...`), 2 of 3 signers.
pub const HOT_BTC: &str = "hot-btc";
/// Hot Ed25519 key (FROST), 2 of 3 signers.
pub const HOT_SOL: &str = "hot-sol";
/// Cold secp256k1 key inside the HSM.
pub const COLD_BTC: &str = "cold-btc";
/// The signer nodes holding shares of the hot keys.
pub const SIGNERS: [&str; 3] = ["s1", "s2", "s3"];

/// Master extended key of `hot-btc`. In production no machine holds it (it is
/// shared by DKG); the tests derive child keys from it with `bip32`'s private
/// derivation, independently of the auditor's public derivation.
pub fn btc_master() -> XPrv {
    XPrv::new([0x42u8; 32]).unwrap()
}

/// The signing key of `hot-btc` at a non-hardened `path` (empty: the root).
pub fn btc_key(path: &[u32]) -> k256::ecdsa::SigningKey {
    let mut x = btc_master();
    for &i in path {
        x = x.derive_child(ChildNumber::new(i, false).unwrap()).unwrap();
    }
    x.private_key().clone()
}

/// The `hot-sol` Ed25519 group key.
pub fn sol_key() -> ed25519_dalek::SigningKey {
    ed(0x50)
}

/// The `cold-btc` secp256k1 key (HSM).
pub fn cold_key() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&[0x0c; 32]).unwrap()
}

/// SEC1 compressed public key.
pub fn sec1(key: &k256::ecdsa::SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .to_vec()
}

/// ECDSA over the SHA-256 prehash of `message`, `r || s` with low S (what the
/// threshold signers and the HSM bridge produce).
pub fn ecdsa_sig(key: &k256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(message);
    let sig: k256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
    let sig = sig.normalize_s().unwrap_or(sig);
    sig.to_bytes().to_vec()
}

/// An ECDSA signature (low-s) over keccak-256(`message`), as EVM
/// transactions are signed.
pub fn ecdsa_sig_keccak(key: &k256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    use sha3::Keccak256;
    let digest = Keccak256::digest(message);
    let sig: k256::ecdsa::Signature = key.sign_prehash(&digest).unwrap();
    let sig = sig.normalize_s().unwrap_or(sig);
    sig.to_bytes().to_vec()
}

/// Whether `request` carries an EVM transaction (signed over keccak-256).
pub fn is_evm_transaction(request: &Request) -> bool {
    matches!(
        request.payload,
        Payload::ChainTransaction {
            chain_id: Some(_),
            ..
        }
    )
}

/// Parses `m/0/7` into indices (test paths are well formed).
pub fn parse_path(path: &str) -> Vec<u32> {
    path.split('/')
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect()
}

/// `KeyCreated` of one of the fixture keys.
pub fn key_event(key_id: &str) -> Event {
    let hot = |curve: &str, public_key: Vec<u8>, chain_code: Option<Vec<u8>>| Event::KeyCreated {
        key_id: key_id.into(),
        curve: curve.into(),
        tier: "hot".into(),
        t: 2,
        n: 3,
        participants: SIGNERS.iter().map(|s| s.to_string()).collect(),
        public_key: HexBytes(public_key),
        chain_code: chain_code.map(HexBytes),
    };
    match key_id {
        HOT_BTC => {
            let m = btc_master();
            hot(
                "secp256k1",
                m.public_key().to_bytes().to_vec(),
                Some(m.attrs().chain_code.to_vec()),
            )
        }
        HOT_SOL => hot(
            "ed25519",
            sol_key().verifying_key().to_bytes().to_vec(),
            None,
        ),
        COLD_BTC => Event::KeyCreated {
            key_id: key_id.into(),
            curve: "secp256k1".into(),
            tier: "cold".into(),
            t: 1,
            n: 1,
            participants: vec!["hsm-1".into()],
            public_key: HexBytes(sec1(&cold_key())),
            chain_code: None,
        },
        other => panic!("no fixture key {other}"),
    }
}

// ---------------------------------------------------------------------------
// The policy.

/// A realistic policy of 10 rules: a sanctioned-destination deny, a night
/// freeze, a time-locked cold tier, three BTC tiers (allow, 2-of-3 treasury
/// approvals, treasury and security with a delay), Solana payouts and large
/// Solana transfers, raw messages for security-approved signing, and the
/// catch-all deny; a daily per-wallet velocity limit on `hot-btc` (children
/// included) of `btc_daily` satoshi; 2-of-3 admins for updates.
pub fn policy_toml(version: u64, btc_daily: u128) -> String {
    format!(
        r#"version = {version}
name = "audit-fixture"

[admins]
keys = ["{a1}", "{a2}", "{a3}"]
quorum = 2

[address_book]
cooldown_secs = 86400
entries = [
  {{ name = "exchange", address = "bc1q-exchange", added_at = 1600000000 }},
  {{ name = "payroll", address = "So1-payroll", added_at = 1600000000 }},
]

[[groups]]
name = "treasury"
quorum = 2
members = [
  {{ name = "alice", key = "{alice}", client = "ops-alice" }},
  {{ name = "bob", key = "{bob}" }},
  {{ name = "carol", key = "{carol}" }},
]

[[groups]]
name = "security"
quorum = 1
members = [{{ name = "dave", key = "{dave}" }}]

[[velocity]]
name = "hot-btc-daily"
per = "wallet"
window_secs = 86400
asset = "BTC"
wallets = ["hot-btc"]
max_amount = {btc_daily}
max_count = 100000

[[rules]]
name = "sanctioned"
destination = {{ allow = ["bc1q-sanctioned", "So1-sanctioned"] }}
action = {{ kind = "deny", reason = "sanctioned destination" }}

[[rules]]
name = "night-freeze"
tier = "hot"
time = {{ from = "02:00", to = "04:00" }}
action = {{ kind = "deny", reason = "maintenance window" }}

[[rules]]
name = "cold-btc"
tier = "cold"
assets = ["BTC"]
action = {{ kind = "time_lock", delay_secs = 86400, cancel_groups = ["security"] }}

[[rules]]
name = "small-btc"
tier = "hot"
assets = ["BTC"]
amount = {{ max = {small} }}
action = {{ kind = "allow" }}

[[rules]]
name = "large-btc"
tier = "hot"
assets = ["BTC"]
amount = {{ min = {small_plus}, max = 1000000000 }}
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "huge-btc"
tier = "hot"
assets = ["BTC"]
amount = {{ min = 1000000001 }}
action = {{ kind = "require_approvals", groups = ["treasury", "security"], delay_secs = 3600 }}

[[rules]]
name = "sol-payouts"
tier = "hot"
assets = ["SOL"]
initiators = ["payments"]
amount = {{ max = 1000000000000 }}
destination = {{ any_address_book = true }}
action = {{ kind = "allow" }}

[[rules]]
name = "sol-large"
tier = "hot"
assets = ["SOL"]
action = {{ kind = "require_approvals", groups = ["treasury", "security"], combine = "any" }}

[[rules]]
name = "raw-messages"
wallets = ["hot-sol"]
initiators = ["ops-signing"]
allow_raw = true
action = {{ kind = "require_approvals", groups = ["security"] }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        a1 = ed_hex(ADMINS[0]),
        a2 = ed_hex(ADMINS[1]),
        a3 = ed_hex(ADMINS[2]),
        alice = ed_hex(ALICE),
        bob = ed_hex(BOB),
        carol = ed_hex(CAROL),
        dave = ed_hex(DAVE),
        small = SMALL_BTC_MAX,
        small_plus = SMALL_BTC_MAX + 1,
    )
}

/// A typed BTC transfer from `wallet` (the key id, or `hot-btc/m/...`).
pub fn btc(id: &str, wallet: &str, amount: u128, time: u64) -> Request {
    Request {
        id: id.into(),
        wallet: wallet.into(),
        tier: if wallet == COLD_BTC {
            Tier::Cold
        } else {
            Tier::Hot
        },
        asset: "BTC".into(),
        amount,
        destination: "bc1q-exchange".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time,
        payload: Payload::TypedTransfer,
    }
}

/// A typed SOL payout from `hot-sol` to the payroll address.
pub fn sol(id: &str, amount: u128, time: u64) -> Request {
    Request {
        id: id.into(),
        wallet: HOT_SOL.into(),
        tier: Tier::Hot,
        asset: "SOL".into(),
        amount,
        destination: "So1-payroll".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time,
        payload: Payload::TypedTransfer,
    }
}

// ---------------------------------------------------------------------------
// The honest coordinator.

struct Pending {
    key_id: String,
    request: Request,
    path: Vec<u32>,
    approvals: Vec<Approval>,
}

/// An honest coordinator: it records events in `events` (position = entry
/// index once chained by [`build`] or [`audit`]) and keeps what it needs to
/// evaluate the next decision the way the coordinator does.
pub struct Sim {
    pub events: Vec<Event>,
    pub policy: Policy,
    requests: HashMap<String, Pending>,
    /// Allowed (and not failed) requests, as the policy's history: request
    /// id -> entry, and the same entries as aggregates for `policy`.
    spent: HashMap<String, HistoryEntry>,
    spending: Spending,
    /// Nonces of every recorded approval.
    nonces: BTreeSet<[u8; 16]>,
    next_nonce: u64,
    next_session: u64,
    /// Latest session id of each request.
    sessions: HashMap<String, String>,
    /// Cached child keys of `hot-btc` (deriving costs a scalar multiplication).
    children: HashMap<Vec<u32>, k256::ecdsa::SigningKey>,
    /// The aggregates are pruned this long before each evaluation time, so
    /// an evaluation up to this much earlier than a previous one still
    /// counts everything (tests record decisions a little out of order).
    slack_secs: u64,
}

impl Sim {
    /// Nothing recorded yet; `policy_toml` is what [`Sim::genesis`] records.
    pub fn empty(policy_toml: &str) -> Sim {
        let policy = Policy::from_toml(policy_toml).unwrap();
        Sim {
            events: Vec::new(),
            spending: Spending::new(&policy),
            policy,
            requests: HashMap::new(),
            spent: HashMap::new(),
            nonces: BTreeSet::new(),
            next_nonce: 0,
            next_session: 0,
            sessions: HashMap::new(),
            children: HashMap::new(),
            slack_secs: DAY,
        }
    }

    /// The three fixture keys, then the fixture policy (version 1, daily
    /// limit `btc_daily`).
    pub fn new(btc_daily: u128) -> Sim {
        let mut s = Sim::empty(&policy_toml(1, btc_daily));
        s.key(HOT_BTC);
        s.key(HOT_SOL);
        s.key(COLD_BTC);
        s.genesis();
        s
    }

    /// Records `event` as it is (honest or not); returns its index.
    pub fn push(&mut self, event: Event) -> usize {
        self.events.push(event);
        self.events.len() - 1
    }

    /// Index of the last recorded event.
    pub fn last(&self) -> usize {
        self.events.len() - 1
    }

    pub fn key(&mut self, key_id: &str) -> usize {
        self.push(key_event(key_id))
    }

    /// Records the policy given to [`Sim::empty`] as the genesis version.
    pub fn genesis(&mut self) -> usize {
        let ev = record::policy_event(&self.policy, None);
        self.push(ev)
    }

    /// A policy update signed by the admins with these seeds.
    pub fn signed_update(document_toml: &str, admins: &[u8]) -> SignedPolicy {
        SignedPolicy {
            document_toml: document_toml.into(),
            signatures: admins
                .iter()
                .map(|&a| AdminSignature::sign(&ed(a), document_toml))
                .collect(),
        }
    }

    /// Records a policy update (checked by the current admins like the
    /// coordinator does) and puts it in force.
    pub fn update(&mut self, document_toml: &str, admins: &[u8]) -> usize {
        let signed = Sim::signed_update(document_toml, admins);
        self.policy = signed.verify(&self.policy).unwrap();
        if !self.spending.fits(&self.policy) {
            self.spending = Spending::from_entries(&self.policy, self.spent.values().cloned());
        }
        let ev = record::policy_event(&self.policy, Some(&signed));
        self.push(ev)
    }

    /// Records a request to sign with `key_id` (the wallet of `request` is
    /// the key id, or `key_id/path` for an HD child).
    pub fn request(&mut self, key_id: &str, request: Request) -> usize {
        let ev = self.request_event(key_id, &request);
        let path = request
            .wallet
            .split_once('/')
            .map(|(_, p)| parse_path(p))
            .unwrap_or_default();
        self.requests.insert(
            request.id.clone(),
            Pending {
                key_id: key_id.into(),
                request,
                path,
                approvals: Vec::new(),
            },
        );
        self.push(ev)
    }

    /// The honest `SignRequest` event of `request`, without recording it.
    pub fn request_event(&self, key_id: &str, request: &Request) -> Event {
        let hash_alg = if is_evm_transaction(request) {
            Some("keccak256")
        } else {
            (key_id != HOT_SOL).then_some("sha256")
        };
        let path = request.wallet.split_once('/').map(|(_, p)| p);
        record::request_event(key_id, request, hash_alg, path)
    }

    /// The typed request recorded as `id`.
    pub fn typed(&self, id: &str) -> &Request {
        &self.requests[id].request
    }

    /// A fresh approval (or rejection) of request `id` by `approver`, valid
    /// for a day after the request, under the policy in force; not recorded.
    pub fn approval(&mut self, id: &str, approver: u8, decision: ApprovalDecision) -> Approval {
        self.next_nonce += 1;
        let mut nonce = [0u8; 16];
        nonce[8..].copy_from_slice(&self.next_nonce.to_be_bytes());
        let req = &self.requests[id].request;
        Approval::sign(
            &ed(approver),
            req.canonical_hash(),
            self.policy.version(),
            decision,
            req.time + DAY,
            nonce,
        )
    }

    /// Records an approval (or rejection) the coordinator accepted.
    pub fn add_approval(&mut self, id: &str, approval: Approval) -> usize {
        self.nonces.insert(approval.nonce);
        let ev = record::approval_event(id, &approval);
        if let Some(p) = self.requests.get_mut(id) {
            p.approvals.push(approval);
        }
        self.push(ev)
    }

    /// Signs and records an approval by `approver`.
    pub fn approve(&mut self, id: &str, approver: u8) -> usize {
        let a = self.approval(id, approver, ApprovalDecision::Approve);
        self.add_approval(id, a)
    }

    /// What the policy decides for request `id` at `now`; nothing recorded.
    pub fn evaluate(&mut self, id: &str, now: u64) -> Decision {
        self.spending.prune(now.saturating_sub(self.slack_secs));
        // The history excludes the request itself, and its own approvals
        // are not "seen" nonces.
        let p = &self.requests[id];
        for a in &p.approvals {
            self.nonces.remove(&a.nonce);
        }
        let d = evaluate(
            &self.policy,
            &p.request,
            &EvalContext {
                now,
                spent: &self.spending,
                exclude: self.spent.get(id),
                approvals: &p.approvals,
                seen_nonces: &self.nonces,
            },
        );
        self.nonces.extend(p.approvals.iter().map(|a| a.nonce));
        d
    }

    fn take_history(&mut self, id: &str) -> Option<HistoryEntry> {
        let e = self.spent.remove(id)?;
        self.spending.remove(&e).unwrap();
        Some(e)
    }

    /// Evaluates request `id` at `now` and records the decision.
    pub fn decide(&mut self, id: &str, now: u64) -> (usize, Decision) {
        let d = self.evaluate(id, now);
        let index = self.record_decision(id, now, &d);
        (index, d)
    }

    /// Records `decision` for request `id` at `now`, whatever the policy
    /// says (a lying coordinator), and acts on it.
    pub fn record_decision(&mut self, id: &str, now: u64, decision: &Decision) -> usize {
        self.take_history(id);
        if decision.is_allowed() {
            let e = self.requests[id].request.history_entry(now);
            self.spending.add(&e);
            self.spent.insert(id.into(), e);
        }
        self.push(record::decision_event(id, now, decision))
    }

    /// Records a signing session of request `id` with `signers`.
    pub fn session(&mut self, id: &str, signers: &[&str], mode: SigningMode) -> usize {
        self.next_session += 1;
        let session_id = format!("sess-{}", self.next_session);
        self.sessions.insert(id.into(), session_id.clone());
        self.push(Event::SigningSession {
            request_id: id.into(),
            session_id,
            signers: signers.iter().map(|s| s.to_string()).collect(),
            mode,
        })
    }

    /// Records that the latest session of request `id` was aborted.
    pub fn abort(&mut self, id: &str, blamed: Option<&str>, reason: &str) -> usize {
        self.push(Event::Aborted {
            request_id: id.into(),
            session_id: self.sessions[id].clone(),
            blamed: blamed.map(str::to_string),
            reason: reason.into(),
        })
    }

    /// The usual session of request `id`: two hot signers (presignature for
    /// a root ECDSA key, full signing for an HD child or Ed25519), or the HSM.
    pub fn default_session(&mut self, id: &str) -> usize {
        let p = &self.requests[id];
        let (signers, mode): (&[&str], _) = match p.key_id.as_str() {
            COLD_BTC => (&["hsm-1"], SigningMode::Hsm),
            HOT_BTC if p.path.is_empty() => (&SIGNERS[..2], SigningMode::Presignature),
            _ => (&SIGNERS[1..], SigningMode::Full),
        };
        self.session(id, signers, mode)
    }

    /// `(public key, signature)` of the right key over `message`, for
    /// request `id`'s key and path.
    pub fn sign_message(&mut self, id: &str, message: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let p = &self.requests[id];
        match p.key_id.as_str() {
            HOT_SOL => {
                let k = sol_key();
                (
                    k.verifying_key().to_bytes().to_vec(),
                    k.sign(message).to_bytes().to_vec(),
                )
            }
            COLD_BTC => {
                let k = cold_key();
                (sec1(&k), ecdsa_sig(&k, message))
            }
            _ => {
                let keccak = is_evm_transaction(&p.request);
                let path = p.path.clone();
                let k = self
                    .children
                    .entry(path)
                    .or_insert_with_key(|path| btc_key(path));
                let sig = if keccak {
                    ecdsa_sig_keccak(k, message)
                } else {
                    ecdsa_sig(k, message)
                };
                (sec1(k), sig)
            }
        }
    }

    /// The honest `Signature` event of request `id`; not recorded.
    pub fn signature_event(&mut self, id: &str) -> Event {
        let message = self.requests[id].request.signing_message();
        let (public_key, signature) = self.sign_message(id, &message);
        Event::Signature {
            request_id: id.into(),
            key_id: self.requests[id].key_id.clone(),
            public_key: HexBytes(public_key),
            signature: HexBytes(signature),
        }
    }

    /// Signs request `id` with its wallet key and records the signature.
    pub fn sign(&mut self, id: &str) -> usize {
        let ev = self.signature_event(id);
        self.push(ev)
    }

    /// Records that request `id` ended without a signature: it no longer
    /// counts against velocity limits.
    pub fn fail(&mut self, id: &str, reason: &str) -> usize {
        self.take_history(id);
        self.push(Event::RequestFailed {
            request_id: id.into(),
            reason: reason.into(),
        })
    }

    /// Request, decision (allowed without approvals), session and
    /// signature: the common path. Panics if the policy does not allow it.
    pub fn allowed_transfer(&mut self, key_id: &str, request: Request, now: u64) {
        let id = request.id.clone();
        self.request(key_id, request);
        let (_, d) = self.decide(&id, now);
        assert!(d.is_allowed(), "{id}: {:?}", d.outcome);
        self.default_session(&id);
        self.sign(&id);
    }

    /// Request, a decision needing approvals, approvals by `approvers`, an
    /// allowing decision, session and signature.
    pub fn approved_transfer(
        &mut self,
        key_id: &str,
        request: Request,
        approvers: &[u8],
        now: u64,
    ) {
        let id = request.id.clone();
        self.request(key_id, request);
        let (_, d) = self.decide(&id, now);
        assert!(
            matches!(d.outcome, keyfold_policy::Outcome::NeedApprovals { .. }),
            "{id}: {:?}",
            d.outcome
        );
        for &a in approvers {
            self.approve(&id, a);
        }
        let (_, d) = self.decide(&id, now + 60);
        assert!(d.is_allowed(), "{id}: {:?}", d.outcome);
        self.default_session(&id);
        self.sign(&id);
    }
}

// ---------------------------------------------------------------------------
// The sample log of the tampering, property and file tests.

/// A short honest coordinator log with one event of every type: a key, the
/// policy, a withdrawal from an HD child that needs and gets two approvals
/// and is signed, a request to a sanctioned address (denied), and an allowed
/// request whose session aborts and that then fails, and a signer's
/// contribution. Indices: 3 need approvals, 6 allow, 10 deny (the only one).
pub fn sample_events() -> Vec<Event> {
    let mut s = Sim::empty(&policy_toml(1, BTC_DAILY));
    s.key(HOT_BTC); // 0
    s.genesis(); // 1
    let r1 = btc("r1", "hot-btc/m/0/7", 20_000_000, T0);
    s.request(HOT_BTC, r1); // 2
    s.decide("r1", T0 + 5); // 3: need approvals
    s.approve("r1", ALICE); // 4
    s.approve("r1", BOB); // 5
    s.decide("r1", T0 + 600); // 6: allow
    s.session("r1", &["s1", "s3"], SigningMode::Full); // 7
    s.sign("r1"); // 8
    let mut r2 = btc("r2", HOT_BTC, 1_000, T0 + 700);
    r2.destination = "bc1q-sanctioned".into();
    s.request(HOT_BTC, r2); // 9
    s.decide("r2", T0 + 701); // 10: deny
    s.request(HOT_BTC, btc("r3", HOT_BTC, 5_000_000, T0 + 800)); // 11
    s.decide("r3", T0 + 801); // 12: allow
    s.session("r3", &["s2", "s3"], SigningMode::Presignature); // 13
    s.abort("r3", Some("s2"), "invalid zk proof in round 2"); // 14
    s.fail("r3", "no live quorum after the abort"); // 15
    let r1 = s.typed("r1").clone();
    s.push(Event::Contribution {
        request_id: "r1".into(),
        key_id: HOT_BTC.into(),
        request_hash: r1.canonical_hash(),
        message_hash: Sha256::digest(r1.signing_message()).into(),
        policy_version: 1,
        // A signer's log names the session's signers by party index in
        // the key's participants: s1 and s3.
        signers: vec!["0".into(), "2".into()],
        mode: SigningMode::Full,
    }); // 16
    s.events
}

/// The sample log with checkpoints at sizes 4, 9 and every size from n-1.
pub fn sample() -> Exported {
    let events = sample_events();
    let n = events.len() as u64;
    build("coordinator", events, &[4, 9, n - 1, n])
}

/// Runs `program` (Python, with the independent verifier's directory on
/// its path) with `input` as JSON on stdin: `None` where `python3` is
/// missing (the test script installs it), otherwise its exit status and
/// output, for the caller to assert on.
pub fn run_python(program: &str, input: &serde_json::Value) -> Option<std::process::Output> {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools");
    let program = format!("import sys\nsys.path.insert(0, {script:?})\n{program}");
    let mut child = std::process::Command::new("python3")
        .args(["-c", &program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}
