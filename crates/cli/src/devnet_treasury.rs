//! The devnet's treasury: hot, cold and gas-tank wallets on each local
//! chain with small limits, so the whole cycle shows in a minute. Paid
//! orders are swept into hot; hot above its high-water mark is swept to
//! cold; a payout brings hot below its low-water mark; the replenishment
//! from cold waits in the officers' queue, the devnet approves it with its
//! officer keys, and hot is topped up. The ledger is then compared with the
//! chains.
//!
//! The coordinator's `[treasury]` section names the wallets by the
//! `client_id` the devnet creates them with, so it is written before the
//! keys exist. The devnet funds the new wallets from anvil's development
//! account once the ledger knows them, and books each funding by hand
//! (`POST /v1/ledger/entries`), as an operator would.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use keyfold_coordinator::treasury::{TierView, TransferView};
use keyfold_proto::api::{CreateKeyRequest, KeyInfo, PayoutRequest, RequestStatus};
use keyfold_proto::Curve;
use serde::Serialize;
use serde_json::{json, Value};

use crate::devnet_chains::Chains;
use crate::http::Api;
use crate::officer::ApiTarget;

const ETH: u128 = 1_000_000_000_000_000_000;
/// The hot wallet's marks on each chain (base units): low, target, high.
const LOW: u128 = ETH / 2;
const TARGET: u128 = ETH;
const HIGH: u128 = 2 * ETH;
/// The hot wallet's daily outflow limit.
const DAILY: u128 = 50 * ETH;
/// What the devnet funds each wallet with: hot starts above its
/// high-water mark, so the first round sweeps the excess to cold.
const FUND_HOT: u128 = 5 * ETH / 2;
const FUND_COLD: u128 = 5 * ETH;
const FUND_GAS: u128 = ETH;
/// The payout that takes hot below its low-water mark.
const DRAIN: &str = "0.7";
/// Who that payout pays.
const RECIPIENT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

/// The `client_id`s of the treasury's keys.
pub const HOT: &str = "devnet-treasury-hot";
/// Cold wallet.
pub const COLD: &str = "devnet-treasury-cold";
/// Gas tank.
pub const GAS: &str = "devnet-treasury-gas";

/// The coordinator's `[treasury]` section for the devnet's chains: an ETH
/// tier per chain (the cycle), and a KFT tier (sweeps through the gas tank).
pub fn config_section(chains: &[&str]) -> String {
    let mut s = String::from(
        "\n# The devnet's treasury (made by `keyfold devnet`): wallets named by the\n\
         # client_id they are created with; small marks so the cycle shows in a minute.\n\
         [treasury]\npoll_ms = 1000\n",
    );
    for c in chains {
        s.push_str(&format!(
            "\n[[treasury.tiers]]\nchain = \"{c}\"\nasset = \"ETH\"\nhot_wallet = \"{HOT}\"\n\
             cold_wallet = \"{COLD}\"\ngas_tank = \"{GAS}\"\ndaily_limit = \"{DAILY}\"\n\
             high_water = \"{HIGH}\"\nlow_water = \"{LOW}\"\ntarget = \"{TARGET}\"\n\
             max_sweeps_in_flight = 2\nreplenish_retry_secs = 30\n\n\
             [[treasury.tiers]]\nchain = \"{c}\"\nasset = \"KFT\"\nhot_wallet = \"{HOT}\"\n\
             cold_wallet = \"{COLD}\"\ngas_tank = \"{GAS}\"\ndaily_limit = \"1000000000000\"\n\
             high_water = \"1000000000000\"\nlow_water = \"0\"\ntarget = \"0\"\n\n\
             [[treasury.settlements]]\nmerchant = \"{merchant}\"\nchain = \"{c}\"\nasset = \"ETH\"\n\
             every_secs = 3600\nmin_amount = \"{SETTLE_MIN}\"\nfee_bps = 100\n\
             payout_address = \"{RECIPIENT}\"\n",
            merchant = crate::devnet_orders::MERCHANT,
        ));
    }
    s
}

/// The devnet merchant's settlements wait for this much (0.01 ETH): its
/// paid ETH orders are 0.015 ETH.
const SETTLE_MIN: u128 = ETH / 100;

