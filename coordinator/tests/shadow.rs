//! A policy version installed in shadow on a real coordinator: installed
//! only with the admin quorum of the policy in force and a valid, higher
//! version; evaluated on every request next to the version in force,
//! which alone decides; its report lists exactly the requests it would
//! have decided otherwise, newest first, page by page; it survives a
//! restart, is removed by an operator, and ends when its version comes
//! into force; the audit log that records all this verifies offline.
mod common;

use common::{key, start};
use keyfold_audit::verify::EventCheck;
use keyfold_coordinator::modules::Modules;
use keyfold_policy::AdminSignature;
use keyfold_proto::Curve;
use serde_json::{json, Value};

/// The test policy at `version`, with a rule the policy in force lacks:
/// transfers of 101 to 1000 are denied (version 1 allows them as `small`).
fn shadow_doc(version: u64) -> String {
    common::policy()
        .replace("version = 1\n", &format!("version = {version}\n"))
        .replace(
            "[[rules]]\nname = \"small\"",
            "[[rules]]\nname = \"cap\"\ntier = \"hot\"\namount = { min = 101, max = 1000 }\naction = { kind = \"deny\", reason = \"above the shadow cap\" }\n\n[[rules]]\nname = \"small\"",
        )
}

/// `doc` signed by the admins of `seeds` (1 and 2 are the test admins).
fn signed(doc: &str, seeds: &[u8]) -> Value {
    let signatures: Vec<AdminSignature> = seeds
        .iter()
        .map(|s| AdminSignature::sign(&key(*s), doc))
        .collect();
    json!({ "document_toml": doc, "signatures": signatures })
}

fn ids(report: &Value) -> Vec<String> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// Replays the coordinator's audit log with the offline auditor.
fn audit(env: &common::Env) -> keyfold_audit::AuditStats {
    let path = env.dir.path().join("data/audit/entries.jsonl");
    let mut auditor = keyfold_audit::Auditor::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let entry: keyfold_audit::Entry = serde_json::from_str(line).unwrap();
        auditor
            .check(&entry)
            .unwrap_or_else(|e| panic!("entry {}: {e}", entry.index));
    }
    auditor.stats().clone()
}

