//! `keyfold`: the command-line entry point.
#![forbid(unsafe_code)]

mod allocation;
mod audit;
mod backup;
mod ca;
mod demo;
mod devnet;
mod devnet_chains;
mod devnet_orders;
mod devnet_programmable;
mod devnet_risk;
mod devnet_treasury;
mod http;
mod merchant;
mod officer;
mod output;
mod policy_rollout;
mod policy_shadow;
mod prime_dir;
mod reconcile;
mod review;
mod risk;
mod softhsm;
mod treasury;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keyfold: threshold-signing custody engine.
#[derive(Parser)]
#[command(name = "keyfold", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a local cluster (3 signer processes and a coordinator on loopback),
    /// creates 2-of-3 secp256k1 and Ed25519 keys, signs with each and serves
    /// the API until interrupted.
    Devnet {
        /// Keeps certificates, stores and logs here; a second run reuses them.
        #[arg(long, default_value = "keyfold-devnet")]
        data_dir: PathBuf,
        /// Exits after signing instead of serving.
        #[arg(long)]
        once: bool,
        /// Writes the keys and signatures as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// API port; the signers listen on the next three ports.
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// Policy document (TOML) for the signers and the coordinator; the
        /// built-in devnet policy when absent.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// An approver key the devnet approves its treasury's
        /// replenishments with (twice for two officers); default: the
        /// officers of its own policy.
        #[arg(long = "officer")]
        officers: Vec<PathBuf>,
        /// TEST-ONLY: directory of safe-prime files (signer-N.primes) loaded
        /// into the signers' pools before they start.
        #[arg(long, hide = true)]
        seed_primes: Option<PathBuf>,
        /// BENCH ONLY: no policy check, no modules, no audit log (to measure
        /// what they cost; builds with the `bench-unguarded` feature).
        #[cfg(feature = "bench-unguarded")]
        #[arg(long)]
        unguarded: bool,
    },
    /// Runs every protocol in one process (no network): 2-of-3 keys on both
    /// curves, signed and verified.
    Demo {
        /// Keeps safe primes and aux info here, so a second run skips the slow
        /// set-up (about a minute on a 2-core machine).
        #[arg(long, default_value = "keyfold-demo")]
        data_dir: PathBuf,
        /// The message to sign.
        #[arg(long, default_value = "Keyfold demo: pay 1.5 BTC to bc1q-merchant")]
        message: String,
        /// Also writes the public keys and signatures as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Runs a signer node.
    Signer {
        /// Its TOML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Instead of running: load a safe-prime pair (a keyfold-mpc
        /// container, e.g. made on another machine) into the node's pool,
        /// sealed by its configured backend, and exit.
        #[arg(long)]
        import_primes: Option<PathBuf>,
    },
    /// Runs the coordinator (REST API and orchestration).
    Coordinator {
        /// Its TOML configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Manages the cluster's private certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCmd,
    },
    /// Merchants (tenants of the API) and their API keys.
    Merchant {
        #[command(subcommand)]
        command: merchant::MerchantCmd,
    },
    /// Manages API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Treasury officers' keys.
    Approver {
        #[command(subcommand)]
        command: ApproverCmd,
    },
    /// A merchant's reconciliation report for a period: orders' deposits,
    /// payouts and outflows against the chain (exit status 3 when any line
    /// differs).
    Reconcile {
        /// The merchant (with an operator token; a merchant key is its own).
        #[arg(long)]
        merchant: Option<String>,
        /// Period start, Unix seconds.
        #[arg(long)]
        from: i64,
        /// Period end (exclusive), Unix seconds (default: now).
        #[arg(long)]
        to: Option<i64>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        /// Write the report here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The treasury and the settlement ledger: tiers with ledger and chain
    /// balances, balances, the journal (and its offline check), merchant
    /// settlement runs and reports, and the daily-limit policy rules.
    Treasury {
        #[command(subcommand)]
        command: treasury::TreasuryCmd,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Requests waiting for approvals or a time lock.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCmd,
    },
    /// Approves a request with an approver key.
    Approve(DecideArgs),
    /// Rejects a request (vetoes it, or cancels its time lock).
    Reject(DecideArgs),
    /// Policy documents: check, sign (admins), push (signed updates),
    /// shadow (a future version evaluated beside the one in force).
    Policy {
        #[command(subcommand)]
        command: PolicyCmd,
    },
    /// Payouts the risk engine holds for review: list, approve, reject,
    /// escalate (officers, with their own keys).
    Review {
        #[command(subcommand)]
        command: review::ReviewCmd,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Freezes of customers, devices, wallets and merchants: list, add,
    /// lift (two officers).
    Freeze {
        #[command(subcommand)]
        command: review::FreezeCmd,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Risk decision trees: check one, print the default.
    Risk {
        #[command(subcommand)]
        command: risk::RiskCmd,
    },
    /// Token allocation plans: check one, print its groups and
    /// beneficiaries, draw its release chart.
    Allocation {
        #[command(subcommand)]
        command: allocation::AllocationCmd,
    },
    /// Offline recovery of a signer's key shares: recovery key, encrypted
    /// export, inspection and restore on a fresh node (see
    /// docs/runbooks/recovery.md).
    Backup {
        #[command(subcommand)]
        command: backup::BackupCmd,
    },
    /// Audit logs: export them, verify them offline, cross-check the
    /// signers' logs against the coordinator's (see docs/audit-log.md).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCmd,
    },
    /// The coordinator's HSM.
    Hsm {
        #[command(subcommand)]
        command: HsmCmd,
    },
}

#[derive(Subcommand)]
enum HsmCmd {
    /// Prints the public key (hex) of the Ed25519 audit key in the
    /// coordinator's HSM, creating the key on first use: auditors verify
    /// the signing log's checkpoints with it.
    AuditKey {
        /// The coordinator's configuration (its `[hsm]` section).
        #[arg(long)]
        config: PathBuf,
        /// The key's label on the token.
        #[arg(long, default_value = keyfold_hsm::DEFAULT_AUDIT_KEY_LABEL)]
        label: String,
    },
}

/// Where the coordinator's API is.
#[derive(clap::Args)]
struct ApiArgs {
    /// The coordinator's API.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7100")]
    api: String,
    /// File holding the API token (else the KEYFOLD_TOKEN variable).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn target(self) -> officer::ApiTarget {
        officer::ApiTarget {
            url: self.api,
            token_file: self.token_file,
        }
    }
}

#[derive(clap::Args)]
struct DecideArgs {
    /// The request id.
    request: String,
    /// The approver's key file (from `keyfold approver keygen`).
    #[arg(long)]
    key: PathBuf,
    /// How long the approval stays valid, seconds.
    #[arg(long, default_value_t = 3600)]
    valid_secs: u64,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Subcommand)]