/// The devnet's own policy (when no `--policy` is given): the built-in
/// devnet policy, plus two officers (`alice`, `bob`, keys made here) who
/// approve cold spends (then a 5 s time lock) and, as the admins, sign the
/// treasury's daily limit into it once its hot wallet exists.
pub fn default_policy(officers: &[(String, String)]) -> String {
    let keys: Vec<String> = officers.iter().map(|(_, k)| format!("\"{k}\"")).collect();
    let members: Vec<String> = officers
        .iter()
        .map(|(n, k)| format!("  {{ name = \"{n}\", key = \"{k}\" }},"))
        .collect();
    let cold_rule = "[[rules]]\nname = \"cold-spends-need-two-officers\"\ntier = \"cold\"\n\
         action = { kind = \"require_approvals\", groups = [\"treasury\"], delay_secs = 5 }\n\n";
    let base = keyfold_policy::DEFAULT_POLICY_TOML.replacen(
        "[[rules]]\nname = \"deny-everything-else\"",
        &format!("{cold_rule}[[rules]]\nname = \"deny-everything-else\""),
        1,
    );
    format!(
        "{base}\n# The devnet's officers (keys in officers/ of the data directory).\n\
         [admins]\nkeys = [{}]\nquorum = 2\n\n[[groups]]\nname = \"treasury\"\nquorum = 2\nmembers = [\n{}\n]\n",
        keys.join(", "),
        members.join("\n")
    )
}

/// Signs the hot wallets' daily limits into the devnet's own policy (a
/// signed update by its two admins, as `keyfold treasury policy`, `policy
/// sign` and `policy push` would): the coordinator and every signer then
/// refuse what goes beyond them.
pub async fn sign_daily_limits(
    api: &Api,
    policy_file: &std::path::Path,
    officers: &Officers,
) -> Result<(), String> {
    let current: Value = api.get("/v1/policy").await?;
    if current["version"].as_u64() != Some(1) {
        return Ok(());
    }
    let tiers = tiers(api).await?;
    let rules = crate::treasury::policy_rules(&tiers, "treasury", 5)?;
    // The velocity limits only: cold spends have their rule already.
    let velocity: String = rules
        .split("\n\n")
        .filter(|b| b.trim_start().starts_with("[[velocity]]"))
        .map(|b| format!("\n{}\n", b.trim()))
        .collect();
    let text = std::fs::read_to_string(policy_file)
        .map_err(|e| format!("{}: {e}", policy_file.display()))?;
    let doc = format!(
        "{}{velocity}",
        text.replacen("version = 1", "version = 2", 1)
    );
    keyfold_policy::Policy::from_toml(&doc)
        .map_err(|e| format!("the devnet's policy version 2: {e}"))?;
    let mut signatures = Vec::new();
    for k in officers.keys.iter().take(2) {
        let key = crate::officer::load_key(k)?;
        signatures.push(keyfold_policy::AdminSignature::sign(&key, &doc));
    }
    let info: Value = api
        .post(
            "/v1/policy",
            &keyfold_policy::SignedPolicy {
                document_toml: doc,
                signatures,
            },
        )
        .await?;
    println!(
        "      policy version {}: the hot wallets' daily limits, signed by the devnet's two admins",
        info["version"]
    );
    Ok(())
}

/// A wallet in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct WalletSummary {
    /// Address.
    pub address: String,
    /// The ledger's balance (base units, decimal).
    pub ledger_balance: String,
    /// The chain's balance, read at the end of the run.
    pub chain_balance: String,
}

/// A sweep in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct SweepSummary {
    /// Its transaction.
    pub tx_hash: String,
    /// `deposit_to_hot` or `hot_to_cold`.
    pub kind: String,
    /// Base units (decimal).
    pub amount_base_units: String,
}

/// A replenishment in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct ReplenishmentSummary {
    /// Its signing request.
    pub request_id: String,
    /// Its transaction.
    pub tx_hash: String,
    /// Base units (decimal).
    pub amount_base_units: String,
    /// Officers' approvals it carried.
    pub approvals: usize,
}

/// A merchant settlement run of the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct SettlementSummary {
    /// The run (and its payout's id).
    pub run_id: String,
    /// `paid`.
    pub state: String,
    /// Paid out (base units, decimal).
    pub amount_base_units: String,
    /// Fee (base units, decimal).
    pub fee_base_units: String,
    /// The orders it covers.
    pub orders: Vec<String>,
    /// Its payout's transaction.
    pub tx_hash: Option<String>,
    /// Where its CSV report was written.
    pub report_csv: String,
}

/// A tier in the `--out` JSON.
#[derive(Serialize, Clone)]
pub struct TreasurySummary {
    /// EVM chain id.
    pub chain_id: u64,
    /// Asset symbol.
    pub asset: String,
    /// Hot wallet.
    pub hot: WalletSummary,
    /// Cold wallet.
    pub cold: WalletSummary,
    /// Completed sweeps.
    pub sweeps: Vec<SweepSummary>,
    /// Completed replenishments.
    pub replenishments: Vec<ReplenishmentSummary>,
    /// The merchant's settlement runs paid from this tier's hot wallet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settlements: Vec<SettlementSummary>,
}

