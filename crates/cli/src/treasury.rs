//! `keyfold treasury`: the settlement module from a terminal, through the
//! coordinator's API: the tiers with their ledger and chain balances
//! (`status`, exit status 3 when they differ), ledger balances and the
//! journal (`ledger --verify` replays it with `keyfold-ledger` and checks
//! its invariants), merchant settlement runs and their reports, and the
//! policy rules that hold each hot wallet to its daily limit (`policy`).

use std::path::PathBuf;

use clap::Subcommand;
use keyfold_coordinator::treasury::settlement::{RunView, SettlementReport};
use keyfold_coordinator::treasury::views::{BalanceList, LedgerPage};
use keyfold_coordinator::treasury::TierView;
use keyfold_ledger::{Entry, Ledger};

use crate::officer::ApiTarget;

#[derive(Subcommand)]
pub(crate) enum TreasuryCmd {
    /// Each tier's hot, cold and gas-tank wallets with their ledger and
    /// chain balances, limits, alerts and differences (exit status 3 when
    /// the ledger and the chain differ).
    Status,
    /// Ledger balances, optionally of one chain and of accounts starting
    /// with a prefix (`merchant:acme:`, `wallet:hot:`).
    Balances {
        /// Chain registry id.
        #[arg(long)]
        chain: Option<String>,
        /// Account or prefix.
        #[arg(long)]
        account: Option<String>,
    },
    /// The journal, every page, as JSON lines; `--verify` replays it and
    /// checks every entry balances, no account goes below zero where it
    /// may not, and each merchant's available balance equals its settled
    /// orders less its payouts and fees.
    Ledger {
        /// Entries touching accounts with this prefix only.
        #[arg(long)]
        account: Option<String>,
        /// Replay and check instead of printing (needs the whole journal:
        /// an operator token, no `--account`).
        #[arg(long)]
        verify: bool,
    },
    /// Merchant settlement runs, newest first.
    Settlements {
        /// One merchant (operator tokens).
        #[arg(long)]
        merchant: Option<String>,
    },
    /// A settlement run's report: the orders, fee and payout it covers.
    Report {
        /// The run id (`settle-acme-base-usdc-3`).
        run_id: String,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        /// Write it here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints the policy rules that hold each tier's hot wallet to its
    /// daily limit and send cold spends to the officers, for the admins to
    /// add to the policy they sign (`keyfold policy sign`, `push`).
    Policy {
        /// The officers' group that approves cold spends.
        #[arg(long, default_value = "treasury")]
        group: String,
        /// Time lock of a cold spend after its approvals, seconds.
        #[arg(long, default_value_t = 3600)]
        time_lock_secs: u64,
    },
}

/// Runs `cmd`; the exit status it asks for (0, or 3 for differences).
pub(crate) async fn run(cmd: TreasuryCmd, target: ApiTarget) -> Result<u8, String> {
    let api = target.connect()?;
    match cmd {
        TreasuryCmd::Status => {
            let v: serde_json::Value = api.get("/v1/treasury").await?;
            let tiers: Vec<TierView> = serde_json::from_value(v["tiers"].clone())
                .map_err(|e| format!("GET /v1/treasury: unreadable answer: {e}"))?;
            println!("{}", pretty(&tiers)?);
            let differences: usize = tiers.iter().map(|t| t.differences.len()).sum();
            for t in &tiers {
                for a in &t.alerts {
                    eprintln!("{}/{}: {a}", t.chain, t.asset);
                }
            }
            eprintln!(
                "{} tier(s), {} alert(s), {differences} difference(s) between ledger and chain",
                tiers.len(),
                tiers.iter().map(|t| t.alerts.len()).sum::<usize>()
            );
            Ok(if differences > 0 { 3 } else { 0 })
        }
        TreasuryCmd::Balances { chain, account } => {
            let mut path = "/v1/balances?".to_string();
            if let Some(c) = chain {
                path.push_str(&format!("chain={}&", urlencode(&c)));
            }
            if let Some(a) = account {
                path.push_str(&format!("account={}&", urlencode(&a)));
            }
            let list: BalanceList = api.get(path.trim_end_matches(['?', '&'])).await?;
            for b in &list.balances {
                println!(
                    "{:<60} {:<12} {:<8} {:>40}",
                    b.account, b.chain, b.asset, b.balance
                );
            }
            Ok(0)
        }
        TreasuryCmd::Ledger { account, verify } => {
            if verify && account.is_some() {
                return Err("--verify replays the whole journal: drop --account".into());
            }
            let mut entries: Vec<Entry> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = "/v1/ledger?limit=500".to_string();
                if let Some(a) = &account {
                    path.push_str(&format!("&account={}", urlencode(a)));
                }
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={c}"));
                }
                let page: LedgerPage = api.get(&path).await?;
                for e in page.entries {
                    if verify {
                        entries.push(e.entry);
                    } else {
                        println!(
                            "{}",
                            serde_json::to_string(&e).map_err(|e| format!("cannot encode: {e}"))?
                        );
                    }
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if verify {
                let ledger = Ledger::replay(entries.iter())
                    .map_err(|e| format!("the journal does not replay: {e}"))?;
                ledger
                    .check_invariants()
                    .map_err(|e| format!("the journal breaks an invariant: {e}"))?;
                let served: BalanceList = api.get("/v1/balances").await?;
                let mut differ = 0;
                for b in &served.balances {
                    let account: keyfold_ledger::Account = b
                        .account
                        .parse()
                        .map_err(|e| format!("account {}: {e}", b.account))?;
                    let key = keyfold_ledger::AssetKey::new(b.chain.clone(), b.asset.clone());
                    let replayed = ledger.balance(&account, &key).to_string();
                    if replayed != b.balance {
                        differ += 1;
                        eprintln!(
                            "{} {}/{}: the coordinator says {}, the journal replays to {replayed}",
                            b.account, b.chain, b.asset, b.balance
                        );
                    }
                }
                eprintln!(
                    "{} entries replayed: every entry balances, no account is below zero where it may not be, every merchant's available balance is its settled orders less its payouts and fees; {} balance(s) checked, {differ} differ",
                    entries.len(),
                    served.balances.len()
                );
                return Ok(if differ > 0 { 3 } else { 0 });
            }
            Ok(0)
        }
        TreasuryCmd::Settlements { merchant } => {
            let path = match merchant {
                Some(m) => format!("/v1/settlements?merchant_id={}", urlencode(&m)),
                None => "/v1/settlements".into(),
            };
            let v: serde_json::Value = api.get(&path).await?;
            let runs: Vec<RunView> = serde_json::from_value(v["settlements"].clone())
                .map_err(|e| format!("GET {path}: unreadable answer: {e}"))?;
            println!("{}", pretty(&runs)?);
            Ok(0)
        }
        TreasuryCmd::Report { run_id, csv, out } => {
            let report: SettlementReport = api
                .get(&format!("/v1/settlements/{}", urlencode(&run_id)))
                .await?;
            let text = if csv {
                report.to_csv().map_err(|e| e.to_string())?
            } else {
                pretty(&report)? + "\n"
            };
            match out {
                Some(p) => std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?,
                None => print!("{text}"),
            }
            Ok(0)
        }
        TreasuryCmd::Policy {
            group,
            time_lock_secs,
        } => {
            let v: serde_json::Value = api.get("/v1/treasury").await?;
            let tiers: Vec<TierView> = serde_json::from_value(v["tiers"].clone())
                .map_err(|e| format!("GET /v1/treasury: unreadable answer: {e}"))?;
            print!("{}", policy_rules(&tiers, &group, time_lock_secs)?);
            Ok(0)
        }
    }
}

fn pretty<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| format!("cannot encode: {e}"))
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The policy rules of `tiers` (TOML to add to the signed policy).
pub(crate) fn policy_rules(
    tiers: &[TierView],
    group: &str,
    time_lock_secs: u64,
) -> Result<String, String> {
    let mut out = String::from(
        "# Generated by `keyfold treasury policy` from the treasury's tiers. Add these\n\
         # to the policy document the admins sign (keyfold policy sign / push): the\n\
         # velocity limits hold each hot wallet to its daily limit at the coordinator\n\
         # and at every signer; the rules send cold spends to the officers. Put the\n\
         # rules before your catch-all rules: the first matching rule decides.\n",
    );
    let mut cold_keys = std::collections::BTreeSet::new();
    for t in tiers {
        let hot = t.hot.as_ref().ok_or_else(|| {
            format!(
                "tier {}/{}: its wallets do not resolve: {:?}",
                t.chain, t.asset, t.alerts
            )
        })?;
        let daily = t
            .limits
            .get("daily_limit")
            .ok_or_else(|| format!("tier {}/{}: no daily limit", t.chain, t.asset))?;
        out.push_str(&format!(
            "\n[[velocity]]\nname = \"treasury-{chain}-{asset}-hot-daily\"\nper = \"wallet\"\nwindow_secs = 86400\n\
             asset = \"{sym}\"\nwallets = [\"{key}\"]\nmax_amount = \"{daily}\"\n",
            chain = t.chain,
            asset = t.asset.to_ascii_lowercase(),
            sym = t.asset,
            key = hot.key_id,
        ));
        if let Some(c) = &t.cold {
            cold_keys.insert(c.key_id.clone());
        }
    }
    for key in cold_keys {
        out.push_str(&format!(
            "\n[[rules]]\nname = \"treasury-cold-{key}\"\nwallets = [\"{key}\"]\n\
             action = {{ kind = \"require_approvals\", groups = [\"{group}\"], delay_secs = {time_lock_secs} }}\n"
        ));
    }
    Ok(out)
}
