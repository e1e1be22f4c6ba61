//! A local anvil (Foundry's EVM dev node) as a child process, for
//! `keyfold devnet` and the tests, and the anvil-only JSON-RPC methods
//! (dev accounts, mining, snapshots, reorgs) as [`EvmRpc`] methods.
//!
//! An [`Anvil`] is killed and reaped when dropped or [`Anvil::stop`]ped. So
//! that it also dies when this process dies without running destructors (a
//! `static`, a panic in another thread that aborts, a SIGKILL), each anvil
//! gets a watchdog: a `sh` loop that polls every second whether this process
//! is still alive and `kill -9`s anvil once it is not (no `prctl`). Without
//! `sh` on PATH the watchdog is skipped with a warning, and only `Drop`
//! kills anvil.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U256};
use serde_json::{json, Value};

use super::evm::{quantity, EvmRpc};
use super::RpcError;

/// Environment variable naming the anvil binary to use.
pub const ANVIL_ENV: &str = "KEYFOLD_ANVIL";
/// Where `testnets/ensure-deps.sh` installs anvil, under the workspace root.
pub const ANVIL_TOOLS_PATH: &str = "testnets/.tools/bin/anvil";
/// How long [`Anvil::spawn`] waits for anvil to answer `eth_chainId`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many of anvil's last stderr lines errors quote.
const STDERR_TAIL_LINES: usize = 40;

