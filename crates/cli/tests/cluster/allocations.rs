//! Token allocation claims on the cluster's local chain: a plan becomes
//! the next policy version (`keyfold allocation policy`, signed by two
//! admins), a claim within what has vested is paid and checked on chain
//! independently, and a claim above it, before the cliff, or to another
//! address from the allocation wallet is refused. (A coordinator that skips
//! its own check is not run here: its bypass would stay in the shared
//! coordinator log that other tests verify; every signer runs the same
//! vesting rule from the same signed policy, and
//! `signer-node/tests/vesting_claims.rs` sends a signer's authorization a
//! claim above what has vested directly.)

use std::time::Duration;

use keyfold_proto::api::PayoutState;

use crate::fixture::*;
use crate::payouts::{check_on_chain, payout, unique};

/// Beneficiaries' registered addresses (anvil's accounts 5 and 6: no other
/// test pays them).
const ALICE: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
const BOB: &str = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";
/// KFT has 6 decimals on the devnet chains.
const KFT: u128 = 1_000_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Alice: 1000 KFT from 500 s ago over 1000 s, no cliff (half vested now,
/// one more KFT each second). Bob: 100 KFT whose cliff ends in an hour.
fn plan(start: u64) -> String {
    format!(
        r#"plan_id = "cluster-kft"
version = 1
total = "{total}"
[token]
chain = "devnet-l1"
asset = "KFT"
decimals = 6
[[groups]]
name = "team"
share_bps = 10000
[[groups.beneficiaries]]
id = "alice"
address = "{ALICE}"
amount = "{alice}"
start = {alice_start}
cliff_secs = 0
duration_secs = 1000
[[groups.beneficiaries]]
id = "bob"
address = "{BOB}"
amount = "{bob}"
start = {start}
cliff_secs = 3600
duration_secs = 7200
"#,
        total = 1100 * KFT,
        alice = 1000 * KFT,
        bob = 100 * KFT,
        alice_start = start - 500,
    )
}

fn claim(c: &Cluster, to: &str, kft: &str) -> keyfold_proto::api::PayoutRequest {
    let mut p = payout(&unique("claim"), c, "devnet-l1", "KFT", kft);
    p.to = to.into();
    p
}

/// Signs `doc` with two admins and pushes it; records it as in force.
fn sign_and_push(c: &mut Cluster, doc: &std::path::Path, version: u64) {
    let sigs: Vec<std::path::PathBuf> = ["alice", "bob"]
        .iter()
        .map(|officer| {
            let sig = keyfold(&[
                "policy",
                "sign",
                doc.to_str().unwrap(),
                "--key",
                c.dir.join(format!("{officer}.key")).to_str().unwrap(),
            ]);
            let f = c.dir.join(format!("alloc-v{version}-{officer}.sig.json"));
            std::fs::write(&f, sig.trim()).unwrap();
            f
        })
        .collect();
    c.policy_version = version;
    c.policy_push = Some((doc.to_path_buf(), sigs));
    c.push_policy_in_force();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_claims_are_bounded_by_vesting_under_the_signed_policy() {
    let mut c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let start = now();
    let plan_file = c.dir.join("cluster-kft.toml");
    std::fs::write(&plan_file, plan(start)).unwrap();
    let current = c.dir.join("alloc-current.toml");
    std::fs::write(
        &current,
        test_policy(&c.officers, c.policy_version, SMALL_MAX),
    )
    .unwrap();
    let next = c.dir.join("alloc-next.toml");
    keyfold(&[
        "allocation",
        "policy",
        plan_file.to_str().unwrap(),
        "--policy",
        current.to_str().unwrap(),
        "--wallet",
        &c.ecdsa.key_id,
        "--out",
        next.to_str().unwrap(),
    ]);
    let version = c.policy_version + 1;
    sign_and_push(&mut c, &next, version);

    // Within what has vested (about 500 KFT): paid, and checked on chain.
    let ok = c.payout_ok(&claim(&c, ALICE, "400")).await;
    let done = c.wait_completed(&ok.payout_id).await;
    assert_eq!(done.amount_base_units, (400 * KFT).to_string());
    check_on_chain(&c, &rpc, &done).await;

    // 400 more is above what is left (about 100 KFT and a second's worth).
    let over = c.payout_ok(&claim(&c, ALICE, "400")).await;
    assert_eq!(over.state, PayoutState::Rejected, "{over:?}");
    let reason = over.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("vesting") && reason.contains("available"),
        "{reason}"
    );
    assert!(over.tx_hash.is_none());

    // Before the cliff nothing is available.
    let early = c.payout_ok(&claim(&c, BOB, "1")).await;
    assert_eq!(early.state, PayoutState::Rejected, "{early:?}");
    assert!(
        early
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("0 available"),
        "{early:?}"
    );

    // The allocation wallet pays nothing but claims.
    let other = c
        .payout_ok(&claim(
            &c,
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "1",
        ))
        .await;
    assert_eq!(other.state, PayoutState::Rejected, "{other:?}");

    // The plain policy back for the other tests, as a newer version.
    let restored = c.dir.join(format!("policy-v{}.toml", version + 1));
    std::fs::write(&restored, test_policy(&c.officers, version + 1, SMALL_MAX)).unwrap();
    sign_and_push(&mut c, &restored, version + 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
