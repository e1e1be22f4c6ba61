//! `keyfold review` and `keyfold freeze`: the risk module's review queue
//! and freezes, from an officer's machine.
//!
//! Reviews and freeze lifts are signed here with the officer's own key
//! (`keyfold approver keygen`); the API token only carries them. A lift
//! needs two officers: each may sign on their own machine (`--out` writes
//! the partly signed lift, `--file` adds to one), and the last submits it.

use std::path::{Path, PathBuf};

use keyfold_proto::api::{FreezeInfo, FreezeList, NewFreeze, ReviewInfo, ReviewList};
use keyfold_risk::{FreezeLift, ReviewVerdict, SignedReview};

use crate::officer::{load_key, ApiTarget};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
    n
}

fn describe_review(r: &ReviewInfo) -> String {
    let who = r
        .reviews
        .iter()
        .map(|x| format!("{} {}", x.officer, x.verdict))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} ({}): {} {} from {} to {}, score {} [{}]{}{}",
        r.request_id,
        r.state,
        r.amount_base_units,
        r.asset,
        r.wallet,
        r.destination,
        r.risk.score,
        r.risk.reasons.join(", "),
        r.expires_at
            .map(|e| format!(", expires at {e}"))
            .unwrap_or_default(),
        if who.is_empty() {
            String::new()
        } else {
            format!("; reviews: {who}")
        }
    )
}

/// `keyfold review list`.
pub async fn list(api: &ApiTarget) -> Result<Vec<String>, String> {
    let list: ReviewList = api.connect()?.get("/v1/reviews").await?;
    Ok(list.reviews.iter().map(describe_review).collect())
}

/// `keyfold review approve|reject|escalate REQUEST --key FILE`.
pub async fn decide(
    api: &ApiTarget,
    request_id: &str,
    key_file: &Path,
    verdict: ReviewVerdict,
    valid_secs: u64,
) -> Result<String, String> {
    let key = load_key(key_file)?;
    let review = SignedReview::sign(
        &key,
        request_id,
        verdict,
        now().saturating_add(valid_secs),
        nonce(),
    );
    let after: ReviewInfo = api
        .connect()?
        .post(&format!("/v1/reviews/{request_id}"), &review)
        .await?;
    Ok(format!(
        "{} recorded; {}",
        verdict.name(),
        describe_review(&after)
    ))
}

fn describe_freeze(f: &FreezeInfo) -> String {
    format!(
        "{} {} {}: {} (by {} at {}){}",
        f.freeze_id,
        f.scope,
        f.subject,
        f.reason,
        f.added_by,
        f.added_at,
        match f.lifted_at {
            Some(at) => format!("; lifted at {at} by {}", f.lifted_by.join(" and ")),
            None => String::new(),
        }
    )
}

/// `keyfold freeze list [--all]`.
pub async fn list_freezes(api: &ApiTarget, all: bool) -> Result<Vec<String>, String> {
    let path = if all {
        "/v1/freezes?state=all"
    } else {
        "/v1/freezes"
    };
    let list: FreezeList = api.connect()?.get(path).await?;
    Ok(list.freezes.iter().map(describe_freeze).collect())
}

/// `keyfold freeze add --scope S --subject X --reason R`.
pub async fn add(api: &ApiTarget, f: NewFreeze) -> Result<String, String> {
    let info: FreezeInfo = api.connect()?.post("/v1/freezes", &f).await?;
    Ok(format!("frozen: {}", describe_freeze(&info)))
}

