//! The signer's own policy check, table-driven, without sockets: what a
//! compromised coordinator could try (another policy version, another
//! wallet or path, a cold tier, a backdated request, missing, forged or
//! replayed approvals, raw bytes) and what the signer answers.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use keyfold_mpc::ecdsa::DerivationPath;
use keyfold_mpc::KeyId;
use keyfold_policy::{
    Approval, ApprovalDecision, History, HistoryEntry, Payload, Policy, Request, Spending, Tier,
};
use keyfold_proto::signer::{wallet_name, PolicyIntent};
use keyfold_signer::policy::{check, CheckInputs, MAX_CLOCK_SKEW_SECS};
use keyfold_signer::SignerError;

const NOW: u64 = 1_800_000_000;

fn officers() -> Vec<SigningKey> {
    (1u8..=3)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect()
}

fn policy() -> Policy {
    let k: Vec<String> = officers()
        .iter()
        .map(|s| hex::encode(s.verifying_key().to_bytes()))
        .collect();
    Policy::from_toml(&format!(
        r#"version = 4
[[groups]]
name = "treasury"
quorum = 2
members = [{{ name = "a", key = "{}" }}, {{ name = "b", key = "{}" }}, {{ name = "c", key = "{}" }}]

[[velocity]]
name = "daily"
per = "wallet"
window_secs = 86400
asset = "ETH"
max_amount = 1000

[[rules]]
name = "small"
tier = "hot"
assets = ["ETH"]
amount = {{ max = 100 }}
action = {{ kind = "allow" }}

[[rules]]
name = "large"
tier = "hot"
assets = ["ETH"]
action = {{ kind = "require_approvals", groups = ["treasury"] }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        k[0], k[1], k[2]
    ))
    .unwrap()
}

fn key() -> KeyId {
    "0123456789abcdef0123456789abcdef".parse().unwrap()
}

fn request(amount: u128) -> Request {
    Request {
        id: "r-1".into(),
        wallet: wallet_name(&key(), None),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount,
        destination: "0xdest".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: NOW - 10,
        payload: Payload::TypedTransfer,
    }
}

fn approve(officer: &SigningKey, req: &Request, nonce: u8) -> Approval {
    Approval::sign(
        officer,
        req.canonical_hash(),
        4,
        ApprovalDecision::Approve,
        NOW + 3600,
        [nonce; 16],
    )
}

struct Case {
    intent: PolicyIntent,
    path: Option<DerivationPath>,
    first_seen: u64,
    history: History,
    seen: BTreeSet<[u8; 16]>,
    hash: Option<keyfold_mpc::ecdsa::HashAlg>,
}

impl Case {
    fn new(req: Request) -> Case {
        Case {
            intent: PolicyIntent {
                request: req,
                approvals: Vec::new(),
                policy_version: 4,
                subjects: Vec::new(),
            },
            path: None,
            hash: None,
            first_seen: NOW - 10,
            history: History::default(),
            seen: BTreeSet::new(),
        }
    }

    fn run(&self) -> Result<Vec<u8>, SignerError> {
        let p = policy();
        // The signer's aggregates, built from its history as it does at
        // start (and pruned at its decision time).
        let mut spent = Spending::from_history(&p, &self.history);
        spent.prune(NOW);
        check(
            &self.intent,
            &CheckInputs {
                policy: &p,
                key: key(),
                path: self.path.as_ref(),
                hash: self.hash,
                first_seen: self.first_seen,
                now: NOW,
                spent: &spent,
                exclude: None,
                seen_nonces: &self.seen,
            },
        )
    }

    fn refused(&self, needle: &str) {
        match self.run() {
            Err(SignerError::PolicyRefused(m)) => {
                assert!(m.contains(needle), "expected `{needle}` in: {m}")
            }
            other => panic!("expected a policy refusal with `{needle}`, got {other:?}"),
        }
    }
}

#[test]
fn an_allowed_transfer_yields_its_transfer_intent() {
    let c = Case::new(request(50));
    let msg = c.run().unwrap();
    assert_eq!(msg, c.intent.request.signing_message());
    assert!(msg.starts_with(keyfold_policy::TRANSFER_DOMAIN));
}

#[test]
fn a_large_transfer_needs_two_distinct_valid_approvals() {
    let o = officers();
    let mut c = Case::new(request(500));
    c.refused("needs approvals (treasury has 0 of 2)");
    c.intent.approvals = vec![approve(&o[0], &c.intent.request, 1)];
    c.refused("treasury has 1 of 2");
    c.intent
        .approvals
        .push(approve(&o[0], &c.intent.request, 2));
    c.refused("treasury has 1 of 2");
    c.intent
        .approvals
        .push(approve(&o[1], &c.intent.request, 3));
    c.run().unwrap();
}

#[test]
fn forged_replayed_and_mismatched_approvals_are_not_counted() {
    let o = officers();
    let mut c = Case::new(request(500));
    // An approval of another request (other amount).
    let other = approve(&o[1], &request(499), 5);
    // A forged signature.
    let mut forged = approve(&o[2], &c.intent.request, 6);
    forged.signature[0] ^= 1;
    // A replayed nonce, consumed by another request on this signer.
    let replayed = approve(&o[2], &c.intent.request, 7);
    c.seen.insert([7; 16]);
    // Signed by someone outside the group.
    let stranger = approve(&SigningKey::from_bytes(&[9; 32]), &c.intent.request, 8);
    c.intent.approvals = vec![
        approve(&o[0], &c.intent.request, 1),
        other,
        forged,
        replayed,
        stranger,
    ];
    c.refused("refused approvals");
    c.refused("treasury has 1 of 2");
}

#[test]
fn a_coordinator_cannot_change_what_is_being_signed() {
    // Another policy version.
    let mut c = Case::new(request(50));
    c.intent.policy_version = 3;
    c.refused("evaluated policy version 3, this signer enforces version 4");
    // The request names another wallet than the key that signs.
    let mut c = Case::new(request(50));
    c.intent.request.wallet = "fedcba9876543210fedcba9876543210".into();
    c.refused("request names wallet");
    // An HD path the request did not name.
    let mut c = Case::new(request(50));
    c.path = Some("m/0/1".parse().unwrap());
    c.refused("request names wallet");
    // The same path named in the request is fine.
    let mut c = Case::new(request(50));
    c.path = Some("m/0/1".parse().unwrap());
    c.intent.request.wallet = wallet_name(&key(), c.path.as_ref());
    c.run().unwrap();
    // The root spelled as a path: `key/m` is not the wallet `key`.
    let mut c = Case::new(request(50));
    c.path = Some("m".parse().unwrap());
    c.intent.request.wallet = format!("{}/m", key());
    c.refused("must name a child key");
    // A cold tier claimed for a threshold key.
    let mut c = Case::new(request(50));
    c.intent.request.tier = Tier::Cold;
    c.refused("hot wallets");
    // Raw bytes are not allowed by this policy.
    let mut c = Case::new(request(50));
    c.intent.request.payload = Payload::RawBytes {
        bytes: b"blind".to_vec(),
    };
    c.refused("denied by rule `deny-all`");
}

#[test]
fn a_backdated_request_is_refused() {
    let mut c = Case::new(request(50));
    c.intent.request.time = NOW - 10 - MAX_CLOCK_SKEW_SECS - 1;
    c.refused("first saw it");
    let mut c = Case::new(request(50));
    c.intent.request.time = NOW - 10 - MAX_CLOCK_SKEW_SECS;
    c.run().unwrap();
}

#[test]
fn the_signers_own_history_enforces_velocity() {
    let mut c = Case::new(request(60));
    let entry = HistoryEntry {
        time: NOW - 100,
        wallet: c.intent.request.wallet.clone(),
        asset: "ETH".into(),
        destination: "0xelse".into(),
        initiator: "payments".into(),
        amount: 950,
    };
    c.history.entries.push(entry.clone());
    c.refused("daily");
    // Outside the window it no longer counts.
    c.history.entries[0].time = NOW - 90_000;
    c.run().unwrap();
}

#[test]
fn hd_children_count_against_their_keys_limit() {
    let path: DerivationPath = "m/0/9".parse().unwrap();
    let mut c = Case::new(request(60));
    c.path = Some(path.clone());
    c.intent.request.wallet = wallet_name(&key(), Some(&path));
    // 950 already sent from another child of the same key.
    c.history.entries.push(HistoryEntry {
        time: NOW - 100,
        wallet: format!("{}/m/0/1", key()),
        asset: "ETH".into(),
        destination: "0xelse".into(),
        initiator: "payments".into(),
        amount: 950,
    });
    c.refused("daily");
}

#[test]
fn a_retry_does_not_count_against_itself() {
    // 950 of the 1000 daily limit were this very request, contributed
    // before (another quorum was tried): excluded, it passes; counted twice
    // it would not.
    let mut c = Case::new(request(60));
    let own = c.intent.request.history_entry(NOW - 5);
    c.history.entries.push(HistoryEntry {
        amount: 950,
        ..own.clone()
    });
    c.refused("daily");
    let p = policy();
    let mut spent = Spending::from_history(&p, &c.history);
    spent.prune(NOW);
    let mine = HistoryEntry { amount: 950, ..own };
    let msg = check(
        &c.intent,
        &CheckInputs {
            policy: &p,
            key: key(),
            path: None,
            hash: None,
            first_seen: c.first_seen,
            now: NOW,
            spent: &spent,
            exclude: Some(&mine),
            seen_nonces: &c.seen,
        },
    );
    assert!(msg.is_ok(), "{msg:?}");
}

/// A payout on `devnet-l1` paying 50 wei to `to`, as the coordinator would
/// build it, with the unsigned transaction `tx` paying `tx_to`/`tx_amount`.
fn payout(to: &str, tx_to: &str, tx_amount: u64) -> Request {
    use keyfold_chain::evm;
    let t = evm::Transfer {
        chain_id: 31337,
        nonce: 7,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: evm::parse_address("to", tx_to).unwrap(),
        amount: evm::U256::from(tx_amount),
        token: None,
    };
    Request {
        destination: to.into(),
        payload: Payload::ChainTransaction {
            chain: "devnet-l1".into(),
            chain_id: Some(31337),
            token_contract: None,
            source: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
            fee_cap: t.fee_cap(),
            tx: evm::unsigned_payload(&t),
        },
        ..request(50)
    }
}

const ALICE: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const MALLORY: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

#[test]
fn a_payout_whose_transaction_matches_signs_the_transaction_itself() {
    let mut c = Case::new(payout(ALICE, ALICE, 50));
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Keccak256);
    let msg = c.run().expect("a matching payout is allowed");
    let Payload::ChainTransaction { tx, .. } = &c.intent.request.payload else {
        unreachable!()
    };
    assert_eq!(&msg, tx, "the message is the unsigned transaction");
}