/// How the devnet approves replenishments.
pub struct Officers {
    /// Approver key files (two are needed by the devnet's policy).
    pub keys: Vec<PathBuf>,
    /// The API, for `keyfold approve`'s code path.
    pub target: ApiTarget,
}

async fn key(api: &Api, client_id: &str, cold: bool) -> Result<KeyInfo, String> {
    api.post(
        "/v1/keys",
        &CreateKeyRequest {
            client_id: Some(client_id.into()),
            curve: Curve::Secp256k1,
            t: if cold { 0 } else { 2 },
            n: if cold { 0 } else { 3 },
            tier: if cold {
                keyfold_policy::Tier::Cold
            } else {
                keyfold_policy::Tier::Hot
            },
        },
    )
    .await
}

async fn tiers(api: &Api) -> Result<Vec<TierView>, String> {
    let v: Value = api.get("/v1/treasury").await?;
    serde_json::from_value(v["tiers"].clone()).map_err(|e| format!("/v1/treasury: {e}"))
}

/// Waits (up to `secs`) until `f` holds for the tiers; `what` names it.
async fn wait_for(
    api: &Api,
    what: &str,
    secs: u64,
    mut f: impl FnMut(&[TierView]) -> bool,
) -> Result<Vec<TierView>, String> {
    let t0 = Instant::now();
    loop {
        let t = tiers(api).await?;
        if f(&t) {
            return Ok(t);
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let alerts: Vec<&String> = t.iter().flat_map(|t| t.alerts.iter()).collect();
            return Err(format!(
                "the treasury: {what} did not happen within {secs} s; its alerts: {alerts:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn eth_tiers(t: &[TierView]) -> impl Iterator<Item = &TierView> {
    t.iter().filter(|t| t.asset == "ETH")
}

fn done(x: &TransferView) -> bool {
    x.state == "completed"
}

/// The treasury's hot key, and whether the ledger holds an earlier run's
/// balances on chains that are gone (a second run on a data directory:
/// its sweeps, replenishments and settlements would be judged against
/// balances no chain holds, so [`run`] is not to be run).
pub struct Prepared {
    /// The hot wallet.
    pub hot: KeyInfo,
    /// The ledger is an earlier run's.
    pub stale: bool,
}

/// Creates the treasury's keys, funds them once the ledger knows them (and
/// books the fundings), and signs the daily limits into the devnet's own
/// policy.
pub async fn prepare(
    api: &Api,
    chains: &Chains,
    cold_in_hsm: bool,
    officers: Option<&Officers>,
    own_policy: Option<&std::path::Path>,
    run_id: &str,
) -> Result<Prepared, String> {
    let hot = key(api, HOT, false).await?;
    let gas = key(api, GAS, false).await?;
    let cold = key(api, COLD, cold_in_hsm).await?;
    println!(
        "[4/5] treasury: hot {} and gas tank {} (2-of-3), cold {} ({})",
        hot.key_id,
        gas.key_id,
        cold.key_id,
        if cold_in_hsm {
            "in the HSM"
        } else {
            "2-of-3: no HSM here"
        }
    );
    // The ledger registers each wallet (its opening balance) on the
    // treasury's next round; then the devnet funds it and books that.
    let known = wait_for(api, "registering the wallets", 60, |t| {
        eth_tiers(t).count() == chains.chains.len()
            && eth_tiers(t).all(|t| {
                [&t.hot, &t.cold, &t.gas_tank]
                    .iter()
                    .all(|w| w.as_ref().is_some_and(|w| w.registered))
            })
    })
    .await?;
    let mut stale = false;
    for t in eth_tiers(&known) {
        let Some((_, chain)) = chains.chains.iter().find(|(id, _)| *id == t.chain) else {
            continue;
        };
        for (role, wallet, wei) in [
            ("hot", &t.hot, FUND_HOT),
            ("cold", &t.cold, FUND_COLD),
            ("gas_tank", &t.gas_tank, FUND_GAS),
        ] {
            let Some(w) = wallet else { continue };
            if w.ledger_balance != "0" {
                println!(
                    "      {}: the ledger already holds {} wei in the {role} wallet (an earlier run on chains that are gone): start with a fresh --data-dir for a ledger that matches the chains",
                    t.chain, w.ledger_balance
                );
                stale = true;
                continue;
            }
            let address = w
                .address
                .parse()
                .map_err(|e| format!("{}: {e}", w.address))?;
            chain.fund(address, U256::from(wei), U256::ZERO).await?;
            let _: Value = api
                .post(
                    "/v1/ledger/entries",
                    &json!({
                        "id": format!("devnet-{run_id}-{}-{role}", t.chain),
                        "reference": "the devnet funds its treasury from anvil's development account",
                        "event": { "event": "funding",
                                   "asset": { "chain": t.chain, "asset": "ETH" },
                                   "to": format!("wallet:{role}:{}", w.address),
                                   "amount": wei.to_string() },
                    }),
                )
                .await?;
        }
    }
    println!(
        "      funded on both chains and booked: hot above its high-water mark, cold and gas tank"
    );
    if let (Some(file), Some(o)) = (own_policy, officers) {
        sign_daily_limits(api, file, o).await?;
    }
    Ok(Prepared { hot, stale })
}

/// Runs the cycle (see the module docs) once the merchant's orders are
/// paid; the `--out` summary.
pub async fn run(
    api: &Api,
    chains: &Chains,
    hot: &KeyInfo,
    officers: Option<&Officers>,
    report_dir: &std::path::Path,
    run_id: &str,
) -> Result<Vec<TreasurySummary>, String> {
    // Hot above its high-water mark: the excess goes to cold by itself.
    wait_for(api, "sweeping hot's excess to cold", 120, |t| {
        eth_tiers(t).all(|t| {
            t.transfers
                .iter()
                .any(|x| x.kind == "hot_to_cold" && done(x))
        })
    })
    .await?;
    println!("      hot above {HIGH} wei: the excess went to cold on both chains");

    // A payout takes hot below its low-water mark.
    for (chain, _) in &chains.chains {
        let req = PayoutRequest {
            payout_id: format!("devnet-{run_id}-{chain}-drain"),
            wallet: hot.key_id.clone(),
            chain: chain.clone(),
            asset: "ETH".into(),
            to: RECIPIENT.into(),
            amount: DRAIN.into(),
            reference: Some("takes the devnet's hot wallet below its low-water mark".into()),
            recent_blockhash: None,
            derivation_path: None,
            client: None,
        };
        let _: Value = api.post("/v1/payouts", &req).await?;
    }
    let waiting = wait_for(api, "asking cold for a replenishment", 120, |t| {
        eth_tiers(t).all(|t| t.transfers.iter().any(|x| x.kind == "replenishment"))
    })
    .await?;
    let mut pending = Vec::new();
    for t in eth_tiers(&waiting) {
        if let Some(x) = t.transfers.iter().find(|x| x.kind == "replenishment") {
            pending.push(format!("payout:{}", x.payout_id));
        }
    }
    for request_id in &pending {
        // The payout may still be on its way to the request.
        let t0 = Instant::now();
        let state = loop {
            match api
                .get::<RequestStatus>(&format!("/v1/requests/{request_id}"))
                .await
            {
                Ok(s) => break s.state,
                Err(e) if t0.elapsed() > Duration::from_secs(30) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        };
        println!("      replenishment {request_id} is {state}");
        match officers {
            Some(o) if o.keys.len() >= 2 => {
                for k in o.keys.iter().take(2) {
                    let out = crate::officer::decide(
                        &o.target,
                        request_id,
                        k,
                        keyfold_policy::ApprovalDecision::Approve,
                        3600,
                    )
                    .await?;
                    println!("      {out}");
                }
            }
            _ => println!(
                "      approve it with two officer keys: keyfold approve {request_id} --key FILE"
            ),
        }
    }
    if officers.is_some_and(|o| o.keys.len() >= 2) {
        wait_for(api, "topping hot up from cold", 180, |t| {
            eth_tiers(t).all(|t| {
                t.transfers
                    .iter()
                    .any(|x| x.kind == "replenishment" && done(x))
            })
        })
        .await?;
        println!("      hot topped up from cold after the officers' approvals");
    }
    // The paid orders' deposit addresses are swept into hot
    // (token deposits after the gas tank topped them up), and nothing is
    // left in flight when the balances are read.
    let approving = officers.is_some_and(|o| o.keys.len() >= 2);
    let end = wait_for(api, "sweeping the paid orders into hot", 240, |t| {
        t.iter().all(|t| {
            t.transfers
                .iter()
                .any(|x| x.kind == "sweep" && x.asset == t.asset && done(x))
                && t.transfers.iter().all(|x| {
                    !matches!(x.state.as_str(), "unsigned" | "broadcast" | "confirming")
                        || (x.kind == "replenishment" && !approving)
                })
        })
    })
    .await?;
    // The merchant's settlement on each chain, paid from hot.
    let t0 = Instant::now();
    let runs: Vec<keyfold_coordinator::treasury::settlement::RunView> = loop {
        let v: Value = api.get("/v1/settlements").await?;
        let runs: Vec<keyfold_coordinator::treasury::settlement::RunView> =
            serde_json::from_value(v["settlements"].clone())
                .map_err(|e| format!("/v1/settlements: {e}"))?;
        let paid = chains
            .chains
            .iter()
            .all(|(c, _)| runs.iter().any(|r| &r.chain == c && r.state == "paid"));
        if paid {
            break runs;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            return Err(format!(
                "the merchant's settlement runs were not paid within 180 s: {runs:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let reports = report_dir.join("settlements");
    std::fs::create_dir_all(&reports).map_err(|e| format!("{}: {e}", reports.display()))?;
    let mut settled = Vec::new();
    for r in runs.iter().filter(|r| r.state == "paid") {
        let report: keyfold_coordinator::treasury::settlement::SettlementReport =
            api.get(&format!("/v1/settlements/{}", r.run_id)).await?;
        let csv_path = reports.join(format!("{}.csv", r.run_id));
        std::fs::write(&csv_path, report.to_csv().map_err(|e| e.to_string())?)
            .map_err(|e| format!("{}: {e}", csv_path.display()))?;
        println!(
            "      merchant {} settled on {}: {} wei paid, {} wei fee, {} order(s); report {}",
            r.merchant_id,
            r.chain,
            r.amount_base_units,
            r.fee_base_units,
            report.orders.len(),
            csv_path.display()
        );
        settled.push((
            r.chain.clone(),
            SettlementSummary {
                run_id: r.run_id.clone(),
                state: r.state.clone(),
                amount_base_units: r.amount_base_units.clone(),
                fee_base_units: r.fee_base_units.clone(),
                orders: report
                    .orders
                    .iter()
                    .filter_map(|o| o.order_id.clone())
                    .collect(),
                tx_hash: report.payout.as_ref().and_then(|p| p.tx_hash.clone()),
                report_csv: csv_path.display().to_string(),
            },
        ));
    }
    // Balances read after the settlements' payouts completed.
    let end = if settled.is_empty() {
        end
    } else {
        tiers(api).await?
    };
    let mut out = Vec::new();
    for t in &end {
        let wallet = |w: &Option<keyfold_coordinator::treasury::WalletView>| {
            w.as_ref().map(|w| WalletSummary {
                address: w.address.clone(),
                ledger_balance: w.ledger_balance.clone(),
                chain_balance: w.chain_balance.clone().unwrap_or_default(),
            })
        };
        let (Some(h), Some(c)) = (wallet(&t.hot), wallet(&t.cold)) else {
            continue;
        };
        let mut replenishments = Vec::new();
        for x in t
            .transfers
            .iter()
            .filter(|x| x.kind == "replenishment" && x.asset == t.asset && done(x))
        {
            let st: Value = api.get(&format!("/v1/requests/{}", x.request_id)).await?;
            replenishments.push(ReplenishmentSummary {
                request_id: x.request_id.clone(),
                tx_hash: x.tx_hash.clone().unwrap_or_default(),
                amount_base_units: x.amount_base_units.clone(),
                approvals: st["approvals"].as_array().map_or(0, Vec::len),
            });
        }
        println!(
            "      {} {}: hot {} (chain {}), cold {} (chain {}) base units",
            t.chain, t.asset, h.ledger_balance, h.chain_balance, c.ledger_balance, c.chain_balance
        );
        out.push(TreasurySummary {
            chain_id: t.chain_id.unwrap_or_default(),
            asset: t.asset.clone(),
            hot: h,
            cold: c,
            sweeps: t
                .transfers
                .iter()
                .filter(|x| {
                    done(x)
                        && x.asset == t.asset
                        && matches!(x.kind.as_str(), "sweep" | "hot_to_cold")
                })
                .map(|x| SweepSummary {
                    tx_hash: x.tx_hash.clone().unwrap_or_default(),
                    kind: if x.kind == "sweep" {
                        "deposit_to_hot".into()
                    } else {
                        "hot_to_cold".into()
                    },
                    amount_base_units: x.amount_base_units.clone(),
                })
                .collect(),
            replenishments,
            settlements: settled
                .iter()
                .filter(|(c, _)| *c == t.chain && t.asset == "ETH")
                .map(|(_, s)| s.clone())
                .collect(),
        });
    }
    Ok(out)
}
