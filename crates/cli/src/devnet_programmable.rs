//! The devnet's programmable payments (`docs/programmable.md`,
//! `docs/allocations.md`, `docs/rollout.md`), run after its payouts:
//!
//! 1. a schedule with one occurrence a few seconds ahead: the coordinator
//!    pays it as the payout `<schedule_id>.0`, and the devnet waits until
//!    the schedule is `finished` and that payout `completed`;
//! 2. a conditional payout held until a deadline a few seconds ahead: the
//!    coordinator releases it when the deadline passes and pays it as the
//!    payout `<escrow_id>.pay`; the devnet waits until that is `completed`
//!    and records why the escrow says it was released;
//! 3. an allocation claim: a small KFT plan with one beneficiary, part
//!    of it vested already, becomes the next policy version
//!    (`keyfold_programmable::allocation_policy::policy_with_plan`),
//!    signed by the devnet's policy admins and pushed as `keyfold policy
//!    push` does; the devnet claims what has vested as an ordinary payout,
//!    then pushes the policy it found back as a newer version;
//! 4. a shadow policy: the policy in force plus a rule denying ETH payouts
//!    of at least 0.001 ETH to an address of the run's own, signed by the
//!    same admins and installed in shadow (`POST /v1/policy/shadow`); two
//!    payouts to that address (one the shadow would deny, one it would
//!    allow as the version in force does) are paid, then the shadow is
//!    removed and its last report (requests evaluated, differences) kept.
//!
//! The policy version only goes up, so the plan's version and the restored
//! one are counted from the version in force (not from the policy file): a
//! second run on the same data directory starts above the first. Each run
//! pays a beneficiary address of its own, derived from the run id: the
//! policy counts every claim ever paid to an address against its vesting,
//! so a fixed address would have nothing left to claim on the next run
//! (and the plan must pay an address no other devnet step pays). The
//! shadow comes last: the claim pushes two policy versions, and a version
//! put in force at or above the shadow's ends it.
//!
//! Without admin keys (a `--policy` of the operator's and no `--officer`
//! naming its admins) the claim and the shadow are skipped with a line
//! saying why, and the `--out` JSON lists no claims and no shadow.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use ed25519_dalek::SigningKey;
use keyfold_coordinator::chain_rpc::devchain::{TEST_TOKEN_DECIMALS, TEST_TOKEN_SYMBOL};
use keyfold_coordinator::policy::shadow::{OutcomeKind, ShadowDifference, ShadowReport};
use keyfold_programmable::allocation::{
    format_time, format_units, Beneficiary, Group, Plan, PlanDocument, Token,
};
use keyfold_programmable::condition::{Condition, Escrow, OnExpiry};
use keyfold_programmable::schedule::{Missed, Rule, Timing, DEFAULT_GRACE_SECS};
use keyfold_proto::api::{
    ConditionalPayoutInfo, CreateConditionalPayout, CreateSchedule, KeyInfo, PayoutInfo,
    PayoutRequest, PayoutState, PolicyInfo, ScheduleInfo, ScheduledPayout,
};
use serde::Serialize;

use crate::devnet_chains::Chains;
use crate::devnet_treasury::Officers;
use crate::http::Api;