/// The anvil binary to run: `$KEYFOLD_ANVIL` if set (whether or not it
/// exists, so that a wrong setting fails loudly), else
/// `<workspace_root>/testnets/.tools/.../anvil` if it exists, else `anvil` on
/// `PATH`; `None` if there is none.
pub fn find_anvil(workspace_root: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ANVIL_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(root) = workspace_root {
        let p = root.join(ANVIL_TOOLS_PATH);
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("anvil"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why an anvil could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnvilError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot pick a free loopback port: {0}")]
    Port(std::io::Error),
    /// The port asked for is taken by another process.
    #[error("loopback port {port} is taken: {source}")]
    PortTaken {
        /// The port.
        port: u16,
        /// What binding it said.
        source: std::io::Error,
    },
    #[error("anvil exited before answering ({status}); stderr: {stderr}")]
    Exited { status: String, stderr: String },
    #[error("anvil did not answer eth_chainId within {waited:?}: {last}; stderr: {stderr}")]
    NotReady {
        waited: Duration,
        last: String,
        stderr: String,
    },
    #[error("anvil answered chain id {got}, expected {expected}")]
    WrongChainId { expected: u64, got: u64 },
}

/// A running anvil on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Option<Child>,
    watchdog: Option<Child>,
    url: String,
    port: u16,
    chain_id: u64,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

fn free_port() -> Result<u16, AnvilError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(AnvilError::Port)?;
    Ok(l.local_addr().map_err(AnvilError::Port)?.port())
}

impl Anvil {
    /// Starts `binary` as `anvil --host 127.0.0.1 --port P --chain-id
    /// CHAIN_ID --silent [--block-time T]` and waits (at most
    /// [`READY_TIMEOUT`]) until it answers `eth_chainId` with `chain_id`.
    /// `port: None` picks a free loopback port (retried on a new port
    /// if another process took it meanwhile); `block_time: None` mines a
    /// block per transaction (automine).
    pub async fn spawn(
        binary: &Path,
        chain_id: u64,
        port: Option<u16>,
        block_time: Option<u64>,
    ) -> Result<Anvil, AnvilError> {
        // A picked port may be taken (by a parallel test's anvil or node)
        // before the check or anvil binds it: five picks.
        let mut attempt = 1;
        loop {
            let p = match port {
                Some(p) => p,
                None => free_port()?,
            };
            match Self::spawn_on(binary, chain_id, p, block_time).await {
                Ok(a) => return Ok(a),
                // The port was taken between picking and binding.
                Err(AnvilError::Exited { .. } | AnvilError::PortTaken { .. })
                    if port.is_none() && attempt < 5 =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn spawn_on(
        binary: &Path,
        chain_id: u64,
        port: u16,
        block_time: Option<u64>,
    ) -> Result<Anvil, AnvilError> {
        // A port someone else listens on would answer the readiness probe
        // before the new anvil fails to bind it: refuse it up front.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|source| AnvilError::PortTaken { port, source })?;
        let mut cmd = Command::new(binary);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--chain-id", &chain_id.to_string(), "--silent"]);
        if let Some(t) = block_time {
            cmd.args(["--block-time", &t.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| AnvilError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == STDERR_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        let watchdog = spawn_watchdog(child.id());
        // From here on, dropping `anvil` kills the child.
        let mut anvil = Anvil {
            child: Some(child),
            watchdog,
            url: format!("http://127.0.0.1:{port}"),
            port,
            chain_id,
            stderr,
        };
        anvil.wait_ready().await?;
        // And it is this anvil that answered, not another that took the port.
        if let Some(Ok(Some(status))) = anvil.child.as_mut().map(|c| c.try_wait()) {
            return Err(AnvilError::Exited {
                status: status.to_string(),
                stderr: anvil.stderr_tail(),
            });
        }
        tracing::info!(port, chain_id, "anvil started");
        Ok(anvil)
    }

    async fn wait_ready(&mut self) -> Result<(), AnvilError> {
        let start = Instant::now();
        let rpc = EvmRpc::new(vec![self.url.clone()], Duration::from_secs(1))
            .expect("a loopback URL parses");
        let mut last: String;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Err(AnvilError::Exited {
                    status: status.to_string(),
                    stderr: self.stderr_tail(),
                });
            }
            match rpc.chain_id().await {
                Ok(id) if id == self.chain_id => return Ok(()),
                Ok(got) => {
                    return Err(AnvilError::WrongChainId {
                        expected: self.chain_id,
                        got,
                    })
                }
                Err(e) => last = e.to_string(),
            }
            if start.elapsed() >= READY_TIMEOUT {
                return Err(AnvilError::NotReady {
                    waited: start.elapsed(),
                    last,
                    stderr: self.stderr_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// anvil's process id (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A new client of this anvil (one per tokio runtime: see [`EvmRpc`]).
    pub fn rpc(&self) -> EvmRpc {
        EvmRpc::new(vec![self.url.clone()], Duration::from_secs(10)).expect("a loopback URL parses")
    }

    /// The last lines anvil wrote to stderr, joined.
    pub fn stderr_tail(&self) -> String {
        let t = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Kills anvil and waits for it to exit.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        for mut c in [self.child.take(), self.watchdog.take()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `sh` loop that `kill -9`s `pid` once this process is gone (and ends
/// by itself once `pid` is). [`Anvil`] kills it when it stops anvil, so it
/// never outlives anvil to kill a reused pid.
fn spawn_watchdog(pid: u32) -> Option<Child> {
    let script = "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; \
                  do sleep 1; done; kill -9 \"$2\" 2>/dev/null";
    match Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "no watchdog for anvil: it survives this process if killed");
            None
        }
    }
}

/// Anvil-only methods (anvil's `anvil_*`/`evm_*` namespace, and
/// `eth_sendTransaction` from its unlocked dev accounts). Real nodes refuse
/// them.
impl EvmRpc {
    /// `eth_accounts`: anvil's unlocked dev accounts.
    pub async fn dev_accounts(&self) -> Result<Vec<Address>, RpcError> {
        self.raw_request("eth_accounts", json!([])).await
    }

    /// `anvil_setBalance`.
    pub async fn set_balance(&self, address: Address, wei: U256) -> Result<(), RpcError> {
        self.raw_request::<Value>("anvil_setBalance", json!([address, wei]))
            .await
            .map(drop)
    }

    /// `anvil_mine`: mines `blocks` blocks (with the pending transactions).
    pub async fn mine(&self, blocks: u64) -> Result<(), RpcError> {
        self.raw_request::<Value>("anvil_mine", json!([quantity(blocks)]))
            .await
            .map(drop)
    }

    /// `evm_setAutomine`: whether each transaction is mined at once.
    pub async fn set_automine(&self, on: bool) -> Result<(), RpcError> {
        self.raw_request::<Value>("evm_setAutomine", json!([on]))
            .await
            .map(drop)
    }

    /// `evm_setIntervalMining`: a block every `secs` seconds; 0 stops
    /// mining (transactions wait in the mempool).
    pub async fn set_interval_mining(&self, secs: u64) -> Result<(), RpcError> {
        self.raw_request::<Value>("evm_setIntervalMining", json!([secs]))
            .await
            .map(drop)
    }

    /// `anvil_impersonateAccount`: `eth_sendTransaction` from `address`
    /// works without its key (a test's "someone else holds the key").
    pub async fn impersonate(&self, address: Address) -> Result<(), RpcError> {
        self.raw_request::<Value>("anvil_impersonateAccount", json!([address]))
            .await
            .map(drop)
    }

    /// `anvil_stopImpersonatingAccount`.
    pub async fn stop_impersonating(&self, address: Address) -> Result<(), RpcError> {
        self.raw_request::<Value>("anvil_stopImpersonatingAccount", json!([address]))
            .await
            .map(drop)
    }

    /// `evm_snapshot`: an id for [`EvmRpc::revert`].
    pub async fn snapshot(&self) -> Result<U256, RpcError> {
        self.raw_request("evm_snapshot", json!([])).await
    }

    /// `evm_revert` to a snapshot: whether it existed.
    pub async fn revert(&self, id: U256) -> Result<bool, RpcError> {
        self.raw_request("evm_revert", json!([id])).await
    }

    /// `anvil_reorg` of `depth` blocks with no transaction put into the
    /// replacement blocks (see the tests for what happens to the
    /// transactions of the replaced blocks).
    pub async fn reorg(&self, depth: u64) -> Result<(), RpcError> {
        self.raw_request::<Value>("anvil_reorg", json!([depth, []]))
            .await
            .map(drop)
    }

    /// `anvil_dropTransaction`: removes a pending transaction from the
    /// pool; whether there was one.
    pub async fn drop_transaction(&self, hash: B256) -> Result<bool, RpcError> {
        let dropped: Option<B256> = self
            .raw_request("anvil_dropTransaction", json!([hash]))
            .await?;
        Ok(dropped.is_some())
    }

    /// `eth_sendTransaction` from the unlocked dev account `from`; `to:
    /// None` deploys `data` as init code. The transaction's hash.
    pub async fn send_from_dev(
        &self,
        from: Address,
        to: Option<Address>,
        value: U256,
        data: Vec<u8>,
    ) -> Result<B256, RpcError> {
        let mut tx = json!({"from": from, "value": value, "data": Bytes::from(data)});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        self.raw_request("eth_sendTransaction", json!([tx])).await
    }
}
