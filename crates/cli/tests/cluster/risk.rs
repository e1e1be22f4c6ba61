//! The risk module on the cluster: customer payouts judged by the default
//! tree, a device burst frozen and lifted by two officers (one is not
//! enough), impossible travel held for review and released or rejected by
//! an officer's signed review, a step-up asked of a new device, windows
//! that survive a restart, and identifiers that never appear in the clear.
//! Each test uses customers and devices of its own, so tests before it do
//! not change its windows.

use std::process::Command;

use keyfold_proto::api::{FreezeList, PaymentClient, PayoutInfo, PayoutState, ReviewList};

use crate::fixture::*;
use crate::payouts::{payout, unique};

fn client(customer: &str, device: &str, country: &str) -> PaymentClient {
    PaymentClient {
        customer_id: customer.into(),
        device_id: Some(device.into()),
        ip: Some("198.51.100.7".into()),
        country: Some(country.into()),
        kyc_tier: Some("basic".into()),
        device_signature: None,
        totp: None,
        password: None,
    }
}

impl Cluster {
    /// A customer payout of `amount` ETH on the L1.
    async fn customer_payout(&self, prefix: &str, amount: &str, who: PaymentClient) -> PayoutInfo {
        let mut req = payout(&unique(prefix), self, "devnet-l1", "ETH", amount);
        req.client = Some(who);
        self.payout_ok(&req).await
    }

