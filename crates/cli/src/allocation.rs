//! `keyfold allocation check`: validates a token allocation plan, prints its
//! groups and beneficiaries (amounts, dates, vested and claimable at a
//! time) and draws its release chart as SVG.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use keyfold_programmable::allocation::{
    claimable, format_bps, format_time, format_units, render_svg, Plan, MAX_PLAN_BYTES,
};

/// The chart's size, in pixels.
const SVG_WIDTH: u32 = 960;
const SVG_HEIGHT: u32 = 540;

/// Token allocation plans.
#[derive(Subcommand)]
pub enum AllocationCmd {
    /// Validates a plan (TOML) and prints each group (share, amount,
    /// allocated, unallocated) and each beneficiary (amount, start, cliff
    /// and end dates, vested and claimable at a time).
    Check {
        /// The TOML plan.
        file: PathBuf,
        /// Also writes the cumulative release per group as an SVG chart.
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
        /// The time (Unix seconds) of the vested and claimable columns;
        /// now by default.
        #[arg(long, value_name = "UNIX_SECS")]
        at: Option<u64>,
    },
    /// Writes the next version of a policy with the plan's vesting rules
    /// (one per beneficiary, and a rule that keeps the allocation wallet
    /// for the plan's claims only), for the admins to sign with
    /// `keyfold policy sign` and push with `keyfold policy push`: the
    /// coordinator and every signer then refuse a claim above what has
    /// vested.
    Policy {
        /// The TOML plan.
        file: PathBuf,
        /// The policy document in force (TOML).
        #[arg(long, value_name = "POLICY.toml")]
        policy: PathBuf,
        /// The wallet (key id) that pays the claims.
        #[arg(long, value_name = "KEY_ID")]
        wallet: String,
        /// Where to write the new policy document (stdout by default).
        #[arg(long, value_name = "OUT.toml")]
        out: Option<PathBuf>,
    },
}

/// Runs a `keyfold allocation` command.
pub fn run(cmd: AllocationCmd) -> Result<(), String> {
    match cmd {
        AllocationCmd::Policy {
            file,
            policy,
            wallet,
            out,
        } => {
            let plan = load(&file)?;
            let current = read_bounded(&policy, keyfold_proto::MAX_RPC_BYTES)?;
            let next =
                keyfold_programmable::allocation_policy::policy_with_plan(&current, &plan, &wallet)
                    .map_err(|e| format!("{}: {e}", policy.display()))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &next).map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!(
                        "wrote {}: the policy with plan {} version {} for wallet {wallet}; sign it with `keyfold policy sign`",
                        path.display(),
                        plan.plan_id(),
                        plan.version()
                    );
                }
                None => print!("{next}"),
            }
            Ok(())
        }
        AllocationCmd::Check { file, svg, at } => {
            let now = match at {
                Some(t) => t,
                None => std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| format!("the clock is before 1970: {e}"))?
                    .as_secs(),
            };
            let plan = load(&file)?;
            for l in describe(&file, &plan, now) {
                println!("{l}");
            }
            if let Some(out) = svg {
                std::fs::write(&out, render_svg(&plan, SVG_WIDTH, SVG_HEIGHT))
                    .map_err(|e| format!("{}: {e}", out.display()))?;
                println!("chart written to {}", out.display());
            }
            Ok(())
        }
    }
}

/// Reads a text file of at most `max` bytes.
pub(crate) fn read_bounded(file: &Path, max: usize) -> Result<String, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.len() > max {
        return Err(format!("{}: larger than {max} bytes", file.display()));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", file.display()))
}

/// Reads (at most [`MAX_PLAN_BYTES`]) and validates a plan file.
pub fn load(file: &Path) -> Result<Plan, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_PLAN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(format!(
            "{}: allocation plan is larger than {MAX_PLAN_BYTES} bytes, the limit",
            file.display()
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: allocation plan is not UTF-8", file.display()))?;
    Plan::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// The plan's description: a header, the groups' table and the
/// beneficiaries' table at `now`.
pub fn describe(file: &Path, plan: &Plan, now: u64) -> Vec<String> {
    let token = plan.token();
    let units = |a: u128| format_units(a, token.decimals);
    let mut out = vec![
        format!(
            "{}: valid allocation plan {:?} version {}",
            file.display(),
            plan.plan_id(),
            plan.version()
        ),
        format!(
            "token: {} on {}, {}, {} decimals",
            token.asset,
            token.chain,
            token
                .contract
                .as_deref()
                .map(|c| format!("contract {c}"))
                .unwrap_or_else(|| "native asset".into()),
            token.decimals
        ),
        format!(
            "total: {} {} ({} base units), unallocated {} {}",
            units(plan.total()),
            token.asset,
            plan.total(),
            units(plan.unallocated()),
            token.asset
        ),
        format!("digest: {}", hex::encode(plan.digest())),
        String::new(),
        format!("groups (amounts in {}):", token.asset),
    ];
    let mut rows = vec![row(&[
        "group",
        "share",
        "amount",
        "allocated",
        "unallocated",
        "beneficiaries",
    ])];
    for s in plan.summaries() {
        rows.push(vec![
            s.name.clone(),
            format_bps(s.share_bps),
            units(s.amount),
            units(s.allocated),
            units(s.unallocated),
            s.beneficiaries.to_string(),
        ]);
    }
    out.extend(table(&rows, &[false, true, true, true, true, true]));

    out.push(String::new());
    out.push(format!(
        "beneficiaries at {} (unix {now}); amounts in {}, claimable if nothing was claimed yet:",
        format_time(now),
        token.asset
    ));
    // The revoked column only when a beneficiary was revoked.
    let revocations = plan
        .groups()
        .iter()
        .flat_map(|g| g.beneficiaries.iter())
        .any(|b| b.revoked_at.is_some());
    let mut header = vec![
        "id",
        "group",
        "amount",
        "start",
        "cliff ends",
        "end",
        "vested",
        "claimable",
        "address",
    ];
    let mut right = vec![false, false, true, false, false, false, true, true, false];
    if revocations {
        header.insert(6, "revoked");
        right.insert(6, false);
    }
    let mut rows = vec![row(&header)];
    for g in plan.groups() {
        for b in &g.beneficiaries {
            let mut r = vec![
                b.id.clone(),
                g.name.clone(),
                units(b.amount),
                format_time(b.start),
                format_time(b.cliff_end()),
                format_time(b.end()),
                units(b.vested(now)),
                units(claimable(b, 0, now)),
                b.address.clone(),
            ];
            if revocations {
                r.insert(
                    6,
                    b.revoked_at.map(format_time).unwrap_or_else(|| "-".into()),
                );
            }
            rows.push(r);
        }
    }
    out.extend(table(&rows, &right));
    out
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Aligned columns (right-aligned where `right`), two spaces apart.
fn table(rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let cols = right.len();
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .take(cols)
                .map(|(i, c)| {
                    if right[i] {
                        format!("{c:>w$}", w = widths[i])
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect();
            format!("  {}", cells.join("  ")).trim_end().to_string()
        })
        .collect()
}
