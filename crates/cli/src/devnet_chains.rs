//! The devnet's chains: two local anvil chains (an "L1" and an "L2"), the
//! test ERC-20 token on each, the hot wallet funded from anvil's
//! development account, and payouts paid through the API and checked
//! independently (k256 recovery of the sender over a keccak-256 computed
//! here, the receipt read back from anvil; Solana with ed25519-dalek).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use keyfold_coordinator::chain_rpc::devchain::{DevChain, TEST_TOKEN_ARTIFACT, TEST_TOKEN_SYMBOL};
use keyfold_proto::api::{KeyInfo, PayoutInfo, PayoutRequest, PayoutState, SignResult};
use serde::Serialize;

use crate::http::Api;

/// Chain ids of the devnet's chains.
pub const L1_CHAIN_ID: u64 = 31337;
/// Chain id of the devnet's L2.
pub const L2_CHAIN_ID: u64 = 31338;
/// Who the devnet pays (an address no key here holds).
const RECIPIENT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
/// The Solana recipient of the devnet's signed SOL transfer.
const SOL_RECIPIENT: &str = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";

/// The running chains (their anvils stop when this is dropped).
pub struct Chains {
    /// `devnet-l1`, then `devnet-l2`.
    pub chains: Vec<(String, DevChain)>,
    /// The registry file the coordinator reads.
    pub registry_file: PathBuf,
}

/// One payout of the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct PayoutSummary {
    /// The client's id.
    pub payout_id: String,
    /// EVM chain id.
    pub chain_id: u64,
    /// Asset symbol.
    pub asset: String,
    /// Token contract; null for the native coin.
    pub token_contract: Option<String>,
    /// Paying address.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Amount in base units (decimal string).
    pub amount_base_units: String,
    /// Signed EIP-2718 transaction, 0x hex.
    pub raw_tx: String,
    /// Its hash.
    pub tx_hash: String,
    /// Block that holds it.
    pub block_number: u64,
    /// Confirmations when it completed.
    pub confirmations: u64,
    /// `completed`.
    pub state: String,
}

/// The signed Solana transfer of the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct SolanaSummary {
    /// Payer.
    pub from: String,
    /// Recipient.
    pub to: String,
    /// Lamports.
    pub lamports: u64,
    /// Base64 wire transaction.
    pub raw_tx: String,
}

/// The workspace root: the nearest ancestor of the working directory (or
/// of this binary) holding the test token's artifact.
pub fn workspace_root() -> Option<PathBuf> {
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    ];
    starts
        .into_iter()
        .flatten()
        .flat_map(|s| s.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .find(|d| d.join(TEST_TOKEN_ARTIFACT).is_file())
}

/// Starts both chains and writes the registry file; `Ok(None)` (with one
/// line saying why) when anvil or the token artifact is missing.
pub async fn start(dir: &Path, base_port: u16) -> Result<Option<Chains>, String> {
    let Some(root) = workspace_root() else {
        println!(
            "      chains: skipped ({TEST_TOKEN_ARTIFACT} not found above the working directory)"
        );
        return Ok(None);
    };
    let Some(anvil) = keyfold_coordinator::chain_rpc::find_anvil(Some(&root)) else {
        println!(
            "      chains: skipped (anvil is not installed: run ./testnets/ensure-deps.sh, which needs npm)"
        );
        return Ok(None);
    };
    let mut chains = Vec::new();
    let mut toml =
        String::from("# The devnet's local chains (made by `keyfold devnet` at each start).\n\n");
    for (i, (id, name, chain_id)) in [
        ("devnet-l1", "Devnet L1", L1_CHAIN_ID),
        ("devnet-l2", "Devnet L2", L2_CHAIN_ID),
    ]
    .into_iter()
    .enumerate()
    {
        let port = base_port.checked_add(20 + i as u16);
        // A block every second, so confirmations accrue.
        let chain = DevChain::start(&anvil, &root, chain_id, port, Some(1)).await?;
        toml.push_str(&chain.registry_toml(id, name, 2));
        chains.push((id.to_string(), chain));
    }
    let registry_file = dir.join("config").join("chains.toml");
    std::fs::write(&registry_file, toml)
        .map_err(|e| format!("{}: {e}", registry_file.display()))?;
    Ok(Some(Chains {
        chains,
        registry_file,
    }))
}

