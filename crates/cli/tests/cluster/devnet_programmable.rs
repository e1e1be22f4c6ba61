//! The programmable payments of `keyfold devnet --out`: one scheduled
//! occurrence, paid by the coordinator as the payout `<schedule_id>.0`;
//! one conditional payout released when its deadline passed and paid as
//! `<escrow_id>.pay`; one allocation claim under a plan the devnet's
//! admins signed into the policy, bounded by what had vested, after which
//! the devnet's policy is back in force as a newer version; and a shadow
//! policy version whose report counts the devnet's payout it would have
//! denied, removed afterwards. The JSON is checked against the cluster
//! that ran it (schedules, escrows, payouts, signatures, the audit log's
//! decisions, escrow events, policy versions and shadow events), not only
//! against itself.
//!
//! The fixture's devnet (`--once`, under the cluster's policy and two of
//! its officers) stopped its anvils when it exited, so its transactions can
//! only be checked as signed: the hash of the raw transaction, the sender
//! recovered with k256. A devnet of its own, on a fresh data directory with
//! its own policy and officers and left serving, shows them on chain:
//! receipts, the conditional payout's transaction as the chain holds it,
//! and the beneficiary's token balance read from its anvil.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256};
use keyfold_audit::{Entry, Event, Outcome};
use keyfold_coordinator::chain_rpc::EvmRpc;
use keyfold_policy::{Action, Policy};
use keyfold_proto::api::{
    ConditionalPayoutInfo, KeyInfo, PayoutInfo, PayoutState, ScheduleInfo, SignResult,
};
use serde_json::Value;

use crate::fixture::*;

/// A devnet's cluster, as the checks read it.
struct Devnet {
    http: reqwest::Client,
    url: String,
    token: String,
    dir: PathBuf,
    /// The secp256k1 hot wallet the devnet pays from.
    wallet: String,
}

