//! Payouts on the cluster's local chains (two real anvils): paid through
//! the MPC wallet and checked independently (the sender recovered with k256
//! over a keccak-256 computed here, receipts and balances read from anvil),
//! bad input, an empty wallet, racing payouts, a reorg, a stuck transaction
//! replaced, an RPC down at broadcast, a coordinator killed between signing and broadcast, and a
//! coordinator that tampers with the transaction.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use keyfold_coordinator::chain_rpc::EvmRpc;
use keyfold_proto::api::{PayoutInfo, PayoutRequest, PayoutState, SignResult};

use crate::fixture::*;

/// Who the tests pay.
const TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn to() -> Address {
    TO.parse().unwrap()
}

pub fn payout(id: &str, c: &Cluster, chain: &str, asset: &str, amount: &str) -> PayoutRequest {
    PayoutRequest {
        payout_id: id.into(),
        wallet: c.ecdsa.key_id.clone(),
        chain: chain.into(),
        asset: asset.into(),
        to: TO.into(),
        amount: amount.into(),
        reference: None,
        recent_blockhash: None,
        derivation_path: None,
        client: None,
    }
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

impl Cluster {
    async fn post_payout(&self, req: &PayoutRequest) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(self.url("/v1/payouts"))
            .bearer_auth(&self.token)
            .json(req)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn payout_ok(&self, req: &PayoutRequest) -> PayoutInfo {
        let (status, body) = self.post_payout(req).await;
        assert_eq!(status, 201, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn payout_now(&self, id: &str) -> PayoutInfo {
        let (code, p, body) = self.get::<PayoutInfo>(&format!("/v1/payouts/{id}")).await;
        assert_eq!(code, 200, "{body}");
        p.unwrap()
    }

    /// Polls until `done(payout)` (at most `secs`).
    pub(crate) async fn wait_payout(
        &self,
        id: &str,
        secs: u64,
        done: impl Fn(&PayoutInfo) -> bool,
    ) -> PayoutInfo {
        let t0 = Instant::now();
        loop {
            let p = self.payout_now(id).await;
            if done(&p) {
                return p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "payout {id} did not get there in {secs} s: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_completed(&self, id: &str) -> PayoutInfo {
        let p = self
            .wait_payout(id, 90, |p| {
                !matches!(
                    p.state,
                    PayoutState::Signing
                        | PayoutState::Broadcast
                        | PayoutState::Replaced
                        | PayoutState::Confirming
                )
            })
            .await;
        assert_eq!(p.state, PayoutState::Completed, "{p:?}");
        p
    }
}

/// The addresses that keccak-256(`message`) signed with `sig` (`r || s`)
/// recovers to, one per y-parity, with k256 and sha3 alone.
fn recovered(message: &[u8], sig: &str) -> Vec<Address> {
    use sha3::{Digest, Keccak256};
    let digest = Keccak256::digest(message);
    let sig = k256::ecdsa::Signature::from_slice(&hex::decode(sig).unwrap()).unwrap();
    (0u8..2)
        .filter_map(|v| {
            let id = k256::ecdsa::RecoveryId::from_byte(v)?;
            let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, id).ok()?;
            let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
            Some(Address::from_slice(&h[12..]))
        })
        .collect()
}

/// Checks a completed payout independently: the signature over the
/// unsigned transaction recovers to the wallet (k256), the raw transaction
/// hashes to the reported hash (sha3), and anvil holds a successful receipt.
pub(crate) async fn check_on_chain(c: &Cluster, rpc: &EvmRpc, p: &PayoutInfo) {
    use sha3::{Digest, Keccak256};
    let sig: SignResult = c
        .get::<SignResult>(&format!("/v1/signatures/{}", p.request_id))
        .await
        .1
        .unwrap();
    let from: Address = p.from.parse().unwrap();
    assert!(
        recovered(&hex::decode(&sig.message).unwrap(), &sig.signature).contains(&from),
        "the threshold signature must recover to the wallet {from}"
    );
    let raw = hex::decode(p.raw_tx.as_ref().unwrap().trim_start_matches("0x")).unwrap();
    let hash = B256::from_slice(&Keccak256::digest(&raw));
    assert_eq!(format!("{hash:#x}"), *p.tx_hash.as_ref().unwrap());
    let receipt = rpc
        .transaction_receipt(hash)
        .await
        .unwrap()
        .expect("a receipt");
    assert!(receipt.success);
    assert_eq!(Some(receipt.block_number), p.block_number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_and_a_token_payout_complete_and_check_out_independently() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let (eth0, kft0) = (
        rpc.balance(to()).await.unwrap(),
        c.chains.l1.token_balance(to()).await.unwrap(),
    );
    let eth = c
        .payout_ok(&payout(&unique("eth"), &c, "devnet-l1", "ETH", "0.125"))
        .await;
    let kft = c
        .payout_ok(&payout(&unique("kft"), &c, "devnet-l1", "KFT", "2.5"))
        .await;
    assert_eq!(eth.amount_base_units, "125000000000000000");
    assert_eq!(kft.amount_base_units, "2500000");
    assert_eq!(kft.nonce, eth.nonce.map(|n| n + 1), "consecutive nonces");
    let eth = c.wait_completed(&eth.payout_id).await;
    let kft = c.wait_completed(&kft.payout_id).await;
    check_on_chain(&c, &rpc, &eth).await;
    check_on_chain(&c, &rpc, &kft).await;
    assert_eq!(
        rpc.balance(to()).await.unwrap() - eth0,
        U256::from(125_000_000_000_000_000u128)
    );
    assert_eq!(
        c.chains.l1.token_balance(to()).await.unwrap() - kft0,
        U256::from(2_500_000u64)
    );
    // Asking again answers the same payout, never a second transaction.
    let again = c
        .payout_ok(&payout(&eth.payout_id, &c, "devnet-l1", "ETH", "0.125"))
        .await;
    assert_eq!(again.tx_hash, eth.tx_hash);
    let (status, body) = c
        .post_payout(&payout(&eth.payout_id, &c, "devnet-l1", "ETH", "0.126"))
        .await;
    assert_eq!(status, 409, "{body}");
}

/// The address of the wallet's non-hardened child at `path`, derived with
/// the `bip32` crate from the key's public key and chain code.
fn child_address(key: &keyfold_proto::api::KeyInfo, path: &[u32]) -> Address {
    use bip32::{ChildNumber, ExtendedKeyAttrs, XPub};
    use sha3::{Digest, Keccak256};
    let vk =
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(&key.public_key).unwrap()).unwrap();
    let chain_code: [u8; 32] = hex::decode(key.chain_code.as_ref().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut xpub = XPub::new(
        vk,
        ExtendedKeyAttrs {
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: ChildNumber(0),
            chain_code,
        },
    );
    for &i in path {
        xpub = xpub
            .derive_child(ChildNumber::new(i, false).unwrap())
            .unwrap();
    }
    let point = xpub.public_key().to_encoded_point(false);
    Address::from_slice(&Keccak256::digest(&point.as_bytes()[1..])[12..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_from_an_hd_child_pays_from_its_address_with_full_signing() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let child = child_address(&c.ecdsa, &[0, 7]);
    let ether = U256::from(10u64).pow(U256::from(18u64));
    rpc.set_balance(child, ether).await.unwrap();
    let before = rpc.balance(to()).await.unwrap();
    let mut req = payout(&unique("child"), &c, "devnet-l1", "ETH", "0.05");
    req.derivation_path = Some("m/0/7".into());
    let p = c.payout_ok(&req).await;
    assert_eq!(
        p.from,
        child.to_checksum(None),
        "paid from the child's address"
    );
    assert_eq!(p.derivation_path.as_deref(), Some("m/0/7"));
    let done = c.wait_completed(&p.payout_id).await;
    // The threshold signature recovers to the child (k256), and was made
    // with full signing: presignatures are for root keys only.
    let sig: SignResult = c
        .get::<SignResult>(&format!("/v1/signatures/{}", done.request_id))
        .await
        .1
        .unwrap();
    assert!(recovered(&hex::decode(&sig.message).unwrap(), &sig.signature).contains(&child));
    assert_eq!(
        serde_json::to_value(sig.mode).unwrap(),
        serde_json::json!("full")
    );
    check_on_chain(&c, &rpc, &done).await;
    assert_eq!(
        rpc.balance(to()).await.unwrap() - before,
        U256::from(50_000_000_000_000_000u128)
    );
    assert!(rpc.balance(child).await.unwrap() < ether - U256::from(50_000_000_000_000_000u128));
    // A hardened step, or a path on a Solana payout, is refused up front.
    req.payout_id = unique("child-hardened");
    req.derivation_path = Some("m/0'/7".into());
    let (status, body) = c.post_payout(&req).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("derivation_path"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_used_outside_keyfold_is_reported_at_start_and_skipped_without_a_gap() {
    let mut c = cluster().await;
    let rpc = c.chains.l2_rpc();
    // The nonce manager knows the wallet on this chain once it paid there.
    let first = c
        .payout_ok(&payout(
            &unique("before-foreign"),
            &c,
            "devnet-l2",
            "ETH",
            "0.001",
        ))
        .await;
    let first = c
        .wait_payout(&first.payout_id, 30, |p| p.block_number.is_some())
        .await;
    let from: Address = first.from.parse().unwrap();
    // Someone else spends from the wallet's address (anvil lets a test act
    // as any account, as a leaked key or another system would).
    rpc.impersonate(from).await.unwrap();
    let foreign = rpc
        .send_from_dev(from, Some(from), U256::ZERO, Vec::new())
        .await
        .unwrap();
    rpc.stop_impersonating(from).await.unwrap();
    rpc.wait_receipt(foreign, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the foreign transaction is mined");
    let used = first.nonce.unwrap() + 1;
    assert_eq!(rpc.nonce(from, false).await.unwrap(), used + 1);

    let log = c.dir.join("logs").join("coordinator.log");
    let offset = std::fs::metadata(&log).unwrap().len() as usize;
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
    // Reported at start, before any payout asks for a nonce.
    let t0 = Instant::now();
    let reported = loop {
        let text = std::fs::read(&log).unwrap();
        let new = String::from_utf8_lossy(&text[offset.min(text.len())..]).to_string();
        if let Some(line) = new
            .lines()
            .find(|l| l.contains("foreign_nonce") && l.contains("devnet-l2"))
        {
            break line.to_string();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no foreign-nonce alert after the restart:\n{new}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        reported.contains(&format!("nonces {used}..{}", used + 1)),
        "{reported}"
    );
    // The next payout takes the nonce after it: no gap, no duplicate.
    let next = c
        .payout_ok(&payout(
            &unique("after-foreign"),
            &c,
            "devnet-l2",
            "ETH",
            "0.001",
        ))
        .await;
    assert_eq!(next.nonce, Some(used + 1));
    c.wait_completed(&next.payout_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_spl_token_payout_is_signed_by_the_frost_wallet_and_returned_to_send() {
    use base64::Engine;
    let c = cluster().await;
    let recipient = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";
    let blockhash = bs58::encode([7u8; 32]).into_string();
    let req = PayoutRequest {
        payout_id: unique("spl"),
        wallet: c.eddsa.key_id.clone(),
        chain: "solana-devnet".into(),
        asset: "USDC".into(),
        to: recipient.into(),
        amount: "1.5".into(),
        reference: None,
        recent_blockhash: Some(blockhash.clone()),
        derivation_path: None,
        client: None,
    };
    let p = c.payout_ok(&req).await;
    assert_eq!(p.token_contract.as_deref(), Some(crate::chains::SPL_MINT));
    assert_eq!(p.amount_base_units, "1500000");
    let p = c
        .wait_payout(&p.payout_id, 30, |p| p.state == PayoutState::Signed)
        .await;
    let wire = base64::engine::general_purpose::STANDARD
        .decode(p.raw_tx.as_ref().unwrap())
        .unwrap();
    // One signature, by the FROST wallet, over the message (ed25519-dalek).
    assert_eq!(wire[0], 1);
    let pk: [u8; 32] = hex::decode(&c.eddsa.public_key)
        .unwrap()
        .try_into()
        .unwrap();
    let message = &wire[65..];
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(
            message,
            &ed25519_dalek::Signature::from_slice(&wire[1..65]).unwrap(),
        )
        .expect("the SPL transfer verifies with ed25519-dalek");
    assert_eq!(p.tx_hash, Some(bs58::encode(&wire[1..65]).into_string()));
    // The message, read by hand: the wallet pays the fee, the blockhash is
    // the one given, and an SPL TransferChecked (instruction 12) carries
    // 1.5 USDC in base units with the mint's 6 decimals.
    assert_eq!(p.from, bs58::encode(pk).into_string());
    let contains = |needle: &[u8]| message.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&pk), "the wallet is an account of the message");
    assert!(contains(&[7u8; 32]), "the recent blockhash");
    let mint = bs58::decode(crate::chains::SPL_MINT).into_vec().unwrap();
    assert!(contains(&mint), "the mint");
    let mut transfer_checked = vec![12u8];
    transfer_checked.extend_from_slice(&1_500_000u64.to_le_bytes());
    transfer_checked.push(6);
    assert!(
        contains(&transfer_checked),
        "a TransferChecked of 1500000 base units with 6 decimals"
    );
    // Too many decimals for the token: refused, naming the field.
    let mut bad = req.clone();
    bad.payout_id = unique("spl-bad");
    bad.amount = "0.0000001".into();
    let (status, body) = c.post_payout(&bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("amount"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_with_bad_input_are_refused_naming_what_is_wrong() {
    let c = cluster().await;
    let cases = [
        ("devnet-l9", "ETH", TO, "1", "chain"),
        ("devnet-l1", "DOGE", TO, "1", "asset"),
        (
            "devnet-l1",
            "ETH",
            "0x70997970c51812dc3A010C7d01b50e0d17dc79C8",
            "1",
            "checksum",
        ),
        (
            "devnet-l1",
            "ETH",
            "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin",
            "1",
            "Solana",
        ),
        ("devnet-l1", "KFT", TO, "0.1234567", "7 decimals"),
        ("devnet-l1", "ETH", TO, "-1", "amount"),
        ("devnet-l1", "ETH", TO, "", "amount"),
        ("devnet-l1", "ETH", TO, "1e18", "amount"),
        ("devnet-l1", "ETH", TO, &"9".repeat(90), "amount"),
    ];
    for (chain, asset, to, amount, needle) in cases {
        let mut req = payout(&unique("bad"), &c, chain, asset, amount);
        req.to = to.into();
        let (status, body) = c.post_payout(&req).await;
        assert_eq!(status, 400, "{chain} {asset} {to} {amount}: {body}");
        assert!(body.contains(needle), "expected `{needle}` in {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_beyond_the_balance_fails_without_burning_a_nonce() {
    let c = cluster().await;
    let probe = c
        .payout_ok(&payout(&unique("probe"), &c, "devnet-l2", "ETH", "0.001"))
        .await;
    let big = c
        .payout_ok(&payout(&unique("big"), &c, "devnet-l2", "ETH", "5000"))
        .await;
    assert_eq!(big.state, PayoutState::Failed, "{big:?}");
    assert!(
        big.reason
            .as_deref()
            .unwrap_or("")
            .contains("insufficient balance"),
        "{big:?}"
    );
    assert_eq!(big.nonce, None, "no nonce taken");
    // The next payout takes the nonce right after the probe's.
    let next = c
        .payout_ok(&payout(&unique("next"), &c, "devnet-l2", "ETH", "0.001"))
        .await;
    assert_eq!(next.nonce, probe.nonce.map(|n| n + 1), "{next:?}");
    c.wait_completed(&next.payout_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payouts_racing_for_one_wallet_get_consecutive_nonces_and_both_mine() {
    let c = cluster().await;
    let (a, b) = (unique("race-a"), unique("race-b"));
    let ra = payout(&a, &c, "devnet-l1", "ETH", "0.01");
    let rb = payout(&b, &c, "devnet-l1", "KFT", "1");
    let (x, y) = tokio::join!(c.post_payout(&ra), c.post_payout(&rb));
    assert_eq!((x.0, y.0), (201, 201), "{x:?} {y:?}");
    let pa = c.wait_completed(&a).await;
    let pb = c.wait_completed(&b).await;
    let mut nonces = [pa.nonce.unwrap(), pb.nonce.unwrap()];
    nonces.sort();
    assert_eq!(nonces[1], nonces[0] + 1, "{pa:?} {pb:?}");
    let rpc = c.chains.l1_rpc();
    check_on_chain(&c, &rpc, &pa).await;
    check_on_chain(&c, &rpc, &pb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_drops_a_payout_sends_the_same_bytes_again() {
    let c = cluster().await;
    let rpc = c.chains.l2_rpc();
    let before = rpc.balance(to()).await.unwrap();
    let p = c
        .payout_ok(&payout(&unique("reorg"), &c, "devnet-l2", "ETH", "0.02"))
        .await;
    let mined = c
        .wait_payout(&p.payout_id, 30, |p| p.block_number.is_some())
        .await;
    assert_eq!(mined.state, PayoutState::Confirming, "{mined:?}");
    let block = mined.block_number.unwrap();
    let head = rpc.block_number().await.unwrap();
    // Replace every block from the payout's on: the transaction leaves the chain.
    rpc.reorg(head - block + 1).await.unwrap();
    let hash: B256 = mined.tx_hash.clone().unwrap().parse().unwrap();
    assert!(
        rpc.transaction_receipt(hash).await.unwrap().is_none(),
        "the reorg must drop the transaction"
    );
    let done = c.wait_completed(&p.payout_id).await;
    assert_eq!(done.tx_hash, mined.tx_hash, "the same signed bytes, again");
    assert_eq!(done.raw_tx, mined.raw_tx);
    check_on_chain(&c, &rpc, &done).await;
    assert_eq!(
        rpc.balance(to()).await.unwrap() - before,
        U256::from(20_000_000_000_000_000u128),
        "paid exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_payout_is_replaced_at_its_nonce_with_higher_fees_and_pays_once() {
    use keyfold_audit::Event;
    let c = cluster().await;
    let rpc = c.chains.l2_rpc();
    let before = rpc.balance(to()).await.unwrap();
    // No more blocks: the payout's transaction waits in the mempool.
    rpc.set_interval_mining(0).await.unwrap();
    let p = c
        .payout_ok(&payout(&unique("stuck"), &c, "devnet-l2", "ETH", "0.015"))
        .await;
    let from: Address = p.from.parse().unwrap();
    let first = c
        .wait_payout(&p.payout_id, 30, |p| p.state == PayoutState::Broadcast)
        .await;
    let first_hash: B256 = first.tx_hash.clone().unwrap().parse().unwrap();
    let pending = rpc
        .transaction_by_hash(first_hash)
        .await
        .unwrap()
        .expect("the first transaction waits in the mempool");
    assert_eq!(Some(pending.nonce), first.nonce);

    // Stuck past the chain's replace_after_secs: replaced.
    let replaced = c
        .wait_payout(
            &p.payout_id,
            30 + crate::chains::L2_REPLACE_AFTER_SECS,
            |p| p.transactions.len() == 2 && p.transactions[1].tx_hash.is_some(),
        )
        .await;
    assert_eq!(replaced.state, PayoutState::Replaced, "{replaced:?}");
    let (old, new) = (&replaced.transactions[0], &replaced.transactions[1]);
    assert_eq!(old.tx_hash, first.tx_hash);
    assert_eq!(new.request_id, format!("{}+r1", p.request_id));
    let fee = |s: &str| s.parse::<u128>().unwrap();
    assert!(
        fee(&new.max_fee_per_gas) * 10 >= fee(&old.max_fee_per_gas) * 11
            && fee(&new.max_priority_fee_per_gas) * 10 >= fee(&old.max_priority_fee_per_gas) * 11,
        "both fees rise by at least 10%: {old:?} -> {new:?}"
    );
    let new_hash: B256 = new.tx_hash.clone().unwrap().parse().unwrap();
    let pooled = rpc
        .transaction_by_hash(new_hash)
        .await
        .unwrap()
        .expect("the replacement waits in the mempool");
    assert_eq!(
        (pooled.nonce, pooled.from),
        (pending.nonce, from),
        "same nonce, same wallet"
    );
    assert!(
        rpc.transaction_by_hash(first_hash).await.unwrap().is_none(),
        "the replacement took the first transaction's place"
    );
    // The replacement's threshold signature recovers to the wallet (k256).
    let sig: SignResult = c
        .get::<SignResult>(&format!("/v1/signatures/{}", new.request_id))
        .await
        .1
        .unwrap();
    assert!(recovered(&hex::decode(&sig.message).unwrap(), &sig.signature).contains(&from));

    // Blocks again: the replacement is mined, and the payout paid once.
    rpc.set_interval_mining(1).await.unwrap();
    let done = c.wait_completed(&p.payout_id).await;
    assert_eq!(done.tx_hash, new.tx_hash, "the replacement paid");
    assert!(
        done.transactions[1].mined && !done.transactions[0].mined,
        "{done:?}"
    );
    check_on_chain(&c, &rpc, &done).await;
    assert!(rpc.transaction_receipt(first_hash).await.unwrap().is_none());
    assert_eq!(rpc.nonce(from, false).await.unwrap(), pending.nonce + 1);
    assert_eq!(
        rpc.balance(to()).await.unwrap() - before,
        U256::from(15_000_000_000_000_000u128),
        "paid exactly once"
    );
    // The log holds both transactions' bytes and which one was confirmed.
    let events: Vec<String> = c
        .coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ChainTransaction {
                request_id,
                action,
                raw_tx,
                ..
            } if request_id.starts_with(&p.request_id) => Some(format!(
                "{request_id} {action}{}",
                if raw_tx.is_some() { "+raw" } else { "" }
            )),
            _ => None,
        })
        .collect();
    let (r0, r1) = (&p.request_id, &new.request_id);
    assert_eq!(
        events,
        [
            format!("{r0} broadcast+raw"),
            format!("{r1} replacement+raw"),
            format!("{r1} confirmed")
        ],
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_whose_rpc_is_down_at_broadcast_waits_visibly_and_then_completes() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    c.chains.refuse_broadcast.store(true, Ordering::SeqCst);
    let p = c
        .payout_ok(&payout(&unique("down"), &c, "devnet-l1", "ETH", "0.03"))
        .await;
    let from: Address = p.from.parse().unwrap();
    let waiting = c
        .wait_payout(&p.payout_id, 30, |p| p.state == PayoutState::Broadcast)
        .await;
    let nonce_before = rpc.nonce(from, true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = c.payout_now(&p.payout_id).await;
    assert_eq!(still.state, PayoutState::Broadcast, "{still:?}");
    assert_eq!(
        still.tx_hash, waiting.tx_hash,
        "signed once, stored before sending"
    );
    assert_eq!(
        rpc.nonce(from, true).await.unwrap(),
        nonce_before,
        "nothing sent"
    );
    c.chains.refuse_broadcast.store(false, Ordering::SeqCst);
    let done = c.wait_completed(&p.payout_id).await;
    assert_eq!(done.tx_hash, waiting.tx_hash);
    check_on_chain(&c, &rpc, &done).await;
    assert_eq!(
        rpc.nonce(from, true).await.unwrap(),
        nonce_before + 1,
        "one transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_whose_rpc_is_down_when_asked_is_refused_and_nothing_is_recorded() {
    let c = cluster().await;
    c.chains.refuse_all.store(true, Ordering::SeqCst);
    let id = unique("rpc-down");
    let (status, body) = c
        .post_payout(&payout(&id, &c, "devnet-l1", "ETH", "0.01"))
        .await;
    c.chains.refuse_all.store(false, Ordering::SeqCst);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("chain_unavailable"), "{body}");
    let (code, _, body) = c.get::<PayoutInfo>(&format!("/v1/payouts/{id}")).await;
    assert_eq!(code, 404, "nothing recorded: {body}");
    // The same payout, once the RPC is back, is paid.
    let p = c
        .payout_ok(&payout(&id, &c, "devnet-l1", "ETH", "0.01"))
        .await;
    c.wait_completed(&p.payout_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_between_signing_and_broadcast_sends_the_same_bytes_after_restart() {
    let mut c = cluster().await;
    let rpc = c.chains.l1_rpc();
    c.chains.refuse_broadcast.store(true, Ordering::SeqCst);
    let p = c
        .payout_ok(&payout(&unique("kill9"), &c, "devnet-l1", "ETH", "0.04"))
        .await;
    let signed = c
        .wait_payout(&p.payout_id, 30, |p| p.tx_hash.is_some())
        .await;
    let from: Address = p.from.parse().unwrap();
    let nonce_before = rpc.nonce(from, true).await.unwrap();
    c.kill("coordinator"); // SIGKILL
    c.chains.refuse_broadcast.store(false, Ordering::SeqCst);
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let done = c.wait_completed(&p.payout_id).await;
    assert_eq!(
        done.tx_hash, signed.tx_hash,
        "the bytes signed before the kill"
    );
    assert_eq!(done.raw_tx, signed.raw_tx);
    check_on_chain(&c, &rpc, &done).await;
    assert_eq!(
        rpc.nonce(from, true).await.unwrap(),
        nonce_before + 1,
        "one transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signer_refuses_a_transaction_that_pays_someone_else() {
    let mut c = cluster().await;
    let mallory = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
    c.restart_coordinator(Some(&format!(
        "[policy]\ntamper_payout_to = \"{mallory}\"\n"
    )));
    c.wait_live(&SIGNERS).await;
    let rpc = c.chains.l1_rpc();
    let mallory_before = rpc.balance(mallory.parse().unwrap()).await.unwrap();
    let p = c
        .payout_ok(&payout(&unique("tamper"), &c, "devnet-l1", "ETH", "0.05"))
        .await;
    let p = c
        .wait_payout(&p.payout_id, 60, |p| p.state != PayoutState::Signing)
        .await;
    assert_eq!(p.state, PayoutState::Failed, "{p:?}");
    let reason = p.reason.clone().unwrap_or_default();
    for s in SIGNERS {
        assert!(
            reason.contains(s) || reason.contains("does not match its payout"),
            "{reason}"
        );
    }
    assert!(reason.contains("does not match its payout"), "{reason}");
    assert!(p.tx_hash.is_none(), "nothing signed: {p:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rpc.balance(mallory.parse().unwrap()).await.unwrap(),
        mallory_before
    );
    // Its nonce went back: the next payout takes it and mines (no gap).
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
    let next = c
        .payout_ok(&payout(
            &unique("after-tamper"),
            &c,
            "devnet-l1",
            "ETH",
            "0.001",
        ))
        .await;
    assert_eq!(next.nonce, p.nonce, "the released nonce is reused");
    c.wait_completed(&next.payout_id).await;
    // Every signer's own audit log records no contribution to it.
    for s in SIGNERS {
        let log = std::fs::read_to_string(c.dir.join(s).join("audit").join("entries.jsonl"))
            .unwrap_or_default();
        assert!(
            !log.contains(&p.request_id),
            "{s} contributed to the tampered payout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_json_holds_completed_payouts_on_both_chains_and_a_signed_sol_transfer() {
    let c = cluster().await;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir.join("devnet.json")).unwrap()).unwrap();
    let payouts = doc["payouts"].as_array().expect("payouts");
    for chain_id in [31337u64, 31338] {
        let on: Vec<_> = payouts
            .iter()
            .filter(|p| p["chain_id"].as_u64() == Some(chain_id))
            .collect();
        assert!(
            on.iter().any(|p| p["token_contract"].is_null()),
            "native on {chain_id}"
        );
        assert!(
            on.iter().any(|p| p["token_contract"].is_string()),
            "token on {chain_id}"
        );
    }
    for p in payouts {
        assert_eq!(p["state"], "completed", "{p}");
        // The raw transaction is an EIP-1559 one whose hash is the reported one.
        let raw = hex::decode(p["raw_tx"].as_str().unwrap().trim_start_matches("0x")).unwrap();
        assert_eq!(raw[0], 0x02);
        use sha3::Digest;
        assert_eq!(
            format!("0x{}", hex::encode(sha3::Keccak256::digest(&raw))),
            p["tx_hash"].as_str().unwrap()
        );
        assert!(
            p["amount_base_units"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap()
                > 0
        );
        assert!(p["confirmations"].as_u64().unwrap() >= 2);
    }
    let sol = &doc["solana"][0];
    assert_eq!(sol["lamports"], 250_000_000u64);
    // The wire transaction: one signature over the rest, by the Ed25519 wallet.
    use base64::Engine;
    let wire = base64::engine::general_purpose::STANDARD
        .decode(sol["raw_tx"].as_str().unwrap())
        .unwrap();
    assert_eq!(wire[0], 1);
    let pk: [u8; 32] = hex::decode(&c.eddsa.public_key)
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(
            &wire[65..],
            &ed25519_dalek::Signature::from_slice(&wire[1..65]).unwrap(),
        )
        .expect("the SOL transfer verifies with ed25519-dalek");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_json_holds_settled_orders_and_webhooks_that_standardwebhooks_verifies() {
    let c = cluster().await;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir.join("devnet.json")).unwrap()).unwrap();
    let secret = doc["merchant"]["webhook_secret"]
        .as_str()
        .expect("merchant");
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(doc["merchant"]["id"], "devnet-shop");
    let orders = doc["orders"].as_array().expect("orders");
    for chain_id in [31337u64, 31338] {
        let on: Vec<_> = orders
            .iter()
            .filter(|o| o["chain_id"].as_u64() == Some(chain_id))
            .collect();
        assert!(
            on.iter().any(|o| o["asset"] == "ETH"),
            "native on {chain_id}"
        );
        assert!(
            on.iter().any(|o| o["asset"] == "KFT"),
            "token on {chain_id}"
        );
    }
    for o in orders {
        assert_eq!(o["status"], "settled", "{o}");
        let paid: u128 = o["deposits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                d["amount_base_units"]
                    .as_str()
                    .unwrap()
                    .parse::<u128>()
                    .unwrap()
            })
            .sum();
        let due: u128 = o["amount_base_units"].as_str().unwrap().parse().unwrap();
        assert!(paid >= due, "{o}");
        assert!(
            o["deposits"][0]["confirmations"].as_u64().unwrap() >= 2,
            "{o}"
        );
    }
    // Every delivery the receiver got verifies with the reference library,
    // and each order's settlement was announced.
    let hooks = doc["webhooks"].as_array().expect("webhooks");
    for o in orders {
        let id = o["order_id"].as_str().unwrap();
        assert!(
            hooks.iter().any(|w| {
                let b: serde_json::Value =
                    serde_json::from_str(w["body"].as_str().unwrap()).unwrap();
                b["type"] == "order.settled" && b["data"]["order_id"] == id
            }),
            "no order.settled webhook for {id}"
        );
    }
    crate::merchants::verify_with_standardwebhooks(
        &c,
        "devnet",
        &serde_json::json!(secret),
        serde_json::Value::Array(hooks.clone()),
        true,
    );
}
