//! The risk scenario of the devnet run the fixture made (`keyfold devnet
//! --once --out devnet.json`): its customer's device burst into a device
//! freeze that two officers lifted, and the coordinator refused each
//! forged or replayed proof with its own reason. The JSON is checked
//! against the running cluster, not only against itself.

use std::collections::BTreeSet;

use keyfold_proto::api::{FreezeList, PayoutInfo};

use crate::fixture::*;

/// The `risk` section of the fixture's `devnet.json`.
fn risk_of(c: &Cluster) -> serde_json::Value {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir.join("devnet.json")).unwrap()).unwrap();
    let risk = doc["risk"].clone();
    assert!(risk.is_object(), "no risk section in {doc}");
    risk
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_device_burst_was_frozen_and_two_officers_lifted_the_freeze() {
    let c = cluster().await;
    let risk = risk_of(&c);
    let decisions = risk["decisions"].as_array().expect("decisions");
    // The default tree froze the burst, naming the rule.
    let burst = decisions
        .iter()
        .find(|d| {
            d["action"] == "freeze" && strings(&d["reasons"]).contains(&"device-burst".into())
        })
        .unwrap_or_else(|| panic!("no device-burst freeze among {risk}"));
    assert!(burst["score"].as_u64().unwrap() >= 60, "{burst}");
    // The payments before it were allowed (the first one paid normally).
    assert_eq!(decisions[0]["action"], "allow", "{risk}");

    // A device freeze, lifted by two distinct officers of the policy.
    let freezes = risk["freezes"].as_array().expect("freezes");
    let lifted = freezes
        .iter()
        .find(|f| f["scope"] == "device" && !f["lifted_by"].as_array().unwrap().is_empty())
        .unwrap_or_else(|| panic!("no lifted device freeze in {risk}"));
    let by: BTreeSet<String> = strings(&lifted["lifted_by"]).into_iter().collect();
    assert_eq!(by.len(), 2, "two distinct officers: {lifted}");
    assert!(
        by.iter()
            .all(|o| ["alice", "bob", "carol"].contains(&o.as_str())),
        "officers of the policy: {lifted}"
    );
    assert!(!lifted["reason"].as_str().unwrap().is_empty(), "{lifted}");
    // The subject is the device's pseudonym, never the id the devnet sent.
    assert!(
        !lifted["subject"].as_str().unwrap().contains("phone"),
        "{lifted}"
    );

    // The coordinator itself holds the same lift.
    let (code, list, body) = c.get::<FreezeList>("/v1/freezes?state=all").await;
    assert_eq!(code, 200, "{body}");
    let live = list
        .unwrap()
        .freezes
        .into_iter()
        .find(|f| f.freeze_id == lifted["freeze_id"].as_str().unwrap())
        .unwrap_or_else(|| {
            panic!(
                "freeze {} is not on the cluster: {body}",
                lifted["freeze_id"]
            )
        });
    assert!(live.lifted_at.is_some(), "{live:?}");
    assert_eq!(
        live.lifted_by.iter().cloned().collect::<BTreeSet<_>>(),
        by,
        "{live:?}"
    );
    assert_eq!(live.scope, "device");
    assert_eq!(live.subject, lifted["subject"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_lists_each_refused_proof_with_its_reason_and_none_became_a_payout() {
    let c = cluster().await;
    let risk = risk_of(&c);
    let refused = risk["refused"].as_array().expect("refused");
    for case in [
        "replayed_device_signature",
        "wrong_device_key",
        "stale_timestamp",
        "bad_totp",
    ] {
        let r = refused
            .iter()
            .find(|r| r["case"] == case)
            .unwrap_or_else(|| panic!("case {case} missing from {risk}"));
        assert_eq!(r["code"], case, "{r}");
    }
    // The refused payouts were never made: their ids (the devnet names
    // them after its first payment's) are unknown to the coordinator.
    let first = risk["decisions"][0]["request_id"].as_str().unwrap();
    let prefix = first
        .strip_prefix("payout:")
        .and_then(|p| p.strip_suffix("risk-1"))
        .unwrap_or_else(|| panic!("unexpected request id {first}"));
    for suffix in ["risk-wrong-key", "risk-stale", "risk-replay"] {
        let (code, _, body) = c
            .get::<PayoutInfo>(&format!("/v1/payouts/{prefix}{suffix}"))
            .await;
        assert_eq!(code, 404, "{prefix}{suffix}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_risk_decisions_are_those_its_payouts_carry_on_the_cluster() {
    let c = cluster().await;
    let risk = risk_of(&c);
    let decisions = risk["decisions"].as_array().expect("decisions");
    // One normal payment, at least five in the burst, one after the lift.
    assert!(decisions.len() >= 7, "{risk}");
    for d in decisions {
        let request_id = d["request_id"].as_str().unwrap();
        let payout_id = request_id
            .strip_prefix("payout:")
            .unwrap_or_else(|| panic!("not a payout's request: {request_id}"));
        let (code, p, body) = c
            .get::<PayoutInfo>(&format!("/v1/payouts/{payout_id}"))
            .await;
        assert_eq!(code, 200, "{body}");
        let r = p.unwrap().risk.unwrap_or_else(|| panic!("no risk: {body}"));
        assert_eq!(
            d["score"].as_u64(),
            Some(u64::from(r.score)),
            "{d} vs {body}"
        );
        assert_eq!(d["action"], r.action, "{d} vs {body}");
        assert_eq!(strings(&d["reasons"]), r.reasons, "{d} vs {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_held_impossible_travel_for_review_and_the_rejected_payout_never_signed() {
    let c = cluster().await;
    let risk = risk_of(&c);
    let held = risk["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .find(|d| {
            d["action"] == "review" && strings(&d["reasons"]).contains(&"impossible-travel".into())
        })
        .unwrap_or_else(|| panic!("no impossible-travel review among {risk}"))
        .clone();
    let request_id = held["request_id"].as_str().unwrap();
    let payout_id = request_id.strip_prefix("payout:").unwrap_or(request_id);
    let (status, p, body) = c
        .get::<PayoutInfo>(&format!("/v1/payouts/{payout_id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let p = p.unwrap();
    assert_eq!(p.state, keyfold_proto::api::PayoutState::Cancelled, "{p:?}");
    assert!(p.tx_hash.is_none() && p.raw_tx.is_none(), "{p:?}");
}
