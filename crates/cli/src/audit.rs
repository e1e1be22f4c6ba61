//! `keyfold audit`: export the nodes' audit logs, verify them offline, and
//! cross-check the signers' logs against the coordinator's.
//!
//! The work is done by [`keyfold_audit::bundle`]; this module parses
//! arguments and prints results. `verify` and `cross-check` exit non-zero on
//! the first problem, naming the log, the entry and the reason.

use std::path::PathBuf;

use clap::Subcommand;
use keyfold_audit::bundle::{self, KEYS_FILE};
use keyfold_audit::SignedCheckpoint;

/// `keyfold audit` subcommands.
#[derive(Subcommand)]
pub(crate) enum AuditCmd {
    /// Copies every audit log under a data directory (a devnet's, with one
    /// directory per node, or one node's) to a bundle directory, with the
    /// checkpoint public keys the nodes published (keys.json).
    Export {
        /// The devnet's or a node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The bundle directory to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replays every log of a bundle offline: chain, Merkle tree, checkpoint
    /// signatures, inclusion of every entry, approval signatures, a fresh
    /// policy re-evaluation of every decision, every signature against its
    /// wallet key. Exits non-zero naming the first bad entry.
    Verify {
        /// The bundle directory (from `keyfold audit export`).
        dir: PathBuf,
        /// Trusted checkpoint keys (JSON: log id -> hex Ed25519 key).
        /// Default: the bundle's keys.json, as the nodes published them;
        /// pass the keys you obtained out of band to not trust the bundle.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// A checkpoint you kept from an earlier export (one line of a
        /// checkpoints.jsonl): proves the log was only appended to since.
        #[arg(long)]
        kept: Option<PathBuf>,
    },
    /// Reports every contribution in a signer's log that the coordinator's
    /// log lacks (no such request, another request, no matching session).
    CrossCheck {
        /// The bundle directory.
        dir: PathBuf,
        /// Trusted checkpoint keys (default: the bundle's keys.json).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Log id of the coordinator's log.
        #[arg(long, default_value = "coordinator")]
        coordinator: String,
    },
}

fn read_kept(path: &PathBuf) -> Result<SignedCheckpoint, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| format!("{}: empty", path.display()))?;
    serde_json::from_str(line)
        .map_err(|e| format!("{}: not a signed checkpoint: {e}", path.display()))
}

/// Verifies every log of the bundle; returns the ids of those that verified.
fn verify_all(
    dir: &std::path::Path,
    keys: Option<PathBuf>,
    kept: Option<&SignedCheckpoint>,
) -> Result<Vec<String>, String> {
    let keys_path = keys.unwrap_or_else(|| dir.join(KEYS_FILE));
    let keys = bundle::read_keys(&keys_path).map_err(|e| e.to_string())?;
    let logs = bundle::bundle_logs(dir).map_err(|e| e.to_string())?;
    if let Some(k) = kept {
        if !logs.contains(&k.checkpoint.log_id) {
            return Err(format!(
                "the kept checkpoint is for log {}, which the bundle does not hold",
                k.checkpoint.log_id
            ));
        }
    }
    let mut failed = Vec::new();
    for log in &logs {
        let Some(key) = keys.get(log) else {
            failed.push(format!(
                "log {log}: {} names no checkpoint key for it",
                keys_path.display()
            ));
            continue;
        };
        let kept_here = kept.filter(|k| &k.checkpoint.log_id == log);
        match bundle::verify_log(dir, log, *key, kept_here) {
            Ok(v) => {
                let s = &v.stats;
                println!(
                    "{log}: OK: {} entries, {} checkpoints (newest covers {}, {} after it unsigned), \
                     {} inclusion proofs; {} policy versions, {} keys, {} requests, {} approvals verified, \
                     {} decisions re-evaluated ({} denials), {} signatures verified, {} aborted sessions, \
                     {} contributions; {} risk trees, {} risk decisions recomputed, \
                     {} refused device signatures replayed, {} freeze changes, {} reviews, \
                     {} customer authentication changes, {} schedule events checked against their timing, {} conditional payout events checked against their condition, {} policy shadow events",
                    v.report.entries,
                    v.report.checkpoints,
                    v.report.anchored,
                    v.report.unanchored,
                    v.included,
                    s.policies,
                    s.keys,
                    s.requests,
                    s.approvals,
                    s.decisions,
                    s.denied,
                    s.signatures,
                    s.aborted,
                    s.contributions,
                    s.risk_trees,
                    s.risk_decisions,
                    s.risk_refusals,
                    s.freezes,
                    s.reviews,
                    s.customer_auth_changes,
                    s.schedule_events,
                    s.escrow_events,
                    s.policy_shadows,
                );
                println!("{log}: root {}", hex::encode(v.report.root_hash));
                if let Some((m, n)) = v.consistent_with_kept {
                    println!("{log}: the kept checkpoint of size {m} is consistent with size {n}: the log was only appended to");
                }
            }
            Err(e) => {
                println!("FAILED: {e}");
                failed.push(e.to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(logs)
    } else {
        Err(format!(
            "{} of {} logs did not verify: {}",
            failed.len(),
            logs.len(),
            failed.join("; ")
        ))
    }
}

/// Runs a `keyfold audit` subcommand.
pub(crate) fn run(cmd: AuditCmd) -> Result<(), String> {
    match cmd {
        AuditCmd::Export { data_dir, out } => {
            let logs = bundle::export_bundle(&data_dir, &out).map_err(|e| e.to_string())?;
            for l in &logs {
                println!(
                    "{}: {} bytes of entries, {} bytes of checkpoints, checkpoint key {}",
                    l.log_id, l.entry_bytes, l.checkpoint_bytes, l.public_key
                );
            }
            println!(
                "exported {} logs to {} (verify with `keyfold audit verify {}`)",
                logs.len(),
                out.display(),
                out.display()
            );
            Ok(())
        }
        AuditCmd::Verify { dir, keys, kept } => {
            let kept = kept.as_ref().map(read_kept).transpose()?;
            let logs = verify_all(&dir, keys, kept.as_ref())?;
            println!("all {} logs verified", logs.len());
            Ok(())
        }
        AuditCmd::CrossCheck {
            dir,
            keys,
            coordinator,
        } => {
            let logs = verify_all(&dir, keys, None)?;
            if !logs.contains(&coordinator) {
                return Err(format!("the bundle has no log {coordinator}"));
            }
            let findings = bundle::cross_check(&dir, &coordinator).map_err(|e| e.to_string())?;
            if findings.is_empty() {
                println!(
                    "cross-check OK: every contribution in {} signer logs matches the coordinator's log",
                    logs.len() - 1
                );
                return Ok(());
            }
            for f in &findings {
                println!("MISSING: {f}");
            }
            Err(format!(
                "{} contributions are missing from the coordinator's log",
                findings.len()
            ))
        }
    }
}
