//! The coordinator's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A coordinator configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Node id: the DNS name in the coordinator's certificate.
    pub node_id: String,
    /// REST API address (loopback by default: put a TLS proxy in front to expose it).
    #[serde(default = "default_api")]
    pub api_listen: SocketAddr,
    /// The local address of the coordinator's QUIC endpoint, from which it
    /// connects to the signers (port 0: any free port). Unset: the
    /// unspecified address of the signers' family (`0.0.0.0:0` or `[::]:0`)
    /// when any signer is on another host, else `127.0.0.1:0`.
    #[serde(default)]
    pub quic_listen: Option<SocketAddr>,
    /// Where the coordinator's database lives.
    pub data_dir: PathBuf,
    /// Certificates.
    pub tls: TlsFiles,
    /// The signer nodes.
    pub signers: Vec<SignerEntry>,
    /// The policy document (TOML) enforced from the first start; later
    /// versions arrive as updates signed by the admin quorum (`POST
    /// /v1/policy`) and are kept in the data directory.
    pub policy_file: PathBuf,
    /// The HSM holding cold-tier wallet keys (optional: without it, only hot
    /// threshold wallets exist).
    #[serde(default)]
    pub hsm: Option<keyfold_hsm::HsmConfig>,
    /// A chain registry file (TOML) merged over the built-in registry
    /// (`keyfold_chain::registry`): RPC URLs, fee caps, tokens, local
    /// chains. Without it the built-in chains have no RPC URL, so nothing
    /// is broadcast anywhere.
    #[serde(default)]
    pub chains_file: Option<PathBuf>,
    /// Test-only switches (exist only in builds with the
    /// `test-skip-policy` feature).
    #[cfg(feature = "test-skip-policy")]
    #[serde(default)]
    pub policy: TestPolicySwitches,
    /// BENCH ONLY: switches that turn the guards off to measure what they
    /// cost (exist only in builds with the `bench-unguarded` feature).
    #[cfg(feature = "bench-unguarded")]
    #[serde(default)]
    pub bench: BenchSwitches,
    /// Timeouts and pool sizes.
    #[serde(default)]
    pub tuning: Tuning,
    /// The chain watcher of payment orders.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// Webhook deliveries.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// The treasury's tiers: hot, cold and gas-tank wallets per chain and
    /// asset, and the hot wallet's limits (`docs/settlement.md`).
    #[serde(default)]
    pub treasury: crate::treasury::config::TreasuryConfig,
    /// The risk module (`docs/risk.md`).
    #[serde(default)]
    pub risk: crate::risk::config::RiskConfig,
    /// Scheduled payouts (`[schedules]`).
    #[serde(default)]
    pub schedules: crate::schedules::SchedulesConfig,
}

/// The chain watcher of payment orders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// How often each chain is polled, milliseconds (default 1000).
    pub poll_ms: u64,
    /// Most blocks read per poll (default 100): a watcher far behind
    /// catches up in steps, each committed.
    pub max_blocks_per_poll: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            poll_ms: 1000,
            max_blocks_per_poll: 100,
        }
    }
}

/// Webhook deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Let endpoints resolve to private, loopback or link-local addresses
    /// (default false: such a target is refused, so a merchant cannot make
    /// the coordinator call into its own network). The devnet sets it, for
    /// its local receiver.
    pub allow_private_targets: bool,
    /// Per-attempt timeout, milliseconds (default 5000).
    pub timeout_ms: u64,
    /// Deliveries sent at once (default 32); one slow endpoint holds at most
    /// one of them per due delivery, never the others' turn.
    pub concurrency: usize,
    /// An endpoint is disabled after this many failed attempts in a row ...
    pub disable_after_failures: i64,
    /// ... once the first of them is this many seconds old (default 3
    /// days, the retry schedule's length).
    pub disable_after_secs: i64,
    /// How often the outbox is polled, milliseconds (default 200).
    pub poll_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            timeout_ms: 5000,
            concurrency: 32,
            disable_after_failures: 20,
            disable_after_secs: 3 * 24 * 3600,
            poll_ms: 200,
        }
    }
}

