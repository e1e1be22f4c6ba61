//! `keyfold policy rollout`: writes a version that enforces the next policy
//! for a whitelist (merchants, wallets, a share of request ids) and keeps
//! the version in force for every other request, for the admins to sign
//! and push as any update.

use std::path::{Path, PathBuf};

use clap::Args;
use keyfold_policy::{compose, describe, describe_limits, Policy, Rollout, MAX_DOCUMENT_BYTES};

use crate::allocation::read_bounded;

/// `keyfold policy rollout` arguments.
#[derive(Args)]
pub struct RolloutArgs {
    /// The version in force for everyone (TOML, without a [rollout]).
    #[arg(long, value_name = "CURRENT.toml")]
    pub base: PathBuf,
    /// The next version (TOML), with its version number.
    #[arg(long, value_name = "NEXT.toml")]
    pub next: PathBuf,
    /// A merchant whose requests the next version decides (repeatable).
    #[arg(long = "merchant", value_name = "MERCHANT_ID")]
    pub merchants: Vec<String>,
    /// A wallet (key id) whose requests the next version decides
    /// (repeatable; its HD children too).
    #[arg(long = "wallet", value_name = "KEY_ID")]
    pub wallets: Vec<String>,
    /// A share of all requests, in basis points (100 = 1%), chosen from
    /// the request ids.
    #[arg(long, value_name = "BPS")]
    pub share_bps: Option<u16>,
    /// Where to write the rollout version (stdout by default).
    #[arg(long, value_name = "OUT.toml")]
    pub out: Option<PathBuf>,
}

fn load(path: &Path) -> Result<Policy, String> {
    let text = read_bounded(path, MAX_DOCUMENT_BYTES)?;
    Policy::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `keyfold policy rollout`.
pub fn run(a: RolloutArgs) -> Result<(), String> {
    let base = load(&a.base)?;
    let next = load(&a.next)?;
    let nonempty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let rollout = Rollout {
        merchants: nonempty(a.merchants),
        wallets: nonempty(a.wallets),
        share_bps: a.share_bps,
    };
    let doc = compose(base.document(), next.document(), rollout).map_err(|e| e.to_string())?;
    let policy = Policy::from_document(doc).map_err(|e| e.to_string())?;
    let text = policy.to_toml().map_err(|e| e.to_string())?;
    // What was written, in plain words, for the admins who will sign it.
    for l in describe(&policy)
        .into_iter()
        .chain(describe_limits(&policy))
    {
        eprintln!("{l}");
    }
    match a.out {
        Some(path) => {
            std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "wrote {}: version {} enforces version {}'s rules for the selected requests and version {}'s for the others; sign it with `keyfold policy sign`, push it with `keyfold policy push`; push {} itself (with a higher version) to enforce it for everyone",
                path.display(),
                policy.version(),
                next.version(),
                base.version(),
                a.next.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