impl Devnet {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The coordinator's audit log, as written so far.
    fn audit(&self) -> Vec<Entry> {
        let p = self
            .dir
            .join("coordinator")
            .join("audit")
            .join("entries.jsonl");
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A devnet's `--out` file.
fn out_of(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The EVM address of a SEC1 secp256k1 public key (hex).
fn evm_address(sec1_hex: &str) -> Address {
    use sha3::{Digest, Keccak256};
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&hex::decode(sec1_hex).unwrap()).unwrap();
    let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
    Address::from_slice(&h[12..])
}

fn base_units(v: &Value) -> u128 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Payout `payout_id`, completed with `tx_hash`: its raw transaction
/// hashes to it (sha3 here) and the signature recovers to the paying
/// wallet (k256).
async fn completed_and_signed(d: &Devnet, payout_id: &str, tx_hash: &str) -> PayoutInfo {
    use sha3::{Digest, Keccak256};
    let p: PayoutInfo = d.get(&format!("/v1/payouts/{payout_id}")).await;
    assert_eq!(p.state, PayoutState::Completed, "{p:?}");
    assert_eq!(p.tx_hash.as_deref(), Some(tx_hash), "{p:?}");
    let raw = hex::decode(p.raw_tx.as_deref().unwrap().trim_start_matches("0x")).unwrap();
    assert_eq!(
        format!("0x{}", hex::encode(Keccak256::digest(&raw))),
        tx_hash
    );
    let sig: SignResult = d.get(&format!("/v1/signatures/{}", p.request_id)).await;
    let digest = Keccak256::digest(hex::decode(&sig.message).unwrap());
    let s = k256::ecdsa::Signature::from_slice(&hex::decode(&sig.signature).unwrap()).unwrap();
    let from: Address = p.from.parse().unwrap();
    let recovers = (0u8..2).any(|v| {
        k256::ecdsa::RecoveryId::from_byte(v)
            .and_then(|id| k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &s, id).ok())
            .is_some_and(|vk| {
                let h = Keccak256::digest(&vk.to_encoded_point(false).as_bytes()[1..]);
                Address::from_slice(&h[12..]) == from
            })
    });
    assert!(
        recovers,
        "{payout_id}: the signature must recover to {from}"
    );
    p
}

/// Vested at `t` under a vesting rule, computed here: nothing before the
/// cliff, all from the end, linear from `start` in between (rounded down).
fn vested_at(action: &Action, t: u64) -> u128 {
    let Action::Vesting {
        start,
        cliff_secs,
        duration_secs,
        total,
        revoked_at,
    } = *action
    else {
        panic!("not a vesting rule: {action:?}");
    };
    let t = revoked_at.map_or(t, |r| t.min(r));
    if t < start + cliff_secs {
        0
    } else if t >= start + duration_secs {
        total
    } else {
        let v = U256::from(total) * U256::from(t - start) / U256::from(duration_secs);
        v.to::<u128>()
    }
}

/// The policy versions of the log: (version, document).
fn policy_versions(log: &[Entry]) -> Vec<(u64, Policy)> {
    log.iter()
        .filter_map(|e| match &e.event {
            Event::PolicyVersion {
                version, document, ..
            } => Some((*version, Policy::from_toml(document).unwrap())),
            _ => None,
        })
        .collect()
}

/// What the devnet's conditional payout and its scheduled one pay (and
/// to whom): 0.001 ETH.
const DEVNET_PAYEE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const DEVNET_PAYMENT_WEI: u128 = 1_000_000_000_000_000;

/// The payouts a devnet's `programmable` section names, checked.
struct Checked {
    scheduled: PayoutInfo,
    conditional: PayoutInfo,
    claim: PayoutInfo,
    /// The version that carried the allocation plan.
    plan_version: u64,
}

/// The `escrow` audit events of `escrow_id`: (action, detail).
fn escrow_events(log: &[Entry], escrow_id: &str) -> Vec<(String, String)> {
    log.iter()
        .filter_map(|e| match &e.event {
            Event::Escrow {
                escrow_id: id,
                action,
                detail,
            } if id == escrow_id => Some((action.clone(), detail.clone())),
            _ => None,
        })
        .collect()
}

/// Checks the `conditional` section: one escrow, held on a deadline,
/// released by it (the coordinator's state, reason and audit event agree
/// with the JSON), paid by `<escrow_id>.pay` no earlier than the deadline,
/// 0.001 ETH to the devnet's payee, signed by the devnet's wallet.
async fn check_conditional(d: &Devnet, p: &Value) -> PayoutInfo {
    let conditional = p["conditional"].as_array().expect("conditional");
    assert_eq!(conditional.len(), 1, "{p}");
    let c = &conditional[0];
    let escrow_id = c["escrow_id"].as_str().unwrap();
    assert_eq!(c["payout_id"], format!("{escrow_id}.pay"), "{c}");
    assert_eq!(c["condition"]["kind"], "after", "{c}");
    let at = c["condition"]["at"].as_u64().expect("a deadline");
    let because = c["released_because"].as_str().unwrap();
    assert!(because.contains(&format!("deadline {at}")), "{c}");

    let e: ConditionalPayoutInfo = d.get(&format!("/v1/conditional-payouts/{escrow_id}")).await;
    assert_eq!(e.state, "released", "{e:?}");
    assert_eq!(e.reason.as_deref(), Some(because), "{e:?}");
    assert_eq!(e.payout_id.as_deref(), c["payout_id"].as_str(), "{e:?}");
    assert_eq!(
        serde_json::to_value(&e.escrow.condition).unwrap(),
        c["condition"],
        "{e:?}"
    );

    // The audit log: created, then released once, naming the payout, logged
    // no earlier than the deadline.
    let log = d.audit();
    let events = escrow_events(&log, escrow_id);
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["created", "released"], "{events:?}");
    assert!(
        events[1].1.contains(&format!("{escrow_id}.pay")),
        "{events:?}"
    );
    let released_at = log
        .iter()
        .find(|x| {
            matches!(&x.event, Event::Escrow { escrow_id: id, action, .. }
                if id == escrow_id && action == "released")
        })
        .map(|x| x.time)
        .unwrap();
    assert!(
        released_at >= at as i64 * 1000,
        "released at {released_at} ms, before the deadline {at}"
    );