    /// Runs the `keyfold` binary against this cluster; (success, stdout+stderr).
    fn keyfold_api(&self, args: &[&str]) -> (bool, String) {
        let token = self.dir.join("api-token");
        let out = Command::new(BIN)
            .args(args)
            .args([
                "--api",
                &self.url(""),
                "--token-file",
                token.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn officer_key(&self, name: &str) -> String {
        self.dir
            .join(format!("{name}.key"))
            .to_str()
            .unwrap()
            .to_string()
    }
}

fn risk_code(p: &PayoutInfo) -> Option<&str> {
    p.risk.as_ref().and_then(|r| r.code.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_payout_is_judged_logged_with_pseudonyms_and_completes() {
    let c = cluster().await;
    let customer = unique("alice@example.com");
    let p = c
        .customer_payout(
            "risk-ok",
            "0.001",
            client(&customer, &unique("phone"), "DE"),
        )
        .await;
    let risk = p
        .risk
        .clone()
        .expect("a judged payout shows its risk decision");
    assert_eq!(risk.action, "allow", "{p:?}");
    assert!(risk.seq > 0 && risk.code.is_none(), "{risk:?}");
    c.wait_completed(&p.payout_id).await;
    // Neither the request's view nor the audit log holds the customer id.
    let (_, _, body) = c
        .get::<serde_json::Value>(&format!("/v1/requests/{}", p.request_id))
        .await;
    assert!(
        body.contains("\"cu_"),
        "the request carries the pseudonym: {body}"
    );
    assert!(!body.contains(&customer), "{body}");
    let log = std::fs::read_to_string(c.dir.join("coordinator/audit/entries.jsonl")).unwrap();
    assert!(
        !log.contains(&customer),
        "the audit log holds a raw customer id"
    );
    let decision = c
        .coordinator_audit()
        .into_iter()
        .find_map(|e| match e.event {
            keyfold_audit::Event::RiskDecision {
                request_id,
                seq,
                action,
                ..
            } if request_id == p.request_id => Some((seq, action)),
            _ => None,
        })
        .expect("the decision is in the audit log");
    assert_eq!(decision, (risk.seq, "allow".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_burst_is_frozen_and_only_two_officers_lift_the_freeze() {
    let c = cluster().await;
    let customer = unique("burst-customer");
    let device = unique("stolen-phone");
    // The default tree freezes a device's sixth payment in ten minutes.
    for i in 0..5 {
        let p = c
            .customer_payout("burst", "0.0001", client(&customer, &device, "DE"))
            .await;
        assert_eq!(risk_code(&p), None, "payment {i} should pass: {p:?}");
    }
    let sixth = c
        .customer_payout("burst", "0.0001", client(&customer, &device, "DE"))
        .await;
    assert_eq!(sixth.state, PayoutState::Rejected, "{sixth:?}");
    assert_eq!(risk_code(&sixth), Some("risk_frozen"), "{sixth:?}");
    let risk = sixth.risk.clone().unwrap();
    assert!(
        risk.reasons.contains(&"device-burst".to_string()),
        "{risk:?}"
    );
    let freeze_id = risk
        .freeze_id
        .clone()
        .expect("the decision names its freeze");
    // Frozen: the next payment from the device stops before the engine.
    let seventh = c
        .customer_payout("burst", "0.0001", client(&customer, &device, "DE"))
        .await;
    assert_eq!(risk_code(&seventh), Some("risk_frozen"));
    assert_eq!(seventh.risk.as_ref().map(|r| r.seq), Some(0), "{seventh:?}");
    assert_eq!(
        seventh.risk.as_ref().and_then(|r| r.freeze_id.clone()),
        Some(freeze_id.clone())
    );
    // The same customer's other device is not frozen (device scope).
    let other = c
        .customer_payout(
            "burst",
            "0.0001",
            client(&customer, &unique("laptop"), "DE"),
        )
        .await;
    assert_ne!(risk_code(&other), Some("risk_frozen"), "{other:?}");
    // Listed, with a pseudonym as subject.
    let (_, list, body) = c.get::<FreezeList>("/v1/freezes").await;
    let f = list
        .unwrap()
        .freezes
        .into_iter()
        .find(|f| f.freeze_id == freeze_id)
        .unwrap_or_else(|| panic!("{freeze_id} not listed: {body}"));
    assert_eq!(f.scope, "device");
    assert!(
        f.subject.starts_with("dv_") && !f.subject.contains(&device),
        "{f:?}"
    );
    // One officer, even signing twice, cannot lift it.
    let alice = c.officer_key("alice");
    let (ok, out) = c.keyfold_api(&[
        "freeze", "lift", &freeze_id, "--key", &alice, "--key", &alice,
    ]);
    assert!(!ok && out.contains("needs 2 distinct officers"), "{out}");
    // A key that is no officer's does not count as the second.
    let stranger = c.dir.join(format!("{}.key", unique("stranger")));
    keyfold(&["approver", "keygen", "--out", stranger.to_str().unwrap()]);
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "lift",
        &freeze_id,
        "--key",
        &alice,
        "--key",
        stranger.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("not an officer"), "{out}");
    // Two officers on two machines: alice signs to a file, bob adds and submits.
    let partial = c.dir.join(format!("{}.json", unique("lift")));
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "lift",
        &freeze_id,
        "--key",
        &alice,
        "--out",
        partial.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "lift",
        &freeze_id,
        "--file",
        partial.to_str().unwrap(),
        "--key",
        &c.officer_key("bob"),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("lifted") && out.contains("alice") && out.contains("bob"),
        "{out}"
    );
    let (_, list, _) = c.get::<FreezeList>("/v1/freezes").await;
    assert!(!list
        .unwrap()
        .freezes
        .iter()
        .any(|f| f.freeze_id == freeze_id));
    // Lifted: the device's next payment is judged by the engine again
    // (seq > 0), not stopped by the freeze.
    let after = c
        .customer_payout("burst", "0.0001", client(&customer, &device, "DE"))
        .await;
    assert!(after.risk.as_ref().is_some_and(|r| r.seq > 0), "{after:?}");
    // A second lift of the same freeze is refused.
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "lift",
        &freeze_id,
        "--key",
        &alice,
        "--key",
        &c.officer_key("bob"),
    ]);
    assert!(!ok && out.contains("lifted already"), "{out}");
}

/// A customer pays from Germany, then from the US a moment later: the
/// default tree holds the second payment for review.
async fn travelled(c: &Cluster, prefix: &str) -> PayoutInfo {
    let customer = unique(prefix);
    let device = unique("phone");
    let first = c
        .customer_payout(prefix, "0.0001", client(&customer, &device, "DE"))
        .await;
    assert_eq!(risk_code(&first), None, "{first:?}");
    let held = c
        .customer_payout(prefix, "0.0002", client(&customer, &device, "US"))
        .await;
    assert_eq!(held.state, PayoutState::Held, "{held:?}");
    assert_eq!(risk_code(&held), Some("risk_review"), "{held:?}");
    assert!(
        held.risk
            .as_ref()
            .unwrap()
            .reasons
            .contains(&"impossible-travel".to_string()),
        "{held:?}"
    );
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_travel_is_held_for_review_and_an_officers_approval_releases_it() {
    let c = cluster().await;
    let held = travelled(&c, "travel-ok").await;
    let (_, list, body) = c.get::<ReviewList>("/v1/reviews").await;
    let r = list
        .unwrap()
        .reviews
        .into_iter()
        .find(|r| r.request_id == held.request_id)
        .unwrap_or_else(|| panic!("not in the queue: {body}"));
    assert_eq!(r.payout_id.as_deref(), Some(held.payout_id.as_str()));
    assert!(
        r.expires_at.is_some(),
        "a held request expires if nobody acts"
    );
    let (ok, out) = c.keyfold_api(&["review", "list"]);
    assert!(ok && out.contains(&held.request_id), "{out}");
    // A stranger's review is refused and changes nothing.
    let stranger = c.dir.join(format!("{}.key", unique("stranger")));
    keyfold(&["approver", "keygen", "--out", stranger.to_str().unwrap()]);
    let (ok, out) = c.keyfold_api(&[
        "review",
        "approve",
        &held.request_id,
        "--key",
        stranger.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("not an officer"), "{out}");
    // An escalation is recorded; the payout stays held.
    let (ok, out) = c.keyfold_api(&[
        "review",
        "escalate",
        &held.request_id,
        "--key",
        &c.officer_key("carol"),
    ]);
    assert!(ok && out.contains("carol escalate"), "{out}");
    // An officer's approval releases it to the policy, whose rule
    // `risky-payouts` (score above 40) asks two treasury officers, at the
    // coordinator and at every signer.
    let (ok, out) = c.keyfold_api(&[
        "review",
        "approve",
        &held.request_id,
        "--key",
        &c.officer_key("alice"),
    ]);
    assert!(ok, "{out}");
    let (_, p, body) = c
        .get::<PayoutInfo>(&format!("/v1/payouts/{}", held.payout_id))
        .await;
    let p = p.unwrap_or_else(|| panic!("{body}"));
    assert_eq!(p.state, PayoutState::PendingApproval, "{p:?}");
    let (_, status, body) = c
        .get::<keyfold_proto::api::RequestStatus>(&format!("/v1/requests/{}", held.request_id))
        .await;
    let status = status.unwrap_or_else(|| panic!("{body}"));
    let facts = status.request.risk.expect("the policy saw the risk facts");
    assert_eq!(facts.action, keyfold_policy::RiskAction::Review);
    assert!(facts.score > 40, "{facts:?}");
    assert_eq!(
        status
            .decision
            .as_ref()
            .and_then(|d| d.rule.as_ref())
            .map(|r| r.name.as_str()),
        Some("risky-payouts"),
        "{body}"
    );
    c.decide("approve", &held.request_id, "alice");
    c.decide("approve", &held.request_id, "bob");
    let done = c.wait_completed(&held.payout_id).await;
    assert_eq!(
        done.risk.as_ref().map(|r| r.action.as_str()),
        Some("review")
    );
    // Reviewed once: a second review of a released request is refused.
    let (ok, out) = c.keyfold_api(&[
        "review",
        "approve",
        &held.request_id,
        "--key",
        &c.officer_key("bob"),
    ]);
    assert!(!ok && out.contains("not held for review"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_rejected_in_review_never_signs() {
    let c = cluster().await;
    let held = travelled(&c, "travel-no").await;
    let (ok, out) = c.keyfold_api(&[
        "review",
        "reject",
        &held.request_id,
        "--key",
        &c.officer_key("bob"),
    ]);
    assert!(ok, "{out}");
    let (_, p, body) = c
        .get::<PayoutInfo>(&format!("/v1/payouts/{}", held.payout_id))
        .await;
    let p = p.unwrap_or_else(|| panic!("{body}"));
    assert_eq!(p.state, PayoutState::Cancelled, "{p:?}");
    assert!(p.raw_tx.is_none() && p.tx_hash.is_none(), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payout_from_a_new_device_asks_for_a_step_up() {
    let c = cluster().await;
    let p = c
        .customer_payout(
            "stepup",
            "0.6",
            client(&unique("big-spender"), &unique("new-phone"), "DE"),
        )
        .await;
    assert_eq!(p.state, PayoutState::Rejected, "{p:?}");
    assert_eq!(risk_code(&p), Some("step_up_required"), "{p:?}");
    assert!(
        p.reason
            .as_deref()
            .is_some_and(|r| r.contains("step_up_required")),
        "{p:?}"
    );
    assert!(p.tx_hash.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_context_is_refused_naming_the_field() {
    let c = cluster().await;
    let mut who = client(&unique("c"), &unique("d"), "DE");
    who.country = Some("Germany".into());
    let mut req = payout(&unique("badctx"), &c, "devnet-l1", "ETH", "0.0001");
    req.client = Some(who);
    let r = c
        .http
        .post(c.url("/v1/payouts"))
        .bearer_auth(&c.token)
        .json(&req)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("client.country"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_windows_and_freezes_survive_a_coordinator_restart() {
    let mut c = cluster().await;
    let customer = unique("restart-customer");
    let device = unique("restart-phone");
    let mut last_seq = 0;
    for _ in 0..3 {
        let p = c
            .customer_payout("rs", "0.0001", client(&customer, &device, "DE"))
            .await;
        assert_eq!(risk_code(&p), None, "{p:?}");
        last_seq = p.risk.unwrap().seq;
    }
    c.kill("coordinator");
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    // The numbering goes on, and the device's three earlier payments still
    // count: its sixth in ten minutes is frozen.
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let p = c
            .customer_payout("rs", "0.0001", client(&customer, &device, "DE"))
            .await;
        assert_eq!(risk_code(&p), None, "{p:?}");
        seqs.push(p.risk.unwrap().seq);
    }
    assert!(seqs[0] > last_seq, "seq {} after {last_seq}", seqs[0]);
    let sixth = c
        .customer_payout("rs", "0.0001", client(&customer, &device, "DE"))
        .await;
    assert_eq!(risk_code(&sixth), Some("risk_frozen"), "{sixth:?}");
    // And the freeze holds across another restart.
    c.kill("coordinator");
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let again = c
        .customer_payout("rs", "0.0001", client(&customer, &device, "DE"))
        .await;
    assert_eq!(risk_code(&again), Some("risk_frozen"), "{again:?}");
    assert_eq!(again.risk.as_ref().map(|r| r.seq), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signer_refuses_a_frozen_customer_when_the_coordinator_ignores_the_freeze() {
    let mut c = cluster().await;
    let customer = unique("chargeback-customer");
    // An operator freezes the customer by hand (no officer needed to add).
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "add",
        "--scope",
        "customer",
        "--subject",
        &customer,
        "--reason",
        "chargeback fraud",
    ]);
    assert!(ok, "{out}");
    let freeze_id = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    // Pushed to the signers within a second of the decision.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // A coordinator that ignores freezes (TEST ONLY switch) judges and
    // sends the payout: every signer refuses it on its own.
    c.restart_coordinator(Some("[policy]\nskip_freezes = true\n"));
    c.wait_live(&SIGNERS).await;
    let p = c
        .customer_payout(
            "frz-skip",
            "0.0001",
            client(&customer, &unique("dev"), "DE"),
        )
        .await;
    let p = c
        .wait_payout(&p.payout_id, 60, |p| p.state != PayoutState::Signing)
        .await;
    assert_eq!(p.state, PayoutState::Failed, "{p:?}");
    let reason = p.reason.clone().unwrap_or_default();
    assert!(reason.contains("frozen"), "{reason}");
    assert!(p.tx_hash.is_none(), "nothing signed: {p:?}");
    for s in SIGNERS {
        let log = std::fs::read_to_string(c.dir.join(s).join("audit").join("entries.jsonl"))
            .unwrap_or_default();
        assert!(
            !log.contains(&p.request_id),
            "{s} contributed to a frozen customer's payout"
        );
    }
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
    // Two officers lift it: the coordinator and every signer let the
    // customer pay again.
    let (ok, out) = c.keyfold_api(&[
        "freeze",
        "lift",
        &freeze_id,
        "--key",
        &c.officer_key("alice"),
        "--key",
        &c.officer_key("carol"),
    ]);
    assert!(ok, "{out}");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let again = c
        .customer_payout(
            "frz-lifted",
            "0.0001",
            client(&customer, &unique("dev"), "DE"),
        )
        .await;
    c.wait_completed(&again.payout_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tree_needs_the_admin_quorum_and_a_higher_version() {
    let c = cluster().await;
    // The default tree as version 2: the same rules, so the other tests on
    // this cluster see no change in what is decided.
    let v1 = keyfold(&["risk", "check", "--default"]);
    let v2 = v1.replacen("version = 1\n", "version = 2\n", 1);
    assert_ne!(v1, v2);
    let file = c.dir.join("risk-tree-v2.toml");
    std::fs::write(&file, &v2).unwrap();
    let sign = |who: &str| {
        let sig = keyfold(&[
            "risk",
            "sign",
            file.to_str().unwrap(),
            "--key",
            &c.officer_key(who),
        ]);
        let path = c.dir.join(format!("risk-tree-v2.{who}.sig"));
        std::fs::write(&path, sig.trim()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (alice, bob) = (sign("alice"), sign("bob"));

    // One admin is not the quorum (2 of 3).
    let (ok, out) = c.keyfold_api(&[
        "risk",
        "push",
        file.to_str().unwrap(),
        "--signature",
        &alice,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("policy_denied") && out.contains("2 needed"),
        "{out}"
    );

    let (ok, out) = c.keyfold_api(&[
        "risk",
        "push",
        file.to_str().unwrap(),
        "--signature",
        &alice,
        "--signature",
        &bob,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("risk tree version 2 is in force"), "{out}");
    // The same version again is not an increase.
    let (ok, out) = c.keyfold_api(&[
        "risk",
        "push",
        file.to_str().unwrap(),
        "--signature",
        &alice,
        "--signature",
        &bob,
    ]);
    assert!(!ok && out.contains("version"), "{out}");
    // A tree that does not parse never gets to its signatures' check.
    std::fs::write(&file, "version = 3\nrules = 7\n").unwrap();
    let (ok, out) = c.keyfold_api(&[
        "risk",
        "push",
        file.to_str().unwrap(),
        "--signature",
        &alice,
    ]);
    assert!(!ok, "{out}");

    // Decisions now name version 2, and the update is in the audit log.
    let p = c
        .customer_payout(
            "tree-v2",
            "0.0001",
            client(&unique("v2-customer"), &unique("v2-phone"), "DE"),
        )
        .await;
    assert_eq!(p.risk.as_ref().map(|r| r.tree_version), Some(2), "{p:?}");
    let logged = c.coordinator_audit().into_iter().any(|e| {
        matches!(
            e.event,
            keyfold_audit::Event::RiskTree {
                version: 2,
                update: Some(_),
                ..
            }
        )
    });
    assert!(logged, "the signed update is in the audit log");
}
