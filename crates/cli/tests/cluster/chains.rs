//! The cluster's chains: two anvils on the ports `keyfold devnet` used
//! (fresh chains: the devnet's stopped with it; the test token lands at the
//! same address), the hot wallet funded on both, and a JSON-RPC proxy in
//! front of the L1 that a test can make refuse `eth_sendRawTransaction`
//! (an RPC down at broadcast, nothing else). A third anvil is registered
//! as a sandbox chain (`sandbox = true`), where only merchants' sandbox
//! keys pay.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use alloy_primitives::{Address, U256};
use keyfold_coordinator::chain_rpc::devchain::DevChain;
use keyfold_coordinator::chain_rpc::EvmRpc;

/// L2 confirmations in the cluster: enough blocks (a second each) for a
/// test to reorg a payout out of the chain before it completes.
pub const L2_CONFIRMATIONS: u32 = 8;

/// The SPL token the cluster's Solana chain accepts (USDC's devnet mint).
pub const SPL_MINT: &str = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";

/// Seconds after which the L2 replaces a stuck payout transaction.
pub const L2_REPLACE_AFTER_SECS: u64 = 5;

/// The registry id of the sandbox chain, and its EIP-155 chain id.
pub const SANDBOX_CHAIN: &str = "devnet-sandbox";
pub const SANDBOX_CHAIN_ID: u64 = 31339;

/// The chains and the proxy.
pub struct Chains {
    pub l1: DevChain,
    pub l2: DevChain,
    /// A chain marked `sandbox = true` in the registry.
    pub sandbox: DevChain,
    /// While true, the L1 proxy answers `eth_sendRawTransaction` with 503.
    pub refuse_broadcast: Arc<AtomicBool>,
    /// While true, the L1 proxy answers every call with 503 (the RPC is down).
    pub refuse_all: Arc<AtomicBool>,
    /// The coordinator's chain registry file, as this fixture wrote it.
    pub registry: String,
}

impl Chains {
    /// An RPC client straight to the L1 (not through the proxy).
    pub fn l1_rpc(&self) -> EvmRpc {
        self.l1.rpc()
    }

    pub fn l2_rpc(&self) -> EvmRpc {
        self.l2.rpc()
    }

    /// Both chains mining a block a second again (a test that stopped the
    /// L2's mining may have failed before it restarted it).
    pub async fn resume_mining(&self) {
        for rpc in [self.l1.rpc(), self.l2.rpc(), self.sandbox.rpc()] {
            rpc.set_interval_mining(1)
                .await
                .expect("anvil answers evm_setIntervalMining");
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

/// Starts both chains on `port + 30` and `port + 31` (the sandbox chain on
/// `port + 32`), funds `wallet`, starts the proxy, and writes the
/// coordinator's chain registry file.
pub async fn start(dir: &Path, port: u16, wallet: Address) -> Chains {
    let root = workspace_root();
    let anvil = keyfold_coordinator::chain_rpc::find_anvil(Some(&root))
        .expect("anvil is not installed: run ./testnets/ensure-deps.sh");
    let l1 = DevChain::start(&anvil, &root, 31337, Some(port + 30), Some(1))
        .await
        .expect("the L1 anvil");
    let l2 = DevChain::start(&anvil, &root, 31338, Some(port + 31), Some(1))
        .await
        .expect("the L2 anvil");
    let sandbox = DevChain::start(&anvil, &root, SANDBOX_CHAIN_ID, Some(port + 32), Some(1))
        .await
        .expect("the sandbox anvil");
    let ether = U256::from(10u64).pow(U256::from(18u64));
    for c in [&l1, &l2] {
        c.fund(
            wallet,
            U256::from(100u64) * ether,
            U256::from(10_000_000_000u64),
        )
        .await
        .expect("funding the hot wallet");
    }
    let refuse = Arc::new(AtomicBool::new(false));
    let refuse_all = Arc::new(AtomicBool::new(false));
    let proxy = start_proxy(
        l1.anvil.url().to_string(),
        refuse.clone(),
        refuse_all.clone(),
    );
    let mut toml = l1.registry_toml("devnet-l1", "Devnet L1", 2);
    toml = toml.replace(l1.anvil.url(), &format!("http://{proxy}"));
    // The L2 replaces a transaction stuck for a few seconds (a test stops
    // its mining); its blocks come every second, so nothing else waits
    // that long in its mempool.
    toml.push_str(
        &l2.registry_toml("devnet-l2", "Devnet L2", L2_CONFIRMATIONS)
            .replace(
                "replace_after_secs = 30",
                &format!("replace_after_secs = {L2_REPLACE_AFTER_SECS}"),
            ),
    );
    // The sandbox chain: only merchants' sandbox keys pay on it.
    toml.push_str(
        &sandbox
            .registry_toml(SANDBOX_CHAIN, "Devnet sandbox", 2)
            .replace(
                "replace_after_secs = 30\n",
                "replace_after_secs = 30\nsandbox = true\n",
            ),
    );
    // Solana with an SPL token (Keyfold signs Solana payouts and returns
    // them; nothing is sent, so the mint need not exist anywhere).
    toml.push_str(&format!(
        "[[chains]]\nid = \"solana-devnet\"\nname = \"Solana devnet (local)\"\nfamily = \"solana\"\n\
         native_symbol = \"SOL\"\nnative_decimals = 9\nconfirmations = 2\n\n\
         [[chains.tokens]]\nsymbol = \"USDC\"\ncontract = \"{SPL_MINT}\"\ndecimals = 6\n\n"
    ));
    std::fs::write(dir.join("config").join("chains.toml"), &toml).unwrap();
    Chains {
        registry: toml,
        l1,
        l2,
        sandbox,
        refuse_broadcast: refuse,
        refuse_all,
    }
}

/// A JSON-RPC proxy on its own thread and runtime (it outlives every
/// test's runtime).
fn start_proxy(
    upstream: String,
    refuse: Arc<AtomicBool>,
    refuse_all: Arc<AtomicBool>,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let client = reqwest::Client::new();
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(move |body: String| {
                    let (client, upstream, refuse, refuse_all) = (
                        client.clone(),
                        upstream.clone(),
                        refuse.clone(),
                        refuse_all.clone(),
                    );
                    async move {
                        if refuse_all.load(Ordering::SeqCst)
                            || (refuse.load(Ordering::SeqCst)
                                && body.contains("eth_sendRawTransaction"))
                        {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        match client
                            .post(&upstream)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                        {
                            Ok(r) => (
                                axum::http::StatusCode::OK,
                                r.text().await.unwrap_or_default(),
                            ),
                            Err(_) => (axum::http::StatusCode::BAD_GATEWAY, String::new()),
                        }
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().expect("the proxy's address")
}