#[tokio::test]
async fn a_shadow_reports_what_it_would_decide_otherwise_and_decides_nothing() {
    let env = start(Modules::default(), "").await;
    let k = env.key(Curve::Secp256k1).await;
    let path = "/v1/policy/shadow";

    // Refused: one admin, a document that does not parse, the version in
    // force, a merchant-less client without operator rights is n/a here.
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(2), &[1]))
        .await;
    assert_eq!(s, 400, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("only 1 valid admin signature(s), the current policy needs 2"),
        "{m}"
    );
    let (s, v) = env
        .post(
            "payments",
            path,
            signed("version = 2\n[[rules]]\nname = 1\n", &[1, 2]),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("shadow policy document:"), "{m}");
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(1), &[1, 2]))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is not above the version in force (1)"));
    let (s, v) = env.get("payments", path).await;
    assert_eq!(s, 404, "{v}");

    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(2), &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            &v["version"],
            &v["in_force_version"],
            &v["evaluated"],
            &v["installed"]
        ),
        (&json!(2), &json!(1), &json!(0), &json!(true))
    );
    // The same install again changes nothing.
    let (s, again) = env
        .post("payments", path, signed(&shadow_doc(2), &[2, 1]))
        .await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["installed_at"], v["installed_at"]);

    // Both sides of the difference; the version in force decides.
    let (s, r) = env.transfer("payments", "sh-50", &k, 50).await;
    assert_eq!((s, &r["request_id"]), (200, &json!("sh-50")), "{r}");
    let (s, r) = env.transfer("payments", "sh-500", &k, 500).await;
    assert_eq!(
        s, 200,
        "signed under version 1 although the shadow denies it: {r}"
    );
    common::verify_ecdsa(&r);
    let (s, r) = env.transfer("payments", "sh-3000", &k, 3000).await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["state"], "pending_approval");
    let (s, _) = env.transfer("payments", "sh-600", &k, 600).await;
    assert_eq!(s, 200);

    let (s, v) = env.get("payments", path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["evaluated"], &v["differed"]),
        (&json!(4), &json!(2)),
        "{v}"
    );
    assert_eq!(ids(&v), ["sh-600", "sh-500"], "newest first");
    let d = &v["differences"][1];
    assert_eq!(
        d["in_force"],
        json!({"outcome": "allow", "rule": "small", "reason": null})
    );
    assert_eq!(
        d["shadow"],
        json!({"outcome": "deny", "rule": "cap", "reason": "above the shadow cap"})
    );
    assert!(d["at"].as_i64().unwrap() > 0);

    // Page by page.
    let (_, p1) = env.get("payments", &format!("{path}?limit=1")).await;
    assert_eq!(ids(&p1), ["sh-600"]);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = env
        .get("payments", &format!("{path}?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(ids(&p2), ["sh-500"]);
    let cursor = p2["next_cursor"].as_str().unwrap().to_string();
    let (_, p3) = env
        .get("payments", &format!("{path}?limit=1&cursor={cursor}"))
        .await;
    assert!(ids(&p3).is_empty() && p3["next_cursor"].is_null(), "{p3}");
    for bad in [
        "?limit=0",
        "?limit=501",
        "?cursor=abc",
        "?cursor=-1",
        "?other=1",
    ] {
        let (s, v) = env.get("payments", &format!("{path}{bad}")).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }

    // An approval for the version in force counts under the shadow too:
    // both allow `sh-3000` once two officers approved (no difference).
    for officer in [3, 4] {
        let a = env
            .approval(
                officer,
                "sh-3000",
                keyfold_policy::ApprovalDecision::Approve,
            )
            .await;
        let (s, v) = env
            .post("ops-alice", "/v1/requests/sh-3000/approvals", a)
            .await;
        assert!(s == 200, "{v}");
    }
    env.wait_state("sh-3000", "completed").await;
    let (_, v) = env.get("payments", path).await;
    assert_eq!(
        (&v["evaluated"], &v["differed"]),
        (&json!(6), &json!(2)),
        "{v}"
    );

    // After a restart the shadow is evaluated again, with its report.
    let env = env.restart("").await;
    let (s, v) = env.get("payments", path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 2);
    let (s, _) = env.transfer("payments", "sh-700", &k, 700).await;
    assert_eq!(s, 200);
    let (_, v) = env.get("payments", path).await;
    assert_eq!(ids(&v), ["sh-700", "sh-600", "sh-500"]);

    // Removed by an operator: the answer is its last report.
    let (s, v) = env
        .call("payments", reqwest::Method::DELETE, path, None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["installed"], &v["differed"]),
        (&json!(false), &json!(3))
    );
    let (s, _) = env.get("payments", path).await;
    assert_eq!(s, 404);
    let (s, _) = env
        .call("payments", reqwest::Method::DELETE, path, None)
        .await;
    assert_eq!(s, 404);
    let (s, _) = env.transfer("payments", "sh-800", &k, 800).await;
    assert_eq!(s, 200);

    // Installed again, then promoted: its version in force ends it.
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(2), &[1, 2]))
        .await;
    assert_eq!((s, &v["evaluated"]), (200, &json!(0)), "{v}");
    let (s, v) = env
        .post("payments", "/v1/policy", signed(&shadow_doc(2), &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env.get("payments", path).await;
    assert_eq!(s, 404, "promoting the shadow's version ends it");
    let (s, v) = env.transfer("payments", "sh-900", &k, 900).await;
    assert_eq!(s, 403, "now the cap decides: {v}");

    let shadows: Vec<(u64, String)> = env
        .audit_events()
        .iter()
        .filter(|e| e["type"] == "policy_shadow")
        .map(|e| {
            (
                e["version"].as_u64().unwrap(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shadows,
        [
            (2, "installed".to_string()),
            (2, "removed".to_string()),
            (2, "installed".to_string()),
            (2, "ended".to_string())
        ]
    );
    let stats = audit(&env);
    assert_eq!(stats.policy_shadows, 4);
}

#[tokio::test]
async fn a_policy_version_below_the_shadow_keeps_it_installed() {
    let env = start(Modules::default(), "").await;
    let k = env.key(Curve::Secp256k1).await;
    let path = "/v1/policy/shadow";
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(3), &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    // Version 2 (the genesis rules) comes into force: the shadow stays.
    let v2 = common::policy().replace("version = 1\n", "version = 2\n");
    let (s, v) = env
        .post("payments", "/v1/policy", signed(&v2, &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env.transfer("payments", "b-500", &k, 500).await;
    assert_eq!(s, 200);
    let (s, v) = env.get("payments", path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["version"], &v["in_force_version"], &v["differed"]),
        (&json!(3), &json!(2), &json!(1))
    );
    // A merchant key is no operator.
    let mut env = env;
    common::merchant_with_collection_key(&mut env, "m1", &["signatures:write", "wallets:write"])
        .await;
    let (s, v) = env.get("m1", path).await;
    assert_eq!(s, 403, "{v}");
    audit(&env);
}

#[tokio::test]
async fn a_shadow_install_and_removal_lost_by_the_store_are_restored_from_the_audit_log() {
    let env = start(Modules::default(), "").await;
    let k = env.key(Curve::Secp256k1).await;
    let path = "/v1/policy/shadow";
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(2), &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = env
        .call("payments", reqwest::Method::DELETE, path, None)
        .await;
    assert_eq!(s, 200);
    let (s, v) = env
        .post("payments", path, signed(&shadow_doc(3), &[1, 2]))
        .await;
    assert_eq!(s, 200, "{v}");
    let first_lost = env
        .audit_events()
        .iter()
        .position(|e| e["type"] == "policy_shadow")
        .unwrap();
    let stopped = env.stop().await;
    // A machine crash loses the store's commits from the first install on,
    // not the fsynced log.
    {
        let c = rusqlite::Connection::open(stopped.db()).unwrap();
        c.execute_batch("DELETE FROM policy_shadows;").unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'audit_applied'",
            [first_lost.to_string()],
        )
        .unwrap();
    }
    let env = stopped.start("").await;
    // Version 2 installed then removed, version 3 installed: it is back.
    let (s, v) = env.get("payments", path).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((&v["version"], &v["evaluated"]), (&json!(3), &json!(0)));
    let (s, _) = env.transfer("payments", "rec-500", &k, 500).await;
    assert_eq!(s, 200);
    let (_, v) = env.get("payments", path).await;
    assert_eq!(ids(&v), ["rec-500"]);
    assert_eq!(audit(&env).policy_shadows, 3);
}