#[test]
fn a_transaction_paying_someone_else_is_refused() {
    let mut c = Case::new(payout(ALICE, MALLORY, 50));
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Keccak256);
    c.refused("recipient");
}

#[test]
fn a_transaction_paying_more_than_the_payout_is_refused() {
    let mut c = Case::new(payout(ALICE, ALICE, 5_000));
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Keccak256);
    c.refused("amount");
}

#[test]
fn a_transaction_with_a_fee_cap_other_than_the_evaluated_one_is_refused() {
    let mut req = payout(ALICE, ALICE, 50);
    if let Payload::ChainTransaction { fee_cap, .. } = &mut req.payload {
        *fee_cap /= 2;
    }
    let mut c = Case::new(req);
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Keccak256);
    c.refused("fee cap");
}

#[test]
fn a_payout_signed_under_another_hash_than_keccak_is_refused() {
    let mut c = Case::new(payout(ALICE, ALICE, 50));
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Sha256);
    c.refused("keccak256");
}

#[test]
fn bytes_that_are_not_a_transfer_are_refused() {
    let mut req = payout(ALICE, ALICE, 50);
    if let Payload::ChainTransaction { tx, .. } = &mut req.payload {
        tx.truncate(tx.len() / 2);
    }
    let mut c = Case::new(req);
    c.hash = Some(keyfold_mpc::ecdsa::HashAlg::Keccak256);
    c.refused("does not decode");
}