/// BENCH ONLY (feature `bench-unguarded`, never in a deployed build).
#[cfg(feature = "bench-unguarded")]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSwitches {
    /// Allow every request without evaluating the policy, run no module,
    /// and write no audit log (the store then commits with a full fsync,
    /// so durability stays comparable).
    #[serde(default)]
    pub unguarded: bool,
}

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7100))
}

/// TEST ONLY: lets a test run a coordinator that skips its own policy
/// check, to show that the signers still refuse. Not compiled into release
/// builds (the `test-skip-policy` feature is enabled only by tests).
#[cfg(feature = "test-skip-policy")]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPolicySwitches {
    /// Treat every request as allowed at the coordinator.
    #[serde(default)]
    pub skip_for_tests: bool,
    /// Rewrite the recipient of every EVM payout's transaction to this
    /// address before sending it to the signers (the typed request keeps
    /// the real one): a coordinator that tampers, which every honest signer
    /// must refuse.
    #[serde(default)]
    pub tamper_payout_to: Option<String>,
    /// Skip the risk module's own freeze check (a coordinator that ignores
    /// freezes, whose payouts every signer must refuse).
    #[serde(default)]
    pub skip_freezes: bool,
}

/// PEM files of the coordinator's TLS identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster CA certificate.
    pub ca_cert: PathBuf,
    /// The coordinator's certificate.
    pub cert: PathBuf,
    /// The coordinator's private key.
    pub key: PathBuf,
}

/// One signer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerEntry {
    /// Its node id.
    pub node_id: String,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

/// Timeouts and pool sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// Presignatures kept ready per ECDSA key (per signer set).
    pub presignatures: usize,
    /// Status probes: how long a signer may take to answer, milliseconds.
    pub probe_timeout_ms: u64,
    /// Signing and keygen commands, seconds (covers a session whose peer died:
    /// the signers' round deadline fires first).
    pub session_timeout_secs: u64,
    /// Aux-info commands, seconds (includes waiting for safe primes).
    pub aux_timeout_secs: u64,
    /// Quorums tried per signing request before giving up.
    pub attempts: usize,
    /// Seconds between signed checkpoints of the audit log (when it grew).
    pub audit_checkpoint_secs: u64,
    /// Stop taking requests (`503 audit_unavailable`) once the audit log's
    /// entries file holds this many bytes: an operator's guard against
    /// filling the disk (unset: no limit).
    pub audit_max_bytes: Option<u64>,
    /// A request waiting for approvals (or held by a module) expires this
    /// many seconds after it started waiting (default 7 days).
    pub request_expiry_secs: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            presignatures: 8,
            probe_timeout_ms: 1500,
            session_timeout_secs: 60,
            aux_timeout_secs: 1800,
            attempts: 3,
            audit_checkpoint_secs: 5,
            audit_max_bytes: None,
            request_expiry_secs: 7 * 24 * 3600,
        }
    }
}

impl Tuning {
    /// Probe timeout.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.probe_timeout_ms.max(1))
    }
    /// Session timeout.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_secs.max(1))
    }
    /// Aux-info timeout.
    pub fn aux_timeout(&self) -> Duration {
        Duration::from_secs(self.aux_timeout_secs.max(1))
    }
}

impl CoordinatorConfig {
    /// The local address of the QUIC endpoint: [`CoordinatorConfig::quic_listen`],
    /// or a default that can reach every configured signer.
    pub fn quic_bind_addr(&self) -> SocketAddr {
        if let Some(addr) = self.quic_listen {
            return addr;
        }
        if self.signers.iter().all(|s| s.addr.ip().is_loopback()) {
            return SocketAddr::from(([127, 0, 0, 1], 0));
        }
        if self.signers.iter().any(|s| s.addr.is_ipv6()) {
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("configuration {}: {e}", path.display()))?;
        let cfg: Self =
            toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))?;
        if cfg.signers.is_empty() {
            return Err(format!("configuration {}: no signers", path.display()));
        }
        Ok(cfg)
    }
}
