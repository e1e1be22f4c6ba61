//! Local EVM chains for `keyfold devnet` and the tests: an anvil with
//! Keyfold's test ERC-20 token deployed from anvil's first development
//! account, and funding a wallet from that account with real transfers.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::{Address, U256};
use keyfold_chain::evm;

use super::anvil::Anvil;
use super::evm::EvmRpc;

/// Where the test token's compiled artifact lives, under the workspace root
/// (`testnets/contracts/build.sh` makes it; it is committed).
pub const TEST_TOKEN_ARTIFACT: &str = "testnets/contracts/KeyfoldTestToken.json";
/// The test token's symbol.
pub const TEST_TOKEN_SYMBOL: &str = "KFT";
/// The test token's decimals (6, like USDC: amounts with more decimals are
/// refused, which the tests use).
pub const TEST_TOKEN_DECIMALS: u8 = 6;

/// A local chain: the anvil process, its dev account and the test token.
pub struct DevChain {
    /// The node.
    pub anvil: Anvil,
    /// Its first development account (unlocked, rich).
    pub dev: Address,
    /// The test token's contract.
    pub token: Address,
}

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The test token's creation bytecode from its artifact.
pub fn test_token_bytecode(workspace_root: &Path) -> Result<Vec<u8>, String> {
    let path = workspace_root.join(TEST_TOKEN_ARTIFACT);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let code = v["bytecode"]
        .as_str()
        .ok_or_else(|| format!("{}: no bytecode", path.display()))?;
    hex::decode(code.trim_start_matches("0x")).map_err(|e| format!("{}: {e}", path.display()))
}

impl DevChain {
    /// Starts anvil with `chain_id` (mining a block every `block_time`
    /// seconds, so confirmations accrue) and deploys the test token,
    /// minting its supply to the dev account.
    pub async fn start(
        anvil_binary: &Path,
        workspace_root: &Path,
        chain_id: u64,
        port: Option<u16>,
        block_time: Option<u64>,
    ) -> Result<DevChain, String> {
        let anvil = Anvil::spawn(anvil_binary, chain_id, port, block_time)
            .await
            .map_err(|e| format!("anvil (chain {chain_id}): {e}"))?;
        let rpc = anvil.rpc();
        let dev = *rpc
            .dev_accounts()
            .await
            .map_err(|e| err("eth_accounts")(&e))?
            .first()
            .ok_or("anvil has no development account")?;
        let mut code = test_token_bytecode(workspace_root)?;
        code.extend(evm::test_token_constructor_args(
            "Keyfold Test Token",
            TEST_TOKEN_SYMBOL,
            TEST_TOKEN_DECIMALS,
            dev,
            U256::from(10u64).pow(U256::from(18u64)),
        ));
        let nonce = rpc.nonce(dev, true).await.map_err(|e| err("nonce")(&e))?;
        let hash = rpc
            .send_from_dev(dev, None, U256::ZERO, code)
            .await
            .map_err(|e| err("deploying the test token")(&e))?;
        let receipt = rpc
            .wait_receipt(hash, Duration::from_secs(30))
            .await
            .map_err(|e| err("deploying the test token")(&e))?
            .ok_or("deploying the test token: no receipt within 30 s")?;
        if !receipt.success {
            return Err("deploying the test token reverted".into());
        }
        Ok(DevChain {
            token: dev.create(nonce),
            anvil,
            dev,
        })
    }

    /// An RPC client for it.
    pub fn rpc(&self) -> EvmRpc {
        self.anvil.rpc()
    }

    /// Sends `wei` and `tokens` (test token base units) to `to` from the
    /// dev account, and waits until both are mined.
    pub async fn fund(&self, to: Address, wei: U256, tokens: U256) -> Result<(), String> {
        let rpc = self.rpc();
        let mut hashes = Vec::new();
        if wei > U256::ZERO {
            hashes.push(
                rpc.send_from_dev(self.dev, Some(to), wei, Vec::new())
                    .await
                    .map_err(|e| err("funding")(&e))?,
            );
        }
        if tokens > U256::ZERO {
            hashes.push(
                rpc.send_from_dev(
                    self.dev,
                    Some(self.token),
                    U256::ZERO,
                    evm::erc20_transfer_calldata(to, tokens),
                )
                .await
                .map_err(|e| err("funding tokens")(&e))?,
            );
        }
        for h in hashes {
            let r = rpc
                .wait_receipt(h, Duration::from_secs(30))
                .await
                .map_err(|e| err("funding")(&e))?
                .ok_or_else(|| format!("funding transaction {h}: no receipt within 30 s"))?;
            if !r.success {
                return Err(format!("funding transaction {h} reverted"));
            }
        }
        Ok(())
    }

    /// The test token balance of `owner`.
    pub async fn token_balance(&self, owner: Address) -> Result<U256, String> {
        let ret = self
            .rpc()
            .call(self.token, evm::erc20_balance_of_calldata(owner))
            .await
            .map_err(|e| err("balanceOf")(&e))?;
        evm::decode_uint256_return(&ret).map_err(|e| err("balanceOf")(&e))
    }

    /// A chain registry entry (TOML) for this chain under `id`, with the
    /// test token and `confirmations`.
    pub fn registry_toml(&self, id: &str, name: &str, confirmations: u32) -> String {
        format!(
            "[[chains]]\nid = \"{id}\"\nname = \"{name}\"\nfamily = \"evm\"\nchain_id = {chain_id}\n\
             native_symbol = \"ETH\"\nnative_decimals = 18\nconfirmations = {confirmations}\n\
             rpc_urls = [\"{url}\"]\nmax_fee_per_gas = \"100000000000\"\n\
             max_priority_fee_per_gas = \"2000000000\"\nreplace_after_secs = 30\n\n\
             [[chains.tokens]]\nsymbol = \"{TEST_TOKEN_SYMBOL}\"\ncontract = \"{token}\"\ndecimals = {TEST_TOKEN_DECIMALS}\n\n",
            chain_id = self.anvil.chain_id(),
            url = self.anvil.url(),
            token = self.token.to_checksum(None),
        )
    }
}
