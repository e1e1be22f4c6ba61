//! A coordinator that skips its own policy check and sends an allocation
//! claim above what has vested straight to a signer: the signer's own
//! authorization (`PolicyState::authorize`, the step both of its signing
//! paths take before any share leaves it) refuses it with
//! `SignerError::PolicyRefused`, consumes nothing and records nothing; a
//! claim of exactly what has vested is signed, and counts: one more base
//! unit after it is refused.
//!
//! The plan reaches the signer as it does in production: an allocation
//! plan turned into the policy's vesting rules by
//! `keyfold_programmable::allocation_policy::policy_with_plan`, signed by
//! the admin quorum and applied with `PolicyState::update`. The signer's
//! store and audit log are its own (a temporary directory): no coordinator
//! log is involved, so nothing is left where other tests verify logs.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use keyfold_audit::{Entry, Event, Trail};
use keyfold_chain::evm;
use keyfold_mpc::ecdsa::HashAlg;
use keyfold_mpc::KeyId;
use keyfold_policy::{AdminSignature, Payload, Request, SignedPolicy};
use keyfold_programmable::allocation::Plan;
use keyfold_programmable::allocation_policy::policy_with_plan;
use keyfold_proto::signer::{wallet_name, PolicyIntent};
use keyfold_signer::policy::{Consumes, Contributed, PolicyState};
use keyfold_signer::SignerError;
use keyfold_store::{SignerStore, SoftwareSealer, Zeroizing};

/// The beneficiary's registered address and the token's contract.
const BENEFICIARY: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
const TOKEN: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
/// The hot wallet's address on the chain (the transaction's sender).
const SOURCE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const CHAIN_ID: u64 = 31337;

/// The plan: 100 000 whole tokens (0 decimals) released linearly over
/// 100 000 000 s (about 3.2 years) after a one-year cliff, started
/// 50 000 000 s ago: one token vests every 1 000 s, and the start sits on
/// such a step, so exactly 50 000 have vested for the next 1 000 s. The
/// signer decides with its own clock, which a test cannot set; this makes
/// "exactly what has vested" a fixed number while the test runs.
const TOTAL: u128 = 100_000;
const DURATION_SECS: u64 = 100_000_000;
const ELAPSED_SECS: u64 = 50_000_000;
const CLIFF_SECS: u64 = 31_536_000;
/// `TOTAL * ELAPSED_SECS / DURATION_SECS`, worked out by hand.
const VESTED: u128 = 50_000;
// The cliff has passed: the vested amount is the linear one.
const _: () = assert!(CLIFF_SECS < ELAPSED_SECS);

/// What the signer's authorization answers: the message to sign and the
/// presignature it consumed, or why it refuses.
type Authorized = Result<(Vec<u8>, Option<Zeroizing<Vec<u8>>>), SignerError>;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> KeyId {
    "0123456789abcdef0123456789abcdef".parse().unwrap()
}

fn admins() -> Vec<SigningKey> {
    (1u8..=2)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect()
}