/// `keyfold freeze lift ID --key A [--key B] [--file IN] [--out OUT]`:
/// signs the lift of freeze `ID` with each key (starting from the lift in
/// `--file`, if given); writes it to `--out` without submitting, or else
/// submits it.
pub async fn lift(
    api: &ApiTarget,
    freeze_id: &str,
    keys: &[PathBuf],
    file: Option<&Path>,
    out: Option<&Path>,
    valid_secs: u64,
) -> Result<String, String> {
    let conn = api.connect()?;
    let mut lift = match file {
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let l: FreezeLift =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
            if l.freeze_id != freeze_id {
                return Err(format!(
                    "{} lifts freeze {}, not {freeze_id}",
                    f.display(),
                    l.freeze_id
                ));
            }
            l
        }
        None => {
            let all: FreezeList = conn.get("/v1/freezes?state=all").await?;
            let f = all
                .freezes
                .into_iter()
                .find(|f| f.freeze_id == freeze_id)
                .ok_or_else(|| format!("no freeze {freeze_id}"))?;
            let scope = keyfold_risk::FreezeScope::from_name(&f.scope)
                .ok_or_else(|| format!("freeze {freeze_id} has an unknown scope {}", f.scope))?;
            FreezeLift::new(
                freeze_id,
                scope,
                &f.subject,
                now().saturating_add(valid_secs),
                nonce(),
            )
        }
    };
    for k in keys {
        lift.sign(&load_key(k)?);
    }
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(&lift).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("{}: {e}", out.display()))?;
        return Ok(format!(
            "lift of {freeze_id} with {} signature(s) written to {} (not submitted)",
            lift.signatures.len(),
            out.display()
        ));
    }
    let info: FreezeInfo = conn
        .post(&format!("/v1/freezes/{freeze_id}/lift"), &lift)
        .await?;
    Ok(format!("lifted: {}", describe_freeze(&info)))
}

/// `keyfold review`.
#[derive(clap::Subcommand)]
pub enum ReviewCmd {
    /// Payouts the risk engine holds for review, oldest first.
    List,
    /// Releases a held payout to the policy (and signing).
    Approve(ReviewArgs),
    /// Rejects a held payout (it is cancelled).
    Reject(ReviewArgs),
    /// Records that it needs a senior officer; it stays held.
    Escalate(ReviewArgs),
}

/// A review's target and the officer's key.
#[derive(clap::Args)]
pub struct ReviewArgs {
    /// The held request (`payout:<payout_id>` for a payout).
    pub request: String,
    /// The officer's key file (`keyfold approver keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// How long the signed review stays valid, seconds (at most a day).
    #[arg(long, default_value_t = 600)]
    pub valid_secs: u64,
}

/// `keyfold freeze`.
#[derive(clap::Subcommand)]
pub enum FreezeCmd {
    /// Active freezes (`--all`: lifted ones too).
    List {
        /// Lifted freezes too.
        #[arg(long)]
        all: bool,
    },
    /// Freezes a subject at once (no officer signature needed to freeze).
    Add {
        /// `customer`, `device`, `wallet` or `merchant`.
        #[arg(long)]
        scope: String,
        /// A wallet key id or merchant id; a customer or device as
        /// `MERCHANT/ID` (its id as the merchant sends it).
        #[arg(long)]
        subject: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Signs a freeze's lift with each `--key` and submits it (two
    /// distinct officers needed), or writes it to `--out` for the next one.
    Lift {
        /// The freeze.
        freeze: String,
        /// Officer key files (repeat for several officers on this machine).
        #[arg(long)]
        key: Vec<PathBuf>,
        /// A partly signed lift to add to (from another officer's `--out`).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Write the lift here instead of submitting it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// How long the signatures stay valid, seconds (at most a day).
        #[arg(long, default_value_t = 3600)]
        valid_secs: u64,
    },
}

/// Runs a `keyfold review` command.
pub async fn run_review(cmd: ReviewCmd, api: ApiTarget) -> Result<Vec<String>, String> {
    let (args, verdict) = match cmd {
        ReviewCmd::List => return list(&api).await,
        ReviewCmd::Approve(a) => (a, ReviewVerdict::Approve),
        ReviewCmd::Reject(a) => (a, ReviewVerdict::Reject),
        ReviewCmd::Escalate(a) => (a, ReviewVerdict::Escalate),
    };
    Ok(vec![
        decide(&api, &args.request, &args.key, verdict, args.valid_secs).await?,
    ])
}

/// Runs a `keyfold freeze` command.
pub async fn run_freeze(cmd: FreezeCmd, api: ApiTarget) -> Result<Vec<String>, String> {
    match cmd {
        FreezeCmd::List { all } => list_freezes(&api, all).await,
        FreezeCmd::Add {
            scope,
            subject,
            reason,
        } => Ok(vec![
            add(
                &api,
                NewFreeze {
                    scope,
                    subject,
                    reason,
                },
            )
            .await?,
        ]),
        FreezeCmd::Lift {
            freeze,
            key,
            file,
            out,
            valid_secs,
        } => Ok(vec![
            lift(
                &api,
                &freeze,
                &key,
                file.as_deref(),
                out.as_deref(),
                valid_secs,
            )
            .await?,
        ]),
    }
}