enum ApproverCmd {
    /// Creates an Ed25519 approver key (seed file, mode 0600) and prints its
    /// public key for the policy's groups.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum ApprovalsCmd {
    /// Lists requests (default: those waiting for approvals or a time lock).
    List {
        /// Comma-separated states: pending_approval, time_locked, approved,
        /// denied, signed, failed.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Validates a policy document and prints each rule in plain words.
    Check {
        /// The TOML document.
        file: PathBuf,
    },
    /// Signs a policy document with an admin key; prints the signature JSON.
    Sign {
        /// The TOML document.
        file: PathBuf,
        /// The admin's key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Submits a document with its admin signatures to the coordinator,
    /// which verifies them and pushes the update to every signer.
    Push {
        /// The TOML document.
        file: PathBuf,
        /// Admin signature files (from `keyfold policy sign`).
        #[arg(long = "signature", required = true)]
        signatures: Vec<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Installs a signed future version in shadow: evaluated beside the
    /// version in force on every request, deciding nothing.
    Shadow(policy_shadow::InstallArgs),
    /// The shadow's report: requests evaluated, and those it would have
    /// decided otherwise.
    ShadowReport(policy_shadow::ReportArgs),
    /// Removes the shadow; prints its last report.
    ShadowRemove(policy_shadow::RemoveArgs),
    /// Writes a version that enforces the next version for a whitelist
    /// (merchants, wallets, a share of request ids) and the version in
    /// force for every other request; sign and push it as any update.
    Rollout(policy_rollout::RolloutArgs),
}

#[derive(Subcommand)]
enum CaCmd {
    /// Creates a CA (ca.pem, ca.key) in DIR.
    Init {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "keyfold CA")]
        name: String,
    },
    /// Issues a certificate (NODE.pem, NODE.key in DIR) for a node.
    Issue {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// Node id (a DNS label such as signer-1).
        #[arg(long)]
        node: String,
        /// signer or coordinator.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Issues an API token and prints it once; only its hash is stored.
    /// The coordinator records the issue in its audit log.
    Issue {
        /// The coordinator's data directory (its `data_dir`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Client name (shows in logs and in the audit trail).
        #[arg(long)]
        name: String,
        /// Create the coordinator's store if the directory has none (a new
        /// deployment, before its first start). Without it a wrong
        /// directory is an error, not a new empty store.
        #[arg(long)]
        init: bool,
    },
    /// Revokes every token of a client (the coordinator refuses it at once
    /// and records the revocation in its audit log).
    Revoke {
        /// The coordinator's data directory (its `data_dir`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
    },
}

/// Creates a file readable by its owner only; refuses to overwrite.
pub(crate) fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Opens the coordinator's store in `data_dir`; creates it only with
/// `init` (a mistyped directory must not silently become a new store whose
/// tokens the running coordinator never sees).
fn open_coordinator_store(
    data_dir: &Path,
    init: bool,
) -> Result<keyfold_store::coordinator::CoordinatorStore, String> {
    if !keyfold_coordinator::bootstrap::has_store(data_dir) {
        if !init {
            return Err(format!(
                "{} holds no coordinator store (coordinator.db): give the coordinator's data_dir, or --init to create the store of a new deployment",
                data_dir.display()
            ));
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    }
    keyfold_store::coordinator::CoordinatorStore::open(data_dir.join("coordinator.db"))
        .map_err(|e| format!("coordinator store in {}: {e}", data_dir.display()))
}

fn dispatch(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Demo {
            data_dir,
            message,
            out,
        } => demo::run(&data_dir, message.as_bytes(), out.as_deref()).map_err(|e| e.to_string()),
        Cmd::Devnet {
            data_dir,
            once,
            out,
            base_port,
            policy,
            officers,
            seed_primes,
            #[cfg(feature = "bench-unguarded")]
            unguarded,
        } => runtime()?.block_on(devnet::run(devnet::Options {
            data_dir,
            once,
            out,
            base_port,
            policy,
            officers,
            seed_primes,
            #[cfg(feature = "bench-unguarded")]
            unguarded,
            #[cfg(not(feature = "bench-unguarded"))]
            unguarded: false,
        })),
        Cmd::Signer {
            config,
            import_primes: Some(file),
        } => {
            let cfg = keyfold_signer::SignerConfig::load(&config).map_err(|e| e.to_string())?;
            let n = keyfold_signer::import_primes(&cfg, &file).map_err(|e| e.to_string())?;
            println!("{}: safe-prime pair imported ({n} ready)", cfg.node_id);
            Ok(())
        }
        Cmd::Signer {
            config,
            import_primes: None,
        } => {
            let cfg = keyfold_signer::SignerConfig::load(&config).map_err(|e| e.to_string())?;
            runtime()?
                .block_on(keyfold_signer::run(cfg, ctrl_c()))
                .map_err(|e| e.to_string())
        }
        Cmd::Coordinator { config } => {
            let cfg = keyfold_coordinator::CoordinatorConfig::load(&config)?;
            runtime()?.block_on(keyfold_coordinator::run(cfg, ctrl_c()))
        }
        Cmd::Ca { command } => match command {
            CaCmd::Init { dir, name } => {
                ca::init(&dir, &name)?;
                println!("CA ready in {}", dir.display());
                Ok(())
            }
            CaCmd::Issue { dir, node, role } => {
                let role: keyfold_net::Role =
                    role.parse().map_err(|e| format!("--role {role:?}: {e}"))?;
                let ca = ca::load(&dir)?;
                let files = ca::issue(&dir, &ca, &node, role)?;
                println!(
                    "issued {} and {}",
                    files.cert.display(),
                    files.key.display()
                );
                Ok(())
            }
        },
        Cmd::Approver {
            command: ApproverCmd::Keygen { out },
        } => {
            let public = officer::keygen(&out)?;
            println!("{public}");
            eprintln!(
                "approver key written to {} (keep it private); put the public key above in the policy's groups",
                out.display()
            );
            Ok(())
        }
        Cmd::Reconcile {
            merchant,
            from,
            to,
            csv,
            out,
            api,
        } => {
            let to = to.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
                    + 1
            });
            let differences = runtime()?.block_on(reconcile::run(reconcile::Request {
                target: api.target(),
                merchant,
                from,
                to,
                csv,
                out,
            }))?;
            if differences > 0 {
                std::process::exit(3);
            }
            Ok(())
        }
        Cmd::Approvals {
            command: ApprovalsCmd::List { state, api },
        } => {
            let lines = runtime()?.block_on(officer::list(&api.target(), state.as_deref()))?;
            if lines.is_empty() {
                println!("no requests");
            }
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        Cmd::Approve(a) => decide(a, keyfold_policy::ApprovalDecision::Approve),
        Cmd::Reject(a) => decide(a, keyfold_policy::ApprovalDecision::Reject),
        Cmd::Policy { command } => match command {
            PolicyCmd::Check { file } => {
                for l in officer::check(&file)? {
                    println!("{l}");
                }
                Ok(())
            }
            PolicyCmd::Sign { file, key } => {
                println!("{}", officer::sign_policy(&file, &key)?);
                Ok(())
            }
            PolicyCmd::Push {
                file,
                signatures,
                api,
            } => {
                let msg =
                    runtime()?.block_on(officer::push_policy(&api.target(), &file, &signatures))?;
                println!("{msg}");
                Ok(())
            }
            PolicyCmd::Shadow(args) => {
                println!("{}", runtime()?.block_on(policy_shadow::install(args))?);
                Ok(())
            }
            PolicyCmd::ShadowReport(args) => {
                println!("{}", runtime()?.block_on(policy_shadow::report(args))?);
                Ok(())
            }
            PolicyCmd::ShadowRemove(args) => {
                println!("{}", runtime()?.block_on(policy_shadow::remove(args))?);
                Ok(())
            }
            PolicyCmd::Rollout(args) => policy_rollout::run(args),
        },
        Cmd::Risk { command } => risk::run(command),
        Cmd::Allocation { command } => allocation::run(command),
        Cmd::Review { command, api } => {
            for l in runtime()?.block_on(review::run_review(command, api.target()))? {
                println!("{l}");
            }
            Ok(())
        }
        Cmd::Freeze { command, api } => {
            for l in runtime()?.block_on(review::run_freeze(command, api.target()))? {
                println!("{l}");
            }
            Ok(())
        }
        Cmd::Merchant { command } => merchant::run(command),
        Cmd::Treasury { command, api } => {
            let code = runtime()?.block_on(treasury::run(command, api.target()))?;
            if code != 0 {
                std::process::exit(i32::from(code));
            }
            Ok(())
        }
        Cmd::Token { command } => match command {
            TokenCmd::Issue {
                data_dir,
                name,
                init,
            } => {
                let store = open_coordinator_store(&data_dir, init)?;
                let token = store
                    .issue_token(&name)
                    .map_err(|e| format!("cannot issue a token: {e}"))?;
                println!("{}", token.as_str());
                eprintln!("token for {name:?} issued; it is shown once and stored only as a hash");
                Ok(())
            }
            TokenCmd::Revoke { data_dir, name } => {
                let store = open_coordinator_store(&data_dir, false)?;
                store
                    .revoke_token(&name)
                    .map_err(|e| format!("cannot revoke: {e}"))?;
                println!("tokens of {name:?} revoked");
                Ok(())
            }
        },
        Cmd::Backup { command } => backup::run(command),
        Cmd::Audit { command } => audit::run(command),
        Cmd::Hsm {
            command: HsmCmd::AuditKey { config, label },
        } => {
            let cfg = keyfold_coordinator::CoordinatorConfig::load(&config)?;
            let hsm_cfg = cfg.hsm.ok_or_else(|| {
                format!(
                    "{} has no [hsm] section: the audit key lives in the coordinator's HSM",
                    config.display()
                )
            })?;
            let hsm = keyfold_hsm::Hsm::open(&hsm_cfg).map_err(|e| e.to_string())?;
            let key = keyfold_hsm::HsmAuditSigner::open_or_create(&hsm, &label)
                .map_err(|e| e.to_string())?;
            println!("{}", key.public_key_hex());
            eprintln!(
                "audit key `{label}` on token `{}`: publish this public key to auditors",
                hsm_cfg.token_label
            );
            Ok(())
        }
    }
}

fn decide(a: DecideArgs, decision: keyfold_policy::ApprovalDecision) -> Result<(), String> {
    let msg = runtime()?.block_on(officer::decide(
        &a.api.target(),
        &a.request,
        &a.key,
        decision,
        a.valid_secs,
    ))?;
    println!("{msg}");
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // round_based warns about late duplicates that the in-process
                // network delivers (a party's own broadcasts); not actionable.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,round_based=error")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyfold: {e}");
            ExitCode::FAILURE
        }
    }
}