    let paid = completed_and_signed(
        d,
        c["payout_id"].as_str().unwrap(),
        c["tx_hash"].as_str().unwrap(),
    )
    .await;
    assert!(
        paid.created_at >= at as i64,
        "paid before the deadline: {paid:?}"
    );
    assert_eq!(
        (
            paid.asset.as_str(),
            paid.chain.as_str(),
            paid.wallet.as_str()
        ),
        ("ETH", "devnet-l1", d.wallet.as_str())
    );
    assert_eq!(paid.to, DEVNET_PAYEE);
    assert_eq!(paid.amount_base_units, DEVNET_PAYMENT_WEI.to_string());
    paid
}

/// Checks the `shadow` section: a shadow one version above the version in
/// force, which evaluated the devnet's payouts and counts at least one
/// difference: the first payout, allowed in force and denied by the shadow's
/// rule; the second decided alike. Both were paid (the shadow decides
/// nothing), and the audit log holds the shadow installed, then removed.
async fn check_shadow(d: &Devnet, p: &Value) {
    let s = &p["shadow"];
    assert!(s.is_object(), "the devnet has admin keys: {p}");
    let in_force = s["version_in_force"].as_u64().unwrap();
    let version = s["shadow_version"].as_u64().unwrap();
    assert_eq!(version, in_force + 1, "{s}");
    let requests = s["requests"].as_u64().unwrap();
    let differences = s["differences"].as_u64().unwrap();
    assert!(requests >= 2, "{s}");
    assert!((1..=requests).contains(&differences), "{s}");

    let ids: Vec<&str> = s["payout_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{s}");
    let mut requests_of = Vec::new();
    for id in &ids {
        let paid: PayoutInfo = d.get(&format!("/v1/payouts/{id}")).await;
        assert_eq!(paid.state, PayoutState::Completed, "{paid:?}");
        completed_and_signed(d, id, paid.tx_hash.as_deref().unwrap()).await;
        requests_of.push(paid.request_id);
    }
    let differing = s["differing"].as_array().unwrap();
    let difference_of = |request: &str| {
        differing
            .iter()
            .find(|x| x["request_id"] == request)
            .cloned()
    };
    let denied = difference_of(&requests_of[0])
        .unwrap_or_else(|| panic!("{}'s request is not a difference: {s}", ids[0]));
    assert_eq!(denied["in_force"]["outcome"], "allow", "{denied}");
    assert_eq!(denied["shadow"]["outcome"], "deny", "{denied}");
    assert_eq!(denied["shadow"]["rule"], "devnet-shadow-cap", "{denied}");
    assert!(
        difference_of(&requests_of[1]).is_none(),
        "{} is decided alike under both versions: {s}",
        ids[1]
    );

    // The version in force decided: its decision on the denied payout is
    // an allow, under `in_force`.
    let log = d.audit();
    let decided: Vec<(u64, Outcome)> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::Decision {
                request_id,
                policy_version,
                outcome,
                ..
            } if *request_id == requests_of[0] => Some((*policy_version, *outcome)),
            _ => None,
        })
        .collect();
    assert!(!decided.is_empty(), "no decision on {}", requests_of[0]);
    assert!(
        decided.iter().all(|x| *x == (in_force, Outcome::Allow)),
        "{decided:?}"
    );

    // The devnet's shadow (its rule is in the document) was installed,
    // then removed: one pair of events, in that order.
    let shadow_events: Vec<(u64, String)> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::PolicyShadow {
                version: v,
                document,
                action,
                ..
            } if document.contains("devnet-shadow-cap") => Some((*v, action.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        shadow_events,
        [
            (version, "installed".to_string()),
            (version, "removed".to_string())
        ]
    );
}