/// The chain of both payments.
const CHAIN: &str = "devnet-l1";
/// What the scheduled occurrence pays, and to whom (the address the
/// devnet's other payouts pay).
const SCHEDULED_ASSET: &str = "ETH";
const SCHEDULED_AMOUNT: &str = "0.001";
const SCHEDULED_TO: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
/// The occurrence falls this far ahead: `start` may not be in the past,
/// and the devnet's coordinator looks for due occurrences every 500 ms.
const SCHEDULE_LEAD_SECS: u64 = 3;
/// The interval of the schedule's rule. With `count = 1` it never elapses;
/// an hour is the production `min_interval_secs`, so the schedule is
/// valid whatever minimum a reused data directory's coordinator has.
const SCHEDULE_EVERY_SECS: u64 = 3600;
/// How long the devnet waits for the schedule to finish, then for a
/// payout to complete on chain.
const SCHEDULE_WAIT: Duration = Duration::from_secs(60);
const PAYMENT_WAIT: Duration = Duration::from_secs(120);
/// The conditional payout's deadline falls this far ahead (the escrow
/// runner judges held escrows every 500 ms on the devnet); it expires
/// (cancelled, nothing paid) this long after the deadline, so an escrow
/// the devnet stopped waiting for is never paid later, under a policy
/// version of another step (the allocation plan's pays only claims).
const CONDITION_LEAD_SECS: u64 = 3;
const ESCROW_EXPIRY_SECS: u64 = 600;
/// How long the devnet waits for the escrow to be released.
const ESCROW_WAIT: Duration = Duration::from_secs(60);
/// The shadow policy's extra rule: ETH payouts from the devnet's wallet
/// on [`CHAIN`] of at least [`SHADOW_CAP_WEI`] to the run's shadow address
/// would be denied. The first shadow payout is at the cap (it differs),
/// the second below it (decided by the same rule as the version in force).
const SHADOW_RULE: &str = "devnet-shadow-cap";
const SHADOW_CAP_WEI: u128 = 1_000_000_000_000_000;
const SHADOW_AMOUNTS: [&str; 2] = ["0.001", "0.0005"];
/// The beneficiary's allocation: 100 KFT released linearly over
/// `RELEASE_SECS` from `RELEASE_SECS / 2` ago, no cliff, so about half has
/// vested when the devnet claims (the hot wallet holds about 1000 KFT).
const ALLOCATION_TOKENS: u128 = 100;
const RELEASE_SECS: u64 = 1200;
/// The claim is what had vested this many seconds before the claim time:
/// the coordinator and every signer judge it by their own clocks, which
/// may lag the devnet's a little.
const CLOCK_SKEW_SECS: u64 = 30;

/// The `programmable` section of the `--out` JSON.
#[derive(Serialize, Clone, Default)]
pub struct ProgrammableSummary {
    /// The scheduled occurrences the devnet saw paid.
    pub scheduled: Vec<ScheduledSummary>,
    /// Conditional payouts released by their condition.
    pub conditional: Vec<ConditionalSummary>,
    /// Allocation claims (none when the devnet has no admin keys).
    pub claims: Vec<ClaimSummary>,
    /// The shadow policy's report (none when the devnet has no admin keys).
    pub shadow: Option<ShadowSummary>,
}

/// One conditional payout, released and paid.
#[derive(Serialize, Clone)]
pub struct ConditionalSummary {
    /// The escrow (`GET /v1/conditional-payouts/{escrow_id}`).
    pub escrow_id: String,
    /// Its payout: `<escrow_id>.pay`.
    pub payout_id: String,
    /// The condition it was held on, as the API takes it.
    pub condition: Condition,
    /// Why the coordinator released it (the escrow's `reason`).
    pub released_because: String,
    /// The payout's transaction.
    pub tx_hash: String,
}

/// A shadow policy version's last report, taken when it was removed.
#[derive(Serialize, Clone)]
pub struct ShadowSummary {
    /// The version in force, which decided every request.
    pub version_in_force: u64,
    /// The shadow's version.
    pub shadow_version: u64,
    /// Requests evaluated under the shadow while it was installed.
    pub requests: u64,
    /// How many of them the shadow would have decided otherwise.
    pub differences: u64,
    /// The devnet's payouts made under the shadow: the first is one it
    /// would deny, the second one it would decide as the version in force.
    pub payout_ids: Vec<String>,
    /// The differing requests (one page, newest first), both verdicts.
    pub differing: Vec<ShadowDifference>,
}

/// One paid occurrence of a schedule.
#[derive(Serialize, Clone)]
pub struct ScheduledSummary {
    /// The schedule.
    pub schedule_id: String,
    /// The occurrence's number (0 is the first).
    pub occurrence: u64,
    /// Its payout: `<schedule_id>.<occurrence>`.
    pub payout_id: String,
    /// The payout's transaction.
    pub tx_hash: String,
}

/// One allocation claim.
#[derive(Serialize, Clone)]
pub struct ClaimSummary {
    /// The beneficiary's registered address (EIP-55), which the claim paid.
    pub beneficiary: String,
    /// What had vested at the claim time (base units, decimal).
    pub vested_base_units: String,
    /// What the claim paid (base units, decimal): at most the vested amount.
    pub claimed_base_units: String,
    /// The claim's payout.
    pub payout_id: String,
    /// Its transaction.
    pub tx_hash: String,
}