/// Funds `key`'s address on every chain with 10 ETH and 1,000 KFT.
pub async fn fund(chains: &Chains, key: &KeyInfo) -> Result<Address, String> {
    let pk = hex::decode(&key.public_key).map_err(|e| e.to_string())?;
    let address = keyfold_chain::evm::address_of_public_key(&pk).map_err(|e| e.to_string())?;
    for (_, c) in &chains.chains {
        c.fund(
            address,
            U256::from(10u64) * U256::from(10u64).pow(U256::from(18u64)),
            U256::from(1_000_000_000u64),
        )
        .await?;
    }
    Ok(address)
}

/// Pays one native and one token payout on every chain and waits until
/// each is confirmed; checks each independently.
pub async fn pay(
    api: &Api,
    chains: &Chains,
    key: &KeyInfo,
    run_id: &str,
) -> Result<Vec<PayoutSummary>, String> {
    let mut submitted = Vec::new();
    for (id, _) in &chains.chains {
        for (asset, amount) in [("ETH", "0.5"), (TEST_TOKEN_SYMBOL, "12.5")] {
            let req = PayoutRequest {
                payout_id: format!("devnet-{run_id}-{id}-{asset}"),
                wallet: key.key_id.clone(),
                chain: id.clone(),
                asset: asset.into(),
                to: RECIPIENT.into(),
                amount: amount.into(),
                reference: Some("devnet".into()),
                recent_blockhash: None,
                derivation_path: None,
                client: None,
            };
            let p: PayoutInfo = api.post("/v1/payouts", &req).await?;
            println!(
                "[4/5] payout {} on {id}: {amount} {asset} to {RECIPIENT}, {} (nonce {})",
                p.payout_id,
                p.state,
                p.nonce.map_or("-".into(), |n| n.to_string())
            );
            submitted.push(p);
        }
    }
    let mut out = Vec::new();
    for p in submitted {
        let done = wait(api, &p.payout_id, Duration::from_secs(90)).await?;
        let chain = chains
            .chains
            .iter()
            .find(|(id, _)| *id == done.chain)
            .map(|(_, c)| c)
            .ok_or_else(|| format!("payout on unknown chain {}", done.chain))?;
        let summary = check_evm_payout(api, chain, &done).await?;
        println!(
            "      {} {} on {}: tx {} in block {} ({} confirmations), sender recovered with k256, receipt read back",
            done.amount, done.asset, done.chain, summary.tx_hash, summary.block_number, summary.confirmations
        );
        out.push(summary);
    }
    Ok(out)
}