/// Checks a devnet's `programmable` section against the cluster it ran on
/// (which must be running).
async fn check(d: &Devnet, doc: &Value) -> Checked {
    let p = &doc["programmable"];
    assert!(p.is_object(), "no programmable section in {doc}");

    // One occurrence, the first, paid by the payout its number names.
    let scheduled = p["scheduled"].as_array().expect("scheduled");
    assert_eq!(scheduled.len(), 1, "{p}");
    let s = &scheduled[0];
    let schedule_id = s["schedule_id"].as_str().unwrap();
    assert_eq!(s["occurrence"], 0, "{s}");
    assert_eq!(s["payout_id"], format!("{schedule_id}.0"), "{s}");
    let info: ScheduleInfo = d.get(&format!("/v1/schedules/{schedule_id}")).await;
    assert_eq!(info.state, "finished", "{info:?}");
    assert_eq!(info.timing.count, Some(1), "{info:?}");
    let o = info
        .occurrences
        .iter()
        .find(|o| o.occurrence == 0)
        .unwrap_or_else(|| panic!("occurrence 0 not recorded: {info:?}"));
    assert_eq!(o.outcome, "paid", "{info:?}");
    assert_eq!(o.payout_id.as_deref(), s["payout_id"].as_str(), "{info:?}");
    assert!(o.at >= o.due_at, "paid before it was due: {info:?}");
    let paid = completed_and_signed(
        d,
        s["payout_id"].as_str().unwrap(),
        s["tx_hash"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (paid.asset.as_str(), paid.wallet.as_str()),
        ("ETH", d.wallet.as_str())
    );

    let conditional = check_conditional(d, p).await;

    // One claim: more than nothing, at most what had vested.
    let claims = p["claims"].as_array().expect("claims");
    assert_eq!(claims.len(), 1, "the devnet has admin keys: {p}");
    let claim = &claims[0];
    let claimed = base_units(&claim["claimed_base_units"]);
    let vested = base_units(&claim["vested_base_units"]);
    assert!(claimed > 0 && claimed <= vested, "{claim}");
    let payout = completed_and_signed(
        d,
        claim["payout_id"].as_str().unwrap(),
        claim["tx_hash"].as_str().unwrap(),
    )
    .await;
    assert_eq!(
        (payout.asset.as_str(), payout.chain.as_str()),
        ("KFT", "devnet-l1")
    );
    assert_eq!(payout.wallet, d.wallet);
    assert_eq!(payout.to, claim["beneficiary"].as_str().unwrap());
    assert_eq!(payout.amount_base_units, claimed.to_string());

    // The coordinator allowed it by the plan's vesting rule, in the version
    // that carried the plan, within what that rule had vested at the
    // decision's time (computed here from the logged rule).
    let log = d.audit();
    let versions = policy_versions(&log);
    let decisions: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event {
            Event::Decision {
                request_id,
                policy_version,
                evaluated_at,
                outcome,
                rule,
                ..
            } if *request_id == payout.request_id => {
                Some((*policy_version, *evaluated_at, *outcome, rule.clone()))
            }
            _ => None,
        })
        .collect();
    assert!(
        !decisions.is_empty(),
        "no decision on {}",
        payout.request_id
    );
    let plan_version = decisions[0].0;
    for (version, at, outcome, rule) in decisions {
        assert_eq!(
            (version, outcome),
            (plan_version, Outcome::Allow),
            "{rule:?}"
        );
        let rule = rule.unwrap_or_default();
        assert!(
            rule.starts_with("allocation/") && rule.ends_with("/devnet-beneficiary"),
            "decided by {rule}"
        );
        let (_, policy) = versions
            .iter()
            .find(|(v, _)| *v == version)
            .unwrap_or_else(|| panic!("policy version {version} not in the log"));
        let r = policy
            .document()
            .rules
            .iter()
            .find(|r| r.name == rule)
            .unwrap();
        let by_rule = vested_at(&r.action, at);
        assert!(
            claimed <= by_rule,
            "claimed {claimed} above the {by_rule} vested at {at} under {rule}"
        );
    }

    // The next version is the one before the plan again, apart from its
    // number: the devnet's policy back in force, the plan's rules gone.
    let version = |v: u64| {
        versions
            .iter()
            .rev()
            .find(|(x, _)| *x == v)
            .map(|(_, p)| p.document().clone())
            .unwrap_or_else(|| panic!("policy version {v} not in the log"))
    };
    let (before, mut restored) = (version(plan_version - 1), version(plan_version + 1));
    restored.version = before.version;
    assert_eq!(
        restored,
        before,
        "version {} restores {}",
        plan_version + 1,
        plan_version - 1
    );

    // The shadow came after the claim, beside the restored policy.
    check_shadow(d, p).await;
    assert_eq!(
        p["shadow"]["version_in_force"].as_u64(),
        Some(plan_version + 1),
        "{p}"
    );
    Checked {
        scheduled: paid,
        conditional,
        claim: payout,
        plan_version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_paid_a_scheduled_occurrence_a_released_escrow_and_a_vested_claim_and_reported_a_shadow_difference(
) {
    let c = cluster().await;
    let d = Devnet {
        http: c.http.clone(),
        url: c.url(""),
        token: c.token.clone(),
        dir: c.dir.clone(),
        wallet: c.ecdsa.key_id.clone(),
    };
    let plan_version = check(&d, &out_of(&c.dir.join("devnet.json")))
        .await
        .plan_version;
    // The fixture's devnet started from the cluster's genesis policy: the
    // plan came in as version 2, the restored policy as 3, now in force
    // unless a test pushed a later one.
    assert_eq!(plan_version, 2);
    let status = c.status().await.expect("the coordinator answers");
    assert!(status.policy_version >= 3, "{status:?}");
}

/// A devnet serving in the background, stopped (SIGTERM, which stops its
/// nodes and anvils) when dropped; a watchdog stops it if this process
/// dies first.
struct Serving(Child);

impl Serving {
    fn start(args: &[&str], dir: &Path, log: &Path) -> Serving {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .arg("devnet")
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let script = "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; \
                      do sleep 1; done; kill -TERM \"$2\" 2>/dev/null";
        let _ = Command::new("sh")
            .args(["-c", script, "sh"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        Serving(child)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
        }
        let _ = self.0.wait();
    }
}

/// The L1's RPC URL in a chain registry file the devnet wrote.
fn l1_url(registry: &str) -> String {
    let block = registry
        .split("[[chains]]")
        .find(|b| b.contains("id = \"devnet-l1\""))
        .unwrap_or_else(|| panic!("no devnet-l1 in\n{registry}"));
    let at = block.find("rpc_urls = [\"").expect("rpc_urls") + "rpc_urls = [\"".len();
    let rest = &block[at..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_with_its_own_policy_pays_its_schedule_and_claim_on_chain() {
    // The shared cluster's lock, its officers' primes, and ports of its own
    // above the fixture's (API and signers, then the devnet's anvils at +20).
    let c = cluster().await;
    let dir = c.dir.join("devnet-own-policy");
    let out = dir.join("devnet.json");
    std::fs::create_dir_all(&dir).unwrap();
    let port = (c.port + 40).to_string();
    let log = c.dir.join("logs").join("devnet-own-policy.log");
    let primes = c.dir.join("test-primes");
    let mut devnet = Serving::start(
        &[
            "--base-port",
            &port,
            "--out",
            out.to_str().unwrap(),
            "--seed-primes",
            primes.to_str().unwrap(),
        ],
        &dir,
        &log,
    );
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("serving: API")
    {
        assert!(
            devnet.0.try_wait().unwrap().is_none(),
            "devnet exited:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "devnet never served:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let doc = out_of(&out);
    let http = reqwest::Client::new();
    let token = std::fs::read_to_string(dir.join("api-token")).unwrap();
    let mut d = Devnet {
        http,
        url: format!("http://127.0.0.1:{port}"),
        token: token.trim().to_string(),
        dir: dir.clone(),
        wallet: String::new(),
    };
    // The wallet whose key signed the JSON's secp256k1 signature.
    let keys: Value = d.get("/v1/keys").await;
    let keys: Vec<KeyInfo> = serde_json::from_value(keys["keys"].clone()).unwrap();
    d.wallet = keys
        .iter()
        .find(|k| Some(k.public_key.as_str()) == doc["ecdsa"]["public_key"].as_str())
        .unwrap_or_else(|| panic!("no key signed {}", doc["ecdsa"]))
        .key_id
        .clone();
    let checked = check(&d, &doc).await;
    // Its own policy (1) got the treasury's daily limits (2) before the
    // plan (3); the restored policy (4) is in force.
    assert_eq!(checked.plan_version, 3);
    let policy: keyfold_proto::api::PolicyInfo = d.get("/v1/policy").await;
    assert_eq!(policy.version, 4);

    // On the devnet's L1: the three transactions mined with successful
    // receipts in the blocks the coordinator reports.
    let registry = std::fs::read_to_string(dir.join("config").join("chains.toml")).unwrap();
    let rpc = EvmRpc::new(vec![l1_url(&registry)], Duration::from_secs(10)).unwrap();
    for p in [&checked.scheduled, &checked.conditional, &checked.claim] {
        let hash: B256 = p.tx_hash.as_deref().unwrap().parse().unwrap();
        let receipt = rpc
            .transaction_receipt(hash)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no receipt for {hash} on the L1", p.payout_id));
        assert!(receipt.success, "{}: {hash} reverted", p.payout_id);
        assert_eq!(Some(receipt.block_number), p.block_number, "{p:?}");
    }
    // The conditional payout's transaction as the L1 holds it (the node's
    // own JSON, decoded here): from the devnet's wallet, 0.001 ETH to the
    // payee, no calldata, in the block its receipt names.
    let paid = &checked.conditional;
    let tx: Value = rpc
        .raw_request(
            "eth_getTransactionByHash",
            serde_json::json!([paid.tx_hash.as_deref().unwrap()]),
        )
        .await
        .unwrap();
    assert!(tx.is_object(), "{}: not on the L1", paid.payout_id);
    let field = |name: &str| {
        tx[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {tx}"))
    };
    let hex_u =
        |name: &str| U256::from_str_radix(field(name).trim_start_matches("0x"), 16).unwrap();
    assert_eq!(
        field("from").parse::<Address>().unwrap(),
        paid.from.parse::<Address>().unwrap()
    );
    assert_eq!(
        field("to").parse::<Address>().unwrap(),
        DEVNET_PAYEE.parse::<Address>().unwrap()
    );
    assert_eq!(hex_u("value"), U256::from(DEVNET_PAYMENT_WEI), "{tx}");
    assert!(matches!(field("input"), "0x" | ""), "{tx}");
    assert_eq!(
        Some(hex_u("blockNumber").to::<u64>()),
        paid.block_number,
        "{tx}"
    );
    // The sender is the devnet's secp256k1 wallet: the address of the key
    // that signed the JSON's ECDSA signature (k256 and keccak here).
    assert_eq!(
        field("from").parse::<Address>().unwrap(),
        evm_address(doc["ecdsa"]["public_key"].as_str().unwrap()),
        "{tx}"
    );

    // The beneficiary's address is the run's own: its KFT balance on the
    // L1 is the claim, read with a `balanceOf` call encoded here.
    let claim = &checked.claim;
    let token: Address = claim.token_contract.as_deref().unwrap().parse().unwrap();
    let owner: Address = claim.to.parse().unwrap();
    let mut call = vec![0x70, 0xa0, 0x82, 0x31];
    call.extend([0u8; 12]);
    call.extend(owner.as_slice());
    let balance = rpc.call(token, call).await.unwrap();
    assert_eq!(
        U256::from_be_slice(&balance),
        U256::from(claim.amount_base_units.parse::<u128>().unwrap()),
        "{owner}'s KFT on the devnet's L1"
    );

    // SIGTERM: the devnet stops its nodes and chains, and exits cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &devnet.0.id().to_string()])
        .status();
    let status = devnet.0.wait().unwrap();
    assert!(status.success(), "devnet exit on SIGTERM: {status}");
}