/// The devnet's summary with the `programmable` section after the others
/// (`crate::output::Summary` stays the demo's and the devnet's common part).
#[derive(Serialize)]
struct WithProgrammable<'a> {
    #[serde(flatten)]
    summary: &'a crate::output::Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    programmable: Option<&'a ProgrammableSummary>,
}

/// Writes the devnet's `--out` JSON: `summary` and, when the devnet ran
/// them, its programmable payments.
pub fn write(
    path: &Path,
    summary: &crate::output::Summary,
    programmable: Option<&ProgrammableSummary>,
) -> Result<(), String> {
    let json = serde_json::to_string_pretty(&WithProgrammable {
        summary,
        programmable,
    })
    .map_err(|e| format!("cannot encode the summary: {e}"))?;
    std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn now() -> Result<u64, String> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| format!("the clock is before 1970: {e}"))
}

/// Runs the four steps (see the module docs) with the ECDSA hot wallet
/// `key`; `officers` sign the policy updates of the claim and the shadow.
pub async fn run(
    api: &Api,
    chains: &Chains,
    key: &KeyInfo,
    officers: &Officers,
    run_id: &str,
) -> Result<ProgrammableSummary, String> {
    let mut summary = ProgrammableSummary::default();
    summary.scheduled.push(scheduled(api, key, run_id).await?);
    summary
        .conditional
        .push(conditional(api, key, run_id).await?);
    if let Some(claim) = claim(api, chains, key, officers, run_id).await? {
        summary.claims.push(claim);
    }
    summary.shadow = shadow(api, key, officers, run_id).await?;
    Ok(summary)
}