async fn wait(api: &Api, payout_id: &str, limit: Duration) -> Result<PayoutInfo, String> {
    let started = Instant::now();
    loop {
        let p: PayoutInfo = api.get(&format!("/v1/payouts/{payout_id}")).await?;
        match p.state {
            PayoutState::Completed | PayoutState::Signed => return Ok(p),
            PayoutState::Failed
            | PayoutState::Rejected
            | PayoutState::Expired
            | PayoutState::Cancelled
            | PayoutState::PendingApproval
            | PayoutState::TimeLocked => {
                return Err(format!(
                    "payout {payout_id} is {}: {}",
                    p.state,
                    p.reason.unwrap_or_default()
                ))
            }
            _ => {}
        }
        if started.elapsed() > limit {
            return Err(format!(
                "payout {payout_id} still {} after {} s",
                p.state,
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Recovers the sender of a payout's signature with k256 over a keccak-256
/// computed here (not by the code that built the transaction), and reads
/// the receipt back from the chain.
async fn check_evm_payout(
    api: &Api,
    chain: &DevChain,
    p: &PayoutInfo,
) -> Result<PayoutSummary, String> {
    let sig: SignResult = api.get(&format!("/v1/signatures/{}", p.request_id)).await?;
    let message = hex::decode(&sig.message).map_err(|e| e.to_string())?;
    let recovered = recover_senders(&message, &sig.signature)?;
    if !recovered.iter().any(|a| a.eq_ignore_ascii_case(&p.from)) {
        return Err(format!(
            "payout {}: the signature recovers to {recovered:?}, not the wallet {}",
            p.payout_id, p.from
        ));
    }
    let raw = p
        .raw_tx
        .as_deref()
        .ok_or_else(|| format!("payout {} has no raw transaction", p.payout_id))?;
    let tx_hash = p
        .tx_hash
        .clone()
        .ok_or_else(|| format!("payout {} has no hash", p.payout_id))?;
    let hash: alloy_primitives::B256 = tx_hash.parse().map_err(|e| format!("{e}"))?;
    let receipt = chain
        .rpc()
        .transaction_receipt(hash)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("anvil has no receipt for {tx_hash}"))?;
    if !receipt.success {
        return Err(format!("{tx_hash} reverted on chain"));
    }
    Ok(PayoutSummary {
        payout_id: p.payout_id.clone(),
        chain_id: p.chain_id.unwrap_or(0),
        asset: p.asset.clone(),
        token_contract: p.token_contract.clone(),
        from: p.from.clone(),
        to: p.to.clone(),
        amount_base_units: p.amount_base_units.clone(),
        raw_tx: raw.to_string(),
        tx_hash,
        block_number: receipt.block_number,
        confirmations: p.confirmations,
        state: p.state.to_string(),
    })
}

/// The Ethereum addresses that may have signed keccak-256(`message`) with
/// `sig_hex` (`r || s`, no recovery id), by k256 public-key recovery with
/// each y-parity.
pub fn recover_senders(message: &[u8], sig_hex: &str) -> Result<Vec<String>, String> {
    use sha3::{Digest, Keccak256};
    let digest = Keccak256::digest(message);
    let sig = hex::decode(sig_hex).map_err(|e| e.to_string())?;
    let sig = k256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for v in 0u8..2 {
        let Some(id) = k256::ecdsa::RecoveryId::from_byte(v) else {
            continue;
        };
        if let Ok(vk) = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, id) {
            let point = vk.to_encoded_point(false);
            let h = Keccak256::digest(&point.as_bytes()[1..]);
            out.push(format!("0x{}", hex::encode(&h[12..])));
        }
    }
    if out.is_empty() {
        return Err("no public key recovers from the signature".into());
    }
    Ok(out)
}

/// Signs a SOL transfer with the Ed25519 wallet (Keyfold does not
/// broadcast on Solana here) and verifies it with ed25519-dalek.
pub async fn sign_solana(api: &Api, key: &KeyInfo, run_id: &str) -> Result<SolanaSummary, String> {
    // Any 32 bytes serve as the blockhash: nothing is sent.
    let blockhash =
        bs58::encode(sha2_256(format!("keyfold devnet {run_id}").as_bytes())).into_string();
    let req = PayoutRequest {
        payout_id: format!("devnet-{run_id}-solana"),
        wallet: key.key_id.clone(),
        chain: "solana-devnet".into(),
        asset: "SOL".into(),
        to: SOL_RECIPIENT.into(),
        amount: "0.25".into(),
        reference: Some("devnet".into()),
        recent_blockhash: Some(blockhash),
        derivation_path: None,
        client: None,
    };
    let _: PayoutInfo = api.post("/v1/payouts", &req).await?;
    let p = wait(api, &req.payout_id, Duration::from_secs(60)).await?;
    let raw = p
        .raw_tx
        .clone()
        .ok_or_else(|| format!("payout {} has no transaction", p.payout_id))?;
    let wire = base64_decode(&raw)?;
    // Legacy wire format: one signature (compact length 1), the signature,
    // then the message it covers.
    if wire.len() < 65 || wire[0] != 1 {
        return Err("the Solana transaction does not carry exactly one signature".into());
    }
    let sig = ed25519_dalek::Signature::from_slice(&wire[1..65]).map_err(|e| e.to_string())?;
    let pk: [u8; 32] = hex::decode(&key.public_key)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "Ed25519 key is not 32 bytes")?;
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .map_err(|e| e.to_string())?
        .verify_strict(&wire[65..], &sig)
        .map_err(|_| "the Solana transaction's signature does not verify with ed25519-dalek")?;
    println!(
        "[4/5] Solana: 0.25 SOL from {} to {SOL_RECIPIENT} signed by the FROST wallet, verified with ed25519-dalek",
        p.from
    );
    Ok(SolanaSummary {
        from: p.from,
        to: p.to,
        lamports: p.amount_base_units.parse().map_err(|e| format!("{e}"))?,
        raw_tx: raw,
    })
}

fn sha2_256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("base64: {e}"))
}