/// The signer's genesis policy: payouts on the chain allowed, admins who
/// may sign the next version.
fn genesis() -> String {
    let keys: Vec<String> = admins()
        .iter()
        .map(|k| format!("\"{}\"", hex::encode(k.verifying_key().to_bytes())))
        .collect();
    format!(
        r#"version = 1
[admins]
keys = [{}]
quorum = 2

[[rules]]
name = "payouts"
tier = "hot"
chains = ["devnet-l1"]
action = {{ kind = "allow" }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        keys.join(", ")
    )
}

fn plan(start: u64) -> Plan {
    Plan::from_toml(&format!(
        r#"plan_id = "signer-vesting"
version = 1
total = "{TOTAL}"
[token]
chain = "devnet-l1"
asset = "GOV"
contract = "{TOKEN}"
decimals = 0
[[groups]]
name = "team"
share_bps = 10000
[[groups.beneficiaries]]
id = "alice"
address = "{BENEFICIARY}"
amount = "{TOTAL}"
start = {start}
cliff_secs = {CLIFF_SECS}
duration_secs = {DURATION_SECS}
"#
    ))
    .unwrap()
}

/// A claim as the coordinator would send it for signing: the typed request
/// and the unsigned ERC-20 transfer paying exactly it, under policy
/// version 2 (the plan's), with no approvals.
fn claim(id: &str, amount: u128) -> PolicyIntent {
    let t = evm::Transfer {
        chain_id: CHAIN_ID,
        nonce: 3,
        gas_limit: 60_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: evm::parse_address("to", BENEFICIARY).unwrap(),
        amount: evm::U256::from(amount),
        token: Some(evm::parse_address("token", TOKEN).unwrap()),
    };
    let payload = Payload::ChainTransaction {
        chain: "devnet-l1".into(),
        chain_id: Some(CHAIN_ID),
        token_contract: Some(TOKEN.into()),
        source: SOURCE.into(),
        fee_cap: t.fee_cap(),
        tx: evm::unsigned_payload(&t),
    };
    // From its JSON form: the request's optional fields keep their
    // defaults whatever later versions add.
    let request: Request = serde_json::from_value(serde_json::json!({
        "id": id,
        "wallet": wallet_name(&key(), None),
        "tier": "hot",
        "asset": "GOV",
        "amount": amount.to_string(),
        "destination": keyfold_policy::canonical_destination(BENEFICIARY).unwrap(),
        "initiator": "payments",
        "time": now(),
        "payload": serde_json::to_value(&payload).unwrap(),
    }))
    .unwrap();
    PolicyIntent {
        request,
        approvals: Vec::new(),
        policy_version: 2,
        subjects: Vec::new(),
    }
}

/// A signer's store, audit log and policy state in `dir`, enforcing the
/// plan's policy version, with two presignatures of `key()` ready.
struct Signer {
    dir: tempfile::TempDir,
    store: Arc<SignerStore>,
    audit: Arc<Trail>,
    policy: PolicyState,
}

const SIGNERS: [u16; 2] = [0, 1];
const PRESIGNATURE: &[u8] = b"the sealed bytes of a presignature";

impl Signer {
    async fn with_plan(plan: &Plan) -> Signer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SignerStore::open(
                dir.path().join("signer.db"),
                "signer-1",
                Arc::new(SoftwareSealer::from_key(&Zeroizing::new([7u8; 32]), "test")),
            )
            .unwrap(),
        );
        let audit = Arc::new(Trail::open(dir.path().join("audit"), "signer-1", None).unwrap());
        let file = dir.path().join("policy.toml");
        let genesis = genesis();
        std::fs::write(&file, &genesis).unwrap();
        let policy = PolicyState::load(&store, &file, None).unwrap();
        assert_eq!(policy.current().version(), 1);

        // The plan's vesting rules as the next version, signed by both
        // admins: applied as any signed update the coordinator forwards.
        let document = policy_with_plan(&genesis, plan, &wallet_name(&key(), None)).unwrap();
        let signatures = admins()
            .iter()
            .map(|k| AdminSignature::sign(k, &document))
            .collect();
        let update = SignedPolicy {
            document_toml: document,
            signatures,
        };
        assert_eq!(policy.update(&store, &audit, &update).await.unwrap(), 2);

        for id in ["presig-1", "presig-2"] {
            store
                .add_presignature(id, &key().to_string(), &SIGNERS, PRESIGNATURE)
                .unwrap();
        }
        Signer {
            dir,
            store,
            audit,
            policy,
        }
    }

    /// The online step's authorization of `intent` with presignature `id`
    /// (what `sign_with_presignature` asks before issuing a partial
    /// signature).
    async fn authorize(&self, intent: &PolicyIntent, presignature: &str) -> Authorized {
        self.policy
            .authorize(
                &self.store,
                &self.audit,
                intent,
                key(),
                None,
                Some(HashAlg::Keccak256),
                Contributed {
                    parties: &SIGNERS,
                    mode: keyfold_audit::SigningMode::Presignature,
                },
                Consumes::Presignature {
                    id: presignature.into(),
                    key: key().to_string(),
                    signers: SIGNERS.to_vec(),
                },
            )
            .await
    }

    fn presignatures_ready(&self) -> usize {
        self.store
            .count_ready(&key().to_string(), &SIGNERS)
            .unwrap()
    }

    /// The requests this signer's audit log records a contribution to.
    fn contributed(&self) -> Vec<String> {
        let text = std::fs::read_to_string(
            self.dir
                .path()
                .join("audit")
                .join(keyfold_audit::file::ENTRIES_FILE),
        )
        .unwrap();
        text.lines()
            .filter(|l| !l.is_empty())
            .filter_map(|l| match serde_json::from_str::<Entry>(l).unwrap().event {
                Event::Contribution { request_id, .. } => Some(request_id),
                _ => None,
            })
            .collect()
    }
}