/// One occurrence of a schedule, paid by the coordinator on its own.
async fn scheduled(api: &Api, key: &KeyInfo, run_id: &str) -> Result<ScheduledSummary, String> {
    let schedule_id = format!("devnet-{run_id}-schedule");
    let start = now()? + SCHEDULE_LEAD_SECS;
    let created: ScheduleInfo = api
        .post(
            "/v1/schedules",
            &CreateSchedule {
                schedule_id: schedule_id.clone(),
                payout: ScheduledPayout {
                    wallet: key.key_id.clone(),
                    chain: CHAIN.into(),
                    asset: SCHEDULED_ASSET.into(),
                    to: SCHEDULED_TO.into(),
                    amount: SCHEDULED_AMOUNT.into(),
                    reference: Some("devnet scheduled payout".into()),
                    derivation_path: None,
                },
                timing: Timing {
                    rule: Rule::Interval {
                        every_secs: SCHEDULE_EVERY_SECS,
                    },
                    start,
                    count: Some(1),
                    until: None,
                    missed: Missed::Pay,
                    grace_secs: DEFAULT_GRACE_SECS,
                },
            },
        )
        .await?;
    println!(
        "[4/5] programmable: schedule {} pays {SCHEDULED_AMOUNT} {SCHEDULED_ASSET} on {CHAIN} to {SCHEDULED_TO} once, at {} ({})",
        created.schedule_id,
        format_time(start),
        created.state
    );

    // The coordinator pays the occurrence when it falls due; the devnet
    // only watches.
    let t0 = Instant::now();
    let finished = loop {
        let s: ScheduleInfo = api.get(&format!("/v1/schedules/{schedule_id}")).await?;
        if matches!(s.state.as_str(), "finished" | "cancelled") {
            break s;
        }
        if t0.elapsed() > SCHEDULE_WAIT + Duration::from_secs(SCHEDULE_LEAD_SECS) {
            return Err(format!(
                "schedule {schedule_id} is still {} {} s after its occurrence fell due (next occurrence {})",
                s.state,
                SCHEDULE_WAIT.as_secs(),
                s.next_occurrence
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let occurrence = finished
        .occurrences
        .iter()
        .find(|o| o.occurrence == 0)
        .ok_or_else(|| {
            format!(
                "schedule {schedule_id} is {} without recording its occurrence 0",
                finished.state
            )
        })?;
    let expected = format!("{schedule_id}.0");
    if occurrence.outcome != "paid" || occurrence.payout_id.as_deref() != Some(expected.as_str()) {
        return Err(format!(
            "schedule {schedule_id} ({}): occurrence 0 is {} by payout {} (expected paid by {expected}){}",
            finished.state,
            occurrence.outcome,
            occurrence.payout_id.as_deref().unwrap_or("none"),
            occurrence
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    let paid = completed(api, &expected).await?;
    let tx_hash = paid
        .tx_hash
        .clone()
        .ok_or_else(|| format!("payout {expected} is completed without a transaction hash"))?;
    println!(
        "      schedule {schedule_id} {}: occurrence 0 due {} paid by payout {expected}, completed in {tx_hash}",
        finished.state,
        format_time(u64::try_from(occurrence.due_at).unwrap_or(0)),
    );
    Ok(ScheduledSummary {
        schedule_id,
        occurrence: 0,
        payout_id: expected,
        tx_hash,
    })
}

/// Waits (up to [`PAYMENT_WAIT`]) until payout `id` is completed on chain;
/// an error names the state it ended in or got stuck at.
async fn completed(api: &Api, id: &str) -> Result<PayoutInfo, String> {
    let t0 = Instant::now();
    loop {
        let p: PayoutInfo = api.get(&format!("/v1/payouts/{id}")).await?;
        match p.state {
            PayoutState::Completed => return Ok(p),
            PayoutState::Failed
            | PayoutState::Rejected
            | PayoutState::Expired
            | PayoutState::Cancelled
            | PayoutState::PendingApproval
            | PayoutState::TimeLocked
            | PayoutState::Held => {
                return Err(format!(
                    "payout {id} is {}: {}",
                    p.state,
                    p.reason.as_deref().unwrap_or("no reason given")
                ))
            }
            _ if t0.elapsed() > PAYMENT_WAIT => {
                return Err(format!(
                    "payout {id} is still {} after {} s",
                    p.state,
                    PAYMENT_WAIT.as_secs()
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The admin keys that sign the devnet's policy updates, or why it has none.
enum Admins {
    /// A quorum of the policy's admins.
    Quorum(Vec<SigningKey>),
    /// Why the devnet cannot sign an update.
    Missing(String),
}

/// A quorum of `policy`'s admins among the officers' keys.
fn admins(officers: &Officers, policy: &keyfold_policy::Policy) -> Result<Admins, String> {
    let Some(admins) = &policy.document().admins else {
        return Ok(Admins::Missing(format!(
            "policy version {} names no admins, so no update can be signed",
            policy.version()
        )));
    };
    let mut quorum = Vec::new();
    for path in &officers.keys {
        let key = crate::officer::load_key(path)?;
        let public = hex::encode(key.verifying_key().to_bytes());
        // A key given twice signs once: the quorum counts distinct admins.
        let repeated = quorum
            .iter()
            .any(|k: &SigningKey| k.verifying_key() == key.verifying_key());
        if !repeated && admins.keys.iter().any(|a| a.eq_ignore_ascii_case(&public)) {
            quorum.push(key);
        }
        if quorum.len() == admins.quorum {
            return Ok(Admins::Quorum(quorum));
        }
    }
    Ok(Admins::Missing(format!(
        "{} of the {} officer key(s) given are admins of policy version {}, which needs {} signatures (give them with --officer)",
        quorum.len(),
        officers.keys.len(),
        policy.version(),
        admins.quorum
    )))
}

/// Signs `document` with `keys` and pushes it (`POST /v1/policy`, as
/// `keyfold policy push` does); checks that `version` is then in force.
async fn push(
    api: &Api,
    document: String,
    keys: &[SigningKey],
    version: u64,
) -> Result<(), String> {
    let info: PolicyInfo = api
        .post("/v1/policy", &signed(document, keys))
        .await
        .map_err(|e| format!("pushing policy version {version}: {e}"))?;
    if info.version != version {
        return Err(format!(
            "pushed policy version {version}, but the coordinator has version {} in force",
            info.version
        ));
    }
    Ok(())
}

/// `document` signed by each of `keys`, as `keyfold policy sign` does.
fn signed(document: String, keys: &[SigningKey]) -> keyfold_policy::SignedPolicy {
    let signatures = keys
        .iter()
        .map(|k| keyfold_policy::AdminSignature::sign(k, &document))
        .collect();
    keyfold_policy::SignedPolicy {
        document_toml: document,
        signatures,
    }
}

/// `policy` as version `version`, otherwise unchanged.
fn with_version(policy: &keyfold_policy::Policy, version: u64) -> Result<String, String> {
    let mut doc = policy.document().clone();
    doc.version = version;
    keyfold_policy::Policy::from_document(doc)
        .and_then(|p| p.to_toml())
        .map_err(|e| format!("the devnet's policy as version {version}: {e}"))
}

/// An address of the run's own that no key holds: the last 20 bytes of
/// keccak-256 over a label naming the run.
fn beneficiary_address(run_id: &str) -> Address {
    use sha3::{Digest, Keccak256};
    let h = Keccak256::digest(format!("keyfold devnet {run_id} allocation beneficiary"));
    Address::from_slice(&h[12..])
}

/// The run's plan: [`ALLOCATION_TOKENS`] KFT on [`CHAIN`] to one
/// beneficiary, released over [`RELEASE_SECS`] from half of that ago.
fn plan(chains: &Chains, run_id: &str, beneficiary: &str, now: u64) -> Result<Plan, String> {
    let contract = chains
        .chains
        .iter()
        .find(|(id, _)| id == CHAIN)
        .map(|(_, c)| c.token.to_checksum(None))
        .ok_or_else(|| format!("the devnet has no chain {CHAIN}"))?;
    let amount = ALLOCATION_TOKENS * 10u128.pow(u32::from(TEST_TOKEN_DECIMALS));
    Plan::from_document(PlanDocument {
        plan_id: format!("devnet-{run_id}"),
        version: 1,
        token: Token {
            chain: CHAIN.into(),
            asset: TEST_TOKEN_SYMBOL.into(),
            contract: Some(contract),
            decimals: TEST_TOKEN_DECIMALS,
        },
        total: amount,
        groups: vec![Group {
            name: "devnet".into(),
            share_bps: 10_000,
            beneficiaries: vec![Beneficiary {
                id: "devnet-beneficiary".into(),
                address: beneficiary.into(),
                amount,
                start: now.saturating_sub(RELEASE_SECS / 2),
                cliff_secs: 0,
                duration_secs: RELEASE_SECS,
                revoked_at: None,
            }],
        }],
    })
    .map_err(|e| format!("the devnet's allocation plan: {e}"))
}

/// The allocation claim (see the module docs); `None` when the devnet has
/// no admin keys to put the plan in force.
async fn claim(
    api: &Api,
    chains: &Chains,
    key: &KeyInfo,
    officers: &Officers,
    run_id: &str,
) -> Result<Option<ClaimSummary>, String> {
    // The policy in force, not the file: on a reused data directory the
    // coordinator is past the file's version.
    let info: PolicyInfo = api.get("/v1/policy").await?;
    let current = keyfold_policy::Policy::from_toml(&info.document)
        .map_err(|e| format!("the policy in force (version {}): {e}", info.version))?;
    let keys = match admins(officers, &current)? {
        Admins::Quorum(keys) => keys,
        Admins::Missing(why) => {
            println!("      allocation claim skipped: {why}");
            return Ok(None);
        }
    };
    let beneficiary = beneficiary_address(run_id).to_checksum(None);
    let plan = plan(chains, run_id, &beneficiary, now()?)?;
    let with_plan = keyfold_programmable::allocation_policy::policy_with_plan(
        &info.document,
        &plan,
        &key.key_id,
    )
    .map_err(|e| {
        format!(
            "plan {} in policy version {}: {e}",
            plan.plan_id(),
            info.version
        )
    })?;
    // policy_with_plan takes the next version of the document; the
    // restored policy the one after it.
    let restored_version = current.version().checked_add(2).ok_or_else(|| {
        format!(
            "policy version {} in force: no version is left above it",
            current.version()
        )
    })?;
    let plan_version = restored_version - 1;
    // Built before anything is pushed: once the plan is in force, the
    // wallet pays nothing but claims until this is pushed.
    let restored = with_version(&current, restored_version)?;

    let pushed = push(api, with_plan, &keys, plan_version).await;
    let claimed = match &pushed {
        Ok(()) => {
            println!(
                "      policy version {plan_version}: allocation plan {} ({ALLOCATION_TOKENS} {TEST_TOKEN_SYMBOL} to {beneficiary} over {} s from {}, no cliff), signed by {} admins",
                plan.plan_id(),
                RELEASE_SECS,
                format_time(plan.span().map_or(0, |(s, _)| s)),
                keys.len()
            );
            pay_claim(api, key, &plan, run_id).await
        }
        Err(e) => Err(e.clone()),
    };
    // Whatever became of the claim, the devnet's policy goes back in force
    // (a refused push of the plan only costs a version number), so the
    // wallet pays its other payouts again, in this run and the next.
    let back = push(api, restored, &keys, restored_version).await;
    let claimed = match (claimed, back) {
        (Ok(c), Ok(())) => c,
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
        (Err(e), Err(b)) => return Err(format!("{e}; then {b}")),
    };
    println!(
        "      policy version {}: the devnet's policy (version {}) back in force",
        restored_version, info.version
    );
    Ok(Some(claimed))
}

/// Claims what has vested, rounded down, and waits until it is paid.
async fn pay_claim(
    api: &Api,
    key: &KeyInfo,
    plan: &Plan,
    run_id: &str,
) -> Result<ClaimSummary, String> {
    let (_, b) = plan
        .groups()
        .iter()
        .flat_map(|g| g.beneficiaries.iter().map(move |b| (g, b)))
        .next()
        .ok_or_else(|| format!("plan {} has no beneficiary", plan.plan_id()))?;
    let decimals = plan.token().decimals;
    let at = now()?;
    let vested = b.vested(at);
    // What had vested a little earlier, in whole hundredths of a token:
    // never above what the coordinator and the signers see as vested.
    let step = 10u128.pow(u32::from(decimals.saturating_sub(2)));
    let claim = b.vested(at.saturating_sub(CLOCK_SKEW_SECS)) / step * step;
    if claim == 0 {
        return Err(format!(
            "plan {}: nothing had vested at {} to claim",
            plan.plan_id(),
            format_time(at)
        ));
    }
    let amount = format_units(claim, decimals);
    let payout_id = format!("devnet-{run_id}-claim");
    let p: PayoutInfo = api
        .post(
            "/v1/payouts",
            &PayoutRequest {
                payout_id: payout_id.clone(),
                wallet: key.key_id.clone(),
                chain: plan.token().chain.clone(),
                asset: plan.token().asset.clone(),
                to: b.address.clone(),
                amount: amount.clone(),
                reference: Some(format!("devnet allocation claim, plan {}", plan.plan_id())),
                recent_blockhash: None,
                derivation_path: None,
                client: None,
            },
        )
        .await?;
    if p.amount_base_units != claim.to_string() {
        return Err(format!(
            "payout {payout_id}: the coordinator reads {amount} {} as {} base units, the devnet claimed {claim}",
            p.asset, p.amount_base_units
        ));
    }
    let done = completed(api, &payout_id).await?;
    let tx_hash = done
        .tx_hash
        .clone()
        .ok_or_else(|| format!("payout {payout_id} is completed without a transaction hash"))?;
    println!(
        "      claim {payout_id}: {amount} {} of {} vested to {}, completed in {tx_hash}",
        p.asset,
        format_units(vested, decimals),
        b.address
    );
    Ok(ClaimSummary {
        beneficiary: b.address.clone(),
        vested_base_units: vested.to_string(),
        claimed_base_units: claim.to_string(),
        payout_id,
        tx_hash,
    })
}

/// One conditional payout held until a deadline [`CONDITION_LEAD_SECS`]
/// ahead, released by the coordinator on its own and paid.
async fn conditional(api: &Api, key: &KeyInfo, run_id: &str) -> Result<ConditionalSummary, String> {
    let escrow_id = format!("devnet-{run_id}-escrow");
    let at = now()? + CONDITION_LEAD_SECS;
    let condition = Condition::After { at };
    let held: ConditionalPayoutInfo = api
        .post(
            "/v1/conditional-payouts",
            &CreateConditionalPayout {
                escrow_id: escrow_id.clone(),
                payout: ScheduledPayout {
                    wallet: key.key_id.clone(),
                    chain: CHAIN.into(),
                    asset: SCHEDULED_ASSET.into(),
                    to: SCHEDULED_TO.into(),
                    amount: SCHEDULED_AMOUNT.into(),
                    reference: Some("devnet conditional payout".into()),
                    derivation_path: None,
                },
                escrow: Escrow {
                    condition: condition.clone(),
                    expires_at: Some(at + ESCROW_EXPIRY_SECS),
                    on_expiry: OnExpiry::Cancel,
                },
            },
        )
        .await?;
    println!(
        "      conditional payout {escrow_id}: {SCHEDULED_AMOUNT} {SCHEDULED_ASSET} on {CHAIN} to {SCHEDULED_TO}, {} until the deadline {}",
        held.state,
        format_time(at)
    );

    // The coordinator judges the condition and pays; the devnet only
    // watches.
    let t0 = Instant::now();
    let released = loop {
        let e: ConditionalPayoutInfo = api
            .get(&format!("/v1/conditional-payouts/{escrow_id}"))
            .await?;
        match e.state.as_str() {
            "released" => break e,
            "held" if t0.elapsed() <= ESCROW_WAIT + Duration::from_secs(CONDITION_LEAD_SECS) => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            state => {
                return Err(format!(
                    "conditional payout {escrow_id} is {state} {} s after its deadline{}",
                    t0.elapsed().as_secs().saturating_sub(CONDITION_LEAD_SECS),
                    e.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ))
            }
        }
    };
    let payout_id = format!("{escrow_id}.pay");
    if released.payout_id.as_deref() != Some(payout_id.as_str()) {
        return Err(format!(
            "conditional payout {escrow_id} is released as payout {} (expected {payout_id})",
            released.payout_id.as_deref().unwrap_or("none")
        ));
    }
    let released_because = released
        .reason
        .clone()
        .ok_or_else(|| format!("conditional payout {escrow_id} is released without a reason"))?;
    let paid = completed(api, &payout_id).await?;
    let tx_hash = paid
        .tx_hash
        .clone()
        .ok_or_else(|| format!("payout {payout_id} is completed without a transaction hash"))?;
    println!(
        "      conditional payout {escrow_id} released ({released_because}), paid by payout {payout_id}, completed in {tx_hash}"
    );
    Ok(ConditionalSummary {
        escrow_id,
        payout_id,
        condition,
        released_because,
        tx_hash,
    })
}

/// An address of the run's own for the shadow's payouts, which no other
/// step pays: only they can meet the shadow's rule.
fn shadow_address(run_id: &str) -> Address {
    use sha3::{Digest, Keccak256};
    let h = Keccak256::digest(format!("keyfold devnet {run_id} shadow payee"));
    Address::from_slice(&h[12..])
}

/// `current` as version `version` with [`SHADOW_RULE`] first: ETH payouts
/// from `wallet` on [`CHAIN`] of at least [`SHADOW_CAP_WEI`] to `to` are
/// denied; everything else is decided as under `current`.
fn shadow_document(
    current: &keyfold_policy::Policy,
    version: u64,
    wallet: &str,
    to: &str,
) -> Result<String, String> {
    let to = keyfold_policy::canonical_destination(to)
        .map_err(|e| format!("the shadow's address {to}: {e}"))?;
    // Built from its serialized form: the rule's other matchers keep their
    // defaults whatever fields later policy versions add.
    let rule: keyfold_policy::Rule = serde_json::from_value(serde_json::json!({
        "name": SHADOW_RULE,
        "wallets": [wallet],
        "chains": [CHAIN],
        "assets": [SCHEDULED_ASSET],
        "amount": {"min": SHADOW_CAP_WEI.to_string()},
        "destination": {"allow": [to]},
        "action": {
            "kind": "deny",
            "reason": "the devnet's shadow policy would cap payouts to this address below 0.001 ETH"
        }
    }))
    .map_err(|e| format!("the shadow's rule: {e}"))?;
    let mut doc = current.document().clone();
    doc.version = version;
    doc.rules.insert(0, rule);
    keyfold_policy::Policy::from_document(doc)
        .and_then(|p| p.to_toml())
        .map_err(|e| format!("the shadow policy version {version}: {e}"))
}

/// The shadow step (see the module docs); `None` when the devnet has no
/// admin keys to sign the shadow.
async fn shadow(
    api: &Api,
    key: &KeyInfo,
    officers: &Officers,
    run_id: &str,
) -> Result<Option<ShadowSummary>, String> {
    let info: PolicyInfo = api.get("/v1/policy").await?;
    let current = keyfold_policy::Policy::from_toml(&info.document)
        .map_err(|e| format!("the policy in force (version {}): {e}", info.version))?;
    let keys = match admins(officers, &current)? {
        Admins::Quorum(keys) => keys,
        Admins::Missing(why) => {
            println!("      shadow policy skipped: {why}");
            return Ok(None);
        }
    };
    let shadow_version = current.version().checked_add(1).ok_or_else(|| {
        format!(
            "policy version {} in force: no version is left above it",
            current.version()
        )
    })?;
    let to = shadow_address(run_id).to_checksum(None);
    let document = shadow_document(&current, shadow_version, &key.key_id, &to)?;
    let installed: ShadowReport = api
        .post("/v1/policy/shadow", &signed(document, &keys))
        .await
        .map_err(|e| format!("installing policy version {shadow_version} in shadow: {e}"))?;
    println!(
        "      policy version {} installed in shadow (signed by {} admins): it would deny {SCHEDULED_ASSET} payouts of at least {} to {to}; version {} in force decides",
        installed.version,
        keys.len(),
        format_units(SHADOW_CAP_WEI, 18),
        installed.in_force_version
    );
    let paid = if installed.version != shadow_version {
        Err(format!(
            "installed policy version {shadow_version} in shadow, but the coordinator reports version {}",
            installed.version
        ))
    } else {
        shadow_payouts(api, key, &to, run_id).await
    };
    // Whatever became of the payouts, the shadow is removed: it would
    // otherwise stay installed (in the store, across restarts) and be
    // ended by the next policy version pushed.
    let removed: Result<ShadowReport, String> = api
        .delete("/v1/policy/shadow")
        .await
        .map_err(|e| format!("removing the shadow policy version {shadow_version}: {e}"));
    let (payout_ids, report) = match (paid, removed) {
        (Ok(ids), Ok(r)) => (ids, r),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
        (Err(e), Err(r)) => return Err(format!("{e}; then {r}")),
    };
    if report.version != shadow_version {
        return Err(format!(
            "removed the shadow version {}, the devnet installed version {shadow_version}",
            report.version
        ));
    }
    // The first payout is the one the shadow would deny: its request must
    // be among the differences the coordinator reports.
    let first = payout_ids
        .first()
        .ok_or_else(|| "the devnet made no payout under the shadow".to_string())?;
    let denied: PayoutInfo = api.get(&format!("/v1/payouts/{first}")).await?;
    let seen = report.differences.iter().any(|d| {
        d.request_id == denied.request_id
            && d.shadow.outcome == OutcomeKind::Deny
            && d.shadow.rule.as_deref() == Some(SHADOW_RULE)
    });
    if !seen {
        return Err(format!(
            "the shadow's report ({} evaluated, {} differed) does not list payout {} (request {}) as denied by {SHADOW_RULE}",
            report.evaluated, report.differed, first, denied.request_id
        ));
    }
    println!(
        "      shadow version {shadow_version} removed: {} request(s) evaluated under it, {} decided otherwise (payout {} denied by {SHADOW_RULE}, allowed by version {})",
        report.evaluated, report.differed, first, report.in_force_version
    );
    Ok(Some(ShadowSummary {
        version_in_force: report.in_force_version,
        shadow_version,
        requests: report.evaluated,
        differences: report.differed,
        payout_ids,
        differing: report.differences,
    }))
}

/// The payouts made under the shadow ([`SHADOW_AMOUNTS`] to `to`), waited
/// for until completed: the version in force decides them, whatever the
/// shadow says.
async fn shadow_payouts(
    api: &Api,
    key: &KeyInfo,
    to: &str,
    run_id: &str,
) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for (i, amount) in SHADOW_AMOUNTS.iter().enumerate() {
        let payout_id = format!("devnet-{run_id}-shadow-{i}");
        let _: PayoutInfo = api
            .post(
                "/v1/payouts",
                &PayoutRequest {
                    payout_id: payout_id.clone(),
                    wallet: key.key_id.clone(),
                    chain: CHAIN.into(),
                    asset: SCHEDULED_ASSET.into(),
                    to: to.into(),
                    amount: (*amount).into(),
                    reference: Some("devnet payout under a shadow policy".into()),
                    recent_blockhash: None,
                    derivation_path: None,
                    client: None,
                },
            )
            .await?;
        ids.push(payout_id);
    }
    for id in &ids {
        completed(api, id).await?;
    }
    Ok(ids)
}