/// Asserts a policy refusal by the vesting rule, naming `needle`.
fn refused_by_vesting(r: Authorized, needle: &str) {
    match r {
        Err(SignerError::PolicyRefused(m)) => {
            assert!(
                m.contains("allocation/signer-vesting/alice") && m.contains(needle),
                "expected a refusal by the vesting rule with `{needle}`: {m}"
            )
        }
        Err(other) => panic!("expected SignerError::PolicyRefused, got {other:?}"),
        Ok(_) => panic!("the signer authorized a claim above what has vested"),
    }
}

#[tokio::test]
async fn a_signer_refuses_a_claim_above_the_vested_amount_and_signs_exactly_the_vested_amount() {
    let start = now() - ELAPSED_SECS;
    let plan = plan(start);
    // The plan's own arithmetic agrees with the hand-worked amount over
    // the next 1 000 s (a cross-check of the constants, not of the signer).
    let b = &plan.groups()[0].beneficiaries[0];
    assert_eq!(b.vested(start + ELAPSED_SECS), VESTED);
    assert_eq!(b.vested(start + ELAPSED_SECS + 999), VESTED);
    let signer = Signer::with_plan(&plan).await;

    // One base unit above what has vested: refused, the presignature not
    // used up, no contribution stored or logged.
    refused_by_vesting(
        signer
            .authorize(&claim("claim-above", VESTED + 1), "presig-1")
            .await,
        &format!("{} requested but only {VESTED} available", VESTED + 1),
    );
    assert_eq!(signer.presignatures_ready(), 2);
    assert!(signer.store.contributions().unwrap().is_empty());
    assert!(signer.contributed().is_empty());

    // Exactly what has vested: authorized with the same presignature; the
    // message is the unsigned transfer itself.
    let exact = claim("claim-vested", VESTED);
    let (message, presignature) = signer.authorize(&exact, "presig-1").await.unwrap();
    let Payload::ChainTransaction { tx, .. } = &exact.request.payload else {
        unreachable!("a claim is a chain transaction")
    };
    assert_eq!(&message, tx);
    assert_eq!(
        presignature.as_deref().map(Vec::as_slice),
        Some(PRESIGNATURE)
    );
    assert_eq!(signer.presignatures_ready(), 1);
    assert_eq!(signer.contributed(), ["claim-vested"]);

    // The claim counts against the vesting: nothing is left to claim.
    refused_by_vesting(
        signer.authorize(&claim("claim-again", 1), "presig-2").await,
        &format!("only 0 available ({VESTED} vested, {VESTED} released)"),
    );
    assert_eq!(signer.presignatures_ready(), 1);
    assert_eq!(signer.store.contributions().unwrap().len(), 1);
    assert_eq!(signer.contributed(), ["claim-vested"]);
}
